/*
 * expr.c: a SQL expression a user gives (a computed field, an http
 * connector's request): one expression and nothing else.
 *
 * It is parsed alone, as the one target of a SELECT without FROM, so that
 * it cannot close the parenthesis retl puts it in and go on with SQL of its
 * own; compiled and run later as the sync's owner.
 *
 * In a statement, it is marked with a comment that says what it is
 * (retl_append_expression), so that an error PostgreSQL reports at a
 * position inside it (a column renamed since) names it: alone, "column
 * "ln" does not exist" said neither which sync nor which field.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
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


/* The comments marking an expression in a statement (what, then the end). */
#define MARK_START "/* retl: "
#define MARK_END "/* retl */"

/*
 * (expr), marked with what it is (computed field "f" of sync "s") for
 * retl_name_expression.
 */
void
retl_append_expression(StringInfo sql, const char *what, const char *expr)
{
	appendStringInfoString(sql, "(" MARK_START);
	/* (a name cannot end the comment) */
	for (const char *c = what; *c; c++)
	{
		appendStringInfoChar(sql, *c);
		if (c[0] == '*' && c[1] == '/')
			appendStringInfoChar(sql, ' ');
	}
	appendStringInfo(sql, " */\n%s\n" MARK_END ")", expr);
}

/*
 * An error caught from a statement: when PostgreSQL reported it at a
 * position inside an expression retl_append_expression marked, its message
 * is prefixed with what the expression is ("computed field "full" of sync
 * "s": column "ln" does not exist"): the message is what retl.sync_status,
 * retl.runs and the log show.
 */
void
retl_name_expression(ErrorData *edata)
{
	const char *query = edata->internalquery;
	const char *at;
	const char *start = NULL;
	const char *end;
	int			offset;

	if (query == NULL || edata->internalpos <= 0 || edata->message == NULL)
		return;
	/* (the position counts characters from 1) */
	offset = pg_mbcharcliplen(query, strlen(query), edata->internalpos - 1);
	for (at = strstr(query, "/* retl"); at != NULL && at - query <= offset;
		 at = strstr(at + 1, "/* retl"))
		start = at;
	if (start == NULL || strncmp(start, MARK_START, strlen(MARK_START)) != 0)
		return;
	start += strlen(MARK_START);
	end = strstr(start, " */");
	/* (named already: caught and thrown again on its way out) */
	if (end == NULL || (strncmp(edata->message, start, end - start) == 0 &&
						edata->message[end - start] == ':'))
		return;
	edata->message = psprintf("%.*s: %s", (int) (end - start), start, edata->message);
}
