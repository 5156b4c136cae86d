/*
 * visibility.h: may a sync's owner see the row a captured change names?
 * (see visibility.c)
 */
#ifndef RETL_VISIBILITY_H
#define RETL_VISIBILITY_H

#include "access/htup.h"
#include "executor/spi.h"
#include "utils/relcache.h"

/*
 * What a sync's capture keeps between calls (in its capture plan, zeroed
 * when that is made): its owner, and the lookup of its rows.
 */
typedef struct RetlViewer
{
	int			sync_id;		/* whose owner was read (0: not yet) */
	Oid			tgoid;			/* for which trigger (or extension, for
								 * partitions.c): a sync id comes again with
								 * the extension created again */
	Oid			owner;			/* retl.syncs.owner, which never changes */
	char	   *name;			/* retl.syncs.name (TopMemoryContext) */
	char	   *shape;			/* what the lookup was planned for */
	SPIPlanPtr	plan;			/* the lookup by key, kept; NULL until needed */
	LocalTransactionId warned_lxid; /* the statement a failed lookup was */
	CommandId	warned_cid;		/* last logged in */
} RetlViewer;

/* What the owner's lookup of a row version found */
typedef enum RetlSeen
{
	RETL_SEEN,					/* the owner sees it (or it has no key to ask
								 * by: counted as seen) */
	RETL_HIDDEN,				/* row-level security hides it from the owner */
	RETL_UNASKED				/* the lookup failed (a WARNING said so): queue
								 * as without the question */
} RetlSeen;

extern Oid	retl_capture_viewer(RetlViewer *v, int sync_id, Oid tgoid, Relation rel);
extern void retl_capture_check_failed(RetlViewer *v, Relation rel, ErrorData *edata);
extern RetlSeen retl_capture_seen(RetlViewer *v, Relation rel, int nkeys,
								  const AttrNumber *attnums, HeapTuple tuple, bool written);

#endif
