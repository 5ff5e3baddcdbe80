/* store.c — the content store's front: one dispatcher per public function
 * of store.h, and the operations written once for every backend.
 *
 * A public call becomes st->ops->X(st, ...) (store_backend.h); an ingest
 * call goes through in->st, which om_ingest_begin sets to the store the
 * ingest was begun on.  NULL stores and ingests are handled here, so no
 * backend sees one.
 *
 * Written here on top of the operations, the same for every backend:
 *   om_store_put     verify the digest, skip if present, ingest + commit
 *   om_store_read    open_blob + pread (or the ranged read of a backend
 *                    without local files) into a NUL-terminated buffer
 *   om_store_verify  the same reads, hashed as they come
 *   om_store_quarantine  the backend's quarantine, or (a backend without
 *                    one) remove while the size is still the wrong one;
 *                    counted in the store's head either way
 *   om_store_stat    the backend's own, or has() for one whose has is
 *                    its storage's answer already
 *   om_store_reader_*  the backend's streamed reads, or a reader over
 *                    read_at that reads in the caller's thread (bounded:
 *                    OM_STORE_READER_BUF a call at most)
 *
 * The backend is chosen in om_store_open_cfg / om_store_attach_cfg from
 * the storage configuration (fs: store_fs.c, s3: store_s3.c);
 * om_store_open / om_store_attach of a root are the filesystem's, for
 * callers that have no config (tests, tools given a directory).  If you
 * add a backend, choose it there and declare its open in store_backend.h;
 * callers do not change.
 */
#include "cache/store.h"

#include "cache/store_backend.h"
#include "core/hash.h"
#include "core/log.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VERIFY_BUF (64u * 1024)          /* streaming hash buffer */
/* A backend without local files reads a request's worth at a time: one
 * ranged GET per VERIFY_BUF would cost a round trip per 64 KiB. */
#define VERIFY_BUF_REMOTE (4u << 20)

/* ---- opening and closing ------------------------------------------------ */

int om_store_open(struct om_store **out, const char *root)
{
    return om_store_fs_open(out, root, false);
}

int om_store_attach(struct om_store **out, const char *root)
{
    return om_store_fs_open(out, root, true);
}

int om_store_open_cfg(struct om_store **out, const struct om_config *cfg)
{
    if (cfg->storage_backend == OM_STORAGE_S3)
        return om_store_s3_open(out, cfg, false);
    return om_store_fs_open(out, cfg->storage_path, false);
}

int om_store_attach_cfg(struct om_store **out, const struct om_config *cfg)
{
    if (cfg->storage_backend == OM_STORAGE_S3)
        return om_store_s3_open(out, cfg, true);
    return om_store_fs_open(out, cfg->storage_path, true);
}

void om_store_close(struct om_store *st)
{
    if (st == NULL)
        return;
    st->ops->close(st);
}

const char *om_store_root(const struct om_store *st)
{
    return st->ops->root(st);
}

unsigned om_store_caps(const struct om_store *st)
{
    return st->ops->caps;
}

/* ---- ingest ------------------------------------------------------------ */

int om_ingest_begin(struct om_store *st, struct om_ingest **out)
{
    int err = st->ops->ingest_begin(st, out);
    if (err == OM_OK)
        (*out)->st = st; /* the dispatcher's: later calls on *out go to st */
    return err;
}

int om_ingest_begin_for(struct om_store *st, const om_digest *d, struct om_ingest **out)
{
    if (st->ops->version < 3 || st->ops->ingest_begin_for == NULL)
        return om_ingest_begin(st, out);
    int err = st->ops->ingest_begin_for(st, d, out);
    if (err == OM_OK)
        (*out)->st = st;
    return err;
}

int om_ingest_write(struct om_ingest *in, const void *buf, size_t len)
{
    return in->st->ops->ingest_write(in, buf, len);
}

int om_ingest_reserve(struct om_ingest *in, uint64_t size)
{
    return in->st->ops->ingest_reserve(in, size);
}

int om_ingest_truncate(struct om_ingest *in, uint64_t size)
{
    return in->st->ops->ingest_truncate(in, size);
}

int om_ingest_commit(struct om_store *st, struct om_ingest *in, const om_digest *d)
{
    if (in == NULL)
        return OM_ERR_INVALID;
    return st->ops->ingest_commit(st, in, d);
}

void om_ingest_abort(struct om_ingest *in)
{
    if (in == NULL)
        return;
    in->st->ops->ingest_abort(in);
}

int om_store_put(struct om_store *st, const om_digest *d, const void *buf, size_t len)
{
    struct om_ingest *in = NULL;
    om_digest got;
    int err;

    if ((err = om_hash_buf(buf, len, &got)) != OM_OK)
        goto done;
    if (d == NULL || strcmp(got.str, d->str) != 0) {
        err = OM_ERR_DIGEST;
        goto done;
    }
    if (om_store_has(st, d, NULL))
        goto done;
    if (st->ops->put != NULL) {
        err = st->ops->put(st, d, buf, len);
        goto done;
    }
    if ((err = om_ingest_begin(st, &in)) != OM_OK)
        goto done;
    if ((err = om_ingest_write(in, buf, len)) != OM_OK)
        goto done;
    err = om_ingest_commit(st, in, d);
    in = NULL; /* freed by commit */
done:
    om_ingest_abort(in);
    return err;
}

/* ---- reading ----------------------------------------------------------- */

bool om_store_has(struct om_store *st, const om_digest *d, uint64_t *size)
{
    return st->ops->has(st, d, size);
}

int om_store_open_blob(struct om_store *st, const om_digest *d, int *fd, uint64_t *size)
{
    *fd = -1;
    if (st->ops->open_blob == NULL)
        return OM_ERR_INVALID;
    return st->ops->open_blob(st, d, fd, size);
}

int om_store_read_at(struct om_store *st, const om_digest *d, uint64_t off, void *buf,
                     size_t len, size_t *got)
{
    *got = 0;
    return st->ops->read_at(st, d, off, buf, len, got);
}

int om_store_presign_get(struct om_store *st, const om_digest *d, unsigned ttl_s, char *url,
                         size_t urlsz)
{
    if (urlsz > 0)
        url[0] = '\0';
    if (st->ops->presign_get == NULL || !(st->ops->caps & OM_STORE_CAN_PRESIGN))
        return OM_ERR_INVALID;
    return st->ops->presign_get(st, d, ttl_s, url, urlsz);
}

/* Read up to len bytes at off: pread on fd when the backend gave one
 * (fd >= 0), else its ranged read.  *got = 0 at the end. */
static int read_some(struct om_store *st, const om_digest *d, int fd, uint64_t off, char *buf,
                     size_t len, size_t *got)
{
    *got = 0;
    if (fd < 0)
        return om_store_read_at(st, d, off, buf, len, got);
    for (;;) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            om_log(OM_LOG_ERROR, "store: read %s: %s", d->str, strerror(errno));
            return OM_ERR_IO;
        }
        *got = (size_t)n;
        return OM_OK;
    }
}

/* Read exactly len bytes from offset 0; a short object is an I/O error. */
static int read_full(struct om_store *st, const om_digest *d, int fd, char *buf, size_t len)
{
    size_t got = 0, n = 0;
    while (got < len) {
        if (read_some(st, d, fd, got, buf + got, len - got, &n) != OM_OK || n == 0)
            return OM_ERR_IO;
        got += n;
    }
    return OM_OK;
}

/* The object's fd when the backend has local files (*fd = -1 otherwise)
 * and its size. */
static int open_for_read(struct om_store *st, const om_digest *d, int *fd, uint64_t *size)
{
    *fd = -1;
    if (st->ops->open_blob != NULL)
        return st->ops->open_blob(st, d, fd, size);
    return om_store_has(st, d, size) ? OM_OK : OM_ERR_NOTFOUND;
}

int om_store_read(struct om_store *st, const om_digest *d, size_t max, char **buf, size_t *len)
{
    char *b = NULL;
    uint64_t size = 0;
    int fd = -1, err;

    *buf = NULL;
    *len = 0;
    if ((err = open_for_read(st, d, &fd, &size)) != OM_OK)
        goto done;
    if (size > max || size >= SIZE_MAX) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    /* One spare byte: the buffer is NUL-terminated for callers that parse
     * text (manifests), which costs nothing and avoids a copy there. */
    b = malloc((size_t)size + 1); /* owned by the caller via *buf */
    if (b == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if ((err = read_full(st, d, fd, b, (size_t)size)) != OM_OK) {
        om_log(OM_LOG_ERROR, "store: read %s: short read or error", d->str);
        goto done;
    }
    b[size] = '\0';
    /* Never hand out bytes that are not the object's: a small object is
     * hashed on every read (a manifest: microseconds).  A damaged one is
     * moved aside, and the caller finds it absent (and fetches it again). */
    om_digest got;
    if (om_hash_buf(b, (size_t)size, &got) != OM_OK || strcmp(got.str, d->str) != 0) {
        om_log_kv(OM_LOG_ERROR, "store: object does not hash to its digest, quarantined",
                  "digest", d->str, NULL);
        (void)om_store_quarantine(st, d, size);
        err = OM_ERR_NOTFOUND;
        goto done;
    }
    *buf = b;
    *len = (size_t)size;
    b = NULL;
done:
    free(b);
    if (fd >= 0)
        close(fd);
    return err;
}

int om_store_stat(struct om_store *st, const om_digest *d, struct om_store_stat *out)
{
    *out = (struct om_store_stat){0};
    if (st->ops->version >= 3 && st->ops->stat != NULL)
        return st->ops->stat(st, d, out);
    return om_store_has(st, d, &out->size) ? OM_OK : OM_ERR_NOTFOUND;
}

/* ---- streamed reads --------------------------------------------------- */

/* The reader of a backend without its own: read_at in the caller's
 * thread, a bounded piece a call (local files answer at once). */
struct sync_reader {
    struct om_store_reader base;   /* first */
    struct om_store *st;
    om_digest d;
    uint64_t off, left;            /* next byte, bytes still to send (UINT64_MAX: to the end) */
    int result;
};

static int sync_result(struct om_store_reader *r)
{
    return ((struct sync_reader *)r)->result;
}

static ssize_t sync_read(struct om_store_reader *r, void *buf, size_t max, om_store_cb suspend,
                         om_store_cb wake, void *ud)
{
    struct sync_reader *sr = (struct sync_reader *)r;
    size_t got = 0;
    (void)suspend, (void)wake, (void)ud; /* never waits */
    if (sr->result != OM_OK)
        return OM_STORE_READ_FAILED;
    if (sr->left == 0)
        return OM_STORE_READ_EOF;
    if (max > OM_STORE_READER_BUF)
        max = OM_STORE_READER_BUF;
    if (sr->left != UINT64_MAX && max > sr->left)
        max = (size_t)sr->left;
    if (om_store_read_at(sr->st, &sr->d, sr->off, buf, max, &got) != OM_OK)
        return OM_STORE_READ_FAILED;
    if (got == 0)
        return sr->left == UINT64_MAX ? OM_STORE_READ_EOF : OM_STORE_READ_FAILED;
    sr->off += got;
    if (sr->left != UINT64_MAX)
        sr->left -= got;
    return (ssize_t)got;
}

static void sync_close(struct om_store_reader *r)
{
    free(r);
}

static const struct om_store_reader_ops sync_reader_ops = {sync_result, sync_read, sync_close};

int om_store_reader_open(struct om_store *st, const om_digest *d, uint64_t off, uint64_t len,
                         om_store_cb ready, void *ud, struct om_store_reader **out)
{
    struct sync_reader *sr = NULL;
    uint64_t size = 0;

    *out = NULL;
    if (st->ops->version >= 3 && st->ops->reader_open != NULL)
        return st->ops->reader_open(st, d, off, len, ready, ud, out);
    sr = calloc(1, sizeof(*sr)); /* owned by the caller via *out */
    if (sr == NULL)
        return OM_ERR_NOMEM;
    sr->base.ops = &sync_reader_ops;
    sr->st = st;
    sr->d = *d;
    sr->off = off;
    sr->left = len == 0 ? UINT64_MAX : len;
    sr->result = om_store_has(st, d, &size) ? OM_OK : OM_ERR_NOTFOUND;
    if (sr->result == OM_OK && off > size)
        sr->result = OM_ERR_INVALID;
    *out = &sr->base;
    ready(ud);
    return OM_OK;
}

int om_store_reader_result(struct om_store_reader *r)
{
    return r->ops->result(r);
}

ssize_t om_store_reader_read(struct om_store_reader *r, void *buf, size_t max,
                             om_store_cb suspend, om_store_cb wake, void *ud)
{
    return r->ops->read(r, buf, max, suspend, wake, ud);
}

void om_store_reader_close(struct om_store_reader *r)
{
    if (r != NULL)
        r->ops->close(r);
}

int om_store_clean_stale(struct om_store *st, uint64_t older_than_ms, bool dry_run,
                         uint64_t *aborted)
{
    if (aborted != NULL)
        *aborted = 0;
    if (st->ops->version >= 3 && st->ops->clean_stale != NULL)
        return st->ops->clean_stale(st, older_than_ms, dry_run, aborted);
    return OM_OK;
}

int om_store_remove(struct om_store *st, const om_digest *d)
{
    return st->ops->remove(st, d);
}

int om_store_quarantine(struct om_store *st, const om_digest *d, uint64_t if_size)
{
    uint64_t size = 0;
    int err;

    if (st->ops->version >= 2 && st->ops->quarantine != NULL) {
        err = st->ops->quarantine(st, d, if_size);
    } else if (!om_store_has(st, d, &size) || (if_size != OM_STORE_ANY_SIZE && size != if_size)) {
        err = OM_ERR_NOTFOUND;
    } else {
        /* A check-then-remove race here costs a download, never bytes:
         * the object is content-addressed and fetched again. */
        om_log(OM_LOG_WARN, "store: %s backend cannot quarantine; removing %s", st->ops->name,
               d->str);
        err = om_store_remove(st, d);
    }
    if (err == OM_OK)
        atomic_fetch_add(&st->quarantined, 1);
    return err;
}

uint64_t om_store_quarantined(struct om_store *st)
{
    return atomic_load(&st->quarantined);
}

int om_store_walk(struct om_store *st, om_store_walk_fn fn, void *ud)
{
    return st->ops->walk(st, fn, ud);
}

int om_store_verify(struct om_store *st, const om_digest *d)
{
    char *buf = NULL;
    om_hash *h = NULL;
    om_digest got;
    uint64_t size = 0, off = 0;
    int fd = -1, err;

    if ((err = open_for_read(st, d, &fd, &size)) != OM_OK)
        goto done;
    size_t bufsz = fd >= 0 ? VERIFY_BUF : VERIFY_BUF_REMOTE;
    buf = malloc(bufsz); /* freed below */
    h = om_hash_new();   /* freed below */
    if (buf == NULL || h == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (;;) {
        size_t n = 0;
        if ((err = read_some(st, d, fd, off, buf, bufsz, &n)) != OM_OK)
            goto done;
        if (n == 0)
            break;
        om_hash_update(h, buf, n);
        off += n;
    }
    om_hash_final(h, &got);
    if (strcmp(got.str, d->str) != 0) {
        om_log(OM_LOG_WARN, "store: %s fails verification (content hashes to %s)", d->str,
               got.str);
        err = OM_ERR_DIGEST;
    }
done:
    om_hash_free(h);
    free(buf);
    if (fd >= 0)
        close(fd);
    return err;
}

uint64_t om_store_bytes(struct om_store *st)
{
    return st->ops->bytes(st);
}
