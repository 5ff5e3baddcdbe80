/* fuzz_url.c — percent-decoding of query values and percent-encoding of
 * Link URLs (src/ref.c: om_url_decode, om_url_encode), and the next page
 * of an upstream's Link header (om_link_next).  The server reads ?ns=,
 * ?last= and ?artifactType= through om_url_decode, builds the Link header
 * of paged lists with om_url_encode, and follows an upstream's paged tag
 * list with om_link_next.
 *
 * Input: one byte choosing the output buffer size (so the TOOBIG edges are
 * exercised), then the string.
 *
 * Invariants:
 *   - decode: OM_OK gives a string without NUL, no longer than the input,
 *     and only when it fits; on error the output is "";
 *   - encode: the output has only unreserved characters and "%XX" with
 *     upper-case hex; it succeeds exactly when the full encoding fits;
 *   - decode(encode(x)) == x for every x without a NUL byte;
 *   - a successful decode, encoded and decoded again, is unchanged;
 *   - link: a next page is base or base + "?...", visible ASCII without
 *     '#', and was in the header between '<' and '>'; TOOBIG exactly when
 *     it does not fit; "" on error; a header built from base + "?" + the
 *     encoded input + `>; rel="next"` gives exactly that page.
 */
#include "fuzz_common.h"
#include "core/ref.h"

#define BIG 65536

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static bool upper_hex(unsigned char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }

static const char *const link_bases[] = {"/v2/library/alpine/tags/list", "/v2/a/tags/list"};

/* om_link_next on the input as a Link header (z: NUL-terminated copy),
 * outsz the chosen buffer size, enc the input percent-encoded. */
static void check_link(const char *z, size_t outsz, const char *enc)
{
    static char out[3 * BIG + 64], small[257], built[3 * BIG + 64], pat[3 * BIG + 64];
    for (size_t b = 0; b < sizeof(link_bases) / sizeof(link_bases[0]); b++) {
        const char *base = link_bases[b];
        size_t blen = strlen(base);
        memset(small, 'X', sizeof(small));
        int rc = om_link_next(small, outsz, z, base);
        FUZZ_CHECK(rc == OM_OK || rc == OM_ERR_INVALID || rc == OM_ERR_TOOBIG);
        if (outsz == 0)
            FUZZ_CHECK(rc == OM_ERR_TOOBIG && small[0] == 'X');
        else if (rc != OM_OK)
            FUZZ_CHECK(small[0] == '\0');
        int big = om_link_next(out, sizeof(out), z, base);
        FUZZ_CHECK(big == OM_OK || big == OM_ERR_INVALID);
        if (big == OM_OK) {
            size_t n = strlen(out);
            FUZZ_CHECK(n >= blen && memcmp(out, base, blen) == 0);
            FUZZ_CHECK(out[blen] == '\0' || out[blen] == '?');
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK((unsigned char)out[i] > 0x20 && (unsigned char)out[i] < 0x7f &&
                           out[i] != '#');
            snprintf(pat, sizeof(pat), "<%s>", out);
            FUZZ_CHECK(strstr(z, pat) != NULL);
            if (outsz > 0)
                FUZZ_CHECK((rc == OM_OK) == (n + 1 <= outsz));
            if (rc == OM_OK)
                FUZZ_CHECK_STREQ(small, out);
        } else if (outsz > 0) {
            FUZZ_CHECK(rc == OM_ERR_INVALID);
        }
        snprintf(built, sizeof(built), "<%s?%s>; rel=\"next\"", base, enc);
        FUZZ_CHECK(om_link_next(out, sizeof(out), built, base) == OM_OK);
        FUZZ_CHECK(strncmp(out, built + 1, strlen(out)) == 0 && strlen(out) + 1 == strcspn(built, ">"));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dec[BIG], enc[3 * BIG + 1], dec2[BIG], small[257];
    size_t outsz, n;
    char *in;
    int rc;

    if (size < 1 || size > BIG - 1)
        return 0;
    outsz = data[0]; /* 0 .. 255: tiny buffers, including none at all */
    data++;
    size--;
    in = fuzz_memdup(data, size);

    /* decode into a buffer of the chosen size, and into a big one */
    memset(small, 'X', sizeof(small));
    rc = om_url_decode(small, outsz, in, size);
    FUZZ_CHECK(rc == OM_OK || rc == OM_ERR_INVALID || rc == OM_ERR_TOOBIG);
    if (outsz == 0)
        FUZZ_CHECK(rc == OM_ERR_TOOBIG && small[0] == 'X'); /* nothing written */
    else if (rc != OM_OK)
        FUZZ_CHECK(small[0] == '\0');
    int big_rc = om_url_decode(dec, sizeof(dec), in, size);
    FUZZ_CHECK(big_rc == OM_OK || big_rc == OM_ERR_INVALID);
    if (big_rc == OM_OK) {
        n = strlen(dec);
        FUZZ_CHECK(n <= size);
        /* fits iff n + 1 <= outsz */
        if (outsz > 0)
            FUZZ_CHECK((rc == OM_OK) == (n + 1 <= outsz));
        if (rc == OM_OK)
            FUZZ_CHECK_STREQ(small, dec);
        /* encode → decode gives the decoded value back */
        FUZZ_CHECK(om_url_encode(enc, sizeof(enc), dec, n) == OM_OK);
        FUZZ_CHECK(om_url_decode(dec2, sizeof(dec2), enc, strlen(enc)) == OM_OK);
        FUZZ_CHECK_STREQ(dec2, dec);
    } else {
        /* a bad escape or a NUL is bad whatever the buffer */
        if (outsz > 0)
            FUZZ_CHECK(rc != OM_OK);
    }

    /* encode the raw input */
    rc = om_url_encode(enc, sizeof(enc), in, size);
    FUZZ_CHECK(rc == OM_OK);
    n = strlen(enc);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)enc[i];
        if (c == '%') {
            FUZZ_CHECK(i + 2 < n && upper_hex((unsigned char)enc[i + 1]) &&
                       upper_hex((unsigned char)enc[i + 2]));
            i += 2;
        } else {
            FUZZ_CHECK(unreserved(c));
        }
    }
    memset(small, 'X', sizeof(small));
    rc = om_url_encode(small, outsz, in, size);
    if (outsz == 0) {
        FUZZ_CHECK(rc == OM_ERR_TOOBIG && small[0] == 'X');
    } else {
        FUZZ_CHECK((rc == OM_OK) == (n + 1 <= outsz));
        if (rc == OM_OK)
            FUZZ_CHECK_STREQ(small, enc);
        else
            FUZZ_CHECK(rc == OM_ERR_TOOBIG && small[0] == '\0');
    }
    /* the raw input as an upstream's Link header (up to a NUL, as the
     * header arrives as a C string) */
    {
        char *z = fuzz_strdup(data, size);
        check_link(z, outsz, enc);
        free(z);
    }
    /* round trip of the raw input, unless it holds a NUL (never decodable) */
    if (memchr(in, '\0', size) == NULL) {
        FUZZ_CHECK(om_url_decode(dec2, sizeof(dec2), enc, n) == OM_OK);
        FUZZ_CHECK(strlen(dec2) == size && memcmp(dec2, in, size) == 0);
    } else {
        FUZZ_CHECK(om_url_decode(dec2, sizeof(dec2), enc, n) == OM_ERR_INVALID);
    }
    free(in);
    return 0;
}
