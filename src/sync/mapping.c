/*
 * mapping.c: a sync's key and field mapping as SQL expressions.
 *
 * Queued keys are JSON arrays of the key values in key order (see the
 * capture trigger), and the mapping is {"source_column": "field"}, with
 * computed fields as {"field": {"sql": "expression over the row"}}.  The
 * worker turns both into SQL run in its claim transaction, so PostgreSQL's
 * own type-to-JSON conversion applies.  Key columns are found by attribute
 * number each time, so a renamed key column keeps working, and its field
 * keeps the name the sync was created with (retl.syncs.key_columns).
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "access/stratnum.h"
#include "catalog/pg_class.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "sync/expr.h"
#include "sync/keytext.h"
#include "sync/mapping.h"
#include "sync/trust.h"

static cJSON *parse_mapping(RetlSync *sync);

/*
 * "ONLY " to read a source table without its inheritance children (their
 * changes are not captured), or "" for a partitioned table, whose rows are
 * all in its partitions.
 */
const char *
retl_only(Oid relid)
{
	return get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ";
}

/*
 * The error of a sync whose table is gone, wherever that is found (the
 * same text in retl._alter_sync, in SQL).
 */
void
retl_source_gone(RetlSync *sync)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_TABLE),
			 errmsg("source table of sync \"%s\" no longer exists", sync->name),
			 errhint("Drop the sync with SELECT retl_drop_sync('%s').", sync->name)));
}

/*
 * Fail clearly when the sync's table is gone (DROP TABLE drops its
 * triggers) or a column its mapping names is.
 */
void
retl_check_source(RetlSync *sync)
{
	cJSON	   *map;
	cJSON	   *item;

	if (get_rel_name(sync->relid) == NULL)
		retl_source_gone(sync);

	/* a column the mapping names was dropped or renamed */
	map = parse_mapping(sync);
	if (map == NULL)
		return;
	cJSON_ArrayForEach(item, map)
	{
		/* (a computed field's expression fails by itself if it must) */
		if (cJSON_IsString(item) && get_attnum(sync->relid, item->string) == InvalidAttrNumber)
		{
			char	   *column = pstrdup(item->string);

			cJSON_Delete(map);
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("mapping of sync \"%s\" names column \"%s\", which table \"%s\" no longer has",
							sync->name, column, get_rel_name(sync->relid)),
					 errhint("Restore the column, or drop the sync and create it again with a new mapping.")));
		}
	}
	cJSON_Delete(map);
}

static char *
key_column_name(RetlSync *sync, int i)
{
	char	   *name;

	/* a diff sync's key is named columns of its result */
	if (sync->diff)
		return sync->key_names[i];
	name = get_attname(sync->relid, sync->key_attnums[i], true);

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("key column %d of sync \"%s\" no longer exists",
						sync->key_attnums[i], sync->name),
				 errhint("Drop the sync and create it again.")));
	return name;
}

/* Parse the mapping; the caller frees it with cJSON_Delete. */
static cJSON *
parse_mapping(RetlSync *sync)
{
	cJSON	   *map;

	if (sync->mapping == NULL)
		return NULL;
	map = cJSON_Parse(sync->mapping);
	if (map == NULL || !cJSON_IsObject(map))
	{
		cJSON_Delete(map);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mapping of sync \"%s\" is not a JSON object", sync->name)));
	}
	return map;
}

/* The field a source column is sent as: its mapped name, or its own. */
static char *
field_name(cJSON *map, const char *column)
{
	cJSON	   *item;

	if (map == NULL)
		return pstrdup(column);
	item = cJSON_GetObjectItemCaseSensitive(map, column);
	if (cJSON_IsString(item) && item->valuestring != NULL)
		return pstrdup(item->valuestring);
	return pstrdup(column);
}

/*
 * The fields the key is sent as, in key order: the key columns' names when
 * the sync was created, as mapped (a renamed key column must not turn the
 * destination's record into a new one).
 */
char	  **
retl_key_field_names(RetlSync *sync)
{
	cJSON	   *map = parse_mapping(sync);
	char	  **fields = palloc(sizeof(char *) * Max(sync->nkeys, 1));

	for (int i = 0; i < sync->nkeys; i++)
		fields[i] = field_name(map, sync->key_names[i]);
	cJSON_Delete(map);
	return fields;
}

/*
 * jsonb_build_object(field, keyexpr->0, ...) for the queued key keyexpr
 * (queue/render.c writes the same text in C).
 */
void
retl_append_key_object(StringInfo sql, RetlSync *sync, const char *keyexpr)
{
	char	  **fields = retl_key_field_names(sync);

	appendStringInfoString(sql, "pg_catalog.jsonb_build_object(");
	for (int i = 0; i < sync->nkeys; i++)
		appendStringInfo(sql, "%s%s, %s OPERATOR(pg_catalog.->) %d",
						 i > 0 ? ", " : "", quote_literal_cstr(fields[i]), keyexpr, i);
	appendStringInfoChar(sql, ')');
}

/* What append_data writes. */
typedef enum DataForm
{
	DATA_FROM_ROW,				/* jsonb, from the columns of a row */
	DATA_FROM_JSON,				/* jsonb, from captured row JSON */
	DATA_VALUES,				/* a row of the mapped values, from a row */
	DATA_VALUE_LIST				/* the same values as a list */
} DataForm;

/*
 * The mapped data as an expression: jsonb from the columns of a row
 * aliased expr (DATA_FROM_ROW) or from captured row JSON expr
 * (DATA_FROM_JSON); or the same values, in the same order, as a row
 * constructor (DATA_VALUES) or a list (DATA_VALUE_LIST, only for a sync
 * that maps), which a diff hashes without building any JSON.  Returns how
 * many values a mapping gives.
 */
static int
append_data(StringInfo sql, RetlSync *sync, const char *expr, DataForm form)
{
	cJSON	   *map = parse_mapping(sync);
	cJSON	   *item;
	bool		first = true;
	int			n = 0;

	if (map == NULL)
	{
		Assert(form != DATA_VALUE_LIST);
		if (form == DATA_FROM_ROW)
			appendStringInfo(sql, "pg_catalog.to_jsonb(%s.*)", expr);
		else if (form == DATA_VALUES)
			/* not the bare alias: a column of that name would be read instead */
			appendStringInfo(sql, "ROW(%s.*)", expr);
		else
			appendStringInfoString(sql, expr);
		return 0;
	}
	if (form == DATA_VALUES)
		appendStringInfoString(sql, "ROW(");
	else if (form != DATA_VALUE_LIST)
		appendStringInfoString(sql, "pg_catalog.jsonb_build_object(");
	cJSON_ArrayForEach(item, map)
	{
		cJSON	   *computed = cJSON_IsObject(item) ?
			cJSON_GetObjectItemCaseSensitive(item, "sql") : NULL;
		bool		is_computed = cJSON_IsString(computed) && computed->valuestring != NULL;
		const char *field;

		if (item->string == NULL)
			continue;
		if (is_computed)
			field = item->string;
		else if (cJSON_IsString(item) && item->valuestring != NULL)
			field = item->valuestring;
		else
			continue;
		if (!first)
			appendStringInfoString(sql, ", ");
		first = false;
		n++;
		if (form != DATA_VALUES && form != DATA_VALUE_LIST)
			appendStringInfo(sql, "%s, ", quote_literal_cstr(field));
		if (is_computed)
		{
			/* a computed field: "field": {"sql": "lower(email)"} over the row's columns */
			if (form == DATA_FROM_JSON)
			{
				cJSON_Delete(map);
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("mapping of sync \"%s\" computes fields, which an append sync cannot", sync->name)));
			}
			retl_append_expression(sql, psprintf("computed field \"%s\" of sync \"%s\"",
												 field, sync->name),
								   computed->valuestring);
		}
		else if (form == DATA_FROM_JSON)
			appendStringInfo(sql, "%s OPERATOR(pg_catalog.->) %s", expr,
							 quote_literal_cstr(item->string));
		else
			appendStringInfo(sql, "%s.%s", expr, quote_identifier(item->string));
	}
	if (form != DATA_VALUE_LIST)
		appendStringInfoChar(sql, ')');
	cJSON_Delete(map);
	return n;
}

/* Does the mapping compute fields ({"field": {"sql": ...}})? */
bool
retl_mapping_computes(RetlSync *sync)
{
	cJSON	   *map = parse_mapping(sync);
	cJSON	   *item;
	bool		computes = false;

	if (map == NULL)
		return false;
	cJSON_ArrayForEach(item, map)
		computes |= cJSON_IsObject(item);
	cJSON_Delete(map);
	return computes;
}

/* The data of a row of the source table, aliased alias, as jsonb. */
void
retl_append_row_data(StringInfo sql, RetlSync *sync, const char *alias)
{
	append_data(sql, sync, alias, DATA_FROM_ROW);
}

/*
 * The mapped values of a row aliased alias as a row (the row itself when
 * the sync maps nothing): its text changes whenever the mapped data does.
 */
void
retl_append_row_values(StringInfo sql, RetlSync *sync, const char *alias)
{
	(void) append_data(sql, sync, alias, DATA_VALUES);
}

/*
 * The same values as retl_append_row_values, as a list (of arguments): the
 * mapped values, or each column of desc (the row's own) when the sync maps
 * nothing.  Returns how many, or 0 when there are none or the columns
 * cannot be named one by one (two of one name).
 */
int
retl_append_value_list(StringInfo sql, RetlSync *sync, const char *alias, TupleDesc desc)
{
	cJSON	   *map = parse_mapping(sync);

	if (map != NULL)
	{
		cJSON_Delete(map);
		return append_data(sql, sync, alias, DATA_VALUE_LIST);
	}
	for (int i = 0; i < desc->natts; i++)
	{
		const char *name = NameStr(TupleDescAttr(desc, i)->attname);

		for (int j = 0; j < i; j++)
			if (strcmp(name, NameStr(TupleDescAttr(desc, j)->attname)) == 0)
				return 0;
		appendStringInfo(sql, "%s%s.%s", i > 0 ? ", " : "", alias, quote_identifier(name));
	}
	return desc->natts;
}

/* The mapped form of captured row data (a jsonb expression). */
void
retl_append_json_data(StringInfo sql, RetlSync *sync, const char *dataexpr)
{
	append_data(sql, sync, dataexpr, DATA_FROM_JSON);
}

/*
 * A key column's value in the queued key keyexpr, cast to the column's
 * base type (trust.c: no domain check, no user's cast).
 */
static char *
key_value(RetlSync *sync, int i, const char *keyexpr)
{
	Oid			type = retl_key_cast_type(get_atttype(sync->relid, sync->key_attnums[i]),
										  key_column_name(sync, i), sync->name);

	return psprintf("(%s OPERATOR(pg_catalog.->>) %d)::%s", keyexpr, i,
					format_type_be_qualified(type));
}

/* (keyexpr->>0)::type1, ...: the queued key keyexpr as the key columns take it */
void
retl_append_key_values(StringInfo sql, RetlSync *sync, const char *keyexpr)
{
	for (int i = 0; i < sync->nkeys; i++)
		appendStringInfo(sql, "%s%s", i > 0 ? ", " : "", key_value(sync, i, keyexpr));
}

/* alias.k1 = (keyexpr->>0)::type1 AND ..., with each type's own equality */
void
retl_append_key_match(StringInfo sql, RetlSync *sync, const char *alias,
					  const char *keyexpr)
{
	for (int i = 0; i < sync->nkeys; i++)
	{
		Oid			typid = get_atttype(sync->relid, sync->key_attnums[i]);

		appendStringInfo(sql, "%s%s.%s %s %s",
						 i > 0 ? " AND " : "", alias,
						 quote_identifier(key_column_name(sync, i)),
						 retl_key_operator(typid, BTEqualStrategyNumber),
						 key_value(sync, i, keyexpr));
	}
}

/*
 * Rows of alias after the queued key keyexpr in key order (as ORDER BY of
 * the key columns sorts them): a row comparison where one schema has every
 * column's operator, else its expansion (k1 > v1 OR (k1 = v1 AND k2 > v2)).
 */
void
retl_append_key_after(StringInfo sql, RetlSync *sync, const char *alias, const char *keyexpr)
{
	char	  **gt = palloc(sizeof(char *) * sync->nkeys);
	bool		same = true;

	for (int i = 0; i < sync->nkeys; i++)
	{
		gt[i] = retl_key_operator(get_atttype(sync->relid, sync->key_attnums[i]),
								  BTGreaterStrategyNumber);
		same &= strcmp(gt[i], gt[0]) == 0;
	}
	if (same)
	{
		appendStringInfoString(sql, "ROW(");
		retl_append_key_columns(sql, sync, alias);
		appendStringInfo(sql, ") %s ROW(", gt[0]);
		for (int i = 0; i < sync->nkeys; i++)
			appendStringInfo(sql, "%s%s", i > 0 ? ", " : "", key_value(sync, i, keyexpr));
		appendStringInfoChar(sql, ')');
		return;
	}
	appendStringInfoChar(sql, '(');
	for (int i = 0; i < sync->nkeys; i++)
	{
		appendStringInfoString(sql, i > 0 ? " OR (" : "(");
		for (int j = 0; j < i; j++)
			appendStringInfo(sql, "%s.%s %s %s AND ", alias,
							 quote_identifier(key_column_name(sync, j)),
							 retl_key_operator(get_atttype(sync->relid, sync->key_attnums[j]),
											   BTEqualStrategyNumber),
							 key_value(sync, j, keyexpr));
		appendStringInfo(sql, "%s.%s %s %s)", alias, quote_identifier(key_column_name(sync, i)),
						 gt[i], key_value(sync, i, keyexpr));
	}
	appendStringInfoChar(sql, ')');
}

/* alias.k1, alias.k2, ... */
void
retl_append_key_columns(StringInfo sql, RetlSync *sync, const char *alias)
{
	for (int i = 0; i < sync->nkeys; i++)
		appendStringInfo(sql, "%s%s.%s", i > 0 ? ", " : "", alias,
						 quote_identifier(key_column_name(sync, i)));
}

/* jsonb_build_array(alias.k1, ...): a row's key as the capture queues it */
void
retl_append_key_array(StringInfo sql, RetlSync *sync, const char *alias)
{
	appendStringInfoString(sql, "pg_catalog.jsonb_build_array(");
	for (int i = 0; i < sync->nkeys; i++)
	{
		if (i > 0)
			appendStringInfoString(sql, ", ");
		retl_append_key_value(sql, get_atttype(sync->relid, sync->key_attnums[i]),
							  psprintf("%s.%s", alias, quote_identifier(key_column_name(sync, i))));
	}
	appendStringInfoChar(sql, ')');
}
