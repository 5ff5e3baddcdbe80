/* manifest.c — see manifest.h. */
#include "core/manifest.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void copy_str(char *dst, size_t dstsz, const char *src)
{
    snprintf(dst, dstsz, "%s", src ? src : "");
}

static bool read_descriptor(json_t *j, struct om_descriptor *d)
{
    const char *dg = json_string_value(json_object_get(j, "digest"));
    memset(d, 0, sizeof(*d));
    if (dg == NULL || om_digest_parse(&d->digest, dg, strlen(dg)) != OM_OK)
        return false;
    copy_str(d->media_type, sizeof(d->media_type),
             json_string_value(json_object_get(j, "mediaType")));
    copy_str(d->artifact_type, sizeof(d->artifact_type),
             json_string_value(json_object_get(j, "artifactType")));
    json_t *sz = json_object_get(j, "size");
    d->size = json_is_integer(sz) ? (int64_t)json_integer_value(sz) : -1;
    json_t *pf = json_object_get(j, "platform");
    const char *os = json_string_value(json_object_get(pf, "os"));
    const char *arch = json_string_value(json_object_get(pf, "architecture"));
    const char *variant = json_string_value(json_object_get(pf, "variant"));
    if (os != NULL && arch != NULL)
        snprintf(d->platform, sizeof(d->platform), "%s/%s%s%s", os, arch, variant ? "/" : "",
                 variant ? variant : "");
    return true;
}

/* An array of descriptors → a malloc'd vector of the valid ones; *over
 * gets the array's size when it is over the limit. */
static int read_list(json_t *arr, struct om_descriptor **out, size_t *n, size_t *over)
{
    *out = NULL;
    *n = 0;
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return OM_OK;
    if (json_array_size(arr) > OM_MANIFEST_MAX_ENTRIES) {
        *over = json_array_size(arr);
        return OM_ERR_TOOBIG;
    }
    struct om_descriptor *v = calloc(json_array_size(arr), sizeof(*v));
    if (v == NULL)
        return OM_ERR_NOMEM;
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        if (read_descriptor(e, &v[*n]))
            (*n)++;
    }
    *out = v;
    return OM_OK;
}

static bool specific_type(const char *ct)
{
    return ct != NULL && ct[0] != '\0' && strncmp(ct, "application/json", 16) != 0 &&
           strncmp(ct, "text/plain", 10) != 0 && strncmp(ct, "application/octet-stream", 24) != 0;
}

int om_manifest_parse(struct om_manifest *out, const char *buf, size_t len,
                      const char *content_type)
{
    memset(out, 0, sizeof(*out));
    json_error_t jerr;
    json_t *doc = json_loadb(buf, len, 0, &jerr);
    int err = OM_ERR_INVALID;
    if (doc == NULL || !json_is_object(doc))
        goto done;

    json_t *manifests = json_object_get(doc, "manifests");
    out->is_index = json_is_array(manifests);
    if (specific_type(content_type)) {
        size_t n = strcspn(content_type, "; ");
        snprintf(out->media_type, sizeof(out->media_type), "%.*s", (int)n, content_type);
    } else {
        const char *mt = json_string_value(json_object_get(doc, "mediaType"));
        if (mt != NULL && strlen(mt) <= OM_MT_MAX)
            copy_str(out->media_type, sizeof(out->media_type), mt);
        else if (json_integer_value(json_object_get(doc, "schemaVersion")) == 1)
            copy_str(out->media_type, sizeof(out->media_type),
                     "application/vnd.docker.distribution.manifest.v1+prettyjws");
        else
            copy_str(out->media_type, sizeof(out->media_type),
                     out->is_index ? OM_MT_OCI_INDEX : OM_MT_OCI_MANIFEST);
    }
    json_t *config = json_object_get(doc, "config");
    if (json_is_object(config))
        out->has_config = read_descriptor(config, &out->config);
    json_t *subject = json_object_get(doc, "subject");
    struct om_descriptor sd;
    if (json_is_object(subject) && read_descriptor(subject, &sd)) {
        out->has_subject = true;
        out->subject = sd.digest;
    }
    if ((err = read_list(json_object_get(doc, "layers"), &out->layers, &out->n_layers,
                         &out->n_over)) != OM_OK)
        goto done;
    err = read_list(manifests, &out->manifests, &out->n_manifests, &out->n_over);
done:
    json_decref(doc);
    return err;
}

void om_manifest_free(struct om_manifest *m)
{
    if (m == NULL)
        return;
    free(m->layers);
    free(m->manifests);
    m->layers = m->manifests = NULL;
    m->n_layers = m->n_manifests = 0;
}

size_t om_manifest_children(const struct om_manifest *m, om_digest *out, size_t max)
{
    size_t n = 0;
    if (m->has_config && n < max)
        out[n++] = m->config.digest;
    for (size_t i = 0; i < m->n_layers && n < max; i++)
        out[n++] = m->layers[i].digest;
    for (size_t i = 0; i < m->n_manifests && n < max; i++)
        out[n++] = m->manifests[i].digest;
    return n;
}

const struct om_descriptor *om_manifest_platform(const struct om_manifest *m, const char *platform)
{
    size_t plen = strlen(platform);
    for (size_t i = 0; i < m->n_manifests; i++) {
        const char *p = m->manifests[i].platform;
        if (strcmp(p, platform) == 0)
            return &m->manifests[i];
        /* "linux/arm64" matches "linux/arm64/v8" */
        if (strncmp(p, platform, plen) == 0 && strcmp(p + plen, "/v8") == 0)
            return &m->manifests[i];
    }
    return NULL;
}
