/* Unit tests for mcache.c: round trips of the three kinds, LRU eviction
 * under the byte budget, replacement, and copies that never alias; the
 * fixed table of blob sizes. */
#include <stdlib.h>
#include <string.h>

#include "cache/mcache.h"
#include "test.h"

static om_digest dg(int i)
{
    om_digest d;
    snprintf(d.str, sizeof(d.str), "sha256:%064d", i);
    return d;
}

static void test_mcache__manifest_round_trip_is_a_copy(void)
{
    struct om_mcache *mc = NULL;
    CHECK_EQ_INT(om_mcache_new(&mc, 1 << 20), OM_OK);
    om_digest d = dg(1);
    char body[] = "{\"schemaVersion\":2}";
    om_mcache_manifest_put(mc, &d, body, strlen(body), "application/x");
    body[0] = 'X';
    char *buf = NULL, mt[64];
    size_t len = 0;
    CHECK(om_mcache_manifest_get(mc, &d, &buf, &len, mt, sizeof(mt)));
    CHECK_EQ_INT(len, strlen(body));
    CHECK(buf != NULL && buf[0] == '{');
    CHECK_EQ_STR(mt, "application/x");
    free(buf);
    om_digest other = dg(2);
    CHECK(!om_mcache_manifest_get(mc, &other, &buf, &len, mt, sizeof(mt)));
    CHECK(!om_mcache_manifest_get(mc, &d, &buf, &len, mt, 5)); /* media type does not fit */
    om_mcache_free(mc);
}

static void test_mcache__least_recently_used_goes_first(void)
{
    struct om_mcache *mc = NULL;
    CHECK_EQ_INT(om_mcache_new(&mc, 64 * 1024), OM_OK);
    char blob[3000];
    memset(blob, 'a', sizeof(blob));
    for (int i = 0; i < 100; i++) {
        om_digest d = dg(i);
        om_mcache_manifest_put(mc, &d, blob, sizeof(blob), "t");
        om_digest first = dg(0);
        char *b = NULL, mt[8];
        size_t l;
        /* Keep touching entry 0: it must survive while others are evicted. */
        if (om_mcache_manifest_get(mc, &first, &b, &l, mt, sizeof(mt)))
            free(b);
    }
    char *b = NULL, mt[8];
    size_t l;
    om_digest d0 = dg(0), d1 = dg(1), d99 = dg(99);
    CHECK(om_mcache_manifest_get(mc, &d0, &b, &l, mt, sizeof(mt)));
    free(b);
    CHECK(!om_mcache_manifest_get(mc, &d1, &b, &l, mt, sizeof(mt)));
    CHECK(om_mcache_manifest_get(mc, &d99, &b, &l, mt, sizeof(mt)));
    free(b);
    /* An entry larger than an eighth of the budget is not cached at all. */
    char *big = calloc(1, 16 * 1024);
    om_digest db = dg(1000);
    om_mcache_manifest_put(mc, &db, big, 16 * 1024, "t");
    CHECK(!om_mcache_manifest_get(mc, &db, &b, &l, mt, sizeof(mt)));
    free(big);
    om_mcache_free(mc);
}

static void test_mcache__tags_and_routes_round_trip_and_replace(void)
{
    struct om_mcache *mc = NULL;
    CHECK_EQ_INT(om_mcache_new(&mc, 1 << 20), OM_OK);
    struct om_tag_rec a = {.digest = dg(7), .size = 10, .fetched_at = 1, .checked_at = 2};
    snprintf(a.media_type, sizeof(a.media_type), "m");
    struct om_tag_rec out;
    CHECK(!om_mcache_tag_get(mc, "docker.io/library/x", "1", &out));
    om_mcache_tag_put(mc, "docker.io/library/x", "1", &a);
    a.checked_at = 99;
    om_mcache_tag_put(mc, "docker.io/library/x", "1", &a);
    CHECK(om_mcache_tag_get(mc, "docker.io/library/x", "1", &out));
    CHECK_EQ_INT(out.checked_at, 99);
    CHECK(!om_mcache_tag_get(mc, "docker.io/library/x", "2", &out));
    CHECK(!om_mcache_tag_get(mc, "docker.io/library/x1", "", &out)); /* keys do not run together */
    om_mcache_tag_drop(mc, "docker.io/library/x", "1");
    CHECK(!om_mcache_tag_get(mc, "docker.io/library/x", "1", &out));

    char up[64], canon[256];
    CHECK(!om_mcache_route_get(mc, "nginx", up, sizeof(up), canon, sizeof(canon)));
    om_mcache_route_put(mc, "nginx", "docker.io", "docker.io/library/nginx");
    CHECK(om_mcache_route_get(mc, "nginx", up, sizeof(up), canon, sizeof(canon)));
    CHECK_EQ_STR(up, "docker.io");
    CHECK_EQ_STR(canon, "docker.io/library/nginx");
    CHECK(!om_mcache_route_get(mc, "nginx", up, 4, canon, sizeof(canon)));
    om_mcache_free(mc);
}

static void test_mcache__clear_empties_every_kind_and_bytes_say_so(void)
{
    struct om_mcache *mc = NULL;
    CHECK_EQ_INT(om_mcache_new(&mc, 1 << 20), OM_OK);
    CHECK_EQ_INT(om_mcache_bytes(mc), 0);
    om_digest d = dg(7);
    om_mcache_manifest_put(mc, &d, "{}", 2, "application/x");
    struct om_tag_rec rec = {0};
    om_mcache_tag_put(mc, "library/alpine", "3.19", &rec);
    om_mcache_route_put(mc, "alpine", "docker.io", "docker.io/library/alpine");
    CHECK(om_mcache_bytes(mc) > 0);
    om_mcache_clear(mc);
    CHECK_EQ_INT(om_mcache_bytes(mc), 0);
    char *buf = NULL, mt[64], up[64], can[256];
    size_t len = 0;
    CHECK(!om_mcache_manifest_get(mc, &d, &buf, &len, mt, sizeof(mt)));
    CHECK(!om_mcache_tag_get(mc, "library/alpine", "3.19", &rec));
    CHECK(!om_mcache_route_get(mc, "alpine", up, sizeof(up), can, sizeof(can)));
    /* and it works on after */
    om_mcache_manifest_put(mc, &d, "{}", 2, "application/x");
    CHECK(om_mcache_manifest_get(mc, &d, &buf, &len, mt, sizeof(mt)));
    free(buf);
    om_mcache_clear(NULL);
    CHECK_EQ_INT(om_mcache_bytes(NULL), 0);
    om_mcache_free(mc);
}

/* A digest whose first three bytes (which pick the set) are fixed. */
static om_digest in_set(int i)
{
    om_digest d;
    snprintf(d.str, sizeof(d.str), "sha256:abcdef%058d", i);
    return d;
}

static void test_mcache__blob_sizes_round_trip_and_the_oldest_of_a_set_goes(void)
{
    struct om_mcache *mc = NULL;
    uint64_t v = 0;
    CHECK_EQ_INT(om_mcache_new(&mc, 1 << 20), OM_OK);
    om_digest a = dg(1), b = dg(2);
    CHECK(!om_mcache_size_get(mc, &a, &v));
    om_mcache_size_put(mc, &a, 33559063);
    om_mcache_size_put(mc, &b, OM_MCACHE_SIZE_UNKNOWN); /* "the index has none" */
    CHECK(om_mcache_size_get(mc, &a, &v));
    CHECK_EQ_INT(v, 33559063);
    CHECK(om_mcache_size_get(mc, &b, &v));
    CHECK(v == OM_MCACHE_SIZE_UNKNOWN);
    om_mcache_size_put(mc, &a, 7); /* replaced in place */
    CHECK(om_mcache_size_get(mc, &a, &v));
    CHECK_EQ_INT(v, 7);
    /* Not a digest: never stored, never found. */
    om_digest bad;
    memset(&bad, 0, sizeof(bad));
    snprintf(bad.str, sizeof(bad.str), "sha256:XYZ");
    om_mcache_size_put(mc, &bad, 1);
    CHECK(!om_mcache_size_get(mc, &bad, &v));
    /* Sizes are facts of digests: a clear (GC evicted images) keeps them. */
    om_mcache_clear(mc);
    CHECK(om_mcache_size_get(mc, &a, &v));
    /* Five digests of one 4-way set: the least recently used one goes. */
    for (int i = 0; i < 4; i++) {
        om_digest d = in_set(i);
        om_mcache_size_put(mc, &d, (uint64_t)i + 100);
    }
    om_digest d0 = in_set(0), d1 = in_set(1), d4 = in_set(4);
    CHECK(om_mcache_size_get(mc, &d0, &v)); /* touched: now the newest */
    om_mcache_size_put(mc, &d4, 104);
    CHECK(om_mcache_size_get(mc, &d0, &v));
    CHECK_EQ_INT(v, 100);
    CHECK(!om_mcache_size_get(mc, &d1, &v));
    CHECK(om_mcache_size_get(mc, &d4, &v));
    CHECK_EQ_INT(v, 104);
    CHECK(!om_mcache_size_get(NULL, &a, &v));
    om_mcache_size_put(NULL, &a, 1);
    om_mcache_free(mc);
}

static void test_mcache__membership_is_exact_per_repository_and_cleared_with_the_rest(void)
{
    struct om_mcache *mc = NULL;
    CHECK_EQ_INT(om_mcache_new(&mc, 1 << 20), OM_OK);
    om_digest a = dg(1), b = dg(2);
    const char *nginx = "docker.io/library/nginx";
    CHECK(!om_mcache_member_get(mc, nginx, &a));
    om_mcache_member_put(mc, nginx, &a);
    CHECK(om_mcache_member_get(mc, nginx, &a));
    CHECK(!om_mcache_member_get(mc, nginx, &b));                     /* another digest */
    CHECK(!om_mcache_member_get(mc, "docker.io/library/busybox", &a)); /* another name */
    CHECK(!om_mcache_member_get(mc, "docker.io/library/ngin", &a));   /* a prefix of it */
    CHECK(!om_mcache_member_get(mc, "docker.io/library/nginx2", &a)); /* longer */
    CHECK(!om_mcache_member_get(mc, "", &a));
    om_mcache_member_put(mc, nginx, &a); /* again: one entry, still there */
    CHECK(om_mcache_member_get(mc, nginx, &a));
    /* One digest in many repositories: all remembered (they spread over sets). */
    char name[64];
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof(name), "quay.io/team/r%d", i);
        om_mcache_member_put(mc, name, &b);
    }
    int held = 0;
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof(name), "quay.io/team/r%d", i);
        held += om_mcache_member_get(mc, name, &b);
    }
    CHECK(held >= 60);
    /* A name too long to keep is simply not remembered. */
    char longname[OM_MCACHE_MEMBER_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    om_mcache_member_put(mc, longname, &a);
    CHECK(!om_mcache_member_get(mc, longname, &a));
    longname[OM_MCACHE_MEMBER_NAME_MAX] = '\0'; /* exactly the limit: kept */
    om_mcache_member_put(mc, longname, &a);
    CHECK(om_mcache_member_get(mc, longname, &a));
    /* Not a digest: never stored. */
    om_digest bad;
    memset(&bad, 0, sizeof(bad));
    snprintf(bad.str, sizeof(bad.str), "sha256:XYZ");
    om_mcache_member_put(mc, nginx, &bad);
    CHECK(!om_mcache_member_get(mc, nginx, &bad));
    /* GC dropped content: every membership is asked again. */
    om_mcache_clear(mc);
    CHECK(!om_mcache_member_get(mc, nginx, &a));
    CHECK(!om_mcache_member_get(NULL, nginx, &a));
    om_mcache_member_put(NULL, nginx, &a);
    om_mcache_free(mc);
}

int main(void)
{
    RUN(test_mcache__manifest_round_trip_is_a_copy);
    RUN(test_mcache__least_recently_used_goes_first);
    RUN(test_mcache__tags_and_routes_round_trip_and_replace);
    RUN(test_mcache__clear_empties_every_kind_and_bytes_say_so);
    RUN(test_mcache__blob_sizes_round_trip_and_the_oldest_of_a_set_goes);
    RUN(test_mcache__membership_is_exact_per_repository_and_cleared_with_the_rest);
    return test_done();
}
