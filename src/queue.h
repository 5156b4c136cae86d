/*
 * queue.h: the change queue, seen from the worker.
 */
#ifndef RETL_QUEUE_H
#define RETL_QUEUE_H

#include "http.h"

/* A sync and its destination, as the worker needs them for one pass. */
typedef struct RetlSync
{
	int			id;
	char	   *name;
	char		mode;			/* 'u' upsert, 'a' append */
	Oid			relid;
	int			nkeys;
	int16	   *key_attnums;
	char	   *mapping;		/* JSON object text, or NULL */
	bool		backfill_done;
	char	   *backfill_cursor;	/* JSON array text, or NULL */
	char	   *kind;
	char	   *url;
	char	   *headers;		/* JSON object text */
	int			timeout_ms;
	int			batch_size;
	int			max_attempts;
} RetlSync;

extern void retl_queue_recover(void);
extern List *retl_queue_load_syncs(void);
extern RetlRequest *retl_queue_claim(RetlSync *sync);
extern void retl_queue_record(RetlRequest *req);
extern void retl_queue_sync_error(int sync_id, const char *message);
extern char *retl_queue_instance_id(void);

#endif
