/* index_gc_redis.h — what the Redis side of GC's index connection shares
 * among its files (index_gc.h says what it does, index_gc_int.h how
 * index_gc.c reaches it):
 *   index_gc_redis.c        open/close, the snapshot, the lookups
 *   index_gc_redis_evict.c  an eviction: one Lua script that re-checks
 *   index_gc_lease.c        the cluster's GC leader lease om:lock:gc
 * Nobody else includes this file.
 */
#ifndef OM_INDEX_GC_REDIS_H
#define OM_INDEX_GC_REDIS_H

#include "cache/index_gc_int.h"
#include "cache/index_redis.h"

#include <pthread.h>
#include <stdatomic.h>

#define P OM_IXR_PREFIX
#define GC_LEASE_KEY P "lock:gc"
#define GC_LEASE_MS 30000
#define GC_RENEW_MS 5000
#define GC_HOLDER_MAX 320
#define GC_KEY 160                   /* m:/b:/mc:/tag keys of one digest or name pair */
#define GC_TAG_KEY OM_IXR_KEY_MAX
#define GC_MAX_TAGS 200000           /* bounds the tags one snapshot keeps */
#define GC_MAX_CHILDREN 100000       /* bounds one manifest's children */
#define GC_PATH_MAX 4096

struct gc_tag {
    om_digest d;
    int64_t used;                    /* max(lp, fa) */
    char repo[OM_NAME_MAX + 1];
    char tag[OM_TAG_MAX + 1];
};

struct om_gc_redis {
    struct om_redis *r;              /* borrowed (the index's connection) */
    char holder[GC_HOLDER_MAX];      /* this connection's lease value */
    int log_fd;                      /* <root>/tags.log, O_APPEND; owned */
    char log_path[GC_PATH_MAX];
    struct gc_tag *tags;             /* owned; the last snapshot's, sorted by digest */
    size_t n_tags;
    int64_t loaded_ms;               /* wall clock of the last snapshot */
    /* the lease */
    pthread_mutex_t mu;              /* guards stop */
    pthread_cond_t cond;             /* CLOCK_MONOTONIC */
    bool stop, renewing;
    pthread_t renewer;
    atomic_bool leading, lost;
};

/* KEYS lease; ARGV holder ms.  1 = extended, 0 = not ours any more. */

int64_t om_gc_redis__wall_ms(void);
/* The scripts' SHA-1s, once (om_gc_redis__open calls both). */
void om_gc_redis__evict_scripts_init(void);
void om_gc_redis__lease_scripts_init(void);

#endif
