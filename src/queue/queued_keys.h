/*
 * queued_keys.h: the keys a backfilling sync's queue has held (see
 * queued_keys.c).
 */
#ifndef RETL_QUEUED_KEYS_H
#define RETL_QUEUED_KEYS_H

#include "sync/sync.h"

/* distinct keys kept for one sync, at most */
#define RETL_QUEUED_KEYS_MAX 500000

extern void retl_queued_keys_read(RetlSync *sync);
extern bool retl_queued_keys_has(RetlSync *sync, Datum key, uint64 hash);
extern void retl_queued_keys_forget(int sync_id);

#endif
