/* clientaddr.c — trusted-proxy resolution of the client address
 * (clientaddr.h).  Addresses are parsed by inet_pton only; this file cuts
 * the X-Forwarded-For list at commas and trims blanks. */
#include "http/clientaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const unsigned char V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* ::ffff:a.b.c.d → a.b.c.d */
static void unmap(struct om_ipaddr *a)
{
    if (a->family == 6 && memcmp(a->a, V4_MAPPED, 12) == 0) {
        memmove(a->a, a->a + 12, 4);
        memset(a->a + 4, 0, 12);
        a->family = 4;
    }
}

int om_ipaddr_from_sockaddr(struct om_ipaddr *out, const struct sockaddr *sa)
{
    memset(out, 0, sizeof(*out));
    if (sa == NULL)
        return OM_ERR_INVALID;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        memcpy(out->a, &s4->sin_addr, 4);
        out->family = 4;
        return OM_OK;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(out->a, &s6->sin6_addr, 16);
        out->family = 6;
        unmap(out);
        return OM_OK;
    }
    return OM_ERR_INVALID;
}

int om_ipaddr_parse(struct om_ipaddr *out, const char *s, size_t len)
{
    char buf[OM_CLIENT_ADDR_MAX];

    memset(out, 0, sizeof(*out));
    while (len > 0 && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len) != NULL)
        return OM_ERR_INVALID;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, out->a) == 1) {
        out->family = 4;
        return OM_OK;
    }
    if (inet_pton(AF_INET6, buf, out->a) == 1) {
        out->family = 6;
        unmap(out);
        return OM_OK;
    }
    memset(out, 0, sizeof(*out));
    return OM_ERR_INVALID;
}

static bool in_cidr(const struct om_cidr *c, const struct om_ipaddr *a)
{
    unsigned full = c->bits / 8, rest = c->bits % 8;

    if (c->family != a->family)
        return false;
    if (memcmp(c->addr, a->a, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a->a[full] & mask) == c->addr[full];
}

bool om_ipaddr_in(const struct om_cidr *set, size_t n, const struct om_ipaddr *a)
{
    bool found = false;

    for (size_t i = 0; !found && i < n; i++)
        found = in_cidr(&set[i], a);
    return found;
}

void om_ipaddr_format(const struct om_ipaddr *a, char *buf, size_t len)
{
    if (len == 0)
        return;
    if ((a->family != 4 && a->family != 6) ||
        inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->a, buf, (socklen_t)len) == NULL)
        snprintf(buf, len, "-");
}

/* X-Forwarded-For: OM_OK with *out the client, or OM_ERR_INVALID. */
static int from_xff(const struct om_cidr *set, size_t n, const char *xff, struct om_ipaddr *out)
{
    size_t end = strnlen(xff, OM_XFF_MAX + 1);
    struct om_ipaddr hop;
    int rc = OM_ERR_INVALID;

    if (end > OM_XFF_MAX)
        return OM_ERR_INVALID;
    for (unsigned hops = 0; hops < OM_XFF_HOPS_MAX; hops++) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        if (om_ipaddr_parse(&hop, xff + start, end - start) != OM_OK)
            return OM_ERR_INVALID;
        *out = hop;
        rc = OM_OK;
        if (!om_ipaddr_in(set, n, &hop) || start == 0)
            return OM_OK; /* the first untrusted hop, or the leftmost */
        end = start - 1;  /* before the comma */
    }
    return rc == OM_OK ? OM_ERR_INVALID : rc; /* too many hops: ignored */
}

om_client_source om_client_resolve(const struct om_cidr *set, size_t n,
                                   const struct om_ipaddr *peer, const char *xff,
                                   const char *xrealip, struct om_ipaddr *out)
{
    *out = *peer;
    if (n == 0 || !om_ipaddr_in(set, n, peer))
        return OM_CLIENT_PEER;
    if (xff != NULL && from_xff(set, n, xff, out) == OM_OK)
        return OM_CLIENT_XFF;
    *out = *peer;
    if (xrealip != NULL && strnlen(xrealip, OM_CLIENT_ADDR_MAX) < OM_CLIENT_ADDR_MAX &&
        om_ipaddr_parse(out, xrealip, strlen(xrealip)) == OM_OK)
        return OM_CLIENT_XREALIP;
    *out = *peer;
    return OM_CLIENT_PEER;
}
