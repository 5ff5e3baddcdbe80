/* Unit tests for image_config.c: Docker and OCI configs, lenient types,
 * limits, and malformed input (every truncated prefix of a valid config). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/image_config.h"
#include "test.h"

/* What `docker build` writes (abridged), with a label set out of order
 * and a history that has an empty layer. */
static const char docker_config[] =
    "{\"architecture\":\"arm64\",\"variant\":\"v8\",\"os\":\"linux\","
    "\"created\":\"2024-01-02T03:04:05.123456789Z\",\"author\":\"om\","
    "\"config\":{\"User\":\"1000:1000\",\"WorkingDir\":\"/srv\","
    "\"Env\":[\"PATH=/usr/bin:/bin\",\"A=b c\"],"
    "\"Entrypoint\":[\"/docker-entrypoint.sh\"],\"Cmd\":[\"nginx\",\"-g\",\"daemon off;\"],"
    "\"ExposedPorts\":{\"80/tcp\":{}},"
    "\"Labels\":{\"z.last\":\"2\",\"a.first\":\"1\",\"maintainer\":\"\\u4e2d\\u6587\"}},"
    "\"container_config\":{\"Cmd\":[\"/bin/sh\",\"-c\",\"#(nop) build step\"]},"
    "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:aa\",\"sha256:bb\"]},"
    "\"history\":[{\"created\":\"2024-01-01T00:00:00Z\",\"created_by\":\"ADD file:x in /\"},"
    "{\"created\":\"2024-01-02T00:00:00Z\",\"created_by\":\"CMD [\\\"nginx\\\"]\","
    "\"empty_layer\":true,\"comment\":\"buildkit\"},"
    "{\"created_by\":\"RUN apk add\"}]}";

static void test_image_config__docker_config_gives_every_field(void)
{
    struct om_image_config c;
    CHECK_EQ_INT(om_image_config_parse(&c, docker_config, strlen(docker_config)), OM_OK);
    CHECK_EQ_STR(c.os, "linux");
    CHECK_EQ_STR(c.architecture, "arm64");
    CHECK_EQ_STR(c.variant, "v8");
    CHECK_EQ_STR(c.created, "2024-01-02T03:04:05.123456789Z");
    CHECK_EQ_STR(c.author, "om");
    CHECK_EQ_STR(c.user, "1000:1000");
    CHECK_EQ_STR(c.working_dir, "/srv");
    CHECK(c.entrypoint.present);
    CHECK_EQ_INT(c.entrypoint.n, 1);
    CHECK_EQ_STR(c.entrypoint.items[0], "/docker-entrypoint.sh");
    /* Cmd from "config", never from the build container's container_config. */
    CHECK_EQ_INT(c.cmd.n, 3);
    CHECK_EQ_STR(c.cmd.items[2], "daemon off;");
    CHECK_EQ_INT(c.env.n, 2);
    CHECK_EQ_STR(c.env.items[1], "A=b c");
    CHECK_EQ_INT(c.exposed_ports.n, 1);
    CHECK_EQ_STR(c.exposed_ports.items[0], "80/tcp");
    CHECK_EQ_INT(c.n_labels, 3);
    CHECK_EQ_STR(c.labels[0].key, "a.first");
    CHECK_EQ_STR(c.labels[1].key, "maintainer");
    CHECK_EQ_STR(c.labels[1].value, "\xe4\xb8\xad\xe6\x96\x87");
    CHECK_EQ_STR(c.labels[2].key, "z.last");
    CHECK_EQ_INT(c.n_history, 3);
    CHECK(!c.history[0].empty_layer);
    CHECK(c.history[1].empty_layer);
    CHECK_EQ_STR(c.history[1].created_by, "CMD [\"nginx\"]");
    CHECK_EQ_STR(c.history[1].comment, "buildkit");
    CHECK(c.history[2].created == NULL);
    CHECK_EQ_INT(c.n_diff_ids, 2);
    om_image_config_free(&c);
    CHECK(c.os == NULL && c.labels == NULL && c.n_history == 0);
}

static void test_image_config__minimal_oci_config_leaves_the_rest_absent(void)
{
    static const char oci[] = "{\"architecture\":\"amd64\",\"os\":\"linux\","
                              "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
    struct om_image_config c;
    CHECK_EQ_INT(om_image_config_parse(&c, oci, strlen(oci)), OM_OK);
    CHECK_EQ_STR(c.architecture, "amd64");
    CHECK(c.created == NULL);
    CHECK(c.variant == NULL);
    CHECK(!c.entrypoint.present && !c.cmd.present && !c.env.present);
    CHECK_EQ_INT(c.n_labels, 0);
    CHECK_EQ_INT(c.n_history, 0);
    CHECK_EQ_INT(c.n_diff_ids, 0);
    om_image_config_free(&c);
}

/* Wrong types are skipped, not fatal: a viewer shows what it can. */
static void test_image_config__fields_of_the_wrong_type_are_skipped(void)
{
    static const struct {
        const char *json;
        size_t n_cmd, n_env, n_labels, n_history;
        bool cmd_present;
    } rows[] = {
        {"{\"os\":5,\"config\":{\"Cmd\":\"sh\"}}", 0, 0, 0, 0, false},
        {"{\"config\":{\"Cmd\":null,\"Env\":{}}}", 0, 0, 0, 0, false},
        {"{\"config\":{\"Cmd\":[],\"Env\":[1,\"A=1\",null]}}", 0, 1, 0, 0, true},
        {"{\"config\":{\"Labels\":{\"a\":1,\"b\":\"x\"}}}", 0, 0, 1, 0, false},
        {"{\"config\":{\"Labels\":null},\"history\":[1,{},\"x\"]}", 0, 0, 0, 1, false},
        {"{\"config\":[],\"history\":{}}", 0, 0, 0, 0, false},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(rows); i++) {
        struct om_image_config c;
        CHECK_EQ_INT(om_image_config_parse(&c, rows[i].json, strlen(rows[i].json)), OM_OK);
        CHECK_EQ_INT(c.cmd.n, rows[i].n_cmd);
        CHECK_EQ_INT(c.cmd.present, rows[i].cmd_present);
        CHECK_EQ_INT(c.env.n, rows[i].n_env);
        CHECK_EQ_INT(c.n_labels, rows[i].n_labels);
        CHECK_EQ_INT(c.n_history, rows[i].n_history);
        CHECK(c.os == NULL);
        om_image_config_free(&c);
    }
}

static void test_image_config__non_objects_and_every_truncated_prefix_are_invalid(void)
{
    static const char *const bad[] = {"", "[]", "null", "\"x\"", "{", "{\"os\":}", "12"};
    struct om_image_config c;
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(om_image_config_parse(&c, bad[i], strlen(bad[i])), OM_ERR_INVALID);
        om_image_config_free(&c);
    }
    CHECK_EQ_INT(om_image_config_parse(&c, NULL, 0), OM_ERR_INVALID);
    om_image_config_free(&c);
    /* Every proper prefix of the valid config is cut JSON: invalid, and the
     * (heap copy, so ASan sees reads past the end) never read beyond n. */
    size_t len = strlen(docker_config);
    int invalid = 0;
    for (size_t n = 0; n < len; n++) {
        char *p = malloc(n ? n : 1);
        if (p == NULL)
            break;
        memcpy(p, docker_config, n);
        int err = om_image_config_parse(&c, p, n);
        invalid += err == OM_ERR_INVALID;
        om_image_config_free(&c);
        free(p);
    }
    CHECK_EQ_INT(invalid, len);
}

static void test_image_config__limits_answer_toobig(void)
{
    struct om_image_config c;
    /* An Env of MAX+1 entries. */
    size_t n = OM_IMAGE_CONFIG_MAX_ENTRIES + 1, cap = 64 + n * 4, off = 0;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    if (buf == NULL)
        return;
    off += (size_t)snprintf(buf + off, cap - off, "{\"config\":{\"Env\":[");
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s\"\"", i ? "," : "");
    off += (size_t)snprintf(buf + off, cap - off, "]}}");
    CHECK_EQ_INT(om_image_config_parse(&c, buf, off), OM_ERR_TOOBIG);
    om_image_config_free(&c);
    /* Exactly MAX entries is fine: drop the last one. */
    char *last = strrchr(buf, ',');
    memcpy(last, "]}}", 4);
    CHECK_EQ_INT(om_image_config_parse(&c, buf, strlen(buf)), OM_OK);
    CHECK_EQ_INT(c.env.n, OM_IMAGE_CONFIG_MAX_ENTRIES);
    om_image_config_free(&c);
    free(buf);
    /* A document over the size limit is refused before parsing. */
    CHECK_EQ_INT(om_image_config_parse(&c, "{}", (size_t)OM_IMAGE_CONFIG_MAX + 1), OM_ERR_TOOBIG);
    om_image_config_free(&c);
}

int main(void)
{
    RUN(test_image_config__docker_config_gives_every_field);
    RUN(test_image_config__minimal_oci_config_leaves_the_rest_absent);
    RUN(test_image_config__fields_of_the_wrong_type_are_skipped);
    RUN(test_image_config__non_objects_and_every_truncated_prefix_are_invalid);
    RUN(test_image_config__limits_answer_toobig);
    return test_done();
}
