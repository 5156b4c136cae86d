/*
 * progress.c: where a run in a worker of its own is, for retl.runs.
 *
 * A runner (process/runner.c) points retl_my_run at its shared slot; the
 * run's phases and the rows its query has given so far are written there
 * (the rows by retl._run_tick(), called for every row of the query, which
 * publishes every PUBLISH_EVERY rows), and read by any backend through
 * retl._run_progress().  Elsewhere (a run in the database's worker, a
 * preview) retl_my_run is NULL and nothing is published; the rows are
 * counted everywhere, since a diff checks its result's keys with the count
 * (models/diff.c).
 */
#include "postgres.h"

#include "storage/lwlock.h"

#include "base/progress.h"

#define PUBLISH_EVERY 1000

RetlRunSlot *retl_my_run = NULL;

static int64 ticks = 0;

/* The run enters a phase; rows read start again from 0. */
void
retl_progress_phase(const char *phase)
{
	ticks = 0;
	if (retl_my_run == NULL)
		return;
	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	strlcpy(retl_my_run->phase, phase, sizeof(retl_my_run->phase));
	retl_my_run->rows = 0;
	LWLockRelease(retl_shared->lock);
}

/* Rows done in this phase, known at once (published as they are). */
void
retl_progress_rows(int64 rows)
{
	if (retl_my_run != NULL)
		retl_my_run->rows = rows;
}

/* One more row read (published every PUBLISH_EVERY). */
void
retl_progress_tick(void)
{
	if (++ticks % PUBLISH_EVERY == 0 && retl_my_run != NULL)
		retl_my_run->rows = ticks;
}

/* Rows counted by other processes (a statement's parallel workers) */
void
retl_progress_add(int64 n)
{
	ticks += n;
	if (n > 0 && retl_my_run != NULL)
		retl_my_run->rows = ticks;
}

int64
retl_progress_count(void)
{
	return ticks;
}

/* Did retl_cancel_run ask this runner to stop? */
bool
retl_progress_cancelled(void)
{
	bool		cancel;

	if (retl_my_run == NULL)
		return false;
	LWLockAcquire(retl_shared->lock, LW_SHARED);
	cancel = retl_my_run->cancel;
	LWLockRelease(retl_shared->lock);
	return cancel;
}
