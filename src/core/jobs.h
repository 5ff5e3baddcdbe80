/* jobs.h — a fixed pool of worker threads for work that may block on an
 * upstream (route search, manifest fetch, tag revalidation, tags/list,
 * referrers, waiting for a blob download's first headers).  The HTTP
 * threads never block: they suspend the connection and submit a job; the
 * job resumes the connection when done.
 *
 * The queue is bounded; om_jobs_submit() fails with OM_ERR_TOOMANY when it
 * is full so the caller can answer 503 instead of growing without limit.
 */
#ifndef OM_JOBS_H
#define OM_JOBS_H

#include "core/om.h"

struct om_jobs;
typedef void (*om_job_fn)(void *arg);

int om_jobs_start(struct om_jobs **out, unsigned threads, size_t max_queue);
/* fn(arg) runs on a worker thread; arg stays owned by the caller's protocol. */
int om_jobs_submit(struct om_jobs *j, om_job_fn fn, void *arg);
/* Stop accepting, run what is queued, join the threads, free. */
void om_jobs_stop(struct om_jobs *j);
size_t om_jobs_pending(struct om_jobs *j);

#endif
