/* v2_blob_flight.c — one upstream round for any number of clients asking
 * for the same blob that is not (or not rightly) in the cache, and a brief
 * memory of what the upstream answered.  The blob endpoint (v2_blob.c)
 * sends here every request its hit path cannot answer.
 *
 * A flight is keyed by (HEAD or GET, requested name, ns, digest).  The
 * first request starts it: a job that runs om_v2_blob_work for that
 * request — find the blob upstream (HEAD probes in search order) and, for a
 * GET, start or join its download and wait for the upstream's first answer
 * — and then builds the response of every request that joined meanwhile
 * (om_v2_blob_answer).  Waiters are suspended connections linked through
 * req->flight_next, not threads: fifty clients cost one job.  HEADs and GETs
 * fly apart because their work differs (a HEAD never starts a download:
 * a client that only asks whether a layer exists must not cost the
 * upstream its bytes); GETs share the download itself through the fetch
 * table (cache/fetch.c), whatever flight they came by.
 *
 * Why not only the fetch table: it knows one digest and one upstream, and
 * starts a GET.  A HEAD wants no download, and finding the upstream of a
 * name in search order (the HEAD probes, the tag-list probe of an unsure
 * 404) comes before any download — and is what fifty concurrent requests
 * repeated fifty times, each with the upstream client's retries.
 *
 * The memory (om_blob_memo_*): what a flight learnt of (canonical
 * repository, digest) — there with its size, not there, or the upstream
 * failing — is written BEFORE the flight leaves the table, under the same
 * mutex, so a request that comes too late to join a flight finds its
 * answer in memory: a missing blob asked for by a crowd costs one upstream
 * request per negative_ttl, a failing upstream one round of retries per
 * OM_BLOB_ERROR_TTL_MS.  A 404 or 401 is an answer and never retried (the
 * upstream client retries only 5xx, 429 and transport errors).
 *
 * Bounds: the flights are the requests in progress (each at most one key);
 * the memory is OM_BLOB_MEMO_SLOTS fixed slots.  Lifetime: jobs always run
 * (the pool drains its queue when it stops), so a flight always ends and
 * answers its waiters; a flight whose job cannot be queued ends at once
 * with 503.
 */
#include "v2/v2_blob.h"
#include "v2/v2.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define FLIGHT_BUCKETS 64
#define FLIGHT_KEY_MAX (2 + OM_NAME_MAX + 1 + 256 + 1 + OM_DIGEST_MAX + 1)
#define MEMO_PROBE 8              /* slots looked at from a key's home slot */

struct blob_flight {
    struct blob_flight *next;     /* bucket chain */
    struct om_server *srv;
    char key[FLIGHT_KEY_MAX];
    struct om_req *waiters;       /* the leader last; linked by flight_next */
};

struct memo_slot {
    char canonical[OM_NAME_MAX + 1];
    om_digest d;
    int64_t until_ms;             /* 0: empty */
    struct om_blob_memo m;
};

struct om_blob_flights {
    pthread_mutex_t mu;           /* guards everything below */
    struct blob_flight *buckets[FLIGHT_BUCKETS];
    struct memo_slot *memo;       /* owned; OM_BLOB_MEMO_SLOTS */
};

static uint32_t fnv(const char *a, const char *b)
{
    uint32_t h = 2166136261u;
    for (const char *p = a; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ '\n') * 16777619u;
    for (const char *p = b; p != NULL && *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

int om_blob_flights_new(struct om_blob_flights **out)
{
    struct om_blob_flights *t = calloc(1, sizeof(*t)); /* owned by the caller via *out */
    if (t == NULL)
        return OM_ERR_NOMEM;
    t->memo = calloc(OM_BLOB_MEMO_SLOTS, sizeof(*t->memo)); /* freed with t */
    if (t->memo == NULL) {
        free(t);
        return OM_ERR_NOMEM;
    }
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return OM_OK;
}

void om_blob_flights_free(struct om_blob_flights *t)
{
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t->memo);
    free(t);
}

/* ---- the memory ---------------------------------------------------------- */

/* The slot holding (canonical, d), or NULL.  Caller holds t->mu. */
static struct memo_slot *memo_find(struct om_blob_flights *t, const char *canonical,
                                   const om_digest *d, uint32_t h)
{
    for (size_t i = 0; i < MEMO_PROBE; i++) {
        struct memo_slot *s = &t->memo[(h + i) % OM_BLOB_MEMO_SLOTS];
        if (s->until_ms != 0 && strcmp(s->d.str, d->str) == 0 &&
            strcmp(s->canonical, canonical) == 0)
            return s;
    }
    return NULL;
}

bool om_blob_memo_get(struct om_server *srv, const char *canonical, const om_digest *d,
                      struct om_blob_memo *out)
{
    struct om_blob_flights *t = srv->blob_flights;
    bool hit = false;
    uint32_t h = fnv(canonical, d->str);
    int64_t now = om_now_ms();

    pthread_mutex_lock(&t->mu);
    struct memo_slot *s = memo_find(t, canonical, d, h);
    if (s != NULL && now >= s->until_ms) {
        s->until_ms = 0; /* expired */
    } else if (s != NULL) {
        *out = s->m;
        hit = true;
    }
    pthread_mutex_unlock(&t->mu);
    return hit;
}

void om_blob_memo_put(struct om_server *srv, const char *canonical, const om_digest *d,
                      const struct om_blob_memo *m)
{
    struct om_blob_flights *t = srv->blob_flights;
    uint64_t ttl = srv->cfg->negative_ttl_ms;
    if (m->status != 200 && m->status != 404 && ttl > OM_BLOB_ERROR_TTL_MS)
        ttl = OM_BLOB_ERROR_TTL_MS;
    if (ttl == 0 || strlen(canonical) > OM_NAME_MAX)
        return; /* negative_ttl 0: remember nothing */
    uint32_t h = fnv(canonical, d->str);
    int64_t now = om_now_ms();

    pthread_mutex_lock(&t->mu);
    struct memo_slot *s = memo_find(t, canonical, d, h);
    for (size_t i = 0; s == NULL && i < MEMO_PROBE; i++) {
        /* An empty or expired slot, else the one that expires first. */
        struct memo_slot *c = &t->memo[(h + i) % OM_BLOB_MEMO_SLOTS];
        if (c->until_ms <= now)
            s = c;
    }
    for (size_t i = 0; s == NULL && i < MEMO_PROBE; i++) {
        struct memo_slot *c = &t->memo[(h + i) % OM_BLOB_MEMO_SLOTS];
        if (s == NULL || c->until_ms < s->until_ms)
            s = c;
    }
    snprintf(s->canonical, sizeof(s->canonical), "%s", canonical);
    s->d = *d;
    s->m = *m;
    s->until_ms = now + (int64_t)ttl;
    pthread_mutex_unlock(&t->mu);
}

/* ---- flights ------------------------------------------------------------- */

static void flight_key(const struct om_req *req, char *out, size_t outsz)
{
    snprintf(out, outsz, "%c\n%s\n%s\n%s", req->head ? 'H' : 'G', req->p.name, req->ns,
             req->p.ref.digest.str);
}

/* Unlink fl (no one joins any more), answer every waiter, free fl. */
static void finish(struct blob_flight *fl, struct om_blob_answer *a, struct om_req *leader)
{
    struct om_blob_flights *t = fl->srv->blob_flights;
    pthread_mutex_lock(&t->mu);
    struct blob_flight **pp = &t->buckets[fnv(fl->key, NULL) % FLIGHT_BUCKETS];
    while (*pp != NULL && *pp != fl)
        pp = &(*pp)->next;
    if (*pp == fl)
        *pp = fl->next;
    struct om_req *w = fl->waiters;
    fl->waiters = NULL;
    pthread_mutex_unlock(&t->mu);

    while (w != NULL) {
        struct om_req *next = w->flight_next;
        w->flight_next = NULL;
        om_v2_blob_answer(w, leader, a);
        om_req_job_done(w);
        w = next;
    }
    free(fl);
}

static void flight_job(void *arg)
{
    struct blob_flight *fl = arg;
    struct om_req *leader = fl->waiters; /* the list's tail; only this job pops it */
    while (leader->flight_next != NULL)
        leader = leader->flight_next;
    struct om_blob_answer a = {0};
    om_v2_blob_work(leader, &a);
    finish(fl, &a, leader);
    om_fetch_release(a.f); /* a reference no waiter took over */
}

enum MHD_Result om_blob_flight_join(struct om_req *req)
{
    req->phase = 1;
    MHD_suspend_connection(req->conn);
    om_blob_flight_enter(req);
    return MHD_YES;
}

void om_blob_flight_enter(struct om_req *req)
{
    struct om_server *srv = req->srv;
    struct om_blob_flights *t = srv->blob_flights;
    char key[FLIGHT_KEY_MAX];
    flight_key(req, key, sizeof(key));
    struct blob_flight **bucket = &t->buckets[fnv(key, NULL) % FLIGHT_BUCKETS];

    pthread_mutex_lock(&t->mu);
    struct blob_flight *fl = *bucket;
    while (fl != NULL && strcmp(fl->key, key) != 0)
        fl = fl->next;
    if (fl != NULL) {
        /* Join: at the head; the leader stays at the tail. */
        req->flight_next = fl->waiters;
        fl->waiters = req;
        pthread_mutex_unlock(&t->mu);
        return;
    }
    fl = calloc(1, sizeof(*fl)); /* freed by finish() */
    if (fl == NULL) {
        pthread_mutex_unlock(&t->mu);
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        om_req_job_done(req);
        return;
    }
    fl->srv = srv;
    snprintf(fl->key, sizeof(fl->key), "%s", key);
    fl->waiters = req;
    fl->next = *bucket;
    *bucket = fl;
    pthread_mutex_unlock(&t->mu);

    if (om_jobs_submit_lane(srv->jobs, om_v2_lane(req), flight_job, fl) != OM_OK) {
        struct om_blob_answer a = {.status = MHD_HTTP_SERVICE_UNAVAILABLE, .code = "UNAVAILABLE"};
        snprintf(a.message, sizeof(a.message), "mirror overloaded");
        finish(fl, &a, req);
    }
}
