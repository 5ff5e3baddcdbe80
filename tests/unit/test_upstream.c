/* test_upstream.c — the pure parsers of the upstream client: WWW-Authenticate
 * challenges, token service answers, Retry-After, ratelimit-remaining.
 * No network: the libcurl side is checked by hand and in the e2e tests. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "test.h"
#include "upstream.h"

static const char DOCKER_HUB[] =
    "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
    "scope=\"repository:library/nginx:pull\"";

/* Allocation failure in a test is not a result: stop. */
static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        abort();
    return p;
}

/* Parse from an exact-size heap copy (no NUL after it), so AddressSanitizer
 * catches any read past len. */
static int parse_exact(struct om_challenge *ch, const char *s, size_t len)
{
    char *copy = xmalloc(len ? len : 1);    /* owned here */
    int err;
    memcpy(copy, s, len);
    err = om_challenge_parse(ch, copy, len);
    free(copy);
    return err;
}

/* ---- om_challenge_parse ---------------------------------------------- */

struct ch_case {
    const char *in;
    int err;
    const char *scheme, *realm, *service, *scope, *error;
};

static void test_upstream__challenge_table(void)
{
    static const struct ch_case cases[] = {
        {DOCKER_HUB, OM_OK, "Bearer", "https://auth.docker.io/token", "registry.docker.io",
         "repository:library/nginx:pull", ""},
        {"Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
         "scope=\"repository:library/nginx:pull\",error=\"insufficient_scope\"",
         OM_OK, "Bearer", "https://auth.docker.io/token", "registry.docker.io",
         "repository:library/nginx:pull", "insufficient_scope"},
        {"Basic realm=\"Registry Realm\"", OM_OK, "Basic", "Registry Realm", "", "", ""},
        {"Basic", OM_OK, "Basic", "", "", "", ""},
        {"  Bearer   realm=\"r\"  ", OM_OK, "Bearer", "r", "", "", ""},
        /* quoted-pair escapes are undone */
        {"Bearer realm=\"a\\\"b\\\\c\\d\"", OM_OK, "Bearer", "a\"b\\cd", "", "", ""},
        /* unquoted token values */
        {"Bearer realm=abc,service=registry.local,scope=x", OM_OK, "Bearer", "abc",
         "registry.local", "x", ""},
        /* names are case-insensitive, BWS around '=' */
        {"bearer REALM = \"r\" , Service=\"s\"", OM_OK, "bearer", "r", "s", "", ""},
        /* unknown params are skipped, empty list elements allowed */
        {"Bearer foo=\"bar\",,realm=\"r\",", OM_OK, "Bearer", "r", "", "", ""},
        /* a second, comma-joined challenge ends the first */
        {"Bearer realm=\"a\",service=\"s\", Basic realm=\"b\"", OM_OK, "Bearer", "a", "s", "", ""},
        {"Bearer realm=\"a\", Basic", OM_OK, "Bearer", "a", "", "", ""},
        /* token68 credentials hint */
        {"Negotiate abc==", OM_OK, "Negotiate", "", "", "", ""},
        {"Bearer realm=\"a\" service=\"s\"", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"Bearer realm=\"abc", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"Bearer realm=\"abc\\", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"Bearer realm=\"a\";", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"Bearer realm=\"a\",realm=\"b\"", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"Bearer realm=\"a\tb\x01\"", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"Bearer realm=\"a\r\nX: y\"", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"Bearer realm=", OM_OK, "Bearer", "", "", "", ""},       /* read as token68 */
        {"Bearer realm=,service=\"s\"", OM_OK, "Bearer", "", "", "", ""},
        {"Bearer foo bar", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"Bearer=x", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"\"Bearer\"", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"   ", OM_ERR_INVALID, NULL, NULL, NULL, NULL, NULL},
        {"Averyveryverylongscheme realm=\"a\"", OM_ERR_TOOBIG, NULL, NULL, NULL, NULL, NULL},
        /* scheme is char[16]: 15 bytes fit, 16 do not */
        {"Abcdefghijklmno realm=\"a\"", OM_OK, "Abcdefghijklmno", "a", "", "", ""},
        {"Abcdefghijklmnop realm=\"a\"", OM_ERR_TOOBIG, NULL, NULL, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        const struct ch_case *tc = &cases[i];
        struct om_challenge ch;
        int err = parse_exact(&ch, tc->in, strlen(tc->in));
        if (err != tc->err)
            fprintf(stderr, "case %zu: %s\n", i, tc->in);
        CHECK_EQ_INT(err, tc->err);
        if (tc->err != OM_OK || err != OM_OK) {
            CHECK_EQ_STR(ch.scheme, "");    /* nothing half-filled on error */
            CHECK_EQ_STR(ch.realm, "");
            continue;
        }
        CHECK_EQ_STR(ch.scheme, tc->scheme);
        CHECK_EQ_STR(ch.realm, tc->realm);
        CHECK_EQ_STR(ch.service, tc->service);
        CHECK_EQ_STR(ch.scope, tc->scope);
        CHECK_EQ_STR(ch.error, tc->error);
    }
}

static void test_upstream__challenge_rejects_a_nul_inside_a_quoted_value(void)
{
    static const char in[] = "Bearer realm=\"a\0b\"";
    struct om_challenge ch;
    CHECK_EQ_INT(parse_exact(&ch, in, sizeof(in) - 1), OM_ERR_INVALID);
}

/* Builds `Bearer <name>="<n x 'a'>"` in a malloc'd buffer (caller frees). */
static char *challenge_with_value(const char *name, size_t n)
{
    size_t cap = n + strlen(name) + 32;
    char *s = xmalloc(cap);
    size_t off;
    off = (size_t)snprintf(s, cap, "Bearer %s=\"", name);
    memset(s + off, 'a', n);
    s[off + n] = '"';
    s[off + n + 1] = '\0';
    return s;
}

static void test_upstream__challenge_overlong_values_are_toobig(void)
{
    struct om_challenge ch;
    char *s;

    /* realm is char[1024]: 1023 bytes fit, 1024 do not. */
    s = challenge_with_value("realm", sizeof(ch.realm) - 1);
    CHECK_EQ_INT(parse_exact(&ch, s, strlen(s)), OM_OK);
    CHECK_EQ_INT(strlen(ch.realm), sizeof(ch.realm) - 1);
    free(s);
    s = challenge_with_value("realm", sizeof(ch.realm));
    CHECK_EQ_INT(parse_exact(&ch, s, strlen(s)), OM_ERR_TOOBIG);
    CHECK_EQ_STR(ch.realm, "");
    free(s);
    s = challenge_with_value("scope", sizeof(ch.scope));
    CHECK_EQ_INT(parse_exact(&ch, s, strlen(s)), OM_ERR_TOOBIG);
    free(s);
    s = challenge_with_value("service", sizeof(ch.service));
    CHECK_EQ_INT(parse_exact(&ch, s, strlen(s)), OM_ERR_TOOBIG);
    free(s);
    s = challenge_with_value("error", sizeof(ch.error));
    CHECK_EQ_INT(parse_exact(&ch, s, strlen(s)), OM_ERR_TOOBIG);
    free(s);
    /* An unknown parameter is not stored, so its size does not matter. */
    s = challenge_with_value("foo", 8000);
    CHECK_EQ_INT(parse_exact(&ch, s, strlen(s)), OM_OK);
    free(s);
    /* Unquoted too. */
    {
        char in[1100] = "Bearer realm=";
        memset(in + 13, 'b', 1024);
        in[13 + 1024] = '\0';
        CHECK_EQ_INT(parse_exact(&ch, in, strlen(in)), OM_ERR_TOOBIG);
    }
}

/* Every prefix of a real challenge parses or is rejected cleanly; when it
 * parses, each field is either empty or complete — a cut never yields a
 * shortened realm or scope. */
static void test_upstream__challenge_every_truncated_prefix_is_safe(void)
{
    static const char *const inputs[] = {
        DOCKER_HUB,
        "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
        "scope=\"repository:library/nginx:pull\",error=\"insufficient_scope\"",
        "Basic realm=\"a \\\"quoted\\\" realm\"",
        "Bearer realm=abc,service=def",
    };
    for (size_t k = 0; k < OM_ARRAY_LEN(inputs); k++) {
        const char *in = inputs[k];
        size_t n = strlen(in);
        struct om_challenge full;
        CHECK_EQ_INT(parse_exact(&full, in, n), OM_OK);
        for (size_t len = 0; len <= n; len++) {
            struct om_challenge ch;
            int err = parse_exact(&ch, in, len);
            CHECK(err == OM_OK || err == OM_ERR_INVALID);
            if (err != OM_OK || k == 3)
                continue;   /* unquoted values (k == 3) have no end marker */
            CHECK(ch.realm[0] == '\0' || strcmp(ch.realm, full.realm) == 0);
            CHECK(ch.service[0] == '\0' || strcmp(ch.service, full.service) == 0);
            CHECK(ch.scope[0] == '\0' || strcmp(ch.scope, full.scope) == 0);
            CHECK(ch.error[0] == '\0' || strcmp(ch.error, full.error) == 0);
        }
    }
}

/* ---- om_token_parse --------------------------------------------------- */

struct tok_case {
    const char *json;
    int err;
    const char *token;
    long expires;
};

static void test_upstream__token_table(void)
{
    static const struct tok_case cases[] = {
        {"{\"token\":\"abc.def.ghi\",\"expires_in\":300}", OM_OK, "abc.def.ghi", 300},
        {"{\"access_token\":\"xyz\",\"expires_in\":120}", OM_OK, "xyz", 120},
        {"{\"token\":\"t1\",\"access_token\":\"t2\"}", OM_OK, "t1", 60},
        {"{\"token\":\"\",\"access_token\":\"t2\"}", OM_OK, "t2", 60},
        {"{\"token\":\"t\"}", OM_OK, "t", 60},
        {"{\"token\":\"t\",\"expires_in\":0}", OM_OK, "t", 60},
        {"{\"token\":\"t\",\"expires_in\":-5}", OM_OK, "t", 60},
        {"{\"token\":\"t\",\"expires_in\":99999999999999}", OM_OK, "t", 86400},
        {"{\"token\":\"t\",\"expires_in\":90.7}", OM_OK, "t", 90},
        {"{\"token\":\"t\",\"expires_in\":\"300\"}", OM_OK, "t", 60},
        {"{\"token\":\"t\",\"issued_at\":\"2024-01-01T00:00:00Z\",\"refresh_token\":\"r\"}",
         OM_OK, "t", 60},
        {"not json", OM_ERR_INVALID, NULL, 0},
        {"", OM_ERR_INVALID, NULL, 0},
        {"[\"token\"]", OM_ERR_INVALID, NULL, 0},
        {"\"token\"", OM_ERR_INVALID, NULL, 0},
        {"{}", OM_ERR_INVALID, NULL, 0},
        {"{\"token\":\"\"}", OM_ERR_INVALID, NULL, 0},
        {"{\"token\":42}", OM_ERR_INVALID, NULL, 0},
        {"{\"token\":\"a b\"}", OM_ERR_INVALID, NULL, 0},
        {"{\"token\":\"a\\r\\nX-Evil: 1\"}", OM_ERR_INVALID, NULL, 0},
        {"{\"token\":\"a\",\"token\":\"b\"}", OM_ERR_INVALID, NULL, 0},
        {"{\"token\":\"a\"} trailing", OM_ERR_INVALID, NULL, 0},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        const struct tok_case *tc = &cases[i];
        char *tok = (char *)1;
        long exp = -1;
        int err = om_token_parse(tc->json, strlen(tc->json), &tok, &exp);
        if (err != tc->err)
            fprintf(stderr, "case %zu: %s\n", i, tc->json);
        CHECK_EQ_INT(err, tc->err);
        if (tc->err == OM_OK && err == OM_OK) {
            CHECK_EQ_STR(tok, tc->token);
            CHECK_EQ_INT(exp, tc->expires);
        } else {
            CHECK(tok == NULL);
        }
        free(err == OM_OK ? tok : NULL);
    }
}

static void test_upstream__token_size_limits(void)
{
    const size_t max = 16 * 1024;
    size_t cap = max + 64;
    char *json = xmalloc(cap);
    char *tok = NULL;
    long exp = 0;
    int n;

    /* exactly 16 KiB is accepted */
    n = snprintf(json, cap, "{\"token\":\"%*s\"}", (int)max, "");
    memset(json + 10, 'x', max);
    CHECK_EQ_INT(om_token_parse(json, (size_t)n, &tok, &exp), OM_OK);
    CHECK(tok != NULL && strlen(tok) == max);
    free(tok);
    tok = NULL;
    /* one byte more is not */
    n = snprintf(json, cap, "{\"token\":\"%*s\"}", (int)max + 1, "");
    memset(json + 10, 'x', max + 1);
    CHECK_EQ_INT(om_token_parse(json, (size_t)n, &tok, &exp), OM_ERR_TOOBIG);
    CHECK(tok == NULL);
    free(json);

    /* an answer over 64 KiB is refused before jansson sees it */
    cap = 70 * 1024;
    json = xmalloc(cap);
    memset(json, ' ', cap);
    memcpy(json, "{\"token\":\"t\"}", 13);
    CHECK_EQ_INT(om_token_parse(json, cap, &tok, &exp), OM_ERR_TOOBIG);
    CHECK_EQ_INT(om_token_parse(NULL, 0, &tok, &exp), OM_ERR_INVALID);
    free(json);
}

static void test_upstream__token_every_truncated_prefix_is_invalid(void)
{
    static const char in[] = "{\"token\":\"abc\",\"access_token\":\"abc\",\"expires_in\":300}";
    for (size_t len = 0; len < sizeof(in) - 1; len++) {
        char *copy = xmalloc(len ? len : 1);
        char *tok = NULL;
        long exp = 0;
        memcpy(copy, in, len);
        CHECK_EQ_INT(om_token_parse(copy, len, &tok, &exp), OM_ERR_INVALID);
        CHECK(tok == NULL);
        free(copy);
    }
}

/* ---- om_retry_after_parse ----------------------------------------------- */

static void test_upstream__retry_after_seconds_and_garbage(void)
{
    static const struct {
        const char *in;
        long want;
    } cases[] = {
        {"120", 120},
        {"0", 0},
        {" 5 ", 5},
        {"007", 7},
        {"99999999999999999999999", 2147483647L},
        {"", -1},
        {"  ", -1},
        {"-5", -1},
        {"+5", -1},
        {"1.5", -1},
        {"12abc", -1},
        {"soon", -1},
        {"#$%", -1},
        {"12 34", -1},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        long got = om_retry_after_parse(cases[i].in, 1000000000L);
        if (got != cases[i].want)
            fprintf(stderr, "case %zu: \"%s\"\n", i, cases[i].in);
        CHECK_EQ_INT(got, cases[i].want);
    }
    CHECK_EQ_INT(om_retry_after_parse(NULL, 0), -1);
    {
        char longs[100];
        memset(longs, '1', sizeof(longs) - 1);
        longs[sizeof(longs) - 1] = '\0';
        CHECK_EQ_INT(om_retry_after_parse(longs, 0), -1);
    }
}

static void test_upstream__retry_after_http_dates(void)
{
    /* Sun, 06 Nov 1994 08:49:37 GMT */
    const long now = 784111777L;
    CHECK_EQ_INT(curl_getdate("Sun, 06 Nov 1994 08:49:37 GMT", NULL), now);
    CHECK_EQ_INT(om_retry_after_parse("Sun, 06 Nov 1994 08:50:37 GMT", now), 60);
    CHECK_EQ_INT(om_retry_after_parse("Sunday, 06-Nov-94 08:49:47 GMT", now), 10);
    CHECK_EQ_INT(om_retry_after_parse("Sun Nov  6 08:49:57 1994", now), 20);
    /* a date in the past means "now" */
    CHECK_EQ_INT(om_retry_after_parse("Sun, 06 Nov 1994 08:00:00 GMT", now), 0);
    CHECK_EQ_INT(om_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", now), 0);
    CHECK_EQ_INT(om_retry_after_parse("Someday, never", now), -1);
}

/* ---- om_ratelimit_remaining_parse --------------------------------------- */

static void test_upstream__ratelimit_remaining(void)
{
    static const struct {
        const char *in;
        long want;
    } cases[] = {
        {"100;w=21600", 100},
        {"0;w=21600", 0},
        {"76", 76},
        {" 42 ", 42},
        {"100;", 100},
        {"", -1},
        {"abc", -1},
        {"-1", -1},
        {"1e3", -1},
        {"12345678901", -1},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++)
        CHECK_EQ_INT(om_ratelimit_remaining_parse(cases[i].in), cases[i].want);
    CHECK_EQ_INT(om_ratelimit_remaining_parse(NULL), -1);
}

int main(void)
{
    RUN(test_upstream__challenge_table);
    RUN(test_upstream__challenge_rejects_a_nul_inside_a_quoted_value);
    RUN(test_upstream__challenge_overlong_values_are_toobig);
    RUN(test_upstream__challenge_every_truncated_prefix_is_safe);
    RUN(test_upstream__token_table);
    RUN(test_upstream__token_size_limits);
    RUN(test_upstream__token_every_truncated_prefix_is_invalid);
    RUN(test_upstream__retry_after_seconds_and_garbage);
    RUN(test_upstream__retry_after_http_dates);
    RUN(test_upstream__ratelimit_remaining);
    return test_done();
}
