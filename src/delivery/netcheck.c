/*
 * netcheck.c: which destinations a worker may connect to.
 *
 * Two rules, both checked when a destination is created (on what its URL
 * says) and again on every request (on what libcurl actually does):
 *
 * - Addresses.  Unless retl.allow_private_destinations is on, the address
 *   a connection is about to be opened to (after DNS resolution, in
 *   libcurl's open-socket callback, so DNS rebinding and redirects cannot
 *   get around it) must not be loopback, private (RFC 1918), link-local
 *   (the cloud metadata address 169.254.169.254 among them), carrier-grade
 *   NAT, unique-local or link-local IPv6, multicast, broadcast or
 *   unspecified; IPv6 forms that embed an IPv4 address (mapped, compatible,
 *   NAT64, 6to4) are judged by that address.
 * - Host names.  retl.allowed_hosts, a comma-separated list of patterns
 *   ("*" for all, "*.example.com" for its subdomains, or a host name or
 *   address), must match the host of every URL requested, redirects
 *   included.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

#include "base/guc.h"
#include "delivery/netcheck.h"

PG_FUNCTION_INFO_V1(retl_check_url);

/* Why an IPv4 address (host byte order) is refused, or NULL. */
static const char *
ipv4_refused(uint32 a)
{
	if ((a >> 24) == 0)
		return "an unspecified (\"this network\") address";
	if ((a >> 24) == 127)
		return "a loopback address";
	if ((a >> 24) == 10 || (a >> 20) == (172 << 4 | 1) || (a >> 16) == (192 << 8 | 168))
		return "a private (RFC 1918) address";
	if ((a >> 16) == (169 << 8 | 254))
		return "a link-local address (cloud metadata services live there)";
	if ((a >> 22) == (100 << 2 | 1))
		return "a carrier-grade NAT (RFC 6598) address";
	if ((a >> 28) == 14)
		return "a multicast address";
	if ((a >> 28) == 15)
		return "a reserved or broadcast address";
	return NULL;
}

static uint32
ipv4_at(const unsigned char *b)
{
	return (uint32) b[0] << 24 | (uint32) b[1] << 16 | (uint32) b[2] << 8 | b[3];
}

/* Why an IPv6 address is refused, or NULL. */
static const char *
ipv6_refused(const unsigned char *b)
{
	static const unsigned char zero[12] = {0};
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

	/* ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d */
	if (memcmp(b, zero, 12) == 0)
	{
		if (ipv4_at(b + 12) == 0)
			return "an unspecified address";
		if (ipv4_at(b + 12) == 1)
			return "a loopback address";
		return ipv4_refused(ipv4_at(b + 12));
	}
	if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
		return ipv4_refused(ipv4_at(b + 12));
	/* 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD */
	if (b[0] == 0x20 && b[1] == 0x02)
		return ipv4_refused(ipv4_at(b + 2));
	if ((b[0] & 0xfe) == 0xfc)
		return "a unique-local IPv6 address";
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
		return "a link-local IPv6 address";
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
		return "a site-local IPv6 address";
	if (b[0] == 0xff)
		return "a multicast address";
	return NULL;
}

/*
 * Why a socket address may not be connected to, or NULL when it may (or
 * retl.allow_private_destinations is on).
 */
const char *
retl_address_refused(const struct sockaddr *addr)
{
	if (retl_allow_private_destinations)
		return NULL;
	if (addr->sa_family == AF_INET)
		return ipv4_refused(ntohl(((const struct sockaddr_in *) addr)->sin_addr.s_addr));
	if (addr->sa_family == AF_INET6)
		return ipv6_refused(((const struct sockaddr_in6 *) addr)->sin6_addr.s6_addr);
	return "not an internet address";
}

/*
 * The same for an address written as text (a URL's host, or libcurl's text
 * of the address it is connected to); NULL too when it is no address.
 */
const char *
retl_text_address_refused(const char *host)
{
	struct sockaddr_in v4 = {0};
	struct sockaddr_in6 v6 = {0};
	char		buf[64];
	size_t		len = strlen(host);

	/* URL hosts write IPv6 addresses in brackets */
	if (len >= 2 && len < sizeof(buf) && host[0] == '[' && host[len - 1] == ']')
	{
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		host = buf;
	}
	if (inet_pton(AF_INET, host, &v4.sin_addr) == 1)
	{
		v4.sin_family = AF_INET;
		return retl_address_refused((struct sockaddr *) &v4);
	}
	if (inet_pton(AF_INET6, host, &v6.sin6_addr) == 1)
	{
		v6.sin6_family = AF_INET6;
		return retl_address_refused((struct sockaddr *) &v6);
	}
	/* the resolver reads 0x7f.1, 017700000001, 2130706433 as addresses too */
	if (inet_aton(host, &v4.sin_addr) == 1)
	{
		v4.sin_family = AF_INET;
		return retl_address_refused((struct sockaddr *) &v4);
	}
	return NULL;
}

/* Does host match one pattern of retl.allowed_hosts? */
static bool
host_matches(const char *host, const char *pattern)
{
	size_t		hlen = strlen(host);
	size_t		plen = strlen(pattern);

	if (strcmp(pattern, "*") == 0)
		return true;
	if (plen > 2 && pattern[0] == '*' && pattern[1] == '.')
		return hlen > plen - 1 &&
			pg_strcasecmp(host + hlen - (plen - 1), pattern + 1) == 0;
	return pg_strcasecmp(host, pattern) == 0;
}

/* Is host allowed by retl.allowed_hosts? */
bool
retl_host_allowed(const char *host)
{
	char	   *raw = pstrdup(retl_allowed_hosts ? retl_allowed_hosts : "*");
	List	   *patterns;
	ListCell   *lc;
	bool		ok = false;

	if (!SplitGUCList(raw, ',', &patterns))
		return false;			/* the GUC's check hook refuses that */
	foreach(lc, patterns)
	{
		if (host_matches(host, (const char *) lfirst(lc)))
		{
			ok = true;
			break;
		}
	}
	list_free(patterns);
	pfree(raw);
	return ok;
}

/*
 * The host of a URL, as libcurl reads it (numeric IPv4 forms such as
 * 0x7f.1 or 2130706433 come back as dotted decimal), palloc'd; NULL with
 * *error set when the URL does not parse.
 */
char *
retl_url_host(const char *url, const char **error)
{
	CURLU	   *u = curl_url();
	char	   *host = NULL;
	char	   *result;
	CURLUcode	rc;

	/* no ereport: libcurl's callbacks call this */
	if (u == NULL)
	{
		*error = "out of memory";
		return NULL;
	}
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc == CURLUE_OK)
		rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
	if (rc != CURLUE_OK)
	{
		*error = curl_url_strerror(rc);
		curl_url_cleanup(u);
		return NULL;
	}
	result = pstrdup(host);
	curl_free(host);
	curl_url_cleanup(u);
	return result;
}

/* The parts of a URL that say where it goes, as libcurl reads it */
static bool
url_origin(const char *url, char **parts, const char **error)
{
	static const CURLUPart which[4] = {CURLUPART_SCHEME, CURLUPART_USER, CURLUPART_HOST, CURLUPART_PORT};
	CURLU	   *u = curl_url();
	CURLUcode	rc;

	if (u == NULL)
	{
		*error = "out of memory";
		return false;
	}
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	for (int i = 0; i < 4 && rc == CURLUE_OK; i++)
	{
		char	   *part = NULL;

		rc = curl_url_get(u, which[i], &part, which[i] == CURLUPART_PORT ? CURLU_DEFAULT_PORT : 0);
		/* (no user: none) */
		if (rc == CURLUE_NO_USER)
			rc = CURLUE_OK;
		parts[i] = part != NULL ? pstrdup(part) : NULL;
		curl_free(part);
	}
	curl_url_cleanup(u);
	if (rc != CURLUE_OK)
	{
		*error = curl_url_strerror(rc);
		return false;
	}
	return true;
}

/*
 * Does url go where base does (the same scheme, user, host and port, as
 * libcurl reads them)?  A connector that appends a path of the sync's to
 * a destination's URL asks: appended to a URL without a path, a path such
 * as "@host/x" made the destination's host a user name, and the request
 * (with the destination's credentials) went to the host it named.  False
 * with *error set when either does not parse.
 */
bool
retl_url_same_origin(const char *base, const char *url, const char **error)
{
	char	   *a[4];
	char	   *b[4];

	*error = NULL;
	if (!url_origin(base, a, error) || !url_origin(url, b, error))
		return false;
	for (int i = 0; i < 4; i++)
	{
		if ((a[i] == NULL) != (b[i] == NULL) ||
			(a[i] != NULL && pg_strcasecmp(a[i], b[i]) != 0))
			return false;
	}
	return true;
}

/*
 * Why a URL may not be requested, or NULL: its host is not allowed by
 * retl.allowed_hosts, or is an address that is refused.  Host names are
 * not resolved here (the address is checked when connecting).
 */
char *
retl_url_refused(const char *url)
{
	const char *error = NULL;
	char	   *host = retl_url_host(url, &error);
	const char *why;

	if (host == NULL)
		return psprintf("the URL does not parse: %s", error);
	if (!retl_host_allowed(host))
		return psprintf("host \"%s\" is not in retl.allowed_hosts", host);
	why = retl_text_address_refused(host);
	if (why != NULL)
		return psprintf("%s is %s", host, why);
	return NULL;
}

/*
 * retl._check_url(url): the creation-time check of a destination's URL
 * (retl_create_destination), with the errors a user sees.
 */
Datum
retl_check_url(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *error = NULL;
	char	   *why;

	if (retl_url_host(url, &error) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("destination url does not parse: %s", error)));
	why = retl_url_refused(url);
	if (why != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("destination url not allowed: %s", why),
				 errhint("retl refuses loopback, private and link-local addresses unless retl.allow_private_destinations is on, and hosts outside retl.allowed_hosts.")));
	PG_RETURN_VOID();
}
