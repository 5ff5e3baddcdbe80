/* prefetch_int.h — private to prefetch*.c and the command: pulling one
 * image through a mirror (prefetch_pull.c), running a list of images with
 * retries (prefetch_run.c), both shared by the background thread
 * (prefetch.c) and the command (cli/prefetch_cli.c); and running a list as
 * a job of a mirror's own prefetcher through its admin API
 * (prefetch_remote.c), which reports through the same hooks. */
#ifndef OM_PREFETCH_INT_H
#define OM_PREFETCH_INT_H

#include <curl/curl.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "cache/store.h"
#include "core/config.h"
#include "core/ref.h"
#include "prefetch/prefetch.h"

#define OM_PF_BASE_MAX 320      /* "https://[v6 address]:port" */
#define OM_PF_ERR_MAX 256
#define OM_PF_MAX_BLOBS 8192    /* distinct blobs of one image, all platforms */

/* Where and how to pull.  Filled by the caller; nothing here is owned by
 * the pull. */
struct om_pf_target {
    char base[OM_PF_BASE_MAX];  /* "http://127.0.0.1:5000", no trailing '/' */
    const char *ca_pem;         /* PEM to trust (the server's own cert) or NULL */
    const char *ca_file;        /* CA bundle file or NULL (system store) */
    bool no_verify_host;        /* we reach our own server by loopback IP: the
                                   cert names the public host, not 127.0.0.1 */
    size_t max_manifest;        /* manifest body limit (limits.max_manifest_bytes) */
    struct om_store *store;     /* non-NULL (in-process): skip stored blobs */
    const char *user, *password; /* Basic credentials for every request, or
                                   NULL (in-process: the server's own,
                                   http/auth.h OM_AUTH_SELF_USER) */
    const atomic_bool *stop[4]; /* abort as soon as any non-NULL one is true */
};

/* What a pull reports as it goes; every callback may be NULL. */
typedef enum { OM_PF_BLOB_PROGRESS, OM_PF_BLOB_FETCHED, OM_PF_BLOB_CACHED } om_pf_blob_event;

struct om_pf_observer {
    void *ud;
    /* The top manifest is in; n_blobs distinct config/layer blobs follow. */
    void (*manifest)(void *ud, const om_digest *d, const char *media_type, size_t n_platforms,
                     size_t n_blobs);
    /* idx is 0-based among n; bytes so far (PROGRESS) or in all; total = -1
     * when unknown. */
    void (*blob)(void *ud, om_pf_blob_event ev, const om_digest *d, size_t idx, size_t n,
                 uint64_t bytes, int64_t total);
    /* Something worth a line that is not a failure: code (a stable
     * [a-z_] word, "platform_missing": an index lacks a platform asked
     * for), its one value (the platform), and msg in English. */
    void (*note)(void *ud, const char *code, const char *value, const char *msg);
};

/* A failure as data, for the admin API and the UI: a stable code
 * (docs/prefetch.md lists them) and up to OM_PF_ARGS_MAX named values
 * (a key starting with '#' holds an integer). */
#define OM_PF_CODE_MAX 31
#define OM_PF_ARGS_MAX 4
#define OM_PF_ARG_MAX 160

struct om_pf_arg {
    char key[16];
    char value[OM_PF_ARG_MAX];
};

struct om_pf_result {
    bool have_digest;
    om_digest digest;           /* of the top manifest or index */
    uint64_t bytes;             /* blob bytes received */
    size_t blobs, blobs_cached; /* distinct blobs; of them already stored */
    size_t platforms;           /* platform manifests pulled (0: not an index) */
    bool stale;                 /* the mirror answered with a stale copy */
    bool permanent;             /* retrying cannot help (404, bad name, cancel) */
    char error[OM_PF_ERR_MAX];  /* "" on success: what failed in English */
    char code[OM_PF_CODE_MAX + 1]; /* "" on success: the same as a code... */
    struct om_pf_arg args[OM_PF_ARGS_MAX]; /* ...and its values */
    size_t n_args;
};

/* Record res's failure (the first one only: later calls return false and
 * change nothing): permanent, the code, then the English text from fmt.
 * true when this call recorded it (then om_pf_fail_arg may add values). */
bool om_pf_fail(struct om_pf_result *res, bool permanent, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
bool om_pf_vfail(struct om_pf_result *res, bool permanent, const char *code, const char *fmt,
                 va_list ap) __attribute__((format(printf, 4, 0)));
/* Add a value to res's failure ("#key" for an integer); dropped when
 * OM_PF_ARGS_MAX are there; cut to OM_PF_ARG_MAX - 1 bytes. */
void om_pf_fail_arg(struct om_pf_result *res, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Pull `image` through t for the given platforms.  OM_OK, or an error with
 * res->error saying what failed in words.  A stale answer (upstream down)
 * pulls what it can and then fails with res->stale set, so the caller
 * retries: prefetch exists to bring the cache up to date. */
int om_pf_pull(const struct om_pf_target *t, const char *image, const char *const *platforms,
               size_t np, const struct om_pf_observer *obs, struct om_pf_result *res);

bool om_pf_stopped(const struct om_pf_target *t);
/* Options every request to t gets (URL, protocols, timeouts, TLS trust,
 * the user agent, the stop flags as a progress callback); h is reset by
 * the caller.  A CURLcode. */
CURLcode om_pf_curl_setup(const struct om_pf_target *t, CURL *h, const char *url);

/* ---- prefetch_run.c: a list of images with retries ------------------ */

/* Per-image state of a run; the caller allocates n of them (zeroed). */
typedef enum { OM_PF_PENDING, OM_PF_OK, OM_PF_FAILED } om_pf_state;

struct om_pf_item {
    const char *image;          /* borrowed */
    om_pf_state state;
    struct om_pf_result res;    /* of the last try */
};

/* Hooks of a run (all optional); called on the running thread. */
struct om_pf_run_hooks {
    void *ud;
    void (*image_start)(void *ud, size_t i, size_t n, unsigned try_no, unsigned tries);
    void (*image_end)(void *ud, size_t i, size_t n, unsigned try_no, unsigned tries,
                      const struct om_pf_item *it, uint64_t ms);
    /* About to wait ms before try try_no (of tries) for `pending` images. */
    void (*waiting)(void *ud, unsigned try_no, unsigned tries, size_t pending, uint64_t ms);
    struct om_pf_observer obs;  /* passed to every om_pf_pull */
};

/* Pull every item; failed ones (unless permanent) are tried again, up to
 * `tries` tries in all, retry_ms apart (the wait ends early when a stop
 * flag of t is set).  Returns the number of items that failed. */
size_t om_pf_run(const struct om_pf_target *t, struct om_pf_item *items, size_t n,
                 const char *const *platforms, size_t np, unsigned tries, uint64_t retry_ms,
                 const struct om_pf_run_hooks *hooks);

/* ---- prefetch_remote.c: a job of a running mirror ------------------ */

/* Where the job goes: a mirror's admin API at t->base (TLS and stop flags
 * as for pulling; borrowed), with its admin token (or NULL). */
struct om_pf_remote {
    const struct om_pf_target *t;
    const char *token;
    void *ud;
    /* A job of count items was queued: its id, the platforms the mirror
     * pulls ("linux/amd64, linux/arm64"), and whether it waits behind
     * other jobs (the mirror runs one at a time). */
    void (*job)(void *ud, const char *id, size_t count, const char *platforms, bool queued);
};

/* Run the items as jobs of the mirror's own prefetcher (POST
 * /api/v1/prefetch, as many jobs as the API's limits need, one after
 * another) and follow each (GET /api/v1/prefetch/<id>?since=), reporting
 * through hooks exactly as om_pf_run does, from the mirror's records: so
 * "already cached" is what the mirror knew, and the run is in its UI and
 * events.  A stop flag of t cancels the job on the mirror.
 *
 * tries 0 / retry_ms < 0: the mirror's config.  np 0: its platforms.
 * Returns OM_OK when the first job was taken (*failed = the items that
 * failed; every item's state and res are set), or, when it was not and
 * nothing ran, an error with why (English) saying what the mirror
 * answered: OM_ERR_NOTFOUND (no such endpoint: an older mirror, or no
 * admin API), OM_ERR_AUTH (401: the token is missing or wrong),
 * OM_ERR_DENIED (403: no admin token configured there), OM_ERR_UPSTREAM
 * (no answer, 5xx, a malformed answer).  Items with an invalid reference
 * are failed here, before anything is sent. */
int om_pf_remote_run(const struct om_pf_remote *r, struct om_pf_item *items, size_t n,
                     const char *const *platforms, size_t np, unsigned tries, int64_t retry_ms,
                     const struct om_pf_run_hooks *hooks, size_t *failed, char *why,
                     size_t whysz);

/* "12.3 MiB" */
void om_pf_human_bytes(uint64_t n, char *buf, size_t len);
/* The server's own address for a loopback client: listen host (wildcards
 * become 127.0.0.1 / [::1]) and the bound port; https when tls.  OM_OK or
 * OM_ERR_INVALID. */
int om_pf_self_base(const char *listen, unsigned port, bool tls, char *out, size_t outsz);

#endif
