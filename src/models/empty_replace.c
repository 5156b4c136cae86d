/*
 * empty_replace.c: a replace (a resync whose connector replaces the
 * destination's set: models/diff.c) whose result is empty.
 *
 * Meta's usersreplace takes no session without people (a request's data
 * must hold at least one), so an empty result cannot replace the
 * audience.  Sending nothing would leave it full: the destination would
 * not converge to the source.  Instead the run queues the removal (op R,
 * sent as an exit is: DELETE .../users, in batches) of every key the sync
 * remembers having added (retl.remembered_id_store: the row kept when the
 * person was added, which the removal sends).  An add whose request is in
 * flight at the run is not among them: its queue row is not marked in
 * flight (requests are tracked in memory), the replace drops it, and the
 * person it adds when it lands stays (a known gap, as for a non-empty
 * replace, whose session such an add may precede or follow).
 *
 * It runs in the run's transaction, after the replace dropped the
 * changes queued before it, beside the run's empty snapshot: both commit
 * or neither does.  A removal delivered forgets its key's row with the
 * outcome (sync/ids.c), so after a crash only the removals not yet
 * recorded are sent again, of the same rows (removing a person twice
 * removes nothing more), and a resync again queues those still kept.
 *
 * Whom the sync never added (by hand, by another tool, a row whose add
 * was lost) stays: Meta cannot list an audience's people, so a removal
 * can only name the rows retl sent.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "models/empty_replace.h"
#include "sync/mapping.h"

/*
 * Queue the removal of every key the sync remembers adding (SPI
 * connected, in the run's transaction); returns how many.
 */
int64
retl_replace_empty(RetlSync *sync)
{
	char	  **fields = retl_key_field_names(sync);
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(sync->id)};
	StringInfoData sql;

	/* a kept key is the key as sent (an object of the key fields): queued, an array */
	initStringInfo(&sql);
	appendStringInfoString(&sql, "INSERT INTO retl.queue (sync_id, op, key)"
						   " SELECT $1, 'R', k.key FROM (SELECT pg_catalog.jsonb_build_array(");
	for (int i = 0; i < sync->nkeys; i++)
		appendStringInfo(&sql, "%sr.key OPERATOR(pg_catalog.->) %s::pg_catalog.text", i > 0 ? ", " : "",
						 quote_literal_cstr(fields[i]));
	appendStringInfoString(&sql, ") AS key FROM retl.remembered_id_store r WHERE r.sync_id = $1"
						   " AND r.id IS NOT NULL AND r.id OPERATOR(pg_catalog.<>) ''"
						   ") k"
						   " ORDER BY k.key");
	if (SPI_execute_with_args(sql.data, 1, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not queue the removals of the empty replace of sync \"%s\"",
			 sync->name);
	return (int64) SPI_processed;
}
