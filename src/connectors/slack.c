/*
 * slack.c: the slack connector: a message per record, with the Web API's
 * chat.postMessage.
 *
 *   destination: url (default https://slack.com/api), auth
 *                {"type": "bearer", "token": "{{secret:BOT_TOKEN}}"}
 *   sync:        "channel": "C0123ABC" or "#alerts",
 *                "text": <SQL text expression over the record>,
 *                "blocks": <SQL jsonb expression> (optional)
 *
 *   POST {url}/chat.postMessage  {"channel", "text"[, "blocks"]}
 *
 * The message is made as the http connector makes a body (http.c: the
 * expressions checked at creation, run as the sync's owner).  Slack
 * answers HTTP 200 whether it posted or not: {"ok": true} is delivered,
 * {"ok": false, "error": "channel_not_found" | "not_in_channel" |
 * "invalid_auth" | ...} is dead-lettered with the error, "ratelimited" and
 * the other transient errors are retried; a 429 with Retry-After pauses
 * the destination (the engine's rule).  Default rate: one message a second,
 * as Slack asks per channel.
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "connectors/connector.h"
#include "connectors/http.h"
#include "sync/expr.h"

/* errors Slack documents as worth trying again */
static const char *const transient[] = {
	"ratelimited", "rate_limited", "service_unavailable", "internal_error", "fatal_error",
	"request_timeout", NULL
};

static char *
item(cJSON *opts, const char *name)
{
	cJSON	   *v = cJSON_GetObjectItemCaseSensitive(opts, name);

	if (v == NULL || cJSON_IsNull(v))
		return NULL;
	if (!cJSON_IsString(v) || v->valuestring == NULL || v->valuestring[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" of a slack sync must be a non-empty string", name)));
	return pstrdup(v->valuestring);
}

/* The http options a slack sync's options stand for (JSON text). */
static char *
as_http(const char *sync_options)
{
	cJSON	   *opts = cJSON_Parse(sync_options);
	char	   *channel;
	char	   *text;
	char	   *blocks;
	cJSON	   *http;
	cJSON	   *request;
	char	   *printed;
	char	   *result;

	if (opts == NULL)
		elog(ERROR, "retl: could not read the options of a slack sync");
	channel = item(opts, "channel");
	text = item(opts, "text");
	blocks = item(opts, "blocks");
	cJSON_Delete(opts);
	if (channel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a slack sync needs option \"channel\""),
				 errhint("A channel's id (\"C0123ABC\") or name (\"#alerts\").")));
	if (text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a slack sync needs option \"text\", a SQL expression"),
				 errhint("For example format('New lead: %%s (%%s)', data->>'name', data->>'email').")));
	retl_check_expression("option \"text\" of a slack sync", text);
	if (blocks != NULL)
		retl_check_expression("option \"blocks\" of a slack sync", blocks);

	http = cJSON_CreateObject();
	request = cJSON_AddObjectToObject(http, "request");
	if (request == NULL ||
		cJSON_AddStringToObject(request, "path", "'/chat.postMessage'") == NULL ||
		cJSON_AddStringToObject(request, "content_type", "application/json; charset=utf-8") == NULL ||
		cJSON_AddStringToObject(request, "body",
								psprintf("pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
										 "'channel', %s, 'text', (\n%s\n)::pg_catalog.text,"
										 " 'blocks', (\n%s\n)::pg_catalog.jsonb))",
										 quote_literal_cstr(channel), text,
										 blocks ? blocks : "NULL")) == NULL)
	{
		cJSON_Delete(http);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	printed = cJSON_PrintUnformatted(http);
	cJSON_Delete(http);
	if (printed == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	result = pstrdup(printed);
	cJSON_free(printed);
	return result;
}

static void
slack_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	retl_http_check(as_http(JsonbToCString(NULL, &options->root, VARSIZE(options))), 1, owner,
					"the message (options \"text\" and \"blocks\")");
}

static void
slack_build(RetlRequest *req, RetlSync *sync)
{
	retl_http_build(req, sync, as_http(sync->options));
	/* the answer is read back (it says whether the message was posted) */
	req->keep_response = true;
}

static void
slack_read_answer(RetlRequest *req, RetlSync *sync)
{
	cJSON	   *answer;
	cJSON	   *ok;
	char	   *error = NULL;
	RetlOutcome outcome;
	char	   *message = NULL;

	if (req->status != 200)
		return;					/* 429 and the like: the engine's rule */
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	ok = answer ? cJSON_GetObjectItemCaseSensitive(answer, "ok") : NULL;
	if (cJSON_IsTrue(ok))
		outcome = RETL_OUTCOME_DELIVERED;
	else
	{
		cJSON	   *e = answer ? cJSON_GetObjectItemCaseSensitive(answer, "error") : NULL;

		error = cJSON_IsString(e) && e->valuestring ? pstrdup(e->valuestring) : pstrdup("(none)");
		outcome = RETL_OUTCOME_DEAD;
		for (int i = 0; transient[i] != NULL; i++)
			if (strcmp(transient[i], error) == 0)
				outcome = RETL_OUTCOME_RETRY;
		message = answer ? psprintf("Slack did not post the message: %s", error) :
			pstrdup("Slack answered HTTP 200 with no JSON");
		if (answer == NULL)
			outcome = RETL_OUTCOME_RETRY;
	}
	cJSON_Delete(answer);
	for (int i = 0; i < req->nrecords; i++)
	{
		req->records[i].outcome = outcome;
		req->records[i].message = message;
	}
}

static const char *const slack_sync_options[] = {"channel", "text", "blocks", NULL};
static const char *const no_options[] = {NULL};

const RetlConnector retl_slack_connector = {
	.kind = "slack",
	.destination_options = no_options,
	.sync_options = slack_sync_options,
	.default_url = "https://slack.com/api",
	/* a message is one record: new rows (append) and audiences' entries (insert) */
	.modes = "append, insert",
	.max_records = 1,
	.max_bytes = 1048576,
	.default_rate_limit = 1,
	.default_max_concurrency = 1,
	.check_destination = NULL,
	.check_sync = slack_check_sync,
	.build = slack_build,
	.read_answer = slack_read_answer,
};
