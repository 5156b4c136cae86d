/*
 * spool.c: the plugin's lines of transactions decoded while in progress.
 *
 * A transaction larger than logical_decoding_work_mem used to be written
 * to disk by the reorder buffer (every change, whole) and read back at its
 * commit, even when no change of it was for retl: a bulk load of a million
 * rows into a table no logical sync reads cost the worker seconds of CPU
 * and I/O.  The plugin now takes such a transaction streamed (PostgreSQL
 * 14's streaming of in-progress transactions): the reorder buffer hands
 * its changes over in blocks as the memory limit is reached and forgets
 * them.  The changes for no sync are dropped as they come; the lines for
 * retl are kept here until the transaction ends, per top-level transaction,
 * each with the (sub)transaction that made it, in a tuplestore (memory up
 * to logical_decoding_work_mem, then a temporary file).  At its commit the
 * plugin writes them as one B ... C block, as it writes a transaction
 * decoded at commit, leaving out those of subtransactions rolled back; at
 * its abort they are dropped.
 *
 * The spool lives as long as the decoding context (across transactions:
 * the tuplestores are inter-transaction and owned by the spool's own
 * resource owner).  When the context is freed, so is the spool: a new
 * context decodes every transaction that had not committed before the
 * slot's confirmed position again from its start (the slot's restart_lsn
 * is never past the start of a transaction in progress), so nothing kept
 * here needs to outlive it.
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "replication/reorderbuffer.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/tuplestore.h"

#include "capture/spool.h"

/* the lines one streamed top-level transaction has for retl so far */
typedef struct SpooledTxn
{
	TransactionId top;			/* hash key */
	Tuplestorestate *lines;		/* (xid, line) */
	TransactionId *aborted;		/* its subtransactions rolled back */
	int			naborted;
	int			maxaborted;
} SpooledTxn;

struct RetlSpool
{
	MemoryContext cxt;
	ResourceOwner owner;		/* the tuplestores' temporary files */
	HTAB	   *txns;			/* SpooledTxn by top-level xid */
	TupleDesc	desc;
	TupleTableSlot *slot;
};

RetlSpool *
retl_spool_create(MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "retl decoder spool",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	RetlSpool  *spool = palloc0(sizeof(RetlSpool));
	HASHCTL		hctl;

	spool->cxt = cxt;
	spool->owner = ResourceOwnerCreate(NULL, "retl decoder spool");
	hctl.keysize = sizeof(TransactionId);
	hctl.entrysize = sizeof(SpooledTxn);
	hctl.hcxt = cxt;
	spool->txns = hash_create("retl decoder spool", 16, &hctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	spool->desc = CreateTemplateTupleDesc(2);
	TupleDescInitEntry(spool->desc, 1, "xid", XIDOID, -1, 0);
	TupleDescInitEntry(spool->desc, 2, "line", TEXTOID, -1, 0);
	spool->slot = MakeSingleTupleTableSlot(spool->desc, &TTSOpsMinimalTuple);
	MemoryContextSwitchTo(old);
	return spool;
}

static int
xid_cmp(const void *a, const void *b)
{
	TransactionId x = *(const TransactionId *) a;
	TransactionId y = *(const TransactionId *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

static void
forget(RetlSpool *spool, SpooledTxn *t)
{
	TransactionId top = t->top;

	tuplestore_end(t->lines);
	if (t->aborted)
		pfree(t->aborted);
	hash_search(spool->txns, &top, HASH_REMOVE, NULL);
}

void
retl_spool_destroy(RetlSpool *spool)
{
	HASH_SEQ_STATUS seq;
	SpooledTxn *t;

	hash_seq_init(&seq, spool->txns);
	while ((t = hash_seq_search(&seq)) != NULL)
	{
		tuplestore_end(t->lines);
		t->lines = NULL;
	}
	ExecDropSingleTupleTableSlot(spool->slot);
	/* nothing is registered with it: inter-transaction files are not */
	ResourceOwnerDelete(spool->owner);
	MemoryContextDelete(spool->cxt);
}

/* Keep a line of xid, a (sub)transaction of the streamed transaction top. */
void
retl_spool_add(RetlSpool *spool, TransactionId top, TransactionId xid,
			   const char *line, int len)
{
	SpooledTxn *t;
	bool		found;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	t = hash_search(spool->txns, &top, HASH_ENTER, &found);
	if (!found)
	{
		MemoryContext old = MemoryContextSwitchTo(spool->cxt);
		ResourceOwner oldowner = CurrentResourceOwner;

		/*
		 * Inter-transaction, and owned by the spool: this runs in the
		 * reorder buffer's subtransaction, which ends before the commit.
		 */
		CurrentResourceOwner = spool->owner;
		t->lines = tuplestore_begin_heap(false, true, logical_decoding_work_mem);
		CurrentResourceOwner = oldowner;
		t->aborted = NULL;
		t->naborted = t->maxaborted = 0;
		MemoryContextSwitchTo(old);
	}
	values[0] = TransactionIdGetDatum(xid);
	values[1] = PointerGetDatum(cstring_to_text_with_len(line, len));
	tuplestore_putvalues(t->lines, spool->desc, values, nulls);
	pfree(DatumGetPointer(values[1]));
}

/*
 * xid was rolled back: the whole transaction (xid is top), or one of its
 * subtransactions, whose lines are then left out at the commit.
 */
void
retl_spool_abort(RetlSpool *spool, TransactionId top, TransactionId xid)
{
	SpooledTxn *t = hash_search(spool->txns, &top, HASH_FIND, NULL);

	if (t == NULL)
		return;
	if (TransactionIdEquals(xid, top))
	{
		forget(spool, t);
		return;
	}
	if (t->naborted == t->maxaborted)
	{
		t->maxaborted = Max(8, t->maxaborted * 2);
		t->aborted = t->aborted ?
			repalloc(t->aborted, t->maxaborted * sizeof(TransactionId)) :
			MemoryContextAlloc(spool->cxt, t->maxaborted * sizeof(TransactionId));
	}
	t->aborted[t->naborted++] = xid;
}

/*
 * The streamed transaction top committed: pass fn its lines, in order,
 * but those of its subtransactions rolled back, and forget them.
 */
void
retl_spool_replay(RetlSpool *spool, TransactionId top, RetlSpoolLineFn fn, void *arg)
{
	SpooledTxn *t = hash_search(spool->txns, &top, HASH_FIND, NULL);
	MemoryContext old;

	if (t == NULL)
		return;
	if (t->naborted > 1)
		qsort(t->aborted, t->naborted, sizeof(TransactionId), xid_cmp);

	/*
	 * Lines read back from the file are allocated in the current context:
	 * the spool's, which outlives the reorder buffer's subtransaction even
	 * if this ends in an error (the slot holds the last one read).
	 */
	old = MemoryContextSwitchTo(spool->cxt);
	while (tuplestore_gettupleslot(t->lines, true, false, spool->slot))
	{
		bool		isnull;
		TransactionId xid = DatumGetTransactionId(slot_getattr(spool->slot, 1, &isnull));
		text	   *line;

		if (t->naborted > 0 &&
			bsearch(&xid, t->aborted, t->naborted, sizeof(TransactionId), xid_cmp) != NULL)
			continue;
		line = DatumGetTextPP(slot_getattr(spool->slot, 2, &isnull));
		MemoryContextSwitchTo(old);
		fn(arg, VARDATA_ANY(line), VARSIZE_ANY_EXHDR(line));
		MemoryContextSwitchTo(spool->cxt);
	}
	ExecClearTuple(spool->slot);
	MemoryContextSwitchTo(old);
	forget(spool, t);
}
