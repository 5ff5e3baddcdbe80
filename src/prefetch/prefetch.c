/* prefetch.c — the server's prefetcher: one background thread that runs
 * prefetch jobs one after another, pulling through the server's own
 * listening port on loopback (see prefetch.h for why it is a client).
 *
 * Jobs come from two places and share one queue:
 *   - "config": the config's prefetch.images, at start-up and then every
 *     prefetch.interval (interval 0: at start-up only).  A config job is
 *     not queued again while one is queued or running.
 *   - "admin" and "cli": om_prefetch_submit() (POST /api/v1/prefetch), from
 *     the web UI or a script, or from `ocimirror prefetch` run beside this
 *     server, which follows its job (om_prefetch_job_json) and prints its
 *     progress: the run is one of ours, in the UI's prefetch panel and the
 *     events like any other, and "already cached" is known in-process
 *     (t->store), not guessed by a client.
 * A job runs its images with prefetch.retries tries, prefetch.retry_interval
 * apart (or what the submitter asked, prefetch_run.c), and can be
 * cancelled (om_prefetch_cancel).  What a job records is prefetch_job.c.  One thread is enough: the work is I/O bound and
 * each pull already moves up to 3 blobs at once; running jobs one at a time
 * keeps a large prefetch from crowding out the clients' own downloads.
 *
 * Locking: p->mu guards the job list and every field of every job; the
 * worker updates a job's progress under it (short critical sections, no
 * I/O), and om_prefetch_jobs_json() reads under it.  The worker never holds
 * it while pulling.
 *
 * Lifetime: om_prefetch_start() after the daemon listens; om_prefetch_stop()
 * sets the stop flag (a pull in progress aborts within ~250 ms, a retry wait
 * within 100 ms), joins the thread and frees every job.  The server's own
 * stopping/cancel flags stop pulls too, so a SIGTERM grace period is not
 * spent waiting for a prefetch.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "prefetch/prefetch_int.h"
#include "prefetch/prefetch_job.h"

#define LOGS_KEEP_DONE 4    /* finished jobs whose progress log is kept */

struct om_prefetcher {
    struct om_server *srv;          /* borrowed: outlives us */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;              /* new job, or stop */
    atomic_bool stop;
    struct om_pf_job *jobs;         /* owned list, newest first */
    uint64_t seq;                   /* last job number */
    int64_t next_sync_ms;           /* when the next config job is due; 0 = never */
    struct om_pf_target target;
};

/* ---- jobs ----------------------------------------------------------- */

/* A new queued job (not linked).  Caller holds mu (for seq).  NULL on
 * allocation failure. */
static struct om_pf_job *job_new(struct om_prefetcher *p, const char *kind,
                                 const char *const *images, size_t n,
                                 const char *const *platforms, size_t np, unsigned tries,
                                 uint64_t retry_ms)
{
    char id[OM_PREFETCH_ID_MAX + 1];
    snprintf(id, sizeof(id), "pf-%llu", (unsigned long long)(p->seq + 1));
    struct om_pf_job *j = om_pf_job_new(id, kind, images, n, platforms, np, tries, retry_ms);
    if (j != NULL)
        p->seq++;
    return j;
}

/* Keep every unfinished job and the newest OM_PREFETCH_KEEP_DONE finished
 * ones; the progress logs of only the newest LOGS_KEEP_DONE.  Caller holds
 * mu. */
static void trim_finished(struct om_prefetcher *p)
{
    size_t kept = 0;
    for (struct om_pf_job **pp = &p->jobs; *pp != NULL;) {
        struct om_pf_job *j = *pp;
        bool finished = om_pf_job_finished(j);
        if (finished && ++kept > OM_PREFETCH_KEEP_DONE) {
            *pp = j->next;
            om_pf_job_free(j);
            continue;
        }
        if (finished && kept > LOGS_KEEP_DONE)
            om_pf_job_log_drop(j);
        pp = &j->next;
    }
}

/* The oldest queued job, or NULL.  Caller holds mu. */
static struct om_pf_job *oldest_queued(struct om_prefetcher *p, bool *config_pending)
{
    struct om_pf_job *found = NULL;
    *config_pending = false;
    for (struct om_pf_job *j = p->jobs; j != NULL; j = j->next) {
        if (!om_pf_job_finished(j) && strcmp(j->kind, "config") == 0)
            *config_pending = true;
        if (j->state == OM_PF_JOB_QUEUED)
            found = j;   /* the list is newest first: the last one seen is the oldest */
    }
    return found;
}

static struct om_pf_job *find_job(struct om_prefetcher *p, const char *id)
{
    for (struct om_pf_job *j = p->jobs; j != NULL; j = j->next)
        if (strcmp(j->id, id) == 0)
            return j;
    return NULL;
}

/* ---- running a job: hooks that record progress --------------------- */

struct run_ctx {
    struct om_prefetcher *p;
    struct om_pf_job *j;
    size_t image;                   /* the image being pulled */
    bool *ended;                    /* j->n: its final result was counted */
};

static void on_image_start(void *ud, size_t i, size_t n, unsigned try_no, unsigned tries)
{
    (void)n;
    struct run_ctx *c = ud;
    struct om_pf_rec r = {.type = OM_PF_REC_IMAGE_START, .image = i, .a = try_no, .b = tries};
    c->image = i;
    pthread_mutex_lock(&c->p->mu);
    c->j->state = OM_PF_JOB_RUNNING;
    c->j->try_no = try_no;
    c->j->next_try_ms = 0;
    c->j->has_current = true;
    c->j->cur_image = i;
    c->j->cur_blobs_done = c->j->cur_blobs_total = c->j->cur_blobs_cached = 0;
    c->j->cur_bytes = 0;
    om_pf_job_log(c->j, &r);
    pthread_mutex_unlock(&c->p->mu);
}

static void on_manifest(void *ud, const om_digest *d, const char *media_type, size_t np,
                        size_t n_blobs)
{
    struct run_ctx *c = ud;
    struct om_pf_rec r = {.type = OM_PF_REC_MANIFEST, .image = c->image, .c = np, .d = n_blobs};
    snprintf(r.digest, sizeof(r.digest), "%s", d->str);
    snprintf(r.text, sizeof(r.text), "%s", media_type);
    pthread_mutex_lock(&c->p->mu);
    c->j->cur_blobs_total = n_blobs;
    om_pf_job_log(c->j, &r);
    pthread_mutex_unlock(&c->p->mu);
}

static void on_blob(void *ud, om_pf_blob_event ev, const om_digest *d, size_t idx, size_t n,
                    uint64_t bytes, int64_t total)
{
    struct run_ctx *c = ud;
    struct om_pf_rec r = {.type = OM_PF_REC_BLOB, .image = c->image, .a = (unsigned)idx,
                          .b = (unsigned)n, .ev = (int)ev, .bytes = bytes, .total = total};
    snprintf(r.digest, sizeof(r.digest), "%s", d->str);
    pthread_mutex_lock(&c->p->mu);
    if (ev != OM_PF_BLOB_PROGRESS) {
        c->j->cur_blobs_done++;
        c->j->blobs++;
    }
    if (ev == OM_PF_BLOB_FETCHED) {
        c->j->cur_bytes += bytes;
        c->j->bytes += bytes;
    } else if (ev == OM_PF_BLOB_CACHED) {
        c->j->cur_blobs_cached++;
        c->j->blobs_cached++;
    }
    om_pf_job_log(c->j, &r);
    pthread_mutex_unlock(&c->p->mu);
}

static void on_note(void *ud, const char *code, const char *value, const char *msg)
{
    (void)msg;
    struct run_ctx *c = ud;
    struct om_pf_rec r = {.type = OM_PF_REC_NOTE, .image = c->image};
    snprintf(r.text, sizeof(r.text), "%s", code);
    snprintf(r.value, sizeof(r.value), "%s", value ? value : "");
    pthread_mutex_lock(&c->p->mu);
    om_pf_job_log(c->j, &r);
    pthread_mutex_unlock(&c->p->mu);
}

/* Event values of a failed pull: the job, ("error", its code) and the
 * failure's own values, into kv (pairs, NULL-terminated; borrowed). */
static void failure_kv(const char *job, const struct om_pf_result *res, const char **kv,
                       size_t max)
{
    size_t k = 0;
    kv[k++] = "job";
    kv[k++] = job;
    kv[k++] = "error";
    kv[k++] = res->code[0] ? res->code : "internal";
    for (size_t i = 0; i < res->n_args && k + 2 < max; i++) {
        kv[k++] = res->args[i].key;
        kv[k++] = res->args[i].value;
    }
    kv[k] = NULL;
}

static void on_image_end(void *ud, size_t i, size_t n, unsigned try_no, unsigned tries,
                         const struct om_pf_item *it, uint64_t ms)
{
    (void)n;
    struct run_ctx *c = ud;
    struct om_server *srv = c->p->srv;
    const char *image = c->j->images[i];
    char ms_s[24], try_s[24], bytes_s[24], blobs_s[24], cached_s[24];
    struct om_pf_rec r = {.type = OM_PF_REC_IMAGE_END, .image = i, .a = try_no, .b = tries,
                          .c = it->res.blobs, .d = it->res.blobs_cached, .ev = (int)it->state,
                          .bytes = it->res.bytes, .total = (int64_t)ms,
                          .permanent = it->res.permanent};
    if (it->res.have_digest)
        snprintf(r.digest, sizeof(r.digest), "%s", it->res.digest.str);
    if (it->state != OM_PF_OK)
        r.err = om_pf_err_from(&it->res);     /* consumed by the log */
    snprintf(ms_s, sizeof(ms_s), "%llu", (unsigned long long)ms);
    snprintf(try_s, sizeof(try_s), "%u/%u", try_no, tries);
    snprintf(bytes_s, sizeof(bytes_s), "%llu", (unsigned long long)it->res.bytes);
    snprintf(blobs_s, sizeof(blobs_s), "%zu", it->res.blobs);
    snprintf(cached_s, sizeof(cached_s), "%zu", it->res.blobs_cached);
    pthread_mutex_lock(&c->p->mu);
    c->j->has_current = false;
    if (it->state == OM_PF_OK) {
        c->j->done++;
    } else if (it->state == OM_PF_FAILED) {
        c->j->failed++;
        om_pf_job_add_failure(c->j, i, om_pf_err_from(&it->res));
    }
    if (it->state != OM_PF_PENDING && c->ended != NULL)
        c->ended[i] = true;
    om_pf_job_log(c->j, &r);
    pthread_mutex_unlock(&c->p->mu);

    if (it->state == OM_PF_OK) {
        char msg[OM_PF_ERR_MAX + 64];
        om_log_kv(OM_LOG_INFO, "prefetch: image done", "job", c->j->id, "image", image,
                  "digest", it->res.have_digest ? it->res.digest.str : "", "bytes", bytes_s,
                  "blobs", blobs_s, "cached", cached_s, "try", try_s, "ms", ms_s, NULL);
        snprintf(msg, sizeof(msg), "prefetched (job %s): %zu blobs, %zu already cached",
                 c->j->id, it->res.blobs, it->res.blobs_cached);
        om_events_add_kv(srv->events, OM_EV_PREFETCH, "prefetch_image_done", image,
                         it->res.have_digest ? it->res.digest.str : NULL, it->res.bytes, msg,
                         "job", c->j->id, "#blobs", blobs_s, "#cached", cached_s, NULL);
    } else {
        bool final = it->state == OM_PF_FAILED;
        om_log_kv(final ? OM_LOG_WARN : OM_LOG_INFO,
                  final ? "prefetch: image failed" : "prefetch: image failed, will retry",
                  "job", c->j->id, "image", image, "error", it->res.error, "code", it->res.code,
                  "try", try_s, NULL);
        if (final) {
            char msg[OM_PF_ERR_MAX + 64];
            const char *kv[4 + 2 * OM_PF_ARGS_MAX + 1];
            snprintf(msg, sizeof(msg), "prefetch failed (job %s): %s", c->j->id,
                     it->res.error);
            failure_kv(c->j->id, &it->res, kv, OM_ARRAY_LEN(kv));
            om_events_add_kvv(srv->events, OM_EV_PREFETCH, "prefetch_image_failed", image, NULL,
                              it->res.bytes, msg, kv);
        }
    }
}
static void on_waiting(void *ud, unsigned try_no, unsigned tries, size_t pending, uint64_t ms)
{
    struct run_ctx *c = ud;
    char ms_s[24], try_s[24], n_s[24];
    struct om_pf_rec r = {.type = OM_PF_REC_WAITING, .a = try_no, .b = tries, .c = pending,
                          .bytes = ms};
    snprintf(ms_s, sizeof(ms_s), "%llu", (unsigned long long)ms);
    snprintf(try_s, sizeof(try_s), "%u/%u", try_no, tries);
    snprintf(n_s, sizeof(n_s), "%zu", pending);
    pthread_mutex_lock(&c->p->mu);
    c->j->state = OM_PF_JOB_WAITING;
    c->j->next_try_ms = om_now_ms() + (int64_t)ms;
    om_pf_job_log(c->j, &r);
    pthread_mutex_unlock(&c->p->mu);
    om_log_kv(OM_LOG_INFO, "prefetch: retrying failed images", "job", c->j->id, "images", n_s,
              "next_try", try_s, "in_ms", ms_s, NULL);
}

/* Run one job on the worker thread.  The job's image and platform lists
 * are not changed by anyone while it runs, so they are read without mu. */
static void run_job(struct om_prefetcher *p, struct om_pf_job *j)
{
    struct om_pf_item *items = calloc(j->n, sizeof(*items));
    bool *ended = calloc(j->n, sizeof(*ended));
    struct run_ctx ctx = {p, j, 0, ended};
    struct om_pf_run_hooks hooks = {
        .ud = &ctx, .image_start = on_image_start, .image_end = on_image_end,
        .waiting = on_waiting,
        .obs = {.ud = &ctx, .manifest = on_manifest, .blob = on_blob, .note = on_note},
    };
    /* The server's stop flags, and this job's own. */
    struct om_pf_target t = p->target;
    t.stop[3] = &j->cancel;
    char n_s[24];
    snprintf(n_s, sizeof(n_s), "%zu", j->n);
    om_log_kv(OM_LOG_INFO, "prefetch: job started", "job", j->id, "kind", j->kind, "images",
              n_s, NULL);
    size_t failed = j->n;
    if (items != NULL && ended != NULL) {
        for (size_t i = 0; i < j->n; i++)
            items[i].image = j->images[i];
        failed = om_pf_run(&t, items, j->n, (const char *const *)j->platforms, j->np, j->tries,
                           j->retry_ms, &hooks);
    }
    bool cancelled = atomic_load(&j->cancel);
    pthread_mutex_lock(&p->mu);
    /* A stop (cancel, shutdown) fails what was still pending without an
     * image_end: count those too. */
    for (size_t i = 0; items != NULL && ended != NULL && i < j->n; i++) {
        if (items[i].state == OM_PF_FAILED && !ended[i]) {
            j->failed++;
            om_pf_job_add_failure(j, i, om_pf_err_from(&items[i].res));
        }
    }
    if (items == NULL || ended == NULL) {
        struct om_pf_result oom = {0};
        om_pf_fail(&oom, true, "internal", "out of memory");
        om_pf_job_add_failure(j, SIZE_MAX, om_pf_err_from(&oom));
    }
    j->state = cancelled ? OM_PF_JOB_CANCELLED : failed ? OM_PF_JOB_FAILED : OM_PF_JOB_DONE;
    j->finished_ms = om_now_ms();
    j->has_current = false;
    j->next_try_ms = 0;
    size_t done = j->done;
    uint64_t bytes = j->bytes;
    size_t blobs = j->blobs, cached = j->blobs_cached;
    pthread_mutex_unlock(&p->mu);

    char done_s[24], failed_s[24], bytes_s[24], blobs_s[24], cached_s[24], msg[160];
    snprintf(done_s, sizeof(done_s), "%zu", done);
    snprintf(failed_s, sizeof(failed_s), "%zu", failed);
    snprintf(bytes_s, sizeof(bytes_s), "%llu", (unsigned long long)bytes);
    snprintf(blobs_s, sizeof(blobs_s), "%zu", blobs);
    snprintf(cached_s, sizeof(cached_s), "%zu", cached);
    om_log_kv(failed ? OM_LOG_WARN : OM_LOG_INFO,
              cancelled ? "prefetch: job cancelled" : "prefetch: job finished", "job", j->id,
              "kind", j->kind, "done", done_s, "failed", failed_s, "bytes", bytes_s, "blobs",
              blobs_s, "cached", cached_s, NULL);
    snprintf(msg, sizeof(msg), "prefetch job %s (%s) %s: %zu done, %zu failed", j->id, j->kind,
             cancelled ? "cancelled" : "finished", done, failed);
    om_events_add_kv(p->srv->events, OM_EV_PREFETCH,
                     cancelled ? "prefetch_job_cancelled" : "prefetch_job_finished", NULL, NULL,
                     bytes, msg, "job", j->id, "kind", j->kind, "#done", done_s, "#failed",
                     failed_s, "#blobs", blobs_s, "#cached", cached_s, NULL);
    free(items);
    free(ended);
}

/* ---- the thread -------------------------------------------------------- */

static void *worker(void *arg)
{
    struct om_prefetcher *p = arg;
    const struct om_config *cfg = p->srv->cfg;
    pthread_mutex_lock(&p->mu);
    while (!atomic_load(&p->stop)) {
        bool config_pending = false;
        struct om_pf_job *j = oldest_queued(p, &config_pending);
        int64_t now = om_now_ms();
        if (j == NULL && p->next_sync_ms != 0 && now >= p->next_sync_ms) {
            p->next_sync_ms = cfg->prefetch_interval_ms ? now + (int64_t)cfg->prefetch_interval_ms
                                                        : 0;
            if (!config_pending) {
                j = job_new(p, "config", (const char *const *)cfg->prefetch_images,
                            cfg->n_prefetch_images,
                            (const char *const *)cfg->prefetch_platforms,
                            cfg->n_prefetch_platforms, cfg->prefetch_retries,
                            cfg->prefetch_retry_interval_ms);
                if (j != NULL) {
                    j->next = p->jobs;
                    p->jobs = j;
                } else {
                    om_log(OM_LOG_ERROR, "prefetch: out of memory queueing the config images");
                }
            }
        }
        if (j != NULL) {
            j->state = OM_PF_JOB_RUNNING;
            j->started_ms = om_now_ms();
            pthread_mutex_unlock(&p->mu);
            run_job(p, j);
            pthread_mutex_lock(&p->mu);
            trim_finished(p);
            continue;
        }
        if (p->next_sync_ms != 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);   /* the condvar's clock */
            int64_t wait = p->next_sync_ms - now;
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        } else {
            pthread_cond_wait(&p->cv, &p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int om_prefetch_start(struct om_server *srv)
{
    int err = OM_ERR_NOMEM;
    const struct om_config *cfg = srv->cfg;
    struct om_prefetcher *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return err;
    p->srv = srv;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    const union MHD_DaemonInfo *di =
        srv->daemon ? MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    struct om_pf_target *t = &p->target;
    if (di == NULL || om_pf_self_base(cfg->listen, di->port, srv->tls_cert_pem != NULL, t->base,
                                      sizeof(t->base)) != OM_OK) {
        om_log_kv(OM_LOG_ERROR, "prefetch: cannot tell the server's own address", "listen",
                  cfg->listen, NULL);
        err = OM_ERR_INVALID;
        goto fail;
    }
    /* Our own certificate is the trust anchor for talking to ourselves;
     * the host name check is off because we connect by loopback IP. */
    t->ca_pem = srv->tls_cert_pem;
    t->no_verify_host = srv->tls_cert_pem != NULL;
    t->max_manifest = cfg->limits.max_manifest_bytes;
    t->store = srv->store;
    /* access.anonymous false: the mirror's own client logs in too */
    t->user = OM_AUTH_SELF_USER;
    t->password = om_auth_self_password(srv->auth);
    t->stop[0] = &p->stop;
    t->stop[1] = &srv->stopping;
    t->stop[2] = &srv->cancel;
    if (cfg->n_prefetch_images > 0)
        p->next_sync_ms = om_now_ms();   /* at start-up */
    int rc = pthread_create(&p->thread, NULL, worker, p);
    if (rc != 0) {
        om_log(OM_LOG_ERROR, "prefetch: cannot start its thread: %s", strerror(rc));
        err = OM_ERR_NOMEM;
        goto fail;
    }
    p->started = true;
    srv->prefetch = p;
    return OM_OK;
fail:
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return err;
}

void om_prefetch_stop(struct om_server *srv)
{
    struct om_prefetcher *p = srv ? srv->prefetch : NULL;
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->started)
        pthread_join(p->thread, NULL);
    while (p->jobs != NULL) {
        struct om_pf_job *j = p->jobs;
        p->jobs = j->next;
        om_pf_job_free(j);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    srv->prefetch = NULL;
}

/* ---- admin API ----------------------------------------------------------- */

int om_prefetch_submit(struct om_server *srv, const char *const *images, size_t n,
                       const char *const *platforms, size_t np,
                       const struct om_prefetch_opts *opts, char *id_out, size_t id_sz)
{
    int err = OM_ERR_INVALID;
    struct om_prefetcher *p = srv ? srv->prefetch : NULL;
    char name[OM_NAME_MAX + 1], ref[OM_DIGEST_MAX + OM_TAG_MAX + 2];
    const char *kind = opts != NULL && opts->kind != NULL ? opts->kind : "admin";
    unsigned tries = opts != NULL ? opts->tries : 0;
    int64_t retry_ms = opts != NULL ? opts->retry_ms : -1;
    if (id_sz > 0)
        id_out[0] = '\0';
    if (n == 0 || n > OM_MAX_PREFETCH_IMAGES || np > OM_MAX_PREFETCH_PLATFORMS ||
        id_sz <= OM_PREFETCH_ID_MAX || tries > 100 ||
        (strcmp(kind, "admin") != 0 && strcmp(kind, "cli") != 0))
        return err;
    kind = strcmp(kind, "cli") == 0 ? "cli" : "admin";   /* static strings */
    for (size_t i = 0; i < n; i++)
        if (images[i] == NULL ||
            om_prefetch_ref_parse(images[i], name, sizeof(name), ref, sizeof(ref)) != OM_OK)
            return err;
    for (size_t i = 0; i < np; i++)
        if (platforms[i] == NULL || !om_prefetch_platform_valid(platforms[i]))
            return err;
    if (p == NULL || atomic_load(&p->stop) || atomic_load(&srv->stopping))
        return OM_ERR_DENIED;
    if (np == 0) {
        platforms = (const char *const *)srv->cfg->prefetch_platforms;
        np = srv->cfg->n_prefetch_platforms;
    }
    if (tries == 0)
        tries = srv->cfg->prefetch_retries;
    if (retry_ms < 0)
        retry_ms = (int64_t)srv->cfg->prefetch_retry_interval_ms;
    pthread_mutex_lock(&p->mu);
    size_t queued = 0;
    for (struct om_pf_job *j = p->jobs; j != NULL; j = j->next)
        queued += j->state == OM_PF_JOB_QUEUED;
    struct om_pf_job *j = NULL;
    if (queued >= OM_PREFETCH_QUEUE_MAX) {
        err = OM_ERR_TOOMANY;
    } else if ((j = job_new(p, kind, images, n, platforms, np, tries, (uint64_t)retry_ms)) ==
               NULL) {
        err = OM_ERR_NOMEM;
    } else {
        j->next = p->jobs;
        p->jobs = j;
        snprintf(id_out, id_sz, "%s", j->id);
        pthread_cond_signal(&p->cv);
        err = OM_OK;
    }
    pthread_mutex_unlock(&p->mu);
    if (err == OM_OK) {
        char n_s[24];
        snprintf(n_s, sizeof(n_s), "%zu", n);
        om_log_kv(OM_LOG_INFO, "prefetch: job queued", "job", id_out, "kind", kind, "images",
                  n_s, NULL);
    }
    return err;
}

json_t *om_prefetch_jobs_json(struct om_server *srv)
{
    struct om_prefetcher *p = srv ? srv->prefetch : NULL;
    json_t *jobs = json_array(), *out = NULL;
    if (p == NULL || jobs == NULL)
        goto done;
    pthread_mutex_lock(&p->mu);
    bool ok = true;
    for (const struct om_pf_job *j = p->jobs; ok && j != NULL; j = j->next) {
        json_t *o = om_pf_job_json(j);
        ok = o != NULL && json_array_append_new(jobs, o) == 0;
    }
    pthread_mutex_unlock(&p->mu);
    if (ok)
        out = json_pack("{s:O}", "jobs", jobs);
done:
    json_decref(jobs);
    return out;
}

int om_prefetch_job_json(struct om_server *srv, const char *id, uint64_t since, json_t **out)
{
    struct om_prefetcher *p = srv ? srv->prefetch : NULL;
    int err = OM_ERR_NOTFOUND;
    *out = NULL;
    if (p == NULL)
        return OM_ERR_DENIED;
    pthread_mutex_lock(&p->mu);
    const struct om_pf_job *j = find_job(p, id);
    if (j != NULL) {
        *out = om_pf_job_log_json(j, since);
        err = *out != NULL ? OM_OK : OM_ERR_NOMEM;
    }
    pthread_mutex_unlock(&p->mu);
    return err;
}

int om_prefetch_cancel(struct om_server *srv, const char *id, json_t **out)
{
    struct om_prefetcher *p = srv ? srv->prefetch : NULL;
    int err = OM_ERR_NOTFOUND;
    bool was_queued = false, asked = false;
    const char *kind = "admin";     /* static strings */
    *out = NULL;
    if (p == NULL)
        return OM_ERR_DENIED;
    pthread_mutex_lock(&p->mu);
    struct om_pf_job *j = find_job(p, id);
    if (j != NULL) {
        if (j->state == OM_PF_JOB_QUEUED) {
            /* Never started: it is finished now, with nothing done. */
            j->state = OM_PF_JOB_CANCELLED;
            j->finished_ms = om_now_ms();
            was_queued = true;
            kind = j->kind;
        } else if (!om_pf_job_finished(j)) {
            atomic_store(&j->cancel, true);   /* run_job marks it when it stops */
            asked = true;
        }
        *out = om_pf_job_json(j);
        err = *out != NULL ? OM_OK : OM_ERR_NOMEM;
        if (was_queued)
            trim_finished(p);                 /* j may be gone after this */
    }
    pthread_mutex_unlock(&p->mu);
    if (was_queued || asked)
        om_log_kv(OM_LOG_INFO, "prefetch: job cancel requested", "job", id, "state",
                  was_queued ? "queued" : "running", NULL);
    if (was_queued) {            /* a running one says so when it stops (run_job) */
        char msg[96];
        snprintf(msg, sizeof(msg), "prefetch job %s (%s) cancelled: 0 done, 0 failed", id, kind);
        om_events_add_kv(srv->events, OM_EV_PREFETCH, "prefetch_job_cancelled", NULL, NULL, 0,
                         msg, "job", id, "kind", kind, "#done", "0", "#failed", "0", "#blobs",
                         "0", "#cached", "0", NULL);
    }
    return err;
}
