/* test_prefetch.c — the pure parts of prefetch: image references as clients
 * write them, platform strings, the server's own loopback URL, byte
 * counts for humans.  (Pulling is tested end to end: tests/e2e/test_prefetch.py.) */
#include "prefetch/prefetch_int.h"
#include "test.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_prefetch__references_split_into_name_and_tag_or_digest(void)
{
    static const struct {
        const char *in, *name, *ref;   /* name NULL: invalid */
    } cases[] = {
        {"alpine", "alpine", "latest"},
        {"alpine:3.19", "alpine", "3.19"},
        {"library/alpine:3.19", "library/alpine", "3.19"},
        {"docker.io/library/alpine:3.19", "docker.io/library/alpine", "3.19"},
        {"quay.io/coreos/etcd:v3.5.0", "quay.io/coreos/etcd", "v3.5.0"},
        {"registry.k8s.io/pause@sha256:" HEX64, "registry.k8s.io/pause", "sha256:" HEX64},
        {"nginx:1.25@sha256:" HEX64, "nginx", "sha256:" HEX64},
        {"a/b/c/d:Tag_1.x-y", "a/b/c/d", "Tag_1.x-y"},
        {"", NULL, NULL},
        {"Alpine", NULL, NULL},
        {"alpine:", NULL, NULL},
        {"alpine:-x", NULL, NULL},
        {":3.19", NULL, NULL},
        {"localhost:5000/x:1", "localhost:5000/x", "1"},   /* a registry with a port */
        {"registry.local:5000/team/app", "registry.local:5000/team/app", "latest"},
        {"localhost:5000", "localhost", "5000"}, /* as for docker: name "localhost", tag */
        {"localhost:/x", NULL, NULL},
        {"alpine@sha256:abc", NULL, NULL},
        {"alpine@sha512:" HEX64 HEX64, NULL, NULL},
        {"alpine@", NULL, NULL},
        {"/alpine", NULL, NULL},
        {"alpine/", NULL, NULL},
        {"a//b", NULL, NULL},
        {"alpine:3.19 ", NULL, NULL},
        {"alpine:1:2", NULL, NULL},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        char name[OM_NAME_MAX + 1] = "x", ref[OM_DIGEST_MAX + OM_TAG_MAX + 2] = "x";
        int rc = om_prefetch_ref_parse(cases[i].in, name, sizeof(name), ref, sizeof(ref));
        if (cases[i].name == NULL) {
            CHECK_EQ_INT(rc, OM_ERR_INVALID);
            CHECK_EQ_STR(name, "");
            CHECK_EQ_STR(ref, "");
        } else {
            CHECK_EQ_INT(rc, OM_OK);
            CHECK_EQ_STR(name, cases[i].name);
            CHECK_EQ_STR(ref, cases[i].ref);
        }
    }
}

static void test_prefetch__every_truncated_prefix_of_a_reference_parses_or_is_refused_cleanly(void)
{
    static const char *const full[] = {
        "quay.io/coreos/etcd:v3.5.0",
        "registry.k8s.io/pause:3.9@sha256:" HEX64,
    };
    for (size_t f = 0; f < OM_ARRAY_LEN(full); f++) {
        size_t len = strlen(full[f]);
        for (size_t n = 0; n <= len; n++) {
            char in[256], name[OM_NAME_MAX + 1], ref[OM_DIGEST_MAX + OM_TAG_MAX + 2];
            snprintf(in, sizeof(in), "%.*s", (int)n, full[f]);
            int rc = om_prefetch_ref_parse(in, name, sizeof(name), ref, sizeof(ref));
            /* Valid exactly when the prefix ends in a complete component. */
            const char *last_slash = strrchr(in, '/');
            bool in_tag = strchr(last_slash ? last_slash : in, ':') != NULL;
            bool digest_cut = strchr(in, '@') != NULL && n < len;
            bool ends_badly = n == 0 || in[n - 1] == '/' || in[n - 1] == ':' ||
                              (in[n - 1] == '.' && !in_tag) || in[n - 1] == '@' || digest_cut;
            CHECK_EQ_INT(rc, ends_badly ? OM_ERR_INVALID : OM_OK);
            if (rc == OM_OK)
                CHECK(strncmp(in, name, strlen(name)) == 0);
        }
    }
}

static void test_prefetch__small_output_buffers_are_refused_not_overrun(void)
{
    char name[4], ref[64];
    CHECK_EQ_INT(om_prefetch_ref_parse("alpine:3", name, sizeof(name), ref, sizeof(ref)),
                 OM_ERR_INVALID);
    char name2[64], ref2[4];
    CHECK_EQ_INT(om_prefetch_ref_parse("alpine", name2, sizeof(name2), ref2, sizeof(ref2)),
                 OM_ERR_INVALID);
    CHECK_EQ_INT(om_prefetch_ref_parse("a:b", name, sizeof(name), ref2, sizeof(ref2)), OM_OK);
}

static void test_prefetch__platforms_are_os_arch_or_os_arch_variant_in_lowercase(void)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"linux/amd64", true}, {"linux/arm64/v8", true}, {"windows/amd64", true},
        {"linux/arm/v7", true}, {"linux/ppc64le", true}, {"", false}, {"linux", false},
        {"linux/", false}, {"/amd64", false}, {"linux//amd64", false}, {"Linux/AMD64", false},
        {"linux/amd64/v1/x", false}, {"linux/amd 64", false},
        {"linux/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        if (om_prefetch_platform_valid(cases[i].s) != cases[i].ok)
            fprintf(stderr, "platform \"%s\"\n", cases[i].s);
        CHECK(om_prefetch_platform_valid(cases[i].s) == cases[i].ok);
    }
}

static void test_prefetch__the_servers_own_url_replaces_wildcard_hosts_with_loopback(void)
{
    static const struct {
        const char *listen;
        unsigned port;
        bool tls;
        const char *want;           /* NULL: invalid */
    } cases[] = {
        {"0.0.0.0:5000", 5000, false, "http://127.0.0.1:5000"},
        {":5000", 5000, false, "http://127.0.0.1:5000"},
        {"[::]:5000", 5000, true, "https://[::1]:5000"},
        {"127.0.0.1:0", 41234, false, "http://127.0.0.1:41234"},
        {"10.1.2.3:443", 443, true, "https://10.1.2.3:443"},
        {"[fe80::1]:80", 80, false, "http://[fe80::1]:80"},
        {"mirror.local:5000", 5000, false, "http://mirror.local:5000"},
        {"0.0.0.0:5000", 0, false, NULL},
        {"nonsense", 5000, false, NULL},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        char out[OM_PF_BASE_MAX] = "";
        int rc = om_pf_self_base(cases[i].listen, cases[i].port, cases[i].tls, out, sizeof(out));
        CHECK_EQ_INT(rc, cases[i].want ? OM_OK : OM_ERR_INVALID);
        if (cases[i].want)
            CHECK_EQ_STR(out, cases[i].want);
    }
}

static void test_prefetch__byte_counts_read_as_binary_units(void)
{
    static const struct {
        uint64_t n;
        const char *want;
    } cases[] = {
        {0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
        {32ull << 20, "32.0 MiB"}, {5ull << 40, "5.0 TiB"}, {5ull << 50, "5120.0 TiB"},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        char buf[24];
        om_pf_human_bytes(cases[i].n, buf, sizeof(buf));
        CHECK_EQ_STR(buf, cases[i].want);
    }
}

int main(void)
{
    RUN(test_prefetch__references_split_into_name_and_tag_or_digest);
    RUN(test_prefetch__every_truncated_prefix_of_a_reference_parses_or_is_refused_cleanly);
    RUN(test_prefetch__small_output_buffers_are_refused_not_overrun);
    RUN(test_prefetch__platforms_are_os_arch_or_os_arch_variant_in_lowercase);
    RUN(test_prefetch__the_servers_own_url_replaces_wildcard_hosts_with_loopback);
    RUN(test_prefetch__byte_counts_read_as_binary_units);
    return test_done();
}
