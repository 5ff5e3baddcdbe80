/* admin_clients.c — GET /api/v1/clients: who uses the mirror and who is
 * being limited (http/limits.h).  Three bounded lists (?n=, 1..500,
 * default 50): the top clients by bytes and by requests over the last 24 h,
 * and the clients a limit refuses now; the refusal counters; the limits in
 * force.  A scan of the limiter's records (one stripe locked at a time),
 * fine for an operator's page, not for a tight poll. */
#include "admin/admin_int.h"

#include <stdlib.h>

#include "http/limits.h"

#define CLIENTS_N_MAX 500

static json_t *client_json(const struct om_client_stat *c)
{
    json_t *o = json_object();

    om_json_set(o, "client", om_json_str(c->key));
    om_json_set(o, "is_user", json_boolean(c->is_user));
    om_json_set(o, "bytes_24h", om_json_u64(c->bytes_24h));
    om_json_set(o, "requests_24h", om_json_u64(c->requests_24h));
    om_json_set(o, "rejected_24h", om_json_u64(c->rejected_24h));
    om_json_set(o, "downloads", om_json_u64(c->downloads));
    om_json_set(o, "last_seen_ms", json_integer((json_int_t)c->last_seen_ms));
    om_json_set(o, "limited_by", c->limited_until_ms > 0
                                     ? om_json_str(om_limit_key(c->limited_by))
                                     : json_null());
    om_json_set(o, "limited_until_ms", c->limited_until_ms > 0
                                           ? json_integer((json_int_t)c->limited_until_ms)
                                           : json_null());
    return o;
}

static json_t *list_json(struct om_limiter *lim, om_clients_order order, int64_t now,
                         struct om_client_stat *buf, size_t n)
{
    json_t *a = json_array();
    size_t got = om_limiter_top(lim, order, now, buf, n);

    for (size_t i = 0; i < got; i++)
        json_array_append_new(a, client_json(&buf[i]));
    return a;
}

static json_t *limits_json(const struct om_client_limits *l)
{
    json_t *o = json_object();

    om_json_set(o, "requests_per_second", om_json_u64(l->requests_per_second));
    om_json_set(o, "burst", om_json_u64(l->burst > 0 ? l->burst : l->requests_per_second));
    om_json_set(o, "downloads", om_json_u64(l->downloads));
    om_json_set(o, "bytes_per_day", om_json_u64(l->bytes_per_day));
    om_json_set(o, "upstream_fetches_per_minute", om_json_u64(l->upstream_fetches_per_minute));
    return o;
}

enum MHD_Result om_admin_clients(struct om_req *req)
{
    struct om_server *srv = req->srv;
    const struct om_limits *cl = &srv->cfg->limits;
    struct om_limiter_totals t;
    struct om_client_stat *buf = NULL;
    uint64_t n = 0;
    int64_t now = om_now_ms();
    json_t *doc, *rej, *proxies;
    char cidr[80];

    if (om_admin_arg_uint(req, "n", 1, CLIENTS_N_MAX, 50, &n) != OM_OK)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED",
                                    "n must be a number from 1 to 500");
    if (srv->limiter == NULL || (buf = calloc((size_t)n, sizeof(*buf))) == NULL)
        return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                    "the client table is not available");
    om_limiter_totals(srv->limiter, &t);
    rej = json_object();
    for (int k = OM_LIMIT_NONE + 1; k < OM_LIMIT__COUNT; k++)
        om_json_set(rej, om_limit_label((om_limit_kind)k), om_json_u64(t.rejections[k]));
    proxies = json_array();
    for (size_t i = 0; i < cl->n_trusted_proxies; i++) {
        om_format_cidr(&cl->trusted_proxies[i], cidr, sizeof(cidr));
        json_array_append_new(proxies, om_json_str(cidr));
    }
    doc = json_object();
    om_json_set(doc, "now_ms", json_integer((json_int_t)now));
    om_json_set(doc, "clients", om_json_u64(t.clients));
    om_json_set(doc, "max_clients", om_json_u64(t.max_clients));
    om_json_set(doc, "evictions", om_json_u64(t.evictions));
    om_json_set(doc, "rejections", rej);
    om_json_set(doc, "per_client", limits_json(&cl->per_client));
    om_json_set(doc, "per_user_count", om_json_u64(cl->n_per_user));
    om_json_set(doc, "trusted_proxies", proxies);
    om_json_set(doc, "top_by_bytes", list_json(srv->limiter, OM_CLIENTS_BY_BYTES, now, buf, n));
    om_json_set(doc, "top_by_requests",
                list_json(srv->limiter, OM_CLIENTS_BY_REQUESTS, now, buf, n));
    om_json_set(doc, "limited", list_json(srv->limiter, OM_CLIENTS_LIMITED, now, buf, n));
    free(buf);
    return om_admin_reply_json(req, MHD_HTTP_OK, doc);
}
