/* index_gc.h — the index queries and deletions GC needs (index_gc.c).
 *
 * GC uses its OWN SQLite connection to <storage>/index.db (struct
 * om_gc_db), not the server's om_index: the same code then serves the
 * background thread and `ocimirror gc`, which runs in another process beside
 * a server; GC's long reads (the snapshot) never hold the server's index
 * mutex; and WAL mode lets both connections work at once (writers wait for
 * each other through busy_timeout; GC's write transactions are one image
 * each, milliseconds long).
 *
 * A tag GC removes gets a deletion record in <storage>/tags.log,
 *   {"repo":R,"tag":T,"digest":D,"deleted":true,"t":MS}
 * written in the same transaction as the row deletion, so that rebuilding
 * the index from the store (index_rebuild.c) does not bring it back.  The
 * record has no "media_type"/"size", so a build that predates deletion
 * records skips it as a bad line instead of reading it as a tag put.
 *
 * With the index in Redis (cluster.redis), the same functions work on the
 * shared key schema (index_gc_redis.c): om_index_gc_open_index picks the
 * side.  There, one replica of the cluster at a time runs GC: a run first
 * takes the lease om:lock:gc (om_index_gc_lead; SET NX PX, renewed by a
 * thread while held, released by om_index_gc_unlead); a replica that does
 * not get it skips the round.  On SQLite the lead is always granted.
 *
 * Not thread-safe: one om_gc_db per thread (cache/gc_service.c serialises its runs).
 */
#ifndef OM_INDEX_GC_H
#define OM_INDEX_GC_H

#include "cache/gc_plan.h"
#include "core/om.h"
#include "core/ref.h"

struct om_gc_db;

/* Open a connection to <root>/index.db, which must exist with the schema
 * this build knows (the server or om_index_open creates it); also opens
 * <root>/tags.log for appending.  *out owned by the caller. */
int om_index_gc_open(struct om_gc_db **out, const char *root);
void om_index_gc_close(struct om_gc_db *db);

struct om_index;   /* index.h */
/* The connection for the index ix a server or command opened: the Redis
 * side when ix is a Redis-backed index (it borrows ix's connection: ix must
 * outlive *out; holder names this replica in the GC lease), else
 * om_index_gc_open(root). */
int om_index_gc_open_index(struct om_gc_db **out, const char *root, struct om_index *ix,
                           const char *holder);

/* Become the cluster's GC leader for one run: *leader true when this
 * connection holds the lease (always on SQLite).  When not, holder_out
 * (may be NULL) gets who holds it ("" unknown).  OM_ERR_UNAVAILABLE when
 * Redis is down (no run).  Pair every granted lead with om_index_gc_unlead. */
int om_index_gc_lead(struct om_gc_db *db, bool *leader, char *holder_out, size_t holder_sz);
void om_index_gc_unlead(struct om_gc_db *db);
/* The lease was lost while running (not renewed in time): stop deleting. */
bool om_index_gc_lost(struct om_gc_db *db);
/* Holds the lease now (for /metrics; any thread).  false on SQLite. */
bool om_index_gc_leading(struct om_gc_db *db);

/* Fill g (which must be empty) from one consistent read of the index:
 * nodes (sorted; `recent` = max(created_at, last_access); size from the
 * index and present = false — the caller sets both from the store), edges
 * and images (last_used = max over its tags of max(last_pulled, fetched_at),
 * the root's and its direct child manifests' max(created_at, last_access)). */
int om_index_gc_load(struct om_gc_db *db, struct om_gc_graph *g);

/* Is d a manifest or blob the index knows? */
int om_index_gc_known(struct om_gc_db *db, const om_digest *d, bool *known);

/* The image a client-style reference names in repository `repo`: a tag
 * (its digest) or a digest the repository holds (tagged with it, or pulled
 * by it).  OM_ERR_NOTFOUND when neither; OM_ERR_INVALID for a bad
 * reference.  *is_tag tells which it was. */
int om_index_gc_resolve(struct om_gc_db *db, const char *repo, const char *reference,
                        om_digest *root, bool *is_tag);

struct om_gc_evict_req {
    const om_digest *root;      /* the image's root; NULL = no tag step
                                   (removing orphans) */
    int64_t expect_last_used;   /* do nothing if the root was used after
                                   this (INT64_MAX: do not check) */
    const char *repo;           /* delete only this repository's tags (NULL: all) */
    const char *tag;            /* ... only this tag (NULL: all) */
    const om_digest *nodes;     /* rows to delete if still unreferenced,
                                   parent first */
    size_t n_nodes;
    int64_t cutoff;             /* keep a row touched at or after this
                                   (INT64_MAX: ignore touches) */
    int64_t now;                /* time of the tags.log records */
};

struct om_gc_evict_out {
    bool touched;               /* used since the snapshot: nothing done */
    size_t tags_deleted;
    size_t repos_deleted;
    size_t n_deleted;           /* rows deleted: deleted[i] for nodes[i] */
};

/* One transaction: check the root was not used since the snapshot, delete
 * its tags (appending a tags.log record each), delete each node's rows if
 * no tag and no remaining manifest refers to it and it was not touched
 * since the cutoff, drop repositories that lost their last tag.  deleted
 * (n_nodes entries, may be NULL when n_nodes is 0) says which nodes' rows
 * went: their files may then be removed from the store.  On error nothing
 * changed. */
int om_index_gc_evict(struct om_gc_db *db, const struct om_gc_evict_req *req, bool *deleted,
                      struct om_gc_evict_out *out);

#endif
