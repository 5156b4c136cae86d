/*
 * holders.c: the requests the worker holds, and the keys and queue rows
 * they hold.
 *
 * A claimed request (or a part split from one) holds its records' keys
 * and queue rows from its claim until it is freed: a reset callback on
 * its memory context takes it out of the list, whatever frees it.  The
 * claim's scan skips the rows held and the keys held (claim.c), which
 * keeps per-key order with several requests in flight; a backfill's range
 * stays in flight with the requests that carry it (ranges.c).
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "delivery/stats.h"
#include "queue/jobs.h"
#include "queue/queue.h"
#include "queue/ranges.h"

/*
 * Requests holding keys: claimed (or split from a claimed request) and not
 * yet freed.
 */
static List *holders = NIL;

/* queue rows of a request's records */
static int64
rows_of(RetlRequest *req)
{
	int64		n = 0;

	for (int i = 0; i < req->nrecords; i++)
		n += req->records[i].nqueue_ids;
	return n;
}

static void
unhold(void *arg)
{
	RetlRequest *req = arg;

	retl_stats_rows_held(req, -req->held_rows);
	holders = list_delete_ptr(holders, req);
}

/* req holds its records' keys and rows until it is freed */
void
retl_queue_hold(RetlRequest *req)
{
	MemoryContextCallback *cb = MemoryContextAlloc(req->cxt, sizeof(MemoryContextCallback));
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	req->held_rows = rows_of(req);
	retl_stats_rows_held(req, req->held_rows);
	holders = lappend(holders, req);
	MemoryContextSwitchTo(old);
	cb->func = unhold;
	cb->arg = req;
	MemoryContextRegisterResetCallback(req->cxt, cb);
	/* and a backfill's range stays in flight with it */
	if (req->range != NULL)
		retl_range_hold(req);
}

/* A set of 64-bit hashes or ids, in the current memory context. */
HTAB *
retl_queue_key_set(const char *name, long size)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(uint64);
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, Max(size, 16), &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * What requests of a sync hold: their keys' hashes (*keys), and their
 * queue ids at or above from (*ids, if ids is not NULL), which the scan
 * skips.
 */
void
retl_queue_held_by_requests(int sync_id, int64 from, HTAB **keys, HTAB **ids)
{
	ListCell   *lc;

	*keys = retl_queue_key_set("retl held keys", 256);
	if (ids)
		*ids = retl_queue_key_set("retl held ids", 256);
	foreach(lc, holders)
	{
		RetlRequest *req = lfirst(lc);

		if (req->sync_id != sync_id)
			continue;
		for (int i = 0; i < req->nrecords; i++)
		{
			RetlRecord *r = &req->records[i];

			hash_search(*keys, &r->key_hash, HASH_ENTER, NULL);
			for (int j = 0; ids && j < r->nqueue_ids; j++)
				if (r->queue_ids[j] >= from)
					hash_search(*ids, &r->queue_ids[j], HASH_ENTER, NULL);
		}
	}
}

/*
 * Is a key of the sync (its jsonb hash) in a request the worker holds, or
 * in a destination's job?  keys: from retl_queue_held_by_requests, or
 * retl_queue_held_keys (the keys that go after their requests).
 */
bool
retl_queue_key_held(int sync_id, HTAB *keys, uint64 hash)
{
	return hash_search(keys, &hash, HASH_FIND, NULL) != NULL ||
		retl_jobs_hold(sync_id, hash);
}

/*
 * The keys of a sync that its backfill sends only after the requests that
 * hold them (for retl_queue_key_held): their hashes, for the records of
 * requests built before the sync's resync count was resyncs (read before
 * that resync, perhaps by an older mapping), and for records not in the
 * queue (a range's: the backfill's cursor could move past the key before
 * that record is delivered or queued, and a crash then would lose it).
 * A key only other requests hold (since the resync, in queued records)
 * is not among them: it stays in the queue until delivered, and the
 * backfill finds it there (capture/backfill.c): *keys.  *before_ids: the
 * queue ids of the records built before the resync (queued_keys.c does not
 * leave their keys to them).  Either may be NULL: not wanted.
 */
void
retl_queue_held_keys(int sync_id, int resyncs, HTAB **keys, HTAB **before_ids)
{
	ListCell   *lc;

	if (keys)
		*keys = retl_queue_key_set("retl held keys", 256);
	if (before_ids)
		*before_ids = retl_queue_key_set("retl ids held from before a resync", 16);
	foreach(lc, holders)
	{
		RetlRequest *req = lfirst(lc);

		if (req->sync_id != sync_id)
			continue;
		for (int i = 0; i < req->nrecords; i++)
		{
			RetlRecord *r = &req->records[i];

			if (keys && (req->resyncs < resyncs || r->nqueue_ids == 0))
				hash_search(*keys, &r->key_hash, HASH_ENTER, NULL);
			for (int j = 0; before_ids && req->resyncs < resyncs && j < r->nqueue_ids; j++)
				hash_search(*before_ids, &r->queue_ids[j], HASH_ENTER, NULL);
		}
	}
}

/* Does a request of the sync that carries a batch of a replace hold keys? */
bool
retl_queue_replace_in_flight(int sync_id)
{
	ListCell   *lc;

	foreach(lc, holders)
	{
		RetlRequest *req = lfirst(lc);

		if (req->sync_id == sync_id && req->replace != NULL)
			return true;
	}
	return false;
}
