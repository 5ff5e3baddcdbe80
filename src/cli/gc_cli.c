/* gc_cli.c — `ocimirror gc [-c FILE] [--storage DIR] [--dry-run]`: apply
 * the storage quota now, from the command line (docs/gc.md).
 *
 * The same run as the server's background GC (cache/gc.c, om_gc_run_env),
 * in this process on the storage directory: the store attached (nothing
 * created, no open-time ingest cleanup), the index checked the way the
 * server checks it at start (om_index_open rebuilds a missing or corrupt
 * one), then GC's own index connection.  Safe while a server runs on the
 * same storage: both use SQLite WAL, and the engine re-checks every step
 * on the live rows.
 *
 * With cluster.redis set, the index is the cluster's (Redis): the run
 * takes the cluster's GC lease like a replica does, and says "skipped"
 * (exit 0) when a replica holds it.
 *
 * Output: the engine writes one line per action and the summary to stdout
 * (env.report); library warnings and errors go to stderr.  Exit status: 0
 * done, 1 error, 2 usage.
 */
#include "cli/cli.h"

#include "cache/gc.h"
#include "cache/index.h"
#include "cache/index_gc.h"
#include "cache/store.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ocimirror gc [-c FILE] [--storage DIR] [--dry-run] [--ingest-age DURATION]\n"
            "Apply the storage quota now: evict the least recently pulled images while\n"
            "usage is above storage.high_water%% of storage.max_size, down to low_water%%;\n"
            "remove orphaned blobs and stale ingest files.  Safe while a server runs on\n"
            "the same storage.  --dry-run only prints what would be removed.\n"
            "--ingest-age: ingest files and multipart uploads idle this long are stale\n"
            "(default 1h; 0 also removes those of downloads in progress).\n"
            "Exit status: 0 done, 1 error, 2 usage.\n");
}

int om_cmd_gc(int argc, char **argv)
{
    const char *config = NULL, *storage = NULL;
    struct om_config *cfg = NULL;
    struct om_store *st = NULL;
    struct om_index *ix = NULL;
    struct om_gc_db *db = NULL;
    struct om_gc_result res;
    bool dry_run = false, rebuilt = false;
    uint64_t ingest_age = 0;
    bool ingest_age_set = false;
    int rc = 0, err;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--dry-run") == 0 || strcmp(a, "-n") == 0) {
            dry_run = true;
        } else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(a, "--ingest-age") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "0") != 0 && om_parse_duration_ms(v, &ingest_age) != OM_OK) {
                fprintf(stderr, "ocimirror gc: bad --ingest-age '%s'\n", v);
                return 2;
            }
            ingest_age_set = true;
        } else if (strcmp(a, "--storage") == 0 && i + 1 < argc) {
            storage = argv[++i];
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "ocimirror gc: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (om_cli_load_config(config, NULL, storage, &cfg) != 0)
        return 1;
    /* The report is the output; library warnings and errors go to stderr. */
    om_log_setup(cfg->log_level == OM_LOG_DEBUG ? OM_LOG_DEBUG : OM_LOG_WARN, OM_LOG_TEXT);
    if ((err = om_store_attach_cfg(&st, cfg)) != OM_OK) {
        fprintf(stderr, "ocimirror gc: %s: %s\n", cfg->storage_path,
                err == OM_ERR_NOTFOUND ? "no storage there" : om_strerror(err));
        rc = 1;
        goto done;
    }
    /* Checks index.db (and rebuilds it if missing or corrupt, as the server
     * would at start); GC then uses a connection of its own. */
    if ((err = om_index_open_cfg(&ix, st, cfg, &rebuilt)) != OM_OK) {
        fprintf(stderr, "ocimirror gc: cannot open the index in %s: %s\n", cfg->storage_path,
                om_strerror(err));
        rc = 1;
        goto done;
    }
    if (rebuilt)
        printf("the index was missing or corrupt and has been rebuilt from the store\n");
    /* SQLite: GC's own connection to index.db (ix closed at the end);
     * Redis: GC borrows ix's connection. */
    if ((err = om_index_gc_open_index(&db, cfg->storage_path, ix, "ocimirror-gc")) != OM_OK) {
        fprintf(stderr, "ocimirror gc: cannot open the index in %s: %s\n", cfg->storage_path,
                om_strerror(err));
        rc = 1;
        goto done;
    }
    struct om_gc_env e = {.cfg = cfg, .store = st, .db = db, .report = stdout,
                          .dry_run = dry_run,
                          .ingest_stale_ms = ingest_age_set ? (ingest_age ? ingest_age : 1) : 0};
    if ((err = om_gc_run_env(&e, &res)) != OM_OK) {
        fprintf(stderr, "ocimirror gc: %s\n", om_strerror(err));
        rc = 1;
    }
done:
    fflush(stdout);
    om_index_gc_close(db);
    om_index_close(ix);
    om_store_close(st);
    om_config_free(cfg);
    return rc;
}
