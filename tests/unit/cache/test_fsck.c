/* test_fsck.c — `ocimirror fsck` on real temp storage directories: each
 * case builds a store + index with the real modules, damages it in one
 * way, runs om_cmd_fsck with --json (stdout captured to a file) and checks
 * the exit status, the report and what --repair changed on disk.  The last
 * cases call the engine (cache/fsck.h) directly. */
#include "test.h"

#include "cache/fsck.h"
#include "cache/index.h"
#include "cache/store.h"
#include "cli/cli.h"
#include "core/hash.h"

#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define REPO "docker.io/library/a"
#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

/* A storage with: manifest M tagged REPO:1 whose children are blobs B1 and
 * B2; all recorded in the index.  Store and index are closed again (no
 * server holds it). */
struct fixture {
    char root[64];
    char out[96];
    om_digest m, b1, b2;
};

static const char MANIFEST[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\",\"config\":{},\"layers\":[]}";
static const char B1[] = "first blob";
static const char B2[] = "second blob, a little longer";

static bool fx_setup(struct fixture *fx)
{
    struct om_store *st = NULL;
    struct om_index *ix = NULL;
    bool ok = false;

    snprintf(fx->root, sizeof(fx->root), "/tmp/om-test-fsck-XXXXXX");
    if (mkdtemp(fx->root) == NULL)
        return false;
    snprintf(fx->out, sizeof(fx->out), "%s.out", fx->root);
    om_hash_buf(MANIFEST, strlen(MANIFEST), &fx->m);
    om_hash_buf(B1, strlen(B1), &fx->b1);
    om_hash_buf(B2, strlen(B2), &fx->b2);
    om_digest children[2] = {fx->b1, fx->b2};
    if (om_store_open(&st, fx->root) != OM_OK || om_index_open(&ix, st, NULL) != OM_OK)
        goto done;
    ok = om_store_put(st, &fx->m, MANIFEST, strlen(MANIFEST)) == OM_OK &&
         om_store_put(st, &fx->b1, B1, strlen(B1)) == OM_OK &&
         om_store_put(st, &fx->b2, B2, strlen(B2)) == OM_OK &&
         om_index_manifest_put(ix, REPO, &fx->m, OCI_MANIFEST, strlen(MANIFEST), children, 2,
                               1000) == OM_OK &&
         om_index_tag_put(ix, REPO, "1", &fx->m, OCI_MANIFEST, strlen(MANIFEST), 1000) == OM_OK &&
         om_index_blob_put(ix, REPO, &fx->b1, strlen(B1), 1000) == OM_OK &&
         om_index_blob_put(ix, REPO, &fx->b2, strlen(B2), 1000) == OM_OK;
done:
    om_index_close(ix);
    om_store_close(st);
    return ok;
}

static void fx_teardown(struct fixture *fx)
{
    nftw(fx->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    unlink(fx->out);
}

static void blob_path(const struct fixture *fx, const om_digest *d, char *out, size_t sz)
{
    const char *hex = om_digest_hex(d);
    snprintf(out, sz, "%s/blobs/sha256/%.2s/%s", fx->root, hex, hex);
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

/* Run `fsck --storage ROOT --json [extra...]`; stdout goes to fx->out and
 * is parsed into *report (NULL when it is not JSON). */
static int run_fsck(struct fixture *fx, json_t **report, const char *a1, const char *a2,
                    const char *a3)
{
    char *argv[8] = {"fsck", "--storage", fx->root, "--json"};
    int argc = 4;
    const char *extra[] = {a1, a2, a3};
    for (size_t i = 0; i < 3 && extra[i] != NULL; i++)
        argv[argc++] = (char *)extra[i];
    argv[argc] = NULL;

    fflush(stdout);
    int saved = dup(1);
    int fd = open(fx->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    close(fd);
    int rc = om_cmd_fsck(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    *report = json_load_file(fx->out, 0, NULL);
    return rc;
}

/* report["a"]["b"] as an integer (-1 when absent). */
static long long jget(json_t *report, const char *a, const char *b)
{
    json_t *v = json_object_get(report, a);
    if (b != NULL)
        v = json_object_get(v, b);
    return json_is_integer(v) ? (long long)json_integer_value(v)
           : json_is_boolean(v) ? (long long)json_is_true(v)
                                : -1;
}

static const char *jstr(json_t *report, const char *a, const char *b)
{
    json_t *v = json_object_get(json_object_get(report, a), b);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Does the index still have a row for d / the tag?  Opened read-only with
 * plain SQLite so the check itself cannot change (or rebuild) anything. */
static int index_rows(const struct fixture *fx, const char *sql, const char *arg)
{
    char path[128];
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int n = -1;
    snprintf(path, sizeof(path), "%s/index.db", fx->root);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW)
            n = sqlite3_column_int(s, 0);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

static void test_fsck__a_healthy_storage_is_clean_and_exits_zero(void)
{
    struct fixture fx;
    json_t *r = NULL;
    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(run_fsck(&fx, &r, NULL, NULL, NULL), 0);
    CHECK(r != NULL);
    CHECK_EQ_INT(jget(r, "clean", NULL), 1);
    CHECK_EQ_INT(jget(r, "blobs", "checked"), 3);
    CHECK_EQ_INT(jget(r, "blobs", "corrupt"), 0);
    CHECK_EQ_STR(jstr(r, "index", "state"), "ok");
    CHECK_EQ_INT(jget(r, "index", "tags"), 1);
    CHECK_EQ_INT(jget(r, "index", "manifests"), 1);
    CHECK_EQ_INT(jget(r, "index", "blobs"), 2);
    CHECK_EQ_INT(jget(r, "index", "unindexed_objects"), 0);
    CHECK_EQ_INT(jget(r, "in_use", NULL), 0);
    json_decref(r);
    fx_teardown(&fx);
}

static void test_fsck__a_corrupt_blob_is_reported_then_removed_with_its_row(void)
{
    struct fixture fx;
    json_t *r = NULL;
    char path[256];
    CHECK(fx_setup(&fx));
    blob_path(&fx, &fx.b2, path, sizeof(path));
    write_file(path, "second blob, a little LONGER"); /* same size, other bytes */

    CHECK_EQ_INT(run_fsck(&fx, &r, NULL, NULL, NULL), 1);
    CHECK_EQ_INT(jget(r, "blobs", "corrupt"), 1);
    CHECK_EQ_INT(jget(r, "blobs", "removed"), 0);
    json_t *p0 = json_array_get(json_object_get(r, "problems"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(p0, "kind")), "corrupt_blob");
    CHECK_EQ_STR(json_string_value(json_object_get(p0, "digest")), fx.b2.str);
    CHECK(exists(path)); /* without --repair nothing changes */
    json_decref(r);

    CHECK_EQ_INT(run_fsck(&fx, &r, "--repair", NULL, NULL), 0);
    CHECK_EQ_INT(jget(r, "blobs", "removed"), 1);
    CHECK_EQ_INT(jget(r, "index", "missing_blobs"), 1); /* its row, found and dropped */
    CHECK_EQ_INT(jget(r, "index", "rows_dropped"), 1);
    CHECK_EQ_INT(jget(r, "problems_left", NULL), 0);
    CHECK(!exists(path));
    CHECK_EQ_INT(index_rows(&fx, "SELECT count(*) FROM blobs WHERE digest = ?1", fx.b2.str), 0);
    CHECK_EQ_INT(index_rows(&fx, "SELECT count(*) FROM blobs WHERE digest = ?1", fx.b1.str), 1);
    json_decref(r);

    CHECK_EQ_INT(run_fsck(&fx, &r, NULL, NULL, NULL), 0); /* and now it is clean */
    json_decref(r);
    fx_teardown(&fx);
}

static void test_fsck__a_truncated_blob_is_of_the_wrong_size_and_repair_quarantines_it(void)
{
    struct fixture fx;
    json_t *r = NULL;
    char path[256], q[256];
    CHECK(fx_setup(&fx));
    blob_path(&fx, &fx.b2, path, sizeof(path));
    CHECK_EQ_INT(truncate(path, 6), 0);
    snprintf(q, sizeof(q), "%s/quarantine/%s", fx.root, om_digest_hex(&fx.b2));

    CHECK_EQ_INT(run_fsck(&fx, &r, NULL, NULL, NULL), 1);
    CHECK_EQ_INT(jget(r, "blobs", "wrong_size"), 1);
    CHECK_EQ_INT(jget(r, "blobs", "corrupt"), 0);
    json_t *p0 = json_array_get(json_object_get(r, "problems"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(p0, "kind")), "wrong_size_blob");
    CHECK_EQ_STR(json_string_value(json_object_get(p0, "digest")), fx.b2.str);
    CHECK_EQ_INT(json_integer_value(json_object_get(p0, "size")), 6);
    CHECK_EQ_INT(json_integer_value(json_object_get(p0, "index_size")), strlen(B2));
    CHECK(exists(path));
    json_decref(r);

    CHECK_EQ_INT(run_fsck(&fx, &r, "--repair", NULL, NULL), 0);
    CHECK_EQ_INT(jget(r, "blobs", "quarantined"), 1);
    CHECK_EQ_INT(jget(r, "problems_left", NULL), 0);
    CHECK_EQ_INT(jget(r, "quarantine", "files"), 1);
    CHECK_EQ_INT(jget(r, "quarantine", "bytes"), 6);
    CHECK(!exists(path));
    CHECK(exists(q));
    /* Its row went with it: the next pull fetches it again. */
    CHECK_EQ_INT(index_rows(&fx, "SELECT count(*) FROM blobs WHERE digest = ?1", fx.b2.str), 0);
    json_decref(r);

    CHECK_EQ_INT(run_fsck(&fx, &r, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(jget(r, "clean", NULL), 1);
    CHECK_EQ_INT(jget(r, "quarantine", "files"), 1); /* left for the operator */
    json_decref(r);

    /* Bytes that hash right are fine whatever the index says of their size
     * (the record is what is wrong; the server corrects it). */
    om_digest b1 = fx.b1;
    sqlite3 *db = NULL;
    char dbp[128];
    snprintf(dbp, sizeof(dbp), "%s/index.db", fx.root);
    CHECK_EQ_INT(sqlite3_open(dbp, &db), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof(sql), "UPDATE blobs SET size = 999 WHERE digest = '%s'", b1.str);
    CHECK_EQ_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(run_fsck(&fx, &r, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(jget(r, "blobs", "wrong_size"), 0);
    json_decref(r);
    fx_teardown(&fx);
}

static void test_fsck__a_missing_manifest_dangles_its_tag_and_repair_drops_both(void)
{
    struct fixture fx;
    json_t *r = NULL;
    char path[256];
    CHECK(fx_setup(&fx));
    blob_path(&fx, &fx.m, path, sizeof(path));
    CHECK(unlink(path) == 0);

    CHECK_EQ_INT(run_fsck(&fx, &r, NULL, NULL, NULL), 1);
    CHECK_EQ_INT(jget(r, "index", "dangling_tags"), 1);
    CHECK_EQ_INT(jget(r, "index", "missing_manifests"), 1);
    CHECK_EQ_INT(jget(r, "index", "missing_blobs"), 0);
    CHECK_EQ_INT(jget(r, "problems_found", NULL), 2);
    json_decref(r);

    CHECK_EQ_INT(run_fsck(&fx, &r, "--repair", NULL, NULL), 0);
    CHECK_EQ_INT(jget(r, "index", "rows_dropped"), 2);
    CHECK_EQ_INT(index_rows(&fx, "SELECT count(*) FROM tags WHERE repo = ?1", REPO), 0);
    CHECK_EQ_INT(index_rows(&fx, "SELECT count(*) FROM manifests WHERE digest = ?1", fx.m.str), 0);
    CHECK_EQ_INT(index_rows(&fx, "SELECT count(*) FROM manifest_children WHERE parent = ?1",
                            fx.m.str), 0);
    CHECK_EQ_INT(index_rows(&fx, "SELECT count(*) FROM manifest_repos WHERE digest = ?1",
                            fx.m.str), 0);
    json_decref(r);
    fx_teardown(&fx);
}

static void test_fsck__a_missing_blob_row_is_dropped_and_the_others_stay(void)
{
    struct fixture fx;
    json_t *r = NULL;
    char path[256];
    CHECK(fx_setup(&fx));
    blob_path(&fx, &fx.b1, path, sizeof(path));
    CHECK(unlink(path) == 0);

    CHECK_EQ_INT(run_fsck(&fx, &r, "--repair", NULL, NULL), 0);
    CHECK_EQ_INT(jget(r, "index", "missing_blobs"), 1);
    CHECK_EQ_INT(index_rows(&fx, "SELECT count(*) FROM blobs WHERE digest = ?1", fx.b1.str), 0);
    CHECK_EQ_INT(index_rows(&fx, "SELECT count(*) FROM blob_repos WHERE digest = ?1", fx.b1.str),
                 0);
    CHECK_EQ_INT(index_rows(&fx, "SELECT count(*) FROM blobs WHERE digest = ?1", fx.b2.str), 1);
    CHECK_EQ_INT(index_rows(&fx, "SELECT count(*) FROM tags WHERE repo = ?1", REPO), 1);
    json_decref(r);
    fx_teardown(&fx);
}

static void test_fsck__a_stored_object_the_index_lacks_is_only_informational(void)
{
    struct fixture fx;
    struct om_store *st = NULL;
    json_t *r = NULL;
    om_digest d;
    CHECK(fx_setup(&fx));
    om_hash_buf("orphan", 6, &d);
    CHECK(om_store_open(&st, fx.root) == OM_OK);
    CHECK(om_store_put(st, &d, "orphan", 6) == OM_OK);
    om_store_close(st);

    CHECK_EQ_INT(run_fsck(&fx, &r, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(jget(r, "index", "unindexed_objects"), 1);
    CHECK_EQ_INT(jget(r, "problems_found", NULL), 0);
    json_decref(r);
    fx_teardown(&fx);
}

static void make_ingest(const struct fixture *fx, const char *name, time_t age_s)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/ingest/%s", fx->root, name);
    write_file(path, "partial download");
    struct timeval tv[2];
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec -= age_s;
    tv[1] = tv[0];
    utimes(path, tv);
}

static int count_ingest(const struct fixture *fx)
{
    char path[256];
    int n = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/ingest/f%d", fx->root, i);
        n += exists(path);
    }
    return n;
}

static void test_fsck__ingest_files_with_no_server_are_stale_and_repair_removes_them(void)
{
    struct fixture fx;
    json_t *r = NULL;
    CHECK(fx_setup(&fx));
    make_ingest(&fx, "f0", 0);
    make_ingest(&fx, "f1", 10);

    CHECK_EQ_INT(run_fsck(&fx, &r, NULL, NULL, NULL), 1);
    CHECK_EQ_INT(jget(r, "ingest", "files"), 2);
    CHECK_EQ_INT(jget(r, "ingest", "stale"), 2);
    CHECK_EQ_INT(count_ingest(&fx), 2);
    json_decref(r);

    CHECK_EQ_INT(run_fsck(&fx, &r, "--repair", NULL, NULL), 0);
    CHECK_EQ_INT(jget(r, "ingest", "removed"), 2);
    CHECK_EQ_INT(count_ingest(&fx), 0);
    json_decref(r);
    fx_teardown(&fx);
}

/* A child process holds the index open the way a server does (a WAL
 * connection) until the pipe `go` closes. */
static pid_t hold_index(const struct fixture *fx, int *go_w)
{
    int ready[2], go[2];
    if (pipe(ready) != 0 || pipe(go) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char path[128], c = 1;
        sqlite3 *db = NULL;
        close(ready[0]);
        close(go[1]);
        snprintf(path, sizeof(path), "%s/index.db", fx->root);
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
            sqlite3_exec(db, "SELECT count(*) FROM tags", NULL, NULL, NULL) != SQLITE_OK)
            _exit(1);
        if (write(ready[1], &c, 1) != 1)
            _exit(1);
        while (read(go[0], &c, 1) > 0) {
        }
        sqlite3_close(db);
        _exit(0);
    }
    char c;
    close(ready[1]);
    close(go[0]);
    bool ok = pid > 0 && read(ready[0], &c, 1) == 1;
    close(ready[0]);
    *go_w = go[1];
    return ok ? pid : -1;
}

static void test_fsck__young_ingest_files_next_to_a_live_server_are_left_alone(void)
{
    struct fixture fx;
    json_t *r = NULL;
    int go = -1, st = 0;
    CHECK(fx_setup(&fx));
    make_ingest(&fx, "f0", 0);         /* a download in flight */
    make_ingest(&fx, "f1", 2 * 3600);  /* abandoned long ago */
    pid_t holder = hold_index(&fx, &go);
    CHECK(holder > 0);

    CHECK_EQ_INT(run_fsck(&fx, &r, "--repair", NULL, NULL), 0);
    CHECK_EQ_INT(jget(r, "in_use", NULL), 1);
    CHECK_EQ_INT(jget(r, "in_use_pid", NULL), holder);
    CHECK_EQ_INT(jget(r, "ingest", "in_flight"), 1);
    CHECK_EQ_INT(jget(r, "ingest", "stale"), 1);
    CHECK_EQ_INT(jget(r, "ingest", "removed"), 1);
    char path[256];
    snprintf(path, sizeof(path), "%s/ingest/f0", fx.root);
    CHECK(exists(path));
    json_decref(r);

    /* --ingest-age 0: the operator says nothing is in flight. */
    CHECK_EQ_INT(run_fsck(&fx, &r, "--ingest-age", "0", NULL), 1);
    CHECK_EQ_INT(jget(r, "ingest", "stale"), 1);
    json_decref(r);

    close(go);
    if (holder > 0)
        waitpid(holder, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    fx_teardown(&fx);
}

static void test_fsck__a_missing_index_is_a_problem_only_when_the_store_has_content(void)
{
    struct fixture fx;
    json_t *r = NULL;
    char path[128];
    CHECK(fx_setup(&fx));
    snprintf(path, sizeof(path), "%s/index.db", fx.root);
    CHECK(unlink(path) == 0);

    CHECK_EQ_INT(run_fsck(&fx, &r, "--repair", NULL, NULL), 1);
    CHECK_EQ_STR(jstr(r, "index", "state"), "missing");
    CHECK(!exists(path)); /* fsck never creates it: the server rebuilds it */
    json_decref(r);
    fx_teardown(&fx);

    /* An empty storage (never cached anything) is clean without an index. */
    snprintf(fx.root, sizeof(fx.root), "/tmp/om-test-fsck-XXXXXX");
    CHECK(mkdtemp(fx.root) != NULL);
    snprintf(fx.out, sizeof(fx.out), "%s.out", fx.root);
    snprintf(path, sizeof(path), "%s/blobs", fx.root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/blobs/sha256", fx.root);
    mkdir(path, 0755);
    CHECK_EQ_INT(run_fsck(&fx, &r, NULL, NULL, NULL), 0);
    CHECK_EQ_STR(jstr(r, "index", "state"), "missing");
    json_decref(r);
    fx_teardown(&fx);
}

static void test_fsck__a_corrupt_index_is_reported_and_left_for_the_server(void)
{
    struct fixture fx;
    json_t *r = NULL;
    char path[128];
    struct stat before, after;
    CHECK(fx_setup(&fx));
    snprintf(path, sizeof(path), "%s/index.db", fx.root);
    write_file(path, "this is not a database, not even close; it is long enough though....");
    CHECK(stat(path, &before) == 0);

    CHECK_EQ_INT(run_fsck(&fx, &r, "--repair", NULL, NULL), 1);
    CHECK_EQ_STR(jstr(r, "index", "state"), "corrupt");
    CHECK_EQ_INT(jget(r, "blobs", "checked"), 3); /* the store is still checked */
    CHECK(stat(path, &after) == 0);
    CHECK_EQ_INT(after.st_size, before.st_size);
    json_decref(r);
    fx_teardown(&fx);
}

static void test_fsck__bad_usage_and_a_non_storage_directory_exit_two(void)
{
    struct fixture fx;
    json_t *r = NULL;
    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(run_fsck(&fx, &r, "--bogus", NULL, NULL), 2);
    json_decref(r);
    CHECK_EQ_INT(run_fsck(&fx, &r, "--ingest-age", "soon", NULL), 2);
    json_decref(r);
    CHECK_EQ_INT(run_fsck(&fx, &r, "--ingest-age", "-1", NULL), 2);
    json_decref(r);
    CHECK_EQ_INT(run_fsck(&fx, &r, "--storage", NULL, NULL), 2); /* no value */
    json_decref(r);
    /* --storage given twice: the last one wins, and it is not a storage. */
    CHECK_EQ_INT(run_fsck(&fx, &r, "--storage", "/nonexistent/om-fsck", NULL), 2);
    json_decref(r);
    fx_teardown(&fx);
}

/* ---- the engine, without the command ------------------------------------ */

struct complaints {
    int n;
    char last[512];
};

static void complain(void *ud, const char *msg)
{
    struct complaints *c = ud;
    c->n++;
    snprintf(c->last, sizeof(c->last), "%s", msg);
}

static void test_fsck__the_engine_returns_its_findings_and_complains_through_a_callback(void)
{
    struct fixture fx;
    struct om_fsck_result res;
    struct complaints c = {0};
    char path[256];
    CHECK(fx_setup(&fx));
    blob_path(&fx, &fx.b1, path, sizeof(path));
    write_file(path, "first BLOB"); /* same size, other bytes */

    struct om_fsck_opts o = {.root = fx.root, .ingest_age_s = 3600, .complain = complain,
                             .ud = &c};
    CHECK(om_fsck_run(&res, &o) == OM_OK);
    CHECK_EQ_INT(c.n, 0);
    CHECK(res.index_ok);
    CHECK_EQ_STR(res.index_state, "ok");
    CHECK(!res.holder);
    CHECK_EQ_INT(res.blobs_checked, 3);
    CHECK_EQ_INT(res.found[OM_FSCK_CORRUPT_BLOB], 1);
    CHECK_EQ_INT(res.n_p, 1);
    CHECK(res.n_p == 1 && res.p[0].kind == OM_FSCK_CORRUPT_BLOB && !res.p[0].repaired);
    CHECK(res.n_p == 1 && strcmp(res.p[0].d.str, fx.b1.str) == 0);
    CHECK_EQ_INT(om_fsck_found(&res), 1);
    CHECK_EQ_INT(om_fsck_left(&res), 1);
    CHECK(exists(path));
    om_fsck_result_free(&res);
    CHECK(res.p == NULL && res.n_p == 0);

    o.repair = true;
    CHECK(om_fsck_run(&res, &o) == OM_OK);
    CHECK_EQ_INT(res.repaired[OM_FSCK_CORRUPT_BLOB], 1);
    CHECK_EQ_INT(res.repaired[OM_FSCK_MISSING_BLOB], 1); /* its row, in the same run */
    CHECK_EQ_INT(om_fsck_left(&res), 0);
    CHECK(!exists(path));
    om_fsck_result_free(&res);

    /* Not a storage: said once through complain, nothing else. */
    o.root = "/nonexistent/om-fsck";
    CHECK(om_fsck_run(&res, &o) == OM_ERR_NOTFOUND);
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_STR(c.last, "/nonexistent/om-fsck is not an ocimirror storage directory"
                         " (no blobs/sha256)");
    om_fsck_result_free(&res);
    om_fsck_result_free(NULL);
    fx_teardown(&fx);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(test_fsck__a_healthy_storage_is_clean_and_exits_zero);
    RUN(test_fsck__a_corrupt_blob_is_reported_then_removed_with_its_row);
    RUN(test_fsck__a_truncated_blob_is_of_the_wrong_size_and_repair_quarantines_it);
    RUN(test_fsck__a_missing_manifest_dangles_its_tag_and_repair_drops_both);
    RUN(test_fsck__a_missing_blob_row_is_dropped_and_the_others_stay);
    RUN(test_fsck__a_stored_object_the_index_lacks_is_only_informational);
    RUN(test_fsck__ingest_files_with_no_server_are_stale_and_repair_removes_them);
    RUN(test_fsck__young_ingest_files_next_to_a_live_server_are_left_alone);
    RUN(test_fsck__a_missing_index_is_a_problem_only_when_the_store_has_content);
    RUN(test_fsck__a_corrupt_index_is_reported_and_left_for_the_server);
    RUN(test_fsck__bad_usage_and_a_non_storage_directory_exit_two);
    RUN(test_fsck__the_engine_returns_its_findings_and_complains_through_a_callback);
    return test_done();
}
