/*
 * request.c: what every connector's request is made of.
 *
 * Secrets named as {{secret:NAME}} in a destination's options are read
 * (SPI, in the claim transaction) only while a request is built, kept in
 * the request's memory for redaction (delivery/redact.c) and never
 * logged.  Every request carries retl's idempotency key and the
 * destination's headers; a connector adds its content type and auth.
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "connectors/auth.h"
#include "connectors/request.h"

/*
 * A secret's value, palloc'd in the current context, or NULL when there is
 * no such secret (SPI connected; retl's own identity reads retl.secrets).
 */
char *
retl_secret_lookup(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	char	   *value;
	MemoryContext cxt = CurrentMemoryContext;

	if (SPI_execute_with_args("SELECT value FROM retl.secrets WHERE name = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read retl.secrets");
	if (SPI_processed == 0)
		return NULL;
	value = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	/* SPI leaves its own context current; the caller's allocations go on */
	MemoryContextSwitchTo(cxt);
	return value;
}

/* A secret's value, remembered by the request for redaction. */
char *
retl_secret_value(RetlRequest *req, const char *name)
{
	MemoryContext old = MemoryContextSwitchTo(req->cxt);
	char	   *value = retl_secret_lookup(name);

	MemoryContextSwitchTo(old);
	if (value == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("secret \"%s\" does not exist", name),
				 errhint("Create it with SELECT retl_set_secret('%s', value).", name)));
	req->secrets = lappend(req->secrets, value);
	return value;
}

/* value with every {{secret:NAME}} replaced by the secret's value */
char *
retl_substitute_secrets(RetlRequest *req, const char *value)
{
	StringInfoData buf;
	const char *p = value;
	const char *start;

	initStringInfo(&buf);
	while ((start = strstr(p, "{{secret:")) != NULL)
	{
		const char *name = start + strlen("{{secret:");
		const char *end = strstr(name, "}}");
		char	   *secret;

		if (end == NULL)
			break;
		appendBinaryStringInfo(&buf, p, start - p);
		secret = retl_secret_value(req, pnstrdup(name, end - name));
		appendStringInfoString(&buf, secret);
		p = end + 2;
	}
	appendStringInfoString(&buf, p);
	/* the whole value too ("Bearer ..."), which a server may echo encoded */
	if (p != value)
		req->secrets = lappend(req->secrets, MemoryContextStrdup(req->cxt, buf.data));
	return buf.data;
}

/*
 * Add a header whose value is a credential ("Bearer <token>"): the whole
 * value is one for redaction too, not only the token in it (a server may
 * echo the header encoded, and the base64 of "Bearer <token>" does not
 * hold the base64 of the token).
 */
void
retl_request_secret_header(RetlRequest *req, const char *name, const char *value)
{
	req->secrets = lappend(req->secrets, MemoryContextStrdup(req->cxt, value));
	retl_request_header(req, name, value);
}

/* Add "name: value" to the request's headers. */
void
retl_request_header(RetlRequest *req, const char *name, const char *value)
{
	char	   *line;
	struct curl_slist *list;

	if (strpbrk(value, "\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("header \"%s\" would contain a line break", name),
				 errhint("A secret or expression used in a header must be a single line.")));
	/* "Name:" with nothing after it makes libcurl drop that header */
	line = value[0] ? psprintf("%s: %s", name, value) : psprintf("%s:", name);
	list = curl_slist_append(req->headers, line);
	if (list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not build request headers")));
	req->headers = list;
}

/*
 * The request's idempotency key: the record id of a one-record request;
 * for a batch, derived from its record ids, so that the same records
 * retried together carry the same key.
 */
char *
retl_idempotency_key(RetlRequest *req)
{
	StringInfoData ids;
	uint64		h;

	if (req->nrecords == 1)
		return req->records[0].record_id;
	initStringInfo(&ids);
	for (int i = 0; i < req->nrecords; i++)
	{
		appendStringInfoString(&ids, req->records[i].record_id);
		appendStringInfoChar(&ids, ',');
	}
	h = hash_bytes_extended((const unsigned char *) ids.data, ids.len, 0);
	return psprintf("batch-%016llx-%d", (unsigned long long) h, req->nrecords);
}

/*
 * The headers every request has: the content type (NULL: none, a request
 * without a body), the idempotency key, the destination's auth and its
 * own headers, secrets substituted.
 */
void
retl_request_headers(RetlRequest *req, RetlSync *sync, const char *content_type)
{
	cJSON	   *headers;
	cJSON	   *item;

	if (content_type != NULL)
		retl_request_header(req, "Content-Type", content_type);
	retl_request_header(req, "Idempotency-Key", retl_idempotency_key(req));
	retl_request_header(req, "Expect", "");
	retl_auth_header(req, sync);

	headers = cJSON_Parse(sync->headers ? sync->headers : "{}");
	if (headers == NULL || !cJSON_IsObject(headers))
	{
		cJSON_Delete(headers);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers of the destination of sync \"%s\" are not a JSON object",
						sync->name)));
	}
	PG_TRY();
	{
		cJSON_ArrayForEach(item, headers)
		{
			if (cJSON_IsString(item) && item->string && item->valuestring)
				retl_request_header(req, item->string,
									retl_substitute_secrets(req, item->valuestring));
		}
	}
	PG_FINALLY();
	{
		cJSON_Delete(headers);
	}
	PG_END_TRY();
}

/*
 * Limit a request to the records, from the first, that share the first
 * one's group (group(r, arg) the same): a batch endpoint takes one kind of
 * operation.  The others stay claimed past req->nrecords and go back to the
 * queue when the request is built.
 */
void
retl_request_take_run(RetlRequest *req, int (*group) (RetlRecord *r, void *arg), void *arg)
{
	int			first;
	int			n = 1;

	if (req->nrecords == 0)
		return;
	first = group(&req->records[0], arg);
	while (n < req->nrecords && group(&req->records[n], arg) == first)
		n++;
	req->nrecords = n;
}

/*
 * Move the records a connector marked unsent (r->unsent, why: they are
 * dead-lettered alone) or with nothing to send (r->nothing_to_send: done)
 * past the others and out of the request.  Returns how many are left to
 * send.
 */
int
retl_request_leave_unsent(RetlRequest *req)
{
	RetlRecord *unsent = palloc(sizeof(RetlRecord) * Max(req->nrecords, 1));
	int			nunsent = 0;
	int			kept = 0;

	for (int i = 0; i < req->nrecords; i++)
	{
		if (req->records[i].unsent != NULL || req->records[i].nothing_to_send)
			unsent[nunsent++] = req->records[i];
		else
			req->records[kept++] = req->records[i];
	}
	memcpy(&req->records[kept], unsent, sizeof(RetlRecord) * nunsent);
	req->nrecords = kept;
	pfree(unsent);
	return kept;
}

/* Mark a record unsent (in the request's memory, which outlives the build). */
void
retl_record_unsent(RetlRequest *req, RetlRecord *r, const char *why)
{
	r->unsent = MemoryContextStrdup(req->cxt, why);
}

/*
 * The request's body: a JSON document, printed into the request's memory.
 * Frees the document.
 */
void
retl_request_json_body(RetlRequest *req, cJSON *doc)
{
	char	   *printed = cJSON_PrintUnformatted(doc);
	MemoryContext old;

	cJSON_Delete(doc);
	if (printed == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	old = MemoryContextSwitchTo(req->cxt);
	initStringInfo(&req->body);
	appendStringInfoString(&req->body, printed);
	MemoryContextSwitchTo(old);
	cJSON_free(printed);
}

/* A string member of a JSON object, palloc'd, or NULL. */
char *
retl_json_string(cJSON *obj, const char *name)
{
	cJSON	   *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;

	return cJSON_IsString(v) && v->valuestring ? pstrdup(v->valuestring) : NULL;
}

/*
 * A JSON value as a destination field's text: a string as it is, null as
 * NULL, anything else printed (numbers, booleans, objects).
 */
char *
retl_json_text(cJSON *v)
{
	char	   *printed;
	char	   *text;

	if (v == NULL || cJSON_IsNull(v))
		return NULL;
	if (cJSON_IsString(v))
		return pstrdup(v->valuestring ? v->valuestring : "");
	printed = cJSON_PrintUnformatted(v);
	if (printed == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	text = pstrdup(printed);
	cJSON_free(printed);
	return text;
}

/*
 * The value of a record's key when the key is one column (the id a
 * destination matches records by), as text; NULL when it is not.
 */
char *
retl_record_key_value(RetlRecord *r)
{
	cJSON	   *key = cJSON_Parse(r->key);
	char	   *value = NULL;

	if (cJSON_IsObject(key) && cJSON_GetArraySize(key) == 1)
		value = retl_json_text(key->child);
	cJSON_Delete(key);
	return value;
}

/* The name of a record's key field when the key is one column, else NULL. */
char *
retl_record_key_field(RetlRecord *r)
{
	cJSON	   *key = cJSON_Parse(r->key);
	char	   *name = NULL;

	if (cJSON_IsObject(key) && cJSON_GetArraySize(key) == 1)
		name = pstrdup(key->child->string);
	cJSON_Delete(key);
	return name;
}

/* The destination's url without a trailing slash: every path is relative to it. */
char *
retl_base_url(RetlSync *sync)
{
	int			len = strlen(sync->url);

	while (len > 0 && sync->url[len - 1] == '/')
		len--;
	return pnstrdup(sync->url, len);
}

/*
 * The answer put records into a job of the destination's (their outcome
 * RETL_OUTCOME_JOB): the request's job, to keep and check later.
 */
RetlJob *
retl_request_job(RetlRequest *req, const char *remote_id, const char *state, const char *status)
{
	RetlJob    *job = MemoryContextAllocZero(req->cxt, sizeof(RetlJob));

	job->remote_id = MemoryContextStrdup(req->cxt, remote_id);
	job->state = state ? MemoryContextStrdup(req->cxt, state) : NULL;
	job->status = status ? MemoryContextStrdup(req->cxt, status) : NULL;
	req->job = job;
	return job;
}

/* s percent-encoded for a URL path or query: all but RFC 3986's unreserved */
char *
retl_urlencode_text(const char *s)
{
	StringInfoData out;

	initStringInfo(&out);
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		unsigned char ch = *p;

		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
			ch == '-' || ch == '_' || ch == '.' || ch == '~')
			appendStringInfoChar(&out, (char) ch);
		else
			appendStringInfo(&out, "%%%02X", ch);
	}
	return out.data;
}

/* A JSON document as text, palloc'd; frees the document. */
char *
retl_json_print(cJSON *doc)
{
	char	   *printed = cJSON_PrintUnformatted(doc);
	char	   *text;

	cJSON_Delete(doc);
	if (printed == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	text = pstrdup(printed);
	cJSON_free(printed);
	return text;
}

/* A group for retl_request_take_run: deletes apart from the rest. */
int
retl_record_is_delete(RetlRecord *r, void *arg)
{
	return r->op == 'd';
}
