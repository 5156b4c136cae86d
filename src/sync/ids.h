/*
 * ids.h: the destination's own ids of a sync's keys (see ids.c).
 */
#ifndef RETL_IDS_H
#define RETL_IDS_H

#include "delivery/http.h"

extern void retl_ids_remember(int sync_id, RetlRecord *records, int n);
extern void retl_ids_known(RetlRequest *req);

#endif
