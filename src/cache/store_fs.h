/* store_fs.h — the filesystem backend's handle, shared by its two files
 * and nothing else:
 *   store_fs.c       layout, open/close, ingest, reads, remove, quarantine,
 *                    walk and the ops table
 *   store_fs_meta.c  what the backend keeps beside the objects: the owner's
 *                    lock, the size record and the dirty mark, and the byte
 *                    total (adjustments and the recount)
 *   store_fs_sync.c  durability off the request path: the journal of
 *                    objects committed but not yet durable, the thread that
 *                    syncs them, the check after an unclean shutdown
 * Callers use store.h; store.c reaches the backend through
 * om_store_fs_open (store_backend.h) and the ops table.
 */
#ifndef OM_STORE_FS_H
#define OM_STORE_FS_H

#include <pthread.h>
#include <stdatomic.h>

#include "cache/store_backend.h"

#define STORE_PATH_MAX 4096              /* == sizeof(struct om_ingest.path) */

/* An fs store: the head every store starts with, then the backend's own. */
struct om_store_fs {
    struct om_store base;       /* first: base.ops == &fs_ops (store_fs.c) */
    char *root;                 /* owned; strdup of the caller's root */
    pthread_mutex_t mu;         /* the rename fallback without NOREPLACE; quarantine */
    pthread_mutex_t count_mu;   /* guards changes; adjustments of bytes under it */
    pthread_mutex_t recount_mu; /* one recount at a time */
    uint64_t changes;           /* adjustments of bytes so far */
    _Atomic uint64_t bytes;     /* sum of sizes of committed blobs */
    bool attached;              /* om_store_attach: a tool beside the owner */
    int lock_fd;                /* owner: LOCK_FILE, flock()ed; -1 when attached */
    bool record_at_close;       /* owner, fully opened: write SIZE_RECORD at close */
    atomic_bool marked_dirty;   /* attached and removed a blob: DIRTY_MARK made */
    struct om_store_fs_sync *sync; /* owner only: store_fs_sync.c; NULL when attached */
};

/* One owner per storage root.  Two servers on one directory would each
 * remove the other's downloads as stale ingest files and fail to commit, so
 * the owner holds an exclusive flock(2) on LOCK_FILE for as long as the
 * store is open, with its PID written in the file for the message the next
 * one gets.  The kernel drops the lock when the process dies (kill -9
 * included): a stale file never blocks a restart.  Tools (attach) take no
 * lock: gc and fsck work beside the owner. */
#define LOCK_FILE "lock"
/* The byte total survives a clean shutdown in SIZE_RECORD, so start-up
 * need not stat every blob (a walk of 110,000 blobs took ~0.25 s, and it
 * grows with the store).  The owner consumes the record at open (reads it,
 * then unlinks it durably) and writes it at close: after a crash there is
 * no record and the store is walked.  A tool attached beside the owner
 * (gc, fsck) that removes blobs leaves DIRTY_MARK, since the owner's total
 * no longer matches: the next open walks, whatever the record says. */
#define SIZE_RECORD "store.size"
#define SIZE_RECORD_TMP "store.size.tmp"
#define SIZE_RECORD_FMT "ocimirror store size v1 %llu\n"
#define DIRTY_MARK "store.dirty"
#define QUARANTINE_DIR "quarantine"

/* ---- store_fs.c ---- */

/* "<root>/<rel>" into out; OM_ERR_TOOBIG if it does not fit. */
int om_store_fs__root_path(const struct om_store_fs *st, const char *rel, char *out,
                           size_t outsz);
/* Make a directory entry durable (logged on failure). */
int om_store_fs__fsync_dir(const char *path);
/* The walk operation (fs_ops.walk). */
int om_store_fs__walk(struct om_store *base, om_store_walk_fn fn, void *ud);

/* ---- store_fs_meta.c ---- */

/* Take LOCK_FILE for the owner (OM_ERR_DENIED: another owner has it). */
int om_store_fs__take_lock(struct om_store_fs *st);
/* Read and durably remove SIZE_RECORD and DIRTY_MARK.  true with *total
 * when a valid record was there and no dirty mark. */
bool om_store_fs__consume_record(struct om_store_fs *st, uint64_t *total);
/* Write SIZE_RECORD at the owner's close; failures only cost a walk. */
void om_store_fs__write_record(struct om_store_fs *st);
/* om_store_walk_fn adding each size to *(uint64_t *)ud. */
int om_store_fs__sum_bytes(void *ud, const om_digest *d, uint64_t size);
/* Adjust the byte total by delta, counting the change (for the recount). */
void om_store_fs__count_add(struct om_store_fs *st, int64_t delta);
/* Leave DIRTY_MARK (once per open) so the next open walks. */
void om_store_fs__mark_dirty(struct om_store_fs *st);
/* Walk the store and make its sum the byte total (see store_fs_meta.c). */
void om_store_fs__recount(struct om_store_fs *st);

/* ---- store_fs_sync.c ---- */

/* The owner's open: re-check what an unclean shutdown left in the journal
 * (damaged objects removed), then start the journal afresh and the thread
 * that makes commits durable.  Sets st->sync. */
int om_store_fs__sync_open(struct om_store_fs *st);
/* Before a commit's rename: d in the journal, durably (a group fdatasync).
 * OM_OK without doing anything when attached. */
int om_store_fs__journal(struct om_store_fs *st, const om_digest *d);
/* Objects committed and not yet durable. */
size_t om_store_fs__unsynced(struct om_store_fs *st);
/* Stop the thread, sync everything, empty the journal (a clean close).
 * NULL st->sync is a no-op. */
void om_store_fs__sync_close(struct om_store_fs *st);

#endif
