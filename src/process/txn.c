/*
 * txn.c: the short transactions of retl's processes (the database's
 * worker and the workers of runs).
 *
 * Each does its work in transactions begun and ended here, SPI connected,
 * with a snapshot, and holding the extension's lock, so that DROP
 * EXTENSION waits for them (briefly) instead of pulling the catalog from
 * under them.  Nothing is held between them.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "process/txn.h"

/*
 * The extension and its queue as last found.  pg_extension has no catalog
 * cache: finding the extension by name is a scan of it, twice a
 * transaction (before the lock and after), which was 2% of the worker's
 * time at batch_size 1.  So the lock is taken on the oid found before, and
 * the extension is known to be there still when its queue is (in the
 * catalog cache): a DROP EXTENSION that committed drops the queue with it.
 */
static Oid	extension_oid = InvalidOid;
static Oid	queue_oid = InvalidOid;

/*
 * Lock the extension for the rest of this short transaction.  False when
 * the extension is gone.
 */
bool
retl_lock_extension(void)
{
	Oid			schema;
	Oid			served = extension_oid;

	if (OidIsValid(extension_oid))
	{
		LockDatabaseObject(ExtensionRelationId, extension_oid, 0, AccessShareLock);
		/* a DROP EXTENSION may have committed while we waited for the lock */
		AcceptInvalidationMessages();
		if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(queue_oid)))
			return true;
		/* gone, maybe created again: find it by name */
	}

	for (;;)
	{
		Oid			locked = get_extension_oid("retl", true);

		if (!OidIsValid(locked))
			return false;
		LockDatabaseObject(ExtensionRelationId, locked, 0, AccessShareLock);
		AcceptInvalidationMessages();
		/* (dropped meanwhile, and maybe created again: lock that one) */
		extension_oid = get_extension_oid("retl", true);
		if (extension_oid == locked)
			break;
		if (!OidIsValid(extension_oid))
			return false;
	}
	/*
	 * Created again (DROP EXTENSION and CREATE EXTENSION in one
	 * transaction): what this process kept of the one it served (scan
	 * marks past the new queue's ids, keys held, claims, runs) is not the
	 * new one's.  Gone, for this process: a new one serves the new
	 * extension (CREATE EXTENSION asked for it).
	 */
	if (OidIsValid(served) && extension_oid != served)
		return false;
	schema = get_namespace_oid("retl", true);
	queue_oid = OidIsValid(schema) ? get_relname_relid("queue", schema) : InvalidOid;
	if (!OidIsValid(queue_oid))
		extension_oid = InvalidOid;		/* (no queue: by name every time) */
	return true;
}

/*
 * The extension this process serves, as retl_lock_extension last found it
 * (InvalidOid before, or when it had no queue).
 */
Oid
retl_extension_served(void)
{
	return extension_oid;
}

void
retl_begin_txn(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "retl: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
}

void
retl_end_txn(void)
{
	PopActiveSnapshot();
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "retl: SPI_finish failed");
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}
