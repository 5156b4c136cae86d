/*
 * claim.c: choosing and claiming the next batch of a sync.
 *
 * A claim is a scan in the worker's claim transaction: it reads the
 * sync's ready rows in queue order, a page at a time, and the worker picks
 * the batch from them here.  In upsert mode what the scan read of the
 * picked rows is the claim (reading them again by id was 1.3 of the 8.3 us
 * a record cost with batch_size 500); in append mode (and for diff syncs)
 * one more statement reads the picked rows by id and returns the records,
 * their data written by the executor.  It names its rows in a constant
 * array, so its plan (the primary key) never depends on the queue's
 * statistics, which lag far behind a queue that fills and drains within
 * seconds.
 *
 * A claim writes nothing: the rows of a request in flight are known from
 * this worker's memory (the requests it holds: holders.c), which the scan
 * skips, and only the worker deletes delivered rows, so nothing else needs
 * to know.
 * A crash forgets them with the rest of the worker's memory, and the next
 * worker sends them again (at-least-once).  Marking each claimed row in
 * flight was an UPDATE a row: 3 of the 12 us a record cost with
 * batch_size 500.  Only the rows a destination holds in a job of its own
 * are marked (jobs.c), since the job outlives the worker.
 *
 * Per-key order: a row is eligible only if no request the worker holds
 * (claimed and not yet freed) carries its key, and its key is not waiting
 * for a retry.  Both are known from this worker's memory, not read from
 * the queue: only this worker claims rows or schedules retries, and it
 * loads the keys waiting for a retry when it starts, so its memory is the
 * whole truth, and an anti-join of the queue with its own in-flight and
 * waiting rows is slow once the backlog is large.  Keys are compared by
 * their 64-bit jsonb hash; two keys sharing one would only make one wait
 * for the other.
 *
 * In upsert mode the rows of a key that one scan reads are claimed
 * together and sent as one record carrying the row's latest state, read
 * in the claim transaction as the sync's owner (rows.c); the record's id
 * is that of the newest row, so a retry of the same state has the same id
 * and a newer state gets a new one.  A row of the key queued past what the
 * scan read waits for that record, then goes as a record of its own (with
 * the state as it is then).  The keys waiting for a retry: backoff.c.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "port/pg_bitutils.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "base/plans.h"
#include "connectors/connector.h"
#include "queue/mark.h"
#include "queue/queue.h"
#include "queue/ranges.h"
#include "queue/render.h"
#include "sync/compiled.h"
#include "sync/mapping.h"
#include "sync/owner.h"

/* rows the scan reads at a time, at most */
#define SCAN_PAGE 1000

/*
 * A replace of the sync in progress (retl.replace_store: a resync whose
 * connector replaces the destination's set)?  One whose rows are all gone
 * is over, and forgotten.
 */
static bool
replacing(RetlSync *sync)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(sync->id)};

	if (!sync->diff || !retl_connector(sync->kind)->replaces)
		return false;
	if (retl_spi_execute("SELECT EXISTS (SELECT 1 FROM retl.queue q WHERE q.sync_id = $1 AND q.op = 'P')"
						 " FROM retl.replace_store r WHERE r.sync_id = $1",
						 1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the replace of sync \"%s\"", sync->name);
	if (SPI_processed == 0)
		return false;
	if (strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0)
		return true;
	if (retl_spi_execute("DELETE FROM retl.replace_store WHERE sync_id = $1",
						 1, types, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "retl: could not end the replace of sync \"%s\"", sync->name);
	return false;
}

/*
 * A row of an upsert claim, as the pick read it, before its key's rows are
 * gathered into a record (claimed_keys).
 */
typedef struct ClaimedRow
{
	int64		id;
	int64		rid;
	int			attempts;
	Datum		jkey;			/* the queue's key (jsonb) */
	char	   *key;			/* the key as sent */
	TimestampTz captured_at;
	double		first_attempt;
	uint64		hash;
	char		op;				/* as queued */
} ClaimedRow;

/*
 * The sync's next nbatches batches: ready rows in queue order whose key is
 * not held; returns how many rows it picked, 0 when nothing is ready.  In
 * append mode (and for diff syncs) up to nbatches * batch_size rows, the
 * first of each key (the next waits for its answer), returned in *ids
 * (int8[]) for the claim statement.  In upsert mode the
 * rows of up to nbatches * batch_size keys, the first ones among the next
 * ten batches' worth of rows: every row of those keys that the scan read,
 * which the claim gathers into one record a key.  There the pick is the
 * claim too: the rows come back in *rows with what their records need, as
 * its scan read them, and are not read again.
 *
 * Less than a batch waits until its oldest row has waited the sync's
 * linger_ms: then 0 too, with *wait_ms the time left and *lingering the
 * rows (upsert mode: keys) it waits with.  *idle is set when the scan
 * found no row at all it could claim but the sync's requests in flight
 * (mark.c).
 */
static int
pick(RetlSync *sync, int nbatches, long *wait_ms, ClaimedRow **rows, Datum *ids, bool *idle,
	 int *lingering)
{
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		values[2];
	HTAB	   *held;
	HTAB	   *in_flight;
	HTAB	   *picked_keys = NULL;
	bool		by_key = sync->mode != 'a' && !sync->diff;
	bool		replace = replacing(sync);
	/* a replace's batches go one at a time (below) */
	int			cap = sync->batch_size * (replace ? 1 : nbatches);
	long		window = by_key ? (long) cap * 10 : cap;
	long		scanned = 0;
	/* grown as rows are picked: a window can be millions of rows */
	long		room = Min(window, 1024);
	Datum	   *picked = by_key ? NULL : palloc(sizeof(Datum) * room);
	ClaimedRow *claimed = by_key ? palloc(sizeof(ClaimedRow) * room) : NULL;
	int			npicked = 0;	/* rows, or in upsert mode keys */
	int			nids = 0;
	int64		from;
	int64		last_id;
	int64		kept_from = PG_INT64_MAX;
	int64		park_from = PG_INT64_MAX;
	TimestampTz park_until = DT_NOEND;
	int			limit;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz oldest = DT_NOEND;	/* of the rows picked */
	int64		first = 0;		/* the first row picked */
	bool		done = false;
	bool		quiet;

	*rows = NULL;
	*ids = (Datum) 0;
	*idle = false;
	*lingering = 0;

	/*
	 * A replace goes one batch at a time, its rows (op P) in queue order,
	 * and the sync's other changes wait for its end.
	 */
	if (replace && retl_queue_replace_in_flight(sync->id))
		return 0;
	picked_keys = retl_queue_key_set("retl picked keys", cap);

	/*
	 * Page by page, each with a LIMIT the planner sees, so that it reads
	 * the (sync_id, id) index from where the last page ended and stops
	 * early (under a cursor it may sort the whole backlog first).  The
	 * primary key is (sync_id, id), so no plan walks other syncs' rows or
	 * those below the mark.  The first page is the rows the batches need,
	 * past the records this sync can have in flight (the scan stops at the
	 * last row it takes, and the next starts after it: a larger page is
	 * read for nothing, 88 rows for 8 records with batch_size 1); the
	 * limits are constants of a sync, so the statements stay prepared.
	 * The scan takes a snapshot of its own, after the transaction's last
	 * command: it must not see rows this transaction deleted (records an
	 * earlier claim of the pass dropped), and sees those it queued (a
	 * backfill chunk).  The mark moves by what that snapshot could not see
	 * (mark.c).
	 */
	quiet = retl_mark_begin_scan(sync->id);
	from = retl_mark_start(sync->id, now);
	last_id = from - 1;
	retl_queue_held_by_requests(sync->id, from, &held, &in_flight);
	values[0] = Int32GetDatum(sync->id);
	limit = (int) Min(SCAN_PAGE, cap + (long) sync->batch_size * sync->max_concurrency);
	while (!done)
	{
		uint64		n;

		values[1] = Int64GetDatum(last_id);
		if (retl_spi_execute_by_index(psprintf("SELECT q.id, pg_catalog.jsonb_hash_extended(q.key, 0), q.key, q.op,"
									  " q.captured_at, COALESCE(q.rid, q.id), q.attempts, q.first_attempt_at"
									  " FROM retl.queue q"
									  " WHERE q.sync_id = $1 AND q.id > $2"
									  " AND NOT q.in_flight"
									  " ORDER BY q.id LIMIT %d", limit),
							 2, types, values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "retl: could not read the queue of sync \"%s\"", sync->name);
		n = SPI_processed;
		done = n < (uint64) limit;
		for (uint64 i = 0; i < n; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			uint64		hash = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
			bool		found;
			int64		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			TimestampTz until;

			if (npicked >= cap || scanned >= window)
			{
				done = true;
				break;
			}
			last_id = id;
			/* in a request: deleted when delivered, rewound to if not */
			if (hash_search(in_flight, &id, HASH_FIND, NULL) != NULL)
				continue;
			if (replace && DatumGetChar(SPI_getbinval(tup, desc, 4, &isnull)) != 'P')
			{
				kept_from = Min(kept_from, id);
				continue;		/* after the replace */
			}
			if (replace && (retl_queue_backing_off(sync->id, hash, now, &until) ||
							hash_search(held, &hash, HASH_FIND, NULL) != NULL))
			{
				/* its rows in order: the batch stops at one that must wait */
				kept_from = Min(kept_from, id);
				done = true;
				break;
			}
			if (retl_queue_backing_off(sync->id, hash, now, &until))
			{
				park_from = Min(park_from, id);
				park_until = Min(park_until, until);
				continue;
			}
			if (retl_queue_key_held(sync->id, held, hash))
			{
				kept_from = Min(kept_from, id);
				continue;
			}
			scanned++;
			if (nids >= room)
			{
				room = Min(room * 2, window);
				if (by_key)
					claimed = repalloc(claimed, sizeof(ClaimedRow) * room);
				else
					picked = repalloc(picked, sizeof(Datum) * room);
			}
			if (by_key)
			{
				ClaimedRow *row = &claimed[nids];
				bool		never;
				Datum		first_attempt = SPI_getbinval(tup, desc, 8, &never);

				row->id = id;
				row->rid = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
				row->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
				/* 0: never attempted */
				row->first_attempt = never ? 0 :
					retl_epoch_seconds(DatumGetTimestampTz(first_attempt));
				row->jkey = datumCopy(SPI_getbinval(tup, desc, 3, &isnull), false, -1);
				row->captured_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
				row->hash = hash;
				row->op = DatumGetChar(SPI_getbinval(tup, desc, 4, &isnull));

				/* a key already picked: its row joins its record */
				hash_search(picked_keys, &hash, HASH_ENTER, &found);
				if (found)
				{
					nids++;
					continue;
				}
			}
			else
			{
				/*
				 * One row of a key a pass: a later change of it waits for
				 * the answer to the earlier one (per-key order), which may
				 * go in another batch, sent at the same time.  (Two of a
				 * diff sync's runs, or a retry and the next run's change,
				 * went out together, and the older could land last.)
				 */
				hash_search(picked_keys, &hash, HASH_ENTER, &found);
				if (found)
				{
					kept_from = Min(kept_from, id);
					continue;
				}
				picked[nids] = Int64GetDatum(last_id);
			}
			if (nids == 0)
				first = last_id;
			nids++;
			npicked++;
			oldest = Min(oldest, DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull)));
		}
		SPI_freetuptable(SPI_tuptable);
		if (npicked >= cap || scanned >= window)
			done = true;
		limit = SCAN_PAGE;
	}
	/* a partial batch waits up to linger_ms for more changes */
	if (npicked > 0 && npicked < sync->batch_size && sync->linger_ms > 0)
	{
		TimestampTz due = TimestampTzPlusMilliseconds(oldest, sync->linger_ms);
		TimestampTz clock = GetCurrentTimestamp();

		if (due > clock)
		{
			*wait_ms = Min(*wait_ms, Max((due - clock + 999) / 1000, 1));
			kept_from = Min(kept_from, first);
			*lingering = npicked;
			nids = 0;
		}
	}
	retl_mark_advance(sync->id, GetActiveSnapshot(), quiet, from, last_id,
					  Min(kept_from, last_id + 1), park_from, park_until);
	/*
	 * Idle: no row to claim but those in flight.  (A linger keeps its rows:
	 * kept_from; rows parked for a retry may be below the mark.)
	 */
	*idle = nids == 0 && kept_from == PG_INT64_MAX && !retl_mark_parked(sync->id);
	PopActiveSnapshot();
	hash_destroy(held);
	hash_destroy(in_flight);
	hash_destroy(picked_keys);
	if (by_key && nids > 0)
		*rows = claimed;
	else if (claimed)
		pfree(claimed);
	if (!by_key && nids > 0)
		*ids = PointerGetDatum(construct_array(picked, nids, INT8OID, 8, FLOAT8PASSBYVAL,
											   TYPALIGN_DOUBLE));
	if (picked)
		pfree(picked);
	return nids;
}

/*
 * The claim statement of an append or diff sync: reads the rows picked
 * ($1: their ids, with $2 the sync), one line per record: rid, queue ids,
 * attempts, op, key, data, captured_at, first attempt and capture (epoch),
 * key hash.  (An upsert sync's pick claims its rows.)
 */
static char *
claim_sql(RetlSync *sync)
{
	StringInfoData sql;

	/* (an upsert claim is its pick's: claimed_keys) */
	Assert(sync->mode == 'a' || sync->diff);
	initStringInfo(&sql);
	/* the queued data is sent: captured rows, or a run's mapped rows */
	appendStringInfoString(&sql,
						   "SELECT COALESCE(u.rid, u.id), ARRAY[u.id], u.attempts, ");
	if (sync->diff)
		appendStringInfo(&sql,
						 "CASE u.op WHEN 'R' THEN 'd' WHEN 'E' THEN 'i' WHEN 'P' THEN 'r'"
						 " WHEN 'A' THEN '%c' ELSE 'u' END, ",
						 sync->mode == 'i' ? 'i' : 'u');
	else
		appendStringInfoString(&sql, "'i', ");
	retl_append_key_object(&sql, sync, "u.key");
	appendStringInfoString(&sql, "::text, (");
	/* (computed fields are computed afterwards, as the owner: compute_rows) */
	if (sync->diff || retl_mapping_computes(sync))
		appendStringInfoString(&sql, "u.data");
	else
		retl_append_json_data(&sql, sync, "u.data");
	appendStringInfoString(&sql,
						   ")::text, pg_catalog.to_char(u.captured_at AT TIME ZONE 'UTC',"
						   " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
						   " COALESCE(extract(epoch FROM u.first_attempt_at), 0),"
						   " extract(epoch FROM u.captured_at),"
						   " pg_catalog.jsonb_hash_extended(u.key, 0)"
						   " FROM retl.queue u WHERE u.sync_id = $2 AND u.id = ANY ($1)"
						   " ORDER BY u.id");
	return sql.data;
}

/* Parse "{1,2,3}" (the text form of an integer array). */
static int64 *
parse_int_array(const char *text, int *n)
{
	int64	   *result = palloc(sizeof(int64) * (strlen(text) / 2 + 1));
	const char *p = text;

	*n = 0;
	while (*p)
	{
		char	   *end;

		if (*p == '{' || *p == ',' || *p == '}')
		{
			p++;
			continue;
		}
		result[(*n)++] = strtoi64(p, &end, 10);
		if (end == p)
			elog(ERROR, "retl: malformed integer array \"%s\"", text);
		p = end;
	}
	return result;
}

/*
 * An append claim's lines (claim_sql), one record each, into req: in the
 * request's memory.
 */
static void
claimed_rows(RetlRequest *req, const char *inst)
{
	req->nrecords = (int) SPI_processed;
	req->records = palloc0(sizeof(RetlRecord) * req->nrecords);
	for (int i = 0; i < req->nrecords; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		RetlRecord *r = &req->records[i];
		bool		isnull;

		r->rid = strtoi64(SPI_getvalue(tup, desc, 1), NULL, 10);
		r->record_id = retl_queue_record_id(inst, r->rid);
		r->queue_ids = parse_int_array(SPI_getvalue(tup, desc, 2), &r->nqueue_ids);
		r->attempts = pg_strtoint32(SPI_getvalue(tup, desc, 3));
		r->op = SPI_getvalue(tup, desc, 4)[0];
		r->key = SPI_getvalue(tup, desc, 5);
		r->data = SPI_getvalue(tup, desc, 6);
		r->captured_at = SPI_getvalue(tup, desc, 7);
		r->first_attempt = strtod(SPI_getvalue(tup, desc, 8), NULL);
		r->captured_epoch = strtod(SPI_getvalue(tup, desc, 9), NULL);
		r->key_hash = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 10, &isnull));
	}
}

/*
 * An upsert claim's rows (nrows of them, in queue order, as its pick read
 * them) gathered into one record per key: its rows' ids in order, the
 * record id of its latest row, its latest capture, its most attempts and
 * its first attempt.  The records are in the order of their first row.
 * Returns the keys of the records (jsonb), in the request's memory like
 * everything else.
 *
 * A key's rows are found by an open-addressing table of the records, by
 * the key's hash and then its text: sorting the rows by key and the
 * records back into queue order (as this did before) took a tenth of the
 * worker's time at batch_size 500, moving whole records.
 */
static Datum *
claimed_keys(RetlSync *sync, RetlRequest *req, const char *inst, ClaimedRow *rows, int nrows)
{
	RetlKeyFields *fields = retl_key_fields(sync);
	StringInfoData text;
	int		   *record_of = palloc(sizeof(int) * nrows);	/* each row's record */
	int		   *first_row = palloc(sizeof(int) * nrows);	/* each record's */
	int		   *count = palloc0(sizeof(int) * nrows);	/* each record's rows */
	TimestampTz *latest = palloc(sizeof(TimestampTz) * nrows);
	uint32		size = pg_nextpower2_32((uint32) nrows * 2);
	int		   *slots = palloc(sizeof(int) * size);	/* a record, or -1 */
	Datum	   *keys;
	TimestampTz shown = DT_NOBEGIN;
	char	   *shown_text = NULL;
	int			n = 0;

	memset(slots, -1, sizeof(int) * size);
	initStringInfo(&text);
	for (int i = 0; i < nrows; i++)
	{
		uint32		pos = (uint32) rows[i].hash & (size - 1);
		int			rec;

		Assert(i == 0 || rows[i].id > rows[i - 1].id);
		resetStringInfo(&text);
		retl_append_key_text(&text, fields, DatumGetJsonbP(rows[i].jkey));
		rows[i].key = pstrdup(text.data);
		for (;;)
		{
			rec = slots[pos];
			if (rec < 0)
			{
				rec = slots[pos] = n++;
				first_row[rec] = i;
				break;
			}
			if (rows[first_row[rec]].hash == rows[i].hash &&
				strcmp(rows[first_row[rec]].key, rows[i].key) == 0)
			{
				pfree(rows[i].key);	/* its record has it */
				rows[i].key = NULL;
				break;
			}
			pos = (pos + 1) & (size - 1);
		}
		record_of[i] = rec;
		count[rec]++;
	}

	req->nrecords = n;
	req->records = palloc0(sizeof(RetlRecord) * n);
	keys = palloc(sizeof(Datum) * n);
	for (int rec = 0; rec < n; rec++)
	{
		RetlRecord *r = &req->records[rec];
		ClaimedRow *row = &rows[first_row[rec]];

		r->op = 'u';
		r->key = row->key;
		r->key_hash = row->hash;
		r->queue_ids = palloc(sizeof(int64) * count[rec]);
		latest[rec] = row->captured_at;
		keys[rec] = datumCopy(row->jkey, false, -1);
	}
	for (int i = 0; i < nrows; i++)
	{
		int			rec = record_of[i];
		RetlRecord *r = &req->records[rec];

		r->queue_ids[r->nqueue_ids++] = rows[i].id;
		/* the record id of its latest row, as the queue's order tells */
		r->rid = rows[i].rid;
		/* (a 'u' until its row is read, but a delete as its latest row says: rows.c) */
		r->op = rows[i].op == 'd' ? 'd' : 'u';
		r->truncated = rows[i].op == 't';
		r->attempts = Max(r->attempts, rows[i].attempts);
		if (rows[i].first_attempt > 0 &&
			(r->first_attempt == 0 || rows[i].first_attempt < r->first_attempt))
			r->first_attempt = rows[i].first_attempt;
		latest[rec] = Max(latest[rec], rows[i].captured_at);
	}
	for (int rec = 0; rec < n; rec++)
	{
		RetlRecord *r = &req->records[rec];

		r->record_id = retl_queue_record_id(inst, r->rid);
		/* the rows of one transaction share their capture time */
		if (shown_text == NULL || latest[rec] != shown)
		{
			shown = latest[rec];
			shown_text = retl_timestamp_text(shown);
		}
		r->captured_at = shown_text;
		r->captured_epoch = retl_epoch_seconds(latest[rec]);
	}
	pfree(text.data);
	pfree(record_of);
	pfree(first_row);
	pfree(count);
	pfree(latest);
	pfree(slots);
	return keys;
}

/*
 * Claim the next batches of a sync, up to nbatches, and build their
 * requests, in queue order; NIL when nothing is ready.  One pick, one
 * claim statement and one read of the rows serve them all: a sync with a
 * small batch_size fills every free slot of its destination for the cost
 * of one.  Each request and everything in it outlive the transaction, and
 * it holds its keys until it is freed.  *idle: the sync had nothing to
 * claim; *lingering: a partial batch of that many rows waits (see pick).
 */
List *
retl_queue_claim(RetlSync *sync, int nbatches, long *wait_ms, bool *idle, int *lingering)
{
	bool		by_key = sync->mode != 'a' && !sync->diff;
	Oid			types[2] = {INT8ARRAYOID, INT4OID};
	Datum		values[2];
	RetlRequest *req;
	MemoryContext old;
	char	   *inst = retl_queue_instance_id();
	Datum	   *keys = NULL;
	ClaimedRow *rows;
	int			nrows;

	*idle = false;
	*lingering = 0;
	if (!sync->diff)
		retl_check_source(sync);
	nrows = pick(sync, nbatches, wait_ms, &rows, &values[0], idle, lingering);
	if (nrows == 0)
		return NIL;
	/* rows to claim: if the statistics counted none, they are wrong now */
	if (retl_queue_stats_suspect())
		retl_queue_analyze_if_stale(100);
	retl_owner_check_send(sync);
	if (!by_key)
	{
		values[1] = Int32GetDatum(sync->id);
		if (retl_spi_execute_by_index(retl_sync_statement(sync, RETL_SQL_CLAIM, claim_sql),
									  2, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "retl: could not claim changes of sync \"%s\"", sync->name);
		if (SPI_processed == 0)
			return NIL;
	}

	req = retl_queue_new_request(sync);
	old = MemoryContextSwitchTo(req->cxt);
	if (by_key)
	{
		keys = claimed_keys(sync, req, inst, rows, nrows);
		for (int i = 0; i < nrows; i++)
			pfree(DatumGetPointer(rows[i].jkey));
		pfree(rows);
	}
	else
		claimed_rows(req, inst);
	MemoryContextSwitchTo(old);

	return retl_queue_batches(sync, req, keys);
}
