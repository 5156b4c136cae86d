/*
 * worker.h: the per-database worker.
 */
#ifndef RETL_WORKER_H
#define RETL_WORKER_H

#include "postmaster/bgworker.h"

extern PGDLLEXPORT void retl_worker_main(Datum main_arg);
extern void retl_worker_exit_without_extension(void) pg_attribute_noreturn();

/* scheduled.c */
extern void retl_worker_scheduled(void);
extern void retl_worker_prune_runs(void);

#endif
