/* fsck_cli.c — `ocimirror fsck [-c FILE] [--storage DIR] [--repair] [--json]
 *                              [--ingest-age SECONDS]`
 *
 * The command around the engine (cache/fsck.c, whose file comment says
 * what is checked and repaired, and how it behaves next to a running
 * server): options, the config (for storage.path), then the report.
 *
 * Output: a summary and the first FSCK_SHOW_HUMAN problems on stdout, or
 * one JSON object with --json (first FSCK_SHOW_JSON problems).  The
 * engine's failures go to stderr, "ocimirror fsck: " first; library
 * warnings only at ERROR level: the report is the output.
 * Exit status: 0 clean (or every problem repaired), 1 problems left
 * (also the ones over OM_FSCK_PROBLEMS_MAX, not kept, left for the next
 * run), 2 usage, config or I/O error.
 */
#include "cli/cli.h"

#include "cache/fsck.h"
#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FSCK_SHOW_HUMAN 20           /* problems listed in the text report */
#define FSCK_SHOW_JSON 1000          /* problems listed in the JSON report */
#define FSCK_INGEST_AGE_DEFAULT 3600 /* seconds */

/* The problem kinds in the JSON report. */
static const char *const PKIND_NAME[OM_FSCK__COUNT] = {
    [OM_FSCK_CORRUPT_BLOB] = "corrupt_blob",
    [OM_FSCK_UNREADABLE_BLOB] = "unreadable_blob",
    [OM_FSCK_STALE_INGEST] = "stale_ingest",
    [OM_FSCK_DANGLING_TAG] = "dangling_tag",
    [OM_FSCK_MISSING_MANIFEST] = "missing_manifest",
    [OM_FSCK_MISSING_BLOB] = "missing_blob",
    [OM_FSCK_INDEX_UNUSABLE] = "index_unusable",
    [OM_FSCK_WRONG_SIZE] = "wrong_size_blob",
};

struct opts {
    const char *config;
    const char *storage;
    bool repair;
    bool json;
    long ingest_age_s;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ocimirror fsck [-c FILE] [--storage DIR] [--repair] [--json]\n"
               "                      [--ingest-age SECONDS]\n"
               "Verify every stored blob against its digest and the size the index\n"
               "recorded, and the index against the store.  --repair removes corrupt\n"
               "blobs, moves blobs of the wrong size into <storage>/quarantine, removes\n"
               "stale ingest files and drops index entries that point at missing\n"
               "content.  Exit status: 0 clean, 1 problems found (and not repaired),\n"
               "2 usage or I/O error.\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    o->ingest_age_s = FSCK_INGEST_AGE_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--repair") == 0) {
            o->repair = true;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && has_val) {
            o->config = argv[++i];
        } else if (strcmp(a, "--storage") == 0 && has_val) {
            o->storage = argv[++i];
        } else if (strcmp(a, "--ingest-age") == 0 && has_val) {
            char *end = NULL;
            errno = 0;
            long v = strtol(argv[++i], &end, 10);
            if (errno != 0 || end == argv[i] || *end != '\0' || v < 0) {
                fprintf(stderr, "ocimirror fsck: --ingest-age wants seconds, got '%s'\n",
                        argv[i]);
                return 2;
            }
            o->ingest_age_s = v;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1; /* caller exits 0 */
        } else {
            fprintf(stderr, "ocimirror fsck: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    return 0;
}

/* ---- reports ------------------------------------------------------------- */

/* One problem as a line for people, into buf. */
static void describe(const struct om_fsck_problem *p, char *buf, size_t sz)
{
    switch (p->kind) {
    case OM_FSCK_CORRUPT_BLOB:
        snprintf(buf, sz, "corrupt blob %s (content does not match its digest)", p->d.str);
        break;
    case OM_FSCK_UNREADABLE_BLOB:
        snprintf(buf, sz, "unreadable blob %s", p->d.str);
        break;
    case OM_FSCK_WRONG_SIZE:
        snprintf(buf, sz,
                 "blob %s of the wrong size (%" PRIu64 " bytes on disk, the index says %" PRIu64
                 "; its content does not match its digest)",
                 p->d.str, p->size, p->want);
        break;
    case OM_FSCK_STALE_INGEST:
        snprintf(buf, sz, "stale ingest file %s (%" PRId64 " s old)", p->name, p->age_s);
        break;
    case OM_FSCK_DANGLING_TAG:
        snprintf(buf, sz, "tag %s:%s points at %s, not in the store", p->repo, p->tag, p->d.str);
        break;
    case OM_FSCK_MISSING_MANIFEST:
        snprintf(buf, sz, "manifest %s is in the index, not in the store", p->d.str);
        break;
    case OM_FSCK_MISSING_BLOB:
        snprintf(buf, sz, "blob %s is in the index, not in the store", p->d.str);
        break;
    default:
        snprintf(buf, sz, "index.db %s", p->name);
        break;
    }
}

/* r's report for people on stdout; storage: the directory checked. */
static void report_text(const struct om_fsck_result *r, const char *storage,
                        const struct opts *opt)
{
    char line[OM_NAME_MAX + OM_TAG_MAX + NAME_MAX + 160];
    FILE *o = stdout;
    uint64_t found = om_fsck_found(r), left = om_fsck_left(r);

    fprintf(o, "ocimirror fsck: %s\n", storage);
    if (r->holder && r->holder_pid > 0)
        fprintf(o, "  in use by:  pid %ld (a server or another tool has the index open)\n",
                r->holder_pid);
    else if (r->holder)
        fprintf(o, "  in use by:  another process (the index is open)\n");
    fprintf(o, "  blobs:      %" PRIu64 " checked (%" PRIu64 " bytes), %" PRIu64
               " corrupt, %" PRIu64 " of the wrong size, %" PRIu64 " unreadable\n",
            r->blobs_checked, r->bytes_checked, r->found[OM_FSCK_CORRUPT_BLOB],
            r->found[OM_FSCK_WRONG_SIZE], r->found[OM_FSCK_UNREADABLE_BLOB]);
    if (r->quarantine_files > 0)
        fprintf(o, "  quarantine: %" PRIu64 " file(s), %" PRIu64 " bytes (damaged blobs moved "
                   "aside; delete them once looked at)\n",
                r->quarantine_files, r->quarantine_bytes);
    fprintf(o, "  ingest:     %" PRIu64 " file(s): %" PRIu64 " stale, %" PRIu64
               " in flight\n",
            r->ingest_files, r->found[OM_FSCK_STALE_INGEST], r->ingest_live);
    if (r->index_ok) {
        fprintf(o, "  index:      ok: %" PRIu64 " tags, %" PRIu64 " manifests, %" PRIu64
                   " blobs\n",
                r->counts.tags, r->counts.manifests, r->counts.blobs);
        fprintf(o, "              %" PRIu64 " dangling tag(s), %" PRIu64
                   " missing manifest(s), %" PRIu64 " missing blob(s)\n",
                r->found[OM_FSCK_DANGLING_TAG], r->found[OM_FSCK_MISSING_MANIFEST],
                r->found[OM_FSCK_MISSING_BLOB]);
        fprintf(o, "              %" PRIu64 " stored object(s) not in the index "
                   "(informational)\n",
                r->unindexed);
    } else {
        fprintf(o, "  index:      %s: %s\n", r->index_state, r->index_why);
        fprintf(o, "              (the server rebuilds it from the store when it starts)\n");
    }
    if (found > 0) {
        size_t shown = 0;
        fprintf(o, "problems:\n");
        for (size_t i = 0; i < r->n_p && shown < FSCK_SHOW_HUMAN; i++) {
            if (r->p[i].gone)
                continue;
            describe(&r->p[i], line, sizeof(line));
            fprintf(o, "  %s%s\n", line, r->p[i].repaired ? " [repaired]" : "");
            shown++;
        }
        if (found > shown)
            fprintf(o, "  ... and %" PRIu64 " more (--json lists up to %d)\n", found - shown,
                    FSCK_SHOW_JSON);
    }
    if (found == 0)
        fprintf(o, "result: clean\n");
    else if (left == 0)
        fprintf(o, "result: %" PRIu64 " problem(s) found, all repaired\n", found);
    else
        fprintf(o, "result: %" PRIu64 " problem(s) found, %" PRIu64 " left%s\n", found, left,
                opt->repair ? "" : " (run with --repair to fix)");
}

/* json_pack with 'I' takes json_int_t; counts never exceed INT64_MAX. */
static json_int_t ji(uint64_t v)
{
    return (json_int_t)v;
}

/* One problem as a JSON object (new reference, the caller's; NULL when
 * out of memory). */
static json_t *problem_json(const struct om_fsck_problem *p)
{
    json_t *o = json_pack("{s:s, s:b}", "kind", PKIND_NAME[p->kind], "repaired", p->repaired);
    if (o == NULL)
        return NULL;
    switch (p->kind) {
    case OM_FSCK_STALE_INGEST:
        json_object_set_new(o, "file", json_string(p->name));
        json_object_set_new(o, "age_s", json_integer(p->age_s));
        break;
    case OM_FSCK_DANGLING_TAG:
        json_object_set_new(o, "repo", json_string(p->repo));
        json_object_set_new(o, "tag", json_string(p->tag));
        json_object_set_new(o, "digest", json_string(p->d.str));
        break;
    case OM_FSCK_INDEX_UNUSABLE:
        json_object_set_new(o, "why", json_string(p->name));
        break;
    case OM_FSCK_WRONG_SIZE:
        json_object_set_new(o, "digest", json_string(p->d.str));
        json_object_set_new(o, "size", json_integer(ji(p->size)));
        json_object_set_new(o, "index_size", json_integer(ji(p->want)));
        break;
    default:
        json_object_set_new(o, "digest", json_string(p->d.str));
        break;
    }
    return o;
}

/* r's report as one JSON object on stdout.  OM_ERR_NOMEM when it could
 * not be built (nothing printed). */
static int report_json(const struct om_fsck_result *r, const char *storage,
                       const struct opts *opt)
{
    json_t *root = NULL, *list = NULL, *index = NULL;
    char *text = NULL;
    int err = OM_ERR_NOMEM;
    size_t listed = 0;

    list = json_array();
    if (list == NULL)
        goto done;
    for (size_t i = 0; i < r->n_p && listed < FSCK_SHOW_JSON; i++) {
        if (r->p[i].gone)
            continue;
        if (json_array_append_new(list, problem_json(&r->p[i])) != 0)
            goto done;
        listed++;
    }
    if (r->index_ok)
        index = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "state", "ok", "tags",
                          ji(r->counts.tags), "manifests", ji(r->counts.manifests), "blobs",
                          ji(r->counts.blobs), "dangling_tags",
                          ji(r->found[OM_FSCK_DANGLING_TAG]), "missing_manifests",
                          ji(r->found[OM_FSCK_MISSING_MANIFEST]), "missing_blobs",
                          ji(r->found[OM_FSCK_MISSING_BLOB]), "unindexed_objects",
                          ji(r->unindexed), "rows_dropped",
                          ji(r->repaired[OM_FSCK_DANGLING_TAG] +
                             r->repaired[OM_FSCK_MISSING_MANIFEST] +
                             r->repaired[OM_FSCK_MISSING_BLOB]));
    else
        index = json_pack("{s:s, s:s}", "state", r->index_state, "why", r->index_why);
    if (index == NULL)
        goto done;
    uint64_t found = om_fsck_found(r), left = om_fsck_left(r);
    root = json_pack(
        "{s:s, s:b, s:b, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I},"
        " s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I}, s:o, s:I, s:I, s:b, s:o, s:b}",
        "storage", storage, "repair", opt->repair, "in_use", r->holder, "in_use_pid",
        (json_int_t)r->holder_pid,
        "blobs", "checked", ji(r->blobs_checked), "bytes", ji(r->bytes_checked), "corrupt",
        ji(r->found[OM_FSCK_CORRUPT_BLOB]), "wrong_size", ji(r->found[OM_FSCK_WRONG_SIZE]),
        "unreadable", ji(r->found[OM_FSCK_UNREADABLE_BLOB]), "removed",
        ji(r->repaired[OM_FSCK_CORRUPT_BLOB]), "quarantined", ji(r->repaired[OM_FSCK_WRONG_SIZE]),
        "ingest", "files", ji(r->ingest_files), "stale", ji(r->found[OM_FSCK_STALE_INGEST]),
        "in_flight", ji(r->ingest_live), "removed", ji(r->repaired[OM_FSCK_STALE_INGEST]),
        "quarantine", "files", ji(r->quarantine_files), "bytes", ji(r->quarantine_bytes),
        "index", index,
        "problems_found", ji(found), "problems_left", ji(left), "clean", left == 0,
        "problems", list, "problems_truncated", found > listed);
    index = list = NULL; /* "o" stole both, even when json_pack failed */
    if (root == NULL)
        goto done;
    text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    if (text == NULL)
        goto done;
    printf("%s\n", text);
    err = OM_OK;
done:
    free(text);
    json_decref(root);
    json_decref(index);
    json_decref(list);
    return err;
}

/* The engine's failures, as the command has always printed them. */
static void complain(void *ud, const char *msg)
{
    (void)ud;
    fprintf(stderr, "ocimirror fsck: %s\n", msg);
}

int om_cmd_fsck(int argc, char **argv)
{
    struct opts o;
    struct om_config *cfg = NULL;
    struct om_fsck_result res;
    int status = 2, err;

    memset(&o, 0, sizeof(o));
    memset(&res, 0, sizeof(res));
    if ((err = parse_opts(argc, argv, &o)) != 0) {
        status = err == 1 ? 0 : 2;
        goto done;
    }
    if (om_cli_load_config(o.config, NULL, o.storage, &cfg) != 0)
        goto done;
    /* The report is the output; library warnings would only repeat it. */
    om_log_setup(OM_LOG_ERROR, OM_LOG_TEXT);
    struct om_fsck_opts fo = {.root = cfg->storage_path, .cfg = cfg, .repair = o.repair,
                              .ingest_age_s = o.ingest_age_s, .complain = complain};
    if (om_fsck_run(&res, &fo) != OM_OK)
        goto done; /* said by complain() */
    if (o.json) {
        if (report_json(&res, cfg->storage_path, &o) != OM_OK) {
            fprintf(stderr, "ocimirror fsck: out of memory writing the report\n");
            goto done;
        }
    } else {
        report_text(&res, cfg->storage_path, &o);
    }
    status = om_fsck_left(&res) == 0 ? 0 : 1;
done:
    fflush(stdout);
    om_fsck_result_free(&res);
    om_config_free(cfg);
    return status;
}
