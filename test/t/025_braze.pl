# The braze connector against a local emulator of Braze's REST API
# (test/emulators/braze.py): a table converging in Braze's user profiles,
# its key the external_id (at most 75 objects a request, a refused object
# dead-lettered alone with Braze's reason, a transient one retried, null
# removing an attribute, deletes of at most 50 ids by the external_ids
# kept), update mode, a query mirrored by its rows' email, a key that is
# no email address dead-lettered unsent, events from an
# append sync, an audience as a boolean attribute, Braze's rate held and
# its 429 waited out, a 503 retried, a 401 (whose body echoes the key)
# kept without the key, and bad options refused at creation.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $key = 'braze-rest-key-5f1e9c';
my $wrong = 'wrong-braze-key-77a0d3';
my $bz = start_emulator('braze', '--api-key', $key);
my $node = new_retl_node('braze');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
# profiles by external_id, and by email
sub users { my $s = $bz->get; return { map { $_ => $s->{users}{ $s->{external_ids}{$_} } } keys %{ $s->{external_ids} } }; }
sub by_email { return { map { lc($_->{attributes}{email} // '') => $_ } values %{ $bz->get->{users} } }; }

my $url = $bz->url;
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('braze', '$key'); SELECT retl_set_secret('braze_wrong', '$wrong');
	SELECT retl_create_destination('braze', 'braze', '$url', '{"auth": {"type": "bearer", "token": "{{secret:braze}}"}}');
	CREATE TABLE people (id int PRIMARY KEY, email text, first text, score int, note text);
	INSERT INTO people SELECT g, 'p' || g || '\@x.io', 'P' || g, g, 'n' || g FROM generate_series(1, 200) g;});
is(psql(q{SELECT batch_size || ' ' || rate_limit || ' ' || max_concurrency FROM retl.destinations WHERE name = 'braze'}),
	'75 300 16', "Braze's limits are the defaults: 75 objects a request, under 3,000 requests per 3 s");

# a table by external_id (the key): one object refused, one failing once
$bz->post('/_control', { reject => ['13'], fail_once => ['7'] });
psql(q{SELECT retl_create_sync('people', 'people', 'braze')});
ok(drained('people'), 'backfilled');
my $u = users();
is(scalar keys %$u, 199, 'every user but the refused one is in Braze');
is_deeply($u->{42}{attributes}, { email => 'p42@x.io', first => 'P42', score => 42, note => 'n42' },
	'with its columns as attributes, the key as external_id only');
ok(exists $u->{7}, 'the object Braze failed once ("please retry") was retried and is there');
my $st = $bz->get;
is($st->{minor_errors}{'internal error, please retry'}, 1, 'it failed once');
is($st->{max_items}, 75, 'never more than 75 objects a request');
is(psql(q{SELECT key::text || ' ' || last_error FROM retl.dead_letters WHERE sync = 'people'}),
	q{{"id": 13} Braze refused the user's attributes: provided external_id is blacklisted and disallowed},
	'one dead letter: the refused record alone, with Braze\'s reason');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people'}), '199', 'the external_ids sent are kept');

# an update reaches the same user (null removes an attribute); deletes by external_id, 50 at most
psql(q{UPDATE people SET first = 'Seven', note = NULL WHERE id = 7; DELETE FROM people WHERE id = 8 OR id BETWEEN 100 AND 180;});
ok(drained('people'), 'changes drained');
$u = users();
is_deeply($u->{7}{attributes}, { email => 'p7@x.io', first => 'Seven', score => 7 }, 'the update reached user 7, its note removed');
ok(!exists $u->{8} && !exists $u->{150}, 'deleted rows\' users are deleted');
is(scalar keys %$u, 117, 'all 82 of them, by the external_ids kept');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people'}), '117', 'and forgotten');
$st = $bz->get;
ok($st->{delete_requests} >= 2, "in requests of at most 50 ids ($st->{delete_requests})");
is($st->{codes}{400} // 0, 0, 'Braze refused no request');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '1', 'nothing more dead-lettered');
# a row inserted and deleted before the sync sent it: nothing to delete
my $before = $bz->get->{requests};
is(never_sent_change($node, 'people', q{INSERT INTO people VALUES (9001, 'b@x.io', 'B', 1, 'n')},
	q{DELETE FROM people WHERE id = 9001}), '0|1', 'a delete of a user never sent is delivered, not dead-lettered');
is($bz->get->{requests}, $before, 'without a request');

# a 503 is retried
$bz->post('/_control', { fail_requests => 1 });
psql(q{UPDATE people SET score = 1000 WHERE id = 9});
ok(drained('people'), 'sent after a 503');
is(users()->{9}{attributes}{score}, 1000, 'the change is there');
is($bz->get->{codes}{503}, 1, 'Braze answered 503 once');
# an object alone failing once: a 400 naming it (none was valid), retried
$bz->post('/_control', { fail_once => ['9'] });
psql(q{UPDATE people SET score = 2000 WHERE id = 9});
ok(drained('people'), 'sent after a 400 naming its one object');
is(users()->{9}{attributes}{score}, 2000, 'the change is there');
is($bz->get->{codes}{400}, 1, 'Braze answered 400 once');

# update mode: existing users only (_update_existing_only)
psql(q{CREATE TABLE edits (id int PRIMARY KEY, first text);
	INSERT INTO edits VALUES (1, 'One'), (9999, 'Nobody');
	SELECT retl_create_sync('edits', 'edits', 'braze', mode => 'update', schedule => 'manual');
	SELECT retl_run_sync('edits');});
ok($node->poll_query_until('postgres', q{SELECT last_run_status = 'succeeded' FROM retl.sync_status WHERE sync = 'edits'}), 'the update sync ran');
psql(q{UPDATE edits SET first = first || '!'; SELECT retl_run_sync('edits');});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM retl.runs WHERE sync = 'edits' AND status = 'succeeded'})
	&& drained('edits'), 'ran again and drained');
is(users()->{1}{attributes}{first}, 'One!', 'update: an existing user is updated');
ok(!exists users()->{9999}, 'update: no user is created');

# a query keyed by id, its users named by a field of the rows (email):
# deletes by the email kept
psql(q{CREATE TABLE accounts (id int PRIMARY KEY, email text, plan text);
	INSERT INTO accounts VALUES (1, 'a@y.io', 'gold'), (2, 'b@y.io', 'free');
	SELECT retl_create_sync('accounts', 'SELECT id, email, plan FROM accounts', 'braze', key => '{id}', mode => 'mirror',
		schedule => 'manual', options => '{"identifier": "email"}');
	SELECT retl_run_sync('accounts');});
ok($node->poll_query_until('postgres', q{SELECT last_run_status = 'succeeded' FROM retl.sync_status WHERE sync = 'accounts'})
	&& drained('accounts'), 'the query ran and was sent');
is_deeply(by_email()->{'a@y.io'}{attributes}, { email => 'a@y.io', id => 1, plan => 'gold' }, 'a user by email, the row its attributes');
is(psql(q{SELECT id FROM retl.remembered_ids WHERE sync = 'accounts' AND key = '{"id": 1}'}), 'a@y.io', 'the email sent is kept');
psql(q{DELETE FROM accounts WHERE id = 1; SELECT retl_run_sync('accounts');});
ok(wait_for(sub { !exists by_email()->{'a@y.io'} }, 30), 'mirror: the row that left the query deleted its user, by the email kept');
ok(exists by_email()->{'b@y.io'}, 'the other stays');

# named by email, a value that is no email address (no @) is dead-lettered
# alone before sending, saying why without the value; the others go
psql(q{CREATE TABLE signups (email text PRIMARY KEY, plan text);
	INSERT INTO signups VALUES ('s1@y.io', 'a'), ('not-an-email-9d2', 'b'), ('s2@y.io', 'c');
	SELECT retl_create_sync('signups', 'signups', 'braze', options => '{"identifier": "email"}');});
ok(drained('signups'), 'the signups were sent');
ok(exists by_email()->{'s1@y.io'} && exists by_email()->{'s2@y.io'}, 'the users with an email are there');
like(psql(q{SELECT key::text || ' ' || last_error FROM retl.dead_letters WHERE sync = 'signups'}),
	qr/^\{"email": "not-an-email-9d2"\} the record's field "email", which names the user, holds no \@: it is not an email address$/,
	'the one without @ alone is dead-lettered, saying why');
unlike(psql(q{SELECT last_error FROM retl.dead_letters WHERE sync = 'signups'}), qr/not-an-email/, 'its message does not quote the value');
ok(!grep({ /invalid email/ } keys %{ $bz->get->{minor_errors} }), 'Braze never saw it');

# events: each inserted row, its user a field of the row
psql(q{CREATE TABLE orders (id serial PRIMARY KEY, customer text, amount numeric, sku text);
	SELECT retl_create_sync('orders', 'orders', 'braze', mode => 'append',
		mapping => '{"customer": "external_id", "amount": "amount", "sku": "sku"}',
		options => '{"event_name": "order_placed"}');
	INSERT INTO orders (customer, amount, sku) VALUES ('42', 9.5, 'A-1'), ('42', 20, 'B-2'), ('13', 1, 'C-3');});
ok(drained('orders'), 'events sent');
my $ev = users()->{42}{events};
is(scalar @$ev, 2, 'both events of user 42');
is_deeply([ map { [ $_->{name}, $_->{properties}{sku}, $_->{properties}{amount} ] } @$ev ],
	[ [ 'order_placed', 'A-1', 9.5 ], [ 'order_placed', 'B-2', 20 ] ], 'named, with the row as properties');
like($ev->[0]{time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$/, 'at the capture time, ISO 8601');
ok(!exists $ev->[0]{properties}{external_id}, 'the user is not a property');
is(psql(q{SELECT key::text || ' ' || last_error FROM retl.dead_letters WHERE sync = 'orders'}),
	q{{"id": 3} Braze refused the event: provided external_id is blacklisted and disallowed},
	'the refused event alone is dead-lettered');

# an audience as a boolean attribute: true on entry, false on exit
psql(q{CREATE TABLE buyers (email text PRIMARY KEY, spend int);
	INSERT INTO buyers VALUES ('p1@x.io', 900), ('new@y.io', 800), ('small@y.io', 5);
	SELECT retl_create_audience('vip', 'SELECT email FROM buyers WHERE spend > 500', '{email}', schedule => 'manual');
	SELECT retl_create_sync('vip', 'audience:vip', 'braze', mode => 'mirror',
		options => '{"identifier": "email", "attribute": "vip"}');
	SELECT retl_refresh_audience('vip');});
my $vip = sub { my $e = by_email(); join(',', map { "$_=" . ($e->{$_}{attributes}{vip} ? 1 : 0) }
	grep { exists $e->{$_}{attributes}{vip} } sort keys %$e) };
ok(wait_for(sub { $vip->() eq 'new@y.io=1,p1@x.io=1' }, 30), 'the members are true (a new profile created by email)');
psql(q{UPDATE buyers SET spend = 1 WHERE email = 'p1@x.io'; UPDATE buyers SET spend = 999 WHERE email = 'small@y.io';
	SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { $vip->() eq 'new@y.io=1,p1@x.io=0,small@y.io=1' }, 30), 'who exited is false, who entered true');
ok(drained('vip'), 'the audience sync drained');
ok(exists users()->{1}, 'the exited member\'s profile is kept');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'vip'}), '0', 'nothing dead-lettered');

$st = $bz->get;
is($st->{limited}, 0, 'Braze never answered 429 over the run');

# a lowered limit (10 requests per 3 s) is hit: the destination waits out
# the window.  25 requests: the emulator's windows are fixed, and a burst
# of 20 could fall 10 on each side of a window's end without a 429.
$bz->post('/_control', { rate => 10, window => 3 });
psql(q{CREATE TABLE many (id text PRIMARY KEY, v int);
	INSERT INTO many SELECT 'm' || g, g FROM generate_series(1, 100) g;
	SELECT retl_create_sync('many', 'many', 'braze', options => '{"batch_size": 4}');});
ok(drained('many'), 'sent despite the limit');
$st = $bz->get;
is(scalar(grep { /^m\d+$/ && $st->{users}{ $st->{external_ids}{$_} }{attributes}{v} } keys %{ $st->{external_ids} }),
	100, 'every row is there');
ok($st->{limited} > 0 && $st->{limited} <= 40, "a few 429s, not a storm of retries ($st->{limited})");
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'many'}), '0', 'nothing dead-lettered');
$bz->post('/_control', { rate => 3000, window => 3 });

# 401: Braze echoes the key presented; it is kept nowhere
psql(qq{SELECT retl_create_destination('braze_wrong', 'braze', '$url', '{"auth": {"type": "bearer", "token": "{{secret:braze_wrong}}"}}');
	CREATE TABLE lone (id int PRIMARY KEY, v int); INSERT INTO lone VALUES (1, 1);
	SELECT retl_create_sync('lone', 'lone', 'braze_wrong');});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM retl.dead_letters WHERE sync = 'lone'}), 'a 401 is dead-lettered');
my $dl = psql(q{SELECT last_status || ' ' || last_error || ' ' || response_excerpt FROM retl.dead_letters WHERE sync = 'lone'});
like($dl, qr/^401 .*Invalid API key: /, 'with Braze\'s answer');
unlike($dl . psql(q{SELECT coalesce(last_error, '') FROM retl.sync_status WHERE sync = 'lone'}), qr/\Q$wrong\E/,
	'but not the key it echoed');

# bad options are refused at creation, nothing created
my @bad = (
	[ q{SELECT retl_create_destination('bad', 'braze', options => '{"auth": {"type": "bearer", "token": "{{secret:braze}}"}}')},
		qr/a braze destination needs its instance's REST endpoint as url.*\nHINT:.*rest\.iad-01\.braze\.com/s, 'no url' ],
	[ qq{SELECT retl_create_destination('bad', 'braze', '$url', '{"auth": {"type": "header", "name": "X-Key", "value": "{{secret:braze}}"}}')},
		qr/a braze destination needs a REST API key as bearer auth/, 'other auth' ],
	[ qq{SELECT retl_create_destination('bad', 'braze', '$url')}, qr/a braze destination needs a REST API key as bearer auth/, 'no auth' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'braze', mode => 'insert', schedule => 'manual')},
		qr/a destination of kind braze does not support mode "insert"/, 'insert mode' ],
	[ q{SELECT retl_create_sync('bad', 'orders', 'braze', mode => 'append')}, qr/needs option "event_name"/, 'append without event_name' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'braze', options => '{"event_name": "x"}')}, qr/option "event_name" is for an append sync/,
		'event_name on an upsert sync' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'braze', options => '{"identifier": "phone"}')},
		qr/option "identifier" of a braze sync must be "external_id" or "email"/, 'a bad identifier' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'braze', options => '{"attribute": "vip"}')}, qr/option "attribute" is for a sync of an audience/,
		'attribute without an audience' ],
	[ q{SELECT retl_create_sync('bad', 'audience:vip', 'braze', mode => 'mirror')}, qr/an audience sync to braze needs option "attribute"/,
		'an audience without attribute' ],
	[ q{SELECT retl_create_sync('bad', 'SELECT id, first FROM people', 'braze', key => '{id,first}', schedule => 'manual')},
		qr/a braze sync whose records carry no field "external_id" needs a key of one column, not 2/, 'a key of two columns' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'braze', mapping => '{"email": "braze_id"}')},
		qr/carry a field "braze_id", which Braze takes as its own/, 'a braze_id field' ],
	[ q{SELECT retl_create_sync('bad', 'orders', 'braze', mode => 'append', mapping => '{"customer": "external_id", "sku": "time"}',
		options => '{"event_name": "x"}')}, qr/field "time", which Braze refuses as an event property/, 'a "time" property' ],
	[ q{SELECT retl_create_sync('bad', 'orders', 'braze', mode => 'append', options => '{"event_name": "x"}')},
		qr/option "identifier" names field "external_id", which the sync's records do not carry/, 'an event without its user' ],
);
for my $b (@bad)
{
	my ($ret, $out, $err) = $node->psql('postgres', $b->[0]);
	like($err, $b->[1], "refused: $b->[2]");
}
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'bad'}) . psql(q{SELECT count(*) FROM retl.destinations WHERE name = 'bad'}),
	'00', 'nothing was created');
unlike(slurp_file($node->logfile), qr/\Q$key\E|\Q$wrong\E/, 'no key in the server log');

done_testing();
