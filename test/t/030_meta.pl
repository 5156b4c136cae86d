# The meta_audiences connector against a local emulator of Meta's custom
# audience users edges (test/emulators/meta.py): people added and removed
# as SHA-256 hashes of their normalized values (checked here against
# hashes computed independently), no plaintext reaching Meta, an entry
# Meta names invalid dead-lettered alone, a transient one retried, a
# removal removing exactly the row added, an audience's members entering
# and exiting, an expired token waited out until the secret is replaced,
# a resync of a source that became empty removing whom the sync added
# (and only them), and throttling obeyed.
use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use HTTP::Tiny;
use JSON::PP;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $aud = '23851234567890123';
my $aud2 = '23851234567890124';
my $meta = start_emulator('meta', '--access-token', 'EAAB-meta-token-1', '--audience', $aud, '--audience', $aud2,
	'--api-version', 'v21.0');
my $node = new_retl_node('meta');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
# the audience's members, each as "EMAIL|PHONE|FN|LN|COUNTRY" of hashes
sub members
{
	my @m = map { my $p = $_; join('|', map { $p->{$_} // '' } qw(EMAIL PHONE FN LN COUNTRY)) }
	  @{ $meta->get->{audiences}{$aud}{members} };
	return [ sort @m ];
}
sub person { return join('|', map { $_ eq '' ? '' : sha256_hex($_) } @_); }

my $url = $meta->url;
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('fb', 'EAAB-meta-token-1');
	SELECT retl_create_destination('fb', 'meta_audiences', '$url', '{"auth": {"type": "bearer", "token": "{{secret:fb}}"},
		"api_version": "v21.0"}');
	CREATE TABLE customers (id int PRIMARY KEY, email text, phone text, first text, last text, country text);
	INSERT INTO customers VALUES
		(1, '  John.Doe\@Example.COM ', '+1 (650) 555-1234', 'John', 'Doe', 'US'),
		(2, 'mary\@x.io', '0044 20 7946 0018', 'Mary-Ann', 'O''Brien', 'gb'),
		(3, 'nophone\@x.io', NULL, NULL, NULL, NULL),
		(4, 'rejected\@x.io', NULL, NULL, NULL, NULL),
		(5, 'retry\@x.io', NULL, NULL, NULL, NULL),
		(6, 'not an email', 'none', NULL, NULL, NULL);});
is(psql(q{SELECT batch_size || ' ' || rate_limit FROM retl.destinations WHERE name = 'fb'}), '10000 1',
	"Meta's limits are the defaults: 10,000 people a request, a request a second");

$meta->post('/_control', { reject => [ sha256_hex('rejected@x.io') ], fail_once => [ sha256_hex('retry@x.io') ] });
psql(q{SELECT retl_create_sync('people', 'customers', 'fb', options => $${"audience_id": "23851234567890123",
	"schema": {"email": "EMAIL_SHA256", "phone": "PHONE", "first": "FN", "last": "LN", "country": "COUNTRY"}}$$)});
ok(drained('people'), 'sent');
is_deeply(members(), [ sort(
		person('john.doe@example.com', '16505551234', 'john', 'doe', 'us'),
		person('mary@x.io', '442079460018', 'maryann', 'obrien', 'gb'),
		person('nophone@x.io', '', '', '', ''),
		person('retry@x.io', '', '', '', '')) ],
	'the members are the hashes of the normalized values, as computed here');
my $st = $meta->get;
is($st->{plaintext}, 0, 'no value reached Meta unhashed');
my $received = join(' ', map { @$_ } values %{ $st->{received} });
unlike($received, qr/\@|John|Doe|650|Mary/i, 'none of the plaintext is among the values Meta received');
is(psql(q{SELECT key::text || ' ' || last_error FROM retl.dead_letters WHERE sync = 'people' ORDER BY key::text}),
	qq{{"id": 4} Meta found the entry invalid: invalid entry\n}
	  . q{{"id": 6} the record has no value Meta can match a person by (each was empty or could not be normalized)},
	'the entry Meta named invalid, and the one with nothing to match, are dead-lettered alone');
is($st->{invalid}{'entry could not be processed, please retry'}, 1, 'the transient refusal happened');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people'}), '4', 'the rows added are kept');

# a removal removes exactly what was added, even after the row changed
psql(q{UPDATE customers SET email = 'changed@x.io' WHERE id = 3; DELETE FROM customers WHERE id = 3;});
ok(drained('people'), 'the delete was sent');
ok(!grep({ $_ eq person('nophone@x.io', '', '', '', '') } @{ members() }), 'the person was removed from the audience');
is(scalar @{ members() }, 3, 'the others stay');

# a changed email: the person's old row is removed, the new one added
psql(q{UPDATE customers SET email = 'john@new.io' WHERE id = 1});
ok(drained('people'), 'the change was sent');
my %m = map { $_ => 1 } @{ members() };
ok(!$m{ person('john.doe@example.com', '16505551234', 'john', 'doe', 'us') }, 'the old row left the audience');
ok($m{ person('john@new.io', '16505551234', 'john', 'doe', 'us') }, 'the new one joined it');

# an audience's members enter and exit
psql(q{CREATE TABLE buyers (email text PRIMARY KEY, spend int);
	INSERT INTO buyers VALUES ('a@x.io', 900), ('b@x.io', 800), ('c@x.io', 5);
	SELECT retl_create_audience('vip', 'SELECT email FROM buyers WHERE spend > 500', '{email}', schedule => 'manual');
	SELECT retl_create_sync('vip_fb', 'audience:vip', 'fb', mode => 'mirror',
		options => '{"audience_id": "23851234567890123", "schema": {"email": "EMAIL"}}');
	SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { my %m = map { $_ => 1 } @{ members() }; $m{ person('a@x.io') . '||||' } && $m{ person('b@x.io') . '||||' } }, 30),
	'the audience\'s members entered');
psql(q{UPDATE buyers SET spend = 1 WHERE email = 'a@x.io'; SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { !grep { $_ eq person('a@x.io') . '||||' } @{ members() } }, 30), 'who exited was removed');
ok(drained('vip_fb'), 'drained');

# retl_resync replaces the audience (usersreplace): one session of
# batches sent one at a time, the last one flagged; someone added outside
# retl and whoever left meanwhile are gone after it
psql(q{SELECT retl_pause_sync('vip_fb');
	UPDATE buyers SET spend = 1 WHERE email = 'b@x.io';
	INSERT INTO buyers VALUES ('d@x.io', 700), ('e@x.io', 600);
	SELECT retl_refresh_audience('vip');
	UPDATE retl.destinations SET batch_size = 1 WHERE name = 'fb';});
ok($node->poll_query_until('postgres', q{SELECT members = 2 FROM retl.audiences WHERE audience = 'vip'}),
	'the audience changed while its sync was paused');
my $http = HTTP::Tiny->new;
my $res = $http->post($meta->url("/v21.0/$aud/users"), { headers => { 'Content-Type' => 'application/json',
	Authorization => 'Bearer EAAB-meta-token-1' }, content => JSON::PP::encode_json({ payload =>
	{ schema => ['EMAIL'], data => [ [ sha256_hex('stray@x.io') ] ] } }) });
ok($res->{success}, 'someone was added to the audience outside retl');
psql(q{SELECT retl_resume_sync('vip_fb'); SELECT retl_resync('vip_fb');});
my $replaced = sub {
	my @s = grep { $_->{op} eq 'replace' } values %{ $meta->get->{sessions} };
	return @s && $s[0]{ended} ? $s[0] : undef;
};
ok(wait_for($replaced, 30), 'the resync replaced the audience in one session');
is_deeply([ grep { /\|\|\|\|$/ } @{ members() } ], [ sort(person('d@x.io') . '||||', person('e@x.io') . '||||') ],
	'which now holds exactly the audience\'s members');
is_deeply($replaced->()->{batches}, [1, 2], 'in two batches of one, numbered');
ok(drained('vip_fb'), 'drained');
psql(q{UPDATE retl.destinations SET batch_size = 10000 WHERE name = 'fb'});

# an empty result replaces too: usersreplace takes no empty session, so a
# resync of a source that became empty removes, in batches of DELETE
# /users, everyone the sync remembers adding, and forgets them; whom it
# never added stays, and the changes queued before it are dropped
sub emails { return [ sort map { $_->{EMAIL} // '' } @{ $meta->get->{audiences}{ $_[0] }{members} } ]; }
psql(q{CREATE TABLE fans (id int PRIMARY KEY, email text, active bool NOT NULL DEFAULT true);
	INSERT INTO fans VALUES (1, 'f1@x.io'), (2, 'f2@x.io'), (3, 'f3@x.io');
	SELECT retl_create_sync(name => 'fans_fb', source => 'SELECT id, email FROM fans WHERE active',
		destination => 'fb', key => '{id}', mode => 'mirror', schedule => 'manual',
		options => '{"audience_id": "23851234567890124", "schema": {"email": "EMAIL"}}');
	SELECT retl_run_sync('fans_fb');});
ok(wait_for(sub { @{ emails($aud2) } == 3 }, 30), 'the fans were added');
ok(drained('fans_fb'), 'drained');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'fans_fb'}), '3', 'their rows are kept');
$res = $http->post($meta->url("/v21.0/$aud2/users"), { headers => { 'Content-Type' => 'application/json',
	Authorization => 'Bearer EAAB-meta-token-1' }, content => JSON::PP::encode_json({ payload =>
	{ schema => ['EMAIL'], data => [ [ sha256_hex('other@x.io') ] ] } }) });
ok($res->{success}, 'someone else was added to that audience outside retl');
# a change queued, retried while Meta refuses the token, then the source empties
$meta->post('/_control', { access_token => 'EAAB-meta-token-2' });
psql(q{INSERT INTO fans VALUES (4, 'f4@x.io')});
my $late = psql(q{SELECT retl_run_sync('fans_fb')});
ok($node->poll_query_until('postgres', "SELECT status = 'succeeded' FROM retl.runs WHERE id = $late"), 'a run queued an add');
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE 'Meta refused the request: (#190)%'
	AND pending + in_flight = 1 FROM retl.sync_status WHERE sync = 'fans_fb'}), 'which waits, refused');
psql(q{UPDATE fans SET active = false; UPDATE retl.destinations SET batch_size = 2, max_concurrency = 1 WHERE name = 'fb'});
my $resync = psql(q{SELECT retl_resync('fans_fb')});
ok($node->poll_query_until('postgres', "SELECT status = 'succeeded' FROM retl.runs WHERE id = $resync"), 'the resync ran');
is(psql("SELECT added || ' ' || removed FROM retl.runs WHERE id = $resync"), '0 4', 'its run counts the keys it had synced as removed');
# Meta applies a first removal and is slow to answer: the server crashes then
$meta->post('/_control', { delay_ms => 3000 });
psql(q{SET log_statement = 'none'; SELECT retl_set_secret('fb', 'EAAB-meta-token-2')});
ok(wait_for(sub { @{ emails($aud2) } < 4 }, 30), 'a first batch removed, its answer not yet received');
$node->stop('immediate');
$meta->post('/_control', { delay_ms => 0 });
$node->start;
ok(drained('fans_fb'), 'after a crash, the removals drained');
is_deeply(emails($aud2), [ sha256_hex('other@x.io') ],
	'the audience no longer holds anyone the sync added, and still holds whom it did not');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'fans_fb'}), '0', 'the removed rows are forgotten');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'fans_fb'}), '0', 'nothing dead-lettered');
ok(!grep({ $_ eq sha256_hex('f4@x.io') } @{ $meta->get->{received}{EMAIL} || [] }),
	'the add queued before the resync was dropped, never sent');
ok(!grep({ $_->{audience} eq $aud2 && $_->{op} eq 'replace' } values %{ $meta->get->{sessions} }),
	'no replace session was opened for the empty result');
my @removed = grep { $_->{audience} eq $aud2 && $_->{op} eq 'remove' } values %{ $meta->get->{sessions} };
ok(!grep({ $_->{num_received} > 2 } @removed), 'the removals went as DELETEs in batches of the batch size');
my $sent = 0;
$sent += $_->{num_received} for @removed;
cmp_ok($sent, '>', 3, 'the batch whose answer the crash lost was sent again');
is(psql(q{SELECT count(*) FROM retl.snapshots s JOIN retl.syncs y ON y.id = s.sync_id WHERE y.name = 'fans_fb'}), '0', 'the snapshot is empty');
# the next run sends nothing; a fan back is added again
psql(q{UPDATE retl.destinations SET batch_size = 10000, max_concurrency = 2 WHERE name = 'fb';
	UPDATE fans SET active = true WHERE id = 2});
my $again = psql(q{SELECT retl_run_sync('fans_fb')});
ok($node->poll_query_until('postgres', "SELECT status = 'succeeded' FROM retl.runs WHERE id = $again"), 'a later run ran');
ok(drained('fans_fb'), 'drained');
is(psql("SELECT added || ' ' || removed FROM retl.runs WHERE id = $again"), '1 0', 'it adds only the fan back');
is_deeply(emails($aud2), [ sort(sha256_hex('other@x.io'), sha256_hex('f2@x.io')) ], 'who is added again');
# an expired token: the records wait, retried, until the secret is replaced
$meta->post('/_control', { access_token => 'EAAB-meta-token-3' });
psql(q{INSERT INTO customers VALUES (7, 'late@x.io', NULL, NULL, NULL, NULL)});
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE 'Meta refused the request: (#190)%' FROM retl.sync_status WHERE sync = 'people'}),
	'the refused token shows in the sync\'s status');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '2', 'nothing more dead-lettered');
psql(q{SET log_statement = 'none'; SELECT retl_set_secret('fb', 'EAAB-meta-token-3')});
ok(drained('people'), 'sent once the secret holds the new token');
ok(grep({ $_ eq person('late@x.io') . '||||' } @{ members() }), 'the waiting person is in the audience');

# throttling (80003, an HTTP 400 like every Graph error): waited out, not halved or dead-lettered
$meta->post('/_control', { throttle => 1 });
psql(q{INSERT INTO customers VALUES (8, 'throttled@x.io', NULL, NULL, NULL, NULL), (9, 'too@x.io', NULL, NULL, NULL, NULL)});
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE 'Meta refused the request: (#80003)%' FROM retl.sync_status WHERE sync = 'people'}),
	'throttling shows in the sync\'s status');
is(psql(q{SELECT pending FROM retl.sync_status WHERE sync = 'people'}), '2', 'its records wait together');
my $requests = $meta->get->{requests};
sleep 2;
is($meta->get->{requests}, $requests, 'and the destination pauses');

# bad options refused at creation, nothing created
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'customers', 'fb', mode => 'append',
	options => '{"audience_id": "1", "schema": {"email": "EMAIL"}}')});
like($err, qr/does not support mode "append"/, 'append is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'customers', 'fb',
	options => '{"audience_id": "1", "schema": {"email": "FN_SHA256"}}')});
like($err, qr/"FN_SHA256" is not one of Meta's keys/, 'an unknown key is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'customers', 'fb',
	options => '{"audience_id": "1", "schema": {"mail": "EMAIL"}}')});
like($err, qr/option "schema" names field "mail", which the sync's records do not carry/, 'a field the records lack');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'customers', 'fb', options => '{"schema": {"email": "EMAIL"}}')});
like($err, qr/needs option "audience_id"/, 'an audience id is needed');
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'bad'}), '0', 'nothing was created');
unlike(slurp_file($node->logfile), qr/EAAB-meta-token|john\.doe/i, 'no token and no plaintext in the server log');

done_testing();
