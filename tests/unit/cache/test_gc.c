/* test_gc.c — GC: the eviction planner on hand-built graphs (LRU order,
 * shared blobs, indexes with platforms, the grace period, orphans), then
 * whole runs on a real store + index in a temp directory (what is removed,
 * tags.log deletion records surviving a rebuild, strays, stale ingest). */
#include "test.h"

#include "cache/gc.h"
#include "cache/gc_plan.h"
#include "cache/index.h"
#include "cache/index_gc.h"
#include "cache/store.h"
#include "core/config.h"
#include "core/hash.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MIN_MS (60 * 1000)

/* ---- planner fixtures ------------------------------------------------- */

/* A node spec: name (made into a digest), size, recent, manifest, children
 * (names, NULL-terminated). */
struct nspec {
    const char *name;
    uint64_t size;
    int64_t recent;
    const char *children[6];
};

struct ispec {
    const char *root;
    int64_t last_used;
};

static om_digest dg(const char *name)
{
    om_digest d;
    om_hash_buf(name, strlen(name), &d);
    return d;
}

/* Build a graph from specs (nodes with children are manifests). */
static void build(struct om_gc_graph *g, const struct nspec *ns, size_t nn,
                  const struct ispec *is, size_t ni)
{
    struct om_gc_node *n;
    struct om_gc_image *im;
    memset(g, 0, sizeof(*g));
    for (size_t i = 0; i < nn; i++) {
        CHECK(om_gc_graph_add_node(g, &n) == OM_OK);
        n->digest = dg(ns[i].name);
        n->size = ns[i].size;
        n->recent = ns[i].recent;
        n->present = true;
        n->manifest = ns[i].children[0] != NULL;
    }
    om_gc_graph_sort_nodes(g);
    for (size_t i = 0; i < nn; i++) {
        om_digest d = dg(ns[i].name);
        long p = om_gc_graph_find(g, d.str);
        CHECK(p >= 0);
        g->nodes[p].first_child = (uint32_t)g->n_edges;
        for (size_t c = 0; ns[i].children[c] != NULL; c++) {
            om_digest cd = dg(ns[i].children[c]);
            long ci = om_gc_graph_find(g, cd.str);
            CHECK(ci >= 0);
            CHECK(om_gc_graph_add_edge(g, (uint32_t)ci) == OM_OK);
            g->nodes[p].n_children++;
        }
    }
    for (size_t i = 0; i < ni; i++) {
        om_digest d = dg(is[i].root);
        CHECK(om_gc_graph_add_image(g, &im) == OM_OK);
        im->root = (uint32_t)om_gc_graph_find(g, d.str);
        im->last_used = is[i].last_used;
        snprintf(im->repo, sizeof(im->repo), "repo/%s", is[i].root);
    }
}

static const char *image_root(const struct om_gc_graph *g, const struct om_gc_plan *p, size_t k,
                              const struct ispec *is, size_t ni)
{
    om_digest d = g->nodes[g->images[p->victims[k].image].root].digest;
    for (size_t i = 0; i < ni; i++) {
        om_digest x = dg(is[i].root);
        if (strcmp(x.str, d.str) == 0)
            return is[i].root;
    }
    return "?";
}

static bool plan_frees(const struct om_gc_graph *g, const struct om_gc_plan *p, const char *name)
{
    om_digest d = dg(name);
    for (size_t i = 0; i < p->n_freed; i++) {
        if (strcmp(g->nodes[p->freed[i]].digest.str, d.str) == 0)
            return true;
    }
    return false;
}

static long freed_pos(const struct om_gc_graph *g, const struct om_gc_plan *p, const char *name)
{
    om_digest d = dg(name);
    for (size_t i = 0; i < p->n_freed; i++) {
        if (strcmp(g->nodes[p->freed[i]].digest.str, d.str) == 0)
            return (long)i;
    }
    return -1;
}

/* Three single-manifest images sharing a base layer; times in minutes. */
static const struct nspec THREE[] = {
    {"base", 100, 1 * MIN_MS, {NULL}},
    {"a-layer", 300, 1 * MIN_MS, {NULL}},
    {"b-layer", 300, 1 * MIN_MS, {NULL}},
    {"c-layer", 300, 1 * MIN_MS, {NULL}},
    {"a", 10, 1 * MIN_MS, {"base", "a-layer", NULL}},
    {"b", 10, 1 * MIN_MS, {"base", "b-layer", NULL}},
    {"c", 10, 1 * MIN_MS, {"c-layer", NULL}},
};

static void test_gc__least_recently_used_image_goes_first(void)
{
    static const struct ispec is[] = {{"a", 30 * MIN_MS}, {"b", 20 * MIN_MS}, {"c", 40 * MIN_MS}};
    struct om_gc_graph g;
    struct om_gc_plan p;
    build(&g, THREE, OM_ARRAY_LEN(THREE), is, OM_ARRAY_LEN(is));
    /* 1030 bytes used; above 1000, down to 800: one image is enough. */
    struct om_gc_plan_params pp = {.used = 1030, .evict_above = 1000, .evict_to = 800,
                                   .cutoff = 100 * MIN_MS};
    CHECK(om_gc_plan_make(&g, &pp, &p) == OM_OK);
    CHECK_EQ_INT(p.n_victims, 1);
    if (p.n_victims == 1) {
        CHECK_EQ_STR(image_root(&g, &p, 0, is, OM_ARRAY_LEN(is)), "b");
        CHECK_EQ_INT(p.victims[0].bytes, 310);
    }
    CHECK(plan_frees(&g, &p, "b-layer"));
    CHECK(!plan_frees(&g, &p, "base")); /* a still uses it */
    CHECK_EQ_INT(p.used_after, 720);
    om_gc_plan_free(&p);

    /* Down to 400: b, then a (base goes with a: nothing holds it any more). */
    pp.evict_to = 400;
    CHECK(om_gc_plan_make(&g, &pp, &p) == OM_OK);
    CHECK_EQ_INT(p.n_victims, 2);
    if (p.n_victims == 2) {
        CHECK_EQ_STR(image_root(&g, &p, 0, is, OM_ARRAY_LEN(is)), "b");
        CHECK_EQ_STR(image_root(&g, &p, 1, is, OM_ARRAY_LEN(is)), "a");
        CHECK_EQ_INT(p.victims[1].bytes, 410);
    }
    CHECK(plan_frees(&g, &p, "base"));
    CHECK(!plan_frees(&g, &p, "c-layer"));
    om_gc_plan_free(&p);
    om_gc_graph_free(&g);
}

static void test_gc__nothing_is_evicted_at_or_below_the_high_water_mark(void)
{
    static const struct ispec is[] = {{"a", 30 * MIN_MS}, {"b", 20 * MIN_MS}, {"c", 40 * MIN_MS}};
    /* used, evict_above, evict_to → victims */
    static const struct { uint64_t used, above, to; size_t victims; } rows[] = {
        {1030, 1030, 800, 0},       /* at the mark: no */
        {1030, 1029, 800, 1},       /* one byte over: yes */
        {1030, UINT64_MAX, 0, 0},   /* no quota */
        {1030, 1000, 1030, 0},      /* already at the target */
        {1030, 1000, 0, 3},         /* everything */
    };
    struct om_gc_graph g;
    build(&g, THREE, OM_ARRAY_LEN(THREE), is, OM_ARRAY_LEN(is));
    for (size_t i = 0; i < OM_ARRAY_LEN(rows); i++) {
        struct om_gc_plan p;
        struct om_gc_plan_params pp = {.used = rows[i].used, .evict_above = rows[i].above,
                                       .evict_to = rows[i].to, .cutoff = 100 * MIN_MS};
        CHECK(om_gc_plan_make(&g, &pp, &p) == OM_OK);
        if (p.n_victims != rows[i].victims)
            fprintf(stderr, "row %zu: %zu victims\n", i, p.n_victims);
        CHECK_EQ_INT(p.n_victims, rows[i].victims);
        om_gc_plan_free(&p);
    }
    om_gc_graph_free(&g);
}

static void test_gc__platform_manifests_and_their_layers_go_with_their_index(void)
{
    static const struct nspec ns[] = {
        {"amd-l", 500, 0, {NULL}},
        {"arm-l", 500, 0, {NULL}},
        {"amd-cfg", 5, 0, {NULL}},
        {"arm-cfg", 5, 0, {NULL}},
        {"amd", 10, 0, {"amd-cfg", "amd-l", NULL}},
        {"arm", 10, 0, {"arm-cfg", "arm-l", NULL}},
        {"idx", 10, 0, {"amd", "arm", NULL}},
        {"other-l", 100, 0, {NULL}},
        {"other", 10, 0, {"other-l", NULL}},
    };
    static const struct ispec is[] = {{"idx", 1 * MIN_MS}, {"other", 2 * MIN_MS}};
    struct om_gc_graph g;
    struct om_gc_plan p;
    build(&g, ns, OM_ARRAY_LEN(ns), is, OM_ARRAY_LEN(is));
    struct om_gc_plan_params pp = {.used = 1150, .evict_above = 1000, .evict_to = 500,
                                   .cutoff = 10 * MIN_MS};
    CHECK(om_gc_plan_make(&g, &pp, &p) == OM_OK);
    CHECK_EQ_INT(p.n_victims, 1);
    CHECK_EQ_INT(p.n_freed, 7);
    CHECK_EQ_INT(p.evict_bytes, 1040);
    /* Parent first: the index before its platform manifests, each of
     * those before its config and layer. */
    CHECK_EQ_INT(freed_pos(&g, &p, "idx"), 0);
    CHECK(freed_pos(&g, &p, "amd") < freed_pos(&g, &p, "amd-l"));
    CHECK(freed_pos(&g, &p, "amd") < freed_pos(&g, &p, "amd-cfg"));
    CHECK(freed_pos(&g, &p, "arm") < freed_pos(&g, &p, "arm-l"));
    CHECK(!plan_frees(&g, &p, "other-l"));
    om_gc_plan_free(&p);
    om_gc_graph_free(&g);
}

static void test_gc__a_tagged_platform_manifest_stays_while_its_index_is_cached(void)
{
    /* "amd" is tagged on its own (an image) and is a platform of "idx". */
    static const struct nspec ns[] = {
        {"amd-l", 500, 0, {NULL}},
        {"arm-l", 500, 0, {NULL}},
        {"amd", 10, 0, {"amd-l", NULL}},
        {"arm", 10, 0, {"arm-l", NULL}},
        {"idx", 10, 0, {"amd", "arm", NULL}},
    };
    static const struct ispec is[] = {{"amd", 1 * MIN_MS}, {"idx", 2 * MIN_MS}};
    struct om_gc_graph g;
    struct om_gc_plan p;
    build(&g, ns, OM_ARRAY_LEN(ns), is, OM_ARRAY_LEN(is));
    /* Only a little over: the first victim (amd's tag) frees nothing, so
     * idx goes too, and then amd's content with it. */
    struct om_gc_plan_params pp = {.used = 1030, .evict_above = 1000, .evict_to = 900,
                                   .cutoff = 10 * MIN_MS};
    CHECK(om_gc_plan_make(&g, &pp, &p) == OM_OK);
    CHECK_EQ_INT(p.n_victims, 2);
    if (p.n_victims == 2) {
        CHECK_EQ_STR(image_root(&g, &p, 0, is, OM_ARRAY_LEN(is)), "amd");
        CHECK_EQ_INT(p.victims[0].n, 0);
        CHECK_EQ_INT(p.victims[0].bytes, 0);
        CHECK_EQ_INT(p.victims[1].bytes, 1030);
    }
    om_gc_plan_free(&p);
    om_gc_graph_free(&g);
}

static void test_gc__recently_used_images_and_objects_are_kept(void)
{
    static const struct nspec ns[] = {
        {"base", 100, 1 * MIN_MS, {NULL}},
        {"a-layer", 300, 1 * MIN_MS, {NULL}},
        {"b-layer", 300, 50 * MIN_MS, {NULL}},   /* fetched just now */
        {"a", 10, 1 * MIN_MS, {"base", "a-layer", NULL}},
        {"b", 10, 1 * MIN_MS, {"base", "b-layer", NULL}},
        {"c-layer", 300, 1 * MIN_MS, {NULL}},
        {"c", 10, 49 * MIN_MS, {"c-layer", NULL}}, /* manifest recorded just now */
    };
    static const struct ispec is[] = {
        {"a", 45 * MIN_MS},   /* pulled after the cutoff: never taken */
        {"b", 10 * MIN_MS},
        {"c", 20 * MIN_MS},
    };
    struct om_gc_graph g;
    struct om_gc_plan p;
    build(&g, ns, OM_ARRAY_LEN(ns), is, OM_ARRAY_LEN(is));
    struct om_gc_plan_params pp = {.used = 1030, .evict_above = 100, .evict_to = 0,
                                   .cutoff = 40 * MIN_MS};
    CHECK(om_gc_plan_make(&g, &pp, &p) == OM_OK);
    CHECK_EQ_INT(p.n_victims, 2);          /* b and c; a is in use */
    CHECK_EQ_INT(p.n_kept_recent, 1);
    CHECK(plan_frees(&g, &p, "b"));
    CHECK(!plan_frees(&g, &p, "b-layer")); /* touched after the cutoff */
    CHECK(!plan_frees(&g, &p, "base"));    /* a holds it */
    CHECK(!plan_frees(&g, &p, "c"));       /* recorded after the cutoff... */
    CHECK(!plan_frees(&g, &p, "c-layer")); /* ...so what it lists stays listed */
    CHECK(!plan_frees(&g, &p, "a-layer"));
    om_gc_plan_free(&p);

    /* Everything recent: nothing at all, however far over. */
    pp.cutoff = 1;
    CHECK(om_gc_plan_make(&g, &pp, &p) == OM_OK);
    CHECK_EQ_INT(p.n_victims, 0);
    CHECK_EQ_INT(p.n_kept_recent, 3);
    om_gc_plan_free(&p);
    om_gc_graph_free(&g);
}

static void test_gc__orphans_are_old_blobs_that_no_image_holds(void)
{
    static const struct nspec ns[] = {
        {"held", 100, 1, {NULL}},
        {"m", 10, 1, {"held", NULL}},
        {"old-orphan", 70, 1, {NULL}},
        {"new-orphan", 80, 50 * MIN_MS, {NULL}}, /* e.g. a layer pulled before its manifest */
    };
    static const struct ispec is[] = {{"m", 1}};
    struct om_gc_graph g;
    struct om_gc_plan p;
    struct om_gc_stray *s;
    build(&g, ns, OM_ARRAY_LEN(ns), is, OM_ARRAY_LEN(is));
    CHECK(om_gc_graph_add_stray(&g, &s) == OM_OK);
    s->digest = dg("stray-old");
    s->size = 5;
    s->changed = 1;
    CHECK(om_gc_graph_add_stray(&g, &s) == OM_OK);
    s->digest = dg("stray-new");
    s->size = 6;
    s->changed = 45 * MIN_MS;
    struct om_gc_plan_params pp = {.used = 271, .evict_above = UINT64_MAX, .cutoff = 40 * MIN_MS};
    CHECK(om_gc_plan_make(&g, &pp, &p) == OM_OK);
    CHECK_EQ_INT(p.n_victims, 0);
    CHECK_EQ_INT(p.n_orphans, 1);
    if (p.n_orphans == 1)
        CHECK_EQ_STR(g.nodes[p.orphans[0]].digest.str, dg("old-orphan").str);
    CHECK_EQ_INT(p.orphan_bytes, 70);
    CHECK_EQ_INT(p.n_strays, 1);
    CHECK_EQ_INT(p.stray_bytes, 5);
    CHECK_EQ_INT(p.used_after, 271 - 75);
    om_gc_plan_free(&p);
    om_gc_graph_free(&g);
}

static void test_gc__orphans_count_before_any_image_is_evicted(void)
{
    static const struct ispec is[] = {{"a", 30 * MIN_MS}, {"b", 20 * MIN_MS}, {"c", 40 * MIN_MS}};
    struct om_gc_graph g;
    struct om_gc_plan p;
    /* THREE plus a 500-byte blob nothing lists. */
    struct nspec ns[OM_ARRAY_LEN(THREE) + 1];
    memcpy(ns, THREE, sizeof(THREE));
    ns[OM_ARRAY_LEN(THREE)] = (struct nspec){"junk", 500, 1, {NULL}};
    build(&g, ns, OM_ARRAY_LEN(ns), is, OM_ARRAY_LEN(is));
    struct om_gc_plan_params pp = {.used = 1530, .evict_above = 1000, .evict_to = 1100,
                                   .cutoff = 100 * MIN_MS};
    CHECK(om_gc_plan_make(&g, &pp, &p) == OM_OK);
    CHECK_EQ_INT(p.n_orphans, 1);
    CHECK_EQ_INT(p.n_victims, 0); /* 1530 − 500 = 1030 ≤ 1100 */
    om_gc_plan_free(&p);
    om_gc_graph_free(&g);
}

static void test_gc__evicting_one_image_keeps_what_others_use(void)
{
    static const struct ispec is[] = {{"a", 30 * MIN_MS}, {"b", 20 * MIN_MS}, {"c", 40 * MIN_MS}};
    struct om_gc_graph g;
    struct om_gc_plan p;
    build(&g, THREE, OM_ARRAY_LEN(THREE), is, OM_ARRAY_LEN(is));
    /* Image 0 is "a": recent objects do not protect it (cutoff INT64_MAX). */
    CHECK(om_gc_plan_one(&g, 0, INT64_MAX, &p) == OM_OK);
    CHECK_EQ_INT(p.n_victims, 1);
    CHECK(plan_frees(&g, &p, "a"));
    CHECK(plan_frees(&g, &p, "a-layer"));
    CHECK(!plan_frees(&g, &p, "base"));
    CHECK_EQ_INT(p.evict_bytes, 310);
    om_gc_plan_free(&p);
    CHECK(om_gc_plan_one(&g, 7, INT64_MAX, &p) == OM_ERR_INVALID);
    om_gc_graph_free(&g);
}

static void test_gc__graph_sort_merges_duplicates_and_find_bisects(void)
{
    struct om_gc_graph g = {0};
    struct om_gc_node *n;
    static const char *const names[] = {"x", "y", "x", "z", "y"};
    for (size_t i = 0; i < OM_ARRAY_LEN(names); i++) {
        CHECK(om_gc_graph_add_node(&g, &n) == OM_OK);
        n->digest = dg(names[i]);
        n->manifest = i == 2; /* the second "x" is the manifest row */
        n->recent = (int64_t)i;
    }
    om_gc_graph_sort_nodes(&g);
    CHECK_EQ_INT(g.n_nodes, 3);
    for (size_t i = 1; i < g.n_nodes; i++)
        CHECK(strcmp(g.nodes[i - 1].digest.str, g.nodes[i].digest.str) < 0);
    long x = om_gc_graph_find(&g, dg("x").str);
    CHECK(x >= 0);
    if (x >= 0) {
        CHECK(g.nodes[x].manifest);
        CHECK_EQ_INT(g.nodes[x].recent, 2);
    }
    CHECK(om_gc_graph_find(&g, dg("nope").str) == -1);
    CHECK(om_gc_graph_find(&g, "") == -1);
    om_gc_graph_free(&g);
    CHECK(om_gc_graph_find(&g, dg("x").str) == -1); /* empty graph */
}

static void test_gc__a_bad_graph_is_refused(void)
{
    static const struct ispec is[] = {{"a", 1}};
    struct om_gc_graph g;
    struct om_gc_plan p;
    struct om_gc_plan_params pp = {.used = 1, .evict_above = 0, .evict_to = 0, .cutoff = 1};
    build(&g, THREE, OM_ARRAY_LEN(THREE), is, OM_ARRAY_LEN(is));
    g.edges[0] = 999;
    CHECK(om_gc_plan_make(&g, &pp, &p) == OM_ERR_INVALID);
    g.edges[0] = 0;
    g.images[0].root = 999;
    CHECK(om_gc_plan_make(&g, &pp, &p) == OM_ERR_INVALID);
    g.images[0].root = 0;
    g.nodes[0].n_children = 1000;
    CHECK(om_gc_plan_make(&g, &pp, &p) == OM_ERR_INVALID);
    om_gc_graph_free(&g);
}

/* ---- whole runs on a real store and index ------------------------------ */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

struct fx {
    char root[64];
    struct om_store *st;
    struct om_index *ix;
    struct om_gc_db *db;
    struct om_config *cfg;
};

static bool fx_setup(struct fx *fx)
{
    memset(fx, 0, sizeof(*fx));
    snprintf(fx->root, sizeof(fx->root), "/tmp/om-test-gc-XXXXXX");
    if (mkdtemp(fx->root) == NULL || om_config_default(&fx->cfg) != OM_OK)
        return false;
    fx->cfg->gc_interval_ms = 10 * MIN_MS; /* grace = 10 min */
    return om_store_open(&fx->st, fx->root) == OM_OK &&
           om_index_open(&fx->ix, fx->st, NULL) == OM_OK &&
           om_index_gc_open(&fx->db, fx->root) == OM_OK;
}

static void fx_teardown(struct fx *fx)
{
    om_index_gc_close(fx->db);
    om_index_close(fx->ix);
    om_store_close(fx->st);
    om_config_free(fx->cfg);
    nftw(fx->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A blob of `size` bytes whose content depends on name. */
static om_digest put_blob(struct fx *fx, const char *repo, const char *name, size_t size,
                          int64_t t)
{
    char *buf = malloc(size);
    om_digest d;
    for (size_t i = 0; i < size; i++)
        buf[i] = name[i % strlen(name)];
    om_hash_buf(buf, size, &d);
    CHECK(om_store_put(fx->st, &d, buf, size) == OM_OK);
    CHECK(om_index_blob_put(fx->ix, repo, &d, size, t) == OM_OK);
    free(buf);
    return d;
}

/* An OCI manifest (or index when is_index) listing children; tagged when
 * tag != NULL.  Real JSON, so an index rebuild recognises it. */
static om_digest put_manifest(struct fx *fx, const char *repo, const char *tag, bool is_index,
                              const om_digest *ch, size_t n, int64_t t)
{
    char json[4096];
    size_t off = 0;
    om_digest d;
    off += (size_t)snprintf(json + off, sizeof(json) - off,
                            "{\"schemaVersion\":2,\"mediaType\":\"%s\",",
                            is_index ? OCI_INDEX : OCI_MANIFEST);
    if (is_index) {
        off += (size_t)snprintf(json + off, sizeof(json) - off, "\"manifests\":[");
        for (size_t i = 0; i < n; i++)
            off += (size_t)snprintf(json + off, sizeof(json) - off,
                                    "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1,"
                                    "\"platform\":{\"os\":\"linux\",\"architecture\":\"a%zu\"}}",
                                    i ? "," : "", OCI_MANIFEST, ch[i].str, i);
    } else {
        off += (size_t)snprintf(json + off, sizeof(json) - off,
                                "\"config\":{\"mediaType\":\"x\",\"digest\":\"%s\",\"size\":1},"
                                "\"layers\":[", ch[0].str);
        for (size_t i = 1; i < n; i++)
            off += (size_t)snprintf(json + off, sizeof(json) - off,
                                    "%s{\"mediaType\":\"y\",\"digest\":\"%s\",\"size\":1}",
                                    i > 1 ? "," : "", ch[i].str);
    }
    off += (size_t)snprintf(json + off, sizeof(json) - off, "]}");
    om_hash_buf(json, off, &d);
    CHECK(om_store_put(fx->st, &d, json, off) == OM_OK);
    CHECK(om_index_manifest_put(fx->ix, repo, &d, is_index ? OCI_INDEX : OCI_MANIFEST, off, ch,
                                n, t) == OM_OK);
    if (tag != NULL)
        CHECK(om_index_tag_put(fx->ix, repo, tag, &d, is_index ? OCI_INDEX : OCI_MANIFEST, off,
                               t) == OM_OK);
    return d;
}

/* A single-platform image: config + own layer (+ the shared base if any). */
struct img {
    om_digest manifest, config, layer;
};

static struct img put_image(struct fx *fx, const char *repo, const char *tag,
                            const om_digest *base, size_t layer_size, int64_t t)
{
    struct img im;
    char name[128];
    om_digest ch[3];
    size_t n = 0;
    snprintf(name, sizeof(name), "config of %s:%s", repo, tag);
    im.config = put_blob(fx, repo, name, 200, t);
    snprintf(name, sizeof(name), "layer of %s:%s", repo, tag);
    im.layer = put_blob(fx, repo, name, layer_size, t);
    ch[n++] = im.config;
    if (base != NULL)
        ch[n++] = *base;
    ch[n++] = im.layer;
    im.manifest = put_manifest(fx, repo, tag, false, ch, n, t);
    return im;
}

static uint64_t store_used(struct fx *fx)
{
    return om_store_bytes(fx->st);
}

static bool has(struct fx *fx, const om_digest *d)
{
    return om_store_has(fx->st, d, NULL);
}

static int count_lines_with(const char *path, const char *needle)
{
    char line[8192];
    int n = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static int count_str(void *ud, const char *s)
{
    (void)ud; (void)s;
    return 0;
}

static void test_gc__a_run_evicts_the_lru_image_and_keeps_shared_layers(void)
{
    struct fx fx;
    struct om_gc_result r;
    struct om_tag_rec tr;
    int64_t t0 = 1000000000000; /* a fixed past; the run is "now" = an hour later */
    char log[128];

    CHECK(fx_setup(&fx));
    om_digest base = put_blob(&fx, "docker.io/library/base", "base layer", 20000, t0);
    struct img a = put_image(&fx, "docker.io/team/a", "1", &base, 50000, t0 + 1 * MIN_MS);
    struct img b = put_image(&fx, "docker.io/team/b", "1", &base, 50000, t0 + 2 * MIN_MS);
    struct img c = put_image(&fx, "quay.io/x/c", "1", NULL, 50000, t0 + 3 * MIN_MS);
    struct img d = put_image(&fx, "docker.io/team/d", "1", &base, 50000, t0 + 4 * MIN_MS);
    /* a pulled again later: b is now the least recently used. */
    CHECK(om_index_note_pull(fx.ix, "docker.io/team/a", "1", &a.manifest, t0 + 5 * MIN_MS) ==
          OM_OK);
    uint64_t used = store_used(&fx);
    /* Quota: used is above 90 %, and evicting b alone gets below 80 %. */
    fx.cfg->storage_max_size = used * 100 / 85;
    fx.cfg->storage_high_water = 80;
    fx.cfg->storage_low_water = 75;
    CHECK((used - 50000 - 200) * 100 < fx.cfg->storage_max_size * 75);

    struct om_gc_env e = {.cfg = fx.cfg, .store = fx.st, .db = fx.db,
                          .now = t0 + 60 * MIN_MS, .dry_run = true};
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK_EQ_INT(r.evicted_images, 1);
    CHECK(has(&fx, &b.manifest)); /* a dry run removes nothing */
    CHECK_EQ_INT(store_used(&fx), used);

    e.dry_run = false;
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK_EQ_INT(r.used_before, used);
    CHECK_EQ_INT(r.evicted_images, 1);
    CHECK_EQ_INT(r.removed_blobs, 3);
    CHECK(!has(&fx, &b.manifest));
    CHECK(!has(&fx, &b.layer));
    CHECK(!has(&fx, &b.config));
    CHECK(has(&fx, &base));
    CHECK(has(&fx, &a.manifest) && has(&fx, &a.layer));
    CHECK(has(&fx, &c.manifest) && has(&fx, &d.manifest));
    CHECK_EQ_INT(store_used(&fx), r.used_after);
    CHECK(r.used_after <= r.low_bytes);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/b", "1", &tr) == OM_ERR_NOTFOUND);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/a", "1", &tr) == OM_OK);
    struct om_manifest_rec mr;
    CHECK(om_index_manifest_get(fx.ix, &b.manifest, &mr) == OM_ERR_NOTFOUND);
    snprintf(log, sizeof(log), "%s/tags.log", fx.root);
    CHECK_EQ_INT(count_lines_with(log, "\"deleted\":true"), 1);
    CHECK_EQ_INT(count_lines_with(log, "docker.io/team/b"), 2); /* the put and the deletion */

    /* The repository went with its last tag. */
    CHECK(om_index_tags_list(fx.ix, "docker.io/team/b", NULL, -1, count_str, NULL) ==
          OM_ERR_NOTFOUND);
    struct om_index_counts cn;
    CHECK(om_index_counts(fx.ix, &cn) == OM_OK);
    CHECK_EQ_INT(cn.repos, 4); /* base, a, c, d */
    CHECK_EQ_INT(cn.tags, 3);

    /* A second run has nothing left to do. */
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK_EQ_INT(r.evicted_images, 0);
    CHECK_EQ_INT(r.removed_blobs, 0);
    fx_teardown(&fx);
}

static void test_gc__an_image_pulled_during_the_run_is_kept(void)
{
    struct fx fx;
    struct om_gc_evict_out out;
    int64_t t0 = 1000000000000;
    bool deleted[1];

    CHECK(fx_setup(&fx));
    struct img a = put_image(&fx, "docker.io/team/a", "1", NULL, 1000, t0);
    /* The plan saw last_used = t0; a client pulls it at t0 + 1 min. */
    CHECK(om_index_note_pull(fx.ix, "docker.io/team/a", "1", &a.manifest, t0 + MIN_MS) == OM_OK);
    struct om_gc_evict_req req = {.root = &a.manifest, .expect_last_used = t0,
                                  .nodes = &a.manifest, .n_nodes = 1, .cutoff = t0 + 5 * MIN_MS,
                                  .now = t0 + 6 * MIN_MS};
    CHECK(om_index_gc_evict(fx.db, &req, deleted, &out) == OM_OK);
    CHECK(out.touched);
    CHECK(!deleted[0]);
    struct om_tag_rec tr;
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/a", "1", &tr) == OM_OK);
    /* With the right expectation it goes. */
    req.expect_last_used = t0 + MIN_MS;
    CHECK(om_index_gc_evict(fx.db, &req, deleted, &out) == OM_OK);
    CHECK(!out.touched);
    CHECK(deleted[0]);
    CHECK_EQ_INT(out.tags_deleted, 1);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/a", "1", &tr) == OM_ERR_NOTFOUND);
    fx_teardown(&fx);
}

static void test_gc__a_blob_listed_by_a_new_manifest_is_not_deleted(void)
{
    struct fx fx;
    struct om_gc_evict_out out;
    int64_t t0 = 1000000000000;
    bool deleted[1];

    CHECK(fx_setup(&fx));
    om_digest orphan = put_blob(&fx, NULL, "lonely", 100, t0);
    /* Between the snapshot and the deletion a manifest naming it arrives. */
    om_digest cfg = put_blob(&fx, NULL, "cfg", 10, t0);
    om_digest ch[2] = {cfg, orphan};
    (void)put_manifest(&fx, "docker.io/x/y", "1", false, ch, 2, t0);
    struct om_gc_evict_req req = {.nodes = &orphan, .n_nodes = 1, .cutoff = t0 + MIN_MS,
                                  .now = t0 + MIN_MS};
    CHECK(om_index_gc_evict(fx.db, &req, deleted, &out) == OM_OK);
    CHECK(!deleted[0]);
    fx_teardown(&fx);
}

static void test_gc__an_evicted_tag_does_not_come_back_after_a_rebuild(void)
{
    struct fx fx;
    struct om_tag_rec tr;
    int64_t t0 = 1000000000000;
    uint64_t freed = 1;
    size_t nm = 0, nt = 0;

    CHECK(fx_setup(&fx));
    /* Two repositories tag the same manifest; evicting one tag frees no
     * content (the other still uses it), so only tags.log can tell a
     * rebuild that the tag is gone. */
    struct img a = put_image(&fx, "docker.io/team/a", "1", NULL, 1000, t0);
    CHECK(om_index_tag_put(fx.ix, "docker.io/team/copy", "v1", &a.manifest, OCI_MANIFEST, 10,
                           t0) == OM_OK);
    struct om_gc_env e = {.cfg = fx.cfg, .store = fx.st, .db = fx.db, .now = t0 + MIN_MS};
    CHECK(om_gc_evict_env(&e, "docker.io/team/a", "1", &freed) == OM_OK);
    CHECK_EQ_INT(freed, 0);
    CHECK(has(&fx, &a.manifest));
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/a", "1", &tr) == OM_ERR_NOTFOUND);
    CHECK(om_index_rebuild(fx.ix, &nm, &nt) == OM_OK);
    CHECK_EQ_INT(nt, 1);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/a", "1", &tr) == OM_ERR_NOTFOUND);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/copy", "v1", &tr) == OM_OK);

    /* A later put of the same tag wins over the deletion record. */
    CHECK(om_index_tag_put(fx.ix, "docker.io/team/a", "1", &a.manifest, OCI_MANIFEST, 10,
                           t0 + 2 * MIN_MS) == OM_OK);
    CHECK(om_index_rebuild(fx.ix, &nm, &nt) == OM_OK);
    CHECK_EQ_INT(nt, 2);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/a", "1", &tr) == OM_OK);

    /* Now the last tag of the content goes: so does the content. */
    CHECK(om_gc_evict_env(&e, "docker.io/team/copy", a.manifest.str, &freed) == OM_OK);
    CHECK_EQ_INT(freed, 0); /* team/a:1 still holds it */
    CHECK(om_gc_evict_env(&e, "docker.io/team/a", "1", &freed) == OM_OK);
    CHECK(freed > 1000);
    CHECK(!has(&fx, &a.manifest) && !has(&fx, &a.layer) && !has(&fx, &a.config));
    CHECK(om_gc_evict_env(&e, "docker.io/team/a", "1", &freed) == OM_ERR_NOTFOUND);
    CHECK(om_gc_evict_env(&e, "docker.io/team/a", "bad tag!", &freed) == OM_ERR_INVALID);
    CHECK(om_gc_evict_env(&e, "docker.io/team/a", "sha256:00", &freed) == OM_ERR_INVALID);
    fx_teardown(&fx);
}

static void test_gc__an_index_goes_with_its_platforms_unless_tagged_elsewhere(void)
{
    struct fx fx;
    struct om_gc_result r;
    int64_t t0 = 1000000000000;

    CHECK(fx_setup(&fx));
    struct img amd = put_image(&fx, "docker.io/library/multi", "amd", NULL, 3000, t0);
    struct img arm = put_image(&fx, "docker.io/library/multi", "arm", NULL, 3000, t0);
    /* Only the index is tagged: drop the platform tags put_image made. */
    uint64_t freed;
    struct om_gc_env e = {.cfg = fx.cfg, .store = fx.st, .db = fx.db, .now = t0};
    om_digest ch[2] = {amd.manifest, arm.manifest};
    om_digest idx = put_manifest(&fx, "docker.io/library/multi", "1", true, ch, 2, t0);
    CHECK(om_gc_evict_env(&e, "docker.io/library/multi", "amd", &freed) == OM_OK);
    CHECK(om_gc_evict_env(&e, "docker.io/library/multi", "arm", &freed) == OM_OK);
    CHECK_EQ_INT(freed, 0);
    CHECK(has(&fx, &amd.layer));
    struct img other = put_image(&fx, "docker.io/library/other", "1", NULL, 3000, t0 + MIN_MS);

    fx.cfg->storage_max_size = 1000; /* far over: evict down to 800 */
    e.now = t0 + 60 * MIN_MS;
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK_EQ_INT(r.evicted_images, 2);
    CHECK(!has(&fx, &idx));
    CHECK(!has(&fx, &amd.manifest) && !has(&fx, &amd.layer) && !has(&fx, &amd.config));
    CHECK(!has(&fx, &arm.manifest) && !has(&fx, &arm.layer));
    CHECK(!has(&fx, &other.manifest));
    CHECK_EQ_INT(store_used(&fx), 0);
    CHECK_EQ_INT(r.used_after, 0);
    fx_teardown(&fx);
}

static void test_gc__recent_content_survives_even_far_over_the_quota(void)
{
    struct fx fx;
    struct om_gc_result r;
    int64_t t0 = 1000000000000;

    CHECK(fx_setup(&fx));
    struct img a = put_image(&fx, "docker.io/team/a", "1", NULL, 5000, t0);
    fx.cfg->storage_max_size = 100;
    struct om_gc_env e = {.cfg = fx.cfg, .store = fx.st, .db = fx.db, .now = t0 + 9 * MIN_MS};
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK_EQ_INT(r.evicted_images, 0);
    CHECK_EQ_INT(r.kept_recent, 1);
    CHECK(has(&fx, &a.layer));
    e.now = t0 + 11 * MIN_MS; /* the 10-minute grace is over */
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK_EQ_INT(r.evicted_images, 1);
    CHECK(!has(&fx, &a.layer));
    fx_teardown(&fx);
}

static void test_gc__orphans_and_unindexed_files_go_after_the_grace_period(void)
{
    struct fx fx;
    struct om_gc_result r;
    int64_t t0 = 1000000000000;

    CHECK(fx_setup(&fx));
    om_digest orphan = put_blob(&fx, "docker.io/x/y", "by digest only", 700, t0);
    /* A file the index does not know: written just now (real clock). */
    static const char stray_bytes[] = "committed, index row not written yet";
    om_digest stray;
    om_hash_buf(stray_bytes, sizeof(stray_bytes), &stray);
    CHECK(om_store_put(fx.st, &stray, stray_bytes, sizeof(stray_bytes)) == OM_OK);
    int64_t real_now = (int64_t)time(NULL) * 1000;

    struct om_gc_env e = {.cfg = fx.cfg, .store = fx.st, .db = fx.db, .now = real_now};
    CHECK(om_gc_run_env(&e, &r) == OM_OK); /* no quota: orphans only */
    CHECK_EQ_INT(r.orphan_blobs, 1);       /* the old orphan; the stray is too young */
    CHECK_EQ_INT(r.orphan_bytes, 700);
    CHECK(!has(&fx, &orphan));
    CHECK(has(&fx, &stray));
    e.now = real_now + 11 * MIN_MS;
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK_EQ_INT(r.orphan_blobs, 1);
    CHECK(!has(&fx, &stray));
    fx_teardown(&fx);
}

static void test_gc__stale_ingest_files_go_and_live_ones_stay(void)
{
    struct fx fx;
    struct om_gc_result r;
    struct om_ingest *live = NULL, *stale = NULL;
    struct timespec old[2];

    CHECK(fx_setup(&fx));
    CHECK(om_ingest_begin(fx.st, &live) == OM_OK);
    CHECK(om_ingest_begin(fx.st, &stale) == OM_OK);
    CHECK(om_ingest_write(live, "abc", 3) == OM_OK);
    CHECK(om_ingest_write(stale, "abcdef", 6) == OM_OK);
    clock_gettime(CLOCK_REALTIME, &old[0]);
    old[0].tv_sec -= 2 * 3600;
    old[1] = old[0];
    CHECK(utimensat(AT_FDCWD, stale->path, old, 0) == 0);
    struct om_gc_env e = {.cfg = fx.cfg, .store = fx.st, .db = fx.db, .dry_run = true};
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK_EQ_INT(r.removed_ingest, 1);
    CHECK(access(stale->path, F_OK) == 0);
    e.dry_run = false;
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK_EQ_INT(r.removed_ingest, 1);
    CHECK_EQ_INT(r.ingest_bytes, 6);
    CHECK(access(stale->path, F_OK) != 0);
    CHECK(access(live->path, F_OK) == 0);
    om_ingest_abort(live);
    om_ingest_abort(stale);
    fx_teardown(&fx);
}

static void test_gc__grace_is_the_interval_capped_at_ten_minutes(void)
{
    struct om_config *cfg = NULL;
    CHECK(om_config_default(&cfg) == OM_OK);
    static const struct { uint64_t interval, grace; } rows[] = {
        {1000, 1000}, {60000, 60000}, {600000, 600000}, {3600000, 600000},
    };
    for (size_t i = 0; cfg != NULL && i < OM_ARRAY_LEN(rows); i++) {
        cfg->gc_interval_ms = rows[i].interval;
        CHECK_EQ_INT(om_gc_grace_ms(cfg), rows[i].grace);
    }
    om_config_free(cfg);
}

int main(void)
{
    RUN(test_gc__least_recently_used_image_goes_first);
    RUN(test_gc__nothing_is_evicted_at_or_below_the_high_water_mark);
    RUN(test_gc__platform_manifests_and_their_layers_go_with_their_index);
    RUN(test_gc__a_tagged_platform_manifest_stays_while_its_index_is_cached);
    RUN(test_gc__recently_used_images_and_objects_are_kept);
    RUN(test_gc__orphans_are_old_blobs_that_no_image_holds);
    RUN(test_gc__orphans_count_before_any_image_is_evicted);
    RUN(test_gc__evicting_one_image_keeps_what_others_use);
    RUN(test_gc__graph_sort_merges_duplicates_and_find_bisects);
    RUN(test_gc__a_bad_graph_is_refused);
    RUN(test_gc__a_run_evicts_the_lru_image_and_keeps_shared_layers);
    RUN(test_gc__an_image_pulled_during_the_run_is_kept);
    RUN(test_gc__a_blob_listed_by_a_new_manifest_is_not_deleted);
    RUN(test_gc__an_evicted_tag_does_not_come_back_after_a_rebuild);
    RUN(test_gc__an_index_goes_with_its_platforms_unless_tagged_elsewhere);
    RUN(test_gc__recent_content_survives_even_far_over_the_quota);
    RUN(test_gc__orphans_and_unindexed_files_go_after_the_grace_period);
    RUN(test_gc__stale_ingest_files_go_and_live_ones_stay);
    RUN(test_gc__grace_is_the_interval_capped_at_ten_minutes);
    return test_done();
}
