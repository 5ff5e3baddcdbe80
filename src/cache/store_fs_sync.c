/* store_fs_sync.c — durability of committed objects off the request path
 * (store_fs.h): the journal of objects committed but not yet known durable,
 * the background thread that makes them durable, and the check after an
 * unclean shutdown.
 *
 * Why: a commit used to fsync the whole file before the rename (a 512 MiB
 * blob's worth of dirty pages is ≥ 1 s on this kind of disk), and the
 * client's last byte waited for it.  Now a commit is
 *   1. the digest appended to JOURNAL and the journal fdatasync'ed (a few
 *      dozen bytes; concurrent commits share one fdatasync),
 *   2. the rename into blobs/ — visible at once: a finished pull is a
 *      cached blob, the next request a hit,
 * and this file's thread, once an entry is SYNC_AGE_MS old, fsyncs the
 * object and its fan-out directory, then forgets the entry; when nothing is
 * pending the journal is emptied.
 *
 * The power-loss rule: the journal entry is durable before the name can be,
 * so after a crash of the machine every object whose bytes may not have
 * reached the disk is listed.  At the owner's next open (recover), a journal
 * with entries means the last shutdown was not clean: each listed object
 * present in blobs/ is re-hashed, and one that fails (a lost page cache
 * leaves zeroes or a short file) is removed, said in the log, and fetched
 * again by the next request.  Only those objects are checked, not the whole
 * store.  SIGKILL loses nothing (the page cache survives): the entries are
 * merely checked at the next start.  A clean close syncs everything and
 * empties the journal.
 *
 * Thread safety: jmu guards the journal file's appends and rewrites and the
 * pending list; dmu serialises the journal's fdatasync (the group commit)
 * and is taken before jmu wherever both are held; the thread owns nothing
 * else.  Tools attached beside the owner (gc, fsck)
 * commit nothing and never open the journal.
 */
#include "cache/store_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define JOURNAL "unsynced"
#define JOURNAL_TMP "unsynced.tmp"
#define SYNC_AGE_MS 1000          /* an entry waits this long: commits batch up */
#define SYNC_TICK_MS 250
#define JOURNAL_LINE_MAX 80       /* "sha256:<64 hex>\n" is 72 */
#define JOURNAL_REWRITE_LINES 4096
#define RECOVER_MAX (1u << 20)    /* entries read back at open, at most */

struct pending {
    om_digest d;
    int64_t t_ms;                 /* when it was journalled (monotonic) */
};

struct om_store_fs_sync {
    struct om_store_fs *st;       /* borrowed: the store this belongs to */
    pthread_mutex_t jmu;
    pthread_cond_t cv;            /* the thread's tick, or stop */
    pthread_mutex_t dmu;          /* one journal fdatasync at a time */
    int jfd;                      /* JOURNAL, O_WRONLY|O_APPEND; owned */
    uint64_t wseq, dseq;          /* lines written / known durable (dseq under dmu) */
    uint64_t lines;               /* lines in the journal file */
    struct pending *q;            /* owned; oldest first */
    size_t n, cap;
    bool stop;
    pthread_t th;
    bool started;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* fsync one committed object and mark its fan-out directory (by its two
 * hex digits) for one fsync after the batch.  An object removed meanwhile
 * (GC, quarantine) needs nothing. */
static void sync_object(struct om_store_fs *st, const om_digest *d, bool fanout[256])
{
    char path[STORE_PATH_MAX];
    const char *hex = om_digest_hex(d);
    int n = snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", st->root, hex, hex);
    if (n < 0 || (size_t)n >= sizeof(path))
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (fsync(fd) != 0)
        om_log(OM_LOG_ERROR, "store: fsync %s: %s", path, strerror(errno));
    close(fd);
    unsigned v = 0;
    for (int i = 0; i < 2; i++)
        v = v * 16 + (unsigned)(hex[i] <= '9' ? hex[i] - '0' : hex[i] - 'a' + 10);
    fanout[v & 0xff] = true;
}

/* Rewrite the journal with only the pending entries (it grows while
 * commits keep coming faster than the list empties).  Caller holds dmu
 * and jmu. */
static void rewrite_journal(struct om_store_fs_sync *s)
{
    char tmp[STORE_PATH_MAX], path[STORE_PATH_MAX];
    FILE *f = NULL;
    int fd = -1;
    if (om_store_fs__root_path(s->st, JOURNAL_TMP, tmp, sizeof(tmp)) != OM_OK ||
        om_store_fs__root_path(s->st, JOURNAL, path, sizeof(path)) != OM_OK)
        return;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
        goto fail;
    fd = -1; /* f owns it */
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "%s\n", s->q[i].d.str);
    if (fflush(f) != 0 || fdatasync(fileno(f)) != 0 || rename(tmp, path) != 0)
        goto fail;
    fclose(f);
    f = NULL;
    (void)om_store_fs__fsync_dir(s->st->root);
    int nfd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (nfd >= 0) {
        close(s->jfd);
        s->jfd = nfd;
        s->lines = s->n;
    }
    return;
fail:
    om_log(OM_LOG_WARN, "store: cannot rewrite %s (%s): it keeps growing until empty", path,
           strerror(errno));
    if (f != NULL)
        fclose(f);
    if (fd >= 0)
        close(fd);
    unlink(tmp);
}

/* Make durable every entry journalled before `before` (INT64_MAX: all),
 * then forget them; an empty list empties the journal.  Runs on the
 * thread, or at close after it stopped: one caller at a time. */
static void sync_due(struct om_store_fs_sync *s, int64_t before)
{
    bool fanout[256] = {false};
    size_t due = 0;

    pthread_mutex_lock(&s->jmu);
    while (due < s->n && s->q[due].t_ms < before)
        due++;
    struct pending *copy = due ? malloc(due * sizeof(*copy)) : NULL; /* freed below */
    if (copy != NULL)
        memcpy(copy, s->q, due * sizeof(*copy));
    pthread_mutex_unlock(&s->jmu);
    if (due == 0 || copy == NULL) {
        free(copy);
        return;
    }
    for (size_t i = 0; i < due; i++)
        sync_object(s->st, &copy[i].d, fanout);
    free(copy);
    for (unsigned v = 0; v < 256; v++) {
        char dir[STORE_PATH_MAX];
        if (fanout[v] && snprintf(dir, sizeof(dir), "%s/blobs/sha256/%02x", s->st->root, v) <
                             (int)sizeof(dir))
            (void)om_store_fs__fsync_dir(dir);
    }

    /* dmu first (the order om_store_fs__journal takes them in): no
     * fdatasync may run on a descriptor the rewrite replaces. */
    pthread_mutex_lock(&s->dmu);
    pthread_mutex_lock(&s->jmu);
    memmove(s->q, s->q + due, (s->n - due) * sizeof(*s->q));
    s->n -= due;
    if (s->n == 0) {
        /* Every committed object is durable: the journal says nothing. */
        if (ftruncate(s->jfd, 0) == 0 && fdatasync(s->jfd) == 0)
            s->lines = 0;
    } else if (s->lines > JOURNAL_REWRITE_LINES && s->lines > 2 * s->n) {
        rewrite_journal(s);
    }
    pthread_mutex_unlock(&s->jmu);
    pthread_mutex_unlock(&s->dmu);
}

static void *sync_thread(void *arg)
{
    struct om_store_fs_sync *s = arg;
    pthread_mutex_lock(&s->jmu);
    while (!s->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += SYNC_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->jmu, &ts);
        if (s->stop || s->n == 0)
            continue;
        pthread_mutex_unlock(&s->jmu);
        sync_due(s, mono_ms() - SYNC_AGE_MS);
        pthread_mutex_lock(&s->jmu);
    }
    pthread_mutex_unlock(&s->jmu);
    return NULL;
}

/* ---- recovery ------------------------------------------------------------ */

/* Re-hash the objects a journal left by an unclean shutdown lists; remove
 * those that fail.  Runs at open, before the byte total is computed. */
static void recover(struct om_store_fs *st, const char *path)
{
    char line[JOURNAL_LINE_MAX + 2];
    size_t listed = 0, present = 0, damaged = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (listed < RECOVER_MAX && fgets(line, sizeof(line), f) != NULL) {
        size_t len = strcspn(line, "\n");
        om_digest d;
        line[len] = '\0';
        if (om_digest_parse(&d, line, len) != OM_OK)
            continue; /* a torn last line: its commit never happened */
        listed++;
        int err = om_store_verify(&st->base, &d);
        if (err == OM_ERR_NOTFOUND)
            continue;
        present++;
        if (err == OM_OK)
            continue;
        damaged++;
        char obj[STORE_PATH_MAX];
        const char *hex = om_digest_hex(&d);
        snprintf(obj, sizeof(obj), "%s/blobs/sha256/%.2s/%s", st->root, hex, hex);
        if (unlink(obj) == 0)
            om_log(OM_LOG_WARN,
                   "store: %s was committed just before an unclean shutdown and its bytes did "
                   "not survive (%s): removed; it is fetched again when asked for",
                   d.str, om_strerror(err));
    }
    fclose(f);
    if (damaged > 0) {
        /* A byte total recorded before cannot know what was removed. */
        char rec[STORE_PATH_MAX];
        if (om_store_fs__root_path(st, SIZE_RECORD, rec, sizeof(rec)) == OM_OK)
            unlink(rec);
    }
    if (listed > 0)
        om_log(OM_LOG_WARN,
               "store: the last shutdown was not clean: %zu recently committed object(s) "
               "re-checked, %zu present, %zu damaged and removed",
               listed, present, damaged);
}

/* ---- the API (store_fs.h) ------------------------------------------------ */

int om_store_fs__sync_open(struct om_store_fs *st)
{
    char path[STORE_PATH_MAX];
    int err = OM_OK;
    struct om_store_fs_sync *s = NULL;

    if ((err = om_store_fs__root_path(st, JOURNAL, path, sizeof(path))) != OM_OK)
        goto done;
    recover(st, path);
    s = calloc(1, sizeof(*s)); /* owned by st->sync; freed by om_store_fs__sync_close */
    if (s == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    s->st = st;
    s->jfd = -1;
    pthread_mutex_init(&s->jmu, NULL);
    pthread_mutex_init(&s->dmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->jfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (s->jfd < 0 || fdatasync(s->jfd) != 0 || om_store_fs__fsync_dir(st->root) != OM_OK) {
        om_log(OM_LOG_ERROR, "store: cannot open %s: %s", path, strerror(errno));
        err = om_store_sys_err(errno);
        goto done;
    }
    if (pthread_create(&s->th, NULL, sync_thread, s) != 0) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    s->started = true;
    st->sync = s;
    s = NULL;
done:
    if (s != NULL) {
        st->sync = s;
        om_store_fs__sync_close(st);
    }
    return err;
}

int om_store_fs__journal(struct om_store_fs *st, const om_digest *d)
{
    struct om_store_fs_sync *s = st->sync;
    char line[JOURNAL_LINE_MAX];
    int err = OM_OK;
    uint64_t mine;

    if (s == NULL)
        return OM_OK; /* attached: a tool beside the owner commits nothing */
    int n = snprintf(line, sizeof(line), "%s\n", d->str);
    if (n < 0 || (size_t)n >= sizeof(line))
        return OM_ERR_INVALID;
    pthread_mutex_lock(&s->jmu);
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        struct pending *q = realloc(s->q, cap * sizeof(*q));
        if (q == NULL) {
            pthread_mutex_unlock(&s->jmu);
            return OM_ERR_NOMEM;
        }
        s->q = q;
        s->cap = cap;
    }
    if (write(s->jfd, line, (size_t)n) != n) {
        int e = errno;
        pthread_mutex_unlock(&s->jmu);
        om_log(OM_LOG_ERROR, "store: cannot append to the journal: %s", strerror(e));
        return om_store_sys_err(e);
    }
    s->q[s->n++] = (struct pending){*d, mono_ms()};
    s->lines++;
    mine = ++s->wseq;
    pthread_mutex_unlock(&s->jmu);

    /* Group commit: one fdatasync makes every line written so far durable;
     * a commit that finds its line already covered skips its own. */
    pthread_mutex_lock(&s->dmu);
    if (s->dseq < mine) {
        pthread_mutex_lock(&s->jmu);
        uint64_t upto = s->wseq;
        int fd = s->jfd;
        pthread_mutex_unlock(&s->jmu);
        if (fdatasync(fd) == 0) {
            s->dseq = upto;
        } else {
            int e = errno;
            om_log(OM_LOG_ERROR, "store: cannot make the journal durable: %s", strerror(e));
            err = om_store_sys_err(e);
        }
    }
    pthread_mutex_unlock(&s->dmu);
    return err;
}

size_t om_store_fs__unsynced(struct om_store_fs *st)
{
    struct om_store_fs_sync *s = st->sync;
    size_t n = 0;
    if (s == NULL)
        return 0;
    pthread_mutex_lock(&s->jmu);
    n = s->n;
    pthread_mutex_unlock(&s->jmu);
    return n;
}

void om_store_fs__sync_close(struct om_store_fs *st)
{
    struct om_store_fs_sync *s = st->sync;
    if (s == NULL)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->jmu);
        s->stop = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->jmu);
        pthread_join(s->th, NULL);
    }
    if (s->jfd >= 0) {
        sync_due(s, INT64_MAX); /* a clean close: everything durable, journal empty */
        close(s->jfd);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->dmu);
    pthread_mutex_destroy(&s->jmu);
    free(s->q);
    free(s);
    st->sync = NULL;
}
