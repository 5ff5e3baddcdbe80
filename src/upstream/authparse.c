/* authparse.c — the pure parsers of the upstream client (see upstream.h,
 * "the pure part"): WWW-Authenticate challenges, token service answers,
 * Retry-After and Docker Hub's ratelimit-remaining (its count and window).
 *
 * Why a separate file: these functions see bytes an upstream (or a token
 * service it names) sends, so they are unit tested with tables and every
 * truncated prefix, and fuzzed; keeping them apart from the libcurl plumbing
 * in upstream.c and upstream_hop.c lets the tests and fuzzers link them
 * without a network.
 *
 * Also here, declared in upstream_int.h and tested the same way: the
 * Content-Length parser, the check that keeps a string from ending a request
 * header, and the retry policy (which transport errors are retried, how long
 * to wait) — pure functions of their arguments.
 *
 * Nothing here does I/O.  om_challenge_parse writes only into the caller's
 * fixed-size struct; om_token_parse allocates exactly one string (the token,
 * owned by the caller).  JSON goes through jansson and dates through
 * curl_getdate: this file only walks the RFC 7235 auth-param grammar, which
 * no installed library exposes.
 */
#include "upstream/upstream_int.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

/* A token service answer is small JSON; anything bigger is not a token
 * service (and jansson would happily allocate for it). */
#define TOKEN_JSON_MAX (64u * 1024)
/* JWTs from Docker Hub are ~1-2 KiB; 16 KiB leaves room for fat claims. */
#define TOKEN_MAX (16u * 1024)
/* Tokens are cached at most this long whatever the service claims, so a
 * revoked grant is noticed within a day. */
#define TOKEN_EXPIRES_MAX 86400L
#define TOKEN_EXPIRES_DEFAULT 60L
/* Retry-After values are capped by the caller; the parser only keeps the
 * arithmetic in range. */
#define RETRY_AFTER_SAT 2147483647L
#define RETRY_AFTER_TEXT_MAX 64
/* An OCI error document worth reading for its code. */
#define UP_ERROR_JSON_MAX (64u * 1024)

/* ---- WWW-Authenticate ------------------------------------------------ */

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
    if (isalnum(c))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 9110 token68 character (without the trailing '='s). */
static bool is_token68_char(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

static bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* Cursor over the header value: p .. end. */
struct cur {
    const char *p;
    const char *end;
};

static void skip_ows(struct cur *c)
{
    while (c->p < c->end && is_ows((unsigned char)*c->p))
        c->p++;
}

/* Length of the token starting at c->p (0 if none); does not advance. */
static size_t token_len(const struct cur *c)
{
    const char *q = c->p;
    while (q < c->end && is_tchar((unsigned char)*q))
        q++;
    return (size_t)(q - c->p);
}

/* Whether c->p starts a token68 that is the whole rest of the challenge
 * (followed only by OWS and then the end or a ','). */
static bool at_token68(const struct cur *c)
{
    const char *q = c->p;
    while (q < c->end && is_token68_char((unsigned char)*q))
        q++;
    if (q == c->p)
        return false;
    while (q < c->end && *q == '=')
        q++;
    while (q < c->end && is_ows((unsigned char)*q))
        q++;
    return q == c->end || *q == ',';
}

/* Copy a value into a field, or say it does not fit. */
static int put_field(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        return OM_ERR_TOOBIG;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return OM_OK;
}

/* Read a token or quoted-string value at c->p into dst (cap bytes, NUL
 * terminated; dst may be NULL to validate and skip).  Backslash escapes are
 * undone.  OM_ERR_INVALID on bad syntax, OM_ERR_TOOBIG if it does not fit. */
static int read_value(struct cur *c, char *dst, size_t cap)
{
    int err = OM_OK;
    size_t n = 0;
    bool toobig = false;

    if (c->p < c->end && *c->p == '"') {
        bool closed = false;
        c->p++;
        while (c->p < c->end) {
            unsigned char ch = (unsigned char)*c->p;
            if (ch == '"') {
                closed = true;
                c->p++;
                break;
            }
            if (ch == '\\') {
                c->p++;
                if (c->p == c->end) {
                    err = OM_ERR_INVALID;
                    goto done;
                }
                ch = (unsigned char)*c->p;
                /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
                if (ch != '\t' && (ch < 0x20 || ch == 0x7f)) {
                    err = OM_ERR_INVALID;
                    goto done;
                }
            } else if (ch != '\t' && (ch < 0x20 || ch == 0x7f)) {
                /* qdtext excludes controls (and so NUL, CR, LF). */
                err = OM_ERR_INVALID;
                goto done;
            }
            if (dst != NULL) {
                if (n + 1 >= cap)
                    toobig = true;
                else
                    dst[n++] = (char)ch;
            }
            c->p++;
        }
        if (!closed) {
            err = OM_ERR_INVALID;
            goto done;
        }
    } else {
        size_t tl = token_len(c);
        if (tl == 0) {
            err = OM_ERR_INVALID;
            goto done;
        }
        if (dst != NULL) {
            if (tl >= cap) {
                toobig = true;
            } else {
                memcpy(dst, c->p, tl);
                n = tl;
            }
        }
        c->p += tl;
    }
    if (toobig)
        err = OM_ERR_TOOBIG;
done:
    if (dst != NULL && cap > 0)
        dst[err == OM_OK ? n : 0] = '\0';
    return err;
}

int om_challenge_parse(struct om_challenge *out, const char *hdr, size_t len)
{
    int err = OM_OK;
    struct cur c = {hdr, hdr};
    /* Which of the stored params were seen: RFC 9110 says each name occurs
     * at most once, and a duplicate realm could otherwise point us anywhere. */
    bool seen_realm = false, seen_service = false, seen_scope = false, seen_error = false;
    size_t n_params = 0;
    size_t tl;

    memset(out, 0, sizeof(*out));
    if (hdr == NULL) {
        err = OM_ERR_INVALID;
        goto done;
    }
    c.end = hdr + len;
    skip_ows(&c);
    tl = token_len(&c);
    if (tl == 0) {
        err = OM_ERR_INVALID;
        goto done;
    }
    if ((err = put_field(out->scheme, sizeof(out->scheme), c.p, tl)) != OM_OK)
        goto done;
    c.p += tl;
    if (c.p == c.end)
        goto done;                  /* a bare scheme: "Basic" */
    if (!is_ows((unsigned char)*c.p)) {
        err = OM_ERR_INVALID;       /* the scheme needs 1*SP before params */
        goto done;
    }
    skip_ows(&c);
    if (c.p == c.end)
        goto done;
    if (at_token68(&c)) {
        /* "Negotiate abc==": a token68 credential hint, nothing we use.
         * "realm=" alone is ambiguous and read as token68 too (RFC 9110
         * 11.2), which leaves realm empty. */
        goto done;
    }

    /* #auth-param, with empty list elements allowed. */
    for (;;) {
        char *dst = NULL;
        size_t cap = 0;
        bool *seen = NULL;
        const char *name;
        size_t nl;

        skip_ows(&c);
        while (c.p < c.end && (*c.p == ',' || is_ows((unsigned char)*c.p)))
            c.p++;
        if (c.p == c.end)
            break;
        name = c.p;
        nl = token_len(&c);
        if (nl == 0) {
            err = OM_ERR_INVALID;
            goto done;
        }
        c.p += nl;
        skip_ows(&c);
        if (c.p == c.end || *c.p != '=') {
            /* A token not followed by '=' starts the next challenge in a
             * comma-joined header ("Bearer realm=..., Basic realm=..."):
             * the first challenge is complete. */
            if (n_params > 0) {
                c.p = name;
                break;
            }
            err = OM_ERR_INVALID;
            goto done;
        }
        c.p++;
        skip_ows(&c);

        if (nl == 5 && strncasecmp(name, "realm", 5) == 0) {
            dst = out->realm, cap = sizeof(out->realm), seen = &seen_realm;
        } else if (nl == 7 && strncasecmp(name, "service", 7) == 0) {
            dst = out->service, cap = sizeof(out->service), seen = &seen_service;
        } else if (nl == 5 && strncasecmp(name, "scope", 5) == 0) {
            dst = out->scope, cap = sizeof(out->scope), seen = &seen_scope;
        } else if (nl == 5 && strncasecmp(name, "error", 5) == 0) {
            dst = out->error, cap = sizeof(out->error), seen = &seen_error;
        }
        if (seen != NULL) {
            if (*seen) {
                err = OM_ERR_INVALID;
                goto done;
            }
            *seen = true;
        }
        if ((err = read_value(&c, dst, cap)) != OM_OK)
            goto done;
        n_params++;
        skip_ows(&c);
        if (c.p == c.end)
            break;
        if (*c.p != ',') {
            err = OM_ERR_INVALID;   /* params must be comma separated */
            goto done;
        }
    }
done:
    if (err != OM_OK && out != NULL) {
        /* Never leave a half-filled challenge for a caller to act on. */
        memset(out, 0, sizeof(*out));
    }
    return err;
}

/* ---- token service answer -------------------------------------------- */

/* A token goes into an Authorization header: printable ASCII without
 * spaces, so a hostile token service cannot inject header lines. */
static bool token_chars_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return false;
    }
    return true;
}

int om_token_parse(const char *json, size_t len, char **token_out, long *expires_s)
{
    int err = OM_OK;
    json_t *root = NULL;            /* owned here, json_decref at done */
    json_t *tok = NULL, *exp = NULL;
    json_error_t jerr;
    const char *s = NULL;
    size_t slen = 0;
    long expires = TOKEN_EXPIRES_DEFAULT;

    *token_out = NULL;
    *expires_s = TOKEN_EXPIRES_DEFAULT;
    if (json == NULL) {
        err = OM_ERR_INVALID;
        goto done;
    }
    if (len > TOKEN_JSON_MAX) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        err = OM_ERR_INVALID;
        goto done;
    }
    /* Docker's token spec names "token"; OAuth2-style services send
     * "access_token" (often both, equal).  Prefer "token". */
    tok = json_object_get(root, "token");
    if (!json_is_string(tok) || json_string_length(tok) == 0)
        tok = json_object_get(root, "access_token");
    if (!json_is_string(tok) || json_string_length(tok) == 0) {
        err = OM_ERR_INVALID;
        goto done;
    }
    s = json_string_value(tok);
    slen = json_string_length(tok);
    if (slen > TOKEN_MAX) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    if (!token_chars_ok(s, slen)) {
        err = OM_ERR_INVALID;
        goto done;
    }
    exp = json_object_get(root, "expires_in");
    if (json_is_integer(exp)) {
        json_int_t v = json_integer_value(exp);
        /* The spec's minimum is 60 s; zero or negative means "absent". */
        if (v > 0)
            expires = v > TOKEN_EXPIRES_MAX ? TOKEN_EXPIRES_MAX : (long)v;
    } else if (json_is_real(exp)) {
        double v = json_real_value(exp);
        if (v >= 1.0)
            expires = v > (double)TOKEN_EXPIRES_MAX ? TOKEN_EXPIRES_MAX : (long)v;
    }
    /* Owned by the caller. */
    *token_out = strndup(s, slen);
    if (*token_out == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    *expires_s = expires;
done:
    json_decref(root);
    return err;
}

/* ---- OCI error bodies ------------------------------------------------- */

bool om_up_error_code(const char *body, size_t len, char *code, size_t codesz)
{
    bool ok = false;
    json_t *root = NULL; /* owned here, json_decref at done */
    json_t *first = NULL, *c = NULL;

    if (codesz > 0)
        code[0] = '\0';
    /* Non-2xx bodies reach us cut at 64 KiB; an error document is tiny. */
    if (body == NULL || len == 0 || len > UP_ERROR_JSON_MAX || codesz == 0)
        goto done;
    root = json_loadb(body, len, 0, NULL);
    first = json_array_get(json_object_get(root, "errors"), 0);
    c = json_object_get(first, "code");
    if (!json_is_string(c) || json_string_length(c) == 0 || json_string_length(c) >= codesz)
        goto done;
    for (const char *p = json_string_value(c); *p != '\0'; p++)
        if (!(isupper((unsigned char)*p) || *p == '_'))
            goto done; /* the spec's codes are upper case and '_' */
    memcpy(code, json_string_value(c), json_string_length(c) + 1);
    ok = true;
done:
    json_decref(root);
    return ok;
}

/* ---- Retry-After ------------------------------------------------------ */

long om_retry_after_parse(const char *s, long now_s)
{
    long result = -1;
    size_t n;
    const char *p;

    if (s == NULL)
        goto done;
    n = strnlen(s, RETRY_AFTER_TEXT_MAX + 1);
    if (n > RETRY_AFTER_TEXT_MAX)
        goto done;
    p = s;
    while (is_ows((unsigned char)*p))
        p++;
    if (isdigit((unsigned char)*p)) {
        /* delta-seconds = 1*DIGIT; saturate rather than overflow. */
        long v = 0;
        while (isdigit((unsigned char)*p)) {
            int d = *p - '0';
            v = v > (RETRY_AFTER_SAT - d) / 10 ? RETRY_AFTER_SAT : v * 10 + d;
            p++;
        }
        while (is_ows((unsigned char)*p))
            p++;
        if (*p == '\0')
            result = v;
    } else if (isalpha((unsigned char)*p)) {
        /* Every HTTP-date form starts with a day name; curl_getdate is
         * lenient enough to read numbers as dates, so only letters get here. */
        time_t t = curl_getdate(p, NULL);
        if (t != (time_t)-1)
            result = t <= (time_t)now_s ? 0
                     : (t - (time_t)now_s > RETRY_AFTER_SAT ? RETRY_AFTER_SAT
                                                            : (long)(t - (time_t)now_s));
    }
done:
    return result;
}

/* ---- ratelimit-remaining ---------------------------------------------- */

long om_ratelimit_remaining_parse(const char *s)
{
    long result = -1;
    long v = 0;
    const char *p = s;

    if (p == NULL)
        goto done;
    while (is_ows((unsigned char)*p))
        p++;
    if (!isdigit((unsigned char)*p))
        goto done;
    /* "100;w=21600": the count, then an optional ";w=<window>" policy. */
    for (size_t digits = 0; isdigit((unsigned char)*p); p++, digits++) {
        if (digits >= 10)
            goto done;              /* not a count any registry sends */
        v = v * 10 + (*p - '0');
    }
    while (is_ows((unsigned char)*p))
        p++;
    if (*p != '\0' && *p != ';' && *p != ',')
        goto done;
    result = v;
done:
    return result;
}

long om_ratelimit_window_parse(const char *s)
{
    long result = -1;
    long v = 0;
    const char *p = s;

    if (p == NULL || om_ratelimit_remaining_parse(s) < 0)
        goto done;
    /* "100;w=21600": parameters after the count, ';'-separated, up to the
     * end of the first list member. */
    p = memchr(s, ';', strcspn(s, ","));
    while (p != NULL && *p == ';') {
        p++;
        while (is_ows((unsigned char)*p))
            p++;
        if (p[0] == 'w' && p[1] == '=' && isdigit((unsigned char)p[2])) {
            p += 2;
            for (size_t digits = 0; isdigit((unsigned char)*p); p++, digits++) {
                if (digits >= 9)
                    goto done;      /* longer than 30 years */
                v = v * 10 + (*p - '0');
            }
            while (is_ows((unsigned char)*p))
                p++;
            if (*p == '\0' || *p == ';' || *p == ',')
                result = v;
            goto done;
        }
        p = strpbrk(p, ";,");
        if (p != NULL && *p == ',')
            break;
    }
done:
    return result;
}

/* ---- small parsers private to the upstream client (upstream_int.h) ---- */

/* 1..18 digits at *p (advanced past them) into *out; false otherwise. */
static bool range_number(const char **p, uint64_t *out)
{
    uint64_t n = 0;
    size_t digits = 0;
    for (; **p >= '0' && **p <= '9'; (*p)++, digits++) {
        if (digits >= 18)
            return false;
        n = n * 10 + (uint64_t)(**p - '0');
    }
    *out = n;
    return digits > 0;
}

int64_t om_up_content_length_parse(const char *v)
{
    uint64_t n;
    /* at most 18 digits: beyond any blob, and n stays in range */
    return v != NULL && range_number(&v, &n) && *v == '\0' ? (int64_t)n : -1;
}


bool om_up_content_range_parse(const char *v, uint64_t *first, uint64_t *last, uint64_t *total,
                               bool *total_known)
{
    uint64_t a, b, t = 0;
    bool known = true;
    if (v == NULL || strncasecmp(v, "bytes ", 6) != 0)
        return false;
    v += 6;
    if (!range_number(&v, &a) || *v++ != '-' || !range_number(&v, &b) || *v++ != '/')
        return false;
    if (v[0] == '*' && v[1] == '\0')
        known = false;
    else if (!range_number(&v, &t) || *v != '\0')
        return false;
    if (a > b || (known && b >= t))
        return false;
    *first = a;
    *last = b;
    *total = t;
    *total_known = known;
    return true;
}

bool om_up_header_safe(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* ---- the retry policy ------------------------------------------------- */

#define RETRY_AFTER_CAP_S 60
#define BACKOFF_CAP_MS 60000

bool om_up_curl_retryable(CURLcode rc)
{
    /* Not a failed name resolution: the resolver has retried already, and
     * a host that does not resolve (offline, a typo) would cost every
     * upstream of a search its whole backoff. */
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

uint64_t om_up_backoff_ms(uint64_t base_ms, long status, long retry_after_s, unsigned next,
                          uint64_t rnd)
{
    uint64_t window = base_ms;

    if ((status == 429 || status == 503) && retry_after_s >= 0)
        return (uint64_t)(retry_after_s > RETRY_AFTER_CAP_S ? RETRY_AFTER_CAP_S : retry_after_s) *
               1000;
    for (unsigned i = 2; i < next && window < BACKOFF_CAP_MS; i++)
        window *= 2;
    if (window > BACKOFF_CAP_MS)
        window = BACKOFF_CAP_MS;
    return window == 0 ? 0 : rnd % (window + 1);
}
