/* v2_resolve.c — which candidate upstream(s) a job tries for a name, and
 * remembering what probing found (DESIGN.md "Routing a name", step 4).
 *
 * A search decision is cached in the index per requested name, so a name
 * does not flip between upstreams; a miss ("not on upstream X") is cached
 * for negative_ttl so misses don't hammer upstreams.  A decision is only
 * recorded when every earlier candidate said "not here" — if one of them
 * merely failed (down, 5xx), the winner serves this request but the name
 * is searched again next time.
 */
#include "v2/v2.h"

#include <stdio.h>
#include <string.h>

#include "cache/mcache.h"
#include "core/log.h"

bool om_v2_route_lookup(struct om_server *srv, const char *name, char *up, size_t upsz,
                        char *canonical, size_t cansz)
{
    if (om_mcache_route_get(srv->mcache, name, up, upsz, canonical, cansz))
        return true;
    if (om_index_route_get(srv->index, name, up, upsz, canonical, cansz) != OM_OK)
        return false;
    om_mcache_route_put(srv->mcache, name, up, canonical);
    return true;
}

size_t om_v2_candidates(struct om_req *req, size_t order[OM_MAX_UPSTREAMS], bool *decided)
{
    struct om_server *srv = req->srv;
    const struct om_route *rt = &req->route;
    *decided = true;
    if (rt->kind == OM_ROUTE_FIXED) {
        order[0] = 0;
        return 1;
    }
    char up[64], canon[OM_NAME_MAX + 1];
    if (om_v2_route_lookup(srv, req->p.name, up, sizeof(up), canon, sizeof(canon))) {
        for (size_t i = 0; i < rt->n; i++) {
            if (strcmp(srv->cfg->upstreams[rt->c[i].upstream].name, up) == 0) {
                order[0] = i;
                return 1;
            }
        }
    }
    *decided = false;
    size_t k = 0;
    int64_t now = om_now_ms();
    for (size_t i = 0; i < rt->n; i++) {
        const char *uname = srv->cfg->upstreams[rt->c[i].upstream].name;
        if (!om_index_negative_get(srv->index, req->p.name, uname, now))
            order[k++] = i;
    }
    return k;
}

void om_v2_note_probe(struct om_req *req, size_t i, bool found, bool decided)
{
    struct om_server *srv = req->srv;
    const struct om_route_candidate *c = &req->route.c[i];
    const char *uname = srv->cfg->upstreams[c->upstream].name;
    if (found) {
        snprintf(req->canonical, sizeof(req->canonical), "%s", c->canonical);
        snprintf(req->upstream, sizeof(req->upstream), "%s", uname);
        if (!decided) {
            om_index_route_put(srv->index, req->p.name, uname, c->canonical, om_now_ms());
            om_mcache_route_put(srv->mcache, req->p.name, uname, c->canonical);
            om_log_kv(OM_LOG_INFO, "route decided", "name", req->p.name, "upstream", uname,
                      "canonical", c->canonical, "why", "search order: first upstream that has it",
                      NULL);
        }
    } else if (!decided) {
        om_index_negative_put(srv->index, req->p.name, uname,
                              om_now_ms() + (int64_t)srv->cfg->negative_ttl_ms);
        om_log_kv(OM_LOG_DEBUG, "route miss", "name", req->p.name, "upstream", uname, NULL);
    }
}
