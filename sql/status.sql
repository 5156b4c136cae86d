--
-- status: the views retl.sync_status and retl.dead_letters, and
-- retl_replay.
--
-- Syncs whose queue is inspected are paused in the transaction that
-- creates them, so the worker leaves their queue alone.  Failures and
-- dead letters are simulated by writing retl.sync_stats and
-- retl.dead_letter_store directly.
--
\set SHOW_CONTEXT never

CREATE TEMP VIEW queued AS
SELECT s.name AS sync, q.op, q.key, q.data, q.rid, q.in_flight, q.attempts
  FROM retl.queue q LEFT JOIN retl.syncs s ON s.id = q.sync_id
 ORDER BY q.id;

-- the columns of the views
SELECT c.relname AS view,
       string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) AS columns
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.oid IN ('retl.sync_status'::regclass, 'retl.dead_letters'::regclass)
 GROUP BY c.relname ORDER BY 1;

-- nothing to show yet
SELECT * FROM retl.sync_status;
SELECT * FROM retl.dead_letters;

SELECT retl_create_destination('status_dst', 'webhook', 'http://127.0.0.1:9/status');
CREATE TABLE accounts (id integer PRIMARY KEY, name text NOT NULL);
INSERT INTO accounts VALUES (1, 'one'), (2, 'two');
CREATE TABLE audit (id integer PRIMARY KEY, what text NOT NULL);

--
-- A fresh upsert sync, paused: its existing rows are still to be
-- backfilled.
--
BEGIN;
SELECT retl_create_sync('accounts_sync', 'accounts', 'status_dst');
SELECT retl_pause_sync('accounts_sync');
COMMIT;

SELECT sync, destination, state, mode, pending, in_flight, delivered,
       failed_attempts, dead, oldest_pending_age, last_delivered_at,
       last_status, last_error, backfilling
  FROM retl.sync_status;

-- pending counts the queued rows that are not in flight
INSERT INTO accounts VALUES (3, 'three');
UPDATE accounts SET name = 'ONE' WHERE id = 1;
SELECT sync, state, pending, in_flight, oldest_pending_age IS NOT NULL AS has_age,
       oldest_pending_age >= interval '0' AS age_not_negative
  FROM retl.sync_status;
BEGIN;
UPDATE retl.queue SET in_flight = true
 WHERE id = (SELECT min(id) FROM retl.queue);
SELECT sync, pending, in_flight FROM retl.sync_status;
ROLLBACK;

-- an append sync without backfill, on an empty table, resumed: it is
-- active, with nothing to do
BEGIN;
SELECT retl_create_sync('audit_sync', 'audit', 'status_dst', mode => 'append',
                        options => '{"backfill": false}');
SELECT retl_pause_sync('audit_sync');
COMMIT;
SELECT sync, state, mode, pending, backfilling FROM retl.sync_status ORDER BY sync;
SELECT retl_resume_sync('audit_sync');
SELECT sync, state, mode, pending, in_flight, delivered, failed_attempts, dead, backfilling
  FROM retl.sync_status ORDER BY sync;

-- state: paused wins over failing, failing when the last attempts failed
BEGIN;
UPDATE retl.sync_stats st SET consecutive_failures = 3, failed_attempts = 5,
       last_status = 503, last_error = 'destination answered HTTP 503'
  FROM retl.syncs s WHERE s.id = st.sync_id;
SELECT sync, state, failed_attempts, last_status, last_error
  FROM retl.sync_status ORDER BY sync;
SELECT retl_pause_sync('audit_sync');
SELECT sync, state FROM retl.sync_status ORDER BY sync;
SELECT retl_resume_sync('audit_sync');
SELECT retl_resume_sync('accounts_sync');
SELECT sync, state FROM retl.sync_status ORDER BY sync;
UPDATE retl.sync_stats SET consecutive_failures = 0;
SELECT sync, state FROM retl.sync_status ORDER BY sync;
ROLLBACK;

-- delivered and last_delivered_at come from retl.sync_stats
BEGIN;
UPDATE retl.sync_stats st SET delivered = 42, last_delivered_at = '2024-01-02 03:04:05+00'
  FROM retl.syncs s WHERE s.id = st.sync_id AND s.name = 'accounts_sync';
SELECT sync, delivered, last_delivered_at FROM retl.sync_status ORDER BY sync;
ROLLBACK;

-- a sync whose statistics row is missing still shows, with zeros
BEGIN;
DELETE FROM retl.sync_stats st USING retl.syncs s
 WHERE s.id = st.sync_id AND s.name = 'accounts_sync';
SELECT sync, state, delivered, failed_attempts FROM retl.sync_status ORDER BY sync;
ROLLBACK;

--
-- Dead letters (as the worker writes them: key and data as sent, raw_key
-- and raw_data as queued).
--
INSERT INTO retl.dead_letter_store
	(sync_id, record_id, rid, key, op, data, raw_key, raw_data, captured_at,
	 attempts, last_status, last_error, response_excerpt, first_attempt_at, last_attempt_at)
SELECT s.id, 'abcdef123456-1001', 1001, '{"id": 1}', 'upsert', '{"id": 1, "name": "one"}',
       '[1]', NULL, '2024-01-01 00:00:00+00', 8, 500, 'destination answered HTTP 500',
       'Internal Server Error', '2024-01-01 00:00:01+00', '2024-01-01 00:10:00+00'
  FROM retl.syncs s WHERE s.name = 'accounts_sync';
INSERT INTO retl.dead_letter_store
	(sync_id, record_id, rid, key, op, data, raw_key, raw_data, captured_at,
	 attempts, last_status, last_error, response_excerpt, first_attempt_at, last_attempt_at)
SELECT s.id, 'abcdef123456-1002', 1002, '{"id": 2}', 'delete', NULL,
       '[2]', NULL, '2024-01-01 00:00:02+00', 1, 400, 'destination answered HTTP 400',
       '{"error": "bad"}', '2024-01-01 00:00:03+00', '2024-01-01 00:00:03+00'
  FROM retl.syncs s WHERE s.name = 'accounts_sync';

SELECT sync, record_id, key, op, attempts, last_status, last_error, response_excerpt,
       first_attempt_at, last_attempt_at, captured_at, dead_at IS NOT NULL AS has_dead_at
  FROM retl.dead_letters ORDER BY record_id;
SELECT sync, pending, dead FROM retl.sync_status ORDER BY sync;

--
-- retl_replay: dead letters go back to the queue as op 'r', keeping their
-- record id (rid), key, data and capture time; the failure streak ends.
--
SELECT count(*) AS queued_before FROM retl.queue;
UPDATE retl.sync_stats st SET consecutive_failures = 8
  FROM retl.syncs s WHERE s.id = st.sync_id AND s.name = 'accounts_sync';
SELECT retl_replay('accounts_sync');
SELECT * FROM queued WHERE op = 'r';
SELECT q.rid, q.captured_at FROM retl.queue q WHERE q.op = 'r' ORDER BY q.id;
SELECT count(*) AS dead_left FROM retl.dead_letter_store;
SELECT sync, state, pending, dead FROM retl.sync_status ORDER BY sync;
-- (the streak ends with a delta the worker folds within a second)
SELECT s.name, st.consecutive_failures = 0
       OR EXISTS (SELECT FROM retl.stats_delta d WHERE d.sync_id = s.id) AS streak_ended
  FROM retl.sync_stats st JOIN retl.syncs s ON s.id = st.sync_id ORDER BY s.name;

-- nothing left to replay
SELECT retl_replay('accounts_sync');
SELECT retl_replay('audit_sync');
-- a replay only takes its own sync's dead letters
INSERT INTO retl.dead_letter_store
	(sync_id, record_id, rid, key, op, data, raw_key, raw_data, captured_at, attempts)
SELECT s.id, 'abcdef123456-1003', 1003, '{"id": 9}', 'insert', '{"id": 9, "what": "x"}',
       '[9]', '{"id": 9, "what": "x"}', '2024-01-01 00:00:04+00', 8
  FROM retl.syncs s WHERE s.name = 'audit_sync';
BEGIN;
SELECT retl_pause_sync('audit_sync');
SELECT retl_replay('accounts_sync');
SELECT sync, dead FROM retl.sync_status ORDER BY sync;
SELECT retl_replay('audit_sync');
SELECT * FROM queued WHERE sync = 'audit_sync';
ROLLBACK;
SELECT sync, record_id FROM retl.dead_letters;

SELECT retl_replay('no_such_sync');
SELECT retl_replay(NULL);

--
-- Dropping a sync drops its queue, statistics and dead letters.
--
SELECT retl_drop_sync('audit_sync');
SELECT retl_drop_sync('accounts_sync');
SELECT * FROM retl.sync_status;
SELECT * FROM retl.dead_letters;
SELECT (SELECT count(*) FROM retl.queue) AS queued,
       (SELECT count(*) FROM retl.sync_stats) AS stats,
       (SELECT count(*) FROM retl.dead_letter_store) AS dead;

SELECT retl_drop_destination('status_dst');
DROP TABLE accounts, audit;
