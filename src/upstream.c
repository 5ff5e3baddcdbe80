/* upstream.c — the libcurl client to one upstream registry (see upstream.h
 * for the contract; the pure parsers live in authparse.c).
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
 *   - the bearer-token cache: at most TOKEN_CACHE_MAX scopes, oldest
 *     evicted first, entries dropped a few seconds before they expire;
 *   - statistics for the admin API.
 *
 * One om_upstream_do() is a loop over "hops" (one curl_easy_perform each):
 *
 *   hop ─▶ headers complete (header callback sees the blank line)
 *          classify the response once, there:
 *            REDIRECT  3xx with Location, follow by hand    ─▶ next hop
 *            AUTH      401 with a challenge we can answer   ─▶ token, next hop
 *            RETRY     5xx/429 with tries left              ─▶ sleep, next hop
 *            FINAL     anything else: on_headers(), then the body streams
 *                      to on_body (2xx) or is buffered
 *
 * Classifying at header time (not after the transfer) is what lets a 2xx
 * body stream straight into on_body while a redirect's or an error's body
 * never reaches the caller.  Redirects are followed by hand (libcurl's
 * FOLLOWLOCATION off) so that the Authorization header is attached per hop,
 * only when the hop's scheme+host+port equal the upstream's own, and so an
 * https → http downgrade can be refused.  URLs are only ever parsed and
 * resolved with libcurl's CURLU.
 *
 * Secrets: tokens and passwords live in heap strings that are zeroed before
 * they are freed; they are never passed to om_log*, and redirect targets
 * (often pre-signed URLs) are logged as scheme://host:port only.
 *
 * If you add a response header to struct om_up_resp, fill it in
 * fill_resp_headers(); if you add a request option, set it in hop_setup().
 */
#include "upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "log.h"

#define MAX_REDIRECTS 5
#define HEADER_LINE_MAX (8u * 1024)     /* one header line; larger → TOOBIG */
#define ERROR_BODY_MAX (64u * 1024)     /* non-2xx bodies kept for diagnostics */
#define TOKEN_BODY_MAX (64u * 1024)     /* a token service answer */
#define TOKEN_CACHE_MAX 1024            /* scopes cached per upstream */
#define TOKEN_MARGIN_MS 5000            /* drop a token this long before expiry */
#define EASY_POOL_MAX 16                /* idle easy handles kept per upstream */
#define RETRY_AFTER_CAP_S 60
#define BACKOFF_CAP_MS 60000
#define CONNECT_TIMEOUT_S 10L
#define LOW_SPEED_TIME_S 60L            /* < 1 byte/s for this long → abort */
#define TOKEN_TIMEOUT_S 30L             /* token requests are small: bound them */
#define SLEEP_SLICE_MS 100              /* backoff sleeps check cancel this often */
#define ORIGIN_HOST_MAX 256
#define SCOPE_MAX (OM_NAME_MAX + 32)

struct token_entry {
    char *scope;                /* owned */
    char *token;                /* owned; zeroed before free */
    int64_t expires_ms;         /* monotonic clock */
    uint64_t seq;               /* insertion order: the smallest is the oldest */
};

/* scheme + host + port, the unit Authorization is bound to. */
struct origin {
    char scheme[8];             /* "http" or "https" */
    char host[ORIGIN_HOST_MAX];
    long port;                  /* explicit or the scheme's default */
};

struct om_upstream {
    const struct om_upstream_cfg *cfg;  /* borrowed from the om_config */
    unsigned tries_max;                 /* >= 1 */
    uint64_t backoff_ms;
    struct origin origin;
    char user_agent[64];

    CURLSH *share;                      /* owned */
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];

    pthread_mutex_t pool_mu;
    CURL *pool[EASY_POOL_MAX];          /* owned idle handles */
    size_t n_pool;

    pthread_mutex_t tok_mu;
    struct token_entry toks[TOKEN_CACHE_MAX];
    size_t n_toks;
    uint64_t tok_seq;

    pthread_mutex_t stats_mu;
    struct om_upstream_stats stats;
};

/* ---- small helpers ----------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Secrets are wiped before their memory goes back to malloc. */
static void free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Copy a header value into a fixed field; truncation is safe (always NUL
 * terminated) and callers validate what they parse out of it. */
static void copy_trunc(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

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

static bool is_cancelled(const atomic_bool *cancel)
{
    return cancel != NULL && atomic_load(cancel);
}

/* Sleep ms in slices so a cancel is noticed; false when cancelled. */
static bool sleep_cancellable(uint64_t ms, const atomic_bool *cancel)
{
    bool ok = true;
    while (ms > 0) {
        uint64_t slice = ms < SLEEP_SLICE_MS ? ms : SLEEP_SLICE_MS;
        struct timespec ts = {(time_t)(slice / 1000), (long)(slice % 1000) * 1000000L};
        if (is_cancelled(cancel)) {
            ok = false;
            break;
        }
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        ms -= slice;
    }
    if (is_cancelled(cancel))
        ok = false;
    return ok;
}

/* A string that goes into a request header must not be able to end it. */
static bool header_safe(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
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

/* Returns an easy handle owned by the caller until pool_put; NULL on OOM. */
static CURL *pool_get(struct om_upstream *u)
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
static void pool_put(struct om_upstream *u, CURL *h)
{
    if (h == NULL)
        return;
    curl_easy_reset(h);     /* drops our pointers (callbacks, ud); keeps connections */
    pthread_mutex_lock(&u->pool_mu);
    if (u->n_pool < EASY_POOL_MAX) {
        u->pool[u->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&u->pool_mu);
    if (h != NULL)
        curl_easy_cleanup(h);
}

/* ---- token cache -------------------------------------------------------- */

static void token_entry_clear(struct token_entry *e)
{
    free(e->scope);
    free_secret(e->token);
    memset(e, 0, sizeof(*e));
}

/* A malloc'd copy of the cached token for scope (caller frees with
 * free_secret), or NULL when none is valid. */
static char *token_cache_get(struct om_upstream *u, const char *scope)
{
    char *tok = NULL;
    int64_t now = mono_ms();
    pthread_mutex_lock(&u->tok_mu);
    for (size_t i = 0; i < u->n_toks; i++) {
        struct token_entry *e = &u->toks[i];
        if (strcmp(e->scope, scope) == 0) {
            if (e->expires_ms > now)
                tok = strdup(e->token);
            break;
        }
    }
    pthread_mutex_unlock(&u->tok_mu);
    return tok;
}

static void token_cache_remove_at(struct om_upstream *u, size_t i)
{
    token_entry_clear(&u->toks[i]);
    u->toks[i] = u->toks[u->n_toks - 1];
    memset(&u->toks[u->n_toks - 1], 0, sizeof(u->toks[0]));
    u->n_toks--;
}

/* Forget scope's token if it is still `token` (the upstream refused it). */
static void token_cache_drop(struct om_upstream *u, const char *scope, const char *token)
{
    pthread_mutex_lock(&u->tok_mu);
    for (size_t i = 0; i < u->n_toks; i++) {
        if (strcmp(u->toks[i].scope, scope) == 0) {
            if (strcmp(u->toks[i].token, token) == 0)
                token_cache_remove_at(u, i);
            break;
        }
    }
    pthread_mutex_unlock(&u->tok_mu);
}

/* Store copies of scope and token; on OOM the token is simply not cached. */
static void token_cache_put(struct om_upstream *u, const char *scope, const char *token,
                            long expires_s)
{
    int64_t now = mono_ms();
    int64_t life = (int64_t)expires_s * 1000;
    int64_t margin = life / 2 < TOKEN_MARGIN_MS ? life / 2 : TOKEN_MARGIN_MS;
    struct token_entry e = {0};
    size_t i;

    e.scope = strdup(scope);
    e.token = strdup(token);
    e.expires_ms = now + life - margin;
    if (e.scope == NULL || e.token == NULL) {
        token_entry_clear(&e);
        return;
    }
    pthread_mutex_lock(&u->tok_mu);
    e.seq = ++u->tok_seq;
    for (i = 0; i < u->n_toks; i++) {
        if (strcmp(u->toks[i].scope, scope) == 0) {
            token_entry_clear(&u->toks[i]);
            u->toks[i] = e;
            goto unlock;
        }
    }
    if (u->n_toks == TOKEN_CACHE_MAX) {
        /* Expired entries go first; if none, the oldest. */
        for (i = u->n_toks; i-- > 0;) {
            if (u->toks[i].expires_ms <= now)
                token_cache_remove_at(u, i);
        }
        if (u->n_toks == TOKEN_CACHE_MAX) {
            size_t oldest = 0;
            for (i = 1; i < u->n_toks; i++)
                if (u->toks[i].seq < u->toks[oldest].seq)
                    oldest = i;
            token_cache_remove_at(u, oldest);
        }
    }
    u->toks[u->n_toks++] = e;
unlock:
    pthread_mutex_unlock(&u->tok_mu);
}

/* ---- origins (CURLU only) ---------------------------------------------- */

/* Fill o from the URL in cu.  OM_ERR_DENIED when the scheme is not
 * http/https, OM_ERR_INVALID when there is no usable host. */
static int origin_of(CURLU *cu, struct origin *o)
{
    int err = OM_OK;
    char *scheme = NULL, *host = NULL, *port = NULL;   /* curl_free'd at done */
    char *end = NULL;

    memset(o, 0, sizeof(*o));
    if (curl_url_get(cu, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(cu, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(cu, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        err = OM_ERR_INVALID;
        goto done;
    }
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
        err = OM_ERR_DENIED;
        goto done;
    }
    if (host[0] == '\0' || strlen(host) >= sizeof(o->host)) {
        err = OM_ERR_INVALID;
        goto done;
    }
    snprintf(o->scheme, sizeof(o->scheme), "%s", strcasecmp(scheme, "https") == 0 ? "https" : "http");
    memcpy(o->host, host, strlen(host) + 1);
    errno = 0;
    o->port = strtol(port, &end, 10);
    if (errno != 0 || end == port || *end != '\0' || o->port <= 0 || o->port > 65535)
        err = OM_ERR_INVALID;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    return err;
}

static bool origin_eq(const struct origin *a, const struct origin *b)
{
    return strcmp(a->scheme, b->scheme) == 0 && strcasecmp(a->host, b->host) == 0 &&
           a->port == b->port;
}

/* "https://host:port" for logs: never a path or query (pre-signed URLs). */
static void origin_str(const struct origin *o, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s://%s:%ld", o->scheme, o->host, o->port);
}

/* ---- one logical request ------------------------------------------------ */

enum disp { D_NONE, D_FINAL, D_REDIRECT, D_AUTH, D_RETRY };
enum auth_mode { AUTH_NONE, AUTH_BEARER, AUTH_BASIC };

struct call {
    struct om_upstream *u;
    const struct om_up_req *req;
    struct om_up_resp *resp;
    CURL *h;                    /* from the pool, returned at the end */
    CURLU *cu;                  /* the current URL; owned */
    struct origin cur;          /* origin of the current URL */
    bool at_origin;             /* cur equals the upstream's own origin */
    size_t max_body;

    unsigned tries;             /* tries started, the current one included */
    unsigned hops;              /* redirects followed */
    bool auth_tried;            /* one auth round per logical request */
    bool headers_delivered;     /* on_headers was called */
    bool user_err;              /* the error came from on_headers/on_body */
    bool reached;               /* some HTTP answer arrived */
    enum auth_mode auth;
    char *bearer;               /* token sent at the origin; owned, secret */
    char *authz;                /* "Authorization: Bearer ..."; owned, secret */
    char scope[SCOPE_MAX];      /* default scope for scope_repo ("" for none) */
    struct om_challenge ch;     /* the challenge chosen at header time */
    bool ch_ok;

    /* per hop */
    enum disp disp;
    int cb_err;                 /* error raised inside a callback */
    bool stop_ok;               /* we stopped reading a diagnostic body */
    bool cancelled;
    char *location;             /* Location of a redirect; owned */
    size_t body_alloc;
    char errbuf[CURL_ERROR_SIZE];
};

static bool status_is_redirect(long s)
{
    return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

static bool status_2xx(long s) { return s >= 200 && s < 300; }

/* The value of the first `name` header of the current response, or NULL.
 * Points into libcurl's storage: valid until the next call on h. */
static const char *resp_header(CURL *h, const char *name, size_t index)
{
    struct curl_header *hh = NULL;
    if (curl_easy_header(h, name, index, CURLH_HEADER, -1, &hh) != CURLHE_OK || hh == NULL)
        return NULL;
    return hh->value;
}

static size_t resp_header_count(CURL *h, const char *name)
{
    struct curl_header *hh = NULL;
    if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &hh) != CURLHE_OK || hh == NULL)
        return 0;
    return hh->amount;
}

/* Content-Length as sent, or -1 when absent or not a plain number. */
static int64_t parse_content_length(const char *v)
{
    int64_t n = 0;
    size_t digits = 0;
    if (v == NULL)
        return -1;
    for (; *v >= '0' && *v <= '9'; v++, digits++) {
        if (digits >= 18)
            return -1;
        n = n * 10 + (*v - '0');
    }
    return digits > 0 && *v == '\0' ? n : -1;
}

/* Reset the per-response fields of resp before a hop. */
static void resp_reset_hop(struct om_up_resp *r)
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
    r->error[0] = '\0';
}

/* Pick the challenge to answer from the 401's WWW-Authenticate headers:
 * the first Bearer, else the first Basic.  Records the raw value. */
static void choose_challenge(struct call *c)
{
    size_t n = resp_header_count(c->h, "WWW-Authenticate");
    bool have_basic = false;
    struct om_challenge tmp;

    c->ch_ok = false;
    for (size_t i = 0; i < n; i++) {
        const char *v = resp_header(c->h, "WWW-Authenticate", i);
        if (v == NULL)
            continue;
        if (i == 0 || c->resp->www_authenticate[0] == '\0')
            copy_trunc(c->resp->www_authenticate, sizeof(c->resp->www_authenticate), v);
        if (om_challenge_parse(&tmp, v, strlen(v)) != OM_OK)
            continue;
        if (strcasecmp(tmp.scheme, "Bearer") == 0 && tmp.realm[0] != '\0') {
            c->ch = tmp;
            c->ch_ok = true;
            copy_trunc(c->resp->www_authenticate, sizeof(c->resp->www_authenticate), v);
            break;
        }
        if (strcasecmp(tmp.scheme, "Basic") == 0 && !have_basic) {
            c->ch = tmp;
            c->ch_ok = true;
            have_basic = true;
        }
    }
}

static void fill_resp_headers(struct call *c)
{
    struct om_up_resp *r = c->resp;
    const char *v;

    if ((v = resp_header(c->h, "Content-Type", 0)) != NULL)
        copy_trunc(r->content_type, sizeof(r->content_type), v);
    if ((v = resp_header(c->h, "Docker-Content-Digest", 0)) != NULL)
        copy_trunc(r->docker_digest, sizeof(r->docker_digest), v);
    r->content_length = parse_content_length(resp_header(c->h, "Content-Length", 0));
    if ((v = resp_header(c->h, "Content-Range", 0)) != NULL)
        copy_trunc(r->content_range, sizeof(r->content_range), v);
    if ((v = resp_header(c->h, "Link", 0)) != NULL)
        copy_trunc(r->link, sizeof(r->link), v);
    if ((v = resp_header(c->h, "Retry-After", 0)) != NULL)
        r->retry_after_s = om_retry_after_parse(v, (long)(wall_ms() / 1000));
    if ((v = resp_header(c->h, "ratelimit-remaining", 0)) != NULL)
        r->ratelimit_remaining = om_ratelimit_remaining_parse(v);
    free(c->location);
    c->location = NULL;
    if (status_is_redirect(r->status) && (v = resp_header(c->h, "Location", 0)) != NULL)
        c->location = strdup(v);    /* NULL on OOM: treated as no Location */
    if (r->status == 401)
        choose_challenge(c);
}

/* Whether a 401 can be answered by one auth round. */
static bool auth_possible(const struct call *c)
{
    const struct om_upstream_cfg *cfg = c->u->cfg;
    if (c->auth_tried || !c->at_origin || !c->ch_ok)
        return false;
    if (strcasecmp(c->ch.scheme, "Bearer") == 0)
        return true;
    return strcasecmp(c->ch.scheme, "Basic") == 0 && cfg->username != NULL &&
           cfg->password != NULL && c->auth != AUTH_BASIC;
}

/* Decide, once per hop when its headers are complete, what the response
 * is; a FINAL one goes to on_headers right away, before any body byte. */
static int headers_complete(struct call *c)
{
    int err = OM_OK;
    struct om_up_resp *r = c->resp;
    long status = 0;

    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    if (c->disp != D_NONE || (status >= 100 && status < 200))
        goto done;      /* trailers, or an interim 1xx: the real answer follows */
    c->reached = true;
    r->status = status;
    fill_resp_headers(c);
    if (status_is_redirect(status) && c->location != NULL)
        c->disp = D_REDIRECT;
    else if (status == 401 && auth_possible(c))
        c->disp = D_AUTH;
    else if ((status == 429 || status >= 500) && c->tries < c->u->tries_max)
        c->disp = D_RETRY;
    else
        c->disp = D_FINAL;
    if (c->disp != D_FINAL)
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
    struct call *c = ud;
    size_t len = size * n;

    if (len > HEADER_LINE_MAX) {
        c->cb_err = OM_ERR_TOOBIG;
        return 0;
    }
    /* libcurl hands over one complete line at a time; the empty line ends a
     * header block, and only then are all of its headers queryable. */
    if ((len == 2 && buf[0] == '\r' && buf[1] == '\n') || (len == 1 && buf[0] == '\n')) {
        int err = headers_complete(c);
        if (err != OM_OK) {
            c->cb_err = err;
            return 0;
        }
    }
    return len;
}

/* Append to the buffered body, growing by doubling; false on OOM. */
static bool body_append(struct call *c, const char *buf, size_t len, size_t cap)
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
    struct call *c = ud;
    struct om_up_resp *r = c->resp;
    size_t len = size * n;
    bool final2xx;
    size_t cap;
    int err;

    if (c->disp == D_NONE && (err = headers_complete(c)) != OM_OK) {
        c->cb_err = err;
        return 0;
    }
    final2xx = c->disp == D_FINAL && status_2xx(r->status);
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
    struct call *c = ud;
    (void)dt, (void)dn, (void)ut, (void)un;
    if (is_cancelled(c->req->cancel)) {
        c->cancelled = true;
        return 1;
    }
    return 0;
}

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
static int hop_setup(struct call *c, const char *url, struct curl_slist **hdrs)
{
    int err = OM_OK;
    const struct om_up_req *req = c->req;
    const struct om_upstream_cfg *cfg = c->u->cfg;
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
    SET(CURLOPT_WRITEDATA, c);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, c);
    SET(CURLOPT_NOPROGRESS, 0L);
    if (c->at_origin && c->auth == AUTH_BASIC) {
        /* libcurl encodes Basic; with FOLLOWLOCATION off it goes only to
         * this URL, which is the upstream's own origin. */
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERNAME, cfg->username);
        SET(CURLOPT_PASSWORD, cfg->password);
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
    if (c->at_origin && c->auth == AUTH_BEARER && c->authz != NULL) {
        if ((t = curl_slist_append(l, c->authz)) == NULL)
            goto nomem;
        l = t;
    }
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

/* Transport errors worth another try: the network, not our setup or TLS
 * verification, which will fail the same way again. */
static bool curl_retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
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

/* Backoff before try number `next` (2, 3, ...): full jitter over an
 * exponentially growing window, or Retry-After when the upstream gave one. */
static uint64_t retry_delay_ms(const struct call *c, unsigned next)
{
    uint64_t window = c->u->backoff_ms;
    long ra = c->resp->retry_after_s;
    long st = c->resp->status;

    if ((st == 429 || st == 503) && ra >= 0)
        return (uint64_t)(ra > RETRY_AFTER_CAP_S ? RETRY_AFTER_CAP_S : ra) * 1000;
    for (unsigned i = 2; i < next && window < BACKOFF_CAP_MS; i++)
        window *= 2;
    if (window > BACKOFF_CAP_MS)
        window = BACKOFF_CAP_MS;
    return window == 0 ? 0 : jitter_rand() % (window + 1);
}

static void log_retry(const struct call *c, const char *reason, uint64_t delay)
{
    char attempt[24], ms[24];
    snprintf(attempt, sizeof(attempt), "%u", c->tries);
    snprintf(ms, sizeof(ms), "%" PRIu64, delay);
    om_log_kv(OM_LOG_INFO, "upstream retry", "upstream", c->u->cfg->name, "method",
              c->req->method, "path", c->req->path, "reason", reason, "attempt", attempt,
              "delay_ms", ms, NULL);
}

/* GET the realm for a token.  OM_OK with *token_out (owned by the caller,
 * free_secret) and *expires_s; OM_ERR_AUTH when the token service refused
 * (4xx); OM_ERR_DENIED for a realm we must not contact;
 * OM_ERR_UPSTREAM/TIMEOUT when it could not be reached. */
static int token_fetch(struct call *c, const char *scope, char **token_out, long *expires_s)
{
    int err = OM_OK;
    struct om_upstream *u = c->u;
    const struct om_upstream_cfg *cfg = u->cfg;
    CURL *h = NULL;             /* from the pool, returned at done */
    CURLU *cu = NULL;           /* owned */
    char *url = NULL;           /* curl_free'd */
    char *q = NULL;             /* owned */
    struct origin ro;
    struct om_up_resp tr;       /* the token answer's body lives here */
    struct call tc;             /* a minimal call so the body callback works */
    struct om_up_req treq = {0};
    char errbuf[CURL_ERROR_SIZE] = "";
    char status_s[16] = "";
    char realm_s[ORIGIN_HOST_MAX + 32] = "";
    long status = 0;
    CURLcode rc;

    *token_out = NULL;
    memset(&tr, 0, sizeof(tr));
    resp_reset_hop(&tr);
    memset(&tc, 0, sizeof(tc));

    if ((cu = curl_url()) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if (curl_url_set(cu, CURLUPART_URL, c->ch.realm, 0) != CURLUE_OK) {
        err = OM_ERR_UPSTREAM;
        snprintf(c->resp->error, sizeof(c->resp->error), "token realm is not a URL");
        goto done;
    }
    if ((err = origin_of(cu, &ro)) != OM_OK) {
        err = OM_ERR_DENIED;
        snprintf(c->resp->error, sizeof(c->resp->error), "token realm not allowed (not an http/https URL)");
        goto done;
    }
    origin_str(&ro, realm_s, sizeof(realm_s));
    if (strcmp(u->origin.scheme, "https") == 0 && strcmp(ro.scheme, "http") == 0) {
        /* Credentials and tokens must not travel in clear text because an
         * https upstream said so. */
        err = OM_ERR_DENIED;
        snprintf(c->resp->error, sizeof(c->resp->error), "token realm downgrades https to http");
        goto done;
    }
    if (c->ch.service[0] != '\0') {
        if (asprintf(&q, "service=%s", c->ch.service) < 0) {
            q = NULL;
            err = OM_ERR_NOMEM;
            goto done;
        }
        if (curl_url_set(cu, CURLUPART_QUERY, q, CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK) {
            err = OM_ERR_NOMEM;
            goto done;
        }
        free(q);
        q = NULL;
    }
    if (scope[0] != '\0') {
        if (asprintf(&q, "scope=%s", scope) < 0) {
            q = NULL;
            err = OM_ERR_NOMEM;
            goto done;
        }
        if (curl_url_set(cu, CURLUPART_QUERY, q, CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK) {
            err = OM_ERR_NOMEM;
            goto done;
        }
    }
    if (curl_url_get(cu, CURLUPART_URL, &url, 0) != CURLUE_OK) {
        err = OM_ERR_NOMEM;
        goto done;
    }

    if ((h = pool_get(u)) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    treq.method = "GET";
    treq.path = "";
    treq.cancel = c->req->cancel;
    tc.u = u;
    tc.req = &treq;
    tc.resp = &tr;
    tc.h = h;
    tc.tries = u->tries_max;     /* the token body is never a retry candidate */
    tc.max_body = TOKEN_BODY_MAX;
    tc.auth_tried = true;

    rc = common_setup(u, h, errbuf);
#define SET(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_TIMEOUT, TOKEN_TIMEOUT_S);
    SET(CURLOPT_HEADERFUNCTION, on_header_line);
    SET(CURLOPT_HEADERDATA, &tc);
    SET(CURLOPT_WRITEFUNCTION, on_body_bytes);
    SET(CURLOPT_WRITEDATA, &tc);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, &tc);
    SET(CURLOPT_NOPROGRESS, 0L);
    if (cfg->username != NULL && cfg->password != NULL) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERNAME, cfg->username);
        SET(CURLOPT_PASSWORD, cfg->password);
    }
#undef SET
    if (rc != CURLE_OK) {
        err = rc == CURLE_OUT_OF_MEMORY ? OM_ERR_NOMEM : OM_ERR_UPSTREAM;
        goto done;
    }
    rc = curl_easy_perform(h);
    if (tc.cancelled) {
        err = OM_ERR_TIMEOUT;
        goto done;
    }
    if (rc != CURLE_OK && !tc.stop_ok) {
        err = tc.cb_err != OM_OK ? tc.cb_err : OM_ERR_UPSTREAM;
        snprintf(c->resp->error, sizeof(c->resp->error), "token service: %.200s",
                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
        goto done;
    }
    status = tr.status;
    snprintf(status_s, sizeof(status_s), "%ld", status);
    if (status != 200) {
        err = status >= 400 && status < 500 ? OM_ERR_AUTH : OM_ERR_UPSTREAM;
        snprintf(c->resp->error, sizeof(c->resp->error), "token service answered %ld", status);
        goto done;
    }
    if ((err = om_token_parse(tr.body, tr.body_len, token_out, expires_s)) != OM_OK) {
        snprintf(c->resp->error, sizeof(c->resp->error), "token service answer unusable: %s",
                 err == OM_ERR_TOOBIG ? "too big" : "malformed");
        err = OM_ERR_UPSTREAM;
        goto done;
    }
done:
    if (err != OM_OK && err != OM_ERR_TIMEOUT)
        om_log_kv(OM_LOG_WARN, "upstream token request failed", "upstream", cfg->name,
                  "realm", realm_s[0] ? realm_s : "(invalid)", "status", status_s,
                  "error", c->resp->error, NULL);
    if (h != NULL)
        pool_put(u, h);
    free(tc.location);
    if (tr.body != NULL)
        explicit_bzero(tr.body, tr.body_len);    /* it held a token */
    free(tr.body);
    free(q);
    curl_free(url);
    curl_url_cleanup(cu);
    return err;
}

/* Answer the 401 whose challenge is in c->ch.  OM_OK: try again with new
 * credentials.  OM_ERR_AUTH: give the 401 to the caller.  Other errors end
 * the request. */
static int answer_challenge(struct call *c)
{
    int err = OM_OK;
    const char *scope;
    char *tok = NULL;           /* owned, secret */
    char *line = NULL;          /* owned, secret */
    long expires = 60;

    c->auth_tried = true;
    if (strcasecmp(c->ch.scheme, "Basic") == 0) {
        c->auth = AUTH_BASIC;
        goto done;
    }
    scope = c->ch.scope[0] != '\0' ? c->ch.scope : c->scope;
    /* If the token we sent was refused, forget it and ask for a fresh one;
     * another thread may have cached a newer one for the challenge's scope. */
    if (c->bearer != NULL) {
        token_cache_drop(c->u, scope, c->bearer);
        token_cache_drop(c->u, c->scope, c->bearer);
    }
    tok = token_cache_get(c->u, scope);
    if (tok != NULL && c->bearer != NULL && strcmp(tok, c->bearer) == 0) {
        free_secret(tok);
        tok = NULL;
    }
    if (tok == NULL) {
        if ((err = token_fetch(c, scope, &tok, &expires)) != OM_OK)
            goto done;
        token_cache_put(c->u, scope, tok, expires);
    }
    if (asprintf(&line, "Authorization: Bearer %s", tok) < 0) {
        line = NULL;
        err = OM_ERR_NOMEM;
        goto done;
    }
    free_secret(c->authz);
    free_secret(c->bearer);
    c->authz = line;
    c->bearer = tok;
    line = NULL;
    tok = NULL;
    c->auth = AUTH_BEARER;
done:
    free_secret(tok);
    free_secret(line);
    return err;
}

/* Resolve c->location against the current URL and move there. */
static int follow_redirect(struct call *c)
{
    int err = OM_OK;
    struct origin next;
    char from[ORIGIN_HOST_MAX + 32], to[ORIGIN_HOST_MAX + 32];

    origin_str(&c->cur, from, sizeof(from));
    if (c->hops >= MAX_REDIRECTS) {
        snprintf(c->resp->error, sizeof(c->resp->error), "more than %d redirects", MAX_REDIRECTS);
        err = OM_ERR_UPSTREAM;
        goto done;
    }
    /* CURLU resolves a relative Location against the URL it holds. */
    if (curl_url_set(c->cu, CURLUPART_URL, c->location, 0) != CURLUE_OK) {
        snprintf(c->resp->error, sizeof(c->resp->error), "redirect Location is not a URL");
        err = OM_ERR_UPSTREAM;
        goto done;
    }
    if ((err = origin_of(c->cu, &next)) != OM_OK) {
        snprintf(c->resp->error, sizeof(c->resp->error), "redirect to a disallowed URL");
        om_log_kv(OM_LOG_WARN, "upstream redirect refused", "upstream", c->u->cfg->name,
                  "from", from, "reason", "scheme not http/https", NULL);
        err = OM_ERR_DENIED;
        goto done;
    }
    origin_str(&next, to, sizeof(to));
    if (strcmp(c->cur.scheme, "https") == 0 && strcmp(next.scheme, "http") == 0) {
        snprintf(c->resp->error, sizeof(c->resp->error), "redirect downgrades https to http");
        om_log_kv(OM_LOG_WARN, "upstream redirect refused", "upstream", c->u->cfg->name,
                  "from", from, "to", to, "reason", "https to http downgrade", NULL);
        err = OM_ERR_DENIED;
        goto done;
    }
    c->cur = next;
    c->at_origin = origin_eq(&next, &c->u->origin);
    c->hops++;
    if (om_log_enabled(OM_LOG_DEBUG))
        om_log_kv(OM_LOG_DEBUG, "upstream redirect", "upstream", c->u->cfg->name, "from",
                  from, "to", to, "credentials", c->at_origin ? "kept" : "dropped", NULL);
done:
    return err;
}

/* One logical request into the health statistics.  A caller's own abort
 * (cancel, a callback's error) says nothing about the upstream. */
static void stats_record(struct call *c, int err, int64_t started_us)
{
    struct om_upstream *u = c->u;
    struct om_upstream_stats *s = &u->stats;
    bool ours = c->user_err || (err == OM_ERR_TIMEOUT && c->cancelled);
    bool failed = !ours && (err != OM_OK || c->resp->status >= 500);

    pthread_mutex_lock(&u->stats_mu);
    s->requests++;
    s->last_latency_us = (uint64_t)(mono_us() - started_us);
    if (c->resp->ratelimit_remaining >= 0)
        s->ratelimit_remaining = c->resp->ratelimit_remaining;
    if (!ours)
        s->healthy = c->reached && c->resp->status < 500;
    if (failed) {
        s->errors++;
        s->last_error_ms = wall_ms();
        if (c->resp->error[0] != '\0')
            copy_trunc(s->last_error, sizeof(s->last_error), c->resp->error);
        else
            snprintf(s->last_error, sizeof(s->last_error), "HTTP %ld", c->resp->status);
    } else if (!ours) {
        s->last_ok_ms = wall_ms();
    }
    pthread_mutex_unlock(&u->stats_mu);
}

/* The first URL: cfg->url + req->path, which must stay on the upstream's
 * own origin. */
static int call_start_url(struct call *c)
{
    int err = OM_OK;
    char *full = NULL;      /* owned */

    if (asprintf(&full, "%s%s", c->u->cfg->url, c->req->path) < 0) {
        full = NULL;
        err = OM_ERR_NOMEM;
        goto done;
    }
    if ((c->cu = curl_url()) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if (curl_url_set(c->cu, CURLUPART_URL, full, 0) != CURLUE_OK ||
        origin_of(c->cu, &c->cur) != OM_OK || !origin_eq(&c->cur, &c->u->origin)) {
        err = OM_ERR_INVALID;
        goto done;
    }
    c->at_origin = true;
done:
    free(full);
    return err;
}

/* One hop: perform it, then turn the outcome into "done" or "go on".
 * *again is set when the loop should run another hop. */
static int run_hop(struct call *c, bool *again)
{
    int err = OM_OK;
    struct curl_slist *hdrs = NULL;     /* owned */
    char *url = NULL;                   /* curl_free'd */
    char reason[64];
    CURLcode rc;
    uint64_t delay;

    *again = false;
    resp_reset_hop(c->resp);
    c->disp = D_NONE;
    c->cb_err = OM_OK;
    c->stop_ok = false;
    c->body_alloc = 0;
    c->errbuf[0] = '\0';
    if (curl_url_get(c->cu, CURLUPART_URL, &url, 0) != CURLUE_OK) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if ((err = hop_setup(c, url, &hdrs)) != OM_OK)
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
        if (err == OM_ERR_TOOBIG)
            snprintf(c->resp->error, sizeof(c->resp->error), "response over its size limit");
        goto done;
    }
    if (rc != CURLE_OK) {
        snprintf(c->resp->error, sizeof(c->resp->error), "%s",
                 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
        if (curl_retryable(rc) && c->tries < c->u->tries_max && c->resp->body_delivered == 0 &&
            !c->headers_delivered) {
            c->tries++;
            delay = retry_delay_ms(c, c->tries);
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
    if (c->disp == D_NONE && (err = headers_complete(c)) != OM_OK)
        goto done;              /* defensive: a response without a blank line */

    switch (c->disp) {
    case D_REDIRECT:
        if ((err = follow_redirect(c)) == OM_OK)
            *again = true;
        break;
    case D_AUTH:
        err = answer_challenge(c);
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
    case D_RETRY:
        c->tries++;
        delay = retry_delay_ms(c, c->tries);
        snprintf(reason, sizeof(reason), "HTTP %ld", c->resp->status);
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

int om_upstream_do(struct om_upstream *u, const struct om_up_req *req, struct om_up_resp *resp)
{
    int err = OM_OK;
    struct call c;
    int64_t started = mono_us();
    bool again = true;
    char *cached = NULL;        /* owned, secret */

    memset(resp, 0, sizeof(*resp));
    resp_reset_hop(resp);
    memset(&c, 0, sizeof(c));
    c.u = u;
    c.req = req;
    c.resp = resp;
    c.tries = 1;

    if (req->method == NULL || req->path == NULL || req->path[0] != '/' ||
        (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) ||
        !header_safe(req->path) || strchr(req->path, ' ') != NULL ||
        (req->accept != NULL && !header_safe(req->accept)) ||
        (req->scope_repo != NULL && (!header_safe(req->scope_repo) ||
                                     strlen(req->scope_repo) > OM_NAME_MAX))) {
        err = OM_ERR_INVALID;
        snprintf(resp->error, sizeof(resp->error), "invalid request");
        goto done;
    }
    c.max_body = req->max_body ? req->max_body : OM_MANIFEST_MAX_DEFAULT;
    if (req->scope_repo != NULL)
        snprintf(c.scope, sizeof(c.scope), "repository:%s:pull", req->scope_repo);
    if ((err = call_start_url(&c)) != OM_OK) {
        snprintf(resp->error, sizeof(resp->error), "request URL not on the upstream");
        goto done;
    }
    if ((c.h = pool_get(u)) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    /* A token cached for this scope goes out on the first try: saves the
     * 401 round trip on every request after the first. */
    if ((cached = token_cache_get(u, c.scope)) != NULL) {
        if (asprintf(&c.authz, "Authorization: Bearer %s", cached) < 0) {
            c.authz = NULL;
        } else {
            c.bearer = cached;
            cached = NULL;
            c.auth = AUTH_BEARER;
        }
    }
    while (again) {
        if (is_cancelled(req->cancel)) {
            c.cancelled = true;
            snprintf(resp->error, sizeof(resp->error), "cancelled");
            err = OM_ERR_TIMEOUT;
            break;
        }
        if ((err = run_hop(&c, &again)) != OM_OK)
            break;
    }
    if (err == OM_OK || err == OM_ERR_TIMEOUT || c.user_err)
        goto done;
    om_log_kv(err == OM_ERR_UPSTREAM || err == OM_ERR_DENIED ? OM_LOG_WARN : OM_LOG_DEBUG,
              "upstream request failed", "upstream", u->cfg->name, "method", req->method,
              "path", req->path, "error", resp->error[0] ? resp->error : "local error", NULL);
done:
    if (c.cu != NULL || c.h != NULL)
        stats_record(&c, err, started);
    if (c.h != NULL)
        pool_put(u, c.h);
    curl_url_cleanup(c.cu);
    free(c.location);
    free_secret(c.authz);
    free_secret(c.bearer);
    free_secret(cached);
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
}

/* ---- lifecycle ------------------------------------------------------------ */

int om_upstream_new(struct om_upstream **out, const struct om_config *cfg, size_t index)
{
    int err = OM_OK;
    struct om_upstream *u = NULL;   /* owned until handed to *out */
    CURLU *cu = NULL;               /* owned */
    CURLSHcode sc = CURLSHE_OK;

    *out = NULL;
    if (cfg == NULL || index >= cfg->n_upstreams || cfg->upstreams[index].url == NULL) {
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
    pthread_mutex_init(&u->tok_mu, NULL);
    pthread_mutex_init(&u->stats_mu, NULL);
    u->cfg = &cfg->upstreams[index];
    u->tries_max = cfg->retries_max > 0 ? cfg->retries_max : 1;
    u->backoff_ms = cfg->retries_backoff_ms;
    u->stats.ratelimit_remaining = -1;
    snprintf(u->user_agent, sizeof(u->user_agent), "ocimirror/%s", OM_VERSION);

    if ((cu = curl_url()) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if (curl_url_set(cu, CURLUPART_URL, u->cfg->url, 0) != CURLUE_OK ||
        origin_of(cu, &u->origin) != OM_OK) {
        err = OM_ERR_INVALID;
        om_log_kv(OM_LOG_ERROR, "upstream url is not an http(s) URL", "upstream",
                  u->cfg->name, NULL);
        goto done;
    }
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
    curl_url_cleanup(cu);
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
    for (size_t i = 0; i < u->n_toks; i++)
        token_entry_clear(&u->toks[i]);
    for (size_t i = 0; i < OM_ARRAY_LEN(u->share_mu); i++)
        pthread_mutex_destroy(&u->share_mu[i]);
    pthread_mutex_destroy(&u->pool_mu);
    pthread_mutex_destroy(&u->tok_mu);
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
