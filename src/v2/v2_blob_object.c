/* v2_blob_object.c — GET of a cached blob from a store whose objects are
 * not local files (no OM_STORE_CAN_SENDFILE: the S3 backend), for
 * v2_blob.c's hit path and its flights' answers.
 *
 * With storage.redirect (and a store that can presign): 307 to a presigned
 * GET URL of the object, valid for storage.redirect_ttl; Cache-Control:
 * no-store (the URL expires), Docker-Content-Digest kept.  The client
 * fetches the bytes from the bucket and checks them against the digest it
 * asked for; clients do not send their Authorization to another host.  No
 * request to the bucket is made here: signing is local.
 *
 * Otherwise the object is streamed: a store reader (om_store_reader_open:
 * for S3 one ranged GET on the store's I/O thread, filling a bounded ring)
 * behind a libmicrohttpd content reader, Range passed through (one range →
 * 206 with the same range asked of the bucket; several → the whole blob,
 * 200, as for downloads in progress).  How the HTTP threads stay free:
 *   - the status line waits for the bucket's first answer without a
 *     thread: the request is suspended (phase 1) and the reader's ready
 *     callback, on the store's I/O thread, builds the response (200/206,
 *     or 503 with an OCI error when the bucket fails or does not answer in
 *     time, or — the object vanished — hands the request to the blob
 *     flight, the miss way) and resumes it;
 *   - the body: the content reader only copies what the ring holds; an
 *     empty ring suspends the connection until bytes land (the reader's
 *     wake), a full one pauses the GET.  A GET that breaks mid-object is
 *     resumed by the store; one that cannot be is a cut connection, never
 *     a short body that looks complete.
 * On a job thread (a flight's answer for a request that found the blob
 * cached meanwhile) the job simply waits for the first answer.
 */
#include "v2/v2.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/pullstats.h"
#include "core/log.h"
#include "v2/v2_blob.h"

#define BLOB_TYPE "application/octet-stream"
#define STREAM_BLOCK (64u * 1024)     /* libmicrohttpd's buffer a connection */
#define URL_MAX 4096

struct objstream {
    struct om_req *req;
    struct MHD_Connection *conn;
    struct om_store_reader *r;     /* owned */
    om_digest d;
    char canonical[OM_NAME_MAX + 1]; /* the pull statistics' name ("" = none) */
    uint64_t size, start, len;
    unsigned status;               /* 200 or 206 */
    bool in_job;
    pthread_mutex_t mu;            /* in_job: the first answer */
    pthread_cond_t cv;
    bool ready;
};

static void obj_free(void *cls)
{
    struct objstream *os = cls;
    om_store_reader_close(os->r);
    if (os->in_job) {
        pthread_mutex_destroy(&os->mu);
        pthread_cond_destroy(&os->cv);
    }
    free(os);
}

static void obj_suspend(void *ud)
{
    struct objstream *os = ud;
    MHD_suspend_connection(os->conn);
}

static void obj_wake(void *ud)
{
    struct objstream *os = ud;
    MHD_resume_connection(os->conn);
}

static ssize_t obj_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct objstream *os = cls;
    (void)pos; /* sequential: the reader keeps its own position */
    ssize_t n = om_store_reader_read(os->r, buf, max, obj_suspend, obj_wake, os);
    if (n > 0)
        return n;
    if (n == OM_STORE_READ_WAIT)
        return 0;
    return n == OM_STORE_READ_EOF ? MHD_CONTENT_READER_END_OF_STREAM
                                  : MHD_CONTENT_READER_END_WITH_ERROR;
}

/* The 200/206 response reading os (consumed in every case); req->resp. */
static void respond_stream(struct objstream *os)
{
    struct om_req *req = os->req;
    struct om_server *srv = req->srv;
    struct MHD_Response *r =
        MHD_create_response_from_callback(os->len, STREAM_BLOCK, obj_read, os, obj_free);
    if (r == NULL) {
        obj_free(os);
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        return;
    }
    MHD_add_response_header(r, "Content-Type", BLOB_TYPE);
    om_blob_headers(r, &os->d);
    if (os->status == MHD_HTTP_PARTIAL_CONTENT)
        om_blob_content_range(r, os->start, os->start + os->len - 1, os->size);
    else if (os->canonical[0] != '\0')
        om_pullstats_note(srv->pulls, os->canonical, NULL, &os->d, om_now_ms());
    om_blob_set_resp(req, r, os->status, os->len);
    req->cache = OM_CACHE_HIT;
}

/* The first answer of the bucket, on the store's I/O thread (HTTP
 * thread's request) or a waiting job. */
static void obj_ready(void *ud)
{
    struct objstream *os = ud;
    if (os->in_job) {
        pthread_mutex_lock(&os->mu);
        os->ready = true;
        pthread_cond_signal(&os->cv);
        pthread_mutex_unlock(&os->mu);
        return;
    }
    struct om_req *req = os->req;
    int res = om_store_reader_result(os->r);
    if (res == OM_OK) {
        respond_stream(os);
        om_req_job_done(req);
        return;
    }
    obj_free(os);
    if (res == OM_ERR_NOTFOUND) {
        /* Known here, gone from the bucket (removed by another process):
         * the miss way, whose job asks the bucket and fetches it again. */
        om_log_kv(OM_LOG_WARN, "cached blob not in the store any more: fetching it again",
                  "digest", req->p.ref.digest.str, NULL);
        om_blob_flight_enter(req);
        return;
    }
    om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                 "the mirror's storage is not answering");
    om_req_job_done(req);
}

/* 307 to a presigned URL of d. */
static om_blob_served redirect(struct om_req *req, const om_digest *d, const char *pull_name)
{
    struct om_server *srv = req->srv;
    char *url = malloc(URL_MAX); /* freed below */
    unsigned ttl = (unsigned)(srv->cfg->storage_redirect_ttl_ms / 1000);
    om_blob_served out = OM_BLOB_MISS;

    if (url == NULL)
        goto done;
    if (om_store_presign_get(srv->store, d, ttl > 0 ? ttl : 1, url, URL_MAX) != OM_OK) {
        om_log_kv(OM_LOG_ERROR, "cannot presign a blob URL; streaming it", "digest", d->str,
                  NULL);
        goto done;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (r != NULL) {
        MHD_add_response_header(r, "Location", url);
        MHD_add_response_header(r, "Docker-Content-Digest", d->str);
        MHD_add_response_header(r, "Cache-Control", "no-store");
    }
    om_blob_set_resp(req, r, MHD_HTTP_TEMPORARY_REDIRECT, 0);
    req->cache = OM_CACHE_HIT;
    if (pull_name[0] != '\0' &&
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Range") == NULL)
        om_pullstats_note(srv->pulls, pull_name, NULL, d, om_now_ms());
    out = OM_BLOB_SERVED;
done:
    free(url);
    return out;
}

om_blob_served om_v2_blob_object(struct om_req *req, const om_digest *d, uint64_t size,
                                 bool in_job, const char *pull_name)
{
    struct om_server *srv = req->srv;
    struct objstream *os = NULL;
    om_blob_served out = OM_BLOB_MISS;
    int err;

    if (srv->cfg->storage_redirect && (om_store_caps(srv->store) & OM_STORE_CAN_PRESIGN) &&
        redirect(req, d, pull_name) == OM_BLOB_SERVED)
        return OM_BLOB_SERVED;
    const char *range = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Range");
    om_range_set rs;
    int rerr = range != NULL ? om_range_parse(&rs, range, strlen(range), size) : OM_ERR_INVALID;
    if (rerr == OM_ERR_NOTFOUND) {
        om_blob_range_not_satisfiable(req, size);
        req->cache = OM_CACHE_HIT;
        return OM_BLOB_SERVED;
    }
    os = calloc(1, sizeof(*os)); /* owned by the response once it exists */
    if (os == NULL) {
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        return OM_BLOB_SERVED;
    }
    os->req = req;
    os->conn = req->conn;
    os->d = *d;
    snprintf(os->canonical, sizeof(os->canonical), "%s", pull_name);
    os->size = size;
    os->in_job = in_job;
    os->status = MHD_HTTP_OK;
    os->len = size;
    if (rerr == OM_OK && rs.n == 1) { /* several ranges: the whole blob, 200 */
        os->start = rs.r[0].first;
        os->len = rs.r[0].last - rs.r[0].first + 1;
        os->status = MHD_HTTP_PARTIAL_CONTENT;
    }
    if (size == 0) { /* nothing to ask the bucket for */
        respond_stream(os);
        return OM_BLOB_SERVED;
    }
    if (in_job) {
        pthread_mutex_init(&os->mu, NULL);
        pthread_cond_init(&os->cv, NULL);
        if ((err = om_store_reader_open(srv->store, d, os->start, os->len, obj_ready, os,
                                        &os->r)) != OM_OK) {
            obj_free(os);
            return OM_BLOB_MISS;
        }
        pthread_mutex_lock(&os->mu);
        while (!os->ready)
            pthread_cond_wait(&os->cv, &os->mu);
        pthread_mutex_unlock(&os->mu);
        err = om_store_reader_result(os->r);
        if (err == OM_OK) {
            respond_stream(os);
            return OM_BLOB_SERVED;
        }
        obj_free(os);
        if (err == OM_ERR_NOTFOUND)
            return OM_BLOB_MISS;
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                     "the mirror's storage is not answering");
        return OM_BLOB_SERVED;
    }
    /* HTTP thread: suspended until the first answer; obj_ready answers */
    req->phase = 1;
    MHD_suspend_connection(req->conn);
    if ((err = om_store_reader_open(srv->store, d, os->start, os->len, obj_ready, os,
                                    &os->r)) != OM_OK) {
        obj_free(os);
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                     err == OM_ERR_NOTFOUND ? "the blob changed in the store; try again"
                                            : "the mirror's storage is not answering");
        om_req_job_done(req);
    }
    /* os may be gone already: obj_ready can run before open returns */
    out = OM_BLOB_PENDING;
    return out;
}
