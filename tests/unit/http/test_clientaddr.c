/* test_clientaddr.c — trusted-proxy resolution of the client address
 * (http/clientaddr.h) and the CIDR parser it is configured with
 * (om_parse_cidr, core/config_limits.c). */
#include "http/clientaddr.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static struct om_cidr cidr(const char *s)
{
    struct om_cidr c;
    CHECK_EQ_INT(om_parse_cidr(&c, s, strlen(s)), OM_OK);
    return c;
}

static struct om_ipaddr addr(const char *s)
{
    struct om_ipaddr a;
    CHECK_EQ_INT(om_ipaddr_parse(&a, s, strlen(s)), OM_OK);
    return a;
}

/* The client resolved from peer and headers, printed. */
static const char *resolve(const struct om_cidr *set, size_t n, const char *peer, const char *xff,
                           const char *xri, char *buf)
{
    struct om_ipaddr p = addr(peer), out;
    om_client_resolve(set, n, &p, xff, xri, &out);
    om_ipaddr_format(&out, buf, OM_CLIENT_ADDR_MAX);
    return buf;
}

static void test_clientaddr__cidrs_parse_with_inet_pton_and_clear_host_bits(void)
{
    struct om_cidr c = cidr("10.1.2.3/8");
    char buf[64];
    CHECK_EQ_INT(c.family, 4);
    CHECK_EQ_INT(c.bits, 8);
    om_format_cidr(&c, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "10.0.0.0/8");
    c = cidr("192.0.2.7");
    om_format_cidr(&c, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "192.0.2.7/32");
    c = cidr("fd00:1::5/17");
    om_format_cidr(&c, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "fd00::/17");
    c = cidr("::1");
    CHECK_EQ_INT(c.bits, 128);
    static const char *const bad[] = {"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0/8",
                                      "10.0.0.0/8/8", "10.0.0.0/+8", "10.0.0.0/ 8", "host",
                                      "10.0.0.0 /8", "10.0.0.0/0008",
                                      "1111:2222:3333:4444:5555:6666:7777:8888:9999/64"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct om_cidr b;
        CHECK(om_parse_cidr(&b, bad[i], strlen(bad[i])) == OM_ERR_INVALID);
    }
}

static void test_clientaddr__membership_follows_the_prefix(void)
{
    struct om_cidr set[] = {cidr("10.0.0.0/8"), cidr("192.168.1.128/25"), cidr("fd00::/8")};
    struct om_ipaddr a;
    a = addr("10.255.0.1");
    CHECK(om_ipaddr_in(set, 3, &a));
    a = addr("11.0.0.1");
    CHECK(!om_ipaddr_in(set, 3, &a));
    a = addr("192.168.1.200");
    CHECK(om_ipaddr_in(set, 3, &a));
    a = addr("192.168.1.127");
    CHECK(!om_ipaddr_in(set, 3, &a));
    a = addr("fdff::1");
    CHECK(om_ipaddr_in(set, 3, &a));
    a = addr("fe00::1");
    CHECK(!om_ipaddr_in(set, 3, &a));
    a = addr("::ffff:10.0.0.1"); /* mapped IPv4 is IPv4 */
    CHECK_EQ_INT(a.family, 4);
    CHECK(om_ipaddr_in(set, 3, &a));
    struct om_cidr all = cidr("0.0.0.0/0");
    a = addr("203.0.113.9");
    CHECK(om_ipaddr_in(&all, 1, &a));
    a = addr("2001:db8::1");
    CHECK(!om_ipaddr_in(&all, 1, &a));
}

static void test_clientaddr__an_untrusted_peer_is_the_client_whatever_it_sends(void)
{
    struct om_cidr set[] = {cidr("10.0.0.0/8")};
    char b[OM_CLIENT_ADDR_MAX];
    CHECK_EQ_STR(resolve(set, 1, "203.0.113.5", "1.2.3.4", "5.6.7.8", b), "203.0.113.5");
    CHECK_EQ_STR(resolve(NULL, 0, "127.0.0.1", "1.2.3.4", NULL, b), "127.0.0.1");
}

static void test_clientaddr__a_trusted_peer_gives_the_rightmost_untrusted_hop(void)
{
    struct om_cidr set[] = {cidr("10.0.0.0/8"), cidr("127.0.0.1")};
    char b[OM_CLIENT_ADDR_MAX];
    CHECK_EQ_STR(resolve(set, 2, "127.0.0.1", "198.51.100.7", NULL, b), "198.51.100.7");
    /* the client forged the left part; the proxies appended the right */
    CHECK_EQ_STR(resolve(set, 2, "127.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.0.2", NULL, b),
                 "198.51.100.7");
    /* junk left of the client is never looked at */
    CHECK_EQ_STR(resolve(set, 2, "127.0.0.1", "not an address,198.51.100.7", NULL, b),
                 "198.51.100.7");
    /* every hop trusted: the leftmost */
    CHECK_EQ_STR(resolve(set, 2, "127.0.0.1", "10.0.0.9, 10.0.0.2", NULL, b), "10.0.0.9");
    CHECK_EQ_STR(resolve(set, 2, "127.0.0.1", " 2001:db8::1 ", NULL, b), "2001:db8::1");
    CHECK_EQ_STR(resolve(set, 2, "127.0.0.1", "::ffff:198.51.100.8", NULL, b), "198.51.100.8");
    /* X-Real-IP when there is no X-Forwarded-For */
    CHECK_EQ_STR(resolve(set, 2, "127.0.0.1", NULL, "198.51.100.9", b), "198.51.100.9");
    CHECK_EQ_STR(resolve(set, 2, "127.0.0.1", "198.51.100.7", "198.51.100.9", b), "198.51.100.7");
}

static void test_clientaddr__malformed_values_leave_the_peer(void)
{
    struct om_cidr set[] = {cidr("127.0.0.0/8")};
    char b[OM_CLIENT_ADDR_MAX];
    static const char *const bad[] = {"", ",", "198.51.100.7,", "198.51.100.7:8080", "[::1]",
                                      "unknown", "198.51.100.7 x", "1.2.3.4.5", "::g",
                                      "198.51.100.07"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_STR(resolve(set, 1, "127.0.0.1", bad[i], NULL, b), "127.0.0.1");
        CHECK_EQ_STR(resolve(set, 1, "127.0.0.1", NULL, bad[i], b), "127.0.0.1");
    }
    /* a malformed X-Forwarded-For falls back to a good X-Real-IP */
    CHECK_EQ_STR(resolve(set, 1, "127.0.0.1", "junk", "198.51.100.9", b), "198.51.100.9");
    /* too long, or too many trusted hops: ignored */
    char big[OM_XFF_MAX + 64];
    memset(big, ' ', sizeof(big));
    memcpy(big + sizeof(big) - 13, "198.51.100.7", 13);
    CHECK_EQ_STR(resolve(set, 1, "127.0.0.1", big, NULL, b), "127.0.0.1");
    char hops[OM_XFF_HOPS_MAX * 12 + 16] = "";
    size_t len = 0;
    for (int i = 0; i < OM_XFF_HOPS_MAX + 1; i++)
        len += (size_t)snprintf(hops + len, sizeof(hops) - len, "%s127.0.0.5", i ? "," : "");
    CHECK_EQ_STR(resolve(set, 1, "127.0.0.1", hops, NULL, b), "127.0.0.1");
}

static void test_clientaddr__socket_addresses_of_both_families(void)
{
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    struct om_ipaddr a;
    char b[OM_CLIENT_ADDR_MAX];
    inet_pton(AF_INET, "127.0.0.2", &s4.sin_addr);
    CHECK_EQ_INT(om_ipaddr_from_sockaddr(&a, (struct sockaddr *)&s4), OM_OK);
    om_ipaddr_format(&a, b, sizeof(b));
    CHECK_EQ_STR(b, "127.0.0.2");
    inet_pton(AF_INET6, "::ffff:127.0.0.3", &s6.sin6_addr);
    CHECK_EQ_INT(om_ipaddr_from_sockaddr(&a, (struct sockaddr *)&s6), OM_OK);
    om_ipaddr_format(&a, b, sizeof(b));
    CHECK_EQ_STR(b, "127.0.0.3");
    CHECK(om_ipaddr_from_sockaddr(&a, NULL) == OM_ERR_INVALID);
    om_ipaddr_format(&a, b, sizeof(b));
    CHECK_EQ_STR(b, "-");
}

int main(void)
{
    RUN(test_clientaddr__cidrs_parse_with_inet_pton_and_clear_host_bits);
    RUN(test_clientaddr__membership_follows_the_prefix);
    RUN(test_clientaddr__an_untrusted_peer_is_the_client_whatever_it_sends);
    RUN(test_clientaddr__a_trusted_peer_gives_the_rightmost_untrusted_hop);
    RUN(test_clientaddr__malformed_values_leave_the_peer);
    RUN(test_clientaddr__socket_addresses_of_both_families);
    return test_done();
}
