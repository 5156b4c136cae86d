--
-- setup: CREATE EXTENSION retl and check what it installs.
--
-- Later tests (secrets, destinations, syncs, status) use the extension
-- created here.  Nothing in this file depends on the sequence values, the
-- random instance id or the name of the user running the tests.
--
\set SHOW_CONTEXT never

CREATE EXTENSION retl;

SELECT extname, extversion, extrelocatable, extnamespace::regnamespace AS schema
  FROM pg_extension WHERE extname = 'retl';

-- a second CREATE EXTENSION is refused; IF NOT EXISTS is a no-op
CREATE EXTENSION retl;
CREATE EXTENSION IF NOT EXISTS retl;

-- every object that belongs to the extension
SELECT pg_describe_object(classid, objid, objsubid) AS member
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'retl')
   AND deptype = 'e'
 ORDER BY pg_describe_object(classid, objid, objsubid) COLLATE "C";

-- the catalog: tables and views of schema retl with their columns
SELECT c.relname, c.relkind,
       string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) AS columns
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'retl'::regnamespace AND c.relkind IN ('r', 'v')
 GROUP BY c.relname, c.relkind
 ORDER BY 1;

-- the SQL surface: signatures, defaults and results
SELECT p.oid::regprocedure AS function,
       pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'retl')
   AND d.deptype = 'e'
 ORDER BY p.proname, pg_get_function_identity_arguments(p.oid) COLLATE "C",
          p.oid::regprocedure::text COLLATE "C";

-- configuration kept by pg_dump (queued work and statistics are not)
SELECT cfg::regclass AS dumped, cond
  FROM pg_extension e,
       unnest(e.extconfig, e.extcondition) AS x(cfg, cond)
 WHERE e.extname = 'retl'
 ORDER BY cfg::regclass::text COLLATE "C";

-- the instance id: exactly one row of 12 hex digits
SELECT count(*) AS rows, bool_and(id ~ '^[0-9a-f]{12}$') AS well_formed
  FROM retl.instance;

-- nothing configured yet
SELECT (SELECT count(*) FROM retl.secrets) AS secrets,
       (SELECT count(*) FROM retl.destinations) AS destinations,
       (SELECT count(*) FROM retl.syncs) AS syncs,
       (SELECT count(*) FROM retl.queue) AS queued,
       (SELECT count(*) FROM retl.dead_letter_store) AS dead;

--
-- Privileges: PUBLIC (so any ordinary role) gets nothing.
--
CREATE ROLE regress_retl_nobody;

SELECT has_schema_privilege('regress_retl_nobody', 'retl', 'USAGE') AS schema_usage,
       has_schema_privilege('regress_retl_nobody', 'retl', 'CREATE') AS schema_create;

SELECT c.oid::regclass AS relation, c.relkind,
       CASE WHEN c.relkind = 'S'
            THEN has_sequence_privilege('regress_retl_nobody', c.oid, 'USAGE, SELECT, UPDATE')
            ELSE has_table_privilege('regress_retl_nobody', c.oid,
                                     'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
       END AS any_privilege
  FROM pg_class c
 WHERE c.relnamespace = 'retl'::regnamespace AND c.relkind IN ('r', 'v', 'S')
 ORDER BY c.relkind, c.relname;

-- the user-facing functions and the C entry points are not executable by PUBLIC
SELECT p.oid::regprocedure AS function,
       has_function_privilege('regress_retl_nobody', p.oid, 'EXECUTE') AS can_execute
  FROM pg_proc p
 WHERE p.proname LIKE 'retl\_%' AND p.pronamespace = 'public'::regnamespace
    OR p.pronamespace = 'retl'::regnamespace AND p.proname IN ('_wake_worker', '_start_worker')
 ORDER BY p.oid::regprocedure::text COLLATE "C";

-- and the role really cannot use any of it
SET ROLE regress_retl_nobody;
SELECT * FROM retl.secrets;
SELECT * FROM retl.sync_status;
SELECT * FROM retl.dead_letters;
SELECT retl._secret_refs('{}');
SELECT retl_set_secret('token', 'value');
SELECT retl_drop_secret('token');
SELECT retl_create_destination('d', 'webhook', 'http://127.0.0.1:9/');
SELECT retl_drop_destination('d');
SELECT retl_create_sync('s', 'pg_class', 'd');
SELECT retl_drop_sync('s');
SELECT retl_pause_sync('s');
SELECT retl_resume_sync('s');
SELECT retl_replay('s');
RESET ROLE;

DROP ROLE regress_retl_nobody;

--
-- Configuration parameters.
--
SELECT name, setting, unit, context
  FROM pg_settings WHERE name LIKE 'retl.%' ORDER BY name COLLATE "C";
-- retl.run_history's description gives both forms it takes, a count and an age
\x on
SELECT short_desc, extra_desc FROM pg_settings WHERE name = 'retl.run_history';
\x off

-- server-wide parameters cannot be set in a session
SET retl.poll_interval_ms = 100;
-- the prefix is reserved: a misspelt parameter is an error
SET retl.pol_interval_ms = 100;

--
-- The background workers: the launcher, and this database's worker, which
-- CREATE EXTENSION asked for.
--
CREATE FUNCTION pg_temp.wait_for_workers(n integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	c bigint;
BEGIN
	FOR i IN 1 .. 600 LOOP
		PERFORM pg_stat_clear_snapshot();
		SELECT count(*) INTO c FROM pg_stat_activity
		 WHERE backend_type = 'retl worker' AND datname = current_database();
		EXIT WHEN c = n;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN c;
END
$$;
SELECT pg_temp.wait_for_workers(1) AS workers;
SELECT count(*) AS launchers FROM pg_stat_activity WHERE backend_type = 'retl launcher';
