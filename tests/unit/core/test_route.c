/* test_route.c — name (+ ?ns=) → upstream candidates (src/route.c).
 *
 * The config is built by hand here (not through config.c) so these tests
 * pin down routing alone: the five default upstreams in their default
 * search order, the default coredns rewrite, and a few extra rewrite rules
 * for group substitution and error cases. */
#include <stdlib.h>

#include "core/route.h"
#include "test.h"

static struct om_config cfg;

enum { UP_DOCKER, UP_K8S, UP_GCR, UP_QUAY, UP_GHCR };

/* Rewrite rules, in order; index 0 is the shipped default. */
static const struct {
    const char *match;
    const char *target;
} rewrites[] = {
    {"^coredns$", "registry.k8s.io/coredns/coredns"},              /* 0 */
    {"^k8s/(.+)$", "registry.k8s.io/\\1"},                          /* 1 */
    {"^mirror/([a-z0-9]+)/([a-z0-9]+)$", "quay.io/\\2/\\1"},        /* 2 */
    {"^hub/([a-z0-9]+)$", "docker.io/\\1"},                          /* 3 */
    {"^bad/(.+)$", "nowhere.example/\\1"},                           /* 4 */
    {"^empty/(x)?y$", "quay.io/\\1"},                                /* 5 */
    {"^long/(.+)$", "quay.io/\\1/\\1"},                              /* 6 */
    {"^noslash$", "quay.io"},                                        /* 7 */
    {"^upper$", "quay.io/UPPER"},                                    /* 8 */
    {"^first(.*)$", "ghcr.io/first\\1"},                             /* 9 */
    {"^firstmatch$", "quay.io/second"},                              /* 10: never reached */
    {"^loop$", "docker.io/coredns"},                                 /* 11 */
    {"^unused$", "quay.io/a\\9b\\"},                                 /* 12 */
};

static void add_upstream(const char *name, const char *url, bool hub,
                         const char *a0, const char *a1, const char *a2)
{
    struct om_upstream_cfg *u = &cfg.upstreams[cfg.n_upstreams++];
    const char *aliases[] = {a0, a1, a2};
    u->name = (char *)name;
    u->url = (char *)url;
    u->is_docker_hub = hub;
    for (size_t i = 0; i < OM_ARRAY_LEN(aliases); i++) {
        if (aliases[i] != NULL)
            u->aliases[u->n_aliases++] = (char *)aliases[i];
    }
}

static void setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    add_upstream("docker.io", "https://registry-1.docker.io", true, "docker.io",
                 "index.docker.io", "registry-1.docker.io");
    add_upstream("registry.k8s.io", "https://registry.k8s.io", false, "k8s.gcr.io", NULL, NULL);
    add_upstream("gcr.io", "https://gcr.io", false, NULL, NULL, NULL);
    add_upstream("quay.io", "https://quay.io", false, NULL, NULL, NULL);
    add_upstream("ghcr.io", "https://ghcr.io", false, NULL, NULL, NULL);
    for (size_t i = 0; i < cfg.n_upstreams; i++)
        cfg.search_order[cfg.n_search_order++] = i;
    for (size_t i = 0; i < OM_ARRAY_LEN(rewrites); i++) {
        struct om_rewrite_cfg *rw = &cfg.rewrites[cfg.n_rewrites];
        rw->match = (char *)rewrites[i].match;
        rw->target = (char *)rewrites[i].target;
        if (regcomp(&rw->re, rw->match, REG_EXTENDED) != 0) {
            fprintf(stderr, "regcomp %s failed\n", rw->match);
            exit(2);
        }
        cfg.n_rewrites++;
    }
}

static void teardown(void)
{
    for (size_t i = 0; i < cfg.n_rewrites; i++)
        regfree(&cfg.rewrites[i].re);
    memset(&cfg, 0, sizeof(cfg));
}

/* Checks every candidate: its upstream index, remote and canonical name
 * agree with `want`, a space-separated list of canonical names. */
static void check_candidates(const struct om_route *r, const char *want)
{
    size_t i = 0;
    for (const char *tok = want; *tok != '\0'; i++) {
        const char *sp = strchr(tok, ' ');
        size_t tlen = sp != NULL ? (size_t)(sp - tok) : strlen(tok);
        if (i >= r->n) {
            fprintf(stderr, "  missing candidate %.*s\n", (int)tlen, tok);
            CHECK(i < r->n);
            break;
        }
        const struct om_route_candidate *c = &r->c[i];
        if (strlen(c->canonical) != tlen || memcmp(c->canonical, tok, tlen) != 0)
            fprintf(stderr, "  candidate %zu: \"%s\", expected \"%.*s\"\n", i, c->canonical,
                    (int)tlen, tok);
        CHECK(strlen(c->canonical) == tlen && memcmp(c->canonical, tok, tlen) == 0);
        CHECK(c->upstream < cfg.n_upstreams);
        if (c->upstream < cfg.n_upstreams) {
            const char *up = cfg.upstreams[c->upstream].name;
            size_t ulen = strlen(up);
            /* canonical == "<upstream name>/<remote>" */
            CHECK(strncmp(c->canonical, up, ulen) == 0 && c->canonical[ulen] == '/');
            CHECK_EQ_STR(c->canonical + ulen + 1, c->remote);
        }
        tok += tlen;
        while (*tok == ' ')
            tok++;
    }
    CHECK_EQ_INT(r->n, i);
}

struct route_case {
    const char *name;
    const char *ns;
    int err;
    om_route_kind kind;
    om_route_why why;
    int rewrite_index;
    const char *want; /* canonical names in order */
};

static void check_route(const struct route_case *c)
{
    struct om_route r;
    memset(&r, 0x5a, sizeof(r));
    int err = om_route_resolve(&r, &cfg, c->name, c->ns);
    if (err != c->err)
        fprintf(stderr, "  route \"%s\" ns=%s: err %d\n", c->name, c->ns ? c->ns : "-", err);
    CHECK_EQ_INT(err, c->err);
    if (c->err != OM_OK) {
        CHECK_EQ_INT(r.n, 0);
        return;
    }
    CHECK_EQ_INT(r.kind, c->kind);
    CHECK_EQ_INT(r.why, c->why);
    CHECK_EQ_INT(r.rewrite_index, c->rewrite_index);
    check_candidates(&r, c->want);
}

#define FIXED OM_ROUTE_FIXED
#define SEARCH OM_ROUTE_SEARCH
#define ALL5(n) "docker.io/" n " registry.k8s.io/" n " gcr.io/" n " quay.io/" n " ghcr.io/" n

static void test_route__the_promised_routing_table(void)
{
    static const struct route_case cases[] = {
        /* search order */
        {"nginx", NULL, OM_OK, SEARCH, OM_WHY_SEARCH, -1,
         "docker.io/library/nginx registry.k8s.io/nginx gcr.io/nginx quay.io/nginx "
         "ghcr.io/nginx"},
        {"library/nginx", NULL, OM_OK, SEARCH, OM_WHY_SEARCH, -1, ALL5("library/nginx")},
        {"kube-apiserver", NULL, OM_OK, SEARCH, OM_WHY_SEARCH, -1,
         "docker.io/library/kube-apiserver registry.k8s.io/kube-apiserver "
         "gcr.io/kube-apiserver quay.io/kube-apiserver ghcr.io/kube-apiserver"},
        {"coreos/etcd", NULL, OM_OK, SEARCH, OM_WHY_SEARCH, -1, ALL5("coreos/etcd")},
        {"coredns/coredns", NULL, OM_OK, SEARCH, OM_WHY_SEARCH, -1, ALL5("coredns/coredns")},
        {"a/b/c", NULL, OM_OK, SEARCH, OM_WHY_SEARCH, -1, ALL5("a/b/c")},
        {"manifests", NULL, OM_OK, SEARCH, OM_WHY_SEARCH, -1,
         "docker.io/library/manifests registry.k8s.io/manifests gcr.io/manifests "
         "quay.io/manifests ghcr.io/manifests"},
        /* a single component with a dot is a repository, not a host */
        {"my.app", NULL, OM_OK, SEARCH, OM_WHY_SEARCH, -1,
         "docker.io/library/my.app registry.k8s.io/my.app gcr.io/my.app quay.io/my.app "
         "ghcr.io/my.app"},
        /* explicit prefix or alias */
        {"docker.io/nginx", NULL, OM_OK, FIXED, OM_WHY_PREFIX, -1, "docker.io/library/nginx"},
        {"docker.io/library/nginx", NULL, OM_OK, FIXED, OM_WHY_PREFIX, -1,
         "docker.io/library/nginx"},
        {"index.docker.io/library/nginx", NULL, OM_OK, FIXED, OM_WHY_PREFIX, -1,
         "docker.io/library/nginx"},
        {"index.docker.io/nginx", NULL, OM_OK, FIXED, OM_WHY_PREFIX, -1,
         "docker.io/library/nginx"},
        {"registry-1.docker.io/bitnami/redis", NULL, OM_OK, FIXED, OM_WHY_PREFIX, -1,
         "docker.io/bitnami/redis"},
        {"quay.io/coreos/etcd", NULL, OM_OK, FIXED, OM_WHY_PREFIX, -1, "quay.io/coreos/etcd"},
        {"quay.io/etcd", NULL, OM_OK, FIXED, OM_WHY_PREFIX, -1, "quay.io/etcd"},
        {"k8s.gcr.io/pause", NULL, OM_OK, FIXED, OM_WHY_PREFIX, -1, "registry.k8s.io/pause"},
        {"registry.k8s.io/kube-apiserver", NULL, OM_OK, FIXED, OM_WHY_PREFIX, -1,
         "registry.k8s.io/kube-apiserver"},
        {"ghcr.io/a/b/c", NULL, OM_OK, FIXED, OM_WHY_PREFIX, -1, "ghcr.io/a/b/c"},
        /* an explicit prefix is not rewritten */
        {"docker.io/coredns", NULL, OM_OK, FIXED, OM_WHY_PREFIX, -1, "docker.io/library/coredns"},
        /* ns */
        {"library/nginx", "docker.io", OM_OK, FIXED, OM_WHY_NS, -1, "docker.io/library/nginx"},
        {"nginx", "docker.io", OM_OK, FIXED, OM_WHY_NS, -1, "docker.io/library/nginx"},
        {"bitnami/redis", "docker.io", OM_OK, FIXED, OM_WHY_NS, -1, "docker.io/bitnami/redis"},
        {"library/nginx", "index.docker.io", OM_OK, FIXED, OM_WHY_NS, -1,
         "docker.io/library/nginx"},
        {"pause", "k8s.gcr.io", OM_OK, FIXED, OM_WHY_NS, -1, "registry.k8s.io/pause"},
        {"coreos/etcd", "quay.io", OM_OK, FIXED, OM_WHY_NS, -1, "quay.io/coreos/etcd"},
        {"library/nginx", "DOCKER.IO", OM_OK, FIXED, OM_WHY_NS, -1, "docker.io/library/nginx"},
        {"pause", "K8S.GCR.IO", OM_OK, FIXED, OM_WHY_NS, -1, "registry.k8s.io/pause"},
        /* ns wins over rewrites: containerd already sends the real name */
        {"coredns", "registry.k8s.io", OM_OK, FIXED, OM_WHY_NS, -1, "registry.k8s.io/coredns"},
        /* ns plus a prefix naming the same upstream (path-prefixed mirror) */
        {"docker.io/library/nginx", "docker.io", OM_OK, FIXED, OM_WHY_NS, -1,
         "docker.io/library/nginx"},
        {"docker.io/nginx", "docker.io", OM_OK, FIXED, OM_WHY_NS, -1, "docker.io/library/nginx"},
        {"index.docker.io/library/nginx", "docker.io", OM_OK, FIXED, OM_WHY_NS, -1,
         "docker.io/library/nginx"},
        {"k8s.gcr.io/pause", "registry.k8s.io", OM_OK, FIXED, OM_WHY_NS, -1,
         "registry.k8s.io/pause"},
        {"quay.io/coreos/etcd", "quay.io", OM_OK, FIXED, OM_WHY_NS, -1, "quay.io/coreos/etcd"},
        /* ...but a prefix naming another upstream is part of the name there */
        {"quay.io/coreos/etcd", "ghcr.io", OM_OK, FIXED, OM_WHY_NS, -1,
         "ghcr.io/quay.io/coreos/etcd"},
        /* an empty ns is no ns */
        {"quay.io/coreos/etcd", "", OM_OK, FIXED, OM_WHY_PREFIX, -1, "quay.io/coreos/etcd"},
        /* unknown ns or host: never contacted */
        {"library/nginx", "evil.example.com", OM_ERR_NOTFOUND, FIXED, OM_WHY_NS, -1, ""},
        {"nginx", "localhost:5000", OM_ERR_NOTFOUND, FIXED, OM_WHY_NS, -1, ""},
        {"nginx", "docker", OM_ERR_NOTFOUND, FIXED, OM_WHY_NS, -1, ""},
        {"nginx", "docker.io.evil.com", OM_ERR_NOTFOUND, FIXED, OM_WHY_NS, -1, ""},
        {"evil.example.com/x", NULL, OM_ERR_NOTFOUND, FIXED, OM_WHY_PREFIX, -1, ""},
        {"evil.example.com/library/nginx", NULL, OM_ERR_NOTFOUND, FIXED, OM_WHY_PREFIX, -1, ""},
        {"docker.io.evil.com/x", NULL, OM_ERR_NOTFOUND, FIXED, OM_WHY_PREFIX, -1, ""},
        {"localhost/x", NULL, OM_ERR_NOTFOUND, FIXED, OM_WHY_PREFIX, -1, ""},
        {"127.0.0.1:5000/x", NULL, OM_ERR_NOTFOUND, FIXED, OM_WHY_PREFIX, -1, ""},
        {"registry:5000/x", NULL, OM_ERR_NOTFOUND, FIXED, OM_WHY_PREFIX, -1, ""},
        /* rewrites */
        {"coredns", NULL, OM_OK, FIXED, OM_WHY_REWRITE, 0, "registry.k8s.io/coredns/coredns"},
        {"k8s/pause", NULL, OM_OK, FIXED, OM_WHY_REWRITE, 1, "registry.k8s.io/pause"},
        {"k8s/coredns/coredns", NULL, OM_OK, FIXED, OM_WHY_REWRITE, 1,
         "registry.k8s.io/coredns/coredns"},
        {"mirror/etcd/coreos", NULL, OM_OK, FIXED, OM_WHY_REWRITE, 2, "quay.io/coreos/etcd"},
        {"hub/alpine", NULL, OM_OK, FIXED, OM_WHY_REWRITE, 3, "docker.io/library/alpine"},
        {"firstx", NULL, OM_OK, FIXED, OM_WHY_REWRITE, 9, "ghcr.io/firstx"},
        {"firstmatch", NULL, OM_OK, FIXED, OM_WHY_REWRITE, 9, "ghcr.io/firstmatch"},
        {"loop", NULL, OM_OK, FIXED, OM_WHY_REWRITE, 11, "docker.io/library/coredns"},
        {"bad/thing", NULL, OM_ERR_INVALID, FIXED, OM_WHY_REWRITE, 4, ""},
        {"empty/y", NULL, OM_ERR_INVALID, FIXED, OM_WHY_REWRITE, 5, ""},
        {"empty/xy", NULL, OM_OK, FIXED, OM_WHY_REWRITE, 5, "quay.io/x"},
        {"noslash", NULL, OM_ERR_INVALID, FIXED, OM_WHY_REWRITE, 7, ""},
        {"upper", NULL, OM_ERR_INVALID, FIXED, OM_WHY_REWRITE, 8, ""},
        /* a name that does not match a rule exactly is searched */
        {"corednsx", NULL, OM_OK, SEARCH, OM_WHY_SEARCH, -1,
         "docker.io/library/corednsx registry.k8s.io/corednsx gcr.io/corednsx "
         "quay.io/corednsx ghcr.io/corednsx"},
    };
    setup();
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++)
        check_route(&cases[i]);
    teardown();
}

static void test_route__unused_rewrite_escape_case_is_invalid(void)
{
    /* "quay.io/a\9b\" expands \9 (no such group) to nothing and keeps the
     * trailing backslash, which no repository name allows. */
    struct om_route r;
    setup();
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, "unused", NULL), OM_ERR_INVALID);
    CHECK_EQ_INT(r.n, 0);
    teardown();
}

static void test_route__names_over_255_after_library_or_prefix_are_invalid(void)
{
    char name[320], comp[300];
    struct om_route r;
    setup();

    /* Search: a 247-byte one-component name fits everywhere
     * ("docker.io/library/" + 247 = 265 does not). */
    memset(comp, 'a', 247);
    comp[247] = '\0';
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, comp, NULL), OM_ERR_INVALID);
    CHECK_EQ_INT(r.n, 0);

    /* Prefix: "quay.io/" + 247 = 255 is the longest canonical name. */
    snprintf(name, sizeof(name), "quay.io/%s", comp);
    CHECK_EQ_INT(strlen(name), 255);
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, name, NULL), OM_OK);
    CHECK_EQ_INT(r.n, 1);
    CHECK_EQ_INT(strlen(r.c[0].canonical), 255);
    CHECK_EQ_STR(r.c[0].remote, comp);

    /* "docker.io/" + 245 fits as a request, but "docker.io/library/" + 245
     * does not. */
    comp[245] = '\0';
    snprintf(name, sizeof(name), "docker.io/%s", comp);
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, name, NULL), OM_ERR_INVALID);
    /* Same through ns, for every length whose "library/" remote still fits
     * in 255 bytes but whose canonical name does not (the remote alone is
     * 255 bytes at 247). */
    for (size_t len = 238; len <= 247; len++) {
        memset(comp, 'c', len);
        comp[len] = '\0';
        memset(&r, 0x5a, sizeof(r));
        CHECK_EQ_INT(om_route_resolve(&r, &cfg, comp, "docker.io"), OM_ERR_INVALID);
        CHECK_EQ_INT(om_route_resolve(&r, &cfg, comp, NULL), OM_ERR_INVALID);
        CHECK_EQ_INT(r.n, 0);
    }
    /* 237 + "docker.io/library/" = 255: fits exactly. */
    comp[237] = '\0';
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, comp, "docker.io"), OM_OK);
    CHECK_EQ_INT(strlen(r.c[0].canonical), 255);
    CHECK_EQ_INT(strlen(r.c[0].remote), 245);

    /* A rewrite whose expansion is too long. */
    memset(comp, 'b', 200);
    comp[200] = '\0';
    snprintf(name, sizeof(name), "long/%s", comp);
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, name, NULL), OM_ERR_INVALID);
    snprintf(name, sizeof(name), "long/bb");
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, name, NULL), OM_OK);
    CHECK_EQ_STR(r.c[0].canonical, "quay.io/bb/bb");

    /* The request name itself: empty, NULL or longer than 255. */
    memset(name, 'a', 256);
    name[256] = '\0';
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, name, NULL), OM_ERR_INVALID);
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, "", NULL), OM_ERR_INVALID);
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, NULL, NULL), OM_ERR_INVALID);
    CHECK_EQ_INT(om_route_resolve(&r, NULL, "nginx", NULL), OM_ERR_INVALID);
    /* An over-long ns is an unknown ns. */
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, "nginx", name), OM_ERR_NOTFOUND);
    teardown();
}

static void test_route__library_goes_to_every_docker_hub_candidate(void)
{
    struct om_route r;
    setup();
    /* A second Docker Hub upstream (say, a company pull-through cache),
     * searched before the real one. */
    add_upstream("hub.internal", "https://hub.internal", true, NULL, NULL, NULL);
    cfg.n_search_order = 0;
    cfg.search_order[cfg.n_search_order++] = 5;
    cfg.search_order[cfg.n_search_order++] = UP_QUAY;
    cfg.search_order[cfg.n_search_order++] = UP_DOCKER;
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, "nginx", NULL), OM_OK);
    CHECK_EQ_INT(r.kind, OM_ROUTE_SEARCH);
    check_candidates(&r, "hub.internal/library/nginx quay.io/nginx docker.io/library/nginx");
    CHECK_EQ_INT(r.c[0].upstream, 5);
    CHECK_EQ_INT(r.c[1].upstream, UP_QUAY);
    CHECK_EQ_INT(r.c[2].upstream, UP_DOCKER);
    /* ...and through its prefix. */
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, "hub.internal/nginx", NULL), OM_OK);
    check_candidates(&r, "hub.internal/library/nginx");
    teardown();
}

static void test_route__search_order_is_deduplicated_and_may_be_empty(void)
{
    struct om_route r;
    setup();
    cfg.n_search_order = 0;
    cfg.search_order[cfg.n_search_order++] = UP_GHCR;
    cfg.search_order[cfg.n_search_order++] = UP_GHCR;
    cfg.search_order[cfg.n_search_order++] = 99; /* out of range: skipped */
    cfg.search_order[cfg.n_search_order++] = UP_K8S;
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, "pause", NULL), OM_OK);
    check_candidates(&r, "ghcr.io/pause registry.k8s.io/pause");

    cfg.n_search_order = 0;
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, "pause", NULL), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(r.n, 0);
    /* Prefixes and ns still work without a search order. */
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, "quay.io/coreos/etcd", NULL), OM_OK);
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, "pause", "k8s.gcr.io"), OM_OK);
    teardown();
}

static void test_route__without_rewrites_coredns_is_searched(void)
{
    struct om_route r;
    setup();
    for (size_t i = 0; i < cfg.n_rewrites; i++)
        regfree(&cfg.rewrites[i].re);
    cfg.n_rewrites = 0;
    CHECK_EQ_INT(om_route_resolve(&r, &cfg, "coredns", NULL), OM_OK);
    CHECK_EQ_INT(r.kind, OM_ROUTE_SEARCH);
    CHECK_EQ_INT(r.rewrite_index, -1);
    CHECK_EQ_STR(r.c[0].canonical, "docker.io/library/coredns");
    memset(&cfg, 0, sizeof(cfg));
}

/* The same promises through config.c: the embedded defaults and a YAML
 * rule with groups route as the hand-built config above does. */
static void test_route__default_config_routes_as_promised(void)
{
    struct om_config *dc = NULL;
    struct om_route r;
    CHECK_EQ_INT(om_config_default(&dc), OM_OK);
    if (dc == NULL)
        return;
    CHECK_EQ_INT(om_route_resolve(&r, dc, "nginx", NULL), OM_OK);
    CHECK_EQ_INT(r.kind, OM_ROUTE_SEARCH);
    CHECK(r.n >= 1);
    CHECK_EQ_STR(r.c[0].canonical, "docker.io/library/nginx");
    CHECK_EQ_INT(om_route_resolve(&r, dc, "index.docker.io/library/nginx", NULL), OM_OK);
    CHECK_EQ_STR(r.c[0].canonical, "docker.io/library/nginx");
    CHECK_EQ_INT(om_route_resolve(&r, dc, "k8s.gcr.io/pause", NULL), OM_OK);
    CHECK_EQ_STR(r.c[0].canonical, "registry.k8s.io/pause");
    CHECK_EQ_INT(om_route_resolve(&r, dc, "coredns", NULL), OM_OK);
    CHECK_EQ_INT(r.why, OM_WHY_REWRITE);
    CHECK_EQ_STR(r.c[0].canonical, "registry.k8s.io/coredns/coredns");
    CHECK_EQ_INT(om_route_resolve(&r, dc, "library/nginx", "docker.io"), OM_OK);
    CHECK_EQ_STR(r.c[0].canonical, "docker.io/library/nginx");
    CHECK_EQ_INT(om_route_resolve(&r, dc, "x", "evil.example.com"), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_route_resolve(&r, dc, "evil.example.com/x", NULL), OM_ERR_NOTFOUND);
    om_config_free(dc);

    static const char yaml[] =
        "rewrites:\n"
        "  - match: '^k8s/([a-z0-9-]+)$'\n"
        "    target: 'registry.k8s.io/\\1'\n";
    char err[256] = "";
    dc = NULL;
    CHECK_EQ_INT(om_config_parse(&dc, yaml, sizeof(yaml) - 1, "test.yaml", err, sizeof(err)),
                 OM_OK);
    if (dc == NULL) {
        fprintf(stderr, "  config: %s\n", err);
        return;
    }
    CHECK_EQ_INT(om_route_resolve(&r, dc, "k8s/kube-proxy", NULL), OM_OK);
    CHECK_EQ_INT(r.why, OM_WHY_REWRITE);
    CHECK_EQ_STR(r.c[0].canonical, "registry.k8s.io/kube-proxy");
    om_config_free(dc);
}

static void test_route__why_has_a_sentence_for_every_step(void)
{
    static const om_route_why whys[] = {OM_WHY_NS, OM_WHY_PREFIX, OM_WHY_REWRITE,
                                        OM_WHY_SEARCH};
    for (size_t i = 0; i < OM_ARRAY_LEN(whys); i++) {
        const char *s = om_route_why_str(whys[i]);
        CHECK(s != NULL && strlen(s) > 0 && strcmp(s, "unknown") != 0);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(s, om_route_why_str(whys[j])) != 0);
    }
    CHECK_EQ_STR(om_route_why_str(OM_WHY_SEARCH), "search order");
}

/* Fuzzing finding F4: a host:port first component that is not the ns
 * upstream must not become part of a remote name. */
static void test_route__a_host_port_component_never_reaches_an_upstream_name(void)
{
    struct om_config *dc = NULL;
    CHECK_EQ_INT(om_config_default(&dc), OM_OK);
    struct om_route r;
    CHECK_EQ_INT(om_route_resolve(&r, dc, "localhost:5000/team/app", "docker.io"), OM_ERR_INVALID);
    CHECK_EQ_INT(r.n, 0);
    CHECK_EQ_INT(om_route_resolve(&r, dc, "localhost:5000/team/app", NULL), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_route_resolve(&r, dc, "docker.io/team/app", "docker.io"), OM_OK);
    CHECK_EQ_STR(r.c[0].remote, "team/app");
    om_config_free(dc);
}

int main(void)
{
    RUN(test_route__a_host_port_component_never_reaches_an_upstream_name);
    RUN(test_route__the_promised_routing_table);
    RUN(test_route__unused_rewrite_escape_case_is_invalid);
    RUN(test_route__names_over_255_after_library_or_prefix_are_invalid);
    RUN(test_route__library_goes_to_every_docker_hub_candidate);
    RUN(test_route__search_order_is_deduplicated_and_may_be_empty);
    RUN(test_route__without_rewrites_coredns_is_searched);
    RUN(test_route__default_config_routes_as_promised);
    RUN(test_route__why_has_a_sentence_for_every_step);
    return test_done();
}
