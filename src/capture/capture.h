/*
 * capture.h: what trigger capture (capture_trigger.c) and logical capture
 * (decoder.c) share.
 */
#ifndef RETL_CAPTURE_H
#define RETL_CAPTURE_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "utils/relcache.h"

/* the most key columns a captured sync may have */
#define RETL_CAPTURE_MAX_KEYS 32

extern bool retl_key_changed(int nkeys, const AttrNumber *attnums,
							 HeapTuple oldtup, HeapTuple newtup, TupleDesc desc);
extern uint64 retl_queue_table_keys(int sync_id, Oid cache_key, int nkeys,
									AttrNumber *attnums, Relation rel, Oid part,
									bool attached, char op);

#endif
