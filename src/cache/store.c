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
 *
 * The backend is chosen in om_store_open / om_store_attach: the filesystem
 * (store_fs.c) is the only one today.  If you add a backend, choose it there
 * (from the storage configuration) and declare its open in
 * store_backend.h; callers do not change.
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

/* ---- opening and closing ------------------------------------------------ */

int om_store_open(struct om_store **out, const char *root)
{
    return om_store_fs_open(out, root, false);
}

int om_store_attach(struct om_store **out, const char *root)
{
    return om_store_fs_open(out, root, true);
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
    *buf = b;
    *len = (size_t)size;
    b = NULL;
done:
    free(b);
    if (fd >= 0)
        close(fd);
    return err;
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
    buf = malloc(VERIFY_BUF); /* freed below */
    h = om_hash_new();        /* freed below */
    if (buf == NULL || h == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (;;) {
        size_t n = 0;
        if ((err = read_some(st, d, fd, off, buf, VERIFY_BUF, &n)) != OM_OK)
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
