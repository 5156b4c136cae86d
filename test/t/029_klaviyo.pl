# The klaviyo connector against a local emulator of Klaviyo's API
# (test/emulators/klaviyo.py), and jobs: a batch of profiles becomes a bulk
# import job that takes several status checks; its records stay in flight
# (shown in retl.jobs, their keys held: a later change of one waits) until
# the job completes, then its import errors dead-letter exactly the failing
# profiles (a transient one is imported again); a crash while a job is open
# sends nothing twice and loses nothing; an audience in a list (imported
# with the list, removed by the profile id the job's profiles gave).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $kl = start_emulator('klaviyo', '--api-key', 'pk_test_0123456789abcdef', '--list', 'Y6nRLr',
	'--job-steps', '3');
my $node = new_retl_node('klaviyo', extra_conf => "retl.job_check_max_ms = 400\n");
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }
sub profiles { return { map { lc($_->{email} // '') => $_ } values %{ $kl->get->{profiles} } }; }

my $url = $kl->url;
psql(qq{CREATE EXTENSION retl;
	SET log_statement = 'none'; SELECT retl_set_secret('kl', 'pk_test_0123456789abcdef');
	SELECT retl_create_destination('kla', 'klaviyo', '$url', '{"auth": {"type": "header", "name": "Authorization",
		"value": "Klaviyo-API-Key {{secret:kl}}"}}');
	CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, first text, plan text);
	INSERT INTO people SELECT g, 'p' || g || '\@x.io', 'P' || g, 'free' FROM generate_series(1, 30) g;
	INSERT INTO people VALUES (31, 'not-an-email', 'Bad', 'free');});
is(psql(q{SELECT batch_size || ' ' || rate_limit FROM retl.destinations WHERE name = 'kla'}), '1000 2.5',
	"Klaviyo's limits are the defaults: imports of 1,000, 150 requests a minute");

# a job that stays open: its records in flight, shown, their keys held
$kl->post('/_control', { stall => JSON::PP::true, reject => ['p5@x.io'], fail_once => ['p9@x.io'] });
psql(q{SELECT retl_create_sync('people', 'people', 'kla', mapping => '{"email": "email", "first": "first_name", "plan": "plan"}')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM retl.jobs WHERE sync = 'people' AND status = 'processing'}),
	'the import is a job, shown in retl.jobs');
is(psql(q{SELECT records FROM retl.jobs WHERE sync = 'people'}), '31', 'holding the 31 records');
is(psql(q{SELECT in_flight FROM retl.sync_status WHERE sync = 'people'}), '31', 'which are in flight');
psql(q{UPDATE people SET first = 'One' WHERE id = 1});
sleep 2;
is(scalar keys %{ $kl->get->{jobs} }, 1, 'a later change of a key in the job waits for it');
is(psql(q{SELECT pending FROM retl.sync_status WHERE sync = 'people'}), '1', 'queued');

# a crash while the job is open: it is checked again, nothing sent again
$node->stop('immediate');
$node->start;
ok($node->poll_query_until('postgres', q{SELECT checks > 0 FROM retl.jobs WHERE sync = 'people'}), 'after a crash the job is checked again');
is(scalar keys %{ $kl->get->{jobs} }, 1, 'and not sent again');
is(psql(q{SELECT in_flight FROM retl.sync_status WHERE sync = 'people'}), '31', 'its records still in flight');

$kl->post('/_control', { stall => JSON::PP::false });
ok(drained('people'), 'the job completed and every record was settled');
my $p = profiles();
is(scalar(grep { /\@x\.io$/ } keys %$p), 29, 'the valid profiles are in Klaviyo');
is($p->{'p1@x.io'}{first_name}, 'One', 'with the change that waited for the job');
is($p->{'p2@x.io'}{properties}{plan}, 'free', 'other fields as properties');
ok(exists $p->{'p9@x.io'}, 'the profile Klaviyo failed once was imported again');
is(psql(q{SELECT string_agg(key::text, ' ' ORDER BY key::text) FROM retl.dead_letters WHERE sync = 'people'}),
	'{"id": 31} {"id": 5}', 'exactly the two refused profiles are dead-lettered');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'people'
	AND last_error LIKE 'Klaviyo refused the profile: invalid: %'}), '2', 'each with Klaviyo\'s error');
my $jobs = $kl->get->{jobs};
ok((grep { $_->{checks} >= 3 } values %$jobs) >= 1, 'a job took several status checks');
is(psql(q{SELECT count(*) FROM retl.jobs}), '0', 'no job is left open');
my $st = $kl->get;
is_deeply([ keys %{ $st->{revisions} } ], ['2024-10-15'], 'every request named its revision');
is_deeply([ keys %{ $st->{content_types} } ], ['application/vnd.api+json'], 'and JSON:API');
is($st->{limited}, 0, 'never over Klaviyo\'s rate');

# a deleted row: Klaviyo keeps the profile, nothing is sent
my $requests = $kl->get->{requests};
psql(q{DELETE FROM people WHERE id = 7});
ok(drained('people'), 'the delete left the queue');
is($kl->get->{requests}, $requests, 'without a request');
ok(exists profiles()->{'p7@x.io'}, 'the profile stays');

# an audience in a list
psql(q{CREATE TABLE buyers (email text PRIMARY KEY, spend int);
	INSERT INTO buyers VALUES ('p1@x.io', 900), ('new@x.io', 800), ('small@x.io', 5);
	SELECT retl_create_audience('vip', 'SELECT email FROM buyers WHERE spend > 500', '{email}', schedule => 'manual');
	SELECT retl_create_sync('vip_list', 'audience:vip', 'kla', mode => 'mirror', options => '{"list_id": "Y6nRLr"}');
	SELECT retl_refresh_audience('vip');});
my $list = sub { my $s = $kl->get; [ sort map { $s->{profiles}{$_}{email} } @{ $s->{lists}{Y6nRLr} } ] };
ok(wait_for(sub { @{ $list->() } == 2 }, 60), 'the audience\'s members are in the list');
is_deeply($list->(), [ 'new@x.io', 'p1@x.io' ], 'both, imported with the list');
ok(drained('vip_list'), 'the list sync drained');
is(psql(q{SELECT count(*) FROM retl.remembered_ids WHERE sync = 'vip_list'}), '2', 'their profile ids are kept');
psql(q{UPDATE buyers SET spend = 1 WHERE email = 'p1@x.io'; UPDATE buyers SET spend = 999 WHERE email = 'small@x.io';
	SELECT retl_refresh_audience('vip');});
ok(wait_for(sub { join(',', @{ $list->() }) eq 'new@x.io,small@x.io' }, 60), 'who exited left the list, who entered joined it');
ok(exists profiles()->{'p1@x.io'}, 'the exited member\'s profile stays');
ok(drained('vip_list'), 'drained again');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'vip_list'}), '0', 'nothing dead-lettered');

# bad options are refused at creation, nothing created
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'people', 'kla', mode => 'mirror', schedule => 'manual')});
like($err, qr/a klaviyo sync of profiles cannot mirror/, 'mirror of profiles is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'people', 'kla', options => '{"list_id": "Y6nRLr"}')});
like($err, qr/option "list_id" is for a sync of an audience/, 'a list needs an audience');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'people', 'kla', mapping => '{"first": "first_name"}')});
like($err, qr/the sync's records carry none of email, phone_number and external_id/, 'a profile needs an identifier');
($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_destination('bad', 'klaviyo', options => '{"auth": {"type": "bearer", "token": "{{secret:kl}}"}}')});
like($err, qr/a klaviyo destination needs its private API key in the Authorization header/, 'bearer auth is refused');
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'bad'}) . psql(q{SELECT count(*) FROM retl.destinations WHERE name = 'bad'}),
	'00', 'nothing was created');
# a job that never finishes gives its records back after retl.max_job_age
psql(q{ALTER SYSTEM SET retl.max_job_age = '3s'; SELECT pg_reload_conf();});
$kl->post('/_control', { stall => JSON::PP::true });
my $made = scalar keys %{ $kl->get->{jobs} };
psql(q{UPDATE people SET first = 'Stuck' WHERE id = 20});
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE 'job % of the destination did not finish within retl.max_job_age (3 s)'
	FROM retl.sync_status WHERE sync = 'people'}), 'a job older than retl.max_job_age gives its records back');
ok(wait_for(sub { scalar keys %{ $kl->get->{jobs} } >= $made + 2 }, 30), 'and they are sent again, in a new job');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE key = '{"id": 20}'}), '0', 'not dead-lettered');

is($kl->get->{key_leaks}, 0, 'the API key only ever in the Authorization header');
unlike(slurp_file($node->logfile), qr/pk_test_0123456789abcdef/, 'and never in the server log');

done_testing();
