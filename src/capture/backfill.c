/*
 * backfill.c: sending the rows a table had when its upsert sync was created.
 *
 * The capture trigger exists (committed) before the worker starts here, so
 * every later change is captured anyway; the backfill only has to send
 * each existing key once.  It walks the table in key order, reading the
 * keys as the sync's owner (owner.c: only rows it may see are sent), and
 * never holds a lock writers would wait for.
 *
 * Sent straight from the table (retl_backfill_claim): each claim takes a
 * range of the next keys, as many as the free requests carry, and sends
 * their rows as records that are not in the queue; queue/ranges.c keeps
 * the ranges in flight and moves retl.syncs.backfill_cursor past those
 * answered.  Queued (retl_backfill_step, for connectors with jobs or that
 * replace their set): a chunk of keys per pass goes into the queue as 'b'
 * rows, the cursor moved with it.
 *
 * Either way, a key the queue holds already (the trigger queued a change
 * of it) is left to that change, whose record sends the row as it is when
 * claimed, which is what the backfill would send; so is a key a request
 * built since the sync's last resync holds in a queued record (a change
 * the queue's claim took: its queue row stays until it is delivered).  A
 * key a request built before the resync holds, or a record not in the
 * queue (an earlier range's), or a destination's job, is queued to go
 * after it: what it sends was read before the resync (by an older mapping,
 * say), or is not in the queue if it fails.  (Every held key went after
 * its request: a change claimed while the backfill ran, still in flight
 * when the backfill's range reached its key, went twice.)
 * The keys the queue holds are known from the worker's reads of it
 * (queue/queued_keys.c): retl.queue has no index on keys.
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
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "base/plans.h"
#include "capture/backfill.h"
#include "connectors/connector.h"
#include "queue/queue.h"
#include "queue/queued_keys.h"
#include "queue/ranges.h"
#include "queue/render.h"
#include "sync/dropping.h"
#include "sync/mapping.h"
#include "sync/owner.h"

/*
 * The table's next keys after the key after (jsonb text; NULL: from the
 * first), at most limit of them, in key order, as the sync's owner sees
 * them (jsonb arrays, copied out of SPI); *last is the last one's text
 * (NULL: none).
 */
static Datum *
read_keys(RetlSync *sync, const char *after, int limit, int64 *count, char **last)
{
	StringInfoData sql;
	StringInfoData cols;
	Oid			types[3] = {INT4OID, TEXTOID, INT8OID};
	Datum		values[3];
	char		nulls[3] = "   ";
	Datum	   *keys;

	initStringInfo(&cols);
	retl_append_key_columns(&cols, sync, "t");

	initStringInfo(&sql);
	appendStringInfo(&sql, "WITH b AS (SELECT %s FROM %s%s t", cols.data, retl_only(sync->relid),
					 format_type_be_qualified(get_rel_type_id(sync->relid)));
	if (after)
	{
		appendStringInfoString(&sql, " WHERE ");
		retl_append_key_after(&sql, sync, "t", "$2::pg_catalog.jsonb");
	}
	/* (the limit a parameter: the statement's plan is kept, one for all) */
	appendStringInfo(&sql, " ORDER BY %s LIMIT $3) SELECT ", cols.data);
	retl_append_key_array(&sql, sync, "b");
	resetStringInfo(&cols);
	retl_append_key_columns(&cols, sync, "b");
	appendStringInfo(&sql, " FROM b ORDER BY %s", cols.data);

	values[0] = Int32GetDatum(sync->id);
	if (after)
		values[1] = CStringGetTextDatum(after);
	else
		nulls[1] = 'n';
	values[2] = Int64GetDatum((int64) limit);
	/* the keys the owner can see */
	retl_owner_read(sync, sql.data, 3, types, values, nulls);
	*count = (int64) SPI_processed;
	keys = palloc(sizeof(Datum) * Max(*count, 1));
	for (int64 i = 0; i < *count; i++)
	{
		bool		isnull;

		keys[i] = datumCopy(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull),
							false, -1);
	}
	*last = *count > 0 ? SPI_getvalue(SPI_tuptable->vals[*count - 1], SPI_tuptable->tupdesc, 1) : NULL;
	return keys;
}

/*
 * Can the sync's backfill be sent straight from its table, by ranges of
 * keys (queue/ranges.c)?  Not to a destination with jobs (a job outlives
 * the worker: its records are marked in the queue) or one that replaces
 * its set on a resync: their backfill is queued (retl_backfill_step).
 */
bool
retl_backfill_direct(RetlSync *sync)
{
	const RetlConnector *c = retl_connector(sync->kind);

	return sync->mode == 'u' && !sync->diff && c->build_job == NULL && !c->replaces;
}

/* what a range's claim does with a key */
typedef enum KeyFate
{
	KEY_SEND,					/* a record of the range */
	KEY_LEFT,					/* its queued change sends it */
	KEY_AFTER					/* queued now: what holds it was read before
								 * the resync */
} KeyFate;

/*
 * The fate of each key of a range (jsonb, count of them): a key the queue
 * holds already is sent by its queued change (the trigger queued it, or a
 * record of an earlier backfill waits there for a retry), even while a
 * request built since the sync's last resync holds it, and a key in held
 * (retl_queue_held_keys: held by a request built before the resync, or in
 * a record not in the queue) or in a job goes after them, queued.  held:
 * as requests held it before the pass claimed the sync's queue: a key the
 * pass claimed from the queue is sent by its queued change.
 *
 * The keys the queue holds are those the worker found there as the
 * backfill went (queue/queued_keys.c: retl.queue has no index on keys),
 * read after the range's keys were: a change committed before the range
 * was read is seen, and its key left to it, and so is a change the pass's
 * queue claim took.  A key whose change was delivered before the range
 * reached it is left to it too: that change sent the row as it was then,
 * and a later change of it is queued in its turn.  A key not found there
 * (a change committed late with a lower id, not read yet) that a
 * request holds goes after it, queued, never beside it.  hashes[]: the
 * keys' jsonb hashes.
 */
static KeyFate *
key_fates(RetlSync *sync, Datum *keys, int64 count, HTAB *held, uint64 *hashes)
{
	KeyFate    *fate = palloc0(sizeof(KeyFate) * Max(count, 1));
	HTAB	   *all_held = NULL;

	for (int64 i = 0; i < count; i++)
	{
		hashes[i] = (uint64) DatumGetInt64(DirectFunctionCall2(jsonb_hash_extended, keys[i],
															   Int64GetDatum(0)));
		if (retl_queue_key_held(sync->id, held, hashes[i]))
			fate[i] = KEY_AFTER;
	}
	if (count == 0)
		return fate;
	retl_queued_keys_read(sync);
	for (int64 i = 0; i < count; i++)
	{
		if (fate[i] != KEY_SEND)
			continue;
		if (retl_queued_keys_has(sync, keys[i], hashes[i]))
		{
			fate[i] = KEY_LEFT;
			continue;
		}
		if (all_held == NULL)
			retl_queue_held_by_requests(sync->id, PG_INT64_MAX, &all_held, NULL);
		if (hash_search(all_held, &hashes[i], HASH_FIND, NULL) != NULL)
			fate[i] = KEY_AFTER;
	}
	if (all_held != NULL)
		hash_destroy(all_held);
	return fate;
}

/* Queue keys (n of them) as the backfill's 'b' rows of the sync, in order. */
static void
queue_keys(RetlSync *sync, Datum *keys, int n)
{
	Oid			types[2] = {INT4OID, JSONBARRAYOID};
	Datum		values[2];

	if (n == 0)
		return;
	values[0] = Int32GetDatum(sync->id);
	values[1] = PointerGetDatum(construct_array(keys, n, JSONBOID, -1, false, TYPALIGN_INT));
	if (retl_spi_execute("INSERT INTO retl.queue (sync_id, op, key)"
						 " SELECT $1, 'b', k.key FROM pg_catalog.unnest($2) WITH ORDINALITY AS k(key, n)"
						 " ORDER BY k.n", 2, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: backfill of sync \"%s\" failed", sync->name);
}

/*
 * Queue the next chunk of keys; true while more remain.  For a sync whose
 * backfill is not sent straight from its table (retl_backfill_direct):
 * every key but those the queue sends anyway (key_fates).  Nothing while
 * another transaction holds the sync's row (a pause not yet committed):
 * the cursor is saved there.
 */
bool
retl_backfill_step(RetlSync *sync)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = "  ";
	int64		count;
	char	   *last;
	bool		more;
	Datum	   *keys;

	if (!retl_sync_row_ready(sync->id))
		return false;
	retl_check_source(sync);
	keys = read_keys(sync, sync->backfill_cursor, RETL_BACKFILL_CHUNK, &count, &last);
	more = count == RETL_BACKFILL_CHUNK;
	values[0] = Int32GetDatum(sync->id);

	/* queued by the worker */
	if (count > 0)
	{
		/* (a queued backfill queues every held key after its request) */
		HTAB	   *held;
		uint64	   *hashes = palloc(sizeof(uint64) * count);
		KeyFate    *fate;
		int			n = 0;

		retl_queue_held_keys(sync->id, PG_INT32_MAX, &held, NULL);
		fate = key_fates(sync, keys, count, held, hashes);
		hash_destroy(held);
		for (int64 i = 0; i < count; i++)
			if (fate[i] != KEY_LEFT)
				keys[n++] = keys[i];
		queue_keys(sync, keys, n);
	}

	values[1] = last ? CStringGetTextDatum(last) : (Datum) 0;
	nulls[1] = last ? ' ' : 'n';
	if (SPI_execute_with_args(more ?
							  "UPDATE retl.syncs SET backfill_cursor = $2::jsonb WHERE id = $1" :
							  "UPDATE retl.syncs SET backfill_cursor = $2::jsonb, backfill_done = true WHERE id = $1",
							  2, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not save the backfill position of sync \"%s\"", sync->name);
	if (!more)
		retl_queued_keys_forget(sync->id);
	return more;
}

/*
 * The records of a range (keys, n of them, with their jsonb hashes): each
 * an upsert of its key, its row read when the batch is (rows.c), not in
 * the queue (its raw_key: queue.c queues it if it is not delivered), with
 * a record id of its own (the queue's next ids).
 */
static RetlRequest *
range_request(RetlSync *sync, Datum *keys, uint64 *hashes, int n)
{
	RetlRequest *req;
	RetlKeyFields *fields = retl_key_fields(sync);
	char	   *inst = retl_queue_instance_id();
	TimestampTz now = GetCurrentTimestamp();
	double		now_epoch = retl_epoch_seconds(now);
	char	   *now_text;
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(n)};
	MemoryContext old;
	StringInfoData text;

	if (retl_spi_execute("SELECT pg_catalog.nextval('retl.queue_id_seq'::pg_catalog.regclass)"
						 " FROM pg_catalog.generate_series(1, $1)",
						 1, types, values, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != (uint64) n)
		elog(ERROR, "retl: could not number the records of a backfill");
	req = retl_queue_new_request(sync);
	old = MemoryContextSwitchTo(req->cxt);
	now_text = retl_timestamp_text(now);
	req->nrecords = n;
	req->records = palloc0(sizeof(RetlRecord) * n);
	initStringInfo(&text);
	for (int i = 0; i < n; i++)
	{
		RetlRecord *r = &req->records[i];
		bool		isnull;

		r->op = 'u';
		r->raw_key = datumCopy(keys[i], false, -1);
		resetStringInfo(&text);
		retl_append_key_text(&text, fields, DatumGetJsonbP(keys[i]));
		r->key = pstrdup(text.data);
		r->key_hash = hashes[i];
		r->rid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		r->record_id = retl_queue_record_id(inst, r->rid);
		r->captured_at = now_text;
		r->captured_epoch = now_epoch;
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
	return req;
}

/* A range's keys as its claim sorts them out (see key_fates). */
typedef struct RangeKeys
{
	Datum	   *send;			/* to send, with their hashes */
	uint64	   *send_hashes;
	int			nsend;
	Datum	   *after;			/* to queue */
	int			nafter;
	char	   *end;			/* the last key taken (jsonb text), NULL: none */
	bool		exhausted;		/* no key after it */
} RangeKeys;

/*
 * Take the table's next keys after the key after (NULL: from the first)
 * into rk, in key order, until want of them are to be sent, the table has
 * no more, or RETL_BACKFILL_RANGE_MAX were taken.  Keys the queue sends
 * anyway do not count: a range reads on past them (a table filled in the
 * transaction that created its sync: every key is queued), in reads of at
 * least RETL_BACKFILL_READ keys.  The first read asks for want keys only:
 * with batch_size 1 a range is as many keys as free slots (eight), and
 * reading 256 to send eight was most of the worker's CPU in such a
 * backfill (179 us a record, 4,200 records/s to nginx).
 */
static void
take_keys(RetlSync *sync, const char *after, int want, HTAB *held, RangeKeys *rk)
{
	int64		taken = 0;

	rk->send = palloc(sizeof(Datum) * want);
	rk->send_hashes = palloc(sizeof(uint64) * want);
	rk->after = palloc(sizeof(Datum) * RETL_BACKFILL_RANGE_MAX);
	rk->end = NULL;
	rk->exhausted = false;
	while (rk->nsend < want && !rk->exhausted && taken < RETL_BACKFILL_RANGE_MAX)
	{
		int			ask = (int) Min(taken == 0 ? want :
									Max(want - rk->nsend, RETL_BACKFILL_READ),
									RETL_BACKFILL_RANGE_MAX - taken);
		int64		count;
		char	   *last;
		Datum	   *keys = read_keys(sync, rk->end ? rk->end : after, ask, &count, &last);
		uint64	   *hashes = palloc(sizeof(uint64) * Max(count, 1));
		KeyFate    *fate = key_fates(sync, keys, count, held, hashes);
		int64		used = 0;

		for (; used < count; used++)
		{
			if (fate[used] == KEY_SEND)
			{
				if (rk->nsend == want)
					break;
				rk->send_hashes[rk->nsend] = hashes[used];
				rk->send[rk->nsend++] = keys[used];
			}
			else if (fate[used] == KEY_AFTER)
				rk->after[rk->nafter++] = keys[used];
		}
		taken += used;
		if (used > 0)
			rk->end = used == count ? last :
				DatumGetCString(DirectFunctionCall1(jsonb_out, keys[used - 1]));
		rk->exhausted = used == count && count < ask;
	}
}

/*
 * The next range of the sync's backfill, sent straight from its table: up
 * to nbatches batches of its next keys, as requests (see queue/ranges.c),
 * after its cursor moved past the ranges done (held: see key_fates).
 * *more: the backfill has more to do at once (keys left to read, or a
 * range done to settle).
 * In the claim's subtransaction; on error the claim is undone.
 */
List *
retl_backfill_claim(RetlSync *sync, int nbatches, HTAB *held, bool *more)
{
	RetlBackfill *b;
	RetlRange  *range;
	List	   *volatile reqs = NIL;
	RangeKeys	rk = {0};

	*more = true;
	if (sync->backfill_done)
		return NIL;				/* settled by the pass already */
	b = retl_ranges_of(sync);
	if (!retl_ranges_settle(b, sync))
		return NIL;				/* over, or begun again next pass */
	if (retl_ranges_read_all(b) || nbatches <= 0)
	{
		*more = retl_ranges_settle_due(b);
		return NIL;
	}
	retl_check_source(sync);
	retl_owner_check_send(sync);

	range = retl_range_new();
	PG_TRY();
	{
		take_keys(sync, retl_ranges_ahead(b),
				  (int) Max(1, Min((int64) nbatches * sync->batch_size, RETL_BACKFILL_RANGE_MAX)),
				  held, &rk);
		queue_keys(sync, rk.after, rk.nafter);
		if (rk.nsend > 0)
		{
			RetlRequest *req = range_request(sync, rk.send, rk.send_hashes, rk.nsend);

			req->range = range;
			reqs = retl_queue_batches(sync, req, rk.send);
		}
	}
	PG_CATCH();
	{
		retl_range_failed(range);
		PG_RE_THROW();
	}
	PG_END_TRY();
	retl_range_claimed(b, range, rk.end, rk.exhausted);
	return reqs;
}
