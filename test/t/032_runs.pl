# Runs in workers of their own: a realtime sync keeps delivering while a
# long run executes; retl.runs shows a running run's phase and the rows
# its query has given so far; two syncs' runs at once; retl_cancel_run
# stops a run with nothing of it kept; a crash in the middle of a run (its
# worker killed) fails it, nothing half-applied, and the next run sends
# everything.  A run's worker waits retl.run_idle_timeout for the next run
# of its database, which it then executes; idle, it does not keep DROP
# DATABASE waiting, and it exits after the timeout.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

my $r = start_receiver();
my $node = new_retl_node('runs',
	extra_conf => "retl.max_parallel_runs = 2\nretl.poll_interval_ms = 200\nrestart_after_crash = on\n");
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub at { my ($path) = @_; return [ map { @{ $_->{body}{records} } } grep { $_->{path} eq $path } @{ $r->requests(ok => 1) } ]; }
sub status { my ($id) = @_; return psql("SELECT status FROM retl.runs WHERE id = $id"); }
sub running { my ($id) = @_; return $node->poll_query_until('postgres', "SELECT status = 'running' AND phase = 'evaluating' FROM retl.runs WHERE id = $id"); }
sub ended { my ($id) = @_; return $node->poll_query_until('postgres', "SELECT status NOT IN ('queued', 'running') FROM retl.runs WHERE id = $id"); }

my $url = $r->url;
psql(qq{CREATE EXTENSION retl;
	SELECT retl_create_destination('live', 'webhook', '$url/live');
	SELECT retl_create_destination('models', 'webhook', '$url/models', '{"batch_size": 500}');
	CREATE TABLE events (id int PRIMARY KEY, v text);
	SELECT retl_create_sync('live', 'events', 'live');
	CREATE TABLE big (id int PRIMARY KEY, v text);
	INSERT INTO big SELECT g, 'v' FROM generate_series(1, 3000) g;
	-- a query that takes about 2 ms a row: 6 s in all
	CREATE FUNCTION slow(i int) RETURNS int LANGUAGE plpgsql AS \$\$ BEGIN PERFORM pg_sleep(0.002); RETURN i; END \$\$;
	SELECT retl_create_sync('slow', 'SELECT slow(id) AS id, v FROM big', 'models', key => '{id}', schedule => 'manual');
	SELECT retl_create_sync('slow2', 'SELECT slow(id) AS id, v FROM big WHERE id <= 1500', 'models', key => '{id}', schedule => 'manual');});

# a long run in a worker of its own; realtime delivery goes on meanwhile
my $run = psql(q{SELECT retl_run_sync('slow')});
ok(running($run), 'the run is running');
is(psql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'retl run'}), '1', 'in a worker of its own');
# field 19 of /proc/<pid>/stat, after the command in parentheses
my $rpid = psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl run'});
my ($after) = slurp_file("/proc/$rpid/stat") =~ /\)\s+(.*)$/s;
is((split ' ', $after)[16], '10', 'at a lower priority (retl.run_nice, nice 10 by default)');
my $t0 = time;
psql(q{INSERT INTO events SELECT g, 'e' FROM generate_series(1, 20) g});
ok(wait_for(sub { @{ at('/live') } >= 20 }, 10), 'a realtime sync delivers while the run executes');
my $latency = time - $t0;
ok($latency < 2, sprintf('within %.2f s, not after the run', $latency));
is(status($run), 'running', 'the run was still running then');
ok($node->poll_query_until('postgres', "SELECT rows_read BETWEEN 1 AND 2999 FROM retl.runs WHERE id = $run"),
	'retl.runs shows the rows its query has given so far');

# another sync's run at the same time
my $run2 = psql(q{SELECT retl_run_sync('slow2')});
ok(running($run2), 'a second sync\'s run starts meanwhile');
is(psql(q{SELECT count(*) FROM retl.runs WHERE status = 'running'}), '2', 'both run at once');
# the figures of runs and syncs in shared memory are shown only to whom
# may see the sync: another retl_user sees none of them
psql(q{CREATE ROLE nosy NOLOGIN IN ROLE retl_user});
is(psql(q{SELECT count(*) FROM retl._run_progress()}), '2', 'both runs\' progress, to their owner');
is(psql(q{SET ROLE nosy; SELECT count(*) FROM retl._run_progress()}), '0', 'none to another retl_user');
ok(psql(q{SELECT count(*) FROM retl._live_stats()}) > 0, 'the syncs\' live figures, to their owner');
is(psql(q{SET ROLE nosy; SELECT count(*) FROM retl._live_stats()}), '0', 'none to another retl_user');
ok(ended($run) && ended($run2), 'both end');
is(status($run) . ' ' . status($run2), 'succeeded succeeded', 'both succeeded');
ok(wait_for(sub { @{ at('/models') } >= 4500 }, 30), 'their rows are sent');

# their workers wait for the next run of the database, and take it
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM pg_stat_activity
	WHERE backend_type = 'retl run' AND state = 'idle'}), 'both workers wait for the next run');
my %idle = map { $_ => 1 } split /\n/, psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl run'});
sub runner_of { my ($id) = @_; return psql("SELECT pid FROM retl._run_progress() WHERE run_id = $id"); }

# cancel: the run stops, nothing of it is kept
psql(q{UPDATE big SET v = 'w'});
my $snap = psql(q{SELECT hash FROM retl.snapshots sn JOIN retl.syncs s ON s.id = sn.sync_id WHERE s.name = 'slow' AND sn.key = '[1]'});
$run = psql(q{SELECT retl_run_sync('slow')});
ok(running($run), 'a run to cancel is running');
ok($idle{ runner_of($run) }, 'in one of the waiting workers');
is(psql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'retl run'}), '2', 'no new worker started');
is(psql("SELECT retl_cancel_run($run)"), 't', 'retl_cancel_run asks it to stop');
ok(ended($run), 'it stopped');
is(status($run), 'cancelled', 'cancelled');
is(psql(q{SELECT pending + in_flight FROM retl.sync_status WHERE sync = 'slow'}), '0', 'nothing of it was queued');
is(psql(q{SELECT hash FROM retl.snapshots sn JOIN retl.syncs s ON s.id = sn.sync_id WHERE s.name = 'slow' AND sn.key = '[1]'}),
	$snap, 'and its snapshot is as it was');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT retl_cancel_run($run)");
like($err, qr/run \d+ has ended \(cancelled\): nothing to cancel/, 'cancelling it again says it has ended');
($ret, $out, $err) = $node->psql('postgres', 'SELECT retl_cancel_run(999999)');
like($err, qr/run 999999 does not exist/, 'an unknown run is an error');

# a crash in the middle of a run: it fails, nothing half-applied, nothing lost
$run = psql(q{SELECT retl_run_sync('slow')});
ok(running($run), 'a run is running');
my $pid = runner_of($run);
ok($idle{$pid}, 'after a cancelled one, in a waiting worker again');
kill 'KILL', $pid;
ok($node->poll_query_until('postgres', "SELECT status = 'failed' FROM retl.runs WHERE id = $run"),
	'after its worker was killed (the server restarted), the run is failed');
like(psql("SELECT error FROM retl.runs WHERE id = $run"), qr/^interrupted: .*nothing of it was kept/, 'saying so');
is(psql(q{SELECT pending + in_flight FROM retl.sync_status WHERE sync = 'slow'}), '0', 'nothing of it was queued');
is(psql(q{SELECT hash FROM retl.snapshots sn JOIN retl.syncs s ON s.id = sn.sync_id WHERE s.name = 'slow' AND sn.key = '[1]'}),
	$snap, 'nor its snapshot changed');
$run = psql(q{SELECT retl_run_sync('slow')});
ok(ended($run), 'the next run ends');
is(psql("SELECT status, changed FROM retl.runs WHERE id = $run"), 'succeeded|3000', 'and finds all 3000 changes');
ok(wait_for(sub { (grep { $_->{data}{v} eq 'w' } @{ at('/models') }) >= 3000 }, 30), 'which are all sent');

# a worker waiting for the next run does not keep DROP DATABASE waiting
psql(qq{CREATE DATABASE other});
$node->safe_psql('other', qq{CREATE EXTENSION retl;
	SELECT retl_create_destination('models', 'webhook', '$url/other');
	CREATE TABLE t (id int PRIMARY KEY);
	INSERT INTO t SELECT generate_series(1, 10);
	SELECT retl_create_sync('t', 'SELECT id FROM t', 'models', key => '{id}', schedule => 'manual');
	SELECT retl_run_sync('t')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'retl run' AND datname = 'other' AND state = 'idle'}), 'a worker of database other waits');
my $t1 = time;
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE other');
is($ret, 0, 'DROP DATABASE succeeds') or diag($err);
ok(time - $t1 < 5, sprintf('at once (%.1f s)', time - $t1));

# after retl.run_idle_timeout without a run, the workers exit; at 0 a
# run's worker exits after it
# (the lowered timeout applies at once to the workers already waiting:
# they had waited longer than it)
my $t2 = time;
psql(q{ALTER SYSTEM SET retl.run_idle_timeout = 1; SELECT pg_reload_conf()});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'retl run'}),
	'the waiting workers exit after retl.run_idle_timeout');
ok(time - $t2 < 15, sprintf('a lowered retl.run_idle_timeout applies at once (%.1f s)', time - $t2));
psql(q{ALTER SYSTEM SET retl.run_idle_timeout = 0; SELECT pg_reload_conf()});
$run = psql(q{SELECT retl_run_sync('slow2')});
ok(ended($run), 'a run with retl.run_idle_timeout 0 ends');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'retl run'}),
	'and its worker exits');

# Idle workers give their background worker slots back when another
# worker cannot start without them: here the two idle runners of
# postgres take the last slots (retl's launcher, postgres's worker, two
# runners: 4), and database other's worker is started all the same.
my $tight = new_retl_node('tight', extra_conf => "max_worker_processes = 4\n"
	  . "max_logical_replication_workers = 0\nretl.max_parallel_runs = 2\n"
	  . "retl.run_idle_timeout = 600\nretl.poll_interval_ms = 200\n");
sub tpsql { return $tight->safe_psql($_[1] // 'postgres', $_[0]); }
tpsql(qq{CREATE EXTENSION retl;
	SELECT retl_create_destination('models', 'webhook', '$url/tight');
	CREATE TABLE big (id int PRIMARY KEY, v text);
	INSERT INTO big SELECT g, 'v' FROM generate_series(1, 500) g;
	CREATE FUNCTION slow(i int) RETURNS int LANGUAGE plpgsql AS \$\$ BEGIN PERFORM pg_sleep(0.004); RETURN i; END \$\$;
	SELECT retl_create_sync('s1', 'SELECT slow(id) AS id, v FROM big', 'models', key => '{id}', schedule => 'manual');
	SELECT retl_create_sync('s2', 'SELECT slow(id) AS id, v FROM big', 'models', key => '{id}', schedule => 'manual');
	SELECT retl_run_sync('s1'); SELECT retl_run_sync('s2');});
ok($tight->poll_query_until('postgres', q{SELECT count(*) = 2 FROM pg_stat_activity
	WHERE backend_type = 'retl run' AND state = 'idle'}), 'two runners wait, idle');
is(tpsql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'retl %'}), '4',
	'every background worker slot is taken');
tpsql(q{CREATE DATABASE other});
tpsql(q{CREATE EXTENSION retl}, 'other');
ok($tight->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'retl worker' AND datname = 'other'}), "database other's worker starts all the same");
is(tpsql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'retl run'}), '0',
	'the idle runners gave their slots back');
$run = tpsql(q{SELECT retl_run_sync('s1')});
ok($tight->poll_query_until('postgres', "SELECT status = 'succeeded' FROM retl.runs WHERE id = $run"),
	'a run after it has a worker again');
$tight->stop;

done_testing();
