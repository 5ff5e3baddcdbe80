/* store_backend.h — what a content-store backend implements (for backend
 * authors and for store.c; callers use store.h only).
 *
 * A store is a struct whose first member is `struct om_store`, which points
 * at the backend's `struct om_store_ops` (the SQLite sqlite3_vfs /
 * sqlite3_io_methods pattern).  store.c turns every public om_store_* and
 * om_ingest_* call into a call through st->ops (or in->st->ops); the
 * operations that need no backend of their own (om_store_put, om_store_read,
 * om_store_verify) are written once in store.c on top of the others.
 *
 * Backends:
 *   store_fs.c   files under a local root
 *   store_s3.c   objects in an S3-compatible bucket (store_s3.h)
 * and what they share: store_ingest.c, the local ingest file.
 * A backend is chosen at start by store.c (om_store_open / om_store_attach).
 * A wrapper backend (one that forwards to another store's ops, e.g. to inject
 * faults in tests) is a backend like any other.
 *
 * Every backend guarantees, and callers rely on nothing more:
 *   - Atomic commit: an object is either absent or complete, with the digest
 *     the caller verified; it is never visible half written.  Two commits of
 *     one digest race safely: one places it, the other drops its ingest and
 *     also returns OM_OK, and the object's bytes are counted once.
 *   - "Exists" (has, open_blob, walk) means committed; ingests in progress
 *     are never visible through them.  A committed object is never modified.
 *   - remove makes an object absent for new lookups; a reader that already
 *     opened it reads it to the end (GC relies on that).  quarantine (when
 *     offered) does the same by moving the object where no lookup or walk
 *     sees it, and only while its size is the one the caller names: a
 *     check and a move that no commit of a good copy can slip between.
 *   - An ingest is a local file: in->fd is O_RDWR and readers may dup() it
 *     and read while it grows (fetch.c does).  A remote backend spools
 *     locally and uploads at commit.
 *   - Digests are re-validated (om_digest_parse) before they name anything:
 *     a damaged om_digest is OM_ERR_INVALID (false for has), never a path or
 *     a key.
 *   - Errors: OM_ERR_NOSPACE (full), OM_ERR_NOTFOUND (absent), OM_ERR_IO
 *     (anything else of the system), each logged once where it happens.
 *   - Thread safety: every operation may be called from any thread at once,
 *     except that one ingest has one user at a time and close comes after
 *     every other call on the store (and after every ingest of it ended).
 *
 * If you add an operation: append it to struct om_store_ops (after a
 * version bump if it is optional, so old tables stay valid), implement it in
 * every backend (or leave it NULL and give it a capability bit in store.h),
 * and add its dispatcher in store.c.
 */
#ifndef OM_STORE_BACKEND_H
#define OM_STORE_BACKEND_H

#include <stdatomic.h>

#include "cache/store.h"
#include "core/om.h"
#include "core/ref.h"

/* 1: the first table; 2: + quarantine; 3: + stat, reader_open,
 * clean_stale. */
#define OM_STORE_OPS_VERSION 3

/* The head of every store.  A backend's struct starts with it; ops is set
 * once at open and never changes. */
struct om_store {
    const struct om_store_ops *ops; /* borrowed: a static table of the backend */
    _Atomic uint64_t quarantined;   /* store.c's count of om_store_quarantine moves */
};

/* Each operation has the contract of the public function of the same name
 * in store.h, with the NULL checks done by store.c: st and in are never NULL
 * here.  The dispatcher owns in->st (it sets it after ingest_begin):
 * backend operations find their own state through st or their own fields
 * of the ingest, never through in->st, so a wrapper can sit in front. */
struct om_store_ops {
    int version;      /* OM_STORE_OPS_VERSION the table was written for */
    const char *name; /* "fs", "s3": for logs and tests */
    unsigned caps;    /* OM_STORE_CAN_* (store.h) */

    /* Flush what the backend keeps for the next open and free st. */
    void (*close)(struct om_store *st);
    /* The local directory the store was opened on (index.db and tags.log
     * live there, whatever the backend).  Owned by st. */
    const char *(*root)(const struct om_store *st);

    int (*ingest_begin)(struct om_store *st, struct om_ingest **out);
    int (*ingest_write)(struct om_ingest *in, const void *buf, size_t len);
    int (*ingest_reserve)(struct om_ingest *in, uint64_t size);
    int (*ingest_truncate)(struct om_ingest *in, uint64_t size);
    /* Frees `in` in every case, like om_ingest_commit. */
    int (*ingest_commit)(struct om_store *st, struct om_ingest *in, const om_digest *d);
    /* Frees `in`. */
    void (*ingest_abort)(struct om_ingest *in);

    bool (*has)(struct om_store *st, const om_digest *d, uint64_t *size);
    /* *fd belongs to the caller.  NULL when the backend's objects are not
     * local files (no OM_STORE_CAN_SENDFILE): callers then read_at. */
    int (*open_blob)(struct om_store *st, const om_digest *d, int *fd, uint64_t *size);
    /* Every backend: a ranged read of a committed object (fs: pread; an
     * object store: a ranged GET). */
    int (*read_at)(struct om_store *st, const om_digest *d, uint64_t off, void *buf, size_t len,
                   size_t *got);
    int (*remove)(struct om_store *st, const om_digest *d);
    int (*walk)(struct om_store *st, om_store_walk_fn fn, void *ud);
    uint64_t (*bytes)(struct om_store *st);

    /* Optional (NULL = not offered). */
    /* A whole small object in one request; NULL: store.c writes it through
     * ingest_begin/write/commit.  The digest is verified by store.c. */
    int (*put)(struct om_store *st, const om_digest *d, const void *buf, size_t len);
    /* A URL that GETs the committed object without credentials until
     * ttl_s from now (OM_STORE_CAN_PRESIGN). */
    int (*presign_get)(struct om_store *st, const om_digest *d, unsigned ttl_s, char *url,
                       size_t urlsz);

    /* Version 2, optional (NULL, or a version-1 table: store.c removes the
     * object instead).  Move the object aside while its size is if_size
     * (OM_STORE_ANY_SIZE: whatever its size), and stop counting it in
     * bytes; the backend keeps quarantined objects where has, open_blob
     * and walk never see them. */
    int (*quarantine)(struct om_store *st, const om_digest *d, uint64_t if_size);

    /* Version 3, optional.  stat: NULL = has() (a backend whose has is
     * already its storage's answer).  reader_open: NULL = store.c's reader
     * over read_at in the caller's thread.  clean_stale: NULL = nothing
     * to clean.  Contracts: store.h's functions of the same names. */
    int (*stat)(struct om_store *st, const om_digest *d, struct om_store_stat *out);
    int (*reader_open)(struct om_store *st, const om_digest *d, uint64_t off, uint64_t len,
                       om_store_cb ready, void *ud, struct om_store_reader **out);
    int (*clean_stale)(struct om_store *st, uint64_t older_than_ms, bool dry_run,
                       uint64_t *aborted);
    /* NULL = ingest_begin (the digest is of no use to the backend). */
    int (*ingest_begin_for)(struct om_store *st, const om_digest *d, struct om_ingest **out);
};

/* A streamed read: a backend's reader starts with this head.  Contracts:
 * om_store_reader_result / _read / _close in store.h. */
struct om_store_reader_ops {
    int (*result)(struct om_store_reader *r);
    ssize_t (*read)(struct om_store_reader *r, void *buf, size_t max, om_store_cb suspend,
                    om_store_cb wake, void *ud);
    void (*close)(struct om_store_reader *r);
};
struct om_store_reader {
    const struct om_store_reader_ops *ops; /* borrowed: a static table */
};

/* ---- for every backend: the ingest file (store_ingest.c) -------------- */

/* ENOSPC/EDQUOT → OM_ERR_NOSPACE, any other errno → OM_ERR_IO: the one
 * errno translation of the store. */
int om_store_sys_err(int e);


/* Create a fresh ingest file in the existing directory `dir` (a backend's
 * spool).  *out owned by the caller (om_ingest_file_free, usually through
 * the backend's commit or abort); its st is left NULL for the dispatcher. */
int om_ingest_file_begin(struct om_ingest **out, const char *dir);
/* The ingest_write, ingest_reserve and ingest_truncate operations, as
 * om_ingest_write / om_ingest_reserve / om_ingest_truncate describe them;
 * a backend may put them in its table as they are. */
int om_ingest_file_write(struct om_ingest *in, const void *buf, size_t len);
int om_ingest_file_reserve(struct om_ingest *in, uint64_t size);
int om_ingest_file_truncate(struct om_ingest *in, uint64_t size);
/* Close, unlink when unlink_file (not after a commit moved its name away),
 * free `in`.  NULL is a no-op. */
void om_ingest_file_free(struct om_ingest *in, bool unlink_file);

/* ---- the backends (chosen by store.c) ---------------------------------- */

/* store_fs.c: a store of files under `root`.  attach=false is
 * om_store_open (create the layout, empty ingest/, own the root);
 * attach=true is om_store_attach (an existing root, beside its owner).
 * *out owned by the caller (om_store_close). */
int om_store_fs_open(struct om_store **out, const char *root, bool attach);
/* store_s3.c: the bucket cfg->storage_s3 names, with cfg->storage_path as
 * the local directory; attach as for fs.  *out owned by the caller. */
int om_store_s3_open(struct om_store **out, const struct om_config *cfg, bool attach);

#endif
