/* prefetch_cli.c — `ocimirror prefetch`: warm a mirror's cache from the
 * command line.
 *
 *   ocimirror prefetch [-c FILE] [--platform OS/ARCH]... [--mirror URL]
 *                      [--ca-file FILE] [--storage DIR] [--retries N]
 *                      [--retry-interval DUR] [--admin-token-file FILE]
 *                      [-v] IMAGE... | -f LIST
 *
 * Which mirror does the work, in order:
 *   1. --mirror URL: a running mirror anywhere.
 *   2. The mirror of this config, when one already answers at its listen
 *      address: two processes never write one storage directory (the
 *      store's owner lock refuses a second one).
 *   3. Otherwise a mirror is started in this process on an ephemeral
 *      loopback port, on the config's storage, and stopped at the end.
 * No image, no -f: the config's prefetch.images.
 *
 * A running mirror (1, 2) is asked to run the list as its own job (POST
 * /api/v1/prefetch with kind "cli", prefetch/prefetch_remote.c), and the
 * command prints the job's progress as the server reports it: the server
 * pulls in-process, knows which blobs it already held ("already cached"),
 * and lists the run in its web UI and /api/v1/events like any job.  That
 * takes the admin token when the mirror has one: --admin-token-file, the
 * environment's OCIMIRROR_ADMIN_TOKEN, or admin.token(_file) of the config
 * read.  When the mirror does not take jobs (no token, an older server),
 * the command pulls through its /v2/ as a client and says so; a blob is
 * then "pulled", since a registry's answer does not say whether it came
 * from the cache.
 *
 * Output: one line per event on stdout (a manifest, each blob, each image's
 * result, retry waits, a summary), flushed line by line so it reads well
 * in a terminal, a CI log and journald alike; the in-process mirror logs
 * warnings and errors only (everything with -v) to stderr.  Exit status: 0
 * all prefetched, 1 some failed (each named on stderr), 2 bad usage.
 * SIGINT/SIGTERM stop it cleanly (the in-process mirror shuts down).
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/log.h"
#include "prefetch/prefetch_int.h"
#include "server/server.h"

#define LIST_FILE_MAX (1024 * 1024)
#define CLI_IMAGES_MAX 10000
#define PROBE_TIMEOUT_MS 2000L
#define TOKEN_FILE_MAX 4096

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ocimirror prefetch [-c FILE] [--platform OS/ARCH]... [--mirror URL]\n"
            "                          [--ca-file FILE] [--storage DIR] [--retries N]\n"
            "                          [--retry-interval DUR] [--admin-token-file FILE]\n"
            "                          [-v] IMAGE... | -f LIST\n"
            "\n"
            "Pulls each image through a mirror so that the mirror caches it: the manifest,\n"
            "the platform manifests of an index (default: the config's prefetch.platforms),\n"
            "and every config and layer blob.  IMAGE is written as for a client:\n"
            "nginx:1.25, quay.io/coreos/etcd:v3.5.0, registry.k8s.io/pause@sha256:...\n"
            "LIST has one image per line ('#' comments; '-' reads stdin).  With no image,\n"
            "the config's prefetch.images.  --mirror: pull through that running mirror;\n"
            "otherwise through the one answering at the config's listen address, or one\n"
            "started in this process on the config's storage.  A running mirror runs the\n"
            "list as its own job (shown in its web UI and events) when it takes the admin\n"
            "token: --admin-token-file, $OCIMIRROR_ADMIN_TOKEN or the config's\n"
            "admin.token; otherwise the images are pulled through its /v2/.\n");
}

struct opts {
    const char *config, *mirror, *ca_file, *storage, *list, *token_file;
    const char *platforms[OM_MAX_PREFETCH_PLATFORMS];
    size_t np;
    const char **images;          /* owned array; strings point into argv or list_buf */
    size_t n;
    char *list_buf;               /* owned: the list file's text */
    long retries;                 /* -1 = config */
    int64_t retry_ms;             /* -1 = config */
    bool verbose;
};

static int add_image(struct opts *o, const char *s)
{
    if (o->n >= CLI_IMAGES_MAX) {
        fprintf(stderr, "ocimirror: prefetch: more than %d images\n", CLI_IMAGES_MAX);
        return 2;
    }
    if (o->images == NULL && (o->images = calloc(CLI_IMAGES_MAX, sizeof(*o->images))) == NULL)
        return 1;
    o->images[o->n++] = s;
    return 0;
}

/* Read LIST ("-" = stdin): one image per line, blank lines and '#'
 * comments skipped, surrounding white space trimmed. */
static int read_list(struct opts *o)
{
    int rc = 1;
    FILE *f = strcmp(o->list, "-") == 0 ? stdin : fopen(o->list, "r");
    size_t len = 0;
    if (f == NULL) {
        fprintf(stderr, "ocimirror: prefetch: %s: %s\n", o->list, strerror(errno));
        return 2;
    }
    if ((o->list_buf = malloc(LIST_FILE_MAX + 1)) == NULL)
        goto done;
    len = fread(o->list_buf, 1, LIST_FILE_MAX + 1, f);
    if (len > LIST_FILE_MAX) {
        fprintf(stderr, "ocimirror: prefetch: %s is larger than %d bytes\n", o->list,
                LIST_FILE_MAX);
        rc = 2;
        goto done;
    }
    o->list_buf[len] = '\0';
    rc = 0;
    for (char *line = o->list_buf, *next; rc == 0 && line != NULL; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        while (*line == ' ' || *line == '\t')
            line++;
        size_t l = strlen(line);
        while (l > 0 && (line[l - 1] == ' ' || line[l - 1] == '\t' || line[l - 1] == '\r'))
            line[--l] = '\0';
        if (l > 0)
            rc = add_image(o, line);
    }
done:
    if (f != stdin)
        fclose(f);
    return rc;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o->verbose = true;
            takes = false;
        } else if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (add_image(o, a) != 0)
                return 2;
            takes = false;
        } else if (v == NULL) {
            fprintf(stderr, "ocimirror: prefetch: %s needs a value\n", a);
            return 2;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            o->config = v;
        } else if (strcmp(a, "--mirror") == 0) {
            o->mirror = v;
        } else if (strcmp(a, "--ca-file") == 0) {
            o->ca_file = v;
        } else if (strcmp(a, "--admin-token-file") == 0) {
            o->token_file = v;
        } else if (strcmp(a, "--storage") == 0) {
            o->storage = v;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
            o->list = v;
        } else if (strcmp(a, "--platform") == 0) {
            if (!om_prefetch_platform_valid(v) || o->np >= OM_MAX_PREFETCH_PLATFORMS) {
                fprintf(stderr, "ocimirror: prefetch: bad --platform '%s' (want os/arch or "
                                "os/arch/variant, lowercase)\n", v);
                return 2;
            }
            o->platforms[o->np++] = v;
        } else if (strcmp(a, "--retries") == 0) {
            char *end;
            o->retries = strtol(v, &end, 10);
            if (*end != '\0' || o->retries < 1 || o->retries > 100) {
                fprintf(stderr, "ocimirror: prefetch: --retries wants 1..100\n");
                return 2;
            }
        } else if (strcmp(a, "--retry-interval") == 0) {
            uint64_t ms;
            if (om_parse_duration_ms(v, &ms) != OM_OK || ms > 7ull * 24 * 3600 * 1000) {
                fprintf(stderr, "ocimirror: prefetch: bad --retry-interval '%s'\n", v);
                return 2;
            }
            o->retry_ms = (int64_t)ms;
        } else {
            fprintf(stderr, "ocimirror: prefetch: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (takes)
            i++;
    }
    if (o->list != NULL) {
        int rc = read_list(o);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- progress output ------------------------------------------------- */

struct cli {
    const struct om_pf_item *items; /* borrowed: the run's items */
    size_t i, n;                  /* current image (0-based) of n */
    const char *image;            /* items[i].image */
    size_t blobs_seen;            /* blobs finished for the current image */
    uint64_t bytes;               /* fetched in all (pulled, when !knows) */
    size_t fetched, cached;       /* blobs in all */
    bool knows;                   /* the mirror tells fetched from cached */
    const char *where;            /* "the mirror at URL", for the job line */
    size_t n_jobs;
};

static void short_digest(const om_digest *d, char *out, size_t outsz)
{
    snprintf(out, outsz, "%.19s", d->str);   /* "sha256:" + 12 hex */
}

static void on_image_start(void *ud, size_t i, size_t n, unsigned try_no, unsigned tries)
{
    struct cli *c = ud;
    (void)try_no, (void)tries;
    c->i = i;
    c->n = n;
    c->image = c->items[i].image;
    c->blobs_seen = 0;
}

static void on_manifest(void *ud, const om_digest *d, const char *media_type, size_t np,
                        size_t n_blobs)
{
    struct cli *c = ud;
    char sd[24];
    short_digest(d, sd, sizeof(sd));
    if (np > 0)
        printf("[%zu/%zu] %s: index %s (%s), %zu platform%s, %zu blobs\n", c->i + 1, c->n,
               c->image, sd, media_type, np, np == 1 ? "" : "s", n_blobs);
    else
        printf("[%zu/%zu] %s: manifest %s (%s), %zu blobs\n", c->i + 1, c->n, c->image, sd,
               media_type, n_blobs);
    fflush(stdout);
}

static void on_blob(void *ud, om_pf_blob_event ev, const om_digest *d, size_t idx, size_t n,
                    uint64_t bytes, int64_t total)
{
    struct cli *c = ud;
    (void)idx;
    char sd[24], b[24], t[24];
    short_digest(d, sd, sizeof(sd));
    om_pf_human_bytes(bytes, b, sizeof(b));
    if (total >= 0)
        om_pf_human_bytes((uint64_t)total, t, sizeof(t));
    else
        snprintf(t, sizeof(t), "?");
    if (ev == OM_PF_BLOB_PROGRESS) {
        printf("[%zu/%zu] %s: blob %s: %s of %s\n", c->i + 1, c->n, c->image, sd, b, t);
    } else {
        c->blobs_seen++;
        if (ev == OM_PF_BLOB_FETCHED) {
            c->fetched++;
            c->bytes += bytes;
        } else {
            c->cached++;
        }
        printf("[%zu/%zu] %s: blob %zu/%zu %s: %s %s\n", c->i + 1, c->n, c->image,
               c->blobs_seen, n, sd, b,
               !c->knows ? "pulled" : ev == OM_PF_BLOB_FETCHED ? "fetched" : "already cached");
    }
    fflush(stdout);
}

static void on_note(void *ud, const char *code, const char *value, const char *msg)
{
    struct cli *c = ud;
    (void)value;
    if (strcmp(code, "records_dropped") == 0)
        printf("%s\n", msg);
    else
        printf("[%zu/%zu] %s: %s\n", c->i + 1, c->n, c->image, msg);
    fflush(stdout);
}

/* The mirror queued a job of ours. */
static void on_job(void *ud, const char *id, size_t count, const char *platforms, bool queued)
{
    struct cli *c = ud;
    c->n_jobs++;
    printf("prefetch: %zu image%s for %s through %s, as its prefetch job %s (in its web UI "
           "and events)%s\n",
           count, count == 1 ? "" : "s", platforms[0] ? platforms : "its platforms", c->where, id,
           queued ? "; queued behind the mirror's other jobs" : "");
    fflush(stdout);
}

static void on_image_end(void *ud, size_t i, size_t n, unsigned try_no, unsigned tries,
                         const struct om_pf_item *it, uint64_t ms)
{
    struct cli *c = ud;
    char b[24];
    om_pf_human_bytes(it->res.bytes, b, sizeof(b));
    if (it->state == OM_PF_OK && c->knows)
        printf("[%zu/%zu] %s: done in %.1fs: %zu blobs, %s fetched, %zu already cached\n",
               i + 1, n, it->image, (double)ms / 1000, it->res.blobs, b, it->res.blobs_cached);
    else if (it->state == OM_PF_OK)
        printf("[%zu/%zu] %s: done in %.1fs: %zu blobs, %s pulled\n", i + 1, n, it->image,
               (double)ms / 1000, it->res.blobs, b);
    else
        printf("[%zu/%zu] %s: failed (try %u/%u%s): %s\n", i + 1, n, it->image, try_no, tries,
               it->state == OM_PF_FAILED ? (it->res.permanent && try_no < tries
                                                ? ", not retried" : "")
                                         : ", will retry",
               it->res.error);
    fflush(stdout);
}

static void on_waiting(void *ud, unsigned try_no, unsigned tries, size_t pending, uint64_t ms)
{
    (void)ud;
    char d[24];
    om_format_duration_ms(ms, d, sizeof(d));
    printf("retrying %zu image%s in %s (try %u/%u)\n", pending, pending == 1 ? "" : "s", d,
           try_no, tries);
    fflush(stdout);
}

/* ---- signals ---------------------------------------------------------- */

struct sig_ctx {
    atomic_bool stop;             /* set on SIGINT/SIGTERM */
    atomic_bool done;             /* main is finished: the thread exits */
    sigset_t set;
};

static void *sig_thread(void *arg)
{
    struct sig_ctx *s = arg;
    while (!atomic_load(&s->done)) {
        struct timespec ts = {0, 200 * 1000000L};
        int sig = sigtimedwait(&s->set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            if (!atomic_exchange(&s->stop, true))
                fprintf(stderr, "ocimirror: prefetch: interrupted, stopping\n");
        }
    }
    return NULL;
}

/* ---- choosing the mirror --------------------------------------------- */

/* A mirror answers GET /v2/ at base (with the registry API header). */
static bool mirror_answers(const char *base, const char *ca_file, bool no_verify_host)
{
    char url[OM_PF_BASE_MAX + 8];
    bool yes = false;
    CURL *h = curl_easy_init();
    if (h == NULL)
        return false;
    snprintf(url, sizeof(url), "%s/v2/", base);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, PROBE_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    if (no_verify_host)
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    struct curl_header *hv = NULL;
    if (curl_easy_perform(h) == CURLE_OK &&
        curl_easy_header(h, "Docker-Distribution-API-Version", 0, CURLH_HEADER, -1, &hv) ==
            CURLHE_OK)
        yes = true;
    curl_easy_cleanup(h);
    return yes;
}

static int mirror_url_base(const char *url, char *out, size_t outsz)
{
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    const char *host = strncmp(url, "http://", 7) == 0    ? url + 7
                       : strncmp(url, "https://", 8) == 0 ? url + 8
                                                          : NULL;
    if (host == NULL || (size_t)(host - url) >= len || len >= outsz ||
        memchr(host, '/', len - (size_t)(host - url)) != NULL ||
        memchr(url, '?', len) != NULL || memchr(url, '#', len) != NULL)
        return OM_ERR_INVALID;
    memcpy(out, url, len);
    out[len] = '\0';
    return OM_OK;
}

/* The admin token for a running mirror: --admin-token-file, else
 * $OCIMIRROR_ADMIN_TOKEN, else the config's admin.token(_file).  *out is
 * NULL (none) or borrowed from cfg/env or points into buf.  2 when the
 * file cannot be read (bad usage). */
static int admin_token(const struct opts *o, const struct om_config *cfg, char *buf,
                       size_t bufsz, const char **out)
{
    const char *env = getenv("OCIMIRROR_ADMIN_TOKEN");
    *out = NULL;
    if (o->token_file != NULL) {
        FILE *f = fopen(o->token_file, "r");
        size_t n = f != NULL ? fread(buf, 1, bufsz - 1, f) : 0;
        if (f == NULL || ferror(f) || !feof(f)) {
            fprintf(stderr, "ocimirror: prefetch: --admin-token-file %s: %s\n", o->token_file,
                    f == NULL ? strerror(errno) : "unreadable or over 4 KiB");
            if (f != NULL)
                fclose(f);
            return 2;
        }
        fclose(f);
        buf[n] = '\0';
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                         buf[n - 1] == '\t'))
            buf[--n] = '\0';
        *out = buf;
    } else if (env != NULL && env[0] != '\0') {
        *out = env;
    } else {
        *out = cfg->admin_token;
    }
    return 0;
}

/* ---- the command ------------------------------------------------------- */

int om_cmd_prefetch(int argc, char **argv)
{
    int rc = 2;
    struct opts o = {.retries = -1, .retry_ms = -1};
    struct om_config *cfg = NULL;
    struct om_server *srv = NULL;
    struct om_pf_item *items = NULL;
    struct sig_ctx sig = {0};
    pthread_t sig_tid;
    bool sig_started = false, curl_ok = false, running = false;
    char *saved_cert = NULL, *saved_key = NULL, *saved_listen = NULL;
    size_t saved_n_images = 0;
    bool swapped = false;
    struct om_pf_target t = {0};
    char where[OM_PF_BASE_MAX + 80], token_buf[TOKEN_FILE_MAX + 1];
    const char *token = NULL;

    if ((rc = parse_opts(argc, argv, &o)) != 0)
        goto done;
    rc = 1;
    if (om_cli_load_config(o.config, NULL, o.storage, &cfg) != 0)
        goto done;
    om_log_setup(o.verbose ? cfg->log_level
                           : (cfg->log_level > OM_LOG_WARN ? cfg->log_level : OM_LOG_WARN),
                 cfg->log_format);
    if ((rc = admin_token(&o, cfg, token_buf, sizeof(token_buf), &token)) != 0)
        goto done;
    rc = 1;
    if (o.n == 0) {
        for (size_t i = 0; i < cfg->n_prefetch_images; i++)
            if ((rc = add_image(&o, cfg->prefetch_images[i])) != 0)
                goto done;
        if (o.n == 0) {
            fprintf(stderr, "ocimirror: prefetch: no image given, and the config's "
                            "prefetch.images is empty\n");
            usage(stderr);
            rc = 2;
            goto done;
        }
    }
    const char *const *platforms = o.np ? o.platforms : (const char *const *)cfg->prefetch_platforms;
    size_t np = o.np ? o.np : cfg->n_prefetch_platforms;
    unsigned tries = o.retries > 0 ? (unsigned)o.retries : cfg->prefetch_retries;
    uint64_t retry_ms = o.retry_ms >= 0 ? (uint64_t)o.retry_ms : cfg->prefetch_retry_interval_ms;

    /* Signals: blocked in every thread (the in-process server's included),
     * taken by one thread of ours. */
    sigemptyset(&sig.set);
    sigaddset(&sig.set, SIGINT);
    sigaddset(&sig.set, SIGTERM);
    sigaddset(&sig.set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sig.set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (pthread_create(&sig_tid, NULL, sig_thread, &sig) == 0)
        sig_started = true;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "ocimirror: libcurl initialisation failed\n");
        goto done;
    }
    curl_ok = true;

    t.max_manifest = cfg->limits.max_manifest_bytes;
    t.stop[0] = &sig.stop;
    char own[OM_PF_BASE_MAX];
    unsigned lport = 0;
    char lhost[256];
    if (o.mirror != NULL) {
        if (mirror_url_base(o.mirror, t.base, sizeof(t.base)) != OM_OK) {
            fprintf(stderr, "ocimirror: prefetch: --mirror wants http(s)://HOST[:PORT] "
                            "(no path), not '%s'\n", o.mirror);
            rc = 2;
            goto done;
        }
        t.ca_file = o.ca_file;
        snprintf(where, sizeof(where), "the mirror at %s", t.base);
        running = true;
    } else if (om_parse_listen(cfg->listen, lhost, sizeof(lhost), &lport) == OM_OK &&
               om_pf_self_base(cfg->listen, lport, cfg->tls_cert != NULL, own, sizeof(own)) ==
                   OM_OK &&
               mirror_answers(own, cfg->tls_cert, cfg->tls_cert != NULL)) {
        snprintf(t.base, sizeof(t.base), "%s", own);
        t.ca_file = cfg->tls_cert;
        t.no_verify_host = cfg->tls_cert != NULL;
        snprintf(where, sizeof(where), "the mirror already running at %s", t.base);
        running = true;
    } else {
        /* In-process: plain HTTP on an ephemeral loopback port, no config
         * prefetch of its own.  The config is ours until the server starts;
         * the fields are put back before it is freed. */
        saved_cert = cfg->tls_cert;
        saved_key = cfg->tls_key;
        saved_listen = cfg->listen;
        saved_n_images = cfg->n_prefetch_images;
        cfg->tls_cert = cfg->tls_key = NULL;
        cfg->n_prefetch_images = 0;
        cfg->listen = strdup("127.0.0.1:0");
        swapped = true;
        if (cfg->listen == NULL)
            goto done;
        int serr = om_server_start(&srv, cfg);
        if (serr == OM_ERR_DENIED) {
            /* The store's owner lock: a server runs on this storage, but
             * not at the config's listen address. */
            fprintf(stderr, "ocimirror: prefetch: storage %s belongs to a running ocimirror "
                            "that does not answer at %s; prefetch through it with --mirror "
                            "URL\n", cfg->storage_path, saved_listen);
            goto done;
        }
        if (serr != OM_OK) {
            fprintf(stderr, "ocimirror: prefetch: cannot start the mirror on storage %s\n",
                    cfg->storage_path);
            goto done;
        }
        const union MHD_DaemonInfo *di =
            MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
        if (di == NULL ||
            om_pf_self_base(cfg->listen, di->port, false, t.base, sizeof(t.base)) != OM_OK)
            goto done;
        t.store = srv->store;
        t.stop[1] = &srv->stopping;
        snprintf(where, sizeof(where), "a mirror in this process (storage %s)",
                 cfg->storage_path);
    }

    char plist[OM_MAX_PREFETCH_PLATFORMS * (OM_PREFETCH_PLATFORM_MAX + 2)] = "";
    for (size_t i = 0; i < np; i++)
        snprintf(plist + strlen(plist), sizeof(plist) - strlen(plist), "%s%s", i ? ", " : "",
                 platforms[i]);

    if ((items = calloc(o.n, sizeof(*items))) == NULL)
        goto done;
    for (size_t i = 0; i < o.n; i++)
        items[i].image = o.images[i];
    struct cli c = {.items = items, .knows = true, .where = where};
    struct om_pf_run_hooks hooks = {
        .ud = &c, .image_start = on_image_start, .image_end = on_image_end,
        .waiting = on_waiting,
        .obs = {.ud = &c, .manifest = on_manifest, .blob = on_blob, .note = on_note},
    };
    int64_t t0 = om_now_us();
    size_t failed = 0;
    bool pulled = true;
    if (running) {
        /* As a job of that mirror; only what was given on the command line
         * overrides its own config. */
        struct om_pf_remote r = {.t = &t, .token = token, .ud = &c, .job = on_job};
        char why[OM_PF_ERR_MAX];
        int rerr = om_pf_remote_run(&r, items, o.n, o.np ? o.platforms : NULL, o.np,
                                    o.retries > 0 ? (unsigned)o.retries : 0,
                                    o.retry_ms, &hooks, &failed, why, sizeof(why));
        if (rerr == OM_OK) {
            pulled = false;
        } else {
            printf("prefetch: %s does not run it as its own job (%s%s); pulling through its "
                   "/v2/ instead, where it does not say which blobs it had cached\n",
                   where, why,
                   rerr == OM_ERR_AUTH ? "; give its admin token with --admin-token-file" : "");
            c.knows = false;
        }
    }
    if (pulled) {
        printf("prefetch: %zu image%s for %s through %s\n", o.n, o.n == 1 ? "" : "s", plist,
               where);
        fflush(stdout);
        failed = om_pf_run(&t, items, o.n, platforms, np, tries, retry_ms, &hooks);
    }
    char b[24];
    om_pf_human_bytes(c.bytes, b, sizeof(b));
    if (c.knows)
        printf("prefetch: %zu of %zu image%s done, %zu failed; %zu blobs fetched (%s), %zu "
               "already cached, in %.1fs\n",
               o.n - failed, o.n, o.n == 1 ? "" : "s", failed, c.fetched, b, c.cached,
               (double)(om_now_us() - t0) / 1e6);
    else
        printf("prefetch: %zu of %zu image%s done, %zu failed; %zu blobs pulled (%s: fetched "
               "or already cached, the mirror does not say), in %.1fs\n",
               o.n - failed, o.n, o.n == 1 ? "" : "s", failed, c.fetched + c.cached, b,
               (double)(om_now_us() - t0) / 1e6);
    fflush(stdout);
    for (size_t i = 0; i < o.n; i++)
        if (items[i].state != OM_PF_OK)
            fprintf(stderr, "ocimirror: prefetch failed: %s (%s)\n", items[i].image,
                    items[i].res.error);
    rc = failed ? 1 : 0;
done:
    if (srv != NULL)
        om_server_free(srv);
    if (swapped) {
        free(cfg->listen);
        cfg->listen = saved_listen;
        cfg->tls_cert = saved_cert;
        cfg->tls_key = saved_key;
        cfg->n_prefetch_images = saved_n_images;
    }
    if (curl_ok)
        curl_global_cleanup();
    if (sig_started) {
        atomic_store(&sig.done, true);
        pthread_join(sig_tid, NULL);
    }
    free(items);
    free(o.images);
    free(o.list_buf);
    om_config_free(cfg);
    return rc;
}
