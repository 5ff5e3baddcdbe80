/* cli.c — see cli.h. */
#include "cli/cli.h"

#include <stdio.h>

int om_cli_load_config(const char *path, const char *listen, const char *storage,
                       struct om_config **out)
{
    char err[512] = "";
    struct om_config *cfg = NULL;
    int rc = path ? om_config_load(&cfg, path, err, sizeof(err)) : om_config_default(&cfg);
    if (rc != OM_OK) {
        fprintf(stderr, "ocimirror: %s\n", err[0] ? err : om_strerror(rc));
        return 1;
    }
    if (listen && om_config_set_listen(cfg, listen) != OM_OK) {
        const char *why = om_listen_why(listen);
        fprintf(stderr, "ocimirror: --listen %s %s\n", listen, why ? why : "cannot be used");
        om_config_free(cfg);
        return 1;
    }
    if (storage && om_config_set_storage(cfg, storage) != OM_OK) {
        fprintf(stderr, "ocimirror: --storage \"%s\" is empty or longer than %d bytes\n", storage,
                OM_STORAGE_PATH_MAX);
        om_config_free(cfg);
        return 1;
    }
    *out = cfg;
    return 0;
}
