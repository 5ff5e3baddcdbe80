/* fuzz_challenge.c — WWW-Authenticate challenges from an upstream
 * (src/authparse.c: om_challenge_parse).  The realm decides which host the
 * mirror asks for a token, so this parser must never invent or mangle one.
 *
 * Invariants:
 *   - result is OM_OK, OM_ERR_INVALID or OM_ERR_TOOBIG; on error every
 *     field is empty (the struct is all zero);
 *   - on OM_OK the scheme is a non-empty RFC 9110 token that starts the
 *     header (after blanks), and no field holds a control character other
 *     than HTAB (nothing that could end a header line or a log line);
 *   - nothing is invented: every field is a subsequence of the header
 *     (unescaping only drops bytes);
 *   - round trip: the fields printed back as `Scheme realm="..",
 *     service="..", scope="..", error=".."` (quoted, with backslash escapes)
 *     parse to the same fields.
 */
#include <ctype.h>

#include "fuzz_common.h"
#include "upstream/upstream.h"

static bool tchar(unsigned char c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool clean(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        return false; /* not terminated inside its field */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Whether every byte of s appears in h[0..n) in order. */
static bool subsequence(const char *s, const char *h, size_t n)
{
    size_t i = 0;
    for (; *s != '\0' && i < n; i++)
        if (h[i] == *s)
            s++;
    return *s == '\0';
}

/* Append `name="value"` with '"' and '\' escaped. */
static size_t put_param(char *buf, size_t o, size_t cap, const char *name, const char *v,
                        bool *first)
{
    o += (size_t)snprintf(buf + o, cap - o, "%s%s=\"", *first ? " " : ", ", name);
    *first = false;
    for (; *v != '\0' && o + 3 < cap; v++) {
        if (*v == '"' || *v == '\\')
            buf[o++] = '\\';
        buf[o++] = *v;
    }
    o += (size_t)snprintf(buf + o, cap - o, "\"");
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct om_challenge zero;
    struct om_challenge ch, back;
    char buf[8192];
    char *hdr;
    int rc;

    /* libcurl hands over at most CURL_MAX_HTTP_HEADER (100 KiB); real
     * challenges are a few hundred bytes. */
    if (size > 16384)
        return 0;
    hdr = fuzz_memdup(data, size);
    memset(&ch, 0x5a, sizeof(ch));
    rc = om_challenge_parse(&ch, hdr, size);
    FUZZ_CHECK(rc == OM_OK || rc == OM_ERR_INVALID || rc == OM_ERR_TOOBIG);
    if (rc != OM_OK) {
        FUZZ_CHECK(memcmp(&ch, &zero, sizeof(ch)) == 0);
        goto done;
    }
    FUZZ_CHECK(clean(ch.scheme, sizeof(ch.scheme)) && clean(ch.realm, sizeof(ch.realm)) &&
               clean(ch.service, sizeof(ch.service)) && clean(ch.scope, sizeof(ch.scope)) &&
               clean(ch.error, sizeof(ch.error)));
    {
        size_t sl = strlen(ch.scheme), i = 0;
        FUZZ_CHECK(sl > 0);
        for (size_t k = 0; k < sl; k++)
            FUZZ_CHECK(tchar((unsigned char)ch.scheme[k]));
        while (i < size && (hdr[i] == ' ' || hdr[i] == '\t'))
            i++;
        FUZZ_CHECK(size - i >= sl && memcmp(hdr + i, ch.scheme, sl) == 0);
    }
    /* nothing invented: escapes only drop backslashes and quotes, so each
     * field is a subsequence of the header */
    FUZZ_CHECK(subsequence(ch.realm, hdr, size) && subsequence(ch.service, hdr, size) &&
               subsequence(ch.scope, hdr, size) && subsequence(ch.error, hdr, size));
    /* round trip */
    {
        bool first = true;
        size_t o = (size_t)snprintf(buf, sizeof(buf), "%s", ch.scheme);
        if (ch.realm[0])
            o = put_param(buf, o, sizeof(buf), "realm", ch.realm, &first);
        if (ch.service[0])
            o = put_param(buf, o, sizeof(buf), "service", ch.service, &first);
        if (ch.scope[0])
            o = put_param(buf, o, sizeof(buf), "scope", ch.scope, &first);
        if (ch.error[0])
            o = put_param(buf, o, sizeof(buf), "error", ch.error, &first);
        FUZZ_CHECK(o < sizeof(buf));
        rc = om_challenge_parse(&back, buf, o);
        if (rc != OM_OK)
            fprintf(stderr, "re-parse of [%s] failed: %d\n", buf, rc);
        FUZZ_CHECK(rc == OM_OK);
        FUZZ_CHECK_STREQ(back.scheme, ch.scheme);
        FUZZ_CHECK_STREQ(back.realm, ch.realm);
        FUZZ_CHECK_STREQ(back.service, ch.service);
        FUZZ_CHECK_STREQ(back.scope, ch.scope);
        FUZZ_CHECK_STREQ(back.error, ch.error);
    }
done:
    free(hdr);
    return 0;
}
