/* admin_actions.c — the admin endpoints that change state, thin adapters
 * over the modules that do the work:
 *   POST /api/v1/gc        om_gc_run_now (gc.h)         on a job thread
 *   GET  /api/v1/gc        om_gc_status
 *   POST /api/v1/evict     om_gc_evict_image            on a job thread
 *   POST /api/v1/prefetch  om_prefetch_submit (prefetch.h), answers 202
 *   GET  /api/v1/prefetch  om_prefetch_jobs_json
 *   GET  /api/v1/prefetch/<id>?since=N       om_prefetch_job_json
 *   POST /api/v1/prefetch/<id>/cancel        om_prefetch_cancel
 * Access (the admin token) is checked by the dispatcher before these run.
 *
 * Design: a GC run walks the whole store and an eviction rewrites the
 * index, so they must not hold an HTTP thread: the request is suspended and
 * the work runs on the job pool, exactly like a manifest fetch (api_v2.c's
 * protocol: phase 1 while the job runs; the job fills req->resp and calls
 * om_req_job_done, and the handler queues it).  Request bodies are JSON of
 * at most OM_ADMIN_BODY_MAX bytes (api_v2.c keeps no more), parsed with
 * jansson.
 */
#include "admin/admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/gc.h"
#include "core/config.h"
#include "core/log.h"
#include "prefetch/prefetch.h"

/* The POST body as a JSON object; NULL after answering 400/413. */
static json_t *body_object(struct om_req *req, enum MHD_Result *ret)
{
    json_error_t jerr;
    json_t *doc;

    if (req->upload_seen > OM_ADMIN_BODY_MAX) {
        *ret = om_admin_reply_error(req, MHD_HTTP_CONTENT_TOO_LARGE, "SIZE_INVALID",
                                    "request body over 64 KiB");
        return NULL;
    }
    doc = req->body != NULL ? json_loadb(req->body, req->body_len, 0, &jerr) : NULL;
    if (!json_is_object(doc)) {
        json_decref(doc);
        *ret = om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED",
                                    "the body must be a JSON object");
        return NULL;
    }
    return doc;
}

/* Suspend and run fn(arg) on the job pool; arg is freed by fn. */
static enum MHD_Result start_job(struct om_req *req, om_job_fn fn, void *arg)
{
    req->phase = 1;
    MHD_suspend_connection(req->conn);
    if (om_jobs_submit(req->srv->jobs, fn, arg) != OM_OK) {
        free(arg);
        om_admin_set_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "mirror overloaded");
        om_req_job_done(req);
    }
    return MHD_YES;
}

/* ---- GC ------------------------------------------------------------------- */

static json_t *gc_result_json(const struct om_gc_result *r)
{
    json_t *o = json_object();
    om_json_set(o, "dry_run", json_boolean(r->dry_run));
    om_json_set(o, "started_ms", json_integer(r->started_ms));
    om_json_set(o, "duration_ms", json_integer(r->duration_ms));
    om_json_set(o, "max_size", om_json_u64(r->max_size));
    om_json_set(o, "used_before", om_json_u64(r->used_before));
    om_json_set(o, "used_after", om_json_u64(r->used_after));
    om_json_set(o, "evicted_images", om_json_u64(r->evicted_images));
    om_json_set(o, "removed_blobs", om_json_u64(r->removed_blobs));
    om_json_set(o, "freed_bytes", om_json_u64(r->freed_bytes));
    om_json_set(o, "evicted_bytes", om_json_u64(r->evicted_bytes));
    om_json_set(o, "orphan_blobs", om_json_u64(r->orphan_blobs));
    om_json_set(o, "orphan_bytes", om_json_u64(r->orphan_bytes));
    om_json_set(o, "removed_ingest", om_json_u64(r->removed_ingest));
    om_json_set(o, "kept_recent", om_json_u64(r->kept_recent));
    om_json_set(o, "skipped_touched", om_json_u64(r->skipped_touched));
    om_json_set(o, "aborted_uploads", om_json_u64(r->aborted_uploads));
    /* A cluster: another replica held the GC lease, this run did nothing. */
    om_json_set(o, "skipped", json_boolean(r->not_leader));
    om_json_set(o, "leader", r->not_leader && r->leader[0] ? om_json_str(r->leader) : json_null());
    return o;
}

static void gc_job(void *arg)
{
    struct om_req *req = arg;
    struct om_gc_result res;
    int err;

    memset(&res, 0, sizeof(res));
    err = om_gc_run_now(req->srv->gc, &res);
    if (err == OM_OK)
        om_admin_set_json(req, MHD_HTTP_OK, gc_result_json(&res));
    else if (err == OM_ERR_INVALID)
        om_admin_set_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "GC is not running");
    else
        om_admin_set_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "UNKNOWN", om_strerror(err));
    om_req_job_done(req);
}

enum MHD_Result om_admin_gc(struct om_req *req)
{
    om_log_kv(OM_LOG_INFO, "admin: GC requested", NULL);
    /* The job reads only req; nothing to allocate. */
    req->phase = 1;
    MHD_suspend_connection(req->conn);
    if (om_jobs_submit(req->srv->jobs, gc_job, req) != OM_OK) {
        om_admin_set_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "mirror overloaded");
        om_req_job_done(req);
    }
    return MHD_YES;
}

enum MHD_Result om_admin_gc_status(struct om_req *req)
{
    struct om_gc_result last;
    struct om_gc_totals t;
    int err;

    memset(&last, 0, sizeof(last));
    memset(&t, 0, sizeof(t));
    err = om_gc_status(req->srv->gc, &last, &t);
    json_t *totals = json_object();
    om_json_set(totals, "runs", om_json_u64(t.runs));
    om_json_set(totals, "evicted_images", om_json_u64(t.evicted_images));
    om_json_set(totals, "removed_blobs", om_json_u64(t.removed_blobs));
    om_json_set(totals, "freed_bytes", om_json_u64(t.freed_bytes));
    om_json_set(totals, "removed_ingest", om_json_u64(t.removed_ingest));
    om_json_set(totals, "errors", om_json_u64(t.errors));
    om_json_set(totals, "last_run_ms", t.last_run_ms > 0 ? json_integer(t.last_run_ms) : json_null());
    return om_admin_reply_json(req, MHD_HTTP_OK,
                               json_pack("{s:o, s:o}", "last",
                                         err == OM_OK ? gc_result_json(&last) : json_null(),
                                         "totals", totals));
}

/* ---- evict ---------------------------------------------------------------- */

struct evict_job {
    struct om_req *req;
    char name[OM_NAME_MAX + 1];
    char reference[OM_DIGEST_MAX + 1];   /* a tag (≤ 128) or a digest (71) */
};

static void evict_job(void *arg)
{
    struct evict_job *j = arg;
    struct om_req *req = j->req;
    uint64_t freed = 0;
    int err = om_gc_evict_image(req->srv->gc, j->name, j->reference, &freed);

    if (err == OM_OK) {
        om_log_kv(OM_LOG_INFO, "admin: image evicted", "repo", j->name, "reference",
                  j->reference, NULL);
        om_admin_set_json(req, MHD_HTTP_OK, json_pack("{s:o}", "freed_bytes", om_json_u64(freed)));
    } else if (err == OM_ERR_NOTFOUND) {
        om_admin_set_error(req, MHD_HTTP_NOT_FOUND, "MANIFEST_UNKNOWN",
                           "no such tag or digest in that repository");
    } else if (err == OM_ERR_INVALID) {
        om_admin_set_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID", "invalid name or reference");
    } else if (err == OM_ERR_TOOMANY) {
        om_admin_set_error(req, MHD_HTTP_CONFLICT, "UNAVAILABLE",
                           "another replica of the cluster is running GC; try again");
    } else if (err == OM_ERR_UNAVAILABLE) {
        om_admin_set_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                           "the cluster's redis is unavailable; try again");
    } else {
        om_admin_set_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "UNKNOWN", om_strerror(err));
    }
    free(j);
    om_req_job_done(req);
}

enum MHD_Result om_admin_evict(struct om_req *req)
{
    enum MHD_Result ret = MHD_NO;
    json_t *doc = body_object(req, &ret); /* freed below */
    const char *name, *ref;
    struct evict_job *j = NULL;

    if (doc == NULL)
        return ret;
    name = json_string_value(json_object_get(doc, "name"));
    ref = json_string_value(json_object_get(doc, "reference"));
    if (name == NULL || ref == NULL || name[0] == '\0' || strlen(name) > OM_NAME_MAX ||
        ref[0] == '\0' || strlen(ref) > OM_DIGEST_MAX) {
        ret = om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID",
                                   "body: {\"name\": canonical repository name, "
                                   "\"reference\": tag or digest}");
        goto done;
    }
    j = calloc(1, sizeof(*j)); /* owned by the job (evict_job frees it) */
    if (j == NULL) {
        ret = om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNKNOWN", "out of memory");
        goto done;
    }
    j->req = req;
    snprintf(j->name, sizeof(j->name), "%s", name);
    snprintf(j->reference, sizeof(j->reference), "%s", ref);
    ret = start_job(req, evict_job, j);
done:
    json_decref(doc);
    return ret;
}

/* ---- prefetch --------------------------------------------------------------- */

/* The strings of a JSON array (borrowed from it) into v; -1 if not all
 * strings or more than max. */
static long string_array(const json_t *arr, const char **v, size_t max)
{
    size_t i;
    json_t *e;
    if (arr == NULL)
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > max)
        return -1;
    json_array_foreach(arr, i, e) {
        if ((v[i] = json_string_value(e)) == NULL)
            return -1;
    }
    return (long)json_array_size(arr);
}

/* The optional run settings of a prefetch POST: "kind" ("admin" | "cli"),
 * "retries" (tries per image, 1..100), "retry_interval" (a duration as in
 * the config, "30s", up to 7 days).  false when one is malformed. */
static bool prefetch_opts(const json_t *doc, struct om_prefetch_opts *o)
{
    const json_t *kind = json_object_get(doc, "kind"), *tries = json_object_get(doc, "retries");
    const json_t *ri = json_object_get(doc, "retry_interval");
    uint64_t ms = 0;

    *o = (struct om_prefetch_opts){.kind = "admin", .tries = 0, .retry_ms = -1};
    if (kind != NULL) {
        const char *k = json_string_value(kind);
        if (k == NULL || (strcmp(k, "admin") != 0 && strcmp(k, "cli") != 0))
            return false;
        o->kind = strcmp(k, "cli") == 0 ? "cli" : "admin";
    }
    if (tries != NULL) {
        if (!json_is_integer(tries) || json_integer_value(tries) < 1 ||
            json_integer_value(tries) > 100)
            return false;
        o->tries = (unsigned)json_integer_value(tries);
    }
    if (ri != NULL) {
        const char *v = json_string_value(ri);
        if (v == NULL || om_parse_duration_ms(v, &ms) != OM_OK || ms > 7ull * 24 * 3600 * 1000)
            return false;
        o->retry_ms = (int64_t)ms;
    }
    return true;
}

enum MHD_Result om_admin_prefetch_post(struct om_req *req)
{
    enum MHD_Result ret = MHD_NO;
    json_t *doc = body_object(req, &ret); /* freed below */
    const char *images[OM_MAX_PREFETCH_IMAGES], *plats[OM_MAX_PREFETCH_PLATFORMS];
    char id[OM_PREFETCH_ID_MAX + 1];
    struct om_prefetch_opts opts;
    long ni, np;
    int err;

    if (doc == NULL)
        return ret;
    ni = string_array(json_object_get(doc, "images"), images, OM_MAX_PREFETCH_IMAGES);
    np = string_array(json_object_get(doc, "platforms"), plats, OM_MAX_PREFETCH_PLATFORMS);
    if (ni <= 0 || np < 0 || !prefetch_opts(doc, &opts)) {
        ret = om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED",
                                   "body: {\"images\": [1..256 references], "
                                   "\"platforms\": [\"os/arch\", ...], \"retries\": 1..100, "
                                   "\"retry_interval\": \"30s\", \"kind\": \"admin\"|\"cli\"} "
                                   "(all but images optional)");
        goto done;
    }
    err = om_prefetch_submit(req->srv, images, (size_t)ni, plats, (size_t)np, &opts, id,
                             sizeof(id));
    switch (err) {
    case OM_OK:
        ret = om_admin_reply_json(req, MHD_HTTP_ACCEPTED,
                                  json_pack("{s:s, s:s}", "id", id, "state", "queued"));
        break;
    case OM_ERR_INVALID:
        ret = om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "NAME_INVALID",
                                   "an image reference or platform is not valid");
        break;
    case OM_ERR_TOOMANY:
        ret = om_admin_reply_error(req, MHD_HTTP_TOO_MANY_REQUESTS, "TOOMANYREQUESTS",
                                   "too many prefetch jobs queued");
        break;
    default:
        ret = om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                   "the prefetcher is not running");
        break;
    }
done:
    json_decref(doc);
    return ret;
}

/* A job id from the path: "pf-12" (what om_prefetch_submit makes). */
static bool job_id_ok(const char *s, size_t len)
{
    if (len == 0 || len > OM_PREFETCH_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static enum MHD_Result job_answer(struct om_req *req, int err, json_t *doc)
{
    if (err == OM_OK)
        return om_admin_reply_json(req, MHD_HTTP_OK, doc);
    json_decref(doc);
    if (err == OM_ERR_NOTFOUND)
        return om_admin_reply_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND",
                                    "no such prefetch job (finished jobs are kept for a while)");
    if (err == OM_ERR_DENIED)
        return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                    "the prefetcher is not running");
    return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNKNOWN", "out of memory");
}

enum MHD_Result om_admin_prefetch_job(struct om_req *req, const char *rest)
{
    char id[OM_PREFETCH_ID_MAX + 1];
    uint64_t since = 0;
    json_t *doc = NULL;
    size_t len = strlen(rest);

    if (!job_id_ok(rest, len))
        return om_admin_reply_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such prefetch job");
    if (om_admin_arg_uint(req, "since", 0, INT64_MAX, 0, &since) != OM_OK)
        return om_admin_reply_error(req, MHD_HTTP_BAD_REQUEST, "PAGINATION_NUMBER_INVALID",
                                    "since: the last record's seq (0 for all)");
    memcpy(id, rest, len + 1);
    int err = om_prefetch_job_json(req->srv, id, since, &doc);
    return job_answer(req, err, doc);
}

enum MHD_Result om_admin_prefetch_cancel(struct om_req *req, const char *rest)
{
    char id[OM_PREFETCH_ID_MAX + 1];
    const char *slash = strchr(rest, '/');
    json_t *doc = NULL;
    size_t len = slash != NULL ? (size_t)(slash - rest) : 0;

    if (slash == NULL || strcmp(slash, "/cancel") != 0 || !job_id_ok(rest, len))
        return om_admin_reply_error(req, MHD_HTTP_NOT_FOUND, "NOT_FOUND",
                                    "POST /api/v1/prefetch/<id>/cancel");
    memcpy(id, rest, len);
    id[len] = '\0';
    int err = om_prefetch_cancel(req->srv, id, &doc);
    return job_answer(req, err, doc);
}

enum MHD_Result om_admin_prefetch_get(struct om_req *req)
{
    json_t *doc = om_prefetch_jobs_json(req->srv);
    if (doc == NULL)
        return om_admin_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                    "the prefetcher is not running");
    return om_admin_reply_json(req, MHD_HTTP_OK, doc);
}
