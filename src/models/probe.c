/*
 * probe.c: a diff run's snapshot in memory, probed by its query.
 *
 * A run compares every row of a sync's query with the sync's snapshot
 * (retl.snapshots: the hash of each key's values as last synced).  Joining
 * the two in SQL costs a hash join of the whole result with the whole
 * snapshot: most of a run's time.  Instead the run loads the snapshot's
 * keys and hashes into a hash table of its own, and its query calls
 * retl._run_probe(key, hash) for each row, which says what the row is:
 * A(dded), C(hanged), U(nchanged), L (the snapshot holds a hash of retl
 * 0.1, which the caller compares) or NULL (a row of another part, or a
 * second row with one key), and marks its key seen.  The keys never seen
 * are the removed ones.  JSON is built only for the rows that differ.
 *
 * The keys are kept in the order the snapshot is read in, with an index by
 * hash (open addressing, positions of 4 bytes).  A query that returns its
 * rows in the order of the last run (a table read in its physical order)
 * finds each key right after the previous one, without touching the index:
 * one key after another in memory instead of a cache miss for each.  A
 * single integer key column is kept as its value (exact); any other key as
 * its jsonb, under the hash of its bytes, compared byte by byte.  About 40
 * bytes a key.  A snapshot larger than retl.run_memory is split into parts
 * by key: the query runs once for each, a row counting in the part of its
 * key only.
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
#include "models/probe.h"

#define PROBE_SEEN		0x01
#define PROBE_LEGACY	0x02	/* hash NULL: only retl 0.1's legacy_hash */

/* removed keys are queued this many at a time */
#define REMOVED_BATCH	10000

/* A key of the snapshot */
typedef struct Slot
{
	int64		key;			/* an integer key, or the hash of a jsonb key */
	int64		hash;			/* of the row's values, as last synced */
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
	int			nparts;
	int			part;
	Slot	   *slots;			/* the part's keys, in the order read */
	int64		nslots;
	int64		maxslots;
	uint32	   *index;			/* 1 + position in slots, by hash; 0: free */
	uint64		mask;			/* of index */
	int64		next;			/* the slot after the last one found */
	char	   *arena;			/* room for keys in part_cxt */
	Size		arena_free;
	int64		snapshot_rows;	/* entries loaded, of every part */
	int64		total_rows;		/* the snapshot's, once part 0 did not fit */
	bool		duplicate;		/* a key was probed twice */
	bool		legacy;			/* an L was answered */
	bool		null_key;		/* an added key is or holds NULL */
	int64		added;			/* A answered */
	int64		changed;		/* C answered */
};

static RetlProbe *active = NULL;

static void
forget_probe(void *arg)
{
	RetlProbe  *p = (RetlProbe *) arg;

	if (active == p)
		active = p->outer;
}

/* The part of a key's hash (its high bits: the table uses the low ones). */
static inline int
part_of(RetlProbe *p, uint64 h)
{
	return p->nparts == 1 ? 0 : (int) ((h >> 32) % (uint64) p->nparts);
}

static inline uint64
key_hash(struct varlena *key)
{
	return hash_bytes_extended((const unsigned char *) VARDATA_ANY(key),
							   VARSIZE_ANY_EXHDR(key), 0);
}

static inline bool
same_key(struct varlena *a, struct varlena *b)
{
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/* A copy of a key in the part's memory, packed among the others. */
static struct varlena *
keep_key(RetlProbe *p, struct varlena *key)
{
	Size		len = INTALIGN(VARSIZE_ANY(key));
	char	   *copy;

	if (len > p->arena_free)
	{
		Size		block = Max(len, 256 * 1024);

		p->arena = MemoryContextAlloc(p->part_cxt, block);
		p->arena_free = block;
	}
	copy = p->arena;
	memcpy(copy, key, VARSIZE_ANY(key));
	p->arena += len;
	p->arena_free -= len;
	return (struct varlena *) copy;
}

/*
 * A snapshot key as one integer: a one-element array of an integral number
 * within int8 (what jsonb_build_array makes of an integer column).
 */
static bool
stored_int_key(struct varlena *key, int64 *value)
{
	Jsonb	   *jb = (Jsonb *) key;
	JsonbValue *v;
	char	   *text;
	char	   *end;

	if (VARATT_IS_SHORT(key))
		jb = (Jsonb *) pg_detoast_datum(key);
	if (!JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb) || JB_ROOT_COUNT(jb) != 1)
		return false;
	v = getIthJsonbValueFromContainer(&jb->root, 0);
	if (v == NULL || v->type != jbvNumeric)
		return false;
	/* at most 18 characters: within int8, no fraction */
	text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (strlen(text) > 18)
		return false;
	errno = 0;
	*value = strtoi64(text, &end, 10);
	return errno == 0 && end != text && *end == '\0';
}

static void
new_part(RetlProbe *p)
{
	MemoryContextReset(p->part_cxt);
	/* a part's share of the snapshot, once its size is known */
	p->maxslots = 1024;
	if (p->total_rows > 0)
		p->maxslots = Max(1024, p->total_rows / p->nparts + p->total_rows / p->nparts / 8);
	p->slots = MemoryContextAlloc(p->part_cxt, sizeof(Slot) * p->maxslots);
	p->nslots = 0;
	p->index = NULL;
	p->mask = 0;
	p->next = 0;
	p->arena = NULL;
	p->arena_free = 0;
}

/* The hash of a slot's key, whose high bits choose its part. */
static inline uint64
slot_hash(RetlProbe *p, int64 key)
{
	return p->int_keys ? mix64((uint64) key) : (uint64) key;
}

/* Put a snapshot row in the current part; false if not int_keys after all. */
static bool
add_entry(RetlProbe *p, struct varlena *key, bool hash_null, int64 hash)
{
	Slot	   *slot;
	int64		k;

	if (p->int_keys)
	{
		if (!stored_int_key(key, &k))
			return false;
	}
	else
		k = (int64) key_hash(key);
	if (part_of(p, slot_hash(p, k)) != p->part)
		return true;
	if (p->nslots == p->maxslots)
	{
		p->maxslots *= 2;
		p->slots = repalloc_huge(p->slots, sizeof(Slot) * p->maxslots);
	}
	slot = &p->slots[p->nslots++];
	slot->key = k;
	slot->hash = hash;
	slot->jkey = p->int_keys ? NULL : keep_key(p, key);
	slot->flags = hash_null ? PROBE_LEGACY : 0;
	return true;
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

/* Index the part's keys by hash. */
static void
build_index(RetlProbe *p)
{
	Size		bytes = index_size(p->nslots);

	if (p->nslots >= PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a part of the snapshot of sync %d has more than 4 billion keys", p->sync_id),
				 errhint("Lower retl.run_memory.")));
	p->index = MemoryContextAllocHuge(p->part_cxt, bytes);
	memset(p->index, 0, bytes);
	p->mask = bytes / sizeof(uint32) - 1;
	for (int64 i = 0; i < p->nslots; i++)
	{
		uint64		at = slot_hash(p, p->slots[i].key) & p->mask;

		while (p->index[at] != 0)
			at = (at + 1) & p->mask;
		p->index[at] = (uint32) (i + 1);
	}
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

/*
 * Part 0 does not fit in retl.run_memory: count the rest of the snapshot
 * (read so far: n rows), and split it into parts that each fit, with room
 * for the index's rounding up (16 bytes a key at worst) and their keys.
 */
static void
too_large(RetlProbe *p, TableScanDesc scan, TupleTableSlot *slot, int64 n)
{
	Size		budget = (Size) retl_run_memory_kb * 1024;
	double		key_bytes = p->nslots > 0 && !p->int_keys ?
		(double) (MemoryContextMemAllocated(p->part_cxt, true) - sizeof(Slot) * p->maxslots) / p->nslots : 0;
	double		per_key = sizeof(Slot) + 4 * sizeof(uint32) + Max(key_bytes, 0);
	int64		parts;

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		n++;
		if (n % 65536 == 0)
			CHECK_FOR_INTERRUPTS();
	}
	p->total_rows = n;
	parts = (int64) ceil(n * per_key * 1.15 / budget);
	/* a part that did not fit with this many: twice as many */
	p->nparts = (int) Min(1024, Max(parts, p->nparts * 2));
}

/*
 * Load the current part's keys from retl.snapshots (read directly: the
 * run reads as the extension).  Returns false when the keys are not all
 * integers (int_keys is then off, to load again), or when part 0 takes
 * more than retl.run_memory (nparts is then raised).
 */
static bool
load_part(RetlProbe *p)
{
	Oid			relid = get_relname_relid("snapshots", get_namespace_oid("retl", false));
	Relation	rel;
	AttrNumber	sync_att,
				key_att,
				hash_att;
	ScanKeyData skey;
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext tmp;
	MemoryContext old;
	Size		budget = (Size) retl_run_memory_kb * 1024;
	bool		ok = true;
	int64		n = 0;

	new_part(p);
	rel = table_open(relid, AccessShareLock);
	sync_att = attnameAttNum(rel, "sync_id", false);
	key_att = attnameAttNum(rel, "key", false);
	hash_att = attnameAttNum(rel, "hash", false);
	if (sync_att == InvalidAttrNumber || key_att == InvalidAttrNumber || hash_att == InvalidAttrNumber)
		elog(ERROR, "retl: retl.snapshots lacks a column of this version");
	ScanKeyInit(&skey, sync_att, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(p->sync_id));
	PushActiveSnapshot(GetTransactionSnapshot());
	scan = table_beginscan(rel, GetActiveSnapshot(), 1, &skey);
	slot = table_slot_create(rel, NULL);
	tmp = AllocSetContextCreate(CurrentMemoryContext, "retl probe load", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(tmp);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		key_null;
		bool		hash_null;
		Datum		key;
		Datum		hash;

		key = slot_getattr(slot, key_att, &key_null);
		hash = slot_getattr(slot, hash_att, &hash_null);
		if (key_null)
			elog(ERROR, "retl: snapshot of sync %d holds a NULL key", p->sync_id);
		if (!add_entry(p, pg_detoast_datum_packed((struct varlena *) DatumGetPointer(key)),
					   hash_null, hash_null ? 0 : DatumGetInt64(hash)))
		{
			p->int_keys = false;
			ok = false;
			break;
		}
		if (++n % 4096 == 0)
		{
			MemoryContextReset(tmp);
			CHECK_FOR_INTERRUPTS();
			if (p->part == 0 && p->nparts < 1024 &&
				MemoryContextMemAllocated(p->part_cxt, true) + index_size(p->nslots) > budget)
			{
				too_large(p, scan, slot, n);
				ok = false;
				break;
			}
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	PopActiveSnapshot();
	table_close(rel, AccessShareLock);
	if (ok)
		build_index(p);
	return ok;
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

	p->cxt = cxt;
	p->part_cxt = AllocSetContextCreate(cxt, "retl run probe part", ALLOCSET_DEFAULT_SIZES);
	p->sync_id = sync_id;
	p->int_keys = int_keys;
	p->nparts = 1;
	p->forget.func = forget_probe;
	p->forget.arg = p;
	MemoryContextRegisterResetCallback(cxt, &p->forget);
	while (!load_part(p))
		;
	p->snapshot_rows = p->nslots;
	p->outer = active;
	active = p;
	return p;
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
	probe->snapshot_rows += probe->nslots;
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

void
retl_probe_end(RetlProbe *probe)
{
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
 * removed (op R in pg_temp.retl_run_diff).  Returns how many.
 */
int64
retl_probe_queue_removed(RetlProbe *probe)
{
	RemovedBatch b = {palloc(sizeof(Datum) * REMOVED_BATCH), 0, 0};

	for (int64 i = 0; i < probe->nslots; i++)
	{
		Slot	   *slot = &probe->slots[i];

		if (!(slot->flags & PROBE_SEEN))
			add_removed(probe, &b, probe->int_keys ? Int64GetDatum(slot->key) : PointerGetDatum(slot->jkey));
	}
	insert_removed(probe, b.keys, b.n);
	pfree(b.keys);
	return b.total;
}

/* What a row is, given its key's slot (NULL: not in the snapshot). */
static inline Datum
classify(RetlProbe *p, Slot *slot, int64 hash)
{
	if (slot == NULL)
	{
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
	if (slot->flags & PROBE_LEGACY)
	{
		p->legacy = true;
		return CharGetDatum('L');
	}
	if (slot->hash == hash)
		return CharGetDatum('U');
	p->changed++;
	return CharGetDatum('C');
}

/* A NULL key: added (and failing the run), in the first part. */
static Datum
null_key(RetlProbe *p, FunctionCallInfo fcinfo)
{
	if (p->part != 0)
		PG_RETURN_NULL();
	retl_progress_tick();
	p->null_key = true;
	p->added++;
	PG_RETURN_DATUM(CharGetDatum('A'));
}

/* Does a jsonb key (an array) hold a NULL? */
static bool
holds_null(struct varlena *key)
{
	Jsonb	   *jb = (Jsonb *) (VARATT_IS_SHORT(key) ? pg_detoast_datum(key) : key);

	if (!JB_ROOT_IS_ARRAY(jb))
		return false;
	for (uint32 i = 0; i < JB_ROOT_COUNT(jb); i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(&jb->root, i);

		if (v != NULL && v->type == jbvNull)
			return true;
	}
	return false;
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

PG_FUNCTION_INFO_V1(retl_run_probe_int);
PG_FUNCTION_INFO_V1(retl_run_probe_key);

/*
 * retl._run_probe(key bigint, hash bigint) → "char": a row of the run's
 * query, of a sync whose key is one integer column (NULL: another part's).
 */
Datum
retl_run_probe_int(PG_FUNCTION_ARGS)
{
	RetlProbe  *p = active_probe();
	int64		k;

	if (!p->int_keys)
		elog(ERROR, "retl: a run probed integer keys in a snapshot of others");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		return null_key(p, fcinfo);
	k = PG_GETARG_INT64(0);
	if (part_of(p, mix64((uint64) k)) != p->part)
		PG_RETURN_NULL();
	retl_progress_tick();
	PG_RETURN_DATUM(classify(p, find_slot(p, k, NULL), PG_GETARG_INT64(1)));
}

/*
 * retl._run_probe(key jsonb, hash bigint) → "char": a row of the run's
 * query (NULL: another part's).
 */
Datum
retl_run_probe_key(PG_FUNCTION_ARGS)
{
	RetlProbe  *p = active_probe();
	struct varlena *key;
	uint64		h;
	Datum		op;

	if (p->int_keys)
		elog(ERROR, "retl: a run probed jsonb keys in a snapshot of integers");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		return null_key(p, fcinfo);
	key = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));
	h = key_hash(key);
	if (part_of(p, h) != p->part)
		PG_RETURN_NULL();
	retl_progress_tick();
	op = classify(p, find_slot(p, (int64) h, key), PG_GETARG_INT64(1));
	/* only an added key may hold a NULL: the snapshot holds none */
	if (DatumGetChar(op) == 'A' && !p->null_key && holds_null(key))
		p->null_key = true;
	PG_RETURN_DATUM(op);
}
