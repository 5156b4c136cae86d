/*
 * marketo.c: the marketo connector (Marketo Engage REST API: leads and
 * static lists).
 *
 *   destination: url, the instance's REST base (https://123-ABC-456.mktorest.com,
 *                Admin > Web Services) without /rest; auth OAuth 2.0
 *                client credentials (oauth.c; token_url by default
 *                {url}/identity/oauth/token)
 *   sync:        "lookup_field": the lead field records are matched by
 *                (default email), a field of each record; "list_id": for
 *                an audience, a static list
 *
 * Upserts: POST /rest/v1/leads.json {"action": createOrUpdate (upsert,
 * mirror) | createOnly (insert) | updateOnly (update), "lookupField",
 * "input": [fields]}, at most 300 records and 1 MB.  Marketo answers HTTP
 * 200 whatever happened: {"success": false, "errors": [{"code"}]} for the
 * request (601 and 602: the token is renewed and the records retried; 606,
 * 607 and 615: its limits, the destination waits; others dead-letter), or
 * {"success": true, "result": [...]}, one result per record in order,
 * {"id", "status": "created" | "updated"}, or "skipped" with "reasons"
 * (the record dead-lettered alone with them).  The lead's id is kept.
 * Deletes (upsert and mirror syncs): POST /rest/v1/leads/delete.json by the
 * kept ids (a key with none that this sync never sent has nothing to
 * delete, sync/ids.c; one it sent is dead-lettered).  An audience sync with list_id upserts an entering member's
 * lead first, then adds it to the list, POST /rest/v1/lists/{id}/leads.json;
 * an exiting member is removed, DELETE on the same path, its lead kept.
 *
 * (From Adobe's Marketo Engage developer documentation: authentication,
 * leads, static lists, error codes; see shared/CONNECTORS.md.)
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "connectors/auth.h"
#include "connectors/connector.h"
#include "connectors/request.h"
#include "sync/ids.h"

#define MKTO_MAX_RECORDS 300
#define MKTO_MAX_BYTES 1000000	/* 1 MB a request, the envelope's room left */

/* how long the destination waits after Marketo said which limit was hit */
#define MKTO_RATE_PAUSE_MS 20000	/* 606: 100 calls in 20 s */
#define MKTO_CONCURRENCY_PAUSE_MS 1000	/* 615: 10 at once */
#define MKTO_QUOTA_PAUSE_MS (60 * 60 * 1000)	/* 607: the day's calls */

typedef enum MktoOp
{
	MKTO_UPSERT,				/* a lead, by lookupField */
	MKTO_DELETE,				/* a lead, by its id */
	MKTO_JOIN,					/* a lead added to the list */
	MKTO_LEAVE					/* a lead removed from the list */
} MktoOp;

typedef struct MktoTarget
{
	char	   *lookup_field;
	char	   *list_id;		/* NULL: none */
	char		mode;
} MktoTarget;

static bool
digits(const char *s)
{
	return s != NULL && s[0] != '\0' && strlen(s) <= 18 && strspn(s, "0123456789") == strlen(s);
}

static bool
field_name(const char *s)
{
	return s != NULL && s[0] != '\0' && strlen(s) <= 255 &&
		strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == strlen(s);
}

static void
marketo_check_destination(Jsonb *options)
{
	char	   *auth = retl_auth_type(options);

	if (auth == NULL || (strcmp(auth, "oauth2") != 0 && strcmp(auth, "bearer") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a marketo destination needs OAuth 2.0 auth"),
				 errhint("{\"auth\": {\"type\": \"oauth2\", \"grant_type\": \"client_credentials\", \"client_id\": ..., \"client_secret\": \"{{secret:NAME}}\"}}, a LaunchPoint service's: the token comes from url/identity/oauth/token.")));
}

static void
marketo_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	char	   *lookup = retl_jsonb_string(options, "lookup_field");
	char	   *list = retl_jsonb_string(options, "list_id");

	if (retl_jsonb_has(options, "lookup_field") && !field_name(lookup))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"lookup_field\" of a marketo sync must be a lead field's REST API name"),
				 errhint("email (the default), id, or a custom field marked unique such as \"externalId\".")));
	if (lookup != NULL && strcmp(lookup, "id") == 0 && strcmp(mode, "update") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"lookup_field\" of a marketo sync may be \"id\" only in mode \"update\""),
				 errdetail("Marketo matches leads by their id only to update them (action updateOnly)."),
				 errhint("Match by email or by a custom field marked unique.")));
	if (retl_jsonb_has(options, "list_id") && !digits(list))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"list_id\" of a marketo sync must be a static list's id, its digits")));
}

static void
marketo_check_source(Jsonb *options, const RetlSource *source)
{
	char	   *lookup = retl_jsonb_string(options, "lookup_field");

	if (retl_jsonb_has(options, "list_id") && !source->audience)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"list_id\" is for a sync of an audience"),
				 errhint("Create the sync with source => 'audience:NAME': entering members are added to the static list, exiting ones removed.")));
	/* Marketo finds each record's lead by the value of that field */
	retl_source_needs_field(source, "lookup_field", lookup ? lookup : "email");

	/*
	 * "id" is the lead's own id, Marketo's to give: a key only for
	 * updateOnly (lookup_field "id"), refused in any other record.
	 */
	if (retl_source_has_field(source, "id") && (lookup == NULL || strcmp(lookup, "id") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the sync's records carry a field \"id\", which Marketo takes as the lead's own id"),
				 errdetail("Marketo gives leads their ids; it refuses a record with one unless the lookup field is \"id\" (action updateOnly)."),
				 errhint("Give the sync a mapping that leaves the column out or sends it under another name, e.g. {\"email\": \"email\", \"id\": \"externalId\"}.")));
}

static MktoTarget
target(RetlSync *sync)
{
	cJSON	   *opts = cJSON_Parse(sync->options);
	MktoTarget	t;

	t.lookup_field = retl_json_string(opts, "lookup_field");
	if (t.lookup_field == NULL)
		t.lookup_field = "email";
	t.list_id = retl_json_string(opts, "list_id");
	t.mode = sync->mode;
	cJSON_Delete(opts);
	return t;
}

static int
op_of(RetlRecord *r, void *arg)
{
	MktoTarget *t = arg;

	if (r->op == 'd')
		return t->list_id ? MKTO_LEAVE : MKTO_DELETE;
	if (t->list_id && r->known_id != NULL)
		return MKTO_JOIN;
	return MKTO_UPSERT;
}

/* A lead's fields: the data's; nested values as text. */
static cJSON *
lead(RetlRecord *r, MktoTarget *t, char **why)
{
	cJSON	   *data = r->data ? cJSON_Parse(r->data) : NULL;
	cJSON	   *input = cJSON_CreateObject();
	cJSON	   *item;
	bool		has_lookup = false;

	cJSON_ArrayForEach(item, data)
	{
		cJSON	   *copy;

		if (cJSON_IsObject(item) || cJSON_IsArray(item))
			copy = cJSON_CreateString(retl_json_text(item));
		else
			copy = cJSON_Duplicate(item, false);
		cJSON_AddItemToObject(input, item->string, copy);
		if (strcmp(item->string, t->lookup_field) == 0 && !cJSON_IsNull(item) &&
			!(cJSON_IsString(item) && item->valuestring[0] == '\0'))
			has_lookup = true;
	}
	cJSON_Delete(data);
	if (!has_lookup)
		*why = psprintf("the record has no value for \"%s\", the sync's lookup_field", t->lookup_field);
	return input;
}

static void
marketo_build(RetlRequest *req, RetlSync *sync)
{
	MktoTarget	t = target(sync);
	char	   *base = retl_base_url(sync);
	MktoOp		op;
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *input;
	MemoryContext old;

	if (body == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (t.list_id != NULL && sync->audience_id == 0)
		elog(ERROR, "retl: marketo sync \"%s\" has a list_id but no audience", sync->name);
	retl_ids_known(req);
	retl_request_take_run(req, op_of, &t);
	op = op_of(&req->records[0], &t);
	if (op == MKTO_UPSERT)
	{
		cJSON_AddStringToObject(body, "action", t.mode == 'i' ? "createOnly" :
								t.mode == 'p' ? "updateOnly" : "createOrUpdate");
		cJSON_AddStringToObject(body, "lookupField", t.lookup_field);
	}
	input = cJSON_AddArrayToObject(body, "input");
	if (input == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *why = NULL;
		cJSON	   *item;

		if (op == MKTO_UPSERT)
			item = lead(r, &t, &why);
		else if (r->known_id == NULL)
		{
			/* never sent by this sync: nothing to send (else why not) */
			item = NULL;
			why = retl_ids_none(r, "Marketo", "lead id",
								op == MKTO_LEAVE ? "remove it from the list" : "delete it");
			if (why == NULL)
				continue;
		}
		else if (!digits(r->known_id))
		{
			item = NULL;
			why = psprintf("the kept Marketo lead id \"%s\" is not a number", r->known_id);
		}
		else
		{
			item = cJSON_CreateObject();
			cJSON_AddNumberToObject(item, "id", strtod(r->known_id, NULL));
		}
		if (why != NULL)
		{
			cJSON_Delete(item);
			retl_record_unsent(req, r, why);
			continue;
		}
		cJSON_AddItemToArray(input, item);
	}
	retl_request_leave_unsent(req);
	old = MemoryContextSwitchTo(req->cxt);
	if (op == MKTO_UPSERT)
		req->url = psprintf("%s/rest/v1/leads.json", base);
	else if (op == MKTO_DELETE)
		req->url = psprintf("%s/rest/v1/leads/delete.json", base);
	else
		req->url = psprintf("%s/rest/v1/lists/%s/leads.json", base, t.list_id);
	req->method = op == MKTO_LEAVE ? "DELETE" : "POST";
	MemoryContextSwitchTo(old);
	retl_request_json_body(req, body);
	req->keep_response = true;
	if (req->nrecords > 0)
	{
		old = MemoryContextSwitchTo(req->cxt);
		retl_request_headers(req, sync, "application/json");
		MemoryContextSwitchTo(old);
	}
}

/* A request Marketo refused as a whole: {"success": false, "errors": [...]}. */
static void
refused(RetlRequest *req, cJSON *answer)
{
	cJSON	   *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(answer, "errors"), 0);
	char	   *code = retl_json_string(first, "code");
	char	   *message = retl_json_string(first, "message");
	RetlOutcome outcome = RETL_OUTCOME_DEAD;
	char	   *text;

	/* codes are strings in Marketo's answers; numbers are taken too */
	if (code == NULL && first != NULL && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(first, "code")))
		code = psprintf("%d", cJSON_GetObjectItemCaseSensitive(first, "code")->valueint);
	if (code == NULL)
		code = "?";
	text = psprintf("Marketo refused the request: %s%s%s", code, message ? " " : "", message ? message : "");
	if (strcmp(code, "601") == 0 || strcmp(code, "602") == 0)
	{
		req->renew_token = true;	/* queue.c renews it, once */
		outcome = RETL_OUTCOME_RETRY;
	}
	else if (strcmp(code, "606") == 0 || strcmp(code, "615") == 0 || strcmp(code, "607") == 0)
	{
		req->pause_ms = strcmp(code, "606") == 0 ? MKTO_RATE_PAUSE_MS :
			strcmp(code, "615") == 0 ? MKTO_CONCURRENCY_PAUSE_MS : MKTO_QUOTA_PAUSE_MS;
		outcome = RETL_OUTCOME_RETRY;
	}
	/* timed out, temporarily unavailable, a system error, too many jobs */
	else if (strcmp(code, "604") == 0 || strcmp(code, "608") == 0 || strcmp(code, "611") == 0 ||
			 strcmp(code, "713") == 0 || strcmp(code, "1029") == 0)
		outcome = RETL_OUTCOME_RETRY;
	for (int i = 0; i < req->nrecords; i++)
	{
		req->records[i].outcome = outcome;
		req->records[i].message = text;
	}
}

/* One record's result: {"id", "status"}, "skipped" with its reasons. */
static void
result(RetlRecord *r, cJSON *res, MktoOp op, MktoTarget *t)
{
	char	   *status = retl_json_string(res, "status");
	cJSON	   *id = res ? cJSON_GetObjectItemCaseSensitive(res, "id") : NULL;
	cJSON	   *reason;
	char	   *code;

	if (status == NULL)
	{
		r->outcome = RETL_OUTCOME_RETRY;
		r->message = "Marketo's answer does not show this record's result";
		return;
	}
	if (strcmp(status, "skipped") != 0)
	{
		r->outcome = RETL_OUTCOME_DELIVERED;
		if (op == MKTO_UPSERT && cJSON_IsNumber(id))
		{
			r->remember_id = psprintf("%.0f", id->valuedouble);
			/* an entering member's lead: next, it is added to the list */
			if (t->list_id != NULL)
				r->outcome = RETL_OUTCOME_AGAIN;
		}
		else if (op == MKTO_UPSERT)
		{
			r->outcome = RETL_OUTCOME_RETRY;
			r->message = "Marketo's answer gives no id for this lead";
		}
		return;
	}
	reason = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(res, "reasons"), 0);
	code = retl_json_string(reason, "code");
	if (code == NULL && reason && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(reason, "code")))
		code = psprintf("%d", cJSON_GetObjectItemCaseSensitive(reason, "code")->valueint);
	/* already gone, or not in the list: done */
	if (code != NULL && ((op == MKTO_DELETE && strcmp(code, "1004") == 0) ||
						 (op == MKTO_LEAVE && (strcmp(code, "1004") == 0 || strcmp(code, "1015") == 0))))
	{
		r->outcome = RETL_OUTCOME_DELIVERED;
		return;
	}
	r->outcome = code != NULL && strcmp(code, "1029") == 0 ? RETL_OUTCOME_RETRY : RETL_OUTCOME_DEAD;
	r->message = psprintf("Marketo skipped the record: %s%s%s", code ? code : "?",
						  retl_json_string(reason, "message") ? " " : "",
						  retl_json_string(reason, "message") ? retl_json_string(reason, "message") : "");
}

static void
marketo_read_answer(RetlRequest *req, RetlSync *sync)
{
	MktoTarget	t = target(sync);
	MktoOp		op;
	cJSON	   *answer;
	cJSON	   *results;

	if (req->status != 200 || req->nrecords == 0)
		return;					/* 413, 5xx...: the status rule */
	op = strstr(req->url, "/leads/delete.json") ? MKTO_DELETE :
		strstr(req->url, "/lists/") == NULL ? MKTO_UPSERT :
		strcmp(req->method, "DELETE") == 0 ? MKTO_LEAVE : MKTO_JOIN;
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	if (answer == NULL || !cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(answer, "success")))
	{
		for (int i = 0; i < req->nrecords; i++)
		{
			req->records[i].outcome = RETL_OUTCOME_RETRY;
			req->records[i].message = "Marketo answered without its JSON envelope";
		}
		cJSON_Delete(answer);
		return;
	}
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "success")))
	{
		refused(req, answer);
		cJSON_Delete(answer);
		return;
	}
	results = cJSON_GetObjectItemCaseSensitive(answer, "result");
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		result(r, cJSON_IsArray(results) ? cJSON_GetArrayItem(results, i) : NULL, op, &t);
		if (r->remember_id != NULL)
			r->remember_id = MemoryContextStrdup(req->cxt, r->remember_id);
		if (r->message != NULL)
			r->message = MemoryContextStrdup(req->cxt, r->message);
	}
	cJSON_Delete(answer);
}

static const char *const no_options[] = {NULL};
static const char *const marketo_sync_options[] = {"lookup_field", "list_id", NULL};

const RetlConnector retl_marketo_connector = {
	.kind = "marketo",
	.destination_options = no_options,
	.sync_options = marketo_sync_options,
	.default_url = NULL,		/* each instance has its own */
	.default_token_path = "/identity/oauth/token",
	/* createOrUpdate, createOnly, updateOnly; leads are deleted by id */
	.modes = "upsert, insert, update, mirror",
	.max_records = MKTO_MAX_RECORDS,
	.default_batch_size = MKTO_MAX_RECORDS,
	.max_bytes = MKTO_MAX_BYTES,
	/* 100 calls in 20 s (4.5 a second stays under it), 10 at once */
	.default_rate_limit = 4.5,
	.default_max_concurrency = 10,
	.check_destination = marketo_check_destination,
	.check_sync = marketo_check_sync,
	.check_source = marketo_check_source,
	.deletes_need_id = retl_ids_unless_append,
	.build = marketo_build,
	.read_answer = marketo_read_answer,
};
