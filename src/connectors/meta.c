/*
 * meta.c: the meta_audiences connector: people in a Meta (Facebook,
 * Instagram) custom audience, as hashes.
 *
 *   destination: url (default https://graph.facebook.com), auth
 *                {"type": "bearer", "token": "{{secret:ACCESS_TOKEN}}"},
 *                "api_version" (default below)
 *   sync:        "audience_id": the custom audience's id; "schema": an
 *                object from a field of the records to Meta's key for it,
 *                {"email": "EMAIL", "phone": "PHONE", "first": "FN", ...}
 *                (EMAIL_SHA256 and PHONE_SHA256 are taken for EMAIL and
 *                PHONE)
 *
 * Entering members (upserts, inserts) are added, POST
 * /{api_version}/{audience_id}/users, exiting members (deletes) removed,
 * DELETE on the same path, each with {"payload": {"schema": [keys],
 * "data": [[values]]}, "session": {...}}, at most 10,000 people a request.
 * Every value is normalized the way Meta documents for its key and sent
 * as the hex SHA-256 of that (connectors/hashing.c), except EXTERN_ID and
 * MADID, which Meta takes as they are; the plaintext never leaves the
 * database.  A person with no usable value is not sent (dead-lettered,
 * saying why).  The row sent for a person is kept (remembered id), so a
 * delete removes exactly what was added.  A resync (retl_resync) replaces
 * the audience: its rows come as a replace (records of op 'r', batches
 * one at a time, req->replace numbering them), sent to
 * /{audience_id}/usersreplace as one session, the last batch flagged; an
 * empty result, which usersreplace cannot take, comes as the removals of
 * everyone the sync added (models/empty_replace.c).
 *
 * Meta answers {"num_received", "num_invalid_entries",
 * "invalid_entry_samples": {row: reason}}: a record whose row a sample
 * names is dead-lettered with the reason; if Meta counted more invalid
 * entries than it named, the others are sent again (a smaller batch names
 * them all).  Graph errors are HTTP 400 or 500 {"error": {"code",
 * "error_subcode", "message"}}: throttling (80003 and the like) pauses the
 * destination and retries, a transient error retries, an expired token
 * retries (until max_retry_age: the operator replaces the secret), any
 * other dead-letters the records with Meta's message.
 *
 * (From Meta's Marketing API reference for /{custom_audience_id}/users,
 * the Customer File Custom Audiences guide, its "Hashing and Normalizing
 * Data", and the rate-limiting page; facebook-python-business-sdk.)
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "common/pg_prng.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "connectors/auth.h"
#include "connectors/connector.h"
#include "connectors/hashing.h"
#include "connectors/request.h"
#include "sync/ids.h"

#define META_MAX_ROWS 10000
#define META_VERSION "v21.0"
/* throttled (80003, 17, 4, 32, 613): a while before trying again */
#define META_THROTTLE_PAUSE_MS 60000

/* Meta's keys, and how each value is made ready */
typedef struct MetaKey
{
	const char *name;
	bool		hashed;
	RetlNorm	norm;
} MetaKey;

static const MetaKey keys[] = {
	{"EMAIL", true, RETL_NORM_EMAIL},
	{"PHONE", true, RETL_NORM_PHONE_DIGITS},
	{"FN", true, RETL_NORM_NAME},
	{"LN", true, RETL_NORM_NAME},
	{"FI", true, RETL_NORM_NAME},
	{"CT", true, RETL_NORM_CITY},
	{"ST", true, RETL_NORM_STATE},
	{"ZIP", true, RETL_NORM_ZIP},
	{"COUNTRY", true, RETL_NORM_COUNTRY},
	{"GEN", true, RETL_NORM_GENDER},
	{"DOBY", true, RETL_NORM_DIGITS},
	{"DOBM", true, RETL_NORM_DIGITS},
	{"DOBD", true, RETL_NORM_DIGITS},
	{"EXTERN_ID", false, RETL_NORM_TRIM_LOWER},
	{"MADID", false, RETL_NORM_TRIM_LOWER},
	{NULL, false, 0}
};

/* A key by its name (EMAIL_SHA256 and PHONE_SHA256 as EMAIL and PHONE), or NULL. */
static const MetaKey *
key_named(const char *name)
{
	if (name == NULL)
		return NULL;
	if (strcmp(name, "EMAIL_SHA256") == 0)
		name = "EMAIL";
	else if (strcmp(name, "PHONE_SHA256") == 0)
		name = "PHONE";
	for (int i = 0; keys[i].name != NULL; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* The sync's schema: fields of the records and Meta's keys, in order. */
typedef struct MetaSchema
{
	int			n;
	char	  **fields;
	const MetaKey **keys;
	char	   *audience;
} MetaSchema;

static MetaSchema
schema_of(const char *options)
{
	cJSON	   *opts = cJSON_Parse(options);
	cJSON	   *schema = cJSON_GetObjectItemCaseSensitive(opts, "schema");
	cJSON	   *item;
	MetaSchema	s = {0, NULL, NULL, NULL};

	s.fields = palloc(sizeof(char *) * Max(cJSON_GetArraySize(schema), 1));
	s.keys = palloc(sizeof(MetaKey *) * Max(cJSON_GetArraySize(schema), 1));
	cJSON_ArrayForEach(item, schema)
	{
		s.fields[s.n] = pstrdup(item->string);
		s.keys[s.n++] = key_named(cJSON_IsString(item) ? item->valuestring : NULL);
	}
	s.audience = retl_json_string(opts, "audience_id");
	cJSON_Delete(opts);
	return s;
}

static bool
digits(const char *s)
{
	return s != NULL && s[0] != '\0' && strlen(s) <= 20 && strspn(s, "0123456789") == strlen(s);
}

static void
meta_check_destination(Jsonb *options)
{
	char	   *type = retl_auth_type(options);
	char	   *version = retl_jsonb_string(options, "api_version");
	int			major;
	char		end;

	if (type == NULL || strcmp(type, "bearer") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a meta_audiences destination needs its access token as bearer auth"),
				 errhint("{\"auth\": {\"type\": \"bearer\", \"token\": \"{{secret:NAME}}\"}}: a system user's token with ads_management.")));
	if (retl_jsonb_has(options, "api_version") &&
		(version == NULL || sscanf(version, "v%d.0%c", &major, &end) != 1 || major < 1 ||
		 strlen(version) > 7))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"api_version\" of a meta_audiences destination must be a Graph API version such as \"%s\"",
						META_VERSION)));
}

static void
meta_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	JsonbValue	k;
	JsonbValue *schema;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	bool		is_key = false;

	if (!digits(retl_jsonb_string(options, "audience_id")))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a meta_audiences sync needs option \"audience_id\", a custom audience's id (digits)")));
	k.type = jbvString;
	k.val.string.val = "schema";
	k.val.string.len = 6;
	schema = findJsonbValueFromContainer(&options->root, JB_FOBJECT, &k);
	if (schema == NULL || schema->type != jbvBinary || !JsonContainerIsObject(schema->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a meta_audiences sync needs option \"schema\", an object from the records' fields to Meta's keys"),
				 errhint("For example {\"email\": \"EMAIL\", \"phone\": \"PHONE\"}.")));
	it = JsonbIteratorInit(schema->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			is_key = true;
		else if (tok == WJB_VALUE && is_key)
		{
			char	   *name = v.type == jbvString ? pnstrdup(v.val.string.val, v.val.string.len) : NULL;

			if (key_named(name) == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("\"%s\" is not one of Meta's keys", name ? name : "(not a string)"),
						 errhint("EMAIL, PHONE, FN, LN, FI, CT, ST, ZIP, COUNTRY, GEN, DOBY, DOBM, DOBD, EXTERN_ID or MADID.")));
			n++;
			is_key = false;
		}
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"schema\" of a meta_audiences sync names no key")));
}

static void
meta_check_source(Jsonb *options, const RetlSource *source)
{
	char	   *text = JsonbToCString(NULL, &options->root, VARSIZE(options));
	MetaSchema	s = schema_of(text);

	for (int i = 0; i < s.n; i++)
	{
		retl_source_needs_field(source, "schema", s.fields[i]);
		for (int j = 0; j < i; j++)
			if (s.keys[j] == s.keys[i])
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"schema\" names Meta's key %s twice", s.keys[i]->name)));
	}
}

/* The value of a field for Meta's key: normalized, hashed; "" when unusable. */
static char *
value_for(const MetaKey *key, cJSON *v)
{
	char	   *text = retl_json_text(v);
	char	   *normal;

	if (text == NULL)
		return "";
	normal = retl_normalize(key->norm, text);
	if (normal == NULL)
		return "";
	if (strcmp(key->name, "FI") == 0)
		normal[pg_mblen(normal)] = '\0';
	else if ((strcmp(key->name, "DOBM") == 0 || strcmp(key->name, "DOBD") == 0) && strlen(normal) == 1)
		normal = psprintf("0%s", normal);
	return key->hashed ? retl_sha256_hex(normal) : normal;
}

/*
 * A person's row, as JSON text: the record's fields (its data, else its
 * key) in the schema's order; NULL when no value is usable.
 */
static char *
row_of(RetlRecord *r, MetaSchema *s)
{
	cJSON	   *from = cJSON_Parse(r->data ? r->data : r->key);
	cJSON	   *row = cJSON_CreateArray();
	bool		any = false;

	for (int i = 0; i < s->n; i++)
	{
		char	   *v = value_for(s->keys[i], cJSON_GetObjectItemCaseSensitive(from, s->fields[i]));

		any |= v[0] != '\0';
		cJSON_AddItemToArray(row, cJSON_CreateString(v));
	}
	cJSON_Delete(from);
	if (!any)
	{
		cJSON_Delete(row);
		return NULL;
	}
	return retl_json_print(row);
}

/* The row kept for a person (what was added), or NULL. */
static char *
kept_row(RetlRecord *r)
{
	return r->known_id != NULL && r->known_id[0] != '\0' ? r->known_id : NULL;
}

/*
 * A person whose row changed since it was added (a new email): the old
 * row is removed first, then the new one added (Meta keeps sets of
 * identifiers, with no update).
 */
static bool
changed(RetlRecord *r, MetaSchema *s)
{
	char	   *row;

	if (r->op == 'd' || r->op == 'r' || kept_row(r) == NULL)
		return false;			/* (a replace replaces everything anyway) */
	row = row_of(r, s);
	return row == NULL || strcmp(row, kept_row(r)) != 0;
}

/* a request adds, removes (deletes, changed rows' old ones), or replaces */
static int
operation(RetlRecord *r, void *arg)
{
	return r->op == 'd' || changed(r, (MetaSchema *) arg) ? 1 : r->op == 'r' ? 2 : 0;
}

static void
meta_build(RetlRequest *req, RetlSync *sync)
{
	MetaSchema	s = schema_of(sync->options);
	cJSON	   *dest = cJSON_Parse(sync->dest_options);
	char	   *version = retl_json_string(dest, "api_version");
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *payload = cJSON_AddObjectToObject(body, "payload");
	cJSON	   *schema = cJSON_AddArrayToObject(payload, "schema");
	cJSON	   *data = cJSON_AddArrayToObject(payload, "data");
	cJSON	   *session;
	bool		removing;
	MemoryContext old;

	cJSON_Delete(dest);
	if (data == NULL || schema == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	req->nrecords = Min(req->nrecords, META_MAX_ROWS);
	retl_ids_known(req);
	retl_request_take_run(req, operation, &s);
	removing = operation(&req->records[0], &s) == 1;
	for (int i = 0; i < s.n; i++)
		cJSON_AddItemToArray(schema, cJSON_CreateString(s.keys[i]->name));
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		/* a removal removes what was added: the row kept then */
		char	   *row = removing && kept_row(r) ? kept_row(r) : row_of(r, &s);

		if (row == NULL)
		{
			retl_record_unsent(req, r, "the record has no value Meta can match a person by (each was empty or could not be normalized)");
			continue;
		}
		cJSON_AddItemToArray(data, cJSON_Parse(row));
	}
	retl_request_leave_unsent(req);
	session = cJSON_AddObjectToObject(body, "session");
	if (req->replace != NULL)
	{
		/* a replace: its batches one session, the last one flagged */
		cJSON_AddNumberToObject(session, "session_id", (double) req->replace->session);
		cJSON_AddNumberToObject(session, "batch_seq", req->replace->batch);
		cJSON_AddBoolToObject(session, "last_batch_flag", req->replace->last);
		cJSON_AddNumberToObject(session, "estimated_num_total", (double) req->replace->total);
	}
	else
	{
		/* an integer cJSON prints whole: at most 15 digits */
		cJSON_AddNumberToObject(session, "session_id",
								(double) (pg_prng_uint64(&pg_global_prng_state) % UINT64CONST(100000000000000) + 1));
		cJSON_AddNumberToObject(session, "batch_seq", 1);
		cJSON_AddTrueToObject(session, "last_batch_flag");
		cJSON_AddNumberToObject(session, "estimated_num_total", req->nrecords);
	}
	old = MemoryContextSwitchTo(req->cxt);
	req->url = psprintf("%s/%s/%s/%s", retl_base_url(sync), version ? version : META_VERSION, s.audience,
						req->records[0].op == 'r' ? "usersreplace" : "users");
	req->method = removing ? "DELETE" : "POST";
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

/* Graph's error codes for throttling */
static bool
throttled(int code)
{
	return code == 4 || code == 17 || code == 32 || code == 613 || (code >= 80000 && code <= 80099);
}

/* A Graph error answer: every record's outcome from it. */
static void
graph_error(RetlRequest *req, cJSON *error)
{
	cJSON	   *c = cJSON_GetObjectItemCaseSensitive(error, "code");
	int			code = cJSON_IsNumber(c) ? c->valueint : 0;
	char	   *message = retl_json_string(error, "message");
	char	   *user = retl_json_string(error, "error_user_msg");
	RetlOutcome outcome;
	char	   *text;

	if (throttled(code))
	{
		outcome = RETL_OUTCOME_RETRY;
		req->pause_ms = META_THROTTLE_PAUSE_MS;
	}
	else if (code == 2 || code == 1 || code == 190 || code == 102 || req->status >= 500 ||
			 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(error, "is_transient")))
		outcome = RETL_OUTCOME_RETRY;	/* transient, or a token to replace */
	else
		outcome = RETL_OUTCOME_DEAD;
	text = psprintf("Meta refused the request: (#%d) %s%s%s", code, message ? message : "",
					user ? ": " : "", user ? user : "");
	for (int i = 0; i < req->nrecords; i++)
	{
		req->records[i].outcome = outcome;
		req->records[i].message = MemoryContextStrdup(req->cxt, text);
	}
}

/* Is a sample's row (JSON text, or a lone value) the row a record sent? */
static bool
same_row(const char *sample, const char *row)
{
	cJSON	   *a = cJSON_Parse(sample);
	cJSON	   *b = cJSON_Parse(row);
	bool		same;

	if (cJSON_IsArray(a))
		same = cJSON_Compare(a, b, true);
	else
		same = cJSON_GetArraySize(b) == 1 && cJSON_IsString(cJSON_GetArrayItem(b, 0)) &&
			strcmp(cJSON_GetArrayItem(b, 0)->valuestring, sample) == 0;
	cJSON_Delete(a);
	cJSON_Delete(b);
	return same;
}

static void
meta_read_answer(RetlRequest *req, RetlSync *sync)
{
	MetaSchema	s = schema_of(sync->options);
	char	  **rows = palloc0(sizeof(char *) * Max(req->nrecords, 1));
	cJSON	   *answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	cJSON	   *error = cJSON_GetObjectItemCaseSensitive(answer, "error");
	cJSON	   *invalid;
	cJSON	   *samples;
	cJSON	   *item;
	int			named = 0;
	bool		removing = strcmp(req->method, "DELETE") == 0;

	if (cJSON_IsObject(error))
	{
		graph_error(req, error);
		cJSON_Delete(answer);
		return;
	}
	if (req->status != 200 || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(answer, "num_received")))
	{
		cJSON_Delete(answer);
		return;					/* the status rule */
	}
	/* the rows sent, made again as build made them */
	for (int i = 0; i < req->nrecords; i++)
		rows[i] = removing && kept_row(&req->records[i]) ? kept_row(&req->records[i]) :
			row_of(&req->records[i], &s);
	samples = cJSON_GetObjectItemCaseSensitive(answer, "invalid_entry_samples");
	invalid = cJSON_GetObjectItemCaseSensitive(answer, "num_invalid_entries");
	cJSON_ArrayForEach(item, samples)
	{
		for (int i = 0; i < req->nrecords; i++)
		{
			RetlRecord *r = &req->records[i];
			char	   *reason = cJSON_IsString(item) ? item->valuestring : "invalid entry";

			if (r->outcome != RETL_OUTCOME_UNSET || rows[i] == NULL || !same_row(item->string, rows[i]))
				continue;
			r->outcome = strstr(reason, "retry") ? RETL_OUTCOME_RETRY : RETL_OUTCOME_DEAD;
			r->message = MemoryContextStrdup(req->cxt, psprintf("Meta found the entry invalid: %s", reason));
			named++;
		}
	}
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		if (r->outcome != RETL_OUTCOME_UNSET)
			continue;
		if (cJSON_IsNumber(invalid) && invalid->valueint > named)
		{
			/*
			 * Meta counted invalid entries it did not name (it names a
			 * sample of them): send the others again.  While each answer
			 * names some, which leave the batch, at once and not counted
			 * as an attempt (counted, the valid people of a batch with
			 * more invalid ones than max_attempts samples were
			 * dead-lettered though Meta had them); an answer naming none,
			 * or a removal's (its kept row is forgotten at a step), as a
			 * retry.
			 */
			r->outcome = named > 0 && !removing ? RETL_OUTCOME_AGAIN : RETL_OUTCOME_RETRY;
			r->message = MemoryContextStrdup(req->cxt,
											 psprintf("Meta counted %d invalid entries in the request and named %d: the others are sent again",
													  invalid->valueint, named));
			continue;
		}
		r->outcome = RETL_OUTCOME_DELIVERED;
		/* an added person's row, for its removal; a removal forgets it */
		if (!removing && rows[i] != NULL)
			r->remember_id = MemoryContextStrdup(req->cxt, rows[i]);
		else if (removing && r->op != 'd')
		{
			/* a changed person's old row is gone: now its new one is added */
			r->outcome = RETL_OUTCOME_AGAIN;
			r->remember_id = "";
		}
	}
	cJSON_Delete(answer);
}

static const char *const meta_destination_options[] = {"api_version", NULL};
static const char *const meta_sync_options[] = {"audience_id", "schema", NULL};

const RetlConnector retl_meta_audiences_connector = {
	.kind = "meta_audiences",
	.destination_options = meta_destination_options,
	.sync_options = meta_sync_options,
	.default_url = "https://graph.facebook.com",
	/* people are added and removed: no update-only, no events */
	.modes = "upsert, insert, mirror",
	.max_records = META_MAX_ROWS,
	.default_batch_size = META_MAX_ROWS,
	.max_bytes = 104857600,
	/* 5,000 calls an hour for a development-tier ad account: 1.4 a second */
	.default_rate_limit = 1,
	.default_max_concurrency = 2,
	.no_split = true,
	.replaces = true,
	.check_destination = meta_check_destination,
	.check_sync = meta_check_sync,
	.check_source = meta_check_source,
	.build = meta_build,
	.read_answer = meta_read_answer,
};
