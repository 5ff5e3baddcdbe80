/* store_s3_ingest.c — a download into the bucket: the local spool every
 * backend writes through (store_ingest.c: readers dup() it and follow the
 * download), and a multipart upload at the object's final key fed from
 * that spool while the download runs.
 *
 * Lifecycle (the ingest ops of store_s3.c's table; one user at a time, the
 * download thread of fetch.c):
 *   begin     a spool file; the key when the digest is known (fetch.c
 *             names it: om_ingest_begin_for).  Local only: begin
 *             runs under the fetch table's lock.
 *   reserve   (the upstream's size is known, before the client is promised
 *             a body) the spool's space, and a first word with the bucket:
 *             CreateMultipartUpload when the blob is larger than a part,
 *             else a HEAD of the key, so a bucket that does not answer is a
 *             503 now, not a surprise at commit; a HEAD that finds the
 *             object (another replica put it there) makes the commit a
 *             no-op.
 *   write     append to the spool; each full part wakes the uploader, a
 *             thread of this ingest (started with the first full part) that
 *             PUTs part after part from the spool (pread: the page cache,
 *             hashed first for x-amz-content-sha256), so the download never
 *             waits for the bucket and the commit has at most a part left.
 *   truncate  below what was uploaded: the upload is aborted and starts
 *             over from the spool.
 *   commit    (the caller verified the digest) the uploader finishes its
 *             full parts, the commit sends the rest and
 *             CompleteMultipartUpload; a blob of a part or less is one PUT
 *             with the digest's hex as its payload hash.  Without a
 *             streamed upload at the right key (no hint, another digest,
 *             the uploader failed) the whole spool is uploaded now.  The
 *             object appears at its key only then: before, S3 shows nothing.
 *   abort     AbortMultipartUpload; the spool unlinked.
 * A record <root>/uploads/<spool name> ("key\nuploadId\n") lives while a
 * multipart upload does: the next owner's open aborts what a crash left
 * (om_store_s3__abort_recorded); uploads whose record is lost (another
 * machine's, a wiped directory) are aborted by age (clean_stale, GC).
 */
#include "cache/store_s3.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

#define PATH_LEN 4096

struct s3_ing {
    struct om_store_s3 *s;
    pthread_mutex_t mu;            /* everything below, against the uploader */
    pthread_cond_t cv;
    pthread_t th;
    bool th_running, stop, finishing;
    char key[OM_S3_KEY_MAX];       /* "" = digest unknown: upload at commit */
    om_digest want;                /* the digest the key is for */
    char upload_id[OM_S3_UPLOAD_ID_MAX]; /* "" = no multipart upload yet */
    char record[PATH_LEN];         /* <root>/uploads/<name> while upload_id is set */
    char (*etags)[OM_S3_ETAG_MAX]; /* etags[i]: part i + 1 */
    unsigned n_parts, cap_parts;
    uint64_t uploaded;             /* spool bytes in parts sent */
    uint64_t avail;                /* spool bytes written (in->size, for the uploader) */
    uint64_t part_size;
    bool exists;                   /* a HEAD found the object: nothing to upload */
    int err;                       /* the uploader's failure: commit uploads afresh */
};

/* ---- the multipart upload ------------------------------------------------ */

static int write_record(struct s3_ing *g, const char *spool)
{
    const char *name = strrchr(spool, '/');
    char body[OM_S3_KEY_MAX + OM_S3_UPLOAD_ID_MAX + 4], rel[300];
    int fd, n;

    n = snprintf(rel, sizeof(rel), "uploads/%s", name != NULL ? name + 1 : spool);
    if (n < 0 || (size_t)n >= sizeof(rel) ||
        om_store_s3__path(g->s, rel, g->record, sizeof(g->record)) != OM_OK) {
        g->record[0] = '\0';
        return OM_ERR_TOOBIG;
    }
    n = snprintf(body, sizeof(body), "%s\n%s\n", g->key, g->upload_id);
    fd = open(g->record, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, body, (size_t)n) != n) {
        om_log(OM_LOG_WARN, "store: cannot record upload in %s: %s", g->record, strerror(errno));
        g->record[0] = '\0'; /* the upload goes on; a crash would leave it to clean_stale */
    }
    if (fd >= 0)
        close(fd);
    return OM_OK;
}

static void drop_record(struct s3_ing *g)
{
    if (g->record[0] != '\0' && unlink(g->record) != 0 && errno != ENOENT)
        om_log(OM_LOG_WARN, "store: unlink %s: %s", g->record, strerror(errno));
    g->record[0] = '\0';
}

/* CreateMultipartUpload at g->key (called without g->mu). */
static int create_upload(struct s3_ing *g, const char *spool)
{
    struct om_s3_resp rs = {0};
    struct om_s3_answer a;
    struct om_s3_req rq = {.method = "POST", .key = g->key, .query = "uploads=", .body_fd = -1,
                           .body_max = 64 * 1024,
                           .headers = {"Content-Type: application/octet-stream"}};
    int err = om_s3_do(g->s->cl, &rq, &rs);

    if (err == OM_OK)
        err = om_s3_status_err(&rs, "CreateMultipartUpload", g->key);
    if (err == OM_OK && (om_s3_xml_parse(rs.body, rs.body_len, NULL, NULL, &a) != OM_OK ||
                         a.upload_id[0] == '\0')) {
        om_log(OM_LOG_ERROR, "store: CreateMultipartUpload of %s: no UploadId", g->key);
        err = OM_ERR_IO;
    }
    if (err == OM_OK) {
        pthread_mutex_lock(&g->mu);
        snprintf(g->upload_id, sizeof(g->upload_id), "%s", a.upload_id);
        pthread_mutex_unlock(&g->mu);
        om_store_s3__live_add(g->s, a.upload_id);
        (void)write_record(g, spool);
        om_log_kv(OM_LOG_DEBUG, "store: multipart upload started", "key", g->key, NULL);
    }
    om_s3_resp_clear(&rs);
    return err;
}

int om_store_s3__abort_upload(struct om_store_s3 *s, const char *key, const char *upload_id)
{
    char query[OM_S3_UPLOAD_ID_MAX * 3 + 16];
    struct om_s3_resp rs = {0};
    const struct om_s3_param q[] = {{"uploadId", upload_id}};
    int err = om_s3_canonical_query(q, 1, query, sizeof(query));

    if (err == OM_OK) {
        struct om_s3_req rq = {.method = "DELETE", .key = key, .query = query, .body_fd = -1};
        if ((err = om_s3_do(s->cl, &rq, &rs)) == OM_OK)
            err = om_s3_status_err(&rs, "AbortMultipartUpload", key);
        if (err == OM_ERR_NOTFOUND) /* NoSuchUpload: gone already */
            err = OM_OK;
    }
    om_s3_resp_clear(&rs);
    return err;
}

/* Abort g's upload, if any, and forget its parts (called without mu, the
 * uploader stopped). */
static void abort_upload(struct s3_ing *g)
{
    if (g->upload_id[0] != '\0') {
        char parts[16];
        snprintf(parts, sizeof(parts), "%u", g->n_parts);
        om_log_kv(OM_LOG_DEBUG, "store: multipart upload aborted", "key", g->key, "parts", parts,
                  NULL);
        if (om_store_s3__abort_upload(g->s, g->key, g->upload_id) != OM_OK)
            om_log_kv(OM_LOG_WARN, "store: could not abort a multipart upload (GC will)", "key",
                      g->key, NULL);
        om_store_s3__live_del(g->s, g->upload_id);
        drop_record(g);
    }
    g->upload_id[0] = '\0';
    g->n_parts = 0;
    g->uploaded = 0;
}

/* PUT part n (1-based) = the spool's [off, off + len), its ETag into the
 * list (called without mu). */
static int put_part(struct s3_ing *g, int fd, unsigned n, uint64_t off, uint64_t len)
{
    char num[16], query[OM_S3_UPLOAD_ID_MAX * 3 + 48];
    struct om_s3_resp rs = {0};
    int err;

    snprintf(num, sizeof(num), "%u", n);
    const struct om_s3_param q[] = {{"partNumber", num}, {"uploadId", g->upload_id}};
    if ((err = om_s3_canonical_query(q, 2, query, sizeof(query))) != OM_OK)
        goto done;
    struct om_s3_req rq = {.method = "PUT", .key = g->key, .query = query, .body_fd = fd,
                           .body_off = off, .body_len = len};
    if ((err = om_s3_do(g->s->cl, &rq, &rs)) != OM_OK ||
        (err = om_s3_status_err(&rs, "UploadPart", g->key)) != OM_OK)
        goto done;
    if (rs.etag[0] == '\0') {
        om_log(OM_LOG_ERROR, "store: UploadPart %u of %s: no ETag", n, g->key);
        err = OM_ERR_IO;
        goto done;
    }
    pthread_mutex_lock(&g->mu);
    if (n > g->cap_parts) {
        unsigned cap = g->cap_parts == 0 ? 64 : g->cap_parts * 2;
        void *p = realloc(g->etags, (size_t)cap * sizeof(*g->etags));
        if (p == NULL) {
            err = OM_ERR_NOMEM;
        } else {
            g->etags = p;
            g->cap_parts = cap;
        }
    }
    if (err == OM_OK) {
        snprintf(g->etags[n - 1], OM_S3_ETAG_MAX, "%s", rs.etag);
        g->n_parts = n;
        g->uploaded = off + len;
    }
    pthread_mutex_unlock(&g->mu);
done:
    om_s3_resp_clear(&rs);
    return err;
}

struct uploader_arg {
    struct s3_ing *g;
    int fd;                        /* the spool's descriptor (the ingest's, not owned) */
    char spool[PATH_LEN];
};

/* The uploader: a part each time the spool holds one more full part. */
static void *uploader_main(void *arg)
{
    struct uploader_arg *ua = arg;
    struct s3_ing *g = ua->g;
    int err = OM_OK;

    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->stop && !g->finishing && g->avail - g->uploaded < g->part_size)
            pthread_cond_wait(&g->cv, &g->mu);
        if (g->stop || g->avail - g->uploaded < g->part_size)
            break; /* stopped, or finishing with less than a part left */
        bool need_upload = g->upload_id[0] == '\0';
        unsigned n = g->n_parts + 1;
        uint64_t off = g->uploaded;
        pthread_mutex_unlock(&g->mu);
        if (need_upload)
            err = create_upload(g, ua->spool);
        if (err == OM_OK)
            err = put_part(g, ua->fd, n, off, g->part_size);
        pthread_mutex_lock(&g->mu);
        if (err != OM_OK) {
            g->err = err; /* the spool goes on; commit uploads it whole */
            break;
        }
    }
    pthread_mutex_unlock(&g->mu);
    free(ua);
    return NULL;
}

/* Stop (stop=true) or drain (finishing) the uploader and join it. */
static void uploader_end(struct s3_ing *g, bool stop)
{
    pthread_mutex_lock(&g->mu);
    if (stop)
        g->stop = true;
    else
        g->finishing = true;
    pthread_cond_broadcast(&g->cv);
    bool running = g->th_running;
    g->th_running = false;
    pthread_mutex_unlock(&g->mu);
    if (running)
        pthread_join(g->th, NULL);
    pthread_mutex_lock(&g->mu);
    g->stop = g->finishing = false;
    pthread_mutex_unlock(&g->mu);
}

static void uploader_start(struct s3_ing *g, struct om_ingest *in)
{
    struct uploader_arg *ua = calloc(1, sizeof(*ua)); /* owned by the thread */
    if (ua == NULL)
        return; /* commit uploads the spool whole */
    ua->g = g;
    ua->fd = in->fd;
    snprintf(ua->spool, sizeof(ua->spool), "%s", in->path);
    if (pthread_create(&g->th, NULL, uploader_main, ua) != 0) {
        free(ua);
        return;
    }
    g->th_running = true;
}

/* ---- the ingest operations ------------------------------------------------ */

static void ing_free(struct s3_ing *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->etags);
    free(g);
}

static int begin(struct om_store *st, const om_digest *d, struct om_ingest **out)
{
    struct om_store_s3 *s = om_store_s3__of(st);
    struct s3_ing *g = NULL;
    char dir[PATH_LEN];
    int err;

    *out = NULL;
    if ((err = om_store_s3__path(s, "ingest", dir, sizeof(dir))) != OM_OK)
        goto done;
    g = calloc(1, sizeof(*g)); /* owned by the ingest (in->priv) */
    if (g == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    g->s = s;
    g->part_size = s->part_size;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    if (d != NULL && om_store_s3__key(s, d, g->key, sizeof(g->key)) == OM_OK)
        g->want = *d;
    else
        g->key[0] = '\0';
    if ((err = om_ingest_file_begin(out, dir)) != OM_OK)
        goto done;
    (*out)->priv = g;
    g = NULL;
done:
    ing_free(g);
    return err;
}

int om_store_s3__ingest_begin(struct om_store *st, struct om_ingest **out)
{
    return begin(st, NULL, out); /* no key known: the spool goes up whole at commit */
}

int om_store_s3__ingest_begin_for(struct om_store *st, const om_digest *d,
                                  struct om_ingest **out)
{
    return begin(st, d, out);
}

int om_store_s3__ingest_write(struct om_ingest *in, const void *buf, size_t len)
{
    struct s3_ing *g = in->priv;
    int err = om_ingest_file_write(in, buf, len);

    if (err != OM_OK || g->key[0] == '\0')
        return err;
    pthread_mutex_lock(&g->mu);
    g->avail = in->size;
    bool wake = !g->exists && g->err == OM_OK && g->avail - g->uploaded >= g->part_size;
    if (wake)
        pthread_cond_signal(&g->cv);
    bool start = wake && !g->th_running;
    pthread_mutex_unlock(&g->mu);
    if (start)
        uploader_start(g, in);
    return OM_OK;
}

int om_store_s3__ingest_reserve(struct om_ingest *in, uint64_t size)
{
    struct s3_ing *g = in->priv;
    struct om_s3_resp rs = {0};
    int err = om_ingest_file_reserve(in, size);

    if (err != OM_OK || g->key[0] == '\0' || size == 0)
        goto done;
    if (size > g->part_size) {
        if (g->upload_id[0] == '\0' && !g->th_running)
            err = create_upload(g, in->path);
        goto done;
    }
    struct om_s3_req rq = {.method = "HEAD", .key = g->key, .body_fd = -1};
    if ((err = om_s3_do(g->s->cl, &rq, &rs)) != OM_OK)
        goto done;
    err = om_s3_status_err(&rs, "HEAD", g->key);
    if (err == OM_OK && rs.has_length && rs.length == size)
        g->exists = true;
    else if (err == OM_OK || err == OM_ERR_NOTFOUND)
        err = OM_OK;
done:
    om_s3_resp_clear(&rs);
    return err;
}

int om_store_s3__ingest_truncate(struct om_ingest *in, uint64_t size)
{
    struct s3_ing *g = in->priv;
    uploader_end(g, true);
    if (size < g->uploaded)
        abort_upload(g); /* parts past the new end: start again from the spool */
    int err = om_ingest_file_truncate(in, size);
    pthread_mutex_lock(&g->mu);
    g->avail = in->size;
    g->err = OM_OK;
    pthread_mutex_unlock(&g->mu);
    return err;
}

/* CompleteMultipartUpload of g's parts; an outcome we did not see (no
 * answer, NoSuchUpload after a retry) is settled by a HEAD. */
static int complete(struct s3_ing *g, uint64_t total)
{
    struct om_s3_resp rs = {0};
    char query[OM_S3_UPLOAD_ID_MAX * 3 + 16], *xml = NULL;
    size_t cap = 128 + (size_t)g->n_parts * (OM_S3_ETAG_MAX + 64), len = 0;
    int err;
    const struct om_s3_param q[] = {{"uploadId", g->upload_id}};

    if ((err = om_s3_canonical_query(q, 1, query, sizeof(query))) != OM_OK)
        goto done;
    xml = malloc(cap); /* freed below */
    if (xml == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    len += (size_t)snprintf(xml + len, cap - len, "<CompleteMultipartUpload>");
    for (unsigned i = 0; i < g->n_parts; i++)
        len += (size_t)snprintf(xml + len, cap - len,
                                "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>", i + 1,
                                g->etags[i]);
    len += (size_t)snprintf(xml + len, cap - len, "</CompleteMultipartUpload>");
    struct om_s3_req rq = {.method = "POST", .key = g->key, .query = query, .body = xml,
                           .body_len = len, .body_fd = -1, .body_max = 64 * 1024,
                           .headers = {"Content-Type: application/xml"}};
    err = om_s3_do(g->s->cl, &rq, &rs);
    if (err == OM_OK && rs.status == 200) {
        struct om_s3_answer a;
        if (om_s3_xml_parse(rs.body, rs.body_len, NULL, NULL, &a) != OM_OK ||
            strcmp(a.root, "Error") == 0) {
            om_log_kv(OM_LOG_ERROR, "store: CompleteMultipartUpload failed", "key", g->key,
                      "code", a.code, NULL);
            err = OM_ERR_IO;
        }
        goto done;
    }
    if (err == OM_OK && rs.status != 404) {
        err = om_s3_status_err(&rs, "CompleteMultipartUpload", g->key);
        goto done;
    }
    /* no answer, or NoSuchUpload (a retry of one that had worked) */
    om_s3_resp_clear(&rs);
    struct om_s3_req hq = {.method = "HEAD", .key = g->key, .body_fd = -1};
    if (om_s3_do(g->s->cl, &hq, &rs) == OM_OK && rs.status == 200 && rs.has_length &&
        rs.length == total)
        err = OM_OK;
    else if (err == OM_OK)
        err = OM_ERR_IO;
done:
    om_s3_resp_clear(&rs);
    free(xml);
    return err;
}

/* Upload the spool's [g->uploaded, total) as the remaining parts of g's
 * upload (creating it if needed), then complete. */
static int finish_multipart(struct s3_ing *g, struct om_ingest *in, uint64_t total)
{
    int err = OM_OK;
    if (g->upload_id[0] == '\0')
        err = create_upload(g, in->path);
    while (err == OM_OK && g->uploaded < total) {
        uint64_t len = total - g->uploaded;
        /* full parts, then the rest (only the last may be under 5 MiB) */
        if (len > g->part_size)
            len = g->part_size;
        err = put_part(g, in->fd, g->n_parts + 1, g->uploaded, len);
    }
    if (err == OM_OK)
        err = complete(g, total);
    return err;
}

/* One PUT of the whole spool; the digest's hex is its payload hash. */
static int put_whole(struct s3_ing *g, struct om_ingest *in, const om_digest *d)
{
    struct om_s3_resp rs = {0};
    struct om_s3_req rq = {.method = "PUT", .key = g->key, .body_fd = in->fd, .body_off = 0,
                           .body_len = in->size, .payload_hash = om_digest_hex(d),
                           .headers = {"Content-Type: application/octet-stream"}};
    int err = om_s3_do(g->s->cl, &rq, &rs);
    if (err == OM_OK)
        err = om_s3_status_err(&rs, "PUT", g->key);
    om_s3_resp_clear(&rs);
    return err;
}

int om_store_s3__ingest_commit(struct om_store *st, struct om_ingest *in, const om_digest *d)
{
    struct om_store_s3 *s = om_store_s3__of(st);
    struct s3_ing *g = in->priv;
    uint64_t total = in->size;
    char key[OM_S3_KEY_MAX];
    int err;

    uploader_end(g, false); /* its full parts are sent */
    if ((err = om_store_s3__key(s, d, key, sizeof(key))) != OM_OK)
        goto done;
    if (om_s3_objects_get(s->objs, d, NULL, NULL) || (g->exists && strcmp(key, g->key) == 0)) {
        abort_upload(g); /* there already: one copy, counted once */
        om_s3_objects_put(s->objs, d, total, om_now_ms());
        goto done;
    }
    if (g->key[0] == '\0' || strcmp(key, g->key) != 0 || g->err != OM_OK) {
        /* no streamed upload at this key (or a broken one): all of it now */
        abort_upload(g);
        snprintf(g->key, sizeof(g->key), "%s", key);
        g->err = OM_OK;
    }
    if (total <= g->part_size && g->n_parts == 0) {
        abort_upload(g); /* an upload created by reserve that never got a part */
        err = put_whole(g, in, d);
    } else {
        err = finish_multipart(g, in, total);
    }
    if (err != OM_OK) {
        abort_upload(g); /* nothing at the key: the next request downloads again */
        goto done;
    }
    if (g->upload_id[0] != '\0') {
        om_store_s3__live_del(s, g->upload_id);
        drop_record(g);
        g->upload_id[0] = '\0';
    }
    om_s3_objects_put(s->objs, d, total, om_now_ms());
done:
    om_ingest_file_free(in, true); /* the spool is never placed: readers keep their fds */
    ing_free(g);
    return err;
}

void om_store_s3__ingest_abort(struct om_ingest *in)
{
    struct s3_ing *g = in->priv;
    uploader_end(g, true);
    abort_upload(g);
    om_ingest_file_free(in, true);
    ing_free(g);
}

void om_store_s3__abort_recorded(struct om_store_s3 *s)
{
    char dirpath[PATH_LEN];
    unsigned aborted = 0;
    DIR *dir = NULL;

    if (om_store_s3__path(s, "uploads", dirpath, sizeof(dirpath)) != OM_OK ||
        (dir = opendir(dirpath)) == NULL)
        return;
    for (struct dirent *de; (de = readdir(dir)) != NULL;) {
        char body[OM_S3_KEY_MAX + OM_S3_UPLOAD_ID_MAX + 4];
        if (de->d_name[0] == '.')
            continue;
        int fd = openat(dirfd(dir), de->d_name, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, body, sizeof(body) - 1) : -1;
        if (fd >= 0)
            close(fd);
        body[n > 0 ? n : 0] = '\0';
        char *nl = strchr(body, '\n'), *id = nl != NULL ? nl + 1 : NULL;
        char *nl2 = id != NULL ? strchr(id, '\n') : NULL;
        if (nl != NULL && nl2 != NULL && nl > body && nl2 > id) {
            *nl = *nl2 = '\0';
            if (om_store_s3__abort_upload(s, body, id) == OM_OK)
                aborted++;
            else
                continue; /* keep the record: the next open tries again */
        }
        (void)unlinkat(dirfd(dir), de->d_name, 0);
    }
    closedir(dir);
    if (aborted > 0)
        om_log(OM_LOG_INFO, "store: aborted %u multipart upload(s) a previous run left", aborted);
}
