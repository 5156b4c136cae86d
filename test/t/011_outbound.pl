# Outbound requests: private and other refused addresses (at creation, and
# after DNS resolution through a resolver override the test controls),
# retl.allowed_hosts, redirects (off by default; followed hops checked
# again), oversized responses, and TLS (self-signed, wrong host, a CA
# given by retl.ca_file, verification off by a superuser only).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(hmac_sha256_base64);
use MIME::Base64 qw(decode_base64 encode_base64);

# A self-signed certificate for the host name "localhost" only.
my $tls = PostgreSQL::Test::Utils::tempdir('tls');
self_signed_cert($tls);

my $r = start_receiver(tls_cert => "$tls/cert.pem", tls_key => "$tls/key.pem");
my $port = $r->port;
# the default: private destinations refused
my $node = new_retl_node('outbound', extra_conf => "retl.allow_private_destinations = off\n");

sub psql { return $node->safe_psql('postgres', $_[0]); }

sub set_conf
{
	my ($setting) = @_;
	my ($name) = $setting =~ /^\s*(\S+)/;
	psql("ALTER SYSTEM SET $setting");
	psql('SELECT pg_reload_conf()');
	# new sessions see it once the postmaster has reloaded ...
	$node->poll_query_until('postgres',
		qq{SELECT current_setting('$name') = (SELECT setting FROM pg_file_settings
		   WHERE name = '$name' ORDER BY seqno DESC LIMIT 1)})
	  or die "$name was not reloaded";
	# ... and the worker, woken by the signal, at once; give it a moment
	sleep 0.3;
}

sub failing_with
{
	my ($sync, $pattern) = @_;
	return $node->poll_query_until('postgres',
		qq{SELECT state = 'failing' AND last_error ~ '$pattern'
		   FROM retl.sync_status WHERE sync = '$sync'});
}

sub drained
{
	my ($sync) = @_;
	return $node->poll_query_until('postgres',
		"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$sync'");
}

sub hits
{
	my ($path) = @_;
	return scalar grep { $_->{path} eq $path } @{ $r->requests };
}

psql(q{CREATE EXTENSION retl;
	CREATE TABLE t (id int PRIMARY KEY, v text);});

# 1. Refused at creation: addresses written in the URL, in every form the
# resolver accepts.  Nothing is created.
my @refused = (
	'127.0.0.1', '127.1', '127.255.255.254', '0x7f000001', '2130706433',
	'0177.0.0.1', '017700000001', '0x7f.0.0.1', '10.0.0.1', '10.255.255.255',
	'0x0a000001', '167772161', '172.16.0.1', '172.31.255.255', '192.168.1.1',
	'3232235777', '0300.0250.0.1', '169.254.169.254', '169.254.0.1', '100.64.0.1',
	'100.127.255.254', '0.0.0.0', '0', '224.0.0.1', '255.255.255.255',
	'[::1]', '[::]', '[0:0:0:0:0:0:0:1]', '[fc00::1]', '[fd12:3456::1]',
	'[fe80::1]', '[febf:ffff::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]',
	'[::ffff:10.0.0.1]', '[::ffff:169.254.169.254]', '[::ffff:192.168.0.1]',
	'[::127.0.0.1]', '[64:ff9b::a9fe:a9fe]', '[2002:7f00:1::]', '[2002:a00:1::1]',
	'[ff02::1]');
my $n = 0;
for my $host (@refused)
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT retl_create_destination('d$n', 'webhook', 'http://$host:$port/x')");
	$n++;
	ok($ret != 0 && $err =~ /destination url not allowed: \S+ is an? .*address/,
		"refused at creation: $host")
	  or diag($err);
}
is(psql(q{SELECT count(*) FROM retl.destinations}), '0', 'none of them was created');
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT retl_create_destination('bad', 'webhook', 'http://[::1:$port/x')");
like($err, qr/destination url does not parse/, 'a URL that does not parse: clear error');

# Public addresses and names are accepted (nothing is sent to them here).
psql(q{SELECT retl_create_destination('pub', 'webhook', 'https://93.184.215.14/x');
	SELECT retl_create_destination('pubname', 'webhook', 'https://hooks.example.com/x');
	SELECT retl_drop_destination('pub'); SELECT retl_drop_destination('pubname');});
pass('public addresses and names accepted');

# 2. Names resolving to refused addresses: checked on the address the
# connection is opened to.  The resolver override (a test-only setting)
# plays the DNS server, rebinding included.
set_conf(qq{retl.test_resolve = 'loop.test:$port:127.0.0.1, meta.test:$port:169.254.169.254, mapped.test:$port:[::ffff:127.0.0.1], v6.test:$port:[::1], ok.test:$port:127.0.0.1, bad.test:$port:127.0.0.1, localhost:} . $r->tls_port . q{:127.0.0.1'});
my %names = (
	'loop.test' => 'connecting to 127.0.0.1 refused: it is a loopback address',
	'meta.test' => 'connecting to 169.254.169.254 refused: it is a link-local address',
	'mapped.test' => 'connecting to ::ffff:127.0.0.1 refused: it is a loopback address',
	'v6.test' => 'connecting to ::1 refused: it is a loopback address');
for my $name (sort keys %names)
{
	(my $id = $name) =~ s/\W/_/g;
	psql(qq{SELECT retl_create_destination('$id', 'webhook', 'http://$name:$port/$id');
		SELECT retl_create_sync(name => '$id', source => 't', destination => '$id');});
}
psql(q{INSERT INTO t VALUES (1, 'one')});
for my $name (sort keys %names)
{
	(my $id = $name) =~ s/\W/_/g;
	my $pattern = quotemeta($names{$name});
	$pattern =~ s/'/''/g;
	ok(failing_with($id, $pattern), "$name: refused after resolution");
}
is(hits('/loop_test') + hits('/meta_test') + hits('/mapped_test') + hits('/v6_test'), 0,
	'nothing reached the receiver');

# DNS rebinding: the same name later resolves to a public address and back;
# each connection is judged on its own address.  Turning the check off lets
# the queued change through, with no restart.
set_conf(q{retl.allow_private_destinations = on});
ok(drained('loop_test'), 'allow_private_destinations = on (reload): delivered');
is(hits('/loop_test'), 1, 'the receiver got it');
psql(q{SELECT retl_drop_sync(s) FROM unnest(ARRAY['loop_test', 'meta_test', 'mapped_test', 'v6_test']) s});

# 3. retl.allowed_hosts: at creation and on every request.
set_conf(q{retl.allowed_hosts = 'ok.test, *.good.test, localhost'});
($ret, $out, $err) = $node->psql('postgres',
	"SELECT retl_create_destination('other', 'webhook', 'http://bad.test:$port/x')");
like($err, qr/host "bad\.test" is not in retl\.allowed_hosts/, 'host outside allowed_hosts refused at creation');
($ret, $out, $err) = $node->psql('postgres',
	"SELECT retl_create_destination('other', 'webhook', 'http://good.test.evil:$port/x')");
like($err, qr/not in retl\.allowed_hosts/, 'a pattern matches whole labels only');
psql(qq{SELECT retl_create_destination('sub', 'webhook', 'http://a.good.test:$port/sub')});
pass('a subdomain of a *. pattern is allowed');
psql(q{SELECT retl_drop_destination('sub')});

# 4. Redirects: not followed by default (dead-lettered, the error says so);
# with follow_redirects every hop is checked again.
psql(qq{SELECT retl_create_destination('nofollow', 'webhook', 'http://ok.test:$port/nofollow');
	SELECT retl_create_destination('follow', 'webhook', 'http://ok.test:$port/follow',
		options => '{"follow_redirects": true}');
	SELECT retl_create_sync(name => 'nofollow', source => 't', destination => 'nofollow',
		options => '{"backfill": false}');
	SELECT retl_create_sync(name => 'follow', source => 't', destination => 'follow',
		options => '{"backfill": false}');});
$r->control(
	{ path => '/nofollow', status => 307, location => "http://ok.test:$port/landed", count => -1 },
	{ path => '/follow', status => 307, location => "http://ok.test:$port/landed", count => 1 },
	{ path => '/follow', status => 307, location => "http://bad.test:$port/evil", count => 1 },
	{ path => '/follow', status => 307, location => "http://169.254.169.254/latest/meta-data/", count => -1 });
psql(q{INSERT INTO t VALUES (2, 'two')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM retl.dead_letters WHERE sync = 'nofollow'}),
	'a redirect is not followed by default: dead-lettered');
like(psql(q{SELECT last_error FROM retl.sync_status WHERE sync = 'nofollow'}), qr/redirects are not followed/, 'and the error says so');
ok($node->poll_query_until('postgres', q{SELECT delivered >= 1 FROM retl.sync_status WHERE sync = 'follow'}),
	'follow_redirects: an allowed hop is followed');
is(hits('/landed'), 1, 'the POST landed once (not on /nofollow\'s account)');
psql(q{INSERT INTO t VALUES (3, 'three')});
ok(failing_with('follow', 'request to host "bad\.test" refused: it is not in retl\.allowed_hosts'),
	'a hop to a host outside allowed_hosts is refused');
ok(failing_with('follow', 'request to host "169\.254\.169\.254" refused'),
	'a hop to the metadata address is refused');
is(hits('/evil'), 0, 'the refused hop was never requested');
psql(q{SELECT retl_drop_sync('follow'); SELECT retl_drop_sync('nofollow');});
set_conf(q{retl.allowed_hosts = '*'});

# 5. Oversized responses fail the request (retried), memory stays bounded.
set_conf(q{retl.max_response_size = '64kB'});
psql(qq{SELECT retl_create_destination('big', 'webhook', 'http://ok.test:$port/big');
	SELECT retl_create_sync(name => 'big', source => 't', destination => 'big',
		options => '{"backfill": false}');});
$r->control({ path => '/big', status => 200, body => { repeat => 'x', times => 1_000_000 }, count => -1 });
psql(q{INSERT INTO t VALUES (4, 'four')});
ok(failing_with('big', 'response is longer than retl\.max_response_size \(64 kB\)'), 'an oversized response fails the request');
$r->control();
ok(drained('big'), 'and the retry goes through once the response is small');
psql(q{SELECT retl_drop_sync('big')});
set_conf(q{retl.max_response_size = '1MB'});

# 5b. No error leaves a libcurl callback: an error in the pre-request
# check (memory short parsing the URL or retl.allowed_hosts; here
# retl.test_fail) refuses the request with its message, and the worker
# goes on (the error went through libcurl's frames to the worker's top:
# FATAL, and the worker started again, at every try); memory short while
# reading a response ends that transfer with an error (simulated).
psql(qq{SELECT retl_create_destination('cb', 'webhook', 'http://ok.test:$port/cb');
	SELECT retl_create_sync(name => 'cb', source => 't', destination => 'cb',
		options => '{"backfill": false}');});
my $worker = psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'});
set_conf(q{retl.test_fail = 'prereq:cb'});
psql(q{INSERT INTO t VALUES (40, 'forty')});
ok(failing_with('cb', 'request refused: prereq of sync "cb" failed by retl\.test_fail'),
	'an error in the pre-request check refuses the request');
is(psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'}), $worker,
	'the worker goes on');
is(hits('/cb'), 0, 'nothing sent');
$r->control({ path => '/cb', status => 200, body => { repeat => 'y', times => 5000 }, count => -1 });
set_conf(q{retl.test_fail = 'response-memory:cb'});
ok(failing_with('cb', 'out of memory reading the response'), 'memory short reading a response fails the request');
is(psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'}), $worker,
	'the worker goes on');
$r->control();
set_conf(q{retl.test_fail = ''});
ok(drained('cb'), 'the retry goes through once the errors are gone');
is(psql(q{SELECT delivered || '/' || dead FROM retl.sync_status WHERE sync = 'cb'}), '1/0', 'delivered');
psql(q{SELECT retl_drop_sync('cb')});

# 6. TLS.  The receiver's certificate is self-signed, for "localhost".
my $tls_port = $r->tls_port;
psql(qq{SELECT retl_create_destination('tls', 'webhook', 'https://localhost:$tls_port/tls');
	SELECT retl_create_sync(name => 'tls', source => 't', destination => 'tls',
		options => '{"backfill": false}');
	SELECT retl_create_destination('tlsip', 'webhook', 'https://127.0.0.1:$tls_port/tlsip');
	SELECT retl_create_sync(name => 'tlsip', source => 't', destination => 'tlsip',
		options => '{"backfill": false}');});
psql(q{INSERT INTO t VALUES (5, 'five')});
ok(failing_with('tls', 'certificate'), 'self-signed certificate: refused, the error names the certificate');
like(psql(q{SELECT last_error FROM retl.sync_status WHERE sync = 'tls'}), qr/self.signed|certificate verify|issuer/i,
	'and says why');
set_conf(qq{retl.ca_file = '$tls/cert.pem'});
ok(drained('tls'), 'with retl.ca_file naming its authority: delivered');
ok(failing_with('tlsip', 'subject|name|match'), 'a certificate for another host name: refused');
like(psql(q{SELECT last_error FROM retl.sync_status WHERE sync = 'tlsip'}), qr/127\.0\.0\.1/,
	'the error names the host');
is(hits('/tlsip'), 0, 'nothing sent over the unverified connection');

# Verification off: a superuser's per-destination choice only.
psql(q{CREATE ROLE alice LOGIN IN ROLE retl_admin;});
($ret, $out, $err) = $node->psql('postgres',
	qq{SET ROLE alice; SELECT retl_create_destination('insecure', 'webhook', 'https://localhost:$tls_port/i',
		options => '{"tls_verify": false}')});
like($err, qr/only a superuser may turn off TLS verification/, 'tls_verify false: refused to a non-superuser');
set_conf(q{retl.ca_file = ''});
psql(qq{SELECT retl_create_destination('insecure', 'webhook', 'https://localhost:$tls_port/insecure',
		options => '{"tls_verify": false}');
	SELECT retl_create_sync(name => 'insecure', source => 't', destination => 'insecure',
		options => '{"backfill": false}');
	INSERT INTO t VALUES (6, 'six');});
ok(drained('insecure'), 'tls_verify false (set by a superuser): delivered without verification');

# 7. Standard Webhooks signatures, checked as a receiver would; a secret
# replaced takes effect at the next request.
sub signature_ok
{
	my ($req, $key) = @_;
	my $h = $req->{headers};
	my $sig = hmac_sha256_base64("$h->{'webhook-id'}.$h->{'webhook-timestamp'}.$req->{raw}", $key);
	$sig .= '=' while length($sig) % 4;
	return ($h->{'webhook-signature'} // '') eq "v1,$sig"
	  && $h->{'webhook-id'} eq $h->{'idempotency-key'}
	  && abs($h->{'webhook-timestamp'} - $req->{t}) < 60;
}
psql(q{SET log_statement = 'none'; SELECT retl_set_secret('whkey', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');});
psql(qq{SELECT retl_create_destination('signed', 'webhook', 'http://ok.test:$port/signed',
		options => '{"signing_secret": "whkey", "batch_size": 10}');
	SELECT retl_create_sync(name => 'signed', source => 't', destination => 'signed');});
ok(drained('signed'), 'signed requests delivered');
my @signed = grep { $_->{path} eq '/signed' } @{ $r->requests };
my @bad = grep { !signature_ok($_, decode_base64('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')) } @signed;
ok(@signed && !@bad, 'every request carries a valid webhook-signature, webhook-id and webhook-timestamp')
  or diag(explain($bad[0]));
my $new_key = 'a replacement key, 32 bytes long';
psql(q{SET log_statement = 'none'; SELECT retl_set_secret('whkey', 'whsec_} . encode_base64($new_key, '') . q{');
	INSERT INTO t VALUES (7, 'seven');});
ok(drained('signed'), 'delivered after the secret was replaced');
my @after = grep { $_->{path} eq '/signed' } @{ $r->requests };
ok(signature_ok($after[-1], $new_key), 'signed with the new secret, no restart');
ok(!signature_ok($after[-1], decode_base64('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')), 'not with the old one');
unlike(slurp_file($node->logfile), qr/MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw|replacement key/,
	'no signing secret in the server log');

$node->stop;
done_testing();
