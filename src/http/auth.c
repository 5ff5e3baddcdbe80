/* auth.c — htpasswd loading, the memory of good logins, the failure
 * limiter (http/auth.h). */
#include "http/auth.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/log.h"
#include "core/om.h"

/* ---- the file ------------------------------------------------------------ */

struct ht_entry {
    char user[OM_AUTH_USER_MAX + 1];
    char *hash;                       /* owned */
};

struct om_htpasswd {
    struct ht_entry *e;               /* sorted by user */
    size_t n;
};

void om_htpasswd_free(struct om_htpasswd *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->n; i++) {
        explicit_bzero(h->e[i].hash, strlen(h->e[i].hash));
        free(h->e[i].hash);
    }
    free(h->e);
    free(h);
}

size_t om_htpasswd_count(const struct om_htpasswd *h)
{
    return h != NULL ? h->n : 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ht_entry *)a)->user, ((const struct ht_entry *)b)->user);
}

const char *om_htpasswd_find(const struct om_htpasswd *h, const char *user)
{
    struct ht_entry key;
    const struct ht_entry *e;

    if (h == NULL || h->n == 0 || strlen(user) > OM_AUTH_USER_MAX)
        return NULL;
    snprintf(key.user, sizeof(key.user), "%s", user);
    e = bsearch(&key, h->e, h->n, sizeof(*h->e), entry_cmp);
    return e != NULL ? e->hash : NULL;
}

/* bcrypt: $2a$/$2b$/$2y$ + 2-digit cost + '$' + 53 characters.
 * SHA-crypt: $5$ or $6$, optional "rounds=N$", salt, '$', digest. */
static const char *hash_why(const char *h, size_t len)
{
    static const char b64[] =
        "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    if (len >= 4 && h[0] == '$' && h[1] == '2' && (h[2] == 'a' || h[2] == 'b' || h[2] == 'y') &&
        h[3] == '$') {
        if (len != 60 || h[4] < '0' || h[4] > '3' || h[5] < '0' || h[5] > '9' || h[6] != '$' ||
            strspn(h + 7, b64) < 53)
            return "a malformed bcrypt hash";
        return NULL;
    }
    if (len >= 3 && h[0] == '$' && (h[1] == '5' || h[1] == '6') && h[2] == '$') {
        const char *p = h + 3, *end = h + len;
        if ((size_t)(end - p) > 7 && memcmp(p, "rounds=", 7) == 0) {
            p += 7;
            size_t d = strspn(p, "0123456789");
            if (d == 0 || d > 9 || p[d] != '$')
                return "a malformed SHA-crypt hash (rounds=)";
            p += d + 1;
        }
        const char *dollar = memchr(p, '$', (size_t)(end - p));
        size_t want = h[1] == '5' ? 43 : 86;
        if (dollar == NULL || dollar - p > 16 || (size_t)(end - dollar - 1) != want ||
            strspn(dollar + 1, b64) < want)
            return "a malformed SHA-crypt hash";
        return NULL;
    }
    if (len >= 6 && memcmp(h, "$apr1$", 6) == 0)
        return "an Apache MD5 ($apr1$) hash, which is not accepted: use htpasswd -B (bcrypt)";
    if (len >= 5 && memcmp(h, "{SHA}", 5) == 0)
        return "an unsalted {SHA} hash, which is not accepted: use htpasswd -B (bcrypt)";
    return "not a bcrypt ($2y$, $2b$) or SHA-crypt ($5$, $6$) hash: use htpasswd -B";
}

static bool user_ok(const char *s, size_t len)
{
    if (len == 0 || len > OM_AUTH_USER_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == ':')
            return false;
    return true;
}

int om_htpasswd_parse(struct om_htpasswd **out, const char *buf, size_t len, const char *name,
                      char *err, size_t errlen)
{
    struct om_htpasswd *h = calloc(1, sizeof(*h));
    size_t cap = 0, line = 0;
    int rc = OM_ERR_INVALID;

    *out = NULL;
    if (h == NULL)
        return OM_ERR_NOMEM;
    if (len > OM_HTPASSWD_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than %u bytes", name, OM_HTPASSWD_MAX_BYTES);
        goto fail;
    }
    for (size_t pos = 0; pos < len;) {
        const char *l = buf + pos, *nl = memchr(l, '\n', len - pos);
        size_t ll = nl != NULL ? (size_t)(nl - l) : len - pos;
        pos += ll + (nl != NULL);
        line++;
        if (ll > 0 && l[ll - 1] == '\r')
            ll--;
        size_t lead = 0;
        while (lead < ll && (l[lead] == ' ' || l[lead] == '\t'))
            lead++;
        if (lead == ll || l[lead] == '#')
            continue;
        const char *colon = memchr(l, ':', ll);
        if (colon == NULL) {
            snprintf(err, errlen, "%s:%zu: not user:hash", name, line);
            goto fail;
        }
        size_t ul = (size_t)(colon - l), hl = ll - ul - 1;
        if (!user_ok(l, ul)) {
            snprintf(err, errlen, "%s:%zu: the user name must be 1..%d bytes without blanks, "
                     "':' or control characters", name, line, OM_AUTH_USER_MAX);
            goto fail;
        }
        char user[OM_AUTH_USER_MAX + 1];
        snprintf(user, sizeof(user), "%.*s", (int)ul, l);
        const char *why = hl > OM_AUTH_HASH_MAX || memchr(colon + 1, '\0', hl) != NULL
                              ? "an over-long or malformed hash"
                              : hash_why(colon + 1, hl);
        if (why != NULL) {
            snprintf(err, errlen, "%s:%zu: user \"%s\": %s", name, line, user, why);
            goto fail;
        }
        if (h->n == OM_HTPASSWD_MAX_USERS) {
            snprintf(err, errlen, "%s:%zu: more than %d users", name, line,
                     OM_HTPASSWD_MAX_USERS);
            goto fail;
        }
        if (h->n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct ht_entry *ne = realloc(h->e, ncap * sizeof(*ne));
            if (ne == NULL) {
                rc = OM_ERR_NOMEM;
                goto fail;
            }
            h->e = ne;
            cap = ncap;
        }
        struct ht_entry *e = &h->e[h->n];
        memcpy(e->user, user, sizeof(user));
        if ((e->hash = strndup(colon + 1, hl)) == NULL) {
            rc = OM_ERR_NOMEM;
            goto fail;
        }
        h->n++;
    }
    if (h->n > 1)
        qsort(h->e, h->n, sizeof(*h->e), entry_cmp);
    for (size_t i = 1; i < h->n; i++) {
        if (strcmp(h->e[i - 1].user, h->e[i].user) == 0) {
            snprintf(err, errlen, "%s: user \"%s\" is listed twice", name, h->e[i].user);
            goto fail;
        }
    }
    *out = h;
    return OM_OK;
fail:
    om_htpasswd_free(h);
    return rc;
}

bool om_auth_crypt_ok(const char *password, const char *hash)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd)); /* ~32 KiB: not on a job's stack */
    bool ok = false;

    if (cd == NULL)
        return false;
    const char *r = crypt_r(password, hash, cd);
    size_t hl = strlen(hash);
    /* libxcrypt answers a failure with a string starting with '*' */
    if (r != NULL && r[0] != '*' && strlen(r) == hl)
        ok = CRYPTO_memcmp(r, hash, hl) == 0;
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return ok;
}

/* ---- the server's state ---------------------------------------------------- */

struct cache_slot {
    uint64_t gen;                      /* = a->gen when valid */
    int64_t expires_ms;
    unsigned char mac[32];             /* login_mac(user, password) */
};

struct limit_slot {
    char addr[OM_AUTH_ADDR_MAX];
    int64_t window_start_ms;
    unsigned fails;
};

struct om_auth {
    pthread_mutex_t mu;
    bool anonymous;
    char *path;                        /* NULL = no file */
    struct om_htpasswd *ht;
    struct stat st;                    /* of the file loaded */
    uint64_t gen;                      /* bumped by every load: forgets the cache */
    atomic_int_fast64_t next_check_ms;
    atomic_bool off;                   /* anonymous and no file */
    unsigned char key[32];             /* login_mac's key, random per process */
    EVP_MD *sha256;                    /* fetched once (shared by threads) */
    char dummy[OM_AUTH_HASH_MAX + 1];  /* a bcrypt hash nobody knows the password of */
    char self_pw[65];                  /* OM_AUTH_SELF_USER's password (hex) */
    struct cache_slot cache[OM_AUTH_CACHE_SLOTS];
    struct limit_slot limit[OM_AUTH_LIMIT_SLOTS];
    struct om_auth_counters ctr;
};

int om_auth_new(struct om_auth **out)
{
    struct om_auth *a = calloc(1, sizeof(*a));

    *out = NULL;
    if (a == NULL)
        return OM_ERR_NOMEM;
    unsigned char self[32];
    if (RAND_bytes(a->key, sizeof(a->key)) != 1 || RAND_bytes(self, sizeof(self)) != 1) {
        free(a);
        return OM_ERR_IO;
    }
    for (size_t i = 0; i < sizeof(self); i++)
        snprintf(a->self_pw + 2 * i, 3, "%02x", self[i]);
    explicit_bzero(self, sizeof(self));
    if ((a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
        free(a);
        return OM_ERR_NOMEM;
    }
    pthread_mutex_init(&a->mu, NULL);
    a->anonymous = true;
    a->gen = 1;
    atomic_store(&a->off, true);
    *out = a;
    return OM_OK;
}

void om_auth_free(struct om_auth *a)
{
    if (a == NULL)
        return;
    om_htpasswd_free(a->ht);
    free(a->path);
    EVP_MD_free(a->sha256);
    pthread_mutex_destroy(&a->mu);
    explicit_bzero(a, sizeof(*a));
    free(a);
}

/* A bcrypt hash of a random password: what an unknown user is checked
 * against, so that costs as much as a known one. */
static void make_dummy(struct om_auth *a)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    unsigned char pw[18];
    char pws[40];
    struct crypt_data *cd;

    if (a->dummy[0] != '\0' || (cd = calloc(1, sizeof(*cd))) == NULL)
        return;
    if (RAND_bytes(pw, sizeof(pw)) == 1 &&
        crypt_gensalt_rn("$2b$", 10, NULL, 0, salt, sizeof(salt)) != NULL) {
        for (size_t i = 0; i < sizeof(pw); i++)
            snprintf(pws + 2 * i, 3, "%02x", pw[i]);
        const char *r = crypt_r(pws, salt, cd);
        if (r != NULL && r[0] != '*')
            snprintf(a->dummy, sizeof(a->dummy), "%s", r);
    }
    explicit_bzero(pws, sizeof(pws));
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
}

/* Read and parse `path`; *st its identity. */
static int load_file(const char *path, struct om_htpasswd **out, struct stat *st, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = OM_ERR_IO;
    char *buf = NULL;
    size_t got = 0;

    *out = NULL;
    if (fd < 0 || fstat(fd, st) != 0) {
        snprintf(err, errlen, "cannot read htpasswd_file %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st->st_mode) || (uint64_t)st->st_size > OM_HTPASSWD_MAX_BYTES) {
        snprintf(err, errlen, "htpasswd_file %s: not a regular file of at most %u bytes", path,
                 OM_HTPASSWD_MAX_BYTES);
        rc = OM_ERR_INVALID;
        goto done;
    }
    if ((buf = malloc((size_t)st->st_size + 1)) == NULL) {
        rc = OM_ERR_NOMEM;
        goto done;
    }
    while (got < (size_t)st->st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st->st_size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    rc = om_htpasswd_parse(out, buf, got, path, err, errlen);
done:
    if (buf != NULL) {
        explicit_bzero(buf, got);
        free(buf);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

int om_auth_configure(struct om_auth *a, bool anonymous, const char *htpasswd_file, char *err,
                      size_t errlen)
{
    struct om_htpasswd *ht = NULL, *old;
    struct stat st;
    char *path = NULL, *old_path;
    int rc;

    memset(&st, 0, sizeof(st));
    if (htpasswd_file != NULL) {
        if ((rc = load_file(htpasswd_file, &ht, &st, err, errlen)) != OM_OK)
            return rc;
        if ((path = strdup(htpasswd_file)) == NULL) {
            om_htpasswd_free(ht);
            return OM_ERR_NOMEM;
        }
        make_dummy(a);
    }
    pthread_mutex_lock(&a->mu);
    old = a->ht;
    old_path = a->path;
    a->ht = ht;
    a->path = path;
    a->st = st;
    a->anonymous = anonymous;
    a->gen++;
    atomic_store(&a->off, anonymous && path == NULL);
    pthread_mutex_unlock(&a->mu);
    om_htpasswd_free(old);
    free(old_path);
    return OM_OK;
}

void om_auth_tick(struct om_auth *a, int64_t now_ms)
{
    int_fast64_t next = atomic_load(&a->next_check_ms);
    struct stat st;
    char path[4096], err[512];

    if (now_ms < next || atomic_load(&a->off) ||
        !atomic_compare_exchange_strong(&a->next_check_ms, &next, now_ms + 1000))
        return;
    pthread_mutex_lock(&a->mu);
    bool have = a->path != NULL;
    bool same = false;
    if (have) {
        snprintf(path, sizeof(path), "%s", a->path);
        same = stat(path, &st) == 0 && st.st_ino == a->st.st_ino && st.st_dev == a->st.st_dev &&
               st.st_size == a->st.st_size && st.st_mtim.tv_sec == a->st.st_mtim.tv_sec &&
               st.st_mtim.tv_nsec == a->st.st_mtim.tv_nsec;
    }
    bool anonymous = a->anonymous;
    pthread_mutex_unlock(&a->mu);
    if (!have || same)
        return;
    atomic_fetch_add(&a->ctr.reloads, 1);
    if (om_auth_configure(a, anonymous, path, err, sizeof(err)) != OM_OK) {
        atomic_fetch_add(&a->ctr.reload_errors, 1);
        om_log_kv(OM_LOG_ERROR, "htpasswd file changed but cannot be used; keeping the users "
                  "loaded before", "error", err, NULL);
        /* Do not retry every second with the same message: remember this
         * version of the file as seen. */
        pthread_mutex_lock(&a->mu);
        if (stat(path, &st) == 0)
            a->st = st;
        pthread_mutex_unlock(&a->mu);
        return;
    }
    om_log_kv(OM_LOG_INFO, "htpasswd file reloaded", "file", path, NULL);
}

bool om_auth_off(struct om_auth *a)
{
    return atomic_load(&a->off);
}

bool om_auth_anonymous(struct om_auth *a)
{
    pthread_mutex_lock(&a->mu);
    bool r = a->anonymous;
    pthread_mutex_unlock(&a->mu);
    return r;
}

size_t om_auth_users(struct om_auth *a)
{
    pthread_mutex_lock(&a->mu);
    size_t n = om_htpasswd_count(a->ht);
    pthread_mutex_unlock(&a->mu);
    return n;
}

const char *om_auth_self_password(struct om_auth *a)
{
    return a->self_pw;
}

struct om_auth_counters *om_auth_counters(struct om_auth *a)
{
    return &a->ctr;
}

/* ---- the memory of good logins ------------------------------------------- */

/* A keyed fingerprint of (user, password): SHA-256 over key, user, NUL,
 * password, key (an envelope MAC; it is only ever compared for equality
 * with another of this process's, under a key nobody else knows).  Not
 * HMAC(): OpenSSL 3 looks its algorithm up on every call (~3.4 us here
 * against ~0.3 us for a digest with the EVP_MD fetched once) and this runs
 * on every authenticated request. */
static bool login_mac(const struct om_auth *a, const char *user, const char *password,
                      unsigned char mac[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int ml = 32;
    bool ok = c != NULL && a->sha256 != NULL && EVP_DigestInit_ex(c, a->sha256, NULL) == 1 &&
              EVP_DigestUpdate(c, a->key, sizeof(a->key)) == 1 &&
              EVP_DigestUpdate(c, user, strlen(user) + 1) == 1 &&
              EVP_DigestUpdate(c, password, strlen(password)) == 1 &&
              EVP_DigestUpdate(c, a->key, sizeof(a->key)) == 1 &&
              EVP_DigestFinal_ex(c, mac, &ml) == 1 && ml == 32;
    EVP_MD_CTX_free(c);
    return ok;
}

static size_t slot_of(const unsigned char mac[32], size_t n)
{
    uint64_t v;
    memcpy(&v, mac, sizeof(v));
    return (size_t)(v % n);
}

static bool input_ok(const char *user, const char *password)
{
    return user_ok(user, strlen(user)) && strlen(password) <= OM_AUTH_PASSWORD_MAX;
}

om_auth_result om_auth_check_cached(struct om_auth *a, const char *user, const char *password,
                                    int64_t now_ms)
{
    unsigned char mac[32];
    om_auth_result r = OM_AUTH_UNKNOWN;

    if (strcmp(user, OM_AUTH_SELF_USER) == 0)
        return strlen(password) == 64 && CRYPTO_memcmp(password, a->self_pw, 64) == 0
                   ? OM_AUTH_GOOD
                   : OM_AUTH_BAD;
    if (!input_ok(user, password))
        return OM_AUTH_BAD;
    if (!login_mac(a, user, password, mac))
        return OM_AUTH_UNKNOWN;
    pthread_mutex_lock(&a->mu);
    struct cache_slot *s = &a->cache[slot_of(mac, OM_AUTH_CACHE_SLOTS)];
    if (a->ht == NULL)
        r = OM_AUTH_BAD;
    else if (s->gen == a->gen && s->expires_ms > now_ms && CRYPTO_memcmp(s->mac, mac, 32) == 0)
        r = OM_AUTH_GOOD;
    pthread_mutex_unlock(&a->mu);
    explicit_bzero(mac, sizeof(mac));
    return r;
}

om_auth_result om_auth_verify(struct om_auth *a, const char *user, const char *password,
                              int64_t now_ms)
{
    char hash[OM_AUTH_HASH_MAX + 1];
    unsigned char mac[32];
    bool known = false, ok;
    uint64_t gen;

    if (!input_ok(user, password))
        return OM_AUTH_BAD;
    pthread_mutex_lock(&a->mu);
    const char *h = om_htpasswd_find(a->ht, user);
    known = h != NULL;
    snprintf(hash, sizeof(hash), "%s", known ? h : a->dummy);
    gen = a->gen;
    pthread_mutex_unlock(&a->mu);
    atomic_fetch_add(&a->ctr.verified, 1);
    ok = hash[0] != '\0' && om_auth_crypt_ok(password, hash) && known;
    explicit_bzero(hash, sizeof(hash));
    if (!ok)
        return OM_AUTH_BAD;
    bool have_mac = login_mac(a, user, password, mac);
    pthread_mutex_lock(&a->mu);
    if (have_mac && gen == a->gen) { /* not across a reload: the user may be gone */
        struct cache_slot *s = &a->cache[slot_of(mac, OM_AUTH_CACHE_SLOTS)];
        s->gen = gen;
        s->expires_ms = now_ms + OM_AUTH_CACHE_TTL_MS;
        memcpy(s->mac, mac, sizeof(mac));
    }
    pthread_mutex_unlock(&a->mu);
    explicit_bzero(mac, sizeof(mac));
    return OM_AUTH_GOOD;
}

/* ---- the failure limiter --------------------------------------------------- */

static struct limit_slot *limit_slot(struct om_auth *a, const char *addr)
{
    uint64_t hv = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = addr; *p != '\0'; p++)
        hv = (hv ^ (unsigned char)*p) * 1099511628211ull;
    return &a->limit[hv % OM_AUTH_LIMIT_SLOTS];
}

bool om_auth_limited(struct om_auth *a, const char *addr, int64_t now_ms,
                     unsigned *retry_after_s)
{
    bool limited = false;

    pthread_mutex_lock(&a->mu);
    struct limit_slot *s = limit_slot(a, addr);
    if (strcmp(s->addr, addr) == 0 && s->fails >= OM_AUTH_FAIL_MAX &&
        now_ms < s->window_start_ms + OM_AUTH_FAIL_WINDOW_MS) {
        limited = true;
        if (retry_after_s != NULL)
            *retry_after_s =
                (unsigned)((s->window_start_ms + OM_AUTH_FAIL_WINDOW_MS - now_ms + 999) / 1000);
    }
    pthread_mutex_unlock(&a->mu);
    return limited;
}

void om_auth_note_failure(struct om_auth *a, const char *addr, int64_t now_ms)
{
    pthread_mutex_lock(&a->mu);
    struct limit_slot *s = limit_slot(a, addr);
    if (strcmp(s->addr, addr) != 0 || now_ms >= s->window_start_ms + OM_AUTH_FAIL_WINDOW_MS) {
        snprintf(s->addr, sizeof(s->addr), "%s", addr);
        s->window_start_ms = now_ms;
        s->fails = 0;
    }
    s->fails++;
    pthread_mutex_unlock(&a->mu);
}
