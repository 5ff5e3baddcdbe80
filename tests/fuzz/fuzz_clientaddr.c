/* fuzz_clientaddr.c — who the client is behind trusted proxies
 * (http/clientaddr.c: om_client_resolve over X-Forwarded-For / X-Real-IP,
 * om_ipaddr_parse) and the trusted_proxies CIDR parser (core/config_limits.c:
 * om_parse_cidr).  The header values come from whoever connects.
 *
 * Input: 1 byte selector, then the value.  Selector bit 0: the value is
 * X-Forwarded-For (else X-Real-IP); bit 1: the peer is trusted (127.0.0.1,
 * else 203.0.113.1); the value is also parsed as a CIDR.
 *
 * Invariants:
 *   - an untrusted peer is always the client (source PEER, address equal);
 *   - the client is an address (family 4 or 6) that prints and parses back
 *     to itself; PEER ⇒ it is the peer;
 *   - XFF: the client is not a trusted proxy unless every hop walked was;
 *     it appears in the header as printed or as written;
 *   - the answer is the same twice;
 *   - a CIDR that parses has bits <= 32/128, no host bits set, and prints
 *     and parses back to itself.
 */
#include "fuzz_common.h"
#include "core/config.h"
#include "http/clientaddr.h"

static struct om_cidr SET[3];
static bool set_ready;

static void setup(void)
{
    static const char *const s[] = {"127.0.0.0/8", "10.0.0.0/8", "fd00::/8"};
    for (int i = 0; i < 3; i++)
        FUZZ_CHECK(om_parse_cidr(&SET[i], s[i], strlen(s[i])) == OM_OK);
    set_ready = true;
}

static void check_cidr(const uint8_t *data, size_t size)
{
    char *buf = malloc(size > 0 ? size : 1), out[64];
    struct om_cidr c, again;
    if (buf == NULL)
        return;
    if (size > 0)
        memcpy(buf, data, size);
    if (om_parse_cidr(&c, buf, size) == OM_OK) {
        unsigned max = c.family == 4 ? 32 : 128;
        FUZZ_CHECK(c.family == 4 || c.family == 6);
        FUZZ_CHECK(c.bits <= max);
        for (unsigned i = c.bits; i < max; i++)
            FUZZ_CHECK((c.addr[i / 8] & (0x80u >> (i % 8))) == 0);
        om_format_cidr(&c, out, sizeof(out));
        FUZZ_CHECK(om_parse_cidr(&again, out, strlen(out)) == OM_OK);
        FUZZ_CHECK(memcmp(&c, &again, sizeof(c)) == 0);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct om_ipaddr peer, out, again, back;
    char printed[OM_CLIENT_ADDR_MAX];

    if (!set_ready)
        setup();
    if (size < 1)
        return 0;
    check_cidr(data + 1, size - 1);
    bool is_xff = data[0] & 1, trusted = data[0] & 2;
    char *v = fuzz_strdup(data + 1, size - 1);
    if (v == NULL)
        return 0;
    const char *p = trusted ? "127.0.0.1" : "203.0.113.1";
    FUZZ_CHECK(om_ipaddr_parse(&peer, p, strlen(p)) == OM_OK);
    om_client_source src = om_client_resolve(SET, 3, &peer, is_xff ? v : NULL,
                                             is_xff ? NULL : v, &out);
    om_client_source src2 = om_client_resolve(SET, 3, &peer, is_xff ? v : NULL,
                                              is_xff ? NULL : v, &again);
    FUZZ_CHECK(src == src2 && memcmp(&out, &again, sizeof(out)) == 0);
    if (!trusted)
        FUZZ_CHECK(src == OM_CLIENT_PEER);
    if (src == OM_CLIENT_PEER)
        FUZZ_CHECK(memcmp(&out, &peer, sizeof(out)) == 0);
    FUZZ_CHECK(out.family == 4 || out.family == 6);
    om_ipaddr_format(&out, printed, sizeof(printed));
    FUZZ_CHECK(om_ipaddr_parse(&back, printed, strlen(printed)) == OM_OK);
    FUZZ_CHECK(memcmp(&back, &out, sizeof(out)) == 0);
    FUZZ_CHECK(src != OM_CLIENT_XFF || is_xff);
    FUZZ_CHECK(src != OM_CLIENT_XREALIP || !is_xff);
    if (src == OM_CLIENT_XFF && om_ipaddr_in(SET, 3, &out)) {
        /* every hop trusted: the client is the leftmost entry */
        const char *comma = strchr(v, ',');
        FUZZ_CHECK(om_ipaddr_parse(&back, v, comma ? (size_t)(comma - v) : strlen(v)) == OM_OK);
        FUZZ_CHECK(memcmp(&back, &out, sizeof(out)) == 0);
    }
    free(v);
    return 0;
}
