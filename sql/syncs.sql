--
-- syncs: retl_create_sync, retl_drop_sync, retl_pause_sync,
-- retl_resume_sync and the capture trigger.
--
-- The worker delivers the queue of every sync that is not paused, so each
-- sync here is paused in the transaction that creates it (or never
-- committed): what the queue holds is then only what this file put there.
-- Sync ids come from a sequence, so they are never printed: queued rows are
-- shown with their sync's name, trigger names with N for the id.
--
\set SHOW_CONTEXT never

CREATE FUNCTION pg_temp.sqlstate_of(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;

-- the queue, oldest first
CREATE TEMP VIEW queued AS
SELECT s.name AS sync, q.op, q.key, q.data
  FROM retl.queue q LEFT JOIN retl.syncs s ON s.id = q.sync_id
 ORDER BY q.id;

-- retl's triggers on user tables, with the sync id replaced by N
CREATE TEMP VIEW capture_triggers AS
SELECT t.tgrelid::regclass AS tbl,
       regexp_replace(t.tgname, '\d+$', 'N') AS trigger,
       t.tgenabled AS enabled,
       regexp_replace(regexp_replace(pg_get_triggerdef(t.oid),
                      '(retl_(capture|truncate)_)\d+', '\1N'),
                      'retl_capture\(''\d+''', 'retl_capture(''N''') AS definition
  FROM pg_trigger t
 WHERE NOT t.tgisinternal AND t.tgname ~ '^retl_(capture|truncate)_\d+$'
 ORDER BY t.tgrelid::regclass::text COLLATE "C", 2, 4;

SELECT retl_create_destination('dst', 'webhook', 'http://127.0.0.1:9/syncs');
SELECT retl_create_destination('other_dst', 'webhook', 'http://127.0.0.1:9/other');

--
-- The sync functions on a name that is not a sync, while there are no
-- syncs at all.
--
SELECT count(*) AS syncs FROM retl.syncs;
SELECT retl_pause_sync('no_such_sync');
SELECT retl_resume_sync('no_such_sync');
SELECT retl_drop_sync('no_such_sync');
SELECT retl_replay('no_such_sync');

CREATE TABLE customers (
	id		integer PRIMARY KEY,
	email	text NOT NULL,
	plan	text,
	tags	text[] NOT NULL DEFAULT '{}',
	doc		jsonb NOT NULL DEFAULT '{}',
	js		json NOT NULL DEFAULT '{}',
	span	int4range NOT NULL DEFAULT '[1,2)'
);
INSERT INTO customers (id, email, plan) VALUES (1, 'a@example.com', 'free'), (2, 'b@example.com', 'pro');

-- composite primary key, declared in an order other than the columns'
CREATE TABLE orders (
	region	text,
	note	text,
	order_no integer,
	PRIMARY KEY (order_no, region)
);

CREATE TABLE no_pk (a integer NOT NULL, b integer, c text NOT NULL);
CREATE VIEW customers_view AS SELECT * FROM customers;
CREATE MATERIALIZED VIEW customers_mv AS SELECT id FROM customers;
CREATE SEQUENCE some_seq;
CREATE TYPE some_type AS (a integer);
CREATE TABLE parted (id integer PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
CREATE SCHEMA other;
CREATE TABLE other."Mixed Case" ("Id" integer PRIMARY KEY, v text);

--
-- Bad input, in the order retl_create_sync checks it.
--
-- name
SELECT retl_create_sync(NULL, 'customers', 'dst');
SELECT retl_create_sync('', 'customers', 'dst');
-- destination
SELECT retl_create_sync('s', 'customers', 'no_such_dst');
SELECT retl_create_sync('s', 'customers', NULL);
-- mode
SELECT retl_create_sync('s', 'customers', 'dst', mode => 'replace');
SELECT retl_create_sync('s', 'customers', 'dst', mode => 'UPSERT');
SELECT retl_create_sync('s', 'customers', 'dst', mode => NULL);
-- schedule
SELECT retl_create_sync('s', 'customers', 'dst', schedule => 'hourly');
SELECT retl_create_sync('s', 'customers', 'dst', schedule => '*/5 * * *');
SELECT retl_create_sync('s', 'customers', 'dst', schedule => '61 * * * *');
SELECT retl_create_sync('s', 'customers', 'dst', schedule => '*/5 * * * *', capture => 'trigger');
SELECT retl_create_sync('s', 'customers', 'dst', capture => 'diff');
SELECT retl_create_sync('s', 'customers', 'dst', capture => 'wal');
SELECT retl_create_sync('s', 'customers', 'dst', mode => 'mirror');
SELECT retl_create_sync('s', 'customers', 'dst', schedule => NULL);
-- options
SELECT retl_create_sync('s', 'customers', 'dst', options => '[]');
SELECT retl_create_sync('s', 'customers', 'dst', options => 'true');
SELECT retl_create_sync('s', 'customers', 'dst', options => '{"batch_size": 10}');
SELECT retl_create_sync('s', 'customers', 'dst', options => '{"Backfill": false}');
SELECT retl_create_sync('s', 'customers', 'dst', options => '{"backfill": "false"}');
SELECT retl_create_sync('s', 'customers', 'dst', options => '{"backfill": 0}');
SELECT retl_create_sync('s', 'customers', 'dst', options => '{"backfill": null}');
-- source
SELECT retl_create_sync('s', 'no_such_table', 'dst');
SELECT retl_create_sync('s', 'no_such_schema.customers', 'dst');
SELECT retl_create_sync('s', '"Customers"', 'dst');
SELECT retl_create_sync('s', 'not a name!', 'dst');
SELECT retl_create_sync('s', 'a.b.c.d', 'dst');
SELECT retl_create_sync('s', '', 'dst');
SELECT retl_create_sync('s', NULL, 'dst');
SELECT retl_create_sync('s', 'customers_view', 'dst');
SELECT retl_create_sync('s', 'customers_mv', 'dst');
SELECT retl_create_sync('s', 'some_seq', 'dst');
SELECT retl_create_sync('s', 'customers_pkey', 'dst');
SELECT retl_create_sync('s', 'some_type', 'dst');
SELECT retl_create_sync('s', 'parted', 'dst');
SELECT retl_create_sync('s', 'pg_class', 'dst', options => '{"backfill": false}');
-- key
SELECT retl_create_sync('s', 'no_pk', 'dst');
SELECT retl_create_sync('s', 'no_pk', 'dst', key => '{}');
SELECT retl_create_sync('s', 'no_pk', 'dst', key => '{nope}');
SELECT retl_create_sync('s', 'no_pk', 'dst', key => '{A}');
SELECT retl_create_sync('s', 'no_pk', 'dst', key => '{ctid}');
SELECT retl_create_sync('s', 'no_pk', 'dst', key => ARRAY[NULL]::text[]);
SELECT retl_create_sync('s', 'no_pk', 'dst', key => '{a,c,a}');
SELECT retl_create_sync('s', 'no_pk', 'dst', key => '{a,b}');
SELECT retl_create_sync('s', 'customers', 'dst', key => '{plan}');
SELECT retl_create_sync('s', 'customers', 'dst', key => '{tags}');
SELECT retl_create_sync('s', 'customers', 'dst', key => '{doc}');
SELECT retl_create_sync('s', 'customers', 'dst', key => '{js}');
SELECT retl_create_sync('s', 'customers', 'dst', key => '{span}');
-- upsert syncs find rows by key (=) and backfill in key order: a type
-- without equality or ordering, like point, cannot be their key
CREATE TABLE geo (p point NOT NULL, id integer NOT NULL);
SELECT retl_create_sync('geo_sync', 'geo', 'dst', key => '{p}');
-- (if it was accepted, drop it so that the rest of this file does not see it)
DO $$
BEGIN
	PERFORM retl_drop_sync(name) FROM retl.syncs WHERE name = 'geo_sync';
END
$$;
DROP TABLE geo;
-- mapping
SELECT retl_create_sync('s', 'customers', 'dst', mapping => '["email"]');
SELECT retl_create_sync('s', 'customers', 'dst', mapping => '"email"');
SELECT retl_create_sync('s', 'customers', 'dst', mapping => 'null');
SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{}');
SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{"email": "email", "nope": "x"}');
SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{"xmin": "x"}');
SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{"email": 1}');
SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{"email": null}');
SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{"email": ["a"]}');
SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{"email": ""}');
SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{"email": "contact", "plan": "contact"}');

-- none of that left anything behind
SELECT (SELECT count(*) FROM retl.syncs) AS syncs,
       (SELECT count(*) FROM retl.sync_stats) AS stats,
       (SELECT count(*) FROM retl.queue) AS queued;
SELECT * FROM capture_triggers;

--
-- An upsert sync (the default mode) on a table with a primary key.
--
BEGIN;
SELECT retl_create_sync('customers_sync', 'customers', 'dst');
SELECT retl_pause_sync('customers_sync');
COMMIT;

-- retl_alter_sync: errors change nothing; no capture given is a no-op
SELECT retl_alter_sync('no_such_sync', capture => 'logical');
SELECT retl_alter_sync('customers_sync', capture => 'diff');
SELECT retl_alter_sync('customers_sync', capture => 'wal');
SELECT retl_alter_sync('customers_sync');
SELECT retl_alter_sync('customers_sync', capture => 'trigger');
SELECT capture FROM retl.syncs WHERE name = 'customers_sync';

SELECT s.name, s.source, s.source_relid = 'customers'::regclass AS relid_ok,
       d.name AS destination, s.key_columns, s.key_attnums, s.mode, s.schedule,
       s.mapping, s.options, s.paused, s.backfill_done, s.backfill_cursor,
       s.owner = current_user::regrole AS owner_ok
  FROM retl.syncs s JOIN retl.destinations d ON d.id = s.destination_id;
SELECT s.name, st.delivered, st.failed_attempts, st.consecutive_failures,
       st.last_delivered_at, st.last_status, st.last_error, st.last_error_at
  FROM retl.sync_stats st JOIN retl.syncs s ON s.id = st.sync_id;
SELECT * FROM capture_triggers;
-- the trigger names carry the sync's id
SELECT count(*) AS named_by_id
  FROM pg_trigger t JOIN retl.syncs s ON t.tgname IN ('retl_capture_' || s.id, 'retl_truncate_' || s.id)
 WHERE s.name = 'customers_sync';

-- the existing rows are not queued here: the worker backfills them (it
-- does not while the sync is paused)
SELECT * FROM queued;

-- a second sync with the same name, on any table, is refused
SELECT retl_create_sync('customers_sync', 'orders', 'other_dst');

--
-- Capture in upsert mode: the key and the kind of change, no data.
--
INSERT INTO customers (id, email) VALUES (3, 'c@example.com');
UPDATE customers SET plan = 'team' WHERE id = 1;
-- a key change queues a delete of the old key and an update of the new one
UPDATE customers SET id = 10 WHERE id = 2;
DELETE FROM customers WHERE id = 3;
-- an update that changes nothing is still a change
UPDATE customers SET email = email WHERE id = 1;
SELECT * FROM queued;

-- a statement changing several rows queues one row per row changed;
-- INSERT ... ON CONFLICT queues what it did
UPDATE customers SET plan = 'x' WHERE id IN (1, 10);
INSERT INTO customers (id, email) VALUES (20, 'd@example.com')
    ON CONFLICT (id) DO NOTHING;
INSERT INTO customers (id, email) VALUES (20, 'e@example.com')
    ON CONFLICT (id) DO NOTHING;
INSERT INTO customers (id, email) VALUES (20, 'e@example.com')
    ON CONFLICT (id) DO UPDATE SET email = excluded.email;
SELECT * FROM queued;

-- a rolled back transaction queues nothing
SELECT count(*) AS before FROM retl.queue;
BEGIN;
INSERT INTO customers (id, email) VALUES (30, 'f@example.com');
UPDATE customers SET plan = 'y';
DELETE FROM customers WHERE id = 1;
SELECT count(*) AS inside FROM retl.queue;
ROLLBACK;
SELECT count(*) AS after FROM retl.queue;
-- and a rolled back subtransaction only its own changes
BEGIN;
INSERT INTO customers (id, email) VALUES (31, 'g@example.com');
SAVEPOINT sp;
INSERT INTO customers (id, email) VALUES (32, 'h@example.com');
ROLLBACK TO SAVEPOINT sp;
COMMIT;
SELECT * FROM queued WHERE key IN ('[31]', '[32]');

-- TRUNCATE queues every key the table had, as op 't'
SELECT id FROM customers ORDER BY id;
DELETE FROM retl.queue;
TRUNCATE customers;
SELECT sync, op, key FROM queued ORDER BY key;
-- a rolled back TRUNCATE queues nothing
INSERT INTO customers (id, email) VALUES (40, 'i@example.com');
DELETE FROM retl.queue;
BEGIN;
TRUNCATE customers;
ROLLBACK;
SELECT * FROM queued;

--
-- Capture by an ordinary role that may write to the table (but has no
-- privilege on schema retl).
--
CREATE ROLE regress_retl_app;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON customers TO regress_retl_app;
DELETE FROM retl.queue;
SET ROLE regress_retl_app;
INSERT INTO customers (id, email) VALUES (50, 'app@example.com');
UPDATE customers SET plan = 'app' WHERE id = 50;
DELETE FROM customers WHERE id = 50;
TRUNCATE customers;
RESET ROLE;
SELECT * FROM queued;
REVOKE ALL ON customers FROM regress_retl_app;
DROP ROLE regress_retl_app;

--
-- The trigger writes a queue row itself, without the executor, while
-- retl.queue is as it expects; the row is the one its INSERT would write,
-- defaults and all.  A queue it does not expect (a CHECK constraint, an
-- index on an expression, a trigger, a rule, an index other than a
-- B-tree) is written by that INSERT, which keeps them; a B-tree index on
-- columns is filled either way.
--
DELETE FROM retl.queue;
BEGIN;
INSERT INTO customers (id, email) VALUES (170, 'k@example.com');
SELECT s.name AS sync, q.op, q.key, q.data, q.rid, q.captured_at = now() AS captured_now,
       q.in_flight, q.attempts, q.next_attempt_at, q.first_attempt_at, q.last_attempt_at,
       q.last_status, q.last_error, q.id = currval('retl.queue_id_seq') AS id_from_sequence
  FROM retl.queue q JOIN retl.syncs s ON s.id = q.sync_id;
COMMIT;
-- its one index is the primary key: nothing else for a writer to insert
-- into (no index on the keys: queue/queued_keys.c)
SELECT pg_catalog.array_agg(i.indexrelid::pg_catalog.regclass) AS queue_indexes
  FROM pg_catalog.pg_index i WHERE i.indrelid = 'retl.queue'::pg_catalog.regclass;
-- a database created by an earlier build of 0.2 has an index of the
-- keys' hashes: a change's row gets its entry there too (the 'i' row of
-- key 170 had one when the index was built, its 'u' row now)
CREATE INDEX queue_sync_key_hash_idx ON retl.queue (sync_id, pg_catalog.jsonb_hash_extended(key, 0));
UPDATE customers SET plan = 'hashed' WHERE id = 170;
CREATE EXTENSION amcheck;
SELECT count(*) AS every_row_in_it
  FROM public.bt_index_check('retl.queue_sync_key_hash_idx'::pg_catalog.regclass, true);
DROP EXTENSION amcheck;
DROP INDEX retl.queue_sync_key_hash_idx;
DELETE FROM retl.queue q WHERE q.id = (SELECT pg_catalog.max(m.id) FROM retl.queue m);
ALTER TABLE retl.queue ADD CONSTRAINT regress_no_inserts CHECK (op <> 'i') NOT VALID;
SELECT pg_temp.sqlstate_of($$INSERT INTO customers (id, email) VALUES (171, 'l@example.com')$$) AS checked;
UPDATE customers SET plan = 'checked' WHERE id = 170;
ALTER TABLE retl.queue DROP CONSTRAINT regress_no_inserts;
CREATE INDEX regress_queue_key_text ON retl.queue ((key ->> 0));
CREATE INDEX regress_queue_captured ON retl.queue (captured_at, op);
INSERT INTO customers (id, email) VALUES (172, 'm@example.com');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM retl.queue WHERE key ->> 0 = '172';
SELECT count(*) AS in_expression_index FROM retl.queue WHERE key ->> 0 = '172';
RESET enable_seqscan;
DROP INDEX retl.regress_queue_key_text;
INSERT INTO customers (id, email) VALUES (173, 'n@example.com');
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM retl.queue WHERE captured_at > '-infinity' AND op = 'i';
SELECT count(*) AS in_index FROM retl.queue WHERE captured_at > '-infinity' AND op = 'i';
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT count(*) AS in_table FROM retl.queue WHERE op = 'i';
DROP INDEX retl.regress_queue_captured;
CREATE TABLE regress_queue_seen (key jsonb);
CREATE FUNCTION regress_queue_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_queue_seen VALUES (NEW.key);
	RETURN NULL;
END
$$;
CREATE TRIGGER regress_queue_seen AFTER INSERT ON retl.queue
	FOR EACH ROW EXECUTE FUNCTION regress_queue_seen();
INSERT INTO customers (id, email) VALUES (174, 'o@example.com');
DROP TRIGGER regress_queue_seen ON retl.queue;
CREATE RULE regress_queue_also AS ON INSERT TO retl.queue
	DO ALSO INSERT INTO regress_queue_seen VALUES (NEW.key);
INSERT INTO customers (id, email) VALUES (176, 'q@example.com');
DROP RULE regress_queue_also ON retl.queue;
CREATE INDEX regress_queue_gin ON retl.queue USING gin (key);
INSERT INTO customers (id, email) VALUES (177, 'r@example.com');
SET enable_seqscan = off;
SET enable_indexscan = off;
SET enable_indexonlyscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM retl.queue WHERE key @> '[177]';
SELECT count(*) AS in_gin_index FROM retl.queue WHERE key @> '[177]';
RESET enable_seqscan;
RESET enable_indexscan;
RESET enable_indexonlyscan;
DROP INDEX retl.regress_queue_gin;
INSERT INTO customers (id, email) VALUES (175, 'p@example.com');
SELECT * FROM regress_queue_seen;
DROP TABLE regress_queue_seen;
DROP FUNCTION regress_queue_seen();
SELECT sync, op, key FROM queued;
DELETE FROM customers WHERE id BETWEEN 170 AND 177;
DELETE FROM retl.queue;

--
-- Pause and resume.
--
SELECT name, paused FROM retl.syncs WHERE name = 'customers_sync';
BEGIN;
SELECT retl_resume_sync('customers_sync');
SELECT name, paused FROM retl.syncs WHERE name = 'customers_sync';
-- resuming a running sync changes nothing
SELECT retl_resume_sync('customers_sync');
SELECT name, paused FROM retl.syncs WHERE name = 'customers_sync';
SELECT retl_pause_sync('customers_sync');
SELECT name, paused FROM retl.syncs WHERE name = 'customers_sync';
-- nor does pausing a paused one
SELECT retl_pause_sync('customers_sync');
SELECT name, paused FROM retl.syncs WHERE name = 'customers_sync';
COMMIT;
-- a paused sync still captures
INSERT INTO customers (id, email) VALUES (60, 'j@example.com');
SELECT * FROM queued WHERE key = '[60]';

-- the sync functions on names that are not syncs
SELECT retl_pause_sync('no_such_sync');
SELECT retl_resume_sync('no_such_sync');
SELECT retl_drop_sync('no_such_sync');
SELECT retl_replay('no_such_sync');
SELECT retl_pause_sync('CUSTOMERS_SYNC');
SELECT retl_pause_sync(NULL);
SELECT retl_resume_sync(NULL);
SELECT retl_drop_sync(NULL);
SELECT retl_replay(NULL);

--
-- Composite primary key: key columns in primary key order, key arrays in
-- that order too.
--
BEGIN;
SELECT retl_create_sync('orders_sync', 'orders', 'other_dst', options => '{"backfill": false}');
SELECT retl_pause_sync('orders_sync');
COMMIT;
SELECT name, key_columns, key_attnums, backfill_done FROM retl.syncs WHERE name = 'orders_sync';
INSERT INTO orders VALUES ('eu', 'first', 1), ('us', 'second', 1);
UPDATE orders SET region = 'apac' WHERE region = 'us';
UPDATE orders SET note = 'n' WHERE order_no = 1 AND region = 'eu';
SELECT * FROM queued WHERE sync = 'orders_sync';

--
-- Explicit keys: any NOT NULL scalar columns, in the order given; an upsert
-- key must be unique (a unique constraint on exactly those columns).
--
SELECT retl_create_sync('no_pk_sync', 'no_pk', 'dst', key => '{c,a}');
CREATE UNIQUE INDEX no_pk_partial ON no_pk (a, c) WHERE b > 0;
SELECT retl_create_sync('no_pk_sync', 'no_pk', 'dst', key => '{c,a}');
CREATE UNIQUE INDEX no_pk_wider ON no_pk (a, c, b);
SELECT retl_create_sync('no_pk_sync', 'no_pk', 'dst', key => '{c,a}');
DROP INDEX no_pk_partial, no_pk_wider;
ALTER TABLE no_pk ADD CONSTRAINT no_pk_key UNIQUE (a, c);
BEGIN;
SELECT retl_create_sync('no_pk_sync', 'no_pk', 'dst', key => '{c,a}',
                        mapping => '{"a": "alpha", "c": "charlie"}');
SELECT retl_pause_sync('no_pk_sync');
COMMIT;
SELECT name, key_columns, key_attnums, mapping FROM retl.syncs WHERE name = 'no_pk_sync';
SELECT * FROM capture_triggers WHERE tbl = 'no_pk'::regclass;
INSERT INTO no_pk VALUES (1, NULL, 'one');
UPDATE no_pk SET b = 2;
UPDATE no_pk SET a = 2;
SELECT * FROM queued WHERE sync = 'no_pk_sync';

-- schema-qualified and quoted source names; the source is kept as given
BEGIN;
SELECT retl_create_sync('mixed_sync', 'other."Mixed Case"', 'dst');
SELECT retl_pause_sync('mixed_sync');
COMMIT;
SET search_path = other, public;
BEGIN;
SELECT retl_create_sync('mixed_sync_2', '"Mixed Case"', 'dst', key => '{Id}');
SELECT retl_pause_sync('mixed_sync_2');
COMMIT;
RESET search_path;
SELECT name, source, source_relid::regclass AS relation, key_columns
  FROM retl.syncs WHERE name LIKE 'mixed_sync%' ORDER BY name;
INSERT INTO other."Mixed Case" VALUES (7, 'seven');
SELECT * FROM queued WHERE sync LIKE 'mixed_sync%' ORDER BY sync;
SELECT retl_drop_sync('mixed_sync');
SELECT retl_drop_sync('mixed_sync_2');

-- a partition is an ordinary table
BEGIN;
SELECT retl_create_sync('partition_sync', 'parted_1', 'dst');
SELECT retl_pause_sync('partition_sync');
COMMIT;
SELECT name, key_columns FROM retl.syncs WHERE name = 'partition_sync';
INSERT INTO parted VALUES (5, 'five');
SELECT * FROM queued WHERE sync = 'partition_sync';
SELECT retl_drop_sync('partition_sync');

-- a temporary table cannot be synced: the worker cannot read another
-- session's temporary tables, and the table goes away with this session
CREATE TEMP TABLE temp_src (id integer PRIMARY KEY);
SELECT retl_create_sync('temp_sync', 'temp_src', 'dst');
-- (if it was accepted, drop it so that the rest of this file does not see it)
DO $$
BEGIN
	PERFORM retl_drop_sync(name) FROM retl.syncs WHERE name = 'temp_sync';
END
$$;
DROP TABLE temp_src;

--
-- Append mode: an INSERT-only trigger, rows queued with their data, and
-- the existing rows queued (op 'b') by retl_create_sync itself.
--
CREATE TABLE events (id integer PRIMARY KEY, kind text NOT NULL, payload jsonb);
INSERT INTO events VALUES (1, 'signup', '{"plan": "free"}'), (2, 'login', NULL);

BEGIN;
SELECT retl_create_sync('events_sync', 'events', 'dst', mode => 'append');
SELECT retl_pause_sync('events_sync');
-- the backfill is already queued, in the same transaction
SELECT * FROM queued WHERE sync = 'events_sync' ORDER BY key;
COMMIT;
SELECT name, mode, key_columns, backfill_done FROM retl.syncs WHERE name = 'events_sync';
SELECT * FROM capture_triggers WHERE tbl = 'events'::regclass;

INSERT INTO events VALUES (3, 'purchase', '{"amount": 9.5}');
-- updates, deletes and truncates are not events
UPDATE events SET kind = 'changed';
DELETE FROM events WHERE id = 1;
TRUNCATE events;
-- the same key can be inserted again: each insert is an event
INSERT INTO events VALUES (3, 'purchase', '{"amount": 1}');
-- a column added later is in the data of later events
ALTER TABLE events ADD COLUMN source text;
INSERT INTO events VALUES (4, 'login', NULL, 'mobile');
SELECT * FROM queued WHERE sync = 'events_sync';

-- append without backfill queues nothing at creation
BEGIN;
SELECT retl_create_sync('events_no_backfill', 'events', 'other_dst', mode => 'append',
                        options => '{"backfill": false}');
SELECT retl_pause_sync('events_no_backfill');
SELECT count(*) AS queued FROM retl.queue q JOIN retl.syncs s ON s.id = q.sync_id
 WHERE s.name = 'events_no_backfill';
ROLLBACK;

-- append with a key that is not unique (events of one customer)
CREATE TABLE clicks (customer integer NOT NULL, url text NOT NULL);
INSERT INTO clicks VALUES (1, '/a'), (1, '/b');
BEGIN;
SELECT retl_create_sync('clicks_sync', 'clicks', 'dst', mode => 'append', key => '{customer}');
SELECT retl_pause_sync('clicks_sync');
SELECT * FROM queued WHERE sync = 'clicks_sync' ORDER BY data->>'url';
ROLLBACK;

-- the append backfill, like the capture, covers the table itself, not
-- tables inheriting from it
CREATE TABLE parent_events (id integer PRIMARY KEY, v text NOT NULL);
CREATE TABLE child_events () INHERITS (parent_events);
INSERT INTO parent_events VALUES (1, 'parent row');
INSERT INTO child_events VALUES (2, 'child row');
BEGIN;
SELECT retl_create_sync('parent_sync', 'parent_events', 'dst', mode => 'append');
SELECT retl_pause_sync('parent_sync');
INSERT INTO child_events VALUES (3, 'not captured');
SELECT * FROM queued WHERE sync = 'parent_sync' ORDER BY key;
ROLLBACK;

--
-- Two syncs on one table each get their own triggers and queue rows.
--
BEGIN;
SELECT retl_create_sync('events_upsert', 'events', 'other_dst', options => '{"backfill": false}');
SELECT retl_pause_sync('events_upsert');
COMMIT;
SELECT * FROM capture_triggers WHERE tbl = 'events'::regclass;
DELETE FROM retl.queue;
INSERT INTO events VALUES (5, 'logout', NULL, 'web');
SELECT * FROM queued ORDER BY sync;

--
-- Drop: triggers and queued rows go, the statistics go, the table stays.
--
SELECT sync, count(*) FROM queued GROUP BY sync ORDER BY sync;
SELECT retl_drop_sync('events_upsert');
SELECT * FROM capture_triggers WHERE tbl = 'events'::regclass;
SELECT sync, count(*) FROM queued GROUP BY sync ORDER BY sync;
-- the remaining sync still captures
INSERT INTO events VALUES (6, 'signup', NULL, 'web');
SELECT sync, op, key FROM queued WHERE key = '[6]';

SELECT retl_drop_sync('events_sync');
SELECT retl_drop_sync('events_sync');
SELECT * FROM capture_triggers WHERE tbl = 'events'::regclass;
SELECT count(*) AS queued FROM retl.queue;
INSERT INTO events VALUES (7, 'signup', NULL, 'web');
SELECT count(*) AS queued FROM retl.queue;
SELECT count(*) AS events FROM events;

-- a sync whose table was dropped can still be dropped
DROP TABLE no_pk;
SELECT name FROM retl.syncs WHERE name = 'no_pk_sync';
SELECT retl_drop_sync('no_pk_sync');

-- drop in a rolled back transaction keeps everything
BEGIN;
SELECT retl_drop_sync('customers_sync');
SELECT * FROM capture_triggers;
ROLLBACK;
SELECT * FROM capture_triggers;

SELECT retl_drop_sync('customers_sync');
SELECT retl_drop_sync('orders_sync');
SELECT * FROM capture_triggers;
SELECT (SELECT count(*) FROM retl.syncs) AS syncs,
       (SELECT count(*) FROM retl.sync_stats) AS stats,
       (SELECT count(*) FROM retl.queue) AS queued;
-- the tables no longer capture
INSERT INTO customers (id, email) VALUES (70, 'k@example.com');
INSERT INTO orders VALUES ('eu', NULL, 70);
SELECT count(*) AS queued FROM retl.queue;

-- a name can be used again once dropped
BEGIN;
SELECT retl_create_sync('customers_sync', 'customers', 'dst');
SELECT retl_pause_sync('customers_sync');
SELECT name, paused FROM retl.syncs;
-- its table dropped, it cannot switch capture: the error its runs and
-- batches fail with
DROP TABLE customers CASCADE;
SELECT retl_alter_sync('customers_sync', capture => 'logical');
ROLLBACK;

-- with its syncs gone, the destinations can be dropped
SELECT retl_drop_destination('dst');
SELECT retl_drop_destination('other_dst');

--
-- The error codes.
--
SELECT retl_create_destination('dst', 'webhook', 'http://127.0.0.1:9/syncs');
BEGIN;
SELECT retl_create_sync('existing', 'customers', 'dst');
SELECT retl_pause_sync('existing');
SELECT stmt, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
	($$SELECT retl_create_sync('', 'customers', 'dst')$$),
	($$SELECT retl_create_sync('existing', 'customers', 'dst')$$),
	($$SELECT retl_create_sync('s', 'customers', 'no_such_dst')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', mode => 'replace')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', schedule => 'hourly')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', options => '[]')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', options => '{"x": 1}')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', options => '{"backfill": 1}')$$),
	($$SELECT retl_create_sync('s', '', 'dst')$$),
	($$SELECT retl_create_sync('s', 'no_such_table', 'dst')$$),
	($$SELECT retl_create_sync('s', 'customers_view', 'dst')$$),
	($$SELECT retl_create_sync('s', 'some_seq', 'dst')$$),
	($$SELECT retl_create_sync('s', 'parted', 'dst')$$),
	($$SELECT retl_create_sync('s', 'clicks', 'dst')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', key => '{}')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', key => '{nope}')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', key => '{id,id}')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', key => '{plan}')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', key => '{tags}')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{}')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{"nope": "x"}')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{"email": 1}')$$),
	($$SELECT retl_create_sync('s', 'customers', 'dst', mapping => '{"email": "x", "plan": "x"}')$$),
	($$SELECT retl_pause_sync('no_such_sync')$$),
	($$SELECT retl_resume_sync('no_such_sync')$$),
	($$SELECT retl_drop_sync('no_such_sync')$$),
	($$SELECT retl_replay('no_such_sync')$$),
	($$SELECT retl_pause_sync(NULL)$$)
  ) v(stmt);
ROLLBACK;
SELECT retl_drop_destination('dst');

DROP VIEW customers_view;
DROP MATERIALIZED VIEW customers_mv;
DROP TABLE customers, orders, events, clicks, parent_events, child_events,
	parted, other."Mixed Case";
DROP SEQUENCE some_seq;
DROP TYPE some_type;
DROP SCHEMA other;
SELECT (SELECT count(*) FROM retl.syncs) AS syncs,
       (SELECT count(*) FROM retl.destinations) AS destinations,
       (SELECT count(*) FROM retl.queue) AS queued;
