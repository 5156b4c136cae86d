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
	char		mode;			/* 'u' upsert, 'a' append, 'i' insert,
								 * 'p' update, 'm' mirror */
	bool		diff;			/* diff capture (else trigger capture) */
	Oid			relid;			/* source table, InvalidOid for a query */
	char	   *query;			/* source query, NULL for a table */
	char	   *search_path;	/* the query's (its creator's), or NULL */
	int			audience_id;	/* source 'audience:NAME', else 0 */
	Oid			owner;			/* role the source is read as (owner.c, diff.c) */
	int			nkeys;
	int16	   *key_attnums;	/* trigger capture */
	char	  **key_names;		/* diff capture: key columns of the result */
	char	   *mapping;		/* JSON object text, or NULL */
	bool		backfill_done;
	char	   *backfill_cursor;	/* JSON array text, or NULL */
	int			dest_id;
	char	   *dest_name;
	bool		may_send;		/* the owner may send to it (retl._may_send) */
	char	   *kind;
	char	   *url;
	char	   *headers;		/* JSON object text */
	int			timeout_ms;
	int			batch_size;
	int			max_attempts;
	int64		max_retry_age_ms;
	int			max_concurrency;
	double		rate_limit;		/* requests/s, 0: none */
	int			linger_ms;
	int			max_batch_bytes;
	bool		follow_redirects;
	bool		tls_verify;
	char	   *signing_secret; /* name of a secret, or NULL */
} RetlSync;

extern void retl_queue_recover(void);
extern void retl_queue_analyze_if_stale(int retry_ms);
extern bool retl_queue_stats_suspect(void);
extern List *retl_queue_load_syncs(int only_id);
extern bool retl_queue_ready(RetlSync *sync, long *wait_ms);
extern RetlRequest *retl_queue_claim(RetlSync *sync);
extern Datum retl_queue_id_array(RetlRecord *records, int nrecords);
extern void retl_queue_hold(RetlRequest *req);
extern void retl_queue_backoff(int sync_id, uint64 key_hash, TimestampTz until);
extern void retl_queue_load_backoff(void);
extern void retl_queue_release(RetlRequest *req, int from);
extern void retl_queue_record(RetlRequest *req);
extern void retl_queue_dead_letter_unsent(RetlRequest *req, RetlRecord *r);
extern void retl_queue_sync_error(int sync_id, const char *message);
extern char *retl_queue_instance_id(void);

#endif
