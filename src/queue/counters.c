/*
 * counters.c: the delivered counts of retl.sync_stats.
 *
 * A delivery is recorded in the transaction that deletes its rows from the
 * queue, so the count is exact across crashes.  Adding it to the sync's
 * one sync_stats row there would update that row at every request: while
 * any snapshot holds the xmin horizon back (a long report, pg_dump), each
 * update then walks the chain of all the row's earlier versions, and
 * delivery slows down the longer the snapshot is held.  So a delivery
 * appends a row to retl.stats_delta instead, and the worker folds those
 * into sync_stats about once a second; retl.sync_status adds what is not
 * folded yet.
 *
 * A delta also resets the sync's consecutive failures: a failure folds the
 * sync's deltas before it counts itself, so every delta left is newer than
 * the last failure.  retl_replay ends a streak so too, with a delta of
 * nothing delivered (at NULL): writing sync_stats itself, a replay left
 * uncommitted held the row this fold waited for.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "base/plans.h"
#include "queue/counters.h"
#include "sync/dropping.h"

/* how often the worker folds the deltas of every sync */
#define FOLD_INTERVAL_MS 1000

static TimestampTz last_fold = 0;

/* n records of the sync delivered, in this transaction */
void
retl_counters_delivered(int sync_id, int64 n)
{
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		values[2] = {Int32GetDatum(sync_id), Int64GetDatum(n)};

	if (retl_spi_execute("INSERT INTO retl.stats_delta (sync_id, delivered) VALUES ($1, $2)",
						 2, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not count delivered records");
}

/*
 * Fold the deltas of one sync (0: of all) into sync_stats, in this
 * transaction.
 */
void
retl_counters_fold(int sync_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(sync_id)};

	if (retl_spi_execute("WITH d AS (DELETE FROM retl.stats_delta d"
						 "  WHERE ($1 = 0 OR d.sync_id = $1) AND " RETL_SYNC_FREE_SQL("d.sync_id")
						 "  RETURNING d.sync_id, d.delivered, d.at)"
						 " UPDATE retl.sync_stats st SET delivered = st.delivered + f.n,"
						 " consecutive_failures = 0,"
						 " last_delivered_at = GREATEST(st.last_delivered_at, f.at)"
						 " FROM (SELECT d.sync_id, pg_catalog.sum(d.delivered) AS n,"
						 "  pg_catalog.max(d.at) AS at FROM d GROUP BY d.sync_id) f"
						 " WHERE st.sync_id = f.sync_id",
						 1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not update the statistics of a sync");
}

/* Fold the deltas of every sync, at most every FOLD_INTERVAL_MS. */
void
retl_counters_fold_due(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (!TimestampDifferenceExceeds(last_fold, now, FOLD_INTERVAL_MS))
		return;
	last_fold = now;
	retl_counters_fold(0);
}
