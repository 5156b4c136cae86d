/*
 * compiled.h: a sync's statements, generated once (see compiled.c).
 */
#ifndef RETL_COMPILED_H
#define RETL_COMPILED_H

#include "sync/sync.h"

/* the statements a sync's definition is compiled into */
typedef enum RetlStatement
{
	RETL_SQL_CLAIM,				/* claim.c: an append or diff batch's records */
	RETL_SQL_READ,				/* claim.c: the rows of an upsert batch */
	RETL_SQL_READ_RANGES,		/* rows.c: the same, by runs of integer keys */
	RETL_SQL_HIDDEN,			/* claim.c: which missing rows are hidden */
	RETL_SQL_APPEND,			/* claim.c: an append batch's computed fields */
	RETL_SQL_COUNT
} RetlStatement;

extern const char *retl_sync_statement(RetlSync *sync, RetlStatement which,
									   char *(*build) (RetlSync *sync));

#endif
