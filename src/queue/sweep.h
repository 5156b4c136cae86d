/*
 * sweep.h: queue rows a dropped sync left behind (see sweep.c).
 */
#ifndef RETL_SWEEP_H
#define RETL_SWEEP_H

extern uint64 retl_queue_sweep(void);

#endif
