/*
 * owner.h: reading a sync's source as the sync's owner (see owner.c).
 */
#ifndef RETL_OWNER_H
#define RETL_OWNER_H

#include "sync/sync.h"

extern bool retl_role_may_read(Oid relid, Oid role);
extern void retl_owner_check_send(RetlSync *sync);
extern bool retl_owner_rls(RetlSync *sync);
extern void retl_owner_temp_table(Oid owner, const char *name, const char *columns);
extern void retl_owner_grant(Oid owner, const char *name, const char *privilege);
extern int64 retl_owner_exec(Oid owner, const char *sql, const char *path, int expected);
extern void retl_owner_read(RetlSync *sync, const char *sql, int nargs, Oid *types,
							Datum *values, const char *nulls);

#endif
