/* v2_lists.c — the listing endpoints _catalog and referrers, and the
 * helpers every list endpoint shares (n/last, the Link header, a JSON
 * answer; declared in v2.h).  tags/list is in v2_tags.c.
 *
 * _catalog lists cached repositories under their canonical names.  referrers are proxied and
 * cached for tag_ttl; an upstream without the referrers API (404) is asked
 * for the OCI "tag schema" fallback (sha256-<hex>) and otherwise answers an
 * empty index, as the distribution spec allows.
 */
#include "v2/v2.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "http/req_limits.h"

#define INDEX_TYPE "application/vnd.oci.image.index.v1+json"
#define REFERRERS_MAX (4u * 1024 * 1024)

bool om_v2_paging_args(struct om_req *req, long *n, char *last, size_t lastsz)
{
    const char *ns = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "n");
    const char *ls = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "last");
    *n = -1;
    last[0] = '\0';
    if (ns != NULL && ns[0] != '\0') {
        char *end;
        long v = strtol(ns, &end, 10);
        if (*end != '\0' || v < 0)
            return false;
        *n = v > OM_V2_PAGE_MAX ? OM_V2_PAGE_MAX : v;
    }
    if (ls != NULL && om_url_decode(last, lastsz, ls, strlen(ls)) != OM_OK)
        return false;
    return true;
}

void om_v2_next_link(struct om_req *req, struct MHD_Response *r, const char *what, long n,
                          const char *last)
{
    char elast[OM_NAME_MAX * 3 + 1], ens[sizeof(req->ns) * 3 + 1];
    char link[2048];
    om_url_encode(elast, sizeof(elast), last, strlen(last));
    int k;
    if (req->p.kind == OM_V2_CATALOG)
        k = snprintf(link, sizeof(link), "</v2/_catalog?n=%ld&last=%s", n, elast);
    else
        k = snprintf(link, sizeof(link), "</v2/%s/%s?n=%ld&last=%s", req->p.name, what, n, elast);
    if (req->ns[0] != '\0' && k > 0 && (size_t)k < sizeof(link)) {
        om_url_encode(ens, sizeof(ens), req->ns, strlen(req->ns));
        k += snprintf(link + k, sizeof(link) - (size_t)k, "&ns=%s", ens);
    }
    if (k > 0 && (size_t)k < sizeof(link) - 16) {
        snprintf(link + k, sizeof(link) - (size_t)k, ">; rel=\"next\"");
        MHD_add_response_header(r, "Link", link);
    }
}

void om_v2_respond_json(struct om_req *req, json_t *doc, const char *ctype)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    if (s == NULL) {
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        return;
    }
    size_t len = strlen(s);
    req->resp = req->head ? om_http_head(ctype, len) : om_http_body(ctype, s, len);
    req->status = MHD_HTTP_OK;
    req->bytes = len;
    free(s);
}

struct list_acc {
    json_t *arr;
    char last[OM_NAME_MAX + 1];
    long count;
    const struct om_policy *policy;    /* _catalog: list only allowed names */
    long raw;                          /* names the index gave, listed or not */
    char raw_last[OM_NAME_MAX + 1];
};

static int collect(void *ud, const char *s)
{
    struct list_acc *a = ud;
    a->raw++;
    snprintf(a->raw_last, sizeof(a->raw_last), "%s", s);
    if (a->policy != NULL && om_policy_check(a->policy, s, NULL) != OM_POLICY_ALLOWED)
        return 0; /* policy.*: a refused name is not listed */
    json_array_append_new(a->arr, json_string(s));
    snprintf(a->last, sizeof(a->last), "%s", s);
    a->count++;
    return 0;
}

static enum MHD_Result queue(struct om_req *req)
{
    enum MHD_Result r = MHD_queue_response(req->conn, req->status, req->resp);
    MHD_destroy_response(req->resp);
    req->resp = NULL;
    return r;
}

static enum MHD_Result start_job(struct om_req *req, om_job_fn fn)
{
    if (!om_req_limit_upstream(req)) /* upstream work: charged before any contact */
        return queue(req);
    req->phase = 1;
    MHD_suspend_connection(req->conn);
    if (om_jobs_submit_lane(req->srv->jobs, om_v2_lane(req), fn, req) != OM_OK) {
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "mirror overloaded");
        om_req_job_done(req);
    }
    return MHD_YES;
}

/* ---- _catalog -------------------------------------------------------- */

enum MHD_Result om_v2_catalog(struct om_req *req)
{
    long n;
    char last[OM_NAME_MAX + 1];
    if (!om_v2_paging_args(req, &n, last, sizeof(last))) {
        om_req_error(req, MHD_HTTP_BAD_REQUEST, "PAGINATION_NUMBER_INVALID", "invalid n or last");
        return queue(req);
    }
    long want = n < 0 ? 100 : n;
    struct list_acc acc = {.arr = json_array()};
    bool more = false;
    if (want > 0) {
        /* With a policy some names are skipped: read on in batches (at most
         * 16, so a page costs bounded work) until the page is full. */
        acc.policy = om_policy_active(req->policy) ? req->policy : NULL;
        snprintf(acc.raw_last, sizeof(acc.raw_last), "%s", last);
        for (int batch = 0; batch < 16 && acc.count <= want; batch++) {
            acc.raw = 0;
            om_index_catalog(req->srv->index, acc.raw_last[0] ? acc.raw_last : NULL, want + 1,
                             collect, &acc);
            if (acc.raw < want + 1 || acc.policy == NULL)
                break;
        }
        if (acc.count > want) {
            json_array_remove(acc.arr, (size_t)want);
            more = true;
            const char *l = json_string_value(json_array_get(acc.arr, (size_t)want - 1));
            snprintf(acc.last, sizeof(acc.last), "%s", l ? l : "");
        }
    }
    json_t *doc = json_pack("{s:o}", "repositories", acc.arr);
    om_v2_respond_json(req, doc, "application/json");
    json_decref(doc);
    if (more && req->resp != NULL)
        om_v2_next_link(req, req->resp, "", want, acc.last);
    req->cache = OM_CACHE_HIT;
    return queue(req);
}

/* ---- referrers ------------------------------------------------------- */

static json_t *empty_index(void)
{
    return json_pack("{s:i, s:s, s:[]}", "schemaVersion", 2, "mediaType", INDEX_TYPE, "manifests");
}

/* Serve an index, filtered by ?artifactType= when given. Takes doc. */
static void respond_referrers(struct om_req *req, json_t *doc)
{
    const char *at = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "artifactType");
    char atype[256] = "";
    if (at != NULL && om_url_decode(atype, sizeof(atype), at, strlen(at)) != OM_OK)
        atype[0] = '\0';
    if (atype[0] != '\0') {
        json_t *keep = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(doc, "manifests"), i, m) {
            const char *t = json_string_value(json_object_get(m, "artifactType"));
            if (t != NULL && strcmp(t, atype) == 0)
                json_array_append(keep, m);
        }
        json_object_set_new(doc, "manifests", keep);
    }
    om_v2_respond_json(req, doc, INDEX_TYPE);
    if (atype[0] != '\0' && req->resp != NULL)
        MHD_add_response_header(req->resp, "OCI-Filters-Applied", "artifactType");
    json_decref(doc);
}

static json_t *parse_index(const char *buf, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(buf, len, 0, &jerr);
    if (doc == NULL || !json_is_array(json_object_get(doc, "manifests"))) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* GET path on candidate c; *doc set to a parsed index on 200. */
static long get_index(struct om_req *req, const struct om_route_candidate *c, const char *path,
                      json_t **doc)
{
    struct om_server *srv = req->srv;
    struct om_up_req ur = {.method = "GET", .path = path, .accept = INDEX_TYPE,
                           .scope_repo = c->remote, .max_body = REFERRERS_MAX,
                           .cancel = &srv->cancel};
    struct om_up_resp resp;
    int err = om_upstream_do(srv->up[c->upstream], &ur, &resp);
    long st = err == OM_OK ? resp.status : 0;
    *doc = NULL;
    if (st == 200) {
        *doc = parse_index(resp.body, resp.body_len);
        if (*doc == NULL)
            st = 502;
    }
    om_up_resp_clear(&resp);
    return st;
}

static void referrers_job(void *arg)
{
    struct om_req *req = arg;
    struct om_server *srv = req->srv;
    const om_digest *d = &req->p.ref.digest;
    size_t order[OM_MAX_UPSTREAMS];
    bool decided = false;
    size_t cnt = om_v2_candidates(req, order, &decided);
    json_t *doc = NULL;
    for (size_t k = 0; k < cnt && doc == NULL; k++) {
        const struct om_route_candidate *c = &req->route.c[order[k]];
        char *cached = NULL;
        size_t clen = 0;
        int64_t fetched = 0;
        bool have_cached = om_index_referrers_get(srv->index, c->canonical, d, &cached, &clen,
                                                  &fetched) == OM_OK;
        if (have_cached && om_now_ms() - fetched < (int64_t)srv->cfg->tag_ttl_ms) {
            doc = parse_index(cached, clen);
            free(cached);
            req->cache = OM_CACHE_HIT;
            snprintf(req->canonical, sizeof(req->canonical), "%s", c->canonical);
            break;
        }
        char path[OM_NAME_MAX + OM_DIGEST_MAX + 64];
        snprintf(path, sizeof(path), "/v2/%s/referrers/%s", c->remote, d->str);
        long st = get_index(req, c, path, &doc);
        if (st == 404 || st == 405) {
            /* No referrers API upstream: the tag schema fallback. */
            snprintf(path, sizeof(path), "/v2/%s/manifests/sha256-%s", c->remote, om_digest_hex(d));
            st = get_index(req, c, path, &doc);
            if (st != 200 && (st == 404 || st == 401 || st == 403)) {
                doc = empty_index();
                st = 200;
            }
        }
        if (st == 200 && doc != NULL) {
            char *s = json_dumps(doc, JSON_COMPACT);
            if (s != NULL)
                om_index_referrers_put(srv->index, c->canonical, d, s, strlen(s), om_now_ms());
            free(s);
            req->cache = OM_CACHE_MISS;
            snprintf(req->canonical, sizeof(req->canonical), "%s", c->canonical);
            snprintf(req->upstream, sizeof(req->upstream), "%s",
                     srv->cfg->upstreams[c->upstream].name);
        } else if (have_cached && (st == 0 || st >= 500 || st == 429)) {
            doc = parse_index(cached, clen);
            req->cache = OM_CACHE_STALE;
        }
        free(cached);
        if (decided)
            break;
    }
    respond_referrers(req, doc != NULL ? doc : empty_index());
    om_req_job_done(req);
}

enum MHD_Result om_v2_referrers(struct om_req *req)
{
    return start_job(req, referrers_job);
}
