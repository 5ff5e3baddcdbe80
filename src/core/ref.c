/* ref.c — pure parsers for repository names, tags, digests, Range headers
 * and /v2/ request paths.  See ref.h for the contract of each function.
 *
 * Design:
 *   - Everything here reads (pointer, length) input that came from a client
 *     or an upstream, writes into caller-provided fixed-size structs and
 *     never allocates, does I/O or looks at the locale (<ctype.h> depends on
 *     it, so the character classes below are spelled out in ASCII).
 *   - Grammars are checked by small explicit state machines rather than a
 *     regex library: the name grammar has one subtle part (separators are
 *     '.', '_', "__" or a run of '-', each between alphanumerics) and a
 *     five-state machine states it exactly.
 *   - Every output is reset first, so a caller that ignores an error never
 *     reads a half-filled result (a Range set has n == 0, a digest is "").
 *   - Numbers in Range headers saturate at UINT64_MAX instead of
 *     overflowing: any value that large is past the end of every resource,
 *     so clamping gives the same answer an arbitrary-precision parser would.
 *     Ordering of first/last is decided on the digit strings themselves, so
 *     saturation never turns an invalid range into a valid one.
 *   - /v2/ paths are split at the LAST endpoint marker ("/manifests/",
 *     "/blobs/", "/referrers/", trailing "/tags/list") because repository
 *     names may themselves contain components called "manifests" or
 *     "blobs".  A tag or digest never contains '/', so an earlier marker's
 *     tail always contains the later marker's '/' and can never be valid:
 *     the last marker is the only split that can succeed.
 *
 * If you add a parser: give it a size limit, reset its output on entry, add
 * a table test in tests/unit/test_ref.c including every truncated prefix of
 * a valid input, and add it to the fuzz target.
 */
#include "core/ref.h"

#include <string.h>
#include <strings.h>

/* ---- character classes (ASCII, locale independent) ------------------ */

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
static bool is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static bool is_lower_alnum(unsigned char c) { return is_lower(c) || is_digit(c); }
static bool is_lower_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

/* RFC 3986 "unreserved": kept verbatim by om_url_encode. */
static bool is_unreserved(unsigned char c)
{
    return is_lower(c) || is_upper(c) || is_digit(c) || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

/* Value of a hex digit in either case, or -1. */
static int hex_value(unsigned char c)
{
    int v = -1;
    if (is_digit(c))
        v = c - '0';
    else if (c >= 'a' && c <= 'f')
        v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
        v = c - 'A' + 10;
    return v;
}

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t plen = strlen(prefix);
    return len >= plen && memcmp(s, prefix, plen) == 0;
}

static bool equals(const char *s, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

/* ---- names and tags -------------------------------------------------- */

/* States of the name grammar
 *   component := [a-z0-9]+ ( ( '.' | '_' | '__' | '-'+ ) [a-z0-9]+ )*
 *   name      := component ( '/' component )*
 * Only NS_ALNUM may end the name; every separator must be followed by an
 * alphanumeric, which is what rejects "a.", "a..b", "a___b", "a_-b", "a//b",
 * "/a" and "a/". */
enum name_state {
    NS_COMP_START, /* start of a component: need [a-z0-9] */
    NS_ALNUM,      /* inside an alphanumeric run */
    NS_DOT,        /* after '.': need [a-z0-9] */
    NS_US1,        /* after '_': [a-z0-9] or a second '_' */
    NS_US2,        /* after "__": need [a-z0-9] */
    NS_DASH,       /* after one or more '-': [a-z0-9] or another '-' */
};

bool om_ref_name_valid(const char *s, size_t len)
{
    bool ok = false;
    enum name_state st = NS_COMP_START;

    if (s == NULL || len == 0 || len > OM_NAME_MAX)
        goto done;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_lower_alnum(c)) {
            st = NS_ALNUM;
        } else if (st == NS_ALNUM) {
            if (c == '.')
                st = NS_DOT;
            else if (c == '_')
                st = NS_US1;
            else if (c == '-')
                st = NS_DASH;
            else if (c == '/')
                st = NS_COMP_START;
            else
                goto done;
        } else if (st == NS_US1 && c == '_') {
            st = NS_US2;
        } else if (st == NS_DASH && c == '-') {
            st = NS_DASH;
        } else {
            goto done;
        }
    }
    ok = st == NS_ALNUM;
done:
    return ok;
}

bool om_ref_tag_valid(const char *s, size_t len)
{
    bool ok = false;

    if (s == NULL || len == 0 || len > OM_TAG_MAX)
        goto done;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool word = is_lower(c) || is_upper(c) || is_digit(c) || c == '_';
        /* '.' and '-' are allowed everywhere but first (no "-rm", no ".."
         * as a whole tag). */
        if (!(word || (i > 0 && (c == '.' || c == '-'))))
            goto done;
    }
    ok = true;
done:
    return ok;
}

/* ---- digests and references ------------------------------------------ */

#define DIGEST_PREFIX "sha256:"
#define DIGEST_PREFIX_LEN 7
#define DIGEST_HEX_LEN 64

int om_digest_parse(om_digest *out, const char *s, size_t len)
{
    int err = OM_ERR_INVALID;

    out->str[0] = '\0';
    if (s == NULL || len != OM_DIGEST_MAX || !has_prefix(s, len, DIGEST_PREFIX))
        goto done;
    for (size_t i = DIGEST_PREFIX_LEN; i < len; i++) {
        if (!is_lower_hex((unsigned char)s[i]))
            goto done;
    }
    memcpy(out->str, s, len);
    out->str[len] = '\0';
    err = OM_OK;
done:
    return err;
}

void om_digest_from_sha256(om_digest *out, const unsigned char raw[32])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out->str + DIGEST_PREFIX_LEN;

    memcpy(out->str, DIGEST_PREFIX, DIGEST_PREFIX_LEN);
    for (size_t i = 0; i < DIGEST_HEX_LEN / 2; i++) {
        *p++ = hex[raw[i] >> 4];
        *p++ = hex[raw[i] & 0x0f];
    }
    *p = '\0';
}

int om_reference_parse(om_reference *out, const char *s, size_t len)
{
    int err = OM_ERR_INVALID;

    memset(out, 0, sizeof(*out));
    if (s == NULL)
        goto done;
    /* A tag can never contain ':', a digest always does: that is the whole
     * decision, no guessing from length or prefix. */
    if (memchr(s, ':', len) != NULL) {
        out->is_digest = true;
        err = om_digest_parse(&out->digest, s, len);
    } else if (om_ref_tag_valid(s, len)) {
        memcpy(out->tag, s, len);
        out->tag[len] = '\0';
        err = OM_OK;
    }
done:
    if (err != OM_OK)
        memset(out, 0, sizeof(*out));
    return err;
}

/* ---- Range ------------------------------------------------------------ */

/* Digits at s[*i...]; advances *i past them.  The value saturates at
 * UINT64_MAX (see the file comment).  Returns the number of digits. */
static size_t parse_dec(const char *s, size_t len, size_t *i, uint64_t *out)
{
    size_t start = *i;
    uint64_t v = 0;

    while (*i < len && is_digit((unsigned char)s[*i])) {
        unsigned d = (unsigned)(s[*i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            v = UINT64_MAX;
        else
            v = v * 10 + d;
        (*i)++;
    }
    *out = v;
    return *i - start;
}

/* Numeric comparison of two non-empty digit strings of any length:
 * <0, 0, >0 like memcmp.  Used so that saturated values still order
 * correctly ("bytes=99999999999999999999999-99999999999999999999998"). */
static int dec_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int r;

    while (alen > 1 && *a == '0') {
        a++;
        alen--;
    }
    while (blen > 1 && *b == '0') {
        b++;
        blen--;
    }
    if (alen != blen)
        r = alen < blen ? -1 : 1;
    else
        r = memcmp(a, b, alen);
    return r;
}

static void skip_ows(const char *s, size_t len, size_t *i)
{
    while (*i < len && (s[*i] == ' ' || s[*i] == '\t'))
        (*i)++;
}

/* Range units are case-insensitive (RFC 9110 14.1). */
static bool has_prefix_ci(const char *s, size_t len, const char *lower_prefix)
{
    size_t plen = strlen(lower_prefix);
    bool ok = len >= plen;

    for (size_t i = 0; ok && i < plen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_upper(c))
            c = (unsigned char)(c - 'A' + 'a');
        ok = c == (unsigned char)lower_prefix[i];
    }
    return ok;
}

/* One range-spec at hdr[*i...]: int-range "F-[L]" or suffix-range "-N".
 * On OM_OK, *satisfiable says whether it selects any byte of a `size`-byte
 * resource and *r holds it clamped to the resource. */
static int parse_range_spec(const char *hdr, size_t len, size_t *i, uint64_t size,
                            om_byte_range *r, bool *satisfiable)
{
    int err = OM_ERR_INVALID;
    uint64_t first = 0, last = 0;
    size_t fpos, fdigits, lpos, ldigits;

    *satisfiable = false;
    if (hdr[*i] == '-') {
        /* suffix-range: the last N bytes; N == 0 selects nothing. */
        (*i)++;
        if (parse_dec(hdr, len, i, &last) == 0)
            goto done;
        if (last > 0 && size > 0) {
            r->first = size > last ? size - last : 0;
            r->last = size - 1;
            *satisfiable = true;
        }
        err = OM_OK;
        goto done;
    }
    fpos = *i;
    fdigits = parse_dec(hdr, len, i, &first);
    if (fdigits == 0 || *i >= len || hdr[*i] != '-')
        goto done;
    (*i)++;
    lpos = *i;
    ldigits = parse_dec(hdr, len, i, &last);
    if (ldigits == 0) {
        last = UINT64_MAX; /* "F-": to the end */
    } else if (dec_cmp(hdr + lpos, ldigits, hdr + fpos, fdigits) < 0) {
        goto done; /* last < first: the whole header is invalid (RFC 9110 14.1.1) */
    }
    if (first < size) {
        r->first = first;
        r->last = last < size - 1 ? last : size - 1;
        *satisfiable = true;
    }
    err = OM_OK;
done:
    return err;
}

int om_range_parse(om_range_set *out, const char *hdr, size_t len, uint64_t size)
{
    int err = OM_ERR_INVALID;
    size_t i = 0, nspec = 0;

    out->n = 0;
    if (hdr == NULL)
        goto done;
    skip_ows(hdr, len, &i);
    if (!has_prefix_ci(hdr + i, len - i, "bytes="))
        goto done;
    i += 6;
    /* range-set = 1#range-spec: elements separated by commas with optional
     * whitespace around them; empty elements are ignored (RFC 9110 5.6.1). */
    for (;;) {
        skip_ows(hdr, len, &i);
        if (i < len && hdr[i] != ',') {
            om_byte_range r = {0, 0};
            bool sat = false;
            if (parse_range_spec(hdr, len, &i, size, &r, &sat) != OM_OK)
                goto done;
            /* Stop counting at the limit: bounded work whatever the client
             * sends, and the caller ignores such a header anyway. */
            if (++nspec > OM_RANGE_MAX) {
                err = OM_ERR_TOOBIG;
                goto done;
            }
            if (sat)
                out->r[out->n++] = r;
            skip_ows(hdr, len, &i);
        }
        if (i == len)
            break;
        if (hdr[i] != ',')
            goto done;
        i++;
    }
    if (nspec == 0)
        goto done;
    err = out->n > 0 ? OM_OK : OM_ERR_NOTFOUND;
    /* Overlapping ranges would send some bytes twice (bytes=0-,0-,... 16
     * times the resource): ignore them, as Go's ServeContent and nginx do.
     * Disjoint ranges inside the resource never sum past its size. */
    for (size_t a = 0; err == OM_OK && a < out->n; a++)
        for (size_t b = a + 1; b < out->n; b++)
            if (out->r[a].first <= out->r[b].last && out->r[b].first <= out->r[a].last) {
                err = OM_ERR_TOOBIG;
                break;
            }
done:
    if (err != OM_OK)
        out->n = 0;
    return err;
}

/* ---- the /v2/ request path -------------------------------------------- */

struct v2_marker {
    const char *text;
    om_v2_kind kind;
};

/* Endpoints of the form /v2/<name><marker><reference>. */
static const struct v2_marker v2_markers[] = {
    {"/manifests/", OM_V2_MANIFEST},
    {"/blobs/", OM_V2_BLOB},
    {"/referrers/", OM_V2_REFERRERS},
};

/* A first path component "host:port" (registries.conf mirrors for a
 * registry with a port send /v2/localhost:5000/team/app/...): the host as
 * in the reference grammar's domain part, then 1-5 digits.  The router
 * decides whether that host is a configured upstream; here it only has to
 * be well formed so that it gets a 404 NAME_UNKNOWN, not NAME_INVALID. */
static bool host_port_valid(const char *s, size_t len)
{
    const char *colon = memchr(s, ':', len);
    if (colon == NULL || colon == s)
        return false;
    size_t hl = (size_t)(colon - s), pl = len - hl - 1;
    if (pl < 1 || pl > 5 || s[0] == '-' || s[0] == '.' || s[hl - 1] == '-' || s[hl - 1] == '.')
        return false;
    for (size_t i = 0; i < hl; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_lower_alnum(c) && !is_upper(c) && c != '.' && c != '-')
            return false;
    }
    for (size_t i = 0; i < pl; i++)
        if (!is_digit((unsigned char)colon[1 + i]))
            return false;
    return true;
}

bool om_ref_request_name_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > OM_NAME_MAX)
        return false;
    const char *slash = memchr(s, '/', len);
    size_t first = slash ? (size_t)(slash - s) : len;
    if (slash != NULL && memchr(s, ':', first) != NULL)
        return host_port_valid(s, first) && om_ref_name_valid(slash + 1, len - first - 1);
    return om_ref_name_valid(s, len);
}

#define TAGS_SUFFIX "/tags/list"
#define UPLOADS_PREFIX "uploads/"

/* Find the last endpoint marker in p (p starts with the '/' after "v2").
 * Sets *kind, *name_end (where the name stops) and *tail, *tail_len (the
 * reference after the marker).  False when p names no endpoint. */
static bool v2_split(const char *p, size_t plen, om_v2_kind *kind, size_t *name_end,
                     const char **tail, size_t *tail_len)
{
    bool found = false;
    size_t tlen = strlen(TAGS_SUFFIX);

    for (size_t i = plen; i-- > 0 && !found;) {
        if (p[i] != '/')
            continue;
        if (i + tlen == plen && memcmp(p + i, TAGS_SUFFIX, tlen) == 0) {
            *kind = OM_V2_TAGS;
            *name_end = i;
            *tail = p + plen;
            *tail_len = 0;
            found = true;
        }
        for (size_t m = 0; m < OM_ARRAY_LEN(v2_markers) && !found; m++) {
            if (!has_prefix(p + i, plen - i, v2_markers[m].text))
                continue;
            *kind = v2_markers[m].kind;
            *name_end = i;
            *tail = p + i + strlen(v2_markers[m].text);
            *tail_len = plen - (size_t)(*tail - p);
            found = true;
        }
    }
    if (found && *kind == OM_V2_BLOB && has_prefix(*tail, *tail_len, UPLOADS_PREFIX))
        *kind = OM_V2_UPLOAD;
    return found;
}

int om_v2_path_parse(om_v2_path *out, const char *path, size_t len, om_v2_fault *fault)
{
    int err = OM_ERR_INVALID;
    om_v2_fault f = OM_V2F_NOT_API;
    const char *p, *tail = NULL;
    size_t plen, name_end = 0, tail_len = 0;
    om_v2_kind kind = OM_V2_BASE;

    memset(out, 0, sizeof(*out));
    if (path == NULL || !has_prefix(path, len, "/v2"))
        goto done;
    p = path + 3;
    plen = len - 3;
    if (plen == 0 || equals(p, plen, "/")) {
        out->kind = OM_V2_BASE;
        f = OM_V2F_NONE;
        goto done;
    }
    if (equals(p, plen, "/_catalog")) {
        out->kind = OM_V2_CATALOG;
        f = OM_V2F_NONE;
        goto done;
    }
    if (p[0] != '/' || !v2_split(p, plen, &kind, &name_end, &tail, &tail_len))
        goto done;
    out->kind = kind;

    /* The name is p[1 .. name_end): empty when the path is "/v2/manifests/x". */
    if (name_end < 1 || !om_ref_request_name_valid(p + 1, name_end - 1)) {
        f = OM_V2F_NAME;
        goto done;
    }
    memcpy(out->name, p + 1, name_end - 1);
    out->name[name_end - 1] = '\0';

    switch (kind) {
    case OM_V2_MANIFEST:
        if (om_reference_parse(&out->ref, tail, tail_len) != OM_OK) {
            f = OM_V2F_TAG;
            goto done;
        }
        break;
    case OM_V2_BLOB:
    case OM_V2_REFERRERS:
        out->ref.is_digest = true;
        if (om_digest_parse(&out->ref.digest, tail, tail_len) != OM_OK) {
            f = OM_V2F_DIGEST;
            goto done;
        }
        break;
    default:
        /* TAGS has no reference; UPLOAD's session id is never used by a
         * read-only mirror, so it is not validated. */
        break;
    }
    f = OM_V2F_NONE;
done:
    if (f == OM_V2F_NONE)
        err = OM_OK;
    if (fault != NULL)
        *fault = f;
    return err;
}

/* ---- percent encoding ------------------------------------------------- */

int om_url_decode(char *out, size_t outsz, const char *s, size_t len)
{
    int err = OM_ERR_TOOBIG;
    size_t o = 0;

    if (out == NULL || outsz == 0)
        goto done;
    err = OM_ERR_INVALID;
    if (s == NULL && len > 0)
        goto done;
    /* Only %XX is decoded; '+' stays '+' (RFC 3986 decoding, not HTML form
     * decoding).  No value we decode (ns, last, n) may contain '+' or ' '. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex_value((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                goto done;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0')
            goto done;
        if (o + 1 >= outsz) {
            err = OM_ERR_TOOBIG;
            goto done;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    err = OM_OK;
done:
    if (err != OM_OK && out != NULL && outsz > 0)
        out[0] = '\0';
    return err;
}

int om_url_encode(char *out, size_t outsz, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    int err = OM_ERR_TOOBIG;
    size_t o = 0;

    if (out == NULL || outsz == 0)
        goto done;
    if (s == NULL && len > 0) {
        err = OM_ERR_INVALID;
        goto done;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = is_unreserved(c) ? 1 : 3;
        if (need >= outsz - o)
            goto done;
        if (need == 1) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0x0f];
        }
    }
    out[o] = '\0';
    err = OM_OK;
done:
    if (err != OM_OK && out != NULL && outsz > 0)
        out[0] = '\0';
    return err;
}

static const char *skip_blanks(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Whether the parameters [p, end) of one link-value hold rel="next" (or
 * rel=next, or "next" among rel's space-separated values), any case. */
static bool link_rel_is_next(const char *p, const char *end)
{
    const char *semi;
    while ((semi = memchr(p, ';', (size_t)(end - p))) != NULL) {
        p = skip_blanks(semi + 1, end);
        if ((size_t)(end - p) <= 3 || strncasecmp(p, "rel", 3) != 0)
            continue;
        p = skip_blanks(p + 3, end);
        if (p == end || *p != '=')
            continue;
        p = skip_blanks(p + 1, end);
        bool quoted = p < end && *p == '"';
        const char *v = p + quoted, *vend = v;
        while (vend < end && (quoted ? *vend != '"' : (*vend != ';' && *vend != ',' && *vend != ' ')))
            vend++;
        for (const char *w = v; w < vend;) {
            const char *we = memchr(w, ' ', (size_t)(vend - w));
            if (we == NULL)
                we = vend;
            if (we - w == 4 && strncasecmp(w, "next", 4) == 0)
                return true;
            w = we + 1;
        }
        p = vend;
    }
    return false;
}

int om_link_next(char *out, size_t outsz, const char *link, const char *base)
{
    const char *p = link;
    size_t blen = base != NULL ? strlen(base) : 0;

    if (out == NULL || outsz == 0)
        return OM_ERR_TOOBIG;
    out[0] = '\0';
    if (link == NULL || blen == 0)
        return OM_ERR_INVALID;
    while ((p = strchr(p, '<')) != NULL) {
        const char *target = p + 1, *gt = strchr(target, '>');
        if (gt == NULL)
            break;
        /* this link-value's parameters end where the next one starts */
        const char *params_end = strchr(gt, '<');
        if (params_end == NULL)
            params_end = gt + strlen(gt);
        if (link_rel_is_next(gt + 1, params_end)) {
            size_t n = (size_t)(gt - target);
            if (n < blen || memcmp(target, base, blen) != 0 || (n > blen && target[blen] != '?'))
                return OM_ERR_INVALID;
            for (size_t k = 0; k < n; k++)
                if ((unsigned char)target[k] <= 0x20 || (unsigned char)target[k] >= 0x7f ||
                    target[k] == '#')
                    return OM_ERR_INVALID;
            if (n >= outsz)
                return OM_ERR_TOOBIG;
            memcpy(out, target, n);
            out[n] = '\0';
            return OM_OK;
        }
        p = gt + 1;
    }
    return OM_ERR_INVALID;
}
