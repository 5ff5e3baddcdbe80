/* admin.h — the operator's side of the server: the admin JSON API
 * (/api/v1/..., docs/admin-api.md), Prometheus /metrics, and the request
 * statistics behind them (counters by endpoint/status, the per-minute
 * history for the hit-ratio chart).  Implemented in api_admin.c (+ its
 * helpers); the HTTP front calls these hooks. */
#ifndef OM_ADMIN_H
#define OM_ADMIN_H

#include "http/req.h"

/* Called once at server start / stop (after/before the daemon runs). */
int om_admin_init(struct om_server *srv);
void om_admin_free(struct om_server *srv);
/* Answer a request whose path starts with /api/ or is /metrics.  Any
 * method; a POST body (≤ 64 KiB) is in req->body/req->body_len. */
enum MHD_Result om_admin_handle(struct om_req *req);
/* Every finished request (from om_api_completed, any thread). */
void om_admin_note_request(struct om_server *srv, const struct om_req *req, bool completed_ok);

/* Added with the implementation (backwards-compatible):
 * The GC module reports what it evicted — n images (an image = a manifest
 * or index with the content no other cached image uses), `bytes` freed in
 * total — once per eviction or per batch, for /metrics (ocimirror_evictions_total,
 * ocimirror_evicted_bytes_total) and /api/v1/stats.  Any thread; a no-op
 * before om_admin_init. */
void om_admin_note_evictions(struct om_server *srv, uint64_t n, uint64_t bytes);

struct om_members_self;   /* cache/cluster_members.h */
/* What this replica's heartbeat says of it (downloads in flight, bytes
 * served, index health); ud is the struct om_server (admin_cluster.c).
 * The server hands it to om_members_start. */
void om_admin_cluster_self(void *ud, struct om_members_self *out);

#endif
