/*
 * ranges.c: a backfill's ranges of keys in flight, and the cursor they
 * advance.
 *
 * A realtime upsert sync's backfill reads its table in key order, a range
 * of keys per claim, and sends the rows as records of their own, never
 * queued (capture/backfill.c): queueing each row, then deleting it once
 * sent, was three quarters of the worker's time during a backfill.  What
 * is durable is the sync's cursor (retl.syncs.backfill_cursor): every key
 * up to it was delivered, or is in the queue (a record that was not
 * delivered at once is queued when its outcome is recorded, and retried or
 * dead-lettered from there like any change: queue.c).  The worker claims
 * ranges ahead of the cursor; a range is done once no request alive
 * carries a record of it (their outcomes recorded and committed, the
 * requests freed), and the cursor moves past the done ranges that follow
 * it in the next claim transaction.  A crash forgets the ranges in
 * flight: the next worker reads them again from the cursor
 * (at-least-once, as for queued changes).
 *
 * The cursor is the worker's only while nobody else changed it: the worker
 * saves it only into the row as it left it (its cursor, and its count of
 * resyncs).  A resync resets the cursor and counts itself
 * (retl.syncs.resyncs): the worker forgets its ranges and reads again from
 * the start (a key held by a request built before the resync goes after
 * it, queued: backfill.c).  Any other update of the row (a pause, an
 * alter) leaves the backfill as it was, its ranges in flight included,
 * whether one was settled yet or not.  (Before the count, a resync could
 * not be told from a pause until a range had settled and moved the
 * cursor: a pause then began the backfill again, and the keys already
 * sent went again.)
 *
 * In the worker's memory; a range is freed once it is settled or
 * forgotten and no request carries it.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "base/plans.h"
#include "queue/queued_keys.h"
#include "queue/ranges.h"
#include "sync/dropping.h"

struct RetlRange
{
	RetlBackfill *backfill;		/* whose range it is; NULL: none (yet) */
	bool		orphan;			/* nobody will settle it (its claim failed, or
								 * its backfill was forgotten): freed with its
								 * last request */
	int			refs;			/* requests alive that carry its records */
	bool		last;			/* the table had no key after it */
	char	   *end;			/* its last key (jsonb text), NULL: none */
};

struct RetlBackfill
{
	int			sync_id;
	bool		turn;			/* with one free slot: the backfill's turn */
	int			resyncs;		/* the sync's count of resyncs it began after */
	char	   *cursor;			/* the row's cursor as the worker left it
								 * (NULL: the start) */
	char	   *ahead;			/* the last key claimed (NULL: none yet) */
	bool		read_all;		/* a claim found no key after ahead */
	List	   *ranges;			/* RetlRange *, in key order */
};

static List *backfills = NIL;	/* RetlBackfill *, in TopMemoryContext */

static bool
same(const char *a, const char *b)
{
	return a == NULL ? b == NULL : (b != NULL && strcmp(a, b) == 0);
}

static char *
keep(const char *s)
{
	return s ? MemoryContextStrdup(TopMemoryContext, s) : NULL;
}

static void
free_range(RetlRange *r)
{
	if (r->end)
		pfree(r->end);
	pfree(r);
}

/* A range nobody settles: freed now, or with its last request. */
static void
drop_range(RetlRange *r)
{
	r->backfill = NULL;
	r->orphan = true;
	if (r->refs == 0)
		free_range(r);
}

static void
forget(RetlBackfill *b)
{
	ListCell   *lc;

	/* (what the worker knows of its queue is begun again with it) */
	retl_queued_keys_forget(b->sync_id);

	foreach(lc, b->ranges)
		drop_range((RetlRange *) lfirst(lc));
	list_free(b->ranges);
	backfills = list_delete_ptr(backfills, b);
	if (b->cursor)
		pfree(b->cursor);
	if (b->ahead)
		pfree(b->ahead);
	pfree(b);
}

/*
 * The backfill of a sync as the worker knows it: forgotten and begun again
 * from the row's cursor after a resync, or when the cursor is no longer
 * where the worker left it (a claim undone after it moved the cursor).
 */
RetlBackfill *
retl_ranges_of(RetlSync *sync)
{
	RetlBackfill *b = NULL;
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, backfills)
	{
		if (((RetlBackfill *) lfirst(lc))->sync_id == sync->id)
			b = lfirst(lc);
	}
	if (b != NULL && (b->resyncs != sync->resyncs || !same(b->cursor, sync->backfill_cursor)))
	{
		forget(b);
		b = NULL;
	}
	if (b == NULL)
	{
		old = MemoryContextSwitchTo(TopMemoryContext);
		b = palloc0(sizeof(RetlBackfill));
		b->sync_id = sync->id;
		b->resyncs = sync->resyncs;
		b->cursor = keep(sync->backfill_cursor);
		b->ahead = keep(sync->backfill_cursor);
		backfills = lappend(backfills, b);
		MemoryContextSwitchTo(old);
	}
	return b;
}

/*
 * In the claim's transaction: move the sync's cursor past the ranges that
 * are done, in order.  False when the backfill is over (the last range
 * done), or when the sync was resynced meanwhile (b forgotten: the next
 * pass begins again from the start); b is gone then.  While another
 * transaction holds the row (a pause not yet committed), the cursor
 * stays, and the done ranges wait for a later pass.
 */
bool
retl_ranges_settle(RetlBackfill *b, RetlSync *sync)
{
	RetlRange  *done = NULL;
	Oid			types[5] = {INT4OID, TEXTOID, BOOLOID, INT4OID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = "     ";
	bool		last;

	if (b->ranges == NIL || ((RetlRange *) linitial(b->ranges))->refs != 0 ||
		!retl_sync_row_ready(sync->id))
		return true;
	while (b->ranges != NIL && ((RetlRange *) linitial(b->ranges))->refs == 0)
	{
		if (done != NULL)
			free_range(done);
		done = linitial(b->ranges);
		b->ranges = list_delete_first(b->ranges);
	}
	if (done == NULL)
		return true;

	values[0] = Int32GetDatum(sync->id);
	if (done->end)
		values[1] = CStringGetTextDatum(done->end);
	else
		nulls[1] = 'n';
	values[2] = BoolGetDatum(done->last);
	values[3] = Int32GetDatum(b->resyncs);
	if (b->cursor)
		values[4] = CStringGetTextDatum(b->cursor);
	else
		nulls[4] = 'n';
	/* (a database without retl.syncs.resyncs: sync.c) */
	if (retl_spi_execute(psprintf("UPDATE retl.syncs s SET backfill_cursor = $2::pg_catalog.jsonb, backfill_done = $3"
								  " WHERE s.id = $1 AND NOT s.backfill_done%s"
								  " AND s.backfill_cursor IS NOT DISTINCT FROM $5::pg_catalog.jsonb",
								  retl_sync_has_resyncs() ? " AND s.resyncs = $4" : ""),
						 5, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not save the backfill position of sync \"%s\"", sync->name);
	last = done->last;
	if (SPI_processed != 1 || last)
	{
		/*
		 * Over, or resynced meanwhile: no more of it this pass, where the
		 * sync is as the worker read it before (until it reads it again).
		 */
		sync->backfill_done = true;
		free_range(done);
		forget(b);
		return false;
	}
	if (b->cursor)
		pfree(b->cursor);
	b->cursor = keep(done->end);
	free_range(done);
	/* the sync as the worker keeps it, until it reads the row again */
	sync->backfill_cursor = b->cursor ? MemoryContextStrdup(GetMemoryChunkContext(sync), b->cursor) : NULL;
	return true;
}

/*
 * A claim of the sync failed: its subtransaction undid what the claim
 * queued, and the requests it built are freed, but a range claimed before
 * the failure would be counted done.  The backfill begins again from the
 * row's cursor (what was in flight is sent again).
 */
void
retl_ranges_forget(int sync_id)
{
	ListCell   *lc;

	foreach(lc, backfills)
	{
		if (((RetlBackfill *) lfirst(lc))->sync_id == sync_id)
		{
			forget((RetlBackfill *) lfirst(lc));
			return;
		}
	}
}

/* The syncs whose backfill the worker knows (ids), at a stop */
List *
retl_ranges_syncs(void)
{
	List	   *ids = NIL;
	ListCell   *lc;

	foreach(lc, backfills)
		ids = lappend_int(ids, ((RetlBackfill *) lfirst(lc))->sync_id);
	return ids;
}

/*
 * With one free slot, the backfill and the sync's queue take turns at it
 * (the queue would take it at every pass under a steady flow of changes):
 * true when it is the backfill's turn.
 */
bool
retl_ranges_take_turn(RetlSync *sync)
{
	RetlBackfill *b = retl_ranges_of(sync);

	b->turn = !b->turn;
	return b->turn;
}

/* Is a range done, that the next settle would move the cursor past? */
bool
retl_ranges_settle_due(RetlBackfill *b)
{
	return b->ranges != NIL && ((RetlRange *) linitial(b->ranges))->refs == 0;
}

/* The last key claimed (jsonb text), NULL for none. */
const char *
retl_ranges_ahead(RetlBackfill *b)
{
	return b->ahead;
}

/* Did a claim find no key after the last one claimed? */
bool
retl_ranges_read_all(RetlBackfill *b)
{
	return b->read_all;
}

/* A range being claimed: not the backfill's until retl_range_claimed. */
RetlRange *
retl_range_new(void)
{
	return MemoryContextAllocZero(TopMemoryContext, sizeof(RetlRange));
}

/*
 * The claim of a range went through: it is the backfill's, up to end
 * (NULL: it holds no key), last when the table had no key after it.
 */
void
retl_range_claimed(RetlBackfill *b, RetlRange *range, const char *end, bool last)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	range->backfill = b;
	range->orphan = false;
	range->last = last;
	range->end = end ? pstrdup(end) : (b->ahead ? pstrdup(b->ahead) : NULL);
	b->ranges = lappend(b->ranges, range);
	if (end != NULL)
	{
		if (b->ahead)
			pfree(b->ahead);
		b->ahead = pstrdup(end);
	}
	b->read_all = last;
	MemoryContextSwitchTo(old);
}

/* A claim of a range failed: nobody settles it. */
void
retl_range_failed(RetlRange *range)
{
	drop_range(range);
}

static void
unref(void *arg)
{
	RetlRange  *r = arg;

	if (--r->refs == 0 && r->orphan)
		free_range(r);
}

/* req carries records of its range until it is freed (retl_queue_hold). */
void
retl_range_hold(RetlRequest *req)
{
	MemoryContextCallback *cb = MemoryContextAlloc(req->cxt, sizeof(MemoryContextCallback));

	req->range->refs++;
	cb->func = unref;
	cb->arg = req->range;
	MemoryContextRegisterResetCallback(req->cxt, cb);
}
