/*
 * run_queue.h: a diff run's changes queued as its statement returns them
 * (see run_queue.c).
 */
#ifndef RETL_RUN_QUEUE_H
#define RETL_RUN_QUEUE_H

typedef struct RetlRunQueue RetlRunQueue;

extern RetlRunQueue *retl_run_queue_begin(int sync_id, const char *ops, int64 expected);
extern bool retl_run_queue_put(RetlRunQueue *q, char op, Datum key, Datum data, bool data_null);
extern void retl_run_queue_undo(RetlRunQueue *q);
extern int64 retl_run_queue_end(RetlRunQueue *q);

#endif
