/* test_upstream.c — the upstream client.
 *
 * First the pure parts (authparse.c): WWW-Authenticate challenges, token
 * service answers, Retry-After, ratelimit-remaining, Content-Length, header
 * safety and the retry policy — tables, every truncated prefix.
 *
 * Then the token machinery (upstream_auth.c) against fakes served by
 * libmicrohttpd on 127.0.0.1 only (plain HTTP, ephemeral ports, proxy off):
 * a registry that wants a bearer token, a token service and a second token
 * host on another port.  They check single-flight token fetches and the
 * realm's redirects; and the endpoints and accounts of upstream_pool.c (a
 * dead first URL is skipped, an account that gets a 429 is skipped and the
 * request moves to the next one).  Everything else of the libcurl side (TLS, downgrade,
 * blob redirects to a CDN, Retry-After through the mirror) is in
 * tests/e2e/test_upstream_security.py.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"
#include "upstream/upstream_int.h"

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

/* ---- om_up_error_code ------------------------------------------------ */

static void test_upstream__error_code_of_an_oci_error_body(void)
{
    static const struct {
        const char *body;
        const char *code; /* NULL: not an error document */
    } cases[] = {
        {"{\"errors\":[{\"code\":\"NAME_UNKNOWN\",\"message\":\"repository name not known\"}]}",
         "NAME_UNKNOWN"},
        {"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"},{\"code\":\"NAME_UNKNOWN\"}]}",
         "MANIFEST_UNKNOWN"},
        {"{\"errors\":[{\"code\":\"BLOB_UNKNOWN\",\"detail\":{}}]}", "BLOB_UNKNOWN"},
        {"{\"errors\":[]}", NULL},
        {"{\"errors\":{\"code\":\"NAME_UNKNOWN\"}}", NULL},
        {"{\"errors\":[{\"code\":42}]}", NULL},
        {"{\"errors\":[{\"code\":\"\"}]}", NULL},
        {"{\"errors\":[{\"code\":\"name_unknown\"}]}", NULL},
        {"{\"errors\":[{\"code\":\"NAME UNKNOWN\"}]}", NULL},
        {"{\"details\":\"404 page not found\"}", NULL},
        {"<html>Not Found</html>", NULL},
        {"[]", NULL},
        {"", NULL},
    };
    char code[32];
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        bool ok = om_up_error_code(cases[i].body, strlen(cases[i].body), code, sizeof(code));
        CHECK_EQ_INT(ok, cases[i].code != NULL);
        CHECK_EQ_STR(code, cases[i].code != NULL ? cases[i].code : "");
    }
    /* A code longer than the buffer is no code; NULL and every truncated
     * prefix are safe. */
    const char *body = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}";
    CHECK(!om_up_error_code(body, strlen(body), code, 8));
    CHECK(!om_up_error_code(NULL, 10, code, sizeof(code)));
    for (size_t n = 0; n < strlen(body); n++)
        CHECK(!om_up_error_code(body, n, code, sizeof(code)));
}

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

static void test_upstream__ratelimit_window(void)
{
    static const struct {
        const char *in;
        long want;
    } cases[] = {
        {"100;w=21600", 21600},
        {"0;w=60", 60},
        {"0; w=60 ", 60},
        {"5;x=1;w=30", 30},
        {"76", -1},
        {"100;", -1},
        {"100;w=", -1},
        {"100;w=abc", -1},
        {"100;w=12x", -1},
        {"100;w=1234567890", -1},
        {"abc;w=60", -1},
        {"", -1},
        {"100, 200;w=5", -1},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        if (om_ratelimit_window_parse(cases[i].in) != cases[i].want)
            fprintf(stderr, "window of \"%s\"\n", cases[i].in);
        CHECK_EQ_INT(om_ratelimit_window_parse(cases[i].in), cases[i].want);
    }
    CHECK_EQ_INT(om_ratelimit_window_parse(NULL), -1);
}


/* ---- small pure parts private to the module (upstream_int.h) ------------ */

static void test_upstream__content_length_table_and_truncated_prefixes(void)
{
    static const struct {
        const char *in;
        int64_t want;
    } cases[] = {
        {"0", 0},
        {"1234", 1234},
        {"999999999999999999", 999999999999999999LL},
        {"1000000000000000000", -1},    /* 19 digits: refused, not wrapped */
        {"", -1},
        {" 12", -1},
        {"12 ", -1},
        {"-1", -1},
        {"+1", -1},
        {"0x10", -1},
        {"12,13", -1},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++)
        CHECK_EQ_INT(om_up_content_length_parse(cases[i].in), cases[i].want);
    CHECK_EQ_INT(om_up_content_length_parse(NULL), -1);
    {
        /* Every prefix of a valid value is the number it spells, or -1 when
         * empty. */
        static const char in[] = "4194304";
        char buf[sizeof(in)];
        for (size_t len = 0; len < sizeof(in) - 1; len++) {
            memcpy(buf, in, len);
            buf[len] = '\0';
            CHECK_EQ_INT(om_up_content_length_parse(buf), len ? strtoll(buf, NULL, 10) : -1);
        }
    }
}

static void test_upstream__content_range_is_parsed_strictly(void)
{
    static const struct {
        const char *in;
        bool ok;
        uint64_t first, last, total;
        bool known;
    } cases[] = {
        {"bytes 0-99/100", true, 0, 99, 100, true},
        {"bytes 4194304-536870911/536870912", true, 4194304, 536870911, 536870912, true},
        {"BYTES 5-5/6", true, 5, 5, 6, true},
        {"bytes 7-9/*", true, 7, 9, 0, false},
        {"bytes 0-0/1", true, 0, 0, 1, true},
        {"bytes 999999999999999999-999999999999999999/*", true, 999999999999999999ull,
         999999999999999999ull, 0, false},
        /* refused */
        {"", false, 0, 0, 0, false},
        {"bytes", false, 0, 0, 0, false},
        {"bytes ", false, 0, 0, 0, false},
        {"bytes 0-99/99", false, 0, 0, 0, false},      /* last beyond the end */
        {"bytes 10-9/100", false, 0, 0, 0, false},     /* first after last */
        {"bytes -1-99/100", false, 0, 0, 0, false},    /* sscanf's %llu took this */
        {"bytes +1-99/100", false, 0, 0, 0, false},
        {"bytes  1-99/100", false, 0, 0, 0, false},
        {"bytes 1 -99/100", false, 0, 0, 0, false},
        {"bytes 1-99/-100", false, 0, 0, 0, false},    /* strtoull took this as 2^64-100 */
        {"bytes 1-99/100 ", false, 0, 0, 0, false},
        {"bytes 1-99/100x", false, 0, 0, 0, false},
        {"bytes 1-99/**", false, 0, 0, 0, false},
        {"bytes 1-/100", false, 0, 0, 0, false},
        {"bytes */100", false, 0, 0, 0, false},        /* a 416's form, not a 206's */
        {"items 1-2/3", false, 0, 0, 0, false},
        {"bytes 1000000000000000000-1000000000000000000/*", false, 0, 0, 0, false},
        {"bytes=1-2/3", false, 0, 0, 0, false},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        uint64_t first = 42, last = 42, total = 42;
        bool known = true;
        bool ok = om_up_content_range_parse(cases[i].in, &first, &last, &total, &known);
        if (ok != cases[i].ok)
            fprintf(stderr, "  case %zu: \"%s\"\n", i, cases[i].in);
        CHECK(ok == cases[i].ok);
        if (cases[i].ok) {
            CHECK(first == cases[i].first && last == cases[i].last && known == cases[i].known);
            CHECK(!known || total == cases[i].total);
        } else {
            CHECK(first == 42 && last == 42 && total == 42 && known);
        }
    }
    uint64_t a, b, t;
    bool k;
    CHECK(!om_up_content_range_parse(NULL, &a, &b, &t, &k));
}

static void test_upstream__header_safe_refuses_what_could_end_a_header(void)
{
    CHECK(om_up_header_safe("application/vnd.oci.image.index.v1+json, */*"));
    CHECK(om_up_header_safe("a\tb"));
    CHECK(om_up_header_safe(""));
    CHECK(!om_up_header_safe("a\r\nX-Evil: 1"));
    CHECK(!om_up_header_safe("a\nb"));
    CHECK(!om_up_header_safe("a\rb"));
    CHECK(!om_up_header_safe("a\x7f"));
    CHECK(!om_up_header_safe("\x01"));
}

static void test_upstream__backoff_honours_retry_after_then_jitters_a_doubling_window(void)
{
    /* Retry-After wins for 429 and 503 only, capped at 60 s. */
    CHECK_EQ_INT(om_up_backoff_ms(500, 429, 1, 2, 12345), 1000);
    CHECK_EQ_INT(om_up_backoff_ms(500, 503, 0, 2, 12345), 0);
    CHECK_EQ_INT(om_up_backoff_ms(500, 429, 3600, 2, 12345), 60000);
    CHECK_EQ_INT(om_up_backoff_ms(500, 500, 7, 2, 0), 0);       /* 500: jitter, rnd 0 */
    CHECK_EQ_INT(om_up_backoff_ms(500, 429, -1, 2, 0), 0);      /* no Retry-After */
    /* Full jitter: rnd % (window + 1), the window doubling per earlier retry. */
    CHECK_EQ_INT(om_up_backoff_ms(500, 0, -1, 2, 500), 500);
    CHECK_EQ_INT(om_up_backoff_ms(500, 0, -1, 2, 501), 0);
    CHECK_EQ_INT(om_up_backoff_ms(500, 0, -1, 3, 1000), 1000);
    CHECK_EQ_INT(om_up_backoff_ms(500, 0, -1, 4, 2000), 2000);
    CHECK_EQ_INT(om_up_backoff_ms(500, 0, -1, 40, UINT64_MAX - 1), (UINT64_MAX - 1) % 60001);
    CHECK_EQ_INT(om_up_backoff_ms(0, 0, -1, 5, 777), 0);
    for (uint64_t r = 0; r < 5000; r += 37)
        CHECK(om_up_backoff_ms(200, 502, -1, 3, r) <= 400);
}

static void test_upstream__only_network_errors_are_retried(void)
{
    CHECK(om_up_curl_retryable(CURLE_COULDNT_CONNECT));
    CHECK(om_up_curl_retryable(CURLE_RECV_ERROR));
    CHECK(om_up_curl_retryable(CURLE_OPERATION_TIMEDOUT));
    CHECK(!om_up_curl_retryable(CURLE_PEER_FAILED_VERIFICATION));   /* fails the same again */
    CHECK(!om_up_curl_retryable(CURLE_OUT_OF_MEMORY));
    CHECK(!om_up_curl_retryable(CURLE_COULDNT_RESOLVE_HOST));   /* the resolver retried */
    CHECK(!om_up_curl_retryable(CURLE_COULDNT_RESOLVE_PROXY));
    CHECK(!om_up_curl_retryable(CURLE_OK));
}

/* ---- the token machinery against loopback fakes --------------------------- */

#define N_THREADS 8
#define BASIC_ALICE "Basic YWxpY2U6czNjcmV0"    /* alice:s3cret */
#define BASIC_BOB "Basic Ym9iOnB3Mg=="          /* bob:pw2 */

/* What the fakes saw; reset per test.  Atomics: MHD runs a thread per
 * connection. */
static struct fakes {
    struct MHD_Daemon *reg, *tok, *tok2;
    unsigned reg_port, tok_port, tok2_port;
    atomic_int hold_tokens_for;     /* the token service answers only once the
                                       registry sent this many 401s (or 5 s) */
    atomic_int reg_401s;
    atomic_int tokens_issued;       /* /token and /token2 answers with a token */
    atomic_int token_refusals;      /* /token-denied answers */
    atomic_int realm_basic;         /* requests on the realm host with alice's Basic */
    atomic_int realm_other_auth;    /* ... with any other Authorization */
    atomic_int tok2_requests, tok2_auth;    /* the second host: requests, with Authorization */
    atomic_int reg_basic;           /* the registry saw Basic (it never should here) */
    atomic_int loop_hops;
    atomic_int tokb_requests;       /* the second token service on the realm host */
    atomic_int limit_bob;           /* the registry answers bob's tokens 429 */
    atomic_int bob_429s, alice_ok, bob_ok;
} F;

static enum MHD_Result fake_answer(struct MHD_Connection *conn, unsigned status,
                                   const char *body, const char *h1, const char *v1)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (h1 != NULL)
        MHD_add_response_header(r, h1, v1);
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Hold a token answer until every puller has had its 401, bounded by 5 s,
 * then 300 ms more for the last of them to get from its 401 to the token
 * cache: all of them are then after the token at once, whatever the
 * scheduling.  (A puller that came later would rightly fetch again after a
 * refusal: failures are not cached.) */
static void hold_token(void)
{
    struct timespec ts = {0, 5 * 1000000L}, grace = {0, 300 * 1000000L};
    if (atomic_load(&F.hold_tokens_for) == 0)
        return;
    for (int i = 0; i < 1000 && atomic_load(&F.reg_401s) < atomic_load(&F.hold_tokens_for); i++)
        nanosleep(&ts, NULL);
    nanosleep(&grace, NULL);
}

/* A token names the account it was issued to: tok-<n>-alice, -bob, -anon. */
static enum MHD_Result fake_token(struct MHD_Connection *conn)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    const char *who = auth == NULL                     ? "anon"
                      : strcmp(auth, BASIC_ALICE) == 0 ? "alice"
                      : strcmp(auth, BASIC_BOB) == 0   ? "bob"
                                                       : "other";
    char body[128];
    int n = atomic_fetch_add(&F.tokens_issued, 1) + 1;
    snprintf(body, sizeof(body), "{\"token\":\"tok-%d-%s\",\"expires_in\":300}", n, who);
    return fake_answer(conn, 200, body, NULL, NULL);
}

/* The registry: /v2/<repo>/manifests/1 wants "Bearer tok-*"; its challenge
 * names a realm path per repo. */
static enum MHD_Result fake_reg(struct MHD_Connection *conn, const char *url)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    char repo[32] = "", chal[512];
    const char *realm = "/token";

    if (auth != NULL && strncmp(auth, "Basic ", 6) == 0)
        atomic_fetch_add(&F.reg_basic, 1);
    if (sscanf(url, "/v2/%31[a-z]/manifests/1", repo) != 1)
        return fake_answer(conn, 404, "{}", NULL, NULL);
    if (auth != NULL && strncmp(auth, "Bearer tok-", 11) == 0 && strstr(auth, "-bob") != NULL &&
        atomic_load(&F.limit_bob)) {
        atomic_fetch_add(&F.bob_429s, 1);
        return fake_answer(conn, 429, "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\"}]}",
                           "ratelimit-remaining", "0;w=120");
    }
    if (auth != NULL && strncmp(auth, "Bearer tok-", 11) == 0) {
        atomic_fetch_add(strstr(auth, "-bob") != NULL ? &F.bob_ok : &F.alice_ok, 1);
        return fake_answer(conn, 200, "{}", NULL, NULL);
    }
    if (strcmp(repo, "denied") == 0)
        realm = "/token-denied";
    else if (strcmp(repo, "cross") == 0)
        realm = "/redir-cross";
    else if (strcmp(repo, "same") == 0)
        realm = "/redir-same";
    else if (strcmp(repo, "loop") == 0)
        realm = "/redir-loop";
    else if (strcmp(repo, "svcb") == 0)
        realm = "/tokenb";
    atomic_fetch_add(&F.reg_401s, 1);
    /* svca and svcb: one scope, two token services */
    snprintf(chal, sizeof(chal),
             "Bearer realm=\"http://127.0.0.1:%u%s\",service=\"svc\",scope=\"repository:%s:pull\"",
             F.tok_port, realm, strncmp(repo, "svc", 3) == 0 ? "shared" : repo);
    return fake_answer(conn, 401, "{\"errors\":[]}", "WWW-Authenticate", chal);
}

/* The token host: the realm paths. */
static enum MHD_Result fake_tok(struct MHD_Connection *conn, const char *url)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    char loc[128];

    if (auth != NULL && strcmp(auth, BASIC_ALICE) == 0)
        atomic_fetch_add(&F.realm_basic, 1);
    else if (auth != NULL)
        atomic_fetch_add(&F.realm_other_auth, 1);
    if (strcmp(url, "/token") == 0) {
        hold_token();
        return fake_token(conn);
    }
    if (strcmp(url, "/tokenb") == 0) {
        atomic_fetch_add(&F.tokb_requests, 1);
        return fake_token(conn);
    }
    if (strcmp(url, "/token-denied") == 0) {
        hold_token();
        atomic_fetch_add(&F.token_refusals, 1);
        return fake_answer(conn, 401, "{}", NULL, NULL);
    }
    if (strcmp(url, "/redir-cross") == 0) {
        snprintf(loc, sizeof(loc), "http://127.0.0.1:%u/token2?sig=x", F.tok2_port);
        return fake_answer(conn, 307, "", "Location", loc);
    }
    if (strcmp(url, "/redir-same") == 0)
        return fake_answer(conn, 302, "", "Location", "/token");
    if (strcmp(url, "/redir-loop") == 0) {
        atomic_fetch_add(&F.loop_hops, 1);
        return fake_answer(conn, 302, "", "Location", "/redir-loop");
    }
    return fake_answer(conn, 404, "{}", NULL, NULL);
}

/* The second host (another port: another origin). */
static enum MHD_Result fake_tok2(struct MHD_Connection *conn, const char *url)
{
    atomic_fetch_add(&F.tok2_requests, 1);
    if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization") != NULL)
        atomic_fetch_add(&F.tok2_auth, 1);
    if (strcmp(url, "/token2") == 0)
        return fake_token(conn);
    return fake_answer(conn, 404, "{}", NULL, NULL);
}

static enum MHD_Result fake_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload, size_t *upload_size, void **con_cls)
{
    (void)method, (void)version, (void)upload, (void)upload_size, (void)con_cls;
    if (cls == &F.reg)
        return fake_reg(conn, url);
    if (cls == &F.tok)
        return fake_tok(conn, url);
    return fake_tok2(conn, url);
}

static struct MHD_Daemon *fake_start(void *which, unsigned *port)
{
    struct sockaddr_in sa;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);      /* loopback only */
    sa.sin_port = 0;
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                         NULL, NULL, fake_handler, which, MHD_OPTION_SOCK_ADDR, &sa,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (d == NULL || (info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)) == NULL)
        abort();
    *port = info->port;
    return d;
}

/* Fresh fakes and counters for one test. */
static void fakes_start(void)
{
    memset(&F, 0, sizeof(F));
    F.reg = fake_start(&F.reg, &F.reg_port);
    F.tok = fake_start(&F.tok, &F.tok_port);
    F.tok2 = fake_start(&F.tok2, &F.tok2_port);
}

static void fakes_stop(void)
{
    MHD_stop_daemon(F.reg);
    MHD_stop_daemon(F.tok);
    MHD_stop_daemon(F.tok2);
}

/* A config with one upstream at the fake registry (owned by the caller's
 * stack; url points into url_buf). */
static void fake_config(struct om_config *cfg, char *url_buf, size_t cap, bool alice)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(url_buf, cap, "http://127.0.0.1:%u", F.reg_port);
    cfg->n_upstreams = 1;
    cfg->upstreams[0].name = "fake";
    cfg->upstreams[0].url = url_buf;
    cfg->upstreams[0].proxy = "";       /* never a proxy from the environment */
    if (alice) {
        cfg->upstreams[0].username = "alice";
        cfg->upstreams[0].password = "s3cret";
    }
    cfg->retries_max = 1;
}

struct puller {
    struct om_upstream *u;
    const char *repo;
    pthread_barrier_t *start;
    char path[64];
    int rc;
    long status;
};

static void *pull_manifest(void *arg)
{
    struct puller *p = arg;
    struct om_up_resp resp;
    struct om_up_req req = {.method = "GET", .path = p->path, .scope_repo = p->repo};

    snprintf(p->path, sizeof(p->path), "/v2/%s/manifests/1", p->repo);
    if (p->start != NULL)
        pthread_barrier_wait(p->start);
    p->rc = om_upstream_do(p->u, &req, &resp);
    p->status = resp.status;
    om_up_resp_clear(&resp);
    return NULL;
}

/* N_THREADS pulls of repo at once on u; the results land in ps. */
static void pull_together(struct om_upstream *u, const char *repo, struct puller *ps)
{
    pthread_t th[N_THREADS];
    pthread_barrier_t start;

    pthread_barrier_init(&start, NULL, N_THREADS);
    for (int i = 0; i < N_THREADS; i++) {
        ps[i] = (struct puller){.u = u, .repo = repo, .start = &start};
        if (pthread_create(&th[i], NULL, pull_manifest, &ps[i]) != 0)
            abort();
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
}

static void test_upstream__concurrent_token_misses_fetch_the_token_once(void)
{
    struct om_config cfg;
    char url[64];
    struct om_upstream *u = NULL;
    struct puller ps[N_THREADS], again = {0};

    fakes_start();
    atomic_store(&F.hold_tokens_for, N_THREADS);
    fake_config(&cfg, url, sizeof(url), false);
    CHECK_EQ_INT(om_upstream_new(&u, &cfg, 0), OM_OK);
    pull_together(u, "sf", ps);
    for (int i = 0; i < N_THREADS; i++) {
        CHECK_EQ_INT(ps[i].rc, OM_OK);
        CHECK_EQ_INT(ps[i].status, 200);
    }
    CHECK_EQ_INT(atomic_load(&F.tokens_issued), 1);
    /* And the cached token serves the next request without a fetch. */
    again.u = u;
    again.repo = "sf";
    pull_manifest(&again);
    CHECK_EQ_INT(again.status, 200);
    CHECK_EQ_INT(atomic_load(&F.tokens_issued), 1);
    om_upstream_free(u);
    fakes_stop();
}

static void test_upstream__tokens_are_cached_per_token_service_not_per_scope(void)
{
    struct om_config cfg;
    char url[64];
    struct om_upstream *u = NULL;
    struct puller a = {0}, b = {0};

    fakes_start();
    fake_config(&cfg, url, sizeof(url), false);
    CHECK_EQ_INT(om_upstream_new(&u, &cfg, 0), OM_OK);
    a.u = b.u = u;
    a.repo = "svca";
    b.repo = "svcb";
    pull_manifest(&a);            /* realm /token, scope repository:shared:pull */
    CHECK_EQ_INT(a.status, 200);
    CHECK_EQ_INT(atomic_load(&F.tokens_issued), 1);
    pull_manifest(&b);            /* the same scope from another realm */
    CHECK_EQ_INT(b.status, 200);
    CHECK_EQ_INT(atomic_load(&F.tokb_requests), 1); /* not /token's token */
    CHECK_EQ_INT(atomic_load(&F.tokens_issued), 2);
    pull_manifest(&a);            /* each answered from its own cache entry */
    pull_manifest(&b);
    CHECK_EQ_INT(a.status, 200);
    CHECK_EQ_INT(b.status, 200);
    CHECK_EQ_INT(atomic_load(&F.tokens_issued), 2);
    om_upstream_free(u);
    fakes_stop();
}

static void test_upstream__a_refused_token_fetch_answers_every_waiter(void)
{
    struct om_config cfg;
    char url[64];
    struct om_upstream *u = NULL;
    struct puller ps[N_THREADS];

    fakes_start();
    atomic_store(&F.hold_tokens_for, N_THREADS);
    fake_config(&cfg, url, sizeof(url), false);
    CHECK_EQ_INT(om_upstream_new(&u, &cfg, 0), OM_OK);
    pull_together(u, "denied", ps);
    for (int i = 0; i < N_THREADS; i++) {
        CHECK_EQ_INT(ps[i].rc, OM_OK);          /* an HTTP answer: the 401 */
        CHECK_EQ_INT(ps[i].status, 401);
    }
    CHECK_EQ_INT(atomic_load(&F.token_refusals), 1);
    om_upstream_free(u);
    fakes_stop();
}

static void test_upstream__token_realm_redirect_to_another_host_drops_the_credentials(void)
{
    struct om_config cfg;
    char url[64];
    struct om_upstream *u = NULL;
    struct puller p = {0};

    fakes_start();
    fake_config(&cfg, url, sizeof(url), true);
    CHECK_EQ_INT(om_upstream_new(&u, &cfg, 0), OM_OK);
    p.u = u;
    p.repo = "cross";
    pull_manifest(&p);
    CHECK_EQ_INT(p.rc, OM_OK);
    CHECK_EQ_INT(p.status, 200);                    /* the token from host 2 worked */
    CHECK_EQ_INT(atomic_load(&F.realm_basic), 1);   /* the realm got the credentials */
    CHECK_EQ_INT(atomic_load(&F.tok2_requests), 1);
    CHECK_EQ_INT(atomic_load(&F.tok2_auth), 0);     /* the other host got none */
    CHECK_EQ_INT(atomic_load(&F.reg_basic), 0);     /* the registry never the password */
    om_upstream_free(u);
    fakes_stop();
}

static void test_upstream__token_realm_redirect_on_its_own_origin_keeps_the_credentials(void)
{
    struct om_config cfg;
    char url[64];
    struct om_upstream *u = NULL;
    struct puller p = {0};

    fakes_start();
    fake_config(&cfg, url, sizeof(url), true);
    CHECK_EQ_INT(om_upstream_new(&u, &cfg, 0), OM_OK);
    p.u = u;
    p.repo = "same";
    pull_manifest(&p);
    CHECK_EQ_INT(p.rc, OM_OK);
    CHECK_EQ_INT(p.status, 200);
    CHECK_EQ_INT(atomic_load(&F.realm_basic), 2);   /* /redir-same and /token */
    CHECK_EQ_INT(atomic_load(&F.realm_other_auth), 0);
    CHECK_EQ_INT(atomic_load(&F.tokens_issued), 1);
    om_upstream_free(u);
    fakes_stop();
}

static void test_upstream__token_realm_redirect_loop_stops_after_five_redirects(void)
{
    struct om_config cfg;
    char url[64];
    struct om_upstream *u = NULL;
    struct puller p = {0};

    fakes_start();
    fake_config(&cfg, url, sizeof(url), false);
    CHECK_EQ_INT(om_upstream_new(&u, &cfg, 0), OM_OK);
    p.u = u;
    p.repo = "loop";
    pull_manifest(&p);
    CHECK_EQ_INT(p.rc, OM_ERR_UPSTREAM);
    CHECK_EQ_INT(atomic_load(&F.loop_hops), OM_UP_MAX_REDIRECTS + 1);
    om_upstream_free(u);
    fakes_stop();
}

/* A loopback port nothing listens on (connections are refused). */
static unsigned closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        abort();
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_upstream__a_dead_first_url_is_skipped_and_the_next_one_serves(void)
{
    struct om_config cfg;
    char url[64], dead[64];
    struct om_upstream *u = NULL;
    struct puller p = {0};
    struct om_upstream_url_stats st[OM_MAX_UPSTREAM_URLS];

    fakes_start();
    fake_config(&cfg, url, sizeof(url), false);
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%u", closed_port());
    cfg.upstreams[0].urls[0] = dead;
    cfg.upstreams[0].urls[1] = url;
    cfg.upstreams[0].n_urls = 2;
    cfg.upstreams[0].url = dead;
    CHECK_EQ_INT(om_upstream_new(&u, &cfg, 0), OM_OK);
    p.u = u;
    p.repo = "sf";
    pull_manifest(&p);
    CHECK_EQ_INT(p.rc, OM_OK);
    CHECK_EQ_INT(p.status, 200);        /* from the second URL, at once */
    CHECK_EQ_INT(om_upstream_url_stats(u, st, OM_ARRAY_LEN(st)), 2);
    CHECK_EQ_STR(st[0].url, dead);
    CHECK_EQ_INT(st[0].requests, 1);
    CHECK_EQ_INT(st[0].errors, 1);
    CHECK_EQ_INT(st[0].failures, 1);
    CHECK(!st[0].healthy && st[0].asked);
    CHECK(st[0].backoff_until_ms > om_up_wall_ms());
    CHECK(st[0].last_error[0] != '\0');
    CHECK(st[1].healthy);
    CHECK_EQ_INT(st[1].requests, 1);
    /* While it backs off, the dead one is not tried. */
    pull_manifest(&p);
    CHECK_EQ_INT(p.status, 200);
    om_upstream_url_stats(u, st, OM_ARRAY_LEN(st));
    CHECK_EQ_INT(st[0].requests, 1);
    CHECK_EQ_INT(st[1].requests, 2);
    om_upstream_free(u);
    fakes_stop();
}

static void test_upstream__an_account_that_gets_429_is_skipped_and_the_pull_goes_on(void)
{
    struct om_config cfg;
    char url[64];
    struct om_upstream *u = NULL;
    struct puller p = {0};
    struct om_upstream_account_stats st[OM_MAX_CREDENTIALS];

    fakes_start();
    atomic_store(&F.limit_bob, 1);
    fake_config(&cfg, url, sizeof(url), false);
    cfg.upstreams[0].credentials[0] = (struct om_credential_cfg){.username = "alice",
                                                                 .password = "s3cret"};
    cfg.upstreams[0].credentials[1] = (struct om_credential_cfg){.username = "bob",
                                                                 .password = "pw2"};
    cfg.upstreams[0].n_credentials = 2;
    CHECK_EQ_INT(om_upstream_new(&u, &cfg, 0), OM_OK);
    p.u = u;
    p.repo = "acct";
    for (int i = 0; i < 6; i++) {
        pull_manifest(&p);
        CHECK_EQ_INT(p.rc, OM_OK);
        CHECK_EQ_INT(p.status, 200);
    }
    CHECK_EQ_INT(atomic_load(&F.bob_429s), 1);  /* then skipped: limited for its window */
    CHECK_EQ_INT(atomic_load(&F.alice_ok), 6);
    CHECK_EQ_INT(om_upstream_account_stats(u, st, OM_ARRAY_LEN(st)), 2);
    CHECK_EQ_STR(st[0].username, "alice");
    CHECK_EQ_STR(st[1].username, "bob");
    CHECK_EQ_INT(st[1].rate_limited, 1);
    CHECK_EQ_INT(st[1].ratelimit_remaining, 0);
    CHECK(st[1].limited_until_ms > om_up_wall_ms() + 60 * 1000); /* w=120 */
    CHECK_EQ_INT(st[0].rate_limited, 0);
    CHECK_EQ_INT(st[0].limited_until_ms, 0);
    CHECK_EQ_INT(st[0].requests, 6);
    /* One token per account: bob's is not offered for alice's requests. */
    CHECK_EQ_INT(atomic_load(&F.tokens_issued), 2);
    /* Once bob's limit is over he takes his turns again. */
    atomic_store(&F.limit_bob, 0);
    pthread_mutex_lock(&u->stats_mu);
    u->acct[1].limited_until_mono = 0;
    pthread_mutex_unlock(&u->stats_mu);
    pull_manifest(&p);
    pull_manifest(&p);
    CHECK_EQ_INT(atomic_load(&F.bob_ok), 1);
    om_upstream_free(u);
    fakes_stop();
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
    RUN(test_upstream__error_code_of_an_oci_error_body);
    RUN(test_upstream__retry_after_seconds_and_garbage);
    RUN(test_upstream__retry_after_http_dates);
    RUN(test_upstream__ratelimit_remaining);
    RUN(test_upstream__ratelimit_window);
    RUN(test_upstream__content_length_table_and_truncated_prefixes);
    RUN(test_upstream__content_range_is_parsed_strictly);
    RUN(test_upstream__header_safe_refuses_what_could_end_a_header);
    RUN(test_upstream__backoff_honours_retry_after_then_jitters_a_doubling_window);
    RUN(test_upstream__only_network_errors_are_retried);
    RUN(test_upstream__concurrent_token_misses_fetch_the_token_once);
    RUN(test_upstream__tokens_are_cached_per_token_service_not_per_scope);
    RUN(test_upstream__a_refused_token_fetch_answers_every_waiter);
    RUN(test_upstream__token_realm_redirect_to_another_host_drops_the_credentials);
    RUN(test_upstream__token_realm_redirect_on_its_own_origin_keeps_the_credentials);
    RUN(test_upstream__token_realm_redirect_loop_stops_after_five_redirects);
    RUN(test_upstream__a_dead_first_url_is_skipped_and_the_next_one_serves);
    RUN(test_upstream__an_account_that_gets_429_is_skipped_and_the_pull_goes_on);
    return test_done();
}
