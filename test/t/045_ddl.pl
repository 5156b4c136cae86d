# Schema changes (DDL) a DBA makes to objects syncs use, with changes
# queued: nothing may be lost or sent wrong silently.
#
# 1. A column an append sync's computed field reads is renamed while rows
#    are queued: the record must not go out with the field computed over a
#    missing column (null).  The worker's statement mapping captured rows
#    read them as the table's row type (jsonb_populate_record(NULL::table,
#    row)), which PostgreSQL's plan cache does not follow: after the
#    rename it read the 4th column as before, now named "surname", absent
#    from the captured row.
# 2. DROP EXTENSION retl CASCADE and CREATE EXTENSION retl in one
#    transaction (a migration script): the new sync's changes must be
#    delivered.  The worker found the new extension by name and went on
#    with what it remembered of the old one's syncs (the scan mark of sync
#    id 1 past the new queue's ids), so they waited in the queue for good.
# 3. The table of a realtime sync is dropped with changes queued: the sync
#    fails with a clear error and keeps them until it is dropped, and its
#    error is logged once, not at each retry (every second or so here, at
#    most every retl.retry_max_ms: for good).
# 4. A column a computed field reads is renamed: the error names the
#    field and the sync (it said only 'column "ln" does not exist'), in
#    retl.sync_status (append: part 1, upsert), retl.runs (a diff sync's
#    run) and the error of retl_preview.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $r = start_receiver();
my $node = new_retl_node('ddl');

sub psql { return $node->safe_psql('postgres', $_[0]); }

psql(q{
	CREATE EXTENSION retl;
	SELECT retl_create_destination(name => 'd', kind => 'webhook', url => '} . $r->url('/old') . q{');
});

# --- 1. a column an append sync's computed field reads is renamed -----------
psql(q{
	CREATE TABLE ev (id int PRIMARY KEY, email text, fn text, ln text);
	SELECT retl_create_destination(name => 'de', kind => 'webhook', url => '} . $r->url('/ev') . q{');
	SELECT retl_create_sync(name => 'se', source => 'ev', destination => 'de', mode => 'append',
		mapping => '{"email": "mail", "name": {"sql": "fn || '' '' || ln"}}', options => '{"backfill": false}');
	INSERT INTO ev VALUES (1, 'a@x', 'A', 'B');
});
ok(wait_for(sub { @{ records_at($r, '/ev') } >= 1 }, 20), 'the append sync delivered its first event');
is(records_at($r, '/ev')->[0]{data}{name}, 'A B', 'computed as "A B"');
psql(q{SELECT retl_pause_sync('se')});
sleep(0.5);
psql(q{
	INSERT INTO ev VALUES (2, 'c@x', 'C', 'D');
	ALTER TABLE ev RENAME COLUMN ln TO surname;
	SELECT retl_resume_sync('se');
});
# Either the event goes out as written ("C D") or the sync fails visibly
# and keeps it queued; never with the field null.
wait_for(sub {
	psql(q{SELECT pending + in_flight = 0 OR state = 'failing' FROM retl.sync_status WHERE sync = 'se'}) eq 't'
}, 20);
sleep(1);
my ($ev2) = grep { $_->{key}{id} == 2 } @{ records_at($r, '/ev') };
my $state = psql(q{SELECT state || ': ' || coalesce(last_error, '') FROM retl.sync_status WHERE sync = 'se'});
ok(!defined $ev2 || (defined $ev2->{data}{name} && $ev2->{data}{name} eq 'C D'),
	'the event of the renamed column is not sent with its computed field null')
  or diag('sent: ' . JSON::PP->new->canonical->encode($ev2) . "; sync $state");
like($state, qr/^failing: computed field "name" of sync "se": column "ln" does not exist/,
	'the sync fails visibly instead, naming the field');
is(psql(q{SELECT pending + in_flight FROM retl.sync_status WHERE sync = 'se'}), '1', 'its event kept queued');
psql(q{SELECT retl_drop_sync('se')});

# --- 2. DROP EXTENSION and CREATE EXTENSION in one transaction ----------
psql(q{
	CREATE TABLE t (id int PRIMARY KEY, v text);
	SELECT retl_create_sync(name => 's', source => 't', destination => 'd', options => '{"backfill": false}');
	INSERT INTO t SELECT g, 'old' FROM generate_series(1, 50) g;
});
ok($node->poll_query_until('postgres',
	q{SELECT delivered = 50 AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = 's'}),
	'the first sync delivered its 50 changes');
psql(q{
	BEGIN;
	CREATE TEMP TABLE old_s AS SELECT id FROM retl.syncs WHERE name = 's';
	DROP EXTENSION retl CASCADE;
	CREATE EXTENSION retl;
	SELECT retl_create_destination(name => 'd', kind => 'webhook', url => '} . $r->url('/new') . q{');
	CREATE TABLE x (id int PRIMARY KEY);
	-- (the new syncs take the ids of the old ones: 's' gets its own old id)
	SELECT retl_create_sync(name => 'x' || g, source => 'x', destination => 'd', options => '{"backfill": false}')
	  FROM generate_series(1, (SELECT id FROM old_s) - 1) g;
	SELECT retl_create_sync(name => 's', source => 't', destination => 'd', options => '{"backfill": false}');
	COMMIT;
	INSERT INTO t VALUES (101, 'new');
	INSERT INTO t VALUES (102, 'new');
});
my $delivered = wait_for(sub { @{ records_at($r, '/new') } >= 2 }, 20);
is(scalar @{ records_at($r, '/new') }, 2,
	'after DROP and CREATE EXTENSION in one transaction, the new sync delivers its changes');
is(psql(q{SELECT pending || '|' || in_flight FROM retl.sync_status WHERE sync = 's'}), '0|0',
	'and nothing waits in its queue');
psql(q{SELECT retl_drop_sync('s')});

# --- 3. the table of a realtime sync is dropped ------------------------------
psql(q{
	CREATE TABLE gone (id int PRIMARY KEY, v text);
	SELECT retl_create_sync(name => 'sg', source => 'gone', destination => 'd', options => '{"backfill": false}');
	SELECT retl_pause_sync('sg');
	INSERT INTO gone VALUES (1, 'a'), (2, 'b');
});
my $log_at = -s $node->logfile;
psql(q{DROP TABLE gone; SELECT retl_resume_sync('sg');});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' AND last_error = 'source table of sync "sg" no longer exists' FROM retl.sync_status WHERE sync = 'sg'}),
	'a sync whose table was dropped fails with a clear error');
sleep(5);
my @warnings = slurp_file($node->logfile, $log_at) =~ /WARNING:  retl sync "sg" failed: source table/g;
is(scalar @warnings, 1, 'its error is logged once in 5 s, not at each retry');
is(psql(q{SELECT pending FROM retl.sync_status WHERE sync = 'sg'}), '2', 'its queued changes are kept');
psql(q{SELECT retl_drop_sync('sg')});
is(psql(q{SELECT count(*) FROM retl.queue q WHERE NOT EXISTS (SELECT FROM retl.syncs s WHERE s.id = q.sync_id)}),
	'0', 'and deleted with the sync');

# --- 4. the error of a computed field names it ----------------------------
psql(q{
	CREATE TABLE pu (id int PRIMARY KEY, fn text, ln text);
	INSERT INTO pu VALUES (1, 'A', 'B');
	SELECT retl_create_sync(name => 'su', source => 'pu', destination => 'd',
		mapping => '{"full": {"sql": "fn || '' '' || ln"}}', options => '{"backfill": false}');
	SELECT retl_create_sync(name => 'sdf', source => 'pu', destination => 'd', capture => 'diff',
		schedule => 'manual', mapping => '{"full": {"sql": "fn || '' '' || ln"}}');
	ALTER TABLE pu RENAME COLUMN ln TO surname;
	INSERT INTO pu VALUES (2, 'C', 'D');
});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' FROM retl.sync_status WHERE sync = 'su'}), 'the upsert sync fails');
is(psql(q{SELECT last_error FROM retl.sync_status WHERE sync = 'su'}),
	'computed field "full" of sync "su": column "ln" does not exist', 'naming the field');
my $run = psql(q{SELECT retl_run_sync('sdf')});
ok($node->poll_query_until('postgres', "SELECT status = 'failed' FROM retl.runs WHERE id = $run"),
	'the diff sync\'s run fails');
is(psql("SELECT error FROM retl.runs WHERE id = $run"),
	'computed field "full" of sync "sdf": column "ln" does not exist', 'naming the field');
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT * FROM retl_preview('sdf')});
like($err, qr/ERROR:  computed field "full" of sync "sdf": column "ln" does not exist/,
	'and so does its preview');
psql(q{SELECT retl_drop_sync('su'); SELECT retl_drop_sync('sdf');});

# --- 5. an idle run worker of a dropped extension ---------------------------
sub run_status
{
	my ($run) = @_;
	$node->poll_query_until('postgres', "SELECT status NOT IN ('queued', 'running') FROM retl.runs WHERE id = $run");
	return psql("SELECT status || coalesce(': ' || error, '') FROM retl.runs WHERE id = $run");
}
psql(q{
	CREATE TABLE m (id int PRIMARY KEY, v text);
	INSERT INTO m VALUES (1, 'a');
	SELECT retl_create_sync(name => 'sm', source => 'SELECT id, v FROM m', destination => 'd', key => '{id}', schedule => 'manual');
});
is(run_status(psql(q{SELECT retl_run_sync('sm')})), 'succeeded', 'a run of the first extension');
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'retl run' AND state = 'idle'}),
	'its run worker waits for the next');
psql(q{
	BEGIN;
	DROP EXTENSION retl CASCADE;
	CREATE EXTENSION retl;
	SELECT retl_create_destination(name => 'd', kind => 'webhook', url => '} . $r->url('/m') . q{');
	SELECT retl_create_sync(name => 'sm', source => 'SELECT id, v FROM m', destination => 'd', key => '{id}', schedule => 'manual');
	COMMIT;
});
is(run_status(psql(q{SELECT retl_run_sync('sm')})), 'succeeded', 'the first run of the new extension succeeds');
is(run_status(psql(q{SELECT retl_run_sync('sm')})), 'succeeded', 'and so does the next');
ok(wait_for(sub { @{ records_at($r, '/m') } >= 1 }, 20), 'and its change is delivered');

# --- 6. a column type in a schema the append sync's owner may not use -------
psql(q{
	CREATE ROLE carol NOLOGIN IN ROLE retl_user;
	CREATE SCHEMA priv;
	CREATE DOMAIN priv.word AS text CHECK (VALUE <> '');
	CREATE TABLE ew (id int PRIMARY KEY, w priv.word, fn text);
	GRANT SELECT ON ew TO carol;
	SELECT retl_create_destination(name => 'dw', kind => 'webhook', url => '} . $r->url('/w') . q{');
	SELECT retl_grant_destination('dw', 'carol');
	SELECT retl_create_sync(name => 'sw', source => 'ew', destination => 'dw', mode => 'append',
		mapping => '{"w": "w", "up": {"sql": "upper(fn)"}}', options => '{"owner": "carol", "backfill": false}');
	INSERT INTO ew VALUES (1, 'x', 'a');
});
wait_for(sub { @{ records_at($r, '/w') } >= 1
	|| psql(q{SELECT state FROM retl.sync_status WHERE sync = 'sw'}) eq 'failing' }, 20);
is_deeply(records_at($r, '/w')->[0]{data}, { w => 'x', up => 'A' },
	'an append sync whose owner may not use a column type\'s schema sends its rows')
  or diag(psql(q{SELECT state || ': ' || coalesce(last_error, '') FROM retl.sync_status WHERE sync = 'sw'}));
psql(q{
	SELECT retl_pause_sync('sw');
	INSERT INTO ew VALUES (2, 'y', 'b');
	ALTER TABLE ew RENAME COLUMN fn TO first;
	SELECT retl_resume_sync('sw');
});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' AND last_error = 'computed field "up" of sync "sw": column "fn" does not exist'
	  FROM retl.sync_status WHERE sync = 'sw'}),
	'a column its computed field reads renamed still fails it, naming the field');
is(scalar @{ records_at($r, '/w') }, 1, 'sending nothing computed over the missing column');

done_testing();
