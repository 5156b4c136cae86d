# The http connector against local emulators (test/emulators/apis.py): a
# REST API (PUT and DELETE by id) converging to the table; a GraphQL API
# answering 200 with {"errors": [...]}, which the success rule retries; a
# SOAP service answering a Fault with 500 first, fed values that need
# escaping; a batched body built by an aggregate; the destination's own ids
# remembered (create, then update and delete by that id); an expression
# failing on one record's data; and the auth types on the wire.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use MIME::Base64;

my $api = start_emulator('apis', '--token', 'tok-123');
my $r = start_receiver();
my $node = new_retl_node('http');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub q_ { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }

sub drained
{
	my ($sync) = @_;
	return $node->poll_query_until('postgres',
		"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$sync'");
}

psql(q{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('api_token', 'tok-123');});
my $auth = q{"auth": {"type": "bearer", "token": "{{secret:api_token}}"}};
for my $d (['rest', ''], ['gql', '/graphql'], ['soap', '/soap'], ['contacts', ''])
{
	psql("SELECT retl_create_destination('$d->[0]', 'http', '" . $api->url($d->[1]) . "', '{$auth}')");
}
psql("SELECT retl_create_destination('bulk', 'http', '" . $api->url('/bulk') . "', '{$auth, \"batch_size\": 5}')");

# REST: PUT /users/{id} with the row, DELETE /users/{id}.
psql(q{CREATE TABLE users (id int PRIMARY KEY, email text, name text);
	INSERT INTO users VALUES (1, 'a@x.io', 'Ann'), (2, 'b@x.io', 'Bob'), (3, 'c@x.io', 'Cy');});
psql(q{SELECT retl_create_sync('rest', 'users', 'rest', options => } . q_(q{{
	"request": {"method": "PUT", "path": "format('/users/%s', retl_urlencode(key->>'id'))",
	            "body": "jsonb_build_object('email', data->>'email', 'name', data->>'name')"},
	"delete": {"method": "DELETE", "path": "format('/users/%s', retl_urlencode(key->>'id'))"},
	"success": "status BETWEEN 200 AND 299 OR status = 404"}}) . ')');
ok(drained('rest'), 'REST: backfilled');
$api->post('/_fail', { api => 'rest', count => 1 });
psql(q{UPDATE users SET email = 'b2@x.io' WHERE id = 2; DELETE FROM users WHERE id = 3;
	INSERT INTO users VALUES (4, 'd@x.io', 'Di');});
ok(drained('rest'), 'REST: changes drained (one 503 retried)');
is_deeply($api->get->{users},
	{ 1 => { email => 'a@x.io', name => 'Ann' }, 2 => { email => 'b2@x.io', name => 'Bob' },
	  4 => { email => 'd@x.io', name => 'Di' } },
	'REST: the API holds the table');
my @puts = grep { $_->{method} eq 'PUT' } @{ $api->get->{requests} };
is($puts[0]{headers}{authorization}, 'Bearer tok-123', 'REST: bearer auth sent');
like($puts[0]{headers}{'idempotency-key'}, qr/^[0-9a-f]+-\d+$/, 'REST: with the record id as idempotency key');
is($puts[0]{headers}{'content-type'}, 'application/json', 'REST: JSON by default');

# GraphQL: a 200 with {"errors"} fails the success rule: retried.
psql(q{CREATE TABLE people (id int PRIMARY KEY, email text)});
psql(q{SELECT retl_create_sync('gql', 'people', 'gql', options => } . q_(q{{
	"request": {"body": "jsonb_build_object('query', 'mutation Upsert($id: ID!, $email: String) { upsertUser(id: $id, email: $email) { id } }', 'variables', jsonb_build_object('id', 'p' || (key->>'id'), 'email', data->>'email'))"},
	"delete": {"body": "jsonb_build_object('query', 'mutation Delete($id: ID!) { deleteUser(id: $id) { id } }', 'variables', jsonb_build_object('id', 'p' || (key->>'id')))"},
	"success": "status = 200 AND response ? 'data' AND NOT response ? 'errors'"}}) . ')');
$api->post('/_fail', { api => 'graphql', count => 1 });
psql(q{INSERT INTO people VALUES (7, 'g@x.io'), (8, 'h@x.io')});
ok(drained('gql'), 'GraphQL: drained');
is($api->get->{users}{p7}{email}, 'g@x.io', 'GraphQL: upserted');
is($api->get->{users}{p8}{email}, 'h@x.io', 'GraphQL: both');
is(psql(q{SELECT failed_attempts >= 1 FROM retl.sync_status WHERE sync = 'gql'}), 't',
	'GraphQL: the 200 with errors counted as a failed attempt');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'gql'}), '0', 'GraphQL: and retried, not dead-lettered');
psql(q{DELETE FROM people WHERE id = 8});
ok(drained('gql'), 'GraphQL: delete drained');
ok(!exists $api->get->{users}{p8}, 'GraphQL: deleted by its own mutation');

# SOAP: text/xml, SOAPAction, a Fault with 500 first (retried); xmlelement escapes.
my $name = q{Tom & "Jerry" <tj> 'x'};
psql(q{CREATE TABLE accounts (id int PRIMARY KEY, name text)});
psql(q{SELECT retl_create_sync('soap', 'accounts', 'soap', options => } . q_(q{{
	"request": {"body": "xmlelement(name \"soap:Envelope\", xmlattributes('http://schemas.xmlsoap.org/soap/envelope/' AS \"xmlns:soap\"), xmlelement(name \"soap:Body\", xmlelement(name \"UpdateUser\", xmlelement(name \"Id\", key->>'id'), xmlelement(name \"Name\", data->>'name'))))",
	            "content_type": "text/xml; charset=utf-8",
	            "headers": {"SOAPAction": "'\"urn:UpdateUser\"'"}}}}) . ')');
$api->post('/_fail', { api => 'soap', count => 1 });
psql('INSERT INTO accounts VALUES (5, ' . q_($name) . ')');
ok(drained('soap'), 'SOAP: drained');
is($api->get->{soap}{5}, $name, 'SOAP: the value arrived exactly, escaped on the way');
my @soap = grep { $_->{path} eq '/soap' } @{ $api->get->{requests} };
is(scalar @soap, 2, 'SOAP: the Fault was retried once');

# A batch: one request per 5 records, its body an aggregate.
psql(q{CREATE TABLE items (id int PRIMARY KEY, v text);
	SELECT retl_pause_sync(s) FROM unnest('{rest,gql,soap}'::text[]) s;});
psql(q{SELECT retl_create_sync('bulk', 'items', 'bulk', options => } . q_(q{{
	"request": {"body": "jsonb_build_object('items', jsonb_agg(jsonb_build_object('id', key->>'id', 'v', data->>'v') ORDER BY record_id))"}}}) . ')');
psql(q{INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 12) g});
ok(drained('bulk'), 'batch: drained');
is(scalar keys %{ $api->get->{bulk} }, 12, 'batch: every item arrived');
my @bulk = grep { $_->{path} eq '/bulk' } @{ $api->get->{requests} };
ok(@bulk >= 3 && @bulk < 12, 'batch: in batches (' . scalar(@bulk) . ' requests)');

# The destination's ids: POST creates and answers its id, kept; later
# requests update and delete by it.
psql(q{CREATE TABLE crm (id int PRIMARY KEY, email text)});
psql(q{SELECT retl_create_sync('contacts', 'crm', 'contacts', options => } . q_(q{{
	"request": {"method": "POST",
	            "path": "CASE WHEN remembered_id IS NULL THEN '/contacts' ELSE '/contacts/' || retl_urlencode(remembered_id) END",
	            "body": "data"},
	"delete": {"method": "DELETE", "path": "'/contacts/' || retl_urlencode(remembered_id)"},
	"remember": "response->>'id'",
	"success": "status BETWEEN 200 AND 299"}}) . ')');
psql(q{INSERT INTO crm VALUES (1, 'first@x.io')});
ok(drained('contacts'), 'ids: created');
my $cid = psql(q{SELECT id FROM retl.remembered_ids WHERE sync = 'contacts' AND key = '{"id": 1}'});
like($cid, qr/^c-\d+$/, 'ids: the id the API gave is remembered');
psql(q{UPDATE crm SET email = 'second@x.io' WHERE id = 1});
ok(drained('contacts'), 'ids: updated');
is_deeply($api->get->{contacts}, { $cid => { id => 1, email => 'second@x.io' } }, 'ids: updated by the API\'s id, not created again');
psql(q{DELETE FROM crm WHERE id = 1});
ok(drained('contacts'), 'ids: deleted');
is_deeply($api->get->{contacts}, {}, 'ids: deleted by the API\'s id');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'contacts'}), '0', 'ids: and forgotten');

# Per-record outcomes: a batch answered record by record (207, a results
# array): the refused record is retried alone, the others delivered, and
# a later change of its key waits for it (per-key order).
psql(q{CREATE TABLE pr (id int PRIMARY KEY, v text);
	SELECT retl_pause_sync('bulk');});
psql(q{SELECT retl_create_sync('per_record', 'pr', 'bulk', options => } . q_(q{{
	"request": {"body": "jsonb_build_object('items', jsonb_agg(jsonb_build_object('id', 'pr' || (key->>'id'), 'v', data->>'v') ORDER BY record_id))"},
	"success": "response->'results'->((n - 1)::int)->>'status' = 'ok'"}}) . ')');
psql(q{INSERT INTO pr VALUES (1, 'a'), (2, 'b'), (3, 'bad'), (4, 'd')});
ok(wait_for(sub { my $b = $api->get->{bulk}; exists $b->{pr1} && exists $b->{pr2} && exists $b->{pr4} }, 30),
	'per record: the accepted records delivered');
ok(!exists $api->get->{bulk}{pr3}, 'per record: the refused one not');
ok($node->poll_query_until('postgres', q{SELECT failed_attempts >= 1 AND pending >= 1 FROM retl.sync_status WHERE sync = 'per_record'}),
	'per record: it is retried alone');
psql(q{UPDATE pr SET v = 'good' WHERE id = 3});
ok(drained('per_record'), 'per record: drained after the fix');
is($api->get->{bulk}{pr3}{v}, 'good', 'per record: the key reached its latest state');
my @v3 = map { $_->{v} } grep { $_->{id} eq 'pr3' }
  map { @{ (JSON::PP::decode_json($_->{body}))->{items} } } grep { $_->{path} eq '/bulk' && $_->{body} =~ /pr3/ } @{ $api->get->{requests} };
is($v3[-1], 'good', 'per record: nothing of the key was sent after its latest state (' . join(',', @v3) . ')');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'per_record'}), '0', 'per record: nothing dead-lettered');
psql(q{SELECT retl_resume_sync('bulk')});

# An expression that fails on one record's data fails that record alone.
psql(q{CREATE TABLE nums (id int PRIMARY KEY, d int); INSERT INTO nums VALUES (1, 1), (2, 0), (3, 4);});
psql(q{SELECT retl_create_sync('nums', 'nums', 'bulk', options => } . q_(q{{
	"request": {"body": "jsonb_build_object('items', jsonb_agg(jsonb_build_object('id', 'n' || (key->>'id'), 'inv', 100 / (data->>'d')::int)))"}}}) . ')');
ok(drained('nums'), 'a failing expression: drained');
like(psql(q{SELECT last_error FROM retl.dead_letters WHERE sync = 'nums'}), qr/division by zero/,
	'the record it fails on is dead-lettered with the message');
# (the pass's next claim must not see its row, deleted in the same
# transaction, and dead-letter it again)
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'nums'}), '1', 'once');
is_deeply([ sort grep { /^n/ } keys %{ $api->get->{bulk} } ], [ 'n1', 'n3' ], 'the others were sent');

# Auth on the wire, against the webhook receiver.
psql(q{SET log_statement = 'none'; SELECT retl_set_secret('pw', 'pa:ss'); SELECT retl_set_secret('key', 'k-9');});
psql(q{CREATE TABLE pings (id int PRIMARY KEY)});
psql(q{SELECT retl_create_destination('basic', 'webhook', '} . $r->url('/basic') . q{', '{"auth": {"type": "basic", "username": "me", "password": "{{secret:pw}}"}}');
	SELECT retl_create_destination('hdr', 'http', '} . $r->url('/hdr') . q{', '{"auth": {"type": "header", "name": "X-Api-Key", "value": "{{secret:key}}"}}');
	SELECT retl_create_sync('basic', 'pings', 'basic'); SELECT retl_create_sync('hdr', 'pings', 'hdr');
	INSERT INTO pings VALUES (1);});
ok(drained('basic') && drained('hdr'), 'auth: delivered');
my ($basic) = grep { $_->{path} eq '/basic' } @{ $r->requests };
is($basic->{headers}{authorization}, 'Basic ' . encode_base64('me:pa:ss', ''), 'basic auth');
my ($hdr) = grep { $_->{path} eq '/hdr' } @{ $r->requests };
is($hdr->{headers}{'x-api-key'}, 'k-9', 'header auth');
is($hdr->{body}{records}[0]{key}{id}, 1, 'the http connector\'s default body is the webhook envelope');

# Computed fields, for a table's realtime sync and a query's.
psql(q{CREATE TABLE leads (id int PRIMARY KEY, email text, first text, last text, created date);
	INSERT INTO leads VALUES (1, 'Ann@X.IO', 'Ann', 'Lee', '2026-11-30');
	SELECT retl_create_destination('leads_hook', 'webhook', '} . $r->url('/leads') . q{');
	SELECT retl_create_sync('leads', 'leads', 'leads_hook', mapping => $${"email": "email",
		"email_lower": {"sql": "lower(email)"}, "full_name": {"sql": "first || ' ' || last"},
		"created_on": {"sql": "to_char(created, 'MM/DD/YYYY')"}}$$);
	SELECT retl_create_sync('leads_events', 'leads', 'leads_hook', mode => 'append',
		mapping => $${"id": "lead", "signed_up": {"sql": "created + 1"}}$$);
	SELECT retl_create_sync('leads_model', 'SELECT id, first FROM leads', 'leads_hook', key => '{id}',
		schedule => 'manual', mapping => $${"first_upper": {"sql": "upper(first)"}}$$);
	SELECT retl_run_sync('leads_model');});
ok($node->poll_query_until('postgres', q{SELECT last_run_status = 'succeeded' FROM retl.sync_status WHERE sync = 'leads_model'}),
	'the query sync ran');
ok(drained('leads') && drained('leads_model') && drained('leads_events'), 'computed fields: delivered');
my %leads = map { $_->{body}{sync} => $_->{body}{records}[0] } grep { $_->{path} eq '/leads' } @{ $r->requests(ok => 1) };
is_deeply($leads{leads}{data}, { email => 'Ann@X.IO', email_lower => 'ann@x.io', full_name => 'Ann Lee', created_on => '11/30/2026' },
	'a table sync\'s computed fields');
is_deeply($leads{leads}{key}, { id => 1 }, 'with its key');
is_deeply($leads{leads_model}{data}, { first_upper => 'ANN' }, 'a query sync\'s computed field');
psql(q{INSERT INTO leads VALUES (2, 'b@x.io', 'Bo', 'Ng', '2026-12-01')});
ok(drained('leads_events'), 'append: drained');
my @ev = sort { $a->{data}{lead} <=> $b->{data}{lead} } grep { $_->{op} eq 'insert' }
  map { @{ $_->{body}{records} } } grep { $_->{path} eq '/leads' && $_->{body}{sync} eq 'leads_events' } @{ $r->requests(ok => 1) };
is_deeply([ map { $_->{data} } @ev ], [ { lead => 1, signed_up => '2026-12-01' }, { lead => 2, signed_up => '2026-12-02' } ],
	'an append sync\'s computed field, over the rows as they were written');

unlike(slurp_file($node->logfile), qr/tok-123|pa:ss|k-9/, 'no secret in the server log');

done_testing();
