/*
 * curl_client.c: libcurl alone, for make bench only.
 *
 * What one process reaches sending one record a request with libcurl and
 * doing nothing else: no queue, no transaction, no JSON built.  It keeps
 * CONNECTIONS requests in flight on a libcurl multi handle (keep-alive,
 * one connection each, as retl's worker does with max_concurrency 8),
 * each request on an easy handle with the options retl sets that matter
 * to a plain-HTTP POST (a finished request's handle, reset, as retl's
 * worker reuses them), and POSTs the same body to URL until COUNT have
 * been answered.  Prints "<count> <seconds> <cpu seconds>";
 * fails on any answer but a 200.
 *
 * Built by test/bench.sh in its work directory, where src/base/version.h
 * is copied too: its User-Agent is retl's own; never installed.
 *
 *   curl_client URL BODY-FILE COUNT
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "version.h"			/* src/base/version.h, copied beside it */

#define CONNECTIONS 8

/* finished requests' handles, reset (at most CONNECTIONS) */
static CURL *pool[CONNECTIONS];
static int	pooled = 0;

static size_t
discard(char *data, size_t size, size_t nmemb, void *arg)
{
	(void) data;
	(void) arg;
	return size * nmemb;
}

static void
fail(const char *what, const char *why)
{
	fprintf(stderr, "curl_client: %s: %s\n", what, why);
	exit(1);
}

#define SETOPT(easy, opt, val) \
	do { \
		CURLcode	c_ = curl_easy_setopt((easy), (opt), (val)); \
		if (c_ != CURLE_OK) \
			fail(#opt, curl_easy_strerror(c_)); \
	} while (0)

static void
start(CURLM *multi, const char *url, const char *body, long len, struct curl_slist *headers)
{
	CURL	   *easy = pooled > 0 ? pool[--pooled] : curl_easy_init();
	CURLMcode	mc;

	if (easy == NULL)
		fail("curl_easy_init", "out of memory");
	SETOPT(easy, CURLOPT_URL, url);
	SETOPT(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(easy, CURLOPT_PROXY, "");
	SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
	SETOPT(easy, CURLOPT_POST, 1L);
	SETOPT(easy, CURLOPT_POSTFIELDSIZE, len);
	SETOPT(easy, CURLOPT_POSTFIELDS, body);
	SETOPT(easy, CURLOPT_HTTPHEADER, headers);
	SETOPT(easy, CURLOPT_TIMEOUT_MS, 30000L);
	SETOPT(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(easy, CURLOPT_USERAGENT, RETL_USER_AGENT);
	SETOPT(easy, CURLOPT_WRITEFUNCTION, discard);
	mc = curl_multi_add_handle(multi, easy);
	if (mc != CURLM_OK)
		fail("curl_multi_add_handle", curl_multi_strerror(mc));
}

int
main(int argc, char **argv)
{
	const char *url;
	char		body[65536];
	long		len;
	long		count;
	long		started = 0;
	long		answered = 0;
	FILE	   *f;
	CURLM	   *multi;
	struct curl_slist *headers = NULL;
	struct timespec t0,
				t1;
	struct rusage ru;

	if (argc != 4)
	{
		fprintf(stderr, "usage: curl_client URL BODY-FILE COUNT\n");
		return 2;
	}
	url = argv[1];
	count = atol(argv[3]);
	if ((f = fopen(argv[2], "r")) == NULL)
		fail(argv[2], "cannot open");
	len = (long) fread(body, 1, sizeof(body) - 1, f);
	fclose(f);
	body[len] = '\0';
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		fail("curl_global_init", "failed");
	headers = curl_slist_append(headers, "Content-Type: application/json");
	/* retl's headers of a webhook (its record's id twice) */
	if (headers == NULL ||
		(headers = curl_slist_append(headers, "Idempotency-Key: bench-1")) == NULL ||
		(headers = curl_slist_append(headers, "webhook-id: bench-1")) == NULL ||
		(headers = curl_slist_append(headers, "Expect:")) == NULL)
		fail("curl_slist_append", "out of memory");
	if ((multi = curl_multi_init()) == NULL)
		fail("curl_multi_init", "out of memory");

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (; started < CONNECTIONS && started < count; started++)
		start(multi, url, body, len, headers);
	while (answered < count)
	{
		int			running;
		int			left;
		CURLMsg    *msg;
		CURLMcode	mc = curl_multi_perform(multi, &running);

		if (mc != CURLM_OK)
			fail("curl_multi_perform", curl_multi_strerror(mc));
		while ((msg = curl_multi_info_read(multi, &left)) != NULL)
		{
			long		status = 0;

			if (msg->msg != CURLMSG_DONE)
				continue;
			if (msg->data.result != CURLE_OK)
				fail(url, curl_easy_strerror(msg->data.result));
			if (curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK ||
				status != 200)
				fail(url, "an answer other than 200");
			answered++;
			if (curl_multi_remove_handle(multi, msg->easy_handle) != CURLM_OK)
				fail("curl_multi_remove_handle", "failed");
			curl_easy_reset(msg->easy_handle);
			pool[pooled++] = msg->easy_handle;
			if (started < count)
			{
				start(multi, url, body, len, headers);
				started++;
			}
		}
		if (answered < count)
		{
			mc = curl_multi_poll(multi, NULL, 0, 1000, NULL);
			if (mc != CURLM_OK)
				fail("curl_multi_poll", curl_multi_strerror(mc));
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	getrusage(RUSAGE_SELF, &ru);
	printf("%ld %.3f %.3f\n", answered,
		   (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9,
		   (double) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		   (double) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	while (pooled > 0)
		curl_easy_cleanup(pool[--pooled]);
	curl_multi_cleanup(multi);
	curl_slist_free_all(headers);
	curl_global_cleanup();
	return 0;
}
