/*
 * identity.h: acting as another role for a while (see identity.c).
 */
#ifndef RETL_IDENTITY_H
#define RETL_IDENTITY_H

/* what the extension's own code runs with: nothing of the caller's first */
#define RETL_SAFE_PATH "pg_catalog, pg_temp"

extern Oid	retl_extension_owner(void);
extern int	retl_begin_as(Oid role, int sec_flags, const char *path, Oid *save_uid,
						  int *save_sec);
extern void retl_end_as(int nest, Oid save_uid, int save_sec);
extern void retl_apply_row_security(void);
extern void retl_with_path(Oid role, const char *path, void (*fn) (void *arg), void *arg);

#endif
