/* config_upstreams.c — the config keys that say where images come from:
 * the upstream registries (name, url or urls, aliases, TLS, proxy,
 * credentials: one account, or a pool of them),
 * the rewrites that map a request's name onto one of them, and the
 * search_order for names that name none.  Reached through the top-level
 * table in config_keys.c, whose opening comment lists every key with what
 * is checked across keys.
 *
 * What a config that parses promises here:
 *   - every upstream has a name and a url — `url`, or `urls` (1 to
 *     OM_MAX_UPSTREAM_URLS endpoints tried in order, each checked like
 *     `url`, none twice; not both keys); urls[0] is then also `url`; its
 *     name is a valid first
 *     component of canonical names, and no name or alias belongs to two
 *     upstreams (case-insensitively), so a request name picks at most one;
 *   - a url is http(s)://host[/path] without credentials, query or fragment
 *     (it is logged), stored without a trailing slash;
 *   - password or password_file, not both; the file is read here, once;
 *   - credentials (a pool): 1 to OM_MAX_CREDENTIALS accounts, each a
 *     username (printable, no ':' — it is a Basic user and a metrics
 *     label — unique in the pool, case-insensitively) and password or
 *     password_file; not together with username/password;
 *   - a rewrite's match compiles (REG_EXTENDED), is short, and has no
 *     stacked or excessive quantifiers (glibc's regcomp could take minutes);
 *     its target names only groups the match has (route.c expands \1..\9);
 *   - search_order names each upstream at most once; it is resolved after
 *     the whole document (upstreams may come later in the file), and is
 *     "every upstream in order" when absent.
 *
 * If you add a key to an upstream or a rewrite: add its row to
 * upstream_fields or rewrite_fields here, then follow the list at the top
 * of config_keys.c.
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

/* ---- names and URLs ----------------------------------------------------- */

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

    if (rest == NULL || host_len == 0 || om_cfg_has_ctl(s) || memchr(rest, '@', host_len) != NULL ||
        strpbrk(s, "?#") != NULL)
        why = "must be http:// or https:// and a host, with no user:password@, query or "
              "fragment";
    else if (n > OM_UPSTREAM_URL_MAX)
        why = "is longer than 1024 bytes";
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

/* `urls: [..]`: every endpoint of the upstream, in the order tried. */
static int h_up_urls(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_upstream_cfg *u = obj;
    struct fy_node *item;
    void *it = NULL;
    char vb[80];
    const char *why;
    int rc = om_cfg_want_seq(c, key, v, "urls");

    for (size_t i = 0; rc == OM_OK && i < u->n_urls; i++) {
        free(u->urls[i]);
        u->urls[i] = NULL;
    }
    if (rc == OM_OK)
        u->n_urls = 0;
    if (rc == OM_OK && (om_cfg_is_null(v) || fy_node_sequence_item_count(v) == 0))
        rc = om_cfg_report(c, v, key, "urls must list at least one URL");
    while (rc == OM_OK && (item = fy_node_sequence_iterate(v, &it)) != NULL) {
        char **slot = &u->urls[u->n_urls];
        if (u->n_urls == OM_MAX_UPSTREAM_URLS) {
            rc = om_cfg_report(c, item, key, "at most %d urls", OM_MAX_UPSTREAM_URLS);
            break;
        }
        if ((rc = om_cfg_scalar_dup(c, key, item, slot)) != OM_OK)
            break;
        u->n_urls++; /* the upstream owns *slot now */
        if ((why = check_url(*slot)) != NULL) {
            rc = om_cfg_report(c, item, key, "url \"%s\" %s",
                               om_cfg_shown(vb, sizeof(vb), *slot, strlen(*slot)), why);
            break;
        }
        for (size_t j = 0; rc == OM_OK && j + 1 < u->n_urls; j++) {
            if (strcasecmp(u->urls[j], *slot) == 0)
                rc = om_cfg_report(c, item, key, "url \"%s\" is listed twice",
                                   om_cfg_shown(vb, sizeof(vb), *slot, strlen(*slot)));
        }
    }
    if (rc == OM_OK)
        u->urls_listed = true;
    return rc;
}

/* A pool account's username goes into Basic credentials (no ':') and
 * into metrics labels and logs (printable, bounded). */
static const char *check_username(char *s)
{
    return strlen(s) <= OM_CREDENTIAL_USER_MAX && !om_cfg_has_ctl(s) && strchr(s, ':') == NULL
               ? NULL
               : "must be at most 255 printable bytes without blanks or ':'";
}

static const struct om_cfg_field credential_fields[] = {
    STR("username", CR(username), check_username),
    OPTSTR("password", CR(password)),
    OPTSTR("password_file", CR(password_file)),
};

/* `credentials: [{username, password | password_file}, ..]`. */
static int h_up_credentials(struct om_cfg_ctx *c, void *obj, struct fy_node *key,
                            struct fy_node *v)
{
    struct om_upstream_cfg *u = obj;
    struct fy_node *item;
    void *it = NULL;
    char vb[80];
    int rc = om_cfg_want_seq(c, key, v, "credentials");

    if (rc == OM_OK && (om_cfg_is_null(v) || fy_node_sequence_item_count(v) == 0))
        rc = om_cfg_report(c, v, key, "credentials must list at least one account");
    while (rc == OM_OK && (item = fy_node_sequence_iterate(v, &it)) != NULL) {
        struct fy_node *pwf_v = NULL, *pwf_k;
        if (u->n_credentials == OM_MAX_CREDENTIALS) {
            rc = om_cfg_report(c, item, key, "at most %d credentials", OM_MAX_CREDENTIALS);
            break;
        }
        if (!fy_node_is_mapping(item)) {
            rc = om_cfg_report(c, item, key,
                               "each credential must be a mapping (username: ..., password_file: ...)");
            break;
        }
        /* counted first so that om_config_free() releases a half-read one */
        struct om_credential_cfg *cr = &u->credentials[u->n_credentials++];
        if ((rc = om_cfg_walk_map(c, key, item, "a credential", credential_fields,
                                  OM_ARRAY_LEN(credential_fields), cr)) != OM_OK)
            break;
        pwf_k = om_cfg_find_key(item, "password_file", &pwf_v);
        if (cr->username == NULL)
            rc = om_cfg_report(c, item, key, "a credential needs a username");
        else if (cr->password != NULL && cr->password_file != NULL)
            rc = om_cfg_report(c, pwf_k, item,
                               "credential \"%s\": give password or password_file, not both",
                               om_cfg_shown(vb, sizeof(vb), cr->username, strlen(cr->username)));
        else if (cr->password == NULL && cr->password_file == NULL)
            rc = om_cfg_report(c, item, key, "credential \"%s\" needs a password or password_file",
                               om_cfg_shown(vb, sizeof(vb), cr->username, strlen(cr->username)));
        else if (cr->password_file != NULL)
            rc = om_cfg_read_secret(c, cr->password_file, OM_PASSWORD_FILE_MAX, "password_file",
                                    false, pwf_v, &cr->password);
        for (size_t j = 0; rc == OM_OK && j + 1 < u->n_credentials; j++) {
            if (strcasecmp(u->credentials[j].username, cr->username) == 0)
                rc = om_cfg_report(c, item, key, "credential \"%s\" is listed twice",
                                   om_cfg_shown(vb, sizeof(vb), cr->username,
                                                strlen(cr->username)));
        }
    }
    return rc;
}

/* ---- the tables --------------------------------------------------------- */

static const struct om_cfg_field upstream_fields[] = {
    STR("name", UP(name), check_name),
    STR("url", UP(url), check_url),
    FN("urls", h_up_urls),
    FN("aliases", h_up_aliases),
    OPTSTR("ca_file", UP(ca_file)),
    {.key = "insecure_skip_verify", .kind = K_BOOL, .off = UP(insecure_skip_verify)},
    OPTSTR("username", UP(username)),
    OPTSTR("password", UP(password)),
    OPTSTR("password_file", UP(password_file)),
    FN("credentials", h_up_credentials),
    OPTSTR("proxy", UP(proxy)),
};
static const struct om_cfg_field rewrite_fields[] = {
    STR("match", RW(match), NULL),
    STR("target", RW(target), NULL),
};

/* ---- upstreams ----------------------------------------------------------- */

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
    struct fy_node *name_v = NULL, *aliases_v = NULL, *pwf_v = NULL, *pwf_k, *urls_k, *creds_k;
    int rc = OM_OK;

    om_cfg_find_key(item, "name", &name_v);
    om_cfg_find_key(item, "aliases", &aliases_v);
    pwf_k = om_cfg_find_key(item, "password_file", &pwf_v);
    urls_k = om_cfg_find_key(item, "urls", NULL);
    creds_k = om_cfg_find_key(item, "credentials", NULL);
    if (u->name == NULL)
        rc = om_cfg_report(c, item, owner, "an upstream needs a name");
    else if (u->url != NULL && u->n_urls > 0)
        rc = om_cfg_report(c, urls_k, item, "upstream \"%s\": give url or urls, not both",
                           u->name);
    else if (u->url == NULL && u->n_urls == 0)
        rc = om_cfg_report(c, item, owner, "upstream \"%s\" needs a url", u->name);
    else if (u->n_credentials > 0 &&
             (u->username != NULL || u->password != NULL || u->password_file != NULL))
        rc = om_cfg_report(c, creds_k, item,
                           "upstream \"%s\": give username/password or credentials, not both",
                           u->name);
    else if (u->password != NULL && u->password_file != NULL)
        rc = om_cfg_report(c, pwf_k, item,
                           "upstream \"%s\": give password or password_file, not both", u->name);
    else if (u->password_file != NULL)
        rc = om_cfg_read_secret(c, u->password_file, OM_PASSWORD_FILE_MAX, "password_file",
                                false, pwf_v, &u->password);
    if (rc == OM_OK && u->n_urls == 0 && (u->urls[0] = strdup(u->url)) != NULL)
        u->n_urls = 1;
    else if (rc == OM_OK && u->url == NULL)
        u->url = strdup(u->urls[0]);
    if (rc == OM_OK && (u->url == NULL || u->n_urls == 0))
        rc = om_cfg_report(c, item, owner, "out of memory");
    for (size_t t = 0; rc == OM_OK && t <= u->n_aliases; t++) {
        struct fy_node *at = t == 0 ? name_v : om_cfg_seq_item(aliases_v, t - 1);
        rc = check_token(c, cfg, i, t, at, item);
    }
    if (rc == OM_OK)
        u->is_docker_hub = om_cfg_upstream_has(u, "docker.io", strlen("docker.io"));
    return rc;
}

int om_cfg_h_upstreams(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
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

/* ---- rewrites ------------------------------------------------------------ */

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

int om_cfg_h_rewrites(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
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

/* ---- search_order -------------------------------------------------------- */

/* Remembered and resolved after the whole file: upstreams may come later. */
int om_cfg_h_search_order(struct om_cfg_ctx *c, void *obj, struct fy_node *key,
                          struct fy_node *v)
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
