/*
 * visibility.c: may a sync's owner see the row a captured change names?
 *
 * A realtime upsert sync sends what its owner may read: the worker reads
 * each changed key's row as the owner (sync/owner.c) and leaves a row
 * hidden from it by row-level security unsent.  But a row that is gone
 * when the worker reads it is sent as a delete of its key, and the worker
 * cannot tell whether the owner could see it: a DELETE of a hidden row
 * (or the old key of a key-changing UPDATE of one, or any change of a
 * hidden row deleted before the worker reads it) would tell the
 * destination a key the owner may not see.  So, when row-level security
 * narrows the owner's view of the table, the capture trigger asks, as the
 * owner, whether it sees the row version a change names, and queues
 * nothing when it does not: the old row of a DELETE (and of an UPDATE
 * that changes the key), the new row of an INSERT or UPDATE.  An UPDATE
 * that keeps the key and whose new row is hidden also asks about its old
 * row: when the owner saw that, the row has left its view and a delete of
 * the key is queued (the destination must lose the row, as a diff sync's
 * would, and the worker sends a queued delete even though a hidden row
 * has the key: queue/rows.c); when it saw neither, nothing.  Only such an
 * update pays a second lookup.
 *
 * Whether row-level security applies (retl_capture_viewer) is asked at
 * every call, from the caches PostgreSQL keeps (check_enable_rls, the
 * table's grants), so ENABLE / DISABLE ROW LEVEL SECURITY, BYPASSRLS and
 * grants count from the next row on; a table without row-level security
 * costs a flag of its relcache entry and nothing else.  Only the sync's
 * owner and name, which never change, are remembered, with the sync's
 * capture plan.
 *
 * The question is a lookup by key, as the owner, security-restricted with
 * row_security on (policies apply whatever the writer's session set),
 * planned once per trigger and kept: a policy created, changed or dropped
 * invalidates the plan as it does any other.  The key, not the row's TID:
 * an owner may read the table by grants of its columns, which do not
 * cover ctid.  The policies run in the writer's session, so the settings
 * they read (current_setting()) are the writer's.
 *
 * The writer must never fail because of this question: the lookup runs in
 * a subtransaction of its own (base/subxact.c), one per row (a row
 * trigger cannot know which row is a statement's last; the subtransaction
 * writes nothing, so it takes no xid and fills no subxid cache).  When it
 * fails (a policy that errors in the writer's session, an owner without
 * USAGE on a schema or EXECUTE on a function its policy needs), the
 * subtransaction is rolled back, the change is queued as if the question
 * had not been asked (the worker then decides as it always did: a visible
 * change is never lost, a hidden row's delete may be sent), and a WARNING
 * names the sync and the error's message, once a statement and sync, with
 * no row value of ours in it.  A cancel (statement_timeout included) and
 * a serialization failure are thrown again: they end the statement, or
 * the transaction, whatever retl does.
 *
 * Which snapshot.  The AFTER trigger fires at the end of the statement
 * that wrote the row, with that statement's snapshot active, whose curcid
 * is the statement's command id (a user's AFTER trigger that fired before
 * ours and wrote through SPI advanced the command counter, but under
 * snapshots of its own; the active one is still the statement's).
 *
 * A new row (an INSERT's, an UPDATE's new one) is the statement's own
 * write: it is looked up with a copy of the statement's snapshot moved
 * past the statement's command (SPI's read-write call with a snapshot
 * given does that), which sees it whatever others committed.
 *
 * An old row (a DELETE's, an UPDATE's old one), in READ COMMITTED, is
 * looked up with a fresh snapshot (GetLatestSnapshot, copied) whose
 * curcid is the statement's command id.  The statement's own snapshot
 * would be wrong there: a DELETE (or UPDATE) that waited for a
 * concurrent UPDATE deletes the version that UPDATE wrote (EvalPlanQual),
 * which the statement's snapshot does not see; it still sees the version
 * before, which may be hidden from the owner where the new one is not (an
 * UPDATE that moved the row into the owner's view), and the delete would
 * be lost, the UPDATE's change perhaps already delivered.  The fresh
 * snapshot sees the version the statement deleted (its inserter committed
 * before the snapshot; its deleter is our command, not before curcid),
 * and not the one the concurrent UPDATE replaced (deleted by a committed
 * transaction), nor an UPDATE's new row under the same key (written by
 * our command too).  A key's other versions cannot come in between: the
 * statement holds the deleted row's lock until commit, and a new row with
 * the key waits for it on the key's unique index.  The curcid, not the
 * command counter now: rows that a user's earlier AFTER trigger wrote or
 * deleted since (a new row with the same key, say) are after it.
 *
 * In REPEATABLE READ and SERIALIZABLE an old row is looked up with the
 * statement's snapshot (the transaction's, curcid the statement's): a
 * statement there only deletes a version its snapshot sees (one updated
 * or deleted by a transaction it does not see fails with a serialization
 * error before any trigger fires), so that snapshot finds the very
 * version deleted, and a read with a newer snapshot than the
 * transaction's would be outside what SERIALIZABLE's predicate locks
 * account for.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "base/identity.h"
#include "base/subxact.h"
#include "capture/visibility.h"
#include "sync/owner.h"
#include "sync/trust.h"

/* The sync's owner and name, read once a trigger (SPI connected for it). */
static Oid
sync_owner(RetlViewer *v, int sync_id, Oid tgoid)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(sync_id)};
	bool		isnull;

	if (v->sync_id == sync_id && v->tgoid == tgoid && OidIsValid(v->owner))
		return v->owner;
	v->sync_id = sync_id;
	v->tgoid = tgoid;
	v->owner = InvalidOid;
	if (v->name != NULL)
		pfree(v->name);
	v->name = NULL;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "retl: SPI_connect failed");
	if (SPI_execute_with_args("SELECT s.owner::pg_catalog.oid, s.name FROM retl.syncs s"
							  " WHERE s.id OPERATOR(pg_catalog.=) $1",
							  1, types, values, NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		v->owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
												  &isnull));
		v->name = MemoryContextStrdup(TopMemoryContext,
									  SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "retl: SPI_finish failed");
	return v->owner;
}

/*
 * The role whose view of the table decides which of a sync's changes are
 * queued: the sync's owner when row-level security narrows its view of
 * the table, else InvalidOid, every change.  An owner that may not read
 * the table at all (or was dropped) cannot be asked: its changes are
 * queued, and its sync sends nothing until it may read (owner.c).  tgoid
 * keys v's cached owner and name: the trigger that fired (the capture or
 * TRUNCATE trigger), or, from partitions.c, which no trigger fires, the
 * extension's oid; either is new whenever sync_id may name another sync.
 */
Oid
retl_capture_viewer(RetlViewer *v, int sync_id, Oid tgoid, Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	Oid			owner;

	if (!rel->rd_rel->relrowsecurity)
		return InvalidOid;
	owner = sync_owner(v, sync_id, tgoid);
	if (!OidIsValid(owner) || !SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		return InvalidOid;
	if (check_enable_rls(relid, owner, true) != RLS_ENABLED || !retl_role_may_read(relid, owner))
		return InvalidOid;
	return owner;
}

/*
 * What a lookup's statement depends on: the table's and the key columns'
 * names and types.  A plan made for another shape is made again (its text
 * names them: a rename would break it).
 */
static char *
shape(Relation rel, int nkeys, const AttrNumber *attnums)
{
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "%u %s.%s", RelationGetRelid(rel),
					 get_namespace_name(RelationGetNamespace(rel)), RelationGetRelationName(rel));
	for (int i = 0; i < nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attnums[i] - 1);

		appendStringInfo(&s, " %s:%u", NameStr(att->attname), att->atttypid);
	}
	return s.data;
}

/*
 * The lookup of a row by its key as the owner sees it, prepared as the
 * owner (the caller acts as it) and kept; NULL when a key type is not
 * owned by a superuser (its operator would be a user's code: trust.c),
 * which a table sync refuses anyway.
 */
static SPIPlanPtr
lookup_plan(RetlViewer *v, Relation rel, int nkeys, const AttrNumber *attnums)
{
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *now = shape(rel, nkeys, attnums);
	Oid		   *types = palloc(sizeof(Oid) * nkeys);
	SPIPlanPtr	plan;
	StringInfoData sql;

	if (v->plan != NULL && strcmp(v->shape, now) == 0)
		return v->plan;
	if (v->plan != NULL)
	{
		SPI_freeplan(v->plan);
		pfree(v->shape);
	}
	v->plan = NULL;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT 1 FROM ONLY %s.%s t WHERE ",
					 quote_identifier(get_namespace_name(RelationGetNamespace(rel))),
					 quote_identifier(RelationGetRelationName(rel)));
	for (int i = 0; i < nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attnums[i] - 1);

		if (!retl_key_type_trusted(att->atttypid))
			return NULL;
		types[i] = getBaseType(att->atttypid);
		appendStringInfo(&sql, "%st.%s %s $%d", i > 0 ? " AND " : "",
						 quote_identifier(NameStr(att->attname)),
						 retl_key_operator(att->atttypid, BTEqualStrategyNumber), i + 1);
	}
	/* kept before it is remembered: an error here rolls back what is not */
	plan = SPI_prepare(sql.data, nkeys, types);
	if (plan == NULL)
		elog(ERROR, "retl: could not prepare the lookup of sync %d's rows: %s",
			 v->sync_id, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "retl: could not keep the lookup of sync %d's rows", v->sync_id);
	v->shape = MemoryContextStrdup(TopMemoryContext, now);
	v->plan = plan;
	return v->plan;
}

/* One lookup's question and answer, for retl_in_subtransaction() */
typedef struct Lookup
{
	RetlViewer *v;
	Relation	rel;
	int			nkeys;
	const AttrNumber *attnums;
	Datum	   *values;
	bool		written;
	bool		seen;
} Lookup;

/*
 * Look the row up by its key as the owner (see the header comment for
 * the snapshot).  Run in a subtransaction, whose abort also restores the
 * identity and the settings on an error.
 */
static void
lookup(void *arg)
{
	Lookup	   *l = (Lookup *) arg;
	Snapshot	statement = GetActiveSnapshot();
	Snapshot	snap = statement;
	SPIPlanPtr	plan;
	Oid			save_uid;
	int			save_sec;
	int			nest;
	int			rc;

	nest = retl_begin_as(l->v->owner, SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION,
						 RETL_SAFE_PATH, &save_uid, &save_sec);
	retl_apply_row_security();
	plan = lookup_plan(l->v, l->rel, l->nkeys, l->attnums);
	l->seen = true;
	if (plan != NULL)
	{
		if (!l->written && !IsolationUsesXactSnapshot())
		{
			/* registered: a copy of ours, released by the subtransaction's end */
			snap = RegisterSnapshot(GetLatestSnapshot());
			snap->curcid = statement->curcid;
		}
		rc = SPI_execute_snapshot(plan, l->values, NULL, snap, InvalidSnapshot,
								  !l->written, false, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "retl: could not look up a row of sync %d: %s", l->v->sync_id,
				 SPI_result_code_string(rc));
		l->seen = SPI_processed > 0;
		if (snap != statement)
			UnregisterSnapshot(snap);
	}
	retl_end_as(nest, save_uid, save_sec);
}

/*
 * The question about a sync's rows failed (edata, copied, the error
 * state flushed): the caller queues its change(s) as without the
 * question.  Say so once a statement and sync, naming the sync and the
 * error's message only (its detail and context may quote row values);
 * a cancel and a serialization failure are thrown again.
 */
void
retl_capture_check_failed(RetlViewer *v, Relation rel, ErrorData *edata)
{
	LocalTransactionId lxid = MyProc->lxid;
	CommandId	cid = ActiveSnapshotSet() ? GetActiveSnapshot()->curcid : InvalidCommandId;

	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
		edata->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE)
		ReThrowError(edata);
	if (v->warned_lxid != lxid || v->warned_cid != cid)
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("retl could not ask whether the owner of sync \"%s\" may see a changed row of table \"%s\": %s",
						v->name ? v->name : "?", RelationGetRelationName(rel),
						edata->message ? edata->message : "?"),
				 errdetail("The change was queued as if row-level security did not apply to the owner; a row it may not see may have its key sent as a delete."),
				 errhint("The owner's policies run in the writing session: the settings they read are the writer's.")));
	v->warned_lxid = lxid;
	v->warned_cid = cid;
	FreeErrorData(edata);
}

/*
 * May the viewer (v's owner, as retl_capture_viewer returned it) see this
 * version of a row, which the statement firing the trigger wrote
 * (written: an INSERT's row, an UPDATE's new one) or deleted (an UPDATE's
 * old one, a DELETE's)?  SPI must be connected.  A row without a key
 * value, or with one of a type the lookup cannot use, counts as seen: its
 * change is queued as it always was; one whose lookup failed is
 * RETL_UNASKED, for the caller to queue as without the question.
 */
RetlSeen
retl_capture_seen(RetlViewer *v, Relation rel, int nkeys, const AttrNumber *attnums,
				  HeapTuple tuple, bool written)
{
	Lookup		l = {v, rel, nkeys, attnums, palloc(sizeof(Datum) * nkeys), written, true};
	ErrorData  *edata;

	/* (no statement: nothing to see with) */
	if (!ActiveSnapshotSet())
		return RETL_SEEN;
	for (int i = 0; i < nkeys; i++)
	{
		bool		isnull;

		l.values[i] = heap_getattr(tuple, attnums[i], RelationGetDescr(rel), &isnull);
		if (isnull)
			return RETL_SEEN;
	}
	edata = retl_in_subtransaction(lookup, &l);
	if (edata == NULL)
		return l.seen ? RETL_SEEN : RETL_HIDDEN;
	retl_capture_check_failed(v, rel, edata);
	return RETL_UNASKED;
}
