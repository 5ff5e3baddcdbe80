/* admin_route.c — GET /api/v1/route?name=&ns=: the route explainer.  How
 * the mirror would route a name (core/route.c: ?ns=, explicit prefix,
 * rewrites, search order), what it remembers about it (the search decision
 * and negative entries in the index), and whether policy.allow/deny let
 * each candidate through.  Read-only, on the HTTP thread: memory and one
 * index read per candidate, no upstream.  The contract: docs/admin-api.md.
 */
#include "admin/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* ---- GET /api/v1/route?name=&ns= ----------------------------------------------------- */

static const char *why_code(om_route_why w)
{
    switch (w) {
    case OM_WHY_NS: return "ns";
    case OM_WHY_PREFIX: return "prefix";
    case OM_WHY_REWRITE: return "rewrite";
    default: return "search";
    }
}

enum MHD_Result om_admin_route(struct om_req *req, const char *rest)
{
    struct om_server *srv = req->srv;
    const struct om_config *cfg = srv->cfg;
    char name[OM_NAME_MAX + 2], ns[256], why[512], up[64], canon[OM_NAME_MAX + 1];
    struct om_route rt;
    json_t *doc, *cands, *vals, *decided = NULL;
    int64_t now = om_now_ms();
    int err;
    (void)rest;

    err = om_admin_arg(req, "name", name, sizeof(name));
    if (err != OM_OK || !om_ref_request_name_valid(name, strlen(name)))
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID",
                                    "name: a repository name as a client writes it, "
                                    "e.g. nginx or quay.io/coreos/etcd");
    if ((err = om_admin_arg(req, "ns", ns, sizeof(ns))) == OM_ERR_NOTFOUND)
        ns[0] = '\0';
    else if (err != OM_OK)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID", "invalid ns");

    err = om_route_resolve(&rt, cfg, name, ns[0] ? ns : NULL);
    doc = json_object();
    cands = json_array();
    om_json_set(doc, "name", om_json_str(name));
    om_json_set(doc, "ns", ns[0] ? om_json_str(ns) : json_null());
    om_json_set(doc, "why_code", json_string(why_code(rt.why)));
    if (rt.why == OM_WHY_REWRITE && rt.rewrite_index >= 0 &&
        (size_t)rt.rewrite_index < cfg->n_rewrites) {
        const struct om_rewrite_cfg *rw = &cfg->rewrites[rt.rewrite_index];
        om_json_set(doc, "rewrite", json_pack("{s:o, s:o}", "match", om_json_str(rw->match),
                                              "target", om_json_str(rw->target)));
    }
    /* why: a sentence for people reading the JSON; why_code and why_values
     * the same as data, which the UI renders in the reader's language. */
    vals = json_object();
    if (ns[0] != '\0')
        om_json_set(vals, "ns", om_json_str(ns));
    if (err != OM_OK) {
        /* Say why nothing serves this name; no upstream is contacted. */
        const char *reason;
        if (err == OM_ERR_NOTFOUND && rt.why == OM_WHY_NS) {
            reason = "unknown_ns";
            snprintf(why, sizeof(why), "ns=%s names no configured upstream or alias", ns);
        } else if (err == OM_ERR_NOTFOUND && rt.why == OM_WHY_PREFIX) {
            reason = "unknown_registry";
            snprintf(why, sizeof(why), "the first component of the name looks like a registry "
                                       "host that is not configured");
            snprintf(canon, sizeof(canon), "%.*s", (int)strcspn(name, "/"), name);
            om_json_set(vals, "registry", om_json_str(canon));
        } else if (err == OM_ERR_NOTFOUND) {
            reason = "empty_search_order";
            snprintf(why, sizeof(why), "the search order is empty");
        } else {
            reason = "invalid_result";
            snprintf(why, sizeof(why), "%s produced an invalid or over-long name",
                     om_route_why_str(rt.why));
        }
        om_json_set(vals, "reason", json_string(reason));
        om_json_set(doc, "kind", json_string("none"));
        om_json_set(doc, "why", om_json_str(why));
        om_json_set(doc, "why_values", vals);
        om_json_set(doc, "candidates", cands);
        om_json_set(doc, "decided", json_null());
        return om_admin_reply_json(req, MHD_HTTP_OK, doc);
    }

    const char *first = cfg->upstreams[rt.c[0].upstream].name;
    om_json_set(vals, "upstream", om_json_str(first));
    switch (rt.why) {
    case OM_WHY_NS:
        snprintf(why, sizeof(why), "ns=%s names upstream %s", ns, first);
        break;
    case OM_WHY_PREFIX:
        snprintf(why, sizeof(why), "explicit prefix: the first component names upstream %s", first);
        break;
    case OM_WHY_REWRITE:
        snprintf(why, sizeof(why), "rewrite rule %s -> %s",
                 rt.rewrite_index >= 0 ? cfg->rewrites[rt.rewrite_index].match : "?",
                 rt.rewrite_index >= 0 ? cfg->rewrites[rt.rewrite_index].target : "?");
        if (rt.rewrite_index >= 0) {
            om_json_set(vals, "match", om_json_str(cfg->rewrites[rt.rewrite_index].match));
            om_json_set(vals, "target", om_json_str(cfg->rewrites[rt.rewrite_index].target));
        }
        break;
    default:
        snprintf(why, sizeof(why), "search order: the first upstream that has the name wins, "
                                   "and the choice is remembered");
        break;
    }
    om_json_set(doc, "why_values", vals);
    bool cached = rt.kind == OM_ROUTE_SEARCH &&
                  om_index_route_get(srv->index, name, up, sizeof(up), canon, sizeof(canon)) == OM_OK;
    /* policy.*: the verdict for every candidate (a refused one is never
     * asked), and for the name as a whole: the decided candidate's, else
     * the first allowed one's, else the first's. */
    struct om_policy *pol = om_server_policy(srv);
    json_t *overall = NULL, *first_pol = NULL;
    for (size_t i = 0; i < rt.n; i++) {
        const char *uname = cfg->upstreams[rt.c[i].upstream].name;
        bool neg = rt.kind == OM_ROUTE_SEARCH && om_index_negative_get(srv->index, name, uname, now);
        json_t *pj = om_admin_policy_json(pol, rt.c[i].canonical);
        if (first_pol == NULL)
            first_pol = pj;
        if (overall == NULL && json_is_true(json_object_get(pj, "allowed")))
            overall = pj;
        if (cached && strcmp(uname, up) == 0)
            overall = pj;
        json_array_append_new(cands, json_pack("{s:o, s:o, s:o, s:o, s:b, s:O}", "upstream",
                                               om_json_str(uname), "url",
                                               om_json_str(cfg->upstreams[rt.c[i].upstream].url),
                                               "remote", om_json_str(rt.c[i].remote), "canonical",
                                               om_json_str(rt.c[i].canonical), "negative", neg,
                                               "policy", pj));
        json_decref(pj); /* the candidate holds it (s:O took a reference) */
        if (rt.kind == OM_ROUTE_FIXED && i == 0) {
            decided = json_pack("{s:o, s:o, s:s}", "upstream", om_json_str(uname), "canonical",
                                om_json_str(rt.c[0].canonical), "source", "route");
        } else if (cached && strcmp(uname, up) == 0 && decided == NULL) {
            /* v2_resolve.c only honours a remembered decision that is
             * still one of the candidates; so do we. */
            decided = json_pack("{s:o, s:o, s:s}", "upstream", om_json_str(uname), "canonical",
                                om_json_str(canon), "source", "remembered");
        }
    }
    overall = overall != NULL ? overall : first_pol;
    om_json_set(doc, "policy", overall != NULL ? json_incref(overall) : json_null());
    om_policy_unref(pol);
    om_json_set(doc, "kind", json_string(rt.kind == OM_ROUTE_FIXED ? "fixed" : "search"));
    om_json_set(doc, "why", om_json_str(why));
    om_json_set(doc, "candidates", cands);
    om_json_set(doc, "decided", decided != NULL ? decided : json_null());
    return om_admin_reply_json(req, MHD_HTTP_OK, doc);
}

