/* dispatch.c — the request handler: limits, path parsing, routing, dispatch
 * to the endpoints (v2/v2_manifest.c, v2/v2_blob.c, v2/v2_lists.c, admin/,
 * the UI), the job/suspend protocol, and the one log line per request.
 *
 * The dispatcher sits above every endpoint and is the only file that names
 * them; the endpoints reach back only into http/req.h (om_req_error,
 * om_req_send, om_req_job_done), never into this file.
 *
 * The handler protocol (HTTP-SERVER-NOTES.md traps 1 and 5):
 *   call 1: create the om_req, set *req_cls, return — queueing on the first
 *           call would turn keep-alive off;
 *   call 2: validate and route; answer from the cache at once, or suspend
 *           the connection and hand the request to a job (phase 1);
 *   call 3 (after the job's resume): queue the response the job built.
 * A request is freed in om_api_completed(), which libmicrohttpd calls once
 * per request whatever happened, and which writes the log line.
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "admin/admin.h"
#include "admin/ui.h"
#include "cache/cluster.h"
#include "core/log.h"
#include "http/req_limits.h"
#include "v2/v2.h"

static const char *cache_str(om_cache_result c)
{
    switch (c) {
    case OM_CACHE_HIT: return "hit";
    case OM_CACHE_MISS: return "miss";
    case OM_CACHE_STALE: return "stale";
    case OM_CACHE_COALESCED: return "coalesced";
    default: return "-";
    }
}

/* The request's outcome for the log: "aborted" when the connection ended
 * before the answer did, else by the status — a 503 is not "ok". */
static const char *outcome_str(const struct om_req *req, bool completed)
{
    if (!completed)
        return "aborted";
    if (req->status >= 500)
        return "error";
    if (req->status >= 400)
        return "refused";
    return "ok";
}

struct header_sum {
    size_t bytes;
};

static enum MHD_Result sum_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    struct header_sum *s = cls;
    s->bytes += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static enum MHD_Result handle_base(struct om_req *req)
{
    static const char body[] = "{}";
    req->resp = om_http_body("application/json", body, 2);
    req->status = MHD_HTTP_OK;
    req->bytes = 2;
    return om_req_send(req);
}

/* 200 "ok" while serving (503 once stopping).  An upstream whose work
 * waits (every job of its lane, or every download slot it may hold, busy)
 * makes the first line "degraded", with a line per such upstream: the
 * mirror still serves everything cached and every other upstream, so the
 * status stays 200 — a load balancer keeps the replica, an operator sees
 * why pulls from that upstream are slow. */
static enum MHD_Result handle_healthz(struct om_req *req)
{
    struct om_server *srv = req->srv;
    char body[2048], lines[1800] = "";
    size_t len = 0;
    for (size_t i = 0; i < srv->cfg->n_upstreams && len < sizeof(lines); i++) {
        struct om_upstream_load ld;
        om_server_upstream_load(srv, i, &ld);
        if (ld.saturated)
            len += (size_t)snprintf(lines + len, sizeof(lines) - len,
                                    "upstream %s saturated: %u of %u jobs running, %zu waiting; "
                                    "%u of %u downloads, %u waiting\n",
                                    srv->cfg->upstreams[i].name, ld.jobs.running, ld.jobs.max,
                                    ld.jobs.waiting, ld.dl_active, ld.dl_max, ld.dl_waiting);
    }
    /* A shared index (Redis) that is down: cached content is still served,
     * coordination waits until it is back. */
    struct om_index_health ih;
    om_index_health(srv->index, &ih);
    if (!ih.available && len < sizeof(lines))
        len += (size_t)snprintf(lines + len, sizeof(lines) - len,
                                "index %s (%s) unavailable: %s\n", ih.backend, ih.where,
                                ih.last_error[0] ? ih.last_error : "no answer");
    /* The cluster's Redis (download leases) down: each replica fetches for
     * its own clients only until it is back. */
    if (srv->cluster != NULL && !om_cluster_redis_up(srv->cluster) && len < sizeof(lines)) {
        char where[OM_REDIS_HOST_MAX + 16], why[160];
        om_cluster_redis_where(srv->cluster, where, sizeof(where), why, sizeof(why));
        len += (size_t)snprintf(lines + len, sizeof(lines) - len,
                                "cluster redis (%s) unavailable: %s; downloads coordinated "
                                "within this replica only\n",
                                where, why[0] ? why : "no answer");
    }
    int n = snprintf(body, sizeof(body), "%s\n%s", len ? "degraded" : "ok", lines);
    req->resp = om_http_body("text/plain", body, n < (int)sizeof(body) ? (size_t)n : sizeof(body) - 1);
    req->status = atomic_load(&srv->stopping) ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK;
    return om_req_send(req);
}

/* ---- who may pull (http/auth.h) ---------------------------------------
 * Credentials are checked before the path is parsed: an unauthenticated
 * client learns nothing from the answers, and /v2/ itself answers 401
 * (docker login probes it).  A login the memory knows costs a keyed
 * SHA-256 (~0.3 us); any other is verified by a job (crypt_r, ~50-100 ms
 * for bcrypt) while the connection is suspended, and the request is
 * dispatched again when it resumes (auth_phase 2).  Why a job and not the
 * HTTP thread: http/auth.h. */

struct auth_job {
    struct om_req *req;
    char user[OM_AUTH_USER_MAX + 1];
    char addr[OM_AUTH_ADDR_MAX];
    char *password;                    /* owned; wiped and freed by the job */
};

/* The TCP peer's address as text (the per-address key of the limiter). */
static void peer_addr(struct MHD_Connection *conn, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
    const void *a = sa == NULL                  ? NULL
                    : sa->sa_family == AF_INET  ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                    : sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                                : NULL;
    if (a == NULL || inet_ntop(sa->sa_family, a, buf, (socklen_t)len) == NULL)
        snprintf(buf, len, "?");
}

static enum MHD_Result send_unauthorized(struct om_req *req, const char *message)
{
    om_req_error(req, MHD_HTTP_UNAUTHORIZED, "UNAUTHORIZED", message);
    if (req->resp != NULL)
        MHD_add_response_header(req->resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Basic realm=\"ocimirror\"");
    return om_req_send(req);
}

static void note_login_failure(struct om_server *srv, const char *user, const char *addr)
{
    atomic_fetch_add(&om_auth_counters(srv->auth)->failures, 1);
    om_auth_note_failure(srv->auth, addr, om_now_ms());
    om_log_kv(OM_LOG_WARN, "login failed", "user", user, "client", addr, NULL);
}

static void auth_job_run(void *arg)
{
    struct auth_job *j = arg;
    struct om_req *req = j->req;
    om_auth_result r = om_auth_verify(req->srv->auth, j->user, j->password, om_now_ms());
    explicit_bzero(j->password, strlen(j->password));
    free(j->password);
    if (r == OM_AUTH_GOOD) {
        snprintf(req->user, sizeof(req->user), "%s", j->user);
        req->authed = true;
    } else {
        req->auth_bad = true;
        note_login_failure(req->srv, j->user, j->addr);
    }
    free(j);
    req->auth_phase = 2;
    req->phase = 0;                    /* dispatch again on the next call */
    MHD_resume_connection(req->conn);
}

/* Returns true when the request was answered or suspended (*ret says
 * what to return to libmicrohttpd); false: go on. */
static bool auth_gate(struct om_req *req, enum MHD_Result *ret)
{
    struct om_server *srv = req->srv;
    struct om_auth *a = srv->auth;
    char *pass = NULL, *user = NULL, addr[OM_AUTH_ADDR_MAX];
    unsigned retry = 0;
    bool answered = true;

    if (req->auth_phase == 2) {
        if (req->auth_bad) {
            *ret = send_unauthorized(req, "invalid user name or password");
            return true;
        }
        if (req->authed)
            atomic_fetch_add(&om_auth_counters(a)->ok, 1);
        return false;
    }
    int64_t now = om_now_ms();
    om_auth_tick(a, now);
    if (om_auth_off(a))
        return false;
    user = MHD_basic_auth_get_username_password(req->conn, &pass);
    if (user == NULL) {
        if (om_auth_anonymous(a)) {
            answered = false;
        } else {
            atomic_fetch_add(&om_auth_counters(a)->missing, 1);
            *ret = send_unauthorized(req, "authentication required");
        }
        goto done;
    }
    peer_addr(req->conn, addr, sizeof(addr));
    if (om_auth_limited(a, addr, now, &retry)) {
        char ra[16];
        atomic_fetch_add(&om_auth_counters(a)->limited, 1);
        om_req_error(req, MHD_HTTP_TOO_MANY_REQUESTS, "TOOMANYREQUESTS",
                     "too many failed logins from this address; try again later");
        snprintf(ra, sizeof(ra), "%u", retry);
        if (req->resp != NULL)
            MHD_add_response_header(req->resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
        *ret = om_req_send(req);
        goto done;
    }
    om_auth_result r = om_auth_check_cached(a, user, pass ? pass : "", now);
    if (r == OM_AUTH_GOOD) {
        snprintf(req->user, sizeof(req->user), "%s", user);
        req->authed = true;
        req->auth_phase = 2;
        atomic_fetch_add(&om_auth_counters(a)->ok, 1);
        answered = false;
        goto done;
    }
    if (r == OM_AUTH_BAD) {
        note_login_failure(srv, user, addr);
        *ret = send_unauthorized(req, "invalid user name or password");
        goto done;
    }
    struct auth_job *j = calloc(1, sizeof(*j));
    if (j == NULL || (j->password = strdup(pass ? pass : "")) == NULL) {
        free(j);
        *ret = om_req_send_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                 "out of memory");
        goto done;
    }
    j->req = req;
    snprintf(j->user, sizeof(j->user), "%s", user);
    snprintf(j->addr, sizeof(j->addr), "%s", addr);
    req->auth_phase = 1;
    req->phase = 1;
    MHD_suspend_connection(req->conn);
    if (om_jobs_submit_lane(srv->jobs, srv->lane_other, auth_job_run, j) != OM_OK) {
        explicit_bzero(j->password, strlen(j->password));
        free(j->password);
        free(j);
        req->auth_phase = 0;
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "mirror overloaded");
        om_req_job_done(req);
    }
    *ret = MHD_YES;
done:
    if (pass != NULL) {
        explicit_bzero(pass, strlen(pass));
        MHD_free(pass);
    }
    if (user != NULL)
        MHD_free(user);
    return answered;
}

/* ---- what may be pulled (core/policy.h) ---------------------------------
 * After routing, before any cache lookup or upstream contact: candidates
 * the policy refuses are dropped from the route, so a search never asks
 * an upstream under a refused name; none left answers 403 DENIED naming
 * the rule.  A search whose remembered decision is a refused name is
 * refused too (the cache paths would serve it from that decision). */
static bool policy_gate(struct om_req *req, enum MHD_Result *ret)
{
    struct om_route *rt = &req->route;
    const char *rule = NULL, *first_rule = NULL;
    om_policy_verdict first = OM_POLICY_ALLOWED;
    char msg[OM_POLICY_PATTERN_MAX + 64], up[64], canon[OM_NAME_MAX + 1];
    size_t k = 0;

    if (!om_policy_active(req->policy))
        return false;
    for (size_t i = 0; i < rt->n; i++) {
        om_policy_verdict v = om_policy_check(req->policy, rt->c[i].canonical, &rule);
        if (v == OM_POLICY_ALLOWED) {
            if (k != i)
                rt->c[k] = rt->c[i];
            k++;
        } else if (first == OM_POLICY_ALLOWED) {
            first = v;
            first_rule = rule;
        }
    }
    rt->n = k;
    if (k > 0 && rt->kind == OM_ROUTE_SEARCH &&
        om_v2_route_lookup(req->srv, req->p.name, up, sizeof(up), canon, sizeof(canon))) {
        om_policy_verdict v = om_policy_check(req->policy, canon, &rule);
        if (v != OM_POLICY_ALLOWED) {
            first = v;
            first_rule = rule;
            k = 0;
        }
    }
    if (k > 0)
        return false;
    atomic_fetch_add(&req->srv->ctr.policy_denied, 1);
    om_policy_explain(first, first_rule, msg, sizeof(msg));
    *ret = om_req_send_error(req, MHD_HTTP_FORBIDDEN, "DENIED", msg);
    return true;
}

static enum MHD_Result dispatch(struct om_req *req, const char *method)
{
    struct om_server *srv = req->srv;
    const struct om_limits *lim = &srv->cfg->limits;

    /* libmicrohttpd hands over the path without its query: count both. */
    size_t url_len = strlen(req->url);
    struct header_sum qs = {0};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, sum_header, &qs);
    if (url_len + qs.bytes > lim->max_url_bytes)
        return om_req_send_error(req, MHD_HTTP_URI_TOO_LONG, "UNSUPPORTED", "request URL too long");
    struct header_sum hs = {0};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, sum_header, &hs);
    if (hs.bytes > lim->max_header_bytes)
        return om_req_send_error(req, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "UNSUPPORTED",
                          "request headers too large");

    om_req_identify(req); /* req->client: the peer, or what a trusted proxy said */
    if (strcmp(req->url, "/healthz") == 0)
        return handle_healthz(req);
    if (strncmp(req->url, "/api/", 5) == 0 || strcmp(req->url, "/metrics") == 0)
        return om_admin_handle(req);
    /* The cluster's internal endpoint (v2_peer.c): before /v2/, by digest,
     * peers only (its own token check; 404 without a cluster). */
    if (strncmp(req->url, "/internal/", 10) == 0)
        return om_v2_peer(req);

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return om_req_send_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "UNSUPPORTED",
                          "this registry is a read-only mirror");
    req->head = (method[0] == 'H');
    if (strcmp(req->url, "/v2") != 0 && strncmp(req->url, "/v2/", 4) != 0)
        return om_ui_handle(req);
    enum MHD_Result gated = MHD_NO;
    if (auth_gate(req, &gated))
        return gated;
    /* Per-client limits (http/req_limits.h): every /v2/ request spends a
     * token of requests_per_second; client authentication, when it sets
     * req->user, must run before this. */
    if (!om_req_limit_request(req))
        return om_req_send(req);

    om_v2_fault fault = OM_V2F_NONE;
    if (om_v2_path_parse(&req->p, req->url, url_len, &fault) != OM_OK) {
        switch (fault) {
        case OM_V2F_NAME:
            return om_req_send_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID", "invalid repository name");
        case OM_V2F_TAG:
            return om_req_send_error(req, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN",
                              "manifest unknown: invalid reference");
        case OM_V2F_DIGEST:
            return om_req_send_error(req, MHD_HTTP_BAD_REQUEST, "DIGEST_INVALID", "invalid digest");
        default:
            return om_req_send_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such endpoint");
        }
    }

    const char *ns = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "ns");
    if (ns != NULL && om_url_decode(req->ns, sizeof(req->ns), ns, strlen(ns)) != OM_OK)
        return om_req_send_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID", "invalid ns parameter");

    if (req->policy == NULL)
        req->policy = om_server_policy(srv);
    switch (req->p.kind) {
    case OM_V2_BASE:
        return handle_base(req);
    case OM_V2_CATALOG:
        return om_v2_catalog(req);
    case OM_V2_UPLOAD:
        return om_req_send_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "UNSUPPORTED",
                          "this registry is a read-only mirror");
    default:
        break;
    }

    int err = om_route_resolve(&req->route, srv->cfg, req->p.name, req->ns[0] ? req->ns : NULL);
    if (err == OM_ERR_NOTFOUND)
        return om_req_send_error(req, MHD_HTTP_NOT_FOUND, "NAME_UNKNOWN",
                          "repository name not known to registry: no configured upstream for it");
    if (err != OM_OK)
        return om_req_send_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID", "invalid repository name");
    if (policy_gate(req, &gated))
        return gated;
    if (req->route.kind == OM_ROUTE_FIXED) {
        snprintf(req->canonical, sizeof(req->canonical), "%s", req->route.c[0].canonical);
        snprintf(req->upstream, sizeof(req->upstream), "%s",
                 srv->cfg->upstreams[req->route.c[0].upstream].name);
    }

    switch (req->p.kind) {
    case OM_V2_MANIFEST:
        return om_v2_manifest(req);
    case OM_V2_BLOB:
        /* a blob GET holds one of the client's downloads until it ends,
         * and is refused once its bytes_per_day are spent */
        if (!req->head && !om_req_limit_download(req))
            return om_req_send(req);
        return om_v2_blob(req);
    case OM_V2_TAGS:
        return om_v2_tags(req);
    case OM_V2_REFERRERS:
        return om_v2_referrers(req);
    default:
        return om_req_send_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such endpoint");
    }
}

/* Framing a server must refuse, checked on the first call (a response
 * queued then also ends the connection, which is what these need):
 *   - both Content-Length and Transfer-Encoding (RFC 9112 6.3): a front
 *     proxy may have framed the body differently, so whatever follows on
 *     this connection could be a smuggled request;
 *   - HTTP/1.1 without Host (RFC 9112 3.2).
 * libmicrohttpd 0.9.75 accepts both.  NULL when the request is fine. */
static const char *bad_framing(struct MHD_Connection *conn, const char *version)
{
    if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) != NULL &&
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) !=
            NULL)
        return "request has both Content-Length and Transfer-Encoding";
    if (version != NULL && strcmp(version, MHD_HTTP_VERSION_1_1) == 0 &&
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST) == NULL)
        return "HTTP/1.1 request without Host";
    return NULL;
}

enum MHD_Result om_api_handle(struct om_server *srv, struct MHD_Connection *conn,
                              const char *url, const char *method, const char *version,
                              const char *upload_data, size_t *upload_size, void **req_cls)
{
    struct om_req *req = *req_cls;
    if (req == NULL) {
        om_conn_guard_request_started(conn);
        req = calloc(1, sizeof(*req));
        if (req == NULL)
            return MHD_NO;
        req->srv = srv;
        req->conn = conn;
        req->url = url;
        req->method = method;
        req->t0_us = om_now_us();
        *req_cls = req;
        atomic_fetch_add(&srv->connections, 1);
        atomic_fetch_add(&srv->ctr.requests, 1);
        const char *bad = bad_framing(conn, version);
        if (bad != NULL) {
            om_req_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED", bad);
            MHD_add_response_header(req->resp, MHD_HTTP_HEADER_CONNECTION, "close");
            return om_req_send(req);
        }
        return MHD_YES;
    }
    if (req->phase == 2)
        return om_req_send(req);
    if (req->phase == 1)
        return MHD_YES; /* spurious call while a job runs; stay put */
    if (*upload_size > 0) {
        /* An admin POST keeps its (small) body; a push body we will never
         * accept is read and dropped (bounded) and answered 405 on the final
         * call.  Queueing while libmicrohttpd still holds unread upload data
         * makes it drop the connection instead. */
        req->upload_seen += *upload_size;
        if (strncmp(url, "/api/", 5) == 0 && req->upload_seen <= OM_ADMIN_BODY_MAX) {
            char *b = realloc(req->body, req->body_len + *upload_size + 1);
            if (b == NULL)
                return MHD_NO;
            memcpy(b + req->body_len, upload_data, *upload_size);
            req->body = b;
            req->body_len += *upload_size;
            req->body[req->body_len] = '\0';
        }
        *upload_size = 0;
        return req->upload_seen > (1u << 20) ? MHD_NO : MHD_YES;
    }
    if (req->status != 0)
        return MHD_YES;
    return dispatch(req, method);
}

void om_api_completed(struct om_server *srv, struct om_req *req,
                      enum MHD_RequestTerminationCode toe)
{
    if (req->resp != NULL)
        MHD_destroy_response(req->resp);
    bool ok = (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    switch (req->cache) {
    case OM_CACHE_HIT: atomic_fetch_add(&srv->ctr.hits, 1); break;
    case OM_CACHE_MISS: atomic_fetch_add(&srv->ctr.misses, 1); break;
    case OM_CACHE_STALE: atomic_fetch_add(&srv->ctr.stale, 1); break;
    case OM_CACHE_COALESCED: atomic_fetch_add(&srv->ctr.coalesced, 1); break;
    default: break;
    }
    if (req->status >= 500 || !ok)
        atomic_fetch_add(&srv->ctr.errors, 1);
    if (ok && req->bytes > 0 && !req->head) {
        if (req->cache == OM_CACHE_HIT || req->cache == OM_CACHE_STALE)
            atomic_fetch_add(&srv->ctr.bytes_from_cache, req->bytes);
        else if (req->cache == OM_CACHE_MISS || req->cache == OM_CACHE_COALESCED)
            atomic_fetch_add(&srv->ctr.bytes_from_upstream, req->bytes);
    }
    /* Health probes (load balancers, the systemd watchdog) every few
     * seconds would drown the request log: debug level only. */
    om_log_level lvl = strcmp(req->url ? req->url : "", "/healthz") == 0 ? OM_LOG_DEBUG
                                                                          : OM_LOG_INFO;
    if (om_log_enabled(lvl)) {
        char status[8], bytes[24], dur[24];
        snprintf(status, sizeof(status), "%u", req->status);
        snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)(ok ? req->bytes : 0));
        snprintf(dur, sizeof(dur), "%.3f", (double)(om_now_us() - req->t0_us) / 1000.0);
        om_log_kv(lvl, "request", "method", req->method, "path",
                  req->url ? req->url : "", "ns", req->ns, "status", status, "bytes", bytes,
                  "ms", dur, "client", req->client, "cache", cache_str(req->cache), "upstream",
                  req->upstream, "repo", req->canonical, "user", req->user, "route",
                  req->canonical[0] ? om_route_why_str(req->route.why) : "", "error",
                  req->err_code ? req->err_code : "", "outcome", outcome_str(req, ok), NULL);
    }
    om_req_limit_done(req, ok);
    om_admin_note_request(srv, req, ok);
    om_policy_unref(req->policy);
    atomic_fetch_sub(&srv->connections, 1);
    free(req->body);
    free(req);
}
