/*
 * capture_trigger.c: the row trigger that captures changes of a table.
 *
 * This runs in the writer's transaction, so it does as little as it can:
 * one row into retl.queue.  Upsert syncs queue only the key and the kind
 * of change (the worker reads the row's latest state when it sends it):
 * the key is built by jsonb_build_array, called directly (PostgreSQL's own
 * JSON for each value; a value of a type no superuser owns is passed as
 * its text, see trust.c), and the row is written without the executor
 * (queue_insert.c), or, where retl.queue is not as that expects, by an
 * INSERT through a saved plan with the key values as typed parameters,
 * the same jsonb_build_array in it.  Append syncs also
 * queue the inserted row as JSON, since each insert is an event, computed
 * as the table's owner: it runs as the extension's owner (SECURITY
 * DEFINER), which must not run a cast to json that a user wrote.  The
 * worker is woken when the transaction commits; a rolled back transaction
 * takes its queued rows with it.  When row-level security narrows the
 * view of an upsert sync's owner, only changes of rows the owner may see
 * are queued, and an update that moves a row out of its view as a delete
 * (visibility.c).
 *
 * Trigger arguments: sync id, 'upsert' or 'append', key attribute numbers
 * ("1,3").  Attribute numbers survive column renames.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/htup_details.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "base/identity.h"
#include "base/subxact.h"
#include "base/shmem.h"
#include "capture/capture.h"
#include "capture/queue_insert.h"
#include "capture/visibility.h"
#include "sync/keytext.h"
#include "sync/owner.h"
#include "sync/trust.h"

/*
 * How a sync's changes are queued, valid while its key types do not
 * change: jsonb_build_array of the key's values, called directly, and the
 * INSERT's saved plan, prepared when first needed.
 */
typedef struct CapturePlan
{
	int			sync_id;		/* hash key */
	bool		valid;
	bool		append;
	int			nkeys;
	AttrNumber	attnums[RETL_CAPTURE_MAX_KEYS];
	Oid			types[RETL_CAPTURE_MAX_KEYS];
	RetlKeyForm forms[RETL_CAPTURE_MAX_KEYS];	/* passed as is or as text */
	Oid			outfuncs[RETL_CAPTURE_MAX_KEYS]; /* RETL_KEY_OUTPUT's function */
	Oid			argtypes[RETL_CAPTURE_MAX_KEYS + 3]; /* the INSERT's: sync_id, op, key values,
										 * data */
	Oid			rowtype;
	MemoryContext cxt;			/* the call's expression and FmgrInfo */
	FmgrInfo	build_array;	/* jsonb_build_array of the key's argtypes */
	SPIPlanPtr	plan;
	RetlViewer	viewer;			/* its owner and the lookup of its rows */
} CapturePlan;

static HTAB *plans = NULL;

static void
parse_args(Trigger *trigger, int *sync_id, bool *append, int *nkeys, AttrNumber *attnums)
{
	char	   *list;
	char	   *tok;
	char	   *save;

	if (trigger->tgnargs != 3)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("retl_capture() expects 3 trigger arguments"),
				 errhint("Capture triggers are created by retl_create_sync(); do not create them by hand.")));
	*sync_id = pg_strtoint32(trigger->tgargs[0]);
	*append = strcmp(trigger->tgargs[1], "append") == 0;
	*nkeys = 0;
	list = pstrdup(trigger->tgargs[2]);
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		if (*nkeys >= RETL_CAPTURE_MAX_KEYS)
			elog(ERROR, "retl: too many key columns");
		attnums[(*nkeys)++] = (AttrNumber) pg_strtoint32(tok);
	}
	if (*nkeys == 0)
		elog(ERROR, "retl: capture trigger without key columns");
}

static Oid
key_type(TupleDesc desc, AttrNumber attnum, int sync_id)
{
	Form_pg_attribute att;

	if (attnum < 1 || attnum > desc->natts ||
		(att = TupleDescAttr(desc, attnum - 1))->attisdropped)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("a key column of retl sync %d was dropped", sync_id),
				 errhint("Drop the sync with retl_drop_sync() or restore the column.")));
	return att->atttypid;
}

/* How this sync's changes are queued, set up again if the key types changed. */
static CapturePlan *
get_plan(int sync_id, bool append, int nkeys, AttrNumber *attnums, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	CapturePlan *entry;
	bool		found;
	bool		valid;
	List	   *args = NIL;
	FuncExpr   *call;
	MemoryContext old;

	if (plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int);
		ctl.entrysize = sizeof(CapturePlan);
		plans = hash_create("retl capture plans", 16, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(plans, &sync_id, HASH_ENTER, &found);
	if (!found)
	{
		entry->valid = false;
		entry->plan = NULL;
		memset(&entry->viewer, 0, sizeof(RetlViewer));
		entry->cxt = AllocSetContextCreate(TopMemoryContext, "retl capture", ALLOCSET_SMALL_SIZES);
	}
	valid = entry->valid && entry->append == append &&
		entry->nkeys == nkeys && entry->rowtype == desc->tdtypeid;
	for (int i = 0; valid && i < nkeys; i++)
		valid = entry->attnums[i] == attnums[i] &&
			entry->types[i] == key_type(desc, attnums[i], sync_id);
	if (valid)
		return entry;

	if (entry->plan != NULL)
		SPI_freeplan(entry->plan);
	entry->plan = NULL;
	entry->valid = false;
	MemoryContextReset(entry->cxt);
	entry->append = append;
	entry->nkeys = nkeys;
	entry->rowtype = desc->tdtypeid;
	entry->argtypes[0] = INT4OID;
	entry->argtypes[1] = CHAROID;
	old = MemoryContextSwitchTo(entry->cxt);
	for (int i = 0; i < nkeys; i++)
	{
		entry->attnums[i] = attnums[i];
		entry->types[i] = key_type(desc, attnums[i], sync_id);
		entry->outfuncs[i] = InvalidOid;
		entry->forms[i] = retl_key_form(entry->types[i]);
		/* a domain's value as its base type: no check runs */
		entry->argtypes[i + 2] = getBaseType(entry->types[i]);
		if (entry->forms[i] != RETL_KEY_AS_IS)
			entry->argtypes[i + 2] = TEXTOID;
		if (entry->forms[i] == RETL_KEY_OUTPUT)
		{
			bool		varlena;

			getTypeOutputInfo(entry->types[i], &entry->outfuncs[i], &varlena);
		}
		args = lappend(args, makeNullConst(entry->argtypes[i + 2], -1, InvalidOid));
	}
	entry->argtypes[nkeys + 2] = JSONBOID;
	/* the call as the INSERT would make it, for the arguments' types */
	call = makeFuncExpr(F_JSONB_BUILD_ARRAY_ANY, JSONBOID, args, InvalidOid, InvalidOid,
						COERCE_EXPLICIT_CALL);
	fmgr_info_cxt(F_JSONB_BUILD_ARRAY_ANY, &entry->build_array, entry->cxt);
	fmgr_info_set_expr((Node *) call, &entry->build_array);
	MemoryContextSwitchTo(old);
	entry->valid = true;
	return entry;
}

/* The sync's INSERT, prepared (SPI connected) and saved if it is not yet */
static SPIPlanPtr
insert_plan(CapturePlan *cp, int sync_id)
{
	StringInfoData sql;

	if (cp->plan != NULL)
		return cp->plan;
	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO retl.queue (sync_id, op, key%s) VALUES ($1, $2, pg_catalog.jsonb_build_array(",
					 cp->append ? ", data" : "");
	for (int i = 0; i < cp->nkeys; i++)
		appendStringInfo(&sql, "%s$%d", i > 0 ? ", " : "", i + 3);
	appendStringInfoString(&sql, ")");
	if (cp->append)
		appendStringInfo(&sql, ", $%d", cp->nkeys + 3);
	appendStringInfoString(&sql, ")");

	cp->plan = SPI_prepare(sql.data, cp->nkeys + 2 + (cp->append ? 1 : 0), cp->argtypes);
	if (cp->plan == NULL)
		elog(ERROR, "retl: could not prepare capture of sync %d: %s",
			 sync_id, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(cp->plan) != 0)
		elog(ERROR, "retl: could not save capture plan");
	return cp->plan;
}

/* SPI, connected once in a call of the trigger */
static void
connect_spi(bool *connected)
{
	if (*connected)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "retl: SPI_connect failed");
	*connected = true;
}

/*
 * The key of an upsert sync's change, built as the INSERT would: by
 * jsonb_build_array of the values from the first on.
 */
static Jsonb *
build_key(CapturePlan *cp, Datum *values, char *nulls)
{
	LOCAL_FCINFO(fcinfo, RETL_CAPTURE_MAX_KEYS);
	Datum		key;

	InitFunctionCallInfoData(*fcinfo, &cp->build_array, cp->nkeys, InvalidOid, NULL, NULL);
	for (int i = 0; i < cp->nkeys; i++)
	{
		fcinfo->args[i].value = values[i];
		fcinfo->args[i].isnull = nulls[i] == 'n';
	}
	key = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "retl: jsonb_build_array returned NULL");
	return DatumGetJsonbP(key);
}

/*
 * Queue a change: an upsert sync's written directly (queue_insert.c) where
 * retl.queue allows, else (and an append sync's) by the saved INSERT, SPI
 * connected for it.
 */
static void
enqueue(CapturePlan *cp, int sync_id, char op, HeapTuple tuple, Relation rel, bool *connected)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum		values[RETL_CAPTURE_MAX_KEYS + 3];
	char		nulls[RETL_CAPTURE_MAX_KEYS + 3];
	int			n = cp->nkeys + 2;

	values[0] = Int32GetDatum(sync_id);
	nulls[0] = ' ';
	values[1] = CharGetDatum(op);
	nulls[1] = ' ';
	for (int i = 0; i < cp->nkeys; i++)
	{
		bool		isnull;

		values[i + 2] = heap_getattr(tuple, cp->attnums[i], desc, &isnull);
		nulls[i + 2] = isnull ? 'n' : ' ';
		if (!isnull && cp->forms[i] != RETL_KEY_AS_IS)
			values[i + 2] = retl_key_text(cp->forms[i], cp->outfuncs[i], values[i + 2]);
	}
	if (cp->append)
	{
		values[n] = retl_row_to_jsonb(heap_copy_tuple_as_datum(tuple, desc), desc->tdtypeid,
									  rel->rd_rel->relowner);
		nulls[n] = ' ';
	}
	else if (retl_queue_insert(sync_id, op, build_key(cp, values + 2, nulls + 2)))
		return;
	connect_spi(connected);
	if (SPI_execute_plan(insert_plan(cp, sync_id), values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not queue a change of sync %d", sync_id);
}

/*
 * What the sync's viewer sees of a row version (written by the statement,
 * or deleted: visibility.c); RETL_SEEN when there is no viewer.
 */
static RetlSeen
seen(CapturePlan *cp, HeapTuple tuple, bool written, Oid viewer, TriggerData *td,
	 bool *connected)
{
	if (!OidIsValid(viewer))
		return RETL_SEEN;
	connect_spi(connected);
	return retl_capture_seen(&cp->viewer, td->tg_relation, cp->nkeys, cp->attnums, tuple,
							 written);
}

/*
 * Queue a change of a row version, unless the sync's viewer may not see
 * it; returns how many changes it queued.
 */
static uint64
capture(CapturePlan *cp, int sync_id, char op, HeapTuple tuple, bool written, Oid viewer,
		TriggerData *td, bool *connected)
{
	if (seen(cp, tuple, written, viewer, td, connected) == RETL_HIDDEN)
		return 0;
	enqueue(cp, sync_id, op, tuple, td->tg_relation, connected);
	return 1;
}

/*
 * Queue an update that keeps the key: its new row when the viewer sees it
 * (or could not be asked).  A new row hidden from the viewer costs a
 * second lookup, of the old row: seen, the row has left the viewer's view
 * and a delete of its key is queued (the destination must lose it);
 * hidden too, nothing (a hidden row's key is never sent); not asked, the
 * update as without the question.  Returns how many changes it queued.
 */
static uint64
capture_update(CapturePlan *cp, int sync_id, Oid viewer, TriggerData *td, bool *connected)
{
	char		op = 'u';
	HeapTuple	tuple = td->tg_newtuple;

	if (seen(cp, tuple, true, viewer, td, connected) == RETL_HIDDEN)
	{
		switch (seen(cp, td->tg_trigtuple, false, viewer, td, connected))
		{
			case RETL_SEEN:
				op = 'd';
				tuple = td->tg_trigtuple;
				break;
			case RETL_HIDDEN:
				return 0;
			case RETL_UNASKED:
				break;
		}
	}
	enqueue(cp, sync_id, op, tuple, td->tg_relation, connected);
	return 1;
}

/*
 * Does an update change the key?  Then it also removes the row under its
 * old key.  The key's attributes, binary compared.
 */
bool
retl_key_changed(int nkeys, const AttrNumber *attnums, HeapTuple oldtup, HeapTuple newtup,
				 TupleDesc desc)
{
	for (int i = 0; i < nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attnums[i] - 1);
		bool		oldnull;
		bool		newnull;
		Datum		o = heap_getattr(oldtup, attnums[i], desc, &oldnull);
		Datum		n = heap_getattr(newtup, attnums[i], desc, &newnull);

		if (oldnull != newnull)
			return true;
		if (!oldnull && !datumIsEqual(o, n, att->attbyval, att->attlen))
			return true;
	}
	return false;
}

/* A table's keys as the owner sees them, for retl_in_subtransaction() */
typedef struct KeysAs
{
	int			sync_id;
	char		op;
	Oid			reader;
	const char *keys;			/* the SELECT list and FROM of the keys */
	uint64		n;				/* out: how many it queued */
} KeysAs;

/*
 * Queue the keys the owner sees, read as it (security-restricted, its
 * policies applied even where the writer turned row_security off).
 */
static void
keys_as_owner(void *arg)
{
	KeysAs	   *k = (KeysAs *) arg;
	Oid			types[2] = {INT4OID, CHAROID};
	Datum		values[2] = {Int32GetDatum(k->sync_id), CharGetDatum(k->op)};
	int			nest;

	retl_owner_temp_table(k->reader, "retl_truncate_keys", "key pg_catalog.jsonb");
	nest = NewGUCNestLevel();
	retl_apply_row_security();
	(void) retl_owner_exec(k->reader, psprintf("INSERT INTO pg_temp.retl_truncate_keys (key) SELECT %s",
											   k->keys), NULL, SPI_OK_INSERT);
	AtEOXact_GUC(false, nest);
	if (SPI_execute_with_args("INSERT INTO retl.queue (sync_id, op, key)"
							  " SELECT $1, $2, k.key FROM pg_temp.retl_truncate_keys k",
							  2, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not queue the rows of a truncated table");
	k->n = SPI_processed;
	if (SPI_execute("DROP TABLE pg_temp.retl_truncate_keys", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "retl: could not queue the rows of a truncated table");
}

/* ") FROM schema.table t" appended to a key list, the table's name quoted */
static void
append_from(StringInfo keys, const char *only, Oid relid)
{
	appendStringInfo(keys, ") FROM %s%s.%s t", only,
					 quote_identifier(get_namespace_name(get_rel_namespace(relid))),
					 quote_identifier(get_rel_name(relid)));
}

/*
 * Queue every key of a table as a change of op (BEFORE TRUNCATE: 't',
 * every row is about to go), read from rel, the sync's table, or, when
 * part is valid, from part, a partition of rel (or of its partitions) that
 * a TRUNCATE, DROP, ATTACH or DETACH changes (partitions.c): its rows read
 * directly, or, while it is attached, through rel when the owner's
 * policies on rel decide which keys it may see (a detached table's rows
 * are read directly: README, Whose rows).  Where row-level security
 * narrows the owner's view, only the keys it sees are queued (the others
 * were never sent, nor are their deletes), read as it in a subtransaction
 * of their own; every key when that read fails, as a row's lookup does
 * (visibility.c).  cache_key is retl_capture_viewer's: an oid that is
 * new whenever the sync's id may name another sync (the TRUNCATE
 * trigger's oid, or the extension's).  Returns how many it queued.  SPI
 * is connected.
 */
uint64
retl_queue_table_keys(int sync_id, Oid cache_key, int nkeys, AttrNumber *attnums, Relation rel,
					  Oid part, bool attached, char op)
{
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData keys;
	StringInfoData owners;
	Oid			types[2] = {INT4OID, CHAROID};
	Datum		values[2] = {Int32GetDatum(sync_id), CharGetDatum(op)};
	RetlViewer	v = {0};
	KeysAs		k = {sync_id, op, InvalidOid, NULL, 0};
	ErrorData  *edata = NULL;

	if (!OidIsValid(part) || attached)
		k.reader = retl_capture_viewer(&v, sync_id, cache_key, rel);

	initStringInfo(&keys);
	appendStringInfoString(&keys, "pg_catalog.jsonb_build_array(");
	for (int i = 0; i < nkeys; i++)
	{
		Oid			type = key_type(desc, attnums[i], sync_id);

		if (i > 0)
			appendStringInfoString(&keys, ", ");
		retl_append_key_value(&keys, type,
							  psprintf("t.%s", quote_identifier(NameStr(TupleDescAttr(desc, attnums[i] - 1)->attname))));
	}
	/* the owner reads an attached partition's rows through rel: its policies */
	initStringInfo(&owners);
	appendStringInfoString(&owners, keys.data);
	if (!OidIsValid(part))
	{
		const char *only = rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ";

		append_from(&keys, only, RelationGetRelid(rel));
		append_from(&owners, only, RelationGetRelid(rel));
	}
	else
	{
		List	   *within = find_all_inheritors(part, NoLock, NULL);
		ListCell   *lc;

		append_from(&keys, "", part);
		append_from(&owners, "", RelationGetRelid(rel));
		appendStringInfoString(&owners, " WHERE t.tableoid OPERATOR(pg_catalog.=) ANY ('{");
		foreach(lc, within)
			appendStringInfo(&owners, "%s%u", foreach_current_index(lc) > 0 ? "," : "",
							 lfirst_oid(lc));
		appendStringInfoString(&owners, "}'::pg_catalog.oid[])");
	}
	k.keys = owners.data;

	/*
	 * A transaction draws queue ids only once it has an xid (see mark.c);
	 * a row trigger runs after its row's write, but TRUNCATE may not have
	 * written anything yet.
	 */
	(void) GetTopTransactionId();
	if (OidIsValid(k.reader))
	{
		edata = retl_in_subtransaction(keys_as_owner, &k);
		if (edata != NULL)
			retl_capture_check_failed(&v, rel, edata);
	}
	if (v.name != NULL)
		pfree(v.name);
	if (OidIsValid(k.reader) && edata == NULL)
		return k.n;
	/* every key: no row-level security narrows the owner's view, or its read failed */
	if (SPI_execute_with_args(psprintf("INSERT INTO retl.queue (sync_id, op, key) SELECT $1, $2, %s",
									   keys.data),
							  2, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "retl: could not queue the rows of a truncated table");
	return SPI_processed;
}

PG_FUNCTION_INFO_V1(retl_capture);

/* retl_capture(): the capture trigger function. */
Datum
retl_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	int			sync_id;
	bool		append;
	int			nkeys;
	AttrNumber	attnums[RETL_CAPTURE_MAX_KEYS];
	CapturePlan *cp;
	TupleDesc	desc;
	uint64		nrows = 1;		/* the changes queued */
	bool		connected = false;
	Oid			viewer;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("retl_capture() can only be called as a trigger")));
	td = (TriggerData *) fcinfo->context;
	parse_args(td->tg_trigger, &sync_id, &append, &nkeys, attnums);
	desc = RelationGetDescr(td->tg_relation);
	/* an append sync's row is made JSON as the table's owner, through SPI */
	if (append || TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		connect_spi(&connected);

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		if (!append)
			nrows = retl_queue_table_keys(sync_id, td->tg_trigger->tgoid, nkeys, attnums,
										  td->tg_relation, InvalidOid, false, 't');
	}
	else
	{
		if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
			ereport(ERROR,
					(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
					 errmsg("retl_capture() must be fired AFTER ... FOR EACH ROW")));

		cp = get_plan(sync_id, append, nkeys, attnums, td->tg_relation);
		/* (an append sync's owner must see every row: owner.c) */
		viewer = append ? InvalidOid :
			retl_capture_viewer(&cp->viewer, sync_id, td->tg_trigger->tgoid, td->tg_relation);
		if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
			nrows = capture(cp, sync_id, 'i', td->tg_trigtuple, true, viewer, td, &connected);
		else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
			nrows = capture(cp, sync_id, 'd', td->tg_trigtuple, false, viewer, td, &connected);
		else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		{
			/*
			 * A changed key also removes the row under its old key (a row
			 * leaving the viewer's view with it: the old key's delete).
			 */
			if (retl_key_changed(cp->nkeys, cp->attnums, td->tg_trigtuple, td->tg_newtuple, desc))
			{
				nrows = capture(cp, sync_id, 'd', td->tg_trigtuple, false, viewer, td, &connected);
				nrows += capture(cp, sync_id, 'u', td->tg_newtuple, true, viewer, td, &connected);
			}
			else
				nrows = capture_update(cp, sync_id, viewer, td, &connected);
		}
	}

	if (connected && SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "retl: SPI_finish failed");
	if (nrows > 0)
		retl_captured_at_commit(sync_id, (int64) nrows);
	return PointerGetDatum(NULL);
}
