/* v2_manifest.c — HEAD/GET /v2/<name>/manifests/<tag|digest>.
 *
 * From the cache, in the HTTP thread, when possible:
 *   by digest: stored and known to be the name's repository's (v2_member.c)
 *   → serve (digests are immutable, never re-asked); stored but not known
 *   to be its: the job asks the upstream with one HEAD;
 *   by tag: known and checked less than tag_ttl ago → serve.
 * Otherwise the request joins the "flight" for (name, ns, reference) — the
 * manifest single-flight — or starts one: a job that searches the route if
 * needed, revalidates a stale tag with HEAD (not counted against Docker
 * Hub's pull limit), fetches what changed, verifies and stores it byte for
 * byte, and then builds every waiting request's response.  When the
 * upstream is down, 5xx or 429 and the tag is cached, the cached manifest is
 * served with a Warning header (stale-if-error).
 *
 * Stored manifests are never re-serialised: the digest a client gets is the
 * sha256 of the exact bytes the upstream sent.
 */
#include "v2/v2_manifest_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cluster.h"
#include "cache/mcache.h"
#include "cache/pullstats.h"
#include "core/log.h"
#include "core/manifest.h"
#include "http/req_limits.h"

#define STALE_WARNING "110 - \"Response is Stale\""

struct om_flight {
    struct om_flight *next;
    char key[OM_NAME_MAX + OM_TAG_MAX + 300];
    struct om_req *waiters;        /* leader included; linked by flight_next */
};

/* ---- building responses -------------------------------------------- */

static void add_manifest_headers(struct MHD_Response *r, const om_digest *d, bool stale)
{
    char etag[OM_DIGEST_MAX + 3];
    MHD_add_response_header(r, "Docker-Content-Digest", d->str);
    snprintf(etag, sizeof(etag), "\"%s\"", d->str);
    MHD_add_response_header(r, "Etag", etag);
    if (stale)
        MHD_add_response_header(r, "Warning", STALE_WARNING);
}


struct accept_scan {
    const char *want;
    bool seen;      /* the client sent an Accept header */
    bool match;     /* it names `want`, or a wildcard */
};

static enum MHD_Result scan_accept(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct accept_scan *a = cls;
    if (strcasecmp(key, "Accept") != 0 || value == NULL)
        return MHD_YES;
    a->seen = true;
    size_t wl = strlen(a->want);
    for (const char *p = value; *p != '\0';) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e != '\0' && *e != ',' && *e != ';' && *e != ' ')
            e++;
        size_t n = (size_t)(e - p);
        if ((n == wl && strncasecmp(p, a->want, n) == 0) || (n == 3 && strncmp(p, "*/*", 3) == 0))
            a->match = true;
        while (*e != '\0' && *e != ',')
            e++;
        p = e;
    }
    return MHD_YES;
}

typedef enum { NEG_SERVE, NEG_UNACCEPTABLE, NEG_CHILD } neg_result;

/* The linux/amd64 entry of a stored Docker manifest list. */
static bool default_platform_child(struct om_server *srv, const om_digest *list, om_digest *out)
{
    char *buf = NULL;
    size_t len = 0;
    bool found = false;
    if (om_store_read(srv->store, list, srv->cfg->limits.max_manifest_bytes, &buf, &len) != OM_OK)
        return false;
    struct om_manifest m;
    if (om_manifest_parse(&m, buf, len, OM_MT_DOCKER_LIST) == OM_OK) {
        const struct om_descriptor *d = om_manifest_platform(&m, "linux/amd64");
        if (d != NULL) {
            *out = d->digest;
            found = true;
        }
    }
    om_manifest_free(&m);
    free(buf);
    return found;
}

/* Accept negotiation as distribution does it, minus the schema 1
 * conversions: an OCI manifest or index the client does not accept is
 * MANIFEST_UNKNOWN; a Docker manifest list asked for by tag by a client that
 * does not accept lists gets its linux/amd64 manifest.  No Accept header at
 * all: serve what we have (curl, scripts). */
static neg_result negotiate(struct om_req *req, const char *media_type, const om_digest *d,
                            om_digest *child)
{
    struct accept_scan a = {.want = media_type};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, scan_accept, &a);
    if (!a.seen || a.match)
        return NEG_SERVE;
    if (strcmp(media_type, OM_MT_DOCKER_LIST) == 0 && !req->p.ref.is_digest &&
        default_platform_child(req->srv, d, child))
        return NEG_CHILD;
    if (strcmp(media_type, OM_MT_OCI_MANIFEST) == 0 || strcmp(media_type, OM_MT_OCI_INDEX) == 0)
        return NEG_UNACCEPTABLE;
    return NEG_SERVE;
}

typedef enum { RESP_OK, RESP_REFUSED, RESP_GONE, RESP_NEED_CHILD, RESP_NEED_JOB } resp_result;

/* Serve verified manifest bytes that could not be stored (disk full): the
 * client still gets the right bytes; the next request asks the upstream
 * again.  No Accept negotiation: there is nothing cached to pick from. */
static void respond_uncached(struct om_req *req, const om_digest *d, const char *media_type,
                             const char *body, size_t len)
{
    struct MHD_Response *r = req->head ? om_http_head(media_type, len)
                                       : om_http_body(media_type, body, len);
    if (r == NULL) {
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        return;
    }
    add_manifest_headers(r, d, false);
    MHD_add_response_header(r, "Warning", "199 - \"not cached: mirror storage unavailable\"");
    if (req->resp != NULL)
        MHD_destroy_response(req->resp);
    req->resp = r;
    req->status = MHD_HTTP_OK;
    req->bytes = len;
}

/* Fill req->resp with the stored manifest d (or what Accept negotiation
 * picks instead).  RESP_REFUSED sets the error response to send; RESP_GONE
 * (no longer in the store) sets one too but is worth asking the upstream
 * again; RESP_NEED_CHILD means
 * the platform manifest to serve is not cached: *child names it.
 * On an HTTP thread (http_thread), a body that is neither in memory nor in
 * a local file (a store whose reads are network round trips: s3) is not
 * read here — RESP_NEED_JOB, and a job thread reads it: an HTTP thread
 * serves every connection it holds and must never wait on the bucket. */
static resp_result respond_manifest(struct om_req *req, const om_digest *d, const char *media_type,
                                    uint64_t size, bool stale, om_digest *child, bool http_thread)
{
    struct om_server *srv = req->srv;
    struct MHD_Response *r = NULL;
    struct om_manifest_rec cr;
    switch (negotiate(req, media_type, d, child)) {
    case NEG_UNACCEPTABLE:
        om_req_error(req, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN",
                     "manifest found, but the Accept header does not allow its media type");
        return RESP_REFUSED;
    case NEG_CHILD:
        if (om_index_manifest_get(srv->index, child, &cr) != OM_OK ||
            !om_store_has(srv->store, child, NULL))
            return RESP_NEED_CHILD;
        d = child;
        media_type = cr.media_type;
        size = cr.size;
        break;
    case NEG_SERVE:
        break;
    }
    char *buf = NULL;
    size_t len = 0;
    char cached_mt[OM_MEDIA_TYPE_MAX + 1];
    bool in_memory = om_mcache_manifest_get(srv->mcache, d, &buf, &len, cached_mt,
                                            sizeof(cached_mt));
    if (req->head) {
        free(buf);
        if (in_memory)
            size = len;
        else if (!om_store_has(srv->store, d, &size))
            goto gone;
        r = om_http_head(media_type, size);
    } else {
        if (!in_memory && http_thread && !(om_store_caps(srv->store) & OM_STORE_CAN_SENDFILE))
            return RESP_NEED_JOB;
        if (!in_memory) {
            if (om_store_read(srv->store, d, srv->cfg->limits.max_manifest_bytes, &buf, &len) !=
                OM_OK)
                goto gone;
            om_mcache_manifest_put(srv->mcache, d, buf, len, media_type);
        }
        r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
        if (r == NULL) {
            free(buf);
            goto gone;
        }
        MHD_add_response_header(r, "Content-Type", media_type);
        om_http_common_headers(r);
        size = len;
    }
    if (r == NULL)
        goto gone;
    add_manifest_headers(r, d, stale);
    if (req->resp != NULL)
        MHD_destroy_response(req->resp);
    req->resp = r;
    req->status = MHD_HTTP_OK;
    req->bytes = size;
    return RESP_OK;
gone:
    om_req_error(req, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown");
    return RESP_GONE;
}

static void note_pull(struct om_req *req, const om_digest *d)
{
    if (req->canonical[0] == '\0' || req->head)
        return;
    om_pullstats_note(req->srv->pulls, req->canonical,
                      req->p.ref.is_digest ? NULL : req->p.ref.tag, d, om_now_ms());
}

/* ---- the cache-only path (HTTP thread) ------------------------------ */

static bool serve_from_cache(struct om_req *req)
{
    struct om_server *srv = req->srv;
    if (req->p.ref.is_digest) {
        struct om_manifest_rec mr;
        char *buf = NULL;
        size_t len = 0;
        if (om_mcache_manifest_get(srv->mcache, &req->p.ref.digest, &buf, &len, mr.media_type,
                                   sizeof(mr.media_type))) {
            mr.size = len;
            free(buf);
        } else if (om_index_manifest_get(srv->index, &req->p.ref.digest, &mr) != OM_OK) {
            return false;
        }
        if (req->canonical[0] == '\0' && req->route.kind == OM_ROUTE_SEARCH) {
            char up[64];
            if (om_v2_route_lookup(srv, req->p.name, up, sizeof(up), req->canonical,
                                   sizeof(req->canonical)))
                snprintf(req->upstream, sizeof(req->upstream), "%s", up);
        }
        if (!om_v2_member_hit(req, &req->p.ref.digest))
            return false; /* not known to be this repository's: the job asks */
        om_digest child;
        resp_result rr = respond_manifest(req, &req->p.ref.digest, mr.media_type, mr.size, false,
                                          &child, true);
        if (rr == RESP_NEED_CHILD || rr == RESP_GONE || rr == RESP_NEED_JOB)
            return false;
        if (rr == RESP_REFUSED)
            return true;
        req->cache = OM_CACHE_HIT;
        note_pull(req, &req->p.ref.digest);
        return true;
    }
    if (req->canonical[0] == '\0') {
        char up[64];
        if (!om_v2_route_lookup(srv, req->p.name, up, sizeof(up), req->canonical,
                                sizeof(req->canonical)))
            return false;
        snprintf(req->upstream, sizeof(req->upstream), "%s", up);
    }
    struct om_tag_rec tr;
    if (!om_mcache_tag_get(srv->mcache, req->canonical, req->p.ref.tag, &tr)) {
        if (om_index_tag_get(srv->index, req->canonical, req->p.ref.tag, &tr) != OM_OK)
            return false;
        om_mcache_tag_put(srv->mcache, req->canonical, req->p.ref.tag, &tr);
    }
    /* Due for revalidation: a job asks the upstream — unless every job of
     * that upstream's lane is busy (a slow or hung upstream), when the
     * cached tag is served stale now instead of queueing behind them
     * (stale-while-revalidate; the next request revalidates). */
    bool expired = om_now_ms() - tr.checked_at >= (int64_t)srv->cfg->tag_ttl_ms;
    unsigned lane = om_v2_lane(req);
    if (expired && !om_jobs_lane_busy(srv->jobs, lane))
        return false;
    om_digest child;
    resp_result rr = respond_manifest(req, &tr.digest, tr.media_type, tr.size, expired, &child,
                                      true);
    if (rr == RESP_NEED_CHILD || rr == RESP_GONE || rr == RESP_NEED_JOB)
        return false;
    if (rr == RESP_REFUSED)
        return true;
    req->cache = expired ? OM_CACHE_STALE : OM_CACHE_HIT;
    if (expired) {
        struct om_jobs_lane_stats ls;
        char busy[48];
        om_jobs_lane_stats(srv->jobs, lane, &ls);
        snprintf(busy, sizeof(busy), "%u running, %zu waiting", ls.running, ls.waiting);
        om_log_kv(OM_LOG_WARN, "upstream saturated, serving stale tag", "repo", req->canonical,
                  "tag", req->p.ref.tag, "upstream", req->upstream, "jobs", busy, NULL);
    }
    note_pull(req, &tr.digest);
    return true;
}

/* ---- flights -------------------------------------------------------- */

static void flight_key(const struct om_req *req, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s\n%s\n%s", req->p.name, req->ns, om_reference_str(&req->p.ref));
}

static void finish_flight(struct om_server *srv, struct om_flight *fl, const struct mresult *res,
                          struct om_req *leader)
{
    pthread_mutex_lock(&srv->flights_mu);
    struct om_flight **pp = &srv->flights;
    while (*pp != NULL && *pp != fl)
        pp = &(*pp)->next;
    if (*pp == fl)
        *pp = fl->next;
    struct om_req *w = fl->waiters;
    fl->waiters = NULL;
    pthread_mutex_unlock(&srv->flights_mu);

    while (w != NULL) {
        struct om_req *next = w->flight_next;
        w->flight_next = NULL;
        if (w != leader) {
            snprintf(w->canonical, sizeof(w->canonical), "%s", leader->canonical);
            snprintf(w->upstream, sizeof(w->upstream), "%s", leader->upstream);
        }
        if (res->status == MHD_HTTP_OK && res->body != NULL) {
            respond_uncached(w, &res->digest, res->media_type, res->body, res->body_len);
            w->cache = (w == leader) ? res->cache : OM_CACHE_COALESCED;
        } else if (res->status == MHD_HTTP_OK) {
            bool stale = res->cache == OM_CACHE_STALE;
            om_digest child;
            resp_result rr = respond_manifest(w, &res->digest, res->media_type, res->size, stale,
                                              &child, false);
            if (rr == RESP_NEED_CHILD) {
                /* A client that takes no lists asked for one by tag: fetch
                 * the default platform's manifest now; later waiters find
                 * it cached. */
                struct mresult cres = {0};
                if (om_v2m_fetch(leader, res->candidate, child.str, &child, false, &cres) == GOT_OK)
                    rr = respond_manifest(w, &res->digest, res->media_type, res->size, stale,
                                          &child, false);
                free(cres.body);
                if (rr == RESP_NEED_CHILD)
                    om_req_error(w, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN",
                                 "no linux/amd64 manifest in this list");
            }
            if (rr == RESP_OK) {
                w->cache = (w == leader) ? res->cache : OM_CACHE_COALESCED;
                note_pull(w, &res->digest);
            }
        } else {
            om_req_error(w, res->status, res->code, res->message);
        }
        om_req_job_done(w);
        w = next;
    }
    free(fl);
}

static void manifest_job(void *arg)
{
    struct om_flight *fl = arg;
    struct om_req *leader = fl->waiters; /* the leader is the list's tail; find it */
    while (leader->flight_next != NULL)
        leader = leader->flight_next;
    struct mresult res = {0};
    struct om_server *srv = leader->srv;
    /* In a cluster, one resolution of a tag for all replicas: the holder
     * of the tag's lease asks the upstream; the others wait for it and
     * then find its fresh record in the shared index (om_v2m_resolve). */
    struct om_cluster_lease ml;
    bool held = srv->cluster != NULL && !leader->p.ref.is_digest &&
                leader->route.kind == OM_ROUTE_FIXED &&
                om_cluster_tag_lease(srv->cluster, leader->route.c[0].canonical,
                                     leader->p.ref.tag, &ml);
    om_v2m_resolve(leader, &res);
    if (held)
        om_cluster_tag_release(srv->cluster, leader->route.c[0].canonical, leader->p.ref.tag,
                               &ml);
    finish_flight(leader->srv, fl, &res, leader);
    free(res.body);
}

enum MHD_Result om_v2_manifest(struct om_req *req)
{
    struct om_server *srv = req->srv;
    if (serve_from_cache(req)) {
        enum MHD_Result r = MHD_queue_response(req->conn, req->status, req->resp);
        MHD_destroy_response(req->resp);
        req->resp = NULL;
        return r;
    }
    if (req->resp != NULL) { /* a half-served cache hit left an error: retry upstream */
        MHD_destroy_response(req->resp);
        req->resp = NULL;
        req->status = 0;
        req->err_code = NULL;
    }
    /* Not in the cache (or a tag to revalidate): upstream work, charged to
     * the client's upstream_fetches_per_minute before any contact. */
    if (!om_req_limit_upstream(req))
        return om_req_send(req);
    char key[sizeof(((struct om_flight *)0)->key)];
    flight_key(req, key, sizeof(key));

    pthread_mutex_lock(&srv->flights_mu);
    struct om_flight *fl = srv->flights;
    while (fl != NULL && strcmp(fl->key, key) != 0)
        fl = fl->next;
    req->phase = 1;
    MHD_suspend_connection(req->conn);
    if (fl != NULL) {
        /* Join: insert at the head; the leader stays at the tail. */
        req->flight_next = fl->waiters;
        fl->waiters = req;
        pthread_mutex_unlock(&srv->flights_mu);
        return MHD_YES;
    }
    fl = calloc(1, sizeof(*fl));
    if (fl == NULL) {
        pthread_mutex_unlock(&srv->flights_mu);
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        om_req_job_done(req);
        return MHD_YES;
    }
    snprintf(fl->key, sizeof(fl->key), "%s", key);
    fl->waiters = req;
    fl->next = srv->flights;
    srv->flights = fl;
    pthread_mutex_unlock(&srv->flights_mu);

    if (om_jobs_submit_lane(srv->jobs, om_v2_lane(req), manifest_job, fl) != OM_OK) {
        struct mresult res = {0};
        om_v2m_set_error(&res, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", NULL);
        snprintf(res.message, sizeof(res.message), "too many requests waiting for %s",
                 req->upstream[0] ? req->upstream : "the upstreams");
        finish_flight(srv, fl, &res, req);
    }
    return MHD_YES;
}

void om_flights_resume_all(struct om_server *srv)
{
    /* Jobs are drained before this runs, so no flight should remain; if one
     * does, its requests are resumed with an error rather than left hanging
     * (a suspended connection blocks MHD_stop_daemon). */
    for (;;) {
        pthread_mutex_lock(&srv->flights_mu);
        struct om_flight *fl = srv->flights;
        pthread_mutex_unlock(&srv->flights_mu);
        if (fl == NULL)
            return;
        struct om_req *leader = fl->waiters;
        while (leader->flight_next != NULL)
            leader = leader->flight_next;
        struct mresult res = {0};
        om_v2m_set_error(&res, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "shutting down");
        finish_flight(srv, fl, &res, leader);
    }
}
