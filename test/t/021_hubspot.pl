# The hubspot connector against a local emulator of HubSpot's CRM v3
# batch API (test/emulators/hubspot.py): a table converges (upserts in
# batches of at most 100, updates to the same HubSpot record, deletes
# archived by the HubSpot id kept), a 207 dead-letters exactly the invalid
# record, HubSpot's rate is held, and a query sync mirrors companies.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $hs = start_emulator('hubspot', '--token', 'pat-na1-test', '--client-id', 'hs-client',
	'--client-secret', 'hs-client-secret', '--refresh-token', 'hs-refresh-token', '--token-lifetime', '4');
my $node = new_retl_node('hubspot');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
sub contacts { return { map { $_->{email} => $_ } values %{ $hs->get->{objects}{contacts} // {} } }; }

my $url = $hs->url;
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('hs', 'pat-na1-test');
	SELECT retl_create_destination('crm', 'hubspot', '$url', '{"auth": {"type": "bearer", "token": "{{secret:hs}}"}}');
	CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, first text);
	INSERT INTO people SELECT g, 'p' || g || '\@x.io', 'P' || g FROM generate_series(1, 150) g;
	INSERT INTO people VALUES (151, 'not-an-email', 'Bad');});
is(psql(q{SELECT batch_size, rate_limit FROM retl.destinations WHERE name = 'crm'}), '100|9',
	"HubSpot's limits are the defaults: 100 inputs a request, under 100 requests per 10 s");
psql(q{SELECT retl_create_sync('people', 'people', 'crm', mapping => '{"email": "email", "first": "firstname"}',
	options => '{"object": "contacts", "id_property": "email"}')});
ok(drained('people'), 'backfilled');
my $c = contacts();
is(scalar keys %$c, 150, 'every valid contact is in HubSpot');
is($c->{'p7@x.io'}{firstname}, 'P7', 'with its properties, as strings');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '1', 'one dead letter');
like(psql(q{SELECT key::text || ' ' || last_error FROM retl.dead_letters WHERE sync = 'people'}),
	qr/^\{"id": 151\} HubSpot refused the record: VALIDATION_ERROR: Property values were not valid/,
	'the invalid record alone, with HubSpot\'s error');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people'}), '150', 'HubSpot\'s ids are kept');

is($hs->get->{max_inputs}, 100, 'never more than 100 inputs a request');

# created again: the same contacts are upserted, none twice
psql(q{ALTER TABLE people ADD COLUMN v int; SELECT retl_drop_sync('people');
	SELECT retl_create_sync('people', 'people', 'crm', mapping => '{"email": "email", "first": "firstname"}',
		options => '{"object": "contacts", "id_property": "email"}');});
ok(drained('people'), 'backfilled again');
is(scalar keys %{ contacts() }, 150, 'upserted onto the same contacts, none twice');

# an update reaches the same HubSpot record; a delete archives it by its id
my $id7 = psql(q{SELECT id FROM retl.remembered_ids WHERE sync = 'people' AND key = '{"id": 7}'});
psql(q{UPDATE people SET first = 'Seven' WHERE id = 7; DELETE FROM people WHERE id = 8;});
ok(drained('people'), 'changes drained');
is($hs->get->{objects}{contacts}{$id7}{firstname}, 'Seven', 'the update reached HubSpot record ' . $id7);
ok(!exists contacts()->{'p8@x.io'}, 'the deleted row\'s contact is archived');
is($hs->get->{archived}, 1, 'by its HubSpot id');
# a row inserted and deleted before the sync sent it: nothing to archive
is(never_sent_change($node, 'people', q{INSERT INTO people VALUES (9001, 'brief@x.io', 'B')},
	q{DELETE FROM people WHERE id = 9001}), '0|1', 'a delete of a key never upserted is delivered, not dead-lettered');
is($hs->get->{archived}, 1, 'without a request');
# a key sent and refused (no HubSpot id; HubSpot might have had it): its
# delete looks the id up by the email, and HubSpot has no such contact
is(marked($node, 'people', '{"id": 151}'), '1', 'a key sent with no id given is marked');
my $dead = psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'});
is(counted_changes($node, 'people', q{DELETE FROM people WHERE id = 151}), '0|1',
	'a delete of a key sent with no id kept, which HubSpot does not have, is delivered');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), $dead, 'not dead-lettered');
ok((grep { $_ eq 'not-an-email' } @{ $hs->get->{read_inputs} }), 'HubSpot was asked for it by its email');
is($hs->get->{archived}, 1, 'nothing archived');
is(marked($node, 'people', '{"id": 151}') . marked($node, 'people', '{"id": 9001}') . marked($node, 'people', '{"id": 8}'),
	'000', 'no mark of a key never sent, deleted, or looked up and not found');

# a key HubSpot applied whose answer was lost (500 after the write; one
# attempt: dead-lettered with no id), then deleted: looked up by its
# email, then archived by the id found
psql(qq{SET log_statement = 'none';
	SELECT retl_create_destination('crm_once', 'hubspot', '$url', '{"auth": {"type": "bearer", "token": "{{secret:hs}}"},
		"max_attempts": 1}');
	CREATE TABLE leads (id int PRIMARY KEY, email text NOT NULL);
	SELECT retl_create_sync('leads', 'leads', 'crm_once', options => '{"object": "contacts", "id_property": "email"}');});
$hs->post('/_control', { fail_after_write => 1 });
is(counted_changes($node, 'leads', q{INSERT INTO leads VALUES (1, 'Lost@x.io')}), '1|0',
	'an upsert whose answer was lost is dead-lettered (one attempt)');
ok(exists contacts()->{'Lost@x.io'}, 'though HubSpot has the contact');
is(marked($node, 'leads', '{"id": 1}'), '1', 'its key is marked, with no id');
is(counted_changes($node, 'leads', q{DELETE FROM leads WHERE id = 1}), '0|1', 'its delete is delivered, not dead-lettered');
ok(!exists contacts()->{'Lost@x.io'}, 'the contact is archived');
is($hs->get->{archived}, 2, 'by the HubSpot id looked up');
is(psql(q{SELECT count(*) FROM retl.remembered_id_store r JOIN retl.syncs s ON s.id = r.sync_id WHERE s.name = 'leads'}),
	'0', 'the key\'s id and mark are forgotten');
is(psql(q{SELECT attempts FROM retl.queue q JOIN retl.syncs s ON s.id = q.sync_id WHERE s.name = 'leads'}), '',
	'nothing left queued');
is($hs->get->{limited}, 0, 'HubSpot never answered 429');

# a query (mirror) sync of companies
psql(q{CREATE TABLE accounts (domain text PRIMARY KEY, name text);
	INSERT INTO accounts VALUES ('a.io', 'A'), ('b.io', 'B');
	SELECT retl_create_sync('companies', 'SELECT domain, name FROM accounts', 'crm', key => '{domain}',
		mode => 'mirror', schedule => 'manual', options => '{"object": "companies", "id_property": "domain"}');
	SELECT retl_run_sync('companies');});
ok($node->poll_query_until('postgres', q{SELECT last_run_status = 'succeeded' FROM retl.sync_status WHERE sync = 'companies'}),
	'the query ran');
ok(drained('companies'), 'and was sent');
my %co = map { $_->{domain} => $_->{name} } values %{ $hs->get->{objects}{companies} };
is_deeply(\%co, { 'a.io' => 'A', 'b.io' => 'B' }, 'companies upserted by domain');
psql(q{DELETE FROM accounts WHERE domain = 'a.io'; SELECT retl_run_sync('companies');});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM retl.remembered_ids WHERE sync = 'companies'}),
	'mirror: the company that left the query is archived');
%co = map { $_->{domain} => $_->{name} } values %{ $hs->get->{objects}{companies} };
is_deeply(\%co, { 'b.io' => 'B' }, 'HubSpot holds the query\'s result');

# an audience in a list: entering members are upserted, then added by
# their HubSpot id; exiting ones removed; no contact is archived
psql(q{CREATE TABLE buyers (email text PRIMARY KEY, spend int);
	INSERT INTO buyers VALUES ('p1@x.io', 900), ('new@x.io', 800), ('small@x.io', 5);
	SELECT retl_create_audience('vip', 'SELECT email FROM buyers WHERE spend > 500', '{email}', schedule => 'manual');
	SELECT retl_create_sync('vip_list', 'audience:vip', 'crm', mode => 'mirror',
		options => '{"object": "contacts", "id_property": "email", "list_id": "42"}');
	SELECT retl_refresh_audience('vip');});
my $list = sub { [ sort map { $hs->get->{objects}{contacts}{$_}{email} } @{ $hs->get->{lists}{42} } ] };
ok(wait_for(sub { @{ $list->() } == 2 }, 30), 'the audience\'s members are in the list');
is_deeply($list->(), [ 'new@x.io', 'p1@x.io' ], 'both, the new contact upserted first');
psql(q{UPDATE buyers SET spend = 1 WHERE email = 'p1@x.io'; UPDATE buyers SET spend = 999 WHERE email = 'small@x.io';
	SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { join(',', @{ $list->() }) eq 'new@x.io,small@x.io' }, 30), 'who exited left the list, who entered joined it');
ok(exists contacts()->{'p1@x.io'}, 'the exited member\'s contact is not archived');
ok(drained('vip_list'), 'the list sync drained');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'vip_list'}), '0', 'nothing dead-lettered');

# OAuth 2.0 with a refresh token, the token URL HubSpot's under the url:
# renewed before expires_in runs out, and once after a 401
psql(qq{SET log_statement = 'none'; SELECT retl_set_secret('hs_client', 'hs-client-secret');
	SELECT retl_set_secret('hs_refresh', 'hs-refresh-token');
	SELECT retl_create_destination('crm_oauth', 'hubspot', '$url', '{"auth": {"type": "oauth2",
		"grant_type": "refresh_token", "client_id": "hs-client", "client_secret": "{{secret:hs_client}}",
		"refresh_token": "{{secret:hs_refresh}}"}}');
	CREATE TABLE firms (domain text PRIMARY KEY, name text);
	INSERT INTO firms VALUES ('f.io', 'F');
	SELECT retl_create_sync('firms', 'firms', 'crm_oauth', options => '{"object": "companies", "id_property": "domain"}');});
ok(drained('firms'), 'sent with an OAuth access token');
my $firm = sub { (grep { $_->{domain} eq 'f.io' } values %{ $hs->get->{objects}{companies} })[0]{name} };
is($firm->(), 'F', 'the company is in HubSpot');
sleep 5;
psql(q{UPDATE firms SET name = 'F2'});
ok(drained('firms'), 'sent after the first token\'s 4 s ran out');
is($firm->(), 'F2', 'with a token renewed in time');
is($hs->get->{expired_calls}, 0, 'no call carried an expired token');
ok($hs->get->{token_requests} >= 2, 'the token was renewed');
$hs->post('/_control', { expire_tokens => JSON::PP::true });
psql(q{UPDATE firms SET name = 'F3'});
ok(drained('firms'), 'sent after HubSpot said the token expired');
is($firm->(), 'F3', 'with a new token');
is($hs->get->{expired_calls}, 1, 'one call answered 401 EXPIRED_AUTHENTICATION, then a new token');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'firms'}), '0', 'nothing dead-lettered');

# an answer echoes what it was sent: 100 contacts of 12 KB each answered
# with more than retl.max_response_size (1 MB), read whole (they were
# retried, then dead-lettered, although HubSpot had them)
psql(q{CREATE TABLE bios (id int PRIMARY KEY, email text NOT NULL, bio text);
	INSERT INTO bios SELECT g, 'bio' || g || '@x.io', repeat(md5(g::text), 384) FROM generate_series(1, 100) g;
	SELECT retl_create_sync('bios', 'bios', 'crm', mapping => '{"email": "email", "bio": "bio"}',
		options => '{"object": "contacts", "id_property": "email"}')});
ok(drained('bios'), 'contacts with long properties backfilled');
is(psql(q{SELECT delivered || ' ' || failed_attempts || ' ' || dead FROM retl.sync_status WHERE sync = 'bios'}),
	'100 0 0', 'delivered at the first attempt, none retried');
is(length(contacts()->{'bio7@x.io'}{bio} // ''), 12288, 'HubSpot has them whole');

# modes HubSpot's batch upsert cannot honour are refused at creation
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'people', 'crm', mode => 'append',
	options => '{"object": "contacts", "id_property": "email"}')});
like($err, qr/a destination of kind hubspot does not support mode "append"/, 'append is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'people', 'crm', options => '{"object": "contacts"}')});
like($err, qr/a hubspot sync needs option "id_property"/, 'id_property is required');
unlike(slurp_file($node->logfile), qr/pat-na1-test|hs-client-secret|hs-refresh-token|CJT[0-9a-f]{8}/,
	'no token or secret in the server log');

done_testing();
