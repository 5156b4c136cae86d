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
 * that changes the key), the new row of an INSERT or UPDATE.
 *
 * Whether row-level security applies (retl_capture_viewer) is asked at
 * every call, from the caches PostgreSQL keeps (check_enable_rls, the
 * table's grants), so ENABLE / DISABLE ROW LEVEL SECURITY, BYPASSRLS and
 * grants count from the next row on; a table without row-level security
 * costs a flag of its relcache entry.  Only the sync's owner, which never
 * changes, is remembered, with the sync's capture plan.
 *
 * The question is a lookup by key, as the owner, security-restricted with
 * row_security on (policies apply whatever the writer's session set),
 * planned once per trigger and kept: a policy created, changed or dropped
 * invalidates the plan as it does any other.  The key, not the row's TID:
 * an owner may read the table by grants of its columns, which do not
 * cover ctid.  The AFTER trigger fires at the end of the statement that
 * wrote the row, with that statement's snapshot active, which still sees
 * the rows it deleted (and the old versions of those it updated), and not
 * yet those it wrote: an old row is looked up with that snapshot, read
 * only; a new one with a copy moved past the statement's command (SPI's
 * read-write call with a snapshot given does that).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "base/identity.h"
#include "capture/visibility.h"
#include "sync/owner.h"
#include "sync/trust.h"

/* The sync's owner, read once a trigger (SPI connected for it). */
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
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "retl: SPI_connect failed");
	if (SPI_execute_with_args("SELECT s.owner::pg_catalog.oid FROM retl.syncs s"
							  " WHERE s.id OPERATOR(pg_catalog.=) $1",
							  1, types, values, NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		v->owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
												  &isnull));
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "retl: SPI_finish failed");
	return v->owner;
}

/*
 * The role whose view of the table decides which of a sync's changes are
 * queued, fired by trigger tgoid (its capture trigger, or its TRUNCATE
 * trigger): the sync's owner when row-level security narrows its view of
 * the table, else InvalidOid, every change.  An owner that may not read
 * the table at all (or was dropped) cannot be asked: its changes are
 * queued, and its sync sends nothing until it may read (owner.c).
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
	v->plan = SPI_prepare(sql.data, nkeys, types);
	if (v->plan == NULL)
		elog(ERROR, "retl: could not prepare the lookup of sync %d's rows: %s",
			 v->sync_id, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(v->plan) != 0)
		elog(ERROR, "retl: could not keep the lookup of sync %d's rows", v->sync_id);
	v->shape = MemoryContextStrdup(TopMemoryContext, now);
	return v->plan;
}

/*
 * May the viewer (v's owner, as retl_capture_viewer returned it) see this
 * version of a row, which the statement firing the trigger wrote
 * (written: an INSERT's row, an UPDATE's new one) or deleted (an UPDATE's
 * old one, a DELETE's)?  SPI must be connected.  A row without a key
 * value, or with one of a type the lookup cannot use, counts as seen: its
 * change is queued as it always was.
 */
bool
retl_capture_visible(RetlViewer *v, Relation rel, int nkeys, const AttrNumber *attnums,
					 HeapTuple tuple, bool written)
{
	Datum	   *values = palloc(sizeof(Datum) * nkeys);
	SPIPlanPtr	plan;
	Oid			save_uid;
	int			save_sec;
	int			nest;
	int			rc;
	bool		seen;

	/* (no statement: nothing to see with) */
	if (!ActiveSnapshotSet())
		return true;
	for (int i = 0; i < nkeys; i++)
	{
		bool		isnull;

		values[i] = heap_getattr(tuple, attnums[i], RelationGetDescr(rel), &isnull);
		if (isnull)
			return true;
	}

	/* an error's abort restores the identity and the settings */
	nest = retl_begin_as(v->owner, SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION,
						 RETL_SAFE_PATH, &save_uid, &save_sec);
	retl_apply_row_security();
	plan = lookup_plan(v, rel, nkeys, attnums);
	if (plan == NULL)
		seen = true;
	else
	{
		rc = SPI_execute_snapshot(plan, values, NULL, GetActiveSnapshot(), InvalidSnapshot,
								  !written, false, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "retl: could not look up a row of sync %d: %s", v->sync_id,
				 SPI_result_code_string(rc));
		seen = SPI_processed > 0;
	}
	retl_end_as(nest, save_uid, save_sec);
	return seen;
}
