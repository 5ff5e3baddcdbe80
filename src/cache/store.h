/* store.h — the content-addressed store: blobs and manifests by digest.
 *
 * One interface, one file per backend (store_backend.h says what every
 * backend guarantees; store.c dispatches):
 *   store_fs.c   files under a local root (storage.backend: fs)
 *   store_s3.c   objects in an S3-compatible bucket (storage.backend: s3),
 *                with the local root as the spool of downloads in progress
 *                (store_s3.h lists its files)
 * Callers must not assume more than this header says, and ask what a
 * backend can do (om_store_caps) instead of which backend it is.
 *
 * Layout of the fs backend under the storage root:
 *   blobs/sha256/<2 hex>/<64 hex>   committed content (blobs and manifests)
 *   ingest/<random>                 downloads in progress
 *   quarantine/<64 hex>             damaged objects moved out of the way
 *                                   (om_store_quarantine), for the operator
 *   index.db                        (owned by the index: cache/index_sqlite_open.c)
 *   tags.log                        (owned by the index: cache/index_sqlite_open.c)
 * Every path is derived from a validated om_digest, never a client string.
 *
 * Commit is atomic: write the ingest file, fsync it, rename into blobs/,
 * fsync the directory.  A committed file is never modified; removal (GC) is
 * unlink, and open fds keep working.  At open, leftover ingest files of a
 * previous run are removed.
 *
 * Thread-safe: all functions may be called from any thread concurrently.
 *
 * If you add a function here, add its operation to struct om_store_ops
 * (store_backend.h) and every backend, or write it once in store.c on top
 * of the existing ones (as om_store_put, om_store_read, om_store_verify).
 */
#ifndef OM_STORE_H
#define OM_STORE_H

#include <sys/types.h>

#include "core/config.h"
#include "core/om.h"
#include "core/ref.h"

struct om_store; /* opaque to callers; store_backend.h for backends */
struct om_store_reader; /* a streamed read (om_store_reader_open) */

/* An ingest file being written. Owned by whoever began it until commit or
 * abort, which free it.  It is always a local file, whatever the backend. */
struct om_ingest {
    int fd;                 /* O_RDWR; writers use write()/pwrite(); readers dup() it */
    char path[4096];
    uint64_t size;          /* bytes written so far (maintained by om_ingest_write) */
    uint64_t synced;        /* bytes handed to writeback so far (om_ingest_write) */
    struct om_store *st;    /* borrowed: the store it was begun on (set by om_ingest_begin) */
    void *priv;             /* the backend's own state of this ingest (NULL for fs);
                               freed by its commit or abort */
};

/* What a backend can do (om_store_caps), asked instead of its name. */
#define OM_STORE_CAN_SENDFILE 0x1u /* open_blob's fd reads the committed object in place */
#define OM_STORE_CAN_PRESIGN 0x2u  /* om_store_presign_get gives a URL clients can follow */

/* Open (creating directories) and clean stale ingest files. *out owned by
 * the caller (om_store_close). */
int om_store_open(struct om_store **out, const char *root);
void om_store_close(struct om_store *st);
/* [added for gc.c, `ocimirror gc`] Open an EXISTING storage root for a tool
 * that may run beside a server: like om_store_open, but it creates nothing
 * and leaves ingest/ alone (the server's downloads live there).
 * OM_ERR_NOTFOUND if <root>/blobs/sha256 does not exist.  *out owned by the
 * caller (om_store_close). */
int om_store_attach(struct om_store **out, const char *root);
/* [added for store_s3.c] The store cfg's storage section names:
 * storage.backend fs → om_store_open / om_store_attach of
 * cfg->storage_path; s3 → the bucket, with cfg->storage_path as the local
 * directory (created like fs's; the owner's lock, the spool, the index).
 * The s3 store lists the bucket at open (what it has, the byte total):
 * OM_ERR_IO when the bucket does not answer.  *out owned by the caller
 * (om_store_close). */
int om_store_open_cfg(struct om_store **out, const struct om_config *cfg);
int om_store_attach_cfg(struct om_store **out, const struct om_config *cfg);
const char *om_store_root(const struct om_store *st);
/* OM_STORE_CAN_* bits of st's backend. */
unsigned om_store_caps(const struct om_store *st);

/* Begin a new ingest file.  *out owned by the caller until
 * om_ingest_commit or om_ingest_abort; st must outlive it. */
int om_ingest_begin(struct om_store *st, struct om_ingest **out);
/* [added for store_s3.c] The same, for content that should commit as d: a
 * backend that uploads while the download runs (s3: the parts of a
 * multipart upload at d's key) needs the key before the last byte.  d is a
 * hint: a commit as another digest is still right (the backend then
 * uploads the spool whole at commit). */
int om_ingest_begin_for(struct om_store *st, const om_digest *d, struct om_ingest **out);
/* Append len bytes (loops over short writes). OM_ERR_NOSPACE on ENOSPC/EDQUOT,
 * OM_ERR_IO otherwise. */
int om_ingest_write(struct om_ingest *in, const void *buf, size_t len);
/* Reserve disk space for a blob of `size` bytes before any is written, so a
 * full disk is found before a client is promised a body (OM_ERR_NOSPACE).
 * OM_OK when the filesystem cannot reserve in advance. */
int om_ingest_reserve(struct om_ingest *in, uint64_t size);
/* Truncate to `size` bytes (used when a resumed download restarts). */
int om_ingest_truncate(struct om_ingest *in, uint64_t size);
/* fsync + rename to blobs/sha256/..; the caller has verified the digest.
 * st is the store the ingest was begun on.
 * If the blob already exists, the ingest file is discarded and OM_OK is
 * returned.  Frees `in` in every case (fd closed). */
int om_ingest_commit(struct om_store *st, struct om_ingest *in, const om_digest *d);
/* Close and unlink; frees `in`. NULL is a no-op. */
void om_ingest_abort(struct om_ingest *in);

/* Write a whole small object (a manifest) verifying its sha256 equals d.
 * OM_ERR_DIGEST on mismatch. */
int om_store_put(struct om_store *st, const om_digest *d, const void *buf, size_t len);

/* Does the blob exist? Sets *size when non-NULL. */
bool om_store_has(struct om_store *st, const om_digest *d, uint64_t *size);

/* Open a committed blob read-only for sendfile. *fd belongs to the caller.
 * OM_ERR_NOTFOUND if absent; OM_ERR_INVALID when the backend has no local
 * files (no OM_STORE_CAN_SENDFILE: use om_store_read_at). */
int om_store_open_blob(struct om_store *st, const om_digest *d, int *fd, uint64_t *size);

/* [added for store_s3.c] What the backend's storage itself says of a
 * committed object, not what this process remembers of it (om_store_has):
 * fs stat(2), s3 a HEAD request.  May block (job threads, tools, never an
 * HTTP thread).  What it learns updates what om_store_has answers.
 * OM_OK, OM_ERR_NOTFOUND, OM_ERR_IO (the storage did not answer). */
struct om_store_stat {
    uint64_t size;
    int64_t mtime_ms;       /* last modification (commit), ms since the epoch */
};
int om_store_stat(struct om_store *st, const om_digest *d, struct om_store_stat *out);

/* Read up to len bytes of a committed blob at offset off into buf; *got is
 * what was read (less than len only at the end of the object).  Every
 * backend.  OM_ERR_NOTFOUND if absent, OM_ERR_IO on a read error. */
int om_store_read_at(struct om_store *st, const om_digest *d, uint64_t off, void *buf,
                     size_t len, size_t *got);

/* A URL that fetches the committed blob without credentials for ttl_s
 * seconds (written NUL-terminated into url).  OM_ERR_INVALID when the
 * backend cannot presign (no OM_STORE_CAN_PRESIGN: ask om_store_caps
 * first), OM_ERR_TOOBIG when urlsz is too small. */
int om_store_presign_get(struct om_store *st, const om_digest *d, unsigned ttl_s, char *url,
                         size_t urlsz);

/* Read a whole blob of at most `max` bytes into a malloc'd buffer (caller
 * frees).  OM_ERR_TOOBIG if larger.  The bytes are hashed: an object that
 * does not hash to d is quarantined (om_store_quarantine) and the read
 * answers OM_ERR_NOTFOUND, so a caller never gets wrong bytes.  The buffer
 * has one extra byte, a NUL at (*buf)[*len], so text can be parsed in place. */
int om_store_read(struct om_store *st, const om_digest *d, size_t max, char **buf, size_t *len);

/* [added for store_s3.c] A streamed read of [off, off + len) of a
 * committed object (len 0 = to its end), for serving it without blocking
 * the caller: the backend's own I/O fills a bounded buffer.
 *   om_store_reader_open  starts it; *out is set before ready(ud) can be
 *                         called, once, from any thread (the backend's,
 *                         or this one before open returns) when the first
 *                         answer is known.  An error return means ready
 *                         is never called.  *out owned by the caller
 *                         (om_store_reader_close, also before ready).
 *   om_store_reader_result  after ready: OM_OK (bytes will come),
 *                         OM_ERR_NOTFOUND (gone), OM_ERR_IO.
 *   om_store_reader_read  copies up to max bytes: > 0 bytes copied;
 *                         OM_STORE_READ_WAIT: nothing yet, suspend(ud) was
 *                         called and wake(ud) will be, once (both under the
 *                         reader's lock, so a wake-up is never lost);
 *                         OM_STORE_READ_EOF after the last byte;
 *                         OM_STORE_READ_FAILED (the object broke off).
 *                         One reading thread at a time.
 * A backend without streamed reads of its own gets one over read_at that
 * reads in the caller's thread (fine for local files).
 * Memory: a reader holds at most OM_STORE_READER_BUF bytes. */
typedef void (*om_store_cb)(void *ud);
#define OM_STORE_READ_WAIT 0
#define OM_STORE_READ_EOF (-1)
#define OM_STORE_READ_FAILED (-2)
#define OM_STORE_READER_BUF (512u * 1024)
int om_store_reader_open(struct om_store *st, const om_digest *d, uint64_t off, uint64_t len,
                         om_store_cb ready, void *ud, struct om_store_reader **out);
int om_store_reader_result(struct om_store_reader *r);
ssize_t om_store_reader_read(struct om_store_reader *r, void *buf, size_t max,
                             om_store_cb suspend, om_store_cb wake, void *ud);
void om_store_reader_close(struct om_store_reader *r);

/* [added for store_s3.c] Uploads of downloads that never finished, kept by
 * the backend's storage rather than in the local ingest directory (s3:
 * multipart uploads under the prefix): abort those started more than
 * older_than_ms ago whose last part is as old, except this process's own.
 * *aborted (may be NULL) how many (with dry_run: would be).  OM_OK with
 * nothing to do for a backend without such uploads. */
int om_store_clean_stale(struct om_store *st, uint64_t older_than_ms, bool dry_run,
                         uint64_t *aborted);

/* Remove a committed blob (GC). OM_ERR_NOTFOUND if absent. */
int om_store_remove(struct om_store *st, const om_digest *d);

/* Move a damaged committed object out of the store, where nothing serves
 * it and an operator can look at it (fs: <root>/quarantine/<64 hex>,
 * replacing an older quarantined copy of the same digest, so the
 * quarantine holds at most one file per digest; the store never deletes
 * it).  Only while the object's size is still `if_size`, the wrong size
 * the caller saw: a good copy committed since stays where it is
 * (OM_STORE_ANY_SIZE moves whatever is there).  OM_OK when moved: the byte
 * total no longer counts it (the owner recounts the store then, since a
 * file that changed size on disk was counted at its old size);
 * OM_ERR_NOTFOUND when absent or no longer of that size; OM_ERR_IO.  A
 * backend without quarantine removes the object instead (logged).
 * Readers that opened the object before keep reading it. */
#define OM_STORE_ANY_SIZE UINT64_MAX
int om_store_quarantine(struct om_store *st, const om_digest *d, uint64_t if_size);
/* Objects st quarantined (or removed for want of a quarantine) since it
 * was opened. */
uint64_t om_store_quarantined(struct om_store *st);

/* Call fn for every committed blob (in no particular order); stop early
 * when fn returns non-zero and return that value.  Files under blobs/ whose
 * names are not valid digests (in the matching fan-out directory) are
 * skipped.  OM_ERR_IO if blobs/sha256 cannot be read. */
typedef int (*om_store_walk_fn)(void *ud, const om_digest *d, uint64_t size);
int om_store_walk(struct om_store *st, om_store_walk_fn fn, void *ud);

/* Recompute the sha256 of a committed blob: OM_OK, OM_ERR_DIGEST, OM_ERR_IO,
 * OM_ERR_NOTFOUND if absent. */
int om_store_verify(struct om_store *st, const om_digest *d);

/* Bytes used by committed blobs (kept as a running total; s3: what the
 * process knows is in the bucket, recomputed by the listing at open and
 * reconciled by every complete walk). */
uint64_t om_store_bytes(struct om_store *st);

#endif
