/* upstream_int.h — private to the upstream client: shared by upstream.c
 * (the upstream object and its requests: lifecycle, the easy-handle pool,
 * the hop loop, retries, statistics), upstream_hop.c (one hop on the wire:
 * the handle's options and the libcurl callbacks that classify the response
 * and take its body) and upstream_auth.c (credentials: origins and the
 * redirect rule that keeps credentials at home, challenges, Basic, the
 * bearer-token cache with its single-flight fetch).  Nothing
 * else includes this but authparse.c (for two small parsers); the
 * module's contract is upstream.h.
 *
 * Names shared between the files carry the om_up_ prefix; everything
 * else stays static in its file.  If you add a per-hop field to struct
 * om_up_call, reset it at the top of run_hop() in upstream.c.
 */
#ifndef OM_UPSTREAM_INT_H
#define OM_UPSTREAM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "upstream/upstream.h"

#define OM_UP_MAX_REDIRECTS 5
#define OM_UP_ORIGIN_HOST_MAX 256
#define OM_UP_SCOPE_MAX (OM_NAME_MAX + 32)
#define OM_UP_TOKEN_CACHE_MAX 1024      /* tokens cached per upstream */
/* A token's cache key: the account (a number), realm (challenge field,
 * 1 KiB) + service (256) + scope (512) and three newlines. */
#define OM_UP_TOKEN_KEY_MAX (12 + 1024 + 256 + 512 + 4)
#define OM_UP_EASY_POOL_MAX 8           /* idle easy handles kept per upstream */
#define OM_UP_URL_BACKOFF_MIN_MS 2000   /* an endpoint's first back-off; doubles */
#define OM_UP_URL_BACKOFF_MAX_MS (5 * 60 * 1000)
#define OM_UP_LIMIT_DEFAULT_MS (60 * 1000)  /* a 429 that names no window */
#define OM_UP_LIMIT_MAX_MS (24LL * 3600 * 1000)
#define OM_UP_NO_ACCOUNT (-1)           /* a call without credentials */

/* scheme + host + port, the unit credentials are bound to. */
struct om_up_origin {
    char scheme[8];             /* "http" or "https" */
    char host[OM_UP_ORIGIN_HOST_MAX];
    long port;                  /* explicit or the scheme's default */
};

static inline bool om_up_origin_eq(const struct om_up_origin *a, const struct om_up_origin *b)
{
    return strcmp(a->scheme, b->scheme) == 0 && strcasecmp(a->host, b->host) == 0 &&
           a->port == b->port;
}

/* One endpoint of the upstream (upstream_pool.c). */
struct om_up_endpoint {
    const char *url;                    /* borrowed from the config */
    struct om_up_origin origin;
    struct om_upstream_url_stats st;    /* under the upstream's stats_mu */
    int64_t backoff_until_mono;         /* under stats_mu; 0 = in use */
};

/* One account of the credential pool (upstream_pool.c). */
struct om_up_account {
    const char *username;               /* borrowed from the config */
    const char *password;               /* borrowed; secret */
    struct om_upstream_account_stats st; /* under stats_mu */
    int64_t limited_until_mono;         /* under stats_mu; 0 = in use */
};

struct om_up_token_entry {
    char *scope;                /* owned: the key, realm\nservice\nscope */
    char *token;                /* owned; zeroed before free */
    int64_t expires_ms;         /* monotonic clock */
    uint64_t seq;               /* insertion order: the smallest is the oldest */
};

struct om_up_token_flight;      /* a token fetch in progress (upstream_auth.c) */

/* The bearer-token cache of one upstream; upstream_auth.c owns its logic. */
struct om_up_tokens {
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* broadcast when a flight lands (monotonic clock) */
    struct om_up_token_entry e[OM_UP_TOKEN_CACHE_MAX];
    size_t n;
    uint64_t seq;
    struct om_up_token_flight *flights;     /* in progress; owned by their leaders */
    char last_realm[1024];      /* the token service of the last token fetched: */
    char last_service[256];     /* where a first request's cached token comes from */
    bool ready;                 /* mu and cv initialised (om_up_tokens_init) */
};

struct om_upstream {
    const struct om_upstream_cfg *cfg;  /* borrowed from the om_config */
    unsigned tries_max;                 /* >= 1 */
    uint64_t backoff_ms;
    struct om_up_endpoint ep[OM_MAX_UPSTREAM_URLS];     /* >= 1, config order */
    size_t n_ep;
    struct om_up_account acct[OM_MAX_CREDENTIALS];      /* the pool; may be empty */
    size_t n_acct;
    unsigned next_acct;                 /* round robin; under stats_mu */
    char user_agent[64];

    CURLSH *share;                      /* owned */
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];

    pthread_mutex_t pool_mu;
    CURL *pool[OM_UP_EASY_POOL_MAX];    /* owned idle handles */
    size_t n_pool;

    struct om_up_tokens tok;

    pthread_mutex_t stats_mu;
    struct om_upstream_stats stats;
};

enum om_up_disp { OM_UP_D_NONE, OM_UP_D_FINAL, OM_UP_D_REDIRECT, OM_UP_D_AUTH, OM_UP_D_RETRY };
enum om_up_auth_mode { OM_UP_AUTH_NONE, OM_UP_AUTH_BEARER, OM_UP_AUTH_BASIC };

/* One logical request (om_upstream_do), or the small one a token fetch
 * makes: the header and body callbacks of upstream_hop.c work on either. */
struct om_up_call {
    struct om_upstream *u;
    const struct om_up_req *req;
    struct om_up_resp *resp;
    CURL *h;                    /* from the pool, returned at the end */
    CURLU *cu;                  /* the current URL; owned */
    struct om_up_origin cur;    /* origin of the current URL */
    const struct om_up_origin *home;    /* where credentials may go: the
                                   endpoint's origin (and with home_any every
                                   endpoint's), or for a token fetch the
                                   realm's; borrowed */
    bool home_any;              /* a request: any endpoint's origin is home */
    bool at_origin;             /* cur is home */
    size_t ep;                  /* the endpoint (u->ep[]) this call is on */
    int acct;                   /* the account (u->acct[]), or OM_UP_NO_ACCOUNT */
    uint32_t ep_tried, acct_tried;  /* bit i: endpoint/account i was used */
    int64_t deadline_ms;        /* monotonic; 0 = none (token fetches have one) */
    size_t max_body;

    unsigned tries;             /* tries started, the current one included */
    unsigned hops;              /* redirects followed */
    bool auth_tried;            /* one auth round per logical request */
    bool headers_delivered;     /* on_headers was called */
    bool user_err;              /* the error came from on_headers/on_body */
    bool reached;               /* some HTTP answer arrived */
    enum om_up_auth_mode auth;
    char *bearer;               /* token sent at home; owned, secret */
    char *authz;                /* "Authorization: Bearer ..."; owned, secret */
    char scope[OM_UP_SCOPE_MAX];    /* default scope for scope_repo ("" for none) */
    struct om_challenge ch;     /* the challenge chosen at header time */
    bool ch_ok;

    /* per hop (reset at the top of run_hop) */
    enum om_up_disp disp;
    int cb_err;                 /* error raised inside a callback */
    bool stop_ok;               /* we stopped reading a diagnostic body */
    bool cancelled;
    char *location;             /* Location of a redirect; owned */
    size_t body_alloc;
    char errbuf[CURL_ERROR_SIZE];
};

/* ---- small helpers both files use (static inline: no shared symbols) ---- */

static inline int64_t om_up_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t om_up_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t om_up_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Secrets are wiped before their memory goes back to malloc.  NULL is fine. */
static inline void om_up_free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Copy a header value into a fixed field; truncation is safe (always NUL
 * terminated) and callers validate what they parse out of it. */
static inline void om_up_copy_trunc(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static inline bool om_up_is_cancelled(const atomic_bool *cancel)
{
    return cancel != NULL && atomic_load(cancel);
}

/* ---- upstream_hop.c: one hop on the wire ---- */

/* The value of header `name` (index-th) of the current response on h, or
 * NULL; points into libcurl's storage, valid until the next call on h. */
const char *om_up_resp_header(CURL *h, const char *name, size_t index);
size_t om_up_resp_header_count(CURL *h, const char *name);
/* Reset the per-response fields of r before a hop (frees the body). */
void om_up_resp_reset_hop(struct om_up_resp *r);
/* Classify the current response once its headers are complete (c->disp);
 * a FINAL one goes to on_headers before any body byte.  OM_ERR_TOOBIG when
 * a buffered 2xx announces more than c->max_body, or on_headers' error. */
int om_up_headers_complete(struct om_up_call *c);
/* Set up c->h for one hop to url (the current URL), its callbacks working
 * on c.  *hdrs gets the header list, owned by the caller
 * (curl_slist_free_all after the transfer). */
int om_up_hop_setup(struct om_up_call *c, const char *url, struct curl_slist **hdrs);

/* ---- upstream.c: the pool and the hop loop ---- */

/* An easy handle owned by the caller until om_up_pool_put (which takes it
 * back, or frees it); NULL on OOM. */
CURL *om_up_pool_get(struct om_upstream *u);
void om_up_pool_put(struct om_upstream *u, CURL *h);
/* Run hops (perform; then follow a redirect, answer a challenge or retry)
 * until c has its final answer or an error.  c->cu, c->cur, c->home,
 * c->at_origin and c->h must be set up. */
int om_up_call_run(struct om_up_call *c);

/* ---- upstream_pool.c: endpoints and accounts ---- */

/* Endpoints from cfg->urls (or cfg->url), accounts from cfg->credentials
 * (or username/password).  OM_ERR_INVALID when a URL is unusable. */
int om_up_pool_init(struct om_upstream *u);
/* Put a new call on the endpoint and account to use now (c->ep, c->acct,
 * their tried bits, their request counts). */
void om_up_pool_pick(struct om_up_call *c);
/* Is origin o where c's credentials may go? */
bool om_up_is_home(const struct om_up_call *c, const struct om_up_origin *o);
/* The hop just answered at c's endpoint (status and headers in c->resp):
 * the endpoint's health and the account's ratelimit-remaining. */
void om_up_pool_answered(struct om_up_call *c);
/* Would a failure of this hop (status 0 = a transport error; 5xx; 429)
 * move c to another endpoint or account? */
bool om_up_pool_can_switch(const struct om_up_call *c, long status);
/* Record the failure of this hop at c's endpoint (a transport error:
 * status 0; a 5xx; a 429) and, when may_switch and another endpoint or
 * account is left for this call, move c there (*switched; the next hop
 * starts over on it, credentials reset).  Errors: OM_ERR_NOMEM/INVALID
 * building the URL. */
int om_up_pool_failed(struct om_up_call *c, long status, bool may_switch, bool *switched);

/* ---- authparse.c: small pure parts that are not in upstream.h (unit tested) ---- */

/* Content-Length as sent, or -1 when absent (NULL) or not a plain number. */
int64_t om_up_content_length_parse(const char *v);
/* A string that goes into a request header must not be able to end it. */
bool om_up_header_safe(const char *s);
/* Transport errors worth another try: the network, not our setup or TLS
 * verification, which would fail the same way again. */
bool om_up_curl_retryable(CURLcode rc);
/* The wait before try number `next` (2, 3, ...): Retry-After (capped at
 * 60 s) when a 429/503 gave one (retry_after_s >= 0), else full jitter
 * (rnd % (window + 1)) over base_ms doubled per earlier retry, capped at
 * 60 s. */
uint64_t om_up_backoff_ms(uint64_t base_ms, long status, long retry_after_s, unsigned next,
                          uint64_t rnd);

/* ---- upstream_auth.c: origins and credentials ---- */

/* Fill o from the URL in cu.  OM_ERR_DENIED when the scheme is not
 * http/https, OM_ERR_INVALID when there is no usable host. */
int om_up_origin_of(CURLU *cu, struct om_up_origin *o);
/* The first URL of a request on its endpoint: ep url + req->path, which
 * must stay on that endpoint's origin.  Sets c->cu, c->cur, c->home,
 * c->home_any, c->at_origin (an earlier c->cu is freed). */
int om_up_call_start_url(struct om_up_call *c);
/* Forget the credentials of c (a switch of endpoint or account): the next
 * hop starts with the cached token of c->acct, if any, and may answer a
 * challenge again. */
void om_up_auth_reset(struct om_up_call *c);
/* Resolve c->location against the current URL and move there, refusing
 * other schemes and https → http downgrades (OM_ERR_DENIED); credentials
 * stay on only while the target's origin equals c->home. */
int om_up_follow_redirect(struct om_up_call *c);

/* t zeroed (calloc) before init; OM_ERR_NOMEM if its mutex or condition
 * variable cannot be made.  destroy is a no-op unless init succeeded, and
 * runs only after every caller is gone. */
int om_up_tokens_init(struct om_up_tokens *t);
void om_up_tokens_destroy(struct om_up_tokens *t);
/* Attach a token cached for c->scope to c (the first try skips the 401). */
void om_up_auth_use_cached(struct om_up_call *c);
/* From a 401's WWW-Authenticate headers pick the challenge to answer (the
 * first Bearer with a realm, else the first Basic) into c->ch/c->ch_ok, and
 * keep the raw value in c->resp->www_authenticate. */
void om_up_auth_choose_challenge(struct om_up_call *c);
/* Whether a 401 can be answered by one auth round. */
bool om_up_auth_possible(const struct om_up_call *c);
/* Answer the 401 whose challenge is in c->ch.  OM_OK: try again with new
 * credentials.  OM_ERR_AUTH: give the 401 to the caller.  Other errors end
 * the request. */
int om_up_auth_answer(struct om_up_call *c);
/* Credentials for the hop about to run, only when it is at c->home: Basic
 * options on c->h, or the Authorization line appended to *l (the caller
 * keeps owning the list).  OM_ERR_NOMEM on failure. */
int om_up_auth_hop_setup(struct om_up_call *c, struct curl_slist **l);

#endif
