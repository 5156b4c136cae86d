/*
 * utility.c: stop a database's worker before commands that need the
 * database to themselves.
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE
 * DATABASE ... TEMPLATE fail while any other session is connected to the
 * database, and a retl worker is such a session.  Before running them we
 * put the database's slot on HOLD (the launcher starts no worker for it for
 * a while), signal the worker and wait for it to leave.  If the command then
 * fails, the launcher starts the worker again when the hold expires.
 *
 * And COMMIT PREPARED tells the database's worker, when it commits, that
 * changes may have been queued (shmem.c): the prepared transaction's own
 * session could not.  DROP EXTENSION tells it, when it commits, to read
 * its syncs again, in a transaction that finds the extension gone: it
 * starts requests claimed ahead without one while nothing changed
 * (process/parts.c).  DROP ROLE, DROP OWNED and REASSIGN OWNED ask retl
 * about the roles' syncs, audiences and grants (roles.c); TRUNCATE, DROP,
 * ATTACH and DETACH of a partition queue its rows for the syncs of the
 * tables it is a partition of (capture/partitions.c).
 */
#include "postgres.h"

#include <signal.h>

#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/timestamp.h"

#include "base/shmem.h"
#include "capture/partitions.h"
#include "process/roles.h"
#include "process/runner.h"
#include "process/utility.h"

#define HOLD_MS 10000
#define WAIT_MS 5000
#define STOP_MS 2000

static ProcessUtility_hook_type prev_utility_hook = NULL;

/* database whose worker waits for the command to finish, if any */
static Oid	held_database = InvalidOid;

static void
release_database(const char *dbname)
{
	Oid			dboid;
	RetlDbSlot *slot;
	pid_t		pid = 0;

	if (dbname == NULL || retl_shared == NULL)
		return;
	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid))
		return;

	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	slot = retl_find_slot(dboid);
	if (slot)
	{
		slot->state = RETL_DB_HOLD;
		slot->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HOLD_MS);
		pid = slot->pid;
	}
	LWLockRelease(retl_shared->lock);
	held_database = dboid;

	/*
	 * SIGTERM: the worker records its answers and leaves; SIGUSR2 after
	 * STOP_MS if it has not: at once (a pass stuck on a lock, worker.c).
	 */
	if (pid != 0 && kill(pid, SIGTERM) == 0)
	{
		for (int waited = 0; waited < WAIT_MS; waited += 10)
		{
			bool		gone;

			LWLockAcquire(retl_shared->lock, LW_SHARED);
			slot = retl_find_slot(dboid);
			gone = slot == NULL || slot->pid != pid;
			LWLockRelease(retl_shared->lock);
			if (gone)
				break;
			if (waited == STOP_MS)
				(void) kill(pid, SIGUSR2);
			CHECK_FOR_INTERRUPTS();
			pg_usleep(10000L);
		}
	}
	/* and the workers of its runs that wait for the next */
	retl_runners_stop_idle(dboid, WAIT_MS);
}

/* The command is done: the database's worker may start again at once. */
static void
end_hold(void)
{
	RetlDbSlot *slot;

	if (!OidIsValid(held_database))
		return;
	LWLockAcquire(retl_shared->lock, LW_EXCLUSIVE);
	slot = retl_find_slot(held_database);
	if (slot && slot->state == RETL_DB_HOLD)
		slot->not_before = 0;
	LWLockRelease(retl_shared->lock);
	held_database = InvalidOid;
	retl_wake_launcher();
}

static const char *
template_of(CreatedbStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->options)
	{
		DefElem    *def = lfirst(lc);

		if (strcmp(def->defname, "template") == 0 && def->arg)
			return defGetString(def);
	}
	return NULL;
}

static void
retl_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *node = pstmt->utilityStmt;
	bool		dropping = IsA(node, DropdbStmt);

	held_database = InvalidOid;
	switch (nodeTag(node))
	{
		case T_DropdbStmt:
			release_database(((DropdbStmt *) node)->dbname);
			break;
		case T_RenameStmt:
			if (((RenameStmt *) node)->renameType == OBJECT_DATABASE)
				release_database(((RenameStmt *) node)->subname);
			break;
		case T_CreatedbStmt:
			release_database(template_of((CreatedbStmt *) node));
			break;
		case T_AlterDatabaseStmt:
			{
				AlterDatabaseStmt *stmt = (AlterDatabaseStmt *) node;
				ListCell   *lc;

				foreach(lc, stmt->options)
					if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
						release_database(stmt->dbname);
			}
			break;
		case T_DropStmt:
			if (((DropStmt *) node)->removeType == OBJECT_EXTENSION)
				retl_catalog_changed_at_commit();
			break;
		default:
			break;
	}
	retl_roles_before(node);
	retl_partitions_before(node);

	if (prev_utility_hook)
		prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
						  queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);

	/*
	 * A dropped database's slot is freed by the launcher's next scan; for
	 * the other commands the worker comes back now.  If the command failed,
	 * the hold simply expires.
	 */
	if (!dropping)
		end_hold();
	retl_roles_after(node);
	retl_partitions_after(node);

	/*
	 * The transaction it commits queued its changes in another session
	 * (which forgot them at PREPARE): the worker looks at every sync again.
	 */
	if (IsA(node, TransactionStmt) &&
		((TransactionStmt *) node)->kind == TRANS_STMT_COMMIT_PREPARED)
		retl_queued_at_commit(0, 0);
}

void
retl_utility_init(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = retl_process_utility;
}
