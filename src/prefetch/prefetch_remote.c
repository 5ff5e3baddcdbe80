/* prefetch_remote.c — run a list of images as jobs of a running mirror's
 * own prefetcher, through its admin API, and report their progress through
 * the same hooks as a local run (prefetch_int.h, om_pf_remote_run).
 *
 * Why: `ocimirror prefetch` beside a running server used to pull through
 * its /v2/ like any client.  It then could not tell a blob the mirror
 * already held from one it fetched (both are a 200 with the bytes), so it
 * said "fetched" while the server logged a cache hit; and the run was
 * invisible in the server's UI and events.  As a job of the server's
 * prefetcher the run is done in-process there, where the store says which
 * blobs are cached, and it is listed and logged like any other job.
 *
 *   1. Items whose reference does not parse fail here (a job is all or
 *      nothing: the server refuses one bad reference with 400).
 *   2. The rest go in jobs of at most OM_MAX_PREFETCH_IMAGES images and
 *      BODY_BUDGET bytes of JSON (the API's limits), one job at a time:
 *      POST /api/v1/prefetch {"images","platforms","kind":"cli",
 *      "retries","retry_interval"} → 202 {"id"}.
 *   3. GET /api/v1/prefetch/<id>?since=N every POLL_MS while nothing is
 *      new: each record becomes the hook call it stands for (image start,
 *      manifest, blob, note, image end, retry wait); records the server no
 *      longer kept become one note.  When the job is finished, the job's
 *      own result settles every item the records did not (its `failures`).
 *   4. A stop flag (SIGINT) cancels the job there (POST .../cancel) and the
 *      job is followed until it says so.
 * Only the first submission decides whether the mirror takes jobs at all;
 * if it does not (an older server, no token), nothing ran and the caller
 * pulls itself.
 *
 * Memory: answers are read up to ANSWER_MAX bytes; nothing is kept
 * between polls but the item states.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hash.h"
#include "prefetch/prefetch_int.h"

#define ANSWER_MAX (8u * 1024 * 1024)
#define BODY_BUDGET (60u * 1024)       /* < OM_ADMIN_BODY_MAX (64 KiB) */
#define POLL_MS 250
#define REQUEST_TIMEOUT_MS 30000L
#define LOST_TRIES 20                  /* failed polls in a row before giving up */
#define CANCEL_WAIT_MS 20000

struct buf {
    char *p;                           /* owned */
    size_t len, cap;
    bool over;
};

static size_t buf_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t n = size * nmemb;
    if (n > ANSWER_MAX - b->len) {
        b->over = true;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL)
            return 0;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One request to the admin API.  *status gets the HTTP status (0: none),
 * *doc the parsed JSON answer (a new reference, or NULL).  OM_OK when an
 * answer came (any status), else OM_ERR_UPSTREAM with why set. */
static int call(const struct om_pf_remote *r, const char *method, const char *path,
                const char *body, long *status, json_t **doc, char *why, size_t whysz)
{
    int err = OM_ERR_UPSTREAM;
    char url[OM_PF_BASE_MAX + 128], auth[1024];
    struct curl_slist *hdrs = NULL;
    struct buf b = {0};
    CURL *h = curl_easy_init();

    *status = 0;
    *doc = NULL;
    if (h == NULL) {
        snprintf(why, whysz, "out of memory");
        goto done;
    }
    snprintf(url, sizeof(url), "%s%s", r->t->base, path);
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (body != NULL)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (r->token != NULL && r->token[0] != '\0' &&
        (size_t)snprintf(auth, sizeof(auth), "Authorization: Bearer %s", r->token) < sizeof(auth))
        hdrs = curl_slist_append(hdrs, auth);
    CURLcode rc = om_pf_curl_setup(r->t, h, url);
    /* Not aborted by a stop flag: the cancel request is sent after one. */
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_NOPROGRESS, 1L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (rc == CURLE_OK && body != NULL)
        rc = curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    if (rc == CURLE_OK && strcmp(method, "POST") == 0 && body == NULL)
        rc = curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, buf_write);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        snprintf(why, whysz, "%s %s: %s", method, path,
                 b.over ? "answer too large" : curl_easy_strerror(rc));
        goto done;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    *doc = b.len > 0 ? json_loadb(b.p, b.len, 0, NULL) : NULL;
    err = OM_OK;
done:
    free(b.p);
    curl_slist_free_all(hdrs);
    if (h != NULL)
        curl_easy_cleanup(h);
    return err;
}

/* "HTTP 401 UNAUTHORIZED: admin token required" from an error answer. */
static void describe(long status, const json_t *doc, char *out, size_t outsz)
{
    json_t *e0 = json_array_get(json_object_get(doc, "errors"), 0);
    const char *code = json_string_value(json_object_get(e0, "code"));
    const char *msg = json_string_value(json_object_get(e0, "message"));
    snprintf(out, outsz, "HTTP %ld%s%s%s%s", status, code ? " " : "", code ? code : "",
             msg ? ": " : "", msg ? msg : "");
}

/* ---- following a job ---------------------------------------------------- */

struct follow {
    const struct om_pf_remote *r;
    struct om_pf_item *items;          /* all the caller's items */
    size_t n;                          /* of them */
    const size_t *idx;                 /* job image k is items[idx[k]] */
    size_t count;                      /* images in this job */
    const struct om_pf_run_hooks *hooks;
    char id[OM_PREFETCH_ID_MAX + 1];
    size_t cur;                        /* job image of the last image_start, SIZE_MAX: none */
};

static size_t jsize(const json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    return v > 0 ? (size_t)v : 0;
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

/* An error object {"code","values","message"} into res (replacing what
 * it held). */
static void set_error(struct om_pf_result *res, const json_t *e, bool permanent)
{
    const char *key, *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    json_t *v;
    res->error[0] = '\0';
    if (!om_pf_fail(res, permanent, code != NULL ? code : "internal", "%s",
                    msg != NULL ? msg : "failed on the mirror"))
        return;
    json_object_foreach((json_t *)json_object_get(e, "values"), key, v) {
        if (json_is_integer(v)) {
            char k[24];
            snprintf(k, sizeof(k), "#%s", key);
            om_pf_fail_arg(res, k, "%lld", (long long)json_integer_value(v));
        } else if (json_is_string(v)) {
            om_pf_fail_arg(res, key, "%s", json_string_value(v));
        }
    }
}

/* One record of the job's log → the hook it stands for. */
static void replay(struct follow *f, const json_t *rec)
{
    const struct om_pf_run_hooks *hk = f->hooks;
    const char *type = jstr(rec, "type");
    size_t k = jsize(rec, "image");
    size_t i = k < f->count ? f->idx[k] : SIZE_MAX;
    om_digest d = {0};
    const char *ds = jstr(rec, "digest");

    if (ds[0] != '\0' && om_digest_parse(&d, ds, strlen(ds)) != OM_OK)
        snprintf(d.str, sizeof(d.str), "%s", ds);
    if (strcmp(type, "waiting") == 0) {
        if (hk->waiting != NULL)
            hk->waiting(hk->ud, (unsigned)jsize(rec, "try"), (unsigned)jsize(rec, "tries"),
                        jsize(rec, "pending"), (uint64_t)jsize(rec, "ms"));
        return;
    }
    if (i == SIZE_MAX)
        return;                        /* not an image of this job: ignore */
    /* The records of an image follow its image_start; when that one was
     * among the records the mirror no longer kept, say it here. */
    unsigned try_no = (unsigned)jsize(rec, "try"), tries = (unsigned)jsize(rec, "tries");
    if (strcmp(type, "image_start") != 0 && f->cur != k && hk->image_start != NULL)
        hk->image_start(hk->ud, i, f->n, try_no ? try_no : 1, tries ? tries : 1);
    f->cur = k;
    if (strcmp(type, "image_start") == 0) {
        if (hk->image_start != NULL)
            hk->image_start(hk->ud, i, f->n, try_no, tries);
    } else if (strcmp(type, "manifest") == 0) {
        if (hk->obs.manifest != NULL)
            hk->obs.manifest(hk->obs.ud, &d, jstr(rec, "media_type"), jsize(rec, "platforms"),
                             jsize(rec, "blobs"));
    } else if (strcmp(type, "blob") == 0) {
        const char *ev = jstr(rec, "event");
        om_pf_blob_event e = strcmp(ev, "fetched") == 0  ? OM_PF_BLOB_FETCHED
                             : strcmp(ev, "cached") == 0 ? OM_PF_BLOB_CACHED
                                                         : OM_PF_BLOB_PROGRESS;
        json_int_t total = json_integer_value(json_object_get(rec, "total"));
        if (hk->obs.blob != NULL)
            hk->obs.blob(hk->obs.ud, e, &d, jsize(rec, "index"), jsize(rec, "of"),
                         (uint64_t)jsize(rec, "bytes"), (int64_t)total);
    } else if (strcmp(type, "note") == 0) {
        char msg[160];
        if (strcmp(jstr(rec, "code"), "platform_missing") == 0)
            snprintf(msg, sizeof(msg), "the index has no %s manifest; skipped", jstr(rec, "value"));
        else
            snprintf(msg, sizeof(msg), "%s %s", jstr(rec, "code"), jstr(rec, "value"));
        if (hk->obs.note != NULL)
            hk->obs.note(hk->obs.ud, jstr(rec, "code"), jstr(rec, "value"), msg);
    } else if (strcmp(type, "image_end") == 0) {
        struct om_pf_item *it = &f->items[i];
        const char *st = jstr(rec, "state");
        it->res = (struct om_pf_result){0};
        it->res.have_digest = ds[0] != '\0';
        it->res.digest = d;
        it->res.bytes = (uint64_t)jsize(rec, "bytes");
        it->res.blobs = jsize(rec, "blobs");
        it->res.blobs_cached = jsize(rec, "cached");
        it->res.permanent = json_is_true(json_object_get(rec, "permanent"));
        if (json_is_object(json_object_get(rec, "error")))
            set_error(&it->res, json_object_get(rec, "error"), it->res.permanent);
        it->state = strcmp(st, "ok") == 0 ? OM_PF_OK : strcmp(st, "failed") == 0 ? OM_PF_FAILED
                                                                               : OM_PF_PENDING;
        if (hk->image_end != NULL)
            hk->image_end(hk->ud, i, f->n, try_no, tries, it, (uint64_t)jsize(rec, "ms"));
    }
}

/* The job is finished: what its records did not settle, its result does
 * (the images it names as failed; the others are done, unless it failed
 * more than it names or was cancelled). */
static void settle(struct follow *f, const json_t *job)
{
    const char *state = jstr(job, "state");
    size_t k, n_named = 0;
    json_t *fl;
    bool *named = calloc(f->count ? f->count : 1, sizeof(*named));
    json_array_foreach(json_object_get(job, "failures"), k, fl) {
        const char *image = json_string_value(json_object_get(fl, "image"));
        for (size_t m = 0; named != NULL && image != NULL && m < f->count; m++) {
            struct om_pf_item *it = &f->items[f->idx[m]];
            if (!named[m] && strcmp(it->image, image) == 0) {
                named[m] = true;
                n_named++;
                if (it->state != OM_PF_FAILED) {
                    it->state = OM_PF_FAILED;
                    set_error(&it->res, fl, true);
                }
                break;
            }
        }
    }
    bool all_named = named != NULL && n_named >= jsize(job, "failed");
    for (size_t m = 0; m < f->count; m++) {
        struct om_pf_item *it = &f->items[f->idx[m]];
        if (it->state != OM_PF_PENDING)
            continue;
        if (strcmp(state, "done") == 0 || (strcmp(state, "failed") == 0 && all_named)) {
            it->state = OM_PF_OK;
        } else {
            it->state = OM_PF_FAILED;
            if (strcmp(state, "cancelled") == 0)
                om_pf_fail(&it->res, true, "cancelled", "cancelled on the mirror (job %s)",
                           f->id);
            else
                om_pf_fail(&it->res, true, "internal", "failed on the mirror (job %s)", f->id);
        }
    }
    free(named);
}

/* Fail the job's unsettled items: the mirror stopped answering. */
static void lost(struct follow *f, const char *why)
{
    for (size_t m = 0; m < f->count; m++) {
        struct om_pf_item *it = &f->items[f->idx[m]];
        if (it->state == OM_PF_PENDING &&
            om_pf_fail(&it->res, false, "lost", "lost the mirror's job %s: %s", f->id, why))
            om_pf_fail_arg(&it->res, "job", "%s", f->id);
        if (it->state == OM_PF_PENDING)
            it->state = OM_PF_FAILED;
    }
}

static void follow_job(struct follow *f)
{
    char path[128], why[OM_PF_ERR_MAX];
    uint64_t since = 0;
    unsigned misses = 0;
    bool cancel_sent = false, told = false;
    int64_t cancel_deadline = 0;

    for (;;) {
        long status = 0;
        json_t *doc = NULL;
        if (!cancel_sent && om_pf_stopped(f->r->t)) {
            snprintf(path, sizeof(path), "/api/v1/prefetch/%s/cancel", f->id);
            call(f->r, "POST", path, NULL, &status, &doc, why, sizeof(why));
            json_decref(doc);
            doc = NULL;
            cancel_sent = true;
            cancel_deadline = om_now_us() + CANCEL_WAIT_MS * 1000LL;
        }
        snprintf(path, sizeof(path), "/api/v1/prefetch/%s?since=%llu", f->id,
                 (unsigned long long)since);
        int err = call(f->r, "GET", path, NULL, &status, &doc, why, sizeof(why));
        if (err != OM_OK || status != 200 || !json_is_object(json_object_get(doc, "job"))) {
            if (err == OM_OK)
                describe(status, doc, why, sizeof(why));
            json_decref(doc);
            if (++misses >= LOST_TRIES || (cancel_sent && om_now_us() > cancel_deadline) ||
                status == 404) {
                lost(f, why);
                return;
            }
            sleep_ms(1000);
            continue;
        }
        misses = 0;
        const json_t *job = json_object_get(doc, "job");
        if (!told && f->r->job != NULL) {
            char plist[OM_MAX_PREFETCH_PLATFORMS * (OM_PREFETCH_PLATFORM_MAX + 2)] = "";
            size_t k;
            json_t *p;
            json_array_foreach(json_object_get(job, "platforms"), k, p)
                snprintf(plist + strlen(plist), sizeof(plist) - strlen(plist), "%s%s",
                         k ? ", " : "", json_string_value(p) ? json_string_value(p) : "?");
            f->r->job(f->r->ud, f->id, f->count, plist, strcmp(jstr(job, "state"), "queued") == 0);
            told = true;
        }
        size_t dropped = jsize(doc, "dropped"), k;
        json_t *rec;
        if (dropped > 0 && f->hooks->obs.note != NULL) {
            char msg[96], n_s[24];
            snprintf(n_s, sizeof(n_s), "%zu", dropped);
            snprintf(msg, sizeof(msg), "(%zu progress lines of the mirror not shown)", dropped);
            f->hooks->obs.note(f->hooks->obs.ud, "records_dropped", n_s, msg);
        }
        json_array_foreach(json_object_get(doc, "log"), k, rec)
            replay(f, rec);
        json_int_t next = json_integer_value(json_object_get(doc, "since"));
        if (next > 0)
            since = (uint64_t)next;
        const char *state = jstr(job, "state");
        bool finished = strcmp(state, "done") == 0 || strcmp(state, "failed") == 0 ||
                        strcmp(state, "cancelled") == 0;
        bool more = json_is_true(json_object_get(doc, "more"));
        if (finished && !more) {
            settle(f, job);
            json_decref(doc);
            return;
        }
        json_decref(doc);
        if (cancel_sent && om_now_us() > cancel_deadline) {
            lost(f, "it did not stop after it was cancelled");
            return;
        }
        if (!more)
            sleep_ms(POLL_MS);
    }
}

/* ---- submitting ----------------------------------------------------------- */

/* POST a job for items idx[0..count); *id on 202.  OM_OK, or the error
 * om_pf_remote_run documents, with why. */
static int submit(const struct om_pf_remote *r, const struct om_pf_item *items,
                  const size_t *idx, size_t count, const char *const *platforms, size_t np,
                  unsigned tries, int64_t retry_ms, char *id, size_t idsz, char *why,
                  size_t whysz)
{
    int err = OM_ERR_NOMEM;
    json_t *body = json_object(), *imgs = json_array(), *plats = json_array(), *doc = NULL;
    char *text = NULL;
    long status = 0;

    for (size_t k = 0; imgs != NULL && k < count; k++)
        json_array_append_new(imgs, json_string(items[idx[k]].image));
    for (size_t k = 0; plats != NULL && k < np; k++)
        json_array_append_new(plats, json_string(platforms[k]));
    if (body == NULL || imgs == NULL || plats == NULL) {
        snprintf(why, whysz, "out of memory");
        goto done;
    }
    json_object_set(body, "images", imgs);
    if (np > 0)
        json_object_set(body, "platforms", plats);
    json_object_set_new(body, "kind", json_string("cli"));
    if (tries > 0)
        json_object_set_new(body, "retries", json_integer(tries));
    if (retry_ms >= 0) {
        char d[32];
        snprintf(d, sizeof(d), "%lldms", (long long)retry_ms);
        json_object_set_new(body, "retry_interval", json_string(d));
    }
    if ((text = json_dumps(body, JSON_COMPACT)) == NULL) {
        snprintf(why, whysz, "out of memory");
        goto done;
    }
    if ((err = call(r, "POST", "/api/v1/prefetch", text, &status, &doc, why, whysz)) != OM_OK)
        goto done;
    const char *got = json_string_value(json_object_get(doc, "id"));
    if (status == 202 && got != NULL && strlen(got) < idsz) {
        snprintf(id, idsz, "%s", got);
        err = OM_OK;
        goto done;
    }
    describe(status, doc, why, whysz);
    err = status == 401   ? OM_ERR_AUTH
          : status == 403 ? OM_ERR_DENIED
          : status == 404 || status == 405 ? OM_ERR_NOTFOUND
                                           : OM_ERR_UPSTREAM;
done:
    free(text);
    json_decref(doc);
    json_decref(body);
    json_decref(imgs);
    json_decref(plats);
    return err;
}

/* How many of idx[from..m) fit one job's limits. */
static size_t chunk_len(const struct om_pf_item *items, const size_t *idx, size_t from, size_t m)
{
    size_t bytes = 512, k = from;   /* the body's own keys and platforms */
    for (; k < m && k - from < OM_MAX_PREFETCH_IMAGES; k++) {
        size_t b = strlen(items[idx[k]].image) * 6 + 4;   /* worst case: \u escapes */
        if (k > from && bytes + b > BODY_BUDGET)
            break;
        bytes += b;
    }
    return k - from;
}

int om_pf_remote_run(const struct om_pf_remote *r, struct om_pf_item *items, size_t n,
                     const char *const *platforms, size_t np, unsigned tries, int64_t retry_ms,
                     const struct om_pf_run_hooks *hooks, size_t *failed, char *why,
                     size_t whysz)
{
    int err = OM_ERR_NOMEM;
    size_t *idx = calloc(n ? n : 1, sizeof(*idx)), m = 0;
    char name[OM_NAME_MAX + 1], ref[OM_DIGEST_MAX + OM_TAG_MAX + 2];
    bool first = true;
    static const struct om_pf_run_hooks none = {0};

    *failed = 0;
    why[0] = '\0';
    if (hooks == NULL)
        hooks = &none;
    if (idx == NULL) {
        snprintf(why, whysz, "out of memory");
        return err;
    }
    for (size_t i = 0; i < n; i++)
        if (om_prefetch_ref_parse(items[i].image, name, sizeof(name), ref, sizeof(ref)) == OM_OK)
            idx[m++] = i;
    for (size_t from = 0; from < m && !om_pf_stopped(r->t);) {
        size_t count = chunk_len(items, idx, from, m);
        struct follow f = {.r = r, .items = items, .n = n, .idx = idx + from, .count = count,
                           .hooks = hooks, .cur = SIZE_MAX};
        char cwhy[OM_PF_ERR_MAX];
        int e = submit(r, items, idx + from, count, platforms, np, tries, retry_ms, f.id,
                       sizeof(f.id), cwhy, sizeof(cwhy));
        if (e != OM_OK && first) {
            snprintf(why, whysz, "%s", cwhy);
            err = e;
            goto done;                 /* nothing ran: the caller may pull itself */
        }
        first = false;
        if (e != OM_OK) {
            for (size_t k = 0; k < count; k++) {
                struct om_pf_item *it = &items[idx[from + k]];
                it->state = OM_PF_FAILED;
                om_pf_fail(&it->res, false, "refused", "the mirror did not take the job: %s",
                           cwhy);
            }
        } else {
            follow_job(&f);
        }
        from += count;
    }
    /* Invalid references, and whatever a stop left undone. */
    for (size_t i = 0; i < n; i++) {
        struct om_pf_item *it = &items[i];
        if (it->state != OM_PF_PENDING)
            continue;
        it->state = OM_PF_FAILED;
        bool bad = om_prefetch_ref_parse(it->image, name, sizeof(name), ref, sizeof(ref)) != OM_OK;
        if (bad)
            om_pf_fail(&it->res, true, "invalid_reference", "not a valid image reference");
        else
            om_pf_fail(&it->res, true, "cancelled", "cancelled");
        if (hooks->image_start != NULL)
            hooks->image_start(hooks->ud, i, n, 1, tries ? tries : 1);
        if (hooks->image_end != NULL)
            hooks->image_end(hooks->ud, i, n, 1, tries ? tries : 1, it, 0);
    }
    for (size_t i = 0; i < n; i++)
        *failed += items[i].state == OM_PF_FAILED;
    err = OM_OK;
done:
    free(idx);
    return err;
}
