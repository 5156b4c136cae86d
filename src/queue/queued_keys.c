/*
 * queued_keys.c: the keys a backfilling sync's queue has held.
 *
 * A backfill leaves a key the queue holds to its queued change, whose
 * record carries the row as it is when it is claimed (capture/backfill.c).
 * retl.queue has no index on its keys: an entry for each captured change
 * was a B-tree insert at a random place in the writer's transaction (and
 * after each checkpoint its whole leaf in the WAL), about half of what the
 * capture cost a writer (README, Performance).  Instead the worker reads
 * each backfilling sync's queue in id order through the primary key, the
 * rows queued since its last read, and keeps the keys it found in memory,
 * whole (jsonb), by their hash: a key is known queued only when it equals
 * one, so no hash collision can make the backfill leave out a key.
 *
 * A change committed after a read with an id below those it saw (ids are
 * drawn before commit) is found by a later read from a mark of its own
 * (mark.c, under the sync's id negated), as the claim's scan finds such
 * rows: the next one while the mark trails the reads by little, else a
 * second later (a transaction holding an xid keeps the mark where it is,
 * and each read from it reads all that follows).  Until then the backfill
 * does not know its key is queued, and sends it too (key_fates queues it
 * after a request that holds it, so the two never race): twice, never
 * lost.
 *
 * A key stays known once found, its change delivered or not: the change
 * (or a later one, queued in its turn) sends the row as it is then, so the
 * backfill need not; a change dead-lettered waits in retl.dead_letters for
 * retl_replay, which sends the row as it is then.  (Looked up in the queue
 * as it was, a key whose change had been delivered before the backfill
 * reached it went twice.)  Not kept: a row in a request built before the
 * sync's last resync (what it sends was read before the resync: the key
 * goes after it, queued, and must not be left to it once it is delivered),
 * and a row a destination's job holds (marked in flight: the same).
 *
 * The keys are forgotten when the backfill is (ranges.c: done, resynced,
 * begun again from its cursor; the queued backfill done), when the sync is
 * dropped or its backfill over (retl_queued_keys_keep_only; a pause keeps
 * them, for the backfill goes on from its cursor at the resume, unless
 * backfills under way need their memory), and
 * after a resync (the sync's count of them changed) or a backfill begun
 * again from the first key: then read again from the queue's first row,
 * so a key whose change was delivered before is sent again by the
 * backfill.  The sets of all syncs take at most retl.backfill_key_memory
 * (an estimate: a key's jsonb as palloc rounds it, and its entry); past
 * that a set keeps no more keys, the backfill sends the keys it does not
 * know (twice, never lost; the server log says so, once a set), and the
 * sync's queue is read again from its first row (only what it holds then)
 * after REREAD_FULL_MS.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "base/plans.h"
#include "queue/mark.h"
#include "queue/queue.h"
#include "queue/queued_keys.h"

/* rows a read takes at a time */
#define READ_PAGE 1000
/* a read from the mark (rows committed late), at most this often */
#define REREAD_MARK_MS 1000
/* a set that outgrew retl.backfill_key_memory is read again after this long */
#define REREAD_FULL_MS 10000

/* the keys kept with one hash */
typedef struct KeySlot
{
	uint64		hash;			/* hash key */
	Jsonb	   *key;			/* a flat copy */
	List	   *more;			/* (Jsonb *) others of the same hash */
} KeySlot;

typedef struct QueuedKeys
{
	int			sync_id;		/* hash key */
	int			resyncs;		/* the sync's count of resyncs when begun */
	bool		past_start;		/* the backfill's cursor was seen past the
								 * first key */
	MemoryContext cxt;			/* the keys' */
	HTAB	   *keys;			/* KeySlot, in cxt */
	int64		bytes;			/* the keys' memory, estimated (key_bytes) */
	bool		full;			/* retl.backfill_key_memory reached: no more
								 * kept */
	bool		told;			/* the server log was told it was full */
	TimestampTz full_since;
	int64		read_to;		/* the last id read */
	TimestampTz mark_read_at;	/* the last read from the mark */
	uint64		paused_gen;		/* catalog generation at which the sync was
								 * last found paused, its backfill not over
								 * (0: active since) */
} QueuedKeys;

static HTAB *sets = NULL;

/* the memory of the keys of all sets, estimated (key_bytes) */
static int64 all_bytes = 0;

/*
 * What keeping a key takes, about: its flat copy as palloc rounds it (up to
 * a power of 2, with the chunk's header) and its hash entry (with
 * dynahash's header and its share of the buckets).
 */
static int64
key_bytes(Size size)
{
	Size		chunk = size <= 8192 ? pg_nextpower2_size_t(Max(size, 8)) : MAXALIGN(size);

	return (int64) chunk + 16 + MAXALIGN(sizeof(KeySlot)) + 16 + 8;
}

/* The keys of the sync again from the queue's first row. */
static void
begin(QueuedKeys *s)
{
	HASHCTL		ctl;

	if (s->cxt != NULL)
		MemoryContextDelete(s->cxt);
	s->cxt = NULL;
	s->keys = NULL;
	all_bytes -= s->bytes;
	s->bytes = 0;
	s->cxt = AllocSetContextCreate(TopMemoryContext, "retl queued keys", ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(KeySlot);
	ctl.hcxt = s->cxt;
	s->keys = hash_create("retl queued keys", 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	s->full = false;
	s->read_to = 0;
	s->mark_read_at = 0;		/* (DT_NOBEGIN would overflow a difference) */
	retl_mark_rewind(-s->sync_id, 0);
}

/*
 * The sync's keys as kept: begun again after a resync, or when its
 * backfill's cursor is back at the start (a database without
 * retl.syncs.resyncs counts none: there a resync shows only so).
 */
static QueuedKeys *
set_of(RetlSync *sync)
{
	QueuedKeys *s;
	bool		found;

	if (sets == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int);
		ctl.entrysize = sizeof(QueuedKeys);
		sets = hash_create("retl queued keys of syncs", 16, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	s = hash_search(sets, &sync->id, HASH_ENTER, &found);
	if (!found)
	{
		s->cxt = NULL;
		s->keys = NULL;
		s->resyncs = sync->resyncs;
		s->past_start = false;
		s->paused_gen = 0;
		s->bytes = 0;
		s->told = false;
		PG_TRY();
		{
			begin(s);
		}
		PG_CATCH();
		{
			hash_search(sets, &sync->id, HASH_REMOVE, NULL);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	else if (s->resyncs != sync->resyncs || (s->past_start && sync->backfill_cursor == NULL))
	{
		begin(s);
		s->resyncs = sync->resyncs;
		s->past_start = false;
	}
	s->past_start |= sync->backfill_cursor != NULL;
	return s;
}

static bool
same_key(Jsonb *kept, Datum key)
{
	return DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(kept), key));
}

/* The slot of hash, NULL if none; *known: key (jsonb) is kept there. */
static KeySlot *
slot_of(QueuedKeys *s, Datum key, uint64 hash, bool *known)
{
	KeySlot    *slot = hash_search(s->keys, &hash, HASH_FIND, NULL);
	ListCell   *lc;

	*known = false;
	if (slot == NULL)
		return NULL;
	*known = same_key(slot->key, key);
	foreach(lc, slot->more)
	{
		if (*known)
			break;
		*known = same_key(lfirst(lc), key);
	}
	return slot;
}

/*
 * Forget the keys of the paused syncs (retl_queued_keys_keep_only) but
 * keeping's, to make room for those of the backfills under way: at its
 * resume such a sync's keys are read again from its queue (a key whose
 * change went before may then be sent by its backfill too).  True if any
 * were.
 */
static bool
forget_paused(QueuedKeys *keeping)
{
	HASH_SEQ_STATUS status;
	QueuedKeys *s;
	List	   *paused = NIL;
	ListCell   *lc;

	hash_seq_init(&status, sets);
	while ((s = hash_seq_search(&status)) != NULL)
		if (s->paused_gen != 0 && s != keeping)
			paused = lappend_int(paused, s->sync_id);
	foreach(lc, paused)
		retl_queued_keys_forget(lfirst_int(lc));
	list_free(paused);
	return paused != NIL;
}

/* Keep key (jsonb), unless known; false when the set is full. */
static bool
keep(QueuedKeys *s, Datum key)
{
	uint64		hash = (uint64) DatumGetInt64(DirectFunctionCall2(jsonb_hash_extended, key,
																  Int64GetDatum(0)));
	bool		known;
	KeySlot    *slot = slot_of(s, key, hash, &known);
	MemoryContext old;
	Jsonb	   *copy;
	int64		cost;
	int64		limit = (int64) retl_backfill_key_memory_kb * 1024;

	if (known)
		return true;
	/* (as its copy is: detoasted, uncompressed) */
	cost = key_bytes(toast_raw_datum_size(key));
	if (all_bytes + cost > limit && (!forget_paused(s) || all_bytes + cost > limit))
		return false;
	old = MemoryContextSwitchTo(s->cxt);
	copy = DatumGetJsonbPCopy(key);
	if (slot == NULL)
	{
		slot = hash_search(s->keys, &hash, HASH_ENTER, NULL);
		slot->key = copy;
		slot->more = NIL;
	}
	else
		slot->more = lappend(slot->more, copy);
	MemoryContextSwitchTo(old);
	s->bytes += cost;
	all_bytes += cost;
	return true;
}

/*
 * Read the rows queued for the sync since the last read (all of them the
 * first time; from the mark, at most every REREAD_MARK_MS) and keep their
 * keys.  In a transaction, SPI connected.
 */
void
retl_queued_keys_read(RetlSync *sync)
{
	QueuedKeys *s = set_of(sync);
	TimestampTz now = GetCurrentTimestamp();
	HTAB	   *before;
	MemoryContext row_cxt;
	MemoryContext old;
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		values[2];
	int64		from;
	int64		last_id;
	bool		from_mark;
	bool		quiet;
	bool		done = false;

	if (s->keys == NULL)
		begin(s);				/* (its last begin failed) */
	else if (s->full)
	{
		if (!TimestampDifferenceExceeds(s->full_since, now, REREAD_FULL_MS))
			return;
		begin(s);				/* only those queued now */
	}

	/*
	 * With a snapshot of its own, after the transaction's last command (as
	 * the claim's scan: queue/claim.c): it sees the rows this transaction
	 * queued, and the mark moves by what it could not see.
	 */
	quiet = retl_mark_begin_scan(-sync->id);
	/*
	 * From the mark while it trails the last read by little (every row
	 * committed late is found at once), else at most every REREAD_MARK_MS
	 * (a transaction holding an xid keeps the mark where it is).
	 */
	from = retl_mark_start(-sync->id, now);
	from_mark = s->read_to - from < 2 * READ_PAGE ||
		TimestampDifferenceExceeds(s->mark_read_at, now, REREAD_MARK_MS);
	if (!from_mark)
		from = s->read_to + 1;
	last_id = from - 1;
	/* (without retl.syncs.resyncs, every request could be from before one) */
	retl_queue_held_keys(sync->id, retl_sync_has_resyncs() ? sync->resyncs : PG_INT32_MAX,
						 NULL, &before);
	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "retl queued keys read",
									ALLOCSET_DEFAULT_SIZES);
	values[0] = Int32GetDatum(sync->id);
	while (!done)
	{
		uint64		n;

		values[1] = Int64GetDatum(last_id);
		if (retl_spi_execute_by_index("SELECT q.id, q.key, q.in_flight FROM retl.queue q"
									  " WHERE q.sync_id = $1 AND q.id > $2"
									  " ORDER BY q.id LIMIT " CppAsString2(READ_PAGE),
									  2, types, values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "retl: could not read the queue of sync \"%s\"", sync->name);
		n = SPI_processed;
		done = n < READ_PAGE;
		old = MemoryContextSwitchTo(row_cxt);
		for (uint64 i = 0; i < n && !s->full; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;

			last_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			/* held by a job, or by a request built before the resync */
			if (DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)) ||
				hash_search(before, &last_id, HASH_FIND, NULL) != NULL)
				continue;
			if (!keep(s, SPI_getbinval(tup, desc, 2, &isnull)))
			{
				s->full = true;
				s->full_since = now;
				if (!s->told)
					ereport(LOG,
							(errmsg("retl: the keys queued for sync \"%s\" outgrew retl.backfill_key_memory (%d kB) during its backfill",
									sync->name, retl_backfill_key_memory_kb),
							 errdetail("Its backfill also sends the keys queued that the worker could not keep: those rows may be sent twice."),
							 errhint("Raise retl.backfill_key_memory.")));
				s->told = true;
			}
			MemoryContextReset(row_cxt);
		}
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);
		done |= s->full;
	}
	MemoryContextDelete(row_cxt);
	hash_destroy(before);
	s->read_to = Max(s->read_to, last_id);
	if (from_mark && !s->full)
	{
		retl_mark_advance(-sync->id, GetActiveSnapshot(), quiet, from, last_id,
						  PG_INT64_MAX, PG_INT64_MAX, DT_NOEND);
		s->mark_read_at = now;
	}
	PopActiveSnapshot();
}

/* Was key (jsonb, of the given jsonb hash) found queued for the sync? */
bool
retl_queued_keys_has(RetlSync *sync, Datum key, uint64 hash)
{
	QueuedKeys *s = sets ? hash_search(sets, &sync->id, HASH_FIND, NULL) : NULL;
	bool		known;

	if (s == NULL || s->keys == NULL)
		return false;
	(void) slot_of(s, key, hash, &known);
	return known;
}

/* The sync's backfill is over or forgotten: so are its keys. */
void
retl_queued_keys_forget(int sync_id)
{
	QueuedKeys *s = sets ? hash_search(sets, &sync_id, HASH_FIND, NULL) : NULL;

	if (s == NULL)
		return;
	if (s->cxt != NULL)
		MemoryContextDelete(s->cxt);
	all_bytes -= s->bytes;
	hash_search(sets, &sync_id, HASH_REMOVE, NULL);
}

/*
 * Does sync sync_id exist with its backfill still to go on?  In a
 * transaction, SPI connected.
 */
static bool
still_backfilling(int sync_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(sync_id)};

	if (retl_spi_execute_by_index("SELECT 1 FROM retl.syncs s WHERE s.id = $1 AND NOT s.backfill_done",
								  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read retl.syncs");
	return SPI_processed == 1;
}

/*
 * Forget the keys of the syncs not among syncs (RetlSync *: the active
 * ones) that were dropped or whose backfill is over.  A paused sync keeps
 * them: its backfill goes on from its cursor when it is resumed, and read
 * again from the queue they would miss the keys whose changes were
 * delivered before the pause, which the backfill would then send again.
 * Whether such a sync is still there is read again when gen (the
 * database's catalog generation: a pause, a resume, a drop, a backfill's
 * cursor saved move it) has moved.  Not in a database without
 * retl.syncs.resyncs: there a resync while paused before the first range
 * settled could not be told from the pause (set_of), and the keys must be
 * read again.  In a transaction, SPI connected.
 */
void
retl_queued_keys_keep_only(List *syncs, uint64 gen)
{
	HASH_SEQ_STATUS status;
	QueuedKeys *s;
	List	   *gone = NIL;
	ListCell   *lc;

	if (sets == NULL || hash_get_num_entries(sets) == 0)
		return;
	hash_seq_init(&status, sets);
	while ((s = hash_seq_search(&status)) != NULL)
	{
		bool		active = false;

		foreach(lc, syncs)
		{
			if (((RetlSync *) lfirst(lc))->id == s->sync_id)
			{
				active = true;
				break;
			}
		}
		if (active)
			s->paused_gen = 0;
		else if (s->paused_gen == 0 || s->paused_gen != gen)
			gone = lappend_int(gone, s->sync_id);
	}
	foreach(lc, gone)
	{
		int			sync_id = lfirst_int(lc);

		s = hash_search(sets, &sync_id, HASH_FIND, NULL);
		if (retl_sync_has_resyncs() && still_backfilling(sync_id))
			s->paused_gen = gen;
		else
			retl_queued_keys_forget(sync_id);
	}
	list_free(gone);
}
