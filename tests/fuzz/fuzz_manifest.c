/* fuzz_manifest.c — image manifests and indexes as an upstream sends them
 * (src/manifest.c: om_manifest_parse, om_manifest_children,
 * om_manifest_platform, om_manifest_free).
 *
 * Every input is parsed twice: without a Content-Type, and with one picked
 * by the input's length from the types upstreams really send (so both the
 * "Content-Type wins" and the "mediaType field" paths run).
 *
 * Invariants:
 *   - result is OM_OK, OM_ERR_INVALID, OM_ERR_TOOBIG (or OM_ERR_NOMEM);
 *     om_manifest_free is safe after any result and leaves nothing behind;
 *   - every descriptor kept has a digest that om_digest_parse accepts (the
 *     digests become store paths) and NUL-terminated strings in its fields;
 *   - no more than OM_MANIFEST_MAX_ENTRIES layers or manifests;
 *   - the media type is NUL-terminated, and is the Content-Type (up to
 *     its parameters) when that names a specific manifest type;
 *   - om_manifest_children returns config + layers + manifests in that
 *     order, and never more than asked for;
 *   - om_manifest_platform returns an entry of `manifests` whose platform
 *     is the one asked for (or that plus "/v8" for ".../arm64").
 */
#include "fuzz_common.h"
#include "core/manifest.h"

static const char *const content_types[] = {
    NULL,
    "",
    OM_MT_DOCKER_MANIFEST,
    OM_MT_DOCKER_LIST,
    OM_MT_OCI_MANIFEST,
    OM_MT_OCI_INDEX,
    "application/json; charset=utf-8",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "text/plain",
    "application/vnd.oci.image.index.v1+json; charset=utf-8",
};

static const char *const platforms[] = {
    "linux/amd64", "linux/arm64", "linux/arm/v7", "windows/amd64", "", "linux",
};

static bool terminated(const char *s, size_t cap) { return strnlen(s, cap) < cap; }

static void check_descriptor(const struct om_descriptor *d)
{
    om_digest back;
    FUZZ_CHECK(terminated(d->digest.str, sizeof(d->digest.str)));
    FUZZ_CHECK(om_digest_parse(&back, d->digest.str, strlen(d->digest.str)) == OM_OK);
    FUZZ_CHECK(terminated(d->media_type, sizeof(d->media_type)));
    FUZZ_CHECK(terminated(d->platform, sizeof(d->platform)));
    FUZZ_CHECK(terminated(d->artifact_type, sizeof(d->artifact_type)));
}

static void check_one(const char *buf, size_t len, const char *ct)
{
    struct om_manifest m;
    static om_digest kids[OM_MANIFEST_MAX_ENTRIES * 2 + 1]; /* 590 KB: not on the stack */
    size_t total, n;
    int rc;

    memset(&m, 0x5a, sizeof(m));
    rc = om_manifest_parse(&m, buf, len, ct);
    FUZZ_CHECK(rc == OM_OK || rc == OM_ERR_INVALID || rc == OM_ERR_TOOBIG ||
               rc == OM_ERR_NOMEM);
    if (rc == OM_OK) {
        FUZZ_CHECK(terminated(m.media_type, sizeof(m.media_type)));
        FUZZ_CHECK(m.n_layers <= OM_MANIFEST_MAX_ENTRIES);
        FUZZ_CHECK(m.n_manifests <= OM_MANIFEST_MAX_ENTRIES);
        if (ct != NULL && strncmp(ct, "application/vnd.", 16) == 0) {
            /* a specific Content-Type wins over the JSON's mediaType */
            size_t tl = strcspn(ct, "; ");
            FUZZ_CHECK(strlen(m.media_type) == tl && memcmp(m.media_type, ct, tl) == 0);
        }
        if (m.has_config)
            check_descriptor(&m.config);
        for (size_t i = 0; i < m.n_layers; i++)
            check_descriptor(&m.layers[i]);
        for (size_t i = 0; i < m.n_manifests; i++)
            check_descriptor(&m.manifests[i]);
        if (m.has_subject) {
            om_digest back;
            FUZZ_CHECK(om_digest_parse(&back, m.subject.str, strlen(m.subject.str)) == OM_OK);
        }
        if (m.n_manifests > 0)
            FUZZ_CHECK(m.is_index);

        total = (m.has_config ? 1 : 0) + m.n_layers + m.n_manifests;
        n = om_manifest_children(&m, kids, OM_ARRAY_LEN(kids));
        FUZZ_CHECK(n == total);
        {
            size_t k = 0;
            if (m.has_config)
                FUZZ_CHECK_STREQ(kids[k++].str, m.config.digest.str);
            for (size_t i = 0; i < m.n_layers; i++)
                FUZZ_CHECK_STREQ(kids[k++].str, m.layers[i].digest.str);
            for (size_t i = 0; i < m.n_manifests; i++)
                FUZZ_CHECK_STREQ(kids[k++].str, m.manifests[i].digest.str);
        }
        if (total > 0) {
            FUZZ_CHECK(om_manifest_children(&m, kids, total - 1) == total - 1);
            FUZZ_CHECK(om_manifest_children(&m, kids, 0) == 0);
        }
        for (size_t p = 0; p < OM_ARRAY_LEN(platforms); p++) {
            const struct om_descriptor *d = om_manifest_platform(&m, platforms[p]);
            if (d == NULL)
                continue;
            FUZZ_CHECK(d >= m.manifests && d < m.manifests + m.n_manifests);
            size_t pl = strlen(platforms[p]);
            FUZZ_CHECK(strcmp(d->platform, platforms[p]) == 0 ||
                       (strncmp(d->platform, platforms[p], pl) == 0 &&
                        strcmp(d->platform + pl, "/v8") == 0));
        }
    }
    om_manifest_free(&m);
    FUZZ_CHECK(m.layers == NULL && m.manifests == NULL && m.n_layers == 0 && m.n_manifests == 0);
    om_manifest_free(&m); /* twice is harmless */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf;

    /* The mirror's own limit (limits.max_manifest_bytes) is 4 MiB. */
    if (size > 4u * 1024 * 1024)
        return 0;
    buf = fuzz_memdup(data, size);
    check_one(buf, size, NULL);
    check_one(buf, size, content_types[size % OM_ARRAY_LEN(content_types)]);
    free(buf);
    return 0;
}
