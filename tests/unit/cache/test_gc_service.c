/* test_gc_service.c — the GC service (cache/gc_service.c) on a host that
 * is no server: a real store + index in a temp directory, the host struct
 * filled by hand.  What the engine removes is test_gc.c's business; here:
 * the entry points before start (NULL), the status and totals, the
 * eviction callback, the host's cancel flag, stop. */
#include "test.h"

#include "cache/gc.h"
#include "cache/index.h"
#include "cache/store.h"
#include "core/config.h"
#include "core/hash.h"

#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define T0 1000000000000 /* a fixed past: everything is long unused */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

struct fx {
    char root[64];
    struct om_store *st;
    struct om_index *ix;
    struct om_config *cfg;
};

static bool fx_setup(struct fx *fx)
{
    memset(fx, 0, sizeof(*fx));
    snprintf(fx->root, sizeof(fx->root), "/tmp/om-test-gcsvc-XXXXXX");
    if (mkdtemp(fx->root) == NULL || om_config_default(&fx->cfg) != OM_OK)
        return false;
    fx->cfg->gc_interval_ms = 10 * 60 * 1000; /* the thread sleeps through the test */
    return om_store_open(&fx->st, fx->root) == OM_OK &&
           om_index_open(&fx->ix, fx->st, NULL) == OM_OK;
}

static void fx_teardown(struct fx *fx)
{
    om_index_close(fx->ix);
    om_store_close(fx->st);
    om_config_free(fx->cfg);
    nftw(fx->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static om_digest put_blob(struct fx *fx, const char *repo, const char *text)
{
    om_digest d;
    om_hash_buf(text, strlen(text), &d);
    CHECK(om_store_put(fx->st, &d, text, strlen(text)) == OM_OK);
    CHECK(om_index_blob_put(fx->ix, repo, &d, strlen(text), T0) == OM_OK);
    return d;
}

/* repo:1, a manifest with a config and one layer of its own; returns the
 * manifest's digest. */
static om_digest put_image(struct fx *fx, const char *repo)
{
    char text[256], json[1024];
    om_digest ch[2], d;
    snprintf(text, sizeof(text), "config of %s", repo);
    ch[0] = put_blob(fx, repo, text);
    snprintf(text, sizeof(text), "layer of %s, a little longer than its config", repo);
    ch[1] = put_blob(fx, repo, text);
    int n = snprintf(json, sizeof(json),
                     "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
                     "\"config\":{\"mediaType\":\"x\",\"digest\":\"%s\",\"size\":1},"
                     "\"layers\":[{\"mediaType\":\"y\",\"digest\":\"%s\",\"size\":1}]}",
                     ch[0].str, ch[1].str);
    om_hash_buf(json, (size_t)n, &d);
    CHECK(om_store_put(fx->st, &d, json, (size_t)n) == OM_OK);
    CHECK(om_index_manifest_put(fx->ix, repo, &d, OCI_MANIFEST, (size_t)n, ch, 2, T0) == OM_OK);
    CHECK(om_index_tag_put(fx->ix, repo, "1", &d, OCI_MANIFEST, (size_t)n, T0) == OM_OK);
    return d;
}

struct evictions {
    uint64_t calls, n, bytes;
};

static void note_evictions(void *ud, uint64_t n, uint64_t bytes)
{
    struct evictions *ev = ud;
    ev->calls++;
    ev->n += n;
    ev->bytes += bytes;
}

static void test_gc_service__before_start_every_entry_point_says_not_started(void)
{
    struct om_gc_result r;
    struct om_gc_totals t;
    uint64_t freed = 1;

    om_gc_nudge(NULL);
    CHECK(om_gc_run_now(NULL, &r) == OM_ERR_INVALID);
    CHECK(om_gc_evict_image(NULL, "docker.io/team/a", "1", &freed) == OM_ERR_INVALID);
    CHECK_EQ_INT(freed, 0);
    t.runs = 7;
    r.evicted_images = 7;
    CHECK(om_gc_status(NULL, &r, &t) == OM_ERR_NOTFOUND);
    CHECK_EQ_INT(t.runs, 0);
    CHECK_EQ_INT(r.evicted_images, 0);
    om_gc_stop(NULL);
}

static void test_gc_service__runs_and_evicts_on_what_its_host_names(void)
{
    struct fx fx;
    struct om_gc *gc = NULL;
    struct om_gc_result r;
    struct om_gc_totals t;
    struct om_tag_rec tr;
    struct evictions ev = {0};
    atomic_bool cancel;
    uint64_t freed = 0, freed_a = 0;

    atomic_init(&cancel, false);
    CHECK(fx_setup(&fx));
    om_digest a = put_image(&fx, "docker.io/team/a");
    om_digest b = put_image(&fx, "docker.io/team/b");

    struct om_gc_host host = {.cfg = fx.cfg, .store = fx.st, .cancel = &cancel,
                              .on_evictions = note_evictions, .ud = &ev};
    CHECK(om_gc_start(&gc, &host) == OM_OK);
    CHECK(gc != NULL);
    CHECK(om_gc_status(gc, &r, &t) == OM_ERR_NOTFOUND); /* no run yet */
    CHECK_EQ_INT(t.runs, 0);
    om_gc_nudge(gc); /* no quota: nothing to wake */

    CHECK(om_gc_run_now(gc, &r) == OM_OK);
    CHECK_EQ_INT(r.evicted_images, 0); /* no quota, no orphans */
    CHECK_EQ_INT(ev.calls, 0);
    CHECK(om_gc_status(gc, &r, &t) == OM_OK);
    CHECK_EQ_INT(t.runs, 1);
    CHECK_EQ_INT(t.errors, 0);

    CHECK(om_gc_evict_image(gc, "docker.io/team/a", "1", &freed) == OM_OK);
    CHECK(freed > 0);
    CHECK(!om_store_has(fx.st, &a, NULL));
    CHECK(om_store_has(fx.st, &b, NULL));
    CHECK_EQ_INT(ev.calls, 1);
    CHECK_EQ_INT(ev.n, 1);
    CHECK_EQ_INT(ev.bytes, freed);
    freed_a = freed;
    CHECK(om_gc_evict_image(gc, "docker.io/team/a", "1", &freed) == OM_ERR_NOTFOUND);
    CHECK_EQ_INT(freed, 0);
    CHECK(om_gc_evict_image(gc, NULL, "1", &freed) == OM_ERR_INVALID);
    CHECK_EQ_INT(ev.calls, 1);
    CHECK(om_gc_status(gc, NULL, &t) == OM_OK);
    CHECK_EQ_INT(t.evicted_images, 1);
    CHECK_EQ_INT(t.freed_bytes, freed_a);

    /* Far over a quota: the host's cancel flag ends the run before it
     * evicts anything; without it, b goes. */
    fx.cfg->storage_max_size = 1;
    atomic_store(&cancel, true);
    CHECK(om_gc_run_now(gc, &r) == OM_OK);
    CHECK_EQ_INT(r.evicted_images, 0);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/b", "1", &tr) == OM_OK);
    atomic_store(&cancel, false);
    CHECK(om_gc_run_now(gc, &r) == OM_OK);
    CHECK_EQ_INT(r.evicted_images, 1);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/b", "1", &tr) == OM_ERR_NOTFOUND);
    CHECK_EQ_INT(ev.calls, 2);
    CHECK(om_gc_status(gc, NULL, &t) == OM_OK);
    CHECK_EQ_INT(t.runs, 3);
    CHECK_EQ_INT(t.evicted_images, 2);
    om_gc_stop(gc);
    fx_teardown(&fx);
}

int main(void)
{
    RUN(test_gc_service__before_start_every_entry_point_says_not_started);
    RUN(test_gc_service__runs_and_evicts_on_what_its_host_names);
    return test_done();
}
