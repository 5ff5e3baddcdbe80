/* test_config.c — config: defaults, every key, error positions, value
 * parsers, dump round trip, redaction, truncated inputs, om_strerror. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"

static char tmpdir[64];

/* Write `text` to tmpdir/name; returns the path in a static buffer. */
static const char *tmpfile_with(const char *name, const char *text, size_t len)
{
    static char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f != NULL) {
        CHECK_EQ_INT(fwrite(text, 1, len, f), len);
        fclose(f);
    }
    return path;
}

static void round_trip(const struct om_config *cfg);
static void check_defaults(const struct om_config *cfg);

static struct om_config *parse_ok(const char *yaml)
{
    struct om_config *cfg = NULL;
    char err[512] = "";
    int rc = om_config_parse(&cfg, yaml, strlen(yaml), "t.yaml", err, sizeof(err));

    if (rc != OM_OK)
        fprintf(stderr, "unexpected error: %s\n---\n%s---\n", err, yaml);
    CHECK_EQ_INT(rc, OM_OK);
    CHECK(rc != OM_OK || cfg != NULL);
    return cfg;
}

/* The dump as a malloc'd string (caller frees). */
static char *dump_to_string(const struct om_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    CHECK(f != NULL);
    if (f == NULL)
        return NULL;
    om_config_dump(cfg, f);
    fclose(f);
    return buf;
}

/* ---- defaults ----------------------------------------------------------- */

static void check_defaults(const struct om_config *cfg)
{
    CHECK_EQ_STR(cfg->listen, "0.0.0.0:5000");
    CHECK(cfg->tls_cert == NULL && cfg->tls_key == NULL);
    CHECK_EQ_STR(cfg->storage_path, "./ocimirror-data");
    CHECK_EQ_INT(cfg->n_upstreams, 5);
    CHECK_EQ_STR(cfg->upstreams[0].name, "docker.io");
    CHECK_EQ_STR(cfg->upstreams[0].url, "https://registry-1.docker.io");
    CHECK_EQ_INT(cfg->upstreams[0].n_aliases, 3);
    CHECK_EQ_STR(cfg->upstreams[0].aliases[0], "docker.io");
    CHECK_EQ_STR(cfg->upstreams[0].aliases[1], "index.docker.io");
    CHECK_EQ_STR(cfg->upstreams[0].aliases[2], "registry-1.docker.io");
    CHECK(cfg->upstreams[0].is_docker_hub);
    CHECK_EQ_STR(cfg->upstreams[1].name, "registry.k8s.io");
    CHECK_EQ_STR(cfg->upstreams[1].url, "https://registry.k8s.io");
    CHECK_EQ_INT(cfg->upstreams[1].n_aliases, 1);
    CHECK_EQ_STR(cfg->upstreams[1].aliases[0], "k8s.gcr.io");
    CHECK(!cfg->upstreams[1].is_docker_hub);
    CHECK_EQ_STR(cfg->upstreams[2].name, "gcr.io");
    CHECK_EQ_STR(cfg->upstreams[3].name, "quay.io");
    CHECK_EQ_STR(cfg->upstreams[3].url, "https://quay.io");
    CHECK_EQ_STR(cfg->upstreams[4].name, "ghcr.io");
    for (size_t i = 2; i < 5; i++) {
        CHECK_EQ_INT(cfg->upstreams[i].n_aliases, 0);
        CHECK(!cfg->upstreams[i].is_docker_hub);
        CHECK(cfg->upstreams[i].password == NULL && cfg->upstreams[i].username == NULL);
    }
    CHECK_EQ_INT(cfg->n_search_order, 5);
    for (size_t i = 0; i < 5; i++)
        CHECK_EQ_INT(cfg->search_order[i], i);
    CHECK_EQ_INT(cfg->n_rewrites, 1);
    CHECK_EQ_STR(cfg->rewrites[0].match, "^coredns$");
    CHECK_EQ_STR(cfg->rewrites[0].target, "registry.k8s.io/coredns/coredns");
    CHECK(regexec(&cfg->rewrites[0].re, "coredns", 0, NULL, 0) == 0);
    CHECK(regexec(&cfg->rewrites[0].re, "coredns/coredns", 0, NULL, 0) != 0);
    CHECK_EQ_INT(cfg->tag_ttl_ms, 5 * 60 * 1000);
    CHECK_EQ_INT(cfg->negative_ttl_ms, 60 * 1000);
    CHECK_EQ_INT(cfg->retries_max, 3);
    CHECK_EQ_INT(cfg->retries_backoff_ms, 500);
    CHECK_EQ_INT(cfg->log_level, OM_LOG_INFO);
    CHECK_EQ_INT(cfg->log_format, OM_LOG_TEXT);
    CHECK_EQ_INT(cfg->limits.max_connections, 4096);
    CHECK_EQ_INT(cfg->limits.max_header_bytes, 16 * 1024);
    CHECK_EQ_INT(cfg->limits.max_url_bytes, 4 * 1024);
    CHECK_EQ_INT(cfg->limits.max_manifest_bytes, 4 * 1024 * 1024);
    CHECK_EQ_INT(cfg->limits.connection_timeout_ms, 60 * 1000);
    CHECK_EQ_INT(cfg->limits.header_timeout_ms, 30 * 1000);
    CHECK_EQ_INT(cfg->limits.max_connections_per_ip, 0);
    CHECK_EQ_INT(cfg->limits.idle_timeout_ms, 300 * 1000);
    CHECK_EQ_INT(cfg->limits.shutdown_grace_ms, 30 * 1000);
    CHECK_EQ_INT(cfg->limits.threads, 0);
    CHECK_EQ_INT(cfg->limits.max_downloads, 64);
    CHECK_EQ_INT(cfg->limits.max_tags, 100000);
    CHECK(cfg->public_url == NULL);
    CHECK(cfg->admin_token == NULL && cfg->admin_token_file == NULL);
    CHECK(!cfg->admin_protect_reads);
    CHECK(cfg->storage_max_size == 0);
    CHECK_EQ_INT(cfg->storage_high_water, 90);
    CHECK_EQ_INT(cfg->storage_low_water, 80);
    CHECK_EQ_INT(cfg->storage_backend, OM_STORAGE_FS);
    CHECK(!cfg->storage_redirect);
    CHECK_EQ_INT(cfg->storage_redirect_ttl_ms, 600000);
    CHECK_EQ_STR(cfg->storage_s3.region, "us-east-1");
    CHECK_EQ_STR(cfg->storage_s3.prefix, "");
    CHECK(cfg->storage_s3.part_size == 16ull << 20);
    CHECK(!cfg->storage_s3.path_style);
    CHECK(cfg->storage_s3.endpoint == NULL && cfg->storage_s3.bucket == NULL);
    CHECK(cfg->storage_s3.access_key == NULL && cfg->storage_s3.secret_key == NULL);
    CHECK_EQ_INT(cfg->gc_interval_ms, 10 * 60 * 1000);
    CHECK_EQ_INT(cfg->n_prefetch_images, 0);
    CHECK_EQ_INT(cfg->n_prefetch_platforms, 2);
    CHECK_EQ_STR(cfg->prefetch_platforms[0], "linux/amd64");
    CHECK_EQ_STR(cfg->prefetch_platforms[1], "linux/arm64");
    CHECK_EQ_INT(cfg->prefetch_interval_ms, 6 * 3600 * 1000);
    CHECK_EQ_INT(cfg->prefetch_retries, 3);
    CHECK_EQ_INT(cfg->prefetch_retry_interval_ms, 5 * 60 * 1000);
}

static void test_config__defaults_match_the_header(void)
{
    struct om_config *cfg = NULL;

    CHECK_EQ_INT(om_config_default(&cfg), OM_OK);
    if (cfg == NULL)
        return;
    check_defaults(cfg);
    CHECK_EQ_STR(cfg->source, "<embedded defaults>");
    om_config_free(cfg);
}

static void test_config__empty_and_comment_only_files_give_the_defaults(void)
{
    static const char *const inputs[] = {"", "# nothing\n", "---\n", "~\n", "\n\n"};

    for (size_t i = 0; i < OM_ARRAY_LEN(inputs); i++) {
        struct om_config *cfg = parse_ok(inputs[i]);
        if (cfg == NULL)
            continue;
        check_defaults(cfg);
        CHECK_EQ_STR(cfg->source, "t.yaml");
        om_config_free(cfg);
    }
}

/* ---- a file with every key ---------------------------------------------- */

/* Every key, with values that differ from the defaults.  %s = password_file. */
static const char full_fmt[] =
    "# every key\n"
    "listen: \"[::]:8443\"\n"
    "public_url: https://mirror.example:8443/\n"
    "tls:\n"
    "  cert: /etc/ocimirror/tls.crt\n"
    "  key: /etc/ocimirror/tls.key\n"
    "admin:\n"
    "  token: \"adm1n-T0ken\"\n"
    "  protect_reads: true\n"
    "storage:\n"
    "  path: /var/lib/ocimirror\n"
    "  max_size: 50GiB\n"
    "  high_water: 95\n"
    "  low_water: 70\n"
    "  gc_interval: 30s\n"
    "  backend: s3\n"
    "  redirect: true\n"
    "  redirect_ttl: 5m\n"
    "  s3:\n"
    "    endpoint: https://s3.eu-west-1.example.com/\n"
    "    region: eu-west-1\n"
    "    bucket: mirror.cache-1\n"
    "    prefix: team/ocimirror\n"
    "    access_key: AKIAEXAMPLEKEY\n"
    "    secret_key: \"s3-Secr3t/Key+xyz\"\n"
    "    path_style: true\n"
    "    ca_file: /etc/ssl/s3.pem\n"
    "    part_size: 32MiB\n"
    "upstreams:\n"
    "  - name: docker.io\n"
    "    url: https://mirror.example.com/\n"
    "    aliases: [index.docker.io, Registry-1.Docker.io]\n"
    "    ca_file: /etc/ssl/extra.pem\n"
    "    insecure_skip_verify: false\n"
    "    username: alice\n"
    "    password: \"s3cr3t-Pa55\"\n"
    "    proxy: http://bob:pr0xy-pw@proxy.internal:3128\n"
    "  - name: quay.io\n"
    "    url: http://127.0.0.1:5001\n"
    "    aliases:\n"
    "      - quay\n"
    "    insecure_skip_verify: true\n"
    "    username: robot\n"
    "    password_file: %s\n"
    "  - name: local.registry\n"
    "    url: https://127.0.0.1:5002/prefix\n"
    "    proxy: \"\"\n"
    "  - name: pool.example\n"
    "    urls: [https://registry.pool.example/, 'https://mirror.pool.example:8443/v']\n"
    "    credentials:\n"
    "      - {username: puller-1, password: \"p00l-Pw-1\"}\n"
    "      - username: puller-2\n"
    "        password_file: %s\n"
    "search_order: [quay, docker.io]\n"
    "rewrites:\n"
    "  - match: '^coredns$'\n"
    "    target: quay.io/coredns/coredns\n"
    "  - match: \"^mirror/(.*)\\\\.(v[0-9]+)$\"\n"
    "    target: 'local.registry/\\1:\\2'\n"
    "tag_ttl: 90s\n"
    "negative_ttl: 0\n"
    "retries:\n"
    "  max: 5\n"
    "  backoff: 250ms\n"
    "log:\n"
    "  level: debug\n"
    "  format: json\n"
    "limits:\n"
    "  max_connections: 100\n"
    "  max_header_bytes: 32KiB\n"
    "  max_url_bytes: 8192\n"
    "  max_manifest_bytes: 10MB\n"
    "  max_connections_per_ip: 32\n"
    "  connection_timeout: 2m\n"
    "  header_timeout: 15s\n"
    "  idle_timeout: 1h\n"
    "  shutdown_grace: 1d\n"
    "  threads: 8\n"
    "  max_downloads: 16\n"
    "  max_tags: 250000\n"
    "prefetch:\n"
    "  images:\n"
    "    - nginx:1.25\n"
    "    - 'quay.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'\n"
    "  platforms: [linux/arm/v7, windows/amd64]\n"
    "  interval: 0\n"
    "  retries: 10\n"
    "  retry_interval: 90s\n";

static char *full_yaml(void)
{
    const char *pw = tmpfile_with("pw", "quay-t0ken\n", 11);
    char *yaml = NULL;

    CHECK(asprintf(&yaml, full_fmt, pw, pw) > 0);
    return yaml;
}

static void test_config__a_file_with_every_key_sets_every_field(void)
{
    char *yaml = full_yaml();
    struct om_config *cfg = yaml != NULL ? parse_ok(yaml) : NULL;
    const struct om_upstream_cfg *u;
    regmatch_t m[3];

    if (cfg == NULL)
        goto done;
    CHECK_EQ_STR(cfg->listen, "[::]:8443");
    CHECK_EQ_STR(cfg->tls_cert, "/etc/ocimirror/tls.crt");
    CHECK_EQ_STR(cfg->tls_key, "/etc/ocimirror/tls.key");
    CHECK_EQ_STR(cfg->storage_path, "/var/lib/ocimirror");
    CHECK_EQ_INT(cfg->n_upstreams, 4);
    u = &cfg->upstreams[0];
    CHECK_EQ_STR(u->name, "docker.io");
    CHECK_EQ_STR(u->url, "https://mirror.example.com"); /* trailing / dropped */
    CHECK_EQ_INT(u->n_aliases, 2);
    CHECK_EQ_STR(u->aliases[1], "Registry-1.Docker.io");
    CHECK_EQ_STR(u->ca_file, "/etc/ssl/extra.pem");
    CHECK(!u->insecure_skip_verify);
    CHECK_EQ_STR(u->username, "alice");
    CHECK_EQ_STR(u->password, "s3cr3t-Pa55");
    CHECK(u->password_file == NULL);
    CHECK_EQ_STR(u->proxy, "http://bob:pr0xy-pw@proxy.internal:3128");
    CHECK(u->is_docker_hub);
    u = &cfg->upstreams[1];
    CHECK_EQ_STR(u->name, "quay.io");
    CHECK_EQ_STR(u->url, "http://127.0.0.1:5001");
    CHECK_EQ_INT(u->n_aliases, 1);
    CHECK_EQ_STR(u->aliases[0], "quay");
    CHECK(u->insecure_skip_verify);
    CHECK_EQ_STR(u->username, "robot");
    CHECK_EQ_STR(u->password, "quay-t0ken"); /* read from the file, newline trimmed */
    CHECK(u->password_file != NULL && strstr(u->password_file, "/pw") != NULL);
    CHECK(u->proxy == NULL);
    CHECK(!u->is_docker_hub);
    u = &cfg->upstreams[2];
    CHECK_EQ_STR(u->url, "https://127.0.0.1:5002/prefix");
    CHECK_EQ_STR(u->proxy, ""); /* quoted empty = explicitly no proxy */
    CHECK(u->ca_file == NULL && u->username == NULL && u->password == NULL);
    CHECK_EQ_INT(u->n_urls, 1); /* `url` alone: the list of one */
    CHECK_EQ_STR(u->urls[0], "https://127.0.0.1:5002/prefix");
    CHECK_EQ_INT(u->n_credentials, 0);
    u = &cfg->upstreams[3];
    CHECK_EQ_INT(u->n_urls, 2);
    CHECK_EQ_STR(u->urls[0], "https://registry.pool.example"); /* trailing / dropped */
    CHECK_EQ_STR(u->urls[1], "https://mirror.pool.example:8443/v");
    CHECK_EQ_STR(u->url, "https://registry.pool.example");     /* the first */
    CHECK_EQ_INT(u->n_credentials, 2);
    CHECK_EQ_STR(u->credentials[0].username, "puller-1");
    CHECK_EQ_STR(u->credentials[0].password, "p00l-Pw-1");
    CHECK(u->credentials[0].password_file == NULL);
    CHECK_EQ_STR(u->credentials[1].username, "puller-2");
    CHECK_EQ_STR(u->credentials[1].password, "quay-t0ken");    /* the file's */
    CHECK(u->credentials[1].password_file != NULL);
    CHECK(u->username == NULL && u->password == NULL);
    CHECK_EQ_INT(cfg->n_search_order, 2);
    CHECK_EQ_INT(cfg->search_order[0], 1);
    CHECK_EQ_INT(cfg->search_order[1], 0);
    CHECK_EQ_INT(cfg->n_rewrites, 2);
    CHECK_EQ_STR(cfg->rewrites[0].target, "quay.io/coredns/coredns");
    CHECK_EQ_STR(cfg->rewrites[1].match, "^mirror/(.*)\\.(v[0-9]+)$");
    CHECK_EQ_STR(cfg->rewrites[1].target, "local.registry/\\1:\\2");
    CHECK(regexec(&cfg->rewrites[1].re, "mirror/a/b.v12", 3, m, 0) == 0);
    CHECK_EQ_INT(m[2].rm_so, 11);
    CHECK_EQ_INT(cfg->tag_ttl_ms, 90000);
    CHECK_EQ_INT(cfg->negative_ttl_ms, 0);
    CHECK_EQ_INT(cfg->retries_max, 5);
    CHECK_EQ_INT(cfg->retries_backoff_ms, 250);
    CHECK_EQ_INT(cfg->log_level, OM_LOG_DEBUG);
    CHECK_EQ_INT(cfg->log_format, OM_LOG_JSON);
    CHECK_EQ_INT(cfg->limits.max_connections, 100);
    CHECK_EQ_INT(cfg->limits.max_header_bytes, 32 * 1024);
    CHECK_EQ_INT(cfg->limits.max_url_bytes, 8192);
    CHECK_EQ_INT(cfg->limits.max_manifest_bytes, 10 * 1000 * 1000);
    CHECK_EQ_INT(cfg->limits.connection_timeout_ms, 120000);
    CHECK_EQ_INT(cfg->limits.header_timeout_ms, 15000);
    CHECK_EQ_INT(cfg->limits.max_connections_per_ip, 32);
    CHECK_EQ_INT(cfg->limits.idle_timeout_ms, 3600000);
    CHECK_EQ_INT(cfg->limits.shutdown_grace_ms, 86400000);
    CHECK_EQ_INT(cfg->limits.threads, 8);
    CHECK_EQ_INT(cfg->limits.max_downloads, 16);
    CHECK_EQ_INT(cfg->limits.max_tags, 250000);
    CHECK_EQ_STR(cfg->public_url, "https://mirror.example:8443"); /* trailing / dropped */
    CHECK_EQ_STR(cfg->admin_token, "adm1n-T0ken");
    CHECK(cfg->admin_token_file == NULL);
    CHECK(cfg->admin_protect_reads);
    CHECK(cfg->storage_max_size == 50ull << 30);
    CHECK_EQ_INT(cfg->storage_high_water, 95);
    CHECK_EQ_INT(cfg->storage_low_water, 70);
    CHECK_EQ_INT(cfg->gc_interval_ms, 30000);
    CHECK_EQ_INT(cfg->storage_backend, OM_STORAGE_S3);
    CHECK(cfg->storage_redirect);
    CHECK_EQ_INT(cfg->storage_redirect_ttl_ms, 300000);
    CHECK_EQ_STR(cfg->storage_s3.endpoint, "https://s3.eu-west-1.example.com"); /* / dropped */
    CHECK_EQ_STR(cfg->storage_s3.region, "eu-west-1");
    CHECK_EQ_STR(cfg->storage_s3.bucket, "mirror.cache-1");
    CHECK_EQ_STR(cfg->storage_s3.prefix, "team/ocimirror/"); /* always ends with / */
    CHECK_EQ_STR(cfg->storage_s3.access_key, "AKIAEXAMPLEKEY");
    CHECK_EQ_STR(cfg->storage_s3.secret_key, "s3-Secr3t/Key+xyz");
    CHECK(cfg->storage_s3.path_style);
    CHECK_EQ_STR(cfg->storage_s3.ca_file, "/etc/ssl/s3.pem");
    CHECK(cfg->storage_s3.part_size == 32ull << 20);
    CHECK_EQ_INT(cfg->n_prefetch_images, 2);
    CHECK_EQ_STR(cfg->prefetch_images[0], "nginx:1.25");
    CHECK_EQ_STR(cfg->prefetch_images[1], "quay.io/org/app@sha256:0123456789abcdef0123456789abcdef"
                                          "0123456789abcdef0123456789abcdef");
    CHECK_EQ_INT(cfg->n_prefetch_platforms, 2);
    CHECK_EQ_STR(cfg->prefetch_platforms[0], "linux/arm/v7");
    CHECK_EQ_STR(cfg->prefetch_platforms[1], "windows/amd64");
    CHECK_EQ_INT(cfg->prefetch_interval_ms, 0);
    CHECK_EQ_INT(cfg->prefetch_retries, 10);
    CHECK_EQ_INT(cfg->prefetch_retry_interval_ms, 90000);
done:
    om_config_free(cfg);
    free(yaml);
}

static void test_config__an_upstreams_list_replaces_the_defaults(void)
{
    struct om_config *cfg = parse_ok("upstreams:\n"
                                     "  - name: registry.local\n"
                                     "    url: http://127.0.0.1:5000\n");
    if (cfg == NULL)
        return;
    CHECK_EQ_INT(cfg->n_upstreams, 1);
    CHECK(om_config_upstream_find(cfg, "docker.io", 9) == NULL);
    CHECK(om_config_upstream_find(cfg, "registry.local", 14) == &cfg->upstreams[0]);
    CHECK_EQ_INT(cfg->n_search_order, 1); /* defaults to the file's order */
    CHECK_EQ_INT(cfg->search_order[0], 0);
    CHECK_EQ_INT(cfg->n_rewrites, 1);     /* not given: default kept */
    CHECK(!cfg->upstreams[0].is_docker_hub);
    om_config_free(cfg);

    cfg = parse_ok("rewrites: []\n");
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->n_rewrites, 0);
        CHECK_EQ_INT(cfg->n_upstreams, 5);
    }
    om_config_free(cfg);
}

static void test_config__search_order_accepts_aliases_in_any_case(void)
{
    struct om_config *cfg = parse_ok("search_order: [k8s.gcr.io, INDEX.docker.io, quay.io]\n");

    if (cfg == NULL)
        return;
    CHECK_EQ_INT(cfg->n_search_order, 3);
    CHECK_EQ_INT(cfg->search_order[0], 1);
    CHECK_EQ_INT(cfg->search_order[1], 0);
    CHECK_EQ_INT(cfg->search_order[2], 3);
    om_config_free(cfg);

    /* search_order may come before the upstreams it names */
    cfg = parse_ok("search_order: [b]\n"
                   "upstreams:\n"
                   "  - {name: a.io, url: 'https://a.io'}\n"
                   "  - {name: b.io, url: 'https://b.io', aliases: [b]}\n");
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->n_search_order, 1);
        CHECK_EQ_INT(cfg->search_order[0], 1);
    }
    om_config_free(cfg);

    cfg = parse_ok("search_order: []\n"); /* only explicit names resolve */
    if (cfg != NULL)
        CHECK_EQ_INT(cfg->n_search_order, 0);
    om_config_free(cfg);
}

static void test_config__upstream_find_ignores_case_and_length_bounds(void)
{
    struct om_config *cfg = NULL;
    const char *path = "Index.Docker.IO/library/nginx";

    CHECK_EQ_INT(om_config_default(&cfg), OM_OK);
    if (cfg == NULL)
        return;
    CHECK(om_config_upstream_find(cfg, path, 15) == &cfg->upstreams[0]);
    CHECK(om_config_upstream_find(cfg, "K8S.GCR.IO", 10) == &cfg->upstreams[1]);
    CHECK(om_config_upstream_find(cfg, "ghcr.io", 7) == &cfg->upstreams[4]);
    CHECK(om_config_upstream_find(cfg, "ghcr.io", 6) == NULL);   /* "ghcr.i" */
    CHECK(om_config_upstream_find(cfg, "ghcr.iox", 8) == NULL);
    CHECK(om_config_upstream_find(cfg, "", 0) == NULL);
    CHECK(om_config_upstream_find(cfg, NULL, 0) == NULL);
    CHECK(om_config_upstream_find(NULL, "gcr.io", 6) == NULL);
    om_config_free(cfg);
}

static void test_config__overrides_check_their_values(void)
{
    struct om_config *cfg = NULL;

    CHECK_EQ_INT(om_config_default(&cfg), OM_OK);
    if (cfg == NULL)
        return;
    CHECK_EQ_INT(om_config_set_listen(cfg, "127.0.0.1:6000"), OM_OK);
    CHECK_EQ_STR(cfg->listen, "127.0.0.1:6000");
    CHECK_EQ_INT(om_config_set_listen(cfg, "127.0.0.1"), OM_ERR_INVALID);
    CHECK_EQ_INT(om_config_set_listen(cfg, NULL), OM_ERR_INVALID);
    CHECK_EQ_STR(cfg->listen, "127.0.0.1:6000");
    CHECK_EQ_INT(om_config_set_storage(cfg, "/tmp/x"), OM_OK);
    CHECK_EQ_STR(cfg->storage_path, "/tmp/x");
    CHECK_EQ_INT(om_config_set_storage(cfg, ""), OM_ERR_INVALID);
    CHECK_EQ_STR(cfg->storage_path, "/tmp/x");
    om_config_free(cfg);
}

/* ---- errors name the right place ---------------------------------------- */

struct err_case {
    const char *yaml;
    const char *where;    /* "t.yaml:LINE:COL: " */
    const char *contains; /* part of the message */
};

static const struct err_case err_cases[] = {
    {"listen: \"0.0.0.0:5000\"\nbogus: 1\n", "t.yaml:2:1: ", "unknown key \"bogus\" in the top level"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    colour: red\n",
     "t.yaml:4:5: ", "unknown key \"colour\" in an upstream"},
    {"limits:\n  threads: 2\n  max_conn: 5\n", "t.yaml:3:3: ", "unknown key \"max_conn\" in limits"},
    {"listen: [a, b]\n", "t.yaml:1:10: ", "listen must be a single value"},
    {"storage: /data\n", "t.yaml:1:10: ", "storage must be a mapping"},
    {"tag_ttl: 5 minutes\n", "t.yaml:1:10: ", "is not a duration"},
    {"retries:\n  max: 3\n  backoff: 5x\n", "t.yaml:3:12: ", "is not a duration"},
    {"tag_ttl: 99999999999999999999d\n", "t.yaml:1:10: ", "is not a duration"},
    {"tag_ttl: 400d\n", "t.yaml:1:10: ", "must be between"},
    {"negative_ttl:\n", "t.yaml:1:1: ", "negative_ttl needs a value"},
    {"upstreams:\n  - name: a.io\n    url: ftp://a.io\n", "t.yaml:3:10: ", "must be http:// or https://"},
    {"upstreams:\n  - name: a.io\n    url: https://u:p@a.io/x\n", "t.yaml:3:10: ", "user:password@"},
    {"upstreams:\n  - name: a.io\n    url: https:///v2\n", "t.yaml:3:10: ", "and a host"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io/?x=1\n", "t.yaml:3:10: ", "query"},
    {"upstreams:\n  - name: a.io\n    url: 'https://a .io'\n", "t.yaml:3:10: ", "url"},
    {"search_order: [docker.io, nope.io]\n", "t.yaml:1:27: ", "\"nope.io\" is not the name or alias"},
    {"search_order: [docker.io, index.docker.io]\n", "t.yaml:1:27: ", "twice"},
    {"search_order: docker.io\n", "t.yaml:1:15: ", "search_order must be a list"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n  - name: a.io\n    url: https://b.io\n",
     "t.yaml:4:11: ", "\"a.io\" is already a name or alias of upstream \"a.io\""},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    aliases: [x.io]\n"
     "  - name: b.io\n    url: https://b.io\n    aliases: [y.io, X.IO]\n",
     "t.yaml:7:21: ", "\"X.IO\" is already a name or alias of upstream \"a.io\""},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    aliases: [x.io, y.io, x.io]\n",
     "t.yaml:4:27: ", "listed twice"},
    {"upstreams:\n  - name: Quay.io\n    url: https://quay.io\n", "t.yaml:2:11: ", "lowercase"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    aliases: ['b c']\n", "t.yaml:4:15: ",
     "not a registry host name"},
    {"upstreams:\n  - name: a.io\n", "t.yaml:2:5: ", "upstream \"a.io\" needs a url"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    urls: [https://b.io]\n",
     "t.yaml:4:5: ", "give url or urls, not both"},
    {"upstreams:\n  - name: a.io\n    urls: []\n", "t.yaml:3:5: ", "at least one URL"},
    {"upstreams:\n  - name: a.io\n    urls:\n", "t.yaml:3:5: ", "at least one URL"},
    {"upstreams:\n  - name: a.io\n    urls: https://a.io\n", "t.yaml:3:11: ",
     "urls must be a list"},
    {"upstreams:\n  - name: a.io\n    urls: [https://a.io, ftp://b.io]\n", "t.yaml:3:26: ",
     "must be http:// or https://"},
    {"upstreams:\n  - name: a.io\n    urls: [https://a.io, 'https://u:p@b.io']\n",
     "t.yaml:3:26: ", "user:password@"},
    {"upstreams:\n  - name: a.io\n    urls: [https://a.io, 'https://A.io/']\n",
     "t.yaml:3:26: ", "listed twice"},
    {"upstreams:\n  - name: a.io\n    urls: [[https://a.io]]\n", "t.yaml:3:13: ",
     "single value"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    username: x\n"
     "    credentials: [{username: y, password: z}]\n",
     "t.yaml:5:5: ", "give username/password or credentials, not both"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    credentials: []\n",
     "t.yaml:4:5: ", "at least one account"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    credentials: [bob]\n",
     "t.yaml:4:19: ", "each credential must be a mapping"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    credentials:\n      - password: z\n",
     "t.yaml:5:9: ", "a credential needs a username"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    credentials:\n      - username: y\n",
     "t.yaml:5:9: ", "credential \"y\" needs a password or password_file"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    credentials:\n"
     "      - {username: y, password: z, password_file: /p}\n",
     "t.yaml:5:36: ", "give password or password_file, not both"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    credentials:\n"
     "      - {username: y, password: z}\n      - {username: Y, password: w}\n",
     "t.yaml:6:10: ", "credential \"Y\" is listed twice"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    credentials:\n"
     "      - {username: 'a:b', password: z}\n",
     "t.yaml:5:20: ", "without blanks or ':'"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    credentials:\n"
     "      - {username: 'a b', password: z}\n",
     "t.yaml:5:20: ", "without blanks or ':'"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    credentials:\n"
     "      - {username: y, password: z, colour: red}\n",
     "t.yaml:5:36: ", "unknown key \"colour\" in a credential"},
    {"upstreams:\n  - url: https://a.io\n", "t.yaml:2:5: ", "an upstream needs a name"},
    {"upstreams:\n  - a.io\n", "t.yaml:2:5: ", "each upstream must be a mapping"},
    {"upstreams: []\n", "t.yaml:1:1: ", "upstreams must be a non-empty list"},
    {"upstreams:\n", "t.yaml:1:1: ", "upstreams must be a non-empty list"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    insecure_skip_verify: maybe\n",
     "t.yaml:4:27: ", "must be true or false"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    password: x\n    password_file: /p\n",
     "t.yaml:5:5: ", "password or password_file, not both"},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    password_file: /nonexistent/ocimirror-pw\n",
     "t.yaml:4:20: ", "cannot read password_file \"/nonexistent/ocimirror-pw\""},
    {"upstreams:\n  - name: a.io\n    url: https://a.io\n    password_file: /tmp\n",
     "t.yaml:4:20: ", "not a regular file"},
    {"rewrites:\n  - match: \"a(b\"\n    target: x\n", "t.yaml:2:12: ", "not a valid regular expression"},
    {"rewrites:\n  - match: \"^(a)$\"\n    target: 'x/\\2'\n", "t.yaml:3:13: ", "refers to \\2"},
    {"rewrites:\n  - match: \"^a$\"\n", "t.yaml:2:5: ", "needs match and target"},
    {"rewrites:\n  - match: \"\"\n    target: x\n", "t.yaml:2:12: ", "match must not be empty"},
    {"rewrites: {match: a}\n", "t.yaml:1:12: ", "rewrites must be a list"},
    {"tls:\n  cert: /c.pem\n", "t.yaml:1:1: ", "tls needs both cert and key"},
    {"tls:\n  key: /k.pem\n", "t.yaml:1:1: ", "tls needs both cert and key"},
    {"limits:\n  max_connections: 0\n", "t.yaml:2:20: ", "max_connections must be between 1 and"},
    {"limits:\n  threads: -1\n", "t.yaml:2:12: ", "is not a whole number"},
    {"limits:\n  max_downloads: 1.5\n", "t.yaml:2:18: ", "is not a whole number"},
    {"limits:\n  max_header_bytes: 16 KiB\n", "t.yaml:2:21: ", "is not a size"},
    {"limits:\n  max_manifest_bytes: 2TiB\n", "t.yaml:2:23: ", "must be between"},
    {"limits:\n  idle_timeout: 0\n", "t.yaml:2:17: ", "idle_timeout must be between 1"},
    {"limits:\n  max_tags: 0\n", "t.yaml:2:13: ", "max_tags must be between 1 and 10000000"},
    {"limits:\n  max_tags: 20000000\n", "t.yaml:2:13: ", "max_tags must be between 1 and"},
    {"retries:\n  max: 0\n", "t.yaml:2:8: ", "max must be between 1 and 100"},
    {"listen: 0.0.0.0\n", "t.yaml:1:9: ", "is not HOST:PORT"},
    {"listen: \"::1:5000\"\n", "t.yaml:1:9: ", "is not HOST:PORT"},
    {"listen: 0.0.0.0:70000\n", "t.yaml:1:9: ", "is not HOST:PORT"},
    {"log:\n  level: loud\n", "t.yaml:2:10: ", "debug, info, warn or error"},
    {"log:\n  format: xml\n", "t.yaml:2:11: ", "text or json"},
    {"storage:\n  path: \"\"\n", "t.yaml:2:9: ", "path must not be empty"},
    {"storage:\n  path: \"a\\0b\"\n", "t.yaml:2:9: ", "NUL byte"},
    {"tag_ttl: &t 5m\nnegative_ttl: *t\n", "t.yaml:2:15: ", "aliases are not supported"},
    {"limits: &l {threads: 1}\nlog: *l\n", "t.yaml:2:6: ", "aliases are not supported"},
    {"- listen\n", "t.yaml:1:3: ", "the top level must be a mapping"},
    {"listen: \"a:1\"\nlisten: \"b:2\"\n", "t.yaml:2:1: ", "YAML syntax error: duplicate key"},
    {"listen: \"a:1\"\n---\nlisten: \"b:2\"\n", "t.yaml:2:1: ", "only one YAML document"},
    {"log:\n  level: [debug\n", "t.yaml:3:1: ", "YAML syntax error"},
    {"log:\n\tlevel: debug\n", "t.yaml:2:", "YAML syntax error"},
    {"[1, 2]: x\n", "t.yaml:1:2: ", "keys in the top level must be plain words"},
    /* public_url */
    {"public_url: ftp://m.example\n", "t.yaml:1:13: ", "must be http:// or https://"},
    {"public_url: https://m.example/v2\n", "t.yaml:1:13: ", "must not have a path"},
    {"public_url: https://m.example//\n", "t.yaml:1:13: ", "must not have a path"},
    {"public_url: https://u:p@m.example\n", "t.yaml:1:13: ", "user:password@"},
    {"public_url: https://m.example/?x=1\n", "t.yaml:1:13: ", "query"},
    {"public_url: https://m.example#f\n", "t.yaml:1:13: ", "fragment"},
    {"public_url: https://m.example:0\n", "t.yaml:1:13: ", "port 1..65535"},
    {"public_url: https://m.example:65536\n", "t.yaml:1:13: ", "port 1..65535"},
    {"public_url: 'https://m.example:'\n", "t.yaml:1:13: ", "port 1..65535"},
    {"public_url: https://m.example:80x\n", "t.yaml:1:13: ", "port 1..65535"},
    {"public_url: 'https://'\n", "t.yaml:1:13: ", "needs a host"},
    {"public_url: https://:5000\n", "t.yaml:1:13: ", "needs a host"},
    {"public_url: https://[]:80\n", "t.yaml:1:13: ", "needs a host"},
    {"public_url: https://[::1\n", "t.yaml:1:13: ", "needs a host"},
    {"public_url: 'https://m example'\n", "t.yaml:1:13: ", "public_url"},
    {"public_url: \"\"\n", "t.yaml:1:13: ", "must be http:// or https://"},
    {"public_url: [https://a]\n", "t.yaml:1:14: ", "public_url must be a single value"},
    /* admin */
    {"admin:\n  token: x\n  token_file: /p\n", "t.yaml:3:3: ", "token or token_file, not both"},
    {"admin:\n  token: \"a b\"\n", "t.yaml:2:10: ", "without blanks or control characters"},
    {"admin:\n  token: \"a\\tb\"\n", "t.yaml:2:10: ", "without blanks or control characters"},
    {"admin:\n  token: \"\"\n", "t.yaml:2:10: ", "must be non-empty"},
    {"admin:\n  protect_reads: true\n", "t.yaml:2:18: ", "protect_reads needs token or token_file"},
    {"admin:\n  protect_reads: true\n  token: ~\n", "t.yaml:2:18: ", "protect_reads needs"},
    {"admin:\n  protect_reads: yes\n", "t.yaml:2:18: ", "must be true or false"},
    {"admin:\n  token_file: /nonexistent/ocimirror-tok\n", "t.yaml:2:15: ",
     "cannot read token_file \"/nonexistent/ocimirror-tok\""},
    {"admin:\n  token_file: /tmp\n", "t.yaml:2:15: ", "not a regular file"},
    {"admin:\n  tokens: x\n", "t.yaml:2:3: ", "unknown key \"tokens\" in admin"},
    {"admin: secret\n", "t.yaml:1:8: ", "admin must be a mapping"},
    /* cluster (issue 11) */
    {"cluster:\n  redis: http://h:1\n", "t.yaml:2:10: ", "must start with redis:// or unix://"},
    {"cluster:\n  redis: rediss://h:1\n", "t.yaml:2:10: ", "TLS"},
    {"cluster:\n  redis: redis://h:0\n", "t.yaml:2:10: ", "port from 1 to 65535"},
    {"cluster:\n  redis: unix://r.sock\n", "t.yaml:2:10: ", "absolute socket path"},
    {"cluster:\n  redis: \"\"\n", "t.yaml:2:10: ", "is empty"},
    {"cluster:\n  peer_url: http://10.0.0.5:5000\n", "t.yaml:2:3: ", "need cluster.redis"},
    {"cluster:\n  redis_password_file: /p\n", "t.yaml:2:3: ", "need cluster.redis"},
    {"cluster:\n  redis: redis://:pw@h\n  redis_password_file: /p\n", "t.yaml:3:3: ",
     "in redis or in redis_password_file, not both"},
    {"cluster:\n  redis: redis://h\n  peer_url: http://10.0.0.5:5000\n", "t.yaml:3:3: ",
     "peer_url needs peer_token_file"},
    {"cluster:\n  redis: redis://h\n  peer_url: http://10.0.0.5:5000/x\n", "t.yaml:3:13: ",
     "must not have a path"},
    {"cluster:\n  redis: redis://h\n  redis_password_file: /nonexistent/om-pw\n",
     "t.yaml:3:24: ", "cannot read redis_password_file"},
    {"cluster:\n  redis: redis://h\n  peer_url: http://a:1\n  peer_token_file: /tmp\n",
     "t.yaml:4:20: ", "not a regular file"},
    {"cluster:\n  reddis: redis://h\n", "t.yaml:2:3: ", "unknown key \"reddis\" in cluster"},
    {"cluster: redis://h\n", "t.yaml:1:10: ", "cluster must be a mapping"},
    {"cluster:\n  redis: redis://h\n  lease: 500ms\n", "t.yaml:3:10: ", "between 1000 and 600000"},
    /* storage */
    {"storage:\n  max_size: 10 GB\n", "t.yaml:2:13: ", "is not a size"},
    {"storage:\n  max_size: -1\n", "t.yaml:2:13: ", "is not a size"},
    {"storage:\n  max_size: 16777216TiB\n", "t.yaml:2:13: ", "is not a size"},
    {"storage:\n  max_size:\n", "t.yaml:2:3: ", "max_size needs a value"},
    {"storage:\n  high_water: 101\n", "t.yaml:2:15: ", "high_water must be between 1 and 100"},
    {"storage:\n  high_water: 90%\n", "t.yaml:2:15: ", "is not a whole number"},
    {"storage:\n  low_water: 0\n", "t.yaml:2:14: ", "low_water must be between 1 and 100"},
    {"storage:\n  max_size: 1GiB\n  high_water: 80\n", "t.yaml:1:1: ",
     "low_water (80) must be below high_water (80)"},
    {"storage:\n  max_size: 1GiB\n  low_water: 95\n", "t.yaml:3:14: ",
     "low_water (95) must be below high_water (90)"},
    {"storage:\n  gc_interval: 500ms\n", "t.yaml:2:16: ", "gc_interval must be between 1000"},
    {"storage:\n  gc_interval: 0\n", "t.yaml:2:16: ", "gc_interval must be between 1000"},
    {"storage:\n  gc_interval: 366d\n", "t.yaml:2:16: ", "gc_interval must be between 1000"},
    {"storage:\n  maxsize: 1GiB\n", "t.yaml:2:3: ", "unknown key \"maxsize\" in storage"},
    /* a typo gets the nearest known key; a stranger gets none */
    {"storage:\n  max_sise: 1GiB\n", "t.yaml:2:3: ",
     "unknown key \"max_sise\" in storage (did you mean \"max_size\"?)"},
    {"tag_tll: 5m\n", "t.yaml:1:1: ", "unknown key \"tag_tll\" in the top level (did you mean \"tag_ttl\"?)"},
    {"limits:\n  max_conection: 5\n", "t.yaml:2:3: ", "(did you mean \"max_connections\"?)"},

    /* prefetch */
    {"prefetch:\n  images: nginx\n", "t.yaml:2:11: ", "prefetch images must be a list"},
    {"prefetch:\n  images: [nginx, 'a b']\n", "t.yaml:2:19: ", "is not an image reference"},
    {"prefetch:\n  images: ['']\n", "t.yaml:2:12: ", "is not an image reference"},
    {"prefetch:\n  images:\n    - \"x\\ty\"\n", "t.yaml:3:7: ", "is not an image reference"},
    {"prefetch:\n  images: [[a]]\n", "t.yaml:2:13: ", "must be a single value"},
    {"prefetch:\n  platforms: [linux]\n", "t.yaml:2:15: ", "is not os/arch or os/arch/variant"},
    {"prefetch:\n  platforms: [linux/arm/v7/x]\n", "t.yaml:2:15: ", "is not os/arch"},
    {"prefetch:\n  platforms: [Linux/amd64]\n", "t.yaml:2:15: ", "in lowercase"},
    {"prefetch:\n  platforms: [linux//amd64]\n", "t.yaml:2:15: ", "is not os/arch"},
    {"prefetch:\n  platforms: ['linux/']\n", "t.yaml:2:15: ", "is not os/arch"},
    {"prefetch:\n  platforms: ['/amd64']\n", "t.yaml:2:15: ", "is not os/arch"},
    {"prefetch:\n  platforms: [linux/amd64, 'linux/arm 64']\n", "t.yaml:2:28: ", "is not os/arch"},
    {"prefetch:\n  platforms: []\n", "t.yaml:2:3: ", "must list at least one os/arch"},
    {"prefetch:\n  platforms:\n", "t.yaml:2:3: ", "must list at least one os/arch"},
    {"prefetch:\n  interval: 500ms\n", "t.yaml:2:13: ", "0 (no re-sync) or at least 1s"},
    {"prefetch:\n  interval: 6 hours\n", "t.yaml:2:13: ", "is not a duration"},
    {"prefetch:\n  retries: 0\n", "t.yaml:2:12: ", "retries must be between 1 and 100"},
    {"prefetch:\n  retries: 101\n", "t.yaml:2:12: ", "retries must be between 1 and 100"},
    {"prefetch:\n  retry_interval: 400d\n", "t.yaml:2:19: ", "retry_interval must be between"},
    {"prefetch:\n  image: [x]\n", "t.yaml:2:3: ", "unknown key \"image\" in prefetch"},
    {"prefetch: [nginx]\n", "t.yaml:1:12: ", "prefetch must be a mapping"},

    /* storage backends */
    {"storage:\n  backend: S3\n", "t.yaml:2:12: ", "storage backend must be fs or s3"},
    {"storage:\n  backend: s3\n", "t.yaml:1:1: ", "backend s3 needs storage.s3.endpoint"},
    {"storage:\n  backend: s3\n  s3: {endpoint: 'http://127.0.0.1:7480'}\n", "t.yaml:3:3: ",
     "backend s3 needs storage.s3.bucket"},
    {"storage:\n  backend: s3\n  s3: {endpoint: 'http://h', bucket: abc}\n", "t.yaml:3:3: ",
     "needs storage.s3.access_key or access_key_file"},
    {"storage:\n  backend: s3\n  s3: {endpoint: 'http://h', bucket: abc, access_key: a}\n",
     "t.yaml:3:3: ", "needs storage.s3.secret_key or secret_key_file"},
    {"storage:\n  redirect: true\n", "t.yaml:2:13: ", "storage redirect needs backend s3"},
    {"storage:\n  redirect: yes\n", "t.yaml:2:13: ", "redirect must be true or false"},
    {"storage:\n  redirect_ttl: 8d\n", "t.yaml:2:17: ", "redirect_ttl must be between"},
    {"storage:\n  redirect_ttl: 0\n", "t.yaml:2:17: ", "redirect_ttl must be between"},
    {"storage:\n  s3: {endpoint: 'ftp://h'}\n", "t.yaml:2:18: ", "must be http:// or https://"},
    {"storage:\n  s3: {endpoint: 'http://h/bucket'}\n", "t.yaml:2:18: ",
     "must not have a path (the bucket and key go there)"},
    {"storage:\n  s3: {endpoint: 'http://a:b@h'}\n", "t.yaml:2:18: ", "no user:password@"},
    {"storage:\n  s3: {bucket: ab}\n", "t.yaml:2:16: ", "S3 bucket rules"},
    {"storage:\n  s3: {bucket: My_Bucket}\n", "t.yaml:2:16: ", "S3 bucket rules"},
    {"storage:\n  s3: {bucket: -abc}\n", "t.yaml:2:16: ", "S3 bucket rules"},
    {"storage:\n  s3: {prefix: /abs}\n", "t.yaml:2:16: ", "no leading '/'"},
    {"storage:\n  s3: {prefix: 'a//b'}\n", "t.yaml:2:16: ", "no empty segment"},
    {"storage:\n  s3: {prefix: 'a b'}\n", "t.yaml:2:16: ", "letters, digits"},
    {"storage:\n  s3: {prefix: 'a%2f'}\n", "t.yaml:2:16: ", "letters, digits"},
    {"storage:\n  s3: {region: 'US EAST'}\n", "t.yaml:2:16: ", "e.g. us-east-1"},
    {"storage:\n  s3: {access_key: 'a/b'}\n", "t.yaml:2:20: ", "without '/'"},
    {"storage:\n  s3: {secret_key: 'a b'}\n", "t.yaml:2:20: ",
     "secret_key must be non-empty, without blanks"},
    {"storage:\n  s3: {secret_key: x, secret_key_file: /nonexistent/sk}\n", "t.yaml:2:23: ",
     "give secret_key or secret_key_file, not both"},
    {"storage:\n  s3: {secret_key_file: /nonexistent/ocimirror-sk}\n", "t.yaml:2:25: ",
     "cannot read secret_key_file \"/nonexistent/ocimirror-sk\""},
    {"storage:\n  s3: {access_key_file: /nonexistent/ocimirror-ak}\n", "t.yaml:2:25: ",
     "cannot read access_key_file"},
    {"storage:\n  s3: {part_size: 4MiB}\n", "t.yaml:2:19: ", "part_size must be between"},
    {"storage:\n  s3: {part_size: 6GiB}\n", "t.yaml:2:19: ", "part_size must be between"},
    {"storage:\n  s3: {path_style: 1}\n", "t.yaml:2:20: ", "path_style must be true or false"},
    {"storage:\n  s3: {bukcet: abc}\n", "t.yaml:2:8: ",
     "unknown key \"bukcet\" in storage s3 (did you mean \"bucket\"?)"},
    {"storage:\n  s3: abc\n", "t.yaml:2:7: ", "storage s3 must be a mapping"},
};

static void test_config__each_error_names_file_line_and_column(void)
{
    for (size_t i = 0; i < OM_ARRAY_LEN(err_cases); i++) {
        const struct err_case *e = &err_cases[i];
        struct om_config *cfg = (struct om_config *)&cfg; /* must be reset */
        char err[512] = "";
        int rc = om_config_parse(&cfg, e->yaml, strlen(e->yaml), "t.yaml", err, sizeof(err));
        bool ok = rc == OM_ERR_INVALID && cfg == NULL &&
                  strncmp(err, e->where, strlen(e->where)) == 0 && strstr(err, e->contains) != NULL;
        if (!ok)
            fprintf(stderr, "case %zu: rc=%d err=\"%s\"\n  want \"%s...%s\"\n", i, rc, err,
                    e->where, e->contains);
        CHECK(ok);
        if (rc == OM_OK)
            om_config_free(cfg);
    }
}

static void test_config__an_unknown_key_far_from_every_known_one_gets_no_suggestion(void)
{
    static const char *const yaml[] = {"bogus: 1\n", "storage:\n  x: 1\n",
                                       "limits:\n  a_very_long_key_that_is_nothing_like_any: 1\n"};
    for (size_t i = 0; i < OM_ARRAY_LEN(yaml); i++) {
        struct om_config *cfg = NULL;
        char err[512] = "";
        CHECK_EQ_INT(om_config_parse(&cfg, yaml[i], strlen(yaml[i]), "t.yaml", err, sizeof(err)),
                     OM_ERR_INVALID);
        CHECK(strstr(err, "unknown key") != NULL);
        CHECK(strstr(err, "did you mean") == NULL);
    }
}

static void test_config__too_many_upstreams_aliases_or_rewrites_are_refused(void)
{
    struct om_config *cfg = NULL;
    char err[256] = "";
    char *big = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&big, &len);

    fputs("upstreams:\n", f);
    for (int i = 0; i <= OM_MAX_UPSTREAMS; i++)
        fprintf(f, "  - {name: u%d.io, url: 'https://u%d.io'}\n", i, i);
    fclose(f);
    CHECK_EQ_INT(om_config_parse(&cfg, big, len, "t.yaml", err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strncmp(err, "t.yaml:34:", 10) == 0 && strstr(err, "at most 32 upstreams") != NULL);
    free(big);

    f = open_memstream(&big, &len);
    fputs("upstreams:\n  - name: a.io\n    url: https://a.io\n    aliases:\n", f);
    for (int i = 0; i <= OM_MAX_ALIASES; i++)
        fprintf(f, "      - a%d\n", i);
    fclose(f);
    CHECK_EQ_INT(om_config_parse(&cfg, big, len, "t.yaml", err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strncmp(err, "t.yaml:21:9: ", 13) == 0 && strstr(err, "at most 16 aliases") != NULL);
    free(big);

    f = open_memstream(&big, &len);
    fputs("rewrites:\n", f);
    for (int i = 0; i <= OM_MAX_REWRITES; i++)
        fprintf(f, "  - {match: '^r%d$', target: x}\n", i);
    fclose(f);
    CHECK_EQ_INT(om_config_parse(&cfg, big, len, "t.yaml", err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strncmp(err, "t.yaml:66:", 10) == 0 && strstr(err, "at most 64 rewrites") != NULL);
    free(big);

    f = open_memstream(&big, &len);
    fputs("upstreams:\n  - name: a.io\n    urls:\n", f);
    for (int i = 0; i <= OM_MAX_UPSTREAM_URLS; i++)
        fprintf(f, "      - https://u%d.a.io\n", i);
    fclose(f);
    CHECK_EQ_INT(om_config_parse(&cfg, big, len, "t.yaml", err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strncmp(err, "t.yaml:12:9: ", 13) == 0 && strstr(err, "at most 8 urls") != NULL);
    free(big);

    f = open_memstream(&big, &len);
    fputs("upstreams:\n  - name: a.io\n    url: https://a.io\n    credentials:\n", f);
    for (int i = 0; i <= OM_MAX_CREDENTIALS; i++)
        fprintf(f, "      - {username: u%d, password: p}\n", i);
    fclose(f);
    CHECK_EQ_INT(om_config_parse(&cfg, big, len, "t.yaml", err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strncmp(err, "t.yaml:21:10: ", 14) == 0 && strstr(err, "at most 16 credentials") != NULL);
    free(big);

    /* Exactly the limits: fine. */
    f = open_memstream(&big, &len);
    fputs("upstreams:\n  - name: a.io\n    urls:\n", f);
    for (int i = 0; i < OM_MAX_UPSTREAM_URLS; i++)
        fprintf(f, "      - https://u%d.a.io\n", i);
    fputs("    credentials:\n", f);
    for (int i = 0; i < OM_MAX_CREDENTIALS; i++)
        fprintf(f, "      - {username: u%d, password: p}\n", i);
    fclose(f);
    CHECK_EQ_INT(om_config_parse(&cfg, big, len, "t.yaml", err, sizeof(err)), OM_OK);
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->upstreams[0].n_urls, OM_MAX_UPSTREAM_URLS);
        CHECK_EQ_INT(cfg->upstreams[0].n_credentials, OM_MAX_CREDENTIALS);
    }
    om_config_free(cfg);
    cfg = NULL;
    free(big);
    CHECK(cfg == NULL);
}

/* libfyaml must not print its own diagnostics: they belong in err. */
static void test_config__yaml_syntax_errors_are_not_printed_to_stderr(void)
{
    static const char *const bad[] = {"a: [1,\n", "{a: 1}\n}", "a: 'x\n", "\t- a", "a: 1\na: 2\n"};
    const char *path = tmpfile_with("stderr", "", 0);
    int saved = dup(STDERR_FILENO);
    int fd = open(path, O_WRONLY | O_TRUNC);
    struct stat st;

    CHECK(saved >= 0 && fd >= 0);
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++) {
        struct om_config *cfg = NULL;
        char err[256] = "";
        CHECK_EQ_INT(om_config_parse(&cfg, bad[i], strlen(bad[i]), "t.yaml", err, sizeof(err)),
                     OM_ERR_INVALID);
        CHECK(strncmp(err, "t.yaml:", 7) == 0);
    }
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    CHECK(stat(path, &st) == 0 && st.st_size == 0);
}

/* ---- files -------------------------------------------------------------- */

static void test_config__load_reads_a_file_and_reports_io_errors(void)
{
    struct om_config *cfg = NULL;
    char err[512] = "";
    const char *path = tmpfile_with("c.yaml", "listen: 127.0.0.1:7000\nbad: 1\n", 30);
    char *big;

    CHECK_EQ_INT(om_config_load(&cfg, path, err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strstr(err, "/c.yaml:2:1: unknown key") != NULL);
    path = tmpfile_with("c.yaml", "listen: 127.0.0.1:7000\n", 23);
    CHECK_EQ_INT(om_config_load(&cfg, path, err, sizeof(err)), OM_OK);
    if (cfg != NULL) {
        CHECK_EQ_STR(cfg->listen, "127.0.0.1:7000");
        CHECK_EQ_STR(cfg->source, path);
    }
    om_config_free(cfg);
    cfg = NULL;
    CHECK_EQ_INT(om_config_load(&cfg, "/nonexistent/ocimirror.yaml", err, sizeof(err)), OM_ERR_IO);
    CHECK(strstr(err, "/nonexistent/ocimirror.yaml: cannot read: No such file") == err);
    CHECK_EQ_INT(om_config_load(&cfg, tmpdir, err, sizeof(err)), OM_ERR_IO);
    CHECK(strstr(err, "not a regular file") != NULL);
    big = calloc(1, OM_CONFIG_MAX_BYTES + 10);
    if (big != NULL) {
        memset(big, '#', OM_CONFIG_MAX_BYTES + 1);
        path = tmpfile_with("big.yaml", big, OM_CONFIG_MAX_BYTES + 1);
        CHECK_EQ_INT(om_config_load(&cfg, path, err, sizeof(err)), OM_ERR_INVALID);
        CHECK(strstr(err, "larger than") != NULL);
        CHECK_EQ_INT(om_config_parse(&cfg, big, OM_CONFIG_MAX_BYTES + 1, "t", err, sizeof(err)),
                     OM_ERR_INVALID);
        free(big);
    }
    CHECK(cfg == NULL);
}

static void test_config__password_file_is_read_trimmed_and_bounded(void)
{
    static const struct {
        const char *content;
        size_t len;
        const char *want; /* NULL = error */
    } cases[] = {
        {"hunter2", 7, "hunter2"},
        {"hunter2\n", 8, "hunter2"},
        {"hunter2\r\n", 9, "hunter2"},
        {"two words \n\n", 12, "two words "},
        {"\n", 1, NULL},
        {"", 0, NULL},
        {"a\0b", 3, NULL},
    };
    char yaml[512], err[512];
    char *big = malloc(OM_PASSWORD_FILE_MAX + 2);

    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        struct om_config *cfg = NULL;
        const char *pw = tmpfile_with("pwcase", cases[i].content, cases[i].len);
        snprintf(yaml, sizeof(yaml),
                 "upstreams:\n  - name: a.io\n    url: https://a.io\n    password_file: %s\n", pw);
        int rc = om_config_parse(&cfg, yaml, strlen(yaml), "t.yaml", err, sizeof(err));
        if (cases[i].want != NULL) {
            CHECK_EQ_INT(rc, OM_OK);
            if (cfg != NULL)
                CHECK_EQ_STR(cfg->upstreams[0].password, cases[i].want);
        } else {
            CHECK_EQ_INT(rc, OM_ERR_INVALID);
            CHECK(strncmp(err, "t.yaml:4:20: ", 13) == 0);
        }
        om_config_free(cfg);
    }
    if (big == NULL)
        return;
    for (size_t n = OM_PASSWORD_FILE_MAX; n <= OM_PASSWORD_FILE_MAX + 1; n++) {
        struct om_config *cfg = NULL;
        memset(big, 'x', n);
        const char *pw = tmpfile_with("pwbig", big, n);
        snprintf(yaml, sizeof(yaml),
                 "upstreams:\n  - name: a.io\n    url: https://a.io\n    password_file: %s\n", pw);
        int rc = om_config_parse(&cfg, yaml, strlen(yaml), "t.yaml", err, sizeof(err));
        CHECK_EQ_INT(rc, n == OM_PASSWORD_FILE_MAX ? OM_OK : OM_ERR_INVALID);
        if (rc != OM_OK)
            CHECK(strstr(err, "larger than 4096 bytes") != NULL);
        om_config_free(cfg);
    }
    free(big);
}

static void test_config__public_url_takes_a_scheme_host_and_port_only(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"http://m", "http://m"},
        {"https://mirror.example", "https://mirror.example"},
        {"https://mirror.example/", "https://mirror.example"},
        {"https://m.example:5000", "https://m.example:5000"},
        {"http://127.0.0.1:5000/", "http://127.0.0.1:5000"},
        {"https://[::1]:5000", "https://[::1]:5000"},
        {"https://[fe80::1]/", "https://[fe80::1]"},
        {"HTTPS://Mirror.Example:65535", "HTTPS://Mirror.Example:65535"},
        {"http://my_host.local:1", "http://my_host.local:1"},
    };
    char yaml[256];

    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        snprintf(yaml, sizeof(yaml), "public_url: '%s'\n", cases[i].in);
        struct om_config *cfg = parse_ok(yaml);
        if (cfg != NULL)
            CHECK_EQ_STR(cfg->public_url, cases[i].want);
        om_config_free(cfg);
    }
    /* null = unset, as by default */
    struct om_config *cfg = parse_ok("public_url: ~\n");
    if (cfg != NULL)
        CHECK(cfg->public_url == NULL);
    om_config_free(cfg);
}

static void test_config__admin_token_file_is_read_trimmed_and_bounded(void)
{
    static const struct {
        const char *content;
        size_t len;
        const char *want; /* NULL = error */
    } cases[] = {
        {"t0ken", 5, "t0ken"},
        {"t0ken\n", 6, "t0ken"},
        {"t0ken\r\n", 7, "t0ken"},
        {"  t0ken \t\n\n", 11, "t0ken"},
        {"\n t0ken", 7, "t0ken"},
        {"two words\n", 10, NULL},
        {"a\001b", 3, NULL},
        {" \n", 2, NULL},
        {"", 0, NULL},
        {"a\0b", 3, NULL},
    };
    char yaml[512], err[512];
    char *big = malloc(OM_ADMIN_TOKEN_FILE_MAX + 2);

    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        struct om_config *cfg = NULL;
        const char *tok = tmpfile_with("tok", cases[i].content, cases[i].len);
        snprintf(yaml, sizeof(yaml), "admin:\n  token_file: %s\n  protect_reads: true\n", tok);
        int rc = om_config_parse(&cfg, yaml, strlen(yaml), "t.yaml", err, sizeof(err));
        if (cases[i].want != NULL) {
            CHECK_EQ_INT(rc, OM_OK);
            if (cfg != NULL) {
                CHECK_EQ_STR(cfg->admin_token, cases[i].want);
                CHECK_EQ_STR(cfg->admin_token_file, tok);
                CHECK(cfg->admin_protect_reads);
            }
        } else {
            if (rc == OM_OK || strncmp(err, "t.yaml:2:15: ", 13) != 0)
                fprintf(stderr, "token file case %zu: rc %d \"%s\"\n", i, rc, err);
            CHECK_EQ_INT(rc, OM_ERR_INVALID);
            CHECK(strncmp(err, "t.yaml:2:15: ", 13) == 0);
        }
        om_config_free(cfg);
    }
    if (big == NULL)
        return;
    for (size_t n = OM_ADMIN_TOKEN_FILE_MAX; n <= OM_ADMIN_TOKEN_FILE_MAX + 1; n++) {
        struct om_config *cfg = NULL;
        memset(big, 'x', n);
        const char *tok = tmpfile_with("tokbig", big, n);
        snprintf(yaml, sizeof(yaml), "admin:\n  token_file: %s\n", tok);
        int rc = om_config_parse(&cfg, yaml, strlen(yaml), "t.yaml", err, sizeof(err));
        CHECK_EQ_INT(rc, n == OM_ADMIN_TOKEN_FILE_MAX ? OM_OK : OM_ERR_INVALID);
        if (rc == OM_OK && cfg != NULL)
            CHECK_EQ_INT(strlen(cfg->admin_token), OM_ADMIN_TOKEN_FILE_MAX);
        if (rc != OM_OK)
            CHECK(strstr(err, "token_file") != NULL && strstr(err, "larger than 4096 bytes") != NULL);
        om_config_free(cfg);
    }
    free(big);
}

static void test_config__storage_limits_and_prefetch_accept_good_values(void)
{
    struct om_config *cfg;

    /* without max_size the water marks are not compared */
    cfg = parse_ok("storage:\n  low_water: 95\n  high_water: 50\n  gc_interval: 1s\n");
    if (cfg != NULL) {
        CHECK(cfg->storage_max_size == 0);
        CHECK_EQ_INT(cfg->storage_low_water, 95);
        CHECK_EQ_INT(cfg->storage_high_water, 50);
        CHECK_EQ_INT(cfg->gc_interval_ms, 1000);
        CHECK_EQ_STR(cfg->storage_path, "./ocimirror-data"); /* not given: default */
    }
    om_config_free(cfg);
    cfg = parse_ok("storage: {max_size: 10GB, high_water: 100, low_water: 99}\n");
    if (cfg != NULL) {
        CHECK(cfg->storage_max_size == 10000000000ull);
        CHECK_EQ_INT(cfg->storage_high_water, 100);
        CHECK_EQ_INT(cfg->storage_low_water, 99);
    }
    om_config_free(cfg);
    cfg = parse_ok("storage: {max_size: 16777215TiB, high_water: 2, low_water: 1}\n");
    if (cfg != NULL)
        CHECK(cfg->storage_max_size == 16777215ull << 40);
    om_config_free(cfg);

    static const struct {
        const char *interval;
        uint64_t ms;
    } intervals[] = {{"0", 0}, {"0s", 0}, {"0ms", 0}, {"1s", 1000}, {"1000ms", 1000}, {"1d", 86400000}};
    char yaml[256];
    for (size_t i = 0; i < OM_ARRAY_LEN(intervals); i++) {
        snprintf(yaml, sizeof(yaml), "prefetch:\n  interval: %s\n", intervals[i].interval);
        cfg = parse_ok(yaml);
        if (cfg != NULL)
            CHECK(cfg->prefetch_interval_ms == intervals[i].ms);
        om_config_free(cfg);
    }

    cfg = parse_ok("prefetch:\n  images: [busybox, 'localhost:5000/a/b:c', "
                   "'docker.io/library/nginx@sha256:abc']\n"
                   "  platforms: [linux/ppc64le, linux/s390x, linux/386, linux/arm64/v8]\n"
                   "  retries: 100\n  retry_interval: 0\n");
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->n_prefetch_images, 3);
        CHECK_EQ_STR(cfg->prefetch_images[1], "localhost:5000/a/b:c");
        CHECK_EQ_INT(cfg->n_prefetch_platforms, 4);
        CHECK_EQ_STR(cfg->prefetch_platforms[3], "linux/arm64/v8");
        CHECK_EQ_INT(cfg->prefetch_retries, 100);
        CHECK_EQ_INT(cfg->prefetch_retry_interval_ms, 0);
        round_trip(cfg);
    }
    om_config_free(cfg);
    /* an empty or null images list is fine; platforms keep their default */
    cfg = parse_ok("prefetch:\n  images:\n");
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->n_prefetch_images, 0);
        CHECK_EQ_INT(cfg->n_prefetch_platforms, 2);
    }
    om_config_free(cfg);
    cfg = parse_ok("prefetch: {images: []}\nadmin: {}\nstorage: {}\n");
    if (cfg != NULL)
        check_defaults(cfg);
    om_config_free(cfg);
}

static void test_config__prefetch_lists_and_entries_are_bounded(void)
{
    struct om_config *cfg = NULL;
    char err[256] = "";
    char *big = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&big, &len);

    /* the largest list, of the longest entries, is accepted */
    fputs("prefetch:\n  images:\n", f);
    for (int i = 0; i < OM_MAX_PREFETCH_IMAGES; i++)
        fprintf(f, "    - r%03d/%0*d\n", i, OM_PREFETCH_IMAGE_MAX - 5, i);
    fclose(f);
    CHECK_EQ_INT(om_config_parse(&cfg, big, len, "t.yaml", err, sizeof(err)), OM_OK);
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->n_prefetch_images, OM_MAX_PREFETCH_IMAGES);
        CHECK_EQ_INT(strlen(cfg->prefetch_images[255]), OM_PREFETCH_IMAGE_MAX);
        round_trip(cfg);
    }
    om_config_free(cfg);
    cfg = NULL;
    free(big);

    /* one entry too many: named at its line */
    f = open_memstream(&big, &len);
    fputs("prefetch:\n  images:\n", f);
    for (int i = 0; i <= OM_MAX_PREFETCH_IMAGES; i++)
        fprintf(f, "    - img%d\n", i);
    fclose(f);
    CHECK_EQ_INT(om_config_parse(&cfg, big, len, "t.yaml", err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strncmp(err, "t.yaml:259:7: ", 14) == 0 && strstr(err, "at most 256 prefetch images") != NULL);
    free(big);

    /* one byte too long */
    f = open_memstream(&big, &len);
    fprintf(f, "prefetch:\n  images:\n    - ok\n    - %0*d\n", OM_PREFETCH_IMAGE_MAX + 1, 7);
    fclose(f);
    CHECK_EQ_INT(om_config_parse(&cfg, big, len, "t.yaml", err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strncmp(err, "t.yaml:4:7: ", 12) == 0 && strstr(err, "longer than 512 bytes") != NULL);
    free(big);

    f = open_memstream(&big, &len);
    fputs("prefetch:\n  platforms:\n", f);
    for (int i = 0; i <= OM_MAX_PREFETCH_PLATFORMS; i++)
        fprintf(f, "    - linux/arch%d\n", i);
    fclose(f);
    CHECK_EQ_INT(om_config_parse(&cfg, big, len, "t.yaml", err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strncmp(err, "t.yaml:35:7: ", 13) == 0 &&
          strstr(err, "at most 32 prefetch platforms") != NULL);
    free(big);

    f = open_memstream(&big, &len);
    fprintf(f, "prefetch:\n  platforms: [linux/%0*d]\n", OM_PREFETCH_PLATFORM_MAX - 5, 1);
    fclose(f);
    CHECK_EQ_INT(om_config_parse(&cfg, big, len, "t.yaml", err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strncmp(err, "t.yaml:2:15: ", 13) == 0 && strstr(err, "longer than 64 bytes") != NULL);
    free(big);
    CHECK(cfg == NULL);
}

/* ---- dump --------------------------------------------------------------- */

static void round_trip(const struct om_config *cfg)
{
    char *first = dump_to_string(cfg), *second = NULL;
    struct om_config *again = NULL;

    if (first == NULL)
        return;
    again = parse_ok(first);
    if (again != NULL)
        second = dump_to_string(again);
    CHECK(second != NULL);
    /* identical but for the source line at the top */
    if (second != NULL) {
        const char *a = strchr(first, '\n'), *b = strchr(second, '\n');
        CHECK(a != NULL && b != NULL && strcmp(a, b) == 0);
        if (a != NULL && b != NULL && strcmp(a, b) != 0)
            fprintf(stderr, "--- first\n%s--- second\n%s", first, second);
    }
    if (again != NULL) {
        CHECK_EQ_INT(again->n_upstreams, cfg->n_upstreams);
        CHECK_EQ_INT(again->limits.max_manifest_bytes, cfg->limits.max_manifest_bytes);
        CHECK_EQ_INT(again->limits.max_tags, cfg->limits.max_tags);
        CHECK_EQ_INT(again->tag_ttl_ms, cfg->tag_ttl_ms);
        CHECK_EQ_STR(again->listen, cfg->listen);
        CHECK_EQ_STR(again->storage_path, cfg->storage_path);
    }
    om_config_free(again);
    free(first);
    free(second);
}

/* cluster.*: the secrets come from files, the dump names the files and
 * redacts a password written in the URL, and nothing is set by default. */
static void test_config__cluster_keys_read_their_secrets_and_dump_none(void)
{
    char yaml[1024], err[512] = "";
    const char *pw = NULL, *tok = NULL;
    char pwp[256], tokp[256];
    struct om_config *cfg = NULL;
    char *dump = NULL;

    CHECK_EQ_INT(om_config_default(&cfg), OM_OK);
    CHECK(cfg->cluster_redis == NULL && cfg->cluster_peer_url == NULL &&
          cfg->cluster_redis_password == NULL && cfg->cluster_peer_token == NULL);
    dump = dump_to_string(cfg);
    CHECK(dump != NULL && strstr(dump, "cluster:") == NULL);
    free(dump);
    om_config_free(cfg);
    cfg = NULL;

    pw = tmpfile_with("redis-pw", "p w d\n", 6); /* inner blanks stay, the newline goes */
    snprintf(pwp, sizeof(pwp), "%s", pw);
    tok = tmpfile_with("peer-tok", "  t0ken \n", 9);
    snprintf(tokp, sizeof(tokp), "%s", tok);
    snprintf(yaml, sizeof(yaml),
             "cluster:\n  redis: unix:///run/redis/redis.sock?db=2\n  redis_password_file: %s\n"
             "  peer_url: http://10.0.0.5:5000/\n  peer_token_file: %s\n  lease: 3s\n",
             pwp, tokp);
    cfg = parse_ok(yaml);
    if (cfg != NULL) {
        CHECK_EQ_STR(cfg->cluster_redis, "unix:///run/redis/redis.sock?db=2");
        CHECK_EQ_STR(cfg->cluster_redis_password, "p w d");
        CHECK_EQ_STR(cfg->cluster_redis_password_file, pwp);
        CHECK_EQ_STR(cfg->cluster_peer_url, "http://10.0.0.5:5000");
        CHECK_EQ_STR(cfg->cluster_peer_token, "t0ken");
        CHECK_EQ_STR(cfg->cluster_peer_token_file, tokp);
        CHECK(cfg->cluster_lease_ms == 3000);
        dump = dump_to_string(cfg);
        CHECK(dump != NULL && strstr(dump, "p w d") == NULL && strstr(dump, "t0ken") == NULL);
        CHECK(dump != NULL && strstr(dump, pwp) != NULL && strstr(dump, tokp) != NULL);
        free(dump);
        round_trip(cfg);
        om_config_free(cfg);
    }
    cfg = parse_ok("cluster:\n  redis: redis://mirror:s3cret@redis.internal:6380/1\n");
    if (cfg != NULL) {
        dump = dump_to_string(cfg);
        CHECK(dump != NULL && strstr(dump, "s3cret") == NULL);
        CHECK(dump != NULL &&
              strstr(dump, "redis: \"redis://mirror:<redacted>@redis.internal:6380/1\"") != NULL);
        free(dump);
        om_config_free(cfg);
    }
    /* a password file larger than the limit */
    char big[600];
    memset(big, 'x', sizeof(big));
    pw = tmpfile_with("redis-pw-big", big, sizeof(big));
    snprintf(yaml, sizeof(yaml), "cluster:\n  redis: redis://h\n  redis_password_file: %s\n", pw);
    CHECK_EQ_INT(om_config_parse(&cfg, yaml, strlen(yaml), "t.yaml", err, sizeof(err)),
                 OM_ERR_INVALID);
    CHECK(strstr(err, "larger than 512 bytes") != NULL);
}

static void test_config__dump_reads_back_to_the_same_config(void)
{
    struct om_config *cfg = NULL;
    char *yaml = full_yaml();

    CHECK_EQ_INT(om_config_default(&cfg), OM_OK);
    if (cfg != NULL)
        round_trip(cfg);
    om_config_free(cfg);
    cfg = yaml != NULL ? parse_ok(yaml) : NULL;
    if (cfg != NULL)
        round_trip(cfg);
    om_config_free(cfg);
    free(yaml);
    /* strings that need escaping survive */
    cfg = parse_ok("storage:\n  path: \"/tmp/q\\\"uote\\\\back\\tslash/é\"\n"
                   "rewrites:\n  - match: '^(a|b)\\.\"c\"$'\n    target: 'x/\\1'\n"
                   "tag_ttl: 1500ms\n"
                   "limits: {max_url_bytes: 1000, max_manifest_bytes: 1GiB}\n");
    if (cfg != NULL) {
        CHECK_EQ_STR(cfg->storage_path, "/tmp/q\"uote\\back\tslash/é");
        round_trip(cfg);
    }
    om_config_free(cfg);
}

static void test_config__dump_never_shows_a_password(void)
{
    char *yaml = full_yaml();
    struct om_config *cfg = yaml != NULL ? parse_ok(yaml) : NULL;
    char *out = cfg != NULL ? dump_to_string(cfg) : NULL;

    if (out != NULL) {
        CHECK(strstr(out, "s3cr3t-Pa55") == NULL);
        CHECK(strstr(out, "quay-t0ken") == NULL);   /* from password_file */
        CHECK(strstr(out, "p00l-Pw-1") == NULL);    /* a pool account's */
        CHECK(strstr(out, "credentials:\n      - username: \"puller-1\"\n"
                          "        password: \"<redacted>\"\n"
                          "      - username: \"puller-2\"\n        password_file: \"") != NULL);
        CHECK(strstr(out, "urls: [\"https://registry.pool.example\", "
                          "\"https://mirror.pool.example:8443/v\"]\n") != NULL);
        CHECK(strstr(out, "pr0xy-pw") == NULL);     /* proxy user:password@ */
        CHECK(strstr(out, "password: \"<redacted>\"") != NULL);
        CHECK(strstr(out, "password_file: \"") != NULL);
        CHECK(strstr(out, "proxy: \"http://<redacted>@proxy.internal:3128\"") != NULL);
        CHECK(strstr(out, "username: \"alice\"") != NULL);
        CHECK(strstr(out, "adm1n-T0ken") == NULL); /* admin token */
        CHECK(strstr(out, "admin:\n  token: \"<redacted>\"\n  protect_reads: true\n") != NULL);
        CHECK(strstr(out, "s3-Secr3t") == NULL);   /* the S3 secret key */
        CHECK(strstr(out, "    secret_key: \"<redacted>\"\n") != NULL);
        CHECK(strstr(out, "    access_key: \"AKIAEXAMPLEKEY\"\n") != NULL); /* an id, shown */
    }
    free(out);
    om_config_free(cfg);
    free(yaml);
}

/* A token read from token_file: the dump names the file, never the token,
 * and reads back (reading the file again) to the same config. */
static void test_config__s3_key_files_are_read_trimmed_and_dumped_as_paths(void)
{
    char ak[256], sk[256];
    snprintf(ak, sizeof(ak), "%s", tmpfile_with("ak", " AKIDFILE\n", 10));
    snprintf(sk, sizeof(sk), "%s", tmpfile_with("sk", "f1le-S3cret\r\n", 13));
    char yaml[1024], want[600];
    struct om_config *cfg = NULL;
    char *out = NULL;

    snprintf(yaml, sizeof(yaml),
             "storage:\n  backend: s3\n  s3:\n    endpoint: http://127.0.0.1:7480\n"
             "    bucket: abc\n    access_key_file: %s\n    secret_key_file: %s\n", ak, sk);
    snprintf(want, sizeof(want), "    access_key_file: \"%s\"\n    secret_key_file: \"%s\"\n",
             ak, sk);
    cfg = parse_ok(yaml);
    out = cfg != NULL ? dump_to_string(cfg) : NULL;
    if (out != NULL) {
        CHECK_EQ_STR(cfg->storage_s3.access_key, "AKIDFILE");
        CHECK_EQ_STR(cfg->storage_s3.secret_key, "f1le-S3cret");
        CHECK(strstr(out, "f1le-S3cret") == NULL);
        CHECK(strstr(out, "AKIDFILE") == NULL); /* the file's path, not its contents */
        CHECK(strstr(out, want) != NULL);
        CHECK(strstr(out, "    prefix: \"\"\n") != NULL);
        round_trip(cfg);
    }
    free(out);
    om_config_free(cfg);
    /* a file of blanks holds no key */
    snprintf(ak, sizeof(ak), "%s", tmpfile_with("ak2", "  \n", 3));
    snprintf(yaml, sizeof(yaml), "storage:\n  s3:\n    access_key_file: %s\n", ak);
    char err[512] = "";
    cfg = NULL;
    CHECK_EQ_INT(om_config_parse(&cfg, yaml, strlen(yaml), "t.yaml", err, sizeof(err)),
                 OM_ERR_INVALID);
    CHECK(strstr(err, "empty") != NULL);
}

static void test_config__dump_shows_the_token_file_not_the_token(void)
{
    const char *tok = tmpfile_with("tok", "f1le-T0ken\n", 11);
    char yaml[512], want[400];
    struct om_config *cfg = NULL;
    char *out = NULL;

    snprintf(yaml, sizeof(yaml), "admin:\n  token_file: %s\n", tok);
    snprintf(want, sizeof(want), "admin:\n  token_file: \"%s\"\n  protect_reads: false\n", tok);
    cfg = parse_ok(yaml);
    out = cfg != NULL ? dump_to_string(cfg) : NULL;
    if (out != NULL) {
        CHECK_EQ_STR(cfg->admin_token, "f1le-T0ken");
        CHECK(strstr(out, "f1le-T0ken") == NULL);
        CHECK(strstr(out, "<redacted>") == NULL); /* nothing to redact: only the path */
        CHECK(strstr(out, want) != NULL);
        round_trip(cfg);
    }
    free(out);
    om_config_free(cfg);
}

/* docs/ocimirror.example.yaml is valid, is exactly the defaults, and
 * mentions every key (some commented out because they need real files). */
static void test_config__the_example_file_loads_and_documents_every_key(void)
{
    static const char *const keys[] = {
        "listen:", "tls:", "cert:", "key:", "storage:", "path:", "upstreams:", "name:",
        "url:", "aliases:", "ca_file:", "insecure_skip_verify:", "username:", "password:",
        "password_file:", "proxy:", "urls:", "credentials:", "search_order:", "rewrites:", "match:", "target:",
        "tag_ttl:", "negative_ttl:", "retries:", "max:", "backoff:", "log:", "level:",
        "format:", "limits:", "max_connections:", "max_header_bytes:", "max_url_bytes:",
        "max_manifest_bytes:", "connection_timeout:", "idle_timeout:", "shutdown_grace:",
        "threads:", "max_downloads:", "max_tags:", "public_url:", "admin:", "token:", "token_file:",
        "protect_reads:", "max_size:", "high_water:", "low_water:", "gc_interval:",
        "prefetch:", "images:", "platforms:", "interval:", "retry_interval:",
        "cluster:", "redis:", "redis_password_file:", "peer_url:", "peer_token_file:",
        "backend:", "redirect:", "redirect_ttl:", "s3:", "endpoint:", "region:", "bucket:",
        "prefix:", "access_key:", "access_key_file:", "secret_key:", "secret_key_file:",
        "path_style:", "part_size:",
    };
    const char *src = __FILE__; /* .../tests/unit/core/test_config.c */
    const char *tail = strstr(src, "tests/unit/core/test_config.c");
    char path[512], err[512] = "";
    struct om_config *cfg = NULL, *def = NULL;
    char *text = NULL, *a = NULL, *b = NULL;
    size_t len = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%.*sdocs/ocimirror.example.yaml",
             tail != NULL ? (int)(tail - src) : 0, src);
    CHECK_EQ_INT(om_config_load(&cfg, path, err, sizeof(err)), OM_OK);
    if (err[0] != '\0')
        fprintf(stderr, "%s\n", err);
    CHECK_EQ_INT(om_config_default(&def), OM_OK);
    if (cfg != NULL && def != NULL) {
        a = dump_to_string(cfg);
        b = dump_to_string(def);
        CHECK(a != NULL && b != NULL && strcmp(strchr(a, '\n'), strchr(b, '\n')) == 0);
    }
    f = fopen(path, "rb");
    if (f != NULL) {
        text = calloc(1, 65536);
        len = text != NULL ? fread(text, 1, 65535, f) : 0;
        fclose(f);
    }
    CHECK(len > 0);
    for (size_t i = 0; len > 0 && i < OM_ARRAY_LEN(keys); i++) {
        if (strstr(text, keys[i]) == NULL)
            fprintf(stderr, "example lacks %s\n", keys[i]);
        CHECK(strstr(text, keys[i]) != NULL);
    }
    free(text);
    free(a);
    free(b);
    om_config_free(cfg);
    om_config_free(def);
}

/* ---- truncated input ---------------------------------------------------- */

/* Every prefix of a valid file either parses or fails with a position; no
 * crash, no leak (ASan), nothing half-returned. */
static void test_config__every_truncated_prefix_parses_or_fails_cleanly(void)
{
    char *yaml = full_yaml();
    size_t len = yaml != NULL ? strlen(yaml) : 0;
    int n_ok = 0, n_err = 0;

    for (size_t n = 0; n <= len; n++) {
        struct om_config *cfg = NULL;
        char err[512] = "";
        char *copy = malloc(n + 1); /* exact size so ASan sees overreads */
        if (copy == NULL)
            break;
        memcpy(copy, yaml, n);
        int rc = om_config_parse(&cfg, copy, n, "t.yaml", err, sizeof(err));
        if (rc == OM_OK) {
            CHECK(cfg != NULL);
            n_ok++;
        } else {
            CHECK_EQ_INT(rc, OM_ERR_INVALID);
            CHECK(cfg == NULL);
            if (strncmp(err, "t.yaml:", 7) != 0)
                fprintf(stderr, "prefix %zu: bad message \"%s\"\n", n, err);
            CHECK(strncmp(err, "t.yaml:", 7) == 0);
            n_err++;
        }
        om_config_free(cfg);
        free(copy);
    }
    CHECK(n_ok > 10 && n_err > 10); /* both outcomes were exercised */
    free(yaml);
}

/* Each byte of a valid file replaced by a YAML-significant character: the
 * parser must answer OK or a positioned error, never crash or leak. */
static void test_config__single_byte_corruptions_parse_or_fail_cleanly(void)
{
    static const char subst[] = {':', '[', '{', '"', '\'', '\t', '\0', '&', '*', '-', '\n', '\xff'};
    char *yaml = full_yaml();
    size_t len = yaml != NULL ? strlen(yaml) : 0;
    int bad = 0;

    for (size_t pos = 0; pos < len; pos++) {
        for (size_t k = 0; k < sizeof(subst); k++) {
            struct om_config *cfg = NULL;
            char err[256] = "";
            char saved = yaml[pos];
            yaml[pos] = subst[k];
            int rc = om_config_parse(&cfg, yaml, len, "t.yaml", err, sizeof(err));
            yaml[pos] = saved;
            if (rc == OM_OK ? cfg == NULL
                            : rc != OM_ERR_INVALID || cfg != NULL || strncmp(err, "t.yaml:", 7) != 0) {
                if (bad++ < 5)
                    fprintf(stderr, "byte %zu -> 0x%02x: rc %d \"%s\"\n", pos,
                            (unsigned char)subst[k], rc, err);
            }
            om_config_free(cfg);
        }
    }
    CHECK_EQ_INT(bad, 0);
    free(yaml);
}

static void test_config__a_missing_or_tiny_err_buffer_is_fine(void)
{
    struct om_config *cfg = NULL;
    char err[8] = "xxxxxxx";
    const char *bad = "bogus: 1\n";

    CHECK_EQ_INT(om_config_parse(&cfg, bad, strlen(bad), "t.yaml", NULL, 0), OM_ERR_INVALID);
    CHECK_EQ_INT(om_config_parse(&cfg, bad, strlen(bad), "t.yaml", err, 0), OM_ERR_INVALID);
    CHECK_EQ_STR(err, "xxxxxxx");
    CHECK_EQ_INT(om_config_parse(&cfg, bad, strlen(bad), "t.yaml", err, sizeof(err)), OM_ERR_INVALID);
    CHECK_EQ_STR(err, "t.yaml:");
    CHECK_EQ_INT(om_config_parse(&cfg, bad, strlen(bad), NULL, err, sizeof(err)), OM_ERR_INVALID);
    CHECK_EQ_STR(err, "<config");
    CHECK(cfg == NULL);
    CHECK_EQ_INT(om_config_parse(&cfg, NULL, 0, NULL, err, sizeof(err)), OM_OK);
    CHECK(cfg != NULL);
    om_config_free(cfg);
    om_config_free(NULL);
}

/* ---- value parsers ------------------------------------------------------ */

static void test_config__durations_parse_with_units_and_overflow_checks(void)
{
    static const struct {
        const char *s;
        int rc;
        uint64_t ms;
    } cases[] = {
        {"250ms", OM_OK, 250},
        {"2s", OM_OK, 2000},
        {"5m", OM_OK, 300000},
        {"1h", OM_OK, 3600000},
        {"1d", OM_OK, 86400000},
        {"30", OM_OK, 30000},
        {"0", OM_OK, 0},
        {"0ms", OM_OK, 0},
        {"007s", OM_OK, 7000},
        {"18446744073709551615ms", OM_OK, UINT64_MAX},
        {"18446744073709551s", OM_OK, 18446744073709551000ull},
        {"213503982334d", OM_OK, 213503982334ull * 86400000},
        {"18446744073709551616ms", OM_ERR_INVALID, 0},
        {"18446744073709552s", OM_ERR_INVALID, 0},
        {"18446744073709552", OM_ERR_INVALID, 0},
        {"213503982335d", OM_ERR_INVALID, 0},
        {"99999999999999999999999", OM_ERR_INVALID, 0},
        {"", OM_ERR_INVALID, 0},
        {"ms", OM_ERR_INVALID, 0},
        {"-1", OM_ERR_INVALID, 0},
        {"+5", OM_ERR_INVALID, 0},
        {" 5", OM_ERR_INVALID, 0},
        {"5 ", OM_ERR_INVALID, 0},
        {"5 s", OM_ERR_INVALID, 0},
        {"5S", OM_ERR_INVALID, 0},
        {"1.5s", OM_ERR_INVALID, 0},
        {"5sec", OM_ERR_INVALID, 0},
        {"1h30m", OM_ERR_INVALID, 0},
        {"0x10", OM_ERR_INVALID, 0},
        {"5us", OM_ERR_INVALID, 0},
        {"000000000000000000000000000000001s", OM_ERR_INVALID, 0}, /* over the length limit */
    };
    uint64_t v = 0;

    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        v = 12345;
        int rc = om_parse_duration_ms(cases[i].s, &v);
        if (rc != cases[i].rc)
            fprintf(stderr, "duration \"%s\": rc %d\n", cases[i].s, rc);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (cases[i].rc == OM_OK)
            CHECK(v == cases[i].ms);
    }
    CHECK_EQ_INT(om_parse_duration_ms(NULL, &v), OM_ERR_INVALID);
}

static void test_config__sizes_parse_binary_and_si_units_with_overflow_checks(void)
{
    static const struct {
        const char *s;
        int rc;
        uint64_t n;
    } cases[] = {
        {"512", OM_OK, 512},
        {"7B", OM_OK, 7},
        {"64KiB", OM_OK, 65536},
        {"4MiB", OM_OK, 4194304},
        {"50GiB", OM_OK, 50ull << 30},
        {"1TiB", OM_OK, 1ull << 40},
        {"10GB", OM_OK, 10000000000ull},
        {"1kB", OM_OK, 1000},
        {"1KB", OM_OK, 1000},
        {"3MB", OM_OK, 3000000},
        {"2TB", OM_OK, 2000000000000ull},
        {"0", OM_OK, 0},
        {"18446744073709551615", OM_OK, UINT64_MAX},
        {"16777215TiB", OM_OK, 16777215ull << 40},
        {"18446744TB", OM_OK, 18446744000000000000ull},
        {"18446744073709551616", OM_ERR_INVALID, 0},
        {"16777216TiB", OM_ERR_INVALID, 0},
        {"18446745TB", OM_ERR_INVALID, 0},
        {"", OM_ERR_INVALID, 0},
        {"KiB", OM_ERR_INVALID, 0},
        {"4 MiB", OM_ERR_INVALID, 0},
        {"4mib", OM_ERR_INVALID, 0},
        {"4M", OM_ERR_INVALID, 0},
        {"4MiBs", OM_ERR_INVALID, 0},
        {"-1", OM_ERR_INVALID, 0},
        {"1.5GiB", OM_ERR_INVALID, 0},
        {"1e6", OM_ERR_INVALID, 0},
    };
    uint64_t v = 0;

    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        v = 12345;
        int rc = om_parse_size(cases[i].s, &v);
        if (rc != cases[i].rc)
            fprintf(stderr, "size \"%s\": rc %d\n", cases[i].s, rc);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (cases[i].rc == OM_OK)
            CHECK(v == cases[i].n);
    }
    CHECK_EQ_INT(om_parse_size(NULL, &v), OM_ERR_INVALID);
}

static void test_config__formatted_durations_and_sizes_parse_back_exactly(void)
{
    static const uint64_t values[] = {
        0, 1, 999, 1000, 1500, 60000, 90000, 3600000, 86400000, 86400001,
        1024, 1536, 1048576, 4194304, 10000000, 1ull << 40, 3ull << 41, UINT64_MAX,
    };
    static const struct {
        uint64_t v;
        const char *dur, *size;
    } exact[] = {
        {0, "0s", "0"},
        {500, "500ms", "500"},
        {300000, "5m", "300000"},
        {86400000, "1d", "84375KiB"},
        {86400001, "86400001ms", "86400001"},
        {4194304, "4194304ms", "4MiB"},
        {16384, "16384ms", "16KiB"},
        {1ull << 40, "1099511627776ms", "1TiB"},
    };
    char buf[32];

    for (size_t i = 0; i < OM_ARRAY_LEN(values); i++) {
        uint64_t back = 0;
        om_format_duration_ms(values[i], buf, sizeof(buf));
        CHECK(om_parse_duration_ms(buf, &back) == OM_OK && back == values[i]);
        om_format_size(values[i], buf, sizeof(buf));
        CHECK(om_parse_size(buf, &back) == OM_OK && back == values[i]);
    }
    for (size_t i = 0; i < OM_ARRAY_LEN(exact); i++) {
        om_format_duration_ms(exact[i].v, buf, sizeof(buf));
        CHECK_EQ_STR(buf, exact[i].dur);
        om_format_size(exact[i].v, buf, sizeof(buf));
        CHECK_EQ_STR(buf, exact[i].size);
    }
}

static void test_config__listen_addresses_need_a_host_and_a_port(void)
{
    static const struct {
        const char *s;
        const char *host; /* NULL = invalid */
        unsigned port;
    } cases[] = {
        {"0.0.0.0:5000", "0.0.0.0", 5000},
        {"[::]:5000", "::", 5000},
        {"[::1]:443", "::1", 443},
        {"[fe80::1%eth0]:80", "fe80::1%eth0", 80},
        {"localhost:1", "localhost", 1},
        {"mirror.example.com:65535", "mirror.example.com", 65535},
        {"0.0.0.0", NULL, 0},
        {":5000", "", 5000},
        {"[::]", NULL, 0},
        {"[::]5000", NULL, 0},
        {"[]:80", NULL, 0},
        {"::1:5000", NULL, 0},
        {"host:0", NULL, 0},
        {"host:65536", NULL, 0},
        {"host:123456", NULL, 0},
        {"host:", NULL, 0},
        {"host:abc", NULL, 0},
        {"host:-1", NULL, 0},
        {"ho st:80", NULL, 0},
        {"http://host:80", NULL, 0},
        {"", NULL, 0},
    };
    char host[64];
    unsigned port = 0;

    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        int rc = om_parse_listen(cases[i].s, host, sizeof(host), &port);
        if ((rc == OM_OK) != (cases[i].host != NULL))
            fprintf(stderr, "listen \"%s\": rc %d\n", cases[i].s, rc);
        CHECK_EQ_INT(rc, cases[i].host != NULL ? OM_OK : OM_ERR_INVALID);
        if (rc == OM_OK && cases[i].host != NULL) {
            CHECK_EQ_STR(host, cases[i].host);
            CHECK_EQ_INT(port, cases[i].port);
        }
    }
    CHECK_EQ_INT(om_parse_listen("averyveryverylonghostname:80", host, 8, &port), OM_ERR_INVALID);
    CHECK_EQ_INT(om_parse_listen(NULL, host, sizeof(host), &port), OM_ERR_INVALID);
}

/* ---- om_strerror -------------------------------------------------------- */

static void test_config__every_error_code_has_its_own_text(void)
{
    const char *seen[16] = {0};

    for (int e = OM_OK; e >= OM_ERR_UNAVAILABLE; e--) {
        const char *s = om_strerror(e);
        CHECK(s != NULL && strcmp(s, "unknown error") != 0);
        for (int j = 0; j < -e; j++)
            CHECK(s == NULL || seen[j] == NULL || strcmp(seen[j], s) != 0);
        seen[-e] = s;
    }
    CHECK_EQ_STR(om_strerror(1), "unknown error");
    CHECK_EQ_STR(om_strerror(-1000), "unknown error");
    CHECK_EQ_STR(om_strerror(OM_ERR_NOMEM), "out of memory");
}

static void cleanup_tmpdir(void)
{
    static const char *const names[] = {"pw",     "pwcase",   "pwbig", "stderr",
                                         "c.yaml", "big.yaml", "tok",   "tokbig"};
    char path[256];

    for (size_t i = 0; i < OM_ARRAY_LEN(names); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

/* Fuzzing findings F1-F3 (docs/fuzzing.md): bytes that are not UTF-8 are
 * refused with their position (libfyaml would hang or silently stop), and
 * rewrite patterns that would make regcomp explode are refused. */
static void test_config__input_that_is_not_utf8_is_refused_with_its_position(void)
{
    static const struct {
        const char *yaml;
        size_t len;
        const char *where;
    } t[] = {
        {"%\xa2", 2, "t.yaml:1:2:"},
        {"listen: \"127.0.0.1:5000\"\n# caf\xe9\ntag_ttl: 1s\n", 41, "t.yaml:2:6:"},
        {"tag_ttl: 1s\n\xc0\xaf\n", 14, "t.yaml:2:1:"},          /* overlong */
        {"tag_ttl: 1s\n\xed\xa0\x80\n", 15, "t.yaml:2:1:"},     /* surrogate */
        {"tag_ttl: 1s\n\0\n", 14, "t.yaml:2:1:"},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(t); i++) {
        struct om_config *cfg = NULL;
        char err[512] = "";
        CHECK_EQ_INT(om_config_parse(&cfg, t[i].yaml, t[i].len, "t.yaml", err, sizeof(err)),
                     OM_ERR_INVALID);
        CHECK(cfg == NULL);
        if (strncmp(err, t[i].where, strlen(t[i].where)) != 0)
            fprintf(stderr, "case %zu: %s\n", i, err);
        CHECK(strncmp(err, t[i].where, strlen(t[i].where)) == 0);
    }
    struct om_config *cfg = parse_ok("# caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x90\xb3\ntag_ttl: 1s\n");
    om_config_free(cfg);
}

static void test_config__rewrite_patterns_too_costly_to_compile_are_refused(void)
{
    static const char *bad[] = {"^a++$", "^(a)**$", "^a*?$", "^a{2}{3}$", "^a{1000}$",
                                "^((a{200}){200}){200}$",
                                "^a?b?c?d?e?f?g?h?i?j?k?l?m?n?o?p?q?$"};
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++) {
        char yaml[256];
        snprintf(yaml, sizeof(yaml), "rewrites:\n  - match: \"%s\"\n    target: quay.io/x\n",
                 bad[i]);
        struct om_config *cfg = NULL;
        char err[512] = "";
        CHECK_EQ_INT(om_config_parse(&cfg, yaml, strlen(yaml), "t.yaml", err, sizeof(err)),
                     OM_ERR_INVALID);
        CHECK(strstr(err, "t.yaml:2:") == err && strstr(err, "too costly") != NULL);
    }
    struct om_config *cfg =
        parse_ok("rewrites:\n  - match: \"^(mirror/)?coredns(-[a-z]+)*$\"\n"
                 "    target: registry.k8s.io/coredns/coredns\n  - match: \"^a\\\\++$\"\n"
                 "    target: quay.io/x\n");
    om_config_free(cfg);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
    RUN(test_config__input_that_is_not_utf8_is_refused_with_its_position);
    RUN(test_config__rewrite_patterns_too_costly_to_compile_are_refused);
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_config__defaults_match_the_header);
    RUN(test_config__empty_and_comment_only_files_give_the_defaults);
    RUN(test_config__a_file_with_every_key_sets_every_field);
    RUN(test_config__an_upstreams_list_replaces_the_defaults);
    RUN(test_config__search_order_accepts_aliases_in_any_case);
    RUN(test_config__upstream_find_ignores_case_and_length_bounds);
    RUN(test_config__overrides_check_their_values);
    RUN(test_config__each_error_names_file_line_and_column);
    RUN(test_config__an_unknown_key_far_from_every_known_one_gets_no_suggestion);
    RUN(test_config__too_many_upstreams_aliases_or_rewrites_are_refused);
    RUN(test_config__yaml_syntax_errors_are_not_printed_to_stderr);
    RUN(test_config__load_reads_a_file_and_reports_io_errors);
    RUN(test_config__password_file_is_read_trimmed_and_bounded);
    RUN(test_config__public_url_takes_a_scheme_host_and_port_only);
    RUN(test_config__admin_token_file_is_read_trimmed_and_bounded);
    RUN(test_config__storage_limits_and_prefetch_accept_good_values);
    RUN(test_config__prefetch_lists_and_entries_are_bounded);
    RUN(test_config__cluster_keys_read_their_secrets_and_dump_none);
    RUN(test_config__dump_reads_back_to_the_same_config);
    RUN(test_config__dump_never_shows_a_password);
    RUN(test_config__dump_shows_the_token_file_not_the_token);
    RUN(test_config__s3_key_files_are_read_trimmed_and_dumped_as_paths);
    RUN(test_config__the_example_file_loads_and_documents_every_key);
    RUN(test_config__every_truncated_prefix_parses_or_fails_cleanly);
    RUN(test_config__single_byte_corruptions_parse_or_fail_cleanly);
    RUN(test_config__a_missing_or_tiny_err_buffer_is_fine);
    RUN(test_config__durations_parse_with_units_and_overflow_checks);
    RUN(test_config__sizes_parse_binary_and_si_units_with_overflow_checks);
    RUN(test_config__formatted_durations_and_sizes_parse_back_exactly);
    RUN(test_config__listen_addresses_need_a_host_and_a_port);
    RUN(test_config__every_error_code_has_its_own_text);
    cleanup_tmpdir();
    return test_done();
}
