# OAuth 2.0 against a local authorization server (test/emulators/oauth.py):
# client credentials, a token renewed when it expires, a 401 that renews
# once, the refresh token grant with a rotated refresh token kept across a
# server restart, the token endpoint down then back; with the server log
# at debug5, no token or secret in it, nor in views or errors.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $client_secret = 'cs-Very-Secret-77';
my $o = start_emulator('oauth', '--client-id', 'retl-app', '--client-secret', $client_secret,
	'--refresh-token', 'RT-first0000');
my $node = new_retl_node('oauth');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub delivered { my ($s, $n) = @_; return $node->poll_query_until('postgres',
	"SELECT delivered >= $n AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }

psql(q{CREATE EXTENSION retl; CREATE TABLE things (id int PRIMARY KEY, v text);
	SET log_statement = 'none'; SELECT retl_set_secret('cs', '} . $client_secret . q{');
	SELECT retl_set_secret('rt', 'RT-first0000');});
$o->post('/_config', { expires_in => 3 });
my $api = $o->url('/api/things');
my $token_url = $o->url('/oauth/token');
psql(qq{SELECT retl_create_destination('cc', 'http', '$api', '{"auth": {"type": "oauth2",
	"grant_type": "client_credentials", "token_url": "$token_url",
	"client_id": "retl-app", "client_secret": "{{secret:cs}}", "scope": "things.write"}}');
	SELECT retl_create_sync('cc', 'things', 'cc', options => '{"backfill": false}');});

# from here the server logs everything
psql(q{ALTER SYSTEM SET log_min_messages = debug5; SELECT pg_reload_conf();});

psql(q{INSERT INTO things VALUES (1, 'one')});
ok(delivered('cc', 1), 'client credentials: delivered with a token');
my $s = $o->get;
is($s->{issued}, 1, 'one token got');
is_deeply($s->{grants}[0], { grant_type => 'client_credentials', client_auth => 'post', scope => 'things.write' },
	'the token request as RFC 6749 4.4 has it');

sleep 3.5;
psql(q{INSERT INTO things VALUES (2, 'two')});
ok(delivered('cc', 2), 'after the token expired: delivered');
is($o->get->{issued}, 2, 'with a new token');
is($o->get->{unauthorized}, 0, 'got before the API refused the old one');

# a token the server revokes: the 401 renews it, once; the record is retried
$o->post('/_config', { expires_in => 3600 });
$o->post('/_expire', {});
psql(q{INSERT INTO things VALUES (3, 'three')});
ok(delivered('cc', 3), 'after a 401: delivered');
is($o->get->{unauthorized}, 1, 'one 401');
is(psql(q{SELECT count(*) FROM retl.dead_letters}), '0', 'nothing dead-lettered');

# the token endpoint down: the syncs say so, and it is tried again
$o->post('/_config', { down => 2 });
$o->post('/_expire', {});
psql(q{INSERT INTO things VALUES (4, 'four')});
ok($node->poll_query_until('postgres',
		q{SELECT last_error LIKE 'could not get an OAuth 2.0 access token from http://127.0.0.1:%/oauth/token: HTTP 503%'
		  FROM retl.sync_status WHERE sync = 'cc'}),
	'the token endpoint down: shown on the sync');
ok(delivered('cc', 4), 'and once it is back, delivered');

# refresh token grant, the client in HTTP Basic; the server rotates the refresh token
psql(qq{CREATE TABLE notes (id int PRIMARY KEY);
	SELECT retl_create_destination('rt', 'http', '$api', '{"auth": {"type": "oauth2",
	"grant_type": "refresh_token", "token_url": "$token_url", "client_auth": "basic",
	"client_id": "retl-app", "client_secret": "{{secret:cs}}", "refresh_token": "{{secret:rt}}"}}');
	SELECT retl_create_sync('rt', 'notes', 'rt', options => '{"backfill": false}');
	INSERT INTO notes VALUES (1);});
ok(delivered('rt', 1), 'refresh token: delivered');
my $rotated = $o->get->{refresh_token};
isnt($rotated, 'RT-first0000', 'the server rotated the refresh token');
is(psql(q{SELECT value FROM retl.secrets WHERE name = 'rt'}), $rotated, 'and retl saved the new one into its secret');
is($o->get->{grants}[-1]{client_auth}, 'basic', 'the client authenticated with HTTP Basic');

$node->restart;
psql(q{INSERT INTO notes VALUES (2)});
ok(delivered('rt', 2), 'after a restart: delivered with the saved refresh token');
isnt($o->get->{refresh_token}, $rotated, 'which the server took and rotated again');

# bad auth options are refused at creation
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9',
	'{"auth": {"type": "oauth2", "grant_type": "password", "token_url": "http://127.0.0.1:9/t", "client_id": "x"}}')});
like($err, qr/needs grant_type "client_credentials" or "refresh_token"/, 'an unsupported grant is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9',
	'{"auth": {"type": "oauth2", "grant_type": "client_credentials", "token_url": "http://127.0.0.1:9/t", "client_id": "x", "client_secret": "plain"}}')});
like($err, qr/needs client_secret, as \{\{secret:NAME\}\}/, 'a client secret written out is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9',
	'{"auth": {"type": "oauth2", "grant_type": "refresh_token", "token_url": "http://127.0.0.1:9/t", "client_id": "x", "refresh_token": "Bearer {{secret:rt}}"}}')});
like($err, qr/needs refresh_token, exactly \{\{secret:NAME\}\}/, 'a refresh token that is not exactly a secret is refused');

# nothing of the tokens or secrets anywhere a role can read, nor in the log
my $seen = psql(q{SELECT string_agg(coalesce(last_error, ''), ' ') FROM retl.sync_status})
  . psql(q{SELECT string_agg(coalesce(last_error, '') || coalesce(response_excerpt, ''), ' ') FROM retl.dead_letters})
  . psql(q{SELECT string_agg(options::text || headers::text, ' ') FROM retl.destinations})
  . slurp_file($node->logfile);
unlike($seen, qr/AT-[0-9a-f]{16}/, 'no access token in views or the debug5 log');
unlike($seen, qr/RT-[0-9a-f]{16}|RT-first/, 'no refresh token');
unlike($seen, qr/\Q$client_secret\E/, 'no client secret');
like(slurp_file($node->logfile), qr/DEBUG:/, 'the log was at a debug level');

done_testing();
