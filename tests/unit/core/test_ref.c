/* test_ref.c — names, tags, digests, references, Range headers, /v2/ paths
 * and percent encoding (src/ref.c).  Table driven; every parser is also fed
 * every truncated prefix of a valid input. */
#include <stdlib.h>

#include "core/ref.h"
#include "test.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIGEST "sha256:" HEX64
/* SHA-256 of the empty string. */
#define EMPTY_SHA "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* A string of n copies of c (n < sizeof buf). */
static const char *rep(char *buf, size_t bufsz, char c, size_t n)
{
    if (n >= bufsz)
        n = bufsz - 1;
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

/* ---- names ------------------------------------------------------------ */

static void test_ref__name_grammar_table(void)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"a", true},
        {"0", true},
        {"nginx", true},
        {"library/nginx", true},
        {"docker.io/library/nginx", true},
        {"registry.k8s.io/coredns/coredns", true},
        {"a/b/c/d/e/f", true},
        {"a.b", true},
        {"a_b", true},
        {"a__b", true},
        {"a-b", true},
        {"a--b", true},
        {"a---------b", true},
        {"a1.b2_c3__d4-e5", true},
        {"manifests", true},
        {"a/manifests/blobs", true},
        {"1.2.3", true},
        {"", false},
        {"A", false},
        {"Nginx", false},
        {"library/Nginx", false},
        {"a.", false},
        {".a", false},
        {"a..b", false},
        {"a._b", false},
        {"a_.b", false},
        {"a.-b", false},
        {"a-.b", false},
        {"a___b", false},
        {"a_-b", false},
        {"a-_b", false},
        {"a_", false},
        {"a__", false},
        {"_a", false},
        {"__a", false},
        {"a-", false},
        {"-a", false},
        {"a/", false},
        {"/a", false},
        {"/", false},
        {"a//b", false},
        {"a/./b", false},
        {"a/../b", false},
        {"..", false},
        {".", false},
        {"a/-b", false},
        {"a/.b", false},
        {"a/_b", false},
        {"a-/b", false},
        {"a b", false},
        {"a:b", false},
        {"a:5000/b", false},
        {"a@b", false},
        {"a%2eb", false},
        {"%2e%2e", false},
        {"a\\b", false},
        {"a?b", false},
        {"a\tb", false},
        {"caf\xc3\xa9", false},
        {"a\x7f", false},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        bool got = om_ref_name_valid(cases[i].s, strlen(cases[i].s));
        if (got != cases[i].ok)
            fprintf(stderr, "  name \"%s\": got %d\n", cases[i].s, got);
        CHECK(got == cases[i].ok);
    }
    CHECK(!om_ref_name_valid(NULL, 0));
    CHECK(!om_ref_name_valid("a\0b", 3)); /* an embedded NUL is not a name */
    CHECK(om_ref_name_valid("ab", 1));     /* only len bytes are read */
}

static void test_ref__name_length_limit_is_255_bytes(void)
{
    char buf[300];
    rep(buf, sizeof(buf), 'a', 255);
    CHECK(om_ref_name_valid(buf, 255));
    rep(buf, sizeof(buf), 'a', 256);
    CHECK(!om_ref_name_valid(buf, 256));
    /* The limit is on the whole name, not a component. */
    rep(buf, sizeof(buf), 'a', 256);
    buf[100] = '/';
    buf[200] = '/';
    CHECK(!om_ref_name_valid(buf, 256));
    CHECK(om_ref_name_valid(buf, 255));
}

/* Every prefix of a valid name is valid exactly when it ends in [a-z0-9]
 * (every separator in it is one character wide or a "__" / "--" run). */
static void test_ref__name_truncated_prefixes_are_valid_only_at_alnum(void)
{
    static const char *full[] = {"docker.io/library/nginx", "a__b--c.d/e_f", "x-y/z"};
    for (size_t f = 0; f < OM_ARRAY_LEN(full); f++) {
        size_t n = strlen(full[f]);
        for (size_t k = 0; k <= n; k++) {
            char last = k > 0 ? full[f][k - 1] : '\0';
            bool want = (last >= 'a' && last <= 'z') || (last >= '0' && last <= '9');
            CHECK(om_ref_name_valid(full[f], k) == want);
        }
    }
}

/* ---- tags ------------------------------------------------------------- */

static void test_ref__tag_grammar_table(void)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"latest", true},
        {"v1.2.3", true},
        {"1.25-alpine", true},
        {"_", true},
        {"_x", true},
        {"A", true},
        {"Latest", true},
        {"a.-_b", true},
        {"a..", true},
        {"", false},
        {".hidden", false},
        {"-rm", false},
        {".", false},
        {"a:b", false},
        {"a/b", false},
        {"a b", false},
        {"a+b", false},
        {"a@b", false},
        {"a%20", false},
        {"sha256:" HEX64, false},
        {"caf\xc3\xa9", false},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        bool got = om_ref_tag_valid(cases[i].s, strlen(cases[i].s));
        if (got != cases[i].ok)
            fprintf(stderr, "  tag \"%s\": got %d\n", cases[i].s, got);
        CHECK(got == cases[i].ok);
    }
    CHECK(!om_ref_tag_valid(NULL, 0));
    CHECK(!om_ref_tag_valid("a\0b", 3));
}

static void test_ref__tag_length_limit_is_128(void)
{
    char buf[200];
    rep(buf, sizeof(buf), 'x', 128);
    CHECK(om_ref_tag_valid(buf, 128));
    rep(buf, sizeof(buf), 'x', 129);
    CHECK(!om_ref_tag_valid(buf, 129));
}

static void test_ref__tag_truncated_prefixes(void)
{
    const char *full = "v1.2.3-rc_1";
    for (size_t k = 0; k <= strlen(full); k++)
        CHECK(om_ref_tag_valid(full, k) == (k > 0));
}

/* ---- digests and references ------------------------------------------ */

static void test_ref__digest_accepts_only_lowercase_sha256(void)
{
    om_digest d;
    CHECK_EQ_INT(om_digest_parse(&d, DIGEST, strlen(DIGEST)), OM_OK);
    CHECK_EQ_STR(d.str, DIGEST);
    CHECK_EQ_STR(om_digest_hex(&d), HEX64);

    static const char *bad[] = {
        "",
        "sha256:",
        "sha256",
        "sha256" HEX64,                 /* missing colon */
        "sha256:" HEX64 "0",            /* 65 hex: too long */
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", /* 63 */
        "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "SHA256:" HEX64,
        "Sha256:" HEX64,
        "sha512:" HEX64 HEX64,
        "sha384:" HEX64,
        "md5:0123456789abcdef0123456789abcdef",
        "sha256:g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        " sha256:" HEX64,
        "sha256:" HEX64 " ",
        "sha256: " HEX64,
        "sha256::" HEX64,
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde/",
        "sha256+b64:" HEX64,
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++) {
        snprintf(d.str, sizeof(d.str), "junk");
        CHECK_EQ_INT(om_digest_parse(&d, bad[i], strlen(bad[i])), OM_ERR_INVALID);
        CHECK_EQ_STR(d.str, ""); /* never half-filled */
    }
    CHECK_EQ_INT(om_digest_parse(&d, NULL, 0), OM_ERR_INVALID);
    /* An embedded NUL in place of a hex digit. */
    char nul[sizeof(DIGEST)];
    memcpy(nul, DIGEST, sizeof(DIGEST));
    nul[40] = '\0';
    CHECK_EQ_INT(om_digest_parse(&d, nul, strlen(DIGEST)), OM_ERR_INVALID);
}

static void test_ref__digest_truncated_prefixes_are_invalid(void)
{
    om_digest d;
    size_t n = strlen(DIGEST);
    for (size_t k = 0; k < n; k++)
        CHECK_EQ_INT(om_digest_parse(&d, DIGEST, k), OM_ERR_INVALID);
    CHECK_EQ_INT(om_digest_parse(&d, DIGEST, n), OM_OK);
}

static void test_ref__digest_from_raw_sha256_is_lowercase_hex(void)
{
    static const unsigned char raw[32] = {
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
        0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
        0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
    };
    om_digest d, back;
    om_digest_from_sha256(&d, raw);
    CHECK_EQ_STR(d.str, EMPTY_SHA);
    CHECK_EQ_INT(strlen(d.str), OM_DIGEST_MAX);
    CHECK_EQ_INT(om_digest_parse(&back, d.str, strlen(d.str)), OM_OK);
    CHECK_EQ_STR(back.str, d.str);
}

static void test_ref__reference_is_tag_or_digest(void)
{
    om_reference r;
    CHECK_EQ_INT(om_reference_parse(&r, "latest", 6), OM_OK);
    CHECK(!r.is_digest);
    CHECK_EQ_STR(r.tag, "latest");
    CHECK_EQ_STR(om_reference_str(&r), "latest");

    CHECK_EQ_INT(om_reference_parse(&r, DIGEST, strlen(DIGEST)), OM_OK);
    CHECK(r.is_digest);
    CHECK_EQ_STR(r.digest.str, DIGEST);
    CHECK_EQ_STR(om_reference_str(&r), DIGEST);

    char tag128[OM_TAG_MAX + 1];
    rep(tag128, sizeof(tag128), 't', OM_TAG_MAX);
    CHECK_EQ_INT(om_reference_parse(&r, tag128, OM_TAG_MAX), OM_OK);
    CHECK_EQ_STR(r.tag, tag128);

    static const char *bad[] = {"", ".x", "-x", "a/b", "sha256:abc", "sha512:" HEX64 HEX64,
                                "SHA256:" HEX64, "la test", "latest:"};
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(om_reference_parse(&r, bad[i], strlen(bad[i])), OM_ERR_INVALID);
        CHECK(!r.is_digest);
        CHECK_EQ_STR(om_reference_str(&r), "");
    }
    char long_tag[OM_TAG_MAX + 2];
    rep(long_tag, sizeof(long_tag), 't', OM_TAG_MAX + 1);
    CHECK_EQ_INT(om_reference_parse(&r, long_tag, OM_TAG_MAX + 1), OM_ERR_INVALID);
    CHECK_EQ_INT(om_reference_parse(&r, NULL, 0), OM_ERR_INVALID);
}

static void test_ref__reference_truncated_digest_prefixes_are_invalid(void)
{
    om_reference r;
    size_t n = strlen(DIGEST);
    for (size_t k = 0; k < n; k++) {
        /* "sha256" and shorter are plain tags; from the ':' on it is a
         * digest that is too short. */
        int want = k >= 1 && k <= 6 ? OM_OK : OM_ERR_INVALID;
        CHECK_EQ_INT(om_reference_parse(&r, DIGEST, k), want);
    }
}

/* ---- Range ------------------------------------------------------------ */

#define R_MAX UINT64_MAX

struct range_case {
    const char *hdr;
    uint64_t size;
    int err;
    size_t n;
    om_byte_range r[3];
};

static void check_range(const struct range_case *c)
{
    om_range_set set;
    memset(&set, 0xa5, sizeof(set));
    int err = om_range_parse(&set, c->hdr, strlen(c->hdr), c->size);
    if (err != c->err || set.n != c->n)
        fprintf(stderr, "  range \"%s\" size %llu: err %d n %zu\n", c->hdr,
                (unsigned long long)c->size, err, set.n);
    CHECK_EQ_INT(err, c->err);
    CHECK_EQ_INT(set.n, c->n);
    for (size_t i = 0; i < c->n && i < set.n && i < OM_ARRAY_LEN(c->r); i++) {
        CHECK(set.r[i].first == c->r[i].first);
        CHECK(set.r[i].last == c->r[i].last);
    }
}

static void test_ref__range_table(void)
{
    static const struct range_case cases[] = {
        {"bytes=0-0", 10, OM_OK, 1, {{0, 0}}},
        {"bytes=-1", 10, OM_OK, 1, {{9, 9}}},
        {"bytes=5-", 10, OM_OK, 1, {{5, 9}}},
        {"bytes=0-", 10, OM_OK, 1, {{0, 9}}},
        {"bytes=0-1,5-9", 10, OM_OK, 2, {{0, 1}, {5, 9}}},
        {"bytes=0-1, 5-9", 10, OM_OK, 2, {{0, 1}, {5, 9}}},
        {"bytes=0-1 ,\t5-9", 10, OM_OK, 2, {{0, 1}, {5, 9}}},
        {"bytes=0-1,,5-9", 10, OM_OK, 2, {{0, 1}, {5, 9}}},
        {"bytes=0-1,", 10, OM_OK, 1, {{0, 1}}},
        {"bytes=,0-1", 10, OM_OK, 1, {{0, 1}}},
        {"bytes= 0-1", 10, OM_OK, 1, {{0, 1}}},
        {" bytes=0-1 ", 10, OM_OK, 1, {{0, 1}}},
        {"BYTES=0-1", 10, OM_OK, 1, {{0, 1}}},
        {"Bytes=2-3", 10, OM_OK, 1, {{2, 3}}},
        {"bytes=5-9,0-1", 10, OM_OK, 2, {{5, 9}, {0, 1}}},     /* header order */
        {"bytes=0-5,3-8", 10, OM_ERR_TOOBIG, 0, {{0}}},        /* overlap: ignored (200) */
        {"bytes=0-,0-", 10, OM_ERR_TOOBIG, 0, {{0}}},
        {"bytes=3-8,0-3", 10, OM_ERR_TOOBIG, 0, {{0}}},        /* one byte shared */
        {"bytes=-3,5-", 10, OM_ERR_TOOBIG, 0, {{0}}},          /* 7-9 and 5-9 */
        {"bytes=0-4,5-9", 10, OM_OK, 2, {{0, 4}, {5, 9}}},     /* adjacent is not overlap */
        {"bytes=1-2,100-200,1-1", 10, OM_ERR_TOOBIG, 0, {{0}}},
        {"bytes=1-2,100-200", 10, OM_OK, 1, {{1, 2}}},         /* unsatisfiable dropped */
        {"bytes=100-200,-3", 10, OM_OK, 1, {{7, 9}}},
        {"bytes=4-100", 5, OM_OK, 1, {{4, 4}}},
        {"bytes=-5", 3, OM_OK, 1, {{0, 2}}},
        {"bytes=007-008", 10, OM_OK, 1, {{7, 8}}},
        {"bytes=0-99999999999999999999999", 10, OM_OK, 1, {{0, 9}}},
        {"bytes=0-18446744073709551616", 10, OM_OK, 1, {{0, 9}}}, /* 2^64 */
        {"bytes=-99999999999999999999999", 10, OM_OK, 1, {{0, 9}}},
        {"bytes=18446744073709551614-", R_MAX, OM_OK, 1, {{R_MAX - 1, R_MAX - 1}}},
        {"bytes=0-18446744073709551615", R_MAX, OM_OK, 1, {{0, R_MAX - 1}}},
        {"bytes=5-9", 10, OM_OK, 1, {{5, 9}}},
        /* well formed, nothing satisfiable: 416 */
        {"bytes=100-", 10, OM_ERR_NOTFOUND, 0, {{0, 0}}},
        {"bytes=10-10", 10, OM_ERR_NOTFOUND, 0, {{0, 0}}},
        {"bytes=5-5", 5, OM_ERR_NOTFOUND, 0, {{0, 0}}},
        {"bytes=-0", 10, OM_ERR_NOTFOUND, 0, {{0, 0}}},
        {"bytes=0-", 0, OM_ERR_NOTFOUND, 0, {{0, 0}}},
        {"bytes=-1", 0, OM_ERR_NOTFOUND, 0, {{0, 0}}},
        {"bytes=99999999999999999999999-", 10, OM_ERR_NOTFOUND, 0, {{0, 0}}},
        {"bytes=18446744073709551615-18446744073709551615", R_MAX, OM_ERR_NOTFOUND, 0, {{0, 0}}},
        {"bytes=20-30,40-", 10, OM_ERR_NOTFOUND, 0, {{0, 0}}},
        /* bad syntax or unit: ignore the header */
        {"bytes=10-5", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=0-1,10-5", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=99999999999999999999999-99999999999999999999998", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=18446744073709551616-18446744073709551615", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"items=0-1", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=,", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes= , ", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=-", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=1", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=a-b", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=0-1;", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=0-1x", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes 0-1", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes =0-1", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=0 -1", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=0- 1", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=0--1", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=--1", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=+1-2", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=1-+2", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=0x1-2", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytes=0-1 5-9", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"bytesx=0-1", 10, OM_ERR_INVALID, 0, {{0, 0}}},
        {"", 10, OM_ERR_INVALID, 0, {{0, 0}}},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++)
        check_range(&cases[i]);
    om_range_set set;
    CHECK_EQ_INT(om_range_parse(&set, NULL, 0, 10), OM_ERR_INVALID);
    /* An embedded NUL is not whitespace. */
    CHECK_EQ_INT(om_range_parse(&set, "bytes=0-1\0", 10, 10), OM_ERR_INVALID);
}

/* Builds "bytes=0-0,2-2,4-4,..." with n ranges. */
static void many_ranges(char *buf, size_t bufsz, size_t n)
{
    size_t o = (size_t)snprintf(buf, bufsz, "bytes=");
    for (size_t i = 0; i < n && o < bufsz; i++)
        o += (size_t)snprintf(buf + o, bufsz - o, "%s%zu-%zu", i ? "," : "", 2 * i, 2 * i);
}

static void test_ref__range_count_limit_is_16(void)
{
    char buf[512];
    om_range_set set;

    many_ranges(buf, sizeof(buf), OM_RANGE_MAX);
    CHECK_EQ_INT(om_range_parse(&set, buf, strlen(buf), 1000), OM_OK);
    CHECK_EQ_INT(set.n, OM_RANGE_MAX);
    CHECK(set.r[15].first == 30 && set.r[15].last == 30);

    many_ranges(buf, sizeof(buf), OM_RANGE_MAX + 1);
    CHECK_EQ_INT(om_range_parse(&set, buf, strlen(buf), 1000), OM_ERR_TOOBIG);
    CHECK_EQ_INT(set.n, 0);
    /* Unsatisfiable ones count too: the limit is on the work, not the result. */
    CHECK_EQ_INT(om_range_parse(&set, buf, strlen(buf), 1), OM_ERR_TOOBIG);
    /* Empty list elements do not count. */
    const char *sparse = "bytes=0-0,,,,,,,,,,,,,,,,,,,,,,,,,,,,1-1";
    CHECK_EQ_INT(om_range_parse(&set, sparse, strlen(sparse), 10), OM_OK);
    CHECK_EQ_INT(set.n, 2);
}

static void test_ref__range_truncated_prefixes(void)
{
    const char *full = "bytes=0-1,5-9";
    /* expected result for each prefix length 0..13 */
    static const int want[] = {
        OM_ERR_INVALID, OM_ERR_INVALID, OM_ERR_INVALID, OM_ERR_INVALID, OM_ERR_INVALID,
        OM_ERR_INVALID, /* "bytes" */
        OM_ERR_INVALID, /* "bytes=" */
        OM_ERR_INVALID, /* "bytes=0" */
        OM_OK,          /* "bytes=0-" */
        OM_OK,          /* "bytes=0-1" */
        OM_OK,          /* "bytes=0-1," */
        OM_ERR_INVALID, /* "bytes=0-1,5" */
        OM_OK,          /* "bytes=0-1,5-" */
        OM_OK,          /* "bytes=0-1,5-9" (the full header) */
    };
    static const size_t want_n[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 2, 2};
    om_range_set set;
    CHECK_EQ_INT(OM_ARRAY_LEN(want), strlen(full) + 1);
    for (size_t k = 0; k <= strlen(full) && k < OM_ARRAY_LEN(want); k++) {
        CHECK_EQ_INT(om_range_parse(&set, full, k, 10), want[k]);
        CHECK_EQ_INT(set.n, want_n[k]);
    }
}

/* ---- /v2/ paths ------------------------------------------------------- */

struct v2_case {
    const char *path;
    om_v2_fault fault;
    om_v2_kind kind; /* checked unless fault is NOT_API */
    const char *name;
    const char *ref; /* NULL: not checked */
};

static void check_v2(const struct v2_case *c)
{
    om_v2_path p;
    om_v2_fault f = (om_v2_fault)-1;
    int err = om_v2_path_parse(&p, c->path, strlen(c->path), &f);
    if (f != c->fault)
        fprintf(stderr, "  path \"%s\": fault %d\n", c->path, (int)f);
    CHECK_EQ_INT(f, c->fault);
    CHECK_EQ_INT(err, c->fault == OM_V2F_NONE ? OM_OK : OM_ERR_INVALID);
    if (c->fault != OM_V2F_NOT_API) {
        CHECK_EQ_INT(p.kind, c->kind);
    }
    if (c->name != NULL)
        CHECK_EQ_STR(p.name, c->name);
    if (c->ref != NULL)
        CHECK_EQ_STR(om_reference_str(&p.ref), c->ref);
}

static void test_ref__v2_path_table(void)
{
    static const struct v2_case cases[] = {
        {"/v2/", OM_V2F_NONE, OM_V2_BASE, "", NULL},
        {"/v2", OM_V2F_NONE, OM_V2_BASE, "", NULL},
        {"/v2/_catalog", OM_V2F_NONE, OM_V2_CATALOG, "", NULL},
        {"/v2/nginx/manifests/latest", OM_V2F_NONE, OM_V2_MANIFEST, "nginx", "latest"},
        {"/v2/library/nginx/manifests/1.25-alpine", OM_V2F_NONE, OM_V2_MANIFEST,
         "library/nginx", "1.25-alpine"},
        {"/v2/library/nginx/manifests/" DIGEST, OM_V2F_NONE, OM_V2_MANIFEST, "library/nginx",
         DIGEST},
        {"/v2/docker.io/library/nginx/manifests/latest", OM_V2F_NONE, OM_V2_MANIFEST,
         "docker.io/library/nginx", "latest"},
        {"/v2/nginx/blobs/" DIGEST, OM_V2F_NONE, OM_V2_BLOB, "nginx", DIGEST},
        {"/v2/nginx/tags/list", OM_V2F_NONE, OM_V2_TAGS, "nginx", NULL},
        {"/v2/quay.io/coreos/etcd/tags/list", OM_V2F_NONE, OM_V2_TAGS, "quay.io/coreos/etcd",
         NULL},
        {"/v2/nginx/referrers/" DIGEST, OM_V2F_NONE, OM_V2_REFERRERS, "nginx", DIGEST},
        {"/v2/nginx/blobs/uploads/", OM_V2F_NONE, OM_V2_UPLOAD, "nginx", NULL},
        {"/v2/library/nginx/blobs/uploads/123e4567-e89b-12d3", OM_V2F_NONE, OM_V2_UPLOAD,
         "library/nginx", NULL},
        /* names with components that look like endpoints: the last marker wins */
        {"/v2/a/manifests/b/manifests/latest", OM_V2F_NONE, OM_V2_MANIFEST, "a/manifests/b",
         "latest"},
        {"/v2/manifests/manifests/latest", OM_V2F_NONE, OM_V2_MANIFEST, "manifests", "latest"},
        {"/v2/blobs/blobs/" DIGEST, OM_V2F_NONE, OM_V2_BLOB, "blobs", DIGEST},
        {"/v2/a/blobs/manifests/v1", OM_V2F_NONE, OM_V2_MANIFEST, "a/blobs", "v1"},
        {"/v2/a/manifests/blobs/" DIGEST, OM_V2F_NONE, OM_V2_BLOB, "a/manifests", DIGEST},
        {"/v2/tags/list/tags/list", OM_V2F_NONE, OM_V2_TAGS, "tags/list", NULL},
        {"/v2/a/tags/list/manifests/x", OM_V2F_NONE, OM_V2_MANIFEST, "a/tags/list", "x"},
        {"/v2/a/blobs/uploads/manifests/latest", OM_V2F_NONE, OM_V2_MANIFEST,
         "a/blobs/uploads", "latest"},
        {"/v2/a/blobs/uploads/blobs/" DIGEST, OM_V2F_NONE, OM_V2_BLOB, "a/blobs/uploads",
         DIGEST},
        {"/v2/referrers/referrers/" DIGEST, OM_V2F_NONE, OM_V2_REFERRERS, "referrers", DIGEST},
        {"/v2/docker.io/library/manifests/manifests/manifests", OM_V2F_NONE, OM_V2_MANIFEST,
         "docker.io/library/manifests", "manifests"},
        /* bad names: 400 NAME_INVALID */
        {"/v2/%2e%2e/manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/a/%2e%2e/b/manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/a%2fb/manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/../manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/a/../b/blobs/" DIGEST, OM_V2F_NAME, OM_V2_BLOB, NULL, NULL},
        {"/v2/a/./b/tags/list", OM_V2F_NAME, OM_V2_TAGS, NULL, NULL},
        {"/v2/a//b/manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/nginx//manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2//nginx/manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/nginx//tags/list", OM_V2F_NAME, OM_V2_TAGS, NULL, NULL},
        {"/v2/Nginx/manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/library/NGINX/blobs/" DIGEST, OM_V2F_NAME, OM_V2_BLOB, NULL, NULL},
        {"/v2//manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/tags/list", OM_V2F_NAME, OM_V2_TAGS, NULL, NULL},
        {"/v2/a:b/manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/a b/manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/-a/manifests/latest", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/Nginx/manifests/bad!tag", OM_V2F_NAME, OM_V2_MANIFEST, NULL, NULL},
        {"/v2/nginx/blobs/uploads/..", OM_V2F_NONE, OM_V2_UPLOAD, "nginx", NULL},
        {"/v2/../blobs/uploads/", OM_V2F_NAME, OM_V2_UPLOAD, NULL, NULL},
        /* bad references: 404 MANIFEST_UNKNOWN */
        {"/v2/nginx/manifests/bad!tag", OM_V2F_TAG, OM_V2_MANIFEST, "nginx", NULL},
        {"/v2/nginx/manifests/", OM_V2F_TAG, OM_V2_MANIFEST, "nginx", NULL},
        {"/v2/nginx/manifests/.x", OM_V2F_TAG, OM_V2_MANIFEST, "nginx", NULL},
        {"/v2/nginx/manifests/-x", OM_V2F_TAG, OM_V2_MANIFEST, "nginx", NULL},
        {"/v2/nginx/manifests/a/b", OM_V2F_TAG, OM_V2_MANIFEST, "nginx", NULL},
        {"/v2/nginx/manifests/latest/", OM_V2F_TAG, OM_V2_MANIFEST, "nginx", NULL},
        {"/v2/nginx/manifests/sha256:abc", OM_V2F_TAG, OM_V2_MANIFEST, "nginx", NULL},
        {"/v2/nginx/manifests/%2e%2e", OM_V2F_TAG, OM_V2_MANIFEST, "nginx", NULL},
        {"/v2/nginx/manifests/..", OM_V2F_TAG, OM_V2_MANIFEST, "nginx", NULL},
        /* bad digests: 400 DIGEST_INVALID */
        {"/v2/nginx/blobs/latest", OM_V2F_DIGEST, OM_V2_BLOB, "nginx", NULL},
        {"/v2/nginx/blobs/", OM_V2F_DIGEST, OM_V2_BLOB, "nginx", NULL},
        {"/v2/nginx/blobs/uploads", OM_V2F_DIGEST, OM_V2_BLOB, "nginx", NULL},
        {"/v2/nginx/blobs/sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
         OM_V2F_DIGEST, OM_V2_BLOB, "nginx", NULL},
        {"/v2/nginx/blobs/" DIGEST "/", OM_V2F_DIGEST, OM_V2_BLOB, "nginx", NULL},
        {"/v2/nginx/referrers/sha512:" HEX64 HEX64, OM_V2F_DIGEST, OM_V2_REFERRERS, "nginx",
         NULL},
        {"/v2/nginx/referrers/latest", OM_V2F_DIGEST, OM_V2_REFERRERS, "nginx", NULL},
        /* not the API at all */
        {"", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"v2/", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/V2/", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v2x", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v3/", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v1/nginx/manifests/latest", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v2nginx/manifests/latest", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v2/nginx", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v2/nginx/", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v2//", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v2/nginx/tags", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v2/nginx/tags/list/", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v2/nginx/tags/listx", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v2/nginx/manifests", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v2/_catalog/", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/v2/_catalogx", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/api/v1/repositories", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
        {"/metrics", OM_V2F_NOT_API, OM_V2_BASE, NULL, NULL},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++)
        check_v2(&cases[i]);
}

static void test_ref__v2_path_length_limits(void)
{
    char path[600], comp[300];
    om_v2_path p;
    om_v2_fault f;

    /* A 255-byte name is fine, 256 is NAME_INVALID. */
    snprintf(path, sizeof(path), "/v2/%s/manifests/latest", rep(comp, sizeof(comp), 'a', 255));
    CHECK_EQ_INT(om_v2_path_parse(&p, path, strlen(path), &f), OM_OK);
    CHECK_EQ_INT(strlen(p.name), 255);
    snprintf(path, sizeof(path), "/v2/%s/manifests/latest", rep(comp, sizeof(comp), 'a', 256));
    CHECK_EQ_INT(om_v2_path_parse(&p, path, strlen(path), &f), OM_ERR_INVALID);
    CHECK_EQ_INT(f, OM_V2F_NAME);

    /* A 128-byte tag is fine, 129 is a malformed reference. */
    snprintf(path, sizeof(path), "/v2/nginx/manifests/%s", rep(comp, sizeof(comp), 't', 128));
    CHECK_EQ_INT(om_v2_path_parse(&p, path, strlen(path), &f), OM_OK);
    CHECK_EQ_INT(strlen(p.ref.tag), 128);
    snprintf(path, sizeof(path), "/v2/nginx/manifests/%s", rep(comp, sizeof(comp), 't', 129));
    CHECK_EQ_INT(om_v2_path_parse(&p, path, strlen(path), &f), OM_ERR_INVALID);
    CHECK_EQ_INT(f, OM_V2F_TAG);

    /* The fault pointer may be NULL; only len bytes are read. */
    CHECK_EQ_INT(om_v2_path_parse(&p, "/v2/nginx/tags/list", 19, NULL), OM_OK);
    CHECK_EQ_INT(om_v2_path_parse(&p, "/v2/nginx/tags/listXYZ", 19, &f), OM_OK);
    CHECK_EQ_INT(p.kind, OM_V2_TAGS);
    CHECK_EQ_INT(om_v2_path_parse(&p, NULL, 0, &f), OM_ERR_INVALID);
    CHECK_EQ_INT(f, OM_V2F_NOT_API);
    /* An embedded NUL never ends a name early. */
    CHECK_EQ_INT(om_v2_path_parse(&p, "/v2/a\0b/tags/list", 17, &f), OM_ERR_INVALID);
    CHECK_EQ_INT(f, OM_V2F_NAME);
}

/* Every prefix of a valid blob path: NOT_API until the "/blobs/" marker is
 * complete, then DIGEST until the digest is complete. */
static void test_ref__v2_blob_path_truncated_prefixes(void)
{
    const char *full = "/v2/docker.io/library/nginx/blobs/" DIGEST;
    size_t n = strlen(full);
    size_t marker_end = strlen("/v2/docker.io/library/nginx/blobs/");
    for (size_t k = 0; k <= n; k++) {
        om_v2_path p;
        om_v2_fault f = OM_V2F_NONE;
        om_v2_fault want;
        if (k == 3 || k == 4 || k == n)
            want = OM_V2F_NONE; /* "/v2", "/v2/", the full path */
        else if (k < marker_end)
            want = OM_V2F_NOT_API;
        else
            want = OM_V2F_DIGEST;
        om_v2_path_parse(&p, full, k, &f);
        if (f != want)
            fprintf(stderr, "  prefix %zu: fault %d, want %d\n", k, (int)f, (int)want);
        CHECK_EQ_INT(f, want);
    }
}

/* Every prefix of a valid manifest path: a tag prefix is itself a tag. */
static void test_ref__v2_manifest_path_truncated_prefixes(void)
{
    const char *full = "/v2/library/nginx/manifests/v1.25";
    size_t n = strlen(full);
    size_t marker_end = strlen("/v2/library/nginx/manifests/");
    for (size_t k = 0; k <= n; k++) {
        om_v2_path p;
        om_v2_fault f = OM_V2F_NONE;
        om_v2_fault want;
        if (k == 3 || k == 4 || k > marker_end)
            want = OM_V2F_NONE;
        else if (k < marker_end)
            want = OM_V2F_NOT_API;
        else
            want = OM_V2F_TAG;
        om_v2_path_parse(&p, full, k, &f);
        CHECK_EQ_INT(f, want);
        if (k > marker_end) {
            CHECK_EQ_STR(p.name, "library/nginx");
            CHECK_EQ_INT(strlen(p.ref.tag), k - marker_end);
        }
    }
}

static void test_ref__v2_tags_path_truncated_prefixes(void)
{
    const char *full = "/v2/a/tags/list";
    size_t n = strlen(full);
    for (size_t k = 0; k <= n; k++) {
        om_v2_path p;
        om_v2_fault f = OM_V2F_NONE;
        om_v2_fault want = k == 3 || k == 4 || k == n ? OM_V2F_NONE : OM_V2F_NOT_API;
        om_v2_path_parse(&p, full, k, &f);
        CHECK_EQ_INT(f, want);
    }
}

/* ---- percent encoding -------------------------------------------------- */

static void test_ref__url_decode_table(void)
{
    static const struct {
        const char *in;
        int err;
        const char *out;
    } cases[] = {
        {"docker.io", OM_OK, "docker.io"},
        {"", OM_OK, ""},
        {"docker%2Eio", OM_OK, "docker.io"},
        {"%2e%2E", OM_OK, ".."},
        {"library%2Fnginx", OM_OK, "library/nginx"},
        {"a+b", OM_OK, "a+b"},
        {"%25", OM_OK, "%"},
        {"%C3%A9", OM_OK, "\xc3\xa9"},
        {"%", OM_ERR_INVALID, ""},
        {"%4", OM_ERR_INVALID, ""},
        {"a%", OM_ERR_INVALID, ""},
        {"a%2", OM_ERR_INVALID, ""},
        {"%zz", OM_ERR_INVALID, ""},
        {"%g1", OM_ERR_INVALID, ""},
        {"%-1", OM_ERR_INVALID, ""},
        {"%00", OM_ERR_INVALID, ""},
        {"a%00b", OM_ERR_INVALID, ""},
    };
    char out[64];
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        snprintf(out, sizeof(out), "junk");
        CHECK_EQ_INT(om_url_decode(out, sizeof(out), cases[i].in, strlen(cases[i].in)),
                     cases[i].err);
        CHECK_EQ_STR(out, cases[i].out);
    }
    CHECK_EQ_INT(om_url_decode(out, sizeof(out), "a\0b", 3), OM_ERR_INVALID);
}

static void test_ref__link_next_table(void)
{
    static const char base[] = "/v2/library/alpine/tags/list";
    static const struct {
        const char *link;
        int err;
        const char *out;
    } cases[] = {
        /* what distribution 3, Docker Hub and quay send */
        {"</v2/library/alpine/tags/list?last=3.19&n=100>; rel=\"next\"", OM_OK,
         "/v2/library/alpine/tags/list?last=3.19&n=100"},
        {"</v2/library/alpine/tags/list?n=2&last=b>; rel=next", OM_OK,
         "/v2/library/alpine/tags/list?n=2&last=b"},
        {"</v2/library/alpine/tags/list>;rel = \"NEXT\"", OM_OK, "/v2/library/alpine/tags/list"},
        {"</v2/library/alpine/tags/list?last=a>; title=\"x\"; rel=\"prev next\"", OM_OK,
         "/v2/library/alpine/tags/list?last=a"},
        /* the first link-value with rel next counts */
        {"</v2/library/alpine/tags/list?p=1>; rel=\"prev\", </v2/library/alpine/tags/list?p=3>; "
         "rel=\"next\"", OM_OK, "/v2/library/alpine/tags/list?p=3"},
        /* no next */
        {"", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/list?p=1>; rel=\"prev\"", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/list?p=1>", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/list?p=1>; rel=\"nextpage\"", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/list?p=1>; title=\"next\"", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/list?p=1; rel=\"next\"", OM_ERR_INVALID, ""},
        {"next", OM_ERR_INVALID, ""},
        /* leaves the list being paged, or not a plain path */
        {"</v2/library/other/tags/list?last=a>; rel=\"next\"", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/listing>; rel=\"next\"", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/list/../../../../admin>; rel=\"next\"", OM_ERR_INVALID, ""},
        {"<https://evil.example/v2/library/alpine/tags/list?last=a>; rel=\"next\"", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/list?last=a b>; rel=\"next\"", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/list?last=a\tb>; rel=\"next\"", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/list?last=a#frag>; rel=\"next\"", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/list?last=\xc3\xa9>; rel=\"next\"", OM_ERR_INVALID, ""},
        {"</v2/library/alpine/tags/lis>; rel=\"next\"", OM_ERR_INVALID, ""},
    };
    char out[128];
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        snprintf(out, sizeof(out), "junk");
        int err = om_link_next(out, sizeof(out), cases[i].link, base);
        if (err != cases[i].err)
            fprintf(stderr, "  case %zu: %s\n", i, cases[i].link);
        CHECK_EQ_INT(err, cases[i].err);
        CHECK_EQ_STR(out, cases[i].out);
    }
    /* too small a buffer, no base, no link */
    char small[28]; /* the target is 28 bytes: no room for its NUL */
    CHECK_EQ_INT(om_link_next(small, sizeof(small), "</v2/library/alpine/tags/list>; rel=next", base),
                 OM_ERR_TOOBIG);
    CHECK_EQ_STR(small, "");
    CHECK_EQ_INT(om_link_next(out, sizeof(out), "</v2/x/tags/list?a>; rel=next", NULL), OM_ERR_INVALID);
    CHECK_EQ_INT(om_link_next(out, sizeof(out), NULL, base), OM_ERR_INVALID);
    CHECK_EQ_INT(om_link_next(out, 0, "</v2/x>; rel=next", "/v2/x"), OM_ERR_TOOBIG);
}

static void test_ref__url_decode_respects_output_size(void)
{
    char out[4];
    CHECK_EQ_INT(om_url_decode(out, sizeof(out), "abc", 3), OM_OK);
    CHECK_EQ_STR(out, "abc");
    CHECK_EQ_INT(om_url_decode(out, sizeof(out), "abcd", 4), OM_ERR_TOOBIG);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(om_url_decode(out, sizeof(out), "%41%42%43", 9), OM_OK);
    CHECK_EQ_STR(out, "ABC");
    CHECK_EQ_INT(om_url_decode(out, sizeof(out), "%41%42%43%44", 12), OM_ERR_TOOBIG);
    CHECK_EQ_INT(om_url_decode(out, 0, "a", 1), OM_ERR_TOOBIG);
    CHECK_EQ_INT(om_url_decode(out, 1, "", 0), OM_OK);
    CHECK_EQ_STR(out, "");
}

static void test_ref__url_decode_truncated_prefixes(void)
{
    const char *full = "a%2Fb";
    static const int want[] = {OM_OK, OM_OK, OM_ERR_INVALID, OM_ERR_INVALID, OM_OK, OM_OK};
    static const char *want_out[] = {"", "a", "", "", "a/", "a/b"};
    char out[16];
    for (size_t k = 0; k <= strlen(full); k++) {
        CHECK_EQ_INT(om_url_decode(out, sizeof(out), full, k), want[k]);
        CHECK_EQ_STR(out, want_out[k]);
    }
}

static void test_ref__url_encode_keeps_only_unreserved(void)
{
    char out[64];
    CHECK_EQ_INT(om_url_encode(out, sizeof(out), "library/nginx", 13), OM_OK);
    CHECK_EQ_STR(out, "library%2Fnginx");
    CHECK_EQ_INT(om_url_encode(out, sizeof(out), "aZ09-._~", 8), OM_OK);
    CHECK_EQ_STR(out, "aZ09-._~");
    CHECK_EQ_INT(om_url_encode(out, sizeof(out), "a b&c=d:e", 9), OM_OK);
    CHECK_EQ_STR(out, "a%20b%26c%3Dd%3Ae");
    CHECK_EQ_INT(om_url_encode(out, sizeof(out), "\xff\x01%", 3), OM_OK);
    CHECK_EQ_STR(out, "%FF%01%25");
    CHECK_EQ_INT(om_url_encode(out, sizeof(out), "a\0b", 3), OM_OK);
    CHECK_EQ_STR(out, "a%00b");
    CHECK_EQ_INT(om_url_encode(out, sizeof(out), "", 0), OM_OK);
    CHECK_EQ_STR(out, "");

    /* Exactly fitting and one byte short. */
    char small[4];
    CHECK_EQ_INT(om_url_encode(small, sizeof(small), "/", 1), OM_OK);
    CHECK_EQ_STR(small, "%2F");
    CHECK_EQ_INT(om_url_encode(small, sizeof(small), "a/", 2), OM_ERR_TOOBIG);
    CHECK_EQ_STR(small, "");
    CHECK_EQ_INT(om_url_encode(small, sizeof(small), "abc", 3), OM_OK);
    CHECK_EQ_INT(om_url_encode(small, sizeof(small), "abcd", 4), OM_ERR_TOOBIG);
    CHECK_EQ_INT(om_url_encode(small, 0, "a", 1), OM_ERR_TOOBIG);

    /* encode then decode is the identity */
    const char *raw = "repository:library/nginx:pull";
    char dec[64];
    CHECK_EQ_INT(om_url_encode(out, sizeof(out), raw, strlen(raw)), OM_OK);
    CHECK_EQ_INT(om_url_decode(dec, sizeof(dec), out, strlen(out)), OM_OK);
    CHECK_EQ_STR(dec, raw);
}

static void test_ref__request_name_may_start_with_host_and_port(void)
{
    static const struct {
        const char *s;
        bool ok;
    } t[] = {
        {"localhost:5000/team/app", true},
        {"127.0.0.1:5000/x", true},
        {"Registry.Example:443/a/b", true},
        {"localhost:5000", false},        /* a host alone is no repository */
        {"localhost:/x", false},
        {":5000/x", false},
        {"localhost:123456/x", false},
        {"local_host:5000/x", false},
        {"-host:5000/x", false},
        {"host.:5000/x", false},
        {"host:50a0/x", false},
        {"host:5000/X", false},           /* the repository part keeps the grammar */
        {"a/b:5000/c", false},            /* only the first component may */
        {"nginx", true},
        {"library/nginx", true},
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(t); i++) {
        bool got = om_ref_request_name_valid(t[i].s, strlen(t[i].s));
        if (got != t[i].ok)
            fprintf(stderr, "request name %s: got %d\n", t[i].s, got);
        CHECK(got == t[i].ok);
    }
    om_v2_path path;
    om_v2_fault f;
    const char *pp = "/v2/localhost:5000/team/app/manifests/1";
    CHECK_EQ_INT(om_v2_path_parse(&path, pp, strlen(pp), &f), OM_OK);
    CHECK_EQ_STR(path.name, "localhost:5000/team/app");
}

int main(void)
{
    RUN(test_ref__request_name_may_start_with_host_and_port);
    RUN(test_ref__name_grammar_table);
    RUN(test_ref__name_length_limit_is_255_bytes);
    RUN(test_ref__name_truncated_prefixes_are_valid_only_at_alnum);
    RUN(test_ref__tag_grammar_table);
    RUN(test_ref__tag_length_limit_is_128);
    RUN(test_ref__tag_truncated_prefixes);
    RUN(test_ref__digest_accepts_only_lowercase_sha256);
    RUN(test_ref__digest_truncated_prefixes_are_invalid);
    RUN(test_ref__digest_from_raw_sha256_is_lowercase_hex);
    RUN(test_ref__reference_is_tag_or_digest);
    RUN(test_ref__reference_truncated_digest_prefixes_are_invalid);
    RUN(test_ref__range_table);
    RUN(test_ref__range_count_limit_is_16);
    RUN(test_ref__range_truncated_prefixes);
    RUN(test_ref__v2_path_table);
    RUN(test_ref__v2_path_length_limits);
    RUN(test_ref__v2_blob_path_truncated_prefixes);
    RUN(test_ref__v2_manifest_path_truncated_prefixes);
    RUN(test_ref__v2_tags_path_truncated_prefixes);
    RUN(test_ref__url_decode_table);
    RUN(test_ref__url_decode_respects_output_size);
    RUN(test_ref__link_next_table);
    RUN(test_ref__url_decode_truncated_prefixes);
    RUN(test_ref__url_encode_keeps_only_unreserved);
    return test_done();
}
