/*
 * rows.c: what a claimed request sends, read and built in the claim
 * transaction (claim.c claims the rows).
 *
 * An upsert batch's records carry their rows' state as they are now, read
 * by key as the sync's owner (owner.c); an append batch's captured rows
 * go through its mapping's computed fields the same way.  A record whose
 * row the owner may not see (row-level security) is not the owner's to
 * send: its key leaves the queue unsent.  A record that cannot be read or
 * is larger than retl.max_record_size is dead-lettered alone.  Then the
 * destination's connector builds the request (retl_queue_build), and
 * builds again a part of a batch that the destination refused as a whole
 * (retl_queue_rebuild).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_attribute.h"
#include "common/hashfn.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "base/guc.h"
#include "base/plans.h"
#include "base/subxact.h"
#include "connectors/connector.h"
#include "models/jsonkey.h"
#include "queue/queue.h"
#include "queue/rowjson.h"
#include "sync/compiled.h"
#include "sync/dropping.h"
#include "sync/ids.h"
#include "sync/mapping.h"
#include "sync/owner.h"
#include "sync/trust.h"

/*
 * Reading the state of records [from, from + n) of a request: an upsert
 * batch's rows by their keys, or an append batch's captured rows through
 * its mapping's computed fields.
 */
typedef struct ReadWork
{
	RetlSync   *sync;
	RetlRequest *req;
	Datum	   *keys;			/* the queue keys, or the captured rows */
	int			from;
	int			n;
	bool		append;
} ReadWork;

/*
 * The select list of an upsert batch's read: its row made JSON text by the
 * executor (data); or, for a table without mapping whose columns rowjson.c
 * writes, true and the row's columns, written in C.  Returns whether it is
 * the columns.
 */
static bool
append_read_columns(StringInfo sql, RetlSync *sync)
{
	Relation	rel;
	TupleDesc	desc;

	if (sync->mapping != NULL || !retl_row_json_plain(sync->relid))
	{
		retl_append_row_data(sql, sync, "t");
		appendStringInfoString(sql, " AS data");
		return false;
	}
	rel = RelationIdGetRelation(sync->relid);
	if (!RelationIsValid(rel))
		retl_source_gone(sync);
	desc = RelationGetDescr(rel);
	appendStringInfoString(sql, "true");
	for (int i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped)
			appendStringInfo(sql, ", t.%s", quote_identifier(NameStr(TupleDescAttr(desc, i)->attname)));
	RelationClose(rel);
	return true;
}

/*
 * The statement reading an upsert batch's rows ($1: their queue keys): one
 * line a key, in their order, with its row (append_read_columns; all null:
 * no row).
 */
static char *
read_sql(RetlSync *sync)
{
	StringInfoData sql;
	StringInfoData cols;
	bool		plain;

	initStringInfo(&cols);
	plain = append_read_columns(&cols, sync);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s FROM pg_catalog.unnest($1)"
					 " WITH ORDINALITY AS retl_k(retl_key, retl_n) LEFT JOIN LATERAL (SELECT %s",
					 plain ? "x.*" : "x.data::text", cols.data);
	appendStringInfo(&sql, " FROM %s%s t WHERE ", retl_only(sync->relid),
					 format_type_be_qualified(get_rel_type_id(sync->relid)));
	retl_append_key_match(&sql, sync, "t", "retl_k.retl_key");
	appendStringInfoString(&sql, " LIMIT 1) x ON true ORDER BY retl_k.retl_n");
	return sql.data;
}

/*
 * The same rows read by ranges of the key, when it is one integer column
 * ($1 and $2: the first and last key of each run of consecutive keys):
 * the key of each row there is (int8), then its row as read_sql has it.
 * A run holds only keys of the batch, so nothing else is read.
 */
static char *
read_ranges_sql(RetlSync *sync)
{
	StringInfoData sql;
	StringInfoData cols;
	Oid			typid = get_atttype(sync->relid, sync->key_attnums[0]);
	char	   *type = format_type_be_qualified(typid);
	const char *col = quote_identifier(get_attname(sync->relid, sync->key_attnums[0], false));
	bool		plain;

	initStringInfo(&cols);
	plain = append_read_columns(&cols, sync);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2))"
					 " AS retl_r(retl_lo, retl_hi) CROSS JOIN LATERAL"
					 " (SELECT t.%s::pg_catalog.int8 AS retl_key, %s",
					 plain ? "x.*" : "x.retl_key, x.data::text", col, cols.data);
	appendStringInfo(&sql, " FROM %s%s t WHERE t.%s %s retl_r.retl_lo::%s AND t.%s %s retl_r.retl_hi::%s) x",
					 retl_only(sync->relid),
					 format_type_be_qualified(get_rel_type_id(sync->relid)),
					 col, retl_key_operator(typid, BTGreaterEqualStrategyNumber), type,
					 col, retl_key_operator(typid, BTLessEqualStrategyNumber), type);
	return sql.data;
}

/*
 * The statement mapping an append batch's captured rows ($1) with computed
 * fields: each row typed again as the table's (jsonb_populate_record with
 * the table's row type) and mapped like a read row.
 *
 * The columns' types are the row type's, looked up by oid: spelled out by
 * name (jsonb_to_record(row) t(col schema.type, ...)), each type's schema
 * was looked up as the owner, who may read the table but have no USAGE on
 * it (a domain's, citext's in a schema "extensions"), and the sync failed.
 * But a plan depends on a row type's table in nothing PostgreSQL's plan
 * cache follows: after a column renamed or dropped, a kept plan read the
 * columns by position, and a computed field read a column the captured
 * row no longer named (null).  So the statement ends with a comment that
 * changes with the table's columns (their numbers, names and types): a new
 * text, planned anew (base/plans.c keeps plans by text; sync/compiled.c
 * builds it again at the table's relcache invalidation), and a computed
 * field naming a column gone fails the sync, its rows queued, until its
 * mapping is mended.
 */
static char *
append_sql(RetlSync *sync)
{
	StringInfoData sql;
	StringInfoData columns;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT (SELECT ");
	retl_append_row_data(&sql, sync, "t");
	appendStringInfo(&sql, " FROM pg_catalog.jsonb_populate_record(NULL::%s, retl_d.retl_row) t)::text"
					 " FROM pg_catalog.unnest($1) WITH ORDINALITY AS retl_d(retl_row, retl_n)"
					 " ORDER BY retl_d.retl_n",
					 format_type_be_qualified(get_rel_type_id(sync->relid)));

	/*
	 * (from the catalog caches: no lock a migration's could make us wait
	 * for; attribute numbers run from 1 without a gap, dropped ones kept)
	 */
	initStringInfo(&columns);
	for (int i = 1;; i++)
	{
		HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(sync->relid), Int16GetDatum(i));
		Form_pg_attribute att;

		if (!HeapTupleIsValid(tup))
			break;
		att = (Form_pg_attribute) GETSTRUCT(tup);
		appendStringInfo(&columns, "%d %s %u %d %d;", i, NameStr(att->attname), att->atttypid,
						 att->atttypmod, att->attisdropped);
		ReleaseSysCache(tup);
	}
	appendStringInfo(&sql, " /* columns %08x */",
					 hash_bytes((const unsigned char *) columns.data, columns.len));
	pfree(columns.data);
	return sql.data;
}

/* The statement telling which of the keys $1 have a row, whoever may see it. */
static char *
hidden_sql(RetlSync *sync)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT k.n FROM pg_catalog.unnest($1) WITH ORDINALITY AS k(key, n)"
					 " WHERE EXISTS (SELECT 1 FROM %s%s t WHERE ", retl_only(sync->relid),
					 format_type_be_qualified(get_rel_type_id(sync->relid)));
	retl_append_key_match(&sql, sync, "t", "k.key");
	appendStringInfoChar(&sql, ')');
	return sql.data;
}

/*
 * A read line's row as JSON text in the request's memory, or NULL for no
 * row: written here from the columns rj describes (a table read by its
 * columns: read_sql), else the text of column col.
 */
static char *
line_data(RetlRequest *req, HeapTuple tup, TupleDesc desc, RetlRowJson *rj, int col,
		  StringInfo buf)
{
	MemoryContext old;
	char	   *data;

	if (rj != NULL)
	{
		resetStringInfo(buf);
		retl_row_json_append(buf, rj, tup, desc);
		return MemoryContextStrdup(req->cxt, buf->data);
	}
	old = MemoryContextSwitchTo(req->cxt);
	data = SPI_getvalue(tup, desc, col);
	MemoryContextSwitchTo(old);
	return data;
}

/* a batch read by ranges: at least this many keys, this many a run on average */
#define RANGE_MIN_KEYS		16
#define RANGE_KEYS_PER_RUN	4

/* a key of a batch read by ranges, with its record */
typedef struct RangeKey
{
	int64		value;
	int			record;
} RangeKey;

static int
range_key_cmp(const void *a, const void *b)
{
	int64		x = ((const RangeKey *) a)->value;
	int64		y = ((const RangeKey *) b)->value;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * Read an upsert batch's rows by ranges of its key (read_ranges_sql) when
 * the key is one integer column and the batch's keys are mostly runs of
 * consecutive values (rows written together: a bulk load, a backfill's
 * chunk): one walk of the index a run instead of one descent from its
 * root a key, which was half of the worker's read at batch_size 500.
 * Returns false, having read nothing, when they are not.
 */
static bool
read_by_ranges(ReadWork *w)
{
	RetlSync   *sync = w->sync;
	Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Datum		values[2];
	Oid			typid;
	RangeKey   *sorted;
	Datum	   *lo;
	Datum	   *hi;
	int			nruns = 0;
	bool		twice = false;
	TupleDesc	desc;
	RetlRowJson *rj = NULL;
	StringInfoData data;

	if (w->n < RANGE_MIN_KEYS || sync->nkeys != 1)
		return false;
	typid = get_atttype(sync->relid, sync->key_attnums[0]);
	if (typid != INT2OID && typid != INT4OID && typid != INT8OID)
		return false;
	sorted = palloc(sizeof(RangeKey) * w->n);
	for (int i = 0; i < w->n; i++)
	{
		if (!retl_stored_int_key((struct varlena *) DatumGetPointer(w->keys[w->from + i]),
								 &sorted[i].value))
		{
			pfree(sorted);
			return false;
		}
		sorted[i].record = w->from + i;
	}
	qsort(sorted, w->n, sizeof(RangeKey), range_key_cmp);
	lo = palloc(sizeof(Datum) * w->n);
	hi = palloc(sizeof(Datum) * w->n);
	for (int i = 0; i < w->n && !twice; i++)
	{
		/* one record a key: two equal values would be one key twice */
		twice = i > 0 && sorted[i].value == sorted[i - 1].value;
		if (i == 0 || sorted[i].value != sorted[i - 1].value + 1)
			lo[nruns++] = Int64GetDatum(sorted[i].value);
		hi[nruns - 1] = Int64GetDatum(sorted[i].value);
	}
	if (twice || nruns * RANGE_KEYS_PER_RUN > w->n)
	{
		pfree(sorted);
		pfree(lo);
		pfree(hi);
		return false;
	}

	values[0] = PointerGetDatum(construct_array(lo, nruns, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(hi, nruns, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	retl_owner_read(sync, retl_sync_statement(sync, RETL_SQL_READ_RANGES, read_ranges_sql),
					2, types, values, NULL);

	/* a key without a row is a delete */
	for (int i = 0; i < w->n; i++)
	{
		w->req->records[w->from + i].data = NULL;
		w->req->records[w->from + i].op = 'd';
	}
	desc = SPI_tuptable->tupdesc;
	/* the key, true and the row's columns (read_ranges_sql): written here */
	if (TupleDescAttr(desc, 1)->atttypid == BOOLOID)
		rj = retl_row_json_prepare(desc, 3);
	initStringInfo(&data);
	for (uint64 j = 0; j < SPI_processed; j++)
	{
		HeapTuple	tup = SPI_tuptable->vals[j];
		bool		isnull;
		RangeKey	key;
		RangeKey   *found;
		RetlRecord *r;

		key.value = DatumGetInt64(heap_getattr(tup, 1, desc, &isnull));
		found = bsearch(&key, sorted, w->n, sizeof(RangeKey), range_key_cmp);
		if (isnull || found == NULL)
			elog(ERROR, "retl: could not read the rows of sync \"%s\"", sync->name);
		r = &w->req->records[found->record];
		/*
		 * Its first row only, as read_sql's LIMIT 1: the key is unique
		 * unless its constraint was dropped after the sync was created.
		 */
		if (r->data != NULL)
			continue;
		r->data = line_data(w->req, tup, desc, rj, 2, &data);
		r->op = r->data ? 'u' : 'd';
	}
	pfree(data.data);
	if (rj != NULL)
		retl_row_json_free(rj);
	pfree(sorted);
	pfree(lo);
	pfree(hi);
	return true;
}

/*
 * Read the rows of an upsert request's records (keys: their queue keys) as
 * the sync's owner; a key without a row is a delete (op 'd', no data).
 */
static void
read_states(void *arg)
{
	ReadWork   *w = arg;
	Oid			types[1] = {JSONBARRAYOID};
	Datum		values[1];
	TupleDesc	desc;
	RetlRowJson *rj = NULL;
	StringInfoData data;

	values[0] = PointerGetDatum(construct_array(w->keys + w->from, w->n, JSONBOID, -1, false,
												TYPALIGN_INT));

	/*
	 * The table locked first: a change of its columns committed since the
	 * statement was written drops it (compiled.c) before it is used, as
	 * the statement of a table read by its columns names them (read_sql).
	 */
	if (!w->append)
	{
		LockRelationOid(w->sync->relid, AccessShareLock);
		if (read_by_ranges(w))
			return;
	}
	retl_owner_read(w->sync, w->append ?
					retl_sync_statement(w->sync, RETL_SQL_APPEND, append_sql) :
					retl_sync_statement(w->sync, RETL_SQL_READ, read_sql),
					1, types, values, NULL);
	if (SPI_processed != (uint64) w->n)
		elog(ERROR, "retl: could not read the rows of sync \"%s\"", w->sync->name);
	desc = SPI_tuptable->tupdesc;
	/* true and the row's columns (read_sql): written here */
	if (!w->append && TupleDescAttr(desc, 0)->atttypid == BOOLOID)
		rj = retl_row_json_prepare(desc, 2);
	initStringInfo(&data);
	for (int i = 0; i < w->n; i++)
	{
		RetlRecord *r = &w->req->records[w->from + i];
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;

		/* no row: its line's first column is null */
		(void) heap_getattr(tup, 1, desc, &isnull);
		r->data = isnull ? NULL : line_data(w->req, tup, desc, rj, 1, &data);
		if (!w->append)
			r->op = r->data ? 'u' : 'd';
	}
	pfree(data.data);
	if (rj != NULL)
		retl_row_json_free(rj);
}

/*
 * Is an error about one record's data (its row cannot become JSON: a json
 * value jsonb refuses, a value too large), rather than about the sync (its
 * owner may not read the table, ...)?  Such a record is dead-lettered alone.
 */
static bool
record_error(ErrorData *edata)
{
	int			category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);

	return category == ERRCODE_DATA_EXCEPTION || category == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

typedef struct CastWork
{
	RetlSync   *sync;
	Datum		key;
} CastWork;

static void
cast_key(void *arg)
{
	CastWork   *w = arg;
	Oid			types[1] = {JSONBOID};
	Datum		values[1] = {w->key};
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	retl_append_key_values(&sql, w->sync, "$1");
	if (retl_spi_execute(sql.data, 1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read a key of sync \"%s\"", w->sync->name);
}

/*
 * Do the key columns' types take the queued key now?  Logical capture
 * queues a change with its key as decoded, as a delete, when a key column
 * was retyped since it was written and the new type refused the key
 * (staged.c): no row can have that key, and the delete is sent.  (Only a
 * queued delete: another change whose key does not fit is dead-lettered,
 * as a row that cannot be read.)
 */
static bool
key_fits(RetlSync *sync, Datum key)
{
	CastWork	w = {sync, key};

	return !retl_failed_on_data(retl_in_subtransaction(cast_key, &w));
}

/*
 * Fill in the state of an upsert request's rows, read as the sync's owner.
 * A row that fails to read for its own data is marked unsent (the others
 * are then read one by one); any other failure fails the claim.  Records
 * whose row exists but is hidden from the owner by row-level security
 * leave the request and the queue, but for a key whose latest queued
 * change is a delete: the capture trigger queues one only for a row the
 * owner saw (visibility.c; unless it could not ask: README, Whose rows),
 * so the destination must lose the key whether a hidden row has it now
 * (an update moved the row out of the owner's view, or a hidden row was
 * inserted after the delete) or none does.  A key a TRUNCATE queued last is
 * read as an upsert's (a row may be there again, written with triggers
 * off), and sent as a delete when the row there is hidden: the TRUNCATE
 * queued only the keys the owner saw.
 */
void
retl_queue_read_rows(RetlSync *sync, RetlRequest *req, Datum *keys, bool append)
{
	Oid			types[1] = {JSONBARRAYOID};
	Datum		values[1];
	ReadWork	w = {sync, req, keys, 0, req->nrecords, append};
	ErrorData  *edata;
	bool		missing = false;
	bool	   *unasked = palloc0(sizeof(bool) * req->nrecords);
	int			dims[1] = {req->nrecords};
	int			lbs[1] = {1};
	int			kept = 0;
	int			nhidden = 0;
	RetlRecord *hidden;

	/* a queued delete is sent, hidden row or not: not asked about */
	for (int i = 0; i < req->nrecords; i++)
		unasked[i] = !append && req->records[i].op == 'd';
	edata = retl_in_subtransaction(read_states, &w);
	if (edata != NULL && !record_error(edata))
		ReThrowError(edata);
	for (int i = 0; edata != NULL && i < req->nrecords; i++)
	{
		ErrorData  *one = edata;

		if (req->nrecords > 1)
		{
			w.from = i;
			w.n = 1;
			one = retl_in_subtransaction(read_states, &w);
			if (one == NULL)
				continue;
			if (!record_error(one))
				ReThrowError(one);
		}
		req->records[i].data = NULL;
		if (!append && req->records[i].op == 'd' && !key_fits(sync, keys[i]))
		{
			/* a delete of a key no row can have */
			unasked[i] = true;
		}
		else
			req->records[i].unsent = MemoryContextStrdup(req->cxt, one->message);
		if (one != edata)
			FreeErrorData(one);
	}
	if (edata != NULL)
		FreeErrorData(edata);
	if (append)
		return;
	for (int i = 0; i < req->nrecords; i++)
	{
		/* only a row missing is asked about (not one whose key cannot be) */
		unasked[i] |= req->records[i].data != NULL || req->records[i].unsent != NULL;
		missing |= !unasked[i];
	}
	if (!missing || !retl_owner_rls(sync))
		return;

	/* missing for the owner: deleted, or there and hidden from it? */
	values[0] = PointerGetDatum(construct_md_array(keys, unasked, 1, dims, lbs, JSONBOID, -1,
												   false, TYPALIGN_INT));
	if (retl_spi_execute(retl_sync_statement(sync, RETL_SQL_HIDDEN, hidden_sql),
						 1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the rows of sync \"%s\"", sync->name);
	for (uint64 j = 0; j < SPI_processed; j++)
	{
		int			i = (int) strtol(SPI_getvalue(SPI_tuptable->vals[j], SPI_tuptable->tupdesc, 1),
									 NULL, 10) - 1;

		/* hidden; a TRUNCATE queued the key of a row the owner saw: deleted */
		if (req->records[i].data == NULL && req->records[i].unsent == NULL)
			req->records[i].op = req->records[i].truncated ? 'd' : 'h';
	}
	/* the records kept first, the hidden ones after them */
	hidden = palloc(sizeof(RetlRecord) * req->nrecords);
	for (int i = 0; i < req->nrecords; i++)
	{
		if (req->records[i].op == 'h')
			hidden[nhidden++] = req->records[i];
		else
			req->records[kept++] = req->records[i];
	}
	if (nhidden == 0)
		return;
	memcpy(&req->records[kept], hidden, sizeof(RetlRecord) * nhidden);
	req->nrecords = kept;
	retl_queue_delete_ids(sync->id, retl_queue_id_array(&req->records[kept], nhidden));
}

/*
 * Records that cannot be sent (unreadable, or larger than
 * retl.max_record_size) are dead-lettered alone and leave the request.
 */
void
retl_queue_drop_unsent(RetlRequest *req)
{
	int			kept = 0;

	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		size_t		size = strlen(r->key) + (r->data ? strlen(r->data) : 0);

		if (r->unsent == NULL && size > (size_t) retl_max_record_kb * 1024)
		{
			r->unsent = MemoryContextStrdup(req->cxt,
											psprintf("the record is %zu bytes, more than retl.max_record_size (%d kB)",
													 size, retl_max_record_kb));
			/* what was never sent is not kept either: replay requeues the change */
			r->data = NULL;
		}
		if (r->unsent != NULL)
			retl_queue_dead_letter_unsent(req, r);
		else
			req->records[kept++] = *r;
	}
	req->nrecords = kept;
}

/*
 * Build a claimed request with its destination's connector; records that
 * do not fit in max_batch_bytes are left out (req->nrecords lowered).  The
 * keys it carries are marked sent (sync/ids.c) in this transaction, which
 * commits before the request is sent.
 */
void
retl_queue_build(RetlRequest *req, RetlSync *sync)
{
	retl_connector(sync->kind)->build(req, sync);
	retl_ids_mark_sent(req, sync);
}

typedef struct ReadyWork
{
	RetlRequest *req;
	bool		ready;
} ReadyWork;

static void
ready_work(void *arg)
{
	ReadyWork  *w = arg;
	List	   *syncs = retl_sync_load(w->req->sync_id);
	RetlSync   *sync;

	if (syncs == NIL)
		return;					/* dropped: nothing is built */
	sync = linitial(syncs);
	w->ready = retl_sync_table_ready(sync);
}

/*
 * In the outcome transaction: may a part of a refused batch be built now?
 * Not while its sync's table is locked (by a drop of another sync of that
 * table, ALTER TABLE, LOCK TABLE): the worker never waits for it, and
 * tries again at a later pass.  A sync that cannot be read is ready: the
 * build finds out why.
 */
bool
retl_queue_rebuild_ready(RetlRequest *req)
{
	ReadyWork	w = {req, true};
	ErrorData  *edata = retl_in_subtransaction(ready_work, &w);

	if (edata != NULL)
	{
		FreeErrorData(edata);
		return true;
	}
	return w.ready;
}

typedef struct RebuildWork
{
	RetlRequest *req;
	bool		built;
} RebuildWork;

static void
rebuild_work(void *arg)
{
	RebuildWork *w = arg;
	List	   *syncs = retl_sync_load(w->req->sync_id);
	int			claimed = w->req->nrecords;

	if (syncs == NIL)
		return;					/* dropped: its rows went with it */
	retl_queue_build(w->req, (RetlSync *) linitial(syncs));

	/*
	 * A half is no larger than the batch it comes from, but the connector
	 * may leave records out (one it could not build, settings changed
	 * since): they are dead-lettered, let go or put back, as at a claim.
	 */
	if (w->req->nrecords < claimed)
		retl_queue_leave_out(w->req, claimed);
	/* (tests fail a build here, what it left out put back) */
	retl_test_fail_at("rebuild", ((RetlSync *) linitial(syncs))->name);
	w->built = w->req->nrecords > 0;
}

/*
 * In the outcome transaction: build a part of a batch that the destination
 * refused as a whole (retl_http_copy of its records).  False when it was
 * not built (its sync is gone, nothing of it was left to send, or
 * building failed: its records go back to the queue and the sync shows
 * why).
 */
bool
retl_queue_rebuild(RetlRequest *req)
{
	RebuildWork w = {req, false};
	ErrorData  *edata = retl_in_subtransaction(rebuild_work, &w);

	if (edata != NULL)
	{
		retl_queue_release(req, 0);
		retl_queue_sync_error(req->sync_id, edata->message);
		FreeErrorData(edata);
		return false;
	}
	return w.built;
}
