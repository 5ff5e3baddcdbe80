/* fsck.h — `ocimirror fsck`: verify every stored blob against its digest
 * and the index against the store; report, optionally repair.
 * Implemented in fsck.c. */
#ifndef OM_FSCK_H
#define OM_FSCK_H

int om_cmd_fsck(int argc, char **argv);

#endif
