/*
 * cron.h: 5-field cron expressions, in UTC.
 */
#ifndef RETL_CRON_H
#define RETL_CRON_H

#include "datatype/timestamp.h"

typedef struct RetlCron
{
	uint64		minutes;		/* bit n: minute n */
	uint32		hours;
	uint32		days;			/* bit n: day of month n (1-31) */
	uint16		months;			/* bit n: month n (1-12) */
	uint8		weekdays;		/* bit n: weekday n, 0 = Sunday */
	bool		any_day;		/* day-of-month field starts with '*' */
	bool		any_weekday;	/* day-of-week field starts with '*' */
} RetlCron;

extern bool retl_cron_parse(const char *expr, RetlCron *cron, char **error);
extern TimestampTz retl_cron_next(const RetlCron *cron, TimestampTz after);

#endif
