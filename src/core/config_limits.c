/* config_limits.c — the per-client keys of the limits section (issue 12,
 * part 3): trusted_proxies, max_clients, per_client and per_user, with
 * their parse, dump and free.  config_keys.c's limits table has a row for
 * each and calls om_cfg_limits_finish() once the whole section is read.
 *
 *   trusted_proxies  [CIDR, ..]        inet_pton, IPv4 and IPv6, at most 64
 *   per_client       requests_per_second burst downloads bytes_per_day
 *                    upstream_fetches_per_minute          (0 = no limit)
 *   per_user         {NAME: {the per_client keys}}  a key not given takes
 *                    per_client's value (per_client may come after it in
 *                    the file: filled in by om_cfg_limits_finish)
 *
 * What the limits do is http/limits.h's; who a client is, http/clientaddr.h.
 */
#include "core/config_int.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <libfyaml.h>

#define CL(m) offsetof(struct om_client_limits, m)
#define RATE_MAX 1000000u                 /* requests or fetches per unit */

static const struct om_cfg_field client_fields[] = {
    NUM("requests_per_second", K_UINT, CL(requests_per_second), 0, RATE_MAX),
    NUM("burst", K_UINT, CL(burst), 0, RATE_MAX),
    NUM("downloads", K_UINT, CL(downloads), 0, 65536),
    NUM("bytes_per_day", K_SIZE64, CL(bytes_per_day), 0, UINT64_MAX),
    NUM("upstream_fetches_per_minute", K_UINT, CL(upstream_fetches_per_minute), 0, RATE_MAX),
};

int om_parse_cidr(struct om_cidr *out, const char *s, size_t len)
{
    char buf[64];
    const char *slash = memchr(s, '/', len);
    size_t alen = slash != NULL ? (size_t)(slash - s) : len;
    unsigned bits = 0, max = 0;
    int rc = OM_ERR_INVALID;

    memset(out, 0, sizeof(*out));
    if (len >= sizeof(buf) || alen == 0)
        goto done;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = 4;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = 6;
        max = 128;
    } else
        goto done;
    bits = max;
    if (slash != NULL) {
        size_t dlen = len - alen - 1;
        if (dlen == 0 || dlen > 3)
            goto done;
        bits = 0;
        for (size_t i = 0; i < dlen; i++) {
            if (slash[1 + i] < '0' || slash[1 + i] > '9')
                goto done;
            bits = bits * 10 + (unsigned)(slash[1 + i] - '0');
        }
        if (bits > max)
            goto done;
    }
    out->bits = (unsigned char)bits;
    for (unsigned i = bits; i < max; i++)
        out->addr[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
    rc = OM_OK;
done:
    if (rc != OM_OK)
        memset(out, 0, sizeof(*out));
    return rc;
}

void om_format_cidr(const struct om_cidr *c, char *buf, size_t len)
{
    char a[INET6_ADDRSTRLEN] = "?";

    inet_ntop(c->family == 4 ? AF_INET : AF_INET6, c->addr, a, sizeof(a));
    snprintf(buf, len, "%s/%u", a, (unsigned)c->bits);
}

int om_cfg_h_trusted_proxies(struct om_cfg_ctx *c, void *obj, struct fy_node *key,
                             struct fy_node *v)
{
    struct om_config *cfg = obj;
    struct om_limits *l = &cfg->limits;
    struct fy_node *item;
    void *it = NULL;
    int rc = om_cfg_want_seq(c, key, v, "limits trusted_proxies");

    l->n_trusted_proxies = 0;
    while (rc == OM_OK && !om_cfg_is_null(v) && (item = fy_node_sequence_iterate(v, &it)) != NULL) {
        const char *s = NULL;
        size_t len = 0;
        char vb[80];
        if (l->n_trusted_proxies == OM_MAX_TRUSTED_PROXIES)
            rc = om_cfg_report(c, item, key, "at most %d limits trusted_proxies",
                               OM_MAX_TRUSTED_PROXIES);
        else if ((rc = om_cfg_scalar(c, key, item, &s, &len)) == OM_OK &&
                 om_parse_cidr(&l->trusted_proxies[l->n_trusted_proxies], s, len) != OM_OK)
            rc = om_cfg_report(c, item, key,
                               "limits trusted_proxies: \"%s\" is not an address or CIDR "
                               "(10.0.0.0/8, fd00::/8, 192.0.2.7)",
                               om_cfg_shown(vb, sizeof(vb), s, len));
        else if (rc == OM_OK)
            l->n_trusted_proxies++;
    }
    return rc;
}

int om_cfg_h_per_client(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;

    return om_cfg_walk_map(c, key, v, "limits per_client", client_fields,
                           OM_ARRAY_LEN(client_fields), &cfg->limits.per_client);
}

/* A per_user name is what a client authenticates as (req->user): printable,
 * no blank, no ':' (Basic credentials split there), no '"' or '\\' (the
 * dump quotes it as is). */
static bool user_name_ok(const char *s, size_t len)
{
    bool ok = len >= 1 && len <= OM_LIMIT_USER_MAX;

    for (size_t i = 0; ok && i < len; i++)
        ok = (unsigned char)s[i] > 0x20 && s[i] != 0x7f && s[i] != ':' && s[i] != '"' &&
             s[i] != '\\';
    return ok;
}

int om_cfg_h_per_user(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    struct om_limits *l = &cfg->limits;
    struct fy_node_pair *p;
    void *it = NULL;
    int rc = OM_OK;

    om_cfg_limits_clear_users(l);
    if (om_cfg_is_null(v))
        goto done;
    if (!fy_node_is_mapping(v) || fy_node_is_alias(v)) {
        rc = om_cfg_report(c, v, key, "limits per_user must be a mapping (user: {limits})");
        goto done;
    }
    while (rc == OM_OK && (p = fy_node_mapping_iterate(v, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p), *uv = fy_node_pair_value(p);
        const char *s = NULL;
        size_t len = 0;
        char vb[80];
        struct om_user_limits *u;

        if (l->n_per_user == OM_MAX_PER_USER) {
            rc = om_cfg_report(c, k, key, "at most %d limits per_user entries", OM_MAX_PER_USER);
            break;
        }
        if ((rc = om_cfg_scalar(c, key, k, &s, &len)) != OM_OK)
            break;
        if (!user_name_ok(s, len)) {
            rc = om_cfg_report(c, k, key,
                               "limits per_user: \"%s\" is not a user name (1..%d bytes, no "
                               "blank, control character, ':', '\"' or '\\\\')",
                               om_cfg_shown(vb, sizeof(vb), s, len), OM_LIMIT_USER_MAX);
            break;
        }
        for (size_t i = 0; rc == OM_OK && i < l->n_per_user; i++) {
            if (strlen(l->per_user[i].name) == len && memcmp(l->per_user[i].name, s, len) == 0)
                rc = om_cfg_report(c, k, key, "limits per_user: \"%s\" is listed twice",
                                   om_cfg_shown(vb, sizeof(vb), s, len));
        }
        if (rc != OM_OK)
            break;
        u = realloc(l->per_user, (l->n_per_user + 1) * sizeof(*u));
        if (u == NULL) {
            rc = OM_ERR_NOMEM;
            break;
        }
        l->per_user = u;
        u = &l->per_user[l->n_per_user];
        memset(u, 0, sizeof(*u));
        if ((u->name = strndup(s, len)) == NULL) {
            rc = OM_ERR_NOMEM;
            break;
        }
        l->n_per_user++; /* owned by the array now */
        snprintf(vb, sizeof(vb), "limits per_user %s", u->name);
        rc = om_cfg_walk_map(c, k, uv, vb, client_fields, OM_ARRAY_LEN(client_fields), &u->l);
        for (size_t i = 0; rc == OM_OK && i < OM_ARRAY_LEN(client_fields); i++) {
            if (!om_cfg_is_null(uv) && om_cfg_find_key(uv, client_fields[i].key, NULL) != NULL)
                u->given |= 1u << i;
        }
    }
done:
    return rc;
}

/* Copy field i of client_fields from src to dst. */
static void copy_field(struct om_client_limits *dst, const struct om_client_limits *src, size_t i)
{
    const struct om_cfg_field *f = &client_fields[i];
    size_t n = f->kind == K_SIZE64 ? sizeof(uint64_t) : sizeof(unsigned);

    memcpy((char *)dst + f->off, (const char *)src + f->off, n);
}

void om_cfg_limits_finish(struct om_limits *l)
{
    for (size_t u = 0; u < l->n_per_user; u++) {
        for (size_t i = 0; i < OM_ARRAY_LEN(client_fields); i++) {
            if (!(l->per_user[u].given & (1u << i)))
                copy_field(&l->per_user[u].l, &l->per_client, i);
        }
    }
}

void om_cfg_limits_clear_users(struct om_limits *l)
{
    for (size_t i = 0; i < l->n_per_user; i++)
        free(l->per_user[i].name);
    free(l->per_user);
    l->per_user = NULL;
    l->n_per_user = 0;
}

static void dump_client(FILE *f, const char *indent, const struct om_client_limits *cl)
{
    char sz[32];

    om_format_size(cl->bytes_per_day, sz, sizeof(sz));
    fprintf(f,
            "%srequests_per_second: %u\n%sburst: %u\n%sdownloads: %u\n%sbytes_per_day: \"%s\"\n"
            "%supstream_fetches_per_minute: %u\n",
            indent, cl->requests_per_second, indent, cl->burst, indent, cl->downloads, indent, sz,
            indent, cl->upstream_fetches_per_minute);
}

void om_cfg_limits_dump(FILE *f, const struct om_limits *l)
{
    char buf[80];

    fputs(l->n_trusted_proxies == 0 ? "  trusted_proxies: []\n" : "  trusted_proxies:\n", f);
    for (size_t i = 0; i < l->n_trusted_proxies; i++) {
        om_format_cidr(&l->trusted_proxies[i], buf, sizeof(buf));
        fprintf(f, "    - \"%s\"\n", buf);
    }
    fprintf(f, "  max_clients: %u\n  per_client:\n", l->max_clients);
    dump_client(f, "    ", &l->per_client);
    fputs(l->n_per_user == 0 ? "  per_user: {}\n" : "  per_user:\n", f);
    for (size_t i = 0; i < l->n_per_user; i++) {
        fprintf(f, "    \"%s\":\n", l->per_user[i].name);
        dump_client(f, "      ", &l->per_user[i].l);
    }
}
