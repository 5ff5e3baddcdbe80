/* events.c — see events.h.  A fixed array used as a ring. */
#include "core/events.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct om_events {
    pthread_mutex_t mu;
    struct om_event ring[OM_EVENTS_MAX];
    size_t next;   /* where the next event goes */
    size_t count;  /* events held, ≤ OM_EVENTS_MAX */
};

int om_events_new(struct om_events **out)
{
    struct om_events *ev = calloc(1, sizeof(*ev));
    if (ev == NULL)
        return OM_ERR_NOMEM;
    pthread_mutex_init(&ev->mu, NULL);
    *out = ev;
    return OM_OK;
}

void om_events_free(struct om_events *ev)
{
    if (ev == NULL)
        return;
    pthread_mutex_destroy(&ev->mu);
    free(ev);
}

void om_events_add(struct om_events *ev, om_event_kind kind, const char *repository,
                   const char *digest, uint64_t bytes, const char *message)
{
    if (ev == NULL)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&ev->mu);
    struct om_event *e = &ev->ring[ev->next];
    e->t_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    e->kind = kind;
    snprintf(e->repository, sizeof(e->repository), "%s", repository ? repository : "");
    snprintf(e->digest, sizeof(e->digest), "%s", digest ? digest : "");
    snprintf(e->message, sizeof(e->message), "%s", message ? message : "");
    e->bytes = bytes;
    ev->next = (ev->next + 1) % OM_EVENTS_MAX;
    if (ev->count < OM_EVENTS_MAX)
        ev->count++;
    pthread_mutex_unlock(&ev->mu);
}

size_t om_events_recent(struct om_events *ev, struct om_event *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&ev->mu);
    for (; n < max && n < ev->count; n++)
        out[n] = ev->ring[(ev->next + OM_EVENTS_MAX - 1 - n) % OM_EVENTS_MAX];
    pthread_mutex_unlock(&ev->mu);
    return n;
}

const char *om_event_kind_str(om_event_kind kind)
{
    switch (kind) {
    case OM_EV_FETCH: return "fetch";
    case OM_EV_EVICT: return "evict";
    case OM_EV_ERROR: return "error";
    case OM_EV_PREFETCH: return "prefetch";
    case OM_EV_GC: return "gc";
    }
    return "unknown";
}
