/*
 * entry.c: the functions users call, run as the extension's owner.
 *
 * Syncs, destinations and secrets are rows of tables no user role may
 * write, and creating a sync creates triggers and replication slots, so
 * every user-facing PL/pgSQL function runs as the extension's owner.  A
 * SECURITY DEFINER function would do that but hide who called it, which is
 * what every permission check needs.  So each retl_NAME(args) is this C
 * entry: it records the calling role (GetUserId(), right even inside
 * another role's SECURITY DEFINER function) and its search_path, then
 * calls the implementation retl._NAME(args, caller regrole, search_path
 * text) as the extension's owner, with search_path = pg_catalog, pg_temp so
 * that no object of the caller's schemas can stand in for one the
 * implementation uses.  The implementations check what the caller may do
 * (retl--*.sql) and resolve the caller's names with the caller's
 * search_path only where a name is given (retl._resolve_table).  Nobody
 * else may execute them, so the caller cannot be forged.
 *
 * An error needs no clean-up here: aborting the (sub)transaction restores
 * the user id and the GUC nest level, as for SECURITY DEFINER functions.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "base/identity.h"

PG_FUNCTION_INFO_V1(retl_entry);
PG_FUNCTION_INFO_V1(retl_resolve_table);

/* The implementation of one entry, looked up once per call site. */
typedef struct RetlEntry
{
	FmgrInfo	impl;
	Oid			owner;
	bool		secret_args;	/* an argument is a secret's value */
} RetlEntry;

static RetlEntry *
entry_lookup(FunctionCallInfo fcinfo)
{
	Oid			fn = fcinfo->flinfo->fn_oid;
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;
	Oid			argtypes[FUNC_MAX_ARGS];
	int			nargs;
	char	   *implname;
	bool		secret_args;
	Oid			impl;
	RetlEntry  *entry;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "retl: cache lookup failed for function %u", fn);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	nargs = proc->pronargs;
	if (strncmp(NameStr(proc->proname), "retl_", 5) != 0 || nargs + 2 > FUNC_MAX_ARGS)
		elog(ERROR, "retl: function %s is not a retl entry point", NameStr(proc->proname));
	memcpy(argtypes, proc->proargtypes.values, nargs * sizeof(Oid));
	argtypes[nargs] = REGROLEOID;
	argtypes[nargs + 1] = TEXTOID;
	implname = psprintf("_%s", NameStr(proc->proname) + 5);
	secret_args = strcmp(NameStr(proc->proname), "retl_set_secret") == 0;
	ReleaseSysCache(tup);

	impl = LookupFuncName(list_make2(makeString("retl"), makeString(implname)),
						  nargs + 2, argtypes, false);
	entry = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(RetlEntry));
	fmgr_info_cxt(impl, &entry->impl, fcinfo->flinfo->fn_mcxt);
	entry->owner = retl_extension_owner();
	entry->secret_args = secret_args;
	fcinfo->flinfo->fn_extra = entry;
	return entry;
}

/*
 * retl_NAME(args): retl._NAME(args, caller, search_path) as the
 * extension's owner.
 */
Datum
retl_entry(PG_FUNCTION_ARGS)
{
	RetlEntry  *entry = fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(call, FUNC_MAX_ARGS);
	int			nargs = PG_NARGS();
	Oid			save_uid;
	int			save_sec;
	int			nest;
	Datum		result;

	if (entry == NULL)
		entry = entry_lookup(fcinfo);

	/*
	 * An error from here to the end of the transaction must not log the
	 * statement, which holds the secret (log_min_error_statement).  Set
	 * outside the implementation's GUC nest level, which would undo it on
	 * return.  What the server logged before (log_statement) is the
	 * caller's to avoid; see the README.
	 */
	if (entry->secret_args)
		(void) set_config_option("log_min_error_statement", "panic", PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	InitFunctionCallInfoData(*call, &entry->impl, nargs + 2, PG_GET_COLLATION(), NULL, NULL);
	for (int i = 0; i < nargs; i++)
		call->args[i] = fcinfo->args[i];
	call->args[nargs].value = ObjectIdGetDatum(GetUserId());
	call->args[nargs].isnull = false;
	call->args[nargs + 1].value = CStringGetTextDatum(namespace_search_path);
	call->args[nargs + 1].isnull = false;

	nest = retl_begin_as(entry->owner, SECURITY_LOCAL_USERID_CHANGE, RETL_SAFE_PATH,
						 &save_uid, &save_sec);
	result = FunctionCallInvoke(call);
	retl_end_as(nest, save_uid, save_sec);

	fcinfo->isnull = call->isnull;
	return result;
}

typedef struct Resolve
{
	const char *name;
	Oid			relid;
} Resolve;

static void
resolve(void *arg)
{
	Resolve    *r = arg;

	r->relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(r->name)),
								NoLock, true);
}

/*
 * retl._resolve_table(name, caller, search_path): the table a name given
 * by the caller means, NULL if none.  An ill-formed name is an error.
 */
Datum
retl_resolve_table(PG_FUNCTION_ARGS)
{
	Resolve		r;

	r.name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	r.relid = InvalidOid;
	retl_with_path(PG_GETARG_OID(1), text_to_cstring(PG_GETARG_TEXT_PP(2)), resolve, &r);
	if (!OidIsValid(r.relid))
		PG_RETURN_NULL();
	PG_RETURN_OID(r.relid);
}
