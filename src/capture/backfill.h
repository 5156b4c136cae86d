/*
 * backfill.h: queueing the rows a table had when its sync was created.
 */
#ifndef RETL_BACKFILL_H
#define RETL_BACKFILL_H

#include "queue/queue.h"

#define RETL_BACKFILL_CHUNK 1000

extern bool retl_backfill_step(RetlSync *sync);

#endif
