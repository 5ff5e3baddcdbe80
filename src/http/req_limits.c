/* req_limits.c — per-client limits on a request (req_limits.h). */
#include "http/req_limits.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "http/clientaddr.h"

void om_req_identify(struct om_req *req)
{
    const struct om_cidr *set = NULL;
    size_t n = 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    struct om_ipaddr peer, client;
    const char *xff = NULL, *xri = NULL;

    if (ci == NULL || om_ipaddr_from_sockaddr(&peer, ci->client_addr) != OM_OK) {
        snprintf(req->client, sizeof(req->client), "-");
        return;
    }
    if (req->srv->limiter != NULL)
        n = om_limiter_trusted_proxies(req->srv->limiter, &set);
    if (n > 0) {
        xff = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Forwarded-For");
        xri = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Real-IP");
    }
    om_client_resolve(set, n, &peer, xff, xri, &client);
    om_ipaddr_format(&client, req->client, sizeof(req->client));
}

static const char *who(const struct om_req *req, bool *is_user)
{
    *is_user = req->user[0] != '\0';
    return *is_user ? req->user : req->client;
}

static bool refused(struct om_req *req, const struct om_limit_verdict *v, const char *key,
                    bool is_user)
{
    char msg[200], secs[24];

    snprintf(msg, sizeof(msg), "limit %s exceeded for %s %s", om_limit_key(v->kind),
             is_user ? "user" : "client", key);
    snprintf(secs, sizeof(secs), "%u", v->retry_after_s);
    om_req_error(req, MHD_HTTP_TOO_MANY_REQUESTS, "TOOMANYREQUESTS", msg);
    if (req->resp != NULL)
        MHD_add_response_header(req->resp, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    if (v->log) {
        char lim[24];
        snprintf(lim, sizeof(lim), "%llu", (unsigned long long)v->limit);
        om_log_kv(OM_LOG_WARN, "client limited (first refusal this minute)", is_user ? "user"
                  : "client", key, "limit", om_limit_key(v->kind), "value", lim,
                  "retry_after", secs, "path", req->url ? req->url : "", NULL);
    }
    return false;
}

bool om_req_limit_request(struct om_req *req)
{
    struct om_limit_verdict v;
    bool is_user;
    const char *key = who(req, &is_user);

    if (req->srv->limiter == NULL ||
        om_limiter_request(req->srv->limiter, key, is_user, om_now_ms(), &v) == OM_LIMIT_NONE)
        return true;
    return refused(req, &v, key, is_user);
}

bool om_req_limit_download(struct om_req *req)
{
    struct om_limit_verdict v;
    bool is_user;
    const char *key = who(req, &is_user);

    if (req->srv->limiter == NULL || req->dl_held)
        return true;
    if (om_limiter_download_begin(req->srv->limiter, key, is_user, om_now_ms(), &v) ==
        OM_LIMIT_NONE) {
        req->dl_held = true;
        return true;
    }
    return refused(req, &v, key, is_user);
}

bool om_req_limit_upstream(struct om_req *req)
{
    struct om_limit_verdict v;
    bool is_user;
    const char *key = who(req, &is_user);

    if (req->srv->limiter == NULL ||
        om_limiter_upstream(req->srv->limiter, key, is_user, om_now_ms(), &v) == OM_LIMIT_NONE)
        return true;
    return refused(req, &v, key, is_user);
}

void om_req_limit_done(struct om_req *req, bool ok)
{
    bool is_user;
    const char *key = who(req, &is_user);
    struct om_limiter *lim = req->srv->limiter;

    if (lim == NULL || req->client[0] == '\0')
        return;
    /* bytes_per_day counts what the registry API sent (not the UI, the
     * admin API or health probes) */
    bool v2 = req->url != NULL && strncmp(req->url, "/v2", 3) == 0;
    if (ok && v2 && !req->head && req->bytes > 0 && req->status < 300)
        om_limiter_sent(lim, key, is_user, req->bytes, om_now_ms());
    if (req->dl_held) {
        om_limiter_download_end(lim, key, is_user, om_now_ms());
        req->dl_held = false;
    }
}
