/*
 * partitions.h: rows that enter or leave a logically synced partitioned
 * table by DDL (see partitions.c).
 */
#ifndef RETL_PARTITIONS_H
#define RETL_PARTITIONS_H

#include "nodes/parsenodes.h"

extern void retl_partitions_before(Node *node);
extern void retl_partitions_after(Node *node);

#endif
