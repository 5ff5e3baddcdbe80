/* prefetch_run.c — run a list of images with retries (shared by the command
 * and the background thread), and small helpers of the prefetch module.
 *
 * Retries are rounds, not per-image sleeps: try 1 pulls every image; the
 * ones that failed with a retryable error wait retry_ms (the seed's "3
 * tries, 5 minutes apart" by default) and are tried again, up to `tries`
 * tries.  So one image whose upstream is down does not hold up the others,
 * and a permanent failure (404, bad name) is reported at once instead of
 * after ten minutes of waiting.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "prefetch/prefetch_int.h"

#define WAIT_SLICE_MS 100

/* Sleep ms, waking early when a stop flag is set.  false if stopped. */
static bool wait_ms(const struct om_pf_target *t, uint64_t ms)
{
    int64_t end = om_now_us() + (int64_t)ms * 1000;
    while (!om_pf_stopped(t)) {
        int64_t left = end - om_now_us();
        if (left <= 0)
            return true;
        if (left > WAIT_SLICE_MS * 1000)
            left = WAIT_SLICE_MS * 1000;
        struct timespec ts = {left / 1000000, (left % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

size_t om_pf_run(const struct om_pf_target *t, struct om_pf_item *items, size_t n,
                 const char *const *platforms, size_t np, unsigned tries, uint64_t retry_ms,
                 const struct om_pf_run_hooks *hooks)
{
    size_t failed = 0;
    if (tries == 0)
        tries = 1;
    for (unsigned try_no = 1; try_no <= tries; try_no++) {
        size_t pending = 0;
        for (size_t i = 0; i < n; i++)
            pending += items[i].state == OM_PF_PENDING;
        if (pending == 0)
            break;
        if (try_no > 1) {
            if (hooks && hooks->waiting)
                hooks->waiting(hooks->ud, try_no, tries, pending, retry_ms);
            if (!wait_ms(t, retry_ms))
                break;
        }
        for (size_t i = 0; i < n && !om_pf_stopped(t); i++) {
            struct om_pf_item *it = &items[i];
            if (it->state != OM_PF_PENDING)
                continue;
            if (hooks && hooks->image_start)
                hooks->image_start(hooks->ud, i, n, try_no, tries);
            int64_t t0 = om_now_us();
            int err = om_pf_pull(t, it->image, platforms, np, hooks ? &hooks->obs : NULL,
                                 &it->res);
            if (err == OM_OK)
                it->state = OM_PF_OK;
            else if (it->res.permanent || try_no == tries)
                it->state = OM_PF_FAILED;
            if (hooks && hooks->image_end)
                hooks->image_end(hooks->ud, i, n, try_no, tries, it,
                                 (uint64_t)(om_now_us() - t0) / 1000);
        }
    }
    /* Stopped early: whatever was still pending has failed. */
    for (size_t i = 0; i < n; i++) {
        if (items[i].state == OM_PF_PENDING) {
            items[i].state = OM_PF_FAILED;
            om_pf_fail(&items[i].res, true, "cancelled", "cancelled");
        }
        failed += items[i].state == OM_PF_FAILED;
    }
    return failed;
}

bool om_pf_vfail(struct om_pf_result *res, bool permanent, const char *code, const char *fmt,
                 va_list ap)
{
    if (res->error[0] != '\0')
        return false;             /* the first failure is the one to report */
    vsnprintf(res->error, sizeof(res->error), fmt, ap);
    if (res->error[0] == '\0')
        snprintf(res->error, sizeof(res->error), "%s", code);
    snprintf(res->code, sizeof(res->code), "%s", code);
    res->n_args = 0;
    res->permanent = permanent;
    return true;
}

bool om_pf_fail(struct om_pf_result *res, bool permanent, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool rec = om_pf_vfail(res, permanent, code, fmt, ap);
    va_end(ap);
    return rec;
}

void om_pf_fail_arg(struct om_pf_result *res, const char *key, const char *fmt, ...)
{
    va_list ap;
    if (res->n_args >= OM_PF_ARGS_MAX)
        return;
    struct om_pf_arg *a = &res->args[res->n_args];
    snprintf(a->key, sizeof(a->key), "%s", key);
    va_start(ap, fmt);
    vsnprintf(a->value, sizeof(a->value), fmt, ap);
    va_end(ap);
    res->n_args++;
}

void om_pf_human_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < OM_ARRAY_LEN(units)) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
}

int om_pf_self_base(const char *listen, unsigned port, bool tls, char *out, size_t outsz)
{
    char host[256];
    unsigned lport = 0;
    const char *scheme = tls ? "https" : "http";
    int err = om_parse_listen(listen, host, sizeof(host), &lport);
    /* A port of 0 ("pick one") does not parse as a listen address; the host
     * part is all we need from it then. */
    if (err != OM_OK && strlen(listen) > 2 && strcmp(listen + strlen(listen) - 2, ":0") == 0) {
        char tmp[300];
        snprintf(tmp, sizeof(tmp), "%.*s:1", (int)(strlen(listen) - 2), listen);
        err = om_parse_listen(tmp, host, sizeof(host), &lport);
    }
    if (err != OM_OK || port == 0 || port > 65535)
        return OM_ERR_INVALID;
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0)
        snprintf(out, outsz, "%s://127.0.0.1:%u", scheme, port);
    else if (strcmp(host, "::") == 0)
        snprintf(out, outsz, "%s://[::1]:%u", scheme, port);
    else if (strchr(host, ':') != NULL)
        snprintf(out, outsz, "%s://[%s]:%u", scheme, host, port);
    else
        snprintf(out, outsz, "%s://%s:%u", scheme, host, port);
    return OM_OK;
}
