/* fuzz_range.c — HTTP Range headers (src/core/ref.c: om_range_parse).
 *
 * Input: the header value, then optionally a NUL and up to 8 bytes giving
 * the resource size (little endian).  Without them the header is tried
 * against a few sizes that sit on the edges (0, 1, 100, 2^40, UINT64_MAX).
 *
 * Invariants:
 *   - the result agrees with a second, independent reading of RFC 9110
 *     (split at commas, trim, match "F-[L]" or "-N", compare numbers as
 *     digit strings) on the status and on every range;
 *   - on OM_OK 1 <= n <= OM_RANGE_MAX and first <= last < size for each
 *     range, and no two ranges share a byte; on any error n == 0;
 *   - printing the ranges back as "bytes=F-L,..." and parsing that with the
 *     same size gives the same ranges (the parse is a fixed point).
 */
#include "fuzz_common.h"
#include "core/ref.h"

static bool ows(char c) { return c == ' ' || c == '\t'; }
static bool digit(char c) { return c >= '0' && c <= '9'; }

/* Numeric compare of two digit strings of any length. */
static int numcmp(const char *a, size_t al, const char *b, size_t bl)
{
    while (al > 1 && *a == '0')
        a++, al--;
    while (bl > 1 && *b == '0')
        b++, bl--;
    if (al != bl)
        return al < bl ? -1 : 1;
    return memcmp(a, b, al);
}

/* Value of a digit string, saturating at UINT64_MAX. */
static uint64_t num(const char *s, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    return v;
}

/* The reference reading; same result codes as om_range_parse. */
static int oracle(om_range_set *out, const char *h, size_t len, uint64_t size)
{
    size_t i = 0, nspec = 0;

    out->n = 0;
    while (i < len && ows(h[i]))
        i++;
    if (len - i < 6)
        return OM_ERR_INVALID;
    for (size_t k = 0; k < 6; k++) {
        char c = h[i + k];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != "bytes="[k])
            return OM_ERR_INVALID;
    }
    i += 6;
    while (i <= len) {
        /* one list element: h[i .. e) */
        size_t e = i;
        while (e < len && h[e] != ',')
            e++;
        size_t s = i, t = e;
        while (s < t && ows(h[s]))
            s++;
        while (t > s && ows(h[t - 1]))
            t--;
        if (s < t) {
            const char *el = h + s;
            size_t el_len = t - s, dash = 0;
            while (dash < el_len && digit(el[dash]))
                dash++;
            if (dash == el_len || el[dash] != '-')
                return OM_ERR_INVALID;
            for (size_t k = dash + 1; k < el_len; k++)
                if (!digit(el[k]))
                    return OM_ERR_INVALID;
            size_t fl = dash, ll = el_len - dash - 1;
            if (fl == 0 && ll == 0)
                return OM_ERR_INVALID;
            if (fl > 0 && ll > 0 && numcmp(el + dash + 1, ll, el, fl) < 0)
                return OM_ERR_INVALID;
            if (++nspec > OM_RANGE_MAX) {
                out->n = 0;
                return OM_ERR_TOOBIG;
            }
            om_byte_range r;
            bool sat = false;
            if (fl == 0) {
                uint64_t n = num(el + 1, ll);
                if (n > 0 && size > 0) {
                    r.first = n >= size ? 0 : size - n;
                    r.last = size - 1;
                    sat = true;
                }
            } else {
                uint64_t f = num(el, fl);
                uint64_t l = ll > 0 ? num(el + dash + 1, ll) : UINT64_MAX;
                if (f < size) {
                    r.first = f;
                    r.last = l < size - 1 ? l : size - 1;
                    sat = true;
                }
            }
            if (sat)
                out->r[out->n++] = r;
        }
        i = e + 1;
    }
    if (nspec == 0) {
        out->n = 0;
        return OM_ERR_INVALID;
    }
    if (out->n == 0)
        return OM_ERR_NOTFOUND;
    /* Overlapping satisfiable ranges: ignored.  Checked here by sorting a
     * copy by first byte and comparing neighbours (ref.c compares pairs). */
    om_byte_range sorted[OM_RANGE_MAX];
    memcpy(sorted, out->r, out->n * sizeof(sorted[0]));
    for (size_t a = 1; a < out->n; a++)
        for (size_t b = a; b > 0 && sorted[b - 1].first > sorted[b].first; b--) {
            om_byte_range t = sorted[b];
            sorted[b] = sorted[b - 1];
            sorted[b - 1] = t;
        }
    for (size_t a = 1; a < out->n; a++)
        if (sorted[a].first <= sorted[a - 1].last) {
            out->n = 0;
            return OM_ERR_TOOBIG;
        }
    return OM_OK;
}

static void check_one(const char *hdr, size_t len, uint64_t size)
{
    om_range_set got, want, again;
    char buf[OM_RANGE_MAX * 44 + 8];
    size_t o;

    memset(&got, 0x5a, sizeof(got));
    int rc = om_range_parse(&got, hdr, len, size);
    int wrc = oracle(&want, hdr, len, size);
    /* ref.c counts a 17th range as soon as its numbers are read, before it
     * sees that the element goes on with garbage; the oracle validates the
     * whole element first.  Both answers mean "ignore the header". */
    if (rc == OM_ERR_TOOBIG && wrc == OM_ERR_INVALID) {
        size_t commas = 0;
        for (size_t k = 0; k < len; k++)
            commas += hdr[k] == ',';
        FUZZ_CHECK(commas >= OM_RANGE_MAX); /* there really were 17 elements */
        wrc = OM_ERR_TOOBIG;
    }
    if (rc != wrc)
        fprintf(stderr, "size %llu: ref.c %d, oracle %d\n", (unsigned long long)size, rc, wrc);
    FUZZ_CHECK(rc == wrc);
    FUZZ_CHECK(rc == OM_OK || rc == OM_ERR_INVALID || rc == OM_ERR_NOTFOUND ||
               rc == OM_ERR_TOOBIG);
    if (rc != OM_OK) {
        FUZZ_CHECK(got.n == 0);
        return;
    }
    FUZZ_CHECK(got.n >= 1 && got.n <= OM_RANGE_MAX);
    FUZZ_CHECK(got.n == want.n);
    for (size_t k = 0; k < got.n; k++) {
        FUZZ_CHECK(got.r[k].first <= got.r[k].last);
        FUZZ_CHECK(got.r[k].last < size);
        FUZZ_CHECK(got.r[k].first == want.r[k].first && got.r[k].last == want.r[k].last);
    }
    /* fixed point */
    o = (size_t)snprintf(buf, sizeof(buf), "bytes=");
    for (size_t k = 0; k < got.n; k++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%llu-%llu", k ? "," : "",
                              (unsigned long long)got.r[k].first,
                              (unsigned long long)got.r[k].last);
    FUZZ_CHECK(o < sizeof(buf));
    FUZZ_CHECK(om_range_parse(&again, buf, o, size) == OM_OK);
    FUZZ_CHECK(again.n == got.n);
    for (size_t k = 0; k < got.n; k++)
        FUZZ_CHECK(again.r[k].first == got.r[k].first && again.r[k].last == got.r[k].last);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t edge_sizes[] = {0, 1, 100, (uint64_t)1 << 40, UINT64_MAX};
    const uint8_t *h, *sz;
    size_t hlen, szlen;
    char *hdr;

    /* Real clients send a few dozen bytes; the server's header limit is
     * 16 KiB.  Past that the fuzzer only burns time. */
    if (size > 16384)
        return 0;
    fuzz_split(data, size, &h, &hlen, &sz, &szlen);
    hdr = fuzz_memdup(h, hlen);
    if (szlen == 0) {
        for (size_t k = 0; k < OM_ARRAY_LEN(edge_sizes); k++)
            check_one(hdr, hlen, edge_sizes[k]);
    } else {
        uint64_t rsize = 0;
        for (size_t k = 0; k < szlen && k < 8; k++)
            rsize |= (uint64_t)sz[k] << (8 * k);
        check_one(hdr, hlen, rsize);
    }
    free(hdr);
    return 0;
}
