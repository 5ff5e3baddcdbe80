/* fsck.c — `ocimirror fsck [-c FILE] [--storage DIR] [--repair] [--json]
 *                          [--ingest-age SECONDS]`
 *
 * Checks a storage directory the way a user needs to trust it:
 *   1. ingest/: files left by downloads that will never finish.  Stale =
 *      no other process has the storage open, or older (mtime) than
 *      --ingest-age (default 1 h).  Younger files next to a live server
 *      are downloads in flight: counted, never touched.
 *   2. blobs/: every committed object is re-hashed (om_store_verify); a
 *      mismatch is a corrupt blob, a read error an unreadable one.  Objects
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
 * --repair: stale ingest files are removed; corrupt blobs are removed
 * (om_store_remove: open fds keep working, clients mid-download finish);
 * then the index rows pointing at missing content are deleted, so the next
 * pull fetches it again.  Order matters: corrupt blobs go first, so their
 * rows are found missing and dropped in the same run.  Unreadable blobs
 * are left alone (an I/O error may be transient; deleting is not fsck's
 * call), and fsck never creates, rebuilds or moves aside index.db: the
 * server does that itself at start-up when it is missing or corrupt.
 *
 * Next to a running server: the store is attached (om_store_attach: no
 * open-time ingest cleanup, nothing created), the index through a
 * connection of fsck's own (index_fsck.h: SQLite WAL, short IMMEDIATE
 * transactions the server's writers wait for), and whether "another
 * process holds the storage" is read from SQLite's documented WAL
 * dead-man-switch lock (see storage_holder).
 *
 * Output: a summary and the first FSCK_SHOW_HUMAN problems on stdout, or
 * one JSON object with --json (first FSCK_SHOW_JSON problems).  Library
 * warnings go to stderr only at ERROR level: the report is the output.
 * Exit status: 0 clean (or every problem repaired), 1 problems left,
 * 2 usage, config or I/O error.
 *
 * Memory: at most FSCK_PROBLEMS_MAX problems are kept (for repair and
 * listing); counts stay exact beyond that, and the ones not kept are left
 * for the next run (the exit status says so).
 */
#include "cache/fsck.h"

#include "cache/index_fsck.h"
#include "cache/store.h"
#include "cli/cli.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FSCK_PATH_MAX 4096
#define FSCK_PROBLEMS_MAX 10000      /* problems kept for repair and listing */
#define FSCK_SHOW_HUMAN 20           /* problems listed in the text report */
#define FSCK_SHOW_JSON 1000          /* problems listed in the JSON report */
#define FSCK_REPAIR_BATCH 256        /* index rows dropped per transaction */
#define FSCK_INGEST_AGE_DEFAULT 3600 /* seconds */
#define FSCK_WHY_MAX 512
/* SQLite's unix VFS: every connection to a WAL database holds a shared lock
 * on this byte of the -shm file for as long as it is open (the "DMS" lock,
 * https://sqlite.org/walformat.html §2.3.1). */
#define WAL_DMS_LOCK_OFFSET 128

enum pkind {
    P_CORRUPT_BLOB,
    P_UNREADABLE_BLOB,
    P_STALE_INGEST,
    P_DANGLING_TAG,
    P_MISSING_MANIFEST,
    P_MISSING_BLOB,
    P_INDEX_UNUSABLE,
    P__COUNT
};

static const char *const PKIND_NAME[P__COUNT] = {
    [P_CORRUPT_BLOB] = "corrupt_blob",
    [P_UNREADABLE_BLOB] = "unreadable_blob",
    [P_STALE_INGEST] = "stale_ingest",
    [P_DANGLING_TAG] = "dangling_tag",
    [P_MISSING_MANIFEST] = "missing_manifest",
    [P_MISSING_BLOB] = "missing_blob",
    [P_INDEX_UNUSABLE] = "index_unusable",
};

struct problem {
    enum pkind kind;
    bool repaired;
    bool gone;                   /* no longer a problem at re-check: not reported */
    bool pending;                /* index row dropped in an uncommitted transaction */
    om_digest d;                 /* blob, manifest, tag target */
    char repo[OM_NAME_MAX + 1];  /* dangling tag */
    char tag[OM_TAG_MAX + 1];    /* dangling tag */
    char name[NAME_MAX + 1];     /* stale ingest file */
    int64_t age_s;               /* stale ingest file */
};

struct opts {
    const char *config;
    const char *storage;
    bool repair;
    bool json;
    long ingest_age_s;
};

struct fsck {
    struct opts o;
    const char *root;                /* borrowed from the config */
    struct om_store *st;             /* owned; om_store_attach'ed */
    struct om_index_fsck *ix;        /* owned; NULL when the index is unusable */
    char index_state[16];            /* "ok", "missing", "corrupt", "unusable" */
    char index_why[FSCK_WHY_MAX];
    bool holder;                     /* another process has the storage open */
    long holder_pid;                 /* its pid when known, else 0 */

    struct problem *p;               /* owned array, n_p used of cap_p */
    size_t n_p, cap_p;
    uint64_t found[P__COUNT], repaired[P__COUNT];
    uint64_t not_kept;               /* problems over FSCK_PROBLEMS_MAX */

    uint64_t blobs_checked, bytes_checked, unindexed;
    uint64_t ingest_files, ingest_live;
    struct om_index_fsck_counts counts;
    uint64_t bad_rows;               /* index rows with a malformed digest */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ocimirror fsck [-c FILE] [--storage DIR] [--repair] [--json]\n"
               "                      [--ingest-age SECONDS]\n"
               "Verify every stored blob against its digest and the index against the\n"
               "store.  --repair removes corrupt blobs and stale ingest files and drops\n"
               "index entries that point at missing content.  Exit status: 0 clean,\n"
               "1 problems found (and not repaired), 2 usage or I/O error.\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    o->ingest_age_s = FSCK_INGEST_AGE_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--repair") == 0) {
            o->repair = true;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && has_val) {
            o->config = argv[++i];
        } else if (strcmp(a, "--storage") == 0 && has_val) {
            o->storage = argv[++i];
        } else if (strcmp(a, "--ingest-age") == 0 && has_val) {
            char *end = NULL;
            errno = 0;
            long v = strtol(argv[++i], &end, 10);
            if (errno != 0 || end == argv[i] || *end != '\0' || v < 0) {
                fprintf(stderr, "ocimirror fsck: --ingest-age wants seconds, got '%s'\n",
                        argv[i]);
                return 2;
            }
            o->ingest_age_s = v;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1; /* caller exits 0 */
        } else {
            fprintf(stderr, "ocimirror fsck: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    return 0;
}

/* ---- problems ----------------------------------------------------------- */

/* Count a problem; keep it (and return it for filling in) while under the
 * cap, else NULL. */
static struct problem *add_problem(struct fsck *f, enum pkind kind)
{
    f->found[kind]++;
    if (f->n_p == FSCK_PROBLEMS_MAX) {
        f->not_kept++;
        return NULL;
    }
    if (f->n_p == f->cap_p) {
        size_t cap = f->cap_p ? f->cap_p * 2 : 64;
        if (cap > FSCK_PROBLEMS_MAX)
            cap = FSCK_PROBLEMS_MAX;
        struct problem *np = realloc(f->p, cap * sizeof(*np)); /* owned by f */
        if (np == NULL) {
            f->not_kept++;
            return NULL;
        }
        f->p = np;
        f->cap_p = cap;
    }
    struct problem *p = &f->p[f->n_p++];
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    return p;
}

static void mark_repaired(struct fsck *f, struct problem *p)
{
    p->repaired = true;
    f->repaired[p->kind]++;
}

/* A candidate that resolved itself (GC removed the row and the file
 * together): forget it. */
static void mark_gone(struct fsck *f, struct problem *p)
{
    p->gone = true;
    f->found[p->kind]--;
}

static uint64_t problems_found(const struct fsck *f)
{
    uint64_t n = 0;
    for (int k = 0; k < P__COUNT; k++)
        n += f->found[k];
    return n;
}

static uint64_t problems_left(const struct fsck *f)
{
    uint64_t n = 0;
    for (int k = 0; k < P__COUNT; k++)
        n += f->found[k] - f->repaired[k];
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
    int n = snprintf(path, sizeof(path), "%s/ingest", f->root);

    if (n < 0 || (size_t)n >= sizeof(path)) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    dir = opendir(path);
    if (dir == NULL) {
        if (errno != ENOENT) { /* a store that never downloaded has none */
            fprintf(stderr, "ocimirror fsck: %s: %s\n", path, strerror(errno));
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
        f->ingest_files++;
        int64_t age = (int64_t)now - (int64_t)sb.st_mtime;
        if (f->holder && age < f->o.ingest_age_s) {
            f->ingest_live++; /* a download in flight */
            continue;
        }
        struct problem *p = add_problem(f, P_STALE_INGEST);
        if (p != NULL) {
            snprintf(p->name, sizeof(p->name), "%s", de->d_name);
            p->age_s = age;
        }
        if (f->o.repair) {
            /* Unlinking entries during readdir is allowed (POSIX). */
            if (unlinkat(dirfd(dir), de->d_name, 0) == 0 || errno == ENOENT) {
                if (p != NULL)
                    mark_repaired(f, p);
                else
                    f->repaired[P_STALE_INGEST]++;
            } else {
                fprintf(stderr, "ocimirror fsck: cannot remove %s/%s: %s\n", path, de->d_name,
                        strerror(errno));
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
    int err = om_store_attach(&f->st, f->root);
    if (err != OM_OK)
        fprintf(stderr, "ocimirror fsck: cannot open the store %s: %s\n", f->root,
                om_strerror(err));
    return err;
}

static int walk_one(void *ud, const om_digest *d, uint64_t size)
{
    struct fsck *f = ud;
    int err = om_store_verify(f->st, d);
    if (err == OM_ERR_NOTFOUND)
        return 0; /* removed meanwhile (GC): not ours to judge */
    f->blobs_checked++;
    f->bytes_checked += size;
    if (err == OM_ERR_DIGEST || err == OM_ERR_IO || err == OM_ERR_NOMEM) {
        struct problem *p = add_problem(f, err == OM_ERR_DIGEST ? P_CORRUPT_BLOB
                                                                : P_UNREADABLE_BLOB);
        if (p != NULL)
            p->d = *d;
    }
    if (f->ix != NULL) {
        bool known = true;
        if (om_index_fsck_known(f->ix, d, &known) == OM_OK && !known)
            f->unindexed++;
    }
    return 0;
}

static void repair_corrupt(struct fsck *f)
{
    for (size_t i = 0; i < f->n_p; i++) {
        struct problem *p = &f->p[i];
        if (p->kind != P_CORRUPT_BLOB)
            continue;
        int err = om_store_remove(f->st, &p->d);
        if (err == OM_OK || err == OM_ERR_NOTFOUND)
            mark_repaired(f, p);
        else
            fprintf(stderr, "ocimirror fsck: cannot remove %s: %s\n", p->d.str,
                    om_strerror(err));
    }
}

/* ---- the index against the store ---------------------------------------- */

static int tag_one(void *ud, const char *repo, const char *tag, const om_digest *d)
{
    struct fsck *f = ud;
    if (om_store_has(f->st, d, NULL))
        return 0;
    struct problem *p = add_problem(f, P_DANGLING_TAG);
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
        struct problem *p = add_problem(f, P_MISSING_MANIFEST);
        if (p != NULL)
            p->d = *d;
    }
    return 0;
}

static int blob_one(void *ud, const om_digest *d)
{
    struct fsck *f = ud;
    if (!om_store_has(f->st, d, NULL)) {
        struct problem *p = add_problem(f, P_MISSING_BLOB);
        if (p != NULL)
            p->d = *d;
    }
    return 0;
}

static bool is_index_kind(enum pkind k)
{
    return k == P_DANGLING_TAG || k == P_MISSING_MANIFEST || k == P_MISSING_BLOB;
}

static int check_index(struct fsck *f)
{
    int err;
    if ((err = om_index_fsck_counts(f->ix, &f->counts)) != OM_OK ||
        (err = om_index_fsck_tags(f->ix, tag_one, f, &f->bad_rows)) != OM_OK ||
        (err = om_index_fsck_manifests(f->ix, manifest_one, f, &f->bad_rows)) != OM_OK ||
        (err = om_index_fsck_blobs(f->ix, blob_one, f, &f->bad_rows)) != OM_OK)
        return err;
    /* Second look: content that arrived (a pull committing right now)
     * since the row was read is not a problem. */
    for (size_t i = 0; i < f->n_p; i++) {
        struct problem *p = &f->p[i];
        if (is_index_kind(p->kind) && om_store_has(f->st, &p->d, NULL))
            mark_gone(f, p);
    }
    return OM_OK;
}

/* Drop one row; the store is asked once more inside the transaction so a
 * manifest or blob committed meanwhile keeps its row. */
static int drop_row(struct fsck *f, struct problem *p)
{
    bool dropped = false;
    int err = OM_OK;
    if (om_store_has(f->st, &p->d, NULL)) {
        mark_gone(f, p);
        return OM_OK;
    }
    switch (p->kind) {
    case P_DANGLING_TAG:
        err = om_index_fsck_drop_tag(f->ix, p->repo, p->tag, &p->d, &dropped);
        break;
    case P_MISSING_MANIFEST:
        err = om_index_fsck_drop_manifest(f->ix, &p->d, &dropped);
        break;
    case P_MISSING_BLOB:
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
    while (i < f->n_p && err == OM_OK) {
        size_t start = i, batch = 0;
        if ((err = om_index_fsck_begin(f->ix)) != OM_OK)
            break;
        for (; i < f->n_p && batch < FSCK_REPAIR_BATCH && err == OM_OK; i++) {
            struct problem *p = &f->p[i];
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
            if (f->p[j].pending) {
                f->p[j].pending = false;
                mark_repaired(f, &f->p[j]);
            }
        }
    }
    return err;
}

/* ---- reports ------------------------------------------------------------- */

static void describe(const struct problem *p, char *buf, size_t sz)
{
    switch (p->kind) {
    case P_CORRUPT_BLOB:
        snprintf(buf, sz, "corrupt blob %s (content does not match its digest)", p->d.str);
        break;
    case P_UNREADABLE_BLOB:
        snprintf(buf, sz, "unreadable blob %s", p->d.str);
        break;
    case P_STALE_INGEST:
        snprintf(buf, sz, "stale ingest file %s (%" PRId64 " s old)", p->name, p->age_s);
        break;
    case P_DANGLING_TAG:
        snprintf(buf, sz, "tag %s:%s points at %s, not in the store", p->repo, p->tag, p->d.str);
        break;
    case P_MISSING_MANIFEST:
        snprintf(buf, sz, "manifest %s is in the index, not in the store", p->d.str);
        break;
    case P_MISSING_BLOB:
        snprintf(buf, sz, "blob %s is in the index, not in the store", p->d.str);
        break;
    default:
        snprintf(buf, sz, "index.db %s", p->name);
        break;
    }
}

static void report_text(const struct fsck *f)
{
    char line[OM_NAME_MAX + OM_TAG_MAX + NAME_MAX + 160];
    FILE *o = stdout;
    uint64_t found = problems_found(f), left = problems_left(f);

    fprintf(o, "ocimirror fsck: %s\n", f->root);
    if (f->holder && f->holder_pid > 0)
        fprintf(o, "  in use by:  pid %ld (a server or another tool has the index open)\n",
                f->holder_pid);
    else if (f->holder)
        fprintf(o, "  in use by:  another process (the index is open)\n");
    fprintf(o, "  blobs:      %" PRIu64 " checked (%" PRIu64 " bytes), %" PRIu64
               " corrupt, %" PRIu64 " unreadable\n",
            f->blobs_checked, f->bytes_checked, f->found[P_CORRUPT_BLOB],
            f->found[P_UNREADABLE_BLOB]);
    fprintf(o, "  ingest:     %" PRIu64 " file(s): %" PRIu64 " stale, %" PRIu64
               " in flight\n",
            f->ingest_files, f->found[P_STALE_INGEST], f->ingest_live);
    if (f->ix != NULL) {
        fprintf(o, "  index:      ok: %" PRIu64 " tags, %" PRIu64 " manifests, %" PRIu64
                   " blobs\n",
                f->counts.tags, f->counts.manifests, f->counts.blobs);
        fprintf(o, "              %" PRIu64 " dangling tag(s), %" PRIu64
                   " missing manifest(s), %" PRIu64 " missing blob(s)\n",
                f->found[P_DANGLING_TAG], f->found[P_MISSING_MANIFEST],
                f->found[P_MISSING_BLOB]);
        fprintf(o, "              %" PRIu64 " stored object(s) not in the index "
                   "(informational)\n",
                f->unindexed);
    } else {
        fprintf(o, "  index:      %s: %s\n", f->index_state, f->index_why);
        fprintf(o, "              (the server rebuilds it from the store when it starts)\n");
    }
    if (found > 0) {
        size_t shown = 0;
        fprintf(o, "problems:\n");
        for (size_t i = 0; i < f->n_p && shown < FSCK_SHOW_HUMAN; i++) {
            if (f->p[i].gone)
                continue;
            describe(&f->p[i], line, sizeof(line));
            fprintf(o, "  %s%s\n", line, f->p[i].repaired ? " [repaired]" : "");
            shown++;
        }
        if (found > shown)
            fprintf(o, "  ... and %" PRIu64 " more (--json lists up to %d)\n", found - shown,
                    FSCK_SHOW_JSON);
    }
    if (found == 0)
        fprintf(o, "result: clean\n");
    else if (left == 0)
        fprintf(o, "result: %" PRIu64 " problem(s) found, all repaired\n", found);
    else
        fprintf(o, "result: %" PRIu64 " problem(s) found, %" PRIu64 " left%s\n", found, left,
                f->o.repair ? "" : " (run with --repair to fix)");
}

/* json_pack with 'I' takes json_int_t; counts never exceed INT64_MAX. */
static json_int_t ji(uint64_t v)
{
    return (json_int_t)v;
}

static json_t *problem_json(const struct problem *p)
{
    json_t *o = json_pack("{s:s, s:b}", "kind", PKIND_NAME[p->kind], "repaired", p->repaired);
    if (o == NULL)
        return NULL;
    switch (p->kind) {
    case P_STALE_INGEST:
        json_object_set_new(o, "file", json_string(p->name));
        json_object_set_new(o, "age_s", json_integer(p->age_s));
        break;
    case P_DANGLING_TAG:
        json_object_set_new(o, "repo", json_string(p->repo));
        json_object_set_new(o, "tag", json_string(p->tag));
        json_object_set_new(o, "digest", json_string(p->d.str));
        break;
    case P_INDEX_UNUSABLE:
        json_object_set_new(o, "why", json_string(p->name));
        break;
    default:
        json_object_set_new(o, "digest", json_string(p->d.str));
        break;
    }
    return o;
}

static int report_json(const struct fsck *f)
{
    json_t *root = NULL, *list = NULL, *index = NULL;
    char *text = NULL;
    int err = OM_ERR_NOMEM;
    size_t listed = 0;

    list = json_array();
    if (list == NULL)
        goto done;
    for (size_t i = 0; i < f->n_p && listed < FSCK_SHOW_JSON; i++) {
        if (f->p[i].gone)
            continue;
        if (json_array_append_new(list, problem_json(&f->p[i])) != 0)
            goto done;
        listed++;
    }
    if (f->ix != NULL)
        index = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "state", "ok", "tags",
                          ji(f->counts.tags), "manifests", ji(f->counts.manifests), "blobs",
                          ji(f->counts.blobs), "dangling_tags", ji(f->found[P_DANGLING_TAG]),
                          "missing_manifests", ji(f->found[P_MISSING_MANIFEST]),
                          "missing_blobs", ji(f->found[P_MISSING_BLOB]), "unindexed_objects",
                          ji(f->unindexed), "rows_dropped",
                          ji(f->repaired[P_DANGLING_TAG] + f->repaired[P_MISSING_MANIFEST] +
                             f->repaired[P_MISSING_BLOB]));
    else
        index = json_pack("{s:s, s:s}", "state", f->index_state, "why", f->index_why);
    if (index == NULL)
        goto done;
    uint64_t found = problems_found(f), left = problems_left(f);
    root = json_pack(
        "{s:s, s:b, s:b, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I}, s:o,"
        " s:I, s:I, s:b, s:o, s:b}",
        "storage", f->root, "repair", f->o.repair, "in_use", f->holder, "in_use_pid",
        (json_int_t)f->holder_pid,
        "blobs", "checked", ji(f->blobs_checked), "bytes", ji(f->bytes_checked), "corrupt",
        ji(f->found[P_CORRUPT_BLOB]), "unreadable", ji(f->found[P_UNREADABLE_BLOB]), "removed",
        ji(f->repaired[P_CORRUPT_BLOB]),
        "ingest", "files", ji(f->ingest_files), "stale", ji(f->found[P_STALE_INGEST]),
        "in_flight", ji(f->ingest_live), "removed", ji(f->repaired[P_STALE_INGEST]),
        "index", index,
        "problems_found", ji(found), "problems_left", ji(left), "clean", left == 0,
        "problems", list, "problems_truncated", found > listed);
    index = list = NULL; /* "o" stole both, even when json_pack failed */
    if (root == NULL)
        goto done;
    text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    if (text == NULL)
        goto done;
    printf("%s\n", text);
    err = OM_OK;
done:
    free(text);
    json_decref(root);
    json_decref(index);
    json_decref(list);
    return err;
}

/* ---- the command ----------------------------------------------------------- */

static int open_index(struct fsck *f)
{
    int err = om_index_fsck_open(&f->ix, f->root, f->index_why, sizeof(f->index_why));
    if (err == OM_OK) {
        snprintf(f->index_state, sizeof(f->index_state), "ok");
        return OM_OK;
    }
    if (err == OM_ERR_NOTFOUND)
        snprintf(f->index_state, sizeof(f->index_state), "missing");
    else if (err == OM_ERR_DIGEST)
        snprintf(f->index_state, sizeof(f->index_state), "corrupt");
    else if (err == OM_ERR_INVALID)
        snprintf(f->index_state, sizeof(f->index_state), "unusable");
    else
        return err; /* busy, I/O: cannot judge */
    return OM_OK;
}

/* A missing index is a problem only when there is content to index: a
 * storage that never cached anything has none yet. */
static void note_index_unusable(struct fsck *f)
{
    if (f->ix != NULL || (strcmp(f->index_state, "missing") == 0 && f->blobs_checked == 0))
        return;
    struct problem *p = add_problem(f, P_INDEX_UNUSABLE);
    if (p != NULL)
        snprintf(p->name, sizeof(p->name), "%s: %s", f->index_state, f->index_why);
}

int om_cmd_fsck(int argc, char **argv)
{
    struct fsck f;
    struct om_config *cfg = NULL;
    char path[FSCK_PATH_MAX];
    struct stat sb;
    int status = 2, err;

    memset(&f, 0, sizeof(f));
    if ((err = parse_opts(argc, argv, &f.o)) != 0) {
        status = err == 1 ? 0 : 2;
        goto done;
    }
    if (om_cli_load_config(f.o.config, NULL, f.o.storage, &cfg) != 0)
        goto done;
    /* The report is the output; library warnings would only repeat it. */
    om_log_setup(OM_LOG_ERROR, OM_LOG_TEXT);
    f.root = cfg->storage_path;
    int n = snprintf(path, sizeof(path), "%s/blobs/sha256", f.root);
    if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "ocimirror fsck: %s is not an ocimirror storage directory"
                        " (no blobs/sha256)\n", f.root);
        goto done;
    }
    f.holder = storage_holder(f.root, &f.holder_pid); /* before opening the index */
    if ((err = check_ingest(&f)) != OM_OK)
        goto done;
    if ((err = open_store(&f)) != OM_OK)
        goto done;
    if ((err = open_index(&f)) != OM_OK) {
        fprintf(stderr, "ocimirror fsck: index: %s\n", f.index_why);
        goto done;
    }
    if ((err = om_store_walk(f.st, walk_one, &f)) != OM_OK) {
        fprintf(stderr, "ocimirror fsck: cannot walk %s/blobs: %s\n", f.root,
                om_strerror(err));
        goto done;
    }
    note_index_unusable(&f);
    if (f.o.repair)
        repair_corrupt(&f);
    if (f.ix != NULL) {
        if ((err = check_index(&f)) != OM_OK) {
            fprintf(stderr, "ocimirror fsck: reading the index: %s\n", om_strerror(err));
            goto done;
        }
        if (f.o.repair && (err = repair_index(&f)) != OM_OK) {
            fprintf(stderr, "ocimirror fsck: repairing the index: %s\n", om_strerror(err));
            goto done;
        }
    }
    if (f.o.json) {
        if (report_json(&f) != OM_OK) {
            fprintf(stderr, "ocimirror fsck: out of memory writing the report\n");
            goto done;
        }
    } else {
        report_text(&f);
    }
    status = problems_left(&f) == 0 ? 0 : 1;
done:
    fflush(stdout);
    om_index_fsck_close(f.ix);
    om_store_close(f.st);
    free(f.p);
    om_config_free(cfg);
    return status;
}
