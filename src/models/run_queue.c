/*
 * run_queue.c: a diff run's changes queued as its statement returns them.
 *
 * A run's statement wrote the rows to send into pg_temp.retl_run_diff, and
 * an INSERT ... SELECT from there queued them once the statement had
 * ended: 32-54 ms of make bench's 144-168 ms diff run (10,000 changes of a
 * million rows), one core at work while the other waited.  The statement
 * runs in parallel, and its leader, which receives the changed rows from
 * the workers, now writes them into retl.queue as they come
 * (capture/queue_insert.c's writer), while the workers read on.
 *
 * In parallel mode nextval() is refused, so the rows' ids are taken
 * before the statement: as many as the run expects to queue (a hundredth
 * of its snapshot, as the planner is told; the rows the planner expects
 * of a first run that sends), at most MAX_IDS; ids left over are gaps in
 * the sequence, as a rolled back insert leaves.  The rows beyond them, and
 * those that are not queued as they are (removed keys, found after the
 * statement; keys of 0.1's snapshots, compared after it) go through
 * pg_temp.retl_run_diff as before.  A statement run again (a part that
 * outgrew its room) first deletes the rows it queued.  Nothing of it
 * outlives the run's transaction: a failed run queues nothing.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/jsonb.h"

#include "capture/queue_insert.h"
#include "models/run_queue.h"

/* at most this many ids taken ahead of a statement */
#define MAX_IDS		65536
/* and at least this many */
#define MIN_IDS		256

struct RetlRunQueue
{
	int			sync_id;
	bool		ops[256];		/* the ops queued */
	RetlQueueWriter *writer;
	int64	   *ids;
	int			nids;
	int			used;			/* ids of rows written */
};

/*
 * A run's queue, as the current user (the runner's) writes retl.queue, for
 * the rows whose op is one of ops (letters), about expected of them; NULL
 * if retl.queue is not as queue_insert.c writes it (its rows then all go
 * through pg_temp.retl_run_diff).
 */
RetlRunQueue *
retl_run_queue_begin(int sync_id, const char *ops, int64 expected)
{
	RetlQueueWriter *w = retl_queue_writer_open(GetUserId());
	RetlRunQueue *q;

	if (w == NULL)
		return NULL;
	/*
	 * The ids are drawn once the transaction has an xid, as every writer of
	 * retl.queue draws them: the worker's claim scan relies on it to know
	 * which ids a transaction still in progress may yet commit
	 * (queue/mark.c).
	 */
	(void) GetTopTransactionId();
	q = palloc0(sizeof(RetlRunQueue));
	q->sync_id = sync_id;
	for (const char *c = ops; *c; c++)
		q->ops[(unsigned char) *c] = true;
	q->writer = w;
	q->nids = (int) Min(Max(expected + expected / 4, MIN_IDS), MAX_IDS);
	q->ids = palloc(sizeof(int64) * q->nids);
	retl_queue_writer_ids(w, q->ids, q->nids);
	return q;
}

/*
 * Queue a row of the statement (its key, data and op), if its op is
 * queued and an id is left for it; false if not (nothing done).
 */
bool
retl_run_queue_put(RetlRunQueue *q, char op, Datum key, Datum data, bool data_null)
{
	if (!q->ops[(unsigned char) op] || q->used >= q->nids)
		return false;
	retl_queue_writer_put(q->writer, q->ids[q->used], q->sync_id, op,
						  (Jsonb *) DatumGetPointer(key),
						  data_null ? NULL : (Jsonb *) DatumGetPointer(data));
	q->used++;
	return true;
}

/*
 * Delete the rows queued so far (SPI connected), for a statement that runs
 * again; their ids are taken again.
 */
void
retl_run_queue_undo(RetlRunQueue *q)
{
	Oid			types[2] = {INT4OID, INT8ARRAYOID};
	Datum		values[2];
	Datum	   *ids;

	if (q->used == 0)
		return;
	ids = palloc(sizeof(Datum) * q->used);
	for (int i = 0; i < q->used; i++)
		ids[i] = Int64GetDatum(q->ids[i]);
	values[0] = Int32GetDatum(q->sync_id);
	values[1] = PointerGetDatum(construct_array(ids, q->used, INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (SPI_execute_with_args("DELETE FROM retl.queue q WHERE q.sync_id = $1 AND q.id = ANY ($2)",
							  2, types, values, NULL, false, 0) != SPI_OK_DELETE ||
		SPI_processed != (uint64) q->used)
		elog(ERROR, "retl: could not delete the %d rows a run queued before running again", q->used);
	pfree(ids);
	q->used = 0;
}

/* The rows queued; the queue closed */
int64
retl_run_queue_end(RetlRunQueue *q)
{
	int64		queued = q->used;

	retl_queue_writer_close(q->writer);
	pfree(q->ids);
	pfree(q);
	return queued;
}
