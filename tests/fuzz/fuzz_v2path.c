/* fuzz_v2path.c — the /v2/ request path (src/ref.c: om_v2_path_parse), as
 * libmicrohttpd hands it over (verbatim: the server's unescape callback is
 * the identity).
 *
 * Invariants:
 *   - OM_OK exactly when the fault is OM_V2F_NONE;
 *   - on OM_OK the parts put back together are the input, byte for byte
 *     ("/v2/" + name + "/manifests/" + reference, ...), so no byte of the
 *     path is ignored or invented;
 *   - every name handed on is valid per om_ref_request_name_valid (a
 *     repository name, optionally after a "host:port/" component) and has
 *     no '%', no "//", no "/../" or "/./" and no empty component; a
 *     blob or referrers reference is a digest, a manifest reference is a
 *     tag or a digest;
 *   - a fault names the part that was wrong: OM_V2F_NAME only for kinds
 *     that have a name, OM_V2F_DIGEST only for blobs/referrers, OM_V2F_TAG
 *     only for manifests.
 */
#include "fuzz_common.h"
#include "core/ref.h"

/* What the router and the index may rely on, whatever grammar ref.c uses. */
static bool name_sane(const char *n)
{
    size_t l = strlen(n);
    return l > 0 && l <= OM_NAME_MAX && om_ref_request_name_valid(n, l) &&
           strchr(n, '%') == NULL && strstr(n, "//") == NULL && strstr(n, "/../") == NULL &&
           strstr(n, "/./") == NULL && n[0] != '/' && n[0] != '.' && n[l - 1] != '/';
}

static void rebuild(char *buf, size_t cap, const om_v2_path *p)
{
    switch (p->kind) {
    case OM_V2_MANIFEST:
        snprintf(buf, cap, "/v2/%s/manifests/%s", p->name, om_reference_str(&p->ref));
        break;
    case OM_V2_BLOB:
        snprintf(buf, cap, "/v2/%s/blobs/%s", p->name, p->ref.digest.str);
        break;
    case OM_V2_REFERRERS:
        snprintf(buf, cap, "/v2/%s/referrers/%s", p->name, p->ref.digest.str);
        break;
    case OM_V2_TAGS:
        snprintf(buf, cap, "/v2/%s/tags/list", p->name);
        break;
    default:
        buf[0] = '\0';
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    om_v2_path p;
    om_v2_fault fault = (om_v2_fault)-1;
    char *path, *cstr;
    char buf[2 * OM_NAME_MAX + 64];
    int rc;

    /* The server refuses URLs over max_url_bytes (4 KiB by default). */
    if (size > 8192)
        return 0;
    path = fuzz_memdup(data, size);
    cstr = fuzz_strdup(data, size);
    memset(&p, 0x5a, sizeof(p));
    rc = om_v2_path_parse(&p, path, size, &fault);
    FUZZ_CHECK(rc == OM_OK || rc == OM_ERR_INVALID);
    FUZZ_CHECK((rc == OM_OK) == (fault == OM_V2F_NONE));
    /* the fault pointer is optional and must not change the answer */
    {
        om_v2_path q;
        FUZZ_CHECK(om_v2_path_parse(&q, path, size, NULL) == rc);
    }

    if (rc == OM_OK) {
        switch (p.kind) {
        case OM_V2_BASE:
            FUZZ_CHECK((size == 3 || size == 4) && memcmp(cstr, "/v2/", size) == 0);
            break;
        case OM_V2_CATALOG:
            FUZZ_CHECK_STREQ(cstr, "/v2/_catalog");
            break;
        case OM_V2_UPLOAD: {
            FUZZ_CHECK(name_sane(p.name));
            snprintf(buf, sizeof(buf), "/v2/%s/blobs/uploads/", p.name);
            FUZZ_CHECK(size >= strlen(buf) && memcmp(cstr, buf, strlen(buf)) == 0);
            break;
        }
        case OM_V2_MANIFEST:
        case OM_V2_BLOB:
        case OM_V2_REFERRERS:
        case OM_V2_TAGS: {
            size_t nl = strlen(p.name);
            FUZZ_CHECK(nl > 0 && name_sane(p.name));
            if (p.kind == OM_V2_BLOB || p.kind == OM_V2_REFERRERS)
                FUZZ_CHECK(p.ref.is_digest);
            if (p.kind != OM_V2_TAGS) {
                const char *rs = om_reference_str(&p.ref);
                om_reference back;
                FUZZ_CHECK(om_reference_parse(&back, rs, strlen(rs)) == OM_OK);
                FUZZ_CHECK(back.is_digest == p.ref.is_digest);
            }
            rebuild(buf, sizeof(buf), &p);
            /* the input has no NUL (the rebuilt path cannot), and is equal */
            FUZZ_CHECK(strlen(cstr) == size);
            FUZZ_CHECK_STREQ(buf, cstr);
            break;
        }
        default:
            FUZZ_CHECK(!"unknown kind");
        }
    } else {
        switch (fault) {
        case OM_V2F_NOT_API:
            break;
        case OM_V2F_NAME:
            FUZZ_CHECK(p.kind == OM_V2_MANIFEST || p.kind == OM_V2_BLOB ||
                       p.kind == OM_V2_REFERRERS || p.kind == OM_V2_TAGS ||
                       p.kind == OM_V2_UPLOAD);
            break;
        case OM_V2F_TAG:
            FUZZ_CHECK(p.kind == OM_V2_MANIFEST);
            /* the name was fine: it is kept for the error message */
            FUZZ_CHECK(name_sane(p.name));
            break;
        case OM_V2F_DIGEST:
            FUZZ_CHECK(p.kind == OM_V2_BLOB || p.kind == OM_V2_REFERRERS);
            FUZZ_CHECK(name_sane(p.name));
            break;
        default:
            FUZZ_CHECK(!"unknown fault");
        }
    }
    free(cstr);
    free(path);
    return 0;
}
