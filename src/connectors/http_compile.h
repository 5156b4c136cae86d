/*
 * http_compile.h: the http connector's syncs compiled from their options
 * (see http_compile.c), for http.c, which runs them.
 */
#ifndef RETL_CONNECTORS_HTTP_COMPILE_H
#define RETL_CONNECTORS_HTTP_COMPILE_H

#include "utils/jsonb.h"

#include "sync/sync.h"

/* the columns a request's expressions see, and an answer rule's */
#define RECORD_COLUMNS 7
#define ANSWER_COLUMNS 7

/* One request shape ("request" or "delete"), as SQL. */
typedef struct Template
{
	const char *method;
	char	   *content_type;	/* NULL: no body */
	bool		has_path;
	bool		has_body;		/* else the webhook envelope */
	int			nheaders;
	char	  **header_names;
	char	   *sql;			/* path, body, headers... over the records */
	bool		uses_ids;		/* an expression reads remembered_id */
} Template;

/* A sync's definition, compiled. */
typedef struct Compiled
{
	int			sync_id;		/* hash key */
	char	   *options;		/* the options it was compiled from */
	int			batch_size;
	Template	request;
	Template	delete;
	bool		has_delete;
	char	   *answer_sql;		/* success, remember over the answer; or NULL */
	bool		has_success;
	bool		has_remember;
} Compiled;

extern Oid	retl_http_record_types[RECORD_COLUMNS];
extern Oid	retl_http_answer_types[ANSWER_COLUMNS];

extern const char *retl_http_expression_path(void);
extern Compiled *retl_http_compiled(RetlSync *sync, const char *options);
extern void retl_http_check_sync(Jsonb *options, const char *mode, Jsonb *dest_options, Oid owner);

#endif
