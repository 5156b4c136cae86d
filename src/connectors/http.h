/*
 * http.h: the http connector's machinery, for connectors that speak
 * through it with options they generate (see http.c, slack.c).
 */
#ifndef RETL_CONNECTORS_HTTP_H
#define RETL_CONNECTORS_HTTP_H

#include "delivery/http.h"
#include "sync/sync.h"

extern void retl_http_check(const char *options, int batch_size, Oid owner, const char *what);
extern void retl_http_build(RetlRequest *req, RetlSync *sync, const char *options);
extern void retl_http_answer(RetlRequest *req, RetlSync *sync, const char *options);

#endif
