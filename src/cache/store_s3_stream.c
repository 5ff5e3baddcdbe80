/* store_s3_stream.c — streamed reads of objects, for serving a cached blob
 * from the bucket without blocking an HTTP thread.
 *
 * One thread per store (started by the first reader) runs a curl multi
 * handle: every reader is one ranged GET on it, writing into the reader's
 * own ring (at most OM_STORE_READER_BUF bytes, less for a small object).
 * The HTTP thread's content reader copies out of the ring and never waits:
 *   - ring empty: the reader registers (wake, ud) and calls suspend(ud),
 *     both under the reader's mutex; the transfer's write callback calls
 *     wake(ud) under the same mutex when bytes land (or the transfer ends),
 *     so a wake-up is never lost (the pattern of fetch.c's readers);
 *   - ring full: the write callback returns CURL_WRITEFUNC_PAUSE, libcurl
 *     stops reading the socket (TCP pushes back on the bucket); once the
 *     reader has drained half the ring it queues an "unpause" for the
 *     thread (curl_easy_pause may only be called by the handle's thread)
 *     and wakes it with curl_multi_wakeup.
 * A connection's memory is therefore bounded, and a slow client slows only
 * its own GET.
 *
 * The first answer: ready(ud) is called once, from this thread, when the
 * GET's status is known (206/200: OM_OK; 404: OM_ERR_NOTFOUND; anything
 * else, no answer, or none within FIRST_ANSWER_MS: OM_ERR_IO), so the
 * caller can still answer 503 or go the miss way before it sends a status
 * line.  A transfer that breaks after that is resumed (Range from the byte
 * after the last one received) up to RESUMES times; then the reader fails
 * and the caller cuts the client's connection (never a short body that
 * looks complete).
 *
 * Ownership: the caller owns a reader until om_store_reader_close; this
 * thread frees it after that (a transfer may still be running): closing
 * queues the reader for the thread, which removes its handle and frees it.
 * Commands (new, unpause, close) go through one queue under the
 * streamer's mutex.  Stopping (store close) comes after every reader was
 * closed (store_backend.h: close after every other call).
 */
#include "cache/store_s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define FIRST_ANSWER_MS 10000
#define STALL_MS 30000            /* no byte for this long, not paused: broken */
#define RESUMES 2
#define RING_MIN (64u * 1024)
/* The waiter is woken once this much is in the ring (or the range is
 * complete, or the transfer pauses or ends), not for every callback of
 * libcurl: each wake resumes a suspended connection, which costs a pass
 * of libmicrohttpd's loop for a few KiB otherwise.  Not above RING_MIN. */
#define WAKE_MIN (64u * 1024)
/* libcurl's receive buffer of a streamed GET (CURLOPT_BUFFERSIZE; its
 * default is 16 KiB): fewer, larger write callbacks. */
#define RECV_BUF (64L * 1024)
#define POLL_MS 200

struct s3_reader {
    struct om_store_reader base;   /* first */
    struct om_s3_streamer *sm;
    pthread_mutex_t mu;            /* everything below but the thread-only fields */
    char key[OM_S3_KEY_MAX];
    uint64_t off, len;             /* the range: [off, off + len) */
    uint64_t got;                  /* bytes received */
    char *ring;
    size_t cap, head, fill;
    bool ready, done, closed, paused, want_unpause, queued;
    int result;                    /* the first answer (after ready) */
    bool failed;                   /* done, and not every byte came */
    om_store_cb ready_cb;
    void *ready_ud;
    om_store_cb wake;              /* the registered waiter, or NULL */
    void *wake_ud;
    /* the thread's own */
    CURL *h;
    struct curl_slist *hdrs;
    bool in_multi;
    int resumes;
    int64_t deadline_ms;           /* the first answer by then */
    int64_t last_byte_ms;          /* when bytes last came (or the transfer began) */
    struct s3_reader *next;        /* the thread's list of readers */
    struct s3_reader *cmd_next;    /* the command queue */
};

struct om_s3_streamer {
    struct om_store_s3 *s;
    CURLM *multi;
    pthread_t th;
    pthread_mutex_t mu;            /* cmds, stop */
    struct s3_reader *cmds;
    bool stop;
    struct s3_reader *all;         /* the thread's */
};

/* Queue r for the thread (once) and wake it. */
static void command(struct s3_reader *r)
{
    struct om_s3_streamer *sm = r->sm;
    pthread_mutex_lock(&sm->mu);
    if (!r->queued) {
        r->queued = true;
        r->cmd_next = sm->cmds;
        sm->cmds = r;
    }
    pthread_mutex_unlock(&sm->mu);
    curl_multi_wakeup(sm->multi);
}

/* ---- the consumer's side ------------------------------------------------- */

static int r_result(struct om_store_reader *base)
{
    struct s3_reader *r = (struct s3_reader *)base;
    pthread_mutex_lock(&r->mu);
    int res = r->ready ? r->result : OM_ERR_IO;
    pthread_mutex_unlock(&r->mu);
    return res;
}

static ssize_t r_read(struct om_store_reader *base, void *buf, size_t max, om_store_cb suspend,
                      om_store_cb wake, void *ud)
{
    struct s3_reader *r = (struct s3_reader *)base;
    ssize_t ret;
    bool cmd = false;

    pthread_mutex_lock(&r->mu);
    if (r->fill > 0) {
        size_t n = max < r->fill ? max : r->fill;
        size_t first = r->cap - r->head < n ? r->cap - r->head : n;
        memcpy(buf, r->ring + r->head, first);
        memcpy((char *)buf + first, r->ring, n - first);
        r->head = (r->head + n) % r->cap;
        r->fill -= n;
        if (r->paused && !r->want_unpause && r->fill <= r->cap / 2) {
            r->want_unpause = true;
            cmd = true;
        }
        ret = (ssize_t)n;
    } else if (r->done || (r->ready && r->result != OM_OK)) {
        ret = !r->failed && r->result == OM_OK && r->got == r->len ? OM_STORE_READ_EOF
                                                                    : OM_STORE_READ_FAILED;
    } else {
        r->wake = wake;
        r->wake_ud = ud;
        suspend(ud);
        ret = OM_STORE_READ_WAIT;
        if (r->paused && !r->want_unpause) { /* cannot be, but never wait on a paused one */
            r->want_unpause = true;
            cmd = true;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (cmd)
        command(r);
    return ret;
}

static void r_close(struct om_store_reader *base)
{
    struct s3_reader *r = (struct s3_reader *)base;
    pthread_mutex_lock(&r->mu);
    r->closed = true;
    r->wake = NULL;
    pthread_mutex_unlock(&r->mu);
    command(r);
}

static const struct om_store_reader_ops reader_ops = {r_result, r_read, r_close};

/* ---- the transfer's callbacks (the thread) ------------------------------- */

/* Wake the registered waiter; r->mu held. */
static void wake_locked(struct s3_reader *r)
{
    if (r->wake != NULL) {
        om_store_cb w = r->wake;
        r->wake = NULL;
        w(r->wake_ud);
    }
}

/* The first answer: result, then the caller's ready (without r->mu). */
static void set_ready(struct s3_reader *r, int result)
{
    pthread_mutex_lock(&r->mu);
    bool first = !r->ready;
    r->ready = true;
    r->result = result;
    if (result != OM_OK)
        r->done = true;
    wake_locked(r);
    pthread_mutex_unlock(&r->mu);
    if (first)
        r->ready_cb(r->ready_ud);
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct s3_reader *r = ud;
    size_t n = size * nmemb;
    long status = 0;

    if (!(n <= 2 && (n == 0 || p[0] == '\r' || p[0] == '\n')))
        return n; /* not the end of a header block */
    curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &status);
    if (status == 100)
        return n;
    bool resumed = r->ready;
    if (status == 206 || (status == 200 && r->off == 0 && r->got == 0)) {
        if (!resumed)
            set_ready(r, OM_OK);
        return n;
    }
    if (resumed)
        return 0; /* a resume that did not give the range: fail it */
    set_ready(r, status == 404 ? OM_ERR_NOTFOUND : OM_ERR_IO);
    if (status != 404) {
        char st[16];
        snprintf(st, sizeof(st), "%ld", status);
        om_log_kv(OM_LOG_ERROR, "s3: streamed GET refused", "key", r->key, "status", st, NULL);
    }
    return 0; /* abort: nothing of its body is wanted */
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct s3_reader *r = ud;
    size_t n = size * nmemb;

    pthread_mutex_lock(&r->mu);
    if (r->closed || r->got + n > r->len) {
        pthread_mutex_unlock(&r->mu);
        return 0; /* closed, or more than the range: stop */
    }
    if (r->cap - r->fill < n) {
        r->paused = true;
        wake_locked(r); /* whatever the ring holds is the consumer's now */
        pthread_mutex_unlock(&r->mu);
        return CURL_WRITEFUNC_PAUSE;
    }
    size_t tail = (r->head + r->fill) % r->cap;
    size_t first = r->cap - tail < n ? r->cap - tail : n;
    memcpy(r->ring + tail, p, first);
    memcpy(r->ring, p + first, n - first);
    r->fill += n;
    r->got += n;
    r->last_byte_ms = om_now_ms();
    if (r->fill >= WAKE_MIN || r->got == r->len)
        wake_locked(r);
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* A (new) handle for r's bytes from r->off + r->got on. */
static int start_transfer(struct om_s3_streamer *sm, struct s3_reader *r)
{
    if (r->h != NULL) {
        curl_easy_cleanup(r->h);
        curl_slist_free_all(r->hdrs);
        r->hdrs = NULL;
    }
    r->h = curl_easy_init();
    if (r->h == NULL)
        return OM_ERR_NOMEM;
    int err = om_s3_setup_get(sm->s->cl, r->h, r->key, true, r->off + r->got,
                              r->off + r->len - 1, &r->hdrs);
    if (err != OM_OK)
        return err;
    curl_easy_setopt(r->h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(r->h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(r->h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(r->h, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->h, CURLOPT_BUFFERSIZE, RECV_BUF);
    if (curl_multi_add_handle(sm->multi, r->h) != CURLM_OK)
        return OM_ERR_IO;
    r->in_multi = true;
    pthread_mutex_lock(&r->mu);
    r->last_byte_ms = om_now_ms();
    pthread_mutex_unlock(&r->mu);
    return OM_OK;
}

static void reader_free(struct s3_reader *r)
{
    if (r->h != NULL)
        curl_easy_cleanup(r->h);
    curl_slist_free_all(r->hdrs);
    pthread_mutex_destroy(&r->mu);
    free(r->ring);
    free(r);
}

static void detach(struct om_s3_streamer *sm, struct s3_reader *r)
{
    if (r->in_multi) {
        curl_multi_remove_handle(sm->multi, r->h);
        r->in_multi = false;
    }
}

/* A transfer ended (res): done, resumed, or the first answer failed. */
static void transfer_done(struct om_s3_streamer *sm, struct s3_reader *r, CURLcode res)
{
    detach(sm, r);
    pthread_mutex_lock(&r->mu);
    bool ready = r->ready, closed = r->closed, complete = r->got == r->len;
    pthread_mutex_unlock(&r->mu);
    if (!ready) {
        om_log_kv(OM_LOG_ERROR, "s3: streamed GET failed", "key", r->key, "error",
                  curl_easy_strerror(res), NULL);
        set_ready(r, OM_ERR_IO);
        return;
    }
    if (closed || r->result != OM_OK)
        return;
    if (!complete && r->resumes < RESUMES) {
        r->resumes++;
        om_log_kv(OM_LOG_WARN, "s3: streamed GET broke off, resuming", "key", r->key, "error",
                  curl_easy_strerror(res), NULL);
        if (start_transfer(sm, r) == OM_OK)
            return;
    }
    pthread_mutex_lock(&r->mu);
    r->done = true;
    r->failed = !complete;
    wake_locked(r);
    pthread_mutex_unlock(&r->mu);
    if (!complete)
        om_log_kv(OM_LOG_ERROR, "s3: streamed GET failed mid-object", "key", r->key, "error",
                  curl_easy_strerror(res), NULL);
}

/* Run the queued commands. */
static void run_commands(struct om_s3_streamer *sm)
{
    pthread_mutex_lock(&sm->mu);
    struct s3_reader *q = sm->cmds;
    sm->cmds = NULL;
    for (struct s3_reader *r = q; r != NULL; r = r->cmd_next)
        r->queued = false;
    pthread_mutex_unlock(&sm->mu);
    while (q != NULL) {
        struct s3_reader *r = q;
        q = q->cmd_next;
        pthread_mutex_lock(&r->mu);
        bool closed = r->closed, unpause = r->want_unpause && r->paused;
        r->want_unpause = false;
        if (unpause) {
            r->paused = false;
            r->last_byte_ms = om_now_ms(); /* a pause is not a stall */
        }
        pthread_mutex_unlock(&r->mu);
        if (closed) {
            detach(sm, r);
            for (struct s3_reader **p = &sm->all; *p != NULL; p = &(*p)->next) {
                if (*p == r) {
                    *p = r->next;
                    break;
                }
            }
            reader_free(r);
        } else if (r->h == NULL) { /* new */
            r->next = sm->all;
            sm->all = r;
            if (start_transfer(sm, r) != OM_OK)
                set_ready(r, OM_ERR_IO);
        } else if (unpause && r->in_multi) {
            curl_easy_pause(r->h, CURLPAUSE_CONT); /* may deliver at once */
        }
    }
}

/* Readers still without a first answer past their deadline, and
 * transfers that stopped moving without being paused (a hung bucket: the
 * client's connection is suspended, so nothing else would end it). */
static void check_deadlines(struct om_s3_streamer *sm)
{
    int64_t now = om_now_ms();
    for (struct s3_reader *r = sm->all; r != NULL; r = r->next) {
        pthread_mutex_lock(&r->mu);
        bool late = !r->ready && now > r->deadline_ms;
        bool stalled = r->ready && !r->done && !r->paused && r->in_multi &&
                       now - r->last_byte_ms > STALL_MS;
        pthread_mutex_unlock(&r->mu);
        if (late) {
            detach(sm, r);
            om_log_kv(OM_LOG_ERROR, "s3: no answer to a streamed GET in time", "key", r->key,
                      NULL);
            set_ready(r, OM_ERR_IO);
        } else if (stalled) {
            transfer_done(sm, r, CURLE_OPERATION_TIMEDOUT);
        }
    }
}

static void *streamer_main(void *arg)
{
    struct om_s3_streamer *sm = arg;
    for (;;) {
        int running = 0, numfds = 0;
        run_commands(sm);
        curl_multi_perform(sm->multi, &running);
        CURLMsg *m;
        int left = 0;
        while ((m = curl_multi_info_read(sm->multi, &left)) != NULL) {
            struct s3_reader *r = NULL;
            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            if (r != NULL)
                transfer_done(sm, r, m->data.result);
        }
        check_deadlines(sm);
        pthread_mutex_lock(&sm->mu);
        bool stop = sm->stop && sm->cmds == NULL;
        pthread_mutex_unlock(&sm->mu);
        if (stop)
            break;
        curl_multi_poll(sm->multi, NULL, 0, POLL_MS, &numfds);
    }
    while (sm->all != NULL) { /* readers never closed: a caller's bug, but no leak */
        struct s3_reader *r = sm->all;
        sm->all = r->next;
        detach(sm, r);
        reader_free(r);
    }
    return NULL;
}

/* The store's streamer, started on first use (s->mu). */
static struct om_s3_streamer *streamer_of(struct om_store_s3 *s)
{
    struct om_s3_streamer *sm = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->streamer == NULL) {
        sm = calloc(1, sizeof(*sm)); /* owned by s */
        if (sm != NULL && (sm->multi = curl_multi_init()) != NULL) {
            sm->s = s;
            pthread_mutex_init(&sm->mu, NULL);
            if (pthread_create(&sm->th, NULL, streamer_main, sm) == 0) {
                s->streamer = sm;
                sm = NULL;
            } else {
                pthread_mutex_destroy(&sm->mu);
            }
        }
        if (sm != NULL) {
            if (sm->multi != NULL)
                curl_multi_cleanup(sm->multi);
            free(sm);
        }
    }
    sm = s->streamer;
    pthread_mutex_unlock(&s->mu);
    return sm;
}

void om_store_s3__streamer_free(struct om_s3_streamer *sm)
{
    if (sm == NULL)
        return;
    pthread_mutex_lock(&sm->mu);
    sm->stop = true;
    pthread_mutex_unlock(&sm->mu);
    curl_multi_wakeup(sm->multi);
    pthread_join(sm->th, NULL);
    curl_multi_cleanup(sm->multi);
    pthread_mutex_destroy(&sm->mu);
    free(sm);
}

int om_store_s3__reader_open(struct om_store *st, const om_digest *d, uint64_t off,
                             uint64_t len, om_store_cb ready, void *ud,
                             struct om_store_reader **out)
{
    struct om_store_s3 *s = om_store_s3__of(st);
    struct om_s3_streamer *sm = NULL;
    struct s3_reader *r = NULL;
    uint64_t size = 0;
    int err = OM_OK;

    *out = NULL;
    if (len == 0) {
        if (!om_s3_objects_get(s->objs, d, &size, NULL) || off >= size) {
            err = OM_ERR_NOTFOUND;
            goto done;
        }
        len = size - off;
    }
    if ((sm = streamer_of(s)) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    r = calloc(1, sizeof(*r)); /* the caller's via *out; freed by the thread after close */
    if (r == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    if ((err = om_store_s3__key(s, d, r->key, sizeof(r->key))) != OM_OK)
        goto done;
    r->cap = len < OM_STORE_READER_BUF ? (len < RING_MIN ? RING_MIN : (size_t)len)
                                       : OM_STORE_READER_BUF;
    if ((r->ring = malloc(r->cap)) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    pthread_mutex_init(&r->mu, NULL);
    r->base.ops = &reader_ops;
    r->sm = sm;
    r->off = off;
    r->len = len;
    r->ready_cb = ready;
    r->ready_ud = ud;
    r->deadline_ms = om_now_ms() + FIRST_ANSWER_MS;
    *out = &r->base; /* before the thread can call ready */
    command(r);
    r = NULL;
done:
    if (r != NULL) {
        free(r->ring);
        free(r);
    }
    return err;
}
