/*
 * runner.h: runs and refreshes in workers of their own (see runner.c).
 */
#ifndef RETL_RUNNER_H
#define RETL_RUNNER_H

#include "nodes/pg_list.h"
#include "postmaster/bgworker.h"

extern void retl_runner_work(char kind, int64 id, int sync_id, bool send);
extern void retl_runner_failed(char kind, int64 id, int sync_id, const char *error);
extern bool retl_runner_launch(char kind, int64 id, int sync_id, bool send);
extern int	retl_runners_reap(void);
extern List *retl_runners_runs(void);
extern void retl_runners_stop_idle(Oid dboid, int wait_ms);
extern PGDLLEXPORT void retl_runner_main(Datum main_arg);

#endif
