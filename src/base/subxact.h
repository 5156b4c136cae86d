/*
 * subxact.h: work in a subtransaction, its error caught (see subxact.c).
 */
#ifndef RETL_SUBXACT_H
#define RETL_SUBXACT_H

extern ErrorData *retl_in_subtransaction(void (*work) (void *arg), void *arg);
extern bool retl_failed_on_data(ErrorData *edata);

#endif
