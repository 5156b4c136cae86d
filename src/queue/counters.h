/*
 * counters.h: the delivered counts of retl.sync_stats (see counters.c).
 */
#ifndef RETL_COUNTERS_H
#define RETL_COUNTERS_H

extern void retl_counters_delivered(int sync_id, int64 n);
extern void retl_counters_fold(int sync_id);
extern void retl_counters_fold_due(void);

#endif
