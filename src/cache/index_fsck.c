/* index_fsck.c — fsck's own connection to the index (see index_fsck.h).
 *
 * Design:
 *   - Opened by index_db.c with FSCK_DB_FLAGS: no OM_INDEX_DB_CREATE, so a
 *     missing index.db is a finding, not something to create (creating an
 *     empty schema would even stop the server from rebuilding it at its
 *     next start, since om_index_open rebuilds only a *new* database).  The
 *     journal mode is not set: WAL is persistent in the file header, and an
 *     fsck must not change it.  The busy timeout is the server's, so its
 *     short transactions are waited for, not reported as errors.  What the
 *     open found (quick_check's answer, a failed step, the schema version)
 *     is judged and worded here.
 *   - PRAGMA user_version 0 means "never given a schema" (the server
 *     creates and rebuilds it at start); anything else is accepted as long
 *     as the queries below prepare — preparing them is the schema check,
 *     so a future schema version that keeps these columns still works.
 *   - Listing runs one SELECT per table, which SQLite reads from one
 *     snapshot; the caller checks the store while the rows stream by (a
 *     stat per row), never the expensive sha256 pass.
 *   - Drops use BEGIN IMMEDIATE transactions the caller keeps short.  A tag
 *     is deleted only while it still names the missing digest.
 *   - SQLite errors become om_err in om_index__sql_err (index_db.c), the
 *     one place for that translation; open-time corruption is classified
 *     here because it is a finding for fsck, not an error to log.
 *
 * If the schema in index_db.c changes (tables, columns), update the SQL
 * below and the tables om_index_fsck_drop_* clean.
 */
#include "cache/index_fsck.h"

#include "cache/index_private.h"
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FSCK_PATH_MAX 4096
/* fsck's connection (index_db.c): read-write for the repairs, never
 * created, the journal mode left as the file has it. */
#define FSCK_DB_FLAGS (OM_INDEX_DB_WRITE | OM_INDEX_DB_QUICK_CHECK | OM_INDEX_DB_VERSION)

enum fsck_stmt {
    Q_COUNTS,
    Q_KNOWN,
    Q_TAGS,
    Q_MANIFESTS,
    Q_BLOBS,
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_DROP_TAG,
    Q_DROP_MANIFEST,
    Q_DROP_MANIFEST_REPOS,
    Q_DROP_MANIFEST_CHILDREN,
    Q_DROP_BLOB,
    Q_DROP_BLOB_REPOS,
    Q__COUNT
};

static const char *const FSCK_SQL[Q__COUNT] = {
    [Q_COUNTS] = "SELECT (SELECT count(*) FROM tags), (SELECT count(*) FROM manifests),"
                 " (SELECT count(*) FROM blobs)",
    [Q_KNOWN] = "SELECT size FROM blobs WHERE digest = ?1"
                " UNION ALL SELECT size FROM manifests WHERE digest = ?1 LIMIT 1",
    [Q_TAGS] = "SELECT repo, tag, digest FROM tags",
    [Q_MANIFESTS] = "SELECT digest FROM manifests",
    [Q_BLOBS] = "SELECT digest FROM blobs",
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_DROP_TAG] = "DELETE FROM tags WHERE repo = ?1 AND tag = ?2 AND digest = ?3",
    [Q_DROP_MANIFEST] = "DELETE FROM manifests WHERE digest = ?1",
    [Q_DROP_MANIFEST_REPOS] = "DELETE FROM manifest_repos WHERE digest = ?1",
    [Q_DROP_MANIFEST_CHILDREN] = "DELETE FROM manifest_children WHERE parent = ?1",
    [Q_DROP_BLOB] = "DELETE FROM blobs WHERE digest = ?1",
    [Q_DROP_BLOB_REPOS] = "DELETE FROM blob_repos WHERE digest = ?1",
};

struct om_index_fsck {
    sqlite3 *db;                  /* owned; closed in om_index_fsck_close */
    sqlite3_stmt *q[Q__COUNT];    /* owned; finalized in om_index_fsck_close */
};

__attribute__((format(printf, 3, 4)))
static void set_why(char *why, size_t whysz, const char *fmt, ...)
{
    va_list ap;
    if (why == NULL || whysz == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, whysz, fmt, ap);
    va_end(ap);
}

static bool rc_is_corrupt(int rc)
{
    rc &= 0xff;
    return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB;
}

/* Map an open-time SQLite failure (rc, with sqlite3_errmsg's msg):
 * corruption is a finding (OM_ERR_DIGEST), the rest goes through the one
 * translation in index_db.c. */
static int open_err(int rc, const char *msg, const char *what, char *why, size_t whysz)
{
    set_why(why, whysz, "%s: %s", what, msg);
    if (rc_is_corrupt(rc))
        return OM_ERR_DIGEST;
    return om_index__sql_err_msg(rc, what, msg);
}

/* fsck's name for the step that failed (as its messages always said). */
static const char *step_name(enum om_index_db_step step)
{
    switch (step) {
    case OM_INDEX_DB_STEP_OPEN: return "open index.db";
    case OM_INDEX_DB_STEP_VERSION: return "PRAGMA user_version";
    default: return "PRAGMA quick_check";
    }
}

int om_index_fsck_open(struct om_index_fsck **out, const char *root, char *why, size_t whysz)
{
    struct om_index_fsck *x = NULL;
    struct om_index_db_res res;
    char path[FSCK_PATH_MAX];
    struct stat sb;
    size_t failed = 0;
    int err = OM_OK, rc;

    *out = NULL;
    if (why != NULL && whysz > 0)
        why[0] = '\0';
    if (om_index__path(path, sizeof(path), root, "index.db") != OM_OK) {
        set_why(why, whysz, "storage path too long");
        err = OM_ERR_TOOBIG;
        goto done;
    }
    if (stat(path, &sb) != 0) {
        set_why(why, whysz, "%s: %s", path, strerror(errno));
        err = errno == ENOENT ? OM_ERR_NOTFOUND : OM_ERR_IO;
        goto done;
    }
    x = calloc(1, sizeof(*x)); /* owned by the caller via *out, or closed below */
    if (x == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    err = om_index__db_open(path, FSCK_DB_FLAGS, &x->db, &res);
    if (err == OM_ERR_DIGEST) {
        for (char *c = res.check; *c != '\0'; c++)
            *c = (*c == '\n' || *c == '\r') ? ' ' : *c; /* one line */
        set_why(why, whysz, "quick_check says: %s", res.check);
        goto done;
    }
    if (err != OM_OK) {
        err = open_err(res.rc, res.msg, step_name(res.step), why, whysz);
        goto done;
    }
    if (res.version == 0) {
        set_why(why, whysz, "%s has no schema yet", path);
        err = OM_ERR_NOTFOUND;
        goto done;
    }
    rc = om_index__db_prepare_rc(x->db, FSCK_SQL, Q__COUNT, SQLITE_PREPARE_PERSISTENT, x->q,
                                 &failed);
    if (rc != SQLITE_OK) {
        if (rc_is_corrupt(rc)) {
            err = open_err(rc, sqlite3_errmsg(x->db), "prepare", why, whysz);
        } else {
            set_why(why, whysz, "schema not understood: %s", sqlite3_errmsg(x->db));
            err = OM_ERR_INVALID;
        }
        goto done;
    }
    *out = x;
    x = NULL;
done:
    om_index_fsck_close(x);
    return err;
}

void om_index_fsck_close(struct om_index_fsck *x)
{
    if (x == NULL)
        return;
    om_index__db_close(x->db, x->q, Q__COUNT, "index fsck");
    free(x);
}

/* Reset a cached statement for its next use (bindings cleared too). */
static sqlite3_stmt *q(struct om_index_fsck *x, enum fsck_stmt id)
{
    sqlite3_stmt *s = x->q[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static int bind_digest(sqlite3_stmt *s, int col, const om_digest *d)
{
    return sqlite3_bind_text(s, col, d->str, -1, SQLITE_STATIC);
}

int om_index_fsck_counts(struct om_index_fsck *x, struct om_index_fsck_counts *out)
{
    sqlite3_stmt *s = q(x, Q_COUNTS);
    int rc = sqlite3_step(s);
    int err = OM_OK;
    memset(out, 0, sizeof(*out));
    if (rc == SQLITE_ROW) {
        out->tags = (uint64_t)sqlite3_column_int64(s, 0);
        out->manifests = (uint64_t)sqlite3_column_int64(s, 1);
        out->blobs = (uint64_t)sqlite3_column_int64(s, 2);
    } else {
        err = om_index__sql_err(x->db, rc, "fsck counts");
    }
    sqlite3_reset(s);
    return err;
}

int om_index_fsck_known(struct om_index_fsck *x, const om_digest *d, bool *known,
                        uint64_t *size)
{
    sqlite3_stmt *s = q(x, Q_KNOWN);
    int err = OM_OK, rc;
    *known = false;
    if (size != NULL)
        *size = 0;
    if ((rc = bind_digest(s, 1, d)) != SQLITE_OK) {
        err = om_index__sql_err(x->db, rc, "fsck known bind");
        goto done;
    }
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *known = true;
        if (size != NULL && sqlite3_column_int64(s, 0) >= 0)
            *size = (uint64_t)sqlite3_column_int64(s, 0);
    } else if (rc != SQLITE_DONE) {
        err = om_index__sql_err(x->db, rc, "fsck known");
    }
done:
    sqlite3_reset(s);
    return err;
}

/* Column col as a digest; false when NULL or malformed. */
static bool column_digest(sqlite3_stmt *s, int col, om_digest *d)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    return t != NULL && om_digest_parse(d, t, (size_t)sqlite3_column_bytes(s, col)) == OM_OK;
}

int om_index_fsck_tags(struct om_index_fsck *x, om_index_fsck_tag_fn fn, void *ud,
                       uint64_t *skipped)
{
    sqlite3_stmt *s = q(x, Q_TAGS);
    int ret = OM_OK, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *repo = (const char *)sqlite3_column_text(s, 0);
        const char *tag = (const char *)sqlite3_column_text(s, 1);
        om_digest d;
        if (repo == NULL || tag == NULL || !column_digest(s, 2, &d)) {
            if (skipped != NULL)
                (*skipped)++;
            continue;
        }
        if ((ret = fn(ud, repo, tag, &d)) != 0)
            goto done;
    }
    if (rc != SQLITE_DONE)
        ret = om_index__sql_err(x->db, rc, "fsck list tags");
done:
    sqlite3_reset(s);
    return ret;
}

static int list_digests(struct om_index_fsck *x, enum fsck_stmt id, const char *what,
                        om_index_fsck_digest_fn fn, void *ud, uint64_t *skipped)
{
    sqlite3_stmt *s = q(x, id);
    int ret = OM_OK, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        om_digest d;
        if (!column_digest(s, 0, &d)) {
            if (skipped != NULL)
                (*skipped)++;
            continue;
        }
        if ((ret = fn(ud, &d)) != 0)
            goto done;
    }
    if (rc != SQLITE_DONE)
        ret = om_index__sql_err(x->db, rc, what);
done:
    sqlite3_reset(s);
    return ret;
}

int om_index_fsck_manifests(struct om_index_fsck *x, om_index_fsck_digest_fn fn, void *ud,
                            uint64_t *skipped)
{
    return list_digests(x, Q_MANIFESTS, "fsck list manifests", fn, ud, skipped);
}

int om_index_fsck_blobs(struct om_index_fsck *x, om_index_fsck_digest_fn fn, void *ud,
                        uint64_t *skipped)
{
    return list_digests(x, Q_BLOBS, "fsck list blobs", fn, ud, skipped);
}

/* Step a statement that returns no rows. */
static int exec_stmt(struct om_index_fsck *x, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    int err = rc == SQLITE_DONE ? OM_OK : om_index__sql_err(x->db, rc, what);
    sqlite3_reset(s);
    return err;
}

int om_index_fsck_begin(struct om_index_fsck *x)
{
    return exec_stmt(x, q(x, Q_BEGIN), "fsck begin");
}

int om_index_fsck_commit(struct om_index_fsck *x)
{
    return exec_stmt(x, q(x, Q_COMMIT), "fsck commit");
}

void om_index_fsck_rollback(struct om_index_fsck *x)
{
    if (!sqlite3_get_autocommit(x->db))
        exec_stmt(x, q(x, Q_ROLLBACK), "fsck rollback");
}

/* Run the delete `id` with d bound to ?1; *changed += rows it removed. */
static int drop_by_digest(struct om_index_fsck *x, enum fsck_stmt id, const om_digest *d,
                          int *changed)
{
    sqlite3_stmt *s = q(x, id);
    int rc = bind_digest(s, 1, d);
    if (rc != SQLITE_OK)
        return om_index__sql_err(x->db, rc, "fsck drop bind");
    int err = exec_stmt(x, s, FSCK_SQL[id]);
    if (err == OM_OK && changed != NULL)
        *changed += sqlite3_changes(x->db);
    return err;
}

int om_index_fsck_drop_tag(struct om_index_fsck *x, const char *repo, const char *tag,
                           const om_digest *d, bool *dropped)
{
    sqlite3_stmt *s = q(x, Q_DROP_TAG);
    int err, rc;
    if (dropped != NULL)
        *dropped = false;
    if ((rc = sqlite3_bind_text(s, 1, repo, -1, SQLITE_STATIC)) != SQLITE_OK ||
        (rc = sqlite3_bind_text(s, 2, tag, -1, SQLITE_STATIC)) != SQLITE_OK ||
        (rc = bind_digest(s, 3, d)) != SQLITE_OK)
        return om_index__sql_err(x->db, rc, "fsck drop tag bind");
    err = exec_stmt(x, s, "fsck drop tag");
    if (err == OM_OK && dropped != NULL)
        *dropped = sqlite3_changes(x->db) > 0;
    return err;
}

int om_index_fsck_drop_manifest(struct om_index_fsck *x, const om_digest *d, bool *dropped)
{
    int changed = 0, err;
    if (dropped != NULL)
        *dropped = false;
    if ((err = drop_by_digest(x, Q_DROP_MANIFEST, d, &changed)) != OM_OK ||
        (err = drop_by_digest(x, Q_DROP_MANIFEST_REPOS, d, NULL)) != OM_OK ||
        (err = drop_by_digest(x, Q_DROP_MANIFEST_CHILDREN, d, NULL)) != OM_OK)
        return err;
    if (dropped != NULL)
        *dropped = changed > 0;
    return OM_OK;
}

int om_index_fsck_drop_blob(struct om_index_fsck *x, const om_digest *d, bool *dropped)
{
    int changed = 0, err;
    if (dropped != NULL)
        *dropped = false;
    if ((err = drop_by_digest(x, Q_DROP_BLOB, d, &changed)) != OM_OK ||
        (err = drop_by_digest(x, Q_DROP_BLOB_REPOS, d, NULL)) != OM_OK)
        return err;
    if (dropped != NULL)
        *dropped = changed > 0;
    return OM_OK;
}
