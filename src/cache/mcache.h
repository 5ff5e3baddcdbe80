/* mcache.h — a small in-memory LRU cache for the manifest hot path: the
 * bytes of recently served manifests (by digest: immutable, never stale),
 * tag records (canonical repo + tag → digest, media type, size, checked
 * time) and search-route decisions.  It spares a cache hit the index
 * queries and the file read; the index and the store stay the truth, and
 * everything here is refilled from them on a miss.
 *
 * Bounded by bytes (keys + values + overhead); least recently used entries
 * go first.  Thread-safe: one mutex, O(1) operations.  Values are copied in
 * and out, so nothing returned aliases the cache.
 *
 * Beside it, the sizes blobs must have (digest → size, what the index
 * recorded), for the blob hit path to check a stored file without an
 * index query per hit: a fixed table of OM_MCACHE_SIZES entries (4-way
 * sets, least recently used of a set replaced; 48 bytes an entry) under
 * striped locks, so it neither competes with the manifests for the byte
 * budget nor serialises the HTTP threads on one mutex.
 *
 * And repository membership known to be true ((canonical repository,
 * digest): the index or the upstream said the repository holds it), for
 * the hit paths to check that a name may be served cached content without
 * an index query per hit: another fixed table, built the same way.  Only
 * "yes" is remembered — a "no" sends the request to a job, which asks the
 * index (and the upstream) again — so nothing here can serve content a
 * repository was not known to hold. */
#ifndef OM_MCACHE_H
#define OM_MCACHE_H

#include "cache/index.h"

struct om_mcache;

int om_mcache_new(struct om_mcache **out, size_t max_bytes);
void om_mcache_free(struct om_mcache *mc);

/* Manifest bytes.  *buf is a malloc'd copy (caller frees). */
bool om_mcache_manifest_get(struct om_mcache *mc, const om_digest *d, char **buf, size_t *len,
                            char *media_type, size_t mtsz);
void om_mcache_manifest_put(struct om_mcache *mc, const om_digest *d, const char *buf, size_t len,
                            const char *media_type);

/* Tag records. */
bool om_mcache_tag_get(struct om_mcache *mc, const char *repo, const char *tag,
                       struct om_tag_rec *out);
void om_mcache_tag_put(struct om_mcache *mc, const char *repo, const char *tag,
                       const struct om_tag_rec *rec);
void om_mcache_tag_drop(struct om_mcache *mc, const char *repo, const char *tag);

/* Drop everything: GC evicted images, so tag records and manifests held
 * here may name what the index and store no longer have. */
void om_mcache_clear(struct om_mcache *mc);
/* Bytes held now (keys, values and per-entry overhead), for /metrics. */
size_t om_mcache_bytes(struct om_mcache *mc);

/* Blob sizes.  OM_MCACHE_SIZE_UNKNOWN is remembered too ("the index
 * records no size": nothing to check against), for OM_MCACHE_UNKNOWN_TTL_S
 * only, since a download may record one any moment.  A digest's size never
 * changes, so om_mcache_clear leaves these; a put replaces. */
#define OM_MCACHE_SIZES 65536
#define OM_MCACHE_SIZE_UNKNOWN UINT64_MAX
#define OM_MCACHE_UNKNOWN_TTL_S 10
bool om_mcache_size_get(struct om_mcache *mc, const om_digest *d, uint64_t *size);
void om_mcache_size_put(struct om_mcache *mc, const om_digest *d, uint64_t size);

/* Repository membership.  Exact: the repository name is stored and
 * compared in full (names over OM_MCACHE_MEMBER_NAME_MAX bytes are not
 * remembered: the index is asked for them every time).
 * OM_MCACHE_MEMBERS entries, 4-way sets picked by the digest and the name,
 * least recently used of a set replaced.  om_mcache_clear forgets them
 * (GC may have dropped a repository's membership rows). */
#define OM_MCACHE_MEMBERS 32768
#define OM_MCACHE_MEMBER_NAME_MAX 87
bool om_mcache_member_get(struct om_mcache *mc, const char *repo, const om_digest *d);
void om_mcache_member_put(struct om_mcache *mc, const char *repo, const om_digest *d);

/* Search-route decisions: requested name → upstream name + canonical. */
bool om_mcache_route_get(struct om_mcache *mc, const char *name, char *upstream, size_t upsz,
                         char *canonical, size_t cansz);
void om_mcache_route_put(struct om_mcache *mc, const char *name, const char *upstream,
                         const char *canonical);

#endif
