/*
 * shmem.h: state shared by the launcher, the workers and every backend.
 */
#ifndef RETL_SHMEM_H
#define RETL_SHMEM_H

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

typedef enum RetlDbState
{
	RETL_DB_FREE = 0,			/* slot unused */
	RETL_DB_STARTING,			/* launcher registered a worker */
	RETL_DB_RUNNING,			/* worker attached */
	RETL_DB_IDLE,				/* database has no retl: no worker until asked */
	RETL_DB_RESTART,			/* worker exited; start again after not_before */
	RETL_DB_HOLD				/* worker stopped for a database-level command */
} RetlDbState;

/*
 * A database's syncs fall into this many buckets (sync id modulo it), each
 * with a counter that every commit advances by the changes it queued for
 * the bucket's syncs: the worker looks at a sync whose queue it found empty
 * again only when its bucket's counter moved (queue/mark.c).  A commit
 * wakes the worker only when the counter reaches the bucket's wake_at:
 * the worker sets it at each pass to where a pass could do something new
 * (a change for an idle sync, a batch filled for a lingering one).
 */
#define RETL_QUEUE_BUCKETS 64

typedef struct RetlDbSlot
{
	Oid			dboid;
	RetlDbState state;
	pid_t		pid;			/* worker pid, 0 if none attached */
	Latch	   *latch;			/* worker latch, NULL if none attached */
	bool		start_requested;	/* CREATE EXTENSION asked for a worker */
	TimestampTz not_before;		/* for RESTART and HOLD */
	uint64		catalog_gen;	/* bumped by each commit that changed the
								 * syncs, destinations or their grants */
	/* under the lock held shared (atomics): see shmem.c */
	pg_atomic_uint32 queued[RETL_QUEUE_BUCKETS];
	pg_atomic_uint32 wake_at[RETL_QUEUE_BUCKETS];
	pg_atomic_uint64 captured_at;	/* the last commit that captured changes
									 * (a TimestampTz) */
} RetlDbSlot;

/*
 * A run of a database's diff sync, or a refresh of its audience, in a
 * worker of its own ("retl run": process/runner.c), from when the
 * database's worker hands it over until it ends; then, for
 * retl.run_idle_timeout, the worker waiting for the database's next one
 * (kind 'i').
 */
#define RETL_RUNNER_SLOTS 64

typedef struct RetlRunSlot
{
	Oid			dboid;			/* InvalidOid: the slot is free */
	Oid			extension;		/* the retl its jobs are of (created again:
								 * another's) */
	int64		id;				/* the run's id, or the audience's */
	char		kind;			/* 'r' a run, 'a' an audience's refresh, 'i'
								 * its worker idle, waiting for the next */
	int			sync_id;		/* a run's sync */
	bool		send;			/* a run: queue what changed */
	pid_t		pid;			/* its worker, once started (0: not yet) */
	Latch	   *latch;			/* the worker's, once started */
	uint32		generation;		/* of the slot's taking by a new worker */
	TimestampTz launched_at;
	bool		cancel;			/* retl_cancel_run asked it to stop */
	bool		stopping;		/* idle: asked to exit, not to be handed work */
	char		phase[32];		/* where it is */
	int64		rows;			/* rows read so far */
} RetlRunSlot;

typedef struct RetlShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	RetlRunSlot runners[RETL_RUNNER_SLOTS];
	int			nslots;
	RetlDbSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} RetlShared;

extern RetlShared *retl_shared;

extern void retl_shmem_init(void);
extern RetlDbSlot *retl_find_slot(Oid dboid);
extern RetlDbSlot *retl_find_or_add_slot(Oid dboid);
extern void retl_wake_launcher(void);
extern void retl_wake_database_worker(Oid dboid);
extern void retl_queued_at_commit(int sync_id, int64 nrows);
extern void retl_catalog_changed_at_commit(void);
extern void retl_captured_at_commit(int sync_id, int64 nrows);
extern TimestampTz retl_database_captured_at(Oid dboid);
extern uint64 retl_database_generations(uint32 *queued);
extern bool retl_set_wake_points(const uint32 *queued, const uint32 *wake_after);
extern void retl_xact_init(void);
extern int	retl_runner_take(Oid dboid, Oid extension, char kind, int64 id, int sync_id,
							 bool send, bool *reused, uint32 *generation);
extern bool retl_runner_free_if(int slot, const RetlRunSlot *was);
extern int	retl_runner_release_idle(Oid dboid);
extern void retl_runner_free(int slot);
extern int	retl_runner_count(Oid dboid);
extern bool retl_runner_busy(Oid dboid, char kind, int64 id);

#endif
