# The row-level security check of the capture trigger (visibility.c, 044)
# must neither fail a writer nor lose a delete.
#
# A policy that errors in the writer's session (it reads a setting the
# writer set to nothing): the writer's INSERT, UPDATE, DELETE and TRUNCATE
# succeed, their changes are queued as without the check, and one WARNING a
# statement names the sync and the error, with no key value.  A cancel
# (statement_timeout) during the check still cancels the statement.
#
# READ COMMITTED: a DELETE (or an UPDATE: key-changing, or moving the
# row out of view) that waited for a concurrent UPDATE which moved a
# hidden row into the owner's view deletes the version that UPDATE wrote;
# the check must see that version (a fresh snapshot), not the hidden one
# before it (the statement's snapshot), or the destination keeps the row
# for good.  A user's AFTER trigger that
# fires before the capture trigger and writes (advancing the command
# counter) does not change what the check sees.  REPEATABLE READ and
# SERIALIZABLE deletes are checked with the transaction's snapshot.
#
# A TRUNCATE of a partition by its own name (partitions.c) reads the
# owner's keys the same way: a policy that errors queues every key.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $api = start_receiver();
my $node = new_retl_node('rls_capture_check', extra_conf => "retl.poll_interval_ms = 200\n");
sub psql { return $node->safe_psql('postgres', $_[0]); }

sub drained
{
	return $node->poll_query_until('postgres',
		"SELECT bool_and(NOT backfilling AND pending + in_flight = 0) FROM retl.sync_status");
}

# The records /carol received since the last call, as "op:id", sorted.
my $seen = 0;
sub news
{
	my $all = records_at($api, '/carol');
	my @new = @{$all}[ $seen .. $#{$all} ];
	$seen = scalar @{$all};
	return join(' ', sort map { "$_->{op}:$_->{key}{id}" } @new);
}

# The policy reads the session's app.tenant: every session (the worker's
# too) starts with 1, which carol sees.
psql(q{ALTER DATABASE postgres SET app.tenant = '1'});
psql(q{CREATE EXTENSION retl;
	CREATE ROLE carol NOLOGIN IN ROLE retl_user;
	CREATE TABLE t (id int PRIMARY KEY, tenant int NOT NULL, v text);
	INSERT INTO t VALUES (9701, 1, 'a'), (9702, 2, 'b'), (9703, 1, 'c');
	ALTER TABLE t ENABLE ROW LEVEL SECURITY;
	CREATE POLICY mine ON t FOR SELECT TO carol USING (tenant = current_setting('app.tenant')::int
	  AND (coalesce(current_setting('app.pause', true), '') = ''
	       OR pg_sleep(current_setting('app.pause', true)::float8) IS NOT NULL));
	GRANT SELECT ON t TO carol;
	SELECT retl_create_destination('dcarol', 'webhook', '} . $api->url('/carol') . q{');
	SELECT retl_grant_destination('dcarol', 'carol');
	SELECT retl_create_sync(name => 'c', source => 't', destination => 'dcarol', options => '{"owner": "carol"}');});
ok(drained(), 'backfill delivered');
is(news(), 'upsert:9701 upsert:9703', 'the backfill of the rows carol sees');

# --- a policy that errors in the writer's session ---

# Run sql in a session whose app.tenant is blank (the policy's cast fails);
# returns psql's exit code and its stderr.
sub blank_tenant
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $ret = $node->psql('postgres', "SET app.tenant = ''; $sql", stdout => \$out, stderr => \$err);
	return ($ret, $err);
}

# The WARNINGs the server log got since offset, with the lines that go with
# each (DETAIL, HINT, CONTEXT): the statements the log also has (log_statement
# = all) are left out.
sub warnings_since
{
	my ($offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my @out;
	my $in = 0;
	for my $line (split /\n/, $log)
	{
		if ($line =~ /\bWARNING:/) { $in = 1; push @out, $line; next; }
		if ($in && $line =~ /\b(DETAIL|HINT|CONTEXT):|^\t/) { push @out, $line; next; }
		$in = 0;
	}
	return @out;
}

# Each statement's changes are queued as without the check: the worker
# reads the rows as carol (its app.tenant is 1), sends a row it sees and
# nothing for the hidden 9712, and a delete of every key it finds gone: the
# hidden row's too, the leak the check closes when it can ask.
my $offset = -s $node->logfile;
my ($ret, $err) = blank_tenant(q{INSERT INTO t VALUES (9711, 1, 'x'), (9712, 2, 'y'), (9713, 1, 'z')});
is($ret, 0, 'INSERT with a policy that errors in the writer\'s session: succeeded');
like($err, qr/WARNING:  retl could not ask whether the owner of sync "c" may see a changed row of table "t": invalid input syntax for type integer: ""/,
	'the writer is warned');
ok(drained(), 'INSERT: delivered');
is(news(), 'upsert:9711 upsert:9713', 'INSERT: queued');
for my $step ([ q{UPDATE t SET v = 'changed' WHERE id IN (9711, 9712)}, 'UPDATE', 'upsert:9711' ],
	[ q{UPDATE t SET id = 9714 WHERE id = 9713}, 'key-changing UPDATE', 'delete:9713 upsert:9714' ],
	[ q{DELETE FROM t WHERE id IN (9711, 9712, 9714)}, 'DELETE', 'delete:9711 delete:9712 delete:9714' ])
{
	my ($sql, $what, $want) = @$step;
	($ret, $err) = blank_tenant($sql);
	is($ret, 0, "$what: succeeded");
	ok(drained(), "$what: delivered");
	is(news(), $want, "$what: queued");
}
is(psql(q{SELECT string_agg(id::text, ' ' ORDER BY id) FROM t}), '9701 9702 9703', 'the writes are there');
my @warnings = warnings_since($offset);
is(scalar(grep { /WARNING:  retl could not ask/ } @warnings), 4, 'one WARNING a statement in the server log');
like($warnings[0], qr/WARNING:  retl could not ask whether the owner of sync "c" may see a changed row of table "t": invalid input syntax for type integer: ""/,
	'it names the sync, the table and the error');
is(scalar(grep { /97\d\d/ } @warnings), 0, 'no key value in it');

# A cancel during the check cancels the statement, as it would without it.
my $start = time;
$ret = $node->psql('postgres', q{SET app.pause = '30'; SET statement_timeout = '500ms';
	DELETE FROM t WHERE id = 9701}, stderr => \$err);
ok($ret != 0 && $err =~ /canceling statement due to statement timeout/, 'a statement timeout during the check cancels the DELETE');
ok(time - $start < 20, 'at once');
is(psql(q{SELECT count(*) FROM t WHERE id = 9701}), '1', 'the row is still there');

# --- READ COMMITTED: a write that waited for an UPDATE moving a hidden row into view ---

# Session A runs a_sql in a transaction; session B's b_sql waits for A's row
# lock; A commits, B's statement ends, A's change is delivered while B is
# still open, then B commits.  Returns what /carol got after A's commit.
sub race
{
	my ($a_sql, $b_sql, $what, $a_want, $b_want) = @_;
	my $a = $node->background_psql('postgres');
	my $b = $node->background_psql('postgres');
	$a->query_safe("BEGIN; $a_sql");
	$b->query_until(qr/waiting/, "\\echo waiting\nBEGIN;\n$b_sql;\n");
	ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND backend_type = 'client backend'}),
		"$what: B waits for A");
	$a->query_safe('COMMIT');
	ok(drained(), "$what: A's change delivered, B still open");
	is(news(), $a_want, "$what: A's change sent");
	$b->query_safe('COMMIT');
	ok(drained(), "$what: B committed, delivered");
	is(news(), $b_want, "$what: B's change sent");
	$a->quit;
	$b->quit;
}

psql(q{INSERT INTO t VALUES (9721, 2, 'hidden'), (9722, 2, 'hidden'), (9724, 2, 'hidden')});
ok(drained(), 'hidden rows inserted');
is(news(), '', 'nothing sent');
race(q{UPDATE t SET tenant = 1 WHERE id = 9721}, q{DELETE FROM t WHERE id = 9721},
	'DELETE after an UPDATE made the row visible', 'upsert:9721', 'delete:9721');
race(q{UPDATE t SET tenant = 1 WHERE id = 9722}, q{UPDATE t SET id = 9723 WHERE id = 9722},
	'key-changing UPDATE after an UPDATE made the row visible', 'upsert:9722', 'delete:9722 upsert:9723');
is(psql(q{SELECT count(*) FROM t WHERE id IN (9721, 9722)}), '0', 'the rows are gone from the source');
# B's UPDATE moves A's version out of view: the check of its old row must
# see A's version (visible), not the hidden one before it, and B's delete
# of the key is sent; a later DELETE of the hidden row sends nothing.
race(q{UPDATE t SET tenant = 1 WHERE id = 9724}, q{UPDATE t SET tenant = 3 WHERE id = 9724},
	'UPDATE out of view after an UPDATE made the row visible', 'upsert:9724', 'delete:9724');
psql(q{DELETE FROM t WHERE id = 9724});
ok(drained(), 'that row, hidden, deleted');
is(news(), '', 'nothing sent');

# --- a user's AFTER trigger that fires first and writes ---

# a_reinsert fires before retl_capture_N (triggers fire by name): it puts a
# hidden row back under the deleted row's key.  The check sees the table as
# the DELETE left it for its triggers (the deleted visible row), not as the
# trigger left it (a hidden row under that key).
psql(q{CREATE FUNCTION reinsert() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO t VALUES (OLD.id, 2, 'hidden again');
		RETURN NULL;
	END $$;
	CREATE TRIGGER a_reinsert AFTER DELETE ON t FOR EACH ROW WHEN (OLD.v = 'again') EXECUTE FUNCTION reinsert();
	INSERT INTO t VALUES (9731, 1, 'again');});
ok(drained(), 'a visible row inserted');
is(news(), 'upsert:9731', 'sent');
# (paused: what is queued is what counts)
psql(q{SELECT retl_pause_sync('c'); DELETE FROM t WHERE id = 9731});
is(psql(q{SELECT tenant FROM t WHERE id = 9731}), '2', 'the user\'s trigger put a hidden row back');
is(psql(q{SELECT string_agg(q.op::text || ':' || (q.key ->> 0), ' ' ORDER BY q.id) FROM retl.queue q
	JOIN retl.syncs s ON s.id = q.sync_id WHERE s.name = 'c'}), 'd:9731',
	'the visible row\'s delete is queued, the hidden row\'s insert is not');
psql(q{SELECT retl_resume_sync('c')});
ok(drained(), 'delivered');
is(news(), 'delete:9731', 'the delete is sent, though a hidden row has the key now');
psql(q{DROP TRIGGER a_reinsert ON t; DELETE FROM t WHERE id = 9731});

# --- REPEATABLE READ and SERIALIZABLE ---

psql(q{INSERT INTO t VALUES (9741, 1, 'a'), (9742, 2, 'b'), (9743, 1, 'c'), (9744, 2, 'd')});
ok(drained(), 'rows inserted');
is(news(), 'upsert:9741 upsert:9743', 'the visible ones sent');
psql(q{BEGIN ISOLATION LEVEL REPEATABLE READ; DELETE FROM t WHERE id IN (9741, 9742); COMMIT;
	BEGIN ISOLATION LEVEL SERIALIZABLE; DELETE FROM t WHERE id IN (9743, 9744); COMMIT;});
ok(drained(), 'deleted in REPEATABLE READ and SERIALIZABLE');
is(news(), 'delete:9741 delete:9743', 'the visible rows\' deletes are sent, the hidden rows\' are not');

# --- TRUNCATE with the policy erroring ---

$offset = -s $node->logfile;
($ret, $err) = blank_tenant(q{TRUNCATE t});
is($ret, 0, 'TRUNCATE with a policy that errors in the writer\'s session: succeeded');
is(psql(q{SELECT count(*) FROM t}), '0', 'the table is empty');
ok(drained(), 'delivered');
is(news(), 'delete:9701 delete:9702 delete:9703 delete:9723', 'every key was queued');
@warnings = warnings_since($offset);
is(scalar(grep { /WARNING:  retl could not ask whether the owner of sync "c"/ } @warnings), 1, 'one WARNING');
is(scalar(grep { /97\d\d/ } @warnings), 0, 'no key value in it');

# --- a partition truncated by its own name (partitions.c), the policy erroring ---

# A logically captured sync of a partitioned table whose owner came under
# row-level security after its creation (it then sends nothing: paused
# here, what is queued is what counts).  A TRUNCATE of a partition reads
# its keys through the table as the owner, the same way: a policy that
# errors queues every key, with a WARNING, and the TRUNCATE succeeds.
if (psql(q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '1')
{
	psql(q{ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, retl; SELECT pg_reload_conf();});
	$node->poll_query_until('postgres', q{SELECT current_setting('output_plugin_libraries') LIKE '%retl%'});
}
psql(q{CREATE TABLE pt (id int PRIMARY KEY, tenant int NOT NULL) PARTITION BY RANGE (id);
	CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (9800) TO (9900);
	INSERT INTO pt VALUES (9801, 1), (9802, 2);
	GRANT SELECT ON pt TO carol;
	SELECT retl_create_sync(name => 'p', source => 'pt', destination => 'dcarol', capture => 'logical',
	  options => '{"owner": "carol", "backfill": false}');
	SELECT retl_pause_sync('p');
	ALTER TABLE pt ENABLE ROW LEVEL SECURITY;
	CREATE POLICY mine ON pt FOR SELECT TO carol USING (tenant = current_setting('app.tenant')::int);});
my $truncated = q{SELECT coalesce(string_agg(q.key ->> 0, ' ' ORDER BY q.key ->> 0), '') FROM retl.queue q
	JOIN retl.syncs s ON s.id = q.sync_id WHERE s.name = 'p' AND q.op = 't'};
$offset = -s $node->logfile;
($ret, $err) = blank_tenant(q{TRUNCATE pt_1});
is($ret, 0, 'TRUNCATE of a partition with a policy that errors in the writer\'s session: succeeded');
like($err, qr/WARNING:  retl could not ask whether the owner of sync "p" may see a changed row of table "pt": invalid input syntax for type integer: ""/,
	'the writer is warned');
is(psql(q{SELECT count(*) FROM pt}), '0', 'the partition is empty');
is(psql($truncated), '9801 9802', 'every key of the partition was queued');
@warnings = warnings_since($offset);
is(scalar(grep { /97\d\d|98\d\d/ } @warnings), 0, 'no key value in the WARNING');
psql(q{DELETE FROM retl.queue q USING retl.syncs s WHERE s.id = q.sync_id AND s.name = 'p';
	INSERT INTO pt VALUES (9803, 1), (9804, 2); TRUNCATE pt_1});
is(psql($truncated), '9803', 'where the read succeeds, the keys the owner sees');

$node->stop;
done_testing();
