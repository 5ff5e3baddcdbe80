/* admin_stats.c — request statistics for the admin API and /metrics (see
 * admin_stats.h).
 *
 * Design:
 *   - Counters are fixed arrays of atomics indexed by (endpoint kind,
 *     status), so counting a request is a few relaxed atomic adds: no
 *     allocation, no lock, no lookup.  9 kinds x 600 statuses x 8 bytes is
 *     43 KiB, allocated once.
 *   - The history ring has one slot per minute for the last hour.  A slot
 *     is claimed for a new minute under ring_mu (once per minute); after
 *     that, adds are lock-free.  A thread that computed its minute just
 *     before the slot moved on adds to the newer minute or, if the slot is
 *     already newer than its minute, drops the count: at worst one request
 *     lands in the neighbouring minute, which a per-minute chart can bear.
 *   - The hit ratio counts "served from local storage" (hit, stale) against
 *     "had to wait for the upstream" (miss, coalesced).
 *   - Upstream errors: upstream.c keeps only the last error per upstream.
 *     om_stats_upstream_observe() copies it into a small ring whenever its
 *     time changed; it runs after every request that involved an upstream
 *     and on every admin read of upstream state, so bursts of errors
 *     between two observations keep only their last message.
 *   - Upstream latency: likewise only the last request's latency is
 *     exported, so the histogram is sampled: each observation that finds
 *     new requests records the latest latency once.  With upstream.c's
 *     own histogram (OM_UP_LATENCY_BUCKETS in upstream.h, see
 *     docs/metrics.md) /metrics uses that instead.
 *   - Download rates: fetch.h tells bytes written, not when a download
 *     started; each visit of the fetch table (an admin read) samples the
 *     byte count, and the rate is smoothed across visits.  A download seen
 *     for the first time has rate 0 until the next visit.
 */
#include "admin/admin_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/index_admin.h"

#define RATE_MIN_DT_MS 200   /* samples closer than this keep the old rate */

int om_stats_new(struct om_stats **out)
{
    struct om_stats *s = calloc(1, sizeof(*s)); /* owned by the caller via *out */
    *out = NULL;
    if (s == NULL)
        return OM_ERR_NOMEM;
    pthread_mutex_init(&s->ring_mu, NULL);
    pthread_mutex_init(&s->up_mu, NULL);
    pthread_mutex_init(&s->flight_mu, NULL);
    for (size_t i = 0; i < OM_STATS_HISTORY; i++)
        atomic_init(&s->ring[i].minute, -1);
    *out = s;
    return OM_OK;
}

void om_stats_free(struct om_stats *s)
{
    if (s == NULL)
        return;
    om_index_admin_close(s->ia);
    pthread_mutex_destroy(&s->ring_mu);
    pthread_mutex_destroy(&s->up_mu);
    pthread_mutex_destroy(&s->flight_mu);
    free(s);
}

static const char *const EP_NAMES[OM_EP__COUNT] = {
    [OM_EP_BASE] = "base", [OM_EP_MANIFEST] = "manifest", [OM_EP_BLOB] = "blob",
    [OM_EP_TAGS] = "tags", [OM_EP_CATALOG] = "catalog", [OM_EP_REFERRERS] = "referrers",
    [OM_EP_ADMIN] = "admin", [OM_EP_UI] = "ui", [OM_EP_OTHER] = "other",
};

const char *om_stats_endpoint_name(om_endpoint_kind k)
{
    return (unsigned)k < OM_EP__COUNT ? EP_NAMES[k] : "other";
}

om_endpoint_kind om_stats_endpoint(const struct om_req *req)
{
    const char *u = req->url != NULL ? req->url : "";

    if (strncmp(u, "/api/", 5) == 0 || strcmp(u, "/metrics") == 0)
        return OM_EP_ADMIN;
    if (strcmp(u, "/v2") == 0 || strcmp(u, "/v2/") == 0)
        return OM_EP_BASE;
    if (strncmp(u, "/v2/", 4) != 0)
        return strcmp(u, "/healthz") == 0 ? OM_EP_OTHER : OM_EP_UI;
    /* req->p is filled as far as the path parsed (ref.h); a path that did
     * not parse leaves kind at 0 (BASE) with no name: "other". */
    switch (req->p.kind) {
    case OM_V2_MANIFEST: return OM_EP_MANIFEST;
    case OM_V2_BLOB: return OM_EP_BLOB;
    case OM_V2_TAGS: return OM_EP_TAGS;
    case OM_V2_CATALOG: return OM_EP_CATALOG;
    case OM_V2_REFERRERS: return OM_EP_REFERRERS;
    default: return OM_EP_OTHER;
    }
}

/* The ring slot for `minute`, claiming it when a new minute starts; NULL
 * when the slot already belongs to a later minute. */
static struct om_stats_minute *minute_slot(struct om_stats *s, int64_t minute)
{
    struct om_stats_minute *m = &s->ring[minute % OM_STATS_HISTORY];
    int64_t cur = atomic_load_explicit(&m->minute, memory_order_acquire);

    if (cur == minute)
        return m;
    if (cur > minute)
        return NULL;
    pthread_mutex_lock(&s->ring_mu);
    cur = atomic_load_explicit(&m->minute, memory_order_relaxed);
    if (cur < minute) {
        atomic_store_explicit(&m->requests, 0, memory_order_relaxed);
        atomic_store_explicit(&m->hits, 0, memory_order_relaxed);
        atomic_store_explicit(&m->misses, 0, memory_order_relaxed);
        atomic_store_explicit(&m->bytes_cache, 0, memory_order_relaxed);
        atomic_store_explicit(&m->bytes_upstream, 0, memory_order_relaxed);
        atomic_store_explicit(&m->minute, minute, memory_order_release);
        cur = minute;
    }
    pthread_mutex_unlock(&s->ring_mu);
    return cur == minute ? m : NULL;
}

static void add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void om_stats_note(struct om_stats *s, const struct om_req *req, bool completed_ok, int64_t now_ms)
{
    om_endpoint_kind k = om_stats_endpoint(req);
    unsigned st = req->status < OM_STATS_STATUS_MAX ? req->status : 0;
    bool hit = req->cache == OM_CACHE_HIT || req->cache == OM_CACHE_STALE;
    bool miss = req->cache == OM_CACHE_MISS || req->cache == OM_CACHE_COALESCED;
    /* Bytes count as server/dispatch.c counts srv->ctr.bytes_*: completed GETs. */
    uint64_t bytes = completed_ok && !req->head ? req->bytes : 0;
    struct om_stats_minute *m;

    add(&s->by_status[k][st], 1);
    if (!completed_ok)
        add(&s->aborted[k], 1);
    if ((unsigned)req->cache < OM_STATS_CACHE_RESULTS)
        add(&s->cache_bytes[req->cache], bytes);
    if (now_ms < 0 || (m = minute_slot(s, now_ms / 60000)) == NULL)
        return;
    add(&m->requests, 1);
    if (hit) {
        add(&m->hits, 1);
        add(&m->bytes_cache, bytes);
    } else if (miss) {
        add(&m->misses, 1);
        add(&m->bytes_upstream, bytes);
    }
}

void om_stats_history(struct om_stats *s, int64_t now_ms, struct om_stats_point out[OM_STATS_HISTORY])
{
    int64_t now_min = now_ms / 60000;
    for (size_t i = 0; i < OM_STATS_HISTORY; i++) {
        int64_t minute = now_min - (int64_t)(OM_STATS_HISTORY - 1 - i);
        struct om_stats_point *p = &out[i];
        memset(p, 0, sizeof(*p));
        p->t_ms = minute * 60000;
        if (minute < 0)
            continue;
        struct om_stats_minute *m = &s->ring[minute % OM_STATS_HISTORY];
        if (atomic_load_explicit(&m->minute, memory_order_acquire) != minute)
            continue;
        p->requests = atomic_load_explicit(&m->requests, memory_order_relaxed);
        p->hits = atomic_load_explicit(&m->hits, memory_order_relaxed);
        p->misses = atomic_load_explicit(&m->misses, memory_order_relaxed);
        p->bytes_cache = atomic_load_explicit(&m->bytes_cache, memory_order_relaxed);
        p->bytes_upstream = atomic_load_explicit(&m->bytes_upstream, memory_order_relaxed);
    }
}

const uint64_t om_stats_lat_bounds_us[OM_STATS_LAT_BUCKETS - 1] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

void om_stats_upstream_observe(struct om_stats *s, size_t i, const struct om_upstream_stats *us)
{
    if (i >= OM_MAX_UPSTREAMS)
        return;
    pthread_mutex_lock(&s->up_mu);
    struct om_stats_upstream *u = &s->up[i];
    if (us->requests > u->seen_requests) {
        size_t b = 0;
        while (b < OM_STATS_LAT_BUCKETS - 1 && us->last_latency_us > om_stats_lat_bounds_us[b])
            b++;
        u->lat_hist[b]++;
        u->lat_sum_us += us->last_latency_us;
        u->lat_count++;
        u->seen_requests = us->requests;
    }
    if (us->last_error_ms > u->last_error_ms) {
        struct om_up_error *e = &u->recent[u->head];
        e->t_ms = us->last_error_ms;
        snprintf(e->message, sizeof(e->message), "%s", us->last_error);
        u->head = (u->head + 1) % OM_STATS_UP_ERRORS;
        if (u->n < OM_STATS_UP_ERRORS)
            u->n++;
        u->last_error_ms = us->last_error_ms;
    }
    pthread_mutex_unlock(&s->up_mu);
}

void om_stats_upstream_latency(struct om_stats *s, size_t i, uint64_t hist[OM_STATS_LAT_BUCKETS],
                               uint64_t *sum_us, uint64_t *count)
{
    memset(hist, 0, sizeof(uint64_t) * OM_STATS_LAT_BUCKETS);
    *sum_us = *count = 0;
    if (i >= OM_MAX_UPSTREAMS)
        return;
    pthread_mutex_lock(&s->up_mu);
    memcpy(hist, s->up[i].lat_hist, sizeof(s->up[i].lat_hist));
    *sum_us = s->up[i].lat_sum_us;
    *count = s->up[i].lat_count;
    pthread_mutex_unlock(&s->up_mu);
}

size_t om_stats_upstream_errors(struct om_stats *s, size_t i, struct om_up_error *out, size_t max)
{
    size_t n = 0;
    if (i >= OM_MAX_UPSTREAMS)
        return 0;
    pthread_mutex_lock(&s->up_mu);
    const struct om_stats_upstream *u = &s->up[i];
    for (; n < u->n && n < max; n++)
        out[n] = u->recent[(u->head + OM_STATS_UP_ERRORS - 1 - n) % OM_STATS_UP_ERRORS];
    pthread_mutex_unlock(&s->up_mu);
    return n;
}

void om_stats_flights_begin(struct om_stats *s)
{
    pthread_mutex_lock(&s->flight_mu);
    s->round++;
}

void om_stats_flights_sample(struct om_stats *s, const om_digest *d, uint64_t written,
                             int64_t now_ms, double *rate_bps, int64_t *first_ms)
{
    struct om_flight_sample *f = NULL;

    for (size_t i = 0; i < s->n_flights && f == NULL; i++)
        if (strcmp(s->flights[i].digest.str, d->str) == 0)
            f = &s->flights[i];
    if (f == NULL) {
        if (s->n_flights == OM_STATS_FLIGHTS) {
            /* More downloads than we track: no rate for this one. */
            *rate_bps = 0;
            *first_ms = now_ms;
            return;
        }
        f = &s->flights[s->n_flights++];
        memset(f, 0, sizeof(*f));
        f->digest = *d;
        f->first_ms = f->last_ms = now_ms;
        f->last_bytes = written;
    } else if (now_ms - f->last_ms >= RATE_MIN_DT_MS) {
        double inst = written >= f->last_bytes
                          ? (double)(written - f->last_bytes) * 1000.0 / (double)(now_ms - f->last_ms)
                          : 0.0;
        /* Smooth over visits; the first measured rate stands alone. */
        f->rate_bps = f->rate_bps > 0 ? 0.5 * f->rate_bps + 0.5 * inst : inst;
        f->last_ms = now_ms;
        f->last_bytes = written;
    }
    f->round = s->round;
    *rate_bps = f->rate_bps;
    *first_ms = f->first_ms;
}

void om_stats_flights_end(struct om_stats *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n_flights; i++)
        if (s->flights[i].round == s->round)
            s->flights[k++] = s->flights[i];
    s->n_flights = k;
    pthread_mutex_unlock(&s->flight_mu);
}
