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

/* ---- v2_lists.c ---- */
enum MHD_Result om_v2_tags(struct om_req *req);
enum MHD_Result om_v2_catalog(struct om_req *req);
enum MHD_Result om_v2_referrers(struct om_req *req);

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
