/*
 * worker.h: the per-database worker.
 */
#ifndef RETL_WORKER_H
#define RETL_WORKER_H

#include "datatype/timestamp.h"
#include "postmaster/bgworker.h"

extern PGDLLEXPORT void retl_worker_main(Datum main_arg);
extern void retl_worker_exit_without_extension(void) pg_attribute_noreturn();
extern bool retl_worker_stopping(void);

/* answers.c */
extern void retl_worker_collect_answers(List **answers, List **split);
extern void retl_worker_record_outcomes(List *answers, List *split);
extern long retl_worker_answers_wait(long timeout);

/* claims.c */
extern List *retl_worker_claim(bool *more, bool *full, long *wait_ms);
extern bool retl_worker_backed_off(int sync_id, TimestampTz now);
extern void retl_worker_settle_backfills(List *abandoned);

/* parts.c */
struct RetlRequest;
struct RetlSync;
extern List *retl_worker_add_request(List *requests, struct RetlRequest *req);
extern void retl_worker_park_parts(List *parts);
extern void retl_parts_claimed_ahead(int sync_id, int concurrency);
extern bool retl_parts_any(void);
extern int	retl_parts_count(int sync_id);
extern bool retl_worker_parts_outlast(int sync_id, int dest);
extern void retl_parts_release_unloaded(List *syncs);
extern bool retl_parts_start(struct RetlSync *sync, TimestampTz now, long *wait_ms,
							 List **requests);
extern int	retl_parts_claim_ahead(struct RetlSync *sync);
extern bool retl_parts_running_low(struct RetlSync *sync, uint32 queued_gen, TimestampTz now);
extern List *retl_worker_start_parts(bool *claim, bool *full, long *wait_ms);

/* staging.c */
extern void retl_worker_stage_stream(void);

/* tokens.c */
extern List *retl_worker_record_tokens(List *answers);

/* scheduled.c */
extern void retl_worker_scheduled(void);
extern void retl_worker_prune_runs(void);
extern void retl_worker_recover(void);
extern void retl_worker_recover_later(void);

#endif
