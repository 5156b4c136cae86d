/*
 * ranges.h: a backfill's ranges of keys in flight, and the cursor they
 * advance (see ranges.c).
 */
#ifndef RETL_RANGES_H
#define RETL_RANGES_H

#include "delivery/http.h"
#include "sync/sync.h"

typedef struct RetlBackfill RetlBackfill;
typedef struct RetlRange RetlRange;

extern RetlBackfill *retl_ranges_of(RetlSync *sync);
extern bool retl_ranges_settle(RetlBackfill *b, RetlSync *sync);
extern const char *retl_ranges_ahead(RetlBackfill *b);
extern bool retl_ranges_read_all(RetlBackfill *b);
extern RetlRange *retl_range_new(void);
extern void retl_range_claimed(RetlBackfill *b, RetlRange *range, const char *end, bool last);
extern void retl_range_failed(RetlRange *range);
extern bool retl_ranges_settle_due(RetlBackfill *b);
extern void retl_ranges_forget(int sync_id);
extern bool retl_ranges_take_turn(RetlSync *sync);
extern List *retl_ranges_syncs(void);
extern void retl_range_hold(RetlRequest *req);

#endif
