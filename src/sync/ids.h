/*
 * ids.h: the destination's own ids of a sync's keys (see ids.c).
 */
#ifndef RETL_IDS_H
#define RETL_IDS_H

#include "delivery/http.h"
#include "sync/sync.h"

extern void retl_ids_remember(int sync_id, RetlRecord *records, int n);
extern void retl_ids_known(RetlRequest *req);
extern char *retl_ids_none(RetlRecord *r, const char *dest, const char *id, const char *verb);
extern bool retl_ids_unless_append(RetlSync *sync);
extern void retl_ids_mark_sent(RetlRequest *req, RetlSync *sync);

#endif
