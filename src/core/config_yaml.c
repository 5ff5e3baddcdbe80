/* config_yaml.c — YAML text → struct om_config: the libfyaml side of the
 * config module (see config_int.h for how the module is split).
 *
 * How a file is read:
 *   1. om_config_default() fills a fresh struct with the embedded defaults.
 *   2. libfyaml parses the text into a document.  Its diagnostics go to a
 *      diag object in "collect" mode with an output callback, so a syntax
 *      error becomes our one-line "FILE:LINE:COL: message" in the caller's
 *      err buffer and nothing is printed behind our back.  Only one YAML
 *      document is allowed (a second one is an error, not silently dropped).
 *   3. The node tree is walked with one table of `struct om_cfg_field` per
 *      mapping (config_keys.c).  A key not in its table is an error; a value
 *      is checked as it is stored.
 *   4. The first error wins: om_cfg_report() formats it with the position
 *      of the node it is about; every caller unwinds through `goto done` and
 *      the half-built struct is freed.
 *
 * Positions: libfyaml 0.7.12 has no fy_node_get_start_mark(), so node_mark()
 * takes the start mark of the node's scalar token, or for a mapping or
 * sequence that of the first scalar inside it, or falls back to the key the
 * value belongs to (an empty value like `tls:` has no token at all).  Marks
 * are 0-based; messages are 1-based like every compiler's.
 *
 * YAML aliases (*name) are refused: nothing here needs them, and resolving
 * them would let a small file expand into a huge tree.
 */
#include "core/config_int.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libfyaml.h>

#define STR_MAX 4096 /* any one string value (paths, URLs, regexes) */

/* ---- positions and messages ------------------------------------------- */

/* 1-based line/column of n (see the file comment); false if it has none. */
static bool node_mark(struct fy_node *n, int *line, int *col)
{
    bool found = false;

    for (int depth = 0; n != NULL && depth < 64 && !found; depth++) {
        void *it = NULL;
        if (fy_node_is_scalar(n)) {
            struct fy_token *t = fy_node_get_scalar_token(n);
            const struct fy_mark *m = t != NULL ? fy_token_start_mark(t) : NULL;
            if (m != NULL) {
                /* the mark is where the text starts: step back over the
                 * opening quote or the '*' so the column names the token */
                enum fy_node_style st = fy_node_get_style(n);
                bool opener = st == FYNS_SINGLE_QUOTED || st == FYNS_DOUBLE_QUOTED ||
                              st == FYNS_ALIAS;
                *line = m->line + 1;
                *col = m->column + 1 - (opener && m->column > 0 ? 1 : 0);
                found = true;
            }
            n = NULL;
        } else if (fy_node_is_mapping(n)) {
            struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
            n = p != NULL ? fy_node_pair_key(p) : NULL;
        } else {
            n = fy_node_sequence_iterate(n, &it);
        }
    }
    return found;
}

/* Printable, bounded copy of outside text for a message. */
const char *om_cfg_shown(char *buf, size_t size, const char *s, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len && o + 4 < size; i++)
        buf[o++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    if (len > o) { /* cut short */
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

/* Record the first error as "NAME:LINE:COL: message". */
static int report_at(struct om_cfg_ctx *c, int line, int col, const char *msg)
{
    if (!c->failed) {
        c->failed = true;
        if (c->err != NULL && c->errlen > 0)
            snprintf(c->err, c->errlen, "%s:%d:%d: %s", c->name, line, col, msg);
    }
    return OM_ERR_INVALID;
}

int om_cfg_report(struct om_cfg_ctx *c, struct fy_node *n, struct fy_node *fallback,
                  const char *fmt, ...)
{
    char msg[512];
    int line = 1, col = 1;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!node_mark(n, &line, &col))
        node_mark(fallback, &line, &col);
    return report_at(c, line, col, msg);
}

/* ---- scalars ------------------------------------------------------------ */

static const char *key_text(struct fy_node *key, char *buf, size_t size)
{
    size_t len = 0;
    const char *s = fy_node_is_scalar(key) ? fy_node_get_scalar(key, &len) : NULL;

    return om_cfg_shown(buf, size, s != NULL ? s : "?", s != NULL ? len : 1);
}

bool om_cfg_is_null(struct fy_node *v)
{
    size_t len = 0;
    const char *s = NULL;
    bool null = v == NULL;

    if (!null && fy_node_is_scalar(v) && fy_node_get_style(v) == FYNS_PLAIN) {
        s = fy_node_get_scalar(v, &len); /* quoted, alias or collection: not null */
        null = s == NULL || len == 0 || (len == 1 && s[0] == '~') ||
               (len == 4 && (memcmp(s, "null", 4) == 0 || memcmp(s, "Null", 4) == 0 ||
                             memcmp(s, "NULL", 4) == 0));
    }
    return null;
}

int om_cfg_scalar(struct om_cfg_ctx *c, struct fy_node *key, struct fy_node *v,
                  const char **s, size_t *len)
{
    char kb[80];
    int rc = OM_ERR_INVALID;

    *s = NULL;
    *len = 0;
    if (v != NULL && fy_node_is_alias(v))
        om_cfg_report(c, v, key, "YAML aliases are not supported here");
    else if (v == NULL || !fy_node_is_scalar(v))
        om_cfg_report(c, v, key, "%s must be a single value", key_text(key, kb, sizeof(kb)));
    else if ((*s = fy_node_get_scalar(v, len)) == NULL)
        *s = "", rc = OM_OK; /* an empty scalar */
    else if (*len > STR_MAX)
        om_cfg_report(c, v, key, "%s is longer than %d bytes", key_text(key, kb, sizeof(kb)),
                      STR_MAX);
    else if (memchr(*s, '\0', *len) != NULL)
        om_cfg_report(c, v, key, "%s contains a NUL byte", key_text(key, kb, sizeof(kb)));
    else
        rc = OM_OK;
    return rc;
}

int om_cfg_scalar_dup(struct om_cfg_ctx *c, struct fy_node *key, struct fy_node *v, char **dst)
{
    const char *s = NULL;
    size_t len = 0;
    char *p = NULL;
    int rc = om_cfg_scalar(c, key, v, &s, &len);

    if (rc == OM_OK && (p = strndup(s, len)) == NULL)
        rc = OM_ERR_NOMEM;
    if (rc == OM_OK) {
        free(*dst);
        *dst = p; /* the caller's struct owns it now */
    }
    return rc;
}

/* ---- the table-driven mapping walker ------------------------------------ */

/* K_UINT, K_SIZE, K_MS: parse, range-check, store with the field's width. */
static int set_number(struct om_cfg_ctx *c, void *obj, const struct om_cfg_field *f,
                      struct fy_node *key, struct fy_node *v)
{
    char buf[40], kb[80], vb[48];
    const char *s = NULL;
    size_t len = 0;
    uint64_t n = 0;
    bool ok = false;
    int rc = OM_ERR_INVALID;

    if (om_cfg_is_null(v)) {
        om_cfg_report(c, v, key, "%s needs a value", f->key);
        goto done;
    }
    if ((rc = om_cfg_scalar(c, key, v, &s, &len)) != OM_OK)
        goto done;
    if (len < sizeof(buf)) {
        memcpy(buf, s, len);
        buf[len] = '\0';
        if (f->kind == K_MS) {
            ok = om_parse_duration_ms(buf, &n) == OM_OK;
        } else if (f->kind == K_SIZE || f->kind == K_SIZE64) {
            ok = om_parse_size(buf, &n) == OM_OK;
        } else { /* K_UINT: a plain count; 19 digits cannot overflow */
            ok = len > 0 && len <= 19 && strspn(buf, "0123456789") == len;
            n = ok ? strtoull(buf, NULL, 10) : 0;
        }
    }
    rc = OM_ERR_INVALID;
    if (!ok)
        om_cfg_report(c, v, key, "%s: \"%s\" is not a %s", key_text(key, kb, sizeof(kb)),
                      om_cfg_shown(vb, sizeof(vb), s, len),
                      f->kind == K_MS     ? "duration (e.g. 250ms, 30s, 5m, 1h, 1d)"
                      : f->kind == K_SIZE || f->kind == K_SIZE64
                          ? "size (e.g. 512, 64KiB, 4MiB, 10GB)"
                                          : "whole number");
    else if (n < f->min || n > f->max)
        om_cfg_report(c, v, key, "%s must be between %llu and %llu%s", f->key,
                      (unsigned long long)f->min, (unsigned long long)f->max,
                      f->kind == K_MS ? " ms" : "");
    else
        rc = OM_OK;
    if (rc == OM_OK && (f->kind == K_MS || f->kind == K_SIZE64))
        *(uint64_t *)((char *)obj + f->off) = n;
    else if (rc == OM_OK && f->kind == K_SIZE)
        *(size_t *)((char *)obj + f->off) = (size_t)n;
    else if (rc == OM_OK)
        *(unsigned *)((char *)obj + f->off) = (unsigned)n;
done:
    return rc;
}

static int set_field(struct om_cfg_ctx *c, void *obj, const struct om_cfg_field *f,
                     struct fy_node *key, struct fy_node *v)
{
    char **sp = (char **)((char *)obj + f->off);
    bool *bp = (bool *)((char *)obj + f->off);
    const char *s = NULL, *why = NULL;
    size_t len = 0;
    int rc = OM_OK;

    switch (f->kind) {
    case K_FN:
        rc = f->fn(c, obj, key, v);
        break;
    case K_OPTSTR:
        if (om_cfg_is_null(v)) {
            free(*sp);
            *sp = NULL;
        } else if ((rc = om_cfg_scalar_dup(c, key, v, sp)) == OM_OK && f->check != NULL &&
                   (why = f->check(*sp)) != NULL) {
            char vb[80];
            rc = om_cfg_report(c, v, key, "%s \"%s\" %s", f->key,
                               om_cfg_shown(vb, sizeof(vb), *sp, strlen(*sp)), why);
        }
        break;
    case K_STR:
        if (om_cfg_is_null(v))
            rc = om_cfg_report(c, v, key, "%s needs a value", f->key);
        else if ((rc = om_cfg_scalar_dup(c, key, v, sp)) != OM_OK)
            break;
        else if (**sp == '\0')
            rc = om_cfg_report(c, v, key, "%s must not be empty", f->key);
        else if (f->check != NULL && (why = f->check(*sp)) != NULL) {
            char vb[80];
            rc = om_cfg_report(c, v, key, "%s \"%s\" %s", f->key,
                               om_cfg_shown(vb, sizeof(vb), *sp, strlen(*sp)), why);
        }
        break;
    case K_BOOL:
        if ((rc = om_cfg_scalar(c, key, v, &s, &len)) != OM_OK)
            break;
        if (len == 4 && strncasecmp(s, "true", 4) == 0)
            *bp = true;
        else if (len == 5 && strncasecmp(s, "false", 5) == 0)
            *bp = false;
        else
            rc = om_cfg_report(c, v, key, "%s must be true or false", f->key);
        break;
    case K_UINT:
    case K_SIZE:
    case K_SIZE64:
    case K_MS:
        rc = set_number(c, obj, f, key, v);
        break;
    }
    return rc;
}

/* Levenshtein distance of a[0..al) and b[0..bl), both at most
 * KEY_SUGGEST_MAX bytes (the caller checks). */
#define KEY_SUGGEST_MAX 48
static size_t edit_distance(const char *a, size_t al, const char *b, size_t bl)
{
    size_t row[KEY_SUGGEST_MAX + 1];
    for (size_t j = 0; j <= bl; j++)
        row[j] = j;
    for (size_t i = 1; i <= al; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= bl; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[bl];
}

/* The known key nearest to an unknown one, when it is near enough to be
 * a typo (at most a third of its letters off, at least one), else NULL. */
static const char *nearest_key(const char *ks, size_t klen, const struct om_cfg_field *f,
                               size_t nf)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    if (klen == 0 || klen > KEY_SUGGEST_MAX)
        return NULL;
    for (size_t j = 0; j < nf; j++) {
        size_t fl = strlen(f[j].key);
        if (fl > KEY_SUGGEST_MAX)
            continue;
        size_t d = edit_distance(ks, klen, f[j].key, fl);
        if (d < best_d) {
            best_d = d;
            best = f[j].key;
        }
    }
    size_t limit = klen / 3 > 1 ? klen / 3 : 1;
    return best_d <= limit ? best : NULL;
}

int om_cfg_walk_map(struct om_cfg_ctx *c, struct fy_node *owner, struct fy_node *m,
                    const char *where, const struct om_cfg_field *f, size_t nf, void *obj)
{
    struct fy_node_pair *p;
    void *it = NULL;
    char kb[80];
    int rc = OM_OK;

    if (om_cfg_is_null(m))
        goto done;
    if (fy_node_is_alias(m)) {
        rc = om_cfg_report(c, m, owner, "YAML aliases are not supported here");
        goto done;
    }
    if (!fy_node_is_mapping(m)) {
        rc = om_cfg_report(c, m, owner, "%s must be a mapping (key: value)", where);
        goto done;
    }
    while (rc == OM_OK && (p = fy_node_mapping_iterate(m, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p), *v = fy_node_pair_value(p);
        const char *ks = NULL;
        size_t klen = 0, i = nf;

        if (k == NULL || !fy_node_is_scalar(k) || fy_node_is_alias(k)) {
            rc = om_cfg_report(c, k, owner, "keys in %s must be plain words", where);
            break;
        }
        ks = fy_node_get_scalar(k, &klen);
        for (size_t j = 0; ks != NULL && i == nf && j < nf; j++) {
            if (strlen(f[j].key) == klen && memcmp(f[j].key, ks, klen) == 0)
                i = j;
        }
        if (i == nf) {
            const char *near = ks != NULL ? nearest_key(ks, klen, f, nf) : NULL;
            char hint[80] = "";
            if (near != NULL)
                snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)", near);
            rc = om_cfg_report(c, k, owner, "unknown key \"%s\" in %s%s",
                               key_text(k, kb, sizeof(kb)), where, hint);
        } else
            rc = set_field(c, obj, &f[i], k, v);
    }
done:
    return rc;
}

struct fy_node *om_cfg_find_key(struct fy_node *m, const char *name, struct fy_node **val)
{
    struct fy_node_pair *p;
    struct fy_node *found = NULL;
    void *it = NULL;

    while (found == NULL && fy_node_is_mapping(m) && (p = fy_node_mapping_iterate(m, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p);
        size_t len = 0;
        const char *s = fy_node_is_scalar(k) ? fy_node_get_scalar(k, &len) : NULL;
        if (s != NULL && len == strlen(name) && memcmp(s, name, len) == 0) {
            found = k;
            if (val != NULL)
                *val = fy_node_pair_value(p);
        }
    }
    return found;
}

struct fy_node *om_cfg_seq_item(struct fy_node *seq, size_t index)
{
    void *it = NULL;
    struct fy_node *n = NULL;

    for (size_t i = 0; i <= index && fy_node_is_sequence(seq); i++)
        n = fy_node_sequence_iterate(seq, &it);
    return n;
}

int om_cfg_want_seq(struct om_cfg_ctx *c, struct fy_node *key, struct fy_node *v, const char *what)
{
    int rc = OM_OK;

    if (om_cfg_is_null(v) || fy_node_is_sequence(v))
        rc = OM_OK;
    else if (fy_node_is_alias(v))
        rc = om_cfg_report(c, v, key, "YAML aliases are not supported here");
    else
        rc = om_cfg_report(c, v, key, "%s must be a list", what);
    return rc;
}

/* ---- the entry point ---------------------------------------------------- */

/* libfyaml's own output: kept for a message, never printed. */
static void diag_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    struct om_cfg_ctx *c = user;

    (void)diag;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    om_cfg_shown(c->lib_msg, sizeof(c->lib_msg), buf, len);
}

/* The first error libfyaml collected, as our message. */
static int syntax_error(struct om_cfg_ctx *c, struct fy_diag *diag)
{
    struct fy_diag_error *e;
    void *it = NULL;
    char msg[300], mb[200];
    int line = 1, col = 1;

    snprintf(msg, sizeof(msg), "YAML syntax error: %s",
             c->lib_msg[0] != '\0' ? c->lib_msg : "unknown");
    while ((e = fy_diag_errors_iterate(diag, &it)) != NULL) {
        if (e->type != FYET_ERROR)
            continue;
        snprintf(msg, sizeof(msg), "YAML syntax error: %s",
                 e->msg != NULL ? om_cfg_shown(mb, sizeof(mb), e->msg, strlen(e->msg)) : "?");
        line = e->line > 0 ? e->line : 1; /* already 1-based */
        col = e->column > 0 ? e->column : 1;
        break;
    }
    return report_at(c, line, col, msg);
}

/* Offset of the first byte that is not well-formed UTF-8 (RFC 3629: no
 * overlongs, no surrogates, ≤ U+10FFFF) or NUL; len when all is well. */
static size_t utf8_invalid_at(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n;
        unsigned min;
        if (c == 0)
            return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            min = 0x10000;
        } else {
            return i;
        }
        unsigned cp = c & (0x3fu >> n);
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (p[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n + 1;
    }
    return len;
}

int om_config_parse(struct om_config **out, const char *yaml, size_t len,
                    const char *name, char *err, size_t errlen)
{
    struct om_cfg_ctx c = {.name = name != NULL ? name : "<config>", .err = err, .errlen = errlen};
    struct om_config *cfg = NULL; /* owned here until handed to *out */
    struct fy_diag *diag = NULL;
    struct fy_parser *fyp = NULL;
    struct fy_document *doc = NULL, *extra = NULL;
    struct fy_diag_cfg dcfg;
    struct fy_parse_cfg pcfg = {0};
    int rc = OM_ERR_INVALID;

    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (len > OM_CONFIG_MAX_BYTES) {
        rc = report_at(&c, 1, 1, "config is larger than 1 MiB");
        goto done;
    }
    size_t bad = utf8_invalid_at(yaml, len);
    if (bad < len) {
        int line = 1, col = 1;
        for (size_t i = 0; i < bad; i++) {
            if (yaml[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        /* libfyaml 0.7.12 loops or silently stops at such a byte. */
        rc = report_at(&c, line, col, "not UTF-8 (YAML must be UTF-8)");
        goto done;
    }
    if ((rc = om_config_default(&cfg)) != OM_OK)
        goto done;
    rc = OM_ERR_NOMEM;
    free(cfg->source);
    if ((cfg->source = strdup(c.name)) == NULL)
        goto done;

    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL; /* never stderr: diag_output() and the collected list */
    dcfg.output_fn = diag_output;
    dcfg.user = &c;
    dcfg.colorize = false;
    if ((diag = fy_diag_create(&dcfg)) == NULL)
        goto done;
    fy_diag_set_collect_errors(diag, true);
    pcfg.flags = FYPCF_QUIET; /* no FYPCF_RESOLVE_DOCUMENT: aliases stay visible */
    pcfg.diag = diag;
    if ((fyp = fy_parser_create(&pcfg)) == NULL)
        goto done;
    if (fy_parser_set_string(fyp, len > 0 ? yaml : "", len) != 0)
        goto done;

    rc = OM_OK;
    doc = fy_parse_load_document(fyp);
    if (doc == NULL && fy_diag_got_error(diag)) {
        rc = syntax_error(&c, diag);
        goto done;
    }
    if (doc != NULL) {
        extra = fy_parse_load_document(fyp);
        if (extra != NULL) {
            const struct fy_mark *m =
                fy_document_state_start_mark(fy_document_get_document_state(extra));
            rc = report_at(&c, m != NULL ? m->line + 1 : 1, m != NULL ? m->column + 1 : 1,
                           "only one YAML document is allowed");
            goto done;
        }
        if (fy_diag_got_error(diag)) {
            rc = syntax_error(&c, diag);
            goto done;
        }
        rc = om_cfg_walk_map(&c, NULL, fy_document_root(doc), "the top level", om_cfg_top_fields,
                             om_cfg_n_top_fields, cfg);
    }
    if (rc == OM_OK)
        rc = om_cfg_finish_search_order(&c, cfg);
    if (rc == OM_OK) {
        *out = cfg;
        cfg = NULL;
    }
done:
    if (rc == OM_ERR_NOMEM && !c.failed)
        report_at(&c, 1, 1, "out of memory");
    if (extra != NULL)
        fy_parse_document_destroy(fyp, extra);
    if (doc != NULL)
        fy_parse_document_destroy(fyp, doc);
    if (fyp != NULL)
        fy_parser_destroy(fyp);
    if (diag != NULL)
        fy_diag_destroy(diag);
    om_config_free(cfg);
    return rc;
}

