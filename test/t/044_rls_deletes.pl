# A realtime sync reads its rows as its owner, so row-level security hides
# rows from it; it must not send their keys either, deletes included.  The
# capture trigger queues a change only for a row version the owner may
# see: a DELETE of a hidden row, or the old key of a key-changing UPDATE
# of one, sends nothing (a row that is gone when the worker reads it
# would be sent as a delete of its key, whoever could see it); an INSERT
# or UPDATE of a hidden row queues nothing either, so a row deleted before
# the worker reads it does not send its key.  An UPDATE that moves a row
# out of the owner's view sends a delete of its key (a hidden row has it
# now), one back into view an upsert, and the destination ends with
# exactly the rows the owner sees.  The owner's policy and
# ENABLE / DISABLE ROW LEVEL SECURITY are followed from the next row on,
# in the same session, and a writer's row_security off changes nothing
# (TRUNCATE included).  Owners that row-level security does not narrow
# (a superuser, a BYPASSRLS role, a table without it) send every delete.
# Logical capture, which knows a deleted row's key only, is refused to an
# owner under row-level security, and a logical sync whose owner comes
# under it later fails, sending nothing.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $api = start_receiver();
my $node = new_retl_node('rls_deletes', extra_conf => "retl.poll_interval_ms = 200\n");
sub psql { return $node->safe_psql('postgres', $_[0]); }

if (psql(q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '1')
{
	psql(q{ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, retl; SELECT pg_reload_conf();});
	$node->poll_query_until('postgres', q{SELECT current_setting('output_plugin_libraries') LIKE '%retl%'});
}

my @syncs = qw(as_carol as_su as_dave w_carol);

sub drained
{
	my $list = join(', ', map { "'$_'" } @_ ? @_ : @syncs);
	return $node->poll_query_until('postgres',
		"SELECT bool_and(NOT backfilling AND pending + in_flight = 0) FROM retl.sync_status WHERE sync IN ($list)");
}

# The records a path received since the last call for it, as "op:id",
# sorted (one statement's records may arrive in any order).
my %seen;
sub news
{
	my ($path) = @_;
	my $all = records_at($api, $path);
	my @new = @{$all}[ ($seen{$path} // 0) .. $#{$all} ];
	$seen{$path} = scalar @{$all};
	return join(' ', sort map { "$_->{op}:$_->{key}{id}" } @new);
}

# What paths received in a step, a statement; the BYPASSRLS owner's sync
# gets what the superuser's gets.
sub step
{
	my ($sql, $what, %want) = @_;
	psql($sql);
	ok(drained(), "$what: delivered");
	$want{'/dave'} = $want{'/su'} if defined $want{'/su'};
	for my $path (sort keys %want)
	{
		is(news($path), $want{$path}, "$what: $path");
	}
}

# Odd ids are tenant a, which carol may see; even ids tenant b.
psql(q{CREATE EXTENSION retl;
	CREATE ROLE carol NOLOGIN IN ROLE retl_user;
	CREATE ROLE dave NOLOGIN BYPASSRLS IN ROLE retl_user;
	CREATE TABLE u (id int PRIMARY KEY, tenant text NOT NULL, v text);
	INSERT INTO u SELECT i, CASE WHEN i % 2 = 1 THEN 'a' ELSE 'b' END, 'v' || i
	  FROM generate_series(1, 20) i;
	ALTER TABLE u ENABLE ROW LEVEL SECURITY;
	CREATE POLICY tenant_a ON u FOR SELECT TO carol USING (tenant = 'a');
	GRANT SELECT ON u TO carol, dave;
	CREATE TABLE w (id int PRIMARY KEY, tenant text NOT NULL);
	INSERT INTO w SELECT i, CASE WHEN i % 2 = 1 THEN 'a' ELSE 'b' END FROM generate_series(1, 8) i;
	GRANT SELECT ON w TO carol;
	SELECT retl_create_destination('d' || p, 'webhook', '} . $api->url('/') . q{' || p,
		options => '{"batch_size": 50}') FROM unnest('{carol,su,dave,w}'::text[]) p;
	SELECT retl_grant_destination('dcarol', 'carol');
	SELECT retl_grant_destination('dw', 'carol');
	SELECT retl_grant_destination('ddave', 'dave');
	SELECT retl_create_sync(name => 'as_carol', source => 'u', destination => 'dcarol', options => '{"owner": "carol"}');
	SELECT retl_create_sync(name => 'as_su', source => 'u', destination => 'dsu');
	SELECT retl_create_sync(name => 'as_dave', source => 'u', destination => 'ddave', options => '{"owner": "dave"}');
	SELECT retl_create_sync(name => 'w_carol', source => 'w', destination => 'dw', options => '{"owner": "carol"}');});
ok(drained(), 'backfills delivered');
is(news('/carol'), join(' ', sort map { "upsert:$_" } grep { $_ % 2 } 1 .. 20), 'carol: the backfill of the rows she sees');
is(news('/su'), join(' ', sort map { "upsert:$_" } 1 .. 20), 'superuser: every row');
is(news('/dave'), join(' ', sort map { "upsert:$_" } 1 .. 20), 'BYPASSRLS owner: every row');
is(news('/w'), join(' ', sort map { "upsert:$_" } 1 .. 8), 'a table without row-level security: every row');

step(q{DELETE FROM u WHERE id = 2}, 'a hidden row deleted',
	'/carol' => '', '/su' => 'delete:2');
step(q{DELETE FROM u WHERE id = 1}, 'a visible row deleted',
	'/carol' => 'delete:1', '/su' => 'delete:1');
step(q{UPDATE u SET id = 104 WHERE id = 4}, 'a hidden row\'s key changed, still hidden',
	'/carol' => '', '/su' => 'delete:4 upsert:104');
step(q{UPDATE u SET id = 106, tenant = 'a' WHERE id = 6}, 'a hidden row\'s key changed, now visible',
	'/carol' => 'upsert:106', '/su' => 'delete:6 upsert:106');
step(q{UPDATE u SET id = 103, tenant = 'b' WHERE id = 3}, 'a visible row\'s key changed, now hidden',
	'/carol' => 'delete:3', '/su' => 'delete:3 upsert:103');
step(q{DELETE FROM u WHERE id IN (5, 8, 7, 10)}, 'one statement deleting visible and hidden rows',
	'/carol' => 'delete:5 delete:7', '/su' => 'delete:10 delete:5 delete:7 delete:8');
# a row gone when the worker reads its change is sent as a delete: a change
# of a hidden row must not be queued either
step(q{BEGIN;
	INSERT INTO u VALUES (200, 'b', 'new'), (201, 'a', 'new');
	UPDATE u SET v = 'changed' WHERE id IN (12, 13);
	DELETE FROM u WHERE id IN (200, 201, 12, 13);
	COMMIT;}, 'hidden rows inserted or updated, then deleted, in one transaction',
	'/carol' => 'delete:13 delete:201', '/su' => 'delete:12 delete:13 delete:200 delete:201');

# The owner's policy and the table's row-level security, changed by another
# session, are followed by a writer's session that captured before.
my $writer = $node->background_psql('postgres');
$writer->query_safe(q{DELETE FROM u WHERE id = 14});
ok(drained(), 'a writer session deleted a hidden row');
is(news('/carol'), '', 'nothing for carol');
psql(q{ALTER POLICY tenant_a ON u USING (tenant IN ('a', 'b'))});
$writer->query_safe(q{DELETE FROM u WHERE id = 16});
ok(drained(), 'the policy widened, that session deleted a row it now shows carol');
is(news('/carol'), 'delete:16', 'its delete is sent');
psql(q{ALTER POLICY tenant_a ON u USING (tenant = 'a')});
$writer->query_safe(q{DELETE FROM u WHERE id IN (18, 15)});
ok(drained(), 'the policy narrowed again, a hidden and a visible row deleted');
is(news('/carol'), 'delete:15', 'only the visible row\'s delete is sent');

$writer->query_safe(q{DELETE FROM w WHERE id IN (1, 2)});
ok(drained(), 'table w, without row-level security');
is(news('/w'), 'delete:1 delete:2', 'every delete is sent');
psql(q{ALTER TABLE w ENABLE ROW LEVEL SECURITY;
	CREATE POLICY tenant_a ON w FOR SELECT TO carol USING (tenant = 'a');});
$writer->query_safe(q{DELETE FROM w WHERE id IN (3, 4)});
ok(drained(), 'row-level security enabled on w');
is(news('/w'), 'delete:3', 'the hidden row\'s delete is not sent');
psql(q{ALTER TABLE w DISABLE ROW LEVEL SECURITY});
$writer->query_safe(q{DELETE FROM w WHERE id IN (5, 6)});
ok(drained(), 'row-level security disabled again');
is(news('/w'), 'delete:5 delete:6', 'every delete is sent again');

# A writer whose session turned row_security off: the check as the owner
# applies the owner's policies all the same, and the writer sees no error.
$writer->query_safe(q{SET row_security = off; DELETE FROM u WHERE id IN (9, 20)});
ok(drained(), 'a writer with row_security off');
is(news('/carol'), 'delete:9', 'only the visible row\'s delete is sent');
$writer->quit;

# An owner that may not read the table: its changes wait in the queue, as
# before, and no writer fails.
psql(q{REVOKE SELECT ON u FROM carol; DELETE FROM u WHERE id = 11});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' AND last_error LIKE '%may not read table "u"%' FROM retl.sync_status WHERE sync = 'as_carol'}),
	'owner without SELECT: the sync is failing');
is(psql(q{SELECT pending FROM retl.sync_status WHERE sync = 'as_carol'}), '1', 'the delete waits in the queue');
psql(q{GRANT SELECT ON u TO carol});
ok(drained(), 'grant back: delivered');
is(news('/carol'), 'delete:11', 'the waiting delete went out');

# What the superuser and the BYPASSRLS owner were sent since: every delete.
my $every = 'delete:11 delete:14 delete:15 delete:16 delete:18 delete:20 delete:9';
is(news('/su'), $every, 'superuser: every delete');
is(news('/dave'), $every, 'BYPASSRLS owner: every delete');

# Logical capture has only a deleted row's key: refused to an owner under
# row-level security, at creation and when switching; a logical sync whose
# owner comes under it later fails and sends nothing.
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync(name => 'log_carol', source => 'u',
	destination => 'dcarol', capture => 'logical', options => '{"owner": "carol"}')});
like($err, qr/row-level security of table (public\.)?u applies to role "carol"/, 'logical capture refused to an owner under row-level security');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_alter_sync('as_carol', capture => 'logical')});
like($err, qr/row-level security of table (public\.)?u applies to role "carol"/, 'and a switch to it');
is(psql(q{SELECT capture FROM retl.syncs WHERE name = 'as_carol'}), 'trigger', 'the sync is as it was');
psql(q{SELECT retl_create_sync(name => 'w_log', source => 'w', destination => 'dw', capture => 'logical',
	options => '{"owner": "carol", "backfill": false}')});
psql(q{ALTER TABLE w ENABLE ROW LEVEL SECURITY; DELETE FROM w WHERE id = 8});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' AND last_error LIKE 'row-level security of table "w" applies to role "carol", the owner of logically captured sync "w_log"%'
	  FROM retl.sync_status WHERE sync = 'w_log'}), 'a logical sync whose owner comes under row-level security: failing');
is(news('/w'), '', 'nothing was sent');
psql(q{ALTER TABLE w DISABLE ROW LEVEL SECURITY});
ok(drained('w_log'), 'row-level security disabled: delivered');
is(news('/w'), 'delete:8', 'the waiting delete went out');

# A TRUNCATE by a writer whose session turned row_security off: the keys
# are read as the owner with its policies all the same (an error before).
psql(q{SET row_security = off; TRUNCATE u});
ok(drained(), 'a TRUNCATE by a writer with row_security off');
is(news('/carol'), 'delete:106 delete:17 delete:19', 'carol: the deletes of the rows she sees');
is(news('/su'), 'delete:103 delete:104 delete:106 delete:17 delete:19', 'superuser: every row\'s');

# --- rows that leave the owner's view, and come back ---

# An UPDATE whose new row carol may not see, of a row she saw, sends her a
# delete of its key, even though a hidden row has it (her destination must
# hold exactly the rows she sees, as a diff sync's would); one where she
# sees neither version sends nothing; a row back in view is upserted.
psql(q{INSERT INTO u SELECT i, CASE WHEN i % 2 = 1 THEN 'a' ELSE 'b' END, 'v' || i
	FROM generate_series(301, 312) i});
ok(drained(), 'rows 301-312 inserted');
is(news('/carol'), join(' ', sort map { "upsert:$_" } grep { $_ % 2 } 301 .. 312), 'carol: the rows she sees');
news($_) for qw(/su /dave);
step(q{UPDATE u SET tenant = 'b' WHERE id = 301}, 'a visible row updated out of view',
	'/carol' => 'delete:301', '/su' => 'upsert:301');
step(q{UPDATE u SET v = 'still hidden' WHERE id = 301}, 'that row updated again, hidden both times',
	'/carol' => '', '/su' => 'upsert:301');
step(q{DELETE FROM u WHERE id = 301}, 'that row deleted',
	'/carol' => '', '/su' => 'delete:301');
step(q{UPDATE u SET tenant = 'b' WHERE id = 303}, 'another visible row updated out of view',
	'/carol' => 'delete:303', '/su' => 'upsert:303');
step(q{UPDATE u SET tenant = 'a', v = 'back' WHERE id = 303}, 'and back into view',
	'/carol' => 'upsert:303', '/su' => 'upsert:303');
step(q{BEGIN; UPDATE u SET tenant = 'b' WHERE id = 305; UPDATE u SET tenant = 'a', v = 'back' WHERE id = 305; COMMIT;},
	'out of view and back in one transaction', '/carol' => 'upsert:305', '/su' => 'upsert:305');
step(q{BEGIN; UPDATE u SET v = 'changed' WHERE id = 307; UPDATE u SET tenant = 'b' WHERE id = 307; COMMIT;},
	'updated, then out of view, in one transaction', '/carol' => 'delete:307', '/su' => 'upsert:307');
step(q{UPDATE u SET tenant = 'c', v = 'hidden' WHERE id IN (302, 304)}, 'hidden rows updated, hidden both times',
	'/carol' => '', '/su' => 'upsert:302 upsert:304');
step(q{UPDATE u SET tenant = 'b' WHERE id IN (306, 309)},
	'one statement: a hidden row updated, still hidden, and a visible one out of view',
	'/carol' => 'delete:309', '/su' => 'upsert:306 upsert:309');
# a queued delete is sent though a hidden row has the key when it is sent
step(q{BEGIN; UPDATE u SET v = 'changed' WHERE id = 311; UPDATE u SET tenant = 'b' WHERE id = 311;
	DELETE FROM u WHERE id = 303; INSERT INTO u VALUES (303, 'b', 'hidden'); COMMIT;},
	'a row updated then out of view; a visible row deleted, then a hidden one inserted with its key',
	'/carol' => 'delete:303 delete:311', '/su' => 'upsert:303 upsert:311');
is(scalar(grep { $_->{key}{id} =~ /^(302|304|306)$/ } @{ records_at($api, '/carol') }), 0,
	'the keys of rows carol never saw were never sent to her');
# A TRUNCATE's key is sent as its row is when sent: a row there, an
# upsert; none, a delete; a row hidden from the owner (inserted after the
# TRUNCATE), a delete too: the owner saw the key's row that went.
step(q{BEGIN; TRUNCATE u; INSERT INTO u VALUES (305, 'b', 'hidden'), (313, 'a', 'seen'); COMMIT;},
	'a TRUNCATE, then a hidden row with a key carol saw and a visible one',
	'/carol' => 'delete:305 upsert:313');
news($_) for qw(/su /dave);

# Each destination holds exactly the rows its owner sees: the records
# received, applied in order.
sub destination
{
	my %rows;
	for my $r (@{ records_at($api, $_[0]) })
	{
		if ($r->{op} eq 'delete') { delete $rows{ $r->{key}{id} }; }
		else { $rows{ $r->{key}{id} } = 1; }
	}
	return join(' ', sort { $a <=> $b } keys %rows);
}
my $carol_sees = psql(q{SET ROLE carol; SELECT string_agg(id::text, ' ' ORDER BY id) FROM u});
is($carol_sees, '313', 'carol sees row 313');
is(destination('/carol'), $carol_sees, 'carol\'s destination holds exactly the rows she sees');
my $all = psql(q{SELECT string_agg(id::text, ' ' ORDER BY id) FROM u});
is(destination('/su'), $all, 'the superuser\'s holds every row');
is(destination('/dave'), $all, 'the BYPASSRLS owner\'s too');

$node->stop;
done_testing();
