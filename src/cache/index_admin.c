/* index_admin.c — read-only index queries for the admin API (see
 * index_admin.h for what they answer).
 *
 * Design:
 *   - A connection of our own, opened read-only (index_db.c, no checks:
 *     the server opened and checked the file) on the same index.db that
 *     the SQLite backend (index_sqlite.c) writes.  In WAL mode readers and
 *     the writer do not block each other, so a slow admin page can never
 *     stall a pull, and we need no access to the backend's private struct
 *     or mutex.  The schema is index_db.c's SCHEMA_V1; only its column
 *     names are relied on here.  SQLite errors become om_err in
 *     om_index__sql_err (index_db.c), the one place for that.
 *   - One mutex of ours serialises the connection.  A call is one read
 *     transaction (BEGIN ... COMMIT), so a page and its total count come
 *     from the same snapshot.
 *   - Statements are prepared per call: the repository query's WHERE and
 *     ORDER BY depend on the filters (an OR over "no filter" would stop
 *     SQLite from using the primary key range for the upstream filter), and
 *     preparing costs microseconds next to the query.
 *   - Speed with many repositories: the upstream filter is a range on the
 *     repos primary key ("<u>/" <= name < "<u>0", '0' being '/' + 1); the
 *     per-repository figures are correlated subqueries over the primary keys
 *     of tags, blob_repos and manifest_repos (all keyed by repository
 *     first) and a recursive walk of manifest_children (keyed by parent)
 *     for the size, evaluated only for the rows of the page when sorting
 *     by name.  Sorting by a figure computes it for every matching
 *     repository (tens of milliseconds at 10k).
 *     Substring search scans the names (instr), which is a few milliseconds
 *     at 10k repositories.  No extra index is needed; see
 *     tests/unit/cache/test_index_admin.c for the 10k-repository case.
 *   - An index in Redis (om_index_admin_open_index on a Redis-backed
 *     om_index): no SQLite connection; every call goes, after the same
 *     input checks, to index_redis_admin.c, on the index's own pooled
 *     Redis connection (no mutex of ours is needed there).
 */
#include "cache/index_admin.h"
#include "cache/index_private.h"
#include "cache/index_redis.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct om_index_admin {
    pthread_mutex_t mu;   /* serialises db */
    sqlite3 *db;          /* owned; read-only; NULL with `shared` */
    struct om_index *shared; /* borrowed: a Redis-backed index, or NULL */
};

int om_index_admin_open_index(struct om_index_admin **out, struct om_index *ix)
{
    char path[4096];
    struct om_index_admin *ia = NULL;
    int err;

    *out = NULL;
    if (om_index_redis_conn(ix) == NULL) {
        if ((err = om_index__path(path, sizeof(path), om_store_root(ix->st), "index.db")) != OM_OK)
            return err;
        return om_index_admin_open(out, path);
    }
    if ((ia = calloc(1, sizeof(*ia))) == NULL) /* owned by the caller via *out */
        return OM_ERR_NOMEM;
    pthread_mutex_init(&ia->mu, NULL);
    ia->shared = ix;
    *out = ia;
    return OM_OK;
}

int om_index_admin_open(struct om_index_admin **out, const char *db_path)
{
    struct om_index_admin *ia = NULL;
    struct om_index_db_res res;
    int err = OM_OK;

    *out = NULL;
    ia = calloc(1, sizeof(*ia)); /* owned by the caller via *out, or closed below */
    if (ia == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    pthread_mutex_init(&ia->mu, NULL);
    /* Read-only, nothing checked: the server has opened and checked it. */
    if (om_index__db_open(db_path, 0, &ia->db, &res) != OM_OK) {
        err = om_index__sql_err_msg(res.rc, "admin: open index", res.msg);
        goto done;
    }
    *out = ia;
    ia = NULL;
done:
    om_index_admin_close(ia);
    return err;
}

void om_index_admin_close(struct om_index_admin *ia)
{
    if (ia == NULL)
        return;
    om_index__db_close(ia->db, NULL, 0, "admin");
    pthread_mutex_destroy(&ia->mu);
    free(ia);
}

/* ---- helpers ------------------------------------------------------------ */

static int exec(struct om_index_admin *ia, const char *sql)
{
    int rc = sqlite3_exec(ia->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? OM_OK : om_index__sql_err(ia->db, rc, sql);
}

static int prepare(struct om_index_admin *ia, const char *sql, sqlite3_stmt **s)
{
    int rc = sqlite3_prepare_v2(ia->db, sql, -1, s, NULL);
    return rc == SQLITE_OK ? OM_OK : om_index__sql_err(ia->db, rc, sql);
}

static void copy_col(sqlite3_stmt *s, int col, char *out, size_t outsz)
{
    const unsigned char *v = sqlite3_column_text(s, col);
    snprintf(out, outsz, "%s", v != NULL ? (const char *)v : "");
}

static uint64_t col_u64(sqlite3_stmt *s, int col)
{
    sqlite3_int64 v = sqlite3_column_int64(s, col);
    return v < 0 ? 0 : (uint64_t)v;
}

/* Step a single-row count query. */
static int count_one(struct om_index_admin *ia, sqlite3_stmt *s, uint64_t *out)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        return om_index__sql_err(ia->db, rc == SQLITE_DONE ? SQLITE_ERROR : rc, "admin: count");
    *out = col_u64(s, 0);
    return OM_OK;
}

/* Begin a read transaction; end it with end_read (which keeps err). */
static int begin_read(struct om_index_admin *ia)
{
    return exec(ia, "BEGIN");
}

static int end_read(struct om_index_admin *ia, int err)
{
    int e = exec(ia, "COMMIT");
    return err != OM_OK ? err : e;
}

/* ---- repositories ------------------------------------------------------- */

/* The per-repository figures (columns 1..4 after name).  Size: every
 * cached object the repository reaches — its tags' manifests, the
 * manifests and blobs recorded for it — closed over manifest_children
 * (index → platform manifests → config and layers), each digest once.
 * Not only blob_repos: a layer served from the cache to a second
 * repository is not recorded as that repository's. */
#define REPO_COLUMNS                                                                        \
    "r.name,"                                                                               \
    " (SELECT count(*) FROM tags t WHERE t.repo = r.name) AS ntags,"                        \
    " (SELECT coalesce(max(t.last_pulled), 0) FROM tags t WHERE t.repo = r.name) AS lp,"    \
    " (SELECT coalesce(sum(t.pull_count), 0) FROM tags t WHERE t.repo = r.name) AS pc,"     \
    " (WITH RECURSIVE cl(d) AS ("                                                           \
    "    SELECT t.digest FROM tags t WHERE t.repo = r.name"                                 \
    "    UNION SELECT mr.digest FROM manifest_repos mr WHERE mr.repo = r.name"              \
    "    UNION SELECT br.digest FROM blob_repos br WHERE br.repo = r.name"                  \
    "    UNION SELECT mc.child FROM manifest_children mc JOIN cl ON mc.parent = cl.d)"      \
    "  SELECT coalesce(sum(coalesce(m.size, b.size, 0)), 0) FROM cl"                        \
    "  LEFT JOIN manifests m ON m.digest = cl.d LEFT JOIN blobs b ON b.digest = cl.d) AS sz"

static const char *repo_order(om_repo_sort sort)
{
    switch (sort) {
    case OM_REPO_SORT_PULLED: return " ORDER BY lp DESC, r.name";
    case OM_REPO_SORT_PULLS: return " ORDER BY pc DESC, r.name";
    case OM_REPO_SORT_SIZE: return " ORDER BY sz DESC, r.name";
    default: return " ORDER BY r.name";
    }
}

/* Bind the filter parameters: ?1 q (when used), ?2/?3 the upstream range. */
static int bind_filters(sqlite3_stmt *s, const struct om_repo_query *q, const char *lo,
                        const char *hi)
{
    int rc = SQLITE_OK;
    if (q->q != NULL && q->q[0] != '\0')
        rc = sqlite3_bind_text(s, 1, q->q, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && lo != NULL)
        rc = sqlite3_bind_text(s, 2, lo, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && hi != NULL)
        rc = sqlite3_bind_text(s, 3, hi, -1, SQLITE_STATIC);
    return rc;
}

int om_index_admin_repos(struct om_index_admin *ia, const struct om_repo_query *q,
                         struct om_repo_row *rows, size_t *n, uint64_t *total)
{
    char where[160], sql[2048], lo[OM_NAME_MAX + 2], hi[OM_NAME_MAX + 2];
    sqlite3_stmt *s = NULL;
    bool locked = false, in_tx = false;
    int rc, err = OM_OK;
    bool has_up = q->upstream != NULL && q->upstream[0] != '\0';

    *n = 0;
    *total = 0;
    if (q->limit == 0 || q->limit > OM_INDEX_ADMIN_PAGE_MAX || q->offset > INT64_MAX ||
        (q->q != NULL && strlen(q->q) > OM_INDEX_ADMIN_QUERY_MAX) ||
        (has_up && strlen(q->upstream) > OM_NAME_MAX)) {
        err = OM_ERR_INVALID;
        goto done;
    }
    if (ia->shared != NULL) {
        err = om_index_redis__admin_repos(ia->shared, q, rows, n, total);
        goto done;
    }
    if (has_up) {
        /* '0' is '/' + 1: the range holds exactly the names "<u>/...". */
        snprintf(lo, sizeof(lo), "%s/", q->upstream);
        snprintf(hi, sizeof(hi), "%s0", q->upstream);
    }
    snprintf(where, sizeof(where), " WHERE 1%s%s",
             q->q != NULL && q->q[0] != '\0' ? " AND instr(lower(r.name), lower(?1)) > 0" : "",
             has_up ? " AND r.name >= ?2 AND r.name < ?3" : "");

    pthread_mutex_lock(&ia->mu);
    locked = true;
    if ((err = begin_read(ia)) != OM_OK)
        goto done;
    in_tx = true;

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM repos r%s", where);
    if ((err = prepare(ia, sql, &s)) != OM_OK)
        goto done;
    if ((rc = bind_filters(s, q, has_up ? lo : NULL, has_up ? hi : NULL)) != SQLITE_OK) {
        err = om_index__sql_err(ia->db, rc, "admin: bind");
        goto done;
    }
    if ((err = count_one(ia, s, total)) != OM_OK)
        goto done;
    sqlite3_finalize(s);
    s = NULL;

    if (q->sort == OM_REPO_SORT_NAME)
        /* Page first, then the figures of that page only: SQLite would
         * otherwise compute them for every row OFFSET skips. */
        snprintf(sql, sizeof(sql),
                 "SELECT " REPO_COLUMNS " FROM (SELECT r.name FROM repos r%s ORDER BY r.name"
                 " LIMIT ?4 OFFSET ?5) r ORDER BY r.name",
                 where);
    else
        snprintf(sql, sizeof(sql), "SELECT " REPO_COLUMNS " FROM repos r%s%s LIMIT ?4 OFFSET ?5",
                 where, repo_order(q->sort));
    if ((err = prepare(ia, sql, &s)) != OM_OK)
        goto done;
    rc = bind_filters(s, q, has_up ? lo : NULL, has_up ? hi : NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 4, (sqlite3_int64)q->limit);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 5, (sqlite3_int64)q->offset);
    if (rc != SQLITE_OK) {
        err = om_index__sql_err(ia->db, rc, "admin: bind");
        goto done;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < q->limit) {
        struct om_repo_row *r = &rows[*n];
        copy_col(s, 0, r->name, sizeof(r->name));
        r->tags = col_u64(s, 1);
        r->last_pulled = sqlite3_column_int64(s, 2);
        r->pull_count = col_u64(s, 3);
        r->size_bytes = col_u64(s, 4);
        (*n)++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = om_index__sql_err(ia->db, rc, "admin: repositories");
done:
    sqlite3_finalize(s);
    if (in_tx)
        err = end_read(ia, err);
    if (locked)
        pthread_mutex_unlock(&ia->mu);
    return err;
}

/* ---- tags ---------------------------------------------------------------- */

static const char *tag_order(om_tag_sort sort)
{
    switch (sort) {
    case OM_TAG_SORT_FETCHED: return " ORDER BY fetched_at DESC, tag";
    case OM_TAG_SORT_PULLED: return " ORDER BY last_pulled DESC, tag";
    default: return " ORDER BY tag";
    }
}

int om_index_admin_tags(struct om_index_admin *ia, const char *repo, om_tag_sort sort,
                        uint64_t offset, size_t limit, struct om_tag_row *rows, size_t *n,
                        uint64_t *total)
{
    char sql[512];
    sqlite3_stmt *s = NULL;
    bool locked = false, in_tx = false;
    uint64_t known = 0;
    int rc, err = OM_OK;

    *n = 0;
    *total = 0;
    if (!om_index__repo_ok(repo) || limit == 0 || limit > OM_INDEX_ADMIN_PAGE_MAX ||
        offset > INT64_MAX) {
        err = OM_ERR_INVALID;
        goto done;
    }
    if (ia->shared != NULL) {
        err = om_index_redis__admin_tags(ia->shared, repo, sort, offset, limit, rows, n, total);
        goto done;
    }
    pthread_mutex_lock(&ia->mu);
    locked = true;
    if ((err = begin_read(ia)) != OM_OK)
        goto done;
    in_tx = true;

    if ((err = prepare(ia, "SELECT count(*) FROM repos WHERE name = ?1", &s)) != OM_OK)
        goto done;
    sqlite3_bind_text(s, 1, repo, -1, SQLITE_STATIC);
    if ((err = count_one(ia, s, &known)) != OM_OK)
        goto done;
    sqlite3_finalize(s);
    s = NULL;
    if (known == 0) {
        err = OM_ERR_NOTFOUND;
        goto done;
    }

    if ((err = prepare(ia, "SELECT count(*) FROM tags WHERE repo = ?1", &s)) != OM_OK)
        goto done;
    sqlite3_bind_text(s, 1, repo, -1, SQLITE_STATIC);
    if ((err = count_one(ia, s, total)) != OM_OK)
        goto done;
    sqlite3_finalize(s);
    s = NULL;

    snprintf(sql, sizeof(sql),
             "SELECT tag, digest, media_type, size, fetched_at, checked_at, last_pulled,"
             " pull_count FROM tags WHERE repo = ?1%s LIMIT ?2 OFFSET ?3",
             tag_order(sort));
    if ((err = prepare(ia, sql, &s)) != OM_OK)
        goto done;
    sqlite3_bind_text(s, 1, repo, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)limit);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)offset);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < limit) {
        struct om_tag_row *t = &rows[*n];
        copy_col(s, 0, t->tag, sizeof(t->tag));
        copy_col(s, 1, t->digest.str, sizeof(t->digest.str));
        copy_col(s, 2, t->media_type, sizeof(t->media_type));
        t->size = col_u64(s, 3);
        t->fetched_at = sqlite3_column_int64(s, 4);
        t->checked_at = sqlite3_column_int64(s, 5);
        t->last_pulled = sqlite3_column_int64(s, 6);
        t->pull_count = col_u64(s, 7);
        (*n)++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = om_index__sql_err(ia->db, rc, "admin: tags");
done:
    sqlite3_finalize(s);
    if (in_tx)
        err = end_read(ia, err);
    if (locked)
        pthread_mutex_unlock(&ia->mu);
    return err;
}

int om_index_admin_digest_tags(struct om_index_admin *ia, const char *repo, const om_digest *d,
                               char (*out)[OM_TAG_MAX + 1], size_t max, size_t *n)
{
    sqlite3_stmt *s = NULL;
    int rc, err = OM_OK;

    *n = 0;
    if (!om_index__repo_ok(repo) || !om_index__digest_ok(d))
        return OM_ERR_INVALID;
    if (ia->shared != NULL)
        return om_index_redis__admin_digest_tags(ia->shared, repo, d, out, max, n);
    pthread_mutex_lock(&ia->mu);
    /* tags_digest indexes digest; the repo test filters its few rows. */
    if ((err = prepare(ia, "SELECT tag FROM tags WHERE digest = ?1 AND repo = ?2 ORDER BY tag",
                       &s)) != OM_OK)
        goto done;
    sqlite3_bind_text(s, 1, d->str, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, repo, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < max) {
        copy_col(s, 0, out[*n], OM_TAG_MAX + 1);
        (*n)++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = om_index__sql_err(ia->db, rc, "admin: digest tags");
done:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&ia->mu);
    return err;
}

/* ---- counts ------------------------------------------------------------- */

int om_index_admin_counts(struct om_index_admin *ia, struct om_index_admin_counts *out)
{
    static const char sql[] =
        "SELECT (SELECT count(*) FROM repos), (SELECT count(*) FROM tags),"
        " (SELECT count(*) FROM manifests), (SELECT count(*) FROM blobs),"
        " (SELECT coalesce(sum(size), 0) FROM manifests),"
        " (SELECT coalesce(sum(size), 0) FROM blobs)";
    sqlite3_stmt *s = NULL;
    int rc, err;

    memset(out, 0, sizeof(*out));
    if (ia->shared != NULL)
        return om_index_redis__admin_counts(ia->shared, out);
    pthread_mutex_lock(&ia->mu);
    if ((err = prepare(ia, sql, &s)) != OM_OK)
        goto done;
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        err = om_index__sql_err(ia->db, rc == SQLITE_DONE ? SQLITE_ERROR : rc, "admin: counts");
        goto done;
    }
    out->repos = col_u64(s, 0);
    out->tags = col_u64(s, 1);
    out->manifests = col_u64(s, 2);
    out->blobs = col_u64(s, 3);
    out->manifest_bytes = col_u64(s, 4);
    out->blob_bytes = col_u64(s, 5);
done:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&ia->mu);
    return err;
}
