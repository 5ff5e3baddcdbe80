/* fuzz_s3_xml.c — the S3 XML answers (src/cache/store_s3_xml.c:
 * om_s3_xml_parse, om_s3_xml_time): what an S3-compatible endpoint sends
 * (a listing, a multipart answer, an error) is outside input.
 *
 * Input: the document.
 *
 * Invariants:
 *   - the result is OM_OK, OM_ERR_INVALID or OM_ERR_TOOBIG (no callback
 *     stops here); OM_OK ⇔ a root element was read; the answer's strings
 *     are NUL-terminated within their buffers;
 *   - every item the callback sees has a key shorter than 1101 bytes, a
 *     time of -1 or one om_s3_xml_time accepts, and a part number 0 or
 *     1..10000; the count the answer gives is the number of callbacks;
 *   - parsing twice gives the same result and items (no hidden state);
 *   - a callback that stops at the first item makes the parse return its
 *     value (1) when there was an item, having seen exactly one.
 */
#include "fuzz_common.h"
#include "cache/store_s3.h"

struct seen {
    unsigned n;
    uint64_t sum;
    bool stop;
};

static int on_item(void *ud, const struct om_s3_item *it)
{
    struct seen *s = ud;
    FUZZ_CHECK(it->key != NULL && strlen(it->key) <= 1100);
    FUZZ_CHECK(it->upload_id != NULL && strlen(it->upload_id) < OM_S3_UPLOAD_ID_MAX);
    FUZZ_CHECK(it->time_ms >= -1);
    FUZZ_CHECK(it->part <= 10000);
    s->n++;
    s->sum = s->sum * 31 + it->size + (uint64_t)it->time_ms + it->part + strlen(it->key);
    return s->stop ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *doc = fuzz_memdup(data, size);
    struct om_s3_answer a, b;
    struct seen s1 = {0}, s2 = {0}, s3 = {.stop = true};

    int r1 = om_s3_xml_parse(doc, size, on_item, &s1, &a);
    FUZZ_CHECK(r1 == OM_OK || r1 == OM_ERR_INVALID || r1 == OM_ERR_TOOBIG);
    FUZZ_CHECK(memchr(a.root, '\0', sizeof(a.root)) != NULL);
    FUZZ_CHECK(memchr(a.next, '\0', sizeof(a.next)) != NULL);
    FUZZ_CHECK(memchr(a.code, '\0', sizeof(a.code)) != NULL);
    FUZZ_CHECK(memchr(a.upload_id, '\0', sizeof(a.upload_id)) != NULL);
    if (r1 == OM_OK) {
        FUZZ_CHECK(a.root[0] != '\0');
        FUZZ_CHECK(a.items == s1.n);
    }
    int r2 = om_s3_xml_parse(doc, size, on_item, &s2, &b);
    FUZZ_CHECK(r1 == r2 && s1.n == s2.n && s1.sum == s2.sum);
    FUZZ_CHECK_STREQ(a.root, b.root);
    int r3 = om_s3_xml_parse(doc, size, on_item, &s3, &b);
    if (s1.n > 0 && r1 == OM_OK)
        FUZZ_CHECK(r3 == 1 && s3.n == 1);
    /* the time parser on the raw bytes as well */
    int64_t t = om_s3_xml_time(doc, size);
    FUZZ_CHECK(t >= -1);
    free(doc);
    return 0;
}
