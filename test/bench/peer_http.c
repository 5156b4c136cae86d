/*
 * peer_http.c: the shape of pgsql-http's http_post, for make bench only.
 *
 * pgsql-http and pg_net are not in Debian's archive and cannot be
 * downloaded here, so the bench measures what pgsql-http does for each
 * call of http_post with http.keepalive on: one libcurl easy handle kept
 * by the session (its connection reused), the request's options set
 * again, the POST performed synchronously in the calling statement, the
 * answer's headers and body collected into memory.  It builds no
 * http_response row (pgsql-http does), so it is if anything a little
 * faster than the real extension: a fair lower bound for retl to beat.
 *
 * Built by test/bench.sh in its work directory; never installed.
 *
 *   bench_http_post(url text, body text) RETURNS integer   -- the status
 */
#include "postgres.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(bench_http_post);

static CURL *handle = NULL;
static struct curl_slist *headers = NULL;

/* libcurl's write and header callbacks: append to a StringInfo */
static size_t
collect(char *data, size_t size, size_t nmemb, void *arg)
{
	appendBinaryStringInfo((StringInfo) arg, data, (int) (size * nmemb));
	return size * nmemb;
}

#define SETOPT(opt, value) \
	do { \
		CURLcode	rc = curl_easy_setopt(handle, (opt), (value)); \
		if (rc != CURLE_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION), \
					 errmsg("curl_easy_setopt(%s): %s", #opt, curl_easy_strerror(rc)))); \
	} while (0)

Datum
bench_http_post(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *body = PG_GETARG_TEXT_PP(1);
	StringInfoData content;
	StringInfoData head;
	CURLcode	rc;
	long		status = 0;

	if (handle == NULL)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK ||
			(handle = curl_easy_init()) == NULL ||
			(headers = curl_slist_append(NULL, "Content-Type: application/json")) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("could not set up libcurl")));
	}
	else
		curl_easy_reset(handle);	/* as pgsql-http: options anew, connection kept */

	initStringInfo(&content);
	initStringInfo(&head);
	SETOPT(CURLOPT_URL, url);
	SETOPT(CURLOPT_HTTPHEADER, headers);
	SETOPT(CURLOPT_POSTFIELDS, VARDATA_ANY(body));
	SETOPT(CURLOPT_POSTFIELDSIZE, (long) VARSIZE_ANY_EXHDR(body));
	SETOPT(CURLOPT_WRITEFUNCTION, collect);
	SETOPT(CURLOPT_WRITEDATA, &content);
	SETOPT(CURLOPT_HEADERFUNCTION, collect);
	SETOPT(CURLOPT_HEADERDATA, &head);
	SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(CURLOPT_TIMEOUT_MS, 30000L);
	SETOPT(CURLOPT_NOSIGNAL, 1L);

	rc = curl_easy_perform(handle);
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("POST %s failed: %s", url, curl_easy_strerror(rc))));
	rc = curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("curl_easy_getinfo: %s", curl_easy_strerror(rc))));
	PG_RETURN_INT32((int32) status);
}
