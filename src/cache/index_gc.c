/* index_gc.c — GC's queries and deletions on the index (see index_gc.h for
 * why GC has its own connection).
 *
 * Design:
 *   - The connection is opened, checked and closed by index_db.c (flags
 *     GC_DB_FLAGS); this file judges the schema version and keeps its own
 *     SQL.  Statements are prepared once at open and cached in db->stmt[],
 *     indexed by enum gc_stmt with their text in GC_SQL[] (as
 *     index_sqlite.c does).
 *   - om_index_gc_load reads everything in one read transaction (WAL gives
 *     it a consistent snapshot while the server keeps writing).
 *   - om_index_gc_evict is one BEGIN IMMEDIATE transaction per image.  It
 *     re-checks on the live rows what the plan assumed on the snapshot:
 *       * the image was not used since (same last-used formula as the load:
 *         LAST_USED_SQL here, image_last_used() in the load);
 *       * a node is deleted only if no tag points at it, no remaining
 *         manifest lists it, and it was not touched since the cutoff
 *         (HELD_SQL).  Nodes come parent first, so deleting an index
 *         removes its manifest_children rows before its platform manifests
 *         are checked.
 *     A plan made on a stale snapshot can therefore only delete less.
 *   - The schema is index_db.c's (version 1).  A change there must be
 *     mirrored in GC_SQL[] and GC_SCHEMA_VERSION.
 *   - tags.log: deletion records (index_gc.h) are appended with O_APPEND and
 *     one write(2) each, inside the transaction and before its COMMIT: if
 *     the commit then fails, a rebuild forgets a tag the database still has
 *     (a cache miss later), never the reverse (a tag resurrected).  Other
 *     writers (index_sqlite_open.c in the server) append to the same file;
 *     a line torn by a crash is fenced off with a leading '\n', as the
 *     server does.
 */
#include "cache/index_gc.h"

#include "cache/index_gc_int.h"
#include "cache/index_private.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GC_SCHEMA_VERSION 1        /* the schema GC_SQL[] was written for */
#define GC_PATH_MAX 4096
/* GC's connection (index_db.c): read-write, never created here, no
 * quick_check (checking and recovering the file is om_index_open's). */
#define GC_DB_FLAGS (OM_INDEX_DB_WRITE | OM_INDEX_DB_SYNC_NORMAL | OM_INDEX_DB_VERSION)
#define GC_MAX_TAGS_PER_IMAGE 100000 /* bounds one transaction's tag list */

enum gc_stmt {
    G_BEGIN_READ, G_BEGIN, G_COMMIT, G_ROLLBACK,
    G_NODES, G_EDGES, G_TAGGED, G_UNTAGGED,
    G_KNOWN, G_TAG_DIGEST, G_REPO_HOLDS,
    G_LAST_USED, G_TAGS_OF, G_TAG_DEL, G_HELD,
    G_DEL_MANIFEST, G_DEL_MREPOS, G_DEL_CHILDREN, G_DEL_BLOB, G_DEL_BREPOS, G_DEL_REFERRERS,
    G_REPO_HAS_TAGS, G_REPO_DEL, G_REPO_DEL_M, G_REPO_DEL_B, G_REPO_DEL_R,
    G__COUNT
};

/* A manifest listed by another manifest that still exists.  (A row whose
 * parent is gone does not hold anything: the parent's rows are deleted
 * together, this is only belt and braces.) */
#define LISTED_BY_MANIFEST(d)                                                   \
    "EXISTS(SELECT 1 FROM manifest_children c JOIN manifests p ON p.digest = c.parent" \
    " WHERE c.child = " d " AND c.parent <> " d ")"

static const char *const GC_SQL[G__COUNT] = {
    [G_BEGIN_READ] = "BEGIN",
    [G_BEGIN] = "BEGIN IMMEDIATE",
    [G_COMMIT] = "COMMIT",
    [G_ROLLBACK] = "ROLLBACK",
    [G_NODES] = "SELECT digest, size, max(created_at, last_access), 1 FROM manifests"
                " UNION ALL SELECT digest, size, max(created_at, last_access), 0 FROM blobs",
    [G_EDGES] = "SELECT parent, child FROM manifest_children ORDER BY parent, child",
    /* SQLite: the bare columns repo, tag come from the row holding the max. */
    [G_TAGGED] = "SELECT digest, max(max(last_pulled, fetched_at)), count(*), repo, tag"
                 " FROM tags GROUP BY digest",
    [G_UNTAGGED] = "SELECT m.digest, (SELECT min(r.repo) FROM manifest_repos r"
                   " WHERE r.digest = m.digest) FROM manifests m"
                   " WHERE NOT EXISTS(SELECT 1 FROM tags t WHERE t.digest = m.digest)"
                   " AND NOT " LISTED_BY_MANIFEST("m.digest"),
    [G_KNOWN] = "SELECT EXISTS(SELECT 1 FROM manifests WHERE digest = ?1)"
                " OR EXISTS(SELECT 1 FROM blobs WHERE digest = ?1)",
    [G_TAG_DIGEST] = "SELECT digest FROM tags WHERE repo = ?1 AND tag = ?2",
    [G_REPO_HOLDS] = "SELECT EXISTS(SELECT 1 FROM tags WHERE repo = ?1 AND digest = ?2)"
                     " OR EXISTS(SELECT 1 FROM manifest_repos WHERE repo = ?1 AND digest = ?2)",
    /* The same formula as image_last_used() below. */
    [G_LAST_USED] = "SELECT max("
                    "coalesce((SELECT max(max(last_pulled, fetched_at)) FROM tags"
                    " WHERE digest = ?1), 0),"
                    "coalesce((SELECT max(created_at, last_access) FROM manifests"
                    " WHERE digest = ?1), 0),"
                    "coalesce((SELECT max(max(m.created_at, m.last_access))"
                    " FROM manifest_children c JOIN manifests m ON m.digest = c.child"
                    " WHERE c.parent = ?1), 0))",
    [G_TAGS_OF] = "SELECT repo, tag FROM tags WHERE digest = ?1"
                  " AND (?2 IS NULL OR repo = ?2) AND (?3 IS NULL OR tag = ?3)"
                  " ORDER BY repo, tag LIMIT ?4",
    [G_TAG_DEL] = "DELETE FROM tags WHERE repo = ?1 AND tag = ?2 AND digest = ?3",
    [G_HELD] = "SELECT EXISTS(SELECT 1 FROM tags WHERE digest = ?1)"
               " OR " LISTED_BY_MANIFEST("?1")
               " OR coalesce((SELECT max(created_at, last_access) FROM manifests"
               " WHERE digest = ?1), -1) >= ?2"
               " OR coalesce((SELECT max(created_at, last_access) FROM blobs"
               " WHERE digest = ?1), -1) >= ?2",
    [G_DEL_MANIFEST] = "DELETE FROM manifests WHERE digest = ?1",
    [G_DEL_MREPOS] = "DELETE FROM manifest_repos WHERE digest = ?1",
    [G_DEL_CHILDREN] = "DELETE FROM manifest_children WHERE parent = ?1",
    [G_DEL_BLOB] = "DELETE FROM blobs WHERE digest = ?1",
    [G_DEL_BREPOS] = "DELETE FROM blob_repos WHERE digest = ?1",
    [G_DEL_REFERRERS] = "DELETE FROM referrers WHERE digest = ?1",
    [G_REPO_HAS_TAGS] = "SELECT EXISTS(SELECT 1 FROM tags WHERE repo = ?1)",
    [G_REPO_DEL] = "DELETE FROM repos WHERE name = ?1",
    [G_REPO_DEL_M] = "DELETE FROM manifest_repos WHERE repo = ?1",
    [G_REPO_DEL_B] = "DELETE FROM blob_repos WHERE repo = ?1",
    [G_REPO_DEL_R] = "DELETE FROM referrers WHERE repo = ?1",
};

struct om_gc_db {
    sqlite3 *db;                    /* owned; closed in om_index_gc_close */
    sqlite3_stmt *stmt[G__COUNT];   /* owned; finalized in om_index_gc_close */
    int log_fd;                     /* tags.log, O_APPEND; owned */
    char log_path[GC_PATH_MAX];
    struct om_gc_redis *rx;         /* owned; not NULL: the Redis side (index_gc_redis.c),
                                       and nothing above is used */
};

/* A tag removed by om_index_gc_evict (for its tags.log record). */
struct tag_ref {
    char repo[OM_NAME_MAX + 1];
    char tag[OM_TAG_MAX + 1];
};

/* ---- statement helpers ------------------------------------------------ */

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v == NULL)
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

static void stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Step a statement that returns no rows (or ignores them), then reset it. */
static int run(struct om_gc_db *db, enum gc_stmt id)
{
    sqlite3_stmt *s = db->stmt[id];
    int rc = sqlite3_step(s);
    int err = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? OM_OK
                                                     : om_index__sql_err(db->db, rc, GC_SQL[id]);
    stmt_done(s);
    return err;
}

/* Run a statement bound with one digest; *changes gets the rows changed. */
static int run_digest(struct om_gc_db *db, enum gc_stmt id, const char *d, int *changes)
{
    bind_text(db->stmt[id], 1, d);
    int err = run(db, id);
    if (changes != NULL)
        *changes = err == OM_OK ? sqlite3_changes(db->db) : 0;
    return err;
}

/* A one-row, one-integer query (already bound). */
static int query_int(struct om_gc_db *db, enum gc_stmt id, int64_t *out)
{
    sqlite3_stmt *s = db->stmt[id];
    int rc = sqlite3_step(s);
    int err = OM_OK;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    else
        err = om_index__sql_err(db->db, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, GC_SQL[id]);
    stmt_done(s);
    return err;
}

/* ---- open/close ------------------------------------------------------- */

int om_index_gc_open(struct om_gc_db **out, const char *root)
{
    struct om_gc_db *db = NULL;
    struct om_index_db_res res;
    char path[GC_PATH_MAX];
    int err = OM_OK;

    *out = NULL;
    db = calloc(1, sizeof(*db)); /* owned by the caller via *out, or closed below */
    if (db == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    db->log_fd = -1;
    if ((err = om_index__path(path, sizeof(path), root, "index.db")) != OM_OK ||
        (err = om_index__path(db->log_path, sizeof(db->log_path), root, "tags.log")) != OM_OK)
        goto done;
    /* No OM_INDEX_DB_CREATE: creating (and rebuilding) is om_index_open's job. */
    if (om_index__db_open(path, GC_DB_FLAGS, &db->db, &res) != OM_OK) {
        err = om_index__sql_err_msg(res.rc,
                                    res.step == OM_INDEX_DB_STEP_OPEN ? "gc: open index.db"
                                                                      : "gc: check index.db",
                                    res.msg);
        goto done;
    }
    if (res.version != GC_SCHEMA_VERSION) {
        om_log(OM_LOG_ERROR, "gc: %s has schema version %lld, GC knows %d", path,
               (long long)res.version, GC_SCHEMA_VERSION);
        err = OM_ERR_INVALID;
        goto done;
    }
    if ((err = om_index__db_prepare(db->db, GC_SQL, G__COUNT, SQLITE_PREPARE_PERSISTENT,
                                    db->stmt)) != OM_OK)
        goto done;
    db->log_fd = open(db->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (db->log_fd < 0) {
        om_log(OM_LOG_ERROR, "gc: open %s: %s", db->log_path, strerror(errno));
        err = OM_ERR_IO;
        goto done;
    }
    *out = db;
    db = NULL;
done:
    om_index_gc_close(db);
    return err;
}

int om_index_gc__wrap_redis(struct om_gc_db **out, struct om_gc_redis *rx)
{
    struct om_gc_db *db = calloc(1, sizeof(*db)); /* owned by the caller via *out */

    *out = NULL;
    if (db == NULL) {
        om_gc_redis__close(rx);
        return OM_ERR_NOMEM;
    }
    db->log_fd = -1;
    db->rx = rx;
    *out = db;
    return OM_OK;
}

int om_index_gc_lead(struct om_gc_db *db, bool *leader, char *holder_out, size_t holder_sz)
{
    if (holder_out != NULL && holder_sz > 0)
        holder_out[0] = '\0';
    if (db->rx != NULL)
        return om_gc_redis__lead(db->rx, leader, holder_out, holder_sz);
    *leader = true;
    return OM_OK;
}

void om_index_gc_unlead(struct om_gc_db *db)
{
    if (db->rx != NULL)
        om_gc_redis__unlead(db->rx);
}

bool om_index_gc_lost(struct om_gc_db *db)
{
    return db->rx != NULL && om_gc_redis__lost(db->rx);
}

bool om_index_gc_leading(struct om_gc_db *db)
{
    return db != NULL && db->rx != NULL && om_gc_redis__leading(db->rx);
}

void om_index_gc_close(struct om_gc_db *db)
{
    if (db == NULL)
        return;
    if (db->rx != NULL) {
        om_gc_redis__close(db->rx);
        free(db);
        return;
    }
    om_index__db_close(db->db, db->stmt, G__COUNT, "gc");
    if (db->log_fd >= 0)
        close(db->log_fd);
    free(db);
}

/* ---- the snapshot ----------------------------------------------------- */

static bool col_digest(sqlite3_stmt *s, int col, om_digest *out)
{
    const char *v = (const char *)sqlite3_column_text(s, col);
    return v != NULL && om_digest_parse(out, v, strlen(v)) == OM_OK;
}

static void col_str(sqlite3_stmt *s, int col, char *out, size_t outsz)
{
    const char *v = (const char *)sqlite3_column_text(s, col);
    snprintf(out, outsz, "%s", v != NULL ? v : ""); /* display only: truncation is fine */
}

static int load_nodes(struct om_gc_db *db, struct om_gc_graph *g)
{
    sqlite3_stmt *s = db->stmt[G_NODES];
    struct om_gc_node *n;
    int rc, err = OM_OK;

    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        om_digest d;
        if (!col_digest(s, 0, &d))
            continue; /* a bad row cannot name a file: nothing to collect */
        if ((err = om_gc_graph_add_node(g, &n)) != OM_OK)
            goto done;
        n->digest = d;
        n->size = (uint64_t)sqlite3_column_int64(s, 1);
        n->recent = sqlite3_column_int64(s, 2);
        n->manifest = sqlite3_column_int(s, 3) != 0;
    }
    if (rc != SQLITE_DONE)
        err = om_index__sql_err(db->db, rc, "gc: load nodes");
done:
    stmt_done(s);
    if (err == OM_OK)
        om_gc_graph_sort_nodes(g);
    return err;
}

static int load_edges(struct om_gc_db *db, struct om_gc_graph *g)
{
    sqlite3_stmt *s = db->stmt[G_EDGES];
    long cur = -1;
    int rc, err = OM_OK;

    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *parent = (const char *)sqlite3_column_text(s, 0);
        const char *child = (const char *)sqlite3_column_text(s, 1);
        long pi, ci;
        if (parent == NULL || child == NULL)
            continue;
        pi = (cur >= 0 && strcmp(g->nodes[cur].digest.str, parent) == 0)
                 ? cur : om_gc_graph_find(g, parent);
        ci = om_gc_graph_find(g, child);
        if (pi < 0 || ci < 0)
            continue; /* parent gone, or a child not cached (another platform) */
        if (pi != cur) {
            if (g->nodes[pi].n_children > 0)
                continue; /* rows not grouped by parent: cannot happen with ORDER BY */
            g->nodes[pi].first_child = (uint32_t)g->n_edges;
            cur = pi;
        }
        if ((err = om_gc_graph_add_edge(g, (uint32_t)ci)) != OM_OK)
            goto done;
        g->nodes[pi].n_children++;
    }
    if (rc != SQLITE_DONE)
        err = om_index__sql_err(db->db, rc, "gc: load edges");
done:
    stmt_done(s);
    return err;
}

/* The LRU key of the image rooted at node r (G_LAST_USED is the same in SQL). */
static int64_t image_last_used(const struct om_gc_graph *g, uint32_t r, int64_t tags_used)
{
    const struct om_gc_node *n = &g->nodes[r];
    int64_t t = tags_used > n->recent ? tags_used : n->recent;
    for (uint32_t i = 0; i < n->n_children; i++) {
        const struct om_gc_node *c = &g->nodes[g->edges[n->first_child + i]];
        if (c->manifest && c->recent > t)
            t = c->recent;
    }
    return t;
}

static int load_images(struct om_gc_db *db, struct om_gc_graph *g)
{
    sqlite3_stmt *s = db->stmt[G_TAGGED];
    struct om_gc_image *im;
    int rc, err = OM_OK;

    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        om_digest d;
        long r;
        if (!col_digest(s, 0, &d) || (r = om_gc_graph_find(g, d.str)) < 0)
            continue; /* a tag whose manifest is not indexed: nothing to evict */
        if ((err = om_gc_graph_add_image(g, &im)) != OM_OK)
            goto done;
        im->root = (uint32_t)r;
        im->last_used = image_last_used(g, im->root, sqlite3_column_int64(s, 1));
        im->n_tags = (uint32_t)sqlite3_column_int64(s, 2);
        col_str(s, 3, im->repo, sizeof(im->repo));
        col_str(s, 4, im->tag, sizeof(im->tag));
    }
    if (rc != SQLITE_DONE) {
        err = om_index__sql_err(db->db, rc, "gc: load tagged images");
        goto done;
    }
    stmt_done(s);
    s = db->stmt[G_UNTAGGED];
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        om_digest d;
        long r;
        if (!col_digest(s, 0, &d) || (r = om_gc_graph_find(g, d.str)) < 0)
            continue;
        if ((err = om_gc_graph_add_image(g, &im)) != OM_OK)
            goto done;
        im->root = (uint32_t)r;
        im->last_used = image_last_used(g, im->root, 0);
        col_str(s, 1, im->repo, sizeof(im->repo));
    }
    if (rc != SQLITE_DONE)
        err = om_index__sql_err(db->db, rc, "gc: load untagged images");
done:
    stmt_done(s);
    return err;
}

int om_index_gc_load(struct om_gc_db *db, struct om_gc_graph *g)
{
    int err;

    if (g->n_nodes != 0 || g->n_images != 0)
        return OM_ERR_INVALID;
    if (db->rx != NULL)
        return om_gc_redis__load(db->rx, g);
    if ((err = run(db, G_BEGIN_READ)) != OM_OK)
        return err;
    if ((err = load_nodes(db, g)) == OM_OK && (err = load_edges(db, g)) == OM_OK)
        err = load_images(db, g);
    (void)run(db, err == OM_OK ? G_COMMIT : G_ROLLBACK); /* read-only: nothing to lose */
    if (err != OM_OK)
        om_gc_graph_free(g);
    return err;
}

/* ---- lookups ---------------------------------------------------------- */

int om_index_gc_known(struct om_gc_db *db, const om_digest *d, bool *known)
{
    int64_t v = 0;
    int err;

    *known = false;
    if (!om_index__digest_ok(d))
        return OM_ERR_INVALID;
    if (db->rx != NULL)
        return om_gc_redis__known(db->rx, d, known);
    bind_text(db->stmt[G_KNOWN], 1, d->str);
    if ((err = query_int(db, G_KNOWN, &v)) == OM_OK)
        *known = v != 0;
    return err;
}

int om_index_gc_resolve(struct om_gc_db *db, const char *repo, const char *reference,
                        om_digest *root, bool *is_tag)
{
    sqlite3_stmt *s;
    int64_t holds = 0;
    int rc, err = OM_OK;

    *is_tag = false;
    if (!om_index__repo_ok(repo) || reference == NULL)
        return OM_ERR_INVALID;
    if (db->rx != NULL)
        return om_gc_redis__resolve(db->rx, repo, reference, root, is_tag);
    if (strncmp(reference, "sha256:", 7) == 0) {
        if (om_digest_parse(root, reference, strlen(reference)) != OM_OK)
            return OM_ERR_INVALID;
        s = db->stmt[G_REPO_HOLDS];
        bind_text(s, 1, repo);
        bind_text(s, 2, root->str);
        if ((err = query_int(db, G_REPO_HOLDS, &holds)) == OM_OK && holds == 0)
            err = OM_ERR_NOTFOUND;
        return err;
    }
    if (!om_index__tag_ok(reference))
        return OM_ERR_INVALID;
    *is_tag = true;
    s = db->stmt[G_TAG_DIGEST];
    bind_text(s, 1, repo);
    bind_text(s, 2, reference);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        err = OM_ERR_NOTFOUND;
    else if (rc != SQLITE_ROW)
        err = om_index__sql_err(db->db, rc, "gc: resolve tag");
    else if (!col_digest(s, 0, root))
        err = OM_ERR_IO;
    stmt_done(s);
    return err;
}

/* ---- eviction --------------------------------------------------------- */

/* Append a deletion record to tags.log with one write(2) (index_gc_int.h). */
int om_index_gc__log_deleted(int log_fd, const char *log_path, const char *repo,
                             const char *tag, const om_digest *d, int64_t now)
{
    char line[OM_INDEX_LOG_LINE_MAX + 2]; /* optional leading '\n' + record + '\n' */
    struct stat sb;
    char last = '\n';
    size_t off, n;
    ssize_t w;
    int err = OM_OK;
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:I}", "repo", repo, "tag", tag,
                          "digest", d->str, "deleted", 1, "t", (json_int_t)now); /* freed below */

    if (o == NULL) {
        err = OM_ERR_INVALID;
        goto done;
    }
    /* Another writer's torn last line must not swallow this record. */
    if (fstat(log_fd, &sb) == 0 && sb.st_size > 0 &&
        pread(log_fd, &last, 1, sb.st_size - 1) != 1)
        last = '\0';
    off = last == '\n' ? 0 : 1;
    line[0] = '\n';
    n = json_dumpb(o, line + off, OM_INDEX_LOG_LINE_MAX, JSON_COMPACT);
    if (n == 0 || n > OM_INDEX_LOG_LINE_MAX) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    line[off + n] = '\n';
    do {
        w = write(log_fd, line, off + n + 1);
    } while (w < 0 && errno == EINTR);
    if (w != (ssize_t)(off + n + 1)) {
        int e = w < 0 ? errno : ENOSPC;
        om_log(OM_LOG_ERROR, "gc: append %s: %s", log_path, strerror(e));
        err = (e == ENOSPC || e == EDQUOT) ? OM_ERR_NOSPACE : OM_ERR_IO;
    }
done:
    json_decref(o);
    return err;
}

/* Collect the tags of the root the request names (bounded). *out malloc'd,
 * owned by the caller. */
static int collect_tags(struct om_gc_db *db, const struct om_gc_evict_req *req,
                        struct tag_ref **out, size_t *n_out)
{
    sqlite3_stmt *s = db->stmt[G_TAGS_OF];
    struct tag_ref *v = NULL;
    size_t n = 0, cap = 0;
    int rc, err = OM_OK;

    bind_text(s, 1, req->root->str);
    bind_text(s, 2, req->repo);
    bind_text(s, 3, req->tag);
    sqlite3_bind_int64(s, 4, GC_MAX_TAGS_PER_IMAGE);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *repo = (const char *)sqlite3_column_text(s, 0);
        const char *tag = (const char *)sqlite3_column_text(s, 1);
        if (!om_index__repo_ok(repo) || !om_index__tag_ok(tag))
            continue; /* cannot be logged; index_sqlite.c never writes such a row */
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct tag_ref *nv = realloc(v, ncap * sizeof(*v)); /* owned via *out */
            if (nv == NULL) {
                err = OM_ERR_NOMEM;
                goto done;
            }
            v = nv;
            cap = ncap;
        }
        snprintf(v[n].repo, sizeof(v[n].repo), "%s", repo);
        snprintf(v[n].tag, sizeof(v[n].tag), "%s", tag);
        n++;
    }
    if (rc != SQLITE_DONE)
        err = om_index__sql_err(db->db, rc, "gc: tags of image");
done:
    stmt_done(s);
    if (err != OM_OK) {
        free(v);
        v = NULL;
        n = 0;
    }
    *out = v;
    *n_out = n;
    return err;
}

/* Delete every row of node d if nothing holds it; *deleted says whether a
 * manifest or blob row went. */
static int drop_node(struct om_gc_db *db, const om_digest *d, int64_t cutoff, bool *deleted)
{
    static const enum gc_stmt rest[] = {G_DEL_MREPOS, G_DEL_CHILDREN, G_DEL_BREPOS,
                                        G_DEL_REFERRERS};
    sqlite3_stmt *s = db->stmt[G_HELD];
    int64_t held = 1;
    int err, cm = 0, cb = 0;

    *deleted = false;
    bind_text(s, 1, d->str);
    sqlite3_bind_int64(s, 2, cutoff);
    if ((err = query_int(db, G_HELD, &held)) != OM_OK || held != 0)
        return err;
    if ((err = run_digest(db, G_DEL_MANIFEST, d->str, &cm)) != OM_OK ||
        (err = run_digest(db, G_DEL_BLOB, d->str, &cb)) != OM_OK)
        return err;
    for (size_t i = 0; i < OM_ARRAY_LEN(rest); i++) {
        if ((err = run_digest(db, rest[i], d->str, NULL)) != OM_OK)
            return err;
    }
    *deleted = cm + cb > 0;
    return OM_OK;
}

/* Forget a repository that has no tag left (the catalog stops listing it). */
static int drop_repo_if_empty(struct om_gc_db *db, const char *repo, bool *dropped)
{
    static const enum gc_stmt del[] = {G_REPO_DEL, G_REPO_DEL_M, G_REPO_DEL_B, G_REPO_DEL_R};
    int64_t has = 1;
    int err;

    *dropped = false;
    bind_text(db->stmt[G_REPO_HAS_TAGS], 1, repo);
    if ((err = query_int(db, G_REPO_HAS_TAGS, &has)) != OM_OK || has != 0)
        return err;
    for (size_t i = 0; i < OM_ARRAY_LEN(del); i++) {
        if ((err = run_digest(db, del[i], repo, NULL)) != OM_OK) /* ?1 = the name */
            return err;
    }
    *dropped = true;
    return OM_OK;
}

int om_index_gc_evict(struct om_gc_db *db, const struct om_gc_evict_req *req, bool *deleted,
                      struct om_gc_evict_out *out)
{
    struct tag_ref *tags = NULL;
    size_t n_tags = 0;
    bool in_tx = false;
    int err;

    memset(out, 0, sizeof(*out));
    if ((req->root != NULL && !om_index__digest_ok(req->root)) ||
        (req->n_nodes > 0 && (req->nodes == NULL || deleted == NULL)))
        return OM_ERR_INVALID;
    for (size_t i = 0; i < req->n_nodes; i++)
        deleted[i] = false;
    if (db->rx != NULL)
        return om_gc_redis__evict(db->rx, req, deleted, out);
    if ((err = run(db, G_BEGIN)) != OM_OK)
        goto done;
    in_tx = true;
    if (req->root != NULL && req->expect_last_used != INT64_MAX) {
        int64_t used = 0;
        bind_text(db->stmt[G_LAST_USED], 1, req->root->str);
        if ((err = query_int(db, G_LAST_USED, &used)) != OM_OK)
            goto done;
        if (used > req->expect_last_used) {
            out->touched = true; /* a client came back to it: keep it */
            goto done;
        }
    }
    if (req->root != NULL) {
        if ((err = collect_tags(db, req, &tags, &n_tags)) != OM_OK)
            goto done;
        for (size_t i = 0; i < n_tags; i++) {
            sqlite3_stmt *s = db->stmt[G_TAG_DEL];
            if ((err = om_index_gc__log_deleted(db->log_fd, db->log_path, tags[i].repo,
                                                tags[i].tag, req->root, req->now)) != OM_OK)
                goto done;
            bind_text(s, 1, tags[i].repo);
            bind_text(s, 2, tags[i].tag);
            bind_text(s, 3, req->root->str);
            if ((err = run(db, G_TAG_DEL)) != OM_OK)
                goto done;
            out->tags_deleted += (size_t)sqlite3_changes(db->db);
        }
    }
    for (size_t i = 0; i < req->n_nodes; i++) {
        if ((err = drop_node(db, &req->nodes[i], req->cutoff, &deleted[i])) != OM_OK)
            goto done;
        out->n_deleted += deleted[i];
    }
    for (size_t i = 0; i < n_tags; i++) {
        bool dropped = false;
        if (i > 0 && strcmp(tags[i - 1].repo, tags[i].repo) == 0)
            continue; /* sorted by repo: one check per repository */
        if ((err = drop_repo_if_empty(db, tags[i].repo, &dropped)) != OM_OK)
            goto done;
        out->repos_deleted += dropped;
    }
    err = run(db, G_COMMIT);
    in_tx = err != OM_OK;
done:
    if (in_tx)
        (void)run(db, G_ROLLBACK);
    if (err != OM_OK || out->touched) {
        for (size_t i = 0; i < req->n_nodes; i++)
            deleted[i] = false;
        out->n_deleted = 0;
        out->tags_deleted = 0;
        out->repos_deleted = 0;
    }
    free(tags);
    return err;
}
