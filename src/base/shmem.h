/*
 * shmem.h: state shared by the launcher, the workers and every backend.
 */
#ifndef RETL_SHMEM_H
#define RETL_SHMEM_H

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

typedef struct RetlDbSlot
{
	Oid			dboid;
	RetlDbState state;
	pid_t		pid;			/* worker pid, 0 if none attached */
	Latch	   *latch;			/* worker latch, NULL if none attached */
	bool		start_requested;	/* CREATE EXTENSION asked for a worker */
	TimestampTz not_before;		/* for RESTART and HOLD */
} RetlDbSlot;

typedef struct RetlShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	int			nslots;
	RetlDbSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} RetlShared;

extern RetlShared *retl_shared;

extern void retl_shmem_init(void);
extern RetlDbSlot *retl_find_slot(Oid dboid);
extern RetlDbSlot *retl_find_or_add_slot(Oid dboid);
extern void retl_wake_launcher(void);
extern void retl_wake_database_worker(Oid dboid);
extern void retl_wake_worker_at_commit(void);
extern void retl_xact_init(void);

#endif
