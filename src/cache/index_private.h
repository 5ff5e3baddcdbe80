/* index_private.h — shared by the modules that open <storage>/index.db
 * themselves: the SQLite backend (index_sqlite*.c), its rebuild
 * (index_rebuild.c) and the side connections of GC, fsck and the admin
 * view (index_gc.c, index_fsck.c, index_admin.c).  Everything else uses
 * index.h.
 *
 * The connection helper (index_db.c) is the one copy of the open / check /
 * prepare / close code those modules share: each of them keeps only its
 * own SQL texts, its queries and the way it reports a failed open (the
 * helper logs almost nothing: it hands the failure back, and each module
 * words it as it always has).  The schema (version 1) lives there too.
 */
#ifndef OM_INDEX_PRIVATE_H
#define OM_INDEX_PRIVATE_H

#include "cache/index_backend.h"

#include <sqlite3.h>

/* tags.log lines are at most this long (without the newline): the longest
 * valid record, with every string fully \u-escaped, is under 3.5 KiB. */
#define OM_INDEX_LOG_LINE_MAX 4096
/* Stored blobs larger than this are never parsed as manifests. */
#define OM_INDEX_MANIFEST_PARSE_MAX (4u * 1024 * 1024)
/* The schema version index_db.c creates (PRAGMA user_version). */
#define OM_INDEX_SCHEMA_VERSION 1
/* Every connection waits this long for another one's lock. */
#define OM_INDEX_BUSY_TIMEOUT_MS 5000

/* ---- errors ---- */

/* The one place SQLite result codes become om_err; logs
 * "index: <what>: <sqlite message> (sqlite <rc>)" unless rc is OK, ROW or
 * DONE (then OM_OK, nothing logged). */
int om_index__sql_err(sqlite3 *db, int rc, const char *what);
/* The same, for a failure whose message was captured earlier (msg = what
 * sqlite3_errmsg said then; see struct om_index_db_res). */
int om_index__sql_err_msg(int rc, const char *what, const char *msg);

/* ---- opening <root>/index.db ---- */

/* "<root>/<name>" into out; OM_ERR_TOOBIG when it does not fit. */
int om_index__path(char *out, size_t outsz, const char *root, const char *name);

/* What om_index__db_open does, in this order (each step only when asked). */
enum {
    OM_INDEX_DB_WRITE = 1 << 0,        /* open read-write (else read-only) */
    OM_INDEX_DB_CREATE = 1 << 1,       /* create a missing file; give a file
                                          without a schema (user_version 0)
                                          SCHEMA_V1 (needs WRITE, VERSION) */
    OM_INDEX_DB_WAL = 1 << 2,          /* PRAGMA journal_mode=WAL (a warning
                                          when refused; persistent in the file) */
    OM_INDEX_DB_SYNC_NORMAL = 1 << 3,  /* PRAGMA synchronous=NORMAL */
    OM_INDEX_DB_QUICK_CHECK = 1 << 4,  /* PRAGMA quick_check into res->check */
    OM_INDEX_DB_VERSION = 1 << 5,      /* PRAGMA user_version into res->version */
};

/* The steps, for a caller that words a failure by step. */
enum om_index_db_step {
    OM_INDEX_DB_STEP_NONE,
    OM_INDEX_DB_STEP_OPEN,          /* sqlite3_open_v2 */
    OM_INDEX_DB_STEP_BUSY,          /* busy timeout */
    OM_INDEX_DB_STEP_WAL,
    OM_INDEX_DB_STEP_SYNC,
    OM_INDEX_DB_STEP_QUICK_CHECK,   /* the PRAGMA failed (not: it answered "not ok") */
    OM_INDEX_DB_STEP_VERSION,
    OM_INDEX_DB_STEP_SCHEMA,        /* creating the schema */
};

/* What om_index__db_open found.  Always filled in (also on success). */
struct om_index_db_res {
    bool existed;                 /* the file existed before the open */
    char check[512];              /* quick_check's first row ("ok" = intact;
                                     "" when not asked) */
    int64_t version;              /* user_version read (0 = no schema) */
    bool created;                 /* the schema was created by this open */
    /* When a step failed: */
    enum om_index_db_step step;   /* which (NONE when none failed) */
    const char *what;             /* its name as index.c's log always said it:
                                     "open", "PRAGMA quick_check", ... (static) */
    int rc;                       /* its SQLite result code */
    char msg[512];                /* sqlite3_errmsg at the failure */
};

/* Open path with flags (OM_INDEX_DB_*; always NOMUTEX: a connection is
 * used by one thread at a time), extended result codes off, busy timeout
 * OM_INDEX_BUSY_TIMEOUT_MS, then the steps flags ask for.  Judging the
 * schema version found is the caller's.
 *   OM_OK          *dbp is the connection, owned by the caller
 *                  (om_index__db_close); res->version as read.
 *   OM_ERR_DIGEST  quick_check answered res->check, not "ok"; the steps
 *                  after it did not run; *dbp is NULL.
 *   OM_ERR_IO      a step failed; *dbp is NULL and res->step/what/rc/msg
 *                  say which and why.
 * Logs only a refused WAL mode (a warning, the open goes on) and the error
 * text of a failed schema creation; reporting a failure is the caller's. */
int om_index__db_open(const char *path, unsigned flags, sqlite3 **dbp,
                      struct om_index_db_res *res);

/* Run a statement that answers one row (a PRAGMA such as journal_mode,
 * quick_check, user_version) and copy its first column as text into out
 * ("" when there is no row).  Returns the SQLite result code. */
int om_index__pragma_text(sqlite3 *db, const char *sql, char *out, size_t outsz);

/* Rename path (+ its -wal) to <path>.corrupt-<unix time>[.N] and remove
 * its -shm, so a stale WAL can never be replayed into a fresh database. */
int om_index__move_aside(const char *path);

/* ---- statements ---- */

/* Prepare sql[0..n) into stmts[0..n) (prep_flags: sqlite3_prepare_v3's,
 * e.g. SQLITE_PREPARE_PERSISTENT for statements kept for the connection's
 * life).  Returns the SQLite result code and, on failure, the index of the
 * text that failed in *failed; nothing is logged.  The statements prepared
 * before a failure stay in stmts: finalize them (om_index__db_finalize or
 * om_index__db_close) in every case. */
int om_index__db_prepare_rc(sqlite3 *db, const char *const *sql, size_t n, unsigned prep_flags,
                            sqlite3_stmt **stmts, size_t *failed);
/* The same, with the failure logged through om_index__sql_err (what = the
 * SQL text) and returned as om_err. */
int om_index__db_prepare(sqlite3 *db, const char *const *sql, size_t n, unsigned prep_flags,
                         sqlite3_stmt **stmts);
/* Finalize n statements (NULLs allowed) and set them to NULL. */
void om_index__db_finalize(sqlite3_stmt **stmts, size_t n);
/* Finalize n statements (stmts may be NULL when n is 0) and close db (may
 * be NULL); a close that fails is logged with `who`. */
void om_index__db_close(sqlite3 *db, sqlite3_stmt **stmts, size_t n, const char *who);

/* ---- rebuild (index_rebuild.c) ---- */

/* Empty every table and refill it from the store and tags.log, in one
 * transaction (rolled back on failure).  The caller holds the index mutex
 * (or is om_index_open, before anyone else can see the index). */
int om_index__rebuild_db(sqlite3 *db, struct om_store *st, const char *log_path,
                         int64_t now, size_t *n_manifests, size_t *n_tags);

#endif
