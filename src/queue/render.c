/*
 * render.c: a claimed row's key and times as its record sends them.
 *
 * A claim returns its rows' raw columns and these write the text: a key
 * object exactly as jsonb_build_object(field, key->0, ...)::text writes
 * it, a capture time as to_char(captured_at AT TIME ZONE 'UTC',
 * 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') does, and times as seconds since the
 * Unix epoch.  Written by the executor, the key object and the time were
 * 2.4 of the 3.2 us a claimed row cost (a 2,000-row claim, 100 times).
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "queue/render.h"
#include "sync/mapping.h"

/* jsonb's order of object keys: shorter first, then bytewise */
static int
field_cmp(const void *a, const void *b, void *arg)
{
	char	  **fields = arg;
	const char *x = fields[*(const int *) a];
	const char *y = fields[*(const int *) b];
	size_t		lx = strlen(x);
	size_t		ly = strlen(y);

	if (lx != ly)
		return lx < ly ? -1 : 1;
	return memcmp(x, y, lx);
}

/* The sync's key fields, and the order a jsonb object keeps them in. */
RetlKeyFields *
retl_key_fields(RetlSync *sync)
{
	RetlKeyFields *kf = palloc(sizeof(RetlKeyFields));
	int			kept = 0;

	kf->nkeys = sync->nkeys;
	kf->fields = retl_key_field_names(sync);
	kf->order = palloc(sizeof(int) * Max(kf->nkeys, 1));
	for (int i = 0; i < kf->nkeys; i++)
		kf->order[i] = i;
	qsort_arg(kf->order, kf->nkeys, sizeof(int), field_cmp, kf->fields);

	/* a field named twice keeps its last value, as jsonb_build_object does */
	for (int i = 0; i < kf->nkeys; i++)
	{
		if (i + 1 < kf->nkeys &&
			strcmp(kf->fields[kf->order[i]], kf->fields[kf->order[i + 1]]) == 0)
		{
			if (kf->order[i] > kf->order[i + 1])
				kf->order[i + 1] = kf->order[i];
			continue;
		}
		kf->order[kept++] = kf->order[i];
	}
	kf->nfields = kept;
	return kf;
}

/* One value of a key array as jsonb's text output writes it. */
static void
append_value(StringInfo out, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(out, "null");
			break;
		case jbvBool:
			appendStringInfoString(out, v->val.boolean ? "true" : "false");
			break;
		case jbvNumeric:
			appendStringInfoString(out,
								   DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric))));
			break;
		case jbvString:
			escape_json(out, pnstrdup(v->val.string.val, v->val.string.len));
			break;
		case jbvBinary:
			(void) JsonbToCString(out, v->val.binary.data, v->val.binary.len);
			break;
		default:
			elog(ERROR, "retl: unexpected jsonb value type %d in a queued key", (int) v->type);
	}
}

/*
 * The key object of a queued key (the jsonb array of the key's values),
 * appended to out.  A value the array lacks is null, as key->i is.
 */
void
retl_append_key_text(StringInfo out, RetlKeyFields *kf, Jsonb *key)
{
	JsonbValue *values = palloc0(sizeof(JsonbValue) * Max(kf->nkeys, 1));
	int			n = 0;

	if (JB_ROOT_IS_ARRAY(key) && !JB_ROOT_IS_SCALAR(key))
	{
		JsonbIterator *it = JsonbIteratorInit(&key->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			if (tok == WJB_ELEM && n < kf->nkeys)
				values[n++] = v;
	}
	for (int i = n; i < kf->nkeys; i++)
		values[i].type = jbvNull;

	appendStringInfoChar(out, '{');
	for (int i = 0; i < kf->nfields; i++)
	{
		int			f = kf->order[i];

		if (i > 0)
			appendStringInfoString(out, ", ");
		escape_json(out, kf->fields[f]);
		appendStringInfoString(out, ": ");
		append_value(out, &values[f]);
	}
	appendStringInfoChar(out, '}');
	pfree(values);
}

/* A capture time in UTC, to the microsecond: 2026-12-04T16:20:48.123456Z */
char *
retl_timestamp_text(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(t))
		return pstrdup(TIMESTAMP_IS_NOBEGIN(t) ? "-infinity" : "infinity");
	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	/* to_char's YYYY: at least four digits; BC years counted from 1 */
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year > 0 ? tm.tm_year : -(tm.tm_year - 1),
					tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/* Seconds since the Unix epoch, as extract(epoch FROM t) */
double
retl_epoch_seconds(TimestampTz t)
{
	return (double) t / USECS_PER_SEC +
		(double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}
