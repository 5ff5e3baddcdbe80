/* fetch_cluster.c — a download in a cluster of replicas (fetch_int.h;
 * the lease and the peer stream are cluster.c's):
 *
 *   take the lease of the digest
 *     won   → the owner: today's upstream transfer (fetch.c), the lease
 *             renewed by the cluster's renewer thread every third of its
 *             time from the take to the release (so also while upstream
 *             is slow to answer or om_upstream_do backs off), released
 *             after the commit is visible (fetch.c)
 *     lost  → the bytes come from the owner's internal endpoint, resumed
 *             with Range from what this replica holds; the local spool is
 *             a plain one (no upload to the bucket as the bytes come: the
 *             owner's commit puts the object there, this one's is then a
 *             no-op — om_fetch__before_commit asks the store)
 *     won, but the object is in the shared store now (another replica
 *             committed it after this request looked) → its bytes from the
 *             store, the lease released: never a second upstream transfer
 *     Redis unavailable → today's upstream transfer, coordinated only
 *             among this replica's clients
 *   the peer stream breaks (the owner died, or its stream failed)
 *     → wait until the lease is gone or someone else's (at most the lease
 *       time and a second), then take it again: the winner (epoch + 1)
 *       resumes from the UPSTREAM at its own offset, the others stream
 *       from the new owner.  A peer that refuses our token makes the
 *       download go upstream without the lease (logged).
 * A stale owner (its lease renewal found the lease taken over) finishes
 * its download — its clients want the bytes — and asks the store before
 * its commit like a non-owner, so it never uploads a second copy when the
 * other's commit came first (a race between the two is harmless: the
 * object is content-addressed and identical).
 */
#include "cache/fetch_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define ROUNDS_MAX 8            /* lease rounds per download */
#define PEER_TRIES 4            /* peer streams in a row that each moved bytes */
#define POLL_MS 100

static void nap_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A non-owner's spool: a plain local file (see the file comment).  Only
 * before the first byte (no reader has the descriptor yet: readers get it
 * after the download is ready). */
static void use_plain_spool(struct om_fetch *f)
{
    struct om_store *st = f->t->st;
    struct om_ingest *ing = NULL;
    if (f->written > 0 || f->peer_copy || (om_store_caps(st) & OM_STORE_CAN_SENDFILE))
        return;
    if (om_ingest_begin(st, &ing) != OM_OK)
        return; /* keep the named one: a wasted upload, not a wrong one */
    int fd = dup(ing->fd);
    if (fd < 0) {
        om_ingest_abort(ing);
        return;
    }
    pthread_mutex_lock(&f->mu);
    int old_fd = f->read_fd;
    struct om_ingest *old = f->ing;
    f->read_fd = fd;
    f->ing = ing;
    pthread_mutex_unlock(&f->mu);
    if (old_fd >= 0)
        close(old_fd);
    om_ingest_abort(old);
}

/* Stream from the owner until done or it breaks without progress.
 * *refused: the peer refused our token (401/403). */
static int peer_stream(struct om_fetch *f, const struct om_cluster_lease *l, bool *refused)
{
    struct om_cluster *c = f->t->cluster;
    int err = OM_ERR_UPSTREAM;
    *refused = false;
    for (unsigned tries = 0; tries < PEER_TRIES; tries++) {
        uint64_t before = f->written;
        struct om_cluster_peer_req rq = {
            .peer_url = l->peer_url,
            .digest = &f->digest,
            .range_from = f->written,
            .idle_timeout_ms = f->t->cfg->limits.idle_timeout_ms,
            .on_headers = om_fetch__on_headers,
            .on_body = om_fetch__on_body,
            .on_tick = om_fetch__on_tick,
            .ud = f,
            .cancel = &f->t->cancel,
        };
        struct om_up_resp resp;
        f->headers_seen = false;
        err = om_cluster_peer_get(c, &rq, &resp);
        if (err == OM_OK && (resp.status == 200 || resp.status == 206)) {
            if (f->total == OM_FETCH_SIZE_UNKNOWN || f->written == f->total)
                return OM_OK;
            err = OM_ERR_UPSTREAM; /* a clean close short of the size */
        }
        if (resp.status == 401 || resp.status == 403) {
            *refused = true;
            return OM_ERR_AUTH;
        }
        if (err == OM_OK || err == OM_ERR_NOTFOUND)
            return OM_ERR_NOTFOUND; /* the peer has no such download (any more) */
        if (err != OM_ERR_UPSTREAM && err != OM_ERR_TIMEOUT)
            return err; /* disk full, a size lie, denied: not the stream's fault */
        if (atomic_load(&f->t->cancel) || f->written == before)
            return err;
        om_log_kv(OM_LOG_WARN, "peer stream broken, resuming from the peer", "digest",
                  f->digest.str, "peer", l->peer_url, "error", resp.error, NULL);
    }
    return err;
}

/* Wait until the lease l is gone or another's, at most bound_ms.  false:
 * still l after all that time — its owner renews it, alive, but we cannot
 * reach its endpoint. */
static bool wait_lease_change(struct om_fetch *f, const struct om_cluster_lease *l,
                              uint64_t bound_ms)
{
    int64_t until = om_now_ms() + (int64_t)bound_ms;
    while (om_now_ms() < until && !atomic_load(&f->t->cancel)) {
        struct om_cluster_lease now;
        int err = om_cluster_lease_owner(f->t->cluster, &f->digest, &now);
        if (err != OM_OK || strcmp(now.value, l->value) != 0)
            return true; /* gone, changed hands, or Redis down: try again */
        nap_ms(POLL_MS);
    }
    return atomic_load(&f->t->cancel);
}

/* The object is in the shared store already (another replica committed
 * it between this request's store check and its lease): its bytes from
 * there, not from upstream.  Counted as bytes from a peer. */
static int from_store(struct om_fetch *f, uint64_t size)
{
    struct om_up_resp r;
    size_t chunk = 1u << 20, got = 0;
    memset(&r, 0, sizeof(r));
    r.status = 200;
    r.content_length = (int64_t)size;
    f->headers_seen = true;
    f->from_peer = true;
    pthread_mutex_lock(&f->mu); /* read by om_fetch_via_peer */
    f->peer_copy = true;
    pthread_mutex_unlock(&f->mu);
    int err = om_fetch__on_headers(f, &r);
    char *buf = err == OM_OK ? malloc(chunk) : NULL; /* freed below */
    if (err == OM_OK && buf == NULL)
        err = OM_ERR_NOMEM;
    while (err == OM_OK && f->written < size) {
        if (atomic_load(&f->t->cancel)) {
            err = OM_ERR_TIMEOUT;
            break;
        }
        err = om_store_read_at(f->t->st, &f->digest, f->written, buf, chunk, &got);
        if (err == OM_OK && got == 0)
            err = OM_ERR_IO; /* shorter than it said */
        if (err == OM_OK)
            err = om_fetch__on_body(f, buf, got);
    }
    free(buf);
    f->from_peer = false;
    return err;
}

int om_fetch__transfer_cluster(struct om_fetch *f)
{
    struct om_fetch_table *t = f->t;
    struct om_cluster *c = t->cluster;
    uint64_t lease_ms = om_cluster_lease_ms(c);
    int err = OM_ERR_UPSTREAM;

    for (unsigned round = 0; round < ROUNDS_MAX; round++) {
        struct om_cluster_lease l;
        bool won = false, refused = false;
        if (atomic_load(&t->cancel))
            return OM_ERR_TIMEOUT;
        if (om_cluster_lease_take(c, &f->digest, &l, &won) != OM_OK) {
            f->from_peer = false; /* Redis down: our own clients only */
            return om_fetch__transfer_upstream(f);
        }
        struct om_store_stat ss;
        if (won && f->written == 0 && !(om_store_caps(t->st) & OM_STORE_CAN_SENDFILE) &&
            om_store_stat(t->st, &f->digest, &ss) == OM_OK) {
            (void)om_cluster_lease_release(c, &f->digest, &l);
            om_log_kv(OM_LOG_DEBUG, "cluster: committed by another replica meanwhile: reading "
                      "it from the store", "digest", f->digest.str, NULL);
            use_plain_spool(f);
            return from_store(f, ss.size);
        }
        if (won) {
            f->lease = l;
            f->leased = true;
            f->from_peer = false;
            f->hold = om_cluster_hold(c, &f->digest, &l);
            om_log_kv(OM_LOG_DEBUG, "cluster: download lease taken", "digest", f->digest.str,
                      "lease", l.value, NULL);
            if (f->written > 0) {
                char at[24];
                snprintf(at, sizeof(at), "%llu", (unsigned long long)f->written);
                om_log_kv(OM_LOG_WARN, "download taken over: resuming from upstream", "digest",
                          f->digest.str, "offset", at, "repo", f->canonical, NULL);
            }
            return om_fetch__transfer_upstream(f);
        }
        if (strcmp(l.owner, om_cluster_id(c)) == 0) {
            /* Our id, but no download of ours (one per digest here): a
             * lease a previous run of this replica left. */
            (void)om_cluster_lease_release(c, &f->digest, &l);
            continue;
        }
        om_log_kv(OM_LOG_DEBUG, "cluster: streaming from the owner's download", "digest",
                  f->digest.str, "lease", l.value, NULL);
        use_plain_spool(f);
        f->from_peer = true;
        pthread_mutex_lock(&f->mu); /* read by om_fetch_via_peer */
        f->peer_copy = true;
        pthread_mutex_unlock(&f->mu);
        err = peer_stream(f, &l, &refused);
        f->from_peer = false;
        if (err == OM_OK)
            return OM_OK;
        if (refused) {
            om_log_kv(OM_LOG_ERROR, "peer refused our cluster.peer_token: downloading from "
                      "upstream without the lease", "digest", f->digest.str, "peer",
                      l.peer_url, NULL);
            return om_fetch__transfer_upstream(f);
        }
        if (err != OM_ERR_UPSTREAM && err != OM_ERR_TIMEOUT && err != OM_ERR_NOTFOUND)
            return err;
        if (atomic_load(&t->cancel))
            return OM_ERR_TIMEOUT;
        if (err == OM_ERR_NOTFOUND) {
            nap_ms(POLL_MS); /* the owner's download just ended: look again */
        } else if (!wait_lease_change(f, &l, lease_ms + 1000)) {
            om_log_kv(OM_LOG_ERROR, "the owner of a download renews its lease but its peer "
                      "endpoint does not answer: downloading from upstream without the lease",
                      "digest", f->digest.str, "peer", l.peer_url, NULL);
            return om_fetch__transfer_upstream(f);
        }
    }
    return err;
}

void om_fetch__lease_tick(struct om_fetch *f)
{
    struct om_cluster *c = f->t->cluster;
    if (c == NULL || !f->leased || !om_cluster_hold_lost(f->hold))
        return;
    om_cluster_unhold(c, f->hold);
    f->hold = NULL;
    f->leased = false;
    om_log_kv(OM_LOG_WARN, "download lease lost (expired or taken over): finishing for our "
              "own clients", "digest", f->digest.str, NULL);
}

void om_fetch__before_commit(struct om_fetch *f)
{
    struct om_fetch_table *t = f->t;
    struct om_store_stat ss;
    om_fetch__lease_tick(f);
    if (t->cluster != NULL && f->leased &&
        om_cluster_lease_renew(t->cluster, &f->digest, &f->lease) == OM_ERR_NOTFOUND) {
        /* a whole lease for the commit at once (the renewer goes on during
         * an upload of the spool); not ours any more: commit like a
         * non-owner */
        om_cluster_unhold(t->cluster, f->hold);
        f->hold = NULL;
        f->leased = false;
    }
    if (t->cluster == NULL || (om_store_caps(t->st) & OM_STORE_CAN_SENDFILE) ||
        (f->leased && !f->peer_copy))
        return;
    /* What the store says updates what it remembers: the commit is a no-op
     * when the object is there. */
    (void)om_store_stat(t->st, &f->digest, &ss);
}

void om_fetch__lease_release(struct om_fetch *f)
{
    if (f->t->cluster == NULL)
        return;
    om_cluster_unhold(f->t->cluster, f->hold); /* renewed no more, then dropped */
    f->hold = NULL;
    if (!f->leased)
        return;
    (void)om_cluster_lease_release(f->t->cluster, &f->digest, &f->lease);
    f->leased = false;
}
