/* server.c — build the server context, start libmicrohttpd, run until a
 * signal, shut down gracefully.  See server.h for the threading model.
 *
 * libmicrohttpd settings and why (HTTP-SERVER-NOTES.md):
 *   MHD_USE_EPOLL_INTERNAL_THREAD + THREAD_POOL_SIZE: measured on par with
 *     nginx; suspend/resume works only in this mode, not thread-per-conn.
 *   MHD_ALLOW_SUSPEND_RESUME: clients waiting on a job or on download bytes
 *     are suspended, costing no thread and no CPU.
 *   UNESCAPE_CALLBACK = identity: the path reaches the router verbatim, so
 *     "%2e%2e" and "%00" are rejected as invalid names instead of being
 *     decoded into something else first.
 *   CONNECTION_MEMORY_LIMIT: bounds what one connection can make us hold
 *     (headers + URL), which with the connection limit bounds memory.
 *   CONNECTION_TIMEOUT: a client that moves no bytes for that long is
 *     dropped, so a slow client cannot hold a connection forever.
 */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "cache/cluster_members.h"
#include "cache/cluster.h"
#include "cache/gc.h"
#include "cache/index_redis.h"
#include "cache/mcache.h"
#include "cache/pullstats.h"
#include "core/log.h"
#include "prefetch/prefetch.h"
#include "http/limits.h"
#include "server/sdnotify.h"
#include "v2/v2.h"
#include "v2/v2_blob.h"

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **req_cls)
{
    return om_api_handle(cls, conn, url, method, version, upload_data, upload_data_size, req_cls);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct om_server *srv = cls;
    om_conn_guard_request_done(&srv->guard, conn);
    if (*req_cls != NULL)
        om_api_completed(srv, *req_cls, toe);
    *req_cls = NULL;
}

static size_t unescape_identity(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    om_log_kv(OM_LOG_DEBUG, "http", "detail", buf, NULL);
}

/* Read a whole (small) file; *out malloc'd and NUL-terminated. */
static int read_small_file(const char *path, size_t max, char **out)
{
    int err = OM_ERR_IO;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0)
        goto done;
    if ((uint64_t)sb.st_size > max) {
        err = OM_ERR_TOOBIG;
        goto done;
    }
    buf = malloc((size_t)sb.st_size + 1);
    if (buf == NULL) {
        err = OM_ERR_NOMEM;
        goto done;
    }
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);
        if (r <= 0)
            goto done;
        got += (size_t)r;
    }
    buf[got] = '\0';
    *out = buf;
    buf = NULL;
    err = OM_OK;
done:
    free(buf);
    if (fd >= 0)
        close(fd);
    return err;
}

/* Bind and listen on `addr` ("host:port", "[v6]:port", ":port") ourselves
 * instead of through MHD_OPTION_SOCK_ADDR: a port another process holds
 * fails here with its own errno ("Address already in use"), and the socket
 * gets SO_REUSEADDR (a restart binds past TIME_WAIT) but never SO_REUSEPORT,
 * with which a second server on the port would silently share its clients
 * (the kernel splitting connections between two caches).  *fd owned by the
 * caller (libmicrohttpd, once started with it); *v6 for MHD_USE_IPv6. */
static int open_listener(const char *addr, int *fd_out, bool *v6)
{
    char host[256], port[8];
    unsigned portn = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int fd = -1, one = 1, err = OM_ERR_IO, gai;

    *fd_out = -1;
    if (om_parse_listen_bind(addr, host, sizeof(host), &portn) != OM_OK) {
        om_log(OM_LOG_ERROR, "cannot listen on %s: it %s", addr, om_listen_why(addr));
        err = OM_ERR_INVALID;
        goto done;
    }
    snprintf(port, sizeof(port), "%u", portn);
    if ((gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0 || res == NULL) {
        om_log(OM_LOG_ERROR, "cannot listen on %s (%s)", addr, gai_strerror(gai));
        err = OM_ERR_INVALID;
        goto done;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        om_log(OM_LOG_ERROR, "cannot listen on %s (%s)", addr, strerror(errno));
        goto done;
    }
    *v6 = res->ai_family == AF_INET6;
    *fd_out = fd;
    fd = -1;
    err = OM_OK;
done:
    if (fd >= 0)
        close(fd);
    if (res != NULL)
        freeaddrinfo(res);
    return err;
}

/* A committed blob may push usage over the quota's high water mark. */
static void nudge_gc(void *ud)
{
    struct om_server *srv = ud;
    om_gc_nudge(srv->gc);
}

/* GC's evictions in the admin statistics. */
static void note_evictions(void *ud, uint64_t n, uint64_t bytes)
{
    om_admin_note_evictions(ud, n, bytes);
}

/* Raise the soft descriptor limit to the hard one (as nginx's
 * worker_rlimit_nofile does): every client connection costs a socket and
 * often a store file.  Returns the soft limit in force afterwards. */
static uint64_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
        struct rlimit nrl = {want, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &nrl) == 0)
            rl.rlim_cur = want;
    }
    return rl.rlim_cur == RLIM_INFINITY ? 1048576 : (uint64_t)rl.rlim_cur;
}

static unsigned cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* ---- access.* and policy.*: at start and on SIGHUP ---------------------- */

static int compile_policy(const struct om_config *cfg, struct om_policy **out)
{
    return om_policy_new(out, (const char *const *)cfg->policy_allow, cfg->n_policy_allow,
                         (const char *const *)cfg->policy_deny, cfg->n_policy_deny);
}

static void log_access_policy(const struct om_server *srv, const struct om_config *cfg,
                              const char *what)
{
    char users[24], allow[24], deny[24];
    snprintf(users, sizeof(users), "%zu", om_auth_users(srv->auth));
    snprintf(allow, sizeof(allow), "%zu", cfg->n_policy_allow);
    snprintf(deny, sizeof(deny), "%zu", cfg->n_policy_deny);
    om_log_kv(OM_LOG_INFO, what, "anonymous", cfg->access_anonymous ? "true" : "false",
              "htpasswd_file", cfg->access_htpasswd_file ? cfg->access_htpasswd_file : "",
              "users", users, "policy_allow", allow, "policy_deny", deny, NULL);
}

static int access_policy_init(struct om_server *srv, const struct om_config *cfg)
{
    char err[512];
    int rc;
    if ((rc = om_auth_new(&srv->auth)) != OM_OK || (rc = compile_policy(cfg, &srv->policy)) != OM_OK)
        return rc;
    if ((rc = om_auth_configure(srv->auth, cfg->access_anonymous, cfg->access_htpasswd_file, err,
                                sizeof(err))) != OM_OK) {
        om_log(OM_LOG_ERROR, "access: %s", err);
        return rc;
    }
    if (cfg->access_htpasswd_file != NULL || cfg->n_policy_allow || cfg->n_policy_deny)
        log_access_policy(srv, cfg, "access and policy");
    return OM_OK;
}

int om_server_reload(struct om_server *srv)
{
    struct om_config *ncfg = NULL;
    struct om_policy *np = NULL;
    char err[1024];
    int rc;
    const char *src = srv->cfg->source;

    if (src == NULL || src[0] == '<') { /* embedded defaults: only the file may change */
        rc = om_auth_configure(srv->auth, srv->cfg->access_anonymous,
                               srv->cfg->access_htpasswd_file, err, sizeof(err));
        if (rc != OM_OK)
            om_log_kv(OM_LOG_ERROR, "reload failed; keeping the old access rules", "error", err,
                      NULL);
        return rc;
    }
    if ((rc = om_config_load(&ncfg, src, err, sizeof(err))) != OM_OK) {
        om_log_kv(OM_LOG_ERROR,
                  "reload failed: config not reloaded, keeping the old policy, access rules and "
                  "limits",
                  "config", src, "error", err, NULL);
        return rc;
    }
    if ((rc = compile_policy(ncfg, &np)) != OM_OK) {
        om_log_kv(OM_LOG_ERROR, "reload failed; keeping the old policy and access rules",
                  "config", src, "error", om_strerror(rc), NULL);
        goto done;
    }
    /* The file last: it is the only part that can fail now, and policy and
     * access then change together or not at all. */
    if ((rc = om_auth_configure(srv->auth, ncfg->access_anonymous, ncfg->access_htpasswd_file,
                                err, sizeof(err))) != OM_OK) {
        om_log_kv(OM_LOG_ERROR, "reload failed; keeping the old policy and access rules",
                  "config", src, "error", err, NULL);
        om_policy_unref(np);
        goto done;
    }
    om_server_policy_swap(srv, np);
    log_access_policy(srv, ncfg, "reloaded");
    /* The per-client limits and trusted_proxies (copied: ncfg is freed
     * below); only memory can fail here. */
    if (om_limiter_reconfigure(srv->limiter, &ncfg->limits) == OM_OK)
        om_log_kv(OM_LOG_INFO, "per-client limits and trusted_proxies reloaded", "config", src,
                  NULL);
    else
        om_log(OM_LOG_ERROR, "reload: out of memory; the old per-client limits stay");
done:
    om_config_free(ncfg);
    return rc;
}

void om_server_free(struct om_server *srv)
{
    if (srv == NULL)
        return;
    atomic_store(&srv->cancel, true);
    if (srv->fetch != NULL)
        om_fetch_table_cancel_all(srv->fetch);
    if (srv->jobs != NULL)
        om_jobs_stop(srv->jobs);
    if (srv->daemon != NULL) {
        om_flights_resume_all(srv);
        MHD_stop_daemon(srv->daemon);
    }
    om_conn_guard_stop(&srv->guard);
    /* After the daemon and the jobs: no admin request or download can reach
     * them any more.  Both are no-ops when never started. */
    om_prefetch_stop(srv);
    om_gc_stop(srv->gc);
    srv->gc = NULL;
    om_members_stop(srv->members); /* after GC: its lease names this replica */
    srv->members = NULL;
    om_admin_free(srv);
    om_limiter_free(srv->limiter);
    om_pullstats_stop(srv->pulls);
    om_mcache_free(srv->mcache);
    om_auth_free(srv->auth);
    om_policy_unref(srv->policy);
    om_v2_tags_free(srv->tags);
    om_blob_flights_free(srv->blob_flights); /* after the jobs: every flight has ended */
    om_events_free(srv->events);
    om_fetch_table_free(srv->fetch);
    om_cluster_close(srv->cluster); /* after the downloads that use it */
    for (size_t i = 0; i < OM_MAX_UPSTREAMS; i++)
        om_upstream_free(srv->up[i]);
    om_index_close(srv->index);
    om_store_close(srv->store);
    pthread_mutex_destroy(&srv->flights_mu);
    pthread_mutex_destroy(&srv->policy_mu);
    free(srv->tls_cert_pem);
    free(srv->tls_key_pem);
    free(srv);
}

int om_server_start(struct om_server **out, const struct om_config *cfg)
{
    int err;
    int lfd = -1; /* the listening socket until the daemon owns it */
    struct om_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return OM_ERR_NOMEM;
    srv->cfg = cfg;
    srv->started_ms = om_now_ms();
    pthread_mutex_init(&srv->flights_mu, NULL);
    pthread_mutex_init(&srv->policy_mu, NULL);
    if ((err = access_policy_init(srv, cfg)) != OM_OK)
        goto fail;

    if ((err = om_store_open_cfg(&srv->store, cfg)) != OM_OK) {
        om_log(OM_LOG_ERROR, "cannot open storage %s: %s", cfg->storage_path, om_strerror(err));
        goto fail;
    }
    bool rebuilt = false;
    /* cluster.redis set: the metadata every replica shares lives in Redis
     * (an unreachable Redis does not stop the start: the index reconnects
     * by itself); else <storage>/index.db. */
    if ((err = om_index_open_cfg(&srv->index, srv->store, cfg, &rebuilt)) != OM_OK) {
        if (cfg->cluster_redis != NULL)
            om_log(OM_LOG_ERROR, "cannot open the index in redis: %s", om_strerror(err));
        else
            om_log(OM_LOG_ERROR, "cannot open index in %s: %s", cfg->storage_path,
                   om_strerror(err));
        goto fail;
    }
    if (rebuilt)
        om_log_kv(OM_LOG_WARN, "index was missing or corrupt and has been rebuilt from the store",
                  "storage", cfg->storage_path, NULL);
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        if ((err = om_upstream_new(&srv->up[i], cfg, i)) != OM_OK) {
            om_log(OM_LOG_ERROR, "upstream %s: %s", cfg->upstreams[i].name, om_strerror(err));
            goto fail;
        }
    }
    if ((err = om_events_new(&srv->events)) != OM_OK)
        goto fail;
    if ((err = om_pullstats_start(&srv->pulls, srv->index, srv->store, 2000)) != OM_OK)
        goto fail;
    if ((err = om_mcache_new(&srv->mcache, 8u << 20)) != OM_OK ||
        (err = om_blob_flights_new(&srv->blob_flights)) != OM_OK)
        goto fail;
    if ((err = om_v2_tags_new(&srv->tags, cfg)) != OM_OK)
        goto fail;
    if ((err = om_fetch_table_new(&srv->fetch, cfg, srv->store, srv->index)) != OM_OK)
        goto fail;
    om_fetch_set_events(srv->fetch, srv->events);
    om_fetch_set_commit_hook(srv->fetch, nudge_gc, srv);
    /* cluster.redis and cluster.peer_url: one download per blob for the
     * cluster (download leases, peer streams); else NULL, a replica alone. */
    if ((err = om_cluster_open(&srv->cluster, cfg)) != OM_OK) {
        om_log(OM_LOG_ERROR, "cluster: cannot open: %s", om_strerror(err));
        goto fail;
    }
    om_fetch_set_cluster(srv->fetch, srv->cluster);
    if ((err = om_admin_init(srv)) != OM_OK)
        goto fail;
    if ((err = om_limiter_new(&srv->limiter, &cfg->limits)) != OM_OK)
        goto fail;
    /* A lane of jobs per upstream, one for names still being searched, one
     * for the rest (jobs.h): a hung upstream fills only its own. */
    srv->lane_search = (unsigned)cfg->n_upstreams;
    srv->lane_other = srv->lane_search + 1;
    if ((err = om_jobs_start(&srv->jobs, srv->lane_other + 1, cfg->limits.jobs_per_upstream,
                             4096)) != OM_OK)
        goto fail;

    bool v6 = false;
    if ((err = open_listener(cfg->listen, &lfd, &v6)) != OM_OK)
        goto fail;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_IPv6;
    if (cfg->tls_cert != NULL) {
        if (read_small_file(cfg->tls_cert, 1 << 20, &srv->tls_cert_pem) != OM_OK ||
            read_small_file(cfg->tls_key, 1 << 20, &srv->tls_key_pem) != OM_OK) {
            om_log(OM_LOG_ERROR, "cannot read tls.cert/tls.key");
            err = OM_ERR_IO;
            goto fail;
        }
        flags |= MHD_USE_TLS;
    }
    const struct om_limits *lim = &cfg->limits;
    size_t mem_limit = 2 * (lim->max_header_bytes + lim->max_url_bytes) + 16384;
    unsigned threads = lim->threads ? lim->threads : cpu_count();
    unsigned timeout_s = (unsigned)((lim->connection_timeout_ms + 999) / 1000);
    unsigned cap = om_conn_guard_cap(lim->max_connections, raise_nofile());
    if (cap < lim->max_connections)
        om_log(OM_LOG_WARN,
               "limits.max_connections %u is more than the descriptor limit allows; serving at "
               "most %u connections (raise LimitNOFILE / ulimit -n)",
               lim->max_connections, cap);
    if ((err = om_conn_guard_start(&srv->guard, cap, lim->header_timeout_ms,
                                   lim->connection_timeout_ms)) != OM_OK)
        goto fail;
    struct MHD_OptionItem opts[] = {
        /* first, or libmicrohttpd logs what comes before it to stderr */
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_logger, NULL},
        {MHD_OPTION_LISTEN_SOCKET, lfd, NULL},
        {MHD_OPTION_THREAD_POOL_SIZE, threads, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, om_conn_guard_mhd_limit(cap), NULL},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)om_conn_guard_notify, &srv->guard},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, lim->max_connections_per_ip, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)mem_limit, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, srv},
        {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape_identity, NULL},
        {srv->tls_cert_pem ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, srv->tls_cert_pem},
        {srv->tls_key_pem ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, srv->tls_key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, srv, MHD_OPTION_ARRAY, opts,
                                   MHD_OPTION_END);
    if (srv->daemon == NULL) {
        om_log(OM_LOG_ERROR, "cannot serve on %s (%s)", cfg->listen, strerror(errno));
        err = OM_ERR_IO;
        goto fail;
    }
    lfd = -1; /* the daemon's now: it closes it when it stops */
    /* A cluster (the index in Redis): this replica's heartbeat, on the
     * index's connection. */
    struct om_redis *redis = om_index_redis_conn(srv->index);
    if (redis != NULL) {
        struct om_members_host ch = {
            .cfg = cfg, .redis = redis, .store = srv->store, .started_ms = srv->started_ms,
            .self = om_admin_cluster_self, .ud = srv,
        };
        if ((err = om_members_start(&srv->members, &ch)) != OM_OK) {
            om_log(OM_LOG_ERROR, "cannot start the cluster heartbeat: %s", om_strerror(err));
            goto fail;
        }
    }
    struct om_gc_host gc_host = {
        .cfg = srv->cfg, .store = srv->store, .events = srv->events, .pulls = srv->pulls,
        .mcache = srv->mcache, .cancel = &srv->cancel, .on_evictions = note_evictions, .ud = srv,
        .index = srv->index, .replica_id = om_members_id(srv->members),
    };
    /* GC reads and deletes through its own SQLite connection (index_gc.h),
     * or, with the index in Redis, on the shared keys with the cluster's
     * GC lease: one replica at a time runs it, the others skip the round. */
    if ((err = om_gc_start(&srv->gc, &gc_host)) != OM_OK ||
        (err = om_prefetch_start(srv)) != OM_OK) {
        om_log(OM_LOG_ERROR, "cannot start background tasks: %s", om_strerror(err));
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    char port[16];
    snprintf(port, sizeof(port), "%u", di ? (unsigned)di->port : 0);
    om_log_kv(OM_LOG_INFO, "listening", "listen", cfg->listen, "port", port, "tls",
              srv->tls_cert_pem ? "on" : "off", "storage", cfg->storage_path, "config",
              cfg->source, NULL);
    *out = srv;
    return OM_OK;
fail:
    if (lfd >= 0)
        close(lfd);
    om_server_free(srv);
    return err;
}

void om_server_run_until_signal(struct om_server *srv)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    int sig = 0;
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            /* Logs go to stderr (rotation is the supervisor's job): what
             * reloads is access.*, policy.* and the per-client limits
             * (om_server_reload). */
            om_log(OM_LOG_INFO, "SIGHUP: reloading access, policy and limits from %s",
                   srv->cfg->source ? srv->cfg->source : "?");
            (void)om_server_reload(srv);
            continue;
        }
        break;
    }
    om_sd_stopping();                 /* systemd STOPPING=1 (sdnotify.h) */
    om_log_kv(OM_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
    atomic_store(&srv->stopping, true);
    MHD_socket lfd = MHD_quiesce_daemon(srv->daemon);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    int64_t deadline = om_now_ms() + (int64_t)srv->cfg->limits.shutdown_grace_ms;
    while (atomic_load(&srv->connections) > 0 && om_now_ms() < deadline) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&srv->connections) > 0)
        om_log(OM_LOG_WARN, "grace period over with %u requests in flight; aborting them",
               (unsigned)atomic_load(&srv->connections));
    om_server_free(srv);
    om_log(OM_LOG_INFO, "stopped");
}
