/* index_redis.h — the Redis backend's handle and key schema, shared by its
 * files and by the cluster work that reuses its connection:
 *   index_redis.c        the reads, the ops table
 *   index_redis_write.c  the writes and their Lua scripts
 *   index_redis_open.c   open (schema check, rebuild when empty), close,
 *                        rebuild from the store + tags.log, health, tags.log
 *   index_redis_admin.c  the admin views (index_admin.h) read from the schema
 * Callers use index.h; index.c reaches the backend through
 * om_index_redis_open (index_backend.h) and the ops table.
 *
 * Key schema, version 1 (P = "om:", fixed; one Redis database per cluster,
 * chosen by the URL's /DB).  Every key is written only by this backend:
 *   P meta                 HASH  schema ("1"), created_at
 *   P repos                ZSET  repository names, score 0: the catalog
 *                                (ZRANGEBYLEX pages it in byte order)
 *   P t:<repo>             ZSET  the repository's tags, score 0 (tags/list)
 *   P tag:<repo>:<tag>     HASH  d (digest) mt sz fa (fetched_at) ca
 *                                (checked_at) lp (last_pulled) pc (pulls);
 *                                unambiguous: a valid tag has no ':'
 *   P m:<digest>           HASH  mt sz ca (created_at) la (last access) pc
 *   P b:<digest>           HASH  sz ca la pc
 *   P mc:<digest>          SET   the manifest's children
 *   P mr:<repo> / br:<repo>  SET the manifests / blobs the repository holds
 *   P rm:<digest> / rb:<digest>  SET the repositories holding the
 *                                manifest / blob (the reverse, for GC)
 *   P la                   ZSET  digest → last access (ms): the LRU order
 *                                for eviction, manifests and blobs alike
 *   P stats                HASH  tags manifests blobs blob_bytes
 *                                manifest_bytes: counters the scripts keep
 *                                exact (bytes used without a scan)
 *   P r:<name>             HASH  u (upstream) c (canonical) t; PX 30 days,
 *                                renewed by each put (a forgotten decision
 *                                costs one search)
 *   P ng:<n>:<upstream>:<name>  STRING the end of the negative entry (ms);
 *                                PX until then (+ 60 s); n = the upstream
 *                                name's length, so the key is unambiguous
 *   P rf:<digest>:<repo>   HASH  j (the referrers JSON) t (fetched_at)
 *   P lock:rebuild         STRING a lease (SET NX PX): one replica rebuilds
 * Written by cache/cluster.c (not this backend), listed here so the schema
 * is in one place:
 *   P fl:<digest>          STRING a download's lease "<replica>|<peer url>|
 *                                <epoch>", PX cluster.lease; GC skips a
 *                                blob while it exists
 *   P fle:<digest>         STRING its epoch counter (INCR), PX 1 h
 *   P fl-done              CHANNEL a released lease's digest (PUBLISH)
 *   P ml:<repo>:<tag>      STRING the lease of one resolution of a tag
 *                                (same value; PX cluster.lease; not renewed)
 *   P mle:<repo>:<tag>     STRING its epoch counter, PX 1 h
 * Multi-key writes (tag_put, manifest_put, blob_put, note_pull) are Lua
 * scripts: atomic, one round trip, and the only way the counters stay exact.
 * Needs Redis >= 6.2 (ZADD GT).
 */
#ifndef OM_INDEX_REDIS_H
#define OM_INDEX_REDIS_H

#include "cache/index_admin.h"
#include "cache/index_backend.h"
#include "cache/redis.h"

#include <pthread.h>

#define OM_IXR_PREFIX "om:"
#define OM_IXR_SCHEMA "1"
#define OM_IXR_KEY_MAX 640            /* the longest key (ng:) is under 600 */
#define OM_IXR_ROUTE_TTL_MS (30LL * 24 * 3600 * 1000)
#define OM_IXR_NEG_SLACK_MS 60000
#define OM_IXR_PAGE 1000              /* names one listing round trip reads */
#define OM_IXR_PATH_MAX 4096

struct om_index_redis {
    struct om_index base;             /* first: ops = om_index_redis__ops, st borrowed */
    struct om_redis *r;               /* owned */
    int log_fd;                       /* <storage>/tags.log, O_APPEND; owned */
    bool log_need_nl;                 /* guarded by log_mu */
    pthread_mutex_t log_mu;
    char log_path[OM_IXR_PATH_MAX];
};

static inline struct om_index_redis *om_index_redis__of(struct om_index *base)
{
    return (struct om_index_redis *)base;
}

/* The connection of a Redis-backed index, for the cluster coordination
 * (leases, the GC leader) to share; NULL for another backend.  Borrowed:
 * lives as long as the index. */
struct om_redis *om_index_redis_conn(struct om_index *ix);

/* One command on the index's pool; *rp freed by the caller. */
static inline int om_index_redis__exec1(struct om_index *base, struct om_redis_cmd *c,
                                        redisReply **rp)
{
    return om_redis_exec(om_index_redis__of(base)->r, c, 1, rp);
}

/* ---- index_redis.c (reads, the ops table) ---- */

extern const struct om_index_ops om_index_redis__ops;

/* ---- index_redis_write.c: the writes, with the contracts of index.h ---- */

/* SHA-1 of every script, once (om_index_redis_open). */
void om_index_redis__scripts_init(void);
/* index_redis.c: ZCARD P repos and HMGET P stats fields into dst[] (0 when
 * never counted), one round trip; what names the caller in logs. */
int om_index_redis__stats(struct om_index *base, const char *const *fields, uint64_t *const *dst,
                          size_t n, uint64_t *repos, const char *what);
int om_index_redis__tag_put(struct om_index *ix, const char *repo, const char *tag,
                            const om_digest *d, const char *media_type, uint64_t size,
                            int64_t now);
int om_index_redis__tag_checked(struct om_index *ix, const char *repo, const char *tag,
                                int64_t now);
int om_index_redis__manifest_put(struct om_index *ix, const char *repo, const om_digest *d,
                                 const char *media_type, uint64_t size,
                                 const om_digest *children, size_t n_children, int64_t now);
int om_index_redis__blob_put(struct om_index *ix, const char *repo, const om_digest *d,
                             uint64_t size, int64_t now);
int om_index_redis__note_pull(struct om_index *ix, const char *repo, const char *tag,
                              const om_digest *d, int64_t now);
int om_index_redis__note_pulls(struct om_index *ix, struct om_pull_note *notes, size_t n);
/* Does repo hold d (index.h om_index_member)?  OM_ERR_NOTFOUND when not. */
int om_index_redis__member(struct om_index *ix, const char *repo, const om_digest *d);
int om_index_redis__route_put(struct om_index *ix, const char *name, const char *upstream,
                              const char *canonical, int64_t now);
bool om_index_redis__negative_get(struct om_index *ix, const char *name, const char *upstream,
                                  int64_t now);
int om_index_redis__negative_put(struct om_index *ix, const char *name, const char *upstream,
                                 int64_t until);
int om_index_redis__referrers_put(struct om_index *ix, const char *repo, const om_digest *d,
                                  const char *json, size_t len, int64_t now);
/* key = P kind ":" a [":" b], NUL-terminated; OM_ERR_INVALID when it does
 * not fit (cannot happen for input index.c passed). */
int om_index_redis__key(char *key, size_t keysz, const char *kind, const char *a,
                        const char *b);

/* ---- index_redis_admin.c: the admin views (index_admin.h) on Redis,
 * called by index_admin.c after its input checks ---- */
int om_index_redis__admin_counts(struct om_index *ix, struct om_index_admin_counts *out);
int om_index_redis__admin_repos(struct om_index *ix, const struct om_repo_query *q,
                                struct om_repo_row *rows, size_t *n, uint64_t *total);
int om_index_redis__admin_tags(struct om_index *ix, const char *repo, om_tag_sort sort,
                               uint64_t offset, size_t limit, struct om_tag_row *rows, size_t *n,
                               uint64_t *total);
int om_index_redis__admin_digest_tags(struct om_index *ix, const char *repo, const om_digest *d,
                                      char (*out)[OM_TAG_MAX + 1], size_t max, size_t *n);

/* ---- index_redis_open.c ---- */

void om_index_redis__close(struct om_index *base);
int om_index_redis__rebuild(struct om_index *base, size_t *n_manifests, size_t *n_tags);
int om_index_redis__health(struct om_index *base, struct om_index_health *out);
/* Append one tag record to tags.log (the SQLite backend's format: the
 * rebuild reads either). */
int om_index_redis__log_append(struct om_index_redis *ix, const char *repo, const char *tag,
                               const om_digest *d, const char *media_type, uint64_t size,
                               int64_t t);

#endif
