/* index_gc_redis.c — GC's index side (index_gc.h) on the Redis key schema
 * of index_redis.h: open/close, the snapshot, the lookups.  The eviction
 * is index_gc_redis_evict.c, the cluster's GC leader lease
 * index_gc_lease.c (shared declarations: index_gc_redis.h).
 *
 * The snapshot (om_gc_redis__load) is read in pages (OM_IXR_PAGE names a
 * round trip):
 *   nodes   every digest of P la (the LRU ZSET holds every manifest and
 *           blob), with HMGET of its m:/b: hash (sz, ca, la);
 *   edges   SMEMBERS mc:<d> of each manifest;
 *   images  every tag (P repos → P t:<repo> → HMGET tag:<repo>:<tag>),
 *           grouped by digest, and the manifests no tag and no manifest
 *           names.  The tags are kept in memory (rx->tags) until the next
 *           load: they are what an eviction deletes (Redis has no reverse
 *           index from a digest to its tags); an eviction adds the tags
 *           of the repositories holding the root now (P rm:<root>).
 * It is not one consistent read (Redis has none across keys): a key
 * written meanwhile is missing from it, which can only make GC delete less
 * (a node the snapshot lacks is never planned; a stored object it lacks is
 * a "stray" that run_strays re-checks with om_gc_redis__known first).
 *
 * An eviction (om_gc_redis__evict) is one Lua script, atomic like the
 * SQLite transaction it replaces, that re-checks on the live keys:
 *   - the image was not used since the snapshot (its tags' lp/fa, its root
 *     manifest's and direct child manifests' ca/la);
 *   - a node goes only if it was not touched since the cutoff, no
 *     download lease om:fl:<digest> exists (a replica is fetching it), no
 *     manifest of this request that stays lists it, and no manifest
 *     recorded or touched since the snapshot (P la scores >= the
 *     snapshot's time) lists it;
 *   - the counters of P stats stay exact (the script decrements them).
 * The index keys go first, the bucket object after (gc.c): a crash between
 * leaves an object the index does not know (a stray: removed by a later
 * run), never an index entry naming a missing object — and if that
 * happens anyway (a re-fetch racing the removal), a blob or manifest the
 * index knows but the store lacks is a miss and is fetched again.
 *
 * The lease: P lock:gc = holder (SET NX PX GC_LEASE_MS); a thread renews
 * it every GC_RENEW_MS with a script that extends only our own value; a
 * renewal that finds another value (or none) marks the lease lost and the
 * engine stops between steps.  unlead releases only our own value.
 */
#include "cache/index_gc_redis.h"

#include "core/log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t om_gc_redis__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void scripts_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, om_index_redis__scripts_init);
    om_gc_redis__evict_scripts_init();
    om_gc_redis__lease_scripts_init();
}

/* ---- open/close -------------------------------------------------------------- */

int om_gc_redis__open(struct om_gc_redis **out, struct om_redis *r, const char *root,
                      const char *holder)
{
    struct om_gc_redis *rx = calloc(1, sizeof(*rx)); /* owned by *out */
    pthread_condattr_t ca;
    struct timespec ts;
    int n;

    *out = NULL;
    if (rx == NULL)
        return OM_ERR_NOMEM;
    scripts_init();
    rx->r = r;
    rx->log_fd = -1;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* Unique per connection: a server and `ocimirror gc` beside it with
     * the same replica id are still two holders. */
    snprintf(rx->holder, sizeof(rx->holder), "%.*s|%ld.%09ld", 256, holder != NULL ? holder : "",
             (long)ts.tv_sec, ts.tv_nsec);
    pthread_mutex_init(&rx->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rx->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&rx->leading, false);
    atomic_init(&rx->lost, false);
    n = snprintf(rx->log_path, sizeof(rx->log_path), "%s/tags.log", root);
    if (n > 0 && (size_t)n < sizeof(rx->log_path))
        rx->log_fd = open(rx->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (rx->log_fd < 0)
        om_log(OM_LOG_WARN, "gc: cannot open %s: tags GC removes are not recorded there",
               rx->log_path);
    *out = rx;
    return OM_OK;
}

void om_gc_redis__close(struct om_gc_redis *rx)
{
    if (rx == NULL)
        return;
    om_gc_redis__unlead(rx);
    if (rx->log_fd >= 0)
        close(rx->log_fd);
    free(rx->tags);
    pthread_cond_destroy(&rx->cond);
    pthread_mutex_destroy(&rx->mu);
    free(rx);
}

int om_index_gc_open_index(struct om_gc_db **out, const char *root, struct om_index *ix,
                           const char *holder)
{
    struct om_redis *r = om_index_redis_conn(ix);
    struct om_gc_redis *rx = NULL;
    int err;

    *out = NULL;
    if (r == NULL)
        return om_index_gc_open(out, root);
    if ((err = om_gc_redis__open(&rx, r, root, holder)) != OM_OK)
        return err;
    return om_index_gc__wrap_redis(out, rx);
}

/* ---- small command helpers --------------------------------------------------- */

/* cmds[i] = HMGET key fields... (borrowed strings) */
static void hmget(struct om_redis_cmd *c, const char *key, const char *f1, const char *f2,
                  const char *f3)
{
    om_redis_cmd_init(c, NULL, 0);
    om_redis_arg_str(c, "HMGET");
    om_redis_arg_str(c, key);
    om_redis_arg_str(c, f1);
    om_redis_arg_str(c, f2);
    if (f3 != NULL)
        om_redis_arg_str(c, f3);
}

/* Element i of an HMGET reply as a number (-1 when nil or not a number). */
static int64_t field_num(const redisReply *rp, size_t i)
{
    int64_t v = -1;
    if (rp != NULL && rp->type == REDIS_REPLY_ARRAY && i < rp->elements &&
        rp->element[i]->type != REDIS_REPLY_NIL &&
        om_redis_reply_num(rp->element[i], "gc: field", &v) != OM_OK)
        v = -1;
    return v;
}

/* ZRANGE key start start+n-1 into *rp (an array of strings). */
static int zrange(struct om_gc_redis *rx, const char *key, int64_t start, redisReply **rp)
{
    struct om_redis_cmd c;
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "ZRANGE");
    om_redis_arg_str(&c, key);
    om_redis_arg_i64(&c, start);
    om_redis_arg_i64(&c, start + OM_IXR_PAGE - 1);
    int err = om_redis_exec(rx->r, &c, 1, rp);
    if (err == OM_OK)
        err = om_redis_reply_array(*rp, "gc: zrange", OM_IXR_PAGE);
    return err;
}

/* ---- the snapshot ------------------------------------------------------------ */

/* One page of P la digests → nodes. */
static int load_node_page(struct om_gc_redis *rx, const redisReply *page, struct om_gc_graph *g)
{
    size_t n = page->elements;
    struct om_redis_cmd *cmds = calloc(2 * n, sizeof(*cmds));     /* freed below */
    redisReply **rps = calloc(2 * n, sizeof(*rps));               /* freed below */
    char (*keys)[GC_KEY] = calloc(2 * n, sizeof(*keys));          /* freed below */
    om_digest *ds = calloc(n, sizeof(*ds));                       /* freed below */
    size_t k = 0;
    int err = OM_OK;

    if (cmds == NULL || rps == NULL || keys == NULL || ds == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (om_redis_reply_str(page->element[i], "gc: la", OM_DIGEST_MAX, &s, &len) != OM_OK ||
            om_digest_parse(&ds[k], s, len) != OM_OK)
            continue; /* not a digest: nothing to collect */
        snprintf(keys[2 * k], GC_KEY, P "m:%s", ds[k].str);
        snprintf(keys[2 * k + 1], GC_KEY, P "b:%s", ds[k].str);
        hmget(&cmds[2 * k], keys[2 * k], "sz", "ca", "la");
        hmget(&cmds[2 * k + 1], keys[2 * k + 1], "sz", "ca", "la");
        k++;
    }
    if (k == 0 || (err = om_redis_exec(rx->r, cmds, 2 * k, rps)) != OM_OK)
        goto done;
    for (size_t i = 0; i < k; i++) {
        for (int kind = 0; kind < 2; kind++) {
            const redisReply *rp = rps[2 * i + (size_t)kind];
            int64_t sz = field_num(rp, 0), ca = field_num(rp, 1), la = field_num(rp, 2);
            struct om_gc_node *nd;
            if (sz < 0)
                continue; /* no such record */
            if ((err = om_gc_graph_add_node(g, &nd)) != OM_OK)
                goto done;
            nd->digest = ds[i];
            nd->size = (uint64_t)sz;
            nd->recent = ca > la ? ca : la;
            nd->manifest = kind == 0;
        }
    }
done:
    if (cmds != NULL && rps != NULL)
        om_redis_replies_free(rps, 2 * k);
    free(cmds);
    free(rps);
    free(keys);
    free(ds);
    return err;
}

static int load_nodes(struct om_gc_redis *rx, struct om_gc_graph *g)
{
    for (int64_t start = 0;; start += OM_IXR_PAGE) {
        redisReply *rp = NULL;
        int err = zrange(rx, P "la", start, &rp);
        size_t n = err == OM_OK ? rp->elements : 0;
        if (err == OM_OK)
            err = load_node_page(rx, rp, g);
        om_redis_replies_free(&rp, 1);
        if (err != OM_OK)
            return err;
        if (n < OM_IXR_PAGE)
            break;
    }
    om_gc_graph_sort_nodes(g);
    return OM_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Node i's children from its SMEMBERS reply rp, as edges. */
static int add_children(struct om_gc_graph *g, size_t i, const redisReply *rp)
{
    const char **kids = NULL;
    size_t n = 0;
    int err;

    if ((err = om_redis_reply_array(rp, "gc: children", GC_MAX_CHILDREN)) != OM_OK ||
        rp->elements == 0)
        return err;
    if ((kids = calloc(rp->elements, sizeof(*kids))) == NULL) /* freed below */
        return OM_ERR_NOMEM;
    for (size_t k = 0; k < rp->elements; k++) {
        if (rp->element[k]->type == REDIS_REPLY_STRING && rp->element[k]->len < GC_KEY)
            kids[n++] = rp->element[k]->str;
    }
    qsort(kids, n, sizeof(*kids), cmp_str);
    g->nodes[i].first_child = (uint32_t)g->n_edges;
    for (size_t k = 0; k < n && err == OM_OK; k++) {
        long ci = om_gc_graph_find(g, kids[k]);
        if (ci < 0)
            continue; /* a child not cached (another platform) */
        if ((err = om_gc_graph_add_edge(g, (uint32_t)ci)) == OM_OK)
            g->nodes[i].n_children++;
    }
    free(kids);
    return err;
}

/* Every manifest's children (SMEMBERS mc:<d>), OM_IXR_PAGE manifests a
 * pipeline, in node order (a node's edges are consecutive). */
static int load_edges(struct om_gc_redis *rx, struct om_gc_graph *g)
{
    struct om_redis_cmd *cmds = calloc(OM_IXR_PAGE, sizeof(*cmds));   /* freed below */
    redisReply **rps = calloc(OM_IXR_PAGE, sizeof(*rps));             /* freed below */
    char (*keys)[GC_KEY] = calloc(OM_IXR_PAGE, sizeof(*keys));        /* freed below */
    size_t *idx = calloc(OM_IXR_PAGE, sizeof(*idx));                  /* freed below */
    int err = OM_OK;

    if (cmds == NULL || rps == NULL || keys == NULL || idx == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < g->n_nodes && err == OM_OK;) {
        size_t k = 0;
        for (; i < g->n_nodes && k < OM_IXR_PAGE; i++) {
            if (!g->nodes[i].manifest)
                continue;
            snprintf(keys[k], GC_KEY, P "mc:%s", g->nodes[i].digest.str);
            om_redis_cmd_init(&cmds[k], NULL, 0);
            om_redis_arg_str(&cmds[k], "SMEMBERS");
            om_redis_arg_str(&cmds[k], keys[k]);
            idx[k++] = i;
        }
        if (k == 0 || (err = om_redis_exec(rx->r, cmds, k, rps)) != OM_OK)
            break;
        for (size_t j = 0; j < k && err == OM_OK; j++)
            err = add_children(g, idx[j], rps[j]);
        om_redis_replies_free(rps, k);
    }
done:
    free(cmds);
    free(rps);
    free(keys);
    free(idx);
    return err;
}

static int add_tag(struct om_gc_redis *rx, size_t *cap, const char *repo, const char *tag,
                   const redisReply *rp)
{
    const char *s;
    size_t len;
    om_digest d;

    if (rp == NULL || rp->type != REDIS_REPLY_ARRAY || rp->elements < 3 ||
        om_redis_reply_str(rp->element[0], "gc: tag", OM_DIGEST_MAX, &s, &len) != OM_OK ||
        om_digest_parse(&d, s, len) != OM_OK)
        return OM_OK; /* gone meanwhile, or not a digest */
    if (rx->n_tags == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        struct gc_tag *nv;
        if (ncap > GC_MAX_TAGS) {
            om_log(OM_LOG_ERROR, "gc: more than %d tags in the index: not collecting",
                   GC_MAX_TAGS);
            return OM_ERR_TOOBIG;
        }
        if ((nv = realloc(rx->tags, ncap * sizeof(*nv))) == NULL) /* owned by rx */
            return OM_ERR_NOMEM;
        rx->tags = nv;
        *cap = ncap;
    }
    struct gc_tag *t = &rx->tags[rx->n_tags++];
    int64_t lp = field_num(rp, 1), fa = field_num(rp, 2);
    t->d = d;
    t->used = lp > fa ? lp : fa;
    snprintf(t->repo, sizeof(t->repo), "%s", repo);
    snprintf(t->tag, sizeof(t->tag), "%s", tag);
    return OM_OK;
}

/* One page of a repository's tags → rx->tags. */
static int load_tag_page(struct om_gc_redis *rx, size_t *cap, const char *repo,
                         const redisReply *page)
{
    size_t n = page->elements, k = 0;
    struct om_redis_cmd *cmds = calloc(n ? n : 1, sizeof(*cmds));    /* freed below */
    redisReply **rps = calloc(n ? n : 1, sizeof(*rps));              /* freed below */
    char (*keys)[GC_TAG_KEY] = calloc(n ? n : 1, sizeof(*keys));     /* freed below */
    const char **names = calloc(n ? n : 1, sizeof(*names));          /* borrowed from page */
    int err = OM_OK;

    if (cmds == NULL || rps == NULL || keys == NULL || names == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = page->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len > OM_TAG_MAX || !om_index__tag_ok(e->str) ||
            om_index_redis__key(keys[k], GC_TAG_KEY, "tag", repo, e->str) != OM_OK)
            continue;
        names[k] = e->str;
        hmget(&cmds[k], keys[k], "d", "lp", "fa");
        k++;
    }
    if (k == 0 || (err = om_redis_exec(rx->r, cmds, k, rps)) != OM_OK)
        goto done;
    for (size_t i = 0; i < k && err == OM_OK; i++)
        err = add_tag(rx, cap, repo, names[i], rps[i]);
done:
    if (rps != NULL)
        om_redis_replies_free(rps, k);
    free(cmds);
    free(rps);
    free(keys);
    free(names);
    return err;
}

static int load_repo_tags(struct om_gc_redis *rx, size_t *cap, const char *repo)
{
    char key[GC_TAG_KEY];
    if (om_index_redis__key(key, sizeof(key), "t", repo, NULL) != OM_OK)
        return OM_OK;
    for (int64_t start = 0;; start += OM_IXR_PAGE) {
        redisReply *rp = NULL;
        int err = zrange(rx, key, start, &rp);
        size_t n = err == OM_OK ? rp->elements : 0;
        if (err == OM_OK)
            err = load_tag_page(rx, cap, repo, rp);
        om_redis_replies_free(&rp, 1);
        if (err != OM_OK)
            return err;
        if (n < OM_IXR_PAGE)
            return OM_OK;
    }
}

static int cmp_tag(const void *a, const void *b)
{
    const struct gc_tag *x = a, *y = b;
    int c = strcmp(x->d.str, y->d.str);
    return c != 0 ? c : strcmp(x->repo, y->repo) != 0 ? strcmp(x->repo, y->repo)
                                                       : strcmp(x->tag, y->tag);
}

static int load_tags(struct om_gc_redis *rx)
{
    size_t cap = 0;
    free(rx->tags);
    rx->tags = NULL;
    rx->n_tags = 0;
    for (int64_t start = 0;; start += OM_IXR_PAGE) {
        redisReply *rp = NULL;
        int err = zrange(rx, P "repos", start, &rp);
        size_t n = err == OM_OK ? rp->elements : 0;
        for (size_t i = 0; i < n && err == OM_OK; i++) {
            const redisReply *e = rp->element[i];
            if (e->type == REDIS_REPLY_STRING && e->len <= OM_NAME_MAX && om_index__repo_ok(e->str))
                err = load_repo_tags(rx, &cap, e->str);
        }
        om_redis_replies_free(&rp, 1);
        if (err != OM_OK)
            return err;
        if (n < OM_IXR_PAGE)
            break;
    }
    if (rx->n_tags > 0)
        qsort(rx->tags, rx->n_tags, sizeof(*rx->tags), cmp_tag);
    return OM_OK;
}

/* The LRU key of the image rooted at node r (index_gc.c's, the same formula
 * as the evict script's check). */
static int64_t image_last_used(const struct om_gc_graph *g, uint32_t r, int64_t tags_used)
{
    const struct om_gc_node *n = &g->nodes[r];
    int64_t t = tags_used > n->recent ? tags_used : n->recent;
    for (uint32_t i = 0; i < n->n_children; i++) {
        const struct om_gc_node *c = &g->nodes[g->edges[n->first_child + i]];
        if (c->manifest && c->recent > t)
            t = c->recent;
    }
    return t;
}

static int load_images(struct om_gc_redis *rx, struct om_gc_graph *g)
{
    bool *rooted = calloc(g->n_nodes ? g->n_nodes : 1, sizeof(*rooted)); /* freed below */
    struct om_gc_image *im;
    int err = OM_OK;

    if (rooted == NULL)
        return OM_ERR_NOMEM;
    for (size_t e = 0; e < g->n_edges; e++)
        rooted[g->edges[e]] = true; /* has a parent: not a root of its own */
    for (size_t i = 0; i < rx->n_tags;) {
        size_t j = i, best = i;
        int64_t used = 0;
        long r = om_gc_graph_find(g, rx->tags[i].d.str);
        while (j < rx->n_tags && strcmp(rx->tags[j].d.str, rx->tags[i].d.str) == 0) {
            if (rx->tags[j].used > used) {
                used = rx->tags[j].used;
                best = j;
            }
            j++;
        }
        if (r >= 0) {
            if ((err = om_gc_graph_add_image(g, &im)) != OM_OK)
                goto done;
            im->root = (uint32_t)r;
            im->last_used = image_last_used(g, im->root, used);
            im->n_tags = (uint32_t)(j - i);
            snprintf(im->repo, sizeof(im->repo), "%s", rx->tags[best].repo);
            snprintf(im->tag, sizeof(im->tag), "%s", rx->tags[best].tag);
            rooted[r] = true;
        }
        i = j;
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!g->nodes[i].manifest || rooted[i])
            continue;
        if ((err = om_gc_graph_add_image(g, &im)) != OM_OK)
            goto done;
        im->root = (uint32_t)i;
        im->last_used = image_last_used(g, im->root, 0);
    }
done:
    free(rooted);
    return err;
}

int om_gc_redis__load(struct om_gc_redis *rx, struct om_gc_graph *g)
{
    int err;

    rx->loaded_ms = om_gc_redis__wall_ms();
    if ((err = load_nodes(rx, g)) != OM_OK)
        goto done;
    if ((err = load_edges(rx, g)) == OM_OK && (err = load_tags(rx)) == OM_OK)
        err = load_images(rx, g);
done:
    if (err != OM_OK)
        om_gc_graph_free(g);
    return err;
}

/* ---- lookups ------------------------------------------------------------------ */

int om_gc_redis__known(struct om_gc_redis *rx, const om_digest *d, bool *known)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char mk[GC_KEY], bk[GC_KEY];
    long long v = 0;
    int err;

    snprintf(mk, sizeof(mk), P "m:%s", d->str);
    snprintf(bk, sizeof(bk), P "b:%s", d->str);
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "EXISTS");
    om_redis_arg_str(&c, mk);
    om_redis_arg_str(&c, bk);
    if ((err = om_redis_exec(rx->r, &c, 1, &rp)) == OM_OK &&
        (err = om_redis_reply_int(rp, "gc: known", &v)) == OM_OK)
        *known = v > 0;
    om_redis_replies_free(&rp, 1);
    return err;
}

int om_gc_redis__resolve(struct om_gc_redis *rx, const char *repo, const char *reference,
                         om_digest *root, bool *is_tag)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char key[GC_TAG_KEY];
    long long v = 0;
    const char *s;
    size_t len;
    int err;

    if (strncmp(reference, "sha256:", 7) == 0) {
        if (om_digest_parse(root, reference, strlen(reference)) != OM_OK)
            return OM_ERR_INVALID;
        if ((err = om_index_redis__key(key, sizeof(key), "mr", repo, NULL)) != OM_OK)
            return err;
        om_redis_cmd_init(&c, NULL, 0);
        om_redis_arg_str(&c, "SISMEMBER");
        om_redis_arg_str(&c, key);
        om_redis_arg_str(&c, root->str);
        if ((err = om_redis_exec(rx->r, &c, 1, &rp)) == OM_OK &&
            (err = om_redis_reply_int(rp, "gc: resolve", &v)) == OM_OK && v != 1)
            err = OM_ERR_NOTFOUND;
        om_redis_replies_free(&rp, 1);
        return err;
    }
    if (!om_index__tag_ok(reference))
        return OM_ERR_INVALID;
    *is_tag = true;
    if ((err = om_index_redis__key(key, sizeof(key), "tag", repo, reference)) != OM_OK)
        return err;
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "HGET");
    om_redis_arg_str(&c, key);
    om_redis_arg_str(&c, "d");
    if ((err = om_redis_exec(rx->r, &c, 1, &rp)) == OM_OK &&
        (err = om_redis_reply_str(rp, "gc: resolve tag", OM_DIGEST_MAX, &s, &len)) == OM_OK &&
        om_digest_parse(root, s, len) != OM_OK)
        err = OM_ERR_IO;
    om_redis_replies_free(&rp, 1);
    return err;
}

