/* store_s3.h — the S3 backend's parts, shared by its files and nothing
 * else (callers use store.h; store.c reaches the backend through
 * om_store_s3_open in store_backend.h and the ops table):
 *
 *   store_s3.c          the backend: open/close, the ops table, reads,
 *                       small puts, remove, walk, quarantine, presign
 *   store_s3_ingest.c   the ingest writer: the local spool plus a
 *                       multipart upload fed while the download runs
 *   store_s3_stream.c   streamed reads: one thread, one curl multi handle,
 *                       a bounded ring per reader
 *   store_s3_objects.c  what the process knows is in the bucket (digest →
 *                       size), the byte total, reconciled by every walk
 *   store_s3_req.c      one S3 request over libcurl (SigV4 by libcurl),
 *                       retries, the URL of a key, a handle pool
 *   store_s3_sign.c     SigV4 by hand where libcurl cannot: presigned
 *                       URLs (and the signer the tests check against
 *                       AWS's vectors)
 *   store_s3_xml.c      the XML answers (expat): listings, multipart
 *                       answers, errors
 *
 * Keys: <prefix>blobs/sha256/<2 hex>/<64 hex> for content,
 * <prefix>quarantine/sha256/<64 hex> for what om_store_quarantine moved
 * aside.  Every key is built from a re-validated digest and a prefix the
 * config checked (unreserved characters and '/'), so a key needs no
 * %-encoding and is the same string in the URL, the signature and a
 * listing.
 */
#ifndef OM_STORE_S3_H
#define OM_STORE_S3_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <time.h>

#include <curl/curl.h>

#include "cache/store_backend.h"
#include "core/config.h"

#define OM_S3_KEY_MAX (OM_S3_PREFIX_MAX + 128)  /* prefix + "quarantine/sha256/" + 64 hex */
#define OM_S3_URL_MAX 4096
#define OM_S3_UPLOAD_ID_MAX 512                 /* RGW's are ~40 bytes, AWS's ~130 */
#define OM_S3_ETAG_MAX 80                       /* "\"<32 hex>-<parts>\"" and then some */
#define OM_S3_AMZ_DATE_LEN 16                   /* "20150830T123600Z" */
#define OM_S3_XML_MAX (4u << 20)                /* the largest XML answer we read */

/* ---- store_s3_sign.c: SigV4 ------------------------------------------- */

/* What signing needs; every string borrowed. */
struct om_s3_key {
    const char *access_key, *secret_key, *region, *service;
};

/* A name and a value: a query parameter (raw, encoded by the signer) or a
 * header (lowercase name, value as sent). */
struct om_s3_param {
    const char *name, *value;
};

/* One request in canonical pieces (RFC 3986 / AWS rules). */
struct om_s3_sign_req {
    const char *method;            /* "GET" */
    const char *canonical_uri;     /* "/bucket/key", already encoded */
    const char *canonical_query;   /* sorted and encoded, "" for none */
    const struct om_s3_param *headers; /* signed headers, any order; names lowercase */
    size_t n_headers;
    const char *payload_hash;      /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
    const char *amz_date;          /* "YYYYMMDDTHHMMSSZ" */
};

/* "YYYYMMDDTHHMMSSZ" of t in UTC. */
void om_s3_amz_date(time_t t, char out[OM_S3_AMZ_DATE_LEN + 1]);
/* AWS's URI encoding of s[0..n): A-Z a-z 0-9 - _ . ~ kept, every other
 * byte %XX (uppercase); '/' kept when keep_slash.  NUL-terminated into
 * out; OM_ERR_TOOBIG when it does not fit. */
int om_s3_uri_encode(const char *s, size_t n, bool keep_slash, char *out, size_t outsz);
/* The canonical query string of p[0..n): names and values encoded, sorted
 * by name then value, "name=" for a valueless one.  OM_ERR_TOOBIG. */
int om_s3_canonical_query(const struct om_s3_param *p, size_t n, char *out, size_t outsz);
/* The Authorization header's value for r:
 * "AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request,
 * SignedHeaders=a;b, Signature=HEX".  OM_ERR_TOOBIG, OM_ERR_INVALID. */
int om_s3_sign(const struct om_s3_key *k, const struct om_s3_sign_req *r, char *out,
               size_t outsz);
/* A presigned URL (query-string authentication, the Host header the only
 * signed one): base ("https://host[:port]") + canonical_uri + "?X-Amz-..."
 * valid for expires_s seconds (1..604800) from amz_date.  host is what a
 * client will send as Host.  OM_ERR_TOOBIG, OM_ERR_INVALID. */
int om_s3_presign(const struct om_s3_key *k, const char *method, const char *base,
                  const char *host, const char *canonical_uri, const char *amz_date,
                  unsigned expires_s, char *out, size_t outsz);

/* ---- store_s3_xml.c: the answers --------------------------------------- */

/* An object of a ListObjectsV2 page, a multipart upload of a
 * ListMultipartUploads page, or a part of a ListParts page; strings are
 * only valid during the callback.  Return non-zero to stop. */
struct om_s3_item {
    const char *key;               /* Key (objects, uploads) */
    const char *upload_id;         /* UploadId (uploads) */
    uint64_t size;                 /* Size (objects, parts) */
    int64_t time_ms;               /* LastModified (objects, parts) / Initiated (uploads); -1 */
    unsigned part;                 /* PartNumber (parts) */
};
typedef int (*om_s3_item_fn)(void *ud, const struct om_s3_item *it);

/* What a page or an answer says besides its items. */
struct om_s3_answer {
    char root[48];                 /* the root element: "ListBucketResult", "Error", ... */
    bool truncated;                /* IsTruncated */
    char next[1024];               /* NextContinuationToken, or NextKeyMarker */
    char next2[OM_S3_UPLOAD_ID_MAX]; /* NextUploadIdMarker, or NextPartNumberMarker */
    char upload_id[OM_S3_UPLOAD_ID_MAX]; /* InitiateMultipartUploadResult */
    char code[64], message[256];   /* Error */
    unsigned items;                /* items passed to the callback */
};

/* Parse an S3 XML answer of len bytes, calling fn (may be NULL) for each
 * Contents / Upload / Part element.  OM_ERR_INVALID when it is not
 * well-formed XML or a value is out of its bounds (a key longer than
 * OM_S3_KEY_MAX-ish, a size that is not a number); OM_ERR_TOOBIG over
 * OM_S3_XML_MAX.  A non-zero fn result stops the parse and is returned. */
int om_s3_xml_parse(const char *xml, size_t len, om_s3_item_fn fn, void *ud,
                    struct om_s3_answer *out);
/* "2015-08-30T12:36:00.000Z" (ISO 8601 UTC, fraction optional) → ms since
 * the epoch; -1 when it is not that. */
int64_t om_s3_xml_time(const char *s, size_t n);

/* ---- store_s3_req.c: requests ------------------------------------------ */

struct om_s3_client;

/* A request.  Exactly one body source at most: body/body_len, or the
 * range [body_off, body_off + body_len) of body_fd (body_fd >= 0). */
struct om_s3_req {
    const char *method;            /* "GET", "HEAD", "PUT", "POST", "DELETE" */
    const char *key;               /* the object's full key; NULL = the bucket */
    const char *query;             /* canonical (om_s3_canonical_query); NULL = none */
    const char *headers[6];        /* extra "Name: value" lines, NULL-terminated */
    const void *body;
    uint64_t body_len;
    int body_fd;                   /* -1 unless the body is a range of this file */
    uint64_t body_off;
    const char *payload_hash;      /* hex SHA-256 of the body; NULL = computed here */
    bool range;                    /* GET bytes=range_first-range_last */
    uint64_t range_first, range_last;
    void *into;                    /* a 2xx body goes here (at most into_max bytes)... */
    size_t into_max;
    size_t body_max;               /* ...else into resp->body, up to this (0: dropped) */
    long timeout_ms;               /* 0 = the client's default for its kind */
    bool no_retry;                 /* one try (the caller handles an unknown outcome) */
};

struct om_s3_resp {
    long status;                   /* the HTTP status */
    bool has_length;
    uint64_t length;               /* Content-Length */
    int64_t last_modified_ms;      /* Last-Modified, -1 when absent */
    char etag[OM_S3_ETAG_MAX];     /* ETag, quotes kept */
    char *body;                    /* owned (om_s3_resp_clear); NUL-terminated */
    size_t body_len;
    size_t got;                    /* bytes written into req.into */
    char code[64];                 /* an error body's <Code>, "" otherwise */
};

/* A client of cfg's endpoint and bucket.  *out owned by the caller
 * (om_s3_client_free).  OM_ERR_INVALID for an endpoint it cannot use. */
int om_s3_client_new(struct om_s3_client **out, const struct om_s3_cfg *cfg);
void om_s3_client_free(struct om_s3_client *c);
/* Send rq (retried on a transport error, 500 or 503 unless no_retry) and
 * fill *rs, which must be zeroed or hold an earlier answer (freed here);
 * om_s3_resp_clear it after.  OM_OK when S3 answered,
 * whatever the status; OM_ERR_IO when it did not (logged, rate-limited),
 * OM_ERR_TOOBIG when a body did not fit. */
int om_s3_do(struct om_s3_client *c, const struct om_s3_req *rq, struct om_s3_resp *rs);
void om_s3_resp_clear(struct om_s3_resp *rs);
/* The backend's view of an answer: 2xx OM_OK, 404 OM_ERR_NOTFOUND, a
 * quota or "entity too large" OM_ERR_NOSPACE, anything else OM_ERR_IO
 * (logged with what and key). */
int om_s3_status_err(const struct om_s3_resp *rs, const char *what, const char *key);
/* The URL of key (or the bucket) with query, and the Host it goes to. */
int om_s3_url(const struct om_s3_client *c, const char *key, const char *query, char *url,
              size_t urlsz);
/* A presigned GET URL of key valid for ttl_s. */
int om_s3_presign_get(const struct om_s3_client *c, const char *key, unsigned ttl_s, char *url,
                      size_t urlsz);
/* Set up easy handle h (fresh or reset) for a GET of key's bytes
 * [first, last] (range false: the whole object), signed by libcurl; the
 * caller adds its own write/header callbacks.  *hdrs is the header list h
 * uses (curl_slist_free_all after the transfer). */
int om_s3_setup_get(struct om_s3_client *c, CURL *h, const char *key, bool range,
                    uint64_t first, uint64_t last, struct curl_slist **hdrs);
/* Requests sent and failed since start (for logs and tests). */
void om_s3_client_counts(struct om_s3_client *c, uint64_t *sent, uint64_t *failed);

/* ---- store_s3_objects.c: what is in the bucket -------------------------- */

struct om_s3_objects;

int om_s3_objects_new(struct om_s3_objects **out);
void om_s3_objects_free(struct om_s3_objects *o);
/* Is d known to be in the bucket?  Its size and modification time. */
bool om_s3_objects_get(struct om_s3_objects *o, const om_digest *d, uint64_t *size,
                       int64_t *mtime_ms);
/* d is in the bucket with this size (a commit, a HEAD).  The byte total
 * counts each digest once. */
void om_s3_objects_put(struct om_s3_objects *o, const om_digest *d, uint64_t size,
                       int64_t mtime_ms);
/* d is no longer in the bucket; *size (may be NULL) what it was.  false
 * when it was not known. */
bool om_s3_objects_del(struct om_s3_objects *o, const om_digest *d, uint64_t *size);
uint64_t om_s3_objects_bytes(struct om_s3_objects *o);
uint64_t om_s3_objects_count(struct om_s3_objects *o);
/* A listing of the whole bucket reconciles the table: begin returns a
 * generation (0: another listing reconciles now, this one only reads);
 * seen records each listed object; end with complete=true forgets what
 * was known before the listing began and was not listed (removed by
 * another process), and never resurrects what was removed meanwhile. */
uint32_t om_s3_objects_walk_begin(struct om_s3_objects *o);
void om_s3_objects_seen(struct om_s3_objects *o, uint32_t gen, const om_digest *d,
                        uint64_t size, int64_t mtime_ms);
void om_s3_objects_walk_end(struct om_s3_objects *o, uint32_t gen, bool complete);

/* ---- store_s3.c: the backend's handle ----------------------------------- */

struct om_s3_streamer;

/* A multipart upload this process runs (not stale, whatever its age). */
struct om_s3_live {
    struct om_s3_live *next;
    char upload_id[OM_S3_UPLOAD_ID_MAX];
};

struct om_store_s3 {
    struct om_store base;          /* first: base.ops == &om_store_s3__ops */
    char *root;                    /* owned: the local directory (storage.path) */
    char *prefix;                  /* owned: storage.s3.prefix ("" or ".../") */
    char bucket[64];               /* storage.s3.bucket */
    uint64_t part_size;
    bool attached;                 /* a tool beside the owner: no lock, no cleaning */
    int lock_fd;                   /* the owner's flock on <root>/lock; -1 */
    struct om_s3_client *cl;       /* owned */
    struct om_s3_objects *objs;    /* owned */
    pthread_mutex_t mu;            /* guards live and streamer's start */
    struct om_s3_live *live;       /* uploads of this process (stale-abort skips them) */
    struct om_s3_streamer *streamer; /* owned; started by the first reader */
};

extern const struct om_store_ops om_store_s3__ops;

/* The store behind an operation's st. */
struct om_store_s3 *om_store_s3__of(struct om_store *st);
/* "<prefix>blobs/sha256/<2>/<64>" of a re-validated d (OM_ERR_INVALID). */
int om_store_s3__key(const struct om_store_s3 *s, const om_digest *d, char *out, size_t outsz);
/* "<root>/<rel>" (OM_ERR_TOOBIG). */
int om_store_s3__path(const struct om_store_s3 *s, const char *rel, char *out, size_t outsz);
/* Remember / forget an upload this process runs. */
void om_store_s3__live_add(struct om_store_s3 *s, const char *upload_id);
void om_store_s3__live_del(struct om_store_s3 *s, const char *upload_id);
bool om_store_s3__live_has(struct om_store_s3 *s, const char *upload_id);

/* ---- store_s3_ingest.c -------------------------------------------------- */

int om_store_s3__ingest_begin(struct om_store *st, struct om_ingest **out);
int om_store_s3__ingest_begin_for(struct om_store *st, const om_digest *d,
                                  struct om_ingest **out);
int om_store_s3__ingest_write(struct om_ingest *in, const void *buf, size_t len);
int om_store_s3__ingest_reserve(struct om_ingest *in, uint64_t size);
int om_store_s3__ingest_truncate(struct om_ingest *in, uint64_t size);
int om_store_s3__ingest_commit(struct om_store *st, struct om_ingest *in, const om_digest *d);
void om_store_s3__ingest_abort(struct om_ingest *in);
/* Owner's open: abort the uploads a previous run of this directory
 * recorded in <root>/uploads and left behind (a crash), remove the
 * records. */
void om_store_s3__abort_recorded(struct om_store_s3 *s);
/* AbortMultipartUpload (logged on failure). */
int om_store_s3__abort_upload(struct om_store_s3 *s, const char *key, const char *upload_id);

/* ---- store_s3_stream.c -------------------------------------------------- */

int om_store_s3__reader_open(struct om_store *st, const om_digest *d, uint64_t off,
                             uint64_t len, om_store_cb ready, void *ud,
                             struct om_store_reader **out);
/* Stop the thread; every reader must be closed already. */
void om_store_s3__streamer_free(struct om_s3_streamer *sm);

#endif
