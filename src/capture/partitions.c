/*
 * partitions.c: rows that enter or leave a logically synced partitioned
 * table by DDL, not by a change of a row.
 *
 * A partitioned table is synced by logical capture, which decodes its
 * partitions' row changes as the table's, and by a BEFORE TRUNCATE trigger
 * on the table.  Four commands change which rows the table has without a
 * row change that decoding or that trigger sees: a TRUNCATE or DROP TABLE
 * of a partition by its own name (PostgreSQL fires no trigger of the
 * parent for it), ALTER TABLE ... DETACH PARTITION (its rows leave the
 * table) and ATTACH PARTITION (they join it).  The utility hook
 * (process/utility.c) calls these around them: every key of the partition
 * is queued for each upsert sync of the table or of any table it is a
 * partition of, as a delete ('t' for TRUNCATE, 'd') or a change ('u' for
 * ATTACH).  The worker reads each key's row when it sends it, as for any
 * change: a row still (or now) in the table is upserted, one gone deleted.
 *
 * TRUNCATE and DROP are handled before the command, while the rows are
 * there, with the partition locked as the command would lock it (DROP
 * locks the parent first, as PostgreSQL does) once the caller is known to
 * be allowed the command; ATTACH and DETACH after it, under its locks
 * (DETACH ... CONCURRENTLY in its last transaction).  The keys are read
 * and queued as the extension's owner, as the TRUNCATE trigger does (it is
 * SECURITY DEFINER), in the command's transaction: they commit with it;
 * where row-level security narrows a sync owner's view of its table, an
 * attached partition's keys are read as the owner, through the table, and
 * every key is queued when that read fails (retl_queue_table_keys).
 * A table that is no partition costs a look at its relcache flag; the
 * extension is looked up once a command, where a partition is at stake
 * (extension_oid).
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/heap.h"
#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "storage/sinval.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/lsyscache.h"

#include "base/identity.h"
#include "base/shmem.h"
#include "capture/capture.h"
#include "capture/partitions.h"

typedef struct SyncedBy
{
	int			sync_id;
	Oid			relid;
	int			nkeys;
	AttrNumber	attnums[RETL_CAPTURE_MAX_KEYS];
} SyncedBy;

/*
 * The extension's oid for one command: looked up when first needed, so a
 * command on no partition costs no lookup, then kept; looked up again only
 * if invalidation messages arrived since (waiting for a lock takes them),
 * as one from a DROP EXTENSION that committed meanwhile would.
 */
typedef struct ExtensionOid
{
	bool		known;
	uint64		inval_count;	/* SharedInvalidMessageCounter after it */
	Oid			oid;
} ExtensionOid;

#define EXTENSION_OID_INIT {false, 0, InvalidOid}

static Oid
extension_oid(ExtensionOid *ext)
{
	if (!ext->known || ext->inval_count != SharedInvalidMessageCounter)
	{
		ext->oid = get_extension_oid("retl", true);
		/* (after the lookup: opening pg_extension may take messages too) */
		ext->inval_count = SharedInvalidMessageCounter;
		ext->known = true;
	}
	return ext->oid;
}

/* The upsert syncs, by logical capture, of any of tables (SPI connected). */
static List *
synced_by(List *tables)
{
	Datum	   *elems = palloc(sizeof(Datum) * list_length(tables));
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1];
	List	   *syncs = NIL;
	ListCell   *lc;
	int			n = 0;

	foreach(lc, tables)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	values[0] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	if (SPI_execute_with_args("SELECT y.id, y.source_relid, y.key_attnums FROM retl.syncs y"
							  " WHERE y.source_relid OPERATOR(pg_catalog.=) ANY ($1)"
							  " AND y.capture OPERATOR(pg_catalog.=) 'logical'"
							  " AND y.mode OPERATOR(pg_catalog.=) 'upsert' ORDER BY y.id",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the syncs of a partitioned table");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		SyncedBy   *s = palloc0(sizeof(SyncedBy));
		bool		isnull;
		Datum		attnums = SPI_getbinval(tup, desc, 3, &isnull);
		Datum	   *keys;
		int			nkeys;

		s->sync_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		s->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		if (isnull)
			continue;
		deconstruct_array(DatumGetArrayTypeP(attnums), INT2OID, sizeof(int16), true, TYPALIGN_SHORT,
						  &keys, NULL, &nkeys);
		if (nkeys < 1 || nkeys > RETL_CAPTURE_MAX_KEYS)
			continue;
		s->nkeys = nkeys;
		for (int k = 0; k < nkeys; k++)
			s->attnums[k] = DatumGetInt16(keys[k]);
		syncs = lappend(syncs, s);
	}
	return syncs;
}

/*
 * Queue every key of partition part for each sync of the tables it is (or
 * was, for DETACH) a partition of.
 */
static void
queue_partition(Oid part, List *tables, bool attached, char op, ExtensionOid *ext)
{
	Oid			save_uid;
	int			save_sec;
	int			nest;
	ListCell   *lc;
	Oid			extension = extension_oid(ext);

	if (tables == NIL || !OidIsValid(extension))
		return;
	nest = retl_begin_as(retl_extension_owner(), SECURITY_LOCAL_USERID_CHANGE, RETL_SAFE_PATH,
						 &save_uid, &save_sec);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "retl: SPI_connect failed");
	foreach(lc, synced_by(tables))
	{
		SyncedBy   *s = lfirst(lc);
		Relation	rel = table_open(s->relid, AccessShareLock);
		/* (the extension's oid: sync ids start again only with a new one) */
		uint64		n = retl_queue_table_keys(s->sync_id, extension, s->nkeys, s->attnums,
											  rel, part, attached, op);

		table_close(rel, NoLock);
		if (n > 0)
			retl_captured_at_commit(s->sync_id, (int64) n);
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "retl: SPI_finish failed");
	retl_end_as(nest, save_uid, save_sec);
}

/*
 * A relation the statement names, if it is a partition in a database with
 * the extension (elsewhere nothing is locked early); else InvalidOid.
 */
static Oid
partition_named(RangeVar *rv, ExtensionOid *ext)
{
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);

	return OidIsValid(relid) && get_rel_relispartition(relid) &&
		OidIsValid(extension_oid(ext)) ? relid : InvalidOid;
}

/* A partition TRUNCATE empties: queued once the caller may truncate it. */
static void
truncate_partition(Oid part, ExtensionOid *ext)
{
	List	   *ancestors;

	/* (TRUNCATE itself refuses one the caller may not truncate) */
	if (pg_class_aclcheck(part, GetUserId(), ACL_TRUNCATE) != ACLCHECK_OK ||
		!OidIsValid(extension_oid(ext)))
		return;
	ancestors = get_partition_ancestors(part);

	/*
	 * The ancestors first (read below), from the root down, as queries lock
	 * them: taking the partition first could deadlock with a TRUNCATE or
	 * LOCK of the parent, which waits for the partition in turn.
	 */
	for (int i = list_length(ancestors) - 1; i >= 0; i--)
		LockRelationOid(list_nth_oid(ancestors, i), AccessShareLock);
	LockRelationOid(part, AccessExclusiveLock);
	queue_partition(part, ancestors, true, 't', ext);
}

/*
 * TRUNCATE ... CASCADE also empties the tables whose foreign keys refer to
 * those truncated, found as ExecuteTruncate finds them: a partition among
 * them (by a foreign key of its own) is queued as if named, unless one of
 * its ancestors is truncated too (its trigger, or this, queues it).
 */
static void
truncate_cascaded(List *relids, ExtensionOid *ext)
{
	List	   *added;

	while ((added = heap_truncate_find_FKs(relids)) != NIL)
	{
		ListCell   *lc;

		relids = list_concat(relids, added);
		foreach(lc, added)
		{
			Oid			relid = lfirst_oid(lc);
			bool		covered = false;
			ListCell   *la;

			if (!get_rel_relispartition(relid))
				continue;
			foreach(la, get_partition_ancestors(relid))
				covered = covered || list_member_oid(relids, lfirst_oid(la));
			if (!covered)
				truncate_partition(relid, ext);
		}
	}
}

/* Before TRUNCATE and DROP TABLE: the partitions' rows are still there. */
void
retl_partitions_before(Node *node)
{
	ListCell   *lc;
	ExtensionOid ext = EXTENSION_OID_INIT;

	if (IsA(node, TruncateStmt))
	{
		TruncateStmt *stmt = (TruncateStmt *) node;
		List	   *relids = NIL;

		foreach(lc, stmt->relations)
		{
			RangeVar   *rv = lfirst(lc);
			Oid			relid = RangeVarGetRelid(rv, NoLock, true);

			if (!OidIsValid(relid))
				continue;
			if (get_rel_relispartition(relid))
				truncate_partition(relid, &ext);
			if (stmt->behavior == DROP_CASCADE)
				relids = list_concat(relids, rv->inh ? find_all_inheritors(relid, NoLock, NULL)
									 : list_make1_oid(relid));
		}
		if (relids != NIL && OidIsValid(extension_oid(&ext)))
			truncate_cascaded(relids, &ext);
	}
	else if (IsA(node, DropStmt) && ((DropStmt *) node)->removeType == OBJECT_TABLE)
	{
		foreach(lc, ((DropStmt *) node)->objects)
		{
			Oid			part = partition_named(makeRangeVarFromNameList(lfirst(lc)), &ext);
			List	   *ancestors;

			/* (DROP refuses one whose table or schema the caller does not own) */
			if (!OidIsValid(part) ||
				(!pg_class_ownercheck(part, GetUserId()) &&
				 !pg_namespace_ownercheck(get_rel_namespace(part), GetUserId())))
				continue;
			ancestors = get_partition_ancestors(part);
			/* the parent first, as DROP locks them */
			LockRelationOid(linitial_oid(ancestors), AccessExclusiveLock);
			LockRelationOid(part, AccessExclusiveLock);
			queue_partition(part, ancestors, true, 'd', &ext);
		}
	}
}

/* After ALTER TABLE ... ATTACH / DETACH PARTITION, under its locks. */
void
retl_partitions_after(Node *node)
{
	AlterTableStmt *stmt;
	ListCell   *lc;
	ExtensionOid ext = EXTENSION_OID_INIT;

	if (!IsA(node, AlterTableStmt))
		return;
	stmt = (AlterTableStmt *) node;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst(lc);
		PartitionCmd *pc;
		Oid			parent;
		Oid			part;

		if (cmd->subtype != AT_AttachPartition && cmd->subtype != AT_DetachPartition &&
			cmd->subtype != AT_DetachPartitionFinalize)
			continue;
		pc = (PartitionCmd *) cmd->def;
		parent = RangeVarGetRelid(stmt->relation, NoLock, true);
		part = RangeVarGetRelid(pc->name, NoLock, true);
		if (!OidIsValid(parent) || !OidIsValid(part))
			continue;
		if (cmd->subtype == AT_AttachPartition)
			queue_partition(part, get_partition_ancestors(part), true, 'u', &ext);
		else if (!get_rel_relispartition(part))
		{
			/* detached (a DETACH ... CONCURRENTLY may have been cancelled) */
			List	   *tables = list_make1_oid(parent);

			if (get_rel_relispartition(parent))
				tables = list_concat(tables, get_partition_ancestors(parent));
			queue_partition(part, tables, false, 'd', &ext);
		}
	}
}
