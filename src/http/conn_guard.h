/* conn_guard.h — what libmicrohttpd 0.9.75 does not do for open client
 * connections: a cap the server enforces itself, and a deadline for a
 * request's head.
 *
 * Why (docs/fuzzing.md, findings H1 and H3):
 *   - At its own MHD_OPTION_CONNECTION_LIMIT libmicrohttpd takes the listen
 *     socket out of its epoll sets; after a flood of idle connections it may
 *     not put it back until its epoll timeout (connection_timeout) runs
 *     out, so the whole server stalls.  The guard keeps MHD below that
 *     limit: libmicrohttpd gets a higher limit (om_conn_guard_mhd_limit) and
 *     the guard closes a connection beyond max_connections the moment it
 *     is accepted, before it costs more than an fd.
 *   - libmicrohttpd only knows an idle timeout, reset by every byte: a
 *     client sending one header byte every few seconds holds its
 *     connection forever (slowloris).  The guard gives each request head a
 *     deadline — header_timeout from accept, or connection_timeout from the
 *     previous response on a kept-alive connection — and closes the
 *     connection when it passes.
 *
 * How: libmicrohttpd's connection notifications (MHD_OPTION_NOTIFY_CONNECTION)
 * keep one slot per open connection; the request handler disarms the slot
 * when a request head is complete (its first call) and re-arms it when the
 * response is done.  A reaper thread calls shutdown(2) on connections whose
 * deadline passed: libmicrohttpd then sees end-of-file and closes them on
 * its own thread.  shutdown(2) runs under the guard's lock and libmicrohttpd
 * reports a connection closed (removing its slot, under that lock) before
 * it closes the fd, so the guard never touches a reused descriptor.
 *
 * Thread-safe; one guard per server (struct om_server).
 */
#ifndef OM_CONN_GUARD_H
#define OM_CONN_GUARD_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct om_conn_slot;

struct om_conn_guard {
    pthread_mutex_t mu;              /* guards the slot list and `open` */
    pthread_cond_t cv;               /* wakes the reaper to stop */
    struct om_conn_slot *head;       /* open connections */
    unsigned open;                   /* connections libmicrohttpd holds */
    unsigned max_open;               /* beyond this: closed at accept */
    uint64_t header_timeout_us;      /* fresh connection: head within this */
    uint64_t keepalive_timeout_us;   /* after a response: next head within this */
    bool stop, started;
    pthread_t thread;
    atomic_uint_fast64_t refused;    /* closed at accept: over max_connections */
    atomic_uint_fast64_t head_timeouts; /* closed: request head too slow */
};

/* The connection limit to give libmicrohttpd for a guard capped at
 * max_open: enough above it that the guard's own closing never races
 * libmicrohttpd into its limit, and within the process's descriptor limit. */
unsigned om_conn_guard_mhd_limit(unsigned max_open);

/* The cap to enforce for configured max_connections, given the process's
 * descriptor limit `nofile` (each client may hold a socket and a store file
 * and there are upstream sockets, SQLite and log files too).  Never 0. */
unsigned om_conn_guard_cap(unsigned max_connections, uint64_t nofile);

/* Start the reaper.  Timeouts in milliseconds, both > 0. */
int om_conn_guard_start(struct om_conn_guard *g, unsigned max_open, uint64_t header_timeout_ms,
                        uint64_t keepalive_timeout_ms);
/* Stop the reaper (call after MHD_stop_daemon: no slots are left then). */
void om_conn_guard_stop(struct om_conn_guard *g);

/* MHD_OPTION_NOTIFY_CONNECTION callback; cls is the guard. */
void om_conn_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code);
/* A request head is complete (the handler's first call): no deadline while
 * the request is served. */
void om_conn_guard_request_started(struct MHD_Connection *conn);
/* The response is done: the next request head on this connection must come
 * within keepalive_timeout. */
void om_conn_guard_request_done(struct om_conn_guard *g, struct MHD_Connection *conn);

/* Connections open now (for /metrics). */
unsigned om_conn_guard_open(struct om_conn_guard *g);

#endif
