/* test_index_db.c — the index's interface layer and its connection helper:
 * om_index_open gives the SQLite backend behind a complete ops table;
 * index.c refuses bad input before any backend sees it (a stub backend
 * counts what reaches it); index_db.c opens <root>/index.db with the
 * modes the modules ask for and hands failures back instead of judging
 * them.  The SQLite backend's behaviour itself is test_index.c's. */
#include "test.h"

#include "cache/index_backend.h"
#include "cache/index_private.h"
#include "cache/store.h"
#include "core/hash.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define ALL_DB_FLAGS                                                                \
    (OM_INDEX_DB_WRITE | OM_INDEX_DB_CREATE | OM_INDEX_DB_WAL | OM_INDEX_DB_SYNC_NORMAL | \
     OM_INDEX_DB_QUICK_CHECK | OM_INDEX_DB_VERSION)

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static bool tmp_root(char *root, size_t sz, char *db, size_t dbsz)
{
    snprintf(root, sz, "/tmp/om-test-index-db-XXXXXX");
    if (mkdtemp(root) == NULL)
        return false;
    snprintf(db, dbsz, "%s/index.db", root);
    return true;
}

static om_digest dig(const char *s)
{
    om_digest d;
    om_hash_buf(s, strlen(s), &d);
    return d;
}

/* ---- a stub backend: counts the calls that reach it ------------------- */

struct stub {
    struct om_index base;
    int calls;
    bool closed;
};

static struct stub *stub_of(struct om_index *ix)
{
    return (struct stub *)ix;
}

static int s_tag_get(struct om_index *ix, const char *r, const char *t, struct om_tag_rec *o)
{
    (void)r; (void)t; (void)o;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_tag_put(struct om_index *ix, const char *r, const char *t, const om_digest *d,
                     const char *mt, uint64_t sz, int64_t now)
{
    (void)r; (void)t; (void)d; (void)mt; (void)sz; (void)now;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_tag_checked(struct om_index *ix, const char *r, const char *t, int64_t now)
{
    (void)r; (void)t; (void)now;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_list(struct om_index *ix, const char *r, const char *last, long n,
                  om_index_str_fn fn, void *ud)
{
    (void)r; (void)last; (void)n; (void)fn; (void)ud;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_manifest_get(struct om_index *ix, const om_digest *d, struct om_manifest_rec *o)
{
    (void)d; (void)o;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_manifest_put(struct om_index *ix, const char *r, const om_digest *d,
                          const char *mt, uint64_t sz, const om_digest *ch, size_t nch,
                          int64_t now)
{
    (void)r; (void)d; (void)mt; (void)sz; (void)ch; (void)nch; (void)now;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_blob_put(struct om_index *ix, const char *r, const om_digest *d, uint64_t sz,
                      int64_t now)
{
    (void)r; (void)d; (void)sz; (void)now;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_note_pull(struct om_index *ix, const char *r, const char *t, const om_digest *d,
                       int64_t now)
{
    (void)r; (void)t; (void)d; (void)now;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_note_pulls(struct om_index *ix, struct om_pull_note *notes, size_t n)
{
    (void)notes; (void)n;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_catalog(struct om_index *ix, const char *last, long n, om_index_str_fn fn,
                     void *ud)
{
    (void)last; (void)n; (void)fn; (void)ud;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_route_get(struct om_index *ix, const char *name, char *u, size_t usz, char *c,
                       size_t csz)
{
    (void)name; (void)u; (void)usz; (void)c; (void)csz;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_route_put(struct om_index *ix, const char *name, const char *u, const char *c,
                       int64_t now)
{
    (void)name; (void)u; (void)c; (void)now;
    return stub_of(ix)->calls++, OM_OK;
}
static bool s_neg_get(struct om_index *ix, const char *name, const char *u, int64_t now)
{
    (void)name; (void)u; (void)now;
    return stub_of(ix)->calls++, true;
}
static int s_neg_put(struct om_index *ix, const char *name, const char *u, int64_t until)
{
    (void)name; (void)u; (void)until;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_ref_get(struct om_index *ix, const char *r, const om_digest *d, char **json,
                     size_t *len, int64_t *at)
{
    (void)r; (void)d; (void)json; (void)len; (void)at;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_ref_put(struct om_index *ix, const char *r, const om_digest *d, const char *json,
                     size_t len, int64_t now)
{
    (void)r; (void)d; (void)json; (void)len; (void)now;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_counts(struct om_index *ix, struct om_index_counts *out)
{
    (void)out;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_rebuild(struct om_index *ix, size_t *nm, size_t *nt)
{
    (void)nm; (void)nt;
    return stub_of(ix)->calls++, OM_OK;
}
static int s_member(struct om_index *ix, const char *r, const om_digest *d)
{
    (void)r; (void)d;
    return stub_of(ix)->calls++, OM_OK;
}
static void s_close(struct om_index *ix)
{
    stub_of(ix)->closed = true;
}

static const struct om_index_ops STUB_OPS = {
    .version = OM_INDEX_OPS_VERSION, .name = "stub",
    .tag_get = s_tag_get, .tag_put = s_tag_put, .tag_checked = s_tag_checked,
    .tags_list = s_list, .manifest_get = s_manifest_get, .manifest_put = s_manifest_put,
    .blob_put = s_blob_put, .note_pull = s_note_pull, .note_pulls = s_note_pulls,
    .catalog = s_catalog, .route_get = s_route_get, .route_put = s_route_put,
    .negative_get = s_neg_get, .negative_put = s_neg_put, .referrers_get = s_ref_get,
    .referrers_put = s_ref_put, .counts = s_counts, .rebuild = s_rebuild, .close = s_close,
    .member = s_member,
};

static int no_str(void *ud, const char *s)
{
    (void)ud; (void)s;
    return 0;
}

/* ---- the interface ---------------------------------------------------- */

static void test_index_db__open_puts_the_sqlite_backend_behind_a_full_ops_table(void)
{
    char root[64], db[128];
    struct om_store *st = NULL;
    struct om_index *ix = NULL;

    CHECK(tmp_root(root, sizeof(root), db, sizeof(db)));
    CHECK_EQ_INT(om_store_open(&st, root), OM_OK);
    CHECK_EQ_INT(om_index_open(&ix, st, NULL), OM_OK);
    CHECK(ix != NULL);
    if (ix != NULL) {
        const struct om_index_ops *ops = ix->ops;
        CHECK_EQ_INT(ops->version, OM_INDEX_OPS_VERSION);
        CHECK_EQ_STR(ops->name, "sqlite");
        CHECK(ix->st == st);
        CHECK(ops->tag_get && ops->tag_put && ops->tag_checked && ops->tags_list);
        CHECK(ops->manifest_get && ops->manifest_put && ops->blob_put);
        CHECK(ops->note_pull && ops->note_pulls && ops->catalog);
        CHECK(ops->route_get && ops->route_put && ops->negative_get && ops->negative_put);
        CHECK(ops->referrers_get && ops->referrers_put && ops->counts);
        CHECK(ops->rebuild && ops->close);
        CHECK(ops->blob_size && ops->member);
    }
    om_index_close(ix);
    om_index_close(NULL); /* accepted, like every _close */
    om_store_close(st);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_index_db__bad_input_is_refused_before_any_backend_sees_it(void)
{
    struct stub sb = {.base = {.ops = &STUB_OPS}};
    struct om_index *ix = &sb.base;
    const char *repo = "docker.io/library/nginx";
    om_digest d = dig("m"), bad = {{0}};
    char longname[OM_NAME_MAX + 2], u[64], c[256], jbuf[] = "x", *json = jbuf;
    size_t len = 9;
    struct om_tag_rec rec;
    struct om_manifest_rec mrec;

    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    snprintf(bad.str, sizeof(bad.str), "sha256:nothex");

    CHECK_EQ_INT(om_index_tag_get(ix, longname, "t", &rec), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_tag_get(ix, repo, NULL, &rec), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_tag_put(ix, repo, "../x", &d, OCI_MANIFEST, 1, 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_tag_put(ix, repo, "t", &bad, OCI_MANIFEST, 1, 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_tag_put(ix, repo, "t", &d, OCI_MANIFEST, (uint64_t)INT64_MAX + 1, 1),
                 OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_tag_checked(ix, "", "t", 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_tags_list(ix, repo, NULL, -1, NULL, NULL), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_manifest_get(ix, &bad, &mrec), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_manifest_put(ix, repo, &d, OCI_MANIFEST, 1, &bad, 1, 1),
                 OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_manifest_put(ix, repo, &d, OCI_MANIFEST, 1, NULL, 2, 1),
                 OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_blob_put(ix, longname, &d, 1, 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_note_pull(ix, NULL, "t", &d, 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_member(ix, longname, &d), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_member(ix, NULL, &d), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_member(ix, repo, &bad), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_catalog(ix, NULL, 10, NULL, NULL), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_route_get(ix, "", u, sizeof(u), c, sizeof(c)), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_route_put(ix, repo, "", repo, 1), OM_ERR_INVALID);
    CHECK(!om_index_negative_get(ix, repo, NULL, 1));
    CHECK_EQ_INT(om_index_negative_put(ix, NULL, "docker.io", 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_referrers_get(ix, repo, &bad, &json, &len, NULL), OM_ERR_INVALID);
    CHECK(json == NULL); /* cleared before the check, as index.h promises */
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(om_index_referrers_put(ix, repo, &d, NULL, 3, 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_referrers_put(ix, repo, &d, "x", OM_INDEX_REFERRERS_MAX + 1, 1),
                 OM_ERR_TOOBIG);
    CHECK_EQ_INT(sb.calls, 0);

    /* Good input goes through, one call each. */
    CHECK_EQ_INT(om_index_tag_get(ix, repo, "t", &rec), OM_OK);
    CHECK_EQ_INT(om_index_tag_put(ix, repo, "t", &d, OCI_MANIFEST, 1, 1), OM_OK);
    CHECK_EQ_INT(om_index_tags_list(ix, repo, NULL, -1, no_str, NULL), OM_OK);
    CHECK_EQ_INT(om_index_manifest_put(ix, NULL, &d, OCI_MANIFEST, 1, NULL, 0, 1), OM_OK);
    CHECK_EQ_INT(om_index_note_pull(ix, NULL, NULL, &d, 1), OM_OK);
    CHECK(om_index_negative_get(ix, repo, "docker.io", 1));
    CHECK_EQ_INT(om_index_counts(ix, &(struct om_index_counts){0}), OM_OK);
    CHECK_EQ_INT(om_index_rebuild(ix, NULL, NULL), OM_OK);
    CHECK_EQ_INT(om_index_member(ix, repo, &d), OM_OK);
    CHECK_EQ_INT(sb.calls, 9);
    om_index_close(ix);
    CHECK(sb.closed);
}

static void test_index_db__pull_notes_are_checked_one_by_one(void)
{
    struct om_pull_note ok = {.digest = dig("m")}, bad_digest = ok, bad_repo = ok;

    snprintf(bad_digest.digest.str, sizeof(bad_digest.digest.str), "sha256:0");
    snprintf(bad_repo.tag, sizeof(bad_repo.tag), "latest"); /* a tag without a repository */
    CHECK(om_index__pull_note_ok(&ok));
    CHECK(!om_index__pull_note_ok(&bad_digest));
    CHECK(!om_index__pull_note_ok(&bad_repo));
    snprintf(bad_repo.repo, sizeof(bad_repo.repo), "docker.io/library/nginx");
    CHECK(om_index__pull_note_ok(&bad_repo));
}

/* ---- the connection helper ---------------------------------------------- */

static void test_index_db__modes_create_check_and_read_the_version(void)
{
    char root[64], db[128], longroot[5000];
    struct om_index_db_res res;
    sqlite3 *c = NULL;

    CHECK(tmp_root(root, sizeof(root), db, sizeof(db)));
    /* Not created unless asked: a read-only (admin) or gc-style open fails
     * at the open step and says the file was not there. */
    CHECK_EQ_INT(om_index__db_open(db, 0, &c, &res), OM_ERR_IO);
    CHECK(c == NULL);
    CHECK_EQ_INT(res.step, OM_INDEX_DB_STEP_OPEN);
    CHECK_EQ_STR(res.what, "open");
    CHECK_EQ_INT(res.rc & 0xff, SQLITE_CANTOPEN);
    CHECK(!res.existed);
    CHECK(res.msg[0] != '\0');
    CHECK(access(db, F_OK) != 0);

    /* The server's mode creates the file and its schema. */
    CHECK_EQ_INT(om_index__db_open(db, ALL_DB_FLAGS, &c, &res), OM_OK);
    CHECK(c != NULL);
    CHECK(res.created);
    CHECK_EQ_STR(res.check, "ok");
    om_index__db_close(c, NULL, 0, "test");

    /* fsck's mode on the same file: intact, version 1, nothing created. */
    CHECK_EQ_INT(om_index__db_open(db, OM_INDEX_DB_WRITE | OM_INDEX_DB_QUICK_CHECK |
                                       OM_INDEX_DB_VERSION, &c, &res), OM_OK);
    CHECK(res.existed);
    CHECK(!res.created);
    CHECK_EQ_INT(res.version, OM_INDEX_SCHEMA_VERSION);
    CHECK_EQ_INT(res.step, OM_INDEX_DB_STEP_NONE);
    om_index__db_close(c, NULL, 0, "test");

    memset(longroot, 'r', sizeof(longroot) - 1);
    longroot[sizeof(longroot) - 1] = '\0';
    CHECK_EQ_INT(om_index__path(db, sizeof(db), longroot, "index.db"), OM_ERR_TOOBIG);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_index_db__a_file_that_is_not_a_database_is_handed_back(void)
{
    char root[64], db[128], garbage[8192];
    struct om_index_db_res res;
    sqlite3 *c = NULL;

    CHECK(tmp_root(root, sizeof(root), db, sizeof(db)));
    memset(garbage, 0xA5, sizeof(garbage));
    int fd = open(db, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ_INT(write(fd, garbage, sizeof(garbage)), (long)sizeof(garbage));
    close(fd);

    /* The first step that reads the file fails; which one depends on the
     * mode, and the caller words it (fsck: "PRAGMA quick_check", gc:
     * "gc: check index.db"). */
    CHECK_EQ_INT(om_index__db_open(db, OM_INDEX_DB_WRITE | OM_INDEX_DB_QUICK_CHECK |
                                       OM_INDEX_DB_VERSION, &c, &res), OM_ERR_IO);
    CHECK(c == NULL);
    CHECK(res.existed);
    CHECK_EQ_INT(res.step, OM_INDEX_DB_STEP_QUICK_CHECK);
    CHECK_EQ_INT(res.rc & 0xff, SQLITE_NOTADB);
    CHECK_EQ_INT(om_index__db_open(db, OM_INDEX_DB_WRITE | OM_INDEX_DB_SYNC_NORMAL |
                                       OM_INDEX_DB_VERSION, &c, &res), OM_ERR_IO);
    CHECK_EQ_INT(res.step, OM_INDEX_DB_STEP_SYNC);
    CHECK_EQ_INT(res.rc & 0xff, SQLITE_NOTADB);
    /* The helper never moves or changes the file. */
    struct stat sb;
    CHECK_EQ_INT(stat(db, &sb), 0);
    CHECK_EQ_INT(sb.st_size, (long)sizeof(garbage));
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_index_db__prepare_says_which_text_failed(void)
{
    static const char *const sql[] = {"SELECT count(*) FROM tags", "SELECT nope FROM nowhere",
                                      "SELECT 1"};
    char root[64], db[128];
    struct om_index_db_res res;
    sqlite3_stmt *s[3] = {NULL, NULL, NULL};
    sqlite3 *c = NULL;
    size_t failed = 99;

    CHECK(tmp_root(root, sizeof(root), db, sizeof(db)));
    CHECK_EQ_INT(om_index__db_open(db, ALL_DB_FLAGS, &c, &res), OM_OK);
    CHECK_EQ_INT(om_index__db_prepare_rc(c, sql, 3, 0, s, &failed), SQLITE_ERROR);
    CHECK_EQ_INT(failed, 1);
    CHECK(s[0] != NULL); /* prepared before the failure: the caller finalizes */
    CHECK(s[2] == NULL);
    om_index__db_finalize(s, 3);
    CHECK(s[0] == NULL);
    CHECK_EQ_INT(om_index__db_prepare(c, sql, 3, SQLITE_PREPARE_PERSISTENT, s), OM_ERR_IO);
    om_index__db_finalize(s, 3);
    CHECK_EQ_INT(om_index__db_prepare(c, sql, 1, SQLITE_PREPARE_PERSISTENT, s), OM_OK);
    om_index__db_close(c, s, 3, "test");
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    RUN(test_index_db__open_puts_the_sqlite_backend_behind_a_full_ops_table);
    RUN(test_index_db__bad_input_is_refused_before_any_backend_sees_it);
    RUN(test_index_db__pull_notes_are_checked_one_by_one);
    RUN(test_index_db__modes_create_check_and_read_the_version);
    RUN(test_index_db__a_file_that_is_not_a_database_is_handed_back);
    RUN(test_index_db__prepare_says_which_text_failed);
    return test_done();
}
