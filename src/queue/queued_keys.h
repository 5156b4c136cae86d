/*
 * queued_keys.h: the keys a backfilling sync's queue has held (see
 * queued_keys.c).
 */
#ifndef RETL_QUEUED_KEYS_H
#define RETL_QUEUED_KEYS_H

#include "sync/sync.h"

/*
 * distinct keys kept for one sync, at most (by their layout, about 90
 * bytes each for an integer key)
 */
#define RETL_QUEUED_KEYS_MAX 250000

extern void retl_queued_keys_read(RetlSync *sync);
extern bool retl_queued_keys_has(RetlSync *sync, Datum key, uint64 hash);
extern void retl_queued_keys_forget(int sync_id);
extern void retl_queued_keys_keep_only(List *syncs, uint64 gen);

#endif
