# A sync reads its source as its owner: grants and row-level security
# apply to the backfill, to the rows its upserts send and to a diff sync's
# runs.  A row hidden from the owner is not sent (nor its key); when the
# owner loses SELECT on the table the sync fails with a clear error and
# nothing is sent, until the grant is back.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $r = start_receiver();
my $node = new_retl_node('owner');
sub psql { return $node->safe_psql('postgres', $_[0]); }

# The last state each key reached at the receiver on a path.
sub states
{
	my ($path) = @_;
	my %last;
	for my $req (grep { $_->{path} eq $path && $_->{status} == 200 } @{ $r->requests })
	{
		$last{ $_->{key}{id} } = $_->{op} eq 'delete' ? 'deleted' : $_->{data}{v}
		  for @{ $req->{body}{records} };
	}
	return \%last;
}

sub drained
{
	my ($sync) = @_;
	return $node->poll_query_until('postgres',
		"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$sync'");
}

psql(q{CREATE EXTENSION retl;
	CREATE ROLE alice NOLOGIN IN ROLE retl_user;
	CREATE TABLE t (id int PRIMARY KEY, tenant text NOT NULL, v text);
	INSERT INTO t VALUES (1, 'a', 'a1'), (2, 'b', 'b2'), (3, 'a', 'a3'), (4, 'b', 'b4');
	ALTER TABLE t ENABLE ROW LEVEL SECURITY;
	CREATE POLICY tenant_a ON t FOR SELECT TO alice USING (tenant = 'a');
	GRANT SELECT ON t TO alice;
	SELECT retl_create_destination('d', 'webhook', '} . $r->url('/as_alice') . q{',
		options => '{"batch_size": 10}');
	SELECT retl_create_destination('dsu', 'webhook', '} . $r->url('/as_su') . q{',
		options => '{"batch_size": 10}');
	SELECT retl_create_destination('dm', 'webhook', '} . $r->url('/model') . q{',
		options => '{"batch_size": 10}');
	SELECT retl_create_destination('dself', 'webhook', '} . $r->url('/by_alice') . q{',
		options => '{"batch_size": 10}');
	SELECT retl_grant_destination(d, 'alice') FROM unnest('{d,dm,dself}'::text[]) d;});

# A role that may not read the table cannot own a sync of it.
my ($ret, $out, $err) = $node->psql('postgres', q{CREATE ROLE bob NOLOGIN IN ROLE retl_user;
	SELECT retl_grant_destination('d', 'bob');
	SELECT retl_create_sync(name => 'bobs', source => 't', destination => 'd', options => '{"owner": "bob"}')});
like($err, qr/permission denied for table t/, 'an owner that may not read the table: refused at creation');
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT retl_create_sync(name => 'app', source => 't', destination => 'd', mode => 'append', options => '{"owner": "alice"}')});
like($err, qr/row-level security of table public\.t applies to role "alice"/,
	'an append sync (rows sent as written): refused to an owner under row-level security');

psql(q{SELECT retl_create_sync(name => 'as_alice', source => 't', destination => 'd', options => '{"owner": "alice"}');
	SELECT retl_create_sync(name => 'as_su', source => 't', destination => 'dsu');
	SELECT retl_create_sync(name => 'model', source => 'SELECT id, v FROM t', key => '{id}',
		destination => 'dm', schedule => 'manual', options => '{"owner": "alice"}');
	SELECT retl_run_sync('model');});
ok(drained('as_alice') && drained('as_su'), 'backfills delivered');
is_deeply(states('/as_alice'), { 1 => 'a1', 3 => 'a3' }, 'backfill as the owner: only the rows it may see');
is_deeply(states('/as_su'), { 1 => 'a1', 2 => 'b2', 3 => 'a3', 4 => 'b4' }, 'a superuser-owned sync sees every row');
ok($node->poll_query_until('postgres', q{SELECT last_run_status = 'succeeded' FROM retl.sync_status WHERE sync = 'model'}),
	'the diff run succeeded');
ok(drained('model'), 'and was delivered');
is_deeply(states('/model'), { 1 => 'a1', 3 => 'a3' }, 'a diff run as the owner: only the rows it may see');

# Changes: visible rows are sent with their state, hidden ones not at all
# (not even their key), a row that leaves the owner's view is not sent
# either, and a deleted row is a delete.
psql(q{UPDATE t SET v = 'a1+' WHERE id = 1;
	UPDATE t SET v = 'b2+' WHERE id = 2;
	INSERT INTO t VALUES (5, 'b', 'b5'), (6, 'a', 'a6');
	DELETE FROM t WHERE id = 3;});
ok(drained('as_alice') && drained('as_su'), 'changes delivered');
is_deeply(states('/as_alice'), { 1 => 'a1+', 3 => 'deleted', 6 => 'a6' },
	'as the owner: visible changes only; hidden keys never sent');
my @keys = map { $_->{key}{id} } map { @{ $_->{body}{records} } }
  grep { $_->{path} eq '/as_alice' } @{ $r->requests };
ok(!grep({ $_ == 2 || $_ == 4 || $_ == 5 } @keys), 'no hidden key in any request');
is(psql(q{SELECT count(*) FROM retl.queue q JOIN retl.syncs s ON s.id = q.sync_id WHERE s.name = 'as_alice'}), '0',
	'hidden keys left the queue');
is_deeply(states('/as_su'), { 1 => 'a1+', 2 => 'b2+', 3 => 'deleted', 4 => 'b4', 5 => 'b5', 6 => 'a6' },
	'the superuser-owned sync sent everything');

# The owner loses SELECT: the sync fails clearly, nothing is sent; the grant
# back sends the change.
psql(q{REVOKE SELECT ON t FROM alice; UPDATE t SET v = 'a6+' WHERE id = 6;});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' AND last_error LIKE 'role "alice", the owner of sync "as_alice", may not read table "t"%'
	  FROM retl.sync_status WHERE sync = 'as_alice'}), 'owner without SELECT: the sync is failing, with a clear error');
is(states('/as_alice')->{6}, 'a6', 'nothing was sent meanwhile');
is(psql(q{SELECT pending FROM retl.sync_status WHERE sync = 'as_alice'}), '1', 'the change waits in the queue');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_run_sync('model')});
ok($node->poll_query_until('postgres', q{SELECT last_run_status = 'failed' FROM retl.sync_status WHERE sync = 'model'}),
	'a diff run as that owner fails too');
psql(q{GRANT SELECT ON t TO alice;});
ok(drained('as_alice'), 'grant back: delivered');
is(states('/as_alice')->{6}, 'a6+', 'the waiting change went out');

# A retl_user's own sync: created by the role itself, read as itself.
psql(q{GRANT TRIGGER ON t TO alice;
	SET ROLE alice;
	SELECT retl_create_sync(name => 'by_alice', source => 't', destination => 'dself');});
ok(drained('by_alice'), 'a sync created by alice: delivered');
is_deeply(states('/by_alice'), { 1 => 'a1+', 6 => 'a6+' }, 'with only the rows alice may see');

# The destination's grant is revoked: the sync fails clearly, nothing is
# sent; granted again, the waiting change goes out.  Likewise when the
# owner loses retl_user.
psql(q{SELECT retl_revoke_destination('d', 'alice'); UPDATE t SET v = 'a1++' WHERE id = 1;});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' AND last_error LIKE 'role "alice", the owner of sync "as_alice", may not send to destination "d"%'
	  FROM retl.sync_status WHERE sync = 'as_alice'}), 'destination revoked: the sync is failing, with a clear error');
ok(drained('as_su'), 'meanwhile the superuser\'s sync delivered the change');
is(states('/as_alice')->{1}, 'a1+', 'the revoked sync sent nothing');
is(psql(q{SELECT pending FROM retl.sync_status WHERE sync = 'as_alice'}), '1', 'its change waits in the queue');
psql(q{SELECT retl_grant_destination('d', 'alice')});
ok(drained('as_alice'), 'granted again: delivered');
is(states('/as_alice')->{1}, 'a1++', 'the waiting change went out');

# The owner loses retl_user, then the role is given back: three times,
# the change made right after the REVOKE (50 ms) (the worker keeps its
# syncs between passes, and a role change is all that tells it: one that
# read them again on its own, each second, would not pass three times).
my $was = 'a1++';
for my $i (1 .. 3)
{
	my $v = 'a1++' . ('+' x $i);
	psql(q{REVOKE retl_user FROM alice});
	# (a pass already under way when it commits still sends with the old)
	sleep 0.05;
	psql(qq{UPDATE t SET v = '$v' WHERE id = 1});
	ok($node->poll_query_until('postgres',
		q{SELECT state = 'failing' AND last_error LIKE '%may not send to destination "d"%'
		  FROM retl.sync_status WHERE sync = 'as_alice'}), "owner without retl_user ($i): failing");
	is(states('/as_alice')->{1}, $was, "and nothing sent ($i)");
	psql(q{GRANT retl_user TO alice;});
	ok(drained('as_alice'), "retl_user back ($i): delivered");
	is(states('/as_alice')->{1}, $v, "the waiting change went out ($i)");
	$was = $v;
}

# TRUNCATE: the deletes of the keys the owner could see, and no other key.
($ret, $out, $err) = $node->psql('postgres', q{TRUNCATE t});
is($err, '', 'TRUNCATE tells the writer nothing (no notice of retl\'s own work)');
ok(drained('as_alice') && drained('as_su') && drained('by_alice'), 'a TRUNCATE delivered');
is_deeply(states('/as_alice'), { 1 => 'deleted', 3 => 'deleted', 6 => 'deleted' },
	'as the owner: deletes of the rows it could see');
is_deeply(states('/by_alice'), { 1 => 'deleted', 6 => 'deleted' }, 'the same for the sync alice created');
@keys = map { $_->{key}{id} } map { @{ $_->{body}{records} } }
  grep { $_->{path} eq '/as_alice' || $_->{path} eq '/by_alice' } @{ $r->requests };
ok(!grep({ $_ == 2 || $_ == 4 || $_ == 5 } @keys), 'no hidden key sent, TRUNCATE included');
is_deeply(states('/as_su'), { map { $_ => 'deleted' } 1 .. 6 }, 'the superuser-owned sync: every key deleted');

# A role that owns a sync cannot be dropped in the sync's database
# (process/roles.c), as PostgreSQL refuses for a table; REASSIGN OWNED
# moves its syncs.
psql(q{CREATE ROLE carol NOLOGIN IN ROLE retl_user; GRANT SELECT ON t TO carol;
	CREATE ROLE dave NOLOGIN IN ROLE retl_user; GRANT SELECT ON t TO dave;
	CREATE POLICY every_row ON t FOR SELECT TO dave USING (true);
	SELECT retl_grant_destination('d', 'carol');
	SELECT retl_grant_destination('d', 'dave');
	SELECT retl_create_sync(name => 'as_carol', source => 't', destination => 'd', options => '{"owner": "carol"}');});
ok(drained('as_carol'), 'carol\'s sync is idle');
($ret, $out, $err) = $node->psql('postgres', 'DROP ROLE carol');
ok($ret != 0 && $err =~ /role "carol" cannot be dropped because some objects depend on it/
	&& $err =~ /owner of sync "as_carol"/ && $err =~ /privileges for destination "d"/,
	'DROP ROLE of a sync\'s owner: refused, naming the sync and the grant');
psql(q{REASSIGN OWNED BY carol TO dave});
is(psql(q{SELECT owner FROM retl.syncs WHERE name = 'as_carol'}), 'dave', 'REASSIGN OWNED: dave owns it');
psql(q{INSERT INTO t VALUES (8, 'd', 'd8')});
ok(wait_for(sub { (states('/as_alice')->{8} // '') eq 'd8' }, 30),
	'the moved sync sends, as its new owner');
psql(q{REASSIGN OWNED BY dave TO carol});

# A role dropped from another database (where retl cannot see its syncs):
# the sync fails, saying so, and sends nothing; it can still be dropped.
psql(q{REVOKE SELECT ON t FROM carol});
$node->safe_psql('template1', 'DROP ROLE carol');
psql(q{INSERT INTO t VALUES (7, 'c', 'c7')});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' AND last_error ~ '^the owner of sync "as_carol" \(role \d+\) was dropped'
	  FROM retl.sync_status WHERE sync = 'as_carol'}), 'a dropped owner: failing, and the error says so');
ok(!exists states('/as_alice')->{7}, 'nothing of it sent');
psql(q{SELECT retl_drop_sync('as_carol')});
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'as_carol'}), '0', 'and it can be dropped');

$node->stop;
done_testing();
