/*
 * headers.c: the request headers a destination or an http sync may not
 * give, checked at creation.
 *
 * retl itself sets some headers on every request (the body's framing, the
 * idempotency key, the signature, the connection's handling); a second value beside retl's is sent as a second header line
 * (libcurl sends each line it is given), which a receiver reads as it
 * likes, the first or the last or both, and a Transfer-Encoding of one's
 * own breaks the body's framing.  The header the destination's auth sets
 * is the auth's alone, for the same reason.  Run in the creating backend;
 * errors change nothing.
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "connectors/auth.h"
#include "connectors/headers.h"

PG_FUNCTION_INFO_V1(retl_check_headers);

/* the headers retl sets on every request (or that steer the connection) */
static const char *const set_by_retl[] = {
	"Content-Type", "Content-Length", "Host", "Idempotency-Key",
	"webhook-id", "webhook-timestamp", "webhook-signature",
	"Transfer-Encoding", "Connection", "Expect", NULL
};

/* Is this a header retl sets itself (any case)? */
bool
retl_header_set_by_retl(const char *name)
{
	for (int i = 0; set_by_retl[i] != NULL; i++)
		if (pg_strcasecmp(set_by_retl[i], name) == 0)
			return true;
	return false;
}

/* The list, for hints: "Content-Type, Content-Length, ..." */
const char *
retl_headers_set_by_retl(void)
{
	StringInfoData list;

	initStringInfo(&list);
	for (int i = 0; set_by_retl[i] != NULL; i++)
		appendStringInfo(&list, "%s%s", i > 0 ? ", " : "", set_by_retl[i]);
	return list.data;
}

/*
 * retl._check_headers(destination, options): no header of the options'
 * "headers" is one retl sets, nor the one their "auth" sets.  (Their
 * names and values are checked in SQL.)
 */
Datum
retl_check_headers(PG_FUNCTION_ARGS)
{
	char	   *dest = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *options = PG_GETARG_JSONB_P(1);
	char	   *auth_header = retl_auth_header_name(options);
	JsonbValue	key;
	JsonbValue *headers;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	key.type = jbvString;
	key.val.string.val = "headers";
	key.val.string.len = strlen("headers");
	headers = findJsonbValueFromContainer(&options->root, JB_FOBJECT, &key);
	if (headers == NULL || headers->type != jbvBinary || !JsonContainerIsObject(headers->val.binary.data))
		PG_RETURN_VOID();
	it = JsonbIteratorInit(headers->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		if (retl_header_set_by_retl(name))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%s\" is set by retl and cannot be overridden", name),
					 errdetail("retl sets %s itself.", retl_headers_set_by_retl()),
					 pg_strcasecmp(name, "Content-Type") == 0 ?
					 errhint("An http sync gives its content type as content_type.") :
					 errhint("Leave it out of the destination's headers.")));
		if (auth_header != NULL && pg_strcasecmp(name, auth_header) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("destination \"%s\" sets header \"%s\" and auth, which sets it too", dest, name),
					 errdetail("Both would be sent, and the receiver would pick one of them."),
					 errhint("Use one of them: the auth option (its credential a secret), or the header alone without auth.")));
	}
	PG_RETURN_VOID();
}
