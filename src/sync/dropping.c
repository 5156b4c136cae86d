/*
 * dropping.c: keeping the worker out of a sync that a drop is taking
 * apart.
 *
 * retl_drop_sync deletes the sync's queued changes, its statistics, runs,
 * jobs and snapshot, then the sync, in the caller's transaction, which may
 * stay open for as long as its session likes.  The worker writes those
 * same rows: it deletes the delivered changes of each answer, counts them,
 * records failures, starts runs.  Had it waited for a row the drop deleted,
 * every sync of the database would have waited with it, and in the worst
 * case (the drop waiting in turn for something the worker's transaction
 * had written) the two deadlocked.
 *
 * So the drop first takes an advisory lock of its own on the sync
 * (RETL_DROP_LOCK_KEY, the sync's id), before any other lock or row, and
 * the worker shares that lock, without waiting, before it touches a
 * sync's rows in a transaction: it gets it only when no drop of the sync
 * has begun, and then holds it to its transaction's end, so no drop
 * begins under it (the drop waits for that short transaction, which waits
 * for nothing of the drop's: the drop has taken nothing else yet).  When
 * it cannot get it, it leaves the sync's work for a later pass: the
 * answers of its requests stay in memory, their rows and keys held, and
 * are recorded once the drop has rolled back, or, once it has committed,
 * find nothing left to write.  Statements that touch many syncs' rows
 * (the fold of delivered counts, the prune of old runs, the schedule and
 * claim of runs, chained runs, the start's recovery) take the lock in SQL,
 * row by row, and skip the rows of syncs being dropped; what the start
 * skipped is finished at a later prune (process/scheduled.c).  A run the
 * worker does itself keeps the lock at session level from its claim's
 * transaction to its end (retl_sync_keep), so a drop waits for the run.
 *
 * Each lock is an entry of the shared lock table until the transaction
 * ends (advisory locks have no fast path): a claim pass takes at most 256
 * (process/claims.c).
 *
 * A sync's table is taken without waiting as well (process/claims.c,
 * queue/rows.c): the drop locks it next.  And so is a sync's row, which
 * the worker writes (a backfill's cursor, a schedule's next run): a
 * transaction that wrote it first (retl_pause_sync, left open) would
 * have kept every sync of the database waiting, and, dropping the sync
 * next, deadlocked with the worker.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"

#include "base/plans.h"
#include "sync/dropping.h"

/* The sync's drop lock, as pg_try_advisory_xact_lock_shared(int4, int4) names it. */
static LOCKTAG
drop_lock(int sync_id)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) RETL_DROP_LOCK_KEY, (uint32) sync_id, 2);
	return tag;
}

/*
 * Is a drop of the sync under way (in a transaction not yet ended)?  When
 * not, this transaction holds the sync's drop lock, shared, to its end.
 */
bool
retl_sync_dropping(int sync_id)
{
	LOCKTAG		tag = drop_lock(sync_id);

	return LockAcquire(&tag, ShareLock, false, true) == LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Outside a transaction: is a drop of the sync under way?  Its drop lock
 * is shared for a moment, at session level, and let go.  A drop that
 * begins right after does not keep the requests started now from going
 * out at the pass's wait, as one that begins right after a claim's commit
 * does not keep the claim's (the worker starts them after it): their
 * answers wait for the drop's end (worker.c).
 */
bool
retl_sync_dropping_now(int sync_id)
{
	LOCKTAG		tag = drop_lock(sync_id);

	if (LockAcquire(&tag, ShareLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, ShareLock, true);
	return false;
}

/*
 * Keep the sync's drop lock, shared, past this transaction's end, until
 * retl_sync_release(): for a run the worker claims in one transaction and
 * does in the next (no drop of its sync begins between them, nor during
 * the run, which waits for nothing of a drop's).  The claim's transaction
 * holds the lock already (models/runs.c asks for it), so this never waits.
 * False if a drop holds it after all: then the claim is not kept.
 */
bool
retl_sync_keep(int sync_id)
{
	LOCKTAG		tag = drop_lock(sync_id);

	return LockAcquire(&tag, ShareLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* Let go of a lock retl_sync_keep() kept. */
void
retl_sync_release(int sync_id)
{
	LOCKTAG		tag = drop_lock(sync_id);

	LockRelease(&tag, ShareLock, true);
}

/*
 * May the sync's table be read in this transaction without waiting?  An
 * upsert sync reads it (its backfill, the rows it sends, the halves of a
 * refused batch); its lock is taken here, without waiting, and held to the
 * transaction's end.  Whoever holds a lock that conflicts (ALTER TABLE,
 * LOCK TABLE, retl_drop_sync of any sync of the table) leaves the sync for
 * a later pass.  Syncs that do not read a table are always ready.
 */
bool
retl_sync_table_ready(RetlSync *sync)
{
	return sync->diff || sync->mode == 'a' ||
		ConditionalLockRelationOid(sync->relid, AccessShareLock);
}

/*
 * May the worker write the sync's row in this transaction without
 * waiting?  The row is locked here (FOR NO KEY UPDATE), without waiting,
 * and held to the transaction's end; false when another transaction
 * holds it (a pause, a resume or a resync not yet committed, a drop) or
 * the sync is gone: the write is left for a later pass.
 */
bool
retl_sync_row_ready(int sync_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(sync_id)};

	if (retl_spi_execute("SELECT FROM retl.syncs s WHERE s.id = $1 FOR NO KEY UPDATE SKIP LOCKED",
						 1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not lock the row of sync %d", sync_id);
	return SPI_processed == 1;
}
