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

$node->stop;
$r->stop;
done_testing();
