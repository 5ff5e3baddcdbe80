/* redis.c — the pooled, self-healing connection to Redis described in
 * redis.h: connecting (timeouts, AUTH, SELECT, PING), the pool and its
 * generations, the watchdog thread (PING while up, reconnect with backoff
 * while down), pipelines with the EVALSHA → EVAL fallback.  hiredis errors
 * become om_err here and in redis_reply.c (error replies), nowhere else.
 *
 * Locking: r->mu guards the pool (idle list, counts), the status fields and
 * the watchdog's wake-up; it is never held across I/O.  r->available is
 * atomic so that the fast "down: fail now" check costs one load.  A
 * connection carries the generation it was made in; r->gen moves on at
 * every outage, and a connection of an older generation is closed when it
 * comes back instead of returning to the pool.
 */
#include "cache/redis.h"

#include "core/log.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct conn {
    redisContext *c;
    uint64_t gen;
    bool pooled;                   /* came from the idle list (not made now) */
    struct conn *next;
};

struct om_redis {
    struct om_redis_url url;
    char password[OM_REDIS_SECRET_MAX + 1];
    unsigned pool_max, connect_ms, command_ms, backoff_min, backoff_max, ping_ms;
    const char *who;
    void (*on_up)(void *ud);
    void *ud;

    pthread_mutex_t mu;
    pthread_cond_t pool_cond;      /* a connection came back (clock: monotonic) */
    pthread_cond_t dog_cond;       /* wake the watchdog: down, or closing */
    struct conn *idle;             /* owned */
    unsigned open;                 /* connections that exist (idle + in use) */
    uint64_t gen;
    atomic_bool available;
    bool recheck;                  /* the server closed pooled connections: on_up */
    bool stop;
    pthread_t dog;
    bool dog_started;
    /* status, under mu */
    int64_t since_ms;
    uint64_t outages, reconnects;
    char last_error[160];
    char where[OM_REDIS_HOST_MAX + 16];
};

/* ---- small helpers -------------------------------------------------------- */

static void deadline_in(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static struct timeval tv_of(unsigned ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* What a failed context says; a socket timeout reads as one. */
static void wire_error(char *why, size_t whysz, const char *what, const redisContext *c,
                       unsigned timeout_ms)
{
    if (c->err == REDIS_ERR_IO && strcmp(c->errstr, strerror(EAGAIN)) == 0)
        snprintf(why, whysz, "%s: no answer within %u ms", what, timeout_ms);
    else
        snprintf(why, whysz, "%s: %s", what, c->errstr[0] ? c->errstr : "no reply");
}

/* ---- connecting ----------------------------------------------------------- */

/* Run one command on a fresh connection during the handshake; OM_OK for a
 * non-error reply, the mapped error (text into why) otherwise. */
static int handshake_cmd(redisContext *c, unsigned timeout_ms, int argc, const char **argv,
                         const size_t *lens, char *why, size_t whysz)
{
    redisReply *rp = redisCommandArgv(c, argc, argv, lens); /* freed below */
    int err = OM_OK;

    if (rp == NULL) {
        wire_error(why, whysz, argv[0], c, timeout_ms);
        err = OM_ERR_UNAVAILABLE;
    } else if (rp->type == REDIS_REPLY_ERROR) {
        char msg[120];
        om_redis__shown(msg, sizeof(msg), rp->str != NULL ? rp->str : "", rp->len);
        snprintf(why, whysz, "%s: %s", argv[0], msg);
        err = om_redis__err_of_reply(rp);
        if (err == OM_ERR_IO && strcmp(argv[0], "SELECT") == 0)
            err = OM_ERR_INVALID; /* "DB index is out of range" */
        if (err == OM_ERR_TIMEOUT)
            err = OM_ERR_UNAVAILABLE; /* still loading its data: try again later */
    }
    freeReplyObject(rp);
    return err;
}

/* A new connection, authenticated, on the right database, answering PING.
 * *out owned by the caller (redisFree). */
static int conn_open(struct om_redis *r, redisContext **out, char *why, size_t whysz)
{
    redisContext *c = NULL;
    char dbs[16];
    int err = OM_OK;

    *out = NULL;
    why[0] = '\0';
    c = r->url.is_unix ? redisConnectUnixWithTimeout(r->url.path, tv_of(r->connect_ms))
                       : redisConnectWithTimeout(r->url.host, (int)r->url.port,
                                                 tv_of(r->connect_ms));
    if (c == NULL) {
        err = OM_ERR_NOMEM;
        snprintf(why, whysz, "out of memory");
        goto done;
    }
    if (c->err != 0) {
        snprintf(why, whysz, "connect: %s", c->errstr);
        err = OM_ERR_UNAVAILABLE;
        goto done;
    }
    if (redisSetTimeout(c, tv_of(r->command_ms)) != REDIS_OK ||
        (!r->url.is_unix && redisEnableKeepAlive(c) != REDIS_OK)) {
        snprintf(why, whysz, "socket options: %s", c->errstr);
        err = OM_ERR_UNAVAILABLE;
        goto done;
    }
    if (r->password[0] != '\0') {
        const char *av[3] = {"AUTH", r->url.user, r->password};
        size_t al[3] = {4, strlen(r->url.user), strlen(r->password)};
        if (r->url.user[0] != '\0')
            err = handshake_cmd(c, r->command_ms, 3, av, al, why, whysz);
        else {
            av[1] = r->password;
            al[1] = al[2];
            err = handshake_cmd(c, r->command_ms, 2, av, al, why, whysz);
        }
        if (err != OM_OK)
            goto done;
    }
    if (r->url.db != 0) {
        snprintf(dbs, sizeof(dbs), "%u", r->url.db);
        const char *av[2] = {"SELECT", dbs};
        size_t al[2] = {6, strlen(dbs)};
        if ((err = handshake_cmd(c, r->command_ms, 2, av, al, why, whysz)) != OM_OK)
            goto done;
    }
    {
        const char *av[1] = {"PING"};
        size_t al[1] = {4};
        if ((err = handshake_cmd(c, r->command_ms, 1, av, al, why, whysz)) != OM_OK)
            goto done;
    }
    *out = c;
    c = NULL;
done:
    if (c != NULL)
        redisFree(c);
    return err;
}

/* ---- state changes -------------------------------------------------------- */

/* A command failed on the wire: down now (once per outage). */
static void mark_down(struct om_redis *r, const char *why)
{
    struct conn *idle = NULL;
    bool changed = false;

    pthread_mutex_lock(&r->mu);
    snprintf(r->last_error, sizeof(r->last_error), "%s", why);
    if (atomic_load(&r->available)) {
        atomic_store(&r->available, false);
        r->gen++;
        r->outages++;
        r->since_ms = om_now_ms();
        idle = r->idle; /* same server: drop them all */
        r->idle = NULL;
        changed = true;
        pthread_cond_signal(&r->dog_cond);
    }
    for (struct conn *k = idle; k != NULL; k = k->next)
        r->open--;
    pthread_mutex_unlock(&r->mu);
    while (idle != NULL) {
        struct conn *next = idle->next;
        redisFree(idle->c);
        free(idle);
        idle = next;
    }
    if (changed)
        om_log_kv(OM_LOG_WARN,
                  "redis: unavailable; serving what the store has, coordinating only this "
                  "replica's clients until it is back",
                  "who", r->who, "redis", r->where, "error", why, NULL);
}

/* A working connection c (consumed): the watchdog's, or the open's
 * (first: not logged as a return). */
static void mark_up(struct om_redis *r, redisContext *c, bool first)
{
    struct conn *k = calloc(1, sizeof(*k)); /* owned by the pool */
    bool changed = false;

    if (k == NULL) {
        redisFree(c);
        return;
    }
    k->c = c;
    pthread_mutex_lock(&r->mu);
    k->gen = r->gen;
    k->next = r->idle;
    r->idle = k;
    r->open++;
    if (!atomic_load(&r->available)) {
        atomic_store(&r->available, true);
        r->reconnects += first ? 0 : 1;
        r->since_ms = om_now_ms();
        changed = !first;
    }
    pthread_cond_broadcast(&r->pool_cond);
    pthread_mutex_unlock(&r->mu);
    if (changed)
        om_log_kv(OM_LOG_INFO, "redis: available again", "who", r->who, "redis", r->where,
                  NULL);
}

/* ---- the pool ------------------------------------------------------------- */

static int checkout(struct om_redis *r, struct conn **out)
{
    struct timespec dl;
    struct conn *k = NULL;
    bool make = false, waited = false;
    int err = OM_OK;

    *out = NULL;
    if (!atomic_load(&r->available))
        return OM_ERR_UNAVAILABLE;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (!atomic_load(&r->available)) {
            err = OM_ERR_UNAVAILABLE;
            break;
        }
        if (r->idle != NULL) {
            k = r->idle;
            r->idle = k->next;
            k->next = NULL;
            k->pooled = true;
            break;
        }
        if (r->open < r->pool_max) {
            r->open++;
            make = true;
            break;
        }
        if (!waited) {
            deadline_in(&dl, r->command_ms);
            waited = true;
        }
        if (pthread_cond_timedwait(&r->pool_cond, &r->mu, &dl) == ETIMEDOUT) {
            err = OM_ERR_TIMEOUT;
            break;
        }
    }
    uint64_t gen = r->gen;
    pthread_mutex_unlock(&r->mu);
    if (make) {
        char why[160];
        redisContext *c = NULL;
        k = calloc(1, sizeof(*k)); /* owned by the pool */
        err = k == NULL ? OM_ERR_NOMEM : conn_open(r, &c, why, sizeof(why));
        if (err != OM_OK) {
            free(k);
            k = NULL;
            pthread_mutex_lock(&r->mu);
            r->open--;
            pthread_cond_signal(&r->pool_cond);
            pthread_mutex_unlock(&r->mu);
            if (err == OM_ERR_UNAVAILABLE || err == OM_ERR_AUTH || err == OM_ERR_INVALID) {
                mark_down(r, why);
                err = OM_ERR_UNAVAILABLE;
            }
        } else {
            k->c = c;
            k->gen = gen;
        }
    }
    *out = k;
    return err;
}

/* An idle connection has no request in flight, so anything to read on it
 * — the EOF or reset of a server that closed it (restarted, killed the
 * client, its `timeout`) — means it is dead.  Checked before a command is
 * sent: one poll(2) with no wait. */
static bool idle_conn_dead(const struct conn *k)
{
    struct pollfd p = {.fd = k->c->fd, .events = POLLIN};
    if (k->c->err != 0)
        return true;
    if (poll(&p, 1, 0) < 0)
        return false; /* cannot tell: use it, the wire will say */
    return (p.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* Close k (broken or dead), not back to the pool. */
static void discard(struct om_redis *r, struct conn *k)
{
    pthread_mutex_lock(&r->mu);
    r->open--;
    pthread_cond_signal(&r->pool_cond);
    pthread_mutex_unlock(&r->mu);
    redisFree(k->c);
    free(k);
}

/* A pooled connection of the current generation was found closed by the
 * server (restarted, most likely, maybe empty): the other idle ones went
 * to the same server, so they go too, and the watchdog runs on_up after
 * its next PING answers, as after an outage (the index checks its data). */
static void server_closed(struct om_redis *r, const struct conn *dead)
{
    struct conn *idle = NULL;
    bool first = false;

    pthread_mutex_lock(&r->mu);
    if (dead->gen == r->gen && atomic_load(&r->available)) {
        r->gen++;
        idle = r->idle;
        r->idle = NULL;
        for (struct conn *k = idle; k != NULL; k = k->next)
            r->open--;
        r->recheck = true;
        first = true;
        pthread_cond_signal(&r->dog_cond);
        pthread_cond_broadcast(&r->pool_cond);
    }
    pthread_mutex_unlock(&r->mu);
    while (idle != NULL) {
        struct conn *next = idle->next;
        redisFree(idle->c);
        free(idle);
        idle = next;
    }
    if (first)
        om_log_kv(OM_LOG_INFO, "redis: the server closed our idle connections (restarted?): "
                  "connecting again", "who", r->who, "redis", r->where, NULL);
}

/* checkout, skipping pooled connections found dead (closed quietly: the
 * server answered nobody's command on them; a short outage that is over
 * is no outage).  At most pool_max of them, then a fresh one. */
static int checkout_live(struct om_redis *r, struct conn **out)
{
    int err = OM_OK;
    for (unsigned i = 0; i <= r->pool_max; i++) {
        if ((err = checkout(r, out)) != OM_OK || !(*out)->pooled || !idle_conn_dead(*out))
            return err;
        server_closed(r, *out);
        discard(r, *out);
        *out = NULL;
    }
    return err == OM_OK ? OM_ERR_UNAVAILABLE : err;
}

/* Give k back; broken (an error on the wire) or of an older generation:
 * close it instead. */
static void checkin(struct om_redis *r, struct conn *k, bool broken)
{
    pthread_mutex_lock(&r->mu);
    if (broken || k->gen != r->gen || !atomic_load(&r->available)) {
        pthread_mutex_unlock(&r->mu);
        discard(r, k);
        return;
    }
    k->pooled = false;
    k->next = r->idle;
    r->idle = k;
    pthread_cond_signal(&r->pool_cond);
    pthread_mutex_unlock(&r->mu);
}

/* ---- commands ------------------------------------------------------------- */

void om_redis_cmd_init(struct om_redis_cmd *c, const struct om_redis_script *script, int nkeys)
{
    c->script = script;
    c->nkeys = nkeys;
    c->argc = 0;
    c->n_nums = 0;
    c->xargv = NULL;
    c->xlen = NULL;
    c->xargc = 0;
}

void om_redis_arg_extra(struct om_redis_cmd *c, const char *const *argv, const size_t *len,
                        size_t n)
{
    assert(c->xargc == 0);
    c->xargv = argv;
    c->xlen = len;
    c->xargc = n;
}

void om_redis_arg(struct om_redis_cmd *c, const char *s, size_t len)
{
    assert(c->argc < OM_REDIS_ARGV_MAX);
    c->argv[c->argc] = s;
    c->len[c->argc] = len;
    c->argc++;
}

void om_redis_arg_str(struct om_redis_cmd *c, const char *s)
{
    om_redis_arg(c, s, strlen(s));
}

void om_redis_arg_i64(struct om_redis_cmd *c, int64_t v)
{
    assert(c->n_nums < OM_REDIS_NUMS_MAX);
    char *buf = c->nums[c->n_nums++];
    int n = snprintf(buf, sizeof(c->nums[0]), "%" PRId64, v);
    om_redis_arg(c, buf, (size_t)n);
}

void om_redis_script_init(struct om_redis_script *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";

    if (EVP_Digest(s->src, strlen(s->src), md, &n, EVP_sha1(), NULL) != 1 || n != 20) {
        s->sha[0] = '\0'; /* EVALSHA "" answers NOSCRIPT: every call goes by EVAL */
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        s->sha[2 * i] = hex[md[i] >> 4];
        s->sha[2 * i + 1] = hex[md[i] & 15];
    }
    s->sha[40] = '\0';
}

/* Append one command to c's output buffer: as EVALSHA (or, eval, EVAL). */
static int append(redisContext *c, const struct om_redis_cmd *cmd, bool eval)
{
    const char *av_fixed[OM_REDIS_ARGV_MAX + 3];
    size_t al_fixed[OM_REDIS_ARGV_MAX + 3];
    const char **av = av_fixed;
    size_t *al = al_fixed;
    size_t total = (size_t)cmd->argc + 3 + cmd->xargc;
    char nk[16];
    int n = 0, err = OM_OK;

    if (cmd->xargc > 0) {
        if (total > (size_t)INT32_MAX) {
            err = OM_ERR_TOOBIG;
            goto done;
        }
        av = malloc(total * sizeof(*av)); /* freed below */
        al = malloc(total * sizeof(*al));
        if (av == NULL || al == NULL) {
            err = OM_ERR_NOMEM;
            goto done;
        }
    }
    if (cmd->script != NULL) {
        snprintf(nk, sizeof(nk), "%d", cmd->nkeys);
        av[n] = eval ? "EVAL" : "EVALSHA";
        al[n] = strlen(av[n]);
        n++;
        av[n] = eval ? cmd->script->src : cmd->script->sha;
        al[n] = strlen(av[n]);
        n++;
        av[n] = nk;
        al[n++] = strlen(nk);
    }
    for (int i = 0; i < cmd->argc; i++) {
        av[n] = cmd->argv[i];
        al[n++] = cmd->len[i];
    }
    for (size_t i = 0; i < cmd->xargc; i++) {
        av[n] = cmd->xargv[i];
        al[n++] = cmd->xlen[i];
    }
    if (redisAppendCommandArgv(c, n, av, al) != REDIS_OK)
        err = OM_ERR_NOMEM;
done:
    if (av != av_fixed)
        free(av);
    if (al != al_fixed)
        free(al);
    return err;
}

static bool is_noscript(const redisReply *rp)
{
    return rp != NULL && rp->type == REDIS_REPLY_ERROR && rp->str != NULL &&
           strncmp(rp->str, "NOSCRIPT", 8) == 0;
}

/* Send and read; on a wire failure *why says it, and *unsent whether not
 * one byte of the commands left (a failed write(2) writes nothing, so
 * only the first one's failure says so): then the server cannot have run
 * any of them. */
static int pipeline(redisContext *c, struct om_redis_cmd *cmds, size_t n, redisReply **replies,
                    unsigned timeout_ms, char *why, size_t whysz, bool *unsent)
{
    size_t retry = 0;
    int err = OM_OK, done = 0;

    *unsent = false;
    for (size_t i = 0; err == OM_OK && i < n; i++)
        err = append(c, &cmds[i], false);
    for (bool first = true; err == OM_OK && !done; first = false) {
        if (redisBufferWrite(c, &done) != REDIS_OK) {
            wire_error(why, whysz, "write", c, timeout_ms);
            err = OM_ERR_UNAVAILABLE;
            *unsent = first;
        }
    }
    for (size_t i = 0; err == OM_OK && i < n; i++) {
        void *rp = NULL;
        if (redisGetReply(c, &rp) != REDIS_OK || rp == NULL) {
            wire_error(why, whysz, "reply", c, timeout_ms);
            err = OM_ERR_UNAVAILABLE;
        }
        replies[i] = rp;
        retry += cmds[i].script != NULL && is_noscript(replies[i]);
    }
    /* Scripts the server does not know (yet): once more as EVAL. */
    for (size_t i = 0; err == OM_OK && retry > 0 && i < n; i++) {
        if (cmds[i].script != NULL && is_noscript(replies[i]))
            err = append(c, &cmds[i], true);
    }
    for (size_t i = 0; err == OM_OK && retry > 0 && i < n; i++) {
        void *rp = NULL;
        if (cmds[i].script == NULL || !is_noscript(replies[i]))
            continue;
        if (redisGetReply(c, &rp) != REDIS_OK || rp == NULL) {
            wire_error(why, whysz, "reply", c, timeout_ms);
            err = OM_ERR_UNAVAILABLE;
        }
        freeReplyObject(replies[i]);
        replies[i] = rp;
    }
    return err;
}

int om_redis_exec(struct om_redis *r, struct om_redis_cmd *cmds, size_t n, redisReply **replies)
{
    struct conn *k = NULL;
    char why[160] = "";
    int err = OM_OK;

    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    /* Once more (at most) when the commands cannot have reached the
     * server: a write that sent nothing (redis.h, "Retries"). */
    for (int attempt = 0; attempt < 2; attempt++) {
        bool unsent = false;
        if ((err = checkout_live(r, &k)) != OM_OK)
            break;
        err = pipeline(k->c, cmds, n, replies, r->command_ms, why, sizeof(why), &unsent);
        checkin(r, k, err != OM_OK);
        if (err == OM_OK)
            break;
        om_redis_replies_free(replies, n);
        if (err != OM_ERR_UNAVAILABLE)
            break;
        if (!unsent || attempt > 0) {
            mark_down(r, why);
            break;
        }
        om_log_kv(OM_LOG_DEBUG, "redis: a connection broke before a command left: once more",
                  "who", r->who, "redis", r->where, "error", why, NULL);
    }
    return err;
}

void om_redis_replies_free(redisReply **replies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
}

/* ---- the watchdog --------------------------------------------------------- */

static void *watchdog(void *arg)
{
    struct om_redis *r = arg;
    unsigned backoff = r->backoff_min;
    unsigned seed = (unsigned)om_now_us();

    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct timespec dl;
        bool up = atomic_load(&r->available);
        unsigned wait = up ? r->ping_ms : backoff / 2 + (unsigned)rand_r(&seed) % (backoff / 2 + 1);
        deadline_in(&dl, wait);
        /* Woken early by mark_down (reconnect soon) or close. */
        /* Woken early by server_closed too (check the data now). */
        while (!r->stop && atomic_load(&r->available) == up && !r->recheck &&
               pthread_cond_timedwait(&r->dog_cond, &r->mu, &dl) != ETIMEDOUT)
            ;
        if (r->stop)
            break;
        up = atomic_load(&r->available);
        bool recheck = r->recheck;
        r->recheck = false;
        pthread_mutex_unlock(&r->mu);
        if (up) {
            struct om_redis_cmd ping;
            redisReply *rp = NULL;
            om_redis_cmd_init(&ping, NULL, 0);
            om_redis_arg_str(&ping, "PING");
            if (om_redis_exec(r, &ping, 1, &rp) == OM_OK) {
                backoff = r->backoff_min;
                if (recheck && r->on_up != NULL)
                    r->on_up(r->ud); /* an outage we did not see: the same check */
            }
            om_redis_replies_free(&rp, 1);
        } else {
            char why[160];
            redisContext *c = NULL;
            if (conn_open(r, &c, why, sizeof(why)) == OM_OK) {
                mark_up(r, c, false);
                backoff = r->backoff_min;
                if (r->on_up != NULL)
                    r->on_up(r->ud);
            } else {
                pthread_mutex_lock(&r->mu);
                if (strcmp(r->last_error, why) != 0)
                    om_log_kv(OM_LOG_DEBUG, "redis: still unavailable", "who", r->who, "redis",
                              r->where, "error", why, NULL);
                snprintf(r->last_error, sizeof(r->last_error), "%s", why);
                pthread_mutex_unlock(&r->mu);
                backoff = backoff >= r->backoff_max / 2 ? r->backoff_max : backoff * 2;
            }
        }
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- open / close / status ------------------------------------------------ */

int om_redis_open(struct om_redis **out, const struct om_redis_opts *o)
{
    struct om_redis *r = calloc(1, sizeof(*r)); /* owned by *out, or closed below */
    pthread_condattr_t ca;
    redisContext *c = NULL;
    char why[160] = "";
    int err = OM_OK;

    *out = NULL;
    if (r == NULL)
        return OM_ERR_NOMEM;
    r->url = o->url;
    snprintf(r->password, sizeof(r->password), "%s",
             o->password != NULL ? o->password : o->url.password);
    r->pool_max = o->pool_max ? o->pool_max : OM_REDIS_POOL_DEFAULT;
    r->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 500;
    r->command_ms = o->command_timeout_ms ? o->command_timeout_ms : 1000;
    r->backoff_min = o->backoff_min_ms ? o->backoff_min_ms : 100;
    r->backoff_max = o->backoff_max_ms ? o->backoff_max_ms : 5000;
    if (r->backoff_max < r->backoff_min)
        r->backoff_max = r->backoff_min;
    r->ping_ms = o->ping_interval_ms ? o->ping_interval_ms : 1000;
    r->who = o->who != NULL ? o->who : "redis";
    r->on_up = o->on_up;
    r->ud = o->ud;
    if (r->url.is_unix)
        snprintf(r->where, sizeof(r->where), "unix:%s?db=%u", r->url.path, r->url.db);
    else
        snprintf(r->where, sizeof(r->where), strchr(r->url.host, ':') ? "[%s]:%u/%u" : "%s:%u/%u",
                 r->url.host, r->url.port, r->url.db);
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->pool_cond, &ca);
    pthread_cond_init(&r->dog_cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&r->available, false);
    r->since_ms = om_now_ms();

    err = conn_open(r, &c, why, sizeof(why));
    if (err == OM_ERR_AUTH || err == OM_ERR_INVALID || err == OM_ERR_NOMEM) {
        om_log_kv(OM_LOG_ERROR, "redis: refused", "who", r->who, "redis", r->where, "error", why,
                  NULL);
        goto done;
    }
    if (err == OM_OK) {
        mark_up(r, c, true);
        om_log_kv(OM_LOG_INFO, "redis: connected", "who", r->who, "redis", r->where, NULL);
    } else {
        snprintf(r->last_error, sizeof(r->last_error), "%s", why);
        om_log_kv(OM_LOG_WARN,
                  "redis: unavailable at start; serving what the store has, retrying in the "
                  "background",
                  "who", r->who, "redis", r->where, "error", why, NULL);
        err = OM_OK;
    }
    if (pthread_create(&r->dog, NULL, watchdog, r) != 0) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    r->dog_started = true;
    *out = r;
    r = NULL;
done:
    om_redis_close(r);
    return err;
}

void om_redis_close(struct om_redis *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->dog_cond);
    pthread_mutex_unlock(&r->mu);
    if (r->dog_started)
        pthread_join(r->dog, NULL);
    while (r->idle != NULL) {
        struct conn *next = r->idle->next;
        redisFree(r->idle->c);
        free(r->idle);
        r->idle = next;
    }
    explicit_bzero(r->password, sizeof(r->password));
    explicit_bzero(&r->url, sizeof(r->url));
    pthread_cond_destroy(&r->pool_cond);
    pthread_cond_destroy(&r->dog_cond);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

bool om_redis_available(struct om_redis *r)
{
    return atomic_load(&r->available);
}

void om_redis_status(struct om_redis *r, struct om_redis_status *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&r->mu);
    out->available = atomic_load(&r->available);
    out->since_ms = r->since_ms;
    out->outages = r->outages;
    out->reconnects = r->reconnects;
    out->connections = r->open;
    snprintf(out->last_error, sizeof(out->last_error), "%s", r->last_error);
    snprintf(out->where, sizeof(out->where), "%s", r->where);
    pthread_mutex_unlock(&r->mu);
}

bool om_redis_wait_available(struct om_redis *r, unsigned timeout_ms)
{
    int64_t end = om_now_us() + (int64_t)timeout_ms * 1000;
    while (!atomic_load(&r->available) && om_now_us() < end) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return atomic_load(&r->available);
}
