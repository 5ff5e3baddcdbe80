/* index_gc_redis.c — GC's index side (index_gc.h) on the Redis key schema
 * of index_redis.h, and the cluster's GC leader lease.
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
 *           index from a digest to its tags).
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
#include "cache/index_gc_int.h"

#include "cache/index_redis.h"
#include "core/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define P OM_IXR_PREFIX
#define GC_LEASE_KEY P "lock:gc"
#define GC_LEASE_MS 30000
#define GC_RENEW_MS 5000
#define GC_HOLDER_MAX 320
#define GC_KEY 160                   /* m:/b:/mc:/tag keys of one digest or name pair */
#define GC_TAG_KEY OM_IXR_KEY_MAX
#define GC_MAX_TAGS 200000           /* bounds the tags one snapshot keeps */
#define GC_MAX_CHILDREN 100000       /* bounds one manifest's children */
#define GC_PATH_MAX 4096

struct gc_tag {
    om_digest d;
    int64_t used;                    /* max(lp, fa) */
    char repo[OM_NAME_MAX + 1];
    char tag[OM_TAG_MAX + 1];
};

struct om_gc_redis {
    struct om_redis *r;              /* borrowed (the index's connection) */
    char holder[GC_HOLDER_MAX];      /* this connection's lease value */
    int log_fd;                      /* <root>/tags.log, O_APPEND; owned */
    char log_path[GC_PATH_MAX];
    struct gc_tag *tags;             /* owned; the last snapshot's, sorted by digest */
    size_t n_tags;
    int64_t loaded_ms;               /* wall clock of the last snapshot */
    /* the lease */
    pthread_mutex_t mu;              /* guards stop */
    pthread_cond_t cond;             /* CLOCK_MONOTONIC */
    bool stop, renewing;
    pthread_t renewer;
    atomic_bool leading, lost;
};

/* KEYS lease; ARGV holder ms.  1 = extended, 0 = not ours any more. */
static struct om_redis_script S_RENEW = {
    .name = "gc_lease_renew",
    .src = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
           "  redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
           "return 0\n",
};

static struct om_redis_script S_RELEASE = {
    .name = "gc_lease_release",
    .src = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
           "return 0\n",
};

/* No KEYS (the keys are built from the prefix, as the member script);
 * ARGV prefix expect_last_used('' = no check) cutoff root('' = none) ntags
 * since, then ntags (repo, tag) pairs, then the nodes, parent first.
 * Returns {touched, tags_deleted, repos_deleted, deleted per node...}. */
static struct om_redis_script S_EVICT = {
    .name = "gc_evict",
    .src =
        "local P, cutoff, root = ARGV[1], tonumber(ARGV[3]), ARGV[4]\n"
        "local ntags, since = tonumber(ARGV[5]), ARGV[6]\n"
        "local function t2(h)\n"
        "  local v = redis.call('HMGET', h, 'ca', 'la')\n"
        "  if not v[1] and not v[2] then return nil end\n"
        "  return math.max(tonumber(v[1]) or 0, tonumber(v[2]) or 0)\n"
        "end\n"
        "if root ~= '' and ARGV[2] ~= '' then\n"
        "  local used = 0\n"
        "  for i = 0, ntags - 1 do\n"
        "    local v = redis.call('HMGET', P .. 'tag:' .. ARGV[7 + 2 * i] .. ':' .. ARGV[8 + 2 * i],"
        " 'd', 'lp', 'fa')\n"
        "    if v[1] == root then used = math.max(used, tonumber(v[2]) or 0, tonumber(v[3]) or 0) end\n"
        "  end\n"
        "  used = math.max(used, t2(P .. 'm:' .. root) or 0)\n"
        "  for _, c in ipairs(redis.call('SMEMBERS', P .. 'mc:' .. root)) do\n"
        "    used = math.max(used, t2(P .. 'm:' .. c) or 0)\n"
        "  end\n"
        "  if used > tonumber(ARGV[2]) then return {1, 0, 0} end\n"
        "end\n"
        "local out, repos = {0, 0, 0}, {}\n"
        "if root ~= '' then\n"
        "  for i = 0, ntags - 1 do\n"
        "    local repo, tag = ARGV[7 + 2 * i], ARGV[8 + 2 * i]\n"
        "    local k = P .. 'tag:' .. repo .. ':' .. tag\n"
        "    if redis.call('HGET', k, 'd') == root then\n"
        "      redis.call('DEL', k)\n"
        "      redis.call('ZREM', P .. 't:' .. repo, tag)\n"
        "      redis.call('HINCRBY', P .. 'stats', 'tags', -1)\n"
        "      out[2] = out[2] + 1\n"
        "      repos[repo] = true\n"
        "    end\n"
        "  end\n"
        "end\n"
        "local kept, recent = {}, nil\n"
        "for i = 7 + 2 * ntags, #ARGV do\n"
        "  local d = ARGV[i]\n"
        "  local mk, bk = P .. 'm:' .. d, P .. 'b:' .. d\n"
        "  local mt, bt = t2(mk), t2(bk)\n"
        "  local held = (mt and mt >= cutoff) or (bt and bt >= cutoff)\n"
        "  if not held and redis.call('EXISTS', P .. 'fl:' .. d) == 1 then held = true end\n"
        "  if not held then\n"
        "    for _, p in ipairs(kept) do\n"
        "      if redis.call('SISMEMBER', P .. 'mc:' .. p, d) == 1 then held = true break end\n"
        "    end\n"
        "  end\n"
        "  if not held then\n"
        "    if recent == nil then\n"
        "      recent = redis.call('ZRANGEBYSCORE', P .. 'la', since, '+inf', 'LIMIT', 0, 10000)\n"
        "    end\n"
        "    for _, p in ipairs(recent) do\n"
        "      if p ~= d and redis.call('SISMEMBER', P .. 'mc:' .. p, d) == 1 then held = true break end\n"
        "    end\n"
        "  end\n"
        "  local gone = 0\n"
        "  if held then\n"
        "    if mt then kept[#kept + 1] = d end\n"
        "  else\n"
        "    for _, kind in ipairs({{mk, 'manifests', 'manifest_bytes', 'rm:', 'mr:'},"
        " {bk, 'blobs', 'blob_bytes', 'rb:', 'br:'}}) do\n"
        "      if redis.call('EXISTS', kind[1]) == 1 then\n"
        "        local sz = tonumber(redis.call('HGET', kind[1], 'sz')) or 0\n"
        "        redis.call('DEL', kind[1])\n"
        "        redis.call('HINCRBY', P .. 'stats', kind[2], -1)\n"
        "        redis.call('HINCRBY', P .. 'stats', kind[3], string.format('%d', -sz))\n"
        "        for _, r in ipairs(redis.call('SMEMBERS', P .. kind[4] .. d)) do\n"
        "          redis.call('SREM', P .. kind[5] .. r, d)\n"
        "          redis.call('DEL', P .. 'rf:' .. d .. ':' .. r)\n"
        "        end\n"
        "        redis.call('DEL', P .. kind[4] .. d)\n"
        "        gone = 1\n"
        "      end\n"
        "    end\n"
        "    redis.call('DEL', P .. 'mc:' .. d)\n"
        "    redis.call('ZREM', P .. 'la', d)\n"
        "  end\n"
        "  out[#out + 1] = gone\n"
        "end\n"
        "for repo, _ in pairs(repos) do\n"
        "  if redis.call('ZCARD', P .. 't:' .. repo) == 0 then\n"
        "    redis.call('ZREM', P .. 'repos', repo)\n"
        "    for _, kind in ipairs({{'mr:', 'rm:'}, {'br:', 'rb:'}}) do\n"
        "      for _, m in ipairs(redis.call('SMEMBERS', P .. kind[1] .. repo)) do\n"
        "        redis.call('SREM', P .. kind[2] .. m, repo)\n"
        "        redis.call('DEL', P .. 'rf:' .. m .. ':' .. repo)\n"
        "      end\n"
        "      redis.call('DEL', P .. kind[1] .. repo)\n"
        "    end\n"
        "    out[3] = out[3] + 1\n"
        "  end\n"
        "end\n"
        "return out\n",
};

static void scripts_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, om_index_redis__scripts_init);
    if (S_EVICT.sha[0] == '\0') {
        om_redis_script_init(&S_RENEW);
        om_redis_script_init(&S_RELEASE);
        om_redis_script_init(&S_EVICT);
    }
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

/* The children of node i (a manifest), as edges. */
static int load_children(struct om_gc_redis *rx, struct om_gc_graph *g, size_t i)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    const char **kids = NULL;
    char key[GC_KEY];
    int err;

    snprintf(key, sizeof(key), P "mc:%s", g->nodes[i].digest.str);
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "SMEMBERS");
    om_redis_arg_str(&c, key);
    if ((err = om_redis_exec(rx->r, &c, 1, &rp)) != OM_OK ||
        (err = om_redis_reply_array(rp, "gc: children", GC_MAX_CHILDREN)) != OM_OK)
        goto done;
    if (rp->elements == 0)
        goto done;
    if ((kids = calloc(rp->elements, sizeof(*kids))) == NULL) { /* freed below */
        err = OM_ERR_NOMEM;
        goto done;
    }
    size_t n = 0;
    for (size_t k = 0; k < rp->elements; k++) {
        if (rp->element[k]->type == REDIS_REPLY_STRING && rp->element[k]->len < GC_KEY)
            kids[n++] = rp->element[k]->str;
    }
    qsort(kids, n, sizeof(*kids), cmp_str);
    g->nodes[i].first_child = (uint32_t)g->n_edges;
    for (size_t k = 0; k < n; k++) {
        long ci = om_gc_graph_find(g, kids[k]);
        if (ci < 0)
            continue; /* a child not cached (another platform) */
        if ((err = om_gc_graph_add_edge(g, (uint32_t)ci)) != OM_OK)
            goto done;
        g->nodes[i].n_children++;
    }
done:
    free(kids);
    om_redis_replies_free(&rp, 1);
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

    rx->loaded_ms = wall_ms();
    if ((err = load_nodes(rx, g)) != OM_OK)
        goto done;
    for (size_t i = 0; i < g->n_nodes && err == OM_OK; i++) {
        if (g->nodes[i].manifest)
            err = load_children(rx, g, i);
    }
    if (err == OM_OK && (err = load_tags(rx)) == OM_OK)
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

/* ---- eviction ------------------------------------------------------------------ */

int om_gc_redis__evict(struct om_gc_redis *rx, const struct om_gc_evict_req *req,
                       bool *deleted, struct om_gc_evict_out *out)
{
    size_t first = 0, n_tags = 0, nx;
    const char **xv = NULL;
    size_t *xl = NULL;
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char exp[24] = "", since[24];
    int err = OM_OK;

    /* The snapshot's tags of the root, filtered as the request says. */
    if (req->root != NULL) {
        struct gc_tag key = {.d = *req->root};
        size_t lo = 0, hi = rx->n_tags;
        while (lo < hi) { /* the first tag of the digest */
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(rx->tags[mid].d.str, key.d.str) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        first = lo;
        while (first + n_tags < rx->n_tags &&
               strcmp(rx->tags[first + n_tags].d.str, req->root->str) == 0)
            n_tags++;
    }
    nx = 2 * n_tags + req->n_nodes;
    xv = calloc(nx ? nx : 1, sizeof(*xv)); /* freed below; strings borrowed */
    xl = calloc(nx ? nx : 1, sizeof(*xl));
    if (xv == NULL || xl == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    size_t k = 0, used_tags = 0;
    for (size_t i = 0; i < n_tags; i++) {
        const struct gc_tag *t = &rx->tags[first + i];
        if ((req->repo != NULL && strcmp(t->repo, req->repo) != 0) ||
            (req->tag != NULL && strcmp(t->tag, req->tag) != 0))
            continue;
        /* The record first (a rebuild then forgets a tag Redis may still
         * have, never brings back one it deleted). */
        if (rx->log_fd >= 0 &&
            (err = om_index_gc__log_deleted(rx->log_fd, rx->log_path, t->repo, t->tag,
                                            req->root, req->now)) != OM_OK)
            goto done;
        xv[k] = t->repo;
        xl[k++] = strlen(t->repo);
        xv[k] = t->tag;
        xl[k++] = strlen(t->tag);
        used_tags++;
    }
    for (size_t i = 0; i < req->n_nodes; i++) {
        xv[k] = req->nodes[i].str;
        xl[k++] = strlen(req->nodes[i].str);
    }
    if (req->root != NULL && req->expect_last_used != INT64_MAX)
        snprintf(exp, sizeof(exp), "%lld", (long long)req->expect_last_used);
    snprintf(since, sizeof(since), "%lld", (long long)(rx->loaded_ms ? rx->loaded_ms : wall_ms()));
    om_redis_cmd_init(&c, &S_EVICT, 0);
    om_redis_arg_str(&c, P);
    om_redis_arg_str(&c, exp);
    om_redis_arg_i64(&c, req->cutoff == INT64_MAX ? INT64_MAX / 2 : req->cutoff);
    om_redis_arg_str(&c, req->root != NULL ? req->root->str : "");
    om_redis_arg_i64(&c, (int64_t)used_tags);
    om_redis_arg_str(&c, since);
    om_redis_arg_extra(&c, xv, xl, k);
    if ((err = om_redis_exec(rx->r, &c, 1, &rp)) != OM_OK ||
        (err = om_redis_reply_array(rp, "gc: evict", 3 + req->n_nodes)) != OM_OK)
        goto done;
    bool bad = rp->elements < 3;
    for (size_t i = 0; i < rp->elements && !bad; i++)
        bad = rp->element[i]->type != REDIS_REPLY_INTEGER;
    if (bad || (rp->elements != 3 + req->n_nodes && rp->element[0]->integer == 0)) {
        om_log(OM_LOG_ERROR, "gc: evict: a reply of %zu elements", rp->elements);
        err = OM_ERR_IO;
        goto done;
    }
    out->touched = rp->element[0]->integer != 0;
    if (out->touched)
        goto done;
    out->tags_deleted = (size_t)rp->element[1]->integer;
    out->repos_deleted = (size_t)rp->element[2]->integer;
    for (size_t i = 0; i < req->n_nodes; i++) {
        deleted[i] = rp->element[3 + i]->type == REDIS_REPLY_INTEGER &&
                     rp->element[3 + i]->integer == 1;
        out->n_deleted += deleted[i];
    }
done:
    om_redis_replies_free(&rp, 1);
    free(xv);
    free(xl);
    return err;
}

/* ---- the GC leader lease ------------------------------------------------------------ */

static int lease_call(struct om_gc_redis *rx, const struct om_redis_script *s, long long *v)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    int err;

    om_redis_cmd_init(&c, s, 1);
    om_redis_arg_str(&c, GC_LEASE_KEY);
    om_redis_arg_str(&c, rx->holder);
    om_redis_arg_i64(&c, GC_LEASE_MS);
    if ((err = om_redis_exec(rx->r, &c, 1, &rp)) == OM_OK)
        err = om_redis_reply_int(rp, s->name, v);
    om_redis_replies_free(&rp, 1);
    return err;
}

static void *renew_thread(void *arg)
{
    struct om_gc_redis *rx = arg;
    int64_t last_ok = mono_ms();

    pthread_mutex_lock(&rx->mu);
    while (!rx->stop) {
        struct timespec ts;
        int64_t wake = mono_ms() + GC_RENEW_MS;
        ts.tv_sec = (time_t)(wake / 1000);
        ts.tv_nsec = (long)(wake % 1000) * 1000000L;
        pthread_cond_timedwait(&rx->cond, &rx->mu, &ts);
        if (rx->stop)
            break;
        pthread_mutex_unlock(&rx->mu);
        long long v = 0;
        int err = lease_call(rx, &S_RENEW, &v);
        if (err == OM_OK && v == 1) {
            last_ok = mono_ms();
        } else if ((err == OM_OK && v == 0) || mono_ms() - last_ok >= GC_LEASE_MS) {
            om_log(OM_LOG_WARN, "gc: lost the cluster's gc lease; stopping this run");
            atomic_store(&rx->lost, true);
            atomic_store(&rx->leading, false);
            pthread_mutex_lock(&rx->mu);
            break;
        }
        pthread_mutex_lock(&rx->mu);
    }
    pthread_mutex_unlock(&rx->mu);
    return NULL;
}

int om_gc_redis__lead(struct om_gc_redis *rx, bool *leader, char *holder_out, size_t holder_sz)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    int err;

    *leader = false;
    if (rx->renewing)
        return OM_ERR_INVALID; /* a lead without its unlead */
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "SET");
    om_redis_arg_str(&c, GC_LEASE_KEY);
    om_redis_arg_str(&c, rx->holder);
    om_redis_arg_str(&c, "NX");
    om_redis_arg_str(&c, "PX");
    om_redis_arg_i64(&c, GC_LEASE_MS);
    if ((err = om_redis_exec(rx->r, &c, 1, &rp)) != OM_OK ||
        (err = om_redis_reply_ok(rp, "gc: lease")) != OM_OK)
        goto done;
    if (rp->type == REDIS_REPLY_NIL) { /* someone else's */
        om_redis_replies_free(&rp, 1);
        if (holder_out != NULL && holder_sz > 0) {
            om_redis_cmd_init(&c, NULL, 0);
            om_redis_arg_str(&c, "GET");
            om_redis_arg_str(&c, GC_LEASE_KEY);
            if (om_redis_exec(rx->r, &c, 1, &rp) != OM_OK ||
                om_redis_reply_copy(rp, "gc: lease holder", holder_out, holder_sz) != OM_OK)
                holder_out[0] = '\0';
        }
        goto done;
    }
    atomic_store(&rx->lost, false);
    rx->stop = false;
    if (pthread_create(&rx->renewer, NULL, renew_thread, rx) != 0) {
        long long v = 0;
        (void)lease_call(rx, &S_RELEASE, &v);
        err = OM_ERR_NOMEM;
        goto done;
    }
    rx->renewing = true;
    atomic_store(&rx->leading, true);
    *leader = true;
done:
    om_redis_replies_free(&rp, 1);
    return err;
}

void om_gc_redis__unlead(struct om_gc_redis *rx)
{
    long long v = 0;

    if (!rx->renewing)
        return;
    pthread_mutex_lock(&rx->mu);
    rx->stop = true;
    pthread_cond_signal(&rx->cond);
    pthread_mutex_unlock(&rx->mu);
    pthread_join(rx->renewer, NULL);
    rx->renewing = false;
    atomic_store(&rx->leading, false);
    if (lease_call(rx, &S_RELEASE, &v) != OM_OK)
        om_log(OM_LOG_INFO, "gc: could not release the gc lease; it expires in %d s",
               GC_LEASE_MS / 1000);
}

bool om_gc_redis__lost(struct om_gc_redis *rx)
{
    return atomic_load(&rx->lost);
}

bool om_gc_redis__leading(struct om_gc_redis *rx)
{
    return atomic_load(&rx->leading);
}
