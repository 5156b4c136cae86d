/*
 * checks.c: what retl_create_destination and retl_create_sync ask the
 * connectors at creation.
 *
 * The engine's own options (timeouts, batching, rates, retries, headers,
 * auth) are checked in SQL (retl--*.sql); here every key of the options is
 * matched against the engine's and the connector's, so an unknown key is
 * refused, and the connector checks its own (the account's options on the
 * destination, the target's on the sync).  All run in the creating
 * backend, as the extension's owner (api/entry.c); errors change nothing.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "base/identity.h"
#include "base/subxact.h"
#include "connectors/auth.h"
#include "connectors/connector.h"
#include "sync/expr.h"

PG_FUNCTION_INFO_V1(retl_check_destination);
PG_FUNCTION_INFO_V1(retl_check_sync_options);
PG_FUNCTION_INFO_V1(retl_check_sync_source);
PG_FUNCTION_INFO_V1(retl_connector_defaults);
PG_FUNCTION_INFO_V1(retl_default_url);
PG_FUNCTION_INFO_V1(retl_check_computed);

/* the engine's options of a destination, whatever its kind */
static const char *const engine_destination_options[] = {
	"headers", "auth", "timeout_ms", "batch_size", "max_batch_bytes", "linger_ms",
	"max_concurrency", "rate_limit", "max_attempts", "max_retry_age",
	"follow_redirects", "tls_verify", NULL
};

/* the engine's options of a sync, whatever its destination's kind */
static const char *const engine_sync_options[] = {
	"backfill", "after", "owner", "batch_size", NULL
};

static bool
listed(const char *const *list, const char *key)
{
	for (int i = 0; list != NULL && list[i] != NULL; i++)
		if (strcmp(list[i], key) == 0)
			return true;
	return false;
}

static void
append_list(StringInfo buf, const char *const *list)
{
	for (int i = 0; list != NULL && list[i] != NULL; i++)
		appendStringInfo(buf, "%s%s", buf->len > 0 ? ", " : "", list[i]);
}

/* Refuse a key that neither the engine nor the connector knows. */
static void
check_keys(Jsonb *options, const char *what, const char *kind,
		   const char *const *engine, const char *const *connector)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s options must be a JSON object", what)));
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		StringInfoData valid;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		if (listed(engine, key) || listed(connector, key))
			continue;
		initStringInfo(&valid);
		append_list(&valid, engine);
		append_list(&valid, connector);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown %s option \"%s\"", what, key),
				 strcmp(what, "sync") == 0 ?
				 errhint("Valid options of a sync to a destination of kind %s: %s.", kind, valid.data) :
				 errhint("Valid options of a destination of kind %s: %s.", kind, valid.data)));
	}
}

/*
 * retl._check_destination(kind, options): the kind is a connector's, the
 * options are known to it or to the engine, its auth and its own options
 * are right.
 */
Datum
retl_check_destination(PG_FUNCTION_ARGS)
{
	const RetlConnector *c;
	Jsonb	   *options;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("destination kind must not be null"),
				 errhint("Supported kinds: %s.", retl_connector_kinds())));
	c = retl_connector(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	options = PG_GETARG_JSONB_P(1);
	check_keys(options, "destination", c->kind, engine_destination_options,
			   c->destination_options);
	retl_auth_check(options, c->default_token_path);
	if (c->check_destination != NULL)
		c->check_destination(options);
	PG_RETURN_VOID();
}

/*
 * retl._check_sync_options(kind, options, mode, destination options,
 * owner): a sync's options are known, its mode is one the connector can
 * honour, and the connector's own options (its target) are right.
 */
Datum
retl_check_sync_options(PG_FUNCTION_ARGS)
{
	const RetlConnector *c = retl_connector(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	Jsonb	   *options = PG_GETARG_JSONB_P(1);
	char	   *mode = text_to_cstring(PG_GETARG_TEXT_PP(2));
	Jsonb	   *dest_options = PG_GETARG_JSONB_P(3);
	Oid			owner = PG_GETARG_OID(4);
	char	   *modes = pstrdup(c->modes);
	char	   *tok;
	char	   *save;
	bool		ok = false;

	check_keys(options, "sync", c->kind, engine_sync_options, c->sync_options);
	for (tok = strtok_r(modes, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save))
		ok |= strcmp(tok, mode) == 0;
	/* (a mode retl has not at all is the caller's to refuse) */
	if (!ok && (strcmp(mode, "insert") == 0 || strcmp(mode, "update") == 0 ||
				strcmp(mode, "upsert") == 0 || strcmp(mode, "mirror") == 0 ||
				strcmp(mode, "append") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a destination of kind %s does not support mode \"%s\"", c->kind, mode),
				 errhint("Modes it supports: %s.", c->modes)));
	if (c->check_sync != NULL)
		c->check_sync(options, mode, dest_options, owner);
	PG_RETURN_VOID();
}

/* A text[] argument as C strings (NULL elements as ""). */
static char **
text_array(ArrayType *array, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **names;

	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	names = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		names[i] = nulls[i] ? "" : TextDatumGetCString(elems[i]);
	return names;
}

/*
 * retl._check_sync_source(kind, options, key, fields, audience): the
 * sync's source, known only after its options are checked, suits the
 * connector: its key's columns (e.g. one, where the destination matches
 * records by one external id), the fields its records' data carry (as
 * mapped), an audience's membership or not.
 */
Datum
retl_check_sync_source(PG_FUNCTION_ARGS)
{
	const RetlConnector *c = retl_connector(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	Jsonb	   *options = PG_GETARG_JSONB_P(1);
	RetlSource	source;

	source.keys = text_array(PG_GETARG_ARRAYTYPE_P(2), &source.nkeys);
	source.fields = text_array(PG_GETARG_ARRAYTYPE_P(3), &source.nfields);
	source.audience = PG_GETARG_BOOL(4);
	if (c->check_source != NULL)
		c->check_source(options, &source);
	PG_RETURN_VOID();
}

/*
 * retl._connector_defaults(kind): the limits and defaults of a kind's
 * connector: max_records, max_bytes, rate_limit, max_concurrency,
 * default_url, batch_size.
 */
Datum
retl_connector_defaults(PG_FUNCTION_ARGS)
{
	const RetlConnector *c;
	TupleDesc	desc;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("destination kind must not be null"),
				 errhint("Supported kinds: %s.", retl_connector_kinds())));
	c = retl_connector(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "retl: _connector_defaults must return a row");
	values[0] = Int32GetDatum(c->max_records);
	values[1] = Int32GetDatum(c->max_bytes);
	values[2] = Float8GetDatum(c->default_rate_limit);
	values[3] = Int32GetDatum(c->default_max_concurrency);
	if (c->default_url != NULL)
		values[4] = CStringGetTextDatum(c->default_url);
	else
		nulls[4] = true;
	values[5] = Int32GetDatum(Max(c->default_batch_size, 1));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

typedef struct Describe
{
	const char *sql;
} Describe;

static void
describe(void *arg)
{
	if (SPI_execute(((Describe *) arg)->sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not describe a computed field");
}

typedef struct DescribeAs
{
	Describe   *d;
	Oid			owner;
	const char *path;
} DescribeAs;

static void
describe_as(void *arg)
{
	DescribeAs *a = arg;

	retl_with_path(a->owner, a->path, describe, a->d);
}

/*
 * retl._check_computed(mapping, source query, owner, search_path): each
 * computed field of a mapping ("field": {"sql": "expression"}) is one
 * expression that compiles over the source's rows, as the owner who will
 * run it, with the search_path it will run with.
 */
Datum
retl_check_computed(PG_FUNCTION_ARGS)
{
	Jsonb	   *mapping = PG_GETARG_JSONB_P(0);
	char	   *source = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			owner = PG_GETARG_OID(2);
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(3));
	JsonbIterator *it = JsonbIteratorInit(&mapping->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *field = NULL;
	int			depth = 0;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "retl: SPI_connect failed");
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT)
			depth++;
		else if (tok == WJB_END_OBJECT)
			depth--;
		else if (tok == WJB_KEY && depth == 1)
			field = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_KEY && depth == 2)
		{
			char	   *k = pnstrdup(v.val.string.val, v.val.string.len);
			char	   *what = psprintf("computed field \"%s\" of the mapping", field);
			char	   *expr;
			Describe	d;
			ErrorData  *edata;

			if (strcmp(k, "sql") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s has an unknown field \"%s\"", what, k),
						 errhint("A computed field is {\"field\": {\"sql\": \"expression\"}}.")));
			tok = JsonbIteratorNext(&it, &v, false);
			if (tok != WJB_VALUE || v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s must be a SQL expression (a string)", what)));
			expr = pnstrdup(v.val.string.val, v.val.string.len);
			retl_check_expression(what, expr);
			d.sql = psprintf("SELECT (\n%s\n) FROM (%s\n) q LIMIT 0", expr, source);
			edata = retl_in_subtransaction(describe_as, &(DescribeAs) {&d, owner, path});
			if (edata != NULL)
				ereport(ERROR,
						(errcode(edata->sqlerrcode),
						 errmsg("%s does not compile: %s", what, edata->message),
						 edata->hint ? errhint("%s", edata->hint) : 0,
						 errdetail("It sees the columns of the source's rows.")));
		}
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * retl._default_url(kind, options): the URL of a destination that gives
 * none, as its connector knows it (from the options, or its API's one), or
 * NULL.
 */
Datum
retl_default_url(PG_FUNCTION_ARGS)
{
	const RetlConnector *c = retl_connector(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	char	   *url = NULL;

	if (c->default_url_for != NULL)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "retl: SPI_connect failed");
		url = c->default_url_for(PG_GETARG_JSONB_P(1));
		SPI_finish();
	}
	if (url == NULL)
		url = (char *) c->default_url;
	if (url == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(url));
}
