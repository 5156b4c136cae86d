# The mailchimp connector against a local emulator of Mailchimp's Marketing
# API (test/emulators/mailchimp.py): the default url from the API key's data
# centre, a table converging in an audience (batch subscribe of at most 500
# members, merge fields by upper-cased names, a refused member dead-lettered
# alone with Mailchimp's message, a transient one retried, updates, deletes
# archiving by the kept email), insert mode and a new member's status, an
# audience in a static segment, the 10-connection limit held, and a 429
# obeyed.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use MIME::Base64;

my $key = '0123456789abcdef0123456789abcdef-us14';
my $list_id = 'a1b2c3d4e5';
my $mc = start_emulator('mailchimp', '--api-key', $key, '--list', $list_id, '--segment', "$list_id:4501",
	'--segment', "$list_id:4502");
my $node = new_retl_node('mailchimp');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
sub members { return $mc->get->{lists}{$list_id}{members}; }
sub active { my $m = members(); return { map { $_ => $m->{$_} } grep { !$m->{$_}{archived} } keys %$m }; }

my $url = $mc->url('/3.0');
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('mc_key', '$key');
	SELECT retl_set_secret('mc_plain', '0123456789abcdef0123456789abcdef');});

# the url: the key's data centre, unless one is given
psql(q{SELECT retl_create_destination('mc_dc', 'mailchimp',
	options => '{"auth": {"type": "basic", "username": "retl", "password": "{{secret:mc_key}}"}}')});
is(psql(q{SELECT url FROM retl.destinations WHERE name = 'mc_dc'}), 'https://us14.api.mailchimp.com/3.0',
	'the default url is the data centre the API key names');
psql(q{SELECT retl_drop_destination('mc_dc')});
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_destination('bad', 'mailchimp',
	options => '{"auth": {"type": "basic", "username": "retl", "password": "{{secret:mc_plain}}"}}')});
like($err, qr/a destination of kind mailchimp needs a url/, 'a key without a data centre: a url is needed');
unlike($err, qr/0123456789abcdef/, 'and the error does not show the key');

psql(qq{SELECT retl_create_destination('mc', 'mailchimp', '$url',
		'{"auth": {"type": "basic", "username": "retl", "password": "{{secret:mc_key}}"}}');
	CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, fname text, last text);
	INSERT INTO people SELECT g, 'p' || g || '\@acme.io', 'P' || g, 'L' || g FROM generate_series(1, 600) g;
	INSERT INTO people VALUES (601, 'ghost\@example.com', 'G', 'H'), (602, 'not-an-email', 'N', 'E');});
is(psql(q{SELECT batch_size || ' ' || rate_limit || ' ' || max_concurrency FROM retl.destinations WHERE name = 'mc'}),
	'500 10 5', "the defaults: 500 members a call (Mailchimp's most), 10 calls a second, 5 of its 10 connections");

# a table converging: merge fields by upper-cased names or as mapped
$mc->post('/_control', { fail_once => ['p9@acme.io'] });
psql(qq{SELECT retl_create_sync('people', 'people', 'mc',
	mapping => '{"email": "email", "fname": "fname", "last": "LNAME"}', options => '{"list_id": "$list_id"}')});
ok(drained('people'), 'backfilled');
my $m = active();
is(scalar(grep { /\@acme\.io$/ } keys %$m), 600, 'every valid row is a member');
is_deeply([ @{ $m->{'p7@acme.io'} }{qw(status email_address)} ], [ 'subscribed', 'p7@acme.io' ], 'subscribed');
is_deeply($m->{'p7@acme.io'}{merge_fields}, { FNAME => 'P7', LNAME => 'L7' }, 'with its merge fields');
ok(exists $m->{'p9@acme.io'}, 'the member Mailchimp refused once for now was retried and is there');
my $st = $mc->get;
is($st->{max_items}, 500, 'never more than 500 members a call');
is($st->{codes}{ERROR_GENERIC}, 3, 'Mailchimp refused three members, once each');
is(psql(q{SELECT string_agg(key::text || ' ' || last_error, E'\n' ORDER BY key::text) FROM retl.dead_letters WHERE sync = 'people'}),
	qq{{"id": 601} Mailchimp refused the member: ghost\@example.com looks fake or invalid, please enter a real email address.\n}
	  . q{{"id": 602} Mailchimp refused the member: Please provide a valid email address.},
	'the two refused records alone are dead letters, with Mailchimp\'s messages');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people'}), '600', 'the emails are kept');

# updates reach the member; deletes archive it by the kept email (a 404:
# archived already; a 500 retried)
my $http = HTTP::Tiny->new;
my $res = $http->request('DELETE', "$url/lists/$list_id/members/p11\@acme.io",
	{ headers => { Authorization => 'Basic ' . encode_base64("x:$key", '') } });
is($res->{status}, 204, 'a member archived by someone else');
$mc->post('/_control', { fail_once => ['p10@acme.io'] });
psql(q{UPDATE people SET fname = 'Seven' WHERE id = 7; UPDATE people SET last = NULL WHERE id = 12;
	DELETE FROM people WHERE id IN (8, 10, 11);});
ok(drained('people'), 'changes drained');
$m = members();
is($m->{'p7@acme.io'}{merge_fields}{FNAME}, 'Seven', 'the update reached the member');
is($m->{'p12@acme.io'}{merge_fields}{LNAME}, '', 'a null clears its merge field');
ok($m->{'p8@acme.io'}{archived} && $m->{'p10@acme.io'}{archived} && $m->{'p11@acme.io'}{archived},
	'the deleted rows\' members are archived');
is($mc->get->{codes}{500}, 1, 'one archive failed once (500) and was retried');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '2', 'nothing more dead-lettered');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people' AND key->>'id' IN ('8', '10', '11')}), '0',
	'their emails forgotten');
# a row inserted and deleted before the sync sent it: nothing to archive
my $before = $mc->get->{requests};
is(never_sent_change($node, 'people', q{INSERT INTO people VALUES (9001, 'brief@acme.io', 'B', 'L')},
	q{DELETE FROM people WHERE id = 9001}), '0|1', 'a delete of a key never upserted is delivered, not dead-lettered');
is($mc->get->{requests}, $before, 'without a request');
# a key sent and refused (no email kept, its key not the email): its
# delete is not counted done
is(marked($node, 'people', '{"id": 601}'), '1', 'a key sent with no email kept is marked');
is(counted_changes($node, 'people', q{DELETE FROM people WHERE id = 601}), '1|0',
	'a delete of a key sent with no email kept is dead-lettered, not counted delivered');
# an archived member upserted again is back
psql(q{INSERT INTO people VALUES (8, 'p8@acme.io', 'Again', 'L8')});
ok(drained('people') && !members()->{'p8@acme.io'}{archived}, 'a row back: its member is back');

# insert mode: new members only, with the sync's status
psql(qq{CREATE TABLE newcomers (id int PRIMARY KEY, mail text);
	INSERT INTO newcomers VALUES (1, 'p1\@acme.io'), (2, 'fresh\@acme.io');
	SELECT retl_create_sync('newcomers', 'newcomers', 'mc', mode => 'insert', schedule => 'manual',
		options => '{"list_id": "$list_id", "status": "pending", "email_field": "mail"}', mapping => '{"mail": "mail"}');
	SELECT retl_run_sync('newcomers');});
ok($node->poll_query_until('postgres', q{SELECT last_run_status = 'succeeded' FROM retl.sync_status WHERE sync = 'newcomers'})
	&& drained('newcomers'), 'the insert sync ran');
is(members()->{'fresh@acme.io'}{status}, 'pending', 'insert: a new member, pending');
like(psql(q{SELECT last_error FROM retl.dead_letters WHERE sync = 'newcomers'}),
	qr/^Mailchimp refused the member: p1\@acme.io is already a list member/, 'insert: an existing member is refused');
is(members()->{'p1@acme.io'}{status}, 'subscribed', 'and left as it was');

# an audience in a static segment: entering members upserted, then added;
# exiting ones removed, never archived
psql(qq{CREATE TABLE buyers (email text PRIMARY KEY, spend int);
	INSERT INTO buyers VALUES ('p1\@acme.io', 900), ('new\@acme.io', 800), ('small\@acme.io', 5);
	SELECT retl_create_audience('vip', 'SELECT email FROM buyers WHERE spend > 500', '{email}', schedule => 'manual');
	SELECT retl_create_sync('vip_seg', 'audience:vip', 'mc', mode => 'mirror',
		options => '{"list_id": "$list_id", "segment_id": "4501"}');
	SELECT retl_refresh_audience('vip');});
my $segment = sub { return join(',', @{ $mc->get->{segments}{4501}{members} }) };
ok(wait_for(sub { $segment->() eq 'new@acme.io,p1@acme.io' }, 30), 'the audience\'s members are in the segment');
is(members()->{'new@acme.io'}{status}, 'subscribed', 'the new one added to the audience first');
psql(q{UPDATE buyers SET spend = 1 WHERE email = 'p1@acme.io'; UPDATE buyers SET spend = 999 WHERE email = 'small@acme.io';
	SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { $segment->() eq 'new@acme.io,small@acme.io' }, 30), 'who exited left the segment, who entered joined it');
ok(!members()->{'p1@acme.io'}{archived}, 'the exited member stays in the audience');
# archived behind the sync's back, then back in the audience: upserted again
$http->request('DELETE', "$url/lists/$list_id/members/new\@acme.io",
	{ headers => { Authorization => 'Basic ' . encode_base64("x:$key", '') } });
psql(q{UPDATE buyers SET spend = 1 WHERE email IN ('new@acme.io', 'small@acme.io'); SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { $segment->() eq '' }, 30) && drained('vip_seg'), 'both left');
psql(q{UPDATE buyers SET spend = 1000 WHERE email = 'new@acme.io'; SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { $segment->() eq 'new@acme.io' }, 30), 'an archived member who enters again is back in the segment');
ok(drained('vip_seg'), 'the segment sync drained');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'vip_seg'}), '0', 'nothing dead-lettered');

# upsert mode only adds, and keeps the member's email: one archived since
# is not a member when it enters again, so it is upserted again first
psql(qq{CREATE TABLE fans (email text PRIMARY KEY, likes int);
	INSERT INTO fans VALUES ('fan\@acme.io', 9);
	SELECT retl_create_audience('fans', 'SELECT email FROM fans WHERE likes > 5', '{email}', schedule => 'manual');
	SELECT retl_create_sync('fans_seg', 'audience:fans', 'mc', options => '{"list_id": "$list_id", "segment_id": "4502"}');
	SELECT retl_refresh_audience('fans');});
my $fans = sub { return join(',', @{ $mc->get->{segments}{4502}{members} }) };
ok(wait_for(sub { $fans->() eq 'fan@acme.io' }, 30) && drained('fans_seg'), 'a fan in the segment');
# no refresh of the audience waiting or at work: the next one counted is the
# one asked for below (two asked for before either runs are one refresh)
sub settled { return $node->poll_query_until('postgres', q{SELECT a.next_refresh_at IS NULL
	AND NOT EXISTS (SELECT 1 FROM retl.runs r WHERE r.sync = 'fans_seg' AND r.status NOT IN ('succeeded', 'failed'))
	FROM retl.audience_store a WHERE a.name = 'fans'}); }
ok(settled(), 'no refresh of the fans waiting');
my $runs = psql(q{SELECT count(*) FROM retl.runs WHERE sync = 'fans_seg' AND status = 'succeeded'});
psql(q{UPDATE fans SET likes = 0; SELECT retl_refresh_audience('fans');});
ok($node->poll_query_until('postgres', qq{SELECT count(*) > $runs FROM retl.runs WHERE sync = 'fans_seg' AND status = 'succeeded'})
	&& drained('fans_seg') && $fans->() eq 'fan@acme.io', 'upsert mode: who exits stays in the segment');
$http->request('DELETE', "$url/lists/$list_id/members/fan\@acme.io",
	{ headers => { Authorization => 'Basic ' . encode_base64("x:$key", '') } });
my $errors = $mc->get->{codes}{SEGMENT_ERROR} // 0;
ok(settled(), 'the exit refreshed');
psql(q{UPDATE fans SET likes = 10; SELECT retl_refresh_audience('fans');});
ok(wait_for(sub { $fans->() eq 'fan@acme.io' }, 30) && drained('fans_seg'), 'archived, then back: in the segment again');
is($mc->get->{codes}{SEGMENT_ERROR}, $errors + 1, 'after Mailchimp said it was not a member');
ok(!members()->{'fan@acme.io'}{archived}, 'and upserted again');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'fans_seg'}), '0', 'nothing dead-lettered');

$st = $mc->get;
is($st->{limited}, 0, 'never more than 10 connections at once (no 429)');
ok($st->{max_in_flight} <= 5, "at most 5 requests at once ($st->{max_in_flight})");

# Mailchimp allows fewer connections now (429): retried after a pause, none lost
$mc->post('/_control', { concurrency => 1, delay_ms => 300 });
psql(q{DELETE FROM people WHERE id BETWEEN 20 AND 27});
ok(drained('people'), 'the deletes drained');
$st = $mc->get;
ok($st->{limited} > 0, "Mailchimp answered 429 ($st->{limited} times)");
is(scalar(grep { $st->{lists}{$list_id}{members}{"p$_\@acme.io"}{archived} } 20 .. 27), 8, 'every member archived all the same');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '3', 'nothing dead-lettered');
$mc->post('/_control', { concurrency => 10, delay_ms => 0 });

# bad options are refused at creation, nothing created
for my $case (
	[ q{mode => 'append', options => '{"list_id": "a1b2c3d4e5"}'}, qr/a destination of kind mailchimp does not support mode "append"/ ],
	[ q{mode => 'update', schedule => 'manual', options => '{"list_id": "a1b2c3d4e5"}'}, qr/does not support mode "update"/ ],
	[ q{options => '{}'}, qr/a mailchimp sync needs option "list_id"/ ],
	[ q{options => '{"list_id": "a1b2c3d4e5", "status": "cleaned"}'}, qr/option "status" of a mailchimp sync must be/ ],
	[ q{options => '{"list_id": "a1b2c3d4e5", "segment_id": "4501"}'}, qr/option "segment_id" is for a sync of an audience/ ],
	[ q{options => '{"list_id": "a1b2c3d4e5", "email_field": "mail"}'}, qr/option "email_field" names field "mail", which the sync's records do not carry/ ],
	[ q{mapping => '{"email": "email", "fname": "first-name"}', options => '{"list_id": "a1b2c3d4e5"}'},
	  qr/field "first-name" of the sync's records cannot be a Mailchimp merge tag/ ])
{
	($ret, $out, $err) = $node->psql('postgres', "SELECT retl_create_sync('bad', 'people', 'mc', $case->[0])");
	like($err, $case->[1], "refused: $case->[0]");
}
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_destination('bad', 'mailchimp', 'http://127.0.0.1:1',
	'{"auth": {"type": "bearer", "token": "{{secret:mc_key}}"}}')});
like($err, qr/a mailchimp destination needs basic auth with its API key/, 'a destination without basic auth');
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'bad'}) . psql(q{SELECT count(*) FROM retl.destinations WHERE name = 'bad'}),
	'00', 'nothing was created');
my $log = slurp_file($node->logfile);
my $b64 = encode_base64("retl:$key", '');
unlike($log, qr/\Q$key\E|0123456789abcdef0123456789abcdef|\Q$b64\E/, 'the API key is nowhere in the server log');

done_testing();
