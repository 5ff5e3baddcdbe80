/* v2_manifest.c — HEAD/GET /v2/<name>/manifests/<tag|digest>.
 *
 * From the cache, in the HTTP thread, when possible:
 *   by digest: stored → serve (digests are immutable, never re-asked);
 *   by tag: known and checked less than tag_ttl ago → serve.
 * Otherwise the request joins the "flight" for (name, ns, reference) — the
 * manifest single-flight — or starts one: a job that searches the route if
 * needed, revalidates a stale tag with HEAD (not counted against Docker
 * Hub's pull limit), fetches what changed, verifies and stores it byte for
 * byte, and then builds every waiting request's response.  When the
 * upstream is down, 5xx or 429 and the tag is cached, the cached manifest is
 * served with a Warning header (stale-if-error).
 *
 * Stored manifests are never re-serialised: the digest a client gets is the
 * sha256 of the exact bytes the upstream sent.
 */
#include "v2/v2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/gc.h"
#include "cache/mcache.h"
#include "cache/pullstats.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/manifest.h"

#define ACCEPT_ALL                                                         \
    "application/vnd.oci.image.index.v1+json, "                            \
    "application/vnd.docker.distribution.manifest.list.v2+json, "          \
    "application/vnd.oci.image.manifest.v1+json, "                         \
    "application/vnd.docker.distribution.manifest.v2+json"

#define STALE_WARNING "110 - \"Response is Stale\""

struct mresult {
    unsigned status;               /* 200 on success, else the error status */
    const char *code;              /* OCI error code when status != 200 */
    char message[256];
    om_digest digest;
    char media_type[OM_MEDIA_TYPE_MAX + 1];
    uint64_t size;
    om_cache_result cache;         /* for the leader */
    size_t candidate;              /* route.c[] index it came from */
    char *body;                    /* verified bytes that could not be stored
                                      (disk full): served uncached; owned */
    size_t body_len;
};

struct om_flight {
    struct om_flight *next;
    char key[OM_NAME_MAX + OM_TAG_MAX + 300];
    struct om_req *waiters;        /* leader included; linked by flight_next */
};

/* ---- building responses -------------------------------------------- */

static void add_manifest_headers(struct MHD_Response *r, const om_digest *d, bool stale)
{
    char etag[OM_DIGEST_MAX + 3];
    MHD_add_response_header(r, "Docker-Content-Digest", d->str);
    snprintf(etag, sizeof(etag), "\"%s\"", d->str);
    MHD_add_response_header(r, "Etag", etag);
    if (stale)
        MHD_add_response_header(r, "Warning", STALE_WARNING);
}


struct accept_scan {
    const char *want;
    bool seen;      /* the client sent an Accept header */
    bool match;     /* it names `want`, or a wildcard */
};

static enum MHD_Result scan_accept(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct accept_scan *a = cls;
    if (strcasecmp(key, "Accept") != 0 || value == NULL)
        return MHD_YES;
    a->seen = true;
    size_t wl = strlen(a->want);
    for (const char *p = value; *p != '\0';) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e != '\0' && *e != ',' && *e != ';' && *e != ' ')
            e++;
        size_t n = (size_t)(e - p);
        if ((n == wl && strncasecmp(p, a->want, n) == 0) || (n == 3 && strncmp(p, "*/*", 3) == 0))
            a->match = true;
        while (*e != '\0' && *e != ',')
            e++;
        p = e;
    }
    return MHD_YES;
}

typedef enum { NEG_SERVE, NEG_UNACCEPTABLE, NEG_CHILD } neg_result;

/* The linux/amd64 entry of a stored Docker manifest list. */
static bool default_platform_child(struct om_server *srv, const om_digest *list, om_digest *out)
{
    char *buf = NULL;
    size_t len = 0;
    bool found = false;
    if (om_store_read(srv->store, list, srv->cfg->limits.max_manifest_bytes, &buf, &len) != OM_OK)
        return false;
    struct om_manifest m;
    if (om_manifest_parse(&m, buf, len, OM_MT_DOCKER_LIST) == OM_OK) {
        const struct om_descriptor *d = om_manifest_platform(&m, "linux/amd64");
        if (d != NULL) {
            *out = d->digest;
            found = true;
        }
    }
    om_manifest_free(&m);
    free(buf);
    return found;
}

/* Accept negotiation as distribution does it, minus the schema 1
 * conversions: an OCI manifest or index the client does not accept is
 * MANIFEST_UNKNOWN; a Docker manifest list asked for by tag by a client that
 * does not accept lists gets its linux/amd64 manifest.  No Accept header at
 * all: serve what we have (curl, scripts). */
static neg_result negotiate(struct om_req *req, const char *media_type, const om_digest *d,
                            om_digest *child)
{
    struct accept_scan a = {.want = media_type};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, scan_accept, &a);
    if (!a.seen || a.match)
        return NEG_SERVE;
    if (strcmp(media_type, OM_MT_DOCKER_LIST) == 0 && !req->p.ref.is_digest &&
        default_platform_child(req->srv, d, child))
        return NEG_CHILD;
    if (strcmp(media_type, OM_MT_OCI_MANIFEST) == 0 || strcmp(media_type, OM_MT_OCI_INDEX) == 0)
        return NEG_UNACCEPTABLE;
    return NEG_SERVE;
}

typedef enum { RESP_OK, RESP_REFUSED, RESP_GONE, RESP_NEED_CHILD } resp_result;

/* Serve verified manifest bytes that could not be stored (disk full): the
 * client still gets the right bytes; the next request asks the upstream
 * again.  No Accept negotiation: there is nothing cached to pick from. */
static void respond_uncached(struct om_req *req, const om_digest *d, const char *media_type,
                             const char *body, size_t len)
{
    struct MHD_Response *r = req->head ? om_http_head(media_type, len)
                                       : om_http_body(media_type, body, len);
    if (r == NULL) {
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        return;
    }
    add_manifest_headers(r, d, false);
    MHD_add_response_header(r, "Warning", "199 - \"not cached: mirror storage unavailable\"");
    if (req->resp != NULL)
        MHD_destroy_response(req->resp);
    req->resp = r;
    req->status = MHD_HTTP_OK;
    req->bytes = len;
}

/* Fill req->resp with the stored manifest d (or what Accept negotiation
 * picks instead).  RESP_REFUSED sets the error response to send; RESP_GONE
 * (no longer in the store) sets one too but is worth asking the upstream
 * again; RESP_NEED_CHILD means
 * the platform manifest to serve is not cached: *child names it. */
static resp_result respond_manifest(struct om_req *req, const om_digest *d, const char *media_type,
                                    uint64_t size, bool stale, om_digest *child)
{
    struct om_server *srv = req->srv;
    struct MHD_Response *r = NULL;
    struct om_manifest_rec cr;
    switch (negotiate(req, media_type, d, child)) {
    case NEG_UNACCEPTABLE:
        om_req_error(req, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN",
                     "manifest found, but the Accept header does not allow its media type");
        return RESP_REFUSED;
    case NEG_CHILD:
        if (om_index_manifest_get(srv->index, child, &cr) != OM_OK ||
            !om_store_has(srv->store, child, NULL))
            return RESP_NEED_CHILD;
        d = child;
        media_type = cr.media_type;
        size = cr.size;
        break;
    case NEG_SERVE:
        break;
    }
    char *buf = NULL;
    size_t len = 0;
    char cached_mt[OM_MEDIA_TYPE_MAX + 1];
    bool in_memory = om_mcache_manifest_get(srv->mcache, d, &buf, &len, cached_mt,
                                            sizeof(cached_mt));
    if (req->head) {
        free(buf);
        if (in_memory)
            size = len;
        else if (!om_store_has(srv->store, d, &size))
            goto gone;
        r = om_http_head(media_type, size);
    } else {
        if (!in_memory) {
            if (om_store_read(srv->store, d, srv->cfg->limits.max_manifest_bytes, &buf, &len) !=
                OM_OK)
                goto gone;
            om_mcache_manifest_put(srv->mcache, d, buf, len, media_type);
        }
        r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
        if (r == NULL) {
            free(buf);
            goto gone;
        }
        MHD_add_response_header(r, "Content-Type", media_type);
        om_http_common_headers(r);
        size = len;
    }
    if (r == NULL)
        goto gone;
    add_manifest_headers(r, d, stale);
    if (req->resp != NULL)
        MHD_destroy_response(req->resp);
    req->resp = r;
    req->status = MHD_HTTP_OK;
    req->bytes = size;
    return RESP_OK;
gone:
    om_req_error(req, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown");
    return RESP_GONE;
}

static void note_pull(struct om_req *req, const om_digest *d)
{
    if (req->canonical[0] == '\0' || req->head)
        return;
    om_pullstats_note(req->srv->pulls, req->canonical,
                      req->p.ref.is_digest ? NULL : req->p.ref.tag, d, om_now_ms());
}

/* ---- the cache-only path (HTTP thread) ------------------------------ */

static bool serve_from_cache(struct om_req *req)
{
    struct om_server *srv = req->srv;
    if (req->p.ref.is_digest) {
        struct om_manifest_rec mr;
        char *buf = NULL;
        size_t len = 0;
        if (om_mcache_manifest_get(srv->mcache, &req->p.ref.digest, &buf, &len, mr.media_type,
                                   sizeof(mr.media_type))) {
            mr.size = len;
            free(buf);
        } else if (om_index_manifest_get(srv->index, &req->p.ref.digest, &mr) != OM_OK) {
            return false;
        }
        if (req->canonical[0] == '\0' && req->route.kind == OM_ROUTE_SEARCH) {
            char up[64];
            if (om_v2_route_lookup(srv, req->p.name, up, sizeof(up), req->canonical,
                                   sizeof(req->canonical)))
                snprintf(req->upstream, sizeof(req->upstream), "%s", up);
        }
        om_digest child;
        resp_result rr = respond_manifest(req, &req->p.ref.digest, mr.media_type, mr.size, false,
                                          &child);
        if (rr == RESP_NEED_CHILD || rr == RESP_GONE)
            return false;
        if (rr == RESP_REFUSED)
            return true;
        req->cache = OM_CACHE_HIT;
        note_pull(req, &req->p.ref.digest);
        return true;
    }
    if (req->canonical[0] == '\0') {
        char up[64];
        if (!om_v2_route_lookup(srv, req->p.name, up, sizeof(up), req->canonical,
                                sizeof(req->canonical)))
            return false;
        snprintf(req->upstream, sizeof(req->upstream), "%s", up);
    }
    struct om_tag_rec tr;
    if (!om_mcache_tag_get(srv->mcache, req->canonical, req->p.ref.tag, &tr)) {
        if (om_index_tag_get(srv->index, req->canonical, req->p.ref.tag, &tr) != OM_OK)
            return false;
        om_mcache_tag_put(srv->mcache, req->canonical, req->p.ref.tag, &tr);
    }
    if (om_now_ms() - tr.checked_at >= (int64_t)srv->cfg->tag_ttl_ms)
        return false;
    om_digest child;
    resp_result rr = respond_manifest(req, &tr.digest, tr.media_type, tr.size, false, &child);
    if (rr == RESP_NEED_CHILD || rr == RESP_GONE)
        return false;
    if (rr == RESP_REFUSED)
        return true;
    req->cache = OM_CACHE_HIT;
    note_pull(req, &tr.digest);
    return true;
}

/* ---- talking to the upstream (job thread) --------------------------- */

typedef enum {
    GOT_OK,          /* manifest stored, res filled */
    GOT_ABSENT,      /* 401/403/404: not on this upstream */
    GOT_NO_OBJECT,   /* the repository is there, this manifest is not
                        (only when asked to tell, see fetch_manifest) */
    GOT_UNSURE,      /* a 404, and the repository could not be asked */
    GOT_UNAVAILABLE, /* unreachable, 5xx */
    GOT_TOOMANY,     /* 429 after retries */
    GOT_BAD,         /* lying or oversized answer */
} got_kind;

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
static got_kind fetch_manifest(struct om_req *req, size_t ci, const char *ref,
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
    om_index_manifest_put(srv->index, c->canonical, &got, res->media_type, resp.body_len, children,
                          nch, now);
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

static void set_error(struct mresult *res, unsigned status, const char *code, const char *msg)
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

static void resolve_and_fetch(struct om_req *req, struct mresult *res)
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
    set_error(res, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown");

    for (size_t k = 0; k < n; k++) {
        size_t ci = order[k];
        const struct om_route_candidate *c = &req->route.c[ci];
        snprintf(req->upstream, sizeof(req->upstream), "%s", srv->cfg->upstreams[c->upstream].name);
        if (!req->p.ref.is_digest) {
            struct om_tag_rec tr;
            if (om_index_tag_get(srv->index, c->canonical, ref, &tr) == OM_OK &&
                om_store_has(srv->store, &tr.digest, NULL)) {
                bool gone = false;
                if (revalidate(req, ci, &tr, res, &gone)) {
                    om_v2_note_probe(req, ci, true, decided || any_unavailable);
                    return;
                }
                if (gone) {
                    set_error(res, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN",
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
        got_kind kind = fetch_manifest(req, ci, ref, req->p.ref.is_digest ? &req->p.ref.digest : NULL,
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
            set_error(res, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN", NULL);
            no_manifest(res, req, c->canonical);
            return;
        case GOT_TOOMANY:
            any_toomany = true;
            note_failure(res, &n_failed, attempt.message, srv->cfg->upstreams[c->upstream].name);
            break;
        case GOT_BAD:
            set_error(res, MHD_HTTP_BAD_GATEWAY, "MANIFEST_INVALID", attempt.message);
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
        set_error(res, MHD_HTTP_TOO_MANY_REQUESTS, "TOOMANYREQUESTS", NULL);
    } else if (any_unavailable) {
        set_error(res, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", NULL);
    } else {
        set_error(res, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown");
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

/* ---- flights -------------------------------------------------------- */

static void flight_key(const struct om_req *req, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s\n%s\n%s", req->p.name, req->ns, om_reference_str(&req->p.ref));
}

static void finish_flight(struct om_server *srv, struct om_flight *fl, const struct mresult *res,
                          struct om_req *leader)
{
    pthread_mutex_lock(&srv->flights_mu);
    struct om_flight **pp = &srv->flights;
    while (*pp != NULL && *pp != fl)
        pp = &(*pp)->next;
    if (*pp == fl)
        *pp = fl->next;
    struct om_req *w = fl->waiters;
    fl->waiters = NULL;
    pthread_mutex_unlock(&srv->flights_mu);

    while (w != NULL) {
        struct om_req *next = w->flight_next;
        w->flight_next = NULL;
        if (w != leader) {
            snprintf(w->canonical, sizeof(w->canonical), "%s", leader->canonical);
            snprintf(w->upstream, sizeof(w->upstream), "%s", leader->upstream);
        }
        if (res->status == MHD_HTTP_OK && res->body != NULL) {
            respond_uncached(w, &res->digest, res->media_type, res->body, res->body_len);
            w->cache = (w == leader) ? res->cache : OM_CACHE_COALESCED;
        } else if (res->status == MHD_HTTP_OK) {
            bool stale = res->cache == OM_CACHE_STALE;
            om_digest child;
            resp_result rr = respond_manifest(w, &res->digest, res->media_type, res->size, stale,
                                              &child);
            if (rr == RESP_NEED_CHILD) {
                /* A client that takes no lists asked for one by tag: fetch
                 * the default platform's manifest now; later waiters find
                 * it cached. */
                struct mresult cres = {0};
                if (fetch_manifest(leader, res->candidate, child.str, &child, false, &cres) == GOT_OK)
                    rr = respond_manifest(w, &res->digest, res->media_type, res->size, stale,
                                          &child);
                free(cres.body);
                if (rr == RESP_NEED_CHILD)
                    om_req_error(w, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN",
                                 "no linux/amd64 manifest in this list");
            }
            if (rr == RESP_OK) {
                w->cache = (w == leader) ? res->cache : OM_CACHE_COALESCED;
                note_pull(w, &res->digest);
            }
        } else {
            om_req_error(w, res->status, res->code, res->message);
        }
        om_req_job_done(w);
        w = next;
    }
    free(fl);
}

static void manifest_job(void *arg)
{
    struct om_flight *fl = arg;
    struct om_req *leader = fl->waiters; /* the leader is the list's tail; find it */
    while (leader->flight_next != NULL)
        leader = leader->flight_next;
    struct mresult res = {0};
    resolve_and_fetch(leader, &res);
    finish_flight(leader->srv, fl, &res, leader);
    free(res.body);
}

enum MHD_Result om_v2_manifest(struct om_req *req)
{
    struct om_server *srv = req->srv;
    if (serve_from_cache(req)) {
        enum MHD_Result r = MHD_queue_response(req->conn, req->status, req->resp);
        MHD_destroy_response(req->resp);
        req->resp = NULL;
        return r;
    }
    if (req->resp != NULL) { /* a half-served cache hit left an error: retry upstream */
        MHD_destroy_response(req->resp);
        req->resp = NULL;
        req->status = 0;
        req->err_code = NULL;
    }
    char key[sizeof(((struct om_flight *)0)->key)];
    flight_key(req, key, sizeof(key));

    pthread_mutex_lock(&srv->flights_mu);
    struct om_flight *fl = srv->flights;
    while (fl != NULL && strcmp(fl->key, key) != 0)
        fl = fl->next;
    req->phase = 1;
    MHD_suspend_connection(req->conn);
    if (fl != NULL) {
        /* Join: insert at the head; the leader stays at the tail. */
        req->flight_next = fl->waiters;
        fl->waiters = req;
        pthread_mutex_unlock(&srv->flights_mu);
        return MHD_YES;
    }
    fl = calloc(1, sizeof(*fl));
    if (fl == NULL) {
        pthread_mutex_unlock(&srv->flights_mu);
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        om_req_job_done(req);
        return MHD_YES;
    }
    snprintf(fl->key, sizeof(fl->key), "%s", key);
    fl->waiters = req;
    fl->next = srv->flights;
    srv->flights = fl;
    pthread_mutex_unlock(&srv->flights_mu);

    if (om_jobs_submit(srv->jobs, manifest_job, fl) != OM_OK) {
        struct mresult res = {0};
        set_error(&res, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "mirror overloaded");
        finish_flight(srv, fl, &res, req);
    }
    return MHD_YES;
}

void om_flights_resume_all(struct om_server *srv)
{
    /* Jobs are drained before this runs, so no flight should remain; if one
     * does, its requests are resumed with an error rather than left hanging
     * (a suspended connection blocks MHD_stop_daemon). */
    for (;;) {
        pthread_mutex_lock(&srv->flights_mu);
        struct om_flight *fl = srv->flights;
        pthread_mutex_unlock(&srv->flights_mu);
        if (fl == NULL)
            return;
        struct om_req *leader = fl->waiters;
        while (leader->flight_next != NULL)
            leader = leader->flight_next;
        struct mresult res = {0};
        set_error(&res, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "shutting down");
        finish_flight(srv, fl, &res, leader);
    }
}
