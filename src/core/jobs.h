/* jobs.h — a pool of worker threads for work that may block on an upstream
 * (route search, manifest fetch, tag revalidation, tags/list, referrers,
 * waiting for a blob download's first headers).  The HTTP threads never
 * block: they suspend the connection and submit a job; the job resumes the
 * connection when done.
 *
 * Lanes: every job runs in a lane, and a lane runs at most `lane_max` jobs
 * at once; the others wait in the lane's own bounded queue.  The server
 * gives each upstream a lane (plus one for names still being searched and
 * one for the rest), so an upstream that hangs fills its own lane and no
 * other: the pool has lane_max threads for every lane, so a lane below its
 * cap always finds a free thread.  Within a lane jobs run in order; across
 * lanes, free threads take the lanes in turn.
 *
 * A lane's queue is bounded: om_jobs_submit() fails with OM_ERR_TOOMANY
 * when it is full, so the caller can answer 503 instead of growing without
 * limit.  om_jobs_lane_busy() tells a caller that would rather not wait
 * (a stale tag can be served at once instead of queueing its revalidation).
 */
#ifndef OM_JOBS_H
#define OM_JOBS_H

#include "core/om.h"

struct om_jobs;
typedef void (*om_job_fn)(void *arg);

#define OM_JOBS_LANES_MAX 40

/* n_lanes lanes (1..OM_JOBS_LANES_MAX), each running at most lane_max jobs
 * with a queue of lane_queue; n_lanes * lane_max threads.  *out owned by
 * the caller (om_jobs_stop). */
int om_jobs_start(struct om_jobs **out, unsigned n_lanes, unsigned lane_max, size_t lane_queue);
/* fn(arg) runs on a worker thread in `lane` (0..n_lanes-1); arg stays owned
 * by the caller's protocol.  OM_ERR_TOOMANY when the lane's queue is full or
 * the pool stops; OM_ERR_INVALID for a lane out of range. */
int om_jobs_submit_lane(struct om_jobs *j, unsigned lane, om_job_fn fn, void *arg);
/* The same in the last lane (work that belongs to no upstream). */
int om_jobs_submit(struct om_jobs *j, om_job_fn fn, void *arg);
/* Stop accepting, run what is queued, join the threads, free. */
void om_jobs_stop(struct om_jobs *j);
/* Jobs queued (not running) in every lane. */
size_t om_jobs_pending(struct om_jobs *j);

struct om_jobs_lane_stats {
    unsigned running, max;   /* running now, and the lane's cap */
    size_t waiting;          /* queued behind them */
    uint64_t saturated;      /* jobs that had to wait for a thread of the lane */
};
/* One lane's figures (zeroes for a lane out of range). */
void om_jobs_lane_stats(struct om_jobs *j, unsigned lane, struct om_jobs_lane_stats *out);
/* Would a job submitted to this lane now have to wait?  (Every thread of
 * the lane busy.) */
bool om_jobs_lane_busy(struct om_jobs *j, unsigned lane);

#endif
