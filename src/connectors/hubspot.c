/*
 * hubspot.c: the hubspot connector (CRM v3 objects, batch endpoints).
 *
 *   destination: url (default https://api.hubapi.com), auth: a private
 *                app token ({"type": "bearer"}) or OAuth 2.0 (oauth.c)
 *   sync:        "object": "contacts" | "companies" | "deals" | "tickets" |
 *                a custom object's type id ("2-1234567"),
 *                "id_property": a unique property, whose value is the
 *                record's mapped field of that name
 *
 * Upserts: POST /crm/v3/objects/{object}/batch/upsert with up to 100
 * {"id": <value>, "idProperty": <id_property>, "properties": {name:
 * string}, "objectWriteTraceId": <record id>}.  HubSpot answers 200, or
 * 207 Multi-Status with errors[]; a record is delivered only where a
 * result carries its objectWriteTraceId (its HubSpot id is remembered),
 * failed where an error names it in context.objectWriteTraceId (a
 * VALIDATION_ERROR is dead-lettered alone, other categories retried), and
 * retried when the answer says nothing of it.  Deletes (upsert and mirror
 * syncs) archive by the remembered HubSpot id: POST
 * /crm/v3/objects/{object}/batch/archive, 204.  A delete of a key HubSpot
 * gave no id for is done without a request when this sync never sent the
 * key (sync/ids.c marks those it sends).  When it did (the answer was
 * lost, failed, or the record was dead-lettered), the delete's request
 * looks the id up by the id_property's value kept with the mark
 * (RetlRecord.lookup): POST /crm/v3/objects/{object}/batch/read
 * {"idProperty", "inputs": [{"id": value}], "properties": [idProperty]};
 * a record found is kept with its id and sent again at once
 * (RETL_OUTCOME_AGAIN: the next claim archives it by the id), one HubSpot
 * names in a 207's OBJECT_NOT_FOUND error (context.ids) has nothing to
 * archive: delivered.  A mark with no value to look up by (a record whose
 * build found none) still dead-letters the delete, saying so.
 *
 * (From HubSpot's published OpenAPI specification of the CRM objects API
 * and its error-handling guide; see shared/CONNECTORS.md.)
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "connectors/auth.h"
#include "connectors/connector.h"
#include "connectors/request.h"
#include "sync/ids.h"

#define HUBSPOT_MAX_INPUTS 100

static char *
option(cJSON *opts, const char *name)
{
	cJSON	   *v = cJSON_GetObjectItemCaseSensitive(opts, name);

	return cJSON_IsString(v) && v->valuestring ? pstrdup(v->valuestring) : NULL;
}

/* An object type: a standard one's name, or a custom object's id. */
static bool
valid_object(const char *o)
{
	if (o == NULL || o[0] == '\0')
		return false;
	for (const char *p = o; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			  *p == '_' || *p == '-'))
			return false;
	return true;
}

static void
hubspot_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	char	   *object = retl_jsonb_string(options, "object");
	char	   *idp = retl_jsonb_string(options, "id_property");
	char	   *list = retl_jsonb_string(options, "list_id");

	if (!valid_object(object))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a hubspot sync needs option \"object\", an object type"),
				 errhint("contacts, companies, deals, tickets, or a custom object's type id such as \"2-1234567\".")));
	if (list != NULL && (list[0] == '\0' || strspn(list, "0123456789") != strlen(list)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"list_id\" of a hubspot sync must be a list's id, its digits"),
				 errhint("A MANUAL or SNAPSHOT list: its members are added and removed by id.")));
	if (idp == NULL || idp[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a hubspot sync needs option \"id_property\", a unique property of its object"),
				 errhint("For contacts, \"email\"; its value is the record's mapped field of that name.")));
}

static void
hubspot_check_source(Jsonb *options, const RetlSource *source)
{
	if (retl_jsonb_string(options, "list_id") != NULL && !source->audience)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"list_id\" is for a sync of an audience"),
				 errhint("Create the sync with source => 'audience:NAME': entering members are added to the list, exiting ones removed.")));
	/* each input's id is the value of that field */
	retl_source_needs_field(source, "id_property", retl_jsonb_string(options, "id_property"));
}

/* The property values of a record's data: HubSpot's are strings. */
static cJSON *
properties(cJSON *data, const char *idp, char **id, char **error)
{
	cJSON	   *props = cJSON_CreateObject();
	cJSON	   *item;

	*id = NULL;
	cJSON_ArrayForEach(item, data)
	{
		char	   *value = NULL;

		if (cJSON_IsString(item))
			value = pstrdup(item->valuestring);
		else if (cJSON_IsNull(item))
			value = pstrdup("");
		else
		{
			char	   *printed = cJSON_PrintUnformatted(item);

			value = pstrdup(printed ? printed : "");
			if (printed)
				cJSON_free(printed);
		}
		if (strcmp(item->string, idp) == 0)
			*id = value;
		if (cJSON_AddStringToObject(props, item->string, value) == NULL)
		{
			cJSON_Delete(props);
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		}
	}
	if (*id == NULL || (*id)[0] == '\0')
		*error = psprintf("the record has no value for \"%s\", the sync's id_property", idp);
	return props;
}

static void build_objects(RetlRequest *req, RetlSync *sync, const char *object, const char *idp);
static bool lookup_first(RetlRequest *req);

/*
 * An audience's members in a list: an entering member whose contact has no
 * HubSpot id yet is upserted first (its outcome a step: sent again at
 * once, now with the id), then added with PUT
 * /crm/v3/lists/{listId}/memberships/add; an exiting one is removed with
 * .../remove.  The contact itself is never archived.
 */
static void
build_membership(RetlRequest *req, RetlSync *sync, const char *object, const char *idp,
				 const char *list)
{
	bool		exit = req->records[0].op == 'd';
	bool		known;
	int			n = 1;
	int			kept = 0;
	int			nunsent = 0;
	RetlRecord *unsent = palloc(sizeof(RetlRecord) * req->nrecords);
	cJSON	   *ids;
	char	   *printed;
	MemoryContext old;

	retl_ids_known(req);
	known = req->records[0].known_id != NULL;
	while (n < req->nrecords && (req->records[n].op == 'd') == exit &&
		   (req->records[n].known_id != NULL) == known)
		n++;
	req->nrecords = n;
	/* an exit of a member sent with no id given: its id looked up first */
	if (!known && (!exit || lookup_first(req)))
	{
		build_objects(req, sync, object, idp);
		return;
	}
	ids = cJSON_CreateArray();
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		if (r->known_id == NULL)
		{
			/* never sent by this sync: nothing to remove (else why not) */
			char	   *why = retl_ids_none(r, "HubSpot", "id", "remove it from the list");

			if (why != NULL)
				r->unsent = MemoryContextStrdup(req->cxt, why);
			unsent[nunsent++] = *r;
			continue;
		}
		cJSON_AddItemToArray(ids, cJSON_CreateString(r->known_id));
		req->records[kept++] = *r;
	}
	memcpy(&req->records[kept], unsent, sizeof(RetlRecord) * nunsent);
	req->nrecords = kept;
	printed = cJSON_PrintUnformatted(ids);
	cJSON_Delete(ids);
	if (printed == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	old = MemoryContextSwitchTo(req->cxt);
	req->url = psprintf("%s/crm/v3/lists/%s/memberships/%s", sync->url, list, exit ? "remove" : "add");
	req->method = "PUT";
	initStringInfo(&req->body);
	appendStringInfoString(&req->body, printed);
	req->keep_response = true;
	if (kept > 0)
		retl_request_headers(req, sync, "application/json");
	MemoryContextSwitchTo(old);
	cJSON_free(printed);
}

/*
 * Whether a delete request is a lookup: its first record that can be sent
 * has no HubSpot id but a value to look it up by (the others of its kind
 * go to a later request).
 */
static bool
lookup_first(RetlRequest *req)
{
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		if (r->known_id != NULL)
			return false;
		if (r->may_have && r->lookup != NULL)
			return true;
	}
	return false;
}

/*
 * Build an upsert, an archive or a lookup request: the records that share
 * the first one's kind (an upsert, an archive by id, or a lookup of the
 * id of a delete).  A record that cannot be sent (no id_property value; a
 * delete with neither a HubSpot id nor a value to look it up by, of a key
 * sent) is marked unsent and left out, as is one with nothing to send.
 */
static void
build_objects(RetlRequest *req, RetlSync *sync, const char *object, const char *idp)
{
	bool		archive = req->records[0].op == 'd';
	bool		lookup = false;
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *inputs = cJSON_AddArrayToObject(body, "inputs");
	RetlRecord *unsent = palloc(sizeof(RetlRecord) * req->nrecords);
	RetlRecord *later = palloc(sizeof(RetlRecord) * req->nrecords);
	int			nunsent = 0;
	int			nlater = 0;
	int			kept = 0;
	int			n = 1;
	char	   *printed;
	MemoryContext old;

	if (inputs == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	while (n < req->nrecords && (req->records[n].op == 'd') == archive)
		n++;
	req->nrecords = n;
	if (archive && !req->ids_read)
		retl_ids_known(req);
	if (archive)
		lookup = lookup_first(req);
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		cJSON	   *input = cJSON_CreateObject();
		char	   *why = NULL;

		if (archive)
		{
			if (r->known_id == NULL && (!r->may_have || r->lookup == NULL))
			{
				/* never sent by this sync: nothing to archive (else why not) */
				why = retl_ids_none(r, "HubSpot", "id", "archive it");
				if (why == NULL)
				{
					cJSON_Delete(input);
					unsent[nunsent++] = *r;
					continue;
				}
			}
			else if ((r->known_id == NULL) != lookup)
			{
				/* the other kind: released, for a later request */
				cJSON_Delete(input);
				later[nlater++] = *r;
				continue;
			}
			else
				cJSON_AddStringToObject(input, "id", lookup ? r->lookup : r->known_id);
		}
		else
		{
			cJSON	   *data = r->data ? cJSON_Parse(r->data) : NULL;
			char	   *id;
			cJSON	   *props = properties(data ? data : cJSON_CreateObject(), idp, &id, &why);

			cJSON_Delete(data);
			if (why == NULL)
			{
				/* kept with the key's mark: a delete may look it up by it */
				r->lookup = MemoryContextStrdup(req->cxt, id);
				cJSON_AddStringToObject(input, "id", id);
				cJSON_AddStringToObject(input, "idProperty", idp);
				cJSON_AddItemToObject(input, "properties", props);
				cJSON_AddStringToObject(input, "objectWriteTraceId", r->record_id);
			}
			else
				cJSON_Delete(props);
		}
		if (why != NULL)
		{
			cJSON_Delete(input);
			r->unsent = MemoryContextStrdup(req->cxt, why);
			unsent[nunsent++] = *r;
			continue;
		}
		cJSON_AddItemToArray(inputs, input);
		req->records[kept++] = *r;
	}
	memcpy(&req->records[kept], unsent, sizeof(RetlRecord) * nunsent);
	memcpy(&req->records[kept + nunsent], later, sizeof(RetlRecord) * nlater);
	req->nrecords = kept;
	if (lookup)
	{
		cJSON	   *props = cJSON_AddArrayToObject(body, "properties");

		if (props == NULL || cJSON_AddStringToObject(body, "idProperty", idp) == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		cJSON_AddItemToArray(props, cJSON_CreateString(idp));
	}
	printed = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	if (printed == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	old = MemoryContextSwitchTo(req->cxt);
	req->url = psprintf("%s/crm/v3/objects/%s/batch/%s", sync->url, object,
						lookup ? "read" : archive ? "archive" : "upsert");
	req->method = "POST";
	initStringInfo(&req->body);
	appendStringInfoString(&req->body, printed);
	req->keep_response = !archive || lookup;
	if (kept > 0)
		retl_request_headers(req, sync, "application/json");
	MemoryContextSwitchTo(old);
	cJSON_free(printed);
}


static void
hubspot_build(RetlRequest *req, RetlSync *sync)
{
	cJSON	   *opts = cJSON_Parse(sync->options);
	char	   *object = opts ? option(opts, "object") : NULL;
	char	   *idp = opts ? option(opts, "id_property") : NULL;
	char	   *list = opts ? option(opts, "list_id") : NULL;

	cJSON_Delete(opts);
	if (object == NULL || idp == NULL)
		elog(ERROR, "retl: the options of hubspot sync \"%s\" are incomplete", sync->name);
	if (list == NULL)
	{
		build_objects(req, sync, object, idp);
		return;
	}
	if (sync->audience_id == 0)
		elog(ERROR, "retl: hubspot sync \"%s\" has a list_id but no audience", sync->name);
	build_membership(req, sync, object, idp, list);
}

/* The records an error names (context.objectWriteTraceId) get its outcome. */
static void
apply_error(RetlRequest *req, cJSON *error)
{
	cJSON	   *context = cJSON_GetObjectItemCaseSensitive(error, "context");
	cJSON	   *ids = context ? cJSON_GetObjectItemCaseSensitive(context, "objectWriteTraceId") : NULL;
	cJSON	   *category = cJSON_GetObjectItemCaseSensitive(error, "category");
	cJSON	   *message = cJSON_GetObjectItemCaseSensitive(error, "message");
	bool		validation = cJSON_IsString(category) &&
		strcmp(category->valuestring, "VALIDATION_ERROR") == 0;
	cJSON	   *id;
	char	   *text = psprintf("HubSpot refused the record: %s%s%s",
								cJSON_IsString(category) ? category->valuestring : "error",
								cJSON_IsString(message) ? ": " : "",
								cJSON_IsString(message) ? message->valuestring : "");

	cJSON_ArrayForEach(id, ids)
	{
		if (!cJSON_IsString(id))
			continue;
		for (int i = 0; i < req->nrecords; i++)
		{
			if (strcmp(req->records[i].record_id, id->valuestring) != 0)
				continue;
			req->records[i].outcome = validation ? RETL_OUTCOME_DEAD : RETL_OUTCOME_RETRY;
			req->records[i].message = text;
		}
	}
}

/*
 * A list membership change's answer (200 {"recordsIdsAdded" (sic) or
 * "recordIdsRemoved", "recordIdsMissing"}): a member HubSpot has no record
 * of is retried (an add) or done (a removal); the others are delivered.
 */
static void
read_membership(RetlRequest *req)
{
	cJSON	   *answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	cJSON	   *missing = answer ? cJSON_GetObjectItemCaseSensitive(answer, "recordIdsMissing") : NULL;
	bool		add = strstr(req->url, "/memberships/add") != NULL;

	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		cJSON	   *id;

		r->outcome = RETL_OUTCOME_DELIVERED;
		if (!add)
			continue;
		cJSON_ArrayForEach(id, missing)
		{
			if (cJSON_IsString(id) && r->known_id && strcmp(id->valuestring, r->known_id) == 0)
			{
				r->outcome = RETL_OUTCOME_RETRY;
				r->message = psprintf("HubSpot has no record %s to add to the list", r->known_id);
			}
		}
	}
	cJSON_Delete(answer);
}

/* Every record of the request retried, saying why. */
static void
retry_all(RetlRequest *req, const char *why)
{
	for (int i = 0; i < req->nrecords; i++)
	{
		req->records[i].outcome = RETL_OUTCOME_RETRY;
		req->records[i].message = (char *) why;
	}
}

/* The records whose lookup value is value (HubSpot's are case-blind) get outcome. */
static void
looked_up(RetlRequest *req, const char *value, RetlOutcome outcome, const char *id)
{
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		if (r->lookup == NULL || pg_strcasecmp(r->lookup, value) != 0 ||
			(outcome != RETL_OUTCOME_AGAIN && r->outcome == RETL_OUTCOME_AGAIN))
			continue;
		r->outcome = outcome;
		r->message = NULL;
		if (id != NULL)
			r->remember_id = MemoryContextStrdup(req->cxt, id);
	}
}

/*
 * A lookup's answer (200, or 207 with errors[]): a record found (its
 * id_property's value in a result) is kept with HubSpot's id and sent
 * again at once, to be archived by it; one an OBJECT_NOT_FOUND error names
 * (context.ids) HubSpot does not have: its delete is done.  Any other is
 * retried.
 */
static void
read_lookup(RetlRequest *req, const char *idp)
{
	cJSON	   *answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	cJSON	   *item;

	retry_all(req, answer ? "HubSpot's answer does not show this record looked up" :
			  "HubSpot answered without JSON");
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(answer, "results"))
	{
		cJSON	   *props = cJSON_GetObjectItemCaseSensitive(item, "properties");
		char	   *value = retl_json_string(props, idp);
		char	   *id = retl_json_string(item, "id");

		if (value != NULL && id != NULL && id[0] != '\0')
			looked_up(req, value, RETL_OUTCOME_AGAIN, id);
	}
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(answer, "errors"))
	{
		char	   *category = retl_json_string(item, "category");
		cJSON	   *context = cJSON_GetObjectItemCaseSensitive(item, "context");
		cJSON	   *value;

		if (category == NULL || strcmp(category, "OBJECT_NOT_FOUND") != 0)
			continue;
		cJSON_ArrayForEach(value, cJSON_GetObjectItemCaseSensitive(context, "ids"))
			if (cJSON_IsString(value))
				looked_up(req, value->valuestring, RETL_OUTCOME_DELIVERED, NULL);
	}
	cJSON_Delete(answer);
}

/*
 * An upsert's answer, record by record: delivered where a result carries
 * the record's objectWriteTraceId (its HubSpot id kept), failed where an
 * error names it, retried where the answer says nothing of it.
 */
static void
hubspot_read_answer(RetlRequest *req, RetlSync *sync)
{
	cJSON	   *answer;
	cJSON	   *results;
	cJSON	   *errors;
	cJSON	   *item;

	if (req->status != 200 && req->status != 207)
		return;					/* an archive's 204, a 4xx or 5xx: the status rule */
	if (strstr(req->url, "/memberships/") != NULL)
	{
		read_membership(req);
		return;
	}
	if (strstr(req->url, "/batch/read") != NULL)
	{
		cJSON	   *opts = cJSON_Parse(sync->options);
		char	   *idp = retl_json_string(opts, "id_property");

		cJSON_Delete(opts);
		read_lookup(req, idp ? idp : "");
		return;
	}
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	if (answer == NULL)
	{
		retry_all(req, "HubSpot answered without JSON");
		return;
	}
	retry_all(req, "HubSpot's answer does not show this record upserted");
	results = cJSON_GetObjectItemCaseSensitive(answer, "results");
	cJSON_ArrayForEach(item, results)
	{
		cJSON	   *trace = cJSON_GetObjectItemCaseSensitive(item, "objectWriteTraceId");
		cJSON	   *id = cJSON_GetObjectItemCaseSensitive(item, "id");

		if (!cJSON_IsString(trace))
			continue;
		for (int i = 0; i < req->nrecords; i++)
		{
			if (strcmp(req->records[i].record_id, trace->valuestring) != 0)
				continue;
			req->records[i].outcome = RETL_OUTCOME_DELIVERED;
			req->records[i].message = NULL;
			if (cJSON_IsString(id))
				req->records[i].remember_id = MemoryContextStrdup(req->cxt, id->valuestring);
		}
	}
	errors = cJSON_GetObjectItemCaseSensitive(answer, "errors");
	cJSON_ArrayForEach(item, errors)
		apply_error(req, item);
	cJSON_Delete(answer);

	/* an audience's member upserted: now it is added to the list */
	if (strstr(sync->options, "\"list_id\"") != NULL)
		for (int i = 0; i < req->nrecords; i++)
			if (req->records[i].outcome == RETL_OUTCOME_DELIVERED && req->records[i].remember_id)
				req->records[i].outcome = RETL_OUTCOME_AGAIN;
}

static const char *const hubspot_sync_options[] = {"object", "id_property", "list_id", NULL};
static const char *const no_options[] = {NULL};

const RetlConnector retl_hubspot_connector = {
	.kind = "hubspot",
	.destination_options = no_options,
	.sync_options = hubspot_sync_options,
	.default_url = "https://api.hubapi.com",
	.default_token_path = "/oauth/v1/token",
	/* batch/upsert creates or updates: no insert-only or update-only */
	.modes = "upsert, mirror",
	.max_records = HUBSPOT_MAX_INPUTS,
	.default_batch_size = HUBSPOT_MAX_INPUTS,
	.max_bytes = 10485760,
	/*
	 * 100 requests in any 10 s (Free and Starter, and OAuth apps): 9 a
	 * second, so that a second's burst and the next nine stay under it
	 */
	.default_rate_limit = 9,
	.default_max_concurrency = 4,
	.check_destination = NULL,
	.check_sync = hubspot_check_sync,
	.check_source = hubspot_check_source,
	.deletes_need_id = retl_ids_unless_append,
	.build = hubspot_build,
	.read_answer = hubspot_read_answer,
};
