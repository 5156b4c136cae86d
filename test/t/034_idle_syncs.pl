# A sync whose queue the worker found empty is not scanned again until a
# change may have been queued for it (queue/mark.c): every way a change
# reaches the queue must say so.  retl.poll_interval_ms is a minute here,
# so a way that did not would leave its change undelivered for that long,
# and each check below waits 15 s at most.  Then the point of it: while
# one sync drains, idle syncs cost its passes no scan of their own.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $r = start_receiver();
my $node = new_retl_node('idle', extra_conf => q{
retl.poll_interval_ms = 60000
shared_preload_libraries = 'retl, pg_stat_statements'
pg_stat_statements.track = all
max_prepared_transactions = 2
});

sub psql { return $node->safe_psql('postgres', $_[0]); }

# The records delivered to a path so far.
sub delivered_to
{
	my ($path) = @_;
	return [ map { @{ $_->{body}{records} } }
		  grep { $_->{path} eq $path && ref $_->{body} eq 'HASH' } @{ $r->requests(ok => 1) } ];
}

# Wait (15 s at most) until the path received n records.
sub arrives
{
	my ($path, $n) = @_;
	return wait_for(sub { scalar @{ delivered_to($path) } >= $n }, 15);
}

# Let the worker pass over every sync, finding the idle ones empty.
sub settle { sleep 1; }

# Builds that list the libraries allowed to decode must list retl.
if (psql(q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '1')
{
	psql(q{ALTER SYSTEM SET output_plugin_libraries = pgoutput, retl; SELECT pg_reload_conf();});
	$node->poll_query_until('postgres', q{SELECT current_setting('output_plugin_libraries') LIKE '%retl%'});
}

psql(q{CREATE EXTENSION retl; CREATE EXTENSION pg_stat_statements;});
for my $t (qw(trig logi diffsrc paused busy))
{
	psql(qq{
		CREATE TABLE $t (id int PRIMARY KEY, v text NOT NULL DEFAULT '');
		SELECT retl_create_destination(name => '$t', kind => 'webhook', url => '@{[ $r->url("/$t") ]}',
			options => '{"batch_size": 1}');
	});
}
psql(q{
	SELECT retl_create_sync(name => 'trig', source => 'trig', destination => 'trig',
		options => '{"backfill": false}');
	SELECT retl_create_sync(name => 'paused', source => 'paused', destination => 'paused',
		options => '{"backfill": false}');
	SELECT retl_create_sync(name => 'diff', source => 'SELECT id, v FROM diffsrc', destination => 'diffsrc',
		key => '{id}', schedule => 'manual');
});
settle();

# A trigger capture bumps its sync's counter at commit.
psql(q{INSERT INTO trig VALUES (1, 'a')});
ok(arrives('/trig', 1), 'a captured change reaches an idle sync');
settle();
psql(q{INSERT INTO trig VALUES (2, 'b'); TRUNCATE trig});
ok(arrives('/trig', 3), 'and a captured TRUNCATE');


# A run queues its changes in a worker of its own.
settle();
psql(q{INSERT INTO diffsrc VALUES (1, 'x'), (2, 'y')});
psql(q{SELECT retl_run_sync('diff')});
ok(arrives('/diffsrc', 2), "a run's changes reach an idle sync");

# Changes captured while a sync is paused, then resumed.
psql(q{SELECT retl_pause_sync('paused')});
settle();
psql(q{INSERT INTO paused VALUES (1, 'p')});
settle();
psql(q{SELECT retl_resume_sync('paused')});
ok(arrives('/paused', 1), 'a resumed sync sends what was captured meanwhile');

# A retry: the worker's own outcome gives the row back, and the pass
# after its backoff ends (not retl.poll_interval_ms later) sends it.
settle();
$r->control({ status => 500, count => 1, path => '/trig' });
psql(q{INSERT INTO trig VALUES (3, 'c')});
ok(wait_for(sub { grep { ($_->{key}{id} // 0) == 3 } @{ delivered_to('/trig') } }, 15),
	'a change retried after a 500 is delivered');

# A dead letter replayed (an SQL function that queues).
settle();
$r->control({ status => 400, count => 1, path => '/trig' });
psql(q{INSERT INTO trig VALUES (4, 'd')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM retl.dead_letters}), 'a 400 is dead-lettered');
settle();
is(psql(q{SELECT retl_replay('trig')}), '1', 'replayed');
ok(wait_for(sub { grep { ($_->{key}{id} // 0) == 4 } @{ delivered_to('/trig') } }, 15),
	'a replayed dead letter is delivered');

# A prepared transaction's session forgets what it queued at PREPARE;
# COMMIT PREPARED, in another session, tells the worker.
settle();
psql(q{BEGIN; INSERT INTO trig VALUES (5, 'e'); PREPARE TRANSACTION 'p5'});
settle();
psql(q{COMMIT PREPARED 'p5'});
ok(wait_for(sub { grep { ($_->{key}{id} // 0) == 5 } @{ delivered_to('/trig') } }, 15),
	'a change committed by COMMIT PREPARED reaches an idle sync');

# A commit wakes the worker only when a pass has something to do for it
# (base/shmem.c): never for a paused sync, and for a lingering partial
# batch only once it could be full.  Each pass scans the lingering sync's
# queue (it is not idle), so its scans count the passes.  (Before any
# logical sync exists: the worker reads a slot often.)
psql(qq{
	CREATE TABLE lingering (id int PRIMARY KEY, v text NOT NULL DEFAULT '');
	SELECT retl_create_destination(name => 'lingering', kind => 'webhook', url => '@{[ $r->url('/lingering') ]}',
		options => '{"batch_size": 20, "linger_ms": 60000}');
	SELECT retl_create_sync(name => 'lingering', source => 'lingering', destination => 'lingering',
		options => '{"backfill": false}');
	SELECT retl_pause_sync('paused');
});
settle();
psql(q{INSERT INTO lingering VALUES (1)});
settle();
psql(q{SELECT pg_stat_statements_reset()});
psql("INSERT INTO paused VALUES ($_)") for 100 .. 139;
psql("INSERT INTO lingering VALUES ($_)") for 2 .. 17;
# a key changed: two changes (its old key goes), 19 keys queued
psql(q{UPDATE lingering SET id = 18 WHERE id = 17});
psql(q{INSERT INTO lingering VALUES (19)});
settle();
my $linger_scans = psql(q{SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
	WHERE query LIKE 'SELECT q.id, pg_catalog.jsonb_hash_extended(q.key%'});
cmp_ok($linger_scans, '<', 10, "59 commits no pass could use woke the worker $linger_scans times");
is(scalar @{ delivered_to('/lingering') }, 0, 'a partial batch lingers');
psql(q{INSERT INTO lingering VALUES (20)});
ok(arrives('/lingering', 20), 'the commit that fills the batch sends it at once');
psql(q{SELECT retl_resume_sync('paused')});
ok(arrives('/paused', 41), 'what a paused sync captured goes when it resumes');

# A logical capture is queued by the worker itself, from the slot (which
# it reads often: created last, so that the checks above see a worker that
# sleeps retl.poll_interval_ms).
psql(q{SELECT retl_create_sync(name => 'logi', source => 'logi', destination => 'logi', capture => 'logical',
	options => '{"backfill": false}')});
settle();
psql(q{INSERT INTO logi VALUES (1, 'l')});
ok(arrives('/logi', 1), 'a decoded change reaches an idle sync');

# Each decoding round drops the catalog caches (entries read with historic
# snapshots); that is no change of a role, and the worker keeps its syncs
# (read again at most every second) while rounds follow one another.
settle();
psql(q{SELECT pg_stat_statements_reset()});
psql("INSERT INTO logi VALUES ($_, 'l')") for 2 .. 101;
ok(arrives('/logi', 101), 'a hundred decoded changes arrive');
my ($rounds, $loads) = split /\|/, psql(q{
	SELECT sum(calls) FILTER (WHERE query LIKE 'UPDATE retl.stream_state SET staged_lsn%'),
	       sum(calls) FILTER (WHERE query LIKE 'SELECT s.id, s.name, s.mode, s.source_relid%')
	FROM pg_stat_statements});
cmp_ok($rounds, '>=', 20, "many decoding rounds staged them ($rounds)");
cmp_ok($loads, '<', $rounds / 4 + 5, "the syncs were not read again at each round ($loads reads)");

# While one sync drains 2,000 changes a record a request, the idle ones
# (trig, diff, paused, logi) are not scanned at each of its passes: the
# claim's scan runs about once a pass, not five times.  (The passes are
# counted by their outcomes' DELETEs, which answers recorded together and
# claims taken ahead make fewer than the passes: 99 of them for the 2,000
# records.)
settle();
psql(q{SELECT pg_stat_statements_reset()});
psql(q{SELECT retl_create_sync(name => 'busy', source => 'busy', destination => 'busy',
	options => '{"backfill": false}')});
settle();
psql(q{INSERT INTO busy SELECT g, 'z' FROM generate_series(1, 2000) g});
ok($node->poll_query_until('postgres', q{SELECT delivered = 2000 FROM retl.sync_status WHERE sync = 'busy'}),
	'the busy sync drained');
my ($scans, $passes) = split /\|/, psql(q{
	SELECT sum(calls) FILTER (WHERE query LIKE 'SELECT q.id, pg_catalog.jsonb_hash_extended(q.key%'),
	       sum(calls) FILTER (WHERE query LIKE 'DELETE FROM retl.queue WHERE sync_id = $1 AND id >= $2%')
	FROM pg_stat_statements});
cmp_ok($passes, '>=', 50, "the drain took many passes ($passes)");
cmp_ok($scans, '<', 1.5 * $passes + 20, "idle syncs were not scanned at each pass ($scans scans)");

$node->stop;
$r->stop;
done_testing();
