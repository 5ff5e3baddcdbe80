/* prefetch_int.h — private to prefetch*.c: pulling one image through a
 * mirror (prefetch_pull.c) and running a list of images with retries
 * (prefetch_run.c), shared by the background thread (prefetch.c) and the
 * command (prefetch_cli.c). */
#ifndef OM_PREFETCH_INT_H
#define OM_PREFETCH_INT_H

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
    const atomic_bool *stop[3]; /* abort as soon as any non-NULL one is true */
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
    /* Something worth a line that is not a failure (a platform an index
     * does not have). */
    void (*note)(void *ud, const char *msg);
};

struct om_pf_result {
    bool have_digest;
    om_digest digest;           /* of the top manifest or index */
    uint64_t bytes;             /* blob bytes received */
    size_t blobs, blobs_cached; /* distinct blobs; of them already stored */
    size_t platforms;           /* platform manifests pulled (0: not an index) */
    bool stale;                 /* the mirror answered with a stale copy */
    bool permanent;             /* retrying cannot help (404, bad name, cancel) */
    char error[OM_PF_ERR_MAX];  /* "" on success */
};

/* Pull `image` through t for the given platforms.  OM_OK, or an error with
 * res->error saying what failed in words.  A stale answer (upstream down)
 * pulls what it can and then fails with res->stale set, so the caller
 * retries: prefetch exists to bring the cache up to date. */
int om_pf_pull(const struct om_pf_target *t, const char *image, const char *const *platforms,
               size_t np, const struct om_pf_observer *obs, struct om_pf_result *res);

bool om_pf_stopped(const struct om_pf_target *t);

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

/* "12.3 MiB" */
void om_pf_human_bytes(uint64_t n, char *buf, size_t len);
/* The server's own address for a loopback client: listen host (wildcards
 * become 127.0.0.1 / [::1]) and the bound port; https when tls.  OM_OK or
 * OM_ERR_INVALID. */
int om_pf_self_base(const char *listen, unsigned port, bool tls, char *out, size_t outsz);

#endif
