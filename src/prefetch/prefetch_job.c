/* prefetch_job.c — one job of the server's prefetcher: its record of the
 * run and its JSON (see prefetch_job.h; called under the prefetcher's
 * mutex).
 *
 * The progress log exists so that a run started from the command line can
 * be one of the server's own jobs (`ocimirror prefetch` against a running
 * mirror submits it through POST /api/v1/prefetch and follows
 * GET /api/v1/prefetch/<id>?since=N): each record is one line the command
 * prints (an image starts, its manifest, each blob fetched or already
 * cached, a note, the image's result, a retry wait).  It is a ring of
 * OM_PF_LOG_CAP records so memory stays bounded whatever the job's size: a
 * follower that falls behind is told how many records it missed
 * ("dropped"), while the job's counters stay exact.
 */
#include "prefetch/prefetch_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {"queued", "running", "waiting", "done", "failed",
                                          "cancelled"};

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

/* Copies of n strings; NULL on allocation failure. */
static char **dup_strv(const char *const *v, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof(*out));
    for (size_t i = 0; out != NULL && i < n; i++) {
        if ((out[i] = strdup(v[i])) == NULL) {
            free_strv(out, i);
            out = NULL;
        }
    }
    return out;
}

struct om_pf_job *om_pf_job_new(const char *id, const char *kind, const char *const *images,
                                size_t n, const char *const *platforms, size_t np,
                                unsigned tries, uint64_t retry_ms)
{
    struct om_pf_job *j = calloc(1, sizeof(*j)); /* owned by the caller */
    if (j == NULL)
        return NULL;
    j->kind = kind;
    j->images = dup_strv(images, n);
    j->n = n;
    j->platforms = dup_strv(platforms, np);
    j->np = np;
    if (j->images == NULL || j->platforms == NULL) {
        om_pf_job_free(j);
        return NULL;
    }
    snprintf(j->id, sizeof(j->id), "%s", id);
    j->state = OM_PF_JOB_QUEUED;
    j->tries = tries;
    j->retry_ms = retry_ms;
    j->created_ms = om_now_ms();
    j->log_next = 1;
    atomic_init(&j->cancel, false);
    return j;
}

void om_pf_job_free(struct om_pf_job *j)
{
    if (j == NULL)
        return;
    free_strv(j->images, j->n);
    free_strv(j->platforms, j->np);
    for (size_t i = 0; i < j->n_failures; i++)
        free(j->failures[i].err);
    om_pf_job_log_drop(j);
    free(j);
}

bool om_pf_job_finished(const struct om_pf_job *j)
{
    return j->state == OM_PF_JOB_DONE || j->state == OM_PF_JOB_FAILED ||
           j->state == OM_PF_JOB_CANCELLED;
}

struct om_pf_err *om_pf_err_from(const struct om_pf_result *res)
{
    struct om_pf_err *e = calloc(1, sizeof(*e)); /* owned by the caller */
    if (e == NULL)
        return NULL;
    snprintf(e->code, sizeof(e->code), "%s", res->code[0] ? res->code : "internal");
    e->n_args = res->n_args < OM_PF_ARGS_MAX ? res->n_args : OM_PF_ARGS_MAX;
    memcpy(e->args, res->args, e->n_args * sizeof(e->args[0]));
    snprintf(e->message, sizeof(e->message), "%s", res->error);
    return e;
}

void om_pf_job_add_failure(struct om_pf_job *j, size_t image, struct om_pf_err *err)
{
    if (err == NULL)
        return;
    if (j->n_failures >= OM_PF_JOB_FAILURES_MAX) {
        free(err);
        return;
    }
    j->failures[j->n_failures].image = image;
    j->failures[j->n_failures].err = err;
    j->n_failures++;
}

/* ---- the log ------------------------------------------------------------ */

void om_pf_job_log(struct om_pf_job *j, const struct om_pf_rec *r)
{
    if (j->log == NULL && (j->log = calloc(OM_PF_LOG_CAP, sizeof(*j->log))) == NULL) {
        free(r->err);
        j->log_next++;          /* a follower sees it as dropped */
        return;
    }
    struct om_pf_rec *slot = &j->log[(j->log_next - 1) % OM_PF_LOG_CAP];
    free(slot->err);            /* the record it overwrites */
    *slot = *r;
    slot->seq = j->log_next++;
    slot->t_ms = om_now_ms();
}

void om_pf_job_log_drop(struct om_pf_job *j)
{
    if (j->log == NULL)
        return;
    for (size_t i = 0; i < OM_PF_LOG_CAP; i++)
        free(j->log[i].err);
    free(j->log);
    j->log = NULL;
}

/* ---- JSON ------------------------------------------------------------------ */

static json_t *strv_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

/* A string from a pull (an upstream's error text may be anything): never
 * NULL for bytes that are not UTF-8. */
static json_t *safe_str(const char *s)
{
    json_t *v = json_string(s);
    if (v == NULL) {
        char buf[OM_PF_ERR_MAX + 1];
        size_t i = 0;
        for (; s[i] != '\0' && i < sizeof(buf) - 1; i++)
            buf[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
        buf[i] = '\0';
        v = json_string(buf);
    }
    return v;
}

static void set(json_t *o, const char *k, json_t *v)
{
    if (v != NULL)
        json_object_set_new(o, k, v);
}

json_t *om_pf_err_json(const struct om_pf_err *e)
{
    json_t *o = json_object(), *vals = json_object();
    for (size_t i = 0; vals != NULL && i < e->n_args; i++) {
        const struct om_pf_arg *a = &e->args[i];
        char *end = NULL;
        if (a->key[0] == '#') {
            long long v = strtoll(a->value, &end, 10);
            if (a->value[0] != '\0' && end != NULL && *end == '\0') {
                set(vals, a->key + 1, json_integer((json_int_t)v));
                continue;
            }
        }
        set(vals, a->key[0] == '#' ? a->key + 1 : a->key, safe_str(a->value));
    }
    set(o, "code", json_string(e->code));
    set(o, "values", vals);
    set(o, "message", safe_str(e->message));
    return o;
}

json_t *om_pf_job_json(const struct om_pf_job *j)
{
    json_t *cur = json_null(), *errors = json_array(), *failures = json_array();
    for (size_t i = 0; errors != NULL && failures != NULL && i < j->n_failures; i++) {
        const char *image = j->failures[i].image < j->n ? j->images[j->failures[i].image] : NULL;
        const struct om_pf_err *e = j->failures[i].err;
        char line[OM_PREFETCH_IMAGE_MAX + OM_PF_ERR_MAX + 4];
        snprintf(line, sizeof(line), "%s%s%s", image ? image : "", image ? ": " : "", e->message);
        json_array_append_new(errors, safe_str(line));
        json_t *f = om_pf_err_json(e);
        set(f, "image", image ? json_string(image) : json_null());
        json_array_append_new(failures, f);
    }
    if (j->has_current && j->cur_image < j->n) {
        json_decref(cur);
        cur = json_pack("{s:s, s:I, s:I, s:I, s:I}", "image", j->images[j->cur_image],
                        "blobs_done", (json_int_t)j->cur_blobs_done, "blobs_total",
                        (json_int_t)j->cur_blobs_total, "blobs_cached",
                        (json_int_t)j->cur_blobs_cached, "bytes", (json_int_t)j->cur_bytes);
    }
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:I,"
                     " s:I, s:o, s:I, s:I, s:I, s:I}",
                     "id", j->id, "kind", j->kind, "state", state_names[j->state],
                     "images", strv_json(j->images, j->n),
                     "platforms", strv_json(j->platforms, j->np),
                     "done", (json_int_t)j->done, "failed", (json_int_t)j->failed,
                     "errors", errors ? errors : json_array(),
                     "failures", failures ? failures : json_array(),
                     "try", (json_int_t)j->try_no, "tries", (json_int_t)j->tries,
                     "retry_interval_ms", (json_int_t)j->retry_ms,
                     "bytes", (json_int_t)j->bytes, "blobs", (json_int_t)j->blobs,
                     "blobs_cached", (json_int_t)j->blobs_cached,
                     "current", cur ? cur : json_null(),
                     "created_ms", (json_int_t)j->created_ms,
                     "started_ms", (json_int_t)j->started_ms,
                     "finished_ms", (json_int_t)j->finished_ms,
                     "next_try_ms", (json_int_t)j->next_try_ms);
}

static const char *blob_event_name(int ev)
{
    return ev == OM_PF_BLOB_FETCHED ? "fetched" : ev == OM_PF_BLOB_CACHED ? "cached" : "progress";
}

static const char *item_state_name(int st)
{
    return st == OM_PF_OK ? "ok" : st == OM_PF_FAILED ? "failed" : "retry";
}

static json_t *rec_json(const struct om_pf_rec *r)
{
    json_t *o = json_object();
    set(o, "seq", json_integer((json_int_t)r->seq));
    set(o, "t_ms", json_integer(r->t_ms));
    switch (r->type) {
    case OM_PF_REC_IMAGE_START:
        set(o, "type", json_string("image_start"));
        set(o, "image", json_integer((json_int_t)r->image));
        set(o, "try", json_integer(r->a));
        set(o, "tries", json_integer(r->b));
        break;
    case OM_PF_REC_MANIFEST:
        set(o, "type", json_string("manifest"));
        set(o, "image", json_integer((json_int_t)r->image));
        set(o, "digest", json_string(r->digest));
        set(o, "media_type", safe_str(r->text));
        set(o, "platforms", json_integer((json_int_t)r->c));
        set(o, "blobs", json_integer((json_int_t)r->d));
        break;
    case OM_PF_REC_BLOB:
        set(o, "type", json_string("blob"));
        set(o, "image", json_integer((json_int_t)r->image));
        set(o, "event", json_string(blob_event_name(r->ev)));
        set(o, "digest", json_string(r->digest));
        set(o, "index", json_integer(r->a));
        set(o, "of", json_integer(r->b));
        set(o, "bytes", json_integer((json_int_t)r->bytes));
        set(o, "total", json_integer(r->total));
        break;
    case OM_PF_REC_NOTE:
        set(o, "type", json_string("note"));
        set(o, "image", json_integer((json_int_t)r->image));
        set(o, "code", json_string(r->text));
        set(o, "value", safe_str(r->value));
        break;
    case OM_PF_REC_IMAGE_END:
        set(o, "type", json_string("image_end"));
        set(o, "image", json_integer((json_int_t)r->image));
        set(o, "state", json_string(item_state_name(r->ev)));
        set(o, "try", json_integer(r->a));
        set(o, "tries", json_integer(r->b));
        set(o, "ms", json_integer(r->total));
        set(o, "digest", r->digest[0] ? json_string(r->digest) : json_null());
        set(o, "blobs", json_integer((json_int_t)r->c));
        set(o, "cached", json_integer((json_int_t)r->d));
        set(o, "bytes", json_integer((json_int_t)r->bytes));
        set(o, "permanent", json_boolean(r->permanent));
        set(o, "error", r->err != NULL ? om_pf_err_json(r->err) : json_null());
        break;
    case OM_PF_REC_WAITING:
        set(o, "type", json_string("waiting"));
        set(o, "try", json_integer(r->a));
        set(o, "tries", json_integer(r->b));
        set(o, "pending", json_integer((json_int_t)r->c));
        set(o, "ms", json_integer((json_int_t)r->bytes));
        break;
    }
    return o;
}

json_t *om_pf_job_log_json(const struct om_pf_job *j, uint64_t since)
{
    uint64_t last = j->log_next - 1;                 /* newest seq, 0: none */
    uint64_t oldest = last >= OM_PF_LOG_CAP ? last - OM_PF_LOG_CAP + 1 : 1;
    uint64_t from = since + 1, dropped = 0;
    json_t *log = json_array();

    if (from < oldest) {
        dropped = oldest - from;
        from = oldest;
    }
    if (j->log == NULL && from <= last) {          /* allocation failed or dropped */
        dropped += last - from + 1;
        from = last + 1;
    }
    uint64_t to = from + OM_PF_LOG_PAGE - 1 < last ? from + OM_PF_LOG_PAGE - 1 : last;
    for (uint64_t s = from; log != NULL && s <= to && j->log != NULL; s++) {
        const struct om_pf_rec *r = &j->log[(s - 1) % OM_PF_LOG_CAP];
        if (r->seq == s)        /* not a slot left empty by a failed allocation */
            json_array_append_new(log, rec_json(r));
    }
    /* What to pass as `since` next time: the last record sent, or what
     * was skipped. */
    uint64_t next = to >= from ? to : from - 1;
    return json_pack("{s:o, s:o, s:I, s:I, s:b}", "job", om_pf_job_json(j), "log",
                     log ? log : json_array(), "since", (json_int_t)next, "dropped",
                     (json_int_t)dropped, "more", to >= from && to < last);
}
