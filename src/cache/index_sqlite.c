/* index_sqlite.c — the SQLite backend's statements and queries: one
 * function per operation of struct om_index_ops (index_backend.h), and the
 * ops table.  Opening, closing, rebuilding and tags.log are
 * index_sqlite_open.c's; the handle is in index_sqlite.h.
 *
 * How it keeps the contract of index.h:
 *   - Thread safety: one connection, one pthread mutex (ix->mu); every
 *     operation takes the mutex for its whole (short) duration, so calls
 *     never interleave on the connection.  Listing callbacks run under it.
 *   - Statements are prepared once at open (SQLITE_PREPARE_PERSISTENT) and
 *     cached in ix->stmt[], indexed by enum om_index_sqlite_stmt
 *     (index_sqlite.h); SQL_TEXT[] holds their text in the same order.
 *     If you add a statement: add the id AND its text, in the same place.
 *     A schema change touches SCHEMA_V1 (index_db.c) and SQL_TEXT[] here.
 *   - Writes that touch several rows are one BEGIN IMMEDIATE transaction
 *     (tx_begin / tx_end), so a failure leaves nothing half done.
 *   - OM_ERR_NOTFOUND: the SELECT returned no row (or the UPDATE changed
 *     none); SQLite failures go through om_index__sql_err (index_db.c).
 *   - tags.log: om_index_tag_put appends the record (index_sqlite_open.c)
 *     BEFORE the database is updated, so the log is never behind the
 *     database.
 *   - What a rebuild cannot recover: see index_rebuild.c.
 *
 * Input has passed index.c's checks before it gets here.  Times are Unix
 * milliseconds supplied by the caller.  Text columns compare with BINARY
 * collation, which is byte order — what the distribution spec means by
 * "lexical".
 */
#include "cache/index_sqlite.h"

#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    /* Both are primary-key lookups; a digest is in one table, the blob row
     * first (the blob endpoint's case). */
    [S_BLOB_SIZE] = "SELECT size FROM blobs WHERE digest = ?1"
                    " UNION ALL SELECT size FROM manifests WHERE digest = ?1 LIMIT 1",
    /* Each EXISTS stops at its first row; every lookup is by a primary key
     * or the child index (manifest_children_child).  Two levels up cover
     * index → platform manifest → layer. */
    [S_MEMBER] = "SELECT 1 WHERE EXISTS(SELECT 1 FROM manifest_repos WHERE repo = ?1 AND digest = ?2)"
                 " OR EXISTS(SELECT 1 FROM blob_repos WHERE repo = ?1 AND digest = ?2)"
                 " OR EXISTS(SELECT 1 FROM manifest_children c JOIN manifest_repos r"
                 " ON r.repo = ?1 AND r.digest = c.parent WHERE c.child = ?2)"
                 " OR EXISTS(SELECT 1 FROM manifest_children c1"
                 " JOIN manifest_children c2 ON c2.child = c1.parent"
                 " JOIN manifest_repos r ON r.repo = ?1 AND r.digest = c2.parent"
                 " WHERE c1.child = ?2)",
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

/* ---- statement helpers ------------------------------------------------- */

static sqlite3_stmt *stmt(struct om_index_sqlite *ix, enum om_index_sqlite_stmt id)
{
    return ix->stmt[id];
}

static void stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Step a statement that returns no rows to completion, then reset it. */
static int run(struct om_index_sqlite *ix, enum om_index_sqlite_stmt id)
{
    sqlite3_stmt *s = stmt(ix, id);
    int rc = sqlite3_step(s);
    int err = rc == SQLITE_DONE || rc == SQLITE_ROW ? OM_OK : om_index__sql_err(ix->db, rc, SQL_TEXT[id]);
    stmt_done(s);
    return err;
}

static int tx_begin(struct om_index_sqlite *ix)
{
    return run(ix, S_BEGIN);
}

/* Commit on err == OM_OK, otherwise roll back; returns the final error. */
static int tx_end(struct om_index_sqlite *ix, int err)
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

/* ---- prepare ---------------------------------------------------------- */

int om_index_sqlite__prepare(struct om_index_sqlite *ix)
{
    return om_index__db_prepare(ix->db, SQL_TEXT, S__COUNT, SQLITE_PREPARE_PERSISTENT, ix->stmt);
}

/* ---- tags -------------------------------------------------------------- */

static int tag_get(struct om_index *base, const char *repo, const char *tag,
                   struct om_tag_rec *out)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int rc, err = OM_OK;

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

static int tag_put(struct om_index *base, const char *repo, const char *tag,
                   const om_digest *d, const char *media_type, uint64_t size, int64_t now)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int err;

    pthread_mutex_lock(&ix->mu);
    /* Log first: the log may be ahead of the database, never behind. */
    if ((err = om_index_sqlite__log_append(ix, repo, tag, d, media_type, size, now)) != OM_OK)
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

static int tag_checked(struct om_index *base, const char *repo, const char *tag, int64_t now)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int err;

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
static int list_rows(struct om_index_sqlite *ix, sqlite3_stmt *s, om_index_str_fn fn, void *ud)
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

static int tags_list(struct om_index *base, const char *repo, const char *last, long n,
                     om_index_str_fn fn, void *ud)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int rc, err = OM_OK;

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

static int manifest_get(struct om_index *base, const om_digest *d, struct om_manifest_rec *out)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int rc, err = OM_OK;

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
static int run_pair(struct om_index_sqlite *ix, enum om_index_sqlite_stmt id, const char *a,
                    const char *b)
{
    sqlite3_stmt *s = stmt(ix, id);
    bind_text(s, 1, a);
    bind_text(s, 2, b);
    return run(ix, id);
}

static int manifest_put(struct om_index *base, const char *repo, const om_digest *d,
                        const char *media_type, uint64_t size,
                        const om_digest *children, size_t n_children, int64_t now)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int err;

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

static int blob_put(struct om_index *base, const char *repo, const om_digest *d,
                    uint64_t size, int64_t now)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int err;

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

static int blob_size(struct om_index *base, const om_digest *d, uint64_t *size)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int rc, err = OM_OK;

    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_BLOB_SIZE);
    bind_text(s, 1, d->str);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        err = OM_ERR_NOTFOUND;
    else if (rc != SQLITE_ROW)
        err = om_index__sql_err(ix->db, rc, "blob size");
    else if (sqlite3_column_int64(s, 0) < 0)
        err = OM_ERR_IO; /* index.c never writes one */
    else
        *size = (uint64_t)sqlite3_column_int64(s, 0);
    stmt_done(s);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

static int member(struct om_index *base, const char *repo, const om_digest *d)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int rc, err = OM_OK;

    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_MEMBER);
    bind_text(s, 1, repo);
    bind_text(s, 2, d->str);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        err = OM_ERR_NOTFOUND;
    else if (rc != SQLITE_ROW)
        err = om_index__sql_err(ix->db, rc, "member");
    stmt_done(s);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

/* One note inside an open transaction; *changed counts content rows hit. */
static int note_one(struct om_index_sqlite *ix, const struct om_pull_note *pn, int *changed)
{
    static const enum om_index_sqlite_stmt content[] = {S_MANIFEST_PULLED, S_BLOB_PULLED};
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

static int note_pull(struct om_index *base, const char *repo, const char *tag,
                     const om_digest *d, int64_t now)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    struct om_pull_note pn = {.digest = *d, .t_ms = now, .count = 1};
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

static int note_pulls(struct om_index *base, struct om_pull_note *notes, size_t n)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    pthread_mutex_lock(&ix->mu);
    int err = tx_begin(ix);
    if (err == OM_OK) {
        for (size_t i = 0; err == OM_OK && i < n; i++) {
            int changed = 0;
            notes[i].found = false;
            if (!om_index__pull_note_ok(&notes[i]))
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

static int catalog(struct om_index *base, const char *last, long n, om_index_str_fn fn,
                   void *ud)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int err;

    pthread_mutex_lock(&ix->mu);
    s = stmt(ix, S_CATALOG);
    bind_text(s, 1, last != NULL ? last : ""); /* every name sorts after "" */
    sqlite3_bind_int64(s, 2, n < 0 ? -1 : (sqlite3_int64)n);
    err = list_rows(ix, s, fn, ud);
    pthread_mutex_unlock(&ix->mu);
    return err;
}

/* ---- route decisions --------------------------------------------------- */

static int route_get(struct om_index *base, const char *name, char *upstream_out,
                     size_t upstream_sz, char *canonical_out, size_t canonical_sz)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int rc, err = OM_OK;

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

static int route_put(struct om_index *base, const char *name, const char *upstream,
                     const char *canonical, int64_t now)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int err;

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

static bool negative_get(struct om_index *base, const char *name, const char *upstream,
                         int64_t now)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    bool hit = false, expired = false;
    int rc;

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

static int negative_put(struct om_index *base, const char *name, const char *upstream,
                        int64_t until)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int err;

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

static int referrers_get(struct om_index *base, const char *repo, const om_digest *d,
                         char **json, size_t *len, int64_t *fetched_at)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    char *buf = NULL;
    int rc, err = OM_OK;

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
        if (n < 0 || (size_t)n > OM_INDEX_REFERRERS_MAX) {
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

static int referrers_put(struct om_index *base, const char *repo, const om_digest *d,
                         const char *json, size_t len, int64_t now)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
    sqlite3_stmt *s;
    int err;

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

static int counts(struct om_index *base, struct om_index_counts *out)
{
    struct om_index_sqlite *ix = om_index_sqlite__of(base);
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

/* ---- the ops table ------------------------------------------------------ */

const struct om_index_ops om_index_sqlite__ops = {
    .version = OM_INDEX_OPS_VERSION,
    .name = "sqlite",
    .tag_get = tag_get,
    .tag_put = tag_put,
    .tag_checked = tag_checked,
    .tags_list = tags_list,
    .manifest_get = manifest_get,
    .manifest_put = manifest_put,
    .blob_put = blob_put,
    .note_pull = note_pull,
    .note_pulls = note_pulls,
    .catalog = catalog,
    .route_get = route_get,
    .route_put = route_put,
    .negative_get = negative_get,
    .negative_put = negative_put,
    .referrers_get = referrers_get,
    .referrers_put = referrers_put,
    .counts = counts,
    .rebuild = om_index_sqlite__rebuild,
    .close = om_index_sqlite__close,
    .blob_size = blob_size,
    .member = member,
};
