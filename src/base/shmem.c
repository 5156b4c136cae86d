/*
 * shmem.c: shared memory of retl, and waking processes at commit.
 *
 * One slot per database records the state of its worker (see RetlDbState)
 * and the worker's latch, so that any backend can wake the worker when a
 * transaction that captured changes commits, and so that the launcher
 * knows which databases need a worker.  Every field of a slot is protected
 * by retl_shared->lock; nothing slow is ever done while holding it.
 *
 * Wake-ups are sent from a transaction callback at commit, never when the
 * change is made: a worker woken before commit would not see the change,
 * and a rolled back transaction must cost the worker nothing.  So is the
 * bump of a database's catalog generation, which tells its worker that the
 * syncs it keeps between passes (sync.c) must be read again: a trigger on
 * retl.syncs, retl.destinations and retl.destination_grants asks for it.
 * And so are the bumps of the queue counters of the syncs a transaction
 * queued changes for (a bucket of syncs each, advanced by the number of
 * changes): the worker claims nothing from a sync whose queue it found
 * empty until its counter moves (mark.c).  Those counters are atomics,
 * bumped with the lock held shared, as waking is: committing writers do
 * not queue behind each other for it.
 *
 * A commit wakes the worker only when a bucket's counter reaches the wake
 * point the worker set at the end of its last pass (retl_set_wake_points):
 * one change further when one of the bucket's syncs may have something to
 * send for it, as many as a lingering partial batch lacks when that is
 * all, never for paused syncs.  A busy writer no longer wakes the worker
 * at each commit for changes it will claim only when their linger runs
 * out: at 4,000 single-row commits a second into a sync with the default
 * linger, the worker took ~650 wake-ups and 10% of a CPU a second, which
 * the writers' TPS paid on two cores.  The worker sets the points, then
 * reads the counters again (a commit in between may have seen the old
 * ones); a committer advances its counter, then reads the point: one of
 * the two sees the other (both are full barriers).
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "base/guc.h"
#include "base/shmem.h"

RetlShared *retl_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Set in a transaction, acted upon when it commits. */
static bool wake_worker_at_commit = false;
static bool start_worker_at_commit = false;
static bool catalog_changed_at_commit = false;
/* the buckets of the syncs the transaction queued changes for, a bit each */
static uint64 queued_at_commit = 0;
static bool captured_at_commit = false;
/* and how many changes each of them got */
static uint32 rows_at_commit[RETL_QUEUE_BUCKETS];

#define ALL_BUCKETS (~UINT64CONST(0))

static Size
retl_shmem_size(void)
{
	return add_size(offsetof(RetlShared, slots),
					mul_size(retl_max_databases, sizeof(RetlDbSlot)));
}

static void
retl_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(retl_shmem_size());
	RequestNamedLWLockTranche("retl", 1);
}

static void
retl_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	retl_shared = ShmemInitStruct("retl", retl_shmem_size(), &found);
	if (!found)
	{
		memset(retl_shared, 0, retl_shmem_size());
		retl_shared->lock = &(GetNamedLWLockTranche("retl"))->lock;
		retl_shared->nslots = retl_max_databases;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Install the shared memory hooks; called from _PG_init while preloading. */
void
retl_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = retl_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = retl_shmem_startup;
}

/* The slot of a database, or NULL.  Caller holds retl_shared->lock. */
RetlDbSlot *
retl_find_slot(Oid dboid)
{
	for (int i = 0; i < retl_shared->nslots; i++)
	{
		if (retl_shared->slots[i].state != RETL_DB_FREE &&
			retl_shared->slots[i].dboid == dboid)
			return &retl_shared->slots[i];
	}
	return NULL;
}

/*
 * The slot of a database, taking a free one if it has none; NULL when all
 * are in use.  Caller holds retl_shared->lock exclusively.
 */
RetlDbSlot *
retl_find_or_add_slot(Oid dboid)
{
	RetlDbSlot *slot = retl_find_slot(dboid);

	if (slot)
		return slot;
	for (int i = 0; i < retl_shared->nslots; i++)
	{
		slot = &retl_shared->slots[i];
		if (slot->state == RETL_DB_FREE)
		{
			memset(slot, 0, sizeof(RetlDbSlot));
			slot->dboid = dboid;
			slot->state = RETL_DB_IDLE;
			for (int b = 0; b < RETL_QUEUE_BUCKETS; b++)
			{
				pg_atomic_init_u32(&slot->queued[b], 0);
				/* any change wakes a worker before its first pass */
				pg_atomic_init_u32(&slot->wake_at[b], 0);
			}
			pg_atomic_init_u64(&slot->captured_at, 0);
			return slot;
		}
	}
	return NULL;
}

void
retl_wake_launcher(void)
{
	Latch	   *latch;

	if (retl_shared == NULL)
		return;
	LWLockAcquire(retl_shared->lock, LW_SHARED);
	latch = retl_shared->launcher_latch;
	if (latch)
		SetLatch(latch);
	LWLockRelease(retl_shared->lock);
}

/*
 * Advance the queue counters of a database's buckets (a bit each) by the
 * changes queued for them (rows; NULL: one each), and wake its worker if
 * one reached its wake point (retl_set_wake_points), or always with force.
 * At commit, called after the commit is visible: a worker that read a
 * counter before then takes a snapshot that has the change, or reads the
 * counter moved at its next pass.
 */
static void
notify_database_worker(Oid dboid, uint64 buckets, const uint32 *rows, bool force, bool captured)
{
	RetlDbSlot *slot;
	bool		wake = force;

	if (retl_shared == NULL)
		return;
	LWLockAcquire(retl_shared->lock, LW_SHARED);
	slot = retl_find_slot(dboid);
	if (slot)
	{
		for (int b = 0; b < RETL_QUEUE_BUCKETS; b++)
		{
			uint32		now;

			if (!(buckets & (UINT64CONST(1) << b)))
				continue;
			/* (a full barrier: pairs with retl_set_wake_points) */
			now = pg_atomic_add_fetch_u32(&slot->queued[b],
										  rows ? Max(rows[b], 1) : 1);
			if ((int32) (now - pg_atomic_read_u32(&slot->wake_at[b])) >= 0)
				wake = true;
		}
		if (captured)
			pg_atomic_write_u64(&slot->captured_at, (uint64) GetCurrentTimestamp());
		if (wake && slot->latch)
			SetLatch(slot->latch);
	}
	LWLockRelease(retl_shared->lock);
}

void
retl_wake_database_worker(Oid dboid)
{
	notify_database_worker(dboid, 0, NULL, true, false);
}

/*
 * The current transaction queued nrows changes for a sync (sync_id 0: for
 * any, and the worker must be woken): when it commits, advance the counter
 * of the sync's bucket and wake the worker if a pass is due.
 */
void
retl_queued_at_commit(int sync_id, int64 nrows)
{
	StaticAssertStmt(RETL_QUEUE_BUCKETS == 64, "one bit of a uint64 per bucket");
	if (sync_id <= 0)
	{
		queued_at_commit = ALL_BUCKETS;
		wake_worker_at_commit = true;
	}
	else
	{
		int			b = sync_id % RETL_QUEUE_BUCKETS;

		queued_at_commit |= UINT64CONST(1) << b;
		/* (saturating: a counter must not move by 2^31 or more at once) */
		rows_at_commit[b] = (uint32) Min(rows_at_commit[b] + Max(nrows, 1), PG_INT32_MAX);
	}
}

/*
 * The same, of changes captured (by the trigger, or staged from logical
 * decoding): at commit the database's slot also records when, for runs to
 * see that realtime syncs are busy (models/probe_plan.c).
 */
void
retl_captured_at_commit(int sync_id, int64 nrows)
{
	captured_at_commit = true;
	retl_queued_at_commit(sync_id, nrows);
}

/* When a commit last captured changes in a database (0: not since start). */
TimestampTz
retl_database_captured_at(Oid dboid)
{
	RetlDbSlot *slot;
	TimestampTz at = 0;

	if (retl_shared == NULL)
		return 0;
	LWLockAcquire(retl_shared->lock, LW_SHARED);
	slot = retl_find_slot(dboid);
	if (slot)
		at = (TimestampTz) pg_atomic_read_u64(&slot->captured_at);
	LWLockRelease(retl_shared->lock);
	return at;
}

/*
 * The worker, at the end of a pass: bucket b's commits wake it again once
 * its counter has moved wake_after[b] past queued[b], the value it read at
 * the pass's start (0: never, no sync of the bucket needs a pass for a
 * change).  Returns true when a counter has reached its new wake point
 * already (a commit in between saw the old one): the worker must not
 * sleep.
 */
bool
retl_set_wake_points(const uint32 *queued, const uint32 *wake_after)
{
	RetlDbSlot *slot;
	bool		reached = false;

	if (retl_shared == NULL)
		return false;
	LWLockAcquire(retl_shared->lock, LW_SHARED);
	slot = retl_find_slot(MyDatabaseId);
	if (slot)
	{
		for (int b = 0; b < RETL_QUEUE_BUCKETS; b++)
			pg_atomic_write_u32(&slot->wake_at[b],
								queued[b] + (wake_after[b] == 0 ? (uint32) PG_INT32_MAX :
											 Min(wake_after[b], (uint32) PG_INT32_MAX)));
		/* a commit advances its counter, then reads the wake point */
		pg_memory_barrier();
		for (int b = 0; b < RETL_QUEUE_BUCKETS && !reached; b++)
			reached = (int32) (pg_atomic_read_u32(&slot->queued[b]) -
							   pg_atomic_read_u32(&slot->wake_at[b])) >= 0;
	}
	LWLockRelease(retl_shared->lock);
	return reached;
}

/*
 * Ask the launcher, at commit, to start a worker for this database: called
 * by CREATE EXTENSION through retl._start_worker().
 */
static void
retl_request_worker(Oid dboid)
{
	RetlDbSlot *slot;

	if (retl_shared == NULL)
		return;
	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	slot = retl_find_or_add_slot(dboid);
	if (slot)
		slot->start_requested = true;
	LWLockRelease(retl_shared->lock);
	if (slot == NULL)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("retl cannot serve more than %d databases", retl_max_databases),
				 errhint("Raise retl.max_databases and restart the server.")));
	retl_wake_launcher();
}

/*
 * Bump this database's catalog generation.  Called after the commit is
 * visible (a worker that read the old generation then takes a snapshot
 * that has the change, or reads the new one at its next pass), and before
 * the worker is woken.
 */
static void
bump_catalog_generation(void)
{
	RetlDbSlot *slot;

	if (retl_shared == NULL)
		return;
	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	slot = retl_find_slot(MyDatabaseId);
	if (slot)
		slot->catalog_gen++;
	LWLockRelease(retl_shared->lock);
}

/*
 * This database's catalog generation, and its queue counters into queued
 * (RETL_QUEUE_BUCKETS of them), read by its worker before the snapshots of
 * its pass; 0 without shared memory (then the worker reads its syncs at
 * each pass, and finds no sync idle for long).
 */
uint64
retl_database_generations(uint32 *queued)
{
	RetlDbSlot *slot;
	uint64		gen = 0;

	memset(queued, 0, sizeof(uint32) * RETL_QUEUE_BUCKETS);
	if (retl_shared == NULL)
		return 0;
	LWLockAcquire(retl_shared->lock, LW_SHARED);
	slot = retl_find_slot(MyDatabaseId);
	if (slot)
	{
		gen = slot->catalog_gen;
		for (int b = 0; b < RETL_QUEUE_BUCKETS; b++)
			queued[b] = pg_atomic_read_u32(&slot->queued[b]);
	}
	LWLockRelease(retl_shared->lock);
	return gen;
}

/* Forget what the transaction asked to be done at its commit. */
static void
forget_at_commit(void)
{
	wake_worker_at_commit = false;
	if (queued_at_commit != 0)
		memset(rows_at_commit, 0, sizeof(rows_at_commit));
	queued_at_commit = 0;
	start_worker_at_commit = false;
	catalog_changed_at_commit = false;
	captured_at_commit = false;
}

static void
retl_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (catalog_changed_at_commit)
				bump_catalog_generation();
			if (start_worker_at_commit)
				retl_request_worker(MyDatabaseId);
			if (wake_worker_at_commit || queued_at_commit != 0)
				notify_database_worker(MyDatabaseId, queued_at_commit,
									   rows_at_commit, wake_worker_at_commit, captured_at_commit);
			forget_at_commit();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			forget_at_commit();
			break;
		default:
			break;
	}
}

void
retl_xact_init(void)
{
	RegisterXactCallback(retl_xact_callback, NULL);
}

PG_FUNCTION_INFO_V1(retl_wake_worker);
PG_FUNCTION_INFO_V1(retl_start_worker);
PG_FUNCTION_INFO_V1(retl_catalog_changed);

/*
 * retl._wake_worker(): wake this database's worker at commit, every sync's
 * queue counter bumped (the SQL functions that queue changes call it).
 */
Datum
retl_wake_worker(PG_FUNCTION_ARGS)
{
	retl_queued_at_commit(0, 0);
	PG_RETURN_VOID();
}

/* retl._start_worker(): have the launcher start this database's worker at commit. */
Datum
retl_start_worker(PG_FUNCTION_ARGS)
{
	start_worker_at_commit = true;
	retl_queued_at_commit(0, 0);
	/* a worker still serving a dropped copy of the extension reads anew */
	catalog_changed_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * The current transaction changes what the worker keeps of its syncs (a
 * row of its catalog, below, or DROP EXTENSION, which no trigger of
 * retl's sees: utility.c): when it commits, the worker is woken and reads
 * its syncs again, in a transaction.
 */
void
retl_catalog_changed_at_commit(void)
{
	catalog_changed_at_commit = true;
	wake_worker_at_commit = true;
}

/*
 * retl._catalog_changed(): the trigger (for each row, and for a TRUNCATE)
 * of retl.syncs, retl.destinations and retl.destination_grants; at commit
 * the database's worker reads its syncs again and is woken.
 */
Datum
retl_catalog_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("retl._catalog_changed() can only be called as a trigger")));
	retl_catalog_changed_at_commit();
	return PointerGetDatum(NULL);
}

/*
 * Runner slots (RetlRunSlot): a database's worker takes one for each run
 * or refresh it hands to a worker of its own, a new one (the slot's
 * generation tells it which slot is its own) or one of the database's
 * idle ones (kind 'i'); a new worker sets its pid and latch.  At the end
 * of its work the worker makes its slot idle, or frees it and exits; an
 * idle worker that waited retl.run_idle_timeout for work, or was asked to
 * stop, frees its slot and exits (process/runner.c).  A worker that died
 * at work leaves its slot to the database's worker, which records the
 * run failed.  All under retl_shared->lock, except the rows read, which
 * only the runner writes.
 */

/* The job of a slot, as handed over */
static void
set_job(RetlRunSlot *s, char kind, int64 id, int sync_id, bool send)
{
	s->kind = kind;
	s->id = id;
	s->sync_id = sync_id;
	s->send = send;
	s->launched_at = GetCurrentTimestamp();
	s->cancel = false;
	strlcpy(s->phase, "starting", sizeof(s->phase));
	s->rows = 0;
}

/*
 * A slot for a job: an idle worker's of the database and extension
 * (*reused, the worker woken), else a free one, filled, its *generation for the new worker to
 * start; -1 when none is free.
 */
int
retl_runner_take(Oid dboid, Oid extension, char kind, int64 id, int sync_id,
				 bool send, bool *reused, uint32 *generation)
{
	int			found = -1;

	*reused = false;
	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < RETL_RUNNER_SLOTS && found < 0; i++)
	{
		RetlRunSlot *s = &retl_shared->runners[i];

		if (s->dboid != dboid || s->kind != 'i' || s->stopping)
			continue;

		/*
		 * An idle worker of the extension before a DROP and CREATE
		 * EXTENSION would refuse the job (it serves the old one): it exits.
		 * (Handed it, it left, and its run was failed as interrupted.)
		 */
		if (s->extension != extension)
		{
			s->stopping = true;
			SetLatch(s->latch);
			continue;
		}
		set_job(s, kind, id, sync_id, send);
		SetLatch(s->latch);
		*reused = true;
		found = i;
	}
	for (int i = 0; i < RETL_RUNNER_SLOTS && found < 0; i++)
	{
		RetlRunSlot *s = &retl_shared->runners[i];
		uint32		next = s->generation + 1;

		if (OidIsValid(s->dboid))
			continue;
		memset(s, 0, sizeof(RetlRunSlot));
		s->dboid = dboid;
		s->extension = extension;
		s->generation = next;
		set_job(s, kind, id, sync_id, send);
		*generation = next;
		found = i;
	}
	LWLockRelease(retl_shared->lock);
	return found;
}

void
retl_runner_free(int slot)
{
	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	retl_shared->runners[slot].dboid = InvalidOid;
	LWLockRelease(retl_shared->lock);
}

/*
 * Free a slot if it still holds what a copy of it (was) held; false if it
 * was freed or taken again meanwhile.
 */
bool
retl_runner_free_if(int slot, const RetlRunSlot *was)
{
	RetlRunSlot *s = &retl_shared->runners[slot];
	bool		same;

	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	same = s->dboid == was->dboid && s->generation == was->generation &&
		s->pid == was->pid && s->kind == was->kind && s->id == was->id;
	if (same)
		s->dboid = InvalidOid;
	LWLockRelease(retl_shared->lock);
	return same;
}

/*
 * Ask the idle runners of a database (InvalidOid: of every database) to
 * exit; returns how many were asked.
 */
int
retl_runner_release_idle(Oid dboid)
{
	int			n = 0;

	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < RETL_RUNNER_SLOTS; i++)
	{
		RetlRunSlot *s = &retl_shared->runners[i];

		if (!OidIsValid(s->dboid) || s->kind != 'i' || s->stopping ||
			(OidIsValid(dboid) && s->dboid != dboid))
			continue;
		s->stopping = true;
		SetLatch(s->latch);
		n++;
	}
	LWLockRelease(retl_shared->lock);
	return n;
}

/* The slots a database's runners at work hold now (idle ones not counted). */
int
retl_runner_count(Oid dboid)
{
	int			n = 0;

	LWLockAcquire(retl_shared->lock, LW_SHARED);
	for (int i = 0; i < RETL_RUNNER_SLOTS; i++)
		n += retl_shared->runners[i].dboid == dboid &&
			retl_shared->runners[i].kind != 'i';
	LWLockRelease(retl_shared->lock);
	return n;
}

/* Is a run (kind 'r') or a refresh (kind 'a') of a database in a runner? */
bool
retl_runner_busy(Oid dboid, char kind, int64 id)
{
	bool		busy = false;

	LWLockAcquire(retl_shared->lock, LW_SHARED);
	for (int i = 0; i < RETL_RUNNER_SLOTS && !busy; i++)
	{
		RetlRunSlot *s = &retl_shared->runners[i];

		busy = s->dboid == dboid && s->kind == kind && s->id == id;
	}
	LWLockRelease(retl_shared->lock);
	return busy;
}
