/* test_auth.c — htpasswd parsing, crypt verification, the memory of good
 * logins and the failure limiter (http/auth.h). */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/om.h"
#include "http/auth.h"

/* made with htpasswd -nbB -C 5, -nb -2 and -nb -5 (apache2-utils) */
#define BCRYPT_LINE "alice:$2y$05$t7AdvZZX/mW3HhkIs2I9/OGGMiwGobFrBJY4CSz2rcDinpFk4ceAu"
#define SHA256_LINE "bob:$5$NRdLQLiNZJGewSAd$FQpdiyuFuqFG.55ywALozHWpnRiDsvejtZugExRk9L1"
#define SHA512_LINE "carol:$6$oWYduo23xsq8n5bN$Ky6l3aqvfvp3AdwrwW4jnNPK2947MrW3x7oOgZYhyKzYA97LdPetpOHHe0vhfzIUtcVUVxfL7ks2BjJqoGbcg/"

static void test_auth__parses_bcrypt_and_sha_crypt(void)
{
    const char *txt = "# users\n\n" BCRYPT_LINE "\r\n" SHA256_LINE "\n" SHA512_LINE;
    struct om_htpasswd *h = NULL;
    char err[256] = "";

    CHECK_EQ_INT(om_htpasswd_parse(&h, txt, strlen(txt), "f", err, sizeof(err)), OM_OK);
    CHECK_EQ_INT((int)om_htpasswd_count(h), 3);
    CHECK(om_auth_crypt_ok("secret1", om_htpasswd_find(h, "alice")));
    CHECK(!om_auth_crypt_ok("secret2", om_htpasswd_find(h, "alice")));
    CHECK(om_auth_crypt_ok("pw2", om_htpasswd_find(h, "bob")));
    CHECK(om_auth_crypt_ok("pw5", om_htpasswd_find(h, "carol")));
    CHECK(!om_auth_crypt_ok("pw2", om_htpasswd_find(h, "carol")));
    CHECK(om_htpasswd_find(h, "dave") == NULL);
    om_htpasswd_free(h);
}

static void test_auth__refuses_other_formats_naming_the_line_not_the_hash(void)
{
    static const char *const bad[] = {
        "ok:$apr1$abcdefgh$0123456789012345678901", /* htpasswd's default MD5 */
        "ok:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
        "ok:plaintext",
        "ok:$2y$05$short",
        "no-colon-here",
        "bad user:$2y$05$1RoDafSChC.YDe0zm6soGehjVoQd.CEufYLiMTOlVFLPycqj64dcy",
    };
    for (size_t i = 0; i < OM_ARRAY_LEN(bad); i++) {
        char txt[256], err[256] = "";
        struct om_htpasswd *h = NULL;
        snprintf(txt, sizeof(txt), "%s\n%s\n", BCRYPT_LINE, bad[i]);
        CHECK_EQ_INT(om_htpasswd_parse(&h, txt, strlen(txt), "pw.txt", err, sizeof(err)),
                     OM_ERR_INVALID);
        CHECK(h == NULL);
        CHECK(strstr(err, "pw.txt:2:") != NULL);
        const char *colon = strchr(bad[i], ':');
        if (colon != NULL && strlen(colon + 1) > 6)
            CHECK(strstr(err, colon + 1) == NULL); /* the hash is never shown */
    }
    char txt[512], err[256];
    struct om_htpasswd *h = NULL;
    snprintf(txt, sizeof(txt), "%s\n%s\n", BCRYPT_LINE, BCRYPT_LINE);
    CHECK_EQ_INT(om_htpasswd_parse(&h, txt, strlen(txt), "f", err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strstr(err, "twice") != NULL);
}

static void test_auth__memory_of_good_logins_and_reload(void)
{
    char path[] = "/tmp/om-test-auth-XXXXXX", err[256];
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, BCRYPT_LINE "\n", strlen(BCRYPT_LINE) + 1) > 0);
    close(fd);
    struct om_auth *a = NULL;
    CHECK_EQ_INT(om_auth_new(&a), OM_OK);
    CHECK(om_auth_off(a));
    CHECK_EQ_INT(om_auth_configure(a, false, path, err, sizeof(err)), OM_OK);
    CHECK(!om_auth_off(a) && !om_auth_anonymous(a));
    CHECK_EQ_INT(om_auth_check_cached(a, "alice", "secret1", 1000), OM_AUTH_UNKNOWN);
    CHECK_EQ_INT(om_auth_verify(a, "alice", "wrong", 1000), OM_AUTH_BAD);
    CHECK_EQ_INT(om_auth_verify(a, "nobody", "secret1", 1000), OM_AUTH_BAD);
    CHECK_EQ_INT(om_auth_verify(a, "alice", "secret1", 1000), OM_AUTH_GOOD);
    CHECK_EQ_INT(om_auth_check_cached(a, "alice", "secret1", 2000), OM_AUTH_GOOD);
    CHECK_EQ_INT(om_auth_check_cached(a, "alice", "secret2", 2000), OM_AUTH_UNKNOWN);
    CHECK_EQ_INT(om_auth_check_cached(a, "alice", "secret1", 1000 + OM_AUTH_CACHE_TTL_MS + 1),
                 OM_AUTH_UNKNOWN);
    CHECK_EQ_INT((int)atomic_load(&om_auth_counters(a)->verified), 3);
    /* a bad file keeps the users loaded before */
    FILE *f = fopen(path, "w");
    fputs("alice:$apr1$x$y\n", f);
    fclose(f);
    CHECK_EQ_INT(om_auth_configure(a, false, path, err, sizeof(err)), OM_ERR_INVALID);
    CHECK(strstr(err, "apr1") != NULL);
    CHECK_EQ_INT((int)om_auth_users(a), 1);
    CHECK_EQ_INT(om_auth_verify(a, "alice", "secret1", 3000), OM_AUTH_GOOD);
    /* a good one replaces them and forgets the memory */
    f = fopen(path, "w");
    fputs(SHA512_LINE "\n", f);
    fclose(f);
    CHECK_EQ_INT(om_auth_configure(a, true, path, err, sizeof(err)), OM_OK);
    CHECK_EQ_INT(om_auth_check_cached(a, "alice", "secret1", 3000), OM_AUTH_UNKNOWN);
    CHECK_EQ_INT(om_auth_verify(a, "alice", "secret1", 3000), OM_AUTH_BAD);
    CHECK_EQ_INT(om_auth_verify(a, "carol", "pw5", 3000), OM_AUTH_GOOD);
    /* over-long input is refused unchecked */
    char longpw[OM_AUTH_PASSWORD_MAX + 2];
    memset(longpw, 'x', sizeof(longpw) - 1);
    longpw[sizeof(longpw) - 1] = '\0';
    CHECK_EQ_INT(om_auth_check_cached(a, "carol", longpw, 3000), OM_AUTH_BAD);
    om_auth_free(a);
    unlink(path);
}

static void test_auth__failure_limiter_is_per_address(void)
{
    struct om_auth *a = NULL;
    unsigned retry = 0;
    CHECK_EQ_INT(om_auth_new(&a), OM_OK);
    for (int i = 0; i < OM_AUTH_FAIL_MAX - 1; i++)
        om_auth_note_failure(a, "192.0.2.1", 10000 + i);
    CHECK(!om_auth_limited(a, "192.0.2.1", 10010, &retry));
    om_auth_note_failure(a, "192.0.2.1", 10010);
    CHECK(om_auth_limited(a, "192.0.2.1", 10020, &retry));
    CHECK(retry >= 59 && retry <= 60);
    CHECK(!om_auth_limited(a, "192.0.2.2", 10020, &retry)); /* another address */
    CHECK(!om_auth_limited(a, "192.0.2.1", 10000 + OM_AUTH_FAIL_WINDOW_MS, &retry));
    /* a new window starts from scratch */
    om_auth_note_failure(a, "192.0.2.1", 10000 + OM_AUTH_FAIL_WINDOW_MS + 5);
    CHECK(!om_auth_limited(a, "192.0.2.1", 10000 + OM_AUTH_FAIL_WINDOW_MS + 6, &retry));
    om_auth_free(a);
}

int main(void)
{
    RUN(test_auth__parses_bcrypt_and_sha_crypt);
    RUN(test_auth__refuses_other_formats_naming_the_line_not_the_hash);
    RUN(test_auth__memory_of_good_logins_and_reload);
    RUN(test_auth__failure_limiter_is_per_address);
    return test_done();
}
