/*
 * empty_replace.h: a replace whose result is empty.
 */
#ifndef RETL_EMPTY_REPLACE_H
#define RETL_EMPTY_REPLACE_H

#include "queue/queue.h"

extern int64 retl_replace_empty(RetlSync *sync);

#endif
