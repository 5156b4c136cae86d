/*
 * mailchimp.c: the mailchimp connector (Marketing API 3.0: an audience's
 * members, and its static segments).
 *
 *   destination: url, by default https://{dc}.api.mailchimp.com/3.0, dc
 *                the API key's suffix (...-us14); auth basic, any user
 *                name, the API key as password
 *   sync:        "list_id": the audience; "status": a new member's
 *                (subscribed by default, pending, unsubscribed,
 *                transactional); "email_field": the field of each record
 *                holding the address (default email); "segment_id": for
 *                an audience, a static segment
 *
 * Upserts: POST /lists/{list_id} (batch subscribe) {"members":
 * [{"email_address", "status_if_new", "merge_fields"}], "update_existing":
 * true (false in mode insert)}, up to 500 members.  Every field of a
 * record but the email is a merge field, its name upper-cased (merge tags
 * are).  Mailchimp answers 200 whenever the request is well formed:
 * new_members and updated_members deliver their records (the email is
 * kept as the key's id, for deletes), errors[] name failing members by
 * email_address (dead-lettered alone with Mailchimp's message, retried
 * when it says to wait), and a member the answer does not mention is
 * retried.  Deletes (upsert and mirror syncs) archive the member, one
 * request a record: DELETE /lists/{list_id}/members/{md5 of the lowercased
 * email}, 204; 404 is a member already archived; a key with no email kept
 * that this sync never sent has nothing to archive (sync/ids.c), one it
 * sent is dead-lettered.  An audience sync with
 * segment_id upserts an entering member first, then adds it (and removes
 * an exiting one) with POST /lists/{list_id}/segments/{segment_id}
 * {"members_to_add", "members_to_remove"}, at most 500 each.
 *
 * (From Mailchimp's Marketing API reference and its fundamentals and
 * errors pages, and the official SDKs' models; see shared/CONNECTORS.md
 * and test/emulators/mailchimp.py.)
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "common/md5.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "connectors/auth.h"
#include "connectors/connector.h"
#include "connectors/request.h"
#include "sync/ids.h"

#define MC_MAX_MEMBERS 500

/*
 * Mailchimp sends no Retry-After with its 429 (the 11th simultaneous
 * connection): the destination waits this long before its next request.
 */
#define MC_BUSY_PAUSE_MS 1000

typedef enum McOp
{
	MC_UPSERT,					/* members, by email (batch subscribe) */
	MC_ARCHIVE,					/* one member, by its hash */
	MC_SEGMENT					/* members added to or removed from a segment */
} McOp;

typedef struct McTarget
{
	char	   *list_id;
	char	   *segment_id;		/* NULL: none */
	char	   *status;
	char	   *email_field;
	char		mode;
} McTarget;

static const char *const statuses[] = {"subscribed", "pending", "unsubscribed", "transactional", NULL};

static bool
only(const char *s, const char *chars, size_t maxlen)
{
	return s != NULL && s[0] != '\0' && strlen(s) <= maxlen && strspn(s, chars) == strlen(s);
}

#define DIGITS "0123456789"
#define ALNUM "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" DIGITS

static void
mailchimp_check_destination(Jsonb *options)
{
	char	   *auth = retl_auth_type(options);

	if (auth == NULL || strcmp(auth, "basic") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a mailchimp destination needs basic auth with its API key"),
				 errhint("{\"auth\": {\"type\": \"basic\", \"username\": \"retl\", \"password\": \"{{secret:NAME}}\"}}: any user name, the API key as password.")));
}

/* s in lower (or upper) case, ASCII only, as Mailchimp's hashes and tags are */
static char *
ascii_case(const char *s, bool upper)
{
	char	   *copy = pstrdup(s ? s : "");

	for (char *c = copy; *c; c++)
		*c = upper ? pg_ascii_toupper((unsigned char) *c) : pg_ascii_tolower((unsigned char) *c);
	return copy;
}

/*
 * The API key's data centre names the default url: key-us14 is
 * https://us14.api.mailchimp.com/3.0.  NULL when the key has no such
 * suffix, or is not one secret (the destination must then give its url).
 * The key is read here only, and never shown.
 */
static char *
mailchimp_default_url_for(Jsonb *options)
{
	JsonbValue	k = {.type = jbvString,.val.string = {.len = 4,.val = (char *) "auth"}};
	char	   *password;
	char	   *name;
	char	   *key;
	char	   *dc;
	char	   *url = NULL;

	mailchimp_check_destination(options);
	password = retl_jsonb_string(JsonbValueToJsonb(findJsonbValueFromContainer(&options->root, JB_FOBJECT, &k)),
								 "password");
	if (password == NULL || strncmp(password, "{{secret:", 9) != 0 || strlen(password) < 12 ||
		strcmp(password + strlen(password) - 2, "}}") != 0)
		return NULL;
	name = pnstrdup(password + 9, strlen(password) - 11);
	if ((key = retl_secret_lookup(name)) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("secret \"%s\" does not exist", name),
				 errhint("Create it first with SELECT retl_set_secret(name, value).")));
	/* data centres are letters then digits: us1, us14, ... */
	dc = strrchr(key, '-');
	if (dc != NULL && strlen(++dc) <= 16 && strspn(dc, "abcdefghijklmnopqrstuvwxyz") > 0 &&
		only(dc + strspn(dc, "abcdefghijklmnopqrstuvwxyz"), DIGITS, 16))
		url = psprintf("https://%s.api.mailchimp.com/3.0", dc);
	explicit_bzero(key, strlen(key));
	return url;
}

static void
mailchimp_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	char	   *status = retl_jsonb_string(options, "status");
	char	   *field = retl_jsonb_string(options, "email_field");
	bool		ok = false;

	if (!only(retl_jsonb_string(options, "list_id"), ALNUM, 64))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 retl_jsonb_has(options, "list_id") ?
				 errmsg("option \"list_id\" of a mailchimp sync must be an audience's id, its letters and digits") :
				 errmsg("a mailchimp sync needs option \"list_id\", an audience's id"),
				 errhint("Audience > Settings > Audience name and defaults shows it, e.g. \"a1b2c3d4e5\".")));
	for (int i = 0; status != NULL && statuses[i] != NULL; i++)
		ok |= strcmp(status, statuses[i]) == 0;
	if (retl_jsonb_has(options, "status") && !ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"status\" of a mailchimp sync must be subscribed, pending, unsubscribed or transactional"),
				 errdetail("It is the status a new member is given; members already in the audience keep theirs.")));
	if (retl_jsonb_has(options, "email_field") && (field == NULL || field[0] == '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"email_field\" of a mailchimp sync must name a field of its records")));
	if (retl_jsonb_has(options, "segment_id") && !only(retl_jsonb_string(options, "segment_id"), DIGITS, 18))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"segment_id\" of a mailchimp sync must be a static segment's id, its digits"),
				 errhint("A string such as \"4501\": the id of a tag (a static segment) of the audience.")));
	if (retl_jsonb_has(options, "segment_id") && strcmp(mode, "insert") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("option \"segment_id\" is for modes upsert and mirror"),
				 errhint("mirror adds the audience's entering members to the segment and removes those who exit.")));
}

static void
mailchimp_check_source(Jsonb *options, const RetlSource *source)
{
	char	   *email = retl_jsonb_string(options, "email_field");

	if (email == NULL)
		email = "email";
	if (retl_jsonb_has(options, "segment_id") && !source->audience)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"segment_id\" is for a sync of an audience"),
				 errhint("Create the sync with source => 'audience:NAME': entering members are added to the segment, exiting ones removed.")));
	retl_source_needs_field(source, "email_field", email);
	/* the others are merge fields, by their upper-cased names */
	for (int i = 0; i < source->nfields; i++)
		if (strcmp(source->fields[i], email) != 0 && !only(source->fields[i], ALNUM "_", 255))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("field \"%s\" of the sync's records cannot be a Mailchimp merge tag", source->fields[i]),
					 errdetail("Every field but the email is sent as a merge field, its name upper-cased; merge tags are letters, digits and underscores."),
					 errhint("Map the column to its audience's merge tag, e.g. {\"first_name\": \"FNAME\"}.")));
}

static McTarget
target(RetlSync *sync)
{
	cJSON	   *opts = cJSON_Parse(sync->options);
	McTarget	t;

	t.list_id = retl_json_string(opts, "list_id");
	t.segment_id = retl_json_string(opts, "segment_id");
	t.status = retl_json_string(opts, "status");
	t.email_field = retl_json_string(opts, "email_field");
	cJSON_Delete(opts);
	if (t.list_id == NULL)
		elog(ERROR, "retl: mailchimp sync \"%s\" has no list_id", sync->name);
	if (t.status == NULL)
		t.status = "subscribed";
	if (t.email_field == NULL)
		t.email_field = "email";
	t.mode = sync->mode;
	return t;
}

/*
 * The email kept for a key: the one its member was upserted with.  An
 * empty one means the member must be upserted again (segment_failed).
 */
static bool
known(RetlRecord *r)
{
	return r->known_id != NULL && r->known_id[0] != '\0';
}

static int
op_of(RetlRecord *r, void *arg)
{
	McTarget   *t = arg;

	if (r->op == 'd')
		return t->segment_id ? MC_SEGMENT : MC_ARCHIVE;
	return t->segment_id && known(r) ? MC_SEGMENT : MC_UPSERT;
}

/*
 * The email a delete or an exit goes by: the one kept when the member was
 * upserted, else the key's when the key is the email field alone.
 */
static char *
member_email(RetlRecord *r, McTarget *t)
{
	cJSON	   *key;
	char	   *email = NULL;

	if (known(r))
		return r->known_id;
	key = cJSON_Parse(r->key);
	if (cJSON_IsObject(key) && cJSON_GetArraySize(key) == 1 && key->child->string &&
		strcmp(key->child->string, t->email_field) == 0)
		email = retl_json_text(key->child);
	cJSON_Delete(key);
	return email;
}

/* A new member: its email and merge fields, from the record's data. */
static cJSON *
member(RetlRecord *r, McTarget *t, char **email, char **why)
{
	cJSON	   *data = r->data ? cJSON_Parse(r->data) : NULL;
	cJSON	   *m = cJSON_CreateObject();
	cJSON	   *fields = cJSON_CreateObject();
	cJSON	   *item;

	*email = NULL;
	cJSON_ArrayForEach(item, data)
	{
		if (strcmp(item->string, t->email_field) == 0)
		{
			*email = retl_json_text(item);
			continue;
		}
		/* null clears the field */
		cJSON_AddItemToObject(fields, ascii_case(item->string, true), cJSON_IsNull(item) ? cJSON_CreateString("") :
							  cJSON_Duplicate(item, true));
	}
	cJSON_Delete(data);
	if (*email != NULL)
	{
		/* Mailchimp trims addresses: compare its answers with the trimmed one */
		char	   *s = *email + strspn(*email, " \t\r\n");
		int			len = strlen(s);

		while (len > 0 && strchr(" \t\r\n", s[len - 1]) != NULL)
			len--;
		*email = pnstrdup(s, len);
	}
	if (*email == NULL || (*email)[0] == '\0')
		*why = psprintf("the record has no value for \"%s\", the sync's email_field", t->email_field);
	cJSON_AddStringToObject(m, "email_address", *email ? *email : "");
	cJSON_AddStringToObject(m, "status_if_new", t->status);
	cJSON_AddItemToObject(m, "merge_fields", fields);
	return m;
}

/* A member's id in Mailchimp's paths: the MD5 hex of its lowercased email. */
static char *
subscriber_hash(const char *email)
{
	char	   *lower = ascii_case(email, false);
	char	   *hex = palloc(33);
	const char *errstr = NULL;

	if (!pg_md5_hash(lower, strlen(lower), hex, &errstr))
		elog(ERROR, "retl: could not compute an MD5 hash: %s", errstr ? errstr : "?");
	return hex;
}

static void
mailchimp_build(RetlRequest *req, RetlSync *sync)
{
	McTarget	t = target(sync);
	char	   *base = retl_base_url(sync);
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *members = NULL;
	cJSON	   *add = NULL;
	cJSON	   *remove = NULL;
	McOp		op;
	MemoryContext old;

	if (body == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (t.segment_id != NULL && sync->audience_id == 0)
		elog(ERROR, "retl: mailchimp sync \"%s\" has a segment_id but no audience", sync->name);
	retl_ids_known(req);
	retl_request_take_run(req, op_of, &t);
	op = op_of(&req->records[0], &t);
	if (op == MC_ARCHIVE)
		req->nrecords = 1;		/* the API archives one member a request */
	if (op == MC_UPSERT && (members = cJSON_AddArrayToObject(body, "members")) == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *why = NULL;
		char	   *email;

		if (op == MC_UPSERT)
		{
			cJSON	   *m = member(r, &t, &email, &why);

			if (why == NULL)
				cJSON_AddItemToArray(members, m);
			else
				cJSON_Delete(m);
		}
		else if ((email = member_email(r, &t)) == NULL)
		{
			/* a delete of a key never sent by this sync: nothing to do */
			why = r->op != 'd' ? "no email is kept for this member" :
				retl_ids_none(r, "Mailchimp", "member email",
							  t.segment_id ? "remove it from the segment" : "archive it");
		}
		else if (op == MC_ARCHIVE)
		{
			old = MemoryContextSwitchTo(req->cxt);
			req->url = psprintf("%s/lists/%s/members/%s", base, t.list_id, subscriber_hash(email));
			MemoryContextSwitchTo(old);
		}
		else
		{
			cJSON	  **list = r->op == 'd' ? &remove : &add;

			if (*list == NULL)
				*list = cJSON_AddArrayToObject(body, r->op == 'd' ? "members_to_remove" : "members_to_add");
			cJSON_AddItemToArray(*list, cJSON_CreateString(email));
		}
		if (why != NULL)
			retl_record_unsent(req, r, why);
	}
	retl_request_leave_unsent(req);
	if (op == MC_UPSERT)
		cJSON_AddBoolToObject(body, "update_existing", t.mode != 'i');
	old = MemoryContextSwitchTo(req->cxt);
	if (op == MC_UPSERT)
		req->url = psprintf("%s/lists/%s", base, t.list_id);
	else if (op == MC_SEGMENT)
		req->url = psprintf("%s/lists/%s/segments/%s", base, t.list_id, t.segment_id);
	req->method = op == MC_ARCHIVE ? "DELETE" : "POST";
	MemoryContextSwitchTo(old);
	if (op == MC_ARCHIVE)
	{
		cJSON_Delete(body);
		old = MemoryContextSwitchTo(req->cxt);
		initStringInfo(&req->body);
		MemoryContextSwitchTo(old);
	}
	else
		retl_request_json_body(req, body);
	req->keep_response = op != MC_ARCHIVE;
	if (req->nrecords > 0)
	{
		old = MemoryContextSwitchTo(req->cxt);
		retl_request_headers(req, sync, "application/json");
		MemoryContextSwitchTo(old);
	}
}

/* Whether Mailchimp's message says to try again later. */
static bool
transient(const char *message)
{
	char	   *lower = ascii_case(message, false);

	/* "... signed up to a lot of lists very recently; we're not allowing more signups for now" */
	return strstr(lower, "not allowing more signups") != NULL || strstr(lower, "try again") != NULL ||
		strstr(lower, "temporar") != NULL;
}

/* The records whose email (as sent) is this one, case aside. */
static void
each_record(RetlRequest *req, McTarget *t, const char *email, bool segment,
			void (*fn) (RetlRecord *r, void *arg), void *arg)
{
	for (int i = 0; email != NULL && i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *sent = segment ? member_email(r, t) : r->remember_id;

		if (sent != NULL && pg_strcasecmp(sent, email) == 0)
			fn(r, arg);
	}
}

static void
set_delivered(RetlRecord *r, void *arg)
{
	r->outcome = *(bool *) arg ? RETL_OUTCOME_AGAIN : RETL_OUTCOME_DELIVERED;
	r->message = NULL;
}

static void
set_failed(RetlRecord *r, void *arg)
{
	char	   *message = arg;

	r->outcome = transient(message) ? RETL_OUTCOME_RETRY : RETL_OUTCOME_DEAD;
	r->message = message;
}

/*
 * A batch subscribe's answer: new_members and updated_members deliver
 * their records (an audience's member is then added to the segment),
 * errors[] fail them; the others are retried.
 */
static void
read_upsert(RetlRequest *req, McTarget *t, cJSON *answer)
{
	static const char *const lists[] = {"new_members", "updated_members"};
	bool		again = t->segment_id != NULL;
	cJSON	   *item;

	/* each record's email as sent, to match the answer's (and to keep) */
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		char	   *why = NULL;

		cJSON_Delete(member(r, t, &r->remember_id, &why));
		r->outcome = RETL_OUTCOME_RETRY;
		r->message = "Mailchimp's answer does not show this member added or updated";
	}
	for (int l = 0; l < (int) lengthof(lists); l++)
		cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(answer, lists[l]))
			each_record(req, t, retl_json_string(item, "email_address"), false, set_delivered, &again);
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(answer, "errors"))
	{
		char	   *error = retl_json_string(item, "error");
		char	   *field = retl_json_string(item, "field");
		char	   *field_message = retl_json_string(item, "field_message");
		char	   *text = psprintf("Mailchimp refused the member: %s", error ? error : "(no message)");

		if (field != NULL && field[0] != '\0')
			text = psprintf("%s (%s: %s)", text, field, field_message ? field_message : "");
		each_record(req, t, retl_json_string(item, "email_address"), false, set_failed, text);
	}
	/* keep the email only where it changed (deletes go by it) */
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		if (r->outcome == RETL_OUTCOME_DELIVERED && r->known_id != NULL &&
			strcmp(r->known_id, r->remember_id) == 0)
			r->remember_id = NULL;
	}
}

/*
 * A member a segment change failed for (arg: Mailchimp's message).  One
 * not in the audience (any more) is out of the segment, or is upserted
 * again before it is added.
 */
static void
segment_failed(RetlRecord *r, void *arg)
{
	char	   *lower = ascii_case(arg, false);

	if (strstr(lower, "not members") == NULL && strstr(lower, "not a member") == NULL)
		set_failed(r, arg);
	else if (r->op == 'd')
		r->outcome = RETL_OUTCOME_DELIVERED;	/* out of the audience: out of the segment */
	else
	{
		r->outcome = RETL_OUTCOME_AGAIN;
		r->remember_id = "";
	}
}

/*
 * A segment change's answer: members_added delivers its records; errors[]
 * group emails by message.  A member that was not in the segment is not
 * in members_removed: a removal the answer does not mention is done; an
 * addition is retried.
 */
static void
read_segment(RetlRequest *req, McTarget *t, cJSON *answer)
{
	bool		again = false;
	cJSON	   *item;

	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];

		r->outcome = r->op == 'd' ? RETL_OUTCOME_DELIVERED : RETL_OUTCOME_RETRY;
		r->message = r->op == 'd' ? NULL : "Mailchimp's answer does not show this member added to the segment";
	}
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(answer, "members_added"))
		each_record(req, t, retl_json_string(item, "email_address"), true, set_delivered, &again);
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(answer, "errors"))
	{
		char	   *error = retl_json_string(item, "error");
		char	   *text = psprintf("Mailchimp refused the member: %s", error ? error : "(no message)");
		cJSON	   *email;

		cJSON_ArrayForEach(email, cJSON_GetObjectItemCaseSensitive(item, "email_addresses"))
			each_record(req, t, cJSON_IsString(email) ? email->valuestring : NULL, true, segment_failed, text);
	}
}

static void
mailchimp_read_answer(RetlRequest *req, RetlSync *sync)
{
	McTarget	t;
	McOp		op;
	cJSON	   *answer;
	MemoryContext old;

	if (req->nrecords == 0)
		return;
	old = MemoryContextSwitchTo(req->cxt);
	t = target(sync);
	op = op_of(&req->records[0], &t);
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	if (req->status == 429)
	{
		char	   *detail = retl_json_string(answer, "detail");

		req->pause_ms = MC_BUSY_PAUSE_MS;
		for (int i = 0; i < req->nrecords; i++)
		{
			req->records[i].outcome = RETL_OUTCOME_RETRY;
			req->records[i].message = psprintf("Mailchimp is busy (HTTP 429): %s",
											   detail ? detail : "too many requests");
		}
	}
	else if (op == MC_ARCHIVE && req->status == 404)
		req->records[0].outcome = RETL_OUTCOME_DELIVERED;	/* archived already */
	else if (op != MC_ARCHIVE && req->status == 200 && !cJSON_IsObject(answer))
	{
		for (int i = 0; i < req->nrecords; i++)
		{
			req->records[i].outcome = RETL_OUTCOME_RETRY;
			req->records[i].message = "Mailchimp answered without JSON";
		}
	}
	else if (op == MC_UPSERT && req->status == 200)
		read_upsert(req, &t, answer);
	else if (op == MC_SEGMENT && req->status == 200)
		read_segment(req, &t, answer);
	/* else an archive's 204, a 4xx or 5xx: the status rule */
	cJSON_Delete(answer);
	MemoryContextSwitchTo(old);
}

static const char *const mailchimp_sync_options[] = {"list_id", "status", "email_field", "segment_id", NULL};
static const char *const no_options[] = {NULL};

const RetlConnector retl_mailchimp_connector = {
	.kind = "mailchimp",
	.destination_options = no_options,
	.sync_options = mailchimp_sync_options,
	.default_url = NULL,		/* the API key's data centre: default_url_for */
	.default_url_for = mailchimp_default_url_for,
	/*
	 * batch subscribe with update_existing true or false; no update-only
	 * batch, no events
	 */
	.modes = "upsert, insert, mirror",
	.max_records = MC_MAX_MEMBERS,
	.default_batch_size = MC_MAX_MEMBERS,
	.max_bytes = 10485760,		/* none documented */
	/*
	 * Mailchimp limits simultaneous connections (10 a key, shared with the
	 * account's other integrations), not a rate: 5 at once leaves them
	 * half, and 10 requests a second keeps a burst of one-member archives
	 * from looking like abuse while batches of 500 run far below it.
	 */
	.default_rate_limit = 10,
	.default_max_concurrency = 5,
	.check_destination = mailchimp_check_destination,
	.check_sync = mailchimp_check_sync,
	.check_source = mailchimp_check_source,
	.deletes_need_id = retl_ids_unless_append,
	.build = mailchimp_build,
	.read_answer = mailchimp_read_answer,
};
