/*
 * http.c: the http connector: any REST, GraphQL or SOAP API, its requests
 * written as SQL expressions over the records.
 *
 * A sync's options say what a request is:
 *
 *   "request": {"method": "PUT", "path": <expr>, "body": <expr>,
 *               "headers": {"Name": <expr>}, "content_type": "text/xml"}
 *   "delete":  the same, for deletes (default: "request")
 *   "success": <boolean expr over status, response (jsonb), response_text,
 *               and the record's op, key, record_id, remembered_id and n,
 *               its place in the batch>: evaluated for each record
 *   "remember": <text expr over the same>: the destination's id of the
 *               record's key, kept (sync/ids.c) and seen by later requests
 *               as remembered_id
 *
 * Request expressions see one record as the columns op, key, data,
 * record_id, captured_at, sync and remembered_id; with a batch (batch_size
 * above 1) the request is one row of an aggregate over the batch
 * ("GROUP BY ()"), so PostgreSQL itself refuses a path or header that
 * depends on one record, and the body aggregates (jsonb_agg, string_agg,
 * xmlagg).  PostgreSQL is the template language.
 *
 * Each expression is checked at creation (one expression, parsed and typed
 * against the record's columns, as the sync's owner); the statements are
 * generated once per sync definition and planned once (base/plans.c); they
 * run as the sync's owner, security-restricted, with search_path =
 * pg_catalog, the extension's schema, pg_temp (a function of one's own is
 * schema-qualified).  An
 * expression that fails on a record's data fails that record alone
 * (dead-lettered with the message); any other failure fails the sync,
 * never the worker.
 *
 * The options are compiled into those statements, and checked, in
 * http_compile.c; this file runs them.
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "base/identity.h"
#include "base/plans.h"
#include "base/subxact.h"
#include "connectors/connector.h"
#include "connectors/http.h"
#include "connectors/http_compile.h"
#include "connectors/request.h"
#include "connectors/webhook.h"
#include "delivery/netcheck.h"
#include "delivery/redact.h"
#include "sync/ids.h"

static const char *
op_name(char op)
{
	return op == 'd' ? "delete" : op == 'i' ? "insert" : "upsert";
}

static Template *
template_for(Compiled *c, char op)
{
	return op == 'd' && c->has_delete ? &c->delete : &c->request;
}

typedef struct EvalWork
{
	RetlRequest *req;
	RetlSync   *sync;
	Template   *t;
	int			from;
	int			n;
	HeapTuple	row;
	TupleDesc	desc;
} EvalWork;

/* Is a path's segment (len bytes) "." or "..", percent-encoded or not? */
static bool
dot_segment(const char *s, int len)
{
	int			dots = 0;
	int			i = 0;

	while (i < len)
	{
		if (s[i] == '.')
			i++;
		else if (len - i >= 3 && s[i] == '%' && s[i + 1] == '2' && (s[i + 2] == 'e' || s[i + 2] == 'E'))
			i += 3;
		else
			return false;
		dots++;
	}
	return dots == 1 || dots == 2;
}

/*
 * A request's path, appended to the destination's URL, must stay under it:
 * the same scheme, user, host and port (appended to a URL without a path,
 * "@host/x" made the destination's host a user name, and the request went
 * with the destination's credentials to the host it named), and no "." or
 * ".." segment (libcurl resolves them: "/../other" left the URL's own
 * path).  A data exception: it fails the records that made it alone.
 */
static void
check_path(RetlSync *sync, const char *path)
{
	const char *error = NULL;
	const char *p = path;

	if (path == NULL)
		return;
	if (strpbrk(path, " \t\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the path of a request of sync \"%s\" has white space: \"%s\"", sync->name, path),
				 errhint("Encode the values in it with retl_urlencode().")));
	while (*p != '\0' && *p != '?' && *p != '#')
	{
		int			len = strcspn(p, "/?#");

		if (dot_segment(p, len))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the path of a request of sync \"%s\" has a \".\" or \"..\" segment: \"%s\"",
							sync->name, path),
					 errdetail("A path goes under its destination's URL."),
					 errhint("Encode the values in it with retl_urlencode().")));
		p += len;
		if (*p == '/')
			p++;
	}
	if (!retl_url_same_origin(sync->url, psprintf("%s%s", sync->url, path), &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the path of a request of sync \"%s\" leads away from its destination's host", sync->name),
				 error != NULL ? errdetail("The URL does not parse: %s.", error) :
				 errdetail("With the path, the URL names another host, port, scheme or user than the destination's URL."),
				 errhint("Start the path with \"/\" (or \"?\"), and encode the values in it with retl_urlencode().")));
}

/* Evaluate a template over records [from, from + n), as the sync's owner. */
static void
evaluate(void *arg)
{
	EvalWork   *w = arg;
	Datum	   *arrays[RECORD_COLUMNS];
	bool	   *nulls[RECORD_COLUMNS];
	Datum		values[RECORD_COLUMNS];
	Oid			elem[RECORD_COLUMNS] = {TEXTOID, JSONBOID, JSONBOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID};
	Oid			save_uid;
	int			save_sec;
	int			nest;
	MemoryContext cxt = CurrentMemoryContext;

	for (int c = 0; c < RECORD_COLUMNS; c++)
	{
		arrays[c] = palloc(sizeof(Datum) * w->n);
		nulls[c] = palloc0(sizeof(bool) * w->n);
	}
	for (int i = 0; i < w->n; i++)
	{
		RetlRecord *r = &w->req->records[w->from + i];

		arrays[0][i] = CStringGetTextDatum(op_name(r->op));
		arrays[1][i] = DirectFunctionCall1(jsonb_in, CStringGetDatum(r->key));
		if (r->data != NULL && r->op != 'd')
			arrays[2][i] = DirectFunctionCall1(jsonb_in, CStringGetDatum(r->data));
		else
			nulls[2][i] = true;
		arrays[3][i] = CStringGetTextDatum(r->record_id);
		arrays[4][i] = DirectFunctionCall3(timestamptz_in, CStringGetDatum(r->captured_at),
										   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		arrays[5][i] = CStringGetTextDatum(w->sync->name);
		if (r->known_id != NULL)
			arrays[6][i] = CStringGetTextDatum(r->known_id);
		else
			nulls[6][i] = true;
	}
	for (int c = 0; c < RECORD_COLUMNS; c++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;
		int			dims[1] = {w->n};
		int			lbs[1] = {1};

		get_typlenbyvalalign(elem[c], &typlen, &typbyval, &typalign);
		values[c] = PointerGetDatum(construct_md_array(arrays[c], nulls[c], 1, dims, lbs,
													   elem[c], typlen, typbyval, typalign));
	}
	nest = retl_begin_as(w->sync->owner, SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION,
						 retl_http_expression_path(), &save_uid, &save_sec);
	if (retl_spi_execute(w->t->sql, RECORD_COLUMNS, retl_http_record_types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not evaluate the request of sync \"%s\"", w->sync->name);
	retl_end_as(nest, save_uid, save_sec);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("the request of sync \"%s\" is %llu rows, not one", w->sync->name,
						(unsigned long long) SPI_processed)));
	MemoryContextSwitchTo(cxt);
	w->row = SPI_copytuple(SPI_tuptable->vals[0]);
	w->desc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
	check_path(w->sync, SPI_getvalue(w->row, w->desc, 1));
}

/* An error about a record's data (it fails that record alone). */
static bool
data_error(ErrorData *edata)
{
	int			category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);

	return category == ERRCODE_DATA_EXCEPTION || category == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

/*
 * Evaluate the template over the request's records.  A record whose data
 * makes it fail is marked unsent (and moved after the others); the rest
 * are evaluated again without it.
 */
static EvalWork
evaluate_records(RetlRequest *req, RetlSync *sync, Template *t)
{
	EvalWork	w = {req, sync, t, 0, req->nrecords, NULL, NULL};
	ErrorData  *edata = retl_in_subtransaction(evaluate, &w);
	int			kept = 0;
	RetlRecord *unsent;
	int			nunsent = 0;

	if (edata == NULL)
		return w;
	if (!data_error(edata))
		ReThrowError(edata);
	unsent = palloc(sizeof(RetlRecord) * req->nrecords);
	for (int i = 0; i < req->nrecords; i++)
	{
		EvalWork	one = {req, sync, t, i, 1, NULL, NULL};
		ErrorData  *e = req->nrecords == 1 ? edata : retl_in_subtransaction(evaluate, &one);

		if (e != NULL && !data_error(e))
			ReThrowError(e);
		if (e != NULL)
		{
			req->records[i].unsent = MemoryContextStrdup(req->cxt,
														 psprintf("the request of sync \"%s\" failed: %s",
																  sync->name, e->message));
			unsent[nunsent++] = req->records[i];
		}
		else
			req->records[kept++] = req->records[i];
	}
	memcpy(&req->records[kept], unsent, sizeof(RetlRecord) * nunsent);
	req->nrecords = kept;
	if (kept > 0)
	{
		w.n = kept;
		edata = retl_in_subtransaction(evaluate, &w);
		if (edata != NULL)
			ReThrowError(edata);
	}
	return w;
}

static char *
column(EvalWork *w, int n)
{
	return SPI_getvalue(w->row, w->desc, n);
}

/*
 * Build the request: the records that share the first one's template (a
 * delete's may differ), evaluated as the owner.
 */
void
retl_http_build(RetlRequest *req, RetlSync *sync, const char *options)
{
	Compiled   *c = retl_http_compiled(sync, options);
	Template   *t = template_for(c, req->records[0].op);
	MemoryContext old;
	EvalWork	w;
	char	   *path;
	char	   *body;
	int			n = 1;

	while (n < req->nrecords && template_for(c, req->records[n].op) == t)
		n++;
	req->nrecords = n;
	if (t->uses_ids)
		retl_ids_known(req);
	w = evaluate_records(req, sync, t);
	old = MemoryContextSwitchTo(req->cxt);
	if (req->nrecords == 0)
	{
		/* every record failed: nothing to send (claim.c dead-letters them) */
		MemoryContextSwitchTo(old);
		return;
	}
	path = column(&w, 1);
	body = column(&w, 2);
	/* (checked as it was evaluated) */
	req->url = psprintf("%s%s", sync->url, path ? path : "");
	req->method = t->method;
	initStringInfo(&req->body);
	if (t->has_body)
	{
		if (body != NULL)
			appendStringInfoString(&req->body, body);
	}
	else if (strcmp(t->method, "GET") != 0 && strcmp(t->method, "DELETE") != 0)
	{
		/* the webhook connector's envelope */
		appendStringInfoString(&req->body, "{\"sync\": ");
		escape_json(&req->body, req->sync_name);
		appendStringInfoString(&req->body, ", \"records\": [");
		for (int i = 0; i < req->nrecords; i++)
		{
			if (i > 0)
				appendStringInfoString(&req->body, ", ");
			retl_webhook_record(&req->body, &req->records[i]);
		}
		appendStringInfoString(&req->body, "]}");
	}
	retl_request_headers(req, sync, req->body.len > 0 || t->has_body ? t->content_type : NULL);
	for (int i = 0; i < t->nheaders; i++)
	{
		char	   *v = column(&w, 3 + i);

		if (v != NULL)
			retl_request_header(req, t->header_names[i], v);
	}
	req->keep_response = c->answer_sql != NULL;
	MemoryContextSwitchTo(old);
}

typedef struct AnswerWork
{
	RetlRequest *req;
	RetlSync   *sync;
	Compiled   *c;
	bool	   *success;		/* per record; NULL counts as false */
	char	  **remember;
} AnswerWork;

/* Evaluate success and remember over the answer, as the owner. */
static void
evaluate_answer(void *arg)
{
	AnswerWork *w = arg;
	RetlRequest *req = w->req;
	Datum		values[7];
	char		nulls[7] = "       ";
	Datum	   *ops = palloc(sizeof(Datum) * req->nrecords);
	Datum	   *keys = palloc(sizeof(Datum) * req->nrecords);
	Datum	   *ids = palloc(sizeof(Datum) * req->nrecords);
	Datum	   *known = palloc(sizeof(Datum) * req->nrecords);
	bool	   *known_nulls = palloc(sizeof(bool) * req->nrecords);
	int			dims[1] = {req->nrecords};
	int			lbs[1] = {1};
	char	   *raw = pnstrdup(req->response.data, req->response.len);
	char	   *text = retl_http_redact(req, raw);
	cJSON	   *parsed = cJSON_Parse(raw);
	Oid			save_uid;
	int			save_sec;
	int			nest;
	bool		isnull;

	values[0] = Int32GetDatum((int32) req->status);
	/*
	 * response: the body as jsonb when it is JSON; response_text: the body.
	 * Both redacted (the owner may not learn a secret of the destination's
	 * an answer echoes, not even a bit a record from what the success rule
	 * makes of it), the JSON still JSON.
	 */
	if (parsed != NULL)
	{
		Datum		j = DirectFunctionCall1(jsonb_in, CStringGetDatum(raw));

		values[1] = strcmp(text, raw) == 0 ? j :
			JsonbPGetDatum(retl_redact_jsonb(req->secrets, DatumGetJsonbP(j)));
	}
	else
		nulls[1] = 'n';
	cJSON_Delete(parsed);
	values[2] = CStringGetTextDatum(text);
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		ops[i] = CStringGetTextDatum(op_name(r->op));
		keys[i] = DirectFunctionCall1(jsonb_in, CStringGetDatum(r->key));
		ids[i] = CStringGetTextDatum(r->record_id);
		known_nulls[i] = r->known_id == NULL;
		known[i] = r->known_id ? CStringGetTextDatum(r->known_id) : (Datum) 0;
	}
	values[3] = PointerGetDatum(construct_array(ops, req->nrecords, TEXTOID, -1, false, TYPALIGN_INT));
	values[4] = PointerGetDatum(construct_array(keys, req->nrecords, JSONBOID, -1, false, TYPALIGN_INT));
	values[5] = PointerGetDatum(construct_array(ids, req->nrecords, TEXTOID, -1, false, TYPALIGN_INT));
	values[6] = PointerGetDatum(construct_md_array(known, known_nulls, 1, dims, lbs, TEXTOID, -1, false,
												   TYPALIGN_INT));
	nest = retl_begin_as(w->sync->owner, SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION,
						 retl_http_expression_path(), &save_uid, &save_sec);
	if (retl_spi_execute(w->c->answer_sql, ANSWER_COLUMNS, retl_http_answer_types, values, nulls, false, 0) != SPI_OK_SELECT ||
		SPI_processed != (uint64) req->nrecords)
		elog(ERROR, "retl: could not evaluate the success rule of sync \"%s\"", w->sync->name);
	retl_end_as(nest, save_uid, save_sec);
	for (int i = 0; i < req->nrecords; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		bool		ok = DatumGetBool(SPI_getbinval(row, SPI_tuptable->tupdesc, 1, &isnull));

		w->success[i] = ok && !isnull;
		(void) SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull);
		/*
		 * (redacted: retl.remembered_ids shows it, and the owner may not
		 * read the destination's secrets, which an answer may echo)
		 */
		w->remember[i] = isnull ? NULL :
			MemoryContextStrdup(req->cxt, retl_http_redact(req, SPI_getvalue(row, SPI_tuptable->tupdesc, 2)));
	}
}

/*
 * The answer: "success", evaluated for each record of the request, decides
 * its outcome (false or NULL: retried, then dead-lettered), else the status
 * rule; "remember" gives the record's id at the destination.  So an API
 * that answers a batch record by record (a results array, 207) has each
 * record's own outcome.
 */
void
retl_http_answer(RetlRequest *req, RetlSync *sync, const char *options)
{
	Compiled   *c = retl_http_compiled(sync, options);
	AnswerWork	w = {req, sync, c, NULL, NULL};
	ErrorData  *edata;

	if (c->answer_sql == NULL || req->nrecords == 0)
		return;
	w.success = palloc0(sizeof(bool) * req->nrecords);
	w.remember = palloc0(sizeof(char *) * req->nrecords);
	edata = retl_in_subtransaction(evaluate_answer, &w);
	if (edata != NULL)
	{
		/* (redacted: an expression's error may quote the answer) */
		char	   *message = retl_http_redact(req, psprintf("the success rule of sync \"%s\" failed: %s",
													 sync->name, edata->message));

		FreeErrorData(edata);
		for (int i = 0; i < req->nrecords; i++)
		{
			req->records[i].outcome = RETL_OUTCOME_RETRY;
			req->records[i].message = message;
		}
		return;
	}
	for (int i = 0; i < req->nrecords; i++)
	{
		if (c->has_success)
		{
			req->records[i].outcome = w.success[i] ? RETL_OUTCOME_DELIVERED : RETL_OUTCOME_RETRY;
			if (!w.success[i])
				req->records[i].message = psprintf("the answer (HTTP %ld) does not meet the success rule of sync \"%s\"",
												   req->status, sync->name);
		}
		if (c->has_remember)
			req->records[i].remember_id = w.remember[i];
	}
}

static void
http_build(RetlRequest *req, RetlSync *sync)
{
	retl_http_build(req, sync, sync->options);
}

static void
http_read_answer(RetlRequest *req, RetlSync *sync)
{
	retl_http_answer(req, sync, sync->options);
}

static const char *const http_sync_options[] = {"request", "delete", "success", "remember", NULL};
static const char *const no_options[] = {NULL};

const RetlConnector retl_http_connector = {
	.kind = "http",
	.destination_options = no_options,
	.sync_options = http_sync_options,
	.modes = "upsert, append, insert, update, mirror",
	.max_records = 1000,
	.max_bytes = 104857600,
	.default_rate_limit = 0,
	.default_max_concurrency = 8,
	.check_destination = NULL,
	.check_sync = retl_http_check_sync,
	.build = http_build,
	.read_answer = http_read_answer,
};

PG_FUNCTION_INFO_V1(retl_urlencode);

/* retl_urlencode(text): the text percent-encoded for a URL path or query (RFC 3986). */
Datum
retl_urlencode(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(retl_urlencode_text(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}
