/*
 * scheduled.c: the database worker's scheduled work: runs of diff syncs
 * and refreshes of audiences, each started in a worker of its own
 * (runner.c) or, with none free, done by the database's worker itself;
 * and keeping retl.runs to retl.run_history.
 */
#include "postgres.h"

#include "access/xact.h"
#include "pgstat.h"
#include "sync/dropping.h"
#include "utils/elog.h"
#include "utils/memutils.h"

#include "base/guc.h"
#include "base/shmem.h"
#include "base/subxact.h"
#include "models/runs.h"
#include "process/runner.h"
#include "process/txn.h"
#include "process/worker.h"
#include "queue/sweep.h"

/* The claim of the next run or refresh, in a subtransaction */
typedef struct ScheduledClaim
{
	bool		(*claim) (int64 *id, int *sync_id, bool *send);
	int64	   *id;
	int		   *sync_id;
	bool	   *send;
	bool		found;
} ScheduledClaim;

static void
claim_scheduled(void *arg)
{
	ScheduledClaim *c = arg;

	c->found = c->claim(c->id, c->sync_id, c->send);

	/*
	 * A run's sync keeps its drop lock until the run has ended, in this
	 * worker or in a runner's: no drop of the sync begins meanwhile, so the
	 * run's transaction never waits for one (sync/dropping.c).  (The claim
	 * asked for the lock, so this takes nothing new.)
	 */
	if (c->found && *c->sync_id != 0 && !retl_sync_keep(*c->sync_id))
		elog(ERROR, "retl: sync %d is being dropped", *c->sync_id);
}

/*
 * Do one piece of scheduled work (a run, kind 'r', or a refresh, kind 'a'):
 * claim() picks it in a short transaction; a worker of its own does it
 * (process/runner.c), up to retl.max_parallel_runs at once; with none free
 * (or retl.max_parallel_runs 0) this worker does it, in a transaction of
 * its own, and records an error in a new transaction.  A failure is never
 * fatal to the worker.
 */
static void
scheduled(const char *what, char kind, bool (*claim) (int64 *id, int *sync_id, bool *send))
{
	int64		id;
	int			sync_id = 0;
	bool		send = true;
	bool		found;
	MemoryContext cxt = CurrentMemoryContext;

	ScheduledClaim c = {claim, &id, &sync_id, &send, false};
	ErrorData  *edata;

	retl_begin_txn();
	pgstat_report_activity(STATE_RUNNING, what);
	if (!retl_lock_extension())
		retl_worker_exit_without_extension();
	/* a claim that fails (a schedule's arithmetic) is logged, never fatal */
	edata = retl_in_subtransaction(claim_scheduled, &c);
	retl_end_txn();
	if (edata != NULL)
	{
		ereport(WARNING, (errmsg("retl could not take the next %s: %s", what, edata->message)));
		FreeErrorData(edata);
		return;
	}
	found = c.found;
	if (!found)
		return;
	if (retl_max_parallel_runs > 0 && retl_runner_launch(kind, id, sync_id, send))
	{
		/* a runner does it: a drop waits for its transaction instead */
		if (sync_id != 0)
			retl_sync_release(sync_id);
		return;
	}

	PG_TRY();
	{
		retl_begin_txn();
		pgstat_report_activity(STATE_RUNNING, what);
		if (!retl_lock_extension())
			retl_worker_exit_without_extension();
		retl_runner_work(kind, id, sync_id, send);
		retl_end_txn();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		ereport(LOG, (errmsg("retl %s " INT64_FORMAT " failed: %s", what, id, edata->message)));
		retl_begin_txn();
		retl_runner_failed(kind, id, sync_id, edata->message);
		retl_end_txn();
		FreeErrorData(edata);
	}
	PG_END_TRY();
	if (sync_id != 0)
		retl_sync_release(sync_id);
}

/*
 * The catalog generation the queue was last swept at (queue/sweep.c); none
 * yet: the first prune sweeps.
 */
static uint64 swept_gen = PG_UINT64_MAX;

/* Runs left 'running' that the worker's start could not end yet. */
static bool runs_unrecovered = false;

/*
 * At the worker's start, in a transaction: end the runs a previous worker
 * left 'running' (runs.c), but for those in runners' hands; those of syncs
 * being dropped are ended later, at a prune.
 */
void
retl_worker_recover_runs(void)
{
	runs_unrecovered = !retl_runs_recover(retl_runners_runs());
}

static void
prune_work(void *arg)
{
	uint64		gen = *(uint64 *) arg;

	retl_runs_prune(0);
	if (runs_unrecovered)
		retl_worker_recover_runs();

	/* once after each change of the catalog: a drop may have left rows */
	if (gen != swept_gen)
	{
		uint64		n = retl_queue_sweep();

		if (n > 0)
			ereport(LOG,
					(errmsg("retl deleted " UINT64_FORMAT " queued rows of dropped syncs", n)));
		swept_gen = gen;
	}
}

/*
 * Keep retl.runs to retl.run_history, and delete the queue rows of dropped
 * syncs; a failure is logged, never fatal.
 */
void
retl_worker_prune_runs(void)
{
	ErrorData  *edata;
	uint32		queued[RETL_QUEUE_BUCKETS];
	uint64		gen = retl_database_generations(queued);	/* before the snapshot */

	retl_begin_txn();
	pgstat_report_activity(STATE_RUNNING, "pruning retl.runs");
	if (!retl_lock_extension())
		retl_worker_exit_without_extension();
	edata = retl_in_subtransaction(prune_work, &gen);
	retl_end_txn();
	if (edata != NULL)
	{
		ereport(WARNING, (errmsg("retl could not prune retl.runs: %s", edata->message)));
		FreeErrorData(edata);
	}
}

/*
 * Record the end of the runs and refreshes whose runners died, and free
 * their slots (a runner that ends frees its own); a transaction only when
 * a slot of this database is taken by a run or a refresh.
 */
static void
reap_runners(void)
{
	if (retl_runner_count(MyDatabaseId) == 0)
		return;
	retl_begin_txn();
	pgstat_report_activity(STATE_RUNNING, "looking at runs in workers of their own");
	if (!retl_lock_extension())
		retl_worker_exit_without_extension();
	(void) retl_runners_reap();
	retl_end_txn();
}

/* As many runs and refreshes as retl.max_parallel_runs allow are at work. */
static bool
runners_full(void)
{
	return retl_max_parallel_runs > 0 && retl_runner_count(MyDatabaseId) >= retl_max_parallel_runs;
}

static bool
refresh_claim(int64 *id, int *sync_id, bool *send)
{
	int			audience_id;

	if (!retl_audiences_claim(&audience_id))
		return false;
	*id = audience_id;
	return true;
}

/*
 * Start the runs and refreshes that are due, as many as
 * retl.max_parallel_runs allow, after freeing the slots of those that
 * ended.
 */
void
retl_worker_scheduled(void)
{
	reap_runners();
	if (!runners_full())
		scheduled("refresh of audience", 'a', refresh_claim);
	if (!runners_full())
		scheduled("run", 'r', retl_runs_claim);
}
