/*
 * snapshot.c: how a diff sync's snapshot is stored.
 *
 * A sync's snapshot is what it last synced: for each key of its result, a
 * 64-bit hash of the key's mapped values (rowhash.c).  It is kept compact,
 * in chunks of about 1 MB (retl.snapshot_chunks, bytea stored without
 * compression, which random hashes would not repay): an integer key (as
 * its difference from the key before it: one byte for keys in order, each
 * within 63 of the one before) and its hash, about 9 bytes, or the hash of
 * a jsonb key, its hash of values, and the key's bytes.  A run reads the chunks of its part of the
 * keys (each chunk says the range of key hashes it holds).  The first run
 * writes the whole snapshot (1M integer keys in order are 9 MB in 9 rows);
 * a later run writes only what changed, a delta (chunks of entries of 16
 * bytes an integer key, each marked as its new hash or removed), read after
 * the whole one and the older deltas.  A 1% diff of 1M keys writes 170
 * kB, not 9 MB (and as much WAL, which every concurrent commit waits to
 * flush).  A run whose deltas would hold more than a quarter as many
 * entries as the whole snapshot, or that finds them too many chunks,
 * writes the whole snapshot again.  A row per key, as before, cost a
 * btree insert of a jsonb key each (1M keys: 5.3 s, three quarters of a
 * first run).
 *
 * Between runs the worker records what it changes of a snapshot as edits
 * (retl.snapshot_edits, only ever inserted: a run never waits for the
 * worker nor the worker for a run): a dead letter's key forgotten, so the
 * next run sends it again, or kept with hash 0, a delete that failed, so
 * the next run removes it again; a resync forgets every key (an edit of
 * key 'null'; one that no row has then is removed all the same, synced
 * before the resync: probe_load.c).  A database updated from retl 0.1 keeps
 * 0.1's md5 of each row's JSON there until the next run.  A run applies
 * the edits it sees, oldest first, over the chunks, and deletes those it
 * applied when it saves the snapshot: an edit made during a run is
 * applied by the next.
 *
 * Two runs of a sync never overlap (a run is claimed only when none of its
 * sync is running: runs.c), so a delta is numbered after the chunks its
 * run read and nothing writes the sync's chunks meanwhile.
 *
 * Numbers are stored little-endian, whatever the server's byte order.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "base/identity.h"
#include "models/probe.h"
#include "models/snapshot.h"

/*
 * A chunk: its varlena header, then "RS1" and its kind: 'k' or 'j' (a
 * whole snapshot's integer or jsonb keys), 'I' or 'J' (a delta's: each
 * entry then ends with a byte, 'u' for a key's new hash or 'r' for a key
 * removed), or 'i' (a whole snapshot's integer keys as written before 'k').
 * An entry of 'i', 'I', 'j' and 'J' starts with its key (or the hash of a
 * jsonb key) and its hash, 8 bytes each; one of 'k' with its key's
 * difference from the key before it in the chunk (from 0 for the first),
 * zigzag-encoded as a base-128 varint (1 byte for a difference within 63,
 * at most 10), then its hash: a million keys read in order take 9 MB, not 16.
 */
#define CHUNK_MAGIC		"RS1"
#define CHUNK_BYTES		(1024 * 1024)
#define VARINT_MAX		10

static inline uint64
to_le64(uint64 v)
{
#ifdef WORDS_BIGENDIAN
	return pg_bswap64(v);
#else
	return v;
#endif
}

static inline uint32
to_le32(uint32 v)
{
#ifdef WORDS_BIGENDIAN
	return pg_bswap32(v);
#else
	return v;
#endif
}

static inline uint64
get64(const char *p)
{
	uint64		v;

	memcpy(&v, p, sizeof(v));
	return to_le64(v);
}

static inline uint32
get32(const char *p)
{
	uint32		v;

	memcpy(&v, p, sizeof(v));
	return to_le32(v);
}

/*
 * Write a key of a compact chunk at p (room for VARINT_MAX bytes): its
 * difference from the one before.  Returns the bytes written.
 */
static inline int
put_key_delta(char *p, uint64 key, uint64 prev)
{
	uint64		d = key - prev;
	uint64		z = (d << 1) ^ (uint64) ((int64) d >> 63);
	int			n = 0;

	while (z >= 0x80)
	{
		p[n++] = (char) ((z & 0x7f) | 0x80);
		z >>= 7;
	}
	p[n++] = (char) z;
	return n;
}

/*
 * Read a key of a compact chunk at *p (before end), given the one before:
 * false if its bytes are not a varint.
 */
static bool
get_key_delta(const char **p, const char *end, uint64 prev, uint64 *key)
{
	uint64		z = 0;

	for (int i = 0; i < VARINT_MAX && *p < end; i++)
	{
		unsigned char b = (unsigned char) *(*p)++;

		/* (the tenth byte holds the 64th bit only) */
		if (i == VARINT_MAX - 1 && b > 1)
			return false;
		z |= (uint64) (b & 0x7f) << (7 * i);
		if (!(b & 0x80))
		{
			*key = prev + ((z >> 1) ^ (uint64) -(int64) (z & 1));
			return true;
		}
	}
	return false;
}

static void
corrupt(int sync_id, int32 chunk)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("chunk %d of the snapshot of sync %d is not readable", chunk, sync_id),
			 errhint("SELECT retl_resync(name) forgets the snapshot and sends every row again.")));
}

/* What a sync's stored snapshot holds, as snap sees it. */
void
retl_snapshot_size(int sync_id, Snapshot snap, RetlSnapshotSize *size)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(sync_id)};
	SPIPlanPtr	plan;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	plan = SPI_prepare("SELECT COALESCE(pg_catalog.sum(c.keys), 0)::pg_catalog.int8,"
					   " COALESCE(pg_catalog.sum(pg_catalog.octet_length(c.data)), 0)::pg_catalog.int8,"
					   " COALESCE(pg_catalog.bool_or(NOT c.int_keys), false),"
					   " (SELECT pg_catalog.count(*) FROM retl.snapshot_edits e WHERE e.sync_id = $1),"
					   " COALESCE(pg_catalog.bool_or(c.int_keys), false),"
					   " COALESCE(pg_catalog.sum(c.keys) FILTER (WHERE c.delta), 0)::pg_catalog.int8,"
					   " pg_catalog.count(*) FILTER (WHERE c.delta)::pg_catalog.int4,"
					   " COALESCE(pg_catalog.max(c.chunk) OPERATOR(pg_catalog.+) 1, 0),"
					   " pg_catalog.count(*),"
					   " COALESCE(pg_catalog.sum(c.xmin::pg_catalog.text::pg_catalog.int8), 0)::pg_catalog.int8,"
					   " COALESCE(pg_catalog.max(c.xmin::pg_catalog.text::pg_catalog.int8), 0)"
					   " FROM retl.snapshot_chunks c WHERE c.sync_id = $1", 1, types);
	if (plan == NULL ||
		SPI_execute_snapshot(plan, values, NULL, snap, InvalidSnapshot, true, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "retl: could not size the snapshot of sync %d", sync_id);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	size->entries = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	size->bytes = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	size->jsonb_chunks = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	size->edits = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	size->int_chunks = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	size->delta_entries = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
	size->delta_chunks = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
	size->next_chunk = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
	size->chunks = DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
	size->xmin_sum = DatumGetInt64(SPI_getbinval(tup, desc, 10, &isnull));
	size->xmin_max = DatumGetInt64(SPI_getbinval(tup, desc, 11, &isnull));
	SPI_freetuptable(SPI_tuptable);
	SPI_freeplan(plan);
}

/* Pass each entry of a chunk to fn. */
static void
read_chunk(int sync_id, int32 chunk, bytea *data, int32 keys, bool is_delta,
		   RetlSnapshotEntryFn fn, void *arg)
{
	const char *p = VARDATA_ANY(data);
	const char *end = p + VARSIZE_ANY_EXHDR(data);
	bool		jsonb;
	bool		delta;
	bool		compact;
	uint64		prev = 0;

	if (end - p < 4 || memcmp(p, CHUNK_MAGIC, 3) != 0 || strchr("ijkIJ", p[3]) == NULL || p[3] == '\0')
		corrupt(sync_id, chunk);
	jsonb = (p[3] == 'j' || p[3] == 'J');
	delta = (p[3] == 'I' || p[3] == 'J');
	compact = (p[3] == 'k');
	if (delta != is_delta)
		corrupt(sync_id, chunk);
	p += 4;
	for (int32 i = 0; i < keys; i++)
	{
		RetlEntryKind kind = RETL_ENTRY_BASE;
		int64		key;
		int64		hash;
		const char *jkey = NULL;
		uint32		len = 0;

		if (compact)
		{
			if (!get_key_delta(&p, end, prev, &prev) || end - p < 8)
				corrupt(sync_id, chunk);
			key = (int64) prev;
			hash = (int64) get64(p);
			p += 8;
		}
		else
		{
			if (end - p < 16)
				corrupt(sync_id, chunk);
			key = (int64) get64(p);
			hash = (int64) get64(p + 8);
			p += 16;
		}
		if (jsonb)
		{
			if (end - p < 4)
				corrupt(sync_id, chunk);
			len = get32(p);
			p += 4;
			if ((uint64) (end - p) < len)
				corrupt(sync_id, chunk);
			jkey = p;
			p += len;
		}
		if (delta)
		{
			if (end - p < 1 || (*p != 'u' && *p != 'r'))
				corrupt(sync_id, chunk);
			kind = *p == 'u' ? RETL_ENTRY_UPSERT : RETL_ENTRY_REMOVED;
			p++;
		}
		fn(arg, kind, key, hash, jkey, len);
	}
	if (p != end)
		corrupt(sync_id, chunk);
}

/*
 * Pass fn every entry of the sync's chunks that hold key positions in
 * [lo, hi] (the entries of other positions too: the caller filters), and
 * of every chunk whose keys are not in the form int_keys says (their
 * positions are of another hash), as snap sees them, one chunk in memory
 * at a time.
 */
void
retl_snapshot_read(int sync_id, Snapshot snap, bool int_keys, uint32 lo, uint32 hi,
				   RetlSnapshotEntryFn fn, void *arg)
{
	Oid			types[4] = {INT4OID, INT8OID, INT8OID, BOOLOID};
	Datum		values[4];
	Oid			fetch_types[2] = {INT4OID, INT4OID};
	Datum		fetch_values[2];
	SPIPlanPtr	list;
	SPIPlanPtr	fetch;
	int32	   *chunks;
	int32	   *keys;
	bool	   *deltas;
	uint64		n;
	bool		isnull;

	values[0] = Int32GetDatum(sync_id);
	values[1] = Int64GetDatum((int64) lo);
	values[2] = Int64GetDatum((int64) hi);
	values[3] = BoolGetDatum(int_keys);
	/* a chunk of keys in the other form has positions of another hash */
	list = SPI_prepare("SELECT c.chunk, c.keys, c.delta FROM retl.snapshot_chunks c WHERE c.sync_id = $1"
					   " AND (c.int_keys <> $4 OR (c.hi >= $2 AND c.lo <= $3)) ORDER BY c.delta, c.chunk", 4, types);
	fetch = SPI_prepare("SELECT c.data FROM retl.snapshot_chunks c WHERE c.sync_id = $1 AND c.chunk = $2",
						2, fetch_types);
	if (list == NULL || fetch == NULL ||
		SPI_execute_snapshot(list, values, NULL, snap, InvalidSnapshot, true, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the snapshot of sync %d", sync_id);
	n = SPI_processed;
	chunks = palloc(sizeof(int32) * Max(n, 1));
	keys = palloc(sizeof(int32) * Max(n, 1));
	deltas = palloc(sizeof(bool) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		chunks[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		keys[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		deltas[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);

	/* the data is detoasted under snap too (it may be deleted by now) */
	PushActiveSnapshot(snap);
	for (uint64 i = 0; i < n; i++)
	{
		bytea	   *data;
		Datum		stored;

		CHECK_FOR_INTERRUPTS();
		fetch_values[0] = Int32GetDatum(sync_id);
		fetch_values[1] = Int32GetDatum(chunks[i]);
		if (SPI_execute_snapshot(fetch, fetch_values, NULL, snap, InvalidSnapshot, true, false, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "retl: could not read chunk %d of the snapshot of sync %d", chunks[i], sync_id);
		stored = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		data = DatumGetByteaPP(stored);
		read_chunk(sync_id, chunks[i], data, keys[i], deltas[i], fn, arg);
		if ((Pointer) data != DatumGetPointer(stored))
			pfree(data);
		SPI_freetuptable(SPI_tuptable);
	}
	PopActiveSnapshot();
	SPI_freeplan(list);
	SPI_freeplan(fetch);
	pfree(chunks);
	pfree(keys);
	pfree(deltas);
}

/*
 * Pass fn each of the sync's edits, oldest first, as snap sees them, read
 * a batch at a time.
 */
void
retl_snapshot_edits(int sync_id, Snapshot snap, RetlSnapshotEditFn fn, void *arg)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(sync_id)};
	SPIPlanPtr	plan;
	Portal		portal;

	plan = SPI_prepare("SELECT e.key, e.hash, e.legacy_hash IS NOT NULL,"
					   " e.key OPERATOR(pg_catalog.=) 'null'::pg_catalog.jsonb"
					   " FROM retl.snapshot_edits e WHERE e.sync_id = $1 ORDER BY e.id", 1, types);
	if (plan == NULL)
		elog(ERROR, "retl: could not read the snapshot edits of sync %d", sync_id);
	/* a read-only cursor reads with the active snapshot */
	PushActiveSnapshot(snap);
	portal = SPI_cursor_open(NULL, plan, values, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			RetlSnapshotEdit edit;
			bool		isnull;
			bool		hash_null;
			Datum		hash;

			Datum		key = SPI_getbinval(tup, desc, 1, &isnull);

			edit.key = PG_DETOAST_DATUM_PACKED(key);
			hash = SPI_getbinval(tup, desc, 2, &hash_null);
			edit.hash = hash_null ? 0 : DatumGetInt64(hash);
			if (DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)))
				edit.kind = RETL_EDIT_LEGACY;
			else if (DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull)))
				edit.kind = RETL_EDIT_FORGET_ALL;
			else
				edit.kind = hash_null ? RETL_EDIT_FORGET : RETL_EDIT_HASH;
			fn(arg, &edit);
			if ((Pointer) edit.key != DatumGetPointer(key))
				pfree(edit.key);
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_freetuptable(SPI_tuptable);
	SPI_cursor_close(portal);
	PopActiveSnapshot();
	SPI_freeplan(plan);
}

/*
 * Delete the sync's edits a run applied: those snap sees (an edit made
 * since is the next run's).
 */
void
retl_snapshot_delete_edits(int sync_id, Snapshot snap)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(sync_id)};
	SPIPlanPtr	plan;

	plan = SPI_prepare("DELETE FROM retl.snapshot_edits e WHERE e.sync_id = $1", 1, types);
	if (plan == NULL ||
		SPI_execute_snapshot(plan, values, NULL, snap, InvalidSnapshot, false, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "retl: could not delete applied snapshot edits");
	SPI_freeplan(plan);
}

/* Delete a sync's chunks, once, before its snapshot is written again. */
static void
delete_chunks(RetlSnapshotWriter *w)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(w->sync_id)};

	if (SPI_execute_with_args("DELETE FROM retl.snapshot_chunks c WHERE c.sync_id = $1",
							  1, types, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "retl: could not save the snapshot of sync %d", w->sync_id);
	w->started = true;
}

/*
 * Start writing a sync's snapshot: the whole of it (delta_from < 0: its
 * chunks are deleted at the first write), or a delta after the stored
 * chunks, numbered from delta_from.
 */
void
retl_snapshot_writer_begin(RetlSnapshotWriter *w, int sync_id, bool int_keys, int32 delta_from)
{
	memset(w, 0, sizeof(RetlSnapshotWriter));
	w->sync_id = sync_id;
	w->int_keys = int_keys;
	w->delta = delta_from >= 0;
	w->chunk = Max(delta_from, 0);
	w->lo = PG_UINT32_MAX;
	initStringInfo(&w->buf);
}

/* A writer of a delta that has written nothing writes the whole snapshot instead. */
void
retl_snapshot_writer_whole(RetlSnapshotWriter *w)
{
	Assert(!w->started);
	w->delta = false;
	w->chunk = 0;
}

static void
start_chunk(RetlSnapshotWriter *w)
{
	resetStringInfo(&w->buf);
	appendStringInfoSpaces(&w->buf, VARHDRSZ);
	appendBinaryStringInfo(&w->buf, CHUNK_MAGIC, 3);
	appendStringInfoChar(&w->buf, w->delta ? (w->int_keys ? 'I' : 'J') : (w->int_keys ? 'k' : 'j'));
	w->count = 0;
	w->prev_key = 0;
	w->lo = PG_UINT32_MAX;
	w->hi = 0;
}

static void
flush_chunk(RetlSnapshotWriter *w)
{
	Oid			types[8] = {INT4OID, INT4OID, INT4OID, INT8OID, INT8OID, BYTEAOID, BOOLOID, BOOLOID};
	Datum		values[8];

	if (w->count == 0)
		return;
	SET_VARSIZE(w->buf.data, w->buf.len);
	values[0] = Int32GetDatum(w->sync_id);
	values[1] = Int32GetDatum(w->chunk);
	values[2] = Int32GetDatum(w->count);
	values[3] = Int64GetDatum((int64) w->lo);
	values[4] = Int64GetDatum((int64) w->hi);
	values[5] = PointerGetDatum(w->buf.data);
	values[6] = BoolGetDatum(w->int_keys);
	values[7] = BoolGetDatum(w->delta);
	/*
	 * A generic plan: a custom one (SPI's choice for a plan's first five
	 * runs) is planned again for each chunk, its 1 MB data copied into the
	 * plan as a constant, twice: a sixth of writing a 1M-key snapshot.
	 */
	if (w->insert == NULL)
		w->insert = SPI_prepare_cursor("INSERT INTO retl.snapshot_chunks"
									   " (sync_id, chunk, keys, lo, hi, data, int_keys, delta)"
									   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
									   8, types, CURSOR_OPT_GENERIC_PLAN);
	if (w->insert == NULL ||
		SPI_execute_plan(w->insert, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not save the snapshot of sync %d", w->sync_id);
	if (w->chunk == PG_INT32_MAX)
		elog(ERROR, "retl: the snapshot of sync %d has too many chunks", w->sync_id);
	w->chunk++;
	start_chunk(w);
}

/*
 * Add an entry (pos: the position of its key's hash, for the chunk's
 * range; kind: RETL_ENTRY_BASE in a whole snapshot, else a delta's).
 * The first one of a whole snapshot deletes the sync's chunks.
 */
void
retl_snapshot_write(RetlSnapshotWriter *w, RetlEntryKind kind, int64 key, int64 hash,
					const char *jkey, uint32 jlen, uint32 pos)
{
	uint64		v[2];
	char	   *p;

	Assert(w->delta == (kind != RETL_ENTRY_BASE));
	if (!w->started)
	{
		if (!w->delta)
			delete_chunks(w);
		w->started = true;
		/* a chunk's room at once (doubling from 1 kB, each size faulted in anew) */
		enlargeStringInfo(&w->buf, CHUNK_BYTES + 64);
		start_chunk(w);
	}
	/*
	 * Room for the entry at once, then its bytes written in place (a
	 * million entries appended field by field, each append checking for
	 * room: 3% of a first run's time).
	 */
	enlargeStringInfo(&w->buf, VARINT_MAX + sizeof(v) + sizeof(uint32) + jlen + 1);
	p = w->buf.data + w->buf.len;
	v[0] = to_le64((uint64) key);
	v[1] = to_le64((uint64) hash);
	if (w->int_keys && !w->delta)
	{
		/* a compact chunk */
		p += put_key_delta(p, (uint64) key, w->prev_key);
		w->prev_key = (uint64) key;
		memcpy(p, &v[1], sizeof(v[1]));
		p += sizeof(v[1]);
	}
	else
	{
		memcpy(p, v, sizeof(v));
		p += sizeof(v);
	}
	if (!w->int_keys)
	{
		uint32		len = to_le32(jlen);

		memcpy(p, &len, sizeof(len));
		p += sizeof(len);
		memcpy(p, jkey, jlen);
		p += jlen;
	}
	if (w->delta)
		*p++ = kind == RETL_ENTRY_UPSERT ? 'u' : 'r';
	w->buf.len = p - w->buf.data;
	w->buf.data[w->buf.len] = '\0';
	w->count++;
	w->lo = Min(w->lo, pos);
	w->hi = Max(w->hi, pos);
	if (w->buf.len >= CHUNK_BYTES)
		flush_chunk(w);
}

/*
 * The last chunk; a whole snapshot of no entries (a run of an empty
 * result) deletes the sync's chunks all the same, an empty delta writes
 * nothing.
 */
void
retl_snapshot_writer_end(RetlSnapshotWriter *w)
{
	if (!w->started)
	{
		if (!w->delta)
			delete_chunks(w);
		return;
	}
	flush_chunk(w);
	if (w->insert != NULL)
		SPI_freeplan(w->insert);
	w->insert = NULL;
}

/* A key of retl.snapshots into the function's result */
static void
put_row(void *arg, Datum key, int64 hash, bool legacy)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) arg;
	Datum		values[2] = {key, Int64GetDatum(hash)};
	bool		nulls[2] = {false, legacy};

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

PG_FUNCTION_INFO_V1(retl_snapshot_rows);

/*
 * retl._snapshot(sync_id) → (key jsonb, hash bigint): the sync's snapshot
 * as its next run would see it (the chunks, the edits applied), part by
 * part as a run loads it.
 */
Datum
retl_snapshot_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RetlProbe  *probe;
	Oid			save_uid;
	int			save_sec;
	int			nest;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "retl: SPI_connect failed");
	/* the tables are the extension's: read as its owner (a caller may run this) */
	nest = retl_begin_as(retl_extension_owner(), SECURITY_LOCAL_USERID_CHANGE,
						 RETL_SAFE_PATH, &save_uid, &save_sec);
	probe = retl_probe_begin(PG_GETARG_INT32(0), NULL, true, GetActiveSnapshot());
	do
		retl_probe_each(probe, put_row, rsinfo);
	while (retl_probe_next_part(probe));
	retl_probe_end(probe);
	retl_end_as(nest, save_uid, save_sec);
	SPI_finish();
	return (Datum) 0;
}
