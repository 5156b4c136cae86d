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

/* A secret's value, remembered by the request for redaction. */
char *
retl_secret_value(RetlRequest *req, const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	char	   *value;
	MemoryContext cxt = CurrentMemoryContext;

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
	/* SPI leaves its own context current; the caller's allocations go on */
	MemoryContextSwitchTo(cxt);
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
		appendStringInfo(&ids, "%s,", req->records[i].record_id);
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
