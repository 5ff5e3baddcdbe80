/* store_fs.c — the filesystem backend of the content store: files under a
 * local root (store.h is the interface callers see, store_backend.h the
 * contract every backend keeps; this file keeps it as follows).
 *
 * Layout (all paths built here from a digest that is re-validated with
 * om_digest_parse on every call, so a damaged om_digest can never name a
 * path outside blobs/):
 *   <root>/blobs/sha256/<2 hex>/<64 hex>
 *   <root>/ingest/<32 random hex>
 *
 * Lifecycle of an object (the operations of fs_ops, called through
 * store.c's om_ingest_* / om_store_*):
 *   fs_ingest_begin   an ingest file in <root>/ingest (store_ingest.c: a
 *                     random O_EXCL name; written with pwrite at in->size,
 *                     so readers that dup() the fd cannot misplace bytes).
 *   fs_ingest_commit  fsync(file) → renameat2(RENAME_NOREPLACE) into blobs/
 *                     → fsync(fan-out dir).  NOREPLACE makes "already there"
 *                     an atomic answer (EEXIST) instead of a stat/rename race,
 *                     so two commits of one digest count its bytes once.  On
 *                     filesystems without renameat2 flags we fall back to
 *                     stat + rename under the store's mutex.  Nothing is
 *                     visible under blobs/ before the rename: that is the
 *                     atomic commit, and "exists" means a regular file there.
 *   fs_remove         unlink; open fds keep working (GC relies on that).
 * open_blob hands out an fd of the committed file itself
 * (OM_STORE_CAN_SENDFILE).
 *
 * The byte total is an atomic counter: computed by a walk at open (or read
 * from the record of the last clean shutdown, see SIZE_RECORD), then
 * adjusted only by a commit that actually placed a file and a remove that
 * actually unlinked one.
 *
 * Stale ingest files are removed at open: only one process owns a storage
 * root, and nothing of a previous run can still be writing to them.
 * [added for gc.c] om_store_attach() (om_store_fs_open with attach) is the
 * exception: a tool running beside the server (`ocimirror gc`) creates
 * nothing and leaves ingest/ alone.
 *
 * Thread safety: the only shared mutable state is the byte total and the
 * dirty flag (atomics) and the rename fallback (mu); everything else is
 * the filesystem's, whose rename and unlink are atomic.
 *
 * Errors: ENOSPC/EDQUOT → OM_ERR_NOSPACE, ENOENT on a blob → OM_ERR_NOTFOUND,
 * other system errors → OM_ERR_IO (om_store_sys_err), each logged once
 * where it happens.
 *
 * If you add a second layout version (e.g. sha512), update digest_path(),
 * walk_fanout() and the open-time checks together.
 */
#include "cache/store.h"

#include "cache/store_backend.h"
#include "core/log.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_PATH_MAX 4096              /* == sizeof(struct om_ingest.path) */

/* An fs store: the head every store starts with, then the backend's own. */
struct om_store_fs {
    struct om_store base;       /* first: base.ops == &fs_ops */
    char *root;                 /* owned; strdup of the caller's root */
    pthread_mutex_t mu;         /* only for the rename fallback without NOREPLACE */
    _Atomic uint64_t bytes;     /* sum of sizes of committed blobs */
    bool attached;              /* om_store_attach: a tool beside the owner */
    int lock_fd;                /* owner: LOCK_FILE, flock()ed; -1 when attached */
    bool record_at_close;       /* owner, fully opened: write SIZE_RECORD at close */
    atomic_bool marked_dirty;   /* attached and removed a blob: DIRTY_MARK made */
};

/* One owner per storage root.  Two servers on one directory would each
 * remove the other's downloads as stale ingest files and fail to commit, so
 * the owner holds an exclusive flock(2) on LOCK_FILE for as long as the
 * store is open, with its PID written in the file for the message the next
 * one gets.  The kernel drops the lock when the process dies (kill -9
 * included): a stale file never blocks a restart.  Tools (attach) take no
 * lock: gc and fsck work beside the owner. */
#define LOCK_FILE "lock"

static int root_path(const struct om_store_fs *st, const char *rel, char *out, size_t outsz);

static int take_lock(struct om_store_fs *st)
{
    char path[STORE_PATH_MAX], pid[32] = "";
    int err = OM_OK;
    int fd = -1;

    if ((err = root_path(st, LOCK_FILE, path, sizeof(path))) != OM_OK)
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

static const struct om_store_ops fs_ops;

/* The fs store behind a store handed to an operation of fs_ops. */
static struct om_store_fs *fs_of(struct om_store *st)
{
    assert(st == NULL || st->ops == &fs_ops);
    return (struct om_store_fs *)st; /* base is the first member */
}

static const struct om_store_fs *fs_of_const(const struct om_store *st)
{
    assert(st == NULL || st->ops == &fs_ops);
    return (const struct om_store_fs *)st;
}

/* "<root>/<rel>" into out; OM_ERR_TOOBIG if it does not fit. */
static int root_path(const struct om_store_fs *st, const char *rel, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s/%s", st->root, rel);
    return (n < 0 || (size_t)n >= outsz) ? OM_ERR_TOOBIG : OM_OK;
}

/* Re-validate d and build "<root>/blobs/sha256/<2>/<64>" (and, when dir is
 * non-NULL, the fan-out directory "<root>/blobs/sha256/<2>"). */
static int digest_path(const struct om_store_fs *st, const om_digest *d, char *out,
                       size_t outsz, char *dir, size_t dirsz)
{
    om_digest check;
    int n;

    if (d == NULL || om_digest_parse(&check, d->str, strnlen(d->str, sizeof(d->str))) != OM_OK)
        return OM_ERR_INVALID;
    const char *hex = om_digest_hex(&check);
    n = snprintf(out, outsz, "%s/blobs/sha256/%.2s/%s", st->root, hex, hex);
    if (n < 0 || (size_t)n >= outsz)
        return OM_ERR_TOOBIG;
    if (dir != NULL) {
        n = snprintf(dir, dirsz, "%s/blobs/sha256/%.2s", st->root, hex);
        if (n < 0 || (size_t)n >= dirsz)
            return OM_ERR_TOOBIG;
    }
    return OM_OK;
}

/* mkdir that accepts an existing directory.  *created (may be NULL) tells
 * the caller whether the parent's entry changed and needs an fsync. */
static int mkdir_ok(const char *path, bool *created)
{
    if (created != NULL)
        *created = false;
    if (mkdir(path, 0755) == 0) {
        if (created != NULL)
            *created = true;
        return OM_OK;
    }
    if (errno == EEXIST) {
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            return OM_OK;
        om_log(OM_LOG_ERROR, "store: %s exists and is not a directory", path);
        return OM_ERR_IO;
    }
    int e = errno;
    om_log(OM_LOG_ERROR, "store: mkdir %s: %s", path, strerror(e));
    return om_store_sys_err(e);
}

/* Make a directory entry durable (new file, rename, new subdirectory). */
static int fsync_dir(const char *path)
{
    int err = OM_OK;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        om_log(OM_LOG_ERROR, "store: fsync dir %s: %s", path, strerror(e));
        err = om_store_sys_err(e);
    }
    if (fd >= 0)
        close(fd);
    return err;
}

/* Remove every regular file in <root>/ingest: downloads of a previous run. */
static int clean_ingest(struct om_store_fs *st)
{
    char path[STORE_PATH_MAX];
    DIR *dir = NULL;
    int err;
    unsigned removed = 0;

    if ((err = root_path(st, "ingest", path, sizeof(path))) != OM_OK)
        goto done;
    dir = opendir(path);
    if (dir == NULL) {
        om_log(OM_LOG_ERROR, "store: opendir %s: %s", path, strerror(errno));
        err = OM_ERR_IO;
        goto done;
    }
    for (struct dirent *de; (de = readdir(dir)) != NULL;) {
        if (de->d_name[0] == '.')
            continue;
        if (unlinkat(dirfd(dir), de->d_name, 0) == 0)
            removed++;
        else
            om_log(OM_LOG_WARN, "store: cannot remove stale ingest %s/%s: %s", path,
                   de->d_name, strerror(errno));
    }
    if (removed > 0)
        om_log(OM_LOG_INFO, "store: removed %u stale ingest file(s)", removed);
done:
    if (dir != NULL)
        closedir(dir);
    return err;
}

/* Read and durably remove SIZE_RECORD and DIRTY_MARK.  true with *total
 * when a valid record was there and no dirty mark. */
static bool consume_size_record(struct om_store_fs *st, uint64_t *total)
{
    char path[STORE_PATH_MAX], buf[96];
    bool ok = false, dirty = false, changed = false;
    unsigned long long v = 0;

    if (root_path(st, DIRTY_MARK, path, sizeof(path)) == OM_OK && unlink(path) == 0)
        dirty = changed = true;
    if (root_path(st, SIZE_RECORD, path, sizeof(path)) != OM_OK)
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
    if (changed && fsync_dir(st->root) != OM_OK)
        ok = false;
    if (dirty)
        om_log(OM_LOG_INFO, "store: a tool removed blobs since the last shutdown; counting");
    *total = v;
    return ok && !dirty;
}

/* Write SIZE_RECORD (tmp + fsync + rename); failures only cost the next
 * start a walk. */
static void write_size_record(struct om_store_fs *st)
{
    char tmp[STORE_PATH_MAX], dst[STORE_PATH_MAX], buf[96];
    if (root_path(st, SIZE_RECORD_TMP, tmp, sizeof(tmp)) != OM_OK ||
        root_path(st, SIZE_RECORD, dst, sizeof(dst)) != OM_OK)
        return;
    int n = snprintf(buf, sizeof(buf), SIZE_RECORD_FMT,
                     (unsigned long long)atomic_load(&st->bytes));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    bool ok = fd >= 0 && write(fd, buf, (size_t)n) == n && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (ok && rename(tmp, dst) == 0) {
        (void)fsync_dir(st->root);
        return;
    }
    om_log(OM_LOG_WARN, "store: cannot record the store size in %s: %s", dst, strerror(errno));
    unlink(tmp);
}

static int sum_bytes(void *ud, const om_digest *d, uint64_t size)
{
    (void)d;
    *(uint64_t *)ud += size;
    return 0;
}

static int fs_walk(struct om_store *base, om_store_walk_fn fn, void *ud);
static void fs_free(struct om_store_fs *st);

/* attach: [added for gc.c] om_store_attach()'s mode — create nothing, keep
 * ingest/ (a server beside us owns it). */
int om_store_fs_open(struct om_store **out, const char *root, bool attach)
{
    static const char *const dirs[] = {"blobs", "blobs/sha256", "ingest"};
    struct om_store_fs *st = NULL;
    char path[STORE_PATH_MAX];
    uint64_t total = 0;
    int err = OM_OK;

    *out = NULL;
    /* Longest path we build: "<root>/blobs/sha256/xx/<64 hex>". */
    if (root == NULL || root[0] == '\0' ||
        strlen(root) + sizeof("/blobs/sha256/xx/") + 64 >= STORE_PATH_MAX) {
        err = OM_ERR_INVALID;
        goto done;
    }
    st = calloc(1, sizeof(*st)); /* owned by the caller via *out, or freed below */
    if (st == NULL || (st->root = strdup(root)) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    st->base.ops = &fs_ops;
    st->lock_fd = -1;
    pthread_mutex_init(&st->mu, NULL);
    atomic_init(&st->bytes, 0);
    atomic_init(&st->marked_dirty, false);

    if (attach) {
        struct stat sb;
        if ((err = root_path(st, "blobs/sha256", path, sizeof(path))) != OM_OK)
            goto done;
        if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            err = OM_ERR_NOTFOUND;
            goto done;
        }
    } else {
        if ((err = mkdir_ok(root, NULL)) != OM_OK || (err = take_lock(st)) != OM_OK)
            goto done;
        for (size_t i = 0; i < OM_ARRAY_LEN(dirs); i++) {
            if ((err = root_path(st, dirs[i], path, sizeof(path))) != OM_OK ||
                (err = mkdir_ok(path, NULL)) != OM_OK)
                goto done;
        }
        if ((err = clean_ingest(st)) != OM_OK)
            goto done;
    }
    st->attached = attach;
    bool recorded = !attach && consume_size_record(st, &total);
    if (!recorded) {
        total = 0;
        err = fs_walk(&st->base, sum_bytes, &total);
        if (err != OM_OK)
            goto done;
    }
    atomic_store(&st->bytes, total);
    om_log(OM_LOG_INFO, "store: opened %s (%llu bytes committed%s)", root,
           (unsigned long long)total, recorded ? ", as recorded at the last shutdown" : "");
    st->record_at_close = !attach;
    *out = &st->base;
    st = NULL;
done:
    fs_free(st);
    return err;
}

/* Write the size record if this is the owner, then free; NULL is a no-op
 * (also a store that failed half way through opening). */
static void fs_free(struct om_store_fs *st)
{
    if (st == NULL)
        return;
    if (st->record_at_close)
        write_size_record(st);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* last: the next owner may start from here */
    if (st->root != NULL)
        pthread_mutex_destroy(&st->mu);
    free(st->root);
    free(st);
}

static void fs_close(struct om_store *base)
{
    fs_free(fs_of(base));
}

static const char *fs_root(const struct om_store *base)
{
    return fs_of_const(base)->root;
}

/* ---- ingest (the file itself: store_ingest.c) --------------------------- */

static int fs_ingest_begin(struct om_store *base, struct om_ingest **out)
{
    char dir[STORE_PATH_MAX];
    int err;

    *out = NULL;
    if ((err = root_path(fs_of(base), "ingest", dir, sizeof(dir))) != OM_OK)
        goto done;
    err = om_ingest_file_begin(out, dir);
done:
    return err;
}

static void fs_ingest_abort(struct om_ingest *in)
{
    om_ingest_file_free(in, true);
}

/* Place src at dst unless dst exists.  *placed says which happened. */
static int place_noreplace(struct om_store_fs *st, const char *src, const char *dst, bool *placed)
{
    int err = OM_OK;
    struct stat sb;

    *placed = false;
    if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) == 0) {
        *placed = true;
        goto done;
    }
    if (errno == EEXIST)
        goto done;
    if (errno != EINVAL && errno != ENOSYS) {
        int e = errno;
        om_log(OM_LOG_ERROR, "store: rename %s → %s: %s", src, dst, strerror(e));
        err = om_store_sys_err(e);
        goto done;
    }
    /* The filesystem has no RENAME_NOREPLACE: serialise check + rename. */
    pthread_mutex_lock(&st->mu);
    if (stat(dst, &sb) == 0) {
        /* exists: nothing to do */
    } else if (rename(src, dst) == 0) {
        *placed = true;
    } else {
        int e = errno;
        om_log(OM_LOG_ERROR, "store: rename %s → %s: %s", src, dst, strerror(e));
        err = om_store_sys_err(e);
    }
    pthread_mutex_unlock(&st->mu);
done:
    return err;
}

static int fs_ingest_commit(struct om_store *base, struct om_ingest *in, const om_digest *d)
{
    struct om_store_fs *st = fs_of(base);
    char dst[STORE_PATH_MAX], dir[STORE_PATH_MAX], parent[STORE_PATH_MAX];
    struct stat sb;
    bool created = false, placed = false;
    int err;

    if ((err = digest_path(st, d, dst, sizeof(dst), dir, sizeof(dir))) != OM_OK)
        goto done;
    if (fsync(in->fd) != 0 || fstat(in->fd, &sb) != 0) {
        int e = errno;
        om_log(OM_LOG_ERROR, "store: fsync %s: %s", in->path, strerror(e));
        err = om_store_sys_err(e);
        goto done;
    }
    if ((err = mkdir_ok(dir, &created)) != OM_OK)
        goto done;
    if (created) {
        if ((err = root_path(st, "blobs/sha256", parent, sizeof(parent))) != OM_OK ||
            (err = fsync_dir(parent)) != OM_OK)
            goto done;
    }
    if ((err = place_noreplace(st, in->path, dst, &placed)) != OM_OK)
        goto done;
    if (!placed) {
        om_log(OM_LOG_DEBUG, "store: %s already present, ingest dropped", d->str);
        goto done;
    }
    atomic_fetch_add(&st->bytes, (uint64_t)sb.st_size);
    err = fsync_dir(dir);
done:
    /* Frees `in` in every case; its file is unlinked unless it now lives
     * in blobs/. */
    om_ingest_file_free(in, !placed);
    return err;
}

/* ---- reading ----------------------------------------------------------- */

static bool fs_has(struct om_store *base, const om_digest *d, uint64_t *size)
{
    const struct om_store_fs *st = fs_of(base);
    char path[STORE_PATH_MAX];
    struct stat sb;

    if (digest_path(st, d, path, sizeof(path), NULL, 0) != OM_OK)
        return false;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return false;
    if (size != NULL)
        *size = (uint64_t)sb.st_size;
    return true;
}

static int fs_open_blob(struct om_store *base, const om_digest *d, int *fd, uint64_t *size)
{
    const struct om_store_fs *st = fs_of(base);
    char path[STORE_PATH_MAX];
    struct stat sb;
    int err, f = -1;

    *fd = -1;
    if ((err = digest_path(st, d, path, sizeof(path), NULL, 0)) != OM_OK)
        goto done;
    f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0) {
        if (errno == ENOENT) {
            err = OM_ERR_NOTFOUND;
        } else {
            om_log(OM_LOG_ERROR, "store: open %s: %s", path, strerror(errno));
            err = OM_ERR_IO;
        }
        goto done;
    }
    if (fstat(f, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        om_log(OM_LOG_ERROR, "store: %s is not a readable regular file", path);
        err = OM_ERR_IO;
        goto done;
    }
    if (size != NULL)
        *size = (uint64_t)sb.st_size;
    *fd = f; /* the caller owns it now */
    f = -1;
done:
    if (f >= 0)
        close(f);
    return err;
}

static int fs_read_at(struct om_store *base, const om_digest *d, uint64_t off, void *buf,
                      size_t len, size_t *got)
{
    int fd = -1, err;
    if ((err = fs_open_blob(base, d, &fd, NULL)) != OM_OK)
        return err;
    while (*got < len) {
        ssize_t n = pread(fd, (char *)buf + *got, len - *got, (off_t)(off + *got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            om_log(OM_LOG_ERROR, "store: read %s: %s", d->str, strerror(errno));
            err = OM_ERR_IO;
            break;
        }
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    close(fd);
    return err;
}

static int fs_remove(struct om_store *base, const om_digest *d)
{
    struct om_store_fs *st = fs_of(base);
    char path[STORE_PATH_MAX];
    struct stat sb;
    int err;

    if ((err = digest_path(st, d, path, sizeof(path), NULL, 0)) != OM_OK)
        goto done;
    if (stat(path, &sb) != 0) {
        err = errno == ENOENT ? OM_ERR_NOTFOUND : OM_ERR_IO;
        goto done;
    }
    if (unlink(path) != 0) {
        /* A concurrent remove won the race: it subtracts, we do not. */
        if (errno == ENOENT) {
            err = OM_ERR_NOTFOUND;
        } else {
            om_log(OM_LOG_ERROR, "store: unlink %s: %s", path, strerror(errno));
            err = OM_ERR_IO;
        }
        goto done;
    }
    atomic_fetch_sub(&st->bytes, (uint64_t)sb.st_size);
    if (st->attached && !atomic_exchange(&st->marked_dirty, true)) {
        char mark[STORE_PATH_MAX];
        int fd = -1;
        if (root_path(st, DIRTY_MARK, mark, sizeof(mark)) == OM_OK)
            fd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 || fsync(fd) != 0 || fsync_dir(st->root) != OM_OK)
            om_log(OM_LOG_WARN, "store: cannot leave %s: the server's size total may be off "
                   "(delete %s/" SIZE_RECORD " while it is stopped to have it recounted)",
                   mark, st->root);
        if (fd >= 0)
            close(fd);
    }
done:
    return err;
}

static bool is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return s[n] == '\0';
}

/* One fan-out directory; returns fn's non-zero value to stop the walk. */
static int walk_fanout(int parent_fd, const char *fan, om_store_walk_fn fn, void *ud)
{
    DIR *dir = NULL;
    int ret = OM_OK;
    int fd = openat(parent_fd, fan, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
        om_log(OM_LOG_WARN, "store: cannot read blobs/sha256/%s: %s", fan, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto done; /* skip it; one bad directory does not hide the rest */
    }
    for (struct dirent *de; (de = readdir(dir)) != NULL;) {
        struct stat sb;
        om_digest d;
        char full[OM_DIGEST_MAX + 1];

        if (de->d_name[0] == '.')
            continue;
        /* Only "<64 hex>" inside the matching "<2 hex>" directory is ours. */
        if (strlen(de->d_name) != 64 || strncmp(de->d_name, fan, 2) != 0 ||
            snprintf(full, sizeof(full), "sha256:%s", de->d_name) != OM_DIGEST_MAX ||
            om_digest_parse(&d, full, OM_DIGEST_MAX) != OM_OK) {
            om_log(OM_LOG_DEBUG, "store: ignoring blobs/sha256/%s/%s", fan, de->d_name);
            continue;
        }
        if (fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(sb.st_mode))
            continue; /* removed meanwhile, or not a regular file */
        ret = fn(ud, &d, (uint64_t)sb.st_size);
        if (ret != 0)
            goto done;
    }
done:
    if (dir != NULL)
        closedir(dir); /* closes fd */
    return ret;
}

static int fs_walk(struct om_store *base, om_store_walk_fn fn, void *ud)
{
    const struct om_store_fs *st = fs_of(base);
    char path[STORE_PATH_MAX];
    DIR *dir = NULL;
    int ret;

    if ((ret = root_path(st, "blobs/sha256", path, sizeof(path))) != OM_OK)
        goto done;
    dir = opendir(path);
    if (dir == NULL) {
        om_log(OM_LOG_ERROR, "store: opendir %s: %s", path, strerror(errno));
        ret = OM_ERR_IO;
        goto done;
    }
    for (struct dirent *de; (de = readdir(dir)) != NULL;) {
        if (de->d_name[0] == '.')
            continue;
        if (strlen(de->d_name) != 2 || !is_lower_hex(de->d_name, 2)) {
            om_log(OM_LOG_DEBUG, "store: ignoring blobs/sha256/%s", de->d_name);
            continue;
        }
        ret = walk_fanout(dirfd(dir), de->d_name, fn, ud);
        if (ret != 0)
            goto done;
    }
done:
    if (dir != NULL)
        closedir(dir);
    return ret;
}

static uint64_t fs_bytes(struct om_store *base)
{
    return atomic_load(&fs_of(base)->bytes);
}

static const struct om_store_ops fs_ops = {
    .version = OM_STORE_OPS_VERSION,
    .name = "fs",
    .caps = OM_STORE_CAN_SENDFILE,
    .close = fs_close,
    .root = fs_root,
    .ingest_begin = fs_ingest_begin,
    .ingest_write = om_ingest_file_write,
    .ingest_reserve = om_ingest_file_reserve,
    .ingest_truncate = om_ingest_file_truncate,
    .ingest_commit = fs_ingest_commit,
    .ingest_abort = fs_ingest_abort,
    .has = fs_has,
    .open_blob = fs_open_blob,
    .read_at = fs_read_at,
    .remove = fs_remove,
    .walk = fs_walk,
    .bytes = fs_bytes,
};
