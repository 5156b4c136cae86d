/*
 * backfill.c: queueing the rows a table had when its upsert sync was created.
 *
 * The capture trigger exists (committed) before the worker starts here, so
 * every later change is captured anyway; the backfill only has to queue
 * each existing key once.  It walks the table in key order, one chunk per
 * short transaction of the worker, reading the keys as the sync's owner
 * (owner.c: only rows it may see are sent), remembering the last key in
 * retl.syncs.backfill_cursor, so it never holds a lock writers would wait
 * for and survives restarts.  A key the queue holds already (the trigger
 * queued a change of it) is not queued again: that change's record sends
 * the row as it is when claimed, which is what the backfill would send.
 * Unless its rows are in flight (in a request, or a destination's job):
 * what they send was read before the backfill began (a resync).
 * (A claim gathers the rows of a key that its scan reads into one record,
 * not every row the queue has of it: the trigger's rows of a table filled
 * in the transaction that created its sync, and the backfill's after them,
 * went twice.)
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"

#include "base/plans.h"
#include "capture/backfill.h"
#include "queue/queue.h"
#include "sync/mapping.h"
#include "sync/owner.h"

/* Queue the next chunk of keys; true while more remain. */
bool
retl_backfill_step(RetlSync *sync)
{
	StringInfoData sql;
	StringInfoData cols;
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = "  ";
	int64		count;
	char	   *last;
	bool		more;
	Datum	   *keys;

	retl_check_source(sync);
	initStringInfo(&cols);
	retl_append_key_columns(&cols, sync, "t");

	initStringInfo(&sql);
	appendStringInfo(&sql, "WITH b AS (SELECT %s FROM %s%s t", cols.data, retl_only(sync->relid),
					 format_type_be_qualified(get_rel_type_id(sync->relid)));
	if (sync->backfill_cursor)
	{
		appendStringInfoString(&sql, " WHERE ");
		retl_append_key_after(&sql, sync, "t", "$2::pg_catalog.jsonb");
	}
	appendStringInfo(&sql, " ORDER BY %s LIMIT %d) SELECT ", cols.data, RETL_BACKFILL_CHUNK);
	retl_append_key_array(&sql, sync, "b");
	resetStringInfo(&cols);
	retl_append_key_columns(&cols, sync, "b");
	appendStringInfo(&sql, " FROM b ORDER BY %s", cols.data);

	values[0] = Int32GetDatum(sync->id);
	if (sync->backfill_cursor)
		values[1] = CStringGetTextDatum(sync->backfill_cursor);
	else
		nulls[1] = 'n';
	/* the keys the owner can see */
	retl_owner_read(sync, sql.data, 2, types, values, nulls);
	count = (int64) SPI_processed;
	keys = palloc(sizeof(Datum) * Max(count, 1));
	for (int64 i = 0; i < count; i++)
	{
		bool		isnull;

		keys[i] = datumCopy(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull),
							false, -1);
	}
	last = count > 0 ? SPI_getvalue(SPI_tuptable->vals[count - 1], SPI_tuptable->tupdesc, 1) : NULL;
	more = count == RETL_BACKFILL_CHUNK;

	/* queued by the worker */
	if (count > 0)
	{
		Oid			qtypes[3] = {INT4OID, JSONBARRAYOID, BOOLARRAYOID};
		Datum		qvalues[3];
		HTAB	   *held = retl_queue_held_keys(sync->id);
		Datum	   *in_flight = palloc(sizeof(Datum) * count);

		for (int64 i = 0; i < count; i++)
		{
			uint64		hash = (uint64) DatumGetInt64(DirectFunctionCall2(jsonb_hash_extended, keys[i],
																		  Int64GetDatum(0)));

			in_flight[i] = BoolGetDatum(retl_queue_key_held(sync->id, held, hash));
		}
		hash_destroy(held);
		qvalues[0] = Int32GetDatum(sync->id);
		qvalues[1] = PointerGetDatum(construct_array(keys, (int) count, JSONBOID, -1, false, TYPALIGN_INT));
		qvalues[2] = PointerGetDatum(construct_array(in_flight, (int) count, BOOLOID, 1, true, TYPALIGN_CHAR));
		if (retl_spi_execute_by_index("INSERT INTO retl.queue (sync_id, op, key)"
									  " SELECT $1, 'b', k.key"
									  " FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3))"
									  " WITH ORDINALITY AS k(key, in_flight, n)"
									  " WHERE k.in_flight OR NOT EXISTS (SELECT FROM retl.queue q"
									  "  WHERE q.sync_id = $1"
									  "  AND pg_catalog.jsonb_hash_extended(q.key, 0) = pg_catalog.jsonb_hash_extended(k.key, 0)"
									  "  AND q.key = k.key)"
									  " ORDER BY k.n",
									  3, qtypes, qvalues, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "retl: backfill of sync \"%s\" failed", sync->name);
	}

	values[1] = last ? CStringGetTextDatum(last) : (Datum) 0;
	nulls[1] = last ? ' ' : 'n';
	if (SPI_execute_with_args(more ?
							  "UPDATE retl.syncs SET backfill_cursor = $2::jsonb WHERE id = $1" :
							  "UPDATE retl.syncs SET backfill_cursor = $2::jsonb, backfill_done = true WHERE id = $1",
							  2, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not save the backfill position of sync \"%s\"", sync->name);
	return more;
}
