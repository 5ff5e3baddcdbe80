/* fuzz_image_config.c — image config blobs (src/image_config.c:
 * om_image_config_parse, om_image_config_free).  Whoever pushes an image
 * writes its config; the admin API's image view parses the cached copy.
 *
 * Invariants (jansson's own reading of the same bytes is the oracle):
 *   - result is OM_OK, OM_ERR_INVALID, OM_ERR_TOOBIG (or OM_ERR_NOMEM);
 *     OM_ERR_INVALID exactly when the bytes are not a JSON object;
 *   - OM_OK: every scalar field is the document's string at its key (NULL
 *     when absent or not a string); every list holds exactly the string
 *     entries of its array, in order (`present` when the key is an array),
 *     at most OM_IMAGE_CONFIG_MAX_ENTRIES; ExposedPorts are the object's
 *     keys; labels are the string-valued Labels, sorted by key, each key
 *     once; history holds the object entries with their strings and
 *     empty_layer; n_diff_ids is the diff_ids array's size;
 *   - OM_ERR_TOOBIG only when a list really is longer than the limit;
 *   - om_image_config_free leaves a zeroed struct and may run twice.
 */
#include <jansson.h>

#include "fuzz_common.h"
#include "core/image_config.h"

static void check_str(const char *got, const json_t *obj, const char *key)
{
    const char *want = json_string_value(json_object_get(obj, key));
    FUZZ_CHECK((got == NULL) == (want == NULL));
    if (got != NULL)
        FUZZ_CHECK_STREQ(got, want);
}

static void check_list(const struct om_strlist *l, const json_t *arr)
{
    size_t i, k = 0;
    json_t *v;
    FUZZ_CHECK(l->present == json_is_array(arr));
    FUZZ_CHECK(l->n <= OM_IMAGE_CONFIG_MAX_ENTRIES);
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v))
            continue;
        FUZZ_CHECK(k < l->n);
        FUZZ_CHECK_STREQ(l->items[k], json_string_value(v));
        k++;
    }
    FUZZ_CHECK(k == l->n);
}

static void check_ports(const struct om_strlist *l, const json_t *obj)
{
    FUZZ_CHECK(l->present == json_is_object(obj));
    FUZZ_CHECK(l->n == (json_is_object(obj) ? json_object_size(obj) : 0));
    for (size_t i = 0; i < l->n; i++)
        FUZZ_CHECK(json_object_get(obj, l->items[i]) != NULL);
}

static void check_labels(const struct om_image_config *c, const json_t *obj)
{
    const char *key;
    json_t *v;
    size_t strings = 0;
    json_object_foreach((json_t *)obj, key, v)
        strings += json_is_string(v);
    FUZZ_CHECK(c->n_labels == (json_is_object(obj) ? strings : 0));
    for (size_t i = 0; i < c->n_labels; i++) {
        FUZZ_CHECK(i == 0 || strcmp(c->labels[i - 1].key, c->labels[i].key) < 0);
        FUZZ_CHECK_STREQ(c->labels[i].value,
                         json_string_value(json_object_get(obj, c->labels[i].key)));
    }
}

static void check_history(const struct om_image_config *c, const json_t *arr)
{
    size_t i, k = 0;
    json_t *h;
    json_array_foreach(arr, i, h) {
        if (!json_is_object(h))
            continue;
        FUZZ_CHECK(k < c->n_history);
        const struct om_image_history *e = &c->history[k++];
        check_str(e->created, h, "created");
        check_str(e->created_by, h, "created_by");
        check_str(e->comment, h, "comment");
        FUZZ_CHECK(e->empty_layer == json_is_true(json_object_get(h, "empty_layer")));
    }
    FUZZ_CHECK(k == c->n_history);
}

/* Some list of the document longer than the limit: what TOOBIG must mean. */
static bool has_long_list(const json_t *root)
{
    const json_t *cfg = json_object_get(root, "config");
    static const char *const arrays[] = {"Entrypoint", "Cmd", "Env"};
    static const char *const objects[] = {"ExposedPorts", "Labels"};
    const json_t *history = json_object_get(root, "history");
    if (json_is_array(history) && json_array_size(history) > OM_IMAGE_CONFIG_MAX_ENTRIES)
        return true;
    if (!json_is_object(cfg))
        return false;
    for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
        const json_t *a = json_object_get(cfg, arrays[i]);
        if (json_is_array(a) && json_array_size(a) > OM_IMAGE_CONFIG_MAX_ENTRIES)
            return true;
    }
    for (size_t i = 0; i < sizeof(objects) / sizeof(objects[0]); i++) {
        const json_t *o = json_object_get(cfg, objects[i]);
        if (json_is_object(o) && json_object_size(o) > OM_IMAGE_CONFIG_MAX_ENTRIES)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct om_image_config c;
    static const struct om_image_config zero;
    char *buf = fuzz_memdup(data, size);
    int rc = om_image_config_parse(&c, buf, size);
    json_t *root = json_loadb(buf, size, 0, NULL);

    FUZZ_CHECK(rc == OM_OK || rc == OM_ERR_INVALID || rc == OM_ERR_TOOBIG || rc == OM_ERR_NOMEM);
    FUZZ_CHECK((rc == OM_ERR_INVALID) == !json_is_object(root));
    if (rc == OM_ERR_TOOBIG)
        FUZZ_CHECK(has_long_list(root));
    if (rc == OM_OK) {
        const json_t *cfg = json_object_get(root, "config");
        const json_t *rootfs = json_object_get(root, "rootfs");
        const json_t *diff_ids = json_object_get(rootfs, "diff_ids");
        if (!json_is_object(cfg))
            cfg = NULL;
        check_str(c.created, root, "created");
        check_str(c.os, root, "os");
        check_str(c.architecture, root, "architecture");
        check_str(c.variant, root, "variant");
        check_str(c.os_version, root, "os.version");
        check_str(c.author, root, "author");
        check_str(c.user, cfg, "User");
        check_str(c.working_dir, cfg, "WorkingDir");
        check_list(&c.entrypoint, json_object_get(cfg, "Entrypoint"));
        check_list(&c.cmd, json_object_get(cfg, "Cmd"));
        check_list(&c.env, json_object_get(cfg, "Env"));
        check_ports(&c.exposed_ports, json_object_get(cfg, "ExposedPorts"));
        check_labels(&c, json_object_get(cfg, "Labels"));
        check_history(&c, json_object_get(root, "history"));
        FUZZ_CHECK(c.n_diff_ids == (json_is_object(rootfs) && json_is_array(diff_ids)
                                        ? json_array_size(diff_ids) : 0));
    }
    om_image_config_free(&c);
    FUZZ_CHECK(memcmp(&c, &zero, sizeof(c)) == 0);
    om_image_config_free(&c);
    json_decref(root);
    free(buf);
    return 0;
}
