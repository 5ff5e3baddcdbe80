/* fuzz_policy.c — policy.allow / policy.deny patterns (core/policy.c:
 * om_policy_pattern_why, om_policy_match, om_policy_new, om_policy_check).
 *
 * Input: "PATTERN\nNAME".  The oracle is a POSIX extended regular
 * expression built from the pattern (glibc's backtracking matcher, nothing
 * in common with policy.c's table): over "/" + NAME, each component C of
 * the pattern becomes "/" + C with '*' as "[^/]*" and the rest escaped,
 * and a `**` component becomes "(/[^/]+)*".  For a valid pattern and a
 * name of non-empty components, om_policy_match must agree with it, and a
 * policy of that pattern alone must give the same verdict as allow and as
 * deny.
 */
#include <regex.h>

#include "fuzz_common.h"
#include "core/policy.h"

static int name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 255 || s[0] == '/' || s[len - 1] == '/' || strstr(s, "//") != NULL)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\0' || s[i] == '\n' || (unsigned char)s[i] < 0x20)
            return 0;
    return 1;
}

/* The regex for a valid pattern; heap, NUL-terminated. */
static char *to_regex(const char *p)
{
    size_t len = strlen(p);
    char *re = malloc(len * 8 + 16), *o = re;
    *o++ = '^';
    while (*p != '\0') {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '*' && p[1] == '*') {
            memcpy(o, "(/[^/]+)*", 9);
            o += 9;
        } else {
            *o++ = '/';
            for (size_t i = 0; i < n; i++) {
                if (p[i] == '*') {
                    memcpy(o, "[^/]*", 5);
                    o += 5;
                } else {
                    if (strchr(".[]()^$+?{}|\\", p[i]) != NULL)
                        *o++ = '\\';
                    *o++ = p[i];
                }
            }
        }
        p += n;
        if (*p == '/')
            p++;
    }
    *o++ = '$';
    *o = '\0';
    return re;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2048)
        return 0;
    const char *nl = memchr(data, '\n', size);
    size_t plen = nl != NULL ? (size_t)(nl - (const char *)data) : size;
    char *pat = malloc(plen + 1);
    memcpy(pat, data, plen);
    pat[plen] = '\0';
    const char *why = om_policy_pattern_why(pat, plen);
    if (why != NULL || memchr(pat, '\0', plen) != NULL) {
        struct om_policy *p = NULL;
        const char *one = pat;
        if (memchr(pat, '\0', plen) == NULL)
            FUZZ_CHECK(om_policy_new(&p, &one, 1, NULL, 0) != 0 && p == NULL);
        free(pat);
        return 0;
    }
    FUZZ_CHECK(plen > 0 && plen <= OM_POLICY_PATTERN_MAX);
    size_t nlen = nl != NULL ? size - plen - 1 : 0;
    char *name = malloc(nlen + 1);
    if (nlen > 0)
        memcpy(name, nl + 1, nlen);
    name[nlen] = '\0';
    if (name_ok(name, nlen)) {
        bool got = om_policy_match(pat, name);
        char *re = to_regex(pat), *slashed = malloc(nlen + 2);
        regex_t rx;
        slashed[0] = '/';
        memcpy(slashed + 1, name, nlen + 1);
        FUZZ_CHECK(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) == 0);
        bool want = regexec(&rx, slashed, 0, NULL, 0) == 0;
        regfree(&rx);
        if (got != want)
            fprintf(stderr, "pattern \"%s\" name \"%s\": policy.c %d, regex %s %d\n", pat, name,
                    got, re, want);
        FUZZ_CHECK(got == want);
        free(re);
        free(slashed);

        struct om_policy *p = NULL;
        const char *one = pat, *rule = NULL;
        FUZZ_CHECK(om_policy_new(&p, &one, 1, NULL, 0) == 0);
        om_policy_verdict v = om_policy_check(p, name, &rule);
        FUZZ_CHECK(v == (got ? OM_POLICY_ALLOWED : OM_POLICY_NOT_ALLOWED));
        FUZZ_CHECK(got ? rule != NULL && strcmp(rule, pat) == 0 : rule == NULL);
        om_policy_unref(p);
        FUZZ_CHECK(om_policy_new(&p, NULL, 0, &one, 1) == 0);
        v = om_policy_check(p, name, &rule);
        FUZZ_CHECK(v == (got ? OM_POLICY_DENIED : OM_POLICY_ALLOWED));
        om_policy_unref(p);
    }
    free(name);
    free(pat);
    return 0;
}
