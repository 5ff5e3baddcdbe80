/* test_policy.c — policy.allow / policy.deny patterns (core/policy.h). */
#include "test.h"

#include "core/om.h"
#include "core/policy.h"

static void test_policy__star_is_one_component_and_globstar_any(void)
{
    CHECK(om_policy_match("docker.io/library/*", "docker.io/library/nginx"));
    CHECK(!om_policy_match("docker.io/library/*", "docker.io/library/a/b"));
    CHECK(!om_policy_match("docker.io/library/*", "docker.io/library"));
    CHECK(om_policy_match("registry.k8s.io/**", "registry.k8s.io/pause"));
    CHECK(om_policy_match("registry.k8s.io/**", "registry.k8s.io/a/b/c"));
    CHECK(om_policy_match("registry.k8s.io/**", "registry.k8s.io"));
    CHECK(!om_policy_match("registry.k8s.io/**", "registry.k8s.iox/pause"));
    CHECK(om_policy_match("a/**/b", "a/b"));
    CHECK(om_policy_match("a/**/b", "a/x/y/b"));
    CHECK(!om_policy_match("a/**/b", "a/x/y/c"));
    CHECK(om_policy_match("**", "quay.io/x"));
    CHECK(om_policy_match("docker.io/library/ng*", "docker.io/library/nginx"));
    CHECK(!om_policy_match("docker.io/library/ng*", "docker.io/library/redis"));
    CHECK(om_policy_match("*/library/*", "docker.io/library/redis"));
    CHECK(om_policy_match("localhost:5000/**", "localhost:5000/team/app"));
}

static void test_policy__bad_patterns_are_refused_with_a_reason(void)
{
    static const char *const bad[] = {"", "/a", "a/", "a//b", "A/b", "a/***", "a**/b", "a b",
                                      "a/b?", "docker.io/lib**"};
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++) {
        const char *why = om_policy_pattern_why(bad[i], strlen(bad[i]));
        CHECK(why != NULL);
        struct om_policy *p = NULL;
        CHECK_EQ_INT(om_policy_new(&p, &bad[i], 1, NULL, 0), OM_ERR_INVALID);
        CHECK(p == NULL);
    }
    CHECK(om_policy_pattern_why("docker.io/**", 12) == NULL);
    CHECK(om_policy_pattern_why("*a*b*", 5) == NULL);
}

static void test_policy__deny_wins_and_empty_allow_allows_all(void)
{
    const char *allow[] = {"docker.io/library/*", "quay.io/prometheus/*"};
    const char *deny[] = {"docker.io/library/evil", "docker.io/evil/**"};
    const char *rule = NULL;
    char msg[600];
    struct om_policy *p = NULL;

    CHECK_EQ_INT(om_policy_new(&p, allow, 2, deny, 2), OM_OK);
    CHECK(om_policy_active(p));
    CHECK_EQ_INT(om_policy_check(p, "docker.io/library/nginx", &rule), OM_POLICY_ALLOWED);
    CHECK_EQ_STR(rule, "docker.io/library/*");
    CHECK_EQ_INT(om_policy_check(p, "docker.io/library/evil", &rule), OM_POLICY_DENIED);
    CHECK_EQ_STR(rule, "docker.io/library/evil");
    CHECK_EQ_STR(om_policy_explain(OM_POLICY_DENIED, rule, msg, sizeof(msg)),
                 "denied by policy.deny \"docker.io/library/evil\"");
    CHECK_EQ_INT(om_policy_check(p, "docker.io/evil/x/y", &rule), OM_POLICY_DENIED);
    CHECK_EQ_INT(om_policy_check(p, "ghcr.io/a/b", &rule), OM_POLICY_NOT_ALLOWED);
    CHECK(rule == NULL);
    CHECK_EQ_STR(om_policy_explain(OM_POLICY_NOT_ALLOWED, rule, msg, sizeof(msg)),
                 "not in policy.allow");
    /* a reference outlives a swap */
    struct om_policy *held = om_policy_ref(p);
    om_policy_unref(p);
    CHECK_EQ_INT(om_policy_check(held, "quay.io/prometheus/node", NULL), OM_POLICY_ALLOWED);
    om_policy_unref(held);

    CHECK_EQ_INT(om_policy_new(&p, NULL, 0, deny, 2), OM_OK);
    CHECK_EQ_INT(om_policy_check(p, "ghcr.io/a/b", &rule), OM_POLICY_ALLOWED);
    CHECK(rule == NULL);
    CHECK_EQ_INT(om_policy_check(p, "docker.io/evil/x", NULL), OM_POLICY_DENIED);
    om_policy_unref(p);

    CHECK_EQ_INT(om_policy_new(&p, NULL, 0, NULL, 0), OM_OK);
    CHECK(!om_policy_active(p));
    CHECK_EQ_INT(om_policy_check(p, "anything/at/all", NULL), OM_POLICY_ALLOWED);
    om_policy_unref(p);
    CHECK_EQ_INT(om_policy_check(NULL, "x/y", NULL), OM_POLICY_ALLOWED);
}

static void test_policy__many_globstars_stay_fast(void)
{
    /* exponential backtracking would never finish this */
    char pat[400] = "", name[256] = "";
    for (int i = 0; i < 60; i++)
        strcat(pat, i ? "/**" : "**");
    strcat(pat, "/z");
    for (int i = 0; i < 120; i++)
        strcat(name, i ? "/a" : "a");
    CHECK(om_policy_pattern_why(pat, strlen(pat)) == NULL);
    CHECK(!om_policy_match(pat, name));
}

int main(void)
{
    RUN(test_policy__star_is_one_component_and_globstar_any);
    RUN(test_policy__bad_patterns_are_refused_with_a_reason);
    RUN(test_policy__deny_wins_and_empty_allow_allows_all);
    RUN(test_policy__many_globstars_stay_fast);
    return test_done();
}
