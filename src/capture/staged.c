/*
 * staged.c: the changes a round of logical capture decoded for one sync
 * (stream.c), queued as its capture trigger would queue them, in the
 * round's transaction.
 *
 * The keys are cast to the key columns' types as they are now, not as
 * they were when the change was written: a column retyped since may
 * refuse an old key ('abc' for an integer).  Such a change is queued with
 * its key as decoded, and everything else as usual (stage_part).  A
 * sync's changes go to the queue in parts of at most STAGE_PART_BYTES:
 * one transaction of over 1 GB would not fit in one array.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "base/plans.h"
#include "base/shmem.h"
#include "base/subxact.h"
#include "capture/staged.h"
#include "sync/keytext.h"
#include "sync/trust.h"

void
retl_staged_add(HTAB *changes, int sync_id, char op, const char *key, const char *row)
{
	SyncChanges *c;
	bool		found;

	c = hash_search(changes, &sync_id, HASH_ENTER, &found);
	if (!found)
	{
		c->n = 0;
		c->size = 64;
		c->ops = palloc(sizeof(char) * c->size);
		c->keys = palloc(sizeof(Datum) * c->size);
		c->rows = palloc(sizeof(Datum) * c->size);
		c->rownulls = palloc(sizeof(bool) * c->size);
	}
	else if (c->n == c->size)
	{
		/* (huge: a transaction's changes of one sync have no bound but memory) */
		c->size *= 2;
		c->ops = repalloc_huge(c->ops, sizeof(char) * c->size);
		c->keys = repalloc_huge(c->keys, sizeof(Datum) * c->size);
		c->rows = repalloc_huge(c->rows, sizeof(Datum) * c->size);
		c->rownulls = repalloc_huge(c->rownulls, sizeof(bool) * c->size);
	}
	c->ops[c->n] = op;
	c->keys[c->n] = CStringGetTextDatum(key);
	c->rownulls[c->n] = row == NULL;
	c->rows[c->n] = row ? CStringGetTextDatum(row) : (Datum) 0;
	c->n++;
}

/*
 * A part of a sync's changes staged at once: a bound on the bytes of its
 * arrays (one array of a transaction of over 1 GB exceeded what an array
 * may hold, and the round failed again and again).
 */
#define STAGE_PART_BYTES (64 * 1024 * 1024)

/* The statements staging a sync's changes ($1 the sync, $2-$4 arrays). */
typedef struct StageSql
{
	const char *typed;			/* INSERT, the keys cast to the key columns' types */
	const char *as_decoded;		/* INSERT, the keys as decoded */
	const char *check;			/* SELECT of the casts alone; NULL if none can fail */
} StageSql;

typedef struct StagePart
{
	SyncChanges *c;
	const char *sql;
	int			from;
	int			n;
	bool		as_decoded;		/* a state change a delete (see stage_part) */
	bool		check;			/* sql is the check, which writes nothing */
	MemoryContext cxt;			/* the part's arrays (stage_in_context) */
} StagePart;

/* Run p's statement over its changes (its arrays in p->cxt). */
static void
stage_rows(void *arg)
{
	StagePart  *p = arg;
	SyncChanges *c = p->c;
	Oid			types[4] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[4];
	int			dims[1] = {p->n};
	int			lbs[1] = {1};
	Datum	   *ops;
	MemoryContext old = MemoryContextSwitchTo(p->cxt);

	ops = palloc(sizeof(Datum) * p->n);
	for (int i = 0; i < p->n && !p->check; i++)
	{
		char		op[2] = {c->ops[p->from + i], '\0'};

		if (p->as_decoded && c->rownulls[p->from + i])
			op[0] = 'd';
		ops[i] = CStringGetTextDatum(op);
	}
	values[0] = Int32GetDatum(c->sync_id);
	values[2] = PointerGetDatum(construct_array(c->keys + p->from, p->n, TEXTOID, -1, false, TYPALIGN_INT));
	/* (the check reads the keys alone) */
	values[1] = p->check ? values[2] :
		PointerGetDatum(construct_array(ops, p->n, TEXTOID, -1, false, TYPALIGN_INT));
	values[3] = p->check ? values[2] :
		PointerGetDatum(construct_md_array(c->rows + p->from, c->rownulls + p->from, 1, dims, lbs,
										   TEXTOID, -1, false, TYPALIGN_INT));
	if (retl_spi_execute(p->sql, 4, types, values, NULL, p->check, 0) !=
		(p->check ? SPI_OK_SELECT : SPI_OK_INSERT))
		elog(ERROR, "retl: could not stage the changes of sync %d", c->sync_id);
	if (p->check)
		SPI_freetuptable(SPI_tuptable);
	MemoryContextSwitchTo(old);
}

/*
 * Run p's statement, in a subtransaction if checking, with its arrays in a
 * context of their own, freed after whatever the outcome (a part's copies
 * of its keys and rows: up to STAGE_PART_BYTES, at every halving level of
 * a part that fails again).  Returns the error of a check.
 */
static ErrorData *
stage_in_context(StagePart *p)
{
	ErrorData  *edata = NULL;

	p->cxt = AllocSetContextCreate(CurrentMemoryContext, "retl staged part",
								   ALLOCSET_DEFAULT_SIZES);
	if (p->check)
		edata = retl_in_subtransaction(stage_rows, p);
	else
		stage_rows(p);
	MemoryContextDelete(p->cxt);
	return edata;
}

/*
 * Do the key columns' types take every key of changes [from, from + n)?
 * Checked with a query that writes nothing, in a subtransaction, so that
 * it takes no transaction id (a subtransaction that writes takes one: one
 * a sync and round would overflow the 64 a backend's snapshots can list).
 */
static bool
keys_fit(SyncChanges *c, const StageSql *sql, int from, int n)
{
	StagePart	p = {c, sql->check, from, n, false, true, NULL};

	return sql->check == NULL || !retl_failed_on_data(stage_in_context(&p));
}

/*
 * Stage changes [from, from + n) with their keys cast to the key columns'
 * types now.  A key the type cannot take (the column retyped, text to
 * integer, after the change was written) fails the check: the part is
 * halved until that change is alone, which is queued with its key as
 * decoded; no row can have that key now, so a state sync's change of it
 * is queued as a delete (what reading the row would find; the claim sends
 * a delete whose key the columns cannot take: rows.c), an append sync's
 * keeps its row, sent as decoded (or dead-lettered at the claim when its
 * mapping computes fields: the row is read into the table's type then).
 */
static void
stage_part(SyncChanges *c, const StageSql *sql, int from, int n)
{
	StagePart	p = {c, sql->typed, from, n, false, false, NULL};

	if (keys_fit(c, sql, from, n))
	{
		(void) stage_in_context(&p);
		return;
	}
	if (n > 1)
	{
		stage_part(c, sql, from, n / 2);
		stage_part(c, sql, from + n / 2, n - n / 2);
		return;
	}
	p.sql = sql->as_decoded;
	p.as_decoded = true;
	(void) stage_in_context(&p);
}

/*
 * Queue the changes of one sync as its capture trigger would: the key as
 * jsonb_build_array of the key columns' values, typed as they are now.
 * False (nothing queued) when a key column is gone.
 */
bool
retl_staged_queue(SyncChanges *c, char **error)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(c->sync_id)};
	StringInfoData keys_sql;
	Oid			relid;
	ArrayType  *attnums;
	Datum	   *keys;
	int			nkeys;
	bool		may_fail = false;
	const char *rows_sql = "FROM ROWS FROM (pg_catalog.unnest($2),"
		" pg_catalog.unnest($3), pg_catalog.unnest($4))"
		" WITH ORDINALITY AS u(op, k, d, n) ORDER BY u.n";
	StageSql	sql;
	int			from = 0;
	Size		bytes = 0;

	/*
	 * Whatever the sync's capture is now: a change decoded while it was
	 * logical is queued even if it switched to trigger capture since.
	 */
	if (SPI_execute_with_args("SELECT s.source_relid, s.key_attnums FROM retl.syncs s"
							  " WHERE s.id = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read sync %d", c->sync_id);
	if (SPI_processed == 0)
		return true;			/* dropped meanwhile: nothing to queue */
	{
		bool		isnull;

		relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		attnums = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}
	deconstruct_array(attnums, INT2OID, 2, true, TYPALIGN_SHORT, &keys, NULL, &nkeys);

	initStringInfo(&keys_sql);
	appendStringInfoString(&keys_sql, "pg_catalog.jsonb_build_array(");
	for (int i = 0; i < nkeys; i++)
	{
		Oid			type = get_atttype(relid, DatumGetInt16(keys[i]));

		if (!OidIsValid(type))
		{
			*error = psprintf("key column %d of the source table was dropped",
							  DatumGetInt16(keys[i]));
			return false;
		}
		/*
		 * Cast to the base type (a domain's check would run a user's code
		 * as the worker); a type no superuser owns stays text, as the
		 * capture trigger queues it (trust.c).
		 */
		if (retl_key_type_trusted(type))
		{
			Oid			base = getBaseType(type);

			if (i > 0)
				appendStringInfoString(&keys_sql, ", ");
			retl_append_key_value(&keys_sql, base,
								  psprintf("(u.k::jsonb OPERATOR(pg_catalog.->>) %d)::%s",
										   i, format_type_be_qualified(base)));
			/* (any text is a text, a varchar without its length) */
			may_fail |= base != TEXTOID && base != VARCHAROID;
		}
		else
			appendStringInfo(&keys_sql, "%su.k::jsonb OPERATOR(pg_catalog.->>) %d",
							 i > 0 ? ", " : "", i);
	}
	appendStringInfoChar(&keys_sql, ')');
	sql.typed = psprintf("INSERT INTO retl.queue (sync_id, op, key, data)"
						 " SELECT $1, u.op::\"char\", %s, u.d::jsonb %s", keys_sql.data, rows_sql);
	sql.as_decoded = psprintf("INSERT INTO retl.queue (sync_id, op, key, data)"
							  " SELECT $1, u.op::\"char\", u.k::jsonb, u.d::jsonb %s", rows_sql);
	/* (in a WHERE clause, as the planner drops an output nobody reads) */
	sql.check = may_fail ? psprintf("SELECT pg_catalog.count(*) FROM pg_catalog.unnest($3) AS u(k)"
									" WHERE %s IS NOT NULL", keys_sql.data) : NULL;

	for (int i = 0; i < c->n; i++)
	{
		bytes += VARSIZE_ANY(DatumGetPointer(c->keys[i]));
		if (!c->rownulls[i])
			bytes += VARSIZE_ANY(DatumGetPointer(c->rows[i]));
		if (bytes >= STAGE_PART_BYTES || i == c->n - 1)
		{
			stage_part(c, &sql, from, i + 1 - from);
			from = i + 1;
			bytes = 0;
		}
	}
	retl_captured_at_commit(c->sync_id, c->n);
	return true;
}
