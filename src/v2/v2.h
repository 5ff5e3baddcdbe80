/* v2.h — the OCI pull API's endpoints (/v2/<name>/manifests|blobs|tags,
 * /v2/_catalog, referrers).  The dispatcher (server/dispatch.c) has parsed
 * and routed the path into req->p/req->route and calls one of these on the
 * HTTP thread; each answers from the cache at once or suspends the
 * connection and hands the work to a job (http/req.h). */
#ifndef OM_V2_H
#define OM_V2_H

#include "http/req.h"

/* ---- v2_manifest.c ---- */
/* Handle a manifest request: answer from cache or start/join a flight.
 * Returns MHD_YES after either queueing or suspending. */
enum MHD_Result om_v2_manifest(struct om_req *req);
void om_flights_resume_all(struct om_server *srv);

/* ---- v2_blob.c ---- */
enum MHD_Result om_v2_blob(struct om_req *req);
/* GET/HEAD /internal/v1/blobs/<digest> (v2_peer.c): a peer replica's
 * read of this replica's download in progress, or of the store; needs the
 * cluster's peer token; 404 without a cluster. */
enum MHD_Result om_v2_peer(struct om_req *req);

/* ---- v2_tags.c ---- */
/* tags/list: from the memory cache at once, or join/start the list's
 * flight.  Returns MHD_YES after either queueing or suspending. */
enum MHD_Result om_v2_tags(struct om_req *req);
/* The tag-list cache and flight table (srv->tags), sized from cfg's
 * limits.max_tags.  *out owned by the caller (om_v2_tags_free). */
int om_v2_tags_new(struct om_tags **out, const struct om_config *cfg);
/* After the job pool stopped (no flight is left then).  NULL is a no-op. */
void om_v2_tags_free(struct om_tags *t);

/* ---- v2_lists.c ---- */
enum MHD_Result om_v2_catalog(struct om_req *req);
enum MHD_Result om_v2_referrers(struct om_req *req);
/* Shared by the list endpoints.  The most a page holds (n is clamped). */
#define OM_V2_PAGE_MAX 10000
struct json_t;
/* The n and last query parameters (last decoded into last[lastsz]); *n =
 * -1 when absent.  false when either is malformed or last does not fit. */
bool om_v2_paging_args(struct om_req *req, long *n, char *last, size_t lastsz);
/* Add `Link: </v2/<name>/<what>?n=N&last=L[&ns=NS]>; rel="next"` to r
 * (the catalog's own path for _catalog). */
void om_v2_next_link(struct om_req *req, struct MHD_Response *r, const char *what, long n,
                     const char *last);
/* req->resp/status/bytes = doc serialised (a body, or only its length for
 * HEAD); doc stays the caller's.  A NULL doc or no memory: 503. */
void om_v2_respond_json(struct om_req *req, struct json_t *doc, const char *ctype);

/* ---- v2_member.c: repository isolation of cached content ---- */
/* Does canonical hold d: the memory of memberships, else the index (a yes
 * is remembered).  False also when it could not be asked. */
bool om_v2_member_known(struct om_server *srv, const char *canonical, const om_digest *d);
/* The hit paths (HTTP thread): may cached d be served to req?  True when
 * req's repository — a fixed route's, or the search decision the memory
 * holds (set into req->canonical/upstream) — is known to hold d.  False:
 * go to the job, which asks the index and then the upstream. */
bool om_v2_member_hit(struct om_req *req, const om_digest *d);
/* canonical holds d and children (just recorded in the index): into the
 * memory.  Strings and arrays are borrowed. */
void om_v2_member_note(struct om_server *srv, const char *canonical, const om_digest *d,
                       const om_digest *children, size_t n_children);
/* The upstream confirmed the stored blob d (size bytes) for canonical:
 * recorded in the index and the memory. */
void om_v2_member_blob_confirmed(struct om_server *srv, const char *canonical,
                                 const om_digest *d, uint64_t size);
/* One HEAD of the stored manifest d under candidate ci's remote name (its
 * credentials).  Returns the status (0 when *err != OM_OK; -1 for a 200
 * that names another digest); a 200 records d with its children as the
 * candidate's.  *resp is the caller's to om_up_resp_clear. */
long om_v2_member_confirm_manifest(struct om_req *req, size_t ci, const om_digest *d,
                                   struct om_up_resp *resp, int *err);

/* ---- v2_resolve.c: find which upstream serves a name (may block) ---- */
/* For job threads: the candidates of req->route to try, in order, honouring
 * a cached search decision and negative entries.  Writes indexes into
 * req->route.c[] to `order`, returns the count. */
size_t om_v2_candidates(struct om_req *req, size_t order[OM_MAX_UPSTREAMS], bool *decided);
/* A remembered search decision for a requested name (memory, then index). */
bool om_v2_route_lookup(struct om_server *srv, const char *name, char *up, size_t upsz,
                        char *canonical, size_t cansz);
/* What an upstream's answer for an object (manifest, blob) says about the
 * repository itself (see v2_resolve.c). */
typedef enum {
    OM_REPO_PRESENT,      /* 2xx, or the tag list answered */
    OM_REPO_ABSENT,       /* NAME_UNKNOWN, 401/403 after auth, a 404 of the tag list */
    OM_REPO_UNSURE,       /* MANIFEST_UNKNOWN, BLOB_UNKNOWN, a bodiless 404: ask */
    OM_REPO_UNAVAILABLE,  /* unreachable, 5xx, 429: nothing learnt */
} om_repo_evidence;
/* Pure: classify (status, error body). */
om_repo_evidence om_v2_repo_evidence(long status, const char *body, size_t len);
/* Ask candidate ci's upstream for the repository's tag list (GET
 * tags/list?n=1; only the status is read): PRESENT, ABSENT or UNAVAILABLE. */
om_repo_evidence om_v2_repo_probe(struct om_req *req, size_t ci);
/* om_v2_repo_evidence, and om_v2_repo_probe when that is UNSURE: what a
 * miss of an object on candidate ci means for the repository. */
om_repo_evidence om_v2_repo_miss(struct om_req *req, size_t ci, long status, const char *body,
                                 size_t len);
/* The job lane for req (core/jobs.h): its upstream's when the route is
 * fixed or the search decision known (req->upstream), else the lane of
 * names being searched. */
unsigned om_v2_lane(const struct om_req *req);
/* Record the outcome of probing candidate i: found or not. */
void om_v2_note_probe(struct om_req *req, size_t i, bool found, bool decided);

#endif
