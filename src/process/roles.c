/*
 * roles.c: DROP ROLE, REASSIGN OWNED and DROP OWNED see retl's objects.
 *
 * retl's catalog refers to roles by OID (retl.syncs.owner, the owners of
 * audiences, the grantees of destinations), which PostgreSQL's dependency
 * tracking (pg_shdepend) does not know about.  So, in a database where the
 * extension is installed, the utility hook (utility.c) asks retl before
 * these commands run:
 *
 *   DROP ROLE        fails when a role to drop owns a sync or an audience,
 *                    or holds a grant of a destination, here, as it does
 *                    for a table: "role ... cannot be dropped because some
 *                    objects depend on it", listing them;
 *   DROP OWNED BY    drops the roles' syncs and audiences here and revokes
 *                    their destination grants, as it drops their tables;
 *   REASSIGN OWNED   gives their syncs and audiences here to the new role
 *                    (after PostgreSQL's own reassignment, whose checks of
 *                    the caller come first).
 *
 * The work is done by retl._roles_drop_check(), retl._drop_owned() and
 * retl._reassign_owned(), run as the extension's owner, as every entry
 * point's implementation is (entry.c).  A database whose extension lacks
 * them (an older version not yet updated) is left as it was.  Roles are
 * shared by every database, but this sees only the database the command
 * runs in: a role may still be dropped from another one while it owns
 * syncs here (README: Dropping a role).
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "base/identity.h"
#include "process/roles.h"

/*
 * The OIDs of a list of RoleSpecs; a role that does not exist is skipped
 * when missing_ok (DROP ROLE IF EXISTS), else an error, as PostgreSQL's.
 */
static List *
role_oids(List *specs, bool missing_ok)
{
	List	   *oids = NIL;
	ListCell   *lc;

	foreach(lc, specs)
	{
		RoleSpec   *spec = lfirst(lc);
		Oid			role;

		if (spec->roletype == ROLESPEC_CSTRING)
			role = get_role_oid(spec->rolename, missing_ok);
		else
			role = get_rolespec_oid(spec, missing_ok);
		if (OidIsValid(role))
			oids = lappend_oid(oids, role);
	}
	return oids;
}

/*
 * Run retl.NAME(roles oid[], arg oid, caller regrole) as the extension's
 * owner, if the extension is installed here and has it.
 */
static void
call_retl(const char *name, List *roles, Oid arg)
{
	Oid			argtypes[3] = {OIDARRAYOID, OIDOID, REGROLEOID};
	Datum		values[3];
	Oid			caller = GetUserId();
	Datum	   *elems;
	int			n = 0;
	ListCell   *lc;
	Oid			save_uid;
	int			save_sec;
	int			nest;
	int			rc;

	if (roles == NIL || !OidIsValid(get_extension_oid("retl", true)))
		return;

	/*
	 * Looked up as the extension's owner: the caller need not have USAGE on
	 * schema retl (a role with CREATEROLE that is no retl_user), and the
	 * lookup would fail the caller's command.
	 */
	nest = retl_begin_as(retl_extension_owner(), SECURITY_LOCAL_USERID_CHANGE, RETL_SAFE_PATH,
						 &save_uid, &save_sec);
	if (!OidIsValid(LookupFuncName(list_make2(makeString("retl"), makeString((char *) name)),
								   3, argtypes, true)))
	{
		retl_end_as(nest, save_uid, save_sec);
		return;
	}

	elems = palloc(sizeof(Datum) * list_length(roles));
	foreach(lc, roles)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	values[0] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true,
												TYPALIGN_INT));
	values[1] = ObjectIdGetDatum(arg);
	values[2] = ObjectIdGetDatum(caller);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "retl: SPI_connect failed");
	rc = SPI_execute_with_args(psprintf("SELECT retl.%s($1, $2, $3)", name), 3, argtypes,
							   values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "retl: retl.%s failed: %s", name, SPI_result_code_string(rc));
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "retl: SPI_finish failed");
	retl_end_as(nest, save_uid, save_sec);
}

/*
 * Before the command: DROP ROLE's check, DROP OWNED's drops.  DROP OWNED
 * checks first, as PostgreSQL does, that the caller has the privileges of
 * every role named: retl drops nothing of a role it may not act as.
 */
void
retl_roles_before(Node *node)
{
	if (IsA(node, DropRoleStmt))
	{
		DropRoleStmt *stmt = (DropRoleStmt *) node;
		List	   *roles = NIL;
		ListCell   *lc;

		/*
		 * Only for a caller PostgreSQL lets drop the role (CREATEROLE, and
		 * superuser for a superuser): to another, retl names nothing of the
		 * role's, and PostgreSQL's own refusal follows.
		 */
		if (!has_createrole_privilege(GetUserId()))
			return;
		foreach(lc, stmt->roles)
		{
			RoleSpec   *spec = lfirst(lc);
			Oid			role;

			/*
			 * Nor of a role PostgreSQL refuses to drop whatever it owns
			 * (CURRENT_USER, the current or session user, the bootstrap
			 * superuser, a superuser to another): its own error says why.
			 */
			if (spec->roletype != ROLESPEC_CSTRING)
				return;
			role = get_role_oid(spec->rolename, true);
			if (!OidIsValid(role))
				continue;
			if (role == GetUserId() || role == GetSessionUserId() ||
				role == BOOTSTRAP_SUPERUSERID || (superuser_arg(role) && !superuser()))
				return;
			roles = lappend_oid(roles, role);
		}
		call_retl("_roles_drop_check", roles, InvalidOid);
	}
	else if (IsA(node, DropOwnedStmt))
	{
		DropOwnedStmt *stmt = (DropOwnedStmt *) node;
		List	   *roles = role_oids(stmt->roles, false);
		ListCell   *lc;

		foreach(lc, roles)
			if (!has_privs_of_role(GetUserId(), lfirst_oid(lc)))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("permission denied to drop objects")));
		call_retl("_drop_owned", roles, InvalidOid);
	}
}

/* After the command: REASSIGN OWNED, once PostgreSQL has checked it. */
void
retl_roles_after(Node *node)
{
	if (IsA(node, ReassignOwnedStmt))
	{
		ReassignOwnedStmt *stmt = (ReassignOwnedStmt *) node;

		call_retl("_reassign_owned", role_oids(stmt->roles, false),
				  get_rolespec_oid(stmt->newrole, false));
	}
}
