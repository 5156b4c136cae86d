/*
 * queue.c: claiming batches from the change queue and recording outcomes.
 *
 * Every function here runs in the worker inside a short transaction with
 * SPI connected, and never waits on the network: the worker claims a batch
 * (holds its rows in its memory, claim.c) and commits before the request
 * is sent, then records the outcome in a new transaction: delivered rows
 * are deleted.  A crash in between forgets the claim, and the rows are
 * sent again (at-least-once).  Only the rows in a destination's job are
 * marked in_flight in the table (jobs.c); retl_queue_recover() releases
 * those whose job is gone when the worker starts.
 *
 * Claims themselves are in claim.c, outcomes in outcome.c.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "storage/bufmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "base/plans.h"
#include "queue/mark.h"
#include "queue/queue.h"
#include "sync/dropping.h"
#include "sync/sync.h"
#include "sync/mapping.h"

static char *instance_id = NULL;

static int
id_cmp(const void *a, const void *b)
{
	int64		x = DatumGetInt64(*(const Datum *) a);
	int64		y = DatumGetInt64(*(const Datum *) b);

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* runs of consecutive ids a delete takes one by one, at most */
#define DELETE_RUNS 8

/*
 * Delete queue rows of a sync (ids: int8[]).  Rows queued together are
 * delivered together, their ids consecutive: a few runs of them are each
 * deleted by one walk of the primary key, where id = ANY descends it for
 * each id (2,000 rows in psql: 0.9-1.2 instead of 1.9-2.9 us a row).
 * Every id of a run is in the list, so a run deletes nothing else.  Ids in
 * more runs than DELETE_RUNS are deleted by the list.
 */
void
retl_queue_delete_ids(int sync_id, Datum ids)
{
	Datum	   *elems;
	int			n;
	int64		lo[DELETE_RUNS];
	int64		hi[DELETE_RUNS];
	int			runs = 0;

	deconstruct_array(DatumGetArrayTypeP(ids), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, NULL, &n);
	if (n == 0)
		return;
	qsort(elems, n, sizeof(Datum), id_cmp);
	for (int i = 0; i < n && runs <= DELETE_RUNS; i++)
	{
		int64		id = DatumGetInt64(elems[i]);

		if (runs > 0 && (id == hi[runs - 1] || id == hi[runs - 1] + 1))
			hi[runs - 1] = id;
		else if (runs++ < DELETE_RUNS)
			lo[runs - 1] = hi[runs - 1] = id;
	}

	if (runs > DELETE_RUNS)
	{
		Oid			types[2] = {INT8ARRAYOID, INT4OID};
		Datum		values[2] = {ids, Int32GetDatum(sync_id)};

		if (retl_spi_execute_by_index("DELETE FROM retl.queue WHERE sync_id = $2 AND id = ANY ($1)",
									  2, types, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "retl: could not delete queued changes");
		return;
	}
	for (int r = 0; r < runs; r++)
	{
		Oid			types[3] = {INT4OID, INT8OID, INT8OID};
		Datum		values[3] = {Int32GetDatum(sync_id), Int64GetDatum(lo[r]), Int64GetDatum(hi[r])};

		if (retl_spi_execute_by_index("DELETE FROM retl.queue WHERE sync_id = $1 AND id >= $2 AND id <= $3",
									  3, types, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "retl: could not delete queued changes");
	}
}

/*
 * Release rows a previous run of the worker claimed but never recorded;
 * rows in a destination's job stay in flight: the job is checked again.
 * False when rows of syncs being dropped were left as they are (the worker
 * never waits for a drop): the caller asks again later.
 */
bool
retl_queue_recover(void)
{
	int64		found;
	int64		released;
	bool		isnull;

	/*
	 * One scan of the queue (no index has in_flight): the rows found, then
	 * those released, but for rows of a sync being dropped, which go with
	 * it (sync/dropping.c).
	 */
	if (SPI_execute("WITH f AS MATERIALIZED (SELECT q.ctid AS at, q.sync_id FROM retl.queue q"
					" WHERE q.in_flight AND q.id <> ALL (ARRAY(SELECT pg_catalog.unnest(j.queue_ids)"
					" FROM retl.job_record_store j))),"
					" u AS (UPDATE retl.queue q SET in_flight = false FROM f"
					" WHERE q.ctid = f.at AND " RETL_SYNC_FREE_SQL("f.sync_id") " RETURNING 1)"
					" SELECT (SELECT pg_catalog.count(*) FROM f), (SELECT pg_catalog.count(*) FROM u)",
					false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "retl: could not release in-flight queue rows");
	found = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	released = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (released > 0)
		ereport(LOG,
				(errmsg("retl worker will resend " INT64_FORMAT " changes whose delivery was interrupted",
						released)));
	return released == found;
}

/*
 * Refresh the queue's statistics when it has grown well past what they
 * describe: the queue fills and drains faster than autovacuum analyzes it,
 * and claims are planned from those statistics.
 *
 * The queue grows on disk before the transaction filling it commits, and
 * ANALYZE counts none of its rows then: statistics saying "a few rows in
 * many pages" while a million wait would send every claim through the
 * whole sync.  So while the last ANALYZE found fewer than
 * SUSPECT_ROWS_PER_PAGE rows a page, it is done again at most every
 * retry_ms, up to SUSPECT_TRIES times after each growth: every second at the
 * start of a pass, and sooner once a claim found rows (the transaction that
 * filled the queue committed: see retl_queue_stats_suspect).
 */
#define SUSPECT_ROWS_PER_PAGE 10
#define SUSPECT_TRIES 30

/*
 * Grown: more than twice the pages the statistics counted, and this many
 * more.  A new database's queue has never been analyzed (0 pages): with a
 * slack of 128 pages its first sync's backfill (20,000 rows, 228 pages)
 * was claimed with no statistics at all, each claim filtering every row of
 * the sync (325 rows/s instead of 5,000; autovacuum analyzed it after the
 * minute the sync took).  An ANALYZE of a few hundred pages costs a few
 * milliseconds.
 */
#define GROWN_SLACK_PAGES 8

static int	suspect_tries = 0;
static TimestampTz last_analyze = 0;

void
retl_queue_analyze_if_stale(int retry_ms)
{
	Relation	queue;
	bool		grown;
	bool		isnull;

	/*
	 * Looked at every pass of the worker: from the relation itself, not by
	 * a query (parsing and planning one was 5% of the worker's time with
	 * batch_size 1).
	 */
	queue = table_open(get_relname_relid("queue", get_namespace_oid("retl", false)),
					   AccessShareLock);
	grown = (int64) RelationGetNumberOfBlocks(queue) >
		2 * ((int64) Max(queue->rd_rel->relpages, 0) + GROWN_SLACK_PAGES);
	table_close(queue, AccessShareLock);
	if (grown)
		suspect_tries = SUSPECT_TRIES;
	else if (suspect_tries == 0 ||
			 !TimestampDifferenceExceeds(last_analyze, GetCurrentTimestamp(), retry_ms))
		return;
	suspect_tries--;
	last_analyze = GetCurrentTimestamp();
	if (SPI_execute("ANALYZE retl.queue", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "retl: could not analyze retl.queue");
	if (SPI_execute("SELECT c.reltuples >= c.relpages * " CppAsString2(SUSPECT_ROWS_PER_PAGE)
					" FROM pg_catalog.pg_class c WHERE c.oid = 'retl.queue'::regclass",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "retl: could not look at the statistics of retl.queue");
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		suspect_tries = 0;
}

/*
 * Are the statistics suspect (see above)?  Then a claim that found rows to
 * take analyzes again first (claim.c), rather than waiting for the next
 * pass: a claim planned from statistics that counted none of the rows now
 * committed walks the whole sync for its keys (half a second for 50,000
 * rows), and a pass makes one per free request slot of the destination.
 */
bool
retl_queue_stats_suspect(void)
{
	return suspect_tries > 0;
}

/* This database's instance id, the prefix of every record id. */
char *
retl_queue_instance_id(void)
{
	if (instance_id == NULL)
	{
		bool		isnull;
		Datum		d;

		if (SPI_execute("SELECT id FROM retl.instance", true, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "retl: retl.instance must have exactly one row");
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		instance_id = MemoryContextStrdup(TopMemoryContext, TextDatumGetCString(d));
	}
	return instance_id;
}

/*
 * A record's id as sent: the instance's id (inst), '-', the record's
 * number.  Made by hand: psprintf's vsnprintf for each record was 9% of
 * the worker's time at batch_size 500.
 */
char *
retl_queue_record_id(const char *inst, int64 rid)
{
	size_t		len = strlen(inst);
	char	   *id = palloc(len + 1 + MAXINT8LEN + 1);

	memcpy(id, inst, len);
	id[len] = '-';
	pg_lltoa(rid, id + len + 1);
	return id;
}

/*
 * Records of a backfill that are not in the queue (ranges.c), and were not
 * delivered (any outcome but that one): queued now, a 'b' row for each key that keeps the record's id
 * (the row's rid), so that they are retried, dead-lettered or sent again
 * from the queue like any change, and the backfill's cursor may pass them.
 * A sync dropped meanwhile queues nothing.
 */
void
retl_queue_materialize(RetlRequest *req, RetlRecord *records, int nrecords)
{
	Oid			types[3] = {INT4OID, JSONBARRAYOID, INT8ARRAYOID};
	Datum		values[3];
	Datum	   *keys = palloc(sizeof(Datum) * Max(nrecords, 1));
	Datum	   *rids = palloc(sizeof(Datum) * Max(nrecords, 1));
	int			n = 0;
	int64		lowest = PG_INT64_MAX;

	for (int i = 0; i < nrecords; i++)
	{
		if (records[i].raw_key == (Datum) 0 || records[i].outcome == RETL_OUTCOME_DELIVERED)
			continue;
		keys[n] = records[i].raw_key;
		rids[n++] = Int64GetDatum(records[i].rid);
	}
	if (n == 0)
		return;
	values[0] = Int32GetDatum(req->sync_id);
	values[1] = PointerGetDatum(construct_array(keys, n, JSONBOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(rids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (retl_spi_execute("INSERT INTO retl.queue (sync_id, op, key, rid)"
						 " SELECT $1, 'b', u.key, u.rid"
						 " FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3)) WITH ORDINALITY AS u(key, rid, n)"
						 " WHERE EXISTS (SELECT FROM retl.syncs s WHERE s.id = $1) ORDER BY u.n"
						 " RETURNING id, rid",
						 3, types, values, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "retl: could not queue the records of a backfill");
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &isnull));
		int64		rid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 2, &isnull));

		for (int i = 0; i < nrecords; i++)
		{
			RetlRecord *r = &records[i];

			if (r->raw_key == (Datum) 0 || r->outcome == RETL_OUTCOME_DELIVERED ||
				r->rid != rid || r->nqueue_ids > 0)
				continue;
			r->queue_ids = MemoryContextAlloc(req->cxt, sizeof(int64));
			r->queue_ids[0] = id;
			r->nqueue_ids = 1;
			lowest = Min(lowest, id);
			break;
		}
	}
	SPI_freetuptable(SPI_tuptable);
	for (int i = 0; i < nrecords; i++)
		if (records[i].outcome != RETL_OUTCOME_DELIVERED)
			records[i].raw_key = (Datum) 0;
	if (lowest < PG_INT64_MAX)
	{
		retl_mark_rewind(req->sync_id, lowest);
		retl_mark_wake(req->sync_id);
	}
	pfree(keys);
	pfree(rids);
}

/* The scan of the sync must see these records' rows again. */
void
retl_queue_rewind(int sync_id, RetlRecord *records, int nrecords)
{
	int64		lowest = PG_INT64_MAX;

	for (int i = 0; i < nrecords; i++)
		for (int j = 0; j < records[i].nqueue_ids; j++)
			lowest = Min(lowest, records[i].queue_ids[j]);
	retl_mark_rewind(sync_id, lowest);
}

/*
 * Put records [from, nrecords) of a claimed request back in the queue:
 * once they are no longer in a request the worker holds, its scan sees
 * them again from where they are.
 */
void
retl_queue_release(RetlRequest *req, int from)
{
	if (from < req->nrecords)
	{
		retl_queue_materialize(req, req->records + from, req->nrecords - from);
		retl_queue_rewind(req->sync_id, req->records + from, req->nrecords - from);
	}
}

