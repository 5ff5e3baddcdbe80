/* index.h — the metadata index: what the cache knows about the content the
 * store holds.  One interface (this file, index.c), two backends behind it:
 * SQLite in WAL mode at <storage>/index.db (index_sqlite*.c), for a replica
 * alone, and Redis (index_redis*.c), one index for a whole cluster of
 * replicas (cluster.redis set); index_backend.h is the interface a backend
 * implements.
 *
 * What it holds (the store holds the bytes):
 *   repos      canonical repository names seen (the _catalog)
 *   tags       (repo, tag) → digest, media type, size, fetched_at, checked_at,
 *              last_pulled, pull_count
 *   manifests  digest → media type, size; (repo, digest) membership;
 *              manifest → child digests (config, layers, platform manifests)
 *   blobs      digest → size, last access; (repo, digest) membership
 *   membership "does repository R hold digest d": a manifest or blob
 *              recorded for R, or a child or grandchild of a manifest
 *              recorded for R (om_index_member; what the pull path asks
 *              before it serves cached content under a name)
 *   routes     requested name → chosen upstream + canonical name (search
 *              decisions) and negative entries (name, upstream) until a time
 *   referrers  (repo, digest) → cached referrers index JSON + fetched_at
 *
 * Shared and per process.  Everything above is SHARED metadata: once the
 * index lives in Redis, every replica of a cluster reads and writes one copy
 * of it — tag records with their check times, repository membership of
 * manifests and blobs, manifest → children, access times, pull counters,
 * bytes used (om_index_counts), route decisions, negative-cache entries and
 * cached referrers.  These stay PER PROCESS and never go into the index:
 * the manifest memory cache (cache/mcache, with its memory of memberships
 * known to be true: a replica that did not see a membership being recorded
 * asks om_index_member once), the route memory cache in front
 * of the index (v2/v2_resolve.c), the pull-statistics batch (cache/pullstats)
 * until it is flushed through om_index_note_pulls, the in-flight download
 * and manifest tables, and the admin's request statistics.
 *
 * The contract every backend keeps:
 *   - Thread-safe: any thread may call any function at any time; every call
 *     is short (om_index_rebuild excepted: others wait while it runs).  A
 *     callback (om_index_str_fn) runs inside the call and must not call the
 *     index.
 *   - Input is checked in index.c, once, before the backend sees it: a bad
 *     name, tag, digest, media type or size is OM_ERR_INVALID whatever the
 *     backend (om_index_note_pulls: a bad note is skipped, found = false).
 *   - OM_ERR_NOTFOUND means exactly "the index holds no such record" (no
 *     such repository, tag, manifest, pulled content, route decision or
 *     referrers entry), never "could not ask".  Failing to reach or read
 *     the data is OM_ERR_IO, OM_ERR_TIMEOUT (busy), OM_ERR_NOSPACE or
 *     OM_ERR_NOMEM, or OM_ERR_UNAVAILABLE: a shared backend (Redis) that
 *     cannot be reached now — the call failed fast, without waiting, and
 *     the backend reconnects by itself (om_index_health says when).  A
 *     caller treats it as "the index cannot say": serve what the store and
 *     the memory caches have, skip the bookkeeping.  om_index_negative_get
 *     answers false then.  A caller's buffer too small is OM_ERR_TOOBIG.
 *   - Times are Unix milliseconds, supplied by the caller (rebuild reads the
 *     clock).  Names compare in byte order (what the distribution spec
 *     means by "lexical").
 *   - Strings returned in structs are copied into the caller's fixed
 *     buffers: nothing returned needs freeing except the referrers JSON
 *     (*json, the caller frees it).  Pointers passed in are only borrowed
 *     for the call (om_index_open's store excepted: it must outlive the
 *     index).
 *   - Every tag change is recorded so that the index can be rebuilt from
 *     the content (SQLite: <storage>/tags.log, one JSON object a line;
 *     manifests are found by parsing stored blobs, tags by replaying the
 *     log).  om_index_open() checks the database (SQLite: PRAGMA
 *     quick_check); an unusable one is moved aside (index.db.corrupt-<time>)
 *     and rebuilt, with a warning in the log.  Redis: a Redis without an
 *     index (om:meta) beside a store with content is rebuilt from the
 *     store and this replica's tags.log; one of another schema version is
 *     refused, never overwritten.
 *
 * If you add a query: add it here, to struct om_index_ops and its dispatch
 * with the input checks in index.c, to the SQLite backend (index_sqlite.c)
 * and to the Redis backend (index_redis.c; its keys: index_redis.h), and a
 * case to tests/unit/cache/test_index_redis.c's table (both backends).
 */
#ifndef OM_INDEX_H
#define OM_INDEX_H

#include "cache/store.h"
#include "core/om.h"
#include "core/ref.h"

struct om_index;

#define OM_MEDIA_TYPE_MAX 255

struct om_tag_rec {
    om_digest digest;
    char media_type[OM_MEDIA_TYPE_MAX + 1];
    uint64_t size;
    int64_t fetched_at;   /* when this digest was stored for the tag */
    int64_t checked_at;   /* last time the upstream confirmed it (or fetched_at) */
};

struct om_manifest_rec {
    char media_type[OM_MEDIA_TYPE_MAX + 1];
    uint64_t size;
};

/* Open or create the SQLite backend at <storage>/index.db; rebuild from the
 * store when missing or corrupt (*rebuilt set to true then, may be NULL).
 * st is borrowed and must outlive the index.  *out owned by the caller
 * (om_index_close, which accepts NULL). */
int om_index_open(struct om_index **out, struct om_store *st, bool *rebuilt);
/* The backend the configuration asks for: Redis when cfg->cluster_redis is
 * set (an unreachable Redis does not fail the open: the index starts
 * unavailable and reconnects by itself; a refused password or database
 * does), else SQLite exactly as om_index_open.  cfg is borrowed for the
 * call. */
struct om_config;
int om_index_open_cfg(struct om_index **out, struct om_store *st, const struct om_config *cfg,
                      bool *rebuilt);
void om_index_close(struct om_index *ix);

/* Is the index reachable now, and since when (for the log, /healthz and
 * /metrics)?  Never blocks.  A local backend is always available. */
struct om_index_health {
    const char *backend;      /* "sqlite", "redis" (static) */
    bool shared;              /* one index for a cluster */
    bool available;
    int64_t since_ms;         /* last change of `available` (0: never changed) */
    uint64_t outages;         /* times it became unavailable */
    char last_error[160];     /* "" = none */
    char where[280];          /* what it talks to ("host:port/db"; the path) */
};
void om_index_health(struct om_index *ix, struct om_index_health *out);

/* Drop the database and rebuild from the store + tags.log (also used by
 * om_index_open).  Sets *n_manifests and *n_tags when non-NULL.  One
 * transaction: on failure the old content stays.  Every other call waits
 * while it runs (it reads every stored object of at most 4 MiB). */
int om_index_rebuild(struct om_index *ix, size_t *n_manifests, size_t *n_tags);

/* ---- tags ---- */
int om_index_tag_get(struct om_index *ix, const char *repo, const char *tag,
                     struct om_tag_rec *out);            /* OM_ERR_NOTFOUND */
/* Insert or replace; sets fetched_at = checked_at = now; appends tags.log. */
int om_index_tag_put(struct om_index *ix, const char *repo, const char *tag,
                     const om_digest *d, const char *media_type, uint64_t size,
                     int64_t now);
/* The upstream confirmed the same digest: checked_at = now. */
int om_index_tag_checked(struct om_index *ix, const char *repo, const char *tag, int64_t now);
/* Tags of repo in lexical (byte) order, strictly after `last` (NULL = from
 * the start), at most n (n < 0 = no limit).  fn returns non-zero to stop,
 * and that value is returned.  OM_ERR_NOTFOUND when the repository is not
 * known at all (a known repository without tags lists nothing and returns
 * OM_OK).  fn runs under the index mutex: it must not call the index. */
typedef int (*om_index_str_fn)(void *ud, const char *s);
int om_index_tags_list(struct om_index *ix, const char *repo, const char *last,
                       long n, om_index_str_fn fn, void *ud);

/* ---- manifests ---- */
int om_index_manifest_get(struct om_index *ix, const om_digest *d,
                          struct om_manifest_rec *out);  /* OM_ERR_NOTFOUND */
/* Record a stored manifest, that it belongs to repo (may be NULL: no
 * membership), and its children. */
int om_index_manifest_put(struct om_index *ix, const char *repo, const om_digest *d,
                          const char *media_type, uint64_t size,
                          const om_digest *children, size_t n_children, int64_t now);

/* ---- blobs ---- */
int om_index_blob_put(struct om_index *ix, const char *repo, const om_digest *d,
                      uint64_t size, int64_t now);
/* The size the content of d must have, as recorded when it was stored (a
 * blob's verified length, a manifest's byte count; after a rebuild, what
 * the manifests that reference it say): for checking a stored file before
 * it is served.  OM_ERR_NOTFOUND when the index records d as neither. */
int om_index_blob_size(struct om_index *ix, const om_digest *d, uint64_t *size);
/* ---- repository membership ---- */
/* Does repository repo hold d, as far as the index knows?  Yes (OM_OK)
 * when d is a manifest recorded for repo (om_index_manifest_put with
 * repo), a blob recorded for it (om_index_blob_put with repo), or a child
 * or grandchild of a manifest recorded for it (an index's platform
 * manifests; a manifest's config and layers, also below an index).  No:
 * OM_ERR_NOTFOUND.  The pull path serves cached content under a name only
 * when the name's canonical repository holds it (v2/v2_member.c). */
int om_index_member(struct om_index *ix, const char *repo, const om_digest *d);

/* A client pulled this content (manifest or blob): last access + pull count.
 * tag may be NULL (repo is only used with a tag).  OM_ERR_NOTFOUND when the
 * digest is neither a known manifest nor a known blob. */
int om_index_note_pull(struct om_index *ix, const char *repo, const char *tag,
                       const om_digest *d, int64_t now);

/* Many pull notes in one transaction (the pull statistics are batched in
 * memory and flushed every few seconds: one write per flush, not one per
 * request).  Sets notes[i].found when the digest is a known manifest or
 * blob. */
struct om_pull_note {
    char repo[OM_NAME_MAX + 1];   /* with tag */
    char tag[OM_TAG_MAX + 1];     /* "" = pulled by digest */
    om_digest digest;
    int64_t t_ms;                 /* latest pull */
    uint32_t count;
    bool found;
};
int om_index_note_pulls(struct om_index *ix, struct om_pull_note *notes, size_t n);

/* ---- catalog ---- */
/* Repository names, paged and called back exactly like om_index_tags_list. */
int om_index_catalog(struct om_index *ix, const char *last, long n,
                     om_index_str_fn fn, void *ud);

/* ---- route decisions ---- */
/* canonical_out receives the canonical name; upstream_out the upstream name.
 * OM_ERR_NOTFOUND if no decision is cached; OM_ERR_TOOBIG if a buffer is
 * too small. */
int om_index_route_get(struct om_index *ix, const char *name, char *upstream_out,
                       size_t upstream_sz, char *canonical_out, size_t canonical_sz);
int om_index_route_put(struct om_index *ix, const char *name, const char *upstream,
                       const char *canonical, int64_t now);
/* Negative cache: "name is not on upstream" until `until` (exclusive: at
 * now >= until the entry has expired and is deleted). */
bool om_index_negative_get(struct om_index *ix, const char *name, const char *upstream,
                           int64_t now);
int om_index_negative_put(struct om_index *ix, const char *name, const char *upstream,
                          int64_t until);

/* ---- referrers ---- */
/* *json malloc'd, caller frees (NUL-terminated, the NUL not counted in
 * *len).  fetched_at may be NULL.  At most 4 MiB: a larger put is
 * OM_ERR_TOOBIG. */
int om_index_referrers_get(struct om_index *ix, const char *repo, const om_digest *d,
                           char **json, size_t *len, int64_t *fetched_at);
int om_index_referrers_put(struct om_index *ix, const char *repo, const om_digest *d,
                           const char *json, size_t len, int64_t now);

/* ---- counts (for logs, admin API later) ---- */
struct om_index_counts {
    uint64_t repos, tags, manifests, blobs, blob_bytes;
};
int om_index_counts(struct om_index *ix, struct om_index_counts *out);

#endif
