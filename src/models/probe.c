/*
 * probe.c: a diff run's snapshot in memory, probed by its query.
 *
 * A run compares every row of a sync's query with the sync's snapshot
 * (the hash of each key's values as last synced: snapshot.c).  Joining
 * the two in SQL costs a hash join of the whole result with the whole
 * snapshot: most of a run's time.  Instead the run loads the snapshot's
 * keys and hashes into a hash table of its own, and its query calls
 * retl._run_probe(key, hash) for each row, which says what the row is:
 * A(dded), C(hanged), U(nchanged), L (the snapshot holds a hash of retl
 * 0.1, which the caller compares), N (a NULL key) or NULL (a row of
 * another part, a second row with one key, or an op the run does not
 * write), and keeps the row's hash under its key (an added key gets a
 * slot).  The keys never seen are the removed ones; the slots seen are
 * the new snapshot, which the run saves part by part.  JSON is built only
 * for the rows that are written.
 *
 * The keys are kept in the order the snapshot is read in, with an index by
 * hash (open addressing, positions of 4 bytes).  A query that returns its
 * rows in the order of the last run (a table read in its physical order)
 * finds each key right after the previous one, without touching the index:
 * one key after another in memory instead of a cache miss for each.  A
 * single integer key column is kept as its value (exact); any other key as
 * its jsonb, under the hash of its bytes, compared byte by byte.  About 50
 * bytes a key.  A snapshot larger than retl.run_memory is split into parts,
 * ranges of key hashes: the query runs once for each, a row counting in
 * the part of its key only.  A first part that outgrows it with the keys
 * the query adds overflows: the query then only counts its rows, and the
 * caller runs it again in more parts.
 *
 * The table lives in a memory context of the run; its reset callback
 * forgets it, so an error anywhere leaves no probe behind.
 */
#include "postgres.h"

#include <errno.h>
#include <math.h>

#include "access/htup_details.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parse_relation.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"

#include "base/guc.h"
#include "base/progress.h"
#include "models/jsonkey.h"
#include "models/probe.h"
#include "models/rowhash.h"
#include "models/snapshot.h"

#define PROBE_SEEN		0x01
#define PROBE_LEGACY	0x02	/* holds retl 0.1's md5 only (an edit) */
#define PROBE_FORGOTTEN 0x04	/* an edit forgot it: not synced */

/* removed keys are queued this many at a time */
#define REMOVED_BATCH	10000

/*
 * A part is planned to take this share of retl.run_memory at most, the
 * rest left for the keys a run adds.
 */
#define GROWTH			1.25

/* A key of the snapshot */
typedef struct Slot
{
	int64		key;			/* an integer key, or the hash of a jsonb key */
	int64		hash;			/* of the row's values: as last synced, then as now */
	struct varlena *jkey;		/* the jsonb key (not integer keys) */
	uint8		flags;
} Slot;

/* splitmix64's finalizer: integer keys are often consecutive */
static inline uint64
mix64(uint64 x)
{
	x ^= x >> 30;
	x *= UINT64CONST(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64CONST(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

struct RetlProbe
{
	MemoryContext cxt;			/* the probe */
	MemoryContext part_cxt;		/* the current part's table and keys */
	MemoryContextCallback forget;
	struct RetlProbe *outer;	/* the run's that was active before (a preview in a run) */
	int			sync_id;
	bool		int_keys;
	bool		reload;			/* a key was not an integer: load as jsonb */
	Snapshot	snap;			/* the snapshot as the run began */
	RetlSnapshotEdit *edits;	/* the worker's since the last run, oldest first */
	int			nedits;
	int64		stored;			/* entries of the stored snapshot */
	int64		stored_bytes;	/* and their bytes */
	int			nparts;
	int			part;
	Slot	   *slots;			/* the part's keys, in the order read, then added */
	int64		nslots;
	int64		maxslots;
	uint32	   *index;			/* 1 + position in slots, by hash; 0: free */
	uint64		mask;			/* of index */
	int64		next;			/* the slot after the last one found */
	char	   *arena;			/* room for keys in part_cxt */
	Size		arena_free;
	int64		part_rows;		/* rows of the current part probed */
	bool		overflowed;		/* part 0 outgrew retl.run_memory: run again */
	int64		snapshot_rows;	/* keys loaded, of every part */
	bool		duplicate;		/* a key was probed twice */
	bool		legacy;			/* an L was answered */
	bool		null_key;		/* a key is or holds NULL */
	int64		added;			/* A answered */
	int64		changed;		/* C answered */
	bool		written[256];	/* ops the query writes: the others answer NULL */
	bool		saving;			/* the writer has begun */
	RetlSnapshotWriter writer;
};

static RetlProbe *active = NULL;

static void
forget_probe(void *arg)
{
	RetlProbe  *p = (RetlProbe *) arg;

	if (active == p)
		active = p->outer;
}

/* A key hash's position: its high bits (the table uses the low ones). */
static inline uint32
position_of(uint64 h)
{
	return (uint32) (h >> 32);
}

/* The part of a position: parts are ranges of positions. */
static inline int
part_of(RetlProbe *p, uint64 h)
{
	return (int) (((uint64) position_of(h) * (uint64) p->nparts) >> 32);
}

static inline uint64
key_hash_bytes(const char *data, Size len)
{
	return hash_bytes_extended((const unsigned char *) data, len, 0);
}

static inline uint64
key_hash(struct varlena *key)
{
	return key_hash_bytes(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
}

static inline bool
same_key(struct varlena *a, struct varlena *b)
{
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
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

/* A copy of a key in the part's memory. */
static struct varlena *
keep_key(RetlProbe *p, struct varlena *key)
{
	char	   *copy = key_room(p, VARSIZE_ANY(key));

	memcpy(copy, key, VARSIZE_ANY(key));
	return (struct varlena *) copy;
}

/* A key stored as its bytes, as a jsonb in the part's memory. */
static struct varlena *
keep_key_bytes(RetlProbe *p, const char *data, uint32 len)
{
	char	   *copy = key_room(p, len + VARHDRSZ);

	SET_VARSIZE(copy, len + VARHDRSZ);
	memcpy(VARDATA(copy), data, len);
	return (struct varlena *) copy;
}

/* The hash of a slot's key, whose high bits choose its part. */
static inline uint64
slot_hash(RetlProbe *p, int64 key)
{
	return p->int_keys ? mix64((uint64) key) : (uint64) key;
}

/* Bytes of the index of n keys (at most half full) */
static Size
index_size(int64 n)
{
	uint64		size = 1024;

	while (size < (uint64) n * 2)
		size *= 2;
	return size * sizeof(uint32);
}

static inline void
index_slot(RetlProbe *p, int64 i)
{
	uint64		at = slot_hash(p, p->slots[i].key) & p->mask;

	while (p->index[at] != 0)
		at = (at + 1) & p->mask;
	p->index[at] = (uint32) (i + 1);
}

/* Index the part's keys by hash. */
static void
build_index(RetlProbe *p)
{
	Size		bytes = index_size(p->nslots + 1);

	if (p->nslots >= PG_UINT32_MAX / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a part of the snapshot of sync %d has more than 2 billion keys", p->sync_id),
				 errhint("Lower retl.run_memory.")));
	if (p->index != NULL)
		pfree(p->index);
	p->index = MemoryContextAllocHuge(p->part_cxt, bytes);
	memset(p->index, 0, bytes);
	p->mask = bytes / sizeof(uint32) - 1;
	for (int64 i = 0; i < p->nslots; i++)
		index_slot(p, i);
}

/* A new slot (indexed once the index is built); returns its position. */
static int64
add_slot(RetlProbe *p, int64 key, int64 hash, struct varlena *jkey, uint8 flags)
{
	Slot	   *slot;

	if (p->nslots == p->maxslots)
	{
		p->maxslots *= 2;
		p->slots = repalloc_huge(p->slots, sizeof(Slot) * p->maxslots);
	}
	slot = &p->slots[p->nslots];
	slot->key = key;
	slot->hash = hash;
	slot->jkey = jkey;
	slot->flags = flags;
	p->nslots++;
	if (p->index != NULL)
	{
		if ((uint64) p->nslots * 2 > p->mask + 1)
			build_index(p);
		else
			index_slot(p, p->nslots - 1);
	}
	return p->nslots - 1;
}

/* The slot of a key (jkey: its jsonb, not integer keys), or NULL. */
static inline Slot *
find_slot(RetlProbe *p, int64 key, struct varlena *jkey)
{
	Slot	   *slot;
	uint64		at;

	/* the query's rows often come in the order of the snapshot's */
	if (p->next < p->nslots)
	{
		slot = &p->slots[p->next];
		if (slot->key == key && (jkey == NULL || same_key(slot->jkey, jkey)))
			return slot;
	}
	at = slot_hash(p, key) & p->mask;
	while (p->index[at] != 0)
	{
		slot = &p->slots[p->index[at] - 1];
		if (slot->key == key && (jkey == NULL || same_key(slot->jkey, jkey)))
			return slot;
		at = (at + 1) & p->mask;
	}
	return NULL;
}

static void
new_part(RetlProbe *p)
{
	MemoryContextReset(p->part_cxt);
	/* a part's share of the snapshot, and some room to grow */
	p->maxslots = Max(1024, (p->stored + p->nedits) / p->nparts * GROWTH);
	p->slots = MemoryContextAllocHuge(p->part_cxt, sizeof(Slot) * p->maxslots);
	p->nslots = 0;
	p->index = NULL;
	p->mask = 0;
	p->next = 0;
	p->arena = NULL;
	p->arena_free = 0;
	p->part_rows = 0;
}

/* A stored entry into the current part, if it is the part's. */
static void
add_stored(void *arg, int64 key, int64 hash, const char *jkey, uint32 jlen)
{
	RetlProbe  *p = (RetlProbe *) arg;
	struct varlena *copy = NULL;

	if (p->reload)
		return;
	if (p->int_keys && jkey != NULL)
	{
		/* a jsonb key, where the run's are integers: an integer too? */
		struct varlena *tmp = palloc(jlen + VARHDRSZ);

		SET_VARSIZE(tmp, jlen + VARHDRSZ);
		memcpy(VARDATA(tmp), jkey, jlen);
		if (!retl_stored_int_key(tmp, &key))
		{
			p->reload = true;
			return;
		}
		pfree(tmp);
	}
	else if (!p->int_keys && jkey == NULL)
	{
		/* an integer key, where the run's are jsonb: as the run makes it */
		Jsonb	   *jb = retl_int_key_jsonb(key);

		key = (int64) key_hash((struct varlena *) jb);
		if (part_of(p, (uint64) key) == p->part)
			copy = keep_key(p, (struct varlena *) jb);
		pfree(jb);
	}
	else if (!p->int_keys)
		key = (int64) key_hash_bytes(jkey, jlen);
	if (part_of(p, slot_hash(p, key)) != p->part)
		return;
	if (!p->int_keys && copy == NULL)
		copy = keep_key_bytes(p, jkey, jlen);
	(void) add_slot(p, key, hash, copy, 0);
}

/*
 * Apply the worker's edits of the current part's keys, oldest first.
 * False if a key is not an integer where the run's are.
 */
static bool
apply_edits(RetlProbe *p)
{
	for (int i = 0; i < p->nedits; i++)
	{
		RetlSnapshotEdit *e = &p->edits[i];
		int64		key;
		Slot	   *slot;

		if (p->int_keys)
		{
			if (!retl_stored_int_key(e->key, &key))
				return false;
		}
		else
			key = (int64) key_hash(e->key);
		if (part_of(p, slot_hash(p, key)) != p->part)
			continue;
		slot = find_slot(p, key, p->int_keys ? NULL : e->key);
		if (slot == NULL && e->kind != RETL_EDIT_FORGET)
			slot = &p->slots[add_slot(p, key, 0, p->int_keys ? NULL : keep_key(p, e->key), 0)];
		if (slot == NULL)
			continue;
		slot->hash = e->hash;
		slot->flags = e->kind == RETL_EDIT_FORGET ? PROBE_FORGOTTEN :
			e->kind == RETL_EDIT_LEGACY ? PROBE_LEGACY : 0;
	}
	return true;
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
	retl_snapshot_read(p->sync_id, p->snap, lo, hi, add_stored, p);
	if (p->reload)
	{
		p->int_keys = false;
		return false;
	}
	build_index(p);
	if (!apply_edits(p))
	{
		p->int_keys = false;
		return false;
	}
	for (int64 i = 0; i < p->nslots; i++)
		if (!(p->slots[i].flags & PROBE_FORGOTTEN))
			p->snapshot_rows++;
	return true;
}

/* Bytes a key takes in memory, from what is stored (or, once measured, in a part). */
static double
bytes_per_key(RetlProbe *p)
{
	double		key_bytes = 0;

	if (!p->int_keys && p->stored > 0)
		key_bytes = Max(0.0, (double) p->stored_bytes / p->stored - 16 + 4);
	else if (!p->int_keys)
		key_bytes = 24;
	return sizeof(Slot) + 4 * sizeof(uint32) + key_bytes;
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
 * Load a sync's snapshot (its first part) to probe.  int_keys: the key is
 * one integer column (kept so only if every snapshot key is an integer).
 */
RetlProbe *
retl_probe_begin(int sync_id, bool int_keys)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "retl run probe",
											  ALLOCSET_DEFAULT_SIZES);
	RetlProbe  *p = MemoryContextAllocZero(cxt, sizeof(RetlProbe));
	MemoryContext old;

	p->cxt = cxt;
	p->part_cxt = AllocSetContextCreate(cxt, "retl run probe part", ALLOCSET_DEFAULT_SIZES);
	p->sync_id = sync_id;
	p->int_keys = int_keys;
	p->forget.func = forget_probe;
	p->forget.arg = p;
	MemoryContextRegisterResetCallback(cxt, &p->forget);
	/* what the run reads of the snapshot, whatever it writes meanwhile */
	p->snap = RegisterSnapshot(GetTransactionSnapshot());
	retl_snapshot_size(sync_id, p->snap, &p->stored, &p->stored_bytes);
	old = MemoryContextSwitchTo(cxt);
	p->edits = retl_snapshot_edits(sync_id, p->snap, &p->nedits);
	MemoryContextSwitchTo(old);
	do
		plan_parts(p, p->stored + p->nedits, bytes_per_key(p));
	while (!load_part(p));
	p->outer = active;
	active = p;
	return p;
}

/*
 * The ops the run writes (a string of op letters; N, for a NULL key, is
 * always written): the probe answers NULL for a row of another op, so
 * the query passes on only the rows it writes, with no test of its own.
 */
void
retl_probe_write_ops(RetlProbe *probe, const char *ops)
{
	memset(probe->written, 0, sizeof(probe->written));
	for (const char *c = ops; *c; c++)
		probe->written[(unsigned char) *c] = true;
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
	per_key = (double) MemoryContextMemAllocated(probe->part_cxt, true) / Max(probe->nslots, 1);
	plan_parts(probe, Max((double) (probe->stored + probe->nedits),
						  (double) probe->part_rows * nparts), per_key);
	/* at least twice as many as the part that did not fit */
	probe->nparts = Min(1024, Max(probe->nparts, nparts * 2));
	probe->part = 0;
	probe->overflowed = false;
	probe->snapshot_rows = 0;
	probe->duplicate = probe->legacy = probe->null_key = false;
	probe->added = probe->changed = 0;
	if (!load_part(probe))
		elog(ERROR, "retl: snapshot of sync %d changed during its run", probe->sync_id);
	return true;
}

int64
retl_probe_snapshot_rows(RetlProbe *probe)
{
	return probe->snapshot_rows;
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

bool
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
 * After the query ran for the current part: write the part's keys as the
 * rows had them into the sync's snapshot (the first part deletes the
 * stored one).
 */
void
retl_probe_save_part(RetlProbe *probe)
{
	if (!probe->saving)
	{
		retl_snapshot_writer_begin(&probe->writer, probe->sync_id, probe->int_keys);
		probe->saving = true;
	}
	for (int64 i = 0; i < probe->nslots; i++)
	{
		Slot	   *slot = &probe->slots[i];

		if (!(slot->flags & PROBE_SEEN))
			continue;
		if (probe->int_keys)
			retl_snapshot_write(&probe->writer, slot->key, slot->hash, NULL, 0,
								position_of(mix64((uint64) slot->key)));
		else
			retl_snapshot_write(&probe->writer, slot->key, slot->hash,
								VARDATA_ANY(slot->jkey), VARSIZE_ANY_EXHDR(slot->jkey),
								position_of((uint64) slot->key));
		if (i % 65536 == 0)
			CHECK_FOR_INTERRUPTS();
	}
}

/* After the last part was saved: the edits applied are done. */
void
retl_probe_save_end(RetlProbe *probe)
{
	if (!probe->saving)
	{
		retl_snapshot_writer_begin(&probe->writer, probe->sync_id, probe->int_keys);
		probe->saving = true;
	}
	retl_snapshot_writer_end(&probe->writer);
	retl_snapshot_delete_edits(probe->edits, probe->nedits);
}

void
retl_probe_end(RetlProbe *probe)
{
	UnregisterSnapshot(probe->snap);
	MemoryContextDelete(probe->cxt);
}

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
 * After the query ran for the current part: its keys that no row had are
 * removed (written as op R in pg_temp.retl_run_diff if write).  Returns
 * how many.
 */
int64
retl_probe_queue_removed(RetlProbe *probe, bool write)
{
	RemovedBatch b = {palloc(sizeof(Datum) * REMOVED_BATCH), 0, 0};

	for (int64 i = 0; i < probe->nslots; i++)
	{
		Slot	   *slot = &probe->slots[i];

		if (slot->flags & (PROBE_SEEN | PROBE_FORGOTTEN))
			continue;
		if (!write)
			b.total++;
		else
			add_removed(probe, &b, probe->int_keys ? Int64GetDatum(slot->key) : PointerGetDatum(slot->jkey));
	}
	insert_removed(probe, b.keys, b.n);
	pfree(b.keys);
	return b.total;
}

/*
 * A key added by the query: its slot, seen.  Part 0 that outgrows
 * retl.run_memory overflows (checked every 4096 keys): the query then
 * only counts its rows, to run again in more parts.
 */
static void
add_key(RetlProbe *p, int64 key, struct varlena *jkey, int64 hash)
{
	(void) add_slot(p, key, hash, jkey == NULL ? NULL : keep_key(p, jkey), PROBE_SEEN);
	if (p->part == 0 && p->nparts < 1024 && p->nslots % 4096 == 0 &&
		MemoryContextMemAllocated(p->part_cxt, true) > (Size) retl_run_memory_kb * 1024)
		p->overflowed = true;
}

/*
 * What a row is, given its key's slot (NULL: not in the snapshot): the
 * slot then holds the row's hash, to be saved.
 */
static inline Datum
classify(RetlProbe *p, Slot *slot, int64 key, struct varlena *jkey, int64 hash)
{
	if (slot == NULL)
	{
		add_key(p, key, jkey, hash);
		p->added++;
		return CharGetDatum('A');
	}
	p->next = (slot - p->slots) + 1;
	if (slot->flags & PROBE_SEEN)
	{
		/* a second row with this key: the run names it and fails */
		p->duplicate = true;
		return CharGetDatum('U');
	}
	slot->flags |= PROBE_SEEN;
	if (slot->flags & PROBE_FORGOTTEN)
	{
		slot->flags &= ~PROBE_FORGOTTEN;
		slot->hash = hash;
		p->added++;
		return CharGetDatum('A');
	}
	if (slot->flags & PROBE_LEGACY)
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

/* A NULL key: N (failing the run), in the first part. */
static Datum
null_key(RetlProbe *p, FunctionCallInfo fcinfo)
{
	if (p->part != 0 || p->overflowed)
		PG_RETURN_NULL();
	retl_progress_tick();
	p->null_key = true;
	PG_RETURN_DATUM(CharGetDatum('N'));
}

/* An op, if the query writes it, else NULL */
static inline Datum
answer(RetlProbe *p, FunctionCallInfo fcinfo, Datum op)
{
	if (!p->written[(unsigned char) DatumGetChar(op)])
		PG_RETURN_NULL();
	PG_RETURN_DATUM(op);
}

static RetlProbe *
active_probe(void)
{
	if (active == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("retl._run_probe() may only be called by the query of a run")));
	return active;
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
	if (PG_ARGISNULL(0) || (!values && PG_ARGISNULL(1)))
		return null_key(p, fcinfo);
	k = PG_GETARG_INT64(0);
	if (part_of(p, mix64((uint64) k)) != p->part)
		PG_RETURN_NULL();
	retl_progress_tick();
	p->part_rows++;
	if (p->overflowed)
		PG_RETURN_NULL();
	return answer(p, fcinfo, classify(p, find_slot(p, k, NULL), k, NULL,
									  values ? (int64) retl_hash_args(fcinfo, 1) : PG_GETARG_INT64(1)));
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
	if (PG_ARGISNULL(0) || (!values && PG_ARGISNULL(1)))
		return null_key(p, fcinfo);
	key = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));
	h = key_hash(key);
	if (part_of(p, h) != p->part)
		PG_RETURN_NULL();
	retl_progress_tick();
	p->part_rows++;
	if (p->overflowed)
		PG_RETURN_NULL();
	slot = find_slot(p, (int64) h, key);
	/* a key holding a NULL is N (the snapshot holds none) */
	if (slot == NULL && retl_key_holds_null(key))
	{
		p->null_key = true;
		PG_RETURN_DATUM(CharGetDatum('N'));
	}
	return answer(p, fcinfo, classify(p, slot, (int64) h, key,
									  values ? (int64) retl_hash_args(fcinfo, 1) : PG_GETARG_INT64(1)));
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
		Datum		key;

		if (slot->flags & PROBE_FORGOTTEN)
			continue;
		key = probe->int_keys ? PointerGetDatum(retl_int_key_jsonb(slot->key)) : PointerGetDatum(slot->jkey);
		fn(arg, key, slot->hash, (slot->flags & PROBE_LEGACY) != 0);
	}
}
