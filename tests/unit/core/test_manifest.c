/* Unit tests for manifest.c: the four manifest media types, platform
 * selection, children, and malformed input (every truncated prefix). */
#include <stdlib.h>
#include <string.h>

#include "core/manifest.h"
#include "test.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static const char docker_manifest[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
    "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"size\":7,"
    "\"digest\":\"" D1 "\"},\"layers\":[{\"mediaType\":\"application/"
    "vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":100,\"digest\":\"" D2 "\"},"
    "{\"size\":5,\"digest\":\"not-a-digest\"},{\"size\":200,\"digest\":\"" D3 "\"}]}";

static const char oci_index[] =
    "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"size\":10,\"digest\":\"" D1 "\",\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
    "{\"size\":11,\"digest\":\"" D2 "\",\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\","
    "\"variant\":\"v8\"}},{\"size\":12,\"digest\":\"" D3 "\",\"artifactType\":\"x/sig\"}]}";

static void test_manifest__docker_schema2_gives_config_and_valid_layers(void)
{
    struct om_manifest m;
    CHECK_EQ_INT(om_manifest_parse(&m, docker_manifest, strlen(docker_manifest), NULL), OM_OK);
    CHECK_EQ_STR(m.media_type, OM_MT_DOCKER_MANIFEST);
    CHECK(!m.is_index);
    CHECK(m.has_config);
    CHECK_EQ_STR(m.config.digest.str, D1);
    CHECK_EQ_INT(m.n_layers, 2);
    CHECK_EQ_INT(m.layers[1].size, 200);
    om_digest ch[8];
    CHECK_EQ_INT(om_manifest_children(&m, ch, 8), 3);
    CHECK_EQ_INT(om_manifest_children(&m, ch, 2), 2);
    om_manifest_free(&m);
}

static void test_manifest__index_without_media_type_is_inferred_and_platforms_found(void)
{
    struct om_manifest m;
    CHECK_EQ_INT(om_manifest_parse(&m, oci_index, strlen(oci_index), "application/json"), OM_OK);
    CHECK_EQ_STR(m.media_type, OM_MT_OCI_INDEX);
    CHECK(m.is_index);
    CHECK_EQ_INT(m.n_manifests, 3);
    const struct om_descriptor *d = om_manifest_platform(&m, "linux/amd64");
    CHECK(d != NULL && strcmp(d->digest.str, D1) == 0);
    d = om_manifest_platform(&m, "linux/arm64");
    CHECK(d != NULL && strcmp(d->digest.str, D2) == 0);
    CHECK(om_manifest_platform(&m, "linux/s390x") == NULL);
    CHECK_EQ_STR(m.manifests[2].artifact_type, "x/sig");
    om_manifest_free(&m);
}

static void test_manifest__specific_content_type_wins_over_the_json(void)
{
    struct om_manifest m;
    CHECK_EQ_INT(om_manifest_parse(&m, oci_index, strlen(oci_index),
                                   OM_MT_DOCKER_LIST "; charset=utf-8"),
                 OM_OK);
    CHECK_EQ_STR(m.media_type, OM_MT_DOCKER_LIST);
    om_manifest_free(&m);
}

static void test_manifest__garbage_and_every_truncated_prefix_fail_cleanly(void)
{
    const char *bad[] = {"", "[]", "null", "{", "\"x\"", "{\"layers\":5}"};
    struct om_manifest m;
    for (size_t i = 0; i < 4; i++) {
        CHECK_EQ_INT(om_manifest_parse(&m, bad[i], strlen(bad[i]), NULL), OM_ERR_INVALID);
        om_manifest_free(&m);
    }
    CHECK_EQ_INT(om_manifest_parse(&m, bad[5], strlen(bad[5]), NULL), OM_OK);
    CHECK_EQ_INT(m.n_layers, 0);
    om_manifest_free(&m);
    for (size_t n = 0; n < strlen(oci_index); n++) {
        char *p = malloc(n ? n : 1);
        memcpy(p, oci_index, n);
        CHECK_EQ_INT(om_manifest_parse(&m, p, n, NULL), OM_ERR_INVALID);
        om_manifest_free(&m);
        free(p);
    }
}

int main(void)
{
    RUN(test_manifest__docker_schema2_gives_config_and_valid_layers);
    RUN(test_manifest__index_without_media_type_is_inferred_and_platforms_found);
    RUN(test_manifest__specific_content_type_wins_over_the_json);
    RUN(test_manifest__garbage_and_every_truncated_prefix_fail_cleanly);
    return test_done();
}
