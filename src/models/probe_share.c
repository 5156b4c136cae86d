/*
 * probe_share.c: a diff run's snapshot in memory (probe.c), shared with
 * the parallel workers of the run's statement.
 *
 * PostgreSQL reads a large table in parallel only in a SELECT, each
 * process (the leader and its workers) reading a share of the table's
 * blocks, and only if every function the plan calls below its Gather is
 * parallel safe.  The probe was the one that was not: its table lived in
 * the run's own memory.  On the 2-core VM a 1M-row model took 47 ms to read
 * in parallel and 66 ms in one process, and the statement that hashed and
 * probed each row of it 121 ms in one process, most of a diff run.
 *
 * A part of integer keys (a sync of one integer key column, whose snapshot
 * takes one part) is shared when the statement's plan is parallel: its
 * slots, flags and index are copied into a segment of dynamic shared
 * memory, the leader's probe then working on them there, and the
 * segment's handle is set in retl.run_probe_segment, which PostgreSQL
 * passes to the workers with the other settings.  A worker's first call of
 * the probe attaches the segment and makes itself a view of the probe in
 * its place there (a copy of the leader's struct, with its own counts and
 * its last answer).  A key found is marked seen and given the row's hash
 * in place: only the process that read its row writes its slot (a key of
 * two rows, whichever processes read them, fails the run: the rows then
 * outnumber the keys).  A key added takes a slot from a block of slots its
 * process reserved (an atomic addition a block, not a key); added keys
 * are not indexed during the statement: the leader indexes them after it,
 * finding a key added twice there.  The snapshot's keys, never added to
 * during the statement, are all found through the index.  After the
 * statement (its workers finished) the leader adds up the views' counts
 * and closes the holes the blocks left.  A process that finds no block
 * left marks the part overflowed: the leader loads it again and runs the
 * statement again without sharing it.
 */
#include "postgres.h"

#include <sys/resource.h>

#include "access/parallel.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/dsm.h"
#include "storage/proc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "base/guc.h"
#include "base/progress.h"
#include "base/subxact.h"
#include "models/probe_table.h"

/* "retlprob" */
#define PROBE_SHM_MAGIC		UINT64CONST(0x7265746c70726f62)

/* slots a process reserves at once for the keys it adds */
#define SHARED_BLOCK		1024

/* The segment's header; the slots, flags, index and views follow it. */
typedef struct ProbeShm
{
	uint64		magic;
	int			leader_pid;
	int			nviews;			/* view 0: the template; 1 + a worker's number */
	int			nice;			/* the leader's (a runner's: retl.run_nice) */
	int64		base;			/* slots the part held before the statement */
	int64		maxslots;
	Size		slots_at;		/* offsets from the header */
	Size		flags_at;
	Size		index_at;
	Size		index_cap;		/* bytes for an index there */
	Size		views_at;
	Size		view_size;
	pg_atomic_uint64 next_free; /* the first slot no block holds */
} ProbeShm;

static RetlProbe *
view_at(ProbeShm *shm, int i)
{
	return (RetlProbe *) ((char *) shm + shm->views_at + shm->view_size * i);
}

static Slot *
shm_slots(ProbeShm *shm)
{
	return (Slot *) ((char *) shm + shm->slots_at);
}

static uint8 *
shm_flags(ProbeShm *shm)
{
	return (uint8 *) shm + shm->flags_at;
}

static uint32 *
shm_index(ProbeShm *shm)
{
	return (uint32 *) ((char *) shm + shm->index_at);
}

/*
 * The segment a runner keeps from one run to the next: the part its last
 * run saved, in the form a load of what that run stored would give (the
 * slots its rows had, stored; the others forgotten), and what was stored
 * then.  The next run of the sync in that runner finds the same stored
 * and takes the part as it is (adding the edits since), without reading
 * the chunks, indexing the keys or copying them into a new segment.
 */
typedef struct KeptSegment
{
	dsm_segment *seg;
	Size		size;
	RetlProbe  *user;			/* the probe using it now (NULL: none) */
	bool		valid;			/* holds the part below */
	int			sync_id;
	RetlSnapshotSize stored;	/* what the sync stored, as the run saved it */
	int64		nslots;
	uint64		mask;			/* of its index in the segment (0: none) */
} KeptSegment;

static KeptSegment kept;

typedef struct NewSegment
{
	RetlProbe  *p;
	Size		size;
	dsm_segment *seg;
} NewSegment;

static void
create_segment(void *arg)
{
	NewSegment *n = (NewSegment *) arg;

	if (n->p->sync_name != NULL)
		retl_test_fail_at("share", n->p->sync_name);
	n->seg = dsm_create(n->size, DSM_CREATE_NULL_IF_MAXSEGMENTS);
	/* (the session's, not the subtransaction's) */
	if (n->seg != NULL)
		dsm_pin_mapping(n->seg);
}

/*
 * A segment of size bytes for p: the kept one, if it is free and large
 * enough.  NULL if none is to be had (too many segments, or no room for
 * one: a container's small /dev/shm, say), the run then in one process.
 */
static ProbeShm *
segment_for(RetlProbe *p, Size size)
{
	dsm_segment *seg;

	if (kept.seg != NULL && kept.user == NULL && kept.size >= size)
		seg = kept.seg;
	else
	{
		NewSegment	n = {p, size, NULL};
		ErrorData  *e = retl_in_subtransaction(create_segment, &n);

		if (e != NULL)
		{
			ereport(LOG,
					(errmsg("retl run could not share its snapshot with parallel workers: %s", e->message),
					 errdetail("A segment of %zu bytes of dynamic shared memory was asked for.", size),
					 errhint("The run's statement runs in one process.  See dynamic_shared_memory_type, and the size of /dev/shm.")));
			FreeErrorData(e);
			return NULL;
		}
		seg = n.seg;
		if (seg == NULL)
			return NULL;
		if (kept.user == NULL)
		{
			if (kept.seg != NULL)
				dsm_detach(kept.seg);
			kept.seg = seg;
			kept.size = size;
		}
	}
	if (seg == kept.seg)
	{
		kept.valid = false;
		kept.user = p;
	}
	p->shm_seg = seg;
	return dsm_segment_address(seg);
}

/*
 * Ready a shared part for a statement: no block reserved, the slots past
 * the part's unfilled, no worker's view, the workers' template the
 * leader's probe as the statement begins.  False if its index is not in
 * the segment (it grew past the room there): the statement is then run
 * in one process.
 */
static bool
refresh(RetlProbe *p)
{
	ProbeShm   *shm = p->shm;

	if (p->index != NULL && p->index != shm_index(shm))
	{
		if ((p->mask + 1) * sizeof(uint32) > shm->index_cap)
			return false;
		memcpy(shm_index(shm), p->index, (p->mask + 1) * sizeof(uint32));
		pfree(p->index);
		p->index = shm_index(shm);
	}
	shm->base = p->nslots;
	pg_atomic_write_u64(&shm->next_free, (uint64) p->nslots);
	/* a slot of a block never filled: flags 0 (an added key's are SEEN) */
	memset(p->flags + p->nslots, 0, shm->maxslots - p->nslots);
	memset((char *) shm + shm->views_at, 0, shm->view_size * shm->nviews);
	p->block_start = -1;
	p->block_used = 0;
	p->sharing = true;
	memcpy(view_at(shm, 0), p, sizeof(RetlProbe));
	return true;
}

/*
 * Share the leader's current part with the statement's parallel workers;
 * false if it cannot be: not integer keys, more than one part, or no
 * segment to be had.  Room for the keys the statement may add: the slots
 * the part has room for, or a quarter more than it holds (a first run: a
 * quarter more than the rows the planner expects, room the next run
 * finds kept), and blocks enough for every process; room for an index of
 * as many keys.
 */
bool
retl_probe_share(RetlProbe *p)
{
	int			nviews = max_worker_processes + 1;
	int64		maxslots;
	Size		view_size = TYPEALIGN(PG_CACHE_LINE_SIZE, sizeof(RetlProbe));
	Size		index_cap;
	Size		size;
	ProbeShm   *shm;

	if (p->shm != NULL)
		return refresh(p);
	if (!p->int_keys || p->nparts != 1 || p->no_share || p->overflowed)
		return false;
	/* (a first run's, the rows expected: a quarter more, kept for the next run) */
	maxslots = p->nslots == 0 ? p->maxslots + p->maxslots / 4 :
		Max(p->maxslots, p->nslots + p->nslots / 4);
	maxslots += (int64) nviews * SHARED_BLOCK * 2;
	/* (a first run's: for the rows expected, fresh memory being dear) */
	index_cap = Max(p->index == NULL ? 0 : (p->mask + 1) * sizeof(uint32),
					retl_probe_index_bytes(p->nslots == 0 ? p->maxslots : maxslots));
	size = TYPEALIGN(PG_CACHE_LINE_SIZE, sizeof(ProbeShm));
	size = add_size(size, mul_size(sizeof(Slot), maxslots));
	size = add_size(size, TYPEALIGN(PG_CACHE_LINE_SIZE, maxslots));
	size = add_size(size, index_cap);
	size = add_size(size, mul_size(view_size, nviews));
	shm = segment_for(p, size);
	if (shm == NULL)
		return false;
	shm->magic = PROBE_SHM_MAGIC;
	shm->leader_pid = MyProcPid;
	errno = 0;
	shm->nice = getpriority(PRIO_PROCESS, 0);
	if (errno != 0)
		shm->nice = 0;
	shm->nviews = nviews;
	shm->maxslots = maxslots;
	shm->slots_at = TYPEALIGN(PG_CACHE_LINE_SIZE, sizeof(ProbeShm));
	shm->flags_at = shm->slots_at + sizeof(Slot) * maxslots;
	shm->index_at = shm->flags_at + TYPEALIGN(PG_CACHE_LINE_SIZE, maxslots);
	shm->index_cap = index_cap;
	shm->views_at = shm->index_at + index_cap;
	shm->view_size = view_size;

	memcpy(shm_slots(shm), p->slots, sizeof(Slot) * p->nslots);
	memcpy(shm_flags(shm), p->flags, p->nslots);
	if (p->index != NULL)
		memcpy(shm_index(shm), p->index, (p->mask + 1) * sizeof(uint32));

	/* the leader probes the segment's arrays from now on */
	pfree(p->slots);
	pfree(p->flags);
	if (p->index != NULL)
	{
		pfree(p->index);
		p->index = shm_index(shm);
	}
	p->slots = shm_slots(shm);
	p->flags = shm_flags(shm);
	p->maxslots = maxslots;
	p->shm = shm;
	return refresh(p);
}

/*
 * Where a shared part's index of bytes goes: the segment's room for one,
 * if it is large enough (NULL: not shared, or not).
 */
uint32 *
retl_probe_shared_index(RetlProbe *p, Size bytes)
{
	if (p->shm == NULL || bytes > p->shm->index_cap)
		return NULL;
	return shm_index(p->shm);
}

/* Is mem (an array of the probe's) in its segment? */
bool
retl_probe_in_segment(RetlProbe *p, void *mem)
{
	return p->shm != NULL && (char *) mem >= (char *) p->shm &&
		(char *) mem < (char *) p->shm + dsm_segment_map_length((dsm_segment *) p->shm_seg);
}

/* Is the current part shared (with the last statement's workers)? */
bool
retl_probe_shared(RetlProbe *probe)
{
	return probe->shm != NULL;
}

/* The value of retl.run_probe_segment for a shared part. */
const char *
retl_probe_segment_name(RetlProbe *p)
{
	return psprintf("%u", dsm_segment_handle((dsm_segment *) p->shm_seg));
}

/*
 * An added key of a shared part: a slot of the process's block, seen.  No
 * block left: the part overflowed (the statement then only counts rows).
 */
void
retl_probe_shared_add(RetlProbe *p, int64 key, int64 hash)
{
	int64		i;

	if (p->block_start < 0 || p->block_used == SHARED_BLOCK)
	{
		uint64		start = pg_atomic_fetch_add_u64(&p->shm->next_free, SHARED_BLOCK);

		if (start + SHARED_BLOCK > (uint64) p->shm->maxslots)
		{
			p->overflowed = true;
			return;
		}
		p->block_start = (int64) start;
		p->block_used = 0;
	}
	i = p->block_start + p->block_used++;
	p->slots[i].key = key;
	p->slots[i].hash = hash;
	p->flags[i] = PROBE_SEEN;
}

/*
 * A parallel worker's view of the run's probe, made at its first call:
 * NULL if this is no worker of a run's statement (retl.run_probe_segment
 * unset, or naming no segment of this worker's leader's).
 */
RetlProbe *
retl_probe_worker_view(void)
{
	static RetlProbe *view = NULL;
	dsm_segment *seg;
	ProbeShm   *shm;
	RetlProbe  *v;
	char	   *end;
	unsigned long handle;

	if (view != NULL)
		return view;
	if (!IsParallelWorker() || retl_run_probe_segment == NULL || retl_run_probe_segment[0] == '\0' ||
		MyProc->lockGroupLeader == NULL)
		return NULL;
	errno = 0;
	handle = strtoul(retl_run_probe_segment, &end, 10);
	if (errno != 0 || *end != '\0' || handle > PG_UINT32_MAX)
		return NULL;
	seg = dsm_find_mapping((dsm_handle) handle);
	if (seg == NULL)
		seg = dsm_attach((dsm_handle) handle);
	if (seg == NULL)
		return NULL;
	shm = dsm_segment_address(seg);
	if (dsm_segment_map_length(seg) < sizeof(ProbeShm) || shm->magic != PROBE_SHM_MAGIC ||
		shm->leader_pid != MyProc->lockGroupLeader->pid ||
		ParallelWorkerNumber + 1 >= shm->nviews ||
		dsm_segment_map_length(seg) < shm->views_at + shm->view_size * shm->nviews)
	{
		dsm_detach(seg);
		return NULL;
	}
	dsm_pin_mapping(seg);
	/*
	 * A run's parallel workers are as nice as the run (runner.c).  (Taking
	 * only idle CPU time, Linux's SCHED_IDLE, did not keep realtime
	 * latency beside runs diffed again and again, and could leave the run
	 * waiting for a worker that gets none: a run plans its statement in
	 * one process while realtime syncs are busy instead, probe_plan.c.)
	 */
	if (shm->nice > 0 && setpriority(PRIO_PROCESS, 0, shm->nice) != 0)
		ereport(LOG,
				(errmsg("retl run's parallel worker could not lower its priority: %m")));
	v = view_at(shm, ParallelWorkerNumber + 1);
	memcpy(v, view_at(shm, 0), sizeof(RetlProbe));
	/* (the leader's pointers are not the worker's) */
	v->cxt = TopMemoryContext;
	v->part_cxt = NULL;
	v->tmp_cxt = NULL;
	v->sync_name = NULL;
	v->arena = NULL;
	v->arena_free = 0;
	v->jkeys = NULL;
	v->outer = NULL;
	v->snap = NULL;
	memset(&v->writer, 0, sizeof(v->writer));
	v->shm_seg = seg;
	v->shm = shm;
	v->slots = shm_slots(shm);
	v->flags = shm_flags(shm);
	v->index = v->index == NULL ? NULL : shm_index(shm);
	v->view = true;
	v->next = 0;
	v->block_start = -1;
	v->block_used = 0;
	v->part_rows = v->ticks = 0;
	v->added = v->changed = 0;
	v->duplicate = v->legacy = v->overflowed = false;
	v->null_key = NULL;
	v->null_text[0] = '\0';
	v->last_op = '\0';
	view = v;
	return view;
}

/*
 * After a statement that shared the part (its workers finished): add up
 * the workers' counts, close the holes of the blocks of added keys, and
 * index those keys (a key added twice found there).
 */
void
retl_probe_collect(RetlProbe *p)
{
	ProbeShm   *shm = p->shm;
	int64		ticks = 0;
	int64		end;
	int64		lo;
	int64		hi;

	if (shm == NULL)
		return;
	for (int i = 1; i < shm->nviews; i++)
	{
		RetlProbe  *v = view_at(shm, i);

		if (!v->view)
			continue;
		p->added += v->added;
		p->changed += v->changed;
		p->part_rows += v->part_rows;
		ticks += v->ticks;
		p->duplicate |= v->duplicate;
		p->legacy |= v->legacy;
		p->overflowed |= v->overflowed;
		if (p->null_key == NULL && v->null_text[0] != '\0')
			p->null_key = MemoryContextStrdup(p->cxt, v->null_text);
		/* (a worker is done with its view: it is not read again) */
		v->view = false;
	}
	retl_progress_add(ticks);
	p->sharing = false;
	if (p->overflowed)
	{
		/* loaded again, and not shared again */
		p->no_share = true;
		return;
	}

	/* the added keys: move the last ones into the holes of the blocks */
	end = (int64) Min(pg_atomic_read_u64(&shm->next_free), (uint64) shm->maxslots);
	lo = shm->base;
	hi = end - 1;
	for (;;)
	{
		while (lo <= hi && p->flags[lo] != 0)
			lo++;
		while (hi >= lo && p->flags[hi] == 0)
			hi--;
		if (lo >= hi)
			break;
		p->slots[lo] = p->slots[hi];
		p->flags[lo] = p->flags[hi];
		p->flags[hi] = 0;
	}
	p->nslots = lo;
	pg_atomic_write_u64(&shm->next_free, (uint64) p->nslots);
	p->block_start = -1;
	p->block_used = 0;
	if (p->index != NULL)
		retl_probe_index_added(p, shm->base);
	shm->base = p->nslots;
}

/*
 * The part's segment is done with (its arrays go with it): detached, but
 * for the kept one if it holds the part a run saved.
 */
void
retl_probe_unshare(RetlProbe *p)
{
	if (p->shm_seg == NULL)
		return;
	if (p->shm_seg == kept.seg)
	{
		kept.user = NULL;
		if (!kept.valid)
		{
			dsm_detach(kept.seg);
			kept.seg = NULL;
			kept.size = 0;
		}
	}
	else
		dsm_detach((dsm_segment *) p->shm_seg);
	p->shm_seg = NULL;
	p->shm = NULL;
	p->sharing = false;
	p->slots = NULL;
	p->flags = NULL;
	p->index = NULL;
}

/*
 * A part in a segment that needs more slots than it has (keys added by a
 * statement in one process): its arrays copied into the part's memory,
 * the segment done with.
 */
void
retl_probe_localize(RetlProbe *p)
{
	Slot	   *slots = retl_probe_alloc_array(p, sizeof(Slot) * p->maxslots, 0);
	uint8	   *flags = MemoryContextAllocExtended(p->part_cxt, p->maxslots, MCXT_ALLOC_HUGE);
	uint32	   *index = p->index;

	memcpy(slots, p->slots, sizeof(Slot) * p->nslots);
	memcpy(flags, p->flags, p->nslots);
	if (index != NULL && retl_probe_in_segment(p, index))
	{
		index = retl_probe_alloc_array(p, (p->mask + 1) * sizeof(uint32), 0);
		memcpy(index, p->index, (p->mask + 1) * sizeof(uint32));
	}
	retl_probe_unshare(p);
	p->slots = slots;
	p->flags = flags;
	p->index = index;
}

/*
 * After a run saved its part into what the sync stores (snapshot.c): keep
 * the part in the runner's segment as a load of what is now stored would
 * give it, with what is stored, for the sync's next run in this runner.
 * The slots the rows had are stored with the rows' hashes; the others
 * (removed, or forgotten and not seen) are as if never stored, forgotten
 * (not kept if they are many: a load drops them).  What is stored is read
 * back as the run's transaction sees it now: if the run does not commit,
 * the next one sees what was stored before it, and loads it.
 */
void
retl_probe_keep(RetlProbe *p)
{
	int64		forgotten = 0;
	Snapshot	snap;

	if (p->shm_seg == NULL || p->shm_seg != kept.seg || p->nparts != 1 || !p->int_keys ||
		p->overflowed || p->nslots == 0)
		return;
	for (int64 i = 0; i < p->nslots; i++)
	{
		if (p->flags[i] & PROBE_SEEN)
			p->flags[i] = PROBE_STORED;
		else
		{
			p->flags[i] = PROBE_FORGOTTEN;
			forgotten++;
		}
	}
	if (forgotten > p->nslots / 8)
		return;
	CommandCounterIncrement();
	snap = RegisterSnapshot(GetLatestSnapshot());
	retl_snapshot_size(p->sync_id, snap, &kept.stored);
	UnregisterSnapshot(snap);
	kept.valid = true;
	kept.sync_id = p->sync_id;
	kept.nslots = p->nslots;
	kept.mask = p->index != NULL && p->index == shm_index(p->shm) ? p->mask : 0;
}

/* Is what a sync stores the same (but for the edits since)? */
static bool
same_stored(RetlSnapshotSize *a, RetlSnapshotSize *b)
{
	return a->entries == b->entries && a->bytes == b->bytes &&
		a->jsonb_chunks == b->jsonb_chunks && a->int_chunks == b->int_chunks &&
		a->delta_entries == b->delta_entries && a->delta_chunks == b->delta_chunks &&
		a->next_chunk == b->next_chunk && a->chunks == b->chunks &&
		a->xmin_sum == b->xmin_sum && a->xmin_max == b->xmin_max;
}

/*
 * Take the part the runner kept for the run (retl_probe_keep), if it is
 * of the sync, what the sync stores is what the last run saved (p->stored,
 * as the run sees it), and the segment has room for the run to grow; the
 * caller applies the edits since.  False if not (the caller loads it).
 */
bool
retl_probe_adopt(RetlProbe *p)
{
	ProbeShm   *shm;

	if (!kept.valid || kept.user != NULL || kept.sync_id != p->sync_id || !p->int_keys ||
		p->nparts != 1 || !same_stored(&kept.stored, &p->stored))
		return false;
	shm = dsm_segment_address(kept.seg);
	/* (else loaded, into a larger segment) */
	if (shm->maxslots - kept.nslots < kept.nslots / 8 + p->stored.edits + (int64) shm->nviews * SHARED_BLOCK * 2 ||
		retl_probe_index_bytes(kept.nslots + 1) > shm->index_cap)
		return false;
	kept.valid = false;
	kept.user = p;
	p->shm_seg = kept.seg;
	p->shm = shm;
	p->slots = shm_slots(shm);
	p->flags = shm_flags(shm);
	p->maxslots = shm->maxslots;
	p->nslots = kept.nslots;
	p->mask = kept.mask;
	p->index = kept.mask != 0 ? shm_index(shm) : NULL;
	return true;
}
