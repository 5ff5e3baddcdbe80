/* req_limits.h — the per-client limits applied to a request: who its
 * client is (clientaddr.h) and what the limiter (limits.h, the server's
 * srv->limiter) says of it.  Each check that refuses leaves in req a
 * 429 TOOMANYREQUESTS answer with Retry-After and an OCI error naming the
 * limit and the client, logs the refusal (at most once a minute per
 * client) and returns false; the caller queues it (om_req_send) or, on a
 * job, finishes with it.
 *
 * Where they are called:
 *   om_req_identify        the dispatcher, first, for every request (the
 *                          log line names req->client)
 *   om_req_limit_request   the dispatcher, for every /v2/ request
 *   om_req_limit_download  the dispatcher, before a blob GET
 *   om_req_limit_upstream  v2/, where a request turns into upstream work:
 *                          a manifest or tag flight, a blob fetch, a tag
 *                          list, referrers — before any upstream contact
 *   om_req_limit_done      the dispatcher's completion: bytes sent, the
 *                          download slot given back
 * With srv->limiter NULL every check allows.
 */
#ifndef OM_HTTP_REQ_LIMITS_H
#define OM_HTTP_REQ_LIMITS_H

#include "http/limits.h"
#include "http/req.h"

void om_req_identify(struct om_req *req);
bool om_req_limit_request(struct om_req *req);
bool om_req_limit_download(struct om_req *req);
bool om_req_limit_upstream(struct om_req *req);
void om_req_limit_done(struct om_req *req, bool ok);

#endif
