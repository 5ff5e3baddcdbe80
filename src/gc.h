/* gc.h — eviction to the storage quota (least recently pulled image
 * first), orphan and stale-ingest cleanup; in the background and on demand.
 * Implemented in gc.c. */
#ifndef OM_GC_H
#define OM_GC_H

#include "server.h"

/* Start/stop the background GC thread (no-op without storage.max_size...). */
int om_gc_start(struct om_server *srv);
void om_gc_stop(struct om_server *srv);
/* `ocimirror gc [-c FILE]`: argv[0] is "gc". Returns the exit status. */
int om_cmd_gc(int argc, char **argv);

#endif
