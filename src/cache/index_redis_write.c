/* index_redis_write.c — the Redis backend's writes: the Lua scripts that
 * keep multi-key records atomic and the counters exact (tag put, manifest
 * put, blob put, a pull note), tag_checked, the pull notes in pipelines,
 * route decisions, negative entries (negative_get too: it deletes an
 * expired entry), referrers.  The reads and the ops table are in
 * index_redis.c, whose top comment says how the backend keeps the
 * contract of index.h; the keys are in index_redis.h.
 */
#include "cache/index_redis.h"

#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P OM_IXR_PREFIX

/* ---- scripts ------------------------------------------------------------- */

/* KEYS tag, t:<repo>, repos, stats; ARGV repo tag digest mt size now.
 * Replaces the record; keeps its pull statistics (as SQLite's upsert). */
static struct om_redis_script S_TAG_PUT = {
    .name = "tag_put",
    .src = "local new = redis.call('EXISTS', KEYS[1]) == 0\n"
           "redis.call('HSET', KEYS[1], 'd', ARGV[3], 'mt', ARGV[4], 'sz', ARGV[5],"
           " 'fa', ARGV[6], 'ca', ARGV[6])\n"
           "if new then\n"
           "  redis.call('HSET', KEYS[1], 'lp', '0', 'pc', '0')\n"
           "  redis.call('HINCRBY', KEYS[4], 'tags', 1)\n"
           "end\n"
           "redis.call('ZADD', KEYS[2], 0, ARGV[2])\n"
           "redis.call('ZADD', KEYS[3], 0, ARGV[1])\n"
           "return new and 1 or 0\n",
};

/* KEYS tag; ARGV now.  1 = updated, 0 = no such tag. */
static struct om_redis_script S_TAG_CHECKED = {
    .name = "tag_checked",
    .src = "if redis.call('HEXISTS', KEYS[1], 'd') == 0 then return 0 end\n"
           "redis.call('HSET', KEYS[1], 'ca', ARGV[1])\n"
           "return 1\n",
};

/* KEYS m:<d>, la, stats, mc:<d>, repos, mr:<repo>, rm:<d>;
 * ARGV digest mt size now repo('' = none) children... */
static struct om_redis_script S_MANIFEST_PUT = {
    .name = "manifest_put",
    .src = "local old = redis.call('HMGET', KEYS[1], 'sz', 'la')\n"
           "local sz, now = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
           "if old[1] then\n"
           "  redis.call('HINCRBY', KEYS[3], 'manifest_bytes',"
           " string.format('%d', sz - tonumber(old[1])))\n"
           "  local la = ARGV[4]\n"
           "  if old[2] and tonumber(old[2]) > now then la = old[2] end\n"
           "  redis.call('HSET', KEYS[1], 'mt', ARGV[2], 'sz', ARGV[3], 'la', la)\n"
           "  redis.call('ZADD', KEYS[2], 'GT', la, ARGV[1])\n"
           "else\n"
           "  redis.call('HSET', KEYS[1], 'mt', ARGV[2], 'sz', ARGV[3], 'ca', ARGV[4],"
           " 'la', ARGV[4], 'pc', '0')\n"
           "  redis.call('HINCRBY', KEYS[3], 'manifests', 1)\n"
           "  redis.call('HINCRBY', KEYS[3], 'manifest_bytes', ARGV[3])\n"
           "  redis.call('ZADD', KEYS[2], 'GT', ARGV[4], ARGV[1])\n"
           "end\n"
           "if ARGV[5] ~= '' then\n"
           "  redis.call('ZADD', KEYS[5], 0, ARGV[5])\n"
           "  redis.call('SADD', KEYS[6], ARGV[1])\n"
           "  redis.call('SADD', KEYS[7], ARGV[5])\n"
           "end\n"
           "for i = 6, #ARGV do redis.call('SADD', KEYS[4], ARGV[i]) end\n"
           "return 1\n",
};

/* KEYS b:<d>, la, stats, repos, br:<repo>, rb:<d>; ARGV digest size now
 * repo('' = none).  The size is replaced (a blob fetched again after it
 * was damaged records its verified length). */
static struct om_redis_script S_BLOB_PUT = {
    .name = "blob_put",
    .src = "local old = redis.call('HMGET', KEYS[1], 'sz', 'la')\n"
           "local now = tonumber(ARGV[3])\n"
           "if old[1] then\n"
           "  redis.call('HINCRBY', KEYS[3], 'blob_bytes',"
           " string.format('%d', tonumber(ARGV[2]) - tonumber(old[1])))\n"
           "  local la = ARGV[3]\n"
           "  if old[2] and tonumber(old[2]) > now then la = old[2] end\n"
           "  redis.call('HSET', KEYS[1], 'sz', ARGV[2], 'la', la)\n"
           "  redis.call('ZADD', KEYS[2], 'GT', la, ARGV[1])\n"
           "else\n"
           "  redis.call('HSET', KEYS[1], 'sz', ARGV[2], 'ca', ARGV[3], 'la', ARGV[3], 'pc', '0')\n"
           "  redis.call('HINCRBY', KEYS[3], 'blobs', 1)\n"
           "  redis.call('HINCRBY', KEYS[3], 'blob_bytes', ARGV[2])\n"
           "  redis.call('ZADD', KEYS[2], 'GT', ARGV[3], ARGV[1])\n"
           "end\n"
           "if ARGV[4] ~= '' then\n"
           "  redis.call('ZADD', KEYS[4], 0, ARGV[4])\n"
           "  redis.call('SADD', KEYS[5], ARGV[1])\n"
           "  redis.call('SADD', KEYS[6], ARGV[4])\n"
           "end\n"
           "return 1\n",
};

/* KEYS m:<d>, b:<d>, la, tag (or "" without a tag); ARGV digest t count.
 * Returns 1 when the digest is a known manifest or blob. */
static struct om_redis_script S_NOTE = {
    .name = "note_pull",
    .src = "local found, t = 0, tonumber(ARGV[2])\n"
           "for i = 1, 2 do\n"
           "  if redis.call('EXISTS', KEYS[i]) == 1 then\n"
           "    found = 1\n"
           "    redis.call('HINCRBY', KEYS[i], 'pc', ARGV[3])\n"
           "    local la = tonumber(redis.call('HGET', KEYS[i], 'la')) or 0\n"
           "    if t > la then redis.call('HSET', KEYS[i], 'la', ARGV[2]) end\n"
           "  end\n"
           "end\n"
           "if found == 1 then redis.call('ZADD', KEYS[3], 'GT', ARGV[2], ARGV[1]) end\n"
           "if KEYS[4] ~= '' and redis.call('HEXISTS', KEYS[4], 'd') == 1 then\n"
           "  redis.call('HINCRBY', KEYS[4], 'pc', ARGV[3])\n"
           "  local lp = tonumber(redis.call('HGET', KEYS[4], 'lp')) or 0\n"
           "  if t > lp then redis.call('HSET', KEYS[4], 'lp', ARGV[2]) end\n"
           "end\n"
           "return found\n",
};

/* KEYS br:<repo>, mr:<repo>; ARGV digest, key prefix.  1 when the
 * repository holds the digest: one of its blobs or manifests, or a child
 * or grandchild of one of its manifests (as index_sqlite.c's query: an
 * index's platform manifests and their layers).  Read-only. */
static struct om_redis_script S_MEMBER = {
    .name = "member",
    .src = "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end\n"
           "if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 1 end\n"
           "for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
           "  local mc = ARGV[2] .. 'mc:' .. m\n"
           "  if redis.call('SISMEMBER', mc, ARGV[1]) == 1 then return 1 end\n"
           "  for _, c in ipairs(redis.call('SMEMBERS', mc)) do\n"
           "    if redis.call('SISMEMBER', ARGV[2] .. 'mc:' .. c, ARGV[1]) == 1 then return 1 end\n"
           "  end\n"
           "end\n"
           "return 0\n",
};

/* KEYS ng:...; ARGV the end time seen expired.  Deletes only that entry
 * (another replica may have just put a longer one). */
static struct om_redis_script S_NEG_DEL = {
    .name = "negative_del",
    .src = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
           "return 0\n",
};

void om_index_redis__scripts_init(void)
{
    struct om_redis_script *all[] = {&S_TAG_PUT, &S_TAG_CHECKED, &S_MANIFEST_PUT, &S_BLOB_PUT,
                                     &S_NOTE, &S_NEG_DEL, &S_MEMBER};
    for (size_t i = 0; i < OM_ARRAY_LEN(all); i++) {
        if (all[i]->sha[0] == '\0')
            om_redis_script_init(all[i]);
    }
}


static int neg_key(char *key, size_t keysz, const char *name, const char *upstream)
{
    int n = snprintf(key, keysz, P "ng:%zu:%s:%s", strlen(upstream), upstream, name);
    return n < 0 || (size_t)n >= keysz ? OM_ERR_INVALID : OM_OK;
}

int om_index_redis__tag_put(struct om_index *base, const char *repo, const char *tag,
                   const om_digest *d, const char *media_type, uint64_t size, int64_t now)
{
    struct om_index_redis *ix = om_index_redis__of(base);
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char key[OM_IXR_KEY_MAX], tk[OM_IXR_KEY_MAX];
    int err;

    if ((err = om_index_redis__key(key, sizeof(key), "tag", repo, tag)) != OM_OK ||
        (err = om_index_redis__key(tk, sizeof(tk), "t", repo, NULL)) != OM_OK)
        goto done;
    /* The log first, also while Redis is down: it may be ahead of Redis,
     * never behind (a rebuild after Redis lost its data brings the tag
     * back; a tag it brings back that Redis never had is stored content
     * with an old check time: revalidated, never wrong). */
    if ((err = om_index_redis__log_append(ix, repo, tag, d, media_type, size, now)) != OM_OK)
        goto done;
    om_redis_cmd_init(&c, &S_TAG_PUT, 4);
    om_redis_arg_str(&c, key);
    om_redis_arg_str(&c, tk);
    om_redis_arg_str(&c, P "repos");
    om_redis_arg_str(&c, P "stats");
    om_redis_arg_str(&c, repo);
    om_redis_arg_str(&c, tag);
    om_redis_arg_str(&c, d->str);
    om_redis_arg_str(&c, media_type);
    om_redis_arg_i64(&c, (int64_t)size);
    om_redis_arg_i64(&c, now);
    if ((err = om_index_redis__exec1(base, &c, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, "tag put");
done:
    om_redis_replies_free(&rp, 1);
    return err;
}

int om_index_redis__tag_checked(struct om_index *base, const char *repo, const char *tag, int64_t now)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char key[OM_IXR_KEY_MAX];
    long long v = 0;
    int err;

    if (!om_index__tag_ok(tag))
        return OM_ERR_NOTFOUND;
    if ((err = om_index_redis__key(key, sizeof(key), "tag", repo, tag)) != OM_OK)
        return err;
    om_redis_cmd_init(&c, &S_TAG_CHECKED, 1);
    om_redis_arg_str(&c, key);
    om_redis_arg_i64(&c, now);
    if ((err = om_index_redis__exec1(base, &c, &rp)) == OM_OK &&
        (err = om_redis_reply_int(rp, "tag checked", &v)) == OM_OK && v == 0)
        err = OM_ERR_NOTFOUND;
    om_redis_replies_free(&rp, 1);
    return err;
}

int om_index_redis__manifest_put(struct om_index *base, const char *repo, const om_digest *d,
                        const char *media_type, uint64_t size, const om_digest *children,
                        size_t n_children, int64_t now)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char mk[OM_IXR_KEY_MAX], ck[OM_IXR_KEY_MAX], rk[OM_IXR_KEY_MAX], dk[OM_IXR_KEY_MAX];
    const char **kids = NULL; /* borrowed strings; the arrays freed below */
    size_t *kid_len = NULL;
    int err;

    if ((err = om_index_redis__key(mk, sizeof(mk), "m", d->str, NULL)) != OM_OK ||
        (err = om_index_redis__key(ck, sizeof(ck), "mc", d->str, NULL)) != OM_OK ||
        (err = om_index_redis__key(rk, sizeof(rk), "mr", repo != NULL ? repo : "", NULL)) !=
            OM_OK ||
        (err = om_index_redis__key(dk, sizeof(dk), "rm", d->str, NULL)) != OM_OK)
        goto done;
    if (n_children > 0) {
        kids = calloc(n_children, sizeof(*kids));
        kid_len = calloc(n_children, sizeof(*kid_len));
        if (kids == NULL || kid_len == NULL) {
            err = OM_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < n_children; i++) {
            kids[i] = children[i].str;
            kid_len[i] = strlen(children[i].str);
        }
    }
    om_redis_cmd_init(&c, &S_MANIFEST_PUT, 7);
    om_redis_arg_str(&c, mk);
    om_redis_arg_str(&c, P "la");
    om_redis_arg_str(&c, P "stats");
    om_redis_arg_str(&c, ck);
    om_redis_arg_str(&c, P "repos");
    om_redis_arg_str(&c, rk);
    om_redis_arg_str(&c, dk);
    om_redis_arg_str(&c, d->str);
    om_redis_arg_str(&c, media_type);
    om_redis_arg_i64(&c, (int64_t)size);
    om_redis_arg_i64(&c, now);
    om_redis_arg_str(&c, repo != NULL ? repo : "");
    om_redis_arg_extra(&c, kids, kid_len, n_children);
    if ((err = om_index_redis__exec1(base, &c, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, "manifest put");
done:
    om_redis_replies_free(&rp, 1);
    free(kids);
    free(kid_len);
    return err;
}

int om_index_redis__blob_put(struct om_index *base, const char *repo, const om_digest *d,
                    uint64_t size, int64_t now)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char bk[OM_IXR_KEY_MAX], rk[OM_IXR_KEY_MAX], dk[OM_IXR_KEY_MAX];
    int err;

    if ((err = om_index_redis__key(bk, sizeof(bk), "b", d->str, NULL)) != OM_OK ||
        (err = om_index_redis__key(rk, sizeof(rk), "br", repo != NULL ? repo : "", NULL)) !=
            OM_OK ||
        (err = om_index_redis__key(dk, sizeof(dk), "rb", d->str, NULL)) != OM_OK)
        return err;
    om_redis_cmd_init(&c, &S_BLOB_PUT, 6);
    om_redis_arg_str(&c, bk);
    om_redis_arg_str(&c, P "la");
    om_redis_arg_str(&c, P "stats");
    om_redis_arg_str(&c, P "repos");
    om_redis_arg_str(&c, rk);
    om_redis_arg_str(&c, dk);
    om_redis_arg_str(&c, d->str);
    om_redis_arg_i64(&c, (int64_t)size);
    om_redis_arg_i64(&c, now);
    om_redis_arg_str(&c, repo != NULL ? repo : "");
    if ((err = om_index_redis__exec1(base, &c, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, "blob put");
    om_redis_replies_free(&rp, 1);
    return err;
}

int om_index_redis__member(struct om_index *base, const char *repo, const om_digest *d)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char bk[OM_IXR_KEY_MAX], mk[OM_IXR_KEY_MAX];
    long long v = 0;
    int err;

    if ((err = om_index_redis__key(bk, sizeof(bk), "br", repo, NULL)) != OM_OK ||
        (err = om_index_redis__key(mk, sizeof(mk), "mr", repo, NULL)) != OM_OK)
        return err;
    om_redis_cmd_init(&c, &S_MEMBER, 2);
    om_redis_arg_str(&c, bk);
    om_redis_arg_str(&c, mk);
    om_redis_arg_str(&c, d->str);
    om_redis_arg_str(&c, P);
    if ((err = om_index_redis__exec1(base, &c, &rp)) == OM_OK &&
        (err = om_redis_reply_int(rp, "member", &v)) == OM_OK && v != 1)
        err = OM_ERR_NOTFOUND;
    om_redis_replies_free(&rp, 1);
    return err;
}

/* Build note i's script call (keys in keys[0..3]). */
static int note_cmd(struct om_redis_cmd *c, char (*keys)[OM_IXR_KEY_MAX],
                    const struct om_pull_note *pn)
{
    int err;

    if ((err = om_index_redis__key(keys[0], OM_IXR_KEY_MAX, "m", pn->digest.str, NULL)) !=
            OM_OK ||
        (err = om_index_redis__key(keys[1], OM_IXR_KEY_MAX, "b", pn->digest.str, NULL)) != OM_OK)
        return err;
    keys[2][0] = '\0';
    if (pn->tag[0] != '\0' && om_index__tag_ok(pn->tag) &&
        (err = om_index_redis__key(keys[2], OM_IXR_KEY_MAX, "tag", pn->repo, pn->tag)) != OM_OK)
        return err;
    om_redis_cmd_init(c, &S_NOTE, 4);
    om_redis_arg_str(c, keys[0]);
    om_redis_arg_str(c, keys[1]);
    om_redis_arg_str(c, P "la");
    om_redis_arg_str(c, keys[2]);
    om_redis_arg_str(c, pn->digest.str);
    om_redis_arg_i64(c, pn->t_ms);
    om_redis_arg_i64(c, pn->count);
    return OM_OK;
}

int om_index_redis__note_pull(struct om_index *base, const char *repo, const char *tag,
                     const om_digest *d, int64_t now)
{
    struct om_pull_note pn = {.digest = *d, .t_ms = now, .count = 1};
    char keys[3][OM_IXR_KEY_MAX];
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    long long found = 0;
    int err;

    if (tag != NULL) {
        snprintf(pn.repo, sizeof(pn.repo), "%s", repo);
        snprintf(pn.tag, sizeof(pn.tag), "%s", tag);
    }
    if ((err = note_cmd(&c, keys, &pn)) == OM_OK && (err = om_index_redis__exec1(base, &c, &rp)) == OM_OK &&
        (err = om_redis_reply_int(rp, "note pull", &found)) == OM_OK && found == 0)
        err = OM_ERR_NOTFOUND;
    om_redis_replies_free(&rp, 1);
    return err;
}

/* All notes in pipelines of NOTE_BATCH script calls (one round trip each;
 * the flusher's batch is at most 2048 notes). */
#define NOTE_BATCH 256
int om_index_redis__note_pulls(struct om_index *base, struct om_pull_note *notes, size_t n)
{
    struct om_redis_cmd *c = NULL;
    char (*keys)[3][OM_IXR_KEY_MAX] = NULL;
    redisReply *rp[NOTE_BATCH];
    size_t idx[NOTE_BATCH];
    int err = OM_OK;

    for (size_t i = 0; i < n; i++)
        notes[i].found = false;
    if (n == 0)
        return OM_OK;
    c = malloc(NOTE_BATCH * sizeof(*c)); /* freed below */
    keys = malloc(NOTE_BATCH * sizeof(*keys));
    if (c == NULL || keys == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; err == OM_OK && i < n;) {
        size_t k = 0;
        for (; i < n && k < NOTE_BATCH; i++) {
            if (!om_index__pull_note_ok(&notes[i]) || note_cmd(&c[k], keys[k], &notes[i]) != OM_OK)
                continue;
            idx[k++] = i;
        }
        if (k == 0)
            break;
        if ((err = om_redis_exec(om_index_redis__of(base)->r, c, k, rp)) != OM_OK)
            break;
        for (size_t j = 0; j < k; j++) {
            long long found = 0;
            int e = om_redis_reply_int(rp[j], "note pulls", &found);
            if (e != OM_OK && err == OM_OK)
                err = e;
            notes[idx[j]].found = e == OM_OK && found != 0;
        }
        om_redis_replies_free(rp, k);
    }
done:
    free(c);
    free(keys);
    return err;
}

int om_index_redis__route_put(struct om_index *base, const char *name, const char *upstream,
                     const char *canonical, int64_t now)
{
    struct om_redis_cmd c[2];
    redisReply *rp[2] = {NULL, NULL};
    char key[OM_IXR_KEY_MAX];
    int err;

    if ((err = om_index_redis__key(key, sizeof(key), "r", name, NULL)) != OM_OK)
        return err;
    om_redis_cmd_init(&c[0], NULL, 0);
    om_redis_arg_str(&c[0], "HSET");
    om_redis_arg_str(&c[0], key);
    om_redis_arg_str(&c[0], "u");
    om_redis_arg_str(&c[0], upstream);
    om_redis_arg_str(&c[0], "c");
    om_redis_arg_str(&c[0], canonical);
    om_redis_arg_str(&c[0], "t");
    om_redis_arg_i64(&c[0], now);
    om_redis_cmd_init(&c[1], NULL, 0);
    om_redis_arg_str(&c[1], "PEXPIRE");
    om_redis_arg_str(&c[1], key);
    om_redis_arg_i64(&c[1], OM_IXR_ROUTE_TTL_MS);
    if ((err = om_redis_exec(om_index_redis__of(base)->r, c, 2, rp)) == OM_OK &&
        (err = om_redis_reply_ok(rp[0], "route put")) == OM_OK)
        err = om_redis_reply_ok(rp[1], "route expire");
    om_redis_replies_free(rp, 2);
    return err;
}

bool om_index_redis__negative_get(struct om_index *base, const char *name, const char *upstream,
                         int64_t now)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char key[OM_IXR_KEY_MAX];
    int64_t until = 0;
    bool hit = false;

    if (neg_key(key, sizeof(key), name, upstream) != OM_OK)
        return false;
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "GET");
    om_redis_arg_str(&c, key);
    if (om_index_redis__exec1(base, &c, &rp) != OM_OK || om_redis_reply_num(rp, "negative get", &until) != OM_OK)
        goto done; /* a miss (or cannot ask): ask upstream */
    om_redis_replies_free(&rp, 1);
    hit = until > now;
    if (!hit) { /* drop it so dead entries do not linger (unless re-put meanwhile) */
        om_redis_cmd_init(&c, &S_NEG_DEL, 1);
        om_redis_arg_str(&c, key);
        om_redis_arg_i64(&c, until);
        if (om_index_redis__exec1(base, &c, &rp) == OM_OK)
            (void)om_redis_reply_ok(rp, "negative del");
    }
done:
    om_redis_replies_free(&rp, 1);
    return hit;
}

int om_index_redis__negative_put(struct om_index *base, const char *name, const char *upstream,
                        int64_t until)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char key[OM_IXR_KEY_MAX];
    int64_t left = until - om_now_ms();
    int err;

    if ((err = neg_key(key, sizeof(key), name, upstream)) != OM_OK)
        return err;
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "SET");
    om_redis_arg_str(&c, key);
    om_redis_arg_i64(&c, until);
    om_redis_arg_str(&c, "PX");
    om_redis_arg_i64(&c, (left > 0 ? left : 0) + OM_IXR_NEG_SLACK_MS);
    if ((err = om_index_redis__exec1(base, &c, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, "negative put");
    om_redis_replies_free(&rp, 1);
    return err;
}

int om_index_redis__referrers_put(struct om_index *base, const char *repo, const om_digest *d,
                         const char *json, size_t len, int64_t now)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char key[OM_IXR_KEY_MAX];
    int err;

    if ((err = om_index_redis__key(key, sizeof(key), "rf", d->str, repo)) != OM_OK)
        return err;
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "HSET");
    om_redis_arg_str(&c, key);
    om_redis_arg_str(&c, "j");
    om_redis_arg(&c, json != NULL ? json : "", len);
    om_redis_arg_str(&c, "t");
    om_redis_arg_i64(&c, now);
    if ((err = om_index_redis__exec1(base, &c, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, "referrers put");
    om_redis_replies_free(&rp, 1);
    return err;
}
