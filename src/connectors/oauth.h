/*
 * oauth.h: OAuth 2.0 access tokens of destinations (see oauth.c).
 */
#ifndef RETL_OAUTH_H
#define RETL_OAUTH_H

#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "delivery/http.h"
#include "sync/sync.h"

/* the kind of a token request (RetlRequest.kind) */
#define RETL_OAUTH_KIND "oauth2 token"

extern void retl_oauth_check(Jsonb *auth, const char *default_token_path);
extern bool retl_oauth_ready(RetlSync *sync, TimestampTz now, RetlRequest **fetch, long *wait_ms);
extern void retl_oauth_header(RetlRequest *req, RetlSync *sync);
extern void retl_oauth_answer(RetlRequest *req);
extern bool retl_oauth_unauthorized(RetlRequest *req);
extern void retl_oauth_accepted(RetlRequest *req);
extern char *retl_oauth_field(int dest_id, const char *name);

#endif
