/*
 * ahead.c: requests built ahead of their destination's free slots.
 *
 * With every slot of a destination taken, a pass builds up to as many
 * requests again (sync/dest.c says how many).  Each starts as soon as a
 * request of its destination finishes, before the worker records that
 * one's outcome and claims more: the outcome and claim transactions then
 * run while the destination works on the requests just started, instead
 * of between one round of requests and the next.
 *
 * A request built ahead is a claimed request like any other: it holds its
 * keys (queue/claim.c), so no later change of them is claimed before its
 * outcome, and its rows stay in the queue until then (a backfill's
 * records, not in the queue, are counted in flight by their range).  Lost
 * in a crash, they are claimed again.  Each is started only while the
 * database's catalog generation is the one it was built under: a commit
 * that changed a sync or a destination (a pause, a drop, a new URL,
 * options) since then makes the next claim give its rows back to the
 * queue instead, to be built again as the catalog now says, or not at all.
 */
#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/memutils.h"

#include "base/shmem.h"
#include "delivery/http.h"
#include "delivery/stats.h"
#include "process/ahead.h"
#include "queue/queue.h"
#include "sync/dest.h"

typedef struct Ahead
{
	RetlRequest *req;
	uint64		gen;			/* the catalog generation it was built under */
} Ahead;

static List *ahead = NIL;		/* Ahead *, in TopMemoryContext */

/*
 * Keep a request claimed under catalog generation gen, to start when its
 * destination has a free slot.
 */
void
retl_ahead_add(RetlRequest *req, uint64 gen)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	Ahead	   *a = palloc(sizeof(Ahead));

	a->req = req;
	a->gen = gen;
	ahead = lappend(ahead, a);
	MemoryContextSwitchTo(old);
	retl_dest_ahead(req->dest_id, 1);
}

/*
 * Start the requests built ahead whose destination has a free slot, in
 * the order they were built.  Outside any transaction.  *wait_ms is
 * lowered to the end of a pause one of them waits for.
 */
void
retl_ahead_start(TimestampTz now, long *wait_ms)
{
	ListCell   *lc;
	uint32		queued[RETL_QUEUE_BUCKETS];
	uint64		gen;

	if (ahead == NIL)
		return;
	gen = retl_database_generations(queued);
	foreach(lc, ahead)
	{
		Ahead	   *a = lfirst(lc);
		RetlRequest *req = a->req;

		/* (one built before a change of the catalog waits for the claim) */
		if (a->gen != gen || !retl_dest_may_start(req->dest_id, now, wait_ms))
			continue;
		ahead = foreach_delete_current(ahead, lc);
		pfree(a);
		retl_dest_ahead(req->dest_id, -1);
		retl_dest_sent(req->dest_id);
		retl_http_start(req);
		retl_stats_request_started(req);
	}
}

/*
 * In the claim transaction of catalog generation gen, whose syncs are
 * syncs: the requests built ahead under another generation, or for a sync
 * not loaded, give their rows back to the queue.
 */
void
retl_ahead_release(List *syncs, uint64 gen)
{
	ListCell   *lc;

	foreach(lc, ahead)
	{
		Ahead	   *a = lfirst(lc);
		RetlRequest *req = a->req;
		bool		loaded = false;
		ListCell   *s;

		foreach(s, syncs)
			loaded |= ((RetlSync *) lfirst(s))->id == req->sync_id;
		if (loaded && a->gen == gen)
			continue;
		ahead = foreach_delete_current(ahead, lc);
		pfree(a);
		retl_dest_ahead(req->dest_id, -1);
		retl_queue_release(req, 0);
		retl_http_free(req);
	}
}

/* How many requests wait to start. */
int
retl_ahead_count(void)
{
	return list_length(ahead);
}
