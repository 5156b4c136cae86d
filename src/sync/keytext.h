/*
 * keytext.h: a key's values as retl queues them (see keytext.c).
 */
#ifndef RETL_KEYTEXT_H
#define RETL_KEYTEXT_H

#include "lib/stringinfo.h"

typedef enum RetlKeyForm
{
	RETL_KEY_AS_IS,				/* the value itself */
	RETL_KEY_OUTPUT,			/* its output function's text (an untrusted type) */
	RETL_KEY_UTC,				/* a timestamptz: jsonb's text in UTC */
	RETL_KEY_HEX				/* a bytea: its hex text */
} RetlKeyForm;

extern RetlKeyForm retl_key_form(Oid typid);
extern Datum retl_key_text(RetlKeyForm form, Oid outfunc, Datum value);
extern void retl_append_key_value(StringInfo sql, Oid typid, const char *expr);

#endif
