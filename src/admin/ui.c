/* ui.c — serves the embedded web UI.
 *
 * The files under ui/ are compiled into the binary by cmake/embed.cmake
 * (build/generated/ui_embed.c: bytes, path, Content-Type and a content hash
 * per file), so a running mirror needs nothing on disk and never fetches
 * anything for its pages.  The UI is a single page (hash routing) that
 * talks only to the admin JSON API (/api/v1/..., docs/admin-api.md).
 *
 * Paths: "/" and "/ui/" answer index.html, "/ui/<file>" answers that file,
 * anything else that reaches us (server/dispatch.c sends every GET/HEAD outside
 * /v2/, /api/, /metrics and /healthz here) is a 404 — so a mistyped asset
 * path is an error, not the index page.
 *
 * Caching: every answer carries a strong ETag (the build-time hash) and
 * If-None-Match answers 304.  index.html is "no-cache" (always revalidated,
 * cheap with the ETag) and loads its assets as /ui/<file>?v=<hash>; an
 * asset asked for with its current hash may be kept for a year
 * ("immutable"), one asked for without it (or with an old hash) is
 * "no-cache".  A new build therefore changes index.html's references and
 * no browser runs an old script with a new page.
 *
 * Safety headers: nosniff everywhere; the HTML gets a Content-Security-Policy
 * that allows only same-origin scripts, styles and fetches (no inline
 * script), so even a bug that put API text into markup could not run it.
 * The bytes are static: responses point at them (MHD_RESPMEM_PERSISTENT)
 * and nothing here allocates besides libmicrohttpd's response object.
 */
#include "admin/ui.h"

#include <stdio.h>
#include <string.h>

#define UI_PREFIX "/ui/"
#define UI_INDEX "index.html"
#define UI_HASH_LEN 16
#define CC_REVALIDATE "no-cache"
#define CC_IMMUTABLE "public, max-age=31536000, immutable"
#define UI_CSP                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " \
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "  \
    "frame-ancestors 'none'"

static const struct om_ui_file *find_rel(const char *rel)
{
    const struct om_ui_file *found = NULL;

    for (size_t i = 0; i < om_ui_n_files && found == NULL; i++)
        if (strcmp(om_ui_files[i].path, rel) == 0)
            found = &om_ui_files[i];
    return found;
}

const struct om_ui_file *om_ui_find(const char *path)
{
    const struct om_ui_file *f = NULL;

    if (path == NULL)
        goto done;
    if (strcmp(path, "/") == 0 || strcmp(path, UI_PREFIX) == 0) {
        f = find_rel(UI_INDEX);
        goto done;
    }
    /* Exact match against the table only: "..", "//" or "%2e" can never
     * name anything that is not embedded. */
    if (strncmp(path, UI_PREFIX, strlen(UI_PREFIX)) == 0)
        f = find_rel(path + strlen(UI_PREFIX));
done:
    return f;
}

/* RFC 9110 §13.1.2: If-None-Match = "*" / #entity-tag, entity-tag =
 * [ W/ ] DQUOTE *etagc DQUOTE; weak comparison (ignore W/).  The value is
 * NUL-terminated and bounded by the server's header size limit. */
bool om_ui_etag_matches(const struct om_ui_file *f, const char *if_none_match)
{
    bool match = false;
    const char *p = if_none_match;

    if (f == NULL || p == NULL)
        goto done;
    while (*p != '\0' && !match) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        if (*p == '*') {
            match = true;
            break;
        }
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p != '"')
            break; /* malformed: no match (the full answer is always safe) */
        const char *open = ++p;
        const char *close = strchr(open, '"');
        if (close == NULL)
            break;
        match = (size_t)(close - open) == strlen(f->hash) &&
                memcmp(open, f->hash, (size_t)(close - open)) == 0;
        p = close + 1;
    }
done:
    return match;
}

static enum MHD_Result queue(struct om_req *req)
{
    enum MHD_Result r = MHD_NO;

    if (req->resp != NULL) {
        r = MHD_queue_response(req->conn, req->status, req->resp);
        MHD_destroy_response(req->resp);
        req->resp = NULL;
    }
    return r;
}

enum MHD_Result om_ui_handle(struct om_req *req)
{
    const struct om_ui_file *f = om_ui_find(req->url);
    struct MHD_Response *resp = NULL;
    const char *v = NULL;
    char etag[UI_HASH_LEN + 8];
    bool is_html = false, versioned = false, not_modified = false;

    if (f == NULL) {
        om_req_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such page");
        goto done;
    }
    snprintf(etag, sizeof(etag), "\"%s\"", f->hash);
    is_html = strcmp(f->content_type, "text/html; charset=utf-8") == 0;
    v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "v");
    versioned = !is_html && v != NULL && strcmp(v, f->hash) == 0;
    not_modified = om_ui_etag_matches(
        f, MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH));

    /* The bytes live as long as the program: no copy.  req->bytes stays 0:
     * om_api_completed counts body bytes of requests without a cache result
     * as "served from upstream", and UI files are neither. */
    resp = MHD_create_response_from_buffer(not_modified ? 0 : f->len, (void *)f->data,
                                           MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        goto done;
    if (!not_modified)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, f->content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                            versioned ? CC_IMMUTABLE : CC_REVALIDATE);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (is_html) {
        MHD_add_response_header(resp, "Content-Security-Policy", UI_CSP);
        MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
    }
    req->resp = resp;
    req->status = not_modified ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK;
done:
    return queue(req);
}
