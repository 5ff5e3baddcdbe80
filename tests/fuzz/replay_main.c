/* replay_main.c — main() for the fuzz targets when they are built without
 * libFuzzer: every argument is a file or a directory of files, and each
 * file is fed once to LLVMFuzzerTestOneInput().  A broken invariant aborts
 * (exit status != 0), so `fuzz_x.replay tests/fuzz/corpus/x` is a
 * regression test of the whole seed corpus under any compiler and any
 * sanitizer.  Inputs bigger than REPLAY_MAX are refused, not truncated:
 * a seed that big is a mistake.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

#define REPLAY_MAX (8u * 1024 * 1024)

/* 0 when the file ran, -1 when it could not be read. */
static int run_file(const char *path)
{
    int rc = -1;
    FILE *f = NULL;
    uint8_t *buf = NULL;   /* owned here */
    uint8_t *exact = NULL; /* owned here */
    size_t len = 0;

    if ((f = fopen(path, "rb")) == NULL)
        goto done;
    if ((buf = malloc(REPLAY_MAX + 1)) == NULL)
        goto done;
    len = fread(buf, 1, REPLAY_MAX + 1, f);
    if (ferror(f) || len > REPLAY_MAX)
        goto done;
    /* An exact-size copy so that ASan sees reads past the end. */
    if ((exact = malloc(len > 0 ? len : 1)) == NULL)
        goto done;
    if (len > 0)
        memcpy(exact, buf, len);
    LLVMFuzzerTestOneInput(exact, len);
    rc = 0;
done:
    if (rc != 0)
        fprintf(stderr, "replay: cannot read %s: %s\n", path, len > REPLAY_MAX ? "too big" : strerror(errno));
    free(exact);
    free(buf);
    if (f != NULL)
        fclose(f);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every regular file in dir, in name order (reproducible output). */
static int run_dir(const char *dir, size_t *count)
{
    int rc = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL; /* owned here, each entry too */
    size_t n = 0, cap = 0;

    if (d == NULL) {
        fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof(*names));
            if (nn == NULL)
                abort();
            names = nn;
        }
        size_t l = strlen(dir) + strlen(e->d_name) + 2;
        if ((names[n] = malloc(l)) == NULL)
            abort();
        snprintf(names[n], l, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof(*names), cmp_names);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(names[i]) != 0)
                rc = -1;
            else
                (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 0;
    size_t count = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (argv[i][0] == '-')
            continue; /* libFuzzer-style flags are accepted and ignored */
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            rc = 1;
        } else if (S_ISDIR(st.st_mode)) {
            if (run_dir(argv[i], &count) != 0)
                rc = 1;
        } else if (run_file(argv[i]) != 0) {
            rc = 1;
        } else {
            count++;
        }
    }
    printf("replayed %zu input(s)\n", count);
    return rc;
}
