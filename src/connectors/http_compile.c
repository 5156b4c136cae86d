/*
 * http_compile.c: an http sync's options compiled into the statements
 * that build its requests and read their answers (http.c runs them), and
 * checked at creation as the sync's owner.
 *
 * "request" and "delete" each become one statement over the records'
 * columns (an aggregate over the batch with batch_size above 1), "success"
 * and "remember" one over the answer and the records; each expression is
 * checked on its own first, so an error names the option.
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "base/identity.h"
#include "base/subxact.h"
#include "connectors/auth.h"
#include "connectors/headers.h"
#include "connectors/http.h"
#include "connectors/http_compile.h"
#include "sync/expr.h"

static HTAB *compiled_syncs = NULL;

static const char *const record_columns =
"ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.jsonb[]),"
" pg_catalog.unnest($3::pg_catalog.jsonb[]), pg_catalog.unnest($4::pg_catalog.text[]),"
" pg_catalog.unnest($5::pg_catalog.timestamptz[]), pg_catalog.unnest($6::pg_catalog.text[]),"
" pg_catalog.unnest($7::pg_catalog.text[]))"
" AS r(op, key, data, record_id, captured_at, sync, remembered_id)";

/* the answer, once per record of the request (n: its place in the batch) */
static const char *const answer_columns =
"(SELECT $1::pg_catalog.int4 AS status, $2::pg_catalog.jsonb AS response,"
" $3::pg_catalog.text AS response_text) a,"
" ROWS FROM (pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.jsonb[]),"
" pg_catalog.unnest($6::pg_catalog.text[]), pg_catalog.unnest($7::pg_catalog.text[]))"
" WITH ORDINALITY AS r(op, key, record_id, remembered_id, n)";

/*
 * The search_path expressions run with: PostgreSQL's functions first, then
 * schema retl, which holds retl_urlencode and which only the extension's
 * owner may create in (its other functions start with "_" and are not
 * executable by users).  Not the schema the extension is installed in:
 * where others may create functions there (public, in a database from
 * before PostgreSQL 15), a function of theirs matching an expression's
 * call better than PostgreSQL's own (format(text, text)) would run as the
 * sync's owner.  Another function is schema-qualified.
 */
const char *
retl_http_expression_path(void)
{
	return "pg_catalog, retl, pg_temp";
}

static void
bad(const char *option, const char *message, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" of an http sync %s", option, message),
			 hint ? errhint("%s", hint) : 0));
}

/* One SQL expression, named as the option it is. */
static void
check_expr(const char *option, const char *expr)
{
	retl_check_expression(psprintf("option \"%s\" of an http sync", option), expr);
}

static char *
string_item(cJSON *obj, const char *name, const char *option)
{
	cJSON	   *item = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (item == NULL || cJSON_IsNull(item))
		return NULL;
	if (!cJSON_IsString(item) || item->valuestring == NULL)
		bad(option, psprintf("field \"%s\" must be a string", name), NULL);
	return pstrdup(item->valuestring);
}

/* Compile "request" or "delete" into t; batch: the records are aggregated. */
static void
compile_template(cJSON *spec, const char *option, bool batch, Template *t)
{
	static const char *const methods[] = {"POST", "PUT", "PATCH", "DELETE", "GET", NULL};
	cJSON	   *item;
	cJSON	   *headers;
	char	   *method;
	char	   *path;
	char	   *body;
	StringInfoData sql;

	if (!cJSON_IsObject(spec))
		bad(option, "must be a JSON object", "For example {\"method\": \"PUT\", \"path\": \"format('/users/%s', key->>'id')\"}.");
	cJSON_ArrayForEach(item, spec)
	{
		if (strcmp(item->string, "method") != 0 && strcmp(item->string, "path") != 0 &&
			strcmp(item->string, "body") != 0 && strcmp(item->string, "headers") != 0 &&
			strcmp(item->string, "content_type") != 0)
			bad(option, psprintf("has an unknown field \"%s\"", item->string),
				"Its fields: method, path, body, headers, content_type.");
	}
	method = string_item(spec, "method", option);
	t->method = "POST";
	if (method != NULL)
	{
		bool		ok = false;

		for (int i = 0; methods[i] != NULL && !ok; i++)
			if (strcmp(methods[i], method) == 0)
			{
				t->method = methods[i];
				ok = true;
			}
		if (!ok)
			bad(option, psprintf("has method \"%s\"", method), "One of POST, PUT, PATCH, DELETE, GET.");
	}
	path = string_item(spec, "path", option);
	body = string_item(spec, "body", option);
	t->content_type = string_item(spec, "content_type", option);
	if (t->content_type == NULL)
		t->content_type = pstrdup("application/json");
	if (strpbrk(t->content_type, "\r\n") != NULL)
		bad(option, "has a content_type with a line break", NULL);
	if (strcmp(t->method, "GET") == 0)
	{
		if (body != NULL)
			bad(option, "has a body with method GET", NULL);
		t->content_type = NULL;
	}
	t->has_path = path != NULL;
	t->has_body = body != NULL;
	if (path)
		check_expr(psprintf("%s.path", option), path);
	if (body)
		check_expr(psprintf("%s.body", option), body);

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT (\n%s\n)::pg_catalog.text, (\n%s\n)::pg_catalog.text",
					 path ? path : "NULL", body ? body : "NULL");
	t->uses_ids = (path && strstr(path, "remembered_id")) || (body && strstr(body, "remembered_id"));
	headers = cJSON_GetObjectItemCaseSensitive(spec, "headers");
	t->nheaders = 0;
	if (headers != NULL)
	{
		if (!cJSON_IsObject(headers))
			bad(option, "has headers that are not an object of SQL expressions", NULL);
		t->header_names = palloc(sizeof(char *) * (cJSON_GetArraySize(headers) + 1));
		cJSON_ArrayForEach(item, headers)
		{
			const char *name = item->string;

			if (name[0] == '\0' ||
				strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+.^_`|~-") != strlen(name))
				bad(option, psprintf("has an invalid header name \"%s\"", name), NULL);
			if (retl_header_set_by_retl(name))
				bad(option, psprintf("sets header \"%s\", which retl sets", name),
					pg_strcasecmp(name, "Content-Type") == 0 ? "Give the content type as content_type." :
					psprintf("retl sets %s itself.", retl_headers_set_by_retl()));
			if (!cJSON_IsString(item))
				bad(option, psprintf("has header \"%s\" that is not a SQL expression (a string)", name),
					"A constant is a SQL string literal: \"'v2'\".");
			check_expr(psprintf("%s.headers.%s", option, name), item->valuestring);
			appendStringInfo(&sql, ", (\n%s\n)::pg_catalog.text", item->valuestring);
			t->uses_ids |= strstr(item->valuestring, "remembered_id") != NULL;
			t->header_names[t->nheaders++] = pstrdup(name);
		}
	}
	appendStringInfo(&sql, "\nFROM %s%s", record_columns, batch ? " GROUP BY ()" : "");
	t->sql = sql.data;
}

/* Compile a sync's options (cJSON object) into c. */
static void
compile_options(cJSON *opts, int batch_size, Compiled *c)
{
	cJSON	   *request = cJSON_GetObjectItemCaseSensitive(opts, "request");
	cJSON	   *delete = cJSON_GetObjectItemCaseSensitive(opts, "delete");
	char	   *success = string_item(opts, "success", "success");
	char	   *remember = string_item(opts, "remember", "remember");
	bool		batch = batch_size > 1;

	c->batch_size = batch_size;
	if (request == NULL)
		request = cJSON_CreateObject();
	compile_template(request, "request", batch, &c->request);
	c->has_delete = delete != NULL;
	if (c->has_delete)
		compile_template(delete, "delete", batch, &c->delete);
	c->has_success = success != NULL;
	c->has_remember = remember != NULL;
	if (success)
		check_expr("success", success);
	if (remember)
		check_expr("remember", remember);
	c->answer_sql = NULL;
	if (success || remember)
		c->answer_sql = psprintf("SELECT (\n%s\n)::pg_catalog.bool, (\n%s\n)::pg_catalog.text FROM %s ORDER BY r.n",
								 success ? success : "NULL", remember ? remember : "NULL",
								 answer_columns);
}

Oid			retl_http_record_types[RECORD_COLUMNS] = {TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID, TEXTARRAYOID,
TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
Oid			retl_http_answer_types[ANSWER_COLUMNS] = {INT4OID, JSONBOID, TEXTOID, TEXTARRAYOID, JSONBARRAYOID,
TEXTARRAYOID, TEXTARRAYOID};

typedef struct PrepareWork
{
	const char *sql;
	int			nargs;
	Oid		   *types;
} PrepareWork;

typedef struct PrepareAs
{
	PrepareWork *w;
	Oid			owner;
	const char *path;
} PrepareAs;

static void prepare(void *arg);

static void
prepare_as(void *arg)
{
	PrepareAs  *a = arg;

	retl_with_path(a->owner, a->path, prepare, a->w);
}

/* Parse, analyze and plan a statement (as the role running it). */
static void
prepare(void *arg)
{
	PrepareWork *w = arg;
	SPIPlanPtr	plan = SPI_prepare(w->sql, w->nargs, w->types);

	if (plan == NULL)
		elog(ERROR, "retl: could not prepare an expression: %s", SPI_result_code_string(SPI_result));
	SPI_freeplan(plan);
}

/*
 * A statement of the sync's options checked as the owner: names, types,
 * aggregates.  An error says which part, without the generated SQL.
 */
static void
check_statement(const char *what, const char *sql, int nargs, Oid *types, Oid owner, bool answer)
{
	PrepareWork w = {sql, nargs, types};
	const char *path = retl_http_expression_path();
	ErrorData  *edata = retl_in_subtransaction(prepare_as, &(PrepareAs) {&w, owner, path});

	if (edata != NULL)
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("%s of the sync does not compile: %s", what, edata->message),
				 edata->hint ? errhint("%s", edata->hint) : 0,
				 errdetail("Its expressions see %s.", answer ?
						   "the answer's columns status, response (jsonb) and response_text, and the record's op, key, record_id, remembered_id and n (its place in the batch)" :
						   "the record's columns op, key, data, record_id, captured_at, sync and remembered_id")));
}

static int
effective_batch(Jsonb *options, Jsonb *dest_options)
{
	char	   *text = JsonbToCString(NULL, &options->root, VARSIZE(options));
	cJSON	   *o = cJSON_Parse(text);
	cJSON	   *b = o ? cJSON_GetObjectItemCaseSensitive(o, "batch_size") : NULL;
	int			n = 1;

	if (cJSON_IsNumber(b))
		n = (int) b->valuedouble;
	else
	{
		cJSON_Delete(o);
		text = JsonbToCString(NULL, &dest_options->root, VARSIZE(dest_options));
		o = cJSON_Parse(text);
		b = o ? cJSON_GetObjectItemCaseSensitive(o, "batch_size") : NULL;
		if (cJSON_IsNumber(b))
			n = (int) b->valuedouble;
	}
	cJSON_Delete(o);
	return n;
}

/*
 * At creation: http options (JSON text) compile, and every statement plans
 * as the owner.  Also for connectors that speak through this one (slack.c).
 */
void
retl_http_check(const char *text, int batch_size, Oid owner, const char *what)
{
	cJSON	   *opts = cJSON_Parse(text);
	Compiled	c;

	if (opts == NULL)
		elog(ERROR, "retl: could not read the options of a sync");
	PG_TRY();
	{
		compile_options(opts, batch_size, &c);
	}
	PG_FINALLY();
	{
		cJSON_Delete(opts);
	}
	PG_END_TRY();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "retl: SPI_connect failed");
	check_statement(what ? what : "option \"request\"", c.request.sql, RECORD_COLUMNS, retl_http_record_types,
					owner, false);
	if (c.has_delete)
		check_statement("option \"delete\"", c.delete.sql, RECORD_COLUMNS, retl_http_record_types, owner, false);
	if (c.answer_sql)
		check_statement("the success or remember rule", c.answer_sql, ANSWER_COLUMNS,
						retl_http_answer_types, owner, true);
	SPI_finish();
}

/*
 * At creation: no header of "request" or "delete" is one the destination
 * gives already, in its headers or by its auth (both would be sent).
 */
static void
check_destination_headers(Jsonb *options, Jsonb *dest_options)
{
	static const char *const templates[] = {"request", "delete", NULL};
	char	   *auth_header = retl_auth_header_name(dest_options);
	char	   *text = JsonbToCString(NULL, &dest_options->root, VARSIZE(dest_options));
	cJSON	   *dest = cJSON_Parse(text);
	cJSON	   *opts;
	const char *clash = NULL;
	const char *option = NULL;
	bool		by_auth = false;

	text = JsonbToCString(NULL, &options->root, VARSIZE(options));
	opts = cJSON_Parse(text);
	for (int i = 0; templates[i] != NULL && clash == NULL; i++)
	{
		cJSON	   *spec = cJSON_GetObjectItemCaseSensitive(opts, templates[i]);
		cJSON	   *headers = cJSON_GetObjectItemCaseSensitive(spec, "headers");
		cJSON	   *item;

		if (!cJSON_IsObject(headers))
			continue;
		cJSON_ArrayForEach(item, headers)
		{
			cJSON	   *given;

			bool		given_too = false;

			by_auth = auth_header != NULL && pg_strcasecmp(item->string, auth_header) == 0;
			cJSON_ArrayForEach(given, cJSON_GetObjectItemCaseSensitive(dest, "headers"))
				given_too |= pg_strcasecmp(given->string, item->string) == 0;
			if (by_auth || given_too)
			{
				clash = pstrdup(item->string);
				option = templates[i];
				break;
			}
		}
	}
	cJSON_Delete(opts);
	cJSON_Delete(dest);
	if (clash != NULL)
		bad(option, psprintf("sets header \"%s\", which its destination's %s", clash,
							 by_auth ? "auth sets" : "headers give"),
			by_auth ? "Leave it to the destination's auth, or use a destination without auth." :
			"Give it in one place: the destination's headers go with every request of its syncs.");
}

void
retl_http_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	retl_http_check(JsonbToCString(NULL, &options->root, VARSIZE(options)),
					effective_batch(options, dest_options), owner, NULL);
	check_destination_headers(options, dest_options);
}

/* A sync's definition compiled from http options, again when they changed. */
Compiled *
retl_http_compiled(RetlSync *sync, const char *options)
{
	Compiled   *c;
	bool		found;
	MemoryContext old;
	cJSON	   *opts;

	if (compiled_syncs == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int);
		ctl.entrysize = sizeof(Compiled);
		compiled_syncs = hash_create("retl http syncs", 16, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	c = hash_search(compiled_syncs, &sync->id, HASH_ENTER, &found);
	if (found && c->options != NULL && strcmp(c->options, options) == 0 &&
		c->batch_size == sync->batch_size)
		return c;
	c->options = NULL;
	opts = cJSON_Parse(options);
	if (opts == NULL)
		elog(ERROR, "retl: could not read the options of sync \"%s\"", sync->name);
	/* leaks a superseded definition's few strings: syncs change rarely */
	old = MemoryContextSwitchTo(TopMemoryContext);
	PG_TRY();
	{
		compile_options(opts, sync->batch_size, c);
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(old);
		cJSON_Delete(opts);
	}
	PG_END_TRY();
	c->options = MemoryContextStrdup(TopMemoryContext, options);
	return c;
}

