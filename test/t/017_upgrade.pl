# Upgrading: a database on retl 0.1 with secrets, destinations, syncs and
# changes queued is updated with ALTER EXTENSION retl UPDATE.  Until then
# the worker (a 0.2 library) waits and says why, sending nothing; after,
# everything queued is delivered, nothing lost, and the schema is the same
# as a fresh install's.  Headers 0.1 let a destination give that 0.2
# refuses (Connection, Transfer-Encoding, Expect) are dropped with a warning;
# a User-Agent of its own is kept (it replaces retl's).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $r = start_receiver();
my $node = new_retl_node('upgrade');
sub psql { my ($db, $sql) = @_; return $node->safe_psql($db, $sql); }

psql('postgres', q{CREATE DATABASE old; CREATE DATABASE fresh;});
psql('old', q{CREATE EXTENSION retl VERSION '0.1';
	CREATE TABLE t (id int PRIMARY KEY, v text);
	INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g;
	SET log_statement = 'none'; SELECT retl_set_secret('tok', 'upgrade-secret-value');
	SELECT retl_create_destination('d', 'webhook', '} . $r->url('/old') . q{',
		'{"headers": {"Authorization": "Bearer {{secret:tok}}"}, "batch_size": 10}');
	SELECT retl_create_destination('ua', 'webhook', '} . $r->url('/ua') . q{',
		'{"headers": {"User-Agent": "mine/1", "X-Keep": "1", "connection": "close"}}');
	SELECT retl_create_sync('s', 't', 'd');
	SELECT retl_create_sync('m', 'SELECT id, v FROM t WHERE id <= 5', 'd', key => '{id}', schedule => 'manual');});
# what a run of 0.1 would have left: the md5 of each row's JSON, for rows
# 1 to 5 as they are now (1 to 3 change below) and for a row since gone
psql('old', q{INSERT INTO retl.snapshots (sync_id, key, hash)
	SELECT s.id, pg_catalog.jsonb_build_array(g), pg_catalog.md5(pg_catalog.jsonb_build_object('id', g, 'v', 'v' || g)::text)
	  FROM retl.syncs s, generate_series(1, 5) g WHERE s.name = 'm'
	UNION ALL SELECT s.id, '[99]', 'x' FROM retl.syncs s WHERE s.name = 'm'});
is(psql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'retl'}), '0.1', 'installed as 0.1');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'retl worker' AND datname = 'old'}),
	'the database has its worker');
psql('old', q{INSERT INTO t SELECT g, 'v' || g FROM generate_series(51, 60) g; UPDATE t SET v = 'changed' WHERE id <= 3;
	DELETE FROM t WHERE id = 60;});
sleep 3;
is(scalar @{ $r->requests }, 0, 'a 0.2 worker sends nothing to a 0.1 database');
like(slurp_file($node->logfile), qr/retl worker waits: extension "retl" is version 0\.1 in this database, the library is 0\.2/,
	'and says why');
is(psql('old', q{SELECT count(*) > 0 FROM retl.queue}), 't', 'the changes wait in the queue');

my ($upd_ret, $upd_out, $upd_err) = $node->psql('old', q{ALTER EXTENSION retl UPDATE});
is($upd_ret, 0, 'ALTER EXTENSION retl UPDATE succeeds');
like($upd_err, qr/WARNING:  header "connection" of destination "ua" is dropped: retl sets it/,
	'a header 0.2 refuses, which 0.1 let a destination give, is dropped with a warning');
is(psql('old', q{SELECT headers::text FROM retl.destinations WHERE name = 'ua'}), '{"X-Keep": "1", "User-Agent": "mine/1"}',
	'the others are kept');
is(psql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'retl'}), '0.2', 'updated to 0.2');
ok($node->poll_query_until('old',
		q{SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = 's'}),
	'the queue drains after the update');
my %last;
for my $req (@{ $r->requests(ok => 1) })
{
	$last{ $_->{key}{id} } = $_->{op} eq 'delete' ? 'deleted' : $_->{data}{v} for @{ $req->{body}{records} };
}
my %want = map { $_ => ($_ <= 3 ? 'changed' : "v$_") } 1 .. 59;
$want{60} = 'deleted' if exists $last{60};
is_deeply(\%last, \%want, 'every change made before the update was delivered');
is(psql('old', q{SELECT retl_run_sync('m')}) > 0, 1, 'a scheduled sync of 0.1 runs on 0.2');
ok($node->poll_query_until('old', q{SELECT last_run_status = 'succeeded' FROM retl.sync_status WHERE sync = 'm'}),
	'and succeeds');
is(psql('old', q{SELECT added, changed, removed FROM retl.runs WHERE sync = 'm'}), '0|3|1',
	'against the snapshot 0.1 kept: only the rows changed since are changes');
ok($node->poll_query_until('old', q{SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = 'm'}),
	'which are sent');
is(join(',', sort map { $_->{key}{id} } map { @{ $_->{body}{records} } } grep { $_->{body}{sync} eq 'm' } @{ $r->requests(ok => 1) }),
	'1,2,3', 'and nothing else');
is(psql('old', q{SELECT count(*), count(hash) FROM retl.snapshots sn JOIN retl.syncs s ON s.id = sn.sync_id
	WHERE s.name = 'm'}), '5|5', 'the snapshot now holds the new hashes only');
is(psql('old', q{SELECT count(*) FROM retl.snapshot_edits}), '0', "and 0.1's are gone");
like(psql('old', q{SELECT headers::text FROM retl.destinations WHERE name = 'd'}), qr/\{\{secret:tok\}\}/,
	'the destination kept its options');
# the User-Agent kept replaces retl's
psql('old', q{CREATE TABLE t_ua (id int PRIMARY KEY); INSERT INTO t_ua VALUES (1);
	SELECT retl_create_sync('s_ua', 't_ua', 'ua');});
ok($node->poll_query_until('old', q{SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = 's_ua'}),
	'a sync to the destination with a User-Agent of its own sends');
my ($ua_req) = grep { $_->{path} eq '/ua' } @{ $r->requests(ok => 1) };
is($ua_req->{headers}{'user-agent'}, 'mine/1', 'with that User-Agent, not retl\'s');

# The schema of the updated database is that of a fresh 0.2 install.
psql('fresh', q{CREATE EXTENSION retl});
my $schema = q{
	SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0) || ' ' || coalesce(
		CASE d.classid
			WHEN 'pg_proc'::regclass THEN pg_catalog.md5(pg_catalog.pg_get_functiondef(d.objid))
				|| coalesce((SELECT p.proacl::text FROM pg_proc p WHERE p.oid = d.objid), '')
			WHEN 'pg_class'::regclass THEN
				(SELECT pg_catalog.string_agg(a.attname || ':' || pg_catalog.format_type(a.atttypid, a.atttypmod)
						|| ':' || a.attnotnull || ':' || coalesce(pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), ''),
						',' ORDER BY a.attnum)
				   FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
				  WHERE a.attrelid = d.objid AND a.attnum > 0 AND NOT a.attisdropped)
				|| coalesce(pg_catalog.md5(pg_catalog.pg_get_viewdef(d.objid)), '')
				|| coalesce((SELECT c.relacl::text || c.relrowsecurity::text || coalesce(c.reloptions::text, '')
							   FROM pg_class c WHERE c.oid = d.objid), '')
		END, '')
	  FROM pg_depend d
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	   AND d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'retl')
	UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'retl'
	UNION ALL SELECT tablename || ' ' || policyname || ' ' || cmd || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
	  FROM pg_policies WHERE schemaname = 'retl'
	UNION ALL SELECT conrelid::regclass::text || ' ' || pg_catalog.pg_get_constraintdef(oid)
	  FROM pg_constraint WHERE connamespace = 'retl'::regnamespace
	UNION ALL SELECT 'config ' || pg_catalog.array_to_string(extconfig::regclass[]::text[], ',') FROM pg_extension WHERE extname = 'retl'
	ORDER BY 1};
my $old = psql('old', $schema);
my $new = psql('fresh', $schema);
ok(length($new) > 1000, 'the schema listing is not empty');
is($old, $new, 'the updated schema equals a fresh install\'s');

# A database created by a build of 0.2 before retl.syncs.resyncs (its
# update script had run already): its worker syncs as before, a resync
# told from a pause by the cursor alone.  (It failed every pass: "column
# s.resyncs does not exist".)
psql('fresh', q{ALTER TABLE retl.syncs DROP COLUMN resyncs;
	CREATE TABLE legacy (id int PRIMARY KEY, v text);
	INSERT INTO legacy SELECT g, 'v' || g FROM generate_series(1, 30) g;
	SELECT retl_create_destination('legacy_hook', 'webhook', '} . $r->url('/legacy') . q{',
		'{"batch_size": 10}');
	SELECT retl_create_sync('legacy_out', 'legacy', 'legacy_hook');});
ok($node->poll_query_until('fresh',
		q{SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = 'legacy_out'}),
	'a database without retl.syncs.resyncs backfills');
psql('fresh', q{UPDATE legacy SET v = 'changed' WHERE id = 7});
ok($node->poll_query_until('fresh',
		q{SELECT pending + in_flight = 0 AND delivered = 31 FROM retl.sync_status WHERE sync = 'legacy_out'}),
	'and sends its changes');
my %legacy;
for my $req (grep { $_->{path} eq '/legacy' } @{ $r->requests(ok => 1) })
{
	$legacy{ $_->{key}{id} } = $_->{data}{v} for @{ $req->{body}{records} };
}
is(scalar(keys %legacy), 30, 'every row');
is($legacy{7}, 'changed', 'the change last');

done_testing();
