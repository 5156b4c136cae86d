/*
 * request.h: what every connector's request is made of (see request.c).
 */
#ifndef RETL_REQUEST_H
#define RETL_REQUEST_H

#include "delivery/http.h"
#include "sync/sync.h"

extern char *retl_secret_lookup(const char *name);
extern char *retl_secret_value(RetlRequest *req, const char *name);
extern char *retl_substitute_secrets(RetlRequest *req, const char *value);
extern void retl_request_secret_header(RetlRequest *req, const char *name, const char *value);
extern void retl_request_header(RetlRequest *req, const char *name, const char *value);
extern char *retl_idempotency_key(RetlRequest *req);
extern void retl_request_headers(RetlRequest *req, RetlSync *sync, const char *content_type);

/* for connectors that batch records into JSON documents */
#include <cjson/cJSON.h>

extern void retl_request_take_run(RetlRequest *req, int (*group) (RetlRecord *r, void *arg), void *arg);
extern int	retl_request_leave_unsent(RetlRequest *req);
extern void retl_record_unsent(RetlRequest *req, RetlRecord *r, const char *why);
extern void retl_request_json_body(RetlRequest *req, cJSON *doc);
extern char *retl_json_string(cJSON *obj, const char *name);
extern char *retl_json_text(cJSON *v);
extern char *retl_record_key_value(RetlRecord *r);
extern char *retl_record_key_field(RetlRecord *r);
extern char *retl_base_url(RetlSync *sync);
extern char *retl_urlencode_text(const char *s);
extern char *retl_json_print(cJSON *doc);
extern int	retl_record_is_delete(RetlRecord *r, void *arg);
extern RetlJob *retl_request_job(RetlRequest *req, const char *remote_id, const char *state,
								  const char *status);

#endif
