/*
 * auth.h: a destination's auth option (see auth.c).
 */
#ifndef RETL_AUTH_H
#define RETL_AUTH_H

#include "utils/jsonb.h"

#include "delivery/http.h"
#include "sync/sync.h"

extern char *retl_jsonb_string(Jsonb *obj, const char *name);
extern bool retl_jsonb_has(Jsonb *obj, const char *name);
extern char *retl_auth_type(Jsonb *options);
extern char *retl_auth_header_name(Jsonb *options);
extern void retl_auth_check(Jsonb *options, const char *default_token_path);
extern void retl_auth_header(RetlRequest *req, RetlSync *sync);

#endif
