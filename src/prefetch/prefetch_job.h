/* prefetch_job.h — private to prefetch.c and prefetch_job.c: one job of the
 * server's prefetcher, what it records while it runs (counters, failures
 * as data, a bounded log of progress records that `ocimirror prefetch`
 * follows), and its JSON.
 *
 * Nothing here locks: every function is called with the prefetcher's
 * mutex held (prefetch.c), and does no I/O.
 */
#ifndef OM_PREFETCH_JOB_H
#define OM_PREFETCH_JOB_H

#include <jansson.h>
#include <stdatomic.h>

#include "prefetch/prefetch_int.h"

#define OM_PF_JOB_FAILURES_MAX 64   /* failures kept per job (later ones counted only) */
#define OM_PF_LOG_CAP 512           /* progress records kept per job (a ring) */
#define OM_PF_LOG_PAGE 256          /* records per answer */

typedef enum {
    OM_PF_JOB_QUEUED, OM_PF_JOB_RUNNING, OM_PF_JOB_WAITING, OM_PF_JOB_DONE, OM_PF_JOB_FAILED,
    OM_PF_JOB_CANCELLED
} om_pf_job_state;

/* A failure as data: what om_pf_result says about it. */
struct om_pf_err {
    char code[OM_PF_CODE_MAX + 1];
    struct om_pf_arg args[OM_PF_ARGS_MAX];
    size_t n_args;
    char message[OM_PF_ERR_MAX];
};

/* One progress record, in the order the run produced them. */
typedef enum {
    OM_PF_REC_IMAGE_START, OM_PF_REC_MANIFEST, OM_PF_REC_BLOB, OM_PF_REC_NOTE,
    OM_PF_REC_IMAGE_END, OM_PF_REC_WAITING
} om_pf_rec_type;

struct om_pf_rec {
    uint64_t seq;               /* 1, 2, ... per job */
    int64_t t_ms;
    om_pf_rec_type type;
    size_t image;               /* index into the job's images */
    unsigned a, b;              /* start/end/waiting: try, tries; blob: idx, n */
    size_t c, d;                /* manifest: platforms, blobs; end: blobs, cached;
                                   waiting: pending */
    int ev;                     /* blob: om_pf_blob_event; end: om_pf_state */
    uint64_t bytes;             /* blob: bytes; end: bytes; waiting: ms */
    int64_t total;              /* blob: total (-1 unknown); end: ms */
    bool permanent;             /* end */
    char digest[OM_DIGEST_MAX + 1];
    char text[96];              /* manifest: media type; note: code */
    char value[OM_PREFETCH_PLATFORM_MAX + 1]; /* note: its value */
    struct om_pf_err *err;      /* end of a failed try: owned, else NULL */
};

struct om_pf_job {
    struct om_pf_job *next;     /* newest first */
    char id[OM_PREFETCH_ID_MAX + 1];
    const char *kind;           /* "config" | "admin" | "cli" (static strings) */
    char **images;              /* owned, n entries, each owned */
    size_t n;
    char **platforms;           /* owned, np entries, each owned */
    size_t np;
    om_pf_job_state state;
    size_t done, failed;        /* images */
    struct {
        size_t image;           /* SIZE_MAX: not about one image */
        struct om_pf_err *err;  /* owned */
    } failures[OM_PF_JOB_FAILURES_MAX];
    size_t n_failures;
    unsigned try_no, tries;
    uint64_t retry_ms;
    uint64_t bytes;             /* blob bytes fetched */
    size_t blobs, blobs_cached; /* blobs handled; of them already in the store */
    bool has_current;
    size_t cur_image;
    size_t cur_blobs_done, cur_blobs_total, cur_blobs_cached;
    uint64_t cur_bytes;
    int64_t created_ms, started_ms, finished_ms, next_try_ms;
    atomic_bool cancel;         /* asked to stop (om_prefetch_cancel) */
    struct om_pf_rec *log;      /* owned ring of OM_PF_LOG_CAP, or NULL */
    uint64_t log_next;          /* seq of the next record (from 1) */
};

/* A new queued job with copies of the strings; NULL on allocation failure.
 * Owned by the caller (om_pf_job_free). */
struct om_pf_job *om_pf_job_new(const char *id, const char *kind, const char *const *images,
                                size_t n, const char *const *platforms, size_t np,
                                unsigned tries, uint64_t retry_ms);
void om_pf_job_free(struct om_pf_job *j);
bool om_pf_job_finished(const struct om_pf_job *j);

/* A copy of res's failure (owned by the caller, free()); NULL on
 * allocation failure. */
struct om_pf_err *om_pf_err_from(const struct om_pf_result *res);
/* Keep a failure of image (SIZE_MAX: of the job); err consumed. */
void om_pf_job_add_failure(struct om_pf_job *j, size_t image, struct om_pf_err *err);

/* Append a record (copied; its err is consumed) with the next seq.  The
 * log is allocated on the first record; without memory the record is
 * dropped (the run goes on). */
void om_pf_job_log(struct om_pf_job *j, const struct om_pf_rec *r);
/* Free the log (a finished job nobody follows any more). */
void om_pf_job_log_drop(struct om_pf_job *j);

/* {"id","kind","state",...} (prefetch.h); a new reference or NULL. */
json_t *om_pf_job_json(const struct om_pf_job *j);
/* {"job":{...},"log":[records with seq > since],"next":last seq + 1,
 *  "dropped":records after `since` no longer kept,"more":bool}: at most
 * OM_PF_LOG_PAGE records.  A new reference or NULL. */
json_t *om_pf_job_log_json(const struct om_pf_job *j, uint64_t since);

/* An error's {"code","values":{...},"message"}; a new reference. */
json_t *om_pf_err_json(const struct om_pf_err *e);

#endif
