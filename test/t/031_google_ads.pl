# The google_ads connector against a local emulator of Google Ads'
# OfflineUserDataJobService and Google's token endpoint
# (test/emulators/google_ads.py): a batch of members becomes a Customer
# Match job (create, add operations, run, then its operation read over
# several checks), identifiers hashed as computed independently here and
# no plaintext reaching Google, an operation Google refuses dead-lettered
# alone and a transient one retried, a failed job's records sent again, a
# crash while a job runs (checked again, not sent again), removals, and an
# expired access token renewed.
use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $ga = start_emulator('google_ads', '--client-id', 'retl-client.apps', '--client-secret', 'ga-client-secret-x',
	'--refresh-token', 'ga-refresh-token-x', '--developer-token', 'ga-dev-token-x',
	'--login-customer-id', '1112223333', '--customer-id', '4445556666', '--user-list', '9001', '--job-steps', '3');
my $node = new_retl_node('google_ads', extra_conf => "retl.job_check_max_ms = 400\n");
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
sub members { return [ sort @{ $ga->get->{lists}{9001}{members} // [] } ]; }
sub jobs { return scalar keys %{ $ga->get->{jobs} }; }

my $url = $ga->url;
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none';
	SELECT retl_set_secret('ga_secret', 'ga-client-secret-x'); SELECT retl_set_secret('ga_refresh', 'ga-refresh-token-x');
	SELECT retl_set_secret('ga_dev', 'ga-dev-token-x');
	SELECT retl_create_destination('ads', 'google_ads', '$url', '{"auth": {"type": "oauth2", "grant_type": "refresh_token",
		"token_url": "$url/token", "client_id": "retl-client.apps", "client_secret": "{{secret:ga_secret}}",
		"refresh_token": "{{secret:ga_refresh}}"}, "developer_token": "{{secret:ga_dev}}", "login_customer_id": "1112223333"}');
	CREATE TABLE members (id int PRIMARY KEY, email text, phone text, first_name text, last_name text,
		country_code text, postal_code text);
	INSERT INTO members VALUES
		(1, ' Ann\@Example.com ', '+1 (650) 555-0101', NULL, NULL, NULL, NULL),
		(2, NULL, NULL, ' Bob ', 'Smith', 'us', '94043'),
		(3, 'rejected\@x.io', NULL, NULL, NULL, NULL, NULL),
		(4, 'retry\@x.io', NULL, NULL, NULL, NULL, NULL),
		(5, NULL, '650 555 0199', NULL, NULL, NULL, NULL);});
is(psql(q{SELECT batch_size || ' ' || rate_limit FROM retl.destinations WHERE name = 'ads'}), '5000 5', 'the defaults');

$ga->post('/_control', { reject => [ sha256_hex('rejected@x.io') ], fail_once => [ sha256_hex('retry@x.io') ], stall => JSON::PP::true });
psql(q{SELECT retl_create_sync('match', 'members', 'ads', options => '{"customer_id": "4445556666", "user_list_id": "9001"}')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM retl.jobs WHERE sync = 'match' AND status = 'RUNNING'}),
	'the batch is a job, running, shown in retl.jobs');

# a crash while the job runs: it is checked again, not sent again
my $job = psql(q{SELECT remote_id FROM retl.jobs WHERE sync = 'match' AND status = 'RUNNING'});
$node->stop('immediate');
$node->start;
ok($node->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM retl.jobs WHERE remote_id = '$job'}),
	'after a crash the job is still open');
$ga->post('/_control', { stall => JSON::PP::false });
ok(drained('match'), 'the job finished and its records were settled');
my $creates = 0;
$creates += $_->{creates} for values %{ $ga->get->{jobs} };
is($creates, 3, 'each member was added once: nothing was sent again after the crash');

my @expected = sort(sha256_hex('ann@example.com'), sha256_hex('+16505550101'),
	'address:' . sha256_hex('bob') . ':' . sha256_hex('smith') . ':US:94043', sha256_hex('retry@x.io'));
is_deeply(members(), \@expected, 'the list holds the hashes of the normalized values, as computed here');
is(psql(q{SELECT string_agg(key::text, ' ' ORDER BY key::text) FROM retl.dead_letters WHERE sync = 'match'}),
	'{"id": 3} {"id": 5}', 'the refused operation, and the phone without its country code, dead-lettered alone');
like(psql(q{SELECT last_error FROM retl.dead_letters WHERE key = '{"id": 3}'}),
	qr/^Google Ads refused the operation: MISSING_USER_IDENTIFIER/, 'with Google\'s error');
like(psql(q{SELECT last_error FROM retl.dead_letters WHERE key = '{"id": 5}'}),
	qr/^the record has no identifier Customer Match takes/, 'and why it was not sent');
my $st = $ga->get;
ok((grep { $_->{checks} >= 3 } values %{ $st->{jobs} }) >= 1, 'a job took several status checks');
is($st->{plaintext}, 0, 'no identifier reached Google unhashed');
is($st->{secret_seen}, 0, 'no secret where it does not belong');
ok(jobs() >= 2, 'the transiently refused member went in a later job');
is(psql(q{SELECT count(*) FROM retl.jobs}), '0', 'no job left open');

# a job Google fails: its records are sent again in a new one
$ga->post('/_control', { fail_job_once => JSON::PP::true });
psql(q{INSERT INTO members VALUES (6, 'late@x.io', NULL, NULL, NULL, NULL, NULL)});
ok(drained('match'), 'the record of the failed job was sent again');
ok((grep { $_ eq sha256_hex('late@x.io') } @{ members() }), 'and is in the list');
ok((grep { $_->{status} eq 'FAILED' } values %{ $ga->get->{jobs} }) == 1, 'after one job failed');

# removals: what was added is removed
psql(q{DELETE FROM members WHERE id IN (1, 2)});
ok(drained('match'), 'the removals were sent');
is_deeply(members(), [ sort(sha256_hex('retry@x.io'), sha256_hex('late@x.io')) ], 'the removed people left the list');

# an expired access token: renewed, the job goes on
my $issued = $ga->get->{tokens_issued};
$ga->post('/_control', { expire_token => JSON::PP::true });
psql(q{INSERT INTO members VALUES (7, 'after@x.io', NULL, NULL, NULL, NULL, NULL)});
ok(drained('match'), 'sent after the token expired');
ok($ga->get->{tokens_issued} > $issued, 'with a new token');

# bad options refused at creation, nothing created
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'members', 'ads', mode => 'append',
	options => '{"customer_id": "4445556666", "user_list_id": "9001"}')});
like($err, qr/does not support mode "append"/, 'append is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'members', 'ads', options => '{"customer_id": "444-555-6666", "user_list_id": "9001"}')});
like($err, qr/needs option "customer_id", the account's id, its digits/, 'a customer id with dashes');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'members', 'ads', mapping => '{"email": "email", "first_name": "first_name"}',
	options => '{"customer_id": "4445556666", "user_list_id": "9001"}')});
like($err, qr/an address needs all of first_name, last_name, country_code and postal_code/, 'half an address');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_destination('bad', 'google_ads', options => '{"auth": {"type": "oauth2",
	"grant_type": "refresh_token", "client_id": "x", "client_secret": "{{secret:ga_secret}}", "refresh_token": "{{secret:ga_refresh}}"}}')});
like($err, qr/needs option "developer_token"/, 'a developer token is needed');
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'bad'}), '0', 'nothing was created');
unlike(slurp_file($node->logfile), qr/ga-client-secret-x|ga-refresh-token-x|ga-dev-token-x|ann\@example/i,
	'no secret and no plaintext in the server log');

done_testing();
