/*
 * oauth.c: OAuth 2.0 access tokens for a destination's requests (RFC 6749
 * 4.4, client credentials, and 6, refreshing an access token).
 *
 *   {"type": "oauth2", "grant_type": "client_credentials" | "refresh_token",
 *    "token_url": "https://..." (default: the connector's, under the
 *    destination's url), "client_id": ..., "client_secret": ...,
 *    "refresh_token": "{{secret:NAME}}", "scope": "...",
 *    "client_auth": "post" (default, in the form) | "basic"}
 *
 * The worker keeps one token per destination, in its own memory only.
 * Before it claims for a sync whose destination has none (or one that
 * expires within a minute, or within a tenth of its lifetime), it builds
 * a token request, a form-encoded POST to token_url, in the claim
 * transaction (the credentials are secrets) and sends it after the commit
 * with every other request, through the same engine and the same address
 * rules; meanwhile that destination's syncs wait.  The answer is read in
 * the outcome transaction: the token is kept, a refresh token the server
 * rotated is saved into its secret (so a restart goes on with it), and a
 * failure is shown on the destination's syncs (redacted) and tried again
 * with backoff.  A 401 from the API renews the token once: the records are
 * retried with a new one; a 401 with a token got after a 401 is an answer
 * like any other.  Tokens are never logged, nor written anywhere a role
 * can read.
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "connectors/auth.h"
#include "connectors/connector.h"
#include "connectors/oauth.h"
#include "connectors/request.h"
#include "sync/dropping.h"

/* how long before its expiry a token is renewed, at most */
#define RENEW_MARGIN_S 60
/* a token answer without expires_in is taken to last this long */
#define DEFAULT_LIFETIME_S 3600

typedef struct Token
{
	int			dest_id;
	char	   *config;			/* the auth option it is for */
	char	   *access_token;	/* NULL: none */
	TimestampTz expires_at;
	TimestampTz renew_at;
	char	   *answer;			/* the token answer's other fields (JSON) */
	int			generation;		/* of the token in use: 401s are matched to it */
	bool		after_401;		/* got because the API answered 401 */
	bool		fetching;
	int			failures;
	TimestampTz not_before;		/* backoff after a failure */
} Token;

static List *tokens = NIL;		/* Token *, in TopMemoryContext */

static Token *
token_for(int dest_id, const char *config)
{
	ListCell   *lc;
	Token	   *t;
	MemoryContext old;

	foreach(lc, tokens)
	{
		t = lfirst(lc);
		if (t->dest_id != dest_id)
			continue;
		/* the destination's auth changed: start over */
		if (strcmp(t->config, config) != 0)
		{
			pfree(t->config);
			t->config = MemoryContextStrdup(TopMemoryContext, config);
			if (t->access_token)
				pfree(t->access_token);
			t->access_token = NULL;
			t->failures = 0;
			t->not_before = 0;
		}
		return t;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	t = palloc0(sizeof(Token));
	t->dest_id = dest_id;
	t->config = pstrdup(config);
	tokens = lappend(tokens, t);
	MemoryContextSwitchTo(old);
	return t;
}

static char *
field(cJSON *obj, const char *name)
{
	cJSON	   *item = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsString(item) && item->valuestring ? pstrdup(item->valuestring) : NULL;
}

static void
refuse(const char *message, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("auth of type \"oauth2\" %s", message),
			 hint ? errhint("%s", hint) : 0));
}

static bool
names_secret(const char *v)
{
	return v != NULL && strstr(v, "{{secret:") != NULL;
}

/*
 * At creation: an oauth2 auth option (token_url may be left out when the
 * connector knows where its API's is: default_token_path).
 */
void
retl_oauth_check(Jsonb *auth, const char *default_token_path)
{
	static const char *const allowed[] = {"type", "grant_type", "token_url", "client_id",
	"client_secret", "refresh_token", "scope", "client_auth", NULL};
	JsonbIterator *it = JsonbIteratorInit(&auth->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *grant = retl_jsonb_string(auth, "grant_type");
	char	   *url = retl_jsonb_string(auth, "token_url");
	char	   *client_auth = retl_jsonb_string(auth, "client_auth");
	char	   *refresh = retl_jsonb_string(auth, "refresh_token");

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *k = pnstrdup(v.val.string.val, v.val.string.len);
			bool		ok = false;

			for (int i = 0; allowed[i] != NULL; i++)
				ok |= strcmp(allowed[i], k) == 0;
			if (!ok)
				refuse(psprintf("has an unknown field \"%s\"", k),
					   "Its fields: grant_type, token_url, client_id, client_secret, refresh_token, scope, client_auth.");
		}
		else if (tok == WJB_VALUE && v.type != jbvString)
			refuse("has a field that is not a string", NULL);
	}
	if (grant == NULL || (strcmp(grant, "client_credentials") != 0 && strcmp(grant, "refresh_token") != 0))
		refuse("needs grant_type \"client_credentials\" or \"refresh_token\"", NULL);
	if (url == NULL && default_token_path == NULL)
		refuse("needs token_url, an http:// or https:// URL", NULL);
	if (url != NULL && ((pg_strncasecmp(url, "https://", 8) != 0 && pg_strncasecmp(url, "http://", 7) != 0) ||
						strpbrk(url, " \t\r\n") != NULL))
		refuse("needs token_url, an http:// or https:// URL",
			   default_token_path == NULL ? NULL :
			   strncmp(default_token_path, "http", 4) == 0 ?
			   psprintf("Or leave it out: %s.", default_token_path) :
			   psprintf("Or leave it out: the destination's url followed by %s.", default_token_path));
	if (retl_jsonb_string(auth, "client_id") == NULL)
		refuse("needs client_id", NULL);
	if (strcmp(grant, "client_credentials") == 0 && !names_secret(retl_jsonb_string(auth, "client_secret")))
		refuse("needs client_secret, as {{secret:NAME}}", "SELECT retl_set_secret('NAME', value) first.");
	if (retl_jsonb_string(auth, "client_secret") != NULL && !names_secret(retl_jsonb_string(auth, "client_secret")))
		refuse("must name its client_secret as {{secret:NAME}}",
			   "A credential written into the options would be readable in retl.destinations and in pg_dump.");
	if (strcmp(grant, "refresh_token") == 0)
	{
		/* the secret is rewritten when the server rotates the token */
		if (refresh == NULL || strncmp(refresh, "{{secret:", 9) != 0 ||
			strstr(refresh, "}}") != refresh + strlen(refresh) - 2)
			refuse("with grant_type \"refresh_token\" needs refresh_token, exactly {{secret:NAME}}",
				   "A refresh token the server rotates is saved into that secret.");
	}
	else if (refresh != NULL)
		refuse("has a refresh_token, which grant_type \"client_credentials\" does not use", NULL);
	if (client_auth != NULL && strcmp(client_auth, "post") != 0 && strcmp(client_auth, "basic") != 0)
		refuse("has client_auth that is not \"post\" or \"basic\"",
			   "post: client_id and client_secret in the form (RFC 6749 2.3.1); basic: in an Authorization header.");
}

static void
form_field(StringInfo form, const char *name, const char *value)
{
	if (value == NULL)
		return;
	if (form->len > 0)
		appendStringInfoChar(form, '&');
	/* (a space as %20: form decoding takes it as well as "+") */
	appendStringInfo(form, "%s=%s", name, retl_urlencode_text(value));
}

/* The token request of a destination (in the claim transaction). */
static RetlRequest *
token_request(RetlSync *sync, cJSON *auth)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "retl token request",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	RetlRequest *req = palloc0(sizeof(RetlRequest));
	StringInfoData form;
	char	   *grant = field(auth, "grant_type");
	char	   *client_id = field(auth, "client_id");
	char	   *client_secret = field(auth, "client_secret");
	char	   *client_auth = field(auth, "client_auth");
	bool		basic = client_auth != NULL && strcmp(client_auth, "basic") == 0;

	req->cxt = cxt;
	req->kind = pstrdup(RETL_OAUTH_KIND);
	req->sync_id = 0;
	req->sync_name = pstrdup(sync->dest_name);
	req->dest_id = sync->dest_id;
	req->timeout_ms = sync->timeout_ms;
	req->tls_verify = sync->tls_verify;
	req->url = field(auth, "token_url");
	if (req->url == NULL)
	{
		const RetlConnector *c = retl_connector(sync->kind);

		if (c->default_token_path == NULL)
			elog(ERROR, "retl: destination \"%s\" has no token_url", sync->dest_name);
		/* a path under the destination's url, or the API's own token URL */
		req->url = strncmp(c->default_token_path, "http", 4) == 0 ? pstrdup(c->default_token_path) :
			psprintf("%s%s", sync->url, c->default_token_path);
	}
	req->method = "POST";
	req->keep_response = true;
	client_id = retl_substitute_secrets(req, client_id);
	if (client_secret != NULL)
		client_secret = retl_substitute_secrets(req, client_secret);
	initStringInfo(&form);
	form_field(&form, "grant_type", grant);
	if (strcmp(grant, "refresh_token") == 0)
		form_field(&form, "refresh_token", retl_substitute_secrets(req, field(auth, "refresh_token")));
	form_field(&form, "scope", field(auth, "scope"));
	if (basic)
	{
		/* RFC 6749 2.3.1: each form-encoded, then user:password */
		StringInfoData id;
		StringInfoData secret;
		char	   *pair;
		char	   *enc;
		int			n;

		initStringInfo(&id);
		initStringInfo(&secret);
		form_field(&id, "x", client_id);
		form_field(&secret, "x", client_secret ? client_secret : "");
		pair = psprintf("%s:%s", id.data + 2, secret.data + 2);
		enc = palloc(pg_b64_enc_len(strlen(pair)) + 1);
		n = pg_b64_encode(pair, strlen(pair), enc, pg_b64_enc_len(strlen(pair)));
		enc[n] = '\0';
		req->secrets = lappend(req->secrets, enc);
		retl_request_secret_header(req, "Authorization", psprintf("Basic %s", enc));
	}
	else
	{
		form_field(&form, "client_id", client_id);
		form_field(&form, "client_secret", client_secret);
	}
	req->body = form;
	retl_request_header(req, "Content-Type", "application/x-www-form-urlencoded");
	retl_request_header(req, "Accept", "application/json");
	retl_request_header(req, "Expect", "");
	MemoryContextSwitchTo(old);
	return req;
}

/*
 * In the claim transaction, before claiming for a sync: may its requests
 * be built?  Yes unless its destination authenticates with OAuth 2.0 and
 * has no token good for a while; then a token request is returned in
 * *fetch (to be sent after the commit) unless one is already on its way or
 * the last failure's backoff runs; *wait_ms is lowered to when to look
 * again.
 */
bool
retl_oauth_ready(RetlSync *sync, TimestampTz now, RetlRequest **fetch, long *wait_ms)
{
	cJSON	   *auth;
	char	   *type;
	Token	   *t;

	*fetch = NULL;
	if (sync->auth == NULL)
		return true;
	auth = cJSON_Parse(sync->auth);
	type = auth ? field(auth, "type") : NULL;
	if (type == NULL || strcmp(type, "oauth2") != 0)
	{
		cJSON_Delete(auth);
		return true;
	}
	t = token_for(sync->dest_id, sync->auth);
	if (t->access_token != NULL && now < t->renew_at)
	{
		cJSON_Delete(auth);
		return true;
	}
	/* still good, while a new one is fetched */
	if (t->access_token != NULL && now < t->expires_at && t->fetching)
	{
		cJSON_Delete(auth);
		return true;
	}
	if (!t->fetching && now >= t->not_before)
	{
		PG_TRY();
		{
			*fetch = token_request(sync, auth);
		}
		PG_FINALLY();
		{
			cJSON_Delete(auth);
		}
		PG_END_TRY();
		t->fetching = true;
		return t->access_token != NULL && now < t->expires_at;
	}
	cJSON_Delete(auth);
	if (!t->fetching)
		*wait_ms = Min(*wait_ms, (long) ((t->not_before - now) / 1000) + 1);
	return t->access_token != NULL && now < t->expires_at;
}

/* While a request is built: its bearer token (retl_oauth_ready made sure of one). */
void
retl_oauth_header(RetlRequest *req, RetlSync *sync)
{
	Token	   *t = token_for(sync->dest_id, sync->auth);

	if (t->access_token == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("destination \"%s\" has no OAuth 2.0 access token yet", sync->dest_name)));
	req->secrets = lappend(req->secrets, MemoryContextStrdup(req->cxt, t->access_token));
	req->auth_generation = t->generation;
	retl_request_secret_header(req, "Authorization", psprintf("Bearer %s", t->access_token));
}

/* Show a token failure on every sync of the destination (outcome transaction). */
static void
failed(RetlRequest *req, Token *t, const char *why)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	char	   *message = retl_http_redact(req, psprintf("could not get an OAuth 2.0 access token from %s: %s",
														  req->url, why));
	int64		backoff = Min((int64) retl_retry_base_ms << Min(t->failures, 16), (int64) retl_retry_max_ms);

	t->failures++;
	t->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff);
	ereport(WARNING, (errmsg("retl: %s", message)));
	values[0] = Int32GetDatum(t->dest_id);
	values[1] = CStringGetTextDatum(message);
	if (SPI_execute_with_args("UPDATE retl.sync_stats st SET last_error = $2, last_error_at = pg_catalog.now(),"
							  " consecutive_failures = st.consecutive_failures + 1"
							  " FROM retl.syncs s WHERE s.id = st.sync_id AND s.destination_id = $1"
							  " AND " RETL_SYNC_FREE_SQL("s.id"),
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not show a token failure");
}

/* Save a refresh token the server rotated into the secret its auth names. */
static void
save_refresh_token(Token *t, const char *value)
{
	cJSON	   *auth = cJSON_Parse(t->config);
	char	   *ref = auth ? field(auth, "refresh_token") : NULL;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	cJSON_Delete(auth);
	if (ref == NULL || strlen(ref) < 12)
		return;
	values[0] = CStringGetTextDatum(pnstrdup(ref + 9, strlen(ref) - 11));
	values[1] = CStringGetTextDatum(value);
	if (SPI_execute_with_args("UPDATE retl.secrets SET value = $2, updated_at = pg_catalog.now()"
							  " WHERE name = $1 AND value IS DISTINCT FROM $2",
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "retl: could not save a rotated refresh token");
	if (SPI_processed == 0 &&
		SPI_execute_with_args("SELECT 1 FROM retl.secrets WHERE name = $1",
							  1, types, values, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 0)
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("retl could not save the refresh token the server rotated for destination %d", t->dest_id),
				 errdetail("Its secret \"%s\" no longer exists; the token in it was voided.",
						   TextDatumGetCString(values[0])),
				 errhint("Get a new refresh token and set it with retl_set_secret().")));

	/*
	 * The server voided the old token when it issued this one: this
	 * transaction (tokens.c: the pass's token answers alone) commits as if
	 * synchronous_commit were on, flushed (and on the synchronous standbys)
	 * before the worker goes on; its other commits do not wait (worker.c).
	 */
	(void) set_config_option("synchronous_commit", "on", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * In the outcome transaction: the answer of a token request (RFC 6749
 * 5.1: access_token, token_type, expires_in, refresh_token; 5.2: error).
 */
void
retl_oauth_answer(RetlRequest *req)
{
	ListCell   *lc;
	Token	   *t = NULL;
	cJSON	   *answer;
	char	   *access;
	cJSON	   *expires;
	char	   *refresh;
	int64		lifetime;
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext old;

	foreach(lc, tokens)
		if (((Token *) lfirst(lc))->dest_id == req->dest_id)
			t = lfirst(lc);
	if (t == NULL)
		return;
	t->fetching = false;
	if (req->curl_code != CURLE_OK)
	{
		failed(req, t, req->errbuf[0] ? req->errbuf : curl_easy_strerror(req->curl_code));
		return;
	}
	if (req->status < 200 || req->status >= 300)
	{
		failed(req, t, psprintf("HTTP %ld: %s", req->status, retl_http_excerpt(req)));
		return;
	}
	answer = cJSON_ParseWithLength(req->response.data, req->response.len);
	access = answer ? field(answer, "access_token") : NULL;
	if (access == NULL || access[0] == '\0' || strpbrk(access, "\r\n") != NULL)
	{
		cJSON_Delete(answer);
		failed(req, t, "the answer has no access_token");
		return;
	}
	expires = cJSON_GetObjectItemCaseSensitive(answer, "expires_in");
	lifetime = cJSON_IsNumber(expires) && expires->valuedouble > 0 ? (int64) expires->valuedouble :
		DEFAULT_LIFETIME_S;
	refresh = field(answer, "refresh_token");
	old = MemoryContextSwitchTo(TopMemoryContext);
	if (t->access_token)
		pfree(t->access_token);
	t->access_token = pstrdup(access);
	t->expires_at = now + lifetime * USECS_PER_SEC;
	t->renew_at = now + (lifetime - Min((int64) RENEW_MARGIN_S, Max(lifetime / 10, 1))) * USECS_PER_SEC;
	/* the answer's other fields, for connectors (instance_url); no tokens */
	cJSON_DeleteItemFromObjectCaseSensitive(answer, "access_token");
	cJSON_DeleteItemFromObjectCaseSensitive(answer, "refresh_token");
	cJSON_DeleteItemFromObjectCaseSensitive(answer, "id_token");
	{
		char	   *rest = cJSON_PrintUnformatted(answer);

		if (t->answer)
			pfree(t->answer);
		t->answer = rest ? pstrdup(rest) : NULL;
		if (rest)
			cJSON_free(rest);
	}
	MemoryContextSwitchTo(old);
	cJSON_Delete(answer);
	t->generation++;
	t->failures = 0;
	t->not_before = 0;
	if (refresh != NULL && refresh[0] != '\0')
		save_refresh_token(t, refresh);
}

/*
 * An API answered 401 to a request sent with a token: renew it, once.
 * True when the request's records are to be retried with a new token
 * (this 401 asks for one, or an earlier 401 of the same token did and the
 * new one is not there yet: every request in flight with an expired
 * session is answered 401); false when the token was already one got
 * after a 401.
 */
bool
retl_oauth_unauthorized(RetlRequest *req)
{
	ListCell   *lc;

	foreach(lc, tokens)
	{
		Token	   *t = lfirst(lc);

		if (t->dest_id != req->dest_id)
			continue;
		if (t->generation != req->auth_generation)
			return true;		/* an older token: a newer one is there */
		if (t->after_401)
			return t->access_token == NULL;
		if (t->access_token)
			pfree(t->access_token);
		t->access_token = NULL;
		t->after_401 = true;
		t->not_before = 0;
		return true;
	}
	return false;
}

/* A request with the destination's token succeeded: a later 401 renews again. */
void
retl_oauth_accepted(RetlRequest *req)
{
	ListCell   *lc;

	foreach(lc, tokens)
	{
		Token	   *t = lfirst(lc);

		if (t->dest_id == req->dest_id && t->generation == req->auth_generation)
			t->after_401 = false;
	}
}

/* A field of the destination's last token answer (instance_url), or NULL. */
char *
retl_oauth_field(int dest_id, const char *name)
{
	ListCell   *lc;

	foreach(lc, tokens)
	{
		Token	   *t = lfirst(lc);

		if (t->dest_id == dest_id && t->answer != NULL)
		{
			cJSON	   *a = cJSON_Parse(t->answer);
			char	   *v = a ? field(a, name) : NULL;

			cJSON_Delete(a);
			return v;
		}
	}
	return NULL;
}
