/* config.c — the struct om_config itself: embedded defaults, loading a file
 * (the YAML side is config_yaml.c), command-line overrides, the dump, the
 * upstream lookup, and freeing.  See config.h for the lifecycle and
 * config_int.h for how the module is split across files.
 *
 * Ownership: the struct owns every string in it (strdup'd), the compiled
 * regexes in rewrites[0..n_rewrites), the password read from a
 * password_file, the admin token, the cluster.* secrets and the S3 secret
 * key; om_config_free() releases all of it and wipes passwords, the token
 * and the secret keys first so they don't linger in freed heap memory.
 *
 * The dump is YAML that om_config_parse() reads back to the same struct,
 * except secrets: a password, the admin token or the S3 secret key prints
 * as "<redacted>" (a password_file, token_file or secret_key_file prints
 * as its path) and user:password@ in a
 * proxy URL as <redacted>@.  Every
 * string is double-quoted with escapes, so no value can break the YAML.
 *
 * If you add a key: set its default in fill_defaults(), print it in
 * om_config_dump(), and see config_keys.c for the rest.
 */
#include "core/config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORAGE_PATH_MAX OM_STORAGE_PATH_MAX

struct default_upstream {
    const char *name, *url;
    const char *aliases[3];
};

/* The public registries this mirror exists for; search order = this order. */
static const struct default_upstream default_upstreams[] = {
    {"docker.io", "https://registry-1.docker.io",
     {"docker.io", "index.docker.io", "registry-1.docker.io"}},
    {"registry.k8s.io", "https://registry.k8s.io", {"k8s.gcr.io", NULL, NULL}},
    {"gcr.io", "https://gcr.io", {NULL, NULL, NULL}},
    {"quay.io", "https://quay.io", {NULL, NULL, NULL}},
    {"ghcr.io", "https://ghcr.io", {NULL, NULL, NULL}},
};

/* What most clusters run on; an index's other platforms are not fetched. */
static const char *const default_platforms[] = {"linux/amd64", "linux/arm64"};

/* kubeadm pulls a bare "coredns" that only exists on registry.k8s.io. */
#define DEFAULT_REWRITE_MATCH "^coredns$"
#define DEFAULT_REWRITE_TARGET "registry.k8s.io/coredns/coredns"

/* *dst = strdup(s) (NULL stays NULL), freeing the old value. */
static int dup_str(char **dst, const char *s)
{
    char *p = NULL;
    int rc = OM_ERR_NOMEM;

    if (s != NULL && (p = strdup(s)) == NULL)
        goto done;
    free(*dst);
    *dst = p;
    rc = OM_OK;
done:
    return rc;
}

static int fill_defaults(struct om_config *cfg)
{
    struct om_rewrite_cfg *r = &cfg->rewrites[0];
    int rc = OM_ERR_NOMEM;

    if (dup_str(&cfg->listen, "0.0.0.0:5000") != OM_OK ||
        dup_str(&cfg->storage_path, "./ocimirror-data") != OM_OK ||
        dup_str(&cfg->source, "<embedded defaults>") != OM_OK)
        goto done;
    cfg->access_anonymous = true;
    for (size_t i = 0; i < OM_ARRAY_LEN(default_upstreams); i++) {
        const struct default_upstream *d = &default_upstreams[i];
        struct om_upstream_cfg *u = &cfg->upstreams[cfg->n_upstreams++];
        if (dup_str(&u->name, d->name) != OM_OK || dup_str(&u->url, d->url) != OM_OK ||
            dup_str(&u->urls[0], d->url) != OM_OK)
            goto done;
        u->n_urls = 1;
        for (size_t a = 0; a < OM_ARRAY_LEN(d->aliases) && d->aliases[a] != NULL; a++) {
            if (dup_str(&u->aliases[u->n_aliases++], d->aliases[a]) != OM_OK)
                goto done;
        }
        u->is_docker_hub = om_cfg_upstream_has(u, "docker.io", strlen("docker.io"));
        cfg->search_order[cfg->n_search_order++] = i;
    }
    if (dup_str(&r->match, DEFAULT_REWRITE_MATCH) != OM_OK ||
        dup_str(&r->target, DEFAULT_REWRITE_TARGET) != OM_OK)
        goto done;
    if (regcomp(&r->re, r->match, REG_EXTENDED) != 0)
        goto done; /* only REG_ESPACE can happen here */
    cfg->n_rewrites = 1;
    for (size_t i = 0; i < OM_ARRAY_LEN(default_platforms); i++) {
        if (dup_str(&cfg->prefetch_platforms[i], default_platforms[i]) != OM_OK)
            goto done; /* the ones before it are counted: om_config_free() */
        cfg->n_prefetch_platforms = i + 1;
    }
    cfg->storage_max_size = 0; /* unlimited */
    cfg->storage_high_water = 90;
    cfg->storage_low_water = 80;
    cfg->gc_interval_ms = 10 * 60 * 1000;
    if (om_cfg_storage_defaults(cfg) != OM_OK)
        goto done;
    cfg->prefetch_interval_ms = 6 * 3600 * 1000;
    cfg->prefetch_retries = 3;
    cfg->prefetch_retry_interval_ms = 5 * 60 * 1000;
    cfg->tag_ttl_ms = 5 * 60 * 1000;
    cfg->negative_ttl_ms = 60 * 1000;
    cfg->cluster_lease_ms = 10 * 1000;
    cfg->retries_max = 3;
    cfg->retries_backoff_ms = 500;
    cfg->log_level = OM_LOG_INFO;
    cfg->log_format = OM_LOG_TEXT;
    cfg->limits = (struct om_limits){
        .max_connections = 4096,
        .max_header_bytes = 16 * 1024,
        .max_url_bytes = 4 * 1024,
        .max_manifest_bytes = OM_MANIFEST_MAX_DEFAULT,
        .connection_timeout_ms = 60 * 1000,
        .header_timeout_ms = 30 * 1000,
        .idle_timeout_ms = 300 * 1000,
        .shutdown_grace_ms = 30 * 1000,
        .threads = 0,
        .max_downloads = 64,
        .max_downloads_per_upstream = 0,
        .jobs_per_upstream = 16,
        .revalidate_timeout_ms = 5 * 1000,
        .max_blob_size = 0,
        .max_tags = 100000,
        .max_clients = 100000,
    };
    rc = OM_OK;
done:
    if (rc != OM_OK && cfg->n_rewrites == 0) { /* regex not compiled */
        free(r->match);
        free(r->target);
        r->match = r->target = NULL;
    }
    return rc;
}

int om_config_default(struct om_config **out)
{
    struct om_config *cfg = calloc(1, sizeof(*cfg)); /* owned here until *out */
    int rc = OM_ERR_NOMEM;

    *out = NULL;
    if (cfg == NULL)
        goto done;
    if ((rc = fill_defaults(cfg)) != OM_OK)
        goto done;
    *out = cfg;
    cfg = NULL;
done:
    om_config_free(cfg);
    return rc;
}

int om_cfg_slurp(const char *path, size_t max, char **out, size_t *outlen, const char **why)
{
    int rc = OM_ERR_IO;
    int fd = -1;
    char *buf = NULL; /* owned here until handed to *out */
    size_t len = 0;
    struct stat st;

    *why = NULL;
    /* O_NONBLOCK: opening a FIFO by mistake must not hang start-up. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0) {
        *why = strerror(errno); /* start-up is single-threaded */
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        *why = "not a regular file";
        goto done;
    }
    if ((buf = malloc(max + 2)) == NULL) {
        rc = OM_ERR_NOMEM;
        goto done;
    }
    while (len <= max) { /* read one byte past max to see a file too big */
        ssize_t n = read(fd, buf + len, max + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *why = strerror(errno);
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max) {
        rc = OM_ERR_TOOBIG;
        *why = "file too large";
        goto done;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    buf = NULL;
    rc = OM_OK;
done:
    if (buf != NULL)
        explicit_bzero(buf, max + 2); /* may hold a secret */
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

int om_config_load(struct om_config **out, const char *path, char *err, size_t errlen)
{
    char *buf = NULL; /* the file's text, owned here */
    size_t len = 0;
    const char *why = NULL;
    int rc;

    *out = NULL;
    rc = om_cfg_slurp(path, OM_CONFIG_MAX_BYTES, &buf, &len, &why);
    if (rc == OM_ERR_TOOBIG) {
        rc = OM_ERR_INVALID;
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: larger than %d bytes", path, OM_CONFIG_MAX_BYTES);
    } else if (rc != OM_OK) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: cannot read: %s", path, why != NULL ? why : "out of memory");
    } else {
        rc = om_config_parse(out, buf, len, path, err, errlen);
    }
    free(buf);
    return rc;
}

int om_config_set_listen(struct om_config *cfg, const char *listen)
{
    char host[256];
    unsigned port = 0;
    int rc = OM_ERR_INVALID;

    if (cfg != NULL && om_parse_listen(listen, host, sizeof(host), &port) == OM_OK)
        rc = dup_str(&cfg->listen, listen);
    return rc;
}

int om_config_set_storage(struct om_config *cfg, const char *path)
{
    int rc = OM_ERR_INVALID;

    if (cfg != NULL && path != NULL && path[0] != '\0' &&
        strnlen(path, STORAGE_PATH_MAX + 1) <= STORAGE_PATH_MAX)
        rc = dup_str(&cfg->storage_path, path);
    return rc;
}

bool om_cfg_upstream_has(const struct om_upstream_cfg *u, const char *s, size_t len)
{
    bool found = u->name != NULL && strlen(u->name) == len && strncasecmp(u->name, s, len) == 0;

    for (size_t i = 0; !found && i < u->n_aliases; i++)
        found = strlen(u->aliases[i]) == len && strncasecmp(u->aliases[i], s, len) == 0;
    return found;
}

const struct om_upstream_cfg *om_config_upstream_find(const struct om_config *cfg,
                                                      const char *name, size_t len)
{
    const struct om_upstream_cfg *found = NULL;

    for (size_t i = 0; cfg != NULL && name != NULL && found == NULL && i < cfg->n_upstreams; i++) {
        if (om_cfg_upstream_has(&cfg->upstreams[i], name, len))
            found = &cfg->upstreams[i];
    }
    return found;
}

/* ---- dump --------------------------------------------------------------- */

/* s[0..len) inside a YAML double-quoted string: escape \ " and controls;
 * bytes >= 0x80 stay as they are (UTF-8 text). */
static void put_escaped(FILE *f, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\x%02x", ch);
        else
            fputc(ch, f);
    }
}

static void put_str(FILE *f, const char *s)
{
    fputc('"', f);
    put_escaped(f, s, strlen(s));
    fputc('"', f);
}

/* `indent key: "value"` — nothing when value is NULL (not set). */
static void put_kv(FILE *f, const char *indent, const char *key, const char *s)
{
    if (s != NULL) {
        fprintf(f, "%s%s: ", indent, key);
        put_str(f, s);
        fputc('\n', f);
    }
}

static void put_ms(FILE *f, const char *indent, const char *key, uint64_t ms)
{
    char buf[32];

    om_format_duration_ms(ms, buf, sizeof(buf));
    fprintf(f, "%s%s: \"%s\"\n", indent, key, buf);
}

static void put_size(FILE *f, const char *indent, const char *key, uint64_t n)
{
    char buf[32];

    om_format_size(n, buf, sizeof(buf));
    fprintf(f, "%s%s: \"%s\"\n", indent, key, buf);
}

/* A proxy URL may carry user:password@: print <redacted>@ instead. */
static void put_proxy(FILE *f, const char *proxy)
{
    const char *auth = strstr(proxy, "://");
    const char *start = auth != NULL ? auth + 3 : proxy;
    size_t host_len = strcspn(start, "/");
    const char *at = memrchr(start, '@', host_len);

    if (at == NULL) {
        put_kv(f, "    ", "proxy", proxy);
    } else {
        fputs("    proxy: \"", f);
        put_escaped(f, proxy, (size_t)(start - proxy));
        fputs("<redacted>", f);
        put_escaped(f, at, strlen(at));
        fputs("\"\n", f);
    }
}

/* cluster.redis may carry [USER]:PASSWORD@: print :<redacted>@ (the user
 * stays, it is not a secret). */
static void put_redis_url(FILE *f, const char *url)
{
    const char *start = strstr(url, "://");
    const char *auth = start != NULL ? start + 3 : url;
    size_t alen = strcspn(auth, "/");
    const char *at = memrchr(auth, '@', alen);
    const char *colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;

    if (colon == NULL) {
        put_kv(f, "  ", "redis", url);
    } else {
        fputs("  redis: \"", f);
        put_escaped(f, url, (size_t)(colon - url));
        fputs(":<redacted>", f);
        put_escaped(f, at, strlen(at));
        fputs("\"\n", f);
    }
}

/* Secrets never printed: the files they came from are. */
static void dump_cluster(FILE *f, const struct om_config *cfg)
{
    if (cfg->cluster_redis == NULL)
        return;
    fputs("cluster:\n", f);
    put_redis_url(f, cfg->cluster_redis);
    put_kv(f, "  ", "redis_password_file", cfg->cluster_redis_password_file);
    put_kv(f, "  ", "peer_url", cfg->cluster_peer_url);
    put_kv(f, "  ", "peer_token_file", cfg->cluster_peer_token_file);
    put_ms(f, "  ", "lease", cfg->cluster_lease_ms);
}

static void dump_pattern_list(FILE *f, const char *key, char *const *l, size_t n)
{
    fprintf(f, n == 0 ? "  %s: []\n" : "  %s:\n", key);
    for (size_t i = 0; i < n; i++) {
        fputs("    - ", f);
        put_str(f, l[i]);
        fputc('\n', f);
    }
}

static void dump_access_policy(FILE *f, const struct om_config *cfg)
{
    fprintf(f, "access:\n  anonymous: %s\n", cfg->access_anonymous ? "true" : "false");
    put_kv(f, "  ", "htpasswd_file", cfg->access_htpasswd_file);
    fputs("policy:\n", f);
    dump_pattern_list(f, "allow", cfg->policy_allow, cfg->n_policy_allow);
    dump_pattern_list(f, "deny", cfg->policy_deny, cfg->n_policy_deny);
}

static void dump_upstream(FILE *f, const struct om_upstream_cfg *u)
{
    fputs("  - ", f);
    put_kv(f, "", "name", u->name);
    if (u->urls_listed) {
        fputs("    urls: [", f);
        for (size_t i = 0; i < u->n_urls; i++) {
            fputs(i > 0 ? ", " : "", f);
            put_str(f, u->urls[i]);
        }
        fputs("]\n", f);
    } else {
        put_kv(f, "    ", "url", u->url);
    }
    fputs("    aliases: [", f);
    for (size_t a = 0; a < u->n_aliases; a++) {
        fputs(a > 0 ? ", " : "", f);
        put_str(f, u->aliases[a]);
    }
    fputs("]\n", f);
    put_kv(f, "    ", "ca_file", u->ca_file);
    fprintf(f, "    insecure_skip_verify: %s\n", u->insecure_skip_verify ? "true" : "false");
    put_kv(f, "    ", "username", u->username);
    if (u->password_file != NULL)
        put_kv(f, "    ", "password_file", u->password_file);
    else if (u->password != NULL)
        fputs("    password: \"<redacted>\"\n", f);
    if (u->n_credentials > 0)
        fputs("    credentials:\n", f);
    for (size_t i = 0; i < u->n_credentials; i++) {
        const struct om_credential_cfg *cr = &u->credentials[i];
        fputs("      - ", f);
        put_kv(f, "", "username", cr->username);
        if (cr->password_file != NULL)
            put_kv(f, "        ", "password_file", cr->password_file);
        else
            fputs("        password: \"<redacted>\"\n", f);
    }
    if (u->proxy != NULL)
        put_proxy(f, u->proxy);
}

/* storage.s3, the secret key as "<redacted>" (a key file as its path). */
static void dump_s3(FILE *f, const struct om_s3_cfg *s3)
{
    fputs("  s3:\n", f);
    put_kv(f, "    ", "endpoint", s3->endpoint);
    put_kv(f, "    ", "region", s3->region);
    put_kv(f, "    ", "bucket", s3->bucket);
    put_kv(f, "    ", "prefix", s3->prefix);
    if (s3->access_key_file != NULL)
        put_kv(f, "    ", "access_key_file", s3->access_key_file);
    else
        put_kv(f, "    ", "access_key", s3->access_key);
    if (s3->secret_key_file != NULL)
        put_kv(f, "    ", "secret_key_file", s3->secret_key_file);
    else if (s3->secret_key != NULL)
        fputs("    secret_key: \"<redacted>\"\n", f);
    fprintf(f, "    path_style: %s\n", s3->path_style ? "true" : "false");
    put_kv(f, "    ", "ca_file", s3->ca_file);
    put_size(f, "    ", "part_size", s3->part_size);
}

void om_config_dump(const struct om_config *cfg, FILE *f)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    const struct om_limits *l = &cfg->limits;

    fputs("# ocimirror configuration in effect, from ", f);
    put_str(f, cfg->source != NULL ? cfg->source : "?");
    fputs("\n", f);
    put_kv(f, "", "listen", cfg->listen);
    put_kv(f, "", "public_url", cfg->public_url);
    if (cfg->tls_cert != NULL || cfg->tls_key != NULL) {
        fputs("tls:\n", f);
        put_kv(f, "  ", "cert", cfg->tls_cert);
        put_kv(f, "  ", "key", cfg->tls_key);
    }
    fputs("admin:\n", f);
    if (cfg->admin_token_file != NULL)
        put_kv(f, "  ", "token_file", cfg->admin_token_file);
    else if (cfg->admin_token != NULL)
        fputs("  token: \"<redacted>\"\n", f);
    fprintf(f, "  protect_reads: %s\n", cfg->admin_protect_reads ? "true" : "false");
    fputs("storage:\n", f);
    put_kv(f, "  ", "path", cfg->storage_path);
    put_size(f, "  ", "max_size", cfg->storage_max_size);
    fprintf(f, "  high_water: %u\n  low_water: %u\n", cfg->storage_high_water,
            cfg->storage_low_water);
    put_ms(f, "  ", "gc_interval", cfg->gc_interval_ms);
    fprintf(f, "  backend: %s\n  redirect: %s\n",
            cfg->storage_backend == OM_STORAGE_S3 ? "s3" : "fs",
            cfg->storage_redirect ? "true" : "false");
    put_ms(f, "  ", "redirect_ttl", cfg->storage_redirect_ttl_ms);
    if (cfg->storage_backend == OM_STORAGE_S3)
        dump_s3(f, &cfg->storage_s3);
    fputs("upstreams:\n", f);
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        dump_upstream(f, &cfg->upstreams[i]);
    fputs("search_order: [", f);
    for (size_t i = 0; i < cfg->n_search_order; i++) {
        fputs(i > 0 ? ", " : "", f);
        put_str(f, cfg->upstreams[cfg->search_order[i]].name);
    }
    fputs("]\n", f);
    fputs(cfg->n_rewrites == 0 ? "rewrites: []\n" : "rewrites:\n", f);
    for (size_t i = 0; i < cfg->n_rewrites; i++) {
        put_kv(f, "  - ", "match", cfg->rewrites[i].match);
        put_kv(f, "    ", "target", cfg->rewrites[i].target);
    }
    put_ms(f, "", "tag_ttl", cfg->tag_ttl_ms);
    put_ms(f, "", "negative_ttl", cfg->negative_ttl_ms);
    fprintf(f, "retries:\n  max: %u\n", cfg->retries_max);
    put_ms(f, "  ", "backoff", cfg->retries_backoff_ms);
    fprintf(f, "log:\n  level: %s\n  format: %s\n",
            (unsigned)cfg->log_level < OM_ARRAY_LEN(levels) ? levels[cfg->log_level] : "info",
            cfg->log_format == OM_LOG_JSON ? "json" : "text");
    fprintf(f, "limits:\n  max_connections: %u\n", l->max_connections);
    put_size(f, "  ", "max_header_bytes", l->max_header_bytes);
    put_size(f, "  ", "max_url_bytes", l->max_url_bytes);
    put_size(f, "  ", "max_manifest_bytes", l->max_manifest_bytes);
    fprintf(f, "  max_connections_per_ip: %u\n", l->max_connections_per_ip);
    put_ms(f, "  ", "connection_timeout", l->connection_timeout_ms);
    put_ms(f, "  ", "header_timeout", l->header_timeout_ms);
    put_ms(f, "  ", "idle_timeout", l->idle_timeout_ms);
    put_ms(f, "  ", "shutdown_grace", l->shutdown_grace_ms);
    fprintf(f, "  threads: %u\n  max_downloads: %u\n", l->threads, l->max_downloads);
    fprintf(f, "  max_downloads_per_upstream: %u\n  jobs_per_upstream: %u\n",
            l->max_downloads_per_upstream, l->jobs_per_upstream);
    put_ms(f, "  ", "revalidate_timeout", l->revalidate_timeout_ms);
    put_size(f, "  ", "max_blob_size", l->max_blob_size);
    fprintf(f, "  max_tags: %u\n", l->max_tags);
    om_cfg_limits_dump(f, l);
    fputs(cfg->n_prefetch_images == 0 ? "prefetch:\n  images: []\n" : "prefetch:\n  images:\n", f);
    for (size_t i = 0; i < cfg->n_prefetch_images; i++) {
        fputs("    - ", f);
        put_str(f, cfg->prefetch_images[i]);
        fputc('\n', f);
    }
    fputs("  platforms: [", f);
    for (size_t i = 0; i < cfg->n_prefetch_platforms; i++) {
        fputs(i > 0 ? ", " : "", f);
        put_str(f, cfg->prefetch_platforms[i]);
    }
    fputs("]\n", f);
    put_ms(f, "  ", "interval", cfg->prefetch_interval_ms);
    fprintf(f, "  retries: %u\n", cfg->prefetch_retries);
    put_ms(f, "  ", "retry_interval", cfg->prefetch_retry_interval_ms);
    dump_cluster(f, cfg);
    dump_access_policy(f, cfg);
}

/* ---- free --------------------------------------------------------------- */

void om_cfg_upstream_clear(struct om_upstream_cfg *u)
{
    free(u->name);
    free(u->url);
    for (size_t i = 0; i < u->n_urls; i++)
        free(u->urls[i]);
    for (size_t i = 0; i < u->n_aliases; i++)
        free(u->aliases[i]);
    for (size_t i = 0; i < u->n_credentials; i++) {
        struct om_credential_cfg *cr = &u->credentials[i];
        free(cr->username);
        if (cr->password != NULL)
            explicit_bzero(cr->password, strlen(cr->password));
        free(cr->password);
        free(cr->password_file);
    }
    free(u->ca_file);
    free(u->username);
    if (u->password != NULL)
        explicit_bzero(u->password, strlen(u->password));
    free(u->password);
    free(u->password_file);
    free(u->proxy);
    memset(u, 0, sizeof(*u));
}

void om_cfg_rewrites_clear(struct om_config *cfg)
{
    for (size_t i = 0; i < cfg->n_rewrites; i++) {
        free(cfg->rewrites[i].match);
        free(cfg->rewrites[i].target);
        regfree(&cfg->rewrites[i].re);
    }
    cfg->n_rewrites = 0;
}

/* Wipe, then free (a password, a token, a URL that may hold a password). */
static void free_secret(char *s)
{
    if (s != NULL)
        explicit_bzero(s, strlen(s));
    free(s);
}

void om_config_free(struct om_config *cfg)
{
    if (cfg != NULL) {
        free(cfg->listen);
        free(cfg->tls_cert);
        free(cfg->tls_key);
        free(cfg->storage_path);
        om_cfg_storage_clear(cfg);
        free(cfg->public_url);
        if (cfg->admin_token != NULL)
            explicit_bzero(cfg->admin_token, strlen(cfg->admin_token));
        free(cfg->admin_token);
        free(cfg->admin_token_file);
        free_secret(cfg->cluster_redis);
        free_secret(cfg->cluster_redis_password);
        free(cfg->cluster_redis_password_file);
        free(cfg->cluster_peer_url);
        free_secret(cfg->cluster_peer_token);
        free(cfg->cluster_peer_token_file);
        for (size_t i = 0; i < cfg->n_prefetch_images; i++)
            free(cfg->prefetch_images[i]);
        for (size_t i = 0; i < cfg->n_prefetch_platforms; i++)
            free(cfg->prefetch_platforms[i]);
        free(cfg->access_htpasswd_file);
        for (size_t i = 0; i < cfg->n_policy_allow; i++)
            free(cfg->policy_allow[i]);
        for (size_t i = 0; i < cfg->n_policy_deny; i++)
            free(cfg->policy_deny[i]);
        free(cfg->source);
        for (size_t i = 0; i < cfg->n_upstreams; i++)
            om_cfg_upstream_clear(&cfg->upstreams[i]);
        om_cfg_rewrites_clear(cfg);
        om_cfg_limits_clear_users(&cfg->limits);
        free(cfg);
    }
}
