/* clientcfg.h — ready-to-use client configuration for this mirror
 * (docker, containerd, crio, podman, k3s, kubeadm).  Implemented in
 * clientcfg.c; used by `ocimirror client-config` and the admin API. */
#ifndef OM_CLIENTCFG_H
#define OM_CLIENTCFG_H

int om_cmd_client_config(int argc, char **argv);

#endif
