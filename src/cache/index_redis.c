/* index_redis.c — the Redis backend's operations: one function per
 * operation of struct om_index_ops (index_backend.h), the Lua scripts, and
 * the ops table.  The key schema is in index_redis.h; open, close, rebuild,
 * health and tags.log are index_redis_open.c's.
 *
 * How it keeps the contract of index.h (the SQLite backend's answers, case
 * by case; tests/unit/cache/test_index_redis.c runs one table on both):
 *   - Thread safety: no lock here.  Every operation is one pipeline (one
 *     round trip, ~50 µs) on a pooled connection (redis.c); a listing reads
 *     OM_IXR_PAGE names per round trip and calls fn between them, holding
 *     nothing.  Listings are therefore not one snapshot: a tag added during
 *     a long listing may or may not appear (the distribution spec asks no
 *     more; SQLite's listing happens to be one).
 *   - Atomicity: writes of several keys are one script each (tag_put,
 *     manifest_put, blob_put, a pull note): all or nothing, and the
 *     counters in P stats stay exact.  route_put is HSET + PEXPIRE in one
 *     pipeline (a lost PEXPIRE leaves a decision without expiry: harmless).
 *   - OM_ERR_NOTFOUND: the key (or the field that makes the record) is
 *     absent.  Redis unreachable: OM_ERR_UNAVAILABLE, returned at once
 *     while it stays down (redis.c); a malformed stored value: OM_ERR_IO,
 *     logged (every reply is checked for type and size first).
 *   - tags.log: tag_put appends the record first (index_redis_open.c), as
 *     the SQLite backend does, so a rebuild from the store finds it.
 *   - Times come from the caller, never from Redis's clock — except the PX
 *     expiries, which only let Redis forget entries the contract already
 *     calls expired: the value stored decides (negative entries hold their
 *     end time and are compared with the caller's `now`).
 *   - Lua numbers are doubles: times (1.7e12) and sizes below 2^53 are
 *     exact; the scripts write back the caller's strings or format with %d,
 *     never Lua's %.14g.
 *
 * Input has passed index.c's checks before it gets here (a tag given to
 * tag_get/tag_checked is only known to be non-NULL: one that is not a
 * valid tag cannot have been put, so it is OM_ERR_NOTFOUND here, and no key
 * is built from it).
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
                                     &S_NOTE, &S_NEG_DEL};
    for (size_t i = 0; i < OM_ARRAY_LEN(all); i++) {
        if (all[i]->sha[0] == '\0')
            om_redis_script_init(all[i]);
    }
}

/* ---- helpers ------------------------------------------------------------- */

int om_index_redis__key(char *key, size_t keysz, const char *kind, const char *a, const char *b)
{
    int n = b != NULL ? snprintf(key, keysz, P "%s:%s:%s", kind, a, b)
                      : snprintf(key, keysz, P "%s:%s", kind, a);
    return n < 0 || (size_t)n >= keysz ? OM_ERR_INVALID : OM_OK;
}

static int neg_key(char *key, size_t keysz, const char *name, const char *upstream)
{
    int n = snprintf(key, keysz, P "ng:%zu:%s:%s", strlen(upstream), upstream, name);
    return n < 0 || (size_t)n >= keysz ? OM_ERR_INVALID : OM_OK;
}

static struct om_redis *R(struct om_index *base)
{
    return om_index_redis__of(base)->r;
}

/* One command, its reply in *rp (freed by the caller). */
static int exec1(struct om_index *base, struct om_redis_cmd *c, redisReply **rp)
{
    return om_redis_exec(R(base), c, 1, rp);
}

/* A size or time field of an HMGET answer: a decimal number >= 0. */
static int field_u(const redisReply *rp, const char *what, uint64_t *out)
{
    int64_t v = 0;
    int err = om_redis_reply_num(rp, what, &v);
    if (err == OM_OK && v < 0)
        err = OM_ERR_IO;
    if (err == OM_OK)
        *out = (uint64_t)v;
    return err == OM_ERR_NOTFOUND ? OM_ERR_IO : err; /* a field missing from a record */
}

static int field_i(const redisReply *rp, const char *what, int64_t *out)
{
    int err = om_redis_reply_num(rp, what, out);
    return err == OM_ERR_NOTFOUND ? OM_ERR_IO : err;
}

/* ---- tags ---------------------------------------------------------------- */

static int tag_get(struct om_index *base, const char *repo, const char *tag,
                   struct om_tag_rec *out)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char key[OM_IXR_KEY_MAX], dg[OM_DIGEST_MAX + 1];
    int err;

    if (!om_index__tag_ok(tag))
        return OM_ERR_NOTFOUND;
    if ((err = om_index_redis__key(key, sizeof(key), "tag", repo, tag)) != OM_OK)
        return err;
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "HMGET");
    om_redis_arg_str(&c, key);
    om_redis_arg_str(&c, "d");
    om_redis_arg_str(&c, "mt");
    om_redis_arg_str(&c, "sz");
    om_redis_arg_str(&c, "fa");
    om_redis_arg_str(&c, "ca");
    if ((err = exec1(base, &c, &rp)) != OM_OK ||
        (err = om_redis_reply_array(rp, "tag get", 5)) != OM_OK)
        goto done;
    if (rp->elements != 5) {
        err = OM_ERR_IO;
        goto done;
    }
    memset(out, 0, sizeof(*out));
    err = om_redis_reply_copy(rp->element[0], "tag digest", dg, sizeof(dg));
    if (err == OM_ERR_NOTFOUND)
        goto done;
    if (err != OM_OK || om_digest_parse(&out->digest, dg, strlen(dg)) != OM_OK ||
        om_redis_reply_copy(rp->element[1], "tag media type", out->media_type,
                            sizeof(out->media_type)) != OM_OK ||
        field_u(rp->element[2], "tag size", &out->size) != OM_OK ||
        field_i(rp->element[3], "tag fetched_at", &out->fetched_at) != OM_OK ||
        field_i(rp->element[4], "tag checked_at", &out->checked_at) != OM_OK) {
        om_log(OM_LOG_ERROR, "index: bad record for tag %s:%s in redis", repo, tag);
        err = OM_ERR_IO;
    }
done:
    om_redis_replies_free(&rp, 1);
    return err;
}

static int tag_put(struct om_index *base, const char *repo, const char *tag,
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
    /* Fail fast while down: nothing goes to the log that Redis never got
     * (a rebuild would bring back a tag this replica then forgot). */
    if (!om_redis_available(ix->r)) {
        err = OM_ERR_UNAVAILABLE;
        goto done;
    }
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
    if ((err = exec1(base, &c, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, "tag put");
done:
    om_redis_replies_free(&rp, 1);
    return err;
}

static int tag_checked(struct om_index *base, const char *repo, const char *tag, int64_t now)
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
    if ((err = exec1(base, &c, &rp)) == OM_OK &&
        (err = om_redis_reply_int(rp, "tag checked", &v)) == OM_OK && v == 0)
        err = OM_ERR_NOTFOUND;
    om_redis_replies_free(&rp, 1);
    return err;
}

/* Page through the names of ZSET key in byte order, strictly after last,
 * at most n (n < 0: all), calling fn with each (at most maxlen bytes).
 * When exists_key is set, first check that `member` is in it (the
 * repository is known) in the same round trip: OM_ERR_NOTFOUND if not. */
static int list_lex(struct om_index *base, const char *key, const char *last, long n,
                    size_t maxlen, const char *exists_key, const char *member,
                    om_index_str_fn fn, void *ud)
{
    struct om_redis_cmd c[2];
    redisReply *rp[2] = {NULL, NULL};
    char from[OM_NAME_MAX + 2], name[OM_NAME_MAX + 1];
    size_t nc;
    long left = n;
    int err = OM_OK;
    bool first = true, more = true;

    if (last != NULL && strlen(last) > OM_NAME_MAX)
        last = NULL; /* cannot happen for names index.c passed; never a key */
    snprintf(from, sizeof(from), "%s%s", last != NULL ? "(" : "-", last != NULL ? last : "");
    while (err == OM_OK && more) {
        long page = left < 0 || left > OM_IXR_PAGE ? OM_IXR_PAGE : left;
        nc = 0;
        if (first && exists_key != NULL) {
            om_redis_cmd_init(&c[nc], NULL, 0);
            om_redis_arg_str(&c[nc], "ZSCORE");
            om_redis_arg_str(&c[nc], exists_key);
            om_redis_arg_str(&c[nc], member);
            nc++;
        }
        if (page > 0) {
            om_redis_cmd_init(&c[nc], NULL, 0);
            om_redis_arg_str(&c[nc], "ZRANGEBYLEX");
            om_redis_arg_str(&c[nc], key);
            om_redis_arg_str(&c[nc], from);
            om_redis_arg_str(&c[nc], "+");
            om_redis_arg_str(&c[nc], "LIMIT");
            om_redis_arg_i64(&c[nc], 0);
            om_redis_arg_i64(&c[nc], page);
            nc++;
        }
        if (nc == 0)
            break;
        if ((err = om_redis_exec(R(base), c, nc, rp)) != OM_OK)
            break;
        if (first && exists_key != NULL) {
            const char *s = NULL;
            size_t len = 0;
            err = om_redis_reply_str(rp[0], "repo exists", 64, &s, &len);
            if (err != OM_OK)
                break;
        }
        first = false;
        if (page == 0)
            break;
        redisReply *arr = rp[nc - 1];
        if ((err = om_redis_reply_array(arr, "list", (size_t)page)) != OM_OK)
            break;
        for (size_t i = 0; err == OM_OK && i < arr->elements; i++) {
            err = om_redis_reply_copy(arr->element[i], "list name", name,
                                      maxlen + 1 < sizeof(name) ? maxlen + 1 : sizeof(name));
            if (err != OM_OK) {
                err = OM_ERR_IO;
                break;
            }
            if ((err = fn(ud, name)) != 0)
                break;
            snprintf(from, sizeof(from), "(%s", name);
        }
        more = err == OM_OK && arr->elements == (size_t)page;
        if (left > 0)
            left -= (long)arr->elements;
        more = more && left != 0;
        om_redis_replies_free(rp, nc);
    }
    om_redis_replies_free(rp, 2);
    return err;
}

static int tags_list(struct om_index *base, const char *repo, const char *last, long n,
                     om_index_str_fn fn, void *ud)
{
    char tk[OM_IXR_KEY_MAX];
    int err = om_index_redis__key(tk, sizeof(tk), "t", repo, NULL);
    if (err == OM_OK)
        err = list_lex(base, tk, last, n, OM_TAG_MAX, P "repos", repo, fn, ud);
    return err;
}

/* ---- manifests and blobs ------------------------------------------------- */

static int manifest_get(struct om_index *base, const om_digest *d, struct om_manifest_rec *out)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char key[OM_IXR_KEY_MAX];
    int err;

    if ((err = om_index_redis__key(key, sizeof(key), "m", d->str, NULL)) != OM_OK)
        return err;
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "HMGET");
    om_redis_arg_str(&c, key);
    om_redis_arg_str(&c, "mt");
    om_redis_arg_str(&c, "sz");
    if ((err = exec1(base, &c, &rp)) != OM_OK ||
        (err = om_redis_reply_array(rp, "manifest get", 2)) != OM_OK)
        goto done;
    if (rp->elements != 2) {
        err = OM_ERR_IO;
        goto done;
    }
    memset(out, 0, sizeof(*out));
    err = om_redis_reply_copy(rp->element[0], "manifest media type", out->media_type,
                              sizeof(out->media_type));
    if (err == OM_OK)
        err = field_u(rp->element[1], "manifest size", &out->size);
    if (err == OM_ERR_TOOBIG)
        err = OM_ERR_IO;
done:
    om_redis_replies_free(&rp, 1);
    return err;
}

static int manifest_put(struct om_index *base, const char *repo, const om_digest *d,
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
    if ((err = exec1(base, &c, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, "manifest put");
done:
    om_redis_replies_free(&rp, 1);
    free(kids);
    free(kid_len);
    return err;
}

static int blob_put(struct om_index *base, const char *repo, const om_digest *d,
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
    if ((err = exec1(base, &c, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, "blob put");
    om_redis_replies_free(&rp, 1);
    return err;
}

static int blob_size(struct om_index *base, const om_digest *d, uint64_t *size)
{
    struct om_redis_cmd c[2];
    redisReply *rp[2] = {NULL, NULL};
    static const char *const kinds[2] = {"b", "m"}; /* the blob first */
    char key[2][OM_IXR_KEY_MAX];
    int err = OM_OK;

    for (size_t i = 0; err == OM_OK && i < 2; i++) {
        err = om_index_redis__key(key[i], sizeof(key[i]), kinds[i], d->str, NULL);
        om_redis_cmd_init(&c[i], NULL, 0);
        om_redis_arg_str(&c[i], "HGET");
        om_redis_arg_str(&c[i], key[i]);
        om_redis_arg_str(&c[i], "sz");
    }
    if (err == OM_OK)
        err = om_redis_exec(R(base), c, 2, rp);
    for (size_t i = 0; err == OM_OK && i < 2; i++) {
        int64_t v = 0;
        int e = om_redis_reply_num(rp[i], "blob size", &v);
        if (e == OM_ERR_NOTFOUND && i == 1)
            err = OM_ERR_NOTFOUND;
        else if (e == OM_OK && v < 0)
            err = OM_ERR_IO;
        else if (e == OM_OK) {
            *size = (uint64_t)v;
            break;
        } else if (e != OM_ERR_NOTFOUND)
            err = e;
    }
    om_redis_replies_free(rp, 2);
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

static int note_pull(struct om_index *base, const char *repo, const char *tag,
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
    if ((err = note_cmd(&c, keys, &pn)) == OM_OK && (err = exec1(base, &c, &rp)) == OM_OK &&
        (err = om_redis_reply_int(rp, "note pull", &found)) == OM_OK && found == 0)
        err = OM_ERR_NOTFOUND;
    om_redis_replies_free(&rp, 1);
    return err;
}

/* All notes in pipelines of NOTE_BATCH script calls (one round trip each;
 * the flusher's batch is at most 2048 notes). */
#define NOTE_BATCH 256
static int note_pulls(struct om_index *base, struct om_pull_note *notes, size_t n)
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
        if ((err = om_redis_exec(R(base), c, k, rp)) != OM_OK)
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

/* ---- catalog ------------------------------------------------------------- */

static int catalog(struct om_index *base, const char *last, long n, om_index_str_fn fn,
                   void *ud)
{
    return list_lex(base, P "repos", last, n, OM_NAME_MAX, NULL, NULL, fn, ud);
}

/* ---- route decisions ----------------------------------------------------- */

static int route_get(struct om_index *base, const char *name, char *upstream_out,
                     size_t upstream_sz, char *canonical_out, size_t canonical_sz)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char key[OM_IXR_KEY_MAX];
    int err;

    if ((err = om_index_redis__key(key, sizeof(key), "r", name, NULL)) != OM_OK)
        return err;
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "HMGET");
    om_redis_arg_str(&c, key);
    om_redis_arg_str(&c, "u");
    om_redis_arg_str(&c, "c");
    if ((err = exec1(base, &c, &rp)) != OM_OK ||
        (err = om_redis_reply_array(rp, "route get", 2)) != OM_OK)
        goto done;
    if (rp->elements != 2) {
        err = OM_ERR_IO;
        goto done;
    }
    if ((err = om_redis_reply_copy(rp->element[0], "route upstream", upstream_out,
                                   upstream_sz)) == OM_OK)
        err = om_redis_reply_copy(rp->element[1], "route canonical", canonical_out,
                                  canonical_sz);
done:
    om_redis_replies_free(&rp, 1);
    return err;
}

static int route_put(struct om_index *base, const char *name, const char *upstream,
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
    if ((err = om_redis_exec(R(base), c, 2, rp)) == OM_OK &&
        (err = om_redis_reply_ok(rp[0], "route put")) == OM_OK)
        err = om_redis_reply_ok(rp[1], "route expire");
    om_redis_replies_free(rp, 2);
    return err;
}

static bool negative_get(struct om_index *base, const char *name, const char *upstream,
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
    if (exec1(base, &c, &rp) != OM_OK || om_redis_reply_num(rp, "negative get", &until) != OM_OK)
        goto done; /* a miss (or cannot ask): ask upstream */
    om_redis_replies_free(&rp, 1);
    hit = until > now;
    if (!hit) { /* drop it so dead entries do not linger (unless re-put meanwhile) */
        om_redis_cmd_init(&c, &S_NEG_DEL, 1);
        om_redis_arg_str(&c, key);
        om_redis_arg_i64(&c, until);
        if (exec1(base, &c, &rp) == OM_OK)
            (void)om_redis_reply_ok(rp, "negative del");
    }
done:
    om_redis_replies_free(&rp, 1);
    return hit;
}

static int negative_put(struct om_index *base, const char *name, const char *upstream,
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
    if ((err = exec1(base, &c, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, "negative put");
    om_redis_replies_free(&rp, 1);
    return err;
}

/* ---- referrers ----------------------------------------------------------- */

static int referrers_get(struct om_index *base, const char *repo, const om_digest *d,
                         char **json, size_t *len, int64_t *fetched_at)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char key[OM_IXR_KEY_MAX];
    const char *s = NULL;
    size_t n = 0;
    int64_t t = 0;
    char *buf = NULL;
    int err;

    if ((err = om_index_redis__key(key, sizeof(key), "rf", d->str, repo)) != OM_OK)
        return err;
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "HMGET");
    om_redis_arg_str(&c, key);
    om_redis_arg_str(&c, "j");
    om_redis_arg_str(&c, "t");
    if ((err = exec1(base, &c, &rp)) != OM_OK ||
        (err = om_redis_reply_array(rp, "referrers get", 2)) != OM_OK)
        goto done;
    if (rp->elements != 2) {
        err = OM_ERR_IO;
        goto done;
    }
    err = om_redis_reply_str(rp->element[0], "referrers json", OM_INDEX_REFERRERS_MAX, &s, &n);
    if (err == OM_ERR_IO && rp->element[0]->type == REDIS_REPLY_STRING)
        err = OM_ERR_TOOBIG; /* larger than any put allows */
    if (err == OM_OK)
        err = field_i(rp->element[1], "referrers fetched_at", &t);
    if (err != OM_OK)
        goto done;
    if ((buf = malloc(n + 1)) == NULL) { /* owned by the caller via *json */
        err = OM_ERR_NOMEM;
        goto done;
    }
    if (n > 0)
        memcpy(buf, s, n);
    buf[n] = '\0';
    *json = buf;
    *len = n;
    if (fetched_at != NULL)
        *fetched_at = t;
done:
    om_redis_replies_free(&rp, 1);
    return err;
}

static int referrers_put(struct om_index *base, const char *repo, const om_digest *d,
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
    if ((err = exec1(base, &c, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, "referrers put");
    om_redis_replies_free(&rp, 1);
    return err;
}

/* ---- counts -------------------------------------------------------------- */

static int counts(struct om_index *base, struct om_index_counts *out)
{
    struct om_redis_cmd c[2];
    redisReply *rp[2] = {NULL, NULL};
    static const char *const fields[] = {"tags", "manifests", "blobs", "blob_bytes"};
    uint64_t *dst[] = {&out->tags, &out->manifests, &out->blobs, &out->blob_bytes};
    long long repos = 0;
    int err;

    memset(out, 0, sizeof(*out));
    om_redis_cmd_init(&c[0], NULL, 0);
    om_redis_arg_str(&c[0], "ZCARD");
    om_redis_arg_str(&c[0], P "repos");
    om_redis_cmd_init(&c[1], NULL, 0);
    om_redis_arg_str(&c[1], "HMGET");
    om_redis_arg_str(&c[1], P "stats");
    for (size_t i = 0; i < OM_ARRAY_LEN(fields); i++)
        om_redis_arg_str(&c[1], fields[i]);
    if ((err = om_redis_exec(R(base), c, 2, rp)) != OM_OK ||
        (err = om_redis_reply_int(rp[0], "counts repos", &repos)) != OM_OK ||
        (err = om_redis_reply_array(rp[1], "counts", OM_ARRAY_LEN(fields))) != OM_OK)
        goto done;
    out->repos = repos > 0 ? (uint64_t)repos : 0;
    for (size_t i = 0; err == OM_OK && i < rp[1]->elements; i++) {
        int64_t v = 0;
        int e = om_redis_reply_num(rp[1]->element[i], "counts", &v);
        if (e == OM_OK)
            *dst[i] = v > 0 ? (uint64_t)v : 0;
        else if (e != OM_ERR_NOTFOUND) /* never counted yet: 0 */
            err = e;
    }
done:
    om_redis_replies_free(rp, 2);
    return err;
}

/* ---- the ops table ------------------------------------------------------- */

const struct om_index_ops om_index_redis__ops = {
    .version = OM_INDEX_OPS_VERSION,
    .name = "redis",
    .tag_get = tag_get,
    .tag_put = tag_put,
    .tag_checked = tag_checked,
    .tags_list = tags_list,
    .manifest_get = manifest_get,
    .manifest_put = manifest_put,
    .blob_put = blob_put,
    .note_pull = note_pull,
    .note_pulls = note_pulls,
    .catalog = catalog,
    .route_get = route_get,
    .route_put = route_put,
    .negative_get = negative_get,
    .negative_put = negative_put,
    .referrers_get = referrers_get,
    .referrers_put = referrers_put,
    .counts = counts,
    .rebuild = om_index_redis__rebuild,
    .close = om_index_redis__close,
    .blob_size = blob_size,
    .health = om_index_redis__health,
};
