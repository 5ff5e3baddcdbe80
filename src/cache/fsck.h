/* fsck.h — checking a storage directory: every stored blob against its
 * digest and the size the index recorded, ingest/ for downloads that will
 * never finish, the index against the store; optionally repairing what it
 * finds.
 * Implemented in fsck.c (the checks and repairs; its file comment says
 * what each one means); the command `ocimirror fsck` — options, the text
 * and JSON reports, the exit status — is cli/fsck_cli.c.  docs/fsck.md is
 * the user's description. */
#ifndef OM_FSCK_H
#define OM_FSCK_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/index_fsck.h"
#include "core/config.h"
#include "core/om.h"
#include "core/ref.h"

#define OM_FSCK_PROBLEMS_MAX 10000 /* problems kept in a result (counts stay exact) */
#define OM_FSCK_WHY_MAX 512

enum om_fsck_kind {
    OM_FSCK_CORRUPT_BLOB,     /* content does not match its digest */
    OM_FSCK_UNREADABLE_BLOB,  /* a read error while re-hashing */
    OM_FSCK_STALE_INGEST,     /* an ingest file no download will finish */
    OM_FSCK_DANGLING_TAG,     /* a tag whose manifest is not in the store */
    OM_FSCK_MISSING_MANIFEST, /* in the index, not in the store */
    OM_FSCK_MISSING_BLOB,     /* in the index, not in the store */
    OM_FSCK_INDEX_UNUSABLE,   /* index.db missing (with content), corrupt, unusable */
    OM_FSCK_WRONG_SIZE,       /* not the size the index recorded, and the content does not
                                 match its digest: damaged on disk (truncated, grown) */
    OM_FSCK__COUNT
};

struct om_fsck_problem {
    enum om_fsck_kind kind;
    bool repaired;
    bool gone;                   /* no longer a problem at re-check: not reported */
    bool pending;                /* (repair) index row dropped in an uncommitted transaction */
    om_digest d;                 /* blob, manifest, tag target */
    char repo[OM_NAME_MAX + 1];  /* dangling tag */
    char tag[OM_TAG_MAX + 1];    /* dangling tag */
    char name[NAME_MAX + 1];     /* stale ingest file; index_unusable: "state: why" */
    int64_t age_s;               /* stale ingest file */
    uint64_t size, want;         /* wrong size: on disk, as the index recorded it */
};

struct om_fsck_opts {
    const char *root;            /* the storage directory; borrowed */
    /* [added for store_s3.c] The config whose storage section names the
     * store (backend s3: the bucket, root its local directory); NULL: the
     * filesystem store at root.  Borrowed. */
    const struct om_config *cfg;
    bool repair;
    /* Next to another process holding the storage open (a server), ingest
     * files younger than this are downloads in flight, never touched. */
    long ingest_age_s;
    /* Each failure, one line without a newline (a fatal one ends the run,
     * "cannot remove" during a repair does not); NULL: logged at WARN.
     * msg is only valid during the call. */
    void (*complain)(void *ud, const char *msg);
    void *ud;                    /* for complain */
};

/* What a run found and did.  p is malloc'd, owned by the result
 * (om_fsck_result_free); problems marked `gone` resolved themselves and
 * are not counted in found[]. */
struct om_fsck_result {
    bool holder;                     /* another process has the storage open */
    long holder_pid;                 /* its pid when known, else 0 */
    bool index_ok;                   /* index.db could be opened and was checked */
    char index_state[16];            /* "ok", "missing", "corrupt", "unusable" */
    char index_why[OM_FSCK_WHY_MAX];

    struct om_fsck_problem *p;       /* n_p kept, in the order found */
    size_t n_p, cap_p;
    uint64_t found[OM_FSCK__COUNT], repaired[OM_FSCK__COUNT];
    uint64_t not_kept;               /* problems over OM_FSCK_PROBLEMS_MAX */

    uint64_t blobs_checked, bytes_checked, unindexed;
    uint64_t quarantine_files, quarantine_bytes; /* in <root>/quarantine after the run */
    uint64_t ingest_files, ingest_live;
    struct om_index_fsck_counts counts; /* with index_ok */
    uint64_t bad_rows;               /* index rows with a malformed digest */
};

/* Check (and with o->repair, repair) the storage at o->root.  *out is
 * zeroed first and filled also on error (what was found until then); free
 * it with om_fsck_result_free either way.  OM_OK when the checks ran —
 * problems are in *out, not in the return value; OM_ERR_NOTFOUND when
 * o->root is not a storage directory (no blobs/sha256); another code when
 * the store or index could not be read (each complained about). */
int om_fsck_run(struct om_fsck_result *out, const struct om_fsck_opts *o);
/* Frees what r owns (not r itself); r is zeroed.  NULL is fine. */
void om_fsck_result_free(struct om_fsck_result *r);

/* Problems found / found and not repaired (beyond the kept list too). */
uint64_t om_fsck_found(const struct om_fsck_result *r);
uint64_t om_fsck_left(const struct om_fsck_result *r);

#endif
