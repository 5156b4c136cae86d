/*
 * netcheck.h: which destinations a worker may connect to (see netcheck.c).
 */
#ifndef RETL_NETCHECK_H
#define RETL_NETCHECK_H

#include <sys/socket.h>

extern const char *retl_address_refused(const struct sockaddr *addr);
extern const char *retl_text_address_refused(const char *host);
extern bool retl_host_allowed(const char *host);
extern char *retl_url_host(const char *url, const char **error);
extern bool retl_url_same_origin(const char *base, const char *url, const char **error);
extern char *retl_url_refused(const char *url);

#endif
