/*
 * expr.c: a SQL expression a user gives (a computed field, an http
 * connector's request): one expression and nothing else.
 *
 * It is parsed alone, as the one target of a SELECT without FROM, so that
 * it cannot close the parenthesis retl puts it in and go on with SQL of its
 * own; compiled and run later as the sync's owner.
 */
#include "postgres.h"

#include "nodes/parsenodes.h"
#include "parser/parser.h"

#include "sync/expr.h"

static void
bad(const char *option, const char *message)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s %s", option, message),
			 errhint("For example jsonb_build_object('email', data->>'email'), or lower(email).")));
}

/* The raw parse of sql; a syntax error names the option. */
static List *
parse_expression(const char *option, const char *sql)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *volatile parsed = NIL;

	PG_TRY();
	{
		parsed = raw_parser(sql, RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s must be one SQL expression: %s", option, edata->message)));
	}
	PG_END_TRY();
	return parsed;
}

/*
 * An expression is one SQL expression: parsed alone as the one target of
 * a SELECT without FROM (so that it cannot close its parenthesis and go on
 * with SQL of its own).
 */
void
retl_check_expression(const char *option, const char *expr)
{
	List	   *parsed;
	SelectStmt *sel;

	if (expr == NULL || expr[0] == '\0')
		bad(option, "must be a SQL expression");
	parsed = parse_expression(option, psprintf("SELECT (\n%s\n)", expr));
	if (list_length(parsed) != 1 || !IsA(linitial_node(RawStmt, parsed)->stmt, SelectStmt))
		bad(option, "must be one SQL expression");
	sel = (SelectStmt *) linitial_node(RawStmt, parsed)->stmt;
	if (list_length(sel->targetList) != 1 || sel->fromClause != NIL || sel->whereClause != NULL ||
		sel->groupClause != NIL || sel->havingClause != NULL || sel->windowClause != NIL ||
		sel->valuesLists != NIL || sel->sortClause != NIL || sel->limitCount != NULL ||
		sel->limitOffset != NULL || sel->withClause != NULL || sel->op != SETOP_NONE ||
		sel->intoClause != NULL || sel->lockingClause != NIL)
		bad(option, "must be one SQL expression");
}

