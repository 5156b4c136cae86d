/*
 * queue_insert.c: a captured change written into retl.queue without the
 * executor.
 *
 * The capture trigger runs in the writer's transaction, once per changed
 * row.  Through SPI, its INSERT of one queue row was most of what a sync
 * adds to a writer's INSERT (bench (d): 23 us without a sync, 48-64 with
 * one): SPI's connection, the plan cache's checks, the executor's start
 * and end around a heap insert and two index inserts.  Here the row is
 * formed and inserted directly, as PostgreSQL's own catalog writes do
 * (CatalogTupleInsert): the sequence's next id, the transaction's start
 * time, the columns' defaults, one heap insert, one insert into each
 * index.  pgbench's single-row INSERTs into a table of a paused sync, two
 * clients, alternating: 64-80 us an INSERT through SPI, 45-65 here.
 *
 * That is only right while retl.queue is what this file knows: owned by
 * the trigger's user (the extension's owner: no privilege or row security
 * to check), its columns of the expected types and defaults (others
 * nullable, without a default), no CHECK constraint, no trigger, no rule,
 * no forced row security, and B-tree indexes on plain columns only (no
 * expression but the key's hash, no predicate, no exclusion, no deferred
 * uniqueness; a B-tree keeps nothing
 * of its own in the IndexInfo kept here, where GIN, GiST and BRIN keep
 * pointers into the index's relcache entry).  The
 * table's shape is checked once per backend and again after any
 * invalidation of the table; a table that differs (a DBA's index on an
 * expression of it, say) is written through SPI as before:
 * retl_queue_insert returns false and the caller does.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "rewrite/rewriteHandler.h"
#include "storage/sinval.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "capture/queue_insert.h"

/* The columns this file fills; any other must be nullable, without a default */
enum
{
	COL_ID,
	COL_SYNC_ID,
	COL_OP,
	COL_KEY,
	COL_DATA,
	COL_CAPTURED_AT,
	COL_IN_FLIGHT,
	COL_ATTEMPTS,
	COL_NEXT_ATTEMPT_AT,
	NCOLS
};

static const struct
{
	const char *name;
	Oid			type;
	bool		has_default;	/* id's is the sequence's, the others constants */
}			columns[NCOLS] =
{
	{"id", INT8OID, true},
	{"sync_id", INT4OID, false},
	{"op", CHAROID, false},
	{"key", JSONBOID, false},
	{"data", JSONBOID, false},
	{"captured_at", TIMESTAMPTZOID, true},
	{"in_flight", BOOLOID, true},
	{"attempts", INT4OID, true},
	{"next_attempt_at", TIMESTAMPTZOID, true},
};

/* What a backend knows of retl.queue, until its next invalidation */
typedef struct QueueShape
{
	bool		checked;
	bool		direct;			/* may be written here */
	Oid			relid;
	Oid			seqid;			/* of id's default */
	int			natts;
	AttrNumber	attnum[NCOLS];
	int			nindexes;
	Oid		   *indexids;
	IndexInfo **indexinfos;
} QueueShape;

static QueueShape shape;
static MemoryContext shape_cxt = NULL;
static bool callback_registered = false;
static uint64 invalidations = 0;	/* of retl.queue, seen by forget_shape */

/*
 * An invalidation of retl.queue (or of every relation): checked again at
 * the next insert.  Its memory is kept until then: an insert in progress
 * may be reading it (an invalidation arrives whenever a lock is taken).
 */
static void
forget_shape(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == shape.relid)
	{
		shape.checked = false;
		invalidations++;
	}
}

/*
 * Is a column's default a call of funcid without arguments, or (funcid
 * InvalidOid) the constant value of a type passed by value?
 */
static bool
default_is(Relation rel, AttrNumber attnum, Oid funcid, Datum value)
{
	Node	   *expr = build_column_default(rel, attnum);

	if (expr == NULL)
		return false;
	if (OidIsValid(funcid))
		return IsA(expr, FuncExpr) && ((FuncExpr *) expr)->funcid == funcid &&
			((FuncExpr *) expr)->args == NIL;
	return IsA(expr, Const) && !((Const *) expr)->constisnull &&
		((Const *) expr)->constbyval && ((Const *) expr)->constvalue == value;
}

/* The sequence of a default nextval('seq'::regclass), else InvalidOid */
static Oid
default_sequence(Relation rel, AttrNumber attnum)
{
	Node	   *expr = build_column_default(rel, attnum);
	FuncExpr   *f;
	Const	   *c;

	if (expr == NULL || !IsA(expr, FuncExpr))
		return InvalidOid;
	f = (FuncExpr *) expr;
	if (f->funcid != F_NEXTVAL || list_length(f->args) != 1 || !IsA(linitial(f->args), Const))
		return InvalidOid;
	c = (Const *) linitial(f->args);
	if (c->consttype != REGCLASSOID || c->constisnull)
		return InvalidOid;
	return DatumGetObjectId(c->constvalue);
}

/*
 * Is an index expression the key's hash, jsonb_hash_extended(key, 0)?  A
 * database created by an earlier build of 0.2 has such an index,
 * queue_sync_key_hash_idx (dropped since from the install script: its
 * inserts were half of what the capture cost a writer; nothing reads it
 * now), and its writers keep this path with it.
 */
static bool
is_key_hash(Node *expr)
{
	FuncExpr   *f = (FuncExpr *) expr;
	Var		   *var;
	Const	   *seed;

	if (!IsA(expr, FuncExpr) || f->funcid != F_JSONB_HASH_EXTENDED || list_length(f->args) != 2 ||
		!IsA(linitial(f->args), Var) || !IsA(lsecond(f->args), Const))
		return false;
	var = (Var *) linitial(f->args);
	seed = (Const *) lsecond(f->args);
	return var->varattno == shape.attnum[COL_KEY] && var->varlevelsup == 0 &&
		seed->consttype == INT8OID && !seed->constisnull && DatumGetInt64(seed->constvalue) == 0;
}

/* Are an index's expressions, if any, only the key's hash? */
static bool
key_hash_only(IndexInfo *info)
{
	ListCell   *lc;

	foreach(lc, info->ii_Expressions)
		if (!is_key_hash((Node *) lfirst(lc)))
			return false;
	return true;
}

/*
 * Is retl.queue (rel) as this file writes it?  Fills shape; its index
 * information is kept in shape_cxt.
 */
static bool
check_shape(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *indexes;
	ListCell   *lc;
	int			i = 0;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->trigdesc != NULL ||
		rel->rd_rules != NULL || rel->rd_rel->relforcerowsecurity ||
		(desc->constr != NULL && desc->constr->num_check > 0))
		return false;
	for (int c = 0; c < NCOLS; c++)
		shape.attnum[c] = InvalidAttrNumber;
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);
		int			c;

		if (att->attisdropped)
			continue;
		for (c = 0; c < NCOLS; c++)
			if (strcmp(NameStr(att->attname), columns[c].name) == 0)
				break;
		if (c == NCOLS)
		{
			/* a column this file does not know: left NULL */
			if (att->attnotnull || att->atthasdef || att->attgenerated || att->attidentity)
				return false;
			continue;
		}
		if (att->atttypid != columns[c].type || att->atthasdef != columns[c].has_default ||
			att->attgenerated || att->attidentity)
			return false;
		shape.attnum[c] = att->attnum;
	}
	for (int c = 0; c < NCOLS; c++)
		if (shape.attnum[c] == InvalidAttrNumber)
			return false;
	/* the defaults this file writes in their stead */
	shape.seqid = default_sequence(rel, shape.attnum[COL_ID]);
	if (!OidIsValid(shape.seqid) ||
		!default_is(rel, shape.attnum[COL_CAPTURED_AT], F_NOW, (Datum) 0) ||
		!default_is(rel, shape.attnum[COL_IN_FLIGHT], InvalidOid, BoolGetDatum(false)) ||
		!default_is(rel, shape.attnum[COL_ATTEMPTS], InvalidOid, Int32GetDatum(0)) ||
		!default_is(rel, shape.attnum[COL_NEXT_ATTEMPT_AT], InvalidOid, TimestampTzGetDatum(DT_NOBEGIN)))
		return false;
	shape.natts = desc->natts;

	indexes = RelationGetIndexList(rel);
	shape.nindexes = list_length(indexes);
	shape.indexids = MemoryContextAlloc(shape_cxt, sizeof(Oid) * Max(shape.nindexes, 1));
	shape.indexinfos = MemoryContextAlloc(shape_cxt, sizeof(IndexInfo *) * Max(shape.nindexes, 1));
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		MemoryContext old = MemoryContextSwitchTo(shape_cxt);
		IndexInfo  *info = BuildIndexInfo(index);
		bool		plain = index->rd_rel->relam == BTREE_AM_OID &&
			info->ii_Predicate == NIL && info->ii_ExclusionOps == NULL &&
			index->rd_index->indimmediate && key_hash_only(info);

		MemoryContextSwitchTo(old);
		index_close(index, AccessShareLock);
		if (!plain)
		{
			list_free(indexes);
			return false;
		}
		shape.indexids[i] = lfirst_oid(lc);
		shape.indexinfos[i] = info;
		i++;
	}
	list_free(indexes);
	return true;
}

/*
 * retl.queue, locked (RowExclusiveLock), if it is as this file writes it
 * and as_user owns it, or is a superuser if superuser_ok (no privilege or
 * row security to check); else NULL, nothing kept open.
 */
static Relation
open_queue(Oid as_user, bool superuser_ok)
{
	Oid			relid;
	Relation	rel;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_shape, (Datum) 0);
		shape_cxt = AllocSetContextCreate(TopMemoryContext, "retl queue shape", ALLOCSET_SMALL_SIZES);
		callback_registered = true;
	}
	/*
	 * The table this backend knows, locked; if it was invalidated meanwhile
	 * (dropped, renamed, altered), the table of that name, looked up and
	 * locked again until no invalidation came in between (as
	 * RangeVarGetRelid does).
	 */
	relid = shape.checked ? shape.relid : InvalidOid;
	rel = OidIsValid(relid) ? try_relation_open(relid, RowExclusiveLock) : NULL;
	while (rel == NULL || !shape.checked)
	{
		uint64		counter = SharedInvalidMessageCounter;
		Oid			named = get_relname_relid("queue", get_namespace_oid("retl", true));

		if (rel != NULL && named == relid)
			break;
		if (rel != NULL)
			table_close(rel, RowExclusiveLock);
		if (!OidIsValid(named))
			return NULL;
		relid = named;
		rel = table_open(relid, RowExclusiveLock);
		if (counter == SharedInvalidMessageCounter)
			break;
	}
	/*
	 * Its shape, checked again after an invalidation; checked only once a
	 * check ran to its end with no invalidation during it (an error in it,
	 * a lock wait cancelled, leaves it unchecked and not direct).
	 */
	while (!shape.checked || shape.relid != relid)
	{
		uint64		seen;
		bool		direct;

		MemoryContextReset(shape_cxt);
		shape.checked = false;
		shape.direct = false;
		shape.relid = relid;
		seen = invalidations;
		direct = check_shape(rel);
		if (invalidations == seen)
		{
			shape.direct = direct;
			shape.checked = true;
		}
	}
	if (!shape.direct || RelationGetDescr(rel)->natts != shape.natts ||
		(rel->rd_rel->relowner != as_user && !(superuser_ok && superuser_arg(as_user))))
	{
		table_close(rel, NoLock);
		return NULL;
	}
	return rel;
}

/*
 * A row's values (natts columns, those this file fills at attnum), its
 * columns but for id and what the caller sets.
 */
static void
row_values(Datum *values, bool *nulls, int natts, const AttrNumber *attnum,
		   int sync_id, char op, Jsonb *key)
{
	for (int a = 0; a < natts; a++)
	{
		values[a] = (Datum) 0;
		nulls[a] = true;
	}
#define SET(c, v) (values[attnum[c] - 1] = (v), nulls[attnum[c] - 1] = false)
	SET(COL_SYNC_ID, Int32GetDatum(sync_id));
	SET(COL_OP, CharGetDatum(op));
	SET(COL_KEY, JsonbPGetDatum(key));
	SET(COL_CAPTURED_AT, TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()));
	SET(COL_IN_FLIGHT, BoolGetDatum(false));
	SET(COL_ATTEMPTS, Int32GetDatum(0));
	SET(COL_NEXT_ATTEMPT_AT, TimestampTzGetDatum(DT_NOBEGIN));
#undef SET
}

/*
 * Insert the row of values into rel and an entry into each of its indexes
 * (infos[i] of index indexes[i]; opened[i] the index if open, else opened
 * here: opened NULL); the key is column key_attnum.
 */
static void
insert_row(Relation rel, int nindexes, const Oid *indexes, Relation *opened, IndexInfo **infos,
		   AttrNumber key_attnum, Datum *values, bool *nulls, CommandId cid,
		   BulkInsertState bistate)
{
	HeapTuple	tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	Datum		key_hash = (Datum) 0;
	bool		hashed = false;

	heap_insert(rel, tup, cid, 0, bistate);
	for (int i = 0; i < nindexes; i++)
	{
		IndexInfo  *info = infos[i];
		Relation	index;
		Datum		ivalues[INDEX_MAX_KEYS];
		bool		inulls[INDEX_MAX_KEYS];

		index = opened != NULL ? opened[i] : index_open(indexes[i], RowExclusiveLock);
		/* an index being built concurrently takes no insert yet */
		if (index->rd_index->indisready)
		{
			for (int k = 0; k < info->ii_NumIndexAttrs; k++)
			{
				AttrNumber	attnum = info->ii_IndexAttrNumbers[k];

				if (attnum == 0)
				{
					/* an expression: the key's hash (key_hash_only) */
					if (!hashed)
					{
						key_hash = DirectFunctionCall2(jsonb_hash_extended,
													   values[key_attnum - 1],
													   Int64GetDatum(0));
						hashed = true;
					}
					ivalues[k] = key_hash;
					inulls[k] = false;
				}
				else
				{
					ivalues[k] = values[attnum - 1];
					inulls[k] = nulls[attnum - 1];
				}
			}
			(void) index_insert(index, ivalues, inulls, &tup->t_self, rel,
								index->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
								false, info);
		}
		if (opened == NULL)
			index_close(index, NoLock);
	}
	heap_freetuple(tup);
}

/*
 * Insert a change of an upsert sync (op, its key; no data) into
 * retl.queue, in the current transaction, as the table's owner would;
 * false (nothing done) if the table is not as this file writes it.
 */
bool
retl_queue_insert(int sync_id, char op, Jsonb *key)
{
	Relation	rel = open_queue(GetUserId(), false);
	Datum	   *values;
	bool	   *nulls;

	if (rel == NULL)
		return false;
	values = palloc(sizeof(Datum) * shape.natts);
	nulls = palloc(sizeof(bool) * shape.natts);
	row_values(values, nulls, shape.natts, shape.attnum, sync_id, op, key);
	values[shape.attnum[COL_ID] - 1] = Int64GetDatum(nextval_internal(shape.seqid, false));
	nulls[shape.attnum[COL_ID] - 1] = false;
	insert_row(rel, shape.nindexes, shape.indexids, NULL, shape.indexinfos, shape.attnum[COL_KEY],
			   values, nulls, GetCurrentCommandId(true), NULL);
	table_close(rel, NoLock);
	pfree(values);
	pfree(nulls);
	return true;
}

/*
 * A writer of many rows into retl.queue, with ids taken beforehand: a
 * diff run's changes, written as its statement returns them, when that
 * statement may run in parallel (where nextval() is refused).  It keeps
 * what it needs of the table's shape in its own memory: a capture in the
 * same transaction may check the shape again meanwhile.
 */
struct RetlQueueWriter
{
	MemoryContext cxt;
	MemoryContext row_cxt;		/* a row's, reset after it */
	Relation	rel;
	int			natts;
	AttrNumber	attnum[NCOLS];
	int			nindexes;
	Oid		   *indexids;
	Relation   *indexes;		/* open */
	IndexInfo **indexinfos;
	Oid			seqid;
	Datum	   *values;
	bool	   *nulls;
	CommandId	cid;
	BulkInsertState bistate;
};

/*
 * A writer into retl.queue as as_user (who must own it or be a superuser),
 * or NULL if the table is not as this file writes it (the caller then
 * inserts through SQL).  In the current memory context; closed by
 * retl_queue_writer_close.
 */
RetlQueueWriter *
retl_queue_writer_open(Oid as_user)
{
	Relation	rel = open_queue(as_user, true);
	RetlQueueWriter *w;
	MemoryContext old;

	if (rel == NULL)
		return NULL;
	w = palloc0(sizeof(RetlQueueWriter));
	w->cxt = AllocSetContextCreate(CurrentMemoryContext, "retl queue writer", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(w->cxt);
	w->rel = rel;
	w->natts = shape.natts;
	memcpy(w->attnum, shape.attnum, sizeof(w->attnum));
	w->seqid = shape.seqid;
	w->nindexes = shape.nindexes;
	w->indexids = palloc(sizeof(Oid) * Max(w->nindexes, 1));
	w->indexes = palloc(sizeof(Relation) * Max(w->nindexes, 1));
	w->indexinfos = palloc(sizeof(IndexInfo *) * Max(w->nindexes, 1));
	for (int i = 0; i < w->nindexes; i++)
	{
		w->indexids[i] = shape.indexids[i];
		w->indexes[i] = index_open(w->indexids[i], RowExclusiveLock);
		w->indexinfos[i] = BuildIndexInfo(w->indexes[i]);
	}
	w->values = palloc(sizeof(Datum) * w->natts);
	w->nulls = palloc(sizeof(bool) * w->natts);
	w->cid = GetCurrentCommandId(true);
	w->bistate = GetBulkInsertState();
	w->row_cxt = AllocSetContextCreate(w->cxt, "retl queue writer row", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(old);
	return w;
}

/* n ids of retl.queue's sequence, for rows to write (not in parallel mode) */
void
retl_queue_writer_ids(RetlQueueWriter *w, int64 *ids, int n)
{
	for (int i = 0; i < n; i++)
		ids[i] = nextval_internal(w->seqid, false);
}

/* Write a row: its id (of retl_queue_writer_ids), sync, op, key and data */
void
retl_queue_writer_put(RetlQueueWriter *w, int64 id, int sync_id, char op, Jsonb *key, Jsonb *data)
{
	MemoryContext old = MemoryContextSwitchTo(w->row_cxt);

	row_values(w->values, w->nulls, w->natts, w->attnum, sync_id, op, key);
	w->values[w->attnum[COL_ID] - 1] = Int64GetDatum(id);
	w->nulls[w->attnum[COL_ID] - 1] = false;
	if (data != NULL)
	{
		w->values[w->attnum[COL_DATA] - 1] = JsonbPGetDatum(data);
		w->nulls[w->attnum[COL_DATA] - 1] = false;
	}
	insert_row(w->rel, w->nindexes, w->indexids, w->indexes, w->indexinfos, w->attnum[COL_KEY],
			   w->values, w->nulls, w->cid, w->bistate);
	MemoryContextSwitchTo(old);
	MemoryContextReset(w->row_cxt);
}

void
retl_queue_writer_close(RetlQueueWriter *w)
{
	FreeBulkInsertState(w->bistate);
	for (int i = 0; i < w->nindexes; i++)
		index_close(w->indexes[i], NoLock);
	table_close(w->rel, NoLock);
	MemoryContextDelete(w->cxt);
	pfree(w);
}
