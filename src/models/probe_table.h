/*
 * probe_table.h: a diff run's snapshot in memory, as probe.c (the table
 * and the query's probe) and probe_load.c (loading and saving it) share it.
 */
#ifndef RETL_PROBE_TABLE_H
#define RETL_PROBE_TABLE_H

#include "common/hashfn.h"
#include "utils/snapshot.h"

#include "models/probe.h"
#include "models/snapshot.h"

#define PROBE_SEEN		0x01
#define PROBE_LEGACY	0x02	/* holds retl 0.1's md5 only (an edit) */
#define PROBE_FORGOTTEN 0x04	/* an edit forgot it: not synced */
#define PROBE_STORED	0x08	/* the stored chunks hold it */
#define PROBE_DIRTY		0x10	/* its hash may not be the stored one */
#define PROBE_RESYNCED	0x20	/* forgotten by a resync: synced before it,
								 * so the destination may have it (removed
								 * if no row has it, else sent as a change:
								 * probe.c classify) */

/*
 * A run writes a delta, not the whole snapshot, while the stored deltas
 * hold at most 1/DELTA_SHARE as many entries as the whole one, in fewer
 * than DELTA_CHUNKS chunks.
 */
#define DELTA_SHARE		4
#define DELTA_CHUNKS	32

/*
 * A part is planned to take this share of retl.run_memory at most, the
 * rest left for the keys a run adds.
 */
#define GROWTH			1.25

/* A run from no key makes room for at most this many (probe_load.c) */
#define EXPECTED_KEYS_MAX	(8 * 1024 * 1024)

/*
 * A key of the part: 16 bytes, its flags and (of jsonb keys) its jsonb in
 * arrays of their own beside the slots, at the same position.  With them
 * in the slot, a slot took 32 bytes: a million integer keys were 32 MB of
 * fresh memory a first run faults in (64-79 ms on the 2-core VM) and a
 * diff run streams through, now 17 MB.
 */
typedef struct Slot
{
	int64		key;			/* an integer key, or the hash of a jsonb key */
	int64		hash;			/* of the row's values: as last synced, then as now
								 * (a key forgotten by an edit keeps it) */
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
	char	   *sync_name;		/* (NULL: not a run's) */
	bool		int_keys;
	bool		reload;			/* a key was not an integer: load as jsonb */
	Snapshot	snap;			/* the snapshot as the run began */
	RetlSnapshotSize stored;	/* what is stored of it */
	MemoryContext tmp_cxt;		/* for converting a key */
	int			nparts;
	int			part;
	Slot	   *slots;			/* the part's keys, in the order read, then added */
	uint8	   *flags;			/* of each slot (PROBE_SEEN...) */
	struct varlena **jkeys;		/* of each slot its jsonb key; NULL for
								 * integer keys */
	int64		nslots;
	int64		maxslots;
	uint32	   *index;			/* 1 + position in slots, by hash; 0: free;
								 * NULL once loaded: the part held no key,
								 * the query's are indexed after it */
	uint64		mask;			/* of index */
	int64		next;			/* the slot after the last one found */
	char	   *arena;			/* room for keys in part_cxt */
	Size		arena_free;
	int64		part_rows;		/* rows of the current part probed */
	bool		overflowed;		/* part 0 outgrew retl.run_memory: run again */
	int64		snapshot_rows;	/* keys loaded, of every part */
	int64		resynced_removed;	/* keys a resync forgot that no row had,
									 * of every part */
	bool		duplicate;		/* a key was probed twice */
	bool		legacy;			/* an L was answered */
	char	   *null_key;		/* the first key that is or holds NULL, as
								 * text (NULL: none) */
	int64		added;			/* A answered */
	int64		changed;		/* C answered */
	bool		written[256];	/* ops the query writes: the others answer NULL */
	char		last_op;		/* the answer written for the last row probed
								 * ('\0': none) */
	bool		last_null;		/* its key was NULL */
	int64		last_key;		/* else its key as slots keep it */
	RetlSnapshotWriter writer;	/* the run's snapshot, if it saves */

	/*
	 * A part shared with parallel workers (probe_share.c): its slots, flags
	 * and index live in a segment of dynamic shared memory; each worker
	 * probes through a view of its own there (a copy of this struct), and
	 * adds keys in blocks of slots it reserves.
	 */
	struct ProbeShm *shm;		/* the segment's header; NULL: not shared */
	void	   *shm_seg;		/* its dsm_segment */
	bool		view;			/* a parallel worker's view of the probe */
	bool		sharing;		/* a statement shares it: keys added in blocks */
	bool		no_share;		/* the part overflowed shared: not again */
	int64		block_start;	/* the block of slots it adds keys to (-1: none) */
	int			block_used;
	int64		ticks;			/* rows it counted */
	char		null_text[32];	/* a view's null_key, for the leader */
};

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

/* The hash of a slot's key, whose high bits choose its part. */
static inline uint64
slot_hash(RetlProbe *p, int64 key)
{
	return p->int_keys ? mix64((uint64) key) : (uint64) key;
}

/* A slot's flags (PROBE_SEEN...), to read or set. */
static inline uint8 *
slot_flags(RetlProbe *p, Slot *slot)
{
	return &p->flags[slot - p->slots];
}

/* A slot's jsonb key (not integer keys). */
static inline struct varlena *
slot_jkey(RetlProbe *p, Slot *slot)
{
	return p->jkeys[slot - p->slots];
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
		if (slot->key == key && (jkey == NULL || same_key(slot_jkey(p, slot), jkey)))
			return slot;
	}
	at = slot_hash(p, key) & p->mask;
	while (p->index[at] != 0)
	{
		slot = &p->slots[p->index[at] - 1];
		if (slot->key == key && (jkey == NULL || same_key(slot_jkey(p, slot), jkey)))
			return slot;
		at = (at + 1) & p->mask;
	}
	return NULL;
}

extern void retl_probe_activate(RetlProbe *p);
extern void *retl_probe_alloc_array(RetlProbe *p, Size size, int flags);
extern bool retl_probe_alloc_slots(RetlProbe *p, int64 n, int flags);
extern Size retl_probe_part_bytes(RetlProbe *p);
extern struct varlena *retl_probe_keep_key(RetlProbe *p, struct varlena *key);
extern struct varlena *retl_probe_keep_key_bytes(RetlProbe *p, const char *data, uint32 len);
extern void retl_probe_build_index(RetlProbe *p);
extern void retl_probe_build_index_twice(RetlProbe *p);
extern int64 retl_probe_add_slot(RetlProbe *p, int64 key, int64 hash, struct varlena *jkey, uint8 flags);

/* probe_share.c */
extern bool retl_probe_share(RetlProbe *p);
extern void retl_probe_shared_add(RetlProbe *p, int64 key, int64 hash);
extern RetlProbe *retl_probe_worker_view(void);
extern void retl_probe_collect(RetlProbe *p);
extern void retl_probe_unshare(RetlProbe *p);
extern void retl_probe_localize(RetlProbe *p);
extern void retl_probe_keep(RetlProbe *p);
extern bool retl_probe_adopt(RetlProbe *p);
extern uint32 *retl_probe_shared_index(RetlProbe *p, Size bytes);
extern bool retl_probe_in_segment(RetlProbe *p, void *mem);
extern const char *retl_probe_segment_name(RetlProbe *p);

/* probe.c, for probe_share.c */
extern RetlProbe *retl_probe_active(void);
extern void retl_probe_index_added(RetlProbe *p, int64 from);
extern Size retl_probe_index_bytes(int64 n);

#endif
