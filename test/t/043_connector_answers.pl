# Connectors reading their destinations' answers, as the vendors document
# them.  Salesforce: several requests in flight with one OAuth session
# (eight at once); the session expires; every one of them is answered 401
# INVALID_SESSION_ID.  CONNECTORS.md: "Expired session: 401 ... renew
# once, retry."  The first 401 renews the token; the others, answered
# before the new token came, are retried with it, none dead-lettered
# (they were, as if the new token had been refused).  Meta: an answer
# names only a sample of the invalid entries it counted; the valid people
# of the batch are delivered, not dead-lettered as their retries ran out.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(sha256_hex);

my $sf = start_emulator('salesforce', '--client-id', 'retl-app', '--client-secret', 'sf-secret-value');
my $node = new_retl_node('answers');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
my $url = $sf->url;
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('sf', 'sf-secret-value');
	SELECT retl_create_destination('org', 'salesforce', '$url', '{"auth": {"type": "oauth2",
		"grant_type": "client_credentials", "client_id": "retl-app", "client_secret": "{{secret:sf}}"},
		"rate_limit": 1000, "max_concurrency": 8, "batch_size": 1}');
	CREATE TABLE people (id int PRIMARY KEY, last text);
	INSERT INTO people SELECT g, 'L' || g FROM generate_series(1, 8) g;
	SELECT retl_create_sync('people', 'people', 'org', mapping => '{"last": "LastName"}',
		options => '{"object": "Contact", "external_id": "Ext_Id__c"}');});
ok(drained('people'), 'backfilled');
is(psql(q{SELECT count(*) FROM retl.dead_letters}), '0', 'nothing dead-lettered yet');

for my $round (1 .. 5)
{
	$sf->post('/_control', { expire_tokens => JSON::PP::true });
	psql(qq{UPDATE people SET last = 'R$round-' || id});
	ok(drained('people'), "round $round drained");
}
my $st = $sf->get;
diag("401s: $st->{unauthorized}, client_credentials grants: $st->{grants}{client_credentials}");
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'}), '0',
	'no record dead-lettered because its session expired')
  or diag(psql(q{SELECT key::text || ' ' || last_status || ' ' || last_error FROM retl.dead_letters}));
my %c = map { $_->{Ext_Id__c} => $_->{LastName} } values %{ $sf->get->{records}{Contact} };
is(join(',', map { $c{$_} } 1 .. 8), join(',', map { "R5-$_" } 1 .. 8), 'every contact has its latest value');
# Meta: 50 people, 40 of them without the external id the audience's
# schema asks for ("empty external ID"); Meta names at most 10 invalid
# entries an answer.
my $aud = '23851234567890123';
my $meta = start_emulator('meta', '--access-token', 'EAAB-meta-token-1', '--audience', $aud, '--api-version', 'v21.0');
my $murl = $meta->url;
psql(qq{SET log_statement = 'none'; SELECT retl_set_secret('fb', 'EAAB-meta-token-1');
	SELECT retl_create_destination('fb', 'meta_audiences', '$murl', '{"auth": {"type": "bearer", "token": "{{secret:fb}}"},
		"api_version": "v21.0", "rate_limit": 100, "max_attempts": 3}');
	CREATE TABLE customers (id int PRIMARY KEY, email text, ext text);
	INSERT INTO customers SELECT g, 'p' || g || '\@x.io', CASE WHEN g <= 10 THEN 'ext' || g END
		FROM generate_series(1, 50) g;});
psql(q{SELECT retl_create_sync('audience', 'customers', 'fb', options => $${"audience_id": "23851234567890123",
	"schema": {"email": "EMAIL", "ext": "EXTERN_ID"}}$$)});
ok(drained('audience'), 'meta: drained');
is(scalar @{ $meta->get->{audiences}{$aud}{members} }, 10, 'meta: Meta has the 10 valid people');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'audience' AND (key->>'id')::int > 10}), '40',
	'meta: the 40 invalid entries are dead-lettered');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'audience' AND (key->>'id')::int <= 10}), '0',
	'meta: no valid person is dead-lettered')
  or diag(psql(q{SELECT key::text || ' attempts ' || attempts || ': ' || last_error FROM retl.dead_letters
		WHERE sync = 'audience' AND (key->>'id')::int <= 10 ORDER BY (key->>'id')::int LIMIT 3}));

$node->stop;
done_testing();
