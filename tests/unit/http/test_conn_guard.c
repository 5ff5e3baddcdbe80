/* test_conn_guard.c — the pure parts of conn_guard.c: the cap under a
 * descriptor limit and the limit handed to libmicrohttpd.  The guard's
 * behaviour with real connections is tested end to end (test_abuse.py). */
#include "http/conn_guard.h"
#include "test.h"

static void test_conn_guard__cap_keeps_the_configured_limit_when_descriptors_allow(void)
{
    CHECK_EQ_INT(om_conn_guard_cap(4096, 1048576), 4096);
    CHECK_EQ_INT(om_conn_guard_cap(256, 8192), 256);
    CHECK_EQ_INT(om_conn_guard_cap(1, 1024), 1);
}

static void test_conn_guard__cap_shrinks_to_what_the_descriptor_limit_allows(void)
{
    /* 1024 descriptors: 128 kept back, a third of the rest for clients */
    CHECK_EQ_INT(om_conn_guard_cap(4096, 1024), (1024 - 128) / 3);
    /* the cap plus libmicrohttpd's headroom fits in the descriptors */
    unsigned cap = om_conn_guard_cap(4096, 1024);
    CHECK(om_conn_guard_mhd_limit(cap) + cap < 1024);
    /* absurdly low limits still leave a few connections */
    CHECK_EQ_INT(om_conn_guard_cap(4096, 64), 16);
    CHECK_EQ_INT(om_conn_guard_cap(4096, 0), 16);
}

static void test_conn_guard__libmicrohttpd_gets_headroom_above_the_cap(void)
{
    CHECK(om_conn_guard_mhd_limit(256) > 256 + 10);
    CHECK(om_conn_guard_mhd_limit(1) > 10);
    CHECK_EQ_INT(om_conn_guard_mhd_limit(1000000), 1000000);
    CHECK(om_conn_guard_mhd_limit(4096) >= 4096);
}

int main(void)
{
    RUN(test_conn_guard__cap_keeps_the_configured_limit_when_descriptors_allow);
    RUN(test_conn_guard__cap_shrinks_to_what_the_descriptor_limit_allows);
    RUN(test_conn_guard__libmicrohttpd_gets_headroom_above_the_cap);
    return test_done();
}
