/* log.c — one line per event on stderr, as text or as JSON (see log.h).
 *
 *   text: 2026-11-29T02:30:00.123Z INFO msg key=value key2="value with space"
 *   json: {"ts":"2026-11-29T02:30:00.123Z","level":"info","msg":"...","key":"value"}
 *
 * Each line is built in memory and handed to the kernel with one write(2),
 * so lines from different threads never interleave mid-line (for pipes up
 * to PIPE_BUF bytes; longer lines are rare and still written in one call).
 * No stdio, no lock.
 *
 * Log lines carry outside input (request paths, upstream error text), so:
 *   - every message and value is cut at LOG_VALUE_MAX bytes, a text line at
 *     LOG_LINE_MAX bytes, a call at LOG_PAIRS_MAX key/value pairs;
 *   - text format escapes control characters (a "\n" in a path cannot
 *     forge a second log line) and quotes values that contain blanks,
 *     quotes, '=' or escapes;
 *   - JSON is built by jansson; a string that is not valid UTF-8 (which
 *     jansson refuses) is logged with its non-ASCII bytes replaced by '?'.
 *
 * Global state: the level and format are plain globals.  om_log_setup() is
 * called once at start-up, before any thread exists, and only read after
 * that, so they need no lock or atomics.
 */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define LOG_LINE_MAX 8192  /* a text line, including the newline */
#define LOG_VALUE_MAX 4096 /* a message or one value */
#define LOG_PAIRS_MAX 32   /* key/value pairs kept per call */

static om_log_level g_level = OM_LOG_INFO;  /* see the file comment */
static om_log_format g_format = OM_LOG_TEXT;

static const char *const level_upper[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const level_lower[] = {"debug", "info", "warn", "error"};

struct pair {
    const char *key, *value; /* borrowed from the caller */
};

void om_log_setup(om_log_level level, om_log_format format)
{
    g_level = level;
    g_format = format;
}

bool om_log_enabled(om_log_level level)
{
    return level >= g_level;
}

static unsigned level_index(om_log_level level)
{
    return (unsigned)level < OM_ARRAY_LEN(level_upper) ? (unsigned)level : OM_LOG_ERROR;
}

static void timestamp(char *buf, size_t len)
{
    struct timespec ts = {0};
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000));
}

/* The whole buffer to stderr in one write(2) (retried only if interrupted
 * or cut short by the kernel). */
static void write_line(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* nowhere left to report a logging failure */
        buf += n;
        len -= (size_t)n;
    }
}

/* ---- text --------------------------------------------------------------- */

struct text {
    char buf[LOG_LINE_MAX];
    size_t len;
    bool cut;  /* something did not fit */
};

/* Room kept at the end for " [truncated]\n". */
#define TEXT_RESERVE 16

static void text_put(struct text *t, const char *s, size_t n)
{
    size_t room = sizeof(t->buf) - TEXT_RESERVE - t->len;

    if (n > room) {
        n = room;
        t->cut = true;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
}

static bool needs_quotes(const char *s, size_t n)
{
    bool q = n == 0;

    for (size_t i = 0; i < n && !q; i++) {
        unsigned char ch = (unsigned char)s[i];
        q = ch <= 0x20 || ch == 0x7f || ch == '"' || ch == '=' || ch == '\\';
    }
    return q;
}

/* s with control characters escaped; quotes and backslashes too if quoted. */
static void text_escaped(struct text *t, const char *s, size_t n, bool quoted)
{
    char esc[8];

    for (size_t i = 0; i < n && !t->cut; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n')
            text_put(t, "\\n", 2);
        else if (ch == '\r')
            text_put(t, "\\r", 2);
        else if (ch == '\t')
            text_put(t, "\\t", 2);
        else if (ch < 0x20 || ch == 0x7f)
            text_put(t, esc, (size_t)snprintf(esc, sizeof(esc), "\\x%02x", ch));
        else if (quoted && (ch == '"' || ch == '\\'))
            text_put(t, (const char[]){'\\', (char)ch}, 2);
        else
            text_put(t, (const char *)&s[i], 1);
    }
}

static void emit_text(om_log_level level, const char *ts, const char *msg,
                      const struct pair *kv, size_t nkv)
{
    struct text t; /* ~8 KiB on the stack, no allocation */
    const char *lv = level_upper[level_index(level)];

    t.len = 0;
    t.cut = false;
    text_put(&t, ts, strlen(ts));
    text_put(&t, " ", 1);
    text_put(&t, lv, strlen(lv));
    text_put(&t, " ", 1);
    text_escaped(&t, msg, strnlen(msg, LOG_VALUE_MAX), false);
    for (size_t i = 0; i < nkv && !t.cut; i++) {
        const char *v = kv[i].value != NULL ? kv[i].value : "(null)";
        size_t vn = strnlen(v, LOG_VALUE_MAX);
        bool q = needs_quotes(v, vn);
        text_put(&t, " ", 1);
        text_escaped(&t, kv[i].key, strnlen(kv[i].key, 64), false);
        text_put(&t, q ? "=\"" : "=", q ? 2 : 1);
        text_escaped(&t, v, vn, q);
        if (q)
            text_put(&t, "\"", 1);
    }
    if (t.cut) {
        memcpy(t.buf + t.len, " [truncated]", 12);
        t.len += 12;
    }
    t.buf[t.len++] = '\n';
    write_line(t.buf, t.len);
}

/* ---- JSON --------------------------------------------------------------- */

/* A JSON string of s, at most LOG_VALUE_MAX bytes, valid UTF-8 whatever s is. */
static json_t *json_text(const char *s)
{
    size_t n = strnlen(s, LOG_VALUE_MAX + 1);
    json_t *j;
    char *copy; /* owned here */

    if (n > LOG_VALUE_MAX) {
        n = LOG_VALUE_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* do not split a UTF-8 sequence */
    }
    j = json_stringn(s, n);
    if (j == NULL && (copy = malloc(n + 1)) != NULL) {
        for (size_t i = 0; i < n; i++)
            copy[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
        j = json_stringn(copy, n);
        free(copy);
    }
    return j;
}

static void emit_json(om_log_level level, const char *ts, const char *msg,
                      const struct pair *kv, size_t nkv)
{
    static const char oom[] = "{\"level\":\"error\",\"msg\":\"log: out of memory\"}\n";
    json_t *o = json_object(); /* owned here */
    char *line = NULL;         /* owned here */
    size_t need = 0;

    if (o == NULL)
        goto done;
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(level_lower[level_index(level)]));
    json_object_set_new(o, "msg", json_text(msg));
    for (size_t i = 0; i < nkv; i++) {
        char key[80];
        /* a field named like ours (ts, level, msg) gets a "_" in front */
        snprintf(key, sizeof(key), "%s%s", json_object_get(o, kv[i].key) != NULL ? "_" : "",
                 kv[i].key);
        json_object_set_new(o, key, kv[i].value != NULL ? json_text(kv[i].value) : json_null());
    }
    need = json_dumpb(o, NULL, 0, JSON_COMPACT);
    if (need == 0 || (line = malloc(need + 1)) == NULL)
        goto done;
    if (json_dumpb(o, line, need, JSON_COMPACT) != need)
        goto done;
    line[need] = '\n';
    write_line(line, need + 1);
done:
    if (line == NULL)
        write_line(oom, sizeof(oom) - 1);
    free(line);
    json_decref(o);
}

/* ---- entry points ------------------------------------------------------- */

static void emit(om_log_level level, const char *msg, const struct pair *kv, size_t nkv)
{
    char ts[64];

    timestamp(ts, sizeof(ts));
    msg = msg != NULL ? msg : "";
    if (g_format == OM_LOG_JSON)
        emit_json(level, ts, msg, kv, nkv);
    else
        emit_text(level, ts, msg, kv, nkv);
}

void om_log(om_log_level level, const char *fmt, ...)
{
    if (om_log_enabled(level)) {
        char msg[LOG_VALUE_MAX + 1];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap); /* a longer message is cut */
        va_end(ap);
        emit(level, msg, NULL, 0);
    }
}

void om_log_kv(om_log_level level, const char *msg, ...)
{
    if (om_log_enabled(level)) {
        struct pair kv[LOG_PAIRS_MAX];
        size_t n = 0;
        const char *key;
        va_list ap;

        va_start(ap, msg);
        while ((key = va_arg(ap, const char *)) != NULL) {
            const char *value = va_arg(ap, const char *);
            if (n < LOG_PAIRS_MAX) /* more pairs than that are read and dropped */
                kv[n++] = (struct pair){key, value};
        }
        va_end(ap);
        emit(level, msg, kv, n);
    }
}
