/* Unit tests for v2/taglist.c: building (sorting, de-duplicating, the
 * max_tags limit, strings that are not tags), finding where a page starts,
 * reference counts, and the cache (copies with their own references, LRU
 * eviction by bytes and by entries, replacement, refusals, an entry too big
 * to keep). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "v2/taglist.h"

static struct om_taglist *build(const char *const *tags, size_t n, size_t max)
{
    struct om_taglist_builder b;
    struct om_taglist *l = NULL;
    om_taglist_builder_init(&b, max);
    for (size_t i = 0; i < n; i++)
        om_taglist_builder_add(&b, tags[i], strlen(tags[i]));
    if (om_taglist_build(&l, &b) != OM_OK)
        l = NULL;
    om_taglist_builder_clear(&b);
    return l;
}

static void test_taglist__is_sorted_in_byte_order_without_duplicates(void)
{
    static const char *const in[] = {"latest", "3.9", "3.10", "3.1", "latest", "V2", "3.9", "_x"};
    struct om_taglist *l = build(in, OM_ARRAY_LEN(in), 100);
    CHECK(l != NULL);
    if (l == NULL)
        return;
    static const char *const want[] = {"3.1", "3.10", "3.9", "V2", "_x", "latest"};
    CHECK_EQ_INT(om_taglist_count(l), OM_ARRAY_LEN(want));
    for (size_t i = 0; i < OM_ARRAY_LEN(want) && i < om_taglist_count(l); i++)
        CHECK_EQ_STR(om_taglist_at(l, i), want[i]);
    CHECK(om_taglist_bytes(l) > 0);
    om_taglist_unref(l);
}

static void test_taglist__after_finds_the_first_tag_past_last(void)
{
    static const char *const in[] = {"a", "c", "e", "g"};
    struct om_taglist *l = build(in, 4, 100);
    CHECK(l != NULL);
    if (l == NULL)
        return;
    static const struct {
        const char *last;
        size_t want;
    } cases[] = {{NULL, 0}, {"", 0}, {"0", 0}, {"a", 1}, {"b", 1}, {"c", 2},
                 {"d", 2},  {"f", 3}, {"g", 4}, {"z", 4}, {"aa", 1}};
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        size_t got = om_taglist_after(l, cases[i].last);
        CHECK_EQ_INT(got, cases[i].want);
        if (got != cases[i].want)
            fprintf(stderr, "  last=%s\n", cases[i].last ? cases[i].last : "(null)");
    }
    om_taglist_unref(l);
    struct om_taglist *empty = build(NULL, 0, 100);
    CHECK(empty != NULL);
    if (empty != NULL) {
        CHECK_EQ_INT(om_taglist_count(empty), 0);
        CHECK_EQ_INT(om_taglist_after(empty, "x"), 0);
        om_taglist_unref(empty);
    }
}

static void test_taglist__strings_that_are_not_tags_are_skipped_and_counted(void)
{
    struct om_taglist_builder b;
    om_taglist_builder_init(&b, 100);
    char long_tag[OM_TAG_MAX + 2];
    memset(long_tag, 'a', sizeof(long_tag) - 1);
    long_tag[sizeof(long_tag) - 1] = '\0';
    static const char *const bad[] = {"", "-rm", ".x", "a/b", "a b", "a\nb", "ä"};
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++)
        CHECK_EQ_INT(om_taglist_builder_add(&b, bad[i], strlen(bad[i])), OM_ERR_INVALID);
    CHECK_EQ_INT(om_taglist_builder_add(&b, long_tag, OM_TAG_MAX + 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_taglist_builder_add(&b, long_tag, OM_TAG_MAX), OM_OK);
    CHECK_EQ_INT(om_taglist_builder_add(&b, "a\0b", 3), OM_ERR_INVALID); /* an embedded NUL */
    CHECK_EQ_INT(om_taglist_builder_add(&b, "v1.0-rc_1", 9), OM_OK);
    CHECK_EQ_INT(b.skipped, OM_ARRAY_LEN(bad) + 2);
    CHECK_EQ_INT(b.n, 2);
    om_taglist_builder_clear(&b);
    CHECK_EQ_INT(b.n, 0);
    CHECK_EQ_INT(b.max_tags, 100);
}

static void test_taglist__the_builder_holds_at_most_max_tags(void)
{
    struct om_taglist_builder b;
    om_taglist_builder_init(&b, 1000);
    char t[16];
    int err = OM_OK;
    size_t added = 0;
    for (int i = 0; i < 5000 && err == OM_OK; i++) {
        snprintf(t, sizeof(t), "t%d", i);
        err = om_taglist_builder_add(&b, t, strlen(t));
        if (err == OM_OK)
            added++;
    }
    CHECK_EQ_INT(err, OM_ERR_TOOBIG);
    CHECK_EQ_INT(added, 1000);
    struct om_taglist *l = NULL;
    CHECK_EQ_INT(om_taglist_build(&l, &b), OM_OK);
    CHECK(b.buf == NULL && b.n == 0); /* moved into the list */
    if (l != NULL) {
        CHECK_EQ_INT(om_taglist_count(l), 1000);
        CHECK_EQ_STR(om_taglist_at(l, 0), "t0");
        CHECK_EQ_STR(om_taglist_at(l, 999), "t999");
        /* compact: a few bytes beyond the strings themselves */
        CHECK(om_taglist_bytes(l) < 1000 * (5 + 1 + 4) + 256);
    }
    om_taglist_unref(l);
    om_taglist_builder_clear(&b);
}

static void test_taglist__lives_until_its_last_reference_goes(void)
{
    static const char *const in[] = {"b", "a"};
    struct om_taglist *l = build(in, 2, 10);
    CHECK(l != NULL);
    if (l == NULL)
        return;
    CHECK(om_taglist_ref(l) == l);
    om_taglist_unref(l);
    CHECK_EQ_STR(om_taglist_at(l, 0), "a"); /* still alive (ASan would tell) */
    om_taglist_unref(l);
    CHECK(om_taglist_ref(NULL) == NULL);
    om_taglist_unref(NULL);
}

static struct om_tagcache_val val_of(struct om_taglist *l, int64_t t)
{
    struct om_tagcache_val v = {.list = l, .fetched_ms = t};
    snprintf(v.canonical, sizeof(v.canonical), "quay.io/team/app");
    snprintf(v.upstream, sizeof(v.upstream), "quay.io");
    return v;
}

static void test_tagcache__get_returns_a_copy_with_its_own_reference(void)
{
    struct om_tagcache *tc = NULL;
    CHECK_EQ_INT(om_tagcache_new(&tc, 1 << 20, 100), OM_OK);
    static const char *const in[] = {"v1", "v2"};
    struct om_taglist *l = build(in, 2, 10);
    struct om_tagcache_val v = val_of(l, 1234);
    CHECK(om_tagcache_put(tc, "team/app\n", &v));
    om_taglist_unref(l); /* the cache keeps its own */
    struct om_tagcache_val got;
    CHECK(om_tagcache_get(tc, "team/app\n", &got));
    CHECK(got.list == l);
    CHECK_EQ_INT(got.fetched_ms, 1234);
    CHECK_EQ_STR(got.canonical, "quay.io/team/app");
    CHECK_EQ_STR(got.refusal, "");
    om_tagcache_free(tc); /* drops the cache's reference; ours lives on */
    if (got.list != NULL)
        CHECK_EQ_STR(om_taglist_at(got.list, 1), "v2");
    om_tagcache_val_clear(&got);
    CHECK(got.list == NULL);
    om_tagcache_val_clear(&got);
}

static void test_tagcache__misses_clear_the_output_and_keys_differ_by_ns(void)
{
    struct om_tagcache *tc = NULL;
    CHECK_EQ_INT(om_tagcache_new(&tc, 1 << 20, 100), OM_OK);
    struct om_tagcache_val v = val_of(NULL, 1), got;
    snprintf(v.refusal, sizeof(v.refusal), "too many");
    CHECK(om_tagcache_put(tc, "app\ndocker.io", &v));
    memset(&got, 0x5a, sizeof(got));
    CHECK(!om_tagcache_get(tc, "app\nquay.io", &got));
    CHECK(got.list == NULL && got.fetched_ms == 0);
    CHECK(!om_tagcache_get(tc, "app\n", &got));
    CHECK(om_tagcache_get(tc, "app\ndocker.io", &got));
    CHECK(got.list == NULL);
    CHECK_EQ_STR(got.refusal, "too many");
    om_tagcache_val_clear(&got);
    om_tagcache_free(tc);
}

static void test_tagcache__least_recently_used_goes_first_within_the_byte_budget(void)
{
    struct om_tagcache *tc = NULL;
    /* Lists of 100 tags of 7 bytes: ~1.3 KB each with offsets and headers. */
    CHECK_EQ_INT(om_tagcache_new(&tc, 20 * 1024, 1000), OM_OK);
    char key[32];
    for (int k = 0; k < 100; k++) {
        struct om_taglist_builder b;
        om_taglist_builder_init(&b, 1000);
        char t[16];
        for (int i = 0; i < 100; i++) {
            snprintf(t, sizeof(t), "t%06d", i);
            om_taglist_builder_add(&b, t, strlen(t));
        }
        struct om_taglist *l = NULL;
        CHECK_EQ_INT(om_taglist_build(&l, &b), OM_OK);
        struct om_tagcache_val v = val_of(l, k);
        snprintf(key, sizeof(key), "repo%d\n", k);
        CHECK(om_tagcache_put(tc, key, &v));
        om_taglist_unref(l);
        struct om_tagcache_val got;
        if (om_tagcache_get(tc, "repo0\n", &got)) /* keep touching repo0 */
            om_tagcache_val_clear(&got);
        CHECK(om_tagcache_bytes(tc) <= 20 * 1024);
    }
    struct om_tagcache_val got;
    CHECK(om_tagcache_get(tc, "repo0\n", &got));
    om_tagcache_val_clear(&got);
    CHECK(!om_tagcache_get(tc, "repo1\n", &got));
    CHECK(om_tagcache_get(tc, "repo99\n", &got));
    om_tagcache_val_clear(&got);
    CHECK(om_tagcache_entries(tc) < 20);
    om_tagcache_free(tc);
}

static void test_tagcache__entries_are_bounded_and_a_key_is_replaced(void)
{
    struct om_tagcache *tc = NULL;
    CHECK_EQ_INT(om_tagcache_new(&tc, 1 << 20, 3), OM_OK);
    char key[16];
    for (int k = 0; k < 10; k++) {
        struct om_tagcache_val v = val_of(NULL, k);
        snprintf(key, sizeof(key), "r%d", k);
        CHECK(om_tagcache_put(tc, key, &v));
    }
    CHECK_EQ_INT(om_tagcache_entries(tc), 3);
    struct om_tagcache_val got;
    CHECK(!om_tagcache_get(tc, "r6", &got));
    CHECK(om_tagcache_get(tc, "r9", &got));
    CHECK_EQ_INT(got.fetched_ms, 9);
    struct om_tagcache_val v = val_of(NULL, 42);
    CHECK(om_tagcache_put(tc, "r9", &v));
    CHECK_EQ_INT(om_tagcache_entries(tc), 3);
    CHECK(om_tagcache_get(tc, "r9", &got));
    CHECK_EQ_INT(got.fetched_ms, 42);
    om_tagcache_free(tc);
}

static void test_tagcache__a_list_bigger_than_the_cache_is_not_kept_nor_its_old_entry(void)
{
    struct om_tagcache *tc = NULL;
    CHECK_EQ_INT(om_tagcache_new(&tc, 4096, 100), OM_OK);
    struct om_tagcache_val small = val_of(NULL, 1);
    CHECK(om_tagcache_put(tc, "big", &small));
    struct om_taglist_builder b;
    om_taglist_builder_init(&b, 10000);
    char t[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(t, sizeof(t), "tag%d", i);
        om_taglist_builder_add(&b, t, strlen(t));
    }
    struct om_taglist *l = NULL;
    CHECK_EQ_INT(om_taglist_build(&l, &b), OM_OK);
    struct om_tagcache_val v = val_of(l, 2);
    CHECK(!om_tagcache_put(tc, "big", &v));
    struct om_tagcache_val got;
    CHECK(!om_tagcache_get(tc, "big", &got)); /* the old entry is out of date: gone */
    CHECK_EQ_INT(om_tagcache_entries(tc), 0);
    CHECK_EQ_INT(om_tagcache_bytes(tc), 0);
    om_taglist_unref(l);
    om_tagcache_free(tc);
    om_tagcache_free(NULL);
}

int main(void)
{
    RUN(test_taglist__is_sorted_in_byte_order_without_duplicates);
    RUN(test_taglist__after_finds_the_first_tag_past_last);
    RUN(test_taglist__strings_that_are_not_tags_are_skipped_and_counted);
    RUN(test_taglist__the_builder_holds_at_most_max_tags);
    RUN(test_taglist__lives_until_its_last_reference_goes);
    RUN(test_tagcache__get_returns_a_copy_with_its_own_reference);
    RUN(test_tagcache__misses_clear_the_output_and_keys_differ_by_ns);
    RUN(test_tagcache__least_recently_used_goes_first_within_the_byte_budget);
    RUN(test_tagcache__entries_are_bounded_and_a_key_is_replaced);
    RUN(test_tagcache__a_list_bigger_than_the_cache_is_not_kept_nor_its_old_entry);
    return test_done();
}
