# The iterable connector against a local emulator of Iterable's API
# (test/emulators/iterable.py): the Api-Key header, a table converging in
# Iterable's users (bulkUpdate, records Iterable names in failedUpdates
# dead-lettered alone with their list, updates, deletes by the email kept,
# an unknown user counted as deleted), users by userId, an append sync
# tracking events (trackBulk, the record id as the event's id, a failure
# retried once), an audience in a static list (subscribe, unsubscribe),
# requests kept under max_batch_bytes and split when Iterable finds one
# too large, and Iterable's rate held, and obeyed when lowered.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $key = 'it-key-0f3c9a7d51';
my $it = start_emulator('iterable', '--api-key', $key, '--list', '1234');
my $node = new_retl_node('iterable');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
sub users { return $it->get->{users_by_email}; }
sub dead { my ($s) = @_; return psql(qq{SELECT string_agg(key::text || ' ' || last_error, E'\\n' ORDER BY key::text)
	FROM retl.dead_letters WHERE sync = '$s'}); }

my $url = $it->url;
my $auth = '"auth": {"type": "header", "name": "Api-Key", "value": "{{secret:it_key}}"}';
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('it_key', '$key');
	SELECT retl_create_destination('iter', 'iterable', '$url', '{$auth}');
	SELECT retl_create_destination('iter_default', 'iterable', options => '{$auth}');
	CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, first text, score int);
	INSERT INTO people SELECT g, 'p' || g || '\@x.io', 'P' || g, g FROM generate_series(1, 300) g;
	INSERT INTO people VALUES (301, 'not-an-email', 'Bad', 1), (302, 'gone\@x.io', 'Gone', 2),
		(303, 'no\@x.io', 'No', 3);});
is(psql(q{SELECT url || ' ' || batch_size || ' ' || rate_limit || ' ' || max_concurrency || ' ' || max_batch_bytes
	FROM retl.destinations WHERE name = 'iter_default'}), 'https://api.iterable.com 1000 2.4 4 1048576',
	"Iterable's url, and limits as the defaults: under 5 calls a second, 1 MB a request");

# one user refused every time, one forgotten under GDPR, one malformed
$it->post('/_control', { reject => ['no@x.io'], forget => ['gone@x.io'] });
psql(q{SELECT retl_create_sync('people', 'people', 'iter',
	mapping => '{"email": "email", "first": "firstName", "score": "score"}')});
ok(drained('people'), 'backfilled');
my $u = users();
is(scalar(grep { /^p\d+\@x\.io$/ } keys %$u), 300, 'every valid row is a user');
is_deeply($u->{'p7@x.io'}{dataFields}, { firstName => 'P7', score => 7 },
	'with its other fields as dataFields, numbers as numbers');
is(dead('people'), join("\n",
	'{"id": 301} Iterable refused the record: invalidEmails (not-an-email)',
	'{"id": 302} Iterable refused the record: forgottenEmails (gone@x.io)',
	'{"id": 303} Iterable refused the record: invalidEmails (no@x.io)'),
	'exactly the refused records are dead-lettered, each with the list Iterable named it in');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people'}), '300',
	'the emails of keys that do not carry one are kept');
my $st = $it->get;
ok($st->{max_items} <= 1000, "never more than 1000 users a call ($st->{max_items})");
is($st->{key_leaks}, 0, 'the key only ever in the Api-Key header');

# an update reaches the user; a delete deletes it by the email kept; a
# user Iterable does not know counts as deleted
$it->post('/_control', { forget => ['p9@x.io'] });
psql(q{UPDATE people SET first = 'Seven', score = 77 WHERE id = 7; DELETE FROM people WHERE id IN (8, 9);});
ok(drained('people'), 'changes drained');
is_deeply(users()->{'p7@x.io'}{dataFields}, { firstName => 'Seven', score => 77 }, 'the update reached the user');
ok(!exists users()->{'p8@x.io'}, 'the deleted row\'s user is deleted');
is(scalar(grep { ($_->{email} // '') eq 'p8@x.io' } @{ $it->get->{deleted} }), 1, 'by DELETE /api/users/{email}');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '3',
	'deleting a user Iterable no longer has is not an error');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people' AND key IN ('{"id": 8}', '{"id": 9}')}), '0',
	'and the deleted keys\' emails are forgotten');
# a row inserted and deleted before the sync sent it: nothing to delete
my $before = $it->get->{requests};
is(never_sent_change($node, 'people', q{INSERT INTO people VALUES (9001, 'brief@x.io', 'B', 1)},
	q{DELETE FROM people WHERE id = 9001}), '0|1', 'a delete of a user never upserted is delivered, not dead-lettered');
is($it->get->{requests}, $before, 'without a request');
# a key sent and refused (no email kept): its delete is not counted done
is(marked($node, 'people', '{"id": 303}'), '1', 'a key sent with no email kept is marked');
is(counted_changes($node, 'people', q{DELETE FROM people WHERE id = 303}), '1|0',
	'a delete of a key sent with no email kept is dead-lettered, not counted delivered');

# users by userId, deleted by userId
psql(q{CREATE TABLE accounts (uid text PRIMARY KEY, plan text);
	INSERT INTO accounts VALUES ('u-1', 'pro'), ('u-2', 'free'), ('u 3/x', 'pro');
	SELECT retl_create_sync('accounts', 'accounts', 'iter', mapping => '{"uid": "userId", "plan": "plan"}',
		options => '{"identifier": "userId"}');});
ok(drained('accounts'), 'users by userId sent');
my $byid = $it->get->{users_by_userid};
is(join(',', map { "$_=$byid->{$_}{dataFields}{plan}" } sort keys %$byid), 'u 3/x=pro,u-1=pro,u-2=free',
	'each user found by its userId');
psql(q{DELETE FROM accounts WHERE uid = 'u 3/x'});
ok(drained('accounts'), 'the delete drained');
ok(!exists $it->get->{users_by_userid}{'u 3/x'}, 'deleted by DELETE /api/users/byUserId/{userId}, the id encoded');

# append: each new row an event, its record id the event's id; a failure
# Iterable may get over (an unknown user) is retried, once, not twice
# counted; a forgotten user's event is dead-lettered
$it->post('/_control', { fail_once => ['p3@x.io'] });
psql(q{CREATE TABLE purchases (id serial PRIMARY KEY, email text, item text, amount numeric);
	SELECT retl_create_sync('buys', 'purchases', 'iter', mode => 'append', options => '{"event_name": "purchase"}');
	INSERT INTO purchases (email, item, amount) SELECT 'p' || g || '@x.io', 'book', g * 1.5 FROM generate_series(1, 20) g;});
ok(drained('buys'), 'the events drained');
$st = $it->get;
is($st->{events_received}, 19, 'each event received once');
is($st->{codes}{'failedUpdates.notFoundEmails'}, 1, 'one refused once (notFoundEmails)');
my $ev = $st->{users_by_email}{'p3@x.io'}{events};
is(scalar @$ev, 1, 'and tracked after its retry');
is($ev->[0]{eventName}, 'purchase', 'named by event_name');
is_deeply($ev->[0]{dataFields}, { id => 3, email => 'p3@x.io', item => 'book', amount => 4.5 }, 'the row as dataFields');
like($ev->[0]{id}, qr/^[0-9a-f]+-\d+$/, 'the record id as the event\'s id');
ok(abs($ev->[0]{createdAt} - time) < 60, 'createdAt: the capture time, in seconds');
is(dead('buys'), '{"id": 9} Iterable refused the record: forgottenEmails (p9@x.io)',
	'the forgotten user\'s event is dead-lettered alone');

# an audience in a static list: entering members subscribed (a failure
# retried), exiting ones unsubscribed, no user deleted
$it->post('/_control', { fail_once => ['new@x.io'] });
psql(q{CREATE TABLE buyers (email text PRIMARY KEY, spend int);
	INSERT INTO buyers VALUES ('p1@x.io', 900), ('new@x.io', 800), ('small@x.io', 5);
	SELECT retl_create_audience('vip', 'SELECT email FROM buyers WHERE spend > 500', '{email}', schedule => 'manual');
	SELECT retl_create_sync('vip_list', 'audience:vip', 'iter', mode => 'mirror', options => '{"list_id": "1234"}');
	SELECT retl_refresh_audience('vip');});
my $list = sub { [ sort @{ $it->get->{lists}{1234} } ] };
ok(wait_for(sub { @{ $list->() } == 2 }, 30), 'the audience\'s members are in the list');
is_deeply($list->(), [ 'new@x.io', 'p1@x.io' ], 'both, the new user created by the subscription');
psql(q{UPDATE buyers SET spend = 1 WHERE email = 'p1@x.io'; UPDATE buyers SET spend = 999 WHERE email = 'small@x.io';
	SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { join(',', @{ $list->() }) eq 'new@x.io,small@x.io' }, 30), 'who exited left the list, who entered joined it');
ok(exists users()->{'p1@x.io'}, 'the exited member is not deleted');
ok(drained('vip_list'), 'the list sync drained');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'vip_list'}), '0', 'nothing dead-lettered');

# requests kept under max_batch_bytes (Iterable here taking at most
# that much); one Iterable finds too large (BatchTooLarge) is split until
# it fits
$it->post('/_control', { body_limit => 4096 });
psql(qq{SELECT retl_create_destination('iter_small', 'iterable', '$url', '{$auth, "max_batch_bytes": 4096}');
	CREATE TABLE wide (id int PRIMARY KEY, email text, bio text);
	INSERT INTO wide SELECT g, 'w' || g || '\@x.io', repeat('x', 200) FROM generate_series(1, 30) g;
	SELECT retl_create_sync('wide', 'wide', 'iter_small', mapping => '{"email": "email", "bio": "bio"}');});
ok(drained('wide'), 'wide rows sent');
$st = $it->get;
is(scalar(grep { /^w\d+\@x\.io$/ } keys %{ $st->{users_by_email} }), 30, 'all of them');
is($st->{codes}{BatchTooLarge} // 0, 0, 'in requests of at most max_batch_bytes');
$it->post('/_control', { body_limit => 2000 });
psql(q{UPDATE wide SET bio = repeat('y', 200) WHERE id <= 14});
ok(drained('wide'), 'sent again, Iterable taking at most 2000 bytes');
$st = $it->get;
ok($st->{codes}{BatchTooLarge} >= 1, 'Iterable refused a request as too large');
is(scalar(grep { $_->{dataFields}{bio} =~ /^y+$/ } values %{ $st->{users_by_email} }), 14, 'its halves were sent');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'wide'}), '0', 'nothing dead-lettered');
$it->post('/_control', { body_limit => 4194304 });

# Iterable's rate held over the run; a lowered one hit, and obeyed
$st = $it->get;
is($st->{limited}, 0, 'Iterable never answered 429');
ok($st->{peak}{'/api/users/bulkUpdate'} <= 5, "at most 5 bulkUpdate calls in any second ($st->{peak}{'/api/users/bulkUpdate'})");
psql(q{CREATE TABLE scores (id int PRIMARY KEY, email text, v int);
	INSERT INTO scores SELECT g, 's' || g || '@x.io', 0 FROM generate_series(1, 50) g;
	SELECT retl_create_sync('scores', 'scores', 'iter', mapping => '{"email": "email", "v": "v"}',
		options => '{"batch_size": 10}');});
ok(drained('scores'), 'five calls of 10 users drained');
$st = $it->get;
is($st->{limited}, 0, 'at the default rate, no 429');
ok($st->{peak}{'/api/users/bulkUpdate'} <= 5, "at most 5 calls in any second ($st->{peak}{'/api/users/bulkUpdate'})");
$it->post('/_control', { rate => { '/api/users/bulkUpdate' => 1 } });
my $calls = $st->{by_endpoint}{'/api/users/bulkUpdate'};
psql(q{UPDATE scores SET v = 1});
ok(drained('scores'), 'drained under a limit of one call a second');
$st = $it->get;
$calls = $st->{by_endpoint}{'/api/users/bulkUpdate'} - $calls;
ok($st->{limited} >= 1 && $st->{limited} <= $calls + 1,
	"429s answered ($st->{limited} for $calls calls), each followed by a second's pause, not a storm of retries");
is(scalar(grep { /^s\d+\@x\.io$/ && $st->{users_by_email}{$_}{dataFields}{v} == 1 } keys %{ $st->{users_by_email} }), 50,
	'and every change arrived');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'scores'}), '0', 'nothing dead-lettered');

# modes and options Iterable cannot honour are refused, nothing created
my @bad = (
	[ q{SELECT retl_create_sync('bad', 'people', 'iter', mode => 'insert')},
	  qr/a destination of kind iterable does not support mode "insert"/, 'insert is refused' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'iter', mode => 'append')},
	  qr/an append sync to iterable needs option "event_name"/, 'append needs event_name' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'iter', options => '{"event_name": "x"}')},
	  qr/option "event_name" is for append syncs/, 'event_name only for append' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'iter', options => '{"identifier": "phone"}')},
	  qr/option "identifier" of an iterable sync must be "email" or "userId"/, 'a bad identifier' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'iter', options => '{"identifier": "userId"}')},
	  qr/option "identifier" names field "userId", which the sync's records do not carry/, 'the identifier must be in the records' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'iter', options => '{"list_id": "1234"}')},
	  qr/option "list_id" is for a sync of an audience/, 'a list_id needs an audience' ],
	[ q{SELECT retl_create_sync('bad', 'audience:vip', 'iter', options => '{"list_id": "12a"}')},
	  qr/option "list_id" of an iterable sync must be a static list's id/, 'a bad list_id' ],
	[ qq{SELECT retl_create_destination('bad', 'iterable', '$url', '{"auth": {"type": "bearer", "token": "{{secret:it_key}}"}}')},
	  qr/an iterable destination needs its API key in the Api-Key header/, 'bearer auth is refused' ],
	[ qq{SELECT retl_create_destination('bad', 'iterable', '$url')},
	  qr/an iterable destination needs its API key in the Api-Key header/, 'a destination without auth is refused' ],
);
for my $b (@bad)
{
	my ($ret, $out, $err) = $node->psql('postgres', $b->[0]);
	like($err, $b->[1], $b->[2]);
}
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'bad'}) . psql(q{SELECT count(*) FROM retl.destinations WHERE name = 'bad'}),
	'00', 'nothing was created');
unlike(slurp_file($node->logfile), qr/\Q$key\E/, 'the API key is not in the server log');

done_testing();
