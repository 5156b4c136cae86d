/*
 * visible.c: the syncs and runs the calling role may see.
 *
 * retl._live_stats() and retl._run_progress() read shared memory, which
 * holds the figures of every sync and run of the database.  retl_user
 * may call them (the views retl.sync_status and retl.runs do), so they
 * answer only for the ids the caller's own reading of retl.syncs or
 * retl.run_store returns: those tables' row-level security
 * (retl._may_see) decides, as it does for the views.
 */
#include "postgres.h"

#include "executor/spi.h"

#include "base/visible.h"

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * The ids a query of one bigint column gives, run as the caller (read
 * only, its row-level security applied), in the current memory context.
 */
RetlVisible *
retl_visible_ids(const char *sql)
{
	RetlVisible *v = palloc0(sizeof(RetlVisible));
	MemoryContext cxt = CurrentMemoryContext;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "retl: SPI_connect failed");
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "retl: could not read what the caller may see: %s", sql);
	v->n = (int) SPI_processed;
	v->ids = MemoryContextAlloc(cxt, sizeof(int64) * Max(v->n, 1));
	for (int i = 0; i < v->n; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		v->ids[i] = isnull ? -1 : DatumGetInt64(d);
	}
	SPI_finish();
	qsort(v->ids, v->n, sizeof(int64), cmp_int64);
	return v;
}

bool
retl_visible(const RetlVisible *v, int64 id)
{
	return bsearch(&id, v->ids, v->n, sizeof(int64), cmp_int64) != NULL;
}
