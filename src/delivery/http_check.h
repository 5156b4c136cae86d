/*
 * http_check.h: libcurl's callbacks that check where a request goes, as
 * http.c (setting them on each handle) and http_check.c (the callbacks)
 * share them.
 */
#ifndef RETL_HTTP_CHECK_H
#define RETL_HTTP_CHECK_H

#include <curl/curl.h>

extern curl_socket_t retl_http_opensocket_cb(void *clientp, curlsocktype purpose,
											 struct curl_sockaddr *address);
extern int	retl_http_closesocket_cb(void *clientp, curl_socket_t fd);
extern int	retl_http_prereq_cb(void *clientp, char *conn_primary_ip, char *conn_local_ip,
								int conn_primary_port, int conn_local_port);

#endif
