/*
 * visible.h: the syncs and runs the calling role may see (visible.c).
 */
#ifndef RETL_VISIBLE_H
#define RETL_VISIBLE_H

typedef struct RetlVisible
{
	int			n;
	int64	   *ids;			/* sorted */
} RetlVisible;

extern RetlVisible *retl_visible_ids(const char *sql);
extern bool retl_visible(const RetlVisible *v, int64 id);

#endif							/* RETL_VISIBLE_H */
