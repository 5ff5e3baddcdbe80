/* prefetch.h — warming the cache (预热): `ocimirror prefetch`, the config's
 * prefetch section re-synced in the background, and admin-triggered jobs.
 *
 * Prefetch is an HTTP client of a mirror: it pulls each image through the
 * mirror's own /v2/ API exactly as a client would (manifest by tag with the
 * full Accept list, the platform manifests of an index, then every config
 * and layer blob, bodies discarded), so the whole pull pipeline — routing,
 * single-flight downloads, digest checks, the index — is reused as it is.
 *
 * Implemented in prefetch.c (the queue, the background thread, the admin
 * hooks), prefetch_job.c (what a job records: counters, failures as codes,
 * its progress log, JSON), prefetch_pull.c (pulling one image with
 * libcurl), prefetch_run.c (a list with retries), prefetch_remote.c (a
 * list as a job of a running mirror, through its admin API) and
 * cli/prefetch_cli.c (the command).  docs/prefetch.md is the user's side.
 */
#ifndef OM_PREFETCH_H
#define OM_PREFETCH_H

#include <jansson.h>

#include "http/req.h"

/* Start the prefetcher of a running server (called by om_server_start after
 * the daemon listens): one thread that runs queued jobs one after another —
 * the config's prefetch.images at start-up and then every
 * prefetch.interval (when the list is not empty), and jobs submitted with
 * om_prefetch_submit().  It pulls through the server's own listening port
 * on loopback.  srv->prefetch is owned by this module. */
int om_prefetch_start(struct om_server *srv);
/* Stop the thread (a pull in progress is aborted), join it, free.  Safe
 * when om_prefetch_start() was never called or failed. */
void om_prefetch_stop(struct om_server *srv);

/* How a submitted job runs (NULL: as the config says). */
struct om_prefetch_opts {
    const char *kind;           /* "admin" (NULL) or "cli": who asked */
    unsigned tries;             /* tries per image; 0: prefetch.retries */
    int64_t retry_ms;           /* between tries; < 0: prefetch.retry_interval */
};

/* Queue a job (POST /api/v1/prefetch): n images (references as a client
 * writes them: "nginx:1.25", "quay.io/x/y@sha256:..."), for np platforms
 * ("os/arch" or "os/arch/variant"; np == 0: the config's
 * prefetch.platforms), run as opts says (NULL: defaults).  The strings are
 * copied.  Writes the job's id (NUL-terminated, at most OM_PREFETCH_ID_MAX
 * bytes) into id_out.  Returns OM_OK; OM_ERR_INVALID for a bad reference
 * or platform, n == 0, too many entries, tries over 100, a bad kind or
 * id_sz too small; OM_ERR_TOOMANY when OM_PREFETCH_QUEUE_MAX jobs are
 * already waiting; OM_ERR_DENIED when the prefetcher is not running
 * (server stopping). */
int om_prefetch_submit(struct om_server *srv, const char *const *images, size_t n,
                       const char *const *platforms, size_t np,
                       const struct om_prefetch_opts *opts, char *id_out, size_t id_sz);

/* {"jobs":[{"id","kind":"config"|"admin"|"cli","state":"queued"|"running"|
 *   "waiting"|"done"|"failed"|"cancelled","images":[..],"platforms":[..],
 *   "done","failed","errors":["IMAGE: message",..],
 *   "failures":[{"image","code","values":{..},"message"}],"try","tries",
 *   "retry_interval_ms","bytes","blobs","blobs_cached",
 *   "current":{"image","blobs_done","blobs_total","blobs_cached","bytes"}|null,
 *   "created_ms","started_ms","finished_ms","next_try_ms"}]} — newest first;
 * the last OM_PREFETCH_KEEP_DONE finished jobs are kept.  "done"/"failed"
 * count images; "waiting" = between two tries; "bytes" are fetched from
 * upstream, "blobs_cached" of "blobs" were in the store already.  Times
 * are Unix ms, 0 when not yet.  A new reference owned by the caller; NULL
 * on allocation failure or when the prefetcher is not running. */
json_t *om_prefetch_jobs_json(struct om_server *srv);

/* One job and its progress records after `since` (GET
 * /api/v1/prefetch/<id>?since=N, what `ocimirror prefetch` follows):
 * {"job":{..as above..},"log":[{"seq","t_ms","type",...}],"since",
 * "dropped","more"} (prefetch_job.h).  *out is a new reference owned by
 * the caller.  OM_ERR_NOTFOUND for an unknown id, OM_ERR_DENIED when the
 * prefetcher is not running, OM_ERR_NOMEM. */
int om_prefetch_job_json(struct om_server *srv, const char *id, uint64_t since, json_t **out);

/* Cancel a job: a queued one never runs, a running one stops within
 * ~250 ms (its images not done fail as "cancelled").  *out gets the job's
 * JSON (a new reference).  A finished job is left as it is (OM_OK).
 * OM_ERR_NOTFOUND, OM_ERR_DENIED, OM_ERR_NOMEM as above. */
int om_prefetch_cancel(struct om_server *srv, const char *id, json_t **out);

#define OM_PREFETCH_ID_MAX 31
#define OM_PREFETCH_QUEUE_MAX 64     /* jobs queued at once */
#define OM_PREFETCH_KEEP_DONE 50     /* finished jobs listed */

/* ---- pure helpers (unit tested) ------------------------------------- */

/* Split an image reference as a client writes it into the repository name
 * to ask the mirror for and the reference (tag or digest):
 *   "alpine"                      → "alpine", "latest"
 *   "quay.io/coreos/etcd:v3.5.0"  → "quay.io/coreos/etcd", "v3.5.0"
 *   "nginx:1.25@sha256:<hex>"     → "nginx", "sha256:<hex>" (digest wins)
 * The name is passed on verbatim: the mirror routes it the way it routes a
 * client that pulls MIRROR/<name> (explicit registry prefix, rewrites,
 * search order, library/ for Docker Hub).  A registry with a port
 * ("registry.local:5000/app:1") is passed on too (the mirror serves it only
 * when it is a configured upstream or alias).  OM_ERR_INVALID when the
 * name, tag or digest is not valid (upper case, an empty component...). */
int om_prefetch_ref_parse(const char *s, char *name, size_t namesz, char *ref, size_t refsz);
/* "os/arch" or "os/arch/variant", lowercase [a-z0-9._-]. */
bool om_prefetch_platform_valid(const char *s);

#endif
