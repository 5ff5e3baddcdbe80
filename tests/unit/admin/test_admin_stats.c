/* test_admin_stats.c — the admin module's request statistics
 * (admin_stats.c): endpoint classification, counters by status and cache
 * result, the per-minute history ring across minute and hour boundaries,
 * the upstream error ring and latency samples, download rate samples. */
#include "test.h"

#include "admin/admin_stats.h"

#include <stdlib.h>
#include <string.h>

#define MIN_MS 60000LL
#define T0 (1700000000000LL / MIN_MS * MIN_MS)   /* a minute boundary */

static struct om_req mkreq(const char *url, om_v2_kind kind, unsigned status,
                           om_cache_result cache, uint64_t bytes)
{
    struct om_req r;
    memset(&r, 0, sizeof(r));
    r.url = url;
    r.method = "GET";
    r.p.kind = kind;
    r.status = status;
    r.cache = cache;
    r.bytes = bytes;
    return r;
}

static void test_admin_stats__endpoints_are_classified_from_url_and_parsed_kind(void)
{
    static const struct {
        const char *url;
        om_v2_kind kind;
        om_endpoint_kind want;
    } rows[] = {
        {"/v2/", OM_V2_BASE, OM_EP_BASE},
        {"/v2", OM_V2_BASE, OM_EP_BASE},
        {"/v2/a/manifests/1", OM_V2_MANIFEST, OM_EP_MANIFEST},
        {"/v2/a/blobs/sha256:x", OM_V2_BLOB, OM_EP_BLOB},
        {"/v2/a/tags/list", OM_V2_TAGS, OM_EP_TAGS},
        {"/v2/_catalog", OM_V2_CATALOG, OM_EP_CATALOG},
        {"/v2/a/referrers/sha256:x", OM_V2_REFERRERS, OM_EP_REFERRERS},
        {"/v2/a/blobs/uploads/", OM_V2_UPLOAD, OM_EP_OTHER},
        {"/v2/BAD/manifests/1", OM_V2_BASE, OM_EP_OTHER},   /* did not parse */
        {"/api/v1/stats", OM_V2_BASE, OM_EP_ADMIN},
        {"/metrics", OM_V2_BASE, OM_EP_ADMIN},
        {"/healthz", OM_V2_BASE, OM_EP_OTHER},
        {"/", OM_V2_BASE, OM_EP_UI},
        {"/ui/app.js", OM_V2_BASE, OM_EP_UI},
        {"/v2x", OM_V2_BASE, OM_EP_UI},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(rows); i++) {
        struct om_req r = mkreq(rows[i].url, rows[i].kind, 200, OM_CACHE_NONE, 0);
        CHECK_EQ_INT(om_stats_endpoint(&r), rows[i].want);
    }
    CHECK_EQ_STR(om_stats_endpoint_name(OM_EP_MANIFEST), "manifest");
    CHECK_EQ_STR(om_stats_endpoint_name(OM_EP__COUNT), "other");
}

static void test_admin_stats__counts_by_status_result_and_bytes(void)
{
    struct om_stats *s = NULL;
    CHECK_EQ_INT(om_stats_new(&s), OM_OK);
    if (s == NULL)
        return;
    struct om_req hit = mkreq("/v2/a/blobs/x", OM_V2_BLOB, 200, OM_CACHE_HIT, 1000);
    struct om_req miss = mkreq("/v2/a/blobs/x", OM_V2_BLOB, 200, OM_CACHE_MISS, 500);
    struct om_req head = mkreq("/v2/a/manifests/1", OM_V2_MANIFEST, 200, OM_CACHE_HIT, 77);
    struct om_req odd = mkreq("/v2/a/manifests/1", OM_V2_MANIFEST, 999, OM_CACHE_NONE, 0);
    head.head = true;
    om_stats_note(s, &hit, true, T0);
    om_stats_note(s, &hit, true, T0 + 1);
    om_stats_note(s, &miss, true, T0 + 2);
    om_stats_note(s, &miss, false, T0 + 3);   /* aborted: no bytes */
    om_stats_note(s, &head, true, T0 + 4);    /* HEAD: no body bytes */
    om_stats_note(s, &odd, true, T0 + 5);     /* out-of-range status → 0 */
    CHECK_EQ_INT(s->by_status[OM_EP_BLOB][200], 4);
    CHECK_EQ_INT(s->by_status[OM_EP_MANIFEST][200], 1);
    CHECK_EQ_INT(s->by_status[OM_EP_MANIFEST][0], 1);
    CHECK_EQ_INT(s->aborted[OM_EP_BLOB], 1);
    CHECK_EQ_INT(s->cache_bytes[OM_CACHE_HIT], 2000);
    CHECK_EQ_INT(s->cache_bytes[OM_CACHE_MISS], 500);

    struct om_stats_point h[OM_STATS_HISTORY];
    om_stats_history(s, T0 + 30000, h);
    CHECK_EQ_INT(h[OM_STATS_HISTORY - 1].t_ms, T0);
    CHECK_EQ_INT(h[OM_STATS_HISTORY - 1].requests, 6);
    CHECK_EQ_INT(h[OM_STATS_HISTORY - 1].hits, 3);
    CHECK_EQ_INT(h[OM_STATS_HISTORY - 1].misses, 2);
    CHECK_EQ_INT(h[OM_STATS_HISTORY - 1].bytes_cache, 2000);
    CHECK_EQ_INT(h[OM_STATS_HISTORY - 1].bytes_upstream, 500);
    CHECK_EQ_INT(h[0].t_ms, T0 - 59 * MIN_MS);
    CHECK_EQ_INT(h[0].requests, 0);
    om_stats_free(s);
}

static void test_admin_stats__history_rolls_over_minutes_and_forgets_after_an_hour(void)
{
    struct om_stats *s = NULL;
    struct om_stats_point h[OM_STATS_HISTORY];
    CHECK_EQ_INT(om_stats_new(&s), OM_OK);
    if (s == NULL)
        return;
    struct om_req hit = mkreq("/v2/a/blobs/x", OM_V2_BLOB, 200, OM_CACHE_HIT, 10);
    for (int m = 0; m < 3; m++)
        for (int k = 0; k <= m; k++)
            om_stats_note(s, &hit, true, T0 + m * MIN_MS + k);
    om_stats_history(s, T0 + 2 * MIN_MS, h);
    CHECK_EQ_INT(h[57].hits, 1);
    CHECK_EQ_INT(h[58].hits, 2);
    CHECK_EQ_INT(h[59].hits, 3);
    CHECK_EQ_INT(h[59].t_ms - h[58].t_ms, MIN_MS);

    /* 60 minutes later minute 0's slot is reused: the old count is gone. */
    om_stats_note(s, &hit, true, T0 + 60 * MIN_MS);
    om_stats_history(s, T0 + 60 * MIN_MS, h);
    CHECK_EQ_INT(h[59].hits, 1);
    CHECK_EQ_INT(h[59].t_ms, T0 + 60 * MIN_MS);
    CHECK_EQ_INT(h[0].t_ms, T0 + MIN_MS);
    CHECK_EQ_INT(h[0].hits, 2);    /* minutes 1 and 2 are still in the window */
    CHECK_EQ_INT(h[1].hits, 3);

    /* A late note for a minute whose slot moved on is dropped, not
     * added to the newer minute. */
    om_stats_note(s, &hit, true, T0 + 5);
    om_stats_history(s, T0 + 60 * MIN_MS, h);
    CHECK_EQ_INT(h[59].hits, 1);

    /* Seen from much later, everything is old. */
    om_stats_history(s, T0 + 500 * MIN_MS, h);
    uint64_t sum = 0;
    for (size_t i = 0; i < OM_STATS_HISTORY; i++)
        sum += h[i].hits + h[i].requests;
    CHECK_EQ_INT(sum, 0);
    om_stats_free(s);
}

static void test_admin_stats__upstream_errors_are_kept_newest_first_once_each(void)
{
    struct om_stats *s = NULL;
    struct om_upstream_stats us;
    struct om_up_error out[OM_STATS_UP_ERRORS + 2];
    CHECK_EQ_INT(om_stats_new(&s), OM_OK);
    if (s == NULL)
        return;
    memset(&us, 0, sizeof(us));
    om_stats_upstream_observe(s, 1, &us);            /* no error yet */
    CHECK_EQ_INT(om_stats_upstream_errors(s, 1, out, 4), 0);
    for (int i = 1; i <= OM_STATS_UP_ERRORS + 3; i++) {
        us.last_error_ms = 1000 * i;
        snprintf(us.last_error, sizeof(us.last_error), "error %d", i);
        om_stats_upstream_observe(s, 1, &us);
        om_stats_upstream_observe(s, 1, &us);        /* the same error twice: once */
    }
    size_t n = om_stats_upstream_errors(s, 1, out, OM_ARRAY_LEN(out));
    CHECK_EQ_INT(n, OM_STATS_UP_ERRORS);
    CHECK_EQ_INT(out[0].t_ms, 1000 * (OM_STATS_UP_ERRORS + 3));
    CHECK_EQ_STR(out[n - 1].message, "error 4");
    CHECK_EQ_INT(om_stats_upstream_errors(s, 1, out, 2), 2);
    CHECK_EQ_INT(om_stats_upstream_errors(s, 0, out, 2), 0);
    CHECK_EQ_INT(om_stats_upstream_errors(s, OM_MAX_UPSTREAMS, out, 2), 0);
    om_stats_free(s);
}

static void test_admin_stats__latency_is_sampled_when_requests_moved(void)
{
    struct om_stats *s = NULL;
    struct om_upstream_stats us;
    uint64_t hist[OM_STATS_LAT_BUCKETS], sum = 0, count = 0;
    CHECK_EQ_INT(om_stats_new(&s), OM_OK);
    if (s == NULL)
        return;
    memset(&us, 0, sizeof(us));
    static const struct { uint64_t requests, latency_us; } obs[] = {
        {0, 99999999},     /* nothing happened yet: no sample */
        {1, 3000},         /* ≤ 5 ms */
        {1, 3000},         /* no new request: no sample */
        {5, 5000},         /* exactly on a bound: that bucket */
        {6, 20000000},     /* over 10 s: +Inf */
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(obs); i++) {
        us.requests = obs[i].requests;
        us.last_latency_us = obs[i].latency_us;
        om_stats_upstream_observe(s, 2, &us);
    }
    om_stats_upstream_latency(s, 2, hist, &sum, &count);
    CHECK_EQ_INT(count, 3);
    CHECK_EQ_INT(sum, 3000 + 5000 + 20000000);
    CHECK_EQ_INT(hist[0], 2);
    CHECK_EQ_INT(hist[OM_STATS_LAT_BUCKETS - 1], 1);
    om_stats_free(s);
}

static void test_admin_stats__download_rates_come_from_successive_samples(void)
{
    struct om_stats *s = NULL;
    om_digest a, b;
    double rate = -1;
    int64_t first = 0;
    CHECK_EQ_INT(om_stats_new(&s), OM_OK);
    if (s == NULL)
        return;
    snprintf(a.str, sizeof(a.str), "sha256:%064d", 1);
    snprintf(b.str, sizeof(b.str), "sha256:%064d", 2);

    om_stats_flights_begin(s);
    om_stats_flights_sample(s, &a, 1000, 10000, &rate, &first);
    om_stats_flights_end(s);
    CHECK(rate == 0.0);                      /* first sight: unknown */
    CHECK_EQ_INT(first, 10000);

    om_stats_flights_begin(s);
    om_stats_flights_sample(s, &a, 1000 + 2000000, 11000, &rate, &first);
    om_stats_flights_sample(s, &b, 5, 11000, &rate, &first);
    om_stats_flights_end(s);
    om_stats_flights_begin(s);
    om_stats_flights_sample(s, &a, 1000 + 2000000, 11050, &rate, &first); /* too soon: kept */
    om_stats_flights_end(s);
    CHECK(rate > 1999999.0 && rate < 2000001.0);
    CHECK_EQ_INT(first, 10000);
    CHECK_EQ_INT(s->n_flights, 1);           /* b was not seen in the last round */

    om_stats_flights_begin(s);
    om_stats_flights_sample(s, &a, 1000 + 3000000, 12050, &rate, &first);
    om_stats_flights_end(s);
    CHECK(rate > 1400000.0 && rate < 1600000.0);   /* smoothed: (2M + 1M) / 2 */
    om_stats_flights_begin(s);
    om_stats_flights_end(s);
    CHECK_EQ_INT(s->n_flights, 0);
    om_stats_free(s);
}

int main(void)
{
    RUN(test_admin_stats__endpoints_are_classified_from_url_and_parsed_kind);
    RUN(test_admin_stats__counts_by_status_result_and_bytes);
    RUN(test_admin_stats__history_rolls_over_minutes_and_forgets_after_an_hour);
    RUN(test_admin_stats__upstream_errors_are_kept_newest_first_once_each);
    RUN(test_admin_stats__latency_is_sampled_when_requests_moved);
    RUN(test_admin_stats__download_rates_come_from_successive_samples);
    return test_done();
}
