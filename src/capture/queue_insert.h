/*
 * queue_insert.h: a captured change written into retl.queue without the
 * executor (see queue_insert.c).
 */
#ifndef RETL_QUEUE_INSERT_H
#define RETL_QUEUE_INSERT_H

#include "utils/jsonb.h"

extern bool retl_queue_insert(int sync_id, char op, Jsonb *key);

#endif
