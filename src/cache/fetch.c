/* fetch.c — see fetch.h for the contract.
 *
 * Structure: a table (256 buckets keyed by the digest's first byte) of
 * struct om_fetch, each with its own mutex and condition variable.  Each
 * download runs on its own detached thread, which holds one reference; the
 * table itself holds none: the thread unlinks the entry from the table when
 * it finishes, so a later request either finds the committed blob in the
 * store or starts afresh.
 *
 * The download thread loops over om_upstream_do() calls: the first asks for
 * the whole blob; after a broken connection it asks for the rest with
 * `Range: bytes=<written>-` (a 200 answer to that is accepted too: the
 * bytes already held are skipped, they hash the same).  Bytes are hashed and
 * appended to the ingest file exactly once, in order.
 *
 * Readers read the ingest file through a dup()'d descriptor that stays valid
 * after the commit renames it, so a reader that started on the download
 * finishes on it without reopening anything.
 *
 * Who may download now — the slots, per upstream, and downloads nobody
 * reads any more — is fetch_slots.c.  limits.max_blob_size is enforced on
 * the upstream's headers (Content-Length, before a body byte) and, without
 * one, as the bytes come; a failed download gives its reserved disk back at
 * once.
 */
#include "cache/fetch_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/events.h"
#include "core/hash.h"
#include "core/log.h"

/* Readers waiting for bytes are woken when this much more arrived, or this
 * long after the last wake, whichever comes first (and at once for a
 * download's first bytes).  libcurl hands over 16 KiB at a time: waking
 * every reader (a libmicrohttpd resume, a thread wake-up, a pread and a
 * send) per 16 KiB cost more CPU than the bytes themselves on a cold pull.
 * The tick from the transfer's progress callback (at least once a second)
 * flushes what a stalled upstream left pending. */
#define WAKE_BYTES (256u << 10)
#define WAKE_US 5000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

unsigned om_fetch__bucket_of(const om_digest *d)
{
    const char *h = om_digest_hex(d);
    unsigned v = 0;
    for (int i = 0; i < 2; i++) {
        char c = h[i];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return v % BUCKETS;
}

/* Call and forget every waiter.  Caller holds f->mu. */
static void wake_all(struct om_fetch *f)
{
    size_t n = f->n_waiters;
    f->n_waiters = 0;
    for (size_t i = 0; i < n; i++)
        f->waiters[i].wake(f->waiters[i].ud);
}

static void fetch_free(struct om_fetch *f)
{
    if (f->read_fd >= 0)
        close(f->read_fd);
    om_ingest_abort(f->ing);
    om_hash_free(f->hash);
    free(f->waiters);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cond);
    free(f);
}

void om_fetch_release(struct om_fetch *f)
{
    if (f == NULL)
        return;
    struct om_fetch_table *t = f->t; /* outlives f: read before the ref goes */
    pthread_mutex_lock(&f->mu);
    int left = --f->refs;
    pthread_mutex_unlock(&f->mu);
    if (left == 1) {
        /* Only one holder is left (f may be gone by now: touch only t): if
         * it is the download thread waiting for a slot, it should see that
         * nobody wants it any more. */
        pthread_mutex_lock(&t->mu);
        pthread_cond_broadcast(&t->slot);
        pthread_mutex_unlock(&t->mu);
    }
    if (left == 0)
        fetch_free(f);
}

int om_fetch_table_new(struct om_fetch_table **out, const struct om_config *cfg,
                       struct om_store *st, struct om_index *ix)
{
    struct om_fetch_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return OM_ERR_NOMEM;
    t->cfg = cfg;
    t->st = st;
    t->ix = ix;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->idle, NULL);
    pthread_cond_init(&t->slot, NULL);
    atomic_init(&t->cancel, false);
    *out = t;
    return OM_OK;
}

void om_fetch_table_cancel_all(struct om_fetch_table *t)
{
    atomic_store(&t->cancel, true);
    pthread_mutex_lock(&t->mu);
    pthread_cond_broadcast(&t->slot);
    while (t->running > 0)
        pthread_cond_wait(&t->idle, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

void om_fetch_table_free(struct om_fetch_table *t)
{
    if (t == NULL)
        return;
    om_fetch_table_cancel_all(t);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->idle);
    pthread_cond_destroy(&t->slot);
    free(t);
}

/* ---- the download thread ------------------------------------------- */

/* Mark failed and wake everyone.  Takes f->mu. */
static void fail(struct om_fetch *f, int err, long status)
{
    pthread_mutex_lock(&f->mu);
    if (f->state != F_FAILED && f->state != F_DONE) {
        f->state = F_FAILED;
        f->err = err;
        f->status = status;
        f->ready = true;
        pthread_cond_broadcast(&f->cond);
        wake_all(f);
    }
    pthread_mutex_unlock(&f->mu);
}

/* Content-Range: bytes <first>-<last>/<total|*> → first and total. */
static bool parse_content_range(const char *s, uint64_t *first, uint64_t *total)
{
    uint64_t last, t;
    bool known;
    if (!om_up_content_range_parse(s, first, &last, &t, &known))
        return false;
    *total = known ? t : OM_FETCH_SIZE_UNKNOWN;
    return true;
}

int om_fetch__on_headers(void *ud, const struct om_up_resp *r)
{
    struct om_fetch *f = ud;
    f->last_status = r->status;
    f->headers_seen = true;
    if (r->status != 200 && r->status != 206)
        return OM_ERR_NOTFOUND; /* stop; the status is in last_status */

    uint64_t total = OM_FETCH_SIZE_UNKNOWN;
    f->skip = 0;
    if (r->status == 206) {
        uint64_t first = 0;
        if (!parse_content_range(r->content_range, &first, &total) || first != f->written)
            return OM_ERR_UPSTREAM;
    } else {
        if (r->content_length >= 0)
            total = (uint64_t)r->content_length;
        f->skip = f->written; /* a 200 to a resume: drop what we hold */
    }

    /* limits.max_blob_size: refused before a byte of the body is read. */
    uint64_t cap = f->t->cfg->limits.max_blob_size;
    if (cap > 0 && total != OM_FETCH_SIZE_UNKNOWN && total > cap) {
        f->too_big = true;
        return OM_ERR_DENIED;
    }
    /* A full disk must show before the client is promised a body. */
    if (f->written == 0 && total != OM_FETCH_SIZE_UNKNOWN) {
        int rerr = om_ingest_reserve(f->ing, total);
        if (rerr != OM_OK)
            return rerr;
    }
    int err = OM_OK;
    pthread_mutex_lock(&f->mu);
    if (!f->ready) {
        f->total = total;
        f->ready = true;
        f->state = F_STREAMING;
        pthread_cond_broadcast(&f->cond);
        wake_all(f);
    } else if (total != OM_FETCH_SIZE_UNKNOWN && f->total != OM_FETCH_SIZE_UNKNOWN &&
               total != f->total) {
        err = OM_ERR_UPSTREAM; /* the upstream changed its mind about the size */
    }
    pthread_mutex_unlock(&f->mu);
    return err;
}

int om_fetch__on_body(void *ud, const void *buf, size_t len)
{
    struct om_fetch *f = ud;
    const char *p = buf;
    if (f->skip > 0) {
        size_t drop = f->skip < len ? (size_t)f->skip : len;
        f->skip -= drop;
        p += drop;
        len -= drop;
        if (len == 0)
            return OM_OK;
    }
    if (f->total != OM_FETCH_SIZE_UNKNOWN && f->written + len > f->total)
        return OM_ERR_DIGEST; /* more bytes than announced: a lying upstream */
    uint64_t cap = f->t->cfg->limits.max_blob_size;
    if (cap > 0 && f->written + len > cap) {
        f->too_big = true; /* no Content-Length, and more than the limit */
        return OM_ERR_DENIED;
    }
    int err = om_ingest_write(f->ing, p, len);
    if (err != OM_OK)
        return err;
    om_hash_update(f->hash, p, len);

    int64_t now = om_now_us();
    pthread_mutex_lock(&f->mu);
    f->written += len;
    if (f->woken_bytes == 0 || f->written - f->woken_bytes >= WAKE_BYTES ||
        now - f->woken_us >= WAKE_US) {
        wake_all(f);
        f->woken_bytes = f->written;
        f->woken_us = now;
    }
    pthread_mutex_unlock(&f->mu);

    pthread_mutex_lock(&f->t->mu);
    if (f->from_peer)
        f->t->stats.bytes_from_peer += len;
    else
        f->t->stats.bytes_from_upstream += len;
    pthread_mutex_unlock(&f->t->mu);
    return OM_OK;
}

/* The transfer's progress tick: wake readers for bytes still pending; give
 * the slot up when nobody reads any more. */
void om_fetch__on_tick(void *ud)
{
    struct om_fetch *f = ud;
    int64_t now = om_now_us();
    pthread_mutex_lock(&f->mu);
    if (f->written > f->woken_bytes && now - f->woken_us >= WAKE_US) {
        wake_all(f);
        f->woken_bytes = f->written;
        f->woken_us = now;
    }
    pthread_mutex_unlock(&f->mu);
    om_fetch__yield_if_unwanted(f);
    om_fetch__lease_tick(f);
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t backoff_ms(const struct om_config *cfg, unsigned attempt)
{
    uint64_t base = cfg->retries_backoff_ms ? cfg->retries_backoff_ms : 1;
    uint64_t cap = base << (attempt < 6 ? attempt : 6);
    unsigned r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (unsigned)attempt * 2654435761u;
    return cap / 2 + r % (cap / 2 + 1); /* "equal jitter": never zero, never > cap */
}

/* Unlink from the table so later requests start afresh or hit the store. */
static void unlink_entry(struct om_fetch *f)
{
    struct om_fetch_table *t = f->t;
    pthread_mutex_lock(&t->mu);
    om_fetch__unlink_locked(t, f);
    pthread_mutex_unlock(&t->mu);
}

/* Run the transfer, resuming after breaks.  Returns OM_OK when every byte
 * is in the ingest file. */
int om_fetch__transfer_upstream(struct om_fetch *f)
{
    const struct om_config *cfg = f->t->cfg;
    char path[OM_NAME_MAX + OM_DIGEST_MAX + 32];
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", f->remote, f->digest.str);
    /* Resumes are cheap and each one must move bytes forward, so allow a few
     * more than the plain retry count. */
    unsigned max_breaks = (cfg->retries_max ? cfg->retries_max : 1) + 2;
    unsigned breaks = 0;
    int err = OM_OK;

    for (;;) {
        uint64_t before = f->written;
        struct om_up_req req = {
            .method = "GET",
            .path = path,
            .scope_repo = f->remote,
            .range_from = f->written,
            .on_headers = om_fetch__on_headers,
            .on_body = om_fetch__on_body,
            .on_tick = om_fetch__on_tick,
            .ud = f,
            .cancel = &f->t->cancel,
        };
        struct om_up_resp resp;
        f->headers_seen = false;
        err = om_upstream_do(f->up, &req, &resp);
        bool transport_error = (err == OM_ERR_UPSTREAM || err == OM_ERR_TIMEOUT);
        if (err == OM_ERR_NOTFOUND || (err == OM_OK && resp.status != 200 && resp.status != 206)) {
            long st = f->headers_seen ? f->last_status : resp.status;
            om_up_resp_clear(&resp);
            fail(f, OM_ERR_NOTFOUND, st);
            return OM_ERR_NOTFOUND;
        }
        om_up_resp_clear(&resp);
        if (atomic_load(&f->t->cancel))
            return OM_ERR_TIMEOUT;
        if (err == OM_OK) {
            if (f->total == OM_FETCH_SIZE_UNKNOWN || f->written == f->total)
                return OM_OK;
            transport_error = true; /* a clean close short of Content-Length */
        }
        if (!transport_error)
            return err; /* disk full, digest/size lie, denied: not worth retrying */
        if (!f->headers_seen)
            return err; /* never answered: om_upstream_do already retried */
        if (f->written == before)
            breaks++;
        else
            breaks = breaks > 0 ? breaks - 1 : 0; /* progress earns a retry back */
        if (breaks >= max_breaks)
            return err;
        pthread_mutex_lock(&f->t->mu);
        f->t->stats.resumed++;
        pthread_mutex_unlock(&f->t->mu);
        om_log_kv(OM_LOG_WARN, "blob transfer broken, resuming", "digest", f->digest.str,
                  "repo", f->canonical, NULL);
        sleep_ms(backoff_ms(cfg, breaks));
    }
}

static void *download_main(void *arg)
{
    struct om_fetch *f = arg;
    struct om_fetch_table *t = f->t;
    int err;
    if (!om_fetch__acquire_slot(t, f)) {
        err = OM_ERR_TIMEOUT;
        fail(f, err, 0);
        goto done;
    }
    err = t->cluster != NULL ? om_fetch__transfer_cluster(f) : om_fetch__transfer_upstream(f);
    if (err == OM_OK) {
        om_digest got;
        om_hash_final(f->hash, &got);
        if (strcmp(got.str, f->digest.str) != 0) {
            om_log_kv(OM_LOG_ERROR, "blob digest mismatch from upstream, not cached",
                      "digest", f->digest.str, "got", got.str, "repo", f->canonical, NULL);
            pthread_mutex_lock(&t->mu);
            t->stats.digest_mismatch++;
            pthread_mutex_unlock(&t->mu);
            err = OM_ERR_DIGEST;
        }
    }
    if (err == OM_OK) {
        /* Commit before releasing the last byte: a client whose body is
         * complete can count on the blob being cached (and durable), and a
         * request arriving right after is a plain hit. */
        struct om_ingest *ing = f->ing;
        f->ing = NULL;
        om_fetch__before_commit(f);
        int cerr = om_ingest_commit(t->st, ing, &f->digest);
        if (cerr != OM_OK) {
            /* The bytes are right; they just could not be kept.  Readers are
             * served to the end; the next request downloads again. */
            om_log_kv(OM_LOG_ERROR, "blob verified but not committed", "digest",
                      f->digest.str, "error", om_strerror(cerr), NULL);
        } else {
            om_index_blob_put(t->ix, f->canonical, &f->digest, f->written, now_ms());
            if (t->on_commit != NULL)
                t->on_commit(t->on_commit_ud);
        }
        om_fetch__lease_release(f); /* after the commit is visible */
        pthread_mutex_lock(&f->mu);
        f->total = f->written;
        f->state = F_DONE;
        f->ready = true;
        pthread_cond_broadcast(&f->cond);
        wake_all(f);
        pthread_mutex_unlock(&f->mu);
        pthread_mutex_lock(&t->mu);
        t->stats.completed++;
        pthread_mutex_unlock(&t->mu);
        om_events_add_kv(t->events, OM_EV_FETCH, "blob_fetched", f->canonical, f->digest.str,
                         f->written, "blob fetched from upstream", NULL);
    } else {
        if (err != OM_ERR_NOTFOUND) {
            om_log_kv(OM_LOG_ERROR, "blob download failed", "digest", f->digest.str, "repo",
                      f->canonical, "error", om_strerror(err), NULL);
            om_events_add_kv(t->events, OM_EV_ERROR,
                             err == OM_ERR_DIGEST ? "blob_digest_mismatch" : "blob_failed",
                             f->canonical, f->digest.str, f->written,
                             err == OM_ERR_DIGEST ? "blob digest mismatch: not cached"
                                                  : "blob download failed",
                             "error", om_err_code_name(err), NULL);
        }
        /* The disk reserved for it (om_ingest_reserve) goes back now, not
         * when the last reader closes its descriptor of the unlinked file. */
        if (f->ing != NULL)
            om_ingest_truncate(f->ing, 0);
        om_fetch__lease_release(f);
        fail(f, err, 0);
        pthread_mutex_lock(&t->mu);
        t->stats.failed++;
        pthread_mutex_unlock(&t->mu);
    }
    om_fetch__release_slot(t, f);
done:
    unlink_entry(f);
    om_ingest_abort(f->ing);
    f->ing = NULL;
    om_fetch_release(f);
    pthread_mutex_lock(&t->mu);
    if (--t->running == 0)
        pthread_cond_broadcast(&t->idle);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static int fetch_new(struct om_fetch_table *t, const om_digest *d,
                     const struct om_fetch_src *src, struct om_fetch **out)
{
    struct om_fetch *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return OM_ERR_NOMEM;
    f->t = t;
    f->digest = *d;
    f->up = src->upstream;
    /* the upstream's place in the config: its slot count */
    ptrdiff_t ui = om_upstream_cfg(src->upstream) - t->cfg->upstreams;
    f->up_index = ui >= 0 && ui < (ptrdiff_t)OM_MAX_UPSTREAMS ? (unsigned)ui : 0;
    snprintf(f->remote, sizeof(f->remote), "%s", src->remote);
    snprintf(f->canonical, sizeof(f->canonical), "%s", src->canonical);
    f->total = OM_FETCH_SIZE_UNKNOWN;
    f->read_fd = -1;
    f->refs = 2; /* the caller's and the download thread's */
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cond, NULL);
    /* Named: a store that uploads as the download goes (s3) needs the key */
    int err = om_ingest_begin_for(t->st, d, &f->ing);
    if (err == OM_OK) {
        f->read_fd = dup(f->ing->fd);
        f->hash = om_hash_new();
        if (f->read_fd < 0 || f->hash == NULL)
            err = OM_ERR_NOMEM;
    }
    if (err != OM_OK) {
        fetch_free(f);
        return err;
    }
    *out = f;
    return OM_OK;
}

int om_fetch_get(struct om_fetch_table *t, const om_digest *d, const struct om_fetch_src *src,
                 struct om_fetch **out, bool *joined)
{
    int err = OM_OK;
    *joined = false;
    pthread_mutex_lock(&t->mu);
    if (atomic_load(&t->cancel)) {
        err = OM_ERR_TIMEOUT;
        goto done;
    }
    unsigned b = om_fetch__bucket_of(d);
    for (struct om_fetch *f = t->buckets[b]; f != NULL; f = f->next) {
        if (strcmp(f->digest.str, d->str) == 0) {
            pthread_mutex_lock(&f->mu);
            f->refs++;
            pthread_mutex_unlock(&f->mu);
            t->stats.coalesced++;
            *joined = true;
            *out = f;
            goto done;
        }
    }
    struct om_fetch *f = NULL;
    err = fetch_new(t, d, src, &f);
    if (err != OM_OK)
        goto done;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    f->next = t->buckets[b];
    t->buckets[b] = f;
    t->running++;
    if (pthread_create(&th, &attr, download_main, f) != 0) {
        t->buckets[b] = f->next;
        t->running--;
        f->refs = 1;
        fetch_free(f);
        err = OM_ERR_NOMEM;
    } else {
        t->stats.started++;
        *out = f;
    }
    pthread_attr_destroy(&attr);
done:
    pthread_mutex_unlock(&t->mu);
    return err;
}

int om_fetch_find(struct om_fetch_table *t, const om_digest *d, struct om_fetch **out)
{
    int err = OM_ERR_NOTFOUND;
    pthread_mutex_lock(&t->mu);
    for (struct om_fetch *f = t->buckets[om_fetch__bucket_of(d)]; f != NULL; f = f->next) {
        if (strcmp(f->digest.str, d->str) == 0) {
            pthread_mutex_lock(&f->mu);
            f->refs++;
            pthread_mutex_unlock(&f->mu);
            *out = f;
            err = OM_OK;
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return err;
}

bool om_fetch_via_peer(struct om_fetch *f)
{
    pthread_mutex_lock(&f->mu);
    bool v = f->peer_copy;
    pthread_mutex_unlock(&f->mu);
    return v;
}

void om_fetch_set_cluster(struct om_fetch_table *t, struct om_cluster *c)
{
    t->cluster = c;
}

int om_fetch_wait_ready(struct om_fetch *f, uint64_t timeout_ms, uint64_t *total, long *status)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)(timeout_ms / 1000);
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    int err = OM_OK;
    pthread_mutex_lock(&f->mu);
    while (!f->ready) {
        if (pthread_cond_timedwait(&f->cond, &f->mu, &dl) == ETIMEDOUT) {
            err = OM_ERR_TIMEOUT;
            break;
        }
    }
    *status = f->status;
    *total = f->total;
    if (err == OM_OK && f->state == F_FAILED)
        err = f->err ? f->err : OM_ERR_UPSTREAM;
    pthread_mutex_unlock(&f->mu);
    return err;
}

ssize_t om_fetch_poll(struct om_fetch *f, uint64_t pos, size_t max, om_fetch_cb suspend,
                      om_fetch_cb wake, void *ud)
{
    ssize_t r;
    pthread_mutex_lock(&f->mu);
    if (f->state == F_FAILED) {
        r = OM_FETCH_FAILED;
        goto done;
    }
    /* Hold the final byte back until the digest is verified: a client must
     * never see a complete body that could be wrong. */
    uint64_t avail = f->written;
    if (f->state != F_DONE && avail > 0)
        avail--;
    if (pos < avail) {
        uint64_t n = avail - pos;
        r = (ssize_t)(n < max ? n : max);
        goto done;
    }
    if (f->state == F_DONE) {
        r = OM_FETCH_EOF;
        goto done;
    }
    if (f->n_waiters == f->cap_waiters) {
        size_t cap = f->cap_waiters ? f->cap_waiters * 2 : 8;
        struct waiter *w = realloc(f->waiters, cap * sizeof(*w));
        if (w == NULL) {
            r = OM_FETCH_FAILED;
            goto done;
        }
        f->waiters = w;
        f->cap_waiters = cap;
    }
    f->waiters[f->n_waiters++] = (struct waiter){wake, ud};
    suspend(ud);
    r = OM_FETCH_WAIT;
done:
    pthread_mutex_unlock(&f->mu);
    return r;
}

void om_fetch_unwait(struct om_fetch *f, void *ud)
{
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n_waiters; i++) {
        if (f->waiters[i].ud == ud) {
            f->waiters[i] = f->waiters[--f->n_waiters];
            break;
        }
    }
    pthread_mutex_unlock(&f->mu);
}

int om_fetch_fd(const struct om_fetch *f)
{
    return f->read_fd;
}

uint64_t om_fetch_total(struct om_fetch *f)
{
    pthread_mutex_lock(&f->mu);
    uint64_t t = f->total;
    pthread_mutex_unlock(&f->mu);
    return t;
}

void om_fetch_set_events(struct om_fetch_table *t, struct om_events *ev)
{
    t->events = ev;
}

void om_fetch_set_commit_hook(struct om_fetch_table *t, om_fetch_cb fn, void *ud)
{
    t->on_commit = fn;
    t->on_commit_ud = ud;
}

void om_fetch_visit(struct om_fetch_table *t, om_fetch_visit_fn fn, void *ud)
{
    pthread_mutex_lock(&t->mu);
    for (unsigned b = 0; b < BUCKETS; b++) {
        for (struct om_fetch *f = t->buckets[b]; f != NULL; f = f->next) {
            pthread_mutex_lock(&f->mu);
            fn(ud, &f->digest, f->canonical, f->written, f->total, (unsigned)f->n_waiters);
            pthread_mutex_unlock(&f->mu);
        }
    }
    pthread_mutex_unlock(&t->mu);
}
