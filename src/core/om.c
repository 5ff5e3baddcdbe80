/* om.c — project-wide helpers that belong to no module: the text of each
 * om_err code, for logs and error bodies.  Keep one line per code in the
 * order of the enum in om.h; a code with no text here prints as
 * "unknown error", which a unit test catches. */
#include "core/om.h"

#include <time.h>

const char *om_strerror(int err)
{
    const char *s = "unknown error";

    switch ((om_err)err) {
    case OM_OK: s = "success"; break;
    case OM_ERR_NOMEM: s = "out of memory"; break;
    case OM_ERR_INVALID: s = "invalid input"; break;
    case OM_ERR_NOTFOUND: s = "not found"; break;
    case OM_ERR_IO: s = "local I/O error"; break;
    case OM_ERR_UPSTREAM: s = "upstream error"; break;
    case OM_ERR_AUTH: s = "upstream refused the credentials"; break;
    case OM_ERR_DIGEST: s = "content does not match its digest"; break;
    case OM_ERR_TOOMANY: s = "upstream rate limit (429)"; break;
    case OM_ERR_TOOBIG: s = "input over its size limit"; break;
    case OM_ERR_DENIED: s = "refused by policy"; break;
    case OM_ERR_NOSPACE: s = "disk full"; break;
    case OM_ERR_TIMEOUT: s = "timed out"; break;
    case OM_ERR_UNAVAILABLE: s = "shared service unavailable"; break;
    }
    return s;
}

int64_t om_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t om_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
