/* om.h — the project-wide error enum and small shared limits.
 *
 * Every module returns `int` results from this enum: OM_OK (0) or a negative
 * code callers branch on.  Errors from libcurl, SQLite, jansson, libfyaml and
 * OpenSSL are translated into these codes in exactly one place each (the
 * module that wraps the library); a one-line message goes to the log at the
 * failure site.
 */
#ifndef OM_H
#define OM_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef enum {
    OM_OK = 0,
    OM_ERR_NOMEM = -1,      /* allocation failed */
    OM_ERR_INVALID = -2,    /* bad input: name, digest, header, config value */
    OM_ERR_NOTFOUND = -3,   /* not in cache / not on upstream */
    OM_ERR_IO = -4,         /* local disk or file error */
    OM_ERR_UPSTREAM = -5,   /* upstream unreachable, 5xx, protocol error */
    OM_ERR_AUTH = -6,       /* upstream refused credentials (401/403 after auth) */
    OM_ERR_DIGEST = -7,     /* bytes do not match their digest */
    OM_ERR_TOOMANY = -8,    /* upstream 429 */
    OM_ERR_TOOBIG = -9,     /* input over its size limit */
    OM_ERR_DENIED = -10,    /* policy refused (host not allowed, downgrade) */
    OM_ERR_NOSPACE = -11,   /* disk full */
    OM_ERR_TIMEOUT = -12,
    OM_ERR_UNAVAILABLE = -13, /* a shared service (Redis) cannot be reached now;
                                 its client reconnects by itself */
} om_err;

const char *om_strerror(int err);

/* Grammar limits from the distribution spec. */
#define OM_NAME_MAX 255        /* whole repository name */
#define OM_TAG_MAX 128
#define OM_DIGEST_MAX 71       /* "sha256:" + 64 hex */
#define OM_MANIFEST_MAX_DEFAULT (4u * 1024 * 1024)

#define OM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Wall clock in Unix milliseconds (dates: records, logs, the UI). */
int64_t om_now_ms(void);
/* Monotonic clock in microseconds (durations and deadlines, never dates). */
int64_t om_now_us(void);

#endif
