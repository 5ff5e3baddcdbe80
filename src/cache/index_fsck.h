/* index_fsck.h — the index queries `ocimirror fsck` needs: list what the
 * index records (tags, manifests, blobs) so it can be checked against the
 * store, and drop rows that point at content the store no longer holds.
 *
 * Unlike index.h this is a connection of its own to <root>/index.db, not
 * the server's struct om_index: fsck is a separate process that may run
 * next to a live server, and it must not create, rebuild or move aside an
 * index it was only asked to check.  SQLite's WAL mode lets both processes
 * use the file at once (busy_timeout 5 s for the short write transactions).
 *
 * Not thread-safe: one thread uses one handle.  Implemented in index_fsck.c.
 */
#ifndef OM_INDEX_FSCK_H
#define OM_INDEX_FSCK_H

#include "core/om.h"
#include "core/ref.h"

struct om_index_fsck;

/* Open <root>/index.db read-write without creating it, run PRAGMA
 * quick_check and prepare the queries (which checks the schema).
 * Errors: OM_ERR_NOTFOUND (no index.db, or an empty one that was never
 * given a schema), OM_ERR_DIGEST (quick_check failed, or not a database:
 * "corrupt"; *why says what), OM_ERR_INVALID (a schema these queries do not
 * understand), OM_ERR_IO/OM_ERR_TIMEOUT otherwise.  why (may be NULL)
 * receives a one-line reason on error.  *out owned by the caller. */
int om_index_fsck_open(struct om_index_fsck **out, const char *root, char *why, size_t whysz);
void om_index_fsck_close(struct om_index_fsck *x);

struct om_index_fsck_counts {
    uint64_t tags, manifests, blobs;
};
int om_index_fsck_counts(struct om_index_fsck *x, struct om_index_fsck_counts *out);

/* Is d recorded as a blob or as a manifest?  *size (may be NULL) is the
 * size recorded for it then. */
int om_index_fsck_known(struct om_index_fsck *x, const om_digest *d, bool *known,
                        uint64_t *size);

/* Every row of a table, in one consistent snapshot (one SELECT).  fn
 * returns non-zero to stop, and that value is returned; fn must not call
 * this handle.  Rows whose digest does not parse are skipped (counted in
 * *skipped when non-NULL): index.c never writes one. */
typedef int (*om_index_fsck_tag_fn)(void *ud, const char *repo, const char *tag,
                                    const om_digest *d);
typedef int (*om_index_fsck_digest_fn)(void *ud, const om_digest *d);
int om_index_fsck_tags(struct om_index_fsck *x, om_index_fsck_tag_fn fn, void *ud,
                       uint64_t *skipped);
int om_index_fsck_manifests(struct om_index_fsck *x, om_index_fsck_digest_fn fn, void *ud,
                            uint64_t *skipped);
int om_index_fsck_blobs(struct om_index_fsck *x, om_index_fsck_digest_fn fn, void *ud,
                        uint64_t *skipped);

/* Repairs, each inside the caller's write transaction (begin ... commit;
 * rollback on error).  Keep transactions short: the server's writers wait
 * for them.  *dropped (may be NULL) says whether a row went away. */
int om_index_fsck_begin(struct om_index_fsck *x);
int om_index_fsck_commit(struct om_index_fsck *x);
void om_index_fsck_rollback(struct om_index_fsck *x);
/* The tag, only while it still points at d (the server may have moved it
 * to new content meanwhile). */
int om_index_fsck_drop_tag(struct om_index_fsck *x, const char *repo, const char *tag,
                           const om_digest *d, bool *dropped);
/* The manifest row, its repository memberships and its child list. */
int om_index_fsck_drop_manifest(struct om_index_fsck *x, const om_digest *d, bool *dropped);
/* The blob row and its repository memberships. */
int om_index_fsck_drop_blob(struct om_index_fsck *x, const om_digest *d, bool *dropped);

#endif
