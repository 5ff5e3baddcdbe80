/* image_config.c — an image config blob (Docker container config or OCI
 * image config JSON) → struct om_image_config (see image_config.h).
 *
 * Design: jansson parses the document once; we copy out only the fields
 * an operator looks at, so the result owns plain C strings and the
 * json_t tree is dropped before returning.  Both formats put the runtime
 * settings under "config" (Docker's older "container_config" describes
 * the build container, not the image, and is ignored).  Lenient on types
 * (a viewer should show what it can), strict on sizes (OM_IMAGE_CONFIG_MAX
 * for the document, OM_IMAGE_CONFIG_MAX_ENTRIES for every list).
 */
#include "core/image_config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* A malloc'd copy of a JSON string value, NULL when v is not a string.
 * *err is set to OM_ERR_NOMEM when the copy fails. */
static char *dup_str(const json_t *v, int *err)
{
    char *s = NULL;
    if (!json_is_string(v))
        return NULL;
    s = strndup(json_string_value(v), json_string_length(v));
    if (s == NULL)
        *err = OM_ERR_NOMEM;
    return s;
}

/* Copy the string entries of a JSON array; other entries are skipped. */
static int strlist_from_array(struct om_strlist *out, const json_t *arr)
{
    size_t i, n;
    json_t *v;
    int err = OM_OK;

    if (!json_is_array(arr))
        return OM_OK;
    out->present = true;
    n = json_array_size(arr);
    if (n > OM_IMAGE_CONFIG_MAX_ENTRIES)
        return OM_ERR_TOOBIG;
    if (n == 0)
        return OM_OK;
    out->items = calloc(n, sizeof(*out->items)); /* owned by out */
    if (out->items == NULL)
        return OM_ERR_NOMEM;
    json_array_foreach(arr, i, v) {
        char *s = dup_str(v, &err);
        if (err != OM_OK)
            break;
        if (s != NULL)
            out->items[out->n++] = s;
    }
    return err;
}

/* The keys of a JSON object (ExposedPorts: {"80/tcp": {}}). */
static int strlist_from_keys(struct om_strlist *out, const json_t *obj)
{
    const char *key;
    json_t *v;
    size_t n;

    if (!json_is_object(obj))
        return OM_OK;
    out->present = true;
    n = json_object_size(obj);
    if (n > OM_IMAGE_CONFIG_MAX_ENTRIES)
        return OM_ERR_TOOBIG;
    if (n == 0)
        return OM_OK;
    out->items = calloc(n, sizeof(*out->items)); /* owned by out */
    if (out->items == NULL)
        return OM_ERR_NOMEM;
    json_object_foreach((json_t *)obj, key, v) {
        (void)v;
        if ((out->items[out->n] = strdup(key)) == NULL)
            return OM_ERR_NOMEM;
        out->n++;
    }
    return OM_OK;
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(((const struct om_image_label *)a)->key,
                  ((const struct om_image_label *)b)->key);
}

static int labels_from(struct om_image_config *c, const json_t *obj)
{
    const char *key;
    json_t *v;
    size_t n;
    int err = OM_OK;

    if (!json_is_object(obj))
        return OM_OK;
    n = json_object_size(obj);
    if (n > OM_IMAGE_CONFIG_MAX_ENTRIES)
        return OM_ERR_TOOBIG;
    if (n == 0)
        return OM_OK;
    c->labels = calloc(n, sizeof(*c->labels)); /* owned by c */
    if (c->labels == NULL)
        return OM_ERR_NOMEM;
    json_object_foreach((json_t *)obj, key, v) {
        struct om_image_label *l = &c->labels[c->n_labels];
        if (!json_is_string(v))
            continue;
        l->key = strdup(key);
        l->value = dup_str(v, &err);
        if (l->key == NULL || err != OM_OK) {
            free(l->key);
            free(l->value);
            l->key = l->value = NULL;
            return OM_ERR_NOMEM;
        }
        c->n_labels++;
    }
    /* jansson's iteration order is its hash order: sort for a stable view. */
    qsort(c->labels, c->n_labels, sizeof(*c->labels), cmp_label);
    return OM_OK;
}

static int history_from(struct om_image_config *c, const json_t *arr)
{
    size_t i, n;
    json_t *h;
    int err = OM_OK;

    if (!json_is_array(arr))
        return OM_OK;
    n = json_array_size(arr);
    if (n > OM_IMAGE_CONFIG_MAX_ENTRIES)
        return OM_ERR_TOOBIG;
    if (n == 0)
        return OM_OK;
    c->history = calloc(n, sizeof(*c->history)); /* owned by c */
    if (c->history == NULL)
        return OM_ERR_NOMEM;
    json_array_foreach(arr, i, h) {
        struct om_image_history *e;
        if (!json_is_object(h))
            continue;
        e = &c->history[c->n_history++];
        e->created = dup_str(json_object_get(h, "created"), &err);
        e->created_by = dup_str(json_object_get(h, "created_by"), &err);
        e->comment = dup_str(json_object_get(h, "comment"), &err);
        e->empty_layer = json_is_true(json_object_get(h, "empty_layer"));
        if (err != OM_OK)
            break;
    }
    return err;
}

int om_image_config_parse(struct om_image_config *out, const char *buf, size_t len)
{
    json_t *root = NULL, *cfg, *rootfs;
    json_error_t jerr;
    int err = OM_OK;

    memset(out, 0, sizeof(*out));
    if (buf == NULL) {
        err = OM_ERR_INVALID;
        goto done;
    }
    if (len > OM_IMAGE_CONFIG_MAX) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    root = json_loadb(buf, len, 0, &jerr); /* freed at done */
    if (!json_is_object(root)) {
        err = OM_ERR_INVALID;
        goto done;
    }
    out->created = dup_str(json_object_get(root, "created"), &err);
    out->os = dup_str(json_object_get(root, "os"), &err);
    out->architecture = dup_str(json_object_get(root, "architecture"), &err);
    out->variant = dup_str(json_object_get(root, "variant"), &err);
    out->os_version = dup_str(json_object_get(root, "os.version"), &err);
    out->author = dup_str(json_object_get(root, "author"), &err);
    if (err != OM_OK)
        goto done;
    cfg = json_object_get(root, "config");
    if (json_is_object(cfg)) {
        out->user = dup_str(json_object_get(cfg, "User"), &err);
        out->working_dir = dup_str(json_object_get(cfg, "WorkingDir"), &err);
        if (err != OM_OK)
            goto done;
        if ((err = strlist_from_array(&out->entrypoint, json_object_get(cfg, "Entrypoint"))) != OM_OK ||
            (err = strlist_from_array(&out->cmd, json_object_get(cfg, "Cmd"))) != OM_OK ||
            (err = strlist_from_array(&out->env, json_object_get(cfg, "Env"))) != OM_OK ||
            (err = strlist_from_keys(&out->exposed_ports, json_object_get(cfg, "ExposedPorts"))) != OM_OK ||
            (err = labels_from(out, json_object_get(cfg, "Labels"))) != OM_OK)
            goto done;
    }
    if ((err = history_from(out, json_object_get(root, "history"))) != OM_OK)
        goto done;
    rootfs = json_object_get(root, "rootfs");
    if (json_is_object(rootfs) && json_is_array(json_object_get(rootfs, "diff_ids")))
        out->n_diff_ids = json_array_size(json_object_get(rootfs, "diff_ids"));
done:
    json_decref(root);
    return err;
}

static void strlist_free(struct om_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

void om_image_config_free(struct om_image_config *c)
{
    if (c == NULL)
        return;
    free(c->created);
    free(c->os);
    free(c->architecture);
    free(c->variant);
    free(c->os_version);
    free(c->author);
    free(c->user);
    free(c->working_dir);
    strlist_free(&c->entrypoint);
    strlist_free(&c->cmd);
    strlist_free(&c->env);
    strlist_free(&c->exposed_ports);
    for (size_t i = 0; i < c->n_labels; i++) {
        free(c->labels[i].key);
        free(c->labels[i].value);
    }
    free(c->labels);
    for (size_t i = 0; i < c->n_history; i++) {
        free(c->history[i].created);
        free(c->history[i].created_by);
        free(c->history[i].comment);
    }
    free(c->history);
    memset(c, 0, sizeof(*c));
}
