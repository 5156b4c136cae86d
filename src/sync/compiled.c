/*
 * compiled.c: a sync's statements, generated once and kept in the
 * worker's memory until its definition changes.
 *
 * The claim path runs the same few statements for a sync at every batch;
 * generating them (the mapping's JSON parsed, column names and operators
 * looked up) costs more than it needs to.  Each is kept per sync with the
 * definition it was built from (mode, key, mapping, options), and dropped
 * when that changes or when the source table's definition does (a relcache
 * invalidation: a renamed column changes the SQL).  The plans themselves
 * are kept by base/plans.c.
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"

#include "sync/compiled.h"

typedef struct CompiledKey
{
	int			sync_id;
	int			which;
} CompiledKey;

typedef struct Compiled
{
	CompiledKey key;
	Oid			relid;
	char	   *definition;		/* what it was built from */
	char	   *sql;			/* NULL: to build */
} Compiled;

static HTAB *compiled = NULL;

/* A table's definition changed (InvalidOid: any): forget what was built on it. */
static void
invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	Compiled   *c;

	if (compiled == NULL)
		return;
	hash_seq_init(&seq, compiled);
	while ((c = hash_seq_search(&seq)) != NULL)
	{
		if ((relid == InvalidOid || c->relid == relid) && c->sql != NULL)
		{
			pfree(c->sql);
			c->sql = NULL;
		}
	}
}

static char *
definition(RetlSync *sync)
{
	return psprintf("%c|%d|%u|%s|%s|%s|%d", sync->mode, sync->diff, sync->relid,
					sync->mapping ? sync->mapping : "", sync->options ? sync->options : "",
					sync->kind, sync->batch_size);
}

/*
 * The statement of a sync, built by build() when it is not kept for its
 * current definition.  The result lives until the definition changes.
 */
const char *
retl_sync_statement(RetlSync *sync, RetlStatement which, char *(*build) (RetlSync *sync))
{
	CompiledKey key;
	Compiled   *c;
	bool		found;
	char	   *def = definition(sync);

	if (compiled == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(CompiledKey);
		ctl.entrysize = sizeof(Compiled);
		compiled = hash_create("retl compiled statements", 64, &ctl, HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(invalidate, (Datum) 0);
	}
	memset(&key, 0, sizeof(key));
	key.sync_id = sync->id;
	key.which = (int) which;
	c = hash_search(compiled, &key, HASH_ENTER, &found);
	if (!found)
	{
		c->definition = NULL;
		c->sql = NULL;
	}
	if (c->sql != NULL && c->definition != NULL && strcmp(c->definition, def) == 0)
		return c->sql;
	if (c->sql)
		pfree(c->sql);
	if (c->definition)
		pfree(c->definition);
	c->sql = NULL;
	c->definition = NULL;
	c->relid = sync->relid;
	{
		char	   *sql = build(sync);

		c->sql = MemoryContextStrdup(TopMemoryContext, sql);
		c->definition = MemoryContextStrdup(TopMemoryContext, def);
	}
	return c->sql;
}
