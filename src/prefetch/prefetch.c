/* prefetch.c — the server's prefetcher: one background thread that runs
 * prefetch jobs one after another, pulling through the server's own
 * listening port on loopback (see prefetch.h for why it is a client).
 *
 * Jobs come from two places and share one queue:
 *   - "config": the config's prefetch.images, at start-up and then every
 *     prefetch.interval (interval 0: at start-up only).  A config job is
 *     not queued again while one is queued or running.
 *   - "admin": om_prefetch_submit() (POST /api/v1/prefetch).
 * A job runs its images with prefetch.retries tries, prefetch.retry_interval
 * apart (prefetch_run.c).  One thread is enough: the work is I/O bound and
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

#define JOB_ERRORS_MAX 64   /* error strings kept per job (later ones counted only) */

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_WAITING, JOB_DONE, JOB_FAILED } job_state;

static const char *const state_names[] = {"queued", "running", "waiting", "done", "failed"};

struct pf_job {
    struct pf_job *next;            /* newest first */
    char id[OM_PREFETCH_ID_MAX + 1];
    const char *kind;               /* "config" | "admin" (static strings) */
    char **images;                  /* owned, n entries, each owned */
    size_t n;
    char **platforms;               /* owned, np entries, each owned */
    size_t np;
    job_state state;
    size_t done, failed;
    char *errors[JOB_ERRORS_MAX];   /* owned "IMAGE: message" strings */
    size_t n_errors;
    unsigned try_no, tries;
    uint64_t bytes;                 /* blob bytes fetched */
    size_t blobs;                   /* blobs handled (fetched or already cached) */
    bool has_current;
    char cur_image[OM_PREFETCH_IMAGE_MAX + 1];
    size_t cur_blobs_done, cur_blobs_total;
    uint64_t cur_bytes;
    int64_t created_ms, started_ms, finished_ms, next_try_ms;
};

struct om_prefetcher {
    struct om_server *srv;          /* borrowed: outlives us */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;              /* new job, or stop */
    atomic_bool stop;
    struct pf_job *jobs;            /* owned list, newest first */
    uint64_t seq;                   /* last job number */
    int64_t next_sync_ms;           /* when the next config job is due; 0 = never */
    struct om_pf_target target;
};

/* ---- jobs ----------------------------------------------------------- */

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

static void job_free(struct pf_job *j)
{
    if (j == NULL)
        return;
    free_strv(j->images, j->n);
    free_strv(j->platforms, j->np);
    for (size_t i = 0; i < j->n_errors; i++)
        free(j->errors[i]);
    free(j);
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

/* A new queued job (not linked); the strings are copied.  Caller holds mu
 * (for seq).  NULL on allocation failure. */
static struct pf_job *job_new(struct om_prefetcher *p, const char *kind,
                              const char *const *images, size_t n,
                              const char *const *platforms, size_t np)
{
    struct pf_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->kind = kind;
    j->images = dup_strv(images, n);
    j->n = n;
    j->platforms = dup_strv(platforms, np);
    j->np = np;
    if (j->images == NULL || j->platforms == NULL) {
        job_free(j);
        return NULL;
    }
    snprintf(j->id, sizeof(j->id), "pf-%llu", (unsigned long long)++p->seq);
    j->state = JOB_QUEUED;
    j->tries = p->srv->cfg->prefetch_retries;
    j->created_ms = om_now_ms();
    return j;
}

/* Keep every unfinished job and the newest OM_PREFETCH_KEEP_DONE finished
 * ones.  Caller holds mu. */
static void trim_finished(struct om_prefetcher *p)
{
    size_t kept = 0;
    for (struct pf_job **pp = &p->jobs; *pp != NULL;) {
        struct pf_job *j = *pp;
        bool finished = j->state == JOB_DONE || j->state == JOB_FAILED;
        if (finished && ++kept > OM_PREFETCH_KEEP_DONE) {
            *pp = j->next;
            job_free(j);
        } else {
            pp = &j->next;
        }
    }
}

/* The oldest queued job, or NULL.  Caller holds mu. */
static struct pf_job *oldest_queued(struct om_prefetcher *p, bool *config_pending)
{
    struct pf_job *found = NULL;
    *config_pending = false;
    for (struct pf_job *j = p->jobs; j != NULL; j = j->next) {
        bool unfinished = j->state == JOB_QUEUED || j->state == JOB_RUNNING ||
                          j->state == JOB_WAITING;
        if (unfinished && strcmp(j->kind, "config") == 0)
            *config_pending = true;
        if (j->state == JOB_QUEUED)
            found = j;   /* the list is newest first: the last one seen is the oldest */
    }
    return found;
}

/* ---- running a job: hooks that record progress --------------------- */

struct run_ctx {
    struct om_prefetcher *p;
    struct pf_job *j;
};

static void on_image_start(void *ud, size_t i, size_t n, unsigned try_no, unsigned tries)
{
    (void)n, (void)tries;
    struct run_ctx *c = ud;
    pthread_mutex_lock(&c->p->mu);
    c->j->state = JOB_RUNNING;
    c->j->try_no = try_no;
    c->j->next_try_ms = 0;
    c->j->has_current = true;
    snprintf(c->j->cur_image, sizeof(c->j->cur_image), "%s", c->j->images[i]);
    c->j->cur_blobs_done = c->j->cur_blobs_total = 0;
    c->j->cur_bytes = 0;
    pthread_mutex_unlock(&c->p->mu);
}

static void on_manifest(void *ud, const om_digest *d, const char *media_type, size_t np,
                        size_t n_blobs)
{
    (void)d, (void)media_type, (void)np;
    struct run_ctx *c = ud;
    pthread_mutex_lock(&c->p->mu);
    c->j->cur_blobs_total = n_blobs;
    pthread_mutex_unlock(&c->p->mu);
}

static void on_blob(void *ud, om_pf_blob_event ev, const om_digest *d, size_t idx, size_t n,
                    uint64_t bytes, int64_t total)
{
    (void)d, (void)idx, (void)n, (void)total;
    struct run_ctx *c = ud;
    if (ev == OM_PF_BLOB_PROGRESS)
        return;
    pthread_mutex_lock(&c->p->mu);
    c->j->cur_blobs_done++;
    c->j->blobs++;
    if (ev == OM_PF_BLOB_FETCHED) {
        c->j->cur_bytes += bytes;
        c->j->bytes += bytes;
    }
    pthread_mutex_unlock(&c->p->mu);
}

static void on_image_end(void *ud, size_t i, size_t n, unsigned try_no, unsigned tries,
                         const struct om_pf_item *it, uint64_t ms)
{
    (void)n;
    struct run_ctx *c = ud;
    struct om_server *srv = c->p->srv;
    const char *image = c->j->images[i];
    char msg[OM_PF_ERR_MAX + 64], ms_s[24], try_s[24], bytes_s[24];
    snprintf(ms_s, sizeof(ms_s), "%llu", (unsigned long long)ms);
    snprintf(try_s, sizeof(try_s), "%u/%u", try_no, tries);
    snprintf(bytes_s, sizeof(bytes_s), "%llu", (unsigned long long)it->res.bytes);
    pthread_mutex_lock(&c->p->mu);
    c->j->has_current = false;
    if (it->state == OM_PF_OK) {
        c->j->done++;
    } else if (it->state == OM_PF_FAILED) {
        c->j->failed++;
        if (c->j->n_errors < JOB_ERRORS_MAX) {
            snprintf(msg, sizeof(msg), "%s: %s", image, it->res.error);
            c->j->errors[c->j->n_errors] = strdup(msg);
            if (c->j->errors[c->j->n_errors] != NULL)
                c->j->n_errors++;
        }
    }
    pthread_mutex_unlock(&c->p->mu);

    if (it->state == OM_PF_OK) {
        om_log_kv(OM_LOG_INFO, "prefetch: image done", "job", c->j->id, "image", image,
                  "digest", it->res.have_digest ? it->res.digest.str : "", "bytes", bytes_s,
                  "try", try_s, "ms", ms_s, NULL);
        snprintf(msg, sizeof(msg), "prefetched (job %s): %zu blobs, %zu already cached",
                 c->j->id, it->res.blobs, it->res.blobs_cached);
        om_events_add(srv->events, OM_EV_PREFETCH, image,
                      it->res.have_digest ? it->res.digest.str : NULL, it->res.bytes, msg);
    } else {
        bool final = it->state == OM_PF_FAILED;
        om_log_kv(final ? OM_LOG_WARN : OM_LOG_INFO,
                  final ? "prefetch: image failed" : "prefetch: image failed, will retry",
                  "job", c->j->id, "image", image, "error", it->res.error, "try", try_s, NULL);
        if (final) {
            snprintf(msg, sizeof(msg), "prefetch failed (job %s): %s", c->j->id,
                     it->res.error);
            om_events_add(srv->events, OM_EV_PREFETCH, image, NULL, it->res.bytes, msg);
        }
    }
}

static void on_waiting(void *ud, unsigned try_no, unsigned tries, size_t pending, uint64_t ms)
{
    struct run_ctx *c = ud;
    char ms_s[24], try_s[24], n_s[24];
    snprintf(ms_s, sizeof(ms_s), "%llu", (unsigned long long)ms);
    snprintf(try_s, sizeof(try_s), "%u/%u", try_no, tries);
    snprintf(n_s, sizeof(n_s), "%zu", pending);
    pthread_mutex_lock(&c->p->mu);
    c->j->state = JOB_WAITING;
    c->j->next_try_ms = om_now_ms() + (int64_t)ms;
    pthread_mutex_unlock(&c->p->mu);
    om_log_kv(OM_LOG_INFO, "prefetch: retrying failed images", "job", c->j->id, "images", n_s,
              "next_try", try_s, "in_ms", ms_s, NULL);
}

/* Run one job on the worker thread.  The job's image and platform lists
 * are not changed by anyone while it runs, so they are read without mu. */
static void run_job(struct om_prefetcher *p, struct pf_job *j)
{
    const struct om_config *cfg = p->srv->cfg;
    struct om_pf_item *items = calloc(j->n, sizeof(*items));
    struct run_ctx ctx = {p, j};
    struct om_pf_run_hooks hooks = {
        .ud = &ctx, .image_start = on_image_start, .image_end = on_image_end,
        .waiting = on_waiting,
        .obs = {.ud = &ctx, .manifest = on_manifest, .blob = on_blob},
    };
    char n_s[24];
    snprintf(n_s, sizeof(n_s), "%zu", j->n);
    om_log_kv(OM_LOG_INFO, "prefetch: job started", "job", j->id, "kind", j->kind, "images",
              n_s, NULL);
    size_t failed = j->n;
    if (items != NULL) {
        for (size_t i = 0; i < j->n; i++)
            items[i].image = j->images[i];
        failed = om_pf_run(&p->target, items, j->n, (const char *const *)j->platforms, j->np,
                           j->tries, cfg->prefetch_retry_interval_ms, &hooks);
    }
    pthread_mutex_lock(&p->mu);
    if (items == NULL && j->n_errors < JOB_ERRORS_MAX &&
        (j->errors[j->n_errors] = strdup("out of memory")) != NULL)
        j->n_errors++;
    j->state = failed ? JOB_FAILED : JOB_DONE;
    j->finished_ms = om_now_ms();
    j->has_current = false;
    j->next_try_ms = 0;
    size_t done = j->done;
    uint64_t bytes = j->bytes;
    pthread_mutex_unlock(&p->mu);

    char done_s[24], failed_s[24], bytes_s[24], msg[160];
    snprintf(done_s, sizeof(done_s), "%zu", done);
    snprintf(failed_s, sizeof(failed_s), "%zu", failed);
    snprintf(bytes_s, sizeof(bytes_s), "%llu", (unsigned long long)bytes);
    om_log_kv(failed ? OM_LOG_WARN : OM_LOG_INFO, "prefetch: job finished", "job", j->id,
              "kind", j->kind, "done", done_s, "failed", failed_s, "bytes", bytes_s, NULL);
    snprintf(msg, sizeof(msg), "prefetch job %s (%s) finished: %zu done, %zu failed", j->id,
             j->kind, done, failed);
    om_events_add(p->srv->events, OM_EV_PREFETCH, NULL, NULL, bytes, msg);
    free(items);
}

/* ---- the thread -------------------------------------------------------- */

static void *worker(void *arg)
{
    struct om_prefetcher *p = arg;
    const struct om_config *cfg = p->srv->cfg;
    pthread_mutex_lock(&p->mu);
    while (!atomic_load(&p->stop)) {
        bool config_pending = false;
        struct pf_job *j = oldest_queued(p, &config_pending);
        int64_t now = om_now_ms();
        if (j == NULL && p->next_sync_ms != 0 && now >= p->next_sync_ms) {
            p->next_sync_ms = cfg->prefetch_interval_ms ? now + (int64_t)cfg->prefetch_interval_ms
                                                        : 0;
            if (!config_pending) {
                j = job_new(p, "config", (const char *const *)cfg->prefetch_images,
                            cfg->n_prefetch_images,
                            (const char *const *)cfg->prefetch_platforms,
                            cfg->n_prefetch_platforms);
                if (j != NULL) {
                    j->next = p->jobs;
                    p->jobs = j;
                } else {
                    om_log(OM_LOG_ERROR, "prefetch: out of memory queueing the config images");
                }
            }
        }
        if (j != NULL) {
            j->state = JOB_RUNNING;
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
        struct pf_job *j = p->jobs;
        p->jobs = j->next;
        job_free(j);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    srv->prefetch = NULL;
}

/* ---- admin API ----------------------------------------------------------- */

int om_prefetch_submit(struct om_server *srv, const char *const *images, size_t n,
                       const char *const *platforms, size_t np, char *id_out, size_t id_sz)
{
    int err = OM_ERR_INVALID;
    struct om_prefetcher *p = srv ? srv->prefetch : NULL;
    char name[OM_NAME_MAX + 1], ref[OM_DIGEST_MAX + OM_TAG_MAX + 2];
    if (id_sz > 0)
        id_out[0] = '\0';
    if (n == 0 || n > OM_MAX_PREFETCH_IMAGES || np > OM_MAX_PREFETCH_PLATFORMS ||
        id_sz <= OM_PREFETCH_ID_MAX)
        return err;
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
    pthread_mutex_lock(&p->mu);
    size_t queued = 0;
    for (struct pf_job *j = p->jobs; j != NULL; j = j->next)
        queued += j->state == JOB_QUEUED;
    struct pf_job *j = NULL;
    if (queued >= OM_PREFETCH_QUEUE_MAX) {
        err = OM_ERR_TOOMANY;
    } else if ((j = job_new(p, "admin", images, n, platforms, np)) == NULL) {
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
        om_log_kv(OM_LOG_INFO, "prefetch: job queued", "job", id_out, "images", n_s, NULL);
    }
    return err;
}

static json_t *strv_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *job_json(const struct pf_job *j)
{
    json_t *cur = json_null();
    if (j->has_current)
        cur = json_pack("{s:s, s:I, s:I, s:I}", "image", j->cur_image, "blobs_done",
                        (json_int_t)j->cur_blobs_done, "blobs_total",
                        (json_int_t)j->cur_blobs_total, "bytes", (json_int_t)j->cur_bytes);
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:o, s:I,"
                     " s:I, s:I, s:I}",
                     "id", j->id, "kind", j->kind, "state", state_names[j->state],
                     "images", strv_json(j->images, j->n),
                     "platforms", strv_json(j->platforms, j->np),
                     "done", (json_int_t)j->done, "failed", (json_int_t)j->failed,
                     "errors", strv_json(j->errors, j->n_errors),
                     "try", (json_int_t)j->try_no, "tries", (json_int_t)j->tries,
                     "bytes", (json_int_t)j->bytes, "blobs", (json_int_t)j->blobs,
                     "current", cur ? cur : json_null(),
                     "created_ms", (json_int_t)j->created_ms,
                     "started_ms", (json_int_t)j->started_ms,
                     "finished_ms", (json_int_t)j->finished_ms,
                     "next_try_ms", (json_int_t)j->next_try_ms);
}

json_t *om_prefetch_jobs_json(struct om_server *srv)
{
    struct om_prefetcher *p = srv ? srv->prefetch : NULL;
    json_t *jobs = json_array(), *out = NULL;
    if (p == NULL || jobs == NULL)
        goto done;
    pthread_mutex_lock(&p->mu);
    bool ok = true;
    for (const struct pf_job *j = p->jobs; ok && j != NULL; j = j->next) {
        json_t *o = job_json(j);
        ok = o != NULL && json_array_append_new(jobs, o) == 0;
    }
    pthread_mutex_unlock(&p->mu);
    if (ok)
        out = json_pack("{s:O}", "jobs", jobs);
done:
    json_decref(jobs);
    return out;
}
