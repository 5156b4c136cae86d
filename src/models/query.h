/*
 * query.h: a sync's source as a query (query.c).
 */
#ifndef RETL_QUERY_H
#define RETL_QUERY_H

extern char *retl_trimmed_query(const char *query);
extern void retl_describe_query(void *arg);

/* A query's rows as the planner estimates them (retl_estimate_query_rows) */
typedef struct RetlRowEstimate
{
	const char *query;
	double		rows;
} RetlRowEstimate;

extern void retl_estimate_query_rows(void *arg);

#endif
