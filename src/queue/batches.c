/*
 * batches.c: a claim's records made into requests.
 *
 * The records a claim took (claim.c), or a backfill's (backfill.c), are
 * read as the sync's owner where the sync sends each key's row as it is
 * (rows.c), then cut into batches of batch_size records, each a request
 * of its own that its destination's connector builds and that holds its
 * keys until it is freed.  What a connector leaves out goes back to the
 * queue, or is dead-lettered when it could not be built.  A batch of a
 * replace learns its place in the replace here.  Everything runs in the
 * claim transaction; the requests live in memory contexts of their own
 * and outlive it.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "base/plans.h"
#include "queue/queue.h"
#include "sync/mapping.h"

/*
 * The batch's place in the sync's replace (in the claim transaction, its
 * rows just claimed): numbered, and the last when no row of it waits (a
 * replace has one batch in flight at a time: this one).
 */
static RetlReplace *
replace_batch(RetlRequest *req)
{
	Oid			types[2] = {INT4OID, INT8ARRAYOID};
	Datum		values[2] = {Int32GetDatum(req->sync_id),
	retl_queue_id_array(req->records, req->nrecords)};
	RetlReplace *r = MemoryContextAllocZero(req->cxt, sizeof(RetlReplace));
	HeapTuple	tup;
	bool		isnull;

	if (retl_spi_execute("UPDATE retl.replace_store r SET batches = r.batches + 1 WHERE r.sync_id = $1"
						 " RETURNING r.session, r.batches, r.total,"
						 " NOT EXISTS (SELECT 1 FROM retl.queue q WHERE q.sync_id = $1 AND q.op = 'P'"
						 " AND NOT q.in_flight AND q.id <> ALL ($2))",
						 2, types, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "retl: sync \"%s\" has rows of a replace but no replace", req->sync_name);
	tup = SPI_tuptable->vals[0];
	r->session = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
	r->batch = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	r->total = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
	r->last = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 4, &isnull));
	return r;
}

/*
 * Records [nrecords, claimed) of a built request: dead-letter those the
 * connector could not build, let go those it had nothing to send for,
 * release the others.
 */
void
retl_queue_leave_out(RetlRequest *req, int claimed)
{
	int			kept = req->nrecords;
	int			back = kept;

	for (int i = kept; i < claimed; i++)
	{
		if (req->records[i].unsent != NULL)
			retl_queue_dead_letter_unsent(req, &req->records[i]);
		else if (req->records[i].nothing_to_send)
			retl_queue_done_unsent(req, &req->records[i]);
		else
			req->records[back++] = req->records[i];
	}
	req->nrecords = back;
	retl_queue_release(req, kept);
	req->nrecords = kept;
}

/*
 * Build one batch of a claim with its destination's connector; NULL when
 * nothing is left to send (req freed).  What the connector left out goes
 * back to the queue (it did not fit in max_batch_bytes, or needs another
 * request shape), but a record it could not build is dead-lettered.
 */
static RetlRequest *
build_batch(RetlSync *sync, RetlRequest *req)
{
	int			claimed = req->nrecords;

	/* a batch of a replace: its place in it */
	for (int i = 0; i < req->nrecords && req->replace == NULL; i++)
		if (req->records[i].op == 'r')
			req->replace = replace_batch(req);
	retl_queue_build(req, sync);
	if (req->nrecords < claimed)
		retl_queue_leave_out(req, claimed);
	if (req->nrecords == 0)
	{
		retl_http_free(req);
		return NULL;
	}
	return req;
}

/*
 * A request for a claim of the sync, without records yet: in a memory
 * context of its own, which everything of it lives in.
 */
RetlRequest *
retl_queue_new_request(RetlSync *sync)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "retl request", ALLOCSET_DEFAULT_SIZES);
	RetlRequest *req = MemoryContextAllocZero(cxt, sizeof(RetlRequest));

	req->cxt = cxt;
	req->sync_id = sync->id;
	req->sync_name = MemoryContextStrdup(cxt, sync->name);
	req->resyncs = sync->resyncs;
	req->kind = MemoryContextStrdup(cxt, sync->kind);
	req->dest_id = sync->dest_id;
	req->max_attempts = sync->max_attempts;
	req->max_retry_age_ms = sync->max_retry_age_ms;
	req->timeout_ms = sync->timeout_ms;
	req->follow_redirects = sync->follow_redirects;
	req->tls_verify = sync->tls_verify;
	return req;
}

/*
 * The batches of a claim (req, its records claimed): their rows read as
 * the owner (keys: the records' keys, for a sync that sends each key's row
 * as it is; NULL: the records carry their data), then batch_size records
 * a request, each built by the connector and holding its keys.  req is
 * the first of them or freed.  On error the caller's subtransaction undoes
 * the claim; the requests are freed.
 */
List *
retl_queue_batches(RetlSync *sync, RetlRequest *claim, Datum *keys)
{
	RetlRequest *volatile req = claim;
	RetlRequest *volatile part = NULL;
	List	   *volatile result = NIL;

	/* On error the caller's subtransaction undoes the claim; free the rest. */
	PG_TRY();
	{
		int			nrecords;

		if (keys != NULL)
			retl_queue_read_rows(sync, req, keys, false);
		else if (!sync->diff && retl_mapping_computes(sync))
		{
			/* the captured rows, mapped with their computed fields as the owner */
			Datum	   *rows = palloc(sizeof(Datum) * req->nrecords);

			for (int i = 0; i < req->nrecords; i++)
				rows[i] = DirectFunctionCall1(jsonb_in, CStringGetDatum(req->records[i].data));
			retl_queue_read_rows(sync, req, rows, true);
		}
		/* every key hidden from the owner, or dead-lettered: none left */
		retl_queue_drop_unsent(req);
		nrecords = req->nrecords;

		/* the batches, batch_size records each */
		for (int first = 0; first < nrecords; first += sync->batch_size)
		{
			int			n = Min(sync->batch_size, nrecords - first);

			if (n == nrecords)
			{
				part = req;		/* one batch: the claim itself */
				req = NULL;
			}
			else
				part = retl_http_copy(req, first, n);
			part = build_batch(sync, part);
			if (part != NULL)
			{
				retl_queue_hold(part);
				result = lappend(result, part);
				part = NULL;
			}
		}
		if (req != NULL)
			retl_http_free(req);
	}
	PG_CATCH();
	{
		ListCell   *lc;

		if (part != NULL)
			retl_http_free(part);
		if (req != NULL)
			retl_http_free(req);
		foreach(lc, result)
			retl_http_free((RetlRequest *) lfirst(lc));
		PG_RE_THROW();
	}
	PG_END_TRY();
	return result;
}
