/* test_index_admin.c — the admin view's index queries (index_admin.c) on a
 * real index in a temp directory, filled through index.h as the pull path
 * fills it. */
#include "test.h"

#include "cache/index.h"
#include "cache/index_admin.h"
#include "cache/store.h"
#include "core/hash.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_INDEX "application/vnd.oci.image.index.v1+json"

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

struct fixture {
    char root[64];
    char db[128];
    struct om_store *st;
    struct om_index *ix;
    struct om_index_admin *ia;
};

static bool fx_setup(struct fixture *fx)
{
    snprintf(fx->root, sizeof(fx->root), "/tmp/om-test-index-admin-XXXXXX");
    if (mkdtemp(fx->root) == NULL)
        return false;
    snprintf(fx->db, sizeof(fx->db), "%s/index.db", fx->root);
    fx->st = NULL;
    fx->ix = NULL;
    fx->ia = NULL;
    return om_store_open(&fx->st, fx->root) == OM_OK &&
           om_index_open(&fx->ix, fx->st, NULL) == OM_OK &&
           om_index_admin_open(&fx->ia, fx->db) == OM_OK;
}

static void fx_teardown(struct fixture *fx)
{
    om_index_admin_close(fx->ia);
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

/* A repository with an image: manifest (size msize) + 2 blobs (bsize
 * each, contents named after the repo unless `shared`), tagged `tags`. */
static void add_image(struct fixture *fx, const char *repo, const char *const *tags,
                      size_t n_tags, uint64_t msize, uint64_t bsize, const char *content)
{
    char buf[512];
    om_digest m, b[2];
    snprintf(buf, sizeof(buf), "manifest %s", content);
    m = dig(buf);
    for (int i = 0; i < 2; i++) {
        snprintf(buf, sizeof(buf), "blob %d %s", i, content);
        b[i] = dig(buf);
        CHECK_EQ_INT(om_index_blob_put(fx->ix, repo, &b[i], bsize, 1000), OM_OK);
    }
    CHECK_EQ_INT(om_index_manifest_put(fx->ix, repo, &m, OCI_MANIFEST, msize, b, 2, 1000), OM_OK);
    for (size_t i = 0; i < n_tags; i++)
        CHECK_EQ_INT(om_index_tag_put(fx->ix, repo, tags[i], &m, OCI_MANIFEST, msize,
                                      1000 + (int64_t)i),
                     OM_OK);
}

static void fill_standard(struct fixture *fx)
{
    static const char *const alpine_tags[] = {"3.19", "latest", "3.18"};
    static const char *const one[] = {"1"};
    add_image(fx, "docker.io/library/alpine", alpine_tags, 3, 500, 1000, "alpine");
    add_image(fx, "docker.io/team/app", one, 1, 300, 10, "app");
    add_image(fx, "quay.io/coreos/etcd", one, 1, 200, 7, "etcd");
    /* Names that share a prefix with an upstream but are not under it. */
    add_image(fx, "docker.iox/a", one, 1, 1, 1, "x");
    add_image(fx, "docker.io-mirror/b", one, 1, 1, 1, "y");
    /* The same content in a second repository counts there too. */
    add_image(fx, "registry.k8s.io/alpine-copy", one, 1, 500, 1000, "alpine");
}

static size_t run_repos(struct fixture *fx, const char *q, const char *up, om_repo_sort sort,
                        uint64_t offset, size_t limit, struct om_repo_row *rows, uint64_t *total)
{
    struct om_repo_query rq = {.q = q, .upstream = up, .sort = sort, .offset = offset,
                               .limit = limit};
    size_t n = 0;
    CHECK_EQ_INT(om_index_admin_repos(fx->ia, &rq, rows, &n, total), OM_OK);
    return n;
}

static void test_index_admin__repositories_filter_by_upstream_and_substring(void)
{
    struct fixture fx;
    struct om_repo_row rows[10];
    uint64_t total = 0;
    static const struct {
        const char *q, *up;
        size_t n;
        const char *first;
    } cases[] = {
        {NULL, NULL, 6, "docker.io-mirror/b"},
        {"", "", 6, "docker.io-mirror/b"},
        {NULL, "docker.io", 2, "docker.io/library/alpine"},
        {NULL, "quay.io", 1, "quay.io/coreos/etcd"},
        {NULL, "gcr.io", 0, NULL},
        {"ALP", NULL, 2, "docker.io/library/alpine"},   /* case-insensitive */
        {"alp", "registry.k8s.io", 1, "registry.k8s.io/alpine-copy"},
        {"etcd", "docker.io", 0, NULL},
        {"/", NULL, 6, "docker.io-mirror/b"},
        {"%", NULL, 0, NULL},                           /* no LIKE wildcards */
        {"_", NULL, 0, NULL},
    };
    CHECK(fx_setup(&fx));
    fill_standard(&fx);
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        size_t n = run_repos(&fx, cases[i].q, cases[i].up, OM_REPO_SORT_NAME, 0, 10, rows, &total);
        CHECK_EQ_INT(n, cases[i].n);
        CHECK_EQ_INT(total, cases[i].n);
        if (cases[i].first != NULL && n > 0)
            CHECK_EQ_STR(rows[0].name, cases[i].first);
    }
    fx_teardown(&fx);
}

static void test_index_admin__repository_figures_count_tags_size_and_pulls(void)
{
    struct fixture fx;
    struct om_repo_row rows[10];
    uint64_t total = 0;
    CHECK(fx_setup(&fx));
    fill_standard(&fx);
    om_digest m = dig("manifest alpine");
    CHECK_EQ_INT(om_index_note_pull(fx.ix, "docker.io/library/alpine", "3.19", &m, 5000), OM_OK);
    CHECK_EQ_INT(om_index_note_pull(fx.ix, "docker.io/library/alpine", "latest", &m, 7000), OM_OK);
    CHECK_EQ_INT(om_index_note_pull(fx.ix, "docker.io/library/alpine", "latest", &m, 6000), OM_OK);
    /* A pull by digest (no tag) is not a tag pull. */
    CHECK_EQ_INT(om_index_note_pull(fx.ix, "docker.io/library/alpine", NULL, &m, 9000), OM_OK);

    size_t n = run_repos(&fx, "library/alpine", NULL, OM_REPO_SORT_NAME, 0, 10, rows, &total);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(rows[0].name, "docker.io/library/alpine");
    CHECK_EQ_INT(rows[0].tags, 3);
    CHECK_EQ_INT(rows[0].size_bytes, 500 + 2 * 1000);
    CHECK_EQ_INT(rows[0].pull_count, 3);
    /* The latest time wins, whatever order notes arrive in (pull notes are
     * batched in memory and may be flushed out of order). */
    CHECK_EQ_INT(rows[0].last_pulled, 7000);
    n = run_repos(&fx, "etcd", NULL, OM_REPO_SORT_NAME, 0, 10, rows, &total);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(rows[0].tags, 1);
    CHECK_EQ_INT(rows[0].size_bytes, 200 + 2 * 7);
    CHECK_EQ_INT(rows[0].pull_count, 0);
    CHECK_EQ_INT(rows[0].last_pulled, 0);

    /* Sorts: by pulls, by last pull, by size (ties by name). */
    n = run_repos(&fx, NULL, NULL, OM_REPO_SORT_PULLS, 0, 10, rows, &total);
    CHECK_EQ_INT(n, 6);
    CHECK_EQ_STR(rows[0].name, "docker.io/library/alpine");
    CHECK_EQ_STR(rows[1].name, "docker.io-mirror/b");
    n = run_repos(&fx, NULL, NULL, OM_REPO_SORT_PULLED, 0, 10, rows, &total);
    CHECK_EQ_STR(rows[0].name, "docker.io/library/alpine");
    n = run_repos(&fx, NULL, NULL, OM_REPO_SORT_SIZE, 0, 10, rows, &total);
    CHECK_EQ_STR(rows[0].name, "docker.io/library/alpine");
    CHECK_EQ_STR(rows[1].name, "registry.k8s.io/alpine-copy");
    CHECK_EQ_STR(rows[2].name, "docker.io/team/app");
    fx_teardown(&fx);
}

static void test_index_admin__repository_pages_partition_the_list(void)
{
    struct fixture fx;
    struct om_repo_row rows[4];
    uint64_t total = 0;
    CHECK(fx_setup(&fx));
    fill_standard(&fx);
    static const struct { uint64_t offset; size_t limit, n; const char *first; } pages[] = {
        {0, 4, 4, "docker.io-mirror/b"},
        {4, 4, 2, "quay.io/coreos/etcd"},
        {6, 4, 0, NULL},
        {1000, 4, 0, NULL},
        {2, 1, 1, "docker.io/team/app"},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(pages); i++) {
        size_t n = run_repos(&fx, NULL, NULL, OM_REPO_SORT_NAME, pages[i].offset,
                             pages[i].limit, rows, &total);
        CHECK_EQ_INT(n, pages[i].n);
        CHECK_EQ_INT(total, 6);
        if (pages[i].first != NULL && n > 0)
            CHECK_EQ_STR(rows[0].name, pages[i].first);
    }
    /* Bad queries. */
    struct om_repo_query bad[] = {
        {.limit = 0},
        {.limit = OM_INDEX_ADMIN_PAGE_MAX + 1},
        {.limit = 1, .offset = (uint64_t)INT64_MAX + 1},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++) {
        size_t n = 9;
        CHECK_EQ_INT(om_index_admin_repos(fx.ia, &bad[i], rows, &n, &total), OM_ERR_INVALID);
        CHECK_EQ_INT(n, 0);
    }
    char longq[OM_INDEX_ADMIN_QUERY_MAX + 2];
    memset(longq, 'a', sizeof(longq) - 1);
    longq[sizeof(longq) - 1] = '\0';
    struct om_repo_query lq = {.q = longq, .limit = 1};
    size_t n = 0;
    CHECK_EQ_INT(om_index_admin_repos(fx.ia, &lq, rows, &n, &total), OM_ERR_INVALID);
    fx_teardown(&fx);
}

static void test_index_admin__tags_of_a_repository_with_records_and_paging(void)
{
    struct fixture fx;
    struct om_tag_row rows[5];
    size_t n = 0;
    uint64_t total = 0;
    CHECK(fx_setup(&fx));
    fill_standard(&fx);
    om_digest m = dig("manifest alpine");
    CHECK_EQ_INT(om_index_note_pull(fx.ix, "docker.io/library/alpine", "latest", &m, 8000), OM_OK);
    CHECK_EQ_INT(om_index_tag_checked(fx.ix, "docker.io/library/alpine", "3.18", 9000), OM_OK);

    CHECK_EQ_INT(om_index_admin_tags(fx.ia, "docker.io/library/alpine", OM_TAG_SORT_NAME, 0, 5,
                                     rows, &n, &total),
                 OM_OK);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(total, 3);
    CHECK_EQ_STR(rows[0].tag, "3.18");
    CHECK_EQ_STR(rows[1].tag, "3.19");
    CHECK_EQ_STR(rows[2].tag, "latest");
    CHECK_EQ_STR(rows[2].digest.str, m.str);
    CHECK_EQ_STR(rows[2].media_type, OCI_MANIFEST);
    CHECK_EQ_INT(rows[2].size, 500);
    CHECK_EQ_INT(rows[2].last_pulled, 8000);
    CHECK_EQ_INT(rows[2].pull_count, 1);
    CHECK_EQ_INT(rows[0].checked_at, 9000);
    CHECK_EQ_INT(rows[0].fetched_at, 1002);
    CHECK_EQ_INT(rows[1].last_pulled, 0);

    /* Newest fetched first; newest pulled first. */
    CHECK_EQ_INT(om_index_admin_tags(fx.ia, "docker.io/library/alpine", OM_TAG_SORT_FETCHED, 0, 5,
                                     rows, &n, &total),
                 OM_OK);
    CHECK_EQ_STR(rows[0].tag, "3.18");
    CHECK_EQ_STR(rows[2].tag, "3.19");
    CHECK_EQ_INT(om_index_admin_tags(fx.ia, "docker.io/library/alpine", OM_TAG_SORT_PULLED, 0, 5,
                                     rows, &n, &total),
                 OM_OK);
    CHECK_EQ_STR(rows[0].tag, "latest");

    /* Second page of one. */
    CHECK_EQ_INT(om_index_admin_tags(fx.ia, "docker.io/library/alpine", OM_TAG_SORT_NAME, 1, 1,
                                     rows, &n, &total),
                 OM_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(total, 3);
    CHECK_EQ_STR(rows[0].tag, "3.19");

    /* Unknown repository; a prefix of a known one is not known. */
    CHECK_EQ_INT(om_index_admin_tags(fx.ia, "docker.io/library/nope", OM_TAG_SORT_NAME, 0, 5,
                                     rows, &n, &total),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_admin_tags(fx.ia, "docker.io/library", OM_TAG_SORT_NAME, 0, 5, rows, &n,
                                     &total),
                 OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_index_admin_tags(fx.ia, "", OM_TAG_SORT_NAME, 0, 5, rows, &n, &total),
                 OM_ERR_INVALID);
    CHECK_EQ_INT(om_index_admin_tags(fx.ia, "docker.io/team/app", OM_TAG_SORT_NAME, 0, 0, rows,
                                     &n, &total),
                 OM_ERR_INVALID);
    fx_teardown(&fx);
}

static void test_index_admin__digest_tags_lists_only_that_repository(void)
{
    struct fixture fx;
    char tags[4][OM_TAG_MAX + 1];
    size_t n = 0;
    CHECK(fx_setup(&fx));
    fill_standard(&fx);
    om_digest m = dig("manifest alpine"), other = dig("nothing");
    CHECK_EQ_INT(om_index_admin_digest_tags(fx.ia, "docker.io/library/alpine", &m, tags, 4, &n),
                 OM_OK);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(tags[0], "3.18");
    CHECK_EQ_STR(tags[2], "latest");
    CHECK_EQ_INT(om_index_admin_digest_tags(fx.ia, "docker.io/library/alpine", &m, tags, 2, &n),
                 OM_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(om_index_admin_digest_tags(fx.ia, "registry.k8s.io/alpine-copy", &m, tags, 4, &n),
                 OM_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(tags[0], "1");
    CHECK_EQ_INT(om_index_admin_digest_tags(fx.ia, "docker.io/library/alpine", &other, tags, 4, &n),
                 OM_OK);
    CHECK_EQ_INT(n, 0);
    fx_teardown(&fx);
}

/* Writes through the pull path's connection are seen by the next call. */
static void test_index_admin__sees_writes_made_after_it_opened(void)
{
    struct fixture fx;
    struct om_repo_row rows[2];
    uint64_t total = 0;
    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(run_repos(&fx, NULL, NULL, OM_REPO_SORT_NAME, 0, 2, rows, &total), 0);
    static const char *const one[] = {"1"};
    add_image(&fx, "quay.io/new/one", one, 1, 10, 10, "new");
    CHECK_EQ_INT(run_repos(&fx, NULL, NULL, OM_REPO_SORT_NAME, 0, 2, rows, &total), 1);
    CHECK_EQ_INT(total, 1);
    fx_teardown(&fx);
}

static void test_index_admin__counts_match_what_was_recorded(void)
{
    struct fixture fx;
    struct om_index_admin_counts c;
    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_index_admin_counts(fx.ia, &c), OM_OK);
    CHECK_EQ_INT(c.repos + c.tags + c.manifests + c.blobs + c.blob_bytes, 0);
    fill_standard(&fx);
    CHECK_EQ_INT(om_index_admin_counts(fx.ia, &c), OM_OK);
    CHECK_EQ_INT(c.repos, 6);
    CHECK_EQ_INT(c.tags, 8);
    CHECK_EQ_INT(c.manifests, 5);           /* alpine's content is shared by two repos */
    CHECK_EQ_INT(c.blobs, 10);
    CHECK_EQ_INT(c.manifest_bytes, 500 + 300 + 200 + 1 + 1);
    CHECK_EQ_INT(c.blob_bytes, 2 * (1000 + 10 + 7 + 1 + 1));
    fx_teardown(&fx);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 10k repositories: paging, search and filters give the right answers (the
 * times are printed for the record, never asserted). */
static void test_index_admin__ten_thousand_repositories_page_and_search(void)
{
    struct fixture fx;
    struct om_repo_row *rows = calloc(OM_INDEX_ADMIN_PAGE_MAX, sizeof(*rows));
    uint64_t total = 0;
    char repo[64];
    CHECK(rows != NULL && fx_setup(&fx));
    for (int i = 0; i < 10000; i++) {
        om_digest d;
        snprintf(repo, sizeof(repo), "%s/team%02d/image%05d", i % 2 ? "docker.io" : "quay.io",
                 i % 100, i);
        d = dig(repo);
        CHECK_EQ_INT(om_index_tag_put(fx.ix, repo, "v1", &d, OCI_INDEX, (uint64_t)i, 1000), OM_OK);
    }
    double t0 = now_s();
    size_t n = run_repos(&fx, NULL, NULL, OM_REPO_SORT_NAME, 9950, 50, rows, &total);
    double t1 = now_s();
    CHECK_EQ_INT(n, 50);
    CHECK_EQ_INT(total, 10000);
    CHECK_EQ_STR(rows[49].name, "quay.io/team98/image09998");
    n = run_repos(&fx, "image0123", NULL, OM_REPO_SORT_NAME, 0, 50, rows, &total);
    double t2 = now_s();
    CHECK_EQ_INT(total, 10); /* image01230..image01239 */
    CHECK_EQ_INT(n, 10);
    n = run_repos(&fx, "team07", "docker.io", OM_REPO_SORT_NAME, 0, 500, rows, &total);
    double t3 = now_s();
    CHECK_EQ_INT(total, 100);
    CHECK_EQ_INT(n, 100);
    n = run_repos(&fx, NULL, NULL, OM_REPO_SORT_PULLS, 0, 50, rows, &total);
    double t4 = now_s();
    CHECK_EQ_INT(n, 50);
    n = run_repos(&fx, NULL, NULL, OM_REPO_SORT_SIZE, 0, 50, rows, &total);
    double t5 = now_s();
    CHECK_EQ_INT(n, 50);
    fprintf(stderr, "10k repositories: last page %.1f ms, search %.1f ms, "
                    "upstream+search %.1f ms, sort by pulls %.1f ms, by size %.1f ms\n",
            (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3, (t5 - t4) * 1e3);
    fx_teardown(&fx);
    free(rows);
}

int main(void)
{
    RUN(test_index_admin__repositories_filter_by_upstream_and_substring);
    RUN(test_index_admin__repository_figures_count_tags_size_and_pulls);
    RUN(test_index_admin__repository_pages_partition_the_list);
    RUN(test_index_admin__tags_of_a_repository_with_records_and_paging);
    RUN(test_index_admin__digest_tags_lists_only_that_repository);
    RUN(test_index_admin__sees_writes_made_after_it_opened);
    RUN(test_index_admin__counts_match_what_was_recorded);
    RUN(test_index_admin__ten_thousand_repositories_page_and_search);
    return test_done();
}
