# Dropping a sync whose queued changes another transaction holds (as the
# worker's claims and outcomes do) in another order than the drop deletes
# them: the deadlock cancels the drop's delete, which gives the rows back,
# waits and deletes again, and the drop succeeds.  (The regression test
# "roles" failed so, now and then, on the worker's claim.)  Then the worker
# never waiting for a sync's table, and the queue rows a drop left behind
# swept.
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
	INSERT INTO t VALUES (1), (2);
});
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

psql(q{
	CREATE TABLE t1 (id int PRIMARY KEY);
	CREATE TABLE t2 (id int PRIMARY KEY);
	CREATE TABLE t3 (id int PRIMARY KEY);
	SELECT retl_create_sync(name => s, source => 't' || n, destination => 'd', options => '{"backfill": false}')
	  FROM (VALUES ('s1', 1), ('s2', 2), ('s3', 3)) v(s, n);
	SELECT retl_pause_sync('s1');
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

# A sync dropped while requests of its backfill are in flight: the records
# they carry are not in the queue, and when the worker records their
# refusal it queues them, under a snapshot that still sees the sync (the
# drop has not committed; the worker's transaction then waits for the
# drop's, on the sync's row of retl.sync_stats, and commits after it).
# The drop's delete did not see those rows: the worker's sweep deletes
# them once the drop has committed (they stayed for good before).
$r->control({ path => '/bf', status => 500, delay_ms => 1500, count => -1 });
psql(q{
	CREATE TABLE tb (id int PRIMARY KEY);
	INSERT INTO tb SELECT generate_series(1, 200);
	SELECT retl_create_destination(name => 'dbf', kind => 'webhook', url => '} . $r->url('/bf') . q{',
		options => '{"batch_size": 50, "max_concurrency": 2}');
	SELECT retl_create_sync(name => 'sbf', source => 'tb', destination => 'dbf');
});
my $sid = psql(q{SELECT id FROM retl.syncs WHERE name = 'sbf'});
ok(within(10, q{SELECT requests_in_flight = 2 FROM retl.sync_status WHERE sync = 'sbf'}),
	'two requests of the backfill in flight');
my $dropper = $node->background_psql('postgres');
$dropper->query_safe('BEGIN');
$dropper->query_safe(q{SELECT retl_drop_sync('sbf')});
# the requests are answered, 1.5 s after they were sent
sleep 2.5;
$dropper->query_safe('COMMIT');
$dropper->quit;
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'sbf'}), '0', 'the sync is dropped');
ok(within(30, qq{SELECT count(*) = 0 FROM retl.queue WHERE sync_id = $sid}),
	'the rows it left in the queue are swept');
like(slurp_file($node->logfile), qr/retl deleted \d+ queued rows of dropped syncs/,
	'the sweep says what it deleted');
$r->control();

$node->stop;
done_testing();
