/* store_s3_req.c — one request to the bucket, over libcurl.
 *
 * Signing is libcurl's (CURLOPT_AWS_SIGV4 "aws:amz:REGION:s3", the keys as
 * user name and password).  What libcurl 7.88 leaves to us, and this file
 * does for every request:
 *   - x-amz-content-sha256: the body's real SHA-256 (computed here when
 *     the caller has none; the ingest passes the blob digest's hex for a
 *     whole-object PUT, so the bucket itself checks the bytes it keeps);
 *     libcurl signs that header's value as the payload hash;
 *   - the query string already canonical (sorted, %-encoded: callers
 *     build it with om_s3_canonical_query), since libcurl signs it as
 *     given;
 *   - a body of known length only (a file range or a buffer): libcurl
 *     cannot sign a chunked upload (411 MissingContentLength), which is why
 *     streams go to multipart uploads (store_s3_ingest.c);
 *   - no two signed headers where one name is the other's prefix followed
 *     by '-' (x-amz-copy-source and x-amz-copy-source-if-match): 7.88
 *     sorts "name:value" strings, not names, and signs them in the wrong
 *     order (RGW: SignatureDoesNotMatch).
 *
 * URLs: path style http(s)://HOST/BUCKET/KEY, virtual-hosted
 * http(s)://BUCKET.HOST/KEY.  Keys never need encoding (store_s3.h).
 *
 * Retries: a transport error, 500 or 503 (SlowDown) is tried again twice,
 * after 100 and 400 ms, unless the caller says no_retry; the body is
 * re-read from its start (a file range is read with pread, so a retry or
 * libcurl's own rewind costs nothing).  Timeouts: connect 5 s; a request
 * without a large body 30 s in all; a body transfer is cut when it moves
 * less than 1 KiB/s for 60 s.
 *
 * Handles: a small pool of easy handles (POOL_MAX), each keeping its
 * connection alive, so successive requests on a job thread or the GC
 * reuse a connection.  Thread-safe: the pool is under a mutex, a request
 * owns its handle.  Failures (no answer at all) are logged at most once a
 * second, with the count of those not logged.
 */
#include "cache/store_s3.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/log.h"

#define POOL_MAX 16
#define TRIES 3
#define CONNECT_TIMEOUT_MS 5000L
#define SMALL_TIMEOUT_MS 30000L
#define ERR_BODY_MAX 8192            /* what we keep of an error's XML */
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct om_s3_client {
    char *endpoint;                  /* "http://127.0.0.1:7480" */
    char base[OM_S3_URL_MAX / 4];    /* URL of the bucket: ".../bucket" or "http://bucket.host" */
    char host[300];                  /* what Host says: "h:p" or "bucket.h:p" */
    char uri_base[80];               /* canonical URI of the bucket: "/bucket" or "" */
    char sigv4[96];                  /* "aws:amz:REGION:s3" */
    char *access_key, *secret_key, *region, *ca_file;
    pthread_mutex_t mu;              /* pool, log rate */
    CURL *pool[POOL_MAX];
    size_t n_pool;
    int64_t last_log_ms;
    uint64_t unlogged;
    _Atomic uint64_t sent, failed;
};

int om_s3_client_new(struct om_s3_client **out, const struct om_s3_cfg *cfg)
{
    struct om_s3_client *c = NULL;
    const char *hostpart = NULL;
    int err = OM_OK, n;

    *out = NULL;
    if (cfg->endpoint == NULL || cfg->bucket == NULL || cfg->access_key == NULL ||
        cfg->secret_key == NULL) {
        err = OM_ERR_INVALID;
        goto done;
    }
    c = calloc(1, sizeof(*c)); /* owned by the caller via *out */
    if (c == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    pthread_mutex_init(&c->mu, NULL);
    if ((c->endpoint = strdup(cfg->endpoint)) == NULL ||
        (c->access_key = strdup(cfg->access_key)) == NULL ||
        (c->secret_key = strdup(cfg->secret_key)) == NULL ||
        (c->region = strdup(cfg->region != NULL ? cfg->region : "us-east-1")) == NULL ||
        (cfg->ca_file != NULL && (c->ca_file = strdup(cfg->ca_file)) == NULL)) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    hostpart = strstr(c->endpoint, "://");
    if (hostpart == NULL || hostpart[3] == '\0' || strchr(hostpart + 3, '/') != NULL) {
        err = OM_ERR_INVALID;
        goto done;
    }
    hostpart += 3;
    if (cfg->path_style) {
        n = snprintf(c->base, sizeof(c->base), "%s/%s", c->endpoint, cfg->bucket);
        snprintf(c->host, sizeof(c->host), "%s", hostpart);
        snprintf(c->uri_base, sizeof(c->uri_base), "/%s", cfg->bucket);
    } else {
        n = snprintf(c->base, sizeof(c->base), "%.*s%s.%s", (int)(hostpart - c->endpoint),
                     c->endpoint, cfg->bucket, hostpart);
        snprintf(c->host, sizeof(c->host), "%s.%s", cfg->bucket, hostpart);
        c->uri_base[0] = '\0';
    }
    if (n < 0 || (size_t)n >= sizeof(c->base)) {
        err = OM_ERR_INVALID;
        goto done;
    }
    snprintf(c->sigv4, sizeof(c->sigv4), "aws:amz:%s:s3", c->region);
    *out = c;
    c = NULL;
done:
    om_s3_client_free(c);
    return err;
}

void om_s3_client_free(struct om_s3_client *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_pool; i++)
        curl_easy_cleanup(c->pool[i]);
    if (c->secret_key != NULL)
        explicit_bzero(c->secret_key, strlen(c->secret_key));
    free(c->endpoint);
    free(c->access_key);
    free(c->secret_key);
    free(c->region);
    free(c->ca_file);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void om_s3_client_counts(struct om_s3_client *c, uint64_t *sent, uint64_t *failed)
{
    *sent = atomic_load(&c->sent);
    *failed = atomic_load(&c->failed);
}

int om_s3_url(const struct om_s3_client *c, const char *key, const char *query, char *url,
              size_t urlsz)
{
    /* the bucket itself: "/bucket" path-style, "/" virtual-hosted */
    bool slash = key != NULL || c->uri_base[0] == '\0';
    int n = snprintf(url, urlsz, "%s%s%s%s%s", c->base, slash ? "/" : "", key != NULL ? key : "",
                     query != NULL && query[0] ? "?" : "", query != NULL ? query : "");
    return n < 0 || (size_t)n >= urlsz ? OM_ERR_TOOBIG : OM_OK;
}

int om_s3_presign_get(const struct om_s3_client *c, const char *key, unsigned ttl_s, char *url,
                      size_t urlsz)
{
    char uri[OM_S3_KEY_MAX + 96], date[OM_S3_AMZ_DATE_LEN + 1], origin[OM_S3_URL_MAX / 4];
    const struct om_s3_key k = {c->access_key, c->secret_key, c->region, "s3"};
    const char *hp = strstr(c->base, "://");
    int n = snprintf(uri, sizeof(uri), "%s/%s", c->uri_base, key);

    if (n < 0 || (size_t)n >= sizeof(uri) || hp == NULL)
        return OM_ERR_TOOBIG;
    /* the origin: base without the path-style "/bucket" */
    n = snprintf(origin, sizeof(origin), "%.*s%s", (int)(hp + 3 - c->base), c->base, c->host);
    if (n < 0 || (size_t)n >= sizeof(origin))
        return OM_ERR_TOOBIG;
    om_s3_amz_date(time(NULL), date);
    return om_s3_presign(&k, "GET", origin, c->host, uri, date, ttl_s, url, urlsz);
}

static CURL *pool_get(struct om_s3_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_pool > 0)
        h = c->pool[--c->n_pool];
    pthread_mutex_unlock(&c->mu);
    if (h == NULL)
        h = curl_easy_init();
    else
        curl_easy_reset(h); /* keeps its live connection */
    return h;
}

static void pool_put(struct om_s3_client *c, CURL *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    if (c->n_pool < POOL_MAX) {
        c->pool[c->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (h != NULL)
        curl_easy_cleanup(h);
}

/* The common options of every request to the bucket. */
static int setup_common(struct om_s3_client *c, CURL *h, const char *url)
{
    CURLcode rc = CURLE_OK;
    if ((rc = curl_easy_setopt(h, CURLOPT_URL, url)) != CURLE_OK ||
        (rc = curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4)) != CURLE_OK ||
        (rc = curl_easy_setopt(h, CURLOPT_USERNAME, c->access_key)) != CURLE_OK ||
        (rc = curl_easy_setopt(h, CURLOPT_PASSWORD, c->secret_key)) != CURLE_OK ||
        (rc = curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L)) != CURLE_OK ||
        (rc = curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS)) != CURLE_OK ||
        (rc = curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https")) != CURLE_OK ||
        (rc = curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L)) != CURLE_OK ||
        (rc = curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L)) != CURLE_OK ||
        (c->ca_file != NULL && (rc = curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file)) != CURLE_OK))
        return OM_ERR_INVALID;
    return OM_OK;
}

int om_s3_setup_get(struct om_s3_client *c, CURL *h, const char *key, bool range,
                    uint64_t first, uint64_t last, struct curl_slist **hdrs)
{
    char url[OM_S3_URL_MAX], r[64];
    struct curl_slist *l = NULL;
    int err;

    *hdrs = NULL;
    if ((err = om_s3_url(c, key, NULL, url, sizeof(url))) != OM_OK ||
        (err = setup_common(c, h, url)) != OM_OK)
        return err;
    l = curl_slist_append(l, "x-amz-content-sha256: " EMPTY_SHA);
    if (l == NULL)
        return OM_ERR_NOMEM;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
    /* no low-speed limit: a paused transfer (a slow client) is not a
     * stalled bucket; the client's own timeout ends a hung one */
    if (range) {
        snprintf(r, sizeof(r), "%llu-%llu", (unsigned long long)first, (unsigned long long)last);
        curl_easy_setopt(h, CURLOPT_RANGE, r); /* copied by libcurl */
    }
    atomic_fetch_add(&c->sent, 1);
    *hdrs = l;
    return OM_OK;
}

/* ---- one transfer ------------------------------------------------------- */

struct xfer {
    const struct om_s3_req *rq;
    struct om_s3_resp *rs;
    CURL *h;
    uint64_t sent;                   /* body bytes handed to libcurl */
    size_t body_cap;
    int err;                         /* a local failure in a callback */
};

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    const struct om_s3_req *rq = x->rq;
    size_t want = size * nmemb;
    uint64_t left = rq->body_len - x->sent;

    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    if (rq->body_fd >= 0) {
        ssize_t n;
        do {
            n = pread(rq->body_fd, buf, want, (off_t)(rq->body_off + x->sent));
        } while (n < 0 && errno == EINTR);
        if (n <= 0) {
            x->err = OM_ERR_IO;
            return CURL_READFUNC_ABORT;
        }
        want = (size_t)n;
    } else {
        memcpy(buf, (const char *)rq->body + x->sent, want);
    }
    x->sent += want;
    return want;
}

static int on_seek(void *ud, curl_off_t off, int origin)
{
    struct xfer *x = ud;
    if (origin != SEEK_SET || off < 0 || (uint64_t)off > x->rq->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    x->sent = (uint64_t)off;
    return CURL_SEEKFUNC_OK;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    long status = 0;

    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300 && x->rq->into != NULL) {
        if (x->rs->got + n > x->rq->into_max) {
            x->err = OM_ERR_TOOBIG;
            return 0;
        }
        memcpy((char *)x->rq->into + x->rs->got, p, n);
        x->rs->got += n;
        return n;
    }
    size_t cap = status >= 200 && status < 300 ? x->rq->body_max : ERR_BODY_MAX;
    if (x->rs->body_len + n > cap) {
        if (status >= 200 && status < 300 && cap > 0) {
            x->err = OM_ERR_TOOBIG;
            return 0;
        }
        return n; /* more of an error page than we keep, or a body not wanted */
    }
    if (x->rs->body_len + n + 1 > x->body_cap) {
        size_t want = x->body_cap == 0 ? 4096 : x->body_cap;
        while (want < x->rs->body_len + n + 1)
            want *= 2;
        char *b = realloc(x->rs->body, want);
        if (b == NULL) {
            x->err = OM_ERR_NOMEM;
            return 0;
        }
        x->rs->body = b;
        x->body_cap = want;
    }
    memcpy(x->rs->body + x->rs->body_len, p, n);
    x->rs->body_len += n;
    x->rs->body[x->rs->body_len] = '\0';
    return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb, len = n;
    char line[512];

    while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n'))
        len--;
    if (len == 0 || len >= sizeof(line))
        return n;
    memcpy(line, p, len);
    line[len] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) { /* a new answer (after 100 Continue): forget the last */
        x->rs->has_length = false;
        x->rs->etag[0] = '\0';
        x->rs->last_modified_ms = -1;
        return n;
    }
    char *colon = strchr(line, ':');
    if (colon == NULL)
        return n;
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (strcasecmp(line, "Content-Length") == 0) {
        char *end = NULL;
        unsigned long long cl = strtoull(v, &end, 10);
        if (end != v && *end == '\0') {
            x->rs->length = cl;
            x->rs->has_length = true;
        }
    } else if (strcasecmp(line, "ETag") == 0) {
        snprintf(x->rs->etag, sizeof(x->rs->etag), "%s", v);
    } else if (strcasecmp(line, "Last-Modified") == 0) {
        time_t t = curl_getdate(v, NULL);
        x->rs->last_modified_ms = t >= 0 ? (int64_t)t * 1000 : -1;
    }
    return n;
}

/* The body's SHA-256 in hex (a file range is read once to hash it). */
static int payload_sha(const struct om_s3_req *rq, char hex[65])
{
    om_digest d;
    om_hash *h = NULL;
    char *buf = NULL;
    int err = OM_OK;

    if (rq->body_len == 0) {
        snprintf(hex, 65, "%s", EMPTY_SHA);
        goto done;
    }
    if (rq->body_fd < 0) {
        if ((err = om_hash_buf(rq->body, (size_t)rq->body_len, &d)) != OM_OK)
            goto done;
    } else {
        h = om_hash_new();
        buf = malloc(256 * 1024);
        if (h == NULL || buf == NULL) {
            err = OM_ERR_NOMEM;
            goto done;
        }
        for (uint64_t at = 0; at < rq->body_len;) {
            size_t want = rq->body_len - at < 256 * 1024 ? (size_t)(rq->body_len - at) : 256 * 1024;
            ssize_t n = pread(rq->body_fd, buf, want, (off_t)(rq->body_off + at));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                om_log(OM_LOG_ERROR, "s3: reading the spool to upload: %s",
                       n < 0 ? strerror(errno) : "short file");
                err = OM_ERR_IO;
                goto done;
            }
            om_hash_update(h, buf, (size_t)n);
            at += (uint64_t)n;
        }
        om_hash_final(h, &d);
    }
    snprintf(hex, 65, "%s", om_digest_hex(&d));
done:
    om_hash_free(h);
    free(buf);
    return err;
}

static void log_failure(struct om_s3_client *c, const struct om_s3_req *rq, const char *why)
{
    int64_t now = om_now_ms();
    uint64_t skipped = 0;
    bool show = false;

    pthread_mutex_lock(&c->mu);
    if (now - c->last_log_ms >= 1000) {
        show = true;
        skipped = c->unlogged;
        c->unlogged = 0;
        c->last_log_ms = now;
    } else {
        c->unlogged++;
    }
    pthread_mutex_unlock(&c->mu);
    if (show) {
        char n[24];
        snprintf(n, sizeof(n), "%llu", (unsigned long long)skipped);
        om_log_kv(OM_LOG_ERROR, "s3: request failed", "method", rq->method, "key",
                  rq->key != NULL ? rq->key : "", "error", why, "endpoint", c->endpoint,
                  "failures_not_logged", n, NULL);
    }
}

/* One try of rq on h into rs (cleared). */
static int try_once(struct om_s3_client *c, CURL *h, const struct om_s3_req *rq,
                    const char *url, const char *sha, struct om_s3_resp *rs, CURLcode *cc)
{
    struct xfer x = {.rq = rq, .rs = rs, .h = h};
    struct curl_slist *l = NULL;
    char line[128], range[64];
    int err = OM_OK;

    om_s3_resp_clear(rs);
    rs->last_modified_ms = -1;
    *cc = CURLE_OK;
    if ((err = setup_common(c, h, url)) != OM_OK)
        goto done;
    snprintf(line, sizeof(line), "x-amz-content-sha256: %s", sha);
    l = curl_slist_append(l, line);
    for (size_t i = 0; l != NULL && i < OM_ARRAY_LEN(rq->headers) && rq->headers[i] != NULL; i++)
        l = curl_slist_append(l, rq->headers[i]);
    if (l == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
    bool big = rq->body_len > (1u << 20) || rq->into_max > (1u << 20);
    if (rq->timeout_ms > 0) {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
    } else if (big) {
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    } else {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, SMALL_TIMEOUT_MS);
    }
    if (strcmp(rq->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(rq->method, "PUT") == 0 || strcmp(rq->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &x);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, &x);
        if (strcmp(rq->method, "POST") == 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST");
    } else if (strcmp(rq->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    }
    if (rq->range) {
        snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)rq->range_first,
                 (unsigned long long)rq->range_last);
        curl_easy_setopt(h, CURLOPT_RANGE, range);
    }
    atomic_fetch_add(&c->sent, 1);
    *cc = curl_easy_perform(h);
    if (x.err != OM_OK) {
        err = x.err;
        goto done;
    }
    if (*cc != CURLE_OK) {
        err = OM_ERR_IO;
        goto done;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
    if ((rs->status < 200 || rs->status >= 300) && rs->body_len > 0) {
        struct om_s3_answer a;
        if (om_s3_xml_parse(rs->body, rs->body_len, NULL, NULL, &a) == OM_OK &&
            strcmp(a.root, "Error") == 0)
            snprintf(rs->code, sizeof(rs->code), "%s", a.code);
    }
done:
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(l);
    return err;
}

int om_s3_do(struct om_s3_client *c, const struct om_s3_req *rq, struct om_s3_resp *rs)
{
    char url[OM_S3_URL_MAX], sha[65];
    CURL *h = NULL;
    CURLcode cc = CURLE_OK;
    int err;

    om_s3_resp_clear(rs); /* an earlier answer in it is freed */
    rs->last_modified_ms = -1;
    if ((err = om_s3_url(c, rq->key, rq->query, url, sizeof(url))) != OM_OK)
        goto done;
    if (rq->payload_hash != NULL)
        snprintf(sha, sizeof(sha), "%s", rq->payload_hash);
    else if ((err = payload_sha(rq, sha)) != OM_OK)
        goto done;
    if ((h = pool_get(c)) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (int t = 0; t < (rq->no_retry ? 1 : TRIES); t++) {
        if (t > 0)
            usleep(t == 1 ? 100000 : 400000);
        err = try_once(c, h, rq, url, sha, rs, &cc);
        bool again = (err == OM_ERR_IO && cc != CURLE_OK) ||
                     (err == OM_OK && (rs->status == 500 || rs->status == 503));
        if (!again)
            break;
    }
    if (err == OM_ERR_IO && cc != CURLE_OK) {
        atomic_fetch_add(&c->failed, 1);
        log_failure(c, rq, curl_easy_strerror(cc));
    }
done:
    pool_put(c, h);
    return err;
}

void om_s3_resp_clear(struct om_s3_resp *rs)
{
    free(rs->body);
    memset(rs, 0, sizeof(*rs));
}

int om_s3_status_err(const struct om_s3_resp *rs, const char *what, const char *key)
{
    char st[16];
    if (rs->status >= 200 && rs->status < 300)
        return OM_OK;
    if (rs->status == 404)
        return OM_ERR_NOTFOUND;
    snprintf(st, sizeof(st), "%ld", rs->status);
    om_log_kv(OM_LOG_ERROR, "s3: request refused", "what", what, "key", key != NULL ? key : "",
              "status", st, "code", rs->code, NULL);
    if (rs->status == 507 || strcmp(rs->code, "QuotaExceeded") == 0 ||
        strcmp(rs->code, "EntityTooLarge") == 0 || strcmp(rs->code, "InsufficientCapacity") == 0)
        return OM_ERR_NOSPACE;
    return OM_ERR_IO;
}
