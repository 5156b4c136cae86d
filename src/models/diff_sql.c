/*
 * diff_sql.c: the SQL text of a diff run's statements (diff.c runs them).
 *
 * A sync's result as a subquery: its source as a query, each row's key
 * (an integer key column as bigint, else a jsonb array), the probe's
 * answer for the row (probe.c) and the JSON sent of it, and the same
 * statement filtering the rows by the probe's answer where they are read
 * (probe_plan.c).  Also the description of the result, which tells
 * whether its key is kept in memory as integers.  Nothing here runs the
 * statements but the description, as the sync's owner.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "base/identity.h"
#include "models/diff_sql.h"
#include "models/query.h"
#include "sync/mapping.h"

/* The SQL text of a sync's source as a query. */
char *
retl_diff_source_query(RetlSync *sync)
{
	if (sync->query)
		return retl_trimmed_query(sync->query);
	retl_check_source(sync);
	return psprintf("SELECT * FROM ONLY %s",
					format_type_be_qualified(get_rel_type_id(sync->relid)));
}

/* "SELECT jsonb_build_array(q.k1, ...)" for key columns of a query aliased q */
void
retl_diff_append_key_array(StringInfo sql, char **keys, int nkeys)
{
	appendStringInfoString(sql, "pg_catalog.jsonb_build_array(");
	for (int i = 0; i < nkeys; i++)
		appendStringInfo(sql, "%sq.%s", i > 0 ? ", " : "", quote_identifier(keys[i]));
	appendStringInfoChar(sql, ')');
}

/* A row's key over q: an integer key column as bigint, else a jsonb array */
static void
append_key(StringInfo sql, RetlSync *sync, bool int_keys)
{
	if (int_keys)
		appendStringInfo(sql, "q.%s::pg_catalog.int8", quote_identifier(sync->key_names[0]));
	else
		retl_diff_append_key_array(sql, sync->key_names, sync->nkeys);
}

/*
 * The JSON sent of a row of the result aliased alias: its columns but the
 * run's, or its mapped columns and computed fields, which read the row's
 * columns as q, in a level of their own where nothing of the run is in
 * scope (a computed field written over q.email, or reading a column op).
 */
static void
append_data(StringInfo data, RetlSync *sync, const char *alias)
{
	if (sync->mapping == NULL)
		appendStringInfo(data, "(pg_catalog.to_jsonb(%s.*) OPERATOR(pg_catalog.-)"
						 " '{retl.op,retl.key,retl.hash}'::pg_catalog.text[])", alias);
	else
	{
		appendStringInfoString(data, "(SELECT ");
		retl_append_row_data(data, sync, "q");
		appendStringInfo(data, " FROM (SELECT %s.*) q)", alias);
	}
}

/*
 * The result of a sync as a subquery aliased c: its rows' key ("retl.key":
 * the value of a single integer key column as bigint, else a jsonb array),
 * what the run's snapshot in memory says of the row ("retl.op",
 * retl._run_probe_values(key, values...), which hashes the row's mapped
 * values (rowhash.c) if the row is of the part being diffed, keeps the
 * hash and counts the row; with more values than a function takes,
 * retl._run_probe(key, hash) of retl._row_hash of a row of them, the same
 * hash), and what the data expression (appended to data) reads; with
 * op_only, only "retl.op" (a run that writes no row: nothing read above
 * c).  The probe is volatile: c stays a level of its own, evaluated once
 * per row, and the data expression above it runs only for the rows it
 * lets through (where the run cannot filter the rows as it reads them:
 * retl_diff_append_filtered).
 */
void
retl_diff_append_result(StringInfo sql, StringInfo data, RetlSync *sync, TupleDesc desc,
						bool int_keys, bool op_only)
{
	StringInfoData values;
	int			nvalues;
	StringInfoData keyed;

	if (sync->audience_id)
	{
		Assert(!op_only);
		/* the audience's current members; membership was computed as its owner */
		appendStringInfoString(sql, "(SELECT retl._run_probe(r.\"retl.key\", r.\"retl.hash\") AS \"retl.op\", r.* FROM "
							   "(SELECT m.key AS \"retl.key\","
							   " pg_catalog.hashtextextended(m.data::pg_catalog.text, 0) AS \"retl.hash\","
							   " m.data AS \"retl.data\" FROM (SELECT m.key, ");
		retl_append_key_object(sql, sync, "m.key");
		appendStringInfo(sql, " AS data FROM retl.audience_member_store m WHERE m.audience_id = %d) m) r) c",
						 sync->audience_id);
		appendStringInfoString(data, "c.\"retl.data\"");
		return;
	}
	/* the source's rows and their key, as q */
	initStringInfo(&keyed);
	appendStringInfoString(&keyed, "(SELECT ");
	append_key(&keyed, sync, int_keys);
	appendStringInfo(&keyed, " AS \"retl.key\", q.* FROM (%s\n) q) q", retl_diff_source_query(sync));

	initStringInfo(&values);
	nvalues = retl_append_value_list(&values, sync, "q", desc);
	if (nvalues > 0 && nvalues < FUNC_MAX_ARGS)
		appendStringInfo(sql, "(SELECT retl._run_probe_values(q.\"retl.key\", %s) AS \"retl.op\"%s FROM %s) c",
						 values.data, op_only ? "" : ", q.*", keyed.data);
	else
	{
		/* (the same hash, of a row formed of them: of the source's row only) */
		appendStringInfo(sql, "(SELECT retl._run_probe(r.\"retl.key\", r.\"retl.hash\") AS \"retl.op\"%s"
						 " FROM (SELECT ", op_only ? "" : ", r.*");
		append_key(sql, sync, int_keys);
		appendStringInfoString(sql, " AS \"retl.key\", retl._row_hash(");
		retl_append_row_values(sql, sync, "q");
		appendStringInfo(sql, ") AS \"retl.hash\", q.* FROM (%s\n) q) r) c", retl_diff_source_query(sync));
	}
	if (!op_only)
		append_data(data, sync, "c");
}

/*
 * The statement of a run that filters the query's rows by the probe's
 * answer where they are read (probe_plan.c), of a sync of a query whose
 * mapped values are few enough to be a function's arguments; false if
 * not.  ops, key and data as the caller's statement over retl_diff_append_result.
 */
bool
retl_diff_append_filtered(StringInfo sql, RetlSync *sync, TupleDesc desc, bool int_keys,
						  bool op_only, const char *ops)
{
	StringInfoData values;
	StringInfoData data;
	int			nvalues;
	const char *op = "retl._run_probe_op(q.\"retl.key\")";

	if (sync->audience_id)
		return false;
	initStringInfo(&values);
	nvalues = retl_append_value_list(&values, sync, "q", desc);
	if (nvalues == 0 || nvalues >= FUNC_MAX_ARGS)
		return false;
	if (op_only)
		appendStringInfoString(sql, "SELECT pg_catalog.count(*)");
	else
	{
		/* (written into pg_temp.retl_run_diff by probe_plan.c) */
		initStringInfo(&data);
		append_data(&data, sync, "q");
		appendStringInfo(sql, "SELECT %s, CASE WHEN %s OPERATOR(pg_catalog.=) 'L'"
						 " OR %s OPERATOR(pg_catalog.=) ANY (%s::pg_catalog.\"char\"[]) THEN %s END,"
						 " %s::pg_catalog.text",
						 int_keys ? "pg_catalog.jsonb_build_array(q.\"retl.key\")" : "q.\"retl.key\"",
						 op, op, quote_literal_cstr(ops), data.data, op);
	}
	appendStringInfoString(sql, " FROM (SELECT ");
	append_key(sql, sync, int_keys);
	appendStringInfo(sql, " AS \"retl.key\", q.* FROM (%s\n) q) q"
					 " WHERE retl._run_probe_filter(q.\"retl.key\", %s)",
					 retl_diff_source_query(sync), values.data);
	return true;
}

/*
 * The columns of a sync's result (a non-audience sync's): its query
 * described as its owner, with its creator's search_path, as it runs.
 */
TupleDesc
retl_diff_describe_result(RetlSync *sync)
{
	retl_with_path(sync->owner, sync->search_path, retl_describe_query, retl_diff_source_query(sync));
	return CreateTupleDescCopy(SPI_tuptable->tupdesc);
}

/*
 * Is the sync's key one column of an integer type?  Its snapshot is then
 * kept in memory as integers (probe.c).
 */
bool
retl_diff_integer_key(RetlSync *sync, TupleDesc desc)
{
	Oid			type = InvalidOid;

	if (sync->audience_id || sync->nkeys != 1)
		return false;
	for (int i = 0; i < desc->natts; i++)
		if (strcmp(NameStr(TupleDescAttr(desc, i)->attname), sync->key_names[0]) == 0)
		{
			type = TupleDescAttr(desc, i)->atttypid;
			break;
		}
	if (!OidIsValid(type))
		return false;
	type = getBaseType(type);
	return type == INT2OID || type == INT4OID || type == INT8OID;
}
