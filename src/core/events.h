/* events.h — a bounded in-memory ring of recent notable events (fetches,
 * evictions, errors, prefetch and GC runs) for the admin API and the UI.
 * Thread-safe; adding is O(1) under a mutex; the oldest event is dropped
 * when the ring is full.  Nothing here is persisted. */
#ifndef OM_EVENTS_H
#define OM_EVENTS_H

#include "core/om.h"

#define OM_EVENTS_MAX 1000

typedef enum { OM_EV_FETCH, OM_EV_EVICT, OM_EV_ERROR, OM_EV_PREFETCH, OM_EV_GC } om_event_kind;

struct om_event {
    int64_t t_ms;
    om_event_kind kind;
    char repository[256];
    char digest[72];
    char message[256];
    uint64_t bytes;
};

struct om_events;

int om_events_new(struct om_events **out);
void om_events_free(struct om_events *ev);
/* repository, digest, message may be NULL. */
void om_events_add(struct om_events *ev, om_event_kind kind, const char *repository,
                   const char *digest, uint64_t bytes, const char *message);
/* Copy up to max newest-first events into out; returns the count. */
size_t om_events_recent(struct om_events *ev, struct om_event *out, size_t max);
const char *om_event_kind_str(om_event_kind kind);

#endif
