/*
 * sweep.c: syncs being dropped, and the queue rows a dropped sync left
 * behind.
 *
 * A drop in progress holds its sync's row locked (FOR UPDATE), and deletes
 * the rows the worker writes when it records an outcome of that sync (its
 * queued changes, its row of retl.sync_stats): recording one then waited
 * for the drop's transaction, holding up every sync of the database.  So
 * the worker asks, before recording, which of the syncs it records for are
 * locked so (retl_queue_syncs_locked), and records their outcomes at a
 * later pass: once the drop commits, their rows are gone and recording
 * them changes nothing; if it rolls back, they are recorded then.  It
 * asks only while a transaction that called retl_drop_sync has not ended
 * (base/shmem.c).
 *
 * retl_drop_sync deletes its sync's queue rows and the sync in one
 * transaction, but the worker may queue rows of that sync while the drop
 * is still in progress: a backfill's records not delivered at once go into
 * the queue when their outcome is recorded (queue.c), under a snapshot
 * that still sees the sync.  The drop's delete did not see those rows, and
 * nothing else reads them once the sync is gone.  So after a change of the
 * catalog the worker looks for rows of syncs that no longer exist, one
 * descent of the queue's (sync_id, id) index for each sync with rows, and
 * deletes them.  A drop still in progress keeps its rows for a later sweep.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"

#include "base/plans.h"

#include "queue/sweep.h"

/* Delete the queue rows of syncs that no longer exist; returns how many. */
uint64
retl_queue_sweep(void)
{
	uint64		n;

	if (SPI_execute("WITH RECURSIVE ids(sync_id) AS ("
					"   (SELECT q.sync_id FROM retl.queue q ORDER BY q.sync_id LIMIT 1)"
					" UNION ALL"
					"   SELECT (SELECT q.sync_id FROM retl.queue q WHERE q.sync_id > i.sync_id"
					"           ORDER BY q.sync_id LIMIT 1)"
					"   FROM ids i WHERE i.sync_id IS NOT NULL)"
					" DELETE FROM retl.queue q USING ids i"
					" WHERE q.sync_id = i.sync_id"
					"   AND NOT EXISTS (SELECT FROM retl.syncs s WHERE s.id = i.sync_id)",
					false, 0) != SPI_OK_DELETE)
		elog(ERROR, "retl: could not sweep the queue");
	n = SPI_processed;
	/* and the delivered counts a fold left for a drop in progress */
	if (SPI_execute("DELETE FROM retl.stats_delta d"
					" WHERE NOT EXISTS (SELECT FROM retl.syncs s WHERE s.id = d.sync_id)",
					false, 0) != SPI_OK_DELETE)
		elog(ERROR, "retl: could not sweep the statistics");
	return n;
}

/*
 * Of the syncs ids[0..n), those whose row another transaction holds locked
 * FOR UPDATE (a drop in progress), as a list of ints.  The others are
 * locked FOR KEY SHARE until this transaction ends, so no drop starts
 * before the outcomes recorded for them are committed.
 */
List *
retl_queue_syncs_locked(int *ids, int n)
{
	Oid			types[1] = {INT4ARRAYOID};
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	Datum		values[1];
	List	   *locked = NIL;

	if (n == 0)
		return NIL;
	for (int i = 0; i < n; i++)
		elems[i] = Int32GetDatum(ids[i]);
	values[0] = PointerGetDatum(construct_array(elems, n, INT4OID, 4, true, TYPALIGN_INT));
	if (retl_spi_execute("WITH l AS (SELECT s.id FROM retl.syncs s WHERE s.id = ANY ($1)"
						 "           FOR KEY SHARE SKIP LOCKED)"
						 " SELECT s.id FROM retl.syncs s WHERE s.id = ANY ($1)"
						 " AND NOT EXISTS (SELECT FROM l WHERE l.id = s.id)",
						 1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not look for syncs being dropped");
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		bool		isnull;

		locked = lappend_int(locked, DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[row],
																  SPI_tuptable->tupdesc, 1,
																  &isnull)));
	}
	SPI_freetuptable(SPI_tuptable);
	pfree(elems);
	return locked;
}
