/*
 * segment.c: the segment connector (Segment's HTTP Tracking API, batch).
 *
 *   destination: url (default https://api.segment.io; an EU workspace's is
 *                https://eu1.api.segmentapis.com), auth: the source's
 *                write key as the basic user name with an empty password
 *   sync:        "type": "identify" | "track" | "group",
 *                "event": a track's event name,
 *                "user_id_field": the record's field whose value is the
 *                userId (a group's member; a track's, instead of the key)
 *
 * POST /v1/batch {"batch": [call, ...]}, each call {"type", "userId",
 * "traits" | "event" and "properties" | "groupId" and "traits",
 * "messageId": <record id>, "timestamp": <captured_at>}: identify and
 * group from upsert syncs (userId, groupId: the key, one column), track
 * from append syncs.  At most 2,500 calls and 500 KB a request and 32 KB a
 * call (500,000 and 32,000 bytes: the strictest of Segment's libraries); a
 * larger call is dead-lettered before it is sent, since Segment would
 * refuse its whole batch.  Segment answers 200 to every request it can
 * parse, whatever it later drops (no userId, a wrong write key, a
 * suppressed user): a 200 is all retl can see, and counts as delivered.  A
 * 400 (size, JSON, no write key) refuses the request; the engine halves the
 * batch down to the record at fault.  The messageId is stable across
 * retries, so Segment deduplicates a call whose answer was lost.  The
 * Tracking API deletes nothing (deleting a user is a regulation of
 * Segment's Public API): a deleted row is dead-lettered saying so.
 *
 * (From segmentio/segment-docs: connections/sources/catalog/libraries/
 * server/http-api/index.md, the spec's common fields, guides/duplicate-data.md
 * and privacy/user-deletion-and-suppression.md; see shared/CONNECTORS.md.)
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "connectors/auth.h"
#include "connectors/connector.h"
#include "connectors/request.h"

#define SEGMENT_MAX_CALLS 2500
#define SEGMENT_MAX_BYTES 500000	/* a request */
#define SEGMENT_MAX_CALL_BYTES 32000	/* a call */

/* The target of a sync, from its options. */
typedef struct SegTarget
{
	char	   *type;			/* identify, track, group */
	char	   *event;			/* track */
	char	   *user_id_field;	/* NULL: the key */
} SegTarget;

static void
segment_check_destination(Jsonb *options)
{
	char	   *type = retl_auth_type(options);
	Jsonb	   *auth = NULL;
	char	   *user = NULL;
	char	   *password = NULL;

	if (type != NULL && strcmp(type, "basic") == 0)
	{
		auth = DatumGetJsonbP(DirectFunctionCall2(jsonb_object_field, JsonbPGetDatum(options),
												  CStringGetTextDatum("auth")));
		user = retl_jsonb_string(auth, "username");
		password = retl_jsonb_string(auth, "password");
	}
	if (user == NULL || strstr(user, "{{secret:") == NULL || password == NULL || password[0] != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment destination needs its source's write key as basic auth, with an empty password"),
				 errdetail("Segment's Tracking API takes the write key as the user name of HTTP basic auth."),
				 errhint("SELECT retl_set_secret('segment_write_key', key), then {\"auth\": {\"type\": \"basic\", \"username\": \"{{secret:segment_write_key}}\", \"password\": \"\"}}.")));
}

static void
segment_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	char	   *type = retl_jsonb_string(options, "type");
	char	   *event = retl_jsonb_string(options, "event");
	char	   *field = retl_jsonb_string(options, "user_id_field");
	bool		track;

	if (type == NULL || (strcmp(type, "identify") != 0 && strcmp(type, "track") != 0 &&
						 strcmp(type, "group") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment sync needs option \"type\": \"identify\", \"track\" or \"group\""),
				 errhint("identify sets a user's traits (mode upsert), track records an event per new row (mode append), group sets a group's traits and its member (mode upsert).")));
	track = strcmp(type, "track") == 0;
	if (track && strcmp(mode, "append") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment sync of type \"track\" needs mode \"append\""),
				 errdetail("Each new row is one event; Segment cannot update or delete an event."),
				 errhint("Create it with mode => 'append'.")));
	if (!track && strcmp(mode, "upsert") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment sync of type \"%s\" needs mode \"upsert\"", type),
				 errdetail("Each changed key is sent with its latest state, which Segment merges into the %s's traits.",
						   strcmp(type, "group") == 0 ? "group" : "user"),
				 errhint("Create it with mode => 'upsert' (the default), or use type \"track\" for events.")));
	if (track && (event == NULL || event[0] == '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment sync of type \"track\" needs option \"event\", the event's name"),
				 errhint("For example {\"type\": \"track\", \"event\": \"Order Completed\"}.")));
	if (!track && retl_jsonb_has(options, "event"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"event\" is for a segment sync of type \"track\"")));
	if (retl_jsonb_has(options, "user_id_field") &&
		(field == NULL || field[0] == '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"user_id_field\" of a segment sync must name a field of its records")));
	if (strcmp(type, "identify") == 0 && retl_jsonb_has(options, "user_id_field"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"user_id_field\" is not for a segment sync of type \"identify\""),
				 errdetail("An identify call's userId is the sync's key."),
				 errhint("Give the sync the key whose value is the userId, e.g. key => '{user_id}'.")));
	if (strcmp(type, "group") == 0 && !retl_jsonb_has(options, "user_id_field"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment sync of type \"group\" needs option \"user_id_field\""),
				 errdetail("A group call's groupId is the sync's key, and Segment needs the userId of the member it joins."),
				 errhint("Name the field of each record that holds that user's id, e.g. {\"type\": \"group\", \"user_id_field\": \"owner_id\"}.")));
}

static void
segment_check_source(Jsonb *options, const RetlSource *source)
{
	char	   *type = retl_jsonb_string(options, "type");
	char	   *field = retl_jsonb_string(options, "user_id_field");

	if (field != NULL)
		retl_source_needs_field(source, "user_id_field", field);
	if (source->nkeys != 1 && (field == NULL || strcmp(type, "group") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment sync of type \"%s\" needs a key of one column", type),
				 errdetail("Its value is each call's %s.", strcmp(type, "group") == 0 ? "groupId" : "userId"),
				 strcmp(type, "track") == 0 ?
				 errhint("Give a key of one column, or name the field holding the userId with option \"user_id_field\".") :
				 errhint("Give a key of one column, e.g. key => '{%s}'.",
						 strcmp(type, "group") == 0 ? "group_id" : "user_id")));
}

static SegTarget
target(RetlSync *sync)
{
	cJSON	   *opts = cJSON_Parse(sync->options);
	SegTarget	t;

	t.type = retl_json_string(opts, "type");
	t.event = retl_json_string(opts, "event");
	t.user_id_field = retl_json_string(opts, "user_id_field");
	cJSON_Delete(opts);
	if (t.type == NULL || (strcmp(t.type, "track") == 0 && t.event == NULL))
		elog(ERROR, "retl: the options of segment sync \"%s\" are incomplete", sync->name);
	return t;
}

/* A scalar as an id's text: a string, or a number's digits; else NULL. */
static char *
id_text(JsonbValue *v)
{
	if (v == NULL)
		return NULL;
	if (v->type == jbvString && v->val.string.len > 0)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	return NULL;
}

/* The value of a one-column key ({"col": value}) as an id, or NULL. */
static char *
key_id(const char *key)
{
	Jsonb	   *j = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(key)));
	JsonbIterator *it = JsonbIteratorInit(&j->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *id = NULL;
	int			n = 0;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_VALUE)
		{
			id = id_text(&v);
			n++;
		}
	}
	return n == 1 ? id : NULL;
}

/*
 * JSON text as jsonb prints it ({"a": 1, "b": [1, 2]}) without the spaces
 * after its separators: Segment counts a call's bytes as sent.
 */
static void
append_compact(StringInfo out, const char *json)
{
	bool		in_string = false;

	for (const char *p = json; *p; p++)
	{
		if (in_string)
		{
			appendStringInfoChar(out, *p);
			if (*p == '\\' && p[1] != '\0')
				appendStringInfoChar(out, *++p);
			else if (*p == '"')
				in_string = false;
			continue;
		}
		if (*p == ' ')
			continue;
		if (*p == '"')
			in_string = true;
		appendStringInfoChar(out, *p);
	}
}

/*
 * One record's call, appended to ev; NULL, or why it cannot be sent.  The
 * data is kept as PostgreSQL printed it (a bigint stays exact), less the
 * user_id_field, which is the userId and not a trait or property.
 */
static char *
call(StringInfo ev, RetlRecord *r, SegTarget *t)
{
	bool		group = strcmp(t->type, "group") == 0;
	bool		track = strcmp(t->type, "track") == 0;
	Jsonb	   *data;
	char	   *key;
	char	   *user_id;

	if (r->op == 'd')
		return group ?
			"not sent: Segment's Tracking API cannot delete a group (the group stays in Segment as it was)" :
			"not sent: Segment's Tracking API cannot delete a user (to delete one, create a regulation in Segment: Settings > End User Privacy, or the Public API)";
	data = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(r->data ? r->data : "{}")));
	key = key_id(r->key);
	user_id = key;
	if (t->user_id_field != NULL)
	{
		JsonbValue	name;

		name.type = jbvString;
		name.val.string.val = t->user_id_field;
		name.val.string.len = strlen(t->user_id_field);
		user_id = id_text(findJsonbValueFromContainer(&data->root, JB_FOBJECT, &name));
		if (user_id == NULL)
			return psprintf("the record has no userId: its field \"%s\" (option user_id_field) is null, empty or not a string or number",
							t->user_id_field);
		data = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete, JsonbPGetDatum(data),
												  CStringGetTextDatum(t->user_id_field)));
	}
	else if (user_id == NULL)
		return "the record has no userId: its key is null or empty";
	if (group && key == NULL)
		return "the record has no groupId: its key is null or empty";

	appendStringInfo(ev, "{\"type\":\"%s\",\"userId\":", t->type);
	escape_json(ev, user_id);
	if (group)
	{
		appendStringInfoString(ev, ",\"groupId\":");
		escape_json(ev, key);
	}
	if (track)
	{
		appendStringInfoString(ev, ",\"event\":");
		escape_json(ev, t->event);
	}
	appendStringInfoString(ev, track ? ",\"properties\":" : ",\"traits\":");
	append_compact(ev, JsonbToCString(NULL, &data->root, VARSIZE(data)));
	appendStringInfoString(ev, ",\"messageId\":");
	escape_json(ev, r->record_id);
	appendStringInfoString(ev, ",\"timestamp\":");
	escape_json(ev, r->captured_at);
	appendStringInfoChar(ev, '}');
	if (ev->len > SEGMENT_MAX_CALL_BYTES)
		return psprintf("the %s call is %d bytes, more than the %d Segment takes in one call (it would refuse the whole batch)",
						t->type, ev->len, SEGMENT_MAX_CALL_BYTES);
	return NULL;
}

/*
 * A batch of calls, from the first record, as many as fit in the
 * destination's max_batch_bytes and Segment's 500 KB.  A record that cannot
 * be sent (a delete, no userId, too large) is left out and dead-lettered
 * alone; the records past the last that fits go back to the queue.
 */
static void
segment_build(RetlRequest *req, RetlSync *sync)
{
	SegTarget	t = target(sync);
	int			limit = sync->max_batch_bytes > 0 ?
		Min(sync->max_batch_bytes, SEGMENT_MAX_BYTES) : SEGMENT_MAX_BYTES;
	int			calls = 0;
	int			n;
	StringInfoData ev;
	MemoryContext old;

	old = MemoryContextSwitchTo(req->cxt);
	initStringInfo(&req->body);
	req->url = psprintf("%s/v1/batch", retl_base_url(sync));
	MemoryContextSwitchTo(old);
	req->method = "POST";
	req->keep_response = true;
	appendStringInfoString(&req->body, "{\"batch\":[");
	initStringInfo(&ev);
	for (n = 0; n < req->nrecords; n++)
	{
		RetlRecord *r = &req->records[n];
		char	   *why;

		resetStringInfo(&ev);
		why = call(&ev, r, &t);
		if (why != NULL)
		{
			retl_record_unsent(req, r, why);
			continue;
		}
		/* "]}" closes the body */
		if (calls > 0 && req->body.len + 1 + ev.len + 2 > limit)
			break;
		if (calls > 0)
			appendStringInfoChar(&req->body, ',');
		appendBinaryStringInfo(&req->body, ev.data, ev.len);
		calls++;
	}
	appendStringInfoString(&req->body, "]}");
	/* [n, ...) did not fit: they stay past the request, back to the queue */
	req->nrecords = n;
	retl_request_leave_unsent(req);
	if (req->nrecords > 0)
	{
		old = MemoryContextSwitchTo(req->cxt);
		retl_request_headers(req, sync, "application/json");
		MemoryContextSwitchTo(old);
	}
}

/*
 * Segment's answer is the same for every call of a request: 200 when it
 * took the batch to process (what it drops later, it does not say), 400
 * when it refused the request (size, JSON, no write key: dead-lettered
 * once the engine has halved the batch to one record), 429 and 5xx
 * retried (the engine's rule, Retry-After obeyed).
 */
static void
segment_read_answer(RetlRequest *req, RetlSync *sync)
{
	cJSON	   *answer;
	char	   *message;
	char	   *text;

	if (req->status >= 200 && req->status < 300)
	{
		for (int i = 0; i < req->nrecords; i++)
			req->records[i].outcome = RETL_OUTCOME_DELIVERED;
		return;
	}
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	message = retl_json_string(answer, "message");
	cJSON_Delete(answer);
	if (message == NULL)
		return;					/* the status rule, with the answer's excerpt */
	text = psprintf("Segment refused the request: HTTP %ld: %s", req->status, message);
	retl_status_outcomes(req);
	for (int i = 0; i < req->nrecords; i++)
		req->records[i].message = text;
}

static const char *const no_options[] = {NULL};
static const char *const segment_sync_options[] = {"type", "event", "user_id_field", NULL};

const RetlConnector retl_segment_connector = {
	.kind = "segment",
	.destination_options = no_options,
	.sync_options = segment_sync_options,
	.default_url = "https://api.segment.io",
	/* identify and group: upsert; track: append; nothing is deleted */
	.modes = "upsert, append",
	.max_records = SEGMENT_MAX_CALLS,
	.default_batch_size = SEGMENT_MAX_CALLS,
	.max_bytes = SEGMENT_MAX_BYTES,

	/*
	 * Segment asks for under 1,000 requests a second: 500, so that a
	 * second's burst of the token bucket and the next second's stay under
	 * it; 8 at once (each up to 500 KB)
	 */
	.default_rate_limit = 500,
	.default_max_concurrency = 8,
	.check_destination = segment_check_destination,
	.check_sync = segment_check_sync,
	.check_source = segment_check_source,
	.build = segment_build,
	.read_answer = segment_read_answer,
};
