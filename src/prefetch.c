/* prefetch.c — placeholder until implemented. */
#include <stdio.h>

#include "prefetch.h"

int om_prefetch_start(struct om_server *srv)
{
    (void)srv;
    return OM_OK;
}

void om_prefetch_stop(struct om_server *srv)
{
    (void)srv;
}

int om_cmd_prefetch(int arprefetch, char **argv)
{
    (void)arprefetch;
    fprintf(stderr, "ocimirror: %s: not implemented yet\n", argv[0]);
    return 2;
}
