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

#include "miscadmin.h"

#include "utils/array.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "base/guc.h"
#include "base/subxact.h"
#include "base/shmem.h"
#include "models/runs.h"
#include "queue/queue.h"
#include "sync/dropping.h"

/*
 * Runs left 'running' by a worker that stopped: they did not happen.
 * False when some were left as they are, their syncs being dropped (the
 * worker never waits for a drop): the caller asks again later.
 */
bool
retl_runs_recover(List *at_work)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(list_length(at_work), 1));
	int			n = 0;
	ListCell   *lc;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];

	foreach(lc, at_work)
		ids[n++] = Int64GetDatum(*(int64 *) lfirst(lc));
	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (SPI_execute_with_args("UPDATE retl.run_store SET status = 'failed', finished_at = pg_catalog.now(),"
							  " error = 'interrupted: the worker stopped during the run; nothing of it was kept'"
							  " WHERE status = 'running' AND id <> ALL ($1)"
							  " AND " RETL_SYNC_FREE_SQL("sync_id"),
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE ||
		SPI_execute_with_args("SELECT FROM retl.run_store WHERE status = 'running' AND id <> ALL ($1)",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not recover interrupted runs");
	return SPI_processed == 0;
}

/* A run retl_cancel_run stopped: its transaction was rolled back. */
void
retl_runs_cancelled(int64 run_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run_id)};

	if (SPI_execute_with_args("UPDATE retl.run_store SET status = 'cancelled', finished_at = pg_catalog.now(),"
							  " error = 'cancelled by retl_cancel_run; nothing of it was kept'"
							  " WHERE id = $1", 1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not record that run " INT64_FORMAT " was cancelled", run_id);
}

/* The next run of a sync whose schedule fails to compute: in an hour. */
#define SCHEDULE_RETRY "1 hour"

static void
schedule_one(void *arg)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(*(int *) arg)};

	if (SPI_execute_with_args("UPDATE retl.syncs s SET next_run_at = retl._next_run(s.schedule, pg_catalog.now())"
							  " WHERE s.id = $1", 1, types, values, NULL, false, 0) != SPI_OK_UPDATE ||
		SPI_execute_with_args("INSERT INTO retl.run_store (sync_id, why) SELECT $1, 'schedule'"
							  " WHERE NOT EXISTS (SELECT 1 FROM retl.run_store r"
							  "  WHERE r.sync_id = $1 AND r.status = 'queued')",
							  1, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not queue the scheduled run of sync %d", *(int *) arg);
}

/*
 * Queue the runs of syncs whose time has come, each in a subtransaction:
 * a schedule whose next time cannot be computed (an interval that leaves
 * the range of timestamps, from a catalog older than the checks at
 * creation) makes its own sync fail, tried again an hour later, and never
 * stops the worker or the other syncs.
 */
static void
schedule_due(void)
{
	List	   *due = NIL;
	ListCell   *lc;

	/*
	 * Not one a drop holds (sync/dropping.c), nor one whose row another
	 * transaction holds (a pause not yet committed): their rows are left
	 * for a later pass, the others locked.
	 */
	if (SPI_execute("SELECT s.id FROM retl.syncs s WHERE s.capture = 'diff' AND NOT s.paused"
					" AND s.next_run_at <= pg_catalog.now()"
					" AND " RETL_SYNC_FREE_SQL("s.id") " ORDER BY s.next_run_at"
					" FOR NO KEY UPDATE OF s SKIP LOCKED",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the scheduled syncs");
	for (uint64 i = 0; i < SPI_processed; i++)
		due = lappend_int(due, pg_strtoint32(SPI_getvalue(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1)));
	foreach(lc, due)
	{
		int			sync_id = lfirst_int(lc);
		ErrorData  *edata = retl_in_subtransaction(schedule_one, &sync_id);
		Oid			types[1] = {INT4OID};
		Datum		values[1] = {Int32GetDatum(sync_id)};
		char	   *message;

		if (edata == NULL)
			continue;
		message = psprintf("could not compute the next run of the schedule: %s", edata->message);
		FreeErrorData(edata);
		ereport(WARNING, (errmsg("retl sync %d: %s", sync_id, message)));
		if (SPI_execute_with_args("UPDATE retl.syncs SET next_run_at = pg_catalog.now() + interval '"
								  SCHEDULE_RETRY "' WHERE id = $1",
								  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "retl: could not put off the schedule of sync %d", sync_id);
		retl_queue_sync_error(sync_id, message);
	}
}

/*
 * Does a claimed run send?  What the sync was last asked, rather than
 * what the run was queued with:
 *
 * - A resync that sends (retl_resync(send => true)) asked after the run
 *   and still queued: it forgot the snapshot at once (an edit every run
 *   applies), so this run sends every row, whatever it was queued for.
 * - A resync does what it was asked; so does a run queued not to send.
 * - A sync created with backfill false whose first run has not succeeded
 *   (it failed, or was cancelled) and that no resync that sends was asked
 *   for: its runs record the result without sending it, as the first was
 *   to (otherwise the run after a failed first one would send every row,
 *   which the sync was created not to send).
 * - A run that records without sending (retl_resync(send => false), or
 *   one carrying it on) that failed, or is queued after this one, with no
 *   run succeeding since: this one records without sending too (a run
 *   queued before such a resync would otherwise send what the resync says
 *   the destination has).  A cancelled one asked nothing.
 *
 * A claimed run's row says what it does (retl.runs.send), so that the next
 * ones carry it on.  Runs the history deleted are not missed: a sync's
 * latest finished run and its latest successful one are always kept
 * (prune).  run_id 0: a run asked now, after every queued one (a preview).
 */
bool
retl_runs_would_send(int sync_id, int64 run_id, const char *why, bool send)
{
	Oid			types[4] = {INT4OID, INT8OID, TEXTOID, BOOLOID};
	Datum		values[4];
	char		nulls[4] = {' ', run_id > 0 ? ' ' : 'n', ' ', ' '};
	bool		isnull;

	values[0] = Int32GetDatum(sync_id);
	values[1] = Int64GetDatum(run_id);
	values[2] = CStringGetTextDatum(why);
	values[3] = BoolGetDatum(send);
	if (SPI_execute_with_args("SELECT CASE"
							  " WHEN EXISTS (SELECT 1 FROM retl.run_store l WHERE l.sync_id = $1"
							  "  AND l.id > $2 AND l.why = 'resync' AND l.send AND l.status = 'queued') THEN true"
							  " WHEN $3 = 'resync' OR NOT $4 THEN $4"
							  " WHEN (SELECT s.options ->> 'backfill' = 'false' FROM retl.syncs s WHERE s.id = $1)"
							  "  AND NOT EXISTS (SELECT 1 FROM retl.run_store l WHERE l.sync_id = $1"
							  "   AND (l.status = 'succeeded' OR (l.why = 'resync' AND l.send))) THEN false"
							  " ELSE COALESCE((SELECT l.send OR l.status = 'succeeded'"
							  "  OR EXISTS (SELECT 1 FROM retl.run_store s WHERE s.sync_id = l.sync_id"
							  "   AND s.id > l.id AND s.status = 'succeeded')"
							  "  FROM retl.run_store l WHERE l.sync_id = $1 AND l.id IS DISTINCT FROM $2"
							  "  AND (l.why = 'resync' OR NOT l.send) AND l.status <> 'cancelled'"
							  "  ORDER BY l.id DESC LIMIT 1), true) END",
							  4, types, values, nulls, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "retl: could not read the runs of sync %d", sync_id);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* A claimed run: does it send?  Its row says so if it differs. */
static bool
run_sends(int64 run_id, int sync_id, const char *why, bool send)
{
	Oid			types[2] = {INT8OID, BOOLOID};
	Datum		values[2];
	bool		sends = retl_runs_would_send(sync_id, run_id, why, send);

	values[0] = Int64GetDatum(run_id);
	values[1] = BoolGetDatum(sends);
	if (sends != send &&
		SPI_execute_with_args("UPDATE retl.run_store SET send = $2 WHERE id = $1",
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not record run " INT64_FORMAT, run_id);
	return sends;
}

/*
 * Queue due scheduled runs, then take the oldest queued run of an active
 * sync and mark it running.  False when there is none.  A run whose row
 * another transaction holds (a retl_cancel_run not yet committed) is left
 * to a later pass.
 */
bool
retl_runs_claim(int64 *run_id, int *sync_id, bool *send)
{
	schedule_due();
	if (SPI_execute("UPDATE retl.run_store r SET status = 'running', started_at = pg_catalog.now()"
					" WHERE r.id = (SELECT r2.id FROM retl.run_store r2"
					"  JOIN retl.syncs s ON s.id = r2.sync_id"
					"  WHERE r2.status = 'queued' AND NOT s.paused AND " RETL_SYNC_FREE_SQL("r2.sync_id")
					/* runs of a sync never overlap */
					"  AND NOT EXISTS (SELECT 1 FROM retl.run_store r3"
					"   WHERE r3.sync_id = r2.sync_id AND r3.status = 'running')"
					"  ORDER BY r2.id LIMIT 1 FOR NO KEY UPDATE OF r2 SKIP LOCKED)"
					" RETURNING r.id, r.sync_id, r.send, r.why", false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "retl: could not take a queued run");
	if (SPI_processed == 0)
		return false;

	/*
	 * The run's start is flushed at commit, whatever synchronous_commit
	 * says: a crash during the run then always finds it running and fails
	 * it, rather than finding it queued again and redoing it, depending on
	 * whether the WAL writer had flushed the claim before the crash.
	 */
	ForceSyncCommit();
	*run_id = strtoi64(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), NULL, 10);
	*sync_id = pg_strtoint32(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	*send = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3), "t") == 0;
	*send = run_sends(*run_id, *sync_id,
					  SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4), *send);
	return true;
}

/* Is the run a resync's (retl_resync)? */
bool
retl_runs_resync(int64 run_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run_id)};

	if (SPI_execute_with_args("SELECT r.why = 'resync' FROM retl.run_store r WHERE r.id = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read run " INT64_FORMAT, run_id);
	return SPI_processed == 1 &&
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0;
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
							  " AND NOT s.paused AND $1 IS NOT NULL"
							  /*
							   * not a follower being dropped (its row is locked):
							   * dropped, it needs no run; if the drop rolls back,
							   * it runs after the next run of this one
							   */
							  " AND " RETL_SYNC_FREE_SQL("s.id"),
							  6, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not record run " INT64_FORMAT, run_id);
	retl_runs_prune(sync->id);
}

/*
 * Delete finished runs beyond retl.run_history, of one sync (after each of
 * its runs) or of all (sync_id 0: now and then, for a changed setting):
 * past the last N of each sync, or finished longer ago than the age it
 * gives (cancelled ones too).  Each sync's latest finished run stays,
 * whatever its age (retl.sync_status shows it), and so does its latest
 * successful one (run_sends reads it).
 */
void
retl_runs_prune(int sync_id)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2];

	values[0] = Int64GetDatum(retl_run_history_count > 0 ?
							  (int64) retl_run_history_count - 1 : retl_run_history_secs);
	values[1] = Int32GetDatum(sync_id);
	/*
	 * The runs to delete are found first, then each is deleted unless a
	 * drop of its sync is under way (it deletes them itself, and the
	 * worker never waits for it: sync/dropping.c); the drop lock is asked
	 * for those runs' syncs only, not for every sync's.
	 */
	if (SPI_execute_with_args(retl_run_history_count > 0 ?
							  "WITH doomed AS MATERIALIZED (SELECT r.id, r.sync_id FROM retl.run_store r, ("
							  " SELECT s.id, (SELECT r2.id FROM retl.run_store r2"
							  "  WHERE r2.sync_id = s.id AND r2.status IN ('succeeded', 'failed', 'cancelled')"
							  "  ORDER BY r2.id DESC OFFSET $1 LIMIT 1) AS last_kept,"
							  " (SELECT pg_catalog.max(r3.id) FROM retl.run_store r3"
							  "  WHERE r3.sync_id = s.id AND r3.status = 'succeeded') AS last_succeeded"
							  " FROM retl.syncs s WHERE $2 = 0 OR s.id = $2) k"
							  " WHERE r.sync_id = k.id AND r.id < k.last_kept AND r.id IS DISTINCT FROM k.last_succeeded"
							  " AND r.status IN ('succeeded', 'failed', 'cancelled'))"
							  " DELETE FROM retl.run_store r USING doomed d"
							  " WHERE r.id = d.id AND " RETL_SYNC_FREE_SQL("d.sync_id") :
							  "WITH doomed AS MATERIALIZED (SELECT r.id, r.sync_id FROM retl.run_store r"
							  " WHERE ($2 = 0 OR r.sync_id = $2) AND r.status IN ('succeeded', 'failed', 'cancelled')"
							  " AND r.finished_at < pg_catalog.now() - $1 * interval '1 second'"
							  " AND r.id < (SELECT pg_catalog.max(r2.id) FROM retl.run_store r2"
							  "  WHERE r2.sync_id = r.sync_id AND r2.status IN ('succeeded', 'failed', 'cancelled'))"
							  " AND r.id IS DISTINCT FROM (SELECT pg_catalog.max(r3.id) FROM retl.run_store r3"
							  "  WHERE r3.sync_id = r.sync_id AND r3.status = 'succeeded'))"
							  " DELETE FROM retl.run_store r USING doomed d"
							  " WHERE r.id = d.id AND " RETL_SYNC_FREE_SQL("d.sync_id"),
							  2, types, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "retl: could not prune retl.runs");
}

/*
 * In a transaction of its own, after the run's was rolled back: false if
 * the run had ended already.
 */
bool
retl_runs_failed(int64 run_id, int sync_id, const char *error)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(run_id), CStringGetTextDatum(error)};
	bool		failed;

	/* (a run whose worker died after recording its end keeps that end) */
	if (SPI_execute_with_args("UPDATE retl.run_store SET status = 'failed',"
							  " finished_at = pg_catalog.clock_timestamp(), error = $2"
							  " WHERE id = $1 AND status = 'running'",
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not record run " INT64_FORMAT, run_id);
	failed = SPI_processed > 0;
	retl_runs_prune(sync_id);
	return failed;
}

static void
reschedule_audience(void *arg)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(*(int *) arg)};

	if (SPI_execute_with_args("UPDATE retl.audience_store a"
							  " SET next_refresh_at = retl._next_run(a.schedule, pg_catalog.now())"
							  " WHERE a.id = $1", 1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not schedule audience %d", *(int *) arg);
}

/*
 * Take the audience whose refresh is most overdue, moving its next refresh
 * time on (from now, so a late worker does not pile refreshes up).  One
 * whose schedule fails to compute is not refreshed: it shows the error and
 * is tried again an hour later.
 */
bool
retl_audiences_claim(int *audience_id)
{
	ErrorData  *edata;

	bool		found = false;

	if (SPI_execute("SELECT a.id FROM retl.audience_store a WHERE a.next_refresh_at <= pg_catalog.now()"
					" ORDER BY a.next_refresh_at LIMIT 16", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the audiences");
	/* one refresh of an audience at a time: those in workers wait */
	for (uint64 i = 0; i < SPI_processed && !found; i++)
	{
		*audience_id = pg_strtoint32(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		found = !retl_runner_busy(MyDatabaseId, 'a', *audience_id);
	}
	if (!found)
		return false;
	edata = retl_in_subtransaction(reschedule_audience, audience_id);
	if (edata != NULL)
	{
		Oid			types[2] = {INT4OID, TEXTOID};
		Datum		values[2] = {Int32GetDatum(*audience_id),
			CStringGetTextDatum(psprintf("could not compute the next refresh of the schedule: %s",
										 edata->message))};

		FreeErrorData(edata);
		if (SPI_execute_with_args("UPDATE retl.audience_store SET last_error = $2,"
								  " next_refresh_at = pg_catalog.now() + interval '" SCHEDULE_RETRY "'"
								  " WHERE id = $1", 2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "retl: could not put off audience %d", *audience_id);
		return false;
	}
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
