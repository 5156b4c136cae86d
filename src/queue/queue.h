/*
 * queue.h: the change queue, seen from the worker.
 */
#ifndef RETL_QUEUE_H
#define RETL_QUEUE_H

#include "utils/hsearch.h"

#include "delivery/http.h"
#include "sync/sync.h"

extern bool retl_queue_recover(void);
extern void retl_queue_analyze_if_stale(int retry_ms);
extern bool retl_queue_stats_suspect(void);
extern List *retl_queue_claim(RetlSync *sync, int nbatches, long *wait_ms, bool *idle,
							  int *lingering);
extern RetlRequest *retl_queue_new_request(RetlSync *sync);
extern List *retl_queue_batches(RetlSync *sync, RetlRequest *claim, Datum *keys);
extern void retl_queue_materialize(RetlRequest *req, RetlRecord *records, int nrecords);
extern void retl_queue_rewind(int sync_id, RetlRecord *records, int nrecords);
extern void retl_queue_read_rows(RetlSync *sync, RetlRequest *req, Datum *keys, bool append);
extern void retl_queue_drop_unsent(RetlRequest *req);
extern void retl_queue_build(RetlRequest *req, RetlSync *sync);
extern bool retl_queue_rebuild_ready(RetlRequest *req);
extern bool retl_queue_rebuild(RetlRequest *req);
extern Datum retl_queue_id_array(RetlRecord *records, int nrecords);
extern void retl_queue_hold(RetlRequest *req);
extern HTAB *retl_queue_key_set(const char *name, long size);
extern void retl_queue_held_by_requests(int sync_id, int64 from, HTAB **keys, HTAB **ids);
extern bool retl_queue_replace_in_flight(int sync_id);
extern void retl_queue_held_keys(int sync_id, int resyncs, HTAB **keys, HTAB **before_ids);
extern bool retl_queue_key_held(int sync_id, HTAB *keys, uint64 hash);
extern void retl_queue_backoff(int sync_id, uint64 key_hash, TimestampTz until);
extern void retl_queue_load_backoff(void);
extern bool retl_queue_backing_off(int sync_id, uint64 key_hash, TimestampTz now, TimestampTz *until);
extern void retl_queue_release(RetlRequest *req, int from);
extern void retl_queue_leave_out(RetlRequest *req, int claimed);
extern void retl_queue_delete_ids(int sync_id, Datum ids);
extern void retl_queue_record(RetlRequest *req);
extern void retl_queue_apply(RetlRequest *req);
extern void retl_queue_defer_deletes(void);
extern void retl_queue_flush_deletes(void);
extern void retl_queue_dead_letter_unsent(RetlRequest *req, RetlRecord *r);
extern void retl_queue_done_unsent(RetlRequest *req, RetlRecord *r);
extern void retl_queue_sync_error(int sync_id, const char *message);
extern char *retl_queue_instance_id(void);
extern char *retl_queue_record_id(const char *inst, int64 rid);

#endif
