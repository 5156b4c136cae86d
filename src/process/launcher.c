/*
 * launcher.c: the launcher background worker ("retl launcher").
 *
 * Registered at postmaster start, it connects to no database (shared
 * catalogs only).  It scans pg_database every retl.database_scan_interval_ms
 * and starts a worker for every database that might have retl; a worker
 * that finds no extension leaves its slot IDLE and exits, and is started
 * again only when CREATE EXTENSION asks for it (retl._start_worker() sets
 * start_requested and wakes the launcher at commit).  A worker that exits
 * with an error is started again after a second.  Template databases and
 * databases that refuse connections get no worker, so CREATE DATABASE is
 * never blocked by one.
 *
 * Worker states live in shared memory (shmem.c); the launcher keeps only
 * the handles of the workers it registered.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "base/guc.h"
#include "base/shmem.h"
#include "process/launcher.h"
#include "process/worker.h"

static BackgroundWorkerHandle **handles = NULL;
static bool out_of_slots_logged = false;

/* Register the launcher; called from _PG_init while preloading. */
void
retl_launcher_register(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "retl");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "retl_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "retl launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "retl launcher");
	RegisterBackgroundWorker(&bgw);
}

static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	if (retl_shared->launcher_pid == MyProcPid)
	{
		retl_shared->launcher_pid = 0;
		retl_shared->launcher_latch = NULL;
	}
	LWLockRelease(retl_shared->lock);
}

/* Oids of the databases a worker may serve. */
static List *
scan_databases(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext cxt = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (db->datistemplate || !db->datallowconn || db->datconnlimit == -2)
			continue;
		old = MemoryContextSwitchTo(cxt);
		dbs = lappend_oid(dbs, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return dbs;
}

/*
 * A background worker of retl's, started by this process for a database
 * (its workers, their runners): function(main_arg) of the library, never
 * restarted by the postmaster, its start and stop told to this process.
 * The caller names it (bgw_name).
 */
void
retl_dynamic_worker(BackgroundWorker *bgw, const char *function, const char *type, Datum main_arg)
{
	memset(bgw, 0, sizeof(*bgw));
	bgw->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw->bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw->bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw->bgw_library_name, BGW_MAXLEN, "retl");
	snprintf(bgw->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(bgw->bgw_type, BGW_MAXLEN, "%s", type);
	bgw->bgw_main_arg = main_arg;
	bgw->bgw_notify_pid = MyProcPid;
}

static bool
start_worker(int i, Oid dboid)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	retl_dynamic_worker(&bgw, "retl_worker_main", "retl worker", ObjectIdGetDatum(dboid));
	snprintf(bgw.bgw_name, BGW_MAXLEN, "retl worker for database %u", dboid);

	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
	{
		if (!out_of_slots_logged)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("retl launcher could not start a worker for database %u: no background worker slot is free", dboid),
					 errhint("Raise max_worker_processes (one retl worker per database with the extension, plus the launcher).")));
		out_of_slots_logged = true;
		return false;
	}
	out_of_slots_logged = false;
	if (handles[i])
		pfree(handles[i]);
	handles[i] = handle;
	return true;
}

/*
 * Bring every slot in line with the databases; dbs is NIL when no scan
 * was made this time.  Returns how long to sleep at most.
 */
static long
reconcile(List *dbs, bool scanned)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = retl_database_scan_interval_ms;
	bool		out_of_workers = false;
	ListCell   *lc;

	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);

	/* New databases get a worker, which checks for the extension. */
	foreach(lc, dbs)
	{
		Oid			dboid = lfirst_oid(lc);
		RetlDbSlot *slot = retl_find_slot(dboid);

		if (slot == NULL)
		{
			slot = retl_find_or_add_slot(dboid);
			if (slot == NULL)
				break;
			slot->state = RETL_DB_RESTART;
			slot->not_before = 0;
		}
	}

	for (int i = 0; i < retl_shared->nslots; i++)
	{
		RetlDbSlot *slot = &retl_shared->slots[i];
		pid_t		pid;

		if (slot->state == RETL_DB_FREE)
			continue;

		/* Gone databases free their slot once no worker is attached. */
		if (scanned && !list_member_oid(dbs, slot->dboid) && slot->pid == 0 &&
			slot->state != RETL_DB_STARTING)
		{
			slot->state = RETL_DB_FREE;
			continue;
		}

		/* A worker that died before attaching is started again later. */
		if (slot->state == RETL_DB_STARTING && handles[i] &&
			GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
		{
			slot->state = RETL_DB_RESTART;
			slot->not_before = TimestampTzPlusMilliseconds(now, 1000);
		}

		if (slot->state == RETL_DB_IDLE && slot->start_requested)
		{
			slot->state = RETL_DB_RESTART;
			slot->not_before = 0;
		}
		if (slot->state == RETL_DB_HOLD && now >= slot->not_before)
		{
			slot->state = RETL_DB_RESTART;
			slot->not_before = 0;
		}

		if (slot->state == RETL_DB_RESTART)
		{
			if (now >= slot->not_before)
			{
				if (start_worker(i, slot->dboid))
					slot->state = RETL_DB_STARTING;
				else
				{
					slot->not_before = TimestampTzPlusMilliseconds(now, 5000);
					out_of_workers = true;
				}
			}
			else
			{
				long		secs;
				int			usecs;

				TimestampDifference(now, slot->not_before, &secs, &usecs);
				sleep_ms = Min(sleep_ms, secs * 1000 + usecs / 1000 + 1);
			}
		}
		if (slot->state == RETL_DB_STARTING || slot->state == RETL_DB_HOLD)
			sleep_ms = Min(sleep_ms, 1000);
	}
	LWLockRelease(retl_shared->lock);
	/* idle runners give their background worker slots back for the next try */
	if (out_of_workers && retl_runner_release_idle(InvalidOid) > 0)
		sleep_ms = Min(sleep_ms, 1000);
	return sleep_ms;
}

void
retl_launcher_main(Datum main_arg)
{
	TimestampTz last_scan = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	handles = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(BackgroundWorkerHandle *) * retl_shared->nslots);

	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	retl_shared->launcher_pid = MyProcPid;
	retl_shared->launcher_latch = MyLatch;
	LWLockRelease(retl_shared->lock);
	before_shmem_exit(launcher_detach, (Datum) 0);

	ereport(LOG, (errmsg("retl launcher started")));

	for (;;)
	{
		List	   *dbs = NIL;
		bool		scan;
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		scan = TimestampDifferenceExceeds(last_scan, GetCurrentTimestamp(),
										  retl_database_scan_interval_ms);
		if (scan)
		{
			dbs = scan_databases();
			last_scan = GetCurrentTimestamp();
		}
		sleep_ms = reconcile(dbs, scan);
		list_free(dbs);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
