/*
 * queued_keys.h: the keys a backfilling sync's queue has held (see
 * queued_keys.c).
 */
#ifndef RETL_QUEUED_KEYS_H
#define RETL_QUEUED_KEYS_H

#include "sync/sync.h"

extern void retl_queued_keys_read(RetlSync *sync);
extern bool retl_queued_keys_has(RetlSync *sync, Datum key, uint64 hash);
extern void retl_queued_keys_forget(int sync_id);
extern void retl_queued_keys_keep_only(List *syncs, uint64 gen);

#endif
