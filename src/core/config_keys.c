/* config_keys.c — what each config key means: the top-level table (the
 * index of every section below), and for the server side of the file —
 * listen, public_url, tls, admin, the TTLs, retries, log, limits,
 * prefetch — one `struct om_cfg_field` table per YAML mapping, the handlers
 * for values that need more than a type check, and the checks that span
 * several keys.  The keys that say where images come from (upstreams,
 * rewrites, search_order) have their tables, handlers and checks in
 * config_upstreams.c, and the storage section's in config_storage.c; the
 * helpers those files use (om_cfg_has_ctl, om_cfg_read_secret,
 * om_cfg_check_base_url) are here.
 *
 *   top level   listen public_url tls admin storage upstreams search_order
 *               rewrites tag_ttl negative_ttl retries log limits prefetch
 *               cluster access policy
 *   tls         cert key                      (both or neither)
 *   admin       token token_file protect_reads (token or token_file, not
 *               both; protect_reads needs one)
 *   storage     path max_size high_water low_water gc_interval backend
 *               redirect redirect_ttl s3      (config_storage.c)
 *   upstream    name url aliases ca_file insecure_skip_verify username
 *               password password_file proxy  (name+url required; password
 *               or password_file; names/aliases unique across upstreams;
 *                                              config_upstreams.c)
 *   rewrite     match target                  (regex compiles; \N exists;
 *                                              config_upstreams.c)
 *   retries     max backoff
 *   log         level format
 *   limits      max_connections max_connections_per_ip max_header_bytes
 *               max_url_bytes max_manifest_bytes connection_timeout
 *               header_timeout idle_timeout
 *               shutdown_grace threads max_downloads max_tags
 *               max_downloads_per_upstream jobs_per_upstream
 *               revalidate_timeout max_blob_size
 *               trusted_proxies max_clients per_client per_user
 *                                             (config_limits.c)
 *   prefetch    images platforms interval retries retry_interval
 *                                             (interval 0 or >= 1s)
 *   access      anonymous htpasswd_file       (anonymous false needs the file)
 *   policy      allow deny                    (patterns: core/policy.h)
 *   cluster     redis redis_password_file peer_url peer_token_file lease
 *                                             (the others need redis; a
 *               password in the URL or the file, not both; peer_url needs
 *               peer_token_file; the URL: config_cluster.c)
 *
 * Lists from the file replace the defaults (upstreams, rewrites, prefetch
 * images and platforms); a missing
 * search_order becomes "every upstream in order" after the whole document,
 * because upstreams may come after it in the file.
 *
 * Limits' ranges are here, next to the keys: a value outside them is almost
 * certainly a typo (a 1-byte header limit, a million threads), and a range
 * also keeps every value inside the type the other modules store it in.
 *
 * If you add a key: add a row here (an upstream's or a rewrite's: in
 * config_upstreams.c), set its default in config.c
 * (fill_defaults), print it in om_config_dump(), put it in
 * docs/ocimirror.example.yaml and the READMEs, and add test rows.
 */
#include "core/config_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libfyaml.h>

#define MS_MAX (365ull * 24 * 3600 * 1000) /* no duration beyond a year */

/* Blanks and control characters: never valid in names, URLs, addresses. */
bool om_cfg_has_ctl(const char *s)
{
    bool found = false;

    for (; *s != '\0' && !found; s++)
        found = (unsigned char)*s <= 0x20 || *s == 0x7f;
    return found;
}

/* ---- single values (K_STR checks: NULL = fine, else what is wrong) ------ */

static const char *check_listen(char *s)
{
    return om_listen_why(s);
}

/* public_url is what the mirror tells clients to use (client-config
 * snippets, pull commands), so it is only scheme://host[:port]: a path would
 * be glued in front of /v2/ by every client differently.  A single trailing
 * "/" is accepted and dropped. */
/* http(s)://host[:port] with nothing after it but one optional '/' (cut).
 * path_why: what to say of a path. */
static const char *base_url_why(char *s, const char *path_why)
{
    const char *rest = strncasecmp(s, "https://", 8) == 0  ? s + 8
                       : strncasecmp(s, "http://", 7) == 0 ? s + 7
                                                           : NULL;
    size_t host_len = rest != NULL ? strcspn(rest, "/") : 0;
    const char *port = NULL, *why = NULL;
    bool host_ok = host_len > 0;

    if (rest == NULL || om_cfg_has_ctl(s) || strpbrk(s, "?#@") != NULL) {
        why = "must be http:// or https:// and a host, with no user:password@, query or "
              "fragment";
        goto done;
    }
    if (rest[host_len] != '\0' && strcmp(rest + host_len, "/") != 0) {
        why = path_why;
        goto done;
    }
    if (host_ok && rest[0] == '[') { /* [v6addr] or [v6addr]:port */
        const char *close = memchr(rest, ']', host_len);
        host_ok = close != NULL && close > rest + 1;
        if (host_ok && close + 1 < rest + host_len)
            port = close + 1;
    } else if (host_ok) {
        const char *colon = memchr(rest, ':', host_len);
        size_t name_len = colon != NULL ? (size_t)(colon - rest) : host_len;
        host_ok = name_len > 0;
        for (size_t i = 0; host_ok && i < name_len; i++)
            host_ok = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_",
                             rest[i]) != NULL;
        port = colon;
    }
    if (host_ok && port != NULL) { /* ":1".."65535" */
        size_t plen = (size_t)(rest + host_len - port) - 1;
        unsigned long n = 0;
        host_ok = port[0] == ':' && plen >= 1 && plen <= 5 && strspn(port + 1, "0123456789") >= plen;
        if (host_ok)
            n = strtoul(port + 1, NULL, 10);
        host_ok = host_ok && n >= 1 && n <= 65535;
    }
    if (!host_ok)
        why = "needs a host name or [IPv6] address and an optional port 1..65535";
    else if (rest[host_len] == '/')
        s[rest + host_len - s] = '\0'; /* one form only: no trailing slash */
done:
    return why;
}

static const char *check_public_url(char *s)
{
    return base_url_why(s, "must not have a path (clients add /v2/ themselves)");
}

const char *om_cfg_check_base_url(char *s)
{
    return base_url_why(s, "must not have a path (the bucket and key go there)");
}

/* The admin token travels in "Authorization: Bearer TOKEN": a blank or a
 * control character could not be sent (or would be cut) there. */
static const char *check_admin_token(char *s)
{
    return s[0] == '\0' || om_cfg_has_ctl(s)
               ? "must be non-empty, without blanks or control characters"
               : NULL;
}

/* Replace slots[0..*n) with the strings of list v (null = empty list), each
 * at most maxlen bytes and passing check (NULL = fine, else what is wrong).
 * slots[] owns its strings; on error the ones read so far stay counted so
 * om_config_free() releases them. */
static int read_str_list(struct om_cfg_ctx *c, struct fy_node *key, struct fy_node *v,
                         const char *what, char **slots, size_t *n, size_t max, size_t maxlen,
                         const char *(*check)(const char *))
{
    struct fy_node *item;
    void *it = NULL;
    char vb[80];
    const char *why = NULL;
    int rc = om_cfg_want_seq(c, key, v, what);

    for (size_t i = 0; rc == OM_OK && i < *n; i++) {
        free(slots[i]);
        slots[i] = NULL;
    }
    if (rc == OM_OK)
        *n = 0;
    while (rc == OM_OK && !om_cfg_is_null(v) && (item = fy_node_sequence_iterate(v, &it)) != NULL) {
        char **slot = &slots[*n];
        if (*n == max)
            rc = om_cfg_report(c, item, key, "at most %zu %s", max, what);
        else if ((rc = om_cfg_scalar_dup(c, key, item, slot)) == OM_OK)
            (*n)++; /* slots[] owns *slot now */
        if (rc == OM_OK && strlen(*slot) > maxlen)
            rc = om_cfg_report(c, item, key, "an entry of %s is longer than %zu bytes", what,
                               maxlen);
        else if (rc == OM_OK && (why = check(*slot)) != NULL)
            rc = om_cfg_report(c, item, key, "%s: \"%s\" %s", what,
                               om_cfg_shown(vb, sizeof(vb), *slot, strlen(*slot)), why);
    }
    return rc;
}

/* Image references are checked loosely here (the prefetcher resolves them
 * like a client's pull and reports what it cannot): only what can never be
 * a reference is refused. */
static const char *check_image_ref(const char *s)
{
    return s[0] == '\0' || om_cfg_has_ctl(s) ? "is not an image reference (empty, blank or "
                                               "control character)"
                                             : NULL;
}

/* "os/arch" or "os/arch/variant", lowercase as in image indexes (which are
 * matched exactly, so "Linux/AMD64" would silently match nothing). */
static const char *check_platform(const char *s)
{
    size_t parts = 1, run = 0;
    bool ok = true;

    for (; ok && *s != '\0'; s++) {
        if (*s == '/') {
            ok = run > 0;
            parts++;
            run = 0;
        } else {
            ok = (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' ||
                 *s == '_' || *s == '-';
            run++;
        }
    }
    return ok && run > 0 && (parts == 2 || parts == 3)
               ? NULL
               : "is not os/arch or os/arch/variant in lowercase (e.g. linux/arm64/v8)";
}

static int h_prefetch_images(struct om_cfg_ctx *c, void *obj, struct fy_node *key,
                             struct fy_node *v)
{
    struct om_config *cfg = obj;

    return read_str_list(c, key, v, "prefetch images", cfg->prefetch_images,
                         &cfg->n_prefetch_images, OM_MAX_PREFETCH_IMAGES, OM_PREFETCH_IMAGE_MAX,
                         check_image_ref);
}

static int h_prefetch_platforms(struct om_cfg_ctx *c, void *obj, struct fy_node *key,
                                struct fy_node *v)
{
    struct om_config *cfg = obj;
    int rc = read_str_list(c, key, v, "prefetch platforms", cfg->prefetch_platforms,
                           &cfg->n_prefetch_platforms, OM_MAX_PREFETCH_PLATFORMS,
                           OM_PREFETCH_PLATFORM_MAX, check_platform);

    /* an empty list has no sensible meaning (nothing? everything?) */
    if (rc == OM_OK && cfg->n_prefetch_platforms == 0)
        rc = om_cfg_report(c, v, key, "prefetch platforms must list at least one os/arch");
    return rc;
}

/* s[0..len) as an index into names[], or -1. */
static int word_index(const char *s, size_t len, const char *const *names, size_t n)
{
    int found = -1;

    for (size_t i = 0; found < 0 && i < n; i++) {
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            found = (int)i;
    }
    return found;
}

static int h_log_level(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    static const char *const names[] = {"debug", "info", "warn", "error"}; /* enum order */
    struct om_config *cfg = obj;
    const char *s = NULL;
    size_t len = 0;
    int i = -1, rc = om_cfg_scalar(c, key, v, &s, &len);

    if (rc == OM_OK && (i = word_index(s, len, names, OM_ARRAY_LEN(names))) < 0)
        rc = om_cfg_report(c, v, key, "log level must be debug, info, warn or error");
    if (rc == OM_OK)
        cfg->log_level = (om_log_level)i;
    return rc;
}

static int h_log_format(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    static const char *const names[] = {"text", "json"}; /* enum order */
    struct om_config *cfg = obj;
    const char *s = NULL;
    size_t len = 0;
    int i = -1, rc = om_cfg_scalar(c, key, v, &s, &len);

    if (rc == OM_OK && (i = word_index(s, len, names, OM_ARRAY_LEN(names))) < 0)
        rc = om_cfg_report(c, v, key, "log format must be text or json");
    if (rc == OM_OK)
        cfg->log_format = (om_log_format)i;
    return rc;
}

/* ---- the tables --------------------------------------------------------- */

static const struct om_cfg_field tls_fields[] = {
    OPTSTR("cert", CFG(tls_cert)),
    OPTSTR("key", CFG(tls_key)),
};
static const struct om_cfg_field admin_fields[] = {
    {.key = "token", .kind = K_OPTSTR, .off = CFG(admin_token), .check = check_admin_token},
    OPTSTR("token_file", CFG(admin_token_file)),
    {.key = "protect_reads", .kind = K_BOOL, .off = CFG(admin_protect_reads)},
};
static const struct om_cfg_field prefetch_fields[] = {
    FN("images", h_prefetch_images),
    FN("platforms", h_prefetch_platforms),
    NUM("interval", K_MS, CFG(prefetch_interval_ms), 0, MS_MAX),
    NUM("retries", K_UINT, CFG(prefetch_retries), 1, 100),
    NUM("retry_interval", K_MS, CFG(prefetch_retry_interval_ms), 0, MS_MAX),
};
static const struct om_cfg_field retries_fields[] = {
    NUM("max", K_UINT, CFG(retries_max), 1, 100),
    NUM("backoff", K_MS, CFG(retries_backoff_ms), 0, 24ull * 3600 * 1000),
};
static const struct om_cfg_field log_fields[] = {
    FN("level", h_log_level),
    FN("format", h_log_format),
};
static const struct om_cfg_field limits_fields[] = {
    NUM("max_connections", K_UINT, CFG(limits.max_connections), 1, 1000000),
    NUM("max_header_bytes", K_SIZE, CFG(limits.max_header_bytes), 1024, 1u << 20),
    NUM("max_url_bytes", K_SIZE, CFG(limits.max_url_bytes), 256, 1u << 20),
    NUM("max_manifest_bytes", K_SIZE, CFG(limits.max_manifest_bytes), 1024, 1u << 30),
    NUM("max_connections_per_ip", K_UINT, CFG(limits.max_connections_per_ip), 0, 1000000),
    NUM("connection_timeout", K_MS, CFG(limits.connection_timeout_ms), 1, MS_MAX),
    NUM("header_timeout", K_MS, CFG(limits.header_timeout_ms), 1, MS_MAX),
    NUM("idle_timeout", K_MS, CFG(limits.idle_timeout_ms), 1, MS_MAX),
    NUM("shutdown_grace", K_MS, CFG(limits.shutdown_grace_ms), 0, MS_MAX),
    NUM("threads", K_UINT, CFG(limits.threads), 0, 1024),
    NUM("max_downloads", K_UINT, CFG(limits.max_downloads), 1, 65536),
    NUM("max_downloads_per_upstream", K_UINT, CFG(limits.max_downloads_per_upstream), 0, 65536),
    NUM("jobs_per_upstream", K_UINT, CFG(limits.jobs_per_upstream), 1, 256),
    NUM("revalidate_timeout", K_MS, CFG(limits.revalidate_timeout_ms), 1, MS_MAX),
    NUM("max_blob_size", K_SIZE64, CFG(limits.max_blob_size), 0, UINT64_MAX),
    NUM("max_tags", K_UINT, CFG(limits.max_tags), 1, 10000000),
    FN("trusted_proxies", om_cfg_h_trusted_proxies),
    NUM("max_clients", K_UINT, CFG(limits.max_clients), 64, 10000000),
    FN("per_client", om_cfg_h_per_client),
    FN("per_user", om_cfg_h_per_user),
};

/* ---- mappings and lists ------------------------------------------------- */

static int h_tls(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    int rc = om_cfg_walk_map(c, key, v, "tls", tls_fields, OM_ARRAY_LEN(tls_fields), obj);

    if (rc == OM_OK && (cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
        rc = om_cfg_report(c, key, NULL, "tls needs both cert and key (or neither)");
    return rc;
}

#define SUBMAP(fn, where, table)                                                     \
    static int fn(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v) \
    {                                                                                \
        return om_cfg_walk_map(c, key, v, where, table, OM_ARRAY_LEN(table), obj);   \
    }
SUBMAP(h_retries, "retries", retries_fields)
SUBMAP(h_log, "log", log_fields)

static int h_limits(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    int rc = om_cfg_walk_map(c, key, v, "limits", limits_fields, OM_ARRAY_LEN(limits_fields), obj);

    if (rc == OM_OK)
        om_cfg_limits_finish(&cfg->limits);
    return rc;
}

/* *out = the contents of file `path` (at most max bytes), which must not be
 * empty or hold a NUL.  Trailing CR/LF are always cut (editors add them);
 * with `trim_blanks`, blanks at both ends too and no blank or control
 * character may remain (a token, not a password that may hold spaces).
 * `what` names the key in messages; errors point at `at`. */
int om_cfg_read_secret(struct om_cfg_ctx *c, const char *path, size_t max, const char *what,
                       bool trim_blanks, struct fy_node *at, char **out)
{
    char *buf = NULL; /* owned here until handed to *out */
    size_t len = 0, start = 0;
    const char *why = NULL;
    char vb[80];
    int rc = om_cfg_slurp(path, max, &buf, &len, &why);

    om_cfg_shown(vb, sizeof(vb), path, strlen(path));
    if (rc == OM_ERR_TOOBIG)
        rc = om_cfg_report(c, at, NULL, "%s \"%s\" is larger than %zu bytes", what, vb, max);
    else if (rc == OM_ERR_IO)
        rc = om_cfg_report(c, at, NULL, "cannot read %s \"%s\": %s", what, vb, why);
    if (rc != OM_OK)
        goto done;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
                       (trim_blanks && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))))
        buf[--len] = '\0';
    while (trim_blanks && start < len && (buf[start] == ' ' || buf[start] == '\t' ||
                                          buf[start] == '\n' || buf[start] == '\r'))
        start++;
    if (start > 0) {
        memmove(buf, buf + start, len - start + 1);
        len -= start;
        explicit_bzero(buf + len + 1, start); /* the stale tail held secret bytes */
    }
    if (len == 0 || memchr(buf, '\0', len) != NULL) {
        rc = om_cfg_report(c, at, NULL, "%s \"%s\" is empty or holds a NUL byte", what, vb);
        goto done;
    }
    if (trim_blanks && om_cfg_has_ctl(buf)) {
        rc = om_cfg_report(c, at, NULL, "%s \"%s\" holds a blank or control character", what,
                           vb);
        goto done;
    }
    *out = buf;
    buf = NULL;
done:
    if (buf != NULL)
        explicit_bzero(buf, len);
    free(buf);
    return rc;
}

static int h_admin(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    struct fy_node *tf_k = NULL, *tf_v = NULL, *pr_v = NULL;
    int rc = om_cfg_walk_map(c, key, v, "admin", admin_fields, OM_ARRAY_LEN(admin_fields), obj);

    tf_k = om_cfg_find_key(v, "token_file", &tf_v);
    om_cfg_find_key(v, "protect_reads", &pr_v);
    if (rc == OM_OK && cfg->admin_token != NULL && cfg->admin_token_file != NULL)
        rc = om_cfg_report(c, tf_k, key, "admin: give token or token_file, not both");
    else if (rc == OM_OK && cfg->admin_token_file != NULL)
        rc = om_cfg_read_secret(c, cfg->admin_token_file, OM_ADMIN_TOKEN_FILE_MAX, "token_file",
                                true, tf_v, &cfg->admin_token);
    if (rc == OM_OK && cfg->admin_protect_reads && cfg->admin_token == NULL)
        rc = om_cfg_report(c, pr_v, key,
                           "admin protect_reads needs token or token_file (reads would be "
                           "refused to everyone)");
    return rc;
}

/* A nonzero re-sync interval under a second is a typo ("6" for "6h") that
 * would re-pull the list continuously. */
static int h_prefetch(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    struct fy_node *iv_v = NULL;
    int rc = om_cfg_walk_map(c, key, v, "prefetch", prefetch_fields,
                             OM_ARRAY_LEN(prefetch_fields), obj);

    if (rc == OM_OK && cfg->prefetch_interval_ms > 0 && cfg->prefetch_interval_ms < 1000) {
        om_cfg_find_key(v, "interval", &iv_v);
        rc = om_cfg_report(c, iv_v, key, "prefetch interval must be 0 (no re-sync) or at least 1s");
    }
    return rc;
}

/* ---- cluster.* (issue 11: N replicas sharing their metadata in Redis) --
 * Kept in one block: other scale-out keys (storage.*) land in this file
 * too. */

static const char *check_redis_url(char *s)
{
    struct om_redis_url u;
    const char *why = NULL;

    (void)om_parse_redis_url(&u, s, strlen(s), &why);
    explicit_bzero(&u, sizeof(u));
    return why;
}

static const struct om_cfg_field cluster_fields[] = {
    {.key = "redis", .kind = K_OPTSTR, .off = CFG(cluster_redis), .check = check_redis_url},
    OPTSTR("redis_password_file", CFG(cluster_redis_password_file)),
    {.key = "peer_url", .kind = K_OPTSTR, .off = CFG(cluster_peer_url),
     .check = check_public_url},
    OPTSTR("peer_token_file", CFG(cluster_peer_token_file)),
    NUM("lease", K_MS, CFG(cluster_lease_ms), 1000, 600000),
};

/* The secrets are read here (a file the server cannot read fails
 * check-config, as admin.token_file does); the password keeps inner blanks
 * (AUTH takes any bytes), the token is trimmed like admin's. */
static int h_cluster(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    struct fy_node *pw_k = NULL, *pw_v = NULL, *pu_k = NULL, *tf_k = NULL, *tf_v = NULL;
    struct om_redis_url u;
    const char *why = NULL;
    int rc = om_cfg_walk_map(c, key, v, "cluster", cluster_fields, OM_ARRAY_LEN(cluster_fields),
                             obj);

    memset(&u, 0, sizeof(u));
    pw_k = om_cfg_find_key(v, "redis_password_file", &pw_v);
    pu_k = om_cfg_find_key(v, "peer_url", NULL);
    tf_k = om_cfg_find_key(v, "peer_token_file", &tf_v);
    if (rc == OM_OK && cfg->cluster_redis == NULL &&
        (cfg->cluster_redis_password_file != NULL || cfg->cluster_peer_url != NULL ||
         cfg->cluster_peer_token_file != NULL))
        rc = om_cfg_report(c, pw_k != NULL ? pw_k : pu_k != NULL ? pu_k : tf_k, key,
                           "cluster: redis_password_file, peer_url and peer_token_file need "
                           "cluster.redis");
    if (rc == OM_OK && cfg->cluster_redis != NULL)
        (void)om_parse_redis_url(&u, cfg->cluster_redis, strlen(cfg->cluster_redis), &why);
    if (rc == OM_OK && u.password[0] != '\0' && cfg->cluster_redis_password_file != NULL)
        rc = om_cfg_report(c, pw_k, key,
                           "cluster: give the password in redis or in redis_password_file, not "
                           "both");
    if (rc == OM_OK && cfg->cluster_peer_url != NULL && cfg->cluster_peer_token_file == NULL)
        rc = om_cfg_report(c, pu_k, key,
                           "cluster peer_url needs peer_token_file (the internal endpoint refuses "
                           "requests without the shared secret)");
    if (rc == OM_OK && cfg->cluster_redis_password_file != NULL)
        rc = om_cfg_read_secret(c, cfg->cluster_redis_password_file, OM_CLUSTER_SECRET_FILE_MAX,
                                "redis_password_file", false, pw_v, &cfg->cluster_redis_password);
    if (rc == OM_OK && cfg->cluster_peer_token_file != NULL)
        rc = om_cfg_read_secret(c, cfg->cluster_peer_token_file, OM_CLUSTER_SECRET_FILE_MAX,
                                "peer_token_file", true, tf_v, &cfg->cluster_peer_token);
    explicit_bzero(&u, sizeof(u));
    return rc;
}

/* ---- access.* and policy.* (issue 12: who may pull, what may be pulled) --
 * The htpasswd file itself is read by the server (http/auth.c), which
 * refuses to start with one it cannot use; here only the combination is
 * checked. */

static const struct om_cfg_field access_fields[] = {
    {.key = "anonymous", .kind = K_BOOL, .off = CFG(access_anonymous)},
    OPTSTR("htpasswd_file", CFG(access_htpasswd_file)),
};

static int h_access(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    struct fy_node *an_v = NULL;
    int rc = om_cfg_walk_map(c, key, v, "access", access_fields, OM_ARRAY_LEN(access_fields),
                             obj);

    if (rc == OM_OK && !cfg->access_anonymous && cfg->access_htpasswd_file == NULL) {
        om_cfg_find_key(v, "anonymous", &an_v);
        rc = om_cfg_report(c, an_v, key,
                           "access anonymous false needs htpasswd_file (nobody could pull)");
    }
    return rc;
}

static const char *check_pattern(const char *s)
{
    return om_policy_pattern_why(s, strlen(s));
}

static int h_policy_allow(struct om_cfg_ctx *c, void *obj, struct fy_node *key,
                          struct fy_node *v)
{
    struct om_config *cfg = obj;

    return read_str_list(c, key, v, "policy allow patterns", cfg->policy_allow,
                         &cfg->n_policy_allow, OM_POLICY_RULES_MAX, OM_POLICY_PATTERN_MAX,
                         check_pattern);
}

static int h_policy_deny(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;

    return read_str_list(c, key, v, "policy deny patterns", cfg->policy_deny,
                         &cfg->n_policy_deny, OM_POLICY_RULES_MAX, OM_POLICY_PATTERN_MAX,
                         check_pattern);
}

static const struct om_cfg_field policy_fields[] = {
    FN("allow", h_policy_allow),
    FN("deny", h_policy_deny),
};
SUBMAP(h_policy, "policy", policy_fields)

/* ---- the top level ------------------------------------------------------- */

const struct om_cfg_field om_cfg_top_fields[] = {
    STR("listen", CFG(listen), check_listen),
    {.key = "public_url", .kind = K_OPTSTR, .off = CFG(public_url), .check = check_public_url},
    FN("tls", h_tls),
    FN("admin", h_admin),
    FN("storage", om_cfg_h_storage),
    FN("upstreams", om_cfg_h_upstreams),
    FN("search_order", om_cfg_h_search_order),
    FN("rewrites", om_cfg_h_rewrites),
    NUM("tag_ttl", K_MS, CFG(tag_ttl_ms), 0, MS_MAX),
    NUM("negative_ttl", K_MS, CFG(negative_ttl_ms), 0, MS_MAX),
    FN("retries", h_retries),
    FN("log", h_log),
    FN("limits", h_limits),
    FN("prefetch", h_prefetch),
    FN("cluster", h_cluster),
    FN("access", h_access),
    FN("policy", h_policy),
};

const size_t om_cfg_n_top_fields = OM_ARRAY_LEN(om_cfg_top_fields);
