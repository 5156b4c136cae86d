/*
 * plans.h: the worker's frequent statements, parsed and planned once.
 */
#ifndef RETL_PLANS_H
#define RETL_PLANS_H

extern int	retl_spi_execute(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, bool read_only, long count);
extern int	retl_spi_execute_by_index(const char *sql, int nargs, Oid *types, Datum *values,
									  const char *nulls, bool read_only, long count);

#endif
