/*
 * queue_insert.h: changes written into retl.queue without the executor
 * (see queue_insert.c).
 */
#ifndef RETL_QUEUE_INSERT_H
#define RETL_QUEUE_INSERT_H

#include "utils/jsonb.h"

extern bool retl_queue_insert(int sync_id, char op, Jsonb *key);

typedef struct RetlQueueWriter RetlQueueWriter;

extern RetlQueueWriter *retl_queue_writer_open(Oid as_user);
extern void retl_queue_writer_ids(RetlQueueWriter *w, int64 *ids, int n);
extern void retl_queue_writer_put(RetlQueueWriter *w, int64 id, int sync_id, char op,
								  Jsonb *key, Jsonb *data);
extern void retl_queue_writer_close(RetlQueueWriter *w);

#endif
