/*
 * runner.c: runs and refreshes in workers of their own ("retl run").
 *
 * A diff sync's run (its query evaluated, diffed against the snapshot, the
 * changes queued) or an audience's refresh can take minutes; done by the
 * database's worker, nothing else would be sent meanwhile.  So the worker
 * claims it (marks it running, a short transaction), takes a runner slot
 * in shared memory and hands it to a worker of its own: one of the
 * database's idle ones, or a new dynamic background worker, up to
 * retl.max_parallel_runs at work at once; it goes on delivering.  The
 * runner does the whole run in one transaction (a run is all or nothing:
 * the snapshot and the queue change together), records how it ended and
 * wakes the database's worker; then it waits up to retl.run_idle_timeout
 * for the database's next run, and exits.  A runner that stays keeps its
 * connection, its caches and the pages of shared memory it has mapped: a
 * fresh process maps each page of shared buffers it reads on its first
 * touch, which on a virtual machine was a quarter of a 1M-row diff run.
 * Idle runners give their background worker slots back when a worker (a
 * database's, or a run's) cannot be started without them.
 *
 * A runner that dies (killed, a crash) leaves its slot at work: the
 * database's worker sees its process gone (retl_runners_reap) and marks
 * the run failed (nothing of it was kept).  retl_cancel_run sets the
 * slot's cancel flag and sends the runner a query cancel: its transaction
 * is rolled back and the run marked cancelled.  With no slot or no
 * background worker free, the database's worker runs it itself, as before.
 */
#include "postgres.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <sys/resource.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "base/guc.h"
#include "base/identity.h"
#include "base/progress.h"
#include "base/shmem.h"
#include "connectors/connector.h"
#include "models/diff.h"
#include "models/runs.h"
#include "process/launcher.h"
#include "process/runner.h"
#include "process/txn.h"
#include "process/worker.h"
#include "queue/queue.h"
#include "sync/dropping.h"
#include "sync/expr.h"
#include "sync/sync.h"

/* a runner that has not started after this long never will */
#define RUNNER_START_TIMEOUT_MS 60000

static bool out_of_workers_logged = false;

/* The work of a run ('r') or a refresh ('a'), in the current transaction. */
void
retl_runner_work(char kind, int64 id, int sync_id, bool send)
{
	List	   *syncs;
	RetlRunCounts counts;
	RetlSync   *sync;
	bool		replace;

	if (kind == 'a')
	{
		retl_progress_phase("refreshing");
		retl_audience_refresh((int) id);
		return;
	}
	syncs = retl_sync_load(sync_id);
	if (syncs == NIL)
		ereport(ERROR, (errmsg("sync %d was dropped", sync_id)));
	sync = linitial(syncs);
	/* a resync of a sync whose destination replaces its set: a replace */
	replace = send && retl_connector(sync->kind)->replaces && retl_runs_resync(id);
	retl_diff_run(sync, send, replace, &counts);
	retl_progress_phase("committing");
	retl_runs_succeeded(id, sync, &counts);
}

/*
 * In a new transaction: a run or refresh that failed (a run that had
 * recorded its end keeps it).
 */
void
retl_runner_failed(char kind, int64 id, int sync_id, const char *error)
{
	if (kind == 'a')
		retl_audience_failed((int) id, error);
	else
	{
		if (retl_runs_failed(id, sync_id, error))
			retl_queue_sync_error(sync_id, error);
	}
}

/*
 * Hand a claimed run or refresh to a worker of its own: an idle one of the
 * database, woken, or a new one; false when there is no runner slot or
 * background worker free (the caller runs it itself).
 */
bool
retl_runner_launch(char kind, int64 id, int sync_id, bool send)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	bool		reused;
	uint32		generation = 0;
	int			slot = retl_runner_take(MyDatabaseId, retl_extension_served(), kind, id, sync_id,
										send, &reused, &generation);

	if (slot < 0)
		return false;
	if (reused)
		return true;
	retl_dynamic_worker(&bgw, "retl_runner_main", "retl run", Int32GetDatum(slot));
	memcpy(bgw.bgw_extra, &generation, sizeof(generation));
	snprintf(bgw.bgw_name, BGW_MAXLEN, "retl run worker for database %u", MyDatabaseId);
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
	{
		retl_runner_free(slot);
		/* idle runners (of any database) give their slots back for the next try */
		(void) retl_runner_release_idle(InvalidOid);
		if (!out_of_workers_logged)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("retl worker runs the %s itself: no background worker slot is free for it",
							kind == 'a' ? "refresh" : "run"),
					 errdetail("Meanwhile nothing else of this database is sent."),
					 errhint("Raise max_worker_processes: retl takes one per database, one for its launcher, and up to retl.max_parallel_runs per database for runs.")));
		out_of_workers_logged = true;
		return false;
	}
	out_of_workers_logged = false;
	pfree(handle);
	return true;
}

/*
 * In the database's worker, in a transaction: record the end of the runs
 * whose runners died without recording it, and free their slots (a runner
 * that ends frees its own).  Returns how many runners of the database are
 * still at work.
 */
int
retl_runners_reap(void)
{
	int			busy = 0;
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < RETL_RUNNER_SLOTS; i++)
	{
		RetlRunSlot s;
		bool		dead;

		LWLockAcquire(retl_shared->lock, LW_SHARED);
		s = retl_shared->runners[i];
		LWLockRelease(retl_shared->lock);
		/* (a runner frees its slot itself, idle or at the end of its work) */
		if (s.dboid != MyDatabaseId || s.kind == 'i')
			continue;
		dead = s.pid > 0 ? (kill(s.pid, 0) != 0 && errno == ESRCH) :
			TimestampDifferenceExceeds(s.launched_at, now, RUNNER_START_TIMEOUT_MS);
		/* (a job of the extension before a DROP and CREATE EXTENSION: gone with it) */
		if (!dead && s.extension == retl_extension_served())
		{
			busy++;
			continue;
		}
		/* (unless it did meanwhile: the slot may be another job's by now) */
		if (!dead || !retl_runner_free_if(i, &s) || s.extension != retl_extension_served())
			continue;

		/*
		 * A run whose sync is being dropped is ended at a later prune (the
		 * drop deletes its row, and the worker never waits for it): it is
		 * in no runner's hands any more.
		 */
		if (s.kind == 'r' && retl_sync_dropping(s.sync_id))
		{
			retl_worker_recover_later();
			continue;
		}
		retl_runner_failed(s.kind, s.id, s.sync_id,
						   s.pid > 0 ?
						   "interrupted: the run's worker stopped before the run ended; nothing of it was kept" :
						   "the run's worker never started; nothing of it was done");
	}
	return busy;
}

/* The ids of this database's runs in runners (for the worker's start). */
List *
retl_runners_runs(void)
{
	List	   *ids = NIL;

	LWLockAcquire(retl_shared->lock, LW_SHARED);
	for (int i = 0; i < RETL_RUNNER_SLOTS; i++)
	{
		RetlRunSlot *s = &retl_shared->runners[i];

		if (s->dboid == MyDatabaseId && s->kind == 'r' && s->extension == retl_extension_served())
		{
			int64	   *id = palloc(sizeof(int64));

			*id = s->id;
			ids = lappend(ids, id);
		}
	}
	LWLockRelease(retl_shared->lock);
	return ids;
}

/*
 * Stop the idle runners of a database (DROP DATABASE and the commands that
 * need it without connections), waiting up to wait_ms for them to exit.
 */
void
retl_runners_stop_idle(Oid dboid, int wait_ms)
{
	if (retl_runner_release_idle(dboid) == 0)
		return;
	for (int waited = 0; waited < wait_ms; waited += 10)
	{
		bool		left = false;

		LWLockAcquire(retl_shared->lock, LW_SHARED);
		for (int i = 0; i < RETL_RUNNER_SLOTS && !left; i++)
			left = retl_shared->runners[i].dboid == dboid &&
				retl_shared->runners[i].kind == 'i';
		LWLockRelease(retl_shared->lock);
		if (!left)
			break;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
}

/* The work of a slot's run or refresh, in a transaction; how it ended recorded. */
static void
runner_job(RetlRunSlot *me)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		retl_begin_txn();
		pgstat_report_activity(STATE_RUNNING, me->kind == 'a' ? "refreshing an audience" : "running a sync");
		/* (a job of another retl than the one found: it was created again) */
		if (!retl_lock_extension() ||
			(OidIsValid(me->extension) && retl_extension_served() != me->extension))
			proc_exit(0);
		if (retl_progress_cancelled())
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("canceling the run: retl_cancel_run asked before it started")));
		retl_runner_work(me->kind, me->id, me->sync_id, me->send);
		retl_end_txn();
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		bool		cancelled = retl_progress_cancelled();

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		retl_name_expression(edata);
		AbortCurrentTransaction();
		/* a cancel request may arrive after the work: drop it */
		QueryCancelPending = false;
		MemoryContextSwitchTo(cxt);
		retl_begin_txn();
		if (cancelled && me->kind == 'r')
			retl_runs_cancelled(me->id);
		else
		{
			ereport(LOG, (errmsg("retl %s " INT64_FORMAT " failed: %s",
								 me->kind == 'a' ? "refresh of audience" : "run", me->id, edata->message)));
			retl_runner_failed(me->kind, me->id, me->sync_id, edata->message);
		}
		retl_end_txn();
		FreeErrorData(edata);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * After a job: make the slot idle and wait up to retl.run_idle_timeout for
 * the database's worker to hand it the next (*me, true); else free the
 * slot and return false.
 */
static bool
runner_next_job(RetlRunSlot *s, RetlRunSlot *me)
{
	TimestampTz since = GetCurrentTimestamp();
	RetlDbSlot *db;

	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	db = retl_find_slot(me->dboid);
	/* (not while a command waits for the database to have no connection) */
	if (retl_run_idle_timeout_s == 0 || (db != NULL && db->state == RETL_DB_HOLD))
	{
		s->dboid = InvalidOid;
		LWLockRelease(retl_shared->lock);
		retl_wake_database_worker(me->dboid);
		return false;
	}
	s->kind = 'i';
	s->id = 0;
	s->sync_id = 0;
	s->cancel = false;
	strlcpy(s->phase, "idle", sizeof(s->phase));
	s->rows = 0;
	LWLockRelease(retl_shared->lock);
	/* the database's worker sends what the job queued, and may hand over the next */
	retl_wake_database_worker(me->dboid);
#ifdef __GLIBC__
	/* the memory the job freed goes back to the system while waiting */
	(void) malloc_trim(0);
#endif

	for (;;)
	{
		long		left;

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		left = (long) retl_run_idle_timeout_s * 1000 -
			TimestampDifferenceMilliseconds(since, GetCurrentTimestamp());
		LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
		if (s->kind != 'i')
		{
			*me = *s;
			LWLockRelease(retl_shared->lock);
			/* a cancel of the job before, arriving late, is not this one's */
			QueryCancelPending = false;
			return true;
		}
		if (s->stopping || left <= 0)
		{
			s->dboid = InvalidOid;
			LWLockRelease(retl_shared->lock);
			return false;
		}
		LWLockRelease(retl_shared->lock);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();
	}
}

/* At exit: an idle runner's slot is free (one at work is the database worker's to reap). */
static void
runner_exit(int code, Datum arg)
{
	RetlRunSlot *s = &retl_shared->runners[DatumGetInt32(arg)];

	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	if (s->kind == 'i' && s->pid == MyProcPid)
		s->dboid = InvalidOid;
	LWLockRelease(retl_shared->lock);
}

/* A runner: runs and refreshes of one database, until none comes for a while. */
void
retl_runner_main(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	RetlRunSlot *s = &retl_shared->runners[slot];
	RetlRunSlot me;
	MemoryContext job_cxt;
	uint32		generation;
	bool		mine;

	pqsignal(SIGTERM, die);
	pqsignal(SIGINT, StatementCancelHandler);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));
	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	me = *s;
	/* (a slot given up on before this worker started may be another's by now) */
	mine = OidIsValid(me.dboid) && me.generation == generation && me.pid == 0;
	if (mine)
	{
		s->pid = MyProcPid;
		s->latch = MyLatch;
	}
	LWLockRelease(retl_shared->lock);
	if (!mine)
		proc_exit(0);
	retl_my_run = s;
	before_shmem_exit(runner_exit, Int32GetDatum(slot));

	/*
	 * A run is bulk work beside realtime delivery: with CPUs scarce, the
	 * database's worker (and every backend) comes first.  A nice value only
	 * lowers the share of CPU it gets when the CPUs are busy.
	 */
	if (retl_run_nice > 0 && setpriority(PRIO_PROCESS, 0, retl_run_nice) != 0)
		ereport(LOG,
				(errmsg("retl run could not lower its priority: %m")));
#ifdef __GLIBC__

	/*
	 * A run allocates and frees blocks of a megabyte again and again (a
	 * snapshot's chunks: each copied into its tuple, then into TOAST).
	 * glibc maps such a block anew, or returns the top of its heap to the
	 * system as soon as 2 MB are free there, so each block's pages were
	 * faulted in again (on a virtual machine a fault costs microseconds: a
	 * first run of 1M keys took 9,000 faults, 6,300-6,450 with this and
	 * snapshot.c's generic plan and in-place writes).  Blocks under 4 MB come
	 * from the heap, and up to 32 MB free at its top stay there during a
	 * job; larger blocks (a probe's arrays, advised to use huge pages) have
	 * mappings of their own, gone when freed.  The heap is trimmed when the
	 * runner waits for the next job (malloc_trim there).
	 */
	(void) mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	(void) mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
#endif
	BackgroundWorkerInitializeConnectionByOid(me.dboid, InvalidOid, 0);
	/* as the database's worker runs (see there) */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("search_path", RETL_SAFE_PATH, PGC_USERSET, PGC_S_SESSION);
	job_cxt = AllocSetContextCreate(TopMemoryContext, "retl run", ALLOCSET_DEFAULT_SIZES);

	do
	{
		MemoryContextSwitchTo(job_cxt);
		runner_job(&me);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(job_cxt);
	} while (runner_next_job(s, &me));
	proc_exit(0);
}
