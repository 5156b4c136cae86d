/*
 * rowjson.h: a source row as to_jsonb(row)::text writes it (rowjson.c).
 */
#ifndef RETL_ROWJSON_H
#define RETL_ROWJSON_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"

typedef struct RetlRowJson RetlRowJson;

extern bool retl_row_json_plain(Oid relid);
extern RetlRowJson *retl_row_json_prepare(TupleDesc desc, int first);
extern void retl_row_json_append(StringInfo out, RetlRowJson *rj, HeapTuple tup, TupleDesc desc);
extern void retl_row_json_free(RetlRowJson *rj);

#endif
