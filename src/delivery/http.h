/*
 * http.h: the HTTP engine of a worker (libcurl multi, driven from the
 * worker's wait loop).
 */
#ifndef RETL_HTTP_H
#define RETL_HTTP_H

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#define RETL_RESPONSE_EXCERPT 1024

/* What became of one record of a request (set from the answer). */
typedef enum RetlOutcome
{
	RETL_OUTCOME_UNSET = 0,
	RETL_OUTCOME_DELIVERED,		/* acknowledged: leaves the queue */
	RETL_OUTCOME_RETRY,			/* tried again with backoff */
	RETL_OUTCOME_DEAD,			/* dead-lettered at once */
	RETL_OUTCOME_AGAIN,			/* a step of it done (its id kept): sent again
								 * at once, not counted as an attempt */
	RETL_OUTCOME_JOB			/* in the request's job (req->job): in flight,
								 * its key held, until a check of the job
								 * tells */
} RetlOutcome;

/*
 * A job of the destination's holding records (a bulk import, an upload
 * job), whose outcome is known later (queue/jobs.c).
 */
typedef struct RetlJob
{
	int64		id;				/* in retl.job_store; 0: not yet */
	char	   *remote_id;		/* the destination's id for it */
	char	   *state;			/* the connector's (its next step), or NULL */
	char	   *status;			/* the destination's word for it, shown */
	int			checks;			/* check requests made so far */
	double		age_s;			/* since it was made */
	long		check_after_ms; /* the next check in this long (0: the
								 * engine's backoff) */
} RetlJob;

/* One record of a request: which queue rows it stands for. */
typedef struct RetlRecord
{
	int64		rid;			/* number part of the record id */
	char	   *record_id;		/* record id sent to the destination */
	int64	   *queue_ids;		/* queue rows this record covers */
	int			nqueue_ids;
	int			attempts;		/* attempts made before this one */
	char		op;				/* 'u' upsert, 'd' delete, 'i' insert, 'r' a
								 * row of a replace */
	char	   *key;			/* key as sent (JSON) */
	char	   *data;			/* data as sent (JSON), NULL for deletes */
	char	   *captured_at;	/* ISO 8601, UTC */
	double		first_attempt;	/* epoch seconds, 0 if never attempted */
	double		captured_epoch; /* epoch seconds of captured_at */
	uint64		key_hash;		/* jsonb_hash_extended of the queue's key */
	char	   *unsent;			/* why it cannot be sent (dead-lettered
								 * alone), or NULL */
	bool		nothing_to_send;	/* the destination has nothing to do for
									 * it: done without a request */
	char	   *known_id;		/* the destination's id for the key, if kept */
	bool		may_have;		/* the key was sent to the destination, id or
								 * not (sync/ids.c): read with known_id */
	char	   *lookup;			/* what the destination finds the key's record
								 * by, when not the key (HubSpot: the
								 * id_property's value): set by a build from
								 * the data (kept with the mark), read back
								 * with known_id */
	bool		truncated;		/* its latest change is a TRUNCATE's: a row
								 * hidden from the owner now is a delete */
	char	   *job_ref;		/* what names it in its job (connector's) */
	Datum		raw_key;		/* a backfill's record not in the queue: its
								 * key as the queue keeps it (jsonb), else 0 */

	/* outcome, from the answer */
	RetlOutcome outcome;
	char	   *message;		/* why it failed, for a failed record (NULL:
								 * the request's error) */
	char	   *remember_id;	/* the destination's id for the key, to keep */
} RetlRecord;

/*
 * A batch of a replace: the destination's whole set replaced by a resync's
 * rows, sent as one session of numbered batches, the last one flagged.
 */
typedef struct RetlReplace
{
	int64		session;		/* the same for every batch of it */
	int			batch;			/* 1, 2, ... */
	bool		last;			/* no row of it is left after this one */
	int64		total;			/* rows in it */
} RetlReplace;

/*
 * One request in flight.  Everything but the curl handles lives in cxt,
 * which is deleted with the request.
 */
typedef struct RetlRequest
{
	MemoryContext cxt;
	int			sync_id;
	char	   *sync_name;
	int			resyncs;		/* the sync's count of resyncs when built */
	int			dest_id;
	int			max_attempts;
	int64		max_retry_age_ms;
	long		timeout_ms;
	bool		follow_redirects;
	bool		tls_verify;
	char	   *kind;			/* the destination's connector */
	const char *method;			/* HTTP method; NULL: POST */
	bool		keep_response;	/* the whole answer is read (a connector reads it) */
	int			auth_generation;	/* of the OAuth token it carries, 0: none */
	RetlJob    *job;			/* the job it checks, or that its answer made */
	RetlReplace *replace;		/* a batch of a replace, or NULL */
	char	   *url;
	StringInfoData body;
	struct curl_slist *headers;
	List	   *secrets;		/* secret values used, redacted from errors */
	int			nrecords;
	RetlRecord *records;
	bool		ids_read;		/* known_id and may_have were read */
	int64		held_rows;		/* queue rows counted as held (claim.c) */
	struct RetlRange *range;	/* the backfill's range it sends, or NULL */
	TimestampTz started_at;

	/* outcome */
	CURL	   *easy;
	CURLcode	curl_code;
	char		errbuf[CURL_ERROR_SIZE];
	long		status;
	StringInfoData response;	/* its first capture bytes */
	int			capture;		/* the excerpt, and room to redact across its end */
	long		retry_after_ms; /* -1 when the response had none */
	bool		renew_token;	/* the answer's body refused the OAuth token */
	long		pause_ms;		/* the answer's body asks the destination to
								 * wait this long (0: no) */
	size_t		response_bytes; /* read so far, up to response_limit */
	size_t		response_limit; /* the longest answer read (write_cb) */
	struct curl_slist *resolve; /* retl.test_resolve entries */
	char		refused[CURL_ERROR_SIZE];	/* why retl refused a connection */
} RetlRequest;

extern void retl_http_init(void);
extern void retl_http_start(RetlRequest *req);
extern void retl_http_wait(long timeout_ms, uint32 wait_event_info);
extern void retl_http_poll(long ms, uint32 wait_event_info);
extern RetlRequest *retl_http_next_done(void);
extern int	retl_http_in_flight(void);
extern List *retl_http_abandon(void);
extern bool retl_http_done_ok(void);
extern bool retl_http_answered(void);
extern void retl_http_free(RetlRequest *req);
extern RetlRequest *retl_http_copy(RetlRequest *req, int first, int n);
extern char *retl_http_redact(RetlRequest *req, const char *text);
extern char *retl_http_excerpt(RetlRequest *req);

#endif
