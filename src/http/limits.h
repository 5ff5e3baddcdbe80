/* limits.h — per-client limits (limits.per_client, limits.per_user): a
 * bounded table of client records with a token bucket for requests, one
 * for upstream fetches, a count of concurrent blob GETs and a rolling 24 h
 * count of bytes sent, in 24 hourly slots.
 *
 * A client is a key: its address as printed by clientaddr.h, or its user
 * name when the request authenticated (is_user; users and addresses never
 * share a record).  Limits 0 = no limit.  A client's limits are
 * per_user[name] for a user listed there, else per_client.
 *
 * Memory: at most max_clients records (~0.6 KiB each: 100000 ≈ 60 MiB,
 * allocated as clients appear), in 64 stripes, each a mutex, a hash table
 * and an LRU list; a new client evicts its stripe's
 * least recently seen record that holds no download (a record with
 * downloads in progress is kept: their count is bounded by the
 * connections).  An evicted client starts again with full buckets and no
 * history — forgetting is always in the client's favour.
 *
 * Time: every call takes now_ms (om_now_ms() in the server, a fake clock
 * in tests); nothing here reads a clock.
 *
 * Thread-safe: any thread may call anything between om_limiter_new and
 * om_limiter_free; a call holds one stripe's mutex for a few hundred ns.
 * om_limiter_reconfigure swaps the limits (and the trusted proxies the
 * request path reads from here) atomically (SIGHUP reload): calls
 * in progress finish with the old ones, the next use of each record the
 * new ones; counts and buckets are kept.  max_clients is fixed at creation.
 */
#ifndef OM_HTTP_LIMITS_H
#define OM_HTTP_LIMITS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

#define OM_LIMIT_KEY_MAX 64     /* bytes in a client key, NUL included */

typedef enum {
    OM_LIMIT_NONE = 0,
    OM_LIMIT_RPS,               /* requests_per_second (+ burst) */
    OM_LIMIT_DOWNLOADS,         /* downloads: concurrent blob GETs */
    OM_LIMIT_BYTES_PER_DAY,     /* bytes_per_day */
    OM_LIMIT_UPSTREAM,          /* upstream_fetches_per_minute */
    OM_LIMIT__COUNT
} om_limit_kind;

/* The metric label: "requests_per_second", "downloads", "bytes_per_day",
 * "upstream_fetches"; "" for NONE.  Static storage. */
const char *om_limit_label(om_limit_kind k);
/* The config key: as the label, but "upstream_fetches_per_minute". */
const char *om_limit_key(om_limit_kind k);

/* What a refused call says. */
struct om_limit_verdict {
    om_limit_kind kind;         /* NONE = allowed */
    unsigned retry_after_s;     /* >= 1: when the limit will let it through */
    uint64_t limit;             /* the configured value that refused it */
    bool log;                   /* first refusal of this client this minute */
};

struct om_limiter;

/* A limiter with cfg's per_client/per_user/max_clients (copied: cfg may go
 * away).  *out belongs to the caller (om_limiter_free). */
int om_limiter_new(struct om_limiter **out, const struct om_limits *cfg);
void om_limiter_free(struct om_limiter *lim);
/* Take cfg's per_client, per_user and trusted_proxies from now on (copied:
 * cfg may be freed after).  OM_OK or OM_ERR_NOMEM (the old ones stay).
 * What a SIGHUP reload calls with the new config's limits. */
int om_limiter_reconfigure(struct om_limiter *lim, const struct om_limits *cfg);
/* The trusted proxies in force (*set valid until om_limiter_free). */
size_t om_limiter_trusted_proxies(struct om_limiter *lim, const struct om_cidr **set);

/* A request of client key: counted; the requests_per_second bucket.
 * Returns v->kind (NONE = go on). */
om_limit_kind om_limiter_request(struct om_limiter *lim, const char *key, bool is_user,
                                 int64_t now_ms, struct om_limit_verdict *v);
/* A blob GET starts: bytes_per_day, then downloads.  Allowed: the client
 * holds one download until om_limiter_download_end (call it exactly once). */
om_limit_kind om_limiter_download_begin(struct om_limiter *lim, const char *key, bool is_user,
                                        int64_t now_ms, struct om_limit_verdict *v);
void om_limiter_download_end(struct om_limiter *lim, const char *key, bool is_user,
                             int64_t now_ms);
/* A request that would make upstream work: the upstream_fetches bucket. */
om_limit_kind om_limiter_upstream(struct om_limiter *lim, const char *key, bool is_user,
                                  int64_t now_ms, struct om_limit_verdict *v);
/* Body bytes sent to the client (a finished request). */
void om_limiter_sent(struct om_limiter *lim, const char *key, bool is_user, uint64_t bytes,
                     int64_t now_ms);

/* ---- what the admin API and /metrics show ---- */

struct om_client_stat {
    char key[OM_LIMIT_KEY_MAX];
    bool is_user;
    uint64_t bytes_24h, requests_24h, rejected_24h;
    unsigned downloads;         /* in progress */
    int64_t last_seen_ms;
    om_limit_kind limited_by;   /* the last refusal, while limited_until_ms > now */
    int64_t limited_until_ms;   /* 0 = not limited now */
};

typedef enum { OM_CLIENTS_BY_BYTES, OM_CLIENTS_BY_REQUESTS, OM_CLIENTS_LIMITED } om_clients_order;

/* Up to max clients, best first: by bytes or requests over the last 24 h,
 * or only those limited now (latest refusal first).  Returns the count. */
size_t om_limiter_top(struct om_limiter *lim, om_clients_order order, int64_t now_ms,
                      struct om_client_stat *out, size_t max);

struct om_limiter_totals {
    uint64_t rejections[OM_LIMIT__COUNT]; /* by kind since start */
    uint64_t clients;           /* records held now */
    uint64_t evictions;         /* records dropped for new clients */
    unsigned max_clients;
};
void om_limiter_totals(struct om_limiter *lim, struct om_limiter_totals *out);

#endif
