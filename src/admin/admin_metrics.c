/* admin_metrics.c — GET /metrics: the Prometheus text exposition format
 * 0.0.4 (docs/metrics.md lists every series).
 *
 * Design: one pass over the live counters (srv->ctr, srv->stats, each
 * upstream's stats, the fetch table, the store and the admin index
 * connection) into a growable text buffer with a hard cap, sent as one
 * response.  Every family gets HELP and TYPE lines before its samples and
 * is written in one block (the format forbids interleaving families);
 * counters end in _total, sizes in _bytes, times in _seconds.  Label
 * values (upstream names come from the config) are escaped as the format
 * says: backslash, double quote and newline.  Series that would be
 * meaningless are left out rather than faked: an upstream's rate-limit
 * gauge only once the upstream reported one, its health only once it was
 * asked something.
 */
#include "admin/admin_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cluster_members.h"
#include "cache/cluster.h"
#include "cache/gc.h"
#include "cache/index_admin.h"
#include "cache/mcache.h"
#include "http/limits.h"

#include <sqlite3.h>

#define METRICS_MAX (8u * 1024 * 1024)   /* far above what the series add up to */

struct mbuf {
    char *buf;        /* owned; handed to the response */
    size_t len, cap;
    bool failed;      /* out of memory or over METRICS_MAX */
};

static void mb_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void mb_printf(struct mbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->failed)
        return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        n = vsnprintf(b->buf != NULL ? b->buf + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 16384;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *nb = cap <= METRICS_MAX ? realloc(b->buf, cap) : NULL;
        if (nb == NULL) {
            b->failed = true;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
}

/* A label value escaped for the exposition format, into a fixed buffer
 * (label values here are short: names from the config). */
static const char *esc(const char *s, char *out, size_t outsz)
{
    size_t o = 0;
    for (; s != NULL && *s != '\0' && o + 3 < outsz; s++) {
        if (*s == '\\' || *s == '"') {
            out[o++] = '\\';
            out[o++] = *s;
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
    return out;
}

static void family(struct mbuf *b, const char *name, const char *type, const char *help)
{
    mb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_u64(struct mbuf *b, const char *name, uint64_t v)
{
    mb_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void one_u64(struct mbuf *b, const char *name, const char *type, const char *help,
                    uint64_t v)
{
    family(b, name, type, help);
    sample_u64(b, name, v);
}

static const char *const CACHE_RESULTS[OM_STATS_CACHE_RESULTS] = {
    [OM_CACHE_NONE] = NULL, [OM_CACHE_HIT] = "hit", [OM_CACHE_MISS] = "miss",
    [OM_CACHE_STALE] = "stale", [OM_CACHE_COALESCED] = "coalesced",
};

static void requests(struct mbuf *b, struct om_server *srv)
{
    struct om_stats *st = srv->stats;
    const struct om_counters *c = &srv->ctr;

    family(b, "ocimirror_http_requests_total", "counter",
           "Finished HTTP requests by endpoint and status code (code 0: no answer was sent).");
    for (int k = 0; k < OM_EP__COUNT; k++)
        for (unsigned s = 0; s < OM_STATS_STATUS_MAX; s++) {
            uint64_t v = atomic_load_explicit(&st->by_status[k][s], memory_order_relaxed);
            if (v > 0)
                mb_printf(b, "ocimirror_http_requests_total{endpoint=\"%s\",code=\"%u\"} %llu\n",
                          om_stats_endpoint_name(k), s, (unsigned long long)v);
        }
    family(b, "ocimirror_http_requests_aborted_total", "counter",
           "Requests whose response did not complete (client gone, transfer failed).");
    for (int k = 0; k < OM_EP__COUNT; k++)
        mb_printf(b, "ocimirror_http_requests_aborted_total{endpoint=\"%s\"} %llu\n",
                  om_stats_endpoint_name(k),
                  (unsigned long long)atomic_load_explicit(&st->aborted[k], memory_order_relaxed));
    one_u64(b, "ocimirror_http_requests_in_progress", "gauge",
            "Requests being handled now (idle keep-alive connections not counted).",
            atomic_load(&srv->connections));
    one_u64(b, "ocimirror_manifest_cache_bytes", "gauge",
            "Bytes held by the in-memory manifest/tag/route cache (bounded at 8 MiB).",
            om_mcache_bytes(srv->mcache));
    one_u64(b, "ocimirror_sqlite_memory_bytes", "gauge",
            "Heap memory SQLite holds now (page caches of the index connections).",
            (uint64_t)sqlite3_memory_used());
    one_u64(b, "ocimirror_http_connections_open", "gauge",
            "Client connections open now, idle keep-alives included.",
            om_conn_guard_open(&srv->guard));
    one_u64(b, "ocimirror_http_connections_refused_total", "counter",
            "Connections closed as soon as accepted: limits.max_connections were already open.",
            atomic_load(&srv->guard.refused));
    one_u64(b, "ocimirror_http_header_timeouts_total", "counter",
            "Connections closed because a request head was not complete within "
            "limits.header_timeout (or connection_timeout on a kept-alive connection).",
            atomic_load(&srv->guard.head_timeouts));

    family(b, "ocimirror_cache_requests_total", "counter",
           "Manifest and blob requests by cache result: hit, miss, stale (upstream failed, "
           "cached copy served), coalesced (joined a download in progress).");
    mb_printf(b, "ocimirror_cache_requests_total{result=\"hit\"} %llu\n",
              (unsigned long long)atomic_load(&c->hits));
    mb_printf(b, "ocimirror_cache_requests_total{result=\"miss\"} %llu\n",
              (unsigned long long)atomic_load(&c->misses));
    mb_printf(b, "ocimirror_cache_requests_total{result=\"stale\"} %llu\n",
              (unsigned long long)atomic_load(&c->stale));
    mb_printf(b, "ocimirror_cache_requests_total{result=\"coalesced\"} %llu\n",
              (unsigned long long)atomic_load(&c->coalesced));
    family(b, "ocimirror_cache_response_bytes_total", "counter",
           "Body bytes of completed GET responses by cache result.");
    for (int r = 1; r < OM_STATS_CACHE_RESULTS; r++)
        mb_printf(b, "ocimirror_cache_response_bytes_total{result=\"%s\"} %llu\n", CACHE_RESULTS[r],
                  (unsigned long long)atomic_load(&st->cache_bytes[r]));
    family(b, "ocimirror_served_bytes_total", "counter",
           "Body bytes served to clients by source: from the local cache, or streamed while "
           "coming from the upstream.");
    /* Hit and stale bodies come from the store; miss and coalesced ones are
     * streamed as they arrive from the upstream. */
    mb_printf(b, "ocimirror_served_bytes_total{source=\"cache\"} %llu\n",
              (unsigned long long)(atomic_load(&st->cache_bytes[OM_CACHE_HIT]) +
                                   atomic_load(&st->cache_bytes[OM_CACHE_STALE])));
    mb_printf(b, "ocimirror_served_bytes_total{source=\"upstream\"} %llu\n",
              (unsigned long long)(atomic_load(&st->cache_bytes[OM_CACHE_MISS]) +
                                   atomic_load(&st->cache_bytes[OM_CACHE_COALESCED])));
}

static void upstream_pools(struct mbuf *b, struct om_server *srv, char name[][160], size_t n);

/* Per-upstream families; stats[] gathered once so every family agrees. */
static void upstreams(struct mbuf *b, struct om_server *srv)
{
    const struct om_config *cfg = srv->cfg;
    size_t n = cfg->n_upstreams < OM_MAX_UPSTREAMS ? cfg->n_upstreams : OM_MAX_UPSTREAMS;
    struct om_upstream_stats us[OM_MAX_UPSTREAMS];
    char name[OM_MAX_UPSTREAMS][160];

    for (size_t i = 0; i < n; i++) {
        om_admin_upstream_stats(srv, i, &us[i]);
        esc(cfg->upstreams[i].name, name[i], sizeof(name[i]));
    }
    family(b, "ocimirror_upstream_requests_total", "counter",
           "Logical requests to each upstream (after retries, redirects and auth).");
    for (size_t i = 0; i < n; i++)
        mb_printf(b, "ocimirror_upstream_requests_total{upstream=\"%s\"} %llu\n", name[i],
                  (unsigned long long)us[i].requests);
    family(b, "ocimirror_upstream_errors_total", "counter",
           "Upstream requests that failed: unreachable, transport error or 5xx.");
    for (size_t i = 0; i < n; i++)
        mb_printf(b, "ocimirror_upstream_errors_total{upstream=\"%s\"} %llu\n", name[i],
                  (unsigned long long)us[i].errors);
    family(b, "ocimirror_upstream_up", "gauge",
           "1 when the last request reached the upstream and it answered below 500; absent "
           "until the upstream was asked something.");
    for (size_t i = 0; i < n; i++)
        if (us[i].requests > 0)
            mb_printf(b, "ocimirror_upstream_up{upstream=\"%s\"} %d\n", name[i], us[i].healthy ? 1 : 0);
    family(b, "ocimirror_upstream_last_success_timestamp_seconds", "gauge",
           "Unix time of the upstream's last successful request.");
    for (size_t i = 0; i < n; i++)
        if (us[i].last_ok_ms > 0)
            mb_printf(b, "ocimirror_upstream_last_success_timestamp_seconds{upstream=\"%s\"} %.3f\n",
                      name[i], (double)us[i].last_ok_ms / 1000.0);
    family(b, "ocimirror_upstream_last_error_timestamp_seconds", "gauge",
           "Unix time of the upstream's last failed request.");
    for (size_t i = 0; i < n; i++)
        if (us[i].last_error_ms > 0)
            mb_printf(b, "ocimirror_upstream_last_error_timestamp_seconds{upstream=\"%s\"} %.3f\n",
                      name[i], (double)us[i].last_error_ms / 1000.0);
    family(b, "ocimirror_upstream_ratelimit_remaining", "gauge",
           "Pulls left in the upstream's rate-limit window (Docker Hub ratelimit-remaining); "
           "absent until the upstream reported it.");
    for (size_t i = 0; i < n; i++)
        if (us[i].ratelimit_remaining >= 0)
            mb_printf(b, "ocimirror_upstream_ratelimit_remaining{upstream=\"%s\"} %ld\n", name[i],
                      us[i].ratelimit_remaining);

#ifdef OM_UP_LATENCY_BUCKETS
    /* upstream.c keeps an exact histogram (the hook in docs/metrics.md). */
    static const uint64_t bounds_us[] = OM_UP_LATENCY_BOUNDS_US;
    _Static_assert(OM_ARRAY_LEN(bounds_us) == OM_UP_LATENCY_BUCKETS - 1, "bounds + Inf");
    family(b, "ocimirror_upstream_request_duration_seconds", "histogram",
           "Duration of upstream requests (logical: after retries, redirects and auth).");
#else
    family(b, "ocimirror_upstream_request_duration_seconds", "histogram",
           "Duration of upstream requests, sampled: one observation (the latest request's "
           "duration) per mirror request that needed the upstream.");
#endif
    for (size_t i = 0; i < n; i++) {
        uint64_t sum_us = 0, count = 0, cum = 0;
#ifdef OM_UP_LATENCY_BUCKETS
        const uint64_t *hist = us[i].latency_hist;
        size_t nb = OM_UP_LATENCY_BUCKETS;
        sum_us = us[i].latency_sum_us;
        for (size_t k = 0; k < nb; k++)
            count += hist[k];
#else
        uint64_t hist[OM_STATS_LAT_BUCKETS];
        const uint64_t *bounds_us = om_stats_lat_bounds_us;
        size_t nb = OM_STATS_LAT_BUCKETS;
        om_stats_upstream_latency(srv->stats, i, hist, &sum_us, &count);
#endif
        for (size_t k = 0; k + 1 < nb; k++) {
            cum += hist[k];
            mb_printf(b, "ocimirror_upstream_request_duration_seconds_bucket{upstream=\"%s\",le=\"%g\"} %llu\n",
                      name[i], (double)bounds_us[k] / 1e6, (unsigned long long)cum);
        }
        mb_printf(b, "ocimirror_upstream_request_duration_seconds_bucket{upstream=\"%s\",le=\"+Inf\"} %llu\n",
                  name[i], (unsigned long long)count);
        mb_printf(b, "ocimirror_upstream_request_duration_seconds_sum{upstream=\"%s\"} %.6f\n",
                  name[i], (double)sum_us / 1e6);
        mb_printf(b, "ocimirror_upstream_request_duration_seconds_count{upstream=\"%s\"} %llu\n",
                  name[i], (unsigned long long)count);
    }
    upstream_pools(b, srv, name, n);
}

/* Per endpoint and per pool account of each upstream (upstream_pool.c):
 * labels are the configured URL (never credentials: config_upstreams.c
 * refuses them in a URL) and the account's username, never a secret. */
struct pool_view {
    struct om_upstream_url_stats url[OM_MAX_UPSTREAMS][OM_MAX_UPSTREAM_URLS];
    struct om_upstream_account_stats acct[OM_MAX_UPSTREAMS][OM_MAX_CREDENTIALS];
    size_t n_url[OM_MAX_UPSTREAMS], n_acct[OM_MAX_UPSTREAMS];
};

enum pool_series { URL_REQ, URL_ERR, URL_UP, URL_BACKOFF, ACCT_REQ, ACCT_429, ACCT_LEFT, ACCT_LIM };

static const struct {
    const char *name, *type, *help;
} POOL_SERIES[] = {
    [URL_REQ] = {"ocimirror_upstream_url_requests_total", "counter",
                 "Tries that went to each endpoint (URL) of an upstream."},
    [URL_ERR] = {"ocimirror_upstream_url_errors_total", "counter",
                 "Tries of an endpoint that failed: unreachable, transport error, 5xx or 429."},
    [URL_UP] = {"ocimirror_upstream_url_up", "gauge",
                "1 when the endpoint's last try was answered below 500 (and not 429); absent "
                "until it was tried."},
    [URL_BACKOFF] = {"ocimirror_upstream_url_backoff_seconds", "gauge",
                     "Seconds the endpoint is still skipped after failing (0: in use)."},
    [ACCT_REQ] = {"ocimirror_upstream_account_requests_total", "counter",
                  "Tries made with each account of an upstream's credential pool."},
    [ACCT_429] = {"ocimirror_upstream_account_rate_limited_total", "counter",
                  "429 answers each account got."},
    [ACCT_LEFT] = {"ocimirror_upstream_account_ratelimit_remaining", "gauge",
                   "Pulls the account has left in its window (ratelimit-remaining); absent "
                   "until the upstream reported it."},
    [ACCT_LIM] = {"ocimirror_upstream_account_limited", "gauge",
                  "1 while the account is skipped (a 429, or no pulls left) until its window "
                  "ends."},
};

/* One sample of series s for endpoint or account k of upstream i. */
static void pool_sample(struct mbuf *b, const struct pool_view *v, enum pool_series s, size_t i,
                        size_t k, const char *up, int64_t now)
{
    char lbl[2 * OM_UPSTREAM_URL_MAX + 8];
    const struct om_upstream_url_stats *u = &v->url[i][k];
    const struct om_upstream_account_stats *a = &v->acct[i][k];
    bool is_url = s <= URL_BACKOFF;
    int64_t left = is_url ? u->backoff_until_ms - now : 0;

    if ((s == URL_UP && !u->asked) || (s == ACCT_LEFT && a->ratelimit_remaining < 0))
        return;
    esc(is_url ? u->url : a->username, lbl, sizeof(lbl));
    mb_printf(b, "%s{upstream=\"%s\",%s=\"%s\"} ", POOL_SERIES[s].name, up,
              is_url ? "url" : "account", lbl);
    switch (s) {
    case URL_REQ: mb_printf(b, "%llu\n", (unsigned long long)u->requests); break;
    case URL_ERR: mb_printf(b, "%llu\n", (unsigned long long)u->errors); break;
    case URL_UP: mb_printf(b, "%d\n", u->healthy ? 1 : 0); break;
    case URL_BACKOFF: mb_printf(b, "%.3f\n", left > 0 ? (double)left / 1000.0 : 0.0); break;
    case ACCT_REQ: mb_printf(b, "%llu\n", (unsigned long long)a->requests); break;
    case ACCT_429: mb_printf(b, "%llu\n", (unsigned long long)a->rate_limited); break;
    case ACCT_LEFT: mb_printf(b, "%ld\n", a->ratelimit_remaining); break;
    case ACCT_LIM: mb_printf(b, "%d\n", a->limited_until_ms > now ? 1 : 0); break;
    }
}

static void upstream_pools(struct mbuf *b, struct om_server *srv, char name[][160], size_t n)
{
    struct pool_view *v = calloc(1, sizeof(*v)); /* freed below: too big for a stack */
    int64_t now = om_now_ms();

    if (v == NULL) {
        b->failed = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        v->n_url[i] = om_admin_upstream_urls(srv, i, v->url[i], OM_MAX_UPSTREAM_URLS);
        v->n_acct[i] = om_admin_upstream_accounts(srv, i, v->acct[i], OM_MAX_CREDENTIALS);
    }
    for (size_t s = 0; s < OM_ARRAY_LEN(POOL_SERIES); s++) {
        family(b, POOL_SERIES[s].name, POOL_SERIES[s].type, POOL_SERIES[s].help);
        for (size_t i = 0; i < n; i++) {
            size_t m = s <= URL_BACKOFF ? v->n_url[i] : v->n_acct[i];
            for (size_t k = 0; k < m; k++)
                pool_sample(b, v, (enum pool_series)s, i, k, name[i], now);
        }
    }
    free(v);
}

static void downloads(struct mbuf *b, struct om_server *srv)
{
    struct om_fetch_stats fs;
    size_t all = 0;
    uint64_t waiters = 0, written = 0;

    om_admin_flight_totals(srv, &all, &waiters, &written);
    memset(&fs, 0, sizeof(fs));
    if (srv->fetch != NULL)
        om_fetch_stats_get(srv->fetch, &fs);
    one_u64(b, "ocimirror_downloads_in_flight", "gauge",
            "Blob downloads from upstreams in progress.", all);
    one_u64(b, "ocimirror_download_waiters", "gauge",
            "Client requests reading a blob download in progress.", waiters);
    one_u64(b, "ocimirror_download_in_flight_bytes", "gauge",
            "Bytes received so far by the downloads in progress.", written);
    one_u64(b, "ocimirror_downloads_started_total", "counter",
            "Blob downloads started (one per digest, however many clients wait).", fs.started);
    one_u64(b, "ocimirror_downloads_coalesced_total", "counter",
            "Requests that joined a download already in progress.", fs.coalesced);
    one_u64(b, "ocimirror_downloads_completed_total", "counter",
            "Blob downloads verified and committed to the store.", fs.completed);
    one_u64(b, "ocimirror_downloads_failed_total", "counter",
            "Blob downloads that failed (nothing was committed).", fs.failed);
    one_u64(b, "ocimirror_downloads_resumed_total", "counter",
            "Broken blob downloads resumed with a Range request.", fs.resumed);
    one_u64(b, "ocimirror_download_digest_mismatches_total", "counter",
            "Blob downloads whose bytes did not match their digest.", fs.digest_mismatch);
    one_u64(b, "ocimirror_download_received_bytes_total", "counter",
            "Blob bytes received from upstreams.", fs.bytes_from_upstream);
    one_u64(b, "ocimirror_download_peer_bytes_total", "counter",
            "Blob bytes streamed from other replicas of the cluster (their downloads).",
            fs.bytes_from_peer);
    one_u64(b, "ocimirror_downloads_abandoned_total", "counter",
            "Downloads whose clients all left while they waited for a slot: never started.",
            fs.abandoned);
    one_u64(b, "ocimirror_downloads_backgrounded_total", "counter",
            "Downloads whose clients all left mid-transfer: finished outside the slots.",
            fs.backgrounded);
    one_u64(b, "ocimirror_downloads_background", "gauge",
            "Downloads nobody reads any more, finishing outside the slots.", fs.background);
}

/* The metadata index: which backend, reachable or not (Redis). */
static void index_health(struct mbuf *b, struct om_server *srv)
{
    struct om_index_health ih;
    char be[32];
    om_index_health(srv->index, &ih);
    esc(ih.backend, be, sizeof(be));
    family(b, "ocimirror_index_up", "gauge",
           "1 while the metadata index (SQLite, or Redis shared by a cluster) answers.");
    mb_printf(b, "ocimirror_index_up{backend=\"%s\"} %d\n", be, ih.available ? 1 : 0);
    one_u64(b, "ocimirror_index_outages_total", "counter",
            "Times the metadata index became unreachable.", ih.outages);
    if (srv->cluster == NULL)
        return;
    struct om_cluster_stats cs;
    om_cluster_stats_get(srv->cluster, &cs);
    one_u64(b, "ocimirror_cluster_redis_up", "gauge",
            "1 while the cluster's Redis (download leases) answers; 0: each replica fetches "
            "for its own clients only.", om_cluster_redis_up(srv->cluster) ? 1 : 0);
    one_u64(b, "ocimirror_cluster_leases_won_total", "counter",
            "Downloads this replica owned (it fetched them from upstream).", cs.leases_won);
    one_u64(b, "ocimirror_cluster_leases_lost_total", "counter",
            "Downloads another replica owned (streamed from it).", cs.leases_lost);
    one_u64(b, "ocimirror_cluster_takeovers_total", "counter",
            "Leases taken over after their owner stopped renewing.", cs.takeovers);
    one_u64(b, "ocimirror_cluster_peer_streams_total", "counter",
            "Streams from other replicas' internal endpoint.", cs.peer_streams);
    one_u64(b, "ocimirror_cluster_peer_failures_total", "counter",
            "Peer streams that got no answer (the owner unreachable).", cs.peer_failures);
    one_u64(b, "ocimirror_cluster_local_only_total", "counter",
            "Downloads coordinated within this replica only (Redis unavailable).",
            cs.local_only);
}

/* Per lane and per upstream: how much waits (limits.jobs_per_upstream,
 * limits.max_downloads_per_upstream). */
static void load(struct mbuf *b, struct om_server *srv)
{
    const struct om_config *cfg = srv->cfg;
    unsigned n_lanes = srv->lane_other + 1;
    struct om_jobs_lane_stats ls[OM_JOBS_LANES_MAX];
    char name[OM_JOBS_LANES_MAX][160];

    for (unsigned l = 0; l < n_lanes && l < OM_JOBS_LANES_MAX; l++) {
        om_jobs_lane_stats(srv->jobs, l, &ls[l]);
        esc(om_server_lane_name(srv, l), name[l], sizeof(name[l]));
    }
    family(b, "ocimirror_jobs_running", "gauge",
           "Blocking jobs (searches, manifests, revalidations) running, per lane.");
    for (unsigned l = 0; l < n_lanes && l < OM_JOBS_LANES_MAX; l++)
        mb_printf(b, "ocimirror_jobs_running{lane=\"%s\"} %u\n", name[l], ls[l].running);
    family(b, "ocimirror_jobs_waiting", "gauge", "Jobs queued behind them, per lane.");
    for (unsigned l = 0; l < n_lanes && l < OM_JOBS_LANES_MAX; l++)
        mb_printf(b, "ocimirror_jobs_waiting{lane=\"%s\"} %zu\n", name[l], ls[l].waiting);
    family(b, "ocimirror_jobs_max", "gauge", "Jobs a lane may run at once (jobs_per_upstream).");
    for (unsigned l = 0; l < n_lanes && l < OM_JOBS_LANES_MAX; l++)
        mb_printf(b, "ocimirror_jobs_max{lane=\"%s\"} %u\n", name[l], ls[l].max);
    family(b, "ocimirror_jobs_delayed_total", "counter",
           "Jobs that had to wait for a thread of their lane.");
    for (unsigned l = 0; l < n_lanes && l < OM_JOBS_LANES_MAX; l++)
        mb_printf(b, "ocimirror_jobs_delayed_total{lane=\"%s\"} %llu\n", name[l],
                  (unsigned long long)ls[l].saturated);
    family(b, "ocimirror_upstream_downloads_active", "gauge",
           "Download slots each upstream holds.");
    struct om_upstream_load ld[OM_MAX_UPSTREAMS];
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        om_server_upstream_load(srv, i, &ld[i]);
        mb_printf(b, "ocimirror_upstream_downloads_active{upstream=\"%s\"} %u\n", name[i],
                  ld[i].dl_active);
    }
    family(b, "ocimirror_upstream_downloads_waiting", "gauge",
           "Downloads waiting for one of their upstream's slots.");
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        mb_printf(b, "ocimirror_upstream_downloads_waiting{upstream=\"%s\"} %u\n", name[i],
                  ld[i].dl_waiting);
    family(b, "ocimirror_upstream_saturated", "gauge",
           "1 when new work for the upstream waits (its job lane or its download slots full).");
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        mb_printf(b, "ocimirror_upstream_saturated{upstream=\"%s\"} %d\n", name[i],
                  ld[i].saturated ? 1 : 0);
}

static void storage(struct mbuf *b, struct om_server *srv)
{
    struct om_stats *st = srv->stats;
    struct om_index_admin_counts ic;

    one_u64(b, "ocimirror_storage_used_bytes", "gauge", "Bytes of committed content in the store.",
            om_store_bytes(srv->store));
    one_u64(b, "ocimirror_storage_quota_bytes", "gauge",
            "storage.max_size: the quota GC keeps the store under; 0 = no quota.",
            srv->cfg->storage_max_size);
    one_u64(b, "ocimirror_blobs_quarantined_total", "counter",
            "Stored blobs found of the wrong size, moved to the quarantine and fetched again.",
            om_store_quarantined(srv->store));
    if (st->ia != NULL && om_index_admin_counts(st->ia, &ic) == OM_OK) {
        one_u64(b, "ocimirror_cached_repositories", "gauge", "Repositories in the index.", ic.repos);
        one_u64(b, "ocimirror_cached_tags", "gauge", "Tags in the index.", ic.tags);
        one_u64(b, "ocimirror_cached_manifests", "gauge", "Manifests in the index.", ic.manifests);
        one_u64(b, "ocimirror_cached_blobs", "gauge", "Blobs in the index.", ic.blobs);
    }
    one_u64(b, "ocimirror_evictions_total", "counter",
            "Images evicted by GC to keep the store under its quota.",
            atomic_load(&st->evictions));
    one_u64(b, "ocimirror_evicted_bytes_total", "counter", "Bytes freed by GC evictions.",
            atomic_load(&st->evicted_bytes));

    struct om_gc_totals t;
    memset(&t, 0, sizeof(t));
    (void)om_gc_status(srv->gc, NULL, &t); /* totals are filled before the first run too */
    one_u64(b, "ocimirror_gc_runs_total", "counter", "GC runs (background and on demand).", t.runs);
    one_u64(b, "ocimirror_gc_errors_total", "counter", "GC runs that failed.", t.errors);
    one_u64(b, "ocimirror_gc_removed_blobs_total", "counter",
            "Store objects (blobs and manifests) removed by GC.", t.removed_blobs);
    one_u64(b, "ocimirror_gc_freed_bytes_total", "counter",
            "Bytes removed from the store by GC (evictions and orphans).", t.freed_bytes);
    one_u64(b, "ocimirror_gc_removed_ingest_total", "counter",
            "Stale ingest files (abandoned downloads) removed by GC.", t.removed_ingest);
    if (t.last_run_ms > 0) {
        family(b, "ocimirror_gc_last_run_timestamp_seconds", "gauge", "Unix time of the last GC run.");
        mb_printf(b, "ocimirror_gc_last_run_timestamp_seconds %.3f\n", (double)t.last_run_ms / 1000.0);
    }
}

/* access.* and policy.* (issue 12): who was refused and why. */
static void access_policy(struct mbuf *b, struct om_server *srv)
{
    struct om_auth_counters *c = om_auth_counters(srv->auth);
    one_u64(b, "ocimirror_policy_denied_total", "counter",
            "Requests answered 403 DENIED by policy.allow/policy.deny.",
            atomic_load(&srv->ctr.policy_denied));
    one_u64(b, "ocimirror_auth_failures_total", "counter",
            "Logins with a wrong user name or password.", atomic_load(&c->failures));
    family(b, "ocimirror_auth_rejected_total", "counter",
           "Requests refused by client authentication, by reason.");
    mb_printf(b, "ocimirror_auth_rejected_total{reason=\"missing\"} %llu\n",
              (unsigned long long)atomic_load(&c->missing));
    mb_printf(b, "ocimirror_auth_rejected_total{reason=\"invalid\"} %llu\n",
              (unsigned long long)atomic_load(&c->failures));
    mb_printf(b, "ocimirror_auth_rejected_total{reason=\"rate_limited\"} %llu\n",
              (unsigned long long)atomic_load(&c->limited));
    one_u64(b, "ocimirror_auth_verifications_total", "counter",
            "Password hashes computed (logins not in the memory of good ones).",
            atomic_load(&c->verified));
    one_u64(b, "ocimirror_auth_users", "gauge", "Users in access.htpasswd_file.",
            om_auth_users(srv->auth));
}

/* Per-client limits (http/limits.h): refusals by limit, records held. */
static void client_limits(struct mbuf *b, struct om_server *srv)
{
    struct om_limiter_totals t;

    if (srv->limiter == NULL)
        return;
    om_limiter_totals(srv->limiter, &t);
    family(b, "ocimirror_limit_rejections_total", "counter",
           "Requests refused 429 by a per-client limit (limits.per_client / per_user).");
    for (int k = OM_LIMIT_NONE + 1; k < OM_LIMIT__COUNT; k++)
        mb_printf(b, "ocimirror_limit_rejections_total{limit=\"%s\"} %llu\n",
                  om_limit_label((om_limit_kind)k), (unsigned long long)t.rejections[k]);
    one_u64(b, "ocimirror_limit_clients", "gauge",
            "Client records the limiter holds now (at most limits.max_clients).", t.clients);
    one_u64(b, "ocimirror_limit_client_evictions_total", "counter",
            "Client records dropped, least recently seen first, to make room for new clients.",
            t.evictions);
}

enum MHD_Result om_admin_metrics(struct om_req *req)
{
    struct om_server *srv = req->srv;
    struct mbuf b = {0};
    char v[64];

    family(&b, "ocimirror_build_info", "gauge", "Always 1; the version is in the label.");
    mb_printf(&b, "ocimirror_build_info{version=\"%s\"} 1\n", esc(OM_VERSION, v, sizeof(v)));
    family(&b, "ocimirror_start_time_seconds", "gauge", "Unix time the server started.");
    mb_printf(&b, "ocimirror_start_time_seconds %.3f\n", (double)srv->started_ms / 1000.0);
    requests(&b, srv);
    upstreams(&b, srv);
    downloads(&b, srv);
    load(&b, srv);
    index_health(&b, srv);
    storage(&b, srv);
    access_policy(&b, srv);
    client_limits(&b, srv);
    /* The cluster (admin_cluster.c's view; from the last heartbeat, no
     * round trip): 1 replica and no leases when alone. */
    uint64_t replicas = 1, flights = 0;
    if (srv->members != NULL)
        om_members_last_counts(srv->members, &replicas, &flights);
    one_u64(&b, "ocimirror_cluster_replicas", "gauge",
            "Replicas seen alive by their heartbeats (1 when alone).", replicas);
    one_u64(&b, "ocimirror_cluster_downloads_in_flight", "gauge",
            "Download leases held in the cluster (om:fl: keys).", flights);
    one_u64(&b, "ocimirror_gc_leader", "gauge",
            "1 while this replica holds the cluster's GC lease (runs GC).",
            om_gc_is_leader(srv->gc) ? 1 : 0);
    if (b.failed) {
        free(b.buf);
        return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNKNOWN",
                                    "cannot build the metrics (out of memory)");
    }
    return om_admin_reply_owned(req, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                                b.buf, b.len);
}
