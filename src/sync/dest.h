/*
 * dest.h: per-destination limits of a worker: concurrency, pauses, rate.
 */
#ifndef RETL_DEST_H
#define RETL_DEST_H

#include "utils/timestamp.h"

#include "sync/sync.h"

extern bool retl_dest_can_send(RetlSync *sync, TimestampTz now, long *wait_ms);
extern int	retl_dest_slots(RetlSync *sync, TimestampTz now, long *wait_ms);
extern void retl_dest_sent(int dest_id);
extern void retl_dest_done(int dest_id);
extern int	retl_dest_in_flight(int dest_id);
extern void retl_dest_pause(int dest_id, long ms);

#endif
