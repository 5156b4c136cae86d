--
-- hijack: the capture trigger (SECURITY DEFINER, running as the extension's
-- owner) cannot be made to call a writer's own functions or operators
-- through the writer's search_path; every name in what it runs is
-- schema-qualified.
--
\set SHOW_CONTEXT never

CREATE ROLE regress_retl_writer;
CREATE SCHEMA hostile;
GRANT USAGE, CREATE ON SCHEMA hostile TO regress_retl_writer;
CREATE TABLE hijack_t (id int PRIMARY KEY, v text);
GRANT INSERT, UPDATE, DELETE, TRUNCATE, SELECT ON hijack_t TO regress_retl_writer;
SELECT retl_create_destination('hijack_dst', 'webhook', 'http://127.0.0.1:9/h');
BEGIN;
SELECT retl_create_sync(name => 'hijack', source => 'hijack_t', destination => 'hijack_dst',
	mode => 'append');
SELECT retl_pause_sync('hijack');
SELECT retl_create_sync(name => 'hijack_up', source => 'hijack_t', destination => 'hijack_dst',
	options => '{"backfill": false}');
SELECT retl_pause_sync('hijack_up');
COMMIT;

SET ROLE regress_retl_writer;
-- look-alikes of everything the capture's statements use, first on the path
CREATE FUNCTION hostile.jsonb_build_array(int) RETURNS jsonb
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked: jsonb_build_array'; END $$;
CREATE FUNCTION hostile.to_jsonb(anyelement) RETURNS jsonb
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked: to_jsonb'; END $$;
CREATE FUNCTION hostile.now() RETURNS timestamptz
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked: now'; END $$;
CREATE FUNCTION hostile.nextval(regclass) RETURNS bigint
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked: nextval'; END $$;
CREATE FUNCTION hostile.int_eq(int, int) RETURNS boolean
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked: ='; END $$;
CREATE OPERATOR hostile.= (LEFTARG = int, RIGHTARG = int, FUNCTION = hostile.int_eq);
SET search_path = hostile, pg_catalog, public;
-- (unqualified names do reach them now)
SELECT jsonb_build_array(1);
SELECT 1 = 1;
SELECT now();
INSERT INTO public.hijack_t VALUES (1, 'one'), (2, 'two');
UPDATE public.hijack_t SET v = 'uno' WHERE id OPERATOR(pg_catalog.=) 1;
TRUNCATE public.hijack_t;
RESET search_path;
RESET ROLE;

-- captured as usual: the rows as inserted (append); inserts, the update and
-- TRUNCATE's keys (upsert)
SELECT s.name, q.op, q.key, q.data
  FROM retl.queue q JOIN retl.syncs s ON s.id = q.sync_id
 WHERE s.name LIKE 'hijack%' ORDER BY s.name, q.id;

SELECT retl_drop_sync('hijack');
SELECT retl_drop_sync('hijack_up');
SELECT retl_drop_destination('hijack_dst');
DROP TABLE hijack_t;
DROP SCHEMA hostile CASCADE;
DROP ROLE regress_retl_writer;
