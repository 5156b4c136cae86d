/*
 * runs.c: scheduling and recording runs of diff syncs (retl.run_store).
 *
 * A run is queued by the schedule (when next_run_at has passed; the next
 * time is computed from now, so a late worker does not pile runs up), by
 * retl_run_sync() (visible once its transaction commits), by a chained
 * sync finishing, or by retl_resync().  The worker takes the oldest queued
 * run, marks it running and commits, then runs it in a transaction of its
 * own and records the outcome: runs of one sync never overlap, since one
 * worker runs them one at a time.  A run interrupted by a crash is marked
 * failed when the worker starts again; its changes were rolled back.
 *
 * Called by the worker inside a short transaction with SPI connected.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "runs.h"

/* Runs left 'running' by a worker that stopped: they did not happen. */
void
retl_runs_recover(void)
{
	if (SPI_execute("UPDATE retl.run_store SET status = 'failed', finished_at = pg_catalog.now(),"
					" error = 'interrupted: the worker stopped during the run; nothing of it was kept'"
					" WHERE status = 'running'", false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not recover interrupted runs");
}

/*
 * Queue due scheduled runs, then take the oldest queued run of an active
 * sync and mark it running.  False when there is none.
 */
bool
retl_runs_claim(int64 *run_id, int *sync_id, bool *send)
{
	if (SPI_execute("WITH due AS ("
					" UPDATE retl.syncs s SET next_run_at = retl._next_run(s.schedule, pg_catalog.now())"
					" WHERE s.capture = 'diff' AND NOT s.paused AND s.next_run_at <= pg_catalog.now()"
					" RETURNING s.id)"
					" INSERT INTO retl.run_store (sync_id, why)"
					" SELECT due.id, 'schedule' FROM due WHERE NOT EXISTS"
					" (SELECT 1 FROM retl.run_store r WHERE r.sync_id = due.id AND r.status = 'queued')",
					false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not queue scheduled runs");

	if (SPI_execute("UPDATE retl.run_store r SET status = 'running', started_at = pg_catalog.now()"
					" WHERE r.id = (SELECT r2.id FROM retl.run_store r2"
					"  JOIN retl.syncs s ON s.id = r2.sync_id"
					"  WHERE r2.status = 'queued' AND NOT s.paused ORDER BY r2.id LIMIT 1)"
					" RETURNING r.id, r.sync_id, r.send", false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "retl: could not take a queued run");
	if (SPI_processed == 0)
		return false;
	*run_id = strtoi64(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), NULL, 10);
	*sync_id = pg_strtoint32(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	*send = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3), "t") == 0;
	return true;
}

/* In the run's transaction: record its counts and start chained syncs. */
void
retl_runs_succeeded(int64 run_id, RetlSync *sync, RetlRunCounts *counts)
{
	Oid			types[6] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID};
	Datum		values[6];

	values[0] = Int64GetDatum(run_id);
	values[1] = Int64GetDatum(counts->rows);
	values[2] = Int64GetDatum(counts->added);
	values[3] = Int64GetDatum(counts->changed);
	values[4] = Int64GetDatum(counts->removed);
	values[5] = CStringGetTextDatum(sync->name);
	if (SPI_execute_with_args("UPDATE retl.run_store SET status = 'succeeded',"
							  " finished_at = pg_catalog.clock_timestamp(), rows = $2, added = $3,"
							  " changed = $4, removed = $5 WHERE id = $1",
							  5, types, values, NULL, false, 0) != SPI_OK_UPDATE ||
		SPI_execute_with_args("INSERT INTO retl.run_store (sync_id, why)"
							  " SELECT s.id, 'after' FROM retl.syncs s"
							  " WHERE s.options ->> 'after' = $6 AND s.capture = 'diff'"
							  " AND NOT s.paused AND $1 IS NOT NULL",
							  6, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not record run " INT64_FORMAT, run_id);
}

/* In a transaction of its own, after the run's was rolled back. */
void
retl_runs_failed(int64 run_id, int sync_id, const char *error)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(run_id), CStringGetTextDatum(error)};

	if (SPI_execute_with_args("UPDATE retl.run_store SET status = 'failed',"
							  " finished_at = pg_catalog.clock_timestamp(), error = $2 WHERE id = $1",
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not record run " INT64_FORMAT, run_id);
}

/*
 * Take the audience whose refresh is most overdue, moving its next refresh
 * time on (from now, so a late worker does not pile refreshes up).
 */
bool
retl_audiences_claim(int *audience_id)
{
	if (SPI_execute("UPDATE retl.audience_store a"
					" SET next_refresh_at = retl._next_run(a.schedule, pg_catalog.now())"
					" WHERE a.id = (SELECT a2.id FROM retl.audience_store a2"
					"  WHERE a2.next_refresh_at <= pg_catalog.now()"
					"  ORDER BY a2.next_refresh_at LIMIT 1)"
					" RETURNING a.id", false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "retl: could not schedule audience refreshes");
	if (SPI_processed == 0)
		return false;
	*audience_id = pg_strtoint32(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	return true;
}

/* In a transaction of its own, after the refresh's was rolled back. */
void
retl_audience_failed(int audience_id, const char *error)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2] = {Int32GetDatum(audience_id), CStringGetTextDatum(error)};

	if (SPI_execute_with_args("UPDATE retl.audience_store SET last_error = $2 WHERE id = $1",
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not record the failure of audience %d", audience_id);
}
