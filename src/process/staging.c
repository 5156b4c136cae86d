/*
 * staging.c: the worker's pass stages what logical capture decoded into
 * the queue (capture/stream.c), in a transaction of its own; a failure
 * shows on every logical sync, and is logged once a minute while it lasts.
 */
#include "postgres.h"

#include "access/xlogdefs.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "base/subxact.h"
#include "capture/stream.h"
#include "process/txn.h"
#include "process/worker.h"
#include "queue/queue.h"

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
 * A change a sync could not queue (decoder.c's E lines, a key column
 * gone): shown on the sync, and logged, once a minute a sync while it
 * lasts, as a change is lost.
 */
typedef struct SyncWarning
{
	int			sync_id;
	TimestampTz at;
} SyncWarning;

static HTAB *sync_warnings = NULL;

static char *
sync_name(int sync_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(sync_id)};

	if (SPI_execute_with_args("SELECT s.name FROM retl.syncs s WHERE s.id = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read sync %d", sync_id);
	return SPI_processed > 0 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) :
		psprintf("%d", sync_id);
}

static void
sync_change_lost(int sync_id, const char *message)
{
	TimestampTz now = GetCurrentTimestamp();
	SyncWarning *w;
	bool		found;
	char	   *name;

	retl_queue_sync_error(sync_id, message);
	if (sync_warnings == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int);
		ctl.entrysize = sizeof(SyncWarning);
		sync_warnings = hash_create("retl lost change warnings", 16, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	w = hash_search(sync_warnings, &sync_id, HASH_ENTER, &found);
	if (found && !TimestampDifferenceExceeds(w->at, now, STAGE_WARNING_INTERVAL_MS))
		return;
	w->at = now;
	name = sync_name(sync_id);
	ereport(WARNING,
			(errmsg("retl sync \"%s\" cannot capture every change of its table", name),
			 errdetail("Logical capture: %s.", message),
			 errhint("retl.sync_status shows it too; while it lasts, it is logged again once a minute.")));
}

/*
 * Stage what the database's logical slot has for retl (stream.c): decode
 * and queue in one transaction, then confirm the position to the slot.  A
 * failure is shown on every logical sync and staging is tried again later.
 */
void
retl_worker_stage_stream(void)
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
		sync_change_lost(pg_strtoint32((char *) lfirst(lc)), space + 1);
	}
	retl_end_txn();

	/* only once the staged changes are committed (and on disk: stream.c) */
	if (w.target != InvalidXLogRecPtr)
		retl_stream_confirm(w.target);
}
