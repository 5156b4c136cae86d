/*
 * salesforce.c: the salesforce connector (REST API, sObject Collections).
 *
 *   destination: url, the org's My Domain (https://acme.my.salesforce.com);
 *                auth OAuth 2.0, client_credentials or refresh_token
 *                (oauth.c; token_url by default {url}/services/oauth2/token),
 *                or a bearer session id (then url is the instance's);
 *                "api_version" (default v62.0, at least v46.0)
 *   sync:        "object": an sObject (Contact, Lead, Account, a custom
 *                Thing__c), "external_id": its external id field, whose
 *                value is the sync's key (one column); "campaign_id": for
 *                an audience of contacts or leads, its campaign
 *
 * Requests go to the token answer's instance_url (the org's instance),
 * else to url.  Upserts: PATCH /services/data/{v}/composite/sobjects/
 * {object}/{external_id} {"allOrNone": false, "records": [{"attributes":
 * {"type": object}, field: value, ..., external_id: key}]}, at most 200;
 * Salesforce answers 200 with one result per record, in order: {"id",
 * "success", "created", "errors": [{"statusCode", "message", "fields"}]}.
 * A record is delivered where its result says success (its Salesforce id
 * is kept); a transient error (UNABLE_TO_LOCK_ROW and the like) retries
 * it, any other dead-letters it alone.  Deletes: DELETE
 * /services/data/{v}/composite/sobjects?ids=...&allOrNone=false by the
 * kept ids (a record already gone counts as deleted; a key with no id
 * kept that this sync never sent has nothing to delete, sync/ids.c).  A
 * key it sent with no id given (the answer lost, failed, or the record
 * dead-lettered) is looked up first by its external id, one a request:
 * GET /services/data/{v}/sobjects/{object}/{external_id}/{key}; a record
 * found (200, its Id) has its id kept and is sent again at once
 * (RETL_OUTCOME_AGAIN: the next claim deletes it by the id); 404
 * NOT_FOUND, Salesforce has no such record, counts the delete done (but
 * for a value ending like a format, ".inc", which Salesforce may have
 * misread: dead-lettered); 300, several records have the value,
 * dead-letters it.  An audience sync
 * with campaign_id upserts an entering member (by the external id: a
 * lookup, or a create), then adds it to the campaign, a CampaignMember
 * created with POST .../composite/sobjects (its id kept with the
 * contact's, "003...:00v..."); an exiting member's CampaignMember is
 * deleted, the contact never.  An expired session (401
 * INVALID_SESSION_ID) renews the token once and retries (queue.c).
 *
 * (From Salesforce's REST API Developer Guide: sObject Collections,
 * OAuth 2.0 flows, API request limits; see shared/CONNECTORS.md.)
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "connectors/auth.h"
#include "connectors/connector.h"
#include "connectors/oauth.h"
#include "connectors/request.h"
#include "sync/ids.h"

#define SF_MAX_RECORDS 200
#define SF_DEFAULT_VERSION "v62.0"
#define SF_MIN_VERSION 46		/* composite/sobjects upsert */
/* REQUEST_LIMIT_EXCEEDED: the org's API requests of the last 24 h are used up */
#define SF_LIMIT_PAUSE_MS (5 * 60 * 1000)
/* the same code for too many long-running requests at once: a short wait */
#define SF_CONCURRENT_PAUSE_MS (10 * 1000)

typedef enum SfOp
{
	SF_UPSERT,					/* the record's sObject, by external id */
	SF_DELETE,					/* the record's sObject, by its id */
	SF_JOIN,					/* a CampaignMember created */
	SF_LEAVE,					/* a CampaignMember deleted */
	SF_LOOKUP					/* a delete's id looked up by its external id */
} SfOp;

typedef struct SfTarget
{
	char	   *object;
	char	   *external_id;
	char	   *campaign_id;	/* NULL: none */
} SfTarget;

/* An API name: a letter, then letters, digits and underscores (Thing__c). */
static bool
api_name(const char *s)
{
	if (s == NULL || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == strlen(s) &&
		strlen(s) <= 80;
}

/* A record id: 15 or 18 letters and digits. */
static bool
sf_id(const char *s, int len)
{
	if (len != 15 && len != 18)
		return false;
	for (int i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

/* Contact or Lead (API names are case-insensitive), else NULL. */
static const char *
member_field(const char *object)
{
	if (pg_strcasecmp(object, "Contact") == 0)
		return "ContactId";
	if (pg_strcasecmp(object, "Lead") == 0)
		return "LeadId";
	return NULL;
}

static void
salesforce_check_destination(Jsonb *options)
{
	char	   *version = retl_jsonb_string(options, "api_version");
	char	   *auth = retl_auth_type(options);
	int			major = 0;
	int			minor = -1;
	char		end;

	if (auth == NULL || (strcmp(auth, "oauth2") != 0 && strcmp(auth, "bearer") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a salesforce destination needs OAuth 2.0 auth"),
				 errhint("{\"auth\": {\"type\": \"oauth2\", \"grant_type\": \"client_credentials\", \"client_id\": ..., \"client_secret\": \"{{secret:NAME}}\"}}: the token comes from url/services/oauth2/token.")));
	if (retl_jsonb_has(options, "api_version") &&
		(version == NULL || version[0] != 'v' || version[1] < '0' || version[1] > '9' ||
		 sscanf(version, "v%d.%d%c", &major, &minor, &end) != 2 ||
		 minor != 0 || major < SF_MIN_VERSION || major > 999))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"api_version\" of a salesforce destination must be a REST API version such as \"%s\"",
						SF_DEFAULT_VERSION),
				 errhint("\"vNN.0\", at least v%d.0, which brought upserts of sObject Collections.", SF_MIN_VERSION)));
}

static void
salesforce_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	char	   *object = retl_jsonb_string(options, "object");
	char	   *external_id = retl_jsonb_string(options, "external_id");
	char	   *campaign = retl_jsonb_string(options, "campaign_id");

	if (!api_name(object))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a salesforce sync needs option \"object\", an sObject's API name"),
				 errhint("Contact, Lead, Account, or a custom object such as \"Thing__c\".")));
	if (!api_name(external_id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a salesforce sync needs option \"external_id\", the API name of an external id field of %s",
						object),
				 errhint("A field marked External ID (such as \"Ext_Id__c\"); its value is the sync's key.")));
	if (campaign != NULL && (!sf_id(campaign, strlen(campaign)) || strncmp(campaign, "701", 3) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"campaign_id\" of a salesforce sync must be a Campaign's id"),
				 errdetail("A Campaign's id has 15 or 18 letters and digits and starts with 701.")));
	if (campaign != NULL && member_field(object) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"campaign_id\" is for a salesforce sync of Contact or Lead, not %s", object),
				 errhint("Campaign members are contacts or leads.")));
}

static void
salesforce_check_source(Jsonb *options, const RetlSource *source)
{
	if (source->nkeys != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a salesforce sync's key must be one column, not %d", source->nkeys),
				 errdetail("Salesforce matches records by one external id field, whose value is the key."),
				 errhint("Sync a query that computes one key column, e.g. key => '{ext_id}'.")));
	/* Salesforce gives records their Id; a record may not carry one */
	for (int i = 0; i < source->nfields; i++)
		if (pg_strcasecmp(source->fields[i], "Id") == 0 &&
			!(source->nkeys == 1 && strcmp(source->keys[0], source->fields[i]) == 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the sync's records carry a field \"%s\", which Salesforce takes as its own record Id",
							source->fields[i]),
					 errdetail("Salesforce gives records their Id and refuses an upsert that sets one."),
					 errhint("Give the sync a mapping that leaves the column out or sends it to a field of %s.",
							 retl_jsonb_string(options, "object"))));
	if (retl_jsonb_string(options, "campaign_id") != NULL && !source->audience)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"campaign_id\" is for a sync of an audience"),
				 errhint("Create the sync with source => 'audience:NAME': entering members join the campaign, exiting ones leave it.")));
}

static SfTarget
target(RetlSync *sync)
{
	cJSON	   *opts = cJSON_Parse(sync->options);
	SfTarget	t;

	t.object = retl_json_string(opts, "object");
	t.external_id = retl_json_string(opts, "external_id");
	t.campaign_id = retl_json_string(opts, "campaign_id");
	cJSON_Delete(opts);
	if (t.object == NULL || t.external_id == NULL)
		elog(ERROR, "retl: the options of salesforce sync \"%s\" are incomplete", sync->name);
	return t;
}

/* The kept id's parts: the record's, and its CampaignMember's after a ':'. */
static char *
record_part(const char *known)
{
	const char *colon = known ? strchr(known, ':') : NULL;

	if (known == NULL)
		return NULL;
	return colon ? pnstrdup(known, colon - known) : pstrdup(known);
}

static char *
member_part(const char *known)
{
	const char *colon = known ? strchr(known, ':') : NULL;

	return colon ? pstrdup(colon + 1) : NULL;
}

static int
op_of(RetlRecord *r, void *arg)
{
	SfTarget   *t = arg;

	if (r->op == 'd' && t->campaign_id == NULL && r->known_id == NULL && r->may_have)
		return SF_LOOKUP;
	if (r->op == 'd')
		return t->campaign_id ? SF_LEAVE : SF_DELETE;
	if (t->campaign_id && r->known_id != NULL && member_part(r->known_id) == NULL)
		return SF_JOIN;
	return SF_UPSERT;
}

/* Where API requests go: the instance the token answer named, else url. */
static char *
api_base(RetlSync *sync)
{
	char	   *instance = retl_oauth_field(sync->dest_id, "instance_url");
	cJSON	   *dest = cJSON_Parse(sync->dest_options);
	char	   *version = retl_json_string(dest, "api_version");
	char	   *base;
	int			len;

	cJSON_Delete(dest);
	if (instance != NULL &&
		(pg_strncasecmp(instance, "https://", 8) == 0 || pg_strncasecmp(instance, "http://", 7) == 0) &&
		strpbrk(instance, " \t\r\n?#") == NULL)
		base = instance;
	else
		base = sync->url;
	len = strlen(base);
	while (len > 0 && base[len - 1] == '/')
		len--;
	return psprintf("%.*s/services/data/%s", len, base, version ? version : SF_DEFAULT_VERSION);
}

/*
 * A record's fields: the data's, the external id the key's value (the key
 * column itself is not sent again under its own name).
 */
static cJSON *
sobject(RetlRecord *r, SfTarget *t, const char *key, const char *key_field)
{
	cJSON	   *rec = cJSON_CreateObject();
	cJSON	   *attrs = cJSON_AddObjectToObject(rec, "attributes");
	cJSON	   *data = r->data ? cJSON_Parse(r->data) : NULL;
	cJSON	   *item;

	if (attrs == NULL || cJSON_AddStringToObject(attrs, "type", t->object) == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	cJSON_ArrayForEach(item, data)
	{
		cJSON	   *copy;

		if (pg_strcasecmp(item->string, t->external_id) == 0 ||
			pg_strcasecmp(item->string, "attributes") == 0 ||
			(key_field != NULL && strcmp(item->string, key_field) == 0))
			continue;
		/* a field's value is a string, number, boolean or null */
		if (cJSON_IsObject(item) || cJSON_IsArray(item))
			copy = cJSON_CreateString(retl_json_text(item));
		else
			copy = cJSON_Duplicate(item, false);
		cJSON_AddItemToObject(rec, item->string, copy);
	}
	cJSON_Delete(data);
	cJSON_AddStringToObject(rec, t->external_id, key);
	return rec;
}

/*
 * A delete's lookup, one record a request (Salesforce finds one record by
 * an external id a request): GET .../sobjects/{object}/{external_id}/{key}.
 */
static void
build_lookup(RetlRequest *req, RetlSync *sync, SfTarget *t, const char *base)
{
	RetlRecord *r = &req->records[0];
	char	   *key = retl_record_key_value(r);
	MemoryContext old;

	req->nrecords = 1;
	if (key == NULL || key[0] == '\0')
		retl_record_unsent(req, r, retl_ids_none(r, "Salesforce", "id", "delete it"));
	retl_request_leave_unsent(req);
	old = MemoryContextSwitchTo(req->cxt);
	req->url = psprintf("%s/sobjects/%s/%s/%s", base, t->object, t->external_id,
						retl_urlencode_text(key ? key : ""));
	req->method = "GET";
	initStringInfo(&req->body);
	req->keep_response = true;
	if (req->nrecords > 0)
	{
		retl_request_headers(req, sync, NULL);
		retl_request_header(req, "Accept", "application/json");
	}
	MemoryContextSwitchTo(old);
}

static void
salesforce_build(RetlRequest *req, RetlSync *sync)
{
	SfTarget	t = target(sync);
	char	   *base = api_base(sync);
	SfOp		op;
	cJSON	   *body = NULL;
	cJSON	   *records = NULL;
	StringInfoData ids;
	MemoryContext old;

	if (t.campaign_id != NULL && sync->audience_id == 0)
		elog(ERROR, "retl: salesforce sync \"%s\" has a campaign_id but no audience", sync->name);
	retl_ids_known(req);
	retl_request_take_run(req, op_of, &t);
	op = op_of(&req->records[0], &t);
	if (op == SF_LOOKUP)
	{
		build_lookup(req, sync, &t, base);
		return;
	}
	initStringInfo(&ids);
	if (op == SF_UPSERT || op == SF_JOIN)
	{
		body = cJSON_CreateObject();
		if (body == NULL || cJSON_AddFalseToObject(body, "allOrNone") == NULL ||
			(records = cJSON_AddArrayToObject(body, "records")) == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		if (op == SF_UPSERT)
		{
			char	   *key = retl_record_key_value(r);

			if (key == NULL || key[0] == '\0')
				retl_record_unsent(req, r, "the record's key has no value for the external id");
			else
				cJSON_AddItemToArray(records, sobject(r, &t, key, retl_record_key_field(r)));
		}
		else if (op == SF_JOIN)
		{
			cJSON	   *m = cJSON_CreateObject();
			cJSON	   *attrs = cJSON_AddObjectToObject(m, "attributes");

			cJSON_AddStringToObject(attrs, "type", "CampaignMember");
			cJSON_AddStringToObject(m, "CampaignId", t.campaign_id);
			cJSON_AddStringToObject(m, member_field(t.object), r->known_id);
			cJSON_AddItemToArray(records, m);
		}
		else
		{
			char	   *id = op == SF_LEAVE ? member_part(r->known_id) : record_part(r->known_id);
			char	   *why;

			if (id == NULL)
			{
				/* never sent by this sync: nothing to delete (else why not) */
				why = retl_ids_none(r, "Salesforce", op == SF_LEAVE ? "CampaignMember id" : "id",
									op == SF_LEAVE ? "remove it from the campaign" : "delete it");
				if (why != NULL)
					retl_record_unsent(req, r, why);
			}
			else if (!sf_id(id, strlen(id)))
				retl_record_unsent(req, r, psprintf("the kept Salesforce id \"%s\" is not a record id", id));
			else
				appendStringInfo(&ids, "%s%s", ids.len > 0 ? "," : "", id);
		}
	}
	retl_request_leave_unsent(req);
	old = MemoryContextSwitchTo(req->cxt);
	if (op == SF_UPSERT)
	{
		req->url = psprintf("%s/composite/sobjects/%s/%s", base, t.object, t.external_id);
		req->method = "PATCH";
	}
	else if (op == SF_JOIN)
	{
		req->url = psprintf("%s/composite/sobjects", base);
		req->method = "POST";
	}
	else
	{
		req->url = psprintf("%s/composite/sobjects?ids=%s&allOrNone=false", base, ids.data);
		req->method = "DELETE";
		initStringInfo(&req->body);
	}
	MemoryContextSwitchTo(old);
	if (body != NULL)
		retl_request_json_body(req, body);
	req->keep_response = true;
	if (req->nrecords > 0)
	{
		old = MemoryContextSwitchTo(req->cxt);
		retl_request_headers(req, sync, body != NULL ? "application/json" : NULL);
		retl_request_header(req, "Accept", "application/json");
		MemoryContextSwitchTo(old);
	}
}

/* Errors worth another try: the record was busy, or the org for a moment. */
static bool
transient(const char *code)
{
	static const char *const codes[] = {"UNABLE_TO_LOCK_ROW", "REQUEST_RUNNING_TOO_LONG",
		"SERVER_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "ALL_OR_NONE_OPERATION_ROLLED_BACK", NULL};

	for (int i = 0; codes[i] != NULL; i++)
		if (strcmp(code, codes[i]) == 0)
			return true;
	return false;
}

/* One result's failure: its first error decides. */
static void
failure(RetlRecord *r, cJSON *result, SfOp op)
{
	cJSON	   *errors = cJSON_GetObjectItemCaseSensitive(result, "errors");
	cJSON	   *first = cJSON_GetArrayItem(errors, 0);
	char	   *code = retl_json_string(first, "statusCode");
	char	   *message = retl_json_string(first, "message");
	cJSON	   *fields = first ? cJSON_GetObjectItemCaseSensitive(first, "fields") : NULL;
	char	   *fieldtext = cJSON_GetArraySize(fields) > 0 ? retl_json_text(fields) : NULL;

	if (code == NULL)
		code = "UNKNOWN_ERROR";
	/* in the recycle bin, or purged from it: already gone */
	if ((op == SF_DELETE || op == SF_LEAVE) &&
		(strcmp(code, "ENTITY_IS_DELETED") == 0 || strcmp(code, "INVALID_CROSS_REFERENCE_KEY") == 0))
	{
		r->outcome = RETL_OUTCOME_DELIVERED;
		return;
	}
	r->outcome = transient(code) ? RETL_OUTCOME_RETRY : RETL_OUTCOME_DEAD;
	r->message = psprintf("Salesforce refused the record: %s%s%s%s%s%s", code,
						  message ? ": " : "", message ? message : "",
						  fieldtext ? " (fields " : "", fieldtext ? fieldtext : "", fieldtext ? ")" : "");
	if (op == SF_JOIN && strcmp(code, "DUPLICATE_VALUE") == 0)
		r->message = psprintf("%s; it is a campaign member this sync did not add, and will not remove",
							  r->message);
}

/*
 * Whether Salesforce may read the end of a value in a URL's path as a
 * format (".xml", ".inc": its guide's warning), answering 404 whether or
 * not it has the record: a value whose last '.' is followed by letters.
 */
static bool
ends_like_format(const char *value)
{
	const char *dot = value ? strrchr(value, '.') : NULL;

	if (dot == NULL || dot[1] == '\0')
		return false;
	for (const char *p = dot + 1; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
			return false;
	return true;
}

/*
 * A lookup's answer: 200, the record (its Id kept, the delete sent again
 * at once); 404 NOT_FOUND, no record has the value (the delete is done),
 * unless the value ends like a format (dead-lettered: retl cannot tell);
 * 300, several have it.  Other answers: the status rule.
 */
static void
read_lookup(RetlRequest *req, cJSON *answer)
{
	RetlRecord *r = &req->records[0];
	char	   *id = retl_json_string(answer, "Id");
	char	   *code = retl_json_string(cJSON_GetArrayItem(answer, 0), "errorCode");

	if (req->status == 200 && id != NULL && sf_id(id, strlen(id)))
	{
		r->outcome = RETL_OUTCOME_AGAIN;
		r->remember_id = MemoryContextStrdup(req->cxt, id);
	}
	else if (req->status == 200)
	{
		r->outcome = RETL_OUTCOME_RETRY;
		r->message = "Salesforce's answer to the lookup of this record's id gives no Id";
	}
	else if (req->status == 404 && code != NULL && strcmp(code, "NOT_FOUND") == 0 &&
			 ends_like_format(retl_record_key_value(r)))
	{
		r->outcome = RETL_OUTCOME_DEAD;
		r->message = "Salesforce answered 404 to the lookup of this key's id, but may have read the key's end (after its last '.') as a format: retl cannot tell whether it has the record";
	}
	else if (req->status == 404 && code != NULL && strcmp(code, "NOT_FOUND") == 0)
		r->outcome = RETL_OUTCOME_DELIVERED;
	else if (req->status == 300)
	{
		r->outcome = RETL_OUTCOME_DEAD;
		r->message = "several Salesforce records have this key as their external id: retl cannot tell which to delete";
	}
}

/*
 * The answer, record by record: results in the order of the request's
 * records (ids for a delete).  A record the answer says nothing of is
 * retried.
 */
static void
salesforce_read_answer(RetlRequest *req, RetlSync *sync)
{
	SfTarget	t = target(sync);
	SfOp		op;
	cJSON	   *answer;
	char	   *code;

	if (req->nrecords == 0)
		return;
	op = strcmp(req->method, "PATCH") == 0 ? SF_UPSERT :
		strcmp(req->method, "POST") == 0 ? SF_JOIN :
		strcmp(req->method, "GET") == 0 ? SF_LOOKUP :
		t.campaign_id ? SF_LEAVE : SF_DELETE;
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	code = retl_json_string(cJSON_GetArrayItem(answer, 0), "errorCode");
	if (req->status == 403 && code != NULL && strcmp(code, "REQUEST_LIMIT_EXCEEDED") == 0)
	{
		char	   *message = retl_json_string(cJSON_GetArrayItem(answer, 0), "message");

		/*
		 * The org's allocation of API requests of the last 24 hours is used
		 * up ("TotalRequests Limit exceeded"): a long wait; or too many
		 * long-running requests at once: a short one.  Then try again.
		 */
		bool		daily = message != NULL && strstr(message, "TotalRequests") != NULL;

		for (int i = 0; i < req->nrecords; i++)
		{
			req->records[i].outcome = RETL_OUTCOME_RETRY;
			req->records[i].message = daily ?
				"Salesforce answered REQUEST_LIMIT_EXCEEDED: the org's API requests of the last 24 hours are used up" :
				psprintf("Salesforce answered REQUEST_LIMIT_EXCEEDED: %s", message ? message : "a limit was hit");
		}
		req->pause_ms = daily ? SF_LIMIT_PAUSE_MS : SF_CONCURRENT_PAUSE_MS;
	}
	else if (op == SF_LOOKUP)
		read_lookup(req, answer);
	if (req->status != 200 || op == SF_LOOKUP)
	{
		cJSON_Delete(answer);
		return;					/* 400, 401, 404, 5xx: the status rule (401: a new token) */
	}
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		cJSON	   *result = cJSON_IsArray(answer) ? cJSON_GetArrayItem(answer, i) : NULL;
		cJSON	   *success = result ? cJSON_GetObjectItemCaseSensitive(result, "success") : NULL;
		char	   *id = retl_json_string(result, "id");

		if (result == NULL || !cJSON_IsBool(success))
		{
			r->outcome = RETL_OUTCOME_RETRY;
			r->message = "Salesforce's answer does not show this record's result";
			continue;
		}
		if (!cJSON_IsTrue(success))
		{
			failure(r, result, op);
			continue;
		}
		r->outcome = RETL_OUTCOME_DELIVERED;
		if (op == SF_UPSERT && id != NULL && sf_id(id, strlen(id)))
		{
			char	   *member = member_part(r->known_id);

			/* an entering member's contact: next, it joins the campaign */
			if (t.campaign_id != NULL && member == NULL)
				r->outcome = RETL_OUTCOME_AGAIN;
			r->remember_id = MemoryContextStrdup(req->cxt, member ? psprintf("%s:%s", id, member) : id);
		}
		else if (op == SF_UPSERT)
		{
			r->outcome = RETL_OUTCOME_RETRY;
			r->message = "Salesforce's answer gives no id for this record";
		}
		else if (op == SF_JOIN && id != NULL && sf_id(id, strlen(id)))
			r->remember_id = MemoryContextStrdup(req->cxt, psprintf("%s:%s", r->known_id, id));
		else if (op == SF_JOIN)
		{
			r->outcome = RETL_OUTCOME_RETRY;
			r->message = "Salesforce's answer gives no CampaignMember id for this member";
		}
	}
	cJSON_Delete(answer);
}

static const char *const salesforce_destination_options[] = {"api_version", NULL};
static const char *const salesforce_sync_options[] = {"object", "external_id", "campaign_id", NULL};

const RetlConnector retl_salesforce_connector = {
	.kind = "salesforce",
	.destination_options = salesforce_destination_options,
	.sync_options = salesforce_sync_options,
	.default_url = NULL,		/* each org has its own My Domain */
	.default_token_path = "/services/oauth2/token",
	/* upsert by external id creates or updates: no insert-only or update-only */
	.modes = "upsert, mirror",
	.max_records = SF_MAX_RECORDS,
	.default_batch_size = SF_MAX_RECORDS,
	.max_bytes = 10485760,
	/*
	 * An org's API requests are counted over 24 hours (Enterprise Edition:
	 * 100,000 and 1,000 per license; Developer Edition 15,000); one a
	 * second is 86,400 a day.
	 */
	.default_rate_limit = 1,
	.default_max_concurrency = 4,
	.check_destination = salesforce_check_destination,
	.check_sync = salesforce_check_sync,
	.check_source = salesforce_check_source,
	.deletes_need_id = retl_ids_unless_append,
	.build = salesforce_build,
	.read_answer = salesforce_read_answer,
};
