/*
 * runs.h: scheduling and recording runs of diff syncs.
 */
#ifndef RETL_RUNS_H
#define RETL_RUNS_H

#include "models/diff.h"

extern bool retl_runs_recover(List *at_work);
extern void retl_runs_cancelled(int64 run_id);
extern bool retl_runs_claim(int64 *run_id, int *sync_id, bool *send);
extern bool retl_runs_resync(int64 run_id);
extern bool retl_runs_would_send(int sync_id, int64 run_id, const char *why, bool send);
extern void retl_runs_succeeded(int64 run_id, RetlSync *sync, RetlRunCounts *counts);
extern bool retl_runs_failed(int64 run_id, int sync_id, const char *error);
extern void retl_runs_prune(int sync_id);
extern bool retl_audiences_claim(int *audience_id);
extern void retl_audience_failed(int audience_id, const char *error);

#endif
