/*
 * parts.c: requests built and waiting for their destination's slots.
 *
 * Halves of batches refused as a whole (worker.c), and requests claimed
 * ahead (claims.c), wait here for their destination's limits (rate,
 * concurrency) like any request, their keys and rows held meanwhile: no
 * claim takes a key of theirs, so per-key order is kept.  By sync, each
 * sync's in the order they are to go.
 *
 * The claim transaction starts them as slots free (retl_parts_start).  So
 * does the pass, before its transactions and without one
 * (retl_worker_start_parts): an answer's slot is taken by the next request
 * without waiting for the pass's claim transaction, and a pass with
 * nothing else to do opens no claim transaction at all.  libcurl sends
 * them at the pass's wait, as it does the claim's: having it send them
 * at once, before the pass's outcome transaction (tried), took the worker
 * from 39-41 to 66 us of CPU a record at batch_size 1.
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "base/shmem.h"
#include "capture/backfill.h"
#include "connectors/connector.h"
#include "delivery/http.h"
#include "process/worker.h"
#include "queue/mark.h"
#include "queue/queue.h"
#include "sync/dest.h"
#include "sync/dropping.h"
#include "sync/sync.h"

typedef struct WaitingParts
{
	int			sync_id;		/* the hash key */
	List	   *parts;			/* RetlRequest *, in TopMemoryContext */
	uint64		seen;			/* the last pass that found its sync loaded */
	int			concurrency;	/* its max_concurrency as of the last pass
								 * that parked or started its parts; 0 until
								 * requests claimed ahead are parked */
} WaitingParts;

static HTAB *waiting = NULL;	/* int sync_id -> WaitingParts */
static uint64 passes = 0;

/* The waiting parts of a sync: NULL if none, unless create. */
static WaitingParts *
waiting_of(int sync_id, bool create)
{
	WaitingParts *w;
	bool		found;

	if (waiting == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		ctl.keysize = sizeof(int);
		ctl.entrysize = sizeof(WaitingParts);
		ctl.hcxt = TopMemoryContext;
		waiting = hash_create("retl waiting parts", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	w = hash_search(waiting, &sync_id, create ? HASH_ENTER : HASH_FIND, &found);
	if (create && !found)
	{
		w->parts = NIL;
		w->seen = 0;
		w->concurrency = 0;
	}
	return w;
}

/* Add a request to a list kept in TopMemoryContext (it outlives transactions). */
List *
retl_worker_add_request(List *requests, RetlRequest *req)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	requests = lappend(requests, req);
	MemoryContextSwitchTo(old);
	return requests;
}

/* Keep the parts (built requests) until their destination takes them. */
void
retl_worker_park_parts(List *parts)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	ListCell   *lc;

	foreach(lc, parts)
	{
		RetlRequest *part = lfirst(lc);
		WaitingParts *w = waiting_of(part->sync_id, true);

		w->parts = lappend(w->parts, part);
	}
	MemoryContextSwitchTo(old);
}

/* The sync's requests just parked were claimed ahead, at this concurrency. */
void
retl_parts_claimed_ahead(int sync_id, int concurrency)
{
	WaitingParts *w = waiting_of(sync_id, false);

	if (w != NULL)
		w->concurrency = concurrency;
}

/* Does any part wait? */
bool
retl_parts_any(void)
{
	return waiting != NULL && hash_get_num_entries(waiting) > 0;
}

/* How many parts of the sync wait. */
int
retl_parts_count(int sync_id)
{
	WaitingParts *w = waiting_of(sync_id, false);

	return w == NULL ? 0 : list_length(w->parts);
}

/*
 * Will the sync's waiting parts outlast its destination's free slots (dest
 * the destination), so that the next pass starts some and claims nothing
 * for it?  Only for requests claimed ahead, whose sync's concurrency is
 * known here.
 */
bool
retl_worker_parts_outlast(int sync_id, int dest)
{
	WaitingParts *w = waiting_of(sync_id, false);

	return w != NULL && w->concurrency > 0 &&
		list_length(w->parts) > w->concurrency - retl_dest_in_flight(dest);
}

/*
 * In the claim transaction: the parts of syncs not loaded (paused,
 * dropped) give their rows back to the queue; all of them with syncs NIL
 * (a stop: worker.c).
 */
void
retl_parts_release_unloaded(List *syncs)
{
	HASH_SEQ_STATUS seq;
	WaitingParts *w;
	ListCell   *lc;

	if (waiting == NULL || hash_get_num_entries(waiting) == 0)
		return;
	passes++;
	foreach(lc, syncs)
		if ((w = waiting_of(((RetlSync *) lfirst(lc))->id, false)) != NULL)
			w->seen = passes;
	hash_seq_init(&seq, waiting);
	while ((w = hash_seq_search(&seq)) != NULL)
	{
		List	   *parts = w->parts;

		if (w->seen == passes)
			continue;
		(void) hash_search(waiting, &w->sync_id, HASH_REMOVE, NULL);
		foreach(lc, parts)
		{
			retl_queue_release(lfirst(lc), 0);
			retl_http_free(lfirst(lc));
		}
		list_free(parts);
	}
}

/*
 * The waiting parts of a sync its destination may send now, appended to
 * *requests (retl_worker_add_request).  Returns true when parts were
 * started and took the destination's last free slot.  The caller has
 * made sure that no drop of the sync is under way.
 */
bool
retl_parts_start(RetlSync *sync, TimestampTz now, long *wait_ms, List **requests)
{
	WaitingParts *w = waiting_of(sync->id, false);
	bool		started = false;

	if (w == NULL)
		return false;
	if (w->concurrency > 0)
		w->concurrency = sync->max_concurrency;
	while (w->parts != NIL)
	{
		if (!retl_dest_can_send(sync, now, wait_ms))
			return started;
		*requests = retl_worker_add_request(*requests, linitial(w->parts));
		w->parts = list_delete_first(w->parts);
		retl_dest_sent(sync->dest_id);
		started = true;
	}
	(void) hash_search(waiting, &sync->id, HASH_REMOVE, NULL);
	return false;
}

/*
 * Claiming ahead.  With every slot of a destination taken, a claim
 * transaction per round of requests is most of what the worker spends on
 * a small request beyond libcurl (at batch_size 1, eight slots: a claim
 * of about 100 us for 8 records, `perf` of bench (f)).  So a claim that
 * fills a destination's free slots takes up to CLAIM_AHEAD_ROUNDS rounds
 * of its concurrency more, when the queue has them, and keeps them here;
 * the next passes start them as slots free, without a claim, and the pass
 * that finds less than a round of them left while every slot is taken
 * claims the next rounds (claims.c), so that slots never wait for a
 * claim.  At most CLAIM_AHEAD_RECORDS records wait so: a batch of hundreds
 * of records pays for its claim by itself.  A sync with a rate limit, or a
 * backfill that goes through the queue (capture/backfill.c), claims no
 * more than its slots; a backfill sent straight from the table claims its
 * ranges ahead too (one range of eight keys a pass at batch_size 1 was
 * 4,200 records a second to nginx; 21,500 with them), and a pause gives
 * them back to the queue (retl_parts_release_unloaded: materialized as
 * 'b' rows, so the ranges they leave can settle).  Seven rounds rather
 * than three since the claim ahead keeps the slots busy: 35 us of the
 * worker's CPU a record at batch_size 1 against 39, 22,569 records/s
 * against 20,986 (scratch cluster, builds alternating, 6 runs each).
 */
#define CLAIM_AHEAD_ROUNDS 7
#define CLAIM_AHEAD_RECORDS 256

int
retl_parts_claim_ahead(RetlSync *sync)
{
	if ((!sync->backfill_done && !retl_backfill_direct(sync)) || sync->rate_limit > 0)
		return 0;
	return Min(sync->max_concurrency * CLAIM_AHEAD_ROUNDS,
			   CLAIM_AHEAD_RECORDS / Max(sync->batch_size, 1));
}

/*
 * Does the sync want more requests claimed ahead now: every slot of its
 * destination taken, less than a round of them left (a round: its
 * concurrency, or all it claims ahead when that is less), and its queue
 * not found empty since (queued_gen: its bucket's queue counter) or its
 * backfill not over (its next ranges)?  Then the claim takes what it
 * claims ahead less what is left: at least one.
 */
bool
retl_parts_running_low(RetlSync *sync, uint32 queued_gen, TimestampTz now)
{
	int			ahead = retl_parts_claim_ahead(sync);

	return ahead > 0 &&
		retl_dest_in_flight(sync->dest_id) >= sync->max_concurrency &&
		retl_parts_count(sync->id) < Min(sync->max_concurrency, ahead) &&
		(!sync->backfill_done || !retl_mark_is_idle(sync->id, queued_gen, now));
}

/*
 * May the sync's parts start without a transaction?  Not when they must
 * wait for its claim transaction: a destination with an auth option (an
 * OAuth 2.0 token may have to be renewed first: claims.c), answers its
 * connector reads (a "too many" in a 2xx body pauses the destination when
 * the answer is recorded), a backfill, or jobs' checks.  In practice:
 * webhooks without an auth option.  (A sync backed off after a failure
 * starts nothing: the caller skips it.)
 */
static bool
starts_early(RetlSync *sync)
{
	const RetlConnector *c = retl_connector_or_null(sync->kind);

	return c != NULL && c->read_answer == NULL && c->build_job == NULL &&
		sync->auth == NULL && sync->backfill_done;
}

/*
 * The pass's start, before its transactions and without one: the waiting
 * parts of syncs that may start early, as far as their destinations' slots
 * (freed by the answers just collected) and limits allow.  Only while the
 * syncs kept from the last claim pass are still what the catalog has
 * (retl_sync_kept: none paused, resumed, altered or dropped since); a drop
 * under way keeps its sync's parts waiting (retl_sync_dropping_now).
 *
 * Returns the requests to start, in a list of TopMemoryContext.  *claim is
 * set false when the pass's claim transaction would do nothing: parts
 * wait, and every sync either has parts left that outlast its slots (it
 * would claim nothing) or is idle (its queue found empty, nothing queued
 * since).  *full is set when parts took a destination's last slot;
 * *wait_ms is lowered to when a paused or rate-limited destination may
 * send again.
 */
List *
retl_worker_start_parts(bool *claim, bool *full, long *wait_ms)
{
	uint32		queued[RETL_QUEUE_BUCKETS];
	uint64		gen;
	TimestampTz now;
	List	   *syncs;
	List	   *requests = NIL;
	ListCell   *lc;
	bool		kept;
	bool		quiet = true;

	*claim = true;
	if (!retl_parts_any())
		return NIL;
	gen = retl_database_generations(queued);
	now = GetCurrentTimestamp();
	syncs = retl_sync_kept(gen, now, &kept);
	if (!kept)
		return NIL;
	foreach(lc, syncs)
	{
		RetlSync   *sync = lfirst(lc);
		uint32		queued_gen = queued[sync->id % RETL_QUEUE_BUCKETS];

		if (retl_worker_backed_off(sync->id, now))
			continue;			/* its claim pass would do nothing either */
		if (!starts_early(sync))
		{
			quiet = false;
			continue;
		}
		if (retl_parts_count(sync->id) > 0)
		{
			if (retl_sync_dropping_now(sync->id))
			{
				quiet = false;	/* the claim pass waits for the drop */
				continue;
			}
			if (retl_parts_start(sync, now, wait_ms, &requests))
				*full = true;
		}
		if (retl_parts_count(sync->id) > 0 ?
			retl_parts_running_low(sync, queued_gen, now) :
			!retl_mark_is_idle(sync->id, queued_gen, now))
			quiet = false;
	}
	*claim = !quiet;
	return requests;
}
