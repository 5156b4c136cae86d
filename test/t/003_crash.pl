# Crash tests: while writers commit thousands of changes, kill -9 the
# worker, and separately stop the postmaster with -m immediate and start it
# again.  Afterwards every committed change has been delivered (deduplicated
# by record id), upsert syncs converge to the table's state, and per-key
# order held.  A clean stop (-m fast) in the middle of a drain sends
# nothing twice.
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
my $node = new_retl_node('crash', extra_conf => "retl.poll_interval_ms = 200\nrestart_after_crash = on\n");

sub psql { return $node->safe_psql('postgres', $_[0]); }

psql(q{
	CREATE EXTENSION retl;
	CREATE TABLE accounts (id int PRIMARY KEY, v int NOT NULL);
	CREATE TABLE events (id bigserial PRIMARY KEY, account int NOT NULL, v int NOT NULL);
});
my $url = $r->url('/hook');
psql(qq{
	SELECT retl_create_destination(name => 'd', kind => 'webhook', url => '$url',
		options => '{"batch_size": 20}');
	SELECT retl_create_sync(name => 'accounts_out', source => 'accounts', destination => 'd');
	SELECT retl_create_sync(name => 'events_out', source => 'events', destination => 'd', mode => 'append');
});

# Each transaction bumps one account's version and records it as an event.
my $script = "$PostgreSQL::Test::Utils::tmp_check/writer.sql";
open my $fh, '>', $script or die $!;
print $fh <<'EOF';
\set a random(1, 200)
BEGIN;
INSERT INTO accounts AS t VALUES (:a, 1) ON CONFLICT (id) DO UPDATE SET v = t.v + 1;
INSERT INTO events (account, v) SELECT :a, v FROM accounts WHERE id = :a;
COMMIT;
EOF
close $fh;

sub start_writer
{
	my ($seconds) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', $seconds, '-f', $script,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \$out, '2>', \$err);
	return $h;
}

sub worker_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'});
}

# Phase 1: kill -9 the worker while the writer runs.
my $w = start_writer(6);
sleep 2;
my $pid = worker_pid();
ok($pid =~ /^\d+$/, "worker running (pid $pid)");
kill 'KILL', $pid;
note "killed worker $pid";
$w->finish;    # the writer's connections are lost in the crash restart
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'retl worker'}),
	'worker back after the crash');

# Phase 2: more writes, then an immediate stop of the postmaster.
$w = start_writer(6);
sleep 3;
$node->stop('immediate');
$w->finish;
$node->start;

# Phase 3: more writes after the restart.
$w = start_writer(3);
$w->finish;

my $events = psql(q{SELECT count(*) FROM events});
ok($events > 1000, "writers committed $events transactions");

ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM retl.queue}, 't'),
	'queue drained after the crashes')
  or diag(psql(q{SELECT * FROM retl.sync_status}));

# Everything committed was delivered.
my (%event_ids, %account_state, %last_v, $order_ok, %rids);
$order_ok = 1;
for my $req (@{ $r->requests(ok => 1) })
{
	for my $rec (@{ $req->{body}{records} })
	{
		if ($req->{body}{sync} eq 'events_out')
		{
			$event_ids{ $rec->{key}{id} } = 1;
		}
		else
		{
			$rids{ $rec->{id} }++;
			my $k = $rec->{key}{id};
			next if $rec->{op} eq 'delete';
			# per-key order: an account's delivered version never goes back,
			# not even through a duplicate resent after a crash
			$order_ok = 0 if defined $last_v{$k} && $rec->{data}{v} < $last_v{$k};
			$last_v{$k} = $rec->{data}{v};
			$account_state{$k} = $rec->{data}{v};
		}
	}
}

my @missing = grep { !$event_ids{$_} } split /\n/, psql(q{SELECT id FROM events ORDER BY id});
is(scalar @missing, 0, 'every committed event delivered (append)')
  or diag("missing events: @missing[0 .. ($#missing > 20 ? 20 : $#missing)]");
is(scalar(keys %event_ids), $events, 'no event delivered that was not committed');

my %table = map { split /\|/ } split /\n/, psql(q{SELECT id, v FROM accounts});
my @diverged = grep { ($account_state{$_} // -1) != $table{$_} } keys %table;
is(scalar @diverged, 0, 'upsert: destination converged to the table, key by key')
  or diag("diverged: @diverged[0 .. ($#diverged > 20 ? 20 : $#diverged)]");
ok($order_ok, 'per-key order held across crashes');

my $dups = grep { $_ > 1 } values %rids;
note "records delivered more than once (around crashes): $dups";
is(psql(q{SELECT sum(dead) FROM retl.sync_status}), '0', 'nothing dead-lettered');

# Phase 4: a clean stop (pg_ctl stop -m fast) in the middle of a drain at
# one record a request sends nothing twice: the worker waits for the
# requests in flight and records every answer before it exits, the 2xx
# answers it was keeping to record with later ones included.  (It stopped
# at once: those were sent again by the next worker, 20 to 200 records.)
my $clean_url = $r->url('/clean');
psql(qq{
	CREATE TABLE clean (id int PRIMARY KEY);
	SELECT retl_create_destination(name => 'clean_hook', kind => 'webhook', url => '$clean_url',
		options => '{"batch_size": 1, "max_concurrency": 4}');
	SELECT retl_create_sync(name => 'clean_out', source => 'clean', destination => 'clean_hook',
		mode => 'append');
	INSERT INTO clean SELECT g FROM generate_series(1, 3000) g;
});
# (5 ms an answer: at most 800 records a second, so the stop comes mid-way)
$r->control({ path => '/clean', delay_ms => 5, count => -1 });
ok($node->poll_query_until('postgres',
	q{SELECT delivered >= 300 FROM retl.sync_status WHERE sync = 'clean_out'}), 'the drain under way');
$node->stop('fast');
my $sent_at_stop = scalar(grep { $_->{path} eq '/clean' } @{ $r->requests(ok => 1) });
$node->start;
$r->control();
ok($node->poll_query_until('postgres',
	q{SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = 'clean_out'}), 'drained after the restart');
my %clean_ids;
$clean_ids{ $_->{body}{records}[0]{id} }++
  for grep { $_->{path} eq '/clean' } @{ $r->requests(ok => 1) };
ok($sent_at_stop < 3000, "the stop came in the middle ($sent_at_stop records sent before it)");
is(scalar(keys %clean_ids), 3000, 'every row sent');
is(scalar(grep { $_ > 1 } values %clean_ids), 0, 'none twice');

$node->stop;
$r->stop;
done_testing();
