/*
 * watch.h: the sockets libcurl asks the worker to watch (see watch.c).
 */
#ifndef RETL_WATCH_H
#define RETL_WATCH_H

#include <curl/curl.h>

#include "storage/latch.h"

/* sockets watched at most */
#define RETL_WATCH_MAX 1024

extern void retl_watch_opened(curl_socket_t fd);
extern void retl_watch_closed(curl_socket_t fd);
extern bool retl_watch_socket(curl_socket_t fd, int what);
extern int	retl_watch_count(void);
extern int	retl_watch_wait(WaitEvent *events, int nevents_max, bool with_latch,
							long timeout_ms, uint32 wait_event_info);

#endif
