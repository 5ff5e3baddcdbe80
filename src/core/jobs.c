/* jobs.c — see jobs.h.  A mutex + condition variable around a ring buffer
 * of (fn, arg); workers pop and run.  Nothing clever: jobs are few (one per
 * cache miss) and long (an upstream round trip), so contention is nil. */
#include "core/jobs.h"

#include <pthread.h>
#include <stdlib.h>

struct job {
    om_job_fn fn;
    void *arg;
};

struct om_jobs {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct job *ring;        /* owned, max_queue entries */
    size_t cap, head, len;
    bool stopping;
    unsigned n_threads;
    pthread_t *threads;      /* owned */
};

static void *worker(void *p)
{
    struct om_jobs *j = p;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        while (j->len == 0 && !j->stopping)
            pthread_cond_wait(&j->cond, &j->mu);
        if (j->len == 0) {
            pthread_mutex_unlock(&j->mu);
            return NULL;
        }
        struct job jb = j->ring[j->head];
        j->head = (j->head + 1) % j->cap;
        j->len--;
        pthread_mutex_unlock(&j->mu);
        jb.fn(jb.arg);
    }
}

int om_jobs_start(struct om_jobs **out, unsigned threads, size_t max_queue)
{
    struct om_jobs *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return OM_ERR_NOMEM;
    j->cap = max_queue ? max_queue : 1;
    j->ring = calloc(j->cap, sizeof(*j->ring));
    j->threads = calloc(threads ? threads : 1, sizeof(*j->threads));
    if (j->ring == NULL || j->threads == NULL) {
        free(j->ring);
        free(j->threads);
        free(j);
        return OM_ERR_NOMEM;
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cond, NULL);
    for (unsigned i = 0; i < (threads ? threads : 1); i++) {
        if (pthread_create(&j->threads[i], NULL, worker, j) != 0)
            break;
        j->n_threads++;
    }
    if (j->n_threads == 0) {
        om_jobs_stop(j);
        return OM_ERR_NOMEM;
    }
    *out = j;
    return OM_OK;
}

int om_jobs_submit(struct om_jobs *j, om_job_fn fn, void *arg)
{
    int err = OM_OK;
    pthread_mutex_lock(&j->mu);
    if (j->stopping || j->len == j->cap) {
        err = OM_ERR_TOOMANY;
    } else {
        j->ring[(j->head + j->len) % j->cap] = (struct job){fn, arg};
        j->len++;
        pthread_cond_signal(&j->cond);
    }
    pthread_mutex_unlock(&j->mu);
    return err;
}

size_t om_jobs_pending(struct om_jobs *j)
{
    pthread_mutex_lock(&j->mu);
    size_t n = j->len;
    pthread_mutex_unlock(&j->mu);
    return n;
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
    free(j->ring);
    free(j->threads);
    free(j);
}
