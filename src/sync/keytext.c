/*
 * keytext.c: a key's values as retl queues them, the same text whatever
 * the session that builds it.
 *
 * A key is jsonb_build_array of the key columns' values, and its text is
 * what tells keys apart: in the queue (coalescing), in the marks and ids
 * kept for a destination, and at the destination.  jsonb_build_array
 * writes most types the same in every session, but not all: a
 * timestamptz with the offset of the session's TimeZone, a bytea as
 * bytea_output says.  One row written by sessions with different settings
 * (a Java client sets TimeZone to the JVM's) would have two keys, and a
 * delete would not reach the row its upsert made.  So every place that
 * builds a key (the capture trigger in C, retl's statements by
 * retl_append_key_value) passes such a value as the text one setting
 * gives: a timestamptz as jsonb writes it in UTC ("...+00:00"), a bytea in
 * hex.  In a session that has those settings (UTC, hex: the defaults of
 * most servers) the key is the one jsonb_build_array writes.
 *
 * A value of a type no superuser owns is passed as its output function's
 * text (trust.c).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "sync/keytext.h"
#include "sync/trust.h"

/* How a value of type typid goes into a key. */
RetlKeyForm
retl_key_form(Oid typid)
{
	Oid			base;

	if (!retl_key_type_trusted(typid))
		return RETL_KEY_OUTPUT;
	base = getBaseType(typid);
	if (base == TIMESTAMPTZOID)
		return RETL_KEY_UTC;
	if (base == BYTEAOID)
		return RETL_KEY_HEX;
	return RETL_KEY_AS_IS;
}

/*
 * The text a value is passed as in the form (not RETL_KEY_AS_IS); outfunc
 * is the type's output function for RETL_KEY_OUTPUT.
 */
Datum
retl_key_text(RetlKeyForm form, Oid outfunc, Datum value)
{
	switch (form)
	{
		case RETL_KEY_UTC:
			{
				char		buf[MAXDATELEN + 1];
				const int	utc = 0;

				return CStringGetTextDatum(JsonEncodeDateTime(buf, value, TIMESTAMPTZOID, &utc));
			}
		case RETL_KEY_HEX:
			{
				bytea	   *b = DatumGetByteaPP(value);
				Size		len = VARSIZE_ANY_EXHDR(b);
				text	   *result = palloc(VARHDRSZ + 2 + len * 2);

				memcpy(VARDATA(result), "\\x", 2);
				hex_encode(VARDATA_ANY(b), len, VARDATA(result) + 2);
				SET_VARSIZE(result, VARHDRSZ + 2 + len * 2);
				return PointerGetDatum(result);
			}
		case RETL_KEY_OUTPUT:
			return CStringGetTextDatum(OidOutputFunctionCall(outfunc, value));
		case RETL_KEY_AS_IS:
			break;
	}
	elog(ERROR, "retl: a key value of form %d has no text", (int) form);
	return (Datum) 0;			/* keep compiler quiet */
}

/*
 * A key column's value (the SQL expression expr, of type typid) as an
 * argument of the jsonb_build_array of a key in retl's statements: the
 * same as retl_key_text gives, and as is for every other type.  Only
 * pg_catalog's functions, named with their schema: it runs in writers'
 * sessions and as roles that may not use schema retl.
 */
void
retl_append_key_value(StringInfo sql, Oid typid, const char *expr)
{
	switch (retl_key_form(typid))
	{
		case RETL_KEY_AS_IS:
			appendStringInfoString(sql, expr);
			break;
		case RETL_KEY_UTC:

			/*
			 * jsonb's text of the value as a timestamp in UTC, with UTC's
			 * offset after the time, before a " BC" (as jsonb writes a
			 * timestamptz in a session in UTC); "infinity" as it is
			 */
			appendStringInfo(sql, "pg_catalog.regexp_replace(pg_catalog.to_jsonb(pg_catalog.timezone('UTC'::pg_catalog.text, (%s)::pg_catalog.timestamptz))"
							 " OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[], '(T[0-9:.]+)', E'\\\\1+00:00')",
							 expr);
			break;
		case RETL_KEY_HEX:
			appendStringInfo(sql, "(E'\\\\x' OPERATOR(pg_catalog.||) pg_catalog.encode((%s)::pg_catalog.bytea, 'hex'))",
							 expr);
			break;
		case RETL_KEY_OUTPUT:
			/* format() converts with the type's output function: no cast */
			appendStringInfo(sql, "pg_catalog.format('%%s', %s)", expr);
			break;
	}
}

PG_FUNCTION_INFO_V1(retl_key_value_sql);

/*
 * retl._key_value_sql(type, expr): retl_append_key_value's SQL for the
 * expression expr of that type (the append backfill of retl_create_sync
 * builds its keys with it, as the capture trigger builds its events').
 */
Datum
retl_key_value_sql(PG_FUNCTION_ARGS)
{
	StringInfoData sql;

	initStringInfo(&sql);
	retl_append_key_value(&sql, PG_GETARG_OID(0), text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_TEXT_P(cstring_to_text(sql.data));
}
