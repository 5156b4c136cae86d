/*
 * sweep.h: syncs being dropped, and the queue rows a dropped sync left
 * behind (see sweep.c).
 */
#ifndef RETL_SWEEP_H
#define RETL_SWEEP_H

#include "nodes/pg_list.h"

extern uint64 retl_queue_sweep(void);
extern List *retl_queue_syncs_locked(int *ids, int n);

#endif
