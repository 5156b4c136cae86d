# A diff run's changes queued as its statement returns them
# (models/run_queue.c): the statement's leader writes them into retl.queue
# with ids taken before it, while parallel workers read on.  The changes
# within those ids, beyond them (through pg_temp.retl_run_diff), a value
# large enough to be toasted, a run that fails after queueing (nothing
# queued), a statement run again after its part ran out of room (the rows
# it had queued deleted first), and a retl.queue that is not as retl
# writes it directly (everything after the statement): each change sent
# once, with its values.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use RetlRuns;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::MD5 qw(md5_hex);

my $r = start_receiver();
my $node = new_retl_node('runqueue', extra_conf => $RetlRuns::PARALLEL_CONF);

sub psql { return $node->safe_psql('postgres', $_[0]); }

# What the log says since offset of the changes a run queued as its
# statement returned them ('' if it says nothing)
sub queued_direct
{
	my ($offset, $sync) = @_;
	my $log = slurp_file($node->logfile, $offset);
	return $log =~ /run of sync "$sync" queued (\d+) changes as its statement returned them/ ? $1 : '';
}

# The records sent to a path since the count before: keys each sent once?
sub sent_once
{
	my ($path, $before) = @_;
	my @all = @{ records_at($r, $path) };
	my @new = @all[ $before .. $#all ];
	my %seen;
	$seen{ $_->{key}{id} }++ for @new;
	return (scalar(@new), scalar(grep { $_ > 1 } values %seen), \@new);
}

psql(q{
	CREATE EXTENSION retl;
	CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, s text NOT NULL);
	INSERT INTO t SELECT g, g % 97, 's' || g FROM generate_series(1, 40000) g;
	ANALYZE t;
});
for my $d (qw(q big dup grow shape))
{
	my $url = $r->url("/$d");
	psql(qq{SELECT retl_create_destination(name => 'd_$d', kind => 'webhook', url => '$url',
		options => '{"batch_size": 500}')});
}
psql(q{SELECT retl_create_sync(name => 'q', source => 'SELECT id, v, s FROM t', destination => 'd_q',
	key => '{id}', mode => 'mirror', schedule => 'manual', options => '{"backfill": false}')});
is(first_run($node, 'q'), 'succeeded|40000|40000|0|0|', 'a first run that sends nothing');

# Fewer changes than the ids taken (a hundredth of the snapshot, and a
# quarter more: 500): every one queued as the statement returned it.
psql(q{UPDATE t SET v = v + 1 WHERE id % 200 = 0});
my $offset = -s $node->logfile;
is(run_sync($node, 'q'), 'succeeded|40000|0|200|0|', 'a diff run of 200 changes');
ok(parallel_statements($node, $offset) >= 1, 'its statement had workers');
is(queued_direct($offset, 'q'), '200', 'it queued them as its statement returned them');
my ($n, $twice, $new) = sent_once('/q', 0);
is("$n|$twice", '200|0', 'each change sent once');
my %v = map { $_->{key}{id} => $_->{data}{v} } @$new;
is($v{400}, (400 % 97) + 1, 'a change sent with its new values');
is(psql(q{SELECT count(*) FROM retl.queue}), '0', 'the queue drained');

# More changes than the ids taken: the rest queued after the statement,
# with the removed keys.
my $before = scalar(@{ records_at($r, '/q') });
psql(q{UPDATE t SET v = v + 1 WHERE id % 100 = 1;
	DELETE FROM t WHERE id % 400 = 3;
	INSERT INTO t SELECT g, 1, 'n' || g FROM generate_series(40001, 40300) g;
	ANALYZE t;});
$offset = -s $node->logfile;
is(run_sync($node, 'q'), 'succeeded|40200|300|400|100|', 'a diff run of 800 changes');
is(queued_direct($offset, 'q'), '500', 'it queued 500 as its statement returned them');
($n, $twice, $new) = sent_once('/q', $before);
is("$n|$twice", '800|0', 'each change sent once');
is(scalar(grep { $_->{op} eq 'delete' } @$new), 100, 'the removed keys as deletes');
is(scalar(grep { $_->{op} ne 'delete' && $_->{key}{id} > 40000 && $_->{data}{s} eq "n$_->{key}{id}" } @$new),
	300, 'the added rows with their values');
is(psql(q{SELECT count(*), sum(hash) = (SELECT sum(retl._values_hash(id, v, s)) FROM t)
	FROM retl.snapshots sn JOIN retl.syncs y ON y.id = sn.sync_id WHERE y.name = 'q'}), '40200|t',
	'the snapshot holds every key with its hash');

# Values large enough to be stored out of line (TOAST), written by the
# statement's leader while its workers read.
psql(q{CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, doc text NOT NULL);
	INSERT INTO big SELECT g, g, 'd' || g FROM generate_series(1, 30000) g;
	ANALYZE big;
	SELECT retl_create_sync(name => 'big', source => 'SELECT id, v, doc FROM big', destination => 'd_big',
	key => '{id}', mode => 'mirror', schedule => 'manual', options => '{"backfill": false}');});
is(first_run($node, 'big'), 'succeeded|30000|30000|0|0|', 'a first run');
psql(q{UPDATE big SET doc = (SELECT string_agg(md5(g::text || b.id), '') FROM generate_series(1, 1000) g)
	FROM big b WHERE b.id = big.id AND big.id % 3000 = 0;
	UPDATE big SET v = v + 1 WHERE id % 300 = 1;});
$offset = -s $node->logfile;
is(run_sync($node, 'big'), 'succeeded|30000|0|110|0|', 'a diff run of changes with large values');
ok(parallel_statements($node, $offset) >= 1, 'its statement had workers');
is(queued_direct($offset, 'big'), '110', 'it queued them as its statement returned them');
($n, $twice, $new) = sent_once('/big', 0);
is("$n|$twice", '110|0', 'each change sent once');
my %doc = map { $_->{key}{id} => $_->{data}{doc} } @$new;
is(psql(q{SELECT string_agg(md5(doc), ',' ORDER BY id) FROM big WHERE id % 3000 = 0}),
	join(',', map { md5_hex($doc{ $_ * 3000 }) } 1 .. 10), 'the large values sent whole');

# A run that fails after its statement queued changes (a key of two rows,
# found after it): nothing queued, nothing sent; the next run sends them.
psql(q{CREATE TABLE dup (id int NOT NULL, v int NOT NULL);
	INSERT INTO dup SELECT g, g FROM generate_series(1, 20000) g;
	ANALYZE dup;
	SELECT retl_create_sync(name => 'dup', source => 'SELECT id, v FROM dup', destination => 'd_dup',
	key => '{id}', mode => 'mirror', schedule => 'manual', options => '{"backfill": false}');});
is(first_run($node, 'dup'), 'succeeded|20000|20000|0|0|', 'a first run');
psql(q{UPDATE dup SET v = v + 1 WHERE id % 100 = 0; INSERT INTO dup VALUES (7, 0)});
$offset = -s $node->logfile;
like(run_sync($node, 'dup'), qr/^failed\|.*duplicate key \[7\]/, 'a run that fails on a duplicate key');
like(queued_direct($offset, 'dup'), qr/^20[01]$/, 'its statement had queued its changes');
is(psql(q{SELECT count(*) FROM retl.queue q JOIN retl.syncs y ON y.id = q.sync_id WHERE y.name = 'dup'}), '0',
	'nothing of it is queued');
is(scalar(@{ records_at($r, '/dup') }), 0, 'nothing of it was sent');
psql(q{DELETE FROM dup WHERE id = 7 AND v = 0});
is(run_sync($node, 'dup'), 'succeeded|20000|0|200|0|', 'the next run');
($n, $twice) = sent_once('/dup', 0);
is("$n|$twice", '200|0', 'it sent each change once');

# A statement run again (more keys added than its shared part had room
# for): the rows it had queued are deleted first.
psql(q{CREATE TABLE grow (id int PRIMARY KEY, v int NOT NULL);
	INSERT INTO grow SELECT g, g FROM generate_series(1, 100) g;
	SELECT retl_create_sync(name => 'grow', source => 'SELECT id, v FROM grow',
	destination => 'd_grow', key => '{id}', mode => 'mirror', schedule => 'manual',
	options => '{"backfill": false}');});
is(first_run($node, 'grow'), 'succeeded|100|100|0|0|', 'a small first run');
psql(q{INSERT INTO grow SELECT g, g FROM generate_series(101, 60100) g; ANALYZE grow;});
$offset = -s $node->logfile;
is(run_sync($node, 'grow'), 'succeeded|60100|60000|0|0|', 'a run that added more keys than its shared part had room for');
my $log = slurp_file($node->logfile, $offset);
like($log, qr/run of sync "grow" added more keys than its shared snapshot had room for/, 'its statement ran again');
is(queued_direct($offset, 'grow'), '256', 'it queued the ids it had as its statement returned them');
($n, $twice) = sent_once('/grow', 0);
is("$n|$twice", "60000|0", "each added row sent once");

# A retl.queue that is not as retl writes it directly (an index on an
# expression of its own): the changes are all queued after the statement.
psql(q{CREATE INDEX queue_key_text ON retl.queue ((key ->> 0));
	UPDATE t SET v = v + 1 WHERE id % 400 = 0});
$before = scalar(@{ records_at($r, '/q') });
$offset = -s $node->logfile;
is(run_sync($node, 'q'), 'succeeded|40200|0|100|0|', 'a diff run beside an index retl does not know');
is(queued_direct($offset, 'q'), '', 'nothing queued as its statement returned it');
($n, $twice) = sent_once('/q', $before);
is("$n|$twice", '100|0', 'each change sent once');
psql(q{DROP INDEX retl.queue_key_text});

$node->stop;
$r->stop;
done_testing();
