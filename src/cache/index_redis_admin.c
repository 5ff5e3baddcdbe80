/* index_redis_admin.c — the admin views of index_admin.h on the Redis key
 * schema (index_redis.h): the dashboard's counts, repositories paged with
 * search and an upstream filter (with their tag count, size, last pull and
 * pulls), a repository's tags paged and sorted, the tags naming a digest.
 * index_admin.c checks the input and calls these for a Redis-backed index.
 *
 * Design (the same answers as the SQLite queries of index_admin.c):
 *   - counts: ZCARD P repos + P stats, one round trip (the counters the
 *     write scripts keep exact).
 *   - repositories: the names are read in byte order OM_IXR_PAGE at a time
 *     (ZRANGEBYLEX; the upstream filter is the lex range ["<u>/", "<u>0"),
 *     '0' being '/' + 1), matched against the search string (ASCII case
 *     folded, as SQLite's lower()), and counted for the total.  Sorted by
 *     name, the figures are computed only for the page; sorted by a figure,
 *     for every match — at most ADMIN_SORT_MAX repositories, else
 *     OM_ERR_TOOBIG (a figure sort over more wants a maintained per-
 *     repository hash, written by the scripts: left for later).
 *   - A repository's figures: its tags (ZRANGE P t:<repo>, then each tag's
 *     d, lp, pc), and its size: every digest it reaches — its tags'
 *     manifests, P mr:/br:<repo> — closed over P mc:<digest> level by level
 *     (one pipeline per level), each digest once, summing the manifest's or
 *     else the blob's size: SQLite's recursive query, in round trips.  A
 *     page of 50 repositories costs a few hundred round trips (~15 ms).
 *   - tags: sorted by name, the page is a ZRANGE by rank (every score is 0,
 *     so rank order is byte order) and only its records are read; sorted by
 *     a time, every tag's time is read (at most ADMIN_TAGS_MAX tags).
 *   - Nothing here is one snapshot (SQLite reads in one transaction): a
 *     total and its page may disagree by what changed in between.
 */
#include "cache/index_redis.h"

#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define P OM_IXR_PREFIX
#define ADMIN_TAGS_MAX 100000      /* tags of one repository read for a sort */
#define ADMIN_SORT_MAX 10000       /* repositories a figure sort may compute */
#define ADMIN_REACH_MAX 200000     /* digests one repository's size may walk */
#define CHUNK 512                  /* commands in one pipeline */

typedef char tagname[OM_TAG_MAX + 1];
typedef char reponame[OM_NAME_MAX + 1];

static struct om_redis *R(struct om_index *ix)
{
    return om_index_redis_conn(ix);
}

/* ---- counts ----------------------------------------------------------------- */

int om_index_redis__admin_counts(struct om_index *ix, struct om_index_admin_counts *out)
{
    static const char *const fields[] = {"tags", "manifests", "blobs", "manifest_bytes",
                                         "blob_bytes"};
    uint64_t *const dst[] = {&out->tags, &out->manifests, &out->blobs, &out->manifest_bytes,
                             &out->blob_bytes};

    memset(out, 0, sizeof(*out));
    return om_index_redis__stats(ix, fields, dst, OM_ARRAY_LEN(fields), &out->repos,
                                 "admin counts");
}

/* ---- a repository's tags ----------------------------------------------------- */

/* Is repo in P repos? OM_ERR_NOTFOUND if not. */
static int repo_known(struct om_index *ix, const char *repo)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    const char *s = NULL;
    size_t len = 0;
    int err;

    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "ZSCORE");
    om_redis_arg_str(&c, P "repos");
    om_redis_arg_str(&c, repo);
    if ((err = om_redis_exec(R(ix), &c, 1, &rp)) == OM_OK)
        err = om_redis_reply_str(rp, "admin repo", 64, &s, &len);
    om_redis_replies_free(&rp, 1);
    return err;
}

/* The names of ZSET key by rank [from, from + n) (n > 0) into *out
 * (malloc'd, the caller frees), at most max. */
static int range_names(struct om_index *ix, const char *key, uint64_t from, size_t n, size_t max,
                       size_t namesz, char **out, size_t *got)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char *names = NULL;
    int err;

    *out = NULL;
    *got = 0;
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "ZRANGE");
    om_redis_arg_str(&c, key);
    om_redis_arg_i64(&c, (int64_t)from);
    om_redis_arg_i64(&c, (int64_t)(from + n - 1));
    if ((err = om_redis_exec(R(ix), &c, 1, &rp)) != OM_OK ||
        (err = om_redis_reply_array(rp, "admin names", max)) != OM_OK)
        goto done;
    if (rp->elements > 0 && (names = calloc(rp->elements, namesz)) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; err == OM_OK && i < rp->elements; i++)
        err = om_redis_reply_copy(rp->element[i], "admin name", names + i * namesz, namesz);
    if (err == OM_ERR_TOOBIG)
        err = OM_ERR_IO;
    if (err == OM_OK) {
        *out = names; /* owned by the caller */
        *got = rp->elements;
        names = NULL;
    }
done:
    free(names);
    om_redis_replies_free(&rp, 1);
    return err;
}

/* HMGET tag:<repo>:<names[i]> fields... for every name, CHUNK per round
 * trip; fn(ud, i, reply) with each array reply (elements == nfields). */
typedef int (*tag_fields_fn)(void *ud, size_t i, const redisReply *rp);

static int tag_fields(struct om_index *ix, const char *repo, const tagname *names, size_t n,
                      const char *const *fields, size_t nfields, tag_fields_fn fn, void *ud)
{
    struct om_redis_cmd *c = malloc(CHUNK * sizeof(*c)); /* freed below */
    char (*keys)[OM_IXR_KEY_MAX] = malloc(CHUNK * sizeof(*keys));
    redisReply *rp[CHUNK];
    int err = c == NULL || keys == NULL ? OM_ERR_NOMEM : OM_OK;

    for (size_t base = 0; err == OM_OK && base < n; base += CHUNK) {
        size_t k = n - base < CHUNK ? n - base : CHUNK;
        for (size_t j = 0; err == OM_OK && j < k; j++) {
            err = om_index_redis__key(keys[j], sizeof(keys[j]), "tag", repo, names[base + j]);
            om_redis_cmd_init(&c[j], NULL, 0);
            om_redis_arg_str(&c[j], "HMGET");
            om_redis_arg_str(&c[j], keys[j]);
            for (size_t f = 0; f < nfields; f++)
                om_redis_arg_str(&c[j], fields[f]);
        }
        if (err != OM_OK || (err = om_redis_exec(R(ix), c, k, rp)) != OM_OK)
            break;
        for (size_t j = 0; err == OM_OK && j < k; j++) {
            if ((err = om_redis_reply_array(rp[j], "admin tag", nfields)) == OM_OK &&
                rp[j]->elements != nfields)
                err = OM_ERR_IO;
            if (err == OM_OK)
                err = fn(ud, base + j, rp[j]);
        }
        om_redis_replies_free(rp, k);
    }
    free(c);
    free(keys);
    return err;
}

/* A number field that may be absent (0 then). */
static int64_t num_or_0(const redisReply *rp)
{
    int64_t v = 0;
    return om_redis_reply_num(rp, "admin field", &v) == OM_OK ? v : 0;
}

struct rows_ctx {
    const tagname *names;
    struct om_tag_row *rows;
};

static int fill_row(void *ud, size_t i, const redisReply *rp)
{
    struct rows_ctx *x = ud;
    struct om_tag_row *t = &x->rows[i];
    char dg[OM_DIGEST_MAX + 1];

    memset(t, 0, sizeof(*t));
    snprintf(t->tag, sizeof(t->tag), "%s", x->names[i]);
    if (om_redis_reply_copy(rp->element[0], "admin tag digest", dg, sizeof(dg)) == OM_OK)
        (void)om_digest_parse(&t->digest, dg, strlen(dg));
    (void)om_redis_reply_copy(rp->element[1], "admin tag media type", t->media_type,
                              sizeof(t->media_type));
    t->size = (uint64_t)(num_or_0(rp->element[2]) > 0 ? num_or_0(rp->element[2]) : 0);
    t->fetched_at = num_or_0(rp->element[3]);
    t->checked_at = num_or_0(rp->element[4]);
    t->last_pulled = num_or_0(rp->element[5]);
    t->pull_count = (uint64_t)(num_or_0(rp->element[6]) > 0 ? num_or_0(rp->element[6]) : 0);
    return OM_OK;
}

static int fetch_rows(struct om_index *ix, const char *repo, const tagname *names, size_t n,
                      struct om_tag_row *rows)
{
    static const char *const f[] = {"d", "mt", "sz", "fa", "ca", "lp", "pc"};
    struct rows_ctx x = {.names = names, .rows = rows};
    return tag_fields(ix, repo, names, n, f, OM_ARRAY_LEN(f), fill_row, &x);
}

struct keyed {
    tagname tag;
    int64_t key;
};

static int fill_key(void *ud, size_t i, const redisReply *rp)
{
    struct keyed *k = ud;
    k[i].key = num_or_0(rp->element[0]);
    return OM_OK;
}

static int by_key_desc(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return strcmp(x->tag, y->tag);
}

int om_index_redis__admin_tags(struct om_index *ix, const char *repo, om_tag_sort sort,
                               uint64_t offset, size_t limit, struct om_tag_row *rows, size_t *n,
                               uint64_t *total)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    char tk[OM_IXR_KEY_MAX];
    char *names = NULL;
    struct keyed *all = NULL;
    tagname *page = NULL;
    size_t got = 0;
    long long card = 0;
    int err;

    *n = 0;
    *total = 0;
    if ((err = repo_known(ix, repo)) != OM_OK ||
        (err = om_index_redis__key(tk, sizeof(tk), "t", repo, NULL)) != OM_OK)
        goto done;
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "ZCARD");
    om_redis_arg_str(&c, tk);
    if ((err = om_redis_exec(R(ix), &c, 1, &rp)) != OM_OK ||
        (err = om_redis_reply_int(rp, "admin tags", &card)) != OM_OK)
        goto done;
    *total = card > 0 ? (uint64_t)card : 0;
    if (offset >= *total)
        goto done;
    if (sort == OM_TAG_SORT_NAME) {
        if ((err = range_names(ix, tk, offset, limit, limit, sizeof(tagname), &names, &got)) !=
            OM_OK)
            goto done;
        if ((err = fetch_rows(ix, repo, (const tagname *)names, got, rows)) == OM_OK)
            *n = got;
        goto done;
    }
    if (*total > ADMIN_TAGS_MAX) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    if ((err = range_names(ix, tk, 0, (size_t)*total, ADMIN_TAGS_MAX, sizeof(tagname), &names,
                           &got)) != OM_OK)
        goto done;
    if (got == 0)
        goto done;
    if ((all = calloc(got, sizeof(*all))) == NULL || (page = calloc(limit, sizeof(*page))) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    tagname *nm = (tagname *)names;
    for (size_t i = 0; i < got; i++)
        memcpy(all[i].tag, nm[i], sizeof(tagname));
    {
        const char *f[1] = {sort == OM_TAG_SORT_FETCHED ? "fa" : "lp"};
        if ((err = tag_fields(ix, repo, (const tagname *)names, got, f, 1, fill_key, all)) != OM_OK)
            goto done;
    }
    qsort(all, got, sizeof(*all), by_key_desc);
    size_t k = 0;
    for (uint64_t i = offset; i < got && k < limit; i++)
        memcpy(page[k++], all[i].tag, sizeof(tagname));
    if ((err = fetch_rows(ix, repo, (const tagname *)page, k, rows)) == OM_OK)
        *n = k;
done:
    om_redis_replies_free(&rp, 1);
    free(names);
    free(all);
    free(page);
    return err;
}

struct dctx {
    const om_digest *d;
    const tagname *names;
    char (*out)[OM_TAG_MAX + 1];
    size_t max, *n;
};

static int match_digest(void *ud, size_t i, const redisReply *rp)
{
    struct dctx *x = ud;
    char dg[OM_DIGEST_MAX + 1];
    if (*x->n < x->max &&
        om_redis_reply_copy(rp->element[0], "admin tag digest", dg, sizeof(dg)) == OM_OK &&
        strcmp(dg, x->d->str) == 0)
        snprintf(x->out[(*x->n)++], OM_TAG_MAX + 1, "%s", x->names[i]);
    return OM_OK;
}

int om_index_redis__admin_digest_tags(struct om_index *ix, const char *repo, const om_digest *d,
                                      char (*out)[OM_TAG_MAX + 1], size_t max, size_t *n)
{
    char tk[OM_IXR_KEY_MAX];
    char *names = NULL;
    size_t got = 0;
    int err;

    *n = 0;
    if ((err = om_index_redis__key(tk, sizeof(tk), "t", repo, NULL)) != OM_OK ||
        (err = range_names(ix, tk, 0, ADMIN_TAGS_MAX, ADMIN_TAGS_MAX, sizeof(tagname), &names,
                           &got)) != OM_OK)
        goto done;
    {
        static const char *const f[] = {"d"};
        struct dctx x = {.d = d, .names = (const tagname *)names, .out = out, .max = max, .n = n};
        err = tag_fields(ix, repo, (const tagname *)names, got, f, 1, match_digest, &x);
    }
done:
    free(names);
    return err;
}

/* ---- repositories ------------------------------------------------------------ */

/* A growable set of digests (a repository's reach: hundreds, linear
 * search is fine; bounded by ADMIN_REACH_MAX). */
struct dset {
    om_digest *d;
    size_t n, cap;
};

static int dset_add(struct dset *s, const char *str, size_t len, bool *added)
{
    om_digest d;
    *added = false;
    if (om_digest_parse(&d, str, len) != OM_OK)
        return OM_OK; /* not a digest: nothing to count */
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->d[i].str, d.str) == 0)
            return OM_OK;
    }
    if (s->n == ADMIN_REACH_MAX)
        return OM_ERR_TOOBIG;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        om_digest *nd = realloc(s->d, cap * sizeof(*nd));
        if (nd == NULL)
            return OM_ERR_NOMEM;
        s->d = nd;
        s->cap = cap;
    }
    s->d[s->n++] = d;
    *added = true;
    return OM_OK;
}

/* Add every string element of array reply rp to s. */
static int dset_add_all(struct dset *s, const redisReply *rp, const char *what)
{
    bool added;
    int err = om_redis_reply_array(rp, what, ADMIN_REACH_MAX);
    for (size_t i = 0; err == OM_OK && i < rp->elements; i++) {
        const char *str = NULL;
        size_t len = 0;
        if ((err = om_redis_reply_str(rp->element[i], what, OM_DIGEST_MAX, &str, &len)) == OM_OK)
            err = dset_add(s, str, len, &added);
    }
    return err == OM_ERR_NOTFOUND ? OM_OK : err;
}

/* Run `cmd kind:<ds[i]> [field]` for every i in [from, to), CHUNK per
 * round trip, giving each reply to `take` (which must not move ds). */
static int per_digest(struct om_index *ix, const om_digest *ds, size_t from, size_t to,
                      const char *kind, const char *cmd, const char *field,
                      int (*take)(void *ud, size_t i, const redisReply *rp), void *ud)
{
    struct om_redis_cmd *c = malloc(CHUNK * sizeof(*c)); /* freed below */
    char (*keys)[OM_IXR_KEY_MAX] = malloc(CHUNK * sizeof(*keys));
    redisReply *rp[CHUNK];
    int err = c == NULL || keys == NULL ? OM_ERR_NOMEM : OM_OK;

    for (size_t base = from; err == OM_OK && base < to; base += CHUNK) {
        size_t k = to - base < CHUNK ? to - base : CHUNK;
        for (size_t j = 0; err == OM_OK && j < k; j++) {
            err = om_index_redis__key(keys[j], sizeof(keys[j]), kind, ds[base + j].str, NULL);
            om_redis_cmd_init(&c[j], NULL, 0);
            om_redis_arg_str(&c[j], cmd);
            om_redis_arg_str(&c[j], keys[j]);
            if (field != NULL)
                om_redis_arg_str(&c[j], field);
        }
        if (err != OM_OK || (err = om_redis_exec(R(ix), c, k, rp)) != OM_OK)
            break;
        for (size_t j = 0; err == OM_OK && j < k; j++)
            err = take(ud, base + j, rp[j]);
        om_redis_replies_free(rp, k);
    }
    free(c);
    free(keys);
    return err;
}

static int take_children(void *ud, size_t i, const redisReply *rp)
{
    (void)i;
    return dset_add_all(ud, rp, "admin children");
}

struct size_ctx {
    uint64_t *m_size;   /* per digest: its manifest size, or UINT64_MAX */
    uint64_t total;
    bool blobs;
};

static int take_size(void *ud, size_t i, const redisReply *rp)
{
    struct size_ctx *x = ud;
    int64_t v = 0;
    int e = om_redis_reply_num(rp, "admin size", &v);
    if (e != OM_OK && e != OM_ERR_NOTFOUND)
        return e;
    if (!x->blobs) {
        x->m_size[i] = e == OM_OK && v >= 0 ? (uint64_t)v : UINT64_MAX;
        if (x->m_size[i] != UINT64_MAX)
            x->total += x->m_size[i];
    } else if (x->m_size[i] == UINT64_MAX && e == OM_OK && v > 0) {
        x->total += (uint64_t)v; /* coalesce(manifest size, blob size, 0) */
    }
    return OM_OK;
}

struct tagsum {
    struct dset *reach;
    struct om_repo_row *row;
};

static int take_tag(void *ud, size_t i, const redisReply *rp)
{
    struct tagsum *x = ud;
    const char *s = NULL;
    size_t len = 0;
    bool added;
    int64_t lp = num_or_0(rp->element[1]), pc = num_or_0(rp->element[2]);
    (void)i;
    if (lp > x->row->last_pulled)
        x->row->last_pulled = lp;
    x->row->pull_count += pc > 0 ? (uint64_t)pc : 0;
    if (om_redis_reply_str(rp->element[0], "admin tag digest", OM_DIGEST_MAX, &s, &len) == OM_OK)
        return dset_add(x->reach, s, len, &added);
    return OM_OK;
}

/* row->name is set: fill in its figures. */
static int figures(struct om_index *ix, struct om_repo_row *row)
{
    struct om_redis_cmd c[3];
    redisReply *rp[3] = {NULL, NULL, NULL};
    char k[3][OM_IXR_KEY_MAX];
    static const char *const kinds[3] = {"t", "mr", "br"};
    struct dset reach = {0};
    char *names = NULL;
    uint64_t *msz = NULL;
    size_t got = 0;
    int err = OM_OK;

    row->tags = 0;
    row->size_bytes = 0;
    row->last_pulled = 0;
    row->pull_count = 0;
    for (int i = 0; err == OM_OK && i < 3; i++) {
        err = om_index_redis__key(k[i], sizeof(k[i]), kinds[i], row->name, NULL);
        om_redis_cmd_init(&c[i], NULL, 0);
        om_redis_arg_str(&c[i], i == 0 ? "ZCARD" : "SMEMBERS");
        om_redis_arg_str(&c[i], k[i]);
    }
    long long ntags = 0;
    if (err != OM_OK || (err = om_redis_exec(R(ix), c, 3, rp)) != OM_OK ||
        (err = om_redis_reply_int(rp[0], "admin tag count", &ntags)) != OM_OK ||
        (err = dset_add_all(&reach, rp[1], "admin manifests")) != OM_OK ||
        (err = dset_add_all(&reach, rp[2], "admin blobs")) != OM_OK)
        goto done;
    row->tags = ntags > 0 ? (uint64_t)ntags : 0;
    if (ntags > 0) {
        static const char *const f[] = {"d", "lp", "pc"};
        struct tagsum ts = {.reach = &reach, .row = row};
        if (ntags > ADMIN_TAGS_MAX) {
            err = OM_ERR_TOOBIG;
            goto done;
        }
        if ((err = range_names(ix, k[0], 0, (size_t)ntags, ADMIN_TAGS_MAX, sizeof(tagname),
                               &names, &got)) != OM_OK ||
            (err = tag_fields(ix, row->name, (const tagname *)names, got, f, 3, take_tag, &ts)) !=
                OM_OK)
            goto done;
    }
    /* Close over the children, one level per pass (over a copy of the
     * level: adding to the set may move it). */
    for (size_t from = 0; err == OM_OK && from < reach.n;) {
        size_t to = reach.n;
        om_digest *level = malloc((to - from) * sizeof(*level)); /* freed below */
        if (level == NULL) {
            err = OM_ERR_NOMEM;
            break;
        }
        memcpy(level, reach.d + from, (to - from) * sizeof(*level));
        err = per_digest(ix, level, 0, to - from, "mc", "SMEMBERS", NULL, take_children, &reach);
        free(level);
        from = to;
    }
    if (err != OM_OK || reach.n == 0)
        goto done;
    if ((msz = calloc(reach.n, sizeof(*msz))) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    struct size_ctx sc = {.m_size = msz};
    if ((err = per_digest(ix, reach.d, 0, reach.n, "m", "HGET", "sz", take_size, &sc)) != OM_OK)
        goto done;
    sc.blobs = true;
    if ((err = per_digest(ix, reach.d, 0, reach.n, "b", "HGET", "sz", take_size, &sc)) != OM_OK)
        goto done;
    row->size_bytes = sc.total;
done:
    om_redis_replies_free(rp, 3);
    free(reach.d);
    free(names);
    free(msz);
    return err;
}

static bool matches(const char *name, const char *q)
{
    return q == NULL || q[0] == '\0' || strcasestr(name, q) != NULL;
}

static int by_figure(const void *a, const void *b, void *arg)
{
    const struct om_repo_row *x = a, *y = b;
    om_repo_sort s = *(const om_repo_sort *)arg;
    int64_t kx = s == OM_REPO_SORT_PULLED ? x->last_pulled
                 : s == OM_REPO_SORT_PULLS ? (int64_t)x->pull_count
                                            : (int64_t)x->size_bytes;
    int64_t ky = s == OM_REPO_SORT_PULLED ? y->last_pulled
                 : s == OM_REPO_SORT_PULLS ? (int64_t)y->pull_count
                                            : (int64_t)y->size_bytes;
    if (kx != ky)
        return kx > ky ? -1 : 1;
    return strcmp(x->name, y->name);
}

int om_index_redis__admin_repos(struct om_index *ix, const struct om_repo_query *q,
                                struct om_repo_row *rows, size_t *n, uint64_t *total)
{
    bool has_up = q->upstream != NULL && q->upstream[0] != '\0';
    bool by_name = q->sort == OM_REPO_SORT_NAME;
    char from[OM_NAME_MAX + 3], to[OM_NAME_MAX + 3];
    struct om_repo_row *all = NULL; /* figure sorts: every match */
    size_t n_all = 0;
    int err = OM_OK;
    bool more = true;

    *n = 0;
    *total = 0;
    snprintf(from, sizeof(from), has_up ? "[%s/" : "-", has_up ? q->upstream : "");
    snprintf(to, sizeof(to), has_up ? "(%s0" : "+", has_up ? q->upstream : "");
    if (!by_name && (all = calloc(ADMIN_SORT_MAX, sizeof(*all))) == NULL)
        return OM_ERR_NOMEM;
    while (err == OM_OK && more) {
        struct om_redis_cmd c;
        redisReply *rp = NULL;
        om_redis_cmd_init(&c, NULL, 0);
        om_redis_arg_str(&c, "ZRANGEBYLEX");
        om_redis_arg_str(&c, P "repos");
        om_redis_arg_str(&c, from);
        om_redis_arg_str(&c, to);
        om_redis_arg_str(&c, "LIMIT");
        om_redis_arg_i64(&c, 0);
        om_redis_arg_i64(&c, OM_IXR_PAGE);
        if ((err = om_redis_exec(R(ix), &c, 1, &rp)) != OM_OK ||
            (err = om_redis_reply_array(rp, "admin repos", OM_IXR_PAGE)) != OM_OK) {
            om_redis_replies_free(&rp, 1);
            break;
        }
        for (size_t i = 0; err == OM_OK && i < rp->elements; i++) {
            reponame name;
            if ((err = om_redis_reply_copy(rp->element[i], "admin repo", name, sizeof(name))) !=
                OM_OK) {
                err = OM_ERR_IO;
                break;
            }
            snprintf(from, sizeof(from), "(%s", name);
            if (!matches(name, q->q))
                continue;
            if (by_name && *total >= q->offset && *n < q->limit)
                snprintf(rows[(*n)++].name, sizeof(rows[0].name), "%s", name);
            else if (!by_name && n_all == ADMIN_SORT_MAX)
                err = OM_ERR_TOOBIG;
            else if (!by_name)
                snprintf(all[n_all++].name, sizeof(all[0].name), "%s", name);
            (*total)++;
        }
        more = rp->elements == OM_IXR_PAGE;
        om_redis_replies_free(&rp, 1);
    }
    if (by_name) {
        for (size_t i = 0; err == OM_OK && i < *n; i++)
            err = figures(ix, &rows[i]);
    } else {
        for (size_t i = 0; err == OM_OK && i < n_all; i++)
            err = figures(ix, &all[i]);
        if (err == OM_OK)
            qsort_r(all, n_all, sizeof(*all), by_figure, (void *)&q->sort);
        for (uint64_t i = q->offset; err == OM_OK && i < n_all && *n < q->limit; i++)
            rows[(*n)++] = all[i];
    }
    if (err != OM_OK)
        *n = 0;
    free(all);
    return err;
}
