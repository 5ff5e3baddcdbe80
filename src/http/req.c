/* req.c — what every endpoint does with its request context: set an
 * error answer, queue the answer, hand a finished job's answer back to the
 * dispatcher (http/req.h); and what /healthz and /metrics say of the
 * server's load. */
#include "http/req.h"

void om_req_error(struct om_req *req, unsigned status, const char *code, const char *message)
{
    if (req->resp != NULL)
        MHD_destroy_response(req->resp);
    req->resp = om_http_error(code, message, NULL);
    req->status = status;
    req->err_code = code;
}

enum MHD_Result om_req_send(struct om_req *req)
{
    enum MHD_Result r = MHD_NO;
    if (req->resp != NULL) {
        r = MHD_queue_response(req->conn, req->status, req->resp);
        MHD_destroy_response(req->resp);
        req->resp = NULL;
    }
    return r;
}

enum MHD_Result om_req_send_error(struct om_req *req, unsigned status, const char *code,
                                 const char *message)
{
    om_req_error(req, status, code, message);
    return om_req_send(req);
}

void om_req_job_done(struct om_req *req)
{
    req->phase = 2;
    MHD_resume_connection(req->conn);
}

struct om_policy *om_server_policy(struct om_server *srv)
{
    pthread_mutex_lock(&srv->policy_mu);
    struct om_policy *p = om_policy_ref(srv->policy);
    pthread_mutex_unlock(&srv->policy_mu);
    return p;
}

void om_server_policy_swap(struct om_server *srv, struct om_policy *p)
{
    pthread_mutex_lock(&srv->policy_mu);
    struct om_policy *old = srv->policy;
    srv->policy = p;
    pthread_mutex_unlock(&srv->policy_mu);
    om_policy_unref(old);
}

const char *om_server_lane_name(const struct om_server *srv, unsigned lane)
{
    if (lane < srv->cfg->n_upstreams)
        return srv->cfg->upstreams[lane].name;
    return lane == srv->lane_search ? "search" : "other";
}

void om_server_upstream_load(struct om_server *srv, size_t i, struct om_upstream_load *out)
{
    *out = (struct om_upstream_load){0};
    om_jobs_lane_stats(srv->jobs, (unsigned)i, &out->jobs);
    if (srv->fetch != NULL)
        om_fetch_upstream_slots(srv->fetch, i, &out->dl_active, &out->dl_waiting, &out->dl_max);
    out->saturated = (out->jobs.max > 0 && out->jobs.running >= out->jobs.max) ||
                     (out->dl_max > 0 && out->dl_active >= out->dl_max && out->dl_waiting > 0);
}
