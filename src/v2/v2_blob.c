/* v2_blob.c — HEAD/GET /v2/<name>/blobs/<digest>.
 *
 * Cached: answered in the HTTP thread with sendfile from the content file
 * (MHD_create_response_from_fd_at_offset64: no user-space copy), for the
 * whole blob, one range (206), or several ranges (206 multipart/byteranges,
 * read with pread; rare, so no sendfile there).  A store whose objects are
 * not local files (the S3 bucket) answers through v2_blob_object.c: a 307
 * to a presigned URL, or a stream from the store that never blocks this
 * thread; HEAD is answered here from what the process knows either way.
 * Before a miss goes upstream, its job asks such a store itself
 * (om_store_stat: another replica may have put the blob there), and a
 * store that does not answer is a 503.  Before that, the file's
 * size is compared with the size the blob must have — what the index
 * recorded when it was stored (om_index_blob_size), remembered per process
 * (cache/mcache: one lookup in a fixed table, no index query per hit; the
 * index is asked on a miss of that memory only).  A file of another size
 * (truncated on disk, grown, replaced) is never served: the request goes
 * the miss way, whose job moves the file into the store's quarantine
 * (logged, counted, an event) and fetches the blob again, so the client
 * gets the right bytes and HEAD the right size.
 *
 * Cached content is served under a name only when the name's repository
 * is known to hold it (v2_member.c: a memory, the index on a miss of it);
 * otherwise the job asks the index, then the upstream (one HEAD under that
 * repository's name), and answers as the upstream does — a blob stored
 * once is never readable by digest through any other name.
 *
 * Not cached (or damaged): the request joins the flight of (HEAD or GET,
 * name, ns, digest), or starts one (v2_blob_flight.c: one job for any
 * number of clients, and a brief memory of what the upstream answered).
 * The flight's work (om_v2_blob_work, v2_blob_work.c) finds the upstream (route decision,
 * or a HEAD probe in search order); a HEAD is answered with the upstream's
 * size; a GET joins or starts the single download of that digest
 * (fetch.c) and waits for its first answer.  Then each client streams from
 * the growing ingest file through a content reader that suspends the
 * connection when it has caught up with the download and is resumed when
 * bytes land.  A Range on an uncached blob is answered 206 from that same
 * download as soon as its bytes exist.
 */
#include "v2/v2.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cache/mcache.h"
#include "cache/pullstats.h"
#include "core/log.h"
#include "http/req_limits.h"
#include "v2/v2_blob.h"

#define BLOB_TYPE "application/octet-stream"

void om_blob_headers(struct MHD_Response *r, const om_digest *d)
{
    char etag[OM_DIGEST_MAX + 3];
    MHD_add_response_header(r, "Docker-Content-Digest", d->str);
    snprintf(etag, sizeof(etag), "\"%s\"", d->str);
    MHD_add_response_header(r, "Etag", etag);
    MHD_add_response_header(r, "Accept-Ranges", "bytes");
    MHD_add_response_header(r, "Cache-Control", "max-age=31536000");
}

void om_blob_content_range(struct MHD_Response *r, uint64_t first, uint64_t last, uint64_t size)
{
    char v[96];
    snprintf(v, sizeof(v), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last, size);
    MHD_add_response_header(r, "Content-Range", v);
}

static enum MHD_Result queue(struct om_req *req)
{
    enum MHD_Result r = MHD_queue_response(req->conn, req->status, req->resp);
    MHD_destroy_response(req->resp);
    req->resp = NULL;
    return r;
}

void om_blob_set_resp(struct om_req *req, struct MHD_Response *r, unsigned status,
                      uint64_t bytes)
{
    if (r == NULL) {
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        return;
    }
    om_http_common_headers(r);
    req->resp = r;
    req->status = status;
    req->bytes = bytes;
}

void om_blob_range_not_satisfiable(struct om_req *req, uint64_t size)
{
    om_req_error(req, MHD_HTTP_RANGE_NOT_SATISFIABLE, "UNSUPPORTED",
                 "requested range not satisfiable");
    char v[64];
    snprintf(v, sizeof(v), "bytes */%" PRIu64, size);
    MHD_add_response_header(req->resp, "Content-Range", v);
}

/* ---- multipart/byteranges over a cached file ------------------------ */

struct multipart {
    int fd;                               /* owned */
    uint64_t size;                        /* of the blob */
    size_t n;
    om_byte_range r[OM_RANGE_MAX];
    char head[OM_RANGE_MAX][160];         /* part headers */
    size_t head_len[OM_RANGE_MAX];
    char tail[64];
    size_t tail_len;
    uint64_t total;
};

static ssize_t multipart_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct multipart *m = cls;
    uint64_t off = 0;
    for (size_t i = 0; i <= m->n; i++) {
        const char *h = i < m->n ? m->head[i] : m->tail;
        uint64_t hl = i < m->n ? m->head_len[i] : m->tail_len;
        if (pos < off + hl) {
            size_t k = (size_t)(off + hl - pos);
            if (k > max)
                k = max;
            memcpy(buf, h + (pos - off), k);
            return (ssize_t)k;
        }
        off += hl;
        if (i == m->n)
            break;
        uint64_t dl = m->r[i].last - m->r[i].first + 1;
        if (pos < off + dl) {
            uint64_t k = off + dl - pos;
            if (k > max)
                k = max;
            ssize_t got = pread(m->fd, buf, (size_t)k, (off_t)(m->r[i].first + (pos - off)));
            return got > 0 ? got : MHD_CONTENT_READER_END_WITH_ERROR;
        }
        off += dl;
    }
    return MHD_CONTENT_READER_END_OF_STREAM;
}

static void multipart_free(void *cls)
{
    struct multipart *m = cls;
    close(m->fd);
    free(m);
}

/* Takes ownership of fd. */
static struct MHD_Response *multipart_response(int fd, uint64_t size, const om_range_set *rs,
                                               char *ctype, size_t ctype_sz, uint64_t *total)
{
    struct multipart *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        close(fd);
        return NULL;
    }
    m->fd = fd;
    m->size = size;
    m->n = rs->n;
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = (uint64_t)fd * 0x9e3779b97f4a7c15ull;
    char boundary[40];
    snprintf(boundary, sizeof(boundary), "ocimirror%016" PRIx64, rnd);
    m->total = 0;
    for (size_t i = 0; i < rs->n; i++) {
        m->r[i] = rs->r[i];
        int k = snprintf(m->head[i], sizeof(m->head[i]),
                         "\r\n--%s\r\nContent-Type: " BLOB_TYPE
                         "\r\nContent-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n\r\n",
                         boundary, rs->r[i].first, rs->r[i].last, size);
        m->head_len[i] = (size_t)k;
        m->total += (uint64_t)k + rs->r[i].last - rs->r[i].first + 1;
    }
    m->tail_len = (size_t)snprintf(m->tail, sizeof(m->tail), "\r\n--%s--\r\n", boundary);
    m->total += m->tail_len;
    snprintf(ctype, ctype_sz, "multipart/byteranges; boundary=%s", boundary);
    *total = m->total;
    struct MHD_Response *r =
        MHD_create_response_from_callback(m->total, 64 * 1024, multipart_read, m, multipart_free);
    if (r == NULL)
        multipart_free(m);
    return r;
}

/* ---- cached blobs --------------------------------------------------- */

/* The size the blob d must have (see the file comment) into *want; false
 * when nothing says (the index records no size, or could not be asked). */
bool om_v2_blob_expected_size(struct om_server *srv, const om_digest *d, uint64_t *want)
{
    uint64_t v = 0;
    if (!om_mcache_size_get(srv->mcache, d, &v)) {
        int err = om_index_blob_size(srv->index, d, &v);
        if (err == OM_ERR_NOTFOUND)
            v = OM_MCACHE_SIZE_UNKNOWN;
        else if (err != OM_OK)
            return false; /* cannot ask now: serve, and ask again next time */
        om_mcache_size_put(srv->mcache, d, v);
    }
    if (v == OM_MCACHE_SIZE_UNKNOWN)
        return false;
    *want = v;
    return true;
}

/* Answer from the store, when the object is the size the blob must have
 * (`want`, or OM_STORE_ANY_SIZE when nothing says).  MISS (no response
 * set) when the blob vanished since the caller saw it (GC evicted it in
 * between) or its size is wrong: go the miss way instead.  A store without
 * local files serves through v2_blob_object.c (in_job: on a job thread,
 * which may wait; else PENDING: suspended and answered later); pull_name
 * is the name a full GET's pull is counted for there ("" = none). */
om_blob_served om_v2_blob_serve_cached(struct om_req *req, const om_digest *d, uint64_t size,
                                       uint64_t want, bool in_job, const char *pull_name)
{
    struct om_server *srv = req->srv;
    if (want != OM_STORE_ANY_SIZE && size != want)
        return OM_BLOB_MISS;
    if (req->head) {
        struct MHD_Response *r = om_http_head(BLOB_TYPE, size);
        if (r != NULL)
            om_blob_headers(r, d);
        om_blob_set_resp(req, r, MHD_HTTP_OK, 0);
        req->cache = OM_CACHE_HIT;
        return OM_BLOB_SERVED;
    }
    if (!(om_store_caps(srv->store) & OM_STORE_CAN_SENDFILE))
        return om_v2_blob_object(req, d, size, in_job, pull_name);
    int fd = -1;
    if (om_store_open_blob(srv->store, d, &fd, &size) != OM_OK)
        return OM_BLOB_MISS;
    if (want != OM_STORE_ANY_SIZE && size != want) {
        close(fd); /* changed since the caller looked */
        return OM_BLOB_MISS;
    }
    req->cache = OM_CACHE_HIT;
    const char *range = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Range");
    om_range_set rs;
    int rerr = range ? om_range_parse(&rs, range, strlen(range), size) : OM_ERR_INVALID;
    if (rerr == OM_ERR_NOTFOUND) {
        close(fd);
        om_blob_range_not_satisfiable(req, size);
        return OM_BLOB_SERVED;
    }
    struct MHD_Response *r;
    if (rerr == OM_OK && rs.n == 1) {
        uint64_t len = rs.r[0].last - rs.r[0].first + 1;
        r = MHD_create_response_from_fd_at_offset64(len, fd, rs.r[0].first);
        if (r != NULL) {
            MHD_add_response_header(r, "Content-Type", BLOB_TYPE);
            om_blob_content_range(r, rs.r[0].first, rs.r[0].last, size);
            om_blob_headers(r, d);
        } else {
            close(fd);
        }
        om_blob_set_resp(req, r, MHD_HTTP_PARTIAL_CONTENT, len);
    } else if (rerr == OM_OK) {
        char ctype[96];
        uint64_t total = 0;
        r = multipart_response(fd, size, &rs, ctype, sizeof(ctype), &total);
        if (r != NULL) {
            MHD_add_response_header(r, "Content-Type", ctype);
            om_blob_headers(r, d);
        }
        om_blob_set_resp(req, r, MHD_HTTP_PARTIAL_CONTENT, total);
    } else {
        r = MHD_create_response_from_fd64(size, fd);
        if (r != NULL) {
            MHD_add_response_header(r, "Content-Type", BLOB_TYPE);
            om_blob_headers(r, d);
        } else {
            close(fd);
        }
        om_blob_set_resp(req, r, MHD_HTTP_OK, size);
        if (req->canonical[0] != '\0')
            om_pullstats_note(srv->pulls, req->canonical, NULL, d, om_now_ms());
    }
    return OM_BLOB_SERVED;
}

/* ---- streaming from a download -------------------------------------- */

struct stream {
    struct om_fetch *f;              /* reference owned */
    struct MHD_Connection *conn;
    int fd;                          /* the fetch's, not owned */
    uint64_t start;                  /* first byte of the blob to send */
    uint64_t len;                    /* bytes to send, or MHD_SIZE_UNKNOWN */
};

static void stream_suspend(void *ud)
{
    struct stream *s = ud;
    MHD_suspend_connection(s->conn);
}

static void stream_wake(void *ud)
{
    struct stream *s = ud;
    MHD_resume_connection(s->conn);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *s = cls;
    if (s->len != MHD_SIZE_UNKNOWN && pos >= s->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (s->len != MHD_SIZE_UNKNOWN && max > s->len - pos)
        max = (size_t)(s->len - pos);
    uint64_t at = s->start + pos;
    ssize_t n = om_fetch_poll(s->f, at, max, stream_suspend, stream_wake, s);
    if (n == OM_FETCH_WAIT)
        return 0;
    if (n == OM_FETCH_EOF)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    ssize_t got = pread(s->fd, buf, (size_t)n, (off_t)at);
    return got > 0 ? got : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls)
{
    struct stream *s = cls;
    om_fetch_unwait(s->f, s);
    om_fetch_release(s->f);
    free(s);
}

/* Takes the reference f. */
void om_v2_blob_stream(struct om_req *req, const om_digest *d, struct om_fetch *f,
                       uint64_t total)
{
    struct stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        om_fetch_release(f);
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        return;
    }
    s->f = f;
    s->conn = req->conn;
    s->fd = om_fetch_fd(f);
    s->start = 0;
    s->len = total == OM_FETCH_SIZE_UNKNOWN ? MHD_SIZE_UNKNOWN : total;
    unsigned status = MHD_HTTP_OK;

    const char *range = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Range");
    om_range_set rs;
    if (range != NULL && total != OM_FETCH_SIZE_UNKNOWN) {
        int rerr = om_range_parse(&rs, range, strlen(range), total);
        if (rerr == OM_ERR_NOTFOUND) {
            stream_free(s);
            om_blob_range_not_satisfiable(req, total);
            return;
        }
        if (rerr == OM_OK && rs.n == 1) { /* several ranges: the whole blob, 200 */
            s->start = rs.r[0].first;
            s->len = rs.r[0].last - rs.r[0].first + 1;
            status = MHD_HTTP_PARTIAL_CONTENT;
        }
    }
    /* 16 KiB a connection: the buffer every client following a download
     * holds, so it bounds memory with many clients on one cold blob. */
    struct MHD_Response *r = MHD_create_response_from_callback(s->len, 16 * 1024, stream_read, s,
                                                               stream_free);
    if (r == NULL) {
        stream_free(s);
        om_req_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "out of memory");
        return;
    }
    MHD_add_response_header(r, "Content-Type", BLOB_TYPE);
    om_blob_headers(r, d);
    if (status == MHD_HTTP_PARTIAL_CONTENT)
        om_blob_content_range(r, s->start, s->start + s->len - 1, total);
    om_blob_set_resp(req, r, status, s->len == MHD_SIZE_UNKNOWN ? 0 : s->len);
}


/* ---- every waiter's answer (job thread) ------------------------------ */

/* A GET that joined the flight of a download: a reference of its own to
 * that download (or the store, when it finished already). */
static void answer_get_waiter(struct om_req *w, struct om_blob_answer *a)
{
    struct om_server *srv = w->srv;
    const om_digest *d = &w->p.ref.digest;
    const struct om_route_candidate *c = &w->route.c[a->chosen];
    struct om_fetch_src src = {srv->up[c->upstream], c->remote, c->canonical};
    uint64_t size = 0, want = OM_STORE_ANY_SIZE, v = 0, total = 0;
    struct om_fetch *f = NULL;
    bool joined = false;
    long status = 0;
    int err;

    if (om_v2_blob_expected_size(srv, d, &v))
        want = v;
    if (om_store_has(srv->store, d, &size) &&
        om_v2_blob_serve_cached(w, d, size, want, true, w->canonical) == OM_BLOB_SERVED)
        goto done;
    err = om_fetch_get(srv->fetch, d, &src, &f, &joined);
    if (err != OM_OK) {
        om_req_error(w, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", om_strerror(err));
        goto done;
    }
    err = om_fetch_wait_ready(f, srv->cfg->limits.idle_timeout_ms, &total, &status);
    if (err != OM_OK) {
        struct om_blob_answer fa = {0};
        om_v2_blob_fetch_failed(srv, c, d, err, status, &fa);
        om_req_error(w, fa.status, fa.code, fa.message);
        goto done;
    }
    w->cache = OM_CACHE_COALESCED;
    om_v2_blob_stream(w, d, f, total);
    f = NULL; /* the stream's now */
done:
    om_fetch_release(f);
}

void om_v2_blob_answer(struct om_req *w, const struct om_req *leader, struct om_blob_answer *a)
{
    struct om_server *srv = w->srv;
    const om_digest *d = &w->p.ref.digest;
    bool lead = w == leader;

    if (!lead) {
        snprintf(w->canonical, sizeof(w->canonical), "%s", leader->canonical);
        snprintf(w->upstream, sizeof(w->upstream), "%s", leader->upstream);
    }
    if (a->status != MHD_HTTP_OK) {
        om_req_error(w, a->status, a->code, a->message);
    } else if (a->cached) {
        uint64_t size = 0, want = OM_STORE_ANY_SIZE, v = 0;
        if (om_v2_blob_expected_size(srv, d, &v))
            want = v;
        if (!om_store_has(srv->store, d, &size) ||
            om_v2_blob_serve_cached(w, d, size, want, true, w->canonical) != OM_BLOB_SERVED)
            om_req_error(w, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                         "the blob changed in the store while it was looked up; try again");
    } else if (w->head) {
        struct MHD_Response *r = om_http_head(BLOB_TYPE, a->size);
        if (r != NULL)
            om_blob_headers(r, d);
        om_blob_set_resp(w, r, MHD_HTTP_OK, 0);
        w->cache = lead ? OM_CACHE_MISS : OM_CACHE_COALESCED;
    } else if (lead && a->f != NULL) {
        struct om_fetch *f = a->f;
        a->f = NULL; /* the stream's now */
        w->cache = a->joined ? OM_CACHE_COALESCED : OM_CACHE_MISS;
        om_v2_blob_stream(w, d, f, a->size);
    } else {
        answer_get_waiter(w, a);
    }
}

/* ---- the endpoint (HTTP thread) -------------------------------------- */

enum MHD_Result om_v2_blob(struct om_req *req)
{
    struct om_server *srv = req->srv;
    const om_digest *d = &req->p.ref.digest;
    uint64_t size = 0, want = OM_STORE_ANY_SIZE, v = 0;

    if (om_store_has(srv->store, d, &size) && om_v2_member_hit(req, d)) {
        if (om_v2_blob_expected_size(srv, d, &v))
            want = v;
        /* For the log line, as an explicit prefix has it: the remembered
         * search decision, from memory only (no index query on a hit).  A
         * serve that may finish on another thread (a store without local
         * files) has them set first; the pull statistics see the name the
         * request had (pull_name), whichever way it is served. */
        char pull_name[sizeof(req->canonical)];
        snprintf(pull_name, sizeof(pull_name), "%s", req->canonical);
        bool fill = req->canonical[0] == '\0' && req->route.kind == OM_ROUTE_SEARCH;
        bool early = fill && !req->head && !(om_store_caps(srv->store) & OM_STORE_CAN_SENDFILE);
        if (early)
            om_mcache_route_get(srv->mcache, req->p.name, req->upstream, sizeof(req->upstream),
                                req->canonical, sizeof(req->canonical));
        om_blob_served served = om_v2_blob_serve_cached(req, d, size, want, false, pull_name);
        if (served == OM_BLOB_SERVED) {
            if (fill && !early)
                om_mcache_route_get(srv->mcache, req->p.name, req->upstream,
                                    sizeof(req->upstream), req->canonical,
                                    sizeof(req->canonical));
            return queue(req);
        }
        if (served == OM_BLOB_PENDING)
            return MHD_YES;
        if (early) { /* the miss way sets them itself */
            req->upstream[0] = '\0';
            req->canonical[0] = '\0';
        }
    }
    /* Not served from the cache: a fetch, or a HEAD upstream to confirm the
     * repository holds it — upstream work, charged before any contact. */
    if (!om_req_limit_upstream(req))
        return queue(req);
    return om_blob_flight_join(req);
}
