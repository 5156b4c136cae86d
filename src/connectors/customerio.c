/*
 * customerio.c: the customerio connector (Customer.io Journeys Track API:
 * people, their events, and audiences in manual segments).
 *
 *   destination: url (default https://track.customer.io; a workspace in
 *                the EU region: https://track-eu.customer.io), auth basic,
 *                the site id as username and the Track API key as password
 *   sync:        "identifier": "id" (default) | "email": the record's
 *                field that names the person; "event_name": an append
 *                sync's event; "segment_id": an audience's manual segment
 *
 * People and events go through POST /api/v2/batch {"batch": [{"type":
 * "person", "action", "identifiers": {identifier: value}, ...}]}, smaller
 * than 500 KB, each entity at most 32 KB (larger ones are dead-lettered
 * before sending).  Upserts are "identify" with the record's other fields as
 * "attributes" (an update sync adds "_update": true, so that no one is
 * created); deletes are "delete", named by the key when it carries the
 * identifier field, else by the value last identified for the key (kept in
 * retl.remembered_ids; none kept: nothing to delete if this sync never
 * sent the key, sync/ids.c, else a dead letter); an append sync's rows are "event"s named
 * event_name, with the row as attributes, the capture time as "timestamp"
 * and an "id" made from the record id (a ULID, by which Customer.io drops
 * a repeated event: retries are harmless).  Customer.io answers 200, or 207
 * with errors[{batch_index, reason, field, message}]: the entities it names
 * are dead-lettered alone with that, the others are accepted.
 *
 * An audience sync (segment_id) identifies an entering member first (a
 * step: sent again at once), then adds it with POST
 * /api/v1/segments/{id}/add_customers?id_type=... {"ids": [...]}, at most
 * 1000; an exiting one is removed with .../remove_customers, which
 * Customer.io does by id only.  A person is never deleted by it.
 *
 * (From Customer.io's Track API OpenAPI specification: the v2 batch
 * endpoint, person identify/delete/event, and Track Segments; rate: a
 * fair-use 100 requests a second.  See shared/CONNECTORS.md.)
 */
#include "postgres.h"

#include <math.h>

#include <cjson/cJSON.h>

#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "connectors/auth.h"
#include "connectors/connector.h"
#include "connectors/request.h"
#include "sync/ids.h"

#define CIO_MAX_BYTES 500000	/* a batch "smaller than 500kb" */
#define CIO_MAX_ENTITY 32768	/* each entity "32kb or smaller" */
#define CIO_MAX_IDS 1000		/* a manual segment's ids a request */
#define CIO_MAX_EVENT_NAME 100

typedef enum CioOp
{
	CIO_BATCH,					/* identify, delete or event entities */
	CIO_ADD,					/* members added to the segment */
	CIO_REMOVE					/* members removed from it */
} CioOp;

typedef struct CioTarget
{
	char	   *identifier;		/* "id" or "email" */
	char	   *event_name;		/* append syncs */
	char	   *segment_id;		/* audience syncs, else NULL */
	char		mode;
} CioTarget;

static void *
need(void *p)
{
	if (p == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return p;
}

static bool
digits(const char *s)
{
	return s != NULL && s[0] != '\0' && strlen(s) <= 10 && strspn(s, "0123456789") == strlen(s);
}

static void
customerio_check_destination(Jsonb *options)
{
	char	   *auth = retl_auth_type(options);

	if (auth == NULL || strcmp(auth, "basic") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a customerio destination needs basic auth with the workspace's site id and Track API key"),
				 errhint("{\"auth\": {\"type\": \"basic\", \"username\": \"<site id>\", \"password\": \"{{secret:NAME}}\"}}, from Settings > Workspace Settings > API and Webhook Credentials; for a workspace in the EU region, url => 'https://track-eu.customer.io'.")));
}

static void
customerio_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	char	   *identifier = retl_jsonb_string(options, "identifier");
	char	   *event = retl_jsonb_string(options, "event_name");
	bool		append = strcmp(mode, "append") == 0;

	if (retl_jsonb_has(options, "identifier") &&
		(identifier == NULL || (strcmp(identifier, "id") != 0 && strcmp(identifier, "email") != 0)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"identifier\" of a customerio sync must be \"id\" or \"email\""),
				 errhint("The field of each record that names the person: \"id\" (the default), or \"email\" in a workspace that identifies people by email.")));
	if (append && (event == NULL || event[0] == '\0' || strlen(event) > CIO_MAX_EVENT_NAME))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a customerio sync of mode \"append\" needs option \"event_name\", of 1 to %d bytes",
						CIO_MAX_EVENT_NAME),
				 errhint("Each inserted row is sent as an event of that name, e.g. {\"event_name\": \"purchase\"}.")));
	if (!append && retl_jsonb_has(options, "event_name"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"event_name\" is for a customerio sync of mode \"append\""),
				 errhint("An append sync sends each inserted row as an event; the other modes identify people.")));
	if (!retl_jsonb_has(options, "segment_id"))
		return;
	if (!digits(retl_jsonb_string(options, "segment_id")))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"segment_id\" of a customerio sync must be a manual segment's id, its digits"),
				 errhint("Find it on the segment's page in Customer.io (Segments, then the segment, under Usage).")));
	if (strcmp(mode, "upsert") != 0 && strcmp(mode, "mirror") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"segment_id\" is for a customerio sync of mode \"upsert\" or \"mirror\""),
				 errhint("mode => 'mirror' adds the audience's entering members to the segment and removes exiting ones; 'upsert' only adds.")));
	if (identifier != NULL && strcmp(identifier, "email") == 0 && strcmp(mode, "mirror") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a customerio sync that removes people from a segment must identify them by \"id\""),
				 errdetail("Customer.io's Track API removes people from a manual segment by their id only."),
				 errhint("Use \"identifier\": \"id\", or mode => 'upsert', which only adds members.")));
}

static void
customerio_check_source(Jsonb *options, const RetlSource *source)
{
	char	   *identifier = retl_jsonb_string(options, "identifier");
	bool		segment = retl_jsonb_has(options, "segment_id");

	if (segment && !source->audience)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"segment_id\" is for a sync of an audience"),
				 errhint("Create the sync with source => 'audience:NAME': entering members are added to the manual segment, exiting ones removed.")));
	if (!segment && source->audience)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a customerio sync of an audience needs option \"segment_id\""),
				 errdetail("Customer.io keeps a list of people as a manual segment; its members are added and removed through the Track API."),
				 errhint("Create a manual segment in Customer.io and give its id, e.g. {\"segment_id\": \"12\"}.")));
	/* the person is named by that field of each record */
	retl_source_needs_field(source, "identifier", identifier ? identifier : "id");
}

static CioTarget
target(RetlSync *sync)
{
	cJSON	   *opts = cJSON_Parse(sync->options);
	CioTarget	t;

	t.identifier = retl_json_string(opts, "identifier");
	if (t.identifier == NULL)
		t.identifier = "id";
	t.event_name = retl_json_string(opts, "event_name");
	t.segment_id = retl_json_string(opts, "segment_id");
	t.mode = sync->mode;
	cJSON_Delete(opts);
	return t;
}

/* A scalar field of a JSON object (a record's key or data) as text, or NULL. */
static char *
field_text(const char *json, const char *name)
{
	cJSON	   *doc = json ? cJSON_Parse(json) : NULL;
	cJSON	   *item = doc ? cJSON_GetObjectItemCaseSensitive(doc, name) : NULL;
	char	   *text = NULL;

	if (item != NULL && !cJSON_IsObject(item) && !cJSON_IsArray(item))
		text = retl_json_text(item);
	cJSON_Delete(doc);
	return text != NULL && text[0] != '\0' ? text : NULL;
}

/*
 * Who a record is about: its data's identifier field; for a delete, its
 * key's, else the value this sync last identified the key by.
 */
static char *
person(RetlRecord *r, CioTarget *t)
{
	char	   *who;

	if (r->op != 'd')
		return field_text(r->data, t->identifier);
	who = field_text(r->key, t->identifier);
	return who ? who : r->known_id;
}

static int
op_of(RetlRecord *r, void *arg)
{
	CioTarget  *t = arg;

	if (t->segment_id == NULL)
		return CIO_BATCH;
	if (r->op == 'd')
		return CIO_REMOVE;
	/* a member Customer.io has not been told of yet is identified first */
	return r->known_id != NULL ? CIO_ADD : CIO_BATCH;
}

/*
 * An event's id: a ULID (48 bits of milliseconds, 80 more) made from the
 * record's capture time and id, the same on every retry, so that
 * Customer.io drops a repeat.
 */
static char *
event_id(RetlRecord *r)
{
	static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	uint64		ms = (uint64) (Max(r->captured_epoch, 0) * 1000.0) & ((UINT64CONST(1) << 48) - 1);
	size_t		len = strlen(r->record_id);
	uint64		hi = (ms << 16) |
		(hash_bytes_extended((const unsigned char *) r->record_id, len, 1) & 0xFFFF);
	uint64		lo = hash_bytes_extended((const unsigned char *) r->record_id, len, 2);
	char	   *id = palloc(27);

	for (int i = 25; i >= 0; i--)
	{
		id[i] = alphabet[lo & 31];
		lo = (lo >> 5) | (hi << 59);
		hi >>= 5;
	}
	id[26] = '\0';
	return id;
}

/*
 * A record's entity in the batch; NULL and *why when it cannot be sent
 * (or NULL and r->nothing_to_send).
 */
static cJSON *
entity(RetlRecord *r, CioTarget *t, char **why)
{
	char	   *who = person(r, t);
	cJSON	   *item;
	cJSON	   *ids;
	cJSON	   *data;

	if (who == NULL)
	{
		/* a delete of a person this sync never identified: nothing to do */
		*why = r->op == 'd' ?
			retl_ids_none(r, "Customer.io", t->identifier, "delete the person (the key does not carry it)") :
			psprintf("the record has no value for \"%s\", the sync's identifier", t->identifier);
		return NULL;
	}
	item = need(cJSON_CreateObject());
	ids = cJSON_AddObjectToObject(item, "identifiers");
	if (cJSON_AddStringToObject(item, "type", "person") == NULL || ids == NULL ||
		cJSON_AddStringToObject(ids, t->identifier, who) == NULL)
	{
		cJSON_Delete(item);
		need(NULL);
	}
	if (r->op == 'd')
	{
		need(cJSON_AddStringToObject(item, "action", "delete"));
		return item;
	}
	data = cJSON_Parse(r->data);
	if (!cJSON_IsObject(data))
	{
		cJSON_Delete(data);
		data = need(cJSON_CreateObject());
	}
	if (t->mode == 'a')
	{
		need(cJSON_AddStringToObject(item, "action", "event"));
		need(cJSON_AddStringToObject(item, "name", t->event_name));
		need(cJSON_AddStringToObject(item, "id", event_id(r)));
		need(cJSON_AddNumberToObject(item, "timestamp", floor(r->captured_epoch)));
	}
	else
	{
		need(cJSON_AddStringToObject(item, "action", "identify"));
		cJSON_DeleteItemFromObjectCaseSensitive(data, t->identifier);
		/* an update sync must not create anyone */
		if (t->mode == 'p')
			need(cJSON_AddTrueToObject(data, "_update"));
	}
	if (data->child != NULL)
		cJSON_AddItemToObject(item, "attributes", data);
	else
		cJSON_Delete(data);
	return item;
}

/*
 * Records [0, kept) are sent; then the ones marked unsent (dead-lettered
 * alone) and those left for a later request.
 */
static void
arrange(RetlRequest *req, RetlRecord *kept, int nkept, RetlRecord *rest, int nrest)
{
	memcpy(req->records, kept, sizeof(RetlRecord) * nkept);
	memcpy(req->records + nkept, rest, sizeof(RetlRecord) * nrest);
	req->nrecords = nkept;
}

/* The entities of as many records as fit in the batch's bytes; the path. */
static char *
build_batch(RetlRequest *req, RetlSync *sync, CioTarget *t, StringInfo body)
{
	int			limit = sync->max_batch_bytes > 0 ? Min(sync->max_batch_bytes, CIO_MAX_BYTES) : CIO_MAX_BYTES;
	RetlRecord *kept = palloc(sizeof(RetlRecord) * req->nrecords);
	RetlRecord *rest = palloc(sizeof(RetlRecord) * req->nrecords);
	int			nkept = 0;
	int			nrest = 0;
	bool		full = false;

	appendStringInfoString(body, "{\"batch\":[");
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *why = NULL;
		cJSON	   *item = full ? NULL : entity(r, t, &why);
		char	   *printed = NULL;
		int			len = 0;

		if (item != NULL)
		{
			printed = cJSON_PrintUnformatted(item);
			cJSON_Delete(item);
			len = strlen(need(printed));
			if (len > CIO_MAX_ENTITY)
				why = psprintf("the record is %d bytes as a Customer.io entity, more than the 32 KB (%d bytes) Customer.io takes",
							   len, CIO_MAX_ENTITY);
			/* a record that does not fit waits for the next request */
			else if (nkept > 0 && body->len + len + 3 > limit)
				full = true;
		}
		if (why != NULL)
			retl_record_unsent(req, r, why);
		if (why != NULL || full || r->nothing_to_send)
		{
			if (printed)
				cJSON_free(printed);
			rest[nrest++] = *r;
			continue;
		}
		if (nkept > 0)
			appendStringInfoChar(body, ',');
		appendBinaryStringInfo(body, printed, len);
		cJSON_free(printed);
		kept[nkept++] = *r;
	}
	appendStringInfoString(body, "]}");
	arrange(req, kept, nkept, rest, nrest);
	return "/api/v2/batch";
}

/* Members added to or removed from the manual segment, by identifier; the path. */
static char *
build_segment(RetlRequest *req, RetlSync *sync, CioTarget *t, CioOp op, StringInfo body)
{
	RetlRecord *kept = palloc(sizeof(RetlRecord) * req->nrecords);
	RetlRecord *rest = palloc(sizeof(RetlRecord) * req->nrecords);
	int			nkept = 0;
	int			nrest = 0;

	appendStringInfoString(body, "{\"ids\":[");
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *who = person(r, t);

		if (who == NULL)
		{
			/* an exit of a member this sync never identified: nothing to do */
			char	   *why = op == CIO_REMOVE ?
				retl_ids_none(r, "Customer.io", t->identifier, "remove it from the segment") :
				psprintf("no value is known for the member's \"%s\"", t->identifier);

			if (why != NULL)
				retl_record_unsent(req, r, why);
			rest[nrest++] = *r;
			continue;
		}
		if (nkept > 0)
			appendStringInfoChar(body, ',');
		escape_json(body, who);
		kept[nkept++] = *r;
	}
	appendStringInfoString(body, "]}");
	arrange(req, kept, nkept, rest, nrest);
	return psprintf("/api/v1/segments/%s/%s?id_type=%s", t->segment_id,
					op == CIO_ADD ? "add_customers" : "remove_customers", t->identifier);
}

static void
customerio_build(RetlRequest *req, RetlSync *sync)
{
	CioTarget	t = target(sync);
	StringInfoData body;
	char	   *path;
	bool		deletes = false;
	CioOp		op;
	MemoryContext old;

	if (t.segment_id != NULL && sync->audience_id == 0)
		elog(ERROR, "retl: customerio sync \"%s\" has a segment_id but no audience", sync->name);
	for (int i = 0; i < req->nrecords; i++)
		deletes |= req->records[i].op == 'd';
	if (t.segment_id != NULL || deletes)
		retl_ids_known(req);
	/* one kind of request at a time: a batch, or a segment's change */
	retl_request_take_run(req, op_of, &t);
	op = op_of(&req->records[0], &t);
	initStringInfo(&body);
	path = op == CIO_BATCH ? build_batch(req, sync, &t, &body) : build_segment(req, sync, &t, op, &body);
	old = MemoryContextSwitchTo(req->cxt);
	req->url = psprintf("%s%s", retl_base_url(sync), path);
	initStringInfo(&req->body);
	appendBinaryStringInfo(&req->body, body.data, body.len);
	req->method = "POST";
	req->keep_response = op == CIO_BATCH;
	if (req->nrecords > 0)
		retl_request_headers(req, sync, "application/json");
	MemoryContextSwitchTo(old);
}

/* A 207's error for one entity, as its record's message. */
static char *
refusal(cJSON *error)
{
	char	   *reason = retl_json_string(error, "reason");
	char	   *field = retl_json_string(error, "field");
	char	   *message = retl_json_string(error, "message");

	return psprintf("Customer.io refused the record: %s%s%s: %s", reason ? reason : "error",
					field && field[0] ? " " : "", field && field[0] ? field : "",
					message ? message : "(no message)");
}

/*
 * A batch's answer: 200, all accepted; 207, the entities errors[] names by
 * batch_index refused (dead-lettered alone), "all other requests are
 * accepted".  Anything else is the engine's status rule (a 400 splits the
 * batch; 401 and 413 dead-letter; 429 and 5xx retry).
 */
static void
customerio_read_answer(RetlRequest *req, RetlSync *sync)
{
	CioTarget	t;
	bool		named = true;

	if ((req->status != 200 && req->status != 207) || req->nrecords == 0 ||
		strstr(req->url, "/api/v2/batch") == NULL)
		return;
	t = target(sync);
	for (int i = 0; i < req->nrecords; i++)
		req->records[i].outcome = RETL_OUTCOME_DELIVERED;
	if (req->status == 207)
	{
		cJSON	   *answer = cJSON_ParseWithLength(req->response.data, req->response.len);
		cJSON	   *errors = answer ? cJSON_GetObjectItemCaseSensitive(answer, "errors") : NULL;
		cJSON	   *e;

		named = cJSON_GetArraySize(errors) > 0;
		cJSON_ArrayForEach(e, errors)
		{
			cJSON	   *index = cJSON_GetObjectItemCaseSensitive(e, "batch_index");
			RetlRecord *r;

			if (!cJSON_IsNumber(index) || index->valuedouble < 0 ||
				index->valuedouble >= req->nrecords || index->valuedouble != (int) index->valuedouble)
			{
				named = false;
				continue;
			}
			r = &req->records[(int) index->valuedouble];
			r->outcome = RETL_OUTCOME_DEAD;
			r->message = MemoryContextStrdup(req->cxt, refusal(e));
		}
		cJSON_Delete(answer);
	}
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *who;

		if (r->outcome != RETL_OUTCOME_DELIVERED)
			continue;
		/* an error we cannot place: what it does not name is sent again */
		if (!named)
		{
			r->outcome = RETL_OUTCOME_RETRY;
			r->message = "Customer.io answered 207 without naming each refused record by its batch_index";
			continue;
		}
		if (r->op == 'd' || t.mode == 'a')
			continue;
		who = person(r, &t);
		/* an audience's member identified: next, it joins the segment */
		if (t.segment_id != NULL)
			r->outcome = RETL_OUTCOME_AGAIN;
		/* kept for a delete of a key that does not carry the identifier */
		if (who != NULL && (t.segment_id != NULL || field_text(r->key, t.identifier) == NULL))
			r->remember_id = MemoryContextStrdup(req->cxt, who);
	}
}

static const char *const no_options[] = {NULL};
static const char *const customerio_sync_options[] = {"identifier", "event_name", "segment_id", NULL};

const RetlConnector retl_customerio_connector = {
	.kind = "customerio",
	.destination_options = no_options,
	.sync_options = customerio_sync_options,
	.default_url = "https://track.customer.io",
	/* identify creates or updates (update: "_update"); no create-only */
	.modes = "upsert, update, mirror, append",
	.max_records = CIO_MAX_IDS,
	.default_batch_size = CIO_MAX_IDS,
	.max_bytes = CIO_MAX_BYTES,

	/*
	 * a fair-use 100 requests a second: 49, so that a second's burst and
	 * the next second's requests stay under it
	 */
	.default_rate_limit = 49,
	.default_max_concurrency = 8,
	.check_destination = customerio_check_destination,
	.check_sync = customerio_check_sync,
	.check_source = customerio_check_source,
	.deletes_need_id = retl_ids_unless_append,
	.build = customerio_build,
	.read_answer = customerio_read_answer,
};
