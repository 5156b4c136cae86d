/*
 * stats.h: live delivery statistics of the syncs, in shared memory.
 */
#ifndef RETL_STATS_H
#define RETL_STATS_H

#include "delivery/http.h"

extern void retl_stats_init(void);
extern void retl_stats_rows_held(RetlRequest *req, int64 n);
extern void retl_stats_request_started(RetlRequest *req);
extern void retl_stats_request_done(RetlRequest *req, bool delivered);
extern void retl_stats_publish(Oid dboid);
extern void retl_stats_forget(Oid dboid);

#endif
