/* retl--0.1--0.2.sql: connectors (one interface, http, auth), remembered destination ids */

\echo Use "ALTER EXTENSION retl UPDATE TO '0.2'" to load this file. \quit

/*
 * Connectors: what creation asks a destination kind's connector (api/checks.c).
 */
CREATE FUNCTION retl._check_destination(kind text, options jsonb) RETURNS void
	AS 'MODULE_PATHNAME', 'retl_check_destination' LANGUAGE C STABLE;
CREATE FUNCTION retl._check_sync_options(kind text, options jsonb, mode text,
										 destination_options jsonb, owner regrole) RETURNS void
	AS 'MODULE_PATHNAME', 'retl_check_sync_options' LANGUAGE C STABLE STRICT;
CREATE FUNCTION retl._check_sync_source(kind text, options jsonb, key text[], fields text[], audience boolean) RETURNS void
	AS 'MODULE_PATHNAME', 'retl_check_sync_source' LANGUAGE C STABLE STRICT;
CREATE FUNCTION retl._default_url(kind text, options jsonb) RETURNS text
	AS 'MODULE_PATHNAME', 'retl_default_url' LANGUAGE C STABLE STRICT;
/* The fields of a sync's records' data: the columns, or as the mapping names them. */
CREATE FUNCTION retl._record_fields(mapping jsonb, cols text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN mapping IS NULL THEN cols
				ELSE ARRAY(SELECT CASE WHEN pg_catalog.jsonb_typeof(e.value) OPERATOR(pg_catalog.=) 'string'
									   THEN e.value OPERATOR(pg_catalog.#>>) '{}' ELSE e.key END
							 FROM pg_catalog.jsonb_each(mapping) e) END
$$;
CREATE FUNCTION retl._connector_defaults(kind text, OUT max_records integer, OUT max_bytes integer,
										 OUT rate_limit double precision, OUT max_concurrency integer,
										 OUT default_url text, OUT batch_size integer)
	AS 'MODULE_PATHNAME', 'retl_connector_defaults' LANGUAGE C IMMUTABLE;
/* A destination's headers: none that retl sets, nor the one its auth sets (connectors/headers.c). */
CREATE FUNCTION retl._check_headers(destination text, options jsonb) RETURNS void
	AS 'MODULE_PATHNAME', 'retl_check_headers' LANGUAGE C STABLE STRICT;
REVOKE ALL ON FUNCTION retl._check_headers(text, jsonb) FROM PUBLIC;
/* A key column's value in a key retl builds in SQL (sync/keytext.c). */
CREATE FUNCTION retl._key_value_sql(typ regtype, expr text) RETURNS text
	AS 'MODULE_PATHNAME', 'retl_key_value_sql' LANGUAGE C STRICT STABLE;
REVOKE ALL ON FUNCTION retl._key_value_sql(regtype, text) FROM PUBLIC;
/*
 * Headers 0.1 let a destination give and 0.2 refuses, as retl sets them or
 * they steer the connection: dropped from the destinations that have them,
 * with a warning, so that every destination keeps to what creation checks.
 */
DO $$
DECLARE
	d record;
BEGIN
	FOR d IN SELECT dest.name, h.key FROM retl.destinations dest, pg_catalog.jsonb_object_keys(dest.headers) AS h(key)
			  WHERE pg_catalog.lower(h.key) IN ('transfer-encoding', 'connection', 'expect')
			  ORDER BY dest.name, h.key LOOP
		RAISE WARNING 'header "%" of destination "%" is dropped: retl sets it', d.key, d.name
			USING HINT = 'retl handles the connection itself; 0.2 refuses these headers at creation.';
		UPDATE retl.destinations dest SET headers = dest.headers OPERATOR(pg_catalog.-) d.key
		 WHERE dest.name OPERATOR(pg_catalog.=) d.name;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION retl._check_destination(text, jsonb), retl._check_sync_options(text, jsonb, text, jsonb, regrole),
	retl._check_sync_source(text, jsonb, text[], text[], boolean), retl._record_fields(jsonb, text[]),
	retl._default_url(text, jsonb), retl._connector_defaults(text) FROM PUBLIC;

/* A secret used by a destination's auth (in its options) cannot be dropped either. */
CREATE OR REPLACE FUNCTION retl._drop_secret(name text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	users text;
BEGIN
	PERFORM retl._require_admin(caller, 'drop a secret');
	PERFORM 1 FROM retl.secrets s WHERE s.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'secret "%" does not exist', $1
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT pg_catalog.string_agg(d.name, ', ' ORDER BY d.name) INTO users
	  FROM retl.destinations d
	 WHERE $1 = ANY (retl._secret_refs(d.headers) || retl._secret_refs(d.options)) OR d.signing_secret = $1;
	IF users IS NOT NULL THEN
		RAISE EXCEPTION 'secret "%" is used by destination %', $1, users
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'Drop or change those destinations first.';
	END IF;
	DELETE FROM retl.secrets s WHERE s.name = $1;
END
$$;

/*
 * A mapping may compute a field from the source's row:
 * {"field": {"sql": "expression"}}; compiled at creation as the owner
 * (api/checks.c).
 */
CREATE FUNCTION retl._check_computed(mapping jsonb, source text, run_as regrole, path text) RETURNS void
	AS 'MODULE_PATHNAME', 'retl_check_computed' LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION retl._check_computed(jsonb, text, regrole, text) FROM PUBLIC;
CREATE OR REPLACE FUNCTION retl._check_mapping(mapping jsonb, cols text[], source text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	k text;
	v jsonb;
	dests text[] := '{}';
BEGIN
	IF mapping IS NULL THEN
		RETURN;
	END IF;
	IF pg_catalog.jsonb_typeof(mapping) <> 'object' OR mapping = '{}'::jsonb THEN
		RAISE EXCEPTION 'mapping must be a non-empty JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example {"email": "email_address", "plan": "tier"}, or a computed field {"email_lower": {"sql": "lower(email)"}}.';
	END IF;
	FOR k, v IN SELECT * FROM pg_catalog.jsonb_each(mapping) LOOP
		/* a computed field: "field": {"sql": "expression"} (retl._check_computed compiles it) */
		IF pg_catalog.jsonb_typeof(v) = 'object' THEN
			IF NOT v ? 'sql' OR pg_catalog.jsonb_typeof(v -> 'sql') <> 'string' THEN
				RAISE EXCEPTION 'computed field "%" of the mapping must be {"sql": "expression"}', k
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'For example {"email_lower": {"sql": "lower(email)"}}.';
			END IF;
			IF k = ANY (dests) THEN
				RAISE EXCEPTION 'mapping sends two columns to field "%"', k
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			dests := dests || k;
			CONTINUE;
		END IF;
		IF NOT k = ANY (cols) THEN
			RAISE EXCEPTION 'mapping names column "%", which does not exist in "%"', k, source
				USING ERRCODE = 'undefined_column';
		END IF;
		IF pg_catalog.jsonb_typeof(v) <> 'string' OR v #>> '{}' = '' THEN
			RAISE EXCEPTION 'mapping of column "%" must be a non-empty string', k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF (v #>> '{}') = ANY (dests) THEN
			RAISE EXCEPTION 'mapping sends two columns to field "%"', v #>> '{}'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		dests := dests || (v #>> '{}');
	END LOOP;
END
$$;

/*
 * Dropping a sync while its backfill runs no longer deadlocks with the
 * worker, nor fails when its queued changes deadlock with the worker's.
 */
CREATE OR REPLACE FUNCTION retl._drop_sync(name text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	sid integer := retl._own_sync(name, caller);
	relid oid;
	tg name;
	followers text;
BEGIN
	/*
	 * Before anything else, the sync's drop lock ('retl' in ASCII, the
	 * sync's id): the worker shares it, without waiting, before it writes
	 * any row of the sync, and leaves the sync alone while this
	 * transaction holds it (src/sync/dropping.c).  Taken first, it waits
	 * only for a short transaction of the worker's, never for one that
	 * waits in turn for this one.
	 */
	PERFORM pg_catalog.pg_advisory_xact_lock(1919251564, sid);
	/*
	 * The table first, then the sync's row: the worker's backfill reads the
	 * table, then writes the row, in one transaction (taking them the other
	 * way round deadlocked with it).
	 */
	SELECT s.source_relid INTO relid FROM retl.syncs s WHERE s.id = sid;
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = relid) THEN
		EXECUTE pg_catalog.format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', relid::regclass);
	END IF;
	/*
	 * Not FOR UPDATE yet: the worker's statistics of the sync lock its row
	 * FOR KEY SHARE (their foreign key) after it took some of the sync's
	 * queued changes, which this deletes below.
	 */
	PERFORM 1 FROM retl.syncs s WHERE s.id = sid FOR NO KEY UPDATE;
	SELECT pg_catalog.string_agg(s.name, ', ' ORDER BY s.name) INTO followers
	  FROM retl.syncs s WHERE s.options ->> 'after' = $1;
	IF followers IS NOT NULL THEN
		RAISE EXCEPTION 'sync "%" is followed by sync %', $1, followers
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'Drop those syncs first: they run after this one.';
	END IF;
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = relid) THEN
		FOR tg IN SELECT t.tgname FROM pg_catalog.pg_trigger t
				   WHERE t.tgrelid = relid
					 AND t.tgname IN ('retl_capture_' || sid, 'retl_truncate_' || sid) LOOP
			EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', tg, relid::regclass);
		END LOOP;
	END IF;
	/*
	 * The worker may hold some of the sync's queued changes (a claim, an
	 * outcome) and wait for others this deletes in another order: when the
	 * two deadlock and this side is the one cancelled, it gives back the
	 * rows it took, waits a little and deletes again (the worker, if it is
	 * the one cancelled, takes the changes again later: nothing is lost).
	 */
	FOR attempt IN 1..10 LOOP
		BEGIN
			DELETE FROM retl.queue q WHERE q.sync_id = sid;
			DELETE FROM retl.snapshot_chunks c WHERE c.sync_id = sid;
			DELETE FROM retl.snapshot_edits e WHERE e.sync_id = sid;
			EXIT;
		EXCEPTION WHEN deadlock_detected THEN
			IF attempt = 10 THEN
				RAISE;
			END IF;
			PERFORM pg_catalog.pg_sleep(0.05 * attempt);
		END;
	END LOOP;
	DELETE FROM retl.syncs s WHERE s.id = sid;
END
$$;

/* For the http connector's expressions: text percent-encoded for a URL (RFC 3986). */
CREATE FUNCTION retl_urlencode(value text) RETURNS text
	AS 'MODULE_PATHNAME', 'retl_urlencode' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION retl_urlencode(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retl_urlencode(text) TO retl_user;

/*
 * The destination's own ids of a sync's keys, kept by connectors whose
 * API updates, deletes and lists records by the ids it gave them
 * (sync/ids.c).  Written with the outcome of the request that returned
 * them; key is the record's key as sent.  id NULL: a "may have it" mark,
 * the key was sent to the destination (written before it was, for a
 * connector whose deletes need the id) and no id is known; the view
 * shows ids only.  lookup: what the destination can find the key's record
 * by, when that is not the key (HubSpot: the id_property's value), so
 * that a delete of a key with a mark and no id can look its id up.
 */
CREATE TABLE retl.remembered_id_store (
	sync_id		integer NOT NULL REFERENCES retl.syncs (id) ON DELETE CASCADE,
	key			jsonb NOT NULL,
	id			text,
	lookup		text,
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (sync_id, key)
);
ALTER TABLE retl.remembered_id_store ENABLE ROW LEVEL SECURITY;
CREATE POLICY remembered_ids_visible ON retl.remembered_id_store FOR SELECT
	USING (sync_id IN (SELECT s.id FROM retl.syncs s));
GRANT SELECT ON retl.remembered_id_store TO retl_user;
CREATE VIEW retl.remembered_ids WITH (security_invoker = true) AS
SELECT s.name AS sync, r.key, r.id, r.updated_at
  FROM retl.remembered_id_store r JOIN retl.syncs s ON s.id OPERATOR(pg_catalog.=) r.sync_id
 WHERE r.id IS NOT NULL;
GRANT SELECT ON retl.remembered_ids TO retl_user;
SELECT pg_catalog.pg_extension_config_dump('retl.remembered_id_store', '');

CREATE OR REPLACE FUNCTION retl._create_destination(name text, kind text, url text, options jsonb, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	opts jsonb := coalesce(options, '{}');
	hdrs jsonb;
	k text;
	v jsonb;
	missing text;
	retry_age interval;
	lim record;
BEGIN
	PERFORM retl._require_admin(caller, 'create a destination');
	IF name IS NULL OR name = '' THEN
		RAISE EXCEPTION 'destination name must not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	/* a connector may know its API's address (slack) */
	url := coalesce(url, retl._default_url(kind, opts));
	IF url IS NULL THEN
		RAISE EXCEPTION 'a destination of kind % needs a url', kind
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = pg_catalog.format('Give the URL requests go to, url => ''https://...''; the README''s section on the %s connector says which.', kind);
	END IF;
	IF url !~* '^https?://[^/?#\s]+' OR url ~ '\s' THEN
		RAISE EXCEPTION 'destination url must be an http:// or https:// URL, not "%"', url
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example https://example.com/hooks/customers.';
	END IF;
	/* the host: retl.allowed_hosts, and no private address written out */
	PERFORM retl._check_url(url);
	/* the kind's connector: every key known, its auth and own options right */
	PERFORM retl._check_destination(kind, opts);
	/* a token endpoint is held to the rules of every request */
	IF opts -> 'auth' ->> 'type' = 'oauth2' THEN
		PERFORM retl._check_url(opts -> 'auth' ->> 'token_url');
	END IF;
	lim := retl._connector_defaults(kind);
	FOREACH k IN ARRAY ARRAY['follow_redirects', 'tls_verify'] LOOP
		IF opts ? k AND pg_catalog.jsonb_typeof(opts -> k) <> 'boolean' THEN
			RAISE EXCEPTION 'option "%" must be true or false', k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	IF opts ? 'signing_secret' THEN
		IF pg_catalog.jsonb_typeof(opts -> 'signing_secret') <> 'string' THEN
			RAISE EXCEPTION 'option "signing_secret" must be the name of a secret'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF NOT EXISTS (SELECT 1 FROM retl.secrets s WHERE s.name = opts ->> 'signing_secret') THEN
			RAISE EXCEPTION 'destination "%" refers to unknown secret %', name, opts ->> 'signing_secret'
				USING ERRCODE = 'undefined_object',
					  HINT = 'Create it first with SELECT retl_set_secret(name, value).';
		END IF;
	END IF;
	IF opts -> 'tls_verify' = 'false'
	   AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = caller) THEN
		RAISE EXCEPTION 'only a superuser may turn off TLS verification'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Give retl.ca_file the certificate authority of the destination instead.';
	END IF;
	IF opts ? 'rate_limit' AND (pg_catalog.jsonb_typeof(opts -> 'rate_limit') <> 'number'
								OR (opts ->> 'rate_limit')::numeric < 0
								OR (opts ->> 'rate_limit')::numeric > 100000) THEN
		RAISE EXCEPTION 'option "rate_limit" must be a number of requests per second between 0 and 100000'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = '0 means no limit; 0.5 means one request every two seconds.';
	END IF;
	IF opts ? 'max_retry_age' THEN
		BEGIN
			retry_age := CASE pg_catalog.jsonb_typeof(opts -> 'max_retry_age')
							 WHEN 'string' THEN (opts ->> 'max_retry_age')::interval
							 WHEN 'number' THEN (opts ->> 'max_retry_age')::numeric * interval '1 second'
						 END;
		EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
			retry_age := NULL;
		END;
		IF retry_age IS NULL OR retry_age < interval '1 second' THEN
			RAISE EXCEPTION 'option "max_retry_age" must be an interval of at least 1 second, not %', opts -> 'max_retry_age'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'For example "1 day", "6 hours", or a number of seconds.';
		END IF;
	END IF;
	hdrs := coalesce(opts -> 'headers', '{}');
	IF pg_catalog.jsonb_typeof(hdrs) <> 'object' THEN
		RAISE EXCEPTION 'option "headers" must be a JSON object of strings'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example {"headers": {"Authorization": "Bearer {{secret:NAME}}"}}.';
	END IF;
	FOR k, v IN SELECT * FROM pg_catalog.jsonb_each(hdrs) LOOP
		IF k !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' THEN
			RAISE EXCEPTION 'invalid header name "%"', k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF pg_catalog.jsonb_typeof(v) <> 'string' OR (v #>> '{}') ~ '[\r\n]' THEN
			RAISE EXCEPTION 'header "%" must be a single-line string', k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	/* none that retl sets (Transfer-Encoding, Idempotency-Key, ...), nor the one auth sets */
	PERFORM retl._check_headers(name, opts);
	SELECT pg_catalog.string_agg(r, ', ') INTO missing
	  FROM pg_catalog.unnest(retl._secret_refs(hdrs) || retl._secret_refs(coalesce(opts -> 'auth', '{}'))) AS r
	 WHERE NOT EXISTS (SELECT 1 FROM retl.secrets s WHERE s.name = r);
	IF missing IS NOT NULL THEN
		RAISE EXCEPTION 'destination "%" refers to unknown secret %', name, missing
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it first with SELECT retl_set_secret(name, value).';
	END IF;
	IF EXISTS (SELECT 1 FROM retl.destinations d WHERE d.name = $1) THEN
		RAISE EXCEPTION 'destination "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Drop it first with SELECT retl_drop_destination(name).';
	END IF;
	INSERT INTO retl.destinations (name, kind, url, headers, timeout_ms,
								   batch_size, max_attempts, max_retry_age, max_concurrency,
								   rate_limit, linger_ms, max_batch_bytes, follow_redirects,
								   tls_verify, signing_secret, options)
	VALUES ($1, $2, $3, hdrs,
			retl._int_option(opts, 'timeout_ms', 10000, 1, 3600000),
			retl._int_option(opts, 'batch_size', lim.batch_size, 1, lim.max_records),
			retl._int_option(opts, 'max_attempts', 50, 1, 1000),
			coalesce(retry_age, interval '1 day'),
			retl._int_option(opts, 'max_concurrency', lim.max_concurrency, 1, 256),
			coalesce((opts ->> 'rate_limit')::double precision, lim.rate_limit),
			retl._int_option(opts, 'linger_ms', 50, 0, 60000),
			retl._int_option(opts, 'max_batch_bytes', LEAST(1048576, lim.max_bytes), 1024, lim.max_bytes),
			coalesce((opts ->> 'follow_redirects')::boolean, false),
			coalesce((opts ->> 'tls_verify')::boolean, true),
			opts ->> 'signing_secret',
			opts - 'headers');
END
$$;

/*
 * Does row-level security narrow a role's view of a table?  PostgreSQL's
 * own answer (check_enable_rls), as the capture trigger and the worker ask
 * it.  Such a role may own neither an append sync (its rows go as they
 * were written) nor a logically captured one (logical decoding knows a
 * deleted row's key only, not whether the owner could see the row).
 */
CREATE FUNCTION retl._rls_applies(relid oid, role oid) RETURNS boolean
	AS 'MODULE_PATHNAME', 'retl_rls_applies' LANGUAGE C STABLE STRICT;
REVOKE ALL ON FUNCTION retl._rls_applies(oid, oid) FROM PUBLIC;

CREATE OR REPLACE FUNCTION retl._create_sync(name text, source text, destination text, key text[], mode text, schedule text, mapping jsonb, options jsonb, capture text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	relid oid;
	relkind "char";
	persistence "char";
	did integer;
	keys text[];
	attnums int2[] := '{}';
	col text;
	att record;
	k text;
	sid integer;
	opts jsonb := coalesce(options, '{}');
	do_backfill boolean;
	is_query boolean;
	sched text;
	cap text;
	cols text[];
	after_name text;
	run_as regrole;
	aud_id integer;
BEGIN
	IF name IS NULL OR name = '' THEN
		RAISE EXCEPTION 'sync name must not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT 1 FROM retl.syncs s WHERE s.name = $1) THEN
		RAISE EXCEPTION 'sync "%" already exists', $1
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Drop it first with SELECT retl_drop_sync(name).';
	END IF;
	SELECT d.id INTO did FROM retl.destinations d WHERE d.name = destination;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'destination "%" does not exist', destination
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it first with SELECT retl_create_destination(...).';
	END IF;
	IF pg_catalog.jsonb_typeof(opts) <> 'object' THEN
		RAISE EXCEPTION 'sync options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	run_as := retl._option_owner(opts, 'a sync', caller);
	/* the destination's connector: every key known, the mode one it can honour, its target right */
	PERFORM retl._check_sync_options(d.kind, opts, coalesce(mode, 'upsert'), d.options || pg_catalog.jsonb_build_object('batch_size', d.batch_size, 'headers', d.headers), run_as)
	   FROM retl.destinations d WHERE d.id = did;
	IF opts ? 'batch_size' AND retl._int_option(opts, 'batch_size', 1, 1, 1000000)
	   > (SELECT d.batch_size FROM retl.destinations d WHERE d.id = did) THEN
		RAISE EXCEPTION 'option "batch_size" of sync "%" is %, more than the batch_size of destination "%" (%)',
			$1, opts ->> 'batch_size', destination, (SELECT d.batch_size FROM retl.destinations d WHERE d.id = did)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A sync may lower its destination''s batch_size, not raise it.';
	END IF;
	IF NOT retl._may_send(run_as, did) THEN
		RAISE EXCEPTION 'role "%" may not send to destination "%"', run_as::text, destination
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A sync''s owner needs the role retl_user and a grant of the destination (or retl_admin).',
				  HINT = pg_catalog.format('A member of retl_admin allows it with SELECT retl_grant_destination(%L, %L).',
										   destination, run_as::text);
	END IF;
	IF opts ? 'backfill' AND pg_catalog.jsonb_typeof(opts -> 'backfill') <> 'boolean' THEN
		RAISE EXCEPTION 'option "backfill" must be true or false'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	do_backfill := coalesce((opts ->> 'backfill')::boolean, true);
	IF opts ? 'after' THEN
		after_name := opts ->> 'after';
		IF pg_catalog.jsonb_typeof(opts -> 'after') <> 'string' OR
		   NOT EXISTS (SELECT 1 FROM retl.syncs s WHERE s.name = after_name) THEN
			RAISE EXCEPTION 'option "after" must name an existing sync, not %', opts -> 'after'
				USING ERRCODE = 'undefined_object',
					  HINT = 'This sync then runs each time that sync finishes a run successfully.';
		END IF;
		PERFORM retl._own_sync(after_name, caller);
	END IF;

	/* Table or query: PostgreSQL's parser tells. */
	IF source IS NULL OR source = '' THEN
		RAISE EXCEPTION 'sync source must not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	/* An audience's membership: entered members are added, exited removed. */
	IF source LIKE 'audience:%' THEN
		SELECT a.id, a.key_columns INTO aud_id, keys
		  FROM retl.audience_store a WHERE a.name = pg_catalog.substr(source, 10);
		IF NOT FOUND THEN
			RAISE EXCEPTION 'audience "%" does not exist', pg_catalog.substr(source, 10)
				USING ERRCODE = 'undefined_object',
					  HINT = 'Create it with SELECT retl_create_audience(name, query, key).';
		END IF;
		PERFORM retl._own_audience(pg_catalog.substr(source, 10), caller);
		IF key IS NOT NULL AND key <> keys THEN
			RAISE EXCEPTION 'the key of an audience sync is the audience''s key %', keys
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		sched := retl._schedule_kind(schedule);
		IF capture IS NOT NULL AND capture <> 'diff' THEN
			RAISE EXCEPTION 'an audience sync is captured by diff, not %', capture
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF mode IS NULL OR mode NOT IN ('insert', 'update', 'upsert', 'mirror', 'append') THEN
			RAISE EXCEPTION 'invalid sync mode "%"', mode
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Supported modes: insert, update, upsert, mirror, append.';
		END IF;
		PERFORM retl._check_mapping(mapping, keys, source);
		IF mapping IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.jsonb_each(mapping) e
										   WHERE pg_catalog.jsonb_typeof(e.value) = 'object') THEN
			RAISE EXCEPTION 'the mapping of an audience sync cannot compute fields'
				USING ERRCODE = 'feature_not_supported',
					  HINT = 'Its records carry the members'' keys only; compute fields in a query sync.';
		END IF;
		PERFORM retl._check_sync_source(d.kind, opts, keys, retl._record_fields(mapping, keys), true) FROM retl.destinations d WHERE d.id = did;
		/* 'realtime': after each refresh of the audience (as with any schedule) */
		INSERT INTO retl.syncs (name, source, capture, audience_id, destination_id,
								key_columns, mode, schedule, mapping, options,
								backfill_done, owner, next_run_at)
		VALUES ($1, source, 'diff', aud_id, did, keys, mode, schedule, mapping, opts,
				true, run_as,
				CASE sched WHEN 'cron' THEN retl._next_run(schedule, pg_catalog.now())
						   WHEN 'interval' THEN pg_catalog.now() END)
		RETURNING id INTO sid;
		INSERT INTO retl.sync_stats (sync_id) VALUES (sid);
		INSERT INTO retl.run_store (sync_id, why, send) VALUES (sid, 'after', do_backfill);
		PERFORM retl._wake_worker();
		RETURN;
	END IF;

	is_query := retl._source_is_query(source);
	sched := retl._schedule_kind(schedule);
	cap := coalesce(capture, CASE WHEN NOT is_query AND sched = 'realtime' THEN 'trigger' ELSE 'diff' END);
	IF cap NOT IN ('trigger', 'logical', 'diff') THEN
		RAISE EXCEPTION 'invalid capture "%"', cap
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Supported: trigger and logical (tables, realtime), diff (tables and queries, on a schedule).';
	END IF;
	IF cap IN ('trigger', 'logical') AND is_query THEN
		RAISE EXCEPTION 'a query source cannot be captured by %', CASE cap WHEN 'trigger' THEN 'a trigger' ELSE 'logical decoding' END
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Query syncs use diff capture on a schedule: an interval, a cron expression or ''manual''.';
	END IF;
	IF cap IN ('trigger', 'logical') AND sched <> 'realtime' THEN
		RAISE EXCEPTION '% capture is realtime, not on schedule "%"', cap, schedule
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use schedule => ''realtime'', or capture => ''diff'' to run on a schedule.';
	END IF;
	IF cap IN ('trigger', 'logical') AND opts ? 'after' THEN
		RAISE EXCEPTION 'option "after" is for scheduled syncs'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A realtime table sync has no runs to follow.';
	END IF;
	IF after_name IS NOT NULL AND
	   (SELECT s.capture FROM retl.syncs s WHERE s.name = after_name) <> 'diff' THEN
		RAISE EXCEPTION 'sync "%" has no runs to follow', after_name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'option "after" names a scheduled (diff) sync.';
	END IF;
	IF cap = 'diff' AND sched = 'realtime' THEN
		RAISE EXCEPTION 'schedule "realtime" needs a table with trigger capture'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a diff sync an interval (''15 minutes''), a cron expression (''*/15 * * * *'') or ''manual''.';
	END IF;
	IF mode IS NULL OR (cap IN ('trigger', 'logical') AND mode NOT IN ('upsert', 'append'))
	   OR mode NOT IN ('insert', 'update', 'upsert', 'mirror', 'append') THEN
		RAISE EXCEPTION 'invalid sync mode "%"', mode
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = CASE WHEN cap IN ('trigger', 'logical') AND mode IN ('insert', 'update', 'mirror')
							  THEN 'Realtime table syncs support upsert (which also sends deletes) and append; the other modes run on a schedule (capture => ''diff'').'
							  ELSE 'Supported modes: insert, update, upsert, mirror, append.' END;
	END IF;

	IF NOT is_query THEN
		/* The source: a table, by name, resolved with search_path. */
		BEGIN
			relid := retl._resolve_table(source, caller, caller_path);
		EXCEPTION WHEN OTHERS THEN
			relid := NULL;
		END;
		IF relid IS NULL THEN
			RAISE EXCEPTION 'source table "%" does not exist', source
				USING ERRCODE = 'undefined_table',
					  HINT = 'Give a table name, schema-qualified or on the search_path.';
		END IF;
		SELECT c.relkind, c.relpersistence INTO relkind, persistence
		  FROM pg_catalog.pg_class c WHERE c.oid = relid;
		IF relkind = 'p' AND cap <> 'logical' THEN
			RAISE EXCEPTION '"%" is a partitioned table', source
				USING ERRCODE = 'feature_not_supported',
					  HINT = 'Sync it with capture => ''logical'', or create one sync per partition.';
		END IF;
		IF relkind NOT IN ('r', 'p') THEN
			RAISE EXCEPTION '"%" is not a table', source
				USING ERRCODE = 'wrong_object_type',
					  HINT = 'Realtime syncs capture changes of ordinary tables.';
		END IF;
		IF persistence = 't' THEN
			RAISE EXCEPTION '"%" is a temporary table', source
				USING ERRCODE = 'feature_not_supported',
					  HINT = 'The worker cannot read another session''s temporary tables; sync a regular table.';
		END IF;
		IF cap IN ('trigger', 'logical') AND NOT pg_catalog.has_table_privilege(caller, relid, 'TRIGGER') THEN
			RAISE EXCEPTION 'permission denied to capture the changes of table %', relid::regclass
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'Realtime capture adds a trigger to the table, which needs the TRIGGER privilege on it.',
					  HINT = pg_catalog.format('GRANT TRIGGER ON %s TO %s; or sync it on a schedule (capture => ''diff''), which only reads it.',
											   relid::regclass, caller);
		END IF;
	END IF;

	IF cap = 'diff' THEN
		/* The result's columns; the query runs as its owner, so errors show here. */
		IF is_query THEN
			IF key IS NULL THEN
				RAISE EXCEPTION 'a query sync needs key => ''{column}'''
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Name the column(s) of the query result that identify a row.';
			END IF;
			SELECT pg_catalog.array_agg(c.name) INTO cols
			  FROM retl._query_columns(retl._query_text(source), run_as, caller_path) c;
			SELECT c INTO col FROM pg_catalog.unnest(cols) c GROUP BY c HAVING pg_catalog.count(*) > 1 LIMIT 1;
			IF FOUND THEN
				RAISE EXCEPTION 'the query returns two columns named "%"', col
					USING ERRCODE = 'duplicate_column',
						  HINT = 'Give every column of the result its own name with AS.';
			END IF;
			keys := key;
		ELSE
			/* checks, as the owner, that it can read the table */
			SELECT pg_catalog.array_agg(c.name) INTO cols
			  FROM retl._query_columns(pg_catalog.format('SELECT * FROM ONLY %s', relid::regclass), run_as, caller_path) c;
			keys := coalesce(key, retl._primary_key(relid, source));
		END IF;
		IF pg_catalog.cardinality(keys) = 0 THEN
			RAISE EXCEPTION 'key must name at least one column'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		PERFORM retl._check_key(keys, cols);
		PERFORM retl._check_mapping(mapping, cols, source);
		IF mapping IS NOT NULL THEN
			PERFORM retl._check_computed(mapping,
				CASE WHEN is_query THEN retl._query_text(source)
					 ELSE pg_catalog.format('SELECT * FROM ONLY %s', relid::regclass) END,
				run_as, CASE WHEN is_query THEN caller_path ELSE 'pg_catalog, pg_temp' END);
		END IF;

		PERFORM retl._check_sync_source(d.kind, opts, keys, retl._record_fields(mapping, cols), false) FROM retl.destinations d WHERE d.id = did;
		INSERT INTO retl.syncs (name, source, source_relid, query, search_path, capture,
								destination_id, key_columns, mode, schedule, mapping, options,
								backfill_done, owner, next_run_at)
		VALUES ($1, source, relid, CASE WHEN is_query THEN retl._query_text(source) END,
				CASE WHEN is_query THEN caller_path END, 'diff', did,
				keys, mode, schedule, mapping, opts, true, run_as,
				CASE sched WHEN 'manual' THEN NULL
						   WHEN 'cron' THEN retl._next_run(schedule, pg_catalog.now())
						   ELSE pg_catalog.now() END)
		RETURNING id INTO sid;
		INSERT INTO retl.sync_stats (sync_id) VALUES (sid);
		/* Without backfill the first run only records what the destination has. */
		IF NOT do_backfill THEN
			INSERT INTO retl.run_store (sync_id, why, send) VALUES (sid, 'resync', false);
		END IF;
		PERFORM retl._wake_worker();
		RETURN;
	END IF;

	/* The key: given, or the primary key. */
	keys := coalesce(key, retl._primary_key(relid, source));
	IF pg_catalog.cardinality(keys) = 0 THEN
		RAISE EXCEPTION 'key must name at least one column'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOREACH col IN ARRAY keys LOOP
		SELECT a.attnum, a.atttypid, a.attnotnull, t.typtype, t.typcategory INTO att
		  FROM pg_catalog.pg_attribute a
		  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		 WHERE a.attrelid = relid AND a.attname = col AND a.attnum > 0
		   AND NOT a.attisdropped;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'key column "%" does not exist in "%"', col, source
				USING ERRCODE = 'undefined_column';
		END IF;
		IF att.attnum = ANY (attnums) THEN
			RAISE EXCEPTION 'key column "%" is listed twice', col
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF att.typcategory = 'A' OR att.typtype IN ('c', 'p', 'r', 'm')
		   OR att.atttypid IN ('json'::regtype, 'jsonb'::regtype, 'xml'::regtype) THEN
			RAISE EXCEPTION 'key column "%" has type %, which cannot be a sync key',
				col, att.atttypid::regtype
				USING ERRCODE = 'datatype_mismatch',
					  HINT = 'Use scalar key columns (numbers, text, uuid, dates, ...).';
		END IF;
		IF NOT retl._key_type_trusted(att.atttypid) THEN
			RAISE EXCEPTION 'key column "%" has type %, which is not owned by a superuser',
				col, att.atttypid::regtype
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'retl compares and converts key values with its own privileges, which must not run another role''s code (a cast or a domain check).',
					  HINT = 'Key the sync by columns of built-in types, or sync a query that casts the key (capture => ''diff'').';
		END IF;
		BEGIN
			EXECUTE pg_catalog.format('SELECT 1 FROM ONLY %s t ORDER BY t.%I LIMIT 0', relid::regclass, col);
		EXCEPTION WHEN undefined_function THEN
			RAISE EXCEPTION 'key column "%" has type %, which has no equality and ordering operators',
				col, att.atttypid::regtype
				USING ERRCODE = 'datatype_mismatch',
					  HINT = 'Use key columns of a type with a default btree operator class (numbers, text, uuid, dates, ...).';
		END;
		IF NOT att.attnotnull THEN
			RAISE EXCEPTION 'key column "%" is nullable', col
				USING ERRCODE = 'invalid_table_definition',
					  HINT = pg_catalog.format('Rows are found by their key: ALTER TABLE %s ALTER COLUMN %I SET NOT NULL.', relid::regclass, col);
		END IF;
		attnums := attnums || att.attnum::int2;
	END LOOP;

	/* An upsert finds each row by its key, so the key must be unique. */
	IF mode = 'upsert' AND NOT EXISTS (
		SELECT 1 FROM pg_catalog.pg_index i
		 WHERE i.indrelid = relid AND i.indisunique AND i.indimmediate
		   AND i.indpred IS NULL AND i.indexprs IS NULL
		   AND i.indnkeyatts = pg_catalog.cardinality(attnums)
		   AND ARRAY(SELECT u.k FROM pg_catalog.unnest(i.indkey) WITH ORDINALITY AS u(k, n)
					  WHERE u.n <= i.indnkeyatts) OPERATOR(pg_catalog.@>) attnums
		   AND ARRAY(SELECT u.k FROM pg_catalog.unnest(i.indkey) WITH ORDINALITY AS u(k, n)
					  WHERE u.n <= i.indnkeyatts) OPERATOR(pg_catalog.<@) attnums) THEN
		RAISE EXCEPTION 'key of an upsert sync must be unique'
			USING ERRCODE = 'invalid_table_definition',
				  HINT = pg_catalog.format('Add a unique constraint: ALTER TABLE %s ADD UNIQUE (%s), or use mode => ''append''.',
										   relid::regclass, pg_catalog.array_to_string(keys, ', '));
	END IF;

	SELECT pg_catalog.array_agg(a.attname::text) INTO cols
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid = relid AND a.attnum > 0 AND NOT a.attisdropped;
	PERFORM retl._check_mapping(mapping, cols, source);
	IF mapping IS NOT NULL THEN
		PERFORM retl._check_computed(mapping, pg_catalog.format('SELECT * FROM %s %s', CASE WHEN relkind = 'p' THEN '' ELSE 'ONLY' END, relid::regclass),
									 run_as, 'pg_catalog, pg_temp');
	END IF;
	/* the backfill and the rows sent are read as the owner: it must be able to */
	PERFORM retl._query_columns(pg_catalog.format('SELECT * FROM ONLY %s', relid::regclass), run_as, caller_path);
	/* an append sync sends rows as written: only an owner that sees them all may */
	IF mode = 'append' AND retl._rls_applies(relid, run_as) THEN
		RAISE EXCEPTION 'row-level security of table % applies to role "%"', relid::regclass, run_as::text
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'An append sync sends rows as they were written, which only an owner that may read every row of the table may send.',
				  HINT = 'Use mode => ''upsert'' (rows are read as the owner), or a scheduled sync (its query runs as the owner).';
	END IF;
	/* a deleted row's key goes only where its owner could see the row */
	IF cap = 'logical' AND retl._rls_applies(relid, run_as) THEN
		RAISE EXCEPTION 'row-level security of table % applies to role "%"', relid::regclass, run_as::text
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Logical capture knows a deleted row''s key only, not whether the sync''s owner could see the row, and would send its delete either way.',
				  HINT = 'Use capture => ''trigger'' (it asks, as the owner, whether each changed row is one it may see), or a scheduled sync (its query runs as the owner).';
	END IF;
	/* before anything is written: it may create the replication slot */
	PERFORM retl._check_sync_source(d.kind, opts, keys, retl._record_fields(mapping, cols), false) FROM retl.destinations d WHERE d.id = did;
	IF cap = 'logical' THEN
		PERFORM retl._logical_prepare(relid, attnums, mode);
	END IF;

	INSERT INTO retl.syncs (name, source, source_relid, capture, destination_id,
							key_columns, key_attnums, mode, schedule,
							mapping, options, backfill_done, owner)
	VALUES ($1, source, relid, cap, did, keys, attnums, mode, schedule,
			mapping, opts, NOT do_backfill OR mode = 'append', run_as)
	RETURNING id INTO sid;
	INSERT INTO retl.sync_stats (sync_id) VALUES (sid);

	PERFORM retl._start_capture(sid, relid, attnums, mode, cap);
	IF mode = 'append' THEN
		/*
		 * An append backfill must be exact (each existing row once, no row
		 * inserted after creation twice), so it runs here, where the
		 * capture's lock keeps writers out until commit.
		 */
		IF do_backfill THEN
			EXECUTE pg_catalog.format(
				'INSERT INTO retl.queue (sync_id, op, key, data) '
				'SELECT %s, ''b'', pg_catalog.jsonb_build_array(%s), retl._row_jsonb(t) FROM %s %s t',
				sid,
				/* each key value as the capture trigger writes it (keytext.c) */
				(SELECT pg_catalog.string_agg(retl._key_value_sql(a.atttypid, pg_catalog.format('t.%I', a.attname)), ', '
											  ORDER BY k.n)
				   FROM pg_catalog.unnest(attnums) WITH ORDINALITY AS k(attnum, n)
				   JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) relid
					AND a.attnum OPERATOR(pg_catalog.=) k.attnum),
				CASE WHEN relkind = 'p' THEN '' ELSE 'ONLY' END, relid::regclass);
		END IF;
	ELSE
		/* TRUNCATE is captured by a trigger either way: it still sees the rows */
		EXECUTE pg_catalog.format(
			'CREATE TRIGGER %I BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s(%L, %L, %L)',
			'retl_truncate_' || sid, relid::regclass,
			pg_catalog.format('%I.retl_capture', '@extschema@'), sid, 'upsert',
			pg_catalog.array_to_string(attnums, ','));
	END IF;
	PERFORM retl._wake_worker();
END
$$;

/* The url may be left out for a connector that knows its API's address. */
CREATE OR REPLACE FUNCTION retl_create_destination(name text, kind text, url text DEFAULT NULL, options jsonb DEFAULT '{}')
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

/*
 * Jobs: a destination that answers "accepted into job X" (a bulk import,
 * an upload job) tells each record's fate later, when the job is checked
 * (queue/jobs.c).  Until then its records stay in flight, their queue rows
 * claimed and their keys held; a restart checks open jobs again rather
 * than sending their records again.  state is the connector's (its next
 * step), status the destination's word for the job.
 */
CREATE TABLE retl.job_store (
	id			bigserial PRIMARY KEY,
	sync_id		integer NOT NULL REFERENCES retl.syncs (id) ON DELETE CASCADE,
	remote_id	text NOT NULL,
	state		text,
	status		text,
	checks		integer NOT NULL DEFAULT 0,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	checked_at	timestamptz,
	next_check_at timestamptz NOT NULL,
	last_error	text
);
CREATE INDEX job_store_sync_idx ON retl.job_store (sync_id, next_check_at);
/* The records a job holds: what the engine needs to record their outcome. */
CREATE TABLE retl.job_record_store (
	job_id		bigint NOT NULL REFERENCES retl.job_store (id) ON DELETE CASCADE,
	rid			bigint NOT NULL,
	queue_ids	bigint[] NOT NULL,
	op			"char" NOT NULL,
	key			text NOT NULL,		/* as sent */
	key_hash	bigint NOT NULL,	/* of the queue's key: held while in the job */
	captured_at	timestamptz NOT NULL,
	ref			text,				/* the connector's: what names it in the job */
	PRIMARY KEY (job_id, rid)
);
ALTER TABLE retl.job_store ENABLE ROW LEVEL SECURITY;
ALTER TABLE retl.job_record_store ENABLE ROW LEVEL SECURITY;
CREATE POLICY jobs_visible ON retl.job_store FOR SELECT
	USING (sync_id IN (SELECT s.id FROM retl.syncs s));
CREATE POLICY job_records_visible ON retl.job_record_store FOR SELECT
	USING (job_id IN (SELECT j.id FROM retl.job_store j));
GRANT SELECT ON retl.job_store, retl.job_record_store TO retl_user;
CREATE VIEW retl.jobs WITH (security_invoker = true) AS
SELECT j.id, s.name AS sync, j.remote_id, j.status,
	   (SELECT pg_catalog.count(*) FROM retl.job_record_store r WHERE r.job_id OPERATOR(pg_catalog.=) j.id) AS records,
	   j.checks, j.created_at, pg_catalog.now() OPERATOR(pg_catalog.-) j.created_at AS age,
	   j.checked_at, j.next_check_at, j.last_error
  FROM retl.job_store j JOIN retl.syncs s ON s.id OPERATOR(pg_catalog.=) j.sync_id;
GRANT SELECT ON retl.jobs TO retl_user;

/*
 * A replace in progress: a resync of a sync whose connector replaces the
 * destination's set (Meta's usersreplace) sends the run's rows (queue op
 * 'P') as one session of batches, one at a time, numbered, the last one
 * flagged (queue/claim.c).
 */
CREATE TABLE retl.replace_store (
	sync_id		integer PRIMARY KEY REFERENCES retl.syncs (id) ON DELETE CASCADE,
	session		bigint NOT NULL,
	total		bigint NOT NULL,
	batches		integer NOT NULL DEFAULT 0,
	started_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
ALTER TABLE retl.replace_store ENABLE ROW LEVEL SECURITY;

/*
 * Runs in workers of their own (process/runner.c): their progress, shown
 * by retl.runs, and retl_cancel_run.  A run's query calls retl._run_tick()
 * for every row, as the sync's owner, so retl_user may execute it (it only
 * counts, and only in a run's worker).
 */
CREATE FUNCTION retl._run_tick() RETURNS boolean
	AS 'MODULE_PATHNAME', 'retl_run_tick' LANGUAGE C VOLATILE;
CREATE FUNCTION retl._run_progress(OUT run_id bigint, OUT phase text, OUT rows_read bigint, OUT pid integer)
	RETURNS SETOF record AS 'MODULE_PATHNAME', 'retl_run_progress' LANGUAGE C VOLATILE;
CREATE FUNCTION retl._signal_run(run bigint) RETURNS boolean
	AS 'MODULE_PATHNAME', 'retl_signal_run' LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION retl._run_tick(), retl._run_progress(), retl._signal_run(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retl._run_tick(), retl._run_progress() TO retl_user;

/*
 * A diff run's query calls retl._run_probe(key, hash) for each row (as the
 * sync's owner): what the row is against the snapshot the run holds in
 * memory (A, C, U, L, N for a NULL key, or NULL for a row of another part
 * or that the run does not write).  Only a run has
 * such a snapshot; elsewhere it is an error.
 */
CREATE FUNCTION retl._run_probe(key bigint, hash bigint) RETURNS "char"
	AS 'MODULE_PATHNAME', 'retl_run_probe_int' LANGUAGE C VOLATILE PARALLEL RESTRICTED;
CREATE FUNCTION retl._run_probe(key jsonb, hash bigint) RETURNS "char"
	AS 'MODULE_PATHNAME', 'retl_run_probe_key' LANGUAGE C VOLATILE PARALLEL RESTRICTED;
/* the same, given the row's values, hashed as retl._values_hash does */
CREATE FUNCTION retl._run_probe_values(key bigint, VARIADIC "any") RETURNS "char"
	AS 'MODULE_PATHNAME', 'retl_run_probe_int_values' LANGUAGE C VOLATILE PARALLEL RESTRICTED;
CREATE FUNCTION retl._run_probe_values(key jsonb, VARIADIC "any") RETURNS "char"
	AS 'MODULE_PATHNAME', 'retl_run_probe_key_values' LANGUAGE C VOLATILE PARALLEL RESTRICTED;
/*
 * The same as a condition: whether _run_probe_values answers the row (a
 * run's statement filters the query's rows by it where they are read).
 * Parallel safe: a run whose statement's plan is parallel shares its
 * snapshot with the plan's workers (models/probe_share.c).  Its support
 * function tells the planner the share of rows it lets through.
 */
CREATE FUNCTION retl._run_probe_support(internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'retl_run_probe_support' LANGUAGE C STRICT;
CREATE FUNCTION retl._run_probe_filter(key bigint, VARIADIC "any") RETURNS boolean
	AS 'MODULE_PATHNAME', 'retl_run_probe_filter_int' LANGUAGE C VOLATILE PARALLEL SAFE
	SUPPORT retl._run_probe_support;
CREATE FUNCTION retl._run_probe_filter(key jsonb, VARIADIC "any") RETURNS boolean
	AS 'MODULE_PATHNAME', 'retl_run_probe_filter_key' LANGUAGE C VOLATILE PARALLEL SAFE
	SUPPORT retl._run_probe_support;
/*
 * The answer _run_probe_values gave the row just probed (a run whose query
 * filters its rows by that answer reads it in its output columns, in the
 * process that probed the row).
 */
CREATE FUNCTION retl._run_probe_op(key bigint) RETURNS "char"
	AS 'MODULE_PATHNAME', 'retl_run_probe_op_int' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION retl._run_probe_op(key jsonb) RETURNS "char"
	AS 'MODULE_PATHNAME', 'retl_run_probe_op_key' LANGUAGE C VOLATILE PARALLEL SAFE;
REVOKE ALL ON FUNCTION retl._run_probe(bigint, bigint), retl._run_probe(jsonb, bigint),
	retl._run_probe_values(bigint, "any"), retl._run_probe_values(jsonb, "any"),
	retl._run_probe_filter(bigint, "any"), retl._run_probe_filter(jsonb, "any"),
	retl._run_probe_op(bigint), retl._run_probe_op(jsonb), retl._run_probe_support(internal) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retl._run_probe(bigint, bigint), retl._run_probe(jsonb, bigint),
	retl._run_probe_values(bigint, "any"), retl._run_probe_values(jsonb, "any"),
	retl._run_probe_filter(bigint, "any"), retl._run_probe_filter(jsonb, "any"),
	retl._run_probe_op(bigint), retl._run_probe_op(jsonb) TO retl_user;

/*
 * The hash a diff run keeps of a row: of its values' stored bytes (a
 * value holding rows: of its text), in the order of the row's fields.
 */
CREATE FUNCTION retl._row_hash(record) RETURNS bigint
	AS 'MODULE_PATHNAME', 'retl_row_hash' LANGUAGE C STABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION retl._row_hash(record) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retl._row_hash(record) TO retl_user;
/* the same hash of values passed one by one: _row_hash(ROW(a, b)) = _values_hash(a, b) */
CREATE FUNCTION retl._values_hash(VARIADIC "any") RETURNS bigint
	AS 'MODULE_PATHNAME', 'retl_values_hash' LANGUAGE C STABLE PARALLEL SAFE;
REVOKE ALL ON FUNCTION retl._values_hash("any") FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retl._values_hash("any") TO retl_user;

/*
 * status: queued, running, succeeded, failed, cancelled; a running run's
 * phase and rows read; send: false for a run that records the result
 * without sending it (runs.c)
 */
CREATE OR REPLACE VIEW retl.runs WITH (security_invoker = true) AS
SELECT r.id, s.name AS sync, r.why, r.status, r.requested_at, r.started_at,
	   r.finished_at, r.rows, r.added, r.changed, r.removed, r.error,
	   p.phase, p.rows_read, r.send
  FROM retl.run_store r
  JOIN retl.syncs s ON s.id OPERATOR(pg_catalog.=) r.sync_id
  LEFT JOIN retl._run_progress() p ON p.run_id OPERATOR(pg_catalog.=) r.id
		AND r.status OPERATOR(pg_catalog.=) 'running';

/*
 * Stop a run: a queued one is cancelled at once; a running one in a worker
 * of its own is asked to stop (its transaction rolled back: nothing of it
 * kept, the snapshot and the queue as they were).  True when it was.
 */
CREATE FUNCTION retl._cancel_run(run bigint, caller regrole, caller_path text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	SELECT rs.status, s.owner INTO r
	  FROM retl.run_store rs JOIN retl.syncs s ON s.id OPERATOR(pg_catalog.=) rs.sync_id
	 WHERE rs.id OPERATOR(pg_catalog.=) run;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'run % does not exist', run
			USING ERRCODE = 'undefined_object',
				  HINT = 'retl.runs lists the runs.';
	END IF;
	/* (not by its sync's name, nor its owner's, which the caller may not know) */
	IF NOT (pg_catalog.pg_has_role(caller, r.owner, 'MEMBER') OR retl._is_admin(caller)) THEN
		RAISE EXCEPTION 'permission denied for run %', run
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Only members of its sync''s owner, and of retl_admin, may cancel it.';
	END IF;
	IF r.status OPERATOR(pg_catalog.=) 'queued' THEN
		UPDATE retl.run_store SET status = 'cancelled', finished_at = pg_catalog.now(),
			   error = 'cancelled by retl_cancel_run before it started'
		 WHERE id OPERATOR(pg_catalog.=) run AND status OPERATOR(pg_catalog.=) 'queued';
		RETURN FOUND;
	END IF;
	IF r.status OPERATOR(pg_catalog.<>) 'running' THEN
		RAISE NOTICE 'run % has ended (%): nothing to cancel', run, r.status;
		RETURN false;
	END IF;
	IF NOT retl._signal_run(run) THEN
		RAISE EXCEPTION 'run % cannot be cancelled: the database''s worker runs it itself', run
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Runs are cancellable in workers of their own: retl.max_parallel_runs above 0, and a background worker free.';
	END IF;
	RETURN true;
END
$$;
CREATE FUNCTION retl_cancel_run(run bigint)
	RETURNS boolean AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;
REVOKE ALL ON FUNCTION retl._cancel_run(bigint, regrole, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_cancel_run(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retl_cancel_run(bigint) TO retl_user;

/*
 * Snapshots hash a row's mapped values (models/rowhash.c), 64 bits,
 * instead of the md5 of its JSON: a run builds JSON only for the rows that
 * changed.  They are stored compact (models/snapshot.c): each sync's keys
 * and hashes in chunks of about 1 MB, written whole by a first run and
 * as deltas (what changed) by the next ones, instead of a row per key (a first run of 1M rows spent three quarters of its
 * time inserting them, in a btree of jsonb keys).  Between runs the worker
 * records what it changes of a snapshot as edits, only ever inserted (a
 * dead letter's key forgotten: hash NULL; or kept stale: hash 0; a resync
 * forgets every key: key 'null'), which the next run applies and deletes.
 * 0.1's rows become edits holding its md5 in legacy_hash: the next run
 * compares a row's JSON with it, and a row that did not change is only
 * rehashed, not sent again.
 */
ALTER TABLE retl.snapshots RENAME TO snapshot_edits;
ALTER TABLE retl.snapshot_edits DROP CONSTRAINT snapshots_pkey;
ALTER TABLE retl.snapshot_edits RENAME COLUMN hash TO legacy_hash;
ALTER TABLE retl.snapshot_edits ALTER COLUMN legacy_hash DROP NOT NULL;
ALTER TABLE retl.snapshot_edits ADD COLUMN hash bigint;
ALTER TABLE retl.snapshot_edits ADD COLUMN id bigserial;
ALTER TABLE retl.snapshot_edits ADD CONSTRAINT snapshot_edits_hash_check
	CHECK (hash IS NULL OR legacy_hash IS NULL);
CREATE INDEX snapshot_edits_sync_id_idx ON retl.snapshot_edits (sync_id, id);
/* an edit inserted while its sync is dropped (a resync's): the drop takes it */
DELETE FROM retl.snapshot_edits e WHERE NOT EXISTS (SELECT FROM retl.syncs s WHERE s.id = e.sync_id);
ALTER TABLE retl.snapshot_edits ADD CONSTRAINT snapshot_edits_sync_id_fkey
	FOREIGN KEY (sync_id) REFERENCES retl.syncs (id) ON DELETE CASCADE;

/* a run writing chunks while its sync is dropped: the drop takes them */
CREATE TABLE retl.snapshot_chunks (
	sync_id		integer NOT NULL REFERENCES retl.syncs (id) ON DELETE CASCADE,
	chunk		integer NOT NULL,
	keys		integer NOT NULL,	/* entries */
	int_keys	boolean NOT NULL,	/* integer keys, else jsonb */
	lo			bigint NOT NULL,	/* range of their keys' positions (a hash's high 32 bits) */
	hi			bigint NOT NULL,
	data		bytea NOT NULL,
	delta		boolean NOT NULL DEFAULT false,	/* what a run changed, read after the rest */
	PRIMARY KEY (sync_id, chunk)
);
ALTER TABLE retl.snapshot_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

/*
 * retl.snapshots: a sync's snapshot as its runs see it, a row per key
 * (hash NULL: a key of 0.1's, not yet run again), read from the chunks
 * with the edits applied.  For looking, not for joins: it reads a whole
 * snapshot for each sync.
 */
CREATE FUNCTION retl._snapshot(sync_id integer, OUT key jsonb, OUT hash bigint)
	RETURNS SETOF record AS 'MODULE_PATHNAME', 'retl_snapshot_rows' LANGUAGE C STABLE STRICT;
REVOKE ALL ON FUNCTION retl._snapshot(integer) FROM PUBLIC;
CREATE VIEW retl.snapshots AS
	SELECT s.id AS sync_id, sn.key, sn.hash
	  FROM retl.syncs s, LATERAL retl._snapshot(s.id) sn
	 WHERE s.capture = 'diff';
GRANT SELECT ON retl.snapshots TO retl_admin;
GRANT EXECUTE ON FUNCTION retl._snapshot(integer) TO retl_admin;

/*
 * Forget a sync's snapshot (a resync): an edit of every key, which the
 * next run applies (a run in progress saves its snapshot, and the next one
 * forgets it: nothing waits, nothing is lost).
 */
CREATE FUNCTION retl._forget_snapshot(sid integer) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO retl.snapshot_edits (sync_id, key) VALUES (sid, 'null');
$$;
REVOKE ALL ON FUNCTION retl._forget_snapshot(integer) FROM PUBLIC;

/*
 * How many times a realtime upsert sync was resynced: its worker tells a
 * resync, which begins the backfill again, from any other update of the
 * row, such as a pause, which leaves the backfill where it is
 * (src/queue/ranges.c).
 */
ALTER TABLE retl.syncs ADD COLUMN resyncs integer NOT NULL DEFAULT 0;

/*
 * Forget what was synced and send everything again, or (send => false)
 * record the current result as synced without sending it.
 */
CREATE OR REPLACE FUNCTION retl._resync(sync text, send boolean, caller regrole, caller_path text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	sid integer := retl._own_sync(sync, caller);
	rid bigint;
BEGIN
	IF send IS NULL THEN
		RAISE EXCEPTION 'send must be true or false'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF (SELECT s.capture FROM retl.syncs s WHERE s.id = sid) <> 'diff' THEN
		IF NOT send THEN
			RAISE EXCEPTION 'sync "%" has no snapshot to rebuild', sync
				USING ERRCODE = 'wrong_object_type',
					  HINT = 'send => false is for scheduled (diff) syncs.';
		END IF;
		/* a realtime table sync: backfill every row again */
		UPDATE retl.syncs s SET backfill_done = false, backfill_cursor = NULL,
								resyncs = s.resyncs OPERATOR(pg_catalog.+) 1
		 WHERE s.id = sid AND s.mode = 'upsert';
		IF NOT FOUND THEN
			RAISE EXCEPTION 'append sync "%" cannot be resynced', sync
				USING ERRCODE = 'wrong_object_type',
					  HINT = 'An append sync sends events; replay dead letters with retl_replay.';
		END IF;
		PERFORM retl._wake_worker();
		RETURN NULL;
	END IF;
	/* (an append sync has no snapshot: its runs send every row) */
	IF send AND (SELECT s.mode FROM retl.syncs s WHERE s.id = sid) <> 'append' THEN
		PERFORM retl._forget_snapshot(sid);
	END IF;
	INSERT INTO retl.run_store (sync_id, why, send) VALUES (sid, 'resync', send)
	RETURNING id INTO rid;
	PERFORM retl._wake_worker();
	RETURN rid;
END
$$;

/*
 * A claim no longer marks its rows in flight: the worker holds them in its
 * memory and counts them in shared memory (rows_in_flight), and the
 * queue's in_flight marks only the rows a destination holds in a job.
 * The view adds the two; its columns are as before.
 */
DROP VIEW retl.sync_status;
DROP FUNCTION retl._live_stats();
/* Live figures of the worker, from shared memory (stats.c). */
CREATE FUNCTION retl._live_stats(OUT sync_id integer, OUT requests_per_s float8,
								 OUT records_per_s float8, OUT latency_p50_ms float8,
								 OUT latency_p99_ms float8, OUT requests_in_flight integer,
								 OUT destination_requests_in_flight integer,
								 OUT rows_in_flight bigint)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'retl_live_stats' LANGUAGE C VOLATILE;

CREATE VIEW retl.sync_status WITH (security_invoker = true) AS
SELECT s.name AS sync,
	   dst.name AS destination,
	   CASE WHEN s.paused THEN 'paused'
			WHEN st.consecutive_failures OPERATOR(pg_catalog.>) 0 AND sd.delivered IS NULL THEN 'failing'
			ELSE 'active' END AS state,
	   s.mode,
	   coalesce(q.waiting, 0) OPERATOR(pg_catalog.-) LEAST(coalesce(q.waiting, 0), coalesce(ls.rows_in_flight, 0))
		   AS pending,
	   coalesce(q.in_job, 0) OPERATOR(pg_catalog.+) LEAST(coalesce(q.waiting, 0), coalesce(ls.rows_in_flight, 0))
		   AS in_flight,
	   coalesce(st.delivered, 0) OPERATOR(pg_catalog.+) coalesce(sd.delivered, 0) AS delivered,
	   coalesce(st.failed_attempts, 0) AS failed_attempts,
	   coalesce(dl.dead, 0) AS dead,
	   pg_catalog.now() OPERATOR(pg_catalog.-) q.oldest AS oldest_pending_age,
	   GREATEST(st.last_delivered_at, sd.at) AS last_delivered_at,
	   st.last_status,
	   st.last_error,
	   NOT s.backfill_done AS backfilling,
	   s.schedule,
	   lr.started_at AS last_run_at,
	   s.next_run_at,
	   lr.status AS last_run_status,
	   coalesce(ls.requests_per_s, 0) AS requests_per_s,
	   coalesce(ls.records_per_s, 0) AS records_per_s,
	   ls.latency_p50_ms,
	   ls.latency_p99_ms,
	   coalesce(ls.requests_in_flight, 0) AS requests_in_flight,
	   coalesce(ls.destination_requests_in_flight, 0) AS destination_requests_in_flight,
	   s.capture,
	   CASE WHEN s.capture OPERATOR(pg_catalog.=) 'logical' THEN
			(SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), rs.confirmed_flush_lsn)::bigint
			   FROM pg_catalog.pg_replication_slots rs
			  WHERE rs.slot_name OPERATOR(pg_catalog.=) retl._slot_name()) END AS slot_lag_bytes
  FROM retl.syncs s
  JOIN retl.destinations dst ON dst.id OPERATOR(pg_catalog.=) s.destination_id
  LEFT JOIN retl.sync_stats st ON st.sync_id OPERATOR(pg_catalog.=) s.id
  LEFT JOIN LATERAL (
	SELECT pg_catalog.sum(d.delivered)::bigint AS delivered, pg_catalog.max(d.at) AS at
	  FROM retl.stats_delta d WHERE d.sync_id OPERATOR(pg_catalog.=) s.id) sd ON true
  LEFT JOIN LATERAL (
	SELECT pg_catalog.count(*) FILTER (WHERE NOT qq.in_flight) AS waiting,
		   pg_catalog.count(*) FILTER (WHERE qq.in_flight) AS in_job,
		   pg_catalog.min(qq.captured_at) AS oldest
	  FROM retl.queue qq WHERE qq.sync_id OPERATOR(pg_catalog.=) s.id) q ON true
  LEFT JOIN LATERAL (
	SELECT pg_catalog.count(*) AS dead
	  FROM retl.dead_letter_store d WHERE d.sync_id OPERATOR(pg_catalog.=) s.id) dl ON true
  LEFT JOIN LATERAL (
	SELECT r.started_at, r.status FROM retl.run_store r
	 WHERE r.sync_id OPERATOR(pg_catalog.=) s.id AND r.status OPERATOR(pg_catalog.<>) 'queued'
	 ORDER BY r.id DESC LIMIT 1) lr ON true
  LEFT JOIN retl._live_stats() ls ON ls.sync_id OPERATOR(pg_catalog.=) s.id;
GRANT SELECT ON retl.sync_status TO retl_user;
REVOKE ALL ON FUNCTION retl._live_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retl._live_stats() TO retl_user;

/*
 * The worker keeps the syncs and destinations it reads between passes
 * (sync.c); a commit that changes them, or the grants of a destination,
 * makes it read them again (shmem.c).  Enabled always: a session in
 * replica mode changes them too.
 */
CREATE FUNCTION retl._catalog_changed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'retl_catalog_changed' LANGUAGE C;
REVOKE ALL ON FUNCTION retl._catalog_changed() FROM PUBLIC;
CREATE TRIGGER retl_catalog_changed AFTER INSERT OR UPDATE OR DELETE ON retl.syncs
	FOR EACH ROW EXECUTE FUNCTION retl._catalog_changed();
CREATE TRIGGER retl_catalog_truncated AFTER TRUNCATE ON retl.syncs
	FOR EACH STATEMENT EXECUTE FUNCTION retl._catalog_changed();
CREATE TRIGGER retl_catalog_changed AFTER INSERT OR UPDATE OR DELETE ON retl.destinations
	FOR EACH ROW EXECUTE FUNCTION retl._catalog_changed();
CREATE TRIGGER retl_catalog_truncated AFTER TRUNCATE ON retl.destinations
	FOR EACH STATEMENT EXECUTE FUNCTION retl._catalog_changed();
CREATE TRIGGER retl_catalog_changed AFTER INSERT OR UPDATE OR DELETE ON retl.destination_grants
	FOR EACH ROW EXECUTE FUNCTION retl._catalog_changed();
CREATE TRIGGER retl_catalog_truncated AFTER TRUNCATE ON retl.destination_grants
	FOR EACH STATEMENT EXECUTE FUNCTION retl._catalog_changed();
ALTER TABLE retl.syncs ENABLE ALWAYS TRIGGER retl_catalog_changed,
	ENABLE ALWAYS TRIGGER retl_catalog_truncated;
ALTER TABLE retl.destinations ENABLE ALWAYS TRIGGER retl_catalog_changed,
	ENABLE ALWAYS TRIGGER retl_catalog_truncated;
ALTER TABLE retl.destination_grants ENABLE ALWAYS TRIGGER retl_catalog_changed,
	ENABLE ALWAYS TRIGGER retl_catalog_truncated;

/*
 * No index on the queue's keys: its entry for each captured row was a
 * B-tree insert at a random place in the writer's transaction (and after
 * each checkpoint its whole leaf in the WAL), about half of what the
 * capture cost a writer.  A backfill's check for a key already queued
 * reads the sync's queue through the primary key (queue/queued_keys.c).
 */
DROP INDEX retl.queue_sync_key_idx;

/*
 * retl_replay ends its sync's failure streak with a delta of nothing
 * delivered (at NULL: no delivery time), which the worker folds into
 * sync_stats as it does a delivery's: writing the sync's sync_stats row
 * itself, a replay left uncommitted kept the worker waiting for that row,
 * every sync of the database with it.  sync_status counts a sync with
 * deltas not folded yet as active.
 */
ALTER TABLE retl.stats_delta ALTER COLUMN at DROP NOT NULL;

CREATE OR REPLACE FUNCTION retl._replay(sync text, caller regrole, caller_path text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	sid integer := retl._own_sync(sync, caller);
	n bigint;
BEGIN
	/* queue ids are drawn only by transactions that have an xid (mark.c) */
	PERFORM pg_catalog.txid_current();
	WITH dead AS (
		DELETE FROM retl.dead_letter_store d WHERE d.sync_id = sid
		RETURNING d.*
	), queued AS (
		INSERT INTO retl.queue (sync_id, op, key, data, rid, captured_at)
		SELECT sid,
			   /* a diff sync's queue carries the op; a trigger sync reads state */
			   CASE WHEN s.capture = 'diff' THEN
					CASE dead.op WHEN 'delete' THEN 'R'
								 WHEN 'insert' THEN CASE WHEN s.mode = 'append' THEN 'E' ELSE 'A' END
								 ELSE 'C' END
					ELSE 'r' END,
			   dead.raw_key, dead.raw_data, dead.rid, dead.captured_at
		  FROM dead, retl.syncs s WHERE s.id = sid ORDER BY dead.id
		RETURNING 1
	), forgotten AS (
		/*
		 * A diff sync's snapshot keeps the keys replayed as a stale
		 * version: their old values are sent again, and the next run sends
		 * their current state after them (a change, not an addition: an
		 * insert sync does not send it twice), or removes them.  Forgotten,
		 * a changed key came back as added, which an update sync never
		 * sends.  (A dead letter of an added key forgets it,
		 * src/queue/outcome.c: it never reached the destination; replayed,
		 * it does.)  A run may have
		 * sent such a key again since, or be sending it now (a run draws
		 * its changes' ids before its statement: src/models/run_queue.c):
		 * the replay's old values would otherwise be the destination's last.
		 */
		INSERT INTO retl.snapshot_edits (sync_id, key, hash)
		SELECT sid, dead.raw_key, 0
		  FROM dead, retl.syncs s WHERE s.id = sid AND s.capture = 'diff' AND s.mode <> 'append'
	)
	SELECT pg_catalog.count(*) INTO n FROM queued;
	/* the failure streak ends at the next fold (src/queue/counters.c) */
	INSERT INTO retl.stats_delta (sync_id, delivered, at) VALUES (sid, 0, NULL);
	PERFORM retl._wake_worker();
	RETURN n;
END
$$;

/*
 * retl_alter_sync checks the TRIGGER privilege on the table, as
 * retl_create_sync does: without it, a sync's owner could have retl add a
 * trigger (or logical capture) to a table after its owner revoked it.
 */
CREATE OR REPLACE FUNCTION retl._alter_sync(name text, capture text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	sid integer := retl._own_sync($1, caller);
	s record;
BEGIN
	SELECT y.capture AS cap, y.source_relid AS relid, y.key_attnums AS attnums, y.mode, y.owner
	  INTO s FROM retl.syncs y WHERE y.id = sid;
	IF capture IS NULL OR capture = s.cap THEN
		RETURN;
	END IF;
	IF capture NOT IN ('trigger', 'logical') OR s.cap NOT IN ('trigger', 'logical') THEN
		RAISE EXCEPTION 'cannot switch sync "%" from % to % capture', $1, s.cap, capture
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A realtime table sync switches between trigger and logical capture; create a new sync for a scheduled one.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = s.relid) THEN
		RAISE EXCEPTION 'source table of sync "%" no longer exists', $1	/* as retl_source_gone's */
			USING ERRCODE = 'undefined_table', HINT = pg_catalog.format('Drop the sync with SELECT retl_drop_sync(''%s'').', $1);
	END IF;
	/* as at creation: either capture adds a trigger to the table */
	IF NOT pg_catalog.has_table_privilege(caller, s.relid, 'TRIGGER') THEN
		RAISE EXCEPTION 'permission denied to capture the changes of table %', s.relid::regclass
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Realtime capture adds a trigger to the table, which needs the TRIGGER privilege on it.',
				  HINT = pg_catalog.format('GRANT TRIGGER ON %s TO %s.', s.relid::regclass, caller);
	END IF;
	IF capture = 'trigger' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = s.relid) = 'p' THEN
		RAISE EXCEPTION 'sync "%" reads a partitioned table, which trigger capture does not support', $1
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Keep it on logical capture.';
	END IF;
	IF capture = 'logical' AND retl._rls_applies(s.relid, s.owner) THEN
		RAISE EXCEPTION 'row-level security of table % applies to role "%"', s.relid::regclass, s.owner::text
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Logical capture knows a deleted row''s key only, not whether the sync''s owner could see the row, and would send its delete either way.',
				  HINT = 'Keep it on trigger capture.';
	END IF;
	/* before anything is written: it may create the replication slot */
	IF capture = 'logical' THEN
		PERFORM retl._logical_prepare(s.relid, s.attnums, s.mode);
	END IF;
	PERFORM retl._start_capture(sid, s.relid, s.attnums, s.mode, capture);
	IF capture = 'logical' THEN
		EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s', 'retl_capture_' || sid, s.relid::regclass);
	ELSE
		DELETE FROM retl.logical_sources ls WHERE ls.sync_id = sid;
		/* what was committed under logical capture is still to be staged */
		UPDATE retl.stream_state st SET drain = true WHERE st.slot = retl._slot_name();
	END IF;
	UPDATE retl.syncs y SET capture = $2 WHERE y.id = sid;
	PERFORM retl._wake_worker();
END
$$;

/*
 * DROP ROLE, DROP OWNED and REASSIGN OWNED in a database with retl: the
 * utility hook runs these as the extension's owner (src/process/roles.c),
 * with the roles named and the caller, since retl's catalog refers to roles
 * by OID, which PostgreSQL's dependency tracking does not see.
 */

/* DROP ROLE: refused, as for a table, while a role owns or holds here. */
CREATE FUNCTION retl._roles_drop_check(roles oid[], unused oid, caller regrole)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	r oid;
	deps text;
	n bigint;
BEGIN
	FOREACH r IN ARRAY roles LOOP
		SELECT pg_catalog.string_agg(d.what, E'\n' ORDER BY d.ord, d.what), count(*)
		  INTO deps, n
		  FROM (SELECT 1 AS ord, pg_catalog.format('owner of sync "%s"', s.name) AS what
				  FROM retl.syncs s WHERE s.owner::oid OPERATOR(pg_catalog.=) r
				UNION ALL
				SELECT 2, pg_catalog.format('owner of audience "%s"', a.name)
				  FROM retl.audience_store a WHERE a.owner::oid OPERATOR(pg_catalog.=) r
				UNION ALL
				SELECT 3, pg_catalog.format('privileges for destination "%s"', t.name)
				  FROM retl.destination_grants g
				  JOIN retl.destinations t ON t.id OPERATOR(pg_catalog.=) g.destination_id
				 WHERE g.grantee::oid OPERATOR(pg_catalog.=) r) d;
		IF n > 0 THEN
			RAISE EXCEPTION 'role "%" cannot be dropped because some objects depend on it',
				pg_catalog.pg_get_userbyid(r)
				USING ERRCODE = 'dependent_objects_still_exist',
					  DETAIL = deps,
					  HINT = pg_catalog.format('Give its syncs and audiences to another role with REASSIGN OWNED BY %I TO ..., or drop them and its grants with DROP OWNED BY %I, in this database.',
											   pg_catalog.pg_get_userbyid(r), pg_catalog.pg_get_userbyid(r));
		END IF;
	END LOOP;
END
$$;

/*
 * DROP OWNED: the roles' syncs (those that others run after last, so that
 * none is dropped before its followers; a follower of another role's
 * fails the command) and audiences are dropped, their destination grants
 * revoked.  The caller has the roles' privileges (roles.c checked it).
 */
CREATE FUNCTION retl._drop_owned(roles oid[], unused oid, caller regrole)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	obj text;
	dropped text[] := '{}';
	revoked text;
BEGIN
	LOOP
		SELECT s.name INTO obj FROM retl.syncs s
		 WHERE s.owner::oid OPERATOR(pg_catalog.=) ANY (roles)
		 ORDER BY EXISTS (SELECT 1 FROM retl.syncs f
						   WHERE f.options ->> 'after' OPERATOR(pg_catalog.=) s.name), s.name
		 LIMIT 1;
		EXIT WHEN NOT FOUND;
		PERFORM retl._drop_sync(obj, caller, 'pg_catalog, pg_temp');
		dropped := dropped || pg_catalog.format('sync "%s"', obj);
	END LOOP;
	FOR obj IN SELECT a.name FROM retl.audience_store a
				WHERE a.owner::oid OPERATOR(pg_catalog.=) ANY (roles) ORDER BY a.name LOOP
		PERFORM retl._drop_audience(obj, caller, 'pg_catalog, pg_temp');
		dropped := dropped || pg_catalog.format('audience "%s"', obj);
	END LOOP;
	WITH gone AS (
		DELETE FROM retl.destination_grants g
		 WHERE g.grantee::oid OPERATOR(pg_catalog.=) ANY (roles)
		RETURNING g.destination_id
	)
	SELECT pg_catalog.string_agg(DISTINCT pg_catalog.format('"%s"', t.name), ', ')
	  INTO revoked
	  FROM gone JOIN retl.destinations t ON t.id OPERATOR(pg_catalog.=) gone.destination_id;
	IF pg_catalog.cardinality(dropped) > 0 THEN
		RAISE NOTICE 'dropped retl''s %', pg_catalog.array_to_string(dropped, ', ');
	END IF;
	IF revoked IS NOT NULL THEN
		RAISE NOTICE 'revoked grants of destination %', revoked;
	END IF;
END
$$;

/*
 * REASSIGN OWNED: the roles' syncs and audiences go to the new owner
 * (PostgreSQL checked that the caller has both roles' privileges).  A
 * moved sync whose new owner may not send to its destination stops, as
 * after a revoke, and says so.
 */
CREATE FUNCTION retl._reassign_owned(roles oid[], new_owner oid, caller regrole)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	moved text[];
	stopped text;
BEGIN
	WITH m AS (
		UPDATE retl.syncs s SET owner = new_owner::regrole
		 WHERE s.owner::oid OPERATOR(pg_catalog.=) ANY (roles)
		   AND s.owner::oid OPERATOR(pg_catalog.<>) new_owner
		RETURNING s.name
	)
	SELECT pg_catalog.array_agg(m.name) INTO moved FROM m;
	UPDATE retl.audience_store a SET owner = new_owner::regrole
	 WHERE a.owner::oid OPERATOR(pg_catalog.=) ANY (roles);
	SELECT pg_catalog.string_agg(pg_catalog.format('"%s"', s.name), ', ' ORDER BY s.name) INTO stopped
	  FROM retl.syncs s
	 WHERE s.name OPERATOR(pg_catalog.=) ANY (moved) AND NOT retl._may_send(s.owner, s.destination_id);
	IF stopped IS NOT NULL THEN
		RAISE NOTICE 'sync % cannot send to its destination as role "%"', stopped,
			pg_catalog.pg_get_userbyid(new_owner)
			USING DETAIL = 'Their changes wait, unsent, until the role may send there.',
				  HINT = 'A member of retl_admin allows it with retl_grant_destination(destination, role); the role also needs retl_user.';
	END IF;
END
$$;
REVOKE ALL ON FUNCTION retl._roles_drop_check(oid[], oid, regrole), retl._drop_owned(oid[], oid, regrole),
	retl._reassign_owned(oid[], oid, regrole) FROM PUBLIC;

/*
 * retl_urlencode where the http connector's expressions find it: they run
 * with search_path = pg_catalog, retl, pg_temp (connectors/http_compile.c),
 * not with the schema the extension is installed in, where others may be
 * allowed to create functions.
 */
CREATE FUNCTION retl.retl_urlencode(value text) RETURNS text
	AS 'MODULE_PATHNAME', 'retl_urlencode' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION retl.retl_urlencode(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retl.retl_urlencode(text) TO retl_user;
