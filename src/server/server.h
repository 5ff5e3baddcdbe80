/* server.h — the running mirror: build the server context (http/req.h),
 * start libmicrohttpd, run until a signal, shut down gracefully; and the
 * dispatcher that hands each request to its endpoint (dispatch.c).
 *
 * This folder is the top of the serving stack: it knows every endpoint
 * (v2/, admin/), every background service (gc, prefetch) and the HTTP
 * plumbing (http/); nothing below includes it.
 *
 * Shutdown (SIGTERM/SIGINT): stop accepting (quiesce), let transfers finish
 * for limits.shutdown_grace_ms, then cancel downloads (waiters get aborted),
 * drain jobs, resume anything suspended, stop the daemon.
 */
#ifndef OM_SERVER_H
#define OM_SERVER_H

#include "http/req.h"

/* Start serving (does not block).  *out owned by the caller
 * (om_server_run_until_signal or om_server_free). */
int om_server_start(struct om_server **out, const struct om_config *cfg);
/* Block until SIGTERM/SIGINT, then shut down gracefully and free. */
void om_server_run_until_signal(struct om_server *srv);
void om_server_free(struct om_server *srv);

/* SIGHUP (run by om_server_run_until_signal's thread): read the config
 * file again (cfg->source) and swap in its access.* (anonymous, the
 * htpasswd file, loaded now) and policy.* together; requests in flight
 * finish under the policy they started with.  A file that does not load,
 * or an htpasswd file that does not, changes nothing and logs why; the
 * return is OM_OK or that error.  Other keys of the new file are ignored
 * (a restart applies them); the limits work adds its own part here.
 * Without a config file (embedded defaults) only the htpasswd file is read
 * again. */
int om_server_reload(struct om_server *srv);

/* ---- dispatch.c: libmicrohttpd's access and completion callbacks ---- */
enum MHD_Result om_api_handle(struct om_server *srv, struct MHD_Connection *conn,
                              const char *url, const char *method, const char *version,
                              const char *upload_data, size_t *upload_size, void **req_cls);
void om_api_completed(struct om_server *srv, struct om_req *req,
                      enum MHD_RequestTerminationCode toe);

#endif
