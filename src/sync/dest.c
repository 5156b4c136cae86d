/*
 * dest.c: the limits a worker keeps per destination.
 *
 * - concurrency: at most max_concurrency requests in flight, all syncs of
 *   the destination together;
 * - pause: a 429 or 503 with Retry-After stops new requests to that
 *   destination (and to no other) until the given time;
 * - rate: a token bucket of rate_limit requests per second (burst: one
 *   second's worth, at least one request).
 *
 * Worker-local state (one worker serves a database); lost on restart,
 * when nothing is in flight anyway.
 */
#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/memutils.h"

#include "sync/dest.h"

typedef struct DestState
{
	int			id;
	int			in_flight;
	TimestampTz paused_until;
	bool		filled;			/* the bucket was filled once */
	double		tokens;			/* below 0: overdrawn, paid back first */
	TimestampTz refilled_at;
} DestState;

static List *dests = NIL;		/* DestState *, in TopMemoryContext */

static DestState *
dest_state(int id)
{
	ListCell   *lc;
	DestState  *d;
	MemoryContext old;

	foreach(lc, dests)
	{
		d = lfirst(lc);
		if (d->id == id)
			return d;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	d = palloc0(sizeof(DestState));
	d->id = id;
	dests = lappend(dests, d);
	MemoryContextSwitchTo(old);
	return d;
}

static long
ms_until(TimestampTz now, TimestampTz when)
{
	long		secs;
	int			usecs;

	TimestampDifference(now, when, &secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
}

/*
 * May a request of this sync be sent now?  If not, *wait_ms is lowered to
 * when it might (unchanged when it waits for a request to finish).
 */
bool
retl_dest_can_send(RetlSync *sync, TimestampTz now, long *wait_ms)
{
	DestState  *d = dest_state(sync->dest_id);

	if (d->in_flight >= sync->max_concurrency)
		return false;
	if (now < d->paused_until)
	{
		*wait_ms = Min(*wait_ms, ms_until(now, d->paused_until));
		return false;
	}
	if (sync->rate_limit > 0)
	{
		double		burst = Max(1.0, sync->rate_limit);

		if (!d->filled)
			d->tokens = burst;
		else
			d->tokens = Min(burst, d->tokens + sync->rate_limit *
							(double) (now - d->refilled_at) / USECS_PER_SEC);
		d->refilled_at = now;
		d->filled = true;
		if (d->tokens < 1.0)
		{
			*wait_ms = Min(*wait_ms, (long) ((1.0 - d->tokens) / sync->rate_limit * 1000.0) + 1);
			return false;
		}
	}
	return true;
}

/*
 * How many requests of this sync may be started now: 0 when none may
 * (*wait_ms lowered as retl_dest_can_send does), else the free slots of
 * its concurrency, no more than its rate's tokens allow.
 */
int
retl_dest_slots(RetlSync *sync, TimestampTz now, long *wait_ms)
{
	DestState  *d;
	int			free;

	if (!retl_dest_can_send(sync, now, wait_ms))
		return 0;
	d = dest_state(sync->dest_id);
	free = sync->max_concurrency - d->in_flight;
	if (sync->rate_limit > 0)
		free = Min(free, (int) Min(d->tokens, (double) PG_INT32_MAX));
	return Max(free, 1);
}

/* A request to the destination was started. */
void
retl_dest_sent(int dest_id)
{
	DestState  *d = dest_state(dest_id);

	d->in_flight++;
	d->tokens -= 1.0;
}

/* A request to the destination finished. */
void
retl_dest_done(int dest_id)
{
	DestState  *d = dest_state(dest_id);

	if (d->in_flight > 0)
		d->in_flight--;
}

/* How many requests to the destination are in flight. */
int
retl_dest_in_flight(int dest_id)
{
	return dest_state(dest_id)->in_flight;
}

/* The destination asked us (Retry-After) to wait. */
void
retl_dest_pause(int dest_id, long ms)
{
	DestState  *d = dest_state(dest_id);
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	if (until > d->paused_until)
		d->paused_until = until;
}
