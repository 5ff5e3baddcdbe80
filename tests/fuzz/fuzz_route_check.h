/* fuzz_route_check.h — the invariants of om_route_resolve (src/route.c),
 * shared by fuzz_route.c (fixed configs, fuzzed names) and fuzz_config.c
 * (fuzzed configs, fixed names).
 *
 * For a name the server can route (om_ref_request_name_valid: a repository
 * name, optionally after "host:port/"):
 *   - the result is OM_OK, OM_ERR_NOTFOUND or OM_ERR_INVALID, n == 0 on
 *     error, n >= 1 on OM_OK; FIXED has exactly one candidate;
 *   - every candidate's upstream is a configured one, its canonical name is
 *     "<that upstream's name>/<remote>", and both the remote and the
 *     canonical name are valid repository names (they become store keys,
 *     index rows and upstream URLs);
 *   - a Docker Hub remote always has a '/' ("library/x", never "x");
 *   - ns picks exactly the upstream om_config_upstream_find names, and an
 *     ns naming none is OM_ERR_NOTFOUND (no unconfigured host, ever);
 *   - without ns, a first component that looks like a host but is no
 *     configured upstream is OM_ERR_NOTFOUND, never a search;
 *   - a search lists each upstream once, in search_order, with the name
 *     unchanged (but for "library/").
 * `strict_canonical` = false turns the canonical-name check into a warning
 * (see fuzz_known).
 */
#ifndef OM_FUZZ_ROUTE_CHECK_H
#define OM_FUZZ_ROUTE_CHECK_H

#include <strings.h>

#include "fuzz_common.h"
#include "fuzz_known.h"
#include "core/ref.h"
#include "core/route.h"

static bool frc_looks_like_host(const char *s, size_t len)
{
    return memchr(s, '.', len) != NULL || memchr(s, ':', len) != NULL ||
           (len == 9 && strncasecmp(s, "localhost", 9) == 0);
}

static void fuzz_route_check(const struct om_config *cfg, const char *name, const char *ns,
                             bool strict_canonical)
{
    struct om_route r;
    size_t nlen = strlen(name);
    const char *slash = strchr(name, '/');
    size_t clen = slash ? (size_t)(slash - name) : nlen;
    bool has_ns = ns != NULL && ns[0] != '\0';
    int rc;

    memset(&r, 0x5a, sizeof(r));
    rc = om_route_resolve(&r, cfg, name, ns);
    FUZZ_CHECK(rc == OM_OK || rc == OM_ERR_NOTFOUND || rc == OM_ERR_INVALID);
    /* server/dispatch.c routes what om_v2_path_parse accepted: a name, or
     * "host:port/" + a name (om_ref_request_name_valid). */
    if (!om_ref_request_name_valid(name, nlen))
        return; /* outside the contract: only "no crash" applies */
    if (rc != OM_OK) {
        FUZZ_CHECK(r.n == 0);
    } else {
        FUZZ_CHECK(r.n >= 1 && r.n <= OM_MAX_UPSTREAMS);
        FUZZ_CHECK(r.kind == OM_ROUTE_FIXED || r.kind == OM_ROUTE_SEARCH);
        if (r.kind == OM_ROUTE_FIXED)
            FUZZ_CHECK(r.n == 1 && r.why != OM_WHY_SEARCH);
        else
            FUZZ_CHECK(r.why == OM_WHY_SEARCH);
        FUZZ_CHECK((r.why == OM_WHY_REWRITE) == (r.rewrite_index >= 0));
    }
    for (size_t i = 0; rc == OM_OK && i < r.n; i++) {
        const struct om_route_candidate *c = &r.c[i];
        const struct om_upstream_cfg *u;
        char want[2 * OM_NAME_MAX + 2];
        FUZZ_CHECK(c->upstream < cfg->n_upstreams);
        u = &cfg->upstreams[c->upstream];
        FUZZ_CHECK(strnlen(c->remote, sizeof(c->remote)) < sizeof(c->remote));
        FUZZ_CHECK(strnlen(c->canonical, sizeof(c->canonical)) < sizeof(c->canonical));
        snprintf(want, sizeof(want), "%s/%s", u->name, c->remote);
        FUZZ_CHECK_STREQ(c->canonical, want);
        FUZZ_CHECK(om_ref_name_valid(c->remote, strlen(c->remote)));
        if (strict_canonical)
            FUZZ_CHECK(om_ref_name_valid(c->canonical, strlen(c->canonical)));
        else
            FUZZ_KNOWN(om_ref_name_valid(c->canonical, strlen(c->canonical)),
                       "config accepts an upstream name that is not a repository-name "
                       "component (config_upstreams.c name_ok)");
        if (u->is_docker_hub)
            FUZZ_CHECK(strchr(c->remote, '/') != NULL);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(r.c[j].upstream != c->upstream);
    }

    if (has_ns) {
        const struct om_upstream_cfg *u = om_config_upstream_find(cfg, ns, strlen(ns));
        FUZZ_CHECK(r.why == OM_WHY_NS);
        if (u == NULL || strlen(ns) > OM_NAME_MAX)
            FUZZ_CHECK(rc == OM_ERR_NOTFOUND);
        else if (rc == OM_OK)
            FUZZ_CHECK(&cfg->upstreams[r.c[0].upstream] == u);
        return;
    }
    if (slash != NULL && om_config_upstream_find(cfg, name, clen) == NULL &&
        frc_looks_like_host(name, clen)) {
        FUZZ_CHECK(rc == OM_ERR_NOTFOUND && r.why == OM_WHY_PREFIX);
        return;
    }
    if (slash != NULL && om_config_upstream_find(cfg, name, clen) != NULL) {
        const struct om_upstream_cfg *u = om_config_upstream_find(cfg, name, clen);
        FUZZ_CHECK(r.why == OM_WHY_PREFIX);
        if (rc == OM_OK) {
            const char *rest = slash + 1, *rem = r.c[0].remote;
            FUZZ_CHECK(&cfg->upstreams[r.c[0].upstream] == u);
            if (strncmp(rem, "library/", 8) == 0 && strcmp(rem + 8, rest) == 0)
                FUZZ_CHECK(u->is_docker_hub && strchr(rest, '/') == NULL);
            else
                FUZZ_CHECK_STREQ(rem, rest);
        }
        return;
    }
    if (rc == OM_OK && r.why == OM_WHY_SEARCH) {
        size_t k = 0;
        for (size_t i = 0; i < cfg->n_search_order && k < r.n; i++) {
            size_t s = cfg->search_order[i];
            bool dup = false;
            for (size_t j = 0; j < i; j++)
                dup = dup || cfg->search_order[j] == s;
            if (dup || s >= cfg->n_upstreams)
                continue;
            FUZZ_CHECK(r.c[k].upstream == s);
            if (cfg->upstreams[s].is_docker_hub && slash == NULL) {
                FUZZ_CHECK(strncmp(r.c[k].remote, "library/", 8) == 0);
                FUZZ_CHECK_STREQ(r.c[k].remote + 8, name);
            } else {
                FUZZ_CHECK_STREQ(r.c[k].remote, name);
            }
            k++;
        }
        FUZZ_CHECK(k == r.n);
    }
}

#endif
