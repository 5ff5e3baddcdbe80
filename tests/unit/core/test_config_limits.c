/* test_config_limits.c — the per-client keys of limits
 * (core/config_limits.c): trusted_proxies, max_clients, per_client,
 * per_user; their defaults, errors and dump. */
#include "core/config.h"
#include "test.h"

#include <stdlib.h>

static struct om_config *parse(const char *yaml, char *err, size_t errlen)
{
    struct om_config *cfg = NULL;
    err[0] = '\0';
    if (om_config_parse(&cfg, yaml, strlen(yaml), "t.yaml", err, errlen) != OM_OK)
        return NULL;
    return cfg;
}

static void test_config_limits__defaults_are_no_limits(void)
{
    struct om_config *cfg = NULL;
    CHECK_EQ_INT(om_config_default(&cfg), OM_OK);
    if (cfg == NULL)
        return;
    CHECK_EQ_INT(cfg->limits.n_trusted_proxies, 0);
    CHECK_EQ_INT(cfg->limits.max_clients, 100000);
    CHECK_EQ_INT(cfg->limits.per_client.requests_per_second, 0);
    CHECK_EQ_INT(cfg->limits.per_client.bytes_per_day, 0);
    CHECK_EQ_INT(cfg->limits.n_per_user, 0);
    om_config_free(cfg);
}

static void test_config_limits__every_key_is_read(void)
{
    char err[256];
    struct om_config *cfg = parse("limits:\n"
                                  "  trusted_proxies: [\"10.0.0.0/8\", \"::1\", 192.0.2.7/32]\n"
                                  "  max_clients: 5000\n"
                                  "  per_client:\n"
                                  "    requests_per_second: 20\n"
                                  "    burst: 100\n"
                                  "    downloads: 4\n"
                                  "    bytes_per_day: 50GiB\n"
                                  "    upstream_fetches_per_minute: 30\n"
                                  "  per_user:\n"
                                  "    ci-bot: {bytes_per_day: 0, downloads: 16}\n"
                                  "    alice: ~\n",
                                  err, sizeof(err));
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    const struct om_limits *l = &cfg->limits;
    CHECK_EQ_INT(l->n_trusted_proxies, 3);
    CHECK_EQ_INT(l->trusted_proxies[0].family, 4);
    CHECK_EQ_INT(l->trusted_proxies[0].bits, 8);
    CHECK_EQ_INT(l->trusted_proxies[1].family, 6);
    CHECK_EQ_INT(l->trusted_proxies[1].bits, 128);
    CHECK_EQ_INT(l->max_clients, 5000);
    CHECK_EQ_INT(l->per_client.requests_per_second, 20);
    CHECK_EQ_INT(l->per_client.burst, 100);
    CHECK_EQ_INT(l->per_client.downloads, 4);
    CHECK(l->per_client.bytes_per_day == 50ull << 30);
    CHECK_EQ_INT(l->per_client.upstream_fetches_per_minute, 30);
    CHECK_EQ_INT(l->n_per_user, 2);
    CHECK_EQ_STR(l->per_user[0].name, "ci-bot");
    CHECK(l->per_user[0].l.bytes_per_day == 0);       /* given: no limit */
    CHECK_EQ_INT(l->per_user[0].l.downloads, 16);     /* given */
    CHECK_EQ_INT(l->per_user[0].l.requests_per_second, 20); /* per_client's */
    CHECK_EQ_STR(l->per_user[1].name, "alice");
    CHECK_EQ_INT(l->per_user[1].l.burst, 100);
    om_config_free(cfg);
}

static void test_config_limits__the_dump_reads_back_the_same(void)
{
    char err[256];
    struct om_config *cfg = parse("limits:\n"
                                  "  trusted_proxies: [\"10.1.0.0/16\", \"fd00::/8\"]\n"
                                  "  per_client: {requests_per_second: 5, bytes_per_day: 1GiB}\n"
                                  "  per_user: {bob: {downloads: 2}}\n",
                                  err, sizeof(err));
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    char *first = NULL, *second = NULL;
    size_t n1 = 0, n2 = 0;
    FILE *f = open_memstream(&first, &n1);
    om_config_dump(cfg, f);
    fclose(f);
    CHECK(strstr(first, "    - \"10.1.0.0/16\"\n") != NULL);
    CHECK(strstr(first, "    - \"fd00::/8\"\n") != NULL);
    CHECK(strstr(first, "    \"bob\":\n      requests_per_second: 5\n") != NULL);
    CHECK(strstr(first, "    bytes_per_day: \"1GiB\"\n") != NULL);
    struct om_config *again = parse(first, err, sizeof(err));
    CHECK(again != NULL);
    if (again != NULL) {
        f = open_memstream(&second, &n2);
        om_config_dump(again, f);
        fclose(f);
        const char *a = strchr(first, '\n'), *b = strchr(second, '\n');
        CHECK(a != NULL && b != NULL && strcmp(a, b) == 0);
        CHECK_EQ_INT(again->limits.per_user[0].l.downloads, 2);
        om_config_free(again);
    } else {
        fprintf(stderr, "%s\n%s\n", err, first);
    }
    free(first);
    free(second);
    om_config_free(cfg);
}

static void test_config_limits__bad_values_name_the_place(void)
{
    static const struct {
        const char *yaml, *where, *what;
    } rows[] = {
        {"limits:\n  trusted_proxies: [10.0.0.0/33]\n", "t.yaml:2:21: ", "is not an address or CIDR"},
        {"limits:\n  trusted_proxies: [\"proxy.example\"]\n", "t.yaml:2:21: ", "is not an address"},
        {"limits:\n  trusted_proxies: 10.0.0.0/8\n", "t.yaml:2:", "must be a list"},
        {"limits:\n  per_client: {rps: 5}\n", "t.yaml:2:16: ", "unknown key \"rps\""},
        {"limits:\n  per_client: {requests_per_second: -1}\n", "t.yaml:2:", "requests_per_second"},
        {"limits:\n  per_user: [a, b]\n", "t.yaml:2:", "per_user must be a mapping"},
        {"limits:\n  per_user: {\"a:b\": {downloads: 1}}\n", "t.yaml:2:", "is not a user name"},
        {"limits:\n  per_user: {a: {downloads: 1}, a: {downloads: 2}}\n", "t.yaml:2:", ""},
        {"limits:\n  per_user: {a: {burst: x}}\n", "t.yaml:2:", "burst"},
        {"limits:\n  max_clients: 10\n", "t.yaml:2:16: ", "max_clients must be between 64"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char err[256];
        struct om_config *cfg = parse(rows[i].yaml, err, sizeof(err));
        CHECK(cfg == NULL);
        om_config_free(cfg);
        CHECK(strncmp(err, rows[i].where, strlen(rows[i].where)) == 0 &&
              strstr(err, rows[i].what) != NULL);
        if (strncmp(err, rows[i].where, strlen(rows[i].where)) != 0 ||
            strstr(err, rows[i].what) == NULL)
            fprintf(stderr, "row %zu: %s\n", i, err);
    }
}

int main(void)
{
    RUN(test_config_limits__defaults_are_no_limits);
    RUN(test_config_limits__every_key_is_read);
    RUN(test_config_limits__the_dump_reads_back_the_same);
    RUN(test_config_limits__bad_values_name_the_place);
    return test_done();
}
