/*
 * retl.c: module entry point.
 *
 * retl only works when preloaded: the launcher is a static background
 * worker, shared memory is sized at postmaster start, and every backend
 * needs the commit callback that wakes the worker.  Loading it any other
 * way is an error with a hint, so CREATE EXTENSION fails clearly instead of
 * installing syncs that would never be delivered.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "base/guc.h"
#include "base/shmem.h"
#include "delivery/stats.h"
#include "process/launcher.h"
#include "process/utility.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("retl must be loaded via shared_preload_libraries"),
				 errhint("Add retl to shared_preload_libraries in postgresql.conf and restart the server.")));

	retl_guc_init();
	retl_shmem_init();
	retl_stats_init();
	retl_xact_init();
	retl_utility_init();
	retl_launcher_register();
}
