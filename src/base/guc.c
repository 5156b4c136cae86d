/*
 * guc.c: the retl.* configuration parameters.
 *
 * Every parameter is documented in the README's GUC table with its default
 * and context.  The retl prefix is reserved so a typo in postgresql.conf
 * is reported instead of silently ignored.
 */
#include "postgres.h"

#include <errno.h>
#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "base/guc.h"

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
int			retl_max_record_kb = 64 * 1024;
int			retl_max_job_age_s = 86400;
int			retl_max_parallel_runs = 2;
int			retl_run_memory_kb = 131072;
int			retl_backfill_key_memory_kb = 32768;
int			retl_run_nice = 10;
int			retl_run_idle_timeout_s = 60;
int			retl_job_check_max_ms = 60000;
char	   *retl_test_resolve = NULL;
char	   *retl_test_fail = NULL;
char	   *retl_run_probe_segment = NULL;
char	   *retl_run_history = NULL;
int			retl_run_history_count = 1000;
int64		retl_run_history_secs = 0;

/* retl.run_history, parsed: a count of runs, or an age */
typedef struct RunHistory
{
	int			count;			/* runs kept per sync, 0: by age */
	int64		secs;			/* age kept, 0: by count */
} RunHistory;

/*
 * retl.run_history: "N" (the last N runs of each sync) or "N unit" (runs
 * that finished within N seconds, minutes, hours or days).
 */
static bool
check_run_history(char **newval, void **extra, GucSource source)
{
	static const struct
	{
		const char *name;
		int64		secs;
	}			units[] = {
		{"s", 1}, {"second", 1}, {"seconds", 1},
		{"min", 60}, {"minute", 60}, {"minutes", 60},
		{"h", 3600}, {"hour", 3600}, {"hours", 3600},
		{"d", 86400}, {"day", 86400}, {"days", 86400},
	};
	const char *p = *newval;
	char	   *end;
	long		n;
	RunHistory *h;

	while (*p == ' ')
		p++;
	errno = 0;
	n = strtol(p, &end, 10);
	if (end == p || errno != 0 || n < 1 || n > 100000000)
	{
		GUC_check_errdetail("It is a number of runs (\"1000\"), or an age (\"7 days\"), at least 1.");
		return false;
	}
	h = malloc(sizeof(RunHistory));
	if (h == NULL)
		return false;
	h->count = 0;
	h->secs = 0;
	while (*end == ' ')
		end++;
	if (*end == '\0')
		h->count = (int) n;
	else
	{
		char	   *unit = pstrdup(end);
		int			len = strlen(unit);

		while (len > 0 && unit[len - 1] == ' ')
			unit[--len] = '\0';
		for (int i = 0; i < (int) lengthof(units) && h->secs == 0; i++)
			if (pg_strcasecmp(unit, units[i].name) == 0)
				h->secs = (int64) n * units[i].secs;
		if (h->secs == 0)
		{
			GUC_check_errdetail("The unit must be seconds, minutes, hours or days, not \"%s\".", unit);
			free(h);
			return false;
		}
	}
	*extra = h;
	return true;
}

static void
assign_run_history(const char *newval, void *extra)
{
	RunHistory *h = extra;

	retl_run_history_count = h->count;
	retl_run_history_secs = h->secs;
}

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

	DefineCustomIntVariable("retl.max_parallel_runs",
							"Most runs and audience refreshes of a database in workers of their own at once.",
							"Each takes a background worker (max_worker_processes); 0 runs them in the database's worker, which sends nothing meanwhile.",
							&retl_max_parallel_runs,
							2, 0, 16,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("retl.run_memory",
							"Memory a diff run may use for its sync's snapshot.",
							"A run keeps the keys and hashes of the snapshot in memory and probes them for each row of the query; a larger snapshot is split into parts, and the query runs once for each.",
							&retl_run_memory_kb,
							131072, 1024, MAX_KILOBYTES,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("retl.backfill_key_memory",
							"Memory the database's worker may use for the keys its syncs' backfills find queued.",
							"A backfill leaves a key with a change queued to that change; the worker keeps the keys it found in the queue of each backfilling sync (about 100 bytes each for an integer key). Past this, for all syncs together, a backfill also sends the keys it could not keep: twice, never lost.",
							&retl_backfill_key_memory_kb,
							32768, 64, MAX_KILOBYTES,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("retl.run_nice",
							"Scheduling priority (nice) of the workers that execute runs.",
							"Runs are bulk work: above 0 the operating system gives the realtime delivery of the database's worker the CPU first when both want it. 0 runs them like any backend.",
							&retl_run_nice,
							10, 0, 19,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("retl.run_idle_timeout",
							"How long a worker that executed a run waits for the database's next run before it exits.",
							"A worker that stays starts the next run at once, with its connection and caches; it holds a background worker slot (max_worker_processes) meanwhile. 0: a new worker for each run.",
							&retl_run_idle_timeout_s,
							60, 0, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("retl.max_job_age",
							"Longest a destination's job may hold records before they are retried.",
							"A job (a bulk import, an upload job) that has not told every record's outcome by then gives up its records, which are retried like any failed delivery.",
							&retl_max_job_age_s,
							86400, 1, 30 * 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("retl.job_check_max_ms",
							"Longest wait between two checks of a destination's job.",
							"A job is checked after 1 s, then at doubling intervals up to this, unless its connector knows better.",
							&retl_job_check_max_ms,
							60000, 10, 86400000,
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

	DefineCustomIntVariable("retl.max_record_size",
							"Largest record (its key and data as JSON) retl sends.",
							"A larger record is dead-lettered alone, not sent.",
							&retl_max_record_kb,
							64 * 1024, 64, 512 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("retl.test_resolve",
							   "For tests only: host:port:address entries that replace DNS answers.",
							   "Given to libcurl as CURLOPT_RESOLVE, comma-separated.",
							   &retl_test_resolve,
							   "",
							   PGC_SIGHUP, GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("retl.test_fail",
							   "For tests only: where the worker fails, and for which sync.",
							   "\"claim:SYNC\": each claim of the sync while its backfill is sent from its table fails after the backfill claimed its ranges, before the queue's rows; \"rebuild:SYNC\": each build of a half of its refused batches fails at its end, what it left out put back; \"claim-wait:SYNC\": each such claim waits a second there instead; \"share:SYNC\": a run of the sync gets no new segment of shared memory for its parallel workers.",
							   &retl_test_fail,
							   "",
							   PGC_SIGHUP, GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("retl.run_probe_segment",
							   "Set by a diff run for its statement's parallel workers: where its snapshot is shared.",
							   NULL,
							   &retl_run_probe_segment,
							   "",
							   PGC_SUSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL | GUC_DISALLOW_IN_FILE,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("retl.run_history",
							   "How many finished runs of each sync, or how old, retl.runs keeps.",
							   "A number of runs (\"1000\": each sync's last 1000), or an age: a whole number and a unit, s, min, h or d (or second, minute, hour, day, with or without s): \"7 days\", \"12 h\". The worker deletes older finished runs, always keeping each sync's latest finished run and its latest successful one.",
							   &retl_run_history,
							   "1000",
							   PGC_SIGHUP, 0,
							   check_run_history, assign_run_history, NULL);

	MarkGUCPrefixReserved("retl");
}

/* Is retl.test_fail point, then tail, then sync_name ("claim" ":" "orders")? */
static bool
test_fail_is(const char *point, const char *tail, const char *sync_name)
{
	size_t		len = strlen(point);
	size_t		tail_len = strlen(tail);

	return retl_test_fail != NULL && sync_name != NULL &&
		strncmp(retl_test_fail, point, len) == 0 &&
		strncmp(retl_test_fail + len, tail, tail_len) == 0 &&
		strcmp(retl_test_fail + len + tail_len, sync_name) == 0;
}

/*
 * For tests: does retl.test_fail name this point and sync ("point:sync")?
 * No error: libcurl's callbacks ask it.
 */
bool
retl_test_fail_named(const char *point, const char *sync_name)
{
	return test_fail_is(point, ":", sync_name);
}

/*
 * For tests: when retl.test_fail names this point and sync, fail here
 * ("claim:orders"), as the worker can fail there (an error, its
 * subtransaction undone), or wait a second here ("claim-wait:orders"),
 * for a test to commit something in between.
 */
void
retl_test_fail_at(const char *point, const char *sync_name)
{
	if (retl_test_fail_named(point, sync_name))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("%s of sync \"%s\" failed by retl.test_fail", point, sync_name)));
	if (test_fail_is(point, "-wait:", sync_name))
	{
		ereport(LOG,
				(errmsg("%s of sync \"%s\" waits a second for retl.test_fail", point, sync_name)));
		for (int i = 0; i < 100; i++)
		{
			CHECK_FOR_INTERRUPTS();
			pg_usleep(10000L);
		}
	}
}
