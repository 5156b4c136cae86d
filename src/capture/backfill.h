/*
 * backfill.h: queueing the rows a table had when its sync was created.
 */
#ifndef RETL_BACKFILL_H
#define RETL_BACKFILL_H

#include "queue/queue.h"
#include "utils/hsearch.h"

#define RETL_BACKFILL_CHUNK 1000
/*
 * keys a claim of a backfill sent straight from its table takes, at most,
 * and reads at a time, at least
 */
#define RETL_BACKFILL_RANGE_MAX 10000
#define RETL_BACKFILL_READ 256

extern bool retl_backfill_step(RetlSync *sync);
extern bool retl_backfill_direct(RetlSync *sync);
extern List *retl_backfill_claim(RetlSync *sync, int nbatches, HTAB *held, bool *more);

#endif
