/*
 * query.c: a sync's source as a query: told apart from a table name,
 * its statement, its columns.
 *
 * What PostgreSQL's parser says of a source, at creation (retl._source_is_query,
 * retl._query_text) and what the planner says of its columns, as the role
 * the query will run as (retl._query_columns, and a run describing it).
 */
#include "postgres.h"

#include <ctype.h>

#include "executor/spi.h"
#include "funcapi.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/plancache.h"
#include "utils/regproc.h"

#include "base/identity.h"
#include "base/subxact.h"
#include "models/query.h"

/* A query given as a source, without trailing semicolons and blanks. */
char *
retl_trimmed_query(const char *query)
{
	char	   *q = pstrdup(query);
	int			len = strlen(q);

	while (len > 0 && (q[len - 1] == ';' || isspace((unsigned char) q[len - 1])))
		q[--len] = '\0';
	return q;
}

/* Describe a query (SPI_tuptable: its columns, no rows): run as its caller. */
void
retl_describe_query(void *arg)
{
	if (SPI_execute(psprintf("SELECT * FROM (%s\n) q LIMIT 0", (char *) arg), true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not describe the query");
}

/*
 * The rows a query returns, as the planner estimates them (run as its
 * caller): it is planned, not run.
 */
void
retl_estimate_query_rows(void *arg)
{
	RetlRowEstimate *e = (RetlRowEstimate *) arg;
	SPIPlanPtr	plan = SPI_prepare(psprintf("SELECT * FROM (%s\n) q", e->query), 0, NULL);
	CachedPlan *cplan;
	PlannedStmt *stmt;

	if (plan == NULL)
		elog(ERROR, "retl: could not plan the query: %s", SPI_result_code_string(SPI_result));
	/* (an unsaved plan's: owned by no resource owner) */
	cplan = SPI_plan_get_cached_plan(plan);
	if (cplan == NULL || list_length(cplan->stmt_list) != 1)
		elog(ERROR, "retl: could not plan the query");
	stmt = linitial_node(PlannedStmt, cplan->stmt_list);
	e->rows = stmt->planTree != NULL ? stmt->planTree->plan_rows : 0;
	ReleaseCachedPlan(cplan, NULL);
	SPI_freeplan(plan);
}

PG_FUNCTION_INFO_V1(retl_source_is_query);
PG_FUNCTION_INFO_V1(retl_query_text);
PG_FUNCTION_INFO_V1(retl_query_columns);

/* A source read by PostgreSQL's parser (in a subtransaction: it may fail) */
typedef struct ParsedSource
{
	char	   *source;
	List	   *parsed;
} ParsedSource;

static void
parse_source(void *arg)
{
	ParsedSource *p = (ParsedSource *) arg;

	p->parsed = raw_parser(p->source, RAW_PARSE_DEFAULT);
}

/*
 * retl._source_is_query(source): true for one SELECT (or VALUES, TABLE,
 * WITH ... SELECT) statement, false for a relation name, as PostgreSQL's
 * own parser reads them; an error for anything else.
 */
Datum
retl_source_is_query(PG_FUNCTION_ARGS)
{
	ParsedSource parse = {text_to_cstring(PG_GETARG_TEXT_PP(0)), NIL};
	char	   *source = parse.source;
	ErrorData  *parse_error = retl_in_subtransaction(parse_source, &parse);
	List	   *parsed = parse.parsed;
	RawStmt    *raw;

	if (parse_error)
	{
		/* Not SQL: a relation name, if it reads as one. */
		List	   *names = NIL;

		PG_TRY();
		{
			names = stringToQualifiedNameList(source);
		}
		PG_CATCH();
		{
			FlushErrorState();
			/* the parser's position is in the source, not in the caller's query */
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("sync source is neither a table name nor a valid query: %s",
							parse_error->message),
					 errhint("Give a table name (schema-qualified or on the search_path) or a SELECT query.")));
		}
		PG_END_TRY();
		(void) names;
		PG_RETURN_BOOL(false);
	}
	if (list_length(parsed) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a sync source must be one query, not %d statements", list_length(parsed))));
	raw = linitial_node(RawStmt, parsed);
	if (!IsA(raw->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a sync source must be a table name or a SELECT query"),
				 errhint("Statements that change data cannot be a source.")));
	PG_RETURN_BOOL(true);
}

/*
 * retl._query_text(query): the one statement of a query source, as the
 * parser delimits it: without a trailing semicolon or what follows it.
 */
Datum
retl_query_text(PG_FUNCTION_ARGS)
{
	char	   *source = text_to_cstring(PG_GETARG_TEXT_PP(0));
	List	   *parsed = raw_parser(source, RAW_PARSE_DEFAULT);
	RawStmt    *raw;
	int			len;

	if (list_length(parsed) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a query source must be one statement, not %d", list_length(parsed))));
	raw = linitial_node(RawStmt, parsed);
	len = raw->stmt_len > 0 ? raw->stmt_len : (int) strlen(source) - raw->stmt_location;
	PG_RETURN_TEXT_P(cstring_to_text_with_len(source + raw->stmt_location, len));
}

/*
 * retl._query_columns(query, run_as, search_path): the name and type of
 * each result column, the query planned as the role it will run as (so its
 * privileges are checked now) with the search_path of the caller who gave it.
 */
Datum
retl_query_columns(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *query = retl_trimmed_query(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	TupleDesc	desc;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "retl: SPI_connect failed");
	retl_with_path(PG_GETARG_OID(1), text_to_cstring(PG_GETARG_TEXT_PP(2)), retl_describe_query, query);
	desc = SPI_tuptable->tupdesc;
	for (int i = 0; i < desc->natts; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(NameStr(TupleDescAttr(desc, i)->attname));
		values[1] = ObjectIdGetDatum(TupleDescAttr(desc, i)->atttypid);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
