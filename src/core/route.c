/* route.c — a requested repository name (+ ?ns=) → the upstream(s) to ask
 * and the name to ask them for.  See route.h for the contract and the order
 * of the steps; this comment says how they are carried out.
 *
 * Design:
 *   - Pure: reads the immutable config and the name, writes *out, nothing
 *     else.  No allocation; every name lives in the fixed buffers of
 *     struct om_route, so every length is checked against OM_NAME_MAX
 *     before a byte is copied.
 *   - Security: a candidate's upstream is always an index into
 *     cfg->upstreams, found by om_config_upstream_find().  A name whose first
 *     component looks like a host we do not know ("evil.example.com/x",
 *     "localhost/x") is refused outright instead of falling through to the
 *     search order, so a client never learns that a path prefix is treated
 *     as "just a Docker Hub user name" by accident.
 *   - Every candidate goes through add_candidate(), the one place where
 *     "library/" is added for one-component Docker Hub names and the
 *     canonical name "<upstream name>/<remote>" is built, so the rule holds
 *     for ns, prefix, rewrite and search alike.
 *   - Rewrite targets are expanded (\1..\9 → regex groups; a group that did
 *     not take part in the match expands to nothing) and then routed exactly
 *     like an explicit prefix, one level deep: a rewritten name is never
 *     rewritten again, so rules cannot loop.
 *
 * If you add a step: give it an om_route_why value and a sentence in
 * om_route_why_str(), and add its cases to tests/unit/test_route.c.
 */
#include "core/route.h"

#include <string.h>

#include "core/ref.h"

#define LIBRARY_PREFIX "library/"
#define REWRITE_GROUPS 10 /* \0 (whole match) .. \9 */

/* Index of the upstream called `s` (name or alias, case-insensitive). */
static bool find_upstream(const struct om_config *cfg, const char *s, size_t len, size_t *idx)
{
    const struct om_upstream_cfg *u = om_config_upstream_find(cfg, s, len);
    bool found = false;

    /* config.h promises a pointer into cfg->upstreams; the bound check
     * keeps a broken promise from indexing past the array. */
    if (u != NULL && (size_t)(u - cfg->upstreams) < cfg->n_upstreams) {
        *idx = (size_t)(u - cfg->upstreams);
        found = true;
    }
    return found;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* A first path component that can only mean a registry host (the rule
 * Docker's own reference parser uses): it has a '.' or a ':' or it is
 * "localhost". */
static bool looks_like_host(const char *s, size_t len)
{
    static const char localhost[] = "localhost";
    bool host = memchr(s, '.', len) != NULL || memchr(s, ':', len) != NULL;

    if (!host && len == sizeof(localhost) - 1) {
        host = true;
        for (size_t i = 0; i < len && host; i++)
            host = ascii_lower(s[i]) == localhost[i];
    }
    return host;
}

/* Append the candidate (upstream idx, remote name) to out, adding
 * "library/" for a one-component name on Docker Hub.  OM_ERR_INVALID when
 * the remote or canonical name would not fit in OM_NAME_MAX. */
static int add_candidate(struct om_route *out, const struct om_config *cfg, size_t idx,
                         const char *remote, size_t rlen)
{
    int err = OM_ERR_INVALID;
    const struct om_upstream_cfg *u = &cfg->upstreams[idx];
    struct om_route_candidate *c;
    bool lib;
    size_t plen, ulen, full;

    if (out->n >= OM_MAX_UPSTREAMS || u->name == NULL || rlen == 0)
        goto done;
    /* What goes upstream must be a plain repository name: a host:port
     * component left over (ns for one registry, a prefix naming another)
     * is refused here, never asked of the upstream or indexed. */
    if (!om_ref_name_valid(remote, rlen))
        goto done;
    lib = u->is_docker_hub && memchr(remote, '/', rlen) == NULL;
    plen = lib ? strlen(LIBRARY_PREFIX) : 0;
    ulen = strlen(u->name);
    full = plen + rlen;
    /* Each term is at most a few hundred bytes: the sum cannot wrap. */
    if (full > OM_NAME_MAX || ulen + 1 + full > OM_NAME_MAX)
        goto done;

    c = &out->c[out->n];
    c->upstream = idx;
    memcpy(c->remote, LIBRARY_PREFIX, plen);
    memcpy(c->remote + plen, remote, rlen);
    c->remote[full] = '\0';
    memcpy(c->canonical, u->name, ulen);
    c->canonical[ulen] = '/';
    memcpy(c->canonical + ulen + 1, c->remote, full + 1);
    out->n++;
    err = OM_OK;
done:
    return err;
}

/* Expand `target` with the groups of `m` (matched against `name`) into
 * buf.  OM_ERR_INVALID if the result does not fit in bufsz. */
static int expand_target(char *buf, size_t bufsz, const struct om_rewrite_cfg *rw,
                         const char *name, const regmatch_t *m, size_t *outlen)
{
    int err = OM_ERR_INVALID;
    size_t o = 0;

    for (const char *t = rw->target; *t != '\0'; t++) {
        const char *piece = t;
        size_t plen = 1;
        if (t[0] == '\\' && t[1] >= '1' && t[1] <= '9') {
            size_t g = (size_t)(t[1] - '0');
            t++;
            plen = 0;
            if (g <= rw->re.re_nsub && m[g].rm_so >= 0 && m[g].rm_eo >= m[g].rm_so) {
                piece = name + m[g].rm_so;
                plen = (size_t)(m[g].rm_eo - m[g].rm_so);
            }
        }
        if (plen >= bufsz - o)
            goto done;
        memcpy(buf + o, piece, plen);
        o += plen;
    }
    buf[o] = '\0';
    *outlen = o;
    err = OM_OK;
done:
    return err;
}

/* Route the name a rewrite produced: its first component must be a
 * configured upstream, the rest a valid repository name. */
static int route_rewritten(struct om_route *out, const struct om_config *cfg,
                           const struct om_rewrite_cfg *rw, const char *name,
                           const regmatch_t *m)
{
    int err = OM_ERR_INVALID;
    char buf[OM_NAME_MAX + 1];
    size_t len = 0, idx = 0;
    const char *slash;

    if (rw->target == NULL || expand_target(buf, sizeof(buf), rw, name, m, &len) != OM_OK)
        goto done;
    slash = memchr(buf, '/', len);
    if (slash == NULL || !find_upstream(cfg, buf, (size_t)(slash - buf), &idx))
        goto done;
    len -= (size_t)(slash + 1 - buf);
    if (!om_ref_name_valid(slash + 1, len))
        goto done;
    err = add_candidate(out, cfg, idx, slash + 1, len);
done:
    return err;
}

int om_route_resolve(struct om_route *out, const struct om_config *cfg,
                     const char *name, const char *ns)
{
    int err = OM_ERR_INVALID;
    size_t nlen, clen = 0, idx = 0, pidx = 0;
    const char *slash;

    out->kind = OM_ROUTE_FIXED;
    out->why = OM_WHY_SEARCH;
    out->rewrite_index = -1;
    out->n = 0;
    if (cfg == NULL || name == NULL)
        goto done;
    nlen = strnlen(name, OM_NAME_MAX + 1);
    if (nlen == 0 || nlen > OM_NAME_MAX)
        goto done;
    slash = memchr(name, '/', nlen);
    if (slash != NULL)
        clen = (size_t)(slash - name);

    /* 1. ?ns= decides the upstream; an empty ns counts as none. */
    if (ns != NULL && ns[0] != '\0') {
        size_t nslen = strnlen(ns, OM_NAME_MAX + 1);
        out->why = OM_WHY_NS;
        if (nslen > OM_NAME_MAX || !find_upstream(cfg, ns, nslen, &idx)) {
            err = OM_ERR_NOTFOUND;
            goto done;
        }
        /* A path-prefixed mirror behind containerd sends both
         * "/v2/docker.io/library/x" and ns=docker.io: drop the prefix. */
        if (slash != NULL && find_upstream(cfg, name, clen, &pidx) && pidx == idx)
            err = add_candidate(out, cfg, idx, slash + 1, nlen - clen - 1);
        else
            err = add_candidate(out, cfg, idx, name, nlen);
        goto done;
    }

    /* 2. an explicit upstream prefix, or refuse an unknown host. */
    if (slash != NULL) {
        if (find_upstream(cfg, name, clen, &idx)) {
            out->why = OM_WHY_PREFIX;
            err = add_candidate(out, cfg, idx, slash + 1, nlen - clen - 1);
            goto done;
        }
        if (looks_like_host(name, clen)) {
            out->why = OM_WHY_PREFIX;
            err = OM_ERR_NOTFOUND;
            goto done;
        }
    }

    /* 3. rewrite rules, first match wins. */
    for (size_t i = 0; i < cfg->n_rewrites && i < OM_MAX_REWRITES; i++) {
        regmatch_t m[REWRITE_GROUPS];
        if (regexec(&cfg->rewrites[i].re, name, REWRITE_GROUPS, m, 0) != 0)
            continue;
        out->why = OM_WHY_REWRITE;
        out->rewrite_index = (int)i;
        err = route_rewritten(out, cfg, &cfg->rewrites[i], name, m);
        goto done;
    }

    /* 4. the search order; each upstream once even if listed twice. */
    out->kind = OM_ROUTE_SEARCH;
    out->why = OM_WHY_SEARCH;
    for (size_t i = 0; i < cfg->n_search_order && i < OM_MAX_UPSTREAMS; i++) {
        size_t s = cfg->search_order[i];
        bool seen = false;
        if (s >= cfg->n_upstreams)
            continue;
        for (size_t j = 0; j < out->n && !seen; j++)
            seen = out->c[j].upstream == s;
        if (seen)
            continue;
        if ((err = add_candidate(out, cfg, s, name, nlen)) != OM_OK)
            goto done;
    }
    err = out->n > 0 ? OM_OK : OM_ERR_NOTFOUND;
done:
    if (err != OM_OK)
        out->n = 0;
    return err;
}

const char *om_route_why_str(om_route_why why)
{
    const char *s = "unknown";

    switch (why) {
    case OM_WHY_NS:
        s = "ns parameter";
        break;
    case OM_WHY_PREFIX:
        s = "explicit prefix";
        break;
    case OM_WHY_REWRITE:
        s = "rewrite rule";
        break;
    case OM_WHY_SEARCH:
        s = "search order";
        break;
    }
    return s;
}
