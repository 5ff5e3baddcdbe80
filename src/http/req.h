/* req.h — the server context and the request context, and what every
 * endpoint does with them: set an error, queue the answer, finish a job.
 *
 * struct om_server holds everything a running mirror has: the immutable
 * config, the store, the index, one om_upstream per configured upstream,
 * the blob fetch table, the job pool, the manifest flight table and the
 * counters.  There are no other globals (log.c's level/format excepted,
 * set once before threads start).  server/server.c builds and frees it.
 *
 * Threads: libmicrohttpd's epoll thread pool runs the request handlers and
 * never blocks on an upstream; work that may block runs on the job pool and
 * resumes the suspended connection when it has built the response
 * (struct om_req's `resp`): the job sets req->resp/status (om_req_error
 * for an error) and calls om_req_job_done(); the dispatcher
 * (server/dispatch.c) queues it on the handler's next call.
 *
 * This header sits below every endpoint (v2/, admin/) and below the
 * dispatcher that calls them: endpoints never call up into the dispatcher.
 */
#ifndef OM_HTTP_REQ_H
#define OM_HTTP_REQ_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cache/fetch.h"
#include "cache/index.h"
#include "cache/store.h"
#include "core/config.h"
#include "core/events.h"
#include "core/jobs.h"
#include "core/policy.h"
#include "core/ref.h"
#include "core/route.h"
#include "http/auth.h"
#include "http/conn_guard.h"
#include "http/reply.h"
#include "upstream/upstream.h"

struct om_flight;
struct om_blob_flights;
struct om_events;
struct om_mcache;
struct om_tags;       /* v2.h: tags/list cache and flights */
struct om_stats;      /* admin.h: request statistics (api_admin) */
struct om_gc;         /* gc.h */
struct om_prefetcher; /* prefetch.h */
struct om_limiter;    /* limits.h: per-client limits */
struct om_members;    /* cache/cluster_members.h: heartbeats */
struct om_cluster;    /* cache/cluster.h: download leases */

struct om_counters {
    atomic_uint_fast64_t requests, hits, misses, stale, coalesced, errors;
    atomic_uint_fast64_t bytes_from_cache, bytes_from_upstream;
    atomic_uint_fast64_t policy_denied;  /* requests answered 403 by policy.* */
};

struct om_server {
    const struct om_config *cfg;
    struct om_store *store;
    struct om_index *index;
    struct om_upstream *up[OM_MAX_UPSTREAMS];
    struct om_fetch_table *fetch;
    struct om_jobs *jobs;
    unsigned lane_search, lane_other;  /* job lanes: 0..n_upstreams-1 are the upstreams' */
    struct MHD_Daemon *daemon;
    pthread_mutex_t flights_mu;        /* guards flights */
    struct om_flight *flights;         /* manifest single-flight list */
    struct om_blob_flights *blob_flights; /* blob single-flight + memory (v2/v2_blob.h) */
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
    struct om_tags *tags;              /* tags/list cache and flights (v2_tags.c) */
    struct om_stats *stats;            /* owned by api_admin.c */
    struct om_gc *gc;                  /* owned by cache/gc_service.c */
    struct om_prefetcher *prefetch;    /* owned by prefetch.c */
    /* Reloadable on SIGHUP (server.c om_server_reload): read these, not
     * cfg->access_* / cfg->policy_*, which are the values at start. */
    struct om_auth *auth;              /* access.*: owned (http/auth.h) */
    pthread_mutex_t policy_mu;         /* guards the pointer `policy` */
    struct om_policy *policy;          /* policy.*: one reference owned here */
    struct om_limiter *limiter;        /* per-client limits (http/limits.h), owned */
    struct om_members *members;        /* heartbeats (cache/cluster_members.c); NULL alone */
    struct om_cluster *cluster;        /* download leases and peer streams
                                          (cache/cluster.h); NULL = alone */
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
    char client[46];                   /* the client's address (http/clientaddr.h:
                                          the peer, or what a trusted proxy said) */
    bool dl_held;                      /* holds one of the client's downloads
                                          (http/req_limits.h) */
    char *body;                        /* admin POST body (≤ 64 KiB), owned, NUL-terminated */
    size_t body_len;
    const char *err_code;              /* OCI error code sent, for the log */
    char user[64];                     /* authenticated user name, "" = none */
    bool authed;                       /* user holds a verified name */
    int auth_phase;                    /* dispatch.c: 0 unchecked, 1 verifying, 2 done */
    bool auth_bad;                     /* the verification job said no */
    struct om_policy *policy;          /* a reference for the request (dispatch
                                          takes it, completion drops it); NULL
                                          until the /v2/ dispatch */
    struct om_req *flight_next;        /* waiter list link (flights) */
};

/* A POST body the dispatcher keeps for the admin API, at most. */
#define OM_ADMIN_BODY_MAX (64u * 1024)

/* Set req->resp/status to an error and return; used everywhere. */
void om_req_error(struct om_req *req, unsigned status, const char *code, const char *message);
/* Queue req->resp (consumed) with req->status; MHD_NO when there is none. */
enum MHD_Result om_req_send(struct om_req *req);
/* om_req_error, then om_req_send. */
enum MHD_Result om_req_send_error(struct om_req *req, unsigned status, const char *code,
                                  const char *message);
/* Finish a job: the response is in req; resume the connection. */
void om_req_job_done(struct om_req *req);

/* The live content policy, with a reference for the caller (drop it with
 * om_policy_unref); never NULL once the server started. */
struct om_policy *om_server_policy(struct om_server *srv);
/* Install p (the server takes the caller's reference) and drop the old
 * one: requests holding the old keep it until they complete. */
void om_server_policy_swap(struct om_server *srv, struct om_policy *p);

/* ---- how loaded the server is (for /healthz, /metrics, the log) ---- */

/* A job lane's name: its upstream's, "search" (names being searched) or
 * "other".  Static or config storage. */
const char *om_server_lane_name(const struct om_server *srv, unsigned lane);

/* Upstream i (cfg->upstreams[] index): its job lane and its download
 * slots.  Saturated: every job thread of its lane busy, or every download
 * slot it may hold taken with more waiting — new work for it waits. */
struct om_upstream_load {
    struct om_jobs_lane_stats jobs;
    unsigned dl_active, dl_waiting, dl_max;
    bool saturated;
};
void om_server_upstream_load(struct om_server *srv, size_t i, struct om_upstream_load *out);

#endif
