/* test_index.c — the SQLite index and its rebuild from the store + tags.log,
 * on real temp directories. */
#include "test.h"

#include "cache/index.h"
#include "cache/store.h"
#include "core/hash.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

struct fixture {
    char root[64];
    char db[128];
    char log[128];
    struct om_store *st;
    struct om_index *ix;
    bool rebuilt;
};

static bool fx_setup(struct fixture *fx)
{
    snprintf(fx->root, sizeof(fx->root), "/tmp/om-test-index-XXXXXX");
    if (mkdtemp(fx->root) == NULL)
        return false;
    snprintf(fx->db, sizeof(fx->db), "%s/index.db", fx->root);
    snprintf(fx->log, sizeof(fx->log), "%s/tags.log", fx->root);
    fx->st = NULL;
    fx->ix = NULL;
    fx->rebuilt = true;
    return om_store_open(&fx->st, fx->root) == OM_OK &&
           om_index_open(&fx->ix, fx->st, &fx->rebuilt) == OM_OK;
}

static int fx_reopen(struct fixture *fx)
{
    om_index_close(fx->ix);
    fx->ix = NULL;
    fx->rebuilt = false;
    return om_index_open(&fx->ix, fx->st, &fx->rebuilt);
}

static void fx_teardown(struct fixture *fx)
{
    om_index_close(fx->ix);
    om_store_close(fx->st);
    nftw(fx->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static om_digest dig(const char *s)
{
    om_digest d;
    om_hash_buf(s, strlen(s), &d);
    return d;
}

/* Store s and return its digest. */
static om_digest put(struct fixture *fx, const char *s)
{
    om_digest d = dig(s);
    CHECK_EQ_INT(om_store_put(fx->st, &d, s, strlen(s)), OM_OK);
    return d;
}

/* First column of the first row of a query, on a separate connection. */
static long long sql_int(const struct fixture *fx, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    long long v = -1;
    if (sqlite3_open_v2(fx->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void sql_text(const struct fixture *fx, const char *sql, char *out, size_t outsz)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    out[0] = '\0';
    if (sqlite3_open_v2(fx->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        snprintf(out, outsz, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static size_t file_read(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f != NULL) {
        n = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return n;
}

static void file_append(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK_EQ_INT(write(fd, s, strlen(s)), (long)strlen(s));
        close(fd);
    }
}

static void remove_db(const struct fixture *fx)
{
    char p[160];
    unlink(fx->db);
    snprintf(p, sizeof(p), "%s-wal", fx->db);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", fx->db);
    unlink(p);
}

static size_t count_corrupt_files(const struct fixture *fx)
{
    size_t n = 0;
    DIR *dir = opendir(fx->root);
    if (dir == NULL)
        return 0;
    for (struct dirent *de; (de = readdir(dir)) != NULL;)
        n += strncmp(de->d_name, "index.db.corrupt-", 17) == 0 && strchr(de->d_name + 17, '-') == NULL;
    closedir(dir);
    return n;
}

/* Collects listed strings, joined with ',' for easy comparison. */
struct list {
    char joined[1024];
    int calls;
    int stop_after; /* 0 = never */
};

static int collect(void *ud, const char *s)
{
    struct list *l = ud;
    size_t n = strlen(l->joined);
    snprintf(l->joined + n, sizeof(l->joined) - n, "%s%s", n ? "," : "", s);
    l->calls++;
    return l->stop_after != 0 && l->calls == l->stop_after ? 7 : 0;
}

/* ---- open ---------------------------------------------------------- */

static void test_index__open_creates_a_wal_database_with_a_schema_version(void)
{
    struct fixture fx = {0};
    char mode[32];

    CHECK(fx_setup(&fx));
    CHECK(!fx.rebuilt); /* empty store: nothing to rebuild */
    CHECK(access(fx.db, F_OK) == 0);
    CHECK(access(fx.log, F_OK) == 0);
    sql_text(&fx, "PRAGMA journal_mode", mode, sizeof(mode));
    CHECK_EQ_STR(mode, "wal");
    CHECK_EQ_INT(sql_int(&fx, "PRAGMA user_version"), 1);
    /* Reopening an intact database neither rebuilds nor moves it aside. */
    CHECK_EQ_INT(fx_reopen(&fx), OM_OK);
    CHECK(!fx.rebuilt);
    CHECK_EQ_INT(count_corrupt_files(&fx), 0);
    fx_teardown(&fx);
}

/* ---- tags ---------------------------------------------------------- */

static void test_index__tag_put_then_get_round_trips(void)
{
    struct fixture fx = {0};
    struct om_tag_rec rec;
    om_digest a = dig("manifest a"), b = dig("manifest b");

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "docker.io/library/nginx", "latest", &rec),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "docker.io/library/nginx", "latest", &a, OCI_MANIFEST,
                                  1234, 1000),
                 OM_OK);
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "docker.io/library/nginx", "latest", &rec), OM_OK);
    CHECK_EQ_STR(rec.digest.str, a.str);
    CHECK_EQ_STR(rec.media_type, OCI_MANIFEST);
    CHECK_EQ_INT(rec.size, 1234);
    CHECK_EQ_INT(rec.fetched_at, 1000);
    CHECK_EQ_INT(rec.checked_at, 1000);

    CHECK_EQ_INT(om_index_tag_checked(fx.ix, "docker.io/library/nginx", "latest", 2000), OM_OK);
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "docker.io/library/nginx", "latest", &rec), OM_OK);
    CHECK_EQ_INT(rec.fetched_at, 1000);
    CHECK_EQ_INT(rec.checked_at, 2000);

    /* A new digest replaces the record and resets both times. */
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "docker.io/library/nginx", "latest", &b, DOCKER_LIST,
                                  99, 3000),
                 OM_OK);
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "docker.io/library/nginx", "latest", &rec), OM_OK);
    CHECK_EQ_STR(rec.digest.str, b.str);
    CHECK_EQ_STR(rec.media_type, DOCKER_LIST);
    CHECK_EQ_INT(rec.size, 99);
    CHECK_EQ_INT(rec.fetched_at, 3000);
    CHECK_EQ_INT(rec.checked_at, 3000);

    CHECK_EQ_INT(om_index_tag_checked(fx.ix, "docker.io/library/nginx", "nope", 1),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "docker.io/library/other", "latest", &rec),
                 OM_ERR_NOTFOUND);
    fx_teardown(&fx);
}

static void test_index__tag_put_appends_one_json_line_per_change(void)
{
    struct fixture fx = {0};
    om_digest a = dig("log a");
    char buf[4096], expect[512];

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "quay.io/coreos/etcd", "v3.5", &a, OCI_MANIFEST, 42,
                                  1700000000123),
                 OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "quay.io/coreos/etcd", "v3.6", &a, OCI_MANIFEST, 42,
                                  1700000000124),
                 OM_OK);
    file_read(fx.log, buf, sizeof(buf));
    snprintf(expect, sizeof(expect),
             "{\"repo\":\"quay.io/coreos/etcd\",\"tag\":\"v3.5\",\"digest\":\"%s\","
             "\"media_type\":\"" OCI_MANIFEST "\",\"size\":42,\"t\":1700000000123}\n"
             "{\"repo\":\"quay.io/coreos/etcd\",\"tag\":\"v3.6\",\"digest\":\"%s\","
             "\"media_type\":\"" OCI_MANIFEST "\",\"size\":42,\"t\":1700000000124}\n",
             a.str, a.str);
    CHECK_EQ_STR(buf, expect);
    fx_teardown(&fx);
}

static void test_index__tag_put_rejects_bad_input(void)
{
    struct fixture fx = {0};
    om_digest a = dig("x"), bad;
    char longname[OM_NAME_MAX + 2], longmt[OM_MEDIA_TYPE_MAX + 2], buf[64];

    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    memset(longmt, 'm', sizeof(longmt) - 1);
    longmt[sizeof(longmt) - 1] = '\0';
    memset(&bad, 0, sizeof(bad));
    snprintf(bad.str, sizeof(bad.str), "sha256:../../etc");

    CHECK(fx_setup(&fx));
    struct {
        const char *repo, *tag, *mt;
        const om_digest *d;
    } cases[] = {
        {NULL, "t", OCI_MANIFEST, &a},
        {"", "t", OCI_MANIFEST, &a},
        {longname, "t", OCI_MANIFEST, &a},
        {"r", "", OCI_MANIFEST, &a},
        {"r", ".hidden", OCI_MANIFEST, &a},
        {"r", "a/b", OCI_MANIFEST, &a},
        {"r", "t", NULL, &a},
        {"r", "t", longmt, &a},
        {"r", "t", "bad utf-8 \xff", &a},
        {"r", "t", OCI_MANIFEST, &bad},
        {"r", "t", OCI_MANIFEST, NULL},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++)
        CHECK_EQ_INT(om_index_tag_put(fx.ix, cases[i].repo, cases[i].tag, cases[i].d,
                                      cases[i].mt, 1, 1),
                     OM_ERR_INVALID);
    longname[OM_NAME_MAX] = '\0'; /* exactly the limit is fine */
    CHECK_EQ_INT(om_index_tag_put(fx.ix, longname, "t", &a, OCI_MANIFEST, 1, 1), OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "r", "t", &a, OCI_MANIFEST, (uint64_t)INT64_MAX + 1, 1),
                 OM_ERR_INVALID);
    /* Nothing rejected reached tags.log. */
    file_read(fx.log, buf, sizeof(buf));
    CHECK(strncmp(buf, "{\"repo\":\"aaaa", 13) == 0);
    CHECK_EQ_INT(sql_int(&fx, "SELECT count(*) FROM tags"), 1);
    fx_teardown(&fx);
}

/* ---- paging -------------------------------------------------------- */

static void test_index__tags_list_is_byte_ordered_and_paged(void)
{
    struct fixture fx = {0};
    static const char *const tags[] = {"latest", "B", "a", "_x", "A1", "a.b", "a-b", "10", "9", "a_b"};
    /* Byte order: digits < upper case < '_' < lower case; '-' < '.' < '_'. */
    static const char all[] = "10,9,A1,B,_x,a,a-b,a.b,a_b,latest";
    static const struct {
        const char *last;
        long n;
        const char *want;
    } cases[] = {
        {NULL, -1, all},
        {NULL, 0, ""},
        {NULL, 2, "10,9"},
        {NULL, 10, all},
        {NULL, 1000, all},
        {"9", 2, "A1,B"},        /* last is an entry */
        {"A", 3, "A1,B,_x"},     /* last falls between entries */
        {"a", -1, "a-b,a.b,a_b,latest"},
        {"a-a", 1, "a-b"},
        {"latest", 5, ""},        /* last is the final entry */
        {"zzz", 5, ""},           /* last past the end */
        {"zzz", -1, ""},
        {"0", 1, "10"},           /* last before the first entry */
        {"latest", 0, ""},
        {"9", 0, ""},
    };
    om_digest d = dig("tagged");

    CHECK(fx_setup(&fx));
    for (size_t i = 0; i < OM_ARRAY_LEN(tags); i++)
        CHECK_EQ_INT(om_index_tag_put(fx.ix, "docker.io/library/x", tags[i], &d, OCI_MANIFEST, 1,
                                      1),
                     OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "docker.io/library/y", "zz", &d, OCI_MANIFEST, 1, 1),
                 OM_OK);
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        struct list l = {0};
        CHECK_EQ_INT(om_index_tags_list(fx.ix, "docker.io/library/x", cases[i].last, cases[i].n,
                                        collect, &l),
                     OM_OK);
        if (strcmp(l.joined, cases[i].want) != 0)
            fprintf(stderr, "  case %zu (last=%s n=%ld)\n", i,
                    cases[i].last ? cases[i].last : "NULL", cases[i].n);
        CHECK_EQ_STR(l.joined, cases[i].want);
    }
    /* Stopping early returns the callback's value. */
    struct list stop = {0};
    stop.stop_after = 3;
    CHECK_EQ_INT(om_index_tags_list(fx.ix, "docker.io/library/x", NULL, -1, collect, &stop), 7);
    CHECK_EQ_STR(stop.joined, "10,9,A1");
    /* An unknown repository is not an empty one. */
    struct list none = {0};
    CHECK_EQ_INT(om_index_tags_list(fx.ix, "docker.io/library/nope", NULL, -1, collect, &none),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(none.calls, 0);
    /* A repository known only through a blob lists no tags. */
    CHECK_EQ_INT(om_index_blob_put(fx.ix, "ghcr.io/o/p", &d, 1, 1), OM_OK);
    CHECK_EQ_INT(om_index_tags_list(fx.ix, "ghcr.io/o/p", NULL, -1, collect, &none), OM_OK);
    CHECK_EQ_INT(none.calls, 0);
    fx_teardown(&fx);
}

static void test_index__catalog_is_byte_ordered_and_paged(void)
{
    struct fixture fx = {0};
    static const char *const repos[] = {"quay.io/coreos/etcd", "docker.io/library/nginx",
                                        "docker.io/library/alpine", "registry.k8s.io/pause",
                                        "docker.io/bitnami/redis", "ghcr.io/a/b"};
    static const char all[] = "docker.io/bitnami/redis,docker.io/library/alpine,"
                              "docker.io/library/nginx,ghcr.io/a/b,quay.io/coreos/etcd,"
                              "registry.k8s.io/pause";
    static const struct {
        const char *last;
        long n;
        const char *want;
    } cases[] = {
        {NULL, -1, all},
        {NULL, 0, ""},
        {NULL, 1, "docker.io/bitnami/redis"},
        {"docker.io/library/alpine", 2, "docker.io/library/nginx,ghcr.io/a/b"},
        {"docker.io/library/b", 1, "docker.io/library/nginx"},
        {"registry.k8s.io/pause", 10, ""},
        {"zzz", 10, ""},
        {"a", 0, ""},
    };
    om_digest d = dig("catalog");

    CHECK(fx_setup(&fx));
    {
        struct list l = {0};
        CHECK_EQ_INT(om_index_catalog(fx.ix, NULL, -1, collect, &l), OM_OK);
        CHECK_EQ_INT(l.calls, 0);
    }
    /* Repos arrive through tags, manifests and blobs alike. */
    for (size_t i = 0; i < OM_ARRAY_LEN(repos); i++) {
        if (i % 3 == 0)
            CHECK_EQ_INT(om_index_tag_put(fx.ix, repos[i], "t", &d, OCI_MANIFEST, 1, 1), OM_OK);
        else if (i % 3 == 1)
            CHECK_EQ_INT(om_index_manifest_put(fx.ix, repos[i], &d, OCI_MANIFEST, 1, NULL, 0, 1),
                         OM_OK);
        else
            CHECK_EQ_INT(om_index_blob_put(fx.ix, repos[i], &d, 1, 1), OM_OK);
    }
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        struct list l = {0};
        CHECK_EQ_INT(om_index_catalog(fx.ix, cases[i].last, cases[i].n, collect, &l), OM_OK);
        CHECK_EQ_STR(l.joined, cases[i].want);
    }
    fx_teardown(&fx);
}

/* ---- manifests, blobs, pulls --------------------------------------- */

static void test_index__manifest_put_records_type_repo_and_children(void)
{
    struct fixture fx = {0};
    struct om_manifest_rec rec;
    om_digest m = dig("manifest"), kids[3] = {dig("config"), dig("layer1"), dig("layer2")};
    om_digest bad;

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_index_manifest_get(fx.ix, &m, &rec), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_manifest_put(fx.ix, "docker.io/library/nginx", &m, OCI_MANIFEST, 321,
                                       kids, 3, 10),
                 OM_OK);
    CHECK_EQ_INT(om_index_manifest_get(fx.ix, &m, &rec), OM_OK);
    CHECK_EQ_STR(rec.media_type, OCI_MANIFEST);
    CHECK_EQ_INT(rec.size, 321);
    CHECK_EQ_INT(sql_int(&fx, "SELECT count(*) FROM manifest_children"), 3);
    CHECK_EQ_INT(sql_int(&fx, "SELECT count(*) FROM manifest_repos WHERE repo = "
                              "'docker.io/library/nginx'"),
                 1);
    /* Again from another repo: one manifest, two memberships, same children. */
    CHECK_EQ_INT(om_index_manifest_put(fx.ix, "quay.io/x/nginx", &m, OCI_MANIFEST, 321, kids, 3,
                                       20),
                 OM_OK);
    CHECK_EQ_INT(sql_int(&fx, "SELECT count(*) FROM manifests"), 1);
    CHECK_EQ_INT(sql_int(&fx, "SELECT count(*) FROM manifest_repos"), 2);
    CHECK_EQ_INT(sql_int(&fx, "SELECT count(*) FROM manifest_children"), 3);
    CHECK_EQ_INT(sql_int(&fx, "SELECT last_access FROM manifests"), 20);
    /* A repo-less put records the manifest only. */
    om_digest m2 = dig("manifest 2");
    CHECK_EQ_INT(om_index_manifest_put(fx.ix, NULL, &m2, OCI_INDEX, 5, NULL, 0, 30), OM_OK);
    CHECK_EQ_INT(om_index_manifest_get(fx.ix, &m2, &rec), OM_OK);
    CHECK_EQ_STR(rec.media_type, OCI_INDEX);
    /* A bad child rejects the whole put, atomically. */
    memset(&bad, 0, sizeof(bad));
    snprintf(bad.str, sizeof(bad.str), "md5:abc");
    om_digest mixed[2] = {kids[0], bad};
    om_digest m3 = dig("manifest 3");
    CHECK_EQ_INT(om_index_manifest_put(fx.ix, "r", &m3, OCI_MANIFEST, 1, mixed, 2, 1),
                 OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_manifest_get(fx.ix, &m3, &rec), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_manifest_put(fx.ix, "r", &m3, OCI_MANIFEST, 1, NULL, 2, 1),
                 OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_manifest_get(fx.ix, &bad, &rec), OM_ERR_INVALID);
    fx_teardown(&fx);
}

static void test_index__blob_put_and_note_pull_update_access(void)
{
    struct fixture fx = {0};
    om_digest b = dig("blob"), m = dig("pulled manifest"), unknown = dig("unknown");
    struct om_index_counts c;

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_index_blob_put(fx.ix, "docker.io/library/nginx", &b, 1000, 5), OM_OK);
    CHECK_EQ_INT(om_index_blob_put(fx.ix, "docker.io/library/httpd", &b, 1000, 6), OM_OK);
    CHECK_EQ_INT(om_index_blob_put(fx.ix, NULL, &b, 1000, 7), OM_OK);
    CHECK_EQ_INT(sql_int(&fx, "SELECT count(*) FROM blob_repos"), 2);
    CHECK_EQ_INT(sql_int(&fx, "SELECT created_at FROM blobs"), 5);
    CHECK_EQ_INT(sql_int(&fx, "SELECT last_access FROM blobs"), 7);

    CHECK_EQ_INT(om_index_note_pull(fx.ix, "docker.io/library/nginx", NULL, &b, 100), OM_OK);
    CHECK_EQ_INT(om_index_note_pull(fx.ix, NULL, NULL, &b, 200), OM_OK);
    CHECK_EQ_INT(sql_int(&fx, "SELECT pull_count FROM blobs"), 2);
    CHECK_EQ_INT(sql_int(&fx, "SELECT last_access FROM blobs"), 200);

    CHECK_EQ_INT(om_index_manifest_put(fx.ix, "docker.io/library/nginx", &m, OCI_MANIFEST, 10,
                                       &b, 1, 1),
                 OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "docker.io/library/nginx", "latest", &m, OCI_MANIFEST,
                                  10, 1),
                 OM_OK);
    CHECK_EQ_INT(om_index_note_pull(fx.ix, "docker.io/library/nginx", "latest", &m, 300), OM_OK);
    CHECK_EQ_INT(sql_int(&fx, "SELECT pull_count FROM manifests"), 1);
    CHECK_EQ_INT(sql_int(&fx, "SELECT last_access FROM manifests"), 300);
    CHECK_EQ_INT(sql_int(&fx, "SELECT pull_count FROM tags"), 1);
    CHECK_EQ_INT(sql_int(&fx, "SELECT last_pulled FROM tags"), 300);

    CHECK_EQ_INT(om_index_note_pull(fx.ix, NULL, NULL, &unknown, 1), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_note_pull(fx.ix, NULL, "latest", &m, 1), OM_ERR_INVALID);

    CHECK_EQ_INT(om_index_counts(fx.ix, &c), OM_OK);
    CHECK_EQ_INT(c.repos, 2);
    CHECK_EQ_INT(c.tags, 1);
    CHECK_EQ_INT(c.manifests, 1);
    CHECK_EQ_INT(c.blobs, 1);
    CHECK_EQ_INT(c.blob_bytes, 1000);
    fx_teardown(&fx);
}

static void test_index__blob_size_says_what_was_recorded_for_a_blob_or_a_manifest(void)
{
    struct fixture fx = {0};
    om_digest b = dig("a blob"), m = dig("a manifest"), unknown = dig("unknown"), bad;
    uint64_t size = 1;

    memset(&bad, 0, sizeof(bad));
    snprintf(bad.str, sizeof(bad.str), "sha256:nothex");
    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_index_blob_put(fx.ix, NULL, &b, 1234, 5), OM_OK);
    CHECK_EQ_INT(om_index_manifest_put(fx.ix, NULL, &m, OCI_MANIFEST, 77, NULL, 0, 5), OM_OK);
    CHECK_EQ_INT(om_index_blob_size(fx.ix, &b, &size), OM_OK);
    CHECK_EQ_INT(size, 1234);
    CHECK_EQ_INT(om_index_blob_size(fx.ix, &m, &size), OM_OK);
    CHECK_EQ_INT(size, 77);
    CHECK_EQ_INT(om_index_blob_size(fx.ix, &unknown, &size), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_blob_size(fx.ix, &bad, &size), OM_ERR_INVALID);
    /* A blob fetched again after it was damaged records its verified size. */
    CHECK_EQ_INT(om_index_blob_put(fx.ix, NULL, &b, 1000, 6), OM_OK);
    CHECK_EQ_INT(om_index_blob_size(fx.ix, &b, &size), OM_OK);
    CHECK_EQ_INT(size, 1000);
    fx_teardown(&fx);
}

static void test_index__member_says_which_repositories_hold_a_digest(void)
{
    struct fixture fx = {0};
    const char *nginx = "docker.io/library/nginx", *other = "docker.io/library/busybox";
    om_digest list = dig("index"), plat = dig("platform"), cfg = dig("config"),
              layer = dig("layer"), blob = dig("lone blob"), deep = dig("three levels down");

    CHECK(fx_setup(&fx));
    /* Nothing recorded: nobody holds anything. */
    CHECK_EQ_INT(om_index_member(fx.ix, nginx, &layer), OM_ERR_NOTFOUND);
    /* An index pulled through nginx, its platform manifest stored through
     * nothing (cached before via a repository-less put), its layers below. */
    CHECK_EQ_INT(om_index_manifest_put(fx.ix, nginx, &list, OCI_INDEX, 10, &plat, 1, 1), OM_OK);
    om_digest kids[2] = {cfg, layer};
    CHECK_EQ_INT(om_index_manifest_put(fx.ix, NULL, &plat, OCI_MANIFEST, 10, kids, 2, 1), OM_OK);
    CHECK_EQ_INT(om_index_member(fx.ix, nginx, &list), OM_OK);   /* the manifest itself */
    CHECK_EQ_INT(om_index_member(fx.ix, nginx, &plat), OM_OK);   /* its child */
    CHECK_EQ_INT(om_index_member(fx.ix, nginx, &layer), OM_OK);  /* a grandchild */
    CHECK_EQ_INT(om_index_member(fx.ix, nginx, &cfg), OM_OK);
    CHECK_EQ_INT(om_index_member(fx.ix, other, &list), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_member(fx.ix, other, &plat), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_member(fx.ix, other, &layer), OM_ERR_NOTFOUND);
    /* Three levels down is beyond what the query walks. */
    CHECK_EQ_INT(om_index_manifest_put(fx.ix, NULL, &layer, OCI_MANIFEST, 10, &deep, 1, 1), OM_OK);
    CHECK_EQ_INT(om_index_member(fx.ix, nginx, &deep), OM_ERR_NOTFOUND);
    /* A blob recorded for a repository, and only for it. */
    CHECK_EQ_INT(om_index_blob_put(fx.ix, other, &blob, 5, 1), OM_OK);
    CHECK_EQ_INT(om_index_member(fx.ix, other, &blob), OM_OK);
    CHECK_EQ_INT(om_index_member(fx.ix, nginx, &blob), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_blob_put(fx.ix, NULL, &blob, 5, 2), OM_OK); /* no membership */
    CHECK_EQ_INT(om_index_member(fx.ix, nginx, &blob), OM_ERR_NOTFOUND);
    /* The same layer pulled through the other repository's manifest. */
    om_digest mine = dig("busybox manifest");
    CHECK_EQ_INT(om_index_manifest_put(fx.ix, other, &mine, OCI_MANIFEST, 10, &layer, 1, 3), OM_OK);
    CHECK_EQ_INT(om_index_member(fx.ix, other, &layer), OM_OK);
    CHECK_EQ_INT(om_index_member(fx.ix, other, &cfg), OM_ERR_NOTFOUND);
    /* Membership survives a reopen (it is the index's, not a memory). */
    CHECK_EQ_INT(fx_reopen(&fx), OM_OK);
    CHECK_EQ_INT(om_index_member(fx.ix, nginx, &layer), OM_OK);
    CHECK_EQ_INT(om_index_member(fx.ix, other, &cfg), OM_ERR_NOTFOUND);
    fx_teardown(&fx);
}

/* ---- routes, negative cache, referrers ------------------------------ */

static void test_index__route_decisions_round_trip(void)
{
    struct fixture fx = {0};
    char up[64], canon[OM_NAME_MAX + 1], tiny[4];

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_index_route_get(fx.ix, "nginx", up, sizeof(up), canon, sizeof(canon)),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_route_put(fx.ix, "nginx", "docker.io", "docker.io/library/nginx", 1),
                 OM_OK);
    CHECK_EQ_INT(om_index_route_get(fx.ix, "nginx", up, sizeof(up), canon, sizeof(canon)), OM_OK);
    CHECK_EQ_STR(up, "docker.io");
    CHECK_EQ_STR(canon, "docker.io/library/nginx");
    CHECK_EQ_INT(om_index_route_put(fx.ix, "nginx", "quay.io", "quay.io/nginx", 2), OM_OK);
    CHECK_EQ_INT(om_index_route_get(fx.ix, "nginx", up, sizeof(up), canon, sizeof(canon)), OM_OK);
    CHECK_EQ_STR(up, "quay.io");
    CHECK_EQ_STR(canon, "quay.io/nginx");
    CHECK_EQ_INT(om_index_route_get(fx.ix, "nginx", tiny, sizeof(tiny), canon, sizeof(canon)),
                 OM_ERR_TOOBIG);
    CHECK_EQ_INT(om_index_route_put(fx.ix, "nginx", "", "x/y", 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_route_put(fx.ix, NULL, "a", "x/y", 1), OM_ERR_INVALID);
    fx_teardown(&fx);
}

static void test_index__negative_entries_expire_by_time(void)
{
    struct fixture fx = {0};

    CHECK(fx_setup(&fx));
    CHECK(!om_index_negative_get(fx.ix, "foo/bar", "docker.io", 0));
    CHECK_EQ_INT(om_index_negative_put(fx.ix, "foo/bar", "docker.io", 1000), OM_OK);
    CHECK(om_index_negative_get(fx.ix, "foo/bar", "docker.io", 0));
    CHECK(om_index_negative_get(fx.ix, "foo/bar", "docker.io", 999));
    CHECK(!om_index_negative_get(fx.ix, "foo/bar", "quay.io", 999)); /* per upstream */
    CHECK(!om_index_negative_get(fx.ix, "foo/baz", "docker.io", 999));
    CHECK(!om_index_negative_get(fx.ix, "foo/bar", "docker.io", 1000));
    /* The expired entry is gone, not merely hidden. */
    CHECK_EQ_INT(sql_int(&fx, "SELECT count(*) FROM negative"), 0);
    CHECK(!om_index_negative_get(fx.ix, "foo/bar", "docker.io", 10));
    /* Put again extends. */
    CHECK_EQ_INT(om_index_negative_put(fx.ix, "foo/bar", "docker.io", 5000), OM_OK);
    CHECK(om_index_negative_get(fx.ix, "foo/bar", "docker.io", 4999));
    fx_teardown(&fx);
}

static void test_index__referrers_round_trip_with_a_size_limit(void)
{
    struct fixture fx = {0};
    om_digest d = dig("subject");
    const char *json = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_INDEX "\",\"manifests\":[]}";
    char *got = NULL;
    size_t len = 0, big_n = 4u * 1024 * 1024;
    int64_t at = 0;
    char *big = malloc(big_n + 1);

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_index_referrers_get(fx.ix, "r/x", &d, &got, &len, &at), OM_ERR_NOTFOUND);
    CHECK(got == NULL);
    CHECK_EQ_INT(om_index_referrers_put(fx.ix, "r/x", &d, json, strlen(json), 77), OM_OK);
    CHECK_EQ_INT(om_index_referrers_get(fx.ix, "r/x", &d, &got, &len, &at), OM_OK);
    CHECK_EQ_INT(len, strlen(json));
    CHECK(got != NULL && memcmp(got, json, len) == 0 && got[len] == '\0');
    CHECK_EQ_INT(at, 77);
    free(got);
    got = NULL;
    /* Per repository. */
    CHECK_EQ_INT(om_index_referrers_get(fx.ix, "r/y", &d, &got, &len, NULL), OM_ERR_NOTFOUND);
    if (big != NULL) {
        memset(big, ' ', big_n + 1);
        CHECK_EQ_INT(om_index_referrers_put(fx.ix, "r/x", &d, big, big_n + 1, 78), OM_ERR_TOOBIG);
        CHECK_EQ_INT(om_index_referrers_put(fx.ix, "r/x", &d, big, big_n, 79), OM_OK);
        CHECK_EQ_INT(om_index_referrers_get(fx.ix, "r/x", &d, &got, &len, NULL), OM_OK);
        CHECK_EQ_INT(len, big_n);
        free(got);
        free(big);
    }
    fx_teardown(&fx);
}

/* ---- rebuild ------------------------------------------------------- */

/* A small world in the store: two image manifests (one without a
 * mediaType), a manifest list, an OCI index without a mediaType, a config,
 * a layer and a JSON descriptor that is not a manifest. */
struct world {
    om_digest layer, config, manifest, manifest2, list, index2, descriptor, missing;
};

static void make_world(struct fixture *fx, struct world *w)
{
    char buf[2048];

    w->layer = put(fx, "\x1f\x8b layer bytes, not JSON");
    /* An image config has a "config" object but is not a manifest. */
    w->config = put(fx, "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[]},"
                        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}");
    snprintf(buf, sizeof(buf),
             "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
             "\"digest\":\"%s\",\"size\":100},"
             "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
             "\"digest\":\"%s\",\"size\":23}]}",
             w->config.str, w->layer.str);
    w->manifest = put(fx, buf);
    /* Pretty-printed, leading blank line, no mediaType: inferred. */
    snprintf(buf, sizeof(buf),
             "\n  {\n  \"schemaVersion\": 2,\n  \"config\": {\"digest\": \"%s\", \"size\": 100},\n"
             "  \"layers\": []\n}\n",
             w->config.str);
    w->manifest2 = put(fx, buf);
    w->missing = dig("a platform manifest nobody pulled");
    snprintf(buf, sizeof(buf),
             "{\"schemaVersion\":2,\"mediaType\":\"" DOCKER_LIST "\",\"manifests\":["
             "{\"digest\":\"%s\",\"size\":1,\"platform\":{\"os\":\"linux\"}},"
             "{\"digest\":\"%s\",\"size\":1,\"platform\":{\"os\":\"windows\"}},"
             "{\"digest\":\"sha512:abc\",\"size\":1}]}",
             w->manifest.str, w->missing.str);
    w->list = put(fx, buf);
    snprintf(buf, sizeof(buf), "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"%s\"}]}",
             w->manifest2.str);
    w->index2 = put(fx, buf);
    snprintf(buf, sizeof(buf), "{\"mediaType\":\"" OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":1}",
             w->manifest.str);
    w->descriptor = put(fx, buf);
}

static void check_world_rebuilt(struct fixture *fx, const struct world *w)
{
    struct om_tag_rec t;
    struct om_manifest_rec m;
    struct om_index_counts c;
    struct list l = {0};
    uint64_t size = 0;

    CHECK_EQ_INT(om_index_tag_get(fx->ix, "docker.io/library/nginx", "latest", &t), OM_OK);
    CHECK_EQ_STR(t.digest.str, w->list.str); /* the last line for the tag wins */
    CHECK_EQ_STR(t.media_type, DOCKER_LIST);
    CHECK(om_store_has(fx->st, &w->list, &size));
    CHECK_EQ_INT(t.size, size);
    CHECK_EQ_INT(t.fetched_at, 2000);
    CHECK_EQ_INT(t.checked_at, 2000);
    CHECK_EQ_INT(om_index_tag_get(fx->ix, "docker.io/library/nginx", "1.25", &t), OM_OK);
    CHECK_EQ_STR(t.digest.str, w->manifest2.str);
    CHECK_EQ_INT(om_index_tag_get(fx->ix, "quay.io/coreos/etcd", "v3", &t), OM_OK);
    CHECK_EQ_STR(t.digest.str, w->manifest.str);
    /* Its last line names content that is not in the store: dropped, and
     * the earlier line does not come back. */
    CHECK_EQ_INT(om_index_tag_get(fx->ix, "docker.io/library/nginx", "gone", &t),
                 OM_ERR_NOTFOUND);

    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &w->manifest, &m), OM_OK);
    CHECK_EQ_STR(m.media_type, OCI_MANIFEST);
    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &w->manifest2, &m), OM_OK);
    CHECK_EQ_STR(m.media_type, OCI_MANIFEST);
    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &w->list, &m), OM_OK);
    CHECK_EQ_STR(m.media_type, DOCKER_LIST);
    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &w->index2, &m), OM_OK);
    CHECK_EQ_STR(m.media_type, OCI_INDEX);
    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &w->config, &m), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &w->descriptor, &m), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &w->layer, &m), OM_ERR_NOTFOUND);

    CHECK_EQ_INT(om_index_counts(fx->ix, &c), OM_OK);
    CHECK_EQ_INT(c.manifests, 4);
    CHECK_EQ_INT(c.blobs, 3); /* layer, config, descriptor */
    CHECK_EQ_INT(c.tags, 3);
    CHECK_EQ_INT(c.repos, 2);
    CHECK_EQ_INT(om_index_catalog(fx->ix, NULL, -1, collect, &l), OM_OK);
    CHECK_EQ_STR(l.joined, "docker.io/library/nginx,quay.io/coreos/etcd");

    /* Children: list → manifest, missing (sha512 skipped); manifest →
     * config, layer; manifest2 → config; index2 → manifest2. */
    CHECK_EQ_INT(sql_int(fx, "SELECT count(*) FROM manifest_children"), 6);
    /* Membership through tags: nginx reaches list, manifest, manifest2 and
     * their config + layer; etcd reaches manifest, config, layer. */
    CHECK_EQ_INT(sql_int(fx, "SELECT count(*) FROM manifest_repos WHERE repo = "
                             "'docker.io/library/nginx'"),
                 3);
    CHECK_EQ_INT(sql_int(fx, "SELECT count(*) FROM blob_repos WHERE repo = "
                             "'docker.io/library/nginx'"),
                 2);
    CHECK_EQ_INT(sql_int(fx, "SELECT count(*) FROM manifest_repos WHERE repo = "
                             "'quay.io/coreos/etcd'"),
                 1);
    CHECK_EQ_INT(sql_int(fx, "SELECT count(*) FROM blob_repos WHERE repo = "
                             "'quay.io/coreos/etcd'"),
                 2);
}

static void tag_world(struct fixture *fx, const struct world *w)
{
    uint64_t size = 0;
    om_store_has(fx->st, &w->list, &size);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "docker.io/library/nginx", "latest", &w->manifest,
                                  OCI_MANIFEST, 1, 1000),
                 OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "docker.io/library/nginx", "gone", &w->manifest,
                                  OCI_MANIFEST, 1, 1000),
                 OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "docker.io/library/nginx", "latest", &w->list,
                                  DOCKER_LIST, size, 2000),
                 OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "docker.io/library/nginx", "1.25", &w->manifest2,
                                  OCI_MANIFEST, 1, 2000),
                 OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "quay.io/coreos/etcd", "v3", &w->manifest,
                                  OCI_MANIFEST, 1, 2000),
                 OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "docker.io/library/nginx", "gone", &w->missing,
                                  OCI_MANIFEST, 1, 3000),
                 OM_OK);
}

static void test_index__rebuild_after_deleting_index_db_restores_tags_and_manifests(void)
{
    struct fixture fx = {0};
    struct world w;

    CHECK(fx_setup(&fx));
    make_world(&fx, &w);
    tag_world(&fx, &w);
    /* Things a rebuild cannot know must not leak in either. */
    CHECK_EQ_INT(om_index_route_put(fx.ix, "nginx", "docker.io", "docker.io/library/nginx", 1),
                 OM_OK);
    om_index_close(fx.ix);
    fx.ix = NULL;
    remove_db(&fx);
    CHECK_EQ_INT(om_index_open(&fx.ix, fx.st, &fx.rebuilt), OM_OK);
    CHECK(fx.rebuilt);
    if (fx.ix != NULL)
        check_world_rebuilt(&fx, &w);
    CHECK_EQ_INT(count_corrupt_files(&fx), 0); /* nothing to move aside */
    /* The rebuilt database is intact: the next open does not rebuild. */
    CHECK_EQ_INT(fx_reopen(&fx), OM_OK);
    CHECK(!fx.rebuilt);
    fx_teardown(&fx);
}

static void test_index__rebuild_records_the_size_manifests_give_not_a_damaged_files(void)
{
    struct fixture fx = {0};
    const char *lt = "a layer that a disk will truncate", *ll = "a layer a manifest lies about";
    const char *lg = "a layer that grows", *lo = "a layer nobody references";
    char buf[2048], path[256];
    uint64_t size = 0;

    CHECK(fx_setup(&fx));
    om_digest t = put(&fx, lt), l = put(&fx, ll), g = put(&fx, lg), o = put(&fx, lo);
    /* Two manifests agree on t; one lies about l (its file is right). */
    snprintf(buf, sizeof(buf),
             "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
             "\"config\":{\"digest\":\"%s\",\"size\":%zu},\"layers\":["
             "{\"digest\":\"%s\",\"size\":%zu},{\"digest\":\"%s\",\"size\":999},"
             "{\"digest\":\"%s\",\"size\":%zu}]}",
             t.str, strlen(lt), t.str, strlen(lt), l.str, g.str, strlen(lg));
    put(&fx, buf);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", fx.root, om_digest_hex(&t),
             om_digest_hex(&t));
    CHECK_EQ_INT(truncate(path, 4), 0);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", fx.root, om_digest_hex(&g),
             om_digest_hex(&g));
    CHECK_EQ_INT(truncate(path, 4096), 0);
    CHECK_EQ_INT(om_index_rebuild(fx.ix, NULL, NULL), OM_OK);
    CHECK_EQ_INT(om_index_blob_size(fx.ix, &t, &size), OM_OK);
    CHECK_EQ_INT(size, strlen(lt)); /* what the manifests say, not 4 */
    CHECK_EQ_INT(om_index_blob_size(fx.ix, &g, &size), OM_OK);
    CHECK_EQ_INT(size, strlen(lg)); /* not 4096 */
    CHECK_EQ_INT(om_index_blob_size(fx.ix, &l, &size), OM_OK);
    CHECK_EQ_INT(size, strlen(ll)); /* its bytes hash right: the manifest is wrong */
    CHECK_EQ_INT(om_index_blob_size(fx.ix, &o, &size), OM_OK);
    CHECK_EQ_INT(size, strlen(lo)); /* nothing says otherwise */
    /* The temporary table is gone, and a second rebuild does the same. */
    CHECK_EQ_INT(om_index_rebuild(fx.ix, NULL, NULL), OM_OK);
    CHECK_EQ_INT(om_index_blob_size(fx.ix, &t, &size), OM_OK);
    CHECK_EQ_INT(size, strlen(lt));
    fx_teardown(&fx);
}

static void test_index__explicit_rebuild_replaces_everything_and_counts(void)
{
    struct fixture fx = {0};
    struct world w;
    size_t nm = 0, nt = 0;
    char up[64], canon[300];
    om_digest stray = dig("recorded but never stored");

    CHECK(fx_setup(&fx));
    make_world(&fx, &w);
    tag_world(&fx, &w);
    CHECK_EQ_INT(om_index_blob_put(fx.ix, "x/y", &stray, 5, 1), OM_OK);
    CHECK_EQ_INT(om_index_route_put(fx.ix, "nginx", "docker.io", "docker.io/library/nginx", 1),
                 OM_OK);
    CHECK_EQ_INT(om_index_rebuild(fx.ix, &nm, &nt), OM_OK);
    CHECK_EQ_INT(nm, 4);
    CHECK_EQ_INT(nt, 3);
    check_world_rebuilt(&fx, &w);
    CHECK_EQ_INT(om_index_route_get(fx.ix, "nginx", up, sizeof(up), canon, sizeof(canon)),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_rebuild(fx.ix, NULL, NULL), OM_OK); /* idempotent */
    check_world_rebuilt(&fx, &w);
    fx_teardown(&fx);
}

static void test_index__garbage_over_index_db_is_detected_and_rebuilt(void)
{
    struct fixture fx = {0};
    struct world w;
    char garbage[16384];

    CHECK(fx_setup(&fx));
    make_world(&fx, &w);
    tag_world(&fx, &w);
    om_index_close(fx.ix);
    fx.ix = NULL;
    memset(garbage, 0xA5, sizeof(garbage));
    int fd = open(fx.db, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    CHECK_EQ_INT(write(fd, garbage, sizeof(garbage)), (long)sizeof(garbage));
    close(fd);
    CHECK_EQ_INT(om_index_open(&fx.ix, fx.st, &fx.rebuilt), OM_OK);
    CHECK(fx.rebuilt);
    CHECK_EQ_INT(count_corrupt_files(&fx), 1);
    if (fx.ix != NULL)
        check_world_rebuilt(&fx, &w);
    fx_teardown(&fx);
}

static void test_index__damaged_pages_fail_quick_check_and_are_rebuilt(void)
{
    struct fixture fx = {0};
    struct world w;
    struct stat sb;
    char garbage[4096];

    CHECK(fx_setup(&fx));
    make_world(&fx, &w);
    tag_world(&fx, &w);
    om_index_close(fx.ix);
    fx.ix = NULL;
    /* Keep the 100-byte header valid; scribble over every later page. */
    CHECK_EQ_INT(stat(fx.db, &sb), 0);
    memset(garbage, 0x5A, sizeof(garbage));
    int fd = open(fx.db, O_WRONLY);
    CHECK(fd >= 0);
    for (off_t off = 4096; off < sb.st_size; off += (off_t)sizeof(garbage))
        CHECK_EQ_INT(pwrite(fd, garbage, sizeof(garbage), off), (long)sizeof(garbage));
    close(fd);
    CHECK_EQ_INT(om_index_open(&fx.ix, fx.st, &fx.rebuilt), OM_OK);
    CHECK(fx.rebuilt);
    CHECK_EQ_INT(count_corrupt_files(&fx), 1);
    if (fx.ix != NULL)
        check_world_rebuilt(&fx, &w);
    fx_teardown(&fx);
}

static void test_index__unknown_schema_version_is_moved_aside(void)
{
    struct fixture fx = {0};
    struct world w;
    sqlite3 *db = NULL;

    CHECK(fx_setup(&fx));
    make_world(&fx, &w);
    tag_world(&fx, &w);
    om_index_close(fx.ix);
    fx.ix = NULL;
    CHECK_EQ_INT(sqlite3_open(fx.db, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, "PRAGMA user_version=99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(om_index_open(&fx.ix, fx.st, &fx.rebuilt), OM_OK);
    CHECK(fx.rebuilt);
    CHECK_EQ_INT(count_corrupt_files(&fx), 1);
    CHECK_EQ_INT(sql_int(&fx, "PRAGMA user_version"), 1);
    fx_teardown(&fx);
}

static void test_index__empty_index_db_with_content_in_the_store_is_rebuilt(void)
{
    struct fixture fx = {0};
    struct world w;

    CHECK(fx_setup(&fx));
    make_world(&fx, &w);
    tag_world(&fx, &w);
    om_index_close(fx.ix);
    fx.ix = NULL;
    remove_db(&fx);
    int fd = open(fx.db, O_WRONLY | O_CREAT, 0644);
    close(fd);
    CHECK_EQ_INT(om_index_open(&fx.ix, fx.st, &fx.rebuilt), OM_OK);
    CHECK(fx.rebuilt);
    if (fx.ix != NULL)
        check_world_rebuilt(&fx, &w);
    fx_teardown(&fx);
}

static void test_index__torn_last_log_line_is_ignored_and_not_glued_to_the_next(void)
{
    struct fixture fx = {0};
    struct world w;
    struct om_tag_rec t;
    char torn[300], buf[8192];

    CHECK(fx_setup(&fx));
    make_world(&fx, &w);
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "docker.io/library/nginx", "a", &w.manifest,
                                  OCI_MANIFEST, 1, 1),
                 OM_OK);
    om_index_close(fx.ix);
    fx.ix = NULL;
    /* A crash in the middle of a write: the line stops before its '}'. */
    snprintf(torn, sizeof(torn),
             "{\"repo\":\"docker.io/library/nginx\",\"tag\":\"torn\",\"digest\":\"%s\","
             "\"media_type\":\"x\",\"size\":1",
             w.manifest.str);
    file_append(fx.log, torn);

    /* The next run appends after it without losing its own line. */
    CHECK_EQ_INT(om_index_open(&fx.ix, fx.st, &fx.rebuilt), OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "docker.io/library/nginx", "b", &w.list, DOCKER_LIST, 1,
                                  2),
                 OM_OK);
    file_read(fx.log, buf, sizeof(buf));
    CHECK(strstr(buf, "\"size\":1\n{\"repo\"") != NULL);

    /* Torn again at the very end, then rebuild. */
    file_append(fx.log, torn);
    size_t nm = 0, nt = 0;
    CHECK_EQ_INT(om_index_rebuild(fx.ix, &nm, &nt), OM_OK);
    CHECK_EQ_INT(nt, 2);
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "docker.io/library/nginx", "a", &t), OM_OK);
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "docker.io/library/nginx", "b", &t), OM_OK);
    CHECK_EQ_STR(t.digest.str, w.list.str);
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "docker.io/library/nginx", "torn", &t),
                 OM_ERR_NOTFOUND);

    /* Damaged, overlong and invalid lines are skipped as well. */
    char longline[6000];
    memset(longline, 'x', sizeof(longline) - 2);
    longline[sizeof(longline) - 2] = '\n';
    longline[sizeof(longline) - 1] = '\0';
    file_append(fx.log, "\nnot json\n");
    file_append(fx.log, longline);
    file_append(fx.log, "{\"repo\":\"r\",\"tag\":\"../x\",\"digest\":\"sha256:00\","
                        "\"media_type\":\"x\",\"size\":1,\"t\":1}\n");
    CHECK_EQ_INT(om_index_rebuild(fx.ix, &nm, &nt), OM_OK);
    CHECK_EQ_INT(nt, 2);
    fx_teardown(&fx);
}

static void test_index__a_short_log_write_does_not_swallow_the_next_line(void)
{
    struct fixture fx = {0};
    struct world w;
    struct om_tag_rec t;
    struct rlimit old, lim;
    struct stat sb;
    size_t nm = 0, nt = 0;

    CHECK(fx_setup(&fx));
    make_world(&fx, &w);
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "docker.io/library/nginx", "a", &w.manifest,
                                  OCI_MANIFEST, 1, 1),
                 OM_OK);
    CHECK_EQ_INT(stat(fx.log, &sb), 0);
    /* Let the next append land only partly (a full disk looks the same). */
    signal(SIGXFSZ, SIG_IGN);
    CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)sb.st_size + 20;
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
    CHECK(om_index_tag_put(fx.ix, "docker.io/library/nginx", "lost", &w.manifest, OCI_MANIFEST,
                           1, 2) != OM_OK);
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    /* Refused in the database as well as in the log. */
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "docker.io/library/nginx", "lost", &t),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "docker.io/library/nginx", "b", &w.manifest,
                                  OCI_MANIFEST, 1, 3),
                 OM_OK);
    CHECK_EQ_INT(om_index_rebuild(fx.ix, &nm, &nt), OM_OK);
    CHECK_EQ_INT(nt, 2);
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "docker.io/library/nginx", "b", &t), OM_OK);
    fx_teardown(&fx);
}

/* ---- concurrency --------------------------------------------------- */

struct worker {
    struct om_index *ix;
    int id;
    int failures;
};

static int count_cb(void *ud, const char *s)
{
    (void)s;
    (*(int *)ud)++;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char repo[64], tag[32], body[64];

    snprintf(repo, sizeof(repo), "docker.io/library/w%d", w->id);
    for (int i = 0; i < 60; i++) {
        struct om_tag_rec rec;
        om_digest d;
        int n = 0;
        snprintf(tag, sizeof(tag), "t%d", i % 7);
        snprintf(body, sizeof(body), "w%d-%d", w->id, i);
        om_hash_buf(body, strlen(body), &d);
        w->failures += om_index_blob_put(w->ix, repo, &d, (uint64_t)i, i) != OM_OK;
        w->failures += om_index_manifest_put(w->ix, repo, &d, OCI_MANIFEST, 1, &d, 1, i) != OM_OK;
        w->failures += om_index_tag_put(w->ix, repo, tag, &d, OCI_MANIFEST, 1, i) != OM_OK;
        w->failures += om_index_tag_get(w->ix, repo, tag, &rec) != OM_OK;
        w->failures += strcmp(rec.digest.str, d.str) != 0;
        w->failures += om_index_note_pull(w->ix, repo, tag, &d, i) != OM_OK;
        w->failures += om_index_tags_list(w->ix, repo, NULL, -1, count_cb, &n) != OM_OK;
        w->failures += om_index_catalog(w->ix, NULL, 2, count_cb, &n) != OM_OK;
        w->failures += om_index_negative_put(w->ix, repo, "docker.io", 1000 + i) != OM_OK;
        w->failures += !om_index_negative_get(w->ix, repo, "docker.io", i);
    }
    return NULL;
}

static void test_index__four_threads_at_once_do_not_fail(void)
{
    struct fixture fx = {0};
    struct worker w[4];
    pthread_t th[4];
    struct om_index_counts c;

    CHECK(fx_setup(&fx));
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.ix = fx.ix, .id = i};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(w[i].failures, 0);
    }
    CHECK_EQ_INT(om_index_counts(fx.ix, &c), OM_OK);
    CHECK_EQ_INT(c.repos, 4);
    CHECK_EQ_INT(c.tags, 4 * 7);
    CHECK_EQ_INT(c.blobs, 4 * 60);
    /* Every tag_put reached tags.log as its own line. */
    FILE *f = fopen(fx.log, "r");
    int lines = 0, ch;
    while (f != NULL && (ch = getc(f)) != EOF)
        lines += ch == '\n';
    if (f != NULL)
        fclose(f);
    CHECK_EQ_INT(lines, 4 * 60);
    fx_teardown(&fx);
}

int main(void)
{
    RUN(test_index__open_creates_a_wal_database_with_a_schema_version);
    RUN(test_index__tag_put_then_get_round_trips);
    RUN(test_index__tag_put_appends_one_json_line_per_change);
    RUN(test_index__tag_put_rejects_bad_input);
    RUN(test_index__tags_list_is_byte_ordered_and_paged);
    RUN(test_index__catalog_is_byte_ordered_and_paged);
    RUN(test_index__manifest_put_records_type_repo_and_children);
    RUN(test_index__blob_put_and_note_pull_update_access);
    RUN(test_index__blob_size_says_what_was_recorded_for_a_blob_or_a_manifest);
    RUN(test_index__member_says_which_repositories_hold_a_digest);
    RUN(test_index__route_decisions_round_trip);
    RUN(test_index__negative_entries_expire_by_time);
    RUN(test_index__referrers_round_trip_with_a_size_limit);
    RUN(test_index__rebuild_after_deleting_index_db_restores_tags_and_manifests);
    RUN(test_index__rebuild_records_the_size_manifests_give_not_a_damaged_files);
    RUN(test_index__explicit_rebuild_replaces_everything_and_counts);
    RUN(test_index__garbage_over_index_db_is_detected_and_rebuilt);
    RUN(test_index__damaged_pages_fail_quick_check_and_are_rebuilt);
    RUN(test_index__unknown_schema_version_is_moved_aside);
    RUN(test_index__empty_index_db_with_content_in_the_store_is_rebuilt);
    RUN(test_index__torn_last_log_line_is_ignored_and_not_glued_to_the_next);
    RUN(test_index__a_short_log_write_does_not_swallow_the_next_line);
    RUN(test_index__four_threads_at_once_do_not_fail);
    return test_done();
}
