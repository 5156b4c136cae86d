/* retl--0.1.sql: catalog, capture trigger and the SQL surface of retl 0.1 */

\echo Use "CREATE EXTENSION retl" to load this file. \quit

/*
 * Catalog.  Everything lives in schema retl; user-facing functions live in
 * the extension's schema with a retl_ prefix.  Nothing is granted to
 * PUBLIC.  Two roles use retl: retl_admin manages destinations and secrets
 * and sees everything; retl_user creates and manages its own syncs and
 * audiences (retl_admin is a member of it).  Users read the catalog
 * through views, with row-level security showing each role its own syncs;
 * every change goes through the retl_ functions, which run as the
 * extension's owner and check what their caller may do (entry.c).  Secrets
 * are readable by no user role.
 */
CREATE SCHEMA retl;
REVOKE ALL ON SCHEMA retl FROM PUBLIC;

/* Roles are shared by the cluster's databases: the first CREATE EXTENSION makes them. */
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
					WHERE r.rolname OPERATOR(pg_catalog.=) 'retl_user') THEN
		CREATE ROLE retl_user NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
					WHERE r.rolname OPERATOR(pg_catalog.=) 'retl_admin') THEN
		CREATE ROLE retl_admin NOLOGIN;
		GRANT retl_user TO retl_admin;
	END IF;
END
$$;
GRANT USAGE ON SCHEMA retl TO retl_user;

CREATE TABLE retl.secrets (
	name		text PRIMARY KEY,
	value		text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);

/* Prefix of every record id, so ids differ between databases. */
CREATE TABLE retl.instance (
	id			text NOT NULL
);
INSERT INTO retl.instance
	SELECT pg_catalog.substr(pg_catalog.md5(pg_catalog.random()::text ||
											pg_catalog.clock_timestamp()::text), 1, 12);

CREATE TABLE retl.destinations (
	id			serial PRIMARY KEY,
	name		text NOT NULL UNIQUE,
	kind		text NOT NULL,
	url			text NOT NULL,
	headers		jsonb NOT NULL DEFAULT '{}',
	timeout_ms	integer NOT NULL DEFAULT 10000,
	batch_size	integer NOT NULL DEFAULT 1,
	max_attempts integer NOT NULL DEFAULT 50,
	max_retry_age interval NOT NULL DEFAULT '1 day',
	max_concurrency integer NOT NULL DEFAULT 8,
	rate_limit	double precision NOT NULL DEFAULT 0,	/* requests/s, 0: none */
	linger_ms	integer NOT NULL DEFAULT 50,
	max_batch_bytes integer NOT NULL DEFAULT 1048576,
	follow_redirects boolean NOT NULL DEFAULT false,
	tls_verify	boolean NOT NULL DEFAULT true,
	signing_secret text,			/* a secret's name: Standard Webhooks signatures */
	options		jsonb NOT NULL DEFAULT '{}',
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);

/* Which roles may send to a destination (retl_grant_destination). */
CREATE TABLE retl.destination_grants (
	destination_id integer NOT NULL REFERENCES retl.destinations (id) ON DELETE CASCADE,
	grantee		regrole NOT NULL,
	granted_by	regrole NOT NULL,
	granted_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (destination_id, grantee)
);

CREATE TABLE retl.syncs (
	id			serial PRIMARY KEY,
	name		text NOT NULL UNIQUE,
	source		text NOT NULL,
	source_relid oid,				/* the source table, NULL for a query */
	query		text,				/* the source query, NULL for a table */
	search_path	text,				/* a query's: its creator's, when it was created */
	capture		text NOT NULL DEFAULT 'trigger',	/* trigger, logical or diff */
	audience_id	integer,			/* source 'audience:NAME' */
	destination_id integer NOT NULL REFERENCES retl.destinations (id),
	key_columns	text[] NOT NULL,
	key_attnums	int2[],				/* trigger and logical capture */
	mode		text NOT NULL,
	schedule	text NOT NULL,
	mapping		jsonb,
	options		jsonb NOT NULL DEFAULT '{}',
	paused		boolean NOT NULL DEFAULT false,
	backfill_done boolean NOT NULL DEFAULT false,
	backfill_cursor jsonb,
	next_run_at	timestamptz,		/* diff capture on a schedule */
	owner		regrole NOT NULL DEFAULT CURRENT_USER::regrole,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);

/*
 * The change queue.  The capture trigger inserts (sync_id, op, key[, data]);
 * everything else is the worker's.  key is a JSON array of the key column
 * values in key order, so renaming a column does not orphan queued work.
 * rid overrides the record id (replayed dead letters keep their id).
 */
CREATE TABLE retl.queue (
	id			bigserial,
	sync_id		integer NOT NULL,
	op			"char" NOT NULL,
	key			jsonb NOT NULL,
	data		jsonb,
	rid			bigint,
	captured_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	in_flight	boolean NOT NULL DEFAULT false,
	attempts	integer NOT NULL DEFAULT 0,
	next_attempt_at timestamptz NOT NULL DEFAULT '-infinity',
	first_attempt_at timestamptz,
	last_attempt_at timestamptz,
	last_status	integer,
	last_error	text,
	/*
	 * Keyed by sync first: each sync's queue is one range of the index, read
	 * in id order from where the worker's scan left off (mark.c).  A key on
	 * id alone would let the planner walk every sync's rows, dead ones
	 * included, from the oldest.
	 */
	PRIMARY KEY (sync_id, id)
);
/*
 * An upsert claim takes every queued row of its keys.  No id in it: a
 * plan that looks rows up by id through this index walks the whole sync.
 */
CREATE INDEX queue_sync_key_idx ON retl.queue (sync_id, key);
ALTER TABLE retl.queue SET (autovacuum_vacuum_scale_factor = 0.01,
							autovacuum_vacuum_cost_delay = 0);

/*
 * What a diff sync last synced: a hash of the mapped row, per key.  A run
 * compares the query result with it and rewrites it in the same
 * transaction as the changes it queues.
 */
CREATE TABLE retl.snapshots (
	sync_id		integer NOT NULL,
	key			jsonb NOT NULL,
	hash		text NOT NULL,
	PRIMARY KEY (sync_id, key)
);

/* Runs of diff syncs: queued by the schedule, retl_run_sync, chains, resyncs. */
CREATE TABLE retl.run_store (
	id			bigserial PRIMARY KEY,
	sync_id		integer NOT NULL REFERENCES retl.syncs (id) ON DELETE CASCADE,
	why			text NOT NULL,		/* schedule, manual, after, resync */
	send		boolean NOT NULL DEFAULT true,	/* false: rebuild the snapshot only */
	status		text NOT NULL DEFAULT 'queued',	/* queued, running, succeeded, failed */
	requested_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	started_at	timestamptz,
	finished_at	timestamptz,
	rows		bigint,
	added		bigint,
	changed		bigint,
	removed		bigint,
	error		text
);
CREATE INDEX run_store_status_idx ON retl.run_store (status, id);
CREATE INDEX run_store_sync_idx ON retl.run_store (sync_id, id);

/*
 * Audiences: named segments (a query returning keys) whose membership is
 * recomputed on a schedule, with the history of who entered and exited.
 */
CREATE TABLE retl.audience_store (
	id			serial PRIMARY KEY,
	name		text NOT NULL UNIQUE,
	query		text NOT NULL,
	search_path	text NOT NULL,		/* its creator's, when it was created */
	key_columns	text[] NOT NULL,
	schedule	text NOT NULL,
	next_refresh_at timestamptz,
	owner		regrole NOT NULL DEFAULT CURRENT_USER::regrole,
	last_refresh_at timestamptz,
	last_error	text,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE TABLE retl.audience_member_store (
	audience_id	integer NOT NULL REFERENCES retl.audience_store (id) ON DELETE CASCADE,
	key			jsonb NOT NULL,
	since		timestamptz NOT NULL,
	PRIMARY KEY (audience_id, key)
);

CREATE TABLE retl.audience_event_store (
	id			bigserial PRIMARY KEY,
	audience_id	integer NOT NULL REFERENCES retl.audience_store (id) ON DELETE CASCADE,
	key			jsonb NOT NULL,
	event		text NOT NULL,		/* entered, exited */
	at			timestamptz NOT NULL
);
CREATE INDEX audience_event_store_at_idx ON retl.audience_event_store (audience_id, at);

/* Keys are shown as objects named by the audience's key columns. */
CREATE FUNCTION retl._key_object(key jsonb, names text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
	SELECT pg_catalog.jsonb_object_agg(n.name, key OPERATOR(pg_catalog.->) (n.i::integer - 1))
	  FROM pg_catalog.unnest(names) WITH ORDINALITY AS n(name, i)
$$;

CREATE VIEW retl.audiences WITH (security_invoker = true) AS
SELECT a.name AS audience, a.query, a.key_columns, a.schedule, a.owner,
	   (SELECT pg_catalog.count(*) FROM retl.audience_member_store m
		 WHERE m.audience_id OPERATOR(pg_catalog.=) a.id) AS members,
	   a.last_refresh_at, a.next_refresh_at, a.last_error
  FROM retl.audience_store a;

CREATE VIEW retl.audience_members WITH (security_invoker = true) AS
SELECT a.name AS audience, retl._key_object(m.key, a.key_columns) AS key, m.since
  FROM retl.audience_member_store m
  JOIN retl.audience_store a ON a.id OPERATOR(pg_catalog.=) m.audience_id;

CREATE VIEW retl.audience_events WITH (security_invoker = true) AS
SELECT a.name AS audience, retl._key_object(e.key, a.key_columns) AS key, e.event, e.at
  FROM retl.audience_event_store e
  JOIN retl.audience_store a ON a.id OPERATOR(pg_catalog.=) e.audience_id;

CREATE TABLE retl.sync_stats (
	sync_id		integer PRIMARY KEY REFERENCES retl.syncs (id) ON DELETE CASCADE,
	delivered	bigint NOT NULL DEFAULT 0,
	failed_attempts bigint NOT NULL DEFAULT 0,
	consecutive_failures integer NOT NULL DEFAULT 0,
	last_delivered_at timestamptz,
	last_status	integer,
	last_error	text,
	last_error_at timestamptz
);

/*
 * Deliveries not yet added to sync_stats: the worker appends one row per
 * request and folds them in about once a second (counters.c), so that a
 * held snapshot never makes it update one row thousands of times.
 */
CREATE TABLE retl.stats_delta (
	sync_id		integer NOT NULL,
	delivered	bigint NOT NULL,
	at			timestamptz NOT NULL DEFAULT pg_catalog.now()
);

/*
 * Logical capture.  The output plugin (decoder.c) reads logical_sources as
 * of each change it decodes, which only a user catalog table allows; its
 * columns are read by position.  stream_state records, in the transaction
 * that staged them, the end of the last transaction staged from the
 * database's slot (stream.c).
 */
CREATE TABLE retl.logical_sources (
	relid		oid NOT NULL,
	sync_id		integer PRIMARY KEY REFERENCES retl.syncs (id) ON DELETE CASCADE,
	append		boolean NOT NULL,
	key_attnums	int2[] NOT NULL
) WITH (user_catalog_table = true);

CREATE TABLE retl.stream_state (
	slot		text PRIMARY KEY,
	staged_lsn	pg_lsn NOT NULL,
	/*
	 * A sync left logical capture: the slot stays (and is decoded) until
	 * everything committed before that is staged, even with no logical
	 * sync left (stream.c).
	 */
	drain		boolean NOT NULL DEFAULT false
);

CREATE TABLE retl.dead_letter_store (
	id			bigserial PRIMARY KEY,
	sync_id		integer NOT NULL REFERENCES retl.syncs (id) ON DELETE CASCADE,
	record_id	text NOT NULL,
	rid			bigint NOT NULL,
	key			jsonb NOT NULL,		/* as sent */
	op			text NOT NULL,
	data		jsonb,				/* as sent */
	raw_key		jsonb NOT NULL,		/* as queued, for retl_replay */
	raw_data	jsonb,
	captured_at	timestamptz NOT NULL,
	attempts	integer NOT NULL,
	last_status	integer,
	last_error	text,
	response_excerpt text,
	first_attempt_at timestamptz,
	last_attempt_at timestamptz,
	dead_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX dead_letter_store_sync_idx ON retl.dead_letter_store (sync_id, id);

CREATE VIEW retl.dead_letters WITH (security_invoker = true) AS
SELECT s.name AS sync, d.record_id, d.key, d.op, d.data, d.attempts,
	   d.last_status, d.last_error, d.response_excerpt,
	   d.first_attempt_at, d.last_attempt_at, d.captured_at, d.dead_at
  FROM retl.dead_letter_store d
  JOIN retl.syncs s ON s.id OPERATOR(pg_catalog.=) d.sync_id;

CREATE VIEW retl.runs WITH (security_invoker = true) AS
SELECT r.id, s.name AS sync, r.why, r.status, r.requested_at, r.started_at,
	   r.finished_at, r.rows, r.added, r.changed, r.removed, r.error
  FROM retl.run_store r
  JOIN retl.syncs s ON s.id OPERATOR(pg_catalog.=) r.sync_id;

/* Live figures of the worker, from shared memory (stats.c). */
CREATE FUNCTION retl._live_stats(OUT sync_id integer, OUT requests_per_s float8,
								 OUT records_per_s float8, OUT latency_p50_ms float8,
								 OUT latency_p99_ms float8, OUT requests_in_flight integer,
								 OUT destination_requests_in_flight integer)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'retl_live_stats' LANGUAGE C VOLATILE;

/* The logical replication slot of this database (stream.c). */
CREATE FUNCTION retl._slot_name() RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT 'retl_' OPERATOR(pg_catalog.||) d.oid::text FROM pg_catalog.pg_database d
	 WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
$$;

CREATE VIEW retl.sync_status WITH (security_invoker = true) AS
SELECT s.name AS sync,
	   dst.name AS destination,
	   CASE WHEN s.paused THEN 'paused'
			WHEN st.consecutive_failures OPERATOR(pg_catalog.>) 0 AND sd.at IS NULL THEN 'failing'
			ELSE 'active' END AS state,
	   s.mode,
	   coalesce(q.pending, 0) AS pending,
	   coalesce(q.in_flight, 0) AS in_flight,
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
	SELECT pg_catalog.count(*) FILTER (WHERE NOT qq.in_flight) AS pending,
		   pg_catalog.count(*) FILTER (WHERE qq.in_flight) AS in_flight,
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

CREATE VIEW retl.destination_access WITH (security_invoker = true) AS
SELECT d.name AS destination, g.grantee AS role, g.granted_by, g.granted_at
  FROM retl.destination_grants g
  JOIN retl.destinations d ON d.id OPERATOR(pg_catalog.=) g.destination_id;

/* Secrets are write-only: their names, never their values. */
CREATE VIEW retl.secret_names AS
SELECT s.name, s.created_at, s.updated_at
  FROM retl.secrets s;

/*
 * Who may see what.  Views over these tables run with the privileges of
 * the role querying them (security_invoker), so the policies below show
 * each role the syncs and audiences of the roles it is a member of, and
 * retl_admin everything.  The worker and the retl_ functions run as the
 * tables' owner, which the policies do not restrict.
 */

/* A member of retl_admin, or a superuser. */
CREATE FUNCTION retl._is_admin(r regrole) RETURNS boolean
LANGUAGE sql STABLE AS $$
	SELECT pg_catalog.pg_has_role(r, 'retl_admin'::name, 'USAGE')
$$;

/* May the current role see what owner owns: as one of its members, or an admin? */
CREATE FUNCTION retl._may_see(owner regrole) RETURNS boolean
LANGUAGE sql STABLE AS $$
	SELECT pg_catalog.pg_has_role(CURRENT_USER, owner, 'MEMBER')
		OR pg_catalog.pg_has_role(CURRENT_USER, 'retl_admin'::name, 'USAGE')
$$;

/*
 * May role r, a sync's owner, send to destination did?  An admin may send
 * anywhere; a retl_user where the destination was granted to a role whose
 * privileges it has.  Checked when a sync is created and before every
 * request (claim.c), so a revoked grant stops a sync at once.
 */
CREATE FUNCTION retl._may_send(r regrole, did integer) RETURNS boolean
LANGUAGE sql STABLE AS $$
	SELECT retl._is_admin(r)
		OR (pg_catalog.pg_has_role(r, 'retl_user'::name, 'USAGE')
			AND EXISTS (SELECT 1 FROM retl.destination_grants g
						 WHERE g.destination_id OPERATOR(pg_catalog.=) did
						   AND pg_catalog.pg_has_role(r, g.grantee, 'USAGE')))
$$;

ALTER TABLE retl.syncs ENABLE ROW LEVEL SECURITY;
CREATE POLICY syncs_visible ON retl.syncs FOR SELECT USING (retl._may_see(owner));
ALTER TABLE retl.audience_store ENABLE ROW LEVEL SECURITY;
CREATE POLICY audiences_visible ON retl.audience_store FOR SELECT USING (retl._may_see(owner));
/* rows of a sync or an audience: visible with it (the subquery is filtered too) */
ALTER TABLE retl.queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY queue_visible ON retl.queue FOR SELECT
	USING (sync_id IN (SELECT s.id FROM retl.syncs s));
ALTER TABLE retl.sync_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY sync_stats_visible ON retl.sync_stats FOR SELECT
	USING (sync_id IN (SELECT s.id FROM retl.syncs s));
ALTER TABLE retl.stats_delta ENABLE ROW LEVEL SECURITY;
CREATE POLICY stats_delta_visible ON retl.stats_delta FOR SELECT
	USING (sync_id IN (SELECT s.id FROM retl.syncs s));
ALTER TABLE retl.run_store ENABLE ROW LEVEL SECURITY;
CREATE POLICY runs_visible ON retl.run_store FOR SELECT
	USING (sync_id IN (SELECT s.id FROM retl.syncs s));
ALTER TABLE retl.dead_letter_store ENABLE ROW LEVEL SECURITY;
CREATE POLICY dead_letters_visible ON retl.dead_letter_store FOR SELECT
	USING (sync_id IN (SELECT s.id FROM retl.syncs s));
ALTER TABLE retl.audience_member_store ENABLE ROW LEVEL SECURITY;
CREATE POLICY audience_members_visible ON retl.audience_member_store FOR SELECT
	USING (audience_id IN (SELECT a.id FROM retl.audience_store a));
ALTER TABLE retl.audience_event_store ENABLE ROW LEVEL SECURITY;
CREATE POLICY audience_events_visible ON retl.audience_event_store FOR SELECT
	USING (audience_id IN (SELECT a.id FROM retl.audience_store a));
/* a user sees the grants it holds; an admin all */
ALTER TABLE retl.destination_grants ENABLE ROW LEVEL SECURITY;
CREATE POLICY destination_grants_visible ON retl.destination_grants FOR SELECT
	USING (pg_catalog.pg_has_role(CURRENT_USER, grantee, 'USAGE')
		   OR pg_catalog.pg_has_role(CURRENT_USER, 'retl_admin'::name, 'USAGE'));

REVOKE ALL ON ALL TABLES IN SCHEMA retl FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA retl FROM PUBLIC;
/* read-only, and only what the views need; no role may read retl.secrets */
GRANT SELECT ON retl.syncs, retl.queue, retl.sync_stats, retl.stats_delta, retl.run_store,
	retl.dead_letter_store, retl.audience_store, retl.audience_member_store,
	retl.audience_event_store, retl.destination_grants TO retl_user;
GRANT SELECT (id, name, kind, created_at) ON retl.destinations TO retl_user;
GRANT SELECT ON retl.sync_status, retl.dead_letters, retl.runs, retl.audiences,
	retl.audience_members, retl.audience_events, retl.destination_access TO retl_user;
GRANT SELECT ON retl.destinations, retl.secret_names TO retl_admin;

/* Keep configuration (not queued work) in pg_dump output. */
SELECT pg_catalog.pg_extension_config_dump('retl.secrets', '');
SELECT pg_catalog.pg_extension_config_dump('retl.destinations', '');
SELECT pg_catalog.pg_extension_config_dump('retl.syncs', '');
SELECT pg_catalog.pg_extension_config_dump('retl.destination_grants', '');
SELECT pg_catalog.pg_extension_config_dump('retl.destinations_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('retl.syncs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('retl.audience_store', '');
SELECT pg_catalog.pg_extension_config_dump('retl.audience_store_id_seq', '');

/*
 * C entry points.
 */
/*
 * SECURITY DEFINER: any role allowed to write a synced table must be able
 * to queue its changes, without any privilege on retl's own tables.  It
 * can only run as a trigger, and EXECUTE (needed to create a trigger with
 * it) is revoked from PUBLIC.  Its SQL is fully schema-qualified and
 * planned once (regression test hijack), which is what protects it from
 * the writer's search_path: a SET search_path clause would cost every
 * captured row two GUC changes and a search path rebuild (5-15% of insert
 * throughput in an A/B with pgbench).  It is the only SECURITY DEFINER
 * function; the retl_ functions run as the extension's owner through
 * entry.c, which does set search_path.  What it converts to JSON runs no
 * user's code with its privileges: key values of types only a superuser
 * owns, the rows of append syncs as the table's owner (trust.c).
 */
CREATE FUNCTION retl_capture() RETURNS trigger
	AS 'MODULE_PATHNAME', 'retl_capture' LANGUAGE C SECURITY DEFINER;

/* to_jsonb(row) computed as the row's table's owner (trust.c) */
CREATE FUNCTION retl._row_jsonb(r anyelement) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'retl_row_jsonb' LANGUAGE C STRICT STABLE;

/* may a column of this type be the key of a table sync? (trust.c) */
CREATE FUNCTION retl._key_type_trusted(typ regtype) RETURNS boolean
	AS 'MODULE_PATHNAME', 'retl_key_type_trusted_sql' LANGUAGE C STRICT STABLE;

CREATE FUNCTION retl._wake_worker() RETURNS void
	AS 'MODULE_PATHNAME', 'retl_wake_worker' LANGUAGE C VOLATILE;

CREATE FUNCTION retl._start_worker() RETURNS void
	AS 'MODULE_PATHNAME', 'retl_start_worker' LANGUAGE C VOLATILE;

/* the Standard Webhooks signature of a message (signing.c) */
CREATE FUNCTION retl._webhook_signature(secret text, id text, ts bigint, body text) RETURNS text
	AS 'MODULE_PATHNAME', 'retl_webhook_signature' LANGUAGE C STRICT IMMUTABLE;

/* errors when retl.allowed_hosts or the address rules refuse the URL */
CREATE FUNCTION retl._check_url(url text) RETURNS void
	AS 'MODULE_PATHNAME', 'retl_check_url' LANGUAGE C STRICT STABLE;

CREATE FUNCTION retl._source_is_query(source text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'retl_source_is_query' LANGUAGE C STRICT STABLE;

CREATE FUNCTION retl._query_text(query text) RETURNS text
	AS 'MODULE_PATHNAME', 'retl_query_text' LANGUAGE C STRICT IMMUTABLE;

CREATE FUNCTION retl._query_columns(query text, run_as regrole, path text,
									OUT name text, OUT type regtype)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'retl_query_columns' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION retl._cron_next(expr text, after timestamptz) RETURNS timestamptz
	AS 'MODULE_PATHNAME', 'retl_cron_next_sql' LANGUAGE C STRICT IMMUTABLE;

CREATE FUNCTION retl_preview(sync text, n integer DEFAULT 10,
							 OUT op text, OUT key jsonb, OUT data jsonb)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'retl_preview' LANGUAGE C VOLATILE;


/* the table a name given by a caller means, with the caller's search_path (entry.c) */
CREATE FUNCTION retl._resolve_table(name text, caller regrole, path text) RETURNS oid
	AS 'MODULE_PATHNAME', 'retl_resolve_table' LANGUAGE C STRICT STABLE;

/*
 * Internal helpers.
 */

/* Secret names referenced as {{secret:NAME}} anywhere in a jsonb value. */
CREATE FUNCTION retl._secret_refs(v jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(pg_catalog.array_agg(DISTINCT m[1]), '{}')
	  FROM pg_catalog.regexp_matches(v::text, '\{\{secret:([^}]*)\}\}', 'g') AS m
$$;

CREATE FUNCTION retl._sync_id(sync_name text) RETURNS integer
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	sid integer;
BEGIN
	IF sync_name IS NULL THEN
		RAISE EXCEPTION 'sync name must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT id INTO sid FROM retl.syncs WHERE name = sync_name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sync "%" does not exist', sync_name
			USING ERRCODE = 'undefined_object',
				  HINT = 'See SELECT sync FROM retl.sync_status for the existing syncs.';
	END IF;
	RETURN sid;
END
$$;

/* Members of the role that owns a sync or an audience may use and change it, and admins. */
CREATE FUNCTION retl._check_owner(caller regrole, obj_owner regrole, what text, obj_name text)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT (pg_has_role(caller, obj_owner, 'MEMBER') OR retl._is_admin(caller)) THEN
		RAISE EXCEPTION 'permission denied for % "%"', what, obj_name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Only members of role %s, its owner, and of retl_admin may use or change it.', obj_owner);
	END IF;
END
$$;

/* The id of a sync the caller may change. */
CREATE FUNCTION retl._own_sync(sync_name text, caller regrole) RETURNS integer
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	sid integer := retl._sync_id(sync_name);
	sync_owner regrole;
BEGIN
	SELECT s.owner INTO sync_owner FROM retl.syncs s WHERE s.id = sid;
	PERFORM retl._check_owner(caller, sync_owner, 'sync', sync_name);
	RETURN sid;
END
$$;

/* The id of an audience the caller may use or change. */
CREATE FUNCTION retl._own_audience(audience_name text, caller regrole) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
	aid integer;
	aud_owner regrole;
BEGIN
	SELECT a.id, a.owner INTO aid, aud_owner FROM retl.audience_store a WHERE a.name = audience_name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'audience "%" does not exist', audience_name
			USING ERRCODE = 'undefined_object',
				  HINT = 'See SELECT audience FROM retl.audiences.';
	END IF;
	PERFORM retl._check_owner(caller, aud_owner, 'audience', audience_name);
	RETURN aid;
END
$$;

/* Destinations and secrets are managed by admins. */
CREATE FUNCTION retl._require_admin(caller regrole, what text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
	IF NOT retl._is_admin(caller) THEN
		RAISE EXCEPTION 'permission denied to %', what
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Only members of retl_admin and superusers may manage destinations and secrets.';
	END IF;
END
$$;

/*
 * What a schedule is: 'realtime', 'manual', 'interval' or 'cron'; an error
 * for anything else.
 */
CREATE FUNCTION retl._schedule_kind(schedule text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
	every interval;
BEGIN
	IF schedule IN ('realtime', 'manual') THEN
		RETURN schedule;
	END IF;
	IF schedule IS NULL OR schedule = '' THEN
		RAISE EXCEPTION 'schedule must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''realtime'', ''manual'', an interval such as ''15 minutes'', or a cron expression such as ''*/15 * * * *''.';
	END IF;
	/* cron syntax (which the interval parser would half accept) */
	IF pg_catalog.array_length(pg_catalog.regexp_split_to_array(pg_catalog.btrim(schedule), '\s+'), 1) = 5
	   OR schedule ~ '[*/,]' THEN
		PERFORM retl._cron_next(schedule, pg_catalog.now());
		RETURN 'cron';
	END IF;
	BEGIN
		every := schedule::interval;
	EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
		RAISE EXCEPTION 'invalid schedule "%"', schedule
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''realtime'', ''manual'', an interval such as ''15 minutes'', or a cron expression such as ''*/15 * * * *''.';
	END;
	IF every < interval '1 second' THEN
		RAISE EXCEPTION 'schedule interval must be at least 1 second, not "%"', schedule
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	/* the next run must stay a timestamp: bounded, so no run can overflow */
	IF every > interval '366 days' THEN
		RAISE EXCEPTION 'schedule interval must be at most a year (366 days), not "%"', schedule
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For a yearly run use an interval of ''1 year'' or a cron expression such as ''0 0 1 1 *''; for runs only on demand, ''manual''.';
	END IF;
	RETURN 'interval';
END
$$;

/* When a scheduled sync runs next, after a given time; NULL if on demand only. */
CREATE FUNCTION retl._next_run(schedule text, after timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
	CASE retl._schedule_kind(schedule)
		WHEN 'cron' THEN RETURN retl._cron_next(schedule, after);
		WHEN 'interval' THEN RETURN after + schedule::interval;
		ELSE RETURN NULL;
	END CASE;
END
$$;

/*
 * Integer option from a jsonb object: default when absent, error when not a
 * whole number inside [lo, hi].
 */
CREATE FUNCTION retl._int_option(opts jsonb, opt text, dflt integer,
								 lo integer, hi integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	v jsonb := opts -> opt;
	n numeric;
BEGIN
	IF v IS NULL OR v = 'null'::jsonb THEN
		RETURN dflt;
	END IF;
	IF pg_catalog.jsonb_typeof(v) <> 'number' THEN
		RAISE EXCEPTION 'option "%" must be a number, not %', opt, pg_catalog.jsonb_typeof(v)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = pg_catalog.format('Pass for example {"%s": %s}.', opt, dflt);
	END IF;
	n := v::text::numeric;
	IF n <> pg_catalog.trunc(n) OR n < lo OR n > hi THEN
		RAISE EXCEPTION 'option "%" must be a whole number between % and %, not %', opt, lo, hi, n
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN n::integer;
END
$$;

/*
 * Secrets
 */
CREATE FUNCTION retl._set_secret(name text, value text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	/* the entry (entry.c) keeps errors from logging the statement, which holds the value */
	PERFORM retl._require_admin(caller, 'set a secret');
	IF name IS NULL OR name !~ '^[A-Za-z0-9_.-]+$' THEN
		RAISE EXCEPTION 'invalid secret name "%"', name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Secret names use letters, digits, "_", "." and "-".';
	END IF;
	IF value IS NULL OR value = '' THEN
		RAISE EXCEPTION 'secret value must not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO retl.secrets AS s (name, value) VALUES ($1, $2)
	ON CONFLICT ON CONSTRAINT secrets_pkey
	DO UPDATE SET value = EXCLUDED.value, updated_at = pg_catalog.now();
END
$$;
CREATE FUNCTION retl_set_secret(name text, value text)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

CREATE FUNCTION retl._drop_secret(name text, caller regrole, caller_path text)
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
	 WHERE $1 = ANY (retl._secret_refs(d.headers)) OR d.signing_secret = $1;
	IF users IS NOT NULL THEN
		RAISE EXCEPTION 'secret "%" is used by destination %', $1, users
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'Drop or change those destinations first.';
	END IF;
	DELETE FROM retl.secrets s WHERE s.name = $1;
END
$$;
CREATE FUNCTION retl_drop_secret(name text)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

/*
 * Destinations
 */
CREATE FUNCTION retl._create_destination(name text, kind text, url text, options jsonb, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	opts jsonb := coalesce(options, '{}');
	hdrs jsonb;
	k text;
	v jsonb;
	missing text;
	retry_age interval;
BEGIN
	PERFORM retl._require_admin(caller, 'create a destination');
	IF name IS NULL OR name = '' THEN
		RAISE EXCEPTION 'destination name must not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF kind IS NULL OR kind NOT IN ('webhook') THEN
		RAISE EXCEPTION 'unknown destination kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Supported kinds: webhook.';
	END IF;
	IF url IS NULL OR url !~* '^https?://[^/?#\s]+' OR url ~ '\s' THEN
		RAISE EXCEPTION 'destination url must be an http:// or https:// URL, not "%"', url
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example https://example.com/hooks/customers.';
	END IF;
	/* the host: retl.allowed_hosts, and no private address written out */
	PERFORM retl._check_url(url);
	IF pg_catalog.jsonb_typeof(opts) <> 'object' THEN
		RAISE EXCEPTION 'destination options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k IN SELECT pg_catalog.jsonb_object_keys(opts) LOOP
		IF k NOT IN ('headers', 'timeout_ms', 'batch_size', 'max_attempts', 'max_retry_age',
					 'max_concurrency', 'rate_limit', 'linger_ms', 'max_batch_bytes',
					 'follow_redirects', 'tls_verify', 'signing_secret') THEN
			RAISE EXCEPTION 'unknown destination option "%"', k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Valid options: headers, timeout_ms, batch_size, max_batch_bytes, linger_ms, max_concurrency, rate_limit, max_attempts, max_retry_age, follow_redirects, tls_verify, signing_secret.';
		END IF;
	END LOOP;
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
		IF pg_catalog.lower(k) IN ('content-type', 'content-length', 'idempotency-key',
								   'webhook-id', 'webhook-timestamp', 'webhook-signature', 'host') THEN
			RAISE EXCEPTION 'header "%" is set by retl and cannot be overridden', k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	SELECT pg_catalog.string_agg(r, ', ') INTO missing
	  FROM pg_catalog.unnest(retl._secret_refs(hdrs)) AS r
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
			retl._int_option(opts, 'batch_size', 1, 1, 1000),
			retl._int_option(opts, 'max_attempts', 50, 1, 1000),
			coalesce(retry_age, interval '1 day'),
			retl._int_option(opts, 'max_concurrency', 8, 1, 256),
			coalesce((opts ->> 'rate_limit')::double precision, 0),
			retl._int_option(opts, 'linger_ms', 50, 0, 60000),
			retl._int_option(opts, 'max_batch_bytes', 1048576, 1024, 104857600),
			coalesce((opts ->> 'follow_redirects')::boolean, false),
			coalesce((opts ->> 'tls_verify')::boolean, true),
			opts ->> 'signing_secret',
			opts - 'headers');
END
$$;
CREATE FUNCTION retl_create_destination(name text, kind text, url text, options jsonb DEFAULT '{}')
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

CREATE FUNCTION retl._drop_destination(name text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	did integer;
	users text;
BEGIN
	PERFORM retl._require_admin(caller, 'drop a destination');
	SELECT d.id INTO did FROM retl.destinations d WHERE d.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'destination "%" does not exist', $1
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT pg_catalog.string_agg(s.name, ', ' ORDER BY s.name) INTO users
	  FROM retl.syncs s WHERE s.destination_id = did;
	IF users IS NOT NULL THEN
		RAISE EXCEPTION 'destination "%" is used by sync %', $1, users
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'Drop those syncs first with SELECT retl_drop_sync(name).';
	END IF;
	DELETE FROM retl.destinations d WHERE d.id = did;
END
$$;
CREATE FUNCTION retl_drop_destination(name text)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

/*
 * Which roles may send to a destination: create syncs to it, and have them
 * deliver.  A grant to a group role serves every role with its privileges.
 */
CREATE FUNCTION retl._grant_target(destination text, role name, OUT did integer, OUT grantee regrole)
LANGUAGE plpgsql AS $$
BEGIN
	/* grants to roles dropped since (retl refers to them by OID): gone */
	DELETE FROM retl.destination_grants g
	 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = g.grantee);
	SELECT d.id INTO did FROM retl.destinations d WHERE d.name = destination;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'destination "%" does not exist', destination
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT r.oid::regrole INTO grantee FROM pg_catalog.pg_roles r WHERE r.rolname = role;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'role "%" does not exist', role
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;

CREATE FUNCTION retl._grant_destination(destination text, role name, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	t record;
BEGIN
	PERFORM retl._require_admin(caller, 'grant a destination');
	SELECT * INTO t FROM retl._grant_target(destination, role);
	INSERT INTO retl.destination_grants (destination_id, grantee, granted_by)
	VALUES (t.did, t.grantee, caller)
	ON CONFLICT ON CONSTRAINT destination_grants_pkey DO NOTHING;
	IF NOT pg_has_role(t.grantee, 'retl_user'::name, 'USAGE') THEN
		RAISE NOTICE 'role "%" does not have the privileges of retl_user', role
			USING DETAIL = 'It cannot create syncs, nor can syncs it owns send, until it has.',
				  HINT = pg_catalog.format('GRANT retl_user TO %I;', role);
	END IF;
END
$$;
CREATE FUNCTION retl_grant_destination(destination text, role name)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

CREATE FUNCTION retl._revoke_destination(destination text, role name, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	t record;
	stopped text;
BEGIN
	PERFORM retl._require_admin(caller, 'revoke a destination');
	SELECT * INTO t FROM retl._grant_target(destination, role);
	DELETE FROM retl.destination_grants g
	 WHERE g.destination_id = t.did AND g.grantee = t.grantee;
	IF NOT FOUND THEN
		RAISE NOTICE 'role "%" had no grant of destination "%"', role, destination;
		RETURN;
	END IF;
	SELECT pg_catalog.string_agg(s.name, ', ' ORDER BY s.name) INTO stopped
	  FROM retl.syncs s
	 WHERE s.destination_id = t.did AND NOT retl._may_send(s.owner, t.did);
	IF stopped IS NOT NULL THEN
		RAISE NOTICE 'sync % can no longer send to destination "%"', stopped, destination
			USING DETAIL = 'Their changes wait, unsent, until the destination is granted again.',
				  HINT = 'Drop those syncs to discard what they hold.';
	END IF;
END
$$;
CREATE FUNCTION retl_revoke_destination(destination text, role name)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

/*
 * Syncs
 */
/*
 * The role that owns a sync or an audience (its query runs as it, its rows
 * are read as it): option "owner", which the caller must be a member of,
 * or the caller.
 */
CREATE FUNCTION retl._option_owner(opts jsonb, what text, caller regrole) RETURNS regrole
LANGUAGE plpgsql STABLE AS $$
DECLARE
	run_as regrole;
BEGIN
	IF NOT opts ? 'owner' THEN
		RETURN caller;
	END IF;
	IF pg_catalog.jsonb_typeof(opts -> 'owner') <> 'string'
	   OR pg_catalog.to_regrole(pg_catalog.quote_ident(opts ->> 'owner')) IS NULL THEN
		RAISE EXCEPTION 'option "owner" must name an existing role, not %', opts -> 'owner'
			USING ERRCODE = 'undefined_object';
	END IF;
	run_as := pg_catalog.to_regrole(pg_catalog.quote_ident(opts ->> 'owner'));
	IF NOT pg_catalog.pg_has_role(caller, run_as, 'MEMBER') THEN
		RAISE EXCEPTION 'only members of role "%" can create % that runs as it', opts ->> 'owner', what
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN run_as;
END
$$;

/* The primary key columns of a table, in key order; an error if it has none. */
CREATE FUNCTION retl._primary_key(relid oid, source text) RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
	keys text[];
BEGIN
	SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.ord)
	  INTO keys
	  FROM pg_catalog.pg_index i,
		   LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
	  JOIN pg_catalog.pg_attribute a ON a.attrelid = relid AND a.attnum = k.attnum
	 WHERE i.indrelid = relid AND i.indisprimary AND k.ord <= i.indnkeyatts;
	IF keys IS NULL THEN
		RAISE EXCEPTION 'table "%" has no primary key', source
			USING ERRCODE = 'invalid_table_definition',
				  HINT = 'Add a primary key, or name the key columns with key => ''{col}''.';
	END IF;
	RETURN keys;
END
$$;

/* Key columns of a query result: present, and each named once. */
CREATE FUNCTION retl._check_key(keys text[], cols text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	k text;
BEGIN
	FOR k IN SELECT u.c FROM pg_catalog.unnest(keys) u(c) LOOP
		IF k IS NULL OR NOT k = ANY (cols) THEN
			RAISE EXCEPTION 'key column "%" is not a column of the source', k
				USING ERRCODE = 'undefined_column',
					  HINT = pg_catalog.format('The source returns: %s.', pg_catalog.array_to_string(cols, ', '));
		END IF;
	END LOOP;
	IF (SELECT pg_catalog.count(DISTINCT u.c) FROM pg_catalog.unnest(keys) u(c)) <> pg_catalog.cardinality(keys) THEN
		RAISE EXCEPTION 'a key column is listed twice'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;

/*
 * The mapping of a sync: null, or {"source_column": "destination_field"}
 * naming columns of the source (cols).
 */
CREATE FUNCTION retl._check_mapping(mapping jsonb, cols text[], source text) RETURNS void
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
				  HINT = 'For example {"email": "email_address", "plan": "tier"}.';
	END IF;
	FOR k, v IN SELECT * FROM pg_catalog.jsonb_each(mapping) LOOP
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
 * Logical capture of a table by a sync: the database's slot exists (it is
 * created here with the first logical sync, before this transaction
 * writes anything: a slot cannot be created after), and the key is in the
 * table's replica identity, so deletes and key changes carry it.
 */
CREATE FUNCTION retl._logical_prepare(relid oid, attnums int2[], mode text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	sname text := retl._slot_name();
	ident "char";
	identcols int2[];
BEGIN
	IF pg_catalog.current_setting('wal_level') <> 'logical' THEN
		RAISE EXCEPTION 'logical capture needs wal_level = logical (it is %)',
			pg_catalog.current_setting('wal_level')
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Set wal_level = logical in postgresql.conf and restart the server, or use capture => ''trigger''.';
	END IF;
	/* some builds only let listed libraries decode (a security setting) */
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_settings g WHERE g.name = 'output_plugin_libraries')
	   AND NOT 'retl' = ANY (pg_catalog.string_to_array(
			pg_catalog.translate(pg_catalog.current_setting('output_plugin_libraries'), ' "', ''), ',')) THEN
		RAISE EXCEPTION 'logical capture needs retl in output_plugin_libraries (it is "%")',
			pg_catalog.current_setting('output_plugin_libraries')
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'ALTER SYSTEM SET output_plugin_libraries = ' ||
						 pg_catalog.current_setting('output_plugin_libraries') ||
						 ', retl; SELECT pg_reload_conf();  or use capture => ''trigger''.';
	END IF;
	IF mode <> 'append' THEN
		SELECT c.relreplident INTO ident FROM pg_catalog.pg_class c WHERE c.oid = relid;
		SELECT ARRAY(SELECT u.k FROM pg_catalog.unnest(i.indkey) WITH ORDINALITY AS u(k, n)
					  WHERE u.n <= i.indnkeyatts) INTO identcols
		  FROM pg_catalog.pg_index i
		 WHERE i.indrelid = relid
		   AND CASE ident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END;
		IF ident <> 'f' AND NOT coalesce(identcols OPERATOR(pg_catalog.@>) attnums, false) THEN
			RAISE EXCEPTION 'the key of a logical sync must be part of the replica identity of %', relid::regclass
				USING ERRCODE = 'invalid_table_definition',
					  DETAIL = 'Deletes and key changes are decoded with the replica identity''s columns only.',
					  HINT = pg_catalog.format('Key the sync by the primary key, or ALTER TABLE %s REPLICA IDENTITY FULL (or USING INDEX on a unique index of the key).', relid::regclass);
		END IF;
	END IF;
	/*
	 * Until this transaction commits, its sync is invisible to the worker,
	 * which drops the slot of a database without logical syncs unless it
	 * gets this lock (stream.c).
	 */
	PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('retl logical slot'));
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = sname) THEN
		BEGIN
			PERFORM pg_catalog.pg_create_logical_replication_slot(sname, 'retl');
		EXCEPTION
			WHEN configuration_limit_exceeded THEN
				RAISE EXCEPTION 'no replication slot is free for the logical capture of this database'
					USING ERRCODE = 'configuration_limit_exceeded', DETAIL = SQLERRM,
						  HINT = 'Raise max_replication_slots (a restart is needed) or drop a slot that is not used.';
			WHEN active_sql_transaction THEN
				RAISE EXCEPTION 'the first logical sync of a database must be created before its transaction writes anything'
					USING ERRCODE = 'active_sql_transaction', DETAIL = SQLERRM,
						  HINT = 'Its replication slot is created first, which a transaction that has written cannot do: run it in a transaction of its own.';
		END;
		INSERT INTO retl.stream_state (slot, staged_lsn) VALUES (sname, '0/0')
		ON CONFLICT ON CONSTRAINT stream_state_pkey DO UPDATE SET staged_lsn = '0/0', drain = false;
	ELSE
		INSERT INTO retl.stream_state (slot, staged_lsn) VALUES (sname, '0/0')
		ON CONFLICT ON CONSTRAINT stream_state_pkey DO NOTHING;
	END IF;
END
$$;

/*
 * Start capturing a table for a sync, by trigger or logically; with
 * writers locked out until commit, so that every change is captured by
 * exactly one of the two when a sync switches.
 */
CREATE FUNCTION retl._start_capture(sid integer, relid oid, attnums int2[], mode text, cap text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', relid::regclass);
	IF cap = 'logical' THEN
		INSERT INTO retl.logical_sources (relid, sync_id, append, key_attnums)
		VALUES (relid, sid, mode = 'append', attnums);
	ELSE
		EXECUTE pg_catalog.format(
			'CREATE TRIGGER %I AFTER INSERT%s ON %s FOR EACH ROW EXECUTE FUNCTION %s(%L, %L, %L)',
			'retl_capture_' || sid, CASE WHEN mode = 'append' THEN '' ELSE ' OR UPDATE OR DELETE' END,
			relid::regclass, pg_catalog.format('%I.retl_capture', '@extschema@'), sid,
			CASE WHEN mode = 'append' THEN 'append' ELSE 'upsert' END,
			pg_catalog.array_to_string(attnums, ','));
	END IF;
END
$$;

CREATE FUNCTION retl._create_sync(name text, source text, destination text, key text[], mode text, schedule text, mapping jsonb, options jsonb, capture text, caller regrole, caller_path text)
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
	FOR k IN SELECT pg_catalog.jsonb_object_keys(opts) LOOP
		IF k NOT IN ('backfill', 'after', 'owner') THEN
			RAISE EXCEPTION 'unknown sync option "%"', k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Valid options: backfill, after, owner.';
		END IF;
	END LOOP;
	run_as := retl._option_owner(opts, 'a sync', caller);
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
	/* the backfill and the rows sent are read as the owner: it must be able to */
	PERFORM retl._query_columns(pg_catalog.format('SELECT * FROM ONLY %s', relid::regclass), run_as, caller_path);
	/* an append sync sends rows as written: only an owner that sees them all may */
	IF mode = 'append' AND (
		SELECT c.relrowsecurity AND NOT r.rolsuper AND NOT r.rolbypassrls
			   AND NOT (pg_catalog.pg_has_role(r.oid, c.relowner, 'USAGE') AND NOT c.relforcerowsecurity)
		  FROM pg_catalog.pg_class c, pg_catalog.pg_roles r
		 WHERE c.oid = relid AND r.oid = run_as) THEN
		RAISE EXCEPTION 'row-level security of table % applies to role "%"', relid::regclass, run_as::text
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'An append sync sends rows as they were written, which only an owner that may read every row of the table may send.',
				  HINT = 'Use mode => ''upsert'' (rows are read as the owner), or a scheduled sync (its query runs as the owner).';
	END IF;
	/* before anything is written: it may create the replication slot */
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
				(SELECT pg_catalog.string_agg(pg_catalog.format('t.%I', c), ', ')
				   FROM pg_catalog.unnest(keys) c),
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
CREATE FUNCTION retl_create_sync(name text, source text, destination text, key text[] DEFAULT NULL, mode text DEFAULT 'upsert', schedule text DEFAULT 'realtime', mapping jsonb DEFAULT NULL, options jsonb DEFAULT '{}', capture text DEFAULT NULL)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

CREATE FUNCTION retl._drop_sync(name text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	sid integer := retl._own_sync(name, caller);
	relid oid;
	tg name;
	followers text;
BEGIN
	SELECT s.source_relid INTO relid FROM retl.syncs s WHERE s.id = sid FOR UPDATE;
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
	DELETE FROM retl.queue q WHERE q.sync_id = sid;
	DELETE FROM retl.snapshots sn WHERE sn.sync_id = sid;
	DELETE FROM retl.syncs s WHERE s.id = sid;
END
$$;
CREATE FUNCTION retl_drop_sync(name text)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

/*
 * Switch a realtime table sync between trigger and logical capture.  The
 * table's writers wait for this transaction: every change before it is
 * captured the old way, every change after it the new way.
 */
CREATE FUNCTION retl._alter_sync(name text, capture text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	sid integer := retl._own_sync($1, caller);
	s record;
BEGIN
	SELECT y.capture AS cap, y.source_relid AS relid, y.key_attnums AS attnums, y.mode
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
		RAISE EXCEPTION 'the source table of sync "%" was dropped', $1
			USING ERRCODE = 'undefined_table';
	END IF;
	IF capture = 'trigger' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = s.relid) = 'p' THEN
		RAISE EXCEPTION 'sync "%" reads a partitioned table, which trigger capture does not support', $1
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Keep it on logical capture.';
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
CREATE FUNCTION retl_alter_sync(name text, capture text DEFAULT NULL)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

CREATE FUNCTION retl._pause_sync(name text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	UPDATE retl.syncs s SET paused = true WHERE s.id = retl._own_sync($1, caller);
END
$$;
CREATE FUNCTION retl_pause_sync(name text)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

CREATE FUNCTION retl._resume_sync(name text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	UPDATE retl.syncs s SET paused = false WHERE s.id = retl._own_sync($1, caller);
	PERFORM retl._wake_worker();
END
$$;
CREATE FUNCTION retl_resume_sync(name text)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

/*
 * Ask the worker to run a diff sync once the calling transaction commits;
 * returns the run's id (see retl.runs).  Rolling back cancels the run.
 */
CREATE FUNCTION retl._run_sync(name text, caller regrole, caller_path text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	sid integer := retl._own_sync($1, caller);
	rid bigint;
BEGIN
	IF (SELECT s.capture FROM retl.syncs s WHERE s.id = sid) <> 'diff' THEN
		RAISE EXCEPTION 'sync "%" delivers changes in real time and has no runs', $1
			USING ERRCODE = 'wrong_object_type',
				  HINT = 'To send every row again, use SELECT retl_resync(name).';
	END IF;
	INSERT INTO retl.run_store (sync_id, why) VALUES (sid, 'manual') RETURNING id INTO rid;
	PERFORM retl._wake_worker();
	RETURN rid;
END
$$;
CREATE FUNCTION retl_run_sync(name text)
	RETURNS bigint AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

/*
 * Forget what was synced and send everything again, or (send => false)
 * record the current result as synced without sending it.
 */
CREATE FUNCTION retl._resync(sync text, send boolean, caller regrole, caller_path text)
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
		UPDATE retl.syncs s SET backfill_done = false, backfill_cursor = NULL
		 WHERE s.id = sid AND s.mode = 'upsert';
		IF NOT FOUND THEN
			RAISE EXCEPTION 'append sync "%" cannot be resynced', sync
				USING ERRCODE = 'wrong_object_type',
					  HINT = 'An append sync sends events; replay dead letters with retl_replay.';
		END IF;
		PERFORM retl._wake_worker();
		RETURN NULL;
	END IF;
	IF send THEN
		DELETE FROM retl.snapshots sn WHERE sn.sync_id = sid;
	END IF;
	INSERT INTO retl.run_store (sync_id, why, send) VALUES (sid, 'resync', send)
	RETURNING id INTO rid;
	PERFORM retl._wake_worker();
	RETURN rid;
END
$$;
CREATE FUNCTION retl_resync(sync text, send boolean DEFAULT true)
	RETURNS bigint AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

/*
 * Audiences
 */
CREATE FUNCTION retl._create_audience(name text, query text, key text[], schedule text, options jsonb, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	opts jsonb := coalesce(options, '{}');
	run_as regrole;
	cols text[];
	k text;
	sched text;
BEGIN
	IF name IS NULL OR name = '' THEN
		RAISE EXCEPTION 'audience name must not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT 1 FROM retl.audience_store a WHERE a.name = $1) THEN
		RAISE EXCEPTION 'audience "%" already exists', $1
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Drop it first with SELECT retl_drop_audience(name).';
	END IF;
	IF pg_catalog.jsonb_typeof(opts) <> 'object' THEN
		RAISE EXCEPTION 'audience options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k IN SELECT pg_catalog.jsonb_object_keys(opts) LOOP
		IF k NOT IN ('owner') THEN
			RAISE EXCEPTION 'unknown audience option "%"', k
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Valid options: owner.';
		END IF;
	END LOOP;
	run_as := retl._option_owner(opts, 'an audience', caller);
	IF query IS NULL OR query = '' OR NOT retl._source_is_query(query) THEN
		RAISE EXCEPTION 'an audience is defined by a query'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example SELECT id FROM customers WHERE ...';
	END IF;
	sched := retl._schedule_kind(schedule);
	IF sched = 'realtime' THEN
		RAISE EXCEPTION 'an audience is recomputed on a schedule, not in real time'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use an interval (''15 minutes''), a cron expression or ''manual''.';
	END IF;
	IF key IS NULL OR pg_catalog.cardinality(key) = 0 THEN
		RAISE EXCEPTION 'an audience needs key => ''{column}'''
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Name the column(s) of the query result that identify a member.';
	END IF;
	SELECT pg_catalog.array_agg(c.name) INTO cols FROM retl._query_columns(retl._query_text(query), run_as, caller_path) c;
	PERFORM retl._check_key(key, cols);
	INSERT INTO retl.audience_store (name, query, search_path, key_columns, schedule, owner,
									 next_refresh_at)
	VALUES ($1, retl._query_text(query), caller_path, key, schedule, run_as,
			CASE sched WHEN 'manual' THEN NULL
					   WHEN 'cron' THEN retl._next_run(schedule, pg_catalog.now())
					   ELSE pg_catalog.now() END);
	PERFORM retl._wake_worker();
END
$$;
CREATE FUNCTION retl_create_audience(name text, query text, key text[], schedule text DEFAULT '15 minutes', options jsonb DEFAULT '{}')
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

CREATE FUNCTION retl._refresh_audience(name text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	UPDATE retl.audience_store a SET next_refresh_at = pg_catalog.now()
	 WHERE a.id = retl._own_audience($1, caller);
	PERFORM retl._wake_worker();
END
$$;
CREATE FUNCTION retl_refresh_audience(name text)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

CREATE FUNCTION retl._drop_audience(name text, caller regrole, caller_path text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	users text;
BEGIN
	PERFORM retl._own_audience($1, caller);
	SELECT pg_catalog.string_agg(s.name, ', ' ORDER BY s.name) INTO users
	  FROM retl.syncs s WHERE s.source = 'audience:' || $1;
	IF users IS NOT NULL THEN
		RAISE EXCEPTION 'audience "%" is used by sync %', $1, users
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'Drop those syncs first with SELECT retl_drop_sync(name).';
	END IF;
	DELETE FROM retl.audience_store a WHERE a.name = $1;
END
$$;
CREATE FUNCTION retl_drop_audience(name text)
	RETURNS void AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

CREATE FUNCTION retl._replay(sync text, caller regrole, caller_path text)
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
	)
	INSERT INTO retl.queue (sync_id, op, key, data, rid, captured_at)
	SELECT sid,
		   /* a diff sync's queue carries the op; a trigger sync reads state */
		   CASE WHEN s.capture = 'diff' THEN
				CASE dead.op WHEN 'delete' THEN 'R'
							 WHEN 'insert' THEN CASE WHEN s.mode = 'append' THEN 'E' ELSE 'A' END
							 ELSE 'C' END
				ELSE 'r' END,
		   dead.raw_key, dead.raw_data, dead.rid, dead.captured_at
	  FROM dead, retl.syncs s WHERE s.id = sid ORDER BY dead.id;
	GET DIAGNOSTICS n = ROW_COUNT;
	UPDATE retl.sync_stats st SET consecutive_failures = 0 WHERE st.sync_id = sid;
	PERFORM retl._wake_worker();
	RETURN n;
END
$$;
CREATE FUNCTION retl_replay(sync text)
	RETURNS bigint AS 'MODULE_PATHNAME', 'retl_entry' LANGUAGE C;

/*
 * Functions: the retl_ entries to the roles that use them (each checks its
 * caller again); the implementations and helpers to nobody but the
 * extension's owner, except what the views and policies call.
 */
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA retl FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retl._may_see(regrole), retl._key_object(jsonb, text[]),
	retl._live_stats(), retl._slot_name() TO retl_user;
REVOKE ALL ON FUNCTION retl_capture() FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_set_secret(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_drop_secret(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_create_destination(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_drop_destination(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_grant_destination(text, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_revoke_destination(text, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retl_set_secret(text, text), retl_drop_secret(text),
	retl_create_destination(text, text, text, jsonb), retl_drop_destination(text),
	retl_grant_destination(text, name), retl_revoke_destination(text, name) TO retl_admin;
REVOKE ALL ON FUNCTION retl_create_sync(text, text, text, text[], text, text, jsonb, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_drop_sync(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_alter_sync(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_pause_sync(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_resume_sync(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_run_sync(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_resync(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_replay(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_preview(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_create_audience(text, text, text[], text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_refresh_audience(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retl_drop_audience(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	retl_create_sync(text, text, text, text[], text, text, jsonb, jsonb, text),
	retl_drop_sync(text), retl_alter_sync(text, text), retl_pause_sync(text),
	retl_resume_sync(text), retl_run_sync(text), retl_resync(text, boolean),
	retl_replay(text), retl_preview(text, integer),
	retl_create_audience(text, text, text[], text, jsonb), retl_refresh_audience(text),
	retl_drop_audience(text) TO retl_user;

/* Ask the launcher for this database's worker once CREATE EXTENSION commits. */
SELECT retl._start_worker();
