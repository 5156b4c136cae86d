/*
 * probe.h: a diff run's snapshot in memory, probed by its query (probe.c).
 */
#ifndef RETL_PROBE_H
#define RETL_PROBE_H

#include "utils/snapshot.h"

typedef struct RetlProbe RetlProbe;
struct RetlRunQueue;
typedef void (*RetlProbeKeyFn) (void *arg, Datum key, int64 hash, bool legacy);

extern RetlProbe *retl_probe_begin(int sync_id, const char *sync_name, bool int_keys, Snapshot snap);
extern bool retl_probe_empty(RetlProbe *probe);
extern void retl_probe_expect_rows(RetlProbe *probe, double rows);
extern void retl_probe_write_ops(RetlProbe *probe, const char *ops);
extern bool retl_probe_int_keys(RetlProbe *probe);
extern bool retl_probe_next_part(RetlProbe *probe);
extern bool retl_probe_overflowed(RetlProbe *probe);
extern bool retl_probe_shared(RetlProbe *probe);
extern int64 retl_probe_queue_removed(RetlProbe *probe, bool write);
extern void retl_probe_save_part(RetlProbe *probe);
extern void retl_probe_save_end(RetlProbe *probe);
extern int64 retl_probe_snapshot_rows(RetlProbe *probe);
extern int64 retl_probe_resynced_removed(RetlProbe *probe);
extern bool retl_probe_duplicate(RetlProbe *probe);
extern bool retl_probe_legacy(RetlProbe *probe);
extern const char *retl_probe_null_key(RetlProbe *probe);
extern void retl_probe_counts(RetlProbe *probe, int64 *added, int64 *changed);
extern int	retl_probe_parts(RetlProbe *probe);
extern void retl_probe_each(RetlProbe *probe, RetlProbeKeyFn fn, void *arg);
extern void retl_probe_end(RetlProbe *probe);

extern double retl_probe_expected_share(void);

/* probe_plan.c */
extern bool retl_probe_exec_filtered(Oid owner, const char *sql, const char *path, bool into,
									 struct RetlRunQueue *queue);

#endif
