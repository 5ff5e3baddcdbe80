/* config_keys.c — what each config key means: one `struct om_cfg_field`
 * table per YAML mapping, the handlers for values that need more than a
 * type check, and the checks that span several keys.
 *
 *   top level   listen public_url tls admin storage upstreams search_order
 *               rewrites tag_ttl negative_ttl retries log limits prefetch
 *   tls         cert key                      (both or neither)
 *   admin       token token_file protect_reads (token or token_file, not
 *               both; protect_reads needs one)
 *   storage     path max_size high_water low_water gc_interval
 *                                             (low < high when max_size set)
 *   upstream    name url aliases ca_file insecure_skip_verify username
 *               password password_file proxy  (name+url required; password
 *               or password_file; names/aliases unique across upstreams)
 *   rewrite     match target                  (regex compiles; \N exists)
 *   retries     max backoff
 *   log         level format
 *   limits      max_connections max_connections_per_ip max_header_bytes
 *               max_url_bytes max_manifest_bytes connection_timeout
 *               header_timeout idle_timeout
 *               shutdown_grace threads max_downloads
 *   prefetch    images platforms interval retries retry_interval
 *                                             (interval 0 or >= 1s)
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
 * If you add a key: add a row here, set its default in config.c
 * (fill_defaults), print it in om_config_dump(), put it in
 * docs/ocimirror.example.yaml and the READMEs, and add test rows.
 */
#include "core/config_int.h"
#include "core/ref.h"

#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libfyaml.h>

#define REGEX_MAX 1024                     /* a rewrite's match */
#define NAME_MAX_LEN 253                   /* an upstream name or alias (a hostname) */
#define MS_MAX (365ull * 24 * 3600 * 1000) /* no duration beyond a year */

/* Blanks and control characters: never valid in names, URLs, addresses. */
static bool has_ctl(const char *s)
{
    bool found = false;

    for (; *s != '\0' && !found; s++)
        found = (unsigned char)*s <= 0x20 || *s == 0x7f;
    return found;
}

/* ---- single values (K_STR checks: NULL = fine, else what is wrong) ------ */

static const char *check_listen(char *s)
{
    char host[256];
    unsigned port = 0;

    return om_parse_listen(s, host, sizeof(host), &port) == OM_OK
               ? NULL
               : "is not HOST:PORT (e.g. 0.0.0.0:5000, [::]:5000 or :5000)";
}

/* Upstream names are the first component of canonical repository names, so
 * they follow that grammar: lowercase letters and digits with . - _ between.
 * Aliases are matched case-insensitively against request names and ?ns=
 * values, which may carry a port ("localhost:5000"). */
static bool name_ok(const char *s, bool alias)
{
    size_t n = strlen(s);
    bool ok = n > 0 && n <= NAME_MAX_LEN;

    for (size_t i = 0; ok && i < n; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                     (alias && ch >= 'A' && ch <= 'Z');
        bool sep = ch == '.' || ch == '-' || ch == '_' || (alias && ch == ':');
        ok = alnum || (sep && i > 0 && i + 1 < n);
    }
    return ok;
}

static const char *check_name(char *s)
{
    /* It becomes the first component of every canonical name of this
     * upstream, so it must also be a valid name component (no "a..b"). */
    return name_ok(s, false) && om_ref_name_valid(s, strlen(s))
               ? NULL
               : "must be a lowercase registry host name (e.g. quay.io)";
}

/* http:// or https://, a host, an optional path; no credentials (they go in
 * username/password, never in a URL that gets logged), no query.  Stored
 * without a trailing slash. */
static const char *check_url(char *s)
{
    size_t n = strlen(s);
    const char *rest = strncasecmp(s, "https://", 8) == 0  ? s + 8
                       : strncasecmp(s, "http://", 7) == 0 ? s + 7
                                                           : NULL;
    size_t host_len = rest != NULL ? strcspn(rest, "/") : 0;
    const char *why = NULL;

    if (rest == NULL || host_len == 0 || has_ctl(s) || memchr(rest, '@', host_len) != NULL ||
        strpbrk(s, "?#") != NULL)
        why = "must be http:// or https:// and a host, with no user:password@, query or "
              "fragment";
    while (why == NULL && n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
    return why;
}

/* public_url is what the mirror tells clients to use (client-config
 * snippets, pull commands), so it is only scheme://host[:port]: a path would
 * be glued in front of /v2/ by every client differently.  A single trailing
 * "/" is accepted and dropped. */
static const char *check_public_url(char *s)
{
    const char *rest = strncasecmp(s, "https://", 8) == 0  ? s + 8
                       : strncasecmp(s, "http://", 7) == 0 ? s + 7
                                                           : NULL;
    size_t host_len = rest != NULL ? strcspn(rest, "/") : 0;
    const char *port = NULL, *why = NULL;
    bool host_ok = host_len > 0;

    if (rest == NULL || has_ctl(s) || strpbrk(s, "?#@") != NULL) {
        why = "must be http:// or https:// and a host, with no user:password@, query or "
              "fragment";
        goto done;
    }
    if (rest[host_len] != '\0' && strcmp(rest + host_len, "/") != 0) {
        why = "must not have a path (clients add /v2/ themselves)";
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

/* The admin token travels in "Authorization: Bearer TOKEN": a blank or a
 * control character could not be sent (or would be cut) there. */
static const char *check_admin_token(char *s)
{
    return s[0] == '\0' || has_ctl(s) ? "must be non-empty, without blanks or control characters"
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
    return s[0] == '\0' || has_ctl(s) ? "is not an image reference (empty, blank or control "
                                        "character)"
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

static int h_up_aliases(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_upstream_cfg *u = obj;
    struct fy_node *item;
    void *it = NULL;
    char vb[80];
    int rc = om_cfg_want_seq(c, key, v, "aliases");

    for (size_t i = 0; rc == OM_OK && i < u->n_aliases; i++) {
        free(u->aliases[i]);
        u->aliases[i] = NULL;
    }
    if (rc == OM_OK)
        u->n_aliases = 0;
    while (rc == OM_OK && !om_cfg_is_null(v) && (item = fy_node_sequence_iterate(v, &it)) != NULL) {
        char **slot = &u->aliases[u->n_aliases];
        if (u->n_aliases == OM_MAX_ALIASES)
            rc = om_cfg_report(c, item, key, "at most %d aliases", OM_MAX_ALIASES);
        else if ((rc = om_cfg_scalar_dup(c, key, item, slot)) == OM_OK)
            u->n_aliases++; /* the upstream owns *slot now */
        if (rc == OM_OK && !name_ok(*slot, true))
            rc = om_cfg_report(c, item, key, "alias \"%s\" is not a registry host name",
                               om_cfg_shown(vb, sizeof(vb), *slot, strlen(*slot)));
    }
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

#define CFG(m) offsetof(struct om_config, m)
#define UP(m) offsetof(struct om_upstream_cfg, m)
#define RW(m) offsetof(struct om_rewrite_cfg, m)
#define STR(k, o, chk) {.key = (k), .kind = K_STR, .off = (o), .check = (chk)}
#define OPTSTR(k, o) {.key = (k), .kind = K_OPTSTR, .off = (o)}
#define NUM(k, kd, o, lo, hi) {.key = (k), .kind = (kd), .off = (o), .min = (lo), .max = (hi)}
#define FN(k, f) {.key = (k), .kind = K_FN, .fn = (f)}

static const struct om_cfg_field tls_fields[] = {
    OPTSTR("cert", CFG(tls_cert)),
    OPTSTR("key", CFG(tls_key)),
};
static const struct om_cfg_field admin_fields[] = {
    {.key = "token", .kind = K_OPTSTR, .off = CFG(admin_token), .check = check_admin_token},
    OPTSTR("token_file", CFG(admin_token_file)),
    {.key = "protect_reads", .kind = K_BOOL, .off = CFG(admin_protect_reads)},
};
static const struct om_cfg_field storage_fields[] = {
    STR("path", CFG(storage_path), NULL),
    NUM("max_size", K_SIZE64, CFG(storage_max_size), 0, UINT64_MAX),
    NUM("high_water", K_UINT, CFG(storage_high_water), 1, 100),
    NUM("low_water", K_UINT, CFG(storage_low_water), 1, 100),
    NUM("gc_interval", K_MS, CFG(gc_interval_ms), 1000, MS_MAX),
};
static const struct om_cfg_field prefetch_fields[] = {
    FN("images", h_prefetch_images),
    FN("platforms", h_prefetch_platforms),
    NUM("interval", K_MS, CFG(prefetch_interval_ms), 0, MS_MAX),
    NUM("retries", K_UINT, CFG(prefetch_retries), 1, 100),
    NUM("retry_interval", K_MS, CFG(prefetch_retry_interval_ms), 0, MS_MAX),
};
static const struct om_cfg_field upstream_fields[] = {
    STR("name", UP(name), check_name),
    STR("url", UP(url), check_url),
    FN("aliases", h_up_aliases),
    OPTSTR("ca_file", UP(ca_file)),
    {.key = "insecure_skip_verify", .kind = K_BOOL, .off = UP(insecure_skip_verify)},
    OPTSTR("username", UP(username)),
    OPTSTR("password", UP(password)),
    OPTSTR("password_file", UP(password_file)),
    OPTSTR("proxy", UP(proxy)),
};
static const struct om_cfg_field rewrite_fields[] = {
    STR("match", RW(match), NULL),
    STR("target", RW(target), NULL),
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
SUBMAP(h_limits, "limits", limits_fields)

/* *out = the contents of file `path` (at most max bytes), which must not be
 * empty or hold a NUL.  Trailing CR/LF are always cut (editors add them);
 * with `trim_blanks`, blanks at both ends too and no blank or control
 * character may remain (a token, not a password that may hold spaces).
 * `what` names the key in messages; errors point at `at`. */
static int read_secret(struct om_cfg_ctx *c, const char *path, size_t max, const char *what,
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
    if (trim_blanks && has_ctl(buf)) {
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

/* After the storage mapping: the GC thresholds only matter with a limit. */
static int h_storage(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    struct fy_node *lw_v = NULL;
    int rc = om_cfg_walk_map(c, key, v, "storage", storage_fields, OM_ARRAY_LEN(storage_fields),
                             obj);

    if (rc == OM_OK && cfg->storage_max_size != 0 &&
        cfg->storage_low_water >= cfg->storage_high_water) {
        om_cfg_find_key(v, "low_water", &lw_v);
        rc = om_cfg_report(c, lw_v, key, "storage low_water (%u) must be below high_water (%u)",
                           cfg->storage_low_water, cfg->storage_high_water);
    }
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
        rc = read_secret(c, cfg->admin_token_file, OM_ADMIN_TOKEN_FILE_MAX, "token_file", true,
                         tf_v, &cfg->admin_token);
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

/* Is upstream i's name or alias t (0 = name) taken, by 0..i-1 or itself? */
static int check_token(struct om_cfg_ctx *c, const struct om_config *cfg, size_t i, size_t t,
                       struct fy_node *at, struct fy_node *item)
{
    const struct om_upstream_cfg *u = &cfg->upstreams[i];
    const char *tok = t == 0 ? u->name : u->aliases[t - 1];
    char vb[80];
    int rc = OM_OK;

    om_cfg_shown(vb, sizeof(vb), tok, strlen(tok));
    for (size_t j = 0; rc == OM_OK && j < i; j++) {
        if (om_cfg_upstream_has(&cfg->upstreams[j], tok, strlen(tok)))
            rc = om_cfg_report(c, at, item, "\"%s\" is already a name or alias of upstream \"%s\"",
                               vb, cfg->upstreams[j].name);
    }
    /* an alias equal to its own name is fine (docker.io lists itself) */
    for (size_t t2 = 1; rc == OM_OK && t2 < t; t2++) {
        if (strcasecmp(u->aliases[t2 - 1], tok) == 0)
            rc = om_cfg_report(c, at, item, "alias \"%s\" is listed twice", vb);
    }
    return rc;
}

/* Checks that span the keys of upstream i, and its names against 0..i-1. */
static int finish_upstream(struct om_cfg_ctx *c, struct om_config *cfg, size_t i,
                           struct fy_node *item, struct fy_node *owner)
{
    struct om_upstream_cfg *u = &cfg->upstreams[i];
    struct fy_node *name_v = NULL, *aliases_v = NULL, *pwf_v = NULL, *pwf_k;
    int rc = OM_OK;

    om_cfg_find_key(item, "name", &name_v);
    om_cfg_find_key(item, "aliases", &aliases_v);
    pwf_k = om_cfg_find_key(item, "password_file", &pwf_v);
    if (u->name == NULL)
        rc = om_cfg_report(c, item, owner, "an upstream needs a name");
    else if (u->url == NULL)
        rc = om_cfg_report(c, item, owner, "upstream \"%s\" needs a url", u->name);
    else if (u->password != NULL && u->password_file != NULL)
        rc = om_cfg_report(c, pwf_k, item,
                           "upstream \"%s\": give password or password_file, not both", u->name);
    else if (u->password_file != NULL)
        rc = read_secret(c, u->password_file, OM_PASSWORD_FILE_MAX, "password_file", false,
                         pwf_v, &u->password);
    for (size_t t = 0; rc == OM_OK && t <= u->n_aliases; t++) {
        struct fy_node *at = t == 0 ? name_v : om_cfg_seq_item(aliases_v, t - 1);
        rc = check_token(c, cfg, i, t, at, item);
    }
    if (rc == OM_OK)
        u->is_docker_hub = om_cfg_upstream_has(u, "docker.io", strlen("docker.io"));
    return rc;
}

static int h_upstreams(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    struct fy_node *item;
    void *it = NULL;
    int rc = OM_OK;

    if (!fy_node_is_sequence(v) || fy_node_sequence_item_count(v) == 0)
        rc = om_cfg_report(c, v, key, "upstreams must be a non-empty list");
    /* A file's list replaces the defaults entirely. */
    for (size_t i = 0; rc == OM_OK && i < cfg->n_upstreams; i++)
        om_cfg_upstream_clear(&cfg->upstreams[i]);
    if (rc == OM_OK)
        cfg->n_upstreams = 0;
    while (rc == OM_OK && (item = fy_node_sequence_iterate(v, &it)) != NULL) {
        if (cfg->n_upstreams == OM_MAX_UPSTREAMS) {
            rc = om_cfg_report(c, item, key, "at most %d upstreams", OM_MAX_UPSTREAMS);
        } else if (!fy_node_is_mapping(item)) {
            rc = om_cfg_report(c, item, key, "each upstream must be a mapping (name: ..., url: ...)");
        } else {
            /* counted first so that om_config_free() releases a half-read one */
            struct om_upstream_cfg *u = &cfg->upstreams[cfg->n_upstreams++];
            rc = om_cfg_walk_map(c, key, item, "an upstream", upstream_fields,
                                 OM_ARRAY_LEN(upstream_fields), u);
            if (rc == OM_OK)
                rc = finish_upstream(c, cfg, cfg->n_upstreams - 1, item, key);
        }
    }
    return rc;
}

#define REGEX_QUANTIFIERS_MAX 16

/* glibc's regcomp can take gigabytes or minutes on stacked quantifiers
 * (`a++++`, `(a)***`), whatever the pattern's length.  Refuse a quantifier
 * that follows a quantifier, and more than a few quantifiers in all; a
 * repository-name rewrite never needs either.  NULL when acceptable. */
static const char *regex_too_costly(const char *re)
{
    unsigned count = 0;
    unsigned long bounds_product = 1, last_bound = 0;
    bool prev_quant = false;
    for (const char *p = re; *p != '\0'; p++) {
        bool quant = false;
        if (*p == '\\' && p[1] != '\0') {
            p++;
        } else if (*p == '*' || *p == '+' || *p == '?') {
            quant = true;
        } else if (*p == '{') {
            const char *q = p + 1;
            while ((*q >= '0' && *q <= '9') || *q == ',')
                q++;
            if (*q == '}' && q > p + 1) {
                char *end;
                last_bound = 0;
                for (const char *n = p + 1; n < q;) {
                    unsigned long v = strtoul(n, &end, 10);
                    if (end == n) {
                        end++;
                    } else {
                        if (v > 255)
                            return "a {n,m} bound over 255";
                        if (v > last_bound)
                            last_bound = v;
                    }
                    n = end;
                }
                quant = true;
                p = q;
                /* Bounds multiply when nested ((a{200}){200}): cap them all
                 * together, which a name rewrite never comes near. */
                bounds_product *= last_bound > 0 ? last_bound : 1;
                if (bounds_product > 1024)
                    return "{n,m} bounds multiplying past 1024";
            }
        }
        if (quant) {
            if (prev_quant)
                return "a quantifier right after a quantifier";
            if (++count > REGEX_QUANTIFIERS_MAX)
                return "more than 16 quantifiers";
        }
        prev_quant = quant;
    }
    return NULL;
}

/* Compile r->match (r->re is then r's to regfree on success only); check
 * that target's \N name groups that exist (route.c expands \1..\9). */
static int finish_rewrite(struct om_cfg_ctx *c, struct om_rewrite_cfg *r, struct fy_node *item,
                          struct fy_node *owner)
{
    struct fy_node *match_v = NULL, *target_v = NULL;
    char msg[200];
    int ec, rc = OM_ERR_INVALID;

    om_cfg_find_key(item, "match", &match_v);
    om_cfg_find_key(item, "target", &target_v);
    if (r->match == NULL || r->target == NULL) {
        om_cfg_report(c, item, owner, "a rewrite needs match and target");
        goto done;
    }
    if (strlen(r->match) > REGEX_MAX) {
        om_cfg_report(c, match_v, item, "match is longer than %d bytes", REGEX_MAX);
        goto done;
    }
    const char *costly = regex_too_costly(r->match);
    if (costly != NULL) {
        om_cfg_report(c, match_v, item, "match is too costly to compile: %s", costly);
        goto done;
    }
    if ((ec = regcomp(&r->re, r->match, REG_EXTENDED)) != 0) {
        regerror(ec, &r->re, msg, sizeof(msg));
        om_cfg_report(c, match_v, item, "match is not a valid regular expression: %s", msg);
        goto done;
    }
    rc = OM_OK;
    for (const char *p = r->target; rc == OM_OK && *p != '\0'; p++) {
        if (p[0] == '\\' && p[1] >= '1' && p[1] <= '9' && (size_t)(p[1] - '0') > r->re.re_nsub) {
            size_t groups = r->re.re_nsub;
            regfree(&r->re);
            rc = om_cfg_report(c, target_v, item, "target refers to \\%c but match has %zu group(s)",
                               p[1], groups);
        }
    }
done:
    return rc;
}

static int h_rewrites(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    struct fy_node *item;
    void *it = NULL;
    int rc = om_cfg_want_seq(c, key, v, "rewrites");

    if (rc == OM_OK)
        om_cfg_rewrites_clear(cfg); /* a file's list replaces the defaults */
    while (rc == OM_OK && !om_cfg_is_null(v) && (item = fy_node_sequence_iterate(v, &it)) != NULL) {
        struct om_rewrite_cfg r = {0}; /* owned here until stored */
        if (cfg->n_rewrites == OM_MAX_REWRITES)
            rc = om_cfg_report(c, item, key, "at most %d rewrites", OM_MAX_REWRITES);
        else if (!fy_node_is_mapping(item))
            rc = om_cfg_report(c, item, key, "each rewrite must be a mapping (match: ..., target: ...)");
        else if ((rc = om_cfg_walk_map(c, key, item, "a rewrite", rewrite_fields,
                                       OM_ARRAY_LEN(rewrite_fields), &r)) == OM_OK)
            rc = finish_rewrite(c, &r, item, key);
        if (rc == OM_OK) {
            cfg->rewrites[cfg->n_rewrites++] = r;
        } else {
            free(r.match);
            free(r.target);
        }
    }
    return rc;
}

/* Remembered and resolved after the whole file: upstreams may come later. */
static int h_search_order(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    c->so_key = key;
    c->so_val = v;
    return om_cfg_want_seq(c, key, v, "search_order");
}

int om_cfg_finish_search_order(struct om_cfg_ctx *c, struct om_config *cfg)
{
    struct fy_node *item;
    void *it = NULL;
    char vb[80];
    int rc = OM_OK;

    cfg->n_search_order = 0;
    for (size_t i = 0; c->so_key == NULL && i < cfg->n_upstreams; i++)
        cfg->search_order[cfg->n_search_order++] = i; /* default: all, in file order */
    while (rc == OM_OK && c->so_key != NULL && !om_cfg_is_null(c->so_val) &&
           (item = fy_node_sequence_iterate(c->so_val, &it)) != NULL) {
        const struct om_upstream_cfg *u = NULL;
        const char *s = NULL;
        size_t len = 0, idx = 0;

        if ((rc = om_cfg_scalar(c, c->so_key, item, &s, &len)) != OM_OK)
            break;
        if ((u = om_config_upstream_find(cfg, s, len)) == NULL) {
            rc = om_cfg_report(c, item, c->so_key,
                               "search_order: \"%s\" is not the name or alias of an upstream",
                               om_cfg_shown(vb, sizeof(vb), s, len));
            break;
        }
        idx = (size_t)(u - cfg->upstreams);
        for (size_t j = 0; rc == OM_OK && j < cfg->n_search_order; j++) {
            if (cfg->search_order[j] == idx)
                rc = om_cfg_report(c, item, c->so_key, "search_order lists upstream \"%s\" twice",
                                   u->name);
        }
        if (rc == OM_OK)
            cfg->search_order[cfg->n_search_order++] = idx;
    }
    return rc;
}

const struct om_cfg_field om_cfg_top_fields[] = {
    STR("listen", CFG(listen), check_listen),
    {.key = "public_url", .kind = K_OPTSTR, .off = CFG(public_url), .check = check_public_url},
    FN("tls", h_tls),
    FN("admin", h_admin),
    FN("storage", h_storage),
    FN("upstreams", h_upstreams),
    FN("search_order", h_search_order),
    FN("rewrites", h_rewrites),
    NUM("tag_ttl", K_MS, CFG(tag_ttl_ms), 0, MS_MAX),
    NUM("negative_ttl", K_MS, CFG(negative_ttl_ms), 0, MS_MAX),
    FN("retries", h_retries),
    FN("log", h_log),
    FN("limits", h_limits),
    FN("prefetch", h_prefetch),
};

const size_t om_cfg_n_top_fields = OM_ARRAY_LEN(om_cfg_top_fields);
