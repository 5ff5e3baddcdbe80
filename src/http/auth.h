/* auth.h — who may pull: client authentication against an htpasswd file
 * (access.anonymous, access.htpasswd_file), a memory of recent good logins
 * and a limiter of failed ones per client address.
 *
 * The file: "user:hash" lines (blank lines and '#' comments skipped), at
 * most OM_HTPASSWD_MAX_BYTES and OM_HTPASSWD_MAX_USERS; user names 1..63
 * bytes without ':' or control characters, unique; hashes bcrypt
 * ($2y$/$2b$/$2a$, `htpasswd -B`) or SHA-crypt ($5$/$6$, `htpasswd -5/-2`
 * on newer apache2-utils, `mkpasswd -m sha-512`), verified with libxcrypt's
 * crypt_r.  Any other format (htpasswd's default $apr1$ MD5, {SHA}, DES
 * crypt, plain text) is refused at load with the line number and user;
 * a hash is never printed.
 *
 * Reload: om_auth_tick() stats the file at most once a second (cheap; on
 * the request path) and loads it again when its inode, size or mtime
 * changed; om_auth_configure() (start, SIGHUP) loads it at once.  A file
 * that fails to load keeps the users loaded before, and says why in the log.
 *
 * Cost and threads.  A bcrypt at cost 10 takes ~50-100 ms of CPU: far too
 * long for libmicrohttpd's few event-loop threads, which serve every other
 * connection meanwhile.  So the dispatcher answers from the memory of good
 * logins at once when it can (om_auth_check_cached: a keyed SHA-256 and a
 * table probe, constant-time compare) and otherwise suspends the
 * connection and runs om_auth_verify() as a job (server/dispatch.c):
 * running it on the HTTP thread would be "bounded" only by the failure
 * limiter, and with many addresses or many distinct good users that bound
 * is no bound at all.  The memory keeps a SHA-256 of (per-process random
 * key, user, password, key) for OM_AUTH_CACHE_TTL_MS, never the clear password, in
 * OM_AUTH_CACHE_SLOTS slots; a reload of the file forgets it.
 *
 * Failed logins: after OM_AUTH_FAIL_MAX failures in OM_AUTH_FAIL_WINDOW_MS
 * from one address, that address is answered 429 (with the seconds left)
 * until the window ends, without checking anything; other addresses are
 * not affected.  The limiter holds OM_AUTH_LIMIT_SLOTS addresses (a
 * direct-mapped table: bounded memory; a collision forgets the older).
 *
 * Thread safety: every function may be called from any thread; one mutex
 * guards the tables (held for table probes and copies only, never during
 * crypt_r or file reads).
 */
#ifndef OM_HTTP_AUTH_H
#define OM_HTTP_AUTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OM_HTPASSWD_MAX_BYTES (4u << 20)
#define OM_HTPASSWD_MAX_USERS 100000
#define OM_AUTH_USER_MAX 63              /* bytes in a user name */
#define OM_AUTH_PASSWORD_MAX 1024        /* longer passwords are refused unchecked */
#define OM_AUTH_HASH_MAX 255
#define OM_AUTH_CACHE_SLOTS 4096
#define OM_AUTH_CACHE_TTL_MS (5 * 60 * 1000)
#define OM_AUTH_LIMIT_SLOTS 4096
#define OM_AUTH_FAIL_MAX 5
#define OM_AUTH_FAIL_WINDOW_MS (60 * 1000)
#define OM_AUTH_ADDR_MAX 64              /* bytes in a client address key */

struct om_auth;

/* Counters for /metrics. */
struct om_auth_counters {
    atomic_uint_fast64_t ok;            /* requests whose credentials were good */
    atomic_uint_fast64_t failures;      /* bad user or password (each counts once) */
    atomic_uint_fast64_t missing;       /* anonymous false and no credentials: 401 */
    atomic_uint_fast64_t limited;       /* refused 429 by the failure limiter */
    atomic_uint_fast64_t verified;      /* slow verifications run (crypt_r) */
    atomic_uint_fast64_t reloads, reload_errors;
};

int om_auth_new(struct om_auth **out);
void om_auth_free(struct om_auth *a);

/* Set access.anonymous and access.htpasswd_file (NULL = none) and load the
 * file now.  On a bad file: OM_ERR_INVALID/OM_ERR_IO, "why" in err (line
 * number, user name; never a hash) and nothing changes.  On success the
 * memory of good logins is forgotten. */
int om_auth_configure(struct om_auth *a, bool anonymous, const char *htpasswd_file, char *err,
                      size_t errlen);

/* Reload the file if it changed; checks at most once a second. */
void om_auth_tick(struct om_auth *a, int64_t now_ms);

/* Nothing to do: anonymous and no file (the default). */
bool om_auth_off(struct om_auth *a);
/* access.anonymous as configured. */
bool om_auth_anonymous(struct om_auth *a);
/* How many users the file has (for the log and the UI). */
size_t om_auth_users(struct om_auth *a);
struct om_auth_counters *om_auth_counters(struct om_auth *a);

typedef enum {
    OM_AUTH_GOOD,    /* user and password are right */
    OM_AUTH_BAD,     /* wrong (unknown user, wrong password, over-long input) */
    OM_AUTH_UNKNOWN, /* not in the memory: run om_auth_verify */
} om_auth_result;

/* Fast: the memory of good logins only. */
om_auth_result om_auth_check_cached(struct om_auth *a, const char *user, const char *password,
                                    int64_t now_ms);
/* Slow (crypt_r; runs on a job thread): GOOD or BAD; a good result is
 * remembered.  An unknown user costs a crypt_r too (against a dummy hash),
 * so response times do not say which users exist. */
om_auth_result om_auth_verify(struct om_auth *a, const char *user, const char *password,
                              int64_t now_ms);

/* The server's own client (the in-process prefetcher, which pulls through
 * the mirror's /v2/ on loopback) logs in as OM_AUTH_SELF_USER with a random
 * per-process password: a name no htpasswd file can hold (it has a blank),
 * so with anonymous false the prefetcher still works and nobody else can be
 * it.  om_auth_check_cached answers GOOD for it at once.  The password is
 * 64 hex digits, valid while a is. */
#define OM_AUTH_SELF_USER "ocimirror prefetch"
const char *om_auth_self_password(struct om_auth *a);

/* The failure limiter.  addr: the client's address as text. */
bool om_auth_limited(struct om_auth *a, const char *addr, int64_t now_ms,
                     unsigned *retry_after_s);
void om_auth_note_failure(struct om_auth *a, const char *addr, int64_t now_ms);

/* ---- pure parts, exposed for the unit tests ---- */

struct om_htpasswd;
/* Parse buf[0..len) (need not be NUL-terminated).  `name` for messages
 * ("FILE:LINE: ..."). */
int om_htpasswd_parse(struct om_htpasswd **out, const char *buf, size_t len, const char *name,
                      char *err, size_t errlen);
void om_htpasswd_free(struct om_htpasswd *h);
size_t om_htpasswd_count(const struct om_htpasswd *h);
/* The stored hash of `user`, or NULL; valid while h is. */
const char *om_htpasswd_find(const struct om_htpasswd *h, const char *user);
/* Does `password` match crypt hash `hash`?  (crypt_r, constant-time
 * compare of the result.) */
bool om_auth_crypt_ok(const char *password, const char *hash);

#endif
