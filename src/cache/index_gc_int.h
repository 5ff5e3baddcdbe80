/* index_gc_int.h — shared by the two sides of GC's index connection
 * (index_gc.h): index_gc.c (SQLite, and the public functions, which hand a
 * Redis-backed struct om_gc_db to index_gc_redis.c) and index_gc_redis.c
 * (the same operations on the Redis key schema of index_redis.h, and the
 * cluster's GC leader lease).  Nobody else includes this file.
 */
#ifndef OM_INDEX_GC_INT_H
#define OM_INDEX_GC_INT_H

#include "cache/index_gc.h"

struct om_gc_redis;   /* index_gc_redis.c */
struct om_redis;      /* redis.h */

/* Append {"repo","tag","digest","deleted":true,"t"} to tags.log (one
 * write(2), a torn last line fenced off); index_gc.c. */
int om_index_gc__log_deleted(int log_fd, const char *log_path, const char *repo,
                             const char *tag, const om_digest *d, int64_t now);

/* Wrap a Redis side into a struct om_gc_db (index_gc.c); rx is owned by
 * the result (closed with it), or closed here on error. */
int om_index_gc__wrap_redis(struct om_gc_db **out, struct om_gc_redis *rx);

/* ---- index_gc_redis.c: the contracts of index_gc.h, on Redis ---- */
int om_gc_redis__open(struct om_gc_redis **out, struct om_redis *r, const char *root,
                      const char *holder);
void om_gc_redis__close(struct om_gc_redis *rx);
int om_gc_redis__load(struct om_gc_redis *rx, struct om_gc_graph *g);
int om_gc_redis__known(struct om_gc_redis *rx, const om_digest *d, bool *known);
int om_gc_redis__resolve(struct om_gc_redis *rx, const char *repo, const char *reference,
                         om_digest *root, bool *is_tag);
int om_gc_redis__evict(struct om_gc_redis *rx, const struct om_gc_evict_req *req,
                       bool *deleted, struct om_gc_evict_out *out);
int om_gc_redis__lead(struct om_gc_redis *rx, bool *leader, char *holder, size_t holder_sz);
void om_gc_redis__unlead(struct om_gc_redis *rx);
bool om_gc_redis__lost(struct om_gc_redis *rx);
bool om_gc_redis__leading(struct om_gc_redis *rx);

#endif
