/*
 * trust.h: keeping other roles' code out of the extension's privileges
 * (see trust.c).
 */
#ifndef RETL_TRUST_H
#define RETL_TRUST_H

#include "lib/stringinfo.h"

extern bool retl_key_type_trusted(Oid typid);
extern Oid	retl_key_cast_type(Oid typid, const char *column, const char *sync_name);
extern char *retl_key_operator(Oid typid, int16 strategy);
extern Datum retl_row_to_jsonb(Datum row, Oid rowtype, Oid owner);

#endif
