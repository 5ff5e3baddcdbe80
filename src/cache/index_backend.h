/* index_backend.h — what a metadata-index backend implements, and what
 * index.c (the interface) shares with every backend.  Callers use index.h;
 * only index.c and the backends include this file.
 *
 * Shape (as sqlite3_vfs / sqlite3_io_methods): a backend's handle is a
 * struct that embeds struct om_index FIRST, so a struct om_index * is also
 * a pointer to the backend's handle; its first member points at the
 * backend's table of operations, struct om_index_ops.  index.c checks the
 * caller's input (om_index__*_ok below, the same checks for every backend)
 * and then calls ix->ops->X, so a backend receives only input that passed
 * them and keeps the contract written at the top of index.h.
 *
 * Life cycle: om_index_open() (index.c) calls a backend's constructor
 * (om_index_sqlite_open, om_index_redis_open), which fills in base.ops and base.st;
 * om_index_close() calls ops->close, which frees the handle.
 *
 * If you add an operation: add its pointer here (at the end, and bump
 * OM_INDEX_OPS_VERSION), its public function and checks in index.h /
 * index.c, and an implementation in every backend (index_sqlite.c,
 * index_redis.c).  An optional operation may be NULL only when index.c
 * says what happens without it.
 */
#ifndef OM_INDEX_BACKEND_H
#define OM_INDEX_BACKEND_H

#include "cache/index.h"

/* 1: the first table; 2: + blob_size; 3: + health, member. */
#define OM_INDEX_OPS_VERSION 3

/* The largest cached referrers answer (index.h: a larger put is
 * OM_ERR_TOOBIG; a backend refuses to return a larger stored one). */
#define OM_INDEX_REFERRERS_MAX (4u * 1024 * 1024)

/* Every function pointer has the contract of the public function of the
 * same name in index.h, minus the input checks index.c already applied.
 * ix is the backend's own handle (its struct om_index base). */
struct om_index_ops {
    int version;          /* OM_INDEX_OPS_VERSION this table was written for */
    const char *name;     /* "sqlite" */

    int (*tag_get)(struct om_index *ix, const char *repo, const char *tag,
                   struct om_tag_rec *out);
    int (*tag_put)(struct om_index *ix, const char *repo, const char *tag,
                   const om_digest *d, const char *media_type, uint64_t size, int64_t now);
    int (*tag_checked)(struct om_index *ix, const char *repo, const char *tag, int64_t now);
    int (*tags_list)(struct om_index *ix, const char *repo, const char *last, long n,
                     om_index_str_fn fn, void *ud);

    int (*manifest_get)(struct om_index *ix, const om_digest *d, struct om_manifest_rec *out);
    int (*manifest_put)(struct om_index *ix, const char *repo, const om_digest *d,
                        const char *media_type, uint64_t size, const om_digest *children,
                        size_t n_children, int64_t now);
    int (*blob_put)(struct om_index *ix, const char *repo, const om_digest *d, uint64_t size,
                    int64_t now);
    int (*note_pull)(struct om_index *ix, const char *repo, const char *tag,
                     const om_digest *d, int64_t now);
    /* The backend skips (found = false) each note om_index__pull_note_ok
     * refuses, and records the others. */
    int (*note_pulls)(struct om_index *ix, struct om_pull_note *notes, size_t n);

    int (*catalog)(struct om_index *ix, const char *last, long n, om_index_str_fn fn,
                   void *ud);

    int (*route_get)(struct om_index *ix, const char *name, char *upstream_out,
                     size_t upstream_sz, char *canonical_out, size_t canonical_sz);
    int (*route_put)(struct om_index *ix, const char *name, const char *upstream,
                     const char *canonical, int64_t now);
    bool (*negative_get)(struct om_index *ix, const char *name, const char *upstream,
                         int64_t now);
    int (*negative_put)(struct om_index *ix, const char *name, const char *upstream,
                        int64_t until);

    /* *json and *len are NULL / 0 on entry (index.c sets them). */
    int (*referrers_get)(struct om_index *ix, const char *repo, const om_digest *d,
                         char **json, size_t *len, int64_t *fetched_at);
    int (*referrers_put)(struct om_index *ix, const char *repo, const om_digest *d,
                         const char *json, size_t len, int64_t now);

    int (*counts)(struct om_index *ix, struct om_index_counts *out);
    int (*rebuild)(struct om_index *ix, size_t *n_manifests, size_t *n_tags);
    /* Free everything the handle owns, and the handle.  ix is not NULL. */
    void (*close)(struct om_index *ix);

    /* Version 2. */
    int (*blob_size)(struct om_index *ix, const om_digest *d, uint64_t *size);

    /* Version 3.  Optional: NULL = a local backend, always available.
     * index.c zeroes *out and sets backend = ops->name first. */
    int (*health)(struct om_index *ix, struct om_index_health *out);
    /* Version 3.  Required: without it nothing cached could be served by
     * name (index.c answers OM_ERR_NOTFOUND, and every request would ask
     * the upstream). */
    int (*member)(struct om_index *ix, const char *repo, const om_digest *d);
};

/* What every backend shares: embedded first in the backend's handle. */
struct om_index {
    const struct om_index_ops *ops;   /* static table of the backend; never NULL */
    struct om_store *st;              /* borrowed; outlives the index (rebuild reads it) */
};

/* ---- backends ---- */

/* The SQLite backend (index_sqlite_open.c): <store root>/index.db and
 * <store root>/tags.log; the contract of om_index_open in index.h. */
int om_index_sqlite_open(struct om_index **out, struct om_store *st, bool *rebuilt);

/* The Redis backend (index_redis_open.c): the database cfg->cluster_redis
 * names, with <store root>/tags.log kept as the SQLite backend keeps it;
 * the contract of om_index_open_cfg in index.h. */
int om_index_redis_open(struct om_index **out, struct om_store *st, const struct om_config *cfg,
                        bool *rebuilt);

/* ---- input checks (index.c), shared by the interface, the backends and
 * the side connections (index_gc.c, index_fsck.c, index_admin.c) and the
 * tags.log replay ---- */
bool om_index__repo_ok(const char *repo);
bool om_index__tag_ok(const char *tag);
bool om_index__media_type_ok(const char *mt);
bool om_index__digest_ok(const om_digest *d);
/* A note om_index_note_pulls records: a valid digest, and a valid
 * repository when it names a tag. */
bool om_index__pull_note_ok(const struct om_pull_note *pn);

#endif
