/*
 * iterable.c: the iterable connector (Iterable's REST API: users, events,
 * static lists).
 *
 *   destination: url (default https://api.iterable.com; an EU project's is
 *                https://api.eu.iterable.com), auth the project's server-side
 *                API key as {"type": "header", "name": "Api-Key",
 *                "value": "{{secret:NAME}}"}
 *   sync:        "identifier": "email" (default) | "userId", the field of
 *                each record's data that names its user; "event_name":
 *                the event an append sync tracks; "list_id": for an
 *                audience, a static list
 *
 * Upserts: POST /api/users/bulkUpdate {"users": [{<identifier>: value,
 * "dataFields": {the record's other fields}}]}, under 4 MB.  Appends:
 * POST /api/events/trackBulk {"events": [{<identifier>, "eventName", "id":
 * the record id (Iterable updates an event whose id it has: a retry does
 * not count twice), "createdAt": the capture time, "dataFields": the row}]}.
 * Both answer 200 with successCount, failCount and failedUpdates, lists of
 * the identifiers that failed by why (invalidEmails, invalidUserIds,
 * notFoundEmails, invalidDataEmails, conflictEmails, forgottenEmails, their
 * UserIds twins...): a record named there is dead-lettered alone with its
 * list, or retried where the failure may pass (notFound*: a user another
 * sync has yet to create); the others are delivered, unless Iterable
 * counted more failures than it named (then they are retried).  Deletes:
 * DELETE /api/users/{email} or /api/users/byUserId/{userId}, one request a
 * record, by the identifier its key carries or the one kept when it was
 * last upserted (none kept: nothing to delete if this sync never sent
 * the key, sync/ids.c, else a dead letter); a user Iterable does not know
 * counts as deleted.  An
 * audience sync with list_id subscribes entering members,
 * POST /api/lists/subscribe {"listId", "subscribers": [{<identifier>}]}
 * (which creates a user Iterable lacks), and unsubscribes exiting ones,
 * POST /api/lists/unsubscribe; no user is deleted.
 *
 * (From Iterable's OpenAPI document, Iterable/api-client : api-docs.json,
 * and its API response codes; see shared/CONNECTORS.md.)
 */
#include "postgres.h"

#include <math.h>

#include <cjson/cJSON.h>

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "connectors/auth.h"
#include "connectors/connector.h"
#include "connectors/request.h"
#include "sync/ids.h"

/* not documented: a batch retl chooses; the documented limit is 4 MB */
#define IT_MAX_RECORDS 1000
#define IT_MAX_BYTES 4000000
/* Iterable counts its limits per second: a 429 waits out the second */
#define IT_RATE_PAUSE_MS 1000

typedef enum ItOp
{
	IT_UPSERT,					/* users/bulkUpdate */
	IT_DELETE,					/* DELETE users/..., one record */
	IT_EVENT,					/* events/trackBulk */
	IT_JOIN,					/* lists/subscribe */
	IT_LEAVE					/* lists/unsubscribe */
} ItOp;

static const char *const op_path[] = {
	"/api/users/bulkUpdate", NULL, "/api/events/trackBulk", "/api/lists/subscribe",
	"/api/lists/unsubscribe"
};

typedef struct ItTarget
{
	char	   *ident;			/* "email" or "userId" */
	char	   *event_name;		/* append syncs */
	char	   *list_id;		/* NULL: none */
	char		mode;
} ItTarget;

static bool
digits(const char *s)
{
	return s != NULL && s[0] != '\0' && strlen(s) <= 18 && strspn(s, "0123456789") == strlen(s);
}

static void
iterable_check_destination(Jsonb *options)
{
	JsonbValue	k;
	JsonbValue *v;
	Jsonb	   *auth = NULL;
	char	   *type = NULL;
	char	   *name = NULL;

	k.type = jbvString;
	k.val.string.val = "auth";
	k.val.string.len = strlen("auth");
	v = findJsonbValueFromContainer(&options->root, JB_FOBJECT, &k);
	if (v != NULL && v->type == jbvBinary)
	{
		auth = JsonbValueToJsonb(v);
		type = retl_jsonb_string(auth, "type");
		name = retl_jsonb_string(auth, "name");
	}
	if (type == NULL || strcmp(type, "header") != 0 || name == NULL || pg_strcasecmp(name, "Api-Key") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an iterable destination needs its API key in the Api-Key header"),
				 errdetail("Iterable authenticates every call by a project's API key, sent as the header Api-Key."),
				 errhint("{\"auth\": {\"type\": \"header\", \"name\": \"Api-Key\", \"value\": \"{{secret:NAME}}\"}}, a server-side key of the project.")));
}

static void
iterable_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	char	   *ident = retl_jsonb_string(options, "identifier");
	char	   *event = retl_jsonb_string(options, "event_name");
	bool		append = strcmp(mode, "append") == 0;

	if (retl_jsonb_has(options, "identifier") &&
		(ident == NULL || (strcmp(ident, "email") != 0 && strcmp(ident, "userId") != 0)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"identifier\" of an iterable sync must be \"email\" or \"userId\""),
				 errhint("The field of each record's data that names its Iterable user: \"email\" (the default) or \"userId\".")));
	if (append && (event == NULL || event[0] == '\0' || strlen(event) > 255))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an append sync to iterable needs option \"event_name\""),
				 errdetail("Each new row is tracked as an Iterable event of that name."),
				 errhint("For example {\"event_name\": \"purchase\"}.")));
	if (!append && retl_jsonb_has(options, "event_name"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"event_name\" is for append syncs"),
				 errhint("Create the sync with mode => 'append' to track each new row as an event.")));
	if (retl_jsonb_has(options, "list_id") && !digits(retl_jsonb_string(options, "list_id")))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"list_id\" of an iterable sync must be a static list's id, its digits"),
				 errhint("For example {\"list_id\": \"1234\"}.")));
	if (append && retl_jsonb_has(options, "list_id"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"list_id\" is not for append syncs"),
				 errhint("An audience's members join and leave the list in mode upsert or mirror.")));
}

static void
iterable_check_source(Jsonb *options, const RetlSource *source)
{
	char	   *ident = retl_jsonb_string(options, "identifier");

	if (retl_jsonb_has(options, "list_id") && !source->audience)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"list_id\" is for a sync of an audience"),
				 errhint("Create the sync with source => 'audience:NAME': entering members are subscribed to the list, exiting ones unsubscribed.")));
	/* Iterable finds each record's user by the value of that field */
	retl_source_needs_field(source, "identifier", ident ? ident : "email");
}

static ItTarget
target(RetlSync *sync)
{
	cJSON	   *opts = cJSON_Parse(sync->options);
	ItTarget	t;

	t.ident = retl_json_string(opts, "identifier");
	if (t.ident == NULL)
		t.ident = "email";
	t.event_name = retl_json_string(opts, "event_name");
	t.list_id = retl_json_string(opts, "list_id");
	t.mode = sync->mode;
	cJSON_Delete(opts);
	return t;
}

static int
op_of(RetlRecord *r, void *arg)
{
	ItTarget   *t = arg;

	if (t->mode == 'a')
		return IT_EVENT;
	if (t->list_id != NULL)
		return r->op == 'd' ? IT_LEAVE : IT_JOIN;
	return r->op == 'd' ? IT_DELETE : IT_UPSERT;
}

/* A field of a record's data (of its key, for a delete) as text, or NULL. */
static char *
field(RetlRecord *r, const char *name)
{
	cJSON	   *doc = cJSON_Parse(r->data ? r->data : r->key);
	char	   *v = retl_json_text(cJSON_GetObjectItemCaseSensitive(doc, name));

	cJSON_Delete(doc);
	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* The user a record names: its identifier, else (a delete) the one kept. */
static char *
user_of(RetlRecord *r, ItTarget *t)
{
	char	   *v = field(r, t->ident);

	return v != NULL ? v : (r->op == 'd' ? r->known_id : NULL);
}

/* One item of a bulk request's array; NULL (and *why) when it cannot be sent. */
static cJSON *
item(RetlRecord *r, ItTarget *t, ItOp op, char **why)
{
	char	   *user = user_of(r, t);
	bool		list = op == IT_JOIN || op == IT_LEAVE;
	cJSON	   *data;
	cJSON	   *it;
	bool		ok;

	if (user == NULL)
	{
		*why = psprintf("the record has no value for \"%s\", the sync's identifier", t->ident);
		return NULL;
	}
	data = list ? NULL : cJSON_Parse(r->data ? r->data : "{}");
	if (!list && data == NULL)
		elog(ERROR, "retl: could not read record %s", r->record_id);
	it = cJSON_CreateObject();
	ok = it != NULL && cJSON_AddStringToObject(it, t->ident, user) != NULL;
	if (ok && op == IT_EVENT)
		ok = cJSON_AddStringToObject(it, "eventName", t->event_name) != NULL &&
			cJSON_AddStringToObject(it, "id", r->record_id) != NULL &&
			cJSON_AddNumberToObject(it, "createdAt", floor(r->captured_epoch)) != NULL;
	else if (ok && op == IT_UPSERT)
		cJSON_Delete(cJSON_DetachItemFromObjectCaseSensitive(data, t->ident));
	/* the data's members, types kept (Iterable's field types are fixed) */
	if (ok && !list)
		ok = cJSON_AddItemToObject(it, "dataFields", data);
	if (!ok)
	{
		cJSON_Delete(it);
		cJSON_Delete(data);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	return it;
}

/* text percent-encoded for a URL path segment (RFC 3986) */
static char *
path_segment(const char *s)
{
	StringInfoData out;

	initStringInfo(&out);
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			*p == '-' || *p == '_' || *p == '.' || *p == '~')
			appendStringInfoChar(&out, (char) *p);
		else
			appendStringInfo(&out, "%%%02X", *p);
	}
	return out.data;
}

/*
 * Build a request for the records, from the first, of one kind: as many as
 * fit in max_batch_bytes (at least one), or one delete.
 */
static void
iterable_build(RetlRequest *req, RetlSync *sync)
{
	ItTarget	t = target(sync);
	char	   *base = retl_base_url(sync);
	ItOp		op;
	int			i;
	int			nitems = 0;
	MemoryContext old;

	if (t.list_id != NULL && sync->audience_id == 0)
		elog(ERROR, "retl: iterable sync \"%s\" has a list_id but no audience", sync->name);
	if (t.mode != 'a' && t.list_id == NULL)
		retl_ids_known(req);
	retl_request_take_run(req, op_of, &t);
	op = op_of(&req->records[0], &t);
	old = MemoryContextSwitchTo(req->cxt);
	initStringInfo(&req->body);
	MemoryContextSwitchTo(old);

	if (op == IT_DELETE)
	{
		char	   *user = user_of(&req->records[0], &t);

		req->nrecords = 1;
		if (user == NULL)
		{
			/* never sent by this sync: nothing to delete (else why not) */
			char	   *why = retl_ids_none(&req->records[0], "Iterable", t.ident, "delete it");

			if (why != NULL)
				retl_record_unsent(req, &req->records[0], why);
		}
		else
		{
			old = MemoryContextSwitchTo(req->cxt);
			req->url = psprintf("%s/api/users/%s%s", base,
								strcmp(t.ident, "userId") == 0 ? "byUserId/" : "", path_segment(user));
			MemoryContextSwitchTo(old);
		}
	}
	else
	{
		if (op == IT_JOIN || op == IT_LEAVE)
			appendStringInfo(&req->body, "{\"listId\":%s,\"subscribers\":[", t.list_id);
		else
			appendStringInfo(&req->body, "{\"%s\":[", op == IT_EVENT ? "events" : "users");
		for (i = 0; i < req->nrecords; i++)
		{
			RetlRecord *r = &req->records[i];
			char	   *why = NULL;
			cJSON	   *it = item(r, &t, op, &why);
			char	   *printed;
			size_t		len;

			if (it == NULL)
			{
				retl_record_unsent(req, r, why);
				continue;
			}
			printed = cJSON_PrintUnformatted(it);
			cJSON_Delete(it);
			if (printed == NULL)
				ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
			len = strlen(printed);
			/* the rest go back to the queue, for the next request */
			if (nitems > 0 && sync->max_batch_bytes > 0 &&
				req->body.len + len + 3 > (size_t) sync->max_batch_bytes)
			{
				cJSON_free(printed);
				break;
			}
			if (nitems++ > 0)
				appendStringInfoChar(&req->body, ',');
			appendBinaryStringInfo(&req->body, printed, len);
			cJSON_free(printed);
		}
		req->nrecords = i;
		appendStringInfoString(&req->body, "]}");
		old = MemoryContextSwitchTo(req->cxt);
		req->url = psprintf("%s%s", base, op_path[op]);
		MemoryContextSwitchTo(old);
	}
	retl_request_leave_unsent(req);
	req->method = op == IT_DELETE ? "DELETE" : "POST";
	req->keep_response = true;
	if (req->nrecords > 0)
	{
		old = MemoryContextSwitchTo(req->cxt);
		retl_request_headers(req, sync, op == IT_DELETE ? NULL : "application/json");
		MemoryContextSwitchTo(old);
	}
}

/*
 * A bulk answer (200 {successCount, failCount, failedUpdates: {list:
 * [identifier]}, disallowedEventNames}), record by record.  A list's
 * values are emails (*Emails: the identifier, or a data field email) or
 * userIds.
 */
static void
read_bulk(RetlRequest *req, ItTarget *t, ItOp op, cJSON *answer)
{
	cJSON	   *failed = cJSON_GetObjectItemCaseSensitive(answer, "failedUpdates");
	cJSON	   *count = cJSON_GetObjectItemCaseSensitive(answer, "failCount");
	cJSON	   *disallowed = cJSON_GetObjectItemCaseSensitive(answer, "disallowedEventNames");
	char	  **emails = palloc(sizeof(char *) * req->nrecords);
	char	  **uids = palloc(sizeof(char *) * req->nrecords);
	cJSON	   *list;
	cJSON	   *v;
	int			named = 0;
	RetlOutcome rest = RETL_OUTCOME_DELIVERED;
	char	   *why = NULL;

	for (int i = 0; i < req->nrecords; i++)
	{
		emails[i] = field(&req->records[i], "email");
		uids[i] = field(&req->records[i], "userId");
	}
	if (!cJSON_IsObject(failed) && !cJSON_IsNumber(count))
	{
		rest = RETL_OUTCOME_RETRY;
		why = "Iterable answered without its counts of the records it took";
	}
	cJSON_ArrayForEach(list, failed)
	{
		size_t		n = strlen(list->string);
		bool		by_email = n >= 6 && strcmp(list->string + n - 6, "Emails") == 0;
		bool		not_found = strncmp(list->string, "notFound", 8) == 0;

		cJSON_ArrayForEach(v, list)
		{
			for (int i = 0; cJSON_IsString(v) && i < req->nrecords; i++)
			{
				RetlRecord *r = &req->records[i];
				char	   *mine = by_email ? emails[i] : uids[i];

				if (r->outcome != RETL_OUTCOME_UNSET || mine == NULL ||
					(by_email ? pg_strcasecmp(mine, v->valuestring) : strcmp(mine, v->valuestring)) != 0)
					continue;
				named++;
				/* an unknown user is in no list; elsewhere it may yet come */
				r->outcome = !not_found ? RETL_OUTCOME_DEAD :
					op == IT_LEAVE ? RETL_OUTCOME_DELIVERED : RETL_OUTCOME_RETRY;
				if (r->outcome != RETL_OUTCOME_DELIVERED)
					r->message = psprintf("Iterable refused the record: %s (%s)", list->string, v->valuestring);
			}
		}
	}
	cJSON_ArrayForEach(v, disallowed)
	{
		if (op == IT_EVENT && cJSON_IsString(v) && strcmp(v->valuestring, t->event_name) == 0)
		{
			rest = RETL_OUTCOME_DEAD;
			why = psprintf("Iterable does not accept events named \"%s\" (disallowedEventNames)", t->event_name);
		}
	}
	if (rest == RETL_OUTCOME_DELIVERED && cJSON_IsNumber(count) && count->valuedouble > named)
	{
		rest = RETL_OUTCOME_RETRY;
		why = psprintf("Iterable counted %.0f failed records but named only %d", count->valuedouble, named);
	}
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *user = strcmp(t->ident, "email") == 0 ? emails[i] : uids[i];

		if (r->outcome != RETL_OUTCOME_UNSET)
			continue;
		r->outcome = rest;
		r->message = why;
		/* a user named by a field of the data, not by the key: kept, for deletes */
		if (rest == RETL_OUTCOME_DELIVERED && op == IT_UPSERT && user != NULL &&
			(r->known_id == NULL || strcmp(r->known_id, user) != 0))
		{
			cJSON	   *key = cJSON_Parse(r->key);

			if (cJSON_GetObjectItemCaseSensitive(key, t->ident) == NULL)
				r->remember_id = user;
			cJSON_Delete(key);
		}
	}
}

static void
iterable_read_answer(RetlRequest *req, RetlSync *sync)
{
	ItTarget	t = target(sync);
	ItOp		op;
	cJSON	   *answer;
	char	   *code;
	char	   *msg;

	if (req->nrecords == 0)
		return;
	op = strcmp(req->method, "DELETE") == 0 ? IT_DELETE :
		strstr(req->url, op_path[IT_EVENT]) ? IT_EVENT :
		strstr(req->url, op_path[IT_JOIN]) ? IT_JOIN :
		strstr(req->url, op_path[IT_LEAVE]) ? IT_LEAVE : IT_UPSERT;
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	if (req->status == 200 && op != IT_DELETE)
	{
		if (cJSON_IsObject(answer))
			read_bulk(req, &t, op, answer);
		else
			for (int i = 0; i < req->nrecords; i++)
			{
				req->records[i].outcome = RETL_OUTCOME_RETRY;
				req->records[i].message = "Iterable answered HTTP 200 without JSON";
			}
	}
	else if (req->status < 200 || req->status >= 300)
	{
		/* the status rule decides; Iterable's envelope says why */
		code = retl_json_string(answer, "code");
		msg = retl_json_string(answer, "msg");
		if (op == IT_DELETE && req->status == 400 && msg != NULL &&
			strncmp(msg, "User does not exist", 19) == 0)
			req->records[0].outcome = RETL_OUTCOME_DELIVERED;
		else if (msg != NULL)
			for (int i = 0; i < req->nrecords; i++)
				req->records[i].message = psprintf("Iterable refused the request: %s (%s, HTTP %ld)",
												   msg, code ? code : "no code", req->status);
		if (req->status == 429 && req->retry_after_ms < 0)
			req->pause_ms = IT_RATE_PAUSE_MS;
	}
	cJSON_Delete(answer);
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		if (r->message != NULL)
			r->message = MemoryContextStrdup(req->cxt, r->message);
		if (r->remember_id != NULL)
			r->remember_id = MemoryContextStrdup(req->cxt, r->remember_id);
	}
}

static const char *const no_options[] = {NULL};
static const char *const iterable_sync_options[] = {"identifier", "event_name", "list_id", NULL};

const RetlConnector retl_iterable_connector = {
	.kind = "iterable",
	.destination_options = no_options,
	.sync_options = iterable_sync_options,
	.default_url = "https://api.iterable.com",
	/* bulkUpdate creates or updates: no insert-only or update-only */
	.modes = "upsert, mirror, append",
	.max_records = IT_MAX_RECORDS,
	.default_batch_size = IT_MAX_RECORDS,
	.max_bytes = IT_MAX_BYTES,

	/*
	 * 5 bulk calls a second per project.  The engine's bucket may spend a
	 * second's worth at once and then a second's refill within the same
	 * second: 2.4 keeps any second at 4 calls.
	 */
	.default_rate_limit = 2.4,
	.default_max_concurrency = 4,
	.check_destination = iterable_check_destination,
	.check_sync = iterable_check_sync,
	.check_source = iterable_check_source,
	.deletes_need_id = retl_ids_unless_append,
	.build = iterable_build,
	.read_answer = iterable_read_answer,
};
