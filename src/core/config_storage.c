/* config_storage.c — the storage section of the config: where content
 * lives and how much of it may be kept.
 *
 *   storage     path max_size high_water low_water gc_interval backend
 *               redirect redirect_ttl s3
 *                                        (low < high when max_size set;
 *                                         redirect needs backend s3)
 *   storage.s3  endpoint region bucket prefix access_key access_key_file
 *               secret_key secret_key_file path_style ca_file part_size
 *                                        (with backend s3: endpoint, bucket
 *                                         and both keys required; a key or
 *                                         its _file, not both)
 *
 * Values are checked here as far as text can tell: the endpoint is a
 * scheme and a host (config_keys.c's base-URL check, as public_url), the
 * bucket a DNS-style name (it becomes a host name in virtual-hosted
 * style), the prefix only characters that need no %-encoding in a path or
 * a SigV4 canonical URI (so a key is the same string everywhere: the
 * request, the signature, a listing), normalised to end with "/".
 * Whether the bucket answers is the store's business (cache/store_s3.c,
 * at open).
 *
 * Secrets: secret_key (or the contents of secret_key_file) never appears
 * in a message or the dump; the access key is an identifier (it is sent in
 * the clear in every Authorization header) and is shown.  A file's
 * contents are trimmed like admin.token_file's.
 *
 * Defaults (om_cfg_storage_defaults), freeing (om_cfg_storage_clear) and
 * the dump's lines (config.c) are kept with the rest of the struct.
 */
#include "core/config_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libfyaml.h>

#define MS_MAX (365ull * 24 * 3600 * 1000)   /* no duration beyond a year */
#define REDIRECT_TTL_MAX (7ull * 24 * 3600 * 1000) /* SigV4 presigned URLs: 7 days at most */

/* A bucket name as S3 defines it for virtual-hosted style: 3..63 of
 * [a-z0-9.-], starting and ending with a letter or digit. */
static const char *check_bucket(char *s)
{
    size_t n = strlen(s);
    bool ok = n >= 3 && n <= 63 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.-") == n &&
              strchr(".-", s[0]) == NULL && strchr(".-", s[n - 1]) == NULL;
    return ok ? NULL : "must be 3 to 63 lowercase letters, digits, '.' or '-' (S3 bucket rules)";
}

/* Only unreserved characters and '/', no leading '/', no empty segment:
 * a key built on it needs no encoding and names one object everywhere. */
static const char *check_prefix(char *s)
{
    size_t n = strlen(s);
    static const char ok_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-._~/";
    if (n == 0)
        return NULL;
    if (n > OM_S3_PREFIX_MAX - 1 || strspn(s, ok_chars) != n || s[0] == '/' ||
        strstr(s, "//") != NULL)
        return "must be letters, digits, '-', '.', '_', '~' and '/' (no leading '/', no "
               "empty segment, at most 255 bytes)";
    return NULL;
}

/* An access key id travels in "Credential=KEY/date/...": no '/', blank or
 * control character. */
static const char *check_access_key(char *s)
{
    return s[0] == '\0' || om_cfg_has_ctl(s) || strchr(s, '/') != NULL
               ? "must be non-empty, without '/', blanks or control characters"
               : NULL;
}

static const char *check_region(char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 64 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-_") == n
               ? NULL
               : "must be lowercase letters, digits, '-' or '_' (e.g. us-east-1)";
}

static int h_backend(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    const char *s = NULL;
    size_t len = 0;
    int rc = om_cfg_scalar(c, key, v, &s, &len);

    if (rc == OM_OK && len == 2 && strncmp(s, "fs", 2) == 0)
        cfg->storage_backend = OM_STORAGE_FS;
    else if (rc == OM_OK && len == 2 && strncmp(s, "s3", 2) == 0)
        cfg->storage_backend = OM_STORAGE_S3;
    else if (rc == OM_OK)
        rc = om_cfg_report(c, v, key, "storage backend must be fs or s3");
    return rc;
}

static const struct om_cfg_field s3_fields[] = {
    {.key = "endpoint", .kind = K_STR, .off = CFG(storage_s3.endpoint),
     .check = om_cfg_check_base_url},
    {.key = "region", .kind = K_STR, .off = CFG(storage_s3.region), .check = check_region},
    {.key = "bucket", .kind = K_STR, .off = CFG(storage_s3.bucket), .check = check_bucket},
    {.key = "prefix", .kind = K_OPTSTR, .off = CFG(storage_s3.prefix), .check = check_prefix},
    {.key = "access_key", .kind = K_OPTSTR, .off = CFG(storage_s3.access_key),
     .check = check_access_key},
    OPTSTR("access_key_file", CFG(storage_s3.access_key_file)),
    /* no check that could print it: h_s3 looks at it */
    OPTSTR("secret_key", CFG(storage_s3.secret_key)),
    OPTSTR("secret_key_file", CFG(storage_s3.secret_key_file)),
    {.key = "path_style", .kind = K_BOOL, .off = CFG(storage_s3.path_style)},
    OPTSTR("ca_file", CFG(storage_s3.ca_file)),
    NUM("part_size", K_SIZE64, CFG(storage_s3.part_size), OM_S3_PART_MIN, OM_S3_PART_MAX),
};

/* One of `name` and `name_file` (`file`, the latter's path or NULL): the
 * file's trimmed contents become *value (owned by the config). */
static int key_or_file(struct om_cfg_ctx *c, struct fy_node *key, struct fy_node *v,
                       const char *name, char **value, char *file)
{
    char file_key[32];
    struct fy_node *fk = NULL, *fv = NULL;
    int rc = OM_OK;

    snprintf(file_key, sizeof(file_key), "%s_file", name);
    fk = om_cfg_find_key(v, file_key, &fv);
    if (*value != NULL && file != NULL)
        rc = om_cfg_report(c, fk, key, "storage s3: give %s or %s, not both", name, file_key);
    else if (file != NULL)
        rc = om_cfg_read_secret(c, file, OM_S3_KEY_FILE_MAX, file_key, true, fv, value);
    return rc;
}

static int h_s3(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    struct om_s3_cfg *s3 = &cfg->storage_s3;
    struct fy_node *sk_v = NULL;
    int rc = om_cfg_walk_map(c, key, v, "storage s3", s3_fields, OM_ARRAY_LEN(s3_fields), obj);

    if (rc == OM_OK)
        rc = key_or_file(c, key, v, "access_key", &s3->access_key, s3->access_key_file);
    if (rc == OM_OK && s3->access_key_file != NULL && check_access_key(s3->access_key) != NULL)
        rc = om_cfg_report(c, key, NULL, "storage s3: access_key_file holds no usable key (%s)",
                           check_access_key(s3->access_key));
    if (rc == OM_OK)
        rc = key_or_file(c, key, v, "secret_key", &s3->secret_key, s3->secret_key_file);
    om_cfg_find_key(v, "secret_key", &sk_v);
    if (rc == OM_OK && s3->secret_key != NULL &&
        (s3->secret_key[0] == '\0' || om_cfg_has_ctl(s3->secret_key)))
        rc = om_cfg_report(c, sk_v, key, "storage s3: secret_key must be non-empty, without "
                                         "blanks or control characters");
    if (rc == OM_OK && s3->prefix != NULL && s3->prefix[0] != '\0' &&
        s3->prefix[strlen(s3->prefix) - 1] != '/') {
        size_t n = strlen(s3->prefix);
        char *p = realloc(s3->prefix, n + 2);
        if (p == NULL) {
            rc = OM_ERR_NOMEM;
        } else {
            p[n] = '/';
            p[n + 1] = '\0';
            s3->prefix = p;
        }
    }
    return rc;
}

static const struct om_cfg_field storage_fields[] = {
    STR("path", CFG(storage_path), NULL),
    NUM("max_size", K_SIZE64, CFG(storage_max_size), 0, UINT64_MAX),
    NUM("high_water", K_UINT, CFG(storage_high_water), 1, 100),
    NUM("low_water", K_UINT, CFG(storage_low_water), 1, 100),
    NUM("gc_interval", K_MS, CFG(gc_interval_ms), 1000, MS_MAX),
    FN("backend", h_backend),
    {.key = "redirect", .kind = K_BOOL, .off = CFG(storage_redirect)},
    NUM("redirect_ttl", K_MS, CFG(storage_redirect_ttl_ms), 1000, REDIRECT_TTL_MAX),
    FN("s3", h_s3),
};

/* After the storage mapping: the GC thresholds only matter with a limit;
 * an s3 backend needs its bucket, endpoint and keys; redirect needs a
 * backend whose objects have URLs. */
int om_cfg_h_storage(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v)
{
    struct om_config *cfg = obj;
    const struct om_s3_cfg *s3 = &cfg->storage_s3;
    struct fy_node *at = NULL, *s3_k = NULL, *s3_v = NULL;
    int rc = om_cfg_walk_map(c, key, v, "storage", storage_fields, OM_ARRAY_LEN(storage_fields),
                             obj);

    if (rc == OM_OK && cfg->storage_max_size != 0 &&
        cfg->storage_low_water >= cfg->storage_high_water) {
        om_cfg_find_key(v, "low_water", &at);
        rc = om_cfg_report(c, at, key, "storage low_water (%u) must be below high_water (%u)",
                           cfg->storage_low_water, cfg->storage_high_water);
    }
    s3_k = om_cfg_find_key(v, "s3", &s3_v);
    if (rc == OM_OK && cfg->storage_backend == OM_STORAGE_S3) {
        const char *missing = s3->endpoint == NULL     ? "endpoint"
                              : s3->bucket == NULL     ? "bucket"
                              : s3->access_key == NULL ? "access_key or access_key_file"
                              : s3->secret_key == NULL ? "secret_key or secret_key_file"
                                                       : NULL;
        if (missing != NULL)
            rc = om_cfg_report(c, s3_k, key, "storage backend s3 needs storage.s3.%s", missing);
    }
    if (rc == OM_OK && cfg->storage_redirect && cfg->storage_backend != OM_STORAGE_S3) {
        om_cfg_find_key(v, "redirect", &at);
        rc = om_cfg_report(c, at, key, "storage redirect needs backend s3 (a file on the "
                                       "mirror's disk has no URL to send clients to)");
    }
    return rc;
}

int om_cfg_storage_defaults(struct om_config *cfg)
{
    cfg->storage_backend = OM_STORAGE_FS;
    cfg->storage_redirect = false;
    cfg->storage_redirect_ttl_ms = 10 * 60 * 1000;
    cfg->storage_s3.part_size = 16ull << 20;
    cfg->storage_s3.path_style = false;
    cfg->storage_s3.region = strdup("us-east-1");
    cfg->storage_s3.prefix = strdup("");
    return cfg->storage_s3.region != NULL && cfg->storage_s3.prefix != NULL ? OM_OK
                                                                            : OM_ERR_NOMEM;
}

void om_cfg_storage_clear(struct om_config *cfg)
{
    struct om_s3_cfg *s3 = &cfg->storage_s3;

    if (s3->secret_key != NULL)
        explicit_bzero(s3->secret_key, strlen(s3->secret_key));
    free(s3->endpoint);
    free(s3->region);
    free(s3->bucket);
    free(s3->prefix);
    free(s3->access_key);
    free(s3->access_key_file);
    free(s3->secret_key);
    free(s3->secret_key_file);
    free(s3->ca_file);
    memset(s3, 0, sizeof(*s3));
}
