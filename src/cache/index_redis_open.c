/* index_redis_open.c — the Redis backend's life cycle: open (connect, check
 * the schema, rebuild an empty Redis from the store), close, rebuild,
 * health, and the local tags.log.  The operations are index_redis.c's; the
 * handle and the key schema are in index_redis.h.
 *
 * Design:
 *   - Open: the connection (redis.c) is made from cluster.redis and the
 *     password file.  An unreachable Redis does not fail the open — the
 *     index starts unavailable and every operation answers
 *     OM_ERR_UNAVAILABLE until the watchdog reconnects — so a replica
 *     started during an outage serves what its store has.  A password or
 *     database the server refuses, or a schema version this build does not
 *     know (P meta: schema), fails the open: that is a configuration to
 *     fix, and shared data another build wrote is never overwritten.
 *   - An empty Redis (no P meta) with content in the store is rebuilt, as
 *     SQLite rebuilds a missing index.db; with an empty store it only gets
 *     P meta.  The same check runs each time Redis comes back after an
 *     outage (the watchdog's on_up hook, on its thread): a Redis restarted
 *     without persistence is rebuilt then, not at the next start.  Until
 *     then (and while it runs) lookups miss: revalidation, never content.
 *   - Rebuild: the store and tags.log are read by the SQLite rebuild
 *     (index_rebuild.c) into a private in-memory SQLite database — the one
 *     copy of the rules of what a rebuild recovers — and its rows are then
 *     written to Redis in pipelines of REBUILD_BATCH commands, after every
 *     P* key but the lease was removed (SCAN + UNLINK).  Unlike SQLite's
 *     one transaction it is not atomic: while it runs other replicas see a
 *     partly filled index (cache misses and revalidations, never wrong
 *     content: the store is the truth and every record written is a
 *     rebuilt one).  One replica at a time: a lease P lock:rebuild
 *     (SET NX PX 10 min, released only by its holder).  A replica that
 *     finds the lease held skips the rebuild at open and answers
 *     OM_ERR_TIMEOUT to om_index_rebuild.
 *   - tags.log: the SQLite backend's file and format (<storage>/tags.log,
 *     one JSON object a line, one write(2) each, a torn last line fenced
 *     with a leading '\n'), so the same rebuild reads it and a replica can
 *     move between the backends.  In a cluster each replica's log holds the
 *     tags IT stored: a rebuild from one replica's directory recovers
 *     those; the bucket-wide record of tags comes with the S3 store.
 */
#include "cache/index_redis.h"

#include "cache/index_private.h"
#include "core/config.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define P OM_IXR_PREFIX
#define REBUILD_BATCH 256
#define REBUILD_ARENA (REBUILD_BATCH * 2048)
#define REBUILD_LEASE_MS 600000
#define SCAN_COUNT "1000"

/* KEYS lease; ARGV holder.  Releases only our own lease. */
static struct om_redis_script S_RELEASE = {
    .name = "lease_release",
    .src = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
           "return 0\n",
};

struct om_redis *om_index_redis_conn(struct om_index *ix)
{
    return ix != NULL && ix->ops == &om_index_redis__ops ? om_index_redis__of(ix)->r : NULL;
}

/* ---- tags.log ------------------------------------------------------------- */

static int log_open(struct om_index_redis *ix)
{
    struct stat sb;
    char last = '\n';

    ix->log_fd = open(ix->log_path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (ix->log_fd < 0 || fstat(ix->log_fd, &sb) != 0) {
        om_log(OM_LOG_ERROR, "index: open %s: %s", ix->log_path, strerror(errno));
        return OM_ERR_IO;
    }
    if (sb.st_size > 0 && pread(ix->log_fd, &last, 1, sb.st_size - 1) != 1)
        return OM_ERR_IO;
    ix->log_need_nl = last != '\n';
    return OM_OK;
}

int om_index_redis__log_append(struct om_index_redis *ix, const char *repo, const char *tag,
                               const om_digest *d, const char *media_type, uint64_t size,
                               int64_t t)
{
    char line[OM_INDEX_LOG_LINE_MAX + 2]; /* optional leading '\n' + record + '\n' */
    size_t off, n;
    ssize_t w;
    int err = OM_OK;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "repo", repo, "tag", tag, "digest",
                          d->str, "media_type", media_type, "size", (json_int_t)size, "t",
                          (json_int_t)t); /* freed below */

    pthread_mutex_lock(&ix->log_mu);
    off = ix->log_need_nl ? 1 : 0;
    if (o == NULL) { /* invalid UTF-8 in a string, or no memory */
        err = OM_ERR_INVALID;
        goto done;
    }
    line[0] = '\n';
    n = json_dumpb(o, line + off, OM_INDEX_LOG_LINE_MAX, JSON_COMPACT);
    if (n == 0 || n > OM_INDEX_LOG_LINE_MAX) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    line[off + n] = '\n';
    do {
        w = write(ix->log_fd, line, off + n + 1);
    } while (w < 0 && errno == EINTR);
    if (w != (ssize_t)(off + n + 1)) {
        int e = w < 0 ? errno : ENOSPC;
        om_log(OM_LOG_ERROR, "index: append %s: %s", ix->log_path, strerror(e));
        ix->log_need_nl = true; /* whatever landed is a torn line */
        err = (e == ENOSPC || e == EDQUOT) ? OM_ERR_NOSPACE : OM_ERR_IO;
        goto done;
    }
    ix->log_need_nl = false;
done:
    pthread_mutex_unlock(&ix->log_mu);
    json_decref(o);
    return err;
}

/* ---- the rebuild's writer: pipelined commands with copied strings --------- */

struct batch {
    struct om_redis *r;
    struct om_redis_cmd *c;     /* REBUILD_BATCH, owned */
    redisReply **rp;            /* REBUILD_BATCH, owned */
    char *arena;                /* REBUILD_ARENA bytes, owned: the strings of c[] */
    size_t n, used;
    int err;
};

static int batch_flush(struct batch *b)
{
    if (b->err == OM_OK && b->n > 0 && (b->err = om_redis_exec(b->r, b->c, b->n, b->rp)) == OM_OK) {
        for (size_t i = 0; b->err == OM_OK && i < b->n; i++)
            b->err = om_redis_reply_ok(b->rp[i], "rebuild write");
    }
    om_redis_replies_free(b->rp, b->n);
    b->n = 0;
    b->used = 0;
    return b->err;
}

/* The next command (NULL after an error); the strings of one command must
 * stay under 4 KiB (a record is under 1.5 KiB). */
static struct om_redis_cmd *batch_cmd(struct batch *b, const char *name)
{
    if (b->n == REBUILD_BATCH || REBUILD_ARENA - b->used < 4096)
        (void)batch_flush(b);
    if (b->err != OM_OK)
        return NULL;
    struct om_redis_cmd *c = &b->c[b->n++];
    om_redis_cmd_init(c, NULL, 0);
    om_redis_arg_str(c, name);
    return c;
}

static void batch_arg(struct batch *b, struct om_redis_cmd *c, const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;
    char *dst = b->arena + b->used;
    if (len + 1 > REBUILD_ARENA - b->used) { /* bounded by batch_cmd's 4 KiB */
        b->err = OM_ERR_TOOBIG;
        len = 0;
    }
    memcpy(dst, s != NULL ? s : "", len);
    dst[len] = '\0';
    b->used += len + 1;
    om_redis_arg(c, dst, len);
}

static void batch_key(struct batch *b, struct om_redis_cmd *c, const char *kind, const char *a,
                      const char *x)
{
    char key[OM_IXR_KEY_MAX];
    if (om_index_redis__key(key, sizeof(key), kind, a, x) != OM_OK)
        b->err = OM_ERR_INVALID;
    else
        batch_arg(b, c, key);
}

static const char *col(sqlite3_stmt *s, int i)
{
    const unsigned char *v = sqlite3_column_text(s, i);
    return v != NULL ? (const char *)v : "";
}

/* Run sql over the rebuilt database and turn each row into commands. */
typedef void (*row_fn)(struct batch *b, sqlite3_stmt *s);

static int copy_rows(sqlite3 *db, struct batch *b, const char *sql, row_fn fn)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);

    while (rc == SQLITE_OK && b->err == OM_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        fn(b, s);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK && rc != SQLITE_DONE && b->err == OM_OK)
        b->err = om_index__sql_err(db, rc, sql);
    return b->err;
}

static void row_repo(struct batch *b, sqlite3_stmt *s)
{
    struct om_redis_cmd *c = batch_cmd(b, "ZADD");
    if (c == NULL)
        return;
    om_redis_arg_str(c, P "repos");
    om_redis_arg_str(c, "0");
    batch_arg(b, c, col(s, 0));
}

static void row_tag(struct batch *b, sqlite3_stmt *s)
{
    struct om_redis_cmd *c = batch_cmd(b, "HSET");
    if (c == NULL)
        return;
    batch_key(b, c, "tag", col(s, 0), col(s, 1));
    om_redis_arg_str(c, "d");
    batch_arg(b, c, col(s, 2));
    om_redis_arg_str(c, "mt");
    batch_arg(b, c, col(s, 3));
    static const char *const f[] = {"sz", "fa", "ca", "lp", "pc"};
    for (int i = 0; i < 5; i++) {
        om_redis_arg_str(c, f[i]);
        om_redis_arg_i64(c, sqlite3_column_int64(s, 4 + i));
    }
    if ((c = batch_cmd(b, "ZADD")) == NULL)
        return;
    batch_key(b, c, "t", col(s, 0), NULL);
    om_redis_arg_str(c, "0");
    batch_arg(b, c, col(s, 1));
}

/* digest, [media_type,] size, created_at, last_access, pull_count */
static void row_content(struct batch *b, sqlite3_stmt *s, bool manifest)
{
    int i = 1;
    struct om_redis_cmd *c = batch_cmd(b, "HSET");
    if (c == NULL)
        return;
    batch_key(b, c, manifest ? "m" : "b", col(s, 0), NULL);
    if (manifest) {
        om_redis_arg_str(c, "mt");
        batch_arg(b, c, col(s, i++));
    }
    static const char *const f[] = {"sz", "ca", "la", "pc"};
    for (int k = 0; k < 4; k++) {
        om_redis_arg_str(c, f[k]);
        om_redis_arg_i64(c, sqlite3_column_int64(s, i + k));
    }
    if ((c = batch_cmd(b, "ZADD")) == NULL)
        return;
    om_redis_arg_str(c, P "la");
    om_redis_arg_str(c, "GT");
    om_redis_arg_i64(c, sqlite3_column_int64(s, i + 2));
    batch_arg(b, c, col(s, 0));
}

static void row_manifest(struct batch *b, sqlite3_stmt *s)
{
    row_content(b, s, true);
}

static void row_blob(struct batch *b, sqlite3_stmt *s)
{
    row_content(b, s, false);
}

static void row_child(struct batch *b, sqlite3_stmt *s)
{
    struct om_redis_cmd *c = batch_cmd(b, "SADD");
    if (c == NULL)
        return;
    batch_key(b, c, "mc", col(s, 0), NULL);
    batch_arg(b, c, col(s, 1));
}

/* repo, digest → both directions */
static void row_member(struct batch *b, sqlite3_stmt *s, const char *by_repo,
                       const char *by_digest)
{
    struct om_redis_cmd *c = batch_cmd(b, "SADD");
    if (c == NULL)
        return;
    batch_key(b, c, by_repo, col(s, 0), NULL);
    batch_arg(b, c, col(s, 1));
    if ((c = batch_cmd(b, "SADD")) == NULL)
        return;
    batch_key(b, c, by_digest, col(s, 1), NULL);
    batch_arg(b, c, col(s, 0));
}

static void row_mrepo(struct batch *b, sqlite3_stmt *s)
{
    row_member(b, s, "mr", "rm");
}

static void row_brepo(struct batch *b, sqlite3_stmt *s)
{
    row_member(b, s, "br", "rb");
}

static void row_stats(struct batch *b, sqlite3_stmt *s)
{
    static const char *const f[] = {"tags", "manifests", "blobs", "blob_bytes", "manifest_bytes"};
    struct om_redis_cmd *c = batch_cmd(b, "HSET");
    if (c == NULL)
        return;
    om_redis_arg_str(c, P "stats");
    for (int i = 0; i < 5; i++) {
        om_redis_arg_str(c, f[i]);
        om_redis_arg_i64(c, sqlite3_column_int64(s, i));
    }
}

/* Remove every P* key but the leases (SCAN is incremental: a replica
 * writing meanwhile may leave a record behind; the rebuild then overwrites
 * or keeps it, both correct). */
static int drop_all(struct om_redis *r)
{
    char cursor[32] = "0";
    int err = OM_OK;

    do {
        struct om_redis_cmd c;
        redisReply *rp = NULL;
        om_redis_cmd_init(&c, NULL, 0);
        om_redis_arg_str(&c, "SCAN");
        om_redis_arg_str(&c, cursor);
        om_redis_arg_str(&c, "MATCH");
        om_redis_arg_str(&c, P "*");
        om_redis_arg_str(&c, "COUNT");
        om_redis_arg_str(&c, SCAN_COUNT);
        if ((err = om_redis_exec(r, &c, 1, &rp)) != OM_OK ||
            (err = om_redis_reply_array(rp, "rebuild scan", 2)) != OM_OK ||
            rp->elements != 2 ||
            (err = om_redis_reply_copy(rp->element[0], "scan cursor", cursor, sizeof(cursor))) !=
                OM_OK ||
            (err = om_redis_reply_array(rp->element[1], "scan keys", 100000)) != OM_OK) {
            if (err == OM_OK)
                err = OM_ERR_IO;
            om_redis_replies_free(&rp, 1);
            break;
        }
        redisReply *keys = rp->element[1];
        size_t n = 0;
        const char **kv = calloc(keys->elements + 1, sizeof(*kv)); /* freed below */
        size_t *kl = calloc(keys->elements + 1, sizeof(*kl));
        if (kv == NULL || kl == NULL)
            err = OM_ERR_NOMEM;
        for (size_t i = 0; err == OM_OK && i < keys->elements; i++) {
            const char *s = NULL;
            size_t len = 0;
            if ((err = om_redis_reply_str(keys->element[i], "scan key", OM_IXR_KEY_MAX, &s,
                                          &len)) == OM_OK &&
                !(len >= strlen(P "lock:") && memcmp(s, P "lock:", strlen(P "lock:")) == 0)) {
                kv[n] = s;
                kl[n++] = len;
            }
        }
        if (err == OM_OK && n > 0) {
            struct om_redis_cmd u;
            redisReply *urp = NULL;
            om_redis_cmd_init(&u, NULL, 0);
            om_redis_arg_str(&u, "UNLINK");
            om_redis_arg_extra(&u, kv, kl, n);
            if ((err = om_redis_exec(r, &u, 1, &urp)) == OM_OK)
                err = om_redis_reply_ok(urp, "rebuild unlink");
            om_redis_replies_free(&urp, 1);
        }
        free(kv);
        free(kl);
        om_redis_replies_free(&rp, 1);
    } while (err == OM_OK && strcmp(cursor, "0") != 0);
    return err;
}

static int lease(struct om_redis *r, const char *holder, bool take, bool *got)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    int err;

    if (take) {
        om_redis_cmd_init(&c, NULL, 0);
        om_redis_arg_str(&c, "SET");
        om_redis_arg_str(&c, P "lock:rebuild");
        om_redis_arg_str(&c, holder);
        om_redis_arg_str(&c, "NX");
        om_redis_arg_str(&c, "PX");
        om_redis_arg_i64(&c, REBUILD_LEASE_MS);
    } else {
        om_redis_cmd_init(&c, &S_RELEASE, 1);
        om_redis_arg_str(&c, P "lock:rebuild");
        om_redis_arg_str(&c, holder);
    }
    if ((err = om_redis_exec(r, &c, 1, &rp)) == OM_OK)
        err = om_redis_reply_ok(rp, take ? "rebuild lease" : "rebuild release");
    if (got != NULL)
        *got = err == OM_OK && rp->type == REDIS_REPLY_STATUS;
    om_redis_replies_free(&rp, 1);
    return err;
}

static int rebuild(struct om_index_redis *ix, size_t *n_manifests, size_t *n_tags)
{
    struct om_index_db_res res;
    struct batch b = {.r = ix->r};
    sqlite3 *db = NULL;
    char holder[64];
    bool got = false;
    size_t nm = 0, nt = 0;
    int64_t now = om_now_ms();
    int err;

    snprintf(holder, sizeof(holder), "%ld-%lld", (long)getpid(), (long long)om_now_us());
    if ((err = lease(ix->r, holder, true, &got)) != OM_OK)
        goto done;
    if (!got) {
        om_log(OM_LOG_WARN, "index: another replica is rebuilding the redis index; not now");
        err = OM_ERR_TIMEOUT;
        goto done;
    }
    b.c = malloc(REBUILD_BATCH * sizeof(*b.c)); /* freed below */
    b.rp = calloc(REBUILD_BATCH, sizeof(*b.rp));
    b.arena = malloc(REBUILD_ARENA);
    if (b.c == NULL || b.rp == NULL || b.arena == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if ((err = om_index__db_open(":memory:",
                                 OM_INDEX_DB_WRITE | OM_INDEX_DB_CREATE | OM_INDEX_DB_VERSION, &db,
                                 &res)) != OM_OK ||
        (err = om_index__rebuild_db(db, ix->base.st, ix->log_path, now, &nm, &nt)) != OM_OK ||
        (err = drop_all(ix->r)) != OM_OK)
        goto done;
    copy_rows(db, &b, "SELECT name FROM repos", row_repo);
    copy_rows(db, &b, "SELECT repo, tag, digest, media_type, size, fetched_at, checked_at,"
                      " last_pulled, pull_count FROM tags", row_tag);
    copy_rows(db, &b, "SELECT digest, media_type, size, created_at, last_access, pull_count"
                      " FROM manifests", row_manifest);
    copy_rows(db, &b, "SELECT digest, size, created_at, last_access, pull_count FROM blobs",
              row_blob);
    copy_rows(db, &b, "SELECT parent, child FROM manifest_children", row_child);
    copy_rows(db, &b, "SELECT repo, digest FROM manifest_repos", row_mrepo);
    copy_rows(db, &b, "SELECT repo, digest FROM blob_repos", row_brepo);
    copy_rows(db, &b, "SELECT (SELECT count(*) FROM tags), (SELECT count(*) FROM manifests),"
                      " (SELECT count(*) FROM blobs), (SELECT coalesce(sum(size), 0) FROM blobs),"
                      " (SELECT coalesce(sum(size), 0) FROM manifests)", row_stats);
    struct om_redis_cmd *c = batch_cmd(&b, "HSET");
    if (c != NULL) {
        om_redis_arg_str(c, P "meta");
        om_redis_arg_str(c, "schema");
        om_redis_arg_str(c, OM_IXR_SCHEMA);
        om_redis_arg_str(c, "created_at");
        om_redis_arg_i64(c, now);
    }
    if ((err = batch_flush(&b)) != OM_OK)
        goto done;
    {
        struct om_redis_status rs;
        char nms[24], nts[24];
        om_redis_status(ix->r, &rs);
        snprintf(nms, sizeof(nms), "%zu", nm);
        snprintf(nts, sizeof(nts), "%zu", nt);
        om_log_kv(OM_LOG_INFO, "index: redis rebuilt from the store", "redis", rs.where,
                  "manifests", nms, "tags", nts, NULL);
    }
    if (n_manifests != NULL)
        *n_manifests = nm;
    if (n_tags != NULL)
        *n_tags = nt;
done:
    if (got)
        (void)lease(ix->r, holder, false, NULL);
    om_index__db_close(db, NULL, 0, "index rebuild");
    free(b.c);
    free(b.rp);
    free(b.arena);
    return err;
}

int om_index_redis__rebuild(struct om_index *base, size_t *n_manifests, size_t *n_tags)
{
    return rebuild(om_index_redis__of(base), n_manifests, n_tags);
}

/* ---- open / close / health ------------------------------------------------ */

static int store_nonempty_cb(void *ud, const om_digest *d, uint64_t size)
{
    (void)ud; (void)d; (void)size;
    return 1;
}

/* P meta's schema: "" when Redis holds no index yet. */
static int schema_of(struct om_index_redis *ix, char *out, size_t outsz)
{
    struct om_redis_cmd c;
    redisReply *rp = NULL;
    int err;

    out[0] = '\0';
    om_redis_cmd_init(&c, NULL, 0);
    om_redis_arg_str(&c, "HGET");
    om_redis_arg_str(&c, P "meta");
    om_redis_arg_str(&c, "schema");
    if ((err = om_redis_exec(ix->r, &c, 1, &rp)) == OM_OK)
        err = om_redis_reply_copy(rp, "schema", out, outsz);
    if (err == OM_ERR_NOTFOUND)
        err = OM_OK;
    om_redis_replies_free(&rp, 1);
    return err;
}

static int mark_created(struct om_index_redis *ix)
{
    struct om_redis_cmd c[2];
    redisReply *rp[2] = {NULL, NULL};
    int err;

    om_redis_cmd_init(&c[0], NULL, 0);
    om_redis_arg_str(&c[0], "HSETNX");
    om_redis_arg_str(&c[0], P "meta");
    om_redis_arg_str(&c[0], "schema");
    om_redis_arg_str(&c[0], OM_IXR_SCHEMA);
    om_redis_cmd_init(&c[1], NULL, 0);
    om_redis_arg_str(&c[1], "HSETNX");
    om_redis_arg_str(&c[1], P "meta");
    om_redis_arg_str(&c[1], "created_at");
    om_redis_arg_i64(&c[1], om_now_ms());
    if ((err = om_redis_exec(ix->r, c, 2, rp)) == OM_OK &&
        (err = om_redis_reply_ok(rp[0], "meta")) == OM_OK)
        err = om_redis_reply_ok(rp[1], "meta");
    om_redis_replies_free(rp, 2);
    return err;
}

/* What a Redis found at the open or after an outage holds: our schema (go
 * on), nothing (mark it ours, or rebuild it from the store when the store
 * has content), or another schema (OM_ERR_INVALID: left alone). */
static int adopt(struct om_index_redis *ix, bool *rebuilt)
{
    char schema[16];
    int err;

    if ((err = schema_of(ix, schema, sizeof(schema))) != OM_OK)
        return err;
    if (schema[0] != '\0' && strcmp(schema, OM_IXR_SCHEMA) != 0) {
        om_log(OM_LOG_ERROR,
               "index: redis holds an index of schema version %s, this build knows %s; "
               "not touching it (another build's data, or another application's database)",
               schema, OM_IXR_SCHEMA);
        return OM_ERR_INVALID;
    }
    if (schema[0] != '\0')
        return OM_OK;
    if (om_store_walk(ix->base.st, store_nonempty_cb, NULL) != 1)
        return mark_created(ix);
    om_log(OM_LOG_WARN, "index: redis holds no index but the store has content; rebuilding");
    err = rebuild(ix, NULL, NULL);
    if (err == OM_OK && rebuilt != NULL)
        *rebuilt = true;
    return err == OM_ERR_TIMEOUT ? OM_OK : err; /* another replica is at it */
}

/* The watchdog's hook: Redis is back — did it keep its data? (A Redis
 * restarted without persistence comes back empty: rebuilt here, once, by
 * the replica that takes the lease; the others find it done.) */
static void on_redis_up(void *ud)
{
    (void)adopt(ud, NULL);
}

int om_index_redis_open(struct om_index **out, struct om_store *st, const struct om_config *cfg,
                        bool *rebuilt)
{
    struct om_index_redis *ix = NULL;
    struct om_redis_opts o;
    const char *why = NULL;
    int err;

    *out = NULL;
    if (rebuilt != NULL)
        *rebuilt = false;
    memset(&o, 0, sizeof(o));
    if (cfg->cluster_redis == NULL ||
        om_parse_redis_url(&o.url, cfg->cluster_redis, strlen(cfg->cluster_redis), &why) !=
            OM_OK) {
        om_log(OM_LOG_ERROR, "index: cluster.redis %s", why != NULL ? why : "is not set");
        err = OM_ERR_INVALID;
        goto done;
    }
    o.password = cfg->cluster_redis_password;
    o.who = "index";
    if ((ix = calloc(1, sizeof(*ix))) == NULL) { /* owned by *out, or closed below */
        err = OM_ERR_NOMEM;
        goto done;
    }
    o.on_up = on_redis_up;
    o.ud = ix;
    ix->base.ops = &om_index_redis__ops;
    ix->base.st = st;
    ix->log_fd = -1;
    pthread_mutex_init(&ix->log_mu, NULL);
    om_index_redis__scripts_init();
    if (S_RELEASE.sha[0] == '\0')
        om_redis_script_init(&S_RELEASE);
    if ((err = om_index__path(ix->log_path, sizeof(ix->log_path), om_store_root(st),
                              "tags.log")) != OM_OK ||
        (err = log_open(ix)) != OM_OK || (err = om_redis_open(&ix->r, &o)) != OM_OK)
        goto done;
    if (om_redis_available(ix->r) && (err = adopt(ix, rebuilt)) != OM_OK)
        goto done;
    *out = &ix->base;
    ix = NULL;
done:
    explicit_bzero(&o, sizeof(o));
    om_index_redis__close(ix != NULL ? &ix->base : NULL);
    return err;
}

void om_index_redis__close(struct om_index *base)
{
    struct om_index_redis *ix = om_index_redis__of(base);

    if (ix == NULL)
        return;
    om_redis_close(ix->r);
    if (ix->log_fd >= 0)
        close(ix->log_fd);
    pthread_mutex_destroy(&ix->log_mu);
    free(ix);
}

int om_index_redis__health(struct om_index *base, struct om_index_health *out)
{
    struct om_redis_status s;

    om_redis_status(om_index_redis__of(base)->r, &s);
    out->shared = true;
    out->available = s.available;
    out->since_ms = s.since_ms;
    out->outages = s.outages;
    snprintf(out->last_error, sizeof(out->last_error), "%s", s.last_error);
    snprintf(out->where, sizeof(out->where), "%s", s.where);
    return OM_OK;
}
