/*
 * registry.c: the connectors, by destination kind.
 *
 * A new connector is a file in src/connectors/ defining a RetlConnector
 * (connector.h) and one line in the list below.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "connectors/connector.h"

static const RetlConnector *const connectors[] = {
	&retl_webhook_connector,
	&retl_http_connector,
	&retl_slack_connector,
	&retl_hubspot_connector,
	&retl_salesforce_connector,
	&retl_marketo_connector,
	&retl_klaviyo_connector,
	&retl_meta_audiences_connector,
	&retl_google_ads_connector,
	&retl_mailchimp_connector,
	&retl_segment_connector,
	&retl_iterable_connector,
	&retl_braze_connector,
	&retl_customerio_connector,
	NULL
};

/* The connector of a kind, or NULL. */
const RetlConnector *
retl_connector_or_null(const char *kind)
{
	for (int i = 0; kind != NULL && connectors[i] != NULL; i++)
		if (strcmp(connectors[i]->kind, kind) == 0)
			return connectors[i];
	return NULL;
}

/* "webhook, http, ...": the kinds there are. */
char *
retl_connector_kinds(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; connectors[i] != NULL; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", connectors[i]->kind);
	return buf.data;
}

/* The connector of a kind; an error for a kind there is none of. */
const RetlConnector *
retl_connector(const char *kind)
{
	const RetlConnector *c = retl_connector_or_null(kind);

	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown destination kind \"%s\"", kind ? kind : ""),
				 errhint("Supported kinds: %s.", retl_connector_kinds())));
	return c;
}

/*
 * The engine's rule for an answer, the same for every record: 2xx
 * delivered; a connection error, 408, 429 or 5xx retried; any other
 * status dead-lettered.
 */
void
retl_status_outcomes(RetlRequest *req)
{
	RetlOutcome o;

	if (req->curl_code != CURLE_OK)
		o = RETL_OUTCOME_RETRY;
	else if (req->status >= 200 && req->status < 300)
		o = RETL_OUTCOME_DELIVERED;
	else if (req->status == 408 || req->status == 429 || req->status >= 500)
		o = RETL_OUTCOME_RETRY;
	else
		o = RETL_OUTCOME_DEAD;
	for (int i = 0; i < req->nrecords; i++)
		req->records[i].outcome = o;
}

/* Whether the sync's records carry a field. */
bool
retl_source_has_field(const RetlSource *source, const char *field)
{
	for (int i = 0; i < source->nfields; i++)
		if (strcmp(source->fields[i], field) == 0)
			return true;
	return false;
}

/*
 * At creation: a connector that reads the value of one field of each
 * record (an id property, a lookup field) makes sure the records carry it.
 */
void
retl_source_needs_field(const RetlSource *source, const char *option, const char *field)
{
	StringInfoData have;

	if (retl_source_has_field(source, field))
		return;
	initStringInfo(&have);
	for (int i = 0; i < source->nfields; i++)
		appendStringInfo(&have, "%s%s", i > 0 ? ", " : "", source->fields[i]);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" names field \"%s\", which the sync's records do not carry", option, field),
			 errdetail("Their fields are: %s.", have.data),
			 errhint("Map a column to \"%s\" in the sync's mapping, e.g. {\"column\": \"%s\"}.", field, field)));
}
