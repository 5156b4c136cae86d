/*
 * stream.h: logical capture, the worker's side (see stream.c).
 */
#ifndef RETL_STREAM_H
#define RETL_STREAM_H

#include "access/xlogdefs.h"
#include "nodes/pg_list.h"

extern char *retl_slot_name(void);
extern XLogRecPtr retl_stream_stage(bool *found, List **errors);
extern void retl_stream_confirm(XLogRecPtr target);
extern void retl_stream_release(void);
extern void retl_stream_drop_slot(bool unused_only);
extern bool retl_stream_due(void);
extern long retl_stream_wait_ms(void);
extern void retl_stream_backoff(void);

#endif
