/*
 * trust.c: keeping other roles' code out of the extension's privileges.
 *
 * retl's own statements run as the extension's owner (a superuser, in the
 * worker and in the capture trigger), and PostgreSQL runs a role's code
 * implicitly in some of them: a cast to json of a type the role owns
 * (to_jsonb of a row with such a column), a cast from text to its type, a
 * domain's CHECK constraint.  So:
 *
 * - A row's JSON (append syncs) is computed as the table's owner, as a
 *   security-restricted operation whose settings are undone
 *   (retl_row_to_jsonb), as ANALYZE runs a table's index functions.
 * - Key values are cast to their column's base type, never to a domain
 *   (whose checks would run), and only base types owned by a superuser
 *   (built-in types, and those of extensions a superuser installed) may be
 *   keys of a table sync, checked at creation and wherever retl casts one
 *   (retl_key_cast_type).  The capture trigger passes a value of any other
 *   type as its text (retl_key_type_trusted), which is what to_jsonb gives
 *   for such a type without a cast.
 * - Key comparisons name their operator with its schema
 *   (retl_key_operator), so they need no search_path.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "base/identity.h"
#include "sync/trust.h"

/* Is the (base) type owned by a superuser, so that no user's code hides in it? */
bool
retl_key_type_trusted(Oid typid)
{
	Oid			base = getBaseType(typid);
	HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(base));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "retl: cache lookup failed for type %u", base);
	owner = ((Form_pg_type) GETSTRUCT(tup))->typowner;
	ReleaseSysCache(tup);
	return superuser_arg(owner);
}

/*
 * The type a key column's value (given as text) is cast to in retl's own
 * statements: its base type.  An error for a type another role owns.
 */
Oid
retl_key_cast_type(Oid typid, const char *column, const char *sync_name)
{
	if (!retl_key_type_trusted(typid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("key column \"%s\" of sync \"%s\" has type %s, which is not owned by a superuser",
						column, sync_name, format_type_be(typid)),
				 errdetail("retl compares and converts key values with its own privileges, which must not run another role's code."),
				 errhint("Drop the sync; a scheduled sync of a query may cast the key to a built-in type.")));
	return getBaseType(typid);
}

/*
 * "OPERATOR(schema.name)" of a key type's default btree operator for
 * strategy (BTEqualStrategyNumber, ...), so that a comparison finds it
 * whatever the search_path.
 */
char *
retl_key_operator(Oid typid, int16 strategy)
{
	Oid			base = getBaseType(typid);
	Oid			opclass = GetDefaultOpClass(base, BTREE_AM_OID);
	Oid			opcintype;
	Oid			op;
	HeapTuple	tup;
	Form_pg_operator form;
	char	   *result;

	if (!OidIsValid(opclass))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("type %s has no default btree operator class", format_type_be(base)),
				 errhint("A key column needs a type with equality and ordering.")));
	opcintype = get_opclass_input_type(opclass);
	op = get_opfamily_member(get_opclass_family(opclass), opcintype, opcintype, strategy);
	if (!OidIsValid(op))
		elog(ERROR, "retl: no btree operator of strategy %d for type %s", strategy,
			 format_type_be(base));
	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(op));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "retl: cache lookup failed for operator %u", op);
	form = (Form_pg_operator) GETSTRUCT(tup);
	result = psprintf("OPERATOR(%s.%s)", quote_identifier(get_namespace_name(form->oprnamespace)),
					  NameStr(form->oprname));
	ReleaseSysCache(tup);
	return result;
}

/*
 * to_jsonb(row) for a row of table rowtype, computed as owner (the
 * table's) in a security-restricted operation: a cast to json the owner
 * made for a column's type runs with the owner's privileges only, and
 * whatever it does to the session's settings is undone.
 */
Datum
retl_row_to_jsonb(Datum row, Oid rowtype, Oid owner)
{
	FmgrInfo	flinfo;
	FuncExpr   *expr;
	Oid			save_uid;
	int			save_sec;
	int			nest;
	Datum		result;

	/* to_jsonb(anyelement) learns its argument's type from the call */
	fmgr_info(F_TO_JSONB, &flinfo);
	expr = makeFuncExpr(F_TO_JSONB, JSONBOID,
						list_make1(makeNullConst(rowtype, -1, InvalidOid)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info_set_expr((Node *) expr, &flinfo);
	nest = retl_begin_as(owner, SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION,
						 NULL, &save_uid, &save_sec);
	result = FunctionCall1(&flinfo, row);
	retl_end_as(nest, save_uid, save_sec);
	return result;
}

PG_FUNCTION_INFO_V1(retl_row_jsonb);
PG_FUNCTION_INFO_V1(retl_key_type_trusted_sql);

/* retl._key_type_trusted(type): may it be the key of a table sync? */
Datum
retl_key_type_trusted_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(retl_key_type_trusted(PG_GETARG_OID(0)));
}

/*
 * retl._row_jsonb(row): to_jsonb(row) of a table's row, computed as the
 * table's owner (the append backfill of retl_create_sync).
 */
Datum
retl_row_jsonb(PG_FUNCTION_ARGS)
{
	Oid			rowtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	Oid			relid = OidIsValid(rowtype) ? get_typ_typrelid(rowtype) : InvalidOid;
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("retl._row_jsonb() takes a row of a table")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "retl: cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	PG_RETURN_DATUM(retl_row_to_jsonb(PG_GETARG_DATUM(0), rowtype, owner));
}
