--
-- Audiences: tracked segments, their views, and syncs of them.
--
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE TABLE aud_customers (id integer PRIMARY KEY, spend numeric NOT NULL, region text NOT NULL);
INSERT INTO aud_customers SELECT g, g * 100, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END
  FROM generate_series(1, 10) g;
SELECT retl_create_destination('aud_dst', 'webhook', 'http://127.0.0.1:9/aud');

-- bad input: each fails and creates nothing
SELECT retl_create_audience(NULL, 'SELECT id FROM aud_customers', '{id}');
SELECT retl_create_audience('', 'SELECT id FROM aud_customers', '{id}');
SELECT retl_create_audience('a', 'aud_customers', '{id}');
SELECT retl_create_audience('a', NULL, '{id}');
SELECT retl_create_audience('a', 'DELETE FROM aud_customers', '{id}');
SELECT retl_create_audience('a', 'SELECT id FROM no_such_table', '{id}');
SELECT retl_create_audience('a', 'SELECT id FROM aud_customers', NULL);
SELECT retl_create_audience('a', 'SELECT id FROM aud_customers', '{}');
SELECT retl_create_audience('a', 'SELECT id FROM aud_customers', '{nope}');
SELECT retl_create_audience('a', 'SELECT id FROM aud_customers', '{id,id}');
SELECT retl_create_audience('a', 'SELECT id FROM aud_customers', '{id}', schedule => 'realtime');
SELECT retl_create_audience('a', 'SELECT id FROM aud_customers', '{id}', schedule => 'often');
SELECT retl_create_audience('a', 'SELECT id FROM aud_customers', '{id}', schedule => '99 * * * *');
SELECT retl_create_audience('a', 'SELECT id FROM aud_customers', '{id}', options => '[]');
SELECT retl_create_audience('a', 'SELECT id FROM aud_customers', '{id}', options => '{"color": 1}');
SELECT retl_create_audience('a', 'SELECT id FROM aud_customers', '{id}', options => '{"owner": "no_such_role"}');
SELECT count(*) FROM retl.audiences;

-- a manual audience: created, not refreshed until asked
SELECT retl_create_audience(name => 'big', query => 'SELECT id FROM aud_customers WHERE spend > 500;',
                            key => '{id}', schedule => 'manual');
SELECT retl_create_audience('big', 'SELECT id FROM aud_customers', '{id}');
SELECT audience, query, key_columns, schedule, members, last_refresh_at IS NULL AS never_refreshed,
       next_refresh_at IS NULL AS on_demand, last_error
  FROM retl.audiences;
-- scheduled audiences start at once
BEGIN;
SELECT retl_create_audience('hourly', 'SELECT id, region FROM aud_customers', '{id}', schedule => '1 hour');
SELECT audience, next_refresh_at <= now() AS due FROM retl.audiences WHERE audience = 'hourly';
ROLLBACK;

-- refresh: on demand, at commit
BEGIN;
SELECT retl_refresh_audience('big');
SELECT next_refresh_at IS NOT NULL AS due FROM retl.audiences WHERE audience = 'big';
ROLLBACK;
SELECT retl_refresh_audience('nope');
SELECT retl_refresh_audience(NULL);

-- syncs of an audience
SELECT retl_create_sync('aud_sync', 'audience:nope', 'aud_dst');
SELECT retl_create_sync('aud_sync', 'audience:big', 'aud_dst', key => '{other}');
SELECT retl_create_sync('aud_sync', 'audience:big', 'aud_dst', capture => 'trigger');
SELECT retl_create_sync('aud_sync', 'audience:big', 'aud_dst', mode => 'replace');
SELECT retl_create_sync('aud_sync', 'audience:big', 'aud_dst', mapping => '{"email": "e"}');
BEGIN;
SELECT retl_create_sync('aud_sync', 'audience:big', 'aud_dst', mode => 'mirror',
                        mapping => '{"id": "customer_id"}');
SELECT retl_pause_sync('aud_sync');
SELECT name, source, capture, query IS NULL AS no_query, source_relid IS NULL AS no_table,
       key_columns, mode, schedule, next_run_at IS NULL AS after_refreshes
  FROM retl.syncs WHERE name = 'aud_sync';
SELECT r.why, r.send, r.status FROM retl.run_store r JOIN retl.syncs s ON s.id = r.sync_id WHERE s.name = 'aud_sync';
-- an audience in use cannot be dropped
SAVEPOINT s;
SELECT retl_drop_audience('big');
ROLLBACK TO SAVEPOINT s;
ROLLBACK;

-- the views, empty until a refresh
SELECT * FROM retl.audience_members;
SELECT * FROM retl.audience_events;
-- keys are shown as objects named by the key columns
SELECT retl._key_object('[1, "x"]', '{id,region}');

-- drop
SELECT retl_drop_audience('nope');
SELECT retl_drop_audience('big');
SELECT count(*) FROM retl.audiences;
DROP TABLE aud_customers;
SELECT retl_drop_destination('aud_dst');
