/*
 * utility.h: keeping database-level commands unblocked by workers.
 */
#ifndef RETL_UTILITY_H
#define RETL_UTILITY_H

extern void retl_utility_init(void);

#endif
