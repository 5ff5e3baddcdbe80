/* config.h — the YAML config file plus embedded defaults → one immutable
 * `struct om_config`.
 *
 * Lifecycle: om_config_load() (file) or om_config_default() (no file) builds
 * the struct; command-line overrides are applied by the caller with
 * om_config_set_listen()/om_config_set_storage() before the server starts;
 * after that nothing writes to it and every thread reads it freely;
 * om_config_free() releases it at exit.
 *
 * Key names (operators' configs and outside test suites depend on them):
 *   listen: "0.0.0.0:5000"            address:port, "[::]:5000" for IPv6
 *   tls: {cert: FILE, key: FILE}
 *   public_url: "https://mirror.example"   how clients reach us (unset)
 *   admin: {token: SECRET | token_file: FILE, protect_reads: false}
 *   storage: {path: DIR, max_size: "0", high_water: 90, low_water: 80,
 *             gc_interval: "10m", backend: fs|s3, redirect: false,
 *             redirect_ttl: "10m",
 *             s3: {endpoint, region: us-east-1, bucket, prefix: "",
 *                  access_key | access_key_file, secret_key | secret_key_file,
 *                  path_style: false, ca_file, part_size: "16MiB"}}
 *   upstreams: [{name, url | urls: [..], aliases: [..], ca_file,
 *                insecure_skip_verify, username, password | password_file,
 *                credentials: [{username, password | password_file}, ..],
 *                proxy}]
 *   search_order: [upstream name or alias, ...]
 *   rewrites: [{match: REGEX, target: STRING}]   \1..\9 in target = groups
 *   tag_ttl: "5m"    negative_ttl: "1m"          durations: ms s m h d
 *   retries: {max: 3, backoff: "500ms"}
 *   log: {level: debug|info|warn|error, format: text|json}
 *   limits: {max_connections, max_header_bytes, max_url_bytes,
 *            max_manifest_bytes, connection_timeout, idle_timeout,
 *            shutdown_grace, threads, max_downloads, max_tags,
 *            trusted_proxies: [CIDR, ..], max_clients: 100000,
 *            per_client: {requests_per_second, burst, downloads,
 *                         bytes_per_day, upstream_fetches_per_minute},
 *            per_user: {NAME: {the per_client keys}, ..}}
 *   prefetch: {images: [REF, ...], platforms: ["linux/amd64", ...],
 *              interval: "6h", retries: 3, retry_interval: "5m"}
 *   access: {anonymous: true, htpasswd_file: FILE}   who may pull (http/auth.h)
 *   policy: {allow: [PATTERN, ..], deny: [PATTERN, ..]} what may be pulled
 *            (core/policy.h); both reloaded on SIGHUP (server.c)
 *   cluster: {redis: "redis://HOST:PORT/DB" | "unix:///PATH?db=N",
 *             redis_password_file: FILE, peer_url: "http://HOST:PORT",
 *             peer_token_file: FILE}      all unset = a replica alone
 * Unknown keys and bad values are errors naming file:line:column.
 *
 * If you add a key: follow the list at the top of config_keys.c (a row in
 * its table, a default in config.c's fill_defaults(), a line in
 * om_config_dump(), docs/ocimirror.example.yaml, the READMEs, test rows).
 */
#ifndef OM_CONFIG_H
#define OM_CONFIG_H

#include <regex.h>
#include <stdio.h>
#include "core/om.h"
#include "core/policy.h"

#define OM_MAX_UPSTREAMS 32
#define OM_MAX_ALIASES 16
#define OM_MAX_UPSTREAM_URLS 8          /* upstreams[].urls entries */
#define OM_UPSTREAM_URL_MAX 1024        /* bytes in one upstream URL */
#define OM_MAX_CREDENTIALS 16           /* upstreams[].credentials entries */
#define OM_CREDENTIAL_USER_MAX 255      /* bytes in a pool account's username */
#define OM_MAX_REWRITES 64
#define OM_MAX_PREFETCH_IMAGES 256      /* prefetch.images entries */
#define OM_PREFETCH_IMAGE_MAX 512       /* bytes in one prefetch image reference */
#define OM_MAX_PREFETCH_PLATFORMS 32    /* prefetch.platforms entries */
#define OM_PREFETCH_PLATFORM_MAX 64     /* bytes in one "os/arch/variant" */

/* One account of an upstream's credential pool. */
struct om_credential_cfg {
    char *username;         /* printable, no ':' or blank; unique in the pool */
    char *password;         /* from password or the contents of password_file;
                               secret: wiped at free, dumped "<redacted>" */
    char *password_file;
};

struct om_upstream_cfg {
    char *name;             /* "docker.io": the canonical-name prefix */
    char *url;              /* "https://registry-1.docker.io" (no trailing /):
                               urls[0], its own copy */
    char *urls[OM_MAX_UPSTREAM_URLS]; /* every endpoint, tried in order: `url`
                               alone, or `urls`; n_urls >= 1 once parsed */
    size_t n_urls;
    bool urls_listed;       /* the file said `urls:` (the dump says it back) */
    char *aliases[OM_MAX_ALIASES];
    size_t n_aliases;
    char *ca_file;          /* extra CA bundle, NULL = system store */
    bool insecure_skip_verify;
    char *username;
    char *password;         /* from password or the contents of password_file */
    char *password_file;
    struct om_credential_cfg credentials[OM_MAX_CREDENTIALS]; /* a pool of
                               accounts pulls are spread over; exclusive with
                               username/password */
    size_t n_credentials;
    char *proxy;            /* NULL = libcurl default (https_proxy/no_proxy env) */
    bool is_docker_hub;     /* one-component names get "library/" (derived:
                               name or an alias is docker.io) */
};

/* Where content lives (storage.backend).  storage.path is the local
 * directory either way: the whole store with fs; with s3 the spool of
 * downloads in progress, the index and the owner's lock. */
typedef enum { OM_STORAGE_FS, OM_STORAGE_S3 } om_storage_backend;

/* storage.s3: an S3-compatible bucket (config_storage.c checks it). */
struct om_s3_cfg {
    char *endpoint;         /* "https://s3.eu-west-1.amazonaws.com", "http://127.0.0.1:7480":
                               scheme + host[:port], no path, no trailing / */
    char *region;           /* "us-east-1" */
    char *bucket;           /* 3..63 of [a-z0-9.-] */
    char *prefix;           /* "" or "some/path/" (always ends with /): keys start with it */
    char *access_key;       /* access_key or the trimmed contents of access_key_file */
    char *access_key_file;
    char *secret_key;       /* secret: never logged, dumped as "<redacted>" */
    char *secret_key_file;
    bool path_style;        /* false: https://BUCKET.host/key; true: https://host/BUCKET/key */
    char *ca_file;          /* extra CA bundle for the endpoint, NULL = system store */
    uint64_t part_size;     /* multipart part size, 5 MiB..5 GiB (16 MiB) */
};

struct om_rewrite_cfg {
    char *match;            /* the regex source, anchored by the user */
    char *target;           /* may contain \1..\9 */
    regex_t re;             /* compiled REG_EXTENDED */
};

typedef enum { OM_LOG_DEBUG, OM_LOG_INFO, OM_LOG_WARN, OM_LOG_ERROR } om_log_level;
typedef enum { OM_LOG_TEXT, OM_LOG_JSON } om_log_format;

/* limits.trusted_proxies entries: an address and a prefix length. */
#define OM_MAX_TRUSTED_PROXIES 64
#define OM_MAX_PER_USER 1024            /* limits.per_user entries */
#define OM_LIMIT_USER_MAX 63            /* bytes in a per_user name (req->user[64]) */
struct om_cidr {
    unsigned char addr[16];       /* network byte order, host bits zeroed;
                                     IPv4 in the first 4 bytes */
    unsigned char family;         /* 4 or 6 */
    unsigned char bits;           /* prefix length, 0..32 or 0..128 */
};

/* One client's limits (limits.per_client, limits.per_user.NAME); 0 = none. */
struct om_client_limits {
    unsigned requests_per_second; /* token bucket refill rate */
    unsigned burst;               /* bucket size; 0 = requests_per_second */
    unsigned downloads;           /* concurrent blob GETs */
    uint64_t bytes_per_day;       /* body bytes sent over a rolling 24 h */
    unsigned upstream_fetches_per_minute; /* requests that cause upstream work */
};

/* limits.per_user.NAME: keys not given take limits.per_client's value. */
struct om_user_limits {
    char *name;                   /* owned; 1..OM_LIMIT_USER_MAX printable bytes */
    struct om_client_limits l;
    unsigned given;               /* parse only: bit i = per_client key i was given */
};

struct om_limits {
    unsigned max_connections;     /* default 4096 */
    size_t max_header_bytes;      /* default 16 KiB (all request headers) */
    size_t max_url_bytes;         /* default 4 KiB */
    size_t max_manifest_bytes;    /* default 4 MiB */
    unsigned max_connections_per_ip; /* 0 = no per-address cap (default) */
    uint64_t connection_timeout_ms; /* no bytes moved for this long: close (60s) */
    uint64_t header_timeout_ms;   /* a request head must be complete this long
                                     after connect (30s; conn_guard.h) */
    uint64_t idle_timeout_ms;     /* a client waiting on upstream bytes gives up (300s) */
    uint64_t shutdown_grace_ms;   /* SIGTERM: let transfers finish this long (30s) */
    unsigned threads;             /* HTTP worker pool; 0 = number of CPUs */
    unsigned max_downloads;       /* concurrent upstream transfers (64) */
    unsigned max_downloads_per_upstream; /* of those, for one upstream; 0 = 3/4 of
                                     max_downloads when there are several (0) */
    unsigned jobs_per_upstream;   /* blocking jobs (searches, manifests,
                                     revalidations, tokens) one upstream may
                                     run at once; more wait in its lane (16) */
    uint64_t revalidate_timeout_ms; /* a cached tag whose revalidation takes
                                     longer is served stale (5s) */
    uint64_t max_blob_size;       /* a blob larger than this is refused before
                                     any byte is fetched; 0 = none (0) */
    unsigned max_tags;            /* the longest tag list served (100000) */
    /* Per-client limits (http/limits.h, http/clientaddr.h). */
    struct om_cidr trusted_proxies[OM_MAX_TRUSTED_PROXIES]; /* peers whose
                                     X-Forwarded-For / X-Real-IP is believed */
    size_t n_trusted_proxies;     /* none by default */
    unsigned max_clients;         /* client records kept (LRU), 100000 */
    struct om_client_limits per_client; /* all 0 by default */
    struct om_user_limits *per_user; /* owned array of n_per_user */
    size_t n_per_user;
};

struct om_config {
    char *listen;                 /* "0.0.0.0:5000" */
    char *tls_cert, *tls_key;     /* both or neither */
    char *public_url;             /* how clients reach this mirror, e.g.
                                     "https://mirror.example" (http/https, no
                                     path, no trailing /); NULL = unset: use
                                     the request's Host */
    char *admin_token;            /* bearer token for the admin API (admin.token
                                     or the trimmed contents of admin.token_file);
                                     NULL = none: POSTs answer 403.  Secret:
                                     never logged, dumped as "<redacted>" */
    char *admin_token_file;       /* the file admin_token was read from, or NULL */
    bool admin_protect_reads;     /* admin GETs need the token too (false);
                                     true needs a token */
    char *storage_path;           /* "./ocimirror-data" */
    uint64_t storage_max_size;    /* bytes the cache may use; 0 = unlimited (0) */
    unsigned storage_high_water;  /* GC starts above this % of max_size (90) */
    unsigned storage_low_water;   /* ... and evicts down to this % (80);
                                     < high_water when max_size != 0 */
    uint64_t gc_interval_ms;      /* how often GC checks usage; >= 1s (10 min) */
    om_storage_backend storage_backend; /* fs (default) or s3 */
    struct om_s3_cfg storage_s3;  /* with s3 */
    bool storage_redirect;        /* s3 only: a cached blob GET answers 307 to a
                                     presigned URL of the object (false) */
    uint64_t storage_redirect_ttl_ms; /* how long that URL is valid, 1s..7d (10 min) */
    struct om_upstream_cfg upstreams[OM_MAX_UPSTREAMS];
    size_t n_upstreams;
    size_t search_order[OM_MAX_UPSTREAMS];  /* indexes into upstreams[] */
    size_t n_search_order;
    struct om_rewrite_cfg rewrites[OM_MAX_REWRITES];
    size_t n_rewrites;
    uint64_t tag_ttl_ms;          /* default 5 min */
    uint64_t negative_ttl_ms;     /* default 1 min */
    unsigned retries_max;         /* total tries, default 3 */
    uint64_t retries_backoff_ms;  /* first backoff, doubles, with jitter; 500ms */
    om_log_level log_level;
    om_log_format log_format;
    struct om_limits limits;
    /* prefetch: images pulled (all listed platforms) at start-up and then
     * every prefetch_interval_ms.  Fixed arrays, like aliases[]: entries
     * 0..n-1 are strdup'd strings the struct owns. */
    char *prefetch_images[OM_MAX_PREFETCH_IMAGES]; /* references as a client
                                     writes them ("nginx:1.25",
                                     "quay.io/x/y@sha256:..."); none by default */
    size_t n_prefetch_images;
    char *prefetch_platforms[OM_MAX_PREFETCH_PLATFORMS]; /* "os/arch" or
                                     "os/arch/variant", lowercase; default
                                     "linux/amd64", "linux/arm64"; never empty */
    size_t n_prefetch_platforms;
    uint64_t prefetch_interval_ms; /* background re-sync period; 0 = only at
                                     start-up; else >= 1s (6 h) */
    unsigned prefetch_retries;    /* tries per image per round, 1..100 (3) */
    uint64_t prefetch_retry_interval_ms; /* wait between those tries (5 min) */
    /* cluster: N replicas sharing their metadata in Redis (cache/redis.h,
     * cache/index_redis.c).  All NULL = a replica alone (the SQLite index). */
    char *cluster_redis;          /* the URL as written (om_parse_redis_url
                                     takes it); may hold a password: dumped
                                     with it redacted */
    char *cluster_redis_password; /* the contents of redis_password_file
                                     (trailing CR/LF cut); NULL = the URL's
                                     own, if any.  Secret: never logged */
    char *cluster_redis_password_file;
    char *cluster_peer_url;       /* how the other replicas reach this one:
                                     http(s)://host[:port], no path */
    char *cluster_peer_token;     /* the trimmed contents of peer_token_file:
                                     the internal endpoint's shared secret */
    char *cluster_peer_token_file;
    /* access: client authentication (http/auth.h).  The server reads these
     * at start and on SIGHUP (om_server_reload); the live state is the
     * server's struct om_auth, not this struct. */
    bool access_anonymous;        /* /v2/ without credentials is served (true) */
    char *access_htpasswd_file;   /* htpasswd file (bcrypt, SHA-crypt entries);
                                     NULL = none; anonymous false needs one */
    /* policy: which canonical names may be served (core/policy.h); the live,
     * compiled copy is the server's (reloaded on SIGHUP).  Patterns are
     * checked with om_policy_pattern_why at load. */
    char *policy_allow[OM_POLICY_RULES_MAX]; /* empty = everything allowed */
    size_t n_policy_allow;
    char *policy_deny[OM_POLICY_RULES_MAX];  /* deny wins */
    size_t n_policy_deny;
    uint64_t cluster_lease_ms;    /* cluster.lease: a download's lease in Redis
                                     (cache/cluster.h), renewed every third of
                                     it; 1s..10m (10s) */
    char *source;                 /* file path, or "<embedded defaults>" */
};

/* Build the embedded defaults: listen 0.0.0.0:5000, storage ./ocimirror-data,
 * upstreams docker.io (https://registry-1.docker.io; aliases docker.io,
 * index.docker.io, registry-1.docker.io), registry.k8s.io (alias k8s.gcr.io),
 * gcr.io, quay.io, ghcr.io; search order in that sequence; rewrite
 * ^coredns$ → registry.k8s.io/coredns/coredns.
 * *out belongs to the caller (om_config_free). */
int om_config_default(struct om_config **out);

/* Load a YAML file.  Keys not given take the defaults above, except that a
 * file with `upstreams` replaces the default upstream list entirely (and
 * search_order then defaults to the file's upstream order), and a file with
 * `rewrites` replaces the default rewrites.  On error returns OM_ERR_INVALID
 * (or OM_ERR_IO) and writes "FILE:LINE:COL: message" into err. */
int om_config_load(struct om_config **out, const char *path, char *err, size_t errlen);

/* Parse YAML from memory (tests, fuzzing).  `name` is used in messages. */
int om_config_parse(struct om_config **out, const char *yaml, size_t len,
                    const char *name, char *err, size_t errlen);

int om_config_set_listen(struct om_config *cfg, const char *listen);
int om_config_set_storage(struct om_config *cfg, const char *path);

/* Print the effective config as YAML; passwords and the admin token are
 * printed as "<redacted>" (a password_file / token_file as its path). */
void om_config_dump(const struct om_config *cfg, FILE *f);

void om_config_free(struct om_config *cfg);

/* Find an upstream by name or alias (case-insensitive); NULL if none. */
const struct om_upstream_cfg *om_config_upstream_find(const struct om_config *cfg,
                                                      const char *name, size_t len);

/* Parse helpers, exposed for unit tests and other modules.
 * Durations: "250ms", "2s", "5m", "1h", "1d", or a bare integer = seconds.
 * Sizes: "512", "64KiB", "4MiB", "50GiB", "1TiB", "10GB" (SI). */
int om_parse_duration_ms(const char *s, uint64_t *out);
int om_parse_size(const char *s, uint64_t *out);

/* Added after the first version (backwards-compatible):
 *
 * om_parse_listen: "host:port", "[v6addr]:port" or ":port" → host without
 * brackets (NUL-terminated, must fit in hostlen; "" = every address) and
 * port 1..65535.  A bare IPv6 address needs brackets.  OM_ERR_INVALID if not.
 *
 * om_format_duration_ms / om_format_size: the exact inverse of the parsers
 * ("5m", "500ms", "4MiB", "1000"), never rounded, so what they print reads
 * back as the same number.  buf gets at least 24 bytes to be safe. */
int om_parse_listen(const char *s, char *host, size_t hostlen, unsigned *port);
/* The same, also taking port 0: "any free port" (the in-process server of
 * `ocimirror prefetch`, tests) — never from a user's config. */
int om_parse_listen_bind(const char *s, char *host, size_t hostlen, unsigned *port);
/* NULL when om_parse_listen takes s, else what is wrong with it: a phrase
 * that reads after the value ("is not HOST:PORT: the port must be a number
 * from 1 to 65535"), in static storage. */
const char *om_listen_why(const char *s);
void om_format_duration_ms(uint64_t ms, char *buf, size_t len);
/* "10.0.0.0/8", "fd00::/8", "192.0.2.7" (a host: /32 or /128), with
 * inet_pton; host bits below the prefix are cleared.  s need not be
 * NUL-terminated; at most 63 bytes.  OM_OK or OM_ERR_INVALID. */
int om_parse_cidr(struct om_cidr *out, const char *s, size_t len);
/* The inverse, "10.0.0.0/8", into buf (at least 64 bytes). */
void om_format_cidr(const struct om_cidr *c, char *buf, size_t len);
void om_format_size(uint64_t n, char *buf, size_t len);

/* cluster.redis: "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]" (HOST a name,
 * an IPv4 address or [IPv6]; PORT 6379 when absent; DB 0 when absent) or
 * "unix:///ABSOLUTE/PATH[?db=N]".  Pure, bounded (at most OM_REDIS_URL_MAX
 * bytes; s need not be NUL-terminated), never allocates.  OM_OK fills *out;
 * OM_ERR_INVALID sets *why (static text that reads after the value: "needs
 * a host") and leaves *out zeroed.  "rediss://" is refused: the client
 * library (hiredis 0.14) has no TLS.  A password in the URL is taken
 * verbatim (no %-decoding): one with '@' or '/' belongs in
 * redis_password_file. */
#define OM_REDIS_URL_MAX 1024
#define OM_REDIS_HOST_MAX 255
#define OM_REDIS_PATH_MAX 107        /* sun_path holds 108 bytes with the NUL */
#define OM_REDIS_SECRET_MAX 512      /* user, password */
#define OM_REDIS_DB_MAX 65535
#define OM_REDIS_PORT_DEFAULT 6379
struct om_redis_url {
    bool is_unix;
    char host[OM_REDIS_HOST_MAX + 1];   /* without brackets; "" for unix */
    unsigned port;                      /* 1..65535; 0 for unix */
    char path[OM_REDIS_PATH_MAX + 1];   /* unix only */
    unsigned db;                        /* 0..OM_REDIS_DB_MAX */
    char user[OM_REDIS_SECRET_MAX + 1];     /* "" = none (AUTH password) */
    char password[OM_REDIS_SECRET_MAX + 1]; /* "" = none */
};
int om_parse_redis_url(struct om_redis_url *out, const char *s, size_t len, const char **why);

#define OM_CONFIG_MAX_BYTES (1024 * 1024)   /* config file size limit */
#define OM_STORAGE_PATH_MAX 4096            /* storage.path, bytes */
#define OM_PASSWORD_FILE_MAX 4096           /* password_file size limit */
#define OM_ADMIN_TOKEN_FILE_MAX 4096        /* admin.token_file size limit */
#define OM_CLUSTER_SECRET_FILE_MAX 512      /* cluster.*_file size limit */
#define OM_S3_KEY_FILE_MAX 4096             /* storage.s3 access/secret_key_file size limit */
#define OM_S3_PREFIX_MAX 256                /* storage.s3.prefix, bytes */
#define OM_S3_PART_MIN (5ull << 20)         /* S3's smallest part but the last */
#define OM_S3_PART_MAX (5ull << 30)         /* S3's largest part */

#endif
