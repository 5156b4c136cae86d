/*
 * staged.h: what a round of logical capture decoded for one sync, and its
 * staging into the queue (see staged.c).
 */
#ifndef RETL_STAGED_H
#define RETL_STAGED_H

#include "utils/hsearch.h"

/* the changes of one sync in a round, in order */
typedef struct SyncChanges
{
	int			sync_id;		/* hash key */
	int			n;
	int			size;
	char	   *ops;			/* i, u or d */
	Datum	   *keys;
	Datum	   *rows;
	bool	   *rownulls;
} SyncChanges;

extern void retl_staged_add(HTAB *changes, int sync_id, char op, const char *key,
							const char *row);
extern bool retl_staged_queue(SyncChanges *c, char **error);

#endif
