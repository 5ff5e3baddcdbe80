/* upstream.c — the libcurl client to one upstream registry: the upstream
 * object and its logical requests (see upstream.h for the contract) — its
 * lifecycle, the libcurl state it shares between threads, the easy-handle
 * pool, the hop loop with its retries and backoff, and the statistics.
 * What one hop does on the wire (the handle's options and headers, the
 * callbacks that classify the response and stream or buffer its body) lives
 * in upstream_hop.c; credentials — where they may go, the challenge
 * answered, Basic, the bearer-token cache and its single-flight fetch — in
 * upstream_auth.c; which endpoint (URL) and which account of the
 * credential pool a request uses, and what their failures do, in
 * upstream_pool.c; the pure parsers in authparse.c; what the files share in
 * upstream_int.h.
 *
 * Lifecycle: om_upstream_new() at start, one per configured upstream;
 * om_upstream_do() from any number of fetch/job threads at once;
 * om_upstream_free() at exit after every caller is done.
 *
 * What one struct om_upstream owns, each behind its own mutex:
 *   - a CURLSH sharing the DNS cache and TLS sessions (one pthread mutex per
 *     curl_lock_data kind, as libcurl asks);
 *   - a small LIFO pool of idle easy handles.  Connection reuse comes from
 *     here: an easy handle keeps its live connections across
 *     curl_easy_reset(), and LIFO hands the warmest one out first.  The
 *     connection cache is deliberately NOT shared through the CURLSH: libcurl
 *     documents sharing connections between concurrent threads as
 *     unsupported (curl issues #4544, #13347, #13840: use-after-free in the
 *     shared conncache), and our callers are concurrent threads;
 *   - the bearer-token cache (upstream_auth.c);
 *   - statistics for the admin API.
 *
 * One om_upstream_do() is a loop over "hops" (one curl_easy_perform each):
 *
 *   hop ─▶ headers complete (header callback sees the blank line)
 *          classify the response once, there (upstream_hop.c):
 *            REDIRECT  3xx with Location, follow by hand    ─▶ next hop
 *            AUTH      401 with a challenge we can answer   ─▶ token, next hop
 *            RETRY     5xx/429 with tries left, or another endpoint or
 *                      account left for it                  ─▶ switch (no
 *                      sleep) or sleep, next hop
 *            FINAL     anything else: on_headers(), then the body streams
 *                      to on_body (2xx) or is buffered
 *
 * Classifying at header time (not after the transfer) is what lets a 2xx
 * body stream straight into on_body while a redirect's or an error's body
 * never reaches the caller.  Redirects are followed by hand (libcurl's
 * FOLLOWLOCATION off) so that credentials are attached per hop, only when
 * the hop's scheme+host+port equal the origin they belong to, and so an
 * https → http downgrade can be refused (om_up_follow_redirect).  A token
 * fetch runs through this same hop loop (om_up_call_run) with the realm as
 * its home origin, so its redirects obey the same rules.  URLs are only ever
 * parsed and resolved with libcurl's CURLU.
 *
 * Secrets: tokens and passwords live in heap strings that are zeroed before
 * they are freed; they are never passed to om_log*, and redirect targets
 * (often pre-signed URLs) are logged as scheme://host:port only.
 *
 * If you add a response header to struct om_up_resp, fill it in
 * fill_resp_headers(); if you add a request option, set it in
 * om_up_hop_setup() (both in upstream_hop.c).
 */
#include "upstream/upstream_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>

#include "core/log.h"

#define SLEEP_SLICE_MS 100              /* backoff sleeps check cancel this often */

/* ---- small helpers ----------------------------------------------------- */

/* Jitter only spreads retries out; it need not be unpredictable. */
static uint64_t jitter_rand(void)
{
    static _Thread_local uint64_t state;
    uint64_t z;
    if (state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&state;
    }
    state += 0x9e3779b97f4a7c15ULL;     /* splitmix64 */
    z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Sleep ms in slices so a cancel is noticed; false when cancelled. */
static bool sleep_cancellable(uint64_t ms, const atomic_bool *cancel)
{
    bool ok = true;
    while (ms > 0) {
        uint64_t slice = ms < SLEEP_SLICE_MS ? ms : SLEEP_SLICE_MS;
        struct timespec ts = {(time_t)(slice / 1000), (long)(slice % 1000) * 1000000L};
        if (om_up_is_cancelled(cancel)) {
            ok = false;
            break;
        }
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        ms -= slice;
    }
    if (om_up_is_cancelled(cancel))
        ok = false;
    return ok;
}

/* ---- libcurl global state and the share's locks ------------------------ */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

/* curl_global_init is only safe once and before threads use libcurl;
 * pthread_once gives both without asking main() to know about libcurl.
 * curl_global_cleanup is never called: libcurl lives until exit. */
static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
    struct om_upstream *u = ud;
    (void)h;
    (void)access;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&u->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
    struct om_upstream *u = ud;
    (void)h;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&u->share_mu[data]);
}

/* ---- easy handle pool --------------------------------------------------- */

CURL *om_up_pool_get(struct om_upstream *u)
{
    CURL *h = NULL;
    pthread_mutex_lock(&u->pool_mu);
    if (u->n_pool > 0)
        h = u->pool[--u->n_pool];
    pthread_mutex_unlock(&u->pool_mu);
    if (h == NULL)
        h = curl_easy_init();
    return h;
}

/* Takes ownership of h.  A handle whose transfer failed may hold a broken
 * connection; libcurl checks connections before reuse, so it is kept too. */
void om_up_pool_put(struct om_upstream *u, CURL *h)
{
    if (h == NULL)
        return;
    curl_easy_reset(h);     /* drops our pointers (callbacks, ud); keeps connections */
    pthread_mutex_lock(&u->pool_mu);
    if (u->n_pool < OM_UP_EASY_POOL_MAX) {
        u->pool[u->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&u->pool_mu);
    if (h != NULL)
        curl_easy_cleanup(h);
}

/* ---- one logical request: the hop loop ---------------------------------- */

/* Backoff before try number `next` (2, 3, ...): see om_up_backoff_ms. */
static uint64_t retry_delay_ms(const struct om_up_call *c, unsigned next)
{
    return om_up_backoff_ms(c->u->backoff_ms, c->resp->status, c->resp->retry_after_s, next,
                            jitter_rand());
}

static void log_retry(const struct om_up_call *c, const char *reason, uint64_t delay)
{
    char attempt[24], ms[24];
    snprintf(attempt, sizeof(attempt), "%u", c->tries);
    snprintf(ms, sizeof(ms), "%" PRIu64, delay);
    om_log_kv(OM_LOG_INFO, "upstream retry", "upstream", c->u->cfg->name, "method",
              c->req->method, "path", c->req->path, "reason", reason, "attempt", attempt,
              "delay_ms", ms, NULL);
}

/* One logical request into the health statistics.  A caller's own abort
 * (cancel, a callback's error) says nothing about the upstream. */
static void stats_record(struct om_up_call *c, int err, int64_t started_us)
{
    struct om_upstream *u = c->u;
    struct om_upstream_stats *s = &u->stats;
    bool ours = c->user_err || (err == OM_ERR_TIMEOUT && c->cancelled);
    bool failed = !ours && (err != OM_OK || c->resp->status >= 500);

    pthread_mutex_lock(&u->stats_mu);
    s->requests++;
    s->last_latency_us = (uint64_t)(om_up_mono_us() - started_us);
    static const uint64_t bounds_us[] = OM_UP_LATENCY_BOUNDS_US;
    size_t b = 0;
    while (b < OM_ARRAY_LEN(bounds_us) && s->last_latency_us > bounds_us[b])
        b++;
    s->latency_hist[b]++;
    s->latency_sum_us += s->last_latency_us;
    if (c->resp->ratelimit_remaining >= 0)
        s->ratelimit_remaining = c->resp->ratelimit_remaining;
    if (!ours)
        s->healthy = c->reached && c->resp->status < 500;
    if (failed) {
        s->errors++;
        s->last_error_ms = om_up_wall_ms();
        if (c->resp->error[0] != '\0')
            om_up_copy_trunc(s->last_error, sizeof(s->last_error), c->resp->error);
        else
            snprintf(s->last_error, sizeof(s->last_error), "HTTP %ld", c->resp->status);
    } else if (!ours) {
        s->last_ok_ms = om_up_wall_ms();
    }
    pthread_mutex_unlock(&u->stats_mu);
}

/* Does a retry after `delay` ms fit in the call's budget (timeout_ms)?
 * If not, the error says so. */
static bool retry_fits(struct om_up_call *c, uint64_t delay)
{
    if (c->deadline_ms == 0 || om_up_mono_ms() + (int64_t)delay < c->deadline_ms)
        return true;
    char what[sizeof(c->resp->error)];
    om_up_copy_trunc(what, sizeof(what), c->resp->error[0] ? c->resp->error : "no answer");
    snprintf(c->resp->error, sizeof(c->resp->error), "%.180s, and no time left to retry "
             "within %llu ms", what, (unsigned long long)c->req->timeout_ms);
    return false;
}

/* One hop: perform it, then turn the outcome into "done" or "go on".
 * *again is set when the loop should run another hop. */
static int run_hop(struct om_up_call *c, bool *again)
{
    int err = OM_OK;
    struct curl_slist *hdrs = NULL;     /* owned */
    char *url = NULL;                   /* curl_free'd */
    char reason[64];
    CURLcode rc;
    uint64_t delay;

    *again = false;
    om_up_resp_reset_hop(c->resp);
    c->disp = OM_UP_D_NONE;
    c->cb_err = OM_OK;
    c->stop_ok = false;
    c->body_alloc = 0;
    c->errbuf[0] = '\0';
    if (curl_url_get(c->cu, CURLUPART_URL, &url, 0) != CURLUE_OK) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if ((err = om_up_hop_setup(c, url, &hdrs)) != OM_OK)
        goto done;
    rc = curl_easy_perform(c->h);
    if (c->cancelled) {
        snprintf(c->resp->error, sizeof(c->resp->error), "cancelled");
        err = OM_ERR_TIMEOUT;
        goto done;
    }
    if (rc != CURLE_OK && c->stop_ok && c->cb_err == OM_OK)
        rc = CURLE_OK;          /* we cut a diagnostic body short on purpose */
    if (rc != CURLE_OK && c->cb_err != OM_OK) {
        err = c->cb_err;
        if (err == OM_ERR_TOOBIG && c->resp->error[0] == '\0')
            snprintf(c->resp->error, sizeof(c->resp->error), "response over its size limit");
        goto done;
    }
    if (rc != CURLE_OK) {
        bool switched = false;
        snprintf(c->resp->error, sizeof(c->resp->error), "%s",
                 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
        /* libcurl 7.88 says "Out of memory" for a header line over its own
         * 100 KiB limit (CURL_MAX_HTTP_HEADER), which is what a lying
         * upstream sends; a real allocation failure is far rarer. */
        if (rc == CURLE_OUT_OF_MEMORY) {
            c->resp->headers_bad = true;
            snprintf(c->resp->error, sizeof(c->resp->error),
                     "the response's headers are over libcurl's limit (100 KiB a line)");
        }
        /* The endpoint did not answer: another one of the upstream, at once. */
        if (!c->resp->headers_bad) {
            if ((err = om_up_pool_failed(c, 0, true, &switched)) != OM_OK)
                goto done;
            if (switched) {
                *again = true;
                goto done;
            }
        }
        if (om_up_curl_retryable(rc) && c->tries < c->u->tries_max && c->resp->body_delivered == 0 &&
            !c->headers_delivered) {
            c->tries++;
            delay = retry_delay_ms(c, c->tries);
            if (!retry_fits(c, delay)) {
                c->reached = false;
                err = OM_ERR_UPSTREAM;
                goto done;
            }
            log_retry(c, c->resp->error, delay);
            if (!sleep_cancellable(delay, c->req->cancel)) {
                c->cancelled = true;
                err = OM_ERR_TIMEOUT;
                goto done;
            }
            *again = true;
            goto done;
        }
        c->reached = false;
        err = OM_ERR_UPSTREAM;
        goto done;
    }
    if (c->disp == OM_UP_D_NONE && (err = om_up_headers_complete(c)) != OM_OK)
        goto done;              /* defensive: a response without a blank line */
    om_up_pool_answered(c);
    if (c->disp == OM_UP_D_FINAL && (c->resp->status >= 500 || c->resp->status == 429)) {
        bool switched = false;  /* never: the answer was already the caller's */
        (void)om_up_pool_failed(c, c->resp->status, false, &switched);
    }

    switch (c->disp) {
    case OM_UP_D_REDIRECT:
        if ((err = om_up_follow_redirect(c)) == OM_OK)
            *again = true;
        break;
    case OM_UP_D_AUTH:
        err = om_up_auth_answer(c);
        if (err != OM_OK && err != OM_ERR_AUTH)
            c->resp->auth_failed = true;
        if (err == OM_OK) {
            *again = true;
        } else if (err == OM_ERR_AUTH) {
            /* The token service said no: the 401 is the answer. */
            err = OM_OK;
            c->resp->status = 401;
            if (c->req->on_headers != NULL && !c->headers_delivered) {
                c->headers_delivered = true;
                err = c->req->on_headers(c->req->ud, c->resp);
                c->user_err = err != OM_OK;
            }
        }
        break;
    case OM_UP_D_RETRY: {
        bool switched = false;
        if ((err = om_up_pool_failed(c, c->resp->status, true, &switched)) != OM_OK)
            goto done;
        if (switched) {         /* another endpoint or account: at once */
            *again = true;
            break;
        }
        if (c->tries >= c->u->tries_max) {
            /* Classified for a switch that is no longer possible (the other
             * accounts are limited too): this answer is the final one. */
            c->disp = OM_UP_D_FINAL;
            if (c->req->on_headers != NULL && !c->headers_delivered) {
                c->headers_delivered = true;
                err = c->req->on_headers(c->req->ud, c->resp);
                c->user_err = err != OM_OK;
            }
            break;
        }
    }
        c->tries++;
        delay = retry_delay_ms(c, c->tries);
        snprintf(reason, sizeof(reason), "HTTP %ld", c->resp->status);
        if (!retry_fits(c, delay)) {
            snprintf(c->resp->error, sizeof(c->resp->error),
                     "HTTP %ld, and no time left to retry within %llu ms", c->resp->status,
                     (unsigned long long)c->req->timeout_ms);
            err = OM_ERR_UPSTREAM;
            goto done;
        }
        if (c->resp->status == 429)
            om_log_kv(OM_LOG_WARN, "upstream rate limited", "upstream", c->u->cfg->name,
                      "path", c->req->path, NULL);
        log_retry(c, reason, delay);
        if (!sleep_cancellable(delay, c->req->cancel)) {
            c->cancelled = true;
            err = OM_ERR_TIMEOUT;
            goto done;
        }
        *again = true;
        break;
    default:
        break;                  /* FINAL: on_headers already ran */
    }
done:
    curl_slist_free_all(hdrs);
    curl_free(url);
    return err;
}

int om_up_call_run(struct om_up_call *c)
{
    int err = OM_OK;
    bool again = true;

    while (again) {
        if (om_up_is_cancelled(c->req->cancel)) {
            c->cancelled = true;
            snprintf(c->resp->error, sizeof(c->resp->error), "cancelled");
            err = OM_ERR_TIMEOUT;
            break;
        }
        if ((err = run_hop(c, &again)) != OM_OK)
            break;
    }
    return err;
}

int om_upstream_do(struct om_upstream *u, const struct om_up_req *req, struct om_up_resp *resp)
{
    int err = OM_OK;
    struct om_up_call c;
    int64_t started = om_up_mono_us();

    memset(resp, 0, sizeof(*resp));
    om_up_resp_reset_hop(resp);
    memset(&c, 0, sizeof(c));
    c.u = u;
    c.req = req;
    c.resp = resp;
    c.tries = 1;
    c.acct = OM_UP_NO_ACCOUNT;

    if (req->method == NULL || req->path == NULL || req->path[0] != '/' ||
        (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) ||
        !om_up_header_safe(req->path) || strchr(req->path, ' ') != NULL ||
        (req->accept != NULL && !om_up_header_safe(req->accept)) ||
        (req->scope_repo != NULL && (!om_up_header_safe(req->scope_repo) ||
                                     strlen(req->scope_repo) > OM_NAME_MAX))) {
        err = OM_ERR_INVALID;
        snprintf(resp->error, sizeof(resp->error), "invalid request");
        goto done;
    }
    c.max_body = req->max_body ? req->max_body : OM_MANIFEST_MAX_DEFAULT;
    if (req->scope_repo != NULL)
        snprintf(c.scope, sizeof(c.scope), "repository:%s:pull", req->scope_repo);
    om_up_pool_pick(&c);
    if ((err = om_up_call_start_url(&c)) != OM_OK) {
        snprintf(resp->error, sizeof(resp->error), "request URL not on the upstream");
        goto done;
    }
    if ((c.h = om_up_pool_get(u)) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if (req->timeout_ms > 0)
        c.deadline_ms = om_up_mono_ms() + (int64_t)req->timeout_ms;
    om_up_auth_use_cached(&c);
    err = om_up_call_run(&c);
    if (err == OM_OK || err == OM_ERR_TIMEOUT || c.user_err)
        goto done;
    om_log_kv(err == OM_ERR_UPSTREAM || err == OM_ERR_DENIED ? OM_LOG_WARN : OM_LOG_DEBUG,
              "upstream request failed", "upstream", u->cfg->name, "method", req->method,
              "path", req->path, "error", resp->error[0] ? resp->error : "local error", NULL);
done:
    if (c.cu != NULL || c.h != NULL)
        stats_record(&c, err, started);
    if (c.h != NULL)
        om_up_pool_put(u, c.h);
    curl_url_cleanup(c.cu);
    free(c.location);
    om_up_free_secret(c.authz);
    om_up_free_secret(c.bearer);
    return err;
}

void om_up_resp_clear(struct om_up_resp *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
    resp->content_length = -1;
    resp->retry_after_s = -1;
    resp->ratelimit_remaining = -1;
    resp->ratelimit_window_s = -1;
}

/* ---- lifecycle ------------------------------------------------------------ */

int om_upstream_new(struct om_upstream **out, const struct om_config *cfg, size_t index)
{
    int err = OM_OK;
    struct om_upstream *u = NULL;   /* owned until handed to *out */
    CURLSHcode sc = CURLSHE_OK;

    *out = NULL;
    if (cfg == NULL || index >= cfg->n_upstreams ||
        (cfg->upstreams[index].url == NULL && cfg->upstreams[index].n_urls == 0)) {
        err = OM_ERR_INVALID;
        goto done;
    }
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        err = OM_ERR_UPSTREAM;
        om_log(OM_LOG_ERROR, "libcurl init failed: %s", curl_easy_strerror(global_rc));
        goto done;
    }
    if ((u = calloc(1, sizeof(*u))) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < OM_ARRAY_LEN(u->share_mu); i++)
        pthread_mutex_init(&u->share_mu[i], NULL);
    pthread_mutex_init(&u->pool_mu, NULL);
    pthread_mutex_init(&u->stats_mu, NULL);
    if ((err = om_up_tokens_init(&u->tok)) != OM_OK)
        goto done;
    u->cfg = &cfg->upstreams[index];
    u->tries_max = cfg->retries_max > 0 ? cfg->retries_max : 1;
    u->backoff_ms = cfg->retries_backoff_ms;
    u->stats.ratelimit_remaining = -1;
    snprintf(u->user_agent, sizeof(u->user_agent), "ocimirror/%s", OM_VERSION);

    if ((err = om_up_pool_init(u)) != OM_OK)
        goto done;
    if ((u->share = curl_share_init()) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    sc = curl_share_setopt(u->share, CURLSHOPT_LOCKFUNC, share_lock);
    if (sc == CURLSHE_OK)
        sc = curl_share_setopt(u->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    if (sc == CURLSHE_OK)
        sc = curl_share_setopt(u->share, CURLSHOPT_USERDATA, u);
    if (sc == CURLSHE_OK)
        sc = curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    if (sc == CURLSHE_OK)
        sc = curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    if (sc != CURLSHE_OK) {
        err = sc == CURLSHE_NOMEM ? OM_ERR_NOMEM : OM_ERR_UPSTREAM;
        om_log(OM_LOG_ERROR, "curl share setup failed: %s", curl_share_strerror(sc));
        goto done;
    }
    *out = u;
    u = NULL;
done:
    om_upstream_free(u);
    return err;
}

void om_upstream_free(struct om_upstream *u)
{
    if (u == NULL)
        return;
    /* Easy handles first: a share cannot go while handles still use it. */
    for (size_t i = 0; i < u->n_pool; i++)
        curl_easy_cleanup(u->pool[i]);
    if (u->share != NULL)
        curl_share_cleanup(u->share);
    om_up_tokens_destroy(&u->tok);
    for (size_t i = 0; i < OM_ARRAY_LEN(u->share_mu); i++)
        pthread_mutex_destroy(&u->share_mu[i]);
    pthread_mutex_destroy(&u->pool_mu);
    pthread_mutex_destroy(&u->stats_mu);
    free(u);
}

const struct om_upstream_cfg *om_upstream_cfg(const struct om_upstream *u)
{
    return u->cfg;
}

void om_upstream_stats_get(struct om_upstream *u, struct om_upstream_stats *out)
{
    pthread_mutex_lock(&u->stats_mu);
    *out = u->stats;
    pthread_mutex_unlock(&u->stats_mu);
}
