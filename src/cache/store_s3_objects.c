/* store_s3_objects.c — what this process knows is in the bucket: digest →
 * (size, modification time), and the byte total.
 *
 * Why a table: om_store_has is asked on the hit path of every blob and
 * manifest request, in an HTTP thread, and a HEAD to the bucket costs
 * milliseconds (~2.3 ms to RGW on loopback) and may hang; the answer from
 * memory costs a hash probe.  The table is filled by the listing at open
 * (ListObjectsV2 of <prefix>blobs/sha256/: ~1000 keys a page), kept by
 * every commit, put, remove and quarantine of this process, and by every
 * HEAD (om_store_stat) the job path makes before it goes upstream; and it
 * is reconciled by every complete walk (GC's, fsck's), which learns what
 * another process committed and forgets what another process removed.
 *
 * Reconciling without a lock across the listing (which takes seconds on a
 * big bucket): each walk has a generation.  An object listed, committed or
 * learned during the walk carries the walk's generation; one removed
 * during it leaves a tombstone of that generation, so a page listed before
 * the removal cannot bring it back.  At the end of a complete walk, live
 * entries of an older generation were neither listed nor touched: another
 * process removed them.  One reconciling walk at a time; a second one
 * running meanwhile only reads.
 *
 * Layout: open addressing over the 32 raw digest bytes (linear probing,
 * tombstones, grown at 70 % load, tombstones dropped at each growth and
 * after each reconciliation).  ~56 bytes an object: a million objects take
 * ~90 MB at most.  A read-write lock: has() takes it shared.
 */
#include "cache/store_s3.h"

#include <stdlib.h>
#include <string.h>

#define INITIAL_CAP 1024

enum { SLOT_EMPTY = 0, SLOT_LIVE = 1, SLOT_GONE = 2 };

struct slot {
    unsigned char key[32];
    uint64_t size;
    int64_t mtime_ms;
    uint32_t gen;                   /* walk generation that last saw or touched it */
    uint8_t state;
};

struct om_s3_objects {
    pthread_rwlock_t lock;
    struct slot *slots;
    size_t cap, live, gone;
    uint64_t bytes;
    uint32_t gen;                   /* the latest generation handed out */
    uint32_t walking;               /* the reconciling walk's generation, 0 = none */
};

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The 32 raw bytes of a digest (false for a damaged one). */
static bool raw_of(const om_digest *d, unsigned char out[32])
{
    const char *h = om_digest_hex(d);
    if (strncmp(d->str, "sha256:", 7) != 0)
        return false;
    for (int i = 0; i < 32; i++) {
        int a = hexval(h[2 * i]), b = hexval(h[2 * i + 1]);
        if (a < 0 || b < 0)
            return false;
        out[i] = (unsigned char)(a << 4 | b);
    }
    return h[64] == '\0';
}

static size_t hash_of(const unsigned char k[32], size_t cap)
{
    uint64_t v;
    memcpy(&v, k, sizeof(v)); /* a digest is uniformly distributed already */
    return (size_t)(v & (cap - 1));
}

/* The slot holding k, or (insert) where it would go: the first tombstone
 * on its probe path, else the empty slot that ends it. */
static struct slot *find(struct slot *slots, size_t cap, const unsigned char k[32], bool insert)
{
    struct slot *tomb = NULL;
    for (size_t i = hash_of(k, cap), n = 0; n < cap; i = (i + 1) & (cap - 1), n++) {
        struct slot *s = &slots[i];
        if (s->state == SLOT_EMPTY)
            return insert ? (tomb != NULL ? tomb : s) : NULL;
        if (memcmp(s->key, k, 32) == 0)
            return s;
        if (s->state == SLOT_GONE && tomb == NULL)
            tomb = s;
    }
    return insert ? tomb : NULL;
}

/* Rebuild into ncap slots, keeping live entries and, when keep_gone, the
 * tombstones (a reconciling walk still needs them). */
static int rehash(struct om_s3_objects *o, size_t ncap, bool keep_gone)
{
    struct slot *n = calloc(ncap, sizeof(*n)); /* replaces o->slots */
    if (n == NULL)
        return OM_ERR_NOMEM;
    size_t gone = 0;
    for (size_t i = 0; i < o->cap; i++) {
        struct slot *s = &o->slots[i];
        if (s->state == SLOT_LIVE || (keep_gone && s->state == SLOT_GONE)) {
            *find(n, ncap, s->key, true) = *s;
            gone += s->state == SLOT_GONE;
        }
    }
    free(o->slots);
    o->slots = n;
    o->cap = ncap;
    o->gone = gone;
    return OM_OK;
}

int om_s3_objects_new(struct om_s3_objects **out)
{
    struct om_s3_objects *o = calloc(1, sizeof(*o)); /* owned by the caller via *out */
    *out = NULL;
    if (o == NULL || (o->slots = calloc(INITIAL_CAP, sizeof(struct slot))) == NULL) {
        free(o);
        return OM_ERR_NOMEM;
    }
    o->cap = INITIAL_CAP;
    pthread_rwlock_init(&o->lock, NULL);
    *out = o;
    return OM_OK;
}

void om_s3_objects_free(struct om_s3_objects *o)
{
    if (o == NULL)
        return;
    pthread_rwlock_destroy(&o->lock);
    free(o->slots);
    free(o);
}

bool om_s3_objects_get(struct om_s3_objects *o, const om_digest *d, uint64_t *size,
                       int64_t *mtime_ms)
{
    unsigned char k[32];
    bool found = false;

    if (!raw_of(d, k))
        return false;
    pthread_rwlock_rdlock(&o->lock);
    const struct slot *s = find(o->slots, o->cap, k, false);
    if (s != NULL && s->state == SLOT_LIVE) {
        found = true;
        if (size != NULL)
            *size = s->size;
        if (mtime_ms != NULL)
            *mtime_ms = s->mtime_ms;
    }
    pthread_rwlock_unlock(&o->lock);
    return found;
}

/* Insert or update under the write lock; gen is the generation to stamp. */
static void put_locked(struct om_s3_objects *o, const unsigned char k[32], uint64_t size,
                       int64_t mtime_ms, uint32_t gen)
{
    if ((o->live + o->gone + 1) * 10 > o->cap * 7) {
        size_t kept = o->live + (o->walking != 0 ? o->gone : 0);
        (void)rehash(o, kept * 10 > o->cap * 5 ? o->cap * 2 : o->cap, o->walking != 0);
    }
    struct slot *s = find(o->slots, o->cap, k, true);
    if (s == NULL)
        return; /* full and could not grow: the object is simply not known (a miss) */
    if (s->state == SLOT_LIVE) {
        o->bytes -= s->size;
    } else {
        if (s->state == SLOT_GONE)
            o->gone--;
        o->live++;
    }
    memcpy(s->key, k, 32);
    s->state = SLOT_LIVE;
    s->size = size;
    s->mtime_ms = mtime_ms;
    s->gen = gen;
    o->bytes += size;
}

void om_s3_objects_put(struct om_s3_objects *o, const om_digest *d, uint64_t size,
                       int64_t mtime_ms)
{
    unsigned char k[32];
    if (!raw_of(d, k))
        return;
    pthread_rwlock_wrlock(&o->lock);
    put_locked(o, k, size, mtime_ms, o->gen);
    pthread_rwlock_unlock(&o->lock);
}

bool om_s3_objects_del(struct om_s3_objects *o, const om_digest *d, uint64_t *size)
{
    unsigned char k[32];
    bool found = false;

    if (!raw_of(d, k))
        return false;
    pthread_rwlock_wrlock(&o->lock);
    struct slot *s = find(o->slots, o->cap, k, false);
    if (s != NULL && s->state == SLOT_LIVE) {
        found = true;
        if (size != NULL)
            *size = s->size;
        o->bytes -= s->size;
        o->live--;
        o->gone++;
        s->state = SLOT_GONE;
        s->gen = o->gen; /* a walk running now must not bring it back */
    }
    pthread_rwlock_unlock(&o->lock);
    return found;
}

uint64_t om_s3_objects_bytes(struct om_s3_objects *o)
{
    pthread_rwlock_rdlock(&o->lock);
    uint64_t b = o->bytes;
    pthread_rwlock_unlock(&o->lock);
    return b;
}

uint64_t om_s3_objects_count(struct om_s3_objects *o)
{
    pthread_rwlock_rdlock(&o->lock);
    uint64_t n = o->live;
    pthread_rwlock_unlock(&o->lock);
    return n;
}

uint32_t om_s3_objects_walk_begin(struct om_s3_objects *o)
{
    uint32_t gen = 0;
    pthread_rwlock_wrlock(&o->lock);
    if (o->walking == 0) {
        gen = ++o->gen;
        if (gen == 0)
            gen = ++o->gen; /* 0 means "not reconciling" */
        o->walking = gen;
    }
    pthread_rwlock_unlock(&o->lock);
    return gen;
}

void om_s3_objects_seen(struct om_s3_objects *o, uint32_t gen, const om_digest *d,
                        uint64_t size, int64_t mtime_ms)
{
    unsigned char k[32];
    if (gen == 0 || !raw_of(d, k))
        return;
    pthread_rwlock_wrlock(&o->lock);
    struct slot *s = find(o->slots, o->cap, k, false);
    if (s != NULL && s->state == SLOT_GONE && s->gen == gen) {
        /* removed during this walk, after its page was listed */
    } else if (s != NULL && s->state == SLOT_LIVE && s->size == size) {
        s->gen = gen;
        if (mtime_ms >= 0)
            s->mtime_ms = mtime_ms;
    } else {
        put_locked(o, k, size, mtime_ms, gen);
    }
    pthread_rwlock_unlock(&o->lock);
}

void om_s3_objects_walk_end(struct om_s3_objects *o, uint32_t gen, bool complete)
{
    if (gen == 0)
        return;
    pthread_rwlock_wrlock(&o->lock);
    if (complete) {
        for (size_t i = 0; i < o->cap; i++) {
            struct slot *s = &o->slots[i];
            if (s->state == SLOT_LIVE && s->gen != gen) {
                o->bytes -= s->size;
                o->live--;
                o->gone++;
                s->state = SLOT_GONE;
            }
        }
    }
    o->walking = 0;
    (void)rehash(o, o->cap, false); /* drop the tombstones */
    pthread_rwlock_unlock(&o->lock);
}
