/* config_int.h — private to the config module; nothing outside
 * src/core/config*.c includes this.
 *
 *   config.c            the struct: defaults, load a file, overrides, dump,
 *                       free
 *   config_yaml.c       YAML mechanics: libfyaml, positions, error messages,
 *                       the table-driven mapping walker, om_config_parse()
 *   config_keys.c       what each key means: the top-level table, the server
 *                       side (listen, tls, admin, storage, limits, log,
 *                       retries, prefetch) and the checks across its keys
 *   config_upstreams.c  where images come from: upstreams, rewrites,
 *                       search_order
 *   config_storage.c    where content lives: storage (fs or an S3 bucket)
 *   config_value.c      pure value parsers (durations, sizes, listen)
 *   config_limits.c     the per-client limits: trusted_proxies, per_client,
 *                       per_user
 */
#ifndef OM_CONFIG_INT_H
#define OM_CONFIG_INT_H

#include "core/config.h"

struct fy_node;

/* One parse: where messages go and what is resolved at the end. */
struct om_cfg_ctx {
    const char *name;   /* file name for messages (borrowed) */
    char *err;          /* caller's buffer */
    size_t errlen;
    bool failed;        /* the first error is already written */
    struct fy_node *so_key, *so_val; /* search_order, resolved at the end */
    char lib_msg[256];  /* last line libfyaml sent to the diag callback */
};

/* How a mapping key's value is stored into obj + off. */
enum om_cfg_kind {
    K_STR,     /* char *, required, non-empty */
    K_OPTSTR,  /* char *, null = unset; check (if any) runs on any other value */
    K_BOOL,    /* bool: true/false */
    K_UINT,    /* unsigned: a whole number in [min, max] */
    K_SIZE,    /* size_t: om_parse_size() in [min, max] */
    K_SIZE64,  /* uint64_t: om_parse_size() in [min, max] (disk sizes) */
    K_MS,      /* uint64_t: om_parse_duration_ms() in [min, max] */
    K_FN,      /* fn(c, obj, key, value) does it */
};

typedef int (*om_cfg_fn)(struct om_cfg_ctx *c, void *obj, struct fy_node *key,
                         struct fy_node *v);

struct om_cfg_field {
    const char *key;
    enum om_cfg_kind kind;
    size_t off;          /* where the value goes in obj */
    uint64_t min, max;   /* numbers: allowed range */
    om_cfg_fn fn;        /* K_FN */
    /* K_STR, K_OPTSTR: NULL if the stored value is fine, else what is wrong
     * with it ("must be ...").  May rewrite the value in place (shorten it). */
    const char *(*check)(char *value);
};

/* Writing table rows (config_keys.c, config_upstreams.c): where a value
 * goes in its struct, and one row of each common shape. */
#define CFG(m) offsetof(struct om_config, m)
#define UP(m) offsetof(struct om_upstream_cfg, m)
#define RW(m) offsetof(struct om_rewrite_cfg, m)
#define CR(m) offsetof(struct om_credential_cfg, m)
#define STR(k, o, chk) {.key = (k), .kind = K_STR, .off = (o), .check = (chk)}
#define OPTSTR(k, o) {.key = (k), .kind = K_OPTSTR, .off = (o)}
#define NUM(k, kd, o, lo, hi) {.key = (k), .kind = (kd), .off = (o), .min = (lo), .max = (hi)}
#define FN(k, f) {.key = (k), .kind = K_FN, .fn = (f)}

/* --- config_yaml.c --- */

/* Record the first error as "NAME:LINE:COL: message" at n's position (or
 * fallback's, if n has none).  Always returns OM_ERR_INVALID. */
int om_cfg_report(struct om_cfg_ctx *c, struct fy_node *n, struct fy_node *fallback,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Printable, bounded copy of outside text for a message; returns buf. */
const char *om_cfg_shown(char *buf, size_t size, const char *s, size_t len);
/* A YAML null: no value, `~` or `null`, unquoted.  Quoted "" is a string. */
bool om_cfg_is_null(struct fy_node *v);
/* The text of scalar v (not NUL-terminated, no NUL inside, bounded). */
int om_cfg_scalar(struct om_cfg_ctx *c, struct fy_node *key, struct fy_node *v,
                  const char **s, size_t *len);
/* strdup of scalar v into *dst, freeing what was there; *dst owns it. */
int om_cfg_scalar_dup(struct om_cfg_ctx *c, struct fy_node *key, struct fy_node *v,
                      char **dst);
/* Walk mapping m (the value of key `owner`; NULL at the top) with table f,
 * storing into obj.  Null m = empty mapping; unknown keys are errors. */
int om_cfg_walk_map(struct om_cfg_ctx *c, struct fy_node *owner, struct fy_node *m,
                    const char *where, const struct om_cfg_field *f, size_t nf, void *obj);
/* The key node `name` of mapping m (and its value in *val), or NULL. */
struct fy_node *om_cfg_find_key(struct fy_node *m, const char *name, struct fy_node **val);
/* Item `index` of sequence seq, or NULL. */
struct fy_node *om_cfg_seq_item(struct fy_node *seq, size_t index);
/* OM_OK if v is a sequence or null, else an error naming `what`. */
int om_cfg_want_seq(struct om_cfg_ctx *c, struct fy_node *key, struct fy_node *v,
                    const char *what);

/* --- config_keys.c --- */

extern const struct om_cfg_field om_cfg_top_fields[];
extern const size_t om_cfg_n_top_fields;
/* Does s hold a blank or a control character (never valid in names, URLs,
 * addresses, tokens)? */
bool om_cfg_has_ctl(const char *s);
/* *out = the contents of file `path` (at most max bytes, not empty, no NUL),
 * trailing CR/LF cut; with `trim_blanks` also blanks at both ends, and no
 * blank or control character may remain.  *out is the caller's (wipe it
 * before free: a secret).  `what` names the key in messages; errors point
 * at `at`. */
int om_cfg_read_secret(struct om_cfg_ctx *c, const char *path, size_t max, const char *what,
                       bool trim_blanks, struct fy_node *at, char **out);
/* A K_STR/K_OPTSTR check: http:// or https:// and a host[:port], nothing
 * else (a trailing '/' is cut). */
const char *om_cfg_check_base_url(char *s);

/* --- config_storage.c --- */

/* The value of the top-level key storage (an om_cfg_fn, obj = the config). */
int om_cfg_h_storage(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v);
/* The storage defaults that are not plain numbers (region, prefix). */
int om_cfg_storage_defaults(struct om_config *cfg);
/* Free storage.s3's strings (wiping the secret key) and zero it. */
void om_cfg_storage_clear(struct om_config *cfg);

/* --- config_upstreams.c --- */

/* The values of the top-level keys upstreams, rewrites and search_order
 * (om_cfg_fn handlers for om_cfg_top_fields; obj is the struct om_config).
 * search_order is only checked to be a list here and resolved by
 * om_cfg_finish_search_order. */
int om_cfg_h_upstreams(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v);
int om_cfg_h_rewrites(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v);
int om_cfg_h_search_order(struct om_cfg_ctx *c, void *obj, struct fy_node *key,
                          struct fy_node *v);
/* After the whole document: resolve search_order (or default it). */
int om_cfg_finish_search_order(struct om_cfg_ctx *c, struct om_config *cfg);

/* --- config_limits.c --- */

/* limits.trusted_proxies, .per_client, .per_user (om_cfg_fn handlers, obj is
 * the struct om_config). */
int om_cfg_h_trusted_proxies(struct om_cfg_ctx *c, void *obj, struct fy_node *key,
                             struct fy_node *v);
int om_cfg_h_per_client(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v);
int om_cfg_h_per_user(struct om_cfg_ctx *c, void *obj, struct fy_node *key, struct fy_node *v);
/* After the limits mapping: per_user keys not given take per_client's. */
void om_cfg_limits_finish(struct om_limits *l);
/* Free per_user (names and array); n_per_user = 0. */
void om_cfg_limits_clear_users(struct om_limits *l);
/* The per-client keys, as the YAML lines of om_config_dump (indent 2). */
void om_cfg_limits_dump(FILE *f, const struct om_limits *l);

/* --- config.c --- */

/* Read a whole regular file of at most `max` bytes into a NUL-terminated
 * buffer the caller owns (free it; wipe it first if it may hold a secret).
 * OM_ERR_IO (with *why set), OM_ERR_TOOBIG or OM_ERR_NOMEM on failure. */
int om_cfg_slurp(const char *path, size_t max, char **out, size_t *outlen, const char **why);
/* Does s[0..len) equal u's name or an alias, ignoring case? */
bool om_cfg_upstream_has(const struct om_upstream_cfg *u, const char *s, size_t len);
/* Free everything an upstream owns (wiping its password) and zero it. */
void om_cfg_upstream_clear(struct om_upstream_cfg *u);
/* Free rewrites[0..n_rewrites) (strings and compiled regexes); n = 0. */
void om_cfg_rewrites_clear(struct om_config *cfg);

#endif
