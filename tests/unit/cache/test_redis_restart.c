/* test_redis_restart.c — a Redis restarted between two of the watchdog's
 * PINGs (cache/redis.c, redis.h "Retries"): every idle pooled connection is
 * dead, and the next command on each must still succeed, on a new
 * connection, with the state never turning unavailable — over a unix
 * socket and over TCP, plain commands, pipelines and scripts (NOSCRIPT on
 * the new server), from several pooled connections at once, and on_up
 * runs once (the index's data check).  A server that
 * stays down still turns the state unavailable at the first command.
 */
#include "test.h"

#include "cache/redis.h"
#include "core/config.h"
#include "redis_server.h"

#include <pthread.h>
#include <stdatomic.h>

static struct om_redis_script S_ECHO = {
    .name = "echo",
    .src = "return ARGV[1]\n",
};

static atomic_int ups;

static void count_up(void *ud)
{
    (void)ud;
    atomic_fetch_add(&ups, 1);
}

static struct om_redis_opts opts_for(const struct rs *s, bool tcp, char *url, size_t urlsz)
{
    struct om_redis_opts o;
    const char *why = NULL;
    memset(&o, 0, sizeof(o));
    if (tcp)
        snprintf(url, urlsz, "redis://127.0.0.1:%u/2", s->port);
    else
        snprintf(url, urlsz, "unix://%s?db=2", s->sock);
    CHECK_EQ_INT(om_parse_redis_url(&o.url, url, strlen(url), &why), OM_OK);
    o.command_timeout_ms = 500;
    o.connect_timeout_ms = 500;
    o.backoff_min_ms = 20;
    o.backoff_max_ms = 200;
    o.ping_interval_ms = 600000; /* the watchdog never sees the outage: the test's calls do */
    o.pool_max = 4;
    o.who = "test";
    o.on_up = count_up;
    return o;
}

static void cmd3(struct om_redis_cmd *c, const char *a, const char *b, const char *v)
{
    om_redis_cmd_init(c, NULL, 0);
    om_redis_arg_str(c, a);
    if (b != NULL)
        om_redis_arg_str(c, b);
    if (v != NULL)
        om_redis_arg_str(c, v);
}

struct holder {
    struct om_redis *r;
    int ok;
};

/* Several threads at once: the pool ends up with several connections. */
static void *hold_run(void *arg)
{
    struct holder *h = arg;
    for (int i = 0; i < 50; i++) {
        struct om_redis_cmd c;
        redisReply *rp = NULL;
        cmd3(&c, "INCR", "n", NULL);
        h->ok += om_redis_exec(h->r, &c, 1, &rp) == OM_OK;
        om_redis_replies_free(&rp, 1);
    }
    return NULL;
}

static void restart_case(bool tcp)
{
    struct rs a;
    struct om_redis *r = NULL;
    struct om_redis_cmd c[2];
    redisReply *rp[2] = {0};
    struct om_redis_status st;
    char url[200];
    const char *s = NULL;
    size_t sl = 0;

    if (!rs_start(&a, tcp))
        return;
    atomic_store(&ups, 0);
    struct om_redis_opts o = opts_for(&a, tcp, url, sizeof(url));
    CHECK_EQ_INT(om_redis_open(&r, &o), OM_OK);
    if (r == NULL) {
        rs_stop(&a);
        return;
    }
    pthread_t t[4];
    struct holder h[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (struct holder){.r = r};
        pthread_create(&t[i], NULL, hold_run, &h[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(h[i].ok, 50);
    }
    om_redis_status(r, &st);
    unsigned pooled = st.connections;
    CHECK(pooled >= 1);

    CHECK(rs_restart(&a)); /* killed by PID, started again on the same socket */

    /* every pooled connection is dead now: each command still succeeds */
    for (unsigned i = 0; i < pooled + 2; i++) {
        cmd3(&c[0], "SET", "k", "v");
        CHECK_EQ_INT(om_redis_exec(r, c, 1, rp), OM_OK);
        CHECK_EQ_INT(om_redis_reply_ok(rp[0], "set"), OM_OK);
        om_redis_replies_free(rp, 1);
        CHECK(om_redis_available(r));
    }
    /* a pipeline with a script the new server does not know yet */
    om_redis_script_init(&S_ECHO);
    om_redis_cmd_init(&c[0], &S_ECHO, 0);
    om_redis_arg_str(&c[0], "hello");
    cmd3(&c[1], "GET", "k", NULL);
    CHECK_EQ_INT(om_redis_exec(r, c, 2, rp), OM_OK);
    CHECK_EQ_INT(om_redis_reply_str(rp[0], "echo", 16, &s, &sl), OM_OK);
    CHECK(sl == 5 && memcmp(s, "hello", 5) == 0);
    CHECK_EQ_INT(om_redis_reply_str(rp[1], "get", 16, &s, &sl), OM_OK);
    CHECK(sl == 1 && s[0] == 'v');
    om_redis_replies_free(rp, 2);

    om_redis_status(r, &st);
    CHECK(st.available);
    CHECK_EQ_INT(st.outages, 0);
    CHECK(st.connections <= 4);
    /* the watchdog checks the restarted server's data, as after an outage */
    for (int i = 0; i < 200 && atomic_load(&ups) == 0; i++)
        rs_sleep_ms_(10);
    CHECK_EQ_INT(atomic_load(&ups), 1);

    /* a server that stays down: the first command says so, as before */
    rs_kill(&a);
    cmd3(&c[0], "GET", "k", NULL);
    CHECK_EQ_INT(om_redis_exec(r, c, 1, rp), OM_ERR_UNAVAILABLE);
    CHECK(!om_redis_available(r));
    CHECK(rs_restart(&a));
    CHECK(om_redis_wait_available(r, 3000));
    CHECK_EQ_INT(om_redis_exec(r, c, 1, rp), OM_OK);
    om_redis_replies_free(rp, 1);
    om_redis_status(r, &st);
    CHECK_EQ_INT(st.outages, 1);
    om_redis_close(r);
    rs_stop(&a);
}

static void test_redis_restart__unix_socket(void)
{
    restart_case(false);
}

static void test_redis_restart__tcp(void)
{
    restart_case(true);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the server does */
    if (!rs_have_redis()) {
        printf("redis-server not found: the live tests are skipped\n");
        return test_done();
    }
    RUN(test_redis_restart__unix_socket);
    RUN(test_redis_restart__tcp);
    return test_done();
}
