/* server.h — the one server context and the HTTP front (libmicrohttpd).
 *
 * struct om_server holds everything a running mirror has: the immutable
 * config, the store, the index, one om_upstream per configured upstream,
 * the blob fetch table, the job pool, the manifest flight table and the
 * counters.  There are no other globals (log.c's level/format excepted,
 * set once before threads start).
 *
 * Threads: libmicrohttpd's epoll thread pool runs the request handlers and
 * never blocks on an upstream; work that may block runs on the job pool and
 * resumes the suspended connection when it has built the response
 * (struct om_req's `resp`).  See api_v2.c.
 *
 * Shutdown (SIGTERM/SIGINT): stop accepting (quiesce), let transfers finish
 * for limits.shutdown_grace_ms, then cancel downloads (waiters get aborted),
 * drain jobs, resume anything suspended, stop the daemon.
 */
#ifndef OM_SERVER_H
#define OM_SERVER_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "config.h"
#include "conn_guard.h"
#include "events.h"
#include "fetch.h"
#include "index.h"
#include "jobs.h"
#include "ref.h"
#include "route.h"
#include "store.h"
#include "upstream.h"

struct om_flight;
struct om_events;
struct om_mcache;
struct om_stats;      /* admin.h: request statistics (api_admin) */
struct om_gc;         /* gc.h */
struct om_prefetcher; /* prefetch.h */

struct om_counters {
    atomic_uint_fast64_t requests, hits, misses, stale, coalesced, errors;
    atomic_uint_fast64_t bytes_from_cache, bytes_from_upstream;
};

struct om_server {
    const struct om_config *cfg;
    struct om_store *store;
    struct om_index *index;
    struct om_upstream *up[OM_MAX_UPSTREAMS];
    struct om_fetch_table *fetch;
    struct om_jobs *jobs;
    struct MHD_Daemon *daemon;
    pthread_mutex_t flights_mu;        /* guards flights */
    struct om_flight *flights;         /* manifest single-flight list */
    struct om_counters ctr;
    atomic_uint connections;           /* requests in progress (not idle keep-alives) */
    struct om_conn_guard guard;        /* connection cap, request-head deadline */
    atomic_bool stopping;              /* SIGTERM seen: no new work */
    atomic_bool cancel;                /* grace over: abort upstream calls of jobs */
    int64_t started_ms;
    char *tls_cert_pem, *tls_key_pem;  /* owned, kept alive for MHD */
    struct om_events *events;          /* recent events ring (events.h) */
    struct om_pullstats *pulls;        /* batched pull statistics (pullstats.h) */
    struct om_mcache *mcache;          /* manifest hot-path cache (mcache.h) */
    struct om_stats *stats;            /* owned by api_admin.c */
    struct om_gc *gc;                  /* owned by gc.c */
    struct om_prefetcher *prefetch;    /* owned by prefetch.c */
};

/* What the cache did for one request, for the log line. */
typedef enum { OM_CACHE_NONE, OM_CACHE_HIT, OM_CACHE_MISS, OM_CACHE_STALE, OM_CACHE_COALESCED } om_cache_result;

/* Per-request context; created on the first handler call, freed when
 * libmicrohttpd reports the request completed. */
struct om_req {
    struct om_server *srv;
    struct MHD_Connection *conn;
    int64_t t0_us;
    const char *method;                /* owned by MHD for the request */
    bool head;                         /* HEAD (else GET) */
    int phase;                         /* 0 new, 1 waiting for a job, 2 job done */
    const char *url;                   /* raw path, owned by MHD */
    om_v2_path p;
    char ns[256];                      /* decoded ?ns=, "" when absent */
    struct om_route route;
    char canonical[OM_NAME_MAX + 1];   /* once known */
    char upstream[64];                 /* upstream used, for the log */
    om_cache_result cache;
    struct MHD_Response *resp;         /* built by a job; queued by the handler */
    unsigned status;
    uint64_t bytes;                    /* body bytes planned/served, for the log */
    uint64_t upload_seen;              /* push body bytes dropped */
    char *body;                        /* admin POST body (≤ 64 KiB), owned, NUL-terminated */
    size_t body_len;
    const char *err_code;              /* OCI error code sent, for the log */
    struct om_req *flight_next;        /* waiter list link (flights) */
};

int64_t om_now_ms(void);

/* Start serving (does not block). */
int om_server_start(struct om_server **out, const struct om_config *cfg);
/* Block until SIGTERM/SIGINT, then shut down gracefully and free. */
void om_server_run_until_signal(struct om_server *srv);
void om_server_free(struct om_server *srv);

/* ---- http.c: response helpers ---- */
/* An OCI error JSON response: {"errors":[{"code","message","detail"}]}. */
struct MHD_Response *om_http_error(const char *code, const char *message, const char *detail);
/* A JSON/text body copied into the response. */
struct MHD_Response *om_http_body(const char *content_type, const void *buf, size_t len);
/* A body-less response that still announces Content-Length: len (HEAD). */
struct MHD_Response *om_http_head(const char *content_type, uint64_t len);
/* Headers every answer carries. */
void om_http_common_headers(struct MHD_Response *r);

/* ---- api_v2.c ---- */
#define OM_ADMIN_BODY_MAX (64u * 1024)
enum MHD_Result om_api_handle(struct om_server *srv, struct MHD_Connection *conn,
                              const char *url, const char *method, const char *version,
                              const char *upload_data, size_t *upload_size, void **req_cls);
void om_api_completed(struct om_server *srv, struct om_req *req,
                      enum MHD_RequestTerminationCode toe);
/* Set req->resp/status to an error and return; used everywhere. */
void om_req_error(struct om_req *req, unsigned status, const char *code, const char *message);
/* Finish a job: the response is in req; resume the connection. */
void om_req_job_done(struct om_req *req);

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
/* Record the outcome of probing candidate i: found or not. */
void om_v2_note_probe(struct om_req *req, size_t i, bool found, bool decided);

#endif
