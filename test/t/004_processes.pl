# Processes: the launcher and one worker per database with the extension,
# started by CREATE EXTENSION without a restart; DROP EXTENSION and DROP
# DATABASE never blocked by a worker; worker memory stays flat; loading
# without shared_preload_libraries fails clearly.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $r = start_receiver();
my $node = new_retl_node('procs', extra_conf => "retl.database_scan_interval_ms = 500\n");

sub psql { return $node->safe_psql($_[1] // 'postgres', $_[0]); }

sub workers
{
	return psql(q{SELECT coalesce(string_agg(d.datname, ',' ORDER BY d.datname), '')
		FROM pg_stat_activity a JOIN pg_database d ON d.oid = a.datid
		WHERE a.backend_type = 'retl worker'});
}

is(psql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'retl launcher'}), '1',
	'launcher shows as "retl launcher"');
sleep 1;
is(workers(), '', 'no worker in databases without the extension');

# CREATE EXTENSION in a new database gets a worker without a restart.
psql('CREATE DATABASE app');
psql('CREATE EXTENSION retl', 'app');
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'retl worker'}),
	'CREATE EXTENSION starts a worker');
is(workers(), 'app', 'worker serves database app, shows as "retl worker"');

# It delivers.
my $url = $r->url('/app');
psql(qq{
	CREATE TABLE t (id int PRIMARY KEY, payload text);
	SELECT retl_create_destination(name => 'd', kind => 'webhook', url => '$url',
		options => '{"batch_size": 50}');
	SELECT retl_create_sync(name => 's', source => 't', destination => 'd');
	INSERT INTO t VALUES (1, 'x');
}, 'app');
ok(wait_for(sub { @{ delivered_records($r) } >= 1 }, 10), 'worker of new database delivers');

# A second database gets its own worker.
psql('CREATE DATABASE other');
psql('CREATE EXTENSION retl', 'other');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'retl worker'}),
	'one worker per database');

# Worker memory stays flat while delivering a large backlog.
sub worker_rss
{
	my $pid = psql(q{SELECT a.pid FROM pg_stat_activity a JOIN pg_database d ON d.oid = a.datid
		WHERE a.backend_type = 'retl worker' AND d.datname = 'app'});
	open my $fh, '<', "/proc/$pid/status" or return 0;
	# private memory only: touching shared buffers grows VmRSS, not RssAnon
	while (<$fh>) { return $1 if /^RssAnon:\s+(\d+)/; }
	return 0;
}
psql(q{INSERT INTO t SELECT g, repeat('p', 200) FROM generate_series(2, 5001) g}, 'app');
ok($node->poll_query_until('app', q{SELECT pending + in_flight = 0 FROM retl.sync_status}), 'warm-up drained');
my $rss1 = worker_rss();
for my $round (1 .. 3)
{
	psql(qq{UPDATE t SET payload = repeat('q$round', 100)}, 'app');
	$node->poll_query_until('app', q{SELECT pending + in_flight = 0 FROM retl.sync_status});
}
my $rss2 = worker_rss();
note "worker private memory (RssAnon): $rss1 kB after warm-up, $rss2 kB after 15000 more records";
ok($rss2 - $rss1 < 4096, 'worker memory flat (grew ' . ($rss2 - $rss1) . ' kB)');

# DROP EXTENSION is not blocked, and the worker goes away: its next
# transaction finds the extension gone (it locks it by the oid it found
# before, and sees its queue gone: txn.c), not a missing table.
my $log_offset = -s $node->logfile;
my $t0 = time;
psql('DROP EXTENSION retl CASCADE', 'other');
ok(time - $t0 < 5, 'DROP EXTENSION not blocked');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'retl worker'}),
	'worker of a database without the extension exits');
my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/retl worker stopping: extension "retl" is not installed/, 'it says why');
unlike($log, qr/ERROR/, 'and meets no error on its way out');

# CREATE EXTENSION again brings it back.
psql('CREATE EXTENSION retl', 'other');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'retl worker'}),
	'CREATE EXTENSION after DROP EXTENSION starts the worker again');

# DROP DATABASE is not blocked by the worker, even with work in flight.
$r->control({ delay_ms => 3000, count => -1 });
psql(q{INSERT INTO t VALUES (9999, 'slow')}, 'app');
sleep 0.5;
$t0 = time;
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE app');
is($ret, 0, 'DROP DATABASE succeeds') or diag($err);
ok(time - $t0 < 5, 'DROP DATABASE not blocked (' . sprintf('%.1f', time - $t0) . ' s)');
$r->control();
is(workers(), 'other', 'only the remaining database has a worker');

# ALTER DATABASE ... RENAME works too, and the worker comes back after.
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE other RENAME TO other2');
is($ret, 0, 'ALTER DATABASE RENAME succeeds') or diag($err);
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity a JOIN pg_database d ON d.oid = a.datid
	WHERE a.backend_type = 'retl worker' AND d.datname = 'other2'}), 'worker back after rename');

# Terminating the worker: it is started again.
my $pid = psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'});
psql("SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'retl worker' AND pid <> $pid}),
	'terminated worker restarted');

# A SIGTERM lets the worker's pass end (a clean stop records its answers,
# 003), but not for ever: a claim waiting for a lock (on retl.queue, held
# by a session) is interrupted 10 s later.  (Before the timer it waited as
# long as the lock was held.)
psql(qq{CREATE TABLE locked (id int PRIMARY KEY, v text);
	SELECT retl_create_destination(name => 'locked_hook', kind => 'webhook', url => '} . $r->url('/locked') . q{');
	SELECT retl_create_sync(name => 'locked_out', source => 'locked', destination => 'locked_hook');
	SELECT retl_pause_sync('locked_out');
	INSERT INTO locked VALUES (1, 'a');}, 'other2');
my $locker = $node->background_psql('other2');
$locker->query_safe('BEGIN; LOCK TABLE retl.queue IN ACCESS EXCLUSIVE MODE;');
psql(q{SELECT retl_resume_sync('locked_out')}, 'other2');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'retl worker' AND wait_event_type = 'Lock'}), 'the worker\'s claim waits for the lock');
$pid = psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'});
$t0 = time;
psql("SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', qq{SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid}),
	'the worker left while the lock was still held');
my $left_after = time - $t0;
ok($left_after >= 8 && $left_after < 30, sprintf('about 10 s after the SIGTERM (%.1f s)', $left_after));
$locker->query_safe('ROLLBACK;');
$locker->quit;
ok($node->poll_query_until('other2', q{SELECT delivered = 1 FROM retl.sync_status WHERE sync = 'locked_out'}),
	'the next worker delivers the change');
$node->stop;

# Without shared_preload_libraries: a clear error with a hint.
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
($ret, $out, $err) = $plain->psql('postgres', 'CREATE EXTENSION retl');
isnt($ret, 0, 'CREATE EXTENSION fails without shared_preload_libraries');
like($err, qr/retl must be loaded via shared_preload_libraries/, 'error says why');
like($err, qr/HINT:  Add retl to shared_preload_libraries/, 'hint says what to do');
$plain->stop;

$r->stop;
done_testing();
