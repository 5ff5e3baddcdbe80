/* upstream_auth.c — the credentials side of the upstream client (see
 * upstream.h for the contract, upstream.c for the transfers): which origin
 * may receive what, which challenge a 401 gets answered with, Basic
 * credentials, and the bearer-token cache with its single-flight fetch.
 *
 * Where credentials may go.  An origin is scheme + host + port.  Every call
 * has a "home": for a request, the origins of the upstream's endpoints
 * (each URL of cfg->urls is one of its origins: the official registry and
 * its mirrors); for a token fetch, the realm's origin only.  Credentials
 * (Basic, or the bearer token) ride on a hop only while the hop's origin is
 * home (om_up_is_home); a redirect elsewhere drops them, a
 * redirect to a scheme other than http/https, or from https to http, ends
 * the call with OM_ERR_DENIED.  om_up_follow_redirect() is the one place that decides, for
 * requests and token fetches alike.
 *
 * Which credentials: those of the call's account (c->acct, chosen from
 * the upstream's pool by upstream_pool.c; none without a pool):
 *   - a 401 with `Bearer realm=..` (preferred) → a token for the
 *     challenge's scope (or the request's), from the cache or the realm;
 *   - a 401 with `Basic` → the account's username/password, once;
 *   - the realm gets the account's username/password as Basic (anonymous
 *     without one) — never the registry's token, and the registry never
 *     gets the password once it speaks Bearer.
 *
 * The token cache: keyed by account + realm URL + service + scope (a token
 * from one token service is never offered for another's challenge,
 * whatever host it runs on, and one account's token never rides on
 * another's request); at most OM_UP_TOKEN_CACHE_MAX keys per upstream,
 * expired then oldest evicted first, entries dropped a few seconds before
 * they expire.  Single flight: when several threads miss the cache for the
 * same scope at once, the first becomes the leader of a "flight" and fetches;
 * the others wait on the cache's condition variable (bounded by
 * TOKEN_WAIT_MS, and by their cancel flag) and then take the leader's token
 * from the cache, or its error.  The leader's fetch has its own budget
 * (TOKEN_TIMEOUT_S over all its hops), so waiters are never left hanging.
 *
 * Lock order: only t->mu, never held across I/O.  Flight lifetime: a flight
 * is in t->flights while its fetch runs; the leader unlinks it when done and
 * frees it if nobody waits; otherwise the last waiter to leave frees it.
 *
 * Secrets: tokens and passwords are zeroed before their memory is freed and
 * never logged; logs name origins only (scheme://host:port).
 */
#include "upstream/upstream_int.h"

#include <errno.h>
#include <stdio.h>
#include <strings.h>

#include "core/log.h"

#define TOKEN_BODY_MAX (64u * 1024)     /* a token service answer */
#define TOKEN_MARGIN_MS 5000            /* drop a token this long before expiry */
#define TOKEN_TIMEOUT_S 30L             /* a whole token fetch, redirects included */
/* A waiter gives up on a leader this long after it started waiting: the
 * leader's own fetch is bounded by TOKEN_TIMEOUT_S, so this only trips on
 * a bug, and must then not hang a fetch thread forever. */
#define TOKEN_WAIT_MS (TOKEN_TIMEOUT_S * 1000 + 5000)
#define WAIT_SLICE_MS 100               /* waiters check their cancel flag this often */

struct om_up_token_flight {
    char *scope;                /* owned */
    bool done;
    bool cancelled;             /* the leader's own caller cancelled it */
    int err;                    /* the leader's result, once done */
    char error[256];            /* the leader's message (no secrets in it) */
    unsigned waiters;
    struct om_up_token_flight *next;
};

/* ---- origins (CURLU only) ---------------------------------------------- */

int om_up_origin_of(CURLU *cu, struct om_up_origin *o)
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

/* "https://host:port" for logs: never a path or query (pre-signed URLs). */
static void origin_str(const struct om_up_origin *o, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s://%s:%ld", o->scheme, o->host, o->port);
}

int om_up_call_start_url(struct om_up_call *c)
{
    int err = OM_OK;
    char *full = NULL;      /* owned */
    const struct om_up_endpoint *e = &c->u->ep[c->ep];

    curl_url_cleanup(c->cu);
    c->cu = NULL;
    if (asprintf(&full, "%s%s", e->url, c->req->path) < 0) {
        full = NULL;
        err = OM_ERR_NOMEM;
        goto done;
    }
    if ((c->cu = curl_url()) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if (curl_url_set(c->cu, CURLUPART_URL, full, 0) != CURLUE_OK ||
        om_up_origin_of(c->cu, &c->cur) != OM_OK || !om_up_origin_eq(&c->cur, &e->origin)) {
        err = OM_ERR_INVALID;
        goto done;
    }
    c->home = &e->origin;
    c->home_any = true;
    c->at_origin = true;
done:
    free(full);
    return err;
}

int om_up_follow_redirect(struct om_up_call *c)
{
    int err = OM_OK;
    struct om_up_origin next;
    char from[OM_UP_ORIGIN_HOST_MAX + 32], to[OM_UP_ORIGIN_HOST_MAX + 32];

    origin_str(&c->cur, from, sizeof(from));
    if (c->hops >= OM_UP_MAX_REDIRECTS) {
        snprintf(c->resp->error, sizeof(c->resp->error), "more than %d redirects", OM_UP_MAX_REDIRECTS);
        err = OM_ERR_UPSTREAM;
        goto done;
    }
    /* CURLU resolves a relative Location against the URL it holds. */
    if (curl_url_set(c->cu, CURLUPART_URL, c->location, 0) != CURLUE_OK) {
        snprintf(c->resp->error, sizeof(c->resp->error), "redirect Location is not a URL");
        err = OM_ERR_UPSTREAM;
        goto done;
    }
    if ((err = om_up_origin_of(c->cu, &next)) != OM_OK) {
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
    c->at_origin = om_up_is_home(c, &next);
    c->hops++;
    if (om_log_enabled(OM_LOG_DEBUG))
        om_log_kv(OM_LOG_DEBUG, "upstream redirect", "upstream", c->u->cfg->name, "from",
                  from, "to", to, "credentials", c->at_origin ? "kept" : "dropped", NULL);
done:
    return err;
}

/* ---- challenges and per-hop credentials -------------------------------- */

void om_up_auth_choose_challenge(struct om_up_call *c)
{
    size_t n = om_up_resp_header_count(c->h, "WWW-Authenticate");
    bool have_basic = false;
    struct om_challenge tmp;

    c->ch_ok = false;
    for (size_t i = 0; i < n; i++) {
        const char *v = om_up_resp_header(c->h, "WWW-Authenticate", i);
        if (v == NULL)
            continue;
        if (i == 0 || c->resp->www_authenticate[0] == '\0')
            om_up_copy_trunc(c->resp->www_authenticate, sizeof(c->resp->www_authenticate), v);
        if (om_challenge_parse(&tmp, v, strlen(v)) != OM_OK)
            continue;
        if (strcasecmp(tmp.scheme, "Bearer") == 0 && tmp.realm[0] != '\0') {
            c->ch = tmp;
            c->ch_ok = true;
            om_up_copy_trunc(c->resp->www_authenticate, sizeof(c->resp->www_authenticate), v);
            break;
        }
        if (strcasecmp(tmp.scheme, "Basic") == 0 && !have_basic) {
            c->ch = tmp;
            c->ch_ok = true;
            have_basic = true;
        }
    }
}

bool om_up_auth_possible(const struct om_up_call *c)
{
    if (c->auth_tried || !c->at_origin || !c->ch_ok)
        return false;
    if (strcasecmp(c->ch.scheme, "Bearer") == 0)
        return true;
    return strcasecmp(c->ch.scheme, "Basic") == 0 && c->acct != OM_UP_NO_ACCOUNT &&
           c->auth != OM_UP_AUTH_BASIC;
}

int om_up_auth_hop_setup(struct om_up_call *c, struct curl_slist **l)
{
    int err = OM_OK;
    struct curl_slist *t;
    CURLcode rc = CURLE_OK;

    if (!c->at_origin)
        goto done;              /* another host: no credentials at all */
    if (c->auth == OM_UP_AUTH_BASIC && c->acct != OM_UP_NO_ACCOUNT) {
        /* libcurl encodes Basic; with FOLLOWLOCATION off it goes only to
         * this URL, which is at home. */
        const struct om_up_account *a = &c->u->acct[c->acct];
        rc = curl_easy_setopt(c->h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(c->h, CURLOPT_USERNAME, a->username);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(c->h, CURLOPT_PASSWORD, a->password);
        if (rc != CURLE_OK)
            err = OM_ERR_NOMEM;
    } else if (c->auth == OM_UP_AUTH_BEARER && c->authz != NULL) {
        if ((t = curl_slist_append(*l, c->authz)) == NULL)
            err = OM_ERR_NOMEM;
        else
            *l = t;
    }
done:
    return err;
}

/* ---- the token cache (all under t->mu) ---------------------------------- */

int om_up_tokens_init(struct om_up_tokens *t)
{
    int err = OM_OK;
    pthread_condattr_t ca;
    bool ca_ok = false, mu_ok = false;

    if (pthread_condattr_init(&ca) != 0) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    ca_ok = true;
    /* Waits are bounded in monotonic time: a clock step must not stretch them. */
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_mutex_init(&t->mu, NULL) != 0) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    mu_ok = true;
    if (pthread_cond_init(&t->cv, &ca) != 0) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    t->ready = true;
done:
    if (err != OM_OK && mu_ok)
        pthread_mutex_destroy(&t->mu);
    if (ca_ok)
        pthread_condattr_destroy(&ca);
    return err;
}

static void token_entry_clear(struct om_up_token_entry *e)
{
    free(e->scope);
    om_up_free_secret(e->token);
    memset(e, 0, sizeof(*e));
}

/* Only after every caller is gone: no flight can be in progress. */
void om_up_tokens_destroy(struct om_up_tokens *t)
{
    if (!t->ready)
        return;
    for (size_t i = 0; i < t->n; i++)
        token_entry_clear(&t->e[i]);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    t->ready = false;
}

/* A malloc'd copy of the valid token cached for scope unless it equals
 * `refused` (caller frees with om_up_free_secret); NULL if none (or OOM). */
static char *cache_copy(struct om_up_tokens *t, const char *scope, const char *refused)
{
    char *tok = NULL;
    int64_t now = om_up_mono_ms();
    for (size_t i = 0; i < t->n; i++) {
        const struct om_up_token_entry *e = &t->e[i];
        if (strcmp(e->scope, scope) == 0) {
            if (e->expires_ms > now && (refused == NULL || strcmp(e->token, refused) != 0))
                tok = strdup(e->token);
            break;
        }
    }
    return tok;
}

static void cache_remove_at(struct om_up_tokens *t, size_t i)
{
    token_entry_clear(&t->e[i]);
    t->e[i] = t->e[t->n - 1];
    memset(&t->e[t->n - 1], 0, sizeof(t->e[0]));
    t->n--;
}

/* Forget scope's token if it is still `token` (the upstream refused it). */
static void cache_drop(struct om_up_tokens *t, const char *scope, const char *token)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->e[i].scope, scope) == 0) {
            if (strcmp(t->e[i].token, token) == 0)
                cache_remove_at(t, i);
            break;
        }
    }
}

/* Store copies of scope and token; on OOM the token is simply not cached. */
static void cache_put(struct om_up_tokens *t, const char *scope, const char *token,
                      long expires_s)
{
    int64_t now = om_up_mono_ms();
    int64_t life = (int64_t)expires_s * 1000;
    int64_t margin = life / 2 < TOKEN_MARGIN_MS ? life / 2 : TOKEN_MARGIN_MS;
    struct om_up_token_entry e = {0};
    size_t i;

    e.scope = strdup(scope);
    e.token = strdup(token);
    e.expires_ms = now + life - margin;
    if (e.scope == NULL || e.token == NULL) {
        token_entry_clear(&e);
        return;
    }
    e.seq = ++t->seq;
    for (i = 0; i < t->n; i++) {
        if (strcmp(t->e[i].scope, scope) == 0) {
            token_entry_clear(&t->e[i]);
            t->e[i] = e;
            return;
        }
    }
    if (t->n == OM_UP_TOKEN_CACHE_MAX) {
        /* Expired entries go first; if none, the oldest. */
        for (i = t->n; i-- > 0;) {
            if (t->e[i].expires_ms <= now)
                cache_remove_at(t, i);
        }
        if (t->n == OM_UP_TOKEN_CACHE_MAX) {
            size_t oldest = 0;
            for (i = 1; i < t->n; i++)
                if (t->e[i].seq < t->e[oldest].seq)
                    oldest = i;
            cache_remove_at(t, oldest);
        }
    }
    t->e[t->n++] = e;
}

/* The cache key of a token: "<account>\n<realm>\n<service>\n<scope>"
 * (the account's index in the pool, or "-" without one; none of the
 * others can hold a newline: the challenge parser refuses control bytes).
 * false when it does not fit. */
static bool token_key(char *out, size_t outsz, int acct, const char *realm, const char *service,
                      const char *scope)
{
    int n = acct == OM_UP_NO_ACCOUNT
                ? snprintf(out, outsz, "-\n%s\n%s\n%s", realm, service, scope)
                : snprintf(out, outsz, "%d\n%s\n%s\n%s", acct, realm, service, scope);
    return n >= 0 && (size_t)n < outsz;
}

void om_up_auth_use_cached(struct om_up_call *c)
{
    struct om_up_tokens *t = &c->u->tok;
    char *cached = NULL;        /* owned, secret */
    char key[OM_UP_TOKEN_KEY_MAX];

    /* Before any challenge, the token service is the one the upstream
     * named last. */
    pthread_mutex_lock(&t->mu);
    if (t->last_realm[0] != '\0' &&
        token_key(key, sizeof(key), c->acct, t->last_realm, t->last_service, c->scope))
        cached = cache_copy(t, key, NULL);
    pthread_mutex_unlock(&t->mu);
    if (cached == NULL)
        return;
    if (asprintf(&c->authz, "Authorization: Bearer %s", cached) < 0) {
        c->authz = NULL;
        om_up_free_secret(cached);
        return;
    }
    c->bearer = cached;
    c->auth = OM_UP_AUTH_BEARER;
}

/* ---- fetching a token ---------------------------------------------------- */

/* Append "key=value" (URL-encoded) to the query of cu. */
static int query_add(CURLU *cu, const char *key, const char *value)
{
    int err = OM_OK;
    char *q = NULL;             /* owned */
    if (asprintf(&q, "%s=%s", key, value) < 0) {
        q = NULL;
        err = OM_ERR_NOMEM;
    } else if (curl_url_set(cu, CURLUPART_QUERY, q, CURLU_APPENDQUERY | CURLU_URLENCODE) !=
               CURLUE_OK) {
        err = OM_ERR_NOMEM;
    }
    free(q);
    return err;
}

/* GET the realm of c->ch for a token for scope, following its redirects by
 * the same rules as any request (credentials only at the realm's origin).
 * OM_OK with *token_out (owned by the caller, om_up_free_secret) and
 * *expires_s; OM_ERR_AUTH when the token service refused (4xx);
 * OM_ERR_DENIED for a realm or redirect we must not follow;
 * OM_ERR_UPSTREAM/TIMEOUT when it could not be reached.  c->resp->error
 * says what went wrong. */
static int token_fetch(struct om_up_call *c, const char *scope, char **token_out, long *expires_s)
{
    int err = OM_OK;
    struct om_upstream *u = c->u;
    const struct om_upstream_cfg *cfg = u->cfg;
    const struct om_up_origin *ep = &u->ep[c->ep].origin;
    struct om_up_origin ro;     /* the realm's origin: home of this fetch */
    struct om_up_resp tr;       /* the token answer; its body is a secret */
    struct om_up_call tc;       /* the fetch runs through the ordinary hop loop */
    struct om_up_req treq = {0};
    char status_s[16] = "";
    char realm_s[OM_UP_ORIGIN_HOST_MAX + 32] = "";

    *token_out = NULL;
    memset(&tr, 0, sizeof(tr));
    memset(&tc, 0, sizeof(tc));
    treq.method = "GET";
    treq.path = "";
    treq.cancel = c->req->cancel;
    tc.u = u;
    tc.req = &treq;
    tc.resp = &tr;
    if ((tc.cu = curl_url()) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if (curl_url_set(tc.cu, CURLUPART_URL, c->ch.realm, 0) != CURLUE_OK) {
        err = OM_ERR_UPSTREAM;
        snprintf(c->resp->error, sizeof(c->resp->error), "token realm is not a URL");
        goto done;
    }
    if (om_up_origin_of(tc.cu, &ro) != OM_OK) {
        err = OM_ERR_DENIED;
        snprintf(c->resp->error, sizeof(c->resp->error), "token realm not allowed (not an http/https URL)");
        goto done;
    }
    origin_str(&ro, realm_s, sizeof(realm_s));
    if (strcmp(ep->scheme, "https") == 0 && strcmp(ro.scheme, "http") == 0) {
        /* Credentials and tokens must not travel in clear text because an
         * https upstream said so. */
        err = OM_ERR_DENIED;
        snprintf(c->resp->error, sizeof(c->resp->error), "token realm downgrades https to http");
        goto done;
    }
    if ((c->ch.service[0] != '\0' && (err = query_add(tc.cu, "service", c->ch.service)) != OM_OK) ||
        (scope[0] != '\0' && (err = query_add(tc.cu, "scope", scope)) != OM_OK))
        goto done;
    if ((tc.h = om_up_pool_get(u)) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    tc.cur = ro;
    tc.home = &ro;
    tc.at_origin = true;
    tc.tries = u->tries_max;        /* a token request is never retried */
    tc.max_body = TOKEN_BODY_MAX;
    tc.auth_tried = true;           /* a 401 from the realm is its answer */
    tc.ep = c->ep;
    tc.acct = c->acct;              /* the realm gets this account's Basic */
    tc.auth = c->acct != OM_UP_NO_ACCOUNT ? OM_UP_AUTH_BASIC : OM_UP_AUTH_NONE;
    tc.deadline_ms = om_up_mono_ms() + TOKEN_TIMEOUT_S * 1000;
    if (c->deadline_ms != 0 && c->deadline_ms < tc.deadline_ms)
        tc.deadline_ms = c->deadline_ms; /* the request's own budget is shorter */

    err = om_up_call_run(&tc);
    if (err == OM_ERR_TIMEOUT && tc.cancelled) {
        c->cancelled = true;
        snprintf(c->resp->error, sizeof(c->resp->error), "cancelled");
        goto done;
    }
    if (err != OM_OK) {
        snprintf(c->resp->error, sizeof(c->resp->error), "token service: %.200s",
                 tr.error[0] ? tr.error : om_strerror(err));
        if (err == OM_ERR_TIMEOUT)
            err = OM_ERR_UPSTREAM;  /* our budget, not a cancel */
        goto done;
    }
    snprintf(status_s, sizeof(status_s), "%ld", tr.status);
    if (tr.status != 200) {
        err = tr.status >= 400 && tr.status < 500 ? OM_ERR_AUTH : OM_ERR_UPSTREAM;
        snprintf(c->resp->error, sizeof(c->resp->error), "token service answered %ld", tr.status);
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
    if (tc.h != NULL)
        om_up_pool_put(u, tc.h);
    curl_url_cleanup(tc.cu);
    free(tc.location);
    if (tr.body != NULL)
        explicit_bzero(tr.body, tr.body_len);    /* it held a token */
    free(tr.body);
    return err;
}

/* ---- single flight -------------------------------------------------------- */

static struct om_up_token_flight *flight_find(struct om_up_tokens *t, const char *scope)
{
    struct om_up_token_flight *f = t->flights;
    while (f != NULL && strcmp(f->scope, scope) != 0)
        f = f->next;
    return f;
}

static void flight_free(struct om_up_token_flight *f)
{
    if (f != NULL) {
        free(f->scope);
        free(f);
    }
}

/* Wait (t->mu held) for the flight f of another thread to land, bounded by
 * TOKEN_WAIT_MS and c's cancel flag.  Returns the leader's result, or
 * OM_ERR_TIMEOUT (cancelled) / OM_ERR_UPSTREAM (gave up waiting).  f may be
 * freed here: the caller must not touch it afterwards.  OM_OK also when the
 * leader was cancelled: the caller finds no token and fetches one. */
static int flight_wait(struct om_up_tokens *t, struct om_up_token_flight *f, struct om_up_call *c)
{
    int err = OM_OK;
    int64_t deadline = om_up_mono_ms() + TOKEN_WAIT_MS;

    if (c->deadline_ms != 0 && c->deadline_ms < deadline)
        deadline = c->deadline_ms;
    f->waiters++;
    while (!f->done) {
        int64_t now = om_up_mono_ms();
        int64_t until = now + WAIT_SLICE_MS < deadline ? now + WAIT_SLICE_MS : deadline;
        struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000L};
        if (om_up_is_cancelled(c->req->cancel)) {
            c->cancelled = true;
            snprintf(c->resp->error, sizeof(c->resp->error), "cancelled");
            err = OM_ERR_TIMEOUT;
            break;
        }
        if (now >= deadline) {
            snprintf(c->resp->error, sizeof(c->resp->error),
                     "timed out waiting for a token another request is fetching");
            err = OM_ERR_UPSTREAM;
            break;
        }
        pthread_cond_timedwait(&t->cv, &t->mu, &ts);
    }
    /* A leader cancelled by its own caller says nothing about the token:
     * we then come back without one and fetch it ourselves. */
    if (f->done && err == OM_OK && f->err != OM_OK && !f->cancelled) {
        err = f->err;
        om_up_copy_trunc(c->resp->error, sizeof(c->resp->error), f->error);
    }
    f->waiters--;
    if (f->done && f->waiters == 0)
        flight_free(f);         /* unlinked by its leader already */
    return err;
}

/* A token for scope (cached and single-flighted under key) that is not
 * `refused`: from the cache, from a flight already on its way, or fetched
 * here (as the leader of a new flight).  *tok_out is owned by the caller
 * (om_up_free_secret). */
static int token_obtain(struct om_up_call *c, const char *key, const char *scope,
                        const char *refused, char **tok_out)
{
    int err = OM_OK;
    struct om_up_tokens *t = &c->u->tok;
    struct om_up_token_flight *f = NULL;    /* ours when we lead; see the file comment */
    char *tok = NULL;                       /* owned, secret */
    long expires = 60;
    bool lead = false;

    pthread_mutex_lock(&t->mu);
    tok = cache_copy(t, key, refused);
    if (tok == NULL && (f = flight_find(t, key)) != NULL) {
        err = flight_wait(t, f, c);
        f = NULL;
        if (err == OM_OK)
            tok = cache_copy(t, key, refused);
    }
    if (err == OM_OK && tok == NULL) {
        /* No flight (or the one we joined brought a token we cannot use):
         * fetch here.  Without memory for a flight, fetch without one. */
        lead = true;
        if ((f = calloc(1, sizeof(*f))) != NULL && (f->scope = strdup(key)) != NULL) {
            f->next = t->flights;
            t->flights = f;
        } else {
            free(f);
            f = NULL;
        }
    }
    pthread_mutex_unlock(&t->mu);
    if (!lead)
        goto done;

    err = token_fetch(c, scope, &tok, &expires);
    pthread_mutex_lock(&t->mu);
    if (err == OM_OK) {
        cache_put(t, key, tok, expires);
        om_up_copy_trunc(t->last_realm, sizeof(t->last_realm), c->ch.realm);
        om_up_copy_trunc(t->last_service, sizeof(t->last_service), c->ch.service);
    }
    if (f != NULL) {
        struct om_up_token_flight **pp = &t->flights;
        while (*pp != NULL && *pp != f)
            pp = &(*pp)->next;
        if (*pp == f)
            *pp = f->next;
        f->done = true;
        f->cancelled = c->cancelled;
        f->err = err;
        om_up_copy_trunc(f->error, sizeof(f->error), c->resp->error);
        pthread_cond_broadcast(&t->cv);
        if (f->waiters == 0)
            flight_free(f);     /* else the last waiter frees it */
    }
    pthread_mutex_unlock(&t->mu);
done:
    *tok_out = tok;
    return err;
}

void om_up_auth_reset(struct om_up_call *c)
{
    om_up_free_secret(c->authz);
    om_up_free_secret(c->bearer);
    c->authz = NULL;
    c->bearer = NULL;
    c->auth = OM_UP_AUTH_NONE;
    c->auth_tried = false;
    c->ch_ok = false;
}

int om_up_auth_answer(struct om_up_call *c)
{
    int err = OM_OK;
    const char *scope;
    char *tok = NULL;           /* owned, secret */
    char *line = NULL;          /* owned, secret */
    char key[OM_UP_TOKEN_KEY_MAX], own_key[OM_UP_TOKEN_KEY_MAX];

    c->auth_tried = true;
    if (strcasecmp(c->ch.scheme, "Basic") == 0) {
        c->auth = OM_UP_AUTH_BASIC;
        goto done;
    }
    scope = c->ch.scope[0] != '\0' ? c->ch.scope : c->scope;
    if (!token_key(key, sizeof(key), c->acct, c->ch.realm, c->ch.service, scope) ||
        !token_key(own_key, sizeof(own_key), c->acct, c->ch.realm, c->ch.service, c->scope)) {
        snprintf(c->resp->error, sizeof(c->resp->error), "the token challenge is too long");
        err = OM_ERR_TOOBIG;
        goto done;
    }
    /* If the token we sent was refused, forget it and ask for a fresh one;
     * another thread may have cached a newer one for the challenge's scope. */
    if (c->bearer != NULL) {
        pthread_mutex_lock(&c->u->tok.mu);
        cache_drop(&c->u->tok, key, c->bearer);
        cache_drop(&c->u->tok, own_key, c->bearer);
        pthread_mutex_unlock(&c->u->tok.mu);
    }
    if ((err = token_obtain(c, key, scope, c->bearer, &tok)) != OM_OK)
        goto done;
    if (asprintf(&line, "Authorization: Bearer %s", tok) < 0) {
        line = NULL;
        err = OM_ERR_NOMEM;
        goto done;
    }
    om_up_free_secret(c->authz);
    om_up_free_secret(c->bearer);
    c->authz = line;
    c->bearer = tok;
    line = NULL;
    tok = NULL;
    c->auth = OM_UP_AUTH_BEARER;
done:
    om_up_free_secret(tok);
    om_up_free_secret(line);
    return err;
}
