/* config_cluster.c — the value parser of cluster.redis (om_parse_redis_url,
 * config.h).  The cluster.* keys' table rows and their checks across keys
 * are in config_keys.c (a block of their own); the connection that uses
 * the parsed URL is cache/redis.c.
 *
 * Why here and not in cache/redis.c: `ocimirror check-config` must reject
 * a bad URL with FILE:LINE:COL like every other value, and core/ (the
 * config) cannot include cache/.  The parser is pure: it reads s[0..len)
 * (never past it, NUL or not), writes only *out, allocates nothing, so it
 * is tested with every truncated prefix of every case and can be fuzzed.
 *
 * Grammar (no %-decoding anywhere: what is written is what is sent):
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
 *       HOST  [A-Za-z0-9._-]+ or "[" IPv6 "]" ([0-9A-Fa-f:.]+)
 *       PORT  1..65535 (default 6379), DB 0..65535 (default 0; "/" alone = 0)
 *       the userinfo ends at the LAST '@' of the authority, which ends at
 *       the first '/' after it
 *   unix://PATH[?db=N]       PATH absolute, at most 107 bytes
 * Blanks and control characters are refused everywhere (they are never
 * part of a host or path, and a password with them belongs in
 * redis_password_file).
 */
#include "core/config_int.h"

#include <string.h>
#include <strings.h>

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* s[0..len) as a decimal number in [lo, hi] (1..5 digits). */
static bool parse_num(const char *s, size_t len, unsigned lo, unsigned hi, unsigned *out)
{
    unsigned long v = 0;
    bool ok = len >= 1 && len <= 5;

    for (size_t i = 0; ok && i < len; i++) {
        ok = is_digit(s[i]);
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    ok = ok && v >= lo && v <= hi;
    if (ok)
        *out = (unsigned)v;
    return ok;
}

static bool host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) || ch == '.' ||
           ch == '-' || ch == '_';
}

static bool v6_char(char ch)
{
    return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') || ch == ':' ||
           ch == '.';
}

/* Copy s[0..len) into a buffer of cap bytes (NUL-terminated). */
static bool copy_to(char *dst, size_t cap, const char *s, size_t len)
{
    bool ok = len < cap;

    if (ok) {
        memcpy(dst, s, len);
        dst[len] = '\0';
    }
    return ok;
}

/* "unix://" already consumed: PATH[?db=N]. */
static const char *parse_unix(struct om_redis_url *u, const char *s, size_t len)
{
    const char *q = memchr(s, '?', len);
    size_t plen = q != NULL ? (size_t)(q - s) : len;

    u->is_unix = true;
    if (plen == 0 || s[0] != '/')
        return "needs an absolute socket path (unix:///run/redis/redis.sock)";
    if (!copy_to(u->path, sizeof(u->path), s, plen))
        return "has a socket path longer than 107 bytes";
    if (q != NULL) {
        size_t qlen = len - plen - 1;
        if (qlen < 3 || memcmp(q + 1, "db=", 3) != 0 ||
            !parse_num(q + 4, qlen - 3, 0, OM_REDIS_DB_MAX, &u->db))
            return "may only end in ?db=N (N from 0 to 65535)";
    }
    return NULL;
}

/* "redis://" already consumed. */
static const char *parse_tcp(struct om_redis_url *u, const char *s, size_t len)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash != NULL ? (size_t)(slash - s) : len; /* the authority */
    const char *at = memrchr(s, '@', alen);
    const char *h = s, *port = NULL;
    size_t hlen;

    if (at != NULL) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        if (colon == NULL)
            return "needs USER:PASSWORD@ or :PASSWORD@ before the host (a bare USER@ has no "
                   "password)";
        if (!copy_to(u->user, sizeof(u->user), s, (size_t)(colon - s)) ||
            !copy_to(u->password, sizeof(u->password), colon + 1, (size_t)(at - colon - 1)))
            return "has a user or password longer than 512 bytes";
        if (u->password[0] == '\0')
            return "has an empty password (leave out \":@\", or give redis_password_file)";
        h = at + 1;
    }
    hlen = alen - (size_t)(h - s);
    if (hlen > 0 && h[0] == '[') {
        const char *close = memchr(h, ']', hlen);
        if (close == NULL || close == h + 1)
            return "has an unclosed or empty [IPv6] address";
        for (const char *p = h + 1; p < close; p++) {
            if (!v6_char(*p))
                return "has a bad character in its [IPv6] address";
        }
        if (!copy_to(u->host, sizeof(u->host), h + 1, (size_t)(close - h - 1)))
            return "has a host longer than 255 bytes";
        if (close + 1 < h + hlen) {
            if (close[1] != ':')
                return "needs ':' and a port after the [IPv6] address";
            port = close + 2;
        }
    } else {
        const char *colon = memchr(h, ':', hlen);
        size_t nlen = colon != NULL ? (size_t)(colon - h) : hlen;
        if (nlen == 0)
            return "needs a host (redis://HOST:PORT/DB)";
        for (size_t i = 0; i < nlen; i++) {
            if (!host_char(h[i]))
                return "has a bad character in its host";
        }
        if (!copy_to(u->host, sizeof(u->host), h, nlen))
            return "has a host longer than 255 bytes";
        port = colon != NULL ? colon + 1 : NULL;
    }
    u->port = OM_REDIS_PORT_DEFAULT;
    if (port != NULL && !parse_num(port, (size_t)(h + hlen - port), 1, 65535, &u->port))
        return "needs a port from 1 to 65535 after ':'";
    if (slash != NULL && slash + 1 < s + len &&
        !parse_num(slash + 1, (size_t)(s + len - slash - 1), 0, OM_REDIS_DB_MAX, &u->db))
        return "needs a database number from 0 to 65535 after '/'";
    return NULL;
}

int om_parse_redis_url(struct om_redis_url *out, const char *s, size_t len, const char **why)
{
    const char *w = NULL;

    memset(out, 0, sizeof(*out));
    if (s == NULL || len == 0) {
        w = "is empty";
    } else if (len > OM_REDIS_URL_MAX) {
        w = "is longer than 1024 bytes";
    } else {
        for (size_t i = 0; w == NULL && i < len; i++) {
            if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
                w = "holds a blank or control character";
        }
    }
    if (w == NULL && len >= 8 && strncasecmp(s, "redis://", 8) == 0)
        w = parse_tcp(out, s + 8, len - 8);
    else if (w == NULL && len >= 7 && strncasecmp(s, "unix://", 7) == 0)
        w = parse_unix(out, s + 7, len - 7);
    else if (w == NULL && len >= 9 && strncasecmp(s, "rediss://", 9) == 0)
        w = "asks for TLS (rediss://), which the Redis client here (hiredis 0.14) cannot do";
    else if (w == NULL)
        w = "must start with redis:// or unix://";
    if (w != NULL) {
        explicit_bzero(out, sizeof(*out)); /* may hold part of a password */
        memset(out, 0, sizeof(*out));
    }
    *why = w;
    return w == NULL ? OM_OK : OM_ERR_INVALID;
}
