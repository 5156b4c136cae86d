/*
 * render.h: a claimed row's key and times as its record sends them.
 */
#ifndef RETL_RENDER_H
#define RETL_RENDER_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "sync/sync.h"

/* A sync's key fields in key order, and the order jsonb writes them in. */
typedef struct RetlKeyFields
{
	int			nkeys;
	char	  **fields;			/* [nkeys] */
	int			nfields;		/* distinct fields */
	int		   *order;			/* [nfields]: indexes into fields */
} RetlKeyFields;

extern RetlKeyFields *retl_key_fields(RetlSync *sync);
extern void retl_append_key_text(StringInfo out, RetlKeyFields *kf, Jsonb *key);
extern char *retl_timestamp_text(TimestampTz t);
extern double retl_epoch_seconds(TimestampTz t);

#endif
