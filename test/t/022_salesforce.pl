# The salesforce connector against a local emulator of Salesforce's REST API
# (test/emulators/salesforce.py: the org's My Domain serving the token
# endpoint, the instance serving sObject Collections): OAuth 2.0 client
# credentials, requests to the token answer's instance_url; a table
# converging in Contacts by an external id (upserts of at most 200, each
# result read in order: a validation error dead-letters its record alone,
# UNABLE_TO_LOCK_ROW retries it), updates by the same record, deletes by
# the Salesforce id kept, or by the id looked up by the external id when
# none was kept (done when Salesforce has no such record); an expired session renewed once; an audience in a
# campaign (CampaignMember created and deleted, the contact kept); the
# refresh token grant with a rotated refresh token saved; the org's daily
# allocation used up (the records wait).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $campaign = '701000000000001AAA';
my $sf = start_emulator('salesforce', '--client-id', 'retl-app', '--client-secret', 'sf-secret-value',
	'--refresh-token', 'sf-refresh-0', '--rotate-refresh', '--campaign', $campaign);
my $node = new_retl_node('salesforce');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
sub contacts { return { map { $_->{Ext_Id__c} => $_ } values %{ $sf->get->{records}{Contact} // {} } }; }

my $url = $sf->url;
my $auth = q{"auth": {"type": "oauth2", "grant_type": "client_credentials", "client_id": "retl-app",
	"client_secret": "{{secret:sf}}"}};
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('sf', 'sf-secret-value');
	SELECT retl_create_destination('sf_defaults', 'salesforce', '$url', '{$auth}');
	SELECT retl_create_destination('org', 'salesforce', '$url', '{$auth, "api_version": "v61.0", "rate_limit": 10}');
	CREATE TABLE people (id int PRIMARY KEY, first text, last text, email text, spend int);
	INSERT INTO people SELECT g, 'F' || g, 'L' || g, 'p' || g || '\@x.io', g FROM generate_series(1, 250) g;
	INSERT INTO people VALUES (251, 'No', NULL, 'n\@x.io', 1), (252, 'Bad', 'Mail', 'not-an-email', 1);});
is(psql(q{SELECT batch_size || ' ' || rate_limit || ' ' || max_concurrency FROM retl.destinations WHERE name = 'sf_defaults'}),
	'200 1 4', "Salesforce's limits are the defaults: 200 records a request, a request a second");

$sf->post('/_control', { lock_once => ['9'] });
psql(q{SELECT retl_create_sync('people', 'people', 'org',
	mapping => '{"first": "FirstName", "last": "LastName", "email": "Email", "spend": "Score__c"}',
	options => '{"object": "Contact", "external_id": "Ext_Id__c"}')});
ok(drained('people'), 'backfilled');
my $c = contacts();
is(scalar keys %$c, 250, 'every valid row is a Contact');
is($c->{7}{LastName}, 'L7', 'with its fields');
is($c->{7}{Score__c}, 7, 'numbers as numbers');
ok(exists $c->{9}, 'the record Salesforce could not lock was retried and is there');
my $st = $sf->get;
is($st->{max_records}, 200, 'never more than 200 records a request');
is($st->{codes}{UNABLE_TO_LOCK_ROW}, 1, 'UNABLE_TO_LOCK_ROW once');
is($st->{wrong_host}, 0, 'every API request went to the instance_url of the token answer');
is($st->{grants}{client_credentials}, 1, 'one access token for all of it');
is(psql(q{SELECT string_agg(key::text || ' ' || last_error, E'\n' ORDER BY key::text) FROM retl.dead_letters WHERE sync = 'people'}),
	qq{{"id": 251} Salesforce refused the record: REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] (fields ["LastName"])\n}
	  . q{{"id": 252} Salesforce refused the record: INVALID_EMAIL_ADDRESS: Email: invalid email address: not-an-email (fields ["Email"])},
	'the two invalid records alone, each with Salesforce\'s error');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'people'}), '250', 'the Salesforce ids are kept');

# an update reaches the same record; a delete deletes it by its id
my $id7 = psql(q{SELECT id FROM retl.remembered_ids WHERE sync = 'people' AND key = '{"id": 7}'});
my $id8 = psql(q{SELECT id FROM retl.remembered_ids WHERE sync = 'people' AND key = '{"id": 8}'});
psql(q{UPDATE people SET first = 'Seven' WHERE id = 7; DELETE FROM people WHERE id = 8;});
ok(drained('people'), 'changes drained');
is($sf->get->{records}{Contact}{$id7}{FirstName}, 'Seven', "the update reached Contact $id7");
ok(!exists contacts()->{8}, 'the deleted row\'s Contact is deleted');
ok((grep { $_ eq $id8 } @{ $sf->get->{deleted} }), "by its id, $id8");
# a row inserted and deleted before the sync sent it: nothing to delete
is(never_sent_change($node, 'people', q{INSERT INTO people VALUES (9001, 'B', 'Brief', 'b\@x.io', 1)},
	q{DELETE FROM people WHERE id = 9001}), '0|1', 'a delete of a key never upserted is delivered, not dead-lettered');
is(scalar @{ $sf->get->{deleted} }, 1, 'without a request');
# a key sent and refused (no Salesforce id; Salesforce might have had it):
# its delete looks the id up by the external id, and there is no such record
is(marked($node, 'people', '{"id": 251}'), '1', 'a key sent with no id given is marked');
is(counted_changes($node, 'people', q{DELETE FROM people WHERE id = 251}), '0|1',
	'a delete of a key sent with no id kept, which Salesforce does not have, is delivered');
ok((grep { $_ eq '251' } @{ $sf->get->{lookups} }), 'Salesforce was asked for it by its external id');
is(scalar @{ $sf->get->{deleted} }, 1, 'nothing more deleted');
is(marked($node, 'people', '{"id": 251}'), '0', 'its mark is forgotten');

# an expired session (401 INVALID_SESSION_ID): the token renewed once, retried
$sf->post('/_control', { expire_tokens => JSON::PP::true });
psql(q{UPDATE people SET first = 'Ten' WHERE id = 10});
ok(drained('people'), 'the change was sent after the session expired');
is(contacts()->{10}{FirstName}, 'Ten', 'with a new token');
$st = $sf->get;
is($st->{unauthorized}, 1, 'Salesforce answered 401 once');
is($st->{grants}{client_credentials}, 2, 'and retl got one new token');

# an audience in a campaign: the members upserted by their external id,
# then made CampaignMembers; who exits leaves the campaign, the Contact stays
psql(q{SELECT retl_create_audience('vip', 'SELECT id FROM people WHERE spend > 240', '{id}', schedule => 'manual');
	SELECT retl_create_sync('vip_campaign', 'audience:vip', 'org', mode => 'mirror',
		options => $${"object": "Contact", "external_id": "Ext_Id__c", "campaign_id": "701000000000001AAA"}$$);
	SELECT retl_refresh_audience('vip');});
my $members = sub {
	my $s = $sf->get;
	return [ sort { $a <=> $b } map { $s->{records}{Contact}{ $_->{ContactId} }{Ext_Id__c} } @{ $s->{campaign_members}{$campaign} // [] } ];
};
ok(wait_for(sub { @{ $members->() } == 10 }, 30), 'the audience\'s members are in the campaign');
is_deeply($members->(), [ 241 .. 250 ], 'the ten of them');
psql(q{UPDATE people SET spend = 1 WHERE id = 241; UPDATE people SET spend = 999 WHERE id = 1;
	SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { join(',', @{ $members->() }) eq join(',', 1, 242 .. 250) }, 30),
	'who exited left the campaign, who entered joined it');
ok(exists contacts()->{241}, 'the exited member\'s Contact is not deleted');
ok(drained('vip_campaign'), 'the campaign sync drained');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'vip_campaign'}), '0', 'nothing dead-lettered');

# the refresh token grant: Salesforce rotates the refresh token, retl keeps the new one
psql(qq{SET log_statement = 'none'; SELECT retl_set_secret('sf_rt', 'sf-refresh-0');
	SELECT retl_create_destination('org_rt', 'salesforce', '$url', '{"auth": {"type": "oauth2",
		"grant_type": "refresh_token", "client_id": "retl-app", "client_secret": "{{secret:sf}}",
		"refresh_token": "{{secret:sf_rt}}"}, "rate_limit": 10}');
	CREATE TABLE firms (id int PRIMARY KEY, name text);
	INSERT INTO firms VALUES (1, 'Acme');
	SELECT retl_create_sync('firms', 'firms', 'org_rt', mapping => '{"name": "Name"}',
		options => '{"object": "Account", "external_id": "Ext_Id__c"}');});
ok(drained('firms'), 'sent with a token from the refresh token grant');
is((values %{ $sf->get->{records}{Account} })[0]{Name}, 'Acme', 'the Account is there');
$st = $sf->get;
is($st->{grants}{refresh_token}, 1, 'one refresh');
isnt($st->{refresh_token}, 'sf-refresh-0', 'Salesforce rotated the refresh token');
is(psql(q{SELECT value FROM retl.secrets WHERE name = 'sf_rt'}), $st->{refresh_token}, 'and retl saved the new one in its secret');

# bad options refused at creation, nothing created
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'people', 'org', mode => 'append',
	options => '{"object": "Contact", "external_id": "Ext_Id__c"}')});
like($err, qr/a destination of kind salesforce does not support mode "append"/, 'append is refused');
($ret, $out, $err) = $node->psql('postgres', q{CREATE TABLE things (ext text PRIMARY KEY, id text);
	SELECT retl_create_sync('bad', 'things', 'org', options => '{"object": "Thing__c", "external_id": "Ext_Id__c"}')});
like($err, qr/the sync's records carry a field "id", which Salesforce takes as its own record Id/, 'a field that would set the Id');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'people', 'org',
	options => '{"object": "Contact", "external_id": "Ext_Id__c", "campaign_id": "701000000000001AAA"}')});
like($err, qr/option "campaign_id" is for a sync of an audience/, 'a campaign needs an audience');
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'bad'}), '0', 'nothing was created');

# a record Salesforce created whose answer was lost (500 after the write;
# one attempt: dead-lettered with no id), then deleted: looked up by its
# external id, then deleted by the id found
psql(qq{SELECT retl_create_destination('org_once', 'salesforce', '$url', '{$auth, "rate_limit": 10, "max_attempts": 1}');
	CREATE TABLE gadgets (id int PRIMARY KEY, name text);
	SELECT retl_create_sync('gadgets', 'gadgets', 'org_once', mapping => '{"name": "Name"}',
		options => '{"object": "Thing__c", "external_id": "Ext_Id__c"}');});
my $things = sub { return { map { $_->{Ext_Id__c} => $_ } values %{ $sf->get->{records}{Thing__c} // {} } }; };
$sf->post('/_control', { fail_after_write => 1 });
is(counted_changes($node, 'gadgets', q{INSERT INTO gadgets VALUES (5, 'Lost')}), '1|0',
	'an upsert whose answer was lost is dead-lettered (one attempt)');
ok(exists $things->()->{5}, 'though Salesforce has the record');
is(marked($node, 'gadgets', '{"id": 5}'), '1', 'its key is marked, with no id');
my $things5 = $sf->get->{records}{Thing__c};
my ($rid5) = grep { ($things5->{$_}{Ext_Id__c} // '') eq '5' } keys %$things5;
is(counted_changes($node, 'gadgets', q{DELETE FROM gadgets WHERE id = 5}), '0|1', 'its delete is delivered, not dead-lettered');
ok(!exists $things->()->{5}, 'the record is deleted');
ok((grep { $_ eq $rid5 } @{ $sf->get->{deleted} }), "by the Salesforce id looked up, $rid5");
is(psql(q{SELECT count(*) FROM retl.remembered_id_store r JOIN retl.syncs s ON s.id = r.sync_id WHERE s.name = 'gadgets'}),
	'0', 'the key\'s id and mark are forgotten');

# a key ending like a format (".io"), which Salesforce may misread in the
# lookup's path: a 404 does not count its delete done
psql(q{CREATE TABLE widgets (ext text PRIMARY KEY, name text);
	SELECT retl_create_sync('widgets', 'widgets', 'org_once', mapping => '{"name": "Name"}',
		options => '{"object": "Thing__c", "external_id": "Ext_Id__c"}');});
$sf->post('/_control', { lock_once => ['gone@x.io'] });
is(counted_changes($node, 'widgets', q{INSERT INTO widgets VALUES ('gone@x.io', 'W')}), '1|0',
	'an upsert refused (one attempt) is dead-lettered');
is(counted_changes($node, 'widgets', q{DELETE FROM widgets}), '1|0',
	'the delete of a key ending like a format, answered 404, is dead-lettered');
like(psql(q{SELECT last_error FROM retl.dead_letters WHERE sync = 'widgets' AND op = 'delete'}),
	qr/^Salesforce answered 404 to the lookup of this key's id, but may have read the key's end/, 'saying why');
ok((grep { $_ eq 'gone@x.io' } @{ $sf->get->{lookups} }), 'after looking it up');

# the org's API requests of the day used up: the records wait, none dead-lettered
$sf->post('/_control', { daily_quota => 0 });
psql(q{UPDATE people SET first = 'Eleven' WHERE id = 11});
ok($node->poll_query_until('postgres',
	q{SELECT last_error LIKE 'Salesforce answered REQUEST_LIMIT_EXCEEDED%' FROM retl.sync_status WHERE sync = 'people'}),
	'REQUEST_LIMIT_EXCEEDED shows in the sync\'s status');
is(psql(q{SELECT pending + in_flight FROM retl.sync_status WHERE sync = 'people'}), '1', 'the change waits');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '2', 'nothing more dead-lettered');
my $calls = $sf->get->{calls};
sleep 2;
is($sf->get->{calls}, $calls, 'and the destination waits instead of calling again');

unlike(slurp_file($node->logfile), qr/sf-secret-value|sf-refresh-|\Q$st->{refresh_token}\E/,
	'no secret or refresh token in the server log');

done_testing();
