/*
 * tokens.c: the worker records the answers of OAuth 2.0 token requests
 * (connectors/oauth.c) in a transaction of their own, before the other
 * outcomes of the pass.  An authorization server that rotates the refresh
 * token voids the old one as it issues the new one: the new one is saved
 * into its secret by a commit that waits for its flush (and for the
 * synchronous standbys), and an error recording another request's outcome
 * cannot take it back.
 */
#include "postgres.h"

#include "pgstat.h"

#include "connectors/oauth.h"
#include "delivery/http.h"
#include "process/txn.h"
#include "process/worker.h"

/*
 * Record the token answers among answers, and free them; returns the
 * others.
 */
List *
retl_worker_record_tokens(List *answers)
{
	List	   *tokens = NIL;
	List	   *others = NIL;
	ListCell   *lc;

	foreach(lc, answers)
	{
		RetlRequest *req = lfirst(lc);

		if (req->sync_id == 0)
			tokens = lappend(tokens, req);
		else
			others = lappend(others, req);
	}
	if (tokens == NIL)
	{
		list_free(others);
		return answers;
	}
	retl_begin_txn();
	pgstat_report_activity(STATE_RUNNING, "recording OAuth 2.0 tokens");
	if (!retl_lock_extension())
		retl_worker_exit_without_extension();
	foreach(lc, tokens)
		retl_oauth_answer(lfirst(lc));
	retl_end_txn();
	foreach(lc, tokens)
		retl_http_free(lfirst(lc));
	list_free(tokens);
	list_free(answers);
	return others;
}
