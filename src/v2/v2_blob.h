/* v2_blob.h — the parts of the blob endpoint its two files share, and the
 * flight table's life for server/server.c:
 *   v2_blob.c         the endpoint: the hit path (with the size check),
 *                     serving cached and streaming blobs, and a flight's
 *                     work (find the blob upstream, start or join its
 *                     download) and every waiter's answer
 *   v2_blob_flight.c  the single-flight of blob requests that must go
 *                     upstream, and the brief memory of what the upstream
 *                     answered
 *   v2_blob_object.c  a cached blob from a store without local files: a
 *                     307 to a presigned URL, or a stream from the store
 * Everything here runs on job threads, except om_blob_flight_join (an HTTP
 * thread), om_blob_flight_enter (any thread), om_v2_blob_object (either)
 * and new/free (the server's start and end).
 */
#ifndef OM_V2_BLOB_H
#define OM_V2_BLOB_H

#include "http/req.h"

struct om_blob_flights;

/* The table of a server (srv->blob_flights).  *out owned by the caller
 * (om_blob_flights_free; NULL is a no-op).  Free it only after the job pool
 * stopped: every flight's job has then run and answered its waiters. */
int om_blob_flights_new(struct om_blob_flights **out);
void om_blob_flights_free(struct om_blob_flights *t);

/* What a flight's work found, for every request waiting on it. */
struct om_blob_answer {
    unsigned status;              /* 200, or the error status to send */
    const char *code;             /* OCI error code when status != 200 (static) */
    char message[OM_NAME_MAX + OM_DIGEST_MAX + 96];
    bool cached;                  /* 200: the store has it (right size): serve from there */
    size_t chosen;                /* 200, not cached: the route candidate it came from */
    uint64_t size;                /* 200, HEAD: the blob's size (upstream's HEAD) */
    struct om_fetch *f;           /* 200, GET, not cached: the leader's reference to the
                                     download (owned by the answer until handed over) */
    bool joined;                  /* the leader joined a download already running */
};

/* Join the flight of req's (method, name, ns, digest), or start one: a job
 * that runs om_v2_blob_work for the first request and then
 * om_v2_blob_answer for each request that joined meanwhile (the first
 * included).  Suspends req; returns MHD_YES.  HTTP thread. */
enum MHD_Result om_blob_flight_join(struct om_req *req);
/* The same for a request that is suspended already (phase 1), from any
 * thread: a cached serve that found the object gone goes the miss way. */
void om_blob_flight_enter(struct om_req *req);

/* ---- v2_blob.c, called by the flight's job ---- */
/* Do what `leader` needs from upstream and fill *a. */
void om_v2_blob_work(struct om_req *leader, struct om_blob_answer *a);
/* Build w's response from *a (w may be the leader; a->f is handed to the
 * leader's stream, and other GETs take references of their own). */
void om_v2_blob_answer(struct om_req *w, const struct om_req *leader, struct om_blob_answer *a);

/* ---- the response parts v2_blob.c and v2_blob_object.c share ---- */
/* Docker-Content-Digest, Etag, Accept-Ranges, Cache-Control. */
void om_blob_headers(struct MHD_Response *r, const om_digest *d);
void om_blob_content_range(struct MHD_Response *r, uint64_t first, uint64_t last,
                           uint64_t size);
/* req->resp = r (NULL: 503 out of memory) with the common headers. */
void om_blob_set_resp(struct om_req *req, struct MHD_Response *r, unsigned status,
                      uint64_t bytes);
void om_blob_range_not_satisfiable(struct om_req *req, uint64_t size);

/* ---- v2_blob_object.c ---- */
typedef enum {
    OM_BLOB_SERVED,   /* req->resp is set: queue it (or return it, in a job) */
    OM_BLOB_PENDING,  /* HTTP thread: suspended; answered and resumed later */
    OM_BLOB_MISS,     /* not served (gone from the store): go the miss way */
} om_blob_served;
/* GET of the cached blob d (size bytes, the size it must have) from a store
 * without OM_STORE_CAN_SENDFILE: 307 to a presigned URL with
 * storage.redirect, else streamed from the store with Range passed
 * through.  in_job: a job thread, which may wait for the bucket's first
 * answer (never PENDING); else an HTTP thread, which never waits.  A whole
 * blob's pull is counted for pull_name ("" = not counted; copied). */
om_blob_served om_v2_blob_object(struct om_req *req, const om_digest *d, uint64_t size,
                                 bool in_job, const char *pull_name);

/* ---- v2_blob.c, for the peer endpoint (v2_peer.c) too ---- */
/* Stream the download f (the reference is taken) to req from the ingest
 * file as it grows: 200, or 206 for one Range; total from
 * om_fetch_wait_ready. */
void om_v2_blob_stream(struct om_req *req, const om_digest *d, struct om_fetch *f,
                       uint64_t total);
/* Answer from the store (the object of `size` bytes, which must be `want`
 * or OM_STORE_ANY_SIZE); MISS when it is not servable (see v2_blob.c). */
om_blob_served om_v2_blob_serve_cached(struct om_req *req, const om_digest *d, uint64_t size,
                                       uint64_t want, bool in_job, const char *pull_name);

/* ---- v2_member.c, called by the flight's job ---- */
/* A GET of candidate ci's blob joined a download already running, which
 * may be another repository's: true when this repository holds the blob
 * too (one HEAD under its name, remembered in the memory below); else
 * false with the answer (404 BLOB_UNKNOWN, 429, 503) in *a. */
bool om_v2_member_confirm_join(struct om_req *req, size_t ci, struct om_blob_answer *a);

/* ---- the memory of upstream answers (v2_blob_flight.c) ----
 * Per (canonical repository, digest): 200 "there, `size` bytes" (from a
 * HEAD), 404 "not there", 429/503 "the upstream failed".  Remembered for
 * negative_ttl (200, 404) or OM_BLOB_ERROR_TTL_MS at most (failures: long
 * enough that a crowd of clients, and their retries, cost the upstream one
 * request; short enough that a blip is soon forgotten).  At most
 * OM_BLOB_MEMO_SLOTS entries; an expired or the soonest-expiring entry of
 * a probe window makes room. */
#define OM_BLOB_ERROR_TTL_MS 2000
#define OM_BLOB_MEMO_SLOTS 2048

struct om_blob_memo {
    unsigned status;              /* 200, 404, 429, 503 */
    uint64_t size;                /* with 200 */
};
bool om_blob_memo_get(struct om_server *srv, const char *canonical, const om_digest *d,
                      struct om_blob_memo *out);
void om_blob_memo_put(struct om_server *srv, const char *canonical, const om_digest *d,
                      const struct om_blob_memo *m);

/* ---- shared by v2_blob.c and v2_blob_work.c ---- */
/* The size the blob d must have into *want (the memory, else the index);
 * false when nothing says, or the index could not be asked. */
bool om_v2_blob_expected_size(struct om_server *srv, const om_digest *d, uint64_t *want);
/* A download of c's blob d that failed before its first byte (err and
 * status from om_fetch_wait_ready): the answer in *a, and what the memory
 * keeps of it. */
void om_v2_blob_fetch_failed(struct om_server *srv, const struct om_route_candidate *c,
                             const om_digest *d, int err, long status, struct om_blob_answer *a);

#endif
