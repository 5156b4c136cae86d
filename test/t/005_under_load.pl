# Delivery keeps going while writers commit to a synced table without pause:
# every commit wakes the worker, and libcurl must still hear from its
# sockets and its timers (request timeouts) in between.  A regression test
# for a worker that, woken at every commit, never let libcurl progress.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(sleep);

my $r = start_receiver();
my $node = new_retl_node('load');

sub psql { return $node->safe_psql('postgres', $_[0]); }

psql(q{
	CREATE EXTENSION retl;
	CREATE TABLE hot (id int PRIMARY KEY, v int NOT NULL);
	INSERT INTO hot SELECT g, 0 FROM generate_series(1, 500) g;
});
my $url = $r->url('/hot');
psql(qq{
	SELECT retl_create_destination(name => 'd', kind => 'webhook', url => '$url',
		options => '{"batch_size": 50, "timeout_ms": 500}');
	SELECT retl_create_sync(name => 'hot_out', source => 'hot', destination => 'd',
		options => '{"backfill": false}');
});

my $script = "$PostgreSQL::Test::Utils::tmp_check/load.sql";
open my $fh, '>', $script or die $!;
print $fh "\\set k random(1, 500)\nUPDATE hot SET v = v + 1 WHERE id = :k;\n";
close $fh;

# The first request stalls past the destination's 500 ms timeout.
$r->control({ delay_ms => 2500, count => 1 });
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '8', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);
sleep 4;
my ($delivered, $failed) = split /\|/,
  psql(q{SELECT delivered, failed_attempts FROM retl.sync_status WHERE sync = 'hot_out'});
ok($failed >= 1, "request timeout enforced while writers commit (failed attempts: $failed)");
ok($delivered > 0, "deliveries progress while writers commit (delivered: $delivered)");
$h->finish;
like($out, qr/number of transactions actually processed: \d+/, 'writer ran');

ok($node->poll_query_until('postgres',
	q{SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = 'hot_out'}),
	'drained after the writers stop');
my %last;
for my $rec (@{ delivered_records($r) })
{
	$last{ $rec->{key}{id} } = $rec->{data}{v};
}
my %table = map { split /\|/ } split /\n/, psql(q{SELECT id, v FROM hot WHERE v > 0});
my @diverged = grep { ($last{$_} // -1) != $table{$_} } keys %table;
is(scalar @diverged, 0, 'destination converged to the table');

# The capture trigger writes its queue rows itself (capture/queue_insert.c),
# with the indexes of retl.queue it knows: one built, and one rebuilt,
# concurrently while writers capture still gets every row.  amcheck's
# heapallindexed check finds each queue row in each index.
psql(q{
	CREATE TABLE cic (id bigint PRIMARY KEY, v int NOT NULL);
	SELECT retl_create_sync(name => 'cic_out', source => 'cic', destination => 'd',
		options => '{"backfill": false}');
	SELECT retl_pause_sync('cic_out');
});
my $cic_script = "$PostgreSQL::Test::Utils::tmp_check/cic.sql";
open $fh, '>', $cic_script or die $!;
print $fh "\\set k random(1, 1000000000)\nINSERT INTO cic VALUES (:k, 1) ON CONFLICT DO NOTHING;\n";
close $fh;
($out, $err) = ('', '');
$h = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '6', '-f', $cic_script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);
sleep 1;
psql(q{CREATE INDEX CONCURRENTLY queue_regress_cic ON retl.queue (captured_at, id)});
psql(q{REINDEX INDEX CONCURRENTLY retl.queue_pkey});
$h->finish;
like($out, qr/number of transactions actually processed: \d+/, 'writers captured meanwhile');
is(psql(q{SELECT count(*) = (SELECT count(*) FROM cic) FROM retl.queue q
	JOIN retl.syncs s ON s.id = q.sync_id WHERE s.name = 'cic_out'}),
	't', 'a queue row for each row written');
psql(q{CREATE EXTENSION amcheck});
is(psql(q{SELECT count(*) FROM pg_index i,
	LATERAL (SELECT public.bt_index_check(i.indexrelid, true)) c
	WHERE i.indrelid = 'retl.queue'::regclass}),
	'2', "every queue row in each of the queue's two indexes, the one built and the primary key rebuilt concurrently");
psql(q{DROP INDEX retl.queue_regress_cic; DROP EXTENSION amcheck; SELECT retl_drop_sync('cic_out');});

$node->stop;
$r->stop;
done_testing();
