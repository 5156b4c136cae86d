/*
 * diff.c: diff capture: a run of a scheduled sync, and its preview.
 *
 * A run loads the sync's snapshot (what was last synced: snapshot.c) into
 * memory (probe.c), evaluates the sync's query as the sync's owner (so
 * grants and row-level security apply), each row hashed (rowhash.c) and
 * looked up in the snapshot, into a temporary table of the rows to send
 * (key, mapped data, op), then, as the extension, queues added, changed
 * and removed keys; the snapshot is written from memory as the query is
 * read.  Memory is bounded by retl.run_memory (a larger snapshot is
 * diffed in parts), and it all happens in the caller's transaction: a
 * crash or an error leaves the previous snapshot and queue intact.  The
 * statements' SQL text is built in diff_sql.c.
 *
 * The worker runs it in its own transaction, with no request in flight
 * being waited for; retl_preview() runs it in a subtransaction that is
 * rolled back, returning what would be queued.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "base/identity.h"
#include "base/progress.h"
#include "base/shmem.h"
#include "base/subxact.h"
#include "models/diff.h"
#include "models/diff_sql.h"
#include "models/empty_replace.h"
#include "models/probe.h"
#include "models/query.h"
#include "models/run_queue.h"
#include "models/runs.h"
#include "sync/dropping.h"
#include "sync/expr.h"
#include "sync/mapping.h"
#include "sync/owner.h"

static void
exec(const char *sql, int expected)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expected)
		elog(ERROR, "retl: SPI_execute failed (%d): %s", rc, sql);
}

/* A fresh pg_temp.retl_run_rows, writable by owner. */
static void
make_run_table(Oid owner)
{
	retl_owner_temp_table(owner, "retl_run_rows", "key pg_catalog.jsonb, data pg_catalog.jsonb");
}

static void fail_null_key(const char *what, const char *key) pg_attribute_noreturn();

/* Fail the run on a key (as text) that is or holds NULL */
static void
fail_null_key(const char *what, const char *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("the result of %s has a NULL key: %s", what, key),
			 errhint("Every row needs a key; filter out rows whose key is NULL.")));
}

/*
 * Fail the run on the key a SELECT of a run's table finds, if any: a NULL
 * key, or else a duplicate one.
 */
static void
fail_on_key(const char *select, const char *what, bool null_key)
{
	exec(select, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	if (null_key)
		fail_null_key(what, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("the result of %s has duplicate key %s", what,
					SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
			 errhint("The key must identify one row of the result.")));
}

/* A NULL key in pg_temp.retl_run_rows fails the run, showing one. */
static void
check_null_keys(const char *what)
{
	fail_on_key("SELECT key::text FROM pg_temp.retl_run_rows"
				" WHERE key OPERATOR(pg_catalog.@>) '[null]' LIMIT 1", what, true);
}

/* Two rows of pg_temp.retl_run_rows with one key */
#define DUPLICATE_IN_ROWS \
	"SELECT key::text FROM pg_temp.retl_run_rows GROUP BY key" \
	" HAVING pg_catalog.count(*) > 1 LIMIT 1"

/* How errors name a sync's result */
static char *
result_name(RetlSync *sync)
{
	return psprintf(sync->audience_id ? "audience sync \"%s\"" : "sync \"%s\"", sync->name);
}

/*
 * Evaluate the source into pg_temp.retl_run_rows (the query as the sync's
 * owner; an audience's current members), then reject NULL and duplicate
 * keys.  Returns the number of rows.
 */
static int64
evaluate(RetlSync *sync, const char *path)
{
	StringInfoData sql;
	int64		rows;

	make_run_table(sync->owner);
	initStringInfo(&sql);
	retl_progress_phase("evaluating");
	if (sync->audience_id)
	{
		/* membership was computed as the audience's owner */
		appendStringInfoString(&sql, "INSERT INTO pg_temp.retl_run_rows (key, data) "
							   "SELECT m.key, d.data FROM retl.audience_member_store m, LATERAL (SELECT ");
		retl_append_key_object(&sql, sync, "m.key");
		appendStringInfo(&sql, ") d(data) WHERE m.audience_id = %d", sync->audience_id);
		exec(sql.data, SPI_OK_INSERT);
		return (int64) SPI_processed;
	}

	appendStringInfoString(&sql, "INSERT INTO pg_temp.retl_run_rows (key, data) SELECT ");
	retl_diff_append_key_array(&sql, sync->key_names, sync->nkeys);
	appendStringInfoString(&sql, ", d.data FROM (");
	appendStringInfoString(&sql, retl_diff_source_query(sync));
	appendStringInfoString(&sql, "\n) q, LATERAL (SELECT ");
	retl_append_row_data(&sql, sync, "q");
	/* every row counted, for retl.runs (a runner publishes the count) */
	appendStringInfoString(&sql, ") d(data) WHERE retl._run_tick()");
	rows = retl_owner_exec(sync->owner, sql.data, path, SPI_OK_INSERT);
	retl_progress_rows(rows);

	check_null_keys(result_name(sync));
	fail_on_key(DUPLICATE_IN_ROWS, result_name(sync), false);
	return rows;
}

/* Queue ops a mode sends: A(dded), C(hanged), R(emoved). */
static const char *
mode_ops(RetlSync *sync)
{
	switch (sync->mode)
	{
		case 'i':
			return "{A}";
		case 'p':
			return "{C}";
		case 'm':
			return "{A,C,R}";
		default:
			return "{A,C}";
	}
}

/* The queue ops whose rows carry data, of a mode (D: every row, a replace). */
static const char *
data_ops(RetlSync *sync, bool send, bool replace)
{
	if (replace)
		return "{A,C,U,H}";
	if (!send)
		return "{}";
	return mode_ops(sync);
}

/*
 * The ops a run writes in its diff, as letters: those sent (a replace:
 * every row's); the probe writes L and N always.
 */
static char *
written_ops(RetlSync *sync, bool send, bool replace)
{
	const char *ops = replace ? "{A,C,U}" : data_ops(sync, send, false);
	StringInfoData letters;

	initStringInfo(&letters);
	for (const char *c = ops; *c; c++)
		if (*c != '{' && *c != '}' && *c != ',')
			appendStringInfoChar(&letters, *c);
	return letters.data;
}

/*
 * Two rows of the result share a key (the probe saw it twice): evaluate
 * the result's keys again to name one.
 */
static void
find_duplicate_key(RetlSync *sync, const char *what)
{
	StringInfoData sql;

	make_run_table(sync->owner);
	initStringInfo(&sql);
	appendStringInfoString(&sql, "INSERT INTO pg_temp.retl_run_rows (key) SELECT ");
	retl_diff_append_key_array(&sql, sync->key_names, sync->nkeys);
	appendStringInfo(&sql, " FROM (%s\n) q", retl_diff_source_query(sync));
	(void) retl_owner_exec(sync->owner, sql.data, sync->search_path, SPI_OK_INSERT);
	fail_on_key(DUPLICATE_IN_ROWS, what, false);
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("the result of %s has duplicate keys", what),
			 errdetail("Its rows were more than its keys, but not when read again."),
			 errhint("The key must identify one row of the result.")));
}

/*
 * The diff of a sync's result against its snapshot, into
 * pg_temp.retl_run_diff (key, data, op): the rows that are sent,
 * A(dded), C(hanged) and R(emoved) keys as the mode asks (in a replace,
 * U for every unchanged row too), and L for a key whose snapshot holds a
 * hash of retl 0.1, compared here and made H (only rehashed) or C.  data
 * is built for the rows whose op is in data_ops only.
 *
 * The snapshot's keys and hashes are loaded into memory (probe.c); one
 * statement, run as the sync's owner, reads the result, hashes each row
 * from its mapped values, asks the probe what the row is, and writes
 * (with JSON built) the rows to send; the keys no row had are the
 * removed ones.  The probe keeps each row's key and hash: with save, each
 * part's are written as the sync's new snapshot (snapshot.c), in the
 * caller's transaction.  A snapshot too large for retl.run_memory is
 * diffed a part of its keys at a time, the statement running once for
 * each; a first part that outgrows it with the keys the query adds is
 * diffed again in more parts.  A NULL key is N (the run fails on it); a
 * second row of a key is seen by the probe (the run fails, naming it).
 *
 * A run that would write no row, the first of a sync that sends nothing
 * (no snapshot: no row of 0.1's; not sent: no data), only counts the
 * probe's answers: no temporary table, and nothing read of a row but its
 * key and values.  Returns whether pg_temp.retl_run_diff was written.
 */
static bool
diff_result(RetlSync *sync, bool send, bool replace, bool save, RetlRunCounts *counts)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	char	   *what = result_name(sync);
	StringInfoData sql;
	StringInfoData from;
	StringInfoData data;
	StringInfoData filtered;
	int64		snapshot_rows;
	int64		removed = 0;
	RetlProbe  *probe;
	bool		int_keys;
	bool		op_only;
	bool		shared;
	HeapTuple	tup;
	TupleDesc	desc;
	int64		expected;
	char	   *ops;
	RetlRunQueue *queue = NULL;

	retl_progress_phase("reading the snapshot");
	desc = sync->audience_id ? NULL : retl_diff_describe_result(sync);
	probe = retl_probe_begin(sync->id, sync->name, desc != NULL && retl_diff_integer_key(sync, desc), NULL);
	int_keys = retl_probe_int_keys(probe);
	/* the changes expected: a hundredth of the snapshot, as the planner is told */
	expected = retl_probe_snapshot_rows(probe) * retl_probe_parts(probe) / 100;
	if (desc != NULL && retl_probe_empty(probe))
	{
		/* no snapshot yet: room for the rows the planner expects */
		RetlRowEstimate estimate = {retl_diff_source_query(sync), 0};

		retl_with_path(sync->owner, sync->search_path, retl_estimate_query_rows, &estimate);
		retl_probe_expect_rows(probe, estimate.rows);
		expected = (int64) Min(estimate.rows, (double) PG_INT32_MAX);
	}
	if (retl_probe_parts(probe) > 1)
		ereport(LOG,
				(errmsg("run of %s diffs its snapshot in %d parts, its query running once for each",
						what, retl_probe_parts(probe)),
				 errhint("Its keys and hashes take more than retl.run_memory.")));

	initStringInfo(&from);
	initStringInfo(&data);
	op_only = desc != NULL && !send && !replace && retl_probe_empty(probe);
	retl_diff_append_result(&from, &data, sync, desc, int_keys, op_only);
	initStringInfo(&sql);
	if (op_only)
	{
		/* (the probe keeps a NULL key, N, to name it) */
		appendStringInfo(&sql, "SELECT pg_catalog.count(c.\"retl.op\") FROM %s", from.data);
	}
	else
	{
		retl_owner_temp_table(sync->owner, "retl_run_diff",
							  "key pg_catalog.jsonb, data pg_catalog.jsonb, op pg_catalog.text");
		appendStringInfo(&sql, "INSERT INTO pg_temp.retl_run_diff (key, data, op)"
						 " SELECT %s, CASE WHEN c.\"retl.op\" OPERATOR(pg_catalog.=) 'L'"
						 " OR c.\"retl.op\" OPERATOR(pg_catalog.=) ANY (%s::pg_catalog.\"char\"[]) THEN %s END,"
						 " c.\"retl.op\"::pg_catalog.text FROM %s",
						 int_keys ? "pg_catalog.jsonb_build_array(c.\"retl.key\")" : "c.\"retl.key\"",
						 quote_literal_cstr(data_ops(sync, send, replace)), data.data, from.data);
		/* the probe answers NULL for the rows not written */
		appendStringInfoString(&sql, " WHERE c.\"retl.op\" IS NOT NULL");
	}
	/* the same, filtering the rows where they are read, if its plan allows */
	initStringInfo(&filtered);
	if (!retl_diff_append_filtered(&filtered, sync, desc, int_keys, op_only, data_ops(sync, send, replace)))
		filtered.data = NULL;
	ops = written_ops(sync, send, replace);
	retl_probe_write_ops(probe, ops);
	/* a run's changes queued as the statement returns them (run_queue.c) */
	if (filtered.data != NULL && save && send && !replace && !op_only)
		queue = retl_run_queue_begin(sync->id, ops, expected);

	retl_progress_phase("evaluating");
	for (;;)
	{
		if (sync->audience_id)
			exec(sql.data, SPI_OK_INSERT);
		else if (filtered.data == NULL ||
				 !retl_probe_exec_filtered(sync->owner, filtered.data, sync->search_path, !op_only,
										   queue))
		{
			/* (the next parts' statement is the same: not planned again) */
			filtered.data = NULL;
			(void) retl_owner_exec(sync->owner, sql.data, sync->search_path,
								   op_only ? SPI_OK_SELECT : SPI_OK_INSERT);
		}
		shared = retl_probe_shared(probe);
		if (retl_probe_overflowed(probe))
		{
			/* part 0 outgrew retl.run_memory: again, in more parts */
			if (!op_only)
				exec("TRUNCATE pg_temp.retl_run_diff", SPI_OK_UTILITY);
			if (queue != NULL)
				retl_run_queue_undo(queue);
			if (shared)
				ereport(LOG,
						(errmsg("run of %s added more keys than its shared snapshot had room for: its query runs again in one process",
								what),
						 errhint("Parallel workers share a run's snapshot with room for a quarter more keys than it holds.")));
			else
				ereport(LOG,
						(errmsg("run of %s diffs its result in %d parts, its query running once for each",
								what, retl_probe_parts(probe)),
						 errhint("Its keys and hashes take more than retl.run_memory.")));
			retl_progress_phase("evaluating");
			continue;
		}
		removed += retl_probe_queue_removed(probe, !replace && send && sync->mode == 'm');
		if (save)
			retl_probe_save_part(probe);
		if (!retl_probe_next_part(probe))
			break;
	}
	if (queue != NULL)
	{
		counts->queued = retl_run_queue_end(queue);
		ereport(DEBUG1,
				(errmsg_internal("run of %s queued " INT64_FORMAT " changes as its statement returned them",
								 what, counts->queued)));
	}
	/* (the keys a resync forgot that no row had: removed, not the snapshot's) */
	snapshot_rows = retl_probe_snapshot_rows(probe) + retl_probe_resynced_removed(probe);
	counts->rows = retl_progress_count();
	retl_progress_rows(counts->rows);
	if (retl_probe_duplicate(probe))
		find_duplicate_key(sync, what);

	retl_progress_phase("diffing");
	/* the probe counted them, but for 0.1's rows (L), compared here */
	retl_probe_counts(probe, &counts->added, &counts->changed);
	counts->removed = removed;
	if (retl_probe_legacy(probe))
	{
		/* keys whose snapshot holds retl 0.1's hash: the md5 of their JSON */
		values[0] = Int32GetDatum(sync->id);
		values[1] = CStringGetTextDatum(data_ops(sync, send, replace));
		if (SPI_execute_with_args("WITH l AS (UPDATE pg_temp.retl_run_diff d SET op = CASE WHEN sn.legacy_hash"
								  " OPERATOR(pg_catalog.=) pg_catalog.md5(d.data::pg_catalog.text) THEN 'H' ELSE 'C' END"
								  " FROM retl.snapshot_edits sn WHERE d.op = 'L' AND sn.sync_id = $1"
								  " AND sn.legacy_hash IS NOT NULL AND sn.key = d.key RETURNING d.op)"
								  " SELECT pg_catalog.count(*) FILTER (WHERE l.op = 'C') FROM l",
								  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "retl: could not compare the snapshot of sync \"%s\" of an older version", sync->name);
		tup = SPI_tuptable->vals[0];
		counts->changed += strtoi64(SPI_getvalue(tup, SPI_tuptable->tupdesc, 1), NULL, 10);
		if (SPI_execute_with_args("UPDATE pg_temp.retl_run_diff d SET data = NULL"
								  " WHERE d.op IN ('H', 'C') AND d.data IS NOT NULL AND NOT d.op = ANY ($2::pg_catalog.text[])",
								  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "retl: could not compare the snapshot of sync \"%s\" of an older version", sync->name);
	}
	if (retl_probe_null_key(probe) != NULL)
		fail_null_key(what, retl_probe_null_key(probe));
	if (save)
		retl_probe_save_end(probe);
	retl_probe_end(probe);
	/* without duplicate keys, every row is a key of the snapshot's or an added one */
	if (counts->rows != snapshot_rows - counts->removed + counts->added)
	{
		if (sync->audience_id)
			elog(ERROR, "retl: audience sync \"%s\" read " INT64_FORMAT " members for " INT64_FORMAT " keys",
				 sync->name, counts->rows, snapshot_rows - counts->removed + counts->added);
		find_duplicate_key(sync, what);
	}
	return !op_only;
}

/*
 * Run a diff sync in the current transaction (SPI connected): queue what
 * changed (unless !send) and save the snapshot (what changed of it).
 */
void
retl_diff_run(RetlSync *sync, bool send, bool replace, RetlRunCounts *counts)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];

	memset(counts, 0, sizeof(RetlRunCounts));
	values[0] = Int32GetDatum(sync->id);

	if (sync->mode == 'a')
	{
		/* every row of every run is an event; no snapshot */
		counts->rows = evaluate(sync, sync->search_path);
		if (send && SPI_execute_with_args("INSERT INTO retl.queue (sync_id, op, key, data)"
										  " SELECT $1, 'E', key, data FROM pg_temp.retl_run_rows",
										  1, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "retl: could not queue the rows of a run");
		counts->added = counts->rows;
		if (send)
			retl_queued_at_commit(sync->id, counts->rows);
		return;
	}

	/*
	 * The rows to send, kept once, and the new snapshot saved: an
	 * unchanged row costs no write at all.
	 */
	if (!diff_result(sync, send, replace, true, counts))
		return;					/* nothing to queue */
	retl_progress_phase("queueing");

	values[1] = CStringGetTextDatum(send ? mode_ops(sync) : "{}");
	if (replace)
	{
		/*
		 * A replace (a resync whose connector replaces the destination's
		 * set): the changes queued before it are superseded, and every row
		 * of the result goes (op P), as one session (queue/claim.c).
		 */
		if (SPI_execute_with_args("DELETE FROM retl.queue q WHERE q.sync_id = $1 AND NOT q.in_flight",
								  1, types, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "retl: could not drop the changes a replace supersedes");
	}
	/* a replace sends the whole result, whatever the snapshot holds */
	if (SPI_execute_with_args(replace ?
							  "INSERT INTO retl.queue (sync_id, op, key, data)"
							  " SELECT $1, 'P', d.key, d.data FROM pg_temp.retl_run_diff d"
							  " WHERE d.op <> 'R' AND $2 IS NOT NULL" :
							  "INSERT INTO retl.queue (sync_id, op, key, data)"
							  " SELECT $1, d.op::\"char\", d.key, d.data FROM pg_temp.retl_run_diff d"
							  " WHERE d.op = ANY ($2::text[])",
							  2, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not queue the changes of sync \"%s\"", sync->name);
	/* (with those queued as the statement returned them) */
	counts->queued += (int64) SPI_processed;
	/* an empty replace removes whom the sync added instead (empty_replace.c) */
	if (replace && counts->queued == 0)
	{
		counts->queued = retl_replace_empty(sync);
		replace = false;		/* (no session to start) */
	}
	if (counts->queued > 0)
	{
		retl_queued_at_commit(sync->id, counts->queued);

		/*
		 * The run commits with synchronous_commit on (the runner's commits
		 * otherwise do not wait for the flush: runner.c; standbys as the
		 * server's setting says): the worker may send what it queued as
		 * soon as it commits, and a crash or failover losing the commit
		 * after that would leave the snapshot as it was before the run
		 * while the destination has the run's rows; a row changed back
		 * meanwhile would then never be sent again.
		 */
		(void) set_config_option("synchronous_commit", "on", PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	}
	if (replace && counts->queued > 0)
	{
		Oid			rtypes[2] = {INT4OID, INT8OID};
		Datum		rvalues[2] = {values[0], Int64GetDatum(counts->queued)};

		if (SPI_execute_with_args("INSERT INTO retl.replace_store AS r (sync_id, session, total)"
								  " VALUES ($1, 1 + (pg_catalog.random() * 1e14)::bigint, $2)"
								  " ON CONFLICT (sync_id) DO UPDATE SET session = EXCLUDED.session,"
								  " total = EXCLUDED.total, batches = 0, started_at = pg_catalog.now()",
								  2, rtypes, rvalues, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "retl: could not start the replace of sync \"%s\"", sync->name);
	}

	exec("DROP TABLE pg_temp.retl_run_diff", SPI_OK_UTILITY);
}

/*
 * Recompute an audience's membership in the current transaction: members
 * who entered or exited are recorded as events, and the syncs of the
 * audience are queued to run.
 */
void
retl_audience_refresh(int audience_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(audience_id)};
	char	   *query;
	char	   *name;
	char	   *path;
	Oid			owner;
	Datum	   *keys;
	int			nkeys;
	char	  **names;
	bool		isnull;
	StringInfoData sql;

	if (SPI_execute_with_args("SELECT query, owner::oid, key_columns, name, search_path FROM retl.audience_store WHERE id = $1",
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR, (errmsg("audience %d was dropped", audience_id)));
	query = retl_trimmed_query(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	path = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
	owner = (Oid) strtoul(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2), NULL, 10);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)),
					  TEXTOID, -1, false, TYPALIGN_INT, &keys, NULL, &nkeys);
	names = palloc(sizeof(char *) * nkeys);
	for (int i = 0; i < nkeys; i++)
		names[i] = TextDatumGetCString(keys[i]);

	make_run_table(owner);
	initStringInfo(&sql);
	appendStringInfoString(&sql, "INSERT INTO pg_temp.retl_run_rows (key) SELECT DISTINCT ");
	retl_diff_append_key_array(&sql, names, nkeys);
	appendStringInfo(&sql, " FROM (%s\n) q", query);
	(void) retl_owner_exec(owner, sql.data, path, SPI_OK_INSERT);

	check_null_keys(psprintf("audience \"%s\"", name));

	if (SPI_execute_with_args("WITH entered AS ("
							  " INSERT INTO retl.audience_member_store (audience_id, key, since)"
							  " SELECT $1, c.key, pg_catalog.now() FROM pg_temp.retl_run_rows c"
							  " ON CONFLICT DO NOTHING RETURNING key),"
							  " exited AS ("
							  " DELETE FROM retl.audience_member_store m WHERE m.audience_id = $1"
							  " AND NOT EXISTS (SELECT 1 FROM pg_temp.retl_run_rows c WHERE c.key = m.key)"
							  " RETURNING key)"
							  " INSERT INTO retl.audience_event_store (audience_id, key, event, at)"
							  " SELECT $1, key, 'entered', pg_catalog.now() FROM entered"
							  " UNION ALL SELECT $1, key, 'exited', pg_catalog.now() FROM exited",
							  1, types, values, NULL, false, 0) != SPI_OK_INSERT ||
		SPI_execute_with_args("UPDATE retl.audience_store SET last_refresh_at = pg_catalog.now(),"
							  " last_error = NULL WHERE id = $1",
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE ||
		SPI_execute_with_args("INSERT INTO retl.run_store (sync_id, why)"
							  " SELECT s.id, 'after' FROM retl.syncs s WHERE s.audience_id = $1"
							  /* (not one being dropped: models/runs.c, the chained runs) */
							  " AND NOT s.paused AND " RETL_SYNC_FREE_SQL("s.id"),
							  1, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not record the members of audience %d", audience_id);
}

PG_FUNCTION_INFO_V1(retl_preview);

/*
 * retl_preview(sync, n): the first n records the next run would send
 * (op, key, data), computed like a run in a subtransaction rolled back.
 */
Datum
retl_preview(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	volatile int n = PG_ARGISNULL(1) ? 10 : PG_GETARG_INT32(1);
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	List	   *syncs;
	RetlSync   *sync;
	Oid			types[2] = {INT4OID, TEXTOID};
	Oid			lookup_types[2] = {TEXTOID, REGROLEOID};
	Datum		values[2];
	StringInfoData sql;
	RetlRunCounts counts;
	Oid			save_uid;
	int			save_sec;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sync name must not be null")));
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("n must not be negative")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	InitMaterializedSRF(fcinfo, 0);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "retl: SPI_connect failed");
		/* as the extension (the sync's query runs as its owner), for a caller who may */
		values[0] = CStringGetTextDatum(name);
		values[1] = ObjectIdGetDatum(GetUserId());
		(void) retl_begin_as(retl_extension_owner(), SECURITY_LOCAL_USERID_CHANGE,
							 RETL_SAFE_PATH, &save_uid, &save_sec);
		if (SPI_execute_with_args("SELECT retl._own_sync($1, $2)", 2, lookup_types,
								  values, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "retl: could not look up sync");
		syncs = retl_sync_load(pg_strtoint32(SPI_getvalue(SPI_tuptable->vals[0],
																  SPI_tuptable->tupdesc, 1)));
		sync = linitial(syncs);
		if (!sync->diff)
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("sync \"%s\" delivers changes in real time and has no runs to preview", name),
					 errhint("See retl.sync_status for its queue.")));
		/* a run asked now that would record without sending sends nothing (runs.c) */
		if (!retl_runs_would_send(sync->id, 0, "manual", true))
			n = 0;
		/* the query runs as its owner, with its creator's search_path, as in runs */
		initStringInfo(&sql);
		if (sync->mode == 'a')
		{
			(void) evaluate(sync, sync->search_path);
			appendStringInfoString(&sql, "WITH d AS (SELECT c.key, c.data, 'E' AS op FROM pg_temp.retl_run_rows c)");
		}
		else
		{
			(void) diff_result(sync, true, false, false, &counts);
			appendStringInfoString(&sql, "WITH d AS (SELECT c.key, c.data, c.op FROM pg_temp.retl_run_diff c)");
		}
		appendStringInfo(&sql, " SELECT CASE d.op WHEN 'R' THEN 'delete' WHEN 'E' THEN 'insert'"
						 " WHEN 'A' THEN '%s' ELSE 'upsert' END, ",
						 sync->mode == 'i' ? "insert" : "upsert");
		retl_append_key_object(&sql, sync, "d.key");
		appendStringInfo(&sql, ", d.data FROM d WHERE d.op = ANY ($2::text[]) ORDER BY d.op, d.key LIMIT %d", n);
		values[0] = Int32GetDatum(sync->id);
		values[1] = CStringGetTextDatum(sync->mode == 'a' ? "{E}" : mode_ops(sync));
		if (SPI_execute_with_args(sql.data, 2, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "retl: could not preview sync \"%s\"", name);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			Datum		row[3];
			bool		nulls[3];

			for (int c = 0; c < 3; c++)
				row[c] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, c + 1, &nulls[c]);
			/* copied by the tuplestore, which outlives the subtransaction */
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
		}
		SPI_finish();
		/* a preview changes nothing; the rollback also ends the owner's identity */
		RollbackAndReleaseCurrentSubTransaction();
		Assert(GetUserId() == save_uid);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		retl_name_expression(edata);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		ReThrowError(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return (Datum) 0;
}
