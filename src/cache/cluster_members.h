/* cluster_members.h — who is in the cluster: each replica's heartbeat in
 * Redis, the listing of live replicas and of the downloads in flight
 * (their leases), a PING for Redis's health.  Implemented in
 * cluster_members.c; used by the server (it starts the heartbeat when
 * cluster.redis is set) and the admin API (/api/v1/cluster, /metrics).
 *
 * Keys (the "om:" prefix of index_redis.h, one database per cluster):
 *   om:rp:<replica_id>   STRING  JSON {id, peer_url, version, started_at,
 *                                last_seen, in_flight, bytes_served,
 *                                index_ok, bucket_ok}; PX = 3 heartbeats
 *   om:replicas          ZSET    replica_id → last_seen (ms): the listing
 *                                (a member whose om:rp: key expired is
 *                                dead; pruned by every beat)
 *   om:fl:<digest>       STRING  "<replica_id>|<peer_url>|<epoch>": the
 *                                download lease (written by the download
 *                                path, only read here)
 * replica_id = cluster.peer_url when set, else "<hostname>-<pid>".
 *
 * Thread: one per struct, beating every OM_CLUSTER_BEAT_MS.  With Redis
 * down the beats fail fast (redis.h: OM_ERR_UNAVAILABLE without touching
 * the network; redis.c logs the outage once) and resume when it is back.
 */
#ifndef OM_CLUSTER_MEMBERS_H
#define OM_CLUSTER_MEMBERS_H

#include "core/config.h"
#include "core/om.h"

#include <stdbool.h>
#include <stdint.h>

struct om_redis;   /* redis.h */
struct om_store;   /* store.h */

#define OM_CLUSTER_BEAT_MS 2000
#define OM_CLUSTER_EXPIRY_MS (3 * OM_CLUSTER_BEAT_MS)
#define OM_MEMBERS_ID_MAX 256
#define OM_CLUSTER_URL_MAX 256
#define OM_MEMBERS_FLIGHTS_MAX 200     /* download leases one listing reads */
#define OM_MEMBERS_REPLICAS_MAX 256    /* replicas one listing reads */

/* This replica's id (see above) into out ("" when it does not fit). */
void om_members_replica_id(const struct om_config *cfg, char *out, size_t outsz);

/* What a beat says of this replica, asked of the host each beat. */
struct om_members_self {
    uint64_t in_flight;               /* downloads this replica runs */
    uint64_t bytes_served;            /* body bytes sent to clients since start */
    bool index_ok;                    /* the index answers */
};

struct om_members_host {
    const struct om_config *cfg;      /* borrowed: cluster.peer_url */
    struct om_redis *redis;           /* borrowed (the index's connection) */
    struct om_store *store;           /* borrowed: the bucket's health probe */
    int64_t started_ms;
    void (*self)(void *ud, struct om_members_self *out); /* NULL: zeros */
    void *ud;
};

struct om_members;   /* opaque; srv->cluster */

/* Start beating (the first beat before it returns).  *out owned by the
 * caller (om_members_stop).  Every pointer in host must outlive it. */
int om_members_start(struct om_members **out, const struct om_members_host *host);
/* Stop the thread, remove this replica's heartbeat (best effort), free.
 * NULL is fine. */
void om_members_stop(struct om_members *c);

const char *om_members_id(const struct om_members *c);

struct om_members_replica {
    char id[OM_MEMBERS_ID_MAX];
    char peer_url[OM_CLUSTER_URL_MAX];
    char version[32];
    int64_t started_at, last_seen;    /* Unix ms, as the replica wrote them */
    uint64_t in_flight, bytes_served;
    bool index_ok, bucket_ok;
    bool self;                        /* this replica */
};

/* The live replicas (their heartbeat keys exist), at most max, ordered by
 * id.  OM_ERR_UNAVAILABLE when Redis is down. */
int om_members_replicas(struct om_members *c, struct om_members_replica *out, size_t max,
                        size_t *n);

struct om_members_flight {
    char digest[OM_DIGEST_MAX + 1];
    char owner[OM_MEMBERS_ID_MAX];
    char peer_url[OM_CLUSTER_URL_MAX];
    char epoch[32];
    int64_t ttl_ms;                   /* -1: no expiry */
};

/* The download leases (om:fl:*), at most max (a bounded SCAN);
 * *truncated when there may be more. */
int om_members_flights(struct om_members *c, struct om_members_flight *out, size_t max,
                       size_t *n, bool *truncated);

/* PING: *latency_us on success. */
int om_members_ping(struct om_members *c, int64_t *latency_us);

/* The bucket (store) probe: a stat of an object; OM_OK when the store
 * answered (found or not), *latency_us then set. */
int om_members_store_probe(struct om_store *st, int64_t *latency_us);

/* What the last beat saw (for /metrics, no round trip): live replicas and
 * leases counted (0 before the first beat or with Redis down). */
void om_members_last_counts(struct om_members *c, uint64_t *replicas, uint64_t *flights);
/* ... and what its bucket probe said (*latency_us -1 before the first). */
void om_members_last_bucket(struct om_members *c, bool *ok, int64_t *latency_us);

/* Who holds the cluster's GC lease (om:lock:gc, index_gc.h): its value
 * into out ("" and OM_ERR_NOTFOUND when nobody). */
int om_members_gc_holder(struct om_members *c, char *out, size_t outsz);

#endif
