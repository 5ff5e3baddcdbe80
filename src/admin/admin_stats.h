/* admin_stats.h — the request statistics behind /api/v1/stats and
 * /metrics, and the small bits of state the admin view keeps between
 * requests.  Private to the admin module (api_admin.c, admin_*.c).
 *
 * struct om_stats is srv->stats, created by om_admin_init.  The per-request
 * path (om_stats_note, from om_admin_note_request on every finished
 * request, any thread) is O(1) and lock-free: relaxed atomic adds into
 * fixed arrays, plus a mutex only when a new minute starts in the history
 * ring (once a minute).  Everything else (upstream error history, download
 * rate samples) sits behind short mutexes and is touched by admin requests
 * or by requests that already talked to an upstream.
 */
#ifndef OM_ADMIN_STATS_H
#define OM_ADMIN_STATS_H

#include <pthread.h>
#include <stdatomic.h>

#include "http/req.h"

struct om_index_admin;

/* Endpoint kinds for the request counters (label `endpoint`). */
typedef enum {
    OM_EP_BASE, OM_EP_MANIFEST, OM_EP_BLOB, OM_EP_TAGS, OM_EP_CATALOG, OM_EP_REFERRERS,
    OM_EP_ADMIN, OM_EP_UI, OM_EP_OTHER,
    OM_EP__COUNT
} om_endpoint_kind;

#define OM_STATS_STATUS_MAX 600     /* statuses 100..599; 0 = none was sent */
#define OM_STATS_HISTORY 60         /* minutes kept for the chart */
#define OM_STATS_CACHE_RESULTS 5    /* om_cache_result values */
#define OM_STATS_UP_ERRORS 10       /* recent errors kept per upstream */
#define OM_STATS_FLIGHTS 512        /* downloads tracked for rates */

/* One minute of the history ring.  `minute` (Unix minutes) says which
 * minute the counters belong to; a slot is reused 60 minutes later. */
struct om_stats_minute {
    atomic_int_fast64_t minute;
    atomic_uint_fast64_t requests, hits, misses, bytes_cache, bytes_upstream;
};

/* A copy of one minute for readers. */
struct om_stats_point {
    int64_t t_ms;                   /* start of the minute */
    uint64_t requests, hits, misses, bytes_cache, bytes_upstream;
};

struct om_up_error {
    int64_t t_ms;
    char message[256];
};

/* Latency histogram buckets (upper bounds, microseconds); the last
 * bucket, OM_STATS_LAT_BUCKETS - 1, is +Inf. */
#define OM_STATS_LAT_BUCKETS 12
extern const uint64_t om_stats_lat_bounds_us[OM_STATS_LAT_BUCKETS - 1];

struct om_stats_upstream {
    int64_t last_error_ms;          /* newest error already recorded */
    struct om_up_error recent[OM_STATS_UP_ERRORS];  /* ring */
    size_t head, n;
    /* Sampled latency: upstream.c keeps only the last request's latency,
     * so each observation that finds new requests records that one. */
    uint64_t seen_requests;
    uint64_t lat_hist[OM_STATS_LAT_BUCKETS];        /* per bucket, not cumulative */
    uint64_t lat_sum_us, lat_count;
};

struct om_flight_sample {
    om_digest digest;
    int64_t first_ms;               /* when we first saw it */
    int64_t last_ms;
    uint64_t last_bytes;
    double rate_bps;                /* smoothed */
    unsigned round;                 /* last visit round it was seen in */
};

struct om_stats {
    /* ---- lock-free counters (om_stats_note) ---- */
    atomic_uint_fast64_t by_status[OM_EP__COUNT][OM_STATS_STATUS_MAX];
    atomic_uint_fast64_t aborted[OM_EP__COUNT];
    atomic_uint_fast64_t cache_bytes[OM_STATS_CACHE_RESULTS];
    atomic_uint_fast64_t evictions, evicted_bytes;
    struct om_stats_minute ring[OM_STATS_HISTORY];
    pthread_mutex_t ring_mu;        /* only to start a new minute */

    /* ---- upstream error history (observed from om_upstream_stats) ---- */
    pthread_mutex_t up_mu;
    struct om_stats_upstream up[OM_MAX_UPSTREAMS];

    /* ---- download rate samples (om_stats_flights_*) ---- */
    pthread_mutex_t flight_mu;
    struct om_flight_sample flights[OM_STATS_FLIGHTS];
    size_t n_flights;
    unsigned round;

    /* ---- the admin view's read-only index connection ---- */
    struct om_index_admin *ia;      /* owned */
};

/* *out owned by the caller (om_stats_free). */
int om_stats_new(struct om_stats **out);
void om_stats_free(struct om_stats *s);

om_endpoint_kind om_stats_endpoint(const struct om_req *req);
const char *om_stats_endpoint_name(om_endpoint_kind k);

/* Count one finished request.  now_ms: wall clock. */
void om_stats_note(struct om_stats *s, const struct om_req *req, bool completed_ok, int64_t now_ms);

/* The last OM_STATS_HISTORY minutes, oldest first, ending with the
 * current (partial) minute; minutes without traffic are zeros. */
void om_stats_history(struct om_stats *s, int64_t now_ms, struct om_stats_point out[OM_STATS_HISTORY]);

/* Record upstream i's newest error if it is new, and its last latency if
 * it made requests since the last observation (cheap; takes up_mu). */
void om_stats_upstream_observe(struct om_stats *s, size_t i, const struct om_upstream_stats *us);
/* Copy upstream i's sampled latency histogram (per bucket). */
void om_stats_upstream_latency(struct om_stats *s, size_t i, uint64_t hist[OM_STATS_LAT_BUCKETS],
                               uint64_t *sum_us, uint64_t *count);
/* Copy upstream i's recent errors, newest first; returns the count. */
size_t om_stats_upstream_errors(struct om_stats *s, size_t i, struct om_up_error *out, size_t max);

/* Download rates: between flights_begin and flights_end (one visit of the
 * fetch table, under flight_mu), flights_sample gives each download's
 * smoothed rate and first-seen time; flights_end drops downloads that were
 * not seen in this round. */
void om_stats_flights_begin(struct om_stats *s);
void om_stats_flights_sample(struct om_stats *s, const om_digest *d, uint64_t written,
                             int64_t now_ms, double *rate_bps, int64_t *first_ms);
void om_stats_flights_end(struct om_stats *s);

#endif
