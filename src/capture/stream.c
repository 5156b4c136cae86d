/*
 * stream.c: logical capture, the worker's side.
 *
 * One logical replication slot per database, retl_<database oid>, decodes
 * with the "retl" output plugin (decoder.c); retl_create_sync() creates it
 * with the first logical sync, the worker drops it when none is left and
 * none left logical capture with changes not staged yet (stream_state.drain,
 * set by retl_alter_sync: decoding goes on up to the WAL position the worker
 * saw it at, which is after the switch's commit).
 *
 * The worker acquires the slot and keeps one logical decoding context open
 * on it (as a walsender does), so each round reads only the WAL written
 * since the last one; decoding transactions in progress stay in the
 * context's reorder buffer between rounds (or, streamed once they outgrew
 * logical_decoding_work_mem, what they have for retl in the plugin's spool:
 * spool.c).  A round stages what was decoded in two steps:
 *
 * 1. In one transaction: read the WAL flushed so far through the context
 *    (the plugin's output is parsed as it is written), insert the changes
 *    into retl.queue like the capture trigger would, and record in
 *    retl.stream_state the WAL position read up to.  A crash before the
 *    commit stages nothing; the slot has not moved.
 * 2. After that commit: confirm that position to the slot, which lets it
 *    advance (restart_lsn and catalog_xmin follow as decoding allows).  A
 *    crash before the confirmation reaches disk makes a new context decode
 *    transactions already staged again: those ending at or before the
 *    recorded position are skipped, so nothing is staged twice.
 *
 * A round that decoded nothing for retl writes nothing and just confirms,
 * so an idle slot keeps moving and never holds WAL for nothing.  Any error
 * in a round, or a round whose staging did not commit, frees the context
 * and releases the slot; the next round opens them again from the slot's
 * confirmed position.
 *
 * A round stops at a transaction boundary once it has STAGE_LIMIT changes
 * or has read for STAGE_MS (a larger transaction comes whole); then the
 * next runs at once.  It also stops at a record not flushed whole (the WAL
 * writer flushes whole pages): it never waits for WAL (read_flushed_page),
 * and the next round reads only once more is flushed.  One that read all
 * the WAL flushed when it began waits BUSY_PEEK_MS before the next when it
 * found changes or more WAL came meanwhile: each round drops the worker's
 * catalog caches, and everything the next pass does is planned again after
 * it, so rounds back to back under a steady stream of commits (~300 a
 * second at 4,000 commits a second, a dozen changes each) kept the worker
 * busy for rounds alone.
 * After a round that found nothing it waits IDLE_PEEK_MS, doubling up to
 * IDLE_PEEK_MAX_MS while nothing comes (NO_SLOT_CHECK_MS in a database
 * without logical syncs, where it only drops a slot left over).
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogdefs.h"
#include "access/xlogutils.h"
#include "catalog/pg_type.h"
#include "commands/tablespace.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "base/shmem.h"
#include "capture/staged.h"
#include "capture/stream.h"
#include "sync/sync.h"

#define STAGE_LIMIT 20000
#define STAGE_MS 200
#define BUSY_PEEK_MS 5
#define IDLE_PEEK_MS 10
#define IDLE_PEEK_MAX_MS 50
#define NO_SLOT_CHECK_MS 1000
#define LAG_CHECK_INTERVAL_MS 1000
#define LAG_WARNING_INTERVAL_MS 60000

/* what one round decoded, filled by the plugin's writes */
typedef struct Batch
{
	MemoryContext cxt;			/* where the changes live */
	HTAB	   *changes;		/* SyncChanges by sync id */
	XLogRecPtr	staged;			/* transactions ending here or before are skipped */
	bool		skip;			/* the current transaction is one of those */
	long		lines;			/* changes and errors parsed */
	bool		cut;			/* stopped before the end (a limit) */
	List	  **errors;
} Batch;

static TimestampTz next_peek = 0;
static int	idle_ms = IDLE_PEEK_MS;

static TimestampTz last_lag_check = 0;
static TimestampTz last_lag_warning = 0;

/* the decoding context kept open, with the slot acquired; NULL if none */
static LogicalDecodingContext *decoding = NULL;

/* a round read WAL whose position is not confirmed yet */
static bool unconfirmed = false;

/* a position staged and committed, not yet confirmed (retl_stream_confirm) */
#define CONFIRM_INTERVAL_MS 1000
static XLogRecPtr confirm_pending = InvalidXLogRecPtr;
static TimestampTz last_confirm = 0;
static bool confirmed_once = false;

/*
 * Draining (retl.stream_state.drain: a sync left logical capture): the
 * position up to which the slot must still be decoded, taken when the
 * worker first saw the request, so after the commit that made it.
 */
static XLogRecPtr drain_to = InvalidXLogRecPtr;

/* The name of this database's slot. */
char *
retl_slot_name(void)
{
	return psprintf("retl_%u", MyDatabaseId);
}

/* Parse one line of the plugin's output (decoder.c) into the batch. */
static void
parse_line(char *line, Batch *b)
{
	char	   *save;
	char	   *kind = strtok_r(line, "\t", &save);

	if (kind == NULL)
		return;
	if (strcmp(kind, "B") == 0)
	{
		bool		have_error = false;
		XLogRecPtr	end = pg_lsn_in_internal(strtok_r(NULL, "\t", &save), &have_error);

		if (have_error)
			elog(ERROR, "retl: malformed transaction from the slot");
		b->skip = end <= b->staged;
	}
	else if (strcmp(kind, "Q") == 0 && !b->skip)
	{
		char	   *sync = strtok_r(NULL, "\t", &save);
		char	   *op = strtok_r(NULL, "\t", &save);
		char	   *key = strtok_r(NULL, "\t", &save);
		char	   *row = strtok_r(NULL, "\t", &save);

		if (sync == NULL || op == NULL || key == NULL)
			elog(ERROR, "retl: malformed change from the slot");
		retl_staged_add(b->changes, pg_strtoint32(sync), op[0], key, row);
		b->lines++;
	}
	else if (strcmp(kind, "E") == 0 && !b->skip)
	{
		char	   *sync = strtok_r(NULL, "\t", &save);
		char	   *message = strtok_r(NULL, "\t", &save);

		char	   *prefix;
		ListCell   *lc;
		bool		known = false;

		if (sync == NULL || message == NULL)
			elog(ERROR, "retl: malformed error from the slot");
		/* a round records a sync's first error only (a table's every delete may have one) */
		prefix = psprintf("%d ", pg_strtoint32(sync));
		foreach(lc, *b->errors)
			known |= strncmp(lfirst(lc), prefix, strlen(prefix)) == 0;
		if (!known)
			*b->errors = lappend(*b->errors, psprintf("%s%s", prefix, message));
		b->lines++;
	}
}

/*
 * The WAL reader's page reads: only WAL already flushed, never waiting for
 * more.  read_local_xlog_page, the usual callback, sleeps a millisecond at
 * a time until the page it needs is flushed; a round reads up to the
 * position flushed when it began, but the record that crosses that
 * position (the WAL writer flushes whole pages, so often in the middle of
 * a record) made it wait for the next flush: up to wal_writer_delay when
 * the only WAL after it is the worker's own (its commits are
 * asynchronous), all delivery of the database stopped meanwhile.  A read
 * past the flushed WAL now ends the round, and the next one reads that
 * record again from its start.
 */
static ReadLocalXLogPageNoWaitPrivate page_read_state;

/* the flushed position at which a round last stopped that way */
static XLogRecPtr partial_flush = InvalidXLogRecPtr;

static int
read_flushed_page(XLogReaderState *state, XLogRecPtr page, int len, XLogRecPtr rec,
				  char *buf)
{
	void	   *ctx = state->private_data;
	int			n;

	/* that callback's state is the reader's private data, here the context's */
	state->private_data = &page_read_state;
	PG_TRY();
	{
		n = read_local_xlog_page_no_wait(state, page, len, rec, buf);
	}
	PG_FINALLY();
	{
		state->private_data = ctx;
	}
	PG_END_TRY();
	return n;
}

/* The plugin's writes (LogicalOutputPluginWriterPrepareWrite/Write). */
static void
prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
	resetStringInfo(ctx->out);
}

static void
write_line(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
	Batch	   *b = ctx->output_writer_private;

	/* called in the reorder buffer's subtransaction, which is rolled back */
	MemoryContext old = MemoryContextSwitchTo(b->cxt);

	parse_line(ctx->out->data, b);
	MemoryContextSwitchTo(old);
}

/*
 * Free the decoding context and release the slot, if held.  Also after an
 * error: the next round opens them again.
 */
void
retl_stream_release(void)
{
	if (decoding != NULL)
	{
		LogicalDecodingContext *ctx = decoding;

		decoding = NULL;
		/* needs the slot still acquired (it removes the slot's spill files) */
		FreeDecodingContext(ctx);
	}
	if (MyReplicationSlot != NULL)
		ReplicationSlotRelease();
	unconfirmed = false;
	/* (decoded again from the slot's position, the staged skipped) */
	confirm_pending = InvalidXLogRecPtr;
	partial_flush = InvalidXLogRecPtr;
}

/* Acquire the slot and open a decoding context at its confirmed position. */
static void
open_decoding(const char *slot)
{
	MemoryContext old;

	ReplicationSlotAcquire(slot, true);
	/* lives across transactions; not PROC_IN_LOGICAL_DECODING (in a transaction) */
	old = MemoryContextSwitchTo(TopMemoryContext);
	decoding = CreateDecodingContext(InvalidXLogRecPtr, NIL, false,
									 XL_ROUTINE(.page_read = read_flushed_page,
												.segment_open = wal_segment_open,
												.segment_close = wal_segment_close),
									 prepare_write, write_line, NULL);
	MemoryContextSwitchTo(old);
	if (XLogRecPtrIsInvalid(MyReplicationSlot->data.restart_lsn))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" of logical capture has no WAL reserved", slot),
				 errhint("Switch each logical sync to trigger capture and back with retl_alter_sync() to create it again.")));
	XLogBeginRead(decoding->reader, MyReplicationSlot->data.restart_lsn);
}

/*
 * Decode the WAL flushed so far (or up to STAGE_LIMIT changes or STAGE_MS)
 * into b.  Returns the position read up to: every transaction committed
 * before it has been through the plugin.
 */
static XLogRecPtr
decode_round(Batch *b)
{
	XLogRecPtr	end_of_wal = GetFlushRecPtr(NULL);
	ResourceOwner owner = CurrentResourceOwner;
	TimestampTz start = GetCurrentTimestamp();
	long		records = 0;
	MemoryContext old;

	if (decoding->reader->EndRecPtr >= end_of_wal)
		return decoding->reader->EndRecPtr;
	/* the last round stopped at a record not flushed whole: nothing more yet */
	if (end_of_wal == partial_flush)
		return decoding->reader->EndRecPtr;
	partial_flush = InvalidXLogRecPtr;
	unconfirmed = true;
	decoding->output_writer_private = b;

	/*
	 * The spool's temporary files (spool.c) would look temp_tablespaces up
	 * with a heap scan, which decoding does not allow: done here, for the
	 * rest of the transaction.
	 */
	PrepareTempTablespaces();
	old = CurrentMemoryContext;
	/* the caches may hold entries read with a normal snapshot: drop them */
	retl_sync_reset_caches();
	PG_TRY();
	{
		while (decoding->reader->EndRecPtr < end_of_wal)
		{
			char	   *errm = NULL;
			XLogRecord *record;

			/*
			 * The WAL reader allocates its record buffer, decode buffer and
			 * oversized records in the current context, and frees a record
			 * only at the next read: that must outlive this transaction.
			 * Each transaction replayed leaves the round's own subtransaction
			 * context current (the reorder buffer's ends), so at every read.
			 */
			MemoryContextSwitchTo(decoding->context);
			page_read_state.end_of_wal = false;
			record = XLogReadRecord(decoding->reader, &errm);
			if (record == NULL && page_read_state.end_of_wal)
			{
				/* the rest of this record is not flushed yet: read it again later */
				XLogBeginRead(decoding->reader, decoding->reader->EndRecPtr);
				partial_flush = end_of_wal;
				break;
			}
			if (errm)
				ereport(ERROR,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("retl could not read WAL for logical decoding: %s", errm)));
			if (record != NULL)
				LogicalDecodingProcessRecord(decoding, decoding->reader);
			/* between records: every transaction is either whole or not begun */
			if (b->lines >= STAGE_LIMIT ||
				(++records % 64 == 0 &&
				 TimestampDifferenceExceeds(start, GetCurrentTimestamp(), STAGE_MS)))
			{
				b->cut = decoding->reader->EndRecPtr < end_of_wal;
				break;
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		/* nothing read with a historic snapshot may stay in the caches */
		retl_sync_reset_caches();
		PG_RE_THROW();
	}
	PG_END_TRY();
	/* replaying transactions switches resource owners (see logicalfuncs.c) */
	CurrentResourceOwner = owner;
	/* and leaves entries read with historic snapshots */
	retl_sync_reset_caches();
	MemoryContextSwitchTo(old);
	decoding->output_writer_private = NULL;
	return decoding->reader->EndRecPtr;
}

/* Warn, at most once a minute (checked once a second), while the slot holds too much WAL. */
static void
check_lag(const char *slot)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(slot)};
	bool		isnull;
	int64		lag;

	if (!TimestampDifferenceExceeds(last_lag_check, GetCurrentTimestamp(), LAG_CHECK_INTERVAL_MS))
		return;
	last_lag_check = GetCurrentTimestamp();
	if (SPI_execute_with_args("SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(),"
							  " s.restart_lsn)::bigint FROM pg_catalog.pg_replication_slots s"
							  " WHERE s.slot_name = $1", 1, types, values, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed == 0)
		return;
	lag = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || lag / 1024 <= retl_max_slot_lag_kb ||
		!TimestampDifferenceExceeds(last_lag_warning, GetCurrentTimestamp(), LAG_WARNING_INTERVAL_MS))
		return;
	last_lag_warning = GetCurrentTimestamp();
	ereport(WARNING,
			(errmsg("retl replication slot \"%s\" holds " INT64_FORMAT " MB of WAL", slot, lag / (1024 * 1024)),
			 errdetail("retl.max_slot_lag is %d kB.", retl_max_slot_lag_kb),
			 errhint("The retl worker of this database is behind or failing; see retl.sync_status and the server log.")));
}

/* Staging failed: try again in a second. */
void
retl_stream_backoff(void)
{
	next_peek = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), NO_SLOT_CHECK_MS);
}

/* Is it time to stage again? */
bool
retl_stream_due(void)
{
	return GetCurrentTimestamp() >= next_peek;
}

/*
 * How long the worker may sleep before staging is due (writers do not wake
 * it for logical capture: it polls).
 */
long
retl_stream_wait_ms(void)
{
	long		secs;
	int			usecs;

	if (GetCurrentTimestamp() >= next_peek)
		return 0;
	TimestampDifference(GetCurrentTimestamp(), next_peek, &secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
}

/*
 * Step 1 (see above), in the caller's transaction.  Returns the position
 * to confirm to the slot once the transaction committed, or
 * InvalidXLogRecPtr.  *errors collects (sync id, message) pairs of syncs
 * that could not be staged.
 */
XLogRecPtr
retl_stream_stage(bool *found, List **errors)
{
	char	   *slot = retl_slot_name();
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	XLogRecPtr	read_to;
	XLogRecPtr	flushed;
	bool		isnull;
	Batch		b;
	HASHCTL		ctl;
	HASH_SEQ_STATUS seq;
	SyncChanges *c;

	*found = false;
	next_peek = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), idle_ms);
	idle_ms = Min(idle_ms * 2, IDLE_PEEK_MAX_MS);

	/* a round that failed or did not commit: decode its WAL again */
	if (unconfirmed || (decoding == NULL && MyReplicationSlot != NULL))
		retl_stream_release();

	/*
	 * (The slot is looked up in shared memory, not in the view
	 * pg_replication_slots: the caches are dropped at every round, and
	 * planning a statement on that view loads its rule again.)
	 */
	values[0] = CStringGetTextDatum(slot);
	if (SPI_execute_with_args("SELECT st.staged_lsn, st.drain FROM retl.stream_state st"
							  " WHERE st.slot = $1"
							  " AND (st.drain OR EXISTS (SELECT 1 FROM retl.syncs y WHERE y.capture = 'logical'))",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the state of slot \"%s\"", slot);
	if (SPI_processed == 0 ||
		(MyReplicationSlot == NULL && SearchNamedReplicationSlot(slot, true) == NULL))
	{
		drain_to = InvalidXLogRecPtr;
		retl_stream_release();
		/* logical syncs whose slot was dropped (by hand) capture nothing */
		if (SPI_execute_with_args("SELECT 1 FROM retl.syncs y WHERE y.capture = 'logical'"
								  " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots s"
								  "  WHERE s.slot_name = $1)",
								  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "retl: could not look for the slot \"%s\"", slot);
		if (SPI_processed > 0)
		{
			next_peek = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), NO_SLOT_CHECK_MS);
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("replication slot \"%s\" of logical capture does not exist", slot),
					 errhint("Switch each logical sync to trigger capture and back with retl_alter_sync() to create it again; changes made meanwhile were not captured.")));
		}
		/* the slot of a database with no logical sync left goes */
		retl_stream_drop_slot(true);
		next_peek = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), NO_SLOT_CHECK_MS);
		return InvalidXLogRecPtr;
	}
	b.staged = DatumGetLSN(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		drain_to = InvalidXLogRecPtr;
	else if (XLogRecPtrIsInvalid(drain_to))
		drain_to = GetXLogInsertRecPtr();

	if (decoding == NULL)
		open_decoding(slot);

	ctl.keysize = sizeof(int);
	ctl.entrysize = sizeof(SyncChanges);
	ctl.hcxt = CurrentMemoryContext;
	b.cxt = CurrentMemoryContext;
	b.changes = hash_create("retl staged changes", 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	b.skip = false;
	b.lines = 0;
	b.cut = false;
	b.errors = errors;
	read_to = decode_round(&b);

	hash_seq_init(&seq, b.changes);
	while ((c = hash_seq_search(&seq)) != NULL)
	{
		char	   *error = NULL;

		if (!retl_staged_queue(c, &error))
			*errors = lappend(*errors, psprintf("%d %s", c->sync_id, error));
		*found = true;
	}

	/* drained: the slot may go once no logical sync is left */
	if (!XLogRecPtrIsInvalid(drain_to) && read_to >= drain_to)
	{
		if (SPI_execute_with_args("UPDATE retl.stream_state SET drain = false WHERE slot = $1",
								  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "retl: could not record the drain of slot \"%s\"", slot);
		drain_to = InvalidXLogRecPtr;
	}

	/* what a new context would decode again up to here is skipped */
	if (*found && read_to > b.staged)
	{
		Oid			utypes[2] = {TEXTOID, LSNOID};
		Datum		uvalues[2] = {CStringGetTextDatum(slot), LSNGetDatum(read_to)};

		if (SPI_execute_with_args("UPDATE retl.stream_state SET staged_lsn = $2 WHERE slot = $1",
								  2, utypes, uvalues, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "retl: could not record the staged position of slot \"%s\"", slot);
	}
	/* (a round stopped at a record not flushed whole waits for more) */
	flushed = GetFlushRecPtr(NULL);
	if (b.cut)
	{
		/* more was there already: go on at once */
		next_peek = 0;
		idle_ms = IDLE_PEEK_MS;
	}
	else if (*found || (read_to < flushed && flushed != partial_flush))
	{
		next_peek = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BUSY_PEEK_MS);
		idle_ms = IDLE_PEEK_MS;
	}
	check_lag(slot);
	return read_to;
}

/*
 * Step 2: the staging transaction committed; confirm the position to the
 * slot, at most every CONFIRM_INTERVAL_MS.  Outside a transaction.
 *
 * Only once the staged changes are on disk: the worker commits without
 * waiting for the flush (synchronous_commit off, worker.c), and a position
 * confirmed past a commit that a crash then loses would skip its changes
 * for good, as the slot can be saved to disk at once (at a checkpoint, or
 * when its restart point moves).  So the WAL is flushed first: up to this
 * process's last commit (every staging round's that queued changes or
 * recorded errors is at or before it), or at its first confirmation all
 * the WAL written so far (a worker that stopped between a round's commit
 * and its flush left that round staged but unconfirmed; the first round
 * here skips it and confirms past it).  A flush a round cost the writers
 * of a busy database a fifth of their commits (bench (d) with logical
 * capture, 0.79 x); until the position is confirmed, a crash only makes
 * the next round decode again what was staged (and skip it: staged_lsn).
 */
void
retl_stream_confirm(XLogRecPtr target)
{
	TimestampTz now;

	if (decoding == NULL)
		return;
	if (unconfirmed)
	{
		confirm_pending = target;
		unconfirmed = false;
	}
	if (XLogRecPtrIsInvalid(confirm_pending))
		return;
	now = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(last_confirm, now, CONFIRM_INTERVAL_MS))
		return;
	XLogFlush(confirmed_once ? XactLastCommitEnd : GetXLogInsertRecPtr());
	LogicalConfirmReceivedLocation(confirm_pending);
	/* a clean shutdown's checkpoint keeps it (see logicalfuncs.c) */
	ReplicationSlotMarkDirty();
	confirm_pending = InvalidXLogRecPtr;
	last_confirm = now;
	confirmed_once = true;
}

/*
 * Drop the database's slot if it exists and no process uses it; with
 * unused_only, only when no logical sync is left (without, the extension
 * may be gone) and no transaction creating one holds the advisory lock
 * retl._logical_prepare() takes.  In the worker's transaction.
 */
void
retl_stream_drop_slot(bool unused_only)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(retl_slot_name())};

	/* the worker's own hold on it first */
	retl_stream_release();
	if (SPI_execute_with_args(psprintf("SELECT pg_catalog.pg_drop_replication_slot(s.slot_name)"
									   " FROM pg_catalog.pg_replication_slots s"
									   " WHERE s.slot_name = $1 AND NOT s.active%s",
									   unused_only ? " AND NOT EXISTS (SELECT 1 FROM retl.syncs y"
									   " WHERE y.capture = 'logical')"
									   " AND NOT EXISTS (SELECT 1 FROM retl.stream_state st"
									   " WHERE st.slot = $1 AND st.drain)"
									   " AND pg_catalog.pg_try_advisory_xact_lock("
									   "pg_catalog.hashtext('retl logical slot'))" : ""),
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not drop replication slot \"%s\"", retl_slot_name());
}
