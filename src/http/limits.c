/* limits.c — the per-client limit table (limits.h).
 *
 * Buckets are integers: a bucket of `rate` tokens per `period_ms` keeps
 * its level in units of 1/period_ms of a token, so it refills by exactly
 * `rate` units per millisecond and a token costs period_ms units — no
 * floating point, no rounding drift.  requests_per_second is a bucket of
 * `burst` tokens (requests_per_second when burst is 0) refilled at
 * requests_per_second per 1000 ms; upstream_fetches_per_minute one of that
 * many tokens per 60000 ms.
 *
 * Day counters: slot h % 24 holds hour h's bytes and requests; a record
 * remembers the last hour it wrote and clears the slots it skipped, so the
 * sum of the 24 slots is the last 23 h and the current hour.
 *
 * The limits themselves are an immutable snapshot behind an atomic
 * pointer; a reconfigure publishes a new one and keeps the old ones until
 * the limiter is freed (a reload is rare; each snapshot is small), so a
 * reader never needs a lock for them.  Each record caches which snapshot
 * its limits came from.
 */
#include "http/limits.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRIPES 64
#define HOURS 24
#define HOUR_MS 3600000ll
#define LOG_EVERY_MS 60000
#define EVICT_SCAN 8            /* LRU entries looked at for one without downloads */

struct snapshot {
    struct om_cidr trusted[OM_MAX_TRUSTED_PROXIES]; /* limits.trusted_proxies */
    size_t n_trusted;
    struct om_client_limits per_client;
    struct om_user_limits *users;      /* owned copies (names owned) */
    size_t n_users;
    struct snapshot *older;            /* kept until om_limiter_free */
};

struct bucket {
    int64_t level;                     /* units; a token = period units */
    int64_t t_ms;                      /* of the last refill */
};

struct rec {
    struct rec *hnext, *prev, *next;   /* hash chain; LRU (head = most recent) */
    uint64_t hash;
    char key[OM_LIMIT_KEY_MAX];
    bool is_user;
    const struct snapshot *snap;       /* l is from this snapshot */
    const struct om_client_limits *l;
    struct bucket rps, up;
    unsigned rps_cap, up_cap;          /* the caps the buckets were filled for */
    unsigned downloads;
    int64_t hour;                      /* last hour written (ms / HOUR_MS) */
    uint64_t bytes[HOURS];
    uint32_t reqs[HOURS], rejected[HOURS];
    int64_t last_seen_ms, last_log_ms, limited_until_ms;
    om_limit_kind limited_by;
};

struct stripe {
    pthread_mutex_t mu;
    struct rec **buckets;
    size_t mask;
    struct rec *head, *tail;
    size_t n, max;
};

struct om_limiter {
    _Atomic(struct snapshot *) snap;
    pthread_mutex_t snap_mu;           /* serialises reconfigure */
    struct stripe s[STRIPES];
    unsigned max_clients;
    atomic_uint_fast64_t rejections[OM_LIMIT__COUNT];
    atomic_uint_fast64_t evictions;
};

static const char *const LABELS[OM_LIMIT__COUNT] = {
    [OM_LIMIT_NONE] = "", [OM_LIMIT_RPS] = "requests_per_second",
    [OM_LIMIT_DOWNLOADS] = "downloads", [OM_LIMIT_BYTES_PER_DAY] = "bytes_per_day",
    [OM_LIMIT_UPSTREAM] = "upstream_fetches",
};

const char *om_limit_label(om_limit_kind k)
{
    return (unsigned)k < OM_LIMIT__COUNT ? LABELS[k] : "";
}

const char *om_limit_key(om_limit_kind k)
{
    return k == OM_LIMIT_UPSTREAM ? "upstream_fetches_per_minute" : om_limit_label(k);
}

/* ---- snapshots ---------------------------------------------------------- */

static void snapshot_free(struct snapshot *s)
{
    while (s != NULL) {
        struct snapshot *older = s->older;
        for (size_t i = 0; i < s->n_users; i++)
            free(s->users[i].name);
        free(s->users);
        free(s);
        s = older;
    }
}

static struct snapshot *snapshot_new(const struct om_limits *cfg)
{
    struct snapshot *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->per_client = cfg->per_client;
    s->n_trusted = cfg->n_trusted_proxies < OM_MAX_TRUSTED_PROXIES ? cfg->n_trusted_proxies
                                                                   : OM_MAX_TRUSTED_PROXIES;
    memcpy(s->trusted, cfg->trusted_proxies, s->n_trusted * sizeof(s->trusted[0]));
    if (cfg->n_per_user > 0 && (s->users = calloc(cfg->n_per_user, sizeof(*s->users))) == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->n_per_user; i++) {
        s->users[i].l = cfg->per_user[i].l;
        if ((s->users[i].name = strdup(cfg->per_user[i].name)) == NULL)
            goto fail;
        s->n_users++;
    }
    return s;
fail:
    snapshot_free(s);
    return NULL;
}

static const struct om_client_limits *limits_for(const struct snapshot *s, const char *key,
                                                 bool is_user)
{
    for (size_t i = 0; is_user && i < s->n_users; i++) {
        if (strcmp(s->users[i].name, key) == 0)
            return &s->users[i].l;
    }
    return &s->per_client;
}

/* ---- lifecycle ---------------------------------------------------------- */

int om_limiter_new(struct om_limiter **out, const struct om_limits *cfg)
{
    struct om_limiter *lim = calloc(1, sizeof(*lim));
    unsigned max = cfg->max_clients > 0 ? cfg->max_clients : 100000;
    size_t per = (max + STRIPES - 1) / STRIPES, nb = 16;

    *out = NULL;
    if (lim == NULL)
        return OM_ERR_NOMEM;
    pthread_mutex_init(&lim->snap_mu, NULL);
    lim->max_clients = max;
    while (nb < per)
        nb <<= 1;
    for (size_t i = 0; i < STRIPES; i++) {
        pthread_mutex_init(&lim->s[i].mu, NULL);
        lim->s[i].max = per;
        lim->s[i].mask = nb - 1;
        if ((lim->s[i].buckets = calloc(nb, sizeof(struct rec *))) == NULL) {
            om_limiter_free(lim);
            return OM_ERR_NOMEM;
        }
    }
    struct snapshot *s = snapshot_new(cfg);
    if (s == NULL) {
        om_limiter_free(lim);
        return OM_ERR_NOMEM;
    }
    atomic_store(&lim->snap, s);
    *out = lim;
    return OM_OK;
}

void om_limiter_free(struct om_limiter *lim)
{
    if (lim == NULL)
        return;
    for (size_t i = 0; i < STRIPES; i++) {
        struct rec *r = lim->s[i].head;
        while (r != NULL) {
            struct rec *next = r->next;
            free(r);
            r = next;
        }
        free(lim->s[i].buckets);
        pthread_mutex_destroy(&lim->s[i].mu);
    }
    snapshot_free(atomic_load(&lim->snap));
    pthread_mutex_destroy(&lim->snap_mu);
    free(lim);
}

int om_limiter_reconfigure(struct om_limiter *lim, const struct om_limits *cfg)
{
    struct snapshot *s = snapshot_new(cfg);

    if (s == NULL)
        return OM_ERR_NOMEM;
    pthread_mutex_lock(&lim->snap_mu);
    s->older = atomic_load(&lim->snap);
    atomic_store(&lim->snap, s);
    pthread_mutex_unlock(&lim->snap_mu);
    return OM_OK;
}

size_t om_limiter_trusted_proxies(struct om_limiter *lim, const struct om_cidr **set)
{
    const struct snapshot *s = atomic_load_explicit(&lim->snap, memory_order_acquire);

    *set = s->trusted;
    return s->n_trusted;
}

/* ---- records ------------------------------------------------------------ */

static uint64_t hash_key(const char *key, bool is_user)
{
    uint64_t h = 1469598103934665603ull ^ (is_user ? 0x9e3779b97f4a7c15ull : 0);

    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static void lru_unlink(struct stripe *st, struct rec *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        st->head = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        st->tail = r->prev;
    r->prev = r->next = NULL;
}

static void lru_push(struct stripe *st, struct rec *r)
{
    r->next = st->head;
    r->prev = NULL;
    if (st->head != NULL)
        st->head->prev = r;
    st->head = r;
    if (st->tail == NULL)
        st->tail = r;
}

static void hash_unlink(struct stripe *st, struct rec *r)
{
    struct rec **pp = &st->buckets[(r->hash >> 6) & st->mask];

    while (*pp != NULL && *pp != r)
        pp = &(*pp)->hnext;
    if (*pp == r)
        *pp = r->hnext;
}

/* Drop the least recently seen record without downloads, if any. */
static void evict_one(struct om_limiter *lim, struct stripe *st)
{
    struct rec *r = st->tail;

    for (int i = 0; r != NULL && i < EVICT_SCAN; i++, r = r->prev) {
        if (r->downloads == 0) {
            lru_unlink(st, r);
            hash_unlink(st, r);
            st->n--;
            free(r);
            atomic_fetch_add_explicit(&lim->evictions, 1, memory_order_relaxed);
            return;
        }
    }
}

/* Move the day slots to now's hour. */
static void advance(struct rec *r, int64_t now_ms)
{
    int64_t h = now_ms / HOUR_MS;

    if (h <= r->hour)
        return;
    for (int64_t i = r->hour + 1; i <= h && i - r->hour <= HOURS; i++) {
        r->bytes[i % HOURS] = 0;
        r->reqs[i % HOURS] = 0;
        r->rejected[i % HOURS] = 0;
    }
    r->hour = h;
}

static unsigned rps_cap(const struct om_client_limits *l)
{
    return l->burst > 0 ? l->burst : l->requests_per_second;
}

/* The record of key, created when missing (NULL only when out of memory);
 * its limits current, its day slots at now.  Called with st->mu held. */
static struct rec *get(struct om_limiter *lim, struct stripe *st, uint64_t h, const char *key,
                       bool is_user, int64_t now_ms)
{
    struct rec **slot = &st->buckets[(h >> 6) & st->mask], *r = *slot;
    const struct snapshot *snap = atomic_load_explicit(&lim->snap, memory_order_acquire);

    while (r != NULL && (r->hash != h || r->is_user != is_user || strcmp(r->key, key) != 0))
        r = r->hnext;
    if (r == NULL) {
        if (st->n >= st->max)
            evict_one(lim, st);
        if ((r = calloc(1, sizeof(*r))) == NULL)
            return NULL;
        r->hash = h;
        r->is_user = is_user;
        snprintf(r->key, sizeof(r->key), "%s", key);
        r->hour = now_ms / HOUR_MS;
        r->last_log_ms = INT64_MIN / 2;
        r->hnext = *slot;
        *slot = r;
        st->n++;
        lru_push(st, r);
    } else if (st->head != r) {
        lru_unlink(st, r);
        lru_push(st, r);
    }
    if (r->snap != snap) {
        r->snap = snap;
        r->l = limits_for(snap, r->key, is_user);
    }
    /* A new record, or new caps after a reload: a full bucket (in the
     * client's favour, as eviction is). */
    unsigned rc = rps_cap(r->l), uc = r->l->upstream_fetches_per_minute;
    if (rc != r->rps_cap) {
        r->rps_cap = rc;
        r->rps = (struct bucket){.level = (int64_t)rc * 1000, .t_ms = now_ms};
    }
    if (uc != r->up_cap) {
        r->up_cap = uc;
        r->up = (struct bucket){.level = (int64_t)uc * 60000, .t_ms = now_ms};
    }
    advance(r, now_ms);
    r->last_seen_ms = now_ms;
    return r;
}

/* Take one token of a bucket of cap tokens refilled at rate per period_ms;
 * 0 when taken, else the milliseconds until one is there. */
static int64_t take(struct bucket *b, unsigned rate, unsigned cap, int64_t period_ms,
                    int64_t now_ms)
{
    int64_t full = (int64_t)cap * period_ms;

    if (now_ms > b->t_ms) {
        int64_t add = (now_ms - b->t_ms) * (int64_t)rate;
        b->level = add >= full - b->level ? full : b->level + add;
        b->t_ms = now_ms;
    }
    if (b->level >= period_ms) {
        b->level -= period_ms;
        return 0;
    }
    return (period_ms - b->level + rate - 1) / rate;
}

static uint64_t sum_bytes(const struct rec *r)
{
    uint64_t s = 0;

    for (int i = 0; i < HOURS; i++)
        s += r->bytes[i];
    return s;
}

/* Seconds until the day's bytes fall below limit as old hours drop out. */
static unsigned bytes_retry_s(const struct rec *r, uint64_t limit, int64_t now_ms)
{
    uint64_t s = sum_bytes(r);
    int64_t into_hour_ms = now_ms % HOUR_MS;

    for (int k = 1; k <= HOURS; k++) {
        s -= r->bytes[(r->hour + k) % HOURS]; /* hour (now - 24 + k) drops out */
        if (s < limit)
            return (unsigned)((k * HOUR_MS - into_hour_ms + 999) / 1000);
    }
    return (unsigned)(HOURS * HOUR_MS / 1000);
}

static om_limit_kind refuse(struct om_limiter *lim, struct rec *r, om_limit_kind k,
                            int64_t wait_ms, uint64_t limit, int64_t now_ms,
                            struct om_limit_verdict *v)
{
    unsigned s = (unsigned)((wait_ms + 999) / 1000);

    v->kind = k;
    v->retry_after_s = s > 0 ? s : 1;
    v->limit = limit;
    v->log = now_ms - r->last_log_ms >= LOG_EVERY_MS;
    if (v->log)
        r->last_log_ms = now_ms;
    r->limited_by = k;
    r->limited_until_ms = now_ms + (int64_t)v->retry_after_s * 1000;
    r->rejected[r->hour % HOURS]++;
    atomic_fetch_add_explicit(&lim->rejections[k], 1, memory_order_relaxed);
    return k;
}

static struct stripe *stripe_of(struct om_limiter *lim, uint64_t h)
{
    return &lim->s[h % STRIPES];
}

/* ---- the checks ------------------------------------------------------- */

om_limit_kind om_limiter_request(struct om_limiter *lim, const char *key, bool is_user,
                                 int64_t now_ms, struct om_limit_verdict *v)
{
    uint64_t h = hash_key(key, is_user);
    struct stripe *st = stripe_of(lim, h);
    om_limit_kind k = OM_LIMIT_NONE;

    *v = (struct om_limit_verdict){0};
    pthread_mutex_lock(&st->mu);
    struct rec *r = get(lim, st, h, key, is_user, now_ms);
    if (r != NULL) {
        r->reqs[r->hour % HOURS]++;
        unsigned rate = r->l->requests_per_second;
        int64_t wait = rate > 0 ? take(&r->rps, rate, r->rps_cap, 1000, now_ms) : 0;
        if (wait > 0)
            k = refuse(lim, r, OM_LIMIT_RPS, wait, rate, now_ms, v);
    }
    pthread_mutex_unlock(&st->mu);
    return k;
}

om_limit_kind om_limiter_download_begin(struct om_limiter *lim, const char *key, bool is_user,
                                        int64_t now_ms, struct om_limit_verdict *v)
{
    uint64_t h = hash_key(key, is_user);
    struct stripe *st = stripe_of(lim, h);
    om_limit_kind k = OM_LIMIT_NONE;

    *v = (struct om_limit_verdict){0};
    pthread_mutex_lock(&st->mu);
    struct rec *r = get(lim, st, h, key, is_user, now_ms);
    if (r != NULL) {
        uint64_t day = r->l->bytes_per_day;
        if (day > 0 && sum_bytes(r) >= day)
            k = refuse(lim, r, OM_LIMIT_BYTES_PER_DAY,
                       (int64_t)bytes_retry_s(r, day, now_ms) * 1000, day, now_ms, v);
        else if (r->l->downloads > 0 && r->downloads >= r->l->downloads)
            k = refuse(lim, r, OM_LIMIT_DOWNLOADS, 1000, r->l->downloads, now_ms, v);
        else
            r->downloads++;
    }
    pthread_mutex_unlock(&st->mu);
    return k;
}

void om_limiter_download_end(struct om_limiter *lim, const char *key, bool is_user,
                             int64_t now_ms)
{
    uint64_t h = hash_key(key, is_user);
    struct stripe *st = stripe_of(lim, h);

    pthread_mutex_lock(&st->mu);
    struct rec *r = get(lim, st, h, key, is_user, now_ms);
    if (r != NULL && r->downloads > 0)
        r->downloads--;
    pthread_mutex_unlock(&st->mu);
}

om_limit_kind om_limiter_upstream(struct om_limiter *lim, const char *key, bool is_user,
                                  int64_t now_ms, struct om_limit_verdict *v)
{
    uint64_t h = hash_key(key, is_user);
    struct stripe *st = stripe_of(lim, h);
    om_limit_kind k = OM_LIMIT_NONE;

    *v = (struct om_limit_verdict){0};
    pthread_mutex_lock(&st->mu);
    struct rec *r = get(lim, st, h, key, is_user, now_ms);
    if (r != NULL) {
        unsigned rate = r->l->upstream_fetches_per_minute;
        int64_t wait = rate > 0 ? take(&r->up, rate, r->up_cap, 60000, now_ms) : 0;
        if (wait > 0)
            k = refuse(lim, r, OM_LIMIT_UPSTREAM, wait, rate, now_ms, v);
    }
    pthread_mutex_unlock(&st->mu);
    return k;
}

void om_limiter_sent(struct om_limiter *lim, const char *key, bool is_user, uint64_t bytes,
                     int64_t now_ms)
{
    uint64_t h = hash_key(key, is_user);
    struct stripe *st = stripe_of(lim, h);

    if (bytes == 0)
        return;
    pthread_mutex_lock(&st->mu);
    struct rec *r = get(lim, st, h, key, is_user, now_ms);
    if (r != NULL)
        r->bytes[r->hour % HOURS] += bytes;
    pthread_mutex_unlock(&st->mu);
}

/* ---- views ------------------------------------------------------------- */

static uint64_t order_value(const struct om_client_stat *c, om_clients_order order)
{
    switch (order) {
    case OM_CLIENTS_BY_BYTES: return c->bytes_24h;
    case OM_CLIENTS_BY_REQUESTS: return c->requests_24h;
    default: return (uint64_t)c->limited_until_ms;
    }
}

static void stat_of(const struct rec *r, int64_t now_ms, struct om_client_stat *c)
{
    int64_t h = now_ms / HOUR_MS;

    memset(c, 0, sizeof(*c));
    snprintf(c->key, sizeof(c->key), "%s", r->key);
    c->is_user = r->is_user;
    for (int i = 0; i < HOURS; i++) {
        int64_t hour = r->hour - ((r->hour - i) % HOURS + HOURS) % HOURS; /* slot i's hour */
        if (h - hour < HOURS) {
            c->bytes_24h += r->bytes[i];
            c->requests_24h += r->reqs[i];
            c->rejected_24h += r->rejected[i];
        }
    }
    c->downloads = r->downloads;
    c->last_seen_ms = r->last_seen_ms;
    if (r->limited_until_ms > now_ms) {
        c->limited_by = r->limited_by;
        c->limited_until_ms = r->limited_until_ms;
    }
}

size_t om_limiter_top(struct om_limiter *lim, om_clients_order order, int64_t now_ms,
                      struct om_client_stat *out, size_t max)
{
    size_t n = 0;
    struct om_client_stat c;

    if (max == 0)
        return 0;
    for (size_t s = 0; s < STRIPES; s++) {
        struct stripe *st = &lim->s[s];
        pthread_mutex_lock(&st->mu);
        for (struct rec *r = st->head; r != NULL; r = r->next) {
            stat_of(r, now_ms, &c);
            uint64_t v = order_value(&c, order);
            if (v == 0)
                continue;
            /* insertion into out[0..n), kept sorted, best first */
            if (n == max && v <= order_value(&out[n - 1], order))
                continue;
            size_t i = n < max ? n++ : max - 1;
            while (i > 0 && order_value(&out[i - 1], order) < v) {
                out[i] = out[i - 1];
                i--;
            }
            out[i] = c;
        }
        pthread_mutex_unlock(&st->mu);
    }
    return n;
}

void om_limiter_totals(struct om_limiter *lim, struct om_limiter_totals *out)
{
    memset(out, 0, sizeof(*out));
    for (int k = 0; k < OM_LIMIT__COUNT; k++)
        out->rejections[k] = atomic_load_explicit(&lim->rejections[k], memory_order_relaxed);
    for (size_t s = 0; s < STRIPES; s++) {
        pthread_mutex_lock(&lim->s[s].mu);
        out->clients += lim->s[s].n;
        pthread_mutex_unlock(&lim->s[s].mu);
    }
    out->evictions = atomic_load_explicit(&lim->evictions, memory_order_relaxed);
    out->max_clients = lim->max_clients;
}
