/*
 * braze.c: the braze connector (REST API: users/track and users/delete).
 *
 *   destination: url, the instance's REST endpoint
 *                (https://rest.iad-01.braze.com; no default: each
 *                instance has its own), auth a REST API key
 *                {"type": "bearer", "token": "{{secret:NAME}}"}
 *   sync:        "identifier": "external_id" (default) | "email", what a
 *                user object names the user by; "event_name": append
 *                syncs' event; "attribute": audience syncs' boolean
 *                custom attribute
 *
 * The user's identifier is the record's field of that name when the
 * sync's records carry one (a column email, a mapping {"id":
 * "external_id"}), else the key's value (one column); append syncs' rows
 * must carry it (their key is the event's).  The identifier sent is kept
 * (retl.remembered_ids), and deletes and an audience's exits, which carry
 * only the key, name the user by it; one of a user this sync never sent
 * has nothing to do (sync/ids.c), one sent with none kept is
 * dead-lettered.  A record whose email (identifier "email") holds no @
 * is dead-lettered unsent: Braze would take the text as the address.
 *
 * Upserts: POST /users/track {"attributes": [{identifier, field: value,
 * ...}]}, the rest of the data as custom attributes (null removes one;
 * update mode adds "_update_existing_only": true).  Appends: {"events":
 * [{identifier, "name": event_name, "time": captured_at, "properties":
 * the row}]}.  At most 75 objects a request.  Braze answers {"message":
 * "success", "attributes_processed" | "events_processed": n, "errors":
 * [{"type", "input_array", "index"}]}: the object at that index is refused
 * (dead-lettered alone with the type; "please retry" and the like
 * retried), the others delivered if the answer accounts for every object.
 * A 400 naming objects in errors[] (none was valid) is read the same way;
 * any other answer follows the status rule.  429: the destination waits
 * out Braze's window (3 s; a minute for deletes).  Deletes (upsert and
 * mirror): POST /users/delete {"external_ids": [...]} or
 * {"email_addresses": [{"email", "prioritization"}]}, at most 50.
 * Braze's segments are built from attributes, so an audience sync sets
 * "attribute": true on entering members and false on exiting ones.
 *
 * (From Braze's REST API documentation, braze-inc/braze-docs _docs/_api:
 * post_user_track.md, post_user_delete.md, user_attributes_object.md,
 * event_object.md, errors.md, api_limits.md; see shared/CONNECTORS.md.)
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

#define BRAZE_MAX_OBJECTS 75	/* users/track, across its arrays */
#define BRAZE_MAX_DELETES 50	/* users/delete, of one identifier type */
#define BRAZE_MAX_BYTES 4000000 /* 4 MB a request, the envelope's room left */
#define BRAZE_TRACK_PAUSE_MS 3000	/* 3,000 requests per 3 s */
#define BRAZE_DELETE_PAUSE_MS 60000 /* 20,000 requests a minute */

/* names in a user object that are not attributes: Braze's own */
static const char *const reserved[] = {
	"external_id", "braze_id", "user_alias", "_update_existing_only", "_merge_objects",
	"push_token_import", NULL
};

typedef struct BrazeTarget
{
	const char *identifier;		/* "external_id" or "email" */
	char	   *event_name;		/* append syncs, else NULL */
	char	   *attribute;		/* audience syncs, else NULL */
	char		mode;
} BrazeTarget;

static bool
listed(const char *const *list, const char *s)
{
	for (int i = 0; list[i] != NULL; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

/* A name Braze takes for an attribute or a property: 1 to 255 characters, no leading $. */
static bool
braze_name(const char *s)
{
	return s != NULL && s[0] != '\0' && s[0] != '$' && strlen(s) <= 255;
}

/*
 * There is no default url: each Braze instance has its own REST endpoint,
 * so a destination without one is refused here, saying where to find it.
 */
static char *
braze_default_url(Jsonb *options)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("a braze destination needs its instance's REST endpoint as url"),
			 errdetail("Each Braze instance has its own REST endpoint; there is no single default."),
			 errhint("Use the REST endpoint matching the dashboard you log in to, as Braze's API overview lists them: dashboard-01.braze.com is url => 'https://rest.iad-01.braze.com', dashboard-01.braze.eu is 'https://rest.fra-01.braze.eu'.")));
	return NULL;
}

static void
braze_check_destination(Jsonb *options)
{
	char	   *auth = retl_auth_type(options);

	if (auth == NULL || strcmp(auth, "bearer") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a braze destination needs a REST API key as bearer auth"),
				 errhint("{\"auth\": {\"type\": \"bearer\", \"token\": \"{{secret:NAME}}\"}}, a key created under Settings > APIs and Identifiers with the permissions users.track and users.delete.")));
}

static void
braze_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	char	   *identifier = retl_jsonb_string(options, "identifier");
	char	   *event = retl_jsonb_string(options, "event_name");
	char	   *attribute = retl_jsonb_string(options, "attribute");
	bool		append = strcmp(mode, "append") == 0;

	if (retl_jsonb_has(options, "identifier") &&
		(identifier == NULL || (strcmp(identifier, "external_id") != 0 && strcmp(identifier, "email") != 0)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"identifier\" of a braze sync must be \"external_id\" or \"email\""),
				 errhint("It says what each user object names the user by; external_id is the default.")));
	if (append && !braze_name(event))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an append sync to braze needs option \"event_name\", the custom event's name"),
				 errhint("For example {\"event_name\": \"order_placed\"}: each row is one event, its columns the event's properties.")));
	if (!append && retl_jsonb_has(options, "event_name"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"event_name\" is for an append sync"),
				 errhint("Use mode => 'append' to send each row as an event; other modes set user attributes.")));
	if (retl_jsonb_has(options, "attribute") &&
		(append || !braze_name(attribute) || listed(reserved, attribute) || strcmp(attribute, "email") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"attribute\" of a braze sync must name a custom attribute, for an audience sync"),
				 errhint("A name of 1 to 255 characters, not starting with $, such as \"vip\": members who enter get true, who exit false.")));
}

static void
braze_check_source(Jsonb *options, const RetlSource *source)
{
	char	   *identifier = retl_jsonb_string(options, "identifier");
	bool		append = retl_jsonb_has(options, "event_name");	/* (only there) */

	if (identifier == NULL)
		identifier = "external_id";
	if (retl_jsonb_has(options, "attribute") != source->audience)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 source->audience ? errmsg("an audience sync to braze needs option \"attribute\"") :
				 errmsg("option \"attribute\" is for a sync of an audience"),
				 errdetail("Braze has no lists in its REST API; segments are built from user attributes."),
				 errhint("Create the sync with source => 'audience:NAME' and {\"attribute\": \"vip\"}: members who enter get vip = true, who exit false.")));
	if (append)
		retl_source_needs_field(source, "identifier", identifier);
	else if (!retl_source_has_field(source, identifier) && source->nkeys != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a braze sync whose records carry no field \"%s\" needs a key of one column, not %d",
						identifier, source->nkeys),
				 errdetail("The user is named by the records' field \"%s\", else by the key's value.", identifier),
				 errhint("Map a column to \"%s\" in the sync's mapping, or sync a query with one key column.", identifier)));
	for (int i = 0; i < source->nfields; i++)
	{
		const char *f = source->fields[i];

		if (strcmp(f, identifier) == 0)
			continue;
		if (append && (!braze_name(f) || strcmp(f, "time") == 0 || strcmp(f, "event_name") == 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the sync's records carry a field \"%s\", which Braze refuses as an event property", f),
					 errdetail("Property names are 1 to 255 characters, do not start with $, and are not \"time\" or \"event_name\"."),
					 errhint("Give the sync a mapping that sends the column under another name, e.g. {\"%s\": \"%s_at\"}.", f, f)));
		/* (an email beside an external_id is the profile's email; not the reverse) */
		if (!append && listed(reserved, f))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the sync's records carry a field \"%s\", which Braze takes as its own, not an attribute", f),
					 errdetail("Braze reads that name as an identifier or a flag of the object; this sync names the user by its %s.", identifier),
					 errhint("Give the sync a mapping that leaves the column out or sends it under another name.")));
	}
}

static BrazeTarget
target(RetlSync *sync)
{
	cJSON	   *opts = cJSON_Parse(sync->options);
	char	   *identifier = retl_json_string(opts, "identifier");
	BrazeTarget t;

	t.identifier = identifier != NULL && strcmp(identifier, "email") == 0 ? "email" : "external_id";
	t.event_name = retl_json_string(opts, "event_name");
	t.attribute = retl_json_string(opts, "attribute");
	t.mode = sync->mode;
	cJSON_Delete(opts);
	if ((t.mode == 'a' && t.event_name == NULL) || (sync->audience_id != 0 && t.attribute == NULL))
		elog(ERROR, "retl: the options of braze sync \"%s\" are incomplete", sync->name);
	return t;
}

static void
add(cJSON *obj, const char *name, cJSON *item)
{
	if (item == NULL || !cJSON_AddItemToObject(obj, name, item))
	{
		cJSON_Delete(item);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
}

/*
 * The user a record names, or NULL: its data's identifier field (*field
 * set), else the key's value; a record without data (a delete, an exit)
 * by the identifier kept when it was sent, else by a key of that name.
 */
static char *
user_of(RetlRecord *r, cJSON *data, BrazeTarget *t, bool *field)
{
	cJSON	   *v = data ? cJSON_GetObjectItemCaseSensitive(data, t->identifier) : NULL;
	char	   *key_field = retl_record_key_field(r);
	char	   *user;

	*field = v != NULL;
	if (v != NULL)
		user = retl_json_text(v);
	else if (r->data == NULL && r->known_id != NULL)
		user = r->known_id;
	else if (r->data != NULL || (key_field != NULL && strcmp(key_field, t->identifier) == 0))
		user = retl_record_key_value(r);
	else
		user = NULL;
	return user != NULL && user[0] != '\0' ? user : NULL;
}

/*
 * A record's object (attributes, or an event), or NULL and why (or NULL
 * and r->nothing_to_send).
 */
static cJSON *
object(RetlRecord *r, BrazeTarget *t, bool audience, char **why)
{
	cJSON	   *data = r->data ? cJSON_Parse(r->data) : NULL;
	char	   *key_field = retl_record_key_field(r);
	bool		field;
	char	   *user = user_of(r, data, t, &field);
	cJSON	   *obj;
	cJSON	   *rest;
	cJSON	   *item;

	if (user == NULL || (t->mode == 'a' && !field))
	{
		cJSON_Delete(data);
		/* a delete or exit of a user this sync never sent: nothing to do */
		*why = r->data == NULL ?
			retl_ids_none(r, "Braze", t->identifier, audience ? "set it false" : "delete it") :
			field || t->mode == 'a' ? psprintf("the record has no value for \"%s\", which names the user", t->identifier) :
			pstrdup("the record's key has no value, and it names the user");
		return NULL;
	}
	/* Braze would take any text as the email: one without @ names no one */
	if (strcmp(t->identifier, "email") == 0 && strchr(user, '@') == NULL)
	{
		cJSON_Delete(data);
		*why = field ? pstrdup("the record's field \"email\", which names the user, holds no @: it is not an email address") :
			pstrdup("the record's key, which names the user as its email, holds no @: it is not an email address");
		return NULL;
	}
	obj = cJSON_CreateObject();
	if (obj == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	add(obj, t->identifier, cJSON_CreateString(user));
	if (audience)
	{
		add(obj, t->attribute, cJSON_CreateBool(r->op != 'd'));
		/* an exit does not create a profile just to say false */
		if (r->op == 'd')
			add(obj, "_update_existing_only", cJSON_CreateTrue());
		cJSON_Delete(data);
		return obj;
	}
	if (t->mode == 'p')
		add(obj, "_update_existing_only", cJSON_CreateTrue());
	if (t->mode == 'a')
	{
		add(obj, "name", cJSON_CreateString(t->event_name));
		add(obj, "time", cJSON_CreateString(r->captured_at));
		rest = cJSON_CreateObject();
		add(obj, "properties", rest);
	}
	else
		rest = obj;
	cJSON_ArrayForEach(item, data)
	{
		/* the identifier is not sent again (nor the key, when it is the identifier) */
		if (strcmp(item->string, t->identifier) == 0 ||
			(!field && key_field != NULL && strcmp(item->string, key_field) == 0))
			continue;
		/* null removes an attribute, as Braze reads it */
		add(rest, item->string, cJSON_Duplicate(item, true));
	}
	cJSON_Delete(data);
	return obj;
}

static void
braze_build(RetlRequest *req, RetlSync *sync)
{
	BrazeTarget t = target(sync);
	bool		audience = sync->audience_id != 0;
	bool		delete;
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *items;
	MemoryContext old;

	if (body == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (t.mode != 'a')
		retl_ids_known(req);
	/* (an audience's exits are attributes too) */
	if (!audience && t.mode != 'a')
		retl_request_take_run(req, retl_record_is_delete, NULL);
	delete = !audience && t.mode != 'a' && req->records[0].op == 'd';
	if (delete)
		req->nrecords = Min(req->nrecords, BRAZE_MAX_DELETES);
	items = cJSON_AddArrayToObject(body, !delete ? (t.mode == 'a' ? "events" : "attributes") :
								   strcmp(t.identifier, "email") == 0 ? "email_addresses" : "external_ids");
	if (items == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *why = NULL;
		cJSON	   *item = object(r, &t, audience, &why);

		if (item != NULL && delete)
		{
			cJSON	   *user = cJSON_DetachItemFromObjectCaseSensitive(item, t.identifier);

			cJSON_Delete(item);
			item = user;
			/* the profile users/track updates by email: identified first, then the latest */
			if (strcmp(t.identifier, "email") == 0)
			{
				const char *prio[] = {"identified", "most_recently_updated"};

				item = cJSON_CreateObject();
				add(item, "email", user);
				add(item, "prioritization", cJSON_CreateStringArray(prio, 2));
			}
		}
		if (why != NULL)
			retl_record_unsent(req, r, why);
		else if (r->nothing_to_send)
			continue;
		else if (item == NULL || !cJSON_AddItemToArray(items, item))
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	retl_request_leave_unsent(req);
	old = MemoryContextSwitchTo(req->cxt);
	req->url = psprintf("%s/users/%s", retl_base_url(sync), delete ? "delete" : "track");
	req->method = "POST";
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

/* Braze documents no transient per-object error: these say to try again. */
static bool
transient(const char *type)
{
	return strcasestr(type, "retry") != NULL || strcasestr(type, "internal error") != NULL ||
		strcasestr(type, "timed out") != NULL || strcasestr(type, "temporar") != NULL;
}

/*
 * Per-object errors: each names its object by index within the array
 * sent, the records' order.  Returns how many records they name;
 * *unnamed is set when one names none of them.
 */
static int
object_errors(RetlRequest *req, cJSON *errors, const char *array, bool *unnamed)
{
	cJSON	   *e;
	int			named = 0;

	*unnamed = false;
	cJSON_ArrayForEach(e, errors)
	{
		cJSON	   *index = cJSON_GetObjectItemCaseSensitive(e, "index");
		char	   *in = retl_json_string(e, "input_array");
		char	   *type = retl_json_string(e, "type");
		RetlRecord *r;

		if (!cJSON_IsNumber(index) || in == NULL || strcmp(in, array) != 0 ||
			index->valuedouble < 0 || index->valuedouble >= req->nrecords ||
			index->valuedouble != (double) index->valueint)
		{
			*unnamed = true;
			continue;
		}
		r = &req->records[index->valueint];
		named += r->outcome == RETL_OUTCOME_UNSET;
		/* of several errors, one not worth retrying wins */
		if (r->outcome == RETL_OUTCOME_DEAD)
			continue;
		type = type ? type : "(no reason given)";
		r->outcome = transient(type) ? RETL_OUTCOME_RETRY : RETL_OUTCOME_DEAD;
		r->message = MemoryContextStrdup(req->cxt,
										 psprintf("Braze refused the %s: %s",
												  strcmp(array, "events") == 0 ? "event" : "user's attributes", type));
	}
	return named;
}

static void
braze_read_answer(RetlRequest *req, RetlSync *sync)
{
	bool		delete = strstr(req->url, "/users/delete") != NULL;
	const char *array = sync->mode == 'a' ? "events" : "attributes";
	const char *identifier = target(sync).identifier;
	cJSON	   *answer;
	cJSON	   *sent;
	cJSON	   *count;
	char	   *message;
	char	   *failed = NULL;
	bool		unnamed = false;
	int			named = 0;

	if (req->nrecords == 0)
		return;
	if (req->status == 429)
	{
		/* no Retry-After: wait for Braze's window to turn (the status rule retries) */
		req->pause_ms = delete ? BRAZE_DELETE_PAUSE_MS : BRAZE_TRACK_PAUSE_MS;
		return;
	}
	if (req->status != 400 && (req->status < 200 || req->status >= 300))
		return;					/* 401, 403, 5xx...: the status rule */
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	message = retl_json_string(answer, "message");
	if (req->status == 400)
	{
		/* the objects errors[] names (none was valid), else the request's message */
		object_errors(req, cJSON_GetObjectItemCaseSensitive(answer, "errors"), array, &unnamed);
		failed = message ? psprintf("Braze refused the request: %s", message) : NULL;
		for (int i = 0; failed != NULL && i < req->nrecords; i++)
			if (req->records[i].outcome == RETL_OUTCOME_UNSET)
			{
				req->records[i].outcome = RETL_OUTCOME_DEAD;
				req->records[i].message = MemoryContextStrdup(req->cxt, failed);
			}
		cJSON_Delete(answer);
		return;
	}
	count = cJSON_GetObjectItemCaseSensitive(answer, delete ? "deleted" : psprintf("%s_processed", array));
	if ((message == NULL || strcmp(message, "success") != 0) && !(delete && cJSON_IsNumber(count)))
		failed = psprintf("Braze answered HTTP %ld without \"success\"", req->status);
	else if (!delete)
	{
		/* the others were processed if the answer accounts for each of them */
		named = object_errors(req, cJSON_GetObjectItemCaseSensitive(answer, "errors"), array, &unnamed);
		if (unnamed || (count != NULL && !(cJSON_IsNumber(count) && count->valuedouble == req->nrecords - named)))
			failed = "Braze's answer does not account for this record";
	}
	cJSON_Delete(answer);

	/* (a delete is done: a user already gone is as good as deleted) */
	sent = cJSON_ParseWithLength(req->body.data, req->body.len);
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *user;

		if (r->outcome != RETL_OUTCOME_UNSET)
			continue;
		r->outcome = failed ? RETL_OUTCOME_RETRY : RETL_OUTCOME_DELIVERED;
		r->message = failed ? MemoryContextStrdup(req->cxt, failed) : NULL;
		/* the identifier sent names the user from now on (deletes, exits) */
		user = retl_json_string(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(sent, array), i), identifier);
		if (!failed && !delete && sync->mode != 'a' && r->op != 'd' && user != NULL)
			r->remember_id = MemoryContextStrdup(req->cxt, user);
	}
	cJSON_Delete(sent);
}

static const char *const no_options[] = {NULL};
static const char *const braze_sync_options[] = {"identifier", "event_name", "attribute", NULL};

const RetlConnector retl_braze_connector = {
	.kind = "braze",
	.destination_options = no_options,
	.sync_options = braze_sync_options,
	.default_url = NULL,		/* each instance has its own */
	.default_url_for = braze_default_url,
	/* users/track creates or updates (update: _update_existing_only); no create-only */
	.modes = "upsert, update, mirror, append",
	.max_records = BRAZE_MAX_OBJECTS,
	.default_batch_size = BRAZE_MAX_OBJECTS,
	.max_bytes = BRAZE_MAX_BYTES,

	/*
	 * 3,000 users/track requests per 3 s, and 20,000 users/delete a minute
	 * through the same bucket: a second's burst and the next 3 s (4 s'
	 * worth) must stay under 3,000, and 61 s' worth under 20,000
	 */
	.default_rate_limit = 300,
	.default_max_concurrency = 16,
	.check_destination = braze_check_destination,
	.check_sync = braze_check_sync,
	.check_source = braze_check_source,
	.deletes_need_id = retl_ids_unless_append,
	.build = braze_build,
	.read_answer = braze_read_answer,
};
