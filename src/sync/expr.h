/*
 * expr.h: a SQL expression a user gives (see expr.c).
 */
#ifndef RETL_EXPR_H
#define RETL_EXPR_H

#include "lib/stringinfo.h"

extern void retl_check_expression(const char *option, const char *expr);
extern void retl_append_expression(StringInfo sql, const char *what, const char *expr);
extern void retl_name_expression(ErrorData *edata);

#endif
