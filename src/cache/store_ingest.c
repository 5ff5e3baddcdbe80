/* store_ingest.c — the ingest file: a download in progress, as a local file
 * that readers may dup() and read while it grows.  Every backend keeps its
 * ingests this way (store_backend.h: "an ingest is a local file"), so the
 * code is here once; what a backend does at commit (rename into blobs/ for
 * store_fs.c, an upload for a remote backend) is its own.
 *
 *   om_ingest_file_begin     creates <dir>/<random> with O_EXCL (mode 0644);
 *                            the name comes from getrandom(2), so concurrent
 *                            downloads, and stale files of a crashed run,
 *                            never collide.
 *   om_ingest_file_write     pwrite() at in->size, so readers that dup() the
 *                            fd and move the shared file offset cannot
 *                            misplace bytes, and a truncate + rewrite never
 *                            leaves a hole; writeback starts every
 *                            INGEST_WRITEBACK_WINDOW bytes.
 *   om_ingest_file_reserve   fallocate(KEEP_SIZE), a no-op where unsupported
 *   om_ingest_file_truncate  ftruncate, for a resumed download that restarts
 *   om_ingest_file_free      close, unlink unless the file was placed, free
 *
 * None of these touch in->st (the dispatcher's, see store_backend.h).
 * Errors: om_store_sys_err() is the one errno → om_err translation of the
 * store's backends (ENOSPC/EDQUOT → OM_ERR_NOSPACE, else OM_ERR_IO), each
 * logged once where it happens.
 */
#include "cache/store_backend.h"

#include "cache/store.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* om_ingest_file_write starts writeback every this many bytes. */
#define INGEST_WRITEBACK_WINDOW (8u << 20)
#define INGEST_NAME_BYTES 16             /* random bytes → 32 hex chars */
#define INGEST_CREATE_TRIES 8            /* O_EXCL collisions before giving up */

int om_store_sys_err(int e)
{
    return (e == ENOSPC || e == EDQUOT) ? OM_ERR_NOSPACE : OM_ERR_IO;
}

int om_ingest_file_begin(struct om_ingest **out, const char *dir)
{
    static const char hexd[] = "0123456789abcdef";
    struct om_ingest *in = NULL;
    unsigned char rnd[INGEST_NAME_BYTES];
    char name[2 * INGEST_NAME_BYTES + 1];
    int err = OM_OK;

    *out = NULL;
    in = calloc(1, sizeof(*in)); /* owned by the caller until commit/abort */
    if (in == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    in->fd = -1;
    for (int tries = 0; in->fd < 0; tries++) {
        if (tries == INGEST_CREATE_TRIES) {
            om_log(OM_LOG_ERROR, "store: cannot create an ingest file in %s", dir);
            err = OM_ERR_IO;
            goto done;
        }
        ssize_t got;
        do {
            got = getrandom(rnd, sizeof(rnd), 0);
        } while (got < 0 && errno == EINTR);
        if (got != (ssize_t)sizeof(rnd)) {
            om_log(OM_LOG_ERROR, "store: getrandom: %s", strerror(errno));
            err = OM_ERR_IO;
            goto done;
        }
        for (size_t i = 0; i < sizeof(rnd); i++) {
            name[2 * i] = hexd[rnd[i] >> 4];
            name[2 * i + 1] = hexd[rnd[i] & 15];
        }
        name[sizeof(name) - 1] = '\0';
        int n = snprintf(in->path, sizeof(in->path), "%s/%s", dir, name);
        if (n < 0 || (size_t)n >= sizeof(in->path)) {
            err = OM_ERR_TOOBIG;
            goto done;
        }
        in->fd = open(in->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (in->fd < 0 && errno != EEXIST) {
            int e = errno;
            om_log(OM_LOG_ERROR, "store: create %s: %s", in->path, strerror(e));
            err = om_store_sys_err(e);
            goto done;
        }
    }
    *out = in;
    in = NULL;
done:
    free(in); /* only reached non-NULL before the file exists */
    return err;
}

int om_ingest_file_write(struct om_ingest *in, const void *buf, size_t len)
{
    const char *p = buf;
    int err = OM_OK;

    while (len > 0) {
        ssize_t n = pwrite(in->fd, p, len, (off_t)in->size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            om_log(OM_LOG_ERROR, "store: write %s: %s", in->path, strerror(e));
            err = om_store_sys_err(e);
            goto done;
        }
        if (n == 0) { /* not expected for regular files; avoid spinning */
            err = OM_ERR_IO;
            goto done;
        }
        p += n;
        len -= (size_t)n;
        in->size += (uint64_t)n;
    }
    /* Start writeback of each full window as the download goes, so the
     * commit's fsync finds little left to write: the client's last byte
     * waits for that fsync (a 512 MiB blob's worth of dirty pages took
     * most of a second to flush at the end).  Asynchronous: it only
     * queues the I/O.  An error here is not one for the download; fsync
     * at commit reports what matters. */
    if (in->size - in->synced >= INGEST_WRITEBACK_WINDOW) {
        (void)sync_file_range(in->fd, (off64_t)in->synced, (off64_t)(in->size - in->synced),
                              SYNC_FILE_RANGE_WRITE);
        in->synced = in->size;
    }
done:
    return err;
}

int om_ingest_file_truncate(struct om_ingest *in, uint64_t size)
{
    if (size > (uint64_t)INT64_MAX)
        return OM_ERR_INVALID;
    if (ftruncate(in->fd, (off_t)size) != 0) {
        int e = errno;
        om_log(OM_LOG_ERROR, "store: truncate %s: %s", in->path, strerror(e));
        return om_store_sys_err(e);
    }
    in->size = size;
    if (in->synced > size)
        in->synced = size;
    return OM_OK;
}

int om_ingest_file_reserve(struct om_ingest *in, uint64_t size)
{
    if (size == 0 || size > (uint64_t)INT64_MAX)
        return OM_OK;
    /* KEEP_SIZE: the blocks are taken but the file still reads as what was
     * written, which is what readers of a growing ingest file rely on. */
    if (fallocate(in->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size) != 0) {
        int e = errno;
        if (e == EOPNOTSUPP || e == ENOSYS)
            return OM_OK; /* the filesystem cannot tell in advance: find out while writing */
        om_log(OM_LOG_WARN, "store: reserve %llu bytes for %s: %s", (unsigned long long)size,
               in->path, strerror(e));
        return om_store_sys_err(e);
    }
    return OM_OK;
}

void om_ingest_file_free(struct om_ingest *in, bool unlink_file)
{
    if (in == NULL)
        return;
    if (in->fd >= 0)
        close(in->fd);
    if (unlink_file && unlink(in->path) != 0 && errno != ENOENT)
        om_log(OM_LOG_WARN, "store: unlink %s: %s", in->path, strerror(errno));
    free(in);
}
