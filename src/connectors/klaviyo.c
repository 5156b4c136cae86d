/*
 * klaviyo.c: the klaviyo connector: profiles through bulk import jobs,
 * audiences in lists.
 *
 *   destination: url (default https://a.klaviyo.com), auth
 *                {"type": "header", "name": "Authorization",
 *                 "value": "Klaviyo-API-Key {{secret:NAME}}"},
 *                "revision": the API revision asked for (default below)
 *   sync:        "list_id": for an audience, its list
 *
 * A batch of profiles is one bulk import job (POST
 * /api/profile-bulk-import-jobs, JSON:API, at most 10,000 profiles and
 * 5 MB, 100 KB a profile), answered 202 with the job: its records stay in
 * flight in the job (queue/jobs.c), and the worker checks it (GET
 * .../{id}) until it is complete.  Then, if some profiles failed, its
 * import errors (paginated) name them by their place in the job
 * (source.pointer /data/attributes/profiles/data/<i>/...): those records
 * are dead-lettered alone with Klaviyo's error, the others delivered.  A
 * job Klaviyo cancels gives its records back (retried).
 *
 * A record's fields become the profile: email, phone_number and
 * external_id (at least one: Klaviyo finds the profile by them), the other
 * standard attributes, location fields under location, anything else
 * under properties.  An audience sync with list_id imports entering
 * members with the list in the job's relationships (the import adds them
 * to it), then reads the job's profiles to keep each one's Klaviyo id; an
 * exiting member leaves the list by that id (DELETE
 * /api/lists/{id}/relationships/profiles, at most 1,000), its profile
 * kept (one with no id kept has nothing to remove if this sync never sent
 * it, sync/ids.c, else is dead-lettered).  Klaviyo's API deletes a profile only through a data privacy
 * request, which retl does not make: a deleted row of a profile sync has
 * nothing to send.
 *
 * (From Klaviyo's OpenAPI specification, klaviyo/openapi: bulk import
 * profiles, lists; and developers.klaviyo.com on rate limits and
 * revisions.  Bulk import and list endpoints: 10 a second, 150 a minute.)
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

#define KL_MAX_PROFILES 10000
#define KL_MAX_BYTES 4500000	/* 5 MB a request, the envelope's room left */
#define KL_MAX_PROFILE_BYTES 100000
#define KL_MAX_MEMBERS 1000
#define KL_REVISION "2024-10-15"
#define KL_PAGE 100
#define KL_JSONAPI "application/vnd.api+json"

static const char *const identifiers[] = {"email", "phone_number", "external_id", NULL};
static const char *const attributes[] = {"email", "phone_number", "external_id", "first_name",
	"last_name", "organization", "locale", "title", "image", NULL};
static const char *const location[] = {"address1", "address2", "city", "country", "latitude",
	"longitude", "region", "zip", "timezone", "ip", NULL};

static bool
listed(const char *const *names, const char *name)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

static bool
is_revision(const char *s)
{
	int			y,
				m,
				d;
	char		end;

	return s != NULL && strlen(s) == 10 && sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &end) == 3 &&
		y >= 2022 && m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

static void
klaviyo_check_destination(Jsonb *options)
{
	char	   *type = retl_auth_type(options);
	char	   *revision = retl_jsonb_string(options, "revision");
	JsonbValue	key;
	JsonbValue *auth;
	char	   *name = NULL;
	char	   *value = NULL;

	key.type = jbvString;
	key.val.string.val = "auth";
	key.val.string.len = 4;
	auth = findJsonbValueFromContainer(&options->root, JB_FOBJECT, &key);
	if (auth != NULL && auth->type == jbvBinary)
	{
		Jsonb	   *a = JsonbValueToJsonb(auth);

		name = retl_jsonb_string(a, "name");
		value = retl_jsonb_string(a, "value");
	}
	if (type == NULL || strcmp(type, "header") != 0 || name == NULL ||
		pg_strcasecmp(name, "Authorization") != 0 || value == NULL ||
		strncmp(value, "Klaviyo-API-Key ", 16) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a klaviyo destination needs its private API key in the Authorization header"),
				 errhint("{\"auth\": {\"type\": \"header\", \"name\": \"Authorization\", \"value\": \"Klaviyo-API-Key {{secret:NAME}}\"}}")));
	if (retl_jsonb_has(options, "revision") && !is_revision(revision))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"revision\" of a klaviyo destination must be an API revision date such as \"%s\"",
						KL_REVISION)));
}

static void
klaviyo_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	char	   *list = retl_jsonb_string(options, "list_id");

	if (retl_jsonb_has(options, "list_id") &&
		(list == NULL || list[0] == '\0' || strlen(list) > 64 ||
		 strspn(list, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != strlen(list)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"list_id\" of a klaviyo sync must be a list's id, such as \"Y6nRLr\"")));
	if (strcmp(mode, "mirror") == 0 && list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a klaviyo sync of profiles cannot mirror: Klaviyo's API does not delete profiles"),
				 errhint("Use mode => 'upsert'; or sync an audience into a list (option \"list_id\"), whose exiting members leave it.")));
}

static void
klaviyo_check_source(Jsonb *options, const RetlSource *source)
{
	bool		identified = false;

	if (retl_jsonb_has(options, "list_id") && !source->audience)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"list_id\" is for a sync of an audience"),
				 errhint("Create the sync with source => 'audience:NAME': entering members are added to the list, exiting ones removed.")));
	for (int i = 0; identifiers[i] != NULL; i++)
		identified |= retl_source_has_field(source, identifiers[i]);
	if (!identified)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the sync's records carry none of email, phone_number and external_id"),
				 errdetail("Klaviyo finds a profile by one of them."),
				 errhint("Map a column to one of them, e.g. mapping => '{\"email_address\": \"email\"}'.")));
}

static char *
list_of(RetlSync *sync)
{
	cJSON	   *opts = cJSON_Parse(sync->options);
	char	   *list = retl_json_string(opts, "list_id");

	cJSON_Delete(opts);
	return list;
}

/* JSON:API headers, the revision, the auth */
static void
headers(RetlRequest *req, RetlSync *sync, bool body)
{
	cJSON	   *dest = cJSON_Parse(sync->dest_options);
	char	   *revision = retl_json_string(dest, "revision");
	MemoryContext old = MemoryContextSwitchTo(req->cxt);

	cJSON_Delete(dest);
	retl_request_headers(req, sync, body ? KL_JSONAPI : NULL);
	retl_request_header(req, "Accept", KL_JSONAPI);
	retl_request_header(req, "revision", revision ? revision : KL_REVISION);
	MemoryContextSwitchTo(old);
}

/* A record's profile resource; *why set when it cannot be one. */
static cJSON *
profile(RetlRecord *r, char **why)
{
	cJSON	   *data = r->data ? cJSON_Parse(r->data) : NULL;
	cJSON	   *res = cJSON_CreateObject();
	cJSON	   *attrs = cJSON_AddObjectToObject(res, "attributes");
	cJSON	   *loc = NULL;
	cJSON	   *props = NULL;
	cJSON	   *item;
	bool		identified = false;
	char	   *printed;

	cJSON_AddStringToObject(res, "type", "profile");
	cJSON_ArrayForEach(item, data)
	{
		cJSON	   *to = attrs;
		cJSON	   *copy;

		if (cJSON_IsNull(item))
			continue;			/* a null changes nothing in an import */
		if (listed(attributes, item->string))
			copy = cJSON_CreateString(retl_json_text(item));
		else
		{
			if (listed(location, item->string))
				to = loc ? loc : (loc = cJSON_AddObjectToObject(attrs, "location"));
			else
				to = props ? props : (props = cJSON_AddObjectToObject(attrs, "properties"));
			copy = cJSON_Duplicate(item, true);
		}
		if (listed(identifiers, item->string) && cJSON_IsString(copy) && copy->valuestring[0] != '\0')
			identified = true;
		cJSON_AddItemToObject(to, item->string, copy);
	}
	cJSON_Delete(data);
	printed = cJSON_PrintUnformatted(res);
	if (!identified)
		*why = "the record has no email, phone_number or external_id: Klaviyo finds a profile by one of them";
	else if (printed == NULL || strlen(printed) > KL_MAX_PROFILE_BYTES)
		*why = psprintf("the profile is larger than Klaviyo's %d bytes", KL_MAX_PROFILE_BYTES);
	if (printed)
		cJSON_free(printed);
	return res;
}

/* what names a record in its job: its place, and its identifiers */
static char *
job_ref(int index, cJSON *prof)
{
	cJSON	   *attrs = cJSON_GetObjectItemCaseSensitive(prof, "attributes");
	cJSON	   *ref = cJSON_CreateObject();

	cJSON_AddNumberToObject(ref, "i", index);
	for (int i = 0; identifiers[i] != NULL; i++)
	{
		char	   *v = retl_json_string(attrs, identifiers[i]);

		if (v != NULL)
			cJSON_AddStringToObject(ref, identifiers[i], v);
	}
	return retl_json_print(ref);
}

/* Leaving the list: the kept profile ids. */
static void
build_removal(RetlRequest *req, RetlSync *sync, const char *list)
{
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *data = cJSON_AddArrayToObject(body, "data");
	MemoryContext old;

	req->nrecords = Min(req->nrecords, KL_MAX_MEMBERS);
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		cJSON	   *ref;

		if (r->known_id == NULL)
		{
			/* never added to the list by this sync: nothing to remove */
			char	   *why = retl_ids_none(r, "Klaviyo", "profile id", "remove it from the list");

			if (why != NULL)
				retl_record_unsent(req, r, why);
			continue;
		}
		ref = cJSON_CreateObject();
		cJSON_AddStringToObject(ref, "type", "profile");
		cJSON_AddStringToObject(ref, "id", r->known_id);
		cJSON_AddItemToArray(data, ref);
	}
	retl_request_leave_unsent(req);
	old = MemoryContextSwitchTo(req->cxt);
	req->url = psprintf("%s/api/lists/%s/relationships/profiles", retl_base_url(sync), list);
	req->method = "DELETE";
	MemoryContextSwitchTo(old);
	retl_request_json_body(req, body);
	if (req->nrecords > 0)
		headers(req, sync, true);
}

/*
 * A list sync's exits leave by the profile id kept: mark the members it
 * sends (sync/ids.c).  A profile sync's deletes need none.
 */
static bool
klaviyo_deletes_need_id(RetlSync *sync)
{
	return list_of(sync) != NULL;
}

static void
klaviyo_build(RetlRequest *req, RetlSync *sync)
{
	char	   *list = list_of(sync);
	cJSON	   *body;
	cJSON	   *data;
	cJSON	   *profiles;
	MemoryContext old;
	int			n = 0;

	if (list != NULL && sync->audience_id == 0)
		elog(ERROR, "retl: klaviyo sync \"%s\" has a list_id but no audience", sync->name);
	retl_request_take_run(req, retl_record_is_delete, NULL);
	if (req->records[0].op == 'd')
	{
		if (list == NULL)
		{
			/* a profile sync: Klaviyo keeps the profile */
			for (int i = 0; i < req->nrecords; i++)
				req->records[i].nothing_to_send = true;
			retl_request_leave_unsent(req);
			return;
		}
		retl_ids_known(req);
		build_removal(req, sync, list);
		return;
	}

	body = cJSON_CreateObject();
	data = cJSON_AddObjectToObject(body, "data");
	cJSON_AddStringToObject(data, "type", "profile-bulk-import-job");
	profiles = cJSON_AddArrayToObject(cJSON_AddObjectToObject(cJSON_AddObjectToObject(data, "attributes"),
															  "profiles"), "data");
	if (profiles == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (list != NULL)
	{
		cJSON	   *ref = cJSON_CreateObject();

		cJSON_AddStringToObject(ref, "type", "list");
		cJSON_AddStringToObject(ref, "id", list);
		cJSON_AddItemToArray(cJSON_AddArrayToObject(cJSON_AddObjectToObject(cJSON_AddObjectToObject(data,
																									  "relationships"),
																			 "lists"),
													"data"),
							 ref);
	}
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *why = NULL;
		cJSON	   *prof = profile(r, &why);

		if (why != NULL)
		{
			cJSON_Delete(prof);
			retl_record_unsent(req, r, why);
			continue;
		}
		r->job_ref = MemoryContextStrdup(req->cxt, job_ref(n++, prof));
		cJSON_AddItemToArray(profiles, prof);
	}
	retl_request_leave_unsent(req);
	old = MemoryContextSwitchTo(req->cxt);
	req->url = psprintf("%s/api/profile-bulk-import-jobs", retl_base_url(sync));
	req->method = "POST";
	MemoryContextSwitchTo(old);
	retl_request_json_body(req, body);
	req->keep_response = true;
	if (req->nrecords > 0)
		headers(req, sync, true);
}

/* JSON:API errors of an answer, as one line */
static char *
errors_text(cJSON *answer)
{
	cJSON	   *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(answer, "errors"), 0);
	char	   *code = retl_json_string(first, "code");
	char	   *detail = retl_json_string(first, "detail");

	return psprintf("%s%s%s", code ? code : "error", detail ? ": " : "", detail ? detail : "");
}

static void
klaviyo_read_answer(RetlRequest *req, RetlSync *sync)
{
	cJSON	   *answer;
	cJSON	   *job;
	char	   *id;
	char	   *status;

	if (req->nrecords == 0 || strcmp(req->method, "POST") != 0)
		return;					/* a list removal: 204, or the status rule */
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	if (req->status != 202)
	{
		/* 400s name what is wrong with the request: say so on each record */
		if (req->status == 400 && answer != NULL)
		{
			char	   *text = psprintf("Klaviyo refused the import: %s", errors_text(answer));

			for (int i = 0; i < req->nrecords; i++)
			{
				req->records[i].outcome = RETL_OUTCOME_DEAD;
				req->records[i].message = MemoryContextStrdup(req->cxt, text);
			}
		}
		cJSON_Delete(answer);
		return;
	}
	job = cJSON_GetObjectItemCaseSensitive(answer, "data");
	id = retl_json_string(job, "id");
	status = retl_json_string(cJSON_GetObjectItemCaseSensitive(job, "attributes"), "status");
	if (id == NULL)
	{
		for (int i = 0; i < req->nrecords; i++)
		{
			req->records[i].outcome = RETL_OUTCOME_RETRY;
			req->records[i].message = "Klaviyo's answer names no import job";
		}
		cJSON_Delete(answer);
		return;
	}
	retl_request_job(req, id, "{\"step\": \"status\"}", status);
	for (int i = 0; i < req->nrecords; i++)
		req->records[i].outcome = RETL_OUTCOME_JOB;
	cJSON_Delete(answer);
}

/* The step of a job: {"step": "status" | "errors" | "profiles", "cursor"} */
static char *
step_of(RetlJob *job, char **cursor)
{
	cJSON	   *state = cJSON_Parse(job->state ? job->state : "{}");
	char	   *step = retl_json_string(state, "step");

	*cursor = retl_json_string(state, "cursor");
	cJSON_Delete(state);
	return step ? step : "status";
}

static char *
state_json(const char *step, const char *cursor)
{
	cJSON	   *state = cJSON_CreateObject();

	cJSON_AddStringToObject(state, "step", step);
	if (cursor != NULL)
		cJSON_AddStringToObject(state, "cursor", cursor);
	return retl_json_print(state);
}

static void
klaviyo_build_job(RetlRequest *req, RetlSync *sync)
{
	char	   *cursor;
	char	   *step = step_of(req->job, &cursor);
	StringInfoData url;
	MemoryContext old = MemoryContextSwitchTo(req->cxt);

	initStringInfo(&url);
	appendStringInfo(&url, "%s/api/profile-bulk-import-jobs/%s", retl_base_url(sync),
					 retl_urlencode_text(req->job->remote_id));
	if (strcmp(step, "errors") == 0 || strcmp(step, "profiles") == 0)
	{
		appendStringInfo(&url, "/%s?page%%5Bsize%%5D=%d", strcmp(step, "errors") == 0 ? "import-errors" : "profiles",
						 KL_PAGE);
		if (cursor != NULL)
			appendStringInfo(&url, "&page%%5Bcursor%%5D=%s", retl_urlencode_text(cursor));
	}
	req->url = url.data;
	req->method = "GET";
	req->keep_response = true;
	MemoryContextSwitchTo(old);
	headers(req, sync, false);
}

/* The page[cursor] of a JSON:API answer's links.next, or NULL: the last page. */
static char *
next_cursor(cJSON *answer)
{
	char	   *next = retl_json_string(cJSON_GetObjectItemCaseSensitive(answer, "links"), "next");
	char	   *p = next ? strstr(next, "page%5Bcursor%5D=") : NULL;
	char	   *q = next ? strstr(next, "page[cursor]=") : NULL;
	char	   *v;
	char	   *end;

	if (p != NULL)
		v = p + strlen("page%5Bcursor%5D=");
	else if (q != NULL)
		v = q + strlen("page[cursor]=");
	else
		return NULL;
	end = strchr(v, '&');
	return end ? pnstrdup(v, end - v) : pstrdup(v);
}

/* A record of the job by its place in it, or NULL. */
static RetlRecord *
by_index(RetlRequest *req, int index)
{
	for (int i = 0; i < req->nrecords; i++)
	{
		cJSON	   *ref = cJSON_Parse(req->records[i].job_ref ? req->records[i].job_ref : "{}");
		cJSON	   *n = cJSON_GetObjectItemCaseSensitive(ref, "i");
		bool		match = cJSON_IsNumber(n) && n->valueint == index;

		cJSON_Delete(ref);
		if (match)
			return &req->records[i];
	}
	return NULL;
}

/* Does a record's job_ref name this profile (by an identifier)? */
static bool
names_profile(RetlRecord *r, cJSON *attrs)
{
	cJSON	   *ref = cJSON_Parse(r->job_ref ? r->job_ref : "{}");
	bool		match = false;

	for (int i = 0; identifiers[i] != NULL && !match; i++)
	{
		char	   *mine = retl_json_string(ref, identifiers[i]);
		char	   *theirs = retl_json_string(attrs, identifiers[i]);

		match = mine != NULL && theirs != NULL &&
			(i == 0 ? pg_strcasecmp(mine, theirs) == 0 : strcmp(mine, theirs) == 0);
	}
	cJSON_Delete(ref);
	return match;
}

/* The job is done for the records still in it: delivered. */
static void
deliver_rest(RetlRequest *req)
{
	for (int i = 0; i < req->nrecords; i++)
		if (req->records[i].outcome == RETL_OUTCOME_JOB)
			req->records[i].outcome = RETL_OUTCOME_DELIVERED;
}

static void
klaviyo_read_job(RetlRequest *req, RetlSync *sync)
{
	RetlJob    *job = req->job;
	char	   *cursor;
	char	   *step = step_of(job, &cursor);
	bool		list = list_of(sync) != NULL;
	cJSON	   *answer;
	cJSON	   *item;

	if (req->status != 200)
		return;					/* checked again later */
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	if (answer == NULL)
		return;
	if (strcmp(step, "status") == 0)
	{
		cJSON	   *attrs = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(answer, "data"),
															 "attributes");
		char	   *status = retl_json_string(attrs, "status");
		cJSON	   *failed = cJSON_GetObjectItemCaseSensitive(attrs, "failed_count");

		job->status = status ? MemoryContextStrdup(req->cxt, status) : job->status;
		if (status != NULL && strcmp(status, "cancelled") == 0)
		{
			for (int i = 0; i < req->nrecords; i++)
			{
				req->records[i].outcome = RETL_OUTCOME_RETRY;
				req->records[i].message = psprintf("Klaviyo cancelled import job %s", job->remote_id);
			}
		}
		else if (status != NULL && strcmp(status, "complete") == 0)
		{
			const char *next = cJSON_IsNumber(failed) && failed->valueint > 0 ? "errors" :
				list ? "profiles" : NULL;

			if (next == NULL)
				deliver_rest(req);
			else
			{
				job->state = MemoryContextStrdup(req->cxt, state_json(next, NULL));
				job->check_after_ms = 1;
			}
		}
	}
	else if (strcmp(step, "errors") == 0)
	{
		char	   *more = next_cursor(answer);

		cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(answer, "data"))
		{
			cJSON	   *attrs = cJSON_GetObjectItemCaseSensitive(item, "attributes");
			char	   *pointer = retl_json_string(cJSON_GetObjectItemCaseSensitive(attrs, "source"), "pointer");
			char	   *code = retl_json_string(attrs, "code");
			char	   *detail = retl_json_string(attrs, "detail");
			const char *at = pointer ? strstr(pointer, "/profiles/data/") : NULL;
			RetlRecord *r = at ? by_index(req, atoi(at + strlen("/profiles/data/"))) : NULL;

			if (r == NULL || r->outcome != RETL_OUTCOME_JOB)
				continue;
			/* "error" is Klaviyo's own failure: worth another import */
			r->outcome = code && strcmp(code, "error") == 0 ? RETL_OUTCOME_RETRY : RETL_OUTCOME_DEAD;
			r->message = MemoryContextStrdup(req->cxt,
											 psprintf("Klaviyo refused the profile: %s%s%s", code ? code : "invalid",
													  detail ? ": " : "", detail ? detail : ""));
		}
		job->check_after_ms = 1;
		if (more != NULL)
			job->state = MemoryContextStrdup(req->cxt, state_json("errors", more));
		else if (list)
			job->state = MemoryContextStrdup(req->cxt, state_json("profiles", NULL));
		else
			deliver_rest(req);
	}
	else
	{
		/* profiles: each imported profile's Klaviyo id, kept for the list */
		char	   *more = next_cursor(answer);

		cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(answer, "data"))
		{
			char	   *id = retl_json_string(item, "id");
			cJSON	   *attrs = cJSON_GetObjectItemCaseSensitive(item, "attributes");

			for (int i = 0; id != NULL && i < req->nrecords; i++)
			{
				RetlRecord *r = &req->records[i];

				if (r->outcome == RETL_OUTCOME_JOB && names_profile(r, attrs))
				{
					r->outcome = RETL_OUTCOME_DELIVERED;
					r->remember_id = MemoryContextStrdup(req->cxt, id);
				}
			}
		}
		job->check_after_ms = 1;
		if (more != NULL)
			job->state = MemoryContextStrdup(req->cxt, state_json("profiles", more));
		else
			deliver_rest(req);	/* imported, though Klaviyo did not list it */
	}
	cJSON_Delete(answer);
}

static const char *const klaviyo_destination_options[] = {"revision", NULL};
static const char *const klaviyo_sync_options[] = {"list_id", NULL};

const RetlConnector retl_klaviyo_connector = {
	.kind = "klaviyo",
	.destination_options = klaviyo_destination_options,
	.sync_options = klaviyo_sync_options,
	.default_url = "https://a.klaviyo.com",
	/* a bulk import creates or updates; audiences leave lists */
	.modes = "upsert, mirror",
	.max_records = KL_MAX_PROFILES,
	.default_batch_size = 1000,
	.max_bytes = KL_MAX_BYTES,
	/* 150 requests a minute (and 10 a second) for imports and lists */
	.default_rate_limit = 2.5,
	.default_max_concurrency = 3,
	.check_destination = klaviyo_check_destination,
	.check_sync = klaviyo_check_sync,
	.check_source = klaviyo_check_source,
	.deletes_need_id = klaviyo_deletes_need_id,
	.build = klaviyo_build,
	.read_answer = klaviyo_read_answer,
	.build_job = klaviyo_build_job,
	.read_job = klaviyo_read_job,
};
