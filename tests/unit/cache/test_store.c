/* test_store.c — the content-addressed store on a real temp directory. */
#include "test.h"

#include "cache/store.h"
#include "core/hash.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh root under /tmp (the store creates it) inside a mkdtemp dir. */
struct fixture {
    char tmp[64];
    char root[128];
    struct om_store *st;
};

static bool fx_setup(struct fixture *fx)
{
    snprintf(fx->tmp, sizeof(fx->tmp), "/tmp/om-test-store-XXXXXX");
    if (mkdtemp(fx->tmp) == NULL)
        return false;
    snprintf(fx->root, sizeof(fx->root), "%s/root", fx->tmp);
    fx->st = NULL;
    return om_store_open(&fx->st, fx->root) == OM_OK;
}

static void fx_teardown(struct fixture *fx)
{
    om_store_close(fx->st);
    rm_rf(fx->tmp);
}

static om_digest digest_of(const char *s)
{
    om_digest d;
    om_hash_buf(s, strlen(s), &d);
    return d;
}

static size_t count_dir(const char *path)
{
    size_t n = 0;
    DIR *dir = opendir(path);
    if (dir == NULL)
        return (size_t)-1;
    for (struct dirent *de; (de = readdir(dir)) != NULL;)
        n += de->d_name[0] != '.';
    closedir(dir);
    return n;
}

static size_t count_ingest(const struct fixture *fx)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/ingest", fx->root);
    return count_dir(path);
}

/* Write `s` through an ingest file in two pieces and commit it. */
static int ingest_str(struct om_store *st, const char *s, const om_digest *d)
{
    struct om_ingest *in = NULL;
    size_t half = strlen(s) / 2;
    int err = om_ingest_begin(st, &in);
    if (err != OM_OK)
        return err;
    if ((err = om_ingest_write(in, s, half)) != OM_OK ||
        (err = om_ingest_write(in, s + half, strlen(s) - half)) != OM_OK) {
        om_ingest_abort(in);
        return err;
    }
    return om_ingest_commit(st, in, d);
}

static void test_store__open_creates_the_layout(void)
{
    struct fixture fx = {0};
    char path[256];
    struct stat sb;

    CHECK(fx_setup(&fx));
    snprintf(path, sizeof(path), "%s/blobs/sha256", fx.root);
    CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
    snprintf(path, sizeof(path), "%s/ingest", fx.root);
    CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
    CHECK_EQ_STR(om_store_root(fx.st), fx.root);
    CHECK_EQ_INT(om_store_bytes(fx.st), 0);
    fx_teardown(&fx);
}

static void test_store__open_rejects_bad_roots(void)
{
    struct om_store *st = (struct om_store *)1;
    char longroot[5000];

    CHECK_EQ_INT(om_store_open(&st, ""), OM_ERR_INVALID);
    CHECK(st == NULL);
    memset(longroot, 'a', sizeof(longroot) - 1);
    longroot[0] = '/';
    longroot[sizeof(longroot) - 1] = '\0';
    CHECK_EQ_INT(om_store_open(&st, longroot), OM_ERR_INVALID);
    /* A root that is a file, not a directory. */
    CHECK_EQ_INT(om_store_open(&st, "/dev/null"), OM_ERR_IO);
    CHECK(st == NULL);
}

static void test_store__one_owner_per_root_and_tools_beside_it(void)
{
    struct fixture fx = {0};
    struct om_store *second = (struct om_store *)1, *tool = NULL;
    char path[256], pid[32] = "", want[32];
    FILE *f;

    CHECK(fx_setup(&fx));
    /* The owner's pid is in the lock file, for the refusal's message. */
    snprintf(path, sizeof(path), "%s/lock", fx.root);
    f = fopen(path, "r");
    CHECK(f != NULL);
    if (f != NULL) {
        CHECK(fgets(pid, sizeof(pid), f) != NULL);
        fclose(f);
    }
    snprintf(want, sizeof(want), "%ld\n", (long)getpid());
    CHECK_EQ_STR(pid, want);
    /* A second owner is refused, and removes nothing of the first's. */
    struct om_ingest *in = NULL;
    CHECK_EQ_INT(om_ingest_begin(fx.st, &in), OM_OK);
    CHECK_EQ_INT(om_store_open(&second, fx.root), OM_ERR_DENIED);
    CHECK(second == NULL);
    CHECK_EQ_INT(count_ingest(&fx), 1);
    om_ingest_abort(in);
    /* A tool attaches beside it. */
    CHECK_EQ_INT(om_store_attach(&tool, fx.root), OM_OK);
    om_store_close(tool);
    /* Once the owner is gone, the next one opens. */
    om_store_close(fx.st);
    CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
    fx_teardown(&fx);
}


/* ---- durability off the request path (store_fs_sync.c) ------------------ */

static size_t read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f != NULL) {
        n = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return n;
}

static void write_file(const char *path, const char *buf)
{
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fputs(buf, f);
        fclose(f);
    }
}

static void test_store__a_commit_is_journalled_until_durable_and_a_clean_close_empties_it(void)
{
    struct fixture fx = {0};
    char journal[256], text[512];
    om_digest d = digest_of("journalled");

    CHECK(fx_setup(&fx));
    snprintf(journal, sizeof(journal), "%s/unsynced", fx.root);
    CHECK_EQ_INT(ingest_str(fx.st, "journalled", &d), OM_OK);
    CHECK(om_store_has(fx.st, &d, NULL)); /* visible at once */
    read_file(journal, text, sizeof(text));
    CHECK(strstr(text, d.str) != NULL);   /* and listed until durable */
    /* The background thread syncs it after about a second. */
    struct timespec ts = {0, 50 * 1000000L};
    for (int i = 0; i < 100 && read_file(journal, text, sizeof(text)) > 0; i++)
        nanosleep(&ts, NULL);
    CHECK_EQ_INT(read_file(journal, text, sizeof(text)), 0);
    om_digest e = digest_of("closed cleanly");
    CHECK_EQ_INT(ingest_str(fx.st, "closed cleanly", &e), OM_OK);
    om_store_close(fx.st);
    fx.st = NULL;
    CHECK_EQ_INT(read_file(journal, text, sizeof(text)), 0);
    fx_teardown(&fx);
}

static void test_store__after_an_unclean_shutdown_journalled_objects_are_rechecked(void)
{
    struct fixture fx = {0};
    char journal[256], text[512], path[512];
    om_digest good = digest_of("survived the power cut");
    om_digest bad = digest_of("lost with the page cache");
    om_digest old = digest_of("durable long ago");

    CHECK(fx_setup(&fx));
    snprintf(journal, sizeof(journal), "%s/unsynced", fx.root);
    CHECK_EQ_INT(ingest_str(fx.st, "durable long ago", &old), OM_OK);
    CHECK_EQ_INT(ingest_str(fx.st, "survived the power cut", &good), OM_OK);
    CHECK_EQ_INT(ingest_str(fx.st, "lost with the page cache", &bad), OM_OK);
    om_store_close(fx.st);
    fx.st = NULL;
    /* What a crash of the machine leaves: the journal as it was (good and
     * bad listed, plus a torn last line), bad's bytes gone (zeroed), and no
     * size record (only a clean close writes one). */
    snprintf(text, sizeof(text), "%s\n%s\nsha256:12", good.str, bad.str);
    write_file(journal, text);
    snprintf(path, sizeof(path), "%s/store.size", fx.root);
    unlink(path);
    const char *hex = om_digest_hex(&bad);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", fx.root, hex, hex);
    write_file(path, "\0\0\0\0\0\0\0\0");
    CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
    CHECK(om_store_has(fx.st, &good, NULL));
    CHECK(!om_store_has(fx.st, &bad, NULL));  /* removed: fetched again when asked */
    CHECK(om_store_has(fx.st, &old, NULL));   /* not listed: not even checked */
    CHECK_EQ_INT(om_store_bytes(fx.st), strlen("survived the power cut") + strlen("durable long ago"));
    CHECK_EQ_INT(read_file(journal, text, sizeof(text)), 0);
    fx_teardown(&fx);
}

static void test_store__ingest_commit_then_has_open_read(void)
{
    struct fixture fx = {0};
    const char *content = "hello, content-addressed world";
    om_digest d = digest_of(content);
    uint64_t size = 0;
    char *buf = NULL, path[256];
    size_t len = 0;
    int fd = -1;
    struct stat sb;

    CHECK(fx_setup(&fx));
    CHECK(!om_store_has(fx.st, &d, NULL));
    CHECK_EQ_INT(ingest_str(fx.st, content, &d), OM_OK);
    CHECK(om_store_has(fx.st, &d, &size));
    CHECK_EQ_INT(size, strlen(content));
    CHECK_EQ_INT(count_ingest(&fx), 0);

    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", fx.root, om_digest_hex(&d),
             om_digest_hex(&d));
    CHECK(stat(path, &sb) == 0 && S_ISREG(sb.st_mode));
    CHECK_EQ_INT(sb.st_mode & 0777, 0644);

    CHECK_EQ_INT(om_store_open_blob(fx.st, &d, &fd, &size), OM_OK);
    CHECK(fd >= 0);
    CHECK_EQ_INT(size, strlen(content));
    if (fd >= 0) {
        char tmp[64] = {0};
        CHECK_EQ_INT(read(fd, tmp, sizeof(tmp) - 1), (long)strlen(content));
        CHECK_EQ_STR(tmp, content);
        close(fd);
    }

    CHECK_EQ_INT(om_store_read(fx.st, &d, 1024, &buf, &len), OM_OK);
    CHECK_EQ_INT(len, strlen(content));
    CHECK(buf != NULL && memcmp(buf, content, len) == 0 && buf[len] == '\0');
    free(buf);
    buf = NULL;
    /* Exactly max is fine; one byte less is too big. */
    CHECK_EQ_INT(om_store_read(fx.st, &d, strlen(content), &buf, &len), OM_OK);
    free(buf);
    buf = NULL;
    CHECK_EQ_INT(om_store_read(fx.st, &d, strlen(content) - 1, &buf, &len), OM_ERR_TOOBIG);
    CHECK(buf == NULL);

    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), strlen(content));
    fx_teardown(&fx);
}

static void test_store__absent_blob_is_not_found_everywhere(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("never stored");
    char *buf = NULL;
    size_t len = 0;
    int fd = 7;

    CHECK(fx_setup(&fx));
    CHECK(!om_store_has(fx.st, &d, NULL));
    CHECK_EQ_INT(om_store_open_blob(fx.st, &d, &fd, NULL), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(fd, -1);
    CHECK_EQ_INT(om_store_read(fx.st, &d, 100, &buf, &len), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_store_remove(fx.st, &d), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_ERR_NOTFOUND);
    fx_teardown(&fx);
}

static void test_store__damaged_digest_structs_never_become_paths(void)
{
    struct fixture fx = {0};
    static const char *const bad[] = {
        "sha256:../../../../etc/passwd",
        "sha256:ABCDEF0000000000000000000000000000000000000000000000000000000000",
        "sha512:0000000000000000000000000000000000000000000000000000000000000000",
        "",
    };
    CHECK(fx_setup(&fx));
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++) {
        om_digest d;
        struct om_ingest *in = NULL;
        int fd = -1;
        memset(&d, 0, sizeof(d));
        snprintf(d.str, sizeof(d.str), "%s", bad[i]);
        CHECK(!om_store_has(fx.st, &d, NULL));
        CHECK_EQ_INT(om_store_open_blob(fx.st, &d, &fd, NULL), OM_ERR_INVALID);
        CHECK_EQ_INT(om_store_remove(fx.st, &d), OM_ERR_INVALID);
        CHECK_EQ_INT(om_ingest_begin(fx.st, &in), OM_OK);
        CHECK_EQ_INT(om_ingest_commit(fx.st, in, &d), OM_ERR_INVALID);
    }
    CHECK_EQ_INT(count_ingest(&fx), 0); /* failed commits dropped their files */
    fx_teardown(&fx);
}

static void test_store__commit_of_an_existing_digest_drops_the_ingest(void)
{
    struct fixture fx = {0};
    const char *content = "same bytes twice";
    om_digest d = digest_of(content);

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(ingest_str(fx.st, content, &d), OM_OK);
    CHECK_EQ_INT(ingest_str(fx.st, content, &d), OM_OK);
    CHECK_EQ_INT(om_store_put(fx.st, &d, content, strlen(content)), OM_OK);
    CHECK_EQ_INT(count_ingest(&fx), 0);
    CHECK_EQ_INT(om_store_bytes(fx.st), strlen(content)); /* counted once */
    fx_teardown(&fx);
}

static void test_store__abort_removes_the_ingest_file(void)
{
    struct fixture fx = {0};
    struct om_ingest *in = NULL;
    struct stat sb;

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_ingest_begin(fx.st, &in), OM_OK);
    CHECK(in != NULL && in->fd >= 0 && in->size == 0);
    if (in != NULL) {
        char path[sizeof(in->path)];
        CHECK_EQ_INT(om_ingest_write(in, "partial", 7), OM_OK);
        CHECK_EQ_INT(in->size, 7);
        snprintf(path, sizeof(path), "%s", in->path);
        CHECK(stat(path, &sb) == 0 && sb.st_size == 7);
        CHECK_EQ_INT(sb.st_mode & 0777, 0644);
        om_ingest_abort(in);
        CHECK(stat(path, &sb) != 0);
    }
    om_ingest_abort(NULL); /* no-op */
    CHECK_EQ_INT(count_ingest(&fx), 0);
    CHECK_EQ_INT(om_store_bytes(fx.st), 0);
    fx_teardown(&fx);
}

static void test_store__two_ingests_get_distinct_files(void)
{
    struct fixture fx = {0};
    struct om_ingest *a = NULL, *b = NULL;

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_ingest_begin(fx.st, &a), OM_OK);
    CHECK_EQ_INT(om_ingest_begin(fx.st, &b), OM_OK);
    CHECK(a != NULL && b != NULL && strcmp(a->path, b->path) != 0);
    CHECK_EQ_INT(count_ingest(&fx), 2);
    om_ingest_abort(a);
    om_ingest_abort(b);
    fx_teardown(&fx);
}

static void test_store__truncate_restarts_the_ingest_without_holes(void)
{
    struct fixture fx = {0};
    struct om_ingest *in = NULL;
    const char *content = "abcdef";
    om_digest d = digest_of(content);
    char *buf = NULL;
    size_t len = 0;

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_ingest_begin(fx.st, &in), OM_OK);
    CHECK_EQ_INT(om_ingest_write(in, "abcXXXXXXX", 10), OM_OK);
    /* A reader moving the shared offset must not disturb the writer. */
    int rfd = dup(in->fd);
    CHECK(lseek(rfd, 0, SEEK_SET) == 0);
    close(rfd);
    CHECK_EQ_INT(om_ingest_truncate(in, 3), OM_OK);
    CHECK_EQ_INT(in->size, 3);
    CHECK_EQ_INT(om_ingest_write(in, "def", 3), OM_OK);
    CHECK_EQ_INT(om_ingest_commit(fx.st, in, &d), OM_OK);
    CHECK_EQ_INT(om_store_read(fx.st, &d, 100, &buf, &len), OM_OK);
    CHECK(buf != NULL && len == 6 && memcmp(buf, content, 6) == 0);
    free(buf);
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_OK);
    fx_teardown(&fx);
}

static void test_store__put_verifies_the_digest(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("{\"schemaVersion\":2}");
    om_digest other = digest_of("something else");

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &other, "{\"schemaVersion\":2}", 19), OM_ERR_DIGEST);
    CHECK(!om_store_has(fx.st, &other, NULL));
    CHECK_EQ_INT(om_store_put(fx.st, &d, "{\"schemaVersion\":2}", 19), OM_OK);
    CHECK(om_store_has(fx.st, &d, NULL));
    CHECK_EQ_INT(count_ingest(&fx), 0);
    /* The empty blob is a valid object too. */
    om_digest empty = digest_of("");
    CHECK_EQ_INT(om_store_put(fx.st, &empty, "", 0), OM_OK);
    CHECK_EQ_INT(om_store_verify(fx.st, &empty), OM_OK);
    fx_teardown(&fx);
}

static void test_store__remove_deletes_and_updates_the_total(void)
{
    struct fixture fx = {0};
    om_digest a = digest_of("aaaa"), b = digest_of("bbbbbbbb");
    int fd = -1;

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &a, "aaaa", 4), OM_OK);
    CHECK_EQ_INT(om_store_put(fx.st, &b, "bbbbbbbb", 8), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), 12);
    CHECK_EQ_INT(om_store_open_blob(fx.st, &a, &fd, NULL), OM_OK);
    CHECK_EQ_INT(om_store_remove(fx.st, &a), OM_OK);
    CHECK(!om_store_has(fx.st, &a, NULL));
    CHECK_EQ_INT(om_store_bytes(fx.st), 8);
    CHECK_EQ_INT(om_store_remove(fx.st, &a), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_store_bytes(fx.st), 8);
    /* An fd opened before the remove still reads the bytes. */
    if (fd >= 0) {
        char tmp[8] = {0};
        CHECK_EQ_INT(pread(fd, tmp, 4, 0), 4);
        CHECK(memcmp(tmp, "aaaa", 4) == 0);
        close(fd);
    }
    fx_teardown(&fx);
}

struct walk_acc {
    size_t n;
    uint64_t bytes;
    bool saw_a, saw_b;
    om_digest a, b;
    size_t stop_after; /* 0 = never */
};

static int walk_cb(void *ud, const om_digest *d, uint64_t size)
{
    struct walk_acc *acc = ud;
    acc->n++;
    acc->bytes += size;
    acc->saw_a |= strcmp(d->str, acc->a.str) == 0;
    acc->saw_b |= strcmp(d->str, acc->b.str) == 0;
    return acc->stop_after != 0 && acc->n == acc->stop_after ? 42 : 0;
}

static void test_store__walk_lists_blobs_and_ignores_strangers(void)
{
    struct fixture fx = {0};
    struct walk_acc acc = {0};
    char path[512];
    int fd;

    acc.a = digest_of("walk a");
    acc.b = digest_of("walk b");
    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &acc.a, "walk a", 6), OM_OK);
    CHECK_EQ_INT(om_store_put(fx.st, &acc.b, "walk b", 6), OM_OK);

    /* Strangers: a bad fan-out dir, a bad name, a digest in the wrong
     * fan-out dir, an upper-case name, and a file at the fan-out level. */
    snprintf(path, sizeof(path), "%s/blobs/sha256/zz", fx.root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/blobs/sha256/zz/%s", fx.root, om_digest_hex(&acc.a));
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    close(fd);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/notadigest", fx.root,
             om_digest_hex(&acc.a));
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    close(fd);
    {
        char dir[512];
        snprintf(dir, sizeof(dir), "%s/blobs/sha256/ff", fx.root);
        mkdir(dir, 0755);
        /* The digest of "walk a" placed under a fan-out that does not match. */
        char wrong[512];
        const char *hex = om_digest_hex(&acc.a);
        snprintf(wrong, sizeof(wrong), "%s/blobs/sha256/%s/%s", fx.root,
                 strncmp(hex, "ff", 2) == 0 ? "fe" : "ff", hex);
        snprintf(dir, sizeof(dir), "%s/blobs/sha256/fe", fx.root);
        mkdir(dir, 0755);
        fd = open(wrong, O_CREAT | O_WRONLY, 0644);
        close(fd);
        char upper[512];
        snprintf(upper, sizeof(upper), "%s/blobs/sha256/ff/FF%s", fx.root, hex + 2);
        fd = open(upper, O_CREAT | O_WRONLY, 0644);
        close(fd);
    }
    snprintf(path, sizeof(path), "%s/blobs/sha256/README", fx.root);
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    close(fd);

    CHECK_EQ_INT(om_store_walk(fx.st, walk_cb, &acc), OM_OK);
    CHECK_EQ_INT(acc.n, 2);
    CHECK_EQ_INT(acc.bytes, 12);
    CHECK(acc.saw_a && acc.saw_b);

    /* Stopping early returns the callback's value. */
    struct walk_acc stop = {0};
    stop.stop_after = 1;
    CHECK_EQ_INT(om_store_walk(fx.st, walk_cb, &stop), 42);
    CHECK_EQ_INT(stop.n, 1);

    /* Strangers are not counted in the total at reopen either. */
    om_store_close(fx.st);
    fx.st = NULL;
    CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), 12);
    fx_teardown(&fx);
}

static void test_store__reopen_removes_stale_ingest_and_recounts_bytes(void)
{
    struct fixture fx = {0};
    struct om_ingest *in = NULL;
    om_digest d = digest_of("survives reopen");
    char stale[sizeof(in->path)];

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &d, "survives reopen", 15), OM_OK);
    CHECK_EQ_INT(om_ingest_begin(fx.st, &in), OM_OK);
    CHECK_EQ_INT(om_ingest_write(in, "left behind", 11), OM_OK);
    snprintf(stale, sizeof(stale), "%s", in->path);
    /* Simulate a crash: the fd is closed but the file is never removed. */
    close(in->fd);
    free(in);
    CHECK_EQ_INT(count_ingest(&fx), 1);

    om_store_close(fx.st);
    fx.st = NULL;
    CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
    CHECK_EQ_INT(count_ingest(&fx), 0);
    CHECK(access(stale, F_OK) != 0);
    CHECK(om_store_has(fx.st, &d, NULL));
    CHECK_EQ_INT(om_store_bytes(fx.st), 15);
    fx_teardown(&fx);
}

static bool exists_in_root(const struct fixture *fx, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", fx->root, name);
    return access(path, F_OK) == 0;
}

static void write_in_root(const struct fixture *fx, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", fx->root, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_store__a_clean_close_records_the_size_and_open_consumes_it(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("counted once");

    CHECK(fx_setup(&fx));
    CHECK(!exists_in_root(&fx, "store.size"));
    CHECK_EQ_INT(om_store_put(fx.st, &d, "counted once", 12), OM_OK);
    om_store_close(fx.st);
    fx.st = NULL;
    CHECK(exists_in_root(&fx, "store.size"));
    CHECK(!exists_in_root(&fx, "store.size.tmp"));

    /* The record is what the next open believes (proved by a lie in it),
     * and it is gone while the store is open: a crash now means a walk. */
    write_in_root(&fx, "store.size", "ocimirror store size v1 777\n");
    CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), 777);
    CHECK(!exists_in_root(&fx, "store.size"));
    om_store_close(fx.st);
    fx.st = NULL;

    /* No record (a crash): walked. */
    char path[256];
    snprintf(path, sizeof(path), "%s/store.size", fx.root);
    CHECK_EQ_INT(unlink(path), 0);
    CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), 12);
    fx_teardown(&fx);
}

static void test_store__a_damaged_size_record_is_ignored(void)
{
    static const char *const bad[] = {
        "", "ocimirror store size v1 \n", "ocimirror store size v1 12", "ocimirror store size v1 -5\n",
        "ocimirror store size v2 12\n", "garbage\n", "ocimirror store size v1 12x\n",
        "ocimirror store size v1 99999999999999999999999\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct fixture fx = {0};
        om_digest d = digest_of("twelve bytes");
        CHECK(fx_setup(&fx));
        CHECK_EQ_INT(om_store_put(fx.st, &d, "twelve bytes", 12), OM_OK);
        om_store_close(fx.st);
        fx.st = NULL;
        write_in_root(&fx, "store.size", bad[i]);
        CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
        if (om_store_bytes(fx.st) != 12)
            fprintf(stderr, "  record %zu: \"%s\" was believed\n", i, bad[i]);
        CHECK_EQ_INT(om_store_bytes(fx.st), 12);
        CHECK(!exists_in_root(&fx, "store.size"));
        fx_teardown(&fx);
    }
}

/* The error paths of the record: a directory named store.size can be
 * neither read, removed nor replaced.  Open must not trust it (it would
 * outlive a crash) and walk; close must fail to write the record without
 * leaving its temporary file; the blob stays readable throughout. */
static void test_store__a_size_record_that_cannot_be_removed_or_written_costs_a_walk(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("walked again");
    char path[256];

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &d, "walked again", 12), OM_OK);
    om_store_close(fx.st);
    fx.st = NULL;
    snprintf(path, sizeof(path), "%s/store.size", fx.root);
    CHECK_EQ_INT(unlink(path), 0);
    CHECK_EQ_INT(mkdir(path, 0755), 0);
    CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), 12);
    CHECK(om_store_has(fx.st, &d, NULL));
    om_store_close(fx.st);
    fx.st = NULL;
    CHECK(!exists_in_root(&fx, "store.size.tmp"));
    /* still the directory, still not believed */
    CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), 12);
    om_store_close(fx.st);
    fx.st = NULL;
    CHECK_EQ_INT(rmdir(path), 0);
    fx_teardown(&fx);
}

static void test_store__a_tool_that_removes_blobs_makes_the_next_open_recount(void)
{
    struct fixture fx = {0};
    om_digest a = digest_of("blob a"), b = digest_of("blob b!");
    struct om_store *tool = NULL;

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &a, "blob a", 6), OM_OK);
    CHECK_EQ_INT(om_store_put(fx.st, &b, "blob b!", 7), OM_OK);
    /* `ocimirror gc` beside the running server removes one */
    CHECK_EQ_INT(om_store_attach(&tool, fx.root), OM_OK);
    CHECK_EQ_INT(om_store_remove(tool, &a), OM_OK);
    om_store_close(tool);
    CHECK(exists_in_root(&fx, "store.dirty"));
    /* the server, not knowing, records its stale total at shutdown */
    CHECK_EQ_INT(om_store_bytes(fx.st), 13);
    om_store_close(fx.st);
    fx.st = NULL;
    CHECK(exists_in_root(&fx, "store.size"));
    CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), 7);
    CHECK(!exists_in_root(&fx, "store.dirty"));
    CHECK(!exists_in_root(&fx, "store.size"));
    /* an attached tool neither reads nor writes the record */
    CHECK_EQ_INT(om_store_attach(&tool, fx.root), OM_OK);
    CHECK_EQ_INT(om_store_bytes(tool), 7);
    om_store_close(tool);
    CHECK(!exists_in_root(&fx, "store.size"));
    fx_teardown(&fx);
}

static void test_store__changed_bytes_on_disk_fail_verify(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("original content");
    char path[256];

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &d, "original content", 16), OM_OK);
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_OK);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", fx.root, om_digest_hex(&d),
             om_digest_hex(&d));
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK_EQ_INT(pwrite(fd, "O", 1, 0), 1); /* same length, one byte changed */
    close(fd);
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_ERR_DIGEST);
    /* A truncated blob fails too. */
    CHECK_EQ_INT(truncate(path, 3), 0);
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_ERR_DIGEST);
    fx_teardown(&fx);
}

/* om_store_read hands out only bytes that hash to the digest: a changed
 * object (a lying disk or bucket) is quarantined and reads as absent. */
static void test_store__a_read_of_changed_bytes_is_refused_and_quarantined(void)
{
    struct fixture fx = {0};
    om_digest d = digest_of("{\"schemaVersion\":2}");
    char path[256], *buf = NULL;
    size_t len = 0;

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &d, "{\"schemaVersion\":2}", 19), OM_OK);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", fx.root, om_digest_hex(&d),
             om_digest_hex(&d));
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK_EQ_INT(pwrite(fd, "[", 1, 0), 1); /* same length, one byte changed */
    close(fd);
    uint64_t before = om_store_quarantined(fx.st);
    CHECK_EQ_INT(om_store_read(fx.st, &d, 1024, &buf, &len), OM_ERR_NOTFOUND);
    CHECK(buf == NULL && len == 0);
    CHECK_EQ_INT(om_store_quarantined(fx.st), before + 1);
    CHECK(!om_store_has(fx.st, &d, NULL));
    /* a good copy put again reads fine */
    CHECK_EQ_INT(om_store_put(fx.st, &d, "{\"schemaVersion\":2}", 19), OM_OK);
    CHECK_EQ_INT(om_store_read(fx.st, &d, 1024, &buf, &len), OM_OK);
    CHECK_EQ_INT(len, 19);
    free(buf);
    fx_teardown(&fx);
}

static void test_store__verify_streams_a_large_blob(void)
{
    struct fixture fx = {0};
    size_t n = 3 * 64 * 1024 + 123; /* several verify buffers plus a tail */
    char *big = malloc(n);
    om_digest d;
    struct om_ingest *in = NULL;

    CHECK(big != NULL);
    if (big == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 31 + 7);
    om_hash_buf(big, n, &d);
    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_ingest_begin(fx.st, &in), OM_OK);
    for (size_t off = 0; off < n; off += 1000)
        CHECK_EQ_INT(om_ingest_write(in, big + off, n - off < 1000 ? n - off : 1000), OM_OK);
    CHECK_EQ_INT(in->size, n);
    CHECK_EQ_INT(om_ingest_commit(fx.st, in, &d), OM_OK);
    CHECK_EQ_INT(om_store_verify(fx.st, &d), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), n);
    free(big);
    fx_teardown(&fx);
}

static void test_store__a_full_disk_is_nospace(void)
{
    struct fixture fx = {0};
    struct om_ingest *in = NULL;
    int full = open("/dev/full", O_WRONLY);

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_ingest_begin(fx.st, &in), OM_OK);
    CHECK(full >= 0);
    if (in != NULL && full >= 0) {
        /* The ingest fd now writes to a device that is always full. */
        CHECK(dup2(full, in->fd) == in->fd);
        CHECK_EQ_INT(om_ingest_write(in, "abc", 3), OM_ERR_NOSPACE);
        CHECK_EQ_INT(in->size, 0);
    }
    if (full >= 0)
        close(full);
    om_ingest_abort(in);
    CHECK_EQ_INT(count_ingest(&fx), 0);
    fx_teardown(&fx);
}

struct racer {
    struct om_store *st;
    int failures;
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    char body[32];
    for (int i = 0; i < 40; i++) {
        /* Every thread commits the same 10 objects, racing the others. */
        snprintf(body, sizeof(body), "shared object %d", i % 10);
        om_digest d = digest_of(body);
        r->failures += ingest_str(r->st, body, &d) != OM_OK;
        r->failures += !om_store_has(r->st, &d, NULL);
    }
    return NULL;
}

static void test_store__racing_commits_of_one_digest_count_it_once(void)
{
    struct fixture fx = {0};
    struct racer r[4];
    pthread_t th[4];
    uint64_t want = 0;
    char body[32];

    CHECK(fx_setup(&fx));
    for (int i = 0; i < 4; i++) {
        r[i] = (struct racer){.st = fx.st};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(r[i].failures, 0);
    }
    for (int i = 0; i < 10; i++)
        want += (uint64_t)snprintf(body, sizeof(body), "shared object %d", i);
    CHECK_EQ_INT(om_store_bytes(fx.st), want);
    CHECK_EQ_INT(count_ingest(&fx), 0);
    fx_teardown(&fx);
}

static void quarantine_path(const struct fixture *fx, const om_digest *d, char *out, size_t sz)
{
    snprintf(out, sz, "%s/quarantine/%s", fx->root, om_digest_hex(d));
}

static void blob_path(const struct fixture *fx, const om_digest *d, char *out, size_t sz)
{
    snprintf(out, sz, "%s/blobs/sha256/%.2s/%s", fx->root, om_digest_hex(d), om_digest_hex(d));
}

static off_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_size : -1;
}

static void test_store__a_truncated_blob_is_quarantined_and_the_total_recounted(void)
{
    struct fixture fx = {0};
    const char *big = "a blob that will lose most of its bytes on disk";
    om_digest a = digest_of(big), b = digest_of("bystander");
    char path[256], q[256];

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &a, big, strlen(big)), OM_OK);
    CHECK_EQ_INT(om_store_put(fx.st, &b, "bystander", 9), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), strlen(big) + 9);
    blob_path(&fx, &a, path, sizeof(path));
    quarantine_path(&fx, &a, q, sizeof(q));
    /* Damage behind the store's back: it still counts the old size. */
    CHECK_EQ_INT(truncate(path, 5), 0);
    CHECK_EQ_INT(om_store_bytes(fx.st), strlen(big) + 9);
    /* An fd opened before keeps reading what is there. */
    int fd = -1;
    CHECK_EQ_INT(om_store_open_blob(fx.st, &a, &fd, NULL), OM_OK);
    /* Not the size the caller saw: left alone. */
    CHECK_EQ_INT(om_store_quarantine(fx.st, &a, strlen(big)), OM_ERR_NOTFOUND);
    CHECK(om_store_has(fx.st, &a, NULL));
    CHECK_EQ_INT(om_store_quarantine(fx.st, &a, 5), OM_OK);
    CHECK(!om_store_has(fx.st, &a, NULL));
    CHECK_EQ_INT(file_size(q), 5);
    CHECK_EQ_INT(om_store_bytes(fx.st), 9); /* recounted: exactly what is left */
    CHECK_EQ_INT(om_store_quarantined(fx.st), 1);
    char buf[8] = {0};
    CHECK_EQ_INT(pread(fd, buf, 5, 0), 5);
    CHECK(memcmp(buf, big, 5) == 0);
    close(fd);
    /* The walk (GC, fsck, the open-time count) never sees the quarantine. */
    struct walk_acc acc = {0};
    CHECK_EQ_INT(om_store_walk(fx.st, walk_cb, &acc), OM_OK);
    CHECK_EQ_INT(acc.n, 1);
    /* Gone: nothing to move; fetched again: committed and counted anew. */
    CHECK_EQ_INT(om_store_quarantine(fx.st, &a, 5), OM_ERR_NOTFOUND);
    CHECK_EQ_INT(om_store_put(fx.st, &a, big, strlen(big)), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), strlen(big) + 9);
    /* Damaged again: the quarantine keeps one file per digest. */
    CHECK_EQ_INT(truncate(path, 7), 0);
    CHECK_EQ_INT(om_store_quarantine(fx.st, &a, OM_STORE_ANY_SIZE), OM_OK);
    CHECK_EQ_INT(file_size(q), 7);
    char qdir[200];
    snprintf(qdir, sizeof(qdir), "%s/quarantine", fx.root);
    CHECK_EQ_INT(count_dir(qdir), 1);
    CHECK_EQ_INT(om_store_bytes(fx.st), 9);
    /* A clean close records the recounted total; the next open trusts it. */
    om_store_close(fx.st);
    fx.st = NULL;
    CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), 9);
    fx_teardown(&fx);
}

static void test_store__a_tool_that_quarantines_makes_the_owner_recount_at_its_next_open(void)
{
    struct fixture fx = {0};
    struct om_store *tool = NULL;
    om_digest a = digest_of("grown on disk"), b = digest_of("kept");
    char path[256];

    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_put(fx.st, &a, "grown on disk", 13), OM_OK);
    CHECK_EQ_INT(om_store_put(fx.st, &b, "kept", 4), OM_OK);
    om_store_close(fx.st); /* records 17 */
    fx.st = NULL;
    blob_path(&fx, &a, path, sizeof(path));
    CHECK_EQ_INT(truncate(path, 100), 0); /* grown */
    CHECK_EQ_INT(om_store_attach(&tool, fx.root), OM_OK);
    CHECK_EQ_INT(om_store_quarantine(tool, &a, 100), OM_OK);
    om_store_close(tool);
    CHECK_EQ_INT(om_store_open(&fx.st, fx.root), OM_OK);
    CHECK_EQ_INT(om_store_bytes(fx.st), 4); /* walked, not the record's 17 */
    fx_teardown(&fx);
}

static void test_store__quarantine_refuses_damaged_digests(void)
{
    struct fixture fx = {0};
    om_digest bad;
    memset(&bad, 0, sizeof(bad));
    snprintf(bad.str, sizeof(bad.str), "sha256:../../etc");
    CHECK(fx_setup(&fx));
    CHECK_EQ_INT(om_store_quarantine(fx.st, &bad, OM_STORE_ANY_SIZE), OM_ERR_INVALID);
    fx_teardown(&fx);
}

int main(void)
{
    RUN(test_store__open_creates_the_layout);
    RUN(test_store__open_rejects_bad_roots);
    RUN(test_store__one_owner_per_root_and_tools_beside_it);
    RUN(test_store__ingest_commit_then_has_open_read);
    RUN(test_store__a_commit_is_journalled_until_durable_and_a_clean_close_empties_it);
    RUN(test_store__after_an_unclean_shutdown_journalled_objects_are_rechecked);
    RUN(test_store__absent_blob_is_not_found_everywhere);
    RUN(test_store__damaged_digest_structs_never_become_paths);
    RUN(test_store__commit_of_an_existing_digest_drops_the_ingest);
    RUN(test_store__abort_removes_the_ingest_file);
    RUN(test_store__two_ingests_get_distinct_files);
    RUN(test_store__truncate_restarts_the_ingest_without_holes);
    RUN(test_store__put_verifies_the_digest);
    RUN(test_store__remove_deletes_and_updates_the_total);
    RUN(test_store__walk_lists_blobs_and_ignores_strangers);
    RUN(test_store__reopen_removes_stale_ingest_and_recounts_bytes);
    RUN(test_store__a_clean_close_records_the_size_and_open_consumes_it);
    RUN(test_store__a_damaged_size_record_is_ignored);
    RUN(test_store__a_size_record_that_cannot_be_removed_or_written_costs_a_walk);
    RUN(test_store__a_tool_that_removes_blobs_makes_the_next_open_recount);
    RUN(test_store__changed_bytes_on_disk_fail_verify);
    RUN(test_store__a_read_of_changed_bytes_is_refused_and_quarantined);
    RUN(test_store__verify_streams_a_large_blob);
    RUN(test_store__a_full_disk_is_nospace);
    RUN(test_store__racing_commits_of_one_digest_count_it_once);
    RUN(test_store__a_truncated_blob_is_quarantined_and_the_total_recounted);
    RUN(test_store__a_tool_that_quarantines_makes_the_owner_recount_at_its_next_open);
    RUN(test_store__quarantine_refuses_damaged_digests);
    return test_done();
}
