/* clientcfg.c — ready-to-use configuration that points each kind of client
 * at this mirror, generated from the config's upstreams (clientcfg.h).
 *
 * What each client needs (PROTOCOL.md, "How each client reaches a mirror"):
 *   containerd  certs.d/<registry>/hosts.toml for every upstream name and
 *               alias: `server` is the real registry (the fallback), the
 *               mirror is a [host] with pull+resolve.  containerd adds
 *               ?ns=<registry>, which the mirror routes by.
 *   crio/podman a registries.conf drop-in: for each registry a prefix whose
 *               mirror location is path-prefixed, MIRROR/<registry>, so the
 *               mirror sees /v2/<registry>/<repo>/... and routes by it.
 *   docker      daemon.json registry-mirrors (Docker Hub images only; Docker
 *               needs the mirror at the root of its host) and, for plain
 *               HTTP, insecure-registries.
 *   k3s         registries.yaml mirrors (containerd underneath: ns again).
 *   kubeadm     ClusterConfiguration.imageRepository = MIRROR host (no path:
 *               the mirror's default rewrite sends `coredns` to
 *               registry.k8s.io/coredns/coredns, and search order does the
 *               rest), plus `kubeadm config images pull --image-repository`.
 * Every file starts with a comment saying what generated it, for which
 * mirror, except daemon.json (JSON has no comments).
 *
 * Strings that reach a file are either validated here (the mirror's host,
 * registry names used as directory names) or quoted with escapes valid in
 * TOML basic strings, YAML double-quoted scalars and JSON alike.
 * Output is bounded (OUT_MAX per file).
 */
#include "core/clientcfg.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_MAX (256u * 1024)          /* one generated file */
#define HOST_MAX 255                   /* host[:port] of the mirror */
#define MAX_REGISTRIES (OM_MAX_UPSTREAMS * (OM_MAX_ALIASES + 1))
#define REG_NAME_MAX 255

const char *const om_clientcfg_kinds[] = {"docker", "containerd", "crio", "podman", "k3s",
                                          "kubeadm", NULL};

/* ---- a bounded string builder ---------------------------------------- */

struct sb {
    char *p;                           /* owned, NUL-terminated */
    size_t len, cap;
    bool err;                          /* allocation failed or over OUT_MAX */
};

static void sb_add(struct sb *b, const char *s, size_t n)
{
    if (b->err)
        return;
    if (b->len + n + 1 > OUT_MAX) {
        b->err = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->err = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        b->err = true;
    else
        sb_add(b, buf, (size_t)n);
}

/* "s" with \" \\ and \uXXXX escapes: a valid TOML basic string, YAML
 * double-quoted scalar and JSON string. */
static void sb_quote(struct sb *b, const char *s)
{
    sb_add(b, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_add(b, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_add(b, (const char *)&c, 1);
        }
    }
    sb_add(b, "\"", 1);
}

/* ---- inputs ------------------------------------------------------------ */

struct mirror {
    char url[HOST_MAX + 16];           /* "https://mirror.example:5000" */
    char host[HOST_MAX + 1];           /* "mirror.example:5000" */
    bool http;                         /* plain HTTP */
};

/* HOST[:PORT], HOST a DNS name, an IPv4 address or [IPv6], PORT 1..65535. */
static bool host_port_valid(const char *h)
{
    const char *rest;
    if (h[0] == '[') {
        rest = strchr(h, ']');
        if (rest == NULL || rest == h + 1)
            return false;
        for (const char *p = h + 1; p < rest; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return false;
        rest++;
    } else {
        size_t n = strcspn(h, ":");
        if (n == 0 || h[0] == '.' || h[0] == '-')
            return false;
        for (size_t i = 0; i < n; i++)
            if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-')
                return false;
        rest = h + n;
    }
    if (*rest == '\0')
        return true;
    if (*rest != ':' || strlen(rest + 1) == 0 || strlen(rest + 1) > 5)
        return false;
    unsigned long port = 0;
    for (const char *p = rest + 1; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    return port >= 1 && port <= 65535;
}

/* http(s)://HOST[:PORT][/] → m. */
static int parse_mirror(const char *url, struct mirror *m)
{
    const char *h = NULL;
    if (url == NULL)
        return OM_ERR_INVALID;
    if (strncmp(url, "https://", 8) == 0)
        h = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        h = url + 7, m->http = true;
    else
        return OM_ERR_INVALID;
    size_t n = strnlen(h, HOST_MAX + 2);
    if (n > 0 && h[n - 1] == '/')
        n--;
    if (n == 0 || n > HOST_MAX)
        return OM_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        m->host[i] = (char)tolower((unsigned char)h[i]);
    m->host[n] = '\0';
    if (!host_port_valid(m->host))
        return OM_ERR_INVALID;
    snprintf(m->url, sizeof(m->url), "%s://%s", m->http ? "http" : "https", m->host);
    return OM_OK;
}

struct registry {
    char name[REG_NAME_MAX + 1];       /* "docker.io", lower case */
    const struct om_upstream_cfg *up;  /* the upstream serving it */
    bool alias;                        /* an alias, not the upstream's name */
};

/* A registry host clients write in image names: [a-z0-9.-] with a dot, or
 * with a port.  An upstream called "hub" is not one. */
static bool registry_like(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REG_NAME_MAX || (strchr(s, '.') == NULL && strchr(s, ':') == NULL))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-' || s[i] == ':'))
            return false;
    return s[0] != '.' && s[0] != '-';
}

static void add_registry(struct registry *r, size_t *n, const char *name,
                         const struct om_upstream_cfg *up, bool alias)
{
    char low[REG_NAME_MAX + 1];
    if (!registry_like(name) || *n >= MAX_REGISTRIES)
        return;
    size_t l = strlen(name);
    for (size_t i = 0; i <= l; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < *n; i++)
        if (strcmp(r[i].name, low) == 0)
            return;
    memcpy(r[*n].name, low, l + 1);
    r[*n].up = up;
    r[*n].alias = alias;
    (*n)++;
}

/* Every registry name clients may write for the config's upstreams: each
 * upstream's name, then its aliases. */
static size_t registries(const struct om_config *cfg, struct registry *r)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct om_upstream_cfg *u = &cfg->upstreams[i];
        add_registry(r, &n, u->name, u, false);
        for (size_t a = 0; a < u->n_aliases; a++)
            add_registry(r, &n, u->aliases[a], u, true);
    }
    return n;
}

/* host[:port] of an upstream URL ("https://registry-1.docker.io/" →
 * "registry-1.docker.io"). */
static void url_host(const char *url, char *out, size_t outsz)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "/?#");
    snprintf(out, outsz, "%.*s", (int)n, p);
}

/* ---- the generators ------------------------------------------------------ */

struct gen {
    const struct om_config *cfg;
    struct mirror m;
    struct registry *regs;
    size_t n_regs;
    json_t *files, *commands, *notes;  /* borrowed from the result object */
    json_t *note_codes;                /* the notes as {"code","values"}, for the UI */
    int err;
};

static void header(struct sb *b, const struct gen *g, const char *what)
{
    sb_printf(b, "# Generated by `ocimirror client-config`: %s through the mirror at %s.\n",
              what, g->m.url);
}

static void add_file(struct gen *g, const char *path, struct sb *b)
{
    if (g->err != OM_OK)
        return;
    if (b->err) {
        g->err = b->len + 1 > OUT_MAX ? OM_ERR_TOOBIG : OM_ERR_NOMEM;
        return;
    }
    json_t *f = json_pack("{s:s, s:s}", "path", path, "content", b->p ? b->p : "");
    if (f == NULL || json_array_append_new(g->files, f) != 0)
        g->err = OM_ERR_NOMEM;
}

static void add_str(struct gen *g, json_t *arr, const char *s)
{
    if (g->err == OM_OK && json_array_append_new(arr, json_string(s)) != 0)
        g->err = OM_ERR_NOMEM;
}

static void add_strf(struct gen *g, json_t *arr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_strf(struct gen *g, json_t *arr, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    add_str(g, arr, buf);
}

/* A note: its English text in "notes", and the same as a code (with the
 * mirror's host when the text names it) in "note_codes", which the web UI
 * renders in the reader's language. */
static void add_note(struct gen *g, const char *code, bool with_host, const char *text)
{
    add_str(g, g->notes, text);
    json_t *n = json_pack("{s:s, s:{}}", "code", code, "values");
    if (n != NULL && with_host)
        json_object_set_new(json_object_get(n, "values"), "host", json_string(g->m.host));
    if (g->err == OM_OK && (n == NULL || json_array_append_new(g->note_codes, n) != 0))
        g->err = OM_ERR_NOMEM;
}

static void hosts_toml(struct gen *g, const char *registry, const char *server)
{
    struct sb b = {0};
    char what[REG_NAME_MAX + 32], path[REG_NAME_MAX + 64];
    snprintf(what, sizeof(what), "%s images", registry);
    header(&b, g, what);
    sb_printf(&b, "# When the mirror fails, containerd falls back to the registry itself.\n");
    sb_add(&b, "server = ", 9);
    sb_quote(&b, server);
    sb_printf(&b, "\n\n[host.");
    sb_quote(&b, g->m.url);
    sb_printf(&b, "]\n  capabilities = [\"pull\", \"resolve\"]\n");
    snprintf(path, sizeof(path), "/etc/containerd/certs.d/%s/hosts.toml", registry);
    add_file(g, path, &b);
    free(b.p);
}

static void gen_containerd(struct gen *g)
{
    for (size_t i = 0; i < g->n_regs; i++)
        hosts_toml(g, g->regs[i].name, g->regs[i].up->url);
    add_note(g, "containerd_config_path", false,
             "containerd reads these files when its registry config_path is set: "
                         "in /etc/containerd/config.toml (version 2), under "
                         "[plugins.\"io.containerd.grpc.v1.cri\".registry], set "
                         "config_path = \"/etc/containerd/certs.d\".");
    if (!g->m.http)
        add_note(g, "containerd_private_ca", false,
                 "If the mirror's certificate is from a private CA, add "
                             "ca = \"/path/to/ca.crt\" under each [host.\"...\"] table.");
    add_str(g, g->commands, "systemctl restart containerd");
    add_str(g, g->commands,
            "ctr image pull --hosts-dir /etc/containerd/certs.d docker.io/library/alpine:latest");
}

/* CRI-O and podman read the same registries.conf format (containers/image). */
static void gen_registries_conf(struct gen *g, const char *client)
{
    struct sb b = {0};
    char what[64];
    snprintf(what, sizeof(what), "%s pulls", client);
    header(&b, g, what);
    sb_printf(&b, "# The mirror location carries the registry as a path prefix, so the mirror\n"
                  "# knows which upstream a name belongs to.  The registry itself stays the\n"
                  "# location: the fallback when the mirror fails.\n");
    for (size_t i = 0; i < g->n_regs; i++) {
        const struct registry *r = &g->regs[i];
        /* containers/image rewrites index.docker.io to docker.io before it
         * looks prefixes up, so Docker Hub aliases would never match. */
        if (r->alias && r->up->is_docker_hub)
            continue;
        char loc[REG_NAME_MAX + 1], mloc[HOST_MAX + REG_NAME_MAX + 2];
        url_host(r->up->url, loc, sizeof(loc));
        snprintf(mloc, sizeof(mloc), "%s/%s", g->m.host, r->name);
        sb_printf(&b, "\n[[registry]]\nprefix = ");
        sb_quote(&b, r->name);
        sb_printf(&b, "\nlocation = ");
        sb_quote(&b, loc);
        if (strncmp(r->up->url, "http://", 7) == 0)
            sb_printf(&b, "\ninsecure = true");
        sb_printf(&b, "\n\n[[registry.mirror]]\nlocation = ");
        sb_quote(&b, mloc);
        if (g->m.http)
            sb_printf(&b, "\ninsecure = true");
        sb_add(&b, "\n", 1);
    }
    add_file(g, "/etc/containers/registries.conf.d/ocimirror.conf", &b);
    free(b.p);
}

static void gen_crio(struct gen *g)
{
    gen_registries_conf(g, "CRI-O");
    add_note(g, "crio_dropin", false,
             "CRI-O reads /etc/containers/registries.conf.d/*.conf after "
                         "registries.conf; a [[registry]] with the same prefix in "
                         "registries.conf is replaced by this one.");
    add_str(g, g->commands, "systemctl reload crio");
    add_str(g, g->commands, "crictl pull docker.io/library/alpine:latest");
}

static void gen_podman(struct gen *g)
{
    gen_registries_conf(g, "podman");
    add_note(g, "podman_rootless", false,
             "For rootless podman, put the file in "
                         "~/.config/containers/registries.conf.d/ instead.");
    add_note(g, "podman_qualified", false,
             "Use fully qualified names (docker.io/library/alpine): the mirror is "
                         "chosen by the registry prefix.");
    add_str(g, g->commands, "podman pull docker.io/library/alpine:latest");
}

static void gen_docker(struct gen *g)
{
    json_t *doc = json_pack("{s:[s]}", "registry-mirrors", g->m.url);
    if (doc != NULL && g->m.http)
        json_object_set_new(doc, "insecure-registries", json_pack("[s]", g->m.host));
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    struct sb b = {0};
    if (text == NULL)
        b.err = true;
    else
        sb_printf(&b, "%s\n", text);
    add_file(g, "/etc/docker/daemon.json", &b);
    free(b.p);
    free(text);
    json_decref(doc);
    add_note(g, "docker_merge", false,
             "Merge these keys into an existing /etc/docker/daemon.json instead of "
                         "replacing it.");
    char note[1024];
    snprintf(note, sizeof(note), "Docker sends only Docker Hub images to registry-mirrors.  Pull "
                                 "images of other registries by the mirror's name, e.g. docker "
                                 "pull %s/quay.io/coreos/etcd:v3.5.0 (or use Docker's containerd "
                                 "image store with the containerd files).", g->m.host);
    add_note(g, "docker_hub_only", true, note);
    add_str(g, g->commands, "systemctl restart docker");
    add_str(g, g->commands, "docker pull alpine:latest");
}

static void gen_k3s(struct gen *g)
{
    struct sb b = {0};
    header(&b, g, "k3s (containerd) pulls");
    sb_printf(&b, "# k3s falls back to each registry itself when the mirror fails.\n"
                  "mirrors:\n");
    for (size_t i = 0; i < g->n_regs; i++) {
        sb_add(&b, "  ", 2);
        sb_quote(&b, g->regs[i].name);
        sb_printf(&b, ":\n    endpoint:\n      - ");
        sb_quote(&b, g->m.url);
        sb_add(&b, "\n", 1);
    }
    add_file(g, "/etc/rancher/k3s/registries.yaml", &b);
    free(b.p);
    add_note(g, "k3s_every_node", false, "Copy the file to every node (server and agents).");
    add_str(g, g->commands, "systemctl restart k3s        # on agents: systemctl restart k3s-agent");
}

static void gen_kubeadm(struct gen *g)
{
    struct sb b = {0};
    header(&b, g, "kubeadm's control-plane images");
    sb_printf(&b, "# Merge imageRepository into your ClusterConfiguration; the mirror maps\n"
                  "# kube-apiserver, etcd, pause ... to registry.k8s.io and coredns to\n"
                  "# registry.k8s.io/coredns/coredns.  (kubeadm >= 1.31 also reads\n"
                  "# kubeadm.k8s.io/v1beta4.)\n"
                  "apiVersion: kubeadm.k8s.io/v1beta3\n"
                  "kind: ClusterConfiguration\n"
                  "imageRepository: ");
    sb_quote(&b, g->m.host);
    sb_add(&b, "\n", 1);
    add_file(g, "kubeadm-config.yaml", &b);
    free(b.p);
    if (g->m.http) {
        /* The kubelet pulls HOST/kube-apiserver through containerd, which
         * needs to be told the mirror speaks plain HTTP. */
        char path[HOST_MAX + 64];
        struct sb h = {0};
        header(&h, g, "images named after the mirror itself");
        sb_add(&h, "server = ", 9);
        sb_quote(&h, g->m.url);
        sb_printf(&h, "\n\n[host.");
        sb_quote(&h, g->m.url);
        sb_printf(&h, "]\n  capabilities = [\"pull\", \"resolve\"]\n");
        snprintf(path, sizeof(path), "/etc/containerd/certs.d/%s/hosts.toml", g->m.host);
        add_file(g, path, &h);
        free(h.p);
        add_note(g, "kubeadm_plain_http", false,
                 "The mirror speaks plain HTTP: the containerd hosts.toml above "
                             "lets the kubelet pull from it (containerd's config_path must be "
                             "/etc/containerd/certs.d).");
    }
    char text[1024];
    snprintf(text, sizeof(text), "Set the sandbox (pause) image to the same repository: "
                                 "containerd sandbox_image = \"%s/pause:3.9\" (or use the "
                                 "containerd files for registry.k8s.io).", g->m.host);
    add_note(g, "kubeadm_sandbox", true, text);
    add_strf(g, g->commands, "kubeadm config images pull --image-repository %s", g->m.host);
    add_str(g, g->commands, "kubeadm init --config kubeadm-config.yaml");
}

int om_clientcfg_render(const char *kind, const char *mirror_url, const struct om_config *cfg,
                        json_t **out)
{
    static const struct {
        const char *kind;
        void (*fn)(struct gen *);
    } gens[] = {
        {"docker", gen_docker}, {"containerd", gen_containerd}, {"crio", gen_crio},
        {"podman", gen_podman}, {"k3s", gen_k3s},               {"kubeadm", gen_kubeadm},
    };
    struct gen g = {.cfg = cfg, .err = OM_ERR_INVALID};
    json_t *res = NULL;
    *out = NULL;
    size_t k = 0;
    while (k < OM_ARRAY_LEN(gens) && (kind == NULL || strcmp(gens[k].kind, kind) != 0))
        k++;
    if (k == OM_ARRAY_LEN(gens) || cfg == NULL || parse_mirror(mirror_url, &g.m) != OM_OK)
        goto done;
    g.err = OM_ERR_NOMEM;
    g.regs = calloc(MAX_REGISTRIES, sizeof(*g.regs));
    res = json_pack("{s:s, s:s, s:[], s:[], s:[], s:[]}", "for", kind, "mirror", g.m.url, "files",
                    "commands", "notes", "note_codes");
    if (g.regs == NULL || res == NULL)
        goto done;
    g.files = json_object_get(res, "files");
    g.commands = json_object_get(res, "commands");
    g.notes = json_object_get(res, "notes");
    g.note_codes = json_object_get(res, "note_codes");
    g.n_regs = registries(cfg, g.regs);
    g.err = OM_OK;
    gens[k].fn(&g);
done:
    if (g.err == OM_OK) {
        *out = res;
        res = NULL;
    }
    json_decref(res);
    free(g.regs);
    return g.err;
}
