/*
 * jsonkey.c: a sync's key as the jsonb array a run makes of it.
 *
 * A run keys its rows by a jsonb array of the key columns' values
 * (jsonb_build_array), or, when the key is one integer column, by the
 * integer itself: these convert between the two, for snapshots stored in
 * one form and read in the other.
 */
#include "postgres.h"

#include <errno.h>

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "models/jsonkey.h"

/*
 * A snapshot key as one integer: a one-element array of an integral number
 * within int8 (what jsonb_build_array makes of an integer column).  Its
 * allocations are the caller's to reset.
 */
bool
retl_stored_int_key(struct varlena *key, int64 *value)
{
	Jsonb	   *jb = (Jsonb *) key;
	JsonbValue *v;
	char	   *text;
	char	   *end;

	if (VARATT_IS_SHORT(key))
		jb = (Jsonb *) pg_detoast_datum(key);
	if (!JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb) || JB_ROOT_COUNT(jb) != 1)
		return false;
	v = getIthJsonbValueFromContainer(&jb->root, 0);
	if (v == NULL || v->type != jbvNumeric)
		return false;
	/* digits only (no fraction, no exponent), within int8 */
	text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (strspn(text + (text[0] == '-'), "0123456789") != strlen(text + (text[0] == '-')))
		return false;
	errno = 0;
	*value = strtoi64(text, &end, 10);
	return errno == 0 && end != text && *end == '\0';
}

/* An integer key as the jsonb a run's query makes of it: [key] */
Jsonb *
retl_int_key_jsonb(int64 key)
{
	JsonbParseState *state = NULL;
	JsonbValue	v;

	(void) pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	v.type = jbvNumeric;
	/* through its text, as jsonb_build_array makes an int8 a number */
	v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
														CStringGetDatum(psprintf(INT64_FORMAT, key)),
														ObjectIdGetDatum(InvalidOid),
														Int32GetDatum(-1)));
	(void) pushJsonbValue(&state, WJB_ELEM, &v);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_ARRAY, NULL));
}

/* Does a jsonb key (an array) hold a NULL? */
bool
retl_key_holds_null(struct varlena *key)
{
	Jsonb	   *jb = (Jsonb *) (VARATT_IS_SHORT(key) ? pg_detoast_datum(key) : key);

	if (!JB_ROOT_IS_ARRAY(jb))
		return false;
	for (uint32 i = 0; i < JB_ROOT_COUNT(jb); i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(&jb->root, i);

		if (v != NULL && v->type == jbvNull)
			return true;
	}
	return false;
}

