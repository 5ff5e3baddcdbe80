/* test_clientcfg.c — the client configuration generator (src/clientcfg.c).
 *
 * The config is built by hand (the default upstreams, as in test_route.c)
 * so these tests pin down the generator alone: which files each kind gets,
 * what they say, that JSON and YAML output parse, and which mirror URLs are
 * refused (including every truncated prefix of valid ones). */
#include <libfyaml.h>
#include <stdlib.h>

#include "core/clientcfg.h"
#include "test.h"

static struct om_config cfg;

static void add_upstream(const char *name, const char *url, bool hub, const char *a0,
                         const char *a1, const char *a2)
{
    struct om_upstream_cfg *u = &cfg.upstreams[cfg.n_upstreams++];
    const char *aliases[] = {a0, a1, a2};
    u->name = (char *)name;
    u->url = (char *)url;
    u->is_docker_hub = hub;
    for (size_t i = 0; i < OM_ARRAY_LEN(aliases); i++)
        if (aliases[i] != NULL)
            u->aliases[u->n_aliases++] = (char *)aliases[i];
}

static void setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    add_upstream("docker.io", "https://registry-1.docker.io", true, "docker.io",
                 "index.docker.io", "registry-1.docker.io");
    add_upstream("registry.k8s.io", "https://registry.k8s.io", false, "k8s.gcr.io", NULL, NULL);
    add_upstream("gcr.io", "https://gcr.io", false, NULL, NULL, NULL);
    add_upstream("quay.io", "https://quay.io", false, NULL, NULL, NULL);
    add_upstream("ghcr.io", "https://ghcr.io", false, NULL, NULL, NULL);
    /* Not a registry host name: gets no file. */
    add_upstream("internal", "http://10.1.2.3:5000", false, NULL, NULL, NULL);
}

static json_t *render(const char *kind, const char *url)
{
    json_t *out = NULL;
    int rc = om_clientcfg_render(kind, url, &cfg, &out);
    CHECK_EQ_INT(rc, OM_OK);
    CHECK(out != NULL);
    return out;
}

static const char *file_path(json_t *doc, size_t i)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(doc, "files"), i),
                                             "path"));
}

static const char *file_content(json_t *doc, size_t i)
{
    const char *s = json_string_value(
        json_object_get(json_array_get(json_object_get(doc, "files"), i), "content"));
    return s ? s : "";
}

static size_t n_files(json_t *doc)
{
    return json_array_size(json_object_get(doc, "files"));
}

static bool has_command(json_t *doc, const char *prefix)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(doc, "commands"), i, v)
        if (strncmp(json_string_value(v), prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

static void test_clientcfg__containerd_gets_one_hosts_toml_per_registry_name_and_alias(void)
{
    setup();
    json_t *doc = render("containerd", "https://mirror.example");
    static const char *const want[] = {"docker.io", "index.docker.io", "registry-1.docker.io",
                                       "registry.k8s.io", "k8s.gcr.io", "gcr.io", "quay.io",
                                       "ghcr.io"};
    CHECK_EQ_INT(n_files(doc), OM_ARRAY_LEN(want));
    for (size_t i = 0; i < OM_ARRAY_LEN(want) && i < n_files(doc); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/etc/containerd/certs.d/%s/hosts.toml", want[i]);
        CHECK_EQ_STR(file_path(doc, i), path);
        CHECK(strstr(file_content(doc, i), "[host.\"https://mirror.example\"]\n"
                                           "  capabilities = [\"pull\", \"resolve\"]\n") != NULL);
    }
    /* The fallback server is the real registry of the upstream. */
    CHECK(strstr(file_content(doc, 0), "\nserver = \"https://registry-1.docker.io\"\n") != NULL);
    CHECK(strstr(file_content(doc, 4), "\nserver = \"https://registry.k8s.io\"\n") != NULL);
    CHECK(has_command(doc, "systemctl restart containerd"));
    CHECK_EQ_STR(json_string_value(json_object_get(doc, "for")), "containerd");
    CHECK_EQ_STR(json_string_value(json_object_get(doc, "mirror")), "https://mirror.example");
    json_decref(doc);
}

static void test_clientcfg__podman_and_crio_get_path_prefixed_mirror_locations(void)
{
    static const char *const kinds[] = {"podman", "crio"};
    for (size_t k = 0; k < OM_ARRAY_LEN(kinds); k++) {
        setup();
        json_t *doc = render(kinds[k], "http://10.0.0.5:5000/");
        CHECK_EQ_INT(n_files(doc), 1);
        CHECK_EQ_STR(file_path(doc, 0), "/etc/containers/registries.conf.d/ocimirror.conf");
        const char *c = file_content(doc, 0);
        CHECK(strstr(c, "[[registry]]\nprefix = \"docker.io\"\nlocation = "
                        "\"registry-1.docker.io\"\n\n[[registry.mirror]]\nlocation = "
                        "\"10.0.0.5:5000/docker.io\"\ninsecure = true\n") != NULL);
        CHECK(strstr(c, "prefix = \"k8s.gcr.io\"\nlocation = \"registry.k8s.io\"\n") != NULL);
        CHECK(strstr(c, "location = \"10.0.0.5:5000/quay.io\"") != NULL);
        /* Docker Hub aliases are normalised to docker.io by containers/image. */
        CHECK(strstr(c, "index.docker.io") == NULL);
        CHECK(strstr(c, "internal") == NULL);
        json_decref(doc);
    }
    setup();
    json_t *doc = render("podman", "https://mirror.example");
    CHECK(strstr(file_content(doc, 0), "insecure") == NULL);
    json_decref(doc);
}

static void test_clientcfg__docker_daemon_json_parses_and_lists_insecure_only_for_http(void)
{
    static const struct {
        const char *url;
        const char *want;
    } cases[] = {
        {"http://10.0.0.5:5000", "{\"registry-mirrors\": [\"http://10.0.0.5:5000\"], "
                                 "\"insecure-registries\": [\"10.0.0.5:5000\"]}"},
        {"https://Mirror.Example/", "{\"registry-mirrors\": [\"https://mirror.example\"]}"},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        setup();
        json_t *doc = render("docker", cases[i].url);
        CHECK_EQ_STR(file_path(doc, 0), "/etc/docker/daemon.json");
        json_t *got = json_loads(file_content(doc, 0), 0, NULL);
        json_t *want = json_loads(cases[i].want, 0, NULL);
        CHECK(got != NULL);
        CHECK(json_equal(got, want));
        CHECK(has_command(doc, "systemctl restart docker"));
        json_decref(got);
        json_decref(want);
        json_decref(doc);
    }
}

static void test_clientcfg__k3s_registries_yaml_parses_with_a_mirror_per_registry(void)
{
    setup();
    json_t *doc = render("k3s", "https://mirror.example:8443");
    CHECK_EQ_STR(file_path(doc, 0), "/etc/rancher/k3s/registries.yaml");
    const char *c = file_content(doc, 0);
    struct fy_document *fyd = fy_document_build_from_string(NULL, c, FY_NT);
    CHECK(fyd != NULL);
    struct fy_node *mirrors = fyd ? fy_node_by_path(fy_document_root(fyd), "/mirrors", FY_NT,
                                                   FYNWF_DONT_FOLLOW)
                                  : NULL;
    CHECK(mirrors != NULL && fy_node_mapping_item_count(mirrors) == 8);
    struct fy_node *ep = fyd ? fy_node_by_path(fy_document_root(fyd),
                                               "/mirrors/\"k8s.gcr.io\"/endpoint/0", FY_NT,
                                               FYNWF_DONT_FOLLOW)
                             : NULL;
    size_t len = 0;
    const char *v = ep ? fy_node_get_scalar(ep, &len) : NULL;
    CHECK(v != NULL && len == strlen("https://mirror.example:8443") &&
          strncmp(v, "https://mirror.example:8443", len) == 0);
    fy_document_destroy(fyd);
    json_decref(doc);
}

static void test_clientcfg__kubeadm_gets_image_repository_and_the_pull_command(void)
{
    setup();
    json_t *doc = render("kubeadm", "https://mirror.example");
    CHECK_EQ_INT(n_files(doc), 1);
    CHECK_EQ_STR(file_path(doc, 0), "kubeadm-config.yaml");
    CHECK(strstr(file_content(doc, 0), "kind: ClusterConfiguration\n"
                                       "imageRepository: \"mirror.example\"\n") != NULL);
    CHECK(has_command(doc, "kubeadm config images pull --image-repository mirror.example"));
    json_decref(doc);
    /* Plain HTTP: containerd must be told, for names under the mirror host. */
    doc = render("kubeadm", "http://10.0.0.5:5000");
    CHECK_EQ_INT(n_files(doc), 2);
    CHECK_EQ_STR(file_path(doc, 1), "/etc/containerd/certs.d/10.0.0.5:5000/hosts.toml");
    CHECK(strstr(file_content(doc, 1), "server = \"http://10.0.0.5:5000\"") != NULL);
    json_decref(doc);
}

static void test_clientcfg__every_kind_has_files_and_commands(void)
{
    setup();
    for (size_t k = 0; om_clientcfg_kinds[k] != NULL; k++) {
        json_t *doc = render(om_clientcfg_kinds[k], "https://m.example");
        CHECK(n_files(doc) > 0);
        CHECK(json_array_size(json_object_get(doc, "commands")) > 0);
        CHECK(json_is_array(json_object_get(doc, "notes")));
        json_decref(doc);
    }
}

static void test_clientcfg__bad_kinds_and_mirror_urls_are_refused(void)
{
    static const char *const bad_urls[] = {
        "", "mirror.example", "ftp://mirror.example", "https://", "http://",
        "https://mirror.example/path", "https://user@mirror.example", "https://m.example?x=1",
        "https://m.example//", "https://-m.example", "https://m\".example", "https://m example",
        "https://m.example\n",
    };
    setup();
    for (size_t i = 0; i < OM_ARRAY_LEN(bad_urls); i++) {
        json_t *out = (json_t *)1;
        CHECK_EQ_INT(om_clientcfg_render("docker", bad_urls[i], &cfg, &out), OM_ERR_INVALID);
        CHECK(out == NULL);
    }
    json_t *out = NULL;
    CHECK_EQ_INT(om_clientcfg_render("rkt", "https://m.example", &cfg, &out), OM_ERR_INVALID);
    CHECK_EQ_INT(om_clientcfg_render(NULL, "https://m.example", &cfg, &out), OM_ERR_INVALID);
    CHECK_EQ_INT(om_clientcfg_render("docker", NULL, &cfg, &out), OM_ERR_INVALID);
    /* Every truncated prefix of valid URLs: the lengths that are valid. */
    static const struct {
        const char *url;
        size_t valid[12];          /* prefix lengths that are valid, 0-terminated */
    } good[] = {
        {"https://m.ex:5000", {9, 10, 11, 12, 14, 15, 16, 17}},
        {"http://[::1]:80/", {12, 14, 15, 16}},
    };
    for (size_t g = 0; g < OM_ARRAY_LEN(good); g++) {
        for (size_t n = 0; n <= strlen(good[g].url); n++) {
            char buf[64];
            bool want = false;
            for (size_t v = 0; good[g].valid[v] != 0; v++)
                want = want || good[g].valid[v] == n;
            snprintf(buf, sizeof(buf), "%.*s", (int)n, good[g].url);
            int rc = om_clientcfg_render("docker", buf, &cfg, &out);
            if ((rc == OM_OK) != want)
                fprintf(stderr, "prefix \"%s\": rc %d\n", buf, rc);
            CHECK_EQ_INT(rc, want ? OM_OK : OM_ERR_INVALID);
            json_decref(out);
            out = NULL;
        }
    }
    static const char *const bad_ports[] = {"http://m:0", "http://m:65536", "http://m:5x",
                                            "http://[::1", "http://[]:5", "http://[g::1]",
                                            "http://m:1:2"};
    for (size_t i = 0; i < OM_ARRAY_LEN(bad_ports); i++)
        CHECK_EQ_INT(om_clientcfg_render("docker", bad_ports[i], &cfg, &out), OM_ERR_INVALID);
}

static void test_clientcfg__strings_from_the_config_are_quoted_not_pasted(void)
{
    setup();
    cfg.upstreams[3].url = (char *)"https://quay.io/\"evil\\";
    json_t *doc = render("containerd", "https://mirror.example");
    CHECK(strstr(file_content(doc, 6), "server = \"https://quay.io/\\\"evil\\\\\"\n") != NULL);
    json_decref(doc);
}

int main(void)
{
    RUN(test_clientcfg__containerd_gets_one_hosts_toml_per_registry_name_and_alias);
    RUN(test_clientcfg__podman_and_crio_get_path_prefixed_mirror_locations);
    RUN(test_clientcfg__docker_daemon_json_parses_and_lists_insecure_only_for_http);
    RUN(test_clientcfg__k3s_registries_yaml_parses_with_a_mirror_per_registry);
    RUN(test_clientcfg__kubeadm_gets_image_repository_and_the_pull_command);
    RUN(test_clientcfg__every_kind_has_files_and_commands);
    RUN(test_clientcfg__bad_kinds_and_mirror_urls_are_refused);
    RUN(test_clientcfg__strings_from_the_config_are_quoted_not_pasted);
    return test_done();
}
