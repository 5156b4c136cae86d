/*
 * probe_plan.c: a run's statement that filters the query's rows by the
 * probe's answer where it reads them, when its plan says it may.
 *
 * A run asks the probe (probe.c) what each row of its sync's query is.
 * Asked in a level of its own above the query (SELECT retl._run_probe_values
 * (...) AS op, q.* FROM (query) q, filtered above: the probe is volatile,
 * so that level is never merged into the query), every row crossed from
 * the query's plan into that level's: a 1M-row table read in 113 ms with
 * the probe in its own WHERE took 160-170 ms so, a quarter of a diff run.
 * Filtered instead by WHERE retl._run_probe_values(...) IS NOT NULL over
 * the query, PostgreSQL merges a simple query into the statement and
 * evaluates that condition in the node that reads the rows, with the
 * query's own conditions, in an order of its choosing (by their estimated
 * cost): the probe must see the rows those conditions let through, and
 * only them.  So the statement is planned first, and run only if its plan
 * evaluates the probe in the node whose rows are the statement's (the one
 * under the INSERT, or under the count), as that node's last condition,
 * and nowhere else; otherwise the caller runs the statement of its own
 * level.  retl._run_probe_op(key) gives the output columns the probe's
 * answer for the row the node has just let through.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "parser/parse_func.h"
#include "utils/plancache.h"

#include "base/identity.h"
#include "models/probe.h"

typedef struct ProbeCalls
{
	Oid			fn[2];			/* retl._run_probe_values (bigint, jsonb) */
	int			calls;			/* found in the plan */
} ProbeCalls;

static bool
is_probe(Node *node, ProbeCalls *c)
{
	return node != NULL && IsA(node, FuncExpr) &&
		(((FuncExpr *) node)->funcid == c->fn[0] || ((FuncExpr *) node)->funcid == c->fn[1]);
}

static bool
count_calls(Node *node, ProbeCalls *c)
{
	if (node == NULL)
		return false;
	if (is_probe(node, c))
		c->calls++;
	return expression_tree_walker(node, count_calls, (void *) c);
}

static void count_plan(Plan *plan, ProbeCalls *c);

static void
count_plans(List *plans, ProbeCalls *c)
{
	ListCell   *lc;

	foreach(lc, plans)
		count_plan((Plan *) lfirst(lc), c);
}

/* Count the probe's calls in a plan's conditions and outputs, below too. */
static void
count_plan(Plan *plan, ProbeCalls *c)
{
	if (plan == NULL)
		return;
	(void) count_calls((Node *) plan->qual, c);
	(void) count_calls((Node *) plan->targetlist, c);
	switch (nodeTag(plan))
	{
		case T_NestLoop:
		case T_MergeJoin:
		case T_HashJoin:
			(void) count_calls((Node *) ((Join *) plan)->joinqual, c);
			break;
		case T_Append:
			count_plans(((Append *) plan)->appendplans, c);
			break;
		case T_MergeAppend:
			count_plans(((MergeAppend *) plan)->mergeplans, c);
			break;
		case T_SubqueryScan:
			count_plan(((SubqueryScan *) plan)->subplan, c);
			break;
		case T_BitmapAnd:
			count_plans(((BitmapAnd *) plan)->bitmapplans, c);
			break;
		case T_BitmapOr:
			count_plans(((BitmapOr *) plan)->bitmapplans, c);
			break;
		case T_CustomScan:
			count_plans(((CustomScan *) plan)->custom_plans, c);
			break;
		default:
			break;
	}
	count_plan(plan->lefttree, c);
	count_plan(plan->righttree, c);
}

/*
 * Does the statement's plan call the probe once, as the last condition of
 * the node under its top one (an INSERT's or an aggregate's)?  A node the
 * walk does not know the children of hides no call from it: it finds fewer
 * calls than one, or more.
 */
static bool
probe_filters_last(PlannedStmt *stmt, ProbeCalls *c)
{
	Plan	   *top = stmt->planTree;
	Plan	   *rows;
	Node	   *last;

	if (top == NULL || !(IsA(top, ModifyTable) || IsA(top, Agg)) ||
		(IsA(top, Agg) && top->qual != NIL))
		return false;
	rows = top->lefttree;
	if (rows == NULL || rows->qual == NIL)
		return false;
	last = (Node *) llast(rows->qual);
	if (!IsA(last, NullTest) || ((NullTest *) last)->nulltesttype != IS_NOT_NULL ||
		!is_probe((Node *) ((NullTest *) last)->arg, c))
		return false;
	c->calls = 0;
	count_plan(top, c);
	count_plans(stmt->subplans, c);
	return c->calls == 1;
}

static bool
plan_checks(CachedPlan *cplan, ProbeCalls *c)
{
	return cplan != NULL && list_length(cplan->stmt_list) == 1 &&
		probe_filters_last(linitial_node(PlannedStmt, cplan->stmt_list), c);
}

typedef struct FilteredExec
{
	const char *sql;
	int			expected;
	bool		done;
	int64		rows;
} FilteredExec;

static void
exec_filtered(void *arg)
{
	FilteredExec *f = (FilteredExec *) arg;
	Oid			argtypes[2] = {INT8OID, ANYOID};
	ProbeCalls	c;
	SPIPlanPtr	plan;
	CachedPlan *cplan;
	bool		ok = false;
	int			rc;

	c.fn[0] = LookupFuncName(list_make2(makeString("retl"), makeString("_run_probe_values")),
							 2, argtypes, false);
	argtypes[0] = JSONBOID;
	c.fn[1] = LookupFuncName(list_make2(makeString("retl"), makeString("_run_probe_values")),
							 2, argtypes, false);
	/* (parallel as SPI_execute would plan it) */
	plan = SPI_prepare_cursor(f->sql, 0, NULL, CURSOR_OPT_PARALLEL_OK);
	if (plan == NULL)
		elog(ERROR, "retl: SPI_prepare failed (%d): %s", SPI_result, f->sql);
	cplan = SPI_plan_get_cached_plan(plan);
	ok = plan_checks(cplan, &c);
	if (ok)
	{
		CachedPlanSource *source = linitial(SPI_plan_get_plan_sources(plan));

		rc = SPI_execute_plan(plan, NULL, NULL, false, 0);
		if (rc != f->expected)
			elog(ERROR, "retl: SPI_execute_plan failed (%d): %s", rc, f->sql);
		f->rows = (int64) SPI_processed;
		f->done = true;

		/*
		 * The plan that ran is the one checked, unless an invalidation
		 * came in between (an ANALYZE of the query's tables): then the
		 * one that ran is checked, and fails the run if it does not pass.
		 */
		if (source->gplan != cplan && !plan_checks(source->gplan, &c))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the plan of a run's query changed as it started"),
					 errdetail("Its rows may have been diffed before all its conditions were checked."),
					 errhint("The next run diffs them again.")));
	}
	if (cplan != NULL)
		ReleaseCachedPlan(cplan, NULL);
	SPI_freeplan(plan);
}

/*
 * Run sql (a statement over the sync's query whose WHERE ends with the
 * probe's condition) as owner with search_path path, if its plan
 * evaluates that condition last where the rows are read (above); false
 * if not, and nothing run.
 */
bool
retl_probe_exec_filtered(Oid owner, const char *sql, const char *path, int expected)
{
	FilteredExec f = {sql, expected, false, 0};

	retl_with_path(owner, path, exec_filtered, &f);
	return f.done;
}
