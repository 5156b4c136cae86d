/*
 * auth.c: a destination's "auth" option, shared by every connector.
 *
 *   {"type": "bearer", "token": "{{secret:T}}"}          Authorization: Bearer ...
 *   {"type": "basic", "username": ..., "password": ...}  Authorization: Basic base64(u:p)
 *                      (password "": the username is the credential, a secret)
 *   {"type": "header", "name": "X-Api-Key", "value": ...}
 *   {"type": "oauth2", ...}                              see oauth.c
 *
 * Credentials are given only as {{secret:NAME}} (a value written out
 * would be readable in retl.destinations by admins and in pg_dump), read
 * when a request is built, and kept by the request for redaction: the
 * secret, and what is derived from it (the base64 of user:password).
 */
#include "postgres.h"

#include "common/base64.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "connectors/auth.h"
#include "connectors/headers.h"
#include "connectors/oauth.h"
#include "connectors/request.h"

/* A string field of a jsonb object, or NULL. */
char *
retl_jsonb_string(Jsonb *obj, const char *name)
{
	JsonbValue	key;
	JsonbValue *v;

	key.type = jbvString;
	key.val.string.val = (char *) name;
	key.val.string.len = strlen(name);
	v = findJsonbValueFromContainer(&obj->root, JB_FOBJECT, &key);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* The jsonb object under a key of options, or NULL. */
static Jsonb *
object(Jsonb *options, const char *name)
{
	JsonbValue	key;
	JsonbValue *v;

	key.type = jbvString;
	key.val.string.val = (char *) name;
	key.val.string.len = strlen(name);
	v = findJsonbValueFromContainer(&options->root, JB_FOBJECT, &key);
	if (v == NULL)
		return NULL;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a JSON object", name),
				 errhint("For example {\"auth\": {\"type\": \"bearer\", \"token\": \"{{secret:api_token}}\"}}.")));
	return JsonbValueToJsonb(v);
}

/* The type of a destination's auth option ("oauth2", ...), or NULL: none. */
char *
retl_auth_type(Jsonb *options)
{
	Jsonb	   *auth = object(options, "auth");

	return auth ? retl_jsonb_string(auth, "type") : NULL;
}

/* Whether an option is there at all (of any type). */
bool
retl_jsonb_has(Jsonb *obj, const char *name)
{
	JsonbValue	key;

	key.type = jbvString;
	key.val.string.val = (char *) name;
	key.val.string.len = strlen(name);
	return findJsonbValueFromContainer(&obj->root, JB_FOBJECT, &key) != NULL;
}

/* A credential field: required, a string that names a secret. */
static void
check_credential(Jsonb *auth, const char *type, const char *name)
{
	char	   *v = retl_jsonb_string(auth, name);

	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth of type \"%s\" needs \"%s\"", type, name),
				 errhint("Give it as a secret: \"%s\": \"{{secret:NAME}}\".", name)));
	if (strstr(v, "{{secret:") == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth field \"%s\" must name a secret, as {{secret:NAME}}", name),
				 errdetail("A credential written into the options would be readable in retl.destinations and in pg_dump."),
				 errhint("SELECT retl_set_secret('NAME', value), then \"%s\": \"{{secret:NAME}}\".", name)));
}

/* Only the given keys, each a string. */
static void
check_keys(Jsonb *auth, const char *type, const char *const *allowed)
{
	JsonbIterator *it = JsonbIteratorInit(&auth->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		is_key = false;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *k = pnstrdup(v.val.string.val, v.val.string.len);
			bool		ok = false;

			for (int i = 0; allowed[i] != NULL; i++)
				ok |= strcmp(allowed[i], k) == 0;
			if (!ok)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown field \"%s\" in auth of type \"%s\"", k, type)));
			is_key = true;
		}
		else if (tok == WJB_VALUE && is_key)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("every field of auth must be a string")));
			is_key = false;
		}
	}
}

/*
 * At creation: the destination's auth option, if any (default_token_path:
 * its connector's token endpoint, or NULL).
 */
void
retl_auth_check(Jsonb *options, const char *default_token_path)
{
	static const char *const bearer[] = {"type", "token", NULL};
	static const char *const basic[] = {"type", "username", "password", NULL};
	static const char *const header[] = {"type", "name", "value", NULL};
	Jsonb	   *auth = object(options, "auth");
	char	   *type;

	if (auth == NULL)
		return;
	type = retl_jsonb_string(auth, "type");
	if (type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth needs a \"type\""),
				 errhint("One of bearer, basic, header, oauth2.")));
	if (strcmp(type, "bearer") == 0)
	{
		check_keys(auth, type, bearer);
		check_credential(auth, type, "token");
	}
	else if (strcmp(type, "basic") == 0)
	{
		char	   *user = retl_jsonb_string(auth, "username");
		char	   *password = retl_jsonb_string(auth, "password");

		check_keys(auth, type, basic);
		if (user == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("auth of type \"basic\" needs \"username\"")));

		/*
		 * An API key sent as the user name with an empty password, as some
		 * APIs take it: the user name is then the credential, and must name
		 * a secret.
		 */
		if (password != NULL && password[0] == '\0')
		{
			if (strstr(user, "{{secret:") == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("auth of type \"basic\" with an empty password needs a \"username\" that names a secret"),
						 errdetail("With an empty password, the user name is the credential (an API key)."),
						 errhint("SELECT retl_set_secret('NAME', key), then \"username\": \"{{secret:NAME}}\", \"password\": \"\".")));
		}
		else
			check_credential(auth, type, "password");
	}
	else if (strcmp(type, "header") == 0)
	{
		char	   *name = retl_jsonb_string(auth, "name");

		check_keys(auth, type, header);
		if (name == NULL || name[0] == '\0' || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+.^_`|~-") != strlen(name))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("auth of type \"header\" needs a valid header \"name\"")));
		if (retl_header_set_by_retl(name))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("auth of type \"header\" names header \"%s\", which retl sets", name),
					 errdetail("retl sets %s itself.", retl_headers_set_by_retl()),
					 errhint("Name the header the API reads the credential from, such as X-Api-Key.")));
		check_credential(auth, type, "value");
	}
	else if (strcmp(type, "oauth2") == 0)
		retl_oauth_check(auth, default_token_path);
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown auth type \"%s\"", type),
				 errhint("One of bearer, basic, header, oauth2.")));
}

/*
 * The header a destination's auth sets ("Authorization", or the name of
 * auth of type header), or NULL: no auth, or none yet valid.
 */
char *
retl_auth_header_name(Jsonb *options)
{
	Jsonb	   *auth = object(options, "auth");
	char	   *type = auth ? retl_jsonb_string(auth, "type") : NULL;

	if (type == NULL)
		return NULL;
	if (strcmp(type, "header") == 0)
		return retl_jsonb_string(auth, "name");
	if (strcmp(type, "bearer") == 0 || strcmp(type, "basic") == 0 || strcmp(type, "oauth2") == 0)
		return "Authorization";
	return NULL;
}

/* While a request is built: its auth header, if the destination has auth. */
void
retl_auth_header(RetlRequest *req, RetlSync *sync)
{
	Jsonb	   *auth;
	char	   *type;

	if (sync->auth == NULL)
		return;
	auth = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(sync->auth)));
	type = retl_jsonb_string(auth, "type");
	if (type == NULL)
		return;
	if (strcmp(type, "bearer") == 0)
		retl_request_secret_header(req, "Authorization",
								   psprintf("Bearer %s", retl_substitute_secrets(req, retl_jsonb_string(auth, "token"))));
	else if (strcmp(type, "basic") == 0)
	{
		char	   *pair = psprintf("%s:%s", retl_substitute_secrets(req, retl_jsonb_string(auth, "username")),
									retl_substitute_secrets(req, retl_jsonb_string(auth, "password")));
		int			len = strlen(pair);
		char	   *enc = palloc(pg_b64_enc_len(len) + 1);
		int			n = pg_b64_encode(pair, len, enc, pg_b64_enc_len(len));

		if (n < 0)
			elog(ERROR, "retl: could not encode credentials");
		enc[n] = '\0';
		req->secrets = lappend(req->secrets, MemoryContextStrdup(req->cxt, pair));
		req->secrets = lappend(req->secrets, MemoryContextStrdup(req->cxt, enc));
		retl_request_secret_header(req, "Authorization", psprintf("Basic %s", enc));
	}
	else if (strcmp(type, "header") == 0)
		retl_request_header(req, retl_jsonb_string(auth, "name"),
							retl_substitute_secrets(req, retl_jsonb_string(auth, "value")));
	else if (strcmp(type, "oauth2") == 0)
		retl_oauth_header(req, sync);
}
