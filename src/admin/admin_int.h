/* admin_int.h — what the files of the admin module share (api_admin.c,
 * admin_json.c, admin_repos.c, admin_events.c, admin_actions.c,
 * admin_metrics.c).  Not for other modules:
 * they use admin.h.
 *
 * Every handler answers synchronously on the HTTP thread that called
 * om_admin_handle (admin reads are short: an index query on the admin's own
 * connection, small store reads) and returns what MHD_queue_response
 * returned.  Handlers build a json_t and give it to om_admin_reply_json,
 * which owns it from then on.
 */
#ifndef OM_ADMIN_INT_H
#define OM_ADMIN_INT_H

#include <jansson.h>

#include "admin/admin.h"
#include "admin/admin_stats.h"

#define OM_ADMIN_PER_PAGE_DEFAULT 50
#define OM_ADMIN_PER_PAGE_MAX 500
#define OM_ADMIN_ARG_MAX 512         /* decoded query parameter, bytes */
#define OM_ADMIN_CONFIG_READ_MAX (4u * 1024 * 1024)  /* image config blobs */

/* ---- admin_json.c: replies, arguments, JSON helpers ---- */

/* Answer with doc (consumed, also on failure) as compact JSON. */
enum MHD_Result om_admin_reply_json(struct om_req *req, unsigned status, json_t *doc);
/* Answer with an OCI error JSON. */
enum MHD_Result om_admin_reply_error(struct om_req *req, unsigned status, const char *code,
                                     const char *message);
/* The same with one extra response header (WWW-Authenticate, Allow). */
enum MHD_Result om_admin_reply_error_hdr(struct om_req *req, unsigned status, const char *code,
                                         const char *message, const char *hdr,
                                         const char *value);
/* For answers built on a job thread (the connection is suspended): set
 * req->resp/status instead of queueing; the handler queues it on resume. */
void om_admin_set_json(struct om_req *req, unsigned status, json_t *doc);
void om_admin_set_error(struct om_req *req, unsigned status, const char *code,
                        const char *message);
/* Answer with buf (malloc'd, consumed) as the body. */
enum MHD_Result om_admin_reply_owned(struct om_req *req, unsigned status,
                                     const char *content_type, char *buf, size_t len);

/* A query parameter, percent-decoded into out.  OM_ERR_NOTFOUND when
 * absent, OM_ERR_TOOBIG / OM_ERR_INVALID when it does not decode. */
int om_admin_arg(struct om_req *req, const char *key, char *out, size_t outsz);
/* page (1-based) and per_page from the query, checked; OM_ERR_INVALID when
 * malformed or out of range. */
int om_admin_paging(struct om_req *req, uint64_t *page, size_t *per_page);
/* A non-negative integer parameter in [min, max]; def when absent. */
int om_admin_arg_uint(struct om_req *req, const char *key, uint64_t min, uint64_t max,
                      uint64_t def, uint64_t *out);

/* JSON values that never fail on odd input: a string that is not valid
 * UTF-8 has its bad bytes replaced by '?'; NULL gives JSON null. */
json_t *om_json_str(const char *s);
json_t *om_json_u64(uint64_t v);
/* policy.* for a canonical name (the route explainer):
 * {allowed, verdict: "allowed" | "denied" | "not_allowed", rule, message}. */
json_t *om_admin_policy_json(const struct om_policy *p, const char *canonical);
/* Set key to value in obj (value consumed); ignores a NULL value. */
void om_json_set(json_t *obj, const char *key, json_t *value);

/* How clients reach this mirror: "host[:port]" from public_url, else from
 * the request's Host header (checked: host characters only); *tls says
 * whether clients talk https.  out gets "localhost" if nothing usable. */
void om_admin_mirror_host(struct om_req *req, char *out, size_t outsz, bool *tls);

/* ---- admin_repos.c: the index- and store-backed views ---- */
enum MHD_Result om_admin_repositories(struct om_req *req);
/* rest: what follows "/api/v1/repositories/" (raw). */
enum MHD_Result om_admin_repository_sub(struct om_req *req, const char *rest);
/* rest: what follows "/api/v1/images/" (raw). */
enum MHD_Result om_admin_image(struct om_req *req, const char *rest);

/* ---- admin_actions.c: what changes state (gc, evict, prefetch) ---- */
enum MHD_Result om_admin_gc(struct om_req *req);          /* POST /api/v1/gc */
enum MHD_Result om_admin_gc_status(struct om_req *req);   /* GET /api/v1/gc */
enum MHD_Result om_admin_evict(struct om_req *req);       /* POST /api/v1/evict */
enum MHD_Result om_admin_prefetch_post(struct om_req *req);
enum MHD_Result om_admin_prefetch_get(struct om_req *req);
/* rest: "<id>" (GET) or "<id>/cancel" (POST), after "/api/v1/prefetch/". */
enum MHD_Result om_admin_prefetch_job(struct om_req *req, const char *rest);
enum MHD_Result om_admin_prefetch_cancel(struct om_req *req, const char *rest);

/* ---- admin_events.c ---- */
enum MHD_Result om_admin_events(struct om_req *req);     /* GET /api/v1/events */

/* ---- admin_route.c ---- */
enum MHD_Result om_admin_route(struct om_req *req, const char *rest); /* GET /api/v1/route */

/* ---- admin_clients.c ---- */
enum MHD_Result om_admin_clients(struct om_req *req);    /* GET /api/v1/clients */
/* ---- admin_cluster.c ---- */
enum MHD_Result om_admin_cluster(struct om_req *req);    /* GET /api/v1/cluster */

/* ---- admin_metrics.c ---- */
enum MHD_Result om_admin_metrics(struct om_req *req);

/* ---- api_admin.c: shared views of live state ---- */
struct om_admin_flight {
    om_digest digest;
    char repository[OM_NAME_MAX + 1];
    uint64_t written, total;         /* total OM_FETCH_SIZE_UNKNOWN if unknown */
    unsigned waiters;
    double rate_bps;
    int64_t started_ms;              /* first seen by the admin view */
};
/* The downloads in flight (at most max), with rates.  Returns the count;
 * *all gets the real number (may exceed max). */
size_t om_admin_flights(struct om_server *srv, struct om_admin_flight *out, size_t max,
                        size_t *all);
/* Count the downloads in flight, their waiting clients and bytes so far
 * (no rate sampling, no allocation). */
void om_admin_flight_totals(struct om_server *srv, size_t *n, uint64_t *waiters, uint64_t *written);
/* Each upstream's stats, observed into the error history. */
void om_admin_upstream_stats(struct om_server *srv, size_t i, struct om_upstream_stats *out);
/* Upstream i's endpoints and pool accounts (upstream.h); 0 when none. */
size_t om_admin_upstream_urls(struct om_server *srv, size_t i, struct om_upstream_url_stats *out,
                              size_t max);
size_t om_admin_upstream_accounts(struct om_server *srv, size_t i,
                                  struct om_upstream_account_stats *out, size_t max);

#endif
