/*
 * redact.h: keeping secrets out of what retl stores of an answer (see
 * redact.c).
 */
#ifndef RETL_REDACT_H
#define RETL_REDACT_H

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

extern int	retl_redact_room(List *secrets, int excerpt);
extern char *retl_redact(List *secrets, const char *text, int len, int keep);
extern Jsonb *retl_redact_jsonb(List *secrets, Jsonb *in);

#endif
