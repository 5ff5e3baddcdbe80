/* test_gc_redis.c — GC on a Redis index (index_gc_redis*.c, index_gc_lease.c)
 * against a real redis-server (redis_server.h; skipped without one): the
 * GC leader lease between two connections, whole runs on a store + a
 * Redis index (LRU eviction keeping shared layers, exact om:stats
 * counters, tags.log deletion records), the re-checks of an eviction (an
 * image pulled since the snapshot, a blob a new manifest lists, a blob
 * with a download lease om:fl:<digest>), a tag of another repository
 * naming the root, and a Redis that is down (nobody runs). */
#include "test.h"

#include "cache/gc.h"
#include "cache/index.h"
#include "cache/index_gc.h"
#include "cache/store.h"
#include "core/config.h"
#include "core/hash.h"
#include "redis_server.h"

#include <ftw.h>
#include <signal.h>

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MIN_MS (60 * 1000)
#define DB 7

static struct rs srv;

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
    char url[200];
    memset(fx, 0, sizeof(*fx));
    snprintf(fx->root, sizeof(fx->root), "/tmp/om-test-gcr-XXXXXX");
    if (mkdtemp(fx->root) == NULL || om_config_default(&fx->cfg) != OM_OK)
        return false;
    rs_cmd(&srv, DB, "FLUSHDB", NULL, 0);
    snprintf(url, sizeof(url), "unix://%s?db=%u", srv.sock, DB);
    fx->cfg->cluster_redis = strdup(url);
    fx->cfg->gc_interval_ms = 10 * MIN_MS; /* grace = 10 min */
    return om_store_open(&fx->st, fx->root) == OM_OK &&
           om_index_open_cfg(&fx->ix, fx->st, fx->cfg, NULL) == OM_OK &&
           om_index_gc_open_index(&fx->db, fx->root, fx->ix, "replica-1") == OM_OK;
}

static void fx_teardown(struct fx *fx)
{
    om_index_gc_close(fx->db);
    om_index_close(fx->ix);
    om_store_close(fx->st);
    om_config_free(fx->cfg);
    nftw(fx->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

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

static om_digest put_manifest(struct fx *fx, const char *repo, const char *tag,
                              const om_digest *ch, size_t n, int64_t t)
{
    char json[4096];
    size_t off = 0;
    om_digest d;
    off += (size_t)snprintf(json + off, sizeof(json) - off,
                            "{\"schemaVersion\":2,\"mediaType\":\"%s\","
                            "\"config\":{\"mediaType\":\"x\",\"digest\":\"%s\",\"size\":1},"
                            "\"layers\":[", OCI_MANIFEST, ch[0].str);
    for (size_t i = 1; i < n; i++)
        off += (size_t)snprintf(json + off, sizeof(json) - off,
                                "%s{\"mediaType\":\"y\",\"digest\":\"%s\",\"size\":1}",
                                i > 1 ? "," : "", ch[i].str);
    off += (size_t)snprintf(json + off, sizeof(json) - off, "]}");
    om_hash_buf(json, off, &d);
    CHECK(om_store_put(fx->st, &d, json, off) == OM_OK);
    CHECK(om_index_manifest_put(fx->ix, repo, &d, OCI_MANIFEST, off, ch, n, t) == OM_OK);
    if (tag != NULL)
        CHECK(om_index_tag_put(fx->ix, repo, tag, &d, OCI_MANIFEST, off, t) == OM_OK);
    return d;
}

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
    im.manifest = put_manifest(fx, repo, tag, ch, n, t);
    return im;
}

static bool has(struct fx *fx, const om_digest *d)
{
    return om_store_has(fx->st, d, NULL);
}

static long long stat_field(const char *field)
{
    char cmd[64], out[64] = "";
    snprintf(cmd, sizeof(cmd), "HGET om:stats %s", field);
    rs_cmd(&srv, DB, cmd, out, sizeof(out));
    return atoll(out);
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

/* ---- the lease ------------------------------------------------------------ */

static void test_gc_redis__one_connection_at_a_time_holds_the_gc_lease(void)
{
    struct fx fx;
    struct om_gc_db *other = NULL;
    char holder[128], v[128];
    bool lead = false;

    CHECK(fx_setup(&fx));
    CHECK(om_index_gc_open_index(&other, fx.root, fx.ix, "replica-2") == OM_OK);
    CHECK(!om_index_gc_leading(fx.db));
    CHECK(om_index_gc_lead(fx.db, &lead, holder, sizeof(holder)) == OM_OK);
    CHECK(lead);
    CHECK(om_index_gc_leading(fx.db));
    CHECK_EQ_INT(rs_cmd(&srv, DB, "PTTL om:lock:gc", NULL, 0) > 0, 1);
    /* the other one does not get it, and learns who has it */
    CHECK(om_index_gc_lead(other, &lead, holder, sizeof(holder)) == OM_OK);
    CHECK(!lead);
    CHECK(strncmp(holder, "replica-1|", 10) == 0);
    CHECK(!om_index_gc_leading(other));
    /* ... nor does a run on it, which does nothing and says so */
    struct om_gc_result r;
    struct om_gc_env e = {.cfg = fx.cfg, .store = fx.st, .db = other};
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK(r.not_leader);
    CHECK(strncmp(r.leader, "replica-1|", 10) == 0);
    uint64_t freed = 0;
    CHECK(om_gc_evict_env(&e, "docker.io/x/y", "1", &freed) == OM_ERR_TOOMANY);
    /* released: gone from Redis, and the other one gets it */
    om_index_gc_unlead(fx.db);
    CHECK(!om_index_gc_leading(fx.db));
    CHECK_EQ_INT(rs_cmd(&srv, DB, "EXISTS om:lock:gc", NULL, 0), 0);
    CHECK(om_index_gc_lead(other, &lead, holder, sizeof(holder)) == OM_OK);
    CHECK(lead);
    rs_cmd(&srv, DB, "GET om:lock:gc", v, sizeof(v));
    CHECK(strncmp(v, "replica-2|", 10) == 0);
    /* a release never takes someone else's lease */
    om_index_gc_unlead(fx.db);
    CHECK_EQ_INT(rs_cmd(&srv, DB, "EXISTS om:lock:gc", NULL, 0), 1);
    om_index_gc_unlead(other);
    CHECK_EQ_INT(rs_cmd(&srv, DB, "EXISTS om:lock:gc", NULL, 0), 0);
    /* a run takes and releases it */
    e.db = fx.db;
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK(!r.not_leader);
    CHECK_EQ_INT(rs_cmd(&srv, DB, "EXISTS om:lock:gc", NULL, 0), 0);
    om_index_gc_close(other);
    fx_teardown(&fx);
}

/* A lease another holder took over (it expired under a stalled run) is
 * noticed at the next renewal: the run stops between steps, and the
 * release leaves the new holder's lease alone. */
static void test_gc_redis__a_lease_taken_over_is_noticed_and_left_alone(void)
{
    struct fx fx;
    char v[128] = "";
    bool lead = false;

    CHECK(fx_setup(&fx));
    CHECK(om_index_gc_lead(fx.db, &lead, NULL, 0) == OM_OK);
    CHECK(lead);
    CHECK(!om_index_gc_lost(fx.db));
    CHECK_EQ_INT(rs_cmd(&srv, DB, "SET om:lock:gc replica-9|1 PX 60000", NULL, 0), 0);
    for (int i = 0; i < 80 && !om_index_gc_lost(fx.db); i++) /* renewal every 5 s */
        rs_sleep_ms_(100);
    CHECK(om_index_gc_lost(fx.db));
    CHECK(!om_index_gc_leading(fx.db));
    om_index_gc_unlead(fx.db);
    rs_cmd(&srv, DB, "GET om:lock:gc", v, sizeof(v));
    CHECK_EQ_STR(v, "replica-9|1");
    fx_teardown(&fx);
}

/* ---- whole runs ------------------------------------------------------------- */

static void test_gc_redis__a_run_evicts_the_lru_image_and_keeps_the_counters_exact(void)
{
    struct fx fx;
    struct om_gc_result r;
    struct om_tag_rec tr;
    struct om_manifest_rec mr;
    int64_t t0 = 1000000000000;
    char log[128];

    CHECK(fx_setup(&fx));
    om_digest base = put_blob(&fx, "docker.io/library/base", "base layer", 20000, t0);
    struct img a = put_image(&fx, "docker.io/team/a", "1", &base, 50000, t0 + 1 * MIN_MS);
    struct img b = put_image(&fx, "docker.io/team/b", "1", &base, 50000, t0 + 2 * MIN_MS);
    struct img c = put_image(&fx, "quay.io/x/c", "1", NULL, 50000, t0 + 3 * MIN_MS);
    CHECK(om_index_note_pull(fx.ix, "docker.io/team/a", "1", &a.manifest, t0 + 5 * MIN_MS) ==
          OM_OK);
    uint64_t used = om_store_bytes(fx.st);
    CHECK_EQ_INT((uint64_t)(stat_field("blob_bytes") + stat_field("manifest_bytes")), used);
    fx.cfg->storage_max_size = used * 100 / 85;
    fx.cfg->storage_high_water = 80;
    fx.cfg->storage_low_water = 75;

    struct om_gc_env e = {.cfg = fx.cfg, .store = fx.st, .db = fx.db, .now = t0 + 60 * MIN_MS};
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK_EQ_INT(r.evicted_images, 1);
    CHECK_EQ_INT(r.removed_blobs, 3);
    CHECK(!has(&fx, &b.manifest) && !has(&fx, &b.layer) && !has(&fx, &b.config));
    CHECK(has(&fx, &base) && has(&fx, &a.manifest) && has(&fx, &a.layer));
    CHECK(has(&fx, &c.manifest));
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/b", "1", &tr) == OM_ERR_NOTFOUND);
    CHECK(om_index_manifest_get(fx.ix, &b.manifest, &mr) == OM_ERR_NOTFOUND);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/a", "1", &tr) == OM_OK);
    /* what Redis counts is what the store holds */
    CHECK_EQ_INT(r.used_after, om_store_bytes(fx.st));
    CHECK_EQ_INT((uint64_t)(stat_field("blob_bytes") + stat_field("manifest_bytes")),
                 om_store_bytes(fx.st));
    CHECK_EQ_INT(stat_field("tags"), 2);
    CHECK_EQ_INT(stat_field("manifests"), 2);
    CHECK_EQ_INT(stat_field("blobs"), 5);
    /* the repository went with its last tag; the deletion is in tags.log */
    CHECK_EQ_INT(rs_cmd(&srv, DB, "ZSCORE om:repos docker.io/team/b", NULL, 0), -1);
    CHECK_EQ_INT(rs_cmd(&srv, DB, "EXISTS om:mr:docker.io/team/b", NULL, 0), 0);
    snprintf(log, sizeof(log), "%s/tags.log", fx.root);
    CHECK_EQ_INT(count_lines_with(log, "\"deleted\":true"), 1);
    /* a second run has nothing left to do */
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK_EQ_INT(r.evicted_images + r.removed_blobs, 0);
    fx_teardown(&fx);
}

static void test_gc_redis__an_image_pulled_since_the_snapshot_is_kept(void)
{
    struct fx fx;
    struct om_gc_evict_out out;
    struct om_tag_rec tr;
    int64_t t0 = 1000000000000;
    bool deleted[1];

    CHECK(fx_setup(&fx));
    struct img a = put_image(&fx, "docker.io/team/a", "1", NULL, 1000, t0);
    CHECK(om_index_note_pull(fx.ix, "docker.io/team/a", "1", &a.manifest, t0 + MIN_MS) == OM_OK);
    struct om_gc_evict_req req = {.root = &a.manifest, .expect_last_used = t0,
                                  .nodes = &a.manifest, .n_nodes = 1, .cutoff = t0 + 5 * MIN_MS,
                                  .now = t0 + 6 * MIN_MS};
    CHECK(om_index_gc_evict(fx.db, &req, deleted, &out) == OM_OK);
    CHECK(out.touched);
    CHECK(!deleted[0]);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/a", "1", &tr) == OM_OK);
    /* with the right expectation it goes, and its tag (no snapshot loaded:
     * found through the repositories holding it) */
    req.expect_last_used = t0 + MIN_MS;
    CHECK(om_index_gc_evict(fx.db, &req, deleted, &out) == OM_OK);
    CHECK(!out.touched);
    CHECK(deleted[0]);
    CHECK_EQ_INT(out.tags_deleted, 1);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/a", "1", &tr) == OM_ERR_NOTFOUND);
    fx_teardown(&fx);
}

static void test_gc_redis__a_blob_a_new_manifest_lists_is_not_deleted(void)
{
    struct fx fx;
    struct om_gc_graph g = {0};
    struct om_gc_evict_out out;
    int64_t t0 = 1000000000000;
    bool deleted[1];

    CHECK(fx_setup(&fx));
    om_digest orphan = put_blob(&fx, NULL, "lonely", 100, t0);
    CHECK(om_index_gc_load(fx.db, &g) == OM_OK); /* the snapshot: an orphan */
    om_gc_graph_free(&g);
    om_digest cfgd = put_blob(&fx, NULL, "cfg", 10, t0);
    om_digest ch[2] = {cfgd, orphan};
    (void)put_manifest(&fx, "docker.io/x/y", "1", ch, 2, om_now_ms());
    struct om_gc_evict_req req = {.nodes = &orphan, .n_nodes = 1, .cutoff = t0 + MIN_MS,
                                  .now = t0 + MIN_MS};
    CHECK(om_index_gc_evict(fx.db, &req, deleted, &out) == OM_OK);
    CHECK(!deleted[0]);
    CHECK(has(&fx, &orphan));
    fx_teardown(&fx);
}

static void test_gc_redis__a_blob_with_a_download_lease_is_not_deleted(void)
{
    struct fx fx;
    struct om_gc_result r;
    char cmd[160];
    int64_t t0 = 1000000000000;

    CHECK(fx_setup(&fx));
    om_digest orphan = put_blob(&fx, NULL, "being fetched again", 100, t0);
    om_digest other = put_blob(&fx, NULL, "nobody's", 100, t0);
    snprintf(cmd, sizeof(cmd), "SET om:fl:%s replica-2|http://r2:5000|3 PX 60000", orphan.str);
    CHECK_EQ_INT(rs_cmd(&srv, DB, cmd, NULL, 0), 0);
    struct om_gc_env e = {.cfg = fx.cfg, .store = fx.st, .db = fx.db, .now = t0 + 60 * MIN_MS};
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK(has(&fx, &orphan));
    CHECK(!has(&fx, &other));
    CHECK_EQ_INT(r.orphan_blobs, 1);
    snprintf(cmd, sizeof(cmd), "DEL om:fl:%s", orphan.str);
    rs_cmd(&srv, DB, cmd, NULL, 0);
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK(!has(&fx, &orphan));
    CHECK_EQ_INT(stat_field("blobs"), 0);
    CHECK_EQ_INT(stat_field("blob_bytes"), 0);
    fx_teardown(&fx);
}

static void test_gc_redis__evicting_one_tag_keeps_another_repository_s_tag(void)
{
    struct fx fx;
    struct om_tag_rec tr;
    int64_t t0 = 1000000000000;
    uint64_t freed = 1;

    CHECK(fx_setup(&fx));
    struct img a = put_image(&fx, "docker.io/team/a", "1", NULL, 1000, t0);
    CHECK(om_index_tag_put(fx.ix, "docker.io/team/copy", "v1", &a.manifest, OCI_MANIFEST, 10,
                           t0) == OM_OK);
    struct om_gc_env e = {.cfg = fx.cfg, .store = fx.st, .db = fx.db, .now = t0 + MIN_MS};
    CHECK(om_gc_evict_env(&e, "docker.io/team/a", "1", &freed) == OM_OK);
    CHECK_EQ_INT(freed, 0);
    CHECK(has(&fx, &a.manifest));
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/a", "1", &tr) == OM_ERR_NOTFOUND);
    CHECK(om_index_tag_get(fx.ix, "docker.io/team/copy", "v1", &tr) == OM_OK);
    /* evicting the other tag too removes the content */
    CHECK(om_gc_evict_env(&e, "docker.io/team/copy", "v1", &freed) == OM_OK);
    CHECK(freed > 1000);
    CHECK(!has(&fx, &a.manifest) && !has(&fx, &a.layer));
    CHECK_EQ_INT(stat_field("tags"), 0);
    fx_teardown(&fx);
}

/* OM_GC_BENCH=1: the snapshot of an index of 2000 images (2000 tags, 2000
 * manifests of 10 children each, 20000 blobs) — a figure, never pass/fail. */
static void bench_load(void)
{
    struct fx fx;
    struct om_gc_graph g = {0};
    struct timespec t0, t1;
    char name[64];
    int64_t t = 1000000000000;

    CHECK(fx_setup(&fx));
    for (int m = 0; m < 2000; m++) {
        om_digest ch[10];
        for (int c = 0; c < 10; c++) {
            snprintf(name, sizeof(name), "blob %d/%d", m, c);
            om_hash_buf(name, strlen(name), &ch[c]);
            CHECK(om_index_blob_put(fx.ix, "docker.io/bench/r", &ch[c], 1000, t) == OM_OK);
        }
        om_digest d;
        snprintf(name, sizeof(name), "manifest %d", m);
        om_hash_buf(name, strlen(name), &d);
        CHECK(om_index_manifest_put(fx.ix, "docker.io/bench/r", &d, OCI_MANIFEST, 500, ch, 10,
                                    t) == OM_OK);
        snprintf(name, sizeof(name), "t%d", m);
        CHECK(om_index_tag_put(fx.ix, "docker.io/bench/r", name, &d, OCI_MANIFEST, 500, t) ==
              OM_OK);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(om_index_gc_load(fx.db, &g) == OM_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("bench: gc snapshot from redis: %zu nodes, %zu edges, %zu images in %.1f ms\n",
           g.n_nodes, g.n_edges, g.n_images,
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    om_gc_graph_free(&g);
    fx_teardown(&fx);
}

/* Last: it stops the server. */
static void test_gc_redis__with_redis_down_nobody_runs_and_it_says_so(void)
{
    struct fx fx;
    struct om_gc_result r;
    uint64_t freed = 1;

    CHECK(fx_setup(&fx));
    struct img a = put_image(&fx, "docker.io/team/a", "1", NULL, 1000, 1000000000000);
    rs_kill(&srv);
    struct om_gc_env e = {.cfg = fx.cfg, .store = fx.st, .db = fx.db};
    CHECK(om_gc_run_env(&e, &r) == OM_OK);
    CHECK(r.not_leader);
    CHECK_EQ_INT(r.leader[0], '\0');
    CHECK(!om_index_gc_leading(fx.db));
    CHECK(om_gc_evict_env(&e, "docker.io/team/a", "1", &freed) == OM_ERR_UNAVAILABLE);
    CHECK(has(&fx, &a.manifest) && has(&fx, &a.layer));
    fx_teardown(&fx);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (!rs_start(&srv, false)) {
        printf("redis-server not found: skipped\n");
        return test_done();
    }
    RUN(test_gc_redis__one_connection_at_a_time_holds_the_gc_lease);
    RUN(test_gc_redis__a_lease_taken_over_is_noticed_and_left_alone);
    RUN(test_gc_redis__a_run_evicts_the_lru_image_and_keeps_the_counters_exact);
    RUN(test_gc_redis__an_image_pulled_since_the_snapshot_is_kept);
    RUN(test_gc_redis__a_blob_a_new_manifest_lists_is_not_deleted);
    RUN(test_gc_redis__a_blob_with_a_download_lease_is_not_deleted);
    RUN(test_gc_redis__evicting_one_tag_keeps_another_repository_s_tag);
    if (getenv("OM_GC_BENCH") != NULL)
        bench_load();
    RUN(test_gc_redis__with_redis_down_nobody_runs_and_it_says_so);
    rs_stop(&srv);
    return test_done();
}
