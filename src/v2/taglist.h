/* taglist.h — a repository's tag list held compactly, and the small LRU
 * cache of the lists fetched lately, for tags/list (v2/v2_tags.c).
 *
 * struct om_taglist: the tags of one list as NUL-terminated strings packed
 * in one buffer, plus one array of offsets in byte order: (tag length + 5)
 * bytes a tag, where a jansson array of strings costs about 100.  It is
 * built page by page through a builder (the caller frees each upstream
 * page's JSON tree as soon as its tags are copied in), sorted and
 * de-duplicated once, and immutable from then on: the cache and the
 * requests paging through it share it by reference count, without a lock.
 *
 * struct om_tagcache: the lists fetched lately, by key (v2_tags.c uses the
 * request's name and ns), with the time each was fetched; the caller
 * decides what is fresh (tag_ttl) and may use an older entry when the
 * upstream is down.  Bounded by bytes (the lists' memory, keys and a
 * per-entry overhead) and by entries; least recently used entries go
 * first.  An entry may hold a refusal instead of a list (the list was over
 * limits.max_tags): clients retrying then get the same answer without the
 * mirror fetching the whole list again.  Thread-safe: one mutex, O(1)
 * operations; what get() returns is a copy holding its own reference.
 */
#ifndef OM_V2_TAGLIST_H
#define OM_V2_TAGLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/om.h"
#include "core/ref.h"

struct om_taglist;

/* ---- building a list ---- */
struct om_taglist_builder {
    char *buf;                  /* the tags, NUL-terminated, in arrival order */
    size_t len, cap;
    uint32_t *off;              /* n offsets into buf */
    size_t n, ncap;
    size_t max_tags;            /* adding tag max_tags + 1 fails */
    size_t skipped;             /* strings added that are not tags */
};

void om_taglist_builder_init(struct om_taglist_builder *b, size_t max_tags);
/* Append one tag (len bytes, no NUL needed).  OM_OK; OM_ERR_INVALID when s
 * is not a tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}: skipped and counted in
 * b->skipped, the builder unchanged); OM_ERR_TOOBIG when the builder holds
 * max_tags already; OM_ERR_NOMEM. */
int om_taglist_builder_add(struct om_taglist_builder *b, const char *s, size_t len);
/* Free what the builder holds; it can be used again after _init. */
void om_taglist_builder_clear(struct om_taglist_builder *b);
/* Sort in byte order, drop duplicates, shrink the memory to fit: *out is a
 * new list with one reference, owned by the caller (om_taglist_unref).  The
 * builder's memory moves into the list (the builder is left empty) on
 * OM_OK; OM_ERR_NOMEM leaves it as it was. */
int om_taglist_build(struct om_taglist **out, struct om_taglist_builder *b);

/* ---- reading a list (any thread, no lock) ---- */
size_t om_taglist_count(const struct om_taglist *l);
/* The i-th tag in byte order (i < count); owned by the list. */
const char *om_taglist_at(const struct om_taglist *l, size_t i);
/* The index of the first tag strictly after `last` in byte order (0 for
 * NULL or ""; count when every tag is <= last). */
size_t om_taglist_after(const struct om_taglist *l, const char *last);
/* Bytes of memory the list holds (buffer, offsets, header). */
size_t om_taglist_bytes(const struct om_taglist *l);
/* Take one more reference; returns l (NULL for NULL). */
struct om_taglist *om_taglist_ref(struct om_taglist *l);
/* Drop one reference; the last frees the list.  NULL is a no-op. */
void om_taglist_unref(struct om_taglist *l);

/* ---- the cache ---- */
struct om_tagcache;

/* One entry, copied in and out. */
struct om_tagcache_val {
    struct om_taglist *list;    /* the list, or NULL with refusal set */
    char refusal[256];          /* why the list is not served ("" with a list) */
    int64_t fetched_ms;         /* when the upstream answered (om_now_ms) */
    char canonical[OM_NAME_MAX + 1];  /* the repository it came from */
    char upstream[64];          /* the upstream's name */
};

/* *out owned by the caller (om_tagcache_free).  max_bytes > 0, max_entries > 0. */
int om_tagcache_new(struct om_tagcache **out, size_t max_bytes, size_t max_entries);
/* Frees the cache and drops its references (lists still referenced by
 * callers live on until they release them).  NULL is a no-op. */
void om_tagcache_free(struct om_tagcache *tc);
/* The entry of key: true with *out a copy whose list holds a reference of
 * its own (release with om_tagcache_val_clear); it becomes the most
 * recently used.  false (and *out cleared) when there is none. */
bool om_tagcache_get(struct om_tagcache *tc, const char *key, struct om_tagcache_val *out);
/* Store a copy of *v under key (the cache takes its own reference to
 * v->list; the caller keeps its own), replacing the key's entry and
 * evicting least recently used ones until it fits.  false when it was not
 * stored: more than max_bytes on its own, or out of memory (the key's old
 * entry is then gone too: it is out of date). */
bool om_tagcache_put(struct om_tagcache *tc, const char *key, const struct om_tagcache_val *v);
/* Release the reference a get() gave; *v is cleared.  Idempotent. */
void om_tagcache_val_clear(struct om_tagcache_val *v);
/* Bytes and entries held now. */
size_t om_tagcache_bytes(struct om_tagcache *tc);
size_t om_tagcache_entries(struct om_tagcache *tc);

#endif
