/*
 * probe_removed.c: the keys of a diff run's snapshot that no row of its
 * query had (probe.c), once the query ran for a part: the removed ones,
 * queued as R rows of pg_temp.retl_run_diff; and, of a part that held no
 * key (a first run's), a key the query added twice.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/memutils.h"

#include "models/probe_table.h"

/* removed keys are queued this many at a time */
#define REMOVED_BATCH	10000

/* Queue the removed keys of a batch as R rows of pg_temp.retl_run_diff. */
static void
insert_removed(RetlProbe *p, Datum *keys, int n)
{
	Oid			types[1];
	Datum		values[1];
	ArrayType  *array;

	if (n == 0)
		return;
	if (p->int_keys)
	{
		array = construct_array(keys, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
		types[0] = INT8ARRAYOID;
	}
	else
	{
		array = construct_array(keys, n, JSONBOID, -1, false, TYPALIGN_INT);
		types[0] = JSONBARRAYOID;
	}
	values[0] = PointerGetDatum(array);
	if (SPI_execute_with_args(p->int_keys ?
							  "INSERT INTO pg_temp.retl_run_diff (key, op)"
							  " SELECT pg_catalog.jsonb_build_array(k), 'R' FROM pg_catalog.unnest($1) k" :
							  "INSERT INTO pg_temp.retl_run_diff (key, op)"
							  " SELECT k, 'R' FROM pg_catalog.unnest($1) k",
							  1, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not record the removed keys of sync %d", p->sync_id);
	pfree(array);
}

/* Removed keys on their way to pg_temp.retl_run_diff */
typedef struct RemovedBatch
{
	Datum	   *keys;
	int			n;
	int64		total;
} RemovedBatch;

static void
add_removed(RetlProbe *p, RemovedBatch *b, Datum key)
{
	b->keys[b->n++] = key;
	b->total++;
	if (b->n == REMOVED_BATCH)
	{
		insert_removed(p, b->keys, b->n);
		b->n = 0;
	}
}

/*
 * Did the query add a key twice to a part that held none (a first run's)?
 * Integer keys that are dense (a serial column's: their range at most
 * eight times their number) are checked with a bitmap of their range, a
 * bit a value, at most a byte a key: small enough to stay in the CPU's
 * caches, where indexing them (a cache miss a key) was a tenth of a first
 * run.  Any other keys are indexed, finding the duplicate there.
 */
static void
find_added_twice(RetlProbe *p)
{
	uint64		lo = PG_UINT64_MAX;
	uint64		hi = 0;

	if (p->int_keys && p->nslots > 0)
	{
		/* (as unsigned, offset: the order of int64 kept) */
		for (int64 i = 0; i < p->nslots; i++)
		{
			uint64		k = (uint64) p->slots[i].key ^ (UINT64CONST(1) << 63);

			lo = Min(lo, k);
			hi = Max(hi, k);
		}
		if (hi - lo < (uint64) p->nslots * 8)
		{
			uint8	   *bits = MemoryContextAllocExtended(p->part_cxt, (hi - lo) / 8 + 1,
														  MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);

			for (int64 i = 0; i < p->nslots && !p->duplicate; i++)
			{
				uint64		at = ((uint64) p->slots[i].key ^ (UINT64CONST(1) << 63)) - lo;
				uint8		bit = (uint8) (1 << (at & 7));

				if (bits[at >> 3] & bit)
					p->duplicate = true;
				bits[at >> 3] |= bit;
			}
			pfree(bits);
			return;
		}
	}
	retl_probe_build_index_twice(p);
}

/*
 * After the query ran for the current part: its keys that no row had are
 * removed (written as op R in pg_temp.retl_run_diff if write).  Returns
 * how many, with the keys a resync forgot (retl_probe_resynced_removed
 * counts those: the snapshot's rows do not).
 */
int64
retl_probe_queue_removed(RetlProbe *probe, bool write)
{
	RemovedBatch b = {palloc(sizeof(Datum) * REMOVED_BATCH), 0, 0};

	/*
	 * A part that held no key (a first run's): its keys were added without
	 * looking them up (in an empty index each lookup was a cache miss of
	 * its own, a sixth of a first run); find one it added twice: the run
	 * fails on it (its rows were all answered A).
	 */
	if (probe->index == NULL)
		find_added_twice(probe);
	for (int64 i = 0; i < probe->nslots; i++)
	{
		uint8		flags = probe->flags[i];

		if (flags & PROBE_SEEN)
			continue;
		if (flags & PROBE_FORGOTTEN)
		{
			/* not synced, but for a key a resync forgot */
			if (!(flags & PROBE_RESYNCED))
				continue;
			probe->resynced_removed++;
		}
		if (!write)
			b.total++;
		else
			add_removed(probe, &b, probe->int_keys ? Int64GetDatum(probe->slots[i].key) :
						PointerGetDatum(probe->jkeys[i]));
	}
	insert_removed(probe, b.keys, b.n);
	pfree(b.keys);
	return b.total;
}
