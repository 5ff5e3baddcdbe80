/* v2_member.c — repository isolation of cached content: a blob or a
 * manifest is stored once per digest, but served under a repository name
 * only when that name's repository is known to hold it.
 *
 * Why: with upstream credentials that can read private repositories, a
 * cache that answers any digest under any name lets anyone who learns a
 * digest read a private layer through a public name.  So the question
 * before serving cached content d under a request is "does R hold d?",
 * where R is the canonical repository the request's name stands for
 * (`docker.io/library/nginx`, also for a name reached by the search order).
 *
 * Known to hold it:
 *   - a manifest pulled through R (v2_manifest_fetch.c records it with its
 *     children: config, layers, platform manifests; the index answers for
 *     grandchildren too — an index's platform manifests' layers);
 *   - a blob downloaded through R (cache/fetch.c records it at commit);
 *   - the upstream confirmed it for R: one HEAD of the blob or manifest
 *     under R's remote name, with R's credentials (a layer cross-mounted
 *     upstream, a second repository built on the same base), whose 200 is
 *     written to the index (om_index_blob_put / om_index_manifest_put with
 *     R), so it is asked once.
 * Otherwise the request is answered as the upstream answers for R: a 404
 * BLOB_UNKNOWN / MANIFEST_UNKNOWN when R does not have it.
 *
 * The hit paths (HTTP threads) ask om_v2_member_hit: the memory of
 * memberships known to be true (cache/mcache: a fixed table, no index
 * query per hit), the index on a miss of it (om_index_member, primary-key
 * lookups), remembering a yes.  A no sends the request to its flight's
 * job, which asks the index again and then the upstream — nothing
 * negative is remembered here, so nothing remembered can be wrong in the
 * direction that leaks.
 *
 * The jobs (v2_blob.c, v2_manifest_fetch.c) call om_v2_member_known,
 * om_v2_member_note (a membership just recorded in the index: into the
 * memory too), om_v2_member_blob_confirmed and om_v2_member_confirm_
 * manifest (the HEAD and what it records).
 */
#include "v2/v2.h"
#include "v2/v2_blob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/mcache.h"
#include "core/log.h"
#include "core/manifest.h"

#define CHILDREN_MAX (2 * OM_MANIFEST_MAX_ENTRIES + 1)

bool om_v2_member_known(struct om_server *srv, const char *canonical, const om_digest *d)
{
    bool yes = false;
    if (canonical == NULL || canonical[0] == '\0')
        goto done;
    if (om_mcache_member_get(srv->mcache, canonical, d)) {
        yes = true;
        goto done;
    }
    /* Not known, or could not ask (busy, I/O): not served from here; the
     * job asks again. */
    yes = om_index_member(srv->index, canonical, d) == OM_OK;
    if (yes)
        om_mcache_member_put(srv->mcache, canonical, d);
done:
    return yes;
}

bool om_v2_member_hit(struct om_req *req, const om_digest *d)
{
    struct om_server *srv = req->srv;
    /* A search whose decision the memory has (no index query on the HTTP
     * thread for the route); a fixed route's canonical is set already. */
    if (req->canonical[0] == '\0' && req->route.kind == OM_ROUTE_SEARCH)
        om_mcache_route_get(srv->mcache, req->p.name, req->upstream, sizeof(req->upstream),
                            req->canonical, sizeof(req->canonical));
    return om_v2_member_known(srv, req->canonical, d);
}

void om_v2_member_note(struct om_server *srv, const char *canonical, const om_digest *d,
                       const om_digest *children, size_t n_children)
{
    om_mcache_member_put(srv->mcache, canonical, d);
    for (size_t i = 0; i < n_children; i++)
        om_mcache_member_put(srv->mcache, canonical, &children[i]);
}

void om_v2_member_blob_confirmed(struct om_server *srv, const char *canonical,
                                 const om_digest *d, uint64_t size)
{
    int err = om_index_blob_put(srv->index, canonical, d, size, om_now_ms());
    if (err != OM_OK)
        om_log_kv(OM_LOG_WARN, "blob membership not recorded; the upstream will be asked again",
                  "repo", canonical, "digest", d->str, "error", om_strerror(err), NULL);
    om_v2_member_note(srv, canonical, d, NULL, 0);
    om_log_kv(OM_LOG_DEBUG, "upstream confirmed a cached blob for the repository", "repo",
              canonical, "digest", d->str, NULL);
}

/* Record the stored manifest d, with its children, as canonical's. */
static int record_manifest(struct om_server *srv, const char *canonical, const om_digest *d)
{
    char *buf = NULL;               /* owned */
    om_digest *children = NULL;     /* owned */
    struct om_manifest m;
    struct om_manifest_rec mr;
    size_t len = 0, n = 0;
    int err;

    memset(&m, 0, sizeof(m));
    if ((err = om_index_manifest_get(srv->index, d, &mr)) != OM_OK)
        goto done;
    if ((err = om_store_read(srv->store, d, srv->cfg->limits.max_manifest_bytes, &buf, &len)) !=
        OM_OK)
        goto done;
    if ((err = om_manifest_parse(&m, buf, len, mr.media_type)) != OM_OK)
        goto done;
    if ((children = calloc(CHILDREN_MAX, sizeof(*children))) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    n = om_manifest_children(&m, children, CHILDREN_MAX);
    err = om_index_manifest_put(srv->index, canonical, d, mr.media_type, len, children, n,
                                om_now_ms());
    om_v2_member_note(srv, canonical, d, children, n);
done:
    om_manifest_free(&m);
    free(children);
    free(buf);
    return err;
}

long om_v2_member_confirm_manifest(struct om_req *req, size_t ci, const om_digest *d,
                                   struct om_up_resp *resp, int *err)
{
    struct om_server *srv = req->srv;
    const struct om_route_candidate *c = &req->route.c[ci];
    char path[OM_NAME_MAX + OM_DIGEST_MAX + 32];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", c->remote, d->str);
    struct om_up_req ur = {
        .method = "HEAD", .path = path, .scope_repo = c->remote, .max_body = 65536,
        .accept = "application/vnd.oci.image.index.v1+json, "
                  "application/vnd.docker.distribution.manifest.list.v2+json, "
                  "application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json",
        .cancel = &srv->cancel,
    };
    long status = 0;

    *err = om_upstream_do(srv->up[c->upstream], &ur, resp);
    if (*err != OM_OK)
        goto done;
    status = resp->status;
    /* A 200 that names another digest confirms nothing (the caller
     * fetches and verifies instead). */
    if (status == 200 && resp->docker_digest[0] != '\0' && strcmp(resp->docker_digest, d->str) != 0)
        status = -1;
    if (status == 200) {
        int rerr = record_manifest(srv, c->canonical, d);
        if (rerr != OM_OK) {
            om_log_kv(OM_LOG_WARN, "manifest membership not recorded; the upstream will be asked "
                      "again", "repo", c->canonical, "digest", d->str, "error", om_strerror(rerr),
                      NULL);
            om_mcache_member_put(srv->mcache, c->canonical, d);
        }
        om_log_kv(OM_LOG_DEBUG, "upstream confirmed a cached manifest for the repository", "repo",
                  c->canonical, "digest", d->str, NULL);
    }
done:
    return status;
}

/* One HEAD of d under candidate ci: the status (0: no answer) and size. */
static long head_blob(struct om_req *req, size_t ci, const om_digest *d, int64_t *size)
{
    struct om_server *srv = req->srv;
    const struct om_route_candidate *c = &req->route.c[ci];
    char path[OM_NAME_MAX + OM_DIGEST_MAX + 32];
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", c->remote, d->str);
    struct om_up_req ur = {.method = "HEAD", .path = path, .scope_repo = c->remote,
                           .max_body = 65536, .cancel = &srv->cancel};
    struct om_up_resp resp;
    int err = om_upstream_do(srv->up[c->upstream], &ur, &resp);
    long st = err == OM_OK ? resp.status : 0;
    *size = resp.content_length;
    om_up_resp_clear(&resp);
    return st;
}

static void answer(struct om_blob_answer *a, unsigned status, const char *code, const char *msg)
{
    a->status = status;
    a->code = code;
    snprintf(a->message, sizeof(a->message), "%s", msg);
}

bool om_v2_member_confirm_join(struct om_req *req, size_t ci, struct om_blob_answer *a)
{
    struct om_server *srv = req->srv;
    const struct om_route_candidate *c = &req->route.c[ci];
    const om_digest *d = &req->p.ref.digest;
    struct om_blob_memo m = {0};
    int64_t size = -1;
    bool remembered = om_blob_memo_get(srv, c->canonical, d, &m);
    long st = remembered ? (long)m.status : head_blob(req, ci, d, &size);

    if (!remembered && (st != 200 || size >= 0)) { /* a 200 is kept with its size only */
        m.status = st == 200 || st == 429                ? (unsigned)st
                   : st == 404 || st == 401 || st == 403 ? 404
                                                         : 503;
        m.size = size >= 0 ? (uint64_t)size : 0;
        om_blob_memo_put(srv, c->canonical, d, &m);
    }
    if (st == 200)
        return true;
    if (st == 404 || st == 401 || st == 403) {
        a->status = MHD_HTTP_NOT_FOUND;
        a->code = "BLOB_UNKNOWN";
        snprintf(a->message, sizeof(a->message), "%s has no blob %s", c->canonical, d->str);
    } else if (st == 429) {
        answer(a, MHD_HTTP_TOO_MANY_REQUESTS, "TOOMANYREQUESTS", "upstream rate limit");
    } else {
        answer(a, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "upstream unavailable");
    }
    return false;
}
