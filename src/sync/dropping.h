/*
 * dropping.h: keeping the worker out of a sync that a drop is taking
 * apart (see dropping.c).
 */
#ifndef RETL_DROPPING_H
#define RETL_DROPPING_H

#include "sync/sync.h"

/*
 * The first key of the advisory lock that retl._drop_sync takes on its
 * sync (the second is the sync's id): 'retl' in ASCII.  The SQL in
 * retl--0.1--0.2.sql spells the same number.
 */
#define RETL_DROP_LOCK_KEY 1919251564

/* SQL: true when no drop holds the sync whose id is x (shares its lock) */
#define RETL_SYNC_FREE_SQL(x) "pg_catalog.pg_try_advisory_xact_lock_shared(1919251564, " x ")"

extern bool retl_sync_dropping(int sync_id);
extern bool retl_sync_dropping_now(int sync_id);
extern bool retl_sync_keep(int sync_id);
extern void retl_sync_release(int sync_id);
extern bool retl_sync_table_ready(RetlSync *sync);
extern bool retl_sync_row_ready(int sync_id);

#endif
