/* index.c — the metadata index: SQLite (WAL) at <storage>/index.db, plus the
 * append-only <storage>/tags.log (see index.h for what it holds).
 *
 * Design:
 *   - One connection, one pthread mutex; every public function takes the
 *     mutex for its whole (short) duration.  Statements are prepared once
 *     at open (SQLITE_PREPARE_PERSISTENT) and cached in ix->stmt[], indexed
 *     by enum stmt_id; SQL_TEXT[] holds their text in the same order.
 *     If you add a statement: add the id AND its text, in the same place.
 *   - Opening and checking the database, the schema (versioned with
 *     PRAGMA user_version) and the rebuild live in index_rebuild.c; this
 *     file orchestrates them in om_index_open() and holds the queries.
 *     A schema change touches SCHEMA_V1 there and SQL_TEXT[] here.
 *   - tags.log: every om_index_tag_put() appends one compact JSON object
 *     {"repo","tag","digest","media_type","size","t"} + '\n' with O_APPEND
 *     and a single write(2), BEFORE the database is updated, so the log is
 *     never behind the database.  A line torn by a crash is detected at
 *     open (the file does not end in '\n') and after a short write; the
 *     next append then starts with '\n' so a torn line never swallows a
 *     good one.
 *   - Corruption: open failure on an existing file, "file is not a
 *     database", a PRAGMA quick_check that is not "ok" or a schema version
 *     we do not know → the file (and its -wal) is renamed to
 *     index.db.corrupt-<unix time>, -shm removed, a fresh database created
 *     and rebuilt from the store (index_rebuild.c).  SQLITE_BUSY, FULL and
 *     NOMEM are not corruption and are returned as errors.  A database
 *     created fresh (missing or empty file) while the store holds content
 *     is rebuilt too.
 *   - Rebuild limits (what cannot be recovered): tags come only from
 *     tags.log; manifests and blobs are rediscovered by parsing the store;
 *     repository membership of manifests and blobs is recovered only for
 *     content reachable from a tag in tags.log (a tagged manifest, its
 *     platform manifests, their config and layers).  Content pulled only by
 *     digest comes back with no repository; pull counts, last-access times
 *     (reset to the rebuild time), route decisions, negative entries and
 *     cached referrers are lost.
 *
 * Times are Unix milliseconds supplied by the caller (except rebuild, which
 * reads the clock).  Text columns compare with BINARY collation, which is
 * byte order — what the distribution spec means by "lexical".
 */
#include "cache/index_private.h"

#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define INDEX_PATH_MAX 4096
#define UPSTREAM_NAME_MAX 255
#define REFERRERS_MAX (4u * 1024 * 1024)

enum stmt_id {
    S_BEGIN, S_COMMIT, S_ROLLBACK,
    S_REPO_ADD, S_REPO_EXISTS,
    S_TAG_GET, S_TAG_PUT, S_TAG_CHECKED, S_TAG_PULLED, S_TAGS_LIST,
    S_MANIFEST_GET, S_MANIFEST_PUT, S_MANIFEST_REPO, S_CHILD_PUT, S_MANIFEST_PULLED,
    S_BLOB_PUT, S_BLOB_REPO, S_BLOB_PULLED,
    S_CATALOG,
    S_ROUTE_GET, S_ROUTE_PUT,
    S_NEG_GET, S_NEG_PUT, S_NEG_DEL,
    S_REF_GET, S_REF_PUT,
    S_COUNTS,
    S__COUNT
};

static const char *const SQL_TEXT[S__COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_REPO_ADD] = "INSERT OR IGNORE INTO repos(name) VALUES(?1)",
    [S_REPO_EXISTS] = "SELECT 1 FROM repos WHERE name = ?1",
    [S_TAG_GET] = "SELECT digest, media_type, size, fetched_at, checked_at FROM tags"
                  " WHERE repo = ?1 AND tag = ?2",
    [S_TAG_PUT] = "INSERT INTO tags(repo, tag, digest, media_type, size, fetched_at, checked_at)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6)"
                  " ON CONFLICT(repo, tag) DO UPDATE SET digest = excluded.digest,"
                  " media_type = excluded.media_type, size = excluded.size,"
                  " fetched_at = excluded.fetched_at, checked_at = excluded.checked_at",
    [S_TAG_CHECKED] = "UPDATE tags SET checked_at = ?3 WHERE repo = ?1 AND tag = ?2",
    [S_TAG_PULLED] = "UPDATE tags SET last_pulled = MAX(last_pulled, ?3), pull_count = pull_count + ?4"
                     " WHERE repo = ?1 AND tag = ?2",
    [S_TAGS_LIST] = "SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2"
                    " ORDER BY tag COLLATE BINARY LIMIT ?3",
    [S_MANIFEST_GET] = "SELECT media_type, size FROM manifests WHERE digest = ?1",
    [S_MANIFEST_PUT] = "INSERT INTO manifests(digest, media_type, size, created_at, last_access)"
                       " VALUES(?1, ?2, ?3, ?4, ?4)"
                       " ON CONFLICT(digest) DO UPDATE SET media_type = excluded.media_type,"
                       " size = excluded.size,"
                       " last_access = max(last_access, excluded.last_access)",
    [S_MANIFEST_REPO] = "INSERT OR IGNORE INTO manifest_repos(repo, digest) VALUES(?1, ?2)",
    [S_CHILD_PUT] = "INSERT OR IGNORE INTO manifest_children(parent, child) VALUES(?1, ?2)",
    [S_MANIFEST_PULLED] = "UPDATE manifests SET last_access = MAX(last_access, ?2), pull_count = pull_count + ?3"
                          " WHERE digest = ?1",
    [S_BLOB_PUT] = "INSERT INTO blobs(digest, size, created_at, last_access)"
                   " VALUES(?1, ?2, ?3, ?3)"
                   " ON CONFLICT(digest) DO UPDATE SET size = excluded.size,"
                   " last_access = max(last_access, excluded.last_access)",
    [S_BLOB_REPO] = "INSERT OR IGNORE INTO blob_repos(repo, digest) VALUES(?1, ?2)",
    [S_BLOB_PULLED] = "UPDATE blobs SET last_access = MAX(last_access, ?2), pull_count = pull_count + ?3"
                      " WHERE digest = ?1",
    [S_CATALOG] = "SELECT name FROM repos WHERE name > ?1 ORDER BY name COLLATE BINARY LIMIT ?2",
    [S_ROUTE_GET] = "SELECT upstream, canonical FROM routes WHERE name = ?1",
    [S_ROUTE_PUT] = "INSERT OR REPLACE INTO routes(name, upstream, canonical, decided_at)"
                    " VALUES(?1, ?2, ?3, ?4)",
    [S_NEG_GET] = "SELECT expires_at FROM negative WHERE name = ?1 AND upstream = ?2",
    [S_NEG_PUT] = "INSERT OR REPLACE INTO negative(name, upstream, expires_at) VALUES(?1, ?2, ?3)",
    [S_NEG_DEL] = "DELETE FROM negative WHERE name = ?1 AND upstream = ?2 AND expires_at <= ?3",
    [S_REF_GET] = "SELECT json, fetched_at FROM referrers WHERE repo = ?1 AND digest = ?2",
    [S_REF_PUT] = "INSERT OR REPLACE INTO referrers(repo, digest, json, fetched_at)"
                  " VALUES(?1, ?2, ?3, ?4)",
    [S_COUNTS] = "SELECT (SELECT count(*) FROM repos), (SELECT count(*) FROM tags),"
                 " (SELECT count(*) FROM manifests), (SELECT count(*) FROM blobs),"
                 " (SELECT coalesce(sum(size), 0) FROM blobs)",
};

struct om_index {
    pthread_mutex_t mu;
    sqlite3 *db;                       /* owned; closed in om_index_close */
    sqlite3_stmt *stmt[S__COUNT];      /* owned; finalized in om_index_close */
    struct om_store *st;               /* borrowed; outlives the index */
    int log_fd;                        /* tags.log, O_APPEND; owned */
    bool log_need_nl;                  /* the log ends in a torn line */
    char db_path[INDEX_PATH_MAX];
    char log_path[INDEX_PATH_MAX];
};

/* ---- helpers shared with index_rebuild.c ------------------------------ */

int om_index__sql_err(sqlite3 *db, int rc, const char *what)
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
    om_log(OM_LOG_ERROR, "index: %s: %s (sqlite %d)", what,
           db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc);
    return err;
}

bool om_index__repo_ok(const char *repo)
{
    /* Canonical names ("<upstream>/<remote>") are built by route.c; here
     * only the size limit that bounds tags.log lines and columns. */
    return repo != NULL && repo[0] != '\0' && strlen(repo) <= OM_NAME_MAX;
}

bool om_index__tag_ok(const char *tag)
{
    return tag != NULL && om_ref_tag_valid(tag, strlen(tag));
}

bool om_index__media_type_ok(const char *mt)
{
    return mt != NULL && strlen(mt) <= OM_MEDIA_TYPE_MAX;
}

bool om_index__digest_ok(const om_digest *d)
{
    om_digest check;
    return d != NULL &&
           om_digest_parse(&check, d->str, strnlen(d->str, sizeof(d->str))) == OM_OK;
}

/* ---- statement helpers ------------------------------------------------- */

static sqlite3_stmt *stmt(struct om_index *ix, enum stmt_id id)
{
    return ix->stmt[id];
}

static void stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Step a statement that returns no rows to completion, then reset it. */
static int run(struct om_index *ix, enum stmt_id id)
{
    sqlite3_stmt *s = stmt(ix, id);
    int rc = sqlite3_step(s);
    int err = rc == SQLITE_DONE || rc == SQLITE_ROW ? OM_OK : om_index__sql_err(ix->db, rc, SQL_TEXT[id]);
    stmt_done(s);
    return err;
}

static int tx_begin(struct om_index *ix)
{
    return run(ix, S_BEGIN);
}

/* Commit on err == OM_OK, otherwise roll back; returns the final error. */
static int tx_end(struct om_index *ix, int err)
{
    if (err == OM_OK) {
        err = run(ix, S_COMMIT);
        /* A COMMIT that failed (FULL, IOERR, BUSY) may leave the transaction
         * open, which would lock gc and fsck out: end it. */
        if (err != OM_OK && !sqlite3_get_autocommit(ix->db))
            (void)run(ix, S_ROLLBACK);
        return err;
    }
    (void)run(ix, S_ROLLBACK);
    return err;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* Copy a text column into a fixed buffer; OM_ERR_TOOBIG if it does not fit. */
static int col_copy(sqlite3_stmt *s, int col, char *out, size_t outsz)
{
    const unsigned char *v = sqlite3_column_text(s, col);
    int n = snprintf(out, outsz, "%s", v != NULL ? (const char *)v : "");
    return (n < 0 || (size_t)n >= outsz) ? OM_ERR_TOOBIG : OM_OK;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- open ------------------------------------------------------------ */

static int prepare_all(struct om_index *ix)
{
    for (int i = 0; i < S__COUNT; i++) {
        int rc = sqlite3_prepare_v3(ix->db, SQL_TEXT[i], -1, SQLITE_PREPARE_PERSISTENT,
                                    &ix->stmt[i], NULL);
        if (rc != SQLITE_OK)
            return om_index__sql_err(ix->db, rc, SQL_TEXT[i]);
    }
    return OM_OK;
}

/* Open tags.log for appending and note whether it ends in a torn line. */
static int log_open(struct om_index *ix)
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

static int store_nonempty_cb(void *ud, const om_digest *d, uint64_t size)
{
    (void)ud; (void)d; (void)size;
    return 1;
}

static int rebuild_locked(struct om_index *ix, size_t *n_manifests, size_t *n_tags)
{
    return om_index__rebuild_db(ix->db, ix->st, ix->log_path, now_ms(), n_manifests, n_tags);
}

int om_index_open(struct om_index **out, struct om_store *st, bool *rebuilt)
{
    struct om_index *ix = NULL;
    const char *root = om_store_root(st);
    bool corrupt = false, fresh = false, need_rebuild = false;
    int err = OM_OK, n;

    *out = NULL;
    if (rebuilt != NULL)
        *rebuilt = false;
    ix = calloc(1, sizeof(*ix)); /* owned by the caller via *out, or closed below */
    if (ix == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    pthread_mutex_init(&ix->mu, NULL);
    ix->log_fd = -1;
    ix->st = st;
    n = snprintf(ix->db_path, sizeof(ix->db_path), "%s/index.db", root);
    if (n < 0 || (size_t)n >= sizeof(ix->db_path)) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    n = snprintf(ix->log_path, sizeof(ix->log_path), "%s/tags.log", root);
    if (n < 0 || (size_t)n >= sizeof(ix->log_path)) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    if ((err = log_open(ix)) != OM_OK)
        goto done;

    err = om_index__db_open(ix->db_path, &ix->db, &corrupt, &fresh);
    if (err != OM_OK && corrupt) {
        if ((err = om_index__move_aside(ix->db_path)) != OM_OK)
            goto done;
        need_rebuild = true;
        err = om_index__db_open(ix->db_path, &ix->db, &corrupt, &fresh);
    }
    if (err != OM_OK)
        goto done;
    if (fresh && !need_rebuild && om_store_walk(st, store_nonempty_cb, NULL) == 1) {
        om_log(OM_LOG_WARN, "index: %s is new but the store has content; rebuilding",
               ix->db_path);
        need_rebuild = true;
    }
    if ((err = prepare_all(ix)) != OM_OK)
        goto done;
    if (need_rebuild) {
        if ((err = rebuild_locked(ix, NULL, NULL)) != OM_OK)
            goto done;
        if (rebuilt != NULL)
            *rebuilt = true;
    }
    *out = ix;
    ix = NULL;
done:
    om_index_close(ix);
    return err;
}

void om_index_close(struct om_index *ix)
{
    if (ix == NULL)
        return;
    om_index__close_db(ix->db, ix->stmt, S__COUNT, "index");
    if (ix->log_fd >= 0)
        close(ix->log_fd);
    pthread_mutex_destroy(&ix->mu);
    free(ix);
}

int om_index_rebuild(struct om_index *ix, size_t *n_manifests, size_t *n_tags)
{
    pthread_mutex_lock(&ix->mu);
    int err = rebuild_locked(ix, n_manifests, n_tags);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

/* ---- tags -------------------------------------------------------------- */

/* Append one record to tags.log with a single write(2). */
static int log_append(struct om_index *ix, const char *repo, const char *tag,
                      const om_digest *d, const char *media_type, uint64_t size, int64_t t)
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

int om_index_tag_get(struct om_index *ix, const char *repo, const char *tag,
                     struct om_tag_rec *out)
{
    sqlite3_stmt *s;
    int rc, err = OM_OK;

    if (!om_index__repo_ok(repo) || tag == NULL)
        return OM_ERR_INVALID;
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_TAG_GET);
    bind_text(s, 1, repo);
    bind_text(s, 2, tag);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        err = OM_ERR_NOTFOUND;
    } else if (rc != SQLITE_ROW) {
        err = om_index__sql_err(ix->db, rc, "tag get");
    } else {
        const char *dg = (const char *)sqlite3_column_text(s, 0);
        memset(out, 0, sizeof(*out));
        if (dg == NULL || om_digest_parse(&out->digest, dg, strlen(dg)) != OM_OK ||
            col_copy(s, 1, out->media_type, sizeof(out->media_type)) != OM_OK) {
            om_log(OM_LOG_ERROR, "index: bad row for tag %s:%s", repo, tag);
            err = OM_ERR_IO;
        }
        out->size = (uint64_t)sqlite3_column_int64(s, 2);
        out->fetched_at = sqlite3_column_int64(s, 3);
        out->checked_at = sqlite3_column_int64(s, 4);
    }
    stmt_done(s);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

int om_index_tag_put(struct om_index *ix, const char *repo, const char *tag,
                     const om_digest *d, const char *media_type, uint64_t size, int64_t now)
{
    sqlite3_stmt *s;
    int err;

    if (!om_index__repo_ok(repo) || !om_index__tag_ok(tag) || !om_index__digest_ok(d) ||
        !om_index__media_type_ok(media_type) || size > (uint64_t)INT64_MAX)
        return OM_ERR_INVALID;
    pthread_mutex_lock(&ix->mu);
    /* Log first: the log may be ahead of the database, never behind. */
    if ((err = log_append(ix, repo, tag, d, media_type, size, now)) != OM_OK)
        goto done;
    if ((err = tx_begin(ix)) != OM_OK)
        goto done;
    s = stmt(ix, S_REPO_ADD);
    bind_text(s, 1, repo);
    err = run(ix, S_REPO_ADD);
    if (err == OM_OK) {
        s = stmt(ix, S_TAG_PUT);
        bind_text(s, 1, repo);
        bind_text(s, 2, tag);
        bind_text(s, 3, d->str);
        bind_text(s, 4, media_type);
        sqlite3_bind_int64(s, 5, (sqlite3_int64)size);
        sqlite3_bind_int64(s, 6, now);
        err = run(ix, S_TAG_PUT);
    }
    err = tx_end(ix, err);
done:
    pthread_mutex_unlock(&ix->mu);
    return err;
}

int om_index_tag_checked(struct om_index *ix, const char *repo, const char *tag, int64_t now)
{
    sqlite3_stmt *s;
    int err;

    if (!om_index__repo_ok(repo) || tag == NULL)
        return OM_ERR_INVALID;
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_TAG_CHECKED);
    bind_text(s, 1, repo);
    bind_text(s, 2, tag);
    sqlite3_bind_int64(s, 3, now);
    err = run(ix, S_TAG_CHECKED);
    if (err == OM_OK && sqlite3_changes(ix->db) == 0)
        err = OM_ERR_NOTFOUND;
    pthread_mutex_unlock(&ix->mu);
    return err;
}

/* Stream the rows of a one-text-column SELECT (already bound) to fn.
 * Returns fn's non-zero value when it stops the listing. */
static int list_rows(struct om_index *ix, sqlite3_stmt *s, om_index_str_fn fn, void *ud)
{
    int rc, err = OM_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(s, 0);
        if (v != NULL && (err = fn(ud, v)) != 0)
            goto done;
    }
    if (rc != SQLITE_DONE)
        err = om_index__sql_err(ix->db, rc, "list");
done:
    stmt_done(s);
    return err;
}

int om_index_tags_list(struct om_index *ix, const char *repo, const char *last,
                       long n, om_index_str_fn fn, void *ud)
{
    sqlite3_stmt *s;
    int rc, err = OM_OK;

    if (!om_index__repo_ok(repo) || fn == NULL)
        return OM_ERR_INVALID;
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_REPO_EXISTS);
    bind_text(s, 1, repo);
    rc = sqlite3_step(s);
    stmt_done(s);
    if (rc == SQLITE_DONE) {
        err = OM_ERR_NOTFOUND;
        goto done;
    }
    if (rc != SQLITE_ROW) {
        err = om_index__sql_err(ix->db, rc, "repo exists");
        goto done;
    }
    s = stmt(ix, S_TAGS_LIST);
    bind_text(s, 1, repo);
    bind_text(s, 2, last != NULL ? last : ""); /* every tag sorts after "" */
    sqlite3_bind_int64(s, 3, n < 0 ? -1 : (sqlite3_int64)n);
    err = list_rows(ix, s, fn, ud);
done:
    pthread_mutex_unlock(&ix->mu);
    return err;
}

/* ---- manifests and blobs ----------------------------------------------- */

int om_index_manifest_get(struct om_index *ix, const om_digest *d, struct om_manifest_rec *out)
{
    sqlite3_stmt *s;
    int rc, err = OM_OK;

    if (!om_index__digest_ok(d))
        return OM_ERR_INVALID;
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_MANIFEST_GET);
    bind_text(s, 1, d->str);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        err = OM_ERR_NOTFOUND;
    } else if (rc != SQLITE_ROW) {
        err = om_index__sql_err(ix->db, rc, "manifest get");
    } else {
        memset(out, 0, sizeof(*out));
        if (col_copy(s, 0, out->media_type, sizeof(out->media_type)) != OM_OK)
            err = OM_ERR_IO;
        out->size = (uint64_t)sqlite3_column_int64(s, 1);
    }
    stmt_done(s);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

/* Bind (?1 = a, ?2 = b) and run; for the two-text-column inserts. */
static int run_pair(struct om_index *ix, enum stmt_id id, const char *a, const char *b)
{
    sqlite3_stmt *s = stmt(ix, id);
    bind_text(s, 1, a);
    bind_text(s, 2, b);
    return run(ix, id);
}

int om_index_manifest_put(struct om_index *ix, const char *repo, const om_digest *d,
                          const char *media_type, uint64_t size,
                          const om_digest *children, size_t n_children, int64_t now)
{
    sqlite3_stmt *s;
    int err;

    if ((repo != NULL && !om_index__repo_ok(repo)) || !om_index__digest_ok(d) ||
        !om_index__media_type_ok(media_type) || size > (uint64_t)INT64_MAX ||
        (n_children > 0 && children == NULL))
        return OM_ERR_INVALID;
    for (size_t i = 0; i < n_children; i++) {
        if (!om_index__digest_ok(&children[i]))
            return OM_ERR_INVALID;
    }
    pthread_mutex_lock(&ix->mu);
    if ((err = tx_begin(ix)) != OM_OK)
        goto done;
    s = stmt(ix, S_MANIFEST_PUT);
    bind_text(s, 1, d->str);
    bind_text(s, 2, media_type);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)size);
    sqlite3_bind_int64(s, 4, now);
    err = run(ix, S_MANIFEST_PUT);
    if (err == OM_OK && repo != NULL) {
        s = stmt(ix, S_REPO_ADD);
        bind_text(s, 1, repo);
        err = run(ix, S_REPO_ADD);
        if (err == OM_OK)
            err = run_pair(ix, S_MANIFEST_REPO, repo, d->str);
    }
    for (size_t i = 0; err == OM_OK && i < n_children; i++)
        err = run_pair(ix, S_CHILD_PUT, d->str, children[i].str);
    err = tx_end(ix, err);
done:
    pthread_mutex_unlock(&ix->mu);
    return err;
}

int om_index_blob_put(struct om_index *ix, const char *repo, const om_digest *d,
                      uint64_t size, int64_t now)
{
    sqlite3_stmt *s;
    int err;

    if ((repo != NULL && !om_index__repo_ok(repo)) || !om_index__digest_ok(d) ||
        size > (uint64_t)INT64_MAX)
        return OM_ERR_INVALID;
    pthread_mutex_lock(&ix->mu);
    if ((err = tx_begin(ix)) != OM_OK)
        goto done;
    s = stmt(ix, S_BLOB_PUT);
    bind_text(s, 1, d->str);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)size);
    sqlite3_bind_int64(s, 3, now);
    err = run(ix, S_BLOB_PUT);
    if (err == OM_OK && repo != NULL) {
        s = stmt(ix, S_REPO_ADD);
        bind_text(s, 1, repo);
        err = run(ix, S_REPO_ADD);
        if (err == OM_OK)
            err = run_pair(ix, S_BLOB_REPO, repo, d->str);
    }
    err = tx_end(ix, err);
done:
    pthread_mutex_unlock(&ix->mu);
    return err;
}

/* One note inside an open transaction; *changed counts content rows hit. */
static int note_one(struct om_index *ix, const struct om_pull_note *pn, int *changed)
{
    static const enum stmt_id content[] = {S_MANIFEST_PULLED, S_BLOB_PULLED};
    int err = OM_OK;
    *changed = 0;
    for (size_t i = 0; err == OM_OK && i < OM_ARRAY_LEN(content); i++) {
        sqlite3_stmt *s = stmt(ix, content[i]);
        bind_text(s, 1, pn->digest.str);
        sqlite3_bind_int64(s, 2, pn->t_ms);
        sqlite3_bind_int64(s, 3, pn->count);
        err = run(ix, content[i]);
        *changed += sqlite3_changes(ix->db);
    }
    if (err == OM_OK && pn->tag[0] != '\0') {
        sqlite3_stmt *s = stmt(ix, S_TAG_PULLED);
        bind_text(s, 1, pn->repo);
        bind_text(s, 2, pn->tag);
        sqlite3_bind_int64(s, 3, pn->t_ms);
        sqlite3_bind_int64(s, 4, pn->count);
        err = run(ix, S_TAG_PULLED);
    }
    return err;
}

int om_index_note_pull(struct om_index *ix, const char *repo, const char *tag,
                       const om_digest *d, int64_t now)
{
    struct om_pull_note pn = {.digest = *d, .t_ms = now, .count = 1};
    if (!om_index__digest_ok(d) || (tag != NULL && !om_index__repo_ok(repo)))
        return OM_ERR_INVALID;
    if (tag != NULL) {
        snprintf(pn.repo, sizeof(pn.repo), "%s", repo);
        snprintf(pn.tag, sizeof(pn.tag), "%s", tag);
    }
    int changed = 0;
    pthread_mutex_lock(&ix->mu);
    int err = tx_begin(ix);
    if (err == OM_OK)
        err = tx_end(ix, note_one(ix, &pn, &changed));
    pthread_mutex_unlock(&ix->mu);
    if (err == OM_OK && changed == 0)
        err = OM_ERR_NOTFOUND;
    return err;
}

int om_index_note_pulls(struct om_index *ix, struct om_pull_note *notes, size_t n)
{
    pthread_mutex_lock(&ix->mu);
    int err = tx_begin(ix);
    if (err == OM_OK) {
        for (size_t i = 0; err == OM_OK && i < n; i++) {
            int changed = 0;
            notes[i].found = false;
            if (!om_index__digest_ok(&notes[i].digest) ||
                (notes[i].tag[0] != '\0' && !om_index__repo_ok(notes[i].repo)))
                continue;
            err = note_one(ix, &notes[i], &changed);
            notes[i].found = changed > 0;
        }
        err = tx_end(ix, err);
    }
    pthread_mutex_unlock(&ix->mu);
    return err;
}

/* ---- catalog ----------------------------------------------------------- */

int om_index_catalog(struct om_index *ix, const char *last, long n, om_index_str_fn fn,
                     void *ud)
{
    sqlite3_stmt *s;
    int err;

    if (fn == NULL)
        return OM_ERR_INVALID;
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_CATALOG);
    bind_text(s, 1, last != NULL ? last : ""); /* every name sorts after "" */
    sqlite3_bind_int64(s, 2, n < 0 ? -1 : (sqlite3_int64)n);
    err = list_rows(ix, s, fn, ud);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

/* ---- route decisions --------------------------------------------------- */

static bool upstream_ok(const char *u)
{
    return u != NULL && u[0] != '\0' && strlen(u) <= UPSTREAM_NAME_MAX;
}

int om_index_route_get(struct om_index *ix, const char *name, char *upstream_out,
                       size_t upstream_sz, char *canonical_out, size_t canonical_sz)
{
    sqlite3_stmt *s;
    int rc, err = OM_OK;

    if (!om_index__repo_ok(name))
        return OM_ERR_INVALID;
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_ROUTE_GET);
    bind_text(s, 1, name);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        err = OM_ERR_NOTFOUND;
    } else if (rc != SQLITE_ROW) {
        err = om_index__sql_err(ix->db, rc, "route get");
    } else if (col_copy(s, 0, upstream_out, upstream_sz) != OM_OK ||
               col_copy(s, 1, canonical_out, canonical_sz) != OM_OK) {
        err = OM_ERR_TOOBIG;
    }
    stmt_done(s);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

int om_index_route_put(struct om_index *ix, const char *name, const char *upstream,
                       const char *canonical, int64_t now)
{
    sqlite3_stmt *s;
    int err;

    if (!om_index__repo_ok(name) || !upstream_ok(upstream) || !om_index__repo_ok(canonical))
        return OM_ERR_INVALID;
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_ROUTE_PUT);
    bind_text(s, 1, name);
    bind_text(s, 2, upstream);
    bind_text(s, 3, canonical);
    sqlite3_bind_int64(s, 4, now);
    err = run(ix, S_ROUTE_PUT);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

bool om_index_negative_get(struct om_index *ix, const char *name, const char *upstream,
                           int64_t now)
{
    sqlite3_stmt *s;
    bool hit = false, expired = false;
    int rc;

    if (!om_index__repo_ok(name) || !upstream_ok(upstream))
        return false;
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_NEG_GET);
    bind_text(s, 1, name);
    bind_text(s, 2, upstream);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        hit = sqlite3_column_int64(s, 0) > now;
        expired = !hit;
    } else if (rc != SQLITE_DONE) {
        (void)om_index__sql_err(ix->db, rc, "negative get"); /* a miss: ask upstream */
    }
    stmt_done(s);
    if (expired) { /* drop it so the table does not keep dead entries */
        s = stmt(ix, S_NEG_DEL);
        bind_text(s, 1, name);
        bind_text(s, 2, upstream);
        sqlite3_bind_int64(s, 3, now);
        (void)run(ix, S_NEG_DEL);
    }
    pthread_mutex_unlock(&ix->mu);
    return hit;
}

int om_index_negative_put(struct om_index *ix, const char *name, const char *upstream,
                          int64_t until)
{
    sqlite3_stmt *s;
    int err;

    if (!om_index__repo_ok(name) || !upstream_ok(upstream))
        return OM_ERR_INVALID;
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_NEG_PUT);
    bind_text(s, 1, name);
    bind_text(s, 2, upstream);
    sqlite3_bind_int64(s, 3, until);
    err = run(ix, S_NEG_PUT);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

/* ---- referrers --------------------------------------------------------- */

int om_index_referrers_get(struct om_index *ix, const char *repo, const om_digest *d,
                           char **json, size_t *len, int64_t *fetched_at)
{
    sqlite3_stmt *s;
    char *buf = NULL;
    int rc, err = OM_OK;

    *json = NULL;
    *len = 0;
    if (!om_index__repo_ok(repo) || !om_index__digest_ok(d))
        return OM_ERR_INVALID;
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_REF_GET);
    bind_text(s, 1, repo);
    bind_text(s, 2, d->str);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        err = OM_ERR_NOTFOUND;
    } else if (rc != SQLITE_ROW) {
        err = om_index__sql_err(ix->db, rc, "referrers get");
    } else {
        const void *blob = sqlite3_column_blob(s, 0);
        int n = sqlite3_column_bytes(s, 0);
        if (n < 0 || (size_t)n > REFERRERS_MAX) {
            err = OM_ERR_TOOBIG;
        } else if ((buf = malloc((size_t)n + 1)) == NULL) { /* owned by the caller via *json */
            err = OM_ERR_NOMEM;
        } else {
            if (n > 0)
                memcpy(buf, blob, (size_t)n);
            buf[n] = '\0'; /* convenient for parsers; not counted in *len */
            *json = buf;
            *len = (size_t)n;
            if (fetched_at != NULL)
                *fetched_at = sqlite3_column_int64(s, 1);
        }
    }
    stmt_done(s);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

int om_index_referrers_put(struct om_index *ix, const char *repo, const om_digest *d,
                           const char *json, size_t len, int64_t now)
{
    sqlite3_stmt *s;
    int err;

    if (!om_index__repo_ok(repo) || !om_index__digest_ok(d) || (json == NULL && len > 0))
        return OM_ERR_INVALID;
    if (len > REFERRERS_MAX)
        return OM_ERR_TOOBIG;
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_REF_PUT);
    bind_text(s, 1, repo);
    bind_text(s, 2, d->str);
    sqlite3_bind_blob(s, 3, json != NULL ? json : "", (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, now);
    err = run(ix, S_REF_PUT);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

/* ---- counts ------------------------------------------------------------ */

int om_index_counts(struct om_index *ix, struct om_index_counts *out)
{
    sqlite3_stmt *s;
    int rc, err = OM_OK;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_COUNTS);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->repos = (uint64_t)sqlite3_column_int64(s, 0);
        out->tags = (uint64_t)sqlite3_column_int64(s, 1);
        out->manifests = (uint64_t)sqlite3_column_int64(s, 2);
        out->blobs = (uint64_t)sqlite3_column_int64(s, 3);
        out->blob_bytes = (uint64_t)sqlite3_column_int64(s, 4);
    } else {
        err = om_index__sql_err(ix->db, rc, "counts");
    }
    stmt_done(s);
    pthread_mutex_unlock(&ix->mu);
    return err;
}
