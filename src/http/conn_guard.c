/* conn_guard.c — connection cap and request-head deadline (conn_guard.h). */
#include "http/conn_guard.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "core/log.h"
#include "core/om.h"

/* How often the reaper looks: a head deadline is kept to within this. */
#define REAP_TICK_MS 250
/* Descriptors kept back from clients: store, SQLite, logs, upstream pool. */
#define FD_RESERVE 128

struct om_conn_slot {
    struct om_conn_slot *prev, *next;
    int fd;
    /* Monotonic µs by which the request head must be complete; 0 while a
     * request is being served (and once the guard closed the connection). */
    atomic_uint_fast64_t deadline_us;
};

unsigned om_conn_guard_cap(unsigned max_connections, uint64_t nofile)
{
    /* A client may hold its socket and one store file; half of what is
     * left after the reserve, and libmicrohttpd's headroom on top
     * (om_conn_guard_mhd_limit) must fit as well. */
    uint64_t usable = nofile > 2 * FD_RESERVE ? (nofile - FD_RESERVE) / 3 : 16;
    if (usable < 16)
        usable = 16;
    return (uint64_t)max_connections < usable ? max_connections : (unsigned)usable;
}

unsigned om_conn_guard_mhd_limit(unsigned max_open)
{
    /* The guard closes an over-limit connection in the notification of its
     * accept; libmicrohttpd accepts at most 10 in one go per worker, so a
     * small headroom suffices.  Generous anyway: it only costs sockets that
     * live for one event-loop turn. */
    uint64_t lim = (uint64_t)max_open + max_open / 2 + 64;
    return lim > 1000000 ? 1000000 : (unsigned)lim;
}

static void *reaper(void *arg)
{
    struct om_conn_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += REAP_TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int rc = pthread_cond_timedwait(&g->cv, &g->mu, &until);
        if (g->stop)
            break;
        if (rc != ETIMEDOUT && rc != 0)
            continue;
        uint64_t now = (uint64_t)om_now_us();
        unsigned closed = 0;
        for (struct om_conn_slot *s = g->head; s != NULL; s = s->next) {
            uint64_t d = atomic_load(&s->deadline_us);
            if (d == 0 || d > now)
                continue;
            /* Only if no request started meanwhile. */
            if (!atomic_compare_exchange_strong(&s->deadline_us, &d, 0))
                continue;
            shutdown(s->fd, SHUT_RDWR);
            closed++;
        }
        if (closed > 0) {
            atomic_fetch_add(&g->head_timeouts, closed);
            om_log(OM_LOG_DEBUG, "closed %u connection(s): request head not complete in time",
                   closed);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

int om_conn_guard_start(struct om_conn_guard *g, unsigned max_open, uint64_t header_timeout_ms,
                        uint64_t keepalive_timeout_ms)
{
    g->head = NULL;
    g->open = 0;
    g->max_open = max_open;
    g->header_timeout_us = header_timeout_ms * 1000u;
    g->keepalive_timeout_us = keepalive_timeout_ms * 1000u;
    g->stop = false;
    g->started = false;
    atomic_init(&g->refused, 0);
    atomic_init(&g->head_timeouts, 0);
    if (pthread_mutex_init(&g->mu, NULL) != 0)
        return OM_ERR_NOMEM;
    if (pthread_cond_init(&g->cv, NULL) != 0) {
        pthread_mutex_destroy(&g->mu);
        return OM_ERR_NOMEM;
    }
    if (pthread_create(&g->thread, NULL, reaper, g) != 0) {
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
        return OM_ERR_NOMEM;
    }
    g->started = true;
    return OM_OK;
}

void om_conn_guard_stop(struct om_conn_guard *g)
{
    if (!g->started)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    /* libmicrohttpd reported every connection closed before it stopped;
     * anything left is a slot it never reported: free it. */
    while (g->head != NULL) {
        struct om_conn_slot *s = g->head;
        g->head = s->next;
        free(s);
    }
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    g->started = false;
}

void om_conn_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct om_conn_guard *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct om_conn_slot *s = calloc(1, sizeof(*s));
        if (ci == NULL || s == NULL) {
            /* Cannot track it: it still has libmicrohttpd's idle timeout. */
            free(s);
            *socket_context = NULL;
            return;
        }
        s->fd = ci->connect_fd;
        atomic_init(&s->deadline_us, (uint64_t)om_now_us() + g->header_timeout_us);
        pthread_mutex_lock(&g->mu);
        s->next = g->head;
        if (g->head != NULL)
            g->head->prev = s;
        g->head = s;
        bool over = ++g->open > g->max_open;
        if (over) {
            atomic_store(&s->deadline_us, 0);
            shutdown(s->fd, SHUT_RDWR);
        }
        pthread_mutex_unlock(&g->mu);
        if (over)
            atomic_fetch_add(&g->refused, 1);
        *socket_context = s;
        return;
    }
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct om_conn_slot *s = *socket_context;
        if (s == NULL)
            return;
        pthread_mutex_lock(&g->mu);
        if (s->prev != NULL)
            s->prev->next = s->next;
        else
            g->head = s->next;
        if (s->next != NULL)
            s->next->prev = s->prev;
        g->open--;
        pthread_mutex_unlock(&g->mu);
        free(s);
        *socket_context = NULL;
    }
}

static struct om_conn_slot *slot_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

void om_conn_guard_request_started(struct MHD_Connection *conn)
{
    struct om_conn_slot *s = slot_of(conn);
    if (s != NULL)
        atomic_store(&s->deadline_us, 0);
}

void om_conn_guard_request_done(struct om_conn_guard *g, struct MHD_Connection *conn)
{
    struct om_conn_slot *s = slot_of(conn);
    if (s != NULL)
        atomic_store(&s->deadline_us, (uint64_t)om_now_us() + g->keepalive_timeout_us);
}

unsigned om_conn_guard_open(struct om_conn_guard *g)
{
    pthread_mutex_lock(&g->mu);
    unsigned n = g->open;
    pthread_mutex_unlock(&g->mu);
    return n;
}
