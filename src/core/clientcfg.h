/* clientcfg.h — ready-to-use client configuration for this mirror
 * (docker, containerd, crio, podman, k3s, kubeadm).  Implemented in
 * clientcfg.c; used by `ocimirror client-config` (cli/client_config.c) and
 * the admin API (GET /api/v1/client-config), so the UI's setup page and
 * the command print the same files. */
#ifndef OM_CLIENTCFG_H
#define OM_CLIENTCFG_H

#include <jansson.h>

#include "core/config.h"

/* The kinds, NULL-terminated: "docker", "containerd", "crio", "podman",
 * "k3s", "kubeadm". */
extern const char *const om_clientcfg_kinds[];

/* Render the configuration of one client kind for a mirror reachable at
 * mirror_url ("https://mirror.example" or "http://10.0.0.5:5000": http or
 * https, host and optional port, no path; one trailing '/' is tolerated)
 * serving the upstreams of cfg.  *out is a new object owned by the caller:
 *   {"for": KIND, "mirror": URL,
 *    "files": [{"path": "/etc/...", "content": "..."}],
 *    "commands": ["systemctl restart containerd", ...],
 *    "notes": ["...", ...]}
 * Paths are absolute where the client has a fixed place for the file
 * (kubeadm's is relative: it is an input of `kubeadm init --config`).
 * Pure: no I/O.  OM_ERR_INVALID for an unknown kind or a bad URL (*out is
 * then NULL), OM_ERR_NOMEM. */
int om_clientcfg_render(const char *kind, const char *mirror_url, const struct om_config *cfg,
                        json_t **out);

#endif
