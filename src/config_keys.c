/* config_keys.c — what each config key means: one `struct om_cfg_field`
 * table per YAML mapping, the handlers for values that need more than a
 * type check, and the checks that span several keys.
 *
 *   top level   listen tls storage upstreams search_order rewrites tag_ttl
 *               negative_ttl retries log limits
 *   tls         cert key                      (both or neither)
 *   storage     path
 *   upstream    name url aliases ca_file insecure_skip_verify username
 *               password password_file proxy  (name+url required; password
 *               or password_file; names/aliases unique across upstreams)
 *   rewrite     match target                  (regex compiles; \N exists)
 *   retries     max backoff
 *   log         level format
 *   limits      max_connections max_header_bytes max_url_bytes
 *               max_manifest_bytes connection_timeout idle_timeout
 *               shutdown_grace threads max_downloads
 *
 * Lists from the file replace the defaults (upstreams, rewrites); a missing
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
#include "config_int.h"

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
    return name_ok(s, false) ? NULL : "must be a lowercase registry host name (e.g. quay.io)";
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
static const struct om_cfg_field storage_fields[] = {
    STR("path", CFG(storage_path), NULL),
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
    NUM("connection_timeout", K_MS, CFG(limits.connection_timeout_ms), 1, MS_MAX),
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
SUBMAP(h_storage, "storage", storage_fields)
SUBMAP(h_retries, "retries", retries_fields)
SUBMAP(h_log, "log", log_fields)
SUBMAP(h_limits, "limits", limits_fields)

/* u->password = the contents of u->password_file, trailing newlines cut. */
static int read_password(struct om_cfg_ctx *c, struct om_upstream_cfg *u, struct fy_node *at)
{
    char *buf = NULL; /* owned here until handed to u->password */
    size_t len = 0;
    const char *why = NULL;
    char vb[80];
    int rc = om_cfg_slurp(u->password_file, OM_PASSWORD_FILE_MAX, &buf, &len, &why);

    om_cfg_shown(vb, sizeof(vb), u->password_file, strlen(u->password_file));
    if (rc == OM_ERR_TOOBIG)
        rc = om_cfg_report(c, at, NULL, "password_file \"%s\" is larger than %d bytes", vb,
                           OM_PASSWORD_FILE_MAX);
    else if (rc == OM_ERR_IO)
        rc = om_cfg_report(c, at, NULL, "cannot read password_file \"%s\": %s", vb, why);
    if (rc != OM_OK)
        goto done;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    if (len == 0 || memchr(buf, '\0', len) != NULL) {
        rc = om_cfg_report(c, at, NULL, "password_file \"%s\" is empty or holds a NUL byte", vb);
        goto done;
    }
    u->password = buf;
    buf = NULL;
done:
    if (buf != NULL)
        explicit_bzero(buf, len);
    free(buf);
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
        rc = read_password(c, u, pwf_v);
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
    FN("tls", h_tls),
    FN("storage", h_storage),
    FN("upstreams", h_upstreams),
    FN("search_order", h_search_order),
    FN("rewrites", h_rewrites),
    NUM("tag_ttl", K_MS, CFG(tag_ttl_ms), 0, MS_MAX),
    NUM("negative_ttl", K_MS, CFG(negative_ttl_ms), 0, MS_MAX),
    FN("retries", h_retries),
    FN("log", h_log),
    FN("limits", h_limits),
};

const size_t om_cfg_n_top_fields = OM_ARRAY_LEN(om_cfg_top_fields);
