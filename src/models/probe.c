/*
 * probe.c: a diff run's snapshot in memory, probed by its query.
 *
 * A run compares every row of a sync's query with the sync's snapshot
 * (the hash of each key's values as last synced: snapshot.c).  Joining
 * the two in SQL costs a hash join of the whole result with the whole
 * snapshot: most of a run's time.  Instead the run loads the snapshot's
 * keys and hashes into a hash table of its own, and its query calls
 * retl._run_probe(key, hash) for each row, which says what the row is:
 * A(dded), C(hanged) (or a key a resync forgot, of a run that sends
 * changes: classify), U(nchanged), L (the snapshot holds a hash of retl
 * 0.1, which the caller compares), N (a NULL key) or NULL (a row of
 * another part, a second row with one key (A in a part that held no key:
 * the run fails on it all the same), or an op the run does not write),
 * and keeps the row's hash under its key (an added key gets a
 * slot).  The keys never seen are the removed ones; the slots seen are
 * the new snapshot, which the run saves part by part.  JSON is built only
 * for the rows that are written.
 *
 * The keys are kept in the order the snapshot is read in, with an index by
 * hash (open addressing, positions of 4 bytes).  A query that returns its
 * rows in the order of the last run (a table read in its physical order)
 * finds each key right after the previous one, without touching the index:
 * one key after another in memory instead of a cache miss for each (and a
 * part that holds no key, a first run's, is indexed only after the query
 * added its keys, a key added twice found then).  A
 * single integer key column is kept as its value (exact); any other key as
 * its jsonb, under the hash of its bytes, compared byte by byte.  About 33
 * bytes an integer key (a slot of 16, its flags, its share of the index).
 * A snapshot larger than retl.run_memory is split into parts,
 * ranges of key hashes: the query runs once for each, a row counting in
 * the part of its key only.  A first part that outgrows it with the keys
 * the query adds overflows: the query then only counts its rows, and the
 * caller runs it again in more parts.
 *
 * Loading and saving it: probe_load.c; the keys no row had:
 * probe_removed.c; shared with a statement's parallel workers, and kept
 * by the runner for the sync's next run: probe_share.c.  The table lives
 * in a memory context of the run (or in the segment it is shared in); the
 * context's reset callback forgets it, so an error anywhere leaves no
 * probe behind.
 */
#include "postgres.h"

#include <sys/mman.h>

#include "access/parallel.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "base/guc.h"
#include "base/progress.h"
#include "models/jsonkey.h"
#include "models/probe_table.h"
#include "models/rowhash.h"

static RetlProbe *active = NULL;

static void forget_probe(void *arg);

/* A probe, made the one the run's query probes (until its memory goes). */
void
retl_probe_activate(RetlProbe *p)
{
	p->forget.func = forget_probe;
	p->forget.arg = p;
	MemoryContextRegisterResetCallback(p->cxt, &p->forget);
	p->outer = active;
	active = p;
}

static void
forget_probe(void *arg)
{
	RetlProbe  *p = (RetlProbe *) arg;

	if (active == p)
		active = p->outer;
	retl_probe_unshare(p);
}

/* The probe the run's query probes in this process (NULL: none). */
RetlProbe *
retl_probe_active(void)
{
	return active;
}

/* the transparent huge pages of x86-64's and arm64's 4 kB pages */
#define HUGE_PAGE_SIZE	(2 * 1024 * 1024)

/*
 * Ask the kernel to back a large array of the part's (its slots, its
 * index) with transparent huge pages, where it offers them (enabled
 * "always" or "madvise").  A run fills tens of megabytes of fresh memory
 * at once (a million keys: 16 MB of slots and an 8 MB index); taken 4 kB
 * at a time, their first writes were a third of loading such a snapshot
 * (each fault 9 us on a 2-core VM), 2 MB at a time they cost little.  It
 * is only advice: the memory and its accounting stay the same.
 */
static void
advise_huge_pages(void *mem, Size size)
{
#ifdef MADV_HUGEPAGE
	uintptr_t	start = TYPEALIGN(HUGE_PAGE_SIZE, (uintptr_t) mem);
	uintptr_t	end = TYPEALIGN_DOWN(HUGE_PAGE_SIZE, (uintptr_t) mem + size);

	if (end > start)
		(void) madvise((void *) start, end - start, MADV_HUGEPAGE);
#endif
}

/*
 * Room for a large array of the part's, not yet touched (flags:
 * MCXT_ALLOC_NO_OOM for NULL rather than an error when there is none).
 */
void *
retl_probe_alloc_array(RetlProbe *p, Size size, int flags)
{
	void	   *mem = MemoryContextAllocExtended(p->part_cxt, size, MCXT_ALLOC_HUGE | flags);

	if (mem != NULL)
		advise_huge_pages(mem, size);
	return mem;
}

/*
 * Room for n slots (their flags, and jsonb keys if not integers), not yet
 * touched, for a part that holds none yet: the slots it had are freed.
 * False (and nothing changed) when there is no memory for it and flags
 * has MCXT_ALLOC_NO_OOM.
 */
bool
retl_probe_alloc_slots(RetlProbe *p, int64 n, int flags)
{
	Slot	   *slots = retl_probe_alloc_array(p, sizeof(Slot) * n, flags);
	uint8	   *flag_array = slots == NULL ? NULL :
		MemoryContextAllocExtended(p->part_cxt, n, MCXT_ALLOC_HUGE | flags);
	struct varlena **jkeys = NULL;

	if (flag_array != NULL && !p->int_keys)
		jkeys = MemoryContextAllocExtended(p->part_cxt, sizeof(struct varlena *) * n,
										   MCXT_ALLOC_HUGE | flags);
	if (flag_array == NULL || (!p->int_keys && jkeys == NULL))
	{
		if (slots != NULL)
			pfree(slots);
		if (flag_array != NULL)
			pfree(flag_array);
		return false;
	}
	if (p->slots != NULL)
		pfree(p->slots);
	if (p->flags != NULL)
		pfree(p->flags);
	if (p->jkeys != NULL)
		pfree(p->jkeys);
	p->slots = slots;
	p->flags = flag_array;
	p->jkeys = jkeys;
	p->maxslots = n;
	return true;
}

/* Room for a key in the part's memory, packed among the others. */
static char *
key_room(RetlProbe *p, Size size)
{
	Size		len = INTALIGN(size);
	char	   *room;

	if (len > p->arena_free)
	{
		Size		block = Max(len, 256 * 1024);

		p->arena = MemoryContextAlloc(p->part_cxt, block);
		p->arena_free = block;
	}
	room = p->arena;
	p->arena += len;
	p->arena_free -= len;
	return room;
}

/* A key stored as its bytes, as a jsonb in the part's memory. */
struct varlena *
retl_probe_keep_key_bytes(RetlProbe *p, const char *data, uint32 len)
{
	char	   *copy = key_room(p, len + VARHDRSZ);

	SET_VARSIZE(copy, len + VARHDRSZ);
	memcpy(VARDATA(copy), data, len);
	return (struct varlena *) copy;
}

/* A copy of a key in the part's memory. */
struct varlena *
retl_probe_keep_key(RetlProbe *p, struct varlena *key)
{
	return retl_probe_keep_key_bytes(p, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
}

/* Bytes of the index of n keys (at most half full) */
Size
retl_probe_index_bytes(int64 n)
{
	uint64		size = 1024;

	while (size < (uint64) n * 2)
		size *= 2;
	return size * sizeof(uint32);
}

/*
 * Index slot i; find_twice: and note (as a duplicate) a key indexed
 * before it that is the same.
 */
static inline void
index_slot(RetlProbe *p, int64 i, bool find_twice)
{
	Slot	   *slot = &p->slots[i];
	uint64		at = slot_hash(p, slot->key) & p->mask;

	while (p->index[at] != 0)
	{
		Slot	   *other = &p->slots[p->index[at] - 1];

		if (find_twice && other->key == slot->key &&
			(p->int_keys || same_key(slot_jkey(p, other), slot_jkey(p, slot))))
			p->duplicate = true;
		at = (at + 1) & p->mask;
	}
	p->index[at] = (uint32) (i + 1);
}

/*
 * The memory the part takes, with the index a part that held no key builds
 * after its query (not allocated yet, counted all the same).
 */
Size
retl_probe_part_bytes(RetlProbe *p)
{
	return MemoryContextMemAllocated(p->part_cxt, true) +
		(p->index == NULL ? retl_probe_index_bytes(p->nslots + 1) : 0);
}

/* how many keys ahead build_index asks for the index's memory */
#define PREFETCH_AHEAD	16

#if defined(__GNUC__) || defined(__clang__)
#define prefetch_for_write(addr) __builtin_prefetch((addr), 1)
#else
#define prefetch_for_write(addr) ((void) (addr))
#endif

/* Index the part's keys by hash (find_twice: see index_slot). */
static void
build_index(RetlProbe *p, bool find_twice)
{
	Size		bytes = retl_probe_index_bytes(p->nslots + 1);
	uint32	   *area;

	if (p->nslots >= PG_UINT32_MAX / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a part of the snapshot of sync %d has more than 2 billion keys", p->sync_id),
				 errhint("Lower retl.run_memory.")));
	/* (a shared part's index is in its segment, if there is room: probe_share.c) */
	area = retl_probe_shared_index(p, bytes);
	if (p->index != NULL && !retl_probe_in_segment(p, p->index))
		pfree(p->index);
	p->index = area != NULL ? area : retl_probe_alloc_array(p, bytes, 0);
	memset(p->index, 0, bytes);
	p->mask = bytes / sizeof(uint32) - 1;
	for (int64 i = 0; i < p->nslots; i++)
	{
		/*
		 * Each key's place is a cache miss of its own (a million keys: an
		 * 8 MB index): ask for the place of the key PREFETCH_AHEAD on while
		 * indexing this one (1M keys, scratch cluster, 8.7-17.9 ms, median
		 * 9.2, against 10.5-29.5, median 14).
		 */
		if (i + PREFETCH_AHEAD < p->nslots)
			prefetch_for_write(&p->index[slot_hash(p, p->slots[i + PREFETCH_AHEAD].key) & p->mask]);
		index_slot(p, i, find_twice);
	}
}

void
retl_probe_build_index(RetlProbe *p)
{
	build_index(p, false);
}

/* The same, noting (as a duplicate) a key found twice. */
void
retl_probe_build_index_twice(RetlProbe *p)
{
	build_index(p, true);
}

/*
 * Index the slots from from on, which a shared part's statement added
 * (probe_share.c), noting a key added twice.
 */
void
retl_probe_index_added(RetlProbe *p, int64 from)
{
	if ((uint64) p->nslots * 2 > p->mask + 1)
	{
		build_index(p, true);
		return;
	}
	for (int64 i = from; i < p->nslots; i++)
		index_slot(p, i, true);
}

/* A new slot (indexed once the index is built); returns its position. */
int64
retl_probe_add_slot(RetlProbe *p, int64 key, int64 hash, struct varlena *jkey, uint8 flags)
{
	Slot	   *slot;

	if (p->nslots == p->maxslots)
	{
		if (p->shm != NULL)
			retl_probe_localize(p);
		p->maxslots *= 2;
		p->slots = repalloc_huge(p->slots, sizeof(Slot) * p->maxslots);
		advise_huge_pages(p->slots, sizeof(Slot) * p->maxslots);
		p->flags = repalloc_huge(p->flags, p->maxslots);
		if (p->jkeys != NULL)
			p->jkeys = repalloc_huge(p->jkeys, sizeof(struct varlena *) * p->maxslots);
	}
	slot = &p->slots[p->nslots];
	slot->key = key;
	slot->hash = hash;
	p->flags[p->nslots] = flags;
	if (p->jkeys != NULL)
		p->jkeys[p->nslots] = jkey;
	p->nslots++;
	if (p->index != NULL)
	{
		if ((uint64) p->nslots * 2 > p->mask + 1)
			retl_probe_build_index(p);
		else
			index_slot(p, p->nslots - 1, false);
	}
	return p->nslots - 1;
}


/*
 * The ops the run writes (op letters; L and N, which the run checks
 * itself, are always written): the probe answers NULL for a row of
 * another op, so the query passes on only the rows it writes, with no
 * test of its own.
 */
void
retl_probe_write_ops(RetlProbe *probe, const char *ops)
{
	memset(probe->written, 0, sizeof(probe->written));
	for (const char *c = ops; *c; c++)
		probe->written[(unsigned char) *c] = true;
	probe->written['L'] = true;
	probe->written['N'] = true;
}

bool
retl_probe_int_keys(RetlProbe *probe)
{
	return probe->int_keys;
}

int
retl_probe_parts(RetlProbe *probe)
{
	return probe->nparts;
}

int64
retl_probe_snapshot_rows(RetlProbe *probe)
{
	return probe->snapshot_rows;
}

/* The removed keys, of the parts so far, that a resync had forgotten */
int64
retl_probe_resynced_removed(RetlProbe *probe)
{
	return probe->resynced_removed;
}

bool
retl_probe_duplicate(RetlProbe *probe)
{
	return probe->duplicate;
}

bool
retl_probe_legacy(RetlProbe *probe)
{
	return probe->legacy;
}

/* The first key that was or held NULL, as text; NULL if none */
const char *
retl_probe_null_key(RetlProbe *probe)
{
	return probe->null_key;
}

/* Rows answered A and C, of every part so far */
void
retl_probe_counts(RetlProbe *probe, int64 *added, int64 *changed)
{
	*added = probe->added;
	*changed = probe->changed;
}

/*
 * A key added by the query: its slot, seen.  Part 0 that outgrows
 * retl.run_memory overflows (checked every 4096 keys): the query then
 * only counts its rows, to run again in more parts.
 */
static void
add_key(RetlProbe *p, int64 key, struct varlena *jkey, int64 hash)
{
	if (p->sharing)
	{
		/* (integer keys only) */
		retl_probe_shared_add(p, key, hash);
		return;
	}
	(void) retl_probe_add_slot(p, key, hash, jkey == NULL ? NULL : retl_probe_keep_key(p, jkey), PROBE_SEEN);
	if (p->part == 0 && p->nparts < 1024 && p->nslots % 4096 == 0 &&
		retl_probe_part_bytes(p) > (Size) retl_run_memory_kb * 1024)
		p->overflowed = true;
}

/*
 * What a row is, given its key's slot (NULL: not in the snapshot): the
 * slot then holds the row's hash, to be saved.
 */
static inline Datum
classify(RetlProbe *p, Slot *slot, int64 key, struct varlena *jkey, int64 hash)
{
	uint8	   *flags;

	if (slot == NULL)
	{
		add_key(p, key, jkey, hash);
		p->added++;
		return CharGetDatum('A');
	}
	flags = slot_flags(p, slot);
	p->next = (slot - p->slots) + 1;
	if (*flags & PROBE_SEEN)
	{
		/* a second row with this key: the run names it and fails */
		p->duplicate = true;
		return CharGetDatum('U');
	}
	*flags |= PROBE_SEEN;
	if (slot->hash != hash)
		*flags |= PROBE_DIRTY;
	if (*flags & PROBE_FORGOTTEN)
	{
		bool		resynced = (*flags & PROBE_RESYNCED) != 0;

		*flags &= ~(PROBE_FORGOTTEN | PROBE_RESYNCED);
		slot->hash = hash;
		p->added++;

		/*
		 * A key a resync forgot, synced before it: the destination may
		 * have it.  Where the run sends changes it goes as one (counted
		 * as added all the same: the resync forgot the snapshot), so that
		 * a dead letter of it keeps it stale (queue/outcome.c): as added,
		 * it was forgotten, and a mirror never deleted it once it left
		 * the result, an update sync never sent it (nor, resynced, any
		 * row).  An insert sync, which sends added rows only, inserts it
		 * again, and one dead-lettered is inserted again by the next run.
		 */
		return CharGetDatum(resynced && p->written['C'] ? 'C' : 'A');
	}
	if (*flags & PROBE_LEGACY)
	{
		slot->hash = hash;
		p->legacy = true;
		return CharGetDatum('L');
	}
	if (slot->hash == hash)
		return CharGetDatum('U');
	slot->hash = hash;
	p->changed++;
	return CharGetDatum('C');
}

/*
 * Remember the answer given a row (its key: an integer, the hash of a
 * jsonb key, or none for NULL), for retl._run_probe_op over the same row.
 */
static inline void
remember(RetlProbe *p, bool null_key, int64 key, char op)
{
	p->last_null = null_key;
	p->last_key = key;
	p->last_op = op;
}

/*
 * Keep the first key that is or holds NULL (as the run's diff would show
 * it: an integer key as a jsonb array), for the run's error.
 */
static void
keep_null_key(RetlProbe *p, FunctionCallInfo fcinfo)
{
	MemoryContext old;

	if (p->null_key != NULL)
		return;
	old = MemoryContextSwitchTo(p->cxt);
	if (PG_ARGISNULL(0))
		p->null_key = pstrdup(p->int_keys ? "[null]" : "null");
	else if (p->int_keys)
		p->null_key = psprintf("[" INT64_FORMAT "]", PG_GETARG_INT64(0));
	else
	{
		Jsonb	   *key = PG_GETARG_JSONB_P(0);

		p->null_key = JsonbToCString(NULL, &key->root, VARSIZE(key));
	}
	MemoryContextSwitchTo(old);
	/* (a worker's, for its leader: integer keys only) */
	if (p->view)
		strlcpy(p->null_text, p->null_key, sizeof(p->null_text));
}

/* A NULL key: N (failing the run), in the first part. */
static Datum
null_key(RetlProbe *p, FunctionCallInfo fcinfo)
{
	if (p->part != 0 || p->overflowed)
		PG_RETURN_NULL();
	retl_progress_tick();
	p->ticks++;
	keep_null_key(p, fcinfo);
	remember(p, true, 0, 'N');
	PG_RETURN_DATUM(CharGetDatum('N'));
}

/* An op, if the query writes it, else NULL */
static inline Datum
answer(RetlProbe *p, FunctionCallInfo fcinfo, int64 key, Datum op)
{
	if (!p->written[(unsigned char) DatumGetChar(op)])
		PG_RETURN_NULL();
	remember(p, false, key, DatumGetChar(op));
	PG_RETURN_DATUM(op);
}

static RetlProbe *
active_probe(void)
{
	if (active == NULL && IsParallelWorker())
	{
		/* a parallel worker of the run's statement (probe_share.c) */
		RetlProbe  *view = retl_probe_worker_view();

		if (view != NULL)
			return view;
	}
	if (active == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("retl._run_probe() may only be called by the query of a run")));
	return active;
}

/*
 * Count a row whose key hashes to h, if it is of the current part; false
 * if it is not, or if the part overflowed (the row is then only counted).
 */
static inline bool
probe_counts(RetlProbe *p, uint64 h)
{
	if (part_of(p, h) != p->part)
		return false;
	retl_progress_tick();
	p->ticks++;
	p->part_rows++;
	return !p->overflowed;
}

/* The row's hash: argument 1, or of its values, arguments 1 on */
static inline int64
row_hash(FunctionCallInfo fcinfo, bool values)
{
	return values ? (int64) retl_hash_args(fcinfo, 1) : PG_GETARG_INT64(1);
}

/*
 * A row of the run's query whose key (argument 0) is one integer column,
 * and the hash of its values (argument 1), or its values (arguments 1 on,
 * hashed only if the row is of the current part).
 */
static Datum
probe_int(FunctionCallInfo fcinfo, bool values)
{
	RetlProbe  *p = active_probe();
	int64		k;

	if (!p->int_keys)
		elog(ERROR, "retl: a run probed integer keys in a snapshot of others");
	p->last_op = '\0';
	if (PG_ARGISNULL(0) || (!values && PG_ARGISNULL(1)))
		return null_key(p, fcinfo);
	k = PG_GETARG_INT64(0);
	if (!probe_counts(p, mix64((uint64) k)))
		PG_RETURN_NULL();
	return answer(p, fcinfo, k, classify(p, p->index == NULL ? NULL : find_slot(p, k, NULL), k, NULL,
										 row_hash(fcinfo, values)));
}

/* The same, of a row whose key is a jsonb array. */
static Datum
probe_key(FunctionCallInfo fcinfo, bool values)
{
	RetlProbe  *p = active_probe();
	struct varlena *key;
	uint64		h;
	Slot	   *slot;

	if (p->int_keys)
		elog(ERROR, "retl: a run probed jsonb keys in a snapshot of integers");
	p->last_op = '\0';
	if (PG_ARGISNULL(0) || (!values && PG_ARGISNULL(1)))
		return null_key(p, fcinfo);
	key = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));
	h = key_hash(key);
	if (!probe_counts(p, h))
		PG_RETURN_NULL();
	slot = p->index == NULL ? NULL : find_slot(p, (int64) h, key);
	/* a key holding a NULL is N (the snapshot holds none) */
	if (slot == NULL && retl_key_holds_null(key))
	{
		keep_null_key(p, fcinfo);
		remember(p, false, (int64) h, 'N');
		PG_RETURN_DATUM(CharGetDatum('N'));
	}
	return answer(p, fcinfo, (int64) h, classify(p, slot, (int64) h, key, row_hash(fcinfo, values)));
}

PG_FUNCTION_INFO_V1(retl_run_probe_int);
PG_FUNCTION_INFO_V1(retl_run_probe_key);
PG_FUNCTION_INFO_V1(retl_run_probe_int_values);
PG_FUNCTION_INFO_V1(retl_run_probe_key_values);

/*
 * retl._run_probe(key bigint, hash bigint) → "char": what a row of the
 * run's query is, of a sync whose key is one integer column (NULL:
 * another part's, a part that overflowed, or an op the run does not
 * write).
 */
Datum
retl_run_probe_int(PG_FUNCTION_ARGS)
{
	return probe_int(fcinfo, false);
}

/* retl._run_probe(key jsonb, hash bigint) → "char": the same, a jsonb key */
Datum
retl_run_probe_key(PG_FUNCTION_ARGS)
{
	return probe_key(fcinfo, false);
}

/*
 * retl._run_probe_values(key bigint, VARIADIC "any") → "char": the same,
 * given the row's values, hashed as retl._values_hash does, and only for
 * the rows of the current part.
 */
Datum
retl_run_probe_int_values(PG_FUNCTION_ARGS)
{
	return probe_int(fcinfo, true);
}

/* retl._run_probe_values(key jsonb, VARIADIC "any") → "char" */
Datum
retl_run_probe_key_values(PG_FUNCTION_ARGS)
{
	return probe_key(fcinfo, true);
}

/* Did the probe just called answer the row (a non-NULL op)?  As a boolean. */
static Datum
answered(FunctionCallInfo fcinfo)
{
	bool		op = !fcinfo->isnull;

	fcinfo->isnull = false;
	PG_RETURN_BOOL(op);
}

PG_FUNCTION_INFO_V1(retl_run_probe_filter_int);
PG_FUNCTION_INFO_V1(retl_run_probe_filter_key);

/*
 * retl._run_probe_filter(key bigint, VARIADIC "any") → boolean: does
 * retl._run_probe_values answer the row (a run's statement filters the
 * query's rows by it: probe_plan.c)?
 */
Datum
retl_run_probe_filter_int(PG_FUNCTION_ARGS)
{
	(void) probe_int(fcinfo, true);
	return answered(fcinfo);
}

/* retl._run_probe_filter(key jsonb, VARIADIC "any") → boolean */
Datum
retl_run_probe_filter_key(PG_FUNCTION_ARGS)
{
	(void) probe_key(fcinfo, true);
	return answered(fcinfo);
}

/*
 * The share of the query's rows the probe is expected to answer (the
 * planner's selectivity of retl._run_probe_filter): every row, of a run
 * from no key that writes the keys it adds (a first run that sends); else
 * the few that changed, assumed a hundredth.
 */
double
retl_probe_expected_share(void)
{
	RetlProbe  *p = active;

	if (p != NULL && p->nslots == 0 && p->written['A'])
		return 1.0;
	return 0.01;
}

PG_FUNCTION_INFO_V1(retl_run_probe_op_int);
PG_FUNCTION_INFO_V1(retl_run_probe_op_key);

/*
 * The answer retl._run_probe_values gave the row just probed, whose key
 * (NULL: is_null) is key as slots keep it (an integer, or the hash of a
 * jsonb key).  A run whose query filters its rows by that answer (WHERE
 * retl._run_probe_values(...) IS NOT NULL, made the last condition of the
 * node that reads the rows: probe_plan.c) reads it in its output columns,
 * which the executor computes for that row before it reads the next.  Any
 * other row is an error, never another row's answer.
 */
static Datum
last_answer(RetlProbe *p, bool is_null, int64 key)
{
	if (p->last_op == '\0' || p->last_null != is_null || p->last_key != key)
		elog(ERROR, "retl: the query of a run read the answer of the probe for another row");
	PG_RETURN_DATUM(CharGetDatum(p->last_op));
}

/* retl._run_probe_op(key bigint) → "char": of a sync of integer keys */
Datum
retl_run_probe_op_int(PG_FUNCTION_ARGS)
{
	RetlProbe  *p = active_probe();

	if (!p->int_keys)
		elog(ERROR, "retl: a run read the probe's answer for an integer key in a snapshot of others");
	return last_answer(p, PG_ARGISNULL(0), PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0));
}

/* retl._run_probe_op(key jsonb) → "char": of a sync of jsonb keys */
Datum
retl_run_probe_op_key(PG_FUNCTION_ARGS)
{
	RetlProbe  *p = active_probe();

	if (p->int_keys)
		elog(ERROR, "retl: a run read the probe's answer for a jsonb key in a snapshot of integers");
	return last_answer(p, PG_ARGISNULL(0), PG_ARGISNULL(0) ? 0 :
					   (int64) key_hash(PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0))));
}
