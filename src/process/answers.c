/*
 * answers.c: the answers the worker takes from libcurl, and their outcomes
 * recorded (worker.c calls these each pass, and at a stop).
 *
 * Taking an answer frees its destination's slot at once, with no
 * transaction open; a batch refused as a whole is split into halves
 * there.  Recording the outcomes is one short transaction for all of a
 * pass's answers (queue/outcome.c), the halves built again by their
 * connector in it.  Answers of a sync whose drop is under way wait for a
 * later pass, and 2xx answers of syncs whose requests claimed ahead
 * outlast their slots wait to be recorded together with later ones.
 */
#include "postgres.h"

#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "connectors/connector.h"
#include "delivery/http.h"
#include "delivery/stats.h"
#include "process/txn.h"
#include "process/worker.h"
#include "queue/jobs.h"
#include "queue/mark.h"
#include "queue/queue.h"
#include "sync/dest.h"
#include "sync/dropping.h"

/*
 * Answers of syncs that a drop in progress holds (sync/dropping.c), and
 * halves of their refused batches, left for a later pass: the requests
 * keep their rows and keys meanwhile.  In TopMemoryContext.
 */
static List *deferred = NIL;
static List *deferred_halves = NIL;

/* How soon answers left to a drop in progress are tried again. */
#define DEFERRED_RETRY_MS 100

/*
 * Answers recorded with later ones.  At batch_size 1 a pass collects about
 * a round of answers, and its outcome transaction (the DELETE of their
 * rows, the counter, the commit, which wakes the WAL writer) was 15-20% of
 * the worker (perf during bench (f)).  While a sync's requests claimed
 * ahead outlast its destination's free slots (parts.c), the next pass
 * only starts some of them and, as predicted, claims nothing for it: 2xx
 * answers of its batches (of a connector that does not read its answers)
 * wait then, to be recorded together by the pass that claims for it again
 * (before its claim), or by the first pass RECORD_AFTER_MS after the first
 * of them, or once UNRECORDED_MAX wait; any answer that may not wait has
 * every waiting one recorded with it.  Their keys and rows stay held
 * meanwhile (no claim can take them), and the sync's scan mark is woken
 * when they are recorded, as for an answer, should a claim have found
 * nothing but them meanwhile.  A worker that crashes before recording
 * them sends them again, as it does the requests in flight when it
 * crashes (a stop records them: worker_stop, worker.c).  In
 * TopMemoryContext.
 */
static List *unrecorded = NIL;
static TimestampTz unrecorded_since = 0;

#define RECORD_AFTER_MS 20
#define UNRECORDED_MAX 256

/* A 2xx answer of a batch's request (a job's check delivers nothing by itself) */
static bool
answered_2xx(RetlRequest *req)
{
	return req->curl_code == CURLE_OK && req->job == NULL &&
		req->status >= 200 && req->status < 300;
}

/*
 * Is this a 2xx answer of a batch, whose sync's parts outlast its slots?
 * Not when its connector reads the answer (read_answer): a 2xx body may
 * carry records' failures, a pause or a token to renew, which must act
 * before the next requests go.
 */
static bool
may_wait(RetlRequest *req)
{
	const RetlConnector *c;

	if (req->sync_id == 0 || !answered_2xx(req))
		return false;
	c = retl_connector_or_null(req->kind);
	return c != NULL && c->read_answer == NULL &&
		retl_worker_parts_outlast(req->sync_id, req->dest_id);
}

/*
 * Leave the pass's answers (finished: all may wait) for a later pass?  Yes
 * while the ones already waiting may wait still, and then keeps them.
 */
static bool
leave_unrecorded(List *finished)
{
	ListCell   *lc;
	MemoryContext old;

	if (finished == NIL && unrecorded == NIL)
		return false;
	if (list_length(unrecorded) + list_length(finished) > UNRECORDED_MAX || retl_worker_stopping())
		return false;
	if (unrecorded != NIL &&
		TimestampDifferenceExceeds(unrecorded_since, GetCurrentTimestamp(), RECORD_AFTER_MS))
		return false;
	foreach(lc, unrecorded)
		if (!may_wait(lfirst(lc)))
			return false;
	old = MemoryContextSwitchTo(TopMemoryContext);
	if (unrecorded == NIL)
		unrecorded_since = GetCurrentTimestamp();
	unrecorded = list_concat(unrecorded, finished);
	MemoryContextSwitchTo(old);
	return true;
}

/* lappend in cxt (in the outcome transaction, whose SPI memory is freed) */
static List *
defer_in(MemoryContext cxt, List *list, RetlRequest *req)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	list = lappend(list, req);
	MemoryContextSwitchTo(old);
	return list;
}

/*
 * Take the requests libcurl finished, freeing their destinations' slots:
 * their answers, and the halves of batches refused as a whole, for
 * retl_worker_record_outcomes() (lists of the loop's memory).
 */
void
retl_worker_collect_answers(List **answers, List **split)
{
	RetlRequest *req;
	List	   *finished = NIL;
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
		retl_stats_request_done(req, answered_2xx(req));
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
	*answers = finished;
	*split = halves;
}

/*
 * Record the outcomes of the answers retl_worker_collect_answers() took
 * in one transaction, with those left to a drop in progress before.
 */
void
retl_worker_record_outcomes(List *answers, List *split)
{
	RetlRequest *req;
	List	   *finished;
	List	   *parts = NIL;
	List	   *halves;
	List	   *recorded = NIL;
	List	   *building = NIL;
	ListCell   *lc;
	MemoryContext outer = CurrentMemoryContext; /* the loop's, not SPI's */
	bool		wait = deferred == NIL && deferred_halves == NIL;

	finished = list_concat(list_copy(deferred), answers);
	halves = list_concat(list_copy(deferred_halves), split);
	list_free(deferred);
	list_free(deferred_halves);
	deferred = deferred_halves = NIL;

	/* 2xx answers only, whose syncs' parts outlast their slots: later */
	if (wait && halves == NIL)
	{
		foreach(lc, finished)
			wait = wait && may_wait(lfirst(lc));
		if (wait && leave_unrecorded(finished))
			return;
	}
	if (unrecorded != NIL)
	{
		/* their rows, or rows of their keys, claimable once recorded */
		foreach(lc, unrecorded)
			retl_mark_wake(((RetlRequest *) lfirst(lc))->sync_id);
		/* (the lists of this pass are the loop's) */
		finished = list_concat(list_copy(unrecorded), finished);
		list_free(unrecorded);
		unrecorded = NIL;
	}

	/* OAuth 2.0 token answers first, on their own (tokens.c) */
	finished = retl_worker_record_tokens(finished);
	if (finished != NIL || halves != NIL)
	{
		retl_begin_txn();
		pgstat_report_activity(STATE_RUNNING, "recording delivery outcomes");
		if (!retl_lock_extension())
			retl_worker_exit_without_extension();

		/*
		 * The drop locks of the answers' syncs first (sync/dropping.c):
		 * answers of a sync whose drop is under way wait for a later pass.
		 * Then a snapshot taken after the locks: one taken before could
		 * still see a sync whose drop committed in between.
		 */
		foreach(lc, finished)
		{
			req = lfirst(lc);
			if (req->sync_id != 0 && retl_sync_dropping(req->sync_id))
				deferred = defer_in(TopMemoryContext, deferred, req);
			else
				recorded = defer_in(outer, recorded, req);
		}
		foreach(lc, halves)
		{
			req = lfirst(lc);
			if (retl_sync_dropping(req->sync_id))
				deferred_halves = defer_in(TopMemoryContext, deferred_halves, req);
			else
				building = defer_in(outer, building, req);
		}
		PopActiveSnapshot();
		PushActiveSnapshot(GetTransactionSnapshot());

		retl_queue_defer_deletes();
		foreach(lc, recorded)
		{
			req = lfirst(lc);
			if (req->job != NULL && req->job->id != 0)
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
		foreach(lc, building)
		{
			req = lfirst(lc);

			/*
			 * (a half's sync's table is read without waiting: a drop of
			 * another sync of that table holds it)
			 */
			if (!retl_queue_rebuild_ready(req))
			{
				deferred_halves = defer_in(TopMemoryContext, deferred_halves, req);
				continue;
			}

			/*
			 * a backfill's records go into the queue first: what a failed
			 * build leaves out (in its subtransaction) is released from there
			 */
			retl_queue_materialize(req, req->records, req->nrecords);
			if (retl_queue_rebuild(req))
			{
				/* the list outlives the transaction's SPI memory */
				MemoryContext old = MemoryContextSwitchTo(outer);

				parts = lappend(parts, req);
				MemoryContextSwitchTo(old);
			}
			else
				retl_http_free(req);
		}
		retl_end_txn();
		foreach(lc, recorded)
			retl_http_free((RetlRequest *) lfirst(lc));
	}

	if (parts != NIL)
		retl_worker_park_parts(parts);
}

/*
 * timeout, or less: until answers left to a drop in progress are tried
 * again, or answers left unrecorded are due.
 */
long
retl_worker_answers_wait(long timeout)
{
	/* or until answers left to a drop in progress are tried again */
	if (deferred != NIL || deferred_halves != NIL)
		timeout = Min(timeout, DEFERRED_RETRY_MS);
	/* or until answers left unrecorded are due */
	if (unrecorded != NIL)
		timeout = Min(timeout, RECORD_AFTER_MS);
	return timeout;
}

