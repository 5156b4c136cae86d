/*
 * cron.c: standard 5-field cron expressions, evaluated in UTC.
 *
 *   minute hour day-of-month month day-of-week
 *
 * Each field is "*", a number, a range "a-b", a step "*\/n" or "a-b/n", or a
 * comma-separated list of those.  Months and weekdays also take English
 * three-letter names (JAN, MON).  Day of week 0 and 7 are Sunday.  As in
 * Vixie cron, when both day fields are restricted a day matching either
 * one matches.  Pure functions: no catalog access, no locks.
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "fmgr.h"

#include "models/cron.h"

typedef struct CronField
{
	const char *name;
	int			min;
	int			max;
	const char *const *names;	/* names for min..max, or NULL */
} CronField;

static const char *const month_names[] = {
	"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", NULL
};
static const char *const day_names[] = {
	"sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun", NULL
};

static const CronField fields[5] = {
	{"minute", 0, 59, NULL},
	{"hour", 0, 23, NULL},
	{"day of month", 1, 31, NULL},
	{"month", 1, 12, month_names},
	{"day of week", 0, 7, day_names},
};

/* A number or a name of field f at *p; -1 if there is none. */
static int
parse_value(const CronField *f, const char **p)
{
	if (isdigit((unsigned char) **p))
	{
		int			v = 0;

		while (isdigit((unsigned char) **p) && v < 1000)
			v = v * 10 + (*(*p)++ - '0');
		return v;
	}
	if (f->names)
	{
		for (int i = 0; f->names[i]; i++)
		{
			if (pg_strncasecmp(*p, f->names[i], 3) == 0 && !isalpha((unsigned char) (*p)[3]))
			{
				*p += 3;
				return f->min + i;
			}
		}
	}
	return -1;
}

/* Parse one field into a bit set; false with *error on bad syntax. */
static bool
parse_field(const CronField *f, const char *text, uint64 *bits, char **error)
{
	const char *p = text;

	*bits = 0;
	for (;;)
	{
		int			lo;
		int			hi;
		int			step = 1;

		if (*p == '*')
		{
			lo = f->min;
			hi = f->max;
			p++;
		}
		else
		{
			lo = parse_value(f, &p);
			if (lo < 0)
				goto bad;
			hi = lo;
			if (*p == '-')
			{
				p++;
				hi = parse_value(f, &p);
				if (hi < 0)
					goto bad;
				/* "fri-sun": a range ending on Sunday ends on day 7 */
				if (f->names == day_names && hi == 0 && lo > 0)
					hi = 7;
				if (lo > hi)
				{
					*error = psprintf("%s range \"%s\" is reversed", f->name, text);
					return false;
				}
			}
		}
		if (*p == '/')
		{
			p++;
			if (!isdigit((unsigned char) *p))
				goto bad;
			step = 0;
			while (isdigit((unsigned char) *p) && step < 1000)
				step = step * 10 + (*p++ - '0');
			if (step == 0)
				goto bad;
		}
		if (lo < f->min || hi > f->max || lo > hi)
		{
			*error = psprintf("%s field \"%s\" is out of range %d-%d", f->name, text, f->min, f->max);
			return false;
		}
		for (int v = lo; v <= hi; v += step)
			*bits |= UINT64CONST(1) << v;
		if (*p == '\0')
			return true;
		if (*p++ != ',')
			goto bad;
	}

bad:
	*error = psprintf("invalid %s field \"%s\"", f->name, text);
	return false;
}

/* Parse a cron expression; false with a message in *error when invalid. */
bool
retl_cron_parse(const char *expr, RetlCron *cron, char **error)
{
	char	   *copy = pstrdup(expr);
	char	   *tok;
	char	   *save;
	char	   *parts[6];
	int			n = 0;
	uint64		bits[5];

	for (tok = strtok_r(copy, " \t", &save); tok && n < 6; tok = strtok_r(NULL, " \t", &save))
		parts[n++] = tok;
	if (n != 5)
	{
		*error = psprintf("a cron expression has 5 fields, not %d", n);
		return false;
	}
	for (int i = 0; i < 5; i++)
		if (!parse_field(&fields[i], parts[i], &bits[i], error))
			return false;

	cron->minutes = bits[0];
	cron->hours = (uint32) bits[1];
	cron->days = (uint32) bits[2];
	cron->months = (uint16) bits[3];
	/* 7 is Sunday too */
	cron->weekdays = (uint8) ((bits[4] | (bits[4] >> 7)) & 0x7F);
	cron->any_day = parts[2][0] == '*';
	cron->any_weekday = parts[4][0] == '*';
	return true;
}

static bool
day_matches(const RetlCron *cron, int year, int month, int day)
{
	bool		dom = (cron->days >> day) & 1;
	bool		dow = (cron->weekdays >> j2day(date2j(year, month, day))) & 1;

	if (cron->any_day && cron->any_weekday)
		return true;
	if (cron->any_day)
		return dow;
	if (cron->any_weekday)
		return dom;
	return dom || dow;
}

/* t rounded down to a multiple of unit, also before 2000 (negative t) */
static TimestampTz
floor_to(TimestampTz t, int64 unit)
{
	return t - ((t % unit) + unit) % unit;
}

static TimestampTz
date_start(int year, int month, int day)
{
	return (TimestampTz) (date2j(year, month, day) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
}

/*
 * The first time strictly after "after" that matches, in UTC; DT_NOEND if
 * there is none within about ten years (e.g. "0 0 30 2 *").
 */
TimestampTz
retl_cron_next(const RetlCron *cron, TimestampTz after)
{
	TimestampTz t = floor_to(after, USECS_PER_MINUTE) + USECS_PER_MINUTE;

	for (int guard = 0; guard < 200000; guard++)
	{
		struct pg_tm tm;
		fsec_t		fsec;

		if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
			return DT_NOEND;
		if (!((cron->months >> tm.tm_mon) & 1))
		{
			int			y = tm.tm_year + (tm.tm_mon == 12 ? 1 : 0);
			int			m = tm.tm_mon == 12 ? 1 : tm.tm_mon + 1;

			t = date_start(y, m, 1);
			continue;
		}
		if (!day_matches(cron, tm.tm_year, tm.tm_mon, tm.tm_mday))
		{
			t = date_start(tm.tm_year, tm.tm_mon, tm.tm_mday) + USECS_PER_DAY;
			continue;
		}
		if (!((cron->hours >> tm.tm_hour) & 1))
		{
			t = floor_to(t, USECS_PER_HOUR) + USECS_PER_HOUR;
			continue;
		}
		if (!((cron->minutes >> tm.tm_min) & 1))
		{
			t += USECS_PER_MINUTE;
			continue;
		}
		return t;
	}
	return DT_NOEND;
}

PG_FUNCTION_INFO_V1(retl_cron_next_sql);

/* retl._cron_next(expr, after): next match after a time; an error if invalid. */
Datum
retl_cron_next_sql(PG_FUNCTION_ARGS)
{
	char	   *expr = text_to_cstring(PG_GETARG_TEXT_PP(0));
	RetlCron	cron;
	char	   *error = NULL;
	TimestampTz next;

	if (!retl_cron_parse(expr, &cron, &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid cron expression \"%s\": %s", expr, error),
				 errhint("Use 5 fields, minute hour day-of-month month day-of-week, e.g. \"*/15 * * * *\"; times are UTC.")));
	next = retl_cron_next(&cron, PG_GETARG_TIMESTAMPTZ(1));
	if (next == DT_NOEND)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cron expression \"%s\" never matches", expr)));
	PG_RETURN_TIMESTAMPTZ(next);
}
