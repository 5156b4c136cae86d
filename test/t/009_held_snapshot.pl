# The queue under a held snapshot.  While any transaction keeps the xmin
# horizon back (a long report, pg_dump), the rows already delivered stay in
# the queue's index as dead entries; the claim scan must not step over all
# of them for every batch.  And the scan, which starts past what it has
# already seen, must still find the rows of transactions that commit late:
# they draw their queue ids before others that commit first.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $r = start_receiver();
my $node = new_retl_node('held', extra_conf => "autovacuum_naptime = 1\nretl.retry_base_ms = 1000\n");

sub psql { return $node->safe_psql('postgres', $_[0]); }

sub delivered
{
	return psql(q{SELECT delivered FROM retl.sync_status WHERE sync = 's'});
}

# Seconds until the sync's delivered count reaches $target.
sub time_to
{
	my ($target, $t0) = @_;
	wait_for(sub { delivered() >= $target }, 600) or return undef;
	return time - $t0;
}

psql(qq{
	CREATE EXTENSION retl;
	CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
	SELECT retl_create_destination(name => 'd', kind => 'webhook', url => '@{[ $r->url('/held') ]}',
		options => '{"batch_size": 1, "max_concurrency": 8}');
	SELECT retl_create_sync(name => 's', source => 't', destination => 'd');
});

# Baseline, measured in this run: 5,000 changes, one a request.
my $t0 = time;
psql(q{INSERT INTO t SELECT g FROM generate_series(1, 5000) g});
my $base = time_to(5000, $t0);
ok(defined $base, sprintf('baseline: 5,000 changes delivered in %.1f s', $base // -1));
$r->clear;

# The same rate with a repeatable read snapshot held for the whole run:
# every change delivered leaves a dead queue row no vacuum can remove.
# (Scanning from the sync's first row every time, 30,000 changes took
# minutes: each claim stepped over all those delivered before it.)
my $bg = $node->background_psql('postgres');
$bg->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$bg->query_safe('SELECT count(*) FROM t');
$t0 = time;
psql(q{INSERT INTO t SELECT g FROM generate_series(5001, 35000) g});
my $held = time_to(35000, $t0);
ok(defined $held, sprintf('30,000 changes delivered under a held snapshot in %.1f s', $held // -1));
my $ratio = defined $held && defined $base ? ($held / 6) / $base : 1e9;
cmp_ok($ratio, '<', 4,
	sprintf('under the held snapshot at %.2fx the baseline time per change (not starved)', $ratio));
$r->clear;

# A transaction that draws its queue id first and commits last: the scan
# has passed its id by then, and must still come back for it.
$bg->query_safe('COMMIT');
$bg->query_safe('BEGIN');
$bg->query_safe('UPDATE t SET v = 1 WHERE id = 1');
psql(q{UPDATE t SET v = 1 WHERE id BETWEEN 2 AND 200});
ok(wait_for(sub { delivered() >= 35199 }, 60), 'later transactions delivered while an earlier one is open');
$bg->query_safe('COMMIT');
ok(wait_for(sub { delivered() >= 35200 }, 60), 'the earlier transaction delivered once it commits');
my ($got) = grep { $_->{key}{id} == 1 } @{ delivered_records($r) };
is($got && $got->{data}{v}, 1, 'its change arrived');

# The same with the open transaction's id drawn between those of others
# committed before and after it, and with the later ones skipping over a
# key that waits for a retry.
$r->clear;
$r->control({ path => '/held', status => 500, count => 1 });
psql(q{UPDATE t SET v = 2 WHERE id = 300});
ok(wait_for(sub { psql(q{SELECT failed_attempts > 0 FROM retl.sync_status WHERE sync = 's'}) eq 't' }, 30),
	'a change waits for a retry');
psql(q{UPDATE t SET v = 2 WHERE id BETWEEN 301 AND 350});
$bg->query_safe('BEGIN');
$bg->query_safe('UPDATE t SET v = 2 WHERE id = 2');
psql(q{UPDATE t SET v = 2 WHERE id = 300});
psql(q{UPDATE t SET v = 2 WHERE id BETWEEN 351 AND 400});
$bg->query_safe('COMMIT');
ok($node->poll_query_until('postgres',
	q{SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = 's'}), 'drained');
my %last;
$last{ $_->{key}{id} } = $_->{data}{v} for @{ delivered_records($r) };
my @missing = grep { ($last{$_} // 0) != 2 } (2, 300 .. 400);
is("@missing", '', 'every change delivered, the retried key and the late one included');

# A queue id sequence altered to cache values: each session draws ids from
# a range of its own, so one session's change can get an id below those
# the scan has passed already.  The worker warns and reads each queue from
# its start (the change was never sent before).
psql(q{ALTER SEQUENCE retl.queue_id_seq CACHE 50});
my $cached = $node->background_psql('postgres');
$cached->query_safe(q{UPDATE t SET v = 3 WHERE id = 401});	# takes a range, uses its first id
psql(q{UPDATE t SET v = 3 WHERE id = 402});		# another session: the range above
my $delivered_v = sub {
	my %v;
	$v{ $_->{key}{id} } = $_->{data}{v} for @{ delivered_records($r) };
	return \%v;
};
ok(wait_for(sub { ($delivered_v->()->{402} // 0) == 3 }, 30), 'the later range delivered');
$cached->query_safe(q{UPDATE t SET v = 3 WHERE id = 403});	# an id from the first range
ok(wait_for(sub { ($delivered_v->()->{403} // 0) == 3 }, 30),
	'a change whose id is below the ones delivered before it delivered');
ok($node->log_contains('retl.queue_id_seq caches 50 values'), 'the worker says why it reads from the start');
$cached->quit;
psql(q{ALTER SEQUENCE retl.queue_id_seq CACHE 1});

# Statistics taken while a bulk insert is still in progress: the queue has
# grown on disk, ANALYZE counts none of its rows, and plans made from that
# (deletes by id walking the whole sync, seconds a statement) let requests
# time out.  The worker analyzes again once the rows are there.  In a
# database of its own, where autovacuum leaves the queue alone.
psql('CREATE DATABASE bulkdb');
$node->safe_psql('bulkdb', qq{
	CREATE EXTENSION retl;
	ALTER TABLE retl.queue SET (autovacuum_enabled = off);
	CREATE TABLE bulk (id int PRIMARY KEY);
	SELECT retl_create_destination(name => 'dbulk', kind => 'webhook', url => '@{[ $r->url('/bulk') ]}',
		options => '{"batch_size": 500, "max_concurrency": 4, "timeout_ms": 3000}');
	SELECT retl_create_sync(name => 'bulk', source => 'bulk', destination => 'dbulk');
});
my $bulk = $node->background_psql('bulkdb');
$bulk->query_safe('BEGIN');
$bulk->query_safe('INSERT INTO bulk SELECT generate_series(1, 150000)');
# the worker passes every poll interval: it analyzes the grown queue now
sleep 3;
$bulk->query_safe('COMMIT');
$bulk->quit;
my $t1 = time;
ok(wait_for(sub { $node->safe_psql('bulkdb', q{SELECT delivered FROM retl.sync_status}) == 150000 }, 180),
	sprintf('150,000 changes committed after the queue was analyzed mid-insert delivered in %.1f s', time - $t1));
is($node->safe_psql('bulkdb', q{SELECT failed_attempts FROM retl.sync_status}), '0', 'no request timed out');

$bg->quit;
$node->stop;
$r->stop;
done_testing();
