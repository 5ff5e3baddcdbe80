/* manifest.h — read an image manifest or index (Docker schema 2, Docker
 * manifest list, OCI manifest, OCI index) as JSON with jansson: its media
 * type, config, layers, platform manifests and subject.
 *
 * Pure: no I/O.  Used to record what a stored manifest refers to (for GC
 * and the admin view), for Accept negotiation (the default platform of a
 * list) and by prefetch.  The bytes are never re-serialised: digests are
 * always of the upstream's exact bytes, computed elsewhere.
 */
#ifndef OM_MANIFEST_H
#define OM_MANIFEST_H

#include "core/om.h"
#include "core/ref.h"

#define OM_MANIFEST_MAX_ENTRIES 4096   /* layers or platform manifests */
#define OM_MT_MAX 255

#define OM_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define OM_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define OM_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OM_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"

struct om_descriptor {
    om_digest digest;
    char media_type[OM_MT_MAX + 1];
    int64_t size;                 /* -1 when absent */
    char platform[96];            /* "linux/amd64", "linux/arm/v7"; "" when absent */
    char artifact_type[OM_MT_MAX + 1];
};

struct om_manifest {
    char media_type[OM_MT_MAX + 1];
    bool is_index;                /* list/index: `manifests` instead of config+layers */
    bool has_config;
    struct om_descriptor config;
    struct om_descriptor *layers; /* owned, n_layers entries */
    size_t n_layers;
    struct om_descriptor *manifests; /* owned, n_manifests entries */
    size_t n_manifests;
    size_t n_over;                /* OM_ERR_TOOBIG: the entries of the list over the limit */
    bool has_subject;
    om_digest subject;
};

/* Parse.  content_type: the upstream's Content-Type (may be NULL or
 * generic); a specific manifest type there wins over the JSON's mediaType.
 * Descriptors with a malformed digest are skipped.  OM_ERR_INVALID when
 * not a JSON object; OM_ERR_TOOBIG over OM_MANIFEST_MAX_ENTRIES entries
 * (how many in n_over, for the message).
 * Free with om_manifest_free (also after an error). */
int om_manifest_parse(struct om_manifest *out, const char *buf, size_t len,
                      const char *content_type);
void om_manifest_free(struct om_manifest *m);

/* Every digest it refers to: config, layers, platform manifests, subject
 * excluded.  Returns the count written (≤ max). */
size_t om_manifest_children(const struct om_manifest *m, om_digest *out, size_t max);

/* The platform manifest for "os/arch" or "os/arch/variant"; NULL if none.
 * "linux/arm64" also matches an entry with variant v8. */
const struct om_descriptor *om_manifest_platform(const struct om_manifest *m, const char *platform);

#endif
