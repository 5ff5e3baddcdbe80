/* fuzz_ref.c — repository names, tags, digests and references
 * (src/ref.c: om_ref_name_valid, om_ref_request_name_valid,
 * om_ref_tag_valid, om_digest_parse,
 * om_reference_parse, om_digest_from_sha256).
 *
 * The oracle is the grammar itself, as POSIX extended regular expressions
 * compiled once (glibc's matcher, a different implementation from ref.c's
 * state machine): every verdict of ref.c must equal the regex's verdict plus
 * the length limits.  Results of successful parses must be the input, byte
 * for byte; failed parses must leave their output empty.
 */
#include <regex.h>

#include "fuzz_common.h"
#include "core/ref.h"

/* PROTOCOL.md's grammar, anchored. */
#define NAME_RE "^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$"
#define TAG_RE "^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$"
#define DIGEST_RE "^sha256:[a-f0-9]{64}$"
/* A request name may start with "host:port/" (ref.c host_port_valid). */
#define HOSTPORT_NAME_RE                                                                     \
    "^([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9.-]*[a-zA-Z0-9]):[0-9]{1,5}/[a-z0-9]+((\\.|_|__|-+)" \
    "[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$"

static regex_t name_re, tag_re, digest_re, hostport_re;
static int compiled;

static void compile_once(void)
{
    if (compiled)
        return;
    FUZZ_CHECK(regcomp(&name_re, NAME_RE, REG_EXTENDED | REG_NOSUB) == 0);
    FUZZ_CHECK(regcomp(&tag_re, TAG_RE, REG_EXTENDED | REG_NOSUB) == 0);
    FUZZ_CHECK(regcomp(&digest_re, DIGEST_RE, REG_EXTENDED | REG_NOSUB) == 0);
    FUZZ_CHECK(regcomp(&hostport_re, HOSTPORT_NAME_RE, REG_EXTENDED | REG_NOSUB) == 0);
    compiled = 1;
}

/* s holds len bytes plus a terminator; a NUL inside never matches. */
static bool grammar_match(const regex_t *re, const char *s, size_t len)
{
    return strlen(s) == len && regexec(re, s, 0, NULL, 0) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *exact, *cstr;
    bool name_ok, tag_ok, want;
    om_digest d;
    om_reference r;
    int rc;

    /* Every grammar here is bounded far below this; longer inputs only
     * slow the regex oracle down. */
    if (size > 4096)
        return 0;
    compile_once();
    exact = fuzz_memdup(data, size);  /* for the parsers: no terminator */
    cstr = fuzz_strdup(data, size);   /* for the oracle */

    /* names */
    name_ok = om_ref_name_valid(exact, size);
    want = size <= OM_NAME_MAX && grammar_match(&name_re, cstr, size);
    if (name_ok != want)
        fprintf(stderr, "name \"%s\": ref.c %d, grammar %d\n", cstr, name_ok, want);
    FUZZ_CHECK(name_ok == want);
    if (name_ok) {
        /* What the rest of the mirror relies on: no traversal, no upper case. */
        FUZZ_CHECK(strstr(cstr, "..") == NULL && strstr(cstr, "//") == NULL);
        FUZZ_CHECK(cstr[0] != '/' && cstr[size - 1] != '/' && cstr[0] != '.');
    }

    /* request names: a name, or "host:port/" + a name */
    {
        bool req_ok = om_ref_request_name_valid(exact, size);
        want = name_ok || (size <= OM_NAME_MAX && grammar_match(&hostport_re, cstr, size));
        if (req_ok != want)
            fprintf(stderr, "request name \"%s\": ref.c %d, grammar %d\n", cstr, req_ok, want);
        FUZZ_CHECK(req_ok == want);
    }

    /* tags */
    tag_ok = om_ref_tag_valid(exact, size);
    want = grammar_match(&tag_re, cstr, size);
    if (tag_ok != want)
        fprintf(stderr, "tag \"%s\": ref.c %d, grammar %d\n", cstr, tag_ok, want);
    FUZZ_CHECK(tag_ok == want);

    /* digests */
    memset(&d, 'X', sizeof(d));
    rc = om_digest_parse(&d, exact, size);
    want = grammar_match(&digest_re, cstr, size);
    FUZZ_CHECK((rc == OM_OK) == want);
    FUZZ_CHECK(rc == OM_OK || rc == OM_ERR_INVALID);
    if (rc == OM_OK) {
        FUZZ_CHECK_STREQ(d.str, cstr);
        FUZZ_CHECK(strlen(om_digest_hex(&d)) == 64);
    } else {
        FUZZ_CHECK(d.str[0] == '\0');
    }

    /* references: a digest when there is a ':', else a tag */
    memset(&r, 'X', sizeof(r));
    rc = om_reference_parse(&r, exact, size);
    want = memchr(exact, ':', size) != NULL ? grammar_match(&digest_re, cstr, size) : tag_ok;
    FUZZ_CHECK((rc == OM_OK) == want);
    if (rc == OM_OK) {
        FUZZ_CHECK(r.is_digest == (memchr(exact, ':', size) != NULL));
        FUZZ_CHECK_STREQ(om_reference_str(&r), cstr);
    } else {
        FUZZ_CHECK(!r.is_digest && r.tag[0] == '\0' && r.digest.str[0] == '\0');
    }

    /* a digest made from raw bytes always parses back to itself */
    if (size >= 32) {
        om_digest raw, back;
        om_digest_from_sha256(&raw, data);
        FUZZ_CHECK(om_digest_parse(&back, raw.str, strlen(raw.str)) == OM_OK);
        FUZZ_CHECK_STREQ(back.str, raw.str);
        for (size_t i = 0; i < 32; i++) {
            unsigned v = 0;
            FUZZ_CHECK(sscanf(om_digest_hex(&raw) + 2 * i, "%2x", &v) == 1);
            FUZZ_CHECK(v == data[i]);
        }
    }

    free(cstr);
    free(exact);
    return 0;
}
