/* test_cluster.c — the download lease (cache/cluster.c): the value parser
 * (good values, bad ones, every truncated prefix), and against a real
 * redis-server started by the test the protocol between two replicas —
 * one takes, the other sees it held; renew and release act only while the
 * lease is the caller's; a takeover after expiry has epoch + 1 and the
 * stale owner can neither renew nor release it — the renewer of held
 * leases, and the peer token check.
 */
#include "test.h"

#include "cache/cluster.h"
#include "core/config.h"
#include "redis_server.h"

static struct rs srv;

static void test_cluster__lease_values_parse(void)
{
    struct om_cluster_lease l;
    const char *v = "http://10.0.0.5:5000|http://10.0.0.5:5000|42";
    CHECK(om_cluster_lease_parse(v, strlen(v), &l));
    CHECK_EQ_STR(l.owner, "http://10.0.0.5:5000");
    CHECK_EQ_STR(l.peer_url, "http://10.0.0.5:5000");
    CHECK_EQ_STR(l.value, v);
    CHECK(l.epoch == 42);
    v = "host-12|https://r1.internal|1";
    CHECK(om_cluster_lease_parse(v, strlen(v), &l));
    CHECK_EQ_STR(l.owner, "host-12");
    CHECK_EQ_STR(l.peer_url, "https://r1.internal");
    static const char *bad[] = {
        "", "a", "a|b", "a|http://x|", "|http://x|1", "a||1", "a|http://x|1x",
        "a|ftp://x|1", "a|http://x y|1", "a|http://x|-1", "a|http://x|1234567890123456789",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!om_cluster_lease_parse(bad[i], strlen(bad[i]), &l));
    /* every truncated prefix of a good value: parsed or refused, never read past */
    v = "id|http://h:1|7";
    for (size_t n = 0; n < strlen(v); n++) {
        char *buf = malloc(n ? n : 1); /* no NUL: a reader past n trips ASan */
        CHECK(buf != NULL);
        memcpy(buf, v, n);
        bool ok = om_cluster_lease_parse(buf, n, &l);
        CHECK(!ok); /* the epoch is the last byte: no shorter prefix is a lease */
        free(buf);
    }
    char big[OM_CLUSTER_VALUE_MAX + 8];
    memset(big, 'a', sizeof(big));
    CHECK(!om_cluster_lease_parse(big, sizeof(big), &l));
}

static struct om_config *cfg_for(const char *peer, const char *token)
{
    struct om_config *cfg = NULL;
    char url[200];
    CHECK_EQ_INT(om_config_default(&cfg), OM_OK);
    snprintf(url, sizeof(url), "unix://%s?db=0", srv.sock);
    cfg->cluster_redis = strdup(url);
    cfg->cluster_peer_url = strdup(peer);
    cfg->cluster_peer_token = strdup(token);
    cfg->cluster_lease_ms = 1000;
    return cfg;
}

static void test_cluster__two_replicas_share_one_lease(void)
{
    struct om_config *ca = cfg_for("http://127.0.0.1:1001", "tok");
    struct om_config *cb = cfg_for("http://127.0.0.1:1002/", "tok");
    struct om_cluster *a = NULL, *b = NULL;
    struct om_cluster_lease la, lb, lo;
    om_digest d;
    bool won = false;
    const char *ds = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    CHECK_EQ_INT(om_digest_parse(&d, ds, strlen(ds)), OM_OK);
    CHECK_EQ_INT(om_cluster_open(&a, ca), OM_OK);
    CHECK_EQ_INT(om_cluster_open(&b, cb), OM_OK);
    CHECK(a != NULL && b != NULL);
    CHECK_EQ_STR(om_cluster_id(b), "http://127.0.0.1:1002"); /* trailing '/' cut */

    CHECK_EQ_INT(om_cluster_lease_take(a, &d, &la, &won), OM_OK);
    CHECK(won);
    CHECK(la.epoch == 1);
    CHECK_EQ_STR(la.peer_url, "http://127.0.0.1:1001");
    CHECK_EQ_INT(om_cluster_lease_take(b, &d, &lb, &won), OM_OK);
    CHECK(!won);
    CHECK_EQ_STR(lb.value, la.value);           /* b learns who owns it */
    CHECK_EQ_INT(om_cluster_lease_owner(b, &d, &lo), OM_OK);
    CHECK_EQ_STR(lo.owner, "http://127.0.0.1:1001");

    /* only the owner renews */
    CHECK_EQ_INT(om_cluster_lease_renew(a, &d, &la), OM_OK);
    struct om_cluster_lease fake = la;
    snprintf(fake.value, sizeof(fake.value), "http://127.0.0.1:1002|http://127.0.0.1:1002|1");
    CHECK_EQ_INT(om_cluster_lease_renew(b, &d, &fake), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_cluster_lease_release(b, &d, &fake), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_cluster_lease_owner(b, &d, &lo), OM_OK); /* still a's */

    /* a stops renewing: it expires, b takes over with epoch + 1 */
    rs_sleep_ms_(1200);
    CHECK_EQ_INT(om_cluster_lease_owner(b, &d, &lo), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_cluster_lease_take(b, &d, &lb, &won), OM_OK);
    CHECK(won);
    CHECK(lb.epoch == 2);
    /* the stale owner can neither renew nor release b's lease */
    CHECK_EQ_INT(om_cluster_lease_renew(a, &d, &la), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_cluster_lease_release(a, &d, &la), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_cluster_lease_owner(a, &d, &lo), OM_OK);
    CHECK_EQ_STR(lo.value, lb.value);
    /* b releases: gone */
    CHECK_EQ_INT(om_cluster_lease_release(b, &d, &lb), OM_OK);
    CHECK_EQ_INT(om_cluster_lease_owner(a, &d, &lo), OM_ERR_NOTFOUND);

    /* the peer token */
    CHECK(om_cluster_token_ok(a, "Bearer tok"));
    CHECK(om_cluster_token_ok(a, "bearer  tok"));
    CHECK(!om_cluster_token_ok(a, "Bearer tok2"));
    CHECK(!om_cluster_token_ok(a, "Bearer "));
    CHECK(!om_cluster_token_ok(a, "Basic tok"));
    CHECK(!om_cluster_token_ok(a, NULL));
    CHECK(om_cluster_redis_up(a));

    om_cluster_close(a);
    om_cluster_close(b);
    om_config_free(ca);
    om_config_free(cb);
}

/* The renewer keeps a held lease alive past its time with no call of the
 * holder's, stops at the unhold, and says when the lease is not ours any
 * more. */
static void test_cluster__held_leases_are_renewed_until_unheld(void)
{
    struct om_config *ca = cfg_for("http://127.0.0.1:1003", "tok");
    struct om_cluster *a = NULL;
    struct om_cluster_lease la, lo;
    om_digest d, d2;
    bool won = false;
    const char *ds = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const char *ds2 = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    ca->cluster_lease_ms = 300;
    CHECK_EQ_INT(om_digest_parse(&d, ds, strlen(ds)), OM_OK);
    CHECK_EQ_INT(om_digest_parse(&d2, ds2, strlen(ds2)), OM_OK);
    CHECK_EQ_INT(om_cluster_open(&a, ca), OM_OK);
    CHECK(a != NULL);
    if (a == NULL)
        return;
    CHECK_EQ_INT(om_cluster_lease_take(a, &d, &la, &won), OM_OK);
    CHECK(won);
    struct om_cluster_hold *h = om_cluster_hold(a, &d, &la);
    CHECK(h != NULL);
    rs_sleep_ms_(1000); /* more than three lease times, no call of ours */
    CHECK_EQ_INT(om_cluster_lease_owner(a, &d, &lo), OM_OK);
    CHECK_EQ_STR(lo.value, la.value);
    CHECK(!om_cluster_hold_lost(h));
    om_cluster_unhold(a, h);
    rs_sleep_ms_(600); /* renewed no more: it expires */
    CHECK_EQ_INT(om_cluster_lease_owner(a, &d, &lo), OM_ERR_NOTFOUND);

    /* taken over behind our back: the hold says lost, the other's lease stays */
    CHECK_EQ_INT(om_cluster_lease_take(a, &d2, &la, &won), OM_OK);
    CHECK(won);
    h = om_cluster_hold(a, &d2, &la);
    char set[300];
    snprintf(set, sizeof(set), "SET om:fl:%s other|http://o:1|9 PX 5000", ds2);
    CHECK(rs_cmd(&srv, 0, set, NULL, 0) == 0);
    for (int i = 0; i < 100 && !om_cluster_hold_lost(h); i++)
        rs_sleep_ms_(20);
    CHECK(om_cluster_hold_lost(h));
    CHECK_EQ_INT(om_cluster_lease_owner(a, &d2, &lo), OM_OK);
    CHECK_EQ_STR(lo.owner, "other");
    om_cluster_unhold(a, h);
    om_cluster_unhold(a, NULL);
    om_cluster_close(a);
    om_config_free(ca);
}

static void test_cluster__no_peer_url_means_no_cluster(void)
{
    struct om_config *cfg = NULL;
    struct om_cluster *c = (struct om_cluster *)1;
    CHECK_EQ_INT(om_config_default(&cfg), OM_OK);
    CHECK_EQ_INT(om_cluster_open(&c, cfg), OM_OK);
    CHECK(c == NULL); /* no cluster.redis: alone */
    cfg->cluster_redis = strdup("redis://127.0.0.1:1/0");
    CHECK_EQ_INT(om_cluster_open(&c, cfg), OM_OK);
    CHECK(c == NULL); /* no peer_url: not coordinated */
    om_config_free(cfg);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(test_cluster__lease_values_parse);
    RUN(test_cluster__no_peer_url_means_no_cluster);
    if (!rs_start(&srv, false)) {
        printf("redis-server not found: the live tests are skipped\n");
    } else {
        RUN(test_cluster__two_replicas_share_one_lease);
        RUN(test_cluster__held_leases_are_renewed_until_unheld);
        rs_stop(&srv);
    }
    return test_done();
}
