/* store_s3.c — the content store in an S3-compatible bucket (store.h is
 * what callers see, store_backend.h the contract; store_s3.h lists this
 * backend's files).  How the contract is kept:
 *
 *   Atomic commit.  Content lives at <prefix>blobs/sha256/<2>/<64>.  A
 *     download is spooled to a local ingest file and, as it grows, sent as
 *     the parts of a multipart upload at that final key
 *     (store_s3_ingest.c); S3 shows nothing at the key until
 *     CompleteMultipartUpload, which the commit sends only after the
 *     caller's digest check; an abort is AbortMultipartUpload.  A small
 *     object (a blob no larger than a part, a manifest) is one PUT at
 *     commit, with the digest's hex as x-amz-content-sha256: the bucket
 *     refuses bytes that do not hash to it.  Two commits of one digest
 *     (two replicas) both write identical bytes; If-None-Match: * on the
 *     PUT of a small object skips the second one where the store supports
 *     it (RGW does).
 *   "Exists".  has() answers from what this process knows is in the bucket
 *     (store_s3_objects.c: filled by the listing at open, kept by this
 *     process's commits and removes, by HEADs, reconciled by every walk):
 *     no request on the hit path.  stat() is the HEAD that asks the bucket
 *     (the job path asks it before going upstream, so an object another
 *     replica committed is found there).  walk() is ListObjectsV2, paged.
 *   bytes().  The table's total: recomputed by the listing at open (not
 *     kept in the index), adjusted by commits and removes, reconciled by
 *     walks (so a removal by `ocimirror gc` beside a server shows at the
 *     server's next GC walk).
 *   remove.  DELETE.  A client being served reads on: a redirected client
 *     has its own GET in flight, a streamed one its reader's.  (A new
 *     ranged GET after the DELETE finds nothing: S3 has no open file to
 *     keep, which the grace period of GC covers.)
 *   quarantine.  Moved aside, not deleted: a HEAD checks the size the
 *     caller saw, a server-side copy puts the object at
 *     <prefix>quarantine/sha256/<64 hex>, a DELETE removes the original.
 *     (No x-amz-copy-source-if-match: libcurl 7.88 cannot sign it beside
 *     x-amz-copy-source, store_s3_req.c.)  A good copy committed between
 *     the HEAD and the delete is deleted with it: it is content-addressed
 *     and fetched again, never served wrong.
 *   Reads.  read_at is a ranged GET (blocking: job threads, tools, the
 *     manifest path); reader_open streams through one I/O thread
 *     (store_s3_stream.c), for the HTTP threads.  open_blob is absent (no
 *     OM_STORE_CAN_SENDFILE): objects are not local files.
 *   presign_get.  A SigV4 query-signed GET URL (OM_STORE_CAN_PRESIGN).
 *   Local directory.  storage.path holds the owner's lock (<root>/lock:
 *     one server per directory, as with fs), ingest/ (the spool), uploads/
 *     (a record per multipart upload in flight, so a crashed run's uploads
 *     are aborted at the next open), and the index.  gc and fsck attach
 *     beside a server: no lock, nothing cleaned.
 *
 * Errors: no answer from the bucket (down, refused, timed out) is
 * OM_ERR_IO, logged by store_s3_req.c; a refusal is OM_ERR_IO or
 * OM_ERR_NOSPACE (quota), 404 OM_ERR_NOTFOUND.
 */
#include "cache/store_s3.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

#define LIST_PAGE "1000"
#define PATH_MAX_S3 4096

struct om_store_s3 *om_store_s3__of(struct om_store *st)
{
    return (struct om_store_s3 *)st; /* base is the first member */
}

int om_store_s3__path(const struct om_store_s3 *s, const char *rel, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s/%s", s->root, rel);
    return n < 0 || (size_t)n >= outsz ? OM_ERR_TOOBIG : OM_OK;
}

static int key_of(const struct om_store_s3 *s, const char *area, const om_digest *d, bool fan,
                  char *out, size_t outsz)
{
    om_digest check;
    int n;

    if (d == NULL || om_digest_parse(&check, d->str, strnlen(d->str, sizeof(d->str))) != OM_OK)
        return OM_ERR_INVALID;
    const char *hex = om_digest_hex(&check);
    if (fan)
        n = snprintf(out, outsz, "%s%s/sha256/%.2s/%s", s->prefix, area, hex, hex);
    else
        n = snprintf(out, outsz, "%s%s/sha256/%s", s->prefix, area, hex);
    return n < 0 || (size_t)n >= outsz ? OM_ERR_TOOBIG : OM_OK;
}

int om_store_s3__key(const struct om_store_s3 *s, const om_digest *d, char *out, size_t outsz)
{
    return key_of(s, "blobs", d, true, out, outsz);
}

/* ---- uploads of this process -------------------------------------------- */

void om_store_s3__live_add(struct om_store_s3 *s, const char *upload_id)
{
    struct om_s3_live *l = calloc(1, sizeof(*l)); /* owned by s->live */
    if (l == NULL)
        return; /* only costs the protection against a stale-abort of it */
    snprintf(l->upload_id, sizeof(l->upload_id), "%s", upload_id);
    pthread_mutex_lock(&s->mu);
    l->next = s->live;
    s->live = l;
    pthread_mutex_unlock(&s->mu);
}

void om_store_s3__live_del(struct om_store_s3 *s, const char *upload_id)
{
    pthread_mutex_lock(&s->mu);
    for (struct om_s3_live **p = &s->live; *p != NULL; p = &(*p)->next) {
        if (strcmp((*p)->upload_id, upload_id) == 0) {
            struct om_s3_live *l = *p;
            *p = l->next;
            free(l);
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

bool om_store_s3__live_has(struct om_store_s3 *s, const char *upload_id)
{
    bool found = false;
    pthread_mutex_lock(&s->mu);
    for (struct om_s3_live *l = s->live; l != NULL && !found; l = l->next)
        found = strcmp(l->upload_id, upload_id) == 0;
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* ---- the local directory -------------------------------------------------- */

static int mkdir_ok(const char *path)
{
    struct stat sb;
    if (mkdir(path, 0755) == 0 || (errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)))
        return OM_OK;
    om_log(OM_LOG_ERROR, "store: mkdir %s: %s", path, strerror(errno));
    return om_store_sys_err(errno);
}

/* The owner's lock, as the fs backend takes it (one server a directory). */
static int take_lock(struct om_store_s3 *s)
{
    char path[PATH_MAX_S3], pid[32];
    int err = OM_OK;

    if ((err = om_store_s3__path(s, "lock", path, sizeof(path))) != OM_OK)
        goto done;
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0) {
        om_log(OM_LOG_ERROR, "store: cannot open %s: %s", path, strerror(errno));
        err = om_store_sys_err(errno);
        goto done;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        ssize_t n = pread(s->lock_fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        om_log(OM_LOG_ERROR,
               "store: %s is in use by another ocimirror (pid %s): one storage directory serves "
               "one mirror (gc and fsck may run beside it)",
               s->root, pid[0] ? pid : "unknown");
        err = OM_ERR_DENIED;
        goto done;
    }
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(s->lock_fd, 0) != 0 || pwrite(s->lock_fd, pid, (size_t)n, 0) != n)
        om_log(OM_LOG_WARN, "store: cannot write the pid into %s", path);
done:
    return err;
}

/* Remove what a previous run left in <root>/ingest (its spool files). */
static void clean_spool(struct om_store_s3 *s)
{
    char path[PATH_MAX_S3];
    unsigned removed = 0;
    DIR *dir = NULL;

    if (om_store_s3__path(s, "ingest", path, sizeof(path)) != OM_OK ||
        (dir = opendir(path)) == NULL)
        return;
    for (struct dirent *de; (de = readdir(dir)) != NULL;) {
        if (de->d_name[0] != '.' && unlinkat(dirfd(dir), de->d_name, 0) == 0)
            removed++;
    }
    closedir(dir);
    if (removed > 0)
        om_log(OM_LOG_INFO, "store: removed %u stale spool file(s)", removed);
}

/* ---- opening ------------------------------------------------------------- */

static void s3_free(struct om_store_s3 *s)
{
    if (s == NULL)
        return;
    om_store_s3__streamer_free(s->streamer);
    om_s3_objects_free(s->objs);
    om_s3_client_free(s->cl);
    while (s->live != NULL) {
        struct om_s3_live *l = s->live;
        s->live = l->next;
        free(l);
    }
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    pthread_mutex_destroy(&s->mu);
    free(s->prefix);
    free(s->root);
    free(s);
}

static int s3_walk_all(struct om_store *base, om_store_walk_fn fn, void *ud);

static int count_cb(void *ud, const om_digest *d, uint64_t size)
{
    (void)d, (void)size;
    (*(uint64_t *)ud)++;
    return 0;
}

int om_store_s3_open(struct om_store **out, const struct om_config *cfg, bool attach)
{
    const struct om_s3_cfg *sc = &cfg->storage_s3;
    struct om_store_s3 *s = NULL;
    char path[PATH_MAX_S3];
    uint64_t n = 0;
    int64_t t0 = om_now_ms();
    int err = OM_OK;

    *out = NULL;
    if (cfg->storage_path == NULL || cfg->storage_path[0] == '\0' ||
        strlen(cfg->storage_path) + 64 >= PATH_MAX_S3 || sc->bucket == NULL) {
        err = OM_ERR_INVALID;
        goto done;
    }
    s = calloc(1, sizeof(*s)); /* owned by the caller via *out, or freed below */
    if (s == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->lock_fd = -1;
    s->base.ops = &om_store_s3__ops;
    s->attached = attach;
    s->part_size = sc->part_size >= OM_S3_PART_MIN ? sc->part_size : OM_S3_PART_MIN;
    snprintf(s->bucket, sizeof(s->bucket), "%s", sc->bucket);
    if ((s->root = strdup(cfg->storage_path)) == NULL ||
        (s->prefix = strdup(sc->prefix != NULL ? sc->prefix : "")) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if (attach) {
        struct stat sb;
        if (stat(s->root, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            err = OM_ERR_NOTFOUND;
            goto done;
        }
    } else {
        if ((err = mkdir_ok(s->root)) != OM_OK || (err = take_lock(s)) != OM_OK ||
            (err = om_store_s3__path(s, "ingest", path, sizeof(path))) != OM_OK ||
            (err = mkdir_ok(path)) != OM_OK ||
            (err = om_store_s3__path(s, "uploads", path, sizeof(path))) != OM_OK ||
            (err = mkdir_ok(path)) != OM_OK)
            goto done;
    }
    if ((err = om_s3_client_new(&s->cl, sc)) != OM_OK) {
        om_log(OM_LOG_ERROR, "store: cannot use storage.s3.endpoint %s", sc->endpoint);
        goto done;
    }
    if ((err = om_s3_objects_new(&s->objs)) != OM_OK)
        goto done;
    if (!attach) {
        om_store_s3__abort_recorded(s);
        clean_spool(s);
    }
    /* What is in the bucket, and the byte total: one listing. */
    if ((err = s3_walk_all(&s->base, count_cb, &n)) != OM_OK) {
        if (err == OM_ERR_NOTFOUND)
            om_log(OM_LOG_ERROR, "store: bucket %s does not exist at %s (create it first)",
                   sc->bucket, sc->endpoint);
        else
            om_log(OM_LOG_ERROR, "store: cannot list bucket %s at %s: the request failed (the "
                   "lines above say how: no answer, a wrong key, no permission)",
                   sc->bucket, sc->endpoint);
        goto done;
    }
    om_log_kv(OM_LOG_INFO, "store: opened", "backend", "s3", "bucket", sc->bucket, "prefix",
              s->prefix, "local", s->root, NULL);
    om_log(OM_LOG_INFO, "store: bucket %s holds %llu objects, %llu bytes (listed in %lld ms)",
           sc->bucket, (unsigned long long)n,
           (unsigned long long)om_s3_objects_bytes(s->objs), (long long)(om_now_ms() - t0));
    *out = &s->base;
    s = NULL;
done:
    s3_free(s);
    return err;
}

static void s3_close(struct om_store *base)
{
    s3_free(om_store_s3__of(base));
}

static const char *s3_root(const struct om_store *base)
{
    return ((const struct om_store_s3 *)base)->root;
}

/* ---- reading ------------------------------------------------------------- */

static bool s3_has(struct om_store *base, const om_digest *d, uint64_t *size)
{
    return om_s3_objects_get(om_store_s3__of(base)->objs, d, size, NULL);
}

/* HEAD the object at key; *rs filled.  OM_OK (2xx), NOTFOUND, IO. */
static int head(struct om_store_s3 *s, const char *key, struct om_s3_resp *rs)
{
    struct om_s3_req rq = {.method = "HEAD", .key = key, .body_fd = -1};
    int err = om_s3_do(s->cl, &rq, rs);
    if (err == OM_OK)
        err = om_s3_status_err(rs, "HEAD", key);
    return err;
}

static int s3_stat(struct om_store *base, const om_digest *d, struct om_store_stat *out)
{
    struct om_store_s3 *s = om_store_s3__of(base);
    struct om_s3_resp rs = {0};
    char key[OM_S3_KEY_MAX];
    int err;

    if ((err = om_store_s3__key(s, d, key, sizeof(key))) != OM_OK)
        goto done;
    err = head(s, key, &rs);
    if (err == OM_OK && !rs.has_length)
        err = OM_ERR_IO;
    if (err == OM_OK) {
        out->size = rs.length;
        out->mtime_ms = rs.last_modified_ms;
        om_s3_objects_put(s->objs, d, rs.length, rs.last_modified_ms);
    } else if (err == OM_ERR_NOTFOUND) {
        om_s3_objects_del(s->objs, d, NULL);
    }
done:
    om_s3_resp_clear(&rs);
    return err;
}

static int s3_read_at(struct om_store *base, const om_digest *d, uint64_t off, void *buf,
                      size_t len, size_t *got)
{
    struct om_store_s3 *s = om_store_s3__of(base);
    struct om_s3_resp rs = {0};
    char key[OM_S3_KEY_MAX];
    int err;

    if ((err = om_store_s3__key(s, d, key, sizeof(key))) != OM_OK || len == 0)
        goto done;
    struct om_s3_req rq = {.method = "GET", .key = key, .body_fd = -1, .range = true,
                           .range_first = off, .range_last = off + len - 1, .into = buf,
                           .into_max = len};
    if ((err = om_s3_do(s->cl, &rq, &rs)) != OM_OK)
        goto done;
    if (rs.status == 416) /* at or past the end */
        goto done;
    if (rs.status == 404)
        om_s3_objects_del(s->objs, d, NULL);
    if ((err = om_s3_status_err(&rs, "GET", key)) != OM_OK)
        goto done;
    *got = rs.got;
done:
    om_s3_resp_clear(&rs);
    return err;
}

static int s3_presign_get(struct om_store *base, const om_digest *d, unsigned ttl_s, char *url,
                          size_t urlsz)
{
    struct om_store_s3 *s = om_store_s3__of(base);
    char key[OM_S3_KEY_MAX];
    int err = om_store_s3__key(s, d, key, sizeof(key));
    if (err == OM_OK)
        err = om_s3_presign_get(s->cl, key, ttl_s, url, urlsz);
    return err;
}

static uint64_t s3_bytes(struct om_store *base)
{
    return om_s3_objects_bytes(om_store_s3__of(base)->objs);
}

/* ---- writing small objects and removing ---------------------------------- */

static int s3_put(struct om_store *base, const om_digest *d, const void *buf, size_t len)
{
    struct om_store_s3 *s = om_store_s3__of(base);
    struct om_s3_resp rs = {0};
    char key[OM_S3_KEY_MAX];
    int err;

    if ((err = om_store_s3__key(s, d, key, sizeof(key))) != OM_OK)
        goto done;
    /* store.c verified the digest: it is the payload's SHA-256 */
    struct om_s3_req rq = {.method = "PUT", .key = key, .body = buf, .body_len = len,
                           .body_fd = -1, .payload_hash = om_digest_hex(d),
                           .headers = {"If-None-Match: *", "Content-Type: application/octet-stream"}};
    if ((err = om_s3_do(s->cl, &rq, &rs)) != OM_OK)
        goto done;
    if (rs.status == 501) { /* a store without conditional PUTs: a plain one */
        rq.headers[0] = "Content-Type: application/octet-stream";
        rq.headers[1] = NULL;
        if ((err = om_s3_do(s->cl, &rq, &rs)) != OM_OK)
            goto done;
    }
    if (rs.status != 412 && (err = om_s3_status_err(&rs, "PUT", key)) != OM_OK)
        goto done;
    om_s3_objects_put(s->objs, d, len, om_now_ms()); /* placed, or there already */
done:
    om_s3_resp_clear(&rs);
    return err;
}

static int s3_remove(struct om_store *base, const om_digest *d)
{
    struct om_store_s3 *s = om_store_s3__of(base);
    struct om_s3_resp rs = {0};
    char key[OM_S3_KEY_MAX];
    int err;

    if ((err = om_store_s3__key(s, d, key, sizeof(key))) != OM_OK)
        goto done;
    /* DELETE answers 204 whether or not the key existed: the contract's
     * OM_ERR_NOTFOUND comes from what we know, or a HEAD. */
    bool known = om_s3_objects_get(s->objs, d, NULL, NULL);
    if (!known && (err = head(s, key, &rs)) != OM_OK)
        goto done;
    struct om_s3_req rq = {.method = "DELETE", .key = key, .body_fd = -1};
    if ((err = om_s3_do(s->cl, &rq, &rs)) != OM_OK ||
        (err = om_s3_status_err(&rs, "DELETE", key)) != OM_OK)
        goto done;
    if (!om_s3_objects_del(s->objs, d, NULL) && known)
        err = OM_ERR_NOTFOUND; /* a concurrent remove won: it counted it */
done:
    om_s3_resp_clear(&rs);
    return err;
}

static int s3_quarantine(struct om_store *base, const om_digest *d, uint64_t if_size)
{
    struct om_store_s3 *s = om_store_s3__of(base);
    struct om_s3_resp rs = {0};
    char key[OM_S3_KEY_MAX], qkey[OM_S3_KEY_MAX], src[OM_S3_KEY_MAX + 128];
    int err;

    if ((err = om_store_s3__key(s, d, key, sizeof(key))) != OM_OK ||
        (err = key_of(s, "quarantine", d, false, qkey, sizeof(qkey))) != OM_OK)
        goto done;
    if ((err = head(s, key, &rs)) != OM_OK) {
        if (err == OM_ERR_NOTFOUND)
            om_s3_objects_del(s->objs, d, NULL);
        goto done;
    }
    if (!rs.has_length || (if_size != OM_STORE_ANY_SIZE && rs.length != if_size)) {
        err = OM_ERR_NOTFOUND; /* not the object the caller saw */
        goto done;
    }
    snprintf(src, sizeof(src), "x-amz-copy-source: /%s/%s", s->bucket, key);
    uint64_t size = rs.length;
    struct om_s3_req cp = {.method = "PUT", .key = qkey, .body_fd = -1, .headers = {src},
                           .body_max = 64 * 1024};
    if ((err = om_s3_do(s->cl, &cp, &rs)) != OM_OK)
        goto done;
    struct om_s3_answer a;
    if ((err = om_s3_status_err(&rs, "COPY", qkey)) != OM_OK ||
        (rs.body_len > 0 && om_s3_xml_parse(rs.body, rs.body_len, NULL, NULL, &a) == OM_OK &&
         strcmp(a.root, "Error") == 0 && (err = OM_ERR_IO) != OM_OK))
        goto done;
    struct om_s3_req del = {.method = "DELETE", .key = key, .body_fd = -1};
    if ((err = om_s3_do(s->cl, &del, &rs)) != OM_OK ||
        (err = om_s3_status_err(&rs, "DELETE", key)) != OM_OK)
        goto done;
    om_s3_objects_del(s->objs, d, NULL);
    om_log(OM_LOG_WARN, "store: quarantined %s (%llu bytes in the bucket) as %s", d->str,
           (unsigned long long)size, qkey);
done:
    om_s3_resp_clear(&rs);
    return err;
}

/* ---- listing ------------------------------------------------------------- */

struct walk {
    struct om_store_s3 *s;
    om_store_walk_fn fn;
    void *ud;
    uint32_t gen;
    size_t plen;                   /* strlen(prefix) + strlen("blobs/sha256/") */
    int ret;                       /* fn's non-zero value */
};

/* A listed key: "<prefix>blobs/sha256/<2>/<64>" with <2> its first two. */
static int walk_item(void *ud, const struct om_s3_item *it)
{
    struct walk *w = ud;
    const char *rest = it->key + w->plen;
    char full[OM_DIGEST_MAX + 1];
    om_digest d;

    if (strlen(it->key) != w->plen + 67 || rest[2] != '/' || strncmp(rest, rest + 3, 2) != 0 ||
        snprintf(full, sizeof(full), "sha256:%s", rest + 3) != OM_DIGEST_MAX ||
        om_digest_parse(&d, full, OM_DIGEST_MAX) != OM_OK) {
        om_log(OM_LOG_DEBUG, "store: ignoring bucket key %s", it->key);
        return 0;
    }
    om_s3_objects_seen(w->s->objs, w->gen, &d, it->size, it->time_ms);
    if (w->fn != NULL && (w->ret = w->fn(w->ud, &d, it->size)) != 0)
        return 1;
    return 0;
}

static int s3_walk_all(struct om_store *base, om_store_walk_fn fn, void *ud)
{
    struct om_store_s3 *s = om_store_s3__of(base);
    char prefix[OM_S3_KEY_MAX], query[3072], token[1024] = "";
    struct om_s3_resp rs = {0};
    struct om_s3_answer a;
    struct walk w = {.s = s, .fn = fn, .ud = ud};
    bool complete = false;
    int err = OM_OK;

    snprintf(prefix, sizeof(prefix), "%sblobs/sha256/", s->prefix);
    w.plen = strlen(prefix);
    w.gen = om_s3_objects_walk_begin(s->objs);
    for (;;) {
        const struct om_s3_param q[] = {{"list-type", "2"}, {"max-keys", LIST_PAGE},
                                        {"prefix", prefix}, {"continuation-token", token}};
        if ((err = om_s3_canonical_query(q, token[0] ? 4 : 3, query, sizeof(query))) != OM_OK)
            break;
        struct om_s3_req rq = {.method = "GET", .query = query, .body_fd = -1,
                               .body_max = OM_S3_XML_MAX};
        if ((err = om_s3_do(s->cl, &rq, &rs)) != OM_OK ||
            (err = om_s3_status_err(&rs, "LIST", prefix)) != OM_OK)
            break;
        int perr = om_s3_xml_parse(rs.body, rs.body_len, walk_item, &w, &a);
        if (perr == 1) { /* fn stopped the walk */
            err = w.ret;
            break;
        }
        if (perr != OM_OK || strcmp(a.root, "ListBucketResult") != 0) {
            om_log(OM_LOG_ERROR, "store: the bucket's listing is not a ListBucketResult");
            err = OM_ERR_IO;
            break;
        }
        if (!a.truncated) {
            complete = true;
            break;
        }
        if (a.next[0] == '\0') {
            err = OM_ERR_IO; /* truncated without a token: cannot go on */
            break;
        }
        snprintf(token, sizeof(token), "%s", a.next);
        om_s3_resp_clear(&rs);
    }
    om_s3_objects_walk_end(s->objs, w.gen, complete);
    om_s3_resp_clear(&rs);
    return err;
}

static int s3_walk(struct om_store *base, om_store_walk_fn fn, void *ud)
{
    return s3_walk_all(base, fn, ud);
}

/* ---- stale multipart uploads --------------------------------------------- */

struct stale {
    int64_t cutoff;
    char (*key)[OM_S3_KEY_MAX];
    char (*id)[OM_S3_UPLOAD_ID_MAX];
    size_t n, cap;
};

static int stale_item(void *ud, const struct om_s3_item *it)
{
    struct stale *st = ud;
    if (it->time_ms < 0 || it->time_ms >= st->cutoff || st->n == st->cap ||
        strlen(it->key) >= OM_S3_KEY_MAX || strlen(it->upload_id) >= OM_S3_UPLOAD_ID_MAX)
        return 0;
    snprintf(st->key[st->n], OM_S3_KEY_MAX, "%s", it->key);
    snprintf(st->id[st->n], OM_S3_UPLOAD_ID_MAX, "%s", it->upload_id);
    st->n++;
    return 0;
}

static int newest_part(void *ud, const struct om_s3_item *it)
{
    int64_t *newest = ud;
    if (it->time_ms > *newest)
        *newest = it->time_ms;
    return 0;
}

/* The time of the newest part of an upload (-1: none, or unknown). */
static int64_t last_part_ms(struct om_store_s3 *s, const char *key, const char *id)
{
    char query[1024];
    struct om_s3_resp rs = {0};
    struct om_s3_answer a;
    int64_t newest = -1;
    const struct om_s3_param q[] = {{"uploadId", id}};

    if (om_s3_canonical_query(q, 1, query, sizeof(query)) == OM_OK) {
        struct om_s3_req rq = {.method = "GET", .key = key, .query = query, .body_fd = -1,
                               .body_max = OM_S3_XML_MAX};
        if (om_s3_do(s->cl, &rq, &rs) == OM_OK && rs.status == 200)
            (void)om_s3_xml_parse(rs.body, rs.body_len, newest_part, &newest, &a);
    }
    om_s3_resp_clear(&rs);
    return newest;
}

static int s3_clean_stale(struct om_store *base, uint64_t older_than_ms, bool dry_run,
                          uint64_t *aborted)
{
    struct om_store_s3 *s = om_store_s3__of(base);
    char prefix[OM_S3_KEY_MAX], query[4096], kmark[1024] = "", umark[OM_S3_UPLOAD_ID_MAX] = "";
    struct om_s3_resp rs = {0};
    struct om_s3_answer a;
    struct stale st = {.cutoff = om_now_ms() - (int64_t)older_than_ms, .cap = 1000};
    int err = OM_OK;

    st.key = calloc(st.cap, sizeof(*st.key)); /* freed below */
    st.id = calloc(st.cap, sizeof(*st.id));
    if (st.key == NULL || st.id == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    snprintf(prefix, sizeof(prefix), "%sblobs/", s->prefix);
    for (int page = 0; page < 100; page++) {
        const struct om_s3_param q[] = {{"uploads", NULL}, {"prefix", prefix},
                                        {"key-marker", kmark}, {"upload-id-marker", umark}};
        if ((err = om_s3_canonical_query(q, kmark[0] ? 4 : 2, query, sizeof(query))) != OM_OK)
            goto done;
        struct om_s3_req rq = {.method = "GET", .query = query, .body_fd = -1,
                               .body_max = OM_S3_XML_MAX};
        st.n = 0;
        if ((err = om_s3_do(s->cl, &rq, &rs)) != OM_OK ||
            (err = om_s3_status_err(&rs, "LIST UPLOADS", prefix)) != OM_OK)
            goto done;
        if (om_s3_xml_parse(rs.body, rs.body_len, stale_item, &st, &a) != OM_OK) {
            err = OM_ERR_IO;
            goto done;
        }
        for (size_t i = 0; i < st.n; i++) {
            if (om_store_s3__live_has(s, st.id[i]))
                continue; /* ours, still running: however long it takes */
            int64_t last = last_part_ms(s, st.key[i], st.id[i]);
            if (last >= st.cutoff)
                continue; /* someone still sends parts */
            if (!dry_run && om_store_s3__abort_upload(s, st.key[i], st.id[i]) != OM_OK)
                continue;
            om_log_kv(OM_LOG_INFO, dry_run ? "store: would abort a stale multipart upload"
                                           : "store: aborted a stale multipart upload",
                      "key", st.key[i], NULL);
            if (aborted != NULL)
                (*aborted)++;
        }
        if (!a.truncated || a.next[0] == '\0')
            break;
        snprintf(kmark, sizeof(kmark), "%s", a.next);
        snprintf(umark, sizeof(umark), "%s", a.next2);
        om_s3_resp_clear(&rs);
    }
done:
    om_s3_resp_clear(&rs);
    free(st.key);
    free(st.id);
    return err;
}

const struct om_store_ops om_store_s3__ops = {
    .version = OM_STORE_OPS_VERSION,
    .name = "s3",
    .caps = OM_STORE_CAN_PRESIGN,
    .close = s3_close,
    .root = s3_root,
    .ingest_begin = om_store_s3__ingest_begin,
    .ingest_write = om_store_s3__ingest_write,
    .ingest_reserve = om_store_s3__ingest_reserve,
    .ingest_truncate = om_store_s3__ingest_truncate,
    .ingest_commit = om_store_s3__ingest_commit,
    .ingest_abort = om_store_s3__ingest_abort,
    .has = s3_has,
    .open_blob = NULL,
    .read_at = s3_read_at,
    .remove = s3_remove,
    .walk = s3_walk,
    .bytes = s3_bytes,
    .put = s3_put,
    .presign_get = s3_presign_get,
    .quarantine = s3_quarantine,
    .stat = s3_stat,
    .reader_open = om_store_s3__reader_open,
    .clean_stale = s3_clean_stale,
    .ingest_begin_for = om_store_s3__ingest_begin_for,
};
