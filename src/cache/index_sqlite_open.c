/* index_sqlite_open.c — the SQLite backend's life cycle: open (and check,
 * and recover) <storage>/index.db, the append-only <storage>/tags.log,
 * close, rebuild.  The queries are index_sqlite.c's; the handle is in
 * index_sqlite.h.
 *
 * Design:
 *   - Open: index_db.c opens the server's connection with every check
 *     (WAL, synchronous=NORMAL, quick_check, schema version; a new file gets
 *     the schema); this file judges what it found (db_open) and prepares
 *     the statements (index_sqlite.c).  A schema change with a migration
 *     step goes into db_open.
 *   - Corruption: open failure on an existing file, "file is not a
 *     database", a PRAGMA quick_check that is not "ok" or a schema version
 *     we do not know → the file (and its -wal) is renamed to
 *     index.db.corrupt-<unix time>, -shm removed (om_index__move_aside), a
 *     fresh database created and rebuilt from the store (index_rebuild.c).
 *     SQLITE_BUSY, FULL and NOMEM are not corruption and are returned as
 *     errors.  A database created fresh (missing or empty file) while the
 *     store holds content is rebuilt too.
 *   - tags.log: every om_index_tag_put() appends one compact JSON object
 *     {"repo","tag","digest","media_type","size","t"} + '\n' with O_APPEND
 *     and a single write(2), BEFORE the database is updated, so the log is
 *     never behind the database.  A line torn by a crash is detected at
 *     open (the file does not end in '\n') and after a short write; the
 *     next append then starts with '\n' so a torn line never swallows a
 *     good one.  GC appends deletion records to the same file
 *     (index_gc.c).
 *   - The mutex (ix->mu) is created here and held by every operation;
 *     rebuild holds it throughout, so other calls wait.
 */
#include "cache/index_sqlite.h"

#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Everything the server's connection asks of index_db.c. */
#define SERVER_DB_FLAGS                                                             \
    (OM_INDEX_DB_WRITE | OM_INDEX_DB_CREATE | OM_INDEX_DB_WAL | OM_INDEX_DB_SYNC_NORMAL | \
     OM_INDEX_DB_QUICK_CHECK | OM_INDEX_DB_VERSION)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- opening and judging the database ------------------------------------ */

static bool rc_is_corrupt(int rc)
{
    rc &= 0xff;
    return rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT || rc == SQLITE_CANTOPEN;
}

/* Open ix->db_path into ix->db and check it.  On failure ix->db is NULL
 * and *corrupt says whether moving the file aside and starting over can
 * help (not a database, corrupt, unknown schema version) or not (busy,
 * disk full, out of memory, cannot create).  *fresh: the file was new
 * (missing or empty) and was given the schema. */
static int db_open(struct om_index_sqlite *ix, bool *corrupt, bool *fresh)
{
    struct om_index_db_res res;
    char answer[256];
    int err;

    *corrupt = false;
    *fresh = false;
    err = om_index__db_open(ix->db_path, SERVER_DB_FLAGS, &ix->db, &res);
    if (err == OM_ERR_DIGEST) {
        snprintf(answer, sizeof(answer), "%s", res.check);
        for (char *c = answer; *c != '\0'; c++)
            *c = *c == '\n' ? ' ' : *c; /* one log line */
        om_log(OM_LOG_WARN, "index: %s: quick_check says: %s", ix->db_path, answer);
        *corrupt = true;
        err = OM_ERR_IO;
        goto done;
    }
    if (err != OM_OK) {
        /* "Cannot open" is corruption only for a file that exists (a missing
         * directory or a permission problem is not fixed by moving it). */
        *corrupt = rc_is_corrupt(res.rc) && ((res.rc & 0xff) != SQLITE_CANTOPEN || res.existed);
        err = om_index__sql_err_msg(res.rc, res.what, res.msg);
        goto done;
    }
    if (res.created) {
        *fresh = true;
    } else if (res.version != OM_INDEX_SCHEMA_VERSION) {
        om_log(OM_LOG_WARN, "index: %s has schema version %lld, this build knows %d",
               ix->db_path, (long long)res.version, OM_INDEX_SCHEMA_VERSION);
        *corrupt = true;
        err = OM_ERR_IO;
        sqlite3_close(ix->db);
        ix->db = NULL;
    }
done:
    return err;
}

/* ---- tags.log ------------------------------------------------------------ */

/* Open tags.log for appending and note whether it ends in a torn line. */
static int log_open(struct om_index_sqlite *ix)
{
    struct stat sb;
    char last = '\n';

    ix->log_fd = open(ix->log_path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (ix->log_fd < 0 || fstat(ix->log_fd, &sb) != 0) {
        om_log(OM_LOG_ERROR, "index: open %s: %s", ix->log_path, strerror(errno));
        return OM_ERR_IO;
    }
    if (sb.st_size > 0 && pread(ix->log_fd, &last, 1, sb.st_size - 1) != 1)
        return OM_ERR_IO;
    ix->log_need_nl = last != '\n';
    return OM_OK;
}

int om_index_sqlite__log_append(struct om_index_sqlite *ix, const char *repo, const char *tag,
                                const om_digest *d, const char *media_type, uint64_t size,
                                int64_t t)
{
    char line[OM_INDEX_LOG_LINE_MAX + 2]; /* optional leading '\n' + record + '\n' */
    size_t off = ix->log_need_nl ? 1 : 0, n;
    ssize_t w;
    int err = OM_OK;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "repo", repo, "tag", tag,
                          "digest", d->str, "media_type", media_type, "size",
                          (json_int_t)size, "t", (json_int_t)t); /* freed below */

    if (o == NULL) { /* invalid UTF-8 in a string, or no memory */
        err = OM_ERR_INVALID;
        goto done;
    }
    line[0] = '\n';
    n = json_dumpb(o, line + off, OM_INDEX_LOG_LINE_MAX, JSON_COMPACT);
    if (n == 0 || n > OM_INDEX_LOG_LINE_MAX) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    line[off + n] = '\n';
    do {
        w = write(ix->log_fd, line, off + n + 1);
    } while (w < 0 && errno == EINTR);
    if (w != (ssize_t)(off + n + 1)) {
        int e = w < 0 ? errno : ENOSPC;
        om_log(OM_LOG_ERROR, "index: append %s: %s", ix->log_path, strerror(e));
        ix->log_need_nl = true; /* whatever landed is a torn line */
        err = (e == ENOSPC || e == EDQUOT) ? OM_ERR_NOSPACE : OM_ERR_IO;
        goto done;
    }
    ix->log_need_nl = false;
done:
    json_decref(o);
    return err;
}

/* ---- open, close, rebuild ------------------------------------------------ */

static int store_nonempty_cb(void *ud, const om_digest *d, uint64_t size)
{
    (void)ud; (void)d; (void)size;
    return 1;
}

static int rebuild_locked(struct om_index_sqlite *ix, size_t *n_manifests, size_t *n_tags)
{
    return om_index__rebuild_db(ix->db, ix->base.st, ix->log_path, now_ms(), n_manifests,
                                n_tags);
}

int om_index_sqlite_open(struct om_index **out, struct om_store *st, bool *rebuilt)
{
    struct om_index_sqlite *ix = NULL;
    const char *root = om_store_root(st);
    bool corrupt = false, fresh = false, need_rebuild = false;
    int err = OM_OK;

    *out = NULL;
    if (rebuilt != NULL)
        *rebuilt = false;
    ix = calloc(1, sizeof(*ix)); /* owned by the caller via *out, or closed below */
    if (ix == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    pthread_mutex_init(&ix->mu, NULL);
    ix->base.ops = &om_index_sqlite__ops;
    ix->base.st = st;
    ix->log_fd = -1;
    if ((err = om_index__path(ix->db_path, sizeof(ix->db_path), root, "index.db")) != OM_OK ||
        (err = om_index__path(ix->log_path, sizeof(ix->log_path), root, "tags.log")) != OM_OK)
        goto done;
    if ((err = log_open(ix)) != OM_OK)
        goto done;

    err = db_open(ix, &corrupt, &fresh);
    if (err != OM_OK && corrupt) {
        if ((err = om_index__move_aside(ix->db_path)) != OM_OK)
            goto done;
        need_rebuild = true;
        err = db_open(ix, &corrupt, &fresh);
    }
    if (err != OM_OK)
        goto done;
    if (fresh && !need_rebuild && om_store_walk(st, store_nonempty_cb, NULL) == 1) {
        om_log(OM_LOG_WARN, "index: %s is new but the store has content; rebuilding",
               ix->db_path);
        need_rebuild = true;
    }
    if ((err = om_index_sqlite__prepare(ix)) != OM_OK)
        goto done;
    if (need_rebuild) {
        if ((err = rebuild_locked(ix, NULL, NULL)) != OM_OK)
            goto done;
        if (rebuilt != NULL)
            *rebuilt = true;
    }
    *out = &ix->base;
    ix = NULL;
done:
    om_index_sqlite__close(ix != NULL ? &ix->base : NULL);
    return err;
}

void om_index_sqlite__close(struct om_index *base)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);

    if (ix == NULL)
        return;
    om_index__db_close(ix->db, ix->stmt, S__COUNT, "index");
    if (ix->log_fd >= 0)
        close(ix->log_fd);
    pthread_mutex_destroy(&ix->mu);
    free(ix);
}

int om_index_sqlite__rebuild(struct om_index *base, size_t *n_manifests, size_t *n_tags)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);

    pthread_mutex_lock(&ix->mu);
    int err = rebuild_locked(ix, n_manifests, n_tags);
    pthread_mutex_unlock(&ix->mu);
    return err;
}
