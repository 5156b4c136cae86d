--
-- Roles: retl_admin manages destinations and secrets and sees everything;
-- retl_user creates and manages its own syncs and audiences, on data it may
-- read, to destinations an admin granted it.  Everyone else: nothing.
--
SELECT r.rolname, r.rolcanlogin, pg_has_role(r.oid, 'retl_user', 'USAGE') AS has_retl_user
  FROM pg_roles r WHERE r.rolname IN ('retl_admin', 'retl_user') ORDER BY r.rolname;

CREATE TABLE roles_people (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO roles_people VALUES (1, 'ann'), (2, 'bob');
CREATE TABLE roles_private (id int PRIMARY KEY);
CREATE ROLE regress_retl_admin IN ROLE retl_admin;
CREATE ROLE regress_retl_alice IN ROLE retl_user;
CREATE ROLE regress_retl_bob IN ROLE retl_user;
CREATE ROLE regress_retl_mallory;
GRANT SELECT ON roles_people TO regress_retl_alice, regress_retl_bob;
GRANT TRIGGER ON roles_people TO regress_retl_alice;

--
-- An admin: secrets (write-only), destinations, grants.
--
SET ROLE regress_retl_admin;
SELECT retl_set_secret('roles_token', 'roles-secret-value');
SELECT * FROM retl.secrets;
SELECT name FROM retl.secret_names WHERE name = 'roles_token';
SELECT retl_create_destination('roles_crm', 'webhook', 'http://127.0.0.1:9/crm',
	'{"headers": {"Authorization": "Bearer {{secret:roles_token}}"}}');
SELECT retl_create_destination('roles_other', 'webhook', 'http://127.0.0.1:9/other');
-- turning TLS verification off stays a superuser's choice
SELECT retl_create_destination('roles_insecure', 'webhook', 'https://127.0.0.1:9/', '{"tls_verify": false}');
SELECT name, url, headers FROM retl.destinations WHERE name LIKE 'roles%' ORDER BY name;
SELECT retl_grant_destination('roles_crm', 'regress_retl_alice');
SELECT retl_grant_destination('roles_crm', 'regress_retl_alice');
SELECT retl_grant_destination('roles_crm', 'regress_retl_bob');
-- a role without retl_user: granted, with a notice that it cannot use it yet
SELECT retl_grant_destination('roles_other', 'regress_retl_mallory');
SELECT retl_grant_destination('roles_crm', 'no_such_role');
SELECT retl_grant_destination('no_such_destination', 'regress_retl_alice');
SELECT destination, role, granted_by FROM retl.destination_access ORDER BY destination, role::text;
RESET ROLE;

--
-- A user: its own syncs and audiences.
--
SET ROLE regress_retl_alice;
-- no secrets, destinations or grants
SELECT retl_set_secret('roles_token', 'stolen');
SELECT retl_drop_secret('roles_token');
SELECT retl_create_destination('mine', 'webhook', 'http://127.0.0.1:9/mine');
SELECT retl_drop_destination('roles_crm');
SELECT retl_grant_destination('roles_other', 'regress_retl_alice');
SELECT * FROM retl.secret_names;
SELECT url FROM retl.destinations;
-- the destinations' names are visible, their URLs and headers are not
SELECT name, kind FROM retl.destinations WHERE name LIKE 'roles%' ORDER BY name;
SELECT destination, role FROM retl.destination_access ORDER BY destination;
-- only to a destination granted to it
SELECT retl_create_sync('alice_other', 'roles_people', 'roles_other');
-- only what it may read
SELECT retl_create_sync('alice_private', 'roles_private', 'roles_crm', schedule => 'manual');
SELECT retl_create_sync('alice_private', 'SELECT id FROM roles_private', 'roles_crm', key => '{id}', schedule => 'manual');
-- only as a role it is a member of
SELECT retl_create_sync('alice_as_bob', 'roles_people', 'roles_crm', schedule => 'manual',
	options => '{"owner": "regress_retl_bob"}');
SELECT retl_create_audience('alice_as_bob', 'SELECT id FROM roles_people', '{id}', 'manual',
	'{"owner": "regress_retl_bob"}');
SELECT retl_create_sync('alice_sync', 'roles_people', 'roles_crm', options => '{"backfill": false}');
SELECT retl_create_sync('alice_model', 'SELECT id, name FROM roles_people', 'roles_crm',
	key => '{id}', schedule => 'manual');
SELECT retl_create_audience('alice_aud', 'SELECT id FROM roles_people', '{id}', 'manual');
SELECT name, owner, capture FROM retl.syncs ORDER BY name;
SELECT sync, destination, mode FROM retl.sync_status ORDER BY sync;
SELECT * FROM retl_preview('alice_model');
SELECT retl_pause_sync('alice_sync');
SELECT retl_resume_sync('alice_sync');
SELECT retl_run_sync('alice_model') > 0 AS run_queued;
SELECT sync, why FROM retl.runs ORDER BY id;
SELECT audience, owner FROM retl.audiences;
-- every column of every view (a whole-row reference reads them all)
SELECT 'sync_status' AS view, count(*) FILTER (WHERE length(v::text) > 0) AS rows FROM retl.sync_status v
UNION ALL SELECT 'runs', count(*) FILTER (WHERE length(v::text) > 0) FROM retl.runs v
UNION ALL SELECT 'dead_letters', count(*) FILTER (WHERE length(v::text) > 0) FROM retl.dead_letters v
UNION ALL SELECT 'audiences', count(*) FILTER (WHERE length(v::text) > 0) FROM retl.audiences v
UNION ALL SELECT 'audience_members', count(*) FILTER (WHERE length(v::text) > 0) FROM retl.audience_members v
UNION ALL SELECT 'audience_events', count(*) FILTER (WHERE length(v::text) > 0) FROM retl.audience_events v
UNION ALL SELECT 'destination_access', count(*) FILTER (WHERE length(v::text) > 0) FROM retl.destination_access v
UNION ALL SELECT 'remembered_ids', count(*) FILTER (WHERE length(v::text) > 0) FROM retl.remembered_ids v
UNION ALL SELECT 'jobs', count(*) FILTER (WHERE length(v::text) > 0) FROM retl.jobs v;
-- retl's own tables stay read-only
INSERT INTO retl.syncs (name, source, destination_id, key_columns, mode, schedule)
	VALUES ('forged', 'roles_people', 1, '{id}', 'upsert', 'realtime');
UPDATE retl.syncs SET paused = true;
DELETE FROM retl.queue;
RESET ROLE;

--
-- Another user sees none of it and may change none of it.
--
SET ROLE regress_retl_bob;
-- realtime capture adds a trigger: TRIGGER privilege needed
SELECT retl_create_sync('bob_sync', 'roles_people', 'roles_crm');
SELECT retl_create_sync('bob_model', 'roles_people', 'roles_crm', schedule => 'manual');
SELECT name, owner FROM retl.syncs ORDER BY name;
SELECT sync FROM retl.sync_status ORDER BY sync;
SELECT count(*) AS alices_queue FROM retl.queue q
 WHERE q.sync_id IN (SELECT s.id FROM retl.syncs s WHERE s.name LIKE 'alice%');
-- only its own rows, whichever way it looks
SELECT count(*) AS visible_run_rows FROM retl.run_store;
SELECT count(*) AS alices_runs FROM retl.runs WHERE sync LIKE 'alice%';
SELECT count(*) AS visible_stats_rows FROM retl.sync_stats;
SELECT count(*) AS visible_dead_letters FROM retl.dead_letters;
SELECT audience FROM retl.audiences;
SELECT count(*) AS alices_members FROM retl.audience_members;
SELECT retl_pause_sync('alice_sync');
SELECT retl_resume_sync('alice_sync');
SELECT retl_drop_sync('alice_sync');
SELECT retl_resync('alice_sync');
SELECT retl_replay('alice_sync');
SELECT retl_alter_sync('alice_sync', capture => 'logical');
SELECT retl_run_sync('alice_model');
SELECT * FROM retl_preview('alice_model');
SELECT retl_refresh_audience('alice_aud');
SELECT retl_drop_audience('alice_aud');
SELECT retl_create_sync('bob_aud', 'audience:alice_aud', 'roles_crm', schedule => 'manual');
SELECT retl_create_sync('bob_after', 'SELECT id FROM roles_people', 'roles_crm', key => '{id}',
	schedule => 'manual', options => '{"after": "alice_model"}');
RESET ROLE;
SELECT name, paused FROM retl.syncs WHERE name LIKE 'alice%' OR name LIKE 'bob%' ORDER BY name;

--
-- A role without retl_user or retl_admin: nothing at all, even with a grant.
--
SET ROLE regress_retl_mallory;
SELECT retl_create_sync('m', 'roles_people', 'roles_other', schedule => 'manual');
SELECT * FROM retl.sync_status;
SELECT retl_pause_sync('alice_sync');
RESET ROLE;

--
-- The admin sees everything and may stop anyone's sync.
--
SET ROLE regress_retl_admin;
SELECT sync, destination FROM retl.sync_status WHERE sync LIKE 'alice%' OR sync LIKE 'bob%' ORDER BY sync;
SELECT name, owner FROM retl.syncs WHERE name LIKE 'alice%' OR name LIKE 'bob%' ORDER BY name;
SELECT retl_pause_sync('bob_model');
SELECT retl_resume_sync('bob_model');
-- revoking a grant stops the syncs that relied on it, and says which
SELECT retl_revoke_destination('roles_crm', 'regress_retl_alice');
SELECT retl_revoke_destination('roles_crm', 'regress_retl_alice');
RESET ROLE;
SELECT s.name, retl._may_send(s.owner, s.destination_id) AS may_send FROM retl.syncs s
 WHERE s.name LIKE 'alice%' OR s.name LIKE 'bob%' ORDER BY s.name;
SET ROLE regress_retl_alice;
SELECT retl_create_sync('alice_again', 'roles_people', 'roles_crm', schedule => 'manual');
RESET ROLE;

--
-- A user's search_path lends nothing to the functions, which run as the
-- extension's owner: a look-alike "=" of the caller's schema, first on its
-- path, is used by the caller's own statements but never by retl's.  Names
-- the caller gives still resolve with its search_path.
--
SELECT current_user AS regress_superuser \gset
CREATE SCHEMA regress_retl_alice_schema AUTHORIZATION regress_retl_alice;
SELECT retl_grant_destination('roles_crm', 'regress_retl_alice');
SET ROLE regress_retl_alice;
CREATE FUNCTION regress_retl_alice_schema.text_eq(a text, b text) RETURNS boolean
	LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'look-alike "=" called as %', current_user;
	RETURN a OPERATOR(pg_catalog.=) b;
END
$$;
CREATE OPERATOR regress_retl_alice_schema.= (LEFTARG = text, RIGHTARG = text,
	FUNCTION = regress_retl_alice_schema.text_eq);
CREATE TABLE regress_retl_alice_schema.alice_people (id int PRIMARY KEY);
RESET ROLE;
-- her look-alike first, by SET and by her role's default (retl_preview uses that)
ALTER ROLE regress_retl_alice LOGIN;
ALTER ROLE regress_retl_alice SET search_path = regress_retl_alice_schema, pg_catalog, public;
\c - regress_retl_alice
SHOW search_path;
SELECT 'shown' = 'shown' AS the_look_alike_is_used;
SELECT retl_create_sync('alice_path', 'alice_people', 'roles_crm', schedule => 'manual');
SELECT retl_pause_sync('alice_path');
SELECT retl_drop_sync('alice_path');
INSERT INTO alice_people VALUES (1), (2);
SELECT retl_create_sync('alice_path', 'SELECT id FROM alice_people', 'roles_crm', key => '{id}',
	schedule => 'manual');
SELECT * FROM retl_preview('alice_path');
SELECT retl_drop_sync('alice_path');
SELECT retl_create_sync('alice_nope', 'no_such_table', 'roles_crm', schedule => 'manual');
-- a key of a type alice owns: retl would run her casts with its privileges
CREATE TYPE regress_retl_alice_schema.mood AS ENUM ('calm', 'cross');
CREATE TABLE regress_retl_alice_schema.moods (m regress_retl_alice_schema.mood PRIMARY KEY);
SELECT retl_create_sync('alice_moods', 'regress_retl_alice_schema.moods', 'roles_crm');
-- a domain of hers over a built-in type is fine (its checks never run in retl)
CREATE DOMAIN regress_retl_alice_schema.ident AS int CHECK (VALUE > 0);
CREATE TABLE regress_retl_alice_schema.idents (i regress_retl_alice_schema.ident PRIMARY KEY);
SELECT retl_create_sync('alice_idents', 'regress_retl_alice_schema.idents', 'roles_crm');
SELECT retl_drop_sync('alice_idents');
\c - :"regress_superuser"
DROP SCHEMA regress_retl_alice_schema CASCADE;

--
-- Row-level security that narrows the owner's view of a table: trigger
-- capture asks, as the owner, whether each changed row is one it may see
-- (TAP test 044_rls_deletes); logical capture, which knows a deleted row's
-- key only, is refused to such an owner, at creation and when switching.
--
CREATE TABLE roles_tenants (id int PRIMARY KEY, tenant text NOT NULL);
ALTER TABLE roles_tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_a ON roles_tenants FOR SELECT TO regress_retl_alice USING (tenant = 'a');
GRANT SELECT, TRIGGER ON roles_tenants TO regress_retl_alice;
SET ROLE regress_retl_alice;
SELECT retl_create_sync('alice_tenants_logical', 'roles_tenants', 'roles_crm', capture => 'logical');
SELECT retl_create_sync('alice_tenants', 'roles_tenants', 'roles_crm', options => '{"backfill": false}');
SELECT retl_alter_sync('alice_tenants', capture => 'logical');
SELECT name, capture FROM retl.syncs WHERE name LIKE 'alice_tenants%';
RESET ROLE;

-- one sync a transaction: dropping several syncs in one can deadlock with the
-- worker (README, Troubleshooting)
SELECT pg_catalog.format('SELECT retl_drop_sync(%L)', name) FROM retl.syncs
 WHERE name LIKE 'alice%' OR name LIKE 'bob%' ORDER BY name \gexec
SELECT retl_drop_audience('alice_aud');
SELECT retl_drop_destination(name) FROM retl.destinations WHERE name LIKE 'roles%';
SELECT retl_drop_secret('roles_token');
SELECT count(*) AS grants_left FROM retl.destination_grants;
-- DROP ROLE, REASSIGN OWNED and DROP OWNED see retl's syncs, audiences and
-- grants in the database they run in (src/process/roles.c)
CREATE ROLE regress_retl_gone IN ROLE retl_user;
CREATE ROLE regress_retl_heir IN ROLE retl_user;
GRANT SELECT ON roles_people TO regress_retl_gone;
SELECT retl_create_destination('roles_left', 'webhook', 'http://127.0.0.1:9/left');
SELECT retl_grant_destination('roles_left', 'regress_retl_gone');
SELECT retl_create_sync('gone_sync', 'roles_people', 'roles_left', schedule => 'manual',
	options => '{"owner": "regress_retl_gone"}');
SELECT retl_create_audience('gone_aud', 'SELECT id FROM roles_people', '{id}', 'manual',
	'{"owner": "regress_retl_gone"}');
DROP ROLE regress_retl_gone;
DROP ROLE regress_retl_heir, regress_retl_gone;
DROP ROLE IF EXISTS regress_retl_never_was;
-- a role PostgreSQL never drops gets PostgreSQL's error, not retl's
CREATE ROLE regress_retl_maker CREATEROLE IN ROLE retl_user;
GRANT SELECT ON roles_people TO regress_retl_maker;
SELECT retl_grant_destination('roles_left', 'regress_retl_maker');
SELECT retl_create_sync('maker_sync', 'roles_people', 'roles_left', schedule => 'manual',
	options => '{"owner": "regress_retl_maker"}');
SET ROLE regress_retl_maker;
DROP ROLE CURRENT_USER;
DROP ROLE regress_retl_maker;
RESET ROLE;
SELECT retl_drop_sync('maker_sync');
SELECT retl_revoke_destination('roles_left', 'regress_retl_maker');
REVOKE SELECT ON roles_people FROM regress_retl_maker;
DROP ROLE regress_retl_maker;
-- moved to the heir, which may not send there: a notice says so
REASSIGN OWNED BY regress_retl_gone TO regress_retl_heir;
SELECT name, owner FROM retl.syncs WHERE name = 'gone_sync';
SELECT audience, owner FROM retl.audiences WHERE audience = 'gone_aud';
REASSIGN OWNED BY regress_retl_heir TO regress_retl_gone;
SELECT name, owner FROM retl.syncs WHERE name = 'gone_sync';
-- DROP OWNED needs the role's privileges, and changes nothing without them
SET ROLE regress_retl_alice;
DROP OWNED BY regress_retl_gone;
RESET ROLE;
SELECT count(*) AS still_there FROM retl.syncs WHERE name = 'gone_sync';
-- a follower of another role's makes DROP OWNED fail, and changes nothing
SELECT retl_create_sync('heir_follows', 'roles_people', 'roles_left', schedule => 'manual',
	options => '{"after": "gone_sync"}');
DROP OWNED BY regress_retl_gone;
SELECT count(*) AS still_there FROM retl.syncs WHERE name = 'gone_sync';
SELECT retl_drop_sync('heir_follows');
DROP OWNED BY regress_retl_gone;
SELECT (SELECT count(*) FROM retl.syncs WHERE name = 'gone_sync') AS syncs,
	   (SELECT count(*) FROM retl.audiences WHERE audience = 'gone_aud') AS audiences,
	   (SELECT count(*) FROM retl.destination_access WHERE role::text = 'regress_retl_gone') AS grants;
DROP ROLE regress_retl_gone, regress_retl_heir;
-- a role dropped from another database (which retl cannot see from there)
-- leaves its grant here, removed by the next grant or revoke
CREATE ROLE regress_retl_gone IN ROLE retl_user;
SELECT retl_grant_destination('roles_left', 'regress_retl_gone');
\set regress_db :DBNAME
\c postgres
DROP ROLE regress_retl_gone;
\c :regress_db
SELECT count(*) AS dangling FROM retl.destination_grants g
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = g.grantee);
SELECT retl_grant_destination('roles_left', 'regress_retl_alice');
SELECT count(*) AS dangling FROM retl.destination_grants g
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = g.grantee);
SELECT retl_drop_destination('roles_left');
DROP TABLE roles_people, roles_private, roles_tenants;
DROP ROLE regress_retl_admin, regress_retl_alice, regress_retl_bob, regress_retl_mallory;
