/* cli.h — the subcommands main.c dispatches to, and what they share:
 * loading the config the way `serve` does (file or embedded defaults, then
 * --listen/--storage overrides).
 *
 * Each om_cmd_* takes the command's own argv (argv[0] is the command name)
 * and returns the process exit status: 0 ok, 1 failure, 2 bad usage. */
#ifndef OM_CLI_H
#define OM_CLI_H

#include "core/config.h"

/* path NULL = embedded defaults; listen/storage NULL = keep.  On error
 * prints the reason to stderr and returns non-zero.  *out owned by caller. */
int om_cli_load_config(const char *path, const char *listen, const char *storage,
                       struct om_config **out);

/* `ocimirror client-config --for KIND [--mirror URL] [-c FILE] [--out DIR]
 * [--json]`: see docs/client-setup.md.  Exit 0, 1 on a write error, 2 on bad
 * usage (unknown kind, no mirror URL, bad URL).  cli/client_config.c. */
int om_cmd_client_config(int argc, char **argv);

/* `ocimirror gc [-c FILE] [--storage DIR] [--dry-run]` (docs/gc.md).
 * Works on the storage directly, also while a server runs on it. */
int om_cmd_gc(int argc, char **argv);

/* `ocimirror fsck [-c FILE] [--storage DIR] [--repair] [--json]`: verify
 * every stored blob against its digest and the index against the store;
 * report, optionally repair (docs/fsck.md). */
int om_cmd_fsck(int argc, char **argv);

/* `ocimirror prefetch [-c FILE] [--platform P]... [--mirror URL] IMAGE... |
 * -f LIST`: see docs/prefetch.md.  Exit status 0 when every image was
 * prefetched, 1 when some failed (each named on stderr), 2 on bad usage.
 * cli/prefetch_cli.c. */
int om_cmd_prefetch(int argc, char **argv);

#endif
