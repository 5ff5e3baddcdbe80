/* test_index_redis.c — one behaviour table run against both index backends:
 * SQLite (om_index_open) and Redis (om_index_open_cfg with cluster.redis,
 * on a redis-server the test starts).  Every case uses only index.h, so a
 * difference between the backends is a failure of one of them.  Then what
 * only Redis does: a replica sharing another's records, the rebuild of an
 * empty Redis from the store, an outage (OM_ERR_UNAVAILABLE at once,
 * om_index_health, back by itself), a schema it does not know.  Adapted
 * from test_index.c's cases. */
#include "test.h"

#include "cache/index.h"
#include "cache/index_admin.h"
#include "cache/store.h"
#include "core/config.h"
#include "core/hash.h"
#include "redis_server.h"

#include <ftw.h>
#include <pthread.h>

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

static struct rs srv;
static bool have_srv;

enum backend { B_SQLITE, B_REDIS };
static const char *const backend_name[] = {"sqlite", "redis"};

struct fixture {
    enum backend b;
    char root[64];
    struct om_store *st;
    struct om_index *ix;
    struct om_config *cfg;
    bool rebuilt;
};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static struct om_config *redis_cfg(unsigned db)
{
    struct om_config *cfg = NULL;
    char url[200];
    if (om_config_default(&cfg) != OM_OK)
        return NULL;
    snprintf(url, sizeof(url), "unix://%s?db=%u", srv.sock, db);
    cfg->cluster_redis = strdup(url);
    return cfg;
}

static int fx_open(struct fixture *fx)
{
    fx->rebuilt = true;
    return fx->b == B_SQLITE ? om_index_open(&fx->ix, fx->st, &fx->rebuilt)
                             : om_index_open_cfg(&fx->ix, fx->st, fx->cfg, &fx->rebuilt);
}

static bool fx_setup(struct fixture *fx, enum backend b)
{
    memset(fx, 0, sizeof(*fx));
    fx->b = b;
    snprintf(fx->root, sizeof(fx->root), "/tmp/om-test-ixr-XXXXXX");
    if (mkdtemp(fx->root) == NULL)
        return false;
    if (b == B_REDIS) {
        rs_cmd(&srv, 5, "FLUSHDB", NULL, 0);
        fx->cfg = redis_cfg(5);
    }
    return om_store_open(&fx->st, fx->root) == OM_OK && fx_open(fx) == OM_OK;
}

static void fx_teardown(struct fixture *fx)
{
    om_index_close(fx->ix);
    om_store_close(fx->st);
    om_config_free(fx->cfg);
    nftw(fx->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static om_digest dig(const char *s)
{
    om_digest d;
    om_hash_buf(s, strlen(s), &d);
    return d;
}

static om_digest put(struct fixture *fx, const char *s)
{
    om_digest d = dig(s);
    CHECK_EQ_INT(om_store_put(fx->st, &d, s, strlen(s)), OM_OK);
    return d;
}

struct list {
    char joined[2048];
    int calls;
    int stop_after;
};

static int collect(void *ud, const char *s)
{
    struct list *l = ud;
    size_t n = strlen(l->joined);
    snprintf(l->joined + n, sizeof(l->joined) - n, "%s%s", n ? "," : "", s);
    l->calls++;
    return l->stop_after != 0 && l->calls == l->stop_after ? 7 : 0;
}

/* ---- the table: each case takes a fresh fixture ------------------------------ */

static void case_tag_round_trip(struct fixture *fx)
{
    struct om_tag_rec rec;
    om_digest a = dig("manifest a"), b = dig("manifest b");
    const char *r = "docker.io/library/nginx";

    CHECK_EQ_INT(om_index_tag_get(fx->ix, r, "latest", &rec), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, r, "latest", &a, OCI_MANIFEST, 1234, 1000), OM_OK);
    CHECK_EQ_INT(om_index_tag_get(fx->ix, r, "latest", &rec), OM_OK);
    CHECK_EQ_STR(rec.digest.str, a.str);
    CHECK_EQ_STR(rec.media_type, OCI_MANIFEST);
    CHECK_EQ_INT(rec.size, 1234);
    CHECK_EQ_INT(rec.fetched_at, 1000);
    CHECK_EQ_INT(rec.checked_at, 1000);
    CHECK_EQ_INT(om_index_tag_checked(fx->ix, r, "latest", 2000), OM_OK);
    CHECK_EQ_INT(om_index_tag_get(fx->ix, r, "latest", &rec), OM_OK);
    CHECK_EQ_INT(rec.fetched_at, 1000);
    CHECK_EQ_INT(rec.checked_at, 2000);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, r, "latest", &b, DOCKER_LIST, 99, 3000), OM_OK);
    CHECK_EQ_INT(om_index_tag_get(fx->ix, r, "latest", &rec), OM_OK);
    CHECK_EQ_STR(rec.digest.str, b.str);
    CHECK_EQ_STR(rec.media_type, DOCKER_LIST);
    CHECK_EQ_INT(rec.size, 99);
    CHECK_EQ_INT(rec.fetched_at, 3000);
    CHECK_EQ_INT(rec.checked_at, 3000);
    CHECK_EQ_INT(om_index_tag_checked(fx->ix, r, "nope", 1), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_tag_get(fx->ix, "docker.io/library/other", "latest", &rec),
                 OM_ERR_NOTFOUND);
    /* not a tag: could never have been put */
    CHECK_EQ_INT(om_index_tag_get(fx->ix, r, "a:b", &rec), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_tag_checked(fx->ix, r, "", 5), OM_ERR_NOTFOUND);
}

static void case_tag_put_rejects_bad_input(struct fixture *fx)
{
    om_digest a = dig("x"), bad;
    char longname[OM_NAME_MAX + 2];
    struct om_index_counts c;

    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    memset(&bad, 0, sizeof(bad));
    snprintf(bad.str, sizeof(bad.str), "sha256:../../etc");
    CHECK_EQ_INT(om_index_tag_put(fx->ix, NULL, "t", &a, OCI_MANIFEST, 1, 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, longname, "t", &a, OCI_MANIFEST, 1, 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "r", "a/b", &a, OCI_MANIFEST, 1, 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "r", "t", &bad, OCI_MANIFEST, 1, 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "r", "t", &a, "bad utf-8 \xff", 1, 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "r", "t", &a, OCI_MANIFEST, (uint64_t)INT64_MAX + 1, 1),
                 OM_ERR_INVALID);
    longname[OM_NAME_MAX] = '\0'; /* exactly the limit is fine */
    CHECK_EQ_INT(om_index_tag_put(fx->ix, longname, "t", &a, OCI_MANIFEST, 1, 1), OM_OK);
    CHECK_EQ_INT(om_index_counts(fx->ix, &c), OM_OK);
    CHECK_EQ_INT(c.tags, 1);
    CHECK_EQ_INT(c.repos, 1);
}

static void case_tags_list_is_byte_ordered_and_paged(struct fixture *fx)
{
    static const char *const tags[] = {"latest", "B", "a", "_x", "A1", "a.b", "a-b", "10", "9", "a_b"};
    static const char all[] = "10,9,A1,B,_x,a,a-b,a.b,a_b,latest";
    static const struct {
        const char *last;
        long n;
        const char *want;
    } cases[] = {
        {NULL, -1, all}, {NULL, 0, ""}, {NULL, 2, "10,9"}, {NULL, 10, all}, {NULL, 1000, all},
        {"9", 2, "A1,B"}, {"A", 3, "A1,B,_x"}, {"a", -1, "a-b,a.b,a_b,latest"},
        {"a-a", 1, "a-b"}, {"latest", 5, ""}, {"zzz", -1, ""}, {"0", 1, "10"}, {"9", 0, ""},
    };
    om_digest d = dig("tagged");

    for (size_t i = 0; i < OM_ARRAY_LEN(tags); i++)
        CHECK_EQ_INT(om_index_tag_put(fx->ix, "docker.io/library/x", tags[i], &d, OCI_MANIFEST, 1,
                                      1),
                     OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "docker.io/library/y", "zz", &d, OCI_MANIFEST, 1, 1),
                 OM_OK);
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        struct list l = {0};
        CHECK_EQ_INT(om_index_tags_list(fx->ix, "docker.io/library/x", cases[i].last, cases[i].n,
                                        collect, &l),
                     OM_OK);
        if (strcmp(l.joined, cases[i].want) != 0)
            fprintf(stderr, "  case %zu (last=%s n=%ld)\n", i, cases[i].last ? cases[i].last : "-",
                    cases[i].n);
        CHECK_EQ_STR(l.joined, cases[i].want);
    }
    /* a client's ?last= longer than any tag */
    char longlast[600];
    memset(longlast, 'A', sizeof(longlast) - 1);
    longlast[sizeof(longlast) - 1] = '\0';
    struct list ll = {0};
    CHECK_EQ_INT(om_index_tags_list(fx->ix, "docker.io/library/x", longlast, -1, collect, &ll),
                 OM_OK);
    CHECK_EQ_STR(ll.joined, "B,_x,a,a-b,a.b,a_b,latest");
    struct list lc = {0};
    CHECK_EQ_INT(om_index_catalog(fx->ix, longlast, -1, collect, &lc), OM_OK);
    CHECK_EQ_STR(lc.joined, "docker.io/library/x,docker.io/library/y");
    struct list stop = {.stop_after = 3};
    CHECK_EQ_INT(om_index_tags_list(fx->ix, "docker.io/library/x", NULL, -1, collect, &stop), 7);
    CHECK_EQ_STR(stop.joined, "10,9,A1");
    struct list none = {0};
    CHECK_EQ_INT(om_index_tags_list(fx->ix, "docker.io/library/nope", NULL, -1, collect, &none),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_tags_list(fx->ix, "docker.io/library/nope", NULL, 0, collect, &none),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(none.calls, 0);
    CHECK_EQ_INT(om_index_blob_put(fx->ix, "ghcr.io/o/p", &d, 1, 1), OM_OK);
    CHECK_EQ_INT(om_index_tags_list(fx->ix, "ghcr.io/o/p", NULL, -1, collect, &none), OM_OK);
    CHECK_EQ_INT(om_index_tags_list(fx->ix, "ghcr.io/o/p", NULL, 0, collect, &none), OM_OK);
    CHECK_EQ_INT(none.calls, 0);
}

/* More tags than one Redis page: the pages join without a gap or a repeat. */
static void case_a_long_tag_list_pages_through(struct fixture *fx)
{
    om_digest d = dig("many");
    char tag[16];
    struct list l = {0};
    int calls = 0;

    for (int i = 0; i < 2500; i++) {
        snprintf(tag, sizeof(tag), "v%05d", i);
        CHECK_EQ_INT(om_index_tag_put(fx->ix, "quay.io/many/tags", tag, &d, OCI_MANIFEST, 1, 1),
                     OM_OK);
    }
    CHECK_EQ_INT(om_index_tags_list(fx->ix, "quay.io/many/tags", NULL, -1, collect, &l), OM_OK);
    calls = l.calls;
    CHECK_EQ_INT(calls, 2500);
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(om_index_tags_list(fx->ix, "quay.io/many/tags", "v00999", 1002, collect, &l),
                 OM_OK);
    CHECK_EQ_INT(l.calls, 1002);
    CHECK(strncmp(l.joined, "v01000,v01001", 13) == 0);
}

static void case_catalog_is_byte_ordered_and_paged(struct fixture *fx)
{
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
        {NULL, -1, all}, {NULL, 0, ""}, {NULL, 1, "docker.io/bitnami/redis"},
        {"docker.io/library/alpine", 2, "docker.io/library/nginx,ghcr.io/a/b"},
        {"docker.io/library/b", 1, "docker.io/library/nginx"},
        {"registry.k8s.io/pause", 10, ""}, {"zzz", 10, ""}, {"a", 0, ""},
    };
    om_digest d = dig("catalog");
    struct list e = {0};

    CHECK_EQ_INT(om_index_catalog(fx->ix, NULL, -1, collect, &e), OM_OK);
    CHECK_EQ_INT(e.calls, 0);
    for (size_t i = 0; i < OM_ARRAY_LEN(repos); i++) {
        if (i % 3 == 0)
            CHECK_EQ_INT(om_index_tag_put(fx->ix, repos[i], "t", &d, OCI_MANIFEST, 1, 1), OM_OK);
        else if (i % 3 == 1)
            CHECK_EQ_INT(om_index_manifest_put(fx->ix, repos[i], &d, OCI_MANIFEST, 1, NULL, 0, 1),
                         OM_OK);
        else
            CHECK_EQ_INT(om_index_blob_put(fx->ix, repos[i], &d, 1, 1), OM_OK);
    }
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        struct list l = {0};
        CHECK_EQ_INT(om_index_catalog(fx->ix, cases[i].last, cases[i].n, collect, &l), OM_OK);
        CHECK_EQ_STR(l.joined, cases[i].want);
    }
}

static void case_manifests_blobs_pulls_and_counts(struct fixture *fx)
{
    struct om_manifest_rec rec;
    struct om_index_counts c;
    om_digest m = dig("manifest"), kids[3] = {dig("config"), dig("layer1"), dig("layer2")};
    om_digest b = dig("blob"), unknown = dig("unknown"), bad;
    uint64_t size = 0;

    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &m, &rec), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_manifest_put(fx->ix, "docker.io/library/nginx", &m, OCI_MANIFEST, 321,
                                       kids, 3, 10),
                 OM_OK);
    CHECK_EQ_INT(om_index_manifest_put(fx->ix, "quay.io/x/nginx", &m, OCI_MANIFEST, 321, kids, 3,
                                       20),
                 OM_OK);
    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &m, &rec), OM_OK);
    CHECK_EQ_STR(rec.media_type, OCI_MANIFEST);
    CHECK_EQ_INT(rec.size, 321);
    om_digest m2 = dig("manifest 2");
    CHECK_EQ_INT(om_index_manifest_put(fx->ix, NULL, &m2, OCI_INDEX, 5, NULL, 0, 30), OM_OK);
    memset(&bad, 0, sizeof(bad));
    snprintf(bad.str, sizeof(bad.str), "md5:abc");
    om_digest mixed[2] = {kids[0], bad};
    om_digest m3 = dig("manifest 3");
    CHECK_EQ_INT(om_index_manifest_put(fx->ix, "r", &m3, OCI_MANIFEST, 1, mixed, 2, 1),
                 OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &m3, &rec), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &bad, &rec), OM_ERR_INVALID);

    CHECK_EQ_INT(om_index_blob_put(fx->ix, "docker.io/library/nginx", &b, 1000, 5), OM_OK);
    CHECK_EQ_INT(om_index_blob_put(fx->ix, "docker.io/library/httpd", &b, 1000, 6), OM_OK);
    CHECK_EQ_INT(om_index_blob_put(fx->ix, NULL, &b, 1000, 7), OM_OK);
    CHECK_EQ_INT(om_index_note_pull(fx->ix, "docker.io/library/nginx", NULL, &b, 100), OM_OK);
    CHECK_EQ_INT(om_index_note_pull(fx->ix, NULL, NULL, &b, 200), OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "docker.io/library/nginx", "latest", &m, OCI_MANIFEST,
                                  321, 1),
                 OM_OK);
    CHECK_EQ_INT(om_index_note_pull(fx->ix, "docker.io/library/nginx", "latest", &m, 300), OM_OK);
    CHECK_EQ_INT(om_index_note_pull(fx->ix, NULL, NULL, &unknown, 1), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_note_pull(fx->ix, NULL, "latest", &m, 1), OM_ERR_INVALID);

    CHECK_EQ_INT(om_index_blob_size(fx->ix, &b, &size), OM_OK);
    CHECK_EQ_INT(size, 1000);
    CHECK_EQ_INT(om_index_blob_size(fx->ix, &m, &size), OM_OK);
    CHECK_EQ_INT(size, 321);
    CHECK_EQ_INT(om_index_blob_size(fx->ix, &unknown, &size), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_blob_put(fx->ix, NULL, &b, 900, 8), OM_OK); /* fetched again */
    CHECK_EQ_INT(om_index_blob_size(fx->ix, &b, &size), OM_OK);
    CHECK_EQ_INT(size, 900);

    CHECK_EQ_INT(om_index_counts(fx->ix, &c), OM_OK);
    CHECK_EQ_INT(c.repos, 3); /* nginx, quay.io/x/nginx, httpd; none for NULL */
    CHECK_EQ_INT(c.tags, 1);
    CHECK_EQ_INT(c.manifests, 2);
    CHECK_EQ_INT(c.blobs, 1);
    CHECK_EQ_INT(c.blob_bytes, 900);
}

static void case_note_pulls_flags_what_is_known(struct fixture *fx)
{
    struct om_pull_note n[4];
    om_digest b = dig("pulled blob"), m = dig("pulled manifest"), u = dig("nobody's");

    memset(n, 0, sizeof(n));
    CHECK_EQ_INT(om_index_blob_put(fx->ix, NULL, &b, 10, 1), OM_OK);
    CHECK_EQ_INT(om_index_manifest_put(fx->ix, "r/x", &m, OCI_MANIFEST, 5, &b, 1, 1), OM_OK);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "r/x", "t", &m, OCI_MANIFEST, 5, 1), OM_OK);
    n[0] = (struct om_pull_note){.digest = b, .t_ms = 50, .count = 3};
    n[1] = (struct om_pull_note){.repo = "r/x", .tag = "t", .digest = m, .t_ms = 60, .count = 2};
    n[2] = (struct om_pull_note){.digest = u, .t_ms = 70, .count = 1};
    n[3] = (struct om_pull_note){.digest = b, .t_ms = 80, .count = 1};
    memset(n[3].digest.str, 0, sizeof(n[3].digest.str)); /* invalid: skipped */
    n[3].found = true;
    CHECK_EQ_INT(om_index_note_pulls(fx->ix, n, 4), OM_OK);
    CHECK(n[0].found);
    CHECK(n[1].found);
    CHECK(!n[2].found);
    CHECK(!n[3].found);
    CHECK_EQ_INT(om_index_note_pulls(fx->ix, n, 0), OM_OK);
}

static void case_routes_negative_entries_and_referrers(struct fixture *fx)
{
    char up[64], canon[OM_NAME_MAX + 1], tiny[4];
    om_digest d = dig("subject");
    const char *json = "{\"schemaVersion\":2,\"manifests\":[]}";
    char *got = NULL;
    size_t len = 0, big_n = 4u * 1024 * 1024;
    int64_t at = 0;

    CHECK_EQ_INT(om_index_route_get(fx->ix, "nginx", up, sizeof(up), canon, sizeof(canon)),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_route_put(fx->ix, "nginx", "docker.io", "docker.io/library/nginx", 1),
                 OM_OK);
    CHECK_EQ_INT(om_index_route_put(fx->ix, "nginx", "quay.io", "quay.io/nginx", 2), OM_OK);
    CHECK_EQ_INT(om_index_route_get(fx->ix, "nginx", up, sizeof(up), canon, sizeof(canon)), OM_OK);
    CHECK_EQ_STR(up, "quay.io");
    CHECK_EQ_STR(canon, "quay.io/nginx");
    CHECK_EQ_INT(om_index_route_get(fx->ix, "nginx", tiny, sizeof(tiny), canon, sizeof(canon)),
                 OM_ERR_TOOBIG);
    CHECK_EQ_INT(om_index_route_put(fx->ix, "nginx", "", "x/y", 1), OM_ERR_INVALID);

    CHECK(!om_index_negative_get(fx->ix, "foo/bar", "docker.io", 0));
    CHECK_EQ_INT(om_index_negative_put(fx->ix, "foo/bar", "docker.io", 1000), OM_OK);
    CHECK(om_index_negative_get(fx->ix, "foo/bar", "docker.io", 999));
    CHECK(!om_index_negative_get(fx->ix, "foo/bar", "quay.io", 999));
    CHECK(!om_index_negative_get(fx->ix, "foo/baz", "docker.io", 999));
    CHECK(!om_index_negative_get(fx->ix, "foo/bar", "docker.io", 1000));
    CHECK(!om_index_negative_get(fx->ix, "foo/bar", "docker.io", 10)); /* gone, not hidden */
    CHECK_EQ_INT(om_index_negative_put(fx->ix, "foo/bar", "docker.io", 5000), OM_OK);
    CHECK(om_index_negative_get(fx->ix, "foo/bar", "docker.io", 4999));
    /* a name and an upstream that could run into each other */
    CHECK_EQ_INT(om_index_negative_put(fx->ix, "b:c", "a", 5000), OM_OK);
    CHECK(!om_index_negative_get(fx->ix, "c", "a:b", 1));

    CHECK_EQ_INT(om_index_referrers_get(fx->ix, "r/x", &d, &got, &len, &at), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_referrers_put(fx->ix, "r/x", &d, json, strlen(json), 77), OM_OK);
    CHECK_EQ_INT(om_index_referrers_get(fx->ix, "r/x", &d, &got, &len, &at), OM_OK);
    CHECK(got != NULL && len == strlen(json) && memcmp(got, json, len) == 0 && got[len] == '\0');
    CHECK_EQ_INT(at, 77);
    free(got);
    got = NULL;
    CHECK_EQ_INT(om_index_referrers_get(fx->ix, "r/y", &d, &got, &len, NULL), OM_ERR_NOTFOUND);
    char *big = malloc(big_n + 1);
    if (big != NULL) {
        memset(big, ' ', big_n + 1);
        CHECK_EQ_INT(om_index_referrers_put(fx->ix, "r/x", &d, big, big_n + 1, 78), OM_ERR_TOOBIG);
        CHECK_EQ_INT(om_index_referrers_put(fx->ix, "r/x", &d, big, big_n, 79), OM_OK);
        CHECK_EQ_INT(om_index_referrers_get(fx->ix, "r/x", &d, &got, &len, NULL), OM_OK);
        CHECK_EQ_INT(len, big_n);
        free(got);
        free(big);
    }
}

/* A small world in the store and tags.log; rebuilt, the index knows it. */
static void case_rebuild_recovers_tags_and_manifests(struct fixture *fx)
{
    char buf[1024];
    struct om_tag_rec t;
    struct om_manifest_rec m;
    struct om_index_counts c;
    struct list l = {0};
    size_t nm = 0, nt = 0;
    uint64_t size = 0;

    om_digest layer = put(fx, "\x1f\x8b layer bytes!!"); /* 16 bytes */
    om_digest config = put(fx, "{\"architecture\":\"amd64\",\"config\":{}}");
    snprintf(buf, sizeof(buf),
             "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
             "\"config\":{\"digest\":\"%s\",\"size\":37},"
             "\"layers\":[{\"digest\":\"%s\",\"size\":16}]}",
             config.str, layer.str);
    om_digest man = put(fx, buf);
    om_store_has(fx->st, &man, &size);
    CHECK_EQ_INT(om_index_tag_put(fx->ix, "docker.io/library/nginx", "latest", &man, OCI_MANIFEST,
                                  size, 2000),
                 OM_OK);
    CHECK_EQ_INT(om_index_route_put(fx->ix, "nginx", "docker.io", "docker.io/library/nginx", 1),
                 OM_OK);
    CHECK_EQ_INT(om_index_rebuild(fx->ix, &nm, &nt), OM_OK);
    CHECK_EQ_INT(nm, 1);
    CHECK_EQ_INT(nt, 1);
    CHECK_EQ_INT(om_index_tag_get(fx->ix, "docker.io/library/nginx", "latest", &t), OM_OK);
    CHECK_EQ_STR(t.digest.str, man.str);
    CHECK_EQ_INT(t.fetched_at, 2000);
    CHECK_EQ_INT(om_index_manifest_get(fx->ix, &man, &m), OM_OK);
    CHECK_EQ_STR(m.media_type, OCI_MANIFEST);
    CHECK_EQ_INT(om_index_blob_size(fx->ix, &layer, &size), OM_OK);
    CHECK_EQ_INT(size, 16);
    CHECK_EQ_INT(om_index_counts(fx->ix, &c), OM_OK);
    CHECK_EQ_INT(c.manifests, 1);
    CHECK_EQ_INT(c.blobs, 2);
    CHECK_EQ_INT(c.tags, 1);
    CHECK_EQ_INT(c.repos, 1);
    CHECK_EQ_INT(om_index_catalog(fx->ix, NULL, -1, collect, &l), OM_OK);
    CHECK_EQ_STR(l.joined, "docker.io/library/nginx");
    char up[64], canon[OM_NAME_MAX + 1];
    CHECK_EQ_INT(om_index_route_get(fx->ix, "nginx", up, sizeof(up), canon, sizeof(canon)),
                 OM_ERR_NOTFOUND); /* a rebuild cannot know route decisions */
}

struct worker {
    struct om_index *ix;
    int id, failures;
};

static void case_member_says_which_repositories_hold_a_digest(struct fixture *fx)
{
    const char *nginx = "docker.io/library/nginx", *other = "docker.io/library/busybox";
    om_digest list = dig("member index"), plat = dig("member platform"), cfg = dig("member config"),
              layer = dig("member layer"), blob = dig("member blob"), deep = dig("member deep");
    om_digest kids[2] = {cfg, layer};

    CHECK_EQ_INT(om_index_member(fx->ix, nginx, &layer), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_manifest_put(fx->ix, nginx, &list, OCI_INDEX, 10, &plat, 1, 1), OM_OK);
    CHECK_EQ_INT(om_index_manifest_put(fx->ix, NULL, &plat, OCI_MANIFEST, 10, kids, 2, 1), OM_OK);
    CHECK_EQ_INT(om_index_member(fx->ix, nginx, &list), OM_OK);
    CHECK_EQ_INT(om_index_member(fx->ix, nginx, &plat), OM_OK);
    CHECK_EQ_INT(om_index_member(fx->ix, nginx, &layer), OM_OK);
    CHECK_EQ_INT(om_index_member(fx->ix, nginx, &cfg), OM_OK);
    CHECK_EQ_INT(om_index_member(fx->ix, other, &layer), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_manifest_put(fx->ix, NULL, &layer, OCI_MANIFEST, 10, &deep, 1, 1), OM_OK);
    CHECK_EQ_INT(om_index_member(fx->ix, nginx, &deep), OM_ERR_NOTFOUND); /* three levels */
    CHECK_EQ_INT(om_index_blob_put(fx->ix, other, &blob, 5, 1), OM_OK);
    CHECK_EQ_INT(om_index_member(fx->ix, other, &blob), OM_OK);
    CHECK_EQ_INT(om_index_member(fx->ix, nginx, &blob), OM_ERR_NOTFOUND);
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    char repo[64], tag[16];
    struct om_tag_rec rec;
    for (int i = 0; i < 200; i++) {
        om_digest d;
        char s[32];
        snprintf(s, sizeof(s), "%d-%d", w->id, i);
        om_hash_buf(s, strlen(s), &d);
        snprintf(repo, sizeof(repo), "docker.io/t/r%d", w->id);
        snprintf(tag, sizeof(tag), "v%d", i);
        w->failures += om_index_manifest_put(w->ix, repo, &d, OCI_MANIFEST, 10, NULL, 0, i) != OM_OK;
        w->failures += om_index_tag_put(w->ix, repo, tag, &d, OCI_MANIFEST, 10, i) != OM_OK;
        w->failures += om_index_tag_get(w->ix, repo, tag, &rec) != OM_OK;
        w->failures += om_index_note_pull(w->ix, repo, tag, &d, i + 1) != OM_OK;
    }
    return NULL;
}

static void case_four_threads_at_once(struct fixture *fx)
{
    pthread_t t[4];
    struct worker w[4];
    struct om_index_counts c;

    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.ix = fx->ix, .id = i};
        pthread_create(&t[i], NULL, worker_run, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(w[i].failures, 0);
    }
    CHECK_EQ_INT(om_index_counts(fx->ix, &c), OM_OK);
    CHECK_EQ_INT(c.tags, 800);
    CHECK_EQ_INT(c.manifests, 800);
    CHECK_EQ_INT(c.repos, 4);
}

static void case_health_says_which_backend(struct fixture *fx)
{
    struct om_index_health h;
    om_index_health(fx->ix, &h);
    CHECK_EQ_STR(h.backend, backend_name[fx->b]);
    CHECK_EQ_INT(h.shared, fx->b == B_REDIS);
    CHECK(h.available);
    CHECK(h.where[0] != '\0');
}

static const struct {
    const char *name;
    void (*fn)(struct fixture *fx);
} table[] = {
    {"tag_round_trip", case_tag_round_trip},
    {"tag_put_rejects_bad_input", case_tag_put_rejects_bad_input},
    {"tags_list_is_byte_ordered_and_paged", case_tags_list_is_byte_ordered_and_paged},
    {"a_long_tag_list_pages_through", case_a_long_tag_list_pages_through},
    {"catalog_is_byte_ordered_and_paged", case_catalog_is_byte_ordered_and_paged},
    {"manifests_blobs_pulls_and_counts", case_manifests_blobs_pulls_and_counts},
    {"note_pulls_flags_what_is_known", case_note_pulls_flags_what_is_known},
    {"routes_negative_entries_and_referrers", case_routes_negative_entries_and_referrers},
    {"rebuild_recovers_tags_and_manifests", case_rebuild_recovers_tags_and_manifests},
    {"four_threads_at_once", case_four_threads_at_once},
    {"health_says_which_backend", case_health_says_which_backend},
    {"member_says_which_repositories_hold_a_digest", case_member_says_which_repositories_hold_a_digest},
};

static void run_table(enum backend b)
{
    for (size_t i = 0; i < OM_ARRAY_LEN(table); i++) {
        struct fixture fx;
        int before = test_failures_;
        CHECK(fx_setup(&fx, b));
        if (fx.ix != NULL)
            table[i].fn(&fx);
        fx_teardown(&fx);
        if (test_failures_ == before) {
            test_cases_passed_++;
        } else {
            test_cases_failed_++;
            fprintf(stderr, "FAIL %s on %s\n", table[i].name, backend_name[b]);
        }
    }
}

/* ---- the admin views: the same answers from both backends ------------------- */

/* Some repositories with images, shared layers, an index with children,
 * tags pulled at different times, a repository known only by a blob. */
static void admin_world(struct om_index *ix)
{
    static const char *const repos[] = {"docker.io/library/nginx", "docker.io/library/alpine",
                                        "quay.io/coreos/etcd", "docker.io/bitnami/Redis",
                                        "ghcr.io/o/app"};
    char buf[128], tag[16];
    om_digest shared = dig("shared layer");
    for (size_t r = 0; r < OM_ARRAY_LEN(repos); r++) {
        om_digest kids[3], m, idx;
        snprintf(buf, sizeof(buf), "config %zu", r);
        kids[0] = dig(buf);
        snprintf(buf, sizeof(buf), "layer %zu", r);
        kids[1] = dig(buf);
        kids[2] = shared;
        for (int k = 0; k < 3; k++)
            CHECK_EQ_INT(om_index_blob_put(ix, repos[r], &kids[k], 100 * (r + 1) + (uint64_t)k,
                                           10),
                         OM_OK);
        snprintf(buf, sizeof(buf), "manifest %zu", r);
        m = dig(buf);
        CHECK_EQ_INT(om_index_manifest_put(ix, repos[r], &m, OCI_MANIFEST, 50 + r, kids, 3, 10),
                     OM_OK);
        snprintf(buf, sizeof(buf), "index %zu", r);
        idx = dig(buf);
        CHECK_EQ_INT(om_index_manifest_put(ix, NULL, &idx, OCI_INDEX, 7, &m, 1, 10), OM_OK);
        for (size_t t = 0; t <= r; t++) {
            snprintf(tag, sizeof(tag), "v%zu", t);
            CHECK_EQ_INT(om_index_tag_put(ix, repos[r], tag, t % 2 ? &m : &idx,
                                          t % 2 ? OCI_MANIFEST : OCI_INDEX, 7, 100 + (int64_t)(t * 7 % 5)),
                         OM_OK);
            for (size_t p = 0; p < (r * 3 + t) % 4; p++)
                CHECK_EQ_INT(om_index_note_pull(ix, repos[r], tag, t % 2 ? &m : &idx,
                                                1000 + (int64_t)(r * 10 + t + p)),
                             OM_OK);
        }
    }
    CHECK_EQ_INT(om_index_blob_put(ix, "registry.k8s.io/pause", &shared, 102, 10), OM_OK);
}

/* Every view as one text, for comparing. */
static void admin_render(struct om_index_admin *ia, char *out, size_t outsz)
{
    static const struct om_repo_query qs[] = {
        {.sort = OM_REPO_SORT_NAME, .limit = 500},
        {.sort = OM_REPO_SORT_NAME, .offset = 1, .limit = 2},
        {.q = "REDIS", .sort = OM_REPO_SORT_NAME, .limit = 10},
        {.upstream = "docker.io", .sort = OM_REPO_SORT_NAME, .limit = 10},
        {.upstream = "docker.io", .sort = OM_REPO_SORT_SIZE, .offset = 1, .limit = 1},
        {.sort = OM_REPO_SORT_PULLED, .limit = 10},
        {.sort = OM_REPO_SORT_PULLS, .limit = 10},
        {.sort = OM_REPO_SORT_SIZE, .limit = 10},
        {.q = "zzz", .sort = OM_REPO_SORT_SIZE, .limit = 10},
        {.sort = OM_REPO_SORT_NAME, .offset = 99, .limit = 10},
    };
    static const om_tag_sort ts[] = {OM_TAG_SORT_NAME, OM_TAG_SORT_FETCHED, OM_TAG_SORT_PULLED};
    struct om_repo_row rows[10];
    struct om_tag_row tr[10];
    struct om_index_admin_counts c;
    size_t n = 0, used = 0;
    uint64_t total = 0;
    static struct om_repo_row big[500];

#define EMIT(...) used += (size_t)snprintf(out + used, used < outsz ? outsz - used : 0, __VA_ARGS__)
    CHECK_EQ_INT(om_index_admin_counts(ia, &c), OM_OK);
    EMIT("counts %llu %llu %llu %llu %llu %llu\n", (unsigned long long)c.repos,
         (unsigned long long)c.tags, (unsigned long long)c.manifests, (unsigned long long)c.blobs,
         (unsigned long long)c.manifest_bytes, (unsigned long long)c.blob_bytes);
    for (size_t i = 0; i < OM_ARRAY_LEN(qs); i++) {
        struct om_repo_row *rr = i == 0 ? big : rows;
        CHECK_EQ_INT(om_index_admin_repos(ia, &qs[i], rr, &n, &total), OM_OK);
        EMIT("q%zu total %llu:", i, (unsigned long long)total);
        for (size_t k = 0; k < n; k++)
            EMIT(" %s/%llu/%llu/%lld/%llu", rr[k].name, (unsigned long long)rr[k].tags,
                 (unsigned long long)rr[k].size_bytes, (long long)rr[k].last_pulled,
                 (unsigned long long)rr[k].pull_count);
        EMIT("\n");
    }
    for (size_t i = 0; i < OM_ARRAY_LEN(ts); i++) {
        CHECK_EQ_INT(om_index_admin_tags(ia, "docker.io/bitnami/Redis", ts[i], 1, 3, tr, &n, &total),
                     OM_OK);
        EMIT("tags%zu total %llu:", i, (unsigned long long)total);
        for (size_t k = 0; k < n; k++)
            EMIT(" %s/%s/%s/%llu/%lld/%lld/%lld/%llu", tr[k].tag, tr[k].digest.str + 7,
                 tr[k].media_type, (unsigned long long)tr[k].size, (long long)tr[k].fetched_at,
                 (long long)tr[k].checked_at, (long long)tr[k].last_pulled,
                 (unsigned long long)tr[k].pull_count);
        EMIT("\n");
    }
    CHECK_EQ_INT(om_index_admin_tags(ia, "nope/nope", OM_TAG_SORT_NAME, 0, 3, tr, &n, &total),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_admin_tags(ia, "registry.k8s.io/pause", OM_TAG_SORT_NAME, 0, 3, tr, &n,
                                     &total),
                 OM_OK);
    EMIT("pause %zu %llu\n", n, (unsigned long long)total);
    char names[8][OM_TAG_MAX + 1];
    om_digest m = dig("manifest 4"), i4 = dig("index 4");
    CHECK_EQ_INT(om_index_admin_digest_tags(ia, "ghcr.io/o/app", &m, names, 8, &n), OM_OK);
    EMIT("digest tags:");
    for (size_t k = 0; k < n; k++)
        EMIT(" %s", names[k]);
    CHECK_EQ_INT(om_index_admin_digest_tags(ia, "ghcr.io/o/app", &i4, names, 2, &n), OM_OK);
    for (size_t k = 0; k < n; k++)
        EMIT(" %s", names[k]);
    EMIT("\n");
#undef EMIT
}

static void test_index_redis__admin_views_answer_as_on_sqlite(void)
{
    struct fixture fx[2];
    static char text[2][16384];

    for (int b = 0; b < 2; b++) {
        struct om_index_admin *ia = NULL;
        text[b][0] = '\0';
        CHECK(fx_setup(&fx[b], (enum backend)b));
        if (fx[b].ix == NULL)
            continue;
        admin_world(fx[b].ix);
        CHECK_EQ_INT(om_index_admin_open_index(&ia, fx[b].ix), OM_OK);
        if (ia != NULL)
            admin_render(ia, text[b], sizeof(text[b]));
        om_index_admin_close(ia);
    }
    CHECK_EQ_STR(text[1], text[0]);
    if (strcmp(text[0], text[1]) != 0)
        fprintf(stderr, "--- sqlite\n%s--- redis\n%s", text[0], text[1]);
    CHECK(strstr(text[0], "q0 total 6:") != NULL);
    if (getenv("OM_TEST_SHOW") != NULL)
        fprintf(stderr, "%s", text[0]);
    for (int b = 0; b < 2; b++)
        fx_teardown(&fx[b]);
}

/* ---- figures (OM_INDEX_BENCH=1 ./test_index_redis) --------------------------- */

static void bench_backend(enum backend b)
{
    struct fixture fx;
    struct om_tag_rec rec;
    enum { N_TAGS = 2000, N_GETS = 20000, N_NOTES = 2048, N_FLUSHES = 20 };
    static struct om_pull_note notes[N_NOTES];
    om_digest d = dig("bench manifest");
    char tag[16];

    if (!fx_setup(&fx, b))
        return;
    CHECK_EQ_INT(om_index_manifest_put(fx.ix, "docker.io/library/bench", &d, OCI_MANIFEST, 10,
                                       NULL, 0, 1),
                 OM_OK);
    int64_t t0 = om_now_us();
    for (int i = 0; i < N_TAGS; i++) {
        snprintf(tag, sizeof(tag), "t%d", i);
        om_index_tag_put(fx.ix, "docker.io/library/bench", tag, &d, OCI_MANIFEST, 10, 1);
    }
    int64_t t1 = om_now_us();
    for (int i = 0; i < N_GETS; i++) {
        snprintf(tag, sizeof(tag), "t%d", i % N_TAGS);
        om_index_tag_get(fx.ix, "docker.io/library/bench", tag, &rec);
    }
    int64_t t2 = om_now_us();
    for (int f = 0; f < N_FLUSHES; f++) {
        for (int i = 0; i < N_NOTES; i++) {
            notes[i] = (struct om_pull_note){.digest = d, .t_ms = 1000 + f, .count = 1};
            snprintf(notes[i].repo, sizeof(notes[i].repo), "docker.io/library/bench");
            snprintf(notes[i].tag, sizeof(notes[i].tag), "t%d", i % N_TAGS);
        }
        om_index_note_pulls(fx.ix, notes, N_NOTES);
    }
    int64_t t3 = om_now_us();
    printf("bench %-6s tag_put %6.1f us  tag_get %6.1f us  note_pulls of %d: %7.2f ms (%.2f us a "
           "note)\n",
           backend_name[b], (double)(t1 - t0) / N_TAGS, (double)(t2 - t1) / N_GETS, N_NOTES,
           (double)(t3 - t2) / N_FLUSHES / 1000, (double)(t3 - t2) / N_FLUSHES / N_NOTES);
    fx_teardown(&fx);
}

/* ---- what only Redis does --------------------------------------------------- */

/* Two replicas (two stores, one Redis): what one records, the other reads. */
static void test_index_redis__two_replicas_share_one_index(void)
{
    struct fixture a, b;
    struct om_tag_rec rec;
    om_digest d = dig("shared manifest");

    CHECK(fx_setup(&a, B_REDIS));
    memset(&b, 0, sizeof(b));
    b.b = B_REDIS;
    snprintf(b.root, sizeof(b.root), "/tmp/om-test-ixr-XXXXXX");
    CHECK(mkdtemp(b.root) != NULL);
    b.cfg = redis_cfg(5);
    CHECK(om_store_open(&b.st, b.root) == OM_OK && fx_open(&b) == OM_OK);
    if (a.ix != NULL && b.ix != NULL) {
        CHECK_EQ_INT(om_index_tag_put(a.ix, "docker.io/library/nginx", "1.25", &d, OCI_MANIFEST,
                                      7, 100),
                     OM_OK);
        CHECK_EQ_INT(om_index_tag_get(b.ix, "docker.io/library/nginx", "1.25", &rec), OM_OK);
        CHECK_EQ_STR(rec.digest.str, d.str);
        CHECK_EQ_INT(om_index_tag_checked(b.ix, "docker.io/library/nginx", "1.25", 200), OM_OK);
        CHECK_EQ_INT(om_index_tag_get(a.ix, "docker.io/library/nginx", "1.25", &rec), OM_OK);
        CHECK_EQ_INT(rec.checked_at, 200);
        CHECK_EQ_INT(om_index_negative_put(b.ix, "x/y", "quay.io", 9000), OM_OK);
        CHECK(om_index_negative_get(a.ix, "x/y", "quay.io", 8999));
    }
    fx_teardown(&b);
    fx_teardown(&a);
}

/* A Redis that lost everything, beside a store with content: the open
 * rebuilds it from the store and tags.log. */
static void test_index_redis__an_empty_redis_is_rebuilt_from_the_store_at_open(void)
{
    struct fixture fx;
    struct om_tag_rec rec;
    om_digest d;
    uint64_t size = 0;

    CHECK(fx_setup(&fx, B_REDIS));
    CHECK(!fx.rebuilt);
    d = put(&fx, "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\",\"layers\":[]}");
    om_store_has(fx.st, &d, &size);
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "quay.io/a/b", "v1", &d, OCI_MANIFEST, size, 5), OM_OK);
    om_index_close(fx.ix);
    fx.ix = NULL;
    rs_cmd(&srv, 5, "FLUSHDB", NULL, 0);
    CHECK_EQ_INT(fx_open(&fx), OM_OK);
    CHECK(fx.rebuilt);
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "quay.io/a/b", "v1", &rec), OM_OK);
    CHECK_EQ_STR(rec.digest.str, d.str);
    /* opened again: intact, not rebuilt */
    om_index_close(fx.ix);
    fx.ix = NULL;
    CHECK_EQ_INT(fx_open(&fx), OM_OK);
    CHECK(!fx.rebuilt);
    fx_teardown(&fx);
}

static void test_index_redis__a_schema_it_does_not_know_is_left_alone(void)
{
    struct fixture fx;
    char v[16];

    CHECK(fx_setup(&fx, B_REDIS));
    om_index_close(fx.ix);
    fx.ix = NULL;
    rs_cmd(&srv, 5, "HSET om:meta schema 99", NULL, 0);
    CHECK_EQ_INT(fx_open(&fx), OM_ERR_INVALID);
    CHECK(fx.ix == NULL);
    rs_cmd(&srv, 5, "HGET om:meta schema", v, sizeof(v));
    CHECK_EQ_STR(v, "99");
    fx_teardown(&fx);
}

/* Redis stops: every call answers OM_ERR_UNAVAILABLE at once and health
 * says so; tags.log still gets the tags stored meanwhile.  Redis comes back
 * empty (no persistence): the index notices, rebuilds it from the store and
 * tags.log by itself, and works again. */
static void test_index_redis__an_outage_answers_unavailable_fast_and_heals(void)
{
    struct fixture fx;
    struct om_tag_rec rec;
    struct om_index_health h;
    struct om_pull_note n = {.t_ms = 1, .count = 1};
    struct list l = {0};
    char up[64], canon[OM_NAME_MAX + 1];
    uint64_t size = 0;

    CHECK(fx_setup(&fx, B_REDIS));
    if (fx.ix == NULL)
        return;
    om_digest d = put(&fx, "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\",\"layers\":[]}");
    om_store_has(fx.st, &d, &size);
    n.digest = d;
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "r/x", "t", &d, OCI_MANIFEST, size, 1), OM_OK);
    rs_kill(&srv);
    /* the first call sees it (hiredis reads EOF), the rest fail at once */
    (void)om_index_tag_get(fx.ix, "r/x", "t", &rec);
    int64_t t0 = om_now_us();
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "r/x", "t", &rec), OM_ERR_UNAVAILABLE);
    CHECK_EQ_INT(om_index_tag_put(fx.ix, "r/x", "u", &d, OCI_MANIFEST, size, 2),
                 OM_ERR_UNAVAILABLE);
    CHECK_EQ_INT(om_index_manifest_get(fx.ix, &d, &(struct om_manifest_rec){0}),
                 OM_ERR_UNAVAILABLE);
    CHECK_EQ_INT(om_index_blob_size(fx.ix, &d, &size), OM_ERR_UNAVAILABLE);
    CHECK_EQ_INT(om_index_note_pulls(fx.ix, &n, 1), OM_ERR_UNAVAILABLE);
    CHECK(!n.found);
    CHECK_EQ_INT(om_index_tags_list(fx.ix, "r/x", NULL, -1, collect, &l), OM_ERR_UNAVAILABLE);
    CHECK_EQ_INT(om_index_route_get(fx.ix, "x", up, sizeof(up), canon, sizeof(canon)),
                 OM_ERR_UNAVAILABLE);
    CHECK(!om_index_negative_get(fx.ix, "x", "y", 0));
    CHECK(om_now_us() - t0 < 20000);
    om_index_health(fx.ix, &h);
    CHECK(!h.available);
    CHECK(h.shared);
    CHECK_EQ_INT(h.outages, 1);
    CHECK(h.last_error[0] != '\0');

    CHECK(rs_restart(&srv)); /* an empty Redis (no persistence) */
    int64_t end = om_now_ms() + 5000;
    bool back = false;
    while (!back && om_now_ms() < end) {
        back = om_index_tag_get(fx.ix, "r/x", "u", &rec) == OM_OK;
        if (!back)
            rs_sleep_ms_(10);
    }
    CHECK(back); /* rebuilt by itself: the tag stored during the outage too */
    CHECK_EQ_INT(om_index_tag_get(fx.ix, "r/x", "t", &rec), OM_OK);
    CHECK_EQ_INT(rec.fetched_at, 1);
    om_index_health(fx.ix, &h);
    CHECK(h.available);
    fx_teardown(&fx);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    run_table(B_SQLITE);
    have_srv = rs_start(&srv, false);
    if (!have_srv) {
        printf("redis-server not found: the Redis half is skipped\n");
        return test_done();
    }
    run_table(B_REDIS);
    if (getenv("OM_INDEX_BENCH") != NULL) {
        bench_backend(B_SQLITE);
        bench_backend(B_REDIS);
    }
    RUN(test_index_redis__admin_views_answer_as_on_sqlite);
    RUN(test_index_redis__two_replicas_share_one_index);
    RUN(test_index_redis__an_empty_redis_is_rebuilt_from_the_store_at_open);
    RUN(test_index_redis__a_schema_it_does_not_know_is_left_alone);
    RUN(test_index_redis__an_outage_answers_unavailable_fast_and_heals);
    rs_stop(&srv);
    return test_done();
}
