# What a diff sync was asked to do outlives a run that failed: a run that
# records the result without sending it (the first run of a sync created
# with backfill false, retl_resync(send => false)) and fails or is
# cancelled is carried on by the sync's next runs until one succeeds, and
# a resync that sends (retl_resync(send => true)) still sends; the history
# of runs keeps what that needs.  A mirror's resync removes what left the
# result; a resync's dead letter of a key synced before it is kept stale
# (a mirror deletes it once it left the result, an update sync sends it
# again), of a key never synced forgotten; a replayed dead letter of an
# update sync is sent again.  A dead letter or a resync of an append sync
# run by diff edits no snapshot.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $r = start_receiver();
my $node = new_retl_node('intents', extra_conf => "retl.poll_interval_ms = 200\n");
sub psql { return $node->safe_psql('postgres', $_[0]); }

# Run a sync now; the run's status, rows, added, changed and send, once
# it ended and its changes were sent.
sub run_now
{
	my ($sync) = @_;
	return ended(psql("SELECT retl_run_sync('$sync')"), $sync);
}

sub ended
{
	my ($id, $sync) = @_;
	$node->poll_query_until('postgres', "SELECT status NOT IN ('queued', 'running') FROM retl.runs WHERE id = $id")
	  or die "run $id did not end";
	$node->poll_query_until('postgres', "SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$sync'")
	  or die "the queue of $sync did not drain";
	return psql("SELECT status, rows, added, changed, send FROM retl.runs WHERE id = $id");
}

# The first run of a sync (created with it).
sub first_run
{
	my ($sync) = @_;
	return ended(psql("SELECT min(id) FROM retl.runs WHERE sync = '$sync'"), $sync);
}

sub sent { my ($path) = @_; return scalar @{ records_at($r, $path) }; }

my $url = $r->url;
# A query that fails while the table "broken" holds a row.
psql(qq{CREATE EXTENSION retl;
	SELECT retl_create_destination('dst', 'webhook', '$url', '{"batch_size": 100}');
	CREATE TABLE broken (b int);
	CREATE TABLE people (id int PRIMARY KEY, v text NOT NULL);
	INSERT INTO people SELECT g, 'v' FROM generate_series(1, 30) g;
	CREATE VIEW people_q AS SELECT id, v, 1 / (1 - (SELECT count(*) FROM broken)::int) AS one FROM people;
	INSERT INTO broken VALUES (1);});
for my $s (qw(failed cancelled resent))
{
	psql(qq{SELECT retl_create_destination('d_$s', 'webhook', '$url/$s', '{"batch_size": 100}')});
}

# A sync created without backfill whose first run fails: the next run
# records the result without sending it.
psql(q{SELECT retl_create_sync('failed', 'SELECT id, v, one FROM people_q', 'd_failed', key => '{id}',
	schedule => 'manual', options => '{"backfill": false}')});
like(first_run('failed'), qr/^failed\|/, 'the first run, recording without sending, fails');
psql(q{TRUNCATE broken});
is(psql(q{SELECT count(*) FROM retl_preview('failed', 100)}), '0', 'the preview shows nothing to send');
is(run_now('failed'), 'succeeded|30|30|0|f', 'the next run records the result without sending it');
is(sent('/failed'), 0, 'nothing was sent');
psql(q{UPDATE people SET v = 'w' WHERE id = 1});
is(run_now('failed'), 'succeeded|30|0|1|t', 'the run after it sends what changed since');
is(sent('/failed'), 1, 'one record: the change');

# The same first run cancelled before it started (in the transaction that
# created the sync).
psql(q{BEGIN;
	SELECT retl_create_sync('cancelled', 'SELECT id, v FROM people', 'd_cancelled', key => '{id}',
	schedule => 'manual', options => '{"backfill": false}');
	SELECT retl_cancel_run(id) FROM retl.runs WHERE sync = 'cancelled';
	COMMIT;});
is(psql(q{SELECT why, status, send FROM retl.runs WHERE sync = 'cancelled'}), 'resync|cancelled|f',
	'the first run was cancelled');
is(run_now('cancelled'), 'succeeded|30|30|0|f', 'a run after it records without sending');
is(sent('/cancelled'), 0, 'nothing was sent');

# retl_resync(send => false) of a sync with a snapshot, failing: the rows
# changed meanwhile are not sent by the next run, which records them.
psql(q{UPDATE people SET v = 'x' WHERE id IN (2, 3); INSERT INTO broken VALUES (1)});
my $id = psql(q{SELECT retl_resync('failed', send => false)});
like(ended($id, 'failed'), qr/^failed\|/, 'a resync recording without sending fails');
psql(q{TRUNCATE broken});
is(run_now('failed'), 'succeeded|30|0|2|f', 'the next run records the two changed rows without sending them');
is(run_now('failed'), 'succeeded|30|0|0|t', 'and the one after finds nothing changed');
is(sent('/failed'), 1, 'nothing more was sent');

# A resync that sends, asked after a failed one that did not: it sends.
psql(q{INSERT INTO broken VALUES (1);
	SELECT retl_create_sync('resent', 'SELECT id, v, one FROM people_q', 'd_resent', key => '{id}',
	schedule => 'manual', options => '{"backfill": false}')});
like(first_run('resent'), qr/^failed\|/, 'a first run without backfill fails');
psql(q{TRUNCATE broken});
$id = psql(q{SELECT retl_resync('resent')});
is(ended($id, 'resent'), 'succeeded|30|30|0|t', 'retl_resync(send => true) after it sends');
is(sent('/resent'), 30, 'every row');

# Queued before a resync that does not send: a run records without sending
# too (the resync says the destination has the result).
psql(q{UPDATE people SET v = 'y' WHERE id = 4;
	SELECT retl_pause_sync('resent')});
my $manual = psql(q{SELECT retl_run_sync('resent')});
$id = psql(q{SELECT retl_resync('resent', send => false)});
psql(q{SELECT retl_resume_sync('resent')});
is(ended($manual, 'resent'), 'succeeded|30|0|1|f', 'a run queued before it records the change without sending it');
is(ended($id, 'resent'), 'succeeded|30|0|0|f', 'the resync then finds it recorded');
is(sent('/resent'), 30, 'nothing more was sent');

# A resync that does not send, then one that sends, both queued: the
# second forgot the snapshot as it was asked, so the first sends every row
# (and the second finds nothing left to send).
psql(q{SELECT retl_pause_sync('resent')});
my $quiet = psql(q{SELECT retl_resync('resent', send => false)});
$id = psql(q{SELECT retl_resync('resent')});
psql(q{SELECT retl_resume_sync('resent')});
is(ended($quiet, 'resent'), 'succeeded|30|30|0|t', 'the resync that would not send sends every row');
is(ended($id, 'resent'), 'succeeded|30|0|0|t', 'the one that sends finds them sent');
is(sent('/resent'), 60, 'every row once more');

# A resync that does not send, cancelled before it ran, asked nothing: a
# run queued before it sends.
psql(q{UPDATE people SET v = 'z' WHERE id = 5;
	SELECT retl_pause_sync('resent')});
$manual = psql(q{SELECT retl_run_sync('resent')});
$id = psql(q{SELECT retl_resync('resent', send => false)});
psql(qq{SELECT retl_cancel_run($id); SELECT retl_resume_sync('resent')});
is(ended($manual, 'resent'), 'succeeded|30|0|1|t', 'a run queued before it sends its change');
is(sent('/resent'), 61, 'one record');

# The history keeps a sync's latest successful run (what its next runs
# read), and deletes cancelled runs as it deletes the others.
psql(q{ALTER SYSTEM SET retl.run_history = '1'; SELECT pg_reload_conf();
	INSERT INTO broken VALUES (1)});
my $succeeded = psql(q{SELECT max(id) FROM retl.runs WHERE sync = 'failed' AND status = 'succeeded'});
like(run_now('failed'), qr/^failed\|/, 'a failed run') for 1 .. 3;
is(psql(q{SELECT string_agg(status, ',' ORDER BY id) FROM retl.runs WHERE sync = 'failed'}),
	'succeeded,failed', 'the history keeps the last run and the latest successful one');
is(psql(qq{SELECT min(id) FROM retl.runs WHERE sync = 'failed'}), $succeeded, 'that one');
ok($node->poll_query_until('postgres', q{SELECT string_agg(status, ',' ORDER BY id) = 'succeeded' FROM retl.runs
	WHERE sync = 'cancelled'}), 'the cancelled run of another sync is deleted');
psql(q{TRUNCATE broken; ALTER SYSTEM RESET retl.run_history; SELECT pg_reload_conf()});

# A mirror's resync removes the keys it had synced that left the result,
# but not one a dead letter of its addition forgot meanwhile (the
# destination never had it).
psql(qq{SELECT retl_create_destination('d_mirror', 'webhook', '$url/mirror', '{"batch_size": 100}');
	CREATE TABLE m (id int PRIMARY KEY, v text NOT NULL);
	INSERT INTO m SELECT g, 'v' FROM generate_series(1, 10) g;
	SELECT retl_create_sync('mirror', 'SELECT id, v FROM m', 'd_mirror', key => '{id}', mode => 'mirror',
	schedule => 'manual')});
is(run_now('mirror'), 'succeeded|10|10|0|t', 'a mirror\'s first run');
psql(q{SELECT retl_pause_sync('mirror'); DELETE FROM m WHERE id IN (1, 2)});
$id = psql(q{SELECT retl_resync('mirror')});
psql(q{INSERT INTO retl.snapshot_edits (sync_id, key) SELECT id, '[2]' FROM retl.syncs WHERE name = 'mirror';
	SELECT retl_resume_sync('mirror')});
is(ended($id, 'mirror'), 'succeeded|8|8|0|t', 'its resync sends every row');
is(psql(qq{SELECT removed FROM retl.runs WHERE id = $id}), '1', 'and removes one key');
is(join(',', map { $_->{key}{id} } grep { $_->{op} eq 'delete' } @{ records_at($r, '/mirror') }), '1',
	'a delete of key 1, none of key 2');

# A resync's record of a key the destination had (synced before the
# resync forgot it), dead-lettered, is kept as a stale version, not
# forgotten: once the row leaves the result, the mirror's next run deletes
# it (forgotten, the key was never deleted: the destination kept a row
# that left the result).  A key the destination never had, dead-lettered
# as added by the resync, is still forgotten: the next run adds it again.
psql(qq{SELECT retl_create_destination('d_rdl', 'webhook', '$url/rdl', '{"batch_size": 1}');
	CREATE TABLE rm (id int PRIMARY KEY, v text NOT NULL);
	INSERT INTO rm VALUES (1, 'apple'), (2, 'banana'), (3, 'cherry');
	SELECT retl_create_sync('rmirror', 'SELECT id, v FROM rm', 'd_rdl', key => '{id}', mode => 'mirror',
	schedule => 'manual')});
is(run_now('rmirror'), 'succeeded|3|3|0|t', 'resynced dead letters: a mirror sends its three rows');
psql(q{INSERT INTO rm VALUES (4, 'durian')});
$r->control({ status => 400, count => 1, path => '/rdl', match => 'banana' },
	{ status => 400, count => 1, path => '/rdl', match => 'durian' });
$id = psql(q{SELECT retl_resync('rmirror')});
is(ended($id, 'rmirror'), 'succeeded|4|4|0|t', 'resynced dead letters: its resync sends every row, as added');
is(psql(q{SELECT dead FROM retl.sync_status WHERE sync = 'rmirror'}), '2',
	'resynced dead letters: two refused, a key synced before and a new one');
is(psql(q{SELECT string_agg(sn.key::text || ':' || COALESCE(sn.hash::text, 'none'), ' ' ORDER BY sn.key)
	FROM retl.snapshots sn JOIN retl.syncs s ON s.id = sn.sync_id
	WHERE s.name = 'rmirror' AND sn.key IN ('[2]', '[4]')}), '[2]:0',
	'resynced dead letters: the key synced before kept stale, the new one forgotten');
psql(q{DELETE FROM rm WHERE id = 2});
is(run_now('rmirror'), 'succeeded|3|1|0|t', 'resynced dead letters: the next run adds the new key again');
is(psql(q{SELECT removed FROM retl.runs WHERE sync = 'rmirror' ORDER BY id DESC LIMIT 1}), '1',
	'resynced dead letters: and removes the key that left the result');
is(join(',', map { $_->{key}{id} } grep { $_->{op} eq 'delete' } @{ records_at($r, '/rdl') }), '2',
	'resynced dead letters: its delete was sent');
is(join(',', map { $_->{data}{v} } grep { $_->{key}{id} == 4 } @{ records_at($r, '/rdl') }), 'durian',
	'resynced dead letters: the new key delivered once');

# The same of an update sync, whose resync failed: the run after it sends
# every row the sync had synced (sent as added, an update sync sent none),
# and one of them, dead-lettered, is sent again by the next run (forgotten,
# it came back as added, which an update sync never sends).
psql(qq{SELECT retl_create_destination('d_rdu', 'webhook', '$url/rdu', '{"batch_size": 1}');
	CREATE TABLE ru (id int PRIMARY KEY, v text NOT NULL);
	INSERT INTO ru VALUES (1, 'apple'), (2, 'banana'), (3, 'cherry');
	CREATE VIEW ru_q AS SELECT id, v, 1 / (1 - (SELECT count(*) FROM broken)::int) AS one FROM ru;
	SELECT retl_create_sync('rupd', 'SELECT id, v, one FROM ru_q', 'd_rdu', key => '{id}', mode => 'update',
	schedule => 'manual')});
is(run_now('rupd'), 'succeeded|3|3|0|t', 'resynced update: the first run (nothing to update)');
psql(q{INSERT INTO broken VALUES (1)});
$id = psql(q{SELECT retl_resync('rupd')});
like(ended($id, 'rupd'), qr/^failed\|/, 'resynced update: its resync fails');
psql(q{TRUNCATE broken});
$r->control({ status => 400, count => 1, path => '/rdu', match => 'banana' });
is(run_now('rupd'), 'succeeded|3|3|0|t', 'resynced update: the run after it sends every row again');
is(join(',', sort map { $_->{key}{id} } @{ records_at($r, '/rdu') }), '1,3',
	'resynced update: two delivered, one refused');
is(run_now('rupd'), 'succeeded|3|0|1|t', 'resynced update: the next run sends the refused row again');
is(join(',', map { $_->{key}{id} . ':' . $_->{data}{v} } grep { $_->{key}{id} == 2 } @{ records_at($r, '/rdu') }),
	'2:banana', 'resynced update: the destination has it');

# A replayed dead letter of an update sync: the run after it sends the
# key's current values (kept as a stale version; forgotten, the key came
# back as added, which an update sync never sends, and the destination
# kept the replayed old values).
psql(qq{SELECT retl_create_destination('d_update', 'webhook', '$url/update', '{"batch_size": 100}');
	CREATE TABLE u (id int PRIMARY KEY, v text NOT NULL);
	INSERT INTO u VALUES (1, 'a1'), (2, 'b1');
	SELECT retl_create_sync('upd', 'SELECT id, v FROM u', 'd_update', key => '{id}', mode => 'update',
	schedule => 'manual')});
is(run_now('upd'), 'succeeded|2|2|0|t', 'an update sync\'s first run (nothing to update)');
psql(q{UPDATE u SET v = 'a2' WHERE id = 1});
$r->control({ status => 400, count => 1, path => '/update' });
is(run_now('upd'), 'succeeded|2|0|1|t', 'a change, refused');
psql(q{UPDATE u SET v = 'a3' WHERE id = 1});
is(run_now('upd'), 'succeeded|2|0|1|t', 'the next run sends it again, newer');
is(psql(q{SELECT retl_replay('upd')}), '1', 'the dead letter replayed');
$node->poll_query_until('postgres', q{SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = 'upd'});
is(run_now('upd'), 'succeeded|2|0|1|t', 'the run after the replay sends the key again');
is(join(',', map { $_->{data}{v} } @{ records_at($r, '/update') }), 'a3,a2,a3',
	'the destination ends with the current value');

# A replayed dead letter of an insert sync is not inserted a third time:
# its dead letter forgot the key (it never reached the destination), the
# next run added it again, the replay sent it again, and the run after it
# finds it sent.
psql(qq{SELECT retl_create_destination('d_insert', 'webhook', '$url/insert', '{"batch_size": 1}');
	CREATE TABLE ins (id int PRIMARY KEY, v text NOT NULL);
	INSERT INTO ins SELECT g, 'w' || g FROM generate_series(1, 3) g;
	SELECT retl_create_sync('ins', 'SELECT id, v FROM ins', 'd_insert', key => '{id}', mode => 'insert',
	schedule => 'manual')});
$r->control({ status => 400, count => 1, path => '/insert', match => 'w3' });
is(run_now('ins'), 'succeeded|3|3|0|t', 'an insert sync\'s first run: one refused');
is(run_now('ins'), 'succeeded|3|1|0|t', 'the next run adds the refused key again');
is(psql(q{SELECT retl_replay('ins')}), '1', 'its dead letter replayed');
$node->poll_query_until('postgres', q{SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = 'ins'});
is(run_now('ins'), 'succeeded|3|0|1|t', 'the run after the replay adds nothing (a stale version: changed)');
is(join(',', sort map { $_->{key}{id} } @{ records_at($r, '/insert') }), '1,2,3,3',
	'key 3 inserted twice (the run\'s and the replay\'s), not three times');
# Its resync inserts every row again (an insert sync sends added rows
# only), and a row of it dead-lettered is inserted again by the next run.
$r->control({ status => 400, count => 1, path => '/insert', match => 'w2' });
$id = psql(q{SELECT retl_resync('ins')});
is(ended($id, 'ins'), 'succeeded|3|3|0|t', 'an insert sync\'s resync sends every row: one refused');
is(run_now('ins'), 'succeeded|3|1|0|t', 'the next run adds the refused key again');
is(join(',', sort map { $_->{key}{id} } @{ records_at($r, '/insert') }), '1,1,2,2,3,3,3',
	'every key inserted again once');

# A dead letter of an append sync run by diff leaves no edit of a snapshot
# it does not have (each run sends every row as an event; nothing would
# ever read the edit).
psql(qq{SELECT retl_create_destination('d_events', 'webhook', '$url/events', '{"batch_size": 1}');
	SELECT retl_create_sync('events', 'SELECT id, v FROM people WHERE id <= 3', 'd_events', key => '{id}',
	mode => 'append', schedule => 'manual')});
$r->control({ status => 400, count => 1, path => '/events' });
is(run_now('events'), 'succeeded|3|3|0|t', 'an append run sends its 3 rows');
is(psql(q{SELECT dead FROM retl.sync_status WHERE sync = 'events'}), '1', 'one dead-lettered');
is(psql(q{SELECT count(*) FROM retl.snapshot_edits e JOIN retl.syncs s ON s.id = e.sync_id WHERE s.name = 'events'}),
	'0', 'and no snapshot edit for it');
$id = psql(q{SELECT retl_resync('events')});
is(ended($id, 'events'), 'succeeded|3|3|0|t', 'a resync of it sends its rows again');
is(psql(q{SELECT count(*) FROM retl.snapshot_edits e JOIN retl.syncs s ON s.id = e.sync_id WHERE s.name = 'events'}),
	'0', 'and forgets no snapshot');

$node->stop;
done_testing();
