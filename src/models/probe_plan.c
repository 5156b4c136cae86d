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
 * under the INSERT, or under the count), and nowhere else; the probe's
 * condition is made that node's last.  Otherwise (a UNION ALL, whose
 * branches each evaluate it, say) the caller runs the statement of its
 * own level.  retl._run_probe_op(key) gives the output columns the probe's
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

/* Is a condition the probe's: retl._run_probe_values(...) IS NOT NULL? */
static bool
is_probe_qual(Node *qual, ProbeCalls *c)
{
	return IsA(qual, NullTest) && ((NullTest *) qual)->nulltesttype == IS_NOT_NULL &&
		is_probe((Node *) ((NullTest *) qual)->arg, c);
}

/*
 * Make the probe's condition the last of quals, the conditions a node
 * evaluates in their order (ExecQual), moving the others up: they are
 * ANDed, so only the order changes, which PostgreSQL chose by cost.  The
 * list is the plan's own (the statement's unsaved plan, run once, and
 * nobody else's).  False if the probe's condition is not in it.
 */
static bool
probe_qual_last(List *quals, ProbeCalls *c)
{
	int			n = list_length(quals);
	int			at = -1;
	void	   *probe;

	for (int i = 0; i < n && at < 0; i++)
		if (is_probe_qual((Node *) list_nth(quals, i), c))
			at = i;
	if (at < 0)
		return false;
	probe = list_nth(quals, at);
	for (int i = at; i < n - 1; i++)
		lfirst(list_nth_cell(quals, i)) = list_nth(quals, i + 1);
	llast(quals) = probe;
	return true;
}

/*
 * Does the statement's plan call the probe once, in a condition of the
 * node under its top one (an INSERT's or an aggregate's), whose rows are
 * the statement's?  That condition is then made the node's last: a scan's
 * or a join's own conditions (plan->qual), or an inner join's join
 * conditions (joinqual, evaluated after its hash or merge clauses, when it
 * has no others).  A node the walk does not know the children of hides no
 * call from it: it finds fewer calls than one, or more.
 */
static bool
probe_filters_last(PlannedStmt *stmt, ProbeCalls *c)
{
	Plan	   *top = stmt->planTree;
	Plan	   *rows;
	List	   *quals;

	if (top == NULL || !(IsA(top, ModifyTable) || IsA(top, Agg)) ||
		(IsA(top, Agg) && top->qual != NIL))
		return false;
	rows = top->lefttree;
	if (rows == NULL)
		return false;
	quals = rows->qual;
	if (quals == NIL && (IsA(rows, NestLoop) || IsA(rows, MergeJoin) || IsA(rows, HashJoin)) &&
		((Join *) rows)->jointype == JOIN_INNER)
		quals = ((Join *) rows)->joinqual;
	c->calls = 0;
	count_plan(top, c);
	count_plans(stmt->subplans, c);
	return c->calls == 1 && probe_qual_last(quals, c);
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
		 * The plan that ran is the one checked and reordered: an unsaved
		 * plan is not invalidated (plancache.h), the tables are locked
		 * since it was planned, and nothing between changes the role or
		 * the search_path it was planned with.
		 */
		if (source->gplan != cplan)
			elog(ERROR, "retl: a run's statement ran a plan other than the one checked");
	}
	if (cplan != NULL)
		ReleaseCachedPlan(cplan, NULL);
	SPI_freeplan(plan);
}

/*
 * Run sql (a statement over the sync's query whose WHERE ends with the
 * probe's condition) as owner with search_path path, if its plan
 * evaluates that condition where the rows are read, made the last there
 * (above); false if not, and nothing run.
 */
bool
retl_probe_exec_filtered(Oid owner, const char *sql, const char *path, int expected)
{
	FilteredExec f = {sql, expected, false, 0};

	retl_with_path(owner, path, exec_filtered, &f);
	return f.done;
}
