/* ui.h — the embedded web UI: static files compiled into the binary,
 * served at / (index.html) and /ui/<file>.  Implemented in ui.c; the file
 * table is generated at build time by cmake/embed.cmake from the files under ui/. */
#ifndef OM_UI_H
#define OM_UI_H

#include <stdbool.h>
#include <stddef.h>

#include "http/req.h"

/* Answer a request for a path outside /v2/, /api/ and /metrics. */
enum MHD_Result om_ui_handle(struct om_req *req);

/* One embedded file (static storage, never freed). */
struct om_ui_file {
    const char *path;          /* relative to ui/, e.g. "app.js" */
    const char *content_type;  /* e.g. "text/javascript; charset=utf-8" */
    const char *hash;          /* 16 hex digits of the content's SHA-256: the ETag */
    const unsigned char *data; /* len bytes, followed by a NUL */
    size_t len;
};

/* The generated table (build/generated/ui_embed.c), sorted by path. */
extern const struct om_ui_file om_ui_files[];
extern const size_t om_ui_n_files;

/* The embedded file a request path names, or NULL: "/" and "/ui/" name
 * index.html, "/ui/<path>" names <path>; nothing else is ours.  `path` is
 * the URL path without its query. */
const struct om_ui_file *om_ui_find(const char *path);

/* Whether an If-None-Match header value matches the ETag of file f
 * (weak comparison, as RFC 9110 asks for If-None-Match; "*" matches). */
bool om_ui_etag_matches(const struct om_ui_file *f, const char *if_none_match);

#endif
