/*
 * sync.c: reading a sync's definition, with its destination's, from the
 * catalog (retl.syncs, retl.destinations) into the worker's memory.
 *
 * In the worker's short transactions, with SPI connected.
 *
 * The worker keeps its active syncs between passes (retl_sync_active):
 * reading them was a tenth of its time at batch_size 1.  They are read
 * again when the database's catalog generation moved (a commit that
 * changed retl.syncs, retl.destinations or retl.destination_grants: their
 * trigger, shmem.c), when a role or a membership changed (the owner's
 * right to send, pg_has_role), and at least every second whatever
 * happened (a change no trigger saw: a prepared transaction's, triggers
 * switched off by hand).
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "base/plans.h"
#include "base/shmem.h"
#include "sync/sync.h"

static char *
getstr(HeapTuple tup, TupleDesc desc, int col)
{
	return SPI_getvalue(tup, desc, col);
}

static int
getint(HeapTuple tup, TupleDesc desc, int col)
{
	char	   *s = SPI_getvalue(tup, desc, col);

	return s ? pg_strtoint32(s) : 0;
}

static char
mode_code(const char *mode)
{
	if (strcmp(mode, "append") == 0)
		return 'a';
	if (strcmp(mode, "insert") == 0)
		return 'i';
	if (strcmp(mode, "update") == 0)
		return 'p';
	if (strcmp(mode, "mirror") == 0)
		return 'm';
	return 'u';
}

/*
 * Has retl.syncs its count of resyncs?  Not in a database created by a
 * build of 0.2 before it (its update script had run already): its syncs
 * read 0 there, and a resync is told from a pause by the cursor alone, as
 * before (queue/ranges.c).
 */
bool
retl_sync_has_resyncs(void)
{
	Oid			relid = get_relname_relid("syncs", get_namespace_oid("retl", false));

	return OidIsValid(relid) && get_attnum(relid, "resyncs") != InvalidAttrNumber;
}

/*
 * Syncs with their destinations, in the current memory context: every
 * active one, or (only_id > 0) that one, paused or not.
 */
List *
retl_sync_load(int only_id)
{
	List	   *result = NIL;
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(only_id)};
	MemoryContext cxt = CurrentMemoryContext;	/* SPI leaves its own */

	if (retl_spi_execute(psprintf("SELECT s.id, s.name, s.mode, s.source_relid, "
							  "pg_catalog.array_to_string(s.key_attnums, ','), s.mapping::text, "
							  "s.backfill_done, s.backfill_cursor::text, d.kind, d.url, "
							  "d.headers::text, d.timeout_ms, COALESCE((s.options ->> 'batch_size')::int, d.batch_size), d.max_attempts, "
							  "s.capture = 'diff', s.query, s.owner::oid, s.key_columns, "
							  "COALESCE(s.audience_id, 0), d.id, "
							  "(extract(epoch FROM d.max_retry_age) * 1000)::bigint, d.max_concurrency, "
							  "d.rate_limit, d.linger_ms, d.max_batch_bytes, d.follow_redirects, d.tls_verify, d.signing_secret, "
							  /* retl._may_send(s.owner, d.id), inline: that function is not */
							  /* (a subquery), and it was planned once per sync and pass */
							  "(pg_catalog.pg_has_role(s.owner, 'retl_admin'::name, 'USAGE')"
							  " OR (pg_catalog.pg_has_role(s.owner, 'retl_user'::name, 'USAGE')"
							  "  AND EXISTS (SELECT 1 FROM retl.destination_grants g"
							  "   WHERE g.destination_id OPERATOR(pg_catalog.=) d.id"
							  "   AND pg_catalog.pg_has_role(s.owner, g.grantee, 'USAGE')))), "
							  "d.name, s.search_path, "
							  "(d.options -> 'auth')::text, d.options::text, s.options::text, %s, "
							  "s.capture = 'logical' "
							  "FROM retl.syncs s JOIN retl.destinations d ON d.id = s.destination_id "
							  "WHERE CASE WHEN $1 > 0 THEN s.id = $1 ELSE NOT s.paused END "
							  "ORDER BY s.id", retl_sync_has_resyncs() ? "s.resyncs" : "0"),
						 1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read retl.syncs");

	MemoryContextSwitchTo(cxt);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		RetlSync   *s = palloc0(sizeof(RetlSync));
		char	   *attnums = getstr(tup, desc, 5);
		char	   *relid = getstr(tup, desc, 4);
		bool		isnull;
		Datum	   *keys;
		int			nkeys;

		s->id = getint(tup, desc, 1);
		s->name = getstr(tup, desc, 2);
		s->mode = mode_code(getstr(tup, desc, 3));
		s->relid = relid ? (Oid) strtoul(relid, NULL, 10) : InvalidOid;
		s->mapping = getstr(tup, desc, 6);
		s->backfill_done = strcmp(getstr(tup, desc, 7), "t") == 0;
		s->backfill_cursor = getstr(tup, desc, 8);
		s->kind = getstr(tup, desc, 9);
		s->url = getstr(tup, desc, 10);
		s->headers = getstr(tup, desc, 11);
		s->timeout_ms = getint(tup, desc, 12);
		s->batch_size = getint(tup, desc, 13);
		s->max_attempts = getint(tup, desc, 14);
		s->diff = strcmp(getstr(tup, desc, 15), "t") == 0;
		s->query = getstr(tup, desc, 16);
		s->owner = (Oid) strtoul(getstr(tup, desc, 17), NULL, 10);
		s->audience_id = getint(tup, desc, 19);
		s->dest_id = getint(tup, desc, 20);
		s->max_retry_age_ms = strtoi64(getstr(tup, desc, 21), NULL, 10);
		s->max_concurrency = getint(tup, desc, 22);
		s->rate_limit = strtod(getstr(tup, desc, 23), NULL);
		s->linger_ms = getint(tup, desc, 24);
		s->max_batch_bytes = getint(tup, desc, 25);
		s->follow_redirects = strcmp(getstr(tup, desc, 26), "t") == 0;
		s->tls_verify = strcmp(getstr(tup, desc, 27), "t") == 0;
		s->signing_secret = getstr(tup, desc, 28);
		s->may_send = strcmp(getstr(tup, desc, 29), "t") == 0;
		s->dest_name = getstr(tup, desc, 30);
		s->search_path = getstr(tup, desc, 31);
		s->auth = getstr(tup, desc, 32);
		s->dest_options = getstr(tup, desc, 33);
		s->options = getstr(tup, desc, 34);
		s->resyncs = getint(tup, desc, 35);
		s->logical = strcmp(getstr(tup, desc, 36), "t") == 0;

		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 18, &isnull)),
						  TEXTOID, -1, false, TYPALIGN_INT, &keys, NULL, &nkeys);
		s->key_names = palloc(sizeof(char *) * nkeys);
		for (int k = 0; k < nkeys; k++)
			s->key_names[k] = TextDatumGetCString(keys[k]);
		if (s->diff)
			s->nkeys = nkeys;
		else
		{
			char	   *tok;
			char	   *save;

			s->key_attnums = palloc(sizeof(int16) * (strlen(attnums) + 1));
			for (tok = strtok_r(attnums, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
				s->key_attnums[s->nkeys++] = (int16) pg_strtoint32(tok);
		}
		result = lappend(result, s);
	}
	return result;
}

/* How long the worker keeps its syncs at most, whatever it was told. */
#define SYNC_CACHE_MAX_AGE_MS 1000

static MemoryContext cache_cxt = NULL;
static List *cached = NIL;
static bool cached_ok = false;	/* cached is a whole reading */
static bool roles_changed = false;
static uint64 cached_gen;
static TimestampTz cached_at;

static void
role_inval(Datum arg, int cacheid, uint32 hashvalue)
{
	roles_changed = true;
}

/*
 * Drop every entry of the catalog caches, which is no change of any role:
 * the syncs kept between passes stay (logical decoding leaves entries read
 * with historic snapshots: capture/stream.c).  A reset calls every cache's
 * callbacks, role_inval among them; at every decoding round that made the
 * worker read its syncs again at each pass, 44% of its time at 4,000
 * commits a second.  No invalidation message is read meanwhile, so no
 * real change of a role can be lost here.
 */
void
retl_sync_reset_caches(void)
{
	bool		was = roles_changed;

	InvalidateSystemCaches();
	roles_changed = was;
}

/* Are the syncs kept still what retl_sync_active would return? */
static bool
kept_still(uint64 gen, TimestampTz now)
{
	return cached_ok && !roles_changed && gen == cached_gen &&
		!TimestampDifferenceExceeds(cached_at, now, SYNC_CACHE_MAX_AGE_MS);
}

/*
 * Every active sync with its destination, as retl_sync_load(0) reads
 * them, kept between the worker's passes.  gen: the database's catalog
 * generation, read before this transaction's snapshot was taken; now: the
 * pass's time.  The result is the worker's until the next call: its
 * callers do not change it.
 */
List *
retl_sync_active(uint64 gen, TimestampTz now)
{
	MemoryContext old;

	if (cache_cxt == NULL)
	{
		cache_cxt = AllocSetContextCreate(TopMemoryContext, "retl syncs",
										  ALLOCSET_SMALL_SIZES);
		CacheRegisterSyscacheCallback(AUTHOID, role_inval, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, role_inval, (Datum) 0);
	}
	if (kept_still(gen, now))
		return cached;

	/* (a role changed while this reads makes the next pass read again) */
	roles_changed = false;
	cached_ok = false;
	MemoryContextReset(cache_cxt);
	old = MemoryContextSwitchTo(cache_cxt);
	cached = retl_sync_load(0);
	MemoryContextSwitchTo(old);
	cached_ok = true;
	cached_gen = gen;
	cached_at = now;
	return cached;
}

/*
 * The active syncs kept by the last retl_sync_active, without a
 * transaction, when they are what it would return now: the catalog
 * generation (gen, read by the caller) has not moved, no role change was
 * seen, and they are less than a second old.  Else *kept is false and the
 * result NIL.  (A role changed since the worker's last transaction is seen
 * at its next: within that second at most.)
 */
List *
retl_sync_kept(uint64 gen, TimestampTz now, bool *kept)
{
	*kept = kept_still(gen, now);
	return *kept ? cached : NIL;
}
