/*
 * progress.h: where a run in a worker of its own is (see progress.c).
 */
#ifndef RETL_PROGRESS_H
#define RETL_PROGRESS_H

#include "base/shmem.h"

extern RetlRunSlot *retl_my_run;

extern void retl_progress_phase(const char *phase);
extern void retl_progress_rows(int64 rows);
extern void retl_progress_tick(void);
extern int64 retl_progress_count(void);
extern void retl_progress_add(int64 n);
extern bool retl_progress_cancelled(void);

#endif
