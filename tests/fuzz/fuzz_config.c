/* fuzz_config.c — the YAML config file (src/config*.c: om_config_parse,
 * om_config_dump, om_config_free), then routing on what was parsed.
 *
 * The config is operator input, not client input, but it is parsed by hand
 * from a libfyaml tree with many checks across keys, and a config that
 * parses must be one the rest of the mirror can live with.
 *
 * Invariants:
 *   - OM_OK gives a config, any error gives none and a message
 *     "NAME:LINE:COL: ..." (so the operator can find the line);
 *   - a parsed config is consistent: 1..OM_MAX_UPSTREAMS upstreams, each
 *     with a name and a URL; search_order entries distinct and in range;
 *     limits inside the ranges the other modules assume; tls cert and key
 *     both or neither; rewrites compiled;
 *   - dump → parse → dump is a fixed point (config.c promises the dump
 *     reads back to the same struct, secrets aside — a redacted secret
 *     reads back as the literal "<redacted>" and dumps the same);
 *   - routing a few fixed names on the parsed config keeps the routing
 *     invariants (fuzz_route_check.h), e.g. every canonical name is a valid
 *     repository name;
 *   - input that is not UTF-8 (or holds a NUL) is refused.
 *
 * Until session 3 inputs with two or more "{digit" were skipped and the
 * canonical-name check only warned, for findings F5 and F6; both were fixed
 * in 49cab2c, and the target is strict again (docs/fuzzing.md).
 */
#include <stdio.h>

#include "core/config.h"
#include "fuzz_route_check.h"

static const char *const names[] = {
    "alpine", "library/alpine", "docker.io/alpine", "quay.io/coreos/etcd", "coredns",
    "k8s.gcr.io/pause", "evil.example/x", "localhost/x", "a/b/c",
};
static const char *const nss[] = {NULL, "docker.io", "quay.io", "evil.example"};

/* RFC 3629 UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += k + 1;
    }
    return true;
}

/* The dump as a malloc'd string (caller frees). */
static char *dump(const struct om_config *cfg, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    FUZZ_CHECK(f != NULL);
    om_config_dump(cfg, f);
    FUZZ_CHECK(fclose(f) == 0);
    return buf;
}

static void check_consistent(const struct om_config *cfg)
{
    const struct om_limits *l = &cfg->limits;

    FUZZ_CHECK(cfg->n_upstreams >= 1 && cfg->n_upstreams <= OM_MAX_UPSTREAMS);
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct om_upstream_cfg *u = &cfg->upstreams[i];
        FUZZ_CHECK(u->name != NULL && u->name[0] != '\0' && u->url != NULL);
        FUZZ_CHECK(strncasecmp(u->url, "http://", 7) == 0 ||
                   strncasecmp(u->url, "https://", 8) == 0);
        FUZZ_CHECK(u->n_aliases <= OM_MAX_ALIASES);
        /* the lookup finds each upstream by its own name */
        FUZZ_CHECK(om_config_upstream_find(cfg, u->name, strlen(u->name)) == u);
        for (size_t a = 0; a < u->n_aliases; a++)
            FUZZ_CHECK(om_config_upstream_find(cfg, u->aliases[a], strlen(u->aliases[a])) == u);
    }
    FUZZ_CHECK(cfg->n_search_order <= cfg->n_upstreams);
    for (size_t i = 0; i < cfg->n_search_order; i++) {
        FUZZ_CHECK(cfg->search_order[i] < cfg->n_upstreams);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(cfg->search_order[j] != cfg->search_order[i]);
    }
    FUZZ_CHECK(cfg->n_rewrites <= OM_MAX_REWRITES);
    FUZZ_CHECK((cfg->tls_cert == NULL) == (cfg->tls_key == NULL));
    FUZZ_CHECK(cfg->listen != NULL && cfg->storage_path != NULL);
    FUZZ_CHECK(l->max_connections >= 1 && l->max_header_bytes >= 1 && l->max_url_bytes >= 1 &&
               l->max_manifest_bytes >= 1 && l->max_downloads >= 1);
    FUZZ_CHECK(cfg->retries_max >= 1);
    FUZZ_CHECK(cfg->n_prefetch_images <= OM_MAX_PREFETCH_IMAGES);
    FUZZ_CHECK(cfg->n_prefetch_platforms >= 1 &&
               cfg->n_prefetch_platforms <= OM_MAX_PREFETCH_PLATFORMS);
    if (cfg->storage_max_size != 0)
        FUZZ_CHECK(cfg->storage_low_water < cfg->storage_high_water);
    if (cfg->admin_protect_reads)
        FUZZ_CHECK(cfg->admin_token != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct om_config *cfg = NULL, *cfg2 = NULL;
    char err[512], err2[512];
    char *yaml = NULL, *d1 = NULL, *d2 = NULL;
    size_t l1 = 0, l2 = 0;
    int rc;

    if (size > 64 * 1024)
        return 0;
    yaml = fuzz_memdup(data, size);
    memset(err, 'X', sizeof(err));
    rc = om_config_parse(&cfg, yaml, size, "fuzz.yaml", err, sizeof(err));
    if (rc != OM_OK) {
        FUZZ_CHECK(cfg == NULL);
        FUZZ_CHECK(rc == OM_ERR_INVALID || rc == OM_ERR_IO || rc == OM_ERR_NOMEM ||
                   rc == OM_ERR_TOOBIG);
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
        if (strncmp(err, "fuzz.yaml:", 10) != 0)
            fprintf(stderr, "message without a position: %s\n", err);
        FUZZ_CHECK(strncmp(err, "fuzz.yaml:", 10) == 0);
        goto done;
    }
    FUZZ_CHECK(cfg != NULL);
    /* YAML is UTF-8: anything else (or a NUL) is refused, never read as far
     * as libfyaml gets (it stops silently, or loops after '%'). */
    FUZZ_CHECK(utf8_valid(data, size) && memchr(data, '\0', size) == NULL);
    check_consistent(cfg);

    /* dump → parse → dump */
    d1 = dump(cfg, &l1);
    rc = om_config_parse(&cfg2, d1, l1, "fuzz.yaml", err2, sizeof(err2));
    if (rc != OM_OK)
        fprintf(stderr, "the dump does not parse: %s\n--- dump ---\n%s\n", err2, d1);
    FUZZ_CHECK(rc == OM_OK);
    check_consistent(cfg2);
    d2 = dump(cfg2, &l2);
    if (l1 != l2 || memcmp(d1, d2, l1) != 0)
        fprintf(stderr, "--- first dump ---\n%s\n--- second dump ---\n%s\n", d1, d2);
    FUZZ_CHECK(l1 == l2 && memcmp(d1, d2, l1) == 0);

    /* routing on the parsed config */
    for (size_t i = 0; i < OM_ARRAY_LEN(names); i++)
        for (size_t k = 0; k < OM_ARRAY_LEN(nss); k++)
            fuzz_route_check(cfg, names[i], nss[k], true);
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        char n[OM_NAME_MAX + 1];
        snprintf(n, sizeof(n), "%s/x/y", cfg->upstreams[i].name);
        fuzz_route_check(cfg, n, NULL, true);
        fuzz_route_check(cfg, "x", cfg->upstreams[i].name, true);
    }
done:
    om_config_free(cfg2);
    om_config_free(cfg);
    free(d2);
    free(d1);
    free(yaml);
    return 0;
}
