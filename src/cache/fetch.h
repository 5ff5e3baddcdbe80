/* fetch.h — the in-flight table: one upstream download per blob digest
 * (single-flight), teed into an ingest file, hashed as bytes arrive, read by
 * any number of waiting clients while it grows, resumed with Range after a
 * broken connection, committed to the store only when the digest matches.
 *
 * Lifecycle of one download (struct om_fetch):
 *   om_fetch_get() finds the digest's download or starts one on its own
 *   thread (at most limits.max_downloads run at once; others queue).  The
 *   caller holds a reference until om_fetch_release().
 *   om_fetch_wait_ready() blocks (a job thread, never an HTTP thread) until
 *   the upstream's answer is known: the total size, or a failure status.
 *   om_fetch_poll() is the non-blocking read side for the HTTP server's
 *   content reader: it says how many bytes may be read from om_fetch_fd() at
 *   a position, or registers a waiter (see below), or reports end/failure.
 *
 * Never a complete-looking wrong response: the last byte of a blob is only
 * released after the whole blob hashed to its digest.  On a mismatch, a
 * broken upstream that cannot be resumed, or a full disk, the download
 * fails: every reader gets OM_FETCH_FAILED (the server aborts the client
 * connection) and nothing is committed.
 *
 * Waiters: when no byte is readable, om_fetch_poll() calls `suspend(ud)` and
 * records (wake, ud) — both under the download's mutex — and the download
 * thread calls `wake(ud)` once, under the same mutex, after new bytes, the
 * end, or a failure.  That shared mutex is what prevents lost wake-ups
 * (HTTP-SERVER-NOTES.md trap 3).  The fetch module knows nothing of HTTP.
 */
#ifndef OM_FETCH_H
#define OM_FETCH_H

#include <sys/types.h>
#include "cache/index.h"
#include "cache/store.h"
#include "core/config.h"
#include "core/ref.h"
#include "upstream/upstream.h"

struct om_fetch_table;
struct om_fetch;

struct om_fetch_src {
    struct om_upstream *upstream;
    const char *remote;      /* repository name on that upstream */
    const char *canonical;   /* "<upstream>/<remote>", recorded in the index */
};

#define OM_FETCH_SIZE_UNKNOWN UINT64_MAX

/* Returned by om_fetch_poll. */
#define OM_FETCH_WAIT 0
#define OM_FETCH_EOF (-1)
#define OM_FETCH_FAILED (-2)

typedef void (*om_fetch_cb)(void *ud);

struct om_fetch_stats {
    uint64_t started, coalesced, completed, failed, resumed, digest_mismatch;
    uint64_t bytes_from_upstream;
    uint64_t bytes_from_peer;   /* cluster: bytes streamed from another replica */
    uint64_t abandoned;      /* queued for a slot until every client had left: never started */
    uint64_t backgrounded;   /* clients left mid-transfer: finished outside the slots */
    unsigned active, background;  /* now: downloads holding a slot; finishing unread */
};

int om_fetch_table_new(struct om_fetch_table **out, const struct om_config *cfg,
                       struct om_store *st, struct om_index *ix);
/* Cancel every download, wake every waiter (they see OM_FETCH_FAILED), join
 * download threads.  Callers must release their references before freeing. */
void om_fetch_table_cancel_all(struct om_fetch_table *t);
void om_fetch_table_free(struct om_fetch_table *t);

/* Find or start the download of d.  *out is a new reference.  *joined is set
 * when an existing download was joined (coalesced). */
int om_fetch_get(struct om_fetch_table *t, const om_digest *d, const struct om_fetch_src *src,
                 struct om_fetch **out, bool *joined);
void om_fetch_release(struct om_fetch *f);

/* Block until the upstream answered.  OM_OK: *total is the size (or
 * OM_FETCH_SIZE_UNKNOWN).  Otherwise the download failed: *status is the
 * upstream's HTTP status when it answered with one (404, 401...), else 0,
 * and the return value says why (OM_ERR_UPSTREAM, OM_ERR_TIMEOUT, ...). */
/* A new reference to the download of d in progress here, without starting
 * one (the peer endpoint): OM_OK, or OM_ERR_NOTFOUND. */
int om_fetch_find(struct om_fetch_table *t, const om_digest *d, struct om_fetch **out);
/* Coordinate downloads with the other replicas through c (cluster.h; not
 * owned, outlives the table).  Set before the first download. */
struct om_cluster;
/* After om_fetch_wait_ready: whether the bytes come (or came) from another
 * replica's download rather than this replica's own upstream request. */
bool om_fetch_via_peer(struct om_fetch *f);
void om_fetch_set_cluster(struct om_fetch_table *t, struct om_cluster *c);

int om_fetch_wait_ready(struct om_fetch *f, uint64_t timeout_ms, uint64_t *total, long *status);

/* >0: that many bytes (≤ max) can be read at pos from om_fetch_fd();
 * OM_FETCH_WAIT: nothing yet, suspend(ud) was called and wake(ud) will be;
 * OM_FETCH_EOF: pos is at the verified end; OM_FETCH_FAILED. */
ssize_t om_fetch_poll(struct om_fetch *f, uint64_t pos, size_t max,
                      om_fetch_cb suspend, om_fetch_cb wake, void *ud);
/* Forget a waiter registration (reader destroyed). */
void om_fetch_unwait(struct om_fetch *f, void *ud);
/* The ingest file, readable with pread(); valid while the reference is held. */
int om_fetch_fd(const struct om_fetch *f);
uint64_t om_fetch_total(struct om_fetch *f);

void om_fetch_stats_get(struct om_fetch_table *t, struct om_fetch_stats *out);
/* One upstream's download slots (i: cfg->upstreams[] index): held now,
 * downloads waiting for one, and the most it may hold. */
void om_fetch_upstream_slots(struct om_fetch_table *t, size_t i, unsigned *active,
                             unsigned *waiting, unsigned *max);
/* Record completed/failed downloads in this ring (may stay unset). */
struct om_events;
void om_fetch_set_events(struct om_fetch_table *t, struct om_events *ev);
/* Called (download thread) after each blob is committed to the store. */
void om_fetch_set_commit_hook(struct om_fetch_table *t, om_fetch_cb fn, void *ud);

/* For the admin view later: visit in-flight downloads. */
typedef void (*om_fetch_visit_fn)(void *ud, const om_digest *d, const char *canonical,
                                  uint64_t written, uint64_t total, unsigned waiters);
void om_fetch_visit(struct om_fetch_table *t, om_fetch_visit_fn fn, void *ud);

#endif
