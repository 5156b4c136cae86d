/*
 * webhook.c: the webhook connector: one POST of a JSON batch.
 *
 *   POST <url>
 *   Content-Type: application/json
 *   Idempotency-Key: <id>          (same value in webhook-id)
 *   <destination headers, {{secret:NAME}} substituted>
 *
 *   {"sync": "...", "records": [{"id", "op", "key", "data", "captured_at"}]}
 *
 * The idempotency key of a one-record request is the record id; for a
 * batch it is derived from the record ids, so a retry of the same records
 * carries the same key.  Runs in the worker's claim transaction (secrets
 * are read with SPI), before the request is sent.
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "connectors/webhook.h"

static const char *
op_name(char op)
{
	switch (op)
	{
		case 'd':
			return "delete";
		case 'i':
			return "insert";
		default:
			return "upsert";
	}
}

static char *
secret_value(RetlRequest *req, const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	char	   *value;

	if (SPI_execute_with_args("SELECT value FROM retl.secrets WHERE name = $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read retl.secrets");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("secret \"%s\" does not exist", name),
				 errhint("Create it with SELECT retl_set_secret('%s', value).", name)));
	value = MemoryContextStrdup(req->cxt,
								SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
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
		secret = secret_value(req, pnstrdup(name, end - name));
		appendStringInfoString(&buf, secret);
		p = end + 2;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

static void
add_header(RetlRequest *req, const char *name, const char *value)
{
	char	   *line;
	struct curl_slist *list;

	if (strpbrk(value, "\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("header \"%s\" would contain a line break", name),
				 errhint("A secret used in a header must be a single line.")));
	/* "Name:" with nothing after it makes libcurl drop that header */
	line = value[0] ? psprintf("%s: %s", name, value) : psprintf("%s:", name);
	list = curl_slist_append(req->headers, line);
	if (list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not build request headers")));
	req->headers = list;
}

static char *
idempotency_key(RetlRequest *req)
{
	StringInfoData ids;
	uint64		h;

	if (req->nrecords == 1)
		return req->records[0].record_id;
	initStringInfo(&ids);
	for (int i = 0; i < req->nrecords; i++)
		appendStringInfo(&ids, "%s,", req->records[i].record_id);
	h = hash_bytes_extended((const unsigned char *) ids.data, ids.len, 0);
	return psprintf("batch-%016llx-%d", (unsigned long long) h, req->nrecords);
}

/* Fill in url, headers and body of a claimed request. */
void
retl_webhook_build(RetlRequest *req, RetlSync *sync)
{
	MemoryContext old = MemoryContextSwitchTo(req->cxt);
	cJSON	   *headers;
	cJSON	   *item;
	char	   *key;

	req->url = pstrdup(sync->url);

	initStringInfo(&req->body);
	appendStringInfoString(&req->body, "{\"sync\": ");
	escape_json(&req->body, sync->name);
	appendStringInfoString(&req->body, ", \"records\": [");
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		appendStringInfoString(&req->body, i > 0 ? ", {\"id\": " : "{\"id\": ");
		escape_json(&req->body, r->record_id);
		appendStringInfo(&req->body, ", \"op\": \"%s\", \"key\": %s", op_name(r->op), r->key);
		if (r->op != 'd' && r->data != NULL)
			appendStringInfo(&req->body, ", \"data\": %s", r->data);
		appendStringInfoString(&req->body, ", \"captured_at\": ");
		escape_json(&req->body, r->captured_at);
		appendStringInfoChar(&req->body, '}');
	}
	appendStringInfoString(&req->body, "]}");

	key = idempotency_key(req);
	add_header(req, "Content-Type", "application/json");
	add_header(req, "Idempotency-Key", key);
	add_header(req, "webhook-id", key);
	add_header(req, "Expect", "");

	headers = cJSON_Parse(sync->headers);
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
				add_header(req, item->string, retl_substitute_secrets(req, item->valuestring));
		}
	}
	PG_FINALLY();
	{
		cJSON_Delete(headers);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
}
