/* gc_service.c — GC as a background service of a running server (see gc.h
 * for the API): the thread that runs the engine (gc.c) every gc_interval
 * or when nudged, the on-demand run and eviction of the admin API, the
 * nudge of the write path, the last result and the totals.
 *
 * It knows nothing of the server.  What it works on — config, store,
 * events, pull statistics, manifest cache, the cancel flag, and a callback
 * for the evictions it made — comes in a struct om_gc_host at om_gc_start,
 * copied into struct om_gc; every entry point takes that struct om_gc.
 *
 * struct om_gc holds GC's own index connection (serialised by run_mu: one
 * run at a time), the thread, the last result and totals.  The thread
 * sleeps gc_interval or until om_gc_nudge() sees usage above the high mark
 * (spaced at least GC_MIN_GAP_MS apart).  The store's running counter
 * drifts when another process removes files; `drift` (counter − walked
 * bytes at the last run) corrects the nudge test.
 *
 * Lifetime: every entry point other than start/stop runs between
 * gc_enter() and gc_leave().  om_gc_stop first sets `closed` (entry points
 * arriving later refuse) and `abort` (a run in progress ends early), joins
 * the thread, then waits until `users` is 0.  gc_enter increments users
 * BEFORE it checks closed a second time, and stop sets closed BEFORE it
 * reads users (both sequentially consistent), so a caller either is
 * counted by the time stop waits or sees closed and backs out: stop never
 * frees the struct under a caller that got in.  What gc_enter cannot
 * protect is a caller that reads a pointer to gc after it was freed —
 * hence the rule in gc.h: stop only once nothing can start a call.
 *
 * If you add an entry point: gc_enter/gc_leave around it, and a NULL gc
 * behaving as "not started".
 */
#include "cache/gc.h"

#include "cache/index_gc.h"
#include "cache/mcache.h"
#include "cache/pullstats.h"
#include "cache/store.h"
#include "core/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GC_MIN_GAP_MS 10000          /* nudged runs at most this often (or gc_interval) */
#define GC_STOP_WAIT_STEP_MS 10

struct om_gc {
    struct om_gc_host host;          /* copied at start; its pointers borrowed */
    pthread_mutex_t mu;              /* guards stop, nudged, last, has_last, totals */
    pthread_cond_t cond;             /* CLOCK_MONOTONIC; wakes the thread */
    bool stop, nudged, has_last;
    struct om_gc_result last;
    struct om_gc_totals totals;
    atomic_bool abort;               /* set by om_gc_stop: a run ends early */
    atomic_bool closed;              /* om_gc_stop began: entry points refuse */
    atomic_uint users;               /* callers inside run_now/evict/nudge/status */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t run_mu;          /* one run at a time; guards db */
    struct om_gc_db *db;             /* owned */
    _Atomic int64_t drift;           /* om_store_bytes() − walked bytes */
    uint64_t high_bytes;             /* set at start, then read-only */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Enter/leave an entry point; refuses (false) when gc is NULL or once
 * om_gc_stop began.  See the file comment for why users goes up before
 * the second look at closed. */
static bool gc_enter(struct om_gc *gc)
{
    if (gc == NULL || atomic_load(&gc->closed))
        return false;
    atomic_fetch_add(&gc->users, 1);
    if (atomic_load(&gc->closed)) {
        atomic_fetch_sub(&gc->users, 1);
        return false;
    }
    return true;
}

static void gc_leave(struct om_gc *gc)
{
    atomic_fetch_sub(&gc->users, 1);
}

/* The engine's inputs for a run of this service; *e borrows from gc. */
static void service_env(struct om_gc *gc, struct om_gc_env *e)
{
    memset(e, 0, sizeof(*e));
    e->cfg = gc->host.cfg;
    e->store = gc->host.store;
    e->db = gc->db;
    e->events = gc->host.events;
    e->abort = &gc->abort;
    e->abort2 = gc->host.cancel;
}

/* Tell the host that n images (bytes of content) were evicted, if any. */
static void evicted(struct om_gc *gc, uint64_t n, uint64_t bytes)
{
    if (n > 0 && gc->host.on_evictions != NULL)
        gc->host.on_evictions(gc->host.ud, n, bytes);
}

/* One run under run_mu; records the result.  The caller is gc's thread or
 * inside gc_enter. */
static int service_run(struct om_gc *gc, struct om_gc_result *out)
{
    struct om_gc_env e;
    struct om_gc_result res;
    int err;

    pthread_mutex_lock(&gc->run_mu);
    /* Least recently pulled first: the pulls noted in memory must be in the
     * index before it is read. */
    if (gc->host.pulls != NULL)
        om_pullstats_flush(gc->host.pulls);
    service_env(gc, &e);
    uint64_t counter = om_store_bytes(gc->host.store);
    err = om_gc_run_env(&e, &res);
    if (err == OM_OK)
        atomic_store(&gc->drift, (int64_t)counter - (int64_t)res.used_before);
    pthread_mutex_unlock(&gc->run_mu);

    if (res.evicted_images > 0 || res.removed_blobs > 0)
        om_mcache_clear(gc->host.mcache); /* no tag served from memory past its eviction */
    evicted(gc, res.evicted_images, res.evicted_bytes);
    if (res.not_leader) { /* another replica's round: nothing to record */
        if (out != NULL)
            *out = res;
        return err;
    }
    pthread_mutex_lock(&gc->mu);
    gc->last = res;
    gc->has_last = true;
    gc->totals.runs++;
    gc->totals.evicted_images += res.evicted_images;
    gc->totals.removed_blobs += res.removed_blobs;
    gc->totals.freed_bytes += res.freed_bytes;
    gc->totals.removed_ingest += res.removed_ingest;
    gc->totals.errors += err != OM_OK;
    gc->totals.last_run_ms = res.started_ms;
    pthread_mutex_unlock(&gc->mu);
    if (out != NULL)
        *out = res;
    return err;
}

static void deadline_ts(int64_t mono, struct timespec *ts)
{
    ts->tv_sec = (time_t)(mono / 1000);
    ts->tv_nsec = (long)(mono % 1000) * 1000000L;
}

static void *gc_thread(void *arg)
{
    struct om_gc *gc = arg;
    int64_t interval = (int64_t)gc->host.cfg->gc_interval_ms;
    int64_t gap = interval < GC_MIN_GAP_MS ? interval : GC_MIN_GAP_MS;
    int64_t last = mono_ms() - gap, next = mono_ms() + interval;

    pthread_mutex_lock(&gc->mu);
    for (;;) {
        int64_t now = mono_ms(), wake;
        struct timespec ts;
        if (gc->stop)
            break;
        if (now >= next || (gc->nudged && now >= last + gap)) {
            gc->nudged = false;
            pthread_mutex_unlock(&gc->mu);
            (void)service_run(gc, NULL); /* logged and recorded inside */
            last = mono_ms();
            next = last + interval;
            pthread_mutex_lock(&gc->mu);
            continue;
        }
        wake = gc->nudged && last + gap < next ? last + gap : next;
        deadline_ts(wake, &ts);
        pthread_cond_timedwait(&gc->cond, &gc->mu, &ts);
    }
    pthread_mutex_unlock(&gc->mu);
    return NULL;
}

static void gc_free(struct om_gc *gc)
{
    if (gc == NULL)
        return;
    om_index_gc_close(gc->db);
    pthread_cond_destroy(&gc->cond);
    pthread_mutex_destroy(&gc->mu);
    pthread_mutex_destroy(&gc->run_mu);
    free(gc);
}

int om_gc_start(struct om_gc **out, const struct om_gc_host *host)
{
    const struct om_config *cfg = host->cfg;
    struct om_gc *gc = NULL;
    pthread_condattr_t ca;
    uint64_t low_bytes;
    int err = OM_OK;

    *out = NULL;
    gc = calloc(1, sizeof(*gc)); /* owned by *out; freed by om_gc_stop */
    if (gc == NULL)
        return OM_ERR_NOMEM;
    gc->host = *host;
    pthread_mutex_init(&gc->mu, NULL);
    pthread_mutex_init(&gc->run_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&gc->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&gc->abort, false);
    atomic_init(&gc->closed, false);
    atomic_init(&gc->users, 0);
    atomic_init(&gc->drift, 0);
    om_gc_water_marks(cfg, &gc->high_bytes, &low_bytes);
    if ((err = om_index_gc_open_index(&gc->db, om_store_root(host->store), host->index,
                                      host->replica_id)) != OM_OK) {
        om_log(OM_LOG_ERROR, "gc: cannot open the index: %s", om_strerror(err));
        goto done;
    }
    if (pthread_create(&gc->thread, NULL, gc_thread, gc) != 0) {
        om_log(OM_LOG_ERROR, "gc: cannot start its thread");
        err = OM_ERR_NOMEM;
        goto done;
    }
    gc->thread_started = true;
    *out = gc;
    gc = NULL;
    {
        char max[32], iv[32], grace[32];
        if (cfg->storage_max_size)
            om_gc_format_bytes(cfg->storage_max_size, max, sizeof(max));
        else
            snprintf(max, sizeof(max), "unlimited");
        om_format_duration_ms(cfg->gc_interval_ms, iv, sizeof(iv));
        om_format_duration_ms(om_gc_grace_ms(cfg), grace, sizeof(grace));
        om_log_kv(OM_LOG_INFO, "gc: started", "max_size", max, "interval", iv, "grace", grace,
                  NULL);
    }
    om_gc_nudge(*out); /* already over the quota (a smaller max_size)? */
done:
    gc_free(gc);
    return err;
}

void om_gc_stop(struct om_gc *gc)
{
    if (gc == NULL)
        return;
    atomic_store(&gc->closed, true);
    atomic_store(&gc->abort, true);
    pthread_mutex_lock(&gc->mu);
    gc->stop = true;
    pthread_cond_signal(&gc->cond);
    pthread_mutex_unlock(&gc->mu);
    if (gc->thread_started)
        pthread_join(gc->thread, NULL);
    /* Callers inside an entry point finish soon: their run sees abort. */
    while (atomic_load(&gc->users) > 0) {
        struct timespec ts = {0, GC_STOP_WAIT_STEP_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    gc_free(gc);
}

int om_gc_run_now(struct om_gc *gc, struct om_gc_result *out)
{
    int err;

    if (!gc_enter(gc))
        return OM_ERR_INVALID;
    err = service_run(gc, out);
    gc_leave(gc);
    return err;
}

int om_gc_evict_image(struct om_gc *gc, const char *name, const char *reference,
                      uint64_t *freed)
{
    struct om_gc_env e;
    int err;

    *freed = 0;
    if (!gc_enter(gc))
        return OM_ERR_INVALID;
    if (name == NULL || reference == NULL) {
        gc_leave(gc);
        return OM_ERR_INVALID;
    }
    pthread_mutex_lock(&gc->run_mu);
    service_env(gc, &e);
    err = om_gc_evict_env(&e, name, reference, freed);
    pthread_mutex_unlock(&gc->run_mu);
    if (err == OM_OK) {
        om_mcache_clear(gc->host.mcache);
        evicted(gc, 1, *freed);
        pthread_mutex_lock(&gc->mu);
        gc->totals.evicted_images++;
        gc->totals.freed_bytes += *freed;
        pthread_mutex_unlock(&gc->mu);
    }
    gc_leave(gc);
    return err;
}

void om_gc_nudge(struct om_gc *gc)
{
    if (gc == NULL || gc->host.cfg->storage_max_size == 0 || !gc_enter(gc))
        return;
    int64_t used = (int64_t)om_store_bytes(gc->host.store) - atomic_load(&gc->drift);
    if (used > (int64_t)gc->high_bytes) {
        pthread_mutex_lock(&gc->mu);
        if (!gc->nudged) {
            gc->nudged = true;
            pthread_cond_signal(&gc->cond);
        }
        pthread_mutex_unlock(&gc->mu);
    }
    gc_leave(gc);
}

bool om_gc_is_leader(struct om_gc *gc)
{
    bool v;
    if (!gc_enter(gc))
        return false;
    v = om_index_gc_leading(gc->db); /* an atomic load; db is set for gc's life */
    gc_leave(gc);
    return v;
}

int om_gc_status(struct om_gc *gc, struct om_gc_result *last, struct om_gc_totals *totals)
{
    int err = OM_OK;

    if (!gc_enter(gc)) {
        if (last != NULL)
            memset(last, 0, sizeof(*last));
        if (totals != NULL)
            memset(totals, 0, sizeof(*totals));
        return OM_ERR_NOTFOUND;
    }
    pthread_mutex_lock(&gc->mu);
    if (last != NULL)
        *last = gc->last;
    if (totals != NULL)
        *totals = gc->totals;
    if (!gc->has_last)
        err = OM_ERR_NOTFOUND;
    pthread_mutex_unlock(&gc->mu);
    gc_leave(gc);
    return err;
}
