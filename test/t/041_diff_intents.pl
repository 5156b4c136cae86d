# What a diff sync was asked to do outlives a run that failed: a run that
# records the result without sending it (the first run of a sync created
# with backfill false, retl_resync(send => false)) and fails or is
# cancelled is carried on by the sync's next runs until one succeeds, and
# a resync that sends (retl_resync(send => true)) still sends.  A dead
# letter of an append sync run by diff edits no snapshot.
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
is(run_now('failed'), 'succeeded|30|30|0|f', 'the next run records the result without sending it');
is(sent('/failed'), 0, 'nothing was sent');
psql(q{UPDATE people SET v = 'w' WHERE id = 1});
is(run_now('failed'), 'succeeded|30|0|1|t', 'the run after it sends what changed since');
is(sent('/failed'), 1, 'one record: the change');

# The same first run cancelled before it started (in the transaction that
# created the sync).
psql(q{SELECT retl_create_sync('cancelled', 'SELECT id, v FROM people', 'd_cancelled', key => '{id}',
	schedule => 'manual', options => '{"backfill": false}');
	SELECT retl_cancel_run(id) FROM retl.runs WHERE sync = 'cancelled'});
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
psql(q{SELECT retl_create_sync('resent', 'SELECT id, v, one FROM people_q', 'd_resent', key => '{id}',
	schedule => 'manual', options => '{"backfill": false}')});
psql(q{INSERT INTO broken VALUES (1)});
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

$node->stop;
done_testing();
