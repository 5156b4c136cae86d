/*
 * mapping.h: turning a sync's key and mapping into SQL expressions.
 */
#ifndef RETL_MAPPING_H
#define RETL_MAPPING_H

#include "access/tupdesc.h"
#include "lib/stringinfo.h"

#include "sync/sync.h"

extern void retl_source_gone(RetlSync *sync) pg_attribute_noreturn();
extern void retl_check_source(RetlSync *sync);
extern const char *retl_only(Oid relid);
extern char **retl_key_field_names(RetlSync *sync);
extern void retl_append_key_object(StringInfo sql, RetlSync *sync, const char *keyexpr);
extern bool retl_mapping_computes(RetlSync *sync);
extern void retl_append_row_data(StringInfo sql, RetlSync *sync, const char *alias);
extern void retl_append_row_values(StringInfo sql, RetlSync *sync, const char *alias);
extern int	retl_append_value_list(StringInfo sql, RetlSync *sync, const char *alias,
								   TupleDesc desc);
extern void retl_append_json_data(StringInfo sql, RetlSync *sync, const char *dataexpr);
extern void retl_append_key_values(StringInfo sql, RetlSync *sync, const char *keyexpr);
extern void retl_append_key_match(StringInfo sql, RetlSync *sync, const char *alias,
								  const char *keyexpr);
extern void retl_append_key_after(StringInfo sql, RetlSync *sync, const char *alias,
								  const char *keyexpr);
extern void retl_append_key_columns(StringInfo sql, RetlSync *sync, const char *alias);
extern void retl_append_key_array(StringInfo sql, RetlSync *sync, const char *alias);

#endif
