/*
 * mark.c: where the scan of each sync's queue starts.
 *
 * The claim scan reads a sync's queue in id order through the (sync_id,
 * id) index.  Started from the sync's first row every time, it would step
 * over every row version the sync ever delivered that VACUUM has not
 * removed yet; while any snapshot holds the xmin horizon back (a long
 * report, pg_dump, a replica's hot_standby_feedback) that is every row
 * delivered since, and the scan grows with the backlog already sent: at
 * batch_size 1 a held snapshot made delivery 15 times slower.  So the
 * worker remembers, per sync, the id below which no row is ready, and
 * starts there.
 *
 * Rows below the mark come back in four ways, and each moves the mark
 * down again:
 *
 * - A claimed row is released (it did not fit in max_batch_bytes, or its
 *   request was not sent) or scheduled for a retry: retl_mark_rewind()
 *   with its id.  (A row in a request is skipped, and the mark may pass
 *   it: it is deleted when delivered, or comes back this way.)
 * - A row skipped because its key waits for a retry is parked: the mark
 *   may pass it, and comes back to the lowest parked id when the earliest
 *   of those backoffs ends.
 * - A claim that fails frees what it claimed: the caller rewinds to 0.
 * - A row of a transaction still in progress when the scan took its
 *   snapshot becomes visible when that transaction commits, with an id
 *   the scan may have passed (ids are drawn before commit, not in commit
 *   order).  Each scan records a checkpoint: the next xid (read after the
 *   scan) and the last id the scan saw.  A transaction whose xid is at or
 *   above that next xid got it after the scan, so if it draws its queue
 *   ids only once it has an xid, they are above that last id.  Every row
 *   a later snapshot cannot see belongs to a transaction at or above the
 *   snapshot's xmin, so the mark never passes the last id of the newest
 *   checkpoint whose next xid is at or below that xmin.  While no
 *   transaction writes for long, that is a few ids behind the scan.
 *
 *   Writers of retl.queue: the capture trigger's row write has assigned
 *   the xid before it queues, and TRUNCATE capture, retl_replay() and a
 *   diff run (which draws its changes' ids before its statement:
 *   models/run_queue.c) take one first; the worker's own writes
 *   (backfill) are committed or visible to it before it scans again.
 *
 * The backfill's reader of a sync's queued keys (queued_keys.c) keeps a
 * mark of its own, under the sync's id negated.
 *
 * A row skipped because its key is in a request in flight (another row of
 * that key) pins the mark (that request ends within its timeout).  The marks live in the worker's
 * memory only: a new worker starts from the beginning of every queue.
 *
 * A sync whose scan found nothing it could claim (no row but those of its
 * requests in flight: none parked, none held back by a key in flight or a
 * linger) is idle: the worker does not scan its queue again until a change
 * may have been queued for it.  Other transactions (captures, runs, the SQL
 * functions that queue, COMMIT PREPARED) advance its bucket's counter at
 * commit (shmem.c), which the worker reads before the snapshots of its
 * pass; the worker's own doings that give rows back (a release, a retry,
 * an outcome of any of the sync's requests) wake the sync here; and an
 * idle sync is scanned again after retl.poll_interval_ms whatever
 * happened.  Before, a pass scanned every sync: at batch_size 1, two idle
 * syncs took about a tenth of the throughput of a busy one.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_sequence.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/snapshot.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "queue/mark.h"

/* checkpoints kept per sync; when full, the newest is overwritten */
#define MAX_CHECKPOINTS 32

typedef struct Checkpoint
{
	TransactionId next_xid;		/* read after the scan */
	int64		last_id;		/* the last id the scan saw */
} Checkpoint;

typedef struct ScanMark
{
	int			sync_id;		/* hash key */
	int64		start;			/* no ready row below this id but parked
								 * ones */
	int64		park_from;		/* lowest id skipped for a retry backoff */
	TimestampTz park_until;		/* earliest end of those backoffs */
	int			ncheckpoints;	/* oldest first */
	Checkpoint	checkpoints[MAX_CHECKPOINTS];
	bool		idle;			/* nothing to claim as of queued_gen */
	uint32		queued_gen;		/* its bucket's counter then (shmem.c) */
	TimestampTz idle_until;		/* scanned again then all the same */
} ScanMark;

static HTAB *marks = NULL;

static bool ids_in_order(void);

static ScanMark *
mark_of(int sync_id)
{
	ScanMark   *m;
	bool		found;

	if (marks == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int);
		ctl.entrysize = sizeof(ScanMark);
		marks = hash_create("retl queue scan marks", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	m = hash_search(marks, &sync_id, HASH_ENTER, &found);
	if (!found)
	{
		m->start = 0;
		m->park_from = PG_INT64_MAX;
		m->park_until = DT_NOEND;
		m->ncheckpoints = 0;
		m->idle = false;
	}
	return m;
}

/*
 * The id the scan of a sync starts from: the mark, moved down to the
 * parked rows once their backoff has ended.
 */
int64
retl_mark_start(int sync_id, TimestampTz now)
{
	ScanMark   *m = mark_of(sync_id);

	if (m->park_until <= now)
	{
		m->start = Min(m->start, m->park_from);
		m->park_from = PG_INT64_MAX;
		m->park_until = DT_NOEND;
	}
	return m->start;
}

/*
 * The highest id below which snap sees every row there is, plus one; or
 * from if no checkpoint tells.  Checkpoints older than the one used are
 * dropped: later snapshots have an xmin at least as high.
 */
static int64
visible_below(ScanMark *m, Snapshot snap, int64 from)
{
	int			newest = -1;

	for (int i = 0; i < m->ncheckpoints; i++)
		if (TransactionIdPrecedesOrEquals(m->checkpoints[i].next_xid, snap->xmin))
			newest = i;
	if (newest < 0)
		return from;
	if (newest > 0)
	{
		memmove(&m->checkpoints[0], &m->checkpoints[newest],
				sizeof(Checkpoint) * (m->ncheckpoints - newest));
		m->ncheckpoints -= newest;
	}
	return m->checkpoints[0].last_id + 1;
}

static void
add_checkpoint(ScanMark *m, int64 last_id)
{
	TransactionId next_xid = ReadNextTransactionId();
	Checkpoint *newest = m->ncheckpoints > 0 ? &m->checkpoints[m->ncheckpoints - 1] : NULL;

	/*
	 * No xid assigned since the newest checkpoint: every transaction at or
	 * above its next xid also started after this scan.
	 */
	if (newest != NULL && (newest->next_xid == next_xid ||
						   m->ncheckpoints == MAX_CHECKPOINTS))
	{
		newest->next_xid = next_xid;
		newest->last_id = Max(newest->last_id, last_id);
		return;
	}
	m->checkpoints[m->ncheckpoints].next_xid = next_xid;
	m->checkpoints[m->ncheckpoints].last_id = last_id;
	m->ncheckpoints++;
}

/*
 * A scan with snapshot snap started at from (retl_mark_start) and saw ids
 * up to last_id; below next it left no ready row other than those it
 * parked (park_from is the lowest id it skipped for a backoff ending at
 * park_until, PG_INT64_MAX if none) and those snap could not see.
 *
 * When no other transaction had an xid as snap was taken (quiet: the
 * caller read the next xid right after taking it), snap could see every
 * row below last_id there will ever be: a later row is a later
 * transaction's, which draws its ids after it has an xid, so above every
 * id there was then.  The mark then follows the scan (otherwise it trails
 * it by one pass, and each row is read twice: with batch_size 500, 0.45
 * of the 0.9 us a row the scan cost).  An empty xip alone does not say
 * so: a transaction whose xid is at or above the snapshot's xmax is
 * running, and not listed.
 */
void
retl_mark_advance(int sync_id, Snapshot snap, bool quiet, int64 from, int64 last_id,
				  int64 next, int64 park_from, TimestampTz park_until)
{
	ScanMark   *m = mark_of(sync_id);
	int64		start;

	if (park_from < m->park_from)
		m->park_from = park_from;
	if (park_from != PG_INT64_MAX && park_until < m->park_until)
		m->park_until = park_until;

	if (quiet)
		start = Min(next, last_id + 1);
	else
		start = Min(next, visible_below(m, snap, from));
	add_checkpoint(m, last_id);

	/* a rewind meanwhile (a failed claim) wins */
	if (m->start >= from)
		m->start = start;
}

/*
 * Begin a scan of a queue with mark mark_id (a sync's id, or another
 * reader's: queued_keys.c) with a snapshot of its own, taken after the
 * transaction's last command and pushed (the caller pops it): the scan
 * does not see rows this transaction deleted, and sees those it queued;
 * the mark moves by what that snapshot could not see.  True when quiet:
 * no transaction had an xid as the snapshot was taken (retl_mark_advance).
 * Where queue ids are not drawn in order, the scan starts from the queue's
 * beginning, every time.
 */
bool
retl_mark_begin_scan(int mark_id)
{
	bool		quiet;

	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	quiet = GetActiveSnapshot()->xcnt == 0 &&
		TransactionIdEquals(ReadNextTransactionId(), GetActiveSnapshot()->xmax);
	if (!ids_in_order())
	{
		retl_mark_rewind(mark_id, 0);
		quiet = false;
	}
	return quiet;
}

/* Rows from id on may be ready again. */
void
retl_mark_rewind(int sync_id, int64 id)
{
	ScanMark   *m = mark_of(sync_id);

	m->start = Min(m->start, id);
	m->idle = false;
}

/* Has the sync rows parked for a retry? */
bool
retl_mark_parked(int sync_id)
{
	return mark_of(sync_id)->park_from != PG_INT64_MAX;
}

/*
 * The sync's scan found nothing to claim; gen is its bucket's counter read
 * before the scan's snapshot.
 */
void
retl_mark_idle(int sync_id, uint32 gen, TimestampTz now)
{
	ScanMark   *m = mark_of(sync_id);

	m->idle = true;
	m->queued_gen = gen;
	m->idle_until = TimestampTzPlusMilliseconds(now, retl_poll_interval_ms);
}

/* Something of the worker's own may have given the sync rows to claim. */
void
retl_mark_wake(int sync_id)
{
	if (marks != NULL)
	{
		ScanMark   *m = hash_search(marks, &sync_id, HASH_FIND, NULL);

		if (m != NULL)
			m->idle = false;
	}
}

/*
 * Is the sync idle still: found with nothing to claim, and no change
 * queued for it since (gen: its bucket's counter, read before this pass's
 * snapshots)?
 */
bool
retl_mark_is_idle(int sync_id, uint32 gen, TimestampTz now)
{
	ScanMark   *m;

	if (marks == NULL)
		return false;
	m = hash_search(marks, &sync_id, HASH_FIND, NULL);
	if (m == NULL || !m->idle)
		return false;
	if (m->queued_gen != gen || now >= m->idle_until)
	{
		m->idle = false;
		return false;
	}
	return true;
}

/*
 * Are queue ids drawn in order?  Every way the mark moves past ids rests on
 * it (a row that appears later has a higher id than those there were).  A
 * queue id sequence altered to cache values breaks it: each session draws
 * from a range of its own, and one can commit a change with an id below
 * those another session's changes had, after the scan passed them.  Then
 * every scan starts from the queue's beginning (retl_mark_begin_scan),
 * and the worker says why once.
 */
static bool
ids_in_order(void)
{
	static bool warned = false;
	Oid			seq = get_relname_relid("queue_id_seq", get_namespace_oid("retl", false));
	HeapTuple	tup;
	int64		cache = 1;

	if (OidIsValid(seq) && HeapTupleIsValid(tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seq))))
	{
		cache = ((Form_pg_sequence) GETSTRUCT(tup))->seqcache;
		ReleaseSysCache(tup);
	}
	if (cache <= 1)
	{
		warned = false;
		return true;
	}
	if (!warned)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("retl.queue_id_seq caches " INT64_FORMAT " values: every claim reads its sync's queue from the start", cache),
				 errdetail("With a cache, sessions draw queue ids out of order, and a scan that started past an id would miss a change committed later with it."),
				 errhint("ALTER SEQUENCE retl.queue_id_seq CACHE 1;")));
	warned = true;
	return false;
}
