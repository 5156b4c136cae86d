/*
 * scheduled.c: the database worker's scheduled work: runs of diff syncs
 * and refreshes of audiences, each started in a worker of its own
 * (runner.c) or, with none free, done by the database's worker itself;
 * and keeping retl.runs to retl.run_history.
 */
#include "postgres.h"

#include "access/xact.h"
#include "pgstat.h"
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
#include "sync/dropping.h"
#include "sync/expr.h"

/* The claim of the next run or refresh, in a subtransaction */
typedef struct ScheduledClaim
{
	bool		(*claim) (int64 *id, int *sync_id, bool *send);
	int64	   *id;
	int		   *sync_id;
	bool	   *send;
	bool		found;
	bool		kept;			/* the run's sync's drop lock, for the session */
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
	if (c->found && *c->sync_id != 0)
	{
		if (!retl_sync_keep(*c->sync_id))
			elog(ERROR, "retl: sync %d is being dropped", *c->sync_id);
		c->kept = true;
	}
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

	ScheduledClaim c = {claim, &id, &sync_id, &send, false, false};
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
		/* (a session's lock outlives the subtransaction's abort) */
		if (c.kept)
			retl_sync_release(sync_id);
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
		if (c.kept)
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
		retl_name_expression(edata);
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		ereport(LOG, (errmsg("retl %s " INT64_FORMAT " failed: %s", what, id, edata->message)));
		retl_begin_txn();
		retl_runner_failed(kind, id, sync_id, edata->message);
		retl_end_txn();
		FreeErrorData(edata);
	}
	PG_END_TRY();
	if (c.kept)
		retl_sync_release(sync_id);
}

/*
 * The catalog generation the queue was last swept at (queue/sweep.c); none
 * yet: the first prune sweeps.
 */
static uint64 swept_gen = PG_UINT64_MAX;

/*
 * Work a previous worker left that this one could not finish at its start:
 * runs left 'running', in-flight rows, of syncs being dropped then (the
 * worker never waits for a drop); also runs of dead runners whose syncs
 * were being dropped.  Done at a later prune.
 */
static bool recovery_pending = false;

/*
 * In a transaction: end the runs a previous worker (or a dead runner) left
 * 'running' but for those in runners' hands (runs.c), and release the
 * queue rows it left in flight (queue.c).  What belongs to syncs being
 * dropped is left for a later prune.
 */
void
retl_worker_recover(void)
{
	bool		rows = retl_queue_recover();
	bool		runs = retl_runs_recover(retl_runners_runs());

	recovery_pending = !(rows && runs);
}

/* Something to recover at the next prune (a dead runner's run). */
void
retl_worker_recover_later(void)
{
	recovery_pending = true;
}

static void
prune_work(void *arg)
{
	retl_runs_prune(0);
}

static void
recover_work(void *arg)
{
	retl_worker_recover();
}

static void
sweep_work(void *arg)
{
	uint64		n = retl_queue_sweep();

	if (n > 0)
		ereport(LOG,
				(errmsg("retl deleted " UINT64_FORMAT " queued rows of dropped syncs", n)));
}

/*
 * Keep retl.runs to retl.run_history, finish what recovery left, and
 * delete the queue rows of dropped syncs, each in a subtransaction of its
 * own: a failure is logged, never fatal, and does not keep the others from
 * running.
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
	edata = retl_in_subtransaction(prune_work, NULL);
	if (edata != NULL)
	{
		ereport(WARNING, (errmsg("retl could not prune retl.runs: %s", edata->message)));
		FreeErrorData(edata);
	}
	if (recovery_pending)
	{
		edata = retl_in_subtransaction(recover_work, NULL);
		if (edata != NULL)
		{
			/* (recovery_pending is as it was: tried again at the next prune) */
			recovery_pending = true;
			ereport(WARNING, (errmsg("retl could not recover interrupted work: %s", edata->message)));
			FreeErrorData(edata);
		}
	}
	/* once after each change of the catalog: a drop may have left rows */
	if (gen != swept_gen)
	{
		edata = retl_in_subtransaction(sweep_work, NULL);
		if (edata == NULL)
			swept_gen = gen;
		else
		{
			ereport(WARNING, (errmsg("retl could not sweep the queue: %s", edata->message)));
			FreeErrorData(edata);
		}
	}
	retl_end_txn();
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
