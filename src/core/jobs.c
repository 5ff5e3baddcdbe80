/* jobs.c — see jobs.h.  One mutex and one condition variable around a ring
 * buffer of (fn, arg) per lane.  A worker takes the next job of the first
 * lane (starting after the lane it served last, so lanes take turns) that
 * has work and is below its cap.  Jobs are few (one per cache miss) and long
 * (an upstream round trip): one lock for everything costs nothing.
 *
 * Why threads = lanes x cap: a lane below its cap must always find a free
 * thread, whatever the other lanes are doing — otherwise an upstream that
 * hangs could still starve another upstream's lane by holding the threads.
 * Idle threads cost a stack of address space each, not memory.
 */
#include "core/jobs.h"

#include <pthread.h>
#include <stdlib.h>

struct job {
    om_job_fn fn;
    void *arg;
};

struct lane {
    struct job *ring;        /* owned, cap entries */
    size_t cap, head, len;
    unsigned running;
    uint64_t saturated;
};

struct om_jobs {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct lane lanes[OM_JOBS_LANES_MAX];
    unsigned n_lanes, lane_max, next;   /* next: where the turn starts */
    bool stopping;
    unsigned n_threads;
    pthread_t *threads;      /* owned */
};

/* The lane whose next job may run now, or -1.  Caller holds j->mu. */
static int runnable(struct om_jobs *j)
{
    for (unsigned k = 0; k < j->n_lanes; k++) {
        unsigned l = (j->next + k) % j->n_lanes;
        if (j->lanes[l].len > 0 && j->lanes[l].running < j->lane_max)
            return (int)l;
    }
    return -1;
}

static void *worker(void *p)
{
    struct om_jobs *j = p;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        int l = runnable(j);
        if (l < 0) {
            /* Stopping: leave once no lane has work queued anywhere. */
            bool any = false;
            for (unsigned k = 0; k < j->n_lanes && !any; k++)
                any = j->lanes[k].len > 0;
            if (j->stopping && !any)
                break;
            pthread_cond_wait(&j->cond, &j->mu);
            continue;
        }
        struct lane *ln = &j->lanes[l];
        struct job jb = ln->ring[ln->head];
        ln->head = (ln->head + 1) % ln->cap;
        ln->len--;
        ln->running++;
        j->next = ((unsigned)l + 1) % j->n_lanes;
        pthread_mutex_unlock(&j->mu);
        jb.fn(jb.arg);
        pthread_mutex_lock(&j->mu);
        ln->running--;
        if (ln->len > 0 || j->stopping)
            pthread_cond_broadcast(&j->cond); /* a job of this lane may go now */
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

int om_jobs_start(struct om_jobs **out, unsigned n_lanes, unsigned lane_max, size_t lane_queue)
{
    int err = OM_ERR_NOMEM;
    struct om_jobs *j = NULL;

    *out = NULL;
    if (n_lanes == 0 || n_lanes > OM_JOBS_LANES_MAX || lane_max == 0)
        return OM_ERR_INVALID;
    j = calloc(1, sizeof(*j)); /* owned by the caller via *out, or freed below */
    if (j == NULL)
        return OM_ERR_NOMEM;
    j->n_lanes = n_lanes;
    j->lane_max = lane_max;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cond, NULL);
    for (unsigned l = 0; l < n_lanes; l++) {
        j->lanes[l].cap = lane_queue ? lane_queue : 1;
        j->lanes[l].ring = calloc(j->lanes[l].cap, sizeof(struct job));
        if (j->lanes[l].ring == NULL)
            goto fail;
    }
    unsigned threads = n_lanes * lane_max;
    j->threads = calloc(threads, sizeof(*j->threads));
    if (j->threads == NULL)
        goto fail;
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&j->threads[i], NULL, worker, j) != 0)
            break;
        j->n_threads++;
    }
    if (j->n_threads < threads)
        goto fail; /* a lane could be starved: refuse rather than run short */
    *out = j;
    return OM_OK;
fail:
    om_jobs_stop(j);
    return err;
}

int om_jobs_submit(struct om_jobs *j, om_job_fn fn, void *arg)
{
    return om_jobs_submit_lane(j, j->n_lanes - 1, fn, arg);
}

int om_jobs_submit_lane(struct om_jobs *j, unsigned lane, om_job_fn fn, void *arg)
{
    int err = OM_OK;
    if (lane >= j->n_lanes)
        return OM_ERR_INVALID;
    pthread_mutex_lock(&j->mu);
    struct lane *ln = &j->lanes[lane];
    if (j->stopping || ln->len == ln->cap) {
        err = OM_ERR_TOOMANY;
    } else {
        if (ln->running + ln->len >= j->lane_max)
            ln->saturated++; /* every thread of the lane is taken: it waits */
        ln->ring[(ln->head + ln->len) % ln->cap] = (struct job){fn, arg};
        ln->len++;
        pthread_cond_signal(&j->cond);
    }
    pthread_mutex_unlock(&j->mu);
    return err;
}

size_t om_jobs_pending(struct om_jobs *j)
{
    size_t n = 0;
    if (j == NULL)
        return 0;
    pthread_mutex_lock(&j->mu);
    for (unsigned l = 0; l < j->n_lanes; l++)
        n += j->lanes[l].len;
    pthread_mutex_unlock(&j->mu);
    return n;
}

void om_jobs_lane_stats(struct om_jobs *j, unsigned lane, struct om_jobs_lane_stats *out)
{
    *out = (struct om_jobs_lane_stats){0};
    if (j == NULL || lane >= j->n_lanes)
        return;
    pthread_mutex_lock(&j->mu);
    out->running = j->lanes[lane].running;
    out->max = j->lane_max;
    out->waiting = j->lanes[lane].len;
    out->saturated = j->lanes[lane].saturated;
    pthread_mutex_unlock(&j->mu);
}

bool om_jobs_lane_busy(struct om_jobs *j, unsigned lane)
{
    struct om_jobs_lane_stats st;
    om_jobs_lane_stats(j, lane, &st);
    return st.max > 0 && (st.running >= st.max || st.waiting > 0);
}

void om_jobs_stop(struct om_jobs *j)
{
    if (j == NULL)
        return;
    pthread_mutex_lock(&j->mu);
    j->stopping = true;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->mu);
    for (unsigned i = 0; i < j->n_threads; i++)
        pthread_join(j->threads[i], NULL);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cond);
    for (unsigned l = 0; l < j->n_lanes; l++)
        free(j->lanes[l].ring);
    free(j->threads);
    free(j);
}
