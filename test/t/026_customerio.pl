# The customerio connector against a local emulator of Customer.io's Track
# API (test/emulators/customerio.py): basic auth with the site id and API
# key, a table converging in Customer.io's people through /api/v2/batch
# (batches under 500 KB, an entity over 32 KB dead-lettered before sending,
# a 207's refused entities dead-lettered alone with Customer.io's reason,
# the others accepted; updates, deletes), a transient failure (429) retried,
# update mode creating no one, append syncs as events with stable ULIDs, an
# audience in a manual segment, and the rate held.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use MIME::Base64;
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $key = 'cio-api-key-secret';
my $cio = start_emulator('customerio', '--site-id', 'site-1', '--api-key', $key, '--segment', '77');
my $node = new_retl_node('customerio');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
sub people { return $cio->get->{people}; }
sub dead { return psql(qq{SELECT string_agg(key::text || ' ' || last_error, E'\\n' ORDER BY key::text)
	FROM retl.dead_letters WHERE sync = '$_[0]'}); }

my $url = $cio->url;
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('cio', '$key');
	SELECT retl_create_destination('cio', 'customerio', '$url',
		'{"auth": {"type": "basic", "username": "site-1", "password": "{{secret:cio}}"}}');
	SELECT retl_create_destination('cio_default', 'customerio',
		options => '{"auth": {"type": "basic", "username": "site-1", "password": "{{secret:cio}}"}}');
	CREATE TABLE people (id int PRIMARY KEY, email text, name text, a text, b text);
	INSERT INTO people SELECT g, 'p' || g || '\@x.io', 'P' || g, repeat('a', 900), repeat('b', 900)
		FROM generate_series(1, 300) g;
	INSERT INTO people VALUES (301, 'not-an-email', 'Bad', NULL, NULL), (302, 'big\@x.io', 'Big', repeat('x', 40000), NULL);});
is(psql(q{SELECT batch_size || ' ' || rate_limit || ' ' || max_concurrency || ' ' || max_batch_bytes
	FROM retl.destinations WHERE name = 'cio'}), '1000 49 8 500000',
	"defaults: 1000 records and under 500 KB a batch, under 100 requests a second");
is(psql(q{SELECT url FROM retl.destinations WHERE name = 'cio_default'}), 'https://track.customer.io',
	'the url defaults to the US Track API');

# a table converging: one entity refused (207), one too large to send
$cio->post('/_control', { reject => ['13'] });
psql(q{SELECT retl_create_sync('people', 'people', 'cio')});
ok(drained('people'), 'backfilled');
my $st = $cio->get;
is(scalar(keys %{ $st->{people} }), 299, 'every valid row is a person, by id');
is_deeply([ @{ $st->{people}{7} }{qw(email name)} ], [ 'p7@x.io', 'P7' ], 'with its attributes');
ok(!exists $st->{people}{13} && !exists $st->{people}{301} && !exists $st->{people}{302},
	'the refused and the oversized records are not there');
ok($st->{requests} >= 2, "the 550 KB of rows went in several batches ($st->{requests})");
ok($st->{max_bytes} <= 500000, "each batch under 500 KB ($st->{max_bytes} bytes)");
ok($st->{max_item_bytes} <= 32768, "each entity at most 32 KB ($st->{max_item_bytes} bytes)");
ok($st->{max_items} <= 1000, "at most 1000 entities a batch ($st->{max_items})");
is($st->{reasons}{invalid}, 2, 'Customer.io refused two entities (207)');
like(dead('people'), qr/^\{"id": 13\} Customer\.io refused the record: invalid identifiers\.id: invalid value for identifiers\.id
\{"id": 301\} Customer\.io refused the record: invalid attributes\.email: 'not-an-email' is not a valid email address
\{"id": 302\} the record is \d+ bytes as a Customer\.io entity, more than the 32 KB \(32768 bytes\) Customer\.io takes$/,
	'exactly the refused records are dead-lettered, each with its reason');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people'}), '0',
	'no ids kept: the key names the person');

# replayed once Customer.io takes it
$cio->post('/_control', { reject => [] });
psql(q{SELECT retl_replay('people')});
ok(drained('people'), 'the dead letters were replayed');
ok(exists people()->{13}, 'the record refused before is a person now');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '2', 'the other two are refused again');

# updates reach the same person; a delete deletes them
psql(q{UPDATE people SET name = 'Seven' WHERE id = 7; DELETE FROM people WHERE id = 8;});
ok(drained('people'), 'changes drained');
is(people()->{7}{name}, 'Seven', 'the update reached person 7');
ok(!exists people()->{8}, 'the deleted row\'s person is deleted');
ok((grep { $_ eq '8' } @{ $cio->get->{deleted} }), 'by a delete action');
# by email: a row inserted and deleted before the sync identified its
# person has nothing to delete (the key does not carry the email)
psql(q{CREATE TABLE leads (id int PRIMARY KEY, email text);
	INSERT INTO leads VALUES (1, 'lead1@x.io');
	SELECT retl_create_sync('leads', 'leads', 'cio', options => '{"identifier": "email"}')});
ok(drained('leads'), 'a sync by email backfilled');
my $before = $cio->get->{requests};
is(never_sent_change($node, 'leads', q{INSERT INTO leads VALUES (9001, 'brief@x.io')}, q{DELETE FROM leads WHERE id = 9001}),
	'0|1', 'a delete of a person never identified is delivered, not dead-lettered');
is($cio->get->{requests}, $before, 'without a request');

# a transient failure: every request refused (429) for a while, then taken
$cio->post('/_control', { rate => 0 });
psql(q{UPDATE people SET name = 'Nine' WHERE id = 9});
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE '%429%' FROM retl.sync_status WHERE sync = 'people'}),
	'the 429 shows in the sync\'s status');
$cio->post('/_control', { rate => undef });
ok(drained('people'), 'and the change was retried until taken');
is(people()->{9}{name}, 'Nine', 'person 9 updated');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '2', 'nothing more dead-lettered');
my $limited = $cio->get->{limited};
ok($limited > 0, "Customer.io limited $limited requests meanwhile");

# update: identify with _update (the rows changed since the last run), no one created
psql(q{CREATE TABLE edits (id int PRIMARY KEY, name text);
	INSERT INTO edits VALUES (1, 'One'), (5000, 'Ghost');
	SELECT retl_create_sync('edits', 'edits', 'cio', mode => 'update', schedule => 'manual');
	SELECT retl_run_sync('edits');});
ok($node->poll_query_until('postgres', q{SELECT last_run_status = 'succeeded' FROM retl.sync_status WHERE sync = 'edits'}),
	'the update sync ran');
psql(q{UPDATE edits SET name = name || '!'; SELECT retl_run_sync('edits');});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM retl.runs WHERE sync = 'edits' AND status = 'succeeded'}),
	'and ran again');
ok(drained('edits'), 'and drained');
is(people()->{1}{name}, 'One!', 'update: an existing person is updated');
ok(!exists people()->{5000}, 'update: no one is created');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'edits'}), '0', 'and nothing is refused');

# append: each row an event, with a ULID that is the same on every retry
psql(q{CREATE TABLE purchases (n serial PRIMARY KEY, customer int NOT NULL, amount int);
	SELECT retl_create_sync('purchases', 'purchases', 'cio', mode => 'append',
		mapping => '{"customer": "id", "amount": "amount"}', options => '{"event_name": "purchase"}');
	INSERT INTO purchases (customer, amount) VALUES (1, 10), (1, 20), (2, 5);});
ok(drained('purchases'), 'the events were sent');
my $ev = $cio->get->{events};
is_deeply([ map { "$_->{name} $_->{data}{amount}" } @{ $ev->{1} } ], [ 'purchase 10', 'purchase 20' ],
	'person 1 has its two purchases, in order');
is(scalar @{ $ev->{2} }, 1, 'person 2 has one');
ok(!(grep { ($_->{id} // '') !~ /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/ } @{ $ev->{1} }, @{ $ev->{2} }), 'each with a ULID id');
ok(!(grep { abs($_->{timestamp} - time) > 300 } @{ $ev->{1} }), 'and its capture time as timestamp');

# an audience in a manual segment: entering members identified, then added;
# exiting ones removed, not deleted
psql(q{CREATE TABLE buyers (id text PRIMARY KEY, spend int);
	INSERT INTO buyers VALUES ('1', 900), ('new-1', 800), ('small', 5);
	SELECT retl_create_audience('vip', 'SELECT id FROM buyers WHERE spend > 500', '{id}', schedule => 'manual');
	SELECT retl_create_sync('vip_seg', 'audience:vip', 'cio', mode => 'mirror', options => '{"segment_id": "77"}');
	SELECT retl_refresh_audience('vip');});
my $seg = sub { join(',', @{ $cio->get->{segments}{77} }) };
ok(wait_for(sub { $seg->() eq '1,new-1' }, 30), 'the audience\'s members are in the segment');
ok(exists people()->{'new-1'}, 'the new member was identified first');
psql(q{UPDATE buyers SET spend = 1 WHERE id = '1'; UPDATE buyers SET spend = 999 WHERE id = 'small';
	SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { $seg->() eq 'new-1,small' }, 30), 'who exited left the segment, who entered joined it');
ok(exists people()->{1}, 'the exited member is not deleted');
ok(drained('vip_seg'), 'the segment sync drained');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'vip_seg'}), '0', 'nothing dead-lettered');

$st = $cio->get;
is($st->{limited}, $limited, 'no request over the rate at the default limit');
is($st->{secret_seen}, 0, 'the API key only ever in the Authorization header');

# modes and options refused at creation, nothing created
my @bad = (
	[ q{SELECT retl_create_sync('bad', 'people', 'cio', mode => 'insert')},
	  qr/a destination of kind customerio does not support mode "insert"/, 'insert is refused' ],
	[ q{SELECT retl_create_sync('bad', 'purchases', 'cio', mode => 'append', mapping => '{"customer": "id"}')},
	  qr/a customerio sync of mode "append" needs option "event_name"/, 'append needs an event name' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'cio', options => '{"event_name": "x"}')},
	  qr/option "event_name" is for a customerio sync of mode "append"/, 'an event name only for append' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'cio', options => '{"identifier": "phone"}')},
	  qr/option "identifier" of a customerio sync must be "id" or "email"/, 'a bad identifier' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'cio', mapping => '{"email": "email"}')},
	  qr/option "identifier" names field "id", which the sync's records do not carry/, 'records without the identifier' ],
	[ q{SELECT retl_create_sync('bad', 'people', 'cio', options => '{"segment_id": "77"}')},
	  qr/option "segment_id" is for a sync of an audience/, 'a segment needs an audience' ],
	[ q{SELECT retl_create_sync('bad', 'audience:vip', 'cio', mode => 'mirror')},
	  qr/a customerio sync of an audience needs option "segment_id"/, 'an audience needs a segment' ],
	[ q{SELECT retl_create_sync('bad', 'audience:vip', 'cio', mode => 'mirror', options => '{"segment_id": "77", "identifier": "email"}')},
	  qr/a customerio sync that removes people from a segment must identify them by "id"/, 'removal by email is refused' ],
	[ q{SELECT retl_create_destination('bad', 'customerio', options => '{"auth": {"type": "bearer", "token": "{{secret:cio}}"}}')},
	  qr/a customerio destination needs basic auth/, 'a bearer token is refused' ],
	[ q{SELECT retl_create_destination('bad', 'customerio')},
	  qr/a customerio destination needs basic auth/, 'a destination without auth is refused' ]);
for my $b (@bad)
{
	my ($ret, $out, $err) = $node->psql('postgres', $b->[0]);
	like($err, $b->[1], $b->[2]);
}
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'bad'}) . psql(q{SELECT count(*) FROM retl.destinations WHERE name = 'bad'}),
	'00', 'nothing was created');
my $basic = encode_base64("site-1:$key", '');
unlike(slurp_file($node->logfile), qr/\Q$key\E|\Q$basic\E/, 'neither the key nor the credentials in the server log');

done_testing();
