/* main.c — the command line: serve, check-config, version.
 *
 *   ocimirror serve [-c FILE] [--listen ADDR] [--storage DIR]
 *   ocimirror check-config -c FILE
 *   ocimirror fsck | gc | prefetch | client-config ...  (their own --help)
 *   ocimirror version
 *
 * Signals are blocked in every thread before any is started, and taken
 * synchronously with sigwait() by the main thread (server/server.c), so no
 * handler ever runs in a libmicrohttpd, curl or job thread.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "server/sdnotify.h"
#include "server/server.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ocimirror COMMAND [OPTIONS]       (ocimirror COMMAND --help for more)\n"
            "\n"
            "  serve [-c FILE] [--listen ADDR] [--storage DIR]\n"
            "        run the mirror; with no -c, on the embedded defaults: listen\n"
            "        0.0.0.0:5000, storage ./ocimirror-data, upstreams docker.io,\n"
            "        registry.k8s.io, gcr.io, quay.io, ghcr.io\n"
            "  check-config -c FILE [--listen ADDR] [--storage DIR]\n"
            "        validate the config; print the effective config, secrets redacted\n"
            "  client-config --for docker|containerd|crio|podman|k3s|kubeadm\n"
            "        [--mirror URL] [-c FILE] [--out DIR] [--json]\n"
            "        print (or write) the files that point a client at this mirror\n"
            "  prefetch [-c FILE] [--platform OS/ARCH]... [--mirror URL] [--ca-file FILE]\n"
            "        [--admin-token-file FILE] [--storage DIR] [--retries N]\n"
            "        [--retry-interval DUR] [-v] IMAGE... | -f LIST\n"
            "        pull images through the mirror so that it caches them\n"
            "  gc [-c FILE] [--storage DIR] [--dry-run] [--ingest-age DURATION]\n"
            "        apply the storage quota now; remove orphans and stale downloads\n"
            "  fsck [-c FILE] [--storage DIR] [--repair] [--json] [--ingest-age SECONDS]\n"
            "        verify (and repair) the storage\n"
            "  version | help\n"
            "\n"
            "Options of serve and check-config:\n"
            "  -c, --config FILE   the YAML config (docs/ocimirror.example.yaml)\n"
            "  --listen ADDR       HOST:PORT, [IPv6]:PORT or :PORT (overrides listen)\n"
            "  --storage DIR       the storage directory (overrides storage.path)\n"
            "  -h, --help          this text\n");
}

struct args {
    const char *config;
    const char *listen;
    const char *storage;
};

static int parse_args(int argc, char **argv, int first, struct args *a)
{
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        const char **slot = NULL;
        if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0)
            slot = &a->config;
        else if (strcmp(arg, "--listen") == 0)
            slot = &a->listen;
        else if (strcmp(arg, "--storage") == 0)
            slot = &a->storage;
        else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (slot == NULL || i + 1 >= argc) {
            fprintf(stderr, "ocimirror: unexpected argument '%s'\n", arg);
            usage(stderr);
            return 2;
        }
        *slot = argv[++i];
    }
    return 0;
}

static int load_config(const struct args *a, struct om_config **cfg)
{
    return om_cli_load_config(a->config, a->listen, a->storage, cfg);
}

static int cmd_serve(const struct args *a)
{
    struct om_config *cfg = NULL;
    int rc = load_config(a, &cfg);
    if (rc != 0)
        return rc;
    om_log_setup(cfg->log_level, cfg->log_format);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "ocimirror: libcurl initialisation failed\n");
        om_config_free(cfg);
        return 1;
    }
    struct om_server *srv = NULL;
    rc = om_server_start(&srv, cfg);
    if (rc == OM_OK) {
        om_sd_ready(srv);             /* systemd READY=1 + watchdog (sdnotify.h) */
        om_server_run_until_signal(srv);
        om_sd_shutdown();             /* join the watchdog thread */
    }
    curl_global_cleanup();
    om_config_free(cfg);
    return rc == OM_OK ? 0 : 1;
}

static int cmd_check_config(const struct args *a)
{
    struct om_config *cfg = NULL;
    int rc = load_config(a, &cfg);
    if (rc != 0)
        return rc;
    /* the htpasswd file is read by the server at start: check it now too */
    struct om_auth *auth = NULL;
    char err[512];
    if (cfg->access_htpasswd_file != NULL &&
        (om_auth_new(&auth) != OM_OK ||
         om_auth_configure(auth, cfg->access_anonymous, cfg->access_htpasswd_file, err,
                           sizeof(err)) != OM_OK)) {
        fprintf(stderr, "ocimirror: %s: access: %s\n", cfg->source,
                auth != NULL ? err : "out of memory");
        om_auth_free(auth);
        om_config_free(cfg);
        return 1;
    }
    om_auth_free(auth);
    om_config_dump(cfg, stdout);
    om_config_free(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    struct args a = {0};
    const char *cmd = argv[1];
    /* Subcommands with options of their own parse them themselves. */
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } subcommands[] = {
        {"fsck", om_cmd_fsck},
        {"gc", om_cmd_gc},
        {"prefetch", om_cmd_prefetch},
        {"client-config", om_cmd_client_config},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(subcommands); i++)
        if (strcmp(cmd, subcommands[i].name) == 0)
            return subcommands[i].fn(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("ocimirror %s (libmicrohttpd %s, %s)\n", OM_VERSION, MHD_get_version(),
               curl_version());
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    int rc = parse_args(argc, argv, 2, &a);
    if (rc != 0)
        return rc;
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(&a);
    if (strcmp(cmd, "check-config") == 0) {
        if (a.config == NULL) {
            fprintf(stderr, "ocimirror: check-config needs -c FILE\n");
            return 2;
        }
        return cmd_check_config(&a);
    }
    fprintf(stderr, "ocimirror: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
