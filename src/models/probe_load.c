/*
 * probe_load.c: a diff run's snapshot in memory (probe.c), loaded from
 * what is stored (snapshot.c) part by part, with the worker's edits
 * applied, and saved part by part as the run's query reads each.
 *
 * A part is a range of key hashes: the keys whose hash's high bits fall
 * in it.  The parts are planned from the stored snapshot's size, each to
 * take at most retl.run_memory with room to grow.  Keys stored in the
 * form the run keeps them in (integers, or jsonb under the hash of their
 * bytes) are read from the chunks of the part's range only; keys stored in
 * the other form (a key's type changed) are converted, from every chunk.
 * The chunks are read with a snapshot taken as the run began, so a later
 * part does not see what the run wrote of an earlier one.
 */
#include "postgres.h"

#include <math.h>

#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "base/guc.h"
#include "models/jsonkey.h"
#include "models/probe.h"
#include "models/probe_table.h"
#include "models/snapshot.h"

static void
new_part(RetlProbe *p)
{
	retl_probe_unshare(p);
	MemoryContextReset(p->part_cxt);
	p->slots = NULL;
	p->flags = NULL;
	p->jkeys = NULL;
	/* a part's share of the snapshot, and some room to grow */
	(void) retl_probe_alloc_slots(p, Max(1024, (p->stored.entries + p->stored.edits) / p->nparts * GROWTH), 0);
	p->nslots = 0;
	p->index = NULL;
	p->mask = 0;
	p->next = 0;
	p->arena = NULL;
	p->arena_free = 0;
	p->part_rows = 0;
}

/*
 * A jsonb key as the run keeps it (its hash, for jsonb keys); false if it
 * is not an integer where the run's are.  An integer's conversion resets
 * the scratch context (and what the caller put there).
 */
static bool
run_key(RetlProbe *p, struct varlena *key, int64 *k)
{
	MemoryContext old;
	bool		ok;

	if (!p->int_keys)
	{
		*k = (int64) key_hash(key);
		return true;
	}
	old = MemoryContextSwitchTo(p->tmp_cxt);
	ok = retl_stored_int_key(key, k);
	MemoryContextSwitchTo(old);
	MemoryContextReset(p->tmp_cxt);
	return ok;
}

/* A stored jsonb key's bytes as a jsonb, in the scratch context. */
static struct varlena *
scratch_key(RetlProbe *p, const char *jkey, uint32 jlen)
{
	struct varlena *key = MemoryContextAlloc(p->tmp_cxt, jlen + VARHDRSZ);

	SET_VARSIZE(key, jlen + VARHDRSZ);
	memcpy(VARDATA(key), jkey, jlen);
	return key;
}

/* A delta's entry over the part's keys (each loaded as stored, indexed). */
static void
apply_delta(RetlProbe *p, RetlEntryKind kind, int64 key, int64 hash, struct varlena *jkey)
{
	Slot	   *slot;

	if (p->index == NULL)
		retl_probe_build_index(p);
	slot = find_slot(p, key, jkey);
	if (kind == RETL_ENTRY_REMOVED)
	{
		/* as if never stored: a row of it is added, none is no removal */
		if (slot != NULL)
			*slot_flags(p, slot) = PROBE_FORGOTTEN;
		return;
	}
	if (slot == NULL)
	{
		(void) retl_probe_add_slot(p, key, hash,
								   jkey == NULL ? NULL : retl_probe_keep_key(p, jkey), PROBE_STORED);
		return;
	}
	slot->hash = hash;
	*slot_flags(p, slot) = PROBE_STORED;
}

/* A stored entry into the current part, if it is the part's. */
static void
add_stored(void *arg, RetlEntryKind kind, int64 key, int64 hash, const char *jkey, uint32 jlen)
{
	RetlProbe  *p = (RetlProbe *) arg;
	struct varlena *jb = NULL;	/* the key as a jsonb run keeps it */

	if (p->reload)
		return;
	if (p->int_keys && jkey != NULL)
	{
		/* a jsonb key, where the run's are integers (a key's type changed) */
		if (!run_key(p, scratch_key(p, jkey, jlen), &key))
		{
			p->reload = true;
			return;
		}
	}
	else if (!p->int_keys && jkey == NULL)
	{
		/* an integer key, where the run's are jsonb: as the run makes it */
		MemoryContext old = MemoryContextSwitchTo(p->tmp_cxt);

		jb = (struct varlena *) retl_int_key_jsonb(key);
		MemoryContextSwitchTo(old);
		key = (int64) key_hash(jb);
	}
	else if (!p->int_keys)
		key = (int64) key_hash_bytes(jkey, jlen);
	if (part_of(p, slot_hash(p, key)) == p->part)
	{
		if (!p->int_keys && jb == NULL && kind != RETL_ENTRY_BASE)
			jb = scratch_key(p, jkey, jlen);	/* a delta's key, to look up */
		if (kind != RETL_ENTRY_BASE)
			apply_delta(p, kind, key, hash, jb);
		else if (p->int_keys)
			(void) retl_probe_add_slot(p, key, hash, NULL, PROBE_STORED);
		else
			(void) retl_probe_add_slot(p, key, hash,
									   jb != NULL ? retl_probe_keep_key(p, jb) : retl_probe_keep_key_bytes(p, jkey, jlen),
									   PROBE_STORED);
	}
	if (jb != NULL)
		MemoryContextReset(p->tmp_cxt);
}

/* An edit of the worker's, if of the current part's keys. */
static void
apply_edit(void *arg, RetlSnapshotEdit *e)
{
	RetlProbe  *p = (RetlProbe *) arg;
	int64		key;
	Slot	   *slot;
	uint8	   *flags;

	if (p->reload)
		return;
	if (e->kind == RETL_EDIT_FORGET_ALL)
	{
		/*
		 * A resync: nothing so far is synced.  The keys that were (not
		 * forgotten already) are marked: the destination may have them, so
		 * one that no row has any more is removed all the same.
		 */
		for (int64 i = 0; i < p->nslots; i++)
			p->flags[i] |= (p->flags[i] & PROBE_FORGOTTEN) ? 0 : PROBE_FORGOTTEN | PROBE_RESYNCED;
		return;
	}
	if (!run_key(p, e->key, &key))
	{
		p->reload = true;
		return;
	}
	if (part_of(p, slot_hash(p, key)) != p->part)
		return;
	slot = find_slot(p, key, p->int_keys ? NULL : e->key);
	if (slot == NULL && e->kind != RETL_EDIT_FORGET)
	{
		/* (the slots may move as one is added) */
		int64		at = retl_probe_add_slot(p, key, 0, p->int_keys ? NULL : retl_probe_keep_key(p, e->key), 0);

		slot = &p->slots[at];
	}
	if (slot == NULL)
		return;
	flags = slot_flags(p, slot);
	if (e->kind == RETL_EDIT_FORGET)
	{
		/*
		 * (its hash stays: as stored, a row of it as it was writes no
		 * delta; a dead-lettered added key, forgotten after a resync
		 * forgot every key: the destination never had it)
		 */
		*flags = (*flags | PROBE_FORGOTTEN) & ~PROBE_RESYNCED;
		return;
	}
	if (slot->hash != e->hash || e->kind == RETL_EDIT_LEGACY)
		*flags |= PROBE_DIRTY;
	slot->hash = e->hash;
	*flags = (*flags & (PROBE_STORED | PROBE_DIRTY)) |
		(e->kind == RETL_EDIT_LEGACY ? PROBE_LEGACY : 0);
}

/* Does an edit's key fit the run's form?  (Checked before any part.) */
static void
check_edit(void *arg, RetlSnapshotEdit *e)
{
	RetlProbe  *p = (RetlProbe *) arg;
	int64		key;

	if (p->int_keys && e->kind != RETL_EDIT_FORGET_ALL && !run_key(p, e->key, &key))
		p->int_keys = false;
}

/* Count the part's keys that are synced, into the snapshot's. */
static void
count_keys(RetlProbe *p)
{
	for (int64 i = 0; i < p->nslots; i++)
		if (!(p->flags[i] & PROBE_FORGOTTEN))
			p->snapshot_rows++;
}

/*
 * Load the current part's keys: the stored entries, then the edits.
 * Returns false when the keys are not all integers (int_keys is then off,
 * to load again).
 */
static bool
load_part(RetlProbe *p)
{
	uint32		lo = (uint32) (((uint64) p->part << 32) / p->nparts);
	uint32		hi = (uint32) ((((uint64) (p->part + 1) << 32) - 1) / p->nparts);

	new_part(p);
	p->reload = false;
	retl_snapshot_read(p->sync_id, p->snap, p->int_keys, lo, hi, add_stored, p);
	if (!p->reload)
	{
		/* (a delta's first entry indexed the keys before it) */
		if (p->index == NULL)
			retl_probe_build_index(p);
		if (p->stored.edits > 0)
			retl_snapshot_edits(p->sync_id, p->snap, apply_edit, p);
	}
	if (p->reload)
	{
		/* only part 0 may find it: a key not an integer, where the run's are */
		if (p->part > 0)
			elog(ERROR, "retl: snapshot of sync %d changed during its run", p->sync_id);
		p->int_keys = false;
		return false;
	}
	count_keys(p);
	/* a part that holds no key: the query's keys are indexed after it */
	if (p->nslots == 0)
	{
		pfree(p->index);
		p->index = NULL;
	}
	return true;
}

/*
 * The part the runner kept from the sync's last run (probe_share.c), if
 * what the sync stores is what that run saved: with the edits since,
 * instead of loading it.  False (nothing changed) if there is none.
 */
static bool
adopt_part(RetlProbe *p)
{
	if (!retl_probe_adopt(p))
		return false;
	ereport(DEBUG1,
			(errmsg_internal("run of sync %d takes the snapshot its runner kept from its last run",
							 p->sync_id)));
	if (p->index == NULL)
		retl_probe_build_index(p);
	p->reload = false;
	if (p->stored.edits > 0)
		retl_snapshot_edits(p->sync_id, p->snap, apply_edit, p);
	/* (every edit's key was an integer: check_edit) */
	if (p->reload)
		elog(ERROR, "retl: snapshot of sync %d changed during its run", p->sync_id);
	count_keys(p);
	return true;
}

/* Bytes a key takes in memory, from what is stored (or, once measured, in a part). */
static double
bytes_per_key(RetlProbe *p)
{
	double		key_bytes = 0;

	if (!p->int_keys && p->stored.jsonb_chunks && p->stored.entries > 0)
		key_bytes = Max(0.0, (double) p->stored.bytes / p->stored.entries - 16 + 4);
	else if (!p->int_keys)
		key_bytes = 24;
	/* a slot, its flags, its jsonb key's pointer, 2 index positions */
	return sizeof(Slot) + 1 + (p->int_keys ? 0 : sizeof(struct varlena *)) +
		4 * sizeof(uint32) + key_bytes;
}

/* Parts of keys such that each fits in retl.run_memory, with room to grow. */
static void
plan_parts(RetlProbe *p, double keys, double per_key)
{
	double		budget = (double) retl_run_memory_kb * 1024;
	double		parts = ceil(keys * per_key * GROWTH / budget);

	p->nparts = (int) Min(1024, Max(parts, 1));
}

/*
 * Does the run write what changed (a delta), not the whole snapshot?  If
 * one is stored, in the run's form of keys, in few enough chunks (and, as
 * its first part says, the deltas stay within their share: save_part).
 */
static bool
writes_delta(RetlProbe *p)
{
	return p->stored.entries > p->stored.delta_entries &&
		!(p->int_keys ? p->stored.jsonb_chunks : p->stored.int_chunks) &&
		p->stored.delta_chunks < DELTA_CHUNKS;
}

/*
 * Load a sync's snapshot (its first part) to probe.  int_keys: the key is
 * one integer column (kept so only if every snapshot key is an integer).
 */
RetlProbe *
retl_probe_begin(int sync_id, const char *sync_name, bool int_keys, Snapshot snap)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "retl run probe",
											  ALLOCSET_DEFAULT_SIZES);
	RetlProbe  *p = MemoryContextAllocZero(cxt, sizeof(RetlProbe));
	MemoryContext old;

	p->cxt = cxt;
	p->part_cxt = AllocSetContextCreate(cxt, "retl run probe part", ALLOCSET_DEFAULT_SIZES);
	p->sync_id = sync_id;
	p->sync_name = sync_name == NULL ? NULL : MemoryContextStrdup(cxt, sync_name);
	p->int_keys = int_keys;
	/* what the run reads of the snapshot, whatever it writes meanwhile */
	p->snap = RegisterSnapshot(snap != NULL ? snap : GetTransactionSnapshot());
	p->tmp_cxt = AllocSetContextCreate(cxt, "retl run probe key", ALLOCSET_SMALL_SIZES);
	retl_snapshot_size(sync_id, p->snap, &p->stored);
	/* integer keys only if every edit's key is one */
	if (p->int_keys && p->stored.edits > 0)
		retl_snapshot_edits(sync_id, p->snap, check_edit, p);
	plan_parts(p, p->stored.entries + p->stored.edits, bytes_per_key(p));
	/*
	 * Keys stored as jsonb are read from every chunk in each part and
	 * converted before the part is chosen: part 0 meets a key that is not
	 * an integer, if any (and loads again as jsonb).
	 */
	if (!adopt_part(p))
		while (!load_part(p))
			plan_parts(p, p->stored.entries + p->stored.edits, bytes_per_key(p));
	/* (the keys' form is settled: written so, if the run saves) */
	old = MemoryContextSwitchTo(cxt);
	retl_snapshot_writer_begin(&p->writer, sync_id, p->int_keys,
							   writes_delta(p) ? p->stored.next_chunk : -1);
	MemoryContextSwitchTo(old);
	retl_probe_activate(p);
	return p;
}

/*
 * Does the run start from no key at all (none stored, or none left by the
 * edits: a first run, a run of an empty result)?
 */
bool
retl_probe_empty(RetlProbe *probe)
{
	return probe->nparts == 1 && probe->nslots == 0;
}

/*
 * The rows the query is expected to return (the planner's estimate), when
 * the run starts from no key: room for that many keys at once (at most as
 * many as retl.run_memory holds, and EXPECTED_KEYS_MAX), rather than
 * growing the slots as the query adds keys (a first run of 1M rows copied
 * its slots at each doubling, their fresh memory faulted in again).  An
 * estimate far too high takes no more than that, and where the system
 * refuses the memory (strict overcommit) the slots grow as before: the
 * estimate never fails a run.
 */
void
retl_probe_expect_rows(RetlProbe *probe, double rows)
{
	double		fits = (double) retl_run_memory_kb * 1024 / (bytes_per_key(probe) * GROWTH);
	int64		keys = (int64) Min(Min(rows, fits), (double) EXPECTED_KEYS_MAX);

	if (!retl_probe_empty(probe) || keys <= probe->maxslots)
		return;
	(void) retl_probe_alloc_slots(probe, keys, MCXT_ALLOC_NO_OOM);
}

/* Load the next part; false after the last. */
bool
retl_probe_next_part(RetlProbe *probe)
{
	if (probe->part + 1 >= probe->nparts)
		return false;
	probe->part++;
	if (!load_part(probe))
		elog(ERROR, "retl: snapshot of sync %d changed during its run", probe->sync_id);
	return true;
}

/*
 * Did part 0 outgrow retl.run_memory with the keys the query added?  The
 * query's rows of it were counted, not probed: plan parts for that many
 * keys, forget what was probed, and load part 0 again, for the caller to
 * run the query again.
 */
bool
retl_probe_overflowed(RetlProbe *probe)
{
	int			nparts = probe->nparts;
	double		per_key;

	if (!probe->overflowed)
		return false;
	/*
	 * (A shared part that had no block of slots left, probe_share.c: the
	 * same parts, this one loaded again and not shared.)
	 */
	if (probe->shm == NULL)
	{
		per_key = (double) retl_probe_part_bytes(probe) / Max(probe->nslots, 1);
		plan_parts(probe, Max((double) (probe->stored.entries + probe->stored.edits),
							  (double) probe->part_rows * nparts), per_key);
		/* at least twice as many as the part that did not fit */
		probe->nparts = Min(1024, Max(probe->nparts, nparts * 2));
	}
	probe->part = 0;
	probe->overflowed = false;
	probe->snapshot_rows = 0;
	probe->resynced_removed = 0;
	probe->duplicate = probe->legacy = false;
	probe->null_key = NULL;
	probe->added = probe->changed = 0;
	if (!load_part(probe))
		elog(ERROR, "retl: snapshot of sync %d changed during its run", probe->sync_id);
	return true;
}

/*
 * What a slot is in the snapshot the run writes (delta: in a delta of the
 * stored one); false if it is nothing there.
 */
static inline bool
entry_kind(uint8 flags, bool delta, RetlEntryKind *kind)
{
	if (!delta)
	{
		/* the whole snapshot: the keys the rows had */
		*kind = RETL_ENTRY_BASE;
		return (flags & PROBE_SEEN) != 0;
	}
	if (flags & PROBE_SEEN)
	{
		/* a delta: a key stored with another hash, or not stored */
		*kind = RETL_ENTRY_UPSERT;
		return (flags & (PROBE_STORED | PROBE_DIRTY)) != PROBE_STORED;
	}
	/* stored, and no row had it */
	*kind = RETL_ENTRY_REMOVED;
	return (flags & PROBE_STORED) != 0;
}

/*
 * Would the first part's delta, and as much for each other part, make the
 * deltas more than their share of the whole snapshot?  Then the run writes
 * the whole snapshot at once, rather than a delta that the next run would
 * write whole again (a sync whose small result grew large).
 */
static bool
delta_too_large(RetlProbe *p)
{
	int64		whole = p->stored.entries - p->stored.delta_entries;
	int64		entries = 0;
	RetlEntryKind kind;

	for (int64 i = 0; i < p->nslots; i++)
		if (entry_kind(p->flags[i], true, &kind))
			entries++;
	return p->stored.delta_entries + entries * p->nparts > whole / DELTA_SHARE;
}

/*
 * After the query ran for the current part: write the part's keys as the
 * rows had them into the sync's snapshot (the first part deletes the
 * stored one), or, in a delta, those whose hash changed, the keys added
 * and the keys removed.
 */
void
retl_probe_save_part(RetlProbe *probe)
{
	bool		delta = probe->writer.delta;

	if (delta && probe->part == 0 && delta_too_large(probe))
	{
		retl_snapshot_writer_whole(&probe->writer);
		delta = false;
	}
	for (int64 i = 0; i < probe->nslots; i++)
	{
		Slot	   *slot = &probe->slots[i];
		RetlEntryKind kind;

		if (i % 65536 == 0)
			CHECK_FOR_INTERRUPTS();
		if (!entry_kind(probe->flags[i], delta, &kind))
			continue;
		retl_snapshot_write(&probe->writer, kind, slot->key, slot->hash,
							probe->int_keys ? NULL : VARDATA_ANY(probe->jkeys[i]),
							probe->int_keys ? 0 : VARSIZE_ANY_EXHDR(probe->jkeys[i]),
							position_of(slot_hash(probe, slot->key)));
	}
}

/* After the last part was saved: the edits applied are done. */
void
retl_probe_save_end(RetlProbe *probe)
{
	retl_snapshot_writer_end(&probe->writer);
	retl_snapshot_delete_edits(probe->sync_id, probe->snap);
	retl_probe_keep(probe);
}

void
retl_probe_end(RetlProbe *probe)
{
	UnregisterSnapshot(probe->snap);
	MemoryContextDelete(probe->cxt);
}

/*
 * Pass fn each key of the current part that the snapshot holds (a jsonb,
 * as the run makes it) and its hash (legacy: only 0.1's md5 is known).
 */
void
retl_probe_each(RetlProbe *probe, RetlProbeKeyFn fn, void *arg)
{
	for (int64 i = 0; i < probe->nslots; i++)
	{
		Slot	   *slot = &probe->slots[i];
		MemoryContext old = MemoryContextSwitchTo(probe->tmp_cxt);
		Datum		key;

		if (!(probe->flags[i] & PROBE_FORGOTTEN))
		{
			key = probe->int_keys ? PointerGetDatum(retl_int_key_jsonb(slot->key)) :
				PointerGetDatum(probe->jkeys[i]);
			fn(arg, key, slot->hash, (probe->flags[i] & PROBE_LEGACY) != 0);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(probe->tmp_cxt);
	}
}
