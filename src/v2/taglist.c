/* taglist.c — see taglist.h.  The builder grows its buffer and offset
 * array by doubling; building sorts the offsets with qsort_r (comparing
 * the strings they point at), drops neighbours that are equal, and
 * shrinks both arrays to fit.  The cache is mcache.c's shape: a chained
 * hash table (power-of-two buckets, FNV-1a over the key) whose entries also
 * sit on one LRU list, most recent at the head. */
#include "v2/taglist.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct om_taglist {
    atomic_uint refs;
    size_t n;
    uint32_t *off;              /* n offsets into buf, in byte order of the tags */
    char *buf;                  /* owned */
    size_t bytes;               /* memory held, for the cache's budget */
};

/* ---- builder ---------------------------------------------------------- */

void om_taglist_builder_init(struct om_taglist_builder *b, size_t max_tags)
{
    memset(b, 0, sizeof(*b));
    b->max_tags = max_tags;
}

void om_taglist_builder_clear(struct om_taglist_builder *b)
{
    free(b->buf);
    free(b->off);
    size_t max = b->max_tags;
    om_taglist_builder_init(b, max);
}

/* Grow *p (elements of size sz, *cap of them) to hold at least want. */
static int grow(void **p, size_t *cap, size_t want, size_t sz, size_t first)
{
    int err = OM_OK;
    if (want <= *cap)
        goto done;
    size_t ncap = *cap ? *cap : first;
    while (ncap < want)
        ncap *= 2;
    void *np = realloc(*p, ncap * sz);
    if (np == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    *p = np;
    *cap = ncap;
done:
    return err;
}

int om_taglist_builder_add(struct om_taglist_builder *b, const char *s, size_t len)
{
    int err = OM_OK;
    if (!om_ref_tag_valid(s, len)) {
        b->skipped++;
        err = OM_ERR_INVALID;
        goto done;
    }
    if (b->n >= b->max_tags || b->len + len + 1 > UINT32_MAX) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    if ((err = grow((void **)&b->buf, &b->cap, b->len + len + 1, 1, 4096)) != OM_OK ||
        (err = grow((void **)&b->off, &b->ncap, b->n + 1, sizeof(*b->off), 256)) != OM_OK)
        goto done;
    b->off[b->n++] = (uint32_t)b->len;
    memcpy(b->buf + b->len, s, len);
    b->buf[b->len + len] = '\0';
    b->len += len + 1;
done:
    return err;
}

static int cmp_off(const void *a, const void *b, void *buf)
{
    const char *base = buf;
    return strcmp(base + *(const uint32_t *)a, base + *(const uint32_t *)b);
}

int om_taglist_build(struct om_taglist **out, struct om_taglist_builder *b)
{
    int err = OM_OK;
    struct om_taglist *l = calloc(1, sizeof(*l));
    *out = NULL;
    if (l == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if (b->n > 1)
        qsort_r(b->off, b->n, sizeof(*b->off), cmp_off, b->buf);
    /* Drop duplicates: equal tags are neighbours now.  Their bytes stay in
     * the buffer (rare: pages that overlap). */
    size_t kept = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (kept > 0 && strcmp(b->buf + b->off[kept - 1], b->buf + b->off[i]) == 0)
            continue;
        b->off[kept++] = b->off[i];
    }
    b->n = kept;
    /* Shrinking never fails in practice; if it does, keep the larger block. */
    if (b->len > 0 && b->len < b->cap) {
        char *nb = realloc(b->buf, b->len);
        if (nb != NULL) {
            b->buf = nb;
            b->cap = b->len;
        }
    }
    if (b->n > 0 && b->n < b->ncap) {
        uint32_t *no = realloc(b->off, b->n * sizeof(*no));
        if (no != NULL) {
            b->off = no;
            b->ncap = b->n;
        }
    }
    atomic_init(&l->refs, 1);
    l->n = b->n;
    l->off = b->off;
    l->buf = b->buf;
    l->bytes = sizeof(*l) + b->cap + b->ncap * sizeof(*b->off);
    b->buf = NULL;
    b->off = NULL;
    om_taglist_builder_clear(b);
    *out = l;
done:
    return err;
}

/* ---- reading ----------------------------------------------------------- */

size_t om_taglist_count(const struct om_taglist *l)
{
    return l->n;
}

const char *om_taglist_at(const struct om_taglist *l, size_t i)
{
    return l->buf + l->off[i];
}

size_t om_taglist_after(const struct om_taglist *l, const char *last)
{
    size_t lo = 0, hi = l->n;
    if (last == NULL || last[0] == '\0')
        return 0;
    while (lo < hi) { /* the first tag > last */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(l->buf + l->off[mid], last) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t om_taglist_bytes(const struct om_taglist *l)
{
    return l->bytes;
}

struct om_taglist *om_taglist_ref(struct om_taglist *l)
{
    if (l != NULL)
        atomic_fetch_add(&l->refs, 1);
    return l;
}

void om_taglist_unref(struct om_taglist *l)
{
    if (l == NULL || atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    free(l->buf);
    free(l->off);
    free(l);
}

/* ---- cache ------------------------------------------------------------- */

#define BUCKETS 1024
#define OVERHEAD 64 /* per entry beyond the struct and the key */

struct entry {
    struct entry *hnext;        /* bucket chain */
    struct entry *prev, *next;  /* LRU list, most recent at head */
    uint32_t hash;
    size_t klen;
    size_t cost;                /* what it counts against the budget */
    struct om_tagcache_val v;   /* holds one reference to v.list */
    char key[];                 /* klen bytes + NUL */
};

struct om_tagcache {
    pthread_mutex_t mu;
    struct entry *buckets[BUCKETS];
    struct entry *head, *tail;
    size_t bytes, max_bytes;
    size_t entries, max_entries;
};

static uint32_t fnv(const char *k, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    return h;
}

static void lru_unlink(struct om_tagcache *tc, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        tc->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        tc->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(struct om_tagcache *tc, struct entry *e)
{
    e->next = tc->head;
    e->prev = NULL;
    if (tc->head)
        tc->head->prev = e;
    tc->head = e;
    if (tc->tail == NULL)
        tc->tail = e;
}

static struct entry *find(struct om_tagcache *tc, const char *k, size_t klen, uint32_t h)
{
    for (struct entry *e = tc->buckets[h & (BUCKETS - 1)]; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->key, k, klen) == 0)
            return e;
    return NULL;
}

/* Unlink and free e; its list reference is dropped (under tc->mu: the
 * unref only frees memory). */
static void remove_entry(struct om_tagcache *tc, struct entry *e)
{
    struct entry **pp = &tc->buckets[e->hash & (BUCKETS - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(tc, e);
    tc->bytes -= e->cost;
    tc->entries--;
    om_taglist_unref(e->v.list);
    free(e);
}

int om_tagcache_new(struct om_tagcache **out, size_t max_bytes, size_t max_entries)
{
    int err = OM_OK;
    struct om_tagcache *tc = calloc(1, sizeof(*tc));
    *out = NULL;
    if (tc == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    pthread_mutex_init(&tc->mu, NULL);
    tc->max_bytes = max_bytes ? max_bytes : 1;
    tc->max_entries = max_entries ? max_entries : 1;
    *out = tc;
done:
    return err;
}

void om_tagcache_free(struct om_tagcache *tc)
{
    if (tc == NULL)
        return;
    while (tc->tail != NULL)
        remove_entry(tc, tc->tail);
    pthread_mutex_destroy(&tc->mu);
    free(tc);
}

bool om_tagcache_get(struct om_tagcache *tc, const char *key, struct om_tagcache_val *out)
{
    size_t klen = strlen(key);
    uint32_t h = fnv(key, klen);
    bool hit = false;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&tc->mu);
    struct entry *e = find(tc, key, klen, h);
    if (e != NULL) {
        *out = e->v;
        om_taglist_ref(out->list);
        lru_unlink(tc, e);
        lru_push(tc, e);
        hit = true;
    }
    pthread_mutex_unlock(&tc->mu);
    return hit;
}

bool om_tagcache_put(struct om_tagcache *tc, const char *key, const struct om_tagcache_val *v)
{
    size_t klen = strlen(key);
    size_t cost = sizeof(struct entry) + klen + 1 + OVERHEAD +
                  (v->list != NULL ? om_taglist_bytes(v->list) : 0);
    uint32_t h = fnv(key, klen);
    bool stored = false;
    struct entry *n = cost <= tc->max_bytes ? malloc(sizeof(*n) + klen + 1) : NULL;
    pthread_mutex_lock(&tc->mu);
    struct entry *old = find(tc, key, klen, h);
    if (old != NULL)
        remove_entry(tc, old);
    if (n == NULL)
        goto done;
    memset(n, 0, sizeof(*n));
    n->hash = h;
    n->klen = klen;
    n->cost = cost;
    n->v = *v;
    om_taglist_ref(n->v.list);
    memcpy(n->key, key, klen + 1);
    while ((tc->bytes + cost > tc->max_bytes || tc->entries + 1 > tc->max_entries) &&
           tc->tail != NULL)
        remove_entry(tc, tc->tail);
    n->hnext = tc->buckets[h & (BUCKETS - 1)];
    tc->buckets[h & (BUCKETS - 1)] = n;
    lru_push(tc, n);
    tc->bytes += cost;
    tc->entries++;
    stored = true;
done:
    pthread_mutex_unlock(&tc->mu);
    return stored;
}

void om_tagcache_val_clear(struct om_tagcache_val *v)
{
    om_taglist_unref(v->list);
    memset(v, 0, sizeof(*v));
}

size_t om_tagcache_bytes(struct om_tagcache *tc)
{
    pthread_mutex_lock(&tc->mu);
    size_t b = tc->bytes;
    pthread_mutex_unlock(&tc->mu);
    return b;
}

size_t om_tagcache_entries(struct om_tagcache *tc)
{
    pthread_mutex_lock(&tc->mu);
    size_t n = tc->entries;
    pthread_mutex_unlock(&tc->mu);
    return n;
}
