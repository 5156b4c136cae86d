/*
 * rowjson.c: a source row as to_jsonb(row)::text writes it, without the
 * jsonb.
 *
 * An upsert record carries its row's state, read as the sync's owner
 * (rows.c).  Written by the executor as to_jsonb(t.*)::text, the row is
 * first built as a jsonb (each value converted, the keys sorted, the
 * binary form laid out) and then printed: with batch_size 500 that was a
 * quarter of reading the rows.  For a table whose columns are all of the
 * plain types below (no mapping), the read returns the columns themselves
 * and this writes the text jsonb would: keys shorter first, then
 * bytewise; ", " and ": " between; integers and numerics as numbers
 * (NaN and the infinities as strings), booleans, strings escaped as JSON,
 * dates and timestamps as to_jsonb writes them (ISO 8601, in the session's
 * time zone), domains as their base types, NULL as null.  Any other type
 * (floats, which jsonb writes as numerics; json; arrays; composites) leaves
 * the table to to_jsonb.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "queue/rowjson.h"

/* how a column's value is written */
typedef enum ValueKind
{
	KIND_NUMBER,				/* integers and numerics: a number, or a
								 * string if not finite */
	KIND_BOOL,
	KIND_STRING,				/* the output function's text, escaped */
	KIND_DATETIME				/* JsonEncodeDateTime, escaped */
} ValueKind;

typedef struct Column
{
	int			attno;			/* in the statement's result, 1-based */
	char	   *key;			/* "name": as written */
	int			keylen;			/* of the name, for the order */
	char	   *name;
	ValueKind	kind;
	Oid			base;			/* the base type (domains) */
	FmgrInfo	out;
} Column;

struct RetlRowJson
{
	int			ncols;
	Column	   *cols;			/* in jsonb's key order */
};

/* The way a value of this type is written; false: not one of these. */
static bool
kind_of(Oid type, ValueKind *kind, Oid *base)
{
	*base = getBaseType(type);
	switch (*base)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case NUMERICOID:
			*kind = KIND_NUMBER;
			return true;
		case BOOLOID:
			*kind = KIND_BOOL;
			return true;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case NAMEOID:
		case UUIDOID:
			*kind = KIND_STRING;
			return true;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			*kind = KIND_DATETIME;
			return true;
		default:
			return false;
	}
}

/* Are all of the table's columns of types this writes? */
bool
retl_row_json_plain(Oid relid)
{
	Relation	rel = RelationIdGetRelation(relid);
	TupleDesc	desc;
	bool		plain = true;

	if (!RelationIsValid(rel))
		return false;
	desc = RelationGetDescr(rel);
	for (int i = 0; i < desc->natts && plain; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		ValueKind	kind;
		Oid			base;

		if (!att->attisdropped)
			plain = kind_of(att->atttypid, &kind, &base);
	}
	RelationClose(rel);
	return plain;
}

/* jsonb's order of object keys: shorter first, then bytewise */
static int
column_cmp(const void *a, const void *b)
{
	const Column *x = a;
	const Column *y = b;

	if (x->keylen != y->keylen)
		return x->keylen < y->keylen ? -1 : 1;
	return memcmp(x->name, y->name, x->keylen);
}

/*
 * How to write rows of a result whose columns from first (1-based) on are
 * a row's, named as its columns; error if one is of a type not written
 * here (the table changed under the statement: the next claim reads it
 * again).
 */
RetlRowJson *
retl_row_json_prepare(TupleDesc desc, int first)
{
	RetlRowJson *rj = palloc(sizeof(RetlRowJson));
	StringInfoData key;

	rj->ncols = desc->natts - first + 1;
	rj->cols = palloc(sizeof(Column) * Max(rj->ncols, 1));
	initStringInfo(&key);
	for (int i = 0; i < rj->ncols; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, first - 1 + i);
		Column	   *c = &rj->cols[i];
		Oid			outfunc;
		bool		varlena;

		if (!kind_of(att->atttypid, &c->kind, &c->base))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("column \"%s\" is of type %s, which retl writes with to_jsonb",
							NameStr(att->attname), format_type_be(att->atttypid)),
					 errdetail("The table changed while its rows were read; they are read again.")));
		c->attno = first + i;
		c->name = pstrdup(NameStr(att->attname));
		c->keylen = strlen(c->name);
		resetStringInfo(&key);
		escape_json(&key, c->name);
		appendStringInfoString(&key, ": ");
		c->key = pstrdup(key.data);
		getTypeOutputInfo(c->base, &outfunc, &varlena);
		fmgr_info(outfunc, &c->out);
	}
	qsort(rj->cols, rj->ncols, sizeof(Column), column_cmp);
	pfree(key.data);
	return rj;
}

/* Append the row of tup (a result line of desc) as to_jsonb(row)::text does. */
void
retl_row_json_append(StringInfo out, RetlRowJson *rj, HeapTuple tup, TupleDesc desc)
{
	appendStringInfoChar(out, '{');
	for (int i = 0; i < rj->ncols; i++)
	{
		Column	   *c = &rj->cols[i];
		bool		isnull;
		Datum		value = heap_getattr(tup, c->attno, desc, &isnull);
		char	   *text;

		if (i > 0)
			appendStringInfoString(out, ", ");
		appendStringInfoString(out, c->key);
		if (isnull)
		{
			appendStringInfoString(out, "null");
			continue;
		}
		if (c->kind == KIND_BOOL)
		{
			appendStringInfoString(out, DatumGetBool(value) ? "true" : "false");
			continue;
		}
		text = c->kind == KIND_DATETIME ?
			JsonEncodeDateTime(NULL, value, c->base, NULL) :
			OutputFunctionCall(&c->out, value);
		/* NaN, Infinity: not JSON numbers, so jsonb keeps strings */
		if (c->kind == KIND_NUMBER && strpbrk(text, "Nn") == NULL)
			appendStringInfoString(out, text);
		else
			escape_json(out, text);
		pfree(text);
	}
	appendStringInfoChar(out, '}');
}

/* Free what retl_row_json_prepare allocated. */
void
retl_row_json_free(RetlRowJson *rj)
{
	for (int i = 0; i < rj->ncols; i++)
	{
		pfree(rj->cols[i].name);
		pfree(rj->cols[i].key);
	}
	pfree(rj->cols);
	pfree(rj);
}
