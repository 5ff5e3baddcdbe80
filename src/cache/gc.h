/* gc.h — eviction to the storage quota (least recently pulled image
 * first), orphan and stale-ingest cleanup; in the background and on demand.
 * Implemented in gc.c (the engine: one run, one eviction), gc_service.c
 * (the background service a server runs: its thread, run-now, evict,
 * nudge, status), gc_plan.c (which images and objects to remove) and
 * index_gc.c (the index side); the command `ocimirror gc` is cli/gc_cli.c.
 * docs/gc.md is the user's description.
 *
 * The service knows nothing of the server: what it works on is handed to
 * om_gc_start in a struct om_gc_host, and every entry point takes the
 * struct om_gc it returned. */
#ifndef OM_GC_H
#define OM_GC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/config.h"

struct om_events;    /* events.h */
struct om_gc_db;     /* index_gc.h */
struct om_mcache;    /* mcache.h */
struct om_pullstats; /* pullstats.h */
struct om_store;     /* store.h */

/* Objects not touched for this long may be removed (orphans, strays, the
 * freed content of an evicted image), and an image used this recently is
 * never evicted: min(10 min, gc_interval). */
#define OM_GC_GRACE_MAX_MS (10 * 60 * 1000)
/* In a cluster the grace period is at least this: the pulls each replica
 * notes reach the shared index in batches (pullstats.h, every 2 s), so a
 * blob another replica is serving may look idle for that long. */
#define OM_GC_CLUSTER_GRACE_MIN_MS 5000
/* Ingest files not written to for this long belong to no live download. */
#define OM_GC_INGEST_STALE_MS (60 * 60 * 1000)

/* What one run did (or, with dry_run, would do). */
struct om_gc_result {
    bool dry_run;
    int64_t started_ms;           /* Unix ms */
    int64_t duration_ms;
    uint64_t max_size;            /* the quota (0 = unlimited) */
    uint64_t high_bytes, low_bytes; /* the water marks in bytes (0 without quota) */
    uint64_t used_before;         /* bytes of committed content at the start */
    uint64_t used_after;          /* ... at the end (projected for a dry run) */
    uint64_t evicted_images;      /* images whose tags/manifests were removed */
    uint64_t removed_blobs;       /* store objects removed (manifests included) */
    uint64_t freed_bytes;         /* bytes of those objects */
    uint64_t evicted_bytes;       /* ... of which freed by evictions */
    uint64_t orphan_blobs, orphan_bytes; /* ... of which no image held */
    uint64_t removed_ingest, ingest_bytes; /* stale ingest files removed */
    uint64_t aborted_uploads;     /* [added for store_s3.c] stale multipart uploads
                                     the store aborted (om_store_clean_stale) */
    uint64_t kept_recent;         /* images spared: used within the grace period */
    bool not_leader;              /* cluster: another replica holds the GC lease
                                     (or Redis is down); this run did nothing */
    char leader[128];             /* ... who holds it ("" unknown) */
    uint64_t skipped_touched;     /* images a client used while GC ran: spared */
};

/* Cumulative figures of a running server (for the admin API / metrics). */
struct om_gc_totals {
    uint64_t runs, evicted_images, removed_blobs, freed_bytes, removed_ingest, errors;
    int64_t last_run_ms;          /* 0 = never */
};

/* ---- the service (gc_service.c) ---------------------------------------- */

struct om_gc;         /* opaque; a server keeps it in srv->gc */

/* What the service works on.  Every pointer is borrowed and must outlive
 * om_gc_stop; om_gc_start copies the struct itself. */
struct om_gc_host {
    const struct om_config *cfg;  /* storage quota, water marks, gc_interval */
    struct om_store *store;
    struct om_events *events;     /* evictions and runs are recorded here; NULL: not */
    struct om_pullstats *pulls;   /* flushed before each run (the LRU keys); NULL: none */
    struct om_mcache *mcache;     /* cleared after a run that removed something; NULL: none */
    const atomic_bool *cancel;    /* a run in progress ends early once set; NULL = never */
    /* Called after a run or a request that evicted images (n images, bytes
     * freed by them), from the thread that ran it; NULL: not called. */
    void (*on_evictions)(void *ud, uint64_t n, uint64_t bytes);
    void *ud;                     /* for on_evictions */
    /* The server's index: when it is in Redis (cluster.redis), GC works on
     * the shared index with the cluster's GC leader lease (index_gc.h);
     * NULL or another backend: <storage>/index.db. */
    struct om_index *index;
    const char *replica_id;       /* names this replica in the lease; NULL: "" */
};

/* Start/stop the background GC thread.  It runs every gc_interval: orphans
 * and stale ingest files always, eviction when storage.max_size is set.
 * om_gc_start: *out (NULL on error) is owned by the caller until it hands
 * it to om_gc_stop.
 * om_gc_stop ends a run in progress early, waits for callers already inside
 * om_gc_run_now/om_gc_evict_image/om_gc_nudge/om_gc_status, and frees gc;
 * it is safe with NULL (om_gc_start failed or never ran).  Call it once
 * nothing can START such a call any more (after the HTTP daemon, the job
 * pool and the download threads stopped), then drop the pointer, and
 * before what the host points at (events, statistics, on_evictions' ud)
 * is freed. */
int om_gc_start(struct om_gc **out, const struct om_gc_host *host);
void om_gc_stop(struct om_gc *gc);

/* Run GC now, in the calling thread (waits for a run in progress first);
 * the same rules as the background run.  For POST /api/v1/gc.  out may be
 * NULL.  OM_ERR_INVALID if GC is not started (gc NULL) or stopping. */
int om_gc_run_now(struct om_gc *gc, struct om_gc_result *out);

/* Remove one image: `name` is the canonical repository name
 * ("docker.io/library/alpine"), `reference` a tag or a digest.  A tag: that
 * tag goes; a digest: every tag of `name` naming it.  Its manifests and
 * blobs go too unless another cached image (or another tag) still uses
 * them; the grace period does not protect them (the operator asked).
 * *freed = bytes removed from the store.  OM_ERR_NOTFOUND if the
 * repository has no such tag/digest, OM_ERR_INVALID for a bad reference
 * or when GC is not started.  For POST /api/v1/evict. */
int om_gc_evict_image(struct om_gc *gc, const char *name, const char *reference,
                      uint64_t *freed);

/* Cheap hook for the write path (after a blob or manifest commit): wakes
 * the GC thread when usage is above the high water mark.  A few atomic
 * loads when below; safe from any thread, and a no-op without a quota or
 * with gc NULL (before om_gc_start). */
void om_gc_nudge(struct om_gc *gc);

/* The last run's result and the totals since start (either may be NULL).
 * OM_ERR_NOTFOUND before the first run (totals are still filled), and with
 * gc NULL (both zeroed). */
int om_gc_status(struct om_gc *gc, struct om_gc_result *last, struct om_gc_totals *totals);

/* This replica holds the cluster's GC lease right now (a run is going on
 * here); false when alone, between runs, or with gc NULL.  Any thread. */
bool om_gc_is_leader(struct om_gc *gc);

/* ---- the engine (gc.c): under the service, the command and the tests ---- */

/* The grace period for this config (see OM_GC_GRACE_MAX_MS); with
 * storage.redirect on, at least storage.redirect_ttl, so that a presigned
 * URL handed out still finds its object; in a cluster (cluster.redis) at
 * least OM_GC_CLUSTER_GRACE_MIN_MS. */
uint64_t om_gc_grace_ms(const struct om_config *cfg);

/* The quota's water marks in bytes: storage_high_water and
 * storage_low_water percent of storage_max_size (both 0 without a quota). */
void om_gc_water_marks(const struct om_config *cfg, uint64_t *high, uint64_t *low);

/* n bytes for people ("812 B", "1.5 MiB") into buf; returns buf. */
const char *om_gc_format_bytes(uint64_t n, char *buf, size_t len);

/* One run's inputs; every pointer borrowed for the call. */
struct om_gc_env {
    const struct om_config *cfg;  /* storage_max_size, water marks, gc_interval */
    struct om_store *store;
    struct om_gc_db *db;
    struct om_events *events;     /* evictions and runs are recorded here; NULL: not */
    FILE *report;                 /* one line per action (the command); NULL: none */
    bool dry_run;
    int64_t now;                  /* Unix ms; 0 = read the clock */
    const atomic_bool *abort;     /* checked between steps; NULL = never */
    const atomic_bool *abort2;    /* a second such flag (the host's cancel) */
    uint64_t ingest_stale_ms;     /* ingest files / multipart uploads idle this long
                                     are stale; 0 = OM_GC_INGEST_STALE_MS */
};

/* One GC run: take the GC lease (a cluster; res->not_leader and OM_OK
 * when another replica holds it), snapshot the index, walk the store, plan
 * (gc_plan.h), then evict, remove orphans and strays, clean stale ingest
 * files and multipart uploads.  out is
 * filled also on error (what was done until then). */
int om_gc_run_env(const struct om_gc_env *e, struct om_gc_result *out);
/* One image (see om_gc_evict_image); OM_ERR_TOOMANY when another replica
 * of the cluster is running GC (holds the lease), OM_ERR_UNAVAILABLE when
 * the cluster's Redis is down. */
int om_gc_evict_env(const struct om_gc_env *e, const char *name, const char *reference,
                    uint64_t *freed);

#endif
