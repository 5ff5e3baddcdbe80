/* upstream.h — talk to one upstream registry over libcurl.
 *
 * One struct om_upstream per configured upstream, created at start and
 * shared by all threads.  It owns: a CURLSH (connections, DNS, TLS sessions
 * shared, so requests reuse connections), the bearer-token cache (per scope,
 * until expiry), and health statistics.
 *
 * om_upstream_do() performs one logical request, synchronously, in the
 * calling thread (fetch and job threads, never an HTTP server thread):
 *   - auth: on 401 with `WWW-Authenticate: Bearer realm=..,service=..,scope=..`
 *     it fetches a token from the realm (anonymous, or Basic with the
 *     configured credentials), caches it per scope until `expires_in`
 *     (60 s when absent) and retries once; `Basic` challenges get the
 *     configured credentials.  A 401 after that is returned as status 401.
 *   - redirects (301/302/303/307/308) are followed by hand, at most 5; the
 *     Authorization header is only sent to the upstream's own host (scheme,
 *     host, port equal); an https → http downgrade is refused (OM_ERR_DENIED).
 *   - retries: transport errors, 5xx and 429 are retried up to
 *     cfg->retries_max tries with exponential backoff from
 *     cfg->retries_backoff_ms and full jitter; `Retry-After` (seconds or
 *     HTTP date, capped at 60 s) replaces the backoff when given.  No retry
 *     once body bytes were handed to on_body: resuming is the caller's job
 *     (it calls again with range_from).
 *   - `ratelimit-remaining` (Docker Hub) is recorded per upstream.
 *   - several endpoints (cfg->urls: the official registry and mirrors of
 *     it): a request goes to the first that is not backing off; one that
 *     fails (transport error, 5xx, 429) is backed off (2 s doubling to
 *     5 min, then probed by the next request that comes) and the request
 *     moves on to the next endpoint at once, without a retry's sleep.
 *     Credentials go to every endpoint of the upstream (each is one of its
 *     origins) and its token realms, never elsewhere.
 *   - a credential pool (cfg->credentials): requests are spread over the
 *     accounts in turn; an account that got a 429, or whose
 *     ratelimit-remaining reached 0, is skipped until its window ends
 *     (Retry-After, else the w= of ratelimit-remaining, else 60 s; at most
 *     a day), and a 429 moves the request to the next account at once.
 *     With every account limited, the one free soonest is tried.  Tokens
 *     are cached per account.
 * Only hosts derived from cfg->urls, the token realms that upstream names
 * in its challenges, and redirect targets the upstream sends are
 * contacted.  Credentials and tokens never reach the log; usernames may.
 */
#ifndef OM_UPSTREAM_H
#define OM_UPSTREAM_H

#include <stdatomic.h>
#include "core/config.h"

struct om_upstream;

struct om_up_resp {
    long status;                    /* final HTTP status (after redirects/auth) */
    char content_type[256];
    char docker_digest[OM_DIGEST_MAX + 8];  /* Docker-Content-Digest, "" if absent */
    int64_t content_length;         /* -1 when unknown */
    char content_range[128];        /* raw Content-Range, "" if absent */
    char link[1024];                /* raw Link header (tags/list paging) */
    char www_authenticate[512];     /* last challenge, for diagnostics */
    long retry_after_s;             /* -1 when absent */
    long ratelimit_remaining;       /* -1 when absent */
    long ratelimit_window_s;        /* its w=, -1 when absent */
    char *body;                     /* buffered body when on_body == NULL; malloc'd */
    size_t body_len;
    uint64_t body_delivered;        /* bytes given to on_body (streaming) */
    char error[256];                /* transport error text, "" if none */
    bool auth_failed;               /* the error came from getting credentials (token
                                       service, challenge), not from the answer */
    bool headers_bad;               /* the error is a response header over a limit */
};

struct om_up_req {
    const char *method;             /* "GET" or "HEAD" */
    const char *path;               /* "/v2/<remote>/manifests/<ref>" plus query; built
                                       by the caller from validated parts */
    const char *accept;             /* Accept header value, or NULL */
    const char *scope_repo;         /* remote repository for the token scope, or
                                       NULL (for /v2/) */
    uint64_t range_from;            /* > 0 → "Range: bytes=<n>-" */
    size_t max_body;                /* buffered body limit → OM_ERR_TOOBIG */
    /* Called once, when the final response's status and headers are known
     * (not for redirects or a 401 that auth answers).  Return OM_OK to go
     * on; anything else aborts the transfer and is returned by
     * om_upstream_do.  May be NULL. */
    int (*on_headers)(void *ud, const struct om_up_resp *resp);
    /* Streaming body sink for 2xx answers; NULL = buffer up to max_body.
     * Non-2xx bodies are always buffered (up to 64 KiB) for diagnostics.
     * Return OM_OK to go on; anything else aborts and is returned. */
    int (*on_body)(void *ud, const void *buf, size_t len);
    /* Clarifications (added with the implementation):
     *  - on_headers is called at most once per om_upstream_do; a response
     *    that is retried, redirected or answered by auth never reaches it.
     *    Once it was called, transport errors are not retried either (the
     *    caller resumes with range_from), so a sink never sees two starts.
     *  - max_body == 0 means OM_MANIFEST_MAX_DEFAULT.
     *  - Non-2xx bodies over 64 KiB are cut at 64 KiB (not an error). */
    /* Called from libcurl's progress callback during a streamed transfer
     * (often while bytes flow, at least once a second while stalled), so
     * an on_body sink that batches work can flush it.  May be NULL. */
    void (*on_tick)(void *ud);
    void *ud;
    const atomic_bool *cancel;      /* when set, the transfer is aborted (OM_ERR_TIMEOUT
                                       is returned); may be NULL */
    uint64_t timeout_ms;            /* the whole call — every hop, retry and token
                                       fetch — within this budget, else
                                       OM_ERR_UPSTREAM ("no answer within ..");
                                       0 = none */
};

/* *out owned by the caller (om_upstream_free). `cfg` must outlive it. */
int om_upstream_new(struct om_upstream **out, const struct om_config *cfg, size_t index);
void om_upstream_free(struct om_upstream *u);
const struct om_upstream_cfg *om_upstream_cfg(const struct om_upstream *u);

/* Perform a request (see the file comment).  Returns OM_OK when an HTTP
 * answer was obtained — whatever its status — with *resp filled; otherwise
 * OM_ERR_UPSTREAM (unreachable/reset/timeout after retries; resp->error says
 * what), OM_ERR_DENIED, OM_ERR_TOOBIG, OM_ERR_TIMEOUT (cancelled) or what a
 * callback returned.  resp must be released with om_up_resp_clear. */
int om_upstream_do(struct om_upstream *u, const struct om_up_req *req, struct om_up_resp *resp);
void om_up_resp_clear(struct om_up_resp *resp);

/* Latency histogram buckets (upper bounds, µs; the last bucket is +Inf). */
#define OM_UP_LATENCY_BUCKETS 12
#define OM_UP_LATENCY_BOUNDS_US                                                              \
    {5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000}

struct om_upstream_stats {
    uint64_t requests, errors;
    int64_t last_ok_ms, last_error_ms;   /* 0 = never */
    char last_error[256];
    uint64_t last_latency_us;
    uint64_t latency_hist[OM_UP_LATENCY_BUCKETS]; /* every request's latency */
    uint64_t latency_sum_us;
    long ratelimit_remaining;            /* -1 unknown */
    bool healthy;                        /* last request reached the upstream */
};
void om_upstream_stats_get(struct om_upstream *u, struct om_upstream_stats *out);

/* Each endpoint (URL) of the upstream: its health.  url borrowed from the
 * config. */
struct om_upstream_url_stats {
    const char *url;
    uint64_t requests, errors;           /* tries that went to it; failed ones */
    int64_t last_ok_ms, last_error_ms;   /* 0 = never */
    char last_error[256];
    bool healthy;                        /* its last try was answered, < 500, not 429 */
    bool asked;                          /* it was tried at all */
    unsigned failures;                   /* in a row */
    int64_t backoff_until_ms;            /* skipped until then (Unix ms); 0 = in use */
};
/* Each account of the credential pool: its state, never its secret.
 * username borrowed from the config. */
struct om_upstream_account_stats {
    const char *username;
    uint64_t requests, rate_limited;     /* tries it was used for; 429s it got */
    long ratelimit_remaining;            /* last reported; -1 unknown */
    int64_t limited_until_ms;            /* skipped until then (Unix ms); 0 = in use */
    int64_t last_used_ms;                /* 0 = never */
};
/* Fill out[0..max) in config order; returns how many (endpoints: >= 1;
 * accounts: 0 without a pool or a username). */
size_t om_upstream_url_stats(struct om_upstream *u, struct om_upstream_url_stats *out, size_t max);
size_t om_upstream_account_stats(struct om_upstream *u, struct om_upstream_account_stats *out,
                                 size_t max);

/* ---- the pure part, exposed for unit tests and fuzzing ---- */

struct om_challenge {
    char scheme[16];        /* "Bearer" or "Basic" */
    char realm[1024];
    char service[256];
    char scope[512];
    char error[64];         /* error="insufficient_scope" etc. */
};
/* Parse one WWW-Authenticate header value (RFC 7235 auth-params, quoted
 * strings with backslash escapes).  OM_ERR_INVALID when malformed,
 * OM_ERR_TOOBIG when a value does not fit its field. */
int om_challenge_parse(struct om_challenge *out, const char *hdr, size_t len);

/* Parse a token service answer {"token"|"access_token", "expires_in"}.
 * token_out gets a malloc'd copy (caller frees); *expires_s defaults to 60. */
int om_token_parse(const char *json, size_t len, char **token_out, long *expires_s);

/* The first error code of an OCI error body ({"errors":[{"code":"NAME_UNKNOWN",
 * ...}]}) into code: upper case letters and '_' only, at most codesz - 1
 * bytes.  false (code "") when the body is not such a document.
 * Implemented in authparse.c. */
bool om_up_error_code(const char *body, size_t len, char *code, size_t codesz);

/* Parse Retry-After (delta seconds or an HTTP-date relative to now_s);
 * -1 when invalid. */
long om_retry_after_parse(const char *s, long now_s);

/* Parse Docker Hub's `ratelimit-remaining` ("100;w=21600" → 100); -1 when
 * invalid.  (Added with the implementation; implemented in authparse.c.) */
long om_ratelimit_remaining_parse(const char *s);
/* Its window in seconds ("100;w=21600" → 21600); -1 when the value is
 * invalid or names none.  Implemented in authparse.c. */
long om_ratelimit_window_parse(const char *s);

/* Content-Range of a 206 (RFC 9110 14.4): "bytes <first>-<last>/<total>",
 * total a number or "*" (*total_known false), "bytes" in any case, nothing
 * else around it; numbers of 1..18 digits, first <= last, last < total
 * when known.  false (outputs untouched) when v is NULL or anything else.
 * Implemented in authparse.c. */
bool om_up_content_range_parse(const char *v, uint64_t *first, uint64_t *last, uint64_t *total,
                               bool *total_known);

#endif
