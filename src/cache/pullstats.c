/* pullstats.c — see pullstats.h.  Two open-addressing tables of notes
 * keyed by (repo, tag, digest): flushing swaps the filling one for the
 * empty spare under the mutex and writes the full one outside it, so
 * serving never waits on SQLite; a flush with nothing pending costs two
 * mutexes. */
#include "cache/pullstats.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS 4096          /* power of two */
#define MAX_FILL (SLOTS / 2)

struct table {
    struct om_pull_note *notes; /* SLOTS entries, owned */
    bool used[SLOTS];
    size_t n;
};

struct om_pullstats {
    struct om_index *ix;
    struct om_store *st;
    uint64_t interval_ms;
    pthread_mutex_t mu;         /* guards cur, stopping */
    pthread_cond_t cond;
    pthread_mutex_t flush_mu;   /* one flush at a time */
    struct table *cur;
    struct table *spare;        /* the other table, empty; guarded by flush_mu */
    bool stopping;
    pthread_t thread;
    bool thread_started;
};

static struct table *table_new(void)
{
    struct table *t = calloc(1, sizeof(*t));
    if (t != NULL && (t->notes = calloc(SLOTS, sizeof(*t->notes))) == NULL) {
        free(t);
        t = NULL;
    }
    return t;
}

static void table_free(struct table *t)
{
    if (t != NULL)
        free(t->notes);
    free(t);
}

static uint32_t hash_of(const char *repo, const char *tag, const om_digest *d)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = repo; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ '\n') * 16777619u;
    for (const char *p = tag; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    const char *hex = om_digest_hex(d);
    for (int i = 0; i < 16; i++)
        h = (h ^ (unsigned char)hex[i]) * 16777619u;
    return h;
}

/* Write one table, adopt what was committed but never indexed. */
static void write_table(struct om_pullstats *ps, struct table *t)
{
    if (t->n == 0)
        return;
    size_t k = 0;
    for (size_t i = 0; i < SLOTS; i++)
        if (t->used[i])
            t->notes[k++] = t->notes[i];
    /* An index that cannot take them (a shared one, unreachable) costs
     * these statistics — last access, pull counts — never content; and
     * nothing is adopted from answers that never came. */
    if (om_index_note_pulls(ps->ix, t->notes, k) != OM_OK)
        return;
    for (size_t i = 0; i < k; i++) {
        const struct om_pull_note *pn = &t->notes[i];
        uint64_t size = 0;
        if (!pn->found && pn->tag[0] == '\0' && pn->repo[0] != '\0' &&
            om_store_has(ps->st, &pn->digest, &size))
            om_index_blob_put(ps->ix, pn->repo, &pn->digest, size, pn->t_ms);
    }
}

void om_pullstats_flush(struct om_pullstats *ps)
{
    pthread_mutex_lock(&ps->flush_mu);
    pthread_mutex_lock(&ps->mu);
    struct table *old = ps->cur;
    if (old->n > 0) {
        ps->cur = ps->spare;
        ps->spare = NULL;
    }
    pthread_mutex_unlock(&ps->mu);
    if (ps->spare == NULL) {
        write_table(ps, old);
        memset(old->used, 0, sizeof(old->used));
        old->n = 0;
        ps->spare = old;
    }
    pthread_mutex_unlock(&ps->flush_mu);
}

void om_pullstats_note(struct om_pullstats *ps, const char *repo, const char *tag,
                       const om_digest *d, int64_t now_ms)
{
    if (ps == NULL)
        return;
    if (repo == NULL)
        repo = "";
    if (tag == NULL)
        tag = "";
    if (strlen(repo) > OM_NAME_MAX || strlen(tag) > OM_TAG_MAX)
        return;
    uint32_t h = hash_of(repo, tag, d);
    bool full = false;
    pthread_mutex_lock(&ps->mu);
    struct table *t = ps->cur;
    for (uint32_t probe = 0; probe < SLOTS; probe++) {
        size_t i = (h + probe) & (SLOTS - 1);
        struct om_pull_note *pn = &t->notes[i];
        if (!t->used[i]) {
            t->used[i] = true;
            t->n++;
            snprintf(pn->repo, sizeof(pn->repo), "%s", repo);
            snprintf(pn->tag, sizeof(pn->tag), "%s", tag);
            pn->digest = *d;
            pn->t_ms = now_ms;
            pn->count = 1;
            full = t->n >= MAX_FILL;
            break;
        }
        if (strcmp(pn->digest.str, d->str) == 0 && strcmp(pn->tag, tag) == 0 &&
            strcmp(pn->repo, repo) == 0) {
            pn->count++;
            if (now_ms > pn->t_ms)
                pn->t_ms = now_ms;
            break;
        }
    }
    pthread_mutex_unlock(&ps->mu);
    if (full)
        om_pullstats_flush(ps);
}

static void *flusher(void *arg)
{
    struct om_pullstats *ps = arg;
    pthread_mutex_lock(&ps->mu);
    while (!ps->stopping) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += (time_t)(ps->interval_ms / 1000);
        dl.tv_nsec += (long)(ps->interval_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ps->cond, &ps->mu, &dl);
        pthread_mutex_unlock(&ps->mu);
        om_pullstats_flush(ps);
        pthread_mutex_lock(&ps->mu);
    }
    pthread_mutex_unlock(&ps->mu);
    return NULL;
}

int om_pullstats_start(struct om_pullstats **out, struct om_index *ix, struct om_store *st,
                       uint64_t interval_ms)
{
    struct om_pullstats *ps = calloc(1, sizeof(*ps));
    if (ps == NULL || (ps->cur = table_new()) == NULL || (ps->spare = table_new()) == NULL) {
        if (ps != NULL)
            table_free(ps->cur);
        free(ps);
        return OM_ERR_NOMEM;
    }
    ps->ix = ix;
    ps->st = st;
    ps->interval_ms = interval_ms ? interval_ms : 2000;
    pthread_mutex_init(&ps->mu, NULL);
    pthread_mutex_init(&ps->flush_mu, NULL);
    pthread_cond_init(&ps->cond, NULL);
    if (pthread_create(&ps->thread, NULL, flusher, ps) != 0) {
        om_pullstats_stop(ps);
        return OM_ERR_NOMEM;
    }
    ps->thread_started = true;
    *out = ps;
    return OM_OK;
}

void om_pullstats_stop(struct om_pullstats *ps)
{
    if (ps == NULL)
        return;
    pthread_mutex_lock(&ps->mu);
    ps->stopping = true;
    pthread_cond_signal(&ps->cond);
    pthread_mutex_unlock(&ps->mu);
    if (ps->thread_started)
        pthread_join(ps->thread, NULL);
    om_pullstats_flush(ps);
    table_free(ps->cur);
    table_free(ps->spare);
    pthread_mutex_destroy(&ps->mu);
    pthread_mutex_destroy(&ps->flush_mu);
    pthread_cond_destroy(&ps->cond);
    free(ps);
}
