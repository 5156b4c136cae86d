/*
 * backfill.c: queueing the rows a table had when its upsert sync was created.
 *
 * The capture trigger exists (committed) before the worker starts here, so
 * every later change is captured anyway; the backfill only has to queue
 * each existing key once.  It walks the table in key order, one chunk per
 * short transaction of the worker, remembering the last key in
 * retl.syncs.backfill_cursor, so it never holds a lock writers would wait
 * for and survives restarts.  Keys queued twice (by the trigger and the
 * backfill) are coalesced at delivery like any other upsert.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "backfill.h"
#include "mapping.h"

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

	retl_check_source(sync);
	initStringInfo(&cols);
	retl_append_key_columns(&cols, sync, "t");

	initStringInfo(&sql);
	appendStringInfo(&sql, "WITH b AS (SELECT %s FROM %s%s t", cols.data, retl_only(sync->relid),
					 format_type_be_qualified(get_rel_type_id(sync->relid)));
	if (sync->backfill_cursor)
	{
		appendStringInfo(&sql, " WHERE ROW(%s) > ROW(", cols.data);
		for (int i = 0; i < sync->nkeys; i++)
			appendStringInfo(&sql, "%s($2::jsonb OPERATOR(pg_catalog.->>) %d)::%s",
							 i > 0 ? ", " : "", i,
							 format_type_be_qualified(get_atttype(sync->relid, sync->key_attnums[i])));
		appendStringInfoChar(&sql, ')');
	}
	appendStringInfo(&sql, " ORDER BY %s LIMIT %d),", cols.data, RETL_BACKFILL_CHUNK);
	resetStringInfo(&cols);
	retl_append_key_columns(&cols, sync, "b");
	appendStringInfo(&sql,
					 " k AS (SELECT pg_catalog.jsonb_build_array(%s) AS key,"
					 " pg_catalog.row_number() OVER (ORDER BY %s) AS n FROM b),"
					 " i AS (INSERT INTO retl.queue (sync_id, op, key)"
					 " SELECT $1, 'b', k.key FROM k ORDER BY k.n)"
					 " SELECT pg_catalog.count(*), (SELECT k2.key::text FROM k k2 ORDER BY k2.n DESC LIMIT 1)"
					 " FROM k", cols.data, cols.data);

	values[0] = Int32GetDatum(sync->id);
	if (sync->backfill_cursor)
		values[1] = CStringGetTextDatum(sync->backfill_cursor);
	else
		nulls[1] = 'n';
	if (SPI_execute_with_args(sql.data, 2, types, values, nulls, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "retl: backfill of sync \"%s\" failed", sync->name);
	count = strtoi64(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), NULL, 10);
	last = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	more = count == RETL_BACKFILL_CHUNK;

	values[1] = last ? CStringGetTextDatum(last) : (Datum) 0;
	nulls[1] = last ? ' ' : 'n';
	if (SPI_execute_with_args(more ?
							  "UPDATE retl.syncs SET backfill_cursor = $2::jsonb WHERE id = $1" :
							  "UPDATE retl.syncs SET backfill_cursor = $2::jsonb, backfill_done = true WHERE id = $1",
							  2, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not save the backfill position of sync \"%s\"", sync->name);
	return more;
}
