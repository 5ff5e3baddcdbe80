/* gc.c — placeholder until implemented. */
#include <stdio.h>

#include "gc.h"

int om_gc_start(struct om_server *srv)
{
    (void)srv;
    return OM_OK;
}

void om_gc_stop(struct om_server *srv)
{
    (void)srv;
}

int om_cmd_gc(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "ocimirror: %s: not implemented yet\n", argv[0]);
    return 2;
}
