/*
 * worker.h: the per-database worker.
 */
#ifndef RETL_WORKER_H
#define RETL_WORKER_H

#include "postmaster/bgworker.h"

extern PGDLLEXPORT void retl_worker_main(Datum main_arg);
extern void retl_worker_exit_without_extension(void) pg_attribute_noreturn();

/* claims.c */
extern List *retl_worker_claim(bool *more, bool *full, long *wait_ms);
extern void retl_worker_park_parts(List *parts);
extern bool retl_worker_parts_outlast(int sync_id, int dest);

/* scheduled.c */
extern void retl_worker_scheduled(void);
extern void retl_worker_prune_runs(void);
extern void retl_worker_recover(void);
extern void retl_worker_recover_later(void);

#endif
