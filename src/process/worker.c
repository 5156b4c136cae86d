/*
 * worker.c: the per-database worker ("retl worker").
 *
 * The launcher starts one per database.  Each iteration of its loop:
 *
 *   1. takes the finished requests (answers.c), and hands requests
 *      claimed ahead to the slots they freed, with no transaction open
 *      (parts.c);
 *   2. records the outcomes of the finished requests (one short
 *      transaction; while requests claimed ahead wait for slots, 2xx
 *      answers are recorded together a few passes later: answers.c);
 *   3. for every active sync, claims as many batches as its destination's
 *      free slots take, and the next rounds ahead, building their requests
 *      (one short transaction, one subtransaction per sync so a broken
 *      sync only marks itself failing: claims.c), unless step 1 found
 *      nothing for it to do;
 *   4. hands the new requests to libcurl, with no transaction open;
 *   5. waits on its latch and libcurl's sockets together.
 *
 * Nothing is held between iterations: no transaction, snapshot or lock,
 * so DROP EXTENSION, VACUUM and DDL on source tables never wait for a slow
 * destination.  The worker exits when the extension is dropped; the launcher
 * starts it again on CREATE EXTENSION.  Each iteration's allocations go in a
 * memory context reset every time, so its size stays flat.
 */
#include "postgres.h"

#include <signal.h>
#include <time.h>

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "base/identity.h"
#include "base/shmem.h"
#include "base/version.h"
#include "capture/stream.h"
#include "connectors/oauth.h"
#include "delivery/http.h"
#include "delivery/stats.h"
#include "models/runs.h"
#include "process/runner.h"
#include "process/txn.h"
#include "process/worker.h"
#include "queue/jobs.h"
#include "queue/queue.h"

static RetlDbState exit_state = RETL_DB_RESTART;
static bool served = false;		/* found the extension at least once */
static Oid	worker_dboid = InvalidOid;

/*
 * A stop (SIGTERM: a fast or smart shutdown, pg_terminate_backend).  The
 * next worker sends again what this one had in flight or had answered
 * without recording it (up to UNRECORDED_MAX 2xx answers, below), and
 * reads again the backfill ranges answered since its cursor last moved: a
 * stop by die() at once made every restart of the server send some
 * records twice, where duplicates belong to crashes only (DESIGN.md).  So
 * in the loop a SIGTERM only asks it to stop: the pass under way ends,
 * and worker_stop() waits up to STOP_WAIT_MS for the requests in flight,
 * records every answer, moves the backfills' cursors, and exits.  A pass
 * that does not end within STOP_GRACE_S (a lock that a claim waits for,
 * a run of a model in this worker, a slow function of a sync's mapping)
 * is stopped then as die() stops it, by a timer's SIGUSR2 (which a DROP
 * or ALTER DATABASE sends if the worker has not left 2 s after its
 * SIGTERM: process/utility.c).  Before the loop (starting) a SIGTERM stops
 * the worker at once.
 */
static volatile sig_atomic_t stop_requested = false;
static volatile sig_atomic_t stop_at_once = true;
static timer_t stop_timer;
static volatile sig_atomic_t stop_timer_made = false;

#define STOP_WAIT_MS 2000
#define STOP_GRACE_S 10

static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (stop_at_once)
		die(postgres_signal_arg);
	else
	{
		if (!stop_requested && stop_timer_made)
		{
			struct itimerspec grace = {{0, 0}, {STOP_GRACE_S, 0}};

			/* (timer_settime is async-signal-safe) */
			(void) timer_settime(stop_timer, 0, &grace, NULL);
		}
		stop_requested = true;
		SetLatch(MyLatch);
	}
	errno = save_errno;
}

/* SIGUSR2: stop at once (see above) */
static void
worker_stop_now(SIGNAL_ARGS)
{
	die(postgres_signal_arg);
}

/* The timer that stops a pass that outlasts STOP_GRACE_S after a SIGTERM */
static void
make_stop_timer(void)
{
	struct sigevent ev;

	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = SIGEV_SIGNAL;
	ev.sigev_signo = SIGUSR2;
	if (timer_create(CLOCK_MONOTONIC, &ev, &stop_timer) == 0)
		stop_timer_made = true;
	else
		ereport(LOG,
				(errmsg("retl worker could not create its stop timer: %m"),
				 errdetail("A stop waits for the pass under way to end, however long it takes.")));
}

/* Has a SIGTERM asked the loop to stop (answers.c records every answer then)? */
bool
retl_worker_stopping(void)
{
	return stop_requested;
}

/* Leave the database's slot, telling the launcher what to do next. */
static void
worker_detach(int code, Datum arg)
{
	RetlDbSlot *slot;

	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	slot = retl_find_slot(worker_dboid);
	if (slot && slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->latch = NULL;
		if (slot->state != RETL_DB_HOLD)
		{
			if (exit_state == RETL_DB_IDLE && !slot->start_requested)
				slot->state = RETL_DB_IDLE;
			else
			{
				slot->state = RETL_DB_RESTART;
				slot->not_before = slot->start_requested ? 0 :
					TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
			}
		}
	}
	LWLockRelease(retl_shared->lock);
	retl_stats_forget(worker_dboid);
	retl_wake_launcher();
}

/* Claim the database's slot; false if another worker already serves it. */
static bool
worker_attach(Oid dboid)
{
	RetlDbSlot *slot;
	bool		ok = false;

	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	slot = retl_find_or_add_slot(dboid);
	if (slot && slot->pid == 0 && slot->state != RETL_DB_HOLD)
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		slot->state = RETL_DB_RUNNING;
		slot->start_requested = false;
		ok = true;
	}
	LWLockRelease(retl_shared->lock);
	return ok;
}


/*
 * The extension was dropped: leave quietly; CREATE EXTENSION starts us
 * again.  Its logical slot goes with it, so it never holds WAL for nothing;
 * when it was created again meanwhile (process/txn.c), only if none of the
 * new one's syncs reads it.
 */
void
retl_worker_exit_without_extension(void)
{
	retl_stream_drop_slot(OidIsValid(get_extension_oid("retl", true)));
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	/* a probe of a database without retl is routine; a DROP EXTENSION is news */
	ereport(served ? LOG : DEBUG1,
			(errmsg("retl worker stopping: extension \"retl\" is not installed in this database")));
	exit_state = RETL_DB_IDLE;
	proc_exit(0);
}

/*
 * The extension in this database must be the version this library serves
 * (a new library installed before ALTER EXTENSION retl UPDATE): until it
 * is, the worker waits and says so, sending nothing.
 */
static void
wait_for_version(void)
{
	bool		said = false;

	for (;;)
	{
		char	   *version;

		retl_begin_txn();
		if (!retl_lock_extension())
			retl_worker_exit_without_extension();
		if (SPI_execute("SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'retl'",
						true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "retl: could not read the extension's version");
		version = MemoryContextStrdup(TopMemoryContext,
									  SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		retl_end_txn();
		if (version != NULL && strcmp(version, RETL_VERSION) == 0)
			return;
		if (!said)
			ereport(WARNING,
					(errmsg("retl worker waits: extension \"retl\" is version %s in this database, the library is %s",
							version ? version : "?", RETL_VERSION),
					 errhint("Run ALTER EXTENSION retl UPDATE in this database.")));
		said = true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 2000,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Does a command on the database wait for the worker to leave (utility.c)? */
static bool
held_by_command(void)
{
	RetlDbSlot *slot;
	bool		held;

	LWLockAcquire(retl_shared->lock, LW_SHARED);
	slot = retl_find_slot(worker_dboid);
	held = slot != NULL && slot->state == RETL_DB_HOLD;
	LWLockRelease(retl_shared->lock);
	return held;
}

/*
 * Stop, asked by a SIGTERM in the loop (worker_sigterm): the requests in
 * flight have up to STOP_WAIT_MS to be answered (none when a DROP or ALTER
 * DATABASE waits for the worker to leave), then every answer is recorded,
 * the 2xx ones that would wait included; the requests claimed ahead, and
 * those still unanswered, give their records back, as at a pause, and the
 * backfills' cursors move past the ranges answered or given back
 * (claims.c).  Nothing new starts.  What was unanswered is sent again by
 * the next worker.
 */
static void
worker_stop(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   held_by_command() ? 0 : STOP_WAIT_MS);
	List	   *answers;
	List	   *split;
	int			unanswered;

	pgstat_report_activity(STATE_RUNNING, "stopping: waiting for the requests in flight");
	while (retl_http_in_flight() > 0 && GetCurrentTimestamp() < deadline)
	{
		CHECK_FOR_INTERRUPTS();
		retl_http_poll(10, PG_WAIT_EXTENSION);
	}
	unanswered = retl_http_in_flight();
	retl_worker_collect_answers(&answers, &split);
	retl_worker_record_outcomes(answers, split);
	retl_worker_settle_backfills(retl_http_abandon());
	if (unanswered > 0)
		ereport(LOG,
				(errmsg("retl worker stopping with %d requests unanswered", unanswered),
				 errdetail("Their records stay queued; the next worker sends them again.")));
	proc_exit(0);
}

/* Hand requests to libcurl, and free their list (of TopMemoryContext). */
static void
start_requests(List *requests)
{
	ListCell   *lc;

	foreach(lc, requests)
	{
		RetlRequest *req = lfirst(lc);

		retl_http_start(req);
		if (req->sync_id != 0)
			retl_stats_request_started(req);
	}
	list_free(requests);
}

/* How often old runs are pruned and the queue swept (scheduled.c). */
#define RUN_PRUNE_INTERVAL_MS 10000

/*
 * The shortest time between two passes when commits keep waking the worker.
 * A change waits for the next pass, half of it on average: at 5 ms the
 * capture-to-2xx latency at 1,000 changes/s was p50 5.2 ms, p99 12-15 ms;
 * at 2 ms 3.4 / 7.1 ms, for 45% more of the worker's CPU at that rate (at
 * 1 ms 2.5 / 6.5 ms, 78% more).
 */
#define PASS_MIN_MS 2

void
retl_worker_main(Datum main_arg)
{
	MemoryContext loop_cxt;
	TimestampTz last_scheduled = 0;
	TimestampTz last_pruned = 0;
	TimestampTz pass_started;

	worker_dboid = DatumGetObjectId(main_arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	pqsignal(SIGUSR2, worker_stop_now);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(worker_dboid, InvalidOid, 0);

	if (!worker_attach(worker_dboid))
	{
		ereport(LOG, (errmsg("retl worker for this database is already running")));
		proc_exit(0);
	}
	before_shmem_exit(worker_detach, (Datum) 0);

	/*
	 * Each statement of the worker's sees what committed before it, from
	 * its first transaction on (a database's default of repeatable read
	 * would keep the snapshot a transaction began with: the outcome's
	 * snapshot taken after the drop locks, sync/dropping.c, would be the
	 * old one).
	 */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_USERSET, PGC_S_SESSION);

	wait_for_version();
	retl_begin_txn();
	if (!retl_lock_extension())
		retl_worker_exit_without_extension();
	served = true;
	/* runs still at work in workers of their own are not interrupted */
	retl_worker_recover();
	retl_queue_load_backoff();
	retl_jobs_load();
	retl_end_txn();

	/*
	 * The queue's statistics lag far behind its size (it fills and drains
	 * within seconds), and with a stale "few rows" estimate the planner
	 * reads a sync's whole backlog through a bitmap scan at every claim.
	 * Every query of this session reads the queue or a source table by an
	 * index, so bitmap scans are never what it wants.
	 */
	SetConfigOption("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION);

	/*
	 * Nor is JIT compilation: each statement reads at most a few thousand
	 * rows by an index, but a generic plan's estimate can be the whole
	 * table (a read of source rows by ranges of their key: 20M rows
	 * estimated, 1,000 read), and compiling it took 118 ms where running
	 * it took 1.
	 */
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);

	/*
	 * The worker's commits need not wait for the WAL flush: a commit lost
	 * in a crash (a claim, an outcome, a run's changes with its snapshot)
	 * only makes the worker send something again or redo a run, never
	 * lose a change, since what it has not committed stays queued.  (The
	 * one exception, changes staged from logical decoding, whose position
	 * is then confirmed to the slot, flushes its commit first: staging.c.)
	 */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);

	/*
	 * Logical capture keeps what a large transaction in progress has for
	 * retl in temporary files (capture/spool.c), as the reorder buffer
	 * keeps what it spills in pg_replslot: no limit on them either, or a
	 * transaction with more would stop the database's capture for good.
	 */
	SetConfigOption("temp_file_limit", "-1", PGC_SUSET, PGC_S_SESSION);

	/*
	 * The worker runs as the bootstrap superuser: none of its statements
	 * may resolve a name or an operator in a schema a user can write.  Code
	 * of a sync's owner that it runs (a query, a policy) cannot change this
	 * for the statements after it (retl_begin_as() undoes its settings).
	 */
	SetConfigOption("search_path", RETL_SAFE_PATH, PGC_USERSET, PGC_S_SESSION);

	retl_http_init();
	ereport(LOG, (errmsg("retl worker started")));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "retl worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	/* from here a SIGTERM lets the loop stop (worker_stop) */
	make_stop_timer();
	stop_at_once = false;
	for (;;)
	{
		List	   *answers;
		List	   *split;
		bool		claim;
		bool		more = false;
		bool		full = false;
		long		timeout;

		pass_started = GetCurrentTimestamp();
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		if (stop_requested)
			worker_stop();

		/*
		 * The slots the answers freed take requests claimed ahead first,
		 * without a transaction (libcurl sends them at the wait below, as
		 * it does the claim's: process/parts.c)
		 */
		retl_worker_collect_answers(&answers, &split);
		timeout = retl_poll_interval_ms;
		claim = false;
		if (!stop_requested)
			start_requests(retl_worker_start_parts(&claim, &full, &timeout));
		retl_worker_record_outcomes(answers, split);
		if (!stop_requested)
			retl_worker_stage_stream();
		if (claim && !stop_requested)
			start_requests(retl_worker_claim(&more, &full, &timeout));
		retl_stats_publish(MyDatabaseId);
		/* runs and refreshes are due at most a few times a second */
		if (!stop_requested &&
			TimestampDifferenceExceeds(last_scheduled, GetCurrentTimestamp(), 200))
		{
			retl_worker_scheduled();
			last_scheduled = GetCurrentTimestamp();
		}
		if (!stop_requested &&
			TimestampDifferenceExceeds(last_pruned, GetCurrentTimestamp(), RUN_PRUNE_INTERVAL_MS))
		{
			retl_worker_prune_runs();
			last_pruned = GetCurrentTimestamp();
		}

		/* busy while backfilling; else until a limit or a linger runs out */
		if (more)
			timeout = 0;
		/* or until logical staging is due */
		timeout = Min(timeout, retl_stream_wait_ms());
		/* or until answers left to a drop in progress or unrecorded are due */
		timeout = retl_worker_answers_wait(timeout);
		retl_http_wait(timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);

		/*
		 * Commits keep setting the latch under a busy writer: pass at most
		 * every PASS_MIN_MS, letting libcurl progress meanwhile, so the
		 * worker batches what accumulated instead of spinning.  Not when
		 * the pass filled every slot of a destination and every request
		 * has already been answered with a 2xx: a backlog waits for those
		 * slots, and nothing is left to batch.  (A receiver on the
		 * worker's own CPU answers each request before the next is sent:
		 * the worker then slept 2 ms of every 2.5, 8 records a pass with
		 * batch_size 1.)  Nor when requests claimed ahead wait and every
		 * request the pass started has been answered with a 2xx: the slots
		 * are free for them (a fast receiver answers each request before
		 * the pass starts the next, so the slots never fill; the worker
		 * slept 2 ms of every 4-5).  A destination that fails at once
		 * (refused connections) is still tried no faster than before.
		 */
		if (!more && !stop_requested &&
			!((full || (retl_parts_any() && retl_http_answered())) &&
			  retl_http_in_flight() == 0 && retl_http_done_ok()) &&
			!TimestampDifferenceExceeds(pass_started, GetCurrentTimestamp(), PASS_MIN_MS))
			retl_http_poll(PASS_MIN_MS, PG_WAIT_EXTENSION);
	}
}
