/*
 * jsonkey.h: a sync's key as the jsonb array a run makes of it (jsonkey.c).
 */
#ifndef RETL_JSONKEY_H
#define RETL_JSONKEY_H

#include "utils/jsonb.h"

extern bool retl_stored_int_key(struct varlena *key, int64 *value);
extern Jsonb *retl_int_key_jsonb(int64 key);
extern bool retl_key_holds_null(struct varlena *key);

#endif
