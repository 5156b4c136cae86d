--
-- diff: scheduled ("diff") syncs of tables and queries: how a source is
-- told apart, schedules and cron expressions, retl_run_sync, retl_resync,
-- retl_preview, the "after" and "owner" options, retl.runs and the new
-- columns of retl.sync_status.
--
-- The worker runs queued runs and due schedules of syncs that are not
-- paused.  So the syncs that outlive a transaction here are manual (never
-- due) or paused, and runs are only queued inside transactions that are
-- rolled back: what is printed is only what this file did.  Ids, the
-- instance id and times other than fixed ones are never printed.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- the error of a statement, without the internal query it happened in
CREATE FUNCTION pg_temp.error_of(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

SELECT retl_create_destination('diff_dst', 'webhook', 'http://127.0.0.1:9/diff');

CREATE TABLE diff_people (
	id		integer PRIMARY KEY,
	name	text NOT NULL,
	team	text
);
INSERT INTO diff_people VALUES (1, 'ann', 'red'), (2, 'bob', 'blue'), (3, 'cy', NULL);
CREATE TABLE diff_no_pk (a integer, b text);

-- syncs of this file with what the worker would act on
CREATE TEMP VIEW diff_syncs AS
SELECT s.name, s.source, s.source_relid::regclass AS relation, s.query,
       s.capture, s.key_columns, s.key_attnums, s.mode, s.schedule,
       s.mapping, s.options, s.paused, s.backfill_done,
       s.next_run_at IS NOT NULL AS has_next_run
  FROM retl.syncs s ORDER BY s.name;

--
-- Sources: PostgreSQL's parser tells a table name from a query.
--
-- names
SELECT retl._source_is_query('diff_people');
SELECT retl._source_is_query('public.diff_people');
SELECT retl._source_is_query('"Mixed Case"');
-- queries
SELECT retl._source_is_query('SELECT id, name FROM diff_people');
SELECT retl._source_is_query('WITH t AS (SELECT 1 AS id) SELECT id FROM t');
SELECT retl._source_is_query('VALUES (1, ''one''), (2, ''two'')');
SELECT retl._source_is_query('TABLE diff_people');
SELECT retl._source_is_query('SELECT id FROM diff_people;');
SELECT retl._source_is_query('SELECT id FROM diff_people ; ');
SELECT retl._source_is_query('SELECT id FROM diff_people; -- all of them');
-- neither
SELECT retl._source_is_query('SELECT 1; SELECT 2');
SELECT retl._source_is_query('INSERT INTO diff_people VALUES (4, ''dee'')');
SELECT retl._source_is_query('UPDATE diff_people SET team = NULL');
SELECT retl._source_is_query('DELETE FROM diff_people');
SELECT retl._source_is_query('not a name!');
SELECT retl._source_is_query('SELECT id FROM diff_people WHERE');
SELECT retl._source_is_query('SELEC id FROM diff_people');
SELECT retl._source_is_query(';');
SELECT retl._source_is_query(NULL) IS NULL AS strict;

-- the same through retl_create_sync
SELECT retl_create_sync('s', 'SELECT 1 AS id; SELECT 2 AS id', 'diff_dst', key => '{id}', schedule => 'manual');
SELECT retl_create_sync('s', 'INSERT INTO diff_people VALUES (4, ''dee'') RETURNING id', 'diff_dst', key => '{id}', schedule => 'manual');
SELECT retl_create_sync('s', 'UPDATE diff_people SET team = NULL RETURNING id', 'diff_dst', key => '{id}', schedule => 'manual');
SELECT retl_create_sync('s', 'DELETE FROM diff_people RETURNING id', 'diff_dst', key => '{id}', schedule => 'manual');
SELECT retl_create_sync('s', 'not a name!', 'diff_dst', schedule => 'manual');
SELECT retl_create_sync('s', 'SELECT id FROM diff_people WHERE', 'diff_dst', key => '{id}', schedule => 'manual');
SELECT retl_create_sync('s', '', 'diff_dst', schedule => 'manual');
SELECT retl_create_sync('s', NULL, 'diff_dst', schedule => 'manual');
-- SELECT INTO creates a table
SELECT retl_create_sync('s', 'SELECT id INTO diff_copy FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual');
-- a data-modifying WITH is parsed as a SELECT, but cannot be a source either
SELECT retl_create_sync('s', 'WITH d AS (DELETE FROM diff_people RETURNING id) SELECT id FROM d', 'diff_dst', key => '{id}', schedule => 'manual');
SELECT count(*) AS people FROM diff_people;

--
-- Query syncs: bad input.
--
-- a query has no primary key: key is required
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', schedule => 'manual');
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{}', schedule => 'manual');
-- key columns must be columns of the result
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{team}', schedule => 'manual');
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{ID}', schedule => 'manual');
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => ARRAY[NULL]::text[], schedule => 'manual');
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id,name,id}', schedule => 'manual');
-- the result's columns need distinct names
SELECT retl_create_sync('s', 'SELECT id, name, team AS name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual');
SELECT retl_create_sync('s', 'SELECT id, 1, 2 FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual');
-- the query is planned at creation: its errors show there
SELECT retl_create_sync('s', 'SELECT id FROM no_such_table', 'diff_dst', key => '{id}', schedule => 'manual');
SELECT retl_create_sync('s', 'SELECT nope FROM diff_people', 'diff_dst', key => '{nope}', schedule => 'manual');
-- mapping names columns of the result
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', mapping => '{"team": "squad"}');
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', mapping => '{"name": 1}');
-- modes
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', mode => 'replace');
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', mode => 'Mirror');
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', mode => NULL);
-- a query is not captured by a trigger, nor in real time
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', capture => 'trigger');
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', capture => 'trigger');
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'realtime');
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}');
SELECT retl_create_sync('s', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', capture => 'logical');

-- none of that left anything behind
SELECT (SELECT count(*) FROM retl.syncs) AS syncs,
       (SELECT count(*) FROM retl.sync_stats) AS stats,
       (SELECT count(*) FROM retl.run_store) AS runs;

--
-- Query syncs: every kind of query and every mode.
--
BEGIN;
SELECT retl_create_sync('q_select', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual');
SELECT retl_create_sync('q_with', 'WITH t AS (SELECT id, name FROM diff_people) SELECT * FROM t', 'diff_dst', key => '{id}', schedule => 'manual', mode => 'insert');
SELECT retl_create_sync('q_values', 'VALUES (1, ''one''), (2, ''two'')', 'diff_dst', key => '{column1}', schedule => 'manual', mode => 'update');
SELECT retl_create_sync('q_table', 'TABLE diff_people', 'diff_dst', key => '{id}', schedule => 'manual', mode => 'mirror');
SELECT retl_create_sync('q_semicolon', 'SELECT id, team FROM diff_people;', 'diff_dst', key => '{id}', schedule => 'manual', mode => 'append');
SELECT retl_create_sync('q_composite', 'SELECT name, id, team FROM diff_people', 'diff_dst', key => '{name,id}', schedule => 'manual',
                        mapping => '{"id": "person_id", "team": "squad"}');
SELECT * FROM diff_syncs;
-- no capture trigger for any of them
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'diff_people'::regclass;
-- nor any run
SELECT count(*) AS runs FROM retl.run_store;
ROLLBACK;

-- a trailing semicolon after which there is only a comment is still one query
BEGIN;
SELECT retl_create_sync('q_comment', 'SELECT id FROM diff_people; -- all of them', 'diff_dst', key => '{id}', schedule => 'manual');
SELECT name, query FROM retl.syncs;
SELECT count(*) AS rows FROM retl_preview('q_comment');
ROLLBACK;

-- the columns of a query, as the role it will run as
SELECT * FROM retl._query_columns('SELECT id, name AS who, 1.5 AS x, NULL::date AS d FROM diff_people', current_user::regrole, current_setting('search_path'));
SELECT * FROM retl._query_columns('VALUES (1, ''one'');', current_user::regrole, current_setting('search_path'));
SELECT * FROM retl._query_columns('SELECT id FROM no_such_table', current_user::regrole, current_setting('search_path'));

--
-- Schedules.
--
-- bad ones
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => 'hourly');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '@hourly');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '500 milliseconds');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '0 seconds');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '-15 minutes');
-- bounded: the next run must remain a timestamp
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '1000000 years');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '2 years');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '367 days');
SELECT retl_create_audience('a', 'SELECT id FROM diff_people', '{id}', schedule => '178000000 years');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => NULL);
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => 'Manual');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '*/15 * * *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '*/15 * * * * *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '60 * * * *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '0 24 * * *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '0 0 0 * *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '0 0 32 * *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '0 0 * 0 *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '0 0 * 13 *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '0 0 * * 8');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '*/0 * * * *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '5-1 * * * *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => 'x * * * *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '1,2, * * * *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '0 0 * * MONDAY');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '0 0 * * fri-mon');
-- a valid expression that never fires
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '0 0 30 2 *');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '0 0 31 4,6,9,11 *');
-- realtime is trigger capture, and trigger capture is realtime
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', capture => 'diff');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '15 minutes', capture => 'trigger');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => 'manual', capture => 'trigger');
-- insert, update and mirror are for diff syncs
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', mode => 'mirror');

SELECT retl._schedule_kind(s) AS kind, s AS schedule
  FROM unnest(ARRAY['realtime', 'manual', '30 seconds', '1 second', '15 minutes', '1 day',
                    '1 day 12 hours', '1 year', '366 days', '*/15 * * * *', '0 9 * * 1-5', ' 0  9 * * * ']) s;

-- good ones: intervals, manual and cron expressions (next_run_at checked
-- in the creating transaction, where now() does not move)
BEGIN;
SELECT retl_create_sync('every_30s', 'diff_people', 'diff_dst', schedule => '30 seconds');
SELECT retl_create_sync('every_15m', 'diff_people', 'diff_dst', schedule => '15 minutes');
SELECT retl_create_sync('every_day', 'diff_people', 'diff_dst', schedule => '1 day');
SELECT retl_create_sync('on_demand', 'diff_people', 'diff_dst', schedule => 'manual');
SELECT retl_create_sync('cron_15m', 'diff_people', 'diff_dst', schedule => '*/15 * * * *');
SELECT retl_create_sync('cron_weekdays', 'diff_people', 'diff_dst', schedule => '0 9 * * 1-5');
SELECT retl_create_sync('cron_months', 'diff_people', 'diff_dst', schedule => '0 0 1 jan,jul *');
SELECT retl_create_sync('cron_leap', 'diff_people', 'diff_dst', schedule => '0 0 29 2 *');
SELECT name, schedule, capture, next_run_at IS NOT NULL AS has_next_run,
       CASE WHEN retl._schedule_kind(schedule) = 'cron'
            THEN next_run_at > now() AND next_run_at = retl._cron_next(schedule, now()) END AS cron_next_ok
  FROM retl.syncs ORDER BY name;
ROLLBACK;

--
-- retl._cron_next, at fixed times (UTC).
--
SELECT e AS expr, a AS after, retl._cron_next(e, a) AS next
  FROM (VALUES
	('*/15 * * * *', timestamptz '2026-11-21 10:07:00+00'),
	('*/15 * * * *', '2026-11-21 10:15:00+00'),	-- strictly after
	('*/15 * * * *', '2026-11-21 10:14:59.999999+00'),
	('*/15 * * * *', '2026-11-21 23:59:00+00'),
	('* * * * *', '2026-12-31 23:59:30+00'),
	('0-30/10 * * * *', '2026-11-21 10:25:00+00'),
	('5,10,50 * * * *', '2026-11-21 10:10:00+00'),
	-- weekdays at 9: after a Friday 10:00 comes Monday
	('0 9 * * 1-5', '2026-11-20 10:00:00+00'),
	('0 9 * * 1-5', '2026-11-20 08:00:00+00'),
	('0 9 * * mon-fri', '2026-11-21 10:00:00+00'),
	('0 9 * * MON', '2026-11-21 10:00:00+00'),
	-- Sunday is 0, 7 or sun
	('0 0 * * 0', '2026-11-21 10:00:00+00'),
	('0 0 * * 7', '2026-11-21 10:00:00+00'),
	('0 0 * * Sun', '2026-11-21 10:00:00+00'),
	('0 0 * * 5-7', '2026-11-21 10:00:00+00'),
	('0 0 * * sun-sat', '2026-11-21 10:00:00+00'),
	-- leap days
	('0 0 29 2 *', '2026-03-01 00:00:00+00'),
	('0 0 29 2 *', '2028-02-29 00:00:00+00'),
	('0 0 29 2 *', '2097-03-01 00:00:00+00'),	-- 2100 is not a leap year
	-- both day fields restricted: either matches (the 1st, or a Monday)
	('0 0 1 * 1', '2026-11-21 10:00:00+00'),
	('0 0 1 * 1', '2026-11-23 10:00:00+00'),
	('0 0 1 * 1', '2026-11-30 10:00:00+00'),
	-- one day field restricted: only it counts
	('0 0 1 * *', '2026-11-21 10:00:00+00'),
	('0 0 * * 1', '2026-11-21 10:00:00+00'),
	-- month names, any case
	('0 0 1 jan,jul *', '2026-11-21 10:00:00+00'),
	('0 0 1 JAN,Jul *', '2027-01-01 00:00:00+00'),
	('0 0 1 jan-mar *', '2027-03-01 00:00:00+00'),
	('30 23 31 12 *', '2026-12-31 23:30:00+00'),
	-- times before 2000 (negative internally)
	('*/15 * * * *', '1999-12-31 23:59:30+00'),
	('30 8 * * *', '1970-01-01 07:59:00+00')
  ) v(e, a);
-- an hour to skip before 2000
SELECT retl._cron_next('0 8 * * *', '1999-06-01 07:30:00+00');
-- a range of day names ending on Sunday (7)
SELECT retl._cron_next('0 0 * * fri-sun', '2026-11-21 10:00:00+00');
-- cron is UTC whatever the session's time zone
SET timezone = 'America/New_York';
SELECT retl._cron_next('0 9 * * *', '2026-11-21 10:00:00+00') = '2026-11-22 09:00:00+00' AS utc;
SET timezone = 'UTC';
-- errors
SELECT retl._cron_next('0 0 30 2 *', '2026-01-01 00:00:00+00');
SELECT retl._cron_next('* * * *', '2026-01-01 00:00:00+00');
SELECT retl._cron_next('@hourly', '2026-01-01 00:00:00+00');
SELECT retl._cron_next('0 0 * * 1', 'infinity');
SELECT retl._cron_next(NULL, '2026-01-01 00:00:00+00') IS NULL AS strict;
-- retl._next_run
SELECT s AS schedule, retl._next_run(s, '2026-11-21 10:07:00+00') AS next
  FROM unnest(ARRAY['realtime', 'manual', '15 minutes', '1 day', '*/15 * * * *']) s;

--
-- A table on a schedule is diffed, not captured by a trigger.
--
SELECT retl_create_sync('s', 'diff_no_pk', 'diff_dst', schedule => '15 minutes');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '15 minutes', key => '{nope}');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '15 minutes', key => '{id,id}');
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => '15 minutes', mapping => '{"nope": "x"}');
SELECT retl_create_sync('s', 'no_such_table', 'diff_dst', schedule => '15 minutes');
BEGIN;
SELECT retl_create_sync('people_15m', 'diff_people', 'diff_dst', schedule => '15 minutes');
SELECT retl_pause_sync('people_15m');
SELECT retl_create_sync('no_pk_15m', 'diff_no_pk', 'diff_dst', schedule => '15 minutes', key => '{a}', mode => 'mirror');
SELECT retl_pause_sync('no_pk_15m');
COMMIT;
SELECT * FROM diff_syncs;
SELECT count(*) AS triggers FROM pg_trigger
 WHERE tgrelid IN ('diff_people'::regclass, 'diff_no_pk'::regclass);
-- and writes to the table queue nothing
INSERT INTO diff_people VALUES (4, 'dee', 'red');
DELETE FROM diff_people WHERE id = 4;
SELECT count(*) AS queued FROM retl.queue;
SELECT sync, state, mode, pending, backfilling, schedule,
       last_run_at, next_run_at IS NOT NULL AS has_next_run, last_run_status
  FROM retl.sync_status ORDER BY sync;
SELECT retl_drop_sync('people_15m');
SELECT retl_drop_sync('no_pk_15m');

--
-- retl_run_sync
--
BEGIN;
SELECT retl_create_sync('people_manual', 'SELECT id, name, team FROM diff_people', 'diff_dst',
                        key => '{id}', schedule => 'manual');
SELECT retl_create_sync('people_rt', 'diff_people', 'diff_dst', options => '{"backfill": false}');
SELECT retl_pause_sync('people_rt');
CREATE TABLE diff_events (id integer PRIMARY KEY, what text);
SELECT retl_create_sync('events_rt', 'diff_events', 'diff_dst', mode => 'append');
SELECT retl_pause_sync('events_rt');
COMMIT;
SELECT * FROM diff_syncs;

-- a run is queued by the calling transaction: rolling back cancels it
BEGIN;
SELECT retl_run_sync('people_manual') IS NOT NULL AS run_id;
SELECT sync, why, status, started_at, finished_at, rows, added, changed, removed, error,
       requested_at = now() AS requested_now
  FROM retl.runs;
SELECT r.send FROM retl.run_store r;
-- queued runs do not count as the last run
SELECT sync, schedule, last_run_at, next_run_at, last_run_status
  FROM retl.sync_status WHERE sync = 'people_manual';
-- a second request is a second run
SELECT retl_run_sync('people_manual') IS NOT NULL AS run_id;
SELECT sync, why, status FROM retl.runs ORDER BY id;
-- the id returned is the run's
SELECT retl_run_sync('people_manual') AS run_id \gset
SELECT :run_id = max(id) AS same_id, count(*) FILTER (WHERE id = :run_id) AS runs_with_id
  FROM retl.run_store;
ROLLBACK;
SELECT count(*) AS runs FROM retl.runs;

-- only diff syncs have runs
SELECT retl_run_sync('people_rt');
SELECT retl_run_sync('events_rt');
SELECT retl_run_sync('no_such_sync');
SELECT retl_run_sync(NULL);

--
-- retl_resync
--
-- a diff sync: forget the snapshot and run; with send => false keep it and
-- only rebuild it
INSERT INTO retl.snapshot_edits (sync_id, key, hash)
SELECT id, '[1]', 1 FROM retl.syncs WHERE name = 'people_manual';
BEGIN;
SELECT retl_resync('people_manual') IS NOT NULL AS run_id;
SELECT sync, why, status FROM retl.runs;
SELECT r.why, r.send FROM retl.run_store r;
SELECT count(*) AS snapshot_rows FROM retl.snapshots;
ROLLBACK;
BEGIN;
SELECT retl_resync('people_manual', send => false) IS NOT NULL AS run_id;
SELECT sync, why, status FROM retl.runs;
SELECT r.why, r.send FROM retl.run_store r;
SELECT count(*) AS snapshot_rows FROM retl.snapshots;
ROLLBACK;
SELECT count(*) AS runs FROM retl.run_store;

-- retl.snapshots: a sync's snapshot as its next run sees it, its chunks
-- (deltas after the whole) with the edits applied oldest first (a key forgotten, set, of 0.1: no
-- hash); a chunk that is not one of retl's fails, naming it
BEGIN;
INSERT INTO retl.snapshot_edits (sync_id, key, hash, legacy_hash)
SELECT s.id, v.k, v.h, v.l FROM retl.syncs s,
  (VALUES ('[2]'::jsonb, 6::bigint, NULL), ('[1]', NULL, NULL), ('[3]', 7, NULL), ('[4]', NULL, 'md5'),
          ('[3]', 8, NULL)) v(k, h, l)
 WHERE s.name = 'people_manual';
SELECT sn.key, sn.hash FROM retl.snapshots sn ORDER BY sn.key;
SAVEPOINT s;
INSERT INTO retl.snapshot_chunks (sync_id, chunk, keys, int_keys, lo, hi, data)
SELECT id, 0, 1, true, 0, 4294967295, '\x5253316900'::bytea FROM retl.syncs WHERE name = 'people_manual';
SELECT count(*) FROM retl.snapshots;
ROLLBACK TO s;
INSERT INTO retl.snapshot_chunks (sync_id, chunk, keys, int_keys, lo, hi, data)
SELECT id, 0, 1, true, 0, 4294967295, '\x52533169' || '\x0700000000000000'::bytea || '\x0900000000000000'::bytea
  FROM retl.syncs WHERE name = 'people_manual';
SELECT sn.key, sn.hash FROM retl.snapshots sn ORDER BY sn.key;
-- deltas, read after the whole snapshot, oldest first: key 7 removed and
-- key 11 added, then key 7 back with another hash
INSERT INTO retl.snapshot_chunks (sync_id, chunk, keys, int_keys, lo, hi, data, delta)
SELECT id, 1, 2, true, 0, 4294967295, '\x52533149' || '\x0700000000000000'::bytea || '\x0000000000000000'::bytea || '\x72'::bytea
         || '\x0b00000000000000'::bytea || '\x0c00000000000000'::bytea || '\x75'::bytea, true
  FROM retl.syncs WHERE name = 'people_manual';
SELECT sn.key, sn.hash FROM retl.snapshots sn ORDER BY sn.key;
INSERT INTO retl.snapshot_chunks (sync_id, chunk, keys, int_keys, lo, hi, data, delta)
SELECT id, 2, 1, true, 0, 4294967295, '\x52533149' || '\x0700000000000000'::bytea || '\x0d00000000000000'::bytea || '\x75'::bytea, true
  FROM retl.syncs WHERE name = 'people_manual';
SELECT sn.key, sn.hash FROM retl.snapshots sn ORDER BY sn.key;
-- a delta's entry that is neither, a chunk whose kind is not its row's
SAVEPOINT s;
INSERT INTO retl.snapshot_chunks (sync_id, chunk, keys, int_keys, lo, hi, data, delta)
SELECT id, 3, 1, true, 0, 4294967295, '\x52533149' || '\x0700000000000000'::bytea || '\x0d00000000000000'::bytea || '\x78'::bytea, true
  FROM retl.syncs WHERE name = 'people_manual';
SELECT count(*) FROM retl.snapshots;
ROLLBACK TO s;
INSERT INTO retl.snapshot_chunks (sync_id, chunk, keys, int_keys, lo, hi, data, delta)
SELECT id, 3, 1, true, 0, 4294967295, '\x52533169' || '\x0700000000000000'::bytea || '\x0d00000000000000'::bytea, true
  FROM retl.syncs WHERE name = 'people_manual';
SELECT count(*) FROM retl.snapshots;
ROLLBACK TO s;
-- a whole snapshot in compact chunks ('k'): keys 7, 5, 300 and -1 as
-- the differences from the key before (zigzag varints 0e, 03, ce04, d904),
-- each with its hash; a varint cut short, one longer than 64 bits, a hash
-- cut short fail
SAVEPOINT k;
DELETE FROM retl.snapshot_chunks WHERE sync_id = (SELECT id FROM retl.syncs WHERE name = 'people_manual');
INSERT INTO retl.snapshot_chunks (sync_id, chunk, keys, int_keys, lo, hi, data)
SELECT id, 0, 4, true, 0, 4294967295, '\x5253316b' || '\x0e'::bytea || '\x0900000000000000'::bytea
         || '\x03'::bytea || '\x0a00000000000000'::bytea || '\xce04'::bytea || '\x0b00000000000000'::bytea
         || '\xd904'::bytea || '\x0c00000000000000'::bytea
  FROM retl.syncs WHERE name = 'people_manual';
SELECT sn.key, sn.hash FROM retl.snapshots sn ORDER BY sn.key;
SAVEPOINT s;
UPDATE retl.snapshot_chunks SET keys = 1, data = '\x5253316bce'::bytea;
SELECT count(*) FROM retl.snapshots;
ROLLBACK TO s;
UPDATE retl.snapshot_chunks SET keys = 1, data = '\x5253316bffffffffffffffffff02' || '\x0900000000000000'::bytea;
SELECT count(*) FROM retl.snapshots;
ROLLBACK TO s;
UPDATE retl.snapshot_chunks SET keys = 1, data = '\x5253316b0e09000000'::bytea;
SELECT count(*) FROM retl.snapshots;
ROLLBACK TO k;
-- a member of retl_admin reads it (the tables are the extension's)
CREATE ROLE diff_admin IN ROLE retl_admin;
SET ROLE diff_admin;
SELECT count(*) FROM retl.snapshots;
SAVEPOINT t;
SELECT count(*) FROM retl.snapshot_chunks;
ROLLBACK TO t;
RESET ROLE;
-- a resync forgets every key: an edit, applied after those before it
SELECT retl_resync('people_manual') IS NOT NULL AS run_id;
INSERT INTO retl.snapshot_edits (sync_id, key, hash)
SELECT id, '[9]', 10 FROM retl.syncs WHERE name = 'people_manual';
SELECT sn.key, sn.hash FROM retl.snapshots sn ORDER BY sn.key;
ROLLBACK;
SELECT retl_resync('people_manual', send => NULL);
-- a realtime upsert sync: backfill again, no run
BEGIN;
SELECT retl_resync('people_rt') IS NULL AS no_run;
SELECT name, backfill_done, backfill_cursor FROM retl.syncs WHERE name = 'people_rt';
SELECT count(*) AS runs FROM retl.run_store;
ROLLBACK;
SELECT retl_resync('people_rt', send => false);
-- a realtime append sync
SELECT retl_resync('events_rt');
SELECT retl_resync('events_rt', send => false);
SELECT retl_resync('no_such_sync');
SELECT retl_resync(NULL);

-- a diff sync created without backfill starts with a run that only records
-- the snapshot
BEGIN;
SELECT retl_create_sync('no_backfill', 'SELECT id FROM diff_people', 'diff_dst', key => '{id}',
                        schedule => 'manual', options => '{"backfill": false}');
SELECT sync, why, status FROM retl.runs;
SELECT r.why, r.send FROM retl.run_store r;
ROLLBACK;

--
-- retl_preview: what the first run would send.
--
DELETE FROM retl.snapshot_edits;
SELECT * FROM retl_preview('people_manual');
SELECT * FROM retl_preview('people_manual', 2);
SELECT * FROM retl_preview('people_manual', 0);
SELECT * FROM retl_preview('people_manual', n => NULL);
SELECT * FROM retl_preview('people_manual', -1);
SELECT * FROM retl_preview(NULL);
SELECT * FROM retl_preview('no_such_sync');
SELECT * FROM retl_preview('people_rt');
SELECT * FROM retl_preview('events_rt');
-- it changes nothing
SELECT (SELECT count(*) FROM retl.snapshots) AS snapshot_rows,
       (SELECT count(*) FROM retl.queue) AS queued,
       (SELECT count(*) FROM retl.run_store) AS runs,
       to_regclass('pg_temp.retl_run_rows') AS run_rows;

-- every mode, and a mapping
BEGIN;
SELECT retl_create_sync('p_insert', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', mode => 'insert');
SELECT retl_create_sync('p_update', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', mode => 'update');
SELECT retl_create_sync('p_upsert', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', mode => 'upsert');
SELECT retl_create_sync('p_mirror', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', mode => 'mirror');
SELECT retl_create_sync('p_append', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual', mode => 'append');
SELECT retl_create_sync('p_mapped', 'SELECT id, name, team FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        mapping => '{"id": "person_id", "name": "full_name"}');
SELECT retl_create_sync('p_table', 'diff_people', 'diff_dst', schedule => 'manual', mode => 'mirror');
SELECT retl_create_sync('p_composite', 'SELECT team, id, name FROM diff_people WHERE team IS NOT NULL', 'diff_dst',
                        key => '{team,id}', schedule => 'manual', mapping => '{"team": "squad", "id": "id"}');
COMMIT;
SELECT * FROM retl_preview('p_insert');
-- update sends only changes of keys already synced: none yet
SELECT * FROM retl_preview('p_update');
SELECT * FROM retl_preview('p_upsert');
SELECT * FROM retl_preview('p_mirror');
SELECT * FROM retl_preview('p_append');
SELECT * FROM retl_preview('p_append', 1);
SELECT * FROM retl_preview('p_mapped');
SELECT * FROM retl_preview('p_table');
SELECT * FROM retl_preview('p_composite');
-- a column named q (the source's alias) is a column, not the row; a
-- computed field written over q and reading a column named op
SELECT retl_create_sync('p_names', 'SELECT id, name AS q, team AS op FROM diff_people', 'diff_dst',
                        key => '{id}', schedule => 'manual');
SELECT * FROM retl_preview('p_names');
SELECT retl_create_sync('p_computed', 'SELECT id, name, team AS op FROM diff_people', 'diff_dst',
                        key => '{id}', schedule => 'manual',
                        mapping => $${"id": "id", "label": {"sql": "upper(q.name) || '/' || coalesce(op, '-')"}}$$);
SELECT * FROM retl_preview('p_computed');
SELECT retl_drop_sync('p_names');
SELECT retl_drop_sync('p_computed');

-- a previous run of retl 0.1, simulated (the md5 of each row's JSON): key 1
-- changed since (hash ''), key 2 unchanged, key 99 gone from the result
INSERT INTO retl.snapshot_edits (sync_id, key, legacy_hash)
SELECT s.id, v.key, v.hash
  FROM retl.syncs s,
       (VALUES ('[1]'::jsonb, ''), ('[2]', md5('{"id": 2, "name": "bob"}')), ('[99]', 'x')) v(key, hash)
 WHERE s.name IN ('p_insert', 'p_update', 'p_upsert', 'p_mirror', 'p_append');
SELECT * FROM retl_preview('p_insert');
SELECT * FROM retl_preview('p_update');
SELECT * FROM retl_preview('p_upsert');
SELECT * FROM retl_preview('p_mirror');
SELECT * FROM retl_preview('p_mirror', 2);
-- append sends every row of every run
SELECT * FROM retl_preview('p_append');
-- the snapshot is as it was
SELECT s.name, sn.key, sn.legacy_hash = '' AS empty_hash, sn.hash
  FROM retl.snapshot_edits sn JOIN retl.syncs s ON s.id = sn.sync_id
 WHERE s.name = 'p_mirror' ORDER BY sn.key;
SELECT (SELECT count(*) FROM retl.queue) AS queued,
       (SELECT count(*) FROM retl.run_store) AS runs;

-- a preview in a transaction sees the transaction's rows, and leaves no
-- temporary table behind
BEGIN;
INSERT INTO diff_people VALUES (5, 'eve', 'blue');
UPDATE diff_people SET name = 'robert' WHERE id = 2;
SELECT * FROM retl_preview('p_mirror');
SELECT * FROM retl_preview('p_mirror');
SELECT to_regclass('pg_temp.retl_run_rows') AS run_rows, to_regclass('pg_temp.retl_run_diff') AS run_diff,
       to_regclass('pg_temp.retl_run_snap') AS run_snap;
ROLLBACK;

-- NULL and duplicate keys: the result is refused, with a sample key
BEGIN;
SELECT retl_create_sync('null_key', 'SELECT team, name FROM diff_people', 'diff_dst', key => '{team}', schedule => 'manual');
SELECT retl_create_sync('null_key_2', 'SELECT id, team, name FROM diff_people', 'diff_dst', key => '{id,team}', schedule => 'manual');
SELECT retl_create_sync('dup_key', 'SELECT 1 AS k, name FROM diff_people', 'diff_dst', key => '{k}', schedule => 'manual');
SELECT retl_create_sync('null_key_table', 'diff_people', 'diff_dst', key => '{team}', schedule => 'manual');
SELECT retl_create_sync('dup_key_2', 'SELECT 1 AS k, name FROM diff_people WHERE id <= 2', 'diff_dst', key => '{k}', schedule => 'manual');
SELECT retl_create_sync('null_int_key', 'SELECT NULLIF(id, 2) AS id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual');
COMMIT;
SELECT * FROM retl_preview('null_int_key');
SELECT retl_drop_sync('null_int_key');
SELECT * FROM retl_preview('null_key');
SELECT * FROM retl_preview('null_key_2');
SELECT * FROM retl_preview('dup_key');
SELECT * FROM retl_preview('null_key_table');
-- the snapshot holds key 1 with ann's row: bob's is the only one the diff
-- shows, the count of rows read shows the duplicate
INSERT INTO retl.snapshot_edits (sync_id, key, hash)
SELECT id, '[1]', retl._row_hash(ROW(1, 'ann'::text)) FROM retl.syncs WHERE name = 'dup_key_2';
SELECT * FROM retl_preview('dup_key_2');
-- the error does not stop the transaction from going on past a savepoint
BEGIN;
SAVEPOINT sp;
SELECT * FROM retl_preview('dup_key');
ROLLBACK TO SAVEPOINT sp;
SELECT count(*) AS rows FROM retl_preview('people_manual');
COMMIT;
SELECT retl_drop_sync('null_key');
SELECT retl_drop_sync('null_key_2');
SELECT retl_drop_sync('dup_key');
SELECT retl_drop_sync('null_key_table');
SELECT retl_drop_sync('dup_key_2');

-- a source table dropped under a sync
CREATE TABLE diff_gone (id integer PRIMARY KEY);
SELECT retl_create_sync('gone', 'diff_gone', 'diff_dst', schedule => 'manual');
SELECT retl_create_sync('gone_query', 'SELECT id FROM diff_gone', 'diff_dst', key => '{id}', schedule => 'manual');
DROP TABLE diff_gone;
SELECT * FROM retl_preview('gone');
SELECT pg_temp.error_of($$SELECT * FROM retl_preview('gone_query')$$);
SELECT retl_drop_sync('gone');
SELECT retl_drop_sync('gone_query');

--
-- Option "after": runs after another sync's successful runs.
--
SELECT retl_create_sync('s', 'SELECT id FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        options => '{"after": "no_such_sync"}');
SELECT retl_create_sync('s', 'SELECT id FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        options => '{"after": 1}');
SELECT retl_create_sync('s', 'SELECT id FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        options => '{"after": null}');
SELECT retl_create_sync('s', 'SELECT id FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        options => '{"after": ["people_manual"]}');
SELECT retl_create_sync('s', 'SELECT id FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        options => '{"after": "PEOPLE_MANUAL"}');
SELECT retl_create_sync('s', 'SELECT id FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        options => '{"before": "people_manual"}');
BEGIN;
SELECT retl_create_sync('chained', 'SELECT id FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        options => '{"after": "people_manual"}');
SELECT name, schedule, options, next_run_at FROM retl.syncs WHERE name = 'chained';
ROLLBACK;

--
-- Option "owner": the role the query runs as, checked at creation.
--
CREATE ROLE regress_retl_diff_reader IN ROLE retl_user;
SELECT retl_grant_destination('diff_dst', 'regress_retl_diff_reader');
SELECT retl_create_sync('s', 'SELECT id FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        options => '{"owner": "no_such_role"}');
SELECT retl_create_sync('s', 'SELECT id FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        options => '{"owner": 1}');
-- the role may not read the table
SELECT retl_create_sync('s', 'SELECT id FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        options => '{"owner": "regress_retl_diff_reader"}');
BEGIN;
SELECT retl_create_sync('s', 'diff_people', 'diff_dst', schedule => 'manual',
                        options => '{"owner": "regress_retl_diff_reader"}');
ROLLBACK;
GRANT SELECT ON diff_people TO regress_retl_diff_reader;
BEGIN;
SELECT retl_create_sync('as_reader', 'SELECT id, name FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual',
                        options => '{"owner": "regress_retl_diff_reader"}');
SELECT name, owner, options FROM retl.syncs WHERE name = 'as_reader';
SELECT * FROM retl_preview('as_reader');
-- previews and runs use the role's rights as they are then
REVOKE SELECT ON diff_people FROM regress_retl_diff_reader;
SELECT * FROM retl_preview('as_reader');
ROLLBACK;
REVOKE SELECT ON diff_people FROM regress_retl_diff_reader;
SELECT retl_revoke_destination('diff_dst', 'regress_retl_diff_reader');
DROP ROLE regress_retl_diff_reader;

--
-- retl.runs and retl.sync_status.
--
SELECT c.relname AS view,
       string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) AS columns
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.oid IN ('retl.runs'::regclass, 'retl.sync_status'::regclass)
 GROUP BY c.relname ORDER BY 1;

SELECT sync, destination, state, mode, pending, in_flight, delivered, backfilling,
       schedule, last_run_at, next_run_at, last_run_status
  FROM retl.sync_status ORDER BY sync;

-- finished runs, simulated (the worker leaves runs that are not queued alone)
BEGIN;
INSERT INTO retl.run_store (sync_id, why, status, requested_at, started_at, finished_at, rows, added, changed, removed)
SELECT id, 'manual', 'succeeded', '2026-11-21 10:00:00+00', '2026-11-21 10:00:01+00', '2026-11-21 10:00:02+00', 3, 3, 0, 0
  FROM retl.syncs WHERE name = 'people_manual';
INSERT INTO retl.run_store (sync_id, why, status, requested_at, started_at, finished_at, error)
SELECT id, 'schedule', 'failed', '2026-11-21 11:00:00+00', '2026-11-21 11:00:01+00', '2026-11-21 11:00:02+00', 'boom'
  FROM retl.syncs WHERE name = 'people_manual';
SELECT sync, why, status, requested_at, started_at, finished_at, rows, added, changed, removed, error
  FROM retl.runs ORDER BY id;
SELECT sync, schedule, last_run_at, next_run_at, last_run_status
  FROM retl.sync_status WHERE sync = 'people_manual';
-- a queued run after them does not hide the last one
SELECT retl_run_sync('people_manual') IS NOT NULL AS run_id;
SELECT sync, schedule, last_run_at, next_run_at, last_run_status
  FROM retl.sync_status WHERE sync = 'people_manual';
ROLLBACK;

--
-- Dropping a diff sync drops its snapshot and its runs.
--
INSERT INTO retl.run_store (sync_id, why, status, started_at, finished_at)
SELECT id, 'manual', 'succeeded', '2026-11-21 10:00:01+00', '2026-11-21 10:00:02+00'
  FROM retl.syncs WHERE name IN ('p_mirror', 'p_upsert');
SELECT s.name, count(*) AS snapshot_rows
  FROM retl.snapshots sn JOIN retl.syncs s ON s.id = sn.sync_id GROUP BY s.name ORDER BY s.name;
SELECT sync, count(*) AS runs FROM retl.runs GROUP BY sync ORDER BY sync;
SELECT retl_drop_sync('p_mirror');
SELECT s.name, count(*) AS snapshot_rows
  FROM retl.snapshots sn JOIN retl.syncs s ON s.id = sn.sync_id GROUP BY s.name ORDER BY s.name;
SELECT sync, count(*) AS runs FROM retl.runs GROUP BY sync ORDER BY sync;
SELECT (SELECT count(*) FROM retl.snapshot_edits sn
         WHERE NOT EXISTS (SELECT 1 FROM retl.syncs s WHERE s.id = sn.sync_id)) AS orphan_snapshot_rows,
       (SELECT count(*) FROM retl.snapshot_chunks sn
         WHERE NOT EXISTS (SELECT 1 FROM retl.syncs s WHERE s.id = sn.sync_id)) AS orphan_snapshot_chunks,
       (SELECT count(*) FROM retl.run_store r
         WHERE NOT EXISTS (SELECT 1 FROM retl.syncs s WHERE s.id = r.sync_id)) AS orphan_runs;

-- a row's hash: of its values' bytes, in order, NULL apart from empty; a
-- value holding rows by its text; a compressed value as its data; the
-- same whatever the settings that shape text
CREATE TEMP TABLE diff_rowhash (v text);
INSERT INTO diff_rowhash VALUES (repeat('abc', 100000));
SELECT retl._row_hash(ROW(1, 'a'::text)) = retl._row_hash(ROW(1, 'a'::text)) AS same,
       retl._row_hash(ROW(1, 'a'::text)) <> retl._row_hash(ROW(1, 'b'::text)) AS differs,
       retl._row_hash(ROW(NULL::text)) <> retl._row_hash(ROW(''::text)) AS null_not_empty,
       retl._row_hash(ROW(1, 2)) <> retl._row_hash(ROW(2, 1)) AS ordered,
       retl._row_hash(ROW(1.0)) <> retl._row_hash(ROW(1.00)) AS scale_counts,
       retl._row_hash(ROW(ROW(1, 'x'::text), ARRAY[ROW(2, 'y'::text)]))
         = retl._row_hash(ROW(ROW(1, 'x'::text), ARRAY[ROW(2, 'y'::text)])) AS rows_within,
       (SELECT retl._row_hash(ROW(v)) FROM diff_rowhash) = retl._row_hash(ROW(repeat('abc', 100000))) AS compressed,
       pg_column_size(v) < 100000 AS was_compressed
  FROM diff_rowhash;
SET timezone = 'UTC';
SELECT retl._row_hash(ROW('2026-01-01 00:00+00'::timestamptz, '1 day'::interval)) AS utc_hash \gset
SET timezone = 'Asia/Tokyo';
SET DateStyle = 'German';
SELECT retl._row_hash(ROW('2026-01-01 00:00+00'::timestamptz, '1 day'::interval)) = :utc_hash AS settings_ignored;
RESET DateStyle;
-- the same hash of the values passed one by one (what a run passes), for
-- every kind of value: by value (1, 2, 4, 8 bytes), fixed-size, varlena,
-- compressed, an unknown literal (a cstring), NULL, a domain, rows within
CREATE DOMAIN pg_temp.diff_email AS text CHECK (VALUE LIKE '%@%');
SELECT retl._values_hash(true, 1::int2, 1, 1::int8, 1.5::float8, 'a'::text, 'a', NULL::int,
                         '2026-01-01'::timestamptz, '00000000-0000-0000-0000-000000000001'::uuid,
                         'x@y'::pg_temp.diff_email, ROW(1, 'x'::text), ARRAY[ROW(2, 'y'::text)], '{"a": 1}'::jsonb)
     = retl._row_hash(ROW(true, 1::int2, 1, 1::int8, 1.5::float8, 'a'::text, 'a'::text, NULL::int,
                          '2026-01-01'::timestamptz, '00000000-0000-0000-0000-000000000001'::uuid,
                          'x@y'::pg_temp.diff_email, ROW(1, 'x'::text), ARRAY[ROW(2, 'y'::text)], '{"a": 1}'::jsonb)) AS values_as_row,
       (SELECT retl._values_hash(v) FROM diff_rowhash) = retl._row_hash(ROW(repeat('abc', 100000))) AS values_compressed,
       retl._values_hash(NULL::text) <> retl._values_hash(''::text) AS values_null_not_empty,
       retl._values_hash(1, 2) <> retl._values_hash(2, 1) AS values_ordered;
SELECT retl._values_hash(VARIADIC ARRAY[1, 2]);
DROP TABLE diff_rowhash;
DROP DOMAIN pg_temp.diff_email;
-- a run passes its values one by one (3 columns here), or as a row when
-- they are more than a function takes (101): a snapshot holding the hash
-- of the row of them finds each unchanged, and another hash changed
BEGIN;
SELECT retl_create_sync('narrow', 'SELECT id, name, team FROM diff_people', 'diff_dst', key => '{id}', schedule => 'manual');
SELECT retl_create_sync('wide', 'SELECT id, ' || string_agg(format('%s AS c%s', g, g), ', ') || ' FROM diff_people',
                        'diff_dst', key => '{id}', schedule => 'manual')
  FROM generate_series(1, 100) g;
SELECT format($$INSERT INTO retl.snapshot_edits (sync_id, key, hash)
               SELECT s.id, pg_catalog.jsonb_build_array(w.id),
                      CASE WHEN w.id = 2 THEN 0 ELSE retl._row_hash(w) END
                 FROM retl.syncs s, (%s) w WHERE s.name = %L$$, query, name)
  FROM retl.syncs WHERE name IN ('narrow', 'wide') ORDER BY name \gexec
SELECT 'narrow' AS sync, op, key FROM retl_preview('narrow')
UNION ALL SELECT 'wide', op, key FROM retl_preview('wide') ORDER BY 1, 3;
ROLLBACK;

-- the snapshot a run probes is the run's: elsewhere there is none
SELECT retl._run_probe(1::bigint, 1::bigint);
SELECT retl._run_probe('[1]'::jsonb, 1::bigint);
SELECT retl._run_probe_values(1::bigint, 'a'::text, 2);
SELECT retl._run_probe_values('[1]'::jsonb, 'a'::text);
SELECT retl._run_probe_op(1::bigint);
SELECT retl._run_probe_op('[1]'::jsonb);

DO $$
BEGIN
	PERFORM retl_drop_sync(name) FROM retl.syncs;
END
$$;
SELECT (SELECT count(*) FROM retl.syncs) AS syncs,
       (SELECT count(*) FROM retl.snapshots) AS snapshot_rows,
       (SELECT count(*) FROM retl.run_store) AS runs,
       (SELECT count(*) FROM retl.queue) AS queued,
       (SELECT count(*) FROM retl.sync_stats) AS stats;
SELECT retl_drop_destination('diff_dst');
DROP TABLE diff_people, diff_no_pk, diff_events;
RESET timezone;
