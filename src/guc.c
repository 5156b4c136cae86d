/*
 * guc.c: the retl.* configuration parameters.
 *
 * Every parameter is documented in the README's GUC table with its default
 * and context.  The retl prefix is reserved so a typo in postgresql.conf
 * is reported instead of silently ignored.
 */
#include "postgres.h"

#include "utils/guc.h"

#include "guc.h"

int			retl_retry_base_ms = 1000;
int			retl_retry_max_ms = 3600000;
int			retl_poll_interval_ms = 1000;
int			retl_database_scan_interval_ms = 10000;
int			retl_max_databases = 64;
int			retl_max_slot_lag_kb = 1024 * 1024;

/* Define the parameters; called from _PG_init while preloading. */
void
retl_guc_init(void)
{
	DefineCustomIntVariable("retl.retry_base_ms",
							"Delay before the first retry of a failed delivery.",
							"Each further retry doubles the delay, with jitter, up to retl.retry_max_ms.",
							&retl_retry_base_ms,
							1000, 1, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("retl.retry_max_ms",
							"Longest delay between two retries of a delivery.",
							NULL,
							&retl_retry_max_ms,
							3600000, 1, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("retl.poll_interval_ms",
							"Longest time a worker sleeps before looking for work again.",
							"Workers are also woken when a transaction that captured changes commits.",
							&retl_poll_interval_ms,
							1000, 10, 600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("retl.database_scan_interval_ms",
							"How often the launcher looks for new databases.",
							NULL,
							&retl_database_scan_interval_ms,
							10000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("retl.max_databases",
							"Most databases the launcher can serve at once.",
							"Each database with the extension uses one background worker slot.",
							&retl_max_databases,
							64, 1, 4096,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("retl.max_slot_lag",
							"WAL held by a database's logical capture slot beyond which a warning is logged.",
							"Checked by the database's worker; the warning repeats at most once a minute.",
							&retl_max_slot_lag_kb,
							1024 * 1024, 1024, PG_INT32_MAX,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("retl");
}
