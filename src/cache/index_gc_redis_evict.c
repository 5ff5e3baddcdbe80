/* index_gc_redis_evict.c — one eviction on the Redis key schema (the
 * contract of om_index_gc_evict in index_gc.h; why it is safe: the top of
 * index_gc_redis.c): the tags of the root (the snapshot's, and those of
 * the repositories holding it now), their tags.log records, then one Lua
 * script that re-checks everything on the live keys and deletes.
 */
#include "cache/index_gc_redis.h"

#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No KEYS (the keys are built from the prefix, as the member script);
 * ARGV prefix expect_last_used('' = no check) cutoff root('' = none) ntags
 * since nkeep, then ntags (repo, tag) pairs to delete (the root's), nkeep
 * (repo, tag) pairs that stay (a node one of them still names is kept),
 * then the nodes, parent first.
 * Returns {touched, tags_deleted, repos_deleted, deleted per node...}. */
static struct om_redis_script S_EVICT = {
    .name = "gc_evict",
    .src =
        "local P, cutoff, root = ARGV[1], tonumber(ARGV[3]), ARGV[4]\n"
        "local ntags, since, nkeep = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])\n"
        "local function t2(h)\n"
        "  local v = redis.call('HMGET', h, 'ca', 'la')\n"
        "  if not v[1] and not v[2] then return nil end\n"
        "  return math.max(tonumber(v[1]) or 0, tonumber(v[2]) or 0)\n"
        "end\n"
        "if root ~= '' and ARGV[2] ~= '' then\n"
        "  local used = 0\n"
        "  for i = 0, ntags - 1 do\n"
        "    local v = redis.call('HMGET', P .. 'tag:' .. ARGV[8 + 2 * i] .. ':' .. ARGV[9 + 2 * i],"
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
        "    local repo, tag = ARGV[8 + 2 * i], ARGV[9 + 2 * i]\n"
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
        "local kept, recent, k0 = {}, nil, 8 + 2 * ntags\n"
        "for i = k0 + 2 * nkeep, #ARGV do\n"
        "  local d = ARGV[i]\n"
        "  local mk, bk = P .. 'm:' .. d, P .. 'b:' .. d\n"
        "  local mt, bt = t2(mk), t2(bk)\n"
        "  local held = (mt and mt >= cutoff) or (bt and bt >= cutoff)\n"
        "  if not held and redis.call('EXISTS', P .. 'fl:' .. d) == 1 then held = true end\n"
        "  if not held then\n"
        "    for j = 0, nkeep - 1 do\n"
        "      if redis.call('HGET', P .. 'tag:' .. ARGV[k0 + 2 * j] .. ':' .. ARGV[k0 + 2 * j + 1],"
        " 'd') == d then held = true break end\n"
        "    end\n"
        "  end\n"
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


void om_gc_redis__evict_scripts_init(void)
{
    if (S_EVICT.sha[0] == '\0')
        om_redis_script_init(&S_EVICT);
}

/* ---- the root's tags ------------------------------------------------------------ */

#define EVICT_MAX_TAGS 100000         /* tags of one image one eviction deletes */
#define EVICT_MAX_REPOS 10000         /* repositories holding one root it looks at */

struct tag_list {
    struct gc_tag *v;                 /* owned */
    size_t n, cap;
};

static bool listed(const struct tag_list *l, const char *repo, const char *tag)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].repo, repo) == 0 && strcmp(l->v[i].tag, tag) == 0)
            return true;
    }
    return false;
}

static int add(struct tag_list *l, const om_digest *d, const char *repo, const char *tag)
{
    if (listed(l, repo, tag))
        return OM_OK;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        struct gc_tag *nv;
        if (ncap > EVICT_MAX_TAGS)
            return OM_ERR_TOOBIG;
        if ((nv = realloc(l->v, ncap * sizeof(*nv))) == NULL) /* owned by l */
            return OM_ERR_NOMEM;
        l->v = nv;
        l->cap = ncap;
    }
    struct gc_tag *t = &l->v[l->n++];
    memset(t, 0, sizeof(*t));
    t->d = *d;
    snprintf(t->repo, sizeof(t->repo), "%s", repo);
    snprintf(t->tag, sizeof(t->tag), "%s", tag);
    return OM_OK;
}

/* One page of repo's tags: those naming the root go to l. */
static int page_matches(struct om_gc_redis *rx, const struct om_gc_evict_req *req,
                        const char *repo, const redisReply *page, struct tag_list *l)
{
    size_t n = page->elements, k = 0;
    struct om_redis_cmd *cmds = calloc(n ? n : 1, sizeof(*cmds));   /* freed below */
    redisReply **rps = calloc(n ? n : 1, sizeof(*rps));             /* freed below */
    char (*keys)[GC_TAG_KEY] = calloc(n ? n : 1, sizeof(*keys));    /* freed below */
    const char **names = calloc(n ? n : 1, sizeof(*names));         /* borrowed from page */
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
        om_redis_cmd_init(&cmds[k], NULL, 0);
        om_redis_arg_str(&cmds[k], "HGET");
        om_redis_arg_str(&cmds[k], keys[k]);
        om_redis_arg_str(&cmds[k], "d");
        k++;
    }
    if (k == 0 || (err = om_redis_exec(rx->r, cmds, k, rps)) != OM_OK)
        goto done;
    for (size_t i = 0; i < k && err == OM_OK; i++) {
        if (rps[i]->type == REDIS_REPLY_STRING && strcmp(rps[i]->str, req->root->str) == 0)
            err = add(l, req->root, repo, names[i]);
    }
done:
    if (rps != NULL)
        om_redis_replies_free(rps, k);
    free(cmds);
    free(rps);
    free(keys);
    free(names);
    return err;
}

/* The tags of the repositories that hold the root now (P rm:<root>): the
 * snapshot may be older than one of them. */
static int live_tags(struct om_gc_redis *rx, const struct om_gc_evict_req *req,
                     struct tag_list *l)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char key[GC_KEY];
    int err;

    snprintf(key, sizeof(key), P "rm:%s", req->root->str);
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "SMEMBERS");
    om_redis_arg_str(&c, key);
    if ((err = om_redis_exec(rx->r, &c, 1, &rp)) != OM_OK ||
        (err = om_redis_reply_array(rp, "gc: holders", EVICT_MAX_REPOS)) != OM_OK)
        goto done;
    for (size_t i = 0; i < rp->elements && err == OM_OK; i++) {
        const redisReply *e = rp->element[i];
        char tk[GC_TAG_KEY];
        if (e->type != REDIS_REPLY_STRING || e->len > OM_NAME_MAX || !om_index__repo_ok(e->str) ||
            om_index_redis__key(tk, sizeof(tk), "t", e->str, NULL) != OM_OK)
            continue;
        for (int64_t start = 0;; start += OM_IXR_PAGE) {
            struct om_redis_cmd z;
            redisReply *page = NULL;
            om_redis_cmd_init(&z, NULL, 0);
            om_redis_arg_str(&z, "ZRANGE");
            om_redis_arg_str(&z, tk);
            om_redis_arg_i64(&z, start);
            om_redis_arg_i64(&z, start + OM_IXR_PAGE - 1);
            if ((err = om_redis_exec(rx->r, &z, 1, &page)) == OM_OK &&
                (err = om_redis_reply_array(page, "gc: tags", OM_IXR_PAGE)) == OM_OK)
                err = page_matches(rx, req, e->str, page, l);
            size_t n = err == OM_OK ? page->elements : 0;
            om_redis_replies_free(&page, 1);
            if (err != OM_OK || n < OM_IXR_PAGE)
                break;
        }
    }
done:
    om_redis_replies_free(&rp, 1);
    return err;
}

/* The snapshot's tags of digest d into l. */
static int snapshot_tags(struct om_gc_redis *rx, const om_digest *d, struct tag_list *l)
{
    size_t lo = 0, hi = rx->n_tags;
    int err = OM_OK;

    while (lo < hi) { /* the first tag of the digest (rx->tags sorted by digest) */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(rx->tags[mid].d.str, d->str) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < rx->n_tags && strcmp(rx->tags[i].d.str, d->str) == 0 &&
                        err == OM_OK; i++)
        err = add(l, d, rx->tags[i].repo, rx->tags[i].tag);
    return err;
}

/* Every tag naming the root (the snapshot's and the live ones) or another
 * node of the request (the snapshot's: a newer one comes with a manifest
 * put, which the cutoff sees), split into those the request deletes (the
 * root's, filtered by repo/tag) and those that stay. */
static int request_tags(struct om_gc_redis *rx, const struct om_gc_evict_req *req,
                        struct tag_list *del, struct tag_list *keep)
{
    struct tag_list all = {0};
    int err = OM_OK;

    if (req->root != NULL && (err = snapshot_tags(rx, req->root, &all)) == OM_OK)
        err = live_tags(rx, req, &all);
    for (size_t i = 0; i < req->n_nodes && err == OM_OK; i++) {
        if (req->root == NULL || strcmp(req->nodes[i].str, req->root->str) != 0)
            err = snapshot_tags(rx, &req->nodes[i], &all);
    }
    for (size_t i = 0; i < all.n && err == OM_OK; i++) {
        const struct gc_tag *t = &all.v[i];
        bool goes = req->root != NULL && strcmp(t->d.str, req->root->str) == 0 &&
                    (req->repo == NULL || strcmp(t->repo, req->repo) == 0) &&
                    (req->tag == NULL || strcmp(t->tag, req->tag) == 0);
        err = add(goes ? del : keep, &t->d, t->repo, t->tag);
    }
    free(all.v);
    return err;
}

/* ---- eviction ------------------------------------------------------------------ */

int om_gc_redis__evict(struct om_gc_redis *rx, const struct om_gc_evict_req *req,
                       bool *deleted, struct om_gc_evict_out *out)
{
    struct tag_list tags = {0}, keep = {0};
    const char **xv = NULL;
    size_t *xl = NULL, nx, k = 0;
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char exp[24] = "";
    int64_t since = rx->loaded_ms ? rx->loaded_ms : om_gc_redis__wall_ms();
    int err = OM_OK;

    if ((err = request_tags(rx, req, &tags, &keep)) != OM_OK)
        goto done;
    nx = 2 * tags.n + 2 * keep.n + req->n_nodes;
    xv = calloc(nx ? nx : 1, sizeof(*xv)); /* freed below; strings borrowed */
    xl = calloc(nx ? nx : 1, sizeof(*xl));
    if (xv == NULL || xl == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < tags.n; i++) {
        const struct gc_tag *t = &tags.v[i];
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
    }
    for (size_t i = 0; i < keep.n; i++) {
        xv[k] = keep.v[i].repo;
        xl[k++] = strlen(keep.v[i].repo);
        xv[k] = keep.v[i].tag;
        xl[k++] = strlen(keep.v[i].tag);
    }
    for (size_t i = 0; i < req->n_nodes; i++) {
        xv[k] = req->nodes[i].str;
        xl[k++] = strlen(req->nodes[i].str);
    }
    if (req->root != NULL && req->expect_last_used != INT64_MAX)
        snprintf(exp, sizeof(exp), "%lld", (long long)req->expect_last_used);
    om_redis_cmd_init(&c, &S_EVICT, 0);
    om_redis_arg_str(&c, P);
    om_redis_arg_str(&c, exp);
    om_redis_arg_i64(&c, req->cutoff == INT64_MAX ? INT64_MAX / 2 : req->cutoff);
    om_redis_arg_str(&c, req->root != NULL ? req->root->str : "");
    om_redis_arg_i64(&c, (int64_t)tags.n);
    om_redis_arg_i64(&c, since);
    om_redis_arg_i64(&c, (int64_t)keep.n);
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
        deleted[i] = rp->element[3 + i]->integer == 1;
        out->n_deleted += deleted[i];
    }
done:
    om_redis_replies_free(&rp, 1);
    free(tags.v);
    free(keep.v);
    free(xv);
    free(xl);
    return err;
}
