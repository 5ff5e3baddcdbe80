/* v2_tags.c — GET/HEAD /v2/<name>/tags/list.
 *
 * The list comes from the upstream (the mirror holds only the tags it was
 * asked for), every page of it (Link rel="next", kept on the list by
 * om_link_next), and is sorted and de-duplicated here: upstreams differ
 * (distribution 2.8 answers in directory order and ignores n and last).
 * Clients page through it with n and last; the Link header points at the
 * mirror.
 *
 * Memory does not grow with the list beyond the list itself: each upstream
 * page's JSON tree lives only while its tags are copied into a compact
 * struct om_taglist (v2/taglist.h: tag length + 5 bytes a tag) and is freed
 * at once; the only JSON built from the list is the page a client gets (at
 * most OM_V2_PAGE_MAX tags).  After a fetch that parsed a lot of JSON the
 * job gives the freed heap back (malloc_trim): glibc would otherwise keep
 * the peak of every big list mapped, on each job thread's arena.
 *
 * One fetch for many clients: the requests for one (name, ns) share one
 * upstream fetch — the first starts a job (the list's "flight", like the
 * manifest flights of v2_manifest.c), the others join it and every waiter
 * is answered, each its own page, when it lands.  The list then stays in
 * memory (struct om_tagcache: LRU, TAGCACHE_BYTES or enough for one list of
 * limits.max_tags, whichever is more) and is served from there on the HTTP
 * thread for tag_ttl: paging through a long list costs one upstream fetch,
 * not one per page.  A tag pushed upstream shows up within tag_ttl.
 *
 * Limits, for a lying or enormous upstream: at most limits.max_tags tags,
 * at most TAG_JSON_PER_TAG bytes of JSON a tag over all pages, at most
 * TAG_PAGES_MAX pages, and a next link may not point at the page it came
 * from.  Past limits.max_tags (or the bytes or pages that go with it) the
 * answer is 502 UNSUPPORTED with a message naming the limit — a truncated
 * list would look complete to a client that never reads a header — and
 * that answer is cached like a list, so that retrying clients do not make
 * the mirror download the whole list again.  Strings that are not tags are
 * dropped (and logged).
 *
 * The upstream down (unreachable, 5xx, 429, an answer that is not a tag
 * list, a page failing midway — a partial list is never served as the
 * list): the last list fetched for the request, however old, while it is
 * still in memory; else the tags the index holds for the repository; both
 * with a Warning header.  Else 503 UNAVAILABLE naming the upstream's answer.
 */
#include "v2/v2.h"

#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "http/req_limits.h"
#include "v2/taglist.h"

#define TAG_PAGES_MAX 10000
#define TAG_JSON_PER_TAG (OM_TAG_MAX + 16) /* a tag, its quotes, a comma, indentation */
#define TAG_JSON_SLACK (64u * 1024)        /* the rest of each page's JSON */
#define TAGCACHE_BYTES (32u << 20)
#define TAGCACHE_ENTRIES 4096
#define TRIM_AFTER (1u << 20)             /* bytes of upstream JSON */
#define STALE_WARNING "110 - \"Response is Stale\""
#define KEY_MAX (OM_NAME_MAX + sizeof(((struct om_req *)0)->ns) + 2)

struct tag_flight {
    struct tag_flight *next;
    char key[KEY_MAX];
    struct om_req *waiters;        /* leader at the tail; linked by flight_next */
};

struct om_tags {
    pthread_mutex_t mu;            /* guards flights; taken before the cache's own */
    struct tag_flight *flights;
    struct om_tagcache *cache;
};

/* What a flight found, for every waiter. */
typedef enum { TR_LIST, TR_REFUSED, TR_ABSENT, TR_UNAVAILABLE } tr_kind;

struct tresult {
    tr_kind kind;
    struct om_taglist *list;       /* TR_LIST: one reference, owned */
    bool stale;                    /* TR_LIST: an older list (the upstream failed) */
    om_cache_result cache;         /* for the leader's log line */
    char message[256];             /* TR_REFUSED, TR_UNAVAILABLE */
    char canonical[OM_NAME_MAX + 1];
    char upstream[64];
    size_t json_bytes;             /* of upstream JSON parsed on the way */
};

int om_v2_tags_new(struct om_tags **out, const struct om_config *cfg)
{
    int err = OM_OK;
    struct om_tags *t = calloc(1, sizeof(*t));
    *out = NULL;
    if (t == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    /* Room for the largest list the limit allows, always. */
    size_t bytes = TAGCACHE_BYTES;
    size_t biggest = (size_t)cfg->limits.max_tags * (OM_TAG_MAX + 1 + sizeof(uint32_t)) + 4096;
    if (biggest > bytes)
        bytes = biggest;
    if ((err = om_tagcache_new(&t->cache, bytes, TAGCACHE_ENTRIES)) != OM_OK) {
        free(t);
        goto done;
    }
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
done:
    return err;
}

void om_v2_tags_free(struct om_tags *t)
{
    if (t == NULL)
        return;
    /* The job pool ran every job before this: no flight is left, and no
     * request still waits on one. */
    while (t->flights != NULL) {
        struct tag_flight *next = t->flights->next;
        free(t->flights);
        t->flights = next;
    }
    om_tagcache_free(t->cache);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static void tags_key(const struct om_req *req, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s\n%s", req->p.name, req->ns);
}

/* ---- answering ------------------------------------------------------- */

/* req->resp = one page of l (borrowed) for req's n and last. */
static void respond_page(struct om_req *req, const struct om_taglist *l, bool stale)
{
    long n;
    char last[OM_TAG_MAX + 1];
    json_t *tags = NULL, *doc = NULL;
    size_t want = 0, cnt = om_taglist_count(l), from = 0, to = 0;
    if (!om_v2_paging_args(req, &n, last, sizeof(last))) {
        om_req_error(req, MHD_HTTP_BAD_REQUEST, "PAGINATION_NUMBER_INVALID", "invalid n or last");
        goto done;
    }
    want = n < 0 ? OM_V2_PAGE_MAX : (size_t)n;
    from = om_taglist_after(l, last);
    to = cnt - from > want ? from + want : cnt;
    if ((tags = json_array()) == NULL)
        goto done;
    for (size_t i = from; i < to; i++) {
        /* Only valid tags are in a list: ASCII, nothing to check. */
        if (json_array_append_new(tags, json_string_nocheck(om_taglist_at(l, i))) != 0) {
            json_decref(tags);
            tags = NULL;
            goto done;
        }
    }
    doc = json_pack("{s:s, s:o}", "name", req->p.name, "tags", tags);
    tags = NULL; /* "o" took it, also on failure */
done:
    if (req->resp == NULL) {
        om_v2_respond_json(req, doc, "application/json");
        if (req->status == MHD_HTTP_OK && to < cnt && to > from)
            om_v2_next_link(req, req->resp, "tags/list", (long)want, om_taglist_at(l, to - 1));
        if (req->status == MHD_HTTP_OK && stale)
            MHD_add_response_header(req->resp, "Warning", STALE_WARNING);
    }
    json_decref(doc);
}

/* req->resp = the answer a cached entry or a finished flight (res,
 * borrowed) gives one request. */
static void respond_result(struct om_req *req, const struct tresult *res)
{
    snprintf(req->canonical, sizeof(req->canonical), "%s", res->canonical);
    snprintf(req->upstream, sizeof(req->upstream), "%s", res->upstream);
    switch (res->kind) {
    case TR_LIST:
        respond_page(req, res->list, res->stale);
        break;
    case TR_REFUSED:
        om_req_error(req, MHD_HTTP_BAD_GATEWAY, "UNSUPPORTED", res->message);
        break;
    case TR_ABSENT:
        om_req_error(req, MHD_HTTP_NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry");
        break;
    case TR_UNAVAILABLE:
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                     res->message[0] ? res->message : "upstream unavailable");
        break;
    }
}

/* ---- fetching -------------------------------------------------------- */

typedef enum { FETCH_OK, FETCH_ABSENT, FETCH_OVER, FETCH_UNAVAILABLE } fetch_outcome;

/* Copy the tags of one page (body: borrowed) into b, freeing the page's
 * JSON tree before returning; FETCH_OK, FETCH_OVER (b is full), or
 * FETCH_UNAVAILABLE (not a tag list, out of memory) with msg set. */
static fetch_outcome add_page(struct om_taglist_builder *b, const char *body, size_t len,
                              const char *upname, char *msg, size_t msgsz)
{
    fetch_outcome out = FETCH_OK;
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, 0, &jerr);
    json_t *tags = json_object_get(doc, "tags");
    size_t i;
    json_t *v;
    if (!json_is_array(tags) && !json_is_null(tags)) {
        snprintf(msg, msgsz, "upstream %s sent a tag list that is not JSON with a tags array",
                 upname);
        out = FETCH_UNAVAILABLE;
        goto done;
    }
    json_array_foreach(tags, i, v) {
        int err = OM_ERR_INVALID;
        if (json_is_string(v))
            err = om_taglist_builder_add(b, json_string_value(v), json_string_length(v));
        else
            b->skipped++;
        if (err == OM_ERR_TOOBIG) {
            out = FETCH_OVER;
            goto done;
        }
        if (err == OM_ERR_NOMEM) {
            snprintf(msg, msgsz, "out of memory reading the tag list");
            out = FETCH_UNAVAILABLE;
            goto done;
        }
    }
done:
    json_decref(doc);
    return out;
}

/* The whole tag list of candidate c into b (every page, within the
 * limits; b stays the caller's, filled or partly filled); *json_bytes grows
 * by the JSON read.  FETCH_ABSENT: the first page is 401/403/404; msg set
 * for FETCH_OVER and FETCH_UNAVAILABLE. */
static fetch_outcome fetch_list(struct om_req *req, const struct om_route_candidate *c,
                                struct om_taglist_builder *b, size_t *json_bytes, char *msg,
                                size_t msgsz)
{
    struct om_server *srv = req->srv;
    const char *upname = srv->cfg->upstreams[c->upstream].name;
    unsigned max_tags = srv->cfg->limits.max_tags;
    size_t budget = (size_t)max_tags * TAG_JSON_PER_TAG + TAG_JSON_SLACK;
    size_t bytes = 0;
    char base[OM_NAME_MAX + 32], path[2048], next[2048];
    fetch_outcome out = FETCH_UNAVAILABLE;
    snprintf(base, sizeof(base), "/v2/%s/tags/list", c->remote);
    snprintf(path, sizeof(path), "%s", base);
    for (int page = 0;; page++) {
        out = FETCH_UNAVAILABLE; /* unless this page says otherwise */
        if (page == TAG_PAGES_MAX) {
            snprintf(msg, msgsz, "the tag list of %s goes on for more than %d pages upstream",
                     c->canonical, TAG_PAGES_MAX);
            out = FETCH_OVER;
            break;
        }
        if (bytes >= budget) { /* max_body 0 would mean the default */
            out = FETCH_OVER;
            break;
        }
        struct om_up_req ur = {.method = "GET", .path = path, .accept = "application/json",
                               .scope_repo = c->remote, .max_body = budget - bytes,
                               .cancel = &srv->cancel};
        struct om_up_resp resp;
        int err = om_upstream_do(srv->up[c->upstream], &ur, &resp);
        if (err == OM_ERR_TOOBIG && !resp.headers_bad && !resp.auth_failed) {
            snprintf(msg, msgsz, "the tag list of %s is more JSON than limits.max_tags (%u) tags "
                     "make (%zu bytes)", c->canonical, max_tags, budget);
            out = FETCH_OVER;
        } else if (err != OM_OK) {
            snprintf(msg, msgsz, "upstream %s: %s", upname,
                     resp.error[0] ? resp.error : om_strerror(err));
        } else if (resp.status != 200) {
            if (page == 0 && (resp.status == 401 || resp.status == 403 || resp.status == 404))
                out = FETCH_ABSENT;
            else
                snprintf(msg, msgsz, "upstream %s answered %ld%s", upname, resp.status,
                         page > 0 ? " for a later page of the tag list" : "");
        } else {
            bytes += resp.body_len;
            out = add_page(b, resp.body, resp.body_len, upname, msg, msgsz);
            int lerr = out == FETCH_OK ? om_link_next(next, sizeof(next), resp.link, base)
                                   : OM_ERR_INVALID;
            if (lerr == OM_ERR_TOOBIG) {
                snprintf(msg, msgsz, "upstream %s sent a next link too long to follow", upname);
                out = FETCH_UNAVAILABLE;
            } else if (lerr == OM_OK) {
                if (strcmp(next, path) == 0) {
                    snprintf(msg, msgsz, "upstream %s sent a tag list page whose next page is "
                             "itself", upname);
                    out = FETCH_UNAVAILABLE;
                } else {
                    snprintf(path, sizeof(path), "%s", next);
                    om_up_resp_clear(&resp);
                    continue;
                }
            }
        }
        om_up_resp_clear(&resp);
        break;
    }
    *json_bytes += bytes;
    if (out == FETCH_OVER && msg[0] == '\0')
        snprintf(msg, msgsz, "the tag list of %s has more than limits.max_tags (%u) tags",
                 c->canonical, max_tags);
    return out;
}

static int add_cached(void *ud, const char *s)
{
    return om_taglist_builder_add(ud, s, strlen(s)) == OM_ERR_NOMEM ? 1 : 0;
}

/* The upstream of c failed: an older list for this request, if any (the
 * memory cache's, else the index's tags of c's repository), into res
 * (res->list: a reference res owns). */
static bool stale_list(struct om_req *req, const char *key, const struct om_route_candidate *c,
                       struct tresult *res)
{
    struct om_server *srv = req->srv;
    struct om_tagcache_val v;
    struct om_taglist_builder b;
    bool found = false;
    om_taglist_builder_init(&b, srv->cfg->limits.max_tags);
    if (om_tagcache_get(srv->tags->cache, key, &v) && v.list != NULL &&
        strcmp(v.canonical, c->canonical) == 0) {
        res->list = v.list;
        v.list = NULL;
        snprintf(res->upstream, sizeof(res->upstream), "%s", v.upstream);
        found = true;
    } else if (om_index_tags_list(srv->index, c->canonical, NULL, srv->cfg->limits.max_tags,
                                  add_cached, &b) == OM_OK &&
               b.n > 0 && om_taglist_build(&res->list, &b) == OM_OK) {
        snprintf(res->upstream, sizeof(res->upstream), "%s", srv->cfg->upstreams[c->upstream].name);
        found = true;
    }
    if (found) {
        res->kind = TR_LIST;
        res->stale = true;
        res->cache = OM_CACHE_STALE;
        snprintf(res->canonical, sizeof(res->canonical), "%s", c->canonical);
    }
    om_tagcache_val_clear(&v);
    om_taglist_builder_clear(&b);
    return found;
}

/* Find the list for the flight's leader (key: the flight's), each
 * candidate in turn; res filled (res->list, when set, owned by res). */
static void resolve(struct om_req *req, const char *key, struct tresult *res)
{
    struct om_server *srv = req->srv;
    size_t order[OM_MAX_UPSTREAMS];
    bool decided = false;
    size_t cnt = om_v2_candidates(req, order, &decided);
    bool unavailable = false;
    char msg[256] = "";
    res->kind = TR_ABSENT;
    for (size_t k = 0; k < cnt; k++) {
        const struct om_route_candidate *c = &req->route.c[order[k]];
        const char *upname = srv->cfg->upstreams[c->upstream].name;
        struct om_taglist_builder b;
        om_taglist_builder_init(&b, srv->cfg->limits.max_tags);
        char m[256] = "";
        fetch_outcome out = fetch_list(req, c, &b, &res->json_bytes, m, sizeof(m));
        if (b.skipped > 0) {
            char nskip[32];
            snprintf(nskip, sizeof(nskip), "%zu", b.skipped);
            om_log_kv(OM_LOG_WARN, "upstream tag list holds strings that are not tags; dropped",
                      "repo", c->canonical, "upstream", upname, "dropped", nskip, NULL);
        }
        if (out == FETCH_OK && om_taglist_build(&res->list, &b) != OM_OK) {
            snprintf(m, sizeof(m), "out of memory reading the tag list");
            out = FETCH_UNAVAILABLE;
        }
        om_taglist_builder_clear(&b);
        if (out == FETCH_OK || out == FETCH_OVER) {
            res->kind = out == FETCH_OK ? TR_LIST : TR_REFUSED;
            res->cache = OM_CACHE_MISS;
            snprintf(res->message, sizeof(res->message), "%s", m);
            snprintf(res->canonical, sizeof(res->canonical), "%s", c->canonical);
            snprintf(res->upstream, sizeof(res->upstream), "%s", upname);
            om_v2_note_probe(req, order[k], true, decided || unavailable);
            if (out == FETCH_OVER)
                om_log_kv(OM_LOG_WARN, "tag list refused", "repo", c->canonical, "why", m, NULL);
            goto done;
        }
        if (out == FETCH_ABSENT) {
            om_v2_note_probe(req, order[k], false, decided);
        } else {
            if (!unavailable) {
                snprintf(msg, sizeof(msg), "%s", m);
                snprintf(res->canonical, sizeof(res->canonical), "%s", c->canonical);
                snprintf(res->upstream, sizeof(res->upstream), "%s", upname);
            }
            unavailable = true;
            if (stale_list(req, key, c, res)) {
                om_log_kv(OM_LOG_WARN, "tag list served stale", "repo", c->canonical, "why", m,
                          NULL);
                goto done;
            }
        }
        if (decided)
            break;
    }
    if (unavailable) {
        res->kind = TR_UNAVAILABLE;
        snprintf(res->message, sizeof(res->message), "%s", msg);
    }
done:
    return;
}

/* ---- flights --------------------------------------------------------- */

/* End flight fl (consumed: unlinked and freed): answer every waiter from
 * res (borrowed) and resume it. */
static void finish_flight(struct om_server *srv, struct tag_flight *fl, const struct tresult *res,
                          struct om_req *leader)
{
    struct om_tags *t = srv->tags;
    pthread_mutex_lock(&t->mu);
    struct tag_flight **pp = &t->flights;
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
        respond_result(w, res);
        w->cache = w == leader ? res->cache : res->stale ? OM_CACHE_STALE : OM_CACHE_COALESCED;
        om_req_job_done(w);
        w = next;
    }
    free(fl);
}

/* The job of a flight (arg: the struct tag_flight, consumed). */
static void tags_job(void *arg)
{
    struct tag_flight *fl = arg;
    struct om_req *leader = fl->waiters; /* the leader is the list's tail */
    while (leader->flight_next != NULL)
        leader = leader->flight_next;
    struct om_server *srv = leader->srv;
    struct tresult res = {0};
    resolve(leader, fl->key, &res);
    /* Into the cache before the flight ends: a request arriving in between
     * finds either the flight or the list. */
    if ((res.kind == TR_LIST && !res.stale) || res.kind == TR_REFUSED) {
        struct om_tagcache_val v = {.list = res.list, .fetched_ms = om_now_ms()};
        snprintf(v.refusal, sizeof(v.refusal), "%s", res.kind == TR_REFUSED ? res.message : "");
        snprintf(v.canonical, sizeof(v.canonical), "%s", res.canonical);
        snprintf(v.upstream, sizeof(v.upstream), "%s", res.upstream);
        om_tagcache_put(srv->tags->cache, fl->key, &v);
    }
    finish_flight(srv, fl, &res, leader);
    om_taglist_unref(res.list);
    /* The pages' JSON trees are freed, but glibc keeps most of such a heap
     * of small blocks mapped: give it back (otherwise RSS stays at the peak
     * of every big list ever fetched, on each of the job threads' arenas). */
    if (res.json_bytes >= TRIM_AFTER)
        malloc_trim(0);
}

enum MHD_Result om_v2_tags(struct om_req *req)
{
    struct om_server *srv = req->srv;
    struct om_tags *t = srv->tags;
    const char *nv = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "n");
    enum MHD_Result r = MHD_YES;
    long n;
    char last[OM_TAG_MAX + 1], key[KEY_MAX];
    struct om_tagcache_val v = {0};
    struct tag_flight *fl = NULL;
    if (nv != NULL && strcmp(nv, "0") == 0) {
        json_t *doc = json_pack("{s:s, s:[]}", "name", req->p.name, "tags");
        om_v2_respond_json(req, doc, "application/json");
        json_decref(doc);
        r = om_req_send(req);
        goto done;
    }
    if (!om_v2_paging_args(req, &n, last, sizeof(last))) {
        r = om_req_send_error(req, MHD_HTTP_BAD_REQUEST, "PAGINATION_NUMBER_INVALID",
                              "invalid n or last");
        goto done;
    }
    tags_key(req, key, sizeof(key));

    pthread_mutex_lock(&t->mu);
    if (om_tagcache_get(t->cache, key, &v) &&
        om_now_ms() - v.fetched_ms < (int64_t)srv->cfg->tag_ttl_ms) {
        pthread_mutex_unlock(&t->mu);
        struct tresult res = {.kind = v.list != NULL ? TR_LIST : TR_REFUSED, .list = v.list};
        snprintf(res.message, sizeof(res.message), "%s", v.refusal);
        snprintf(res.canonical, sizeof(res.canonical), "%s", v.canonical);
        snprintf(res.upstream, sizeof(res.upstream), "%s", v.upstream);
        respond_result(req, &res);
        req->cache = OM_CACHE_HIT;
        r = om_req_send(req);
        goto done;
    }
    /* Not cached (or older than tag_ttl): upstream work, charged before any
     * contact (the limiter takes only its own lock). */
    if (!om_req_limit_upstream(req)) {
        pthread_mutex_unlock(&t->mu);
        r = om_req_send(req);
        goto done;
    }
    fl = t->flights;
    while (fl != NULL && strcmp(fl->key, key) != 0)
        fl = fl->next;
    req->phase = 1;
    MHD_suspend_connection(req->conn);
    if (fl != NULL) {
        /* Join: insert at the head; the leader stays at the tail. */
        req->flight_next = fl->waiters;
        fl->waiters = req;
        pthread_mutex_unlock(&t->mu);
        goto done;
    }
    if ((fl = calloc(1, sizeof(*fl))) == NULL) {
        pthread_mutex_unlock(&t->mu);
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        om_req_job_done(req);
        goto done;
    }
    snprintf(fl->key, sizeof(fl->key), "%s", key);
    fl->waiters = req;
    fl->next = t->flights;
    t->flights = fl;
    pthread_mutex_unlock(&t->mu);
    if (om_jobs_submit_lane(srv->jobs, om_v2_lane(req), tags_job, fl) != OM_OK) {
        struct tresult res = {.kind = TR_UNAVAILABLE};
        snprintf(res.message, sizeof(res.message), "mirror overloaded");
        finish_flight(srv, fl, &res, req);
    }
done:
    om_tagcache_val_clear(&v);
    return r;
}
