# Dropping a sync whose queued changes another transaction holds (as the
# worker's claims and outcomes do) in another order than the drop deletes
# them: the deadlock cancels the drop's delete, which gives the rows back,
# waits and deletes again, and the drop succeeds.  (The regression test
# "roles" failed so, now and then, on the worker's claim.)  Then the worker
# never waiting for a sync's table, nor for a drop left open or waiting
# inside its function, and the queue rows of dropped syncs swept.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $r = start_receiver();
my $node = new_retl_node('drop');

sub psql { return $node->safe_psql('postgres', $_[0]); }

psql(q{
	CREATE EXTENSION retl;
	CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
	SELECT retl_create_destination(name => 'd', kind => 'webhook', url => '} . $r->url('/d') . q{');
	SELECT retl_create_sync(name => 's', source => 't', destination => 'd', options => '{"backfill": false}');
	SELECT retl_pause_sync('s');
});
# (a pass of the worker already under way when the pause commits finishes
# with the sync it read, and could send changes that commit meanwhile)
sleep(0.5);
psql(q{INSERT INTO t VALUES (1), (2)});
my ($first, $last) = split /\|/, psql(q{SELECT min(id), max(id) FROM retl.queue});
ok($first < $last, 'two changes queued, the sync paused');

# The other transaction holds the last change, the drop takes the first and
# waits for the last, then the other waits for the first.  The drop looks
# for a deadlock first (a second after it began to wait, the other ten):
# it is the one cancelled.
my $deadlocks = psql(q{SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()});
my $other = $node->background_psql('postgres');
$other->query_safe("SET deadlock_timeout = '10s'");
$other->query_safe('BEGIN');
$other->query_safe("SELECT 1 FROM retl.queue WHERE id = $last FOR UPDATE");
my $drop = $node->background_psql('postgres');
$drop->query_safe("SET deadlock_timeout = '1s'");
$drop->query_until(qr/dropping/, "\\echo dropping\nSELECT retl_drop_sync('s');\n");
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'
	  AND query LIKE 'SELECT retl_drop_sync%'}), 'the drop waits for the held change');
$other->query_until(qr/locking/, "\\echo locking\nSELECT 1 FROM retl.queue WHERE id = $first FOR UPDATE;\n");
# the drop gives the first change back, so the other transaction gets it
# and can commit
sleep(2);
$other->query_safe('COMMIT');
my ($out, $failed) = $drop->query("SELECT 'after the drop'");
is($failed, 0, 'the drop did not fail') or diag($drop->{stderr});
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 's'}), '0', 'the sync is gone');
is(psql(q{SELECT count(*) FROM retl.queue}), '0', 'its queued changes are gone');
ok($node->poll_query_until('postgres',
	qq{SELECT deadlocks > $deadlocks FROM pg_stat_database WHERE datname = current_database()}),
	'a deadlock was detected on the way');
$other->quit;
$drop->quit;

# The worker never waits for a sync's table: while a transaction holds one
# sync's table locked, the database's other syncs deliver, and a
# retl_drop_sync in that transaction goes through (the worker used to wait
# for the table in a transaction that had written rows the drop deletes:
# its counters, a sync's error; the two deadlocked).  The locked sync
# delivers once the lock is gone.
sub delivered
{
	my ($sync) = @_;
	return psql("SELECT delivered FROM retl.sync_status WHERE sync = '$sync'");
}

# true once $sql returns t, false after $seconds
sub within
{
	my ($seconds, $sql) = @_;
	return wait_for(sub { psql($sql) eq 't' }, $seconds);
}

# (s1 created paused: created active, a pass of the worker that read the
# syncs before the pause committed could send t1's row before the lock)
psql(q{
	CREATE TABLE t1 (id int PRIMARY KEY);
	CREATE TABLE t2 (id int PRIMARY KEY);
	CREATE TABLE t3 (id int PRIMARY KEY);
	BEGIN;
	SELECT retl_create_sync(name => s, source => 't' || n, destination => 'd', options => '{"backfill": false}')
	  FROM (VALUES ('s1', 1), ('s2', 2), ('s3', 3)) v(s, n);
	SELECT retl_pause_sync('s1');
	COMMIT;
	INSERT INTO t1 VALUES (1);
	INSERT INTO t3 VALUES (1);
});
ok(within(10, q{SELECT delivered = 1 FROM retl.sync_status WHERE sync = 's3'}), 'a sync delivered');
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE');
psql(q{SELECT retl_resume_sync('s1')});
psql(q{INSERT INTO t2 VALUES (1)});
ok(within(10, q{SELECT delivered = 1 FROM retl.sync_status WHERE sync = 's2'}),
	'while one sync\'s table is locked, another sync delivers');
is(psql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'retl worker%' AND wait_event_type = 'Lock'}),
	'0', 'the worker waits for no lock');
is(delivered('s1'), '0', 'the sync of the locked table waits');
psql(q{INSERT INTO t3 VALUES (2)});
ok(within(10, q{SELECT delivered = 2 FROM retl.sync_status WHERE sync = 's3'}), 'and the others go on');
$locker->query_safe(q{SELECT retl_drop_sync('s3')});
$locker->query_safe('COMMIT');
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 's3'}), '0',
	'a drop in the transaction holding the lock went through');
ok(within(10, q{SELECT delivered = 1 FROM retl.sync_status WHERE sync = 's1'}),
	'the lock released: the waiting sync delivered');
$locker->quit;

# The worker waits for no lock a drop holds.  The drop shares nothing
# with the worker until it ends: the worker leaves the dropped sync's
# answers for a later pass and goes on with the other syncs.
sub worker_waits
{
	return psql(q{SELECT count(*) FROM pg_stat_activity
				  WHERE backend_type LIKE 'retl worker%' AND wait_event_type = 'Lock'});
}

# A change of the sync s2 (its nth) is delivered meanwhile, the worker
# waiting for no lock.
sub others_go_on
{
	my ($n, $while) = @_;
	psql("INSERT INTO t2 VALUES ($n)");
	ok(within(10, "SELECT delivered = $n FROM retl.sync_status WHERE sync = 's2'"),
		"while $while, another sync delivers");
	is(worker_waits(), '0', 'the worker waits for no lock');
}

# A table of $rows rows and its sync $sync, sent to $path by destination
# $dest in batches of $batch, two at a time: its backfill's first two
# requests in flight.
sub backfill_in_flight
{
	my ($sync, $table, $dest, $path, $rows, $batch, $what) = @_;
	psql(qq{
		CREATE TABLE $table (id int PRIMARY KEY);
		INSERT INTO $table SELECT generate_series(1, $rows);
		SELECT retl_create_destination(name => '$dest', kind => 'webhook', url => '} . $r->url($path) . qq{',
			options => '{"batch_size": $batch, "max_concurrency": 2}');
		SELECT retl_create_sync(name => '$sync', source => '$table', destination => '$dest');
	});
	ok(within(10, "SELECT requests_in_flight = 2 FROM retl.sync_status WHERE sync = '$sync'"), $what);
}

# A sync dropped while requests of its backfill are in flight, in a
# transaction left open: the records they carry are not in the queue.
# Recording their refusal queues them, and updates the sync's row of
# retl.sync_stats, which the drop deletes: the worker waited for the
# drop's transaction, every sync of the database with it, and the rows it
# queued after the drop's delete stayed (until the sweep below).  Now the
# answers wait, and once the drop commits they queue nothing.
$r->control({ path => '/bf', status => 500, delay_ms => 1500, count => -1 });
backfill_in_flight('sbf', 'tb', 'dbf', '/bf', 200, 50, 'two requests of the backfill in flight');
my $sid = psql(q{SELECT id FROM retl.syncs WHERE name = 'sbf'});
my $dropper = $node->background_psql('postgres');
$dropper->query_safe('BEGIN');
$dropper->query_safe(q{SELECT retl_drop_sync('sbf')});
# the requests are answered, 1.5 s after they were sent
sleep 2;
others_go_on(2, 'the drop is open and its sync\'s requests are answered');
$dropper->query_safe('COMMIT');
$dropper->quit;
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'sbf'}), '0', 'the sync is dropped');
# the answers are recorded after the drop (within 100 ms): nothing queued
# (the worker used to queue the refused records right after the commit,
# there until the sweep below)
ok(!wait_for(sub { psql(qq{SELECT count(*) FROM retl.queue WHERE sync_id = $sid}) ne '0' }, 1.5),
	'nothing of the dropped sync queued after the drop');
$r->control();

# A drop still inside its function (waiting for its sync's table, which
# another session reads) that then rolls back, while requests of the
# sync's backfill are refused (500): the worker goes on with the other
# syncs meanwhile, and once the drop has rolled back the refused records
# are queued and retried, and the sync delivers every row, none lost.
$r->control({ path => '/c', status => 500, delay_ms => 1500, count => 2 });
backfill_in_flight('sc', 'tc', 'dc', '/c', 100, 10, 'two requests of the second backfill in flight');
my $reader = $node->background_psql('postgres');
$reader->query_safe('BEGIN');
$reader->query_safe('LOCK TABLE tc IN ACCESS SHARE MODE');
$dropper = $node->background_psql('postgres');
$dropper->query_safe('BEGIN');
$dropper->query_until(qr/dropping/, "\\echo dropping\nSELECT retl_drop_sync('sc');\n");
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'
	  AND query LIKE 'SELECT retl_drop_sync%'}), 'the drop waits inside its function for the table');
sleep 2;
others_go_on(3, 'the drop waits, its sync\'s requests answered');
$reader->query_safe('COMMIT');
$reader->quit;
($out, $failed) = $dropper->query('ROLLBACK');
is($failed, 0, 'the drop rolled back') or diag($dropper->{stderr});
$dropper->quit;
ok(within(20, q{SELECT delivered = 100 FROM retl.sync_status WHERE sync = 'sc'}),
	'after the rollback the sync delivers its backfill');
my %keys = map { $_->{key}{id} => 1 }
  map { @{ $_->{body}{records} } } grep { $_->{path} eq '/c' } @{ $r->requests(ok => 1) };
is(scalar(keys %keys), 100, 'every row of the table reached the destination');
is(psql(q{SELECT count(*) FROM retl.queue q JOIN retl.syncs s ON s.id = q.sync_id WHERE s.name = 'sc'}),
	'0', 'nothing of it left queued');
$r->control();

# A diff sync due every second, dropped in a transaction left open: the
# worker's schedule (which writes the sync's row, locked by the drop) and
# the prune of its runs leave it alone, and the other syncs deliver.
psql(q{
	SELECT retl_create_sync(name => 'sd', source => 'SELECT id FROM tc', destination => 'dc',
		key => '{id}', schedule => '1 second', options => '{"backfill": false}');
});
ok(within(20, q{SELECT count(*) >= 2 FROM retl.runs WHERE sync = 'sd' AND status = 'succeeded'}),
	'the diff sync runs');
$dropper = $node->background_psql('postgres');
$dropper->query_safe('BEGIN');
$dropper->query_safe(q{SELECT retl_drop_sync('sd')});
sleep 2.5;
others_go_on(4, 'a diff sync\'s drop is open');
$dropper->query_safe('COMMIT');
$dropper->quit;
is(psql(q{SELECT count(*) FROM retl.runs WHERE sync = 'sd'}), '0', 'the diff sync is gone with its runs');

# A run the worker does itself (retl.max_parallel_runs 0) keeps its
# sync's drop lock from its claim to its end: a drop of the sync waits for
# the run, then goes through, and the worker goes on.

# A diff sync $name whose run, in the worker (retl.max_parallel_runs 0),
# reads tc's 100 rows in 100 x $sleep seconds, started; returns the run's
# id once it is running.
sub run_in_worker
{
	my ($name, $sleep) = @_;
	psql(q{ALTER SYSTEM SET retl.max_parallel_runs = 0; SELECT pg_reload_conf()});
	psql(qq{
		SELECT retl_create_sync(name => '$name',
			source => 'SELECT id FROM tc WHERE pg_catalog.pg_sleep($sleep) IS NOT NULL',
			destination => 'dc', key => '{id}', schedule => 'manual', options => '{"backfill": false}');
		SELECT retl_run_sync('$name');
	});
	ok(within(10, qq{SELECT count(*) = 1 FROM retl.runs WHERE sync = '$name' AND status = 'running'}),
		'a run in the worker');
	return psql(qq{SELECT id FROM retl.runs WHERE sync = '$name' AND status = 'running'});
}

run_in_worker('sw', 0.02);
$dropper = $node->background_psql('postgres');
$dropper->query_until(qr/dropping/, "\\echo dropping\nSELECT retl_drop_sync('sw');\n");
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 1919251564 AND NOT granted}),
	'the drop waits for the run\'s drop lock');
($out, $failed) = $dropper->query("SELECT 'dropped'");
is($failed, 0, 'the drop went through once the run ended') or diag($dropper->{stderr});
$dropper->quit;
is(psql(q{SELECT count(*) FROM retl.runs WHERE sync = 'sw'}), '0', 'the sync is gone with its run');
# (a pass holds drop locks while it lasts; a kept one would stay)
ok(within(5, q{SELECT count(*) = 0 FROM pg_locks WHERE locktype = 'advisory' AND classid = 1919251564}),
	'the worker keeps no drop lock after it');
psql(q{ALTER SYSTEM RESET retl.max_parallel_runs; SELECT pg_reload_conf()});
others_go_on(5, 'the worker did a run and the drop went through');

# A worker stopped in the middle of a run it did itself leaves the run
# 'running'; the next worker ends such runs when it starts, but not those
# of a sync being dropped then (their rows are the drop's): it starts
# without waiting for the drop, and ends the run at a prune once the drop
# has rolled back.  (Stopped at once, by the SIGUSR2 that ends a stop
# whose pass outlasts 10 s: a SIGTERM lets the run end first.)
my $run = run_in_worker('sr', 0.05);
# and a change of sc and one of sr left in flight (as 0.1's claims marked
# them), released by the next worker's start
my ($sc_id, $sr_id) = map { psql("SELECT id FROM retl.syncs WHERE name = '$_'") } qw(sc sr);
psql(qq{INSERT INTO retl.queue (sync_id, op, key, in_flight)
		VALUES ($sc_id, 'u', '{"id": 1}', true), ($sr_id, 'u', '{"id": 2}', true)});
my $old_worker = psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'});
$old_worker =~ /^\d+$/ or die "no worker pid: '$old_worker'";
kill 'USR2', $old_worker;
$dropper = $node->background_psql('postgres');
$dropper->query_safe('BEGIN');
$dropper->query_safe(q{SELECT retl_drop_sync('sr')});
ok(within(10, qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'retl worker' AND pid <> $old_worker}),
	'a new worker started during the drop');
others_go_on(6, 'the new worker started with a run of a sync being dropped left running');
ok(within(10, qq{SELECT count(*) = 0 FROM retl.queue WHERE sync_id = $sc_id AND in_flight}),
	'it released the change left in flight of another sync');
is(psql(qq{SELECT in_flight FROM retl.queue WHERE sync_id = $sr_id}), 't',
	'not the one of the sync being dropped');
$dropper->query_safe('ROLLBACK');
$dropper->quit;
ok(within(30, qq{SELECT status = 'failed' AND error LIKE 'interrupted%' FROM retl.runs WHERE id = $run}),
	'after the rollback the run left running is ended, at a prune');
ok(within(10, q{SELECT count(*) = 0 FROM retl.queue WHERE in_flight}),
	'and the change left in flight released');
my @resent = slurp_file($node->logfile) =~ /retl worker will resend (\d+) changes/g;
is("@resent", '1 1', 'each release said so');
psql(q{ALTER SYSTEM RESET retl.max_parallel_runs; SELECT pg_reload_conf()});
psql(q{SELECT retl_drop_sync('sr')});

# Several syncs dropped in one transaction while the worker records the
# answers of their requests: no deadlock (the worker used to hold rows a
# later drop deleted while it waited for rows an earlier one had deleted).
$r->control({ path => '/m', status => 200, delay_ms => 300, count => -1 });
psql(q{
	SELECT retl_create_destination(name => 'dm', kind => 'webhook', url => '} . $r->url('/m') . q{',
		options => '{"batch_size": 5, "max_concurrency": 4}');
	CREATE TABLE tm1 (id int PRIMARY KEY);
	CREATE TABLE tm2 (id int PRIMARY KEY);
	CREATE TABLE tm3 (id int PRIMARY KEY);
	INSERT INTO tm1 SELECT generate_series(1, 200);
	INSERT INTO tm2 SELECT generate_series(1, 200);
	INSERT INTO tm3 SELECT generate_series(1, 200);
	SELECT retl_create_sync(name => 'm' || n, source => 'tm' || n, destination => 'dm')
	  FROM generate_series(1, 3) n;
});
ok(within(10, q{SELECT sum(delivered) > 0 FROM retl.sync_status WHERE sync LIKE 'm_'}),
	'three syncs delivering');
my ($dout, $derr);
my $ok = $node->psql('postgres',
	q{SELECT retl_drop_sync(name) FROM retl.syncs WHERE name LIKE 'm_' ORDER BY name DESC},
	stdout => \$dout, stderr => \$derr);
is($ok, 0, 'one transaction drops the three syncs') or diag($derr);
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name LIKE 'm_'}), '0', 'they are gone');
$r->control();

# A sync's row written by a transaction left open (retl_pause_sync not
# yet committed): the worker writes that row too (a backfill's cursor, a
# diff sync's next run), and waited for the transaction, every sync of the
# database with it; and once that transaction went on to drop the sync,
# the two deadlocked.  Now the worker leaves the row for a later pass.
my $deadlocks_before = psql(q{SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()});
$r->control({ path => '/pbf', delay_ms => 200, count => -1 });
backfill_in_flight('spbf', 'tpbf', 'dpbf', '/pbf', 1000, 10, 'a backfill under way');
my $pauser = $node->background_psql('postgres');
$pauser->query_safe('BEGIN');
$pauser->query_safe(q{SELECT retl_pause_sync('spbf')});
# (its requests are answered meanwhile: its cursor would move)
sleep 1;
others_go_on(7, 'a pause of a backfilling sync is open');
$pauser->query_safe('COMMIT');
psql(q{SELECT retl_resume_sync('spbf')});
ok(within(60, q{SELECT NOT backfilling AND pending = 0 FROM retl.sync_status WHERE sync = 'spbf'}),
	'resumed, its backfill ended');
is(psql(q{SELECT backfill_cursor::text FROM retl.syncs WHERE name = 'spbf'}), '[1000]',
	'its cursor at the last key');

psql(q{
	CREATE TABLE tpd (id int PRIMARY KEY);
	INSERT INTO tpd SELECT generate_series(1, 10);
	SELECT retl_create_sync(name => 'spd', source => 'SELECT id FROM tpd', destination => 'd', key => '{id}',
		schedule => '1 second');
});
ok(within(10, q{SELECT count(*) >= 2 FROM retl.runs WHERE sync = 'spd' AND status = 'succeeded'}),
	'a diff sync runs every second');
$pauser->query_safe('BEGIN');
$pauser->query_safe(q{SELECT retl_pause_sync('spd')});
# (its next run falls due meanwhile)
sleep 1.5;
others_go_on(8, 'a pause of a diff sync due is open');
$pauser->query_safe(q{SELECT retl_drop_sync('spd')});
$pauser->query_safe('COMMIT');

$r->control({ path => '/pbf2', delay_ms => 200, count => -1 });
backfill_in_flight('spbf2', 'tpbf2', 'dpbf2', '/pbf2', 1000, 10, 'another backfill under way');
$pauser->query_safe('BEGIN');
$pauser->query_safe(q{SELECT retl_pause_sync('spbf2')});
sleep 1;
$pauser->query_safe(q{SELECT retl_drop_sync('spbf2')});
$pauser->query_safe('COMMIT');
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name IN ('spd', 'spbf2')}), '0',
	'a pause then a drop in one transaction went through, of a diff sync and of a backfilling one');
is(psql(q{SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()}), $deadlocks_before,
	'without a deadlock');
$pauser->quit;
$r->control();

# A retl_replay left uncommitted: it ended the sync's failure streak in
# the sync's row of retl.sync_stats, which the worker's fold of delivered
# counts (about once a second) writes too: every sync waited for it.  Now
# the replay adds a delta for the fold to end the streak with.
my $replayer = $node->background_psql('postgres');
$replayer->query_safe('BEGIN');
$replayer->query_safe(q{SELECT retl_replay('s2')});
others_go_on(9, 'a replay of that sync is open');
# (a fold of its delivery falls due meanwhile)
sleep 1.5;
others_go_on(10, 'the replay is still open');
$replayer->query_safe('COMMIT');
$replayer->quit;
is(psql(q{SELECT state FROM retl.sync_status WHERE sync = 's2'}), 'active', 'its sync active');

# A retl_cancel_run of a queued run left uncommitted: the worker's claim
# of that run waited for it, every sync with it.  (The run is queued while
# its sync is paused; the sync resumes once the cancel holds the run.)
psql(q{
	CREATE TABLE tcr (id int PRIMARY KEY);
	SELECT retl_create_sync(name => 'scr', source => 'SELECT id FROM tcr', destination => 'd', key => '{id}',
		schedule => 'manual');
	SELECT retl_pause_sync('scr');
});
$run = psql(q{SELECT retl_run_sync('scr')});
my $canceller = $node->background_psql('postgres');
$canceller->query_safe('BEGIN');
$canceller->query_safe("SELECT retl_cancel_run($run)");
psql(q{SELECT retl_resume_sync('scr')});
# (the worker looks for runs to claim a few times a second)
sleep 1;
others_go_on(11, 'a cancel of a queued run is open');
$canceller->query_safe('COMMIT');
$canceller->quit;
is(psql("SELECT status FROM retl.runs WHERE id = $run"), 'cancelled', 'the run cancelled');

# More syncs with changes at once than one pass takes drop locks for
# (256, entries of the shared lock table until it commits): the pass stops
# there, the next goes on from there at once, and every sync delivers.
psql(q{
	SELECT retl_create_destination(name => 'dmany', kind => 'webhook', url => '} . $r->url('/many') . q{');
	DO $$
	BEGIN
		FOR i IN 1..300 LOOP
			EXECUTE format('CREATE TABLE many_%s (id int PRIMARY KEY)', i);
			PERFORM retl_create_sync(name => 'many_' || i, source => 'many_' || i,
									 destination => 'dmany', options => '{"backfill": false}');
		END LOOP;
	END $$;
});
psql(q{DO $$ BEGIN FOR i IN 1..300 LOOP EXECUTE format('INSERT INTO many_%s VALUES (1)', i); END LOOP; END $$});
ok(within(60, q{SELECT count(*) = 300 FROM retl.sync_status WHERE sync LIKE 'many\_%' AND delivered = 1}),
	'300 syncs with a change each, more than a pass locks: every one delivers');

# Rows of syncs that no longer exist (as a drop racing with the worker
# left them before) are deleted by the worker after a change of the
# syncs, within its prune interval (10 s).
psql(q{INSERT INTO retl.queue (sync_id, op, key) VALUES (9999, 'u', '{"id": 1}'), (9999, 'u', '{"id": 2}')});
psql(q{SELECT retl_pause_sync('s2'); SELECT retl_resume_sync('s2')});
ok(within(30, q{SELECT count(*) = 0 FROM retl.queue WHERE sync_id = 9999}),
	'queue rows of a sync that does not exist are swept');
my @swept = slurp_file($node->logfile) =~ /retl deleted (\d+) queued rows of dropped syncs/g;
is("@swept", '2', 'the sweep says what it deleted, and found nothing else to delete');

# DROP EXTENSION while requests claimed ahead wait for their slots (in a
# database of its own, where the drop is quick): the worker starts such
# requests without a transaction while nothing changed (process/parts.c),
# and the drop's commit tells it that something did (process/utility.c):
# none is sent after it, only the two already out when it committed.
# (Without that, requests claimed ahead could go out for as long as the
# worker keeps its syncs, less than a second; whether the answers here come
# within it depends on when the worker last read them, so this shows the
# behaviour, not always the fix.)
$node->safe_psql('postgres', 'CREATE DATABASE dx');
$node->safe_psql('dx', q{
	CREATE EXTENSION retl;
	CREATE TABLE ext (id int PRIMARY KEY);
	SELECT retl_create_destination(name => 'dext', kind => 'webhook', url => '} . $r->url('/ext') . q{',
		options => '{"max_concurrency": 2}');
	SELECT retl_create_sync(name => 'ext', source => 'ext', destination => 'dext', options => '{"backfill": false}');
});
# (the status of a new sync shows in a second)
sleep 1.5;
$r->control({ path => '/ext', delay_ms => 900, count => -1 });
$node->safe_psql('dx', q{INSERT INTO ext SELECT g FROM generate_series(1, 20) g});
ok(wait_for(sub { $node->safe_psql('dx', q{SELECT in_flight = 16 FROM retl.sync_status WHERE sync = 'ext'}) eq 't' }, 10),
	'two requests in flight, fourteen claimed ahead');
$node->safe_psql('dx', 'DROP EXTENSION retl CASCADE');
sleep 2.5;
my $sent = scalar @{ records_at($r, '/ext') };
# (the worker leaves at once: the two may be cut short)
ok($sent <= 2, "after DROP EXTENSION none but the two requests already out was sent ($sent answered)");
$r->control();

$node->stop;
done_testing();
