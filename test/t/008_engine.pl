# The delivery engine under load and faults: the concurrency limit, per-key
# order with concurrent batches and random delays, Retry-After pausing one
# destination only, a failing destination not slowing a healthy one, batch
# splitting isolating exactly the bad records, linger, the rate limit, and
# SIGTERM with requests in flight.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time sleep);

my $r = start_receiver();
my $node = new_retl_node('engine', extra_conf => "retl.poll_interval_ms = 200\n");

sub psql { return $node->safe_psql('postgres', $_[0]); }

# The pid of the database's retl worker.
sub worker_pid
{
	return psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker' AND datname = 'postgres'});
}

sub drained
{
	my ($sync) = @_;
	return $node->poll_query_until('postgres',
		"SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$sync'");
}

sub make_sync
{
	my ($name, $options) = @_;
	my $url = $r->url("/$name");
	psql(qq{
		CREATE TABLE t_$name (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, email text NOT NULL DEFAULT '');
		SELECT retl_create_destination(name => 'd_$name', kind => 'webhook', url => '$url',
			options => '$options');
		SELECT retl_create_sync(name => '$name', source => 't_$name', destination => 'd_$name');
	});
}

psql('CREATE EXTENSION retl');

# Concurrency: never more requests at once than max_concurrency.
make_sync('conc', '{"max_concurrency": 4}');
$r->control({ path => '/conc', delay_ms => 300, count => -1 });
psql(q{INSERT INTO t_conc SELECT g FROM generate_series(1, 40) g});
ok(drained('conc'), '40 records delivered');
my $max = $r->stats->{max_concurrent};
ok($max <= 4, "concurrency limit held (at most $max at once)");
ok($max >= 3, "requests do run concurrently ($max at once)");
$r->control();
$r->clear;

# Per-key order with concurrent batches and random delays.
make_sync('order', '{"max_concurrency": 8, "batch_size": 5, "linger_ms": 0}');
$r->control({ path => '/order', delay_ms => 0, delay_ms_max => 60, count => -1 });
psql(q{INSERT INTO t_order SELECT g FROM generate_series(1, 20) g});
my $script = "$PostgreSQL::Test::Utils::tmp_check/order.sql";
open my $fh, '>', $script or die $!;
print $fh "\\set k random(1, 20)\nUPDATE t_order SET v = v + 1 WHERE id = :k;\n";
close $fh;
my ($out, $err) = ('', '');
IPC::Run::run([ 'pgbench', '-n', '-c', '2', '-j', '2', '-t', '300', '-f', $script,
	'-h', $node->host, '-p', $node->port, 'postgres' ], '>', \$out, '2>', \$err);
ok(drained('order'), 'drained after 600 updates');
my (%last, $regress);
for my $rec (@{ records_at($r, '/order') })
{
	my $k = $rec->{key}{id};
	$regress++ if defined $last{$k} && $rec->{data}{v} < $last{$k};
	$last{$k} = $rec->{data}{v};
}
ok(!$regress, 'per-key order held under concurrency');
my %table = map { split /\|/ } split /\n/, psql(q{SELECT id, v FROM t_order});
is_deeply(\%last, \%table, 'destination converged');

# Live figures from shared memory: rates and latency over the last minute.
ok($node->poll_query_until('postgres',
	q{SELECT records_per_s > 0 AND requests_per_s > 0 AND latency_p50_ms >= 0
	   AND latency_p99_ms >= latency_p50_ms FROM retl.sync_status WHERE sync = 'order'}),
	'sync_status shows requests/s, records/s and p50/p99 latency');
# published about once a second, so the last figure may lag the queue a little
ok($node->poll_query_until('postgres',
	q{SELECT requests_in_flight, destination_requests_in_flight FROM retl.sync_status WHERE sync = 'order'},
	'0|0'), 'and requests in flight (none once published)');
$r->control();
$r->clear;

# A 429 with Retry-After pauses that destination only.
make_sync('limited', '{"max_concurrency": 2}');
make_sync('healthy', '{"max_concurrency": 2}');
$r->control({ path => '/limited', status => 429, retry_after => '3', count => 1 });
my $t0 = time;
psql(q{INSERT INTO t_limited VALUES (1); INSERT INTO t_healthy SELECT g FROM generate_series(1, 10) g;});
ok(drained('healthy'), 'healthy destination delivered');
ok(time - $t0 < 2.5, 'while the other destination waits out its Retry-After');
ok(drained('limited'), 'limited destination delivered after its pause');
my @att = grep { $_->{path} eq '/limited' } @{ $r->requests };
ok(@att == 2 && $att[1]{t} - $att[0]{t} >= 2.9,
	sprintf('Retry-After: 3 honoured for that destination (%.1f s)', @att == 2 ? $att[1]{t} - $att[0]{t} : -1));
$r->clear;

# A failing destination does not slow a healthy one.
make_sync('down', '{"max_attempts": 1000}');
make_sync('up', '{}');
$r->control({ path => '/down', status => 503, count => -1 });
$t0 = time;
psql(q{INSERT INTO t_down SELECT g FROM generate_series(1, 20) g; INSERT INTO t_up SELECT g FROM generate_series(1, 20) g;});
ok(drained('up'), 'healthy destination drained');
my $took = time - $t0;
ok($took < 5, sprintf('in %.1f s while the other one fails', $took));
is(psql(q{SELECT state FROM retl.sync_status WHERE sync = 'down'}), 'failing', 'the failing one is failing');
psql(q{SELECT retl_pause_sync('down')});
$r->control();
$r->clear;

# A batch refused as a whole is split to isolate exactly the bad records.
make_sync('split', '{"batch_size": 8, "linger_ms": 1000}');
$r->control({ path => '/split', match => 'bad@', status => 400, count => -1 });
psql(q{INSERT INTO t_split SELECT g, 0, CASE WHEN g IN (3, 6) THEN 'bad@x' ELSE 'ok@x' END
	FROM generate_series(1, 8) g});
ok(drained('split'), 'split batch drained');
is(psql(q{SELECT string_agg(key->>'id', ',' ORDER BY (key->>'id')::int) FROM retl.dead_letters WHERE sync = 'split'}),
	'3,6', 'only the bad records dead-lettered');
is_deeply([ sort { $a <=> $b } map { $_->{key}{id} } @{ records_at($r, '/split') } ], [ 1, 2, 4, 5, 7, 8 ],
	'the others delivered');
my $requests = grep { $_->{path} eq '/split' } @{ $r->requests };
ok($requests <= 1 + 2 * 2 * 3, "bounded extra requests ($requests in all)");
$r->control();
$r->clear;

# Linger: a partial batch goes out after linger_ms, as one request.
make_sync('linger', '{"batch_size": 100, "linger_ms": 400}');
$t0 = time;
psql(q{INSERT INTO t_linger VALUES (1); INSERT INTO t_linger VALUES (2); INSERT INTO t_linger VALUES (3);});
ok(wait_for(sub { @{ records_at($r, '/linger') } >= 3 }, 10), 'partial batch flushed');
$took = time - $t0;
my @reqs = grep { $_->{path} eq '/linger' } @{ $r->requests };
is(scalar @reqs, 1, 'as one request');
ok($took >= 0.3 && $took < 3, sprintf('after the linger (%.2f s)', $took));
$r->clear;

# Rate limit: 4 requests per second.
make_sync('rate', '{"rate_limit": 4, "max_concurrency": 8}');
$t0 = time;
psql(q{INSERT INTO t_rate SELECT g FROM generate_series(1, 12) g});
ok(drained('rate'), 'rate-limited sync drained');
$took = time - $t0;
ok($took >= 1.5, sprintf('12 requests at 4/s took %.1f s', $took));
$r->clear;

# A backlog far larger than the queue's statistics say, in a database of
# its own (its queue never analyzed): claims still take one batch at a
# time, for upsert (by key) and append (by row) syncs alike.
psql('CREATE DATABASE big');
$node->safe_psql('big', qq{
	CREATE EXTENSION retl;
	CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
	SELECT retl_create_destination(name => 'd', kind => 'webhook', url => '@{[ $r->url('/big') ]}',
		options => '{"batch_size": 500, "max_concurrency": 4}');
	SELECT retl_create_sync(name => 'up', source => 't', destination => 'd');
	SELECT retl_create_sync(name => 'ap', source => 't', destination => 'd', mode => 'append');
	INSERT INTO t SELECT g FROM generate_series(1, 100000) g;
});
# (about 12 s here; claims planned on the stale statistics took 140 s)
ok(wait_for(sub { $node->safe_psql('big', q{SELECT sum(pending + in_flight) = 0 FROM retl.sync_status}) eq 't' }, 90),
	'a 2 x 100,000-change backlog drained, 500 a batch, within 90 s');
is($node->safe_psql('big', q{SELECT sum(delivered) FROM retl.sync_status}), '200000',
	'every change delivered once');
$r->clear;

# The queue after a drain that VACUUM shortened to nothing (statistics: no
# pages, no rows): the worker still reads it by its indexes.  Its plans,
# made then, read every page at each claim and outcome as the queue filled
# again (after a large drain: latency at 1,000 changes/s tripled).
make_sync('bloat', '{"max_concurrency": 8, "batch_size": 1}');
psql(q{SELECT retl_pause_sync('bloat');
	INSERT INTO t_bloat SELECT g FROM generate_series(1, 20000) g;
	DELETE FROM retl.queue q USING retl.syncs s WHERE s.id = q.sync_id AND s.name = 'bloat'});
psql('VACUUM ANALYZE retl.queue');
sleep(1.5);
my $seq = psql(q{SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'retl.queue'::regclass});
psql(q{SELECT retl_resume_sync('bloat'); UPDATE t_bloat SET v = 1 WHERE id <= 50});
my $since = time;
sleep(0.2) while scalar @{ records_at($r, '/bloat') } < 50 && time - $since < 60;
is(scalar @{ records_at($r, '/bloat') }, 50, 'the 50 changes delivered');
sleep(2.5);		# the worker's statistics are flushed at most every second
# (a few remain, outside claims and outcomes: 24 here, 324 before)
cmp_ok(psql(q{SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'retl.queue'::regclass}) - $seq,
	'<', 50, 'claims and outcomes read the queue by its indexes (fewer sequential scans than changes)');
psql(q{SELECT retl_drop_sync('bloat')});
$r->clear;

# A destination that is down: its changes wait for retries, and cost the
# other syncs nothing.  The check of a partial batch's linger reads the
# first due rows of the sync's queue from where the claim's scan starts;
# its plan is generic (the worker keeps its plans), and with statistics
# that say few rows are due (taken while they waited) it was a read of the
# whole queue, every sync's rows, at each of the worker's passes: with
# 10,000 rows waiting, 1.5 ms a pass, and the other syncs' capture-to-2xx
# latency tripled at 1,000 changes/s (303 sequential scans here).
make_sync('retrying', '{"batch_size": 100, "linger_ms": 50}');
$r->control({ path => '/retrying', status => 500, count => -1 });
psql(q{ALTER SYSTEM SET retl.retry_base_ms = 60000; ALTER SYSTEM SET retl.retry_max_ms = 600000;
	SELECT pg_reload_conf()});
sleep(0.5);
# (its rows alone in the queue: the failing sync above goes)
psql(q{SELECT retl_drop_sync('down')});
psql(q{INSERT INTO t_retrying SELECT g FROM generate_series(1, 10000) g});
ok($node->poll_query_until('postgres',
	q{SELECT bool_and(q.attempts > 0 AND NOT q.in_flight AND q.next_attempt_at > now() + interval '10 s')
	  FROM retl.queue q, retl.syncs s WHERE s.id = q.sync_id AND s.name = 'retrying'}),
	'the retrying sync waits for retries');
make_sync('next', '{"batch_size": 1}');
psql(q{ANALYZE retl.queue});
sleep(1.5);
$seq = psql(q{SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'retl.queue'::regclass});
for my $i (1 .. 40)
{
	psql("INSERT INTO t_next VALUES ($i)");
	sleep(0.05);
}
$since = time;
sleep(0.2) while scalar @{ records_at($r, '/next') } < 40 && time - $since < 60;
is(scalar @{ records_at($r, '/next') }, 40, 'the other sync delivered its 40 changes meanwhile');
sleep(2.5);
cmp_ok(psql(q{SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'retl.queue'::regclass}) - $seq,
	'<', 100, 'a sync waiting for retries is not read at every pass (few sequential scans of the queue)');
psql(q{SELECT retl_drop_sync('retrying'); SELECT retl_drop_sync('next');
	ALTER SYSTEM RESET retl.retry_base_ms; ALTER SYSTEM RESET retl.retry_max_ms; SELECT pg_reload_conf()});
$r->control();
$r->clear;

# The worker keeps the syncs and destinations it read between its passes;
# a commit that changes them is seen by its next pass, however it was made
# (here a superuser's UPDATE of the catalog, no retl function called).
# Each change is followed at once (50 ms) by a change to send: three times, so a
# worker that happened to read its syncs again on its own (at least every
# second) cannot pass for one that was told.
make_sync('moved', '{}');
ok(drained('moved'), 'idle');
my $path = '/moved';
for my $i (1 .. 3)
{
	my $url = $r->url("/moved$i");
	psql(qq{UPDATE retl.destinations SET url = '$url' WHERE name = 'd_moved'});
	# (a pass already under way when it commits still sends with the old)
	sleep 0.05;
	psql(qq{INSERT INTO t_moved VALUES ($i)});
	ok(drained('moved'), "url changed ($i): delivered");
	is_deeply([ map { $_->{key}{id} } @{ records_at($r, "/moved$i") } ], [$i], "to the new url ($i)");
	is(scalar(grep { $_->{key}{id} == $i } @{ records_at($r, $path) }), 0, "nothing to the old one ($i)");
	$path = "/moved$i";
}
psql(q{UPDATE retl.syncs SET paused = true WHERE name = 'moved'; INSERT INTO t_moved VALUES (10)});
sleep 1.5;
is(scalar @{ records_at($r, '/moved3') }, 1, 'paused by an UPDATE of retl.syncs: nothing sent');
psql(q{UPDATE retl.syncs SET paused = false WHERE name = 'moved'});
ok(drained('moved'), 'resumed by an UPDATE: delivered');
$r->clear;

# SIGTERM with requests in flight: a clean exit, nothing lost, resumed.
make_sync('term', '{"max_concurrency": 8}');
$r->control({ path => '/term', delay_ms => 2000, count => 8 });
psql(q{INSERT INTO t_term SELECT g FROM generate_series(1, 10) g});
ok($node->poll_query_until('postgres', q{SELECT in_flight > 0 FROM retl.sync_status WHERE sync = 'term'}),
	'requests in flight');
# the worker holds them in its memory: a claim marks nothing in the queue
is(psql(q{SELECT s.in_flight + s.pending = 10
		AND NOT EXISTS (SELECT 1 FROM retl.queue q JOIN retl.syncs y ON y.id = q.sync_id
						 WHERE y.name = 'term' AND q.in_flight)
	FROM retl.sync_status s WHERE s.sync = 'term'}), 't',
	'the status counts the changes in flight, which the queue does not mark');
my $pid = worker_pid();
psql("SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres',
	qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'retl worker'
		AND datname = 'postgres' AND pid <> $pid}),
	'worker exited and was started again');
ok(drained('term'), 'everything delivered after the restart');
my %ids = map { $_->{key}{id} => 1 } @{ records_at($r, '/term') };
is(scalar keys %ids, 10, 'nothing lost');
unlike(slurp_file($node->logfile), qr/PANIC|TRAP|terminated by signal/, 'clean exit');

# Requests claimed ahead (process/claims.c): with every slot taken, a
# claim takes up to seven rounds of the destination's concurrency more
# and keeps them built, holding their keys, until slots free.  They count
# in flight; the concurrency limit still holds; paused, they go back to
# the queue unsent, and a key of theirs updated meanwhile is sent only as
# it is now; a drop of their sync leaves nothing behind.
$r->clear;
make_sync('ahead', '{"max_concurrency": 2}');
$r->control({ path => '/ahead', delay_ms => 1500, count => -1 });
psql(q{INSERT INTO t_ahead SELECT g FROM generate_series(1, 20) g});
ok($node->poll_query_until('postgres',
		q{SELECT in_flight = 16 AND pending = 4 FROM retl.sync_status WHERE sync = 'ahead'}),
	'two requests in flight, fourteen claimed ahead: sixteen changes in flight');
# keys 1 and 2 are sent, 3 to 16 wait, claimed ahead
psql(q{SELECT retl_pause_sync('ahead')});
ok($node->poll_query_until('postgres',
		q{SELECT in_flight = 0 FROM retl.sync_status WHERE sync = 'ahead'}),
	'paused: the requests claimed ahead went back to the queue');
sleep 0.5;
is_deeply([ sort { $a <=> $b } map { $_->{key}{id} } @{ records_at($r, '/ahead') } ], [ 1, 2 ],
	'only the two requests in flight were sent');
# key 5 was built, claimed ahead, with v 0: it is read again
psql(q{UPDATE t_ahead SET v = 5 WHERE id = 5});
$r->control();
psql(q{SELECT retl_resume_sync('ahead')});
ok(drained('ahead'), 'resumed: drained');
my %seen;
push @{ $seen{ $_->{key}{id} } }, $_->{data}{v} for @{ records_at($r, '/ahead') };
is_deeply([ sort { $a <=> $b } keys %seen ], [ 1 .. 20 ], 'every key delivered');
ok(!grep({ @{ $seen{$_} } > 1 } grep { $_ != 5 } keys %seen), 'the others once')
	or diag explain \%seen;
# (twice, maybe: its change and its update are two queue rows)
is(join(',', grep { $_ != 5 } @{ $seen{5} }), '', 'key 5 only as it is now');
ok($r->stats->{max_concurrent} <= 2, 'the concurrency limit held (' . $r->stats->{max_concurrent} . ' at most)');

my $worker = worker_pid();
make_sync('ahead_drop', '{"max_concurrency": 2}');
$r->control({ path => '/ahead_drop', delay_ms => 1500, count => -1 });
psql(q{INSERT INTO t_ahead_drop SELECT g FROM generate_series(1, 20) g});
ok($node->poll_query_until('postgres',
		q{SELECT in_flight = 16 FROM retl.sync_status WHERE sync = 'ahead_drop'}),
	'a second sync: fourteen changes claimed ahead');
psql(q{SELECT retl_drop_sync('ahead_drop')});
sleep 2;
ok(@{ records_at($r, '/ahead_drop') } <= 2, 'dropped: what was claimed ahead was not sent');
$r->control();
psql(q{INSERT INTO t_ahead VALUES (21)});
ok(drained('ahead'), 'the worker goes on');
is(worker_pid(),
	$worker, 'the same worker');
is(psql(q{SELECT count(*) FROM retl.queue q WHERE NOT EXISTS (SELECT 1 FROM retl.syncs s WHERE s.id = q.sync_id)}),
	'0', 'nothing of the dropped sync left in the queue');
$r->clear;

# Requests claimed ahead start as their slots free before the pass's
# transactions, without one (process/parts.c): a drop left open in its
# transaction keeps them waiting all the same (its lock, taken for a
# moment).  Rolled back, every key is delivered once.
make_sync('ahead_open', '{"max_concurrency": 2}');
$r->control({ path => '/ahead_open', delay_ms => 2000, count => 2 });
psql(q{INSERT INTO t_ahead_open SELECT g FROM generate_series(1, 20) g});
ok($node->poll_query_until('postgres',
		q{SELECT in_flight = 16 FROM retl.sync_status WHERE sync = 'ahead_open'}),
	'two requests in flight, fourteen claimed ahead');
my $dropper = $node->background_psql('postgres');
$dropper->query_safe('BEGIN');
$dropper->query_safe(q{SELECT retl_drop_sync('ahead_open')});
# the two are answered two seconds after they were sent
sleep 3;
is(scalar @{ records_at($r, '/ahead_open') }, 2,
	'a drop open: the slots the answers freed took nothing claimed ahead');
$dropper->query_safe('ROLLBACK');
$dropper->quit;
ok(drained('ahead_open'), 'the drop rolled back: drained');
%seen = ();
$seen{ $_->{key}{id} }++ for @{ records_at($r, '/ahead_open') };
is_deeply([ sort { $a <=> $b } keys %seen ], [ 1 .. 20 ], 'every key delivered');
ok(!grep({ $_ > 1 } values %seen), 'once each') or diag explain \%seen;
$r->clear;

# With every slot taken and less than a round claimed ahead left, the
# next rounds are claimed at once, while the requests in flight are out
# (process/parts.c): two slots, fourteen claimed ahead, every request
# answered half a second after it came.  While changes wait in the queue,
# more than the two requests in flight are always held (before, once every
# request claimed ahead was sent, only the two were, for one round of
# every eight).
make_sync('topup', '{"max_concurrency": 2}');
$r->control({ path => '/topup', delay_ms => 500, count => -1 });
psql(q{INSERT INTO t_topup SELECT g FROM generate_series(1, 40) g});
ok($node->poll_query_until('postgres',
		q{SELECT in_flight > 0 FROM retl.sync_status WHERE sync = 'topup'}),
	'requests of the sync in flight');
my @low;
my $samples = 0;
for (;;)
{
	my ($held, $pending) = split /\|/,
	  psql(q{SELECT in_flight, pending FROM retl.sync_status WHERE sync = 'topup'});
	last if $pending == 0;
	$samples++;
	push @low, "$held held, $pending pending" if $held <= 2;
	sleep 0.25;
}
ok($samples >= 8, "sampled while changes waited ($samples times)");
is(join('; ', @low), '', 'more than the two requests in flight held whenever changes waited');
$r->control();
ok(drained('topup'), 'drained');
%seen = ();
$seen{ $_->{key}{id} }++ for @{ records_at($r, '/topup') };
is_deeply([ sort { $a <=> $b } keys %seen ], [ 1 .. 40 ], 'every key delivered');
ok(!grep({ $_ > 1 } values %seen), 'once each') or diag explain \%seen;
ok($r->stats->{max_concurrent} <= 2, 'the concurrency limit held (' . $r->stats->{max_concurrent} . ' at most)');
$r->clear;

# A sync that claims ahead fewer batches than its concurrency (batch_size
# 100: two, with four slots), whose refused batch's halves wait beside
# them while every slot is taken: the claim ahead takes what is missing of
# its two, never a negative count (that failed the sync: "invalid memory
# alloc request size").
make_sync('topbig', '{"max_concurrency": 4, "batch_size": 100}');
$r->control({ path => '/topbig', status => 422, count => 1 }, { path => '/topbig', delay_ms => 500, count => -1 });
psql(q{INSERT INTO t_topbig SELECT g FROM generate_series(1, 1000) g});
ok(drained('topbig'), 'a refused batch\'s halves beside requests claimed ahead: drained');
%seen = ();
$seen{ $_->{key}{id} }++ for @{ records_at($r, '/topbig') };
is(scalar keys %seen, 1000, 'every key delivered');
ok(!grep({ $_ > 1 } values %seen), 'once each');
unlike(slurp_file($node->logfile), qr/sync "topbig" failed/, 'the sync never failed');
$r->clear;

# While a sync's requests claimed ahead outlast its destination's free
# slots, its 2xx answers are left to be recorded together later
# (worker.c), but for about 20 ms: an answer is recorded while the
# requests beside it, slow (3 s), are still in flight and others still
# wait for their slots.  (Without the bound it would wait until the
# requests claimed ahead no longer outlast the slots: after the slow
# ones, when more than this one are delivered.)
make_sync('rec', '{"max_concurrency": 2}');
$r->control({ path => '/rec', count => 1 }, { path => '/rec', delay_ms => 3000, count => -1 });
psql(q{INSERT INTO t_rec SELECT g FROM generate_series(1, 10) g});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 9 FROM retl.queue q JOIN retl.syncs s ON s.id = q.sync_id WHERE s.name = 'rec'}),
	'the first answer recorded');
is(scalar @{ records_at($r, '/rec') }, 1, 'while the two requests after it are in flight');
# (the status of a new sync shows in a second)
ok($node->poll_query_until('postgres', q{SELECT in_flight > 2 FROM retl.sync_status WHERE sync = 'rec'}),
	'and requests claimed ahead wait');
is(scalar @{ records_at($r, '/rec') }, 1, 'still');
$r->control();
ok(drained('rec'), 'then all delivered');
is(psql(q{SELECT delivered FROM retl.sync_status WHERE sync = 'rec'}), '10', 'and counted once each');
$r->clear;

# The worker keeps the sockets it waits on from one wait to the next, the
# idle kept-alive connections among them (watch.c).  Their server gone,
# each becomes readable, and stays so: the worker must stop watching them,
# not wake up again and again (CPU time of the worker, clock ticks from
# /proc, over 3 s; a worker woken by them spent the whole 3 s).
$pid = worker_pid();
sub cpu_ticks
{
	my @f = split ' ', (split /\)/, slurp_file("/proc/$pid/stat"))[-1];
	return $f[11] + $f[12];    # utime, stime
}
make_sync('idle', '{"max_concurrency": 1}');
psql(q{INSERT INTO t_idle SELECT g FROM generate_series(1, 20) g});
ok(drained('idle'), 'delivered, over a connection kept alive');
$r->stop;
sleep 0.5;
my $ticks = cpu_ticks();
sleep 3;
$ticks = cpu_ticks() - $ticks;
ok($ticks < 50, "server gone: the worker idles ($ticks ticks in 3 s)");

$node->stop;
done_testing();
