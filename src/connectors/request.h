/*
 * request.h: what every connector's request is made of (see request.c).
 */
#ifndef RETL_REQUEST_H
#define RETL_REQUEST_H

#include "delivery/http.h"
#include "sync/sync.h"

extern char *retl_secret_value(RetlRequest *req, const char *name);
extern char *retl_substitute_secrets(RetlRequest *req, const char *value);
extern void retl_request_header(RetlRequest *req, const char *name, const char *value);
extern char *retl_idempotency_key(RetlRequest *req);
extern void retl_request_headers(RetlRequest *req, RetlSync *sync, const char *content_type);

#endif
