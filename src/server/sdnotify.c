/* sdnotify.c — systemd readiness and watchdog via libsystemd's sd_notify
 * (see sdnotify.h for the contract).
 *
 * Why the watchdog probes /healthz instead of pinging blindly: a thread that
 * only sleeps and pings proves that one thread of ours is alive, which is
 * not what an operator wants restarted.  A GET /healthz through the real
 * listening socket proves that the accept path, an HTTP worker and the
 * request dispatch all work.  The probe runs at half the interval, so one
 * slow probe is tolerated and two in a row get the service restarted.
 *
 * Process-wide state (one serving process, one $NOTIFY_SOCKET) is kept in
 * `wd` below; nothing else in the program reads or writes it.
 *
 * Built without libsystemd (OM_HAVE_SYSTEMD undefined) every function is a
 * no-op: Docker and plain `ocimirror serve` do not need it.
 */
#include "server/sdnotify.h"

#ifdef OM_HAVE_SYSTEMD

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "prefetch/prefetch_int.h"    /* om_pf_self_base: our own loopback URL */

#define PROBE_TIMEOUT_MAX_MS 5000L

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running;                 /* thread started, not joined */
    bool quit;                    /* om_sd_shutdown: leave now */
    atomic_bool stopping;         /* STOPPING=1 sent: ping without probing */
    uint64_t period_us;           /* half of WATCHDOG_USEC */
    char url[OM_PF_BASE_MAX + 16];/* "http://127.0.0.1:5000/healthz" */
    char *ca_pem;                 /* owned copy of the server's cert, or NULL */
} wd = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static bool healthz_ok(void)
{
    bool ok = false;
    CURL *h = curl_easy_init();
    if (h == NULL)
        return false;
    long timeout_ms = (long)(wd.period_us / 2000);
    if (timeout_ms > PROBE_TIMEOUT_MAX_MS)
        timeout_ms = PROBE_TIMEOUT_MAX_MS;
    if (timeout_ms < 100)
        timeout_ms = 100;
    curl_easy_setopt(h, CURLOPT_URL, wd.url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ocimirror-watchdog");
    if (wd.ca_pem != NULL) {
        struct curl_blob b = {.data = wd.ca_pem, .len = strlen(wd.ca_pem),
                              .flags = CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);  /* loopback IP, public cert */
    }
    long status = 0;
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    ok = rc == CURLE_OK && status == 200;
    if (!ok)
        om_log_kv(OM_LOG_WARN, "watchdog: /healthz did not answer 200; not pinging systemd",
                  "error", rc != CURLE_OK ? curl_easy_strerror(rc) : "status", NULL);
    curl_easy_cleanup(h);
    return ok;
}

static void *watchdog_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wd.mu);
    while (!wd.quit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (wd.period_us % 1000000) * 1000;
        ts.tv_sec += (time_t)(wd.period_us / 1000000 + ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        while (!wd.quit && pthread_cond_timedwait(&wd.cv, &wd.mu, &ts) == 0)
            ;
        if (wd.quit)
            break;
        pthread_mutex_unlock(&wd.mu);
        if (atomic_load(&wd.stopping) || healthz_ok())
            sd_notify(0, "WATCHDOG=1");
        pthread_mutex_lock(&wd.mu);
    }
    pthread_mutex_unlock(&wd.mu);
    return NULL;
}

void om_sd_ready(struct om_server *srv)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    if (sock == NULL || sock[0] == '\0')
        return;
    const union MHD_DaemonInfo *di =
        srv->daemon ? MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    int rc = sd_notifyf(0, "READY=1\nSTATUS=serving on %s (port %u), storage %s\nMAINPID=%lu",
                        srv->cfg->listen, di ? (unsigned)di->port : 0u, srv->cfg->storage_path,
                        (unsigned long)getpid());
    if (rc < 0)
        om_log(OM_LOG_WARN, "sd_notify READY=1 failed: %s", strerror(-rc));
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return;
    char base[OM_PF_BASE_MAX];
    if (di == NULL || om_pf_self_base(srv->cfg->listen, di->port, srv->tls_cert_pem != NULL,
                                      base, sizeof(base)) != OM_OK) {
        om_log(OM_LOG_ERROR, "watchdog: cannot tell the server's own address; not started");
        return;
    }
    pthread_mutex_lock(&wd.mu);
    if (!wd.running) {
        snprintf(wd.url, sizeof(wd.url), "%s/healthz", base);
        wd.period_us = usec / 2;
        wd.quit = false;
        wd.ca_pem = srv->tls_cert_pem ? strdup(srv->tls_cert_pem) : NULL;
        int err = pthread_create(&wd.thread, NULL, watchdog_thread, NULL);
        if (err == 0) {
            wd.running = true;
            char ms[24];
            snprintf(ms, sizeof(ms), "%llu", (unsigned long long)(wd.period_us / 1000));
            om_log_kv(OM_LOG_INFO, "watchdog: pinging systemd", "every_ms", ms, "probe",
                      wd.url, NULL);
        } else {
            om_log(OM_LOG_ERROR, "watchdog: cannot start its thread: %s", strerror(err));
        }
    }
    pthread_mutex_unlock(&wd.mu);
    /* The first ping now: the probe interval starts counting from here. */
    sd_notify(0, "WATCHDOG=1");
}

void om_sd_stopping(void)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    if (sock == NULL || sock[0] == '\0')
        return;
    atomic_store(&wd.stopping, true);
    sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
}

void om_sd_shutdown(void)
{
    pthread_mutex_lock(&wd.mu);
    bool join = wd.running;
    wd.quit = true;
    pthread_cond_broadcast(&wd.cv);
    pthread_mutex_unlock(&wd.mu);
    if (join)
        pthread_join(wd.thread, NULL);
    pthread_mutex_lock(&wd.mu);
    wd.running = false;
    free(wd.ca_pem);
    wd.ca_pem = NULL;
    pthread_mutex_unlock(&wd.mu);
}

#else /* !OM_HAVE_SYSTEMD */

void om_sd_ready(struct om_server *srv)
{
    (void)srv;
}

void om_sd_stopping(void)
{
}

void om_sd_shutdown(void)
{
}

#endif
