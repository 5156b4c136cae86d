/*
 * decoder.c: the logical decoding output plugin "retl".
 *
 * The slot of a database (retl_<database oid>, see stream.c) decodes with
 * this plugin.  It emits only what the queue needs, for the tables that
 * logical syncs read (retl.logical_sources, a user catalog table so that
 * the plugin reads it as of each change):
 *
 *   B <end lsn>                 a transaction with changes for retl
 *   Q <sync> <op> <key>[ <row>] one change of one sync: op i, u or d; key
 *                               a JSON array of the key columns' text
 *                               values; row (append syncs) the inserted
 *                               row as JSON (to_jsonb, computed as the
 *                               table's owner: see trust.c)
 *   E <sync> <message>          a change of the sync that cannot be
 *                               queued (its key column was dropped, or
 *                               the table's replica identity no longer
 *                               holds the key)
 *   C                           its commit
 *
 * Fields are separated by tabs (JSON text escapes those it contains).
 *
 * Transactions with nothing for retl emit nothing.  A transaction larger
 * than logical_decoding_work_mem comes streamed while in progress (the
 * stream callbacks): its lines are kept in the spool (spool.c) and written
 * as the same block at its commit, so the worker sees no difference.
 *
 * Like the capture trigger, an update that changes the key emits a delete
 * of the old key first; state syncs read the row's latest state when they
 * send it, so no other column (TOASTed or not) is needed.  TRUNCATE is
 * captured by the sync's statement trigger, which still sees the rows.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/tupconvert.h"
#include "catalog/partition.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "capture/capture.h"
#include "capture/spool.h"
#include "sync/trust.h"

/* one logical sync of a table, as retl.logical_sources says */
typedef struct Source
{
	Oid			relid;
	int			sync_id;
	bool		append;
	int			nkeys;
	AttrNumber	attnums[RETL_CAPTURE_MAX_KEYS];
} Source;

typedef struct DecoderState
{
	MemoryContext cxt;			/* reset for every change */
	MemoryContext sources_cxt;	/* the sources of the current transaction */
	List	   *sources;		/* of Source, as of the snapshot below */
	bool		loaded;
	Snapshot	snap;			/* the historic snapshot they were read with */
	TransactionId snap_xmin;
	TransactionId snap_xmax;
	CommandId	snap_cid;
	bool		began;			/* B written for this transaction */
	bool		streaming;		/* in a block of a streamed transaction */
	TransactionId top;			/* while streaming: its top-level xid */
	TransactionId xid;			/* and the (sub)transaction of the change */
	RetlSpool  *spool;			/* the lines of streamed transactions */
	XLogRecPtr	end_lsn;		/* of the streamed transaction committing */
} DecoderState;

extern void _PG_output_plugin_init(OutputPluginCallbacks *cb);

static void
decoder_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	DecoderState *state = palloc0(sizeof(DecoderState));

	state->cxt = AllocSetContextCreate(ctx->context, "retl decoder change",
									   ALLOCSET_DEFAULT_SIZES);
	state->sources_cxt = AllocSetContextCreate(ctx->context, "retl decoder sources",
											   ALLOCSET_SMALL_SIZES);
	state->spool = retl_spool_create(ctx->context);
	ctx->output_plugin_private = state;
	opt->output_type = OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
	opt->receive_rewrites = false;
}

static void
decoder_shutdown(LogicalDecodingContext *ctx)
{
	DecoderState *state = ctx->output_plugin_private;

	MemoryContextDelete(state->cxt);
	MemoryContextDelete(state->sources_cxt);
	retl_spool_destroy(state->spool);
}

/* Read retl.logical_sources with the historic snapshot of this change. */
static void
load_sources(DecoderState *state)
{
	Oid			nsp = get_namespace_oid("retl", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("logical_sources", nsp) : InvalidOid;
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	MemoryContext old;

	MemoryContextReset(state->sources_cxt);
	state->sources = NIL;
	state->loaded = true;
	if (!OidIsValid(relid))
		return;

	rel = table_open(relid, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	old = MemoryContextSwitchTo(state->sources_cxt);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Datum		values[4];
		bool		nulls[4];
		Source	   *s;
		Datum	   *keys;
		int			nkeys;

		if (RelationGetDescr(rel)->natts != 4)
			elog(ERROR, "retl: unexpected shape of retl.logical_sources");
		heap_deform_tuple(tup, RelationGetDescr(rel), values, nulls);
		if (nulls[0] || nulls[1] || nulls[2] || nulls[3])
			continue;
		s = palloc0(sizeof(Source));
		s->relid = DatumGetObjectId(values[0]);
		s->sync_id = DatumGetInt32(values[1]);
		s->append = DatumGetBool(values[2]);
		deconstruct_array(DatumGetArrayTypeP(values[3]), INT2OID, 2, true, TYPALIGN_SHORT,
						  &keys, NULL, &nkeys);
		s->nkeys = Min(nkeys, RETL_CAPTURE_MAX_KEYS);
		for (int i = 0; i < s->nkeys; i++)
			s->attnums[i] = DatumGetInt16(keys[i]);
		state->sources = lappend(state->sources, s);
	}
	MemoryContextSwitchTo(old);
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

static void
decoder_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecoderState *state = ctx->output_plugin_private;

	/* written with the first change for retl, if any */
	state->began = false;
	state->loaded = false;
}

static void
decoder_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	DecoderState *state = ctx->output_plugin_private;

	if (!state->began)
		return;
	OutputPluginPrepareWrite(ctx, true);
	appendStringInfoChar(ctx->out, 'C');
	OutputPluginWrite(ctx, true);
}

/* Write one line, B first for the transaction's first. */
static void
output_line(LogicalDecodingContext *ctx, XLogRecPtr end_lsn, const char *line, int len)
{
	DecoderState *state = ctx->output_plugin_private;

	if (!state->began)
	{
		OutputPluginPrepareWrite(ctx, true);
		appendStringInfo(ctx->out, "B\t%X/%X", LSN_FORMAT_ARGS(end_lsn));
		OutputPluginWrite(ctx, true);
		state->began = true;
	}
	OutputPluginPrepareWrite(ctx, true);
	appendBinaryStringInfo(ctx->out, line, len);
	OutputPluginWrite(ctx, true);
}

/* The top-level transaction of txn. */
static TransactionId
top_xid(ReorderBufferTXN *txn)
{
	return txn->toptxn ? txn->toptxn->xid : txn->xid;
}

/*
 * Streaming (spool.c): a block of changes of a transaction in progress
 * begins or ends.
 */
static void
decoder_stream_start(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecoderState *state = ctx->output_plugin_private;

	state->streaming = true;
	state->loaded = false;
}

static void
decoder_stream_stop(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecoderState *state = ctx->output_plugin_private;

	state->streaming = false;
}

/* A streamed transaction, or a subtransaction of one, rolled back. */
static void
decoder_stream_abort(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr abort_lsn)
{
	DecoderState *state = ctx->output_plugin_private;

	retl_spool_abort(state->spool, top_xid(txn), txn->xid);
}

static void
replay_line(void *arg, const char *line, int len)
{
	LogicalDecodingContext *ctx = arg;
	DecoderState *state = ctx->output_plugin_private;

	output_line(ctx, state->end_lsn, line, len);
}

/* A streamed transaction committed: its lines, as one block. */
static void
decoder_stream_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	DecoderState *state = ctx->output_plugin_private;

	state->began = false;
	state->end_lsn = txn->end_lsn;
	retl_spool_replay(state->spool, txn->xid, replay_line, ctx);
	decoder_commit(ctx, txn, commit_lsn);
}

/* The key of the sync in tuple as a JSON array of text; false if unusable. */
static bool
append_key(StringInfo out, Source *s, HeapTuple tuple, TupleDesc desc)
{
	appendStringInfoChar(out, '[');
	for (int i = 0; i < s->nkeys; i++)
	{
		Form_pg_attribute att;
		Oid			typoutput;
		bool		typisvarlena;
		bool		isnull;
		Datum		value;

		if (s->attnums[i] < 1 || s->attnums[i] > desc->natts)
			return false;
		att = TupleDescAttr(desc, s->attnums[i] - 1);
		if (att->attisdropped)
			return false;
		value = heap_getattr(tuple, s->attnums[i], desc, &isnull);
		if (isnull)
			return false;
		getTypeOutputInfo(att->atttypid, &typoutput, &typisvarlena);
		if (i > 0)
			appendStringInfoChar(out, ',');
		escape_json(out, OidOutputFunctionCall(typoutput, value));
	}
	appendStringInfoChar(out, ']');
	return true;
}

/* Write a line of the transaction (kept in the spool while it streams). */
static void
put_line(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, StringInfo line)
{
	DecoderState *state = ctx->output_plugin_private;

	if (state->streaming)
		retl_spool_add(state->spool, state->top, state->xid, line->data, line->len);
	else
		output_line(ctx, txn->end_lsn, line->data, line->len);
}

/*
 * A change of s that cannot be queued: the worker records the message on
 * the sync (and logs it), and goes on.
 */
static void
emit_error(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Source *s, const char *message)
{
	StringInfoData line;

	initStringInfo(&line);
	appendStringInfo(&line, "E\t%d\t%s", s->sync_id, message);
	put_line(ctx, txn, &line);
}

static void
emit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Source *s, char op,
	 HeapTuple tuple, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData key;
	StringInfoData line;

	initStringInfo(&key);
	if (s->nkeys == 0 || !append_key(&key, s, tuple, desc))
	{
		/* the worker shows it on the sync, which is failing from now on */
		emit_error(ctx, txn, s,
				   psprintf("a change of table \"%s\" has no value for a key column of the sync (was it dropped?)",
							RelationGetRelationName(rel)));
		return;
	}
	initStringInfo(&line);
	appendStringInfo(&line, "Q\t%d\t%c\t%s", s->sync_id, op, key.data);
	if (s->append)
	{
		/* as the table's owner: the worker must not run a user's cast to json */
		Datum		row = retl_row_to_jsonb(heap_copy_tuple_as_datum(tuple, desc),
											desc->tdtypeid, rel->rd_rel->relowner);

		appendStringInfoChar(&line, '\t');
		appendStringInfoString(&line, DatumGetCString(DirectFunctionCall1(jsonb_out, row)));
	}
	put_line(ctx, txn, &line);
}

static void decode_for(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Source *s,
					   ReorderBufferChangeType action, HeapTuple newtup, HeapTuple oldtup,
					   Relation rel, Relation leaf);

static void
decoder_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   Relation rel, ReorderBufferChange *change)
{
	DecoderState *state = ctx->output_plugin_private;
	MemoryContext old;
	ListCell   *lc;
	List	   *ancestors;

	/*
	 * Read the sources again whenever the historic snapshot changed: a
	 * transaction that began before a sync was created (or switched to
	 * logical capture) and writes the table after must see it.
	 */
	{
		Snapshot	snap = GetCatalogSnapshot(InvalidOid);

		if (!state->loaded || snap != state->snap || snap->xmin != state->snap_xmin ||
			snap->xmax != state->snap_xmax || snap->curcid != state->snap_cid)
		{
			load_sources(state);
			state->snap = snap;
			state->snap_xmin = snap->xmin;
			state->snap_xmax = snap->xmax;
			state->snap_cid = snap->curcid;
		}
	}
	if (state->sources == NIL)
		return;

	old = MemoryContextSwitchTo(state->cxt);
	if (state->streaming)
	{
		state->top = top_xid(txn);
		state->xid = change->txn->xid;
	}
	/* a partition's changes belong to the partitioned table synced */
	ancestors = rel->rd_rel->relispartition ? get_partition_ancestors(RelationGetRelid(rel)) : NIL;
	foreach(lc, state->sources)
	{
		Source	   *s = lfirst(lc);
		HeapTuple	newtup = change->data.tp.newtuple ? &change->data.tp.newtuple->tuple : NULL;
		HeapTuple	oldtup = change->data.tp.oldtuple ? &change->data.tp.oldtuple->tuple : NULL;
		Relation	srel = rel;

		if (s->relid != RelationGetRelid(rel))
		{
			TupleConversionMap *map;

			if (!list_member_oid(ancestors, s->relid))
				continue;
			/* the tuple with the partitioned table's attribute numbers */
			srel = RelationIdGetRelation(s->relid);
			if (!RelationIsValid(srel))
				continue;
			map = convert_tuples_by_name(RelationGetDescr(rel), RelationGetDescr(srel));
			if (map != NULL)
			{
				if (newtup)
					newtup = execute_attr_map_tuple(newtup, map);
				if (oldtup)
					oldtup = execute_attr_map_tuple(oldtup, map);
			}
		}
		decode_for(ctx, txn, s, change->action, newtup, oldtup, srel, rel);
		if (srel != rel)
			RelationClose(srel);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(state->cxt);
}

/*
 * Whether the WAL of an update or delete of leaf (the table changed: rel
 * itself, or a partition of it) logs the key of s: the replica identity of
 * leaf holds every key column (FULL holds them all).  retl_create_sync()
 * checks it, but the identity can change since: REPLICA IDENTITY NOTHING,
 * or the primary key dropped (DEFAULT then logs nothing), or replaced by
 * one of other columns.  Without it a delete comes without its key, and a
 * key change looks like an update of the new key alone.
 */
static bool
identity_holds_key(Source *s, Relation rel, Relation leaf)
{
	Bitmapset  *ident;

	if (leaf->rd_rel->relreplident == REPLICA_IDENTITY_FULL)
		return true;
	if (leaf->rd_rel->relreplident == REPLICA_IDENTITY_NOTHING)
		return false;
	ident = RelationGetIdentityKeyBitmap(leaf);
	for (int i = 0; i < s->nkeys; i++)
	{
		AttrNumber	attnum = s->attnums[i];

		if (attnum < 1 || attnum > RelationGetDescr(rel)->natts)
			return false;
		/* a partition numbers its columns its own way */
		if (leaf != rel)
			attnum = get_attnum(RelationGetRelid(leaf),
								NameStr(TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attname));
		if (attnum == InvalidAttrNumber ||
			!bms_is_member(attnum - FirstLowInvalidHeapAttributeNumber, ident))
			return false;
	}
	return true;
}

/* Does tuple hold a value for every key column of s? */
static bool
key_present(Source *s, HeapTuple tuple, TupleDesc desc)
{
	for (int i = 0; i < s->nkeys; i++)
	{
		if (s->attnums[i] < 1 || s->attnums[i] > desc->natts ||
			TupleDescAttr(desc, s->attnums[i] - 1)->attisdropped ||
			heap_attisnull(tuple, s->attnums[i], desc))
			return false;
	}
	return true;
}

static void
identity_lost(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Source *s, Relation leaf,
			  const char *what)
{
	emit_error(ctx, txn, s,
			   psprintf("%s of table %s came without the sync's key: the table's replica identity no longer holds it",
						what, quote_qualified_identifier(get_namespace_name(RelationGetNamespace(leaf)),
														 RelationGetRelationName(leaf))));
}

/*
 * Emit what one change means for one source (rel has its attributes, leaf
 * is the table changed).
 */
static void
decode_for(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Source *s,
		   ReorderBufferChangeType action, HeapTuple newtup, HeapTuple oldtup,
		   Relation rel, Relation leaf)
{
	switch (action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			if (newtup)
				emit(ctx, txn, s, 'i', newtup, rel);
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			if (s->append || newtup == NULL)
				break;
			/* its new key is queued all the same; a change of key is lost */
			if (!identity_holds_key(s, rel, leaf))
				identity_lost(ctx, txn, s, leaf, "an update (its old key)");
			/* the old key is logged only when it changed */
			else if (oldtup && retl_key_changed(s->nkeys, s->attnums, oldtup, newtup, RelationGetDescr(rel)))
				emit(ctx, txn, s, 'd', oldtup, rel);
			emit(ctx, txn, s, 'u', newtup, rel);
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			if (s->append)
				break;
			/* the old tuple is what the writer logged: its key, if there */
			if (oldtup == NULL ||
				(!key_present(s, oldtup, RelationGetDescr(rel)) && !identity_holds_key(s, rel, leaf)))
				identity_lost(ctx, txn, s, leaf, "a delete");
			else
				emit(ctx, txn, s, 'd', oldtup, rel);
			break;
		default:
			break;
	}
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = decoder_startup;
	cb->begin_cb = decoder_begin;
	cb->change_cb = decoder_change;
	cb->commit_cb = decoder_commit;
	cb->stream_start_cb = decoder_stream_start;
	cb->stream_stop_cb = decoder_stream_stop;
	cb->stream_abort_cb = decoder_stream_abort;
	cb->stream_commit_cb = decoder_stream_commit;
	cb->stream_change_cb = decoder_change;
	cb->shutdown_cb = decoder_shutdown;
}
