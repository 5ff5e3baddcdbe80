/* prefetch_pull.c — pull one image through a mirror with libcurl, the way a
 * client does, so that the mirror caches it.
 *
 *   1. GET /v2/<name>/manifests/<tag|digest> with the full Accept list
 *      (Docker schema 2 + list, OCI manifest + index).  The body is checked
 *      against its digest (the reference's, or Docker-Content-Digest).
 *   2. An index/list: GET the platform manifest of every wanted platform by
 *      digest (a platform the index lacks is a note, not a failure — unless
 *      it has none of them).  A plain manifest is pulled whole.
 *   3. GET every distinct config and layer blob and discard the bytes; up
 *      to PULL_PARALLEL at once (curl multi), like Docker's default of 3
 *      concurrent downloads.  In-process (t->store set) a blob already in
 *      the store is skipped without a request: a re-sync of a warm image
 *      then costs one manifest revalidation, not a re-read of every layer.
 *
 * The mirror does every check that matters for the cache (digests before
 * commit); this side only checks statuses, manifest digests and blob
 * lengths, so a broken answer is reported instead of counted as success.
 * Errors are classified: 404/400/401/403 and bad input are permanent (a
 * retry would get the same answer), anything else (5xx, 429, connection
 * failures, short bodies, a stale answer) is worth another try.  Each
 * failure is recorded twice: in English (res->error, for the command's
 * output and the log) and as a code with values (res->code, res->args:
 * "http_status" {ref, #status, oci_code}, "network" {ref, #curl, detail},
 * ... — docs/prefetch.md), which the admin API passes on and the web UI
 * translates.
 *
 * Memory: manifests up to t->max_manifest bytes; blob bodies are never
 * held (the write callback only counts them).
 */
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/manifest.h"
#include "prefetch/prefetch_int.h"

#define PULL_PARALLEL 3
#define ERR_BODY_MAX (64u * 1024)     /* error JSON we read for its message */
#define CONNECT_TIMEOUT_S 10L
#define LOW_SPEED_TIME_S 330L         /* > the mirror's 300 s idle timeout */
#define PROGRESS_EVERY_MS 5000
#define POLL_MS 250

#define ACCEPT_ALL                                                      \
    "Accept: " OM_MT_OCI_INDEX ", " OM_MT_DOCKER_LIST ", " OM_MT_OCI_MANIFEST \
    ", " OM_MT_DOCKER_MANIFEST

struct blob {
    om_digest d;
    int64_t size;                 /* -1 unknown */
};

/* One pull's state; lives on om_pf_pull's stack. */
struct pull {
    const struct om_pf_target *t;
    const struct om_pf_observer *obs;
    struct om_pf_result *res;
    char name[OM_NAME_MAX + 1];
    CURL *h;                      /* manifest requests; owned */
    struct curl_slist *accept;    /* owned */
    struct blob *blobs;           /* owned, n_blobs entries */
    size_t n_blobs;
    char media_type[OM_MT_MAX + 1]; /* of the top manifest */
};

/* A growing buffer with a hard limit. */
struct membuf {
    char *p;                      /* owned */
    size_t len, cap, max;
    bool over;
};

static size_t membuf_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct membuf *b = ud;
    size_t n = size * nmemb;
    if (n > b->max - b->len) {
        b->over = true;
        return 0;                 /* aborts the transfer */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 8192;
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

bool om_pf_stopped(const struct om_pf_target *t)
{
    for (size_t i = 0; i < OM_ARRAY_LEN(t->stop); i++)
        if (t->stop[i] != NULL && atomic_load(t->stop[i]))
            return true;
    return false;
}

static int xferinfo(void *ud, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
    (void)dlt, (void)dln, (void)ult, (void)uln;
    return om_pf_stopped(ud) ? 1 : 0;
}

/* The first failure is the one to report (om_pf_vfail); a pull that was
 * stopped is never retried.  true when this one was recorded: the caller
 * then adds its values with arg(). */
static bool fail(struct pull *pl, bool permanent, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool fail(struct pull *pl, bool permanent, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool rec = om_pf_vfail(pl->res, permanent || om_pf_stopped(pl->t), code, fmt, ap);
    va_end(ap);
    return rec;
}


CURLcode om_pf_curl_setup(const struct om_pf_target *t, CURL *h, const char *url)
{
    static char ua[64];           /* written once per process, same bytes */
    snprintf(ua, sizeof(ua), "ocimirror-prefetch/%s", OM_VERSION);
    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_S);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_USERAGENT, ua);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, xferinfo);
    SET(CURLOPT_XFERINFODATA, (void *)t);
    if (t->ca_pem != NULL) {
        struct curl_blob b = {.data = (void *)t->ca_pem, .len = strlen(t->ca_pem),
                              .flags = CURL_BLOB_COPY};
        SET(CURLOPT_CAINFO_BLOB, &b);
    } else if (t->ca_file != NULL) {
        SET(CURLOPT_CAINFO, t->ca_file);
    }
    if (t->no_verify_host)
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    if (t->user != NULL && t->password != NULL) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC); /* sent with the first request */
        SET(CURLOPT_USERNAME, t->user);
        SET(CURLOPT_PASSWORD, t->password);
    }
    /* No CURLOPT_ACCEPT_ENCODING: blob lengths are checked as sent. */
#undef SET
    return rc;
}

/* A failure's "ref" value for a manifest: the image as a client writes it
 * ("quay.io/x/y:1", "quay.io/x/y@sha256:..."). */
static void arg_ref(struct pull *pl, const char *ref)
{
    om_pf_fail_arg(pl->res, "ref", "%s%c%s", pl->name, strncmp(ref, "sha256:", 7) == 0 ? '@' : ':',
                   ref);
}

/* "HTTP 404 MANIFEST_UNKNOWN: manifest unknown" from an OCI error body;
 * the OCI code alone into oci (may be ""). */
static void describe_status(long status, const struct membuf *body, char *out, size_t outsz,
                            char *oci, size_t ocisz)
{
    const char *code = NULL, *msg = NULL;
    json_t *doc = body->len ? json_loadb(body->p, body->len, 0, NULL) : NULL;
    json_t *e0 = json_array_get(json_object_get(doc, "errors"), 0);
    code = json_string_value(json_object_get(e0, "code"));
    msg = json_string_value(json_object_get(e0, "message"));
    snprintf(out, outsz, "HTTP %ld%s%s%s%s", status, code ? " " : "", code ? code : "",
             msg ? ": " : "", msg ? msg : "");
    snprintf(oci, ocisz, "%s", code ? code : "");
    json_decref(doc);
}

static bool status_permanent(long status)
{
    return status == 400 || status == 401 || status == 403 || status == 404 || status == 405;
}

/* GET a manifest by reference into *body (checked against its digest).
 * *d gets the digest, ctype the Content-Type. */
static int get_manifest(struct pull *pl, const char *ref, const om_digest *want,
                        struct membuf *body, om_digest *d, char *ctype, size_t ctsz)
{
    int err = OM_ERR_UPSTREAM;
    char url[OM_PF_BASE_MAX + OM_NAME_MAX + 200];
    snprintf(url, sizeof(url), "%s/v2/%s/manifests/%s", pl->t->base, pl->name, ref);
    *body = (struct membuf){.max = pl->t->max_manifest};
    curl_easy_reset(pl->h);
    CURLcode rc = om_pf_curl_setup(pl->t, pl->h, url);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(pl->h, CURLOPT_HTTPHEADER, pl->accept);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(pl->h, CURLOPT_WRITEFUNCTION, membuf_write);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(pl->h, CURLOPT_WRITEDATA, body);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(pl->h);
    long status = 0;
    curl_easy_getinfo(pl->h, CURLINFO_RESPONSE_CODE, &status);
    if (body->over) {
        if (fail(pl, true, "manifest_too_big", "manifest %s is larger than %zu bytes", ref,
                 pl->t->max_manifest)) {
            arg_ref(pl, ref);
            om_pf_fail_arg(pl->res, "#limit", "%zu", pl->t->max_manifest);
        }
        err = OM_ERR_TOOBIG;
        goto done;
    }
    if (rc != CURLE_OK) {
        if (fail(pl, false, "network", "manifests/%s: %s", ref, curl_easy_strerror(rc))) {
            arg_ref(pl, ref);
            om_pf_fail_arg(pl->res, "#curl", "%d", (int)rc);
            om_pf_fail_arg(pl->res, "detail", "%s", curl_easy_strerror(rc));
        }
        goto done;
    }
    if (status != 200) {
        char why[OM_PF_ERR_MAX], oci[64];
        describe_status(status, body, why, sizeof(why), oci, sizeof(oci));
        if (fail(pl, status_permanent(status), "http_status", "manifests/%s: %s", ref, why)) {
            arg_ref(pl, ref);
            om_pf_fail_arg(pl->res, "#status", "%ld", status);
            if (oci[0] != '\0')
                om_pf_fail_arg(pl->res, "oci_code", "%s", oci);
        }
        err = status == 404 ? OM_ERR_NOTFOUND : OM_ERR_UPSTREAM;
        goto done;
    }
    struct curl_header *hv = NULL;
    ctype[0] = '\0';
    if (curl_easy_header(pl->h, "Content-Type", 0, CURLH_HEADER, -1, &hv) == CURLHE_OK)
        snprintf(ctype, ctsz, "%.*s", (int)strcspn(hv->value, "; "), hv->value);
    if (curl_easy_header(pl->h, "Warning", 0, CURLH_HEADER, -1, &hv) == CURLHE_OK &&
        strncmp(hv->value, "110", 3) == 0)
        pl->res->stale = true;
    if ((err = om_hash_buf(body->p ? body->p : "", body->len, d)) != OM_OK)
        goto done;
    om_digest hdr;
    if (want != NULL && strcmp(want->str, d->str) != 0) {
        if (fail(pl, false, "digest_mismatch", "manifest %s: the body hashes to %s", ref, d->str)) {
            arg_ref(pl, ref);
            om_pf_fail_arg(pl->res, "got", "%s", d->str);
        }
        err = OM_ERR_DIGEST;
    } else if (curl_easy_header(pl->h, "Docker-Content-Digest", 0, CURLH_HEADER, -1, &hv) ==
                   CURLHE_OK &&
               om_digest_parse(&hdr, hv->value, strlen(hv->value)) == OM_OK &&
               strcmp(hdr.str, d->str) != 0) {
        if (fail(pl, false, "digest_mismatch",
                 "manifest %s: Docker-Content-Digest %s but the body hashes to %s", ref, hdr.str,
                 d->str)) {
            arg_ref(pl, ref);
            om_pf_fail_arg(pl->res, "header", "%s", hdr.str);
            om_pf_fail_arg(pl->res, "got", "%s", d->str);
        }
        err = OM_ERR_DIGEST;
    }
done:
    return err;
}

static int add_blob(struct pull *pl, const struct om_descriptor *desc)
{
    for (size_t i = 0; i < pl->n_blobs; i++)
        if (strcmp(pl->blobs[i].d.str, desc->digest.str) == 0)
            return OM_OK;
    if (pl->n_blobs >= OM_PF_MAX_BLOBS) {
        if (fail(pl, true, "too_many_blobs", "more than %d blobs", OM_PF_MAX_BLOBS))
            om_pf_fail_arg(pl->res, "#limit", "%d", OM_PF_MAX_BLOBS);
        return OM_ERR_TOOBIG;
    }
    pl->blobs[pl->n_blobs++] = (struct blob){.d = desc->digest, .size = desc->size};
    return OM_OK;
}

/* Config + layers of a parsed image manifest. */
static int add_image_blobs(struct pull *pl, const struct om_manifest *m, const char *what)
{
    int err = OM_OK;
    if (m->is_index) {
        if (fail(pl, true, "nested_index", "%s is an index inside an index (not supported)", what))
            om_pf_fail_arg(pl->res, "ref", "%s", what);
        return OM_ERR_INVALID;
    }
    if (m->has_config)
        err = add_blob(pl, &m->config);
    for (size_t i = 0; err == OM_OK && i < m->n_layers; i++)
        err = add_blob(pl, &m->layers[i]);
    return err;
}

/* Steps 1 and 2: fill pl->blobs. */
static int collect(struct pull *pl, const char *ref, const om_digest *ref_digest,
                   const char *const *platforms, size_t np)
{
    int err;
    struct membuf body = {0};
    struct om_manifest m = {0};
    char ctype[OM_MT_MAX + 1];
    om_digest d;
    if ((err = get_manifest(pl, ref, ref_digest, &body, &d, ctype, sizeof(ctype))) != OM_OK)
        goto done;
    pl->res->have_digest = true;
    pl->res->digest = d;
    if ((err = om_manifest_parse(&m, body.p ? body.p : "", body.len,
                                 ctype[0] ? ctype : NULL)) != OM_OK) {
        if (fail(pl, true, "manifest_unreadable",
                 "manifest %s is not a manifest or index it can read (%s)", d.str,
                 om_strerror(err)))
            om_pf_fail_arg(pl->res, "ref", "%s", d.str);
        goto done;
    }
    snprintf(pl->media_type, sizeof(pl->media_type), "%s", m.media_type);
    if (!m.is_index) {
        err = add_image_blobs(pl, &m, d.str);
        goto done;
    }
    for (size_t i = 0; i < np && err == OM_OK; i++) {
        const struct om_descriptor *pd = om_manifest_platform(&m, platforms[i]);
        if (pd == NULL) {
            char note[160];
            snprintf(note, sizeof(note), "the index has no %s manifest; skipped", platforms[i]);
            if (pl->obs && pl->obs->note)
                pl->obs->note(pl->obs->ud, "platform_missing", platforms[i], note);
            continue;
        }
        struct membuf cb = {0};
        struct om_manifest cm = {0};
        char cct[OM_MT_MAX + 1];
        om_digest cd;
        err = get_manifest(pl, pd->digest.str, &pd->digest, &cb, &cd, cct, sizeof(cct));
        if (err == OM_OK && (err = om_manifest_parse(&cm, cb.p ? cb.p : "", cb.len,
                                                     cct[0] ? cct : pd->media_type)) != OM_OK)
            if (fail(pl, true, "manifest_unreadable", "platform manifest %s does not parse (%s)",
                     cd.str, om_strerror(err)))
                om_pf_fail_arg(pl->res, "ref", "%s", cd.str);
        if (err == OM_OK)
            err = add_image_blobs(pl, &cm, cd.str);
        if (err == OM_OK)
            pl->res->platforms++;
        om_manifest_free(&cm);
        free(cb.p);
    }
    if (err == OM_OK && pl->res->platforms == 0) {
        char list[256] = "";
        for (size_t i = 0; i < np; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                     platforms[i]);
        if (fail(pl, true, "no_platform", "the index has none of the platforms asked for (%s)",
                 list))
            om_pf_fail_arg(pl->res, "platforms", "%s", list);
        err = OM_ERR_NOTFOUND;
    }
done:
    om_manifest_free(&m);
    free(body.p);
    return err;
}

/* ---- step 3: the blobs ------------------------------------------------ */

struct xfer {
    CURL *h;                      /* owned */
    size_t idx;                   /* into pl->blobs; SIZE_MAX when idle */
    uint64_t got;
    char url[OM_PF_BASE_MAX + OM_NAME_MAX + 120];
};

static size_t count_write(char *data, size_t size, size_t nmemb, void *ud)
{
    (void)data;
    struct xfer *x = ud;
    x->got += (uint64_t)size * nmemb;
    return size * nmemb;
}

static void report(struct pull *pl, om_pf_blob_event ev, size_t idx, uint64_t bytes)
{
    if (pl->obs && pl->obs->blob)
        pl->obs->blob(pl->obs->ud, ev, &pl->blobs[idx].d, idx, pl->n_blobs, bytes,
                      pl->blobs[idx].size);
}

static int start_xfer(struct pull *pl, CURLM *multi, struct xfer *x, size_t idx)
{
    x->idx = idx;
    x->got = 0;
    snprintf(x->url, sizeof(x->url), "%s/v2/%s/blobs/%s", pl->t->base, pl->name,
             pl->blobs[idx].d.str);
    curl_easy_reset(x->h);
    CURLcode rc = om_pf_curl_setup(pl->t, x->h, x->url);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, count_write);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
    if (rc != CURLE_OK || curl_multi_add_handle(multi, x->h) != CURLM_OK) {
        fail(pl, false, "internal", "blob %s: cannot start the request", pl->blobs[idx].d.str);
        x->idx = SIZE_MAX;
        return OM_ERR_NOMEM;
    }
    return OM_OK;
}

/* A finished transfer: check it and report. */
static int finish_xfer(struct pull *pl, struct xfer *x, CURLcode result)
{
    int err = OM_ERR_UPSTREAM;
    const struct blob *b = &pl->blobs[x->idx];
    long status = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    if (result != CURLE_OK) {
        if (fail(pl, false, "network", "blob %s: %s", b->d.str, curl_easy_strerror(result))) {
            om_pf_fail_arg(pl->res, "ref", "%s", b->d.str);
            om_pf_fail_arg(pl->res, "#curl", "%d", (int)result);
            om_pf_fail_arg(pl->res, "detail", "%s", curl_easy_strerror(result));
        }
    } else if (status != 200) {
        if (fail(pl, status_permanent(status), "http_status", "blob %s: HTTP %ld", b->d.str,
                 status)) {
            om_pf_fail_arg(pl->res, "ref", "%s", b->d.str);
            om_pf_fail_arg(pl->res, "#status", "%ld", status);
        }
    } else if (b->size >= 0 && x->got != (uint64_t)b->size) {
        if (fail(pl, false, "blob_short", "blob %s: got %llu bytes, the manifest says %lld",
                 b->d.str, (unsigned long long)x->got, (long long)b->size)) {
            om_pf_fail_arg(pl->res, "ref", "%s", b->d.str);
            om_pf_fail_arg(pl->res, "#got", "%llu", (unsigned long long)x->got);
            om_pf_fail_arg(pl->res, "#want", "%lld", (long long)b->size);
        }
    } else {
        err = OM_OK;
    }
    if (err == OM_OK) {
        pl->res->bytes += x->got;
        report(pl, OM_PF_BLOB_FETCHED, x->idx, x->got);
    }
    x->idx = SIZE_MAX;
    return err;
}

static int fetch_blobs(struct pull *pl)
{
    int err = OM_OK;
    struct xfer xs[PULL_PARALLEL] = {0};
    CURLM *multi = curl_multi_init();
    size_t next = 0, active = 0;
    int64_t last_progress = om_now_us();
    if (multi == NULL)
        return OM_ERR_NOMEM;
    for (size_t i = 0; i < PULL_PARALLEL; i++) {
        xs[i].idx = SIZE_MAX;
        if ((xs[i].h = curl_easy_init()) == NULL)
            err = OM_ERR_NOMEM;
    }
    while (err == OM_OK && (next < pl->n_blobs || active > 0)) {
        /* Fill idle slots; stored blobs are reported without a request. */
        for (size_t s = 0; s < PULL_PARALLEL && err == OM_OK && next < pl->n_blobs; s++) {
            if (xs[s].idx != SIZE_MAX)
                continue;
            uint64_t have = 0;
            while (next < pl->n_blobs && pl->t->store != NULL &&
                   om_store_has(pl->t->store, &pl->blobs[next].d, &have)) {
                pl->res->blobs_cached++;
                report(pl, OM_PF_BLOB_CACHED, next, have);
                next++;
            }
            if (next < pl->n_blobs && (err = start_xfer(pl, multi, &xs[s], next++)) == OM_OK)
                active++;
        }
        if (err != OM_OK || active == 0)
            break;
        int running = 0;
        if (curl_multi_perform(multi, &running) != CURLM_OK ||
            curl_multi_poll(multi, NULL, 0, POLL_MS, NULL) != CURLM_OK) {
            fail(pl, false, "internal", "blob transfers: curl multi failed");
            err = OM_ERR_UPSTREAM;
            break;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            char *priv = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            struct xfer *x = (struct xfer *)priv;
            CURLcode result = msg->data.result;
            curl_multi_remove_handle(multi, x->h);
            active--;
            int e = finish_xfer(pl, x, result);
            if (err == OM_OK)
                err = e;
        }
        if (err == OM_OK && om_pf_stopped(pl->t)) {
            fail(pl, true, "cancelled", "cancelled");
            err = OM_ERR_TIMEOUT;
        }
        int64_t now = om_now_us();
        if (now - last_progress >= PROGRESS_EVERY_MS * 1000LL) {
            last_progress = now;
            for (size_t s = 0; s < PULL_PARALLEL; s++)
                if (xs[s].idx != SIZE_MAX)
                    report(pl, OM_PF_BLOB_PROGRESS, xs[s].idx, xs[s].got);
        }
    }
    for (size_t s = 0; s < PULL_PARALLEL; s++) {
        if (xs[s].h != NULL && xs[s].idx != SIZE_MAX)
            curl_multi_remove_handle(multi, xs[s].h);
        if (xs[s].h != NULL)
            curl_easy_cleanup(xs[s].h);
    }
    curl_multi_cleanup(multi);
    return err;
}

int om_pf_pull(const struct om_pf_target *t, const char *image, const char *const *platforms,
               size_t np, const struct om_pf_observer *obs, struct om_pf_result *res)
{
    int err;
    char ref[OM_DIGEST_MAX + OM_TAG_MAX + 2];
    struct pull pl = {.t = t, .obs = obs, .res = res};
    *res = (struct om_pf_result){0};
    if ((err = om_prefetch_ref_parse(image, pl.name, sizeof(pl.name), ref, sizeof(ref))) !=
        OM_OK) {
        fail(&pl, true, "invalid_reference", "not a valid image reference");
        goto done;
    }
    om_digest ref_digest;
    bool by_digest = om_digest_parse(&ref_digest, ref, strlen(ref)) == OM_OK;
    pl.h = curl_easy_init();
    pl.accept = curl_slist_append(NULL, ACCEPT_ALL);
    pl.blobs = malloc(sizeof(*pl.blobs) * OM_PF_MAX_BLOBS);
    if (pl.h == NULL || pl.accept == NULL || pl.blobs == NULL) {
        err = OM_ERR_NOMEM;
        fail(&pl, false, "internal", "out of memory");
        goto done;
    }
    if ((err = collect(&pl, ref, by_digest ? &ref_digest : NULL, platforms, np)) != OM_OK)
        goto done;
    res->blobs = pl.n_blobs;
    if (obs && obs->manifest)
        obs->manifest(obs->ud, &res->digest, pl.media_type, res->platforms, pl.n_blobs);
    if ((err = fetch_blobs(&pl)) != OM_OK)
        goto done;
    if (res->stale) {
        fail(&pl, false, "stale", "the upstream could not be reached: the mirror kept its "
                                  "cached (stale) copy");
        err = OM_ERR_UPSTREAM;
    }
done:
    if (err != OM_OK && res->error[0] == '\0')
        if (fail(&pl, false, "internal", "%s", om_strerror(err)))
            om_pf_fail_arg(res, "error", "%s", om_err_code_name(err));
    free(pl.blobs);
    curl_slist_free_all(pl.accept);
    if (pl.h != NULL)
        curl_easy_cleanup(pl.h);
    return err;
}

/* ---- pure helpers ------------------------------------------------------ */

int om_prefetch_ref_parse(const char *s, char *name, size_t namesz, char *ref, size_t refsz)
{
    int err = OM_ERR_INVALID;
    size_t len = strnlen(s, OM_PREFETCH_IMAGE_MAX + 1);
    const char *at = memchr(s, '@', len);
    size_t name_end = at ? (size_t)(at - s) : len;
    const char *slash = NULL;
    for (size_t i = 0; i < name_end; i++)
        if (s[i] == '/')
            slash = s + i;
    /* A ':' after the last '/' starts the tag; one before it is a registry
     * port ("registry.local:5000/team/app:1"), which the mirror routes when
     * that registry is a configured upstream or alias. */
    const char *colon = memchr(slash ? slash : s, ':', name_end - (size_t)((slash ? slash : s) - s));
    size_t nlen = colon ? (size_t)(colon - s) : name_end;
    om_digest d;
    if (len > OM_PREFETCH_IMAGE_MAX || !om_ref_request_name_valid(s, nlen) || nlen >= namesz)
        goto done;
    if (colon != NULL && !om_ref_tag_valid(colon + 1, name_end - nlen - 1))
        goto done;
    if (at != NULL) {
        if (om_digest_parse(&d, at + 1, len - name_end - 1) != OM_OK ||
            strlen(d.str) >= refsz)
            goto done;
        snprintf(ref, refsz, "%s", d.str);
    } else {
        const char *tag = colon ? colon + 1 : "latest";
        size_t tlen = colon ? name_end - nlen - 1 : 6;
        if (tlen >= refsz)
            goto done;
        memcpy(ref, tag, tlen);
        ref[tlen] = '\0';
    }
    memcpy(name, s, nlen);
    name[nlen] = '\0';
    err = OM_OK;
done:
    if (err != OM_OK) {
        if (namesz)
            name[0] = '\0';
        if (refsz)
            ref[0] = '\0';
    }
    return err;
}

bool om_prefetch_platform_valid(const char *s)
{
    size_t parts = 1, run = 0, len = 0;
    bool ok = true;
    for (; ok && *s != '\0'; s++, len++) {
        if (*s == '/') {
            ok = run > 0;
            parts++;
            run = 0;
        } else {
            ok = (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' ||
                 *s == '_' || *s == '-';
            run++;
        }
    }
    return ok && run > 0 && (parts == 2 || parts == 3) && len < OM_PREFETCH_PLATFORM_MAX;
}
