/* test_store_backend.c — the store's backend interface (store_backend.h):
 * the dispatcher in store.c, the fs backend's table, and a fault-injecting
 * wrapper backend in front of the fs one (the SQLite test-VFS idea), which
 * also shows that a wrapper needs nothing but the interface. */
#include "test.h"

#include "cache/store.h"
#include "cache/store_backend.h"
#include "core/hash.h"

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

/* ---- the wrapper ------------------------------------------------------- */

enum fault_op { F_NONE, F_BEGIN, F_WRITE, F_COMMIT, F_HAS, F_OPEN_BLOB, F_READ_AT, F_REMOVE };

/* One wrapper at a time (the tests are sequential): its state is global, so
 * the ingest operations, which get no store, find it without in->st. */
static struct faulty {
    struct om_store base;  /* first: base.ops == &faulty_ops */
    struct om_store *inner; /* owned */
    enum fault_op fail;    /* the operation that fails, F_NONE for none */
    int fail_err;          /* what it returns */
    unsigned calls;        /* operations that went through the wrapper */
} g_faulty;

static bool fails(enum fault_op op)
{
    g_faulty.calls++;
    return g_faulty.fail == op;
}

static void faulty_close(struct om_store *st)
{
    (void)st;
    om_store_close(g_faulty.inner);
    g_faulty.inner = NULL;
}

static const char *faulty_root(const struct om_store *st)
{
    (void)st;
    return g_faulty.inner->ops->root(g_faulty.inner);
}

static int faulty_ingest_begin(struct om_store *st, struct om_ingest **out)
{
    (void)st;
    if (fails(F_BEGIN)) {
        *out = NULL;
        return g_faulty.fail_err;
    }
    return g_faulty.inner->ops->ingest_begin(g_faulty.inner, out);
}

static int faulty_ingest_write(struct om_ingest *in, const void *buf, size_t len)
{
    if (fails(F_WRITE))
        return g_faulty.fail_err;
    return g_faulty.inner->ops->ingest_write(in, buf, len);
}

static int faulty_ingest_reserve(struct om_ingest *in, uint64_t size)
{
    g_faulty.calls++;
    return g_faulty.inner->ops->ingest_reserve(in, size);
}

static int faulty_ingest_truncate(struct om_ingest *in, uint64_t size)
{
    g_faulty.calls++;
    return g_faulty.inner->ops->ingest_truncate(in, size);
}

static int faulty_ingest_commit(struct om_store *st, struct om_ingest *in, const om_digest *d)
{
    (void)st;
    if (fails(F_COMMIT)) {
        g_faulty.inner->ops->ingest_abort(in); /* commit frees `in` in every case */
        return g_faulty.fail_err;
    }
    return g_faulty.inner->ops->ingest_commit(g_faulty.inner, in, d);
}

static void faulty_ingest_abort(struct om_ingest *in)
{
    g_faulty.calls++;
    g_faulty.inner->ops->ingest_abort(in);
}

static bool faulty_has(struct om_store *st, const om_digest *d, uint64_t *size)
{
    (void)st;
    if (fails(F_HAS))
        return false;
    return g_faulty.inner->ops->has(g_faulty.inner, d, size);
}

static int faulty_open_blob(struct om_store *st, const om_digest *d, int *fd, uint64_t *size)
{
    (void)st;
    if (fails(F_OPEN_BLOB)) {
        *fd = -1;
        return g_faulty.fail_err;
    }
    return g_faulty.inner->ops->open_blob(g_faulty.inner, d, fd, size);
}

static int faulty_read_at(struct om_store *st, const om_digest *d, uint64_t off, void *buf,
                          size_t len, size_t *got)
{
    (void)st;
    if (fails(F_READ_AT))
        return g_faulty.fail_err;
    return g_faulty.inner->ops->read_at(g_faulty.inner, d, off, buf, len, got);
}

static int faulty_remove(struct om_store *st, const om_digest *d)
{
    (void)st;
    if (fails(F_REMOVE))
        return g_faulty.fail_err;
    return g_faulty.inner->ops->remove(g_faulty.inner, d);
}

static int faulty_walk(struct om_store *st, om_store_walk_fn fn, void *ud)
{
    (void)st;
    g_faulty.calls++;
    return g_faulty.inner->ops->walk(g_faulty.inner, fn, ud);
}

static uint64_t faulty_bytes(struct om_store *st)
{
    (void)st;
    return g_faulty.inner->ops->bytes(g_faulty.inner);
}

static int faulty_quarantine(struct om_store *st, const om_digest *d, uint64_t if_size)
{
    (void)st;
    g_faulty.calls++;
    return g_faulty.inner->ops->quarantine(g_faulty.inner, d, if_size);
}

static const struct om_store_ops faulty_ops = {
    .version = OM_STORE_OPS_VERSION,
    .name = "faulty",
    .caps = 0,
    .close = faulty_close,
    .root = faulty_root,
    .ingest_begin = faulty_ingest_begin,
    .ingest_write = faulty_ingest_write,
    .ingest_reserve = faulty_ingest_reserve,
    .ingest_truncate = faulty_ingest_truncate,
    .ingest_commit = faulty_ingest_commit,
    .ingest_abort = faulty_ingest_abort,
    .has = faulty_has,
    .open_blob = faulty_open_blob,
    .read_at = faulty_read_at,
    .remove = faulty_remove,
    .walk = faulty_walk,
    .bytes = faulty_bytes,
    .quarantine = faulty_quarantine,
};

/* The same wrapper shaped like an object store: no local files to open
 * (open_blob NULL), every read a ranged read, and no quarantine. */
static const struct om_store_ops objects_ops = {
    .version = OM_STORE_OPS_VERSION,
    .name = "objects",
    .caps = 0,
    .close = faulty_close,
    .root = faulty_root,
    .ingest_begin = faulty_ingest_begin,
    .ingest_write = faulty_ingest_write,
    .ingest_reserve = faulty_ingest_reserve,
    .ingest_truncate = faulty_ingest_truncate,
    .ingest_commit = faulty_ingest_commit,
    .ingest_abort = faulty_ingest_abort,
    .has = faulty_has,
    .read_at = faulty_read_at,
    .remove = faulty_remove,
    .walk = faulty_walk,
    .bytes = faulty_bytes,
};

/* ---- fixture ----------------------------------------------------------- */

struct fixture {
    char root[64];
    struct om_store *st; /* the wrapper, in front of an fs store on root */
};

static bool fx_setup(struct fixture *fx)
{
    snprintf(fx->root, sizeof(fx->root), "/tmp/om-test-store-backend-XXXXXX");
    if (mkdtemp(fx->root) == NULL)
        return false;
    g_faulty = (struct faulty){.base.ops = &faulty_ops};
    fx->st = &g_faulty.base;
    return om_store_open(&g_faulty.inner, fx->root) == OM_OK;
}

static void fx_teardown(struct fixture *fx)
{
    om_store_close(fx->st);
    nftw(fx->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t count_ingest(const struct fixture *fx)
{
    char path[128];
    size_t n = 0;
    snprintf(path, sizeof(path), "%s/ingest", fx->root);
    DIR *dir = opendir(path);
    if (dir == NULL)
        return (size_t)-1;
    for (struct dirent *de; (de = readdir(dir)) != NULL;)
        n += de->d_name[0] != '.';
    closedir(dir);
    return n;
}

static om_digest digest_of(const char *s)
{
    om_digest d;
    om_hash_buf(s, strlen(s), &d);
    return d;
}

/* ---- tests ------------------------------------------------------------- */

static void test_store_backend__fs_store_says_what_it_can_do(void)
{
    char root[64];
    struct om_store *st = NULL;

    snprintf(root, sizeof(root), "/tmp/om-test-store-backend-XXXXXX");
    CHECK(mkdtemp(root) != NULL);
    CHECK_EQ_INT(om_store_open(&st, root), OM_OK);
    if (st != NULL) {
        CHECK_EQ_STR(st->ops->name, "fs");
        CHECK(st->ops->version >= 1);
        CHECK((om_store_caps(st) & OM_STORE_CAN_SENDFILE) != 0);
        CHECK_EQ_STR(om_store_root(st), root);
    }
    om_store_close(st);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_store_backend__null_stores_and_ingests_never_reach_a_backend(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("never");

    CHECK(fx_setup(&fx));
    om_store_close(NULL);
    om_ingest_abort(NULL);
    CHECK_EQ_INT(om_ingest_commit(fx.st, NULL, &d), OM_ERR_INVALID);
    CHECK_EQ_INT(g_faulty.calls, 0);
    fx_teardown(&fx);
}

static void test_store_backend__every_call_goes_through_the_wrapper(void)
{
    struct fixture fx = {0};
    const char *content = "through the wrapper";
    om_digest d = digest_of(content);
    struct om_ingest *in = NULL;
    char *buf = NULL;
    size_t len = 0;
    uint64_t size = 0;

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_caps(fx.st), 0);
    CHECK_EQ_STR(om_store_root(fx.st), fx.root);
    CHECK_EQ_INT(om_ingest_begin(fx.st, &in), OM_OK);
    CHECK(in != NULL && in->st == fx.st); /* later ingest calls go to the wrapper */
    if (in != NULL) {
        CHECK_EQ_INT(om_ingest_reserve(in, strlen(content)), OM_OK);
        CHECK_EQ_INT(om_ingest_write(in, "junk", 4), OM_OK);
        CHECK_EQ_INT(om_ingest_truncate(in, 0), OM_OK);
        CHECK_EQ_INT(om_ingest_write(in, content, strlen(content)), OM_OK);
        CHECK_EQ_INT(om_ingest_commit(fx.st, in, &d), OM_OK);
    }
    CHECK_EQ_INT(g_faulty.calls, 6);
    CHECK(om_store_has(fx.st, &d, &size));
    CHECK_EQ_INT(size, strlen(content));
    CHECK(om_store_has(g_faulty.inner, &d, NULL)); /* it landed in the fs store */
    CHECK_EQ_INT(om_store_read(fx.st, &d, 100, &buf, &len), OM_OK);
    CHECK(buf != NULL && len == strlen(content) && memcmp(buf, content, len) == 0);
    free(buf);
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), strlen(content));
    CHECK_EQ_INT(om_store_remove(fx.st, &d), OM_OK);
    CHECK(!om_store_has(fx.st, &d, NULL));
    CHECK_EQ_INT(om_store_bytes(fx.st), 0);
    CHECK_EQ_INT(count_ingest(&fx), 0);
    fx_teardown(&fx);
}

static void test_store_backend__a_failed_write_leaves_no_ingest_and_no_blob(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("{\"schemaVersion\":2}");

    CHECK(fx_setup(&fx));
    g_faulty.fail = F_WRITE;
    g_faulty.fail_err = OM_ERR_NOSPACE;
    CHECK_EQ_INT(om_store_put(fx.st, &d, "{\"schemaVersion\":2}", 19), OM_ERR_NOSPACE);
    CHECK(!om_store_has(fx.st, &d, NULL));
    CHECK_EQ_INT(count_ingest(&fx), 0); /* put aborted its ingest through the wrapper */
    CHECK_EQ_INT(om_store_bytes(fx.st), 0);
    fx_teardown(&fx);
}

static void test_store_backend__a_failed_commit_frees_the_ingest(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("commit fails");

    CHECK(fx_setup(&fx));
    g_faulty.fail = F_COMMIT;
    g_faulty.fail_err = OM_ERR_IO;
    CHECK_EQ_INT(om_store_put(fx.st, &d, "commit fails", 12), OM_ERR_IO);
    CHECK(!om_store_has(fx.st, &d, NULL));
    CHECK_EQ_INT(count_ingest(&fx), 0);
    g_faulty.fail = F_NONE;
    CHECK_EQ_INT(om_store_put(fx.st, &d, "commit fails", 12), OM_OK);
    CHECK(om_store_has(fx.st, &d, NULL));
    fx_teardown(&fx);
}

static void test_store_backend__a_failed_begin_is_the_puts_error(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("begin fails");
    struct om_ingest *in = (struct om_ingest *)1;

    CHECK(fx_setup(&fx));
    g_faulty.fail = F_BEGIN;
    g_faulty.fail_err = OM_ERR_NOSPACE;
    CHECK_EQ_INT(om_ingest_begin(fx.st, &in), OM_ERR_NOSPACE);
    CHECK(in == NULL);
    CHECK_EQ_INT(om_store_put(fx.st, &d, "begin fails", 11), OM_ERR_NOSPACE);
    CHECK_EQ_INT(count_ingest(&fx), 0);
    fx_teardown(&fx);
}

static void test_store_backend__read_and_verify_report_what_open_blob_says(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("present, but cannot be opened");
    char *buf = (char *)1;
    size_t len = 1;

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &d, "present, but cannot be opened", 29), OM_OK);
    g_faulty.fail = F_OPEN_BLOB;
    g_faulty.fail_err = OM_ERR_IO;
    CHECK_EQ_INT(om_store_read(fx.st, &d, 100, &buf, &len), OM_ERR_IO);
    CHECK(buf == NULL && len == 0);
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_ERR_IO);
    g_faulty.fail_err = OM_ERR_NOTFOUND;
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_ERR_NOTFOUND);
    g_faulty.fail = F_NONE;
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_OK);
    fx_teardown(&fx);
}

static void test_store_backend__put_skips_what_has_reports_present(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("already there");

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &d, "already there", 13), OM_OK);
    g_faulty.fail = F_BEGIN; /* a second put must not even begin an ingest */
    g_faulty.fail_err = OM_ERR_IO;
    CHECK_EQ_INT(om_store_put(fx.st, &d, "already there", 13), OM_OK);
    g_faulty.fail = F_REMOVE;
    CHECK_EQ_INT(om_store_remove(fx.st, &d), OM_ERR_IO);
    CHECK(om_store_has(fx.st, &d, NULL));
    g_faulty.fail = F_HAS; /* absent by the backend's word: put ingests again */
    g_faulty.fail_err = OM_OK;
    CHECK_EQ_INT(om_store_put(fx.st, &d, "already there", 13), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), 13); /* the second commit found it there */
    CHECK_EQ_INT(count_ingest(&fx), 0);
    fx_teardown(&fx);
}

static void test_store_backend__fs_reads_ranges_and_cannot_presign(void)
{
    struct fixture fx = {0};
    const char *content = "0123456789";
    om_digest d = digest_of(content), absent = digest_of("absent");
    char buf[16], url[64] = "x";
    size_t got = 99;

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &d, content, 10), OM_OK);
    CHECK_EQ_INT(om_store_read_at(g_faulty.inner, &d, 3, buf, 4, &got), OM_OK);
    CHECK_EQ_INT(got, 4);
    CHECK(memcmp(buf, "3456", 4) == 0);
    CHECK_EQ_INT(om_store_read_at(g_faulty.inner, &d, 8, buf, sizeof(buf), &got), OM_OK);
    CHECK_EQ_INT(got, 2); /* short only at the end */
    CHECK_EQ_INT(om_store_read_at(g_faulty.inner, &d, 10, buf, sizeof(buf), &got), OM_OK);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_INT(om_store_read_at(g_faulty.inner, &absent, 0, buf, sizeof(buf), &got),
                 OM_ERR_NOTFOUND);
    CHECK((om_store_caps(g_faulty.inner) & OM_STORE_CAN_PRESIGN) == 0);
    CHECK_EQ_INT(om_store_presign_get(g_faulty.inner, &d, 600, url, sizeof(url)), OM_ERR_INVALID);
    CHECK_EQ_STR(url, "");
    fx_teardown(&fx);
}

static void test_store_backend__a_backend_without_files_is_read_by_ranges(void)
{
    struct fixture fx = {0};
    const char *content = "an object in a bucket, read by ranges";
    om_digest d = digest_of(content);
    char *buf = NULL;
    size_t len = 0;
    int fd = 7;

    CHECK(fx_setup(&fx));
    g_faulty.base.ops = &objects_ops;
    CHECK_EQ_INT(om_store_put(fx.st, &d, content, strlen(content)), OM_OK);
    CHECK_EQ_INT(om_store_open_blob(fx.st, &d, &fd, NULL), OM_ERR_INVALID);
    CHECK_EQ_INT(fd, -1);
    CHECK_EQ_INT(om_store_read(fx.st, &d, 100, &buf, &len), OM_OK);
    CHECK_EQ_INT(len, strlen(content));
    CHECK(buf != NULL && strcmp(buf, content) == 0);
    free(buf);
    buf = NULL;
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_OK);
    g_faulty.fail = F_READ_AT;
    g_faulty.fail_err = OM_ERR_IO;
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_ERR_IO);
    CHECK_EQ_INT(om_store_read(fx.st, &d, 100, &buf, &len), OM_ERR_IO);
    CHECK(buf == NULL && len == 0);
    g_faulty.fail = F_NONE;
    fx_teardown(&fx);
}

static void test_store_backend__quarantine_goes_to_the_backend_and_is_counted(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("to be quarantined");
    char q[128];

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &d, "to be quarantined", 17), OM_OK);
    unsigned before = g_faulty.calls;
    CHECK_EQ_INT(om_store_quarantine(fx.st, &d, 3), OM_ERR_NOTFOUND); /* not that size */
    CHECK_EQ_INT(om_store_quarantined(fx.st), 0);
    CHECK_EQ_INT(om_store_quarantine(fx.st, &d, 17), OM_OK);
    CHECK(g_faulty.calls == before + 2);
    CHECK_EQ_INT(om_store_quarantined(fx.st), 1);
    CHECK(!om_store_has(fx.st, &d, NULL));
    snprintf(q, sizeof(q), "%s/quarantine/%s", fx.root, om_digest_hex(&d));
    CHECK(access(q, F_OK) == 0);
    CHECK_EQ_INT(om_store_bytes(fx.st), 0);
    fx_teardown(&fx);
}

static void test_store_backend__a_backend_without_quarantine_removes_instead(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("removed for want of a quarantine");

    CHECK(fx_setup(&fx));
    g_faulty.base.ops = &objects_ops;
    CHECK_EQ_INT(om_store_put(fx.st, &d, "removed for want of a quarantine", 32), OM_OK);
    CHECK_EQ_INT(om_store_quarantine(fx.st, &d, 31), OM_ERR_NOTFOUND);
    CHECK(om_store_has(fx.st, &d, NULL));
    CHECK_EQ_INT(om_store_quarantine(fx.st, &d, OM_STORE_ANY_SIZE), OM_OK);
    CHECK(!om_store_has(fx.st, &d, NULL));
    CHECK_EQ_INT(om_store_quarantined(fx.st), 1);
    CHECK_EQ_INT(om_store_quarantine(fx.st, &d, OM_STORE_ANY_SIZE), OM_ERR_NOTFOUND);
    fx_teardown(&fx);
}

int main(void)
{
    RUN(test_store_backend__fs_store_says_what_it_can_do);
    RUN(test_store_backend__null_stores_and_ingests_never_reach_a_backend);
    RUN(test_store_backend__every_call_goes_through_the_wrapper);
    RUN(test_store_backend__a_failed_write_leaves_no_ingest_and_no_blob);
    RUN(test_store_backend__a_failed_commit_frees_the_ingest);
    RUN(test_store_backend__a_failed_begin_is_the_puts_error);
    RUN(test_store_backend__read_and_verify_report_what_open_blob_says);
    RUN(test_store_backend__put_skips_what_has_reports_present);
    RUN(test_store_backend__fs_reads_ranges_and_cannot_presign);
    RUN(test_store_backend__a_backend_without_files_is_read_by_ranges);
    RUN(test_store_backend__quarantine_goes_to_the_backend_and_is_counted);
    RUN(test_store_backend__a_backend_without_quarantine_removes_instead);
    return test_done();
}
