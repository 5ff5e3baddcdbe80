/* upstream_pool.c — the endpoints and the accounts of one upstream (see
 * upstream.h for the contract): which URL a request goes to, which
 * account's credentials it carries, and what a failure of either does.
 *
 * Endpoints.  cfg->urls in order (cfg->url alone when the config has no
 * list): a request starts on the first endpoint that is not backing off —
 * or, when all are, on the one whose back-off ends first (a probe).  A
 * transport error at the endpoint, a 5xx or a 429 (when no other account
 * can take it) backs the endpoint off for OM_UP_URL_BACKOFF_MIN_MS,
 * doubling with each failure in a row up to OM_UP_URL_BACKOFF_MAX_MS, and
 * moves the request to another endpoint it has not tried yet (those not
 * backing off first) at once: no sleep, no try used.  The first answer
 * below 500 (429 excepted) ends the back-off.  Only failures at the
 * endpoint's own origin count: a redirect target (a CDN) failing says
 * nothing about the endpoint.  Content is verified by digest by the callers
 * whatever endpoint served it.
 *
 * Accounts.  cfg->credentials (or username/password: a pool of one):
 * each request takes the next account in turn that is not limited.  An
 * account is limited by a 429 (until Retry-After, else the window of its
 * ratelimit-remaining, else OM_UP_LIMIT_DEFAULT_MS; at most
 * OM_UP_LIMIT_MAX_MS) or by a ratelimit-remaining of 0 (until its window
 * ends); a 429 moves the request to the next account not tried (the
 * account's limit explains it, so the endpoint is not backed off then).
 * With every account limited, the one free soonest is used: the upstream
 * is asked and decides.
 *
 * Bounds: OM_MAX_UPSTREAM_URLS endpoints and OM_MAX_CREDENTIALS accounts
 * (config.h); a call tries each at most once (bit masks), so a request
 * makes at most n_ep + n_acct switches on top of its retries, all inside
 * its time budget (a switch is refused once the budget is spent).
 *
 * Locking: everything here is under u->stats_mu, held for a few field
 * updates, never across I/O.  Secrets: passwords are borrowed from the
 * config and never copied or logged; usernames and URLs (which carry no
 * credentials: config_upstreams.c) are shown in logs and statistics.
 */
#include "upstream/upstream_int.h"

#include <inttypes.h>
#include <stdio.h>

#include "core/log.h"

/* ---- set up ------------------------------------------------------------------ */

int om_up_pool_init(struct om_upstream *u)
{
    const struct om_upstream_cfg *cfg = u->cfg;
    CURLU *cu = NULL; /* owned */
    int err = OM_OK;
    size_t n = cfg->n_urls > 0 ? cfg->n_urls : 1;

    if (n > OM_MAX_UPSTREAM_URLS || cfg->n_credentials > OM_MAX_CREDENTIALS) {
        err = OM_ERR_INVALID;
        goto done;
    }
    if ((cu = curl_url()) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        struct om_up_endpoint *e = &u->ep[i];
        e->url = cfg->n_urls > 0 ? cfg->urls[i] : cfg->url;
        if (e->url == NULL || curl_url_set(cu, CURLUPART_URL, e->url, 0) != CURLUE_OK ||
            om_up_origin_of(cu, &e->origin) != OM_OK) {
            err = OM_ERR_INVALID;
            om_log_kv(OM_LOG_ERROR, "upstream url is not an http(s) URL", "upstream", cfg->name,
                      NULL);
            goto done;
        }
        e->st.url = e->url;
    }
    u->n_ep = n;
    for (size_t i = 0; i < cfg->n_credentials; i++) {
        u->acct[i].username = cfg->credentials[i].username;
        u->acct[i].password = cfg->credentials[i].password;
    }
    u->n_acct = cfg->n_credentials;
    if (u->n_acct == 0 && cfg->username != NULL && cfg->password != NULL) {
        u->acct[0].username = cfg->username;
        u->acct[0].password = cfg->password;
        u->n_acct = 1;
    }
    for (size_t i = 0; i < u->n_acct; i++) {
        u->acct[i].st.username = u->acct[i].username;
        u->acct[i].st.ratelimit_remaining = -1;
    }
done:
    curl_url_cleanup(cu);
    return err;
}

/* ---- choosing ------------------------------------------------------------------ */

/* The endpoint a call should move to (or start on): untried, not backing
 * off, first in order; else untried and backing off, free soonest.
 * SIZE_MAX when every one was tried.  Caller holds stats_mu. */
static size_t pick_endpoint(const struct om_upstream *u, uint32_t tried, int64_t now)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < u->n_ep; i++) {
        const struct om_up_endpoint *e = &u->ep[i];
        if (tried & (1u << i))
            continue;
        if (e->backoff_until_mono <= now)
            return i;
        if (best == SIZE_MAX || e->backoff_until_mono < u->ep[best].backoff_until_mono)
            best = i;
    }
    return best;
}

/* The next account in turn that is untried and not limited; else the
 * untried one free soonest (only when `any`).  OM_UP_NO_ACCOUNT when none
 * is left.  Caller holds stats_mu; advances the turn. */
static int pick_account(struct om_upstream *u, uint32_t tried, int64_t now, bool any)
{
    int best = OM_UP_NO_ACCOUNT;
    size_t start = u->n_acct > 0 ? u->next_acct % u->n_acct : 0;
    for (size_t k = 0; k < u->n_acct; k++) {
        size_t i = (start + k) % u->n_acct;
        const struct om_up_account *a = &u->acct[i];
        if (tried & (1u << i))
            continue;
        if (a->limited_until_mono <= now) {
            u->next_acct = (unsigned)(i + 1);
            return (int)i;
        }
        if (best == OM_UP_NO_ACCOUNT || a->limited_until_mono < u->acct[best].limited_until_mono)
            best = (int)i;
    }
    if (best != OM_UP_NO_ACCOUNT)
        u->next_acct = (unsigned)best + 1;
    return any ? best : OM_UP_NO_ACCOUNT;
}

/* Count a try on endpoint e / account a (caller holds stats_mu). */
static void count_try(struct om_up_call *c)
{
    struct om_upstream *u = c->u;
    u->ep[c->ep].st.requests++;
    u->ep[c->ep].st.asked = true;
    c->ep_tried |= 1u << c->ep;
    if (c->acct != OM_UP_NO_ACCOUNT) {
        u->acct[c->acct].st.requests++;
        u->acct[c->acct].st.last_used_ms = om_up_wall_ms();
        c->acct_tried |= 1u << c->acct;
    }
}

void om_up_pool_pick(struct om_up_call *c)
{
    struct om_upstream *u = c->u;
    int64_t now = om_up_mono_ms();

    pthread_mutex_lock(&u->stats_mu);
    size_t e = pick_endpoint(u, 0, now);
    c->ep = e == SIZE_MAX ? 0 : e;
    c->acct = pick_account(u, 0, now, true);
    count_try(c);
    pthread_mutex_unlock(&u->stats_mu);
}

bool om_up_is_home(const struct om_up_call *c, const struct om_up_origin *o)
{
    if (!c->home_any)
        return om_up_origin_eq(o, c->home);
    for (size_t i = 0; i < c->u->n_ep; i++)
        if (om_up_origin_eq(o, &c->u->ep[i].origin))
            return true;
    return false;
}

/* Is the current hop at the call's endpoint (not a redirect target)? */
static bool at_endpoint(const struct om_up_call *c)
{
    return c->home_any && om_up_origin_eq(&c->cur, &c->u->ep[c->ep].origin);
}

/* ---- what happened ------------------------------------------------------------- */

/* How long a limit lasts: Retry-After, else the window, else the default. */
static int64_t limit_ms(const struct om_up_resp *r)
{
    int64_t ms = r->retry_after_s >= 0   ? (int64_t)r->retry_after_s * 1000
                 : r->ratelimit_window_s > 0 ? (int64_t)r->ratelimit_window_s * 1000
                                             : OM_UP_LIMIT_DEFAULT_MS;
    if (ms < 1000)
        ms = 1000;
    return ms > OM_UP_LIMIT_MAX_MS ? OM_UP_LIMIT_MAX_MS : ms;
}

/* Account a is limited for ms (caller holds stats_mu). */
static void limit_account(struct om_upstream *u, int a, int64_t ms, const char *why)
{
    struct om_up_account *acc = &u->acct[a];
    char secs[24];
    acc->limited_until_mono = om_up_mono_ms() + ms;
    acc->st.limited_until_ms = om_up_wall_ms() + ms;
    snprintf(secs, sizeof(secs), "%" PRId64, ms / 1000);
    om_log_kv(OM_LOG_WARN, "upstream account rate limited, skipped", "upstream", u->cfg->name,
              "account", acc->username, "why", why, "for_s", secs, NULL);
}

void om_up_pool_answered(struct om_up_call *c)
{
    struct om_upstream *u = c->u;
    const struct om_up_resp *r = c->resp;

    if (!at_endpoint(c))
        return;
    pthread_mutex_lock(&u->stats_mu);
    if (r->status < 500 && r->status != 429) {
        struct om_up_endpoint *e = &u->ep[c->ep];
        e->st.healthy = true;
        e->st.failures = 0;
        e->st.backoff_until_ms = 0;
        e->st.last_ok_ms = om_up_wall_ms();
        e->backoff_until_mono = 0;
    }
    if (c->acct != OM_UP_NO_ACCOUNT && r->ratelimit_remaining >= 0) {
        struct om_up_account *a = &u->acct[c->acct];
        a->st.ratelimit_remaining = r->ratelimit_remaining;
        if (r->ratelimit_remaining == 0 && r->status != 429)
            limit_account(u, c->acct, limit_ms(r), "ratelimit-remaining 0");
        else if (r->ratelimit_remaining > 0 && r->status < 400) {
            a->limited_until_mono = 0; /* the upstream says it has pulls left */
            a->st.limited_until_ms = 0;
        }
    }
    pthread_mutex_unlock(&u->stats_mu);
}

/* May this call still switch (time left in its budget)? */
static bool budget_left(const struct om_up_call *c)
{
    return c->deadline_ms == 0 || om_up_mono_ms() < c->deadline_ms;
}

bool om_up_pool_can_switch(const struct om_up_call *c, long status)
{
    const struct om_upstream *u = c->u;
    uint32_t all_ep = u->n_ep >= 32 ? UINT32_MAX : (1u << u->n_ep) - 1;
    uint32_t all_acct = u->n_acct >= 32 ? UINT32_MAX : (1u << u->n_acct) - 1;

    if (!at_endpoint(c) || !budget_left(c) || c->headers_delivered || c->resp->body_delivered > 0)
        return false;
    if (status == 429 && c->acct != OM_UP_NO_ACCOUNT && (c->acct_tried & all_acct) != all_acct)
        return true;
    return (c->ep_tried & all_ep) != all_ep;
}

/* Back endpoint e off after a failure (caller holds stats_mu). */
static void back_off(struct om_upstream *u, size_t i, const char *what)
{
    struct om_up_endpoint *e = &u->ep[i];
    int64_t ms = OM_UP_URL_BACKOFF_MIN_MS;
    char secs[24];

    e->st.failures++;
    for (unsigned k = 1; k < e->st.failures && ms < OM_UP_URL_BACKOFF_MAX_MS; k++)
        ms *= 2;
    if (ms > OM_UP_URL_BACKOFF_MAX_MS)
        ms = OM_UP_URL_BACKOFF_MAX_MS;
    e->backoff_until_mono = om_up_mono_ms() + ms;
    e->st.backoff_until_ms = om_up_wall_ms() + ms;
    e->st.healthy = false;
    e->st.errors++;
    e->st.last_error_ms = om_up_wall_ms();
    om_up_copy_trunc(e->st.last_error, sizeof(e->st.last_error), what);
    snprintf(secs, sizeof(secs), "%" PRId64, ms / 1000);
    if (u->n_ep > 1)
        om_log_kv(OM_LOG_WARN, "upstream url failing, skipped", "upstream", u->cfg->name, "url",
                  e->url, "error", what, "for_s", secs, NULL);
}

int om_up_pool_failed(struct om_up_call *c, long status, bool may_switch, bool *switched)
{
    struct om_upstream *u = c->u;
    char what[sizeof(c->resp->error)];
    bool can = may_switch && om_up_pool_can_switch(c, status);
    bool by_account = false;
    int64_t now = om_up_mono_ms();
    int err = OM_OK;

    *switched = false;
    if (!at_endpoint(c))
        goto done;
    if (status == 0)
        om_up_copy_trunc(what, sizeof(what), c->resp->error[0] ? c->resp->error : "no answer");
    else
        snprintf(what, sizeof(what), "HTTP %ld", status);
    pthread_mutex_lock(&u->stats_mu);
    if (status == 429 && c->acct != OM_UP_NO_ACCOUNT) {
        /* The account's limit explains a 429: the endpoint is fine. */
        u->acct[c->acct].st.rate_limited++;
        limit_account(u, c->acct, limit_ms(c->resp), "429");
        int next = can ? pick_account(u, c->acct_tried, now, false) : OM_UP_NO_ACCOUNT;
        if (next != OM_UP_NO_ACCOUNT) {
            c->acct = next;
            by_account = true;
        }
    }
    if (!by_account) {
        back_off(u, c->ep, what);
        size_t next = can ? pick_endpoint(u, c->ep_tried, now) : SIZE_MAX;
        if (next != SIZE_MAX)
            c->ep = next;
        else
            can = false;
    }
    if (can)
        count_try(c);
    pthread_mutex_unlock(&u->stats_mu);
    if (!can)
        goto done;
    om_log_kv(OM_LOG_INFO, by_account ? "upstream request moved to another account"
                                      : "upstream request moved to another url",
              "upstream", u->cfg->name, "path", c->req->path, "after", what, "url",
              u->ep[c->ep].url, "account",
              c->acct != OM_UP_NO_ACCOUNT ? u->acct[c->acct].username : "", NULL);
    om_up_auth_reset(c);
    if ((err = om_up_call_start_url(c)) != OM_OK)
        goto done;
    om_up_auth_use_cached(c);
    c->hops = 0;
    *switched = true;
done:
    return err;
}

/* ---- statistics ------------------------------------------------------------------ */

size_t om_upstream_url_stats(struct om_upstream *u, struct om_upstream_url_stats *out, size_t max)
{
    size_t n = u->n_ep < max ? u->n_ep : max;
    pthread_mutex_lock(&u->stats_mu);
    for (size_t i = 0; i < n; i++)
        out[i] = u->ep[i].st;
    pthread_mutex_unlock(&u->stats_mu);
    return n;
}

size_t om_upstream_account_stats(struct om_upstream *u, struct om_upstream_account_stats *out,
                                 size_t max)
{
    size_t n = u->n_acct < max ? u->n_acct : max;
    int64_t now = om_up_wall_ms();
    pthread_mutex_lock(&u->stats_mu);
    for (size_t i = 0; i < n; i++) {
        out[i] = u->acct[i].st;
        if (out[i].limited_until_ms <= now)
            out[i].limited_until_ms = 0; /* the limit is over */
    }
    pthread_mutex_unlock(&u->stats_mu);
    return n;
}
