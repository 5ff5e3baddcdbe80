/* v2_resolve.c — which candidate upstream(s) a job tries for a name, and
 * remembering what probing found (DESIGN.md "Routing a name", step 4).
 *
 * A search decision is cached in the index per requested name, so a name
 * does not flip between upstreams; a miss ("not on upstream X") is cached
 * for negative_ttl so misses don't hammer upstreams.  A decision is only
 * recorded when every earlier candidate said "not here" — if one of them
 * merely failed (down, 5xx), the winner serves this request but the name
 * is searched again next time.
 *
 * A miss of an object is not a miss of the repository.  "Not here" is
 * concluded only from an answer about the repository (om_v2_repo_evidence):
 * NAME_UNKNOWN, a 401/403 after auth (Docker Hub answers a repository that
 * does not exist with a token that grants nothing), a 404 of the tag list.
 * A MANIFEST_UNKNOWN or BLOB_UNKNOWN, or a bodiless 404 (HEAD), says
 * nothing about the repository — distribution answers MANIFEST_UNKNOWN for
 * a repository it has never heard of — so the job asks the tag list
 * (om_v2_repo_probe): if the repository is there, the name is routed there
 * and only that object is missing.  A candidate whose repository the index
 * already knows (cached content) is never skipped for a negative entry.
 */
#include "v2/v2.h"

#include <stdio.h>
#include <string.h>

#include "cache/mcache.h"
#include "core/log.h"

static int known_repo_cb(void *ud, const char *s)
{
    (void)ud;
    (void)s;
    return 0;
}

/* Does the index hold content of this canonical repository? */
static bool repo_known(struct om_server *srv, const char *canonical)
{
    return om_index_tags_list(srv->index, canonical, NULL, 0, known_repo_cb, NULL) == OM_OK;
}

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
        if (!om_index_negative_get(srv->index, req->p.name, uname, now) ||
            repo_known(srv, rt->c[i].canonical))
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

om_repo_evidence om_v2_repo_evidence(long status, const char *body, size_t len)
{
    char code[64];
    if (status >= 200 && status < 300)
        return OM_REPO_PRESENT;
    if (status == 401 || status == 403)
        return OM_REPO_ABSENT;
    if (status == 404) {
        if (om_up_error_code(body, len, code, sizeof(code)) && strcmp(code, "NAME_UNKNOWN") == 0)
            return OM_REPO_ABSENT;
        return OM_REPO_UNSURE;
    }
    return OM_REPO_UNAVAILABLE;
}

/* Keep only the status: a repository's whole tag list can be megabytes
 * (distribution ignores n). */
static int probe_headers(void *ud, const struct om_up_resp *resp)
{
    *(long *)ud = resp->status;
    return resp->status == 200 ? OM_ERR_TOOBIG : OM_OK;
}

om_repo_evidence om_v2_repo_probe(struct om_req *req, size_t ci)
{
    struct om_server *srv = req->srv;
    const struct om_route_candidate *c = &req->route.c[ci];
    char path[OM_NAME_MAX + 32];
    long status = 0;
    snprintf(path, sizeof(path), "/v2/%s/tags/list?n=1", c->remote);
    struct om_up_req ur = {.method = "GET", .path = path, .accept = "application/json",
                           /* never buffered: on_headers stops a 200, error
                              bodies are cut at 64 KiB */
                           .scope_repo = c->remote, .max_body = 64u << 20,
                           .on_headers = probe_headers, .ud = &status, .cancel = &srv->cancel};
    struct om_up_resp resp;
    int err = om_upstream_do(srv->up[c->upstream], &ur, &resp);
    if (err == OM_OK)
        status = resp.status;
    else if (err != OM_ERR_TOOBIG || status != 200)
        status = 0;
    om_up_resp_clear(&resp);
    om_repo_evidence ev = status == 200                                        ? OM_REPO_PRESENT
                          : (status == 404 || status == 401 || status == 403) ? OM_REPO_ABSENT
                                                                               : OM_REPO_UNAVAILABLE;
    om_log_kv(OM_LOG_DEBUG, "route probe", "name", req->p.name, "upstream",
              srv->cfg->upstreams[c->upstream].name, "repository",
              ev == OM_REPO_PRESENT ? "present" : ev == OM_REPO_ABSENT ? "absent" : "unknown",
              NULL);
    return ev;
}

om_repo_evidence om_v2_repo_miss(struct om_req *req, size_t ci, long status, const char *body,
                                 size_t len)
{
    om_repo_evidence ev = om_v2_repo_evidence(status, body, len);
    return ev == OM_REPO_UNSURE ? om_v2_repo_probe(req, ci) : ev;
}

unsigned om_v2_lane(const struct om_req *req)
{
    struct om_server *srv = req->srv;
    const struct om_route *rt = &req->route;
    char up[64], canon[OM_NAME_MAX + 1];
    const char *known = req->upstream;
    if (rt->kind == OM_ROUTE_FIXED && rt->n > 0)
        return (unsigned)rt->c[0].upstream;
    /* A search whose decision is known: the cache path looked it up, or
     * the memory has it (no index query on the HTTP thread). */
    if (known[0] == '\0' &&
        om_mcache_route_get(srv->mcache, req->p.name, up, sizeof(up), canon, sizeof(canon)))
        known = up;
    for (size_t i = 0; known[0] != '\0' && i < rt->n; i++)
        if (strcmp(srv->cfg->upstreams[rt->c[i].upstream].name, known) == 0)
            return (unsigned)rt->c[i].upstream;
    return srv->lane_search;
}
