# Secrets never reach the server log, even with log_min_messages = debug5,
# log_min_error_statement = debug5 and log_statement = all (setting a
# secret is done with statement logging off for that session, as the README
# says; an error retl_set_secret raises does not log its statement), nor
# the views, errors and
# response excerpts: delivered, signed, failed and dead-lettered requests,
# a diff sync's run and preview, and a refused connection.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $r = start_receiver();
my $node = new_retl_node('secretlogs', extra_conf => qq{
log_min_messages = debug5
log_min_error_statement = debug5
log_statement = 'all'
log_error_verbosity = verbose
});
sub psql { return $node->safe_psql('postgres', $_[0]); }

my $token = 'tok-4f9c2e7a1b-SECRET';
my $sign = 'whsec_c2lnbmluZy1rZXktOTk4OC1TRUNSRVQ=';    # "signing-key-9988-SECRET"
psql(q{CREATE EXTENSION retl; CREATE TABLE t (id int PRIMARY KEY, v text);});
psql(qq{SET log_statement = 'none'; SET log_min_error_statement = 'panic';
	SELECT retl_set_secret('tok', '$token'); SELECT retl_set_secret('sig', '$sign');});
# an error in retl_set_secret does not log its statement (the server's
# log_min_error_statement is debug5 here)
my ($ret, $out, $err) = $node->psql('postgres',
	qq{SET log_statement = 'none'; SET log_min_messages = 'warning';
	SELECT retl_set_secret('bad name', 'value-of-a-bad-name-SECRET');});
like($err, qr/invalid secret name/, 'a bad secret name is refused');
# nor does a later error of the same transaction
($ret, $out, $err) = $node->psql('postgres',
	qq{SET log_statement = 'none'; SET log_min_messages = 'warning';
	SELECT retl_set_secret('later', 'value-then-an-error-SECRET'), 1 / (random() * 0)::int;});
like($err, qr/division by zero/, 'an error after a secret was set, in the same statement');
my $url = $r->url('/s');
psql(qq{SELECT retl_create_destination('d', 'webhook', '$url',
		options => '{"headers": {"Authorization": "Bearer {{secret:tok}}"},
		             "signing_secret": "sig", "max_attempts": 2}');
	SELECT retl_create_sync(name => 's', source => 't', destination => 'd');
	SELECT retl_create_sync(name => 'model', source => 'SELECT id, v FROM t', key => '{id}',
		destination => 'd', schedule => 'manual');});

# delivered and signed
psql(q{INSERT INTO t VALUES (1, 'one')});
ok(wait_for(sub { grep { $_->{path} eq '/s' && $_->{status} == 200 } @{ $r->requests } }, 30),
	'delivered');
is((grep { $_->{path} eq '/s' } @{ $r->requests })[0]{headers}{authorization}, "Bearer $token",
	'the receiver got the secret (it is used)');

# refused with the secret echoed in the answer: retried, then dead-lettered
$r->control({ status => 500, count => -1, body => "denied for Bearer $token (key $sign)" });
psql(q{INSERT INTO t VALUES (2, 'two')});
ok($node->poll_query_until('postgres', q{SELECT dead = 1 FROM retl.sync_status WHERE sync = 's'}),
	'dead-lettered after its attempts');
$r->control();

# a diff run and a preview
psql(q{SELECT retl_run_sync('model')});
ok($node->poll_query_until('postgres', q{SELECT last_run_status = 'succeeded' FROM retl.sync_status WHERE sync = 'model'}),
	'diff run succeeded');
my $preview = psql(q{SELECT * FROM retl_preview('model')});

# a refused connection (the secret is in a header it would have sent)
psql(q{ALTER SYSTEM SET retl.allow_private_destinations = off; SELECT pg_reload_conf();});
sleep 0.5;
psql(q{INSERT INTO t VALUES (3, 'three')});
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE '%refused%' FROM retl.sync_status WHERE sync = 's'}),
	'a refused connection');

my $seen = join "\n",
  psql(q{SELECT * FROM retl.sync_status}),
  psql(q{SELECT * FROM retl.dead_letters}),
  psql(q{SELECT * FROM retl.runs}),
  psql(q{SELECT * FROM retl.destinations}),
  $preview;
my $b64 = 'c2lnbmluZy1rZXktOTk4OC1TRUNSRVQ';
unlike($seen, qr/\Q$token\E|$b64|signing-key-9988/, 'no secret in views, dead letters, runs or preview');
like($seen, qr/denied for \[redacted\]/, 'the excerpt is there, redacted (the whole header value)');

$node->stop;
my $log = slurp_file($node->logfile);
ok(length($log) > 100_000, 'the server log is verbose (debug5): ' . length($log) . ' bytes');
unlike($log, qr/\Q$token\E/, 'the header secret is not in the server log');
unlike($log, qr/$b64|signing-key-9988/, 'the signing secret is not in the server log');
like($log, qr/invalid secret name/, 'the refused call is logged');
unlike($log, qr/value-of-a-bad-name-SECRET/, 'without its statement');
like($log, qr/division by zero/, 'the later error is logged');
unlike($log, qr/value-then-an-error-SECRET/, 'without its statement either');

done_testing();
