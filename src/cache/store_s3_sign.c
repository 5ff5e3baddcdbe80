/* store_s3_sign.c — AWS Signature Version 4, where libcurl cannot do it.
 *
 * Requests to the bucket are signed by libcurl (CURLOPT_AWS_SIGV4, in
 * store_s3_req.c).  libcurl cannot presign a URL, so om_s3_presign is
 * here: the same algorithm with the signature in the query string
 * (X-Amz-Algorithm, -Credential, -Date, -Expires, -SignedHeaders=host,
 * then -Signature), the payload "UNSIGNED-PAYLOAD".  om_s3_sign, the
 * header form, is what the unit tests check against AWS's published
 * vectors (get-vanilla & co.) and against what libcurl sends, so both
 * forms share one tested core:
 *
 *   canonical request = METHOD \n URI \n QUERY \n "name:value\n"... \n
 *                       names;joined \n PAYLOAD-HASH
 *   string to sign    = "AWS4-HMAC-SHA256" \n DATE \n SCOPE \n hex(sha256(creq))
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, day), region),
 *                       service), "aws4_request")
 *   signature         = hex(HMAC(signing key, string to sign))
 *
 * SHA-256 and HMAC are OpenSSL's.  Buffers are fixed (CREQ_MAX): a request
 * whose canonical form does not fit is OM_ERR_TOOBIG, never truncated.
 * Nothing here does I/O or keeps state; every function is thread-safe.
 */
#include "cache/store_s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define CREQ_MAX 8192              /* canonical request, string to sign */
#define SIGN_HEADERS_MAX 16
#define ALGO "AWS4-HMAC-SHA256"

void om_s3_amz_date(time_t t, char out[OM_S3_AMZ_DATE_LEN + 1])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, OM_S3_AMZ_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

int om_s3_uri_encode(const char *s, size_t n, bool keep_slash, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            if (o + 1 >= outsz)
                return OM_ERR_TOOBIG;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= outsz)
                return OM_ERR_TOOBIG;
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (o >= outsz)
        return OM_ERR_TOOBIG;
    out[o] = '\0';
    return OM_OK;
}

/* Append s to b[*len..sz); OM_ERR_TOOBIG when it does not fit. */
static int put(char *b, size_t sz, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > sz)
        return OM_ERR_TOOBIG;
    memcpy(b + *len, s, n + 1);
    *len += n;
    return OM_OK;
}

struct enc_param {
    char name[512], value[1536];
};

static int cmp_param(const void *a, const void *b)
{
    const struct enc_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : strcmp(x->value, y->value);
}

int om_s3_canonical_query(const struct om_s3_param *p, size_t n, char *out, size_t outsz)
{
    struct enc_param *e = NULL;
    size_t len = 0;
    int err = OM_OK;

    if (outsz == 0)
        return OM_ERR_TOOBIG;
    out[0] = '\0';
    if (n == 0)
        goto done;
    e = calloc(n, sizeof(*e)); /* freed below */
    if (e == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const char *v = p[i].value != NULL ? p[i].value : "";
        if ((err = om_s3_uri_encode(p[i].name, strlen(p[i].name), false, e[i].name,
                                    sizeof(e[i].name))) != OM_OK ||
            (err = om_s3_uri_encode(v, strlen(v), false, e[i].value, sizeof(e[i].value))) !=
                OM_OK)
            goto done;
    }
    /* Sorted by the encoded names (AWS: "sort by parameter name", byte
     * order of the encoded form), then values. */
    qsort(e, n, sizeof(*e), cmp_param);
    for (size_t i = 0; i < n; i++) {
        if ((i > 0 && (err = put(out, outsz, &len, "&")) != OM_OK) ||
            (err = put(out, outsz, &len, e[i].name)) != OM_OK ||
            (err = put(out, outsz, &len, "=")) != OM_OK ||
            (err = put(out, outsz, &len, e[i].value)) != OM_OK)
            goto done;
    }
done:
    if (err != OM_OK)
        out[0] = '\0';
    free(e);
    return err;
}

static void to_hex(const unsigned char *b, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int sha256_hex(const char *s, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return OM_ERR_INVALID;
    to_hex(md, 32, out);
    return OM_OK;
}

static int hmac(const unsigned char *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out,
             &len) == NULL ||
        len != 32)
        return OM_ERR_INVALID;
    return OM_OK;
}

/* hex(HMAC(signing key of k and day, sts)) into sig. */
static int signature(const struct om_s3_key *k, const char *day, const char *sts, char sig[65])
{
    char first[300];
    unsigned char a[32], b[32];
    int err = OM_OK;

    if (strlen(k->secret_key) + 5 > sizeof(first))
        return OM_ERR_TOOBIG;
    snprintf(first, sizeof(first), "AWS4%s", k->secret_key);
    if ((err = hmac((const unsigned char *)first, strlen(first), day, a)) != OM_OK ||
        (err = hmac(a, 32, k->region, b)) != OM_OK ||
        (err = hmac(b, 32, k->service, a)) != OM_OK ||
        (err = hmac(a, 32, "aws4_request", b)) != OM_OK ||
        (err = hmac(b, 32, sts, a)) != OM_OK)
        goto done;
    to_hex(a, 32, sig);
done:
    explicit_bzero(first, sizeof(first));
    explicit_bzero(a, sizeof(a));
    explicit_bzero(b, sizeof(b));
    return err;
}

struct hdr {
    char name[64];
    const char *value;
};

static int cmp_hdr(const void *a, const void *b)
{
    return strcmp(((const struct hdr *)a)->name, ((const struct hdr *)b)->name);
}

/* Append "value" with blanks at both ends cut and inner runs of blanks
 * folded to one (AWS's "Trimall"). */
static int put_trimmed(char *b, size_t sz, size_t *len, const char *v)
{
    bool blank = false, started = false;
    for (; *v != '\0'; v++) {
        if (*v == ' ' || *v == '\t') {
            blank = started;
            continue;
        }
        if (*len + 3 > sz)
            return OM_ERR_TOOBIG;
        if (blank)
            b[(*len)++] = ' ';
        b[(*len)++] = *v;
        b[*len] = '\0';
        blank = false;
        started = true;
    }
    return OM_OK;
}

/* The canonical request of r into creq, its signed header names into
 * names ("a;b;c"). */
static int canonical_request(const struct om_s3_sign_req *r, char *creq, size_t sz, char *names,
                             size_t names_sz)
{
    struct hdr h[SIGN_HEADERS_MAX];
    size_t len = 0, nlen = 0;
    int err = OM_OK;

    creq[0] = names[0] = '\0';
    if (r->n_headers > SIGN_HEADERS_MAX)
        return OM_ERR_TOOBIG;
    for (size_t i = 0; i < r->n_headers; i++) {
        size_t n = strlen(r->headers[i].name);
        if (n == 0 || n >= sizeof(h[i].name))
            return OM_ERR_INVALID;
        for (size_t j = 0; j <= n; j++) {
            char c = r->headers[i].name[j];
            h[i].name[j] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        h[i].value = r->headers[i].value;
    }
    qsort(h, r->n_headers, sizeof(h[0]), cmp_hdr);
    if ((err = put(creq, sz, &len, r->method)) != OM_OK || (err = put(creq, sz, &len, "\n")) ||
        (err = put(creq, sz, &len, r->canonical_uri)) || (err = put(creq, sz, &len, "\n")) ||
        (err = put(creq, sz, &len, r->canonical_query)) || (err = put(creq, sz, &len, "\n")))
        return err;
    for (size_t i = 0; i < r->n_headers; i++) {
        if ((err = put(creq, sz, &len, h[i].name)) || (err = put(creq, sz, &len, ":")) ||
            (err = put_trimmed(creq, sz, &len, h[i].value)) || (err = put(creq, sz, &len, "\n")) ||
            (i > 0 && (err = put(names, names_sz, &nlen, ";"))) ||
            (err = put(names, names_sz, &nlen, h[i].name)))
            return err;
    }
    if ((err = put(creq, sz, &len, "\n")) || (err = put(creq, sz, &len, names)) ||
        (err = put(creq, sz, &len, "\n")) || (err = put(creq, sz, &len, r->payload_hash)))
        return err;
    return OM_OK;
}

/* "DAY/REGION/SERVICE/aws4_request" and the string to sign of creq. */
static int string_to_sign(const struct om_s3_key *k, const char *amz_date, const char *creq,
                          char *scope, size_t scope_sz, char *sts, size_t sts_sz)
{
    char day[9], h[65];
    int n, err;

    if (strlen(amz_date) != OM_S3_AMZ_DATE_LEN)
        return OM_ERR_INVALID;
    memcpy(day, amz_date, 8);
    day[8] = '\0';
    n = snprintf(scope, scope_sz, "%s/%s/%s/aws4_request", day, k->region, k->service);
    if (n < 0 || (size_t)n >= scope_sz)
        return OM_ERR_TOOBIG;
    if ((err = sha256_hex(creq, strlen(creq), h)) != OM_OK)
        return err;
    n = snprintf(sts, sts_sz, ALGO "\n%s\n%s\n%s", amz_date, scope, h);
    return n < 0 || (size_t)n >= sts_sz ? OM_ERR_TOOBIG : OM_OK;
}

int om_s3_sign(const struct om_s3_key *k, const struct om_s3_sign_req *r, char *out,
               size_t outsz)
{
    char *creq = NULL, names[1024], scope[256], sts[512], sig[65], day[9];
    int err, n;

    if (outsz > 0)
        out[0] = '\0';
    creq = malloc(CREQ_MAX); /* freed below */
    if (creq == NULL)
        return OM_ERR_NOMEM;
    if ((err = canonical_request(r, creq, CREQ_MAX, names, sizeof(names))) != OM_OK ||
        (err = string_to_sign(k, r->amz_date, creq, scope, sizeof(scope), sts, sizeof(sts))) !=
            OM_OK)
        goto done;
    memcpy(day, r->amz_date, 8);
    day[8] = '\0';
    if ((err = signature(k, day, sts, sig)) != OM_OK)
        goto done;
    n = snprintf(out, outsz, ALGO " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                 k->access_key, scope, names, sig);
    if (n < 0 || (size_t)n >= outsz) {
        out[0] = '\0';
        err = OM_ERR_TOOBIG;
    }
done:
    free(creq);
    return err;
}

int om_s3_presign(const struct om_s3_key *k, const char *method, const char *base,
                  const char *host, const char *canonical_uri, const char *amz_date,
                  unsigned expires_s, char *out, size_t outsz)
{
    char cred[512], expires[16], query[2048], scope[256], names[64], sts[512], sig[65], day[9];
    char *creq = NULL;
    int err, n;

    if (outsz > 0)
        out[0] = '\0';
    if (expires_s < 1 || expires_s > 604800 || strlen(amz_date) != OM_S3_AMZ_DATE_LEN)
        return OM_ERR_INVALID;
    memcpy(day, amz_date, 8);
    day[8] = '\0';
    n = snprintf(cred, sizeof(cred), "%s/%s/%s/%s/aws4_request", k->access_key, day, k->region,
                 k->service);
    if (n < 0 || (size_t)n >= sizeof(cred))
        return OM_ERR_TOOBIG;
    snprintf(expires, sizeof(expires), "%u", expires_s);
    const struct om_s3_param q[] = {
        {"X-Amz-Algorithm", ALGO}, {"X-Amz-Credential", cred}, {"X-Amz-Date", amz_date},
        {"X-Amz-Expires", expires}, {"X-Amz-SignedHeaders", "host"},
    };
    const struct om_s3_param hdrs[] = {{"host", host}};
    struct om_s3_sign_req r = {.method = method, .canonical_uri = canonical_uri,
                               .canonical_query = query, .headers = hdrs, .n_headers = 1,
                               .payload_hash = "UNSIGNED-PAYLOAD", .amz_date = amz_date};
    if ((err = om_s3_canonical_query(q, OM_ARRAY_LEN(q), query, sizeof(query))) != OM_OK)
        return err;
    creq = malloc(CREQ_MAX); /* freed below */
    if (creq == NULL)
        return OM_ERR_NOMEM;
    if ((err = canonical_request(&r, creq, CREQ_MAX, names, sizeof(names))) != OM_OK ||
        (err = string_to_sign(k, amz_date, creq, scope, sizeof(scope), sts, sizeof(sts))) !=
            OM_OK ||
        (err = signature(k, day, sts, sig)) != OM_OK)
        goto done;
    n = snprintf(out, outsz, "%s%s?%s&X-Amz-Signature=%s", base, canonical_uri, query, sig);
    if (n < 0 || (size_t)n >= outsz) {
        out[0] = '\0';
        err = OM_ERR_TOOBIG;
    }
done:
    free(creq);
    return err;
}
