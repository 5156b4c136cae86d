/*
 * guc.c: the retl.* configuration parameters.
 *
 * Every parameter is documented in the README's GUC table with its default
 * and context.  The retl prefix is reserved so a typo in postgresql.conf
 * is reported instead of silently ignored.
 */
#include "postgres.h"

#include "utils/guc.h"
#include "utils/varlena.h"

#include "guc.h"

int			retl_retry_base_ms = 1000;
int			retl_retry_max_ms = 3600000;
int			retl_poll_interval_ms = 1000;
int			retl_database_scan_interval_ms = 10000;
int			retl_max_databases = 64;
int			retl_max_slot_lag_kb = 1024 * 1024;
bool		retl_allow_private_destinations = false;
char	   *retl_allowed_hosts = NULL;
char	   *retl_ca_file = NULL;
int			retl_max_response_kb = 1024;
char	   *retl_test_resolve = NULL;

/* retl.allowed_hosts: a comma-separated list of host patterns */
static bool
check_allowed_hosts(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *patterns;
	bool		ok = SplitGUCList(raw, ',', &patterns);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	else if (patterns == NIL)
	{
		GUC_check_errdetail("The list is empty; \"*\" allows every host.");
		ok = false;
	}
	list_free(patterns);
	pfree(raw);
	return ok;
}

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

	DefineCustomBoolVariable("retl.allow_private_destinations",
							 "Lets destinations be on loopback, private and link-local addresses.",
							 "Off: a connection to such an address (after DNS resolution) is refused.",
							 &retl_allow_private_destinations,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("retl.allowed_hosts",
							   "Host patterns destinations may be on.",
							   "Comma-separated: \"*\" (every host), \"*.example.com\" (its subdomains), or a host name or address.",
							   &retl_allowed_hosts,
							   "*",
							   PGC_SIGHUP, 0,
							   check_allowed_hosts, NULL, NULL);

	DefineCustomStringVariable("retl.ca_file",
							   "File of the certificate authorities that destinations' TLS certificates are checked against.",
							   "Empty: the system's bundle.",
							   &retl_ca_file,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("retl.max_response_size",
							"Largest response body read from a destination.",
							"A longer response fails the request (and is retried).",
							&retl_max_response_kb,
							1024, 1, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("retl.test_resolve",
							   "For tests only: host:port:address entries that replace DNS answers.",
							   "Given to libcurl as CURLOPT_RESOLVE, comma-separated.",
							   &retl_test_resolve,
							   "",
							   PGC_SIGHUP, GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("retl");
}
