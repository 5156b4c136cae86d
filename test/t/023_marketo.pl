# The marketo connector against a local emulator of Marketo's REST API
# (test/emulators/marketo.py): OAuth 2.0 client credentials at the
# identity endpoint, a table converging in Marketo's leads (batches of at
# most 300, a skipped record dead-lettered alone, another retried, updates
# by the lead id kept, deletes by it), a token Marketo calls expired (602)
# renewed once, insert and update modes, an audience in a static list, and
# Marketo's limits held and obeyed.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $mk = start_emulator('marketo', '--client-id', 'retl-client', '--client-secret', 'mk-secret-value',
	'--token-lifetime', '30', '--list', '1001');
my $node = new_retl_node('marketo');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
sub leads { return { map { lc($_->{email} // '') => $_ } values %{ $mk->get->{leads} } }; }

my $url = $mk->url;
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('mk', 'mk-secret-value');
	SELECT retl_create_destination('mkto', 'marketo', '$url', '{"auth": {"type": "oauth2",
		"grant_type": "client_credentials", "client_id": "retl-client", "client_secret": "{{secret:mk}}"}}');
	CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, first text, score int);
	INSERT INTO people SELECT g, 'p' || g || '\@x.io', 'P' || g, g FROM generate_series(1, 400) g;
	INSERT INTO people VALUES (401, 'not-an-email', 'Bad', 1);});
is(psql(q{SELECT batch_size || ' ' || rate_limit || ' ' || max_concurrency FROM retl.destinations WHERE name = 'mkto'}),
	'300 4.5 10', "Marketo's limits are the defaults: 300 leads a call, under 100 calls in 20 s, 10 at once");

$mk->post('/_control', { fail_once => ['p9@x.io'] });
psql(q{SELECT retl_create_sync('people', 'people', 'mkto',
	mapping => '{"email": "email", "first": "firstName", "score": "leadScore"}')});
ok(drained('people'), 'backfilled');
my $l = leads();
is(scalar(grep { /\@x\.io$/ } keys %$l), 400, 'every valid row is a lead');
is($l->{'p7@x.io'}{firstName}, 'P7', 'with its fields');
is($l->{'p7@x.io'}{leadScore}, 7, 'numbers as numbers');
ok(exists $l->{'p9@x.io'}, 'the record Marketo skipped once (1029) was retried and is there');
my $st = $mk->get;
is($st->{max_records}, 300, 'never more than 300 records a call');
is($st->{codes}{1029}, 1, 'Marketo skipped it once');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '1', 'one dead letter');
is(psql(q{SELECT key::text || ' ' || last_error FROM retl.dead_letters WHERE sync = 'people'}),
	q{{"id": 401} Marketo skipped the record: 1003 Value for field 'email' is invalid},
	'the invalid record alone, with Marketo\'s reason');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people'}), '400', 'the lead ids are kept');
is($st->{token_requests}, 1, 'one access token for all of it');

# an update reaches the same lead; a delete removes it by its id
my $id7 = psql(q{SELECT id FROM retl.remembered_ids WHERE sync = 'people' AND key = '{"id": 7}'});
psql(q{UPDATE people SET first = 'Seven' WHERE id = 7; DELETE FROM people WHERE id = 8;});
ok(drained('people'), 'changes drained');
is($mk->get->{leads}{$id7}{firstName}, 'Seven', "the update reached lead $id7");
ok(!exists leads()->{'p8@x.io'}, 'the deleted row\'s lead is deleted');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people' AND key = '{"id": 8}'}), '0',
	'and its id forgotten');
# a row inserted and deleted before the sync sent it: nothing to delete
my $before = $mk->get->{calls};
is(never_sent_change($node, 'people', q{INSERT INTO people VALUES (9001, 'b\@x.io', 'B', 1)},
	q{DELETE FROM people WHERE id = 9001}), '0|1', 'a delete of a key never upserted is delivered, not dead-lettered');
is($mk->get->{calls}, $before, 'without a call');
# a key sent and skipped (no lead id): its delete is not counted done
is(marked($node, 'people', '{"id": 401}'), '1', 'a key sent with no id given is marked');
is(counted_changes($node, 'people', q{DELETE FROM people WHERE id = 401}), '1|0',
	'a delete of a key sent with no id kept is dead-lettered, not counted delivered');

# Marketo says the token expired (602, in an HTTP 200): renewed once, retried
$mk->post('/_control', { expire_token => JSON::PP::true });
psql(q{UPDATE people SET first = 'Ten' WHERE id = 10});
ok(drained('people'), 'the change was sent after the token was renewed');
is(leads()->{'p10@x.io'}{firstName}, 'Ten', 'with the new token');
$st = $mk->get;
is($st->{codes}{602}, 1, 'Marketo answered 602 once');
is($st->{token_requests}, 2, 'and retl got one new token');

# createOnly and updateOnly from the modes
psql(q{CREATE TABLE newcomers (id int PRIMARY KEY, email text);
	INSERT INTO newcomers VALUES (1, 'p1@x.io'), (2, 'fresh@x.io');
	SELECT retl_create_sync('newcomers', 'newcomers', 'mkto', mode => 'insert', schedule => 'manual',
		mapping => '{"email": "email"}');
	CREATE TABLE edits (id int PRIMARY KEY, email text, first text);
	INSERT INTO edits VALUES (1, 'p2@x.io', 'Two'), (2, 'nobody@x.io', 'No');
	SELECT retl_create_sync('edits', 'edits', 'mkto', mode => 'update', schedule => 'manual',
		mapping => '{"email": "email", "first": "firstName"}');
	SELECT retl_run_sync('newcomers'); SELECT retl_run_sync('edits');});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM retl.sync_status
	WHERE sync IN ('newcomers', 'edits') AND last_run_status = 'succeeded'}), 'insert and update syncs ran');
# update sends the rows that changed since the last run
psql(q{UPDATE edits SET first = first || 'o'; SELECT retl_run_sync('edits');});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM retl.runs WHERE sync = 'edits' AND status = 'succeeded'}),
	'the update sync ran again');
ok(drained('newcomers') && drained('edits'), 'and drained');
ok(exists leads()->{'fresh@x.io'}, 'insert: a new lead is created');
like(psql(q{SELECT last_error FROM retl.dead_letters WHERE sync = 'newcomers'}), qr/^Marketo skipped the record: 1005 Lead already exists/,
	'insert: an existing lead is refused (createOnly)');
is(leads()->{'p2@x.io'}{firstName}, 'Twoo', 'update: an existing lead is updated');
ok(!exists leads()->{'nobody@x.io'}, 'update: no lead is created');
like(psql(q{SELECT last_error FROM retl.dead_letters WHERE sync = 'edits'}), qr/^Marketo skipped the record: 1004 Lead not found/,
	'update: a missing lead is refused (updateOnly)');

# an audience in a static list: entering members' leads upserted, then
# added to the list by lead id; exiting ones removed, their leads kept
psql(q{CREATE TABLE buyers (email text PRIMARY KEY, spend int);
	INSERT INTO buyers VALUES ('p1@x.io', 900), ('new@x.io', 800), ('small@x.io', 5);
	SELECT retl_create_audience('vip', 'SELECT email FROM buyers WHERE spend > 500', '{email}', schedule => 'manual');
	SELECT retl_create_sync('vip_list', 'audience:vip', 'mkto', mode => 'mirror', options => '{"list_id": "1001"}');
	SELECT retl_refresh_audience('vip');});
my $list = sub { my $s = $mk->get; [ sort map { $s->{leads}{$_}{email} } @{ $s->{lists}{1001} } ] };
ok(wait_for(sub { @{ $list->() } == 2 }, 30), 'the audience\'s members are in the list');
is_deeply($list->(), [ 'new@x.io', 'p1@x.io' ], 'both, the new lead created first');
psql(q{UPDATE buyers SET spend = 1 WHERE email = 'p1@x.io'; UPDATE buyers SET spend = 999 WHERE email = 'small@x.io';
	SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { join(',', @{ $list->() }) eq 'new@x.io,small@x.io' }, 30), 'who exited left the list, who entered joined it');
ok(exists leads()->{'p1@x.io'}, 'the exited member\'s lead is not deleted');
ok(drained('vip_list'), 'the list sync drained');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'vip_list'}), '0', 'nothing dead-lettered');

$st = $mk->get;
is($st->{codes}{606} // 0, 0, 'never over 100 calls in 20 s (606)');
is($st->{codes}{615} // 0, 0, 'never over 10 calls at once (615)');
ok($st->{max_in_flight} <= 10, "at most 10 calls at once ($st->{max_in_flight})");

# the day's quota used up (607): the records wait, nothing is dead-lettered
$mk->post('/_control', { daily_quota => 0 });
psql(q{UPDATE people SET first = 'Eleven' WHERE id = 11});
ok($node->poll_query_until('postgres',
	q{SELECT last_error LIKE 'Marketo refused the request: 607%' FROM retl.sync_status WHERE sync = 'people'}),
	'607 shows in the sync\'s status');
is(psql(q{SELECT pending + in_flight FROM retl.sync_status WHERE sync = 'people'}), '1', 'the change waits');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '2', 'nothing more dead-lettered');
my $calls = $mk->get->{calls};
sleep 2;
is($mk->get->{calls}, $calls, 'and the destination waits instead of calling again');

# bad options are refused at creation, nothing created
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'people', 'mkto', mode => 'append')});
like($err, qr/a destination of kind marketo does not support mode "append"/, 'append is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'people', 'mkto', options => '{"list_id": "1001"}')});
like($err, qr/option "list_id" is for a sync of an audience/, 'a list_id needs an audience');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'people', 'mkto', options => '{"lookup_field": "e mail"}')});
like($err, qr/option "lookup_field" of a marketo sync must be a lead field's REST API name/, 'a bad lookup_field');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_destination('bad', 'marketo', 'http://127.0.0.1:1')});
like($err, qr/a marketo destination needs OAuth 2.0 auth/, 'a destination without auth');
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'bad'}) . psql(q{SELECT count(*) FROM retl.destinations WHERE name = 'bad'}),
	'00', 'nothing was created');
unlike(slurp_file($node->logfile), qr/mk-secret-value|\Q$st->{token}\E/, 'neither the secret nor the token in the server log');

done_testing();
