/*
 * rowhash.c: the hash a diff run keeps of each row (retl._row_hash).
 *
 * A run compares each row of a sync's query with the hash its snapshot
 * holds for the row's key.  Hashing the row's text output (record_out,
 * each type's output function) was the largest part of a run's time; this
 * hashes each value's stored bytes instead: a fixed-size value's bytes, a
 * variable-length value's data once decompressed.  Two values with equal
 * bytes have equal text, so no change is missed; a value whose bytes
 * differ but whose text does not (a rare case: another NaN's bits) is sent
 * again, as a change that changes nothing.  Unlike text, the bytes do not
 * depend on settings such as DateStyle or TimeZone.
 *
 * Each value is hashed with XXH3 (xxHash's 64-bit hash, whose output is
 * fixed since xxHash 0.8.0, used from its header alone): hashing a row
 * of short values takes half the time it took with PostgreSQL's
 * hash_bytes_extended, which was a sixth of a run's statement.  Changing
 * the hash changes every stored one: every row of every snapshot would be
 * sent again once.
 *
 * A composite value (a row within the row, or an array of them) is hashed
 * from its text: its bytes carry the identifier of an anonymous record
 * type, which is only the backend's own.
 *
 * retl._values_hash(VARIADIC "any") hashes its arguments as _row_hash
 * hashes a row of them, to the same value, without the row: a run passes
 * the mapped values (or the result's columns) one by one, and forming the
 * row only to take it apart again was a sixth of a run's statement.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/tupdesc.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "models/rowhash.h"

/* xxHash's functions, inlined here: nothing to link */
#define XXH_INLINE_ALL
#include <xxhash.h>

#if XXH_VERSION_NUMBER < 800
#error "retl needs xxHash 0.8.0 or later: XXH3's hashes were not fixed before"
#endif

typedef enum ValueKind
{
	VALUE_BYVAL,				/* in the Datum itself */
	VALUE_FIXED,				/* attlen bytes at the pointer */
	VALUE_VARLENA,				/* a varlena's data */
	VALUE_CSTRING,
	VALUE_TEXT					/* its output function's text */
} ValueKind;

/*
 * What a call keeps of the types it hashes (fn_extra): a row type's fields
 * (retl._row_hash), or its arguments (retl._values_hash).
 */
typedef struct HashTypes
{
	Oid			typid;			/* the row type, InvalidOid for arguments */
	int32		typmod;
	TupleDesc	desc;			/* the row type's, to take a row apart */
	int			n;				/* values */
	ValueKind  *kinds;
	int16	   *lens;
	FmgrInfo   *output;			/* for VALUE_TEXT */
	Datum	   *values;			/* the values of a call */
	bool	   *nulls;
} HashTypes;

/* Is a type a row, or an array or domain of rows? */
static bool
holds_rows(Oid type)
{
	Oid			elem;

	type = getBaseType(type);
	if (type == RECORDOID || type_is_rowtype(type))
		return true;
	elem = get_element_type(type);
	return OidIsValid(elem) && holds_rows(elem);
}

/* How a value of a type is hashed; *output is set up for VALUE_TEXT. */
static ValueKind
kind_of(Oid type, int16 typlen, bool typbyval, FmgrInfo *output)
{
	if (holds_rows(type))
	{
		Oid			func;
		bool		varlena;

		getTypeOutputInfo(type, &func, &varlena);
		fmgr_info_cxt(func, output, CurrentMemoryContext);
		return VALUE_TEXT;
	}
	if (typbyval)
		return VALUE_BYVAL;
	if (typlen > 0)
		return VALUE_FIXED;
	if (typlen == -1)
		return VALUE_VARLENA;
	return VALUE_CSTRING;
}

/* The hash of len bytes, for a value at position seed */
static inline uint64
bytes_hash(const void *data, Size len, uint64 seed)
{
	return (uint64) XXH3_64bits_withSeed(data, len, (XXH64_hash_t) seed);
}

/* The hash of the value at position i (NULL: a marker of the position). */
static uint64
value_hash(Datum v, bool isnull, ValueKind kind, int16 typlen, FmgrInfo *output, int i)
{
	uint64		vh;

	if (isnull)
		return UINT64CONST(0x9e3779b97f4a7c15) + i;
	switch (kind)
	{
		case VALUE_BYVAL:
			{
				int64		x = DatumGetInt64(v);

				switch (typlen)
				{
					case 1:
						/* (unsigned: the same on every platform) */
						x = (int64) (uint8) DatumGetChar(v);
						break;
					case 2:
						x = (int64) DatumGetInt16(v);
						break;
					case 4:
						x = (int64) DatumGetInt32(v);
						break;
				}
				vh = bytes_hash(&x, sizeof(x), i);
				break;
			}
		case VALUE_FIXED:
			vh = bytes_hash(DatumGetPointer(v), typlen, i);
			break;
		case VALUE_VARLENA:
			{
				struct varlena *p = PG_DETOAST_DATUM_PACKED(v);

				vh = bytes_hash(VARDATA_ANY(p), VARSIZE_ANY_EXHDR(p), i);
				if ((Pointer) p != DatumGetPointer(v))
					pfree(p);
				break;
			}
		case VALUE_CSTRING:
			vh = bytes_hash(DatumGetCString(v), strlen(DatumGetCString(v)), i);
			break;
		default:
			{
				char	   *text = OutputFunctionCall(output, v);

				vh = bytes_hash(text, strlen(text), i);
				pfree(text);
				break;
			}
	}
	return vh;
}

/* Where every hash starts */
#define HASH_SEED UINT64CONST(0x6a09e667f3bcc908)

/* Room for n values' types, in the call's memory (the current context) */
static HashTypes *
new_hash_types(int n)
{
	HashTypes  *t = palloc0(sizeof(HashTypes));

	t->n = n;
	t->kinds = palloc(sizeof(ValueKind) * Max(n, 1));
	t->lens = palloc(sizeof(int16) * Max(n, 1));
	t->output = palloc0(sizeof(FmgrInfo) * Max(n, 1));
	t->values = palloc(sizeof(Datum) * Max(n, 1));
	t->nulls = palloc(sizeof(bool) * Max(n, 1));
	return t;
}

static void
set_type(HashTypes *t, int i, Oid type, int16 len, bool byval)
{
	t->lens[i] = len;
	t->kinds[i] = kind_of(type, len, byval, &t->output[i]);
}

/* The hash of a call's values (t->values, t->nulls), each with its position */
static uint64
hash_values(HashTypes *t)
{
	uint64		h = HASH_SEED;

	for (int i = 0; i < t->n; i++)
		h = hash_combine64(h, value_hash(t->values[i], t->nulls[i], t->kinds[i],
										 t->lens[i], &t->output[i], i));
	return h;
}

static HashTypes *
row_hash_types(FunctionCallInfo fcinfo, Oid typid, int32 typmod)
{
	HashTypes  *t = (HashTypes *) fcinfo->flinfo->fn_extra;
	MemoryContext old;
	TupleDesc	desc;

	if (t != NULL && t->typid == typid && t->typmod == typmod)
		return t;
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	desc = lookup_rowtype_tupdesc(typid, typmod);
	t = new_hash_types(desc->natts);
	t->typid = typid;
	t->typmod = typmod;
	t->desc = CreateTupleDescCopy(desc);
	ReleaseTupleDesc(desc);
	for (int i = 0; i < t->n; i++)
	{
		Form_pg_attribute att = TupleDescAttr(t->desc, i);

		if (att->attisdropped)
		{
			/* deformed as NULL */
			t->lens[i] = att->attlen;
			t->kinds[i] = VALUE_BYVAL;
		}
		else
			set_type(t, i, att->atttypid, att->attlen, att->attbyval);
	}
	fcinfo->flinfo->fn_extra = t;
	MemoryContextSwitchTo(old);
	return t;
}

PG_FUNCTION_INFO_V1(retl_row_hash);

/*
 * retl._row_hash(record) → bigint: a 64-bit hash of a row's values, each
 * hashed with its position (see above).
 */
Datum
retl_row_hash(PG_FUNCTION_ARGS)
{
	HeapTupleHeader rec = PG_GETARG_HEAPTUPLEHEADER(0);
	HashTypes  *t = row_hash_types(fcinfo, HeapTupleHeaderGetTypeId(rec),
								   HeapTupleHeaderGetTypMod(rec));
	HeapTupleData tuple;

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	heap_deform_tuple(&tuple, t->desc, t->values, t->nulls);
	PG_RETURN_INT64((int64) hash_values(t));
}

/* The types of a call's arguments from first on, kept in fn_extra */
static HashTypes *
values_hash_types(FunctionCallInfo fcinfo, int first)
{
	HashTypes  *t = (HashTypes *) fcinfo->flinfo->fn_extra;
	MemoryContext old;

	if (t != NULL)
		return t;
	if (get_fn_expr_variadic(fcinfo->flinfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("retl.%s takes its values as arguments, not as a VARIADIC array",
						get_func_name(fcinfo->flinfo->fn_oid))));
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	t = new_hash_types(PG_NARGS() - first);
	for (int i = 0; i < t->n; i++)
	{
		Oid			type = get_fn_expr_argtype(fcinfo->flinfo, first + i);
		int16		len;
		bool		byval;

		if (!OidIsValid(type))
			elog(ERROR, "retl: could not determine the type of argument %d", first + i + 1);
		get_typlenbyval(type, &len, &byval);
		set_type(t, i, type, len, byval);
	}
	fcinfo->flinfo->fn_extra = t;
	MemoryContextSwitchTo(old);
	return t;
}

/*
 * The hash of a call's arguments from first on, as retl._row_hash hashes a
 * row of them (the call's fn_extra keeps their types).
 */
uint64
retl_hash_args(FunctionCallInfo fcinfo, int first)
{
	HashTypes  *t = values_hash_types(fcinfo, first);

	for (int i = 0; i < t->n; i++)
	{
		t->values[i] = PG_GETARG_DATUM(first + i);
		t->nulls[i] = PG_ARGISNULL(first + i);
	}
	return hash_values(t);
}

PG_FUNCTION_INFO_V1(retl_values_hash);

/*
 * retl._values_hash(VARIADIC "any") → bigint: retl._row_hash(ROW(...)) of
 * its arguments, computed from them.
 */
Datum
retl_values_hash(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) retl_hash_args(fcinfo, 0));
}
