/* test_events.c — the events ring the admin API and the UI read
 * (core/events.h): codes and values packed into each event, numbers
 * marked, what does not fit dropped or cut on a UTF-8 boundary, the ring's
 * order and bound.  (The API's JSON and ?group=pull are tested end to end:
 * tests/e2e/test_admin_api.py.) */
#include "core/events.h"
#include "test.h"

#include <stdlib.h>

struct seen {
    char keys[16][40];
    char vals[16][OM_EVENT_VALUE_MAX + 1];
    bool num[16];
    size_t n;
};

static void collect(void *ud, const char *key, const char *value, bool number)
{
    struct seen *s = ud;
    if (s->n < 16) {
        snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
        snprintf(s->vals[s->n], sizeof(s->vals[0]), "%s", value);
        s->num[s->n] = number;
        s->n++;
    }
}

static void test_events__a_code_and_its_values_come_back_in_order_with_numbers_marked(void)
{
    struct om_events *ev = NULL;
    struct om_event out[2];
    struct seen s = {0};
    CHECK_EQ_INT(om_events_new(&ev), OM_OK);
    om_events_add_kv(ev, OM_EV_EVICT, "image_evicted", "docker.io/library/alpine",
                     "sha256:abc", 1234, "evicted docker.io/library/alpine:3.19", "tag", "3.19",
                     "why", "lru", "#idle_s", "3600", "skipped", NULL, "#objects", "4", NULL);
    CHECK_EQ_INT(om_events_recent(ev, out, 2), 1);
    CHECK_EQ_STR(out[0].code, "image_evicted");
    CHECK_EQ_STR(out[0].repository, "docker.io/library/alpine");
    CHECK_EQ_INT(out[0].bytes, 1234);
    CHECK_EQ_INT(om_event_values(&out[0], collect, &s), 4);   /* a NULL value is skipped */
    CHECK_EQ_STR(s.keys[0], "tag");
    CHECK_EQ_STR(s.vals[0], "3.19");
    CHECK(!s.num[0]);
    CHECK_EQ_STR(s.keys[2], "idle_s");
    CHECK(s.num[2]);
    CHECK_EQ_STR(s.keys[3], "objects");
    CHECK_EQ_STR(om_event_value(&out[0], "why"), "lru");
    CHECK_EQ_STR(om_event_value(&out[0], "objects"), "4");
    CHECK(om_event_value(&out[0], "skipped") == NULL);
    CHECK(om_event_value(&out[0], "#objects") == NULL);
    om_events_free(ev);
}

static void test_events__the_old_call_has_no_code_and_no_values(void)
{
    struct om_events *ev = NULL;
    struct om_event out[1];
    CHECK_EQ_INT(om_events_new(&ev), OM_OK);
    om_events_add(ev, OM_EV_GC, NULL, NULL, 7, "gc: something");
    CHECK_EQ_INT(om_events_recent(ev, out, 1), 1);
    CHECK_EQ_STR(out[0].code, "");
    CHECK_EQ_STR(out[0].message, "gc: something");
    CHECK_EQ_INT(om_event_values(&out[0], NULL, NULL), 0);
    om_events_free(ev);
}

static void test_events__values_that_do_not_fit_are_dropped_and_long_ones_cut_on_utf8(void)
{
    struct om_events *ev = NULL;
    struct om_event out[1];
    struct seen s = {0};
    char big[OM_EVENT_VALUE_MAX + 50];
    /* "中" is 3 bytes: a cut at OM_EVENT_VALUE_MAX must not split one. */
    size_t n = 0;
    while (n + 3 < sizeof(big))
        memcpy(big + n, "\xe4\xb8\xad", 3), n += 3;
    big[n] = '\0';
    CHECK_EQ_INT(om_events_new(&ev), OM_OK);
    om_events_add_kv(ev, OM_EV_ERROR, "blob_failed", NULL, NULL, 0, NULL, "a", big, "b", big,
                     "c", "small", NULL);
    CHECK_EQ_INT(om_events_recent(ev, out, 1), 1);
    om_event_values(&out[0], collect, &s);
    CHECK(s.n >= 1 && s.n <= 3);
    size_t l = strlen(s.vals[0]);
    CHECK(l <= OM_EVENT_VALUE_MAX && l > OM_EVENT_VALUE_MAX - 3);
    CHECK_EQ_INT(l % 3, 0);
    CHECK(out[0].values_len <= sizeof(out[0].values));
    /* A pair that did not fit is gone whole; the small one still fits. */
    CHECK_EQ_STR(om_event_value(&out[0], "c"), "small");
    /* An over-long code and repository are cut, never overrun. */
    char longname[600];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    om_events_add_kv(ev, OM_EV_FETCH, longname, longname, longname, 1, longname, longname,
                     "v", "#", "1", NULL);
    CHECK_EQ_INT(om_events_recent(ev, out, 1), 1);
    CHECK_EQ_INT(strlen(out[0].code), OM_EVENT_CODE_MAX);
    CHECK_EQ_INT(strlen(out[0].repository), sizeof(out[0].repository) - 1);
    CHECK_EQ_INT(om_event_values(&out[0], NULL, NULL), 0);   /* bad keys: too long, bare '#' */
    om_events_free(ev);
}

static void test_events__the_ring_keeps_the_newest_first_and_drops_the_oldest(void)
{
    struct om_events *ev = NULL;
    struct om_event *out = calloc(OM_EVENTS_MAX, sizeof(*out));
    char n_s[24];
    CHECK(out != NULL);
    CHECK_EQ_INT(om_events_new(&ev), OM_OK);
    for (int i = 0; i < OM_EVENTS_MAX + 5; i++) {
        snprintf(n_s, sizeof(n_s), "%d", i);
        om_events_add_kv(ev, OM_EV_FETCH, "blob_fetched", "r", NULL, (uint64_t)i, NULL, "#i", n_s,
                         NULL);
    }
    CHECK_EQ_INT(om_events_recent(ev, out, OM_EVENTS_MAX), OM_EVENTS_MAX);
    CHECK_EQ_INT(out[0].bytes, OM_EVENTS_MAX + 4);
    CHECK_EQ_INT(out[OM_EVENTS_MAX - 1].bytes, 5);
    CHECK_EQ_STR(om_event_value(&out[0], "i"), "1004");
    CHECK_EQ_INT(om_events_recent(ev, out, 3), 3);
    om_events_add_kv(NULL, OM_EV_FETCH, "x", NULL, NULL, 0, NULL, NULL);   /* no ring: no-op */
    om_events_free(ev);
    free(out);
}

static void test_events__error_codes_have_stable_names(void)
{
    CHECK_EQ_STR(om_err_code_name(OM_ERR_UPSTREAM), "upstream");
    CHECK_EQ_STR(om_err_code_name(OM_ERR_NOSPACE), "nospace");
    CHECK_EQ_STR(om_err_code_name(OM_ERR_DIGEST), "digest");
    CHECK_EQ_STR(om_err_code_name(-999), "unknown");
    CHECK_EQ_STR(om_event_kind_str(OM_EV_PREFETCH), "prefetch");
}

int main(void)
{
    RUN(test_events__a_code_and_its_values_come_back_in_order_with_numbers_marked);
    RUN(test_events__the_old_call_has_no_code_and_no_values);
    RUN(test_events__values_that_do_not_fit_are_dropped_and_long_ones_cut_on_utf8);
    RUN(test_events__the_ring_keeps_the_newest_first_and_drops_the_oldest);
    RUN(test_events__error_codes_have_stable_names);
    return test_done();
}
