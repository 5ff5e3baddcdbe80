/* fetch_slots.c — who may download now (fetch_int.h).
 *
 * limits.max_downloads slots; one upstream holds at most
 * limits.max_downloads_per_upstream of them (by default 3/4 when there are
 * several upstreams), so an upstream that stalls, or a flood of requests
 * for one, never takes every slot.  A download waits for a slot on its own
 * thread; if every client leaves while it waits, it never starts.  A
 * download whose clients all left mid-transfer moves out of the slots and
 * finishes in the background (its bytes will be the retry's cache hit), at
 * most max_downloads of them; past that it keeps its slot.
 *
 * Lock order: t->mu, then f->mu (as everywhere in the table).
 */
#include "cache/fetch_int.h"

void om_fetch__unlink_locked(struct om_fetch_table *t, struct om_fetch *f)
{
    struct om_fetch **pp = &t->buckets[om_fetch__bucket_of(&f->digest)];
    while (*pp != NULL && *pp != f)
        pp = &(*pp)->next;
    if (*pp == f)
        *pp = f->next;
}

/* The download slots (limits.max_downloads), and how many of them one
 * upstream may hold (limits.max_downloads_per_upstream; by default 3/4 when
 * there are several upstreams): an upstream that stalls, or a flood of
 * requests for one, never takes every slot. */
static unsigned slots_max(const struct om_fetch_table *t)
{
    return t->cfg->limits.max_downloads ? t->cfg->limits.max_downloads : 64;
}

static unsigned slots_max_up(const struct om_fetch_table *t)
{
    unsigned max = slots_max(t), per = t->cfg->limits.max_downloads_per_upstream;
    if (per == 0)
        per = t->cfg->n_upstreams > 1 ? max - max / 4 : max;
    return per == 0 ? 1 : per > max ? max : per;
}

/* Nobody but the download thread holds f: no client reads it.  Caller
 * holds t->mu (f->refs is read under f->mu). */
static bool unwanted(struct om_fetch *f)
{
    pthread_mutex_lock(&f->mu);
    bool alone = f->refs <= 1;
    pthread_mutex_unlock(&f->mu);
    return alone;
}

/* Wait for a slot.  false: the clients left while the download waited (or
 * the table is cancelled) — it never starts. */
bool om_fetch__acquire_slot(struct om_fetch_table *t, struct om_fetch *f)
{
    unsigned max = slots_max(t), max_up = slots_max_up(t), u = f->up_index;
    bool ok = false;
    pthread_mutex_lock(&t->mu);
    t->waiting_up[u]++;
    while (!atomic_load(&t->cancel) && !unwanted(f) &&
           (t->active >= max || t->active_up[u] >= max_up))
        pthread_cond_wait(&t->slot, &t->mu);
    t->waiting_up[u]--;
    if (!atomic_load(&t->cancel) && !unwanted(f)) {
        t->active++;
        t->active_up[u]++;
        f->slot = SLOT_REGULAR;
        ok = true;
    } else {
        /* Out of the table in the same breath: a client arriving now
         * starts a fresh download instead of joining one that gives up. */
        om_fetch__unlink_locked(t, f);
        t->stats.abandoned++;
    }
    pthread_mutex_unlock(&t->mu);
    return ok;
}

void om_fetch__release_slot(struct om_fetch_table *t, struct om_fetch *f)
{
    pthread_mutex_lock(&t->mu);
    if (f->slot == SLOT_REGULAR) {
        t->active--;
        t->active_up[f->up_index]--;
        pthread_cond_broadcast(&t->slot);
    } else if (f->slot == SLOT_BACKGROUND) {
        t->background--;
    }
    f->slot = SLOT_NONE;
    pthread_mutex_unlock(&t->mu);
}

/* A download whose clients all left (hung up) finishes in the background:
 * its bytes will be a cache hit for the retry, but it no longer holds a
 * slot that a waiting client's download needs.  At most max_downloads run
 * in the background; past that it keeps its slot. */
void om_fetch__yield_if_unwanted(struct om_fetch *f)
{
    struct om_fetch_table *t = f->t;
    pthread_mutex_lock(&t->mu);
    if (f->slot == SLOT_REGULAR && t->background < slots_max(t) && unwanted(f)) {
        t->active--;
        t->active_up[f->up_index]--;
        t->background++;
        t->stats.backgrounded++;
        f->slot = SLOT_BACKGROUND;
        pthread_cond_broadcast(&t->slot);
    }
    pthread_mutex_unlock(&t->mu);
}

void om_fetch_stats_get(struct om_fetch_table *t, struct om_fetch_stats *out)
{
    pthread_mutex_lock(&t->mu);
    *out = t->stats;
    out->active = t->active;
    out->background = t->background;
    pthread_mutex_unlock(&t->mu);
}

void om_fetch_upstream_slots(struct om_fetch_table *t, size_t i, unsigned *active,
                             unsigned *waiting, unsigned *max)
{
    *active = *waiting = 0;
    *max = slots_max_up(t);
    if (i >= OM_MAX_UPSTREAMS)
        return;
    pthread_mutex_lock(&t->mu);
    *active = t->active_up[i];
    *waiting = t->waiting_up[i];
    pthread_mutex_unlock(&t->mu);
}

