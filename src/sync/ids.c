/*
 * ids.c: the destination's own ids of a sync's keys.
 *
 * CRMs and list APIs update, delete and add to lists by the ids they gave
 * the records, not by ours.  A connector's reading of an answer may give a
 * delivered record the destination's id (RetlRecord.remember_id); it is
 * kept per sync and key (the key as sent) in retl.remembered_id_store, in
 * the transaction that records the outcome, and read back when later
 * requests of that key are built (RetlRecord.known_id).  The rows go with
 * the sync; a delete acknowledged forgets its key's id.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "base/plans.h"
#include "sync/ids.h"

/* In the outcome transaction: keep (or forget) the ids of delivered records. */
void
retl_ids_remember(int sync_id, RetlRecord *records, int n)
{
	Datum	   *keys = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *gone = palloc(sizeof(Datum) * Max(n, 1));
	int			nkeep = 0;
	int			ngone = 0;
	Oid			types[3] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[3];

	for (int i = 0; i < n; i++)
	{
		if (records[i].remember_id != NULL)
		{
			keys[nkeep] = CStringGetTextDatum(records[i].key);
			ids[nkeep++] = CStringGetTextDatum(records[i].remember_id);
		}
		else if (records[i].op == 'd' && records[i].known_id != NULL)
			gone[ngone++] = CStringGetTextDatum(records[i].key);
	}
	values[0] = Int32GetDatum(sync_id);
	if (nkeep > 0)
	{
		values[1] = PointerGetDatum(construct_array(keys, nkeep, TEXTOID, -1, false, TYPALIGN_INT));
		values[2] = PointerGetDatum(construct_array(ids, nkeep, TEXTOID, -1, false, TYPALIGN_INT));
		if (retl_spi_execute("INSERT INTO retl.remembered_id_store AS r (sync_id, key, id)"
							 " SELECT $1, k.key::pg_catalog.jsonb, k.id"
							 " FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3)) AS k(key, id)"
							 " ON CONFLICT (sync_id, key) DO UPDATE SET id = EXCLUDED.id,"
							 " updated_at = pg_catalog.now()",
							 3, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "retl: could not keep the destination's ids of sync %d", sync_id);
	}
	if (ngone > 0)
	{
		values[1] = PointerGetDatum(construct_array(gone, ngone, TEXTOID, -1, false, TYPALIGN_INT));
		if (retl_spi_execute("DELETE FROM retl.remembered_id_store r WHERE r.sync_id = $1"
							 " AND r.key = ANY ($2::pg_catalog.jsonb[])",
							 2, types, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "retl: could not forget the destination's ids of sync %d", sync_id);
	}
}

/* In the claim transaction: the destination's ids of a request's keys. */
void
retl_ids_known(RetlRequest *req)
{
	Datum	   *keys = palloc(sizeof(Datum) * Max(req->nrecords, 1));
	Oid			types[2] = {INT4OID, TEXTARRAYOID};
	Datum		values[2];

	for (int i = 0; i < req->nrecords; i++)
		keys[i] = CStringGetTextDatum(req->records[i].key);
	values[0] = Int32GetDatum(req->sync_id);
	values[1] = PointerGetDatum(construct_array(keys, req->nrecords, TEXTOID, -1, false, TYPALIGN_INT));
	if (retl_spi_execute("SELECT k.n, r.id FROM pg_catalog.unnest($2) WITH ORDINALITY AS k(key, n)"
						 " JOIN retl.remembered_id_store r ON r.sync_id = $1"
						 " AND r.key = k.key::pg_catalog.jsonb",
						 2, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the destination's ids of sync %d", req->sync_id);
	for (uint64 j = 0; j < SPI_processed; j++)
	{
		int			i = (int) strtol(SPI_getvalue(SPI_tuptable->vals[j], SPI_tuptable->tupdesc, 1),
									 NULL, 10) - 1;

		req->records[i].known_id = MemoryContextStrdup(req->cxt,
													   SPI_getvalue(SPI_tuptable->vals[j],
																	SPI_tuptable->tupdesc, 2));
	}
}
