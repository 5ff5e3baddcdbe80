/* image_config.h — read an image configuration blob (the JSON a manifest's
 * `config` descriptor points at: Docker's container config or the OCI
 * image config) into what an operator wants to see: when and for which
 * platform it was built, how it starts (entrypoint, cmd, env, user,
 * working dir), its labels and its build history.
 *
 * Pure: no I/O, jansson only.  Used by the admin API's image view.
 * Lenient where a viewer should be: a field of the wrong type, or an array
 * entry that is not a string, is skipped rather than failing the whole
 * config.  Strict where input is hostile: the document and every list have
 * size limits.
 */
#ifndef OM_IMAGE_CONFIG_H
#define OM_IMAGE_CONFIG_H

#include "core/om.h"

#define OM_IMAGE_CONFIG_MAX (4u * 1024 * 1024) /* whole document, bytes */
#define OM_IMAGE_CONFIG_MAX_ENTRIES 4096       /* env, labels, history, cmd... */

/* A list of strings; `items` and every string in it are owned. */
struct om_strlist {
    char **items;
    size_t n;
    bool present;        /* the key existed with an array value (even empty) */
};

struct om_image_label {
    char *key;           /* owned */
    char *value;         /* owned */
};

struct om_image_history {
    char *created;       /* owned; NULL when absent */
    char *created_by;    /* owned; NULL when absent */
    char *comment;       /* owned; NULL when absent */
    bool empty_layer;
};

/* Every char * is owned by the struct (NULL when absent);
 * free with om_image_config_free. */
struct om_image_config {
    char *created;       /* RFC 3339 text as the image has it */
    char *os;
    char *architecture;
    char *variant;
    char *os_version;
    char *author;
    char *user;          /* config.User */
    char *working_dir;   /* config.WorkingDir */
    struct om_strlist entrypoint;   /* config.Entrypoint */
    struct om_strlist cmd;          /* config.Cmd */
    struct om_strlist env;          /* config.Env ("KEY=value") */
    struct om_strlist exposed_ports;/* keys of config.ExposedPorts ("80/tcp") */
    struct om_image_label *labels;  /* config.Labels in key order; owned */
    size_t n_labels;
    struct om_image_history *history; /* owned */
    size_t n_history;
    size_t n_diff_ids;   /* rootfs.diff_ids count (= non-empty layers) */
};

/* Parse len bytes of JSON.  OM_ERR_INVALID when it is not a JSON object,
 * OM_ERR_TOOBIG when len > OM_IMAGE_CONFIG_MAX or a list has more than
 * OM_IMAGE_CONFIG_MAX_ENTRIES entries, OM_ERR_NOMEM.  *out is zeroed first
 * and must be freed with om_image_config_free (also after an error). */
int om_image_config_parse(struct om_image_config *out, const char *buf, size_t len);
void om_image_config_free(struct om_image_config *c);

#endif
