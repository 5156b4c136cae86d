/*
 * http_check.c: where a request of the HTTP engine (http.c) may go.
 *
 * libcurl's callbacks apply netcheck.c's rules: the open-socket callback
 * sees every address a connection is about to be opened to, after DNS
 * resolution; the pre-request callback sees the URL of every request
 * (each redirect hop too) and the address of the connection it goes
 * over, reused or not.  The close-socket callback keeps the set of
 * watched sockets (watch.c) in step with the connections libcurl opens
 * here.  A refusal is recorded in the request (req->refused) and libcurl
 * ends the transfer; no error ever leaves a callback.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <unistd.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#include "base/guc.h"
#include "delivery/http.h"
#include "delivery/http_check.h"
#include "delivery/netcheck.h"
#include "delivery/watch.h"

/*
 * Every connection libcurl opens, after DNS resolution: refuse the
 * addresses netcheck.c refuses.
 */
curl_socket_t
retl_http_opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	RetlRequest *req = (RetlRequest *) clientp;
	const char *why = retl_address_refused(&address->addr);
	curl_socket_t fd;

	if (why != NULL)
	{
		char		text[INET6_ADDRSTRLEN] = "?";

		if (address->family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *) &address->addr)->sin_addr,
					  text, sizeof(text));
		else if (address->family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &address->addr)->sin6_addr,
					  text, sizeof(text));
		snprintf(req->refused, sizeof(req->refused),
				 "connecting to %s refused: it is %s (see retl.allow_private_destinations)",
				 text, why);
		return CURL_SOCKET_BAD;
	}
	fd = socket(address->family, address->socktype, address->protocol);
	if (fd != CURL_SOCKET_BAD)
		retl_watch_opened(fd);
	return fd;
}

/*
 * Every connection's socket libcurl closes (opened by retl_http_opensocket_cb): the
 * set of watched sockets must not keep it (watch.c).  Its client pointer
 * is not used: the connection may outlive the request that opened it.
 */
int
retl_http_closesocket_cb(void *clientp, curl_socket_t fd)
{
	retl_watch_closed(fd);
	return close(fd);
}

/*
 * The last URL requested and its host, kept: a sync's requests go to one
 * URL (a webhook's) or a few, often one after the other, and parsing each
 * one again was 2% of the worker's CPU at batch_size 1.  Only one is kept:
 * requests that alternate between URLs parse each as before.
 */
static char *last_url = NULL;
static char *last_host = NULL;

/* A copy in TopMemoryContext, or NULL when memory is short (no error). */
static char *
keep_string(const char *s)
{
	size_t		len = strlen(s) + 1;
	char	   *copy = MemoryContextAllocExtended(TopMemoryContext, len, MCXT_ALLOC_NO_OOM);

	if (copy != NULL)
		memcpy(copy, s, len);
	return copy;
}

/*
 * The host of a URL, NULL with *error set when it does not parse: the
 * last one's when it is the same URL (not to be kept past the next call).
 */
static const char *
url_host(const char *url, const char **error)
{
	char	   *host;
	char	   *u;
	char	   *h;

	if (last_url != NULL && strcmp(url, last_url) == 0)
		return last_host;
	host = retl_url_host(url, error);
	if (host == NULL)
		return NULL;
	u = keep_string(url);
	h = keep_string(host);
	if (u == NULL || h == NULL)
	{
		/* not kept: parsed again next time */
		if (u != NULL)
			pfree(u);
		if (h != NULL)
			pfree(h);
		return host;
	}
	if (last_url != NULL)
	{
		pfree(last_url);
		pfree(last_host);
	}
	last_url = u;
	last_host = h;
	return host;
}

/*
 * Before every request, redirect hops included: its URL's host must be
 * allowed, and the connection's address too (it may be a reused one).
 * True to refuse it, with req->refused saying why.
 */
static bool
check_request(RetlRequest *req, const char *conn_primary_ip)
{
	char	   *url = NULL;
	const char *error = NULL;
	const char *host = NULL;
	const char *why = NULL;
	bool		refuse = true;

	if (req->sync_name != NULL)
		retl_test_fail_at("prereq", req->sync_name);

	/*
	 * (req->refused may already say why the open-socket callback refused
	 * another address of the same host: that is no reason to refuse this
	 * connection.)
	 */
	if (curl_easy_getinfo(req->easy, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK || url == NULL)
		error = "no URL";
	else
		host = url_host(url, &error);
	if (host == NULL)
		snprintf(req->refused, sizeof(req->refused), "request refused: %s", error);
	else if (!retl_host_allowed(host))
		snprintf(req->refused, sizeof(req->refused),
				 "request to host \"%s\" refused: it is not in retl.allowed_hosts", host);
	else
	{
		why = retl_text_address_refused(conn_primary_ip);
		if (why != NULL)
			snprintf(req->refused, sizeof(req->refused),
					 "connecting to %s refused: it is %s (see retl.allow_private_destinations)",
					 conn_primary_ip, why);
		refuse = why != NULL;
	}
	return refuse;
}

/*
 * libcurl's pre-request callback: check_request.  No error may leave a
 * libcurl callback (a longjmp through libcurl's frames would leave its
 * state broken): one raised there (memory short while parsing the URL or
 * retl.allowed_hosts) refuses the request, with the error's message.
 */
int
retl_http_prereq_cb(void *clientp, char *conn_primary_ip, char *conn_local_ip,
					int conn_primary_port, int conn_local_port)
{
	RetlRequest *req = (RetlRequest *) clientp;
	MemoryContext old = MemoryContextSwitchTo(req->cxt);
	volatile bool refuse = true;
	uint32		holdoff = InterruptHoldoffCount;
	uint32		cancel_holdoff = QueryCancelHoldoffCount;
	uint32		crit = CritSectionCount;

	PG_TRY();
	{
		refuse = check_request(req, conn_primary_ip);
	}
	PG_CATCH();
	{
		/* (an error resets these; libcurl's caller had them so) */
		InterruptHoldoffCount = holdoff;
		QueryCancelHoldoffCount = cancel_holdoff;
		CritSectionCount = crit;
		MemoryContextSwitchTo(req->cxt);
		if (geterrcode() == ERRCODE_OUT_OF_MEMORY)
		{
			/* nothing allocated: that could fail again, outside PG_TRY */
			FlushErrorState();
			snprintf(req->refused, sizeof(req->refused), "request refused: out of memory");
		}
		else
		{
			ErrorData  *edata = CopyErrorData();

			FlushErrorState();
			snprintf(req->refused, sizeof(req->refused), "request refused: %s", edata->message);
			FreeErrorData(edata);
		}
		refuse = true;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return refuse ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}
