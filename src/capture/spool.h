/*
 * spool.h: the plugin's lines of transactions decoded while in progress.
 */
#ifndef RETL_SPOOL_H
#define RETL_SPOOL_H

typedef struct RetlSpool RetlSpool;

/* called with each line kept for a transaction, in order */
typedef void (*RetlSpoolLineFn) (void *arg, const char *line, int len);

extern RetlSpool *retl_spool_create(MemoryContext parent);
extern void retl_spool_destroy(RetlSpool *spool);
extern void retl_spool_add(RetlSpool *spool, TransactionId top, TransactionId xid,
						   const char *line, int len);
extern void retl_spool_abort(RetlSpool *spool, TransactionId top, TransactionId xid);
extern void retl_spool_replay(RetlSpool *spool, TransactionId top,
							  RetlSpoolLineFn fn, void *arg);

#endif
