/*
 * runs.c: what backends ask of runs in workers of their own: their
 * progress (for the view retl.runs) and their cancelling.
 *
 * The runner slots are in shared memory (base/shmem.c), read and written
 * under retl_shared->lock; nothing here waits on anything else.
 */
#include "postgres.h"

#include <signal.h>

#include "funcapi.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "base/progress.h"
#include "base/shmem.h"
#include "base/visible.h"

PG_FUNCTION_INFO_V1(retl_run_tick);
PG_FUNCTION_INFO_V1(retl_run_progress);
PG_FUNCTION_INFO_V1(retl_signal_run);

/*
 * retl._run_tick(): true; counts a row of a run's query (called in the
 * query's WHERE), published to retl.runs in a runner.
 */
Datum
retl_run_tick(PG_FUNCTION_ARGS)
{
	retl_progress_tick();
	PG_RETURN_BOOL(true);
}

/*
 * retl._run_progress(): the runs of this database in workers of their
 * own that the caller may see (base/visible.c): run_id, phase, rows_read,
 * pid.
 */
Datum
retl_run_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RetlRunSlot copy[RETL_RUNNER_SLOTS];
	int			n = 0;
	RetlVisible *visible;
	Oid			extension = get_extension_oid("retl", false);

	InitMaterializedSRF(fcinfo, 0);
	visible = retl_visible_ids("SELECT r.id FROM retl.run_store r"
							   " WHERE r.status OPERATOR(pg_catalog.=) 'running'");
	LWLockAcquire(retl_shared->lock, LW_SHARED);
	for (int i = 0; i < RETL_RUNNER_SLOTS; i++)
	{
		RetlRunSlot *s = &retl_shared->runners[i];

		/* (not a run of the extension before a DROP and CREATE EXTENSION) */
		if (s->dboid == MyDatabaseId && s->extension == extension && s->kind == 'r')
			copy[n++] = *s;
	}
	LWLockRelease(retl_shared->lock);
	for (int i = 0; i < n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		if (!retl_visible(visible, copy[i].id))
			continue;
		values[0] = Int64GetDatum(copy[i].id);
		values[1] = CStringGetTextDatum(copy[i].phase);
		values[2] = Int64GetDatum(copy[i].rows);
		values[3] = Int32GetDatum((int32) copy[i].pid);
		nulls[3] = copy[i].pid == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * retl._signal_run(run): ask the worker of a run of this database to stop
 * (a query cancel: the run's transaction is rolled back and the run marked
 * cancelled).  False when no worker of its own runs it.
 */
Datum
retl_signal_run(PG_FUNCTION_ARGS)
{
	int64		run = PG_GETARG_INT64(0);
	int			failed = 0;
	bool		found = false;
	Oid			extension = get_extension_oid("retl", false);

	/*
	 * Signalled under the lock: a runner's next run is handed to it under
	 * the lock too, so the cancel reaches this run's, not the next.
	 */
	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < RETL_RUNNER_SLOTS && !found; i++)
	{
		RetlRunSlot *s = &retl_shared->runners[i];

		if (s->dboid == MyDatabaseId && s->extension == extension && s->kind == 'r' &&
			s->id == run)
		{
			s->cancel = true;
			found = true;
			/* one not started yet sees the flag when it starts */
			if (s->pid > 0 && kill(s->pid, SIGINT) != 0 && errno != ESRCH)
				failed = errno;
		}
	}
	LWLockRelease(retl_shared->lock);
	if (failed != 0)
	{
		errno = failed;
		ereport(WARNING,
				(errmsg("could not signal the worker of run " INT64_FORMAT ": %m", run)));
	}
	PG_RETURN_BOOL(found);
}
