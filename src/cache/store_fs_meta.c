/* store_fs_meta.c — what the filesystem backend keeps beside the objects
 * (store_fs.h is the handle, store_fs.c the objects themselves):
 *   the owner's lock   LOCK_FILE, flock()ed while the store is open;
 *   the size record    SIZE_RECORD, the byte total at the last clean
 *                      shutdown, consumed at open; DIRTY_MARK, left by a
 *                      tool beside the owner that removed or moved files,
 *                      makes the next open walk whatever the record says;
 *   the byte total     adjusted under count_mu, which also counts the
 *                      changes, by a commit that placed a file and a remove
 *                      that unlinked one.
 *
 * The recount (om_store_fs__recount, after a quarantine): the file a
 * quarantine moves changed size on disk behind our back, so what the total
 * holds for it — its size at commit, at the open-time walk or in the last
 * record — cannot be told from the file.  The recount walks without a lock
 * and keeps its sum only if no commit or remove counted anything meanwhile
 * (`changes` unchanged), else tries again; after RECOUNT_TRIES it leaves
 * DIRTY_MARK so the next open walks.  One recount at a time (recount_mu).
 * A walk of 110,000 blobs took ~0.25 s, and a quarantine means the disk
 * lost data: rare enough to pay for it.
 */
#include "cache/store_fs.h"

#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define RECOUNT_TRIES 3

int om_store_fs__take_lock(struct om_store_fs *st)
{
    char path[STORE_PATH_MAX], pid[32] = "";
    int err = OM_OK;
    int fd = -1;

    if ((err = om_store_fs__root_path(st, LOCK_FILE, path, sizeof(path))) != OM_OK)
        goto done;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        om_log(OM_LOG_ERROR, "store: cannot open %s: %s", path, strerror(errno));
        err = om_store_sys_err(errno);
        goto done;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
            pid[n > 0 ? n : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            om_log(OM_LOG_ERROR,
                   "store: %s is in use by another ocimirror (pid %s): one storage directory "
                   "serves one mirror (gc and fsck may run beside it)",
                   st->root, pid[0] ? pid : "unknown");
            err = OM_ERR_DENIED;
        } else {
            om_log(OM_LOG_ERROR, "store: cannot lock %s: %s", path, strerror(e));
            err = OM_ERR_IO;
        }
        goto done;
    }
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        om_log(OM_LOG_WARN, "store: cannot write the owner's pid into %s: %s", path,
               strerror(errno)); /* the lock holds all the same */
    st->lock_fd = fd;            /* owned by st; closed (unlocked) in fs_free */
    fd = -1;
done:
    if (fd >= 0)
        close(fd);
    return err;
}


/* Read and durably remove SIZE_RECORD and DIRTY_MARK.  true with *total
 * when a valid record was there and no dirty mark. */
bool om_store_fs__consume_record(struct om_store_fs *st, uint64_t *total)
{
    char path[STORE_PATH_MAX], buf[96];
    bool ok = false, dirty = false, changed = false;
    unsigned long long v = 0;

    if (om_store_fs__root_path(st, DIRTY_MARK, path, sizeof(path)) == OM_OK && unlink(path) == 0)
        dirty = changed = true;
    if (om_store_fs__root_path(st, SIZE_RECORD, path, sizeof(path)) != OM_OK)
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        static const char prefix[] = "ocimirror store size v1 ";
        if (n > (ssize_t)sizeof(prefix) && memcmp(buf, prefix, sizeof(prefix) - 1) == 0) {
            /* digits, then exactly one newline; no sign, no overflow */
            buf[n] = '\0';
            const char *p = buf + sizeof(prefix) - 1;
            ok = *p >= '0' && *p <= '9';
            for (; ok && *p >= '0' && *p <= '9'; p++) {
                unsigned digit = (unsigned)(*p - '0');
                if (v > (ULLONG_MAX - digit) / 10)
                    ok = false;
                else
                    v = v * 10 + digit;
            }
            ok = ok && p[0] == '\n' && p[1] == '\0';
        }
        if (unlink(path) != 0) {
            om_log(OM_LOG_WARN, "store: cannot remove %s: %s", path, strerror(errno));
            ok = false; /* it would outlive a crash: do not trust it either */
        }
        changed = true;
    }
    if (changed && om_store_fs__fsync_dir(st->root) != OM_OK)
        ok = false;
    if (dirty)
        om_log(OM_LOG_INFO, "store: a tool removed or moved blobs since the last shutdown; counting");
    *total = v;
    return ok && !dirty;
}


/* Write SIZE_RECORD (tmp + fsync + rename); failures only cost the next
 * start a walk. */
void om_store_fs__write_record(struct om_store_fs *st)
{
    char tmp[STORE_PATH_MAX], dst[STORE_PATH_MAX], buf[96];
    if (om_store_fs__root_path(st, SIZE_RECORD_TMP, tmp, sizeof(tmp)) != OM_OK ||
        om_store_fs__root_path(st, SIZE_RECORD, dst, sizeof(dst)) != OM_OK)
        return;
    int n = snprintf(buf, sizeof(buf), SIZE_RECORD_FMT,
                     (unsigned long long)atomic_load(&st->bytes));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    bool ok = fd >= 0 && write(fd, buf, (size_t)n) == n && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (ok && rename(tmp, dst) == 0) {
        (void)om_store_fs__fsync_dir(st->root);
        return;
    }
    om_log(OM_LOG_WARN, "store: cannot record the store size in %s: %s", dst, strerror(errno));
    unlink(tmp);
}


int om_store_fs__sum_bytes(void *ud, const om_digest *d, uint64_t size)
{
    (void)d;
    *(uint64_t *)ud += size;
    return 0;
}


/* Adjust the byte total by delta, counting the change (for recount). */
void om_store_fs__count_add(struct om_store_fs *st, int64_t delta)
{
    pthread_mutex_lock(&st->count_mu);
    if (delta >= 0)
        atomic_fetch_add(&st->bytes, (uint64_t)delta);
    else
        atomic_fetch_sub(&st->bytes, (uint64_t)-delta);
    st->changes++;
    pthread_mutex_unlock(&st->count_mu);
}


/* Leave DIRTY_MARK (once per open): the next open walks, whatever the size
 * record says.  A tool beside the server that removed or moved files
 * leaves it, and an owner whose recount failed. */
void om_store_fs__mark_dirty(struct om_store_fs *st)
{
    char mark[STORE_PATH_MAX] = "";
    int fd = -1;

    if (atomic_exchange(&st->marked_dirty, true))
        return;
    if (om_store_fs__root_path(st, DIRTY_MARK, mark, sizeof(mark)) == OM_OK)
        fd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 || fsync(fd) != 0 || om_store_fs__fsync_dir(st->root) != OM_OK)
        om_log(OM_LOG_WARN, "store: cannot leave %s: the server's size total may be off "
               "(delete %s/" SIZE_RECORD " while it is stopped to have it recounted)",
               mark, st->root);
    if (fd >= 0)
        close(fd);
}


/* Walk the store and make its sum the byte total (see the file comment). */
void om_store_fs__recount(struct om_store_fs *st)
{
    bool kept = false;
    uint64_t before = 0, sum = 0;

    pthread_mutex_lock(&st->recount_mu);
    for (int i = 0; i < RECOUNT_TRIES && !kept; i++) {
        pthread_mutex_lock(&st->count_mu);
        uint64_t c0 = st->changes;
        pthread_mutex_unlock(&st->count_mu);
        sum = 0;
        if (om_store_fs__walk(&st->base, om_store_fs__sum_bytes, &sum) != OM_OK)
            break;
        pthread_mutex_lock(&st->count_mu);
        if (st->changes == c0) {
            before = atomic_exchange(&st->bytes, sum);
            kept = true;
        }
        pthread_mutex_unlock(&st->count_mu);
    }
    pthread_mutex_unlock(&st->recount_mu);
    if (kept && before != sum)
        om_log(OM_LOG_INFO, "store: recounted %llu bytes committed (the running total said %llu)",
               (unsigned long long)sum, (unsigned long long)before);
    if (!kept) {
        om_log(OM_LOG_WARN, "store: could not recount the byte total; the next start will");
        om_store_fs__mark_dirty(st);
    }
}
