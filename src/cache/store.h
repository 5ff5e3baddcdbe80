/* store.h — the content-addressed store: blobs and manifests by digest.
 *
 * One interface, one file per backend (store_backend.h says what every
 * backend guarantees; store.c dispatches):
 *   store_fs.c   files under a local root — the only backend today
 *   store_s3.c   (planned) an S3-compatible bucket, same interface
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

#include "core/om.h"
#include "core/ref.h"

struct om_store; /* opaque to callers; store_backend.h for backends */

/* An ingest file being written. Owned by whoever began it until commit or
 * abort, which free it.  It is always a local file, whatever the backend. */
struct om_ingest {
    int fd;                 /* O_RDWR; writers use write()/pwrite(); readers dup() it */
    char path[4096];
    uint64_t size;          /* bytes written so far (maintained by om_ingest_write) */
    uint64_t synced;        /* bytes handed to writeback so far (om_ingest_write) */
    struct om_store *st;    /* borrowed: the store it was begun on (set by om_ingest_begin) */
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
const char *om_store_root(const struct om_store *st);
/* OM_STORE_CAN_* bits of st's backend. */
unsigned om_store_caps(const struct om_store *st);

/* Begin a new ingest file.  *out owned by the caller until
 * om_ingest_commit or om_ingest_abort; st must outlive it. */
int om_ingest_begin(struct om_store *st, struct om_ingest **out);
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
 * frees).  OM_ERR_TOOBIG if larger. Does not verify the digest.  The buffer
 * has one extra byte, a NUL at (*buf)[*len], so text can be parsed in place. */
int om_store_read(struct om_store *st, const om_digest *d, size_t max, char **buf, size_t *len);

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

/* Bytes used by committed blobs (kept as a running total). */
uint64_t om_store_bytes(struct om_store *st);

#endif
