/*
 * google_ads.c: the google_ads connector: Customer Match user lists,
 * through offline user data jobs (OfflineUserDataJobService, REST).
 *
 *   destination: url (default https://googleads.googleapis.com), auth
 *                OAuth 2.0 with a refresh token (token_url by default
 *                https://oauth2.googleapis.com/token), "developer_token"
 *                ("{{secret:NAME}}"), "login_customer_id" (the manager
 *                account, digits; optional), "api_version" (default below)
 *   sync:        "customer_id" (the account of the list, digits),
 *                "user_list_id" (digits)
 *
 * The records' fields email, phone (with its country code, "+1 650 ..."),
 * and first_name, last_name, country_code, postal_code (an address: all
 * four) are a person's identifiers, each normalized and hashed (SHA-256
 * hex) as Google documents, except the country and postal codes, which
 * Google takes in clear (connectors/hashing.c); the plaintext of the
 * others never leaves the database.
 *
 * A batch of entering members (or of exiting ones: a job cannot mix
 * create and remove) is one job: POST .../offlineUserDataJobs:create,
 * whose answer names it; its records stay in flight in it (queue/jobs.c),
 * each with its operation, and the worker goes on: :addOperations with
 * enablePartialFailure (an operation Google refuses names its record: it
 * is dead-lettered alone, or retried for a transient error), :run (a list
 * runs one job at a time: CONCURRENT_MODIFICATION waits), then its status
 * is searched (REST has no GET of a job) until it is done: a job that succeeded
 * delivers its records, one that failed gives them back (retried).  The
 * identifiers sent for a person are kept (remembered id), so a removal
 * removes what was added.
 *
 * (From Google Ads API's Customer Match guide and its REST reference for
 * customers.offlineUserDataJobs and customers.operations, and its error
 * model; see shared/CONNECTORS.md.)
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "connectors/auth.h"
#include "connectors/connector.h"
#include "connectors/hashing.h"
#include "connectors/request.h"
#include "sync/ids.h"

#define GA_VERSION "v19"
#define GA_MAX_RECORDS 10000	/* 20 identifiers a person: 200,000 > 100,000 a
								 * request, so no more than 5,000 with all */
#define GA_RUN_WAIT_MS 5000		/* another job of the list is running */

typedef struct GaTarget
{
	char	   *version;
	char	   *customer;
	char	   *list;
} GaTarget;

static bool
digits(const char *s)
{
	return s != NULL && s[0] != '\0' && strlen(s) <= 20 && strspn(s, "0123456789") == strlen(s);
}

static void
google_ads_check_destination(Jsonb *options)
{
	char	   *type = retl_auth_type(options);
	char	   *token = retl_jsonb_string(options, "developer_token");
	char	   *login = retl_jsonb_string(options, "login_customer_id");
	char	   *version = retl_jsonb_string(options, "api_version");
	int			major;
	char		end;

	if (type == NULL || strcmp(type, "oauth2") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a google_ads destination needs OAuth 2.0 auth with a refresh token"),
				 errhint("{\"auth\": {\"type\": \"oauth2\", \"grant_type\": \"refresh_token\", \"client_id\": ..., \"client_secret\": \"{{secret:NAME}}\", \"refresh_token\": \"{{secret:NAME}}\"}}")));
	if (token == NULL || strstr(token, "{{secret:") == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a google_ads destination needs option \"developer_token\", naming a secret"),
				 errhint("SELECT retl_set_secret('NAME', token), then \"developer_token\": \"{{secret:NAME}}\".")));
	if (retl_jsonb_has(options, "login_customer_id") && !digits(login))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"login_customer_id\" of a google_ads destination must be the manager account's id, its digits"),
				 errhint("Without dashes: \"1234567890\", not \"123-456-7890\".")));
	if (retl_jsonb_has(options, "api_version") &&
		(version == NULL || sscanf(version, "v%d%c", &major, &end) != 1 || major < 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"api_version\" of a google_ads destination must be an API version such as \"%s\"",
						GA_VERSION)));
}

static void
google_ads_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner)
{
	if (!digits(retl_jsonb_string(options, "customer_id")))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a google_ads sync needs option \"customer_id\", the account's id, its digits"),
				 errhint("Without dashes: \"1234567890\".")));
	if (!digits(retl_jsonb_string(options, "user_list_id")))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a google_ads sync needs option \"user_list_id\", a Customer Match list's id, its digits")));
}

static void
google_ads_check_source(Jsonb *options, const RetlSource *source)
{
	static const char *const address[] = {"first_name", "last_name", "country_code", "postal_code", NULL};
	int			parts = 0;

	for (int i = 0; address[i] != NULL; i++)
		parts += retl_source_has_field(source, address[i]);
	if (!retl_source_has_field(source, "email") && !retl_source_has_field(source, "phone") && parts < 4)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the sync's records carry no identifier Customer Match takes"),
				 errdetail("Google matches people by email, phone, or an address (first_name, last_name, country_code and postal_code)."),
				 errhint("Map columns to those names, e.g. mapping => '{\"email_address\": \"email\"}'.")));
	if (parts > 0 && parts < 4)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an address needs all of first_name, last_name, country_code and postal_code"),
				 errdetail("Google matches an address only by the four together.")));
}

static GaTarget
target(RetlSync *sync)
{
	cJSON	   *dest = cJSON_Parse(sync->dest_options);
	cJSON	   *opts = cJSON_Parse(sync->options);
	GaTarget	t;

	t.version = retl_json_string(dest, "api_version");
	if (t.version == NULL)
		t.version = GA_VERSION;
	t.customer = retl_json_string(opts, "customer_id");
	t.list = retl_json_string(opts, "user_list_id");
	cJSON_Delete(dest);
	cJSON_Delete(opts);
	if (t.customer == NULL || t.list == NULL)
		elog(ERROR, "retl: the options of google_ads sync \"%s\" are incomplete", sync->name);
	return t;
}

/* the developer token, the manager account, the JSON type, the auth */
static void
headers(RetlRequest *req, RetlSync *sync, bool body)
{
	cJSON	   *dest = cJSON_Parse(sync->dest_options);
	char	   *token = retl_json_string(dest, "developer_token");
	char	   *login = retl_json_string(dest, "login_customer_id");
	MemoryContext old = MemoryContextSwitchTo(req->cxt);

	cJSON_Delete(dest);
	retl_request_headers(req, sync, body ? "application/json" : NULL);
	retl_request_header(req, "developer-token", retl_substitute_secrets(req, token));
	if (login != NULL)
		retl_request_header(req, "login-customer-id", login);
	MemoryContextSwitchTo(old);
}

static void
add_hashed(cJSON *ids, const char *name, RetlNorm how, cJSON *value)
{
	char	   *text = retl_json_text(value);
	char	   *hash = text ? retl_hash_field(how, text) : NULL;
	cJSON	   *id;

	if (hash == NULL)
		return;
	id = cJSON_CreateObject();
	cJSON_AddStringToObject(id, name, hash);
	cJSON_AddItemToArray(ids, id);
}

/*
 * A person's identifiers, as the JSON text of userIdentifiers (NULL: none
 * usable), from the record's data (else its key).
 */
static char *
identifiers(RetlRecord *r)
{
	cJSON	   *from = cJSON_Parse(r->data ? r->data : r->key);
	cJSON	   *ids = cJSON_CreateArray();
	char	   *fn = retl_json_text(cJSON_GetObjectItemCaseSensitive(from, "first_name"));
	char	   *ln = retl_json_text(cJSON_GetObjectItemCaseSensitive(from, "last_name"));
	char	   *cc = retl_json_text(cJSON_GetObjectItemCaseSensitive(from, "country_code"));
	char	   *zip = retl_json_text(cJSON_GetObjectItemCaseSensitive(from, "postal_code"));

	add_hashed(ids, "hashedEmail", RETL_NORM_EMAIL, cJSON_GetObjectItemCaseSensitive(from, "email"));
	add_hashed(ids, "hashedPhoneNumber", RETL_NORM_PHONE_E164, cJSON_GetObjectItemCaseSensitive(from, "phone"));
	fn = fn ? retl_hash_field(RETL_NORM_TRIM_LOWER, fn) : NULL;
	ln = ln ? retl_hash_field(RETL_NORM_TRIM_LOWER, ln) : NULL;
	cc = cc ? retl_normalize(RETL_NORM_COUNTRY, cc) : NULL;
	zip = zip ? retl_normalize(RETL_NORM_TRIM_LOWER, zip) : NULL;
	if (fn && ln && cc && zip)
	{
		cJSON	   *id = cJSON_CreateObject();
		cJSON	   *addr = cJSON_AddObjectToObject(id, "addressInfo");

		cJSON_AddStringToObject(addr, "hashedFirstName", fn);
		cJSON_AddStringToObject(addr, "hashedLastName", ln);
		/* Google's are upper case (ISO 3166-1 alpha-2), in clear */
		cc[0] = pg_toupper((unsigned char) cc[0]);
		cc[1] = pg_toupper((unsigned char) cc[1]);
		cJSON_AddStringToObject(addr, "countryCode", cc);
		cJSON_AddStringToObject(addr, "postalCode", zip);
		cJSON_AddItemToArray(ids, id);
	}
	cJSON_Delete(from);
	if (cJSON_GetArraySize(ids) == 0)
	{
		cJSON_Delete(ids);
		return NULL;
	}
	return retl_json_print(ids);
}

/*
 * A step of a job: {"step": "add" | "run" | "poll", "op": "create" |
 * "remove", "resend": true when its records go in a new job at its end}
 */
static char *
state_json(const char *step, const char *op, bool resend)
{
	cJSON	   *state = cJSON_CreateObject();

	cJSON_AddStringToObject(state, "step", step);
	cJSON_AddStringToObject(state, "op", op);
	if (resend)
		cJSON_AddTrueToObject(state, "resend");
	return retl_json_print(state);
}

/* A batch makes a job: its creation, each record's operation kept. */
static void
google_ads_build(RetlRequest *req, RetlSync *sync)
{
	GaTarget	t = target(sync);
	cJSON	   *body = cJSON_CreateObject();
	cJSON	   *job = cJSON_AddObjectToObject(body, "job");
	cJSON	   *meta;
	bool		removing;
	MemoryContext old;

	req->nrecords = Min(req->nrecords, GA_MAX_RECORDS / 2);
	retl_request_take_run(req, retl_record_is_delete, NULL);
	removing = req->records[0].op == 'd';
	if (removing)
		retl_ids_known(req);
	for (int i = 0; i < req->nrecords; i++)
	{
		RetlRecord *r = &req->records[i];
		/* a removal removes what was added: the identifiers kept then */
		char	   *ids = removing && r->known_id ? r->known_id : identifiers(r);

		if (ids == NULL)
			retl_record_unsent(req, r, "the record has no identifier Customer Match takes (email, phone with its country code, or a whole address), or none could be normalized");
		else
			r->job_ref = MemoryContextStrdup(req->cxt, ids);
	}
	retl_request_leave_unsent(req);
	cJSON_AddStringToObject(job, "type", "CUSTOMER_MATCH_USER_LIST");
	meta = cJSON_AddObjectToObject(job, "customerMatchUserListMetadata");
	cJSON_AddStringToObject(meta, "userList", psprintf("customers/%s/userLists/%s", t.customer, t.list));
	old = MemoryContextSwitchTo(req->cxt);
	req->url = psprintf("%s/%s/customers/%s/offlineUserDataJobs:create", retl_base_url(sync), t.version,
						t.customer);
	req->method = "POST";
	MemoryContextSwitchTo(old);
	retl_request_json_body(req, body);
	req->keep_response = true;
	if (req->nrecords > 0)
		headers(req, sync, true);
}

/* Google's error as one line: the first GoogleAdsFailure error, else the message. */
static char *
error_text(cJSON *answer)
{
	cJSON	   *error = cJSON_GetObjectItemCaseSensitive(answer, "error");
	cJSON	   *detail = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(error, "details"), 0);
	cJSON	   *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(detail, "errors"), 0);
	cJSON	   *code = cJSON_GetObjectItemCaseSensitive(first, "errorCode");
	char	   *message = retl_json_string(first, "message");

	if (code != NULL && code->child != NULL && cJSON_IsString(code->child))
		return psprintf("%s%s%s", code->child->valuestring, message ? ": " : "", message ? message : "");
	message = retl_json_string(error, "message");
	return message ? message : "an error without a message";
}

static void
google_ads_read_answer(RetlRequest *req, RetlSync *sync)
{
	cJSON	   *answer;
	char	   *name;

	if (req->nrecords == 0)
		return;
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	name = retl_json_string(answer, "resourceName");
	if (req->status == 200 && name != NULL)
	{
		retl_request_job(req, name, state_json("add", req->records[0].op == 'd' ? "remove" : "create", false),
						 "PENDING");
		for (int i = 0; i < req->nrecords; i++)
			req->records[i].outcome = RETL_OUTCOME_JOB;
	}
	else if (req->status == 400 || req->status == 403 || req->status == 404)
	{
		/* the list, the account, the headers: nothing a retry mends */
		char	   *text = psprintf("Google Ads refused the job: %s", error_text(answer));

		for (int i = 0; i < req->nrecords; i++)
		{
			req->records[i].outcome = RETL_OUTCOME_DEAD;
			req->records[i].message = MemoryContextStrdup(req->cxt, text);
		}
	}
	cJSON_Delete(answer);		/* else the status rule: 401 renews, 429 and 5xx retry */
}

static void
google_ads_build_job(RetlRequest *req, RetlSync *sync)
{
	GaTarget	t = target(sync);
	cJSON	   *state = cJSON_Parse(req->job->state ? req->job->state : "{}");
	char	   *step = retl_json_string(state, "step");
	char	   *op = retl_json_string(state, "op");
	char	   *base = retl_base_url(sync);
	MemoryContext old = MemoryContextSwitchTo(req->cxt);

	cJSON_Delete(state);
	req->keep_response = true;
	if (step != NULL && strcmp(step, "add") == 0)
	{
		cJSON	   *body = cJSON_CreateObject();
		cJSON	   *ops = cJSON_AddArrayToObject(body, "operations");

		for (int i = 0; i < req->nrecords; i++)
		{
			cJSON	   *o = cJSON_CreateObject();
			cJSON	   *what = cJSON_AddObjectToObject(o, op ? op : "create");

			cJSON_AddItemToObject(what, "userIdentifiers", cJSON_Parse(req->records[i].job_ref));
			cJSON_AddItemToArray(ops, o);
		}
		cJSON_AddTrueToObject(body, "enablePartialFailure");
		req->url = psprintf("%s/%s/%s:addOperations", base, t.version, req->job->remote_id);
		req->method = "POST";
		MemoryContextSwitchTo(old);
		retl_request_json_body(req, body);
		headers(req, sync, true);
		return;
	}
	if (step != NULL && strcmp(step, "run") == 0)
	{
		req->url = psprintf("%s/%s/%s:run", base, t.version, req->job->remote_id);
		req->method = "POST";
		initStringInfo(&req->body);
		appendStringInfoString(&req->body, "{}");
		MemoryContextSwitchTo(old);
		headers(req, sync, true);
		return;
	}
	/* the job's status: REST has no GET of a job, only a search */
	{
		cJSON	   *body = cJSON_CreateObject();

		cJSON_AddStringToObject(body, "query",
								psprintf("SELECT offline_user_data_job.status, offline_user_data_job.failure_reason"
										 " FROM offline_user_data_job"
										 " WHERE offline_user_data_job.resource_name = '%s'", req->job->remote_id));
		req->url = psprintf("%s/%s/customers/%s/googleAds:search", base, t.version, t.customer);
		req->method = "POST";
		MemoryContextSwitchTo(old);
		retl_request_json_body(req, body);
		headers(req, sync, true);
	}
}

/* The operation index a partial failure's error names, or -1. */
static int
operation_index(cJSON *error)
{
	cJSON	   *path = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(error, "location"),
														"fieldPathElements");
	cJSON	   *el;

	cJSON_ArrayForEach(el, path)
	{
		char	   *field = retl_json_string(el, "fieldName");
		cJSON	   *index = cJSON_GetObjectItemCaseSensitive(el, "index");

		if (field != NULL && strcmp(field, "operations") == 0 && cJSON_IsNumber(index))
			return index->valueint;
	}
	return -1;
}

static void
read_partial_failure(RetlRequest *req, cJSON *status)
{
	cJSON	   *detail;

	cJSON_ArrayForEach(detail, cJSON_GetObjectItemCaseSensitive(status, "details"))
	{
		cJSON	   *error;

		cJSON_ArrayForEach(error, cJSON_GetObjectItemCaseSensitive(detail, "errors"))
		{
			int			i = operation_index(error);
			cJSON	   *code = cJSON_GetObjectItemCaseSensitive(error, "errorCode");
			char	   *message = retl_json_string(error, "message");
			bool		transient;

			if (i < 0 || i >= req->nrecords || req->records[i].outcome != RETL_OUTCOME_JOB)
				continue;
			transient = code != NULL && code->child != NULL && cJSON_IsString(code->child) &&
				(strcmp(code->child->valuestring, "TRANSIENT_ERROR") == 0 ||
				 strcmp(code->child->valuestring, "INTERNAL_ERROR") == 0);
			req->records[i].outcome = transient ? RETL_OUTCOME_RETRY : RETL_OUTCOME_DEAD;
			req->records[i].message =
				MemoryContextStrdup(req->cxt,
									psprintf("Google Ads refused the operation: %s%s%s",
											 code && code->child && cJSON_IsString(code->child) ?
											 code->child->valuestring : "error",
											 message ? ": " : "", message ? message : ""));
		}
	}
}

/* The status a search of the job answered (PENDING, RUNNING, SUCCESS, FAILED), or NULL. */
static char *
job_status(cJSON *answer)
{
	cJSON	   *row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(answer, "results"), 0);

	return retl_json_string(cJSON_GetObjectItemCaseSensitive(row, "offlineUserDataJob"), "status");
}

static void
google_ads_read_job(RetlRequest *req, RetlSync *sync)
{
	RetlJob    *job = req->job;
	cJSON	   *state = cJSON_Parse(job->state ? job->state : "{}");
	char	   *step = retl_json_string(state, "step");
	char	   *op = retl_json_string(state, "op");
	bool		again = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(state, "resend"));
	cJSON	   *answer = cJSON_ParseWithLength(req->response.data, req->response.len);

	cJSON_Delete(state);
	if (step == NULL || op == NULL)
		step = op = "";
	if (strcmp(step, "add") == 0 && req->status == 400 && strstr(error_text(answer), "JOB_ALREADY_STARTED"))
	{
		/*
		 * Run already, so this step's answer was lost: which operations
		 * Google refused is not known.  The job is left to end; then its
		 * records are sent again, in a new job that will say.
		 */
		job->status = "RUNNING";
		job->state = MemoryContextStrdup(req->cxt, state_json("poll", op, true));
	}
	else if (strcmp(step, "add") == 0 && req->status == 200)
	{
		read_partial_failure(req, cJSON_GetObjectItemCaseSensitive(answer, "partialFailureError"));
		job->state = MemoryContextStrdup(req->cxt, state_json("run", op, false));
		job->check_after_ms = 1;
	}
	else if (strcmp(step, "run") == 0 &&
			 (req->status == 200 || (req->status == 400 && strstr(error_text(answer), "JOB_ALREADY_STARTED"))))
	{
		/* running (a run whose answer was lost, by a crash, is running too) */
		job->status = "RUNNING";
		job->state = MemoryContextStrdup(req->cxt, state_json("poll", op, false));
	}
	else if (strcmp(step, "run") == 0 && req->status == 400 && strstr(error_text(answer), "CONCURRENT_MODIFICATION"))
	{
		/* another job of the list runs: this one runs after it */
		job->status = "PENDING (another job of the list runs)";
		job->check_after_ms = GA_RUN_WAIT_MS;
	}
	else if (strcmp(step, "poll") == 0 && req->status == 200 && job_status(answer) != NULL &&
			 (strcmp(job_status(answer), "SUCCESS") == 0 || strcmp(job_status(answer), "FAILED") == 0))
	{
		bool		error = strcmp(job_status(answer), "FAILED") == 0;
		bool		resend = again;
		char	   *reason = retl_json_string(cJSON_GetObjectItemCaseSensitive(
											   cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(answer, "results"), 0),
											   "offlineUserDataJob"), "failureReason");

		job->status = error ? "FAILED" : "SUCCESS";
		for (int i = 0; i < req->nrecords; i++)
		{
			RetlRecord *r = &req->records[i];

			if (r->outcome != RETL_OUTCOME_JOB)
				continue;
			if (resend)
			{
				r->outcome = RETL_OUTCOME_RETRY;
				r->message = MemoryContextStrdup(req->cxt,
												 psprintf("the answer to the operations of Google Ads job %s was lost: sent again in a new job",
														  job->remote_id));
			}
			else if (error)
			{
				r->outcome = RETL_OUTCOME_RETRY;
				r->message = MemoryContextStrdup(req->cxt,
												 psprintf("Google Ads job %s failed%s%s", job->remote_id,
														  reason ? ": " : "", reason ? reason : ""));
			}
			else
			{
				r->outcome = RETL_OUTCOME_DELIVERED;
				/* the identifiers added, for the person's removal */
				if (strcmp(op, "create") == 0)
					r->remember_id = r->job_ref;
			}
		}
	}
	else if (strcmp(step, "poll") == 0 && req->status == 200)
		job->status = job_status(answer) ? MemoryContextStrdup(req->cxt, job_status(answer)) : job->status;
	else if (req->status >= 400 && req->status < 500 && req->status != 401 && req->status != 429)
	{
		/* the job cannot go on: its records are sent again in a new one */
		char	   *text = psprintf("Google Ads refused a step of job %s: %s", job->remote_id, error_text(answer));

		for (int i = 0; i < req->nrecords; i++)
		{
			if (req->records[i].outcome != RETL_OUTCOME_JOB)
				continue;
			req->records[i].outcome = RETL_OUTCOME_RETRY;
			req->records[i].message = MemoryContextStrdup(req->cxt, text);
		}
	}
	cJSON_Delete(answer);
}

static const char *const google_ads_destination_options[] = {"developer_token", "login_customer_id",
"api_version", NULL};
static const char *const google_ads_sync_options[] = {"customer_id", "user_list_id", NULL};

const RetlConnector retl_google_ads_connector = {
	.kind = "google_ads",
	.destination_options = google_ads_destination_options,
	.sync_options = google_ads_sync_options,
	.default_url = "https://googleads.googleapis.com",
	.default_token_path = "https://oauth2.googleapis.com/token",
	/* members are added and removed: no update-only, no events */
	.modes = "upsert, insert, mirror",
	.max_records = GA_MAX_RECORDS / 2,
	.default_batch_size = GA_MAX_RECORDS / 2,
	.max_bytes = 104857600,
	/* Google publishes no rate; each job is several requests */
	.default_rate_limit = 5,
	.default_max_concurrency = 2,
	.no_split = true,
	.check_destination = google_ads_check_destination,
	.check_sync = google_ads_check_sync,
	.check_source = google_ads_check_source,
	.build = google_ads_build,
	.read_answer = google_ads_read_answer,
	.build_job = google_ads_build_job,
	.read_job = google_ads_read_job,
};
