/* index_rebuild.c — rebuilding the index database from the store and
 * tags.log (the SQLite backend's om_index_rebuild, and om_index_open when
 * index.db is missing, empty or corrupt).  Opening and checking the
 * database, its schema and moving a bad file aside are index_db.c's; the
 * queries are index_sqlite.c's.
 *
 * Rebuild (om_index__rebuild_db), used by om_index_open() (missing, empty
 * or corrupt index.db) and om_index_rebuild(): ONE transaction on the
 * caller's connection, so either the rebuilt index replaces the old content
 * completely or nothing changes.  The index mutex is held throughout (callers wait).
 *
 * Steps:
 *   1. Empty every table.
 *   2. Walk the store.  A blob of at most 4 MiB whose first non-blank byte
 *      is '{' is parsed with jansson; it is a manifest when it is a JSON
 *      object that (a) says what it is — a string "mediaType" or
 *      "schemaVersion": 2 — and (b) has manifest structure — a "manifests"
 *      array (index / manifest list), a "config" object or "layers" array
 *      (image manifest) or a "blobs" array (the old OCI artifact manifest).
 *      Requiring both keeps image configs (which have a "config" object but
 *      no mediaType/schemaVersion) and bare descriptors (mediaType only)
 *      out.  Its media type is "mediaType", or inferred: "manifests" → OCI
 *      image index, else OCI image manifest.  Its children are the digests
 *      of config, layers[], manifests[] and blobs[] (never "subject": that
 *      points the other way).  Everything else is recorded as a blob.
 *   3. Replay tags.log in order; for each (repo, tag) the last line wins.  A
 *      line that does not parse (a torn last line, a damaged line) or fails
 *      validation is skipped.  A tag whose digest is not in the store is
 *      dropped (and an earlier line for the same tag no longer applies).  A
 *      tagged digest that step 2 did not recognise as a manifest becomes one
 *      with the log's media type.  [added for gc.c] A deletion record
 *      {"repo","tag","digest","deleted":true,"t"} (written by index_gc.c
 *      when GC evicts an image) removes the tag if it still names that
 *      digest, and the repository with its last tag.
 *   4. Repository membership: every manifest and blob reachable from a tag
 *      (tag → index → platform manifests → config/layers) joins the tag's
 *      repository.
 *   5. Sizes: a blob row gets the size its file SHOULD have, not the size
 *      of a file that may be damaged (truncated, grown): every descriptor
 *      of every stored manifest carries a "size", collected in step 2 (a
 *      temporary table, rb_desc).  A blob whose file size is among the
 *      sizes its descriptors give keeps it.  One whose size no descriptor
 *      gives is hashed (rare: a damaged disk, or a manifest that lies about
 *      a size): bytes that match the digest keep their size — the manifest
 *      is wrong, not the file — and others get the largest descriptor size.
 *      The server compares the file with the recorded size before it serves
 *      it (v2/v2_blob.c), so a blob damaged before the rebuild is caught
 *      after it too.  Blobs no stored manifest references keep their file's
 *      size: nothing says otherwise (fsck's hashing still catches them).
 *      At most SIZE_CHECKS_MAX such blobs are looked at per rebuild (a
 *      bound on memory); the rest keep their file's size, fsck finds them.
 *
 * Limits (what cannot be recovered): tags come only from tags.log;
 * manifests and blobs are rediscovered by parsing the store; repository
 * membership of manifests and blobs is recovered only for content reachable
 * from a tag in tags.log (a tagged manifest, its platform manifests, their
 * config and layers).  Content pulled only by digest comes back with no
 * repository; pull counts, last-access times (reset to the rebuild time),
 * route decisions, negative entries and cached referrers are lost.
 *
 * Times: manifests and blobs get created_at = last_access = the rebuild
 * time; tags get fetched_at = checked_at = the log line's "t".
 */
#include "cache/index_private.h"

#include "core/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PEEK_BYTES 64 /* enough to skip leading blanks before '{' */

/* ---- rebuild ------------------------------------------------------------ */

static const char OCI_INDEX[] = "application/vnd.oci.image.index.v1+json";
static const char OCI_MANIFEST[] = "application/vnd.oci.image.manifest.v1+json";

enum rb_stmt {
    R_MANIFEST_INS, R_CHILD_INS, R_BLOB_INS, R_REPO_ADD, R_TAG_PUT, R_TAG_DEL,
    R_MANIFEST_FROM_TAG, R_BLOB_DEL, R_COUNT_MANIFESTS, R_COUNT_TAGS, R_COUNT_BLOBS,
    R_TAG_DEL_IF, R_REPO_DEL_EMPTY, /* [added for gc.c] deletion records */
    R_DESC_INS, R_DESC_ODD, R_BLOB_SIZE_SET, /* step 5: sizes */
    R__COUNT
};

static const char *const RB_SQL[R__COUNT] = {
    [R_MANIFEST_INS] = "INSERT OR REPLACE INTO manifests(digest, media_type, size, created_at,"
                       " last_access) VALUES(?1, ?2, ?3, ?4, ?4)",
    [R_CHILD_INS] = "INSERT OR IGNORE INTO manifest_children(parent, child) VALUES(?1, ?2)",
    [R_BLOB_INS] = "INSERT OR REPLACE INTO blobs(digest, size, created_at, last_access)"
                   " VALUES(?1, ?2, ?3, ?3)",
    [R_REPO_ADD] = "INSERT OR IGNORE INTO repos(name) VALUES(?1)",
    [R_TAG_PUT] = "INSERT OR REPLACE INTO tags(repo, tag, digest, media_type, size, fetched_at,"
                  " checked_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    [R_TAG_DEL] = "DELETE FROM tags WHERE repo = ?1 AND tag = ?2",
    [R_MANIFEST_FROM_TAG] = "INSERT OR IGNORE INTO manifests(digest, media_type, size,"
                            " created_at, last_access) VALUES(?1, ?2, ?3, ?4, ?4)",
    [R_BLOB_DEL] = "DELETE FROM blobs WHERE digest = ?1",
    [R_COUNT_MANIFESTS] = "SELECT count(*) FROM manifests",
    [R_COUNT_TAGS] = "SELECT count(*) FROM tags",
    [R_COUNT_BLOBS] = "SELECT count(*) FROM blobs",
    [R_TAG_DEL_IF] = "DELETE FROM tags WHERE repo = ?1 AND tag = ?2 AND digest = ?3",
    [R_REPO_DEL_EMPTY] = "DELETE FROM repos WHERE name = ?1"
                         " AND NOT EXISTS(SELECT 1 FROM tags WHERE repo = ?1)",
    [R_DESC_INS] = "INSERT OR IGNORE INTO temp.rb_desc(digest, size) VALUES(?1, ?2)",
    /* Blobs whose file size no descriptor gives, with the largest one. */
    [R_DESC_ODD] = "SELECT b.digest, (SELECT max(d.size) FROM temp.rb_desc d"
                   " WHERE d.digest = b.digest) FROM blobs b"
                   " WHERE b.digest IN (SELECT digest FROM temp.rb_desc)"
                   " AND NOT EXISTS(SELECT 1 FROM temp.rb_desc d WHERE d.digest = b.digest"
                   " AND d.size = b.size)",
    [R_BLOB_SIZE_SET] = "UPDATE blobs SET size = ?2 WHERE digest = ?1",
};

/* Step 5's table: (digest, size) of every descriptor of a stored manifest;
 * created inside the rebuild's transaction (so a rollback drops it too)
 * before the statements that use it are prepared, dropped at the end. */
static const char DESC_CREATE_SQL[] =
    "CREATE TEMP TABLE IF NOT EXISTS rb_desc(digest TEXT NOT NULL, size INTEGER NOT NULL,"
    " PRIMARY KEY(digest, size)) WITHOUT ROWID; DELETE FROM temp.rb_desc;";
static const char DESC_DROP_SQL[] = "DROP TABLE IF EXISTS temp.rb_desc;";
#define SIZE_CHECKS_MAX 65536       /* step 5: blobs hashed per rebuild, at most */

static const char CLEAR_SQL[] =
    "DELETE FROM repos; DELETE FROM tags; DELETE FROM manifests;"
    "DELETE FROM manifest_repos; DELETE FROM manifest_children; DELETE FROM blobs;"
    "DELETE FROM blob_repos; DELETE FROM routes; DELETE FROM negative;"
    "DELETE FROM referrers;";

/* UNION (not UNION ALL) makes the recursion stop on cycles. */
#define REACH_CTE                                                                  \
    "WITH RECURSIVE reach(repo, d) AS (SELECT repo, digest FROM tags"              \
    " UNION SELECT reach.repo, c.child FROM reach"                                 \
    " JOIN manifest_children c ON c.parent = reach.d) "
static const char MEMBERSHIP_SQL[] =
    REACH_CTE "INSERT OR IGNORE INTO manifest_repos(repo, digest)"
    " SELECT repo, d FROM reach WHERE d IN (SELECT digest FROM manifests);"
    REACH_CTE "INSERT OR IGNORE INTO blob_repos(repo, digest)"
    " SELECT repo, d FROM reach WHERE d IN (SELECT digest FROM blobs);";

struct rb {
    sqlite3 *db;
    struct om_store *st;
    int64_t now;
    sqlite3_stmt *s[R__COUNT];  /* owned; finalized at the end */
    char *buf;                  /* owned scratch: OM_INDEX_MANIFEST_PARSE_MAX + 1 */
    int err;                    /* first fatal error inside the walk */
    size_t lines_bad, tags_dropped;
};

static int rb_run(struct rb *rb, enum rb_stmt id)
{
    sqlite3_stmt *s = rb->s[id];
    int rc = sqlite3_step(s);
    int err = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? OM_OK
                                                     : om_index__sql_err(rb->db, rc, RB_SQL[id]);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return err;
}

static int rb_count(struct rb *rb, enum rb_stmt id, size_t *out)
{
    sqlite3_stmt *s = rb->s[id];
    int rc = sqlite3_step(s);
    int err = OM_OK;
    if (rc == SQLITE_ROW)
        *out = (size_t)sqlite3_column_int64(s, 0);
    else
        err = om_index__sql_err(rb->db, rc, RB_SQL[id]);
    sqlite3_reset(s);
    return err;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* Read exactly len bytes from offset 0 through the store's ranged read
 * (any backend: a local file, or an object in a bucket). */
static bool read_all(struct om_store *st, const om_digest *d, char *buf, size_t len)
{
    size_t got = 0, n = 0;
    while (got < len) {
        if (om_store_read_at(st, d, got, buf + got, len - got, &n) != OM_OK || n == 0)
            return false;
        got += n;
    }
    return true;
}

/* Parse the blob as JSON when it looks like a JSON object.  *out is NULL
 * when it does not; a new reference otherwise (caller decrefs).  A blob
 * removed while we walk, or unreadable, stays a plain blob. */
static int load_json(struct rb *rb, const om_digest *d, uint64_t size, json_t **out)
{
    size_t peek = size < PEEK_BYTES ? (size_t)size : PEEK_BYTES, i = 0;

    *out = NULL;
    if (!read_all(rb->st, d, rb->buf, peek))
        return OM_OK;
    while (i < peek && (rb->buf[i] == ' ' || rb->buf[i] == '\t' || rb->buf[i] == '\r' ||
                        rb->buf[i] == '\n'))
        i++;
    if (i == peek || rb->buf[i] != '{')
        return OM_OK;
    if (!read_all(rb->st, d, rb->buf, (size_t)size))
        return OM_OK;
    *out = json_loadb(rb->buf, (size_t)size, 0, NULL);
    return OM_OK;
}

/* The media type when j is a manifest (see the file comment), else NULL.
 * The returned string belongs to j. */
static const char *manifest_type(json_t *j)
{
    if (!json_is_object(j))
        return NULL;
    json_t *mt = json_object_get(j, "mediaType");
    json_t *sv = json_object_get(j, "schemaVersion");
    bool has_manifests = json_is_array(json_object_get(j, "manifests"));
    bool has_image = json_is_object(json_object_get(j, "config")) ||
                     json_is_array(json_object_get(j, "layers"));
    bool has_blobs = json_is_array(json_object_get(j, "blobs"));
    bool typed = json_is_string(mt) || (json_is_integer(sv) && json_integer_value(sv) == 2);

    if (!typed || !(has_manifests || has_image || has_blobs))
        return NULL;
    if (json_is_string(mt) && json_string_length(mt) > 0 &&
        om_index__media_type_ok(json_string_value(mt)))
        return json_string_value(mt);
    return has_manifests ? OCI_INDEX : OCI_MANIFEST;
}

static int add_child(struct rb *rb, const om_digest *parent, json_t *desc)
{
    json_t *dj = json_is_object(desc) ? json_object_get(desc, "digest") : NULL;
    json_t *sj = json_is_object(desc) ? json_object_get(desc, "size") : NULL;
    om_digest child;
    int err;

    if (!json_is_string(dj) ||
        om_digest_parse(&child, json_string_value(dj), json_string_length(dj)) != OM_OK)
        return OM_OK; /* not a sha256 descriptor: nothing we could store */
    bind_text(rb->s[R_CHILD_INS], 1, parent->str);
    bind_text(rb->s[R_CHILD_INS], 2, child.str);
    if ((err = rb_run(rb, R_CHILD_INS)) != OM_OK || !json_is_integer(sj) ||
        json_integer_value(sj) < 0)
        return err; /* no usable size: this descriptor says nothing of it */
    bind_text(rb->s[R_DESC_INS], 1, child.str);
    sqlite3_bind_int64(rb->s[R_DESC_INS], 2, (sqlite3_int64)json_integer_value(sj));
    return rb_run(rb, R_DESC_INS);
}

static int record_manifest(struct rb *rb, const om_digest *d, uint64_t size, const char *mt,
                           json_t *j)
{
    static const char *const lists[] = {"layers", "manifests", "blobs"};
    sqlite3_stmt *s = rb->s[R_MANIFEST_INS];
    int err;

    bind_text(s, 1, d->str);
    bind_text(s, 2, mt);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)size);
    sqlite3_bind_int64(s, 4, rb->now);
    if ((err = rb_run(rb, R_MANIFEST_INS)) != OM_OK)
        goto done;
    if ((err = add_child(rb, d, json_object_get(j, "config"))) != OM_OK)
        goto done;
    for (size_t l = 0; l < OM_ARRAY_LEN(lists); l++) {
        json_t *arr = json_object_get(j, lists[l]);
        size_t i;
        json_t *desc;
        if (!json_is_array(arr))
            continue;
        json_array_foreach(arr, i, desc) {
            if ((err = add_child(rb, d, desc)) != OM_OK)
                goto done;
        }
    }
done:
    return err;
}

/* om_store_walk callback: classify one stored object. */
static int rb_blob(void *ud, const om_digest *d, uint64_t size)
{
    struct rb *rb = ud;
    json_t *j = NULL;
    const char *mt = NULL;
    int err = OM_OK;

    if (size >= 2 && size <= OM_INDEX_MANIFEST_PARSE_MAX) {
        if ((err = load_json(rb, d, size, &j)) != OM_OK)
            goto done;
        mt = manifest_type(j);
    }
    if (mt != NULL) {
        err = record_manifest(rb, d, size, mt, j);
    } else {
        sqlite3_stmt *s = rb->s[R_BLOB_INS];
        bind_text(s, 1, d->str);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)size);
        sqlite3_bind_int64(s, 3, rb->now);
        err = rb_run(rb, R_BLOB_INS);
    }
done:
    json_decref(j);
    if (err != OM_OK) {
        rb->err = err;
        return 1; /* stop the walk */
    }
    return 0;
}

/* Read one line (without its '\n') into buf, keeping at most cap bytes.
 * Returns false at end of file with nothing read. */
static bool read_line(FILE *f, char *buf, size_t cap, size_t *len, bool *overlong,
                      bool *terminated)
{
    size_t n = 0;
    int c;

    *overlong = false;
    *terminated = false;
    while ((c = getc_unlocked(f)) != EOF) {
        if (c == '\n') {
            *terminated = true;
            break;
        }
        if (n < cap)
            buf[n++] = (char)c;
        else
            *overlong = true;
    }
    *len = n;
    return n > 0 || *terminated || *overlong;
}

/* [added for gc.c] Apply a deletion record (see the file comment).  The
 * digest condition matters: a put of a new digest for the same tag that
 * raced with GC's delete may be logged before the deletion record, and it
 * must survive the replay as it survived in the database. */
static int apply_delete(struct rb *rb, json_t *j)
{
    const char *repo = NULL, *tag = NULL, *dg = NULL;
    om_digest d;
    int err = OM_OK;

    if (json_unpack(j, "{s:s, s:s, s:s}", "repo", &repo, "tag", &tag, "digest", &dg) != 0 ||
        !om_index__repo_ok(repo) || !om_index__tag_ok(tag) ||
        om_digest_parse(&d, dg, strlen(dg)) != OM_OK) {
        rb->lines_bad++;
        goto done;
    }
    bind_text(rb->s[R_TAG_DEL_IF], 1, repo);
    bind_text(rb->s[R_TAG_DEL_IF], 2, tag);
    bind_text(rb->s[R_TAG_DEL_IF], 3, d.str);
    if ((err = rb_run(rb, R_TAG_DEL_IF)) != OM_OK)
        goto done;
    bind_text(rb->s[R_REPO_DEL_EMPTY], 1, repo);
    err = rb_run(rb, R_REPO_DEL_EMPTY);
done:
    return err;
}

/* Apply one parsed tags.log record.  Bad records count in rb->lines_bad. */
static int apply_line(struct rb *rb, json_t *j)
{
    const char *repo = NULL, *tag = NULL, *dg = NULL, *mt = NULL;
    json_int_t size = 0, t = 0;
    uint64_t stored = 0;
    om_digest d;
    sqlite3_stmt *s;
    int err = OM_OK;

    if (json_is_true(json_object_get(j, "deleted"))) { /* [added for gc.c] */
        err = apply_delete(rb, j);
        goto done;
    }
    if (json_unpack(j, "{s:s, s:s, s:s, s:s, s:I, s:I}", "repo", &repo, "tag", &tag, "digest",
                    &dg, "media_type", &mt, "size", &size, "t", &t) != 0 ||
        !om_index__repo_ok(repo) || !om_index__tag_ok(tag) ||
        om_digest_parse(&d, dg, strlen(dg)) != OM_OK || !om_index__media_type_ok(mt) ||
        size < 0) {
        rb->lines_bad++;
        goto done;
    }
    if (!om_store_has(rb->st, &d, &stored)) {
        /* Last line wins, and this one names content we no longer have. */
        bind_text(rb->s[R_TAG_DEL], 1, repo);
        bind_text(rb->s[R_TAG_DEL], 2, tag);
        err = rb_run(rb, R_TAG_DEL);
        rb->tags_dropped++;
        goto done;
    }
    bind_text(rb->s[R_REPO_ADD], 1, repo);
    if ((err = rb_run(rb, R_REPO_ADD)) != OM_OK)
        goto done;
    s = rb->s[R_TAG_PUT];
    bind_text(s, 1, repo);
    bind_text(s, 2, tag);
    bind_text(s, 3, d.str);
    bind_text(s, 4, mt);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)stored);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)t);
    if ((err = rb_run(rb, R_TAG_PUT)) != OM_OK)
        goto done;
    s = rb->s[R_MANIFEST_FROM_TAG];
    bind_text(s, 1, d.str);
    bind_text(s, 2, mt);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)stored);
    sqlite3_bind_int64(s, 4, rb->now);
    if ((err = rb_run(rb, R_MANIFEST_FROM_TAG)) != OM_OK)
        goto done;
    bind_text(rb->s[R_BLOB_DEL], 1, d.str);
    err = rb_run(rb, R_BLOB_DEL);
done:
    return err;
}

static int replay_log(struct rb *rb, const char *log_path)
{
    char line[OM_INDEX_LOG_LINE_MAX];
    size_t len = 0, lineno = 0;
    bool overlong, terminated;
    int err = OM_OK;
    FILE *f = fopen(log_path, "re");

    if (f == NULL) {
        if (errno != ENOENT) {
            om_log(OM_LOG_ERROR, "index: open %s: %s", log_path, strerror(errno));
            err = OM_ERR_IO;
        }
        goto done;
    }
    while (read_line(f, line, sizeof(line), &len, &overlong, &terminated)) {
        json_t *j;
        lineno++;
        if (len == 0 && !overlong)
            continue; /* blank: written after a torn line */
        j = overlong ? NULL : json_loadb(line, len, 0, NULL);
        if (j == NULL) {
            if (!terminated)
                om_log(OM_LOG_INFO, "index: %s: ignoring torn last line %zu", log_path, lineno);
            else
                om_log(OM_LOG_WARN, "index: %s: ignoring damaged line %zu", log_path, lineno);
            rb->lines_bad++;
            continue;
        }
        err = apply_line(rb, j);
        json_decref(j);
        if (err != OM_OK)
            goto done;
    }
    if (ferror(f)) {
        om_log(OM_LOG_ERROR, "index: read %s failed", log_path);
        err = OM_ERR_IO;
    }
done:
    if (f != NULL)
        fclose(f);
    return err;
}

struct odd_blob {
    om_digest d;
    uint64_t want; /* the largest size a descriptor gives */
};

/* Step 5 (see the file comment): *n_fixed blobs recorded with the size
 * their manifests give instead of their damaged file's. */
static int fix_sizes(struct rb *rb, size_t *n_fixed)
{
    sqlite3_stmt *s = rb->s[R_DESC_ODD];
    struct odd_blob *v = NULL;
    size_t n = 0, cap = 0, skipped = 0;
    int rc, err = OM_OK;

    *n_fixed = 0;
    /* Collected first: the updates below must not run under this SELECT. */
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        sqlite3_int64 want = sqlite3_column_int64(s, 1);
        om_digest d;
        if (t == NULL || want < 0 || om_digest_parse(&d, t, strlen(t)) != OM_OK)
            continue;
        if (n == SIZE_CHECKS_MAX) {
            skipped++;
            continue;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct odd_blob *nv = realloc(v, nc * sizeof(*nv)); /* freed below */
            if (nv == NULL) {
                err = OM_ERR_NOMEM;
                goto done;
            }
            v = nv;
            cap = nc;
        }
        v[n++] = (struct odd_blob){d, (uint64_t)want};
    }
    if (rc != SQLITE_DONE) {
        err = om_index__sql_err(rb->db, rc, RB_SQL[R_DESC_ODD]);
        goto done;
    }
    sqlite3_reset(s);
    for (size_t i = 0; i < n; i++) {
        int verr = om_store_verify(rb->st, &v[i].d);
        if (verr == OM_OK || verr == OM_ERR_NOTFOUND || verr == OM_ERR_NOMEM) {
            if (verr == OM_OK)
                om_log(OM_LOG_INFO, "index: %s hashes right though a manifest gives it %llu "
                       "bytes: keeping the size of its file", v[i].d.str,
                       (unsigned long long)v[i].want);
            continue;
        }
        bind_text(rb->s[R_BLOB_SIZE_SET], 1, v[i].d.str);
        sqlite3_bind_int64(rb->s[R_BLOB_SIZE_SET], 2, (sqlite3_int64)v[i].want);
        if ((err = rb_run(rb, R_BLOB_SIZE_SET)) != OM_OK)
            goto done;
        (*n_fixed)++;
    }
    if (skipped > 0)
        om_log(OM_LOG_WARN, "index: %zu more blob(s) may be damaged (not the size their "
               "manifests give); not looked at in this rebuild: run ocimirror fsck", skipped);
done:
    sqlite3_reset(s);
    free(v);
    return err;
}

int om_index__rebuild_db(sqlite3 *db, struct om_store *st, const char *log_path,
                         int64_t now, size_t *n_manifests, size_t *n_tags)
{
    struct rb rb = {.db = db, .st = st, .now = now};
    size_t nm = 0, nt = 0, nb = 0, nd = 0;
    bool in_tx = false;
    int rc, err = OM_OK, walk;

    if (n_manifests != NULL)
        *n_manifests = 0;
    if (n_tags != NULL)
        *n_tags = 0;
    if ((rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK) {
        err = om_index__sql_err(db, rc, "rebuild begin");
        goto done;
    }
    in_tx = true;
    if ((rc = sqlite3_exec(db, CLEAR_SQL, NULL, NULL, NULL)) != SQLITE_OK) {
        err = om_index__sql_err(db, rc, "rebuild clear");
        goto done;
    }
    if ((rc = sqlite3_exec(db, DESC_CREATE_SQL, NULL, NULL, NULL)) != SQLITE_OK) {
        err = om_index__sql_err(db, rc, "rebuild sizes table");
        goto done;
    }
    if ((err = om_index__db_prepare(db, RB_SQL, R__COUNT, 0, rb.s)) != OM_OK)
        goto done;
    rb.buf = malloc(OM_INDEX_MANIFEST_PARSE_MAX + 1); /* freed below */
    if (rb.buf == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }

    walk = om_store_walk(st, rb_blob, &rb);
    if (rb.err != OM_OK || walk < 0) {
        err = rb.err != OM_OK ? rb.err : walk;
        goto done;
    }
    if ((err = replay_log(&rb, log_path)) != OM_OK)
        goto done;
    if ((rc = sqlite3_exec(db, MEMBERSHIP_SQL, NULL, NULL, NULL)) != SQLITE_OK) {
        err = om_index__sql_err(db, rc, "rebuild membership");
        goto done;
    }
    if ((err = fix_sizes(&rb, &nd)) != OM_OK)
        goto done;
    if ((err = rb_count(&rb, R_COUNT_MANIFESTS, &nm)) != OM_OK ||
        (err = rb_count(&rb, R_COUNT_TAGS, &nt)) != OM_OK ||
        (err = rb_count(&rb, R_COUNT_BLOBS, &nb)) != OM_OK)
        goto done;
    if ((rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK) {
        err = om_index__sql_err(db, rc, "rebuild commit");
        goto done;
    }
    in_tx = false;
    if (n_manifests != NULL)
        *n_manifests = nm;
    if (n_tags != NULL)
        *n_tags = nt;
    om_log(OM_LOG_INFO,
           "index: rebuilt from the store: %zu manifests, %zu blobs, %zu tags"
           " (%zu tags.log lines ignored, %zu tags dropped: content gone)",
           nm, nb, nt, rb.lines_bad, rb.tags_dropped);
    if (nd > 0)
        om_log(OM_LOG_WARN,
               "index: %zu stored blob(s) are not the size their manifests say; recorded with "
               "the manifests' size, they are fetched again on their next pull",
               nd);
done:
    om_index__db_finalize(rb.s, R__COUNT);
    free(rb.buf);
    if (in_tx)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_exec(db, DESC_DROP_SQL, NULL, NULL, NULL);
    return err;
}
