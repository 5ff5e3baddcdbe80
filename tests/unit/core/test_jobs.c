/* test_jobs.c — the job pool's lanes: a lane runs at most its cap, a full
 * lane never holds up another, queues are bounded, stop runs what is
 * queued. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "core/jobs.h"
#include "test.h"

/* Jobs that block until released. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    atomic_int started, finished;
} G = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0};

static void blocking_job(void *arg)
{
    (void)arg;
    atomic_fetch_add(&G.started, 1);
    pthread_mutex_lock(&G.mu);
    while (!G.open)
        pthread_cond_wait(&G.cv, &G.mu);
    pthread_mutex_unlock(&G.mu);
    atomic_fetch_add(&G.finished, 1);
}

static void quick_job(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void release_all(void)
{
    pthread_mutex_lock(&G.mu);
    G.open = true;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
}

/* Wait (bounded, 5 s) until *v reaches want. */
static bool wait_for(atomic_int *v, int want)
{
    struct timespec ts = {0, 2 * 1000000L};
    for (int i = 0; i < 2500 && atomic_load(v) < want; i++)
        nanosleep(&ts, NULL);
    return atomic_load(v) >= want;
}

static void test_jobs__a_full_lane_never_holds_up_another(void)
{
    struct om_jobs *j = NULL;
    struct om_jobs_lane_stats st;
    atomic_int quick = 0;

    G.open = false;
    atomic_store(&G.started, 0);
    atomic_store(&G.finished, 0);
    CHECK_EQ_INT(om_jobs_start(&j, 3, 2, 8), OM_OK);
    if (j == NULL)
        return;
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(om_jobs_submit_lane(j, 0, blocking_job, NULL), OM_OK);
    CHECK(wait_for(&G.started, 2));
    om_jobs_lane_stats(j, 0, &st);
    CHECK_EQ_INT(st.running, 2);      /* its cap, although 6 threads exist */
    CHECK_EQ_INT(st.waiting, 3);
    CHECK_EQ_INT(st.max, 2);
    CHECK(st.saturated >= 3);
    CHECK(om_jobs_lane_busy(j, 0));
    CHECK(!om_jobs_lane_busy(j, 1));
    /* Lanes 1 and 2 (and om_jobs_submit's last lane) run at once. */
    CHECK_EQ_INT(om_jobs_submit_lane(j, 1, quick_job, &quick), OM_OK);
    CHECK_EQ_INT(om_jobs_submit(j, quick_job, &quick), OM_OK);
    CHECK(wait_for(&quick, 2));
    CHECK_EQ_INT(atomic_load(&G.started), 2);
    release_all();
    CHECK(wait_for(&G.finished, 5));
    om_jobs_stop(j);
}

static void test_jobs__queues_are_bounded_and_lanes_checked(void)
{
    struct om_jobs *j = NULL;

    G.open = false;
    atomic_store(&G.started, 0);
    atomic_store(&G.finished, 0);
    CHECK_EQ_INT(om_jobs_start(&j, 2, 1, 2), OM_OK);
    if (j == NULL)
        return;
    CHECK_EQ_INT(om_jobs_submit_lane(j, 2, blocking_job, NULL), OM_ERR_INVALID);
    CHECK_EQ_INT(om_jobs_submit_lane(j, 0, blocking_job, NULL), OM_OK);
    CHECK(wait_for(&G.started, 1));
    CHECK_EQ_INT(om_jobs_submit_lane(j, 0, blocking_job, NULL), OM_OK);
    CHECK_EQ_INT(om_jobs_submit_lane(j, 0, blocking_job, NULL), OM_OK);
    CHECK_EQ_INT(om_jobs_submit_lane(j, 0, blocking_job, NULL), OM_ERR_TOOMANY); /* 2 queued */
    CHECK_EQ_INT(om_jobs_pending(j), 2);
    release_all();
    om_jobs_stop(j); /* runs what is queued, then joins */
    CHECK_EQ_INT(atomic_load(&G.finished), 3);
}

static void test_jobs__bad_shapes_are_refused(void)
{
    struct om_jobs *j = (struct om_jobs *)1;
    CHECK_EQ_INT(om_jobs_start(&j, 0, 1, 1), OM_ERR_INVALID);
    CHECK(j == NULL);
    CHECK_EQ_INT(om_jobs_start(&j, OM_JOBS_LANES_MAX + 1, 1, 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_jobs_start(&j, 1, 0, 1), OM_ERR_INVALID);
    om_jobs_stop(NULL);
}

int main(void)
{
    RUN(test_jobs__a_full_lane_never_holds_up_another);
    RUN(test_jobs__queues_are_bounded_and_lanes_checked);
    RUN(test_jobs__bad_shapes_are_refused);
    return test_done();
}
