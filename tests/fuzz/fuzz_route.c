/* fuzz_route.c — routing a requested name (+ ?ns=) to an upstream
 * (src/route.c: om_route_resolve), on the embedded default config and on a
 * richer one with aliases, a partial search order and rewrite rules whose
 * targets are built from groups of the client's name.
 *
 * Input: the name, then optionally a NUL and the raw ?ns= value, which goes
 * through om_url_decode first exactly as server/dispatch.c does (a value that does
 * not decode is answered 400 there and never routed).  Names that are not
 * valid repository names are routed too (the function must not crash),
 * but only valid ones — what the server passes — are held to the
 * invariants in fuzz_route_check.h.
 */
#include "core/config.h"
#include "fuzz_route_check.h"

/* Not a real deployment: a config that reaches every branch of route.c. */
static const char rich_yaml[] =
    "upstreams:\n"
    "  - name: docker.io\n"
    "    url: https://registry-1.docker.io\n"
    "    aliases: [index.docker.io, registry-1.docker.io]\n"
    "  - name: registry.k8s.io\n"
    "    url: https://registry.k8s.io\n"
    "    aliases: [k8s.gcr.io]\n"
    "  - name: quay.io\n"
    "    url: https://quay.io\n"
    "  - name: local\n"
    "    url: http://127.0.0.1:5001\n"
    "    aliases: [\"localhost:5000\", LOCAL.example]\n"
    "  - name: ghcr.io\n"
    "    url: https://ghcr.io\n"
    "search_order: [ghcr.io, docker.io, quay.io]\n"
    "rewrites:\n"
    "  - match: \"^coredns$\"\n"
    "    target: registry.k8s.io/coredns/coredns\n"
    "  - match: \"^k8s/(.*)$\"\n"
    "    target: \"registry.k8s.io/\\\\1\"\n"
    "  - match: \"^([a-z0-9]+)/(.*)-mirror$\"\n"
    "    target: \"quay.io/\\\\2/\\\\1\"\n"
    "  - match: \"^(x)?y(z*)$\"\n"
    "    target: \"quay.io/a\\\\1b\\\\2\"\n"
    "  - match: \"^via/([^/]+)/(.*)$\"\n"
    "    target: \"\\\\1/\\\\2\"\n"
    "  - match: \"^long/(.*)$\"\n"
    "    target: \"docker.io/\\\\1\\\\1\\\\1\"\n";

static struct om_config *cfg_default, *cfg_rich;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[512];
    (void)argc;
    (void)argv;
    FUZZ_CHECK(om_config_default(&cfg_default) == OM_OK);
    if (om_config_parse(&cfg_rich, rich_yaml, sizeof(rich_yaml) - 1, "rich.yaml", err,
                        sizeof(err)) != OM_OK) {
        fprintf(stderr, "rich.yaml: %s\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *a, *b;
    size_t alen, blen;
    char *name, *raw_ns;
    char ns[OM_NAME_MAX + 1];
    bool have_ns;

    if (cfg_default == NULL)
        LLVMFuzzerInitialize(NULL, NULL); /* the replay driver does not call it */
    if (size > 4096)
        return 0;
    fuzz_split(data, size, &a, &alen, &b, &blen);
    name = fuzz_strdup(a, alen);
    raw_ns = fuzz_memdup(b, blen);
    /* as server/dispatch.c: ns present (after a NUL) is decoded into a 256-byte
     * buffer, a failure is a 400 and nothing is routed */
    have_ns = size > 0 && memchr(data, 0, size) != NULL;
    if (have_ns && om_url_decode(ns, sizeof(ns), raw_ns, blen) != OM_OK)
        goto done;
    fuzz_route_check(cfg_default, name, have_ns ? ns : NULL, true);
    fuzz_route_check(cfg_rich, name, have_ns ? ns : NULL, true);
done:
    free(raw_ns);
    free(name);
    return 0;
}
