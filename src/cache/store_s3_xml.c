/* store_s3_xml.c — the XML answers of S3, read with expat (Debian's
 * libexpat; never by hand).
 *
 * One parser for every answer the store reads, since they share a shape:
 * a root element, a few fields right under it, and repeated items.
 *
 *   root                       fields under the root        items (fields)
 *   ListBucketResult (V2)      IsTruncated                  Contents (Key, Size,
 *                              NextContinuationToken          LastModified)
 *   ListMultipartUploadsResult IsTruncated, NextKeyMarker,  Upload (Key, UploadId,
 *                              NextUploadIdMarker             Initiated)
 *   ListPartsResult            IsTruncated,                 Part (PartNumber, Size,
 *                              NextPartNumberMarker           LastModified)
 *   InitiateMultipartUploadResult  UploadId
 *   CompleteMultipartUploadResult  (its root is the answer: an <Error> can
 *                              come with a 200 status, so the caller looks)
 *   CopyObjectResult           (likewise)
 *   Error                      Code, Message
 *
 * Items go to a callback as they close (a page of 1000 keys is never held
 * whole).  Namespaces are not processed: S3's default xmlns leaves the
 * local names as they are.  Bounds: the document (OM_S3_XML_MAX), the text
 * of one field (TEXT_MAX: S3 keys are at most 1024 bytes), depth (a field
 * deeper than an item's is ignored), numbers (decimal, no overflow), and
 * no DOCTYPE at all (S3 never sends one; it is where entity expansion
 * lives).  Pure: no I/O, no globals; fuzzable.
 */
#include "cache/store_s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <expat.h>

#define TEXT_MAX 1100
#define NAME_MAX_LEN 47

enum item_kind { ITEM_NONE, ITEM_OBJECT, ITEM_UPLOAD, ITEM_PART };

struct xp {
    XML_Parser p;
    int depth;
    char elem[NAME_MAX_LEN + 1];   /* the element whose text is collected */
    bool collect;
    char text[TEXT_MAX + 1];
    size_t tlen;
    enum item_kind in_item;
    struct om_s3_item it;
    char key[TEXT_MAX + 1], upload_id[OM_S3_UPLOAD_ID_MAX];
    struct om_s3_answer *out;
    om_s3_item_fn fn;
    void *ud;
    int stop;                      /* the callback's non-zero value */
    int err;                       /* OM_ERR_INVALID once something is out of bounds */
};

static void fail(struct xp *x)
{
    x->err = OM_ERR_INVALID;
    XML_StopParser(x->p, XML_FALSE);
}

static bool copy_field(char *dst, size_t dstsz, const char *s, size_t n)
{
    if (n >= dstsz)
        return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned dgt = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - dgt) / 10)
            return false;
        v = v * 10 + dgt;
    }
    *out = v;
    return true;
}

int64_t om_s3_xml_time(const char *s, size_t n)
{
    struct tm tm = {0};
    char buf[40];
    int y, mo, d, h, mi, se, used = 0;

    if (n < 20 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (sscanf(buf, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &used) != 6 ||
        used != 19)
        return -1;
    const char *rest = buf + used;
    int64_t frac_ms = 0;
    if (*rest == '.') {
        int digits = 0;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++) {
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*rest - '0');
        }
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    if (strcmp(rest, "Z") != 0 || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
        mi > 59 || se > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (int64_t)t * 1000 + frac_ms;
}

/* Which fields are ours: at depth 2 (under the root) or 3 (in an item). */
static bool wanted(const struct xp *x, const char *name)
{
    static const char *const top[] = {"IsTruncated", "NextContinuationToken", "NextKeyMarker",
                                      "NextUploadIdMarker", "NextPartNumberMarker", "UploadId",
                                      "Code", "Message"};
    static const char *const item[] = {"Key", "Size", "LastModified", "UploadId", "Initiated",
                                       "PartNumber"};
    const char *const *list = x->depth == 2 ? top : item;
    size_t n = x->depth == 2 ? OM_ARRAY_LEN(top) : OM_ARRAY_LEN(item);

    if (x->depth != 2 && !(x->depth == 3 && x->in_item != ITEM_NONE))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], name) == 0)
            return true;
    }
    return false;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct xp *x = ud;
    (void)attrs;
    x->depth++;
    x->collect = false;
    if (x->depth == 1) {
        if (!copy_field(x->out->root, sizeof(x->out->root), name, strlen(name)))
            fail(x);
        return;
    }
    if (x->depth == 2) {
        enum item_kind k = strcmp(name, "Contents") == 0 ? ITEM_OBJECT
                           : strcmp(name, "Upload") == 0 ? ITEM_UPLOAD
                           : strcmp(name, "Part") == 0   ? ITEM_PART
                                                         : ITEM_NONE;
        if (k != ITEM_NONE) {
            x->in_item = k;
            memset(&x->it, 0, sizeof(x->it));
            x->it.time_ms = -1;
            x->key[0] = x->upload_id[0] = '\0';
            return;
        }
    }
    if (wanted(x, name) && strlen(name) <= NAME_MAX_LEN) {
        snprintf(x->elem, sizeof(x->elem), "%s", name);
        x->collect = true;
        x->tlen = 0;
        x->text[0] = '\0';
    }
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct xp *x = ud;
    if (!x->collect || len <= 0)
        return;
    if (x->tlen + (size_t)len > TEXT_MAX) {
        fail(x);
        return;
    }
    memcpy(x->text + x->tlen, s, (size_t)len);
    x->tlen += (size_t)len;
    x->text[x->tlen] = '\0';
}

/* A field under the root. */
static void top_field(struct xp *x)
{
    struct om_s3_answer *o = x->out;
    const char *t = x->text;
    size_t n = x->tlen;
    bool ok = true;

    if (strcmp(x->elem, "IsTruncated") == 0)
        o->truncated = n == 4 && memcmp(t, "true", 4) == 0;
    else if (strcmp(x->elem, "NextContinuationToken") == 0 ||
             strcmp(x->elem, "NextKeyMarker") == 0)
        ok = copy_field(o->next, sizeof(o->next), t, n);
    else if (strcmp(x->elem, "NextUploadIdMarker") == 0 ||
             strcmp(x->elem, "NextPartNumberMarker") == 0)
        ok = copy_field(o->next2, sizeof(o->next2), t, n);
    else if (strcmp(x->elem, "UploadId") == 0)
        ok = copy_field(o->upload_id, sizeof(o->upload_id), t, n);
    else if (strcmp(x->elem, "Code") == 0)
        ok = copy_field(o->code, sizeof(o->code), t, n);
    else if (strcmp(x->elem, "Message") == 0)
        (void)copy_field(o->message, sizeof(o->message), t,
                         n < sizeof(o->message) ? n : sizeof(o->message) - 1);
    if (!ok)
        fail(x);
}

/* A field of the current item. */
static void item_field(struct xp *x)
{
    const char *t = x->text;
    size_t n = x->tlen;
    uint64_t v = 0;
    bool ok = true;

    if (strcmp(x->elem, "Key") == 0) {
        ok = copy_field(x->key, sizeof(x->key), t, n);
    } else if (strcmp(x->elem, "UploadId") == 0) {
        ok = copy_field(x->upload_id, sizeof(x->upload_id), t, n);
    } else if (strcmp(x->elem, "Size") == 0) {
        ok = parse_u64(t, n, &x->it.size);
    } else if (strcmp(x->elem, "PartNumber") == 0) {
        ok = parse_u64(t, n, &v) && v >= 1 && v <= 10000;
        x->it.part = (unsigned)v;
    } else if (strcmp(x->elem, "LastModified") == 0 || strcmp(x->elem, "Initiated") == 0) {
        x->it.time_ms = om_s3_xml_time(t, n);
        ok = x->it.time_ms >= 0;
    }
    if (!ok)
        fail(x);
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct xp *x = ud;
    if (x->collect && x->err == OM_OK) {
        if (x->depth == 2)
            top_field(x);
        else
            item_field(x);
    }
    x->collect = false;
    if (x->depth == 2 && x->in_item != ITEM_NONE && x->err == OM_OK &&
        (strcmp(name, "Contents") == 0 || strcmp(name, "Upload") == 0 ||
         strcmp(name, "Part") == 0)) {
        x->it.key = x->key;
        x->it.upload_id = x->upload_id;
        x->out->items++;
        x->in_item = ITEM_NONE;
        if (x->fn != NULL && (x->stop = x->fn(x->ud, &x->it)) != 0)
            XML_StopParser(x->p, XML_FALSE);
    }
    x->depth--;
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int internal)
{
    (void)name, (void)sysid, (void)pubid, (void)internal;
    fail(ud);
}

int om_s3_xml_parse(const char *xml, size_t len, om_s3_item_fn fn, void *ud,
                    struct om_s3_answer *out)
{
    struct xp *x = NULL;
    int err = OM_OK;

    memset(out, 0, sizeof(*out));
    if (len > OM_S3_XML_MAX)
        return OM_ERR_TOOBIG;
    x = calloc(1, sizeof(*x)); /* freed below */
    if (x == NULL || (x->p = XML_ParserCreate(NULL)) == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    x->out = out;
    x->fn = fn;
    x->ud = ud;
    XML_SetUserData(x->p, x);
    XML_SetElementHandler(x->p, on_start, on_end);
    XML_SetCharacterDataHandler(x->p, on_text);
    XML_SetStartDoctypeDeclHandler(x->p, on_doctype);
    if (XML_Parse(x->p, xml, (int)len, XML_TRUE) != XML_STATUS_OK && x->stop == 0)
        err = OM_ERR_INVALID;
    if (x->stop != 0)
        err = x->stop;
    else if (x->err != OM_OK)
        err = x->err;
    else if (out->root[0] == '\0')
        err = OM_ERR_INVALID;
done:
    if (x != NULL && x->p != NULL)
        XML_ParserFree(x->p);
    free(x);
    return err;
}
