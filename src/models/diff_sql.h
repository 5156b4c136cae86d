/*
 * diff_sql.h: the SQL text of a diff run's statements, as diff.c (the run)
 * and diff_sql.c (building the text) share it.
 */
#ifndef RETL_DIFF_SQL_H
#define RETL_DIFF_SQL_H

#include "access/tupdesc.h"
#include "lib/stringinfo.h"

#include "sync/sync.h"

extern char *retl_diff_source_query(RetlSync *sync);
extern void retl_diff_append_key_array(StringInfo sql, char **keys, int nkeys);
extern void retl_diff_append_result(StringInfo sql, StringInfo data, RetlSync *sync, TupleDesc desc,
									bool int_keys, bool op_only);
extern bool retl_diff_append_filtered(StringInfo sql, RetlSync *sync, TupleDesc desc, bool int_keys,
									  bool op_only, const char *ops);
extern TupleDesc retl_diff_describe_result(RetlSync *sync);
extern bool retl_diff_integer_key(RetlSync *sync, TupleDesc desc);

#endif
