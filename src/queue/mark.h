/*
 * mark.h: where the scan of each sync's queue starts (see mark.c).
 */
#ifndef RETL_MARK_H
#define RETL_MARK_H

#include "datatype/timestamp.h"
#include "utils/snapshot.h"

extern int64 retl_mark_start(int sync_id, TimestampTz now);
extern void retl_mark_advance(int sync_id, Snapshot snap, bool quiet, int64 from,
							  int64 last_id, int64 next,
							  int64 park_from, TimestampTz park_until);
extern void retl_mark_rewind(int sync_id, int64 id);
extern bool retl_mark_parked(int sync_id);
extern void retl_mark_idle(int sync_id, uint32 gen, TimestampTz now);
extern void retl_mark_wake(int sync_id);
extern bool retl_mark_is_idle(int sync_id, uint32 gen, TimestampTz now);
extern bool retl_mark_begin_scan(int mark_id);

#endif
