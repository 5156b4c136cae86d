/*
 * diff.h: diff capture of scheduled syncs.
 */
#ifndef RETL_DIFF_H
#define RETL_DIFF_H

#include "queue/queue.h"

typedef struct RetlRunCounts
{
	int64		rows;			/* rows in the result */
	int64		added;
	int64		changed;
	int64		removed;
	int64		queued;			/* records queued for delivery */
} RetlRunCounts;

extern void retl_diff_run(RetlSync *sync, bool send, bool replace, RetlRunCounts *counts);
extern void retl_audience_refresh(int audience_id);

#endif
