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
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/inval.h"
#include "utils/snapmgr.h"

#include "process/txn.h"

/*
 * Lock the extension for the rest of this short transaction.  False when
 * the extension is gone.
 */
bool
retl_lock_extension(void)
{
	Oid			extoid = get_extension_oid("retl", true);

	if (!OidIsValid(extoid))
		return false;
	LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
	/* a DROP EXTENSION may have committed while we waited for the lock */
	AcceptInvalidationMessages();
	return OidIsValid(get_extension_oid("retl", true));
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
