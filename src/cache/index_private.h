/* index_private.h — shared by the modules that open index.db themselves
 * (index.c, index_rebuild.c, index_gc.c, index_fsck.c); everything else
 * uses index.h. */
#ifndef OM_INDEX_PRIVATE_H
#define OM_INDEX_PRIVATE_H

#include "cache/index.h"

#include <sqlite3.h>

/* tags.log lines are at most this long (without the newline): the longest
 * valid record, with every string fully \u-escaped, is under 3.5 KiB. */
#define OM_INDEX_LOG_LINE_MAX 4096
/* Stored blobs larger than this are never parsed as manifests. */
#define OM_INDEX_MANIFEST_PARSE_MAX (4u * 1024 * 1024)

/* The one place SQLite result codes become om_err (logged with `what`). */
int om_index__sql_err(sqlite3 *db, int rc, const char *what);

/* Input checks shared by the API and the tags.log replay. */
bool om_index__repo_ok(const char *repo);
bool om_index__tag_ok(const char *tag);
bool om_index__media_type_ok(const char *mt);
bool om_index__digest_ok(const om_digest *d);

/* Open the database at path and check it: PRAGMAs (WAL, synchronous=NORMAL,
 * busy_timeout), quick_check, schema version; create the schema when the
 * file is new (missing or empty: *fresh = true).  On failure *dbp is NULL
 * and *corrupt says whether moving the file aside and starting over can
 * help (not a database, corrupt, unknown schema version) or not (busy,
 * disk full, out of memory, cannot create).  *dbp owned by the caller. */
int om_index__db_open(const char *path, sqlite3 **dbp, bool *corrupt, bool *fresh);

/* Run a statement that answers one row (a PRAGMA such as journal_mode,
 * quick_check, user_version) and copy its first column as text into out
 * ("" when there is no row).  Returns the SQLite result code. */
int om_index__pragma_text(sqlite3 *db, const char *sql, char *out, size_t outsz);

/* Finalize n prepared statements (NULLs allowed) and close db (may be
 * NULL); a close that fails is logged with `who`. */
void om_index__close_db(sqlite3 *db, sqlite3_stmt **stmts, size_t n, const char *who);

/* Rename path (+ its -wal) to <path>.corrupt-<unix time>[.N] and remove
 * its -shm, so a stale WAL can never be replayed into a fresh database. */
int om_index__move_aside(const char *path);

/* Empty every table and refill it from the store and tags.log, in one
 * transaction (rolled back on failure).  The caller holds the index mutex
 * (or is om_index_open, before anyone else can see the index). */
int om_index__rebuild_db(sqlite3 *db, struct om_store *st, const char *log_path,
                         int64_t now, size_t *n_manifests, size_t *n_tags);

#endif
