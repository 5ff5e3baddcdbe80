/* upstream_hop.c — one hop of the upstream client on the wire: one
 * curl_easy_perform to one URL (see upstream.h for the contract).  It sets
 * the easy handle up for the hop (libcurl options, Accept, Range and the
 * credentials upstream_auth.c allows there), and holds the libcurl callbacks
 * that run during the transfer: the header callback classifies the response
 * once its headers are complete (REDIRECT, AUTH, RETRY or FINAL; the diagram
 * is at the top of upstream.c), the body callback streams a final 2xx into
 * on_body or buffers it under max_body, keeping only the head of any other
 * body for diagnostics, and the progress callback notices a cancel.
 *
 * What to do with the outcome — follow, answer the challenge, sleep and try
 * again — is upstream.c's hop loop (run_hop); where credentials may go is
 * upstream_auth.c's.  Nothing here sleeps, logs or keeps state between
 * hops: everything a hop leaves behind is in its struct om_up_call.
 *
 * If you add a response header to struct om_up_resp, fill it in
 * fill_resp_headers() and reset it in om_up_resp_reset_hop(); if you add a
 * request option, set it in om_up_hop_setup() (or, if every request of the
 * upstream gets it, common_setup()).
 */
#include "upstream/upstream_int.h"

#include <inttypes.h>
#include <stdio.h>

#define ERROR_BODY_MAX (64u * 1024)     /* non-2xx bodies kept for diagnostics */
#define HEADER_LINE_MAX (8u * 1024)     /* one header line; larger → TOOBIG */
#define CONNECT_TIMEOUT_S 10L
#define LOW_SPEED_TIME_S 60L            /* < 1 byte/s for this long → abort */

/* ---- the response: headers, disposition, body ------------------------- */

static bool status_is_redirect(long s)
{
    return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

static bool status_2xx(long s) { return s >= 200 && s < 300; }

const char *om_up_resp_header(CURL *h, const char *name, size_t index)
{
    struct curl_header *hh = NULL;
    if (curl_easy_header(h, name, index, CURLH_HEADER, -1, &hh) != CURLHE_OK || hh == NULL)
        return NULL;
    return hh->value;
}

size_t om_up_resp_header_count(CURL *h, const char *name)
{
    struct curl_header *hh = NULL;
    if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &hh) != CURLHE_OK || hh == NULL)
        return 0;
    return hh->amount;
}

/* Reset the per-response fields of resp before a hop. */
void om_up_resp_reset_hop(struct om_up_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    r->status = 0;
    r->content_type[0] = '\0';
    r->docker_digest[0] = '\0';
    r->content_length = -1;
    r->content_range[0] = '\0';
    r->link[0] = '\0';
    r->retry_after_s = -1;
    r->ratelimit_remaining = -1;
    r->ratelimit_window_s = -1;
    r->error[0] = '\0';
}

static void fill_resp_headers(struct om_up_call *c)
{
    struct om_up_resp *r = c->resp;
    const char *v;

    if ((v = om_up_resp_header(c->h, "Content-Type", 0)) != NULL)
        om_up_copy_trunc(r->content_type, sizeof(r->content_type), v);
    if ((v = om_up_resp_header(c->h, "Docker-Content-Digest", 0)) != NULL)
        om_up_copy_trunc(r->docker_digest, sizeof(r->docker_digest), v);
    r->content_length = om_up_content_length_parse(om_up_resp_header(c->h, "Content-Length", 0));
    if ((v = om_up_resp_header(c->h, "Content-Range", 0)) != NULL)
        om_up_copy_trunc(r->content_range, sizeof(r->content_range), v);
    if ((v = om_up_resp_header(c->h, "Link", 0)) != NULL)
        om_up_copy_trunc(r->link, sizeof(r->link), v);
    if ((v = om_up_resp_header(c->h, "Retry-After", 0)) != NULL)
        r->retry_after_s = om_retry_after_parse(v, (long)(om_up_wall_ms() / 1000));
    if ((v = om_up_resp_header(c->h, "ratelimit-remaining", 0)) != NULL) {
        r->ratelimit_remaining = om_ratelimit_remaining_parse(v);
        r->ratelimit_window_s = om_ratelimit_window_parse(v);
    }
    free(c->location);
    c->location = NULL;
    if (status_is_redirect(r->status) && (v = om_up_resp_header(c->h, "Location", 0)) != NULL)
        c->location = strdup(v);    /* NULL on OOM: treated as no Location */
    if (r->status == 401)
        om_up_auth_choose_challenge(c);
}

/* Decide, once per hop when its headers are complete, what the response
 * is; a FINAL one goes to on_headers right away, before any body byte. */
int om_up_headers_complete(struct om_up_call *c)
{
    int err = OM_OK;
    struct om_up_resp *r = c->resp;
    long status = 0;

    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    if (c->disp != OM_UP_D_NONE || (status >= 100 && status < 200))
        goto done;      /* trailers, or an interim 1xx: the real answer follows */
    c->reached = true;
    r->status = status;
    fill_resp_headers(c);
    if (status_is_redirect(status) && c->location != NULL)
        c->disp = OM_UP_D_REDIRECT;
    else if (status == 401 && om_up_auth_possible(c))
        c->disp = OM_UP_D_AUTH;
    else if ((status == 429 || status >= 500) &&
             (c->tries < c->u->tries_max || om_up_pool_can_switch(c, status)))
        c->disp = OM_UP_D_RETRY;
    else
        c->disp = OM_UP_D_FINAL;
    if (c->disp != OM_UP_D_FINAL)
        goto done;
    if (status_2xx(status) && c->req->on_body == NULL && r->content_length >= 0 &&
        (uint64_t)r->content_length > c->max_body && strcmp(c->req->method, "HEAD") != 0) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    if (c->req->on_headers != NULL) {
        c->headers_delivered = true;
        err = c->req->on_headers(c->req->ud, r);
        c->user_err = err != OM_OK;
    }
done:
    return err;
}

/* The signature is libcurl's (CURLOPT_HEADERFUNCTION). */
// cppcheck-suppress constParameter
static size_t on_header_line(char *buf, size_t size, size_t n, void *ud)
{
    struct om_up_call *c = ud;
    size_t len = size * n;

    if (len > HEADER_LINE_MAX) {
        c->cb_err = OM_ERR_TOOBIG;
        c->resp->headers_bad = true;
        snprintf(c->resp->error, sizeof(c->resp->error),
                 "a response header line over %u bytes", (unsigned)HEADER_LINE_MAX);
        return 0;
    }
    /* libcurl hands over one complete line at a time; the empty line ends a
     * header block, and only then are all of its headers queryable. */
    if ((len == 2 && buf[0] == '\r' && buf[1] == '\n') || (len == 1 && buf[0] == '\n')) {
        int err = om_up_headers_complete(c);
        if (err != OM_OK) {
            c->cb_err = err;
            return 0;
        }
    }
    return len;
}

/* Append to the buffered body, growing by doubling; false on OOM. */
static bool body_append(struct om_up_call *c, const char *buf, size_t len, size_t cap)
{
    struct om_up_resp *r = c->resp;
    if (r->body_len + len + 1 > c->body_alloc) {
        size_t want = c->body_alloc ? c->body_alloc : 16384;
        char *nb;
        while (want < r->body_len + len + 1)
            want *= 2;
        if (want > cap + 1)
            want = cap + 1;
        nb = realloc(r->body, want);     /* owned by resp */
        if (nb == NULL)
            return false;
        r->body = nb;
        c->body_alloc = want;
    }
    memcpy(r->body + r->body_len, buf, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';        /* convenient for JSON and logs */
    return true;
}

static size_t on_body_bytes(char *buf, size_t size, size_t n, void *ud)
{
    struct om_up_call *c = ud;
    struct om_up_resp *r = c->resp;
    size_t len = size * n;
    bool final2xx;
    size_t cap;
    int err;

    if (c->disp == OM_UP_D_NONE && (err = om_up_headers_complete(c)) != OM_OK) {
        c->cb_err = err;
        return 0;
    }
    final2xx = c->disp == OM_UP_D_FINAL && status_2xx(r->status);
    if (final2xx && c->req->on_body != NULL) {
        if ((err = c->req->on_body(c->req->ud, buf, len)) != OM_OK) {
            c->cb_err = err;
            c->user_err = true;
            return 0;
        }
        r->body_delivered += len;
        return len;
    }
    cap = final2xx ? c->max_body : ERROR_BODY_MAX;
    if (r->body_len + len > cap) {
        if (final2xx) {
            c->cb_err = OM_ERR_TOOBIG;
            return 0;
        }
        /* A diagnostic body only needs its head: keep what fits, stop. */
        if (!body_append(c, buf, cap - r->body_len, cap)) {
            c->cb_err = OM_ERR_NOMEM;
            return 0;
        }
        c->stop_ok = true;
        return 0;
    }
    if (!body_append(c, buf, len, cap)) {
        c->cb_err = OM_ERR_NOMEM;
        return 0;
    }
    return len;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct om_up_call *c = ud;
    (void)dt, (void)dn, (void)ut, (void)un;
    if (om_up_is_cancelled(c->req->cancel)) {
        c->cancelled = true;
        return 1;
    }
    if (c->req->on_tick != NULL)
        c->req->on_tick(c->req->ud);
    return 0;
}

/* ---- the request: options and headers of one hop ----------------------- */

/* Options every request of this upstream gets, on a freshly reset handle. */
static CURLcode common_setup(struct om_upstream *u, CURL *h, char *errbuf)
{
    const struct om_upstream_cfg *cfg = u->cfg;
    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val); } while (0)
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_SHARE, u->share);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_S);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    /* Each pooled handle keeps at most two idle connections (the upstream
     * and its token realm), so idle upstream sockets stay bounded by the
     * pool size rather than growing with bursts of downloads. */
    SET(CURLOPT_MAXCONNECTS, 2L);
    SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);   /* proxy CONNECT answers are not ours */
    SET(CURLOPT_USERAGENT, u->user_agent);
    SET(CURLOPT_SSL_VERIFYPEER, cfg->insecure_skip_verify ? 0L : 1L);
    SET(CURLOPT_SSL_VERIFYHOST, cfg->insecure_skip_verify ? 0L : 2L);
    if (cfg->ca_file != NULL)
        SET(CURLOPT_CAINFO, cfg->ca_file);
    if (cfg->proxy != NULL)
        SET(CURLOPT_PROXY, cfg->proxy);
    /* No CURLOPT_ACCEPT_ENCODING: we need bytes exactly as stored. */
#undef SET
    return rc;
}

/* Set up c->h for one hop to the current URL.  *hdrs gets the header list
 * (owned by the caller, curl_slist_free_all after the transfer). */
int om_up_hop_setup(struct om_up_call *c, const char *url, struct curl_slist **hdrs)
{
    int err = OM_OK;
    const struct om_up_req *req = c->req;
    struct curl_slist *l = NULL, *t;
    char line[64];                      /* "Range: bytes=<u64>-" */
    CURLcode rc;

    curl_easy_reset(c->h);
    rc = common_setup(c->u, c->h, c->errbuf);
#define SET(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(c->h, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    if (strcmp(req->method, "HEAD") == 0)
        SET(CURLOPT_NOBODY, 1L);
    else
        SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_HEADERFUNCTION, on_header_line);
    SET(CURLOPT_HEADERDATA, c);
    SET(CURLOPT_WRITEFUNCTION, on_body_bytes);
    /* HTTP/1.1 for bulk bytes: registries (distribution) serve large blobs
     * markedly slower over HTTP/2 (bench/RESULTS.md, P2: 512 MiB cold pull
     * 2.30 s -> 1.55 s). */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_WRITEDATA, c);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, c);
    SET(CURLOPT_NOPROGRESS, 0L);
    if (c->deadline_ms != 0) {
        /* The whole call has a budget (token fetches): each hop gets what
         * is left of it, at least 1 ms so an exhausted budget times out. */
        int64_t left = c->deadline_ms - om_up_mono_ms();
        SET(CURLOPT_TIMEOUT_MS, (long)(left > 0 ? left : 1));
    }
#undef SET
    if (rc != CURLE_OK) {
        snprintf(c->resp->error, sizeof(c->resp->error), "curl setup: %s",
                 curl_easy_strerror(rc));
        err = rc == CURLE_OUT_OF_MEMORY ? OM_ERR_NOMEM : OM_ERR_UPSTREAM;
        goto done;
    }
    if (req->accept != NULL) {
        char *a = NULL;     /* freed right after curl_slist_append copies it */
        if (asprintf(&a, "Accept: %s", req->accept) < 0)
            goto nomem;
        t = curl_slist_append(l, a);
        free(a);
        if (t == NULL)
            goto nomem;
        l = t;
    }
    if ((err = om_up_auth_hop_setup(c, &l)) != OM_OK)
        goto done;
    if (req->range_from > 0) {
        snprintf(line, sizeof(line), "Range: bytes=%" PRIu64 "-", req->range_from);
        if ((t = curl_slist_append(l, line)) == NULL)
            goto nomem;
        l = t;
    }
    if (l != NULL && curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, l) != CURLE_OK)
        goto nomem;
    *hdrs = l;
    l = NULL;
    goto done;
nomem:
    err = OM_ERR_NOMEM;
done:
    curl_slist_free_all(l);
    return err;
}
