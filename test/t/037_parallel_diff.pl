# Diff runs whose statement PostgreSQL plans in parallel: the run shares
# its snapshot with the statement's workers (models/probe_share.c).  The
# planner is told parallel plans cost nothing, so tables of tens of
# thousands of rows are read by a leader and two workers; auto_explain
# shows that they were.  Counts, rows sent, duplicate and NULL keys met by
# any process, a part that runs out of room for the keys the workers add,
# and jsonb keys (not shared: planned again in one process).  The part a
# runner keeps for the sync's next run: taken when what the sync stores is
# what the last run saved, loaded when it is not (its chunks written
# since, a run that failed after changing the part), edits applied to it.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use RetlRuns;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $r = start_receiver();
my $node = new_retl_node('pardiff', extra_conf => $RetlRuns::PARALLEL_CONF);

sub psql { return $node->safe_psql('postgres', $_[0]); }

psql(q{
	CREATE EXTENSION retl;
	CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, s text NOT NULL);
	INSERT INTO big SELECT g, g % 97, 's' || g FROM generate_series(1, 40000) g;
	ANALYZE big;
});
my $url = $r->url('/par');
psql(qq{SELECT retl_create_destination(name => 'd_par', kind => 'webhook', url => '$url',
	options => '{"batch_size": 500}')});

# A first run that sends nothing: its count is read in parallel, each
# process adding the keys it reads.
my $offset = -s $node->logfile;
psql(q{SELECT retl_create_sync(name => 'par', source => 'SELECT id, v, s FROM big', destination => 'd_par',
	key => '{id}', mode => 'mirror', schedule => 'manual', options => '{"backfill": false}')});
is(first_run($node, 'par'), 'succeeded|40000|40000|0|0|', 'a first run read by parallel workers');
ok(parallel_statements($node, $offset) >= 1, 'its statement had workers');

# Rows changed, removed and added, each kind in every process's share.
psql(q{UPDATE big SET v = v + 1 WHERE id % 100 = 0;
	DELETE FROM big WHERE id % 400 = 1;
	INSERT INTO big SELECT g, 1, 'n' || g FROM generate_series(40001, 40300) g;
	ANALYZE big;});
$offset = -s $node->logfile;
is(run_sync($node, 'par'), 'succeeded|40200|300|400|100|', 'a diff run in parallel: added, changed, removed');
ok(parallel_statements($node, $offset) >= 1, 'its statement had workers');
my @sent = @{ records_at($r, '/par') };
is(scalar(@sent), 800, 'each change sent once');
is(scalar(grep { $_->{op} eq 'delete' } @sent), 100, 'the removed keys as deletes');
is(join(',', sort { $a <=> $b } map { $_->{key}{id} } grep { $_->{op} eq 'delete' } @sent),
	join(',', map { $_ * 400 + 1 } 0 .. 99), 'the keys removed');
my %changed = map { $_->{key}{id} => $_->{data}{v} } grep { $_->{op} ne 'delete' } @sent;
is(scalar(grep { $_ % 100 == 0 && $_ <= 40000 } keys %changed), 400, 'the rows changed');
is(scalar(grep { $_ > 40000 } keys %changed), 300, 'the rows added');
is($changed{500}, (500 % 97) + 1, 'a changed row sent with its new values');
is(run_sync($node, 'par'), 'succeeded|40200|0|0|0|', 'a run of no change after it');
is(psql(q{SELECT count(*), sum(hash) = (SELECT sum(retl._values_hash(id, v, s)) FROM big)
	FROM retl.snapshots sn JOIN retl.syncs y ON y.id = sn.sync_id WHERE y.name = 'par'}), '40200|t', 'the snapshot holds every key with its hash');

# The runner kept the part its last run saved: the next run takes it.
my $kept = qr/run of sync \d+ takes the snapshot its runner kept from its last run/;
psql(q{UPDATE big SET v = v + 1 WHERE id % 1000 = 500});
$offset = -s $node->logfile;
is(run_sync($node, 'par'), 'succeeded|40200|0|40|0|', 'a run after a run of the sync in its runner');
like(slurp_file($node->logfile, $offset), $kept, 'it took the part its runner kept');
is(psql(q{SELECT count(*), sum(hash) = (SELECT sum(retl._values_hash(id, v, s)) FROM big)
	FROM retl.snapshots sn JOIN retl.syncs y ON y.id = sn.sync_id WHERE y.name = 'par'}), '40200|t',
	'the snapshot holds every key with its hash');
# what the sync stores written since (the same, by another transaction): loaded
psql(q{UPDATE retl.snapshot_chunks c SET data = data FROM retl.syncs y WHERE y.id = c.sync_id AND y.name = 'par';
	UPDATE big SET v = v + 1 WHERE id % 1000 = 501});
$offset = -s $node->logfile;
is(run_sync($node, 'par'), 'succeeded|40200|0|40|0|', 'a run after its snapshot was written by another transaction');
unlike(slurp_file($node->logfile, $offset), $kept, 'it loaded the part');

# A run that fails after changing the kept part (hashes of changed rows
# kept in place): the next run loads the part, and finds those changes.
psql(q{CREATE TABLE ct (id int NOT NULL, v int NOT NULL);
	INSERT INTO ct SELECT g, g FROM generate_series(1, 20000) g;
	ANALYZE ct;
	SELECT retl_create_sync(name => 'kept', source => 'SELECT id, v FROM ct', destination => 'd_par',
	key => '{id}', mode => 'mirror', schedule => 'manual', options => '{"backfill": false}');});
is(first_run($node, 'kept'), 'succeeded|20000|20000|0|0|', 'a first run');
psql(q{UPDATE ct SET v = v + 1 WHERE id % 100 = 0});
is(run_sync($node, 'kept'), 'succeeded|20000|0|200|0|', 'a diff run');
psql(q{UPDATE ct SET v = v + 1 WHERE id % 100 = 1; INSERT INTO ct VALUES (5, 0)});
$offset = -s $node->logfile;
like(run_sync($node, 'kept'), qr/^failed\|.*duplicate key \[5\]/, 'a run that fails on a duplicate key');
like(slurp_file($node->logfile, $offset), $kept, 'it had taken the kept part');
psql(q{DELETE FROM ct WHERE id = 5 AND v = 0});
$offset = -s $node->logfile;
is(run_sync($node, 'kept'), 'succeeded|20000|0|200|0|', 'the next run finds the changes the failed one saw');
unlike(slurp_file($node->logfile, $offset), $kept, 'it loaded the part');
# A resync (an edit forgetting every key) applied to the kept part
$offset = -s $node->logfile;
my $rid = psql(q{SELECT retl_resync('kept')});
wait_run($node, $rid);
is(psql(qq{SELECT status, why, added, changed FROM retl.runs WHERE id = $rid}), 'succeeded|resync|20000|0',
	'a resync sends every row again');
like(slurp_file($node->logfile, $offset), $kept, 'its run took the kept part');
is(run_sync($node, 'kept'), 'succeeded|20000|0|0|0|', 'and the run after it finds no change');

# While realtime syncs are busy (a change captured in the last 2 s), a run
# plans its statement in one process; once they are not, in parallel.
my $rt_url = $r->url('/rt');
psql(qq{CREATE TABLE rt (id int PRIMARY KEY, v text);
	SELECT retl_create_destination(name => 'd_rt', kind => 'webhook', url => '$rt_url');
	SELECT retl_create_sync(name => 'rt', source => 'rt', destination => 'd_rt', key => '{id}');});
psql(q{UPDATE big SET v = v + 1 WHERE id % 1000 = 502});
$offset = -s $node->logfile;
my $busy = psql(q{INSERT INTO rt VALUES (1, 'a'); SELECT retl_run_sync('par');});
wait_run($node, $busy);
is(psql(qq{SELECT status, changed FROM retl.runs WHERE id = $busy}), 'succeeded|40',
	'a run right after a change was captured');
like(slurp_file($node->logfile, $offset), qr/a run plans its statement in one process: realtime syncs are busy/,
	'the log says it ran in one process');
is(parallel_statements($node, $offset), 0, 'its statement had no workers');
sleep(2.5);
psql(q{UPDATE big SET v = v + 1 WHERE id % 1000 = 503});
$offset = -s $node->logfile;
is(run_sync($node, 'par'), 'succeeded|40200|0|40|0|', 'a run once realtime syncs are quiet');
ok(parallel_statements($node, $offset) >= 1, 'its statement had workers');

# A key of two rows, each read by whichever process: the run fails on it,
# in a first run (the keys added) and in a later one (a snapshot's key).
psql(q{CREATE TABLE twice (id int NOT NULL, v int NOT NULL);
	INSERT INTO twice SELECT g, g FROM generate_series(1, 30000) g;
	ANALYZE twice;
	SELECT retl_create_sync(name => 'twice_first', source => 'SELECT id % 15000 AS id, v FROM twice',
	destination => 'd_par', key => '{id}', mode => 'mirror', schedule => 'manual',
	options => '{"backfill": false}');
	SELECT retl_create_sync(name => 'twice_later', source => 'SELECT id, v FROM twice',
	destination => 'd_par', key => '{id}', mode => 'mirror', schedule => 'manual',
	options => '{"backfill": false}');});
like(first_run($node, 'twice_first'), qr/^failed\|.*duplicate key/, 'a key added twice fails a first run');
is(first_run($node, 'twice_later'), 'succeeded|30000|30000|0|0|', 'a first run of unique keys');
psql(q{INSERT INTO twice SELECT id, v + 1 FROM twice WHERE id % 1000 = 7; ANALYZE twice;});
like(run_sync($node, 'twice_later'), qr/^failed\|.*duplicate key \[\d*7\]/, 'a snapshot key read twice fails the run, shown');
is(psql(q{SELECT count(*) FROM retl.snapshots sn JOIN retl.syncs y ON y.id = sn.sync_id WHERE y.name = 'twice_later'}), '30000', 'the snapshot is as it was');

# A NULL key, met by any process: the run fails on it.
psql(q{SELECT retl_create_sync(name => 'par_null', source => 'SELECT NULLIF(id, 23456) AS id, v FROM big',
	destination => 'd_par', key => '{id}', mode => 'mirror', schedule => 'manual',
	options => '{"backfill": false}');});
like(first_run($node, 'par_null'), qr/^failed\|.*NULL key/, 'a NULL key fails the run');

# More keys added than the shared part has room for (its keys, a quarter
# more, two blocks of 1024 for each possible process): the run loads its
# part again and runs its statement in one process.
psql(q{CREATE TABLE grow (id int PRIMARY KEY, v int NOT NULL);
	INSERT INTO grow SELECT g, g FROM generate_series(1, 100) g;
	SELECT retl_create_sync(name => 'grow', source => 'SELECT id, v FROM grow',
	destination => 'd_par', key => '{id}', mode => 'mirror', schedule => 'manual',
	options => '{"backfill": false}');});
is(first_run($node, 'grow'), 'succeeded|100|100|0|0|', 'a small first run');
psql(q{INSERT INTO grow SELECT g, g FROM generate_series(101, 60100) g; ANALYZE grow;});
$offset = -s $node->logfile;
my $grow = psql(q{SELECT retl_run_sync('grow')});
wait_run($node, $grow);
is(psql(qq{SELECT status, rows, added, changed, removed FROM retl.runs WHERE id = $grow}), 'succeeded|60100|60000|0|0',
	'a run that added more keys than the shared part had room for');
like(slurp_file($node->logfile, $offset), qr/run of sync "grow" added more keys than its shared snapshot had room for/,
	'the log says it ran again');
is(psql(q{SELECT count(*) FROM retl.snapshots sn JOIN retl.syncs y ON y.id = sn.sync_id WHERE y.name = 'grow'}), '60100', 'its snapshot holds every key');

# No segment to be had (retl.test_fail's "share" point fails its creation,
# as a full /dev/shm would): the run says so and runs in one process.
psql(q{CREATE TABLE wide (id int PRIMARY KEY, v int NOT NULL);
	INSERT INTO wide SELECT g, g FROM generate_series(1, 120000) g;
	ANALYZE wide;
	ALTER SYSTEM SET retl.test_fail = 'share:no_segment';
	SELECT pg_reload_conf();});
$offset = -s $node->logfile;
psql(q{SELECT retl_create_sync(name => 'no_segment', source => 'SELECT id, v FROM wide', destination => 'd_par',
	key => '{id}', mode => 'mirror', schedule => 'manual', options => '{"backfill": false}');});
is(first_run($node, 'no_segment'), 'succeeded|120000|120000|0|0|', 'a run without a segment for its workers');
my $log = slurp_file($node->logfile, $offset);
like($log, qr/retl run could not share its snapshot with parallel workers: share of sync "no_segment" failed/,
	'the log says why');
is(parallel_statements($node, $offset), 0, 'its statement had no workers');
psql(q{ALTER SYSTEM RESET retl.test_fail; SELECT pg_reload_conf();});

# Keys of two columns (jsonb keys) are not shared: the statement is planned
# again, in one process.
psql(q{SELECT retl_create_sync(name => 'par_json', source => 'SELECT id, s, v FROM big', destination => 'd_par',
	key => '{id,s}', mode => 'mirror', schedule => 'manual', options => '{"backfill": false}');});
is(first_run($node, 'par_json'), 'succeeded|40200|40200|0|0|', 'jsonb keys: a first run');
psql(q{UPDATE big SET v = v + 1 WHERE id % 1000 = 0});
$offset = -s $node->logfile;
is(run_sync($node, 'par_json'), 'succeeded|40200|0|40|0|', 'jsonb keys: a diff run');
is(parallel_statements($node, $offset), 0, 'its statement had no workers');

# A database created by a build of 0.2 before retl._run_probe_filter: the
# run's statement of its own level, in one process.
psql(q{ALTER EXTENSION retl DROP FUNCTION retl._run_probe_filter(bigint, "any");
	ALTER EXTENSION retl DROP FUNCTION retl._run_probe_filter(jsonb, "any");
	DROP FUNCTION retl._run_probe_filter(bigint, "any"), retl._run_probe_filter(jsonb, "any");
	UPDATE big SET v = v + 1 WHERE id % 1000 = 504});
$offset = -s $node->logfile;
# (the 40 rows changed for par_json above too)
is(run_sync($node, 'par'), 'succeeded|40200|0|80|0|', 'a run without retl._run_probe_filter');
is(parallel_statements($node, $offset), 0, 'its statement had no workers');

$node->stop;
$r->stop;
done_testing();
