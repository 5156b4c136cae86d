/*
 * claims.c: the claim transaction of the worker's pass (worker.c).
 *
 * For each active sync, in one transaction, each sync in a subtransaction
 * of its own so that a broken sync only marks itself failing: its OAuth
 * token's renewal, the halves of its refused batches and the requests
 * claimed ahead waiting for their destination (parts.c), its jobs'
 * checks, then as many requests as its destination's limits allow (and a
 * few rounds more, claimed ahead), from a backfill chunk and the queue, or
 * with every slot taken the next rounds ahead when few are left.  A sync
 * that failed is left alone for a while (retl.retry_base_ms, doubling up
 * to retl.retry_max_ms).
 */
#include "postgres.h"

#include "pgstat.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "base/shmem.h"
#include "base/subxact.h"
#include "capture/backfill.h"
#include "connectors/connector.h"
#include "connectors/oauth.h"
#include "delivery/http.h"
#include "process/txn.h"
#include "process/worker.h"
#include "queue/counters.h"
#include "queue/jobs.h"
#include "queue/mark.h"
#include "queue/queue.h"
#include "queue/queued_keys.h"
#include "queue/ranges.h"
#include "sync/dest.h"
#include "sync/dropping.h"

/*
 * A sync that failed to build a request is left alone for a while.  Its
 * error is logged once while it lasts (a table dropped fails the sync for
 * good: logged at each retry, it filled the log); retl.sync_status shows it.
 */
typedef struct SyncBackoff
{
	int			sync_id;
	int			failures;
	TimestampTz not_before;
	char	   *logged;			/* the error last logged, or NULL */
} SyncBackoff;

static List *backoffs = NIL;	/* SyncBackoff *, in TopMemoryContext */

/* Is the sync left alone, after a failure, until later than now? */
bool
retl_worker_backed_off(int sync_id, TimestampTz now)
{
	ListCell   *lc;

	foreach(lc, backoffs)
	{
		SyncBackoff *b = lfirst(lc);

		if (b->sync_id == sync_id)
			return now < b->not_before;
	}
	return false;
}

static void
sync_succeeded(int sync_id)
{
	ListCell   *lc;

	foreach(lc, backoffs)
	{
		SyncBackoff *b = lfirst(lc);

		if (b->sync_id == sync_id)
		{
			backoffs = foreach_delete_current(backoffs, lc);
			if (b->logged != NULL)
				pfree(b->logged);
			pfree(b);
			return;
		}
	}
}

/*
 * The sync failed with message: it is left alone for a while, and shows
 * why.  what (claiming, checking a job), when not NULL, logs the failure:
 * as a WARNING the first time, at DEBUG1 while the same error lasts.
 */
static void
sync_failed(RetlSync *sync, const char *what, const char *message)
{
	ListCell   *lc;
	SyncBackoff *b = NULL;
	MemoryContext old;
	int64		delay;
	bool		repeated;

	retl_queue_sync_error(sync->id, message);
	foreach(lc, backoffs)
		if (((SyncBackoff *) lfirst(lc))->sync_id == sync->id)
			b = lfirst(lc);
	if (b == NULL)
	{
		old = MemoryContextSwitchTo(TopMemoryContext);
		b = palloc0(sizeof(SyncBackoff));
		b->sync_id = sync->id;
		backoffs = lappend(backoffs, b);
		MemoryContextSwitchTo(old);
	}
	b->failures++;
	delay = Min((int64) retl_retry_base_ms << Min(b->failures - 1, 20), (int64) retl_retry_max_ms);
	b->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
	if (what == NULL)
		return;
	repeated = b->logged != NULL && strcmp(b->logged, message) == 0;
	ereport(repeated ? DEBUG1 : WARNING,
			(errmsg("retl sync \"%s\" %s: %s", sync->name, what, message),
			 repeated ? 0 : errdetail("It is logged again only when it changes; retl.sync_status shows it while it lasts.")));
	if (repeated)
		return;
	if (b->logged != NULL)
		pfree(b->logged);
	b->logged = MemoryContextStrdup(TopMemoryContext, message);
}

typedef struct ClaimWork
{
	RetlSync   *sync;
	int			nbatches;
	int			slots;			/* of them, to be sent now (the rest wait) */
	bool	   *backfill;		/* a backfill chunk is due this pass */
	bool	   *more;
	long	   *wait_ms;
	List	   *reqs;
	bool		idle;			/* nothing to claim (queue/mark.c) */
	int			lingering;		/* a partial batch of that many waits */
	bool		busy;			/* its table is locked: left for a later pass */
} ClaimWork;

/* How soon a sync whose table was locked is tried again. */
#define SOURCE_BUSY_RETRY_MS 20

/* How soon a sync whose drop was under way is tried again. */
#define DROP_RETRY_MS 100

/*
 * Most syncs whose drop lock one claim pass takes (each is an entry of the
 * shared lock table until the pass commits, which has room for about
 * max_locks_per_transaction per backend): with more syncs to claim for,
 * passes take turns at them.
 */
#define DROP_LOCKS_PER_PASS 256
static int	drop_locks = 0;		/* taken by this pass */
static int	first_sync = 0;		/* where the next pass begins */

static void
claim_work_one(void *arg)
{
	ClaimWork  *w = arg;
	bool		direct;
	HTAB	   *held;
	bool		more = false;
	int			first;

	/*
	 * An upsert sync's table is taken first, without waiting (dropping.c).
	 * Waiting for it held up every sync of the database, and deadlocked
	 * with retl_drop_sync: the pass's transaction had written a row the
	 * drop deletes (its counters, another sync's error), and waited for
	 * the table of a sync the drop had locked.
	 */
	if (!retl_sync_table_ready(w->sync))
	{
		w->busy = true;
		*w->wait_ms = Min(*w->wait_ms, SOURCE_BUSY_RETRY_MS);
		return;
	}

	/*
	 * One backfill chunk per sync and pass: a chunk moves the sync's
	 * cursor, and the next pass reads the sync again (sync.c).
	 */
	direct = *w->backfill && retl_backfill_direct(w->sync);
	if (*w->backfill && !direct && retl_backfill_step(w->sync))
		*w->more = true;
	if (!direct)
	{
		/* (a partial batch waits up to linger_ms for more changes) */
		w->reqs = retl_queue_claim(w->sync, w->nbatches, w->wait_ms, &w->idle, &w->lingering);
		*w->backfill = false;
		return;
	}

	/*
	 * A backfill sent straight from the table shares the free slots with
	 * the queue: half of them first (it reads ahead of the queue's claims,
	 * and finds the keys the queue holds, which it leaves to them; a
	 * single slot every other pass), then the queue, then the backfill
	 * again with what the queue left, the requests claimed ahead among
	 * them.  (Half of all the claim takes, those claimed ahead included,
	 * gave every free slot to the backfill and left the queue's changes
	 * waiting behind its ranges.)  What the queue claims in the pass is
	 * not "in flight" for the backfill: those requests read their rows now
	 * (retl_backfill_claim).
	 */
	retl_queue_held_keys(w->sync->id, w->sync->resyncs, &held, NULL);
	first = w->slots / 2;
	if (first == 0 && retl_ranges_take_turn(w->sync))
		first = 1;
	if (first > 0)
		w->reqs = retl_backfill_claim(w->sync, first, held, &more);
	PG_TRY();
	{
		int			left = w->nbatches - list_length(w->reqs);

		/* (tests fail a claim here, its backfill's ranges claimed) */
		retl_test_fail_at("claim", w->sync->name);
		if (left > 0)
			w->reqs = list_concat(w->reqs, retl_queue_claim(w->sync, left, w->wait_ms,
															&w->idle, &w->lingering));
		left = w->nbatches - list_length(w->reqs);
		if (left > 0)
			w->reqs = list_concat(w->reqs, retl_backfill_claim(w->sync, left, held, &more));
	}
	PG_CATCH();
	{
		ListCell   *lc;

		foreach(lc, w->reqs)
			retl_http_free((RetlRequest *) lfirst(lc));
		w->reqs = NIL;
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (more)
		*w->more = true;
	*w->backfill = false;
}

/*
 * Backfill and claim up to nbatches requests of one sync inside a
 * subtransaction, the first slots of them to be sent at once (the rest
 * wait, claimed ahead).  Returns the requests to send, or NIL; *more is set
 * when backfill work remains, *lingering to the rows of a partial batch
 * that waits (queue/claim.c).  A sync found with nothing to claim is idle
 * as of gen, its bucket's queue counter (queue/mark.c).
 */
static List *
claim_one(RetlSync *sync, int nbatches, int slots, bool *backfill, bool *more, long *wait_ms,
		  uint32 gen, TimestampTz now, int *lingering)
{
	ClaimWork	w = {sync, nbatches, slots, backfill, more, wait_ms, NIL, false, 0, false};
	ErrorData  *edata = retl_in_subtransaction(claim_work_one, &w);

	*lingering = 0;
	if (edata == NULL && w.busy)
		return NIL;
	if (edata == NULL)
	{
		sync_succeeded(sync->id);
		if (w.idle)
			retl_mark_idle(sync->id, gen, now);
		*lingering = w.lingering;
		return w.reqs;
	}

	/* the claim's rows are ready again: scan the queue from its start */
	retl_mark_rewind(sync->id, 0);
	/* and a backfill's ranges are read again from its cursor */
	retl_ranges_forget(sync->id);
	sync_failed(sync, "failed", edata->message);
	FreeErrorData(edata);
	return NIL;
}

typedef struct JobWork
{
	RetlSync   *sync;
	long	   *wait_ms;
	RetlRequest *req;
} JobWork;

static void
job_work(void *arg)
{
	JobWork    *w = arg;

	w->req = retl_jobs_claim(w->sync, w->wait_ms);
}

/*
 * The next due check of one of the sync's jobs, built in a subtransaction,
 * or NULL.  A failure fails the sync, as a failed claim does.
 */
static RetlRequest *
job_one(RetlSync *sync, long *wait_ms)
{
	JobWork		w = {sync, wait_ms, NULL};
	ErrorData  *edata = retl_in_subtransaction(job_work, &w);

	if (edata == NULL)
		return w.req;
	sync_failed(sync, "could not check a job", edata->message);
	FreeErrorData(edata);
	return NULL;
}

typedef struct AuthWork
{
	RetlSync   *sync;
	TimestampTz now;
	long	   *wait_ms;
	RetlRequest *fetch;
	bool		ready;
} AuthWork;

static void
auth_work(void *arg)
{
	AuthWork   *w = arg;

	w->ready = retl_oauth_ready(w->sync, w->now, &w->fetch, w->wait_ms);
}

/*
 * May the sync's requests be built (its destination's OAuth 2.0 token is
 * there)?  A token request to send is appended to *requests.  A failure
 * (a secret it names is gone) fails the sync, not the worker.
 */
static bool
auth_ready(RetlSync *sync, TimestampTz now, long *wait_ms, List **requests)
{
	AuthWork	w = {sync, now, wait_ms, NULL, false};
	ErrorData  *edata;

	/* nothing to renew: no subtransaction at each pass */
	if (sync->auth == NULL)
		return true;
	edata = retl_in_subtransaction(auth_work, &w);
	if (edata != NULL)
	{
		sync_failed(sync, NULL, edata->message);
		FreeErrorData(edata);
		return false;
	}
	if (w.fetch != NULL)
		*requests = retl_worker_add_request(*requests, w.fetch);
	return w.ready;
}

/*
 * One sync's part of a pass: its jobs' checks and its claims, added to
 * *requests.  queued_gen: its bucket's queue counter, read before the
 * pass's snapshots.  *full is set when its claims took every slot its
 * destination had (more may be waiting for them).  Returns how many
 * changes queued for it from then on would give a pass something to do:
 * one, or what a lingering partial batch lacks to be full.
 */
static uint32
claim_sync(RetlSync *sync, uint32 queued_gen, TimestampTz now, bool *more,
		   bool *full, long *wait_ms, List **requests)
{
	RetlRequest *req;
	int			slots;
	bool		backfill = !sync->backfill_done;
	int			lingering = 0;
	bool		drained = false;	/* a claim found less than it asked for */

	if (retl_worker_backed_off(sync->id, now))
		return 1;
	/* a destination with OAuth 2.0 waits for its token */
	if (!auth_ready(sync, now, wait_ms, requests))
		return 1;

	/* nothing to do for it: its queue had nothing to claim, nothing since */
	if (!backfill && retl_mark_is_idle(sync->id, queued_gen, now) &&
		retl_parts_count(sync->id) == 0 && retl_connector(sync->kind)->build_job == NULL)
		return 1;

	/*
	 * A drop of the sync is under way: nothing of it is sent or claimed
	 * until the drop ends (sync/dropping.c); its commit wakes the worker, a
	 * rollback does not.  Else this pass holds the sync's drop lock.
	 */
	drop_locks++;
	if (retl_sync_dropping(sync->id))
	{
		*wait_ms = Min(*wait_ms, DROP_RETRY_MS);
		return 1;
	}

	/*
	 * Halves of a refused batch and requests claimed ahead first: they
	 * hold keys.  When they fill the destination, the pass filled it.
	 */
	if (retl_parts_start(sync, now, wait_ms, requests))
		*full = true;

	/* the checks of the destination's jobs first: they free keys */
	while (retl_dest_can_send(sync, now, wait_ms))
	{
		req = job_one(sync, wait_ms);
		if (req == NULL)
			break;
		*requests = retl_worker_add_request(*requests, req);
		retl_dest_sent(sync->dest_id);
	}

	/* its queue had nothing to claim, and nothing was queued since */
	if (!backfill && retl_mark_is_idle(sync->id, queued_gen, now))
		return 1;

	/*
	 * As many batches as the destination's limits allow, claimed together,
	 * and those claimed ahead to wait for the next free slots (parts.c);
	 * the claim never takes a key that is in flight, waiting for a slot or
	 * waiting for a retry, so concurrent batches keep per-key order.
	 */
	while ((slots = retl_dest_slots(sync, now, wait_ms)) > 0)
	{
		int			ahead = retl_parts_claim_ahead(sync);
		List	   *claimed = claim_one(sync, slots + ahead, slots, &backfill, more, wait_ms,
										queued_gen, now, &lingering);
		ListCell   *c;
		int			started = 0;
		List	   *parked = NIL;

		if (list_length(claimed) < slots + ahead)
			drained = true;
		if (claimed == NIL)
			break;
		foreach(c, claimed)
		{
			if (started < slots)
			{
				*requests = retl_worker_add_request(*requests, lfirst(c));
				retl_dest_sent(sync->dest_id);
				started++;
			}
			else
				parked = lappend(parked, lfirst(c));
		}
		retl_worker_park_parts(parked);
		if (parked != NIL)
			retl_parts_claimed_ahead(sync->id, sync->max_concurrency);
		list_free(parked);
		if (list_length(claimed) >= slots)
			*full = true;
		list_free(claimed);
	}

	/*
	 * Every slot taken and less than a round claimed ahead left: the next
	 * rounds now, while the requests in flight are out, so that the slots
	 * their answers free find requests built (parts.c).
	 */
	if (!drained && retl_parts_running_low(sync, queued_gen, now))
	{
		int			n = retl_parts_claim_ahead(sync) - retl_parts_count(sync->id);
		List	   *claimed = claim_one(sync, n, 0, &backfill, more, wait_ms, queued_gen, now,
										&lingering);

		retl_worker_park_parts(claimed);
		if (claimed != NIL)
			retl_parts_claimed_ahead(sync->id, sync->max_concurrency);
		list_free(claimed);
	}
	/* a partial batch waits out its linger unless it fills */
	return lingering > 0 && lingering < sync->batch_size ?
		(uint32) (sync->batch_size - lingering) : 1;
}

/*
 * At a stop (worker.c), once the answers are recorded: the requests
 * claimed ahead give their records back, as at a pause (a backfill's as
 * 'b' rows), and so do the requests still unanswered (abandoned: taken
 * from libcurl; whether they arrived is unknown, so they go again either
 * way); then the cursors of the backfills sent straight from their tables,
 * paused syncs' included, move past the ranges answered or given back, as
 * the next claim would move them, so that the next worker reads none of
 * them again.
 */
void
retl_worker_settle_backfills(List *abandoned)
{
	ListCell   *lc;

	retl_begin_txn();
	pgstat_report_activity(STATE_RUNNING, "stopping: saving the backfills' positions");
	if (!retl_lock_extension())
		retl_worker_exit_without_extension();
	retl_parts_release_unloaded(NIL);
	foreach(lc, abandoned)
	{
		RetlRequest *req = lfirst(lc);

		if (req->range != NULL)
			retl_queue_materialize(req, req->records, req->nrecords);
		retl_http_free(req);
	}
	foreach(lc, retl_ranges_syncs())
	{
		List	   *one = retl_sync_load(lfirst_int(lc));
		RetlSync   *sync = one != NIL ? linitial(one) : NULL;

		if (sync != NULL && !sync->backfill_done && retl_backfill_direct(sync))
			(void) retl_ranges_settle(retl_ranges_of(sync), sync);
	}
	retl_end_txn();
}

/*
 * One pass over the syncs; returns the requests to send.  Exits the
 * process when the extension is gone.  Then the commits that will wake
 * the worker are those that give the next pass something to do: a change
 * for a sync that is not paused, beyond a lingering partial batch's
 * (shmem.c); when one came meanwhile, *wait_ms is 0.
 */
List *
retl_worker_claim(bool *more, bool *full, long *wait_ms)
{
	List	   *syncs;
	List	   *requests = NIL;
	int			nsyncs;
	TimestampTz now = GetCurrentTimestamp();
	uint32		queued[RETL_QUEUE_BUCKETS];
	uint32		wake_after[RETL_QUEUE_BUCKETS] = {0};
	uint64		gen = retl_database_generations(queued);	/* before the snapshots */

	retl_begin_txn();
	pgstat_report_activity(STATE_RUNNING, "claiming changes");
	if (!retl_lock_extension())
		retl_worker_exit_without_extension();
	retl_queue_analyze_if_stale(1000);
	retl_counters_fold_due();
	syncs = retl_sync_active(gen, now);
	retl_parts_release_unloaded(syncs);
	retl_queued_keys_keep_only(syncs, gen);
	nsyncs = list_length(syncs);
	drop_locks = 0;
	for (int i = 0; i < nsyncs; i++)
	{
		RetlSync   *sync = list_nth(syncs, (first_sync + i) % nsyncs);
		int			b = sync->id % RETL_QUEUE_BUCKETS;
		uint32		n;

		/*
		 * So many syncs to claim for that this pass holds its most drop
		 * locks: the next pass, at once, goes on from this one.
		 */
		if (drop_locks >= DROP_LOCKS_PER_PASS)
		{
			first_sync = (first_sync + i) % nsyncs;
			*wait_ms = 0;
			break;
		}
		n = claim_sync(sync, queued[b], now, more, full, wait_ms, &requests);
		wake_after[b] = wake_after[b] == 0 ? n : Min(wake_after[b], n);
	}
	retl_end_txn();
	if (retl_set_wake_points(queued, wake_after))
		*wait_ms = 0;
	return requests;
}
