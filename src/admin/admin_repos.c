/* admin_repos.c — the admin views of what the cache holds:
 *   GET /api/v1/repositories?q=&upstream=&sort=&page=&per_page=
 *   GET /api/v1/repositories/<canonical name>/tags?sort=&page=&per_page=
 *   GET /api/v1/images/<canonical name>@<digest>[?tag=]
 * (docs/admin-api.md has the answers' shapes).
 *
 * Design: lists come from the index (index_admin.c, the admin's own
 * read-only connection, paged in SQL); what only the stored bytes know —
 * the platforms of an index, the layers of a manifest, the image config —
 * is read from the store and parsed on demand (manifest.h, image_config.h),
 * only for the rows of the page asked for.  Reads are bounded: manifests by
 * limits.max_manifest_bytes, configs by OM_ADMIN_CONFIG_READ_MAX.  Nothing
 * here contacts an upstream: content that is not cached is shown as
 * `"cached": false`.
 */
#include "admin/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/index_admin.h"
#include "core/image_config.h"
#include "core/manifest.h"

/* A canonical repository name from a URL: "<upstream>/<remote>", bytes
 * that can appear in one (names are lower case; upstream names may carry a
 * port).  The name is only ever a bound SQL parameter and a JSON string. */
static bool repo_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= OM_NAME_MAX && strchr(s, '/') != NULL && s[0] != '/' &&
           s[n - 1] != '/' && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-/:") == n;
}

/* "docker.io" of "docker.io/library/x" as a JSON string. */
static json_t *upstream_of(const char *name)
{
    return json_stringn(name, strcspn(name, "/"));
}

static json_t *time_or_null(int64_t ms)
{
    return ms > 0 ? json_integer(ms) : json_null();
}

/* ---- repositories --------------------------------------------------------- */

static int parse_repo_sort(const char *s, om_repo_sort *out)
{
    static const struct { const char *name; om_repo_sort v; } sorts[] = {
        {"", OM_REPO_SORT_NAME}, {"name", OM_REPO_SORT_NAME}, {"pulled", OM_REPO_SORT_PULLED},
        {"pulls", OM_REPO_SORT_PULLS}, {"size", OM_REPO_SORT_SIZE},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(sorts); i++) {
        if (strcmp(s, sorts[i].name) == 0) {
            *out = sorts[i].v;
            return OM_OK;
        }
    }
    return OM_ERR_INVALID;
}

enum MHD_Result om_admin_repositories(struct om_req *req)
{
    struct om_server *srv = req->srv;
    char q[OM_INDEX_ADMIN_QUERY_MAX + 1], up[OM_NAME_MAX + 1], sort[16];
    struct om_repo_query rq = {0};
    struct om_repo_row *rows = NULL;
    uint64_t page = 1, total = 0;
    size_t per_page = 0, n = 0;
    json_t *doc = NULL, *arr = NULL;
    enum MHD_Result ret;
    int err;

    if ((err = om_admin_arg(req, "q", q, sizeof(q))) != OM_OK && err != OM_ERR_NOTFOUND)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED",
                                    "q: at most 255 bytes, percent-encoded");
    if ((err = om_admin_arg(req, "upstream", up, sizeof(up))) != OM_OK && err != OM_ERR_NOTFOUND)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED", "bad upstream");
    if (om_admin_arg(req, "sort", sort, sizeof(sort)) == OM_ERR_TOOBIG ||
        parse_repo_sort(sort, &rq.sort) != OM_OK)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED",
                                    "sort: name, pulled, pulls or size");
    if (om_admin_paging(req, &page, &per_page) != OM_OK)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "PAGINATION_NUMBER_INVALID",
                                    "page: 1.., per_page: 1..500");
    /* An alias filters like its upstream ("k8s.gcr.io" → registry.k8s.io). */
    const struct om_upstream_cfg *uc = up[0] ? om_config_upstream_find(srv->cfg, up, strlen(up)) : NULL;
    rq.q = q;
    rq.upstream = uc != NULL ? uc->name : up;
    rq.offset = (page - 1) * per_page;
    rq.limit = per_page;

    rows = calloc(per_page, sizeof(*rows)); /* freed below */
    if (rows == NULL)
        return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNKNOWN", "out of memory");
    if ((err = om_index_admin_repos(srv->stats->ia, &rq, rows, &n, &total)) != OM_OK) {
        ret = om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNKNOWN",
                                   om_strerror(err));
        goto done;
    }
    arr = json_array();
    doc = json_pack("{s:I, s:I, s:I, s:o}", "page", (json_int_t)page, "per_page",
                    (json_int_t)per_page, "total", (json_int_t)total, "repositories", arr);
    for (size_t i = 0; doc != NULL && i < n; i++) {
        const struct om_repo_row *r = &rows[i];
        json_t *o = json_object();
        om_json_set(o, "name", om_json_str(r->name));
        om_json_set(o, "upstream", upstream_of(r->name));
        om_json_set(o, "remote", om_json_str(strchr(r->name, '/') ? strchr(r->name, '/') + 1 : ""));
        om_json_set(o, "tags", om_json_u64(r->tags));
        om_json_set(o, "size_bytes", om_json_u64(r->size_bytes));
        om_json_set(o, "last_pulled_ms", time_or_null(r->last_pulled));
        om_json_set(o, "pull_count", om_json_u64(r->pull_count));
        json_array_append_new(arr, o);
    }
    ret = om_admin_reply_json(req, MHD_HTTP_OK, doc);
done:
    free(rows);
    return ret;
}

/* ---- what the stored bytes say ------------------------------------------- */

/* Read and parse a stored manifest.  OM_ERR_NOTFOUND when not stored. */
static int read_manifest(struct om_server *srv, const om_digest *d, const char *media_type,
                         struct om_manifest *m, size_t *len)
{
    char *buf = NULL;
    int err = om_store_read(srv->store, d, srv->cfg->limits.max_manifest_bytes, &buf, len);
    memset(m, 0, sizeof(*m));
    if (err == OM_OK)
        err = om_manifest_parse(m, buf, *len, media_type);
    free(buf);
    return err;
}

/* Read and parse a stored image config.  OM_ERR_NOTFOUND when not stored. */
static int read_config(struct om_server *srv, const om_digest *d, struct om_image_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    int err = om_store_read(srv->store, d, OM_ADMIN_CONFIG_READ_MAX, &buf, &len);
    memset(c, 0, sizeof(*c));
    if (err == OM_OK)
        err = om_image_config_parse(c, buf, len);
    free(buf);
    return err;
}

static void platform_str(char *out, size_t outsz, const struct om_image_config *c)
{
    snprintf(out, outsz, "%s/%s%s%s", c->os ? c->os : "unknown",
             c->architecture ? c->architecture : "unknown", c->variant ? "/" : "",
             c->variant ? c->variant : "");
}

/* The platforms a tagged manifest serves: an index's entries, or a
 * manifest's config os/arch (when the config is cached). */
static json_t *platforms_of(struct om_server *srv, const om_digest *d, const char *media_type)
{
    struct om_manifest m;
    struct om_image_config c;
    size_t len = 0;
    json_t *arr = json_array();
    char plat[160];

    memset(&c, 0, sizeof(c));
    if (read_manifest(srv, d, media_type, &m, &len) == OM_OK) {
        if (m.is_index) {
            for (size_t i = 0; i < m.n_manifests; i++)
                if (m.manifests[i].platform[0] != '\0')
                    json_array_append_new(arr, om_json_str(m.manifests[i].platform));
        } else if (m.has_config && read_config(srv, &m.config.digest, &c) == OM_OK) {
            platform_str(plat, sizeof(plat), &c);
            json_array_append_new(arr, om_json_str(plat));
        }
        om_image_config_free(&c);
    }
    om_manifest_free(&m);
    return arr;
}

/* ---- one repository's tags ------------------------------------------------ */

static int parse_tag_sort(const char *s, om_tag_sort *out)
{
    if (s[0] == '\0' || strcmp(s, "name") == 0)
        *out = OM_TAG_SORT_NAME;
    else if (strcmp(s, "fetched") == 0)
        *out = OM_TAG_SORT_FETCHED;
    else if (strcmp(s, "pulled") == 0)
        *out = OM_TAG_SORT_PULLED;
    else
        return OM_ERR_INVALID;
    return OM_OK;
}

static enum MHD_Result repository_tags(struct om_req *req, const char *name)
{
    struct om_server *srv = req->srv;
    struct om_tag_row *rows = NULL;
    uint64_t page = 1, total = 0;
    size_t per_page = 0, n = 0;
    char sort[16];
    om_tag_sort ts = OM_TAG_SORT_NAME;
    json_t *doc = NULL, *arr = NULL;
    enum MHD_Result ret;
    int64_t now = om_now_ms();
    int err;

    if (om_admin_arg(req, "sort", sort, sizeof(sort)) == OM_ERR_TOOBIG ||
        parse_tag_sort(sort, &ts) != OM_OK)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED",
                                    "sort: name, fetched or pulled");
    if (om_admin_paging(req, &page, &per_page) != OM_OK)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "PAGINATION_NUMBER_INVALID",
                                    "page: 1.., per_page: 1..500");
    rows = calloc(per_page, sizeof(*rows)); /* freed below */
    if (rows == NULL)
        return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNKNOWN", "out of memory");
    err = om_index_admin_tags(srv->stats->ia, name, ts, (page - 1) * per_page, per_page, rows, &n,
                              &total);
    if (err == OM_ERR_NOTFOUND) {
        ret = om_admin_reply_error(req, MHD_HTTP_NOT_FOUND, "NAME_UNKNOWN",
                                   "repository not in the cache");
        goto done;
    }
    if (err != OM_OK) {
        ret = om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNKNOWN", om_strerror(err));
        goto done;
    }
    arr = json_array();
    doc = json_pack("{s:o, s:o, s:I, s:I, s:I, s:I, s:o}", "name", om_json_str(name), "upstream",
                    upstream_of(name), "page", (json_int_t)page, "per_page", (json_int_t)per_page,
                    "total", (json_int_t)total, "tag_ttl_ms", (json_int_t)srv->cfg->tag_ttl_ms,
                    "tags", arr);
    for (size_t i = 0; doc != NULL && i < n; i++) {
        const struct om_tag_row *t = &rows[i];
        json_t *o = json_object();
        om_json_set(o, "tag", om_json_str(t->tag));
        om_json_set(o, "digest", om_json_str(t->digest.str));
        om_json_set(o, "media_type", om_json_str(t->media_type));
        om_json_set(o, "size", om_json_u64(t->size));
        om_json_set(o, "platforms", platforms_of(srv, &t->digest, t->media_type));
        om_json_set(o, "fetched_ms", time_or_null(t->fetched_at));
        om_json_set(o, "checked_ms", time_or_null(t->checked_at));
        om_json_set(o, "last_pulled_ms", time_or_null(t->last_pulled));
        om_json_set(o, "pull_count", om_json_u64(t->pull_count));
        /* Stale: the next pull of this tag asks the upstream first. */
        om_json_set(o, "stale", json_boolean(now - t->checked_at > (int64_t)srv->cfg->tag_ttl_ms));
        om_json_set(o, "cached", json_boolean(om_store_has(srv->store, &t->digest, NULL)));
        json_array_append_new(arr, o);
    }
    ret = om_admin_reply_json(req, MHD_HTTP_OK, doc);
done:
    free(rows);
    return ret;
}

enum MHD_Result om_admin_repository_sub(struct om_req *req, const char *rest)
{
    char name[OM_NAME_MAX + 16];
    size_t len;

    /* The UI may percent-encode the slashes of the name: decode first. */
    if (om_url_decode(name, sizeof(name), rest, strlen(rest)) != OM_OK)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID",
                                    "invalid repository name");
    len = strlen(name);
    if (len < 5 || strcmp(name + len - 5, "/tags") != 0)
        return om_admin_reply_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND",
                                    "no such endpoint: /api/v1/repositories/<name>/tags");
    name[len - 5] = '\0';
    if (!repo_name_ok(name))
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID",
                                    "invalid repository name");
    return repository_tags(req, name);
}

/* ---- one image ------------------------------------------------------------ */

static json_t *strlist_json(const struct om_strlist *l)
{
    json_t *arr;
    if (!l->present)
        return json_null();
    arr = json_array();
    for (size_t i = 0; arr != NULL && i < l->n; i++)
        json_array_append_new(arr, om_json_str(l->items[i]));
    return arr;
}

static json_t *config_json(struct om_server *srv, const struct om_descriptor *cd)
{
    struct om_image_config c;
    json_t *o = json_object(), *labels, *hist;
    bool cached = om_store_has(srv->store, &cd->digest, NULL);
    int err;

    om_json_set(o, "digest", om_json_str(cd->digest.str));
    om_json_set(o, "media_type", om_json_str(cd->media_type));
    om_json_set(o, "size", cd->size >= 0 ? json_integer(cd->size) : json_null());
    om_json_set(o, "cached", json_boolean(cached));
    if (!cached)
        return o;
    if ((err = read_config(srv, &cd->digest, &c)) != OM_OK) {
        om_json_set(o, "error", om_json_str(om_strerror(err)));
        om_image_config_free(&c);
        return o;
    }
    om_json_set(o, "created", om_json_str(c.created));
    om_json_set(o, "os", om_json_str(c.os));
    om_json_set(o, "architecture", om_json_str(c.architecture));
    om_json_set(o, "variant", om_json_str(c.variant));
    om_json_set(o, "author", om_json_str(c.author));
    om_json_set(o, "user", om_json_str(c.user));
    om_json_set(o, "working_dir", om_json_str(c.working_dir));
    om_json_set(o, "entrypoint", strlist_json(&c.entrypoint));
    om_json_set(o, "cmd", strlist_json(&c.cmd));
    om_json_set(o, "env", strlist_json(&c.env));
    om_json_set(o, "exposed_ports", strlist_json(&c.exposed_ports));
    labels = json_object();
    for (size_t i = 0; labels != NULL && i < c.n_labels; i++)
        om_json_set(labels, c.labels[i].key, om_json_str(c.labels[i].value));
    om_json_set(o, "labels", labels);
    hist = json_array();
    for (size_t i = 0; hist != NULL && i < c.n_history; i++) {
        const struct om_image_history *h = &c.history[i];
        json_t *e = json_object();
        om_json_set(e, "created", om_json_str(h->created));
        om_json_set(e, "created_by", om_json_str(h->created_by));
        om_json_set(e, "comment", om_json_str(h->comment));
        om_json_set(e, "empty_layer", json_boolean(h->empty_layer));
        json_array_append_new(hist, e);
    }
    om_json_set(o, "history", hist);
    om_image_config_free(&c);
    return o;
}

static json_t *descriptor_json(struct om_server *srv, const struct om_descriptor *d)
{
    json_t *o = json_object();
    om_json_set(o, "digest", om_json_str(d->digest.str));
    om_json_set(o, "media_type", om_json_str(d->media_type));
    om_json_set(o, "size", d->size >= 0 ? json_integer(d->size) : json_null());
    om_json_set(o, "cached", json_boolean(om_store_has(srv->store, &d->digest, NULL)));
    return o;
}

static json_t *pull_json(struct om_req *req, const char *name, const char *ref_sep,
                         const char *ref)
{
    char host[300], full[OM_NAME_MAX * 2 + 400];
    bool tls = false;
    json_t *o = json_object();

    om_admin_mirror_host(req, host, sizeof(host), &tls);
    snprintf(full, sizeof(full), "%s/%s%s%s", host, name, ref_sep, ref);
    om_json_set(o, "reference", om_json_str(full));
    om_json_set(o, "docker", json_sprintf("docker pull %s", full));
    /* podman and ctr refuse plain http unless told; docker needs the host
     * in insecure-registries (the setup page says so). */
    om_json_set(o, "podman", json_sprintf("podman pull %s%s", tls ? "" : "--tls-verify=false ", full));
    om_json_set(o, "ctr", json_sprintf("ctr image pull %s%s", tls ? "" : "--plain-http ", full));
    om_json_set(o, "crictl", json_sprintf("crictl pull %s", full));
    return o;
}

enum MHD_Result om_admin_image(struct om_req *req, const char *rest)
{
    struct om_server *srv = req->srv;
    char buf[OM_NAME_MAX + OM_DIGEST_MAX + 16], tag[OM_TAG_MAX + 1];
    char (*tags)[OM_TAG_MAX + 1] = NULL;
    struct om_manifest m;
    struct om_manifest_rec rec;
    om_digest d;
    size_t len = 0, n_tags = 0;
    json_t *doc = NULL, *arr;
    const char *mt = NULL;
    enum MHD_Result ret;
    int err;

    memset(&m, 0, sizeof(m));
    char *at = NULL;
    if (om_url_decode(buf, sizeof(buf), rest, strlen(rest)) != OM_OK ||
        (at = strrchr(buf, '@')) == NULL) {
        ret = om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID",
                                   "expected /api/v1/images/<name>@<digest>");
        goto done;
    }
    *at = '\0';
    if (!repo_name_ok(buf)) {
        ret = om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID",
                                   "invalid repository name");
        goto done;
    }
    if (om_digest_parse(&d, at + 1, strlen(at + 1)) != OM_OK) {
        ret = om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "DIGEST_INVALID", "invalid digest");
        goto done;
    }
    err = om_admin_arg(req, "tag", tag, sizeof(tag));
    if (err == OM_ERR_NOTFOUND || (err == OM_OK && tag[0] == '\0')) {
        tag[0] = '\0';
    } else if (err != OM_OK || !om_ref_tag_valid(tag, strlen(tag))) {
        ret = om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "TAG_INVALID", "invalid tag");
        goto done;
    }
    if (om_index_manifest_get(srv->index, &d, &rec) == OM_OK)
        mt = rec.media_type;
    err = read_manifest(srv, &d, mt, &m, &len);
    if (err == OM_ERR_NOTFOUND) {
        ret = om_admin_reply_error(req, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN",
                                   "manifest not in the cache");
        goto done;
    }
    if (err != OM_OK) {
        ret = om_admin_reply_error(req, err == OM_ERR_TOOBIG ? MHD_HTTP_CONTENT_TOO_LARGE
                                                             : MHD_HTTP_UNPROCESSABLE_CONTENT,
                                   "MANIFEST_INVALID", "the stored content is not a manifest");
        goto done;
    }

    doc = json_object();
    om_json_set(doc, "name", om_json_str(buf));
    om_json_set(doc, "upstream", upstream_of(buf));
    om_json_set(doc, "digest", om_json_str(d.str));
    om_json_set(doc, "media_type", om_json_str(m.media_type));
    om_json_set(doc, "size", om_json_u64(len));
    om_json_set(doc, "kind", json_string(m.is_index ? "index" : "manifest"));
    if (m.has_subject)
        om_json_set(doc, "subject", om_json_str(m.subject.str));

    tags = calloc(64, sizeof(*tags)); /* freed at done */
    arr = json_array();
    if (tags != NULL && om_index_admin_digest_tags(srv->stats->ia, buf, &d, tags, 64, &n_tags) == OM_OK)
        for (size_t i = 0; i < n_tags; i++)
            json_array_append_new(arr, om_json_str(tags[i]));
    om_json_set(doc, "tags", arr);

    if (m.is_index) {
        arr = json_array();
        for (size_t i = 0; arr != NULL && i < m.n_manifests; i++) {
            const struct om_descriptor *e = &m.manifests[i];
            json_t *o = descriptor_json(srv, e);
            om_json_set(o, "platform", om_json_str(e->platform));
            if (e->artifact_type[0] != '\0')
                om_json_set(o, "artifact_type", om_json_str(e->artifact_type));
            json_array_append_new(arr, o);
        }
        om_json_set(doc, "platforms", arr);
        om_json_set(doc, "layers", json_array());
        om_json_set(doc, "config", json_null());
    } else {
        uint64_t total = 0, cached = 0;
        arr = json_array();
        for (size_t i = 0; arr != NULL && i < m.n_layers; i++) {
            const struct om_descriptor *l = &m.layers[i];
            json_t *o = descriptor_json(srv, l);
            uint64_t sz = l->size > 0 ? (uint64_t)l->size : 0;
            total += sz;
            if (json_is_true(json_object_get(o, "cached")))
                cached += sz;
            json_array_append_new(arr, o);
        }
        om_json_set(doc, "platforms", json_array());
        om_json_set(doc, "layers", arr);
        om_json_set(doc, "layers_size", om_json_u64(total));
        om_json_set(doc, "layers_cached_size", om_json_u64(cached));
        om_json_set(doc, "config", m.has_config ? config_json(srv, &m.config) : json_null());
    }
    om_json_set(doc, "pull", pull_json(req, buf, tag[0] ? ":" : "@", tag[0] ? tag : d.str));
    ret = om_admin_reply_json(req, MHD_HTTP_OK, doc);
done:
    free(tags);
    om_manifest_free(&m);
    return ret;
}
