/* fuzz_redis_url.c — the cluster.redis URL parser (core/config_cluster.c:
 * om_parse_redis_url), which check-config and the Redis index backend run
 * on what an operator wrote.
 *
 * Input: the URL itself, in a heap buffer of exactly its size (the parser
 * takes a length, not a C string: ASan sees a read past the end).
 *
 * Invariants:
 *   - OM_OK: why is NULL; a unix URL has an absolute path and no host or
 *     port, a TCP one a host and a port in 1..65535; db <= 65535; every
 *     string is NUL-terminated within its buffer and holds no blank or
 *     control byte; a password is set whenever a user is;
 *   - OM_ERR_INVALID: why is set and *out is all zeroes;
 *   - nothing else is returned, and the answer is the same twice.
 */
#include "fuzz_common.h"
#include "core/config.h"

static bool clean(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size > 0 ? size : 1);
    struct om_redis_url u, again, zero;
    const char *why = NULL, *why2 = NULL;

    if (buf == NULL)
        return 0;
    if (size > 0)
        memcpy(buf, data, size);
    int rc = om_parse_redis_url(&u, buf, size, &why);
    FUZZ_CHECK(rc == OM_OK || rc == OM_ERR_INVALID);
    FUZZ_CHECK(om_parse_redis_url(&again, buf, size, &why2) == rc);
    FUZZ_CHECK(memcmp(&u, &again, sizeof(u)) == 0 && why == why2);
    memset(&zero, 0, sizeof(zero));
    if (rc == OM_OK) {
        FUZZ_CHECK(why == NULL);
        FUZZ_CHECK(clean(u.host, sizeof(u.host)) && clean(u.path, sizeof(u.path)) &&
                   clean(u.user, sizeof(u.user)) && clean(u.password, sizeof(u.password)));
        if (u.is_unix)
            FUZZ_CHECK(u.path[0] == '/' && u.host[0] == '\0' && u.port == 0);
        else
            FUZZ_CHECK(u.host[0] != '\0' && u.path[0] == '\0' && u.port >= 1 && u.port <= 65535);
        FUZZ_CHECK(u.db <= OM_REDIS_DB_MAX);
        FUZZ_CHECK(u.user[0] == '\0' || u.password[0] != '\0');
    } else {
        FUZZ_CHECK(why != NULL && memcmp(&u, &zero, sizeof(u)) == 0);
    }
    free(buf);
    return 0;
}
