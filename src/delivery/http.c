/*
 * http.c: the HTTP engine of a worker.
 *
 * One libcurl multi handle per worker, driven with the socket API: libcurl
 * tells us (CURLMOPT_SOCKETFUNCTION, CURLMOPT_TIMERFUNCTION) which sockets
 * to watch and when it next needs a timeout call, and retl_http_wait()
 * waits on those sockets and on the worker's latch together in one
 * WaitEventSet (kept between waits: watch.c), so SIGTERM, SIGHUP, commit
 * wake-ups and postmaster death are seen at once however slow the
 * destination is.
 *
 * No transaction is ever open here: requests are built from a batch claimed
 * and committed beforehand, and outcomes are recorded afterwards in a new
 * transaction (see queue.c).  Connections stay in the multi handle's cache
 * between requests (keep-alive).
 *
 * Where a request may go is checked by libcurl's callbacks (http_check.c;
 * netcheck.c has the rules): the open-socket callback sees every address
 * a connection is about to be opened to, after DNS resolution; the
 * pre-request callback sees the URL of every request (each redirect hop
 * too) and the address of the connection it goes over, reused or not.  No
 * proxy from the environment is used.  A response body longer than
 * retl.max_response_size (or twice the request and 4 kB a record, when
 * that is more: response_limit) fails the request.
 *
 * libcurl allocates with malloc: every header list is freed in
 * retl_http_free(); the easy handle is kept, reset, for a later request
 * as soon as its transfer is taken from libcurl; the rest of a request
 * lives in its memory context.
 * Callbacks never raise an error (a longjmp through libcurl would leave it
 * in a bad state); they record what went wrong in the request.
 */
#include "postgres.h"

#include <time.h>

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/latch.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "base/guc.h"
#include "base/version.h"
#include "delivery/http.h"
#include "delivery/http_check.h"
#include "delivery/redact.h"
#include "delivery/watch.h"

static CURLM *multi = NULL;
static TimestampTz curl_deadline = DT_NOEND;	/* when libcurl wants a timeout call */
static List *in_flight = NIL;	/* RetlRequest *, in TopMemoryContext */
static List *done = NIL;

/*
 * Easy handles of finished transfers, reset, for the next requests.  A
 * handle of its own per request had libcurl allocate and free its state
 * and buffers every time: libcurl alone against nginx
 * (test/bench/curl_client.c), 8 in flight, took 18.5-22.6 us of CPU a
 * request with a new handle each, 17.3-18.7 with handles reused.
 * curl_easy_reset() puts a handle back as curl_easy_init() made it
 * (every option, authentication state included) but for its buffers and
 * its TLS session cache: a reused handle may resume a TLS session with
 * the same host and port, which libcurl does only for the same TLS
 * settings.  (Connections and DNS answers are the multi handle's, shared
 * by every request before too.)  A finished transfer's handle goes back
 * to the pool when collect_finished takes it from libcurl, not when its
 * request is freed: answers wait to be recorded together (worker.c),
 * hundreds at a time with requests claimed ahead, and the handles they
 * kept overflowed the pool, so that most requests created a handle and
 * cleaned it up again (17,510 of 30,000 at batch_size 1 against nginx).
 * A handle that libcurl would not give back stays with its request, and
 * retl_http_free tries again or cleans it up.  At most EASY_POOL_SIZE are
 * kept; the rest are cleaned up.
 */
#define EASY_POOL_SIZE 64
static CURL *easy_pool[EASY_POOL_SIZE];
static int	easy_pooled = 0;

static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	/* (a socket refused fails that transfer) */
	return retl_watch_socket(fd, what) ? 0 : -1;
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	/* libcurl gives a delay from now; keep an absolute deadline */
	curl_deadline = timeout_ms < 0 ? DT_NOEND :
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/*
 * The longest answer a request reads: retl.max_response_size, or, for a
 * request that carries more, twice its body and 4 kB a record.  Answers
 * that echo the records they were sent (HubSpot's batch upserts return
 * each object with its properties) fit whatever a batch holds, and the
 * memory an answer takes stays bounded by what the worker sends.
 */
static size_t
response_limit(RetlRequest *req)
{
	size_t		limit = (size_t) retl_max_response_kb * 1024;
	size_t		echo = 0;

	if (req->body.data != NULL)
		echo = (size_t) req->body.len * 2 + (size_t) Max(req->nrecords, 0) * 4096;
	return Max(limit, echo);
}

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	RetlRequest *req = (RetlRequest *) userdata;
	size_t		len = size * nmemb;
	size_t		room = req->capture - req->response.len;

	req->response_bytes += len;
	if (req->response_bytes > req->response_limit)
	{
		if (req->response_limit == (size_t) retl_max_response_kb * 1024)
			snprintf(req->refused, sizeof(req->refused),
					 "the response is longer than retl.max_response_size (%d kB)",
					 retl_max_response_kb);
		else
			snprintf(req->refused, sizeof(req->refused),
					 "the response is longer than %zu kB (twice the request and 4 kB a record, above retl.max_response_size)",
					 req->response_limit / 1024);
		return 0;				/* libcurl ends the transfer */
	}
	/*
	 * Only an excerpt is kept; the rest is read and dropped.  Its buffer
	 * grows without raising an error (none may leave a libcurl callback):
	 * memory short ends the transfer.
	 */
	if (room > 0)
	{
		StringInfo	s = &req->response;
		size_t		n = Min(len, room);

		if ((size_t) s->len + n + 1 > (size_t) s->maxlen)
		{
			size_t		size = Min(Max((size_t) s->maxlen * 2, (size_t) s->len + n + 1),
								   (size_t) req->capture + 1);
			char	   *data = retl_test_fail_named("response-memory", req->sync_name) ? NULL :
				MemoryContextAllocExtended(req->cxt, size, MCXT_ALLOC_NO_OOM);

			if (data == NULL)
			{
				snprintf(req->refused, sizeof(req->refused),
						 "out of memory reading the response (%zu bytes kept)", (size_t) s->len);
				return 0;		/* libcurl ends the transfer */
			}
			memcpy(data, s->data, s->len + 1);
			pfree(s->data);
			s->data = data;
			s->maxlen = (int) size;
		}
		memcpy(s->data + s->len, ptr, n);
		s->len += (int) n;
		s->data[s->len] = '\0';
	}
	return len;
}

/* Retry-After: delay-seconds or an HTTP-date (RFC 9110, 10.2.3). */
static long
parse_retry_after(const char *value)
{
	char	   *end;
	long		secs;
	time_t		when;

	while (*value == ' ' || *value == '\t')
		value++;
	secs = strtol(value, &end, 10);
	if (end != value && (*end == '\0' || *end == '\r' || *end == '\n' || *end == ' '))
		return secs < 0 ? 0 : Min(secs, 86400L) * 1000;
	when = curl_getdate(value, NULL);
	if (when == -1)
		return -1;
	secs = (long) (when - time(NULL));
	return secs < 0 ? 0 : Min(secs, 86400L) * 1000;
}

static size_t
header_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	RetlRequest *req = (RetlRequest *) userdata;
	size_t		len = size * nitems;
	static const char name[] = "retry-after:";

	if (len > sizeof(name) - 1 && len < 256 &&
		pg_strncasecmp(buffer, name, sizeof(name) - 1) == 0)
	{
		char		value[256];

		memcpy(value, buffer + sizeof(name) - 1, len - (sizeof(name) - 1));
		value[len - (sizeof(name) - 1)] = '\0';
		req->retry_after_ms = parse_retry_after(value);
	}
	return len;
}

/* retl.test_resolve as a libcurl list (tests resolve names they choose). */
static struct curl_slist *
resolve_list(void)
{
	char	   *raw;
	List	   *entries;
	ListCell   *lc;
	struct curl_slist *list = NULL;

	if (retl_test_resolve == NULL || retl_test_resolve[0] == '\0')
		return NULL;
	raw = pstrdup(retl_test_resolve);
	if (!SplitGUCList(raw, ',', &entries))
		return NULL;
	foreach(lc, entries)
	{
		struct curl_slist *l = curl_slist_append(list, (char *) lfirst(lc));

		if (l == NULL)
		{
			curl_slist_free_all(list);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		}
		list = l;
	}
	return list;
}

#define MULTI_SETOPT(opt, val) \
	do { \
		CURLMcode	mc_ = curl_multi_setopt(multi, (opt), (val)); \
		if (mc_ != CURLM_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_INTERNAL_ERROR), \
					 errmsg("could not configure libcurl: %s", curl_multi_strerror(mc_)))); \
	} while (0)

#define EASY_SETOPT(h, opt, val) \
	do { \
		CURLcode	c_ = curl_easy_setopt((h), (opt), (val)); \
		if (c_ != CURLE_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_INTERNAL_ERROR), \
					 errmsg("could not set libcurl option %s: %s", #opt, curl_easy_strerror(c_)))); \
	} while (0)

/* Set up libcurl for this worker. */
void
retl_http_init(void)
{
	CURLcode	rc = curl_global_init(CURL_GLOBAL_ALL);

	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl: %s", curl_easy_strerror(rc))));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	MULTI_SETOPT(CURLMOPT_SOCKETFUNCTION, socket_cb);
	MULTI_SETOPT(CURLMOPT_TIMERFUNCTION, timer_cb);
	/* concurrency is bounded per destination by retl itself (dest.c) */
	MULTI_SETOPT(CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	/* HTTP/2 streams share one connection where the server offers it */
	MULTI_SETOPT(CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
}

/* A handle libcurl no longer has, reset into the pool, or cleaned up. */
static void
pool_easy(CURL *easy)
{
	if (easy_pooled < EASY_POOL_SIZE)
	{
		curl_easy_reset(easy);
		easy_pool[easy_pooled++] = easy;
	}
	else
		curl_easy_cleanup(easy);
}

/*
 * Take a request's handle, if it has one still, back from libcurl into the
 * pool (or clean it up, which also takes it out of the multi handle).
 */
static void
release_easy(RetlRequest *req)
{
	if (req->easy == NULL)
		return;
	if (multi != NULL && curl_multi_remove_handle(multi, req->easy) == CURLM_OK)
		pool_easy(req->easy);
	else
		curl_easy_cleanup(req->easy);
	req->easy = NULL;
}

/* Hand a built request (url, body, headers) to libcurl. */
void
retl_http_start(RetlRequest *req)
{
	CURL	   *easy;
	CURLMcode	mc;
	MemoryContext old;

	easy = easy_pooled > 0 ? easy_pool[--easy_pooled] : curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	req->easy = easy;
	req->status = 0;
	req->retry_after_ms = -1;
	req->renew_token = false;
	req->pause_ms = 0;
	req->errbuf[0] = '\0';
	req->refused[0] = '\0';
	req->response_bytes = 0;
	req->response_limit = response_limit(req);
	old = MemoryContextSwitchTo(req->cxt);
	initStringInfo(&req->response);
	/* read past the excerpt, so that a secret across its end is redacted whole */
	req->capture = Min(retl_redact_room(req->secrets, RETL_RESPONSE_EXCERPT), 1024 * 1024);
	if (req->keep_response)
		/* (whole, up to what one allocation holds: write_cb) */
		req->capture = (int) Min((Size) req->response_limit, MaxAllocSize - 1);
	MemoryContextSwitchTo(old);

	EASY_SETOPT(easy, CURLOPT_URL, req->url);
	EASY_SETOPT(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	EASY_SETOPT(easy, CURLOPT_PROXY, "");
	EASY_SETOPT(easy, CURLOPT_OPENSOCKETFUNCTION, retl_http_opensocket_cb);
	EASY_SETOPT(easy, CURLOPT_OPENSOCKETDATA, req);
	EASY_SETOPT(easy, CURLOPT_CLOSESOCKETFUNCTION, retl_http_closesocket_cb);
	EASY_SETOPT(easy, CURLOPT_CLOSESOCKETDATA, NULL);
	EASY_SETOPT(easy, CURLOPT_PREREQFUNCTION, retl_http_prereq_cb);
	EASY_SETOPT(easy, CURLOPT_PREREQDATA, req);
	if (req->follow_redirects)
	{
		EASY_SETOPT(easy, CURLOPT_FOLLOWLOCATION, 1L);
		EASY_SETOPT(easy, CURLOPT_MAXREDIRS, 5L);
		EASY_SETOPT(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
		/* a POST stays a POST, with its body */
		EASY_SETOPT(easy, CURLOPT_POSTREDIR, (long) CURL_REDIR_POST_ALL);
	}
	else
		EASY_SETOPT(easy, CURLOPT_FOLLOWLOCATION, 0L);
	if (retl_ca_file != NULL && retl_ca_file[0] != '\0')
		EASY_SETOPT(easy, CURLOPT_CAINFO, retl_ca_file);
	EASY_SETOPT(easy, CURLOPT_SSL_VERIFYPEER, req->tls_verify ? 1L : 0L);
	EASY_SETOPT(easy, CURLOPT_SSL_VERIFYHOST, req->tls_verify ? 2L : 0L);
	req->resolve = resolve_list();
	if (req->resolve != NULL)
		EASY_SETOPT(easy, CURLOPT_RESOLVE, req->resolve);
	EASY_SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
	if (req->method != NULL && strcmp(req->method, "GET") == 0)
		EASY_SETOPT(easy, CURLOPT_HTTPGET, 1L);
	else
	{
		/* POST with the body; other methods are a POST renamed, body kept */
		EASY_SETOPT(easy, CURLOPT_POST, 1L);
		EASY_SETOPT(easy, CURLOPT_POSTFIELDSIZE, (long) req->body.len);
		EASY_SETOPT(easy, CURLOPT_POSTFIELDS, req->body.data);
		if (req->method != NULL && strcmp(req->method, "POST") != 0)
			EASY_SETOPT(easy, CURLOPT_CUSTOMREQUEST, req->method);
	}
	EASY_SETOPT(easy, CURLOPT_HTTPHEADER, req->headers);
	EASY_SETOPT(easy, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	EASY_SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS, Min(req->timeout_ms, 10000L));
	EASY_SETOPT(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	/* HTTP/2 over TLS when ALPN offers it; wait for a connection to share */
	EASY_SETOPT(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
	EASY_SETOPT(easy, CURLOPT_PIPEWAIT, 1L);
	EASY_SETOPT(easy, CURLOPT_USERAGENT, RETL_USER_AGENT);
	EASY_SETOPT(easy, CURLOPT_WRITEFUNCTION, write_cb);
	EASY_SETOPT(easy, CURLOPT_WRITEDATA, req);
	EASY_SETOPT(easy, CURLOPT_HEADERFUNCTION, header_cb);
	EASY_SETOPT(easy, CURLOPT_HEADERDATA, req);
	EASY_SETOPT(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	EASY_SETOPT(easy, CURLOPT_PRIVATE, req);

	mc = curl_multi_add_handle(multi, easy);
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start a request: %s", curl_multi_strerror(mc))));
	old = MemoryContextSwitchTo(TopMemoryContext);
	in_flight = lappend(in_flight, req);
	MemoryContextSwitchTo(old);
	req->started_at = GetCurrentTimestamp();
}

/* Move finished transfers from libcurl to the done list. */
static void
collect_finished(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		RetlRequest *req = NULL;
		MemoryContext old;

		if (msg->msg != CURLMSG_DONE)
			continue;
		if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req) != CURLE_OK ||
			req == NULL)
			elog(ERROR, "libcurl returned a transfer retl did not start");
		req->curl_code = msg->data.result;
		/* retl's reason, rather than libcurl's "could not connect" */
		if (req->curl_code != CURLE_OK && req->refused[0] != '\0')
			strlcpy(req->errbuf, req->refused, sizeof(req->errbuf));
		if (req->curl_code == CURLE_OK &&
			curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status) != CURLE_OK)
			req->status = 0;
		if (curl_multi_remove_handle(multi, req->easy) != CURLM_OK)
			elog(WARNING, "could not remove a finished transfer from libcurl");
		else
		{
			pool_easy(req->easy);
			req->easy = NULL;
		}
		in_flight = list_delete_ptr(in_flight, req);
		old = MemoryContextSwitchTo(TopMemoryContext);
		done = lappend(done, req);
		MemoryContextSwitchTo(old);
	}
}

static void
socket_action(curl_socket_t fd, int flags)
{
	int			running;
	CURLMcode	mc = curl_multi_socket_action(multi, fd, flags, &running);

	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("libcurl failed: %s", curl_multi_strerror(mc))));
}

/*
 * Wait for the latch, a socket libcurl watches, libcurl's deadline or
 * timeout_ms, whichever comes first, then let libcurl make progress.  The
 * caller resets the latch.
 *
 * A WaitEventSet whose latch is already set returns at once without
 * looking at the sockets; under a steady stream of commits (each sets the
 * latch) libcurl would never hear from its sockets.  So when the latch is
 * set the sockets are polled on their own, without waiting.
 */
void
retl_http_wait(long timeout_ms, uint32 wait_event_info)
{
	WaitEvent	events[RETL_WATCH_MAX + 2];
	int			nevents;
	TimestampTz now = GetCurrentTimestamp();
	long		wait_ms = timeout_ms;

	if (curl_deadline != DT_NOEND)
	{
		long		secs;
		int			usecs;

		TimestampDifference(now, curl_deadline, &secs, &usecs);
		wait_ms = Min(wait_ms, secs * 1000 + (usecs + 999) / 1000);
	}

	if (MyLatch->is_set)
		nevents = retl_watch_count() > 0 ?
			retl_watch_wait(events, lengthof(events), false, 0, wait_event_info) : 0;
	else
		nevents = retl_watch_wait(events, lengthof(events), true, wait_ms, wait_event_info);

	for (int i = 0; i < nevents; i++)
	{
		int			flags = 0;

		if (!(events[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE)))
			continue;
		if (events[i].events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		socket_action(events[i].fd, flags);
	}

	/*
	 * libcurl's deadline (connect and transfer timeouts, and more) is a
	 * one-shot timer: clear it, and libcurl sets a new one if it needs to.
	 */
	if (curl_deadline != DT_NOEND && GetCurrentTimestamp() >= curl_deadline)
	{
		curl_deadline = DT_NOEND;
		socket_action(CURL_SOCKET_TIMEOUT, 0);
	}

	collect_finished();
}

/*
 * Let libcurl progress for ms without looking at the latch: a worker woken
 * by every commit of a busy writer would otherwise never sleep.
 */
void
retl_http_poll(long ms, uint32 wait_event_info)
{
	WaitEvent	events[RETL_WATCH_MAX + 2];
	int			nevents = retl_watch_wait(events, lengthof(events), false, ms, wait_event_info);

	for (int i = 0; i < nevents; i++)
	{
		int			flags = 0;

		if (!(events[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE)))
			continue;
		if (events[i].events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		socket_action(events[i].fd, flags);
	}
	if (curl_deadline != DT_NOEND && GetCurrentTimestamp() >= curl_deadline)
	{
		curl_deadline = DT_NOEND;
		socket_action(CURL_SOCKET_TIMEOUT, 0);
	}
	collect_finished();
}

/* The next finished request, or NULL. */
RetlRequest *
retl_http_next_done(void)
{
	RetlRequest *req;

	if (done == NIL)
		return NULL;
	req = (RetlRequest *) linitial(done);
	done = list_delete_first(done);
	return req;
}

/*
 * At a stop: the requests still in flight, taken from libcurl unanswered
 * (their handles pooled), for the caller to free.
 */
List *
retl_http_abandon(void)
{
	List	   *abandoned = in_flight;
	ListCell   *lc;

	in_flight = NIL;
	foreach(lc, abandoned)
		release_easy((RetlRequest *) lfirst(lc));
	return abandoned;
}

int
retl_http_in_flight(void)
{
	return list_length(in_flight);
}

/* Has a request finished that is not yet taken? */
bool
retl_http_answered(void)
{
	return done != NIL;
}

/* Was every finished request not yet taken answered with a 2xx? */
bool
retl_http_done_ok(void)
{
	ListCell   *lc;

	foreach(lc, done)
	{
		RetlRequest *req = lfirst(lc);

		if (req->curl_code != CURLE_OK || req->status < 200 || req->status >= 300)
			return false;
	}
	return true;
}

/*
 * Free a request and its header lists; its curl handle, if it has one
 * still (a transfer not taken from libcurl, a start that failed), goes to
 * the pool.
 */
void
retl_http_free(RetlRequest *req)
{
	release_easy(req);
	if (req->headers)
		curl_slist_free_all(req->headers);
	if (req->resolve)
		curl_slist_free_all(req->resolve);
	MemoryContextDelete(req->cxt);
}

/*
 * A copy of text with every secret the request used removed, in every form
 * a destination may echo it (redact.c), so nothing stored in views or logs
 * can reveal one.
 */
char *
retl_http_redact(RetlRequest *req, const char *text)
{
	return retl_redact(req->secrets, text, text ? strlen(text) : 0, -1);
}

/* The excerpt of the answer kept with a failure: redacted, then cut. */
char *
retl_http_excerpt(RetlRequest *req)
{
	/*
	 * (only what the excerpt needs: redacting builds several views of the
	 * text, and a kept answer may be long)
	 */
	return retl_redact(req->secrets, req->response.data,
					   Min(req->response.len, retl_redact_room(req->secrets, RETL_RESPONSE_EXCERPT)),
					   RETL_RESPONSE_EXCERPT);
}

/*
 * A new request for n of req's records from the first, to be built again
 * by its connector (a batch refused as a whole is sent in halves, and a
 * claim of many batches in its batches): the same sync and destination,
 * no body or headers yet.  Its memory context starts with a block that
 * holds a one-record request whole, as the claim's does (the smallest
 * blocks took four mallocs for one: about 3% of the worker at batch_size
 * 1; 256 requests claimed ahead then hold 2 MB).
 */
RetlRequest *
retl_http_copy(RetlRequest *req, int first, int n)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "retl request",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	RetlRequest *part = palloc0(sizeof(RetlRequest));

	part->cxt = cxt;
	part->sync_id = req->sync_id;
	part->sync_name = pstrdup(req->sync_name);
	part->resyncs = req->resyncs;
	part->kind = pstrdup(req->kind);
	part->dest_id = req->dest_id;
	part->max_attempts = req->max_attempts;
	part->max_retry_age_ms = req->max_retry_age_ms;
	part->timeout_ms = req->timeout_ms;
	part->follow_redirects = req->follow_redirects;
	part->tls_verify = req->tls_verify;
	part->range = req->range;
	part->ids_read = req->ids_read;
	part->nrecords = n;
	part->records = palloc0(sizeof(RetlRecord) * n);
	for (int i = 0; i < n; i++)
	{
		RetlRecord *src = &req->records[first + i];
		RetlRecord *dst = &part->records[i];

		dst->rid = src->rid;
		dst->record_id = pstrdup(src->record_id);
		dst->queue_ids = palloc(sizeof(int64) * src->nqueue_ids);
		memcpy(dst->queue_ids, src->queue_ids, sizeof(int64) * src->nqueue_ids);
		dst->nqueue_ids = src->nqueue_ids;
		dst->attempts = src->attempts;
		dst->op = src->op;
		dst->key = pstrdup(src->key);
		dst->data = src->data ? pstrdup(src->data) : NULL;
		dst->captured_at = pstrdup(src->captured_at);
		dst->first_attempt = src->first_attempt;
		dst->captured_epoch = src->captured_epoch;
		dst->key_hash = src->key_hash;
		dst->known_id = src->known_id ? pstrdup(src->known_id) : NULL;
		dst->may_have = src->may_have;
		dst->raw_key = src->raw_key ? datumCopy(src->raw_key, false, -1) : (Datum) 0;
	}
	MemoryContextSwitchTo(old);
	return part;
}
