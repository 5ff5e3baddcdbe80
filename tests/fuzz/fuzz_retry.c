/* fuzz_retry.c — the small header parsers of the upstream client
 * (src/authparse.c): Retry-After (om_retry_after_parse), Docker Hub's
 * ratelimit-remaining (om_ratelimit_remaining_parse, and its window:
 * om_ratelimit_window_parse), Content-Length
 * (om_up_content_length_parse), Content-Range (om_up_content_range_parse,
 * since session 3) and the header-safety check (om_up_header_safe).  All
 * take a NUL-terminated header value.
 *
 * Input: 8 bytes of "now" (little endian; the low 5 bytes are used),
 * then the header value (cut at its first NUL, as libcurl would).
 *
 * Invariants:
 *   - Retry-After is -1 or in 0..INT32_MAX; a value of only digits (with
 *     blanks around) is its number (saturated); an HTTP-date in the past
 *     gives 0; the answer never depends on bytes after the terminator;
 *   - ratelimit-remaining is -1 or the leading decimal number (< 10^10);
 *   - Content-Length is -1 or the number the string spells, and only a
 *     string of 1..18 digits has one;
 *   - Content-Range is accepted exactly when it is "bytes" (any case) SP
 *     digits "-" digits "/" (digits | "*") with 1..18 digits each, first <=
 *     last < total; then the numbers are the ones spelt, and printing them
 *     back and parsing again gives the same;
 *   - om_up_header_safe is false exactly when there is a control character
 *     other than HTAB (CR, LF, NUL-free by construction).
 */
#include <strings.h>

#include "fuzz_common.h"
#include "upstream/upstream_int.h"

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* 1..18 digits at s + *i (advanced), into *v. */
static bool digits_at(const char *s, size_t *i, uint64_t *v)
{
    size_t d = strspn(s + *i, "0123456789");
    if (d < 1 || d > 18)
        return false;
    *v = 0;
    for (size_t k = 0; k < d; k++)
        *v = *v * 10 + (uint64_t)(s[*i + k] - '0');
    *i += d;
    return true;
}

/* The Content-Range grammar, read a second way. */
static bool content_range_oracle(const char *s, uint64_t *a, uint64_t *b, uint64_t *t, bool *known)
{
    size_t i = 6;
    if (strlen(s) < 6 || strncasecmp(s, "bytes ", 6) != 0)
        return false;
    if (!digits_at(s, &i, a) || s[i++] != '-' || !digits_at(s, &i, b) || s[i++] != '/')
        return false;
    *known = strcmp(s + i, "*") != 0;
    *t = 0;
    if (*known && (!digits_at(s, &i, t) || s[i] != '\0'))
        return false;
    return *a <= *b && (!*known || *b < *t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t now = 0;
    char *s;
    size_t n;

    if (size < 8 || size > 4096)
        return 0;
    /* "now" is time(NULL) in the mirror: keep it in 0 .. 2^40 s (35000
     * years), where the subtraction the parser does cannot overflow. */
    for (int k = 0; k < 5; k++)
        now |= (int64_t)((uint64_t)data[k] << (8 * k));
    s = fuzz_strdup(data + 8, size - 8);
    n = strlen(s);

    /* Retry-After */
    {
        long v = om_retry_after_parse(s, (long)now);
        FUZZ_CHECK(v == -1 || (v >= 0 && v <= 2147483647L));
        /* only digits between optional blanks: the number, saturated */
        size_t i = 0, j;
        while (s[i] == ' ' || s[i] == '\t')
            i++;
        j = i;
        while (is_digit(s[j]))
            j++;
        size_t digits_end = j;
        while (s[j] == ' ' || s[j] == '\t')
            j++;
        if (n <= 64 && digits_end > i && s[j] == '\0') {
            long want = 0;
            for (size_t k = i; k < digits_end; k++)
                want = want > (2147483647L - (s[k] - '0')) / 10 ? 2147483647L
                                                               : want * 10 + (s[k] - '0');
            FUZZ_CHECK(v == want);
        }
        if (n > 64)
            FUZZ_CHECK(v == -1);
        /* a date: the wait shrinks by exactly what "now" grows, down to 0 */
        if (v >= 0 && !is_digit(s[i])) {
            long later = om_retry_after_parse(s, (long)now + 10);
            FUZZ_CHECK(later == (v > 10 ? v - 10 : 0) || v == 2147483647L);
        }
    }

    /* ratelimit-remaining: "100;w=21600" */
    {
        long v = om_ratelimit_remaining_parse(s), want = -1, acc = 0;
        size_t i = 0, d;
        while (s[i] == ' ' || s[i] == '\t')
            i++;
        d = strspn(s + i, "0123456789");
        if (d >= 1 && d <= 10) {
            size_t j = i + d;
            for (size_t k = i; k < j; k++)
                acc = acc * 10 + (s[k] - '0');
            while (s[j] == ' ' || s[j] == '\t')
                j++;
            if (s[j] == '\0' || s[j] == ';' || s[j] == ',')
                want = acc;
        }
        FUZZ_CHECK(v == want);
        /* Its window: -1 without a count; else -1 or a number below 10^9
         * that the text spells after "w=" within the first list member. */
        long w = om_ratelimit_window_parse(s);
        FUZZ_CHECK(w >= -1 && w < 1000000000L);
        if (v < 0)
            FUZZ_CHECK(w == -1);
        if (w >= 0) {
            /* some "w=" + digit in the first member (an earlier empty
             * "w=;" parameter is skipped, as the parser skips any
             * parameter it cannot read) */
            size_t member = strcspn(s, ",");
            bool found = false;
            for (const char *at = strstr(s, "w="); at != NULL && (size_t)(at - s) < member;
                 at = strstr(at + 1, "w="))
                found = found || is_digit(at[2]);
            FUZZ_CHECK(found);
        }
    }

    /* Content-Length */
    {
        int64_t v = om_up_content_length_parse(s);
        size_t d = strspn(s, "0123456789");
        bool want_ok = d >= 1 && d <= 18 && s[d] == '\0';
        FUZZ_CHECK((v >= 0) == want_ok);
        FUZZ_CHECK(v >= -1);
        if (want_ok) {
            int64_t want = 0;
            for (size_t k = 0; k < d; k++)
                want = want * 10 + (s[k] - '0');
            FUZZ_CHECK(v == want);
        }
    }

    /* Content-Range */
    {
        uint64_t a = 1, b = 2, t = 3, oa, ob, ot;
        bool known = false, oknown;
        bool ok = om_up_content_range_parse(s, &a, &b, &t, &known);
        FUZZ_CHECK(ok == content_range_oracle(s, &oa, &ob, &ot, &oknown));
        if (!ok) {
            FUZZ_CHECK(a == 1 && b == 2 && t == 3 && !known);
        } else {
            FUZZ_CHECK(a == oa && b == ob && known == oknown && (!known || t == ot));
            char again[96];
            if (known)
                snprintf(again, sizeof(again), "bytes %llu-%llu/%llu", (unsigned long long)a,
                         (unsigned long long)b, (unsigned long long)t);
            else
                snprintf(again, sizeof(again), "bytes %llu-%llu/*", (unsigned long long)a,
                         (unsigned long long)b);
            uint64_t a2, b2, t2;
            bool k2;
            FUZZ_CHECK(om_up_content_range_parse(again, &a2, &b2, &t2, &k2));
            FUZZ_CHECK(a2 == a && b2 == b && k2 == known && (!known || t2 == t));
        }
    }

    /* header safety */
    {
        bool want = true;
        for (size_t k = 0; k < n; k++) {
            unsigned char c = (unsigned char)s[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                want = false;
        }
        FUZZ_CHECK(om_up_header_safe(s) == want);
    }
    free(s);
    return 0;
}
