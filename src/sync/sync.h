/*
 * sync.h: a sync's definition, as the worker reads it (see sync.c).
 */
#ifndef RETL_SYNC_H
#define RETL_SYNC_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

/* A sync and its destination, as the worker needs them for one pass. */
typedef struct RetlSync
{
	int			id;
	char	   *name;
	char		mode;			/* 'u' upsert, 'a' append, 'i' insert,
								 * 'p' update, 'm' mirror */
	bool		diff;			/* diff capture (else trigger or logical) */
	bool		logical;		/* logical capture */
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
	int			resyncs;		/* how many times it was resynced (retl_resync) */
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
	char	   *auth;			/* the destination's auth option (JSON), or NULL */
	char	   *dest_options;	/* all the destination's options (JSON) */
	char	   *options;		/* the sync's options (JSON): its connector's target */
} RetlSync;

extern List *retl_sync_load(int only_id);
extern bool retl_sync_has_resyncs(void);
extern List *retl_sync_active(uint64 gen, TimestampTz now);
extern List *retl_sync_kept(uint64 gen, TimestampTz now, bool *kept);
extern void retl_sync_reset_caches(void);

#endif
