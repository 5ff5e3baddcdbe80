/* clientaddr.h — who the client of a request is, when the mirror may sit
 * behind reverse proxies (limits.trusted_proxies).
 *
 * The TCP peer is the client unless it is inside one of the trusted CIDRs;
 * only then are X-Forwarded-For and X-Real-IP believed:
 *   - X-Forwarded-For "a, b, c": walked from the right (the hop our peer
 *     added last); the first address that is not itself a trusted proxy is
 *     the client; if every one is trusted, the leftmost is.  What lies left
 *     of the client is never parsed (a client can put anything there).
 *   - otherwise X-Real-IP, one address;
 *   - otherwise, or when the value that would decide is malformed (not an
 *     address inet_pton takes, longer than OM_XFF_MAX bytes, more than
 *     OM_XFF_HOPS_MAX hops walked), the peer.
 * A spoofed header from an untrusted peer therefore changes nothing.
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack listener
 * reports for IPv4 peers) are handled as the IPv4 address.
 *
 * Pure: no allocation, no I/O, no global state; thread-safe.  Only
 * inet_pton/inet_ntop parse and print addresses; this file only splits the
 * list.  The connection caps (limits.max_connections_per_ip) stay on the
 * TCP peer: they are enforced before any header is read.
 */
#ifndef OM_HTTP_CLIENTADDR_H
#define OM_HTTP_CLIENTADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/config.h"

#define OM_CLIENT_ADDR_MAX 46   /* INET6_ADDRSTRLEN: a printed address + NUL */
#define OM_XFF_MAX 4096         /* X-Forwarded-For / X-Real-IP bytes looked at */
#define OM_XFF_HOPS_MAX 32      /* entries walked from the right */

struct om_ipaddr {
    unsigned char a[16];        /* network order; IPv4 in the first 4 bytes */
    unsigned char family;       /* 4 or 6; 0 = none */
};

/* Where the resolved client came from. */
typedef enum { OM_CLIENT_PEER, OM_CLIENT_XFF, OM_CLIENT_XREALIP } om_client_source;

/* The address of a socket address (AF_INET / AF_INET6; mapped IPv4 made
 * IPv4).  OM_ERR_INVALID for another family or NULL. */
int om_ipaddr_from_sockaddr(struct om_ipaddr *out, const struct sockaddr *sa);
/* One address from s[0..len), blanks around it allowed ("10.0.0.7",
 * " 2001:db8::1").  OM_OK or OM_ERR_INVALID (then *out is zeroed). */
int om_ipaddr_parse(struct om_ipaddr *out, const char *s, size_t len);
/* Is a inside one of set[0..n)? */
bool om_ipaddr_in(const struct om_cidr *set, size_t n, const struct om_ipaddr *a);
/* a printed ("10.0.0.7", "2001:db8::1") into buf (OM_CLIENT_ADDR_MAX);
 * "-" for a zeroed address. */
void om_ipaddr_format(const struct om_ipaddr *a, char *buf, size_t len);

/* The client of a request from peer, with the header values as received
 * (NULL = absent; NUL-terminated, as libmicrohttpd gives them), and the
 * trusted proxies set[0..n).  *out always set; returns where it came from. */
om_client_source om_client_resolve(const struct om_cidr *set, size_t n,
                                   const struct om_ipaddr *peer, const char *xff,
                                   const char *xrealip, struct om_ipaddr *out);

#endif
