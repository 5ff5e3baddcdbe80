/* pullstats.h — pull statistics (last pulled, pull count per tag, manifest
 * and blob) gathered in memory and written to the index in one transaction
 * every couple of seconds, so that a cache hit costs no database write.
 *
 * om_pullstats_note() is called on every served manifest or blob (any
 * thread; a mutex and a hash probe).  A flusher thread writes the batch;
 * when the table fills up between flushes, the caller that finds it full
 * flushes synchronously (rare: the table holds thousands of distinct
 * items).  Content that turns out to be committed but not indexed (a crash
 * between the two) is adopted into the index by the flush. */
#ifndef OM_PULLSTATS_H
#define OM_PULLSTATS_H

#include "cache/index.h"
#include "cache/store.h"

struct om_pullstats;

int om_pullstats_start(struct om_pullstats **out, struct om_index *ix, struct om_store *st,
                       uint64_t interval_ms);
/* Flush what is pending, stop the thread, free. */
void om_pullstats_stop(struct om_pullstats *ps);
/* tag may be NULL (pulled by digest); repo may be "" when unknown. */
void om_pullstats_note(struct om_pullstats *ps, const char *repo, const char *tag,
                       const om_digest *d, int64_t now_ms);
/* Write everything pending now (tests, shutdown). */
void om_pullstats_flush(struct om_pullstats *ps);

#endif
