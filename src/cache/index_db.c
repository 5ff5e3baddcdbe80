/* index_db.c — the one copy of the code that opens, checks, prepares and
 * closes a connection to <storage>/index.db, for every module that keeps
 * one: the SQLite backend (index_sqlite_open.c), GC (index_gc.c), fsck
 * (index_fsck.c) and the admin view (index_admin.c); the rebuild
 * (index_rebuild.c) prepares and finalizes its statements here too.
 * Declarations and the flags are in index_private.h.
 *
 * Opening (om_index__db_open), steps in this order, each when asked:
 * sqlite3_open_v2 (read-only or read-write, creating or not), extended
 * result codes off, busy timeout (another process holding a lock is waited
 * for, not a failure), journal_mode=WAL (readers never block the writer; a
 * crash loses at most the last transactions), synchronous=NORMAL (no fsync
 * per commit: the store is the truth and the index can be rebuilt), PRAGMA
 * quick_check, PRAGMA user_version — 0 = never given a schema: create
 * SCHEMA_V1 when asked.  Who opens with what:
 *   server (index_sqlite_open.c)  WRITE CREATE WAL SYNC_NORMAL QUICK_CHECK VERSION
 *   gc                            WRITE SYNC_NORMAL VERSION
 *   fsck                          WRITE QUICK_CHECK VERSION (never creates; WAL
 *                                 is persistent in the file and left alone)
 *   admin                         read-only, nothing checked
 * The helper decides only that a quick_check answer other than "ok" ends
 * the open (nothing after it may read a damaged file).  Whether that, a
 * failed step or the schema version found makes the file unusable is the
 * caller's judgement, in its own words: the server calls it corrupt and
 * moves it aside, fsck reports a finding, GC refuses to run.  So a failure
 * is handed back in struct om_index_db_res, not logged here.
 *
 * The schema: SCHEMA_V1 below, OM_INDEX_SCHEMA_VERSION in index_private.h.
 * If you change it, bump the version, add a migration step where the
 * server opens (index_sqlite_open.c), and update every module's SQL: the
 * SQLite backend's statements (index_sqlite.c), the rebuild
 * (index_rebuild.c), GC (index_gc.c, GC_SCHEMA_VERSION), fsck
 * (index_fsck.c) and the admin queries (index_admin.c).
 */
#include "cache/index_private.h"

#include "core/log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define IX_STR_(x) #x
#define IX_STR(x) IX_STR_(x)

/* ---- errors --------------------------------------------------------------- */

int om_index__sql_err_msg(int rc, const char *what, const char *msg)
{
    int err;
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return OM_OK;
    case SQLITE_NOMEM: err = OM_ERR_NOMEM; break;
    case SQLITE_FULL: err = OM_ERR_NOSPACE; break;
    case SQLITE_TOOBIG: err = OM_ERR_TOOBIG; break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: err = OM_ERR_TIMEOUT; break;
    default: err = OM_ERR_IO; break;
    }
    om_log(OM_LOG_ERROR, "index: %s: %s (sqlite %d)", what, msg, rc);
    return err;
}

int om_index__sql_err(sqlite3 *db, int rc, const char *what)
{
    return om_index__sql_err_msg(rc, what, db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* ---- opening and checking the database ------------------------------------ */

/* Schema version 1.  WITHOUT ROWID: every table is looked up by its key. */
static const char SCHEMA_V1[] =
    "CREATE TABLE repos(name TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE tags(repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,"
    " media_type TEXT NOT NULL, size INTEGER NOT NULL, fetched_at INTEGER NOT NULL,"
    " checked_at INTEGER NOT NULL, last_pulled INTEGER NOT NULL DEFAULT 0,"
    " pull_count INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(repo, tag)) WITHOUT ROWID;"
    "CREATE INDEX tags_digest ON tags(digest);"
    "CREATE TABLE manifests(digest TEXT PRIMARY KEY NOT NULL, media_type TEXT NOT NULL,"
    " size INTEGER NOT NULL, created_at INTEGER NOT NULL, last_access INTEGER NOT NULL,"
    " pull_count INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE manifest_repos(repo TEXT NOT NULL, digest TEXT NOT NULL,"
    " PRIMARY KEY(repo, digest)) WITHOUT ROWID;"
    "CREATE INDEX manifest_repos_digest ON manifest_repos(digest);"
    "CREATE TABLE manifest_children(parent TEXT NOT NULL, child TEXT NOT NULL,"
    " PRIMARY KEY(parent, child)) WITHOUT ROWID;"
    "CREATE INDEX manifest_children_child ON manifest_children(child);"
    "CREATE TABLE blobs(digest TEXT PRIMARY KEY NOT NULL, size INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL, last_access INTEGER NOT NULL,"
    " pull_count INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE blob_repos(repo TEXT NOT NULL, digest TEXT NOT NULL,"
    " PRIMARY KEY(repo, digest)) WITHOUT ROWID;"
    "CREATE INDEX blob_repos_digest ON blob_repos(digest);"
    "CREATE TABLE routes(name TEXT PRIMARY KEY NOT NULL, upstream TEXT NOT NULL,"
    " canonical TEXT NOT NULL, decided_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE negative(name TEXT NOT NULL, upstream TEXT NOT NULL,"
    " expires_at INTEGER NOT NULL, PRIMARY KEY(name, upstream)) WITHOUT ROWID;"
    "CREATE TABLE referrers(repo TEXT NOT NULL, digest TEXT NOT NULL, json BLOB NOT NULL,"
    " fetched_at INTEGER NOT NULL, PRIMARY KEY(repo, digest)) WITHOUT ROWID;";

int om_index__path(char *out, size_t outsz, const char *root, const char *name)
{
    int n = snprintf(out, outsz, "%s/%s", root, name);
    return (n < 0 || (size_t)n >= outsz) ? OM_ERR_TOOBIG : OM_OK;
}

/* Run a PRAGMA that answers one text row (journal_mode, quick_check) and
 * copy that answer into out. */
int om_index__pragma_text(sqlite3 *db, const char *sql, char *out, size_t outsz)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    out[0] = '\0';
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const unsigned char *v = sqlite3_column_text(s, 0);
            snprintf(out, outsz, "%s", v != NULL ? (const char *)v : "");
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(s);
    return rc;
}

static int pragma_int(sqlite3 *db, const char *sql, int64_t *out)
{
    char buf[32];
    int rc = om_index__pragma_text(db, sql, buf, sizeof(buf));
    *out = strtoll(buf, NULL, 10);
    return rc;
}

/* Create the schema in a new (missing or empty) database, atomically. */
static int create_schema(sqlite3 *db)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, SCHEMA_V1, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "PRAGMA user_version=" IX_STR(OM_INDEX_SCHEMA_VERSION), NULL,
                          NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        om_log(OM_LOG_ERROR, "index: creating schema: %s", msg != NULL ? msg : "");
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_free(msg);
    return rc;
}

int om_index__db_open(const char *path, unsigned flags, sqlite3 **dbp,
                      struct om_index_db_res *res)
{
    char answer[256];
    int rc = SQLITE_OK, err = OM_OK;
    int open_flags = SQLITE_OPEN_NOMUTEX;
    enum om_index_db_step step = OM_INDEX_DB_STEP_OPEN;
    const char *what = "open";
    struct stat sb;

    memset(res, 0, sizeof(*res));
    res->existed = stat(path, &sb) == 0;
    open_flags |= (flags & OM_INDEX_DB_WRITE) ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
    if (flags & OM_INDEX_DB_CREATE)
        open_flags |= SQLITE_OPEN_CREATE;
    *dbp = NULL;
    rc = sqlite3_open_v2(path, dbp, open_flags, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_extended_result_codes(*dbp, 0);
    step = OM_INDEX_DB_STEP_BUSY;
    what = "PRAGMA busy_timeout";
    if ((rc = sqlite3_busy_timeout(*dbp, OM_INDEX_BUSY_TIMEOUT_MS)) != SQLITE_OK)
        goto fail;
    if (flags & OM_INDEX_DB_WAL) {
        step = OM_INDEX_DB_STEP_WAL;
        what = "PRAGMA journal_mode";
        rc = om_index__pragma_text(*dbp, "PRAGMA journal_mode=WAL", answer, sizeof(answer));
        if (rc != SQLITE_OK)
            goto fail;
        if (strcmp(answer, "wal") != 0)
            om_log(OM_LOG_WARN, "index: %s: journal mode is %s, not wal", path, answer);
    }
    if (flags & OM_INDEX_DB_SYNC_NORMAL) {
        step = OM_INDEX_DB_STEP_SYNC;
        what = "PRAGMA synchronous";
        if ((rc = sqlite3_exec(*dbp, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL)) != SQLITE_OK)
            goto fail;
    }
    if (flags & OM_INDEX_DB_QUICK_CHECK) {
        step = OM_INDEX_DB_STEP_QUICK_CHECK;
        what = "PRAGMA quick_check";
        rc = om_index__pragma_text(*dbp, "PRAGMA quick_check", res->check, sizeof(res->check));
        if (rc != SQLITE_OK)
            goto fail;
        if (strcmp(res->check, "ok") != 0) {
            /* The steps after this one would read (or write) a damaged file. */
            sqlite3_close(*dbp);
            *dbp = NULL;
            err = OM_ERR_DIGEST;
            goto done;
        }
    }
    if (flags & OM_INDEX_DB_VERSION) {
        step = OM_INDEX_DB_STEP_VERSION;
        what = "PRAGMA user_version";
        if ((rc = pragma_int(*dbp, "PRAGMA user_version", &res->version)) != SQLITE_OK)
            goto fail;
        if (res->version == 0 && (flags & OM_INDEX_DB_CREATE)) {
            step = OM_INDEX_DB_STEP_SCHEMA;
            what = "create schema";
            if ((rc = create_schema(*dbp)) != SQLITE_OK)
                goto fail;
            res->created = true;
        }
    }
    goto done;
fail:
    res->step = step;
    res->what = what;
    res->rc = rc;
    snprintf(res->msg, sizeof(res->msg), "%s",
             *dbp != NULL ? sqlite3_errmsg(*dbp) : sqlite3_errstr(rc));
    sqlite3_close(*dbp);
    *dbp = NULL;
    err = OM_ERR_IO;
done:
    return err;
}

int om_index__move_aside(const char *path)
{
    char dst[PATH_MAX + 64], src[PATH_MAX + 8], dst_wal[PATH_MAX + 72];
    struct stat sb;
    long long t = (long long)time(NULL);
    int err = OM_OK;

    for (int i = 0;; i++) {
        if (i == 0)
            snprintf(dst, sizeof(dst), "%s.corrupt-%lld", path, t);
        else
            snprintf(dst, sizeof(dst), "%s.corrupt-%lld.%d", path, t, i);
        if (lstat(dst, &sb) != 0)
            break;
        if (i == 100) {
            err = OM_ERR_IO;
            goto done;
        }
    }
    if (rename(path, dst) != 0 && errno != ENOENT) {
        om_log(OM_LOG_ERROR, "index: rename %s: %s", path, strerror(errno));
        err = OM_ERR_IO;
        goto done;
    }
    snprintf(src, sizeof(src), "%s-wal", path);
    snprintf(dst_wal, sizeof(dst_wal), "%s-wal", dst);
    if (rename(src, dst_wal) != 0 && errno != ENOENT) {
        om_log(OM_LOG_ERROR, "index: rename %s: %s", src, strerror(errno));
        err = OM_ERR_IO;
        goto done;
    }
    snprintf(src, sizeof(src), "%s-shm", path);
    if (unlink(src) != 0 && errno != ENOENT) {
        om_log(OM_LOG_ERROR, "index: unlink %s: %s", src, strerror(errno));
        err = OM_ERR_IO;
        goto done;
    }
    om_log(OM_LOG_WARN, "index: %s was unusable; moved to %s, rebuilding from the store",
           path, dst);
done:
    return err;
}

/* ---- statements ----------------------------------------------------------- */

int om_index__db_prepare_rc(sqlite3 *db, const char *const *sql, size_t n, unsigned prep_flags,
                            sqlite3_stmt **stmts, size_t *failed)
{
    int rc = SQLITE_OK;
    for (size_t i = 0; i < n; i++) {
        if ((rc = sqlite3_prepare_v3(db, sql[i], -1, prep_flags, &stmts[i], NULL)) != SQLITE_OK) {
            *failed = i;
            break;
        }
    }
    return rc;
}

int om_index__db_prepare(sqlite3 *db, const char *const *sql, size_t n, unsigned prep_flags,
                         sqlite3_stmt **stmts)
{
    size_t failed = 0;
    int rc = om_index__db_prepare_rc(db, sql, n, prep_flags, stmts, &failed);
    return rc == SQLITE_OK ? OM_OK : om_index__sql_err(db, rc, sql[failed]);
}

void om_index__db_finalize(sqlite3_stmt **stmts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sqlite3_finalize(stmts[i]);
        stmts[i] = NULL;
    }
}

void om_index__db_close(sqlite3 *db, sqlite3_stmt **stmts, size_t n, const char *who)
{
    if (n > 0)
        om_index__db_finalize(stmts, n);
    if (db != NULL && sqlite3_close(db) != SQLITE_OK)
        om_log(OM_LOG_ERROR, "%s: close index.db: %s", who, sqlite3_errmsg(db));
}
