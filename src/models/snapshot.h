/*
 * snapshot.h: how a diff sync's snapshot is stored (snapshot.c).
 */
#ifndef RETL_SNAPSHOT_H
#define RETL_SNAPSHOT_H

#include "executor/spi.h"
#include "utils/snapshot.h"

/* What an entry of a chunk says of its key */
typedef enum RetlEntryKind
{
	RETL_ENTRY_BASE,			/* a key of a whole snapshot */
	RETL_ENTRY_UPSERT,			/* a delta: the key holds this hash now */
	RETL_ENTRY_REMOVED			/* a delta: the key is gone */
} RetlEntryKind;

/*
 * An entry of a chunk: an integer key (jkey NULL), or the hash of a jsonb
 * key and the key's bytes (its data, without a varlena header).
 */
typedef void (*RetlSnapshotEntryFn) (void *arg, RetlEntryKind kind, int64 key, int64 hash,
									 const char *jkey, uint32 jlen);

/* What the worker (or a resync) changed of a snapshot since its last run */
typedef enum RetlEditKind
{
	RETL_EDIT_FORGET,			/* the key is not synced: send it again */
	RETL_EDIT_HASH,				/* the key is synced with this hash */
	RETL_EDIT_LEGACY,			/* the key holds retl 0.1's md5 of its JSON */
	RETL_EDIT_FORGET_ALL		/* no key is synced (a resync; key 'null') */
} RetlEditKind;

typedef struct RetlSnapshotEdit
{
	struct varlena *key;		/* jsonb (valid during the call only) */
	RetlEditKind kind;
	int64		hash;
} RetlSnapshotEdit;

typedef void (*RetlSnapshotEditFn) (void *arg, RetlSnapshotEdit *edit);

/* What a sync's stored snapshot holds */
typedef struct RetlSnapshotSize
{
	int64		entries;		/* in its chunks, deltas included */
	int64		bytes;			/* of its chunks */
	int64		edits;
	bool		jsonb_chunks;	/* some chunks hold jsonb keys */
	bool		int_chunks;		/* some chunks hold integer keys */
	int64		delta_entries;	/* in its delta chunks */
	int32		delta_chunks;
	int32		next_chunk;		/* after its last chunk */
	int64		chunks;			/* its chunks' rows */
	int64		xmin_sum;		/* the transactions that wrote them: any */
	int64		xmin_max;		/* change of the chunks changes these */
} RetlSnapshotSize;

/* A snapshot being written, chunk by chunk */
typedef struct RetlSnapshotWriter
{
	int			sync_id;
	bool		int_keys;
	bool		delta;			/* writes a delta after the stored chunks */
	bool		started;		/* the old chunks are deleted (or kept: a delta) */
	int32		chunk;			/* the next chunk's number */
	int32		count;			/* entries in buf */
	uint32		lo;				/* range of the entries' positions */
	uint32		hi;
	uint64		prev_key;		/* the entry before, in a compact chunk */
	StringInfoData buf;
	SPIPlanPtr	insert;
} RetlSnapshotWriter;

extern void retl_snapshot_size(int sync_id, Snapshot snap, RetlSnapshotSize *size);
extern void retl_snapshot_read(int sync_id, Snapshot snap, bool int_keys, uint32 lo, uint32 hi,
							   RetlSnapshotEntryFn fn, void *arg);
extern void retl_snapshot_edits(int sync_id, Snapshot snap, RetlSnapshotEditFn fn, void *arg);
extern void retl_snapshot_delete_edits(int sync_id, Snapshot snap);

extern void retl_snapshot_writer_begin(RetlSnapshotWriter *w, int sync_id, bool int_keys,
									  int32 delta_from);
extern void retl_snapshot_writer_whole(RetlSnapshotWriter *w);
extern void retl_snapshot_write(RetlSnapshotWriter *w, RetlEntryKind kind, int64 key, int64 hash,
								const char *jkey, uint32 jlen, uint32 pos);
extern void retl_snapshot_writer_end(RetlSnapshotWriter *w);

#endif
