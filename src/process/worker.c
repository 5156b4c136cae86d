/*
 * worker.c: the per-database worker ("retl worker").
 *
 * The launcher starts one per database.  Each iteration of its loop:
 *
 *   1. records the outcomes of finished requests (one short transaction);
 *   2. for every active sync with no request in flight, queues a backfill
 *      chunk and claims a batch, building its request (one short
 *      transaction, one subtransaction per sync so a broken sync only
 *      marks itself failing);
 *   3. hands the new requests to libcurl, with no transaction open;
 *   4. waits on its latch and libcurl's sockets together.
 *
 * Nothing is held between iterations: no transaction, snapshot or lock,
 * so DROP EXTENSION, VACUUM and DDL on source tables never wait for a slow
 * destination.  The worker exits when the extension is dropped; the launcher
 * starts it again on CREATE EXTENSION.  Each iteration's allocations go in a
 * memory context reset every time, so its size stays flat.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "base/identity.h"
#include "base/shmem.h"
#include "base/subxact.h"
#include "capture/backfill.h"
#include "capture/stream.h"
#include "connectors/connector.h"
#include "connectors/oauth.h"
#include "delivery/http.h"
#include "delivery/stats.h"
#include "models/runs.h"
#include "process/runner.h"
#include "process/txn.h"
#include "process/worker.h"
#include "queue/counters.h"
#include "queue/jobs.h"
#include "queue/mark.h"
#include "queue/queue.h"
#include "queue/ranges.h"
#include "sync/dest.h"

/* The extension version this library serves: retl.control's default_version. */
#define RETL_VERSION "0.2"

/* A sync that failed to build a request is left alone for a while. */
typedef struct SyncBackoff
{
	int			sync_id;
	int			failures;
	TimestampTz not_before;
} SyncBackoff;

static List *backoffs = NIL;	/* SyncBackoff *, in TopMemoryContext */

/*
 * Halves of batches refused as a whole, built and waiting for their
 * destination's limits (rate, concurrency) like any request; their keys
 * are held meanwhile.
 */
static List *waiting_parts = NIL;	/* RetlRequest *, in TopMemoryContext */
static RetlDbState exit_state = RETL_DB_RESTART;
static bool served = false;		/* found the extension at least once */
static Oid	worker_dboid = InvalidOid;

/* Leave the database's slot, telling the launcher what to do next. */
static void
worker_detach(int code, Datum arg)
{
	RetlDbSlot *slot;

	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	slot = retl_find_slot(worker_dboid);
	if (slot && slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->latch = NULL;
		if (slot->state != RETL_DB_HOLD)
		{
			if (exit_state == RETL_DB_IDLE && !slot->start_requested)
				slot->state = RETL_DB_IDLE;
			else
			{
				slot->state = RETL_DB_RESTART;
				slot->not_before = slot->start_requested ? 0 :
					TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
			}
		}
	}
	LWLockRelease(retl_shared->lock);
	retl_stats_forget(worker_dboid);
	retl_wake_launcher();
}

/* Claim the database's slot; false if another worker already serves it. */
static bool
worker_attach(Oid dboid)
{
	RetlDbSlot *slot;
	bool		ok = false;

	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	slot = retl_find_or_add_slot(dboid);
	if (slot && slot->pid == 0 && slot->state != RETL_DB_HOLD)
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		slot->state = RETL_DB_RUNNING;
		slot->start_requested = false;
		ok = true;
	}
	LWLockRelease(retl_shared->lock);
	return ok;
}

static bool
sync_backed_off(int sync_id, TimestampTz now)
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
			pfree(b);
			return;
		}
	}
}

static void
sync_failed(int sync_id)
{
	ListCell   *lc;
	SyncBackoff *b = NULL;
	MemoryContext old;
	int64		delay;

	foreach(lc, backoffs)
		if (((SyncBackoff *) lfirst(lc))->sync_id == sync_id)
			b = lfirst(lc);
	if (b == NULL)
	{
		old = MemoryContextSwitchTo(TopMemoryContext);
		b = palloc0(sizeof(SyncBackoff));
		b->sync_id = sync_id;
		backoffs = lappend(backoffs, b);
		MemoryContextSwitchTo(old);
	}
	b->failures++;
	delay = Min((int64) retl_retry_base_ms << Min(b->failures - 1, 20), (int64) retl_retry_max_ms);
	b->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
}

/*
 * The extension was dropped: leave quietly; CREATE EXTENSION starts us
 * again.  Its logical slot goes with it, so it never holds WAL for nothing.
 */
void
retl_worker_exit_without_extension(void)
{
	retl_stream_drop_slot(false);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	/* a probe of a database without retl is routine; a DROP EXTENSION is news */
	ereport(served ? LOG : DEBUG1,
			(errmsg("retl worker stopping: extension \"retl\" is not installed in this database")));
	exit_state = RETL_DB_IDLE;
	proc_exit(0);
}

/*
 * The extension in this database must be the version this library serves
 * (a new library installed before ALTER EXTENSION retl UPDATE): until it
 * is, the worker waits and says so, sending nothing.
 */
static void
wait_for_version(void)
{
	bool		said = false;

	for (;;)
	{
		char	   *version;

		retl_begin_txn();
		if (!retl_lock_extension())
			retl_worker_exit_without_extension();
		if (SPI_execute("SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'retl'",
						true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "retl: could not read the extension's version");
		version = MemoryContextStrdup(TopMemoryContext,
									  SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		retl_end_txn();
		if (version != NULL && strcmp(version, RETL_VERSION) == 0)
			return;
		if (!said)
			ereport(WARNING,
					(errmsg("retl worker waits: extension \"retl\" is version %s in this database, the library is %s",
							version ? version : "?", RETL_VERSION),
					 errhint("Run ALTER EXTENSION retl UPDATE in this database.")));
		said = true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 2000,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Record every finished request's outcome in one transaction. */
static void
record_outcomes(void)
{
	RetlRequest *req;
	List	   *finished = NIL;
	List	   *parts = NIL;
	ListCell   *lc;

	List	   *halves = NIL;

	while ((req = retl_http_next_done()) != NULL)
	{
		if (req->sync_id == 0)
		{
			/* a token request (oauth.c), no sync's */
			finished = lappend(finished, req);
			continue;
		}
		retl_dest_done(req->dest_id);
		/* its rows, or rows of its keys, may be claimable again */
		retl_mark_wake(req->sync_id);
		/* (a job's check delivers nothing by itself) */
		retl_stats_request_done(req, req->curl_code == CURLE_OK && req->job == NULL &&
								req->status >= 200 && req->status < 300);
		/* a 429 or 503 with Retry-After pauses that destination only */
		if (req->curl_code == CURLE_OK && (req->status == 429 || req->status == 503) &&
			req->retry_after_ms >= 0)
			retl_dest_pause(req->dest_id, req->retry_after_ms);

		/*
		 * A batch refused as a whole: send each half on its own, so only
		 * the records at fault end up dead-lettered (at most about log2 of
		 * the batch size more requests per bad record).  Its rows stay in
		 * flight meanwhile.
		 */
		if (req->curl_code == CURLE_OK && req->nrecords > 1 &&
			(req->job == NULL || req->job->id == 0) &&
			!retl_connector(req->kind)->no_split &&
			(req->status == 400 || req->status == 413 || req->status == 422))
		{
			int			half = req->nrecords / 2;

			halves = lappend(halves, retl_http_copy(req, 0, half));
			halves = lappend(halves, retl_http_copy(req, half, req->nrecords - half));
			retl_queue_hold(list_nth(halves, list_length(halves) - 2));
			retl_queue_hold(llast(halves));
			retl_http_free(req);
			continue;
		}
		finished = lappend(finished, req);
	}

	if (finished != NIL || halves != NIL)
	{
		retl_begin_txn();
		pgstat_report_activity(STATE_RUNNING, "recording delivery outcomes");
		if (!retl_lock_extension())
			retl_worker_exit_without_extension();
		retl_queue_defer_deletes();
		foreach(lc, finished)
		{
			req = lfirst(lc);
			if (req->sync_id == 0)
				retl_oauth_answer(req);
			else if (req->job != NULL && req->job->id != 0)
				retl_jobs_checked(req);		/* a check of a job */
			else
			{
				retl_queue_record(req);
				/* records the answer put into a job of the destination's */
				retl_jobs_open(req);
				/* an API that says "too many" in its body (read_answer) */
				if (req->pause_ms > 0)
					retl_dest_pause(req->dest_id, req->pause_ms);
			}
		}
		retl_queue_flush_deletes();
		/* the halves are built by their connector, like any claimed batch */
		foreach(lc, halves)
		{
			req = lfirst(lc);
			/*
			 * a backfill's records go into the queue first: what a failed
			 * build leaves out (in its subtransaction) is released from there
			 */
			retl_queue_materialize(req, req->records, req->nrecords);
			if (retl_queue_rebuild(req))
				parts = lappend(parts, req);
			else
				retl_http_free(req);
		}
		retl_end_txn();
		foreach(lc, finished)
			retl_http_free((RetlRequest *) lfirst(lc));
	}

	if (parts != NIL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		waiting_parts = list_concat(waiting_parts, parts);
		MemoryContextSwitchTo(old);
	}
}

/*
 * In the claim transaction: the waiting parts of a sync its destination
 * may send now, appended to *requests.  Parts of syncs not loaded (paused,
 * dropped) give their rows back to the queue.
 */
static void
start_parts(List *syncs, RetlSync *sync, TimestampTz now, long *wait_ms, List **requests)
{
	ListCell   *lc;

	foreach(lc, waiting_parts)
	{
		RetlRequest *part = lfirst(lc);
		bool		loaded = false;
		ListCell   *s;
		MemoryContext old;

		foreach(s, syncs)
			loaded |= ((RetlSync *) lfirst(s))->id == part->sync_id;
		if (!loaded)
		{
			retl_queue_release(part, 0);
			retl_http_free(part);
			waiting_parts = foreach_delete_current(waiting_parts, lc);
			continue;
		}
		if (sync == NULL || part->sync_id != sync->id)
			continue;
		if (!retl_dest_can_send(sync, now, wait_ms))
			break;
		old = MemoryContextSwitchTo(TopMemoryContext);
		*requests = lappend(*requests, part);
		MemoryContextSwitchTo(old);
		retl_dest_sent(sync->dest_id);
		waiting_parts = foreach_delete_current(waiting_parts, lc);
	}
}

/* Every logical sync failed to stage: show why on each. */
static void
stream_failed(const char *message)
{
	List	   *ids = NIL;
	ListCell   *lc;

	if (SPI_execute("SELECT s.id FROM retl.syncs s WHERE s.capture = 'logical'", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the logical syncs");
	for (uint64 i = 0; i < SPI_processed; i++)
		ids = lappend_int(ids, pg_strtoint32(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1)));
	foreach(lc, ids)
		retl_queue_sync_error(lfirst_int(lc), message);
}

typedef struct StageWork
{
	XLogRecPtr	target;
	bool		found;
	List	   *errors;
} StageWork;

static void
stage_work(void *arg)
{
	StageWork  *w = arg;

	w->target = retl_stream_stage(&w->found, &w->errors);
}

/*
 * The last staging failure logged, and when: staging is retried every
 * second, and a failure that lasts (a slot dropped by hand) is logged again
 * only once a minute, or when it changes.  Every logical sync shows it.
 */
#define STAGE_WARNING_INTERVAL_MS 60000
static char *stage_error = NULL;
static TimestampTz stage_error_at = 0;

static void
log_stage_error(const char *message)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		repeated = stage_error != NULL && strcmp(stage_error, message) == 0 &&
		!TimestampDifferenceExceeds(stage_error_at, now, STAGE_WARNING_INTERVAL_MS);

	ereport(repeated ? DEBUG1 : WARNING,
			(errmsg("retl could not stage logical changes: %s", message),
			 repeated ? 0 : errdetail("While it lasts, it is logged again once a minute.")));
	if (repeated)
		return;
	if (stage_error != NULL)
		pfree(stage_error);
	stage_error = MemoryContextStrdup(TopMemoryContext, message);
	stage_error_at = now;
}

/*
 * Stage what the database's logical slot has for retl (stream.c): decode
 * and queue in one transaction, then confirm the position to the slot.  A
 * failure is shown on every logical sync and staging is tried again later.
 */
static void
stage_stream(void)
{
	StageWork	w = {InvalidXLogRecPtr, false, NIL};
	ErrorData  *edata;
	ListCell   *lc;

	if (!retl_stream_due())
		return;
	retl_begin_txn();
	pgstat_report_activity(STATE_RUNNING, "staging logical changes");
	if (!retl_lock_extension())
		retl_worker_exit_without_extension();
	edata = retl_in_subtransaction(stage_work, &w);
	if (edata != NULL)
	{
		log_stage_error(edata->message);
		stream_failed(psprintf("logical capture failed: %s", edata->message));
		retl_stream_backoff();
		FreeErrorData(edata);
		w.target = InvalidXLogRecPtr;
		w.errors = NIL;
	}
	else if (stage_error != NULL)
	{
		pfree(stage_error);
		stage_error = NULL;
	}
	foreach(lc, w.errors)
	{
		char	   *space = strchr((char *) lfirst(lc), ' ');

		*space = '\0';
		retl_queue_sync_error(pg_strtoint32((char *) lfirst(lc)), space + 1);
	}
	retl_end_txn();

	/* only once the staged changes are committed */
	if (w.target != InvalidXLogRecPtr)
		retl_stream_confirm(w.target);
}

typedef struct ClaimWork
{
	RetlSync   *sync;
	int			nbatches;
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

static void
claim_work_one(void *arg)
{
	ClaimWork  *w = arg;
	bool		direct;
	HTAB	   *held;
	bool		more = false;
	int			first;

	/*
	 * An upsert sync reads its table (its backfill, the rows it sends):
	 * the table's lock is taken first, without waiting.  Whoever holds a
	 * lock that conflicts (ALTER TABLE, retl_drop_sync, LOCK TABLE) leaves
	 * the sync for a later pass.  Waiting for it held up every sync of the
	 * database, and deadlocked with retl_drop_sync: the pass's transaction
	 * had written a row the drop deletes (its counters, another sync's
	 * error), and waited for the table of a sync the drop had locked.
	 */
	if (!w->sync->diff && w->sync->mode != 'a' &&
		!ConditionalLockRelationOid(w->sync->relid, AccessShareLock))
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
	 * A backfill sent straight from the table shares the slots with the
	 * queue: half of them first (it reads ahead of the queue's claims, and
	 * finds the keys the queue holds, which it leaves to them; a single
	 * slot every other pass), then the queue, then the backfill again with
	 * what the queue left.  What the queue claims in the pass is not "in
	 * flight" for the backfill: those requests read their rows now
	 * (retl_backfill_claim).
	 */
	held = retl_queue_held_keys(w->sync->id);
	first = w->nbatches / 2;
	if (first == 0 && retl_ranges_take_turn(w->sync))
		first = 1;
	if (first > 0)
		w->reqs = retl_backfill_claim(w->sync, first, held, &more);
	PG_TRY();
	{
		int			left = w->nbatches - list_length(w->reqs);

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
 * subtransaction.  Returns the requests to send, or NIL; *more is set
 * when backfill work remains, *lingering to the rows of a partial batch
 * that waits (queue/claim.c).  A sync found with nothing to claim is idle
 * as of gen, its bucket's queue counter (queue/mark.c).
 */
static List *
claim_one(RetlSync *sync, int nbatches, bool *backfill, bool *more, long *wait_ms,
		  uint32 gen, TimestampTz now, int *lingering)
{
	ClaimWork	w = {sync, nbatches, backfill, more, wait_ms, NIL, false, 0, false};
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
	ereport(WARNING,
			(errmsg("retl sync \"%s\" failed: %s", sync->name, edata->message)));
	retl_queue_sync_error(sync->id, edata->message);
	sync_failed(sync->id);
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
	ereport(WARNING,
			(errmsg("retl sync \"%s\" could not check a job: %s", sync->name, edata->message)));
	retl_queue_sync_error(sync->id, edata->message);
	sync_failed(sync->id);
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
	ErrorData  *edata = retl_in_subtransaction(auth_work, &w);

	if (edata != NULL)
	{
		retl_queue_sync_error(sync->id, edata->message);
		sync_failed(sync->id);
		FreeErrorData(edata);
		return false;
	}
	if (w.fetch != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		*requests = lappend(*requests, w.fetch);
		MemoryContextSwitchTo(old);
	}
	return w.ready;
}

/* Add a request to the pass's list, which outlives the pass's transaction. */
static List *
add_request(List *requests, RetlRequest *req)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	requests = lappend(requests, req);
	MemoryContextSwitchTo(old);
	return requests;
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
claim_sync(RetlSync *sync, List *syncs, uint32 queued_gen, TimestampTz now, bool *more,
		   bool *full, long *wait_ms, List **requests)
{
	RetlRequest *req;
	int			slots;
	bool		backfill = !sync->backfill_done;
	int			lingering = 0;

	if (sync_backed_off(sync->id, now))
		return 1;
	/* a destination with OAuth 2.0 waits for its token */
	if (!auth_ready(sync, now, wait_ms, requests))
		return 1;
	/* halves of a refused batch first: they hold keys */
	start_parts(syncs, sync, now, wait_ms, requests);

	/* the checks of the destination's jobs first: they free keys */
	while (retl_dest_can_send(sync, now, wait_ms))
	{
		req = job_one(sync, wait_ms);
		if (req == NULL)
			break;
		*requests = add_request(*requests, req);
		retl_dest_sent(sync->dest_id);
	}

	/* its queue had nothing to claim, and nothing was queued since */
	if (!backfill && retl_mark_is_idle(sync->id, queued_gen, now))
		return 1;

	/*
	 * As many batches as the destination's limits allow, claimed together;
	 * the claim never takes a key that is in flight or waiting for a retry,
	 * so concurrent batches keep per-key order.
	 */
	while ((slots = retl_dest_slots(sync, now, wait_ms)) > 0)
	{
		List	   *claimed = claim_one(sync, slots, &backfill, more, wait_ms,
										queued_gen, now, &lingering);
		ListCell   *c;

		if (claimed == NIL)
			break;
		foreach(c, claimed)
		{
			*requests = add_request(*requests, lfirst(c));
			retl_dest_sent(sync->dest_id);
		}
		if (list_length(claimed) >= slots)
			*full = true;
		list_free(claimed);
	}
	/* a partial batch waits out its linger unless it fills */
	return lingering > 0 && lingering < sync->batch_size ?
		(uint32) (sync->batch_size - lingering) : 1;
}

/*
 * One pass over the syncs; returns the requests to send.  Exits the
 * process when the extension is gone.  Then the commits that will wake
 * the worker are those that give the next pass something to do: a change
 * for a sync that is not paused, beyond a lingering partial batch's
 * (shmem.c); when one came meanwhile, *wait_ms is 0.
 */
static List *
claim_work(bool *more, bool *full, long *wait_ms)
{
	List	   *syncs;
	List	   *requests = NIL;
	ListCell   *lc;
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
	start_parts(syncs, NULL, now, wait_ms, &requests);
	foreach(lc, syncs)
	{
		RetlSync   *sync = lfirst(lc);
		int			b = sync->id % RETL_QUEUE_BUCKETS;
		uint32		n = claim_sync(sync, syncs, queued[b], now, more, full, wait_ms,
									   &requests);

		wake_after[b] = wake_after[b] == 0 ? n : Min(wake_after[b], n);
	}
	retl_end_txn();
	if (retl_set_wake_points(queued, wake_after))
		*wait_ms = 0;
	return requests;
}

/* How often old runs are pruned and the queue swept (scheduled.c). */
#define RUN_PRUNE_INTERVAL_MS 10000

/*
 * The shortest time between two passes when commits keep waking the worker.
 * A change waits for the next pass, half of it on average: at 5 ms the
 * capture-to-2xx latency at 1,000 changes/s was p50 5.2 ms, p99 12-15 ms;
 * at 2 ms 3.4 / 7.1 ms, for 45% more of the worker's CPU at that rate (at
 * 1 ms 2.5 / 6.5 ms, 78% more).
 */
#define PASS_MIN_MS 2

void
retl_worker_main(Datum main_arg)
{
	MemoryContext loop_cxt;
	TimestampTz last_scheduled = 0;
	TimestampTz last_pruned = 0;
	TimestampTz pass_started;

	worker_dboid = DatumGetObjectId(main_arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(worker_dboid, InvalidOid, 0);

	if (!worker_attach(worker_dboid))
	{
		ereport(LOG, (errmsg("retl worker for this database is already running")));
		proc_exit(0);
	}
	before_shmem_exit(worker_detach, (Datum) 0);

	wait_for_version();
	retl_begin_txn();
	if (!retl_lock_extension())
		retl_worker_exit_without_extension();
	served = true;
	retl_queue_recover();
	retl_queue_load_backoff();
	retl_jobs_load();
	/* runs still at work in workers of their own are not interrupted */
	retl_runs_recover(retl_runners_runs());
	retl_end_txn();

	/*
	 * The queue's statistics lag far behind its size (it fills and drains
	 * within seconds), and with a stale "few rows" estimate the planner
	 * reads a sync's whole backlog through a bitmap scan at every claim.
	 * Every query of this session reads the queue or a source table by an
	 * index, so bitmap scans are never what it wants.
	 */
	SetConfigOption("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION);

	/*
	 * Nor is JIT compilation: each statement reads at most a few thousand
	 * rows by an index, but a generic plan's estimate can be the whole
	 * table (a read of source rows by ranges of their key: 20M rows
	 * estimated, 1,000 read), and compiling it took 118 ms where running
	 * it took 1.
	 */
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);

	/*
	 * The worker's commits need not wait for the WAL flush: a commit lost
	 * in a crash (a claim, an outcome, a run's changes with its snapshot)
	 * only makes the worker send something again or redo a run, never
	 * lose a change, since what it has not committed stays queued.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);

	/*
	 * Logical capture keeps what a large transaction in progress has for
	 * retl in temporary files (capture/spool.c), as the reorder buffer
	 * keeps what it spills in pg_replslot: no limit on them either, or a
	 * transaction with more would stop the database's capture for good.
	 */
	SetConfigOption("temp_file_limit", "-1", PGC_SUSET, PGC_S_SESSION);

	/*
	 * The worker runs as the bootstrap superuser: none of its statements
	 * may resolve a name or an operator in a schema a user can write.  Code
	 * of a sync's owner that it runs (a query, a policy) cannot change this
	 * for the statements after it (retl_begin_as() undoes its settings).
	 */
	SetConfigOption("search_path", RETL_SAFE_PATH, PGC_USERSET, PGC_S_SESSION);

	retl_http_init();
	ereport(LOG, (errmsg("retl worker started")));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "retl worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		List	   *requests;
		ListCell   *lc;
		bool		more = false;
		bool		full = false;
		long		timeout;

		pass_started = GetCurrentTimestamp();
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);

		record_outcomes();
		stage_stream();
		timeout = retl_poll_interval_ms;
		requests = claim_work(&more, &full, &timeout);
		foreach(lc, requests)
		{
			retl_http_start((RetlRequest *) lfirst(lc));
			if (((RetlRequest *) lfirst(lc))->sync_id != 0)
				retl_stats_request_started((RetlRequest *) lfirst(lc));
		}
		retl_stats_publish(MyDatabaseId);
		list_free(requests);
		/* runs and refreshes are due at most a few times a second */
		if (TimestampDifferenceExceeds(last_scheduled, GetCurrentTimestamp(), 200))
		{
			retl_worker_scheduled();
			last_scheduled = GetCurrentTimestamp();
		}
		if (TimestampDifferenceExceeds(last_pruned, GetCurrentTimestamp(), RUN_PRUNE_INTERVAL_MS))
		{
			retl_worker_prune_runs();
			last_pruned = GetCurrentTimestamp();
		}

		/* busy while backfilling; else until a limit or a linger runs out */
		if (more)
			timeout = 0;
		/* or until logical staging is due */
		timeout = Min(timeout, retl_stream_wait_ms());
		retl_http_wait(timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);

		/*
		 * Commits keep setting the latch under a busy writer: pass at most
		 * every PASS_MIN_MS, letting libcurl progress meanwhile, so the
		 * worker batches what accumulated instead of spinning.  Not when
		 * the pass filled every slot of a destination and every request
		 * has already been answered with a 2xx: a backlog waits for those
		 * slots, and nothing is left to batch.  (A receiver on the
		 * worker's own CPU answers each request before the next is sent:
		 * the worker then slept 2 ms of every 2.5, 8 records a pass with
		 * batch_size 1.)  A destination that fails at once (refused
		 * connections) is still tried no faster than before.
		 */
		if (!more && !(full && retl_http_in_flight() == 0 && retl_http_done_ok()) &&
			!TimestampDifferenceExceeds(pass_started, GetCurrentTimestamp(), PASS_MIN_MS))
			retl_http_poll(PASS_MIN_MS, PG_WAIT_EXTENSION);
	}
}
