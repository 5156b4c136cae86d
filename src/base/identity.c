/*
 * identity.c: acting as another role for a while.
 *
 * retl runs code as other roles: its implementations as the extension's
 * owner (api/entry.c), a sync's source as the sync's owner (sync/owner.c),
 * an append row's JSON as its table's owner (sync/trust.c).  Each such
 * stretch switches the user id and security context, opens a GUC nest
 * level (so that a search_path set for it, and anything the other role's
 * code sets, goes back when it ends), and is ended by retl_end_as() or by
 * the abort of the (sub)transaction, which restores both.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#include "base/identity.h"

/* The role that owns the extension's objects: the owner of schema retl. */
Oid
retl_extension_owner(void)
{
	Oid			nsp = get_namespace_oid("retl", false);
	HeapTuple	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "retl: cache lookup failed for namespace %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Act as role, with sec_flags added to the security context and search_path
 * set to path (NULL: left as it is), until retl_end_as() (or the end of the
 * (sub)transaction, which restores both).  Whatever the code run meanwhile
 * does to the session's settings, even SET or set_config(..., false), is
 * undone by retl_end_as(), as PostgreSQL does around a materialized view's
 * query or an index function run by VACUUM: another role's code must not
 * leave a search_path (or anything else) behind for the extension's own
 * statements.  Returns the GUC nest level for retl_end_as().
 */
int
retl_begin_as(Oid role, int sec_flags, const char *path, Oid *save_uid, int *save_sec)
{
	int			nest;

	GetUserIdAndSecContext(save_uid, save_sec);
	SetUserIdAndSecContext(role, *save_sec | sec_flags);
	nest = NewGUCNestLevel();
	if (path != NULL)
		(void) set_config_option("search_path", path, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

void
retl_end_as(int nest, Oid save_uid, int save_sec)
{
	/* false: every setting changed since retl_begin_as() goes back */
	AtEOXact_GUC(false, nest);
	SetUserIdAndSecContext(save_uid, save_sec);
}

/*
 * Make the current role's row-level security apply whatever the session's
 * row_security says (off would make a query that policies filter fail
 * instead), until the GUC nest level open (retl_begin_as()'s) ends.  For
 * what the capture trigger reads as a sync's owner in a writer's session.
 */
void
retl_apply_row_security(void)
{
	(void) set_config_option("row_security", "on", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Run fn(arg) as role with search_path path (the caller's), so that the
 * names in it resolve as they would for the caller, "$user" included.
 */
void
retl_with_path(Oid role, const char *path, void (*fn) (void *arg), void *arg)
{
	Oid			save_uid;
	int			save_sec;
	int			nest;

	nest = retl_begin_as(role, SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION,
						 path, &save_uid, &save_sec);
	fn(arg);
	retl_end_as(nest, save_uid, save_sec);
}

