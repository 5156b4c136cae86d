/*
 * jobs.c: records a destination holds in a job of its own.
 *
 * Some APIs (bulk imports, upload jobs) answer "accepted into job X" and
 * tell each record's fate only later.  A connector's read_answer gives such
 * records the outcome RETL_OUTCOME_JOB; in the same outcome transaction the
 * job and its records are written to retl.job_store and
 * retl.job_record_store (retl_jobs_open), and their queue rows are marked
 * in flight (the only rows the table marks: a claim holds its rows in the
 * worker's memory, and a job outlives the worker).  Their keys are held in this worker's memory, as a claimed
 * request's are, so a later change of a key waits for the job (per-key
 * order).  The worker checks each open job on a schedule: the claim
 * transaction builds the check with the connector's build_job
 * (retl_jobs_claim), it is sent with no transaction open, and the outcome
 * transaction reads it with read_job (retl_jobs_checked): records the
 * answer settles are recorded like any request's (delivered, retried,
 * dead-lettered), the others stay in the job.  A job ends when it holds no
 * record, or when it is older than retl.max_job_age: its records are then
 * retried, as if their request had failed.
 *
 * Crash safety: the job and its records are committed with the outcome
 * that made them, and each step of a job, durably (the worker's other
 * commits do not wait for the WAL); a restart leaves their rows in flight (queue.c), loads
 * their keys (retl_jobs_load) and checks the jobs again; nothing is sent
 * again.  A check whose answer is lost is simply made again.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "base/plans.h"
#include "connectors/connector.h"
#include "connectors/oauth.h"
#include "queue/jobs.h"
#include "queue/queue.h"

/* the first check of a job after this, then at doubling intervals */
#define JOB_FIRST_CHECK_MS 1000

/* Keys of records in open jobs: (sync, key hash) -> records. */
typedef struct JobKey
{
	int			sync_id;
	uint64		hash;
} JobKey;

typedef struct JobKeyEntry
{
	JobKey		key;
	int			count;
} JobKeyEntry;

static HTAB *job_keys = NULL;

/* Jobs being checked: a check request not yet freed. */
static List *checking = NIL;

static void
hold_key(int sync_id, uint64 hash, int delta)
{
	JobKey		k;
	JobKeyEntry *e;
	bool		found;

	if (job_keys == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(JobKey);
		ctl.entrysize = sizeof(JobKeyEntry);
		job_keys = hash_create("retl keys in jobs", 256, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	memset(&k, 0, sizeof(k));
	k.sync_id = sync_id;
	k.hash = hash;
	e = hash_search(job_keys, &k, delta > 0 ? HASH_ENTER : HASH_FIND, &found);
	if (e == NULL)
		return;
	if (!found)
		e->count = 0;
	e->count += delta;
	if (e->count <= 0)
		hash_search(job_keys, &k, HASH_REMOVE, NULL);
}

/* Is a key of a sync held by a record in an open job? */
bool
retl_jobs_hold(int sync_id, uint64 key_hash)
{
	JobKey		k;

	if (job_keys == NULL || hash_get_num_entries(job_keys) == 0)
		return false;
	memset(&k, 0, sizeof(k));
	k.sync_id = sync_id;
	k.hash = key_hash;
	return hash_search(job_keys, &k, HASH_FIND, NULL) != NULL;
}

/* At the worker's start: the keys open jobs hold. */
void
retl_jobs_load(void)
{
	if (job_keys != NULL)
		hash_destroy(job_keys);
	job_keys = NULL;
	if (SPI_execute("SELECT j.sync_id, r.key_hash FROM retl.job_record_store r"
					" JOIN retl.job_store j ON j.id = r.job_id", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the records of open jobs");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];

		hold_key(DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull)),
				 (uint64) DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull)), 1);
	}
}

/* The engine's wait before the next check of a job checked n times. */
static long
backoff_ms(int checks)
{
	double		ms = JOB_FIRST_CHECK_MS;

	for (int i = 0; i < checks && ms < retl_job_check_max_ms; i++)
		ms *= 2;
	return (long) Min(ms, (double) retl_job_check_max_ms);
}

static long
next_check_ms(RetlJob *job)
{
	return job->check_after_ms > 0 ? job->check_after_ms : backoff_ms(job->checks);
}

/*
 * In the outcome transaction of a request whose answer put records into a
 * job (req->job, records with RETL_OUTCOME_JOB): keep the job and its
 * records; their rows stay in flight and their keys held.
 */
void
retl_jobs_open(RetlRequest *req)
{
	RetlJob    *job = req->job;
	int			n = 0;
	Datum	   *rids;
	Datum	   *ids;
	Datum	   *ops;
	Datum	   *keys;
	Datum	   *hashes;
	Datum	   *captured;
	Datum	   *refs;
	bool	   *refnulls;
	RetlRecord *in_job;
	int			dims[1];
	int			lbs[1] = {1};
	Oid			types[6] = {INT4OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID};
	Datum		values[6];
	char		nulls[6] = "      ";
	Oid			rtypes[8] = {INT8OID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		rvalues[8];
	bool		isnull;

	for (int i = 0; i < req->nrecords; i++)
		n += req->records[i].outcome == RETL_OUTCOME_JOB;
	if (n == 0)
		return;
	if (job == NULL || job->remote_id == NULL)
		elog(ERROR, "retl: a %s answer put records into a job it did not name", req->kind);

	/*
	 * The worker commits without waiting for the WAL (the queue's rule: a
	 * change lost by a crash is sent again).  A job must not be lost: its
	 * records would be sent again in a second job while the first one
	 * goes on.
	 */
	ForceSyncCommit();

	values[0] = Int32GetDatum(req->sync_id);
	values[1] = CStringGetTextDatum(job->remote_id);
	if (job->state)
		values[2] = CStringGetTextDatum(job->state);
	else
		nulls[2] = 'n';
	if (job->status)
		values[3] = CStringGetTextDatum(job->status);
	else
		nulls[3] = 'n';
	values[4] = Int64GetDatum(next_check_ms(job));
	values[5] = TimestampTzGetDatum(req->started_at);
	if (retl_spi_execute("INSERT INTO retl.job_store (sync_id, remote_id, state, status, created_at, next_check_at)"
						 " VALUES ($1, $2, $3, $4, $6, pg_catalog.now() + $5 * interval '1 millisecond')"
						 " RETURNING id", 6, types, values, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "retl: could not keep a job of sync %d", req->sync_id);
	job->id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	rids = palloc(sizeof(Datum) * n);
	ids = palloc(sizeof(Datum) * n);
	ops = palloc(sizeof(Datum) * n);
	keys = palloc(sizeof(Datum) * n);
	hashes = palloc(sizeof(Datum) * n);
	captured = palloc(sizeof(Datum) * n);
	refs = palloc(sizeof(Datum) * n);
	refnulls = palloc(sizeof(bool) * n);
	in_job = palloc(sizeof(RetlRecord) * n);
	n = 0;
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		StringInfoData rows;

		if (r->outcome != RETL_OUTCOME_JOB)
			continue;
		rids[n] = Int64GetDatum(r->rid);
		/* the record's rows, as the text of an int8[] (one array a record) */
		initStringInfo(&rows);
		for (int j = 0; j < r->nqueue_ids; j++)
			appendStringInfo(&rows, "%c" INT64_FORMAT, j == 0 ? '{' : ',', r->queue_ids[j]);
		appendStringInfoChar(&rows, '}');
		ids[n] = CStringGetTextDatum(rows.data);
		ops[n] = CStringGetTextDatum(psprintf("%c", r->op));
		keys[n] = CStringGetTextDatum(r->key);
		hashes[n] = Int64GetDatum((int64) r->key_hash);
		captured[n] = CStringGetTextDatum(r->captured_at);
		refnulls[n] = r->job_ref == NULL;
		refs[n] = r->job_ref ? CStringGetTextDatum(r->job_ref) : (Datum) 0;
		hold_key(req->sync_id, r->key_hash, 1);
		in_job[n] = *r;
		n++;
	}
	dims[0] = n;
	rvalues[0] = Int64GetDatum(job->id);
	rvalues[1] = PointerGetDatum(construct_array(rids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	rvalues[2] = PointerGetDatum(construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT));
	rvalues[3] = PointerGetDatum(construct_array(ops, n, TEXTOID, -1, false, TYPALIGN_INT));
	rvalues[4] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
	rvalues[5] = PointerGetDatum(construct_array(hashes, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	rvalues[6] = PointerGetDatum(construct_array(captured, n, TEXTOID, -1, false, TYPALIGN_INT));
	rvalues[7] = PointerGetDatum(construct_md_array(refs, refnulls, 1, dims, lbs, TEXTOID, -1, false,
													TYPALIGN_INT));
	if (retl_spi_execute("INSERT INTO retl.job_record_store (job_id, rid, queue_ids, op, key, key_hash,"
						 " captured_at, ref)"
						 " SELECT $1, r.rid, r.ids::bigint[], r.op::\"char\", r.key, r.hash, r.captured::timestamptz, r.ref"
						 " FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4),"
						 " pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7),"
						 " pg_catalog.unnest($8)) AS r(rid, ids, op, key, hash, captured, ref)",
						 8, rtypes, rvalues, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not keep the records of a job of sync %d", req->sync_id);
	/*
	 * Their rows in flight in the table (the job outlives the worker), and
	 * their first attempt, for retries.  Only theirs: the request's other
	 * records are delivered, retried or dead-lettered by now.
	 */
	values[0] = retl_queue_id_array(in_job, n);
	values[1] = TimestampTzGetDatum(req->started_at);
	values[2] = Int32GetDatum(req->sync_id);
	types[0] = INT8ARRAYOID;
	types[1] = TIMESTAMPTZOID;
	types[2] = INT4OID;
	if (retl_spi_execute("UPDATE retl.queue q SET in_flight = true,"
						 " first_attempt_at = COALESCE(q.first_attempt_at, $2),"
						 " last_attempt_at = $2 WHERE q.sync_id = $3 AND q.id = ANY ($1)",
						 3, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not mark the records of a job of sync %d", req->sync_id);
}

static void
unchecking(void *arg)
{
	checking = list_delete_ptr(checking, arg);
}

static bool
being_checked(int64 job_id)
{
	ListCell   *lc;

	foreach(lc, checking)
		if (((RetlRequest *) lfirst(lc))->job->id == job_id)
			return true;
	return false;
}

/* A job as retl_jobs_claim reads it. */
typedef struct DueJob
{
	int64		id;
	char	   *remote_id;
	char	   *state;
	char	   *status;
	int			checks;
	double		age_s;
	int64		due_in_ms;
} DueJob;

/* A request of a sync for one of its jobs, with the records it still holds. */
static RetlRequest *
job_request(RetlSync *sync, DueJob *due)
{
	RetlRequest *req = retl_queue_new_request(sync);
	MemoryContext old;
	RetlJob    *job;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2];
	char	   *inst = retl_queue_instance_id();
	bool		isnull;

	old = MemoryContextSwitchTo(req->cxt);
	job = req->job = palloc0(sizeof(RetlJob));
	job->id = due->id;
	job->remote_id = pstrdup(due->remote_id);
	job->state = due->state ? pstrdup(due->state) : NULL;
	job->status = due->status ? pstrdup(due->status) : NULL;
	job->checks = due->checks;
	job->age_s = due->age_s;
	MemoryContextSwitchTo(old);

	values[0] = Int64GetDatum(job->id);
	values[1] = Int32GetDatum(sync->id);
	if (retl_spi_execute("SELECT r.rid, r.queue_ids::text, COALESCE(pg_catalog.max(q.attempts), 0), r.op, r.key,"
						 " pg_catalog.to_char(r.captured_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
						 " COALESCE(extract(epoch FROM pg_catalog.min(q.first_attempt_at)), 0)::float8,"
						 " extract(epoch FROM r.captured_at)::float8, r.key_hash, r.ref"
						 " FROM retl.job_record_store r LEFT JOIN retl.queue q"
						 " ON q.sync_id = $2 AND q.id = ANY (r.queue_ids)"
						 " WHERE r.job_id = $1 GROUP BY r.rid, r.queue_ids, r.op, r.key, r.captured_at,"
						 " r.key_hash, r.ref ORDER BY r.rid",
						 2, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the records of job %s of sync \"%s\"",
			 job->remote_id, sync->name);
	old = MemoryContextSwitchTo(req->cxt);
	req->nrecords = (int) SPI_processed;
	req->records = palloc0(sizeof(RetlRecord) * Max(req->nrecords, 1));
	for (int i = 0; i < req->nrecords; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		RetlRecord *r = &req->records[i];
		char	   *ids = SPI_getvalue(tup, desc, 2);

		r->rid = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		r->record_id = retl_queue_record_id(inst, r->rid);
		/* "{1,2,3}" */
		r->queue_ids = palloc(sizeof(int64) * (strlen(ids) / 2 + 1));
		for (char *p = ids; *p;)
		{
			char	   *end;

			if (*p == '{' || *p == ',' || *p == '}')
			{
				p++;
				continue;
			}
			r->queue_ids[r->nqueue_ids++] = strtoi64(p, &end, 10);
			p = end;
		}
		r->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		r->op = DatumGetChar(SPI_getbinval(tup, desc, 4, &isnull));
		r->key = SPI_getvalue(tup, desc, 5);
		r->captured_at = SPI_getvalue(tup, desc, 6);
		r->first_attempt = DatumGetFloat8(SPI_getbinval(tup, desc, 7, &isnull));
		r->captured_epoch = DatumGetFloat8(SPI_getbinval(tup, desc, 8, &isnull));
		r->key_hash = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
		r->job_ref = SPI_getvalue(tup, desc, 10);
	}
	MemoryContextSwitchTo(old);
	return req;
}

/* The job is over (no records left): forget it. */
static void
close_job(RetlRequest *req)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(req->job->id)};

	if (retl_spi_execute("DELETE FROM retl.job_store WHERE id = $1", 1, types, values, NULL,
						 false, 0) != SPI_OK_DELETE)
		elog(ERROR, "retl: could not end job %s", req->job->remote_id);
}

/*
 * Record the records of a job that left it (outcome other than
 * RETL_OUTCOME_JOB) like any request's, and let their keys go; true when
 * none is left in it.
 */
static bool
settle(RetlRequest *req)
{
	int			left = 0;
	int			n = 0;
	Datum	   *rids = palloc(sizeof(Datum) * Max(req->nrecords, 1));
	Oid			types[2] = {INT8OID, INT8ARRAYOID};
	Datum		values[2];

	for (int i = 0; i < req->nrecords; i++)
	{
		if (req->records[i].outcome == RETL_OUTCOME_JOB)
			left++;
		else
		{
			rids[n++] = Int64GetDatum(req->records[i].rid);
			hold_key(req->sync_id, req->records[i].key_hash, -1);
		}
	}
	if (n > 0)
	{
		values[0] = Int64GetDatum(req->job->id);
		values[1] = PointerGetDatum(construct_array(rids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (retl_spi_execute("DELETE FROM retl.job_record_store WHERE job_id = $1 AND rid = ANY ($2)",
							 2, types, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "retl: could not settle records of job %s", req->job->remote_id);
		retl_queue_apply(req);
	}
	return left == 0;
}

/*
 * In the claim transaction: the next check of one of the sync's jobs that
 * is due (built by its connector), or NULL; *wait_ms is lowered to when the
 * next one is due.  A job older than retl.max_job_age gives up its records
 * here (retried) and is closed.
 */
RetlRequest *
retl_jobs_claim(RetlSync *sync, long *wait_ms)
{
	const RetlConnector *c = retl_connector(sync->kind);
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(sync->id)};
	RetlRequest *volatile req = NULL;
	DueJob	   *jobs;
	int			njobs;

	if (c->build_job == NULL)
		return NULL;
	if (retl_spi_execute("SELECT j.id, j.remote_id, j.state, j.status, j.checks,"
						 " extract(epoch FROM pg_catalog.now() - j.created_at)::float8,"
						 " (extract(epoch FROM j.next_check_at - pg_catalog.now()) * 1000)::bigint"
						 " FROM retl.job_store j WHERE j.sync_id = $1 ORDER BY j.next_check_at",
						 1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the jobs of sync \"%s\"", sync->name);
	njobs = (int) SPI_processed;
	jobs = palloc0(sizeof(DueJob) * Max(njobs, 1));
	for (int i = 0; i < njobs; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		jobs[i].id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		jobs[i].remote_id = SPI_getvalue(tup, desc, 2);
		jobs[i].state = SPI_getvalue(tup, desc, 3);
		jobs[i].status = SPI_getvalue(tup, desc, 4);
		jobs[i].checks = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		jobs[i].age_s = DatumGetFloat8(SPI_getbinval(tup, desc, 6, &isnull));
		jobs[i].due_in_ms = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
	}
	for (int i = 0; i < njobs && req == NULL; i++)
	{
		if (being_checked(jobs[i].id))
			continue;
		if (jobs[i].due_in_ms > 0)
		{
			*wait_ms = Min(*wait_ms, (long) jobs[i].due_in_ms);
			break;				/* the others are due later still */
		}
		req = job_request(sync, &jobs[i]);
		if (req->job->age_s > retl_max_job_age_s || req->nrecords == 0)
		{
			/* too old: its records are retried like a failed request's */
			for (int k = 0; k < req->nrecords; k++)
			{
				req->records[k].outcome = RETL_OUTCOME_RETRY;
				req->records[k].message =
					psprintf("job %s of the destination did not finish within retl.max_job_age (%d s)",
							 req->job->remote_id, retl_max_job_age_s);
			}
			req->started_at = GetCurrentTimestamp();
			settle(req);
			close_job(req);
			retl_http_free(req);
			req = NULL;
		}
	}
	if (req == NULL)
		return NULL;
	PG_TRY();
	{
		c->build_job(req, sync);
	}
	PG_CATCH();
	{
		retl_http_free(req);
		PG_RE_THROW();
	}
	PG_END_TRY();
	{
		MemoryContextCallback *cb = MemoryContextAlloc(req->cxt, sizeof(MemoryContextCallback));
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		checking = lappend(checking, req);
		MemoryContextSwitchTo(old);
		cb->func = unchecking;
		cb->arg = req;
		MemoryContextRegisterResetCallback(req->cxt, cb);
	}
	return req;
}

/*
 * In the outcome transaction: the answer to a job's check.  The connector
 * reads it (records settled, or still in the job); an answer it cannot
 * read (a connection error, a 5xx, a refused token) settles nothing and
 * the job is checked again later.
 */
void
retl_jobs_checked(RetlRequest *req)
{
	const RetlConnector *c = retl_connector_or_null(req->kind);
	RetlJob    *job = req->job;
	char	   *error = NULL;
	List	   *syncs = retl_sync_load(req->sync_id);
	Oid			types[6] = {INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID, INT4OID};
	Datum		values[6];
	char		nulls[6] = "      ";

	if (syncs == NIL)
		return;					/* the sync was dropped, and its jobs with it */
	/* a step of the job, once done, is not done again after a crash */
	ForceSyncCommit();
	for (int i = 0; i < req->nrecords; i++)
	{
		req->records[i].outcome = RETL_OUTCOME_JOB;
		req->records[i].message = NULL;
		req->records[i].remember_id = NULL;
	}
	job->check_after_ms = 0;
	if (req->curl_code != CURLE_OK)
		error = psprintf("could not check the job: %s",
						 req->errbuf[0] ? req->errbuf : curl_easy_strerror(req->curl_code));
	else if (req->auth_generation > 0 && (req->status == 401 || req->renew_token) &&
			 retl_oauth_unauthorized(req))
		error = "the destination refused the OAuth 2.0 access token: it is renewed";
	else if (c != NULL && c->read_job != NULL)
	{
		if (req->auth_generation > 0 && req->status >= 200 && req->status < 300)
			retl_oauth_accepted(req);
		c->read_job(req, (RetlSync *) linitial(syncs));
		if (req->status < 200 || req->status >= 300)
			error = psprintf("the destination answered HTTP %ld to a check of the job", req->status);
	}
	job->checks++;
	if (settle(req))
	{
		close_job(req);
		return;
	}
	values[0] = Int64GetDatum(job->id);
	if (job->state)
		values[1] = CStringGetTextDatum(job->state);
	else
		nulls[1] = 'n';
	if (job->status)
		values[2] = CStringGetTextDatum(job->status);
	else
		nulls[2] = 'n';
	values[3] = Int64GetDatum(next_check_ms(job));
	if (error)
		values[4] = CStringGetTextDatum(retl_http_redact(req, error));
	else
		nulls[4] = 'n';
	values[5] = Int32GetDatum(job->checks);
	if (retl_spi_execute("UPDATE retl.job_store SET state = $2, status = $3, checks = $6,"
						 " checked_at = pg_catalog.now(), last_error = $5,"
						 " next_check_at = pg_catalog.now() + $4 * interval '1 millisecond'"
						 " WHERE id = $1", 6, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not keep the state of job %s", job->remote_id);
}
