/*
 * sweep.c: queue rows a dropped sync left behind.
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

#include "executor/spi.h"

#include "queue/sweep.h"

/* Delete the queue rows of syncs that no longer exist; returns how many. */
uint64
retl_queue_sweep(void)
{
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
	return SPI_processed;
}
