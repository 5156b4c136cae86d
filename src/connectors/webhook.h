/*
 * webhook.h: the webhook connector.
 */
#ifndef RETL_WEBHOOK_H
#define RETL_WEBHOOK_H

#include "http.h"
#include "queue.h"

extern void retl_webhook_build(RetlRequest *req, RetlSync *sync);
extern char *retl_substitute_secrets(RetlRequest *req, const char *value);
extern RetlRequest *retl_webhook_split(RetlRequest *req, int first, int n);

#endif
