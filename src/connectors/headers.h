/*
 * headers.h: the request headers retl sets itself (see headers.c).
 */
#ifndef RETL_HEADERS_H
#define RETL_HEADERS_H

extern bool retl_header_set_by_retl(const char *name);
extern const char *retl_headers_set_by_retl(void);

#endif
