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

/*
 * Run work(arg) in a subtransaction of the current transaction.  On an
 * error the subtransaction is rolled back (which also restores the user
 * id and settings the work changed) and the error returned, to be freed by
 * the caller; NULL when work succeeded.
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
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return edata;
}
