# The segment connector against a local emulator of Segment's HTTP
# Tracking API (test/emulators/segment.py): the write key as basic auth
# with an empty password; identify calls converging on the users' traits
# (batches under 500 KB, a call over 32 KB dead-lettered before it is
# sent, a 500 retried, a lost answer retried and deduplicated by
# messageId, deletes dead-lettered since the Tracking API deletes
# nothing); what a 200 cannot tell (calls Segment drops silently count as
# delivered); track calls from an append sync, group calls, Segment's
# 429 obeyed, and bad modes and options refused at creation.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use MIME::Base64 qw(encode_base64);
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $key = 'seg-wk-Zq81xYdistinct';
my $sg = start_emulator('segment', '--write-key', $key);
my $node = new_retl_node('segment');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
sub users { return $sg->get->{users}; }
sub dropped { my ($reason) = @_; return [ sort map { $_->{event}{userId} } grep { $_->{reason} eq $reason } @{ $sg->get->{dropped} } ]; }

my $url = $sg->url;
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('seg_key', '$key');
	SELECT retl_create_destination('seg', 'segment', '$url',
		'{"auth": {"type": "basic", "username": "{{secret:seg_key}}", "password": ""}}');
	CREATE TABLE users (id int PRIMARY KEY, email text, plan text, big bigint, notes text);
	INSERT INTO users SELECT g, 'u' || g || '\@x.io', 'free', 9007199254740993, repeat('n', 2000)
		FROM generate_series(1, 300) g;
	INSERT INTO users VALUES (301, 'huge\@x.io', 'free', 1, repeat('h', 40000));});
is(psql(q{SELECT batch_size || ' ' || rate_limit || ' ' || max_concurrency || ' ' || max_batch_bytes
	FROM retl.destinations WHERE name = 'seg'}), '2500 500 8 500000',
	"Segment's limits are the defaults: 2,500 calls and 500 KB a request, half its 1,000 requests a second, 8 at once");

# identify: userId from the key, traits from the data
$sg->post('/_control', { fail_once => ['7'] });
psql(q{SELECT retl_create_sync('users', 'users', 'seg', options => '{"type": "identify"}')});
ok(drained('users'), 'backfilled');
my $st = $sg->get;
is(scalar(keys %{ $st->{users} }), 300, 'every user that fits is identified');
is_deeply($st->{users}{7}{traits}, { id => 7, email => 'u7@x.io', plan => 'free', big => 9007199254740993,
	notes => 'n' x 2000 }, 'with its traits, a bigint exact');
ok(exists $st->{users}{7}, 'the request Segment answered 500 once was retried');
is($st->{codes}{500}, 1, 'Segment answered 500 once');
ok($st->{requests} >= 3 && $st->{max_bytes} <= 500000,
	"600 KB of calls in requests of at most 500,000 bytes ($st->{requests} requests, the largest $st->{max_bytes} bytes)");
ok($st->{max_items} <= 2500, "never more than 2,500 calls a request ($st->{max_items})");
ok($st->{max_event_bytes} <= 32000, "never a call over 32,000 bytes ($st->{max_event_bytes})");
is(scalar(@{ $st->{dropped} }), 0, 'Segment dropped nothing');
like(psql(q{SELECT key::text || ' ' || last_error FROM retl.dead_letters WHERE sync = 'users'}),
	qr/^\{"id": 301\} the identify call is 40\d{3} bytes, more than the 32000 Segment takes in one call/,
	'the call over 32 KB alone is dead-lettered, saying why');
ok(!exists $st->{users}{301}, 'and was never sent');
my $ev = (grep { $_->{userId} eq '8' } @{ $st->{events} })[0];
my $rid = psql(q{SELECT id FROM retl.instance});
like($ev->{messageId}, qr/^\Q$rid\E-\d+$/, 'the messageId is the record id');
like($ev->{timestamp}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'the timestamp the capture time');
is($st->{auth}{basic}, $st->{requests}, 'every request carried the write key as basic auth');
is($st->{wrong_key} + $st->{key_leaks}, 0, 'the right key, and never in a call or a URL');

# updates reach the same user; a delete is not sent, and says so
psql(q{UPDATE users SET plan = 'pro' WHERE id = 5; DELETE FROM users WHERE id = 6;});
ok(drained('users'), 'changes drained');
is(users()->{5}{traits}{plan}, 'pro', 'the update reached user 5');
like(psql(q{SELECT last_error FROM retl.dead_letters WHERE sync = 'users' AND key = '{"id": 6}'}),
	qr/^not sent: Segment's Tracking API cannot delete a user/, 'the delete is dead-lettered, saying why');
ok(exists users()->{6}, 'and user 6 stays in Segment');

# what retl cannot see: Segment answers 200 and drops calls later
$sg->post('/_control', { reject => ['20'], drop_once => ['21'] });
psql(q{UPDATE users SET plan = 'gold' WHERE id IN (20, 21, 22)});
ok(drained('users'), 'drained');
is(users()->{22}{traits}{plan}, 'gold', 'user 22 updated');
is_deeply([ users()->{20}{traits}{plan}, users()->{21}{traits}{plan} ], [ 'free', 'free' ],
	'users 20 and 21 were not updated in Segment');
is_deeply([ dropped('rejected'), dropped('dropped_once') ], [ ['20'], ['21'] ], 'Segment dropped their calls silently');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'users' AND key->>'id' IN ('20', '21')}), '0',
	'and retl, which saw a 200, counts them delivered: nothing is dead-lettered');
# a wrong write key is answered 200 too, and every call dropped
psql(qq{SET log_statement = 'none'; SELECT retl_set_secret('seg_wrong', 'seg-wk-not-the-key');
	SELECT retl_create_destination('seg_wrong', 'segment', '$url',
		'{"auth": {"type": "basic", "username": "{{secret:seg_wrong}}", "password": ""}}');
	CREATE TABLE lone (id int PRIMARY KEY, v text); INSERT INTO lone VALUES (9001, 'v');
	SELECT retl_create_sync('lone', 'lone', 'seg_wrong', options => '{"type": "identify"}');});
ok(drained('lone'), 'sent with a wrong write key');
is_deeply(dropped('invalid_write_key'), ['9001'], 'Segment dropped the call, having answered 200');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'lone'}), '0', 'which retl cannot see');

# a lost answer: Segment kept the call and answered 500; the retry has the
# same messageId and is deduplicated
$sg->post('/_control', { keep_and_fail_once => ['23'] });
psql(q{UPDATE users SET plan = 'silver' WHERE id = 23});
ok(drained('users'), 'drained');
$st = $sg->get;
is($st->{codes}{500}, 2, 'Segment kept the call, then answered 500');
is($st->{duplicates}, 1, 'the retry was a duplicate');
my @kept = grep { ($_->{userId} // '') eq '23' && $_->{traits}{plan} eq 'silver' } @{ $st->{events} };
is(scalar(@kept), 1, 'Segment kept the call once');
is($st->{duplicate_ids}[0], $kept[0]{messageId}, 'deduplicated by its messageId');

# track: every new row an event, userId from a field of it
psql(q{CREATE TABLE orders (id serial PRIMARY KEY, customer_id int, total numeric, item text);
	SELECT retl_create_sync('orders', 'orders', 'seg', mode => 'append',
		options => '{"type": "track", "event": "Order Completed", "user_id_field": "customer_id"}');
	INSERT INTO orders (customer_id, total, item) VALUES (1, 9.90, 'book'), (1, 12.5, 'pen'), (2, 3, 'cup'), (NULL, 1, 'lost');});
ok(drained('orders'), 'events sent');
my $tracks = users()->{1}{tracks};
is_deeply([ map { $_->{event} } @$tracks ], [ 'Order Completed', 'Order Completed' ], 'user 1 has two events');
is_deeply($tracks->[0]{properties}, { id => 1, total => 9.90, item => 'book' }, 'the row as properties, less the userId');
is(users()->{2}{tracks}[0]{properties}{item}, 'cup', 'user 2 has its event');
like(psql(q{SELECT last_error FROM retl.dead_letters WHERE sync = 'orders'}),
	qr/^the record has no userId: its field "customer_id" \(option user_id_field\) is null/,
	'an event without a user is dead-lettered, saying why');

# group: groupId from the key, its member from user_id_field
psql(q{CREATE TABLE companies (id text PRIMARY KEY, name text, owner_id int);
	INSERT INTO companies VALUES ('acme', 'Acme', 3), ('init', 'Initech', 4);
	SELECT retl_create_sync('companies', 'companies', 'seg', options => '{"type": "group", "user_id_field": "owner_id"}');});
ok(drained('companies'), 'groups sent');
my $g = $sg->get->{groups};
is_deeply($g->{acme}, { traits => { id => 'acme', name => 'Acme' }, members => ['3'] }, 'the group, its traits and its member');
is($g->{init}{traits}{name}, 'Initech', 'and the other');

# an audience: the Tracking API has no lists; entering members are identified
psql(q{SELECT retl_create_audience('pros', 'SELECT id FROM users WHERE plan = ''pro''', '{id}', schedule => 'manual');
	SELECT retl_create_sync('pros', 'audience:pros', 'seg', options => '{"type": "identify"}');
	SELECT retl_refresh_audience('pros');});
my $entered = sub { scalar(grep { $_->{type} eq 'identify' && $_->{userId} eq '5' && join(',', keys %{ $_->{traits} }) eq 'id' }
	@{ $sg->get->{events} }) };
ok(wait_for($entered, 30), 'its member was identified, the audience\'s key as traits');
ok(drained('pros'), 'the audience sync drained');
is($entered->(), 1, 'once');
is($sg->get->{limited}, 0, 'Segment never answered 429');

# Segment's 429 with Retry-After pauses the destination; the calls follow
$sg->post('/_control', { rate => 1, window => 2 });
psql(q{INSERT INTO orders (customer_id, total, item) VALUES (2, 4, 'mug'); UPDATE users SET plan = 'team' WHERE id = 30;
	UPDATE companies SET name = 'Acme Inc' WHERE id = 'acme';});
ok(drained('orders') && drained('users') && drained('companies'), 'drained under a limit of one request in 2 s');
$st = $sg->get;
ok($st->{limited} >= 1, "Segment answered 429 ($st->{limited})");
is($st->{users}{30}{traits}{plan}, 'team', 'and every call arrived after the pause');
is($st->{groups}{acme}{traits}{name}, 'Acme Inc', 'the group too');
$sg->post('/_control', { rate => 1000, window => 1 });

# modes and options Segment cannot honour, refused at creation
my @bad = (
	[ q{mode => 'mirror', options => '{"type": "identify"}'}, qr/a destination of kind segment does not support mode "mirror"/, 'mirror' ],
	[ q{mode => 'insert', options => '{"type": "identify"}'}, qr/does not support mode "insert"/, 'insert' ],
	[ q{options => '{}'}, qr/a segment sync needs option "type"/, 'no type' ],
	[ q{options => '{"type": "page"}'}, qr/a segment sync needs option "type"/, 'an unknown type' ],
	[ q{options => '{"type": "track", "event": "E"}'}, qr/a segment sync of type "track" needs mode "append"/, 'track in upsert' ],
	[ q{mode => 'append', options => '{"type": "identify"}'}, qr/a segment sync of type "identify" needs mode "upsert"/, 'identify in append' ],
	[ q{mode => 'append', options => '{"type": "track"}'}, qr/needs option "event"/, 'track without an event' ],
	[ q{options => '{"type": "identify", "event": "E"}'}, qr/option "event" is for a segment sync of type "track"/, 'an event for identify' ],
	[ q{options => '{"type": "identify", "user_id_field": "email"}'}, qr/option "user_id_field" is not for a segment sync of type "identify"/, 'user_id_field for identify' ],
	[ q{options => '{"type": "group"}'}, qr/a segment sync of type "group" needs option "user_id_field"/, 'group without user_id_field' ],
	[ q{options => '{"type": "group", "user_id_field": "owner"}'}, qr/option "user_id_field" names field "owner", which the sync's records do not carry/, 'a missing field' ],
	[ q{options => '{"type": "identify", "list_id": "1"}'}, qr/unknown sync option "list_id"/, 'an unknown option' ],
);
for my $b (@bad)
{
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT retl_create_sync('bad', 'users', 'seg', $b->[0])");
	like($err, $b->[1], "refused: $b->[2]");
}
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'SELECT id, email FROM users', 'seg',
	key => '{id,email}', schedule => 'manual', options => '{"type": "identify"}')});
like($err, qr/a segment sync of type "identify" needs a key of one column/, 'refused: a key of two columns');
for my $auth ('{"type": "bearer", "token": "{{secret:seg_key}}"}',
	'{"type": "basic", "username": "{{secret:seg_key}}", "password": "{{secret:seg_key}}"}')
{
	($ret, $out, $err) = $node->psql('postgres', qq{SELECT retl_create_destination('bad', 'segment', '$url', '{"auth": $auth}')});
	like($err, qr/a segment destination needs its source's write key as basic auth, with an empty password/, "refused: auth $auth");
}
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_destination('bad', 'segment')});
like($err, qr/a segment destination needs its source's write key/, 'refused: no auth');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_destination('bad', 'segment', options =>
	'{"auth": {"type": "basic", "username": "me", "password": ""}}')});
like($err, qr/auth of type "basic" with an empty password needs a "username" that names a secret/, 'refused: a key written out');
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'bad'}) . psql(q{SELECT count(*) FROM retl.destinations WHERE name = 'bad'}),
	'00', 'nothing was created');

my $basic = encode_base64("$key:", '');
unlike(slurp_file($node->logfile), qr/\Q$key\E|\Q$basic\E/, 'neither the write key nor its basic auth in the server log');

done_testing();
