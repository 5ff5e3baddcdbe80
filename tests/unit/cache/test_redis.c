/* test_redis.c — the cluster.redis URL parser (every case, every truncated
 * prefix, buffers without a NUL) and the connection layer (cache/redis.c)
 * against a real redis-server started by the test: commands, pipelines,
 * scripts and the NOSCRIPT fallback, checked replies, AUTH and SELECT
 * refused, an unreachable server at open, an outage and a hung server
 * (fail fast, then reconnect by itself), the pool under threads. */
#include "test.h"

#include "cache/redis.h"
#include "core/config.h"
#include "redis_server.h"

#include <pthread.h>

/* ---- the URL parser ------------------------------------------------------- */

static void test_redis__urls_parse_into_their_parts(void)
{
    static const struct {
        const char *url;
        bool is_unix;
        const char *host, *path, *user, *password;
        unsigned port, db;
    } ok[] = {
        {"redis://127.0.0.1:6379/0", false, "127.0.0.1", "", "", "", 6379, 0},
        {"redis://localhost", false, "localhost", "", "", "", 6379, 0},
        {"redis://redis.internal:7000/3", false, "redis.internal", "", "", "", 7000, 3},
        {"REDIS://h/", false, "h", "", "", "", 6379, 0},
        {"redis://:s3cret@h:1/65535", false, "h", "", "", "s3cret", 1, 65535},
        {"redis://mirror:pw:with:colons@h", false, "h", "", "mirror", "pw:with:colons", 6379, 0},
        {"redis://:p@ss@h:2", false, "h", "", "", "p@ss", 2, 0},
        {"redis://[::1]:6380/2", false, "::1", "", "", "", 6380, 2},
        {"redis://[fe80::1]", false, "fe80::1", "", "", "", 6379, 0},
        {"unix:///run/redis/redis.sock", true, "", "/run/redis/redis.sock", "", "", 0, 0},
        {"unix:///tmp/r.sock?db=7", true, "", "/tmp/r.sock", "", "", 0, 7},
    };
    static const struct {
        const char *url, *why;
    } bad[] = {
        {"", "empty"},
        {"http://h:1", "must start with redis:// or unix://"},
        {"rediss://h:6379", "TLS"},
        {"redis://", "needs a host"},
        {"redis://:6379", "needs a host"},
        {"redis://h:0", "port from 1 to 65535"},
        {"redis://h:65536", "port from 1 to 65535"},
        {"redis://h:123456", "port"},
        {"redis://h:", "port"},
        {"redis://h:x", "port"},
        {"redis://h/x", "database number"},
        {"redis://h/65536", "database number"},
        {"redis://h/1/2", "database number"},
        {"redis://h/1?x=y", "database number"},
        {"redis://user@h", "USER:PASSWORD@"},
        {"redis://:@h", "empty password"},
        {"redis://h st", "blank or control"},
        {"redis://h\x01", "blank or control"},
        {"redis://h%41", "bad character in its host"},
        {"redis://[::1", "unclosed"},
        {"redis://[]:1", "unclosed or empty"},
        {"redis://[::g]", "bad character in its [IPv6]"},
        {"redis://[::1]6379", "needs ':'"},
        {"unix://", "absolute"},
        {"unix://relative.sock", "absolute"},
        {"unix:///s?db=", "?db=N"},
        {"unix:///s?db=x", "?db=N"},
        {"unix:///s?x=1", "?db=N"},
        {"unix:///s?db=70000", "?db=N"},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(ok); i++) {
        struct om_redis_url u;
        const char *why = "unset";
        int rc = om_parse_redis_url(&u, ok[i].url, strlen(ok[i].url), &why);
        if (rc != OM_OK)
            fprintf(stderr, "  %s: %s\n", ok[i].url, why);
        CHECK_EQ_INT(rc, OM_OK);
        CHECK(why == NULL);
        CHECK_EQ_INT(u.is_unix, ok[i].is_unix);
        CHECK_EQ_STR(u.host, ok[i].host);
        CHECK_EQ_STR(u.path, ok[i].path);
        CHECK_EQ_STR(u.user, ok[i].user);
        CHECK_EQ_STR(u.password, ok[i].password);
        CHECK_EQ_INT(u.port, ok[i].port);
        CHECK_EQ_INT(u.db, ok[i].db);
    }
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++) {
        struct om_redis_url u;
        const char *why = NULL;
        CHECK_EQ_INT(om_parse_redis_url(&u, bad[i].url, strlen(bad[i].url), &why),
                     OM_ERR_INVALID);
        CHECK(why != NULL && strstr(why, bad[i].why) != NULL);
        if (why == NULL || strstr(why, bad[i].why) == NULL)
            fprintf(stderr, "  %s: %s\n", bad[i].url, why ? why : "(null)");
        CHECK(u.host[0] == '\0' && u.password[0] == '\0'); /* nothing half-filled */
    }
}

static void test_redis__urls_are_bounded(void)
{
    char big[OM_REDIS_URL_MAX + 64];
    struct om_redis_url u;
    const char *why = NULL;

    /* a host of 256 bytes, a path of 108, a URL of 1025 */
    snprintf(big, sizeof(big), "redis://%0256d", 0);
    CHECK_EQ_INT(om_parse_redis_url(&u, big, strlen(big), &why), OM_ERR_INVALID);
    CHECK(why != NULL && strstr(why, "longer than 255") != NULL);
    snprintf(big, sizeof(big), "redis://%0255d:1", 0);
    CHECK_EQ_INT(om_parse_redis_url(&u, big, strlen(big), &why), OM_OK);
    snprintf(big, sizeof(big), "unix:///%0107d", 0);
    CHECK_EQ_INT(om_parse_redis_url(&u, big, strlen(big), &why), OM_ERR_INVALID);
    snprintf(big, sizeof(big), "unix:///%0106d", 0);
    CHECK_EQ_INT(om_parse_redis_url(&u, big, strlen(big), &why), OM_OK);
    memset(big, 'a', sizeof(big));
    memcpy(big, "redis://:", 9);
    big[9 + 513] = '@';
    big[9 + 514] = 'h';
    CHECK_EQ_INT(om_parse_redis_url(&u, big, 9 + 515, &why), OM_ERR_INVALID);
    CHECK(why != NULL && strstr(why, "longer than 512") != NULL);
    CHECK_EQ_INT(om_parse_redis_url(&u, big, OM_REDIS_URL_MAX + 1, &why), OM_ERR_INVALID);
    CHECK(why != NULL && strstr(why, "1024") != NULL);
    CHECK_EQ_INT(om_parse_redis_url(&u, NULL, 0, &why), OM_ERR_INVALID);
}

/* Every prefix of every URL, in a buffer exactly that long (ASan sees a
 * read past it): OM_OK or OM_ERR_INVALID with a reason, nothing else. */
static void test_redis__every_truncated_prefix_is_safe(void)
{
    static const char *const urls[] = {
        "redis://mirror:pw@[2001:db8::1]:6380/15", "redis://:s3cret@redis.internal:7000/3",
        "unix:///run/redis/redis.sock?db=9", "rediss://h:1",
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(urls); i++) {
        size_t n = strlen(urls[i]);
        for (size_t k = 0; k <= n; k++) {
            char *buf = malloc(k > 0 ? k : 1);
            struct om_redis_url u;
            const char *why = NULL;
            memcpy(buf, urls[i], k);
            int rc = om_parse_redis_url(&u, buf, k, &why);
            CHECK(rc == OM_OK || (rc == OM_ERR_INVALID && why != NULL));
            CHECK(rc != OM_OK || why == NULL);
            free(buf);
        }
    }
}

/* ---- a live server -------------------------------------------------------- */

static struct rs srv;
static bool have_srv;

static struct om_redis_opts opts_unix(const struct rs *s, unsigned db)
{
    struct om_redis_opts o;
    char url[200];
    const char *why = NULL;
    memset(&o, 0, sizeof(o));
    snprintf(url, sizeof(url), "unix://%s?db=%u", s->sock, db);
    CHECK_EQ_INT(om_parse_redis_url(&o.url, url, strlen(url), &why), OM_OK);
    o.command_timeout_ms = 300;
    o.connect_timeout_ms = 300;
    o.backoff_min_ms = 20;
    o.backoff_max_ms = 200;
    o.ping_interval_ms = 100;
    o.who = "test";
    return o;
}

static void cmd(struct om_redis_cmd *c, const char *a, const char *b, const char *x)
{
    om_redis_cmd_init(c, NULL, 0);
    om_redis_arg_str(c, a);
    if (b != NULL)
        om_redis_arg_str(c, b);
    if (x != NULL)
        om_redis_arg_str(c, x);
}

static void test_redis__commands_pipelines_and_checked_replies(void)
{
    struct om_redis *r = NULL;
    struct om_redis_opts o = opts_unix(&srv, 1);
    struct om_redis_cmd c[4];
    redisReply *rp[4] = {0};
    const char *s = NULL;
    size_t len = 0;
    long long v = 0;
    int64_t num = 0;
    char out[8];

    rs_cmd(&srv, 1, "FLUSHDB", NULL, 0);
    CHECK_EQ_INT(om_redis_open(&r, &o), OM_OK);
    CHECK(r != NULL && om_redis_available(r));
    if (r == NULL)
        return;
    cmd(&c[0], "SET", "k", "12345");
    cmd(&c[1], "GET", "k", NULL);
    cmd(&c[2], "GET", "missing", NULL);
    cmd(&c[3], "HSET", "k", "f"); /* WRONGTYPE (and arity): an error reply */
    CHECK_EQ_INT(om_redis_exec(r, c, 4, rp), OM_OK);
    CHECK_EQ_INT(om_redis_reply_ok(rp[0], "set"), OM_OK);
    CHECK_EQ_INT(om_redis_reply_str(rp[1], "get", 5, &s, &len), OM_OK);
    CHECK(len == 5 && memcmp(s, "12345", 5) == 0);
    CHECK_EQ_INT(om_redis_reply_str(rp[1], "get", 4, &s, &len), OM_ERR_IO);  /* over the limit */
    CHECK_EQ_INT(om_redis_reply_copy(rp[1], "get", out, 5), OM_ERR_TOOBIG);
    CHECK_EQ_INT(om_redis_reply_copy(rp[1], "get", out, 6), OM_OK);
    CHECK_EQ_INT(om_redis_reply_num(rp[1], "get", &num), OM_OK);
    CHECK_EQ_INT(num, 12345);
    CHECK_EQ_INT(om_redis_reply_int(rp[1], "get", &v), OM_ERR_IO);          /* wrong type */
    CHECK_EQ_INT(om_redis_reply_array(rp[1], "get", 10), OM_ERR_IO);
    CHECK_EQ_INT(om_redis_reply_str(rp[2], "get", 5, &s, &len), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_redis_reply_ok(rp[3], "hset"), OM_ERR_IO);
    CHECK_EQ_INT(om_redis_reply_int(NULL, "none", &v), OM_ERR_IO);
    om_redis_replies_free(rp, 4);

    /* 1000 commands in one pipeline */
    struct om_redis_cmd *many = calloc(1000, sizeof(*many));
    redisReply **mrp = calloc(1000, sizeof(*mrp));
    for (int i = 0; i < 1000; i++) {
        om_redis_cmd_init(&many[i], NULL, 0);
        om_redis_arg_str(&many[i], "ZADD");
        om_redis_arg_str(&many[i], "z");
        om_redis_arg_i64(&many[i], i);
        om_redis_arg_i64(&many[i], 1000000 + i);
    }
    CHECK_EQ_INT(om_redis_exec(r, many, 1000, mrp), OM_OK);
    CHECK_EQ_INT(om_redis_reply_int(mrp[999], "zadd", &v), OM_OK);
    CHECK_EQ_INT(v, 1);
    om_redis_replies_free(mrp, 1000);
    cmd(&c[0], "ZCARD", "z", NULL);
    CHECK_EQ_INT(om_redis_exec(r, c, 1, rp), OM_OK);
    CHECK_EQ_INT(om_redis_reply_int(rp[0], "zcard", &v), OM_OK);
    CHECK_EQ_INT(v, 1000);
    om_redis_replies_free(rp, 1);
    free(many);
    free(mrp);

    /* variable arguments */
    const char *members[3] = {"a", "b", "c"};
    size_t mlen[3] = {1, 1, 1};
    om_redis_cmd_init(&c[0], NULL, 0);
    om_redis_arg_str(&c[0], "SADD");
    om_redis_arg_str(&c[0], "s");
    om_redis_arg_extra(&c[0], members, mlen, 3);
    CHECK_EQ_INT(om_redis_exec(r, c, 1, rp), OM_OK);
    CHECK_EQ_INT(om_redis_reply_int(rp[0], "sadd", &v), OM_OK);
    CHECK_EQ_INT(v, 3);
    om_redis_replies_free(rp, 1);
    om_redis_close(r);
}

static struct om_redis_script S_INCR = {
    .name = "incr_by",
    .src = "return redis.call('INCRBY', KEYS[1], ARGV[1])",
};

static void test_redis__scripts_run_by_sha_and_reload_after_a_flush(void)
{
    struct om_redis *r = NULL;
    struct om_redis_opts o = opts_unix(&srv, 2);
    struct om_redis_cmd c[3];
    redisReply *rp[3] = {0};
    long long v = 0;

    rs_cmd(&srv, 2, "FLUSHDB", NULL, 0);
    om_redis_script_init(&S_INCR);
    CHECK_EQ_INT(strlen(S_INCR.sha), 40);
    CHECK_EQ_INT(om_redis_open(&r, &o), OM_OK);
    if (r == NULL)
        return;
    for (int round = 0; round < 2; round++) {
        rs_cmd(&srv, 2, "SCRIPT FLUSH", NULL, 0); /* the server forgets every script */
        for (int i = 0; i < 3; i++) {
            om_redis_cmd_init(&c[i], &S_INCR, 1);
            om_redis_arg_str(&c[i], "n");
            om_redis_arg_i64(&c[i], 10);
        }
        CHECK_EQ_INT(om_redis_exec(r, c, 3, rp), OM_OK); /* NOSCRIPT → EVAL, for all three */
        CHECK_EQ_INT(om_redis_reply_int(rp[2], "incr", &v), OM_OK);
        CHECK_EQ_INT(v, 30 + round * 30);
        om_redis_replies_free(rp, 3);
    }
    CHECK_EQ_INT(om_redis_exec(r, c, 1, rp), OM_OK); /* now cached: EVALSHA answers */
    CHECK_EQ_INT(om_redis_reply_int(rp[0], "incr", &v), OM_OK);
    CHECK_EQ_INT(v, 70);
    om_redis_replies_free(rp, 1);
    om_redis_close(r);
}

static void test_redis__refused_password_or_database_fails_the_open(void)
{
    struct rs a;
    struct om_redis *r = NULL;

    if (!rs_start(&a, false))
        return;
    struct om_redis_opts o = opts_unix(&a, 0);
    o.url.db = 99; /* the server has 16 */
    CHECK_EQ_INT(om_redis_open(&r, &o), OM_ERR_INVALID);
    CHECK(r == NULL);
    rs_cmd(&a, 0, "CONFIG SET requirepass s3cret", NULL, 0);
    o.url.db = 0;
    CHECK_EQ_INT(om_redis_open(&r, &o), OM_ERR_AUTH); /* NOAUTH */
    o.password = "wrong";
    CHECK_EQ_INT(om_redis_open(&r, &o), OM_ERR_AUTH); /* WRONGPASS */
    o.password = "s3cret";
    CHECK_EQ_INT(om_redis_open(&r, &o), OM_OK);
    CHECK(r != NULL && om_redis_available(r));
    om_redis_close(r);
    rs_stop(&a);
}

static void test_redis__an_unreachable_server_opens_unavailable_and_fails_fast(void)
{
    struct om_redis *r = NULL;
    struct om_redis_opts o = opts_unix(&srv, 0);
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    struct om_redis_status st;

    snprintf(o.url.path, sizeof(o.url.path), "%s/nobody.sock", srv.dir);
    CHECK_EQ_INT(om_redis_open(&r, &o), OM_OK);
    if (r == NULL)
        return;
    CHECK(!om_redis_available(r));
    cmd(&c, "PING", NULL, NULL);
    int64_t t0 = om_now_us();
    for (int i = 0; i < 1000; i++)
        CHECK_EQ_INT(om_redis_exec(r, &c, 1, &rp), OM_ERR_UNAVAILABLE);
    CHECK(om_now_us() - t0 < 100000); /* 1000 calls, no network: well under 100 ms */
    CHECK(rp == NULL);
    om_redis_status(r, &st);
    CHECK(!st.available);
    CHECK(strstr(st.last_error, "connect") != NULL);
    CHECK(strstr(st.where, "nobody.sock") != NULL);
    om_redis_close(r);
}

static void test_redis__an_outage_fails_fast_and_reconnects_by_itself(void)
{
    struct rs a;
    struct om_redis *r = NULL;
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    struct om_redis_status st;

    if (!rs_start(&a, true))
        return;
    /* over TCP this time */
    struct om_redis_opts o = opts_unix(&a, 0);
    char url[64];
    const char *why = NULL;
    snprintf(url, sizeof(url), "redis://127.0.0.1:%u/3", a.port);
    CHECK_EQ_INT(om_parse_redis_url(&o.url, url, strlen(url), &why), OM_OK);
    CHECK_EQ_INT(om_redis_open(&r, &o), OM_OK);
    if (r == NULL) {
        rs_stop(&a);
        return;
    }
    cmd(&c, "SET", "k", "v");
    CHECK_EQ_INT(om_redis_exec(r, &c, 1, &rp), OM_OK);
    om_redis_replies_free(&rp, 1);

    rs_kill(&a);
    CHECK_EQ_INT(om_redis_exec(r, &c, 1, &rp), OM_ERR_UNAVAILABLE); /* sees it */
    CHECK(!om_redis_available(r));
    int64_t t0 = om_now_us();
    CHECK_EQ_INT(om_redis_exec(r, &c, 1, &rp), OM_ERR_UNAVAILABLE);
    CHECK(om_now_us() - t0 < 5000); /* then fails without waiting */

    CHECK(rs_restart(&a));
    CHECK(om_redis_wait_available(r, 3000));
    CHECK_EQ_INT(om_redis_exec(r, &c, 1, &rp), OM_OK);
    om_redis_replies_free(&rp, 1);
    om_redis_status(r, &st);
    CHECK_EQ_INT(st.outages, 1);
    CHECK_EQ_INT(st.reconnects, 1);
    CHECK(strstr(st.where, "127.0.0.1:") != NULL && strstr(st.where, "/3") != NULL);
    om_redis_close(r);
    rs_stop(&a);
}

static void test_redis__a_hung_server_times_out_once_then_fails_fast(void)
{
    struct rs a;
    struct om_redis *r = NULL;
    struct om_redis_cmd c;
    redisReply *rp = NULL;

    if (!rs_start(&a, false))
        return;
    struct om_redis_opts o = opts_unix(&a, 0);
    o.ping_interval_ms = 60000; /* only the test's own call sees the hang */
    CHECK_EQ_INT(om_redis_open(&r, &o), OM_OK);
    if (r == NULL) {
        rs_stop(&a);
        return;
    }
    cmd(&c, "PING", NULL, NULL);
    rs_pause(&a);
    int64_t t0 = om_now_us();
    CHECK_EQ_INT(om_redis_exec(r, &c, 1, &rp), OM_ERR_UNAVAILABLE);
    int64_t took = om_now_us() - t0;
    CHECK(took >= 250000 && took < 1500000); /* the command timeout, 300 ms */
    t0 = om_now_us();
    CHECK_EQ_INT(om_redis_exec(r, &c, 1, &rp), OM_ERR_UNAVAILABLE);
    CHECK(om_now_us() - t0 < 5000);
    rs_resume(&a);
    CHECK(om_redis_wait_available(r, 3000));
    CHECK_EQ_INT(om_redis_exec(r, &c, 1, &rp), OM_OK);
    om_redis_replies_free(&rp, 1);
    om_redis_close(r);
    rs_stop(&a);
}

struct hammer {
    struct om_redis *r;
    int id, ok;
};

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < 500; i++) {
        struct om_redis_cmd c;
        redisReply *rp = NULL;
        long long v = 0;
        om_redis_cmd_init(&c, NULL, 0);
        om_redis_arg_str(&c, "INCR");
        om_redis_arg_str(&c, "hits");
        if (om_redis_exec(h->r, &c, 1, &rp) == OM_OK && om_redis_reply_int(rp, "incr", &v) == OM_OK)
            h->ok++;
        om_redis_replies_free(&rp, 1);
    }
    return NULL;
}

static void test_redis__eight_threads_share_a_pool_of_two(void)
{
    struct om_redis *r = NULL;
    struct om_redis_opts o = opts_unix(&srv, 4);
    pthread_t t[8];
    struct hammer h[8];
    char out[32];
    struct om_redis_status st;

    rs_cmd(&srv, 4, "FLUSHDB", NULL, 0);
    o.pool_max = 2;
    o.command_timeout_ms = 2000;
    CHECK_EQ_INT(om_redis_open(&r, &o), OM_OK);
    if (r == NULL)
        return;
    for (int i = 0; i < 8; i++) {
        h[i] = (struct hammer){.r = r, .id = i};
        pthread_create(&t[i], NULL, hammer_run, &h[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(h[i].ok, 500);
    }
    rs_cmd(&srv, 4, "GET hits", out, sizeof(out));
    CHECK_EQ_STR(out, "4000");
    om_redis_status(r, &st);
    CHECK(st.connections <= 2);
    om_redis_close(r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the server does: a write to a dead Redis is an error */
    RUN(test_redis__urls_parse_into_their_parts);
    RUN(test_redis__urls_are_bounded);
    RUN(test_redis__every_truncated_prefix_is_safe);
    have_srv = rs_start(&srv, false);
    if (!have_srv) {
        printf("redis-server not found: the live tests are skipped\n");
    } else {
        RUN(test_redis__commands_pipelines_and_checked_replies);
        RUN(test_redis__scripts_run_by_sha_and_reload_after_a_flush);
        RUN(test_redis__refused_password_or_database_fails_the_open);
        RUN(test_redis__an_unreachable_server_opens_unavailable_and_fails_fast);
        RUN(test_redis__an_outage_fails_fast_and_reconnects_by_itself);
        RUN(test_redis__a_hung_server_times_out_once_then_fails_fast);
        RUN(test_redis__eight_threads_share_a_pool_of_two);
        rs_stop(&srv);
    }
    return test_done();
}
