/* clientcfg.c — placeholder until implemented. */
#include <stdio.h>

#include "clientcfg.h"

int om_cmd_client_config(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "ocimirror: %s: not implemented yet\n", argv[0]);
    return 2;
}
