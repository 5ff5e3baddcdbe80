/* test_config_access.c — the access.* and policy.* keys (core/config.h). */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/config.h"

static int parse(const char *yaml, struct om_config **cfg, char *err, size_t errlen)
{
    return om_config_parse(cfg, yaml, strlen(yaml), "t.yaml", err, errlen);
}

static void test_config_access__defaults_are_open(void)
{
    struct om_config *cfg = NULL;
    char err[512] = "";
    CHECK_EQ_INT(parse("listen: \":5000\"\n", &cfg, err, sizeof(err)), OM_OK);
    CHECK(cfg->access_anonymous);
    CHECK(cfg->access_htpasswd_file == NULL);
    CHECK_EQ_INT((int)cfg->n_policy_allow, 0);
    CHECK_EQ_INT((int)cfg->n_policy_deny, 0);
    om_config_free(cfg);
}

static void test_config_access__keys_are_read_and_dumped(void)
{
    struct om_config *cfg = NULL;
    char err[512] = "", *buf = NULL;
    size_t len = 0;
    const char *yaml = "access:\n  anonymous: false\n  htpasswd_file: /etc/pw\n"
                       "policy:\n  allow: [\"docker.io/library/*\", \"registry.k8s.io/**\"]\n"
                       "  deny:\n    - docker.io/library/evil\n";
    CHECK_EQ_INT(parse(yaml, &cfg, err, sizeof(err)), OM_OK);
    if (cfg == NULL)
        return;
    CHECK(!cfg->access_anonymous);
    CHECK_EQ_STR(cfg->access_htpasswd_file, "/etc/pw");
    CHECK_EQ_INT((int)cfg->n_policy_allow, 2);
    CHECK_EQ_STR(cfg->policy_allow[1], "registry.k8s.io/**");
    CHECK_EQ_STR(cfg->policy_deny[0], "docker.io/library/evil");
    FILE *f = open_memstream(&buf, &len);
    om_config_dump(cfg, f);
    fclose(f);
    CHECK(strstr(buf, "access:\n  anonymous: false\n  htpasswd_file: \"/etc/pw\"\n") != NULL);
    CHECK(strstr(buf, "  deny:\n    - \"docker.io/library/evil\"\n") != NULL);
    /* the dump reads back as the same config */
    struct om_config *again = NULL;
    CHECK_EQ_INT(om_config_parse(&again, buf, len, "dump", err, sizeof(err)), OM_OK);
    if (again != NULL) {
        CHECK(!again->access_anonymous);
        CHECK_EQ_INT((int)again->n_policy_allow, 2);
    }
    om_config_free(again);
    free(buf);
    om_config_free(cfg);
}

static void test_config_access__bad_values_name_the_place(void)
{
    static const struct {
        const char *yaml, *want;
    } bad[] = {
        {"access:\n  anonymous: false\n", "needs htpasswd_file"},
        {"access:\n  anonymus: false\n", "anonymus"},
        {"policy:\n  allow: [\"docker.io//x\"]\n", "t.yaml:2:"},
        {"policy:\n  deny:\n    - Docker.io/x\n", "upper-case"},
        {"policy:\n  deny: [\"a/b**\"]\n", "'**'"},
        {"policy:\n  allow: docker.io/x\n", "t.yaml:2:"},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++) {
        struct om_config *cfg = NULL;
        char err[512] = "";
        CHECK_EQ_INT(parse(bad[i].yaml, &cfg, err, sizeof(err)), OM_ERR_INVALID);
        if (strstr(err, bad[i].want) == NULL)
            fprintf(stderr, "case %zu: \"%s\" lacks \"%s\"\n", i, err, bad[i].want);
        CHECK(strstr(err, bad[i].want) != NULL);
        om_config_free(cfg);
    }
}

int main(void)
{
    RUN(test_config_access__defaults_are_open);
    RUN(test_config_access__keys_are_read_and_dumped);
    RUN(test_config_access__bad_values_name_the_place);
    return test_done();
}
