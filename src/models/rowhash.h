/*
 * rowhash.h: the hash a diff run keeps of each row (rowhash.c).
 */
#ifndef RETL_ROWHASH_H
#define RETL_ROWHASH_H

#include "fmgr.h"

extern uint64 retl_hash_args(FunctionCallInfo fcinfo, int first);

#endif
