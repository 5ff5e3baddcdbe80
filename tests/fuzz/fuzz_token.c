/* fuzz_token.c — the token service's JSON answer
 * (src/authparse.c: om_token_parse).  The token goes verbatim into an
 * Authorization header, so what the parser lets through matters as much as
 * not crashing.
 *
 * Invariants:
 *   - OM_OK: a token of 1..16 KiB printable ASCII without blanks (nothing
 *     that can end or split a header line), equal to the JSON's "token"
 *     (or "access_token" when "token" is absent or empty), and expires_s in
 *     1..86400;
 *   - any error: *token_out is NULL and expires_s is the 60 s default;
 *   - the parse does not depend on the bytes after `len` (checked by
 *     parsing the same bytes with a terminator and without).
 */
#include <jansson.h>

#include "fuzz_common.h"
#include "upstream/upstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json, *tok = (char *)"sentinel", *tok2 = NULL;
    long exp = -5, exp2 = -5;
    int rc, rc2;

    if (size > 128 * 1024)
        return 0;
    json = fuzz_memdup(data, size);
    rc = om_token_parse(json, size, &tok, &exp);
    FUZZ_CHECK(rc == OM_OK || rc == OM_ERR_INVALID || rc == OM_ERR_TOOBIG || rc == OM_ERR_NOMEM);
    if (rc != OM_OK) {
        FUZZ_CHECK(tok == NULL && exp == 60);
    } else {
        size_t n = strlen(tok);
        FUZZ_CHECK(n >= 1 && n <= 16 * 1024);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((unsigned char)tok[i] > 0x20 && (unsigned char)tok[i] < 0x7f);
        FUZZ_CHECK(exp >= 1 && exp <= 86400);
        /* the token is the JSON's value, cross-checked with jansson */
        json_t *root = json_loadb(json, size, 0, NULL);
        FUZZ_CHECK(root != NULL);
        const char *t = json_string_value(json_object_get(root, "token"));
        if (t == NULL || t[0] == '\0')
            t = json_string_value(json_object_get(root, "access_token"));
        FUZZ_CHECK(t != NULL);
        FUZZ_CHECK_STREQ(tok, t);
        json_decref(root);
    }
    /* the same bytes, NUL-terminated: same answer */
    {
        char *z = fuzz_strdup(data, size);
        rc2 = om_token_parse(z, size, &tok2, &exp2);
        FUZZ_CHECK(rc2 == rc && exp2 == exp);
        FUZZ_CHECK((tok == NULL) == (tok2 == NULL));
        if (tok != NULL)
            FUZZ_CHECK_STREQ(tok2, tok);
        free(z);
    }
    free(tok2);
    free(tok);
    free(json);
    return 0;
}
