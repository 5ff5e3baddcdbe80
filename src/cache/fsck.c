/* fsck.c — checking a storage directory the way a user needs to trust it,
 * and repairing what can be repaired (see fsck.h for the API; the command
 * `ocimirror fsck` and its reports are cli/fsck_cli.c).
 *
 * One run (om_fsck_run):
 *   1. ingest/: files left by downloads that will never finish.  Stale =
 *      no other process has the storage open, or older (mtime) than
 *      o->ingest_age_s (the command's default: 1 h).  Younger files next
 *      to a live server are downloads in flight: counted, never touched.
 *   2. blobs/: every committed object is re-hashed (om_store_verify); a
 *      mismatch is a corrupt blob — a wrong-size blob when the file is not
 *      the size the index recorded either (truncated or grown on disk: the
 *      server refuses to serve such a file, see v2/v2_blob.c) — and a read
 *      error an unreadable one.  A file whose size disagrees with the index
 *      but whose bytes hash right is fine: then the record is what is
 *      wrong, and the server corrects it when it fetches the blob again.
 *      Objects
 *      the index does not record are counted (informational: a crash
 *      between commit and index update leaves them; a manifest is recorded
 *      again by its next pull, and GC removes such "strays" after its grace
 *      period, so a blob is fetched again by the pull after that).
 *   3. index.db against the store: tags whose manifest is not in the
 *      store, manifests and blobs recorded but not in the store.  A
 *      candidate is checked against the store a second time before it is
 *      reported, so content the server's GC removes at that moment is not
 *      reported unless its index row outlives the file.
 *
 * Repair (o->repair): stale ingest files are removed; corrupt blobs are
 * removed (om_store_remove: open fds keep working, clients mid-download
 * finish) and wrong-size ones quarantined (om_store_quarantine: moved to
 * <root>/quarantine/, as the server does when it finds one; the run counts
 * what is there, for the operator to look at and delete); then the index
 * rows pointing at missing content are deleted, so
 * the next pull fetches it again.  Order matters: corrupt blobs go first,
 * so their rows are found missing and dropped in the same run.  Unreadable
 * blobs are left alone (an I/O error may be transient; deleting is not
 * fsck's call), and fsck never creates, rebuilds or moves aside index.db:
 * the server does that itself at start-up when it is missing or corrupt.
 *
 * Next to a running server: the store is attached (om_store_attach: no
 * open-time ingest cleanup, nothing created), the index through a
 * connection of fsck's own (index_fsck.h: SQLite WAL, short IMMEDIATE
 * transactions the server's writers wait for), and whether "another
 * process holds the storage" is read from SQLite's documented WAL
 * dead-man-switch lock (see storage_holder) — here, not in the command,
 * because it decides which ingest files are stale and must be read before
 * the index is opened.
 *
 * [added for store_s3.c] A store in a bucket (o->cfg, backend s3): the
 * same checks on the objects of the bucket (verify reads them back with
 * ranged GETs), the local ingest/ as the spool, and the bucket's multipart
 * uploads older than ingest_age_s counted as stale ingests (aborted with
 * repair); wrong-size objects are quarantined inside the bucket, so the
 * local quarantine count stays 0.
 *
 * Failures are handed to o->complain one line each (the command prints
 * them to stderr); the findings go into the result, nothing is printed.
 *
 * Memory: at most OM_FSCK_PROBLEMS_MAX problems are kept (for repair and
 * listing); counts stay exact beyond that, and the ones not kept are left
 * for the next run (the command's exit status says so).
 */
#include "cache/fsck.h"

#include "cache/index_fsck.h"
#include "cache/store.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FSCK_PATH_MAX 4096
#define FSCK_REPAIR_BATCH 256        /* index rows dropped per transaction */
/* SQLite's unix VFS: every connection to a WAL database holds a shared lock
 * on this byte of the -shm file for as long as it is open (the "DMS" lock,
 * https://sqlite.org/walformat.html §2.3.1). */
#define WAL_DMS_LOCK_OFFSET 128

/* One run's state; the findings are in *r. */
struct fsck {
    const struct om_fsck_opts *o;    /* borrowed */
    struct om_fsck_result *r;        /* the caller's */
    struct om_store *st;             /* owned; om_store_attach'ed */
    struct om_index_fsck *ix;        /* owned; NULL when the index is unusable */
};

/* ---- failures ------------------------------------------------------------ */

static void complain(const struct fsck *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One failure line to o->complain (or the log). */
static void complain(const struct fsck *f, const char *fmt, ...)
{
    char buf[FSCK_PATH_MAX + 512], *msg = buf, *big = NULL;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(buf) && (big = malloc((size_t)n + 1)) != NULL) { /* freed below */
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        msg = big;
    }
    if (f->o->complain != NULL)
        f->o->complain(f->o->ud, msg);
    else
        om_log(OM_LOG_WARN, "fsck: %s", msg);
    free(big);
}

/* ---- problems ----------------------------------------------------------- */

/* Count a problem; keep it (and return it for filling in) while under the
 * cap, else NULL. */
static struct om_fsck_problem *add_problem(struct fsck *f, enum om_fsck_kind kind)
{
    f->r->found[kind]++;
    if (f->r->n_p == OM_FSCK_PROBLEMS_MAX) {
        f->r->not_kept++;
        return NULL;
    }
    if (f->r->n_p == f->r->cap_p) {
        size_t cap = f->r->cap_p ? f->r->cap_p * 2 : 64;
        if (cap > OM_FSCK_PROBLEMS_MAX)
            cap = OM_FSCK_PROBLEMS_MAX;
        struct om_fsck_problem *np = realloc(f->r->p, cap * sizeof(*np)); /* owned by the result */
        if (np == NULL) {
            f->r->not_kept++;
            return NULL;
        }
        f->r->p = np;
        f->r->cap_p = cap;
    }
    struct om_fsck_problem *p = &f->r->p[f->r->n_p++];
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    return p;
}

static void mark_repaired(struct fsck *f, struct om_fsck_problem *p)
{
    p->repaired = true;
    f->r->repaired[p->kind]++;
}

/* A candidate that resolved itself (GC removed the row and the file
 * together): forget it. */
static void mark_gone(struct fsck *f, struct om_fsck_problem *p)
{
    p->gone = true;
    f->r->found[p->kind]--;
}

uint64_t om_fsck_found(const struct om_fsck_result *r)
{
    uint64_t n = 0;
    for (int k = 0; k < OM_FSCK__COUNT; k++)
        n += r->found[k];
    return n;
}

uint64_t om_fsck_left(const struct om_fsck_result *r)
{
    uint64_t n = 0;
    for (int k = 0; k < OM_FSCK__COUNT; k++)
        n += r->found[k] - r->repaired[k];
    return n;
}

/* ---- who else has the storage open ------------------------------------- */

/* Another process with <root>/index.db open — a server, `gc`, a second fsck
 * — holds SQLite's WAL DMS lock (a read lock on one byte of index.db-shm)
 * for as long as its connection lives; F_GETLK reports it with the
 * holder's pid and does not take anything.  Must run before this process
 * opens the index itself: POSIX locks are per process, and closing any fd
 * of the -shm file here would drop SQLite's own locks on it. */
static bool storage_holder(const char *root, long *pid)
{
    char path[FSCK_PATH_MAX];
    bool held = false;
    int fd = -1;
    *pid = 0;
    int n = snprintf(path, sizeof(path), "%s/index.db-shm", root);
    if (n < 0 || (size_t)n >= sizeof(path))
        goto done;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        /* No -shm: no WAL connection is open.  One we may not read (another
         * user's server): assume it is held, the safe answer. */
        held = errno != ENOENT;
        goto done;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                       .l_start = WAL_DMS_LOCK_OFFSET, .l_len = 1};
    if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
        held = true;
        *pid = (long)fl.l_pid; /* 0 when it lives in another pid namespace */
    }
done:
    if (fd >= 0)
        close(fd);
    return held;
}

/* ---- ingest -------------------------------------------------------------- */

static int check_ingest(struct fsck *f)
{
    char path[FSCK_PATH_MAX];
    DIR *dir = NULL;
    int err = OM_OK;
    time_t now = time(NULL);
    int n = snprintf(path, sizeof(path), "%s/ingest", f->o->root);

    if (n < 0 || (size_t)n >= sizeof(path)) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    dir = opendir(path);
    if (dir == NULL) {
        if (errno != ENOENT) { /* a store that never downloaded has none */
            complain(f, "%s: %s", path, strerror(errno));
            err = OM_ERR_IO;
        }
        goto done;
    }
    for (struct dirent *de; (de = readdir(dir)) != NULL;) {
        struct stat sb;
        if (de->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(sb.st_mode))
            continue; /* finished meanwhile, or not something we write */
        f->r->ingest_files++;
        int64_t age = (int64_t)now - (int64_t)sb.st_mtime;
        if (f->r->holder && age < f->o->ingest_age_s) {
            f->r->ingest_live++; /* a download in flight */
            continue;
        }
        struct om_fsck_problem *p = add_problem(f, OM_FSCK_STALE_INGEST);
        if (p != NULL) {
            snprintf(p->name, sizeof(p->name), "%s", de->d_name);
            p->age_s = age;
        }
        if (f->o->repair) {
            /* Unlinking entries during readdir is allowed (POSIX). */
            if (unlinkat(dirfd(dir), de->d_name, 0) == 0 || errno == ENOENT) {
                if (p != NULL)
                    mark_repaired(f, p);
                else
                    f->r->repaired[OM_FSCK_STALE_INGEST]++;
            } else {
                complain(f, "cannot remove %s/%s: %s", path, de->d_name, strerror(errno));
            }
        }
    }
done:
    if (dir != NULL)
        closedir(dir);
    return err;
}

/* ---- the store ----------------------------------------------------------- */

/* om_store_attach, not om_store_open: the latter empties <root>/ingest,
 * which is right for the server at start-up and wrong next to a live
 * server whose downloads are in there. */
static int open_store(struct fsck *f)
{
    int err = f->o->cfg != NULL ? om_store_attach_cfg(&f->st, f->o->cfg)
                                : om_store_attach(&f->st, f->o->root);
    if (err != OM_OK)
        complain(f, "cannot open the store %s: %s", f->o->root, om_strerror(err));
    return err;
}

/* [added for store_s3.c] Uploads the store keeps outside ingest/ (S3
 * multipart uploads) that no download will finish: older than
 * o->ingest_age_s with no part as recent.  Counted as stale ingests; with
 * repair, aborted. */
static void check_uploads(struct fsck *f)
{
    uint64_t n = 0;
    uint64_t age_ms = f->o->ingest_age_s > 0 ? (uint64_t)f->o->ingest_age_s * 1000 : 0;
    int err = om_store_clean_stale(f->st, age_ms, !f->o->repair, &n);
    if (err != OM_OK)
        complain(f, "cannot list the store's unfinished uploads: %s", om_strerror(err));
    for (uint64_t i = 0; i < n; i++) {
        struct om_fsck_problem *p = add_problem(f, OM_FSCK_STALE_INGEST);
        if (p != NULL)
            snprintf(p->name, sizeof(p->name), "(a multipart upload in the bucket)");
        if (f->o->repair) {
            if (p != NULL)
                mark_repaired(f, p);
            else
                f->r->repaired[OM_FSCK_STALE_INGEST]++;
        }
    }
}

static int walk_one(void *ud, const om_digest *d, uint64_t size)
{
    struct fsck *f = ud;
    bool known = false;
    uint64_t want = 0;
    bool asked = f->ix != NULL && om_index_fsck_known(f->ix, d, &known, &want) == OM_OK;
    int err = om_store_verify(f->st, d);
    if (err == OM_ERR_NOTFOUND)
        return 0; /* removed meanwhile (GC): not ours to judge */
    if (asked && !known)
        f->r->unindexed++;
    f->r->blobs_checked++;
    f->r->bytes_checked += size;
    if (err == OM_ERR_DIGEST || err == OM_ERR_IO || err == OM_ERR_NOMEM) {
        bool wrong_size = err == OM_ERR_DIGEST && known && want != size;
        struct om_fsck_problem *p =
            add_problem(f, wrong_size ? OM_FSCK_WRONG_SIZE
                           : err == OM_ERR_DIGEST ? OM_FSCK_CORRUPT_BLOB
                                                  : OM_FSCK_UNREADABLE_BLOB);
        if (p != NULL) {
            p->d = *d;
            p->size = size;
            p->want = want;
        }
    }
    return 0;
}

static void repair_corrupt(struct fsck *f)
{
    for (size_t i = 0; i < f->r->n_p; i++) {
        struct om_fsck_problem *p = &f->r->p[i];
        int err;
        if (p->kind == OM_FSCK_CORRUPT_BLOB)
            err = om_store_remove(f->st, &p->d);
        else if (p->kind == OM_FSCK_WRONG_SIZE)
            err = om_store_quarantine(f->st, &p->d, p->size);
        else
            continue;
        if (err == OM_OK || err == OM_ERR_NOTFOUND)
            mark_repaired(f, p);
        else
            complain(f, "cannot %s %s: %s",
                     p->kind == OM_FSCK_CORRUPT_BLOB ? "remove" : "quarantine", p->d.str,
                     om_strerror(err));
    }
}

/* What <root>/quarantine holds (the server's and --repair's moves). */
static void count_quarantine(struct fsck *f)
{
    char path[FSCK_PATH_MAX];
    DIR *dir = NULL;
    int n = snprintf(path, sizeof(path), "%s/quarantine", f->o->root);

    if (n < 0 || (size_t)n >= sizeof(path) || (dir = opendir(path)) == NULL)
        return; /* none yet */
    for (struct dirent *de; (de = readdir(dir)) != NULL;) {
        struct stat sb;
        if (de->d_name[0] == '.' ||
            fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
            continue;
        f->r->quarantine_files++;
        f->r->quarantine_bytes += (uint64_t)sb.st_size;
    }
    closedir(dir);
}

/* ---- the index against the store ---------------------------------------- */

static int tag_one(void *ud, const char *repo, const char *tag, const om_digest *d)
{
    struct fsck *f = ud;
    if (om_store_has(f->st, d, NULL))
        return 0;
    struct om_fsck_problem *p = add_problem(f, OM_FSCK_DANGLING_TAG);
    if (p != NULL) {
        p->d = *d;
        snprintf(p->repo, sizeof(p->repo), "%s", repo);
        snprintf(p->tag, sizeof(p->tag), "%s", tag);
    }
    return 0;
}

static int manifest_one(void *ud, const om_digest *d)
{
    struct fsck *f = ud;
    if (!om_store_has(f->st, d, NULL)) {
        struct om_fsck_problem *p = add_problem(f, OM_FSCK_MISSING_MANIFEST);
        if (p != NULL)
            p->d = *d;
    }
    return 0;
}

static int blob_one(void *ud, const om_digest *d)
{
    struct fsck *f = ud;
    if (!om_store_has(f->st, d, NULL)) {
        struct om_fsck_problem *p = add_problem(f, OM_FSCK_MISSING_BLOB);
        if (p != NULL)
            p->d = *d;
    }
    return 0;
}

static bool is_index_kind(enum om_fsck_kind k)
{
    return k == OM_FSCK_DANGLING_TAG || k == OM_FSCK_MISSING_MANIFEST ||
           k == OM_FSCK_MISSING_BLOB;
}

static int check_index(struct fsck *f)
{
    int err;
    if ((err = om_index_fsck_counts(f->ix, &f->r->counts)) != OM_OK ||
        (err = om_index_fsck_tags(f->ix, tag_one, f, &f->r->bad_rows)) != OM_OK ||
        (err = om_index_fsck_manifests(f->ix, manifest_one, f, &f->r->bad_rows)) != OM_OK ||
        (err = om_index_fsck_blobs(f->ix, blob_one, f, &f->r->bad_rows)) != OM_OK)
        return err;
    /* Second look: content that arrived (a pull committing right now)
     * since the row was read is not a problem. */
    for (size_t i = 0; i < f->r->n_p; i++) {
        struct om_fsck_problem *p = &f->r->p[i];
        if (is_index_kind(p->kind) && om_store_has(f->st, &p->d, NULL))
            mark_gone(f, p);
    }
    return OM_OK;
}

/* Drop one row; the store is asked once more inside the transaction so a
 * manifest or blob committed meanwhile keeps its row. */
static int drop_row(struct fsck *f, struct om_fsck_problem *p)
{
    bool dropped = false;
    int err = OM_OK;
    if (om_store_has(f->st, &p->d, NULL)) {
        mark_gone(f, p);
        return OM_OK;
    }
    switch (p->kind) {
    case OM_FSCK_DANGLING_TAG:
        err = om_index_fsck_drop_tag(f->ix, p->repo, p->tag, &p->d, &dropped);
        break;
    case OM_FSCK_MISSING_MANIFEST:
        err = om_index_fsck_drop_manifest(f->ix, &p->d, &dropped);
        break;
    case OM_FSCK_MISSING_BLOB:
        err = om_index_fsck_drop_blob(f->ix, &p->d, &dropped);
        break;
    default:
        return OM_OK;
    }
    /* Dropped, or the row was already gone: either way resolved once the
     * transaction commits. */
    p->pending = err == OM_OK;
    return err;
}

static int repair_index(struct fsck *f)
{
    size_t i = 0;
    int err = OM_OK;
    while (i < f->r->n_p && err == OM_OK) {
        size_t start = i, batch = 0;
        if ((err = om_index_fsck_begin(f->ix)) != OM_OK)
            break;
        for (; i < f->r->n_p && batch < FSCK_REPAIR_BATCH && err == OM_OK; i++) {
            struct om_fsck_problem *p = &f->r->p[i];
            if (!is_index_kind(p->kind) || p->gone)
                continue;
            batch++;
            err = drop_row(f, p);
        }
        if (err == OM_OK)
            err = om_index_fsck_commit(f->ix);
        if (err != OM_OK) {
            om_index_fsck_rollback(f->ix); /* nothing of this batch was kept */
            break;
        }
        for (size_t j = start; j < i; j++) {
            if (f->r->p[j].pending) {
                f->r->p[j].pending = false;
                mark_repaired(f, &f->r->p[j]);
            }
        }
    }
    return err;
}

/* The index's state in r->index_state/index_why; OM_OK also when it is
 * missing, corrupt or unusable (f->ix stays NULL: the store is still
 * checked). */
static int open_index(struct fsck *f)
{
    int err = om_index_fsck_open(&f->ix, f->o->root, f->r->index_why, sizeof(f->r->index_why));
    if (err == OM_OK) {
        f->r->index_ok = true;
        snprintf(f->r->index_state, sizeof(f->r->index_state), "ok");
        return OM_OK;
    }
    if (err == OM_ERR_NOTFOUND)
        snprintf(f->r->index_state, sizeof(f->r->index_state), "missing");
    else if (err == OM_ERR_DIGEST)
        snprintf(f->r->index_state, sizeof(f->r->index_state), "corrupt");
    else if (err == OM_ERR_INVALID)
        snprintf(f->r->index_state, sizeof(f->r->index_state), "unusable");
    else
        return err; /* busy, I/O: cannot judge */
    return OM_OK;
}

/* A missing index is a problem only when there is content to index: a
 * storage that never cached anything has none yet. */
static void note_index_unusable(struct fsck *f)
{
    if (f->ix != NULL || (strcmp(f->r->index_state, "missing") == 0 && f->r->blobs_checked == 0))
        return;
    struct om_fsck_problem *p = add_problem(f, OM_FSCK_INDEX_UNUSABLE);
    if (p != NULL)
        snprintf(p->name, sizeof(p->name), "%s: %s", f->r->index_state, f->r->index_why);
}


/* ---- one run ------------------------------------------------------------- */

int om_fsck_run(struct om_fsck_result *out, const struct om_fsck_opts *o)
{
    struct fsck f = {.o = o, .r = out};
    char path[FSCK_PATH_MAX];
    struct stat sb;
    int err;

    memset(out, 0, sizeof(*out));
    bool bucket = o->cfg != NULL && o->cfg->storage_backend == OM_STORAGE_S3;
    int n = snprintf(path, sizeof(path), "%s/blobs/sha256", o->root);
    if (!bucket && (n < 0 || (size_t)n >= sizeof(path) || stat(path, &sb) != 0 ||
                    !S_ISDIR(sb.st_mode))) {
        complain(&f, "%s is not an ocimirror storage directory (no blobs/sha256)", o->root);
        err = OM_ERR_NOTFOUND;
        goto done;
    }
    out->holder = storage_holder(o->root, &out->holder_pid); /* before opening the index */
    if ((err = check_ingest(&f)) != OM_OK)
        goto done;
    if ((err = open_store(&f)) != OM_OK)
        goto done;
    check_uploads(&f);
    if ((err = open_index(&f)) != OM_OK) {
        complain(&f, "index: %s", out->index_why);
        goto done;
    }
    if ((err = om_store_walk(f.st, walk_one, &f)) != OM_OK) {
        complain(&f, "cannot walk %s/blobs: %s", o->root, om_strerror(err));
        goto done;
    }
    note_index_unusable(&f);
    if (o->repair)
        repair_corrupt(&f);
    if (f.ix != NULL) {
        if ((err = check_index(&f)) != OM_OK) {
            complain(&f, "reading the index: %s", om_strerror(err));
            goto done;
        }
        if (o->repair && (err = repair_index(&f)) != OM_OK) {
            complain(&f, "repairing the index: %s", om_strerror(err));
            goto done;
        }
    }
    count_quarantine(&f);
done:
    om_index_fsck_close(f.ix);
    om_store_close(f.st);
    return err;
}

void om_fsck_result_free(struct om_fsck_result *r)
{
    if (r == NULL)
        return;
    free(r->p);
    memset(r, 0, sizeof(*r));
}
