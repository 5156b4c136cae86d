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
 * A composite value (a row within the row, or an array of them) is hashed
 * from its text: its bytes carry the identifier of an anonymous record
 * type, which is only the backend's own.
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

typedef enum ValueKind
{
	VALUE_BYVAL,				/* in the Datum itself */
	VALUE_FIXED,				/* attlen bytes at the pointer */
	VALUE_VARLENA,				/* a varlena's data */
	VALUE_CSTRING,
	VALUE_TEXT					/* its output function's text */
} ValueKind;

/* What a call keeps of a row type (fn_extra) */
typedef struct RowHashType
{
	Oid			typid;
	int32		typmod;
	TupleDesc	desc;
	ValueKind  *kinds;
	FmgrInfo   *output;			/* for VALUE_TEXT */
	Datum	   *values;
	bool	   *nulls;
} RowHashType;

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

static RowHashType *
row_hash_type(FunctionCallInfo fcinfo, Oid typid, int32 typmod)
{
	RowHashType *t = (RowHashType *) fcinfo->flinfo->fn_extra;
	MemoryContext old;
	TupleDesc	desc;

	if (t != NULL && t->typid == typid && t->typmod == typmod)
		return t;
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	t = palloc0(sizeof(RowHashType));
	t->typid = typid;
	t->typmod = typmod;
	desc = lookup_rowtype_tupdesc(typid, typmod);
	t->desc = CreateTupleDescCopy(desc);
	ReleaseTupleDesc(desc);
	t->kinds = palloc(sizeof(ValueKind) * t->desc->natts);
	t->output = palloc0(sizeof(FmgrInfo) * t->desc->natts);
	t->values = palloc(sizeof(Datum) * t->desc->natts);
	t->nulls = palloc(sizeof(bool) * t->desc->natts);
	for (int i = 0; i < t->desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(t->desc, i);

		if (att->attisdropped)
			t->kinds[i] = VALUE_BYVAL;	/* deformed as NULL */
		else if (holds_rows(att->atttypid))
		{
			Oid			func;
			bool		varlena;

			getTypeOutputInfo(att->atttypid, &func, &varlena);
			fmgr_info(func, &t->output[i]);
			t->kinds[i] = VALUE_TEXT;
		}
		else if (att->attbyval)
			t->kinds[i] = VALUE_BYVAL;
		else if (att->attlen > 0)
			t->kinds[i] = VALUE_FIXED;
		else if (att->attlen == -1)
			t->kinds[i] = VALUE_VARLENA;
		else
			t->kinds[i] = VALUE_CSTRING;
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
	RowHashType *t = row_hash_type(fcinfo, HeapTupleHeaderGetTypeId(rec),
								   HeapTupleHeaderGetTypMod(rec));
	HeapTupleData tuple;
	uint64		h = UINT64CONST(0x6a09e667f3bcc908);

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	heap_deform_tuple(&tuple, t->desc, t->values, t->nulls);

	for (int i = 0; i < t->desc->natts; i++)
	{
		Datum		v = t->values[i];
		uint64		vh;

		if (t->nulls[i])
			vh = UINT64CONST(0x9e3779b97f4a7c15) + i;
		else
		{
			switch (t->kinds[i])
			{
				case VALUE_BYVAL:
					{
						int64		x = DatumGetInt64(v);

						switch (TupleDescAttr(t->desc, i)->attlen)
						{
							case 1:
								x = (int64) DatumGetChar(v);
								break;
							case 2:
								x = (int64) DatumGetInt16(v);
								break;
							case 4:
								x = (int64) DatumGetInt32(v);
								break;
						}
						vh = hash_bytes_extended((const unsigned char *) &x, sizeof(x), i);
						break;
					}
				case VALUE_FIXED:
					vh = hash_bytes_extended((const unsigned char *) DatumGetPointer(v),
											 TupleDescAttr(t->desc, i)->attlen, i);
					break;
				case VALUE_VARLENA:
					{
						struct varlena *p = PG_DETOAST_DATUM_PACKED(v);

						vh = hash_bytes_extended((const unsigned char *) VARDATA_ANY(p),
												 VARSIZE_ANY_EXHDR(p), i);
						if ((Pointer) p != DatumGetPointer(v))
							pfree(p);
						break;
					}
				case VALUE_CSTRING:
					vh = hash_bytes_extended((const unsigned char *) DatumGetCString(v),
											 strlen(DatumGetCString(v)), i);
					break;
				default:
					{
						char	   *text = OutputFunctionCall(&t->output[i], v);

						vh = hash_bytes_extended((const unsigned char *) text, strlen(text), i);
						pfree(text);
						break;
					}
			}
		}
		h = hash_combine64(h, vh);
	}
	PG_RETURN_INT64((int64) h);
}
