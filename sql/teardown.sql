--
-- teardown: DROP EXTENSION with syncs in place, and CREATE EXTENSION again.
--
\set SHOW_CONTEXT never
-- the DETAIL of a refused DROP EXTENSION names triggers by sync id
\set VERBOSITY terse

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

SELECT retl_create_destination('teardown_dst', 'webhook', 'http://127.0.0.1:9/teardown');
CREATE TABLE teardown_src (id integer PRIMARY KEY);
BEGIN;
SELECT retl_create_sync('teardown_sync', 'teardown_src', 'teardown_dst');
SELECT retl_pause_sync('teardown_sync');
COMMIT;
INSERT INTO teardown_src VALUES (1);
-- (earlier files' syncs may still have rows on their way)
SELECT count(*) AS queued FROM retl.queue q JOIN retl.syncs s ON s.id = q.sync_id
 WHERE s.name = 'teardown_sync';
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'teardown_src'::regclass;

-- the capture triggers depend on the extension
DROP EXTENSION retl;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'teardown_src'::regclass;

DROP EXTENSION retl CASCADE;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'teardown_src'::regclass;
SELECT count(*) AS retl_schemas FROM pg_namespace WHERE nspname = 'retl';
SELECT count(*) AS retl_functions FROM pg_proc WHERE proname LIKE 'retl\_%';
-- the table is untouched and writable
INSERT INTO teardown_src VALUES (2);
SELECT id FROM teardown_src ORDER BY id;
-- the database's worker stops
SELECT pg_temp.wait_for_workers(0) AS workers;

-- and comes back with the extension, which starts empty
CREATE EXTENSION retl;
SELECT pg_temp.wait_for_workers(1) AS workers;
SELECT (SELECT count(*) FROM retl.instance) AS instance_rows,
       (SELECT count(*) FROM retl.secrets) AS secrets,
       (SELECT count(*) FROM retl.destinations) AS destinations,
       (SELECT count(*) FROM retl.syncs) AS syncs,
       (SELECT count(*) FROM retl.queue) AS queued;

DROP TABLE teardown_src;
