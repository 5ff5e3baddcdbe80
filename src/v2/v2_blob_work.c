/* v2_blob_work.c — a blob flight's work on its job thread (v2_blob.h:
 * om_v2_blob_work): whether the store holds the blob at the size it must
 * have (a damaged copy quarantined), whether the name's repository holds
 * it (v2_member.c), which upstream serves it (the route decision, or HEAD
 * probes in search order, a missing object told from a missing
 * repository), limits.max_blob_size, and for a GET the single download of
 * the digest (fetch.c) up to its first answer — with the answer every
 * request of the flight gets, and what the memory keeps of it.
 */
#include "v2/v2_blob.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cache/mcache.h"
#include "core/log.h"
#include "v2/v2.h"

/* ---- a flight's work (job thread) ----------------------------------- */

/* HEAD the blob on candidate ci. Returns the HTTP status (0 = unreachable)
 * and its size. */
static long head_blob(struct om_req *req, size_t ci, int64_t *size)
{
    struct om_server *srv = req->srv;
    const struct om_route_candidate *c = &req->route.c[ci];
    char path[OM_NAME_MAX + OM_DIGEST_MAX + 32];
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", c->remote, req->p.ref.digest.str);
    struct om_up_req ur = {.method = "HEAD", .path = path, .scope_repo = c->remote,
                           .max_body = 65536, .cancel = &srv->cancel};
    struct om_up_resp resp;
    int err = om_upstream_do(srv->up[c->upstream], &ur, &resp);
    long st = err == OM_OK ? resp.status : 0;
    *size = resp.content_length;
    om_up_resp_clear(&resp);
    return st;
}

static void set_answer(struct om_blob_answer *a, unsigned status, const char *code,
                       const char *message)
{
    a->status = status;
    a->code = code;
    snprintf(a->message, sizeof(a->message), "%s", message);
}

static void answer_missing(struct om_blob_answer *a, const char *canonical, const om_digest *d)
{
    a->status = MHD_HTTP_NOT_FOUND;
    a->code = "BLOB_UNKNOWN";
    snprintf(a->message, sizeof(a->message), "%s has no blob %s", canonical, d->str);
}

/* What the memory says of a blob that is not there (m->status != 200). */
static void answer_remembered(struct om_blob_answer *a, const struct om_blob_memo *m,
                              const char *canonical, const om_digest *d)
{
    if (m->status == 404)
        answer_missing(a, canonical, d);
    else if (m->status == 429)
        set_answer(a, MHD_HTTP_TOO_MANY_REQUESTS, "TOOMANYREQUESTS", "upstream rate limit");
    else
        set_answer(a, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "upstream unavailable");
}

/* 403 DENIED: the blob is over limits.max_blob_size (size 0: not known
 * exactly, only that the upstream sent more). */
static void too_big(struct om_blob_answer *a, const struct om_server *srv, const om_digest *d,
                    uint64_t size)
{
    char lim[32];
    om_format_size(srv->cfg->limits.max_blob_size, lim, sizeof(lim));
    a->status = MHD_HTTP_FORBIDDEN;
    a->code = "DENIED";
    if (size > 0)
        snprintf(a->message, sizeof(a->message),
                 "blob %s is %llu bytes, over limits.max_blob_size (%s)", d->str,
                 (unsigned long long)size, lim);
    else
        snprintf(a->message, sizeof(a->message), "blob %s is over limits.max_blob_size (%s)",
                 d->str, lim);
}

/* A download of c's blob d that failed before its first byte (err and
 * status from om_fetch_wait_ready): the answer, and what the memory
 * keeps of it — an upstream's answer, not a local failure and not a wait
 * that merely timed out (the download goes on; later requests join it). */
void om_v2_blob_fetch_failed(struct om_server *srv, const struct om_route_candidate *c,
                         const om_digest *d, int err, long status, struct om_blob_answer *a)
{
    struct om_blob_memo m = {0};
    if (status == 404 || status == 401 || status == 403) {
        answer_missing(a, c->canonical, d);
        m.status = 404;
    } else if (status == 429) {
        set_answer(a, MHD_HTTP_TOO_MANY_REQUESTS, "TOOMANYREQUESTS", "upstream rate limit");
        m.status = 429;
    } else if (err == OM_ERR_DENIED) {
        too_big(a, srv, d, 0);
    } else if (err == OM_ERR_DIGEST) {
        set_answer(a, MHD_HTTP_BAD_GATEWAY, "BLOB_UNKNOWN",
                   "upstream sent bytes that do not match the digest");
    } else if (err == OM_ERR_NOSPACE || err == OM_ERR_IO) {
        set_answer(a, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                   "the mirror's storage is full or failing");
    } else {
        set_answer(a, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "upstream unavailable");
        if (status != 0 || err == OM_ERR_UPSTREAM)
            m.status = 503;
    }
    if (m.status != 0)
        om_blob_memo_put(srv, c->canonical, d, &m);
}

/* A stored copy of the blob: true (its size in *stored) when it is the
 * right size — servable once the repository is known to hold it
 * (v2_member.c).  One of the wrong size is quarantined and the request
 * goes on as a miss.  A store whose has() is what the process remembers
 * (no local files: the bucket) is asked itself here, before anything goes
 * upstream: another replica may have put the blob there, or another
 * process removed it; a store that does not answer makes a 503 (false,
 * a->status set). */
static bool check_stored(struct om_req *req, struct om_blob_answer *a, uint64_t *stored)
{
    struct om_server *srv = req->srv;
    const om_digest *d = &req->p.ref.digest;
    uint64_t size = 0, want = 0;
    char disk[24], must[24], msg[128];
    bool ok = false;

    if (!(om_store_caps(srv->store) & OM_STORE_CAN_SENDFILE)) {
        struct om_store_stat ss;
        int serr = om_store_stat(srv->store, d, &ss);
        if (serr == OM_ERR_IO) {
            set_answer(a, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                       "the mirror's storage is not answering");
            goto done;
        }
        if (serr != OM_OK)
            goto done;
        size = ss.size;
    } else if (!om_store_has(srv->store, d, &size)) {
        goto done;
    }
    if (!om_v2_blob_expected_size(srv, d, &want) || size == want) {
        ok = true;
        goto done;
    }
    snprintf(disk, sizeof(disk), "%" PRIu64, size);
    snprintf(must, sizeof(must), "%" PRIu64, want);
    int err = om_store_quarantine(srv->store, d, size);
    if (err == OM_OK) {
        om_log_kv(OM_LOG_ERROR, "stored blob is not the size it must be: quarantined, fetching it "
                  "again", "digest", d->str, "size_on_disk", disk, "size", must, "name",
                  req->p.name, NULL);
        snprintf(msg, sizeof(msg), "blob damaged on disk (%s bytes, must be %s): quarantined, "
                 "fetched again", disk, must);
        om_events_add(srv->events, OM_EV_ERROR, req->p.name, d->str, size, msg);
    } else if (err == OM_ERR_NOTFOUND) {
        /* Moved or replaced meanwhile (another request's quarantine and
         * download): the copy there now may be the right one. */
        ok = om_store_has(srv->store, d, &size) && size == want;
    } else {
        /* Never served all the same: clients get the download's bytes, and
         * its commit leaves the damaged file in place for fsck. */
        om_log_kv(OM_LOG_ERROR, "stored blob is not the size it must be and cannot be moved "
                  "aside", "digest", d->str, "size_on_disk", disk, "size", must, "error",
                  om_strerror(err), NULL);
    }
done:
    *stored = size;
    return ok;
}

void om_v2_blob_work(struct om_req *req, struct om_blob_answer *a)
{
    struct om_server *srv = req->srv;
    const om_digest *d = &req->p.ref.digest;
    size_t order[OM_MAX_UPSTREAMS];
    bool decided = false, unavailable = false;
    size_t chosen = SIZE_MAX;
    int64_t head_size = -1;
    const char *missing_in = NULL; /* the repository known to lack the blob */
    struct om_blob_memo m;
    uint64_t stored_size = 0;
    bool confirmed = false;        /* the chosen repository holds it: index or upstream */
    bool chosen_member = false;    /* ... known before this request */

    a->status = MHD_HTTP_OK;
    /* Stored: served only under a repository known to hold it (the index,
     * or the upstream's answer for it: v2_member.c). */
    bool stored = check_stored(req, a, &stored_size);
    if (a->status != MHD_HTTP_OK)
        goto done; /* the store itself does not answer */
    size_t n = om_v2_candidates(req, order, &decided);
    if (decided && n == 1 && !req->head && !stored) {
        chosen = order[0]; /* a GET asks with its download */
    } else {
        for (size_t k = 0; k < n && chosen == SIZE_MAX && missing_in == NULL; k++) {
            size_t ci = order[k];
            const struct om_route_candidate *c = &req->route.c[ci];
            bool member = stored && om_v2_member_known(srv, c->canonical, d);
            bool remembered = !member && om_blob_memo_get(srv, c->canonical, d, &m);
            long st = member       ? 200
                      : remembered ? (long)m.status
                                   : head_blob(req, ci, &head_size);
            if (member)
                head_size = (int64_t)stored_size;
            if (remembered && st == 200)
                head_size = (int64_t)m.size;
            if (st == 200) {
                chosen = ci;
                confirmed = true;
                chosen_member = member;
                if (!member && !remembered && head_size >= 0) {
                    m = (struct om_blob_memo){.status = 200, .size = (uint64_t)head_size};
                    om_blob_memo_put(srv, c->canonical, d, &m);
                }
            } else if (st == 0 || st >= 500 || st == 429) {
                unavailable = true;
                if (!remembered) {
                    m = (struct om_blob_memo){.status = st == 429 ? 429 : 503};
                    om_blob_memo_put(srv, c->canonical, d, &m);
                }
            } else if (remembered || decided) {
                /* Remembered as missing only where the repository is. */
                missing_in = c->canonical;
            } else {
                /* A bodiless 404 says nothing of the repository: ask. */
                om_repo_evidence ev = om_v2_repo_miss(req, ci, st, NULL, 0);
                if (ev == OM_REPO_PRESENT) {
                    om_v2_note_probe(req, ci, true, unavailable);
                    missing_in = c->canonical;
                } else if (ev == OM_REPO_ABSENT) {
                    om_v2_note_probe(req, ci, false, decided);
                }
            }
            if (missing_in != NULL && !remembered) {
                m = (struct om_blob_memo){.status = 404};
                om_blob_memo_put(srv, c->canonical, d, &m);
            }
        }
    }
    if (chosen == SIZE_MAX) {
        if (missing_in != NULL) {
            answer_missing(a, missing_in, d);
        } else if (unavailable) {
            set_answer(a, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", "upstream unavailable");
        } else {
            a->status = MHD_HTTP_NOT_FOUND;
            a->code = "BLOB_UNKNOWN";
            snprintf(a->message, sizeof(a->message), "blob %s of \"%s\" was not found upstream",
                     d->str, req->p.name);
        }
        goto done;
    }
    const struct om_route_candidate *c = &req->route.c[chosen];
    snprintf(req->canonical, sizeof(req->canonical), "%s", c->canonical);
    snprintf(req->upstream, sizeof(req->upstream), "%s", srv->cfg->upstreams[c->upstream].name);
    a->chosen = chosen;
    if (stored) { /* confirmed: the loop ran */
        if (!chosen_member)
            om_v2_member_blob_confirmed(srv, c->canonical, d, stored_size);
        a->cached = true;
        goto done;
    }

    /* limits.max_blob_size: refused before a byte is fetched, when the
     * upstream's HEAD told the size (else the download's headers do). */
    if (srv->cfg->limits.max_blob_size > 0 && head_size >= 0 &&
        (uint64_t)head_size > srv->cfg->limits.max_blob_size) {
        too_big(a, srv, d, (uint64_t)head_size);
        goto done;
    }
    if (req->head) {
        uint64_t want = 0;
        if (head_size >= 0)
            a->size = (uint64_t)head_size;
        else if (om_v2_blob_expected_size(srv, d, &want))
            a->size = want; /* an upstream that sent no length: what we know */
        goto done;
    }
    if (om_blob_memo_get(srv, c->canonical, d, &m) && m.status != 200) {
        answer_remembered(a, &m, c->canonical, d);
        goto done;
    }
    struct om_fetch_src src = {srv->up[c->upstream], c->remote, c->canonical};
    int err = om_fetch_get(srv->fetch, d, &src, &a->f, &a->joined);
    if (err != OM_OK) {
        set_answer(a, MHD_HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE", om_strerror(err));
        goto done;
    }
    /* A download already running may be another repository's: this one
     * must hold the blob too before it gets a byte of it. */
    if (a->joined && !confirmed && !om_v2_member_known(srv, c->canonical, d) &&
        !om_v2_member_confirm_join(req, chosen, a)) {
        om_fetch_release(a->f);
        a->f = NULL;
        goto done;
    }
    uint64_t total = 0;
    long status = 0;
    err = om_fetch_wait_ready(a->f, srv->cfg->limits.idle_timeout_ms, &total, &status);
    if (err != OM_OK) {
        om_fetch_release(a->f);
        a->f = NULL;
        om_v2_blob_fetch_failed(srv, c, d, err, status, a);
        goto done;
    }
    /* Bytes from another replica's download (cluster): that one may be
     * another repository's, so this one must hold the blob too, as for a
     * local download joined (one HEAD under its name). */
    if (!confirmed && om_fetch_via_peer(a->f) && !om_v2_member_known(srv, c->canonical, d) &&
        !om_v2_member_confirm_join(req, chosen, a)) {
        om_fetch_release(a->f);
        a->f = NULL;
        goto done;
    }
    /* The upstream answered for this repository (its own download, or the
     * HEAD): the hit path may serve it here once it is committed. */
    om_v2_member_note(srv, c->canonical, d, NULL, 0);
    a->size = total;
    if (total != OM_FETCH_SIZE_UNKNOWN)
        om_mcache_size_put(srv->mcache, d, total); /* what the download will commit */
done:
    return;
}

