/*
 * outcome.c: recording the outcome of a finished request, record by
 * record, in the worker's outcome transaction: delivered rows deleted
 * (deferred, then deleted by runs of consecutive ids and counted), retries
 * scheduled with their backoff, dead letters written, and the sync's
 * failure statistics.  A request's records not sent at all (left out of a
 * claim, unsent by their connector) end here too.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "common/pg_prng.h"
#include "mb/pg_wchar.h"
#include "storage/bufmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "base/plans.h"
#include "connectors/connector.h"
#include "connectors/oauth.h"
#include "queue/counters.h"
#include "queue/mark.h"
#include "queue/queue.h"
#include "sync/dropping.h"
#include "sync/ids.h"

static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, int expected)
{
	int			rc = retl_spi_execute(sql, nargs, types, values, NULL, false, 0);

	if (rc != expected)
		elog(ERROR, "retl: SPI_execute failed (%d): %s", rc, sql);
}

/* text with invalid or NUL bytes replaced, safe to store in a text column */
static char *
sanitize(const char *text, int len)
{
	StringInfoData buf;
	int			enc = GetDatabaseEncoding();

	initStringInfo(&buf);
	while (len > 0)
	{
		int			l = (*text == '\0') ? -1 : pg_encoding_verifymbchar(enc, text, len);

		if (l <= 0)
		{
			appendStringInfoChar(&buf, '?');
			l = 1;
		}
		else
			appendBinaryStringInfo(&buf, text, l);
		text += l;
		len -= l;
	}
	return buf.data;
}

/*
 * Delay before the next attempt, in ms: exponential, jittered, capped.  A
 * Retry-After may only lengthen it: "0", or an HTTP-date already past (a
 * destination whose clock lags), would spend every attempt at once.
 */
static int64
retry_delay_ms(RetlRequest *req, int attempt)
{
	double		delay = retl_retry_base_ms;
	int64		backoff;

	for (int i = 1; i < attempt && delay < retl_retry_max_ms; i++)
		delay *= 2;
	delay = Min(delay, (double) retl_retry_max_ms);
	/* "equal jitter": half fixed, half random, so retries spread out */
	backoff = (int64) (delay / 2 + pg_prng_double(&pg_global_prng_state) * delay / 2);
	return Max(backoff, (int64) req->retry_after_ms);
}

/* The queue ids of records, as an int8[] Datum. */
Datum
retl_queue_id_array(RetlRecord *records, int nrecords)
{
	int			n = 0;
	Datum	   *elems;

	for (int i = 0; i < nrecords; i++)
		n += records[i].nqueue_ids;
	elems = palloc(sizeof(Datum) * Max(n, 1));
	n = 0;
	for (int i = 0; i < nrecords; i++)
		for (int j = 0; j < records[i].nqueue_ids; j++)
			elems[n++] = Int64GetDatum(records[i].queue_ids[j]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static void
dead_letter(RetlRequest *req, RetlRecord *r, const char *error, const char *excerpt)
{
	Oid			types[10] = {INT8ARRAYOID, INT4OID, TEXTOID, INT8OID, TEXTOID, TEXTOID,
	TEXTOID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[10];
	char		nulls[10] = "          ";
	const char *op = r->op == 'd' ? "delete" : r->op == 'i' ? "insert" : "upsert";

	/* a backfill's record goes through the queue to its dead letter */
	retl_queue_materialize(req, r, 1);
	values[0] = retl_queue_id_array(r, 1);
	values[1] = Int32GetDatum(req->sync_id);
	values[2] = CStringGetTextDatum(r->record_id);
	values[3] = Int64GetDatum(r->rid);
	values[4] = CStringGetTextDatum(r->key);
	values[5] = CStringGetTextDatum(op);
	if (r->data)
		values[6] = CStringGetTextDatum(r->data);
	else
		nulls[6] = 'n';
	values[7] = Int32GetDatum((int32) req->status);
	if (req->status == 0)
		nulls[7] = 'n';
	values[8] = CStringGetTextDatum(error);
	if (excerpt != NULL)
		values[9] = CStringGetTextDatum(excerpt);
	else
		nulls[9] = 'n';

	if (retl_spi_execute(
							  "WITH d AS (DELETE FROM retl.queue q WHERE q.sync_id = $2 AND q.id = ANY ($1) RETURNING q.*)"
							  " INSERT INTO retl.dead_letter_store (sync_id, record_id, rid, key, op,"
							  " data, raw_key, raw_data, captured_at, attempts, last_status, last_error,"
							  " response_excerpt, first_attempt_at, last_attempt_at)"
							  " SELECT $2, $3, $4, $5::jsonb, $6, $7::jsonb,"
							  " (pg_catalog.array_agg(d.key ORDER BY d.id DESC))[1],"
							  " (pg_catalog.array_agg(d.data ORDER BY d.id DESC))[1],"
							  " pg_catalog.max(d.captured_at), pg_catalog.max(d.attempts) + 1, $8, $9, $10,"
							  " COALESCE(pg_catalog.min(d.first_attempt_at), pg_catalog.now()),"
							  " pg_catalog.now() FROM d HAVING pg_catalog.count(*) > 0"
							  " RETURNING raw_key, (SELECT (pg_catalog.array_agg(d.op ORDER BY d.id DESC))[1] FROM d)",
							  10, types, values, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "retl: could not dead-letter record %s", r->record_id);

	/*
	 * A diff sync heals by itself.  A key the destination may have (a
	 * change or a delete dead-lettered: queued 'C' or 'R'; a resync sends
	 * the keys it had synced as changes, models/probe.c): remember a
	 * stale version, so the next run sends its row again if it is still
	 * in the result and removes it if not (a mirror's delete).  A key it
	 * never had (an added row): forget that it was synced, so the next run
	 * adds it again.  (Forgetting a changed key too made the next run see
	 * it as added: an update sync never sent it, and a mirror never removed
	 * it once it left the result.)  An edit of the snapshot, applied by the
	 * next run (models/snapshot.c), inserted only: it never waits for a run
	 * in progress.  No snapshot: a trigger sync, or an append one (each
	 * run sends every row of its result as an event; an edit would never
	 * be read).
	 */
	if (SPI_processed == 1)
	{
		Oid			htypes[3] = {INT4OID, JSONBOID, BOOLOID};
		Datum		hvalues[3];
		bool		isnull;

		hvalues[0] = Int32GetDatum(req->sync_id);
		hvalues[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		{
			char		queued = DatumGetChar(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
															2, &isnull));

			hvalues[2] = BoolGetDatum(!isnull && (queued == 'C' || queued == 'R'));
		}
		if (retl_spi_execute("INSERT INTO retl.snapshot_edits (sync_id, key, hash)"
							 " SELECT $1, $2, CASE WHEN $3 THEN 0 END FROM retl.syncs s"
							 " WHERE s.id = $1 AND s.capture = 'diff' AND s.mode <> 'append'",
							 3, htypes, hvalues, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "retl: could not update the snapshot for a dead letter");
	}
}

/*
 * In the claim transaction: dead-letter a claimed record that cannot be
 * sent (r->unsent says why), alone, so that the rest of its sync flows.
 */
void
retl_queue_dead_letter_unsent(RetlRequest *req, RetlRecord *r)
{
	dead_letter(req, r, r->unsent, NULL);
	retl_queue_sync_error(req->sync_id,
						  psprintf("record %s was dead-lettered: %s", r->record_id, r->unsent));
}

/*
 * In the claim transaction: a claimed record the destination has nothing
 * to do for (r->nothing_to_send) is done: its rows leave the queue as
 * delivered.
 */
void
retl_queue_done_unsent(RetlRequest *req, RetlRecord *r)
{
	retl_queue_delete_ids(req->sync_id, retl_queue_id_array(r, 1));
	retl_counters_delivered(req->sync_id, 1);
}

/*
 * While the outcomes of several requests are recorded together, the rows
 * they delivered are deleted (and counted) at the end, one statement per
 * sync.
 */
typedef struct DoneRows
{
	int			sync_id;
	int64		delivered;		/* records */
	int			n;
	int			size;
	Datum	   *ids;
} DoneRows;

static bool deferring = false;
static List *done_rows = NIL;	/* DoneRows *, in the transaction's memory */

static void
defer_delete(int sync_id, RetlRecord *records, int nrecords)
{
	DoneRows   *d = NULL;
	ListCell   *lc;

	foreach(lc, done_rows)
	{
		if (((DoneRows *) lfirst(lc))->sync_id == sync_id)
			d = lfirst(lc);
	}
	if (d == NULL)
	{
		d = palloc0(sizeof(DoneRows));
		d->sync_id = sync_id;
		d->size = 64;
		d->ids = palloc(sizeof(Datum) * d->size);
		done_rows = lappend(done_rows, d);
	}
	d->delivered += nrecords;
	for (int i = 0; i < nrecords; i++)
	{
		for (int j = 0; j < records[i].nqueue_ids; j++)
		{
			if (d->n == d->size)
			{
				d->size *= 2;
				d->ids = repalloc(d->ids, sizeof(Datum) * d->size);
			}
			d->ids[d->n++] = Int64GetDatum(records[i].queue_ids[j]);
		}
	}
}

/*
 * From here to retl_queue_flush_deletes (in the same transaction), the
 * rows of delivered records are deleted together.
 */
void
retl_queue_defer_deletes(void)
{
	deferring = true;
	done_rows = NIL;
}

/* Delete and count the rows delivered since retl_queue_defer_deletes. */
void
retl_queue_flush_deletes(void)
{
	ListCell   *lc;

	deferring = false;
	foreach(lc, done_rows)
	{
		DoneRows   *d = lfirst(lc);

		retl_queue_delete_ids(d->sync_id,
					PointerGetDatum(construct_array(d->ids, d->n, INT8OID, 8,
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)));
		retl_counters_delivered(d->sync_id, d->delivered);
	}
	done_rows = NIL;
}

/* Each record's outcome: the connector's reading of the answer, else the status rule. */
static void
read_outcomes(RetlRequest *req)
{
	const RetlConnector *c = retl_connector_or_null(req->kind);

	for (int i = 0; i < req->nrecords; i++)
	{
		req->records[i].outcome = RETL_OUTCOME_UNSET;
		req->records[i].message = NULL;
		req->records[i].remember_id = NULL;
	}
	if (c != NULL && c->read_answer != NULL && req->curl_code == CURLE_OK)
	{
		List	   *syncs = retl_sync_load(req->sync_id);

		if (syncs != NIL)
			c->read_answer(req, (RetlSync *) linitial(syncs));
	}
	/*
	 * An OAuth 2.0 token refused (401, or the API's body said so): renewed,
	 * once, and the records retried
	 */
	if (req->auth_generation > 0 && req->curl_code == CURLE_OK)
	{
		if ((req->status == 401 || req->renew_token) && retl_oauth_unauthorized(req))
		{
			for (int i = 0; i < req->nrecords; i++)
			{
				req->records[i].outcome = RETL_OUTCOME_RETRY;
				req->records[i].message = req->renew_token ?
					"destination refused the OAuth 2.0 access token: it is renewed" :
					"destination answered HTTP 401: the OAuth 2.0 access token is renewed";
			}
		}
		else if (req->status >= 200 && req->status < 300)
			retl_oauth_accepted(req);
	}
	for (int i = 0; i < req->nrecords; i++)
	{
		if (req->records[i].outcome == RETL_OUTCOME_UNSET)
		{
			RetlRequest one = *req;

			/* the rule, for this record alone */
			one.records = &req->records[i];
			one.nrecords = 1;
			retl_status_outcomes(&one);
		}
	}
}

/*
 * Records a step of which was done (a contact upserted before it is added
 * to a list): their destination ids are kept and they go back to the
 * queue at once, no attempt counted, so the next claim sends the next
 * step.  Returns how many.
 */
static int
steps(RetlRequest *req)
{
	RetlRecord *again = palloc(sizeof(RetlRecord) * req->nrecords);
	int			n = 0;

	for (int i = 0; i < req->nrecords; i++)
		if (req->records[i].outcome == RETL_OUTCOME_AGAIN)
			again[n++] = req->records[i];
	if (n == 0)
		return 0;
	retl_ids_remember(req->sync_id, again, n);
	/* the records of a job are marked in flight in the table (jobs.c) */
	if (req->job != NULL && req->job->id != 0)
	{
		Oid			types[2] = {INT8ARRAYOID, INT4OID};
		Datum		values[2] = {retl_queue_id_array(again, n), Int32GetDatum(req->sync_id)};

		if (retl_spi_execute_by_index("UPDATE retl.queue SET in_flight = false"
									  " WHERE sync_id = $2 AND id = ANY ($1) AND in_flight",
									  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "retl: could not release queued changes");
	}
	retl_queue_rewind(req->sync_id, again, n);
	return n;
}

/*
 * Record the outcome of a finished request, record by record: delete
 * delivered rows (keeping the destination's ids the connector read),
 * schedule retries, move records to the dead letters.  Records the answer
 * put into a job stay in flight (queue/jobs.c keeps the job).
 */
void
retl_queue_record(RetlRequest *req)
{
	read_outcomes(req);
	retl_queue_apply(req);
}

/* Record the outcomes already set on each record of a request. */
void
retl_queue_apply(RetlRequest *req)
{
	char	   *error;
	char	   *excerpt;
	int			retries = 0;
	int			delivered = 0;
	int			failed = 0;
	int			attempt = 0;
	int64		delay;
	RetlRecord *done;
	RetlRecord *retry;
	char	   *first_error = NULL;
	int			in_job = 0;

	done = palloc(sizeof(RetlRecord) * req->nrecords);
	for (int i = 0; i < req->nrecords; i++)
		in_job += req->records[i].outcome == RETL_OUTCOME_JOB;
	/* a backfill's records not delivered go into the queue first */
	retl_queue_materialize(req, req->records, req->nrecords);
	for (int i = 0; i < req->nrecords; i++)
		if (req->records[i].outcome == RETL_OUTCOME_DELIVERED)
			done[delivered++] = req->records[i];
	if (delivered > 0)
	{
		retl_ids_remember(req->sync_id, done, delivered);
		if (deferring)
			defer_delete(req->sync_id, done, delivered);
		else
		{
			retl_queue_delete_ids(req->sync_id, retl_queue_id_array(done, delivered));
			retl_counters_delivered(req->sync_id, delivered);
		}
	}
	if (delivered + in_job == req->nrecords)
		return;
	if (steps(req) + delivered + in_job == req->nrecords)
		return;

	if (req->curl_code != CURLE_OK)
		error = psprintf("could not deliver: %s",
						 req->errbuf[0] ? req->errbuf : curl_easy_strerror(req->curl_code));
	else if (req->status >= 300 && req->status < 400)
		error = psprintf("destination answered HTTP %ld (redirects are not followed)", req->status);
	else
		error = psprintf("destination answered HTTP %ld", req->status);
	error = retl_http_redact(req, error);
	excerpt = retl_http_excerpt(req);
	excerpt = sanitize(excerpt, strlen(excerpt));

	retry = palloc(sizeof(RetlRecord) * req->nrecords);
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *why;
		double		age_ms = r->first_attempt > 0 ?
			((double) req->started_at / 1000.0 -
			 (r->first_attempt - (double) ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)) * 1000.0) : 0;

		if (r->outcome == RETL_OUTCOME_DELIVERED || r->outcome == RETL_OUTCOME_AGAIN ||
			r->outcome == RETL_OUTCOME_JOB)
			continue;
		failed++;
		why = r->message ? retl_http_redact(req, r->message) : error;
		if (first_error == NULL)
			first_error = why;
		/* retried until max_attempts or max_retry_age, whichever comes first */
		if (r->outcome == RETL_OUTCOME_RETRY && r->attempts + 1 < req->max_attempts &&
			age_ms < req->max_retry_age_ms)
		{
			r->message = why;
			retry[retries++] = *r;
			attempt = Max(attempt, r->attempts + 1);
		}
		else
			dead_letter(req, r, why, excerpt);
	}

	if (retries > 0)
	{
		Oid			types[6] = {INT8ARRAYOID, INT8OID, TIMESTAMPTZOID, INT4OID, TEXTOID, INT4OID};
		Datum		values[6];
		char		nulls[6] = "      ";

		delay = retry_delay_ms(req, attempt);
		values[1] = Int64GetDatum(delay);
		values[2] = TimestampTzGetDatum(req->started_at);
		values[3] = Int32GetDatum((int32) req->status);
		if (req->status == 0)
			nulls[3] = 'n';
		values[5] = Int32GetDatum(req->sync_id);
		/* one statement per distinct message (usually one) */
		for (int i = 0; i < retries; i++)
		{
			int			n = 0;
			RetlRecord *same;

			if (retry[i].message == NULL)
				continue;
			same = palloc(sizeof(RetlRecord) * retries);
			for (int j = i; j < retries; j++)
			{
				if (retry[j].message != NULL && strcmp(retry[j].message, retry[i].message) == 0)
				{
					same[n++] = retry[j];
					if (j > i)
						retry[j].message = NULL;
				}
			}
			values[0] = retl_queue_id_array(same, n);
			values[4] = CStringGetTextDatum(retry[i].message);
			if (retl_spi_execute_by_index("UPDATE retl.queue SET in_flight = false, attempts = attempts + 1,"
								 " next_attempt_at = pg_catalog.now() + $2 * interval '1 millisecond',"
								 " first_attempt_at = COALESCE(first_attempt_at, $3),"
								 " last_attempt_at = $3, last_status = $4, last_error = $5"
								 " WHERE sync_id = $6 AND id = ANY ($1)", 6, types, values, nulls, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "retl: could not schedule a retry");
		}
		retl_queue_rewind(req->sync_id, retry, retries);
		/* later changes of these keys wait as long (now() is the same) */
		for (int i = 0; i < retries; i++)
			retl_queue_backoff(req->sync_id, retry[i].key_hash,
							   GetCurrentTransactionStartTimestamp() + delay * 1000);
	}

	{
		Oid			types[4] = {INT4OID, INT8OID, INT4OID, TEXTOID};
		Datum		values[4];
		char		nulls[4] = "    ";

		values[0] = Int32GetDatum(req->sync_id);
		values[1] = Int64GetDatum(failed);
		values[2] = Int32GetDatum((int32) req->status);
		if (req->status == 0)
			nulls[2] = 'n';
		values[3] = CStringGetTextDatum(first_error);
		retl_counters_fold(req->sync_id);
		if (retl_spi_execute("UPDATE retl.sync_stats SET failed_attempts = failed_attempts + $2,"
							 " consecutive_failures = consecutive_failures + 1,"
							 " last_status = $3, last_error = $4, last_error_at = pg_catalog.now()"
							 " WHERE sync_id = $1", 4, types, values, nulls, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "retl: could not update the statistics of a sync");
	}
}

/* A sync could not be processed (e.g. its table was dropped): show why. */
void
retl_queue_sync_error(int sync_id, const char *message)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2] = {Int32GetDatum(sync_id), CStringGetTextDatum(message)};

	/* a sync being dropped is left to its drop (sync/dropping.c) */
	if (retl_sync_dropping(sync_id))
		return;
	retl_counters_fold(sync_id);
	spi_exec("UPDATE retl.sync_stats SET consecutive_failures = consecutive_failures + 1,"
			 " last_error = $2, last_error_at = pg_catalog.now() WHERE sync_id = $1",
			 2, types, values, SPI_OK_UPDATE);
}
