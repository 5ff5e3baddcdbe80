/* events.h — a bounded in-memory ring of recent notable events (fetches,
 * evictions, errors, prefetch and GC runs) for the admin API and the UI.
 * Thread-safe; adding is O(1) under a mutex; the oldest event is dropped
 * when the ring is full.  Nothing here is persisted.
 *
 * An event says what happened as data, not as prose: a stable `code`
 * ("blob_fetched", "image_evicted", ...: the list is docs/admin-api.md)
 * with named values (the tag, why, how many objects...), besides the
 * repository, digest and byte count every event may have.  The English
 * `message` is kept for API users and logs; the web UI ignores it and
 * renders the code and values through its translation tables (en, zh), so
 * a Chinese reader never sees English text from the server.  Adding a code
 * therefore means: docs/admin-api.md, and a translation in ui/i18n.js (the
 * browser test walks every page in Chinese and fails on English text).
 */
#ifndef OM_EVENTS_H
#define OM_EVENTS_H

#include <stdbool.h>

#include "core/om.h"

#define OM_EVENTS_MAX 1000
#define OM_EVENT_CODE_MAX 31
#define OM_EVENT_VALUES_MAX 400   /* packed "key\0value\0" pairs */
#define OM_EVENT_VALUE_MAX 200    /* one value, bytes (longer ones are cut) */

typedef enum { OM_EV_FETCH, OM_EV_EVICT, OM_EV_ERROR, OM_EV_PREFETCH, OM_EV_GC } om_event_kind;

struct om_event {
    int64_t t_ms;
    om_event_kind kind;
    char code[OM_EVENT_CODE_MAX + 1];   /* "" for events added by om_events_add */
    char repository[256];
    char digest[72];
    char message[256];                  /* English, for API users and logs */
    uint64_t bytes;
    char values[OM_EVENT_VALUES_MAX];   /* read with om_event_values */
    size_t values_len;
};

struct om_events;

/* A new empty ring in *out (owned by the caller: om_events_free). */
int om_events_new(struct om_events **out);
void om_events_free(struct om_events *ev);

/* Add an event.  code: a stable [a-z_] code; repository, digest, message
 * may be NULL (all are copied, cut to their fields).  Then NULL-terminated
 * pairs of strings (key, value): a key that starts with '#' holds a
 * decimal integer and is a JSON number in the API (the '#' is not part of
 * its name).  A pair that does not fit the event is dropped; a value over
 * OM_EVENT_VALUE_MAX bytes is cut (on a UTF-8 boundary).  ev NULL: no-op. */
void om_events_add_kv(struct om_events *ev, om_event_kind kind, const char *code,
                      const char *repository, const char *digest, uint64_t bytes,
                      const char *message, ...) __attribute__((sentinel));
/* The same with the pairs in an array: kv[0], kv[1], ... up to a NULL
 * key (kv may be NULL). */
void om_events_add_kvv(struct om_events *ev, om_event_kind kind, const char *code,
                       const char *repository, const char *digest, uint64_t bytes,
                       const char *message, const char *const *kv);
/* The same without a code or values (the first version of this API).  The
 * UI can only show such an event's English message: use om_events_add_kv. */
void om_events_add(struct om_events *ev, om_event_kind kind, const char *repository,
                   const char *digest, uint64_t bytes, const char *message);

/* Copy up to max newest-first events into out; returns the count. */
size_t om_events_recent(struct om_events *ev, struct om_event *out, size_t max);
const char *om_event_kind_str(om_event_kind kind);

/* Call fn for each value of e in the order added; number: the key was
 * given with '#' (key is passed without it).  Returns how many. */
size_t om_event_values(const struct om_event *e,
                       void (*fn)(void *ud, const char *key, const char *value, bool number),
                       void *ud);
/* The value of key (without '#'), or NULL.  Borrowed from e. */
const char *om_event_value(const struct om_event *e, const char *key);

/* A stable lower-case name of an om_err code for event values and API
 * fields ("upstream", "digest", "nospace"...); "unknown" for others. */
const char *om_err_code_name(int err);

#endif
