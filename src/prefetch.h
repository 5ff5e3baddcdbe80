/* prefetch.h — warming the cache (预热): `ocimirror prefetch`, the config's
 * prefetch section re-synced in the background, and admin-triggered jobs.
 * Implemented in prefetch.c. */
#ifndef OM_PREFETCH_H
#define OM_PREFETCH_H

#include "server.h"

int om_prefetch_start(struct om_server *srv);
void om_prefetch_stop(struct om_server *srv);
/* `ocimirror prefetch [-c FILE] [--platform P]... IMAGE... | -f LIST`. */
int om_cmd_prefetch(int argc, char **argv);

#endif
