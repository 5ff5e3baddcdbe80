/* admin_cluster.c — GET /api/v1/cluster (docs/admin-api.md) and what this
 * replica's heartbeat says of it (om_admin_cluster_self).
 *
 * The answer:
 *   {"mode": "alone" | "cluster", "replica_id", "peer_url",
 *    "replicas": [{id, peer_url, version, started_at, last_seen,
 *                  last_seen_age_ms, in_flight, bytes_served, index_ok,
 *                  bucket_ok, self}],
 *    "downloads": [{digest, owner, peer_url, epoch, ttl_ms}],
 *    "downloads_truncated": bool,
 *    "redis": {"up", "latency_ms", "where", "error"} | null (alone),
 *    "bucket": {"backend", "up", "latency_ms"},
 *    "gc": {"leader": this replica holds the lease now, "lease_holder"}}
 * Alone, "replicas" lists this replica only and "downloads" is empty.
 * In a cluster the round trips are a PING, the replica listing (a ZSET
 * range and one pipelined GET), a bounded SCAN of the leases
 * (OM_MEMBERS_FLIGHTS_MAX) with one pipeline of GET/PTTL, and a GET of the
 * GC lease; the bucket's health comes from the last heartbeat (a stat on
 * the bucket may block; the beat thread does it).  Alone, the bucket is
 * probed here (a local stat for fs).
 */
#include "admin/admin_int.h"

#include "cache/cluster_members.h"
#include "cache/gc.h"

#include <stdlib.h>
#include <string.h>

void om_admin_cluster_self(void *ud, struct om_members_self *out)
{
    struct om_server *srv = ud;
    struct om_index_health ih;
    size_t n = 0;
    uint64_t waiters = 0, written = 0;

    om_admin_flight_totals(srv, &n, &waiters, &written);
    om_index_health(srv->index, &ih);
    out->in_flight = n;
    out->bytes_served = atomic_load(&srv->ctr.bytes_from_cache) +
                        atomic_load(&srv->ctr.bytes_from_upstream);
    out->index_ok = ih.available;
}

static json_t *replica_json(const struct om_members_replica *r, int64_t now)
{
    json_t *o = json_object();
    om_json_set(o, "id", om_json_str(r->id));
    om_json_set(o, "peer_url", om_json_str(r->peer_url));
    om_json_set(o, "version", om_json_str(r->version));
    om_json_set(o, "started_at", json_integer(r->started_at));
    om_json_set(o, "last_seen", json_integer(r->last_seen));
    om_json_set(o, "last_seen_age_ms", json_integer(now > r->last_seen ? now - r->last_seen : 0));
    om_json_set(o, "in_flight", om_json_u64(r->in_flight));
    om_json_set(o, "bytes_served", om_json_u64(r->bytes_served));
    om_json_set(o, "index_ok", json_boolean(r->index_ok));
    om_json_set(o, "bucket_ok", json_boolean(r->bucket_ok));
    om_json_set(o, "self", json_boolean(r->self));
    return o;
}

static json_t *bucket_json(struct om_server *srv)
{
    json_t *o = json_object();
    bool ok = false;
    int64_t lat = -1;

    if (srv->members != NULL)
        om_members_last_bucket(srv->members, &ok, &lat);
    else
        ok = om_members_store_probe(srv->store, &lat) == OM_OK;
    om_json_set(o, "backend", om_json_str(srv->cfg->storage_backend == OM_STORAGE_S3 ? "s3" : "fs"));
    om_json_set(o, "up", json_boolean(ok));
    om_json_set(o, "latency_ms", lat >= 0 ? json_real((double)lat / 1000.0) : json_null());
    return o;
}

/* This replica alone (no heartbeats). */
static json_t *self_only(struct om_server *srv, int64_t now)
{
    struct om_members_replica me;
    struct om_members_self s = {0};

    memset(&me, 0, sizeof(me));
    om_members_replica_id(srv->cfg, me.id, sizeof(me.id));
    snprintf(me.peer_url, sizeof(me.peer_url), "%s",
             srv->cfg->cluster_peer_url != NULL ? srv->cfg->cluster_peer_url : "");
    snprintf(me.version, sizeof(me.version), "%s", OM_VERSION);
    om_admin_cluster_self(srv, &s);
    me.started_at = srv->started_ms;
    me.last_seen = now;
    me.in_flight = s.in_flight;
    me.bytes_served = s.bytes_served;
    me.index_ok = s.index_ok;
    me.bucket_ok = true;
    me.self = true;
    json_t *a = json_array();
    json_array_append_new(a, replica_json(&me, now));
    return a;
}

enum MHD_Result om_admin_cluster(struct om_req *req)
{
    struct om_server *srv = req->srv;
    struct om_members *c = srv->members;
    int64_t now = om_now_ms();
    json_t *doc = json_object(), *reps = json_array(), *dls = json_array();
    char id[OM_MEMBERS_ID_MAX];
    bool truncated = false;

    om_members_replica_id(srv->cfg, id, sizeof(id));
    om_json_set(doc, "mode", om_json_str(c != NULL ? "cluster" : "alone"));
    om_json_set(doc, "replica_id", om_json_str(c != NULL ? om_members_id(c) : id));
    om_json_set(doc, "peer_url", om_json_str(srv->cfg->cluster_peer_url));
    if (c == NULL) {
        json_decref(reps);
        reps = self_only(srv, now);
        om_json_set(doc, "redis", json_null());
    } else {
        struct om_members_replica *rs = calloc(OM_MEMBERS_REPLICAS_MAX, sizeof(*rs));
        struct om_members_flight *fs = calloc(OM_MEMBERS_FLIGHTS_MAX, sizeof(*fs));
        size_t n = 0;
        int64_t lat = 0;
        int perr = om_members_ping(c, &lat);
        json_t *r = json_object();
        struct om_index_health ih;

        om_index_health(srv->index, &ih);
        om_json_set(r, "up", json_boolean(perr == OM_OK));
        om_json_set(r, "latency_ms", perr == OM_OK ? json_real((double)lat / 1000.0) : json_null());
        om_json_set(r, "where", om_json_str(ih.where));
        om_json_set(r, "error", perr == OM_OK ? json_null()
                                              : om_json_str(ih.last_error[0] ? ih.last_error
                                                                             : om_strerror(perr)));
        om_json_set(doc, "redis", r);
        if (rs != NULL && perr == OM_OK &&
            om_members_replicas(c, rs, OM_MEMBERS_REPLICAS_MAX, &n) == OM_OK) {
            for (size_t i = 0; i < n; i++)
                json_array_append_new(reps, replica_json(&rs[i], now));
        }
        n = 0;
        if (fs != NULL && perr == OM_OK &&
            om_members_flights(c, fs, OM_MEMBERS_FLIGHTS_MAX, &n, &truncated) == OM_OK) {
            for (size_t i = 0; i < n; i++) {
                json_t *f = json_object();
                om_json_set(f, "digest", om_json_str(fs[i].digest));
                om_json_set(f, "owner", om_json_str(fs[i].owner));
                om_json_set(f, "peer_url", om_json_str(fs[i].peer_url));
                om_json_set(f, "epoch", om_json_str(fs[i].epoch));
                om_json_set(f, "ttl_ms", json_integer(fs[i].ttl_ms));
                json_array_append_new(dls, f);
            }
        }
        free(rs);
        free(fs);
    }
    om_json_set(doc, "replicas", reps);
    om_json_set(doc, "downloads", dls);
    om_json_set(doc, "downloads_truncated", json_boolean(truncated));
    om_json_set(doc, "bucket", bucket_json(srv));
    json_t *g = json_object();
    char holder[320] = "";
    om_json_set(g, "running", json_boolean(srv->gc != NULL));
    om_json_set(g, "leader", json_boolean(om_gc_is_leader(srv->gc)));
    if (c != NULL)
        (void)om_members_gc_holder(c, holder, sizeof(holder));
    om_json_set(g, "lease_holder", holder[0] ? om_json_str(holder) : json_null());
    om_json_set(doc, "gc", g);
    return om_admin_reply_json(req, MHD_HTTP_OK, doc);
}
