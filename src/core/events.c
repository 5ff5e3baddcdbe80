/* events.c — see events.h.  A fixed array used as a ring; an event's values
 * are packed into its own fixed buffer as "key\0value\0key\0value\0" (a
 * numeric key keeps its leading '#'), so adding never allocates and a copy
 * of the ring is a plain struct copy. */
#include "core/events.h"

#include <pthread.h>
#include <stdarg.h>
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
    struct om_events *ev = calloc(1, sizeof(*ev)); /* owned by the caller via *out */
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

/* How many bytes of s (at most max) end on a UTF-8 character boundary. */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* Copy s into a field of size sz, cut on a UTF-8 boundary. */
static void copy_field(char *dst, size_t sz, const char *s)
{
    size_t n = s != NULL ? utf8_cut(s, sz - 1) : 0;
    memcpy(dst, s != NULL ? s : "", n);
    dst[n] = '\0';
}

/* Append one pair to e->values; false (nothing written) when it does not
 * fit or the key is empty. */
static bool pack_pair(struct om_event *e, const char *key, const char *value)
{
    size_t kl = strnlen(key, OM_EVENT_CODE_MAX + 2);
    size_t vl = utf8_cut(value, OM_EVENT_VALUE_MAX);
    if (kl == 0 || kl > OM_EVENT_CODE_MAX + 1 || (key[0] == '#' && kl == 1) ||
        e->values_len + kl + 1 + vl + 1 > sizeof(e->values))
        return false;
    memcpy(e->values + e->values_len, key, kl + 1);
    e->values_len += kl + 1;
    memcpy(e->values + e->values_len, value, vl);
    e->values[e->values_len + vl] = '\0';
    e->values_len += vl + 1;
    return true;
}

/* Fill *e (not yet in the ring) and publish it. */
static void publish(struct om_events *ev, const struct om_event *e)
{
    pthread_mutex_lock(&ev->mu);
    ev->ring[ev->next] = *e;
    ev->next = (ev->next + 1) % OM_EVENTS_MAX;
    if (ev->count < OM_EVENTS_MAX)
        ev->count++;
    pthread_mutex_unlock(&ev->mu);
}

static void fill_head(struct om_event *e, om_event_kind kind, const char *code,
                      const char *repository, const char *digest, uint64_t bytes,
                      const char *message)
{
    memset(e, 0, offsetof(struct om_event, values));
    e->t_ms = om_now_ms();
    e->kind = kind;
    copy_field(e->code, sizeof(e->code), code);
    copy_field(e->repository, sizeof(e->repository), repository);
    copy_field(e->digest, sizeof(e->digest), digest);
    copy_field(e->message, sizeof(e->message), message);
    e->bytes = bytes;
    e->values_len = 0;
    e->values[0] = '\0';
}

void om_events_add_kv(struct om_events *ev, om_event_kind kind, const char *code,
                      const char *repository, const char *digest, uint64_t bytes,
                      const char *message, ...)
{
    struct om_event e;
    va_list ap;
    const char *k, *v;

    if (ev == NULL)
        return;
    fill_head(&e, kind, code, repository, digest, bytes, message);
    va_start(ap, message);
    while ((k = va_arg(ap, const char *)) != NULL) {
        v = va_arg(ap, const char *);
        if (v != NULL)
            pack_pair(&e, k, v);
    }
    va_end(ap);
    publish(ev, &e);
}

void om_events_add_kvv(struct om_events *ev, om_event_kind kind, const char *code,
                       const char *repository, const char *digest, uint64_t bytes,
                       const char *message, const char *const *kv)
{
    struct om_event e;
    if (ev == NULL)
        return;
    fill_head(&e, kind, code, repository, digest, bytes, message);
    for (size_t i = 0; kv != NULL && kv[i] != NULL; i += 2)
        if (kv[i + 1] != NULL)
            pack_pair(&e, kv[i], kv[i + 1]);
    publish(ev, &e);
}

void om_events_add(struct om_events *ev, om_event_kind kind, const char *repository,
                   const char *digest, uint64_t bytes, const char *message)
{
    struct om_event e;
    if (ev == NULL)
        return;
    fill_head(&e, kind, NULL, repository, digest, bytes, message);
    publish(ev, &e);
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

size_t om_event_values(const struct om_event *e,
                       void (*fn)(void *ud, const char *key, const char *value, bool number),
                       void *ud)
{
    size_t n = 0, off = 0;
    while (off < e->values_len) {
        const char *k = e->values + off;
        size_t kl = strnlen(k, e->values_len - off);
        if (off + kl + 1 >= e->values_len)
            break;                      /* a key without its value: not ours */
        const char *v = k + kl + 1;
        size_t vl = strnlen(v, e->values_len - off - kl - 1);
        bool num = k[0] == '#';
        if (fn != NULL)
            fn(ud, num ? k + 1 : k, v, num);
        n++;
        off += kl + 1 + vl + 1;
    }
    return n;
}

struct find_ctx {
    const char *key, *found;
};

static void find_value(void *ud, const char *key, const char *value, bool number)
{
    struct find_ctx *c = ud;
    (void)number;
    if (c->found == NULL && strcmp(key, c->key) == 0)
        c->found = value;
}

const char *om_event_value(const struct om_event *e, const char *key)
{
    struct find_ctx c = {.key = key};
    om_event_values(e, find_value, &c);
    return c.found;
}

const char *om_err_code_name(int err)
{
    switch ((om_err)err) {
    case OM_OK: return "ok";
    case OM_ERR_NOMEM: return "nomem";
    case OM_ERR_INVALID: return "invalid";
    case OM_ERR_NOTFOUND: return "notfound";
    case OM_ERR_IO: return "io";
    case OM_ERR_UPSTREAM: return "upstream";
    case OM_ERR_AUTH: return "auth";
    case OM_ERR_DIGEST: return "digest";
    case OM_ERR_TOOMANY: return "toomany";
    case OM_ERR_TOOBIG: return "toobig";
    case OM_ERR_DENIED: return "denied";
    case OM_ERR_NOSPACE: return "nospace";
    case OM_ERR_TIMEOUT: return "timeout";
    case OM_ERR_UNAVAILABLE: return "unavailable";
    }
    return "unknown";
}
