/*
 * webhook.c: the webhook connector: one POST of a JSON batch.
 *
 *   POST <url>
 *   Content-Type: application/json
 *   Idempotency-Key: <id>          (same value in webhook-id)
 *   webhook-timestamp, webhook-signature   (with signing_secret, signing.c)
 *   <destination headers, {{secret:NAME}} substituted; its auth>
 *
 *   {"sync": "...", "records": [{"id", "op", "key", "data", "captured_at"}]}
 *
 * The idempotency key of a one-record request is the record id; for a
 * batch it is derived from the record ids, so a retry of the same records
 * carries the same key.  Any 2xx acknowledges every record (the engine's
 * status rule: no read_answer).
 */
#include "postgres.h"

#include <time.h>

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "connectors/connector.h"
#include "connectors/request.h"
#include "connectors/webhook.h"
#include "delivery/signing.h"

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

/* One record as the webhook envelope has it: {"id", "op", "key", "data", "captured_at"} */
void
retl_webhook_record(StringInfo out, RetlRecord *r)
{
	appendStringInfoString(out, "{\"id\": ");
	escape_json(out, r->record_id);
	/* (without a format: vsnprintf over each row's JSON was half of this) */
	appendStringInfoString(out, ", \"op\": \"");
	appendStringInfoString(out, op_name(r->op));
	appendStringInfoString(out, "\", \"key\": ");
	appendStringInfoString(out, r->key);
	if (r->op != 'd' && r->data != NULL)
	{
		appendStringInfoString(out, ", \"data\": ");
		appendStringInfoString(out, r->data);
	}
	appendStringInfoString(out, ", \"captured_at\": ");
	escape_json(out, r->captured_at);
	appendStringInfoChar(out, '}');
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
		resetStringInfo(&rec);
		if (i > 0)
			appendStringInfoString(&rec, ", ");
		retl_webhook_record(&rec, &req->records[i]);
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

/*
 * Fill in url, headers and body of a claimed request; records that do not
 * fit in max_batch_bytes are left out (req->nrecords lowered).
 */
static void
webhook_build(RetlRequest *req, RetlSync *sync)
{
	MemoryContext old = MemoryContextSwitchTo(req->cxt);
	char	   *key;

	req->url = pstrdup(sync->url);
	build_body(req, sync->max_batch_bytes);
	retl_request_headers(req, sync, "application/json");
	key = retl_idempotency_key(req);
	retl_request_header(req, "webhook-id", key);
	if (sync->signing_secret != NULL)
	{
		int			keylen;
		uint8	   *signing_key = retl_signing_key(retl_secret_value(req, sync->signing_secret),
												   &keylen);
		/* the attempt's time: a retry is signed again */
		int64		now = (int64) time(NULL);

		if (signing_key == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("secret \"%s\", the signing_secret of the destination of sync \"%s\", is not a Standard Webhooks secret",
							sync->signing_secret, sync->name),
					 errhint("Set it to \"whsec_\" followed by the base64 of the key.")));
		retl_request_header(req, "webhook-timestamp", psprintf(INT64_FORMAT, now));
		retl_request_header(req, "webhook-signature",
							retl_sign_webhook(signing_key, keylen, key, now,
											  req->body.data, req->body.len));
	}
	MemoryContextSwitchTo(old);
}

static const char *const webhook_destination_options[] = {"signing_secret", NULL};
static const char *const no_options[] = {NULL};

const RetlConnector retl_webhook_connector = {
	.kind = "webhook",
	.destination_options = webhook_destination_options,
	.sync_options = no_options,
	.modes = "upsert, append, insert, update, mirror",
	.max_records = 1000,
	.max_bytes = 104857600,
	.default_rate_limit = 0,
	.default_max_concurrency = 8,
	.check_destination = NULL,
	.check_sync = NULL,
	.build = webhook_build,
	.read_answer = NULL,
};
