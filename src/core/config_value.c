/* config_value.c — the pure value parsers and printers behind config.c.
 *
 * Split out of config.c so each file has one job: this one turns short
 * strings from the config file (or the command line) into numbers and back,
 * knows nothing of YAML, never allocates, and is table-tested on its own.
 *
 *   om_parse_duration_ms  "250ms" "2s" "5m" "1h" "1d" "30" (= seconds)
 *   om_parse_size         "512" "64KiB" "4MiB" "50GiB" "1TiB" "10GB" (SI)
 *   om_parse_listen       "0.0.0.0:5000" "[::]:5000" "localhost:80" ":5000"
 *   om_format_duration_ms / om_format_size: exact inverses, used by
 *                         om_config_dump so a dump reads back unchanged.
 *
 * Every parser rejects signs, blanks, empty strings and anything over its
 * length limit, and checks every multiplication for overflow: config values
 * come from operators and must fail loudly, never wrap around.
 *
 * If you add a unit: add it to the table here and to the formatter, and add
 * rows to the tables in tests/unit/test_config.c.
 */
#include "core/config.h"

#include <stdio.h>
#include <string.h>

/* Longest value string we look at: "18446744073709551615ms" is 22 bytes. */
#define VALUE_MAX_LEN 32

struct unit {
    const char *suffix;
    uint64_t factor;
};

static const struct unit duration_units[] = {
    {"", 1000}, /* a bare integer is seconds */
    {"ms", 1},
    {"s", 1000},
    {"m", 60ull * 1000},
    {"h", 60ull * 60 * 1000},
    {"d", 24ull * 60 * 60 * 1000},
};

static const struct unit size_units[] = {
    {"", 1},
    {"B", 1},
    {"KiB", 1ull << 10},
    {"MiB", 1ull << 20},
    {"GiB", 1ull << 30},
    {"TiB", 1ull << 40},
    {"kB", 1000ull},
    {"KB", 1000ull},
    {"MB", 1000ull * 1000},
    {"GB", 1000ull * 1000 * 1000},
    {"TB", 1000ull * 1000 * 1000 * 1000},
};

/* Decimal digits then a suffix from `units`; value = digits * factor.
 * OM_ERR_INVALID on garbage, an unknown suffix or overflow. */
static int parse_scaled(const char *s, const struct unit *units, size_t n_units,
                        uint64_t *out)
{
    int rc = OM_ERR_INVALID;
    uint64_t v = 0;
    size_t i = 0;

    if (s == NULL || strnlen(s, VALUE_MAX_LEN + 1) > VALUE_MAX_LEN)
        goto done;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            goto done; /* overflow */
        v = v * 10 + d;
    }
    if (i == 0)
        goto done; /* no digits: "", "ms", "-1", " 5" */
    for (size_t u = 0; u < n_units; u++) {
        if (strcmp(s + i, units[u].suffix) != 0)
            continue;
        if (v != 0 && units[u].factor > UINT64_MAX / v)
            goto done; /* overflow */
        *out = v * units[u].factor;
        rc = OM_OK;
        break;
    }
done:
    return rc;
}

int om_parse_duration_ms(const char *s, uint64_t *out)
{
    return parse_scaled(s, duration_units, OM_ARRAY_LEN(duration_units), out);
}

int om_parse_size(const char *s, uint64_t *out)
{
    return parse_scaled(s, size_units, OM_ARRAY_LEN(size_units), out);
}

/* Print v with the largest unit of `units[1..]` that divides it exactly, or
 * bare digits if none does (units[0] is the parsers' bare form and is not a
 * choice here: a bare duration means seconds, not milliseconds). */
static void format_scaled(uint64_t v, const struct unit *units, size_t n_units,
                          const char *zero, char *buf, size_t len)
{
    const struct unit *best = NULL;

    for (size_t u = 1; v != 0 && u < n_units; u++) {
        if (v % units[u].factor == 0 && (best == NULL || units[u].factor > best->factor))
            best = &units[u];
    }
    if (buf != NULL && len > 0 && v == 0)
        snprintf(buf, len, "%s", zero);
    else if (buf != NULL && len > 0 && best == NULL)
        snprintf(buf, len, "%llu", (unsigned long long)v);
    else if (buf != NULL && len > 0)
        snprintf(buf, len, "%llu%s", (unsigned long long)(v / best->factor), best->suffix);
}

void om_format_duration_ms(uint64_t ms, char *buf, size_t len)
{
    format_scaled(ms, duration_units, OM_ARRAY_LEN(duration_units), "0s", buf, len);
}

void om_format_size(uint64_t n, char *buf, size_t len)
{
    /* Only the binary units: a size printed as "10GB" would be right too,
     * but one unit family keeps dumps easy to compare.  Bytes print bare. */
    static const struct unit binary[] = {
        {"", 1}, {"KiB", 1ull << 10}, {"MiB", 1ull << 20},
        {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
    };
    format_scaled(n, binary, OM_ARRAY_LEN(binary), "0", buf, len);
}

/* Hostname, IPv4 or bracketed IPv6 characters; anything else (blanks, '/',
 * '@', controls) in a listen address is a typo we report early. */
static bool listen_host_char(char c, bool bracketed)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_' || (bracketed && (c == ':' || c == '%'));
}

#define LISTEN_EG " (e.g. 0.0.0.0:5000, [::]:5000 or :5000)"

/* om_parse_listen, saying in *why what is wrong (a phrase that follows the
 * value, static storage). */
static int parse_listen(const char *s, char *host, size_t hostlen, unsigned *port,
                        bool allow_zero, const char **why)
{
    int rc = OM_ERR_INVALID;
    const char *h, *h_end, *p;
    bool bracketed = false;
    unsigned long pv = 0;
    size_t n;

    *why = "is not HOST:PORT" LISTEN_EG;
    if (s == NULL || strnlen(s, 300) >= 300)
        goto done;
    if (s[0] == '[') {
        bracketed = true;
        h = s + 1;
        h_end = strchr(h, ']');
        if (h_end == NULL || h_end[1] != ':') {
            *why = "is not [IPv6]:PORT: a closing bracket and a port must follow" LISTEN_EG;
            goto done;
        }
        p = h_end + 2;
    } else {
        h = s;
        h_end = strrchr(s, ':');
        if (h_end == NULL) {
            *why = "is not HOST:PORT: it has no port" LISTEN_EG;
            goto done; /* no port */
        }
        p = h_end + 1;
    }
    n = (size_t)(h_end - h);
    if ((n == 0 && bracketed) || n >= hostlen) {
        *why = n == 0 ? "is not HOST:PORT: the brackets are empty" LISTEN_EG
                      : "is not HOST:PORT: the host is too long";
        goto done; /* ":5000" is fine (every address), "[]:5000" is not */
    }
    for (size_t i = 0; i < n; i++) {
        if (!listen_host_char(h[i], bracketed)) {
            *why = !bracketed && memchr(h, ':', n) != NULL
                       ? "is not HOST:PORT: an IPv6 address needs brackets, as in [::1]:5000"
                       : "is not HOST:PORT: the host has a character a host name or address "
                         "cannot have";
            goto done; /* includes an unbracketed IPv6 address */
        }
    }
    *why = "is not HOST:PORT: the port must be a number from 1 to 65535";
    if (*p == '\0' || strlen(p) > 5)
        goto done;
    for (const char *q = p; *q != '\0'; q++) {
        if (*q < '0' || *q > '9')
            goto done;
        pv = pv * 10 + (unsigned long)(*q - '0');
    }
    if ((pv == 0 && !allow_zero) || pv > 65535)
        goto done;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (unsigned)pv;
    *why = NULL;
    rc = OM_OK;
done:
    return rc;
}

int om_parse_listen(const char *s, char *host, size_t hostlen, unsigned *port)
{
    const char *why;
    return parse_listen(s, host, hostlen, port, false, &why);
}

int om_parse_listen_bind(const char *s, char *host, size_t hostlen, unsigned *port)
{
    const char *why;
    return parse_listen(s, host, hostlen, port, true, &why);
}

const char *om_listen_why(const char *s)
{
    char host[256];
    unsigned port = 0;
    const char *why;
    parse_listen(s, host, sizeof(host), &port, false, &why);
    return why;
}
