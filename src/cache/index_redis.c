/* index_redis.c — the Redis backend's reads and its ops table; the writes
 * and their Lua scripts are index_redis_write.c's (one function per
 * operation of struct om_index_ops, index_backend.h, between the two).  The key schema is in index_redis.h; open, close, rebuild,
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

/* ---- helpers ------------------------------------------------------------- */

int om_index_redis__key(char *key, size_t keysz, const char *kind, const char *a, const char *b)
{
    int n = b != NULL ? snprintf(key, keysz, P "%s:%s:%s", kind, a, b)
                      : snprintf(key, keysz, P "%s:%s", kind, a);
    return n < 0 || (size_t)n >= keysz ? OM_ERR_INVALID : OM_OK;
}


static struct om_redis *R(struct om_index *base)
{
    return om_index_redis__of(base)->r;
}

/* One command, its reply in *rp (freed by the caller). */

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
    if ((err = om_index_redis__exec1(base, &c, &rp)) != OM_OK ||
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
    char name[OM_NAME_MAX + 1];
    /* "(" + last, then "(" + the last name listed; last comes from a
     * client (?last=) and may be longer than any name */
    size_t fromsz = (last != NULL ? strlen(last) : 0) + OM_NAME_MAX + 2;
    char *from = malloc(fromsz); /* freed below */
    size_t nc;
    long left = n;
    int err = OM_OK;
    bool first = true, more = true;

    if (from == NULL)
        return OM_ERR_NOMEM;
    snprintf(from, fromsz, "%s%s", last != NULL ? "(" : "-", last != NULL ? last : "");
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
            snprintf(from, fromsz, "(%s", name);
        }
        more = err == OM_OK && arr->elements == (size_t)page;
        if (left > 0)
            left -= (long)arr->elements;
        more = more && left != 0;
        om_redis_replies_free(rp, nc);
    }
    om_redis_replies_free(rp, 2);
    free(from);
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
    if ((err = om_index_redis__exec1(base, &c, &rp)) != OM_OK ||
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
    if ((err = om_index_redis__exec1(base, &c, &rp)) != OM_OK ||
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
    if ((err = om_index_redis__exec1(base, &c, &rp)) != OM_OK ||
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


/* ---- counts -------------------------------------------------------------- */

/* The repository count (ZCARD P repos) and the fields of P stats into
 * dst[i] (0 when never counted), in one round trip: the counts of the ops
 * table and of the admin view (index_redis_admin.c) alike. */
int om_index_redis__stats(struct om_index *base, const char *const *fields, uint64_t *const *dst,
                          size_t n, uint64_t *repos_out, const char *what)
{
    struct om_redis_cmd c[2];
    redisReply *rp[2] = {NULL, NULL};
    long long repos = 0;
    int err;

    om_redis_cmd_init(&c[0], NULL, 0);
    om_redis_arg_str(&c[0], "ZCARD");
    om_redis_arg_str(&c[0], P "repos");
    om_redis_cmd_init(&c[1], NULL, 0);
    om_redis_arg_str(&c[1], "HMGET");
    om_redis_arg_str(&c[1], P "stats");
    for (size_t i = 0; i < n; i++)
        om_redis_arg_str(&c[1], fields[i]);
    if ((err = om_redis_exec(R(base), c, 2, rp)) != OM_OK ||
        (err = om_redis_reply_int(rp[0], what, &repos)) != OM_OK ||
        (err = om_redis_reply_array(rp[1], what, n)) != OM_OK)
        goto done;
    *repos_out = repos > 0 ? (uint64_t)repos : 0;
    for (size_t i = 0; err == OM_OK && i < rp[1]->elements; i++) {
        int64_t v = 0;
        int e = om_redis_reply_num(rp[1]->element[i], what, &v);
        if (e == OM_OK)
            *dst[i] = v > 0 ? (uint64_t)v : 0;
        else if (e != OM_ERR_NOTFOUND) /* never counted yet: 0 */
            err = e;
    }
done:
    om_redis_replies_free(rp, 2);
    return err;
}

static int counts(struct om_index *base, struct om_index_counts *out)
{
    static const char *const fields[] = {"tags", "manifests", "blobs", "blob_bytes"};
    uint64_t *const dst[] = {&out->tags, &out->manifests, &out->blobs, &out->blob_bytes};

    memset(out, 0, sizeof(*out));
    return om_index_redis__stats(base, fields, dst, OM_ARRAY_LEN(fields), &out->repos, "counts");
}

/* ---- the ops table ------------------------------------------------------- */

const struct om_index_ops om_index_redis__ops = {
    .version = OM_INDEX_OPS_VERSION,
    .name = "redis",
    .tag_get = tag_get,
    .tag_put = om_index_redis__tag_put,
    .tag_checked = om_index_redis__tag_checked,
    .tags_list = tags_list,
    .manifest_get = manifest_get,
    .manifest_put = om_index_redis__manifest_put,
    .blob_put = om_index_redis__blob_put,
    .note_pull = om_index_redis__note_pull,
    .note_pulls = om_index_redis__note_pulls,
    .catalog = catalog,
    .route_get = route_get,
    .route_put = om_index_redis__route_put,
    .negative_get = om_index_redis__negative_get,
    .negative_put = om_index_redis__negative_put,
    .referrers_get = referrers_get,
    .referrers_put = om_index_redis__referrers_put,
    .counts = counts,
    .rebuild = om_index_redis__rebuild,
    .close = om_index_redis__close,
    .blob_size = blob_size,
    .health = om_index_redis__health,
    .member = om_index_redis__member,
};
