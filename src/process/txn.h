/*
 * txn.h: the short transactions of retl's processes (see txn.c).
 */
#ifndef RETL_TXN_H
#define RETL_TXN_H

extern bool retl_lock_extension(void);
extern Oid	retl_extension_served(void);
extern void retl_begin_txn(void);
extern void retl_end_txn(void);

#endif
