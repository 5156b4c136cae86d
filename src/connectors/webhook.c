/*
 * webhook.c: the webhook connector: one POST of a JSON batch.
 *
 *   POST <url>
 *   Content-Type: application/json
 *   Idempotency-Key: <id>          (same value in webhook-id)
 *   webhook-timestamp, webhook-signature   (with signing_secret, signing.c)
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

#include <time.h>

#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "connectors/webhook.h"
#include "signing.h"

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
		secret = secret_value(req, pnstrdup(name, end - name));
		appendStringInfoString(&buf, secret);
		p = end + 2;
	}
	appendStringInfoString(&buf, p);
	/* the whole value too ("Bearer ..."), which a server may echo encoded */
	if (p != value)
		req->secrets = lappend(req->secrets, MemoryContextStrdup(req->cxt, buf.data));
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

/*
 * The JSON body of the request's records, as many as fit in max_bytes (at
 * least one): req->nrecords is lowered to what was included.
 */
static void
build_body(RetlRequest *req, int max_bytes)
{
	StringInfoData rec;

	initStringInfo(&req->body);
	appendStringInfoString(&req->body, "{\"sync\": ");
	escape_json(&req->body, req->sync_name);
	appendStringInfoString(&req->body, ", \"records\": [");
	initStringInfo(&rec);
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		resetStringInfo(&rec);
		appendStringInfoString(&rec, i > 0 ? ", {\"id\": " : "{\"id\": ");
		escape_json(&rec, r->record_id);
		appendStringInfo(&rec, ", \"op\": \"%s\", \"key\": %s", op_name(r->op), r->key);
		if (r->op != 'd' && r->data != NULL)
			appendStringInfo(&rec, ", \"data\": %s", r->data);
		appendStringInfoString(&rec, ", \"captured_at\": ");
		escape_json(&rec, r->captured_at);
		appendStringInfoChar(&rec, '}');
		if (i > 0 && max_bytes > 0 && req->body.len + rec.len + 2 > max_bytes)
		{
			req->nrecords = i;
			break;
		}
		appendBinaryStringInfo(&req->body, rec.data, rec.len);
	}
	appendStringInfoString(&req->body, "]}");
	pfree(rec.data);
}

/* The curl header list: retl's own headers, then the destination's. */
static void
build_headers(RetlRequest *req)
{
	char	   *key = idempotency_key(req);

	add_header(req, "Content-Type", "application/json");
	add_header(req, "Idempotency-Key", key);
	add_header(req, "webhook-id", key);
	if (req->signing_key != NULL)
	{
		/* the attempt's time: a retry is signed again */
		int64		now = (int64) time(NULL);

		add_header(req, "webhook-timestamp", psprintf(INT64_FORMAT, now));
		add_header(req, "webhook-signature",
				   retl_sign_webhook(req->signing_key, req->signing_keylen, key, now,
									 req->body.data, req->body.len));
	}
	add_header(req, "Expect", "");
	for (int i = 0; i < req->nheader_lines; i += 2)
		add_header(req, req->header_lines[i], req->header_lines[i + 1]);
}

/*
 * Fill in url, headers and body of a claimed request; records that do not
 * fit in max_batch_bytes are left out (req->nrecords lowered).
 */
void
retl_webhook_build(RetlRequest *req, RetlSync *sync)
{
	MemoryContext old = MemoryContextSwitchTo(req->cxt);
	cJSON	   *headers;
	cJSON	   *item;
	volatile int n = 0;

	req->url = pstrdup(sync->url);
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
		req->header_lines = palloc(sizeof(char *) * 2 * (cJSON_GetArraySize(headers) + 1));
		cJSON_ArrayForEach(item, headers)
		{
			if (cJSON_IsString(item) && item->string && item->valuestring)
			{
				req->header_lines[n++] = pstrdup(item->string);
				req->header_lines[n++] = retl_substitute_secrets(req, item->valuestring);
			}
		}
		req->nheader_lines = n;
	}
	PG_FINALLY();
	{
		cJSON_Delete(headers);
	}
	PG_END_TRY();

	if (sync->signing_secret != NULL)
	{
		req->signing_key = retl_signing_key(secret_value(req, sync->signing_secret),
											&req->signing_keylen);
		if (req->signing_key == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("secret \"%s\", the signing_secret of the destination of sync \"%s\", is not a Standard Webhooks secret",
							sync->signing_secret, sync->name),
					 errhint("Set it to \"whsec_\" followed by the base64 of the key.")));
	}
	build_body(req, sync->max_batch_bytes);
	build_headers(req);
	MemoryContextSwitchTo(old);
}

/*
 * A new request for n of req's records from the first: the same
 * destination and headers, its own body and idempotency key.  Used to
 * split a batch the destination refused as a whole.
 */
RetlRequest *
retl_webhook_split(RetlRequest *req, int first, int n)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "retl request",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	RetlRequest *part = palloc0(sizeof(RetlRequest));
	ListCell   *lc;

	part->cxt = cxt;
	part->sync_id = req->sync_id;
	part->sync_name = pstrdup(req->sync_name);
	part->dest_id = req->dest_id;
	part->max_attempts = req->max_attempts;
	part->max_retry_age_ms = req->max_retry_age_ms;
	part->timeout_ms = req->timeout_ms;
	part->follow_redirects = req->follow_redirects;
	part->tls_verify = req->tls_verify;
	part->url = pstrdup(req->url);
	if (req->signing_key != NULL)
	{
		part->signing_key = palloc(req->signing_keylen);
		memcpy(part->signing_key, req->signing_key, req->signing_keylen);
		part->signing_keylen = req->signing_keylen;
	}
	part->nheader_lines = req->nheader_lines;
	part->header_lines = palloc(sizeof(char *) * (req->nheader_lines + 1));
	for (int i = 0; i < req->nheader_lines; i++)
		part->header_lines[i] = pstrdup(req->header_lines[i]);
	foreach(lc, req->secrets)
		part->secrets = lappend(part->secrets, pstrdup((char *) lfirst(lc)));
	part->nrecords = n;
	part->records = palloc(sizeof(RetlRecord) * n);
	for (int i = 0; i < n; i++)
	{
		RetlRecord *src = &req->records[first + i];
		RetlRecord *dst = &part->records[i];

		*dst = *src;
		dst->record_id = pstrdup(src->record_id);
		dst->queue_ids = palloc(sizeof(int64) * src->nqueue_ids);
		memcpy(dst->queue_ids, src->queue_ids, sizeof(int64) * src->nqueue_ids);
		dst->key = pstrdup(src->key);
		dst->data = src->data ? pstrdup(src->data) : NULL;
		dst->captured_at = pstrdup(src->captured_at);
	}
	build_body(part, 0);
	build_headers(part);
	MemoryContextSwitchTo(old);
	return part;
}
