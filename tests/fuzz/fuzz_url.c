/* fuzz_url.c — percent-decoding of query values and percent-encoding of
 * Link URLs (src/ref.c: om_url_decode, om_url_encode).  The server reads
 * ?ns=, ?last= and ?artifactType= through om_url_decode, and builds the
 * Link header of paged lists with om_url_encode.
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
 *   - a successful decode, encoded and decoded again, is unchanged.
 */
#include "fuzz_common.h"
#include "ref.h"

#define BIG 65536

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static bool upper_hex(unsigned char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }

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
