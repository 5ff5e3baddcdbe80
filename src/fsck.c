/* fsck.c — placeholder until implemented. */
#include <stdio.h>

#include "fsck.h"

int om_cmd_fsck(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "ocimirror: %s: not implemented yet\n", argv[0]);
    return 2;
}
