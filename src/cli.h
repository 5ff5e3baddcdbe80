/* cli.h — what the subcommands share: loading the config the way `serve`
 * does (file or embedded defaults, then --listen/--storage overrides). */
#ifndef OM_CLI_H
#define OM_CLI_H

#include "config.h"

/* path NULL = embedded defaults; listen/storage NULL = keep.  On error
 * prints the reason to stderr and returns non-zero.  *out owned by caller. */
int om_cli_load_config(const char *path, const char *listen, const char *storage,
                       struct om_config **out);

#endif
