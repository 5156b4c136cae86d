# Logical decoding capture: the database's slot, created with the first
# logical sync and dropped with the last; inserts, updates, deletes, key
# changes, a large transaction, COPY, savepoints, transactions streamed
# while in progress (none of them spilled to disk; rolled back
# subtransactions, a rollback, the worker restarted with one open),
# TOASTed values, TRUNCATE and append syncs reach the receiver as with trigger capture; the worker
# killed with SIGKILL and the server stopped immediately lose nothing;
# switching a sync between trigger and logical capture loses and
# duplicates nothing; an idle database's slot keeps advancing.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use IPC::Run;

my $r = start_receiver();
my $node = new_retl_node('logical', extra_conf => "logical_decoding_work_mem = 64kB\nrestart_after_crash = on\n");

sub psql { return $node->safe_psql('postgres', $_[0]); }

sub drained
{
	my ($sync) = @_;
	return $node->poll_query_until('postgres',
		"SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$sync'");
}

# The last state each key reached at the receiver, for one path:
# id => v, or id => 'deleted'.
sub last_states
{
	my ($path) = @_;
	my %last;
	for my $req (grep { $_->{path} eq $path } @{ $r->requests(ok => 1) })
	{
		for my $rec (@{ $req->{body}{records} })
		{
			$last{ $rec->{key}{id} } = $rec->{op} eq 'delete' ? 'deleted' : $rec->{data}{v};
		}
	}
	return \%last;
}

sub table_states
{
	my ($table) = @_;
	return { map { split /\|/ } split /\n/, psql("SELECT id, v FROM $table") };
}

# The sync drained and the receiver caught up with the table, checked
# about once a second for up to a minute.
sub settled
{
	my ($sync, $path, $table) = @_;
	for (1 .. 60)
	{
		return 1 if drained($sync) && converged($path, $table, $_ == 60);
		sleep 1;
	}
	return 0;
}

# Every key the receiver heard of has the table's state (deleted if gone).
sub converged
{
	my ($path, $table, $report) = @_;
	my $last = last_states($path);
	my $rows = table_states($table);
	my @bad = grep { ($last->{$_} // 'missing') ne ($rows->{$_} // 'deleted') }
	  (keys %$last, keys %$rows);
	diag("diverged keys: @bad[0 .. ($#bad < 9 ? $#bad : 9)]") if @bad && $report;
	return !@bad;
}

# Builds that list the libraries allowed to decode must list retl.
if (psql(q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '1')
{
	my ($r1, $o1, $e1) = $node->psql('postgres', q{
		CREATE EXTENSION retl;
		CREATE TABLE plug (id int PRIMARY KEY);
		SELECT retl_create_destination(name => 'dplug', kind => 'webhook', url => 'http://127.0.0.1:1/');
		SELECT retl_create_sync(name => 'plug', source => 'plug', destination => 'dplug', capture => 'logical');});
	like($e1, qr/logical capture needs retl in output_plugin_libraries/, 'output_plugin_libraries without retl: clear error');
	psql(q{DROP EXTENSION retl; DROP TABLE plug;
		ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, retl; SELECT pg_reload_conf();});
	$node->poll_query_until('postgres', q{SELECT current_setting('output_plugin_libraries') LIKE '%retl%'});
}

psql(qq{
	CREATE EXTENSION retl;
	CREATE TABLE lt (id int PRIMARY KEY, v text NOT NULL DEFAULT '');
	INSERT INTO lt SELECT g, 'old' FROM generate_series(1, 50) g;
	SELECT retl_create_destination(name => 'd', kind => 'webhook', url => '@{[ $r->url('/lt') ]}',
		options => '{"batch_size": 100}');
});
is(psql(q{SELECT count(*) FROM pg_replication_slots WHERE plugin = 'retl'}), '0',
	'no slot before the first logical sync');

# Errors come before anything changes.
my ($ret, $out, $err) = $node->psql('postgres', q{
	CREATE TABLE noident (id int NOT NULL UNIQUE, k int PRIMARY KEY, v text);
	SELECT retl_create_sync(name => 'bad', source => 'noident', destination => 'd',
		key => '{id}', capture => 'logical');});
like($err, qr/the key of a logical sync must be part of the replica identity/, 'key outside the replica identity refused');
($ret, $out, $err) = $node->psql('postgres', q{
	BEGIN;
	INSERT INTO lt VALUES (1000, 'x');
	SELECT retl_create_sync(name => 'late', source => 'lt', destination => 'd', capture => 'logical');
	COMMIT;});
like($err, qr/must be created before its transaction writes anything/, 'slot needs a transaction that has not written');
is(psql(q{SELECT count(*) FROM retl.syncs}), '0', 'nothing created by the failed calls');

# Created in a transaction that stays open for a while: the worker, which
# drops the slot of a database without logical syncs (it cannot see this
# one yet), must leave the new slot alone.
my $creator = $node->background_psql('postgres');
$creator->query_safe('BEGIN');
$creator->query_safe(q{SELECT retl_create_sync(name => 'lsync', source => 'lt', destination => 'd', capture => 'logical')});
sleep 3;
$creator->query_safe('COMMIT');
$creator->quit;
my $slot = psql(q{SELECT slot_name FROM pg_replication_slots WHERE plugin = 'retl'});
like($slot, qr/^retl_\d+$/, "slot $slot created with the first logical sync");
ok(wait_for(sub { scalar(keys %{ last_states('/lt') }) >= 50 }, 30) && drained('lsync'), 'backfill delivered');
is(scalar(keys %{ last_states('/lt') }), 50, 'the 50 existing rows backfilled');

# Inserts, updates, deletes and a key change.
psql(q{
	INSERT INTO lt SELECT g, 'new' FROM generate_series(51, 80) g;
	UPDATE lt SET v = 'upd' WHERE id <= 10;
	DELETE FROM lt WHERE id BETWEEN 11 AND 15;
	UPDATE lt SET id = 500 WHERE id = 16;
});
ok(settled('lsync', '/lt', 'lt'), 'inserts, updates, deletes, a key change');

# A transaction larger than logical_decoding_work_mem, and COPY.
psql(q{INSERT INTO lt SELECT g, repeat('x', 200) FROM generate_series(1000, 3999) g});
my $copyfile = "$PostgreSQL::Test::Utils::tmp_check/copy.tsv";
open my $cf, '>', $copyfile or die $!;
print $cf map { "$_\tcopied\n" } 30000 .. 31999;
close $cf;
psql(qq{COPY lt FROM '$copyfile'});
ok(settled('lsync', '/lt', 'lt'),
	'a 3,000-row transaction (over logical_decoding_work_mem) and a 2,000-row COPY');

# Savepoints: rolled back subtransactions send nothing.
psql(q{
	BEGIN;
	INSERT INTO lt VALUES (40001, 'kept');
	SAVEPOINT a;
	INSERT INTO lt VALUES (40002, 'rolled back');
	UPDATE lt SET v = 'rolled back' WHERE id = 1;
	ROLLBACK TO a;
	SAVEPOINT b;
	UPDATE lt SET v = 'sub' WHERE id = 2;
	RELEASE b;
	COMMIT;
	BEGIN;
	INSERT INTO lt VALUES (40003, 'aborted');
	ROLLBACK;
});
ok(settled('lsync', '/lt', 'lt'), 'savepoints');
my $last = last_states('/lt');
ok(!exists $last->{40002} && !exists $last->{40003}, 'rolled back changes never sent');

# A transaction larger than logical_decoding_work_mem comes to the plugin
# streamed while in progress: the reorder buffer writes none of it to
# disk (it used to write all of it, a table no sync reads included, and
# read it back at the commit), the changes for retl are kept until the
# commit, those of a rolled back subtransaction or transaction dropped.
# An append sync sends every insert as it was written: none of a rolled
# back subtransaction, all of a released one.  With temp_tablespaces set,
# which the spool's temporary files must not look up while decoding.
my $tsdir = "$PostgreSQL::Test::Utils::tmp_check/spool_ts";
mkdir $tsdir or die "mkdir $tsdir: $!";
psql(qq{CREATE TABLESPACE spool_ts LOCATION '$tsdir'});
$node->append_conf('postgresql.conf', "temp_tablespaces = 'spool_ts'");
$node->reload;
my $log_before_streams = -s $node->logfile;
psql(q{CREATE TABLE unsynced (id int PRIMARY KEY, v text);
	CREATE TABLE sev (id int PRIMARY KEY, kind text NOT NULL);
	SELECT retl_create_destination(name => 'dsev', kind => 'webhook', url => '} . $r->url('/sev') . q{',
		options => '{"batch_size": 100}');
	SELECT retl_create_sync(name => 'sevsync', source => 'sev', destination => 'dsev', mode => 'append',
		capture => 'logical');});
sub slot_stats
{
	return split / /, psql(qq{SELECT spill_txns || ' ' || stream_txns FROM pg_stat_replication_slots
		WHERE slot_name = '$slot'});
}
my ($spill0, $stream0) = slot_stats();
psql(q{
	BEGIN;
	INSERT INTO lt SELECT g, 'streamed' FROM generate_series(50000, 50999) g;
	INSERT INTO sev SELECT g, 'main' FROM generate_series(1, 1000) g;
	INSERT INTO unsynced SELECT g, repeat('u', 200) FROM generate_series(1, 3000) g;
	SAVEPOINT a;
	INSERT INTO lt SELECT g, 'rolled back' FROM generate_series(51000, 51999) g;
	UPDATE lt SET v = 'rolled back' WHERE id BETWEEN 50000 AND 50099;
	INSERT INTO sev SELECT g, 'rolled back' FROM generate_series(1001, 2000) g;
	INSERT INTO unsynced SELECT g, repeat('u', 200) FROM generate_series(3001, 6000) g;
	ROLLBACK TO a;
	SAVEPOINT b;
	UPDATE lt SET v = 'released' WHERE id BETWEEN 50100 AND 50199;
	INSERT INTO sev SELECT g, 'released' FROM generate_series(2001, 3000) g;
	INSERT INTO unsynced SELECT g, repeat('u', 200) FROM generate_series(6001, 9000) g;
	RELEASE b;
	COMMIT;
	BEGIN;
	INSERT INTO lt SELECT g, 'aborted' FROM generate_series(52000, 52999) g;
	INSERT INTO unsynced SELECT g, repeat('u', 200) FROM generate_series(9001, 12000) g;
	ROLLBACK;
});
ok(settled('lsync', '/lt', 'lt'), 'streamed transactions');
$last = last_states('/lt');
is(scalar(grep { $_ >= 50000 && $_ < 51000 } keys %$last), 1000, 'a streamed transaction: all its rows sent');
is(scalar(grep { $_ >= 51000 && $_ < 53000 } keys %$last), 0,
	'none of its rolled back subtransaction, none of a streamed transaction rolled back');
is($last->{50150}, 'released', 'the update of its released subtransaction sent');
is($last->{50050}, 'streamed', 'the update of its rolled back one not');
ok(drained('sevsync'), 'the append sync drained');
my %kinds;
$kinds{ $_->{data}{kind} }++
  for map { @{ $_->{body}{records} } } grep { $_->{path} eq '/sev' } @{ $r->requests(ok => 1) };
is(join(' ', map { "$_=$kinds{$_}" } sort keys %kinds), 'main=1000 released=1000',
	'its append sync: every insert of the transaction and of its released subtransaction, none of the rolled back one');
psql(q{SELECT retl_drop_sync('sevsync')});
my ($spill1, $stream1) = slot_stats();
is($spill1 - $spill0, 0, 'the reorder buffer wrote neither to disk');
cmp_ok($stream1 - $stream0, '>=', 2, 'both were streamed');

# The worker stopped while a streamed transaction is open: the next
# decoding context decodes it again from its start; each row is sent once.
my $open = $node->background_psql('postgres');
$open->query_safe('BEGIN');
$open->query_safe(q{INSERT INTO lt SELECT g, 'open' FROM generate_series(53000, 54999) g});
$open->query_safe(q{INSERT INTO unsynced SELECT g, repeat('u', 200) FROM generate_series(12001, 15000) g});
ok(wait_for(sub { (slot_stats())[1] > $stream1 }, 30), 'the open transaction streamed');
my $old_worker = psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'});
psql(qq{SELECT pg_terminate_backend($old_worker)});
ok($node->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM pg_replication_slots
	WHERE slot_name = '$slot' AND active_pid IS NOT NULL AND active_pid <> $old_worker}),
	'a new worker holds the slot');
$open->query_safe('COMMIT');
$open->quit;
ok(settled('lsync', '/lt', 'lt'), 'the open transaction delivered after the worker\'s restart');
my %sent;
for my $req (grep { $_->{path} eq '/lt' } @{ $r->requests(ok => 1) })
{
	$sent{ $_->{key}{id} }++ for grep { $_->{key}{id} >= 53000 && $_->{key}{id} < 55000 } @{ $req->{body}{records} };
}
is(scalar(keys %sent), 2000, 'all 2,000 of its rows sent');
is(scalar(grep { $_ != 1 } values %sent), 0, 'each once');
unlike(substr(slurp_file($node->logfile), $log_before_streams), qr/could not stage logical changes/,
	'no round failed (the spool\'s temporary files with temp_tablespaces set)');

# A decoding round never waits for WAL to be flushed.  It reads up to the
# WAL flushed when it began; the WAL writer flushes whole pages, so that
# position is often inside a record, and reading that record made the
# round sleep until the rest was flushed: until the next commit anywhere,
# every sync of the database waiting meanwhile (under load, ~16,000 rows a
# second delivered at batch_size 500 where 120,000+ were).  Here a record
# of 100 kB in a transaction left open is flushed but for its last page.
# (Another commit flushing the rest of the record first spoils the set-up:
# it is tried again then.)
my ($partial, $in_round) = (0, -1);
for my $try (1 .. 5)
{
	my $holder = $node->background_psql('postgres');
	$holder->query_safe('BEGIN');
	my $before_message = psql(q{SELECT pg_current_wal_insert_lsn()});
	$holder->query_safe(q{SELECT pg_logical_emit_message(true, 'retl-test', repeat('x', 100000))});
	my $after_message = psql(q{SELECT pg_current_wal_insert_lsn()});
	$node->poll_query_until('postgres', qq{SELECT pg_current_wal_flush_lsn() > '$before_message'})
	  or die 'the WAL writer flushed nothing';
	sleep 3;
	my $age = psql(q{SELECT coalesce(extract(epoch FROM clock_timestamp() - xact_start), 0)
		FROM pg_stat_activity WHERE backend_type = 'retl worker'});
	$partial = psql(qq{SELECT pg_current_wal_flush_lsn() < '$after_message'}) eq 't';
	$holder->query_safe('ROLLBACK');
	$holder->quit;
	if ($partial)
	{
		$in_round = $age;
		last;
	}
}
ok($partial, 'a record flushed but for its last page, for 3 s');
cmp_ok($in_round, '<', 2, 'the worker is not waiting in a round for the rest of it');

# TOASTed values with REPLICA IDENTITY DEFAULT: an update that leaves the
# TOASTed column alone still sends the whole row.
psql(q{
	CREATE TABLE big (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
	INSERT INTO big VALUES (1, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 2000) g));
	SELECT retl_create_destination(name => 'dbig', kind => 'webhook', url => '} . $r->url('/big') . q{');
	SELECT retl_create_sync(name => 'bigsync', source => 'big', destination => 'dbig', capture => 'logical');
});
sub big_records { return map { @{ $_->{body}{records} } } grep { $_->{path} eq '/big' } @{ $r->requests(ok => 1) }; }
ok(wait_for(sub { scalar(big_records()) >= 1 }, 30), 'TOASTed row backfilled');
psql(q{UPDATE big SET n = 1 WHERE id = 1});
ok(wait_for(sub { grep { $_->{data}{n} == 1 } big_records() }, 30), 'update delivered');
my ($rec) = grep { $_->{data}{n} == 1 } big_records();
is(length($rec->{data}{v} // ''), 64000, 'the unchanged TOASTed value is sent whole');
is($rec->{data}{n}, 1, 'with the change');

# TRUNCATE: every key is sent as a delete.
psql(q{CREATE TABLE tr (id int PRIMARY KEY, v text);
	INSERT INTO tr SELECT g, 'x' FROM generate_series(1, 20) g;
	SELECT retl_create_destination(name => 'dtr', kind => 'webhook', url => '} . $r->url('/tr') . q{',
		options => '{"batch_size": 50}');
	SELECT retl_create_sync(name => 'trsync', source => 'tr', destination => 'dtr', capture => 'logical');});
ok(drained('trsync'), 'backfilled');
psql(q{TRUNCATE tr});
ok(settled('trsync', '/tr', 'tr'), 'TRUNCATE sent as deletes');
is(scalar(grep { $_ ne 'deleted' } values %{ last_states('/tr') }), 0, 'every key deleted');

# An append sync carries each inserted row as written.
psql(q{CREATE TABLE ev (id bigserial PRIMARY KEY, kind text NOT NULL);
	INSERT INTO ev (kind) VALUES ('before');
	SELECT retl_create_destination(name => 'dev', kind => 'webhook', url => '} . $r->url('/ev') . q{',
		options => '{"batch_size": 50}');
	SELECT retl_create_sync(name => 'evsync', source => 'ev', destination => 'dev', mode => 'append',
		capture => 'logical');
	INSERT INTO ev (kind) SELECT 'k' || g FROM generate_series(1, 30) g;
	UPDATE ev SET kind = 'changed';
	DELETE FROM ev WHERE id = 1;});
sub events { return map { @{ $_->{body}{records} } } grep { $_->{path} eq '/ev' } @{ $r->requests(ok => 1) }; }
ok(wait_for(sub { scalar(events()) >= 31 }, 30) && drained('evsync'), 'append sync delivered');
sleep 1;
my @events = events();
is(scalar @events, 31, 'one event per inserted row, the backfilled one included');
is(join(',', map { $_->{data}{kind} } @events[1 .. 3]), 'k1,k2,k3', 'rows as written, in order');

# DDL on the source table does not stop the sync: a column added, renamed,
# retyped (key included) and dropped.  A mapping that names a dropped
# column makes its sync fail with a clear error, and nothing else.
psql(q{CREATE TABLE ddl (id int PRIMARY KEY, a int NOT NULL DEFAULT 0, b text);
	INSERT INTO ddl VALUES (1, 1, 'one');
	SELECT retl_create_destination(name => 'dddl', kind => 'webhook', url => '} . $r->url('/ddl') . q{');
	SELECT retl_create_sync(name => 'ddlsync', source => 'ddl', destination => 'dddl', capture => 'logical');
	SELECT retl_create_destination(name => 'dmap', kind => 'webhook', url => '} . $r->url('/map') . q{');
	SELECT retl_create_sync(name => 'mapsync', source => 'ddl', destination => 'dmap', capture => 'logical',
		mapping => '{"id": "id", "b": "bee"}');});
sub ddl_records { return map { @{ $_->{body}{records} } } grep { $_->{path} eq $_[0] } @{ $r->requests(ok => 1) }; }
ok(wait_for(sub { scalar(ddl_records('/ddl')) >= 1 && scalar(ddl_records('/map')) >= 1 }, 30), 'DDL table backfilled');
my @steps = (
	[ 'column added', q{ALTER TABLE ddl ADD COLUMN c int DEFAULT 7; UPDATE ddl SET a = 2},
	  sub { ($_[0]{c} // 0) == 7 && $_[0]{a} == 2 } ],
	[ 'column renamed', q{ALTER TABLE ddl RENAME COLUMN a TO a2; UPDATE ddl SET a2 = 3},
	  sub { ($_[0]{a2} // 0) == 3 } ],
	[ 'column type changed', q{ALTER TABLE ddl ALTER COLUMN a2 TYPE bigint; UPDATE ddl SET a2 = 4},
	  sub { ($_[0]{a2} // 0) == 4 } ],
	[ 'key type changed', q{ALTER TABLE ddl ALTER COLUMN id TYPE bigint; INSERT INTO ddl (id, a2) VALUES (2, 5)},
	  sub { ($_[0]{a2} // 0) == 5 } ],
	[ 'column dropped', q{ALTER TABLE ddl DROP COLUMN b; UPDATE ddl SET a2 = 6},
	  sub { ($_[0]{a2} // 0) == 6 && !exists $_[0]{b} } ]);
for my $step (@steps)
{
	my ($what, $sql, $check) = @$step;
	psql($sql);
	ok(wait_for(sub { grep { $check->($_->{data} // {}) } ddl_records('/ddl') }, 30), "$what: the sync goes on");
}
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' AND last_error LIKE 'mapping of sync "mapsync" names column "b"%' FROM retl.sync_status WHERE sync = 'mapsync'}),
	'a mapping naming the dropped column: that sync is failing, with the column in its error');
is(psql(q{SELECT state FROM retl.sync_status WHERE sync = 'ddlsync'}), 'active', 'the other sync is not');
psql(q{SELECT retl_drop_sync('mapsync')});

# A partitioned table: changes of its partitions (one with its columns in
# another order), moves between partitions, backfill through the parent.
psql(q{CREATE TABLE pt (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
	CREATE TABLE pt_eu PARTITION OF pt FOR VALUES IN ('eu');
	CREATE TABLE pt_us (v text, region text NOT NULL, id int NOT NULL);
	ALTER TABLE pt ATTACH PARTITION pt_us FOR VALUES IN ('us');
	INSERT INTO pt VALUES (1, 'eu', 'a'), (2, 'us', 'b');
	SELECT retl_create_destination(name => 'dpt', kind => 'webhook', url => '} . $r->url('/pt') . q{');
	SELECT retl_create_sync(name => 'ptsync', source => 'pt', destination => 'dpt', capture => 'logical');});
sub pt_states
{
	my %last;
	for my $rec (map { @{ $_->{body}{records} } } grep { $_->{path} eq '/pt' } @{ $r->requests(ok => 1) })
	{
		$last{"$rec->{key}{id}/$rec->{key}{region}"} = $rec->{op} eq 'delete' ? 'deleted' : $rec->{data}{v};
	}
	return \%last;
}
ok(wait_for(sub { scalar(keys %{ pt_states() }) == 2 }, 30), 'partitioned table backfilled through its parent');
psql(q{UPDATE pt SET v = 'c' WHERE id = 2;
	INSERT INTO pt VALUES (3, 'us', 'd');
	DELETE FROM pt WHERE id = 1;
	UPDATE pt SET region = 'eu' WHERE id = 3;});
my $want = '1/eu=deleted 2/us=c 3/eu=d 3/us=deleted';
ok(wait_for(sub { my $l = pt_states(); join(' ', map { "$_=$l->{$_}" } sort keys %$l) eq $want }, 30),
	'partition changes, a move between partitions included, sent as the parent\'s rows');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_alter_sync('ptsync', capture => 'trigger')});
like($err, qr/reads a partitioned table, which trigger capture does not support/, 'no trigger capture for it');

# Rows that enter or leave the table by DDL (capture/partitions.c): a
# TRUNCATE of a partition by its own name, DETACH (concurrently), ATTACH,
# DROP TABLE of a partition; a rolled back TRUNCATE sends nothing.
sub pt_is
{
	my ($want) = @_;
	my $l = pt_states();
	return join(' ', map { "$_=$l->{$_}" } grep { /asia|eu/ } sort keys %$l) eq $want;
}
psql(q{CREATE TABLE pt_asia PARTITION OF pt FOR VALUES IN ('asia');
	INSERT INTO pt VALUES (10, 'asia', 'x'), (11, 'asia', 'y');});
ok(wait_for(sub { pt_is('1/eu=deleted 10/asia=x 11/asia=y 3/eu=d') }, 30), 'a new partition\'s rows sent');
psql(q{BEGIN; TRUNCATE pt_eu; ROLLBACK; TRUNCATE pt_asia; INSERT INTO pt VALUES (12, 'asia', 'z');});
ok(wait_for(sub { pt_is('1/eu=deleted 10/asia=deleted 11/asia=deleted 12/asia=z 3/eu=d') }, 30),
	'TRUNCATE of a partition by its name: its keys deleted (a rolled back one: nothing)');
psql(q{ALTER TABLE pt DETACH PARTITION pt_asia CONCURRENTLY});
ok(wait_for(sub { pt_is('1/eu=deleted 10/asia=deleted 11/asia=deleted 12/asia=deleted 3/eu=d') }, 30),
	'DETACH PARTITION CONCURRENTLY: its rows deleted');
psql(q{INSERT INTO pt_asia VALUES (13, 'asia', 'w');
	ALTER TABLE pt ATTACH PARTITION pt_asia FOR VALUES IN ('asia');});
ok(wait_for(sub { pt_is('1/eu=deleted 10/asia=deleted 11/asia=deleted 12/asia=z 13/asia=w 3/eu=d') }, 30),
	'ATTACH PARTITION: its rows sent, one written while it was detached included');
psql(q{BEGIN; ALTER TABLE pt DETACH PARTITION pt_asia; ALTER TABLE pt ATTACH PARTITION pt_asia FOR VALUES IN ('asia'); COMMIT;
	DROP TABLE pt_asia;});
ok(wait_for(sub { pt_is('1/eu=deleted 10/asia=deleted 11/asia=deleted 12/asia=deleted 13/asia=deleted 3/eu=d') }, 30),
	'DROP TABLE of a partition: its keys deleted');
ok(drained('ptsync'), 'and the sync drained');

# kill -9 of the worker, and an immediate stop, while a stream is staged.
for my $how ('kill', 'immediate')
{
	my $base = $how eq 'kill' ? 100000 : 200000;
	psql(qq{INSERT INTO lt SELECT g, '$how' FROM generate_series($base, $base + 4999) g});
	if ($how eq 'kill')
	{
		my $pid = psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'});
		kill 'KILL', $pid;
	}
	else
	{
		$node->stop('immediate');
		$node->start;
	}
	ok(settled('lsync', '/lt', 'lt'), "nothing lost after $how");
	my $got = grep { $_ >= $base && $_ < $base + 5000 } keys %{ last_states('/lt') };
	is($got, 5000, "all 5,000 rows of the stream delivered after $how");
}

# Switching capture: trigger to logical and back, with a writer running.
# The sync is paused meanwhile, so that every change captured stays in the
# queue: exactly one queued change per statement the writer ran means none
# was lost or captured twice (by the trigger and by the slot).
psql(q{CREATE TABLE sw (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
	CREATE SEQUENCE sw_new START 1000;
	SELECT retl_create_destination(name => 'dsw', kind => 'webhook', url => '} . $r->url('/sw') . q{',
		options => '{"batch_size": 100}');
	SELECT retl_create_sync(name => 'swsync', source => 'sw', destination => 'dsw');
	SELECT retl_pause_sync('swsync');});
my $script = "$PostgreSQL::Test::Utils::tmp_check/sw.sql";
open my $fh, '>', $script or die $!;
# updates of 300 keys, and a new key at every transaction
print $fh "\\set k random(1, 300)\nINSERT INTO sw VALUES (:k, 1) ON CONFLICT (id) DO UPDATE SET v = sw.v + 1;\n";
print $fh "INSERT INTO sw VALUES (nextval('sw_new'), 1);\n";
close $fh;
my ($bout, $berr) = ('', '');
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '6', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$bout, '2>', \$berr);
sleep 1.5;
psql(q{SELECT retl_alter_sync('swsync', capture => 'logical')});
is(psql(q{SELECT capture FROM retl.sync_status WHERE sync = 'swsync'}), 'logical', 'switched to logical');
sleep 1.5;
psql(q{SELECT retl_alter_sync('swsync', capture => 'trigger')});
is(psql(q{SELECT capture FROM retl.sync_status WHERE sync = 'swsync'}), 'trigger', 'and back to trigger');
$bench->finish;
my ($txns) = $bout =~ /number of transactions actually processed: (\d+)/;
ok($txns, 'the writer ran meanwhile');
# everything the slot decoded up to now is staged once it confirmed it
my $end = psql(q{SELECT pg_current_wal_lsn()});
ok($node->poll_query_until('postgres',
	qq{SELECT confirmed_flush_lsn >= '$end' FROM pg_replication_slots WHERE slot_name = '$slot'}),
	'the slot confirmed past the writer');
is(psql(q{SELECT pending FROM retl.sync_status WHERE sync = 'swsync'}), 2 * $txns,
	'one queued change per statement: none lost, none captured twice');
psql(q{SELECT retl_resume_sync('swsync')});
ok(settled('swsync', '/sw', 'sw'), 'all delivered');

# The slot's lag is shown; an idle database's slot keeps advancing while
# another database writes.
like(psql(q{SELECT slot_lag_bytes FROM retl.sync_status WHERE sync = 'lsync'}), qr/^\d+$/, 'slot lag shown');
my $lsn0 = psql(qq{SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$slot'});
psql(q{CREATE DATABASE busy});
$node->safe_psql('busy', q{CREATE TABLE w (id int); INSERT INTO w SELECT generate_series(1, 100000)});
ok($node->poll_query_until('postgres',
	qq{SELECT confirmed_flush_lsn > '$lsn0' AND pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) < 4000000
	   FROM pg_replication_slots WHERE slot_name = '$slot'}), 'the idle slot advanced past the busy database\'s WAL');

# A slot dropped by hand: its syncs fail with a clear error; switching to
# trigger capture and back creates it again.
# (the worker holds it: stop the worker first, it starts again)
my $dropped = 0;
my $log_before_drop = -s $node->logfile;
for (1 .. 100)
{
	$node->psql('postgres', qq{SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE slot_name = '$slot' AND active_pid IS NOT NULL});
	$dropped = $node->psql('postgres', qq{SELECT pg_drop_replication_slot('$slot')}) == 0;
	last if $dropped;
	sleep(0.1);
}
ok($dropped, 'slot dropped by hand');
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' AND last_error LIKE '%replication slot%does not exist%'
	  FROM retl.sync_status WHERE sync = 'lsync'}), 'a missing slot shows on its syncs');
# staging is retried every second; the server log says it once (a minute)
sleep 4;
my $warnings = () = substr(slurp_file($node->logfile), $log_before_drop)
  =~ /could not stage logical changes: replication slot "\Q$slot\E" of logical capture does not exist/g;
is($warnings, 1, 'the log says it once, not at every retry');
psql(q{SELECT retl_alter_sync('lsync', capture => 'trigger'); SELECT retl_alter_sync('lsync', capture => 'logical');});
is(psql(q{SELECT count(*) FROM pg_replication_slots WHERE plugin = 'retl'}), '1', 'switching back creates it');
psql(q{INSERT INTO lt VALUES (900001, 'after the slot came back')});
ok(wait_for(sub { exists last_states('/lt')->{900001} }, 30), 'and changes flow again');

# The slot goes with the last logical sync.
psql(q{SELECT retl_drop_sync('lsync'); SELECT retl_drop_sync('bigsync'); SELECT retl_drop_sync('trsync');
	SELECT retl_drop_sync('evsync'); SELECT retl_drop_sync('ddlsync'); SELECT retl_drop_sync('ptsync');});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_replication_slots WHERE plugin = 'retl'}),
	'slot dropped with the last logical sync');

# Switching the last logical sync to trigger capture loses nothing that
# was committed under logical capture and not decoded yet: the slot stays
# until that is staged, then goes.  First in the switch's own transaction
# (the worker cannot have decoded it before the switch), then in the
# transactions just before it.
$r->clear;
psql(q{CREATE TABLE lastsw (id int PRIMARY KEY, v text);
	INSERT INTO lastsw VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd');
	SELECT retl_create_destination(name => 'dlastsw', kind => 'webhook', url => '} . $r->url('/lastsw') . q{');});
psql(q{SELECT retl_create_sync(name => 'lastsw', source => 'lastsw', destination => 'dlastsw', capture => 'logical')});
ok($node->poll_query_until('postgres', q{SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = 'lastsw'}), 'backfilled');
psql(q{BEGIN; DELETE FROM lastsw WHERE id = 1; UPDATE lastsw SET v = 'b2' WHERE id = 2;
	SELECT retl_alter_sync('lastsw', capture => 'trigger'); COMMIT;});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_replication_slots WHERE plugin = 'retl'}),
	'the slot goes once drained');
ok(drained('lastsw'), 'drained');
is_deeply(last_states('/lastsw'), { 1 => 'deleted', 2 => 'b2', 3 => 'c', 4 => 'd' },
	'changes made with the switch were sent');
psql(q{SELECT retl_alter_sync('lastsw', capture => 'logical')});
psql(q{UPDATE lastsw SET v = 'c2' WHERE id = 3; DELETE FROM lastsw WHERE id = 4;
	SELECT retl_alter_sync('lastsw', capture => 'trigger');});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_replication_slots WHERE plugin = 'retl'}),
	'and again');
ok(drained('lastsw'), 'drained again');
is_deeply(last_states('/lastsw'), { 1 => 'deleted', 2 => 'b2', 3 => 'c2', 4 => 'deleted' },
	'changes committed just before the switch were sent');
psql(q{SELECT retl_drop_sync('lastsw')});

# ... and with the extension.
psql(q{SELECT retl_create_sync(name => 'again', source => 'lt', destination => 'd', capture => 'logical',
	options => '{"backfill": false}')});
is(psql(q{SELECT count(*) FROM pg_replication_slots WHERE plugin = 'retl'}), '1', 'a new logical sync, a new slot');
psql(q{DROP EXTENSION retl CASCADE});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_replication_slots WHERE plugin = 'retl'}),
	'slot dropped with the extension');

unlike(slurp_file($node->logfile), qr/PANIC|TRAP/, 'no crash');
$node->stop;
$r->stop;
done_testing();
