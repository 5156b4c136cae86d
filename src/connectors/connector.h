/*
 * connector.h: the interface every destination kind implements.
 *
 * A destination's kind names a connector: a struct of callbacks, as
 * PostgreSQL's FdwRoutine or OutputPluginCallbacks are.  The engine
 * (claim, per-key order, retries, splitting, dead letters, rates, stats)
 * calls only through it and knows no API's details; a connector knows only
 * its API's shape.  Adding one is a file in src/connectors/ and a line in
 * registry.c (README: "Writing a connector").
 *
 * Where each callback runs:
 *   check_*      at creation, in the creating backend (errors: ereport);
 *   build        in the worker's claim transaction, SPI connected, no
 *                network I/O: fills the request (url, method, headers,
 *                body) from req->records;
 *   read_answer  in the worker's outcome transaction, SPI connected, after
 *                the request finished: one outcome per record.
 */
#ifndef RETL_CONNECTOR_H
#define RETL_CONNECTOR_H

#include "utils/jsonb.h"

#include "delivery/http.h"
#include "sync/sync.h"

/* What a sync's records carry, known once its source is (check_source). */
typedef struct RetlSource
{
	int			nkeys;
	char	  **keys;			/* the key's columns */
	int			nfields;
	char	  **fields;			/* the fields of a record's data, as mapped */
	bool		audience;		/* an audience's membership: data is the key */
} RetlSource;

typedef struct RetlConnector
{
	const char *kind;

	/*
	 * Options beyond the engine's own (headers, auth, batch_size, ...; see
	 * the README), NULL-terminated: a destination's (the account) and a
	 * sync's (the target).  Other keys are refused at creation.
	 */
	const char *const *destination_options;
	const char *const *sync_options;

	/* the API's base URL when a destination gives none (NULL: it must) */
	const char *default_url;

	/*
	 * Or that URL computed from the destination's options (optional; NULL
	 * when it cannot tell), e.g. Mailchimp's data centre, which its API
	 * key names.  Runs at creation, SPI connected (retl_secret_lookup).
	 */
	char	   *(*default_url_for) (Jsonb *options);

	/*
	 * Where the API's OAuth 2.0 token endpoint is, when a destination's
	 * oauth2 auth gives no token_url: a path under the destination's url,
	 * or a whole URL (NULL: it must give one)
	 */
	const char *default_token_path;

	/* modes a sync to it may have, e.g. "upsert, append" */
	const char *modes;

	/* limits: most records and body bytes in a request; defaults */
	int			max_records;
	int			max_bytes;
	double		default_rate_limit; /* requests per second, 0: none */
	int			default_batch_size; /* records a request, 0: one */
	int			default_max_concurrency;

	/*
	 * A 400, 413 or 422 answer to a batch is not halved to find the record
	 * at fault (the engine's rule), but read by read_answer like any other:
	 * for an API whose every error is a 400 (Graph's throttling, an
	 * expired token).
	 */
	bool		no_split;

	/*
	 * A resync replaces the destination's whole set (optional): the
	 * resync's rows come as records of op 'r', in batches sent one at a
	 * time, each with req->replace saying its place; the sync's other
	 * changes wait until the replace is over, and those queued before it
	 * are dropped (it supersedes them).  An empty result comes instead as
	 * deletes (op 'd') of every key the sync keeps an id for
	 * (models/empty_replace.c): a connector removes by its id.
	 */
	bool		replaces;

	/*
	 * The sync's deletes (or an audience's exits) go by the destination's
	 * id kept for the key (optional; NULL: never).  True: the engine marks
	 * every key it sends the destination, id or not, before sending it
	 * (sync/ids.c), and a delete of a key neither kept nor marked is one
	 * the destination never got (the connector sets nothing_to_send).
	 */
	bool		(*deletes_need_id) (RetlSync *sync);

	/*
	 * Check the connector's own options (optional).  check_sync sees the
	 * sync's options, its mode, its destination's options and, for
	 * expressions, the role they will run as.
	 */
	void		(*check_destination) (Jsonb *options);
	void		(*check_sync) (Jsonb *options, const char *mode, Jsonb *dest_options,
							   Oid owner);

	/*
	 * Check the sync's source once it is known (optional): what its
	 * records will carry.
	 */
	void		(*check_source) (Jsonb *options, const struct RetlSource *source);

	/* Fill in the request for req->records (required). */
	void		(*build) (RetlRequest *req, RetlSync *sync);

	/*
	 * Set req->records[i].outcome (and .message) for each record from the
	 * answer (optional: NULL is the HTTP status rule, the same for every
	 * record: 2xx delivered; a connection error, 408, 429 or 5xx retried;
	 * else dead-lettered).  A record may be given the destination's id
	 * for its key (.remember_id), kept with the outcome.  An API that says
	 * in its body what others say with a status may set req->renew_token
	 * (the OAuth 2.0 token was refused: renewed once, records retried, as
	 * for a 401) and req->pause_ms (its rate limit was hit: the
	 * destination waits that long, as for a 429 with Retry-After).
	 */
	void		(*read_answer) (RetlRequest *req, RetlSync *sync);

	/*
	 * Jobs (optional; both or neither).  read_answer may put records into
	 * a job the answer names (retl_job_start: their outcome
	 * RETL_OUTCOME_JOB, each with a job_ref naming it in the job); the
	 * worker then checks the job on a schedule, with no transaction open:
	 * build_job fills in req (req->job, req->records: the job's records
	 * still in it) with the job's next request, as build does; read_job
	 * reads its answer into an outcome per record (RETL_OUTCOME_JOB: still
	 * in the job) and may change req->job's state, status and
	 * check_after_ms.  The job ends when none of its records is left in
	 * it, or after retl.max_job_age (its records are then retried).
	 */
	void		(*build_job) (RetlRequest *req, RetlSync *sync);
	void		(*read_job) (RetlRequest *req, RetlSync *sync);
} RetlConnector;

extern const RetlConnector *retl_connector(const char *kind);
extern const RetlConnector *retl_connector_or_null(const char *kind);
extern char *retl_connector_kinds(void);
extern void retl_status_outcomes(RetlRequest *req);
extern bool retl_source_has_field(const RetlSource *source, const char *field);
extern void retl_source_needs_field(const RetlSource *source, const char *option, const char *field);

/* the connectors (registry.c lists them) */
extern const RetlConnector retl_webhook_connector;
extern const RetlConnector retl_http_connector;
extern const RetlConnector retl_slack_connector;
extern const RetlConnector retl_hubspot_connector;
extern const RetlConnector retl_salesforce_connector;
extern const RetlConnector retl_marketo_connector;
extern const RetlConnector retl_klaviyo_connector;
extern const RetlConnector retl_meta_audiences_connector;
extern const RetlConnector retl_google_ads_connector;
extern const RetlConnector retl_mailchimp_connector;
extern const RetlConnector retl_segment_connector;
extern const RetlConnector retl_iterable_connector;
extern const RetlConnector retl_braze_connector;
extern const RetlConnector retl_customerio_connector;


#endif
