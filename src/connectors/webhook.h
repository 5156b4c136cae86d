/*
 * webhook.h: the webhook connector's record envelope, which other
 * connectors reuse (see webhook.c).
 */
#ifndef RETL_WEBHOOK_H
#define RETL_WEBHOOK_H

#include "lib/stringinfo.h"

#include "delivery/http.h"

extern void retl_webhook_record(StringInfo out, RetlRecord *r);

#endif
