/*
 * guc.h: retl.* configuration parameters.
 */
#ifndef RETL_GUC_H
#define RETL_GUC_H

extern int	retl_retry_base_ms;
extern int	retl_retry_max_ms;
extern int	retl_poll_interval_ms;
extern int	retl_database_scan_interval_ms;
extern int	retl_max_databases;
extern int	retl_max_slot_lag_kb;
extern bool retl_allow_private_destinations;
extern char *retl_allowed_hosts;
extern char *retl_ca_file;
extern int	retl_max_response_kb;
extern int	retl_max_record_kb;
extern int	retl_max_job_age_s;
extern int	retl_max_parallel_runs;
extern int	retl_run_memory_kb;
extern int	retl_backfill_key_memory_kb;
extern int	retl_run_nice;
extern int	retl_run_idle_timeout_s;
extern int	retl_job_check_max_ms;
extern char *retl_test_resolve;
extern char *retl_test_fail;
extern char *retl_run_probe_segment;
extern char *retl_run_history;
extern int	retl_run_history_count;
extern int64 retl_run_history_secs;

extern void retl_guc_init(void);
extern void retl_test_fail_at(const char *point, const char *sync_name);
extern bool retl_test_fail_named(const char *point, const char *sync_name);

#endif
