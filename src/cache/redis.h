/* redis.h — the cache layer's connection to Redis (redis.c; the checked
 * reply accessors in redis_reply.c), over hiredis
 * 0.14's synchronous API: one pool of connections per struct om_redis,
 * reconnection on its own, an "available" state anyone can read, pipelines
 * and Lua scripts.  Users: the Redis index backend (index_redis*.c) today;
 * the cluster coordination (download leases, the GC leader) next, on the
 * same struct.
 *
 * Life cycle:
 *   om_redis_open(&r, &opts)   connects once; a server that refuses the
 *                              password or the database fails the open, an
 *                              unreachable one does not (state
 *                              unavailable, the watchdog keeps trying)
 *   om_redis_exec(r, cmds, n)  any thread, any time: n commands pipelined in
 *                              one round trip on one pooled connection
 *   om_redis_available(r)      one atomic load
 *   om_redis_close(r)          after every caller is done
 *
 * The pool: a small LOCKED pool (opts.pool_max connections, default 16),
 * not one connection per thread.  The callers are many and mostly idle —
 * the HTTP threads (one per CPU), the job lanes (jobs_per_upstream per
 * upstream, 16 each), a thread per download, the pull-statistics flusher,
 * GC — so a connection per thread would mean a hundred or more sockets per
 * replica, each with its own AUTH/SELECT, times every replica, for calls
 * that hold a connection for one round trip (~50 µs).  Sixteen pooled
 * connections carry ~300 000 such calls a second.  Connections are made on
 * demand (none idle, fewer than pool_max open) and kept; a caller that
 * finds all of them busy waits for one at most command_timeout_ms.
 *
 * Availability and reconnection:
 *   - A command that fails on the wire (connection refused or reset, EOF,
 *     timeout, a protocol error) discards its connection and turns the
 *     state UNAVAILABLE at once: every later call fails in microseconds with
 *     OM_ERR_UNAVAILABLE, without touching the network, so an HTTP thread
 *     never waits on a dead Redis more than once per outage (at most
 *     command_timeout_ms, for the call that saw it).  Every connection of
 *     the old generation is dropped (they went to the same server).
 *   - One watchdog thread per struct: while available, it PINGs every
 *     ping_interval_ms (so an idle replica notices an outage too, for
 *     /healthz); while unavailable, it connects again with exponential
 *     backoff and jitter (backoff_min_ms doubling to backoff_max_ms) and
 *     turns the state AVAILABLE on the first connection that answers
 *     PING.  Each change is logged once (warn going down, info coming back),
 *     never per failed call.
 *   - A Redis error REPLY (WRONGTYPE, OOM, NOSCRIPT, ...) is not a failure
 *     of the connection: the command's reply says it.
 *
 * Retries (a Redis restarted between two PINGs leaves every idle pooled
 * connection dead; a short outage that is over must not turn the state
 * unavailable on the first use of each):
 *   - A pooled connection is checked before a command is sent on it: an
 *     idle connection has no reply pending, so anything readable on it
 *     (the EOF or reset of a server that closed it: a restart, CLIENT
 *     KILL, its `timeout`) means it is dead.  It is closed and a new one
 *     made; the state stays available.  Nothing was sent: nothing to undo.
 *     The other idle connections of its generation are dropped with it
 *     (same server), one info line says so, and the watchdog runs on_up
 *     after its next PING answers, as after an outage (a restarted Redis
 *     may be empty: the index checks its data).
 *   - A write that failed before one byte of the pipeline left (the first
 *     write(2) failed: a failing write(2) writes nothing) is run ONCE more
 *     on another connection (checked the same way, or new); a second
 *     failure turns the state unavailable.
 *   - Nothing else is retried: a failure after a byte left (a reset while
 *     reading, a timeout) may have run the commands, and not all of them
 *     are idempotent (the lease take INCRs an epoch, the index's pull
 *     counters HINCRBY), so it turns the state unavailable as above.
 *   - Writing on a socket the server closed raises SIGPIPE: the process
 *     ignores it (main.c; the unit tests too).
 *
 * Scripts: a struct om_redis_script holds the Lua source and its SHA-1,
 * computed once by om_redis_script_init (no SCRIPT LOAD round trip).
 * A command with a script is sent as EVALSHA; a NOSCRIPT answer (a Redis
 * restarted or SCRIPT FLUSHed since) is retried once as EVAL, which loads
 * it.  In a pipeline only the commands that answered NOSCRIPT are sent
 * again (in their order, after the others): scripts used in one pipeline
 * must not depend on the order between them and the pipeline's other
 * commands (the index's do not).
 *
 * Replies: hiredis parses any reply; nothing here trusts one.  Every
 * accessor below checks the type and the size limit the caller gives
 * before a byte is used, and says OM_ERR_IO (with a log line) otherwise.
 *
 * Errors: OM_ERR_UNAVAILABLE (down now), OM_ERR_TIMEOUT (every pooled
 * connection stayed busy), OM_ERR_AUTH (refused AUTH/NOAUTH at open),
 * OM_ERR_INVALID (a database the server does not have), OM_ERR_NOMEM.
 */
#ifndef OM_REDIS_H
#define OM_REDIS_H

#include "core/config.h"
#include "core/om.h"

#include <hiredis/hiredis.h>

struct om_redis;

#define OM_REDIS_POOL_DEFAULT 16
#define OM_REDIS_ARGV_MAX 32     /* arguments of one command, script keys included */
#define OM_REDIS_NUMS_MAX 8      /* numbers one command formats (om_redis_arg_i64) */

struct om_redis_opts {
    struct om_redis_url url;       /* copied */
    const char *password;          /* NULL: url.password; else this (the
                                      password file's contents); copied */
    unsigned pool_max;             /* 0 = OM_REDIS_POOL_DEFAULT */
    unsigned connect_timeout_ms;   /* 0 = 500 */
    unsigned command_timeout_ms;   /* 0 = 1000 */
    unsigned backoff_min_ms;       /* 0 = 100 */
    unsigned backoff_max_ms;       /* 0 = 5000 */
    unsigned ping_interval_ms;     /* 0 = 1000 */
    const char *who;               /* names the user in log lines ("index");
                                      static or outliving the struct */
    /* Called on the watchdog thread each time Redis is available again
     * after an outage, or answers again after it closed our idle
     * connections (a quick restart, "Retries"), not at the open, with no
     * lock held: it may run commands (the index checks that Redis still
     * holds its data).  NULL = none. */
    void (*on_up)(void *ud);
    void *ud;
};

/* Open (see the life cycle above).  o and everything it points to are
 * copied.  *out owned by the caller (om_redis_close). */
int om_redis_open(struct om_redis **out, const struct om_redis_opts *o);
/* Stop the watchdog, close every connection, wipe the password, free.
 * NULL is fine.  No call may be in progress or start. */
void om_redis_close(struct om_redis *r);

bool om_redis_available(struct om_redis *r);

struct om_redis_status {
    bool available;
    int64_t since_ms;          /* wall clock of the last change (or of the open) */
    uint64_t outages;          /* times it became unavailable */
    uint64_t reconnects;       /* times it became available again */
    unsigned connections;      /* open now (idle or in use) */
    char last_error[160];      /* why it last went down or last failed to
                                  reconnect; "" = never */
    char where[OM_REDIS_HOST_MAX + 16]; /* "host:port/db" or "unix:PATH?db=N" */
};
void om_redis_status(struct om_redis *r, struct om_redis_status *out);

/* Wait until available, at most timeout_ms (tests, start-up); true if so. */
bool om_redis_wait_available(struct om_redis *r, unsigned timeout_ms);

/* ---- scripts ---- */
struct om_redis_script {
    const char *name;          /* for log lines */
    const char *src;           /* Lua; static */
    char sha[41];              /* hex SHA-1 of src, om_redis_script_init */
};
/* Compute s->sha.  Call once before the script is used (not thread-safe
 * against its own use). */
void om_redis_script_init(struct om_redis_script *s);

/* ---- commands ---- */
/* One command: argv[0] is its name, or, with a script, the arguments after
 * EVALSHA/EVAL's (sha, nkeys): keys first, then arguments.  Strings are
 * borrowed until om_redis_exec returns; numbers are formatted into the
 * struct itself.  Too many arguments is a programmer error (asserted). */
struct om_redis_cmd {
    const struct om_redis_script *script;   /* NULL = plain command */
    int nkeys;                              /* with a script */
    int argc;
    const char *argv[OM_REDIS_ARGV_MAX];
    size_t len[OM_REDIS_ARGV_MAX];
    char nums[OM_REDIS_NUMS_MAX][24];
    int n_nums;
    /* Sent after argv[]: a variable number of arguments (a manifest's
     * children), borrowed likewise; om_redis_arg_extra. */
    const char *const *xargv;
    const size_t *xlen;
    size_t xargc;
};
void om_redis_cmd_init(struct om_redis_cmd *c, const struct om_redis_script *script, int nkeys);
void om_redis_arg(struct om_redis_cmd *c, const char *s, size_t len);
void om_redis_arg_str(struct om_redis_cmd *c, const char *s);
void om_redis_arg_i64(struct om_redis_cmd *c, int64_t v);
/* n more arguments after the others (at most one such list per command). */
void om_redis_arg_extra(struct om_redis_cmd *c, const char *const *argv, const size_t *len,
                        size_t n);

/* Send cmds[0..n) in one pipeline on one connection and read the n
 * replies into replies[0..n) (each owned by the caller:
 * om_redis_replies_free, also after an error).  OM_OK: every reply arrived
 * — each may still be an error reply (om_redis_reply_ok).  Otherwise every
 * replies[i] is NULL. */
int om_redis_exec(struct om_redis *r, struct om_redis_cmd *cmds, size_t n,
                  redisReply **replies);
void om_redis_replies_free(redisReply **replies, size_t n);

/* ---- checked access to replies (what = names the call in log lines) ----
 * OM_OK when rp has the type and fits the limit; OM_ERR_NOTFOUND for a nil
 * reply where one may come; OM_ERR_IO (logged) otherwise, or the mapped
 * error of an error reply (OOM → OM_ERR_NOSPACE, LOADING/BUSY →
 * OM_ERR_TIMEOUT, others OM_ERR_IO). */
int om_redis_reply_ok(const redisReply *rp, const char *what);          /* not an error */
int om_redis_reply_int(const redisReply *rp, const char *what, long long *out);
/* A bulk or status string of at most max bytes: *s borrowed from rp. */
int om_redis_reply_str(const redisReply *rp, const char *what, size_t max, const char **s,
                       size_t *len);
/* The same, copied NUL-terminated into out (OM_ERR_TOOBIG when it does not
 * fit; a NUL inside is OM_ERR_IO). */
int om_redis_reply_copy(const redisReply *rp, const char *what, char *out, size_t outsz);
/* A decimal integer sent as a string (HGET of a number) or an integer. */
int om_redis_reply_num(const redisReply *rp, const char *what, int64_t *out);
/* An array of at most max elements (elements unchecked: check each). */
int om_redis_reply_array(const redisReply *rp, const char *what, size_t max);

/* ---- shared by redis.c and redis_reply.c only ---- */
/* An error reply's text as om_err (the mapping above; NOAUTH, WRONGPASS,
 * NOPERM → OM_ERR_AUTH). */
int om_redis__err_of_reply(const redisReply *rp);
/* s[0..len) as one printable line into out (control bytes as '?'). */
void om_redis__shown(char *out, size_t outsz, const char *s, size_t len);

#endif
