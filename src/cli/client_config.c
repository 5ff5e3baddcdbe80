/* client_config.c — `ocimirror client-config`: print or write the files
 * that point a client at this mirror (core/clientcfg.h renders them; the
 * admin API's GET /api/v1/client-config serves the same). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/clientcfg.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ocimirror client-config --for docker|containerd|crio|podman|k3s|kubeadm\n"
            "                               [--mirror URL] [-c FILE] [--out DIR] [--json]\n"
            "\n"
            "Prints the configuration that points a client at this mirror.  URL is how\n"
            "clients reach the mirror (http(s)://HOST[:PORT]); default: public_url from\n"
            "the config.  --out DIR writes each file under DIR at its path (--out / puts\n"
            "them in place); --json prints {\"for\",\"files\",\"commands\",\"notes\"}.\n");
}

/* mkdir -p for the directories of path. */
static int make_parents(char *path)
{
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

/* Write content to DIR/path atomically (temp file + rename). */
static int write_file(const char *dir, const char *path, const char *content)
{
    char full[4096], tmp[4200];
    int fd = -1, rc = -1;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    const char *rel = path[0] == '/' ? path + 1 : path;
    if (strstr(path, "..") != NULL ||
        snprintf(full, sizeof(full), "%.*s/%s", (int)dl, dir, rel) >= (int)sizeof(full))
        goto done;
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", full, (long)getpid());
    if (make_parents(full) != 0)
        goto done;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t len = strlen(content), off = 0;
    while (fd >= 0 && off < len) {
        ssize_t w = write(fd, content + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (fd >= 0 && off == len && fsync(fd) == 0 && close(fd) == 0) {
        fd = -1;
        rc = rename(tmp, full);
    }
    if (rc != 0)
        unlink(tmp);
    else
        printf("wrote %s\n", full);
done:
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        fprintf(stderr, "ocimirror: client-config: cannot write %s/%s: %s\n",
                dir, rel, strerror(errno));
    return rc;
}

int om_cmd_client_config(int argc, char **argv)
{
    const char *kind = NULL, *mirror = NULL, *config = NULL, *outdir = NULL;
    bool as_json = false;
    int rc = 2;
    struct om_config *cfg = NULL;
    json_t *res = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            as_json = true;
            continue;
        } else if (strcmp(a, "--for") == 0) {
            slot = &kind;
        } else if (strcmp(a, "--mirror") == 0) {
            slot = &mirror;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            slot = &config;
        } else if (strcmp(a, "--out") == 0) {
            slot = &outdir;
        }
        if (slot == NULL || i + 1 >= argc) {
            fprintf(stderr, "ocimirror: client-config: unexpected argument '%s'\n", a);
            usage(stderr);
            goto done;
        }
        *slot = argv[++i];
    }
    if (kind == NULL) {
        fprintf(stderr, "ocimirror: client-config: --for is required\n");
        usage(stderr);
        goto done;
    }
    if (om_cli_load_config(config, NULL, NULL, &cfg) != 0) {
        rc = 1;
        goto done;
    }
    if (mirror == NULL)
        mirror = cfg->public_url;
    if (mirror == NULL) {
        fprintf(stderr, "ocimirror: client-config: give --mirror URL (or set public_url in "
                        "the config)\n");
        goto done;
    }
    int err = om_clientcfg_render(kind, mirror, cfg, &res);
    if (err == OM_ERR_INVALID) {
        fprintf(stderr, "ocimirror: client-config: unknown --for '%s' or bad mirror URL '%s' "
                        "(want http(s)://HOST[:PORT])\n", kind, mirror);
        usage(stderr);
        goto done;
    }
    rc = 1;
    if (err != OM_OK) {
        fprintf(stderr, "ocimirror: client-config: %s\n", om_strerror(err));
        goto done;
    }
    rc = 0;
    size_t i;
    json_t *v;
    if (as_json) {
        if (json_dumpf(res, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
            rc = 1;
        putchar('\n');
    } else {
        json_array_foreach(json_object_get(res, "files"), i, v) {
            const char *path = json_string_value(json_object_get(v, "path"));
            const char *content = json_string_value(json_object_get(v, "content"));
            if (outdir != NULL) {
                if (write_file(outdir, path, content) != 0)
                    rc = 1;
            } else {
                printf("%s# ---- %s ----\n%s", i ? "\n" : "", path, content);
            }
        }
    }
    if (!as_json) {
        json_array_foreach(json_object_get(res, "notes"), i, v)
            printf("%s# note: %s\n", i == 0 ? "\n" : "", json_string_value(v));
        json_array_foreach(json_object_get(res, "commands"), i, v)
            printf("%s%s\n", i == 0 ? "\n# then run:\n" : "", json_string_value(v));
    }
done:
    json_decref(res);
    om_config_free(cfg);
    return rc;
}
