/* v2_manifest_fetch.c — the job's side of a manifest request (see
 * v2_manifest_int.h): which candidate upstream has it (a remembered
 * decision, or the search order, telling a missing repository from a
 * missing object — v2_resolve.c), revalidating a cached tag with HEAD
 * (bounded by limits.revalidate_timeout: past it, or when the upstream
 * fails, the cached tag is served stale), fetching a manifest, verifying
 * its digest and storing it byte for byte, and the messages that say what
 * was missing and where it was looked for.
 */
#include "v2/v2_manifest_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/gc.h"
#include "cache/mcache.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/manifest.h"

static got_kind got_from_status(int err, const struct om_up_resp *resp)
{
    long status = resp->status;
    /* Credentials that could not be had (a token service that answers
     * nonsense, a challenge too long) or headers over a limit: the upstream
     * is broken, the manifest (which never came) is not at fault. */
    if (err != OM_OK && (resp->auth_failed || resp->headers_bad))
        return GOT_UNAVAILABLE;
    if (err == OM_ERR_TOOBIG || err == OM_ERR_DIGEST || err == OM_ERR_DENIED)
        return GOT_BAD;
    if (err != OM_OK)
        return GOT_UNAVAILABLE;
    if (status == 401 || status == 403 || status == 404)
        return GOT_ABSENT;
    if (status == 429)
        return GOT_TOOMANY;
    return GOT_UNAVAILABLE;
}

/* GET a manifest, verify, store, index.  ref: tag or digest string.
 * tell: a miss must say whether the repository is there (a name still
 * being searched for): GOT_ABSENT only when the repository is not
 * (om_v2_repo_miss), GOT_NO_OBJECT when only the manifest is missing. */
got_kind om_v2m_fetch(struct om_req *req, size_t ci, const char *ref,
                               const om_digest *want, bool tell, struct mresult *res)
{
    struct om_server *srv = req->srv;
    const struct om_route_candidate *c = &req->route.c[ci];
    char path[OM_NAME_MAX + OM_TAG_MAX + 32];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", c->remote, ref);
    struct om_up_req ur = {
        .method = "GET", .path = path, .accept = ACCEPT_ALL, .scope_repo = c->remote,
        .max_body = srv->cfg->limits.max_manifest_bytes, .cancel = &srv->cancel,
    };
    struct om_up_resp resp;
    int err = om_upstream_do(srv->up[c->upstream], &ur, &resp);
    got_kind kind = GOT_OK;
    if (err != OM_OK || resp.status != 200) {
        kind = got_from_status(err, &resp);
        snprintf(res->message, sizeof(res->message), "upstream %s: %s",
                 srv->cfg->upstreams[c->upstream].name,
                 err != OM_OK ? (resp.error[0] ? resp.error : om_strerror(err)) : "error status");
        if (err == OM_OK)
            snprintf(res->message, sizeof(res->message), "upstream %s answered %ld",
                     srv->cfg->upstreams[c->upstream].name, resp.status);
        if (kind == GOT_ABSENT && tell) {
            om_repo_evidence ev = om_v2_repo_miss(req, ci, resp.status, resp.body, resp.body_len);
            kind = ev == OM_REPO_PRESENT   ? GOT_NO_OBJECT
                   : ev == OM_REPO_ABSENT ? GOT_ABSENT
                                          : GOT_UNSURE;
        }
        goto done;
    }
    om_digest got;
    om_hash_buf(resp.body, resp.body_len, &got);
    om_digest hdr;
    bool has_hdr = resp.docker_digest[0] != '\0' &&
                   om_digest_parse(&hdr, resp.docker_digest, strlen(resp.docker_digest)) == OM_OK;
    if ((want != NULL && strcmp(want->str, got.str) != 0) ||
        (has_hdr && strcmp(hdr.str, got.str) != 0)) {
        om_log_kv(OM_LOG_ERROR, "manifest digest mismatch from upstream, not cached", "repo",
                  c->canonical, "ref", ref, "got", got.str, "header",
                  has_hdr ? hdr.str : "", NULL);
        snprintf(res->message, sizeof(res->message),
                 "upstream sent a manifest that does not match its digest");
        kind = GOT_BAD;
        goto done;
    }
    struct om_manifest m;
    if ((err = om_manifest_parse(&m, resp.body, resp.body_len, resp.content_type)) != OM_OK) {
        if (err == OM_ERR_TOOBIG)
            snprintf(res->message, sizeof(res->message),
                     "upstream sent a manifest with too many entries (%zu > %d)", m.n_over,
                     OM_MANIFEST_MAX_ENTRIES);
        else if (err == OM_ERR_NOMEM)
            snprintf(res->message, sizeof(res->message), "out of memory reading the manifest");
        else
            snprintf(res->message, sizeof(res->message),
                     "upstream sent a manifest that is not a JSON object");
        om_manifest_free(&m);
        kind = GOT_BAD;
        goto done;
    }
    snprintf(res->media_type, sizeof(res->media_type), "%s", m.media_type);
    err = om_store_put(srv->store, &got, resp.body, resp.body_len);
    if (err != OM_OK) {
        om_manifest_free(&m);
        om_log_kv(OM_LOG_ERROR, "manifest verified but not stored; serving it uncached", "repo",
                  c->canonical, "ref", ref, "error", om_strerror(err), NULL);
        res->body = resp.body;
        res->body_len = resp.body_len;
        resp.body = NULL;
        res->digest = got;
        res->size = res->body_len;
        res->status = MHD_HTTP_OK;
        res->cache = OM_CACHE_MISS;
        res->candidate = ci;
        goto done;
    }
    om_gc_nudge(srv->gc);
    om_digest *children = calloc(2 * OM_MANIFEST_MAX_ENTRIES + 1, sizeof(*children));
    size_t nch = children ? om_manifest_children(&m, children, 2 * OM_MANIFEST_MAX_ENTRIES + 1) : 0;
    om_manifest_free(&m);
    int64_t now = om_now_ms();
    if (om_index_manifest_put(srv->index, c->canonical, &got, res->media_type, resp.body_len,
                              children, nch, now) == OM_OK)
        om_v2_member_note(srv, c->canonical, &got, children, nch);
    free(children);
    om_mcache_manifest_put(srv->mcache, &got, resp.body, resp.body_len, res->media_type);
    if (want == NULL) {
        om_index_tag_put(srv->index, c->canonical, ref, &got, res->media_type, resp.body_len, now);
        struct om_tag_rec tr = {.digest = got, .size = resp.body_len, .fetched_at = now,
                                .checked_at = now};
        snprintf(tr.media_type, sizeof(tr.media_type), "%s", res->media_type);
        om_mcache_tag_put(srv->mcache, c->canonical, ref, &tr);
    }
    res->digest = got;
    res->size = resp.body_len;
    res->status = MHD_HTTP_OK;
    res->cache = OM_CACHE_MISS;
    res->candidate = ci;
done:
    om_up_resp_clear(&resp);
    return kind;
}

/* A manifest asked for by digest that is stored: served from the store
 * when candidate ci's repository holds it — the index says so, or one HEAD
 * under its name does (v2_member.c records that) — and answered as that
 * upstream answers otherwise.  false: not stored, or the HEAD settled
 * nothing (a 200 naming another digest): fetch it. */
static bool cached_by_digest(struct om_req *req, size_t ci, bool tell, struct mresult *res,
                             got_kind *kind)
{
    struct om_server *srv = req->srv;
    const struct om_route_candidate *c = &req->route.c[ci];
    const om_digest *d = &req->p.ref.digest;
    struct om_manifest_rec mr;
    struct om_up_resp resp;
    bool handled = false;
    int err = OM_OK;
    long st;

    memset(&resp, 0, sizeof(resp));
    if (om_index_manifest_get(srv->index, d, &mr) != OM_OK || !om_store_has(srv->store, d, NULL))
        goto done;
    st = om_v2_member_known(srv, c->canonical, d)
             ? 200
             : om_v2_member_confirm_manifest(req, ci, d, &resp, &err);
    if (st == -1)
        goto done;
    handled = true;
    if (st == 200) {
        *kind = GOT_OK;
        res->digest = *d;
        snprintf(res->media_type, sizeof(res->media_type), "%s", mr.media_type);
        res->size = mr.size;
        res->status = MHD_HTTP_OK;
        res->cache = OM_CACHE_HIT;
        res->candidate = ci;
        goto done;
    }
    *kind = got_from_status(err, &resp);
    snprintf(res->message, sizeof(res->message), "upstream %s: %s",
             srv->cfg->upstreams[c->upstream].name,
             err != OM_OK ? (resp.error[0] ? resp.error : om_strerror(err)) : "error status");
    if (*kind == GOT_ABSENT && tell) {
        om_repo_evidence ev = om_v2_repo_miss(req, ci, resp.status, resp.body, resp.body_len);
        *kind = ev == OM_REPO_PRESENT   ? GOT_NO_OBJECT
                : ev == OM_REPO_ABSENT ? GOT_ABSENT
                                       : GOT_UNSURE;
    }
done:
    om_up_resp_clear(&resp);
    return handled;
}

/* In a cluster on a shared store the bucket itself is asked (what this
 * process remembers does not know what another replica put there). */
static bool in_bucket(struct om_server *srv, const om_digest *d)
{
    struct om_store_stat ss;
    return srv->cluster != NULL && !(om_store_caps(srv->store) & OM_STORE_CAN_SENDFILE) &&
           om_store_stat(srv->store, d, &ss) == OM_OK;
}

/* A tag record younger than tag_ttl found by the job (another replica
 * wrote it meanwhile): the answer as a hit. */
static void fresh_from_index(struct om_req *req, size_t ci, const struct om_tag_rec *tr,
                             struct mresult *res)
{
    const struct om_route_candidate *c = &req->route.c[ci];
    res->digest = tr->digest;
    snprintf(res->media_type, sizeof(res->media_type), "%s", tr->media_type);
    res->size = tr->size;
    res->status = MHD_HTTP_OK;
    res->candidate = ci;
    res->cache = OM_CACHE_HIT;
    om_mcache_tag_put(req->srv->mcache, c->canonical, req->p.ref.tag, tr);
}

/* A cached tag is older than tag_ttl: ask the upstream with HEAD.
 * Returns true when res is final (same digest, or stale-if-error). */
static bool revalidate(struct om_req *req, size_t ci, const struct om_tag_rec *tr,
                       struct mresult *res, bool *gone)
{
    struct om_server *srv = req->srv;
    const struct om_route_candidate *c = &req->route.c[ci];
    char path[OM_NAME_MAX + OM_TAG_MAX + 32];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", c->remote, req->p.ref.tag);
    struct om_up_req ur = {
        .method = "HEAD", .path = path, .accept = ACCEPT_ALL, .scope_repo = c->remote,
        .max_body = 65536, .cancel = &srv->cancel,
        /* a cached tag is there to serve: past this, stale beats waiting */
        .timeout_ms = srv->cfg->limits.revalidate_timeout_ms,
    };
    struct om_up_resp resp;
    int err = om_upstream_do(srv->up[c->upstream], &ur, &resp);
    got_kind kind = (err == OM_OK && resp.status == 200) ? GOT_OK : got_from_status(err, &resp);
    bool final = false;
    *gone = false;
    res->digest = tr->digest;
    snprintf(res->media_type, sizeof(res->media_type), "%s", tr->media_type);
    res->size = tr->size;
    res->status = MHD_HTTP_OK;
    res->candidate = ci;
    if (kind == GOT_OK && strcmp(resp.docker_digest, tr->digest.str) == 0) {
        struct om_tag_rec fresh = *tr;
        fresh.checked_at = om_now_ms();
        om_index_tag_checked(srv->index, c->canonical, req->p.ref.tag, fresh.checked_at);
        om_mcache_tag_put(srv->mcache, c->canonical, req->p.ref.tag, &fresh);
        res->cache = OM_CACHE_HIT;
        final = true;
    } else if (kind == GOT_UNAVAILABLE || kind == GOT_TOOMANY) {
        om_log_kv(OM_LOG_WARN, "upstream unavailable, serving stale tag", "repo", c->canonical,
                  "tag", req->p.ref.tag, "error",
                  err != OM_OK ? (resp.error[0] ? resp.error : om_strerror(err)) : "status", NULL);
        res->cache = OM_CACHE_STALE;
        final = true;
    } else if (kind == GOT_ABSENT) {
        *gone = true;
    }
    om_up_resp_clear(&resp);
    return final;
}

void om_v2m_set_error(struct mresult *res, unsigned status, const char *code, const char *msg)
{
    res->status = status;
    res->code = code;
    if (msg != NULL)
        snprintf(res->message, sizeof(res->message), "%s", msg);
}

/* What a 404 says is missing: "<canonical> has no tag \"t\"" or
 * "<canonical> has no manifest sha256:..". */
static void no_manifest(struct mresult *res, const struct om_req *req, const char *canonical)
{
    if (req->p.ref.is_digest)
        snprintf(res->message, sizeof(res->message), "%s has no manifest %s", canonical,
                 req->p.ref.digest.str);
    else
        snprintf(res->message, sizeof(res->message), "%s has no tag \"%s\"", canonical,
                 req->p.ref.tag);
}

/* "\"name\" was not found on a, b, c": the upstreams asked, in order. */
static void not_found_on(struct mresult *res, const struct om_req *req, const char *const *ups,
                         size_t n)
{
    size_t len = (size_t)snprintf(res->message, sizeof(res->message), "\"%s\" was not found on ",
                                  req->p.name);
    for (size_t i = 0; i < n && len < sizeof(res->message); i++)
        len += (size_t)snprintf(res->message + len, sizeof(res->message) - len, "%s%s",
                                i ? ", " : "", ups[i]);
}

/* The answer's message when upstreams fail: the first failure in full (the
 * upstream the name most likely meant: search order), then the names of the
 * others that failed, so that it is plain that all of them were tried. */
static void note_failure(struct mresult *res, unsigned *n_failed, const char *msg,
                         const char *upstream)
{
    if ((*n_failed)++ == 0) {
        snprintf(res->message, sizeof(res->message), "%s", msg);
        return;
    }
    size_t len = strlen(res->message);
    if (len + 1 < sizeof(res->message))
        snprintf(res->message + len, sizeof(res->message) - len, "%s%s",
                 *n_failed == 2 ? "; also failed: " : ", ", upstream);
}

/* Append "upstream: answer" to the search summary of the log. */
static void note_tried(char *buf, size_t sz, size_t *len, const char *upstream, const char *what)
{
    if (*len < sz)
        *len += (size_t)snprintf(buf + *len, sz - *len, "%s%s: %s", *len ? "; " : "", upstream,
                                 what);
}

static const char *got_str(got_kind k)
{
    switch (k) {
    case GOT_OK: return "found";
    case GOT_ABSENT: return "no such repository";
    case GOT_NO_OBJECT: return "the repository, without this manifest";
    case GOT_UNSURE: return "404, and the tag list could not be read";
    case GOT_TOOMANY: return "429 too many requests";
    case GOT_BAD: return "a bad answer";
    default: return "unavailable";
    }
}

void om_v2m_resolve(struct om_req *req, struct mresult *res)
{
    struct om_server *srv = req->srv;
    size_t order[OM_MAX_UPSTREAMS];
    bool decided = false;
    size_t n = om_v2_candidates(req, order, &decided);
    bool any_unavailable = false, any_toomany = false;
    unsigned n_failed = 0;
    const char *missing_in = NULL; /* the repository known to lack the object */
    char tried[512] = "";          /* "upstream: answer; ..." for the log */
    size_t tlen = 0;
    bool have_stale = false;
    struct mresult stale = {0};
    const char *ref = om_reference_str(&req->p.ref);
    om_v2m_set_error(res, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown");

    for (size_t k = 0; k < n; k++) {
        size_t ci = order[k];
        const struct om_route_candidate *c = &req->route.c[ci];
        snprintf(req->upstream, sizeof(req->upstream), "%s", srv->cfg->upstreams[c->upstream].name);
        if (!req->p.ref.is_digest) {
            struct om_tag_rec tr;
            if (om_index_tag_get(srv->index, c->canonical, ref, &tr) == OM_OK &&
                (om_store_has(srv->store, &tr.digest, NULL) || in_bucket(srv, &tr.digest))) {
                bool gone = false;
                /* Still fresh (checked within tag_ttl: by a flight that
                 * just ended, by another replica of the cluster under the
                 * tag lease, or a hit the HTTP thread handed on because
                 * its body must be read from the bucket): the record is
                 * the answer, no upstream request. */
                if (om_now_ms() - tr.checked_at < (int64_t)srv->cfg->tag_ttl_ms) {
                    fresh_from_index(req, ci, &tr, res);
                    om_v2_note_probe(req, ci, true, decided || any_unavailable);
                    return;
                }
                if (revalidate(req, ci, &tr, res, &gone)) {
                    om_v2_note_probe(req, ci, true, decided || any_unavailable);
                    return;
                }
                if (gone) {
                    om_v2m_set_error(res, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN",
                              "manifest unknown upstream");
                    return;
                }
                /* The tag moved upstream; keep the old one in case the
                 * fetch of the new one fails. */
                have_stale = true;
                stale = *res;
                stale.cache = OM_CACHE_STALE;
            }
        }
        struct mresult attempt = {0};
        got_kind kind = GOT_OK;
        if (!req->p.ref.is_digest || !cached_by_digest(req, ci, !decided, &attempt, &kind))
            kind = om_v2m_fetch(req, ci, ref, req->p.ref.is_digest ? &req->p.ref.digest : NULL,
                                !decided, &attempt);
        note_tried(tried, sizeof(tried), &tlen, srv->cfg->upstreams[c->upstream].name,
                   kind == GOT_UNAVAILABLE && attempt.message[0] ? attempt.message : got_str(kind));
        switch (kind) {
        case GOT_OK:
            *res = attempt;
            om_v2_note_probe(req, ci, true, decided || any_unavailable);
            return;
        case GOT_ABSENT:
            om_v2_note_probe(req, ci, false, decided);
            if (decided)
                missing_in = c->canonical; /* the known route: its object is missing */
            break;
        case GOT_UNSURE:
            missing_in = c->canonical;
            break;
        case GOT_NO_OBJECT:
            /* The name lives here; only this manifest is missing. */
            om_v2_note_probe(req, ci, true, decided || any_unavailable);
            om_v2m_set_error(res, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN", NULL);
            no_manifest(res, req, c->canonical);
            return;
        case GOT_TOOMANY:
            any_toomany = true;
            note_failure(res, &n_failed, attempt.message, srv->cfg->upstreams[c->upstream].name);
            break;
        case GOT_BAD:
            om_v2m_set_error(res, MHD_HTTP_BAD_GATEWAY, "MANIFEST_INVALID", attempt.message);
            return;
        case GOT_UNAVAILABLE:
            any_unavailable = true;
            note_failure(res, &n_failed, attempt.message, srv->cfg->upstreams[c->upstream].name);
            break;
        }
        if (decided || have_stale)
            break;
    }
    if (!decided) {
        /* The candidates the search skipped: remembered as not there. */
        for (size_t i = 0; i < req->route.n; i++) {
            bool asked = false;
            for (size_t k = 0; k < n && !asked; k++)
                asked = order[k] == i;
            if (!asked)
                note_tried(tried, sizeof(tried), &tlen,
                           srv->cfg->upstreams[req->route.c[i].upstream].name,
                           "no such repository (remembered)");
        }
        om_log_kv(OM_LOG_INFO, "search found no manifest", "name", req->p.name, "reference", ref,
                  "tried", tried, NULL);
    }
    if (have_stale && (any_toomany || any_unavailable)) {
        *res = stale;
        return;
    }
    if (any_toomany) {
        om_v2m_set_error(res, MHD_HTTP_TOO_MANY_REQUESTS, "TOOMANYREQUESTS", NULL);
    } else if (any_unavailable) {
        om_v2m_set_error(res, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", NULL);
    } else {
        om_v2m_set_error(res, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown");
        if (missing_in != NULL) {
            no_manifest(res, req, missing_in);
        } else {
            /* Every candidate: asked now, or remembered as not having it. */
            const char *ups[OM_MAX_UPSTREAMS];
            for (size_t i = 0; i < req->route.n; i++)
                ups[i] = srv->cfg->upstreams[req->route.c[i].upstream].name;
            not_found_on(res, req, ups, req->route.n);
        }
    }
}

