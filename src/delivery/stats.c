/*
 * stats.c: live delivery statistics: requests/s and records/s over the last
 * minute, p50/p99 latency from capture to acknowledgement, and requests in
 * flight, per sync and per destination.
 *
 * The worker keeps, per sync, 60 one-second buckets of counts and a ring
 * of recent latencies (worker memory, bounded), and about once a second
 * publishes the figures into a fixed array in shared memory, under the
 * retl lock for a few microseconds.  retl._live_stats() reads them for
 * retl.sync_status without touching any table.
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "base/shmem.h"
#include "base/visible.h"
#include "delivery/stats.h"

#define STAT_SLOTS 4096			/* syncs, all databases together */
#define LATENCY_SAMPLES 4096	/* per sync */

typedef struct SharedStat
{
	Oid			dboid;			/* InvalidOid: free */
	int			sync_id;
	int			dest_id;
	int			in_flight;
	int64		rows_held;
	double		requests_per_s;
	double		records_per_s;
	double		p50_ms;
	double		p99_ms;
} SharedStat;

static SharedStat *shared_stats = NULL;

typedef struct LocalStat
{
	int			sync_id;
	int			dest_id;
	int			in_flight;		/* requests sent, not yet answered */
	int64		rows_held;		/* queue rows in requests the worker holds */
	int			slot;			/* its shared_stats slot, -1: none yet */
	int64		bucket_second[60];
	int			bucket_requests[60];
	int			bucket_records[60];
	double		latency[LATENCY_SAMPLES];	/* ms */
	int64		latency_second[LATENCY_SAMPLES];
	int			next_sample;
} LocalStat;

static List *locals = NIL;		/* LocalStat *, in TopMemoryContext */
static TimestampTz last_publish = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
stats_shmem_size(void)
{
	return mul_size(STAT_SLOTS, sizeof(SharedStat));
}

static void
stats_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(stats_shmem_size());
}

/* Attach to (or create) the shared array. */
static void
stats_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared_stats = ShmemInitStruct("retl stats", stats_shmem_size(), &found);
	if (!found)
		memset(shared_stats, 0, stats_shmem_size());
	LWLockRelease(AddinShmemInitLock);
}

/* Install the shared memory hooks; called from _PG_init while preloading. */
void
retl_stats_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stats_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
}

static LocalStat *
local_stat(int sync_id, int dest_id)
{
	ListCell   *lc;
	LocalStat  *s;

	foreach(lc, locals)
	{
		s = lfirst(lc);
		if (s->sync_id == sync_id)
			return s;
	}
	s = MemoryContextAllocZero(TopMemoryContext, sizeof(LocalStat));
	s->sync_id = sync_id;
	s->dest_id = dest_id;
	s->slot = -1;
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		locals = lappend(locals, s);
		MemoryContextSwitchTo(old);
	}
	return s;
}

/*
 * The worker holds (n > 0) or let go of (n < 0) a request of n queue rows.
 * Shown at once (the sync's pending and in_flight add up to its queue),
 * not at the next publication.
 */
void
retl_stats_rows_held(RetlRequest *req, int64 n)
{
	LocalStat  *s = local_stat(req->sync_id, req->dest_id);

	s->rows_held = Max(s->rows_held + n, 0);
	if (shared_stats == NULL || s->slot < 0)
		return;
	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	if (shared_stats[s->slot].dboid == MyDatabaseId && shared_stats[s->slot].sync_id == s->sync_id)
		shared_stats[s->slot].rows_held = s->rows_held;
	LWLockRelease(retl_shared->lock);
}

void
retl_stats_request_started(RetlRequest *req)
{
	local_stat(req->sync_id, req->dest_id)->in_flight++;
}

/* A request finished; count it, and its records' latencies if delivered. */
void
retl_stats_request_done(RetlRequest *req, bool delivered)
{
	LocalStat  *s = local_stat(req->sync_id, req->dest_id);
	TimestampTz now = GetCurrentTimestamp();
	int64		second = now / USECS_PER_SEC;
	int			b = (int) (second % 60);
	double		now_epoch = (double) now / USECS_PER_SEC +
		(double) ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);

	if (s->in_flight > 0)
		s->in_flight--;
	if (s->bucket_second[b] != second)
	{
		s->bucket_second[b] = second;
		s->bucket_requests[b] = 0;
		s->bucket_records[b] = 0;
	}
	s->bucket_requests[b]++;
	if (!delivered)
		return;
	s->bucket_records[b] += req->nrecords;
	for (int i = 0; i < req->nrecords; i++)
	{
		s->latency[s->next_sample] = Max(0.0, (now_epoch - req->records[i].captured_epoch) * 1000.0);
		s->latency_second[s->next_sample] = second;
		s->next_sample = (s->next_sample + 1) % LATENCY_SAMPLES;
	}
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Forget this database's figures (its worker is stopping). */
void
retl_stats_forget(Oid dboid)
{
	if (shared_stats == NULL)
		return;
	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < STAT_SLOTS; i++)
		if (shared_stats[i].dboid == dboid)
			shared_stats[i].dboid = InvalidOid;
	LWLockRelease(retl_shared->lock);
}

/* Publish this database's figures, at most once a second. */
void
retl_stats_publish(Oid dboid)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		second = now / USECS_PER_SEC;
	double	   *sorted = NULL;
	ListCell   *lc;

	if (shared_stats == NULL || !TimestampDifferenceExceeds(last_publish, now, 1000))
		return;
	last_publish = now;
	retl_stats_forget(dboid);

	foreach(lc, locals)
	{
		LocalStat  *s = lfirst(lc);
		SharedStat	out;
		int64		requests = 0;
		int64		records = 0;
		int			n = 0;
		bool		recent = false;

		/* a sync idle for a minute (or dropped) is forgotten */
		for (int b = 0; b < 60; b++)
			recent |= second - s->bucket_second[b] < 60;
		if (!recent && s->in_flight == 0 && s->rows_held == 0)
		{
			locals = foreach_delete_current(locals, lc);
			pfree(s);
			continue;
		}

		memset(&out, 0, sizeof(out));
		for (int b = 0; b < 60; b++)
		{
			if (second - s->bucket_second[b] < 60)
			{
				requests += s->bucket_requests[b];
				records += s->bucket_records[b];
			}
		}
		if (sorted == NULL)
			sorted = palloc(sizeof(double) * LATENCY_SAMPLES);
		for (int i = 0; i < LATENCY_SAMPLES; i++)
			if (s->latency_second[i] != 0 && second - s->latency_second[i] < 60)
				sorted[n++] = s->latency[i];
		qsort(sorted, n, sizeof(double), cmp_double);

		out.dboid = dboid;
		out.sync_id = s->sync_id;
		out.dest_id = s->dest_id;
		out.in_flight = s->in_flight;
		out.rows_held = s->rows_held;
		out.requests_per_s = requests / 60.0;
		out.records_per_s = records / 60.0;
		out.p50_ms = n > 0 ? sorted[n / 2] : -1;
		out.p99_ms = n > 0 ? sorted[Min(n - 1, (int) (n * 0.99))] : -1;

		s->slot = -1;
		LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
		for (int i = 0; i < STAT_SLOTS; i++)
		{
			if (shared_stats[i].dboid == InvalidOid)
			{
				shared_stats[i] = out;
				s->slot = i;
				break;
			}
		}
		LWLockRelease(retl_shared->lock);
	}
	if (sorted)
		pfree(sorted);
}

PG_FUNCTION_INFO_V1(retl_live_stats);

/*
 * retl._live_stats(): the figures of this database's syncs the caller may
 * see (base/visible.c): sync_id, requests_per_s,
 * records_per_s, latency_p50_ms, latency_p99_ms, in_flight (requests of
 * the sync), destination_in_flight (requests of all its destination's
 * syncs), rows_in_flight (queue rows in the requests the worker holds).
 */
Datum
retl_live_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SharedStat *copy = palloc(stats_shmem_size());
	int			n = 0;
	RetlVisible *visible;

	InitMaterializedSRF(fcinfo, 0);
	if (shared_stats == NULL)
		return (Datum) 0;
	visible = retl_visible_ids("SELECT s.id::pg_catalog.int8 FROM retl.syncs s");
	LWLockAcquire(retl_shared->lock, LW_SHARED);
	for (int i = 0; i < STAT_SLOTS; i++)
		if (shared_stats[i].dboid == MyDatabaseId)
			copy[n++] = shared_stats[i];
	LWLockRelease(retl_shared->lock);

	for (int i = 0; i < n; i++)
	{
		Datum		values[8];
		bool		nulls[8] = {false};
		int			dest_in_flight = 0;

		if (!retl_visible(visible, copy[i].sync_id))
			continue;
		/* (of every sync of the destination: the caller sends there too) */
		for (int j = 0; j < n; j++)
			if (copy[j].dest_id == copy[i].dest_id)
				dest_in_flight += copy[j].in_flight;
		values[0] = Int32GetDatum(copy[i].sync_id);
		values[1] = Float8GetDatum(copy[i].requests_per_s);
		values[2] = Float8GetDatum(copy[i].records_per_s);
		values[3] = Float8GetDatum(copy[i].p50_ms);
		nulls[3] = copy[i].p50_ms < 0;
		values[4] = Float8GetDatum(copy[i].p99_ms);
		nulls[4] = copy[i].p99_ms < 0;
		values[5] = Int32GetDatum(copy[i].in_flight);
		values[6] = Int32GetDatum(dest_in_flight);
		values[7] = Int64GetDatum(copy[i].rows_held);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
