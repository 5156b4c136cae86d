/*
 * jobs.h: records a destination holds in a job of its own (see jobs.c).
 */
#ifndef RETL_JOBS_H
#define RETL_JOBS_H

#include "delivery/http.h"
#include "sync/sync.h"

extern void retl_jobs_load(void);
extern bool retl_jobs_hold(int sync_id, uint64 key_hash);
extern void retl_jobs_open(RetlRequest *req);
extern RetlRequest *retl_jobs_claim(RetlSync *sync, long *wait_ms);
extern void retl_jobs_checked(RetlRequest *req);

#endif
