/* mcache.c — see mcache.h.  A chained hash table (power-of-two buckets,
 * FNV-1a over the key) whose entries also sit on one LRU list.  Keys carry
 * a one-letter kind prefix ("m" manifest, "t" tag, "r" route) so the three
 * kinds share one table and one byte budget.
 *
 * Blob sizes live apart (struct sizes): a set-associative array keyed by
 * the raw 32 bytes of the digest, whose first bytes — a SHA-256, uniformly
 * spread — pick the set.  No allocation per entry, a fixed footprint
 * (calloc'd once; pages the kernel hands out as they are first touched),
 * and SIZE_LOCKS striped mutexes so HTTP threads checking different blobs
 * do not wait for one another.  Replacement: the least recently stamped
 * way of the set (each stripe keeps its own tick).
 *
 * Repository membership (struct members) is a second such array: a slot
 * holds the digest's raw bytes and the repository name in full (compared
 * exactly: a hash of names would let a crafted name pass for another);
 * the set is picked by the digest's first bytes mixed with an FNV-1a of
 * the name, so one layer held by many repositories spreads over many
 * sets.  A slot is 128 bytes. */
#include "cache/mcache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 8192
#define OVERHEAD 96   /* per entry, counted against the budget */

struct entry {
    struct entry *hnext;            /* bucket chain */
    struct entry *prev, *next;      /* LRU list, most recent at head */
    uint32_t hash;
    size_t klen, vlen;
    char *key;                      /* owned; points into the same allocation */
    char *val;
};

#define SIZE_WAYS 4
#define SIZE_SETS (OM_MCACHE_SIZES / SIZE_WAYS)
#define SIZE_LOCKS 64

struct size_slot {
    unsigned char key[32];          /* the digest's raw bytes */
    uint64_t size;                  /* OM_MCACHE_SIZE_UNKNOWN: the index has none */
    uint32_t stamp;                 /* the stripe's tick at last use */
    uint32_t born_s;                /* monotonic seconds + 1 at put; 0 = empty */
};

struct sizes {
    pthread_mutex_t mu[SIZE_LOCKS]; /* mu[set % SIZE_LOCKS] guards that set */
    uint32_t tick[SIZE_LOCKS];      /* per stripe, under its mutex */
    struct size_slot *slot;         /* owned; SIZE_SETS * SIZE_WAYS */
};

#define MEMBER_WAYS 4
#define MEMBER_SETS (OM_MCACHE_MEMBERS / MEMBER_WAYS)
#define MEMBER_LOCKS 64

struct member_slot {
    unsigned char key[32];          /* the digest's raw bytes */
    char repo[OM_MCACHE_MEMBER_NAME_MAX + 1]; /* "" = empty slot */
    uint32_t stamp;                 /* the stripe's tick at last use */
    uint32_t pad_;
};
_Static_assert(sizeof(struct member_slot) == 128, "a member slot is two cache lines");

struct members {
    pthread_mutex_t mu[MEMBER_LOCKS]; /* mu[set % MEMBER_LOCKS] guards that set */
    uint32_t tick[MEMBER_LOCKS];
    struct member_slot *slot;       /* owned; MEMBER_SETS * MEMBER_WAYS */
};

struct om_mcache {
    pthread_mutex_t mu;
    struct entry *buckets[BUCKETS];
    struct entry *head, *tail;
    size_t bytes, max_bytes;
    struct sizes sizes;
    struct members members;
};

static uint32_t fnv(const char *k, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    return h;
}

static void lru_unlink(struct om_mcache *mc, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        mc->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        mc->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(struct om_mcache *mc, struct entry *e)
{
    e->next = mc->head;
    e->prev = NULL;
    if (mc->head)
        mc->head->prev = e;
    mc->head = e;
    if (mc->tail == NULL)
        mc->tail = e;
}

static struct entry *find(struct om_mcache *mc, const char *k, size_t klen, uint32_t h)
{
    for (struct entry *e = mc->buckets[h & (BUCKETS - 1)]; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->key, k, klen) == 0)
            return e;
    return NULL;
}

static void remove_entry(struct om_mcache *mc, struct entry *e)
{
    struct entry **pp = &mc->buckets[e->hash & (BUCKETS - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(mc, e);
    mc->bytes -= e->klen + e->vlen + OVERHEAD;
    free(e);
}

static void put(struct om_mcache *mc, const char *k, size_t klen, const void *v, size_t vlen)
{
    size_t cost = klen + vlen + OVERHEAD;
    if (cost > mc->max_bytes / 8)
        return; /* one entry may not push out most of the cache */
    struct entry *n = malloc(sizeof(*n) + klen + vlen);
    if (n == NULL)
        return;
    memset(n, 0, sizeof(*n));
    n->key = (char *)(n + 1);
    n->val = n->key + klen;
    n->klen = klen;
    n->vlen = vlen;
    n->hash = fnv(k, klen);
    memcpy(n->key, k, klen);
    memcpy(n->val, v, vlen);
    pthread_mutex_lock(&mc->mu);
    struct entry *old = find(mc, k, klen, n->hash);
    if (old)
        remove_entry(mc, old);
    while (mc->bytes + cost > mc->max_bytes && mc->tail)
        remove_entry(mc, mc->tail);
    n->hnext = mc->buckets[n->hash & (BUCKETS - 1)];
    mc->buckets[n->hash & (BUCKETS - 1)] = n;
    lru_push(mc, n);
    mc->bytes += cost;
    pthread_mutex_unlock(&mc->mu);
}

/* Copy the value out (≤ cap bytes, or malloc'd when *heap is non-NULL). */
static bool get(struct om_mcache *mc, const char *k, size_t klen, void *out, size_t cap,
                char **heap, size_t *vlen)
{
    uint32_t h = fnv(k, klen);
    bool hit = false;
    pthread_mutex_lock(&mc->mu);
    struct entry *e = find(mc, k, klen, h);
    if (e != NULL) {
        if (heap != NULL) {
            *heap = malloc(e->vlen ? e->vlen : 1);
            if (*heap != NULL) {
                memcpy(*heap, e->val, e->vlen);
                hit = true;
            }
        } else if (e->vlen <= cap) {
            memcpy(out, e->val, e->vlen);
            hit = true;
        }
        if (hit) {
            *vlen = e->vlen;
            lru_unlink(mc, e);
            lru_push(mc, e);
        }
    }
    pthread_mutex_unlock(&mc->mu);
    return hit;
}

static void drop(struct om_mcache *mc, const char *k, size_t klen)
{
    uint32_t h = fnv(k, klen);
    pthread_mutex_lock(&mc->mu);
    struct entry *e = find(mc, k, klen, h);
    if (e != NULL)
        remove_entry(mc, e);
    pthread_mutex_unlock(&mc->mu);
}

int om_mcache_new(struct om_mcache **out, size_t max_bytes)
{
    struct om_mcache *mc = calloc(1, sizeof(*mc)); /* owned by the caller via *out */
    if (mc == NULL)
        return OM_ERR_NOMEM;
    mc->sizes.slot = calloc(SIZE_SETS * SIZE_WAYS, sizeof(*mc->sizes.slot)); /* freed at free */
    mc->members.slot = calloc(MEMBER_SETS * MEMBER_WAYS, sizeof(*mc->members.slot)); /* same */
    if (mc->sizes.slot == NULL || mc->members.slot == NULL) {
        free(mc->sizes.slot);
        free(mc->members.slot);
        free(mc);
        return OM_ERR_NOMEM;
    }
    pthread_mutex_init(&mc->mu, NULL);
    for (size_t i = 0; i < SIZE_LOCKS; i++)
        pthread_mutex_init(&mc->sizes.mu[i], NULL);
    for (size_t i = 0; i < MEMBER_LOCKS; i++)
        pthread_mutex_init(&mc->members.mu[i], NULL);
    mc->max_bytes = max_bytes;
    *out = mc;
    return OM_OK;
}

void om_mcache_free(struct om_mcache *mc)
{
    if (mc == NULL)
        return;
    while (mc->tail)
        remove_entry(mc, mc->tail);
    pthread_mutex_destroy(&mc->mu);
    for (size_t i = 0; i < SIZE_LOCKS; i++)
        pthread_mutex_destroy(&mc->sizes.mu[i]);
    for (size_t i = 0; i < MEMBER_LOCKS; i++)
        pthread_mutex_destroy(&mc->members.mu[i]);
    free(mc->sizes.slot);
    free(mc->members.slot);
    free(mc);
}

void om_mcache_clear(struct om_mcache *mc)
{
    if (mc == NULL)
        return;
    pthread_mutex_lock(&mc->mu);
    while (mc->tail)
        remove_entry(mc, mc->tail);
    pthread_mutex_unlock(&mc->mu);
    /* Every stripe, in order (nothing else takes two): then the table. */
    for (size_t i = 0; i < MEMBER_LOCKS; i++)
        pthread_mutex_lock(&mc->members.mu[i]);
    memset(mc->members.slot, 0, (size_t)MEMBER_SETS * MEMBER_WAYS * sizeof(*mc->members.slot));
    for (size_t i = MEMBER_LOCKS; i-- > 0;)
        pthread_mutex_unlock(&mc->members.mu[i]);
}

size_t om_mcache_bytes(struct om_mcache *mc)
{
    if (mc == NULL)
        return 0;
    pthread_mutex_lock(&mc->mu);
    size_t n = mc->bytes;
    pthread_mutex_unlock(&mc->mu);
    return n;
}

/* ---- manifests: value = media type, NUL, bytes ---- */

static size_t key_of(char *k, size_t ksz, char kind, const char *a, const char *b)
{
    int n = snprintf(k, ksz, "%c%s\n%s", kind, a, b ? b : "");
    return n > 0 && (size_t)n < ksz ? (size_t)n : 0;
}

bool om_mcache_manifest_get(struct om_mcache *mc, const om_digest *d, char **buf, size_t *len,
                            char *media_type, size_t mtsz)
{
    char k[OM_DIGEST_MAX + 4];
    size_t klen = key_of(k, sizeof(k), 'm', d->str, NULL);
    char *v = NULL;
    size_t vlen = 0;
    if (mc == NULL || klen == 0 || !get(mc, k, klen, NULL, 0, &v, &vlen))
        return false;
    size_t mtl = strnlen(v, vlen);
    if (mtl >= vlen || mtl >= mtsz) {
        free(v);
        return false;
    }
    memcpy(media_type, v, mtl + 1);
    *len = vlen - mtl - 1;
    memmove(v, v + mtl + 1, *len);
    *buf = v;
    return true;
}

void om_mcache_manifest_put(struct om_mcache *mc, const om_digest *d, const char *buf, size_t len,
                            const char *media_type)
{
    char k[OM_DIGEST_MAX + 4];
    size_t klen = key_of(k, sizeof(k), 'm', d->str, NULL);
    size_t mtl = strlen(media_type);
    if (mc == NULL || klen == 0 || len > (1u << 20))
        return;
    char *v = malloc(mtl + 1 + len);
    if (v == NULL)
        return;
    memcpy(v, media_type, mtl + 1);
    memcpy(v + mtl + 1, buf, len);
    put(mc, k, klen, v, mtl + 1 + len);
    free(v);
}

/* ---- tags: value = struct om_tag_rec ---- */

bool om_mcache_tag_get(struct om_mcache *mc, const char *repo, const char *tag,
                       struct om_tag_rec *out)
{
    char k[OM_NAME_MAX + OM_TAG_MAX + 4];
    size_t klen = key_of(k, sizeof(k), 't', repo, tag), vlen = 0;
    return mc != NULL && klen != 0 && get(mc, k, klen, out, sizeof(*out), NULL, &vlen) &&
           vlen == sizeof(*out);
}

void om_mcache_tag_put(struct om_mcache *mc, const char *repo, const char *tag,
                       const struct om_tag_rec *rec)
{
    char k[OM_NAME_MAX + OM_TAG_MAX + 4];
    size_t klen = key_of(k, sizeof(k), 't', repo, tag);
    if (mc != NULL && klen != 0)
        put(mc, k, klen, rec, sizeof(*rec));
}

void om_mcache_tag_drop(struct om_mcache *mc, const char *repo, const char *tag)
{
    char k[OM_NAME_MAX + OM_TAG_MAX + 4];
    size_t klen = key_of(k, sizeof(k), 't', repo, tag);
    if (mc != NULL && klen != 0)
        drop(mc, k, klen);
}

/* ---- routes: value = upstream, NUL, canonical, NUL ---- */

bool om_mcache_route_get(struct om_mcache *mc, const char *name, char *upstream, size_t upsz,
                         char *canonical, size_t cansz)
{
    char k[OM_NAME_MAX + 4], v[64 + OM_NAME_MAX + 2];
    size_t klen = key_of(k, sizeof(k), 'r', name, NULL), vlen = 0;
    if (mc == NULL || klen == 0 || !get(mc, k, klen, v, sizeof(v), NULL, &vlen))
        return false;
    size_t ul = strnlen(v, vlen);
    if (ul + 1 >= vlen || ul >= upsz || strnlen(v + ul + 1, vlen - ul - 1) >= cansz)
        return false;
    memcpy(upstream, v, ul + 1);
    snprintf(canonical, cansz, "%s", v + ul + 1);
    return true;
}

void om_mcache_route_put(struct om_mcache *mc, const char *name, const char *upstream,
                         const char *canonical)
{
    char k[OM_NAME_MAX + 4], v[64 + OM_NAME_MAX + 2];
    size_t klen = key_of(k, sizeof(k), 'r', name, NULL);
    int n = snprintf(v, sizeof(v), "%s%c%s", upstream, '\0', canonical);
    if (mc != NULL && klen != 0 && n > 0 && (size_t)n < sizeof(v))
        put(mc, k, klen, v, (size_t)n + 1);
}

/* ---- blob sizes (struct sizes) ---- */

/* Hex digit value + 1; 0 for anything else (lower-case digests only). */
static const unsigned char HEX1[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15,
    ['f'] = 16,
};

/* The raw 32 bytes of d; false when d is not a sha256 digest.  On the hit
 * path of every blob: a table, no branch per digit. */
static bool raw_key(const om_digest *d, unsigned char key[32])
{
    const unsigned char *h = (const unsigned char *)d->str + 7;
    unsigned bad = 0;
    if (memcmp(d->str, "sha256:", 7) != 0 || d->str[OM_DIGEST_MAX] != '\0')
        return false;
    for (size_t i = 0; i < 32; i++) {
        unsigned a = HEX1[h[2 * i]], b = HEX1[h[2 * i + 1]];
        bad |= (a == 0) | (b == 0);
        key[i] = (unsigned char)((a - 1) << 4 | ((b - 1) & 0xf));
    }
    return bad == 0;
}

static size_t set_of(const unsigned char key[32])
{
    return ((size_t)key[0] | (size_t)key[1] << 8 | (size_t)key[2] << 16) % SIZE_SETS;
}

static uint32_t now_s(void)
{
    return (uint32_t)(om_now_us() / 1000000) + 1; /* never 0: 0 marks an empty slot */
}

bool om_mcache_size_get(struct om_mcache *mc, const om_digest *d, uint64_t *size)
{
    unsigned char key[32];
    bool hit = false;

    if (mc == NULL || !raw_key(d, key))
        return false;
    size_t set = set_of(key), lk = set % SIZE_LOCKS;
    struct size_slot *w = &mc->sizes.slot[set * SIZE_WAYS];
    pthread_mutex_lock(&mc->sizes.mu[lk]);
    for (size_t i = 0; i < SIZE_WAYS; i++) {
        if (w[i].born_s == 0 || memcmp(w[i].key, key, sizeof(key)) != 0)
            continue;
        /* The clock only for "no size known" entries: a hit reads none. */
        if (w[i].size == OM_MCACHE_SIZE_UNKNOWN &&
            now_s() - w[i].born_s >= OM_MCACHE_UNKNOWN_TTL_S) {
            w[i].born_s = 0; /* "no size known" has expired: ask the index again */
            break;
        }
        w[i].stamp = ++mc->sizes.tick[lk];
        *size = w[i].size;
        hit = true;
        break;
    }
    pthread_mutex_unlock(&mc->sizes.mu[lk]);
    return hit;
}

void om_mcache_size_put(struct om_mcache *mc, const om_digest *d, uint64_t size)
{
    unsigned char key[32];

    if (mc == NULL || !raw_key(d, key))
        return;
    size_t set = set_of(key), lk = set % SIZE_LOCKS;
    struct size_slot *w = &mc->sizes.slot[set * SIZE_WAYS];
    pthread_mutex_lock(&mc->sizes.mu[lk]);
    uint32_t tick = ++mc->sizes.tick[lk];
    size_t victim = 0;
    for (size_t i = 0; i < SIZE_WAYS; i++) {
        if (w[i].born_s != 0 && memcmp(w[i].key, key, sizeof(key)) == 0) {
            victim = i; /* replace in place */
            break;
        }
        /* An empty way first, else the least recently used (ticks wrap:
         * compare distances from now, not values). */
        if (w[victim].born_s != 0 &&
            (w[i].born_s == 0 || tick - w[i].stamp > tick - w[victim].stamp))
            victim = i;
    }
    memcpy(w[victim].key, key, sizeof(key));
    w[victim].size = size;
    w[victim].stamp = tick;
    w[victim].born_s = now_s();
    pthread_mutex_unlock(&mc->sizes.mu[lk]);
}

/* ---- repository membership (struct members) ---- */

/* The set of (repo, key): the digest's first bytes (uniform) mixed with
 * the name's FNV-1a.  *n gets the name's length. */
static size_t member_set(const unsigned char key[32], const char *repo, size_t *n)
{
    size_t len = strnlen(repo, OM_MCACHE_MEMBER_NAME_MAX + 1);
    uint32_t h = fnv(repo, len);
    *n = len;
    return (((size_t)key[0] | (size_t)key[1] << 8 | (size_t)key[2] << 16) ^ h) % MEMBER_SETS;
}

bool om_mcache_member_get(struct om_mcache *mc, const char *repo, const om_digest *d)
{
    unsigned char key[32];
    size_t len = 0;
    bool hit = false;

    if (mc == NULL || repo == NULL || !raw_key(d, key))
        return false;
    size_t set = member_set(key, repo, &len), lk = set % MEMBER_LOCKS;
    if (len == 0 || len > OM_MCACHE_MEMBER_NAME_MAX)
        return false;
    struct member_slot *w = &mc->members.slot[set * MEMBER_WAYS];
    pthread_mutex_lock(&mc->members.mu[lk]);
    for (size_t i = 0; i < MEMBER_WAYS && !hit; i++) {
        if (memcmp(w[i].key, key, sizeof(key)) == 0 && memcmp(w[i].repo, repo, len + 1) == 0) {
            w[i].stamp = ++mc->members.tick[lk];
            hit = true;
        }
    }
    pthread_mutex_unlock(&mc->members.mu[lk]);
    return hit;
}

void om_mcache_member_put(struct om_mcache *mc, const char *repo, const om_digest *d)
{
    unsigned char key[32];
    size_t len = 0;

    if (mc == NULL || repo == NULL || !raw_key(d, key))
        return;
    size_t set = member_set(key, repo, &len), lk = set % MEMBER_LOCKS;
    if (len == 0 || len > OM_MCACHE_MEMBER_NAME_MAX)
        return;
    struct member_slot *w = &mc->members.slot[set * MEMBER_WAYS];
    pthread_mutex_lock(&mc->members.mu[lk]);
    uint32_t tick = ++mc->members.tick[lk];
    size_t victim = 0;
    for (size_t i = 0; i < MEMBER_WAYS; i++) {
        if (w[i].repo[0] != '\0' && memcmp(w[i].key, key, sizeof(key)) == 0 &&
            memcmp(w[i].repo, repo, len + 1) == 0) {
            victim = i; /* there already: refresh */
            break;
        }
        /* An empty way first, else the least recently used (as sizes). */
        if (w[victim].repo[0] != '\0' &&
            (w[i].repo[0] == '\0' || tick - w[i].stamp > tick - w[victim].stamp))
            victim = i;
    }
    memcpy(w[victim].key, key, sizeof(key));
    memcpy(w[victim].repo, repo, len + 1);
    w[victim].stamp = tick;
    pthread_mutex_unlock(&mc->members.mu[lk]);
}
