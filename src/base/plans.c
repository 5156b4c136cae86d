/*
 * plans.c: the worker's frequent statements, parsed and planned once.
 *
 * The worker runs the same few statements thousands of times a second
 * (claims, outcomes); parsing and planning each anew costs more than
 * running it.  Plans are kept per statement text for the life of the
 * process, and PostgreSQL's plan cache replans them when a table they use
 * changes (ANALYZE included).  They are always generic plans: every
 * statement here reads by an index whatever its arguments, and a custom
 * plan would be planned again at every execution.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "base/plans.h"

/* statements kept at most; beyond, all are dropped and planned again */
#define MAX_PLANS 512

typedef struct KeptPlan
{
	char	   *sql;
	int			nargs;
	Oid		   *types;
	SPIPlanPtr	plan;
} KeptPlan;

static List *kept = NIL;

static void
forget_all(void)
{
	ListCell   *lc;

	foreach(lc, kept)
	{
		KeptPlan   *k = lfirst(lc);

		SPI_freeplan(k->plan);
		pfree(k->sql);
		if (k->types)
			pfree(k->types);
		pfree(k);
	}
	list_free(kept);
	kept = NIL;
}

static SPIPlanPtr
plan_for(const char *sql, int nargs, Oid *types)
{
	ListCell   *lc;
	KeptPlan   *k;
	SPIPlanPtr	plan;
	MemoryContext old;

	foreach(lc, kept)
	{
		k = lfirst(lc);
		if (k->nargs == nargs && strcmp(k->sql, sql) == 0 &&
			(nargs == 0 || memcmp(k->types, types, sizeof(Oid) * nargs) == 0))
			return k->plan;
	}
	plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "retl: could not prepare statement (%s): %s",
			 SPI_result_code_string(SPI_result), sql);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "retl: could not keep a prepared statement");
	if (list_length(kept) >= MAX_PLANS)
		forget_all();
	old = MemoryContextSwitchTo(TopMemoryContext);
	k = palloc(sizeof(KeptPlan));
	k->sql = pstrdup(sql);
	k->nargs = nargs;
	k->types = NULL;
	if (nargs > 0)
	{
		k->types = palloc(sizeof(Oid) * nargs);
		memcpy(k->types, types, sizeof(Oid) * nargs);
	}
	k->plan = plan;
	kept = lappend(kept, k);
	MemoryContextSwitchTo(old);
	return plan;
}

/*
 * SPI_execute_with_args through a kept plan: the same arguments, the same
 * result codes.
 */
int
retl_spi_execute(const char *sql, int nargs, Oid *types, Datum *values,
				 const char *nulls, bool read_only, long count)
{
	return SPI_execute_plan(plan_for(sql, nargs, types), values, nulls, read_only, count);
}

/*
 * retl_spi_execute with the given scan types off while the statement is
 * planned (and run): see below.
 */
static int
execute_without(const char *sql, int nargs, Oid *types, Datum *values,
				const char *nulls, bool read_only, long count)
{
	int			nestlevel = NewGUCNestLevel();
	int			rc;

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* whatever the database's or role's settings: an index scan */
	(void) set_config_option("enable_indexscan", "on", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* a sequential scan left (of a table without index) costs 1e10: no JIT for it */
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = retl_spi_execute(sql, nargs, types, values, nulls, read_only, count);
	AtEOXact_GUC(true, nestlevel);
	return rc;
}

/*
 * retl_spi_execute for a statement that reads retl.queue by ids or keys,
 * planned (when its plan is made) without sequential scans.  After a large
 * drain VACUUM leaves the queue with statistics of no pages and no rows (or
 * a handful of rows in thousands of pages): the plans made then read every
 * page, and are kept while the queue fills again (perf after a 300,000-row
 * drain: 85% of the worker's CPU in sequential scans of the queue, and
 * capture-to-2xx latency at 1,000 changes/s tripled).
 * Only these statements: disabling them for the whole session made other
 * plans far worse.
 */
int
retl_spi_execute_by_index(const char *sql, int nargs, Oid *types, Datum *values,
						  const char *nulls, bool read_only, long count)
{
	return execute_without(sql, nargs, types, values, nulls, read_only, count);
}

