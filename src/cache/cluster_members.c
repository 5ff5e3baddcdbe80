/* cluster_members.c — the heartbeats, the listing of live replicas and of
 * download leases, and the health probes (see cluster_members.h).
 *
 * One beat (every OM_CLUSTER_BEAT_MS, on the struct's own thread):
 *   1. ask the host what to say (in flight, bytes served, index health) and
 *      probe the bucket (a stat of an object nobody stores: found or not,
 *      the store answered);
 *   2. one pipeline: SET om:rp:<id> <json> PX OM_CLUSTER_EXPIRY_MS,
 *      ZADD om:replicas <now> <id>, ZREMRANGEBYSCORE om:replicas -inf
 *      <now - 10 expiries> (members that stopped beating long ago);
 *   3. count the live replicas and the leases (for /metrics).
 * A failed beat is not logged (redis.c logs the outage once); the next one
 * simply tries again.
 */
#include "cache/cluster_members.h"

#include "cache/redis.h"
#include "cache/store.h"
#include "core/log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define P "om:"
#define RP_JSON_MAX 2048
#define KEY_MAX (OM_MEMBERS_ID_MAX + 16)
#define SCAN_ROUNDS_MAX 64              /* SCAN calls one listing of leases makes */
#define FLIGHT_COUNT_MAX 10000          /* leases a beat counts at most */

struct om_members {
    struct om_members_host host;        /* copied; pointers borrowed */
    char id[OM_MEMBERS_ID_MAX];
    pthread_mutex_t mu;                 /* guards stop */
    pthread_cond_t cond;                /* CLOCK_MONOTONIC */
    bool stop;
    pthread_t thread;
    bool started;
    atomic_uint_fast64_t n_replicas, n_flights;
    atomic_bool bucket_ok;              /* the last beat's probe */
    atomic_int_fast64_t bucket_lat_us;  /* -1: not probed yet */
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void om_members_replica_id(const struct om_config *cfg, char *out, size_t outsz)
{
    char host[128] = "";
    int n;

    if (cfg->cluster_peer_url != NULL && cfg->cluster_peer_url[0] != '\0') {
        n = snprintf(out, outsz, "%s", cfg->cluster_peer_url);
    } else {
        if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "localhost");
        n = snprintf(out, outsz, "%s-%ld", host, (long)getpid());
    }
    if (n < 0 || (size_t)n >= outsz)
        out[0] = '\0';
}

const char *om_members_id(const struct om_members *c)
{
    return c != NULL ? c->id : "";
}

int om_members_store_probe(struct om_store *st, int64_t *latency_us)
{
    static const char probe[] =
        "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    struct om_store_stat ss;
    om_digest d;
    int64_t t0 = mono_us();
    int err;

    if (om_digest_parse(&d, probe, sizeof(probe) - 1) != OM_OK)
        return OM_ERR_INVALID;
    err = om_store_stat(st, &d, &ss);
    *latency_us = mono_us() - t0;
    return err == OM_OK || err == OM_ERR_NOTFOUND ? OM_OK : err;
}

/* ---- one beat -------------------------------------------------------------------- */

static int beat(struct om_members *c)
{
    struct om_members_self me = {0};
    struct om_redis_cmd cmds[3];
    redisReply *rps[3] = {NULL};
    char key[KEY_MAX], *js = NULL;
    int64_t now = wall_ms(), lat = 0;
    const char *peer = c->host.cfg->cluster_peer_url;
    int err;

    if (c->host.self != NULL)
        c->host.self(c->host.ud, &me);
    bool bucket_ok = c->host.store == NULL || om_members_store_probe(c->host.store, &lat) == OM_OK;
    atomic_store(&c->bucket_ok, bucket_ok);
    atomic_store(&c->bucket_lat_us, lat);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b, s:b}", "id", c->id,
                          "peer_url", peer != NULL ? peer : "", "version", OM_VERSION,
                          "started_at", (json_int_t)c->host.started_ms, "last_seen",
                          (json_int_t)now, "in_flight", (json_int_t)me.in_flight,
                          "bytes_served", (json_int_t)me.bytes_served, "index_ok",
                          me.index_ok, "bucket_ok", bucket_ok); /* freed below */
    if (o == NULL || (js = json_dumps(o, JSON_COMPACT)) == NULL) { /* freed below */
        json_decref(o);
        return OM_ERR_NOMEM;
    }
    json_decref(o);
    snprintf(key, sizeof(key), P "rp:%s", c->id);
    om_redis_cmd_init(&cmds[0], NULL, 0);
    om_redis_arg_str(&cmds[0], "SET");
    om_redis_arg_str(&cmds[0], key);
    om_redis_arg_str(&cmds[0], js);
    om_redis_arg_str(&cmds[0], "PX");
    om_redis_arg_i64(&cmds[0], OM_CLUSTER_EXPIRY_MS);
    om_redis_cmd_init(&cmds[1], NULL, 0);
    om_redis_arg_str(&cmds[1], "ZADD");
    om_redis_arg_str(&cmds[1], P "replicas");
    om_redis_arg_i64(&cmds[1], now);
    om_redis_arg_str(&cmds[1], c->id);
    om_redis_cmd_init(&cmds[2], NULL, 0);
    om_redis_arg_str(&cmds[2], "ZREMRANGEBYSCORE");
    om_redis_arg_str(&cmds[2], P "replicas");
    om_redis_arg_str(&cmds[2], "-inf");
    om_redis_arg_i64(&cmds[2], now - 10 * OM_CLUSTER_EXPIRY_MS);
    err = om_redis_exec(c->host.redis, cmds, 3, rps);
    for (size_t i = 0; i < 3 && err == OM_OK; i++)
        err = om_redis_reply_ok(rps[i], "cluster: heartbeat");
    om_redis_replies_free(rps, 3);
    free(js);
    return err;
}

/* Count the live replicas and the leases after a beat (bounded). */
static void count(struct om_members *c)
{
    struct om_members_replica *rs = calloc(OM_MEMBERS_REPLICAS_MAX, sizeof(*rs)); /* freed below */
    size_t n = 0;
    bool trunc = false;

    if (rs != NULL && om_members_replicas(c, rs, OM_MEMBERS_REPLICAS_MAX, &n) == OM_OK)
        atomic_store(&c->n_replicas, n);
    free(rs);
    /* Leases: SCAN without reading each value. */
    uint64_t nf = 0;
    char cursor[32] = "0";
    for (int round = 0; round < SCAN_ROUNDS_MAX && nf < FLIGHT_COUNT_MAX; round++) {
        struct om_redis_cmd cmd;
        redisReply *rp = NULL;
        om_redis_cmd_init(&cmd, NULL, 0);
        om_redis_arg_str(&cmd, "SCAN");
        om_redis_arg_str(&cmd, cursor);
        om_redis_arg_str(&cmd, "MATCH");
        om_redis_arg_str(&cmd, P "fl:*");
        om_redis_arg_str(&cmd, "COUNT");
        om_redis_arg_i64(&cmd, 1000);
        if (om_redis_exec(c->host.redis, &cmd, 1, &rp) != OM_OK ||
            om_redis_reply_array(rp, "cluster: scan", 2) != OM_OK || rp->elements != 2 ||
            om_redis_reply_copy(rp->element[0], "cluster: scan cursor", cursor,
                                sizeof(cursor)) != OM_OK ||
            om_redis_reply_array(rp->element[1], "cluster: scan keys", 100000) != OM_OK) {
            om_redis_replies_free(&rp, 1);
            trunc = true;
            break;
        }
        nf += rp->element[1]->elements;
        om_redis_replies_free(&rp, 1);
        if (strcmp(cursor, "0") == 0)
            break;
    }
    if (!trunc)
        atomic_store(&c->n_flights, nf);
}

static void *beat_thread(void *arg)
{
    struct om_members *c = arg;

    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += OM_CLUSTER_BEAT_MS / 1000;
        ts.tv_nsec += (long)(OM_CLUSTER_BEAT_MS % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cond, &c->mu, &ts);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->mu);
        if (beat(c) == OM_OK)
            count(c);
        else {
            atomic_store(&c->n_replicas, 0);
            atomic_store(&c->n_flights, 0);
        }
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int om_members_start(struct om_members **out, const struct om_members_host *host)
{
    struct om_members *c = calloc(1, sizeof(*c)); /* owned by *out */
    pthread_condattr_t ca;

    *out = NULL;
    if (c == NULL)
        return OM_ERR_NOMEM;
    c->host = *host;
    om_members_replica_id(host->cfg, c->id, sizeof(c->id));
    if (c->id[0] == '\0') {
        free(c);
        om_log(OM_LOG_ERROR, "cluster: the replica id (cluster.peer_url) is too long");
        return OM_ERR_TOOBIG;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&c->n_replicas, 0);
    atomic_init(&c->n_flights, 0);
    atomic_init(&c->bucket_ok, false);
    atomic_init(&c->bucket_lat_us, -1);
    if (beat(c) == OM_OK) /* seen at once (Redis down: the thread keeps trying) */
        count(c);
    if (pthread_create(&c->thread, NULL, beat_thread, c) != 0) {
        om_members_stop(c);
        return OM_ERR_NOMEM;
    }
    c->started = true;
    om_log_kv(OM_LOG_INFO, "cluster: heartbeat started", "replica", c->id, NULL);
    *out = c;
    return OM_OK;
}

void om_members_stop(struct om_members *c)
{
    if (c == NULL)
        return;
    if (c->started) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    if (om_redis_available(c->host.redis)) { /* leave at once instead of expiring */
        struct om_redis_cmd cmds[2];
        redisReply *rps[2] = {NULL};
        char key[KEY_MAX];
        snprintf(key, sizeof(key), P "rp:%s", c->id);
        om_redis_cmd_init(&cmds[0], NULL, 0);
        om_redis_arg_str(&cmds[0], "DEL");
        om_redis_arg_str(&cmds[0], key);
        om_redis_cmd_init(&cmds[1], NULL, 0);
        om_redis_arg_str(&cmds[1], "ZREM");
        om_redis_arg_str(&cmds[1], P "replicas");
        om_redis_arg_str(&cmds[1], c->id);
        (void)om_redis_exec(c->host.redis, cmds, 2, rps);
        om_redis_replies_free(rps, 2);
    }
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void om_members_last_counts(struct om_members *c, uint64_t *replicas, uint64_t *flights)
{
    *replicas = c != NULL ? atomic_load(&c->n_replicas) : 0;
    *flights = c != NULL ? atomic_load(&c->n_flights) : 0;
}

void om_members_last_bucket(struct om_members *c, bool *ok, int64_t *latency_us)
{
    *ok = atomic_load(&c->bucket_ok);
    *latency_us = atomic_load(&c->bucket_lat_us);
}

int om_members_gc_holder(struct om_members *c, char *out, size_t outsz)
{
    struct om_redis_cmd cmd;
    redisReply *rp = NULL;
    int err;

    out[0] = '\0';
    om_redis_cmd_init(&cmd, NULL, 0);
    om_redis_arg_str(&cmd, "GET");
    om_redis_arg_str(&cmd, P "lock:gc");
    if ((err = om_redis_exec(c->host.redis, &cmd, 1, &rp)) == OM_OK)
        err = om_redis_reply_copy(rp, "cluster: gc lease", out, outsz);
    if (err != OM_OK)
        out[0] = '\0';
    om_redis_replies_free(&rp, 1);
    return err;
}

/* ---- listings ------------------------------------------------------------------------ */

static void copy_str(json_t *o, const char *k, char *out, size_t outsz)
{
    const char *v = json_string_value(json_object_get(o, k));
    snprintf(out, outsz, "%s", v != NULL ? v : "");
}

static int64_t get_int(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* A heartbeat's JSON into r; false when it does not parse. */
static bool parse_rp(const char *s, size_t len, struct om_members_replica *r)
{
    json_t *o = json_loadb(s, len, 0, NULL); /* freed below */
    if (!json_is_object(o)) {
        json_decref(o);
        return false;
    }
    memset(r, 0, sizeof(*r));
    copy_str(o, "id", r->id, sizeof(r->id));
    copy_str(o, "peer_url", r->peer_url, sizeof(r->peer_url));
    copy_str(o, "version", r->version, sizeof(r->version));
    r->started_at = get_int(o, "started_at");
    r->last_seen = get_int(o, "last_seen");
    r->in_flight = (uint64_t)get_int(o, "in_flight");
    r->bytes_served = (uint64_t)get_int(o, "bytes_served");
    r->index_ok = json_is_true(json_object_get(o, "index_ok"));
    r->bucket_ok = json_is_true(json_object_get(o, "bucket_ok"));
    json_decref(o);
    return r->id[0] != '\0';
}

static int cmp_replica(const void *a, const void *b)
{
    return strcmp(((const struct om_members_replica *)a)->id,
                  ((const struct om_members_replica *)b)->id);
}

int om_members_replicas(struct om_members *c, struct om_members_replica *out, size_t max,
                        size_t *n)
{
    struct om_redis_cmd cmd, *gets = NULL;
    redisReply *rp = NULL, **vals = NULL;
    char (*keys)[KEY_MAX] = NULL;
    size_t m = 0;
    int err;

    *n = 0;
    if (max > OM_MEMBERS_REPLICAS_MAX)
        max = OM_MEMBERS_REPLICAS_MAX;
    om_redis_cmd_init(&cmd, NULL, 0);
    om_redis_arg_str(&cmd, "ZRANGEBYSCORE");
    om_redis_arg_str(&cmd, P "replicas");
    om_redis_arg_i64(&cmd, wall_ms() - 10 * OM_CLUSTER_EXPIRY_MS);
    om_redis_arg_str(&cmd, "+inf");
    om_redis_arg_str(&cmd, "LIMIT");
    om_redis_arg_i64(&cmd, 0);
    om_redis_arg_i64(&cmd, (int64_t)max);
    if ((err = om_redis_exec(c->host.redis, &cmd, 1, &rp)) != OM_OK ||
        (err = om_redis_reply_array(rp, "cluster: replicas", max)) != OM_OK)
        goto done;
    m = rp->elements;
    if (m == 0)
        goto done;
    gets = calloc(m, sizeof(*gets));  /* freed below */
    vals = calloc(m, sizeof(*vals));
    keys = calloc(m, sizeof(*keys));
    if (gets == NULL || vals == NULL || keys == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < m; i++) {
        const redisReply *e = rp->element[i];
        snprintf(keys[i], KEY_MAX, P "rp:%.*s", e->type == REDIS_REPLY_STRING &&
                 e->len < OM_MEMBERS_ID_MAX ? (int)e->len : 0, e->str != NULL ? e->str : "");
        om_redis_cmd_init(&gets[i], NULL, 0);
        om_redis_arg_str(&gets[i], "GET");
        om_redis_arg_str(&gets[i], keys[i]);
    }
    if ((err = om_redis_exec(c->host.redis, gets, m, vals)) != OM_OK)
        goto done;
    for (size_t i = 0; i < m && *n < max; i++) {
        const char *s;
        size_t len;
        if (om_redis_reply_str(vals[i], "cluster: heartbeat", RP_JSON_MAX, &s, &len) != OM_OK ||
            !parse_rp(s, len, &out[*n]))
            continue; /* expired: that replica is gone */
        out[*n].self = strcmp(out[*n].id, c->id) == 0;
        (*n)++;
    }
    qsort(out, *n, sizeof(*out), cmp_replica);
done:
    if (vals != NULL)
        om_redis_replies_free(vals, m);
    om_redis_replies_free(&rp, 1);
    free(gets);
    free(vals);
    free(keys);
    return err;
}

/* "<replica_id>|<peer_url>|<epoch>" (split at the last two '|'). */
static void parse_lease(const char *s, size_t len, struct om_members_flight *f)
{
    char buf[OM_MEMBERS_ID_MAX + OM_CLUSTER_URL_MAX + 40];
    char *a, *b;

    snprintf(buf, sizeof(buf), "%.*s", (int)(len < sizeof(buf) ? len : sizeof(buf) - 1), s);
    if ((b = strrchr(buf, '|')) != NULL) {
        *b = '\0';
        snprintf(f->epoch, sizeof(f->epoch), "%s", b + 1);
        if ((a = strrchr(buf, '|')) != NULL) {
            *a = '\0';
            snprintf(f->peer_url, sizeof(f->peer_url), "%s", a + 1);
        }
    }
    snprintf(f->owner, sizeof(f->owner), "%s", buf);
}

/* Value and PTTL of the leases f[0..n) (their digests set). */
static int read_leases(struct om_members *c, struct om_members_flight *f, size_t n)
{
    struct om_redis_cmd *cmds = calloc(2 * n, sizeof(*cmds));   /* freed below */
    redisReply **rps = calloc(2 * n, sizeof(*rps));             /* freed below */
    char (*keys)[OM_DIGEST_MAX + 8] = calloc(n, sizeof(*keys)); /* freed below */
    int err = OM_OK;

    if (cmds == NULL || rps == NULL || keys == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof(keys[i]), P "fl:%s", f[i].digest);
        om_redis_cmd_init(&cmds[2 * i], NULL, 0);
        om_redis_arg_str(&cmds[2 * i], "GET");
        om_redis_arg_str(&cmds[2 * i], keys[i]);
        om_redis_cmd_init(&cmds[2 * i + 1], NULL, 0);
        om_redis_arg_str(&cmds[2 * i + 1], "PTTL");
        om_redis_arg_str(&cmds[2 * i + 1], keys[i]);
    }
    if ((err = om_redis_exec(c->host.redis, cmds, 2 * n, rps)) != OM_OK)
        goto done;
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        long long ttl = -1;
        if (om_redis_reply_str(rps[2 * i], "cluster: lease", 1024, &s, &len) == OM_OK)
            parse_lease(s, len, &f[i]);
        if (om_redis_reply_int(rps[2 * i + 1], "cluster: lease ttl", &ttl) == OM_OK)
            f[i].ttl_ms = ttl < 0 ? -1 : ttl;
    }
done:
    if (rps != NULL)
        om_redis_replies_free(rps, 2 * n);
    free(cmds);
    free(rps);
    free(keys);
    return err;
}

int om_members_flights(struct om_members *c, struct om_members_flight *out, size_t max,
                       size_t *n, bool *truncated)
{
    char cursor[32] = "0";
    int err = OM_OK;

    *n = 0;
    *truncated = false;
    for (int round = 0;; round++) {
        struct om_redis_cmd cmd;
        redisReply *rp = NULL;
        if (round == SCAN_ROUNDS_MAX || *n == max) {
            *truncated = true;
            break;
        }
        om_redis_cmd_init(&cmd, NULL, 0);
        om_redis_arg_str(&cmd, "SCAN");
        om_redis_arg_str(&cmd, cursor);
        om_redis_arg_str(&cmd, "MATCH");
        om_redis_arg_str(&cmd, P "fl:*");
        om_redis_arg_str(&cmd, "COUNT");
        om_redis_arg_i64(&cmd, 500);
        if ((err = om_redis_exec(c->host.redis, &cmd, 1, &rp)) != OM_OK ||
            (err = om_redis_reply_array(rp, "cluster: scan", 2)) != OM_OK || rp->elements != 2 ||
            (err = om_redis_reply_copy(rp->element[0], "cluster: scan cursor", cursor,
                                       sizeof(cursor))) != OM_OK ||
            (err = om_redis_reply_array(rp->element[1], "cluster: scan keys", 100000)) != OM_OK) {
            if (err == OM_OK)
                err = OM_ERR_IO;
            om_redis_replies_free(&rp, 1);
            return err;
        }
        const redisReply *ks = rp->element[1];
        for (size_t i = 0; i < ks->elements && *n < max; i++) {
            const redisReply *k = ks->element[i];
            om_digest d;
            if (k->type != REDIS_REPLY_STRING || k->len <= 6 ||
                om_digest_parse(&d, k->str + 6, k->len - 6) != OM_OK)
                continue; /* not a lease of ours */
            memset(&out[*n], 0, sizeof(out[*n]));
            snprintf(out[*n].digest, sizeof(out[*n].digest), "%s", d.str);
            out[*n].ttl_ms = -1;
            (*n)++;
        }
        if (*n == max && ks->elements > 0)
            *truncated = true;
        om_redis_replies_free(&rp, 1);
        if (strcmp(cursor, "0") == 0 || *truncated)
            break;
    }
    if (*n > 0)
        err = read_leases(c, out, *n);
    return err;
}

int om_members_ping(struct om_members *c, int64_t *latency_us)
{
    struct om_redis_cmd cmd;
    redisReply *rp = NULL;
    int64_t t0 = mono_us();
    int err;

    om_redis_cmd_init(&cmd, NULL, 0);
    om_redis_arg_str(&cmd, "PING");
    if ((err = om_redis_exec(c->host.redis, &cmd, 1, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, "cluster: ping");
    *latency_us = mono_us() - t0;
    om_redis_replies_free(&rp, 1);
    return err;
}
