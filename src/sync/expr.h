/*
 * expr.h: a SQL expression a user gives (see expr.c).
 */
#ifndef RETL_EXPR_H
#define RETL_EXPR_H

extern void retl_check_expression(const char *option, const char *expr);

#endif
