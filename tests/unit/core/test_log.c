/* test_log.c — log: text and JSON line formats, escaping, levels, limits,
 * one line per call even from several threads.  stderr is redirected to a
 * temporary file around each call and read back. */
#include "test.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <regex.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/log.h"

static char cap_path[64];
static int saved_fd = -1;

static void capture_begin(void)
{
    int fd = open(cap_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    CHECK(fd >= 0);
    fflush(stderr);
    saved_fd = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

/* What was written since capture_begin(); caller frees. */
static char *capture_end(void)
{
    char *buf = NULL;
    long n;
    FILE *f;

    fflush(stderr);
    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    f = fopen(cap_path, "rb");
    CHECK(f != NULL);
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = calloc(1, (size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n)
        buf[0] = '\0';
    fclose(f);
    return buf;
}

static bool matches(const char *s, const char *pattern)
{
    regex_t re;
    bool ok = false;

    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) == 0) {
        ok = regexec(&re, s, 0, NULL, 0) == 0;
        regfree(&re);
    }
    if (!ok)
        fprintf(stderr, "\"%s\" does not match /%s/\n", s, pattern);
    return ok;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;

    for (; s != NULL && *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

#define TS "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

static void test_log__text_lines_have_time_level_message_and_fields(void)
{
    char *out;

    om_log_setup(OM_LOG_DEBUG, OM_LOG_TEXT);
    capture_begin();
    om_log_kv(OM_LOG_INFO, "request", "method", "GET", "path", "/v2/", "status", "200", NULL);
    out = capture_end();
    CHECK(out != NULL && matches(out, "^" TS " INFO request method=GET path=/v2/ status=200\n$"));
    free(out);

    capture_begin();
    om_log(OM_LOG_WARN, "cache %s at %d%%", "full", 95);
    om_log(OM_LOG_ERROR, "boom");
    om_log(OM_LOG_DEBUG, "details");
    out = capture_end();
    CHECK(out != NULL && matches(out, "^" TS " WARN cache full at 95%\n" TS " ERROR boom\n" TS
                                      " DEBUG details\n$"));
    free(out);
}

static void test_log__text_values_are_quoted_and_escaped_when_needed(void)
{
    static const struct {
        const char *value, *shown;
    } cases[] = {
        {"plain", "k=plain"},
        {"value with space", "k=\"value with space\""},
        {"", "k=\"\""},
        {"a\"b", "k=\"a\\\"b\""},
        {"a=b", "k=\"a=b\""},
        {"back\\slash", "k=\"back\\\\slash\""},
        {"two\nlines", "k=\"two\\nlines\""},
        {"tab\there", "k=\"tab\\there\""},
        {"bell\a", "k=\"bell\\x07\""},
        {"caf\xc3\xa9", "k=caf\xc3\xa9"},
    };

    om_log_setup(OM_LOG_DEBUG, OM_LOG_TEXT);
    for (size_t i = 0; i < OM_ARRAY_LEN(cases); i++) {
        char *out;
        char want[128];
        capture_begin();
        om_log_kv(OM_LOG_INFO, "m", "k", cases[i].value, NULL);
        out = capture_end();
        snprintf(want, sizeof(want), " INFO m %s\n", cases[i].shown);
        CHECK(out != NULL && strlen(out) > strlen(want) &&
              strcmp(out + strlen(out) - strlen(want), want) == 0);
        if (out != NULL && strstr(out, want) == NULL)
            fprintf(stderr, "got %s want ...%s", out, want);
        free(out);
    }
}

static void test_log__a_newline_in_outside_input_cannot_forge_a_line(void)
{
    char *out;

    om_log_setup(OM_LOG_DEBUG, OM_LOG_TEXT);
    capture_begin();
    om_log(OM_LOG_INFO, "path %s", "/v2/x\n2026-01-01T00:00:00.000Z ERROR forged");
    om_log_kv(OM_LOG_INFO, "msg\r\nwith breaks", "k", "v\n", NULL);
    out = capture_end();
    CHECK_EQ_INT(count_lines(out), 2);
    CHECK(out != NULL && strstr(out, "/v2/x\\n2026") != NULL);
    CHECK(out != NULL && strstr(out, "msg\\r\\nwith breaks k=\"v\\n\"") != NULL);
    free(out);

    om_log_setup(OM_LOG_DEBUG, OM_LOG_JSON);
    capture_begin();
    om_log_kv(OM_LOG_INFO, "a\nb", "k", "c\nd", NULL);
    out = capture_end();
    CHECK_EQ_INT(count_lines(out), 1);
    free(out);
}

static void test_log__json_lines_are_objects_with_fields(void)
{
    char *out;
    json_t *j;
    json_error_t jerr;

    om_log_setup(OM_LOG_DEBUG, OM_LOG_JSON);
    capture_begin();
    om_log_kv(OM_LOG_WARN, "upstream slow", "upstream", "quay.io", "note", "say \"hi\"\\",
              "msg", "collides", "nothing", NULL, NULL);
    out = capture_end();
    CHECK(out != NULL && matches(out, "^\\{\"ts\":\"" TS "\",\"level\":\"warn\",\"msg\":\"upstream slow\""));
    CHECK_EQ_INT(count_lines(out), 1);
    j = out != NULL ? json_loads(out, 0, &jerr) : NULL;
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK_EQ_STR(json_string_value(json_object_get(j, "level")), "warn");
        CHECK_EQ_STR(json_string_value(json_object_get(j, "msg")), "upstream slow");
        CHECK_EQ_STR(json_string_value(json_object_get(j, "upstream")), "quay.io");
        CHECK_EQ_STR(json_string_value(json_object_get(j, "note")), "say \"hi\"\\");
        CHECK_EQ_STR(json_string_value(json_object_get(j, "_msg")), "collides");
        CHECK(json_is_null(json_object_get(j, "nothing")));
        json_decref(j);
    }
    free(out);

    capture_begin();
    om_log(OM_LOG_ERROR, "n=%d", 7);
    out = capture_end();
    j = out != NULL ? json_loads(out, 0, &jerr) : NULL;
    CHECK(j != NULL && strcmp(json_string_value(json_object_get(j, "level")), "error") == 0 &&
          strcmp(json_string_value(json_object_get(j, "msg")), "n=7") == 0);
    json_decref(j);
    free(out);
}

static void test_log__json_stays_valid_with_bytes_that_are_not_utf8(void)
{
    char *out;
    json_t *j;
    json_error_t jerr;

    om_log_setup(OM_LOG_DEBUG, OM_LOG_JSON);
    capture_begin();
    om_log_kv(OM_LOG_INFO, "bad \xff bytes", "path", "/v2/\xc3\x28/x", "ok", "caf\xc3\xa9", NULL);
    out = capture_end();
    j = out != NULL ? json_loads(out, 0, &jerr) : NULL;
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK_EQ_STR(json_string_value(json_object_get(j, "msg")), "bad ? bytes");
        CHECK_EQ_STR(json_string_value(json_object_get(j, "path")), "/v2/?(/x");
        CHECK_EQ_STR(json_string_value(json_object_get(j, "ok")), "caf\xc3\xa9");
        json_decref(j);
    }
    free(out);
}

static void test_log__levels_below_the_setting_are_dropped(void)
{
    char *out;

    om_log_setup(OM_LOG_WARN, OM_LOG_TEXT);
    CHECK(!om_log_enabled(OM_LOG_DEBUG));
    CHECK(!om_log_enabled(OM_LOG_INFO));
    CHECK(om_log_enabled(OM_LOG_WARN));
    CHECK(om_log_enabled(OM_LOG_ERROR));
    capture_begin();
    om_log(OM_LOG_INFO, "hidden");
    om_log_kv(OM_LOG_DEBUG, "hidden", "k", "v", NULL);
    om_log(OM_LOG_ERROR, "shown");
    out = capture_end();
    CHECK(out != NULL && strstr(out, "hidden") == NULL && strstr(out, "ERROR shown") != NULL);
    CHECK_EQ_INT(count_lines(out), 1);
    free(out);
}

static void test_log__huge_values_are_cut_to_the_limits(void)
{
    size_t n = 100000;
    char *big = malloc(n + 1);
    char *out;
    json_t *j;
    json_error_t jerr;

    if (big == NULL)
        return;
    memset(big, 'x', n);
    big[n] = '\0';
    om_log_setup(OM_LOG_DEBUG, OM_LOG_TEXT);
    capture_begin();
    om_log_kv(OM_LOG_INFO, "big", "a", big, "b", big, "c", big, NULL);
    out = capture_end();
    CHECK(out != NULL && strlen(out) <= 8192);
    CHECK(out != NULL && strstr(out, " [truncated]\n") != NULL);
    CHECK_EQ_INT(count_lines(out), 1);
    free(out);

    /* a multi-byte character at the cut is not split */
    memcpy(big + 4095, "\xc3\xa9", 2); /* bytes 4095..4096 straddle the cut */
    om_log_setup(OM_LOG_DEBUG, OM_LOG_JSON);
    capture_begin();
    om_log_kv(OM_LOG_INFO, "big", "a", big, NULL);
    out = capture_end();
    j = out != NULL ? json_loads(out, 0, &jerr) : NULL;
    CHECK(j != NULL && strlen(json_string_value(json_object_get(j, "a"))) == 4095);
    json_decref(j);
    free(out);
    free(big);
}

static void *log_many(void *arg)
{
    char id[16];

    snprintf(id, sizeof(id), "%d", *(int *)arg);
    for (int i = 0; i < 300; i++)
        om_log_kv(OM_LOG_INFO, "concurrent line with some padding to make it longer", "thread",
                  id, "field", "0123456789abcdefghijklmnopqrstuvwxyz0123456789", NULL);
    return NULL;
}

static void test_log__lines_from_threads_never_interleave(void)
{
    pthread_t th[4];
    int ids[4] = {0, 1, 2, 3};
    char *out, *line, *save = NULL;
    size_t good = 0;

    om_log_setup(OM_LOG_DEBUG, OM_LOG_JSON);
    capture_begin();
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, log_many, &ids[i]);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    out = capture_end();
    for (line = out != NULL ? strtok_r(out, "\n", &save) : NULL; line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        good += j != NULL && json_object_size(j) == 5;
        json_decref(j);
    }
    CHECK_EQ_INT(good, 4 * 300);
    free(out);
}

int main(void)
{
    int fd;

    snprintf(cap_path, sizeof(cap_path), "/tmp/test_log.XXXXXX");
    fd = mkstemp(cap_path);
    if (fd < 0) {
        perror("mkstemp");
        return 1;
    }
    close(fd);
    RUN(test_log__text_lines_have_time_level_message_and_fields);
    RUN(test_log__text_values_are_quoted_and_escaped_when_needed);
    RUN(test_log__a_newline_in_outside_input_cannot_forge_a_line);
    RUN(test_log__json_lines_are_objects_with_fields);
    RUN(test_log__json_stays_valid_with_bytes_that_are_not_utf8);
    RUN(test_log__levels_below_the_setting_are_dropped);
    RUN(test_log__huge_values_are_cut_to_the_limits);
    RUN(test_log__lines_from_threads_never_interleave);
    unlink(cap_path);
    om_log_setup(OM_LOG_INFO, OM_LOG_TEXT);
    return test_done();
}
