/*
 * owner.c: reading a sync's source as the sync's owner.
 *
 * A realtime sync's backfill and the rows its upserts send are read as the
 * role that owns the sync (retl.syncs.owner: its creator, or the role its
 * "owner" option names), so that the owner's grants and row-level security
 * apply, as they do to a diff sync's query (diff.c).  Only the read runs
 * as the owner, as a security-restricted operation; the worker writes its
 * queue as itself.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"

#include "base/identity.h"
#include "base/plans.h"
#include "sync/owner.h"

/* The owner's name; retl.syncs.owner outlives a dropped role (README). */
static const char *
owner_name(RetlSync *sync)
{
	const char *name = GetUserNameFromId(sync->owner, true);

	return name ? name : psprintf("%u (a dropped role)", sync->owner);
}

/*
 * A sync whose owner was dropped (from another database: roles.c refuses
 * DROP ROLE here) has nobody to read or send as: it fails, saying so.
 */
static void
check_owner_exists(RetlSync *sync)
{
	if (GetUserNameFromId(sync->owner, true) != NULL)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("the owner of sync \"%s\" (role %u) was dropped", sync->name, sync->owner),
			 errdetail("Nothing is sent without an owner to read and send as."),
			 errhint("Drop the sync and create it again (an upsert sync sends every row again), and run REASSIGN OWNED or DROP OWNED in each database with retl before DROP ROLE.")));
}

/*
 * May a role read a table?  A grant of the table, or of each of its
 * columns (column privileges on every column do as well).
 */
bool
retl_role_may_read(Oid relid, Oid role)
{
	return pg_class_aclcheck(relid, role, ACL_SELECT) == ACLCHECK_OK ||
		pg_attribute_aclcheck_all(relid, role, ACL_SELECT, ACLMASK_ALL) == ACLCHECK_OK;
}

/* The owner may read the source table, or the sync fails: nothing is sent. */
static void
check_read(RetlSync *sync)
{
	check_owner_exists(sync);
	if (retl_role_may_read(sync->relid, sync->owner))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("role \"%s\", the owner of sync \"%s\", may not read table \"%s\"",
					owner_name(sync), sync->name,
					get_rel_name(sync->relid)),
			 errdetail("Nothing is sent while it may not."),
			 errhint("GRANT SELECT ON %s TO %s.",
					 get_rel_name(sync->relid), owner_name(sync))));
}

/*
 * May the sync send what it claimed?  Its owner must still be allowed to
 * send to the destination (retl_user with a grant, retl_admin, superuser:
 * retl._may_send, read with the sync), and an append sync's owner must
 * still read the whole table: its records carry rows as they were written,
 * which only an owner that sees every row of the table may send.  Else the
 * sync fails with the reason and its changes wait, unsent.
 */
void
retl_owner_check_send(RetlSync *sync)
{
	check_owner_exists(sync);
	if (!sync->may_send)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\", the owner of sync \"%s\", may not send to destination \"%s\"",
						owner_name(sync), sync->name, sync->dest_name),
				 errdetail("Nothing is sent while it may not."),
				 errhint("A member of retl_admin allows it with SELECT retl_grant_destination('%s', '%s'); the owner also needs the role retl_user.",
						 sync->dest_name, owner_name(sync))));
	if (sync->logical && retl_owner_rls(sync))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row-level security of table \"%s\" applies to role \"%s\", the owner of logically captured sync \"%s\"",
						get_rel_name(sync->relid), owner_name(sync), sync->name),
				 errdetail("Logical decoding knows a deleted row's key only, not whether the owner could see the row.  Nothing is sent while row-level security applies."),
				 errhint("Capture it by trigger, which asks as the owner: SELECT retl_alter_sync('%s', capture => 'trigger');",
						 sync->name)));
	if (sync->mode != 'a' || sync->diff)
		return;
	check_read(sync);
	if (retl_owner_rls(sync))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row-level security of table \"%s\" applies to role \"%s\", the owner of append sync \"%s\"",
						get_rel_name(sync->relid), owner_name(sync), sync->name),
				 errdetail("An append sync sends rows as they were written, which only an owner that may read every row of the table may send.  Nothing is sent while row-level security applies."),
				 errhint("Use an upsert sync, whose rows are read as its owner.")));
}

/* Is the owner's view of the table narrowed by row-level security? */
bool
retl_owner_rls(RetlSync *sync)
{
	return check_enable_rls(sync->relid, sync->owner, true) == RLS_ENABLED;
}

PG_FUNCTION_INFO_V1(retl_rls_applies);

/* retl._rls_applies(relid, role): the same, for creation's checks (SQL). */
Datum
retl_rls_applies(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(check_enable_rls(PG_GETARG_OID(0), PG_GETARG_OID(1), true) == RLS_ENABLED);
}

/*
 * Run a read-only statement of the source as the sync's owner
 * (retl_spi_execute's arguments), once it is checked that the owner may
 * read the table; SPI_tuptable has its result.  It takes a new snapshot, like a
 * writing statement would: the caller's claim just ran with one, and what
 * it claimed must be read at least as new (a read-only SPI call would use
 * the transaction's first snapshot).
 */
void
retl_owner_read(RetlSync *sync, const char *sql, int nargs, Oid *types, Datum *values,
				const char *nulls)
{
	Oid			save_uid;
	int			save_sec;
	int			nest;

	check_read(sync);
	/* an error's abort restores the identity and the settings */
	nest = retl_begin_as(sync->owner, SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION,
						 NULL, &save_uid, &save_sec);
	if (retl_spi_execute(sql, nargs, types, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the source of sync \"%s\"", sync->name);
	retl_end_as(nest, save_uid, save_sec);
}

static void
exec(const char *sql, int expected)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expected)
		elog(ERROR, "retl: SPI_execute failed (%d): %s", rc, sql);
}

/* Grant owner privilege (INSERT, SELECT) on pg_temp.<name>. */
void
retl_owner_grant(Oid owner, const char *name, const char *privilege)
{
	if (owner != GetUserId())
		exec(psprintf("GRANT %s ON pg_temp.%s TO %s", privilege, name,
					  quote_identifier(GetUserNameFromId(owner, false))),
			 SPI_OK_UTILITY);
}

/*
 * A fresh, empty pg_temp.<name> (columns), dropped at commit, that owner
 * may insert into: where a read as the owner puts its rows for the
 * extension to use (diff runs, a TRUNCATE's keys).
 */
void
retl_owner_temp_table(Oid owner, const char *name, const char *columns)
{
	/* left over by an earlier run, preview or TRUNCATE in this transaction */
	exec(psprintf("SELECT pg_catalog.to_regclass('pg_temp.%s') IS NOT NULL", name), SPI_OK_SELECT);
	if (strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0)
		exec(psprintf("DROP TABLE pg_temp.%s", name), SPI_OK_UTILITY);
	exec(psprintf("CREATE TEMP TABLE %s (%s) ON COMMIT DROP", name, columns), SPI_OK_UTILITY);
	retl_owner_grant(owner, name, "INSERT");
}

/*
 * Run a statement as owner, as a security-restricted operation, with
 * search_path path (NULL: the current one): an INSERT into such a table
 * (expected SPI_OK_INSERT), or a SELECT (SPI_OK_SELECT, its rows left in
 * SPI_tuptable); returns the rows inserted or read.
 */
int64
retl_owner_exec(Oid owner, const char *sql, const char *path, int expected)
{
	Oid			save_uid;
	int			save_sec;
	int			nest;
	int64		rows;

	nest = retl_begin_as(owner, SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION,
						 path, &save_uid, &save_sec);
	exec(sql, expected);
	rows = (int64) SPI_processed;
	retl_end_as(nest, save_uid, save_sec);
	return rows;
}
