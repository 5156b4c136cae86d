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

	/* modes a sync to it may have, e.g. "upsert, append" */
	const char *modes;

	/* limits: most records and body bytes in a request; defaults */
	int			max_records;
	int			max_bytes;
	double		default_rate_limit; /* requests per second, 0: none */
	int			default_max_concurrency;

	/*
	 * Check the connector's own options (optional).  check_sync sees the
	 * sync's options, its mode, its destination's options and, for
	 * expressions, the role they will run as.
	 */
	void		(*check_destination) (Jsonb *options);
	void		(*check_sync) (Jsonb *options, const char *mode, Jsonb *dest_options,
							   Oid owner);

	/* Fill in the request for req->records (required). */
	void		(*build) (RetlRequest *req, RetlSync *sync);

	/*
	 * Set req->records[i].outcome (and .message) for each record from the
	 * answer (optional: NULL is the HTTP status rule, the same for every
	 * record: 2xx delivered; a connection error, 408, 429 or 5xx retried;
	 * else dead-lettered).  A record may be given the destination's id
	 * for its key (.remember_id), kept with the outcome.
	 */
	void		(*read_answer) (RetlRequest *req, RetlSync *sync);
} RetlConnector;

extern const RetlConnector *retl_connector(const char *kind);
extern const RetlConnector *retl_connector_or_null(const char *kind);
extern char *retl_connector_kinds(void);
extern void retl_status_outcomes(RetlRequest *req);

/* the connectors (registry.c lists them) */
extern const RetlConnector retl_webhook_connector;
extern const RetlConnector retl_http_connector;
extern const RetlConnector retl_slack_connector;
extern const RetlConnector retl_hubspot_connector;


#endif
