/* admin_json.c — replies, query arguments and JSON helpers shared by the
 * admin module's handlers (declared in admin_int.h).
 *
 * Design: every answer goes through om_admin_reply_*, which sets
 * req->status/bytes for the access log and the statistics and queues the
 * response at once (admin handlers never suspend).  JSON is built with
 * jansson and serialised once; strings from outside (upstream error text,
 * names) go through om_json_str so a stray byte can never make jansson drop
 * a field.  Query arguments arrive raw (the server installs an identity
 * unescape callback, see server/server.c), so they are percent-decoded here with
 * om_url_decode and bounded by the caller's buffer.
 */
#include "admin/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Headers and bookkeeping every admin answer gets. */
static void finish(struct om_req *req, unsigned status, struct MHD_Response *r, size_t len)
{
    /* Admin answers are live views: never cached by a browser or proxy. */
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    req->status = status;
    req->bytes = len;
}

static enum MHD_Result queue(struct om_req *req, unsigned status, struct MHD_Response *r,
                             size_t len)
{
    enum MHD_Result ret;
    if (r == NULL)
        return MHD_NO;
    finish(req, status, r, len);
    ret = MHD_queue_response(req->conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

void om_admin_set_json(struct om_req *req, unsigned status, json_t *doc)
{
    char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL; /* passed to MHD, which frees */
    struct MHD_Response *r = NULL;
    json_decref(doc);
    if (s != NULL &&
        (r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE)) == NULL)
        free(s);
    if (r == NULL) {
        om_admin_set_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "UNKNOWN",
                           "cannot build the answer (out of memory)");
        return;
    }
    MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
    if (req->resp != NULL)
        MHD_destroy_response(req->resp);
    req->resp = r;
    finish(req, status, r, strlen(s));
}

void om_admin_set_error(struct om_req *req, unsigned status, const char *code, const char *message)
{
    om_req_error(req, status, code, message);
    if (req->resp != NULL)
        finish(req, status, req->resp, 0);
}

enum MHD_Result om_admin_reply_owned(struct om_req *req, unsigned status,
                                     const char *content_type, char *buf, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", content_type);
    return queue(req, status, r, len);
}

enum MHD_Result om_admin_reply_json(struct om_req *req, unsigned status, json_t *doc)
{
    char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL; /* passed to MHD, which frees */
    json_decref(doc);
    if (s == NULL)
        return om_admin_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "UNKNOWN",
                                    "cannot build the answer (out of memory)");
    return om_admin_reply_owned(req, status, "application/json; charset=utf-8", s, strlen(s));
}

enum MHD_Result om_admin_reply_error(struct om_req *req, unsigned status, const char *code,
                                     const char *message)
{
    return om_admin_reply_error_hdr(req, status, code, message, NULL, NULL);
}

enum MHD_Result om_admin_reply_error_hdr(struct om_req *req, unsigned status, const char *code,
                                         const char *message, const char *hdr,
                                         const char *value)
{
    struct MHD_Response *r = om_http_error(code, message, NULL);
    req->err_code = code;
    if (r != NULL && hdr != NULL)
        MHD_add_response_header(r, hdr, value);
    return queue(req, status, r, 0);
}

int om_admin_arg(struct om_req *req, const char *key, char *out, size_t outsz)
{
    const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
    out[0] = '\0';
    if (v == NULL) {
        /* "?key" without "=" is present with no value in libmicrohttpd. */
        if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, key, strlen(key),
                                          NULL, NULL) == MHD_YES)
            return OM_OK;
        return OM_ERR_NOTFOUND;
    }
    return om_url_decode(out, outsz, v, strlen(v));
}

int om_admin_arg_uint(struct om_req *req, const char *key, uint64_t min, uint64_t max,
                      uint64_t def, uint64_t *out)
{
    char buf[24];
    char *end = NULL;
    int err = om_admin_arg(req, key, buf, sizeof(buf));

    *out = def;
    if (err == OM_ERR_NOTFOUND)
        return OM_OK;
    if (err != OM_OK)
        return OM_ERR_INVALID;
    /* Digits only: strtoull would accept "-1", " 1" and "+1". */
    if (buf[0] == '\0' || strspn(buf, "0123456789") != strlen(buf) || strlen(buf) > 19)
        return OM_ERR_INVALID;
    unsigned long long v = strtoull(buf, &end, 10);
    if (v < min || v > max)
        return OM_ERR_INVALID;
    *out = v;
    return OM_OK;
}

int om_admin_paging(struct om_req *req, uint64_t *page, size_t *per_page)
{
    uint64_t pp = 0;
    int err = om_admin_arg_uint(req, "page", 1, 1000000000ull, 1, page);
    if (err == OM_OK)
        err = om_admin_arg_uint(req, "per_page", 1, OM_ADMIN_PER_PAGE_MAX,
                                OM_ADMIN_PER_PAGE_DEFAULT, &pp);
    *per_page = (size_t)pp;
    return err;
}

json_t *om_json_str(const char *s)
{
    json_t *v;
    char *copy;

    if (s == NULL)
        return json_null();
    if ((v = json_string(s)) != NULL)
        return v;
    /* Not UTF-8: keep the ASCII, mark the rest. */
    if ((copy = strdup(s)) == NULL) /* freed below */
        return NULL;
    for (char *c = copy; *c != '\0'; c++)
        if ((unsigned char)*c >= 0x80)
            *c = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

json_t *om_json_u64(uint64_t v)
{
    /* json_int_t is long long; nothing we count gets near 2^63. */
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

void om_json_set(json_t *obj, const char *key, json_t *value)
{
    if (value != NULL)
        json_object_set_new(obj, key, value);
}

static bool host_ok(const char *h)
{
    size_t n = strlen(h);
    return n > 0 && n <= 255 &&
           strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") == n;
}

void om_admin_mirror_host(struct om_req *req, char *out, size_t outsz, bool *tls)
{
    const char *pub = req->srv->cfg->public_url;
    const char *host = NULL;

    *tls = req->srv->tls_cert_pem != NULL;
    if (pub != NULL && pub[0] != '\0') {
        const char *p = strstr(pub, "://");
        *tls = strncmp(pub, "https://", 8) == 0;
        host = p != NULL ? p + 3 : pub;
        snprintf(out, outsz, "%.*s", (int)strcspn(host, "/"), host);
        if (host_ok(out))
            return;
    }
    host = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Host");
    snprintf(out, outsz, "%s", host != NULL && host_ok(host) ? host : "localhost");
}

/* {allowed, verdict: allowed|denied|not_allowed, rule, message} */
json_t *om_admin_policy_json(const struct om_policy *p, const char *canonical)
{
    const char *rule = NULL;
    char msg[OM_POLICY_PATTERN_MAX + 64];
    om_policy_verdict v = om_policy_check(p, canonical, &rule);
    return json_pack("{s:b, s:s, s:o, s:o}", "allowed", v == OM_POLICY_ALLOWED, "verdict",
                     v == OM_POLICY_ALLOWED ? "allowed" : v == OM_POLICY_DENIED ? "denied"
                                                                             : "not_allowed",
                     "rule", rule != NULL ? om_json_str(rule) : json_null(), "message",
                     om_json_str(om_policy_explain(v, rule, msg, sizeof(msg))));
}
