/* v2_manifest_int.h — what the two files of the manifest endpoint share:
 * v2_manifest.c (answering from the cache, building responses, the
 * flights that coalesce requests) and v2_manifest_fetch.c (the job's side:
 * the search over candidate upstreams, fetching, verifying and storing a
 * manifest, revalidating a tag).  Not for other modules: they use v2.h. */
#ifndef OM_V2_MANIFEST_INT_H
#define OM_V2_MANIFEST_INT_H

#include "v2/v2.h"

#define ACCEPT_ALL                                                         \
    "application/vnd.oci.image.index.v1+json, "                            \
    "application/vnd.docker.distribution.manifest.list.v2+json, "          \
    "application/vnd.oci.image.manifest.v1+json, "                         \
    "application/vnd.docker.distribution.manifest.v2+json"

/* The outcome of a job, for every request of its flight. */
struct mresult {
    unsigned status;               /* 200 on success, else the error status */
    const char *code;              /* OCI error code when status != 200 */
    char message[256];
    om_digest digest;
    char media_type[OM_MEDIA_TYPE_MAX + 1];
    uint64_t size;
    om_cache_result cache;         /* for the leader */
    size_t candidate;              /* route.c[] index it came from */
    char *body;                    /* verified bytes that could not be stored
                                      (disk full): served uncached; owned */
    size_t body_len;
};

typedef enum {
    GOT_OK,          /* manifest stored, res filled */
    GOT_ABSENT,      /* 401/403/404: not on this upstream */
    GOT_NO_OBJECT,   /* the repository is there, this manifest is not
                        (only when asked to tell, see fetch_manifest) */
    GOT_UNSURE,      /* a 404, and the repository could not be asked */
    GOT_UNAVAILABLE, /* unreachable, 5xx */
    GOT_TOOMANY,     /* 429 after retries */
    GOT_BAD,         /* lying or oversized answer */
} got_kind;

/* GET a manifest, verify, store, index (job thread).  ref: tag or digest
 * string; want: the digest it must have (NULL for a tag).  tell: a miss
 * must say whether the repository is there (a name still being searched
 * for): GOT_ABSENT only when the repository is not, GOT_NO_OBJECT when only
 * the manifest is missing.  res->body is owned by res (freed by the
 * caller). */
got_kind om_v2m_fetch(struct om_req *req, size_t ci, const char *ref, const om_digest *want,
                      bool tell, struct mresult *res);
/* The job: find the candidate that has the manifest (route decision,
 * search order), revalidate a cached tag, fetch what changed; res gets the
 * answer for every waiter. */
void om_v2m_resolve(struct om_req *req, struct mresult *res);
/* res becomes an error answer (msg NULL keeps the message). */
void om_v2m_set_error(struct mresult *res, unsigned status, const char *code, const char *msg);

#endif
