/* sdnotify.h — systemd readiness and watchdog (Type=notify, WatchdogSec=).
 *
 *   om_sd_ready(srv)   after the server listens: READY=1 (+ STATUS, MAINPID)
 *                      and, when systemd asked for a watchdog (WATCHDOG_USEC
 *                      for this process), a thread that sends WATCHDOG=1
 *                      every half interval — but only while GET /healthz on
 *                      the server's own port answers 200, so a wedged HTTP
 *                      front gets the service restarted.
 *   om_sd_stopping()   on SIGTERM, before the graceful shutdown: STOPPING=1;
 *                      from then on the watchdog pings without probing (the
 *                      listener is closed on purpose).
 *   om_sd_shutdown()   after the server is freed: join the watchdog thread.
 *
 * Everything is a no-op without $NOTIFY_SOCKET (not under systemd) and when
 * built without libsystemd (OM_HAVE_SYSTEMD undefined).  The watchdog
 * thread never touches the server after om_sd_ready() returns: it copies
 * the address it probes.  One serving process has one of each, so the
 * state is process-wide (as $NOTIFY_SOCKET is).
 */
#ifndef OM_SDNOTIFY_H
#define OM_SDNOTIFY_H

#include "server/server.h"

void om_sd_ready(struct om_server *srv);
void om_sd_stopping(void);
void om_sd_shutdown(void);

#endif
