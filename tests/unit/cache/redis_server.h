/* redis_server.h — a throwaway redis-server for the unit tests that need a
 * real one (test_redis.c, test_index_redis.c).
 *
 * rs_start: a temp directory, a config with no persistence listening on a
 * unix socket in it (and, when tcp_port != 0, on 127.0.0.1:tcp_port), the
 * server started with setsid in its own session, and a wait until it answers
 * PING.  rs_stop: SIGTERM to that PID (never by name: redis-server rewrites
 * its command line), SIGKILL after 3 s, the directory removed.  rs_pause /
 * rs_resume: SIGSTOP / SIGCONT, a server that hangs.  A machine without
 * redis-server makes rs_start return false: the caller skips, saying so.
 */
#ifndef OM_TEST_REDIS_SERVER_H
#define OM_TEST_REDIS_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct rs {
    char dir[64];
    char sock[128];
    unsigned port;        /* 0 = unix socket only */
    pid_t pid;
};

static int rs_rm_one_(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void rs_sleep_ms_(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A free loopback TCP port (bound and closed: a small race, fine here). */
static inline unsigned rs_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    unsigned port = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static bool rs_have_redis(void)
{
    return access("/usr/bin/redis-server", X_OK) == 0;
}

/* Start (or, with dir already set, start again on the same socket). */
static bool rs_spawn_(struct rs *s)
{
    char conf[160];
    FILE *f;

    snprintf(conf, sizeof(conf), "%s/redis.conf", s->dir);
    if ((f = fopen(conf, "w")) == NULL)
        return false;
    fprintf(f, "port %u\nbind 127.0.0.1\nunixsocket %s\nunixsocketperm 700\nsave \"\"\n"
               "appendonly no\ndir %s\nlogfile %s/redis.log\ndaemonize no\ndatabases 16\n",
            s->port, s->sock, s->dir, s->dir);
    fclose(f);
    s->pid = fork();
    if (s->pid < 0)
        return false;
    if (s->pid == 0) {
        setsid();
        execl("/usr/bin/redis-server", "redis-server", conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* up in ~120 ms; give it 5 s */
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectUnixWithTimeout(s->sock, tv);
        bool up = false;
        if (c != NULL && c->err == 0) {
            redisReply *rp = redisCommand(c, "PING");
            up = rp != NULL && rp->type == REDIS_REPLY_STATUS;
            freeReplyObject(rp);
        }
        if (c != NULL)
            redisFree(c);
        if (up)
            return true;
        rs_sleep_ms_(10);
    }
    return false;
}

static bool rs_start(struct rs *s, bool tcp)
{
    memset(s, 0, sizeof(*s));
    if (!rs_have_redis())
        return false;
    snprintf(s->dir, sizeof(s->dir), "/tmp/om-test-redis-XXXXXX");
    if (mkdtemp(s->dir) == NULL)
        return false;
    snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir);
    s->port = tcp ? rs_free_port() : 0;
    return rs_spawn_(s);
}

/* Stop the server, keep the directory (rs_restart starts it again). */
static void rs_kill(struct rs *s)
{
    int status;
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGCONT);
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        rs_sleep_ms_(10);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
}

static inline bool rs_restart(struct rs *s)
{
    rs_kill(s);
    return rs_spawn_(s);
}

static inline void rs_pause(struct rs *s)
{
    kill(s->pid, SIGSTOP);
}

static inline void rs_resume(struct rs *s)
{
    kill(s->pid, SIGCONT);
}

static void rs_stop(struct rs *s)
{
    rs_kill(s);
    if (s->dir[0] != '\0')
        nftw(s->dir, rs_rm_one_, 16, FTW_DEPTH | FTW_PHYS);
    s->dir[0] = '\0';
}

/* Run one command (words split at blanks) on a connection of the test's own:
 * the reply's integer, or -1 on an error; str (if not NULL) gets a string
 * reply. */
static inline long long rs_cmd(const struct rs *s, unsigned db, const char *cmd, char *str, size_t strsz)
{
    struct timeval tv = {1, 0};
    long long v = -1;
    redisContext *c = redisConnectUnixWithTimeout(s->sock, tv);
    if (c == NULL || c->err != 0)
        goto done;
    redisReply *rp = redisCommand(c, "SELECT %u", db);
    freeReplyObject(rp);
    char buf[1024], *argv[32], *save = NULL;
    int argc = 0;
    snprintf(buf, sizeof(buf), "%s", cmd);
    for (char *t = strtok_r(buf, " ", &save); t != NULL && argc < 32; t = strtok_r(NULL, " ", &save))
        argv[argc++] = t;
    rp = redisCommandArgv(c, argc, (const char **)argv, NULL);
    if (rp != NULL && rp->type == REDIS_REPLY_INTEGER)
        v = rp->integer;
    else if (rp != NULL && (rp->type == REDIS_REPLY_STRING || rp->type == REDIS_REPLY_STATUS))
        v = 0;
    if (str != NULL && strsz > 0)
        snprintf(str, strsz, "%s", rp != NULL && rp->str != NULL ? rp->str : "");
    freeReplyObject(rp);
done:
    if (c != NULL)
        redisFree(c);
    return v;
}

#endif
