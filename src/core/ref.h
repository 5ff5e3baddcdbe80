/* ref.h — pure parsers for everything a client or upstream sends us that
 * names content: repository names, tags, digests, Range headers and the
 * request path of the /v2/ API.
 *
 * Nothing here allocates, does I/O or knows about HTTP libraries.  Parsers
 * take (pointer, length) input, write into caller-provided fixed-size structs
 * and return OM_OK or OM_ERR_INVALID (OM_ERR_TOOBIG where a count limit hit).
 * Every function is fuzzed and unit tested with truncated prefixes.
 */
#ifndef OM_REF_H
#define OM_REF_H

#include "core/om.h"

/* name: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
 * at most OM_NAME_MAX bytes. */
bool om_ref_name_valid(const char *s, size_t len);

/* A repository name as a request path may carry it: a name, or
 * "host:port/" followed by a name (a path-prefixed mirror of a registry
 * with a port).  om_v2_path_parse uses this; the router then accepts the
 * host only if it is a configured upstream or alias. */
bool om_ref_request_name_valid(const char *s, size_t len);

/* tag: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */
bool om_ref_tag_valid(const char *s, size_t len);

/* A digest in canonical form. Only sha256 is accepted (what every registry
 * we proxy uses); sha512 and others are OM_ERR_INVALID. */
typedef struct {
    char str[OM_DIGEST_MAX + 1]; /* "sha256:<64 lower hex>", NUL-terminated */
} om_digest;

/* Parse "sha256:<64 lowercase hex>" exactly (no whitespace, no uppercase). */
int om_digest_parse(om_digest *out, const char *s, size_t len);
/* The 64-char hex part of a parsed digest. */
static inline const char *om_digest_hex(const om_digest *d) { return d->str + 7; }
/* Fill from a raw 32-byte SHA-256. */
void om_digest_from_sha256(om_digest *out, const unsigned char raw[32]);

/* A reference in a manifests URL: either a tag or a digest. */
typedef struct {
    bool is_digest;
    om_digest digest;               /* when is_digest */
    char tag[OM_TAG_MAX + 1];       /* when !is_digest */
} om_reference;
int om_reference_parse(om_reference *out, const char *s, size_t len);
static inline const char *om_reference_str(const om_reference *r)
{
    return r->is_digest ? r->digest.str : r->tag;
}

/* ---- Range ---------------------------------------------------------- */

#define OM_RANGE_MAX 16   /* more ranges than this in one header: 416/ignored */

typedef struct {
    uint64_t first; /* inclusive */
    uint64_t last;  /* inclusive */
} om_byte_range;

typedef struct {
    size_t n;
    om_byte_range r[OM_RANGE_MAX];
} om_range_set;

/* Parse an HTTP Range header ("bytes=0-9,20-,-5") against a resource of
 * `size` bytes.  Results are clamped to the resource and in header order.
 * Returns:
 *   OM_OK            n >= 1 satisfiable ranges in out
 *   OM_ERR_INVALID   syntactically bad or not "bytes": ignore the header, send 200
 *   OM_ERR_NOTFOUND  well formed but nothing satisfiable: send 416
 *   OM_ERR_TOOBIG    more than OM_RANGE_MAX ranges, or satisfiable ranges
 *                    that overlap (they would send bytes twice): send 200
 *                    (ignore)
 * Disjoint ranges are kept in the order the client sent them.  Whitespace around
 * commas and empty list elements are tolerated (RFC 9110 5.6.1); the unit
 * is case-insensitive.  Numbers too big for uint64_t saturate, so
 * "bytes=0-99999999999999999999" is the whole resource.  A zero-byte
 * resource has no satisfiable range (OM_ERR_NOTFOUND). */
int om_range_parse(om_range_set *out, const char *hdr, size_t len, uint64_t size);

/* ---- the /v2/ request path ------------------------------------------ */

typedef enum {
    OM_V2_BASE,        /* /v2/ */
    OM_V2_CATALOG,     /* /v2/_catalog */
    OM_V2_MANIFEST,    /* /v2/<name>/manifests/<reference> */
    OM_V2_BLOB,        /* /v2/<name>/blobs/<digest> */
    OM_V2_TAGS,        /* /v2/<name>/tags/list */
    OM_V2_REFERRERS,   /* /v2/<name>/referrers/<digest> */
    OM_V2_UPLOAD,      /* /v2/<name>/blobs/uploads/... (push: always 405) */
} om_v2_kind;

typedef struct {
    om_v2_kind kind;
    char name[OM_NAME_MAX + 1];
    om_reference ref;   /* MANIFEST (tag or digest), BLOB/REFERRERS (digest) */
} om_v2_path;

/* Why a path did not parse: the caller turns it into the OCI answer. */
typedef enum {
    OM_V2F_NONE = 0,
    OM_V2F_NOT_API,   /* not a /v2/ API path at all: 404 NOT_FOUND */
    OM_V2F_NAME,      /* API path with an invalid repository name: 400 NAME_INVALID */
    OM_V2F_TAG,       /* manifests/<malformed reference>: 404 MANIFEST_UNKNOWN */
    OM_V2F_DIGEST,    /* blobs|referrers/<malformed digest>: 400 DIGEST_INVALID */
} om_v2_fault;

/* Parse the raw request path (NOT percent-decoded: the server hands paths
 * over verbatim, and no valid name, tag or digest contains '%', so any
 * escape is simply invalid).  No query string.  Returns OM_OK, or
 * OM_ERR_INVALID with *fault saying why and out->kind filled as far as it
 * was recognised.  Names are checked with om_ref_name_valid, so "..", "//",
 * "./" and upper case never get through.  `fault` may be NULL.
 * Names may contain components called "manifests", "blobs", ...: the path
 * is split at the LAST endpoint marker.  For OM_V2_UPLOAD the session id
 * after "uploads/" is not validated (a read-only mirror never uses it). */
int om_v2_path_parse(om_v2_path *out, const char *path, size_t len, om_v2_fault *fault);

/* Percent-decode a query parameter value into out (NUL-terminated).
 * OM_ERR_TOOBIG if it does not fit; OM_ERR_INVALID on a bad escape or a NUL.
 * Only %XX is decoded: '+' stays '+'.  On error out is "". */
int om_url_decode(char *out, size_t outsz, const char *s, size_t len);
/* Percent-encode for a URL query/path component (RFC 3986 unreserved
 * A-Z a-z 0-9 - . _ ~ kept, everything else %XX upper case).
 * OM_ERR_TOOBIG if it does not fit; on error out is "". */
int om_url_encode(char *out, size_t outsz, const char *s, size_t len);

/* The next page of a paged list from an upstream's Link header (RFC 8288):
 * the target of the first link-value whose rel names "next", e.g.
 * `</v2/library/alpine/tags/list?last=3.19&n=100>; rel="next"`.  Taken
 * only when it stays on the list being paged: base itself or base + "?"
 * and a query, a path (no scheme or host: relative, as distribution, Docker
 * Hub and quay send it), visible ASCII without '#'.  OM_OK with the target
 * in out; OM_ERR_INVALID when there is no such link; OM_ERR_TOOBIG when it
 * does not fit.  On error out is "". */
int om_link_next(char *out, size_t outsz, const char *link, const char *base);

#endif
