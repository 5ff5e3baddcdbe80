/* test_limits.c — the per-client limit table (http/limits.h) with a fake
 * clock: token buckets, concurrent downloads, rolling day bytes, per-user
 * overrides, reconfigure, the LRU bound and the views.  Ends with a micro
 * benchmark of the cache-hit path's cost (printed, never pass/fail). */
#include "http/limits.h"
#include "test.h"

#include <stdlib.h>
#include <time.h>

#define T0 (1700000000000ll) /* a fake "now", ms */
#define HOUR 3600000ll

static struct om_limits base(void)
{
    struct om_limits l;
    memset(&l, 0, sizeof(l));
    l.max_clients = 1000;
    return l;
}

static struct om_limiter *mk(const struct om_limits *l)
{
    struct om_limiter *lim = NULL;
    CHECK_EQ_INT(om_limiter_new(&lim, l), OM_OK);
    return lim;
}

static void test_limits__no_limit_configured_refuses_nothing(void)
{
    struct om_limits l = base();
    struct om_limiter *lim = mk(&l);
    struct om_limit_verdict v;
    for (int i = 0; i < 1000; i++) {
        CHECK_EQ_INT(om_limiter_request(lim, "10.0.0.1", false, T0, &v), OM_LIMIT_NONE);
        CHECK_EQ_INT(om_limiter_download_begin(lim, "10.0.0.1", false, T0, &v), OM_LIMIT_NONE);
        CHECK_EQ_INT(om_limiter_upstream(lim, "10.0.0.1", false, T0, &v), OM_LIMIT_NONE);
        om_limiter_sent(lim, "10.0.0.1", false, 1u << 30, T0);
    }
    om_limiter_free(lim);
}

static void test_limits__a_burst_then_the_rate_with_retry_after_from_the_bucket(void)
{
    struct om_limits l = base();
    l.per_client.requests_per_second = 2;
    l.per_client.burst = 5;
    struct om_limiter *lim = mk(&l);
    struct om_limit_verdict v;
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(om_limiter_request(lim, "10.0.0.7", false, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_request(lim, "10.0.0.7", false, T0, &v), OM_LIMIT_RPS);
    CHECK_EQ_INT(v.retry_after_s, 1); /* one token in 500 ms: rounded up */
    CHECK_EQ_INT(v.limit, 2);
    CHECK(v.log);
    /* a second refusal in the same minute is not logged again */
    CHECK_EQ_INT(om_limiter_request(lim, "10.0.0.7", false, T0 + 10, &v), OM_LIMIT_RPS);
    CHECK(!v.log);
    /* another client is unaffected */
    CHECK_EQ_INT(om_limiter_request(lim, "10.0.0.8", false, T0, &v), OM_LIMIT_NONE);
    /* 500 ms later one token is back, not two */
    CHECK_EQ_INT(om_limiter_request(lim, "10.0.0.7", false, T0 + 500, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_request(lim, "10.0.0.7", false, T0 + 500, &v), OM_LIMIT_RPS);
    /* a long pause refills to the burst, no more */
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(om_limiter_request(lim, "10.0.0.7", false, T0 + 100000, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_request(lim, "10.0.0.7", false, T0 + 100000, &v), OM_LIMIT_RPS);
    /* burst 0 = requests_per_second */
    l.per_client.burst = 0;
    l.per_client.requests_per_second = 3;
    CHECK_EQ_INT(om_limiter_reconfigure(lim, &l), OM_OK);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(om_limiter_request(lim, "10.0.0.9", false, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_request(lim, "10.0.0.9", false, T0, &v), OM_LIMIT_RPS);
    struct om_limiter_totals t;
    om_limiter_totals(lim, &t);
    CHECK_EQ_INT(t.rejections[OM_LIMIT_RPS], 5);
    om_limiter_free(lim);
}

static void test_limits__concurrent_downloads_are_counted_until_they_end(void)
{
    struct om_limits l = base();
    l.per_client.downloads = 2;
    struct om_limiter *lim = mk(&l);
    struct om_limit_verdict v;
    CHECK_EQ_INT(om_limiter_download_begin(lim, "a", false, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_download_begin(lim, "a", false, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_download_begin(lim, "a", false, T0, &v), OM_LIMIT_DOWNLOADS);
    CHECK_EQ_INT(v.retry_after_s, 1);
    CHECK_EQ_INT(om_limiter_download_begin(lim, "b", false, T0, &v), OM_LIMIT_NONE);
    om_limiter_download_end(lim, "a", false, T0);
    CHECK_EQ_INT(om_limiter_download_begin(lim, "a", false, T0, &v), OM_LIMIT_NONE);
    /* a user and an address of the same text are different clients */
    CHECK_EQ_INT(om_limiter_download_begin(lim, "a", true, T0, &v), OM_LIMIT_NONE);
    om_limiter_free(lim);
}

static void test_limits__bytes_per_day_roll_off_hour_by_hour(void)
{
    struct om_limits l = base();
    l.per_client.bytes_per_day = 1000;
    struct om_limiter *lim = mk(&l);
    struct om_limit_verdict v;
    int64_t t0 = (T0 / HOUR) * HOUR + 30 * 60000; /* half past an hour */
    CHECK_EQ_INT(om_limiter_download_begin(lim, "c", false, t0, &v), OM_LIMIT_NONE);
    om_limiter_sent(lim, "c", false, 600, t0);
    om_limiter_download_end(lim, "c", false, t0);
    CHECK_EQ_INT(om_limiter_download_begin(lim, "c", false, t0 + HOUR, &v), OM_LIMIT_NONE);
    om_limiter_sent(lim, "c", false, 600, t0 + HOUR);
    om_limiter_download_end(lim, "c", false, t0 + HOUR);
    /* over: 1200 >= 1000; the first 600 drop out at the start of hour 24
     * after they were sent, i.e. 22.5 h from now */
    CHECK_EQ_INT(om_limiter_download_begin(lim, "c", false, t0 + HOUR, &v), OM_LIMIT_BYTES_PER_DAY);
    CHECK_EQ_INT(v.retry_after_s, (unsigned)(22 * 3600 + 30 * 60));
    CHECK_EQ_INT(v.limit, 1000);
    /* still refused just before, allowed just after */
    CHECK_EQ_INT(om_limiter_download_begin(lim, "c", false, t0 + 24 * HOUR - 31 * 60000, &v),
                 OM_LIMIT_BYTES_PER_DAY);
    CHECK_EQ_INT(om_limiter_download_begin(lim, "c", false, t0 + 24 * HOUR - 29 * 60000, &v),
                 OM_LIMIT_NONE);
    /* after two idle days everything is forgotten */
    om_limiter_sent(lim, "c", false, 5000, t0 + 25 * HOUR);
    CHECK_EQ_INT(om_limiter_download_begin(lim, "c", false, t0 + 60 * HOUR, &v), OM_LIMIT_NONE);
    om_limiter_free(lim);
}

static void test_limits__upstream_fetches_per_minute_refill_over_the_minute(void)
{
    struct om_limits l = base();
    l.per_client.upstream_fetches_per_minute = 3;
    struct om_limiter *lim = mk(&l);
    struct om_limit_verdict v;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(om_limiter_upstream(lim, "d", false, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_upstream(lim, "d", false, T0, &v), OM_LIMIT_UPSTREAM);
    CHECK_EQ_INT(v.retry_after_s, 20); /* one every 20 s */
    CHECK_EQ_INT(om_limiter_upstream(lim, "d", false, T0 + 19000, &v), OM_LIMIT_UPSTREAM);
    CHECK_EQ_INT(v.retry_after_s, 1);
    CHECK_EQ_INT(om_limiter_upstream(lim, "d", false, T0 + 20000, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_upstream(lim, "e", false, T0, &v), OM_LIMIT_NONE);
    om_limiter_free(lim);
}

static void test_limits__per_user_overrides_only_the_keys_it_names(void)
{
    struct om_config *cfg = NULL;
    char err[256] = "";
    static const char yaml[] = "limits:\n"
                               "  per_user:\n"
                               "    ci: {requests_per_second: 100}\n"
                               "    guest: {downloads: 1}\n"
                               "  per_client: {requests_per_second: 1, downloads: 3}\n";
    CHECK_EQ_INT(om_config_parse(&cfg, yaml, sizeof(yaml) - 1, "t.yaml", err, sizeof(err)), OM_OK);
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    struct om_limiter *lim = mk(&cfg->limits);
    struct om_limit_verdict v;
    /* ci: 100/s, and per_client's downloads 3 */
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(om_limiter_request(lim, "ci", true, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_request(lim, "ci", true, T0, &v), OM_LIMIT_RPS);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(om_limiter_download_begin(lim, "ci", true, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_download_begin(lim, "ci", true, T0, &v), OM_LIMIT_DOWNLOADS);
    /* guest: 1 download, per_client's 1/s */
    CHECK_EQ_INT(om_limiter_download_begin(lim, "guest", true, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_download_begin(lim, "guest", true, T0, &v), OM_LIMIT_DOWNLOADS);
    CHECK_EQ_INT(om_limiter_request(lim, "guest", true, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_request(lim, "guest", true, T0, &v), OM_LIMIT_RPS);
    /* an address that reads "ci" is not the user ci */
    CHECK_EQ_INT(om_limiter_request(lim, "ci", false, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_request(lim, "ci", false, T0, &v), OM_LIMIT_RPS);
    /* a user not listed takes per_client */
    CHECK_EQ_INT(om_limiter_request(lim, "bob", true, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_request(lim, "bob", true, T0, &v), OM_LIMIT_RPS);
    om_limiter_free(lim);
    om_config_free(cfg);
}

static void test_limits__reconfigure_takes_the_new_limits_on_the_next_call(void)
{
    struct om_limits l = base();
    l.per_client.requests_per_second = 1;
    struct om_limiter *lim = mk(&l);
    struct om_limit_verdict v;
    CHECK_EQ_INT(om_limiter_request(lim, "f", false, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_request(lim, "f", false, T0, &v), OM_LIMIT_RPS);
    l.per_client.requests_per_second = 0;
    CHECK_EQ_INT(om_limiter_reconfigure(lim, &l), OM_OK);
    for (int i = 0; i < 50; i++)
        CHECK_EQ_INT(om_limiter_request(lim, "f", false, T0, &v), OM_LIMIT_NONE);
    l.per_client.requests_per_second = 10;
    CHECK_EQ_INT(om_limiter_reconfigure(lim, &l), OM_OK);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(om_limiter_request(lim, "f", false, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_request(lim, "f", false, T0, &v), OM_LIMIT_RPS);
    om_limiter_free(lim);
}

static void test_limits__reconfigure_swaps_the_trusted_proxies(void)
{
    struct om_limits l = base();
    const struct om_cidr *set = NULL;
    struct om_limiter *lim = mk(&l);
    CHECK_EQ_INT(om_limiter_trusted_proxies(lim, &set), 0);
    CHECK_EQ_INT(om_parse_cidr(&l.trusted_proxies[0], "10.0.0.0/8", 10), OM_OK);
    CHECK_EQ_INT(om_parse_cidr(&l.trusted_proxies[1], "::1", 3), OM_OK);
    l.n_trusted_proxies = 2;
    CHECK_EQ_INT(om_limiter_reconfigure(lim, &l), OM_OK);
    memset(&l.trusted_proxies, 0, sizeof(l.trusted_proxies)); /* copied, not kept */
    CHECK_EQ_INT(om_limiter_trusted_proxies(lim, &set), 2);
    CHECK_EQ_INT(set[0].family, 4);
    CHECK_EQ_INT(set[0].bits, 8);
    CHECK_EQ_INT(set[1].family, 6);
    om_limiter_free(lim);
}

static void test_limits__the_table_is_bounded_and_forgets_the_least_recent(void)
{
    struct om_limits l = base();
    l.max_clients = 64; /* one record per stripe */
    l.per_client.requests_per_second = 1;
    struct om_limiter *lim = mk(&l);
    struct om_limit_verdict v;
    struct om_limiter_totals t;
    char key[32];
    /* a client holding a download is never evicted */
    CHECK_EQ_INT(om_limiter_download_begin(lim, "holder", false, T0, &v), OM_LIMIT_NONE);
    CHECK_EQ_INT(om_limiter_request(lim, "holder", false, T0, &v), OM_LIMIT_NONE);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
        om_limiter_request(lim, key, false, T0 + i, &v);
    }
    om_limiter_totals(lim, &t);
    CHECK(t.clients <= 64 + 1);
    CHECK(t.evictions >= 5000 - 64);
    CHECK_EQ_INT(t.max_clients, 64);
    /* still known: its bucket is still empty */
    CHECK_EQ_INT(om_limiter_request(lim, "holder", false, T0, &v), OM_LIMIT_RPS);
    om_limiter_download_end(lim, "holder", false, T0);
    om_limiter_free(lim);
}

static void test_limits__the_views_rank_clients_and_show_who_is_limited(void)
{
    struct om_limits l = base();
    l.per_client.requests_per_second = 1;
    struct om_limiter *lim = mk(&l);
    struct om_limit_verdict v;
    struct om_client_stat top[3];
    om_limiter_sent(lim, "small", false, 10, T0);
    om_limiter_sent(lim, "big", false, 1000, T0);
    om_limiter_sent(lim, "mid", false, 100, T0);
    om_limiter_sent(lim, "tiny", false, 1, T0);
    for (int i = 0; i < 3; i++)
        om_limiter_request(lim, "tiny", false, T0 + 2000 * i, &v);
    om_limiter_request(lim, "mid", false, T0, &v);
    om_limiter_request(lim, "mid", false, T0, &v); /* refused */
    size_t n = om_limiter_top(lim, OM_CLIENTS_BY_BYTES, T0, top, 3);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(top[0].key, "big");
    CHECK_EQ_STR(top[1].key, "mid");
    CHECK_EQ_STR(top[2].key, "small");
    CHECK_EQ_INT(top[0].bytes_24h, 1000);
    n = om_limiter_top(lim, OM_CLIENTS_BY_REQUESTS, T0 + 4000, top, 3);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(top[0].key, "tiny");
    CHECK_EQ_INT(top[0].requests_24h, 3);
    n = om_limiter_top(lim, OM_CLIENTS_LIMITED, T0, top, 3);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(top[0].key, "mid");
    CHECK_EQ_INT(top[0].limited_by, OM_LIMIT_RPS);
    CHECK_EQ_INT(top[0].rejected_24h, 1);
    CHECK_EQ_INT(om_limiter_top(lim, OM_CLIENTS_LIMITED, T0 + 5000, top, 3), 0);
    /* a day later nothing is in the last 24 h */
    CHECK_EQ_INT(om_limiter_top(lim, OM_CLIENTS_BY_BYTES, T0 + 25 * HOUR, top, 3), 0);
    om_limiter_free(lim);
}

static void test_limits__labels_and_keys_name_every_limit(void)
{
    CHECK_EQ_STR(om_limit_label(OM_LIMIT_RPS), "requests_per_second");
    CHECK_EQ_STR(om_limit_label(OM_LIMIT_DOWNLOADS), "downloads");
    CHECK_EQ_STR(om_limit_label(OM_LIMIT_BYTES_PER_DAY), "bytes_per_day");
    CHECK_EQ_STR(om_limit_label(OM_LIMIT_UPSTREAM), "upstream_fetches");
    CHECK_EQ_STR(om_limit_key(OM_LIMIT_UPSTREAM), "upstream_fetches_per_minute");
    CHECK_EQ_STR(om_limit_label(OM_LIMIT__COUNT), "");
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* What a cached manifest GET pays: one request check and one sent(); a
 * blob GET adds download_begin/end.  Over 10000 clients. Not pass/fail. */
static void test_limits__micro_benchmark_of_the_hit_path(void)
{
    struct om_limits l = base();
    l.max_clients = 100000;
    l.per_client.requests_per_second = 1000000;
    l.per_client.downloads = 1000;
    l.per_client.bytes_per_day = UINT64_MAX;
    struct om_limiter *lim = mk(&l);
    struct om_limit_verdict v;
    enum { N = 200000, CLIENTS = 10000 };
    static char keys[CLIENTS][24];
    for (int i = 0; i < CLIENTS; i++)
        snprintf(keys[i], sizeof(keys[i]), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
    double t0 = now_ns();
    for (int i = 0; i < N; i++) {
        const char *k = keys[(i * 7919) % CLIENTS];
        om_limiter_request(lim, k, false, T0 + i / 100, &v);
        om_limiter_sent(lim, k, false, 1500, T0 + i / 100);
    }
    double t1 = now_ns();
    for (int i = 0; i < N; i++) {
        const char *k = keys[(i * 7919) % CLIENTS];
        om_limiter_download_begin(lim, k, false, T0 + i / 100, &v);
        om_limiter_download_end(lim, k, false, T0 + i / 100);
    }
    double t2 = now_ns();
    printf("limits micro-benchmark: request+sent %.0f ns/op, download begin+end %.0f ns/op "
           "(%d clients)\n",
           (t1 - t0) / N, (t2 - t1) / N, CLIENTS);
    om_limiter_free(lim);
}

int main(void)
{
    RUN(test_limits__no_limit_configured_refuses_nothing);
    RUN(test_limits__a_burst_then_the_rate_with_retry_after_from_the_bucket);
    RUN(test_limits__concurrent_downloads_are_counted_until_they_end);
    RUN(test_limits__bytes_per_day_roll_off_hour_by_hour);
    RUN(test_limits__upstream_fetches_per_minute_refill_over_the_minute);
    RUN(test_limits__per_user_overrides_only_the_keys_it_names);
    RUN(test_limits__reconfigure_takes_the_new_limits_on_the_next_call);
    RUN(test_limits__reconfigure_swaps_the_trusted_proxies);
    RUN(test_limits__the_table_is_bounded_and_forgets_the_least_recent);
    RUN(test_limits__the_views_rank_clients_and_show_who_is_limited);
    RUN(test_limits__labels_and_keys_name_every_limit);
    RUN(test_limits__micro_benchmark_of_the_hit_path);
    return test_done();
}
