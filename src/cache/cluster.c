/* cluster.c — see cluster.h: the download lease (three Lua scripts and a
 * GET over our own Redis handle) and the peer stream (one libcurl easy
 * handle per call, on the download's thread).
 */
#include "cache/cluster.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cache/redis.h"
#include "core/hash.h"
#include "core/log.h"

#define KEY_MAX (16 + OM_DIGEST_MAX)
#define PEER_HEADERS_MAX (16u << 10)

struct om_cluster {
    struct om_redis *r;
    char id[OM_CLUSTER_ID_MAX + 1];
    char peer_url[OM_CLUSTER_ID_MAX + 1];
    char *token;                  /* owned; wiped at close */
    char auth_header[OM_CLUSTER_SECRET_FILE_MAX + 32];
    uint64_t lease_ms;
    pthread_mutex_t mu;           /* stats */
    struct om_cluster_stats st;
    /* The renewer (see cluster.h, "Renewal"): hold_mu guards the list,
     * hold_seq and stop; never held across I/O. */
    pthread_mutex_t hold_mu;
    pthread_cond_t hold_cond;     /* closing (clock: monotonic) */
    struct om_cluster_hold *holds; /* owned by their holders (om_cluster_unhold) */
    uint64_t hold_seq;
    bool stop;
    pthread_t renewer;
    bool renewer_started;
};

struct om_cluster_hold {
    struct om_cluster_hold *next;
    uint64_t seq;                 /* names it in the renewer's snapshot */
    char key[KEY_MAX];
    char value[OM_CLUSTER_VALUE_MAX + 1];
    atomic_bool lost;
};

#define RENEW_BATCH 32            /* renewals per pipeline */

/* KEYS[1] lease, KEYS[2] epoch counter; ARGV id, url, ms.  {1, value} when
 * taken, {0, value} when another holds it. */
static struct om_redis_script S_TAKE = {
    .name = "lease_take",
    .src = "local v = redis.call('GET', KEYS[1])\n"
           "if v then return {0, v} end\n"
           "local e = redis.call('INCR', KEYS[2])\n"
           "redis.call('PEXPIRE', KEYS[2], 3600000)\n"
           "v = ARGV[1] .. '|' .. ARGV[2] .. '|' .. e\n"
           "redis.call('SET', KEYS[1], v, 'NX', 'PX', ARGV[3])\n"
           "return {1, v}\n",
};
static struct om_redis_script S_RENEW = {
    .name = "lease_renew",
    .src = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
           "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
           "end\n"
           "return 0\n",
};
static struct om_redis_script S_RELEASE = {
    .name = "lease_release",
    .src = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
           "  redis.call('DEL', KEYS[1])\n"
           "  redis.call('PUBLISH', 'om:fl-done', ARGV[2])\n"
           "  return 1\n"
           "end\n"
           "return 0\n",
};
/* A tag lease's release: the same without the PUBLISH (om:fl-done carries
 * digests only). */
static struct om_redis_script S_DROP = {
    .name = "lease_drop",
    .src = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
           "  return redis.call('DEL', KEYS[1])\n"
           "end\n"
           "return 0\n",
};
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void scripts_init(void)
{
    om_redis_script_init(&S_TAKE);
    om_redis_script_init(&S_RENEW);
    om_redis_script_init(&S_RELEASE);
    om_redis_script_init(&S_DROP);
}

static void *renewer_main(void *arg);

static void note(struct om_cluster *c, uint64_t *counter)
{
    pthread_mutex_lock(&c->mu);
    (*counter)++;
    pthread_mutex_unlock(&c->mu);
}

int om_cluster_open(struct om_cluster **out, const struct om_config *cfg)
{
    struct om_redis_opts o;
    const char *why = NULL;
    int err;

    *out = NULL;
    if (cfg->cluster_redis == NULL)
        return OM_OK;
    if (cfg->cluster_peer_url == NULL || cfg->cluster_peer_token == NULL) {
        om_log(OM_LOG_WARN, "cluster: no cluster.peer_url: downloads are not coordinated with "
                            "the other replicas (each fetches what its own clients ask for)");
        return OM_OK;
    }
    if (strlen(cfg->cluster_peer_url) > OM_CLUSTER_ID_MAX ||
        strchr(cfg->cluster_peer_url, '|') != NULL)
        return OM_ERR_INVALID;
    struct om_cluster *c = calloc(1, sizeof(*c)); /* owned by *out */
    if (c == NULL)
        return OM_ERR_NOMEM;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->hold_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->hold_cond, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(c->peer_url, sizeof(c->peer_url), "%s", cfg->cluster_peer_url);
    size_t n = strlen(c->peer_url);
    while (n > 0 && c->peer_url[n - 1] == '/')
        c->peer_url[--n] = '\0';
    /* replica_id = the peer URL (unique in a cluster by construction) */
    snprintf(c->id, sizeof(c->id), "%s", c->peer_url);
    c->lease_ms = cfg->cluster_lease_ms ? cfg->cluster_lease_ms : 10000;
    c->token = strdup(cfg->cluster_peer_token);
    if (c->token == NULL) {
        om_cluster_close(c);
        return OM_ERR_NOMEM;
    }
    snprintf(c->auth_header, sizeof(c->auth_header), "Authorization: Bearer %s", c->token);
    pthread_once(&scripts_once, scripts_init);

    memset(&o, 0, sizeof(o));
    if (om_parse_redis_url(&o.url, cfg->cluster_redis, strlen(cfg->cluster_redis), &why) !=
        OM_OK) {
        om_log(OM_LOG_ERROR, "cluster: cluster.redis %s", why != NULL ? why : "is invalid");
        om_cluster_close(c);
        return OM_ERR_INVALID;
    }
    o.password = cfg->cluster_redis_password;
    o.who = "cluster";
    o.pool_max = 8;
    o.command_timeout_ms = 500;
    err = om_redis_open(&c->r, &o);
    explicit_bzero(&o, sizeof(o));
    if (err != OM_OK) {
        om_cluster_close(c);
        return err;
    }
    if (pthread_create(&c->renewer, NULL, renewer_main, c) != 0) {
        om_cluster_close(c);
        return OM_ERR_NOMEM;
    }
    c->renewer_started = true;
    om_log_kv(OM_LOG_INFO, "cluster: downloads coordinated through redis", "replica", c->id,
              NULL);
    *out = c;
    return OM_OK;
}

void om_cluster_close(struct om_cluster *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->hold_mu);
    c->stop = true;
    pthread_cond_broadcast(&c->hold_cond);
    pthread_mutex_unlock(&c->hold_mu);
    if (c->renewer_started)
        pthread_join(c->renewer, NULL);
    om_redis_close(c->r);
    if (c->token != NULL) {
        explicit_bzero(c->token, strlen(c->token));
        free(c->token);
    }
    explicit_bzero(c->auth_header, sizeof(c->auth_header));
    pthread_cond_destroy(&c->hold_cond);
    pthread_mutex_destroy(&c->hold_mu);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

const char *om_cluster_id(const struct om_cluster *c)
{
    return c->id;
}

uint64_t om_cluster_lease_ms(const struct om_cluster *c)
{
    return c->lease_ms;
}

bool om_cluster_redis_up(struct om_cluster *c)
{
    return om_redis_available(c->r);
}

void om_cluster_stats_get(struct om_cluster *c, struct om_cluster_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}

void om_cluster_redis_where(struct om_cluster *c, char *where, size_t wsz, char *why, size_t ysz)
{
    struct om_redis_status s;
    om_redis_status(c->r, &s);
    snprintf(where, wsz, "%s", s.where);
    snprintf(why, ysz, "%s", s.last_error);
}

bool om_cluster_token_ok(const struct om_cluster *c, const char *authorization)
{
    om_digest want, got;
    if (c == NULL || authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return false;
    const char *tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    /* hashed first: neither the token's bytes nor its length leak */
    if (om_hash_buf(c->token, strlen(c->token), &want) != OM_OK ||
        om_hash_buf(tok, strlen(tok), &got) != OM_OK)
        return false;
    return CRYPTO_memcmp(want.str, got.str, sizeof(want.str)) == 0;
}

/* ---- the lease ------------------------------------------------------------ */

bool om_cluster_lease_parse(const char *value, size_t len, struct om_cluster_lease *l)
{
    memset(l, 0, sizeof(*l));
    if (len == 0 || len > OM_CLUSTER_VALUE_MAX || memchr(value, '\0', len) != NULL)
        return false;
    const char *a = memchr(value, '|', len);
    const char *b = NULL;
    for (const char *p = value + len; p > value; p--) {
        if (p[-1] == '|') {
            b = p - 1;
            break;
        }
    }
    if (a == NULL || b == NULL || a == b)
        return false;
    size_t idl = (size_t)(a - value), ul = (size_t)(b - a - 1), el = len - (size_t)(b - value) - 1;
    if (idl == 0 || idl > OM_CLUSTER_ID_MAX || ul == 0 || ul > OM_CLUSTER_ID_MAX || el == 0 ||
        el > 18)
        return false;
    long long e = 0;
    for (size_t i = 0; i < el; i++) {
        char ch = b[1 + i];
        if (ch < '0' || ch > '9')
            return false;
        e = e * 10 + (ch - '0');
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)value[i] < 0x21 || value[i] == 0x7f)
            return false;
    if (strncmp(a + 1, "http://", 7) != 0 && strncmp(a + 1, "https://", 8) != 0)
        return false;
    memcpy(l->value, value, len);
    memcpy(l->owner, value, idl);
    memcpy(l->peer_url, a + 1, ul);
    l->epoch = e;
    return true;
}

static void lease_key(char *out, size_t sz, const char *what, const om_digest *d)
{
    snprintf(out, sz, "om:%s:%s", what, d->str);
}

/* The lease at key k1 (epoch counter at k2); counted in the stats when
 * count (downloads). */
static int take_key(struct om_cluster *c, const char *k1, const char *k2,
                    struct om_cluster_lease *l, bool *won, bool count)
{
    struct om_redis_cmd cmd;
    redisReply *rp = NULL;
    long long flag = 0;
    const char *s = NULL;
    size_t sl = 0;

    *won = false;
    if (!om_redis_available(c->r)) {
        if (count)
            note(c, &c->st.local_only);
        return OM_ERR_UNAVAILABLE;
    }
    om_redis_cmd_init(&cmd, &S_TAKE, 2);
    om_redis_arg_str(&cmd, k1);
    om_redis_arg_str(&cmd, k2);
    om_redis_arg_str(&cmd, c->id);
    om_redis_arg_str(&cmd, c->peer_url);
    om_redis_arg_i64(&cmd, (int64_t)c->lease_ms);
    /* Not retried here: the script is not idempotent (INCR), and a pooled
     * connection left over from a short Redis outage is replaced before
     * the command goes out (redis.h, "Retries"). */
    int err = om_redis_exec(c->r, &cmd, 1, &rp);
    if (err == OM_OK)
        err = om_redis_reply_array(rp, "lease_take", 2);
    if (err == OM_OK && rp->elements != 2)
        err = OM_ERR_IO;
    if (err == OM_OK)
        err = om_redis_reply_int(rp->element[0], "lease_take", &flag);
    if (err == OM_OK)
        err = om_redis_reply_str(rp->element[1], "lease_take", OM_CLUSTER_VALUE_MAX, &s, &sl);
    if (err == OM_OK && !om_cluster_lease_parse(s, sl, l))
        err = OM_ERR_IO;
    om_redis_replies_free(&rp, 1);
    if (err != OM_OK) {
        if (count)
            note(c, &c->st.local_only);
        return err;
    }
    *won = flag == 1;
    if (count) {
        note(c, *won ? &c->st.leases_won : &c->st.leases_lost);
        if (*won && l->epoch > 1)
            note(c, &c->st.takeovers);
    }
    return OM_OK;
}

int om_cluster_lease_take(struct om_cluster *c, const om_digest *d, struct om_cluster_lease *l,
                          bool *won)
{
    char k1[KEY_MAX], k2[KEY_MAX];
    lease_key(k1, sizeof(k1), "fl", d);
    lease_key(k2, sizeof(k2), "fle", d);
    return take_key(c, k1, k2, l, won, true);
}



static int key_script(struct om_cluster *c, const struct om_redis_script *sc, const char *k1,
                      const char *name, const struct om_cluster_lease *l, bool renew)
{
    struct om_redis_cmd cmd;
    redisReply *rp = NULL;
    long long v = 0;

    om_redis_cmd_init(&cmd, sc, 1);
    om_redis_arg_str(&cmd, k1);
    om_redis_arg_str(&cmd, l->value);
    if (renew)
        om_redis_arg_i64(&cmd, (int64_t)c->lease_ms);
    else if (name != NULL)
        om_redis_arg_str(&cmd, name);
    int err = om_redis_exec(c->r, &cmd, 1, &rp);
    if (err == OM_OK)
        err = om_redis_reply_int(rp, sc->name, &v);
    om_redis_replies_free(&rp, 1);
    if (err == OM_OK && v != 1)
        err = OM_ERR_NOTFOUND;
    return err;
}

static int lease_script(struct om_cluster *c, const struct om_redis_script *sc,
                        const om_digest *d, const struct om_cluster_lease *l, bool renew)
{
    char k1[KEY_MAX];
    lease_key(k1, sizeof(k1), "fl", d);
    return key_script(c, sc, k1, d->str, l, renew);
}

int om_cluster_lease_renew(struct om_cluster *c, const om_digest *d,
                           const struct om_cluster_lease *l)
{
    return lease_script(c, &S_RENEW, d, l, true);
}

int om_cluster_lease_release(struct om_cluster *c, const om_digest *d,
                             const struct om_cluster_lease *l)
{
    return lease_script(c, &S_RELEASE, d, l, false);
}

static int owner_key(struct om_cluster *c, const char *k1, struct om_cluster_lease *l)
{
    struct om_redis_cmd cmd;
    redisReply *rp = NULL;
    const char *s = NULL;
    size_t sl = 0;

    om_redis_cmd_init(&cmd, NULL, 0);
    om_redis_arg_str(&cmd, "GET");
    om_redis_arg_str(&cmd, k1);
    int err = om_redis_exec(c->r, &cmd, 1, &rp);
    if (err == OM_OK)
        err = om_redis_reply_str(rp, "lease_owner", OM_CLUSTER_VALUE_MAX, &s, &sl);
    if (err == OM_OK && !om_cluster_lease_parse(s, sl, l))
        err = OM_ERR_IO;
    om_redis_replies_free(&rp, 1);
    return err;
}

int om_cluster_lease_owner(struct om_cluster *c, const om_digest *d, struct om_cluster_lease *l)
{
    char k1[KEY_MAX];
    lease_key(k1, sizeof(k1), "fl", d);
    return owner_key(c, k1, l);
}

/* ---- renewal ---------------------------------------------------------------- */

struct om_cluster_hold *om_cluster_hold(struct om_cluster *c, const om_digest *d,
                                        const struct om_cluster_lease *l)
{
    struct om_cluster_hold *h = calloc(1, sizeof(*h)); /* owned by the caller */
    if (h == NULL)
        return NULL;
    lease_key(h->key, sizeof(h->key), "fl", d);
    snprintf(h->value, sizeof(h->value), "%s", l->value);
    atomic_init(&h->lost, false);
    pthread_mutex_lock(&c->hold_mu);
    h->seq = ++c->hold_seq;
    h->next = c->holds;
    c->holds = h;
    pthread_mutex_unlock(&c->hold_mu);
    return h;
}

bool om_cluster_hold_lost(const struct om_cluster_hold *h)
{
    return h != NULL && atomic_load(&h->lost);
}

void om_cluster_unhold(struct om_cluster *c, struct om_cluster_hold *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&c->hold_mu);
    for (struct om_cluster_hold **pp = &c->holds; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    }
    pthread_mutex_unlock(&c->hold_mu);
    free(h);
}

/* What the renewer sends for one held lease (copied: a holder may
 * unhold while the pipeline runs). */
struct renew_snap {
    uint64_t seq;
    char key[KEY_MAX];
    char value[OM_CLUSTER_VALUE_MAX + 1];
};

/* Renew snap[0..n) in one pipeline; mark those found not ours lost. */
static void renew_batch(struct om_cluster *c, const struct renew_snap *snap, size_t n)
{
    struct om_redis_cmd cmds[RENEW_BATCH];
    redisReply *rp[RENEW_BATCH];
    bool lost[RENEW_BATCH];

    for (size_t i = 0; i < n; i++) {
        om_redis_cmd_init(&cmds[i], &S_RENEW, 1);
        om_redis_arg_str(&cmds[i], snap[i].key);
        om_redis_arg_str(&cmds[i], snap[i].value);
        om_redis_arg_i64(&cmds[i], (int64_t)c->lease_ms);
    }
    if (om_redis_exec(c->r, cmds, n, rp) != OM_OK)
        return; /* Redis down: the next round tries again */
    for (size_t i = 0; i < n; i++) {
        long long v = 0;
        lost[i] = om_redis_reply_int(rp[i], "lease_renew", &v) == OM_OK && v != 1;
    }
    om_redis_replies_free(rp, n);
    pthread_mutex_lock(&c->hold_mu);
    for (struct om_cluster_hold *h = c->holds; h != NULL; h = h->next)
        for (size_t i = 0; i < n; i++)
            if (lost[i] && h->seq == snap[i].seq)
                atomic_store(&h->lost, true);
    pthread_mutex_unlock(&c->hold_mu);
}

/* Every third of the lease: renew every held lease not lost yet. */
static void *renewer_main(void *arg)
{
    struct om_cluster *c = arg;
    struct renew_snap *snap = NULL; /* owned here */
    size_t cap = 0;
    uint64_t period = c->lease_ms / 3 > 0 ? c->lease_ms / 3 : 1;

    pthread_mutex_lock(&c->hold_mu);
    while (!c->stop) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += (time_t)(period / 1000);
        dl.tv_nsec += (long)(period % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        while (!c->stop && pthread_cond_timedwait(&c->hold_cond, &c->hold_mu, &dl) != ETIMEDOUT)
            ;
        if (c->stop)
            break;
        size_t n = 0;
        for (struct om_cluster_hold *h = c->holds; h != NULL; h = h->next)
            n += !atomic_load(&h->lost);
        if (n > cap) {
            struct renew_snap *ns = realloc(snap, n * sizeof(*snap));
            if (ns == NULL) {
                n = cap; /* renew those that fit; the rest next round */
            } else {
                snap = ns;
                cap = n;
            }
        }
        size_t k = 0;
        for (struct om_cluster_hold *h = c->holds; h != NULL && k < n; h = h->next) {
            if (atomic_load(&h->lost))
                continue;
            snap[k].seq = h->seq;
            memcpy(snap[k].key, h->key, sizeof(h->key));
            memcpy(snap[k].value, h->value, sizeof(h->value));
            k++;
        }
        pthread_mutex_unlock(&c->hold_mu);
        for (size_t i = 0; i < k; i += RENEW_BATCH)
            renew_batch(c, snap + i, k - i < RENEW_BATCH ? k - i : RENEW_BATCH);
        pthread_mutex_lock(&c->hold_mu);
    }
    pthread_mutex_unlock(&c->hold_mu);
    free(snap);
    return NULL;
}

/* ---- the tag lease ---------------------------------------------------------- */

#define TAG_KEY_MAX (16 + OM_NAME_MAX + 1 + 256)

static bool tag_key(char *out, size_t sz, const char *what, const char *repo, const char *tag)
{
    int n = snprintf(out, sz, "om:%s:%s:%s", what, repo, tag);
    return n > 0 && (size_t)n < sz;
}

bool om_cluster_tag_lease(struct om_cluster *c, const char *repo, const char *tag,
                          struct om_cluster_lease *l)
{
    char k1[TAG_KEY_MAX], k2[TAG_KEY_MAX];
    bool won = false;
    if (c == NULL || !tag_key(k1, sizeof(k1), "ml", repo, tag) ||
        !tag_key(k2, sizeof(k2), "mle", repo, tag) || take_key(c, k1, k2, l, &won, false) != OM_OK)
        return false;
    if (won)
        return true;
    /* Another replica resolves it: wait for its answer (bounded). */
    int64_t until = om_now_ms() + (int64_t)c->lease_ms + 1000;
    while (om_now_ms() < until) {
        struct om_cluster_lease now;
        if (owner_key(c, k1, &now) != OM_OK || strcmp(now.value, l->value) != 0)
            break;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

void om_cluster_tag_release(struct om_cluster *c, const char *repo, const char *tag,
                            const struct om_cluster_lease *l)
{
    char k1[TAG_KEY_MAX];
    if (c != NULL && tag_key(k1, sizeof(k1), "ml", repo, tag))
        (void)key_script(c, &S_DROP, k1, NULL, l, false);
}

/* ---- the peer stream ------------------------------------------------------ */

struct peer_xfer {
    const struct om_cluster_peer_req *rq;
    struct om_up_resp *resp;
    size_t header_bytes;
    bool headers_done;
    int sink_err;
    int64_t last_tick_us;
};

static size_t peer_header(char *buf, size_t size, size_t n, void *ud)
{
    struct peer_xfer *x = ud;
    size_t len = size * n;
    x->header_bytes += len;
    if (x->header_bytes > PEER_HEADERS_MAX)
        return 0;
    if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* a new answer (after a redirect): start over */
        long st = 0;
        const char *sp = memchr(buf, ' ', len);
        if (sp != NULL)
            st = strtol(sp + 1, NULL, 10);
        x->resp->status = st;
        x->resp->content_length = -1;
        x->resp->content_range[0] = '\0';
        return len;
    }
    if (len <= 2) { /* the blank line: the answer's headers are complete */
        if (x->resp->status >= 300 && x->resp->status < 400)
            return len; /* a redirect libcurl follows */
        if (!x->headers_done) {
            x->headers_done = true;
            x->sink_err = x->rq->on_headers(x->rq->ud, x->resp);
            if (x->sink_err != OM_OK)
                return 0;
        }
        return len;
    }
    char line[256];
    size_t l = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
    memcpy(line, buf, l);
    line[l] = '\0';
    while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == '\n'))
        line[--l] = '\0';
    if (strncasecmp(line, "Content-Length:", 15) == 0) {
        char *end = NULL;
        long long v = strtoll(line + 15, &end, 10);
        if (end != line + 15 && v >= 0)
            x->resp->content_length = v;
    } else if (strncasecmp(line, "Content-Range:", 14) == 0) {
        const char *v = line + 14;
        while (*v == ' ')
            v++;
        snprintf(x->resp->content_range, sizeof(x->resp->content_range), "%s", v);
    }
    return len;
}

static size_t peer_body(char *buf, size_t size, size_t n, void *ud)
{
    struct peer_xfer *x = ud;
    size_t len = size * n;
    if (!x->headers_done || x->resp->status < 200 || x->resp->status >= 300)
        return len; /* an error body: dropped */
    x->sink_err = x->rq->on_body(x->rq->ud, buf, len);
    if (x->sink_err != OM_OK)
        return 0;
    x->resp->body_delivered += len;
    return len;
}

static int peer_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    struct peer_xfer *x = ud;
    if (x->rq->cancel != NULL && atomic_load(x->rq->cancel))
        return 1;
    int64_t now = om_now_us();
    if (x->rq->on_tick != NULL && now - x->last_tick_us >= 100000) {
        x->last_tick_us = now;
        x->rq->on_tick(x->rq->ud);
    }
    return 0;
}

int om_cluster_peer_get(struct om_cluster *c, const struct om_cluster_peer_req *rq,
                        struct om_up_resp *resp)
{
    char url[OM_CLUSTER_ID_MAX + OM_DIGEST_MAX + 32], range[48];
    struct peer_xfer x = {.rq = rq, .resp = resp, .sink_err = OM_OK};
    struct curl_slist *hdrs = NULL, *h2 = NULL;
    int err = OM_OK;

    memset(resp, 0, sizeof(*resp));
    resp->content_length = -1;
    resp->retry_after_s = -1;
    resp->ratelimit_remaining = -1;
    resp->ratelimit_window_s = -1;
    snprintf(url, sizeof(url), "%s/internal/v1/blobs/%s", rq->peer_url, rq->digest->str);
    snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)rq->range_from);
    CURL *h = curl_easy_init();
    if (h == NULL)
        return OM_ERR_NOMEM;
    hdrs = curl_slist_append(NULL, c->auth_header);
    if (hdrs != NULL && rq->range_from > 0 && (h2 = curl_slist_append(hdrs, range)) != NULL)
        hdrs = h2;
    if (hdrs == NULL) {
        curl_easy_cleanup(h);
        return OM_ERR_NOMEM;
    }
    long idle_s = (long)((rq->idle_timeout_ms ? rq->idle_timeout_ms : 30000) + 999) / 1000;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    /* a complete blob may be a 307 to the bucket: followed, and libcurl
     * sends the Authorization header to the original host only */
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 2L);
    curl_easy_setopt(h, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, idle_s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, peer_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, peer_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, peer_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        snprintf(resp->error, sizeof(resp->error), "%s", curl_easy_strerror(rc));
        if (x.sink_err != OM_OK)
            err = x.sink_err;
        else if (rc == CURLE_ABORTED_BY_CALLBACK || rc == CURLE_OPERATION_TIMEDOUT)
            err = OM_ERR_TIMEOUT;
        else
            err = OM_ERR_UPSTREAM;
    } else if (!x.headers_done) {
        err = OM_ERR_UPSTREAM;
    }
    if (!x.headers_done && resp->status == 0)
        note(c, &c->st.peer_failures);
    else
        note(c, &c->st.peer_streams);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return err;
}
