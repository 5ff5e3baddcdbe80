/* store_fs.c — the filesystem backend of the content store: files under a
 * local root (store.h is the interface callers see, store_backend.h the
 * contract every backend keeps; this file keeps it as follows).
 *
 * Layout (all paths built here from a digest that is re-validated with
 * om_digest_parse on every call, so a damaged om_digest can never name a
 * path outside blobs/):
 *   <root>/blobs/sha256/<2 hex>/<64 hex>
 *   <root>/ingest/<32 random hex>
 *   <root>/quarantine/<64 hex>
 *
 * Lifecycle of an object (the operations of fs_ops, called through
 * store.c's om_ingest_* / om_store_*):
 *   fs_ingest_begin   an ingest file in <root>/ingest (store_ingest.c: a
 *                     random O_EXCL name; written with pwrite at in->size,
 *                     so readers that dup() the fd cannot misplace bytes).
 *   fs_ingest_commit  the digest in the journal (store_fs_sync.c: durable
 *                     before the name can be) → renameat2(RENAME_NOREPLACE)
 *                     into blobs/; the fsync of the file and of its fan-out
 *                     directory follow in the background, so a client's last
 *                     byte waits for the digest, not for the disk.  NOREPLACE makes "already there"
 *                     an atomic answer (EEXIST) instead of a stat/rename race,
 *                     so two commits of one digest count its bytes once.  On
 *                     filesystems without renameat2 flags we fall back to
 *                     stat + rename under the store's mutex.  Nothing is
 *                     visible under blobs/ before the rename: that is the
 *                     atomic commit, and "exists" means a regular file there.
 *   fs_remove         unlink; open fds keep working (GC relies on that).
 *   fs_quarantine     rename into <root>/quarantine/<64 hex> (replacing an
 *                     older quarantined copy: one file per digest at most),
 *                     under `mu` between the size check and the rename, so
 *                     two requests that found the same damaged file move it
 *                     once and never move the good copy fetched since.
 * open_blob hands out an fd of the committed file itself
 * (OM_STORE_CAN_SENDFILE).
 *
 * The byte total, the owner's lock and the size record are
 * store_fs_meta.c's: commits and removes adjust the total there, and a
 * quarantine has it recounted (the moved file changed size on disk behind
 * our back, so what the total held for it is unknowable from the file).
 *
 * Stale ingest files are removed at open: only one process owns a storage
 * root, and nothing of a previous run can still be writing to them.
 * [added for gc.c] om_store_attach() (om_store_fs_open with attach) is the
 * exception: a tool running beside the server (`ocimirror gc`) creates
 * nothing and leaves ingest/ alone.
 *
 * Thread safety: the only shared mutable state is the byte total and the
 * dirty flag (atomics), the change count (count_mu), the recount
 * (recount_mu: one at a time) and the rename fallback and quarantine
 * (mu); everything else is the filesystem's, whose rename and unlink are
 * atomic.
 *
 * Errors: ENOSPC/EDQUOT → OM_ERR_NOSPACE, ENOENT on a blob → OM_ERR_NOTFOUND,
 * other system errors → OM_ERR_IO (om_store_sys_err), each logged once
 * where it happens.
 *
 * If you add a second layout version (e.g. sha512), update digest_path(),
 * walk_fanout() and the open-time checks together.
 */
#include "cache/store_fs.h"

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

static void fs_free(struct om_store_fs *st);

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

int om_store_fs__root_path(const struct om_store_fs *st, const char *rel, char *out,
                           size_t outsz)
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

/* A new file, rename or new subdirectory. */
int om_store_fs__fsync_dir(const char *path)
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

    if ((err = om_store_fs__root_path(st, "ingest", path, sizeof(path))) != OM_OK)
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
    pthread_mutex_init(&st->count_mu, NULL);
    pthread_mutex_init(&st->recount_mu, NULL);
    atomic_init(&st->bytes, 0);
    atomic_init(&st->marked_dirty, false);

    if (attach) {
        struct stat sb;
        if ((err = om_store_fs__root_path(st, "blobs/sha256", path, sizeof(path))) != OM_OK)
            goto done;
        if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            err = OM_ERR_NOTFOUND;
            goto done;
        }
    } else {
        if ((err = mkdir_ok(root, NULL)) != OM_OK || (err = om_store_fs__take_lock(st)) != OM_OK)
            goto done;
        for (size_t i = 0; i < OM_ARRAY_LEN(dirs); i++) {
            if ((err = om_store_fs__root_path(st, dirs[i], path, sizeof(path))) != OM_OK ||
                (err = mkdir_ok(path, NULL)) != OM_OK)
                goto done;
        }
        if ((err = clean_ingest(st)) != OM_OK || (err = om_store_fs__sync_open(st)) != OM_OK)
            goto done;
    }
    st->attached = attach;
    bool recorded = !attach && om_store_fs__consume_record(st, &total);
    if (!recorded) {
        total = 0;
        err = om_store_fs__walk(&st->base, om_store_fs__sum_bytes, &total);
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
    om_store_fs__sync_close(st); /* everything committed made durable first */
    if (st->record_at_close)
        om_store_fs__write_record(st);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* last: the next owner may start from here */
    if (st->root != NULL) {
        pthread_mutex_destroy(&st->mu);
        pthread_mutex_destroy(&st->count_mu);
        pthread_mutex_destroy(&st->recount_mu);
    }
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
    if ((err = om_store_fs__root_path(fs_of(base), "ingest", dir, sizeof(dir))) != OM_OK)
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
    if (fstat(in->fd, &sb) != 0) {
        int e = errno;
        om_log(OM_LOG_ERROR, "store: stat %s: %s", in->path, strerror(e));
        err = om_store_sys_err(e);
        goto done;
    }
    /* The power-loss rule: listed durably before the name can be durable
     * (store_fs_sync.c); the bytes themselves are synced in the background. */
    if ((err = om_store_fs__journal(st, d)) != OM_OK)
        goto done;
    if ((err = mkdir_ok(dir, &created)) != OM_OK)
        goto done;
    if (created) {
        if ((err = om_store_fs__root_path(st, "blobs/sha256", parent, sizeof(parent))) != OM_OK ||
            (err = om_store_fs__fsync_dir(parent)) != OM_OK)
            goto done;
    }
    if ((err = place_noreplace(st, in->path, dst, &placed)) != OM_OK)
        goto done;
    if (!placed) {
        om_log(OM_LOG_DEBUG, "store: %s already present, ingest dropped", d->str);
        goto done;
    }
    om_store_fs__count_add(st, (int64_t)sb.st_size);
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
    om_store_fs__count_add(st, -(int64_t)sb.st_size);
    if (st->attached)
        om_store_fs__mark_dirty(st);
done:
    return err;
}

static int fs_quarantine(struct om_store *base, const om_digest *d, uint64_t if_size)
{
    struct om_store_fs *st = fs_of(base);
    char path[STORE_PATH_MAX], dir[STORE_PATH_MAX], qdir[STORE_PATH_MAX], dst[STORE_PATH_MAX];
    struct stat sb;
    bool created = false, moved = false;
    int err;

    if ((err = digest_path(st, d, path, sizeof(path), dir, sizeof(dir))) != OM_OK ||
        (err = om_store_fs__root_path(st, QUARANTINE_DIR, qdir, sizeof(qdir))) != OM_OK)
        goto done;
    int n = snprintf(dst, sizeof(dst), "%s/%s", qdir, om_digest_hex(d));
    if (n < 0 || (size_t)n >= sizeof(dst)) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    if ((err = mkdir_ok(qdir, &created)) != OM_OK ||
        (created && (err = om_store_fs__fsync_dir(st->root)) != OM_OK))
        goto done;
    pthread_mutex_lock(&st->mu);
    if (stat(path, &sb) != 0) {
        err = errno == ENOENT ? OM_ERR_NOTFOUND : OM_ERR_IO;
    } else if (!S_ISREG(sb.st_mode)) {
        err = OM_ERR_NOTFOUND;
    } else if (if_size != OM_STORE_ANY_SIZE && (uint64_t)sb.st_size != if_size) {
        err = OM_ERR_NOTFOUND; /* not the object the caller saw: replaced meanwhile */
    } else if (rename(path, dst) != 0) {
        int e = errno;
        err = e == ENOENT ? OM_ERR_NOTFOUND : om_store_sys_err(e);
        if (e != ENOENT)
            om_log(OM_LOG_ERROR, "store: rename %s → %s: %s", path, dst, strerror(e));
    } else {
        moved = true;
    }
    pthread_mutex_unlock(&st->mu);
    if (!moved)
        goto done;
    om_log(OM_LOG_WARN, "store: quarantined %s (%llu bytes on disk) as %s", d->str,
           (unsigned long long)sb.st_size, dst);
    /* Moved all the same if these fail (logged): only the move's
     * durability is in doubt, and a crash would bring back a file the
     * next hit finds damaged again. */
    (void)om_store_fs__fsync_dir(dir);
    (void)om_store_fs__fsync_dir(qdir);
    if (st->attached)
        om_store_fs__mark_dirty(st);
    else
        om_store_fs__recount(st);
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

int om_store_fs__walk(struct om_store *base, om_store_walk_fn fn, void *ud)
{
    const struct om_store_fs *st = fs_of(base);
    char path[STORE_PATH_MAX];
    DIR *dir = NULL;
    int ret;

    if ((ret = om_store_fs__root_path(st, "blobs/sha256", path, sizeof(path))) != OM_OK)
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
    .walk = om_store_fs__walk,
    .bytes = fs_bytes,
    .quarantine = fs_quarantine,
};
