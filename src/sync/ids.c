/*
 * ids.c: the destination's own ids of a sync's keys, and which keys it
 * may have.
 *
 * CRMs and list APIs update, delete and add to lists by the ids they gave
 * the records, not by ours.  A connector's reading of an answer may give a
 * delivered record the destination's id (RetlRecord.remember_id); it is
 * kept per sync and key (the key as sent) in retl.remembered_id_store, in
 * the transaction that records the outcome, and read back when later
 * requests of that key are built (RetlRecord.known_id).  The rows go with
 * the sync; a delete acknowledged forgets its key's row.
 *
 * "May have it" marks.  No id kept is not "never delivered": an answer
 * may name no id (a Klaviyo import that does not list the profile, a
 * Salesforce DUPLICATE_VALUE), or be lost (a timeout, a crash between the
 * send and its outcome) while the destination applied the request.  So
 * for a connector whose deletes (or exits) need the id
 * (RetlConnector.deletes_need_id), every key a built request carries to
 * the destination, other than a delete, is marked: a row of
 * retl.remembered_id_store with id NULL (an id kept later fills it in).
 * retl_ids_known reads the mark with the id (RetlRecord.may_have), and a
 * delete of a key with neither was never sent by this sync: the connector
 * counts it done without a request (r->nothing_to_send).  One with the
 * mark and no id is looked up where the destination can find a record by
 * what the sync keys it by (HubSpot's id_property, Salesforce's external
 * id): the delete's request is the lookup, whose answer keeps the id found
 * and sends the record again at once (RETL_OUTCOME_AGAIN: the next claim
 * deletes by the id), or, when the destination has no such record, counts
 * the delete done.  The value to look up by, when it is not the key
 * (HubSpot's id_property is a mapped field, absent from a delete), is kept
 * with the mark (its lookup column: RetlRecord.lookup, set by the build
 * from the record's data).  Elsewhere such a delete stays a dead letter
 * saying so.  retl.remembered_ids shows ids only; the marks are in
 * retl.remembered_id_store (id NULL).
 *
 * When: the mark is written where the request is built (retl_queue_build:
 * the claim transaction, a backfill's, or the outcome transaction that
 * rebuilds a refused batch's parts), which commits before the request is
 * sent, so no key leaves without its mark durable.  Writing it with the
 * outcome would be too late: a crash between the send and the outcome
 * leaves the record queued, and if the row is deleted meanwhile, the key's
 * rows are claimed together as one delete (claim.c), which would find no
 * mark while the destination may have the key.  A mark whose request is
 * never sent (a crash before the send) only makes a later delete of the
 * key a dead letter, as before marks; a build that fails rolls its marks
 * back with the claim.
 *
 * Cost: at most one INSERT ... ON CONFLICT DO NOTHING a built request, of
 * its keys that are not deletes and have no row (when the connector read
 * the ids; otherwise of all of them, a probe each for those already kept),
 * none when every key has its row and no lookup value; a lookup value
 * is rewritten only when it changed; connectors without deletes_need_id
 * (webhook, http, segment, ...) pay nothing.  A mark stays until a delete
 * of its key is delivered, or the sync is dropped.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "base/plans.h"
#include "connectors/connector.h"
#include "sync/ids.h"

/*
 * In the outcome transaction: keep the ids of delivered records, and forget
 * the rows (id or mark) of delivered deletes.
 */
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
		else if (records[i].op == 'd' &&
				 (records[i].known_id != NULL || records[i].may_have))
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

/*
 * In the claim transaction: the destination's ids of a request's keys
 * (known_id), and which keys it may have (may_have: an id or a mark).
 */
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
	if (retl_spi_execute("SELECT k.n, r.id, r.lookup FROM pg_catalog.unnest($2) WITH ORDINALITY AS k(key, n)"
						 " JOIN retl.remembered_id_store r ON r.sync_id = $1"
						 " AND r.key = k.key::pg_catalog.jsonb",
						 2, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the destination's ids of sync %d", req->sync_id);
	for (uint64 j = 0; j < SPI_processed; j++)
	{
		int			i = (int) strtol(SPI_getvalue(SPI_tuptable->vals[j], SPI_tuptable->tupdesc, 1),
									 NULL, 10) - 1;
		char	   *id = SPI_getvalue(SPI_tuptable->vals[j], SPI_tuptable->tupdesc, 2);
		char	   *lookup = SPI_getvalue(SPI_tuptable->vals[j], SPI_tuptable->tupdesc, 3);

		req->records[i].may_have = true;
		req->records[i].known_id = id != NULL ? MemoryContextStrdup(req->cxt, id) : NULL;
		req->records[i].lookup = lookup != NULL ? MemoryContextStrdup(req->cxt, lookup) : NULL;
	}
	req->ids_read = true;
}

/*
 * A delete (or exit) of a key the destination gave no id for: when this
 * sync never sent the key (no mark), nothing to send (r->nothing_to_send,
 * NULL returned); else why it is dead-lettered: the destination may have
 * it ("HubSpot", "id", "archive it").  (HubSpot and Salesforce look such
 * a key's id up instead, where they can: see their files.)
 */
char *
retl_ids_none(RetlRecord *r, const char *dest, const char *id, const char *verb)
{
	if (!r->may_have)
	{
		r->nothing_to_send = true;
		return NULL;
	}
	return psprintf("%s gave no %s for this key, which this sync sent (the answer named none, failed or was lost): %s may have it, and retl cannot %s without the %s",
					dest, id, dest, verb, id);
}

/*
 * For RetlConnector.deletes_need_id: every sync of the connector but an
 * append sync's (its records are events, never deleted: marking each
 * event's key would keep a row an event).
 */
bool
retl_ids_unless_append(RetlSync *sync)
{
	return sync->mode != 'a';
}

/*
 * Where a request is built (retl_queue_build), in a transaction that
 * commits before it is sent: mark the keys it carries to the destination
 * (see the header), when the sync's deletes need the destination's id.
 */
void
retl_ids_mark_sent(RetlRequest *req, RetlSync *sync)
{
	const RetlConnector *c = retl_connector(sync->kind);
	Datum	   *keys;
	Datum	   *lookups;
	bool	   *nulls;
	int			n = 0;
	bool		deletes = false;
	int			dims[1];
	int			lbs[1] = {1};
	Oid			types[3] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[3];

	if (c->deletes_need_id == NULL || req->nrecords == 0 || !c->deletes_need_id(sync))
		return;
	for (int i = 0; i < req->nrecords; i++)
		deletes |= req->records[i].op == 'd';
	/* a delete delivered forgets its key's mark: know which have one */
	if (deletes && !req->ids_read)
		retl_ids_known(req);
	keys = palloc(sizeof(Datum) * req->nrecords);
	lookups = palloc(sizeof(Datum) * req->nrecords);
	nulls = palloc(sizeof(bool) * req->nrecords);
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		/* a key with its row: only a lookup value the build gave, kept fresh */
		if (r->op == 'd' || ((r->may_have || r->known_id != NULL) && r->lookup == NULL))
			continue;
		nulls[n] = r->lookup == NULL;
		lookups[n] = r->lookup != NULL ? CStringGetTextDatum(r->lookup) : (Datum) 0;
		keys[n++] = CStringGetTextDatum(r->key);
		r->may_have = true;
	}
	if (n == 0)
		return;
	dims[0] = n;
	values[0] = Int32GetDatum(req->sync_id);
	values[1] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_md_array(lookups, nulls, 1, dims, lbs, TEXTOID, -1, false,
												   TYPALIGN_INT));
	if (retl_spi_execute("INSERT INTO retl.remembered_id_store AS r (sync_id, key, id, lookup)"
						 " SELECT $1, k.key::pg_catalog.jsonb, NULL, k.lookup"
						 " FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3)) AS k(key, lookup)"
						 " ON CONFLICT (sync_id, key) DO UPDATE SET lookup = EXCLUDED.lookup"
						 " WHERE EXCLUDED.lookup IS NOT NULL"
						 " AND r.lookup IS DISTINCT FROM EXCLUDED.lookup",
						 3, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not mark the keys sent of sync %d", req->sync_id);
}
