# Logical capture and the source table's key changing under it.  Each
# case was found by a helper's hunt and failed before its fix:
#
# - A key column retyped (text to integer) while changes of keys the new
#   type cannot take are still in the WAL: staging cast every decoded key
#   to the column's type now, 'abc'::int failed the whole round, and it
#   failed again at every retry: no logical sync of the database captured
#   anything any more.  Now such a change is queued with its key as
#   decoded (a state sync's as a delete: no row can have that key now),
#   and the rest as before.
# - The replica identity lost (the primary key dropped, or REPLICA
#   IDENTITY NOTHING): a delete came without its key and was dropped
#   without a word, a key change went as an upsert of the new key alone;
#   the destination kept the rows.  Now the sync shows the error and the
#   server log says so (once a minute a sync).
# - One transaction of over 1 GB for one sync: its changes went into one
#   array ("array size exceeds the maximum allowed"), and the round failed
#   forever.  Now a sync's changes are staged in parts of at most 64 MB.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $r = start_receiver();
my $node = new_retl_node('logical_keys');
sub psql { return $node->safe_psql('postgres', $_[0]); }

# (a minor of PostgreSQL 15 that has output_plugin_libraries: README)
if (psql(q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '1')
{
	psql(q{ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, retl; SELECT pg_reload_conf();});
	$node->poll_query_until('postgres', q{SELECT current_setting('output_plugin_libraries') LIKE '%retl%'});
}

sub records { return @{ records_at($r, $_[0]) }; }

# The receiver heard of $key at $path last as $what ('delete', or a row's v).
sub last_is
{
	my ($path, $key, $what) = @_;
	my @mine = grep { defined $_->{key}{id} && $_->{key}{id} eq $key } records($path);
	return 0 unless @mine;
	my $last = $mine[-1];
	return ($last->{op} eq 'delete' ? 'delete' : ($last->{data}{v} // '')) eq $what;
}

psql(q{CREATE EXTENSION retl;
	CREATE TABLE tk (id text PRIMARY KEY, v text);
	INSERT INTO tk VALUES ('abc', 'a'), ('7', 'b');
	CREATE TABLE other (id int PRIMARY KEY, v text);
	SELECT retl_create_destination(name => 'dtk', kind => 'webhook', url => '} . $r->url('/tk') . q{');
	SELECT retl_create_destination(name => 'dother', kind => 'webhook', url => '} . $r->url('/other') . q{');
	SELECT retl_create_sync(name => 'tk_out', source => 'tk', destination => 'dtk', capture => 'logical');
	SELECT retl_create_sync(name => 'other_out', source => 'other', destination => 'dother', capture => 'logical');});
ok(wait_for(sub { last_is('/tk', 'abc', 'a') && last_is('/tk', '7', 'b') }, 30), 'text keys backfilled');

# The worker held before its next staging round (a lock on its stream
# state) while the changes and the retyping are written.
my $lock = hold_staging($node);
psql(q{INSERT INTO tk VALUES ('x1', 'c'); UPDATE tk SET v = 'c2' WHERE id = 'x1';
	DELETE FROM tk WHERE id IN ('abc', 'x1');
	UPDATE tk SET v = 'b2' WHERE id = '7';
	ALTER TABLE tk ALTER COLUMN id TYPE int USING id::int;
	INSERT INTO tk VALUES (8, 'd');
	INSERT INTO other VALUES (1, 'o');});
$lock->query_safe('COMMIT');
$lock->quit;
ok(wait_for(sub { last_is('/other', '1', 'o') }, 30), 'key retyped: the other logical sync goes on');
ok(wait_for(sub { last_is('/tk', '8', 'd') && last_is('/tk', '7', 'b2') }, 30),
	'key retyped: the changes after it and those of keys it takes are sent');
ok(wait_for(sub { last_is('/tk', 'abc', 'delete') }, 30), 'key retyped: a deleted key it cannot take is deleted');
ok(last_is('/tk', 'x1', 'delete'), 'and one inserted, updated and deleted before is sent as a delete');
ok($node->poll_query_until('postgres', q{SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = 'tk_out'}),
	'tk_out drained');
is(psql(q{SELECT state || ' ' || coalesce(last_error, '') FROM retl.sync_status WHERE sync = 'tk_out'}), 'active ',
	'tk_out is not failing');
is(psql(q{SELECT count(*) FROM retl.dead_letters}), '0', 'nothing dead-lettered');

# The replica identity lost: the primary key dropped.
psql(q{CREATE TABLE ti (id int PRIMARY KEY, v text);
	INSERT INTO ti SELECT g, 'v' || g FROM generate_series(1, 5) g;
	SELECT retl_create_destination(name => 'dti', kind => 'webhook', url => '} . $r->url('/ti') . q{');
	SELECT retl_create_sync(name => 'ti_out', source => 'ti', destination => 'dti', capture => 'logical');});
ok(wait_for(sub { last_is('/ti', '5', 'v5') }, 30), 'ti backfilled');
my $log_from = -s $node->logfile;
psql(q{ALTER TABLE ti DROP CONSTRAINT ti_pkey; DELETE FROM ti WHERE id = 1;});
ok($node->poll_query_until('postgres', q{SELECT state = 'failing' AND last_error LIKE
	'a delete of table public.ti came without the sync''s key: the table''s replica identity no longer holds it'
	FROM retl.sync_status WHERE sync = 'ti_out'}),
	'primary key dropped: a delete shows on the sync as lost');
ok(wait_for(sub { slurp_file($node->logfile, $log_from) =~
	/WARNING:  retl sync "ti_out" cannot capture every change of its table\n.*DETAIL:  Logical capture: a delete of table public.ti came without the sync's key/ }, 10),
	'and in the server log');
psql(q{UPDATE ti SET id = 100 WHERE id = 2; UPDATE ti SET v = 'w' WHERE id = 3;});
psql(qq{UPDATE ti SET v = 'w$_' WHERE id = 5}) for 1 .. 5;
ok(wait_for(sub { last_is('/ti', '100', 'v2') && last_is('/ti', '3', 'w') }, 30),
	'updates without the identity: the new state is sent');
ok($node->poll_query_until('postgres', q{SELECT last_error = 'an update (its old key) of table public.ti came without the sync''s key: the table''s replica identity no longer holds it'
	FROM retl.sync_status WHERE sync = 'ti_out'}),
	'and the key change that could not be seen shows');
my $lines = () = slurp_file($node->logfile, $log_from) =~ /cannot capture every change/g;
ok($lines >= 1 && $lines <= 2, "the log says it once a minute, not once a change ($lines)");

# REPLICA IDENTITY FULL holds the key: deletes flow again.
psql(q{ALTER TABLE ti REPLICA IDENTITY FULL; DELETE FROM ti WHERE id = 4;});
ok(wait_for(sub { last_is('/ti', '4', 'delete') }, 30), 'REPLICA IDENTITY FULL: the delete is sent');

# A partition of its own replica identity, the other with its columns in
# another order (its key column numbered differently).
psql(q{CREATE TABLE pt (id int, v text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
	CREATE TABLE pt1 (v text, id int NOT NULL);
	ALTER TABLE pt ATTACH PARTITION pt1 FOR VALUES FROM (0) TO (100);
	CREATE TABLE pt2 PARTITION OF pt FOR VALUES FROM (100) TO (200);
	INSERT INTO pt VALUES (1, 'a'), (101, 'b');
	SELECT retl_create_destination(name => 'dpt', kind => 'webhook', url => '} . $r->url('/pt') . q{');
	SELECT retl_create_sync(name => 'pt_out', source => 'pt', destination => 'dpt', capture => 'logical');});
ok(wait_for(sub { last_is('/pt', '1', 'a') && last_is('/pt', '101', 'b') }, 30), 'pt backfilled');
psql(q{ALTER TABLE pt2 REPLICA IDENTITY NOTHING; DELETE FROM pt WHERE id IN (1, 101);});
ok(wait_for(sub { last_is('/pt', '1', 'delete') }, 30), 'a partition whose identity holds the key: delete sent');
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE 'a delete of table public.pt2 came without the sync''s key%'
	FROM retl.sync_status WHERE sync = 'pt_out'}),
	'the other partition: the lost delete shows, naming it');
ok(!last_is('/pt', '101', 'delete'), 'and nothing was sent for it');

# One transaction of 1.1 GB for one append sync (paused: what it staged
# stays queued, to be counted): 1,100 rows of 1 MB (compressed on disk,
# each whole in its decoded row).
psql(q{CREATE TABLE big (id int PRIMARY KEY, payload text);
	SELECT retl_create_destination(name => 'dbig', kind => 'webhook', url => '} . $r->url('/big') . q{');
	SELECT retl_create_sync(name => 'big_out', source => 'big', destination => 'dbig', mode => 'append',
		capture => 'logical');
	SELECT retl_pause_sync('big_out');});
my $t0 = time;
psql(q{INSERT INTO big SELECT g, repeat(chr(65 + g % 26), 1024 * 1024) FROM generate_series(1, 1100) g});
note(sprintf('1.1 GB inserted in %.1f s', time - $t0));
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1100 FROM retl.queue q JOIN retl.syncs s ON s.id = q.sync_id
	WHERE s.name = 'big_out'}), 'a transaction of 1.1 GB for one sync is staged');
note(sprintf('staged %.1f s after the insert began', time - $t0));
is(psql(q{SELECT count(*) FROM retl.queue q JOIN retl.syncs s ON s.id = q.sync_id
	WHERE s.name = 'big_out' AND length(q.data->>'payload') = 1024 * 1024}), '1100', 'each row whole');
psql(q{INSERT INTO other VALUES (2, 'after')});
ok(wait_for(sub { last_is('/other', '2', 'after') }, 30), 'and logical capture goes on');
is(psql(q{SELECT count(*) FROM retl.sync_status WHERE last_error LIKE '%logical capture failed%'}), '0',
	'no staging failure shown');

$node->stop;
done_testing();
