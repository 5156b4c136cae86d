/*
 * subxact.c: running a piece of work in a subtransaction, so that its
 * error is caught and rolled back without ending the caller's transaction
 * (the worker: one failing sync, schedule or staging round must not stop
 * the others).
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "base/subxact.h"
#include "sync/expr.h"

/*
 * Run work(arg) in a subtransaction of the current transaction.  On an
 * error the subtransaction is rolled back (which also restores the user
 * id and settings the work changed) and the error returned, to be freed by
 * the caller (a user's expression it failed in named: sync/expr.c); NULL
 * when work succeeded.
 */
ErrorData *
retl_in_subtransaction(void (*work) (void *arg), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		work(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		retl_name_expression(edata);
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return edata;
}

/*
 * Did the work of retl_in_subtransaction() fail on a value (a data
 * exception, class 22: a type that cannot take it)?  False if edata is
 * NULL (it succeeded); true, edata freed, for a data exception; any other
 * error is thrown again.
 */
bool
retl_failed_on_data(ErrorData *edata)
{
	if (edata == NULL)
		return false;
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
		ReThrowError(edata);
	FreeErrorData(edata);
	return true;
}
