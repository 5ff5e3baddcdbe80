/* api_admin.c — placeholder until the admin API exists. */
#include "admin.h"

int om_admin_init(struct om_server *srv)
{
    (void)srv;
    return OM_OK;
}

void om_admin_free(struct om_server *srv)
{
    (void)srv;
}

enum MHD_Result om_admin_handle(struct om_req *req)
{
    om_req_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such endpoint");
    enum MHD_Result r = MHD_queue_response(req->conn, req->status, req->resp);
    MHD_destroy_response(req->resp);
    req->resp = NULL;
    return r;
}

void om_admin_note_request(struct om_server *srv, const struct om_req *req, bool completed_ok)
{
    (void)srv;
    (void)req;
    (void)completed_ok;
}
