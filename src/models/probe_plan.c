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
 * Filtered instead by WHERE retl._run_probe_filter(...) over the query
 * (whether the probe answers the row), PostgreSQL merges a simple query
 * into the statement and evaluates that condition in the node that reads
 * the rows, with the query's own conditions, in an order of its choosing
 * (by their estimated cost): the probe must see the rows those conditions
 * let through, and only them.  So the statement is planned first, and run
 * only if its plan evaluates the probe in the node whose rows are the
 * statement's (the top one, or the one under the count, or under a
 * Gather), and nowhere else; the probe's condition is made that node's
 * last.  Otherwise (a UNION ALL, whose branches each evaluate it, say)
 * the caller runs the statement of its own level.  retl._run_probe_op(key)
 * gives the output columns the probe's answer for the row the node has
 * just let through, in the same process.
 *
 * The statement is a SELECT, its rows written into pg_temp.retl_run_diff
 * as it returns them: an INSERT ... SELECT never runs in parallel.  A
 * parallel plan shares the probe's part with its workers (probe_share.c).
 * The planner is told the share of rows the probe lets through (a support
 * function): by default it expected nearly all of them, costed sending a
 * million rows through the Gather, and chose one process.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "nodes/supportnodes.h"
#include "parser/parse_func.h"
#include "utils/guc.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "base/identity.h"
#include "base/shmem.h"
#include "models/probe.h"
#include "models/probe_table.h"
#include "models/run_queue.h"

typedef struct ProbeCalls
{
	Oid			fn[2];			/* retl._run_probe_filter (bigint, jsonb) */
	Oid			op[2];			/* retl._run_probe_op (bigint, jsonb) */
	int			calls;			/* of the probe, found in the plan */
	int			op_calls;		/* of _run_probe_op */
	bool		parallel;		/* the plan has a Gather */
} ProbeCalls;

static bool
is_probe(Node *node, ProbeCalls *c)
{
	return node != NULL && IsA(node, FuncExpr) &&
		(((FuncExpr *) node)->funcid == c->fn[0] || ((FuncExpr *) node)->funcid == c->fn[1]);
}

static bool
is_op(Node *node, ProbeCalls *c)
{
	return node != NULL && IsA(node, FuncExpr) &&
		(((FuncExpr *) node)->funcid == c->op[0] || ((FuncExpr *) node)->funcid == c->op[1]);
}

static bool
count_calls(Node *node, ProbeCalls *c)
{
	if (node == NULL)
		return false;
	if (is_probe(node, c))
		c->calls++;
	if (is_op(node, c))
		c->op_calls++;
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

/* Is a condition the probe's: retl._run_probe_filter(...)? */
static bool
is_probe_qual(Node *qual, ProbeCalls *c)
{
	return is_probe(qual, c);
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
 * node whose rows are the statement's (the top one, or the one under an
 * aggregate's, or under a Gather's: then each parallel process reads its
 * share of the rows there), and read its answer (retl._run_probe_op) only
 * in that node's outputs, computed in the process that probed the row?
 * The probe's condition is then made the node's last: a scan's or a
 * join's own conditions (plan->qual), or an inner join's join conditions
 * (joinqual, evaluated after its hash or merge clauses, when it has no
 * others).  A node the walk does not know the children of hides no call
 * from it: it finds fewer calls than one, or more.
 */
static bool
probe_filters_last(PlannedStmt *stmt, ProbeCalls *c)
{
	Plan	   *rows = stmt->planTree;
	List	   *quals;
	int			op_calls;

	c->parallel = false;
	if (stmt->commandType != CMD_SELECT || rows == NULL)
		return false;
	/* a count: the aggregate, the Gather of a parallel plan, its partial aggregates */
	if (IsA(rows, Agg))
	{
		if (rows->qual != NIL)
			return false;
		rows = rows->lefttree;
	}
	if (rows != NULL && IsA(rows, Gather))
	{
		c->parallel = true;
		rows = rows->lefttree;
		if (rows != NULL && IsA(rows, Agg) && IsA(stmt->planTree, Agg))
		{
			if (rows->qual != NIL)
				return false;
			rows = rows->lefttree;
		}
	}
	if (rows == NULL || IsA(rows, Agg) || IsA(rows, Gather) || IsA(rows, GatherMerge))
		return false;
	quals = rows->qual;
	if (quals == NIL && (IsA(rows, NestLoop) || IsA(rows, MergeJoin) || IsA(rows, HashJoin)) &&
		((Join *) rows)->jointype == JOIN_INNER)
		quals = ((Join *) rows)->joinqual;
	/* every answer read where the rows are probed */
	c->op_calls = 0;
	(void) count_calls((Node *) rows->targetlist, c);
	op_calls = c->op_calls;
	c->calls = c->op_calls = 0;
	count_plan(stmt->planTree, c);
	count_plans(stmt->subplans, c);
	return c->calls == 1 && c->op_calls == op_calls && probe_qual_last(quals, c);
}

static bool
plan_checks(CachedPlan *cplan, ProbeCalls *c)
{
	return cplan != NULL && list_length(cplan->stmt_list) == 1 &&
		probe_filters_last(linitial_node(PlannedStmt, cplan->stmt_list), c);
}

/*
 * The statement's rows, written into pg_temp.retl_run_diff (key, data,
 * op) as the statement returns them: PostgreSQL plans an INSERT ...
 * SELECT in one process only, a SELECT in parallel.  A run's queue takes
 * the rows it queues as they are (run_queue.c) instead.
 */
typedef struct DiffReceiver
{
	DestReceiver pub;
	Relation	rel;
	CommandId	cid;
	BulkInsertState bistate;
	RetlRunQueue *queue;		/* NULL: every row into the table */
} DiffReceiver;

static void
diff_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	DiffReceiver *r = (DiffReceiver *) self;
	TupleDesc	desc = RelationGetDescr(r->rel);

	/* (rows written as a heap's: nothing else to maintain) */
	if (r->rel->rd_rel->relhasindex || r->rel->trigdesc != NULL)
		elog(ERROR, "retl: pg_temp.retl_run_diff has an index or a trigger");
	if (typeinfo->natts != desc->natts)
		elog(ERROR, "retl: a run's statement returns %d columns for %d", typeinfo->natts, desc->natts);
	for (int i = 0; i < desc->natts; i++)
		if (TupleDescAttr(typeinfo, i)->atttypid != TupleDescAttr(desc, i)->atttypid)
			elog(ERROR, "retl: a run's statement returns column %d of another type", i + 1);
}

static bool
diff_receive(TupleTableSlot *slot, DestReceiver *self)
{
	DiffReceiver *r = (DiffReceiver *) self;

	if (r->queue != NULL)
	{
		slot_getallattrs(slot);
		/* (key, data, op: a letter) */
		if (!slot->tts_isnull[0] && !slot->tts_isnull[2])
		{
			text	   *op = DatumGetTextPP(slot->tts_values[2]);

			if (VARSIZE_ANY_EXHDR(op) == 1 &&
				retl_run_queue_put(r->queue, *VARDATA_ANY(op), slot->tts_values[0],
								   slot->tts_values[1], slot->tts_isnull[1]))
				return true;
		}
	}
	table_tuple_insert(r->rel, slot, r->cid, 0, r->bistate);
	return true;
}

static void
diff_shutdown(DestReceiver *self)
{
}

static void
diff_destroy(DestReceiver *self)
{
}

typedef struct FilteredExec
{
	const char *sql;
	bool		into;			/* into pg_temp.retl_run_diff, or a count */
	RetlRunQueue *queue;		/* (into) the run's, or NULL */
	bool		done;
} FilteredExec;

/* Plan the statement (allowed parallel workers or not) and check its plan. */
static bool
plan_filtered(FilteredExec *f, ProbeCalls *c, SPIPlanPtr *plan, CachedPlan **cplan)
{
	/* (parallel as SPI_execute would plan it) */
	*plan = SPI_prepare_cursor(f->sql, 0, NULL, CURSOR_OPT_PARALLEL_OK);
	if (*plan == NULL)
		elog(ERROR, "retl: SPI_prepare failed (%d): %s", SPI_result, f->sql);
	*cplan = SPI_plan_get_cached_plan(*plan);
	return plan_checks(*cplan, c);
}

static void
release_plan(SPIPlanPtr plan, CachedPlan *cplan)
{
	if (cplan != NULL)
		ReleaseCachedPlan(cplan, NULL);
	SPI_freeplan(plan);
}

/* A function of retl's; InvalidOid if the database's copy of 0.2 lacks it */
static Oid
lookup_fn(const char *name, Oid type)
{
	Oid			argtypes[2] = {type, ANYOID};

	return LookupFuncName(list_make2(makeString("retl"), makeString(unconstify(char *, name))),
						  strcmp(name, "_run_probe_filter") == 0 ? 2 : 1, argtypes, true);
}

/* how recent a captured change keeps a run's statement in one process */
#define REALTIME_BUSY_MS	2000

/*
 * Are the database's realtime syncs busy (a change captured in the last
 * REALTIME_BUSY_MS), for a run at a lower priority (retl.run_nice)?  It
 * then plans its statement in one process: on the 2-core VM, parallel
 * workers of runs diffed again and again beside 1,000 changes a second
 * (make bench's (h3)) raised the realtime p99 from 6.9 to 13.4 ms with
 * two workers, 10.5 with one, even taking only idle CPU time (the
 * processes started for each statement, and the other work that waits
 * while both cores are busy).
 */
static bool
realtime_busy(void)
{
	TimestampTz at;

	if (retl_run_nice <= 0)
		return false;
	at = retl_database_captured_at(MyDatabaseId);
	return at != 0 && !TimestampDifferenceExceeds(at, GetCurrentTimestamp(), REALTIME_BUSY_MS);
}

/* Plan the statement without parallel workers (until the GUC nest level ends). */
static void
plan_in_one_process(void)
{
	(void) set_config_option("max_parallel_workers_per_gather", "0", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

static void
exec_filtered(void *arg)
{
	FilteredExec *f = (FilteredExec *) arg;
	RetlProbe  *probe = retl_probe_active();
	int			nest = NewGUCNestLevel();
	bool		shared = false;
	ProbeCalls	c;
	SPIPlanPtr	plan;
	CachedPlan *cplan;
	bool		ok;

	c.fn[0] = lookup_fn("_run_probe_filter", INT8OID);
	c.fn[1] = lookup_fn("_run_probe_filter", JSONBOID);
	c.op[0] = lookup_fn("_run_probe_op", INT8OID);
	c.op[1] = lookup_fn("_run_probe_op", JSONBOID);
	/*
	 * (a database created by a build of 0.2 before them: the statement of
	 * its own level, until the extension is created again)
	 */
	for (int i = 0; i < 2; i++)
		if (!OidIsValid(c.fn[i]) || !OidIsValid(c.op[i]))
		{
			AtEOXact_GUC(true, nest);
			return;
		}
	if (realtime_busy())
	{
		ereport(DEBUG1,
				(errmsg_internal("a run plans its statement in one process: realtime syncs are busy")));
		plan_in_one_process();
	}
	ok = plan_filtered(f, &c, &plan, &cplan);
	/* (a part in a segment is readied for a statement in one process too) */
	if (ok && probe != NULL && (c.parallel || retl_probe_shared(probe)))
		shared = retl_probe_share(probe);
	if (ok && c.parallel)
	{
		if (!shared)
		{
			/* a part not shared: planned again, in one process */
			release_plan(plan, cplan);
			plan_in_one_process();
			ok = plan_filtered(f, &c, &plan, &cplan) && !c.parallel;
		}
	}
	if (ok)
	{
		CachedPlanSource *source = linitial(SPI_plan_get_plan_sources(plan));
		DiffReceiver r;
		SPIExecuteOptions options;
		int			rc;

		memset(&options, 0, sizeof(options));
		if (f->into)
		{
			memset(&r, 0, sizeof(r));
			r.pub.receiveSlot = diff_receive;
			r.pub.rStartup = diff_startup;
			r.pub.rShutdown = diff_shutdown;
			r.pub.rDestroy = diff_destroy;
			r.pub.mydest = DestTuplestore;
			r.rel = table_openrv(makeRangeVar("pg_temp", "retl_run_diff", -1), RowExclusiveLock);
			r.cid = GetCurrentCommandId(true);
			r.bistate = GetBulkInsertState();
			r.queue = f->queue;
			options.dest = (DestReceiver *) &r;
		}
		if (shared && c.parallel)
			(void) set_config_option("retl.run_probe_segment", retl_probe_segment_name(probe),
									 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		rc = SPI_execute_plan_extended(plan, &options);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "retl: SPI_execute_plan failed (%d): %s", rc, f->sql);
		if (f->into)
		{
			FreeBulkInsertState(r.bistate);
			table_close(r.rel, NoLock);
		}
		if (shared)
			retl_probe_collect(probe);
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
	release_plan(plan, cplan);
	AtEOXact_GUC(true, nest);
}

/*
 * Run sql (a SELECT over the sync's query whose WHERE ends with the
 * probe's condition: its rows written into pg_temp.retl_run_diff if into,
 * those queue takes into retl.queue, else a count) as owner with
 * search_path path, if its plan evaluates that
 * condition where the rows are read, made the last there (above); false if
 * not, and nothing run.  A parallel plan shares the probe's part with its
 * workers (probe_share.c), or is planned again in one process if the part
 * cannot be shared.
 */
bool
retl_probe_exec_filtered(Oid owner, const char *sql, const char *path, bool into,
						 RetlRunQueue *queue)
{
	FilteredExec f = {sql, into, queue, false};

	retl_with_path(owner, path, exec_filtered, &f);
	return f.done;
}

PG_FUNCTION_INFO_V1(retl_run_probe_support);

/*
 * retl._run_probe_support(internal): the planner's support function of
 * retl._run_probe_filter.  Without it the planner expected the probe to
 * let almost every row through (a condition's default), costed a parallel
 * plan's Gather for a million rows, and chose one process.
 */
Datum
retl_run_probe_support(PG_FUNCTION_ARGS)
{
	Node	   *req = (Node *) PG_GETARG_POINTER(0);

	if (IsA(req, SupportRequestSelectivity))
	{
		SupportRequestSelectivity *sel = (SupportRequestSelectivity *) req;

		sel->selectivity = retl_probe_expected_share();
		PG_RETURN_POINTER(sel);
	}
	PG_RETURN_POINTER(NULL);
}

