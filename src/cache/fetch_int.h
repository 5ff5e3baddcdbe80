/* fetch_int.h — what the files of the in-flight table share: fetch.c (the
 * table, the download thread, the read side) and fetch_slots.c (who may
 * download now).  Not for other modules: they use fetch.h. */
#ifndef OM_FETCH_INT_H
#define OM_FETCH_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "cache/cluster.h"
#include "cache/fetch.h"
#include "core/hash.h"

#define BUCKETS 256

enum fetch_state { F_STARTING, F_STREAMING, F_DONE, F_FAILED };

struct waiter {
    om_fetch_cb wake;
    void *ud;
};

struct om_fetch {
    struct om_fetch_table *t;
    struct om_fetch *next;          /* bucket chain, guarded by t->mu */
    om_digest digest;
    char remote[OM_NAME_MAX + 1];
    char canonical[OM_NAME_MAX + 1];
    struct om_upstream *up;
    unsigned up_index;              /* cfg->upstreams[] index of up: its slot count */
    enum { SLOT_NONE, SLOT_REGULAR, SLOT_BACKGROUND } slot; /* download thread only,
                                       under t->mu */

    pthread_mutex_t mu;             /* guards everything below */
    pthread_cond_t cond;            /* ready/finished, for om_fetch_wait_ready */
    int refs;
    enum fetch_state state;
    bool ready;                     /* upstream answered (size known) or failed */
    uint64_t total;                 /* OM_FETCH_SIZE_UNKNOWN until known */
    uint64_t written;               /* bytes in the ingest file */
    long status;                    /* upstream HTTP status of a failure */
    int err;                        /* why it failed */
    int read_fd;                    /* dup of the ingest fd; owned, closed at free */
    struct waiter *waiters;         /* owned array */
    size_t n_waiters, cap_waiters;
    uint64_t woken_bytes;           /* `written` when waiters were last woken */
    int64_t woken_us;               /* and when (monotonic) */

    /* Only the download thread touches these. */
    struct om_ingest *ing;
    om_hash *hash;
    uint64_t skip;                  /* bytes to drop from a 200 answer to a resume */
    bool headers_seen;
    bool too_big;                   /* over limits.max_blob_size */
    long last_status;
    /* In a cluster (fetch_cluster.c), the download thread's only. */
    bool leased;                    /* we hold `lease` in Redis */
    bool from_peer;                 /* bytes come from the owner's peer stream now */
    bool peer_copy;                 /* some bytes came from a peer: the owner commits */
    struct om_cluster_lease lease;
    struct om_cluster_hold *hold;   /* the renewer renews `lease`; owned */
};

struct om_fetch_table {
    const struct om_config *cfg;
    struct om_store *st;
    struct om_index *ix;
    pthread_mutex_t mu;
    pthread_cond_t idle;            /* signalled when running reaches 0 */
    pthread_cond_t slot;            /* a download slot became free */
    struct om_fetch *buckets[BUCKETS];
    unsigned running;               /* download threads alive */
    unsigned active;                /* holding a download slot */
    unsigned active_up[OM_MAX_UPSTREAMS];   /* of those, per upstream */
    unsigned waiting_up[OM_MAX_UPSTREAMS];  /* threads waiting for a slot */
    unsigned background;            /* downloads nobody reads, moved out of the
                                       slots (at most max_downloads) */
    atomic_bool cancel;
    struct om_fetch_stats stats;    /* guarded by mu */
    struct om_events *events;       /* not owned; may be NULL */
    om_fetch_cb on_commit;          /* may be NULL */
    void *on_commit_ud;
    struct om_cluster *cluster;     /* not owned; NULL = alone */
};

/* The digest's bucket in t->buckets. */
unsigned om_fetch__bucket_of(const om_digest *d);
/* Take f out of the table (no-op when it is not in).  Caller holds t->mu. */
void om_fetch__unlink_locked(struct om_fetch_table *t, struct om_fetch *f);
/* Wait for a download slot.  false: every client left while it waited, or
 * the table is cancelled — the download never starts (and is unlinked). */
bool om_fetch__acquire_slot(struct om_fetch_table *t, struct om_fetch *f);
void om_fetch__release_slot(struct om_fetch_table *t, struct om_fetch *f);
/* Called by the download thread at least once a second: a download nobody
 * reads gives its slot up (and finishes in the background). */
void om_fetch__yield_if_unwanted(struct om_fetch *f);

/* fetch.c's transfer sinks and the plain upstream transfer, which
 * fetch_cluster.c reuses for the peer stream and the owner's download. */
int om_fetch__on_headers(void *ud, const struct om_up_resp *r);
int om_fetch__on_body(void *ud, const void *buf, size_t len);
void om_fetch__on_tick(void *ud);
int om_fetch__transfer_upstream(struct om_fetch *f);

/* ---- fetch_cluster.c ---- */
/* The transfer of a download in a cluster: the lease decides the source
 * (upstream as the owner, or the owner's peer stream), a broken peer
 * stream waits for or takes over the lease and resumes from upstream.
 * OM_OK when every byte is in the ingest file. */
int om_fetch__transfer_cluster(struct om_fetch *f);
/* From om_fetch__on_tick: notice that the renewer found our lease lost
 * (renewal itself is the cluster's renewer thread, cluster.h). */
void om_fetch__lease_tick(struct om_fetch *f);
/* Just before the commit: a shared store asked whether the object is
 * there already (another replica committed it): the commit is a no-op. */
void om_fetch__before_commit(struct om_fetch *f);
/* Release our lease, if we hold one (after the commit, or a failure). */
void om_fetch__lease_release(struct om_fetch *f);

#endif
