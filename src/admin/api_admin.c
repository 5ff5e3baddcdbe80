/* api_admin.c — the operator's API: dispatch of /api/v1/... and /metrics,
 * the admin token, and the views of live state (stats, upstreams, events,
 * in-flight downloads, the route explainer).  The contract is
 * docs/admin-api.md; the index/store views are in admin_repos.c, the
 * Prometheus text in admin_metrics.c, counters in admin_stats.c, reply and
 * argument helpers in admin_json.c, the route explainer in admin_route.c.
 *
 * Lifecycle: om_admin_init (server start, before the daemon runs) creates
 * srv->stats and opens the admin's read-only index connection;
 * om_admin_free (after the daemon stopped) releases them.  Between the two,
 * om_admin_note_request runs on every finished request from any thread
 * (lock-free counters, admin_stats.c) and om_admin_handle answers admin
 * requests synchronously on the HTTP thread: nothing here blocks on an
 * upstream or waits for a job.
 *
 * Access: reads are public unless admin.protect_reads; state-changing
 * POSTs need `Authorization: Bearer <admin.token>` and answer 403 DENIED
 * when no token is configured.  Tokens are compared as SHA-256 digests with
 * CRYPTO_memcmp, so neither their bytes nor their length leak through
 * timing.
 *
 * Adding an endpoint: a row in ROUTES[] (path, methods, whether it writes),
 * a handler, a section in docs/admin-api.md and a check in
 * tests/e2e/test_admin_api.py.
 */
#include "admin/admin_int.h"
#include "cache/pullstats.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/index_admin.h"
#include "core/clientcfg.h"
#include "core/hash.h"
#include "core/log.h"

#define FLIGHTS_MAX 1024           /* downloads listed by /api/v1/inflight */

/* ---- lifecycle ------------------------------------------------------------ */

int om_admin_init(struct om_server *srv)
{
    int err = om_stats_new(&srv->stats);
    if (err != OM_OK)
        return err;
    /* Whatever the backend (a read-only SQLite connection, or Redis).
     * Without it the repository views answer 503; the rest works. */
    if ((err = om_index_admin_open_index(&srv->stats->ia, srv->index)) != OM_OK)
        om_log_kv(OM_LOG_ERROR, "admin: cannot open the index for reading", "storage",
                  om_store_root(srv->store), "error", om_strerror(err), NULL);
    return OM_OK;
}

void om_admin_free(struct om_server *srv)
{
    om_stats_free(srv->stats);
    srv->stats = NULL;
}

void om_admin_note_evictions(struct om_server *srv, uint64_t n, uint64_t bytes)
{
    if (srv == NULL || srv->stats == NULL)
        return;
    atomic_fetch_add_explicit(&srv->stats->evictions, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->stats->evicted_bytes, bytes, memory_order_relaxed);
}

void om_admin_upstream_stats(struct om_server *srv, size_t i, struct om_upstream_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->ratelimit_remaining = -1;
    if (i >= srv->cfg->n_upstreams || srv->up[i] == NULL)
        return;
    om_upstream_stats_get(srv->up[i], out);
    om_stats_upstream_observe(srv->stats, i, out);
}

size_t om_admin_upstream_urls(struct om_server *srv, size_t i, struct om_upstream_url_stats *out,
                              size_t max)
{
    if (i >= srv->cfg->n_upstreams || srv->up[i] == NULL)
        return 0;
    return om_upstream_url_stats(srv->up[i], out, max);
}

size_t om_admin_upstream_accounts(struct om_server *srv, size_t i,
                                  struct om_upstream_account_stats *out, size_t max)
{
    if (i >= srv->cfg->n_upstreams || srv->up[i] == NULL)
        return 0;
    return om_upstream_account_stats(srv->up[i], out, max);
}

void om_admin_note_request(struct om_server *srv, const struct om_req *req, bool completed_ok)
{
    if (srv->stats == NULL)
        return;
    om_stats_note(srv->stats, req, completed_ok, om_now_ms());
    /* A request that needed its upstream may have left an error there:
     * keep it for /api/v1/upstreams before the next one overwrites it. */
    if (req->upstream[0] != '\0' && req->cache != OM_CACHE_HIT) {
        for (size_t i = 0; i < srv->cfg->n_upstreams; i++) {
            if (strcmp(srv->cfg->upstreams[i].name, req->upstream) == 0) {
                struct om_upstream_stats us;
                om_admin_upstream_stats(srv, i, &us);
                break;
            }
        }
    }
}

/* ---- in-flight downloads --------------------------------------------------- */

struct flight_visit {
    struct om_admin_flight *out;
    size_t max, n, all;
};

/* Runs under the fetch table's lock: copy only. */
static void visit_flight(void *ud, const om_digest *d, const char *canonical, uint64_t written,
                         uint64_t total, unsigned waiters)
{
    struct flight_visit *v = ud;
    v->all++;
    if (v->n == v->max)
        return;
    struct om_admin_flight *f = &v->out[v->n++];
    f->digest = *d;
    snprintf(f->repository, sizeof(f->repository), "%s", canonical != NULL ? canonical : "");
    f->written = written;
    f->total = total;
    f->waiters = waiters;
}

struct flight_sum {
    size_t n;
    uint64_t waiters, written;
};

static void sum_flight(void *ud, const om_digest *d, const char *canonical, uint64_t written,
                       uint64_t total, unsigned waiters)
{
    struct flight_sum *s = ud;
    (void)d;
    (void)canonical;
    (void)total;
    s->n++;
    s->waiters += waiters;
    s->written += written;
}

void om_admin_flight_totals(struct om_server *srv, size_t *n, uint64_t *waiters, uint64_t *written)
{
    struct flight_sum s = {0};
    if (srv->fetch != NULL)
        om_fetch_visit(srv->fetch, sum_flight, &s);
    *n = s.n;
    *waiters = s.waiters;
    *written = s.written;
}

size_t om_admin_flights(struct om_server *srv, struct om_admin_flight *out, size_t max,
                        size_t *all)
{
    struct flight_visit v = {.out = out, .max = max};
    int64_t now = om_now_ms();

    if (srv->fetch != NULL)
        om_fetch_visit(srv->fetch, visit_flight, &v);
    om_stats_flights_begin(srv->stats);
    for (size_t i = 0; i < v.n; i++)
        om_stats_flights_sample(srv->stats, &out[i].digest, out[i].written, now,
                                &out[i].rate_bps, &out[i].started_ms);
    om_stats_flights_end(srv->stats);
    *all = v.all;
    return v.n;
}

/* ---- access ----------------------------------------------------------------- */

static bool token_matches(const struct om_config *cfg, const char *auth)
{
    om_digest want, got;
    const char *tok;

    if (cfg->admin_token == NULL || auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    tok = auth + 7;
    while (*tok == ' ')
        tok++;
    if (om_hash_buf(cfg->admin_token, strlen(cfg->admin_token), &want) != OM_OK ||
        om_hash_buf(tok, strlen(tok), &got) != OM_OK)
        return false;
    return CRYPTO_memcmp(want.str, got.str, sizeof(want.str)) == 0;
}

/* OM_OK, or the answer was sent (*ret) because access is refused. */
static int check_access(struct om_req *req, bool writes, enum MHD_Result *ret)
{
    const struct om_config *cfg = req->srv->cfg;
    const char *auth;

    if (!writes && !cfg->admin_protect_reads)
        return OM_OK;
    if (cfg->admin_token == NULL || cfg->admin_token[0] == '\0') {
        *ret = om_admin_reply_error(req, MHD_HTTP_FORBIDDEN, "DENIED",
                                    "no admin token is configured (admin.token or "
                                    "admin.token_file): this endpoint is off");
        return OM_ERR_DENIED;
    }
    auth = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
    if (!token_matches(cfg, auth)) {
        *ret = om_admin_reply_error_hdr(req, MHD_HTTP_UNAUTHORIZED, "UNAUTHORIZED",
                                        "admin token required: Authorization: Bearer <token>",
                                        "WWW-Authenticate", "Bearer realm=\"ocimirror-admin\"");
        if (auth != NULL)
            om_log_kv(OM_LOG_WARN, "admin: wrong token", "path", req->url, NULL);
        return OM_ERR_DENIED;
    }
    return OM_OK;
}

/* ---- GET /api/v1/stats -------------------------------------------------------- */

static json_t *ratio(uint64_t good, uint64_t all)
{
    return all > 0 ? json_real((double)good / (double)all) : json_null();
}

static enum MHD_Result handle_stats(struct om_req *req, const char *rest)
{
    struct om_server *srv = req->srv;
    const struct om_counters *c = &srv->ctr;
    struct om_stats *st = srv->stats;
    struct om_stats_point hist[OM_STATS_HISTORY];
    struct om_index_admin_counts ic;
    struct om_fetch_stats fs;
    int64_t now = om_now_ms();
    uint64_t h = atomic_load(&c->hits), mi = atomic_load(&c->misses);
    uint64_t sta = atomic_load(&c->stale), co = atomic_load(&c->coalesced);
    uint64_t hour_hits = 0, hour_misses = 0, waiters = 0, written = 0;
    size_t all_flights = 0;
    json_t *doc, *storage, *history, *cache, *cache_bytes;
    (void)rest;

    om_stats_history(st, now, hist);
    history = json_array();
    for (size_t i = 0; i < OM_STATS_HISTORY; i++) {
        hour_hits += hist[i].hits;
        hour_misses += hist[i].misses;
        json_array_append_new(
            history, json_pack("{s:I, s:o, s:o, s:o, s:o, s:o}", "t_ms", (json_int_t)hist[i].t_ms,
                               "requests", om_json_u64(hist[i].requests), "hits",
                               om_json_u64(hist[i].hits), "misses", om_json_u64(hist[i].misses),
                               "bytes_cache", om_json_u64(hist[i].bytes_cache), "bytes_upstream",
                               om_json_u64(hist[i].bytes_upstream)));
    }
    cache = json_pack("{s:o, s:o, s:o, s:o}", "hit", om_json_u64(h), "miss", om_json_u64(mi),
                      "stale", om_json_u64(sta), "coalesced", om_json_u64(co));
    cache_bytes = json_pack(
        "{s:o, s:o, s:o, s:o}", "hit", om_json_u64(atomic_load(&st->cache_bytes[OM_CACHE_HIT])),
        "miss", om_json_u64(atomic_load(&st->cache_bytes[OM_CACHE_MISS])), "stale",
        om_json_u64(atomic_load(&st->cache_bytes[OM_CACHE_STALE])), "coalesced",
        om_json_u64(atomic_load(&st->cache_bytes[OM_CACHE_COALESCED])));

    storage = json_pack("{s:o, s:o, s:i, s:i}", "used_bytes", om_json_u64(om_store_bytes(srv->store)),
                        "quota_bytes", om_json_u64(srv->cfg->storage_max_size), "high_water",
                        (int)srv->cfg->storage_high_water, "low_water",
                        (int)srv->cfg->storage_low_water);
    if (st->ia != NULL && om_index_admin_counts(st->ia, &ic) == OM_OK && storage != NULL) {
        om_json_set(storage, "repositories", om_json_u64(ic.repos));
        om_json_set(storage, "tags", om_json_u64(ic.tags));
        om_json_set(storage, "manifests", om_json_u64(ic.manifests));
        om_json_set(storage, "blobs", om_json_u64(ic.blobs));
    }

    om_admin_flight_totals(srv, &all_flights, &waiters, &written);
    memset(&fs, 0, sizeof(fs));
    if (srv->fetch != NULL)
        om_fetch_stats_get(srv->fetch, &fs);

    doc = json_object();
    om_json_set(doc, "version", json_string(OM_VERSION));
    om_json_set(doc, "now_ms", json_integer(now));
    om_json_set(doc, "started_ms", json_integer(srv->started_ms));
    om_json_set(doc, "uptime_s", json_integer((now - srv->started_ms) / 1000));
    om_json_set(doc, "requests", om_json_u64(atomic_load(&c->requests)));
    om_json_set(doc, "errors", om_json_u64(atomic_load(&c->errors)));
    om_json_set(doc, "connections", json_integer(atomic_load(&srv->connections)));
    om_json_set(doc, "cache", cache);
    om_json_set(doc, "cache_bytes", cache_bytes);
    om_json_set(doc, "hit_ratio", json_pack("{s:o, s:o}", "since_start", ratio(h + sta, h + sta + mi + co),
                                            "last_hour", ratio(hour_hits, hour_hits + hour_misses)));
    /* From our per-result byte counters, not srv->ctr.bytes_*: server/dispatch.c
     * counts every non-cache body there (admin and /v2/ JSON too) as
     * "from upstream". */
    om_json_set(doc, "bytes_served",
                json_pack("{s:o, s:o}", "cache",
                          om_json_u64(atomic_load(&st->cache_bytes[OM_CACHE_HIT]) +
                                      atomic_load(&st->cache_bytes[OM_CACHE_STALE])),
                          "upstream",
                          om_json_u64(atomic_load(&st->cache_bytes[OM_CACHE_MISS]) +
                                      atomic_load(&st->cache_bytes[OM_CACHE_COALESCED]))));
    om_json_set(doc, "storage", storage);
    om_json_set(doc, "inflight", om_json_u64(all_flights));
    om_json_set(doc, "downloads",
                json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "started", om_json_u64(fs.started),
                          "coalesced", om_json_u64(fs.coalesced), "completed",
                          om_json_u64(fs.completed), "failed", om_json_u64(fs.failed), "resumed",
                          om_json_u64(fs.resumed), "digest_mismatch",
                          om_json_u64(fs.digest_mismatch), "bytes_from_upstream",
                          om_json_u64(fs.bytes_from_upstream)));
    om_json_set(doc, "evictions",
                json_pack("{s:o, s:o}", "count", om_json_u64(atomic_load(&st->evictions)), "bytes",
                          om_json_u64(atomic_load(&st->evicted_bytes))));
    om_json_set(doc, "history", history);
    return om_admin_reply_json(req, MHD_HTTP_OK, doc);
}

/* ---- GET /api/v1/upstreams ------------------------------------------------------ */

static json_t *time_or_null(int64_t ms)
{
    return ms > 0 ? json_integer(ms) : json_null();
}

/* Each endpoint's health: [{url, healthy, requests, errors, failures,
 * last_ok_ms, last_error_ms, last_error, backoff_until_ms}]. */
static json_t *upstream_urls(struct om_server *srv, size_t i)
{
    struct om_upstream_url_stats st[OM_MAX_UPSTREAM_URLS];
    size_t n = om_admin_upstream_urls(srv, i, st, OM_MAX_UPSTREAM_URLS);
    json_t *arr = json_array();
    for (size_t k = 0; arr != NULL && k < n; k++) {
        json_t *o = json_object();
        om_json_set(o, "url", om_json_str(st[k].url));
        om_json_set(o, "healthy", st[k].asked ? json_boolean(st[k].healthy) : json_null());
        om_json_set(o, "requests", om_json_u64(st[k].requests));
        om_json_set(o, "errors", om_json_u64(st[k].errors));
        om_json_set(o, "failures", json_integer(st[k].failures));
        om_json_set(o, "last_ok_ms", time_or_null(st[k].last_ok_ms));
        om_json_set(o, "last_error_ms", time_or_null(st[k].last_error_ms));
        om_json_set(o, "last_error", st[k].last_error[0] ? om_json_str(st[k].last_error)
                                                         : json_null());
        om_json_set(o, "backoff_until_ms", st[k].backoff_until_ms > om_now_ms()
                                               ? json_integer(st[k].backoff_until_ms)
                                               : json_null());
        json_array_append_new(arr, o);
    }
    return arr;
}

/* Each account of the credential pool, never its secret: [{username,
 * requests, rate_limited, ratelimit_remaining, limited_until_ms,
 * last_used_ms}]. */
static json_t *upstream_accounts(struct om_server *srv, size_t i)
{
    struct om_upstream_account_stats st[OM_MAX_CREDENTIALS];
    size_t n = om_admin_upstream_accounts(srv, i, st, OM_MAX_CREDENTIALS);
    json_t *arr = json_array();
    for (size_t k = 0; arr != NULL && k < n; k++) {
        json_t *o = json_object();
        om_json_set(o, "username", om_json_str(st[k].username));
        om_json_set(o, "requests", om_json_u64(st[k].requests));
        om_json_set(o, "rate_limited", om_json_u64(st[k].rate_limited));
        om_json_set(o, "ratelimit_remaining", st[k].ratelimit_remaining >= 0
                                                  ? json_integer(st[k].ratelimit_remaining)
                                                  : json_null());
        om_json_set(o, "limited_until_ms", time_or_null(st[k].limited_until_ms));
        om_json_set(o, "last_used_ms", time_or_null(st[k].last_used_ms));
        json_array_append_new(arr, o);
    }
    return arr;
}

static enum MHD_Result handle_upstreams(struct om_req *req, const char *rest)
{
    struct om_server *srv = req->srv;
    const struct om_config *cfg = srv->cfg;
    json_t *arr = json_array();
    (void)rest;

    for (size_t i = 0; arr != NULL && i < cfg->n_upstreams; i++) {
        const struct om_upstream_cfg *uc = &cfg->upstreams[i];
        struct om_upstream_stats us;
        struct om_up_error errs[OM_STATS_UP_ERRORS];
        json_t *o = json_object(), *aliases = json_array(), *recent = json_array();
        json_t *pos = json_null();

        om_admin_upstream_stats(srv, i, &us);
        for (size_t a = 0; a < uc->n_aliases; a++)
            json_array_append_new(aliases, om_json_str(uc->aliases[a]));
        size_t ne = om_stats_upstream_errors(srv->stats, i, errs, OM_STATS_UP_ERRORS);
        for (size_t e = 0; e < ne; e++)
            json_array_append_new(recent, json_pack("{s:I, s:o}", "t_ms", (json_int_t)errs[e].t_ms,
                                                    "message", om_json_str(errs[e].message)));
        for (size_t s = 0; s < cfg->n_search_order; s++) {
            if (cfg->search_order[s] == i) {
                json_decref(pos);
                pos = json_integer((json_int_t)s + 1);
                break;
            }
        }
        om_json_set(o, "name", om_json_str(uc->name));
        om_json_set(o, "url", om_json_str(uc->url));
        om_json_set(o, "aliases", aliases);
        om_json_set(o, "docker_hub", json_boolean(uc->is_docker_hub));
        om_json_set(o, "search_position", pos);
        /* Never asked yet: health unknown (null), not "down". */
        om_json_set(o, "healthy", us.requests > 0 ? json_boolean(us.healthy) : json_null());
        om_json_set(o, "last_ok_ms", time_or_null(us.last_ok_ms));
        om_json_set(o, "last_error_ms", time_or_null(us.last_error_ms));
        om_json_set(o, "last_error", us.last_error[0] ? om_json_str(us.last_error) : json_null());
        om_json_set(o, "latency_ms", us.requests > 0 ? json_real((double)us.last_latency_us / 1000.0)
                                                     : json_null());
        om_json_set(o, "requests", om_json_u64(us.requests));
        om_json_set(o, "errors", om_json_u64(us.errors));
        om_json_set(o, "ratelimit_remaining", json_integer(us.ratelimit_remaining));
        om_json_set(o, "recent_errors", recent);
        om_json_set(o, "urls", upstream_urls(srv, i));
        om_json_set(o, "accounts", upstream_accounts(srv, i));
        json_array_append_new(arr, o);
    }
    return om_admin_reply_json(req, MHD_HTTP_OK, json_pack("{s:o}", "upstreams", arr));
}

/* ---- GET /api/v1/events: admin_events.c ---------------------------------------- */

static enum MHD_Result handle_events(struct om_req *req, const char *rest)
{
    (void)rest;
    return om_admin_events(req);
}

static json_t *str_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? om_json_str(s) : json_null();
}

/* ---- GET /api/v1/inflight ---------------------------------------------------------- */

static enum MHD_Result handle_inflight(struct om_req *req, const char *rest)
{
    struct om_admin_flight *fl = NULL;
    size_t n, all = 0, room;
    uint64_t waiters = 0, written = 0;
    json_t *arr;
    int64_t now = om_now_ms();
    (void)rest;

    /* Room for what is in flight now plus some that may start meanwhile. */
    om_admin_flight_totals(req->srv, &all, &waiters, &written);
    room = all + 16 < FLIGHTS_MAX ? all + 16 : FLIGHTS_MAX;
    fl = calloc(room, sizeof(*fl)); /* freed below */
    if (fl == NULL)
        return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNKNOWN", "out of memory");
    n = om_admin_flights(req->srv, fl, room, &all);
    arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        const struct om_admin_flight *f = &fl[i];
        bool known = f->total != OM_FETCH_SIZE_UNKNOWN;
        json_t *o = json_object();
        om_json_set(o, "repository", str_or_null(f->repository));
        om_json_set(o, "digest", om_json_str(f->digest.str));
        om_json_set(o, "bytes", om_json_u64(f->written));
        om_json_set(o, "total", known ? om_json_u64(f->total) : json_integer(-1));
        om_json_set(o, "progress", known && f->total > 0
                                       ? json_real((double)f->written / (double)f->total)
                                       : json_null());
        om_json_set(o, "rate_bps", json_real(f->rate_bps));
        om_json_set(o, "eta_s", known && f->rate_bps > 0 && f->total >= f->written
                                    ? json_real((double)(f->total - f->written) / f->rate_bps)
                                    : json_null());
        om_json_set(o, "waiters", json_integer(f->waiters));
        om_json_set(o, "started_ms", json_integer(f->started_ms));
        om_json_set(o, "age_ms", json_integer(now - f->started_ms));
        json_array_append_new(arr, o);
    }
    free(fl);
    return om_admin_reply_json(req, MHD_HTTP_OK,
                               json_pack("{s:o, s:o}", "downloads", arr, "total", om_json_u64(all)));
}

/* ---- GET /api/v1/client-config?for= --------------------------------------------------- */

static enum MHD_Result handle_client_config(struct om_req *req, const char *rest)
{
    char kind[32], host[300], url[320], msg[256];
    bool tls = false;
    json_t *doc = NULL;
    size_t off = 0;
    int err;
    (void)rest;

    err = om_admin_arg(req, "for", kind, sizeof(kind));
    if (err == OM_OK && kind[0] != '\0') {
        /* public_url as configured, else what this request reached. */
        if (req->srv->cfg->public_url != NULL && req->srv->cfg->public_url[0] != '\0') {
            snprintf(url, sizeof(url), "%s", req->srv->cfg->public_url);
        } else {
            om_admin_mirror_host(req, host, sizeof(host), &tls);
            snprintf(url, sizeof(url), "%s://%s", tls ? "https" : "http", host);
        }
        err = om_clientcfg_render(kind, url, req->srv->cfg, &doc);
        if (err == OM_OK)
            return om_admin_reply_json(req, MHD_HTTP_OK, doc);
        if (err != OM_ERR_INVALID)
            return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNKNOWN",
                                        om_strerror(err));
    }
    off = (size_t)snprintf(msg, sizeof(msg), "for: one of");
    for (size_t i = 0; om_clientcfg_kinds[i] != NULL && off < sizeof(msg); i++)
        off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s %s", i ? "," : "",
                                om_clientcfg_kinds[i]);
    return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED", msg);
}

/* ---- dispatch --------------------------------------------------------------------- */

static enum MHD_Result handle_repositories(struct om_req *req, const char *rest)
{
    if (req->srv->stats->ia == NULL)
        return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                    "the index cannot be read");
    return rest[0] == '\0' ? om_admin_repositories(req) : om_admin_repository_sub(req, rest);
}

static enum MHD_Result handle_images(struct om_req *req, const char *rest)
{
    if (req->srv->stats->ia == NULL)
        return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                    "the index cannot be read");
    return om_admin_image(req, rest);
}

static enum MHD_Result handle_metrics(struct om_req *req, const char *rest)
{
    (void)rest;
    return om_admin_metrics(req);
}

static enum MHD_Result handle_gc_post(struct om_req *req, const char *rest)
{
    (void)rest;
    return om_admin_gc(req);
}

static enum MHD_Result handle_gc_get(struct om_req *req, const char *rest)
{
    (void)rest;
    return om_admin_gc_status(req);
}

static enum MHD_Result handle_evict(struct om_req *req, const char *rest)
{
    (void)rest;
    return om_admin_evict(req);
}

static enum MHD_Result handle_prefetch_post(struct om_req *req, const char *rest)
{
    (void)rest;
    return om_admin_prefetch_post(req);
}

/* Client addresses and user names are personal data: whenever an admin
 * token is configured, this view asks for it (as a write does), whatever
 * protect_reads says; without one it is as public as the other reads. */
static enum MHD_Result handle_clients(struct om_req *req, const char *rest)
{
    enum MHD_Result ret = MHD_NO;
    (void)rest;
    if (req->srv->cfg->admin_token != NULL && check_access(req, true, &ret) != OM_OK)
        return ret;
    return om_admin_clients(req);
}

static enum MHD_Result handle_prefetch_get(struct om_req *req, const char *rest)
{
    (void)rest;
    return om_admin_prefetch_get(req);
}

static enum MHD_Result handle_cluster(struct om_req *req, const char *rest)
{
    (void)rest;
    return om_admin_cluster(req);
}

typedef enum MHD_Result (*handler_fn)(struct om_req *req, const char *rest);

struct route {
    const char *path;       /* after /api/v1/ ("" = /metrics) */
    bool prefix;            /* path + "/" + rest */
    const char *method;     /* "GET" (HEAD too) or "POST" */
    handler_fn fn;
};

static const struct route ROUTES[] = {
    {"stats", false, "GET", handle_stats},
    {"repositories", false, "GET", handle_repositories},
    {"repositories", true, "GET", handle_repositories},
    {"images", true, "GET", handle_images},
    {"inflight", false, "GET", handle_inflight},
    {"upstreams", false, "GET", handle_upstreams},
    {"events", false, "GET", handle_events},
    {"route", false, "GET", om_admin_route},
    {"prefetch", false, "GET", handle_prefetch_get},
    {"prefetch", false, "POST", handle_prefetch_post},
    {"prefetch", true, "GET", om_admin_prefetch_job},
    {"prefetch", true, "POST", om_admin_prefetch_cancel},
    {"gc", false, "GET", handle_gc_get},
    {"gc", false, "POST", handle_gc_post},
    {"evict", false, "POST", handle_evict},
    {"client-config", false, "GET", handle_client_config},
    {"clients", false, "GET", handle_clients},
    {"cluster", false, "GET", handle_cluster},
};

enum MHD_Result om_admin_handle(struct om_req *req)
{
    const char *url = req->url, *method = req->method != NULL ? req->method : "";
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool path_known = false;
    enum MHD_Result ret = MHD_NO;

    /* Pull counts and times are batched in memory: show them current. */
    om_pullstats_flush(req->srv->pulls);

    req->head = strcmp(method, "HEAD") == 0;
    if (strcmp(url, "/metrics") == 0) {
        if (!get)
            return om_admin_reply_error_hdr(req, MHD_HTTP_METHOD_NOT_ALLOWED, "UNSUPPORTED",
                                            "method not allowed", "Allow", "GET, HEAD");
        if (check_access(req, false, &ret) != OM_OK)
            return ret;
        return handle_metrics(req, "");
    }
    if (strncmp(url, "/api/v1/", 8) != 0)
        return om_admin_reply_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such endpoint");
    const char *path = url + 8;
    for (size_t i = 0; i < OM_ARRAY_LEN(ROUTES); i++) {
        const struct route *r = &ROUTES[i];
        size_t n = strlen(r->path);
        const char *rest;
        if (strncmp(path, r->path, n) != 0)
            continue;
        if (!r->prefix && path[n] == '\0')
            rest = "";
        else if (r->prefix && path[n] == '/' && path[n + 1] != '\0')
            rest = path + n + 1;
        else
            continue;
        path_known = true;
        bool post = strcmp(r->method, "POST") == 0;
        if (post ? strcmp(method, "POST") != 0 : !get)
            continue;
        if (check_access(req, post, &ret) != OM_OK)
            return ret;
        return r->fn(req, rest);
    }
    if (path_known)
        return om_admin_reply_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "UNSUPPORTED",
                                    "method not allowed on this endpoint");
    return om_admin_reply_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such endpoint");
}
