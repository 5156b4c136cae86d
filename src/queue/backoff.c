/*
 * backoff.c: the keys of each sync that wait for a retry, in the worker's
 * memory.
 *
 * Only the worker schedules retries, and it loads the keys that wait when
 * it starts (from the queue's next_attempt_at), so its memory is the whole
 * truth: a claim skips a waiting key's rows without reading the queue for
 * them (claim.c).  Keys are their 64-bit jsonb hashes.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "queue/queue.h"

/* Keys waiting for a retry, per sync, and until when. */
typedef struct BackoffKey
{
	int			sync_id;
	uint64		hash;
} BackoffKey;

typedef struct BackoffEntry
{
	BackoffKey	key;
	TimestampTz until;
} BackoffEntry;

static HTAB *backoff = NULL;

/* entries beyond which expired ones are swept out */
#define BACKOFF_SWEEP 65536

/* A key of a sync waits for a retry until then. */
void
retl_queue_backoff(int sync_id, uint64 key_hash, TimestampTz until)
{
	BackoffKey	k;
	BackoffEntry *e;
	bool		found;

	if (backoff == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(BackoffKey);
		ctl.entrysize = sizeof(BackoffEntry);
		backoff = hash_create("retl keys waiting for a retry", 1024, &ctl,
							  HASH_ELEM | HASH_BLOBS);
	}
	if (hash_get_num_entries(backoff) >= BACKOFF_SWEEP)
	{
		HASH_SEQ_STATUS seq;
		TimestampTz now = GetCurrentTimestamp();

		hash_seq_init(&seq, backoff);
		while ((e = hash_seq_search(&seq)) != NULL)
			if (e->until <= now)
				hash_search(backoff, &e->key, HASH_REMOVE, NULL);
	}
	memset(&k, 0, sizeof(k));
	k.sync_id = sync_id;
	k.hash = key_hash;
	e = hash_search(backoff, &k, HASH_ENTER, &found);
	if (!found || e->until < until)
		e->until = until;
}

/*
 * Does a key of a sync wait for a retry?  Until when (an expired entry
 * goes).
 */
bool
retl_queue_backing_off(int sync_id, uint64 key_hash, TimestampTz now, TimestampTz *until)
{
	BackoffKey	k;
	BackoffEntry *e;

	if (backoff == NULL)
		return false;
	memset(&k, 0, sizeof(k));
	k.sync_id = sync_id;
	k.hash = key_hash;
	e = hash_search(backoff, &k, HASH_FIND, NULL);
	if (e == NULL)
		return false;
	if (e->until > now)
	{
		*until = e->until;
		return true;
	}
	hash_search(backoff, &k, HASH_REMOVE, NULL);
	return false;
}

/* At the worker's start: the keys the queue says wait for a retry. */
void
retl_queue_load_backoff(void)
{
	if (SPI_execute("SELECT sync_id, pg_catalog.jsonb_hash_extended(key, 0),"
					" pg_catalog.max(next_attempt_at) FROM retl.queue"
					" WHERE attempts > 0 AND next_attempt_at > pg_catalog.now()"
					" GROUP BY 1, 2", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read the changes waiting for a retry");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		retl_queue_backoff(DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull)),
						   (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull)),
						   DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull)));
	}
}
