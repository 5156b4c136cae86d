/*
 * ahead.h: requests built ahead of their destination's free slots (see
 * ahead.c).
 */
#ifndef RETL_AHEAD_H
#define RETL_AHEAD_H

#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "delivery/http.h"

extern void retl_ahead_add(RetlRequest *req, uint64 gen);
extern void retl_ahead_start(TimestampTz now, long *wait_ms);
extern void retl_ahead_release(List *syncs, uint64 gen);
extern int	retl_ahead_count(void);

#endif
