/* v2_peer.c — GET/HEAD /internal/v1/blobs/<digest>: the internal endpoint
 * the other replicas of a cluster stream a blob from while this replica
 * owns its download (cache/cluster.h, cache/fetch_cluster.c).
 *
 *   - 404 NOT_FOUND when this replica is not in a cluster (srv->cluster
 *     NULL): the endpoint does not exist;
 *   - `Authorization: Bearer <cluster.peer_token>` (hashed, compared in
 *     constant time): none → 401 UNAUTHORIZED, a wrong one → 403 DENIED;
 *   - by digest only: no repository, so no route and no repository
 *     isolation (only peers holding the token get here); not counted as a
 *     pull in the pull statistics;
 *   - answered on a job (the download may still wait for the upstream's
 *     first answer): from this replica's download of the digest in
 *     progress (the same stream local clients of the download get: the
 *     growing ingest file, the last byte only once verified and
 *     committed), else from the store, else 404 BLOB_UNKNOWN;
 *   - `Range: bytes=N-` → 206 with Content-Range; the total size, when
 *     known, is also in `OM-Blob-Size`.
 */
#include "v2/v2.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cache/cluster.h"
#include "v2/v2_blob.h"

#define PREFIX "/internal/v1/blobs/"

static void size_header(struct om_req *req, uint64_t total)
{
    char v[24];
    if (req->resp == NULL || total == OM_FETCH_SIZE_UNKNOWN)
        return;
    snprintf(v, sizeof(v), "%" PRIu64, total);
    MHD_add_response_header(req->resp, "OM-Blob-Size", v);
}

static void peer_job(void *arg)
{
    struct om_req *req = arg;
    struct om_server *srv = req->srv;
    const om_digest *d = &req->p.ref.digest;
    struct om_fetch *f = NULL;
    uint64_t total = 0, size = 0;
    long status = 0;

    if (om_fetch_find(srv->fetch, d, &f) == OM_OK) {
        int err = om_fetch_wait_ready(f, srv->cfg->limits.idle_timeout_ms, &total, &status);
        if (err == OM_OK && req->head) {
            om_fetch_release(f);
            struct MHD_Response *r = om_http_head("application/octet-stream",
                                                  total == OM_FETCH_SIZE_UNKNOWN ? 0 : total);
            if (r != NULL)
                om_blob_headers(r, d);
            om_blob_set_resp(req, r, MHD_HTTP_OK, 0);
            size_header(req, total);
        } else if (err == OM_OK) {
            om_v2_blob_stream(req, d, f, total);
            size_header(req, total);
        } else {
            om_fetch_release(f);
            om_req_error(req, MHD_HTTP_NOT_FOUND, "BLOB_UNKNOWN",
                         "this replica's download of the blob failed");
        }
        goto done;
    }
    if (om_store_has(srv->store, d, &size) &&
        om_v2_blob_serve_cached(req, d, size, OM_STORE_ANY_SIZE, true, "") == OM_BLOB_SERVED) {
        size_header(req, size);
        goto done;
    }
    om_req_error(req, MHD_HTTP_NOT_FOUND, "BLOB_UNKNOWN", "no download of the blob here");
done:
    req->cache = OM_CACHE_NONE; /* a peer's read: neither a hit nor a miss of a client */
    om_req_job_done(req);
}

enum MHD_Result om_v2_peer(struct om_req *req)
{
    struct om_server *srv = req->srv;
    size_t plen = strlen(PREFIX);

    if (srv->cluster == NULL)
        return om_req_send_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such endpoint");
    const char *auth = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
    if (auth == NULL) {
        enum MHD_Result r;
        om_req_error(req, MHD_HTTP_UNAUTHORIZED, "UNAUTHORIZED",
                     "the internal endpoint needs the cluster's peer token");
        MHD_add_response_header(req->resp, "WWW-Authenticate", "Bearer realm=\"ocimirror-peer\"");
        r = om_req_send(req);
        return r;
    }
    if (!om_cluster_token_ok(srv->cluster, auth))
        return om_req_send_error(req, MHD_HTTP_FORBIDDEN, "DENIED", "wrong peer token");
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
        return om_req_send_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "UNSUPPORTED",
                                 "GET or HEAD only");
    req->head = req->method[0] == 'H';
    if (strncmp(req->url, PREFIX, plen) != 0)
        return om_req_send_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such endpoint");
    const char *ds = req->url + plen;
    if (om_digest_parse(&req->p.ref.digest, ds, strlen(ds)) != OM_OK)
        return om_req_send_error(req, MHD_HTTP_BAD_REQUEST, "DIGEST_INVALID", "invalid digest");
    req->phase = 1;
    MHD_suspend_connection(req->conn);
    if (om_jobs_submit_lane(srv->jobs, srv->lane_other, peer_job, req) != OM_OK) {
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "mirror overloaded");
        om_req_job_done(req);
    }
    return MHD_YES;
}
