/* redis_reply.c — the checked access to hiredis replies declared in
 * redis.h (type and size limit before a byte is used), and the one
 * translation of a Redis error reply into om_err.  The connection, pool
 * and pipelines are redis.c's.
 */
#include "cache/redis.h"

#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A Redis error reply's text as om_err. */
int om_redis__err_of_reply(const redisReply *rp)
{
    const char *s = rp->str != NULL ? rp->str : "";
    if (strncmp(s, "OOM", 3) == 0)
        return OM_ERR_NOSPACE;
    if (strncmp(s, "LOADING", 7) == 0 || strncmp(s, "BUSY", 4) == 0 ||
        strncmp(s, "MASTERDOWN", 10) == 0 || strncmp(s, "TRYAGAIN", 8) == 0)
        return OM_ERR_TIMEOUT;
    if (strncmp(s, "NOAUTH", 6) == 0 || strncmp(s, "WRONGPASS", 9) == 0 ||
        strncmp(s, "NOPERM", 6) == 0)
        return OM_ERR_AUTH;
    return OM_ERR_IO;
}

/* One printable line of a reply's text (for the log). */
void om_redis__shown(char *out, size_t outsz, const char *s, size_t len)
{
    size_t k = 0;
    for (size_t i = 0; i < len && k + 1 < outsz; i++)
        out[k++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    out[k] = '\0';
}

/* ---- checked replies ------------------------------------------------------ */

static int bad_reply(const redisReply *rp, const char *what, const char *want)
{
    om_log(OM_LOG_ERROR, "redis: %s: expected %s, got reply type %d", what, want,
           rp != NULL ? rp->type : -1);
    return OM_ERR_IO;
}

int om_redis_reply_ok(const redisReply *rp, const char *what)
{
    char msg[160];

    if (rp == NULL)
        return bad_reply(rp, what, "a reply");
    if (rp->type != REDIS_REPLY_ERROR)
        return OM_OK;
    om_redis__shown(msg, sizeof(msg), rp->str != NULL ? rp->str : "", rp->len);
    om_log(OM_LOG_ERROR, "redis: %s: %s", what, msg);
    return om_redis__err_of_reply(rp);
}

int om_redis_reply_int(const redisReply *rp, const char *what, long long *out)
{
    int err = om_redis_reply_ok(rp, what);
    if (err == OM_OK && rp->type == REDIS_REPLY_NIL)
        err = OM_ERR_NOTFOUND;
    else if (err == OM_OK && rp->type != REDIS_REPLY_INTEGER)
        err = bad_reply(rp, what, "an integer");
    else if (err == OM_OK)
        *out = rp->integer;
    return err;
}

int om_redis_reply_str(const redisReply *rp, const char *what, size_t max, const char **s,
                       size_t *len)
{
    int err = om_redis_reply_ok(rp, what);
    if (err == OM_OK && rp->type == REDIS_REPLY_NIL) {
        err = OM_ERR_NOTFOUND;
    } else if (err == OM_OK && rp->type != REDIS_REPLY_STRING && rp->type != REDIS_REPLY_STATUS) {
        err = bad_reply(rp, what, "a string");
    } else if (err == OM_OK && (rp->len > max || (rp->len > 0 && rp->str == NULL))) {
        om_log(OM_LOG_ERROR, "redis: %s: a string of %zu bytes, at most %zu expected", what,
               rp->len, max);
        err = OM_ERR_IO;
    } else if (err == OM_OK) {
        *s = rp->str != NULL ? rp->str : "";
        *len = rp->len;
    }
    return err;
}

int om_redis_reply_copy(const redisReply *rp, const char *what, char *out, size_t outsz)
{
    const char *s = NULL;
    size_t len = 0;
    int err = om_redis_reply_str(rp, what, SIZE_MAX, &s, &len);

    if (err == OM_OK && len >= outsz)
        err = OM_ERR_TOOBIG;
    else if (err == OM_OK && memchr(s, '\0', len) != NULL)
        err = bad_reply(rp, what, "text without NUL");
    if (err == OM_OK) {
        memcpy(out, s, len);
        out[len] = '\0';
    }
    return err;
}

int om_redis_reply_num(const redisReply *rp, const char *what, int64_t *out)
{
    const char *s = NULL;
    size_t len = 0;
    char buf[24];
    char *end = NULL;
    int err;

    if (rp != NULL && rp->type == REDIS_REPLY_INTEGER) {
        *out = rp->integer;
        return OM_OK;
    }
    err = om_redis_reply_str(rp, what, sizeof(buf) - 1, &s, &len);
    if (err != OM_OK)
        return err;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (len == 0 || errno != 0 || *end != '\0')
        return bad_reply(rp, what, "a decimal number");
    *out = v;
    return OM_OK;
}

int om_redis_reply_array(const redisReply *rp, const char *what, size_t max)
{
    int err = om_redis_reply_ok(rp, what);
    if (err == OM_OK && rp->type == REDIS_REPLY_NIL)
        err = OM_ERR_NOTFOUND;
    else if (err == OM_OK && rp->type != REDIS_REPLY_ARRAY)
        err = bad_reply(rp, what, "an array");
    else if (err == OM_OK && (rp->elements > max || (rp->elements > 0 && rp->element == NULL))) {
        om_log(OM_LOG_ERROR, "redis: %s: %zu elements, at most %zu expected", what, rp->elements,
               max);
        err = OM_ERR_IO;
    }
    return err;
}

