/* cluster.h — one upstream transfer per blob for a whole cluster of
 * replicas: the download lease in Redis and the peer stream (cluster.c).
 *
 * The context (struct om_cluster) is owned by the server (srv->cluster);
 * NULL when cluster.redis or cluster.peer_url is unset: a replica alone,
 * every download coordinated only within the process, as before.  It holds
 * this replica's id (cluster.peer_url), its peer URL and token, and a
 * Redis handle of its own (om_redis_open; not the index's).
 *
 * The lease of a download of digest D (Redis, index_redis.h's schema):
 *   om:fl:D     "<replica_id>|<peer_url>|<epoch>", SET with PX lease_ms by
 *               a script that makes it only when absent (NX); renewed and
 *               released by scripts that act only while the value is still
 *               the caller's (a lease taken over is never touched by its
 *               stale owner).  Release PUBLISHes D on om:fl-done.
 *   om:fle:D    the epoch counter (INCR at each acquire, expires after an
 *               hour): a takeover has epoch + 1.
 *
 * Renewal: the owner of a download registers its lease with
 * om_cluster_hold; one thread of the context (the renewer) renews every
 * registered lease every third of cluster.lease, in one pipeline of renew
 * scripts, whatever the transfer is doing — waiting out om_upstream_do's
 * retry backoff, a slow token fetch, a slow first byte, a stalled stream —
 * until the download ends (om_cluster_unhold, before the release).  A
 * renewal that finds the lease no longer ours (expired through a Redis
 * outage, taken over) marks the hold lost and renews it no more; a Redis
 * that does not answer is tried again the next round.
 *
 * Thread safety: every call from any thread (the download threads); the
 * struct om_cluster_lease values are the caller's.
 *
 * The peer stream: om_cluster_peer_get runs one GET of
 * <peer_url>/internal/v1/blobs/D with `Authorization: Bearer <token>` and
 * `Range: bytes=<from>-` on the calling thread (libcurl), handing the
 * answer's status and headers, then its body, to the caller's sinks (the
 * same the upstream transfer uses, fetch.c).  Bounded: connect 2 s, a
 * stream that moves no byte for limits.idle_timeout fails, headers of at
 * most 16 KiB.
 */
#ifndef OM_CLUSTER_H
#define OM_CLUSTER_H

#include <stdatomic.h>

#include "core/config.h"
#include "core/om.h"
#include "core/ref.h"
#include "upstream/upstream.h"

struct om_cluster;

#define OM_CLUSTER_ID_MAX 300        /* replica id: a peer URL or host-pid */
#define OM_CLUSTER_VALUE_MAX 700     /* a lease's value in Redis, at most */

/* One lease as its holder (or an onlooker) knows it. */
struct om_cluster_lease {
    char value[OM_CLUSTER_VALUE_MAX + 1];   /* exactly what Redis holds */
    char owner[OM_CLUSTER_ID_MAX + 1];      /* replica id */
    char peer_url[OM_CLUSTER_ID_MAX + 1];   /* where its bytes are served */
    long long epoch;
};

/* NULL in *out (and OM_OK) when the config has no cluster.redis or no
 * cluster.peer_url (then logged once).  An unreachable Redis does not
 * fail the open (see redis.h).  *out owned by the caller. */
int om_cluster_open(struct om_cluster **out, const struct om_config *cfg);
void om_cluster_close(struct om_cluster *c);

const char *om_cluster_id(const struct om_cluster *c);
uint64_t om_cluster_lease_ms(const struct om_cluster *c);
/* Is Redis reachable now (one atomic load)?  Counters of the fallback. */
bool om_cluster_redis_up(struct om_cluster *c);
struct om_cluster_stats {
    uint64_t leases_won, leases_lost, takeovers, peer_streams, peer_failures, local_only;
};
void om_cluster_stats_get(struct om_cluster *c, struct om_cluster_stats *out);
/* Where Redis is and why it last failed (for /healthz). */
void om_cluster_redis_where(struct om_cluster *c, char *where, size_t wsz, char *why,
                            size_t ysz);
/* The peer token, constant-time compared with an Authorization header's
 * value ("Bearer <token>").  false for NULL. */
bool om_cluster_token_ok(const struct om_cluster *c, const char *authorization);

/* Try to take the lease of d.  OM_OK: *won says whether it is ours now
 * (*l is it) or another's (*l is theirs).  OM_ERR_UNAVAILABLE (or another
 * error): Redis does not answer — coordinate locally. */
int om_cluster_lease_take(struct om_cluster *c, const om_digest *d, struct om_cluster_lease *l,
                          bool *won);
/* Extend our lease.  OM_OK; OM_ERR_NOTFOUND when it is not ours any more
 * (expired, taken over); other errors: Redis. */
int om_cluster_lease_renew(struct om_cluster *c, const om_digest *d,
                           const struct om_cluster_lease *l);
/* Drop the lease if still ours (and PUBLISH om:fl-done). */
int om_cluster_lease_release(struct om_cluster *c, const om_digest *d,
                             const struct om_cluster_lease *l);
/* Renew our lease l of d from the renewer until om_cluster_unhold (see
 * "Renewal" above).  NULL when out of memory (then nobody renews it).
 * The hold is the caller's, freed by om_cluster_unhold. */
struct om_cluster_hold;
struct om_cluster_hold *om_cluster_hold(struct om_cluster *c, const om_digest *d,
                                        const struct om_cluster_lease *l);
/* A renewal found the lease not ours any more (one atomic load; false for
 * NULL). */
bool om_cluster_hold_lost(const struct om_cluster_hold *h);
/* Renew no more and free h (NULL is fine).  Before the lease's release. */
void om_cluster_unhold(struct om_cluster *c, struct om_cluster_hold *h);
/* Who holds the lease now: OM_OK (*l), OM_ERR_NOTFOUND (nobody), else
 * Redis errors. */
int om_cluster_lease_owner(struct om_cluster *c, const om_digest *d, struct om_cluster_lease *l);
/* The same for the resolution of a manifest by tag (om:ml:<repo>:<tag>,
 * epoch om:mle:<repo>:<tag>; released without a PUBLISH): true when this replica holds it now (it
 * resolves; om_cluster_tag_release after its index record is written);
 * false when another held it — then this call has waited (at most the
 * lease time and a second, polling) until it was released, so the shared
 * index holds the owner's fresh answer — or Redis does not answer (then at
 * once).  Job threads only: it may wait. */
bool om_cluster_tag_lease(struct om_cluster *c, const char *repo, const char *tag,
                          struct om_cluster_lease *l);
void om_cluster_tag_release(struct om_cluster *c, const char *repo, const char *tag,
                            const struct om_cluster_lease *l);
/* Parse a lease value "<id>|<url>|<epoch>" (pure; the unit test's). */
bool om_cluster_lease_parse(const char *value, size_t len, struct om_cluster_lease *l);

/* The peer stream (see the file comment).  on_headers gets the final
 * answer (status, content_length, content_range), on_body its body,
 * on_tick a tick at least once a second.  Returns what a sink returned,
 * OM_ERR_UPSTREAM (no connection, broken stream), OM_ERR_TIMEOUT
 * (cancelled, idle), OM_OK when the body ended cleanly; resp->status is
 * the answer's (0 = none). */
struct om_cluster_peer_req {
    const char *peer_url;
    const om_digest *digest;
    uint64_t range_from;
    uint64_t idle_timeout_ms;
    int (*on_headers)(void *ud, const struct om_up_resp *resp);
    int (*on_body)(void *ud, const void *buf, size_t len);
    void (*on_tick)(void *ud);
    void *ud;
    const atomic_bool *cancel;
};
int om_cluster_peer_get(struct om_cluster *c, const struct om_cluster_peer_req *rq,
                        struct om_up_resp *resp);

#endif
