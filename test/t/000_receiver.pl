# Tests of test/receiver.py and the RetlTest receiver helpers alone; needs
# no PostgreSQL server.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../perl";

use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(time);
use Test::More;

use RetlTest;

my $json = JSON::PP->new->utf8->canonical;

# A fresh client per delivery so that a reset connection is never reused.
sub deliver
{
	my ($r, $path, $body, %headers) = @_;
	my $content = ref $body ? $json->encode($body) : $body;
	return HTTP::Tiny->new(timeout => 10)->request(
		'POST',
		$r->url($path),
		{
			content => $content,
			headers => { 'Content-Type' => 'application/json', %headers }
		});
}

my $r = start_receiver();
like($r->port, qr/^\d+$/, 'receiver reports its port');
ok($r->port > 0, 'port is not 0');
is($r->url('/hook'), 'http://127.0.0.1:' . $r->port . '/hook', 'url()');

# Plain delivery: recorded with lower-cased headers and parsed JSON body.
my $payload = { records => [ { id => 1, op => 'INSERT' }, { id => 2, op => 'UPDATE' } ] };
my $res = deliver($r, '/hook', $payload, 'X-Retl-Test' => 'abc');
is($res->{status}, 200, 'delivery answered 200');
is_deeply($json->decode($res->{content}), { ok => JSON::PP::true }, 'body is {"ok":true}');
ok(defined $res->{headers}{'content-length'}, 'response has Content-Length');

my $reqs = $r->requests;
is(scalar @$reqs, 1, 'one delivery recorded');
my $d = $reqs->[0];
is($d->{seq}, 1, 'seq starts at 1');
is($d->{method}, 'POST', 'method recorded');
is($d->{path}, '/hook', 'path recorded');
is($d->{status}, 200, 'status recorded');
is($d->{headers}{'x-retl-test'}, 'abc', 'custom header recorded, lower-cased');
is($d->{headers}{'content-type'}, 'application/json', 'content-type recorded');
is_deeply($d->{body}, $payload, 'JSON body parsed');
ok(abs($d->{t} - time) < 60, 'timestamp is a unix time');

# Non-JSON bodies are kept as raw strings.
deliver($r, '/raw', 'not json {');
is($r->requests->[-1]{body}, 'not json {', 'raw body kept as string');

# Two 503s with Retry-After, then back to 200.
$r->control({ status => 503, count => 2, retry_after => '1' });
for my $i (1 .. 2)
{
	my $res = deliver($r, '/hook', { records => [ { id => 100 + $i } ] });
	is($res->{status}, 503, "failing delivery $i gets 503");
	is($res->{headers}{'retry-after'}, '1', "failing delivery $i has Retry-After: 1");
}
$res = deliver($r, '/hook', { records => [ { id => 103 } ] });
is($res->{status}, 200, 'third delivery gets 200 again');
ok(!exists $res->{headers}{'retry-after'}, 'no Retry-After on success');

# Rules are consumed in order; reset drops the connection without a response.
$r->control({ reset => 1, count => 1 }, { status => 500, count => 1, body => 'boom' });
$res = deliver($r, '/hook', { records => [ { id => 200 } ] });
is($res->{status}, 599, 'reset gives a client-side connection error');
$res = deliver($r, '/hook', { records => [ { id => 201 } ] });
is($res->{status}, 500, 'second rule applies next');
is($res->{content}, 'boom', 'custom response body');
is(deliver($r, '/hook', { records => [] })->{status}, 200, 'rules exhausted');
is($r->requests->[-3]{status}, 0, 'reset delivery recorded with status 0');

# count -1 applies forever until the rules are cleared.
$r->control({ status => 502, count => -1 });
is(deliver($r, '/hook', '{}')->{status}, 502, "count -1 rule, delivery $_") for 1 .. 3;
$r->control();
is(deliver($r, '/hook', '{}')->{status}, 200, 'empty rule list clears rules');

# delay_ms delays the answer; status defaults to 200.
$r->control({ delay_ms => 300, count => 1 });
my $t0 = time;
is(deliver($r, '/slow', '{}')->{status}, 200, 'delayed delivery gets 200');
ok(time - $t0 >= 0.29, 'delivery was delayed');

# Stats and the 2xx filter.  The 2xx ones so far: /hook (2 records), /raw,
# /hook (1), /hook (0), /hook {} and /slow {}.
my $all = $r->requests;
my $ok = $r->requests(ok => 1);
is(scalar @$all, 13, 'all deliveries recorded, failed ones included');
is(scalar @$ok, 6, 'ok => 1 returns only 2xx deliveries');
is_deeply([ map { $_->{seq} } @$all ], [ 1 .. 13 ], 'requests in arrival order');
is_deeply($r->stats, { count => 13, ok => 6, records => 3, max_concurrent => 1 }, '/_stats counts');
is_deeply([ map { $_->{id} } @{ delivered_records($r) } ],
	[ 1, 2, 103 ], 'delivered_records flattens 2xx records in order');

# Keep-alive: two requests on one raw connection, each answered with a
# Content-Length framed response.
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $r->port)
  or die "connect: $!";
for my $i (1 .. 2)
{
	my $body = qq({"records":[{"id":$i}]});
	print $sock "POST /ka HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	  . "Content-Length: " . length($body) . "\r\n\r\n$body";
	my $status = <$sock>;
	my $len;
	while (my $line = <$sock>)
	{
		last if $line eq "\r\n";
		$len = $1 if $line =~ /^Content-Length:\s*(\d+)/i;
	}
	read($sock, my $resp, $len // 0);
	like($status, qr{^HTTP/1\.1 200}, "keep-alive request $i answered");
	is($resp, '{"ok": true}', "keep-alive response $i body");
}
close $sock;

# wait_for returns the condition's value, or false on timeout.
is(wait_for(sub { $r->stats->{count} }, 5), 15, 'wait_for returns the true value');
$t0 = time;
ok(!wait_for(sub { 0 }, 0.3), 'wait_for times out');
ok(time - $t0 >= 0.3, 'wait_for waited');

# Some throughput: the handler must keep up with a busy worker.
my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 10);
$t0 = time;
my $n_ok = grep { $http->post($r->url('/bulk'), { content => '{"records":[1]}' })->{success} }
  1 .. 300;
my $elapsed = time - $t0;
is($n_ok, 300, '300 sequential deliveries succeeded');
note(sprintf('%.0f deliveries/s', 300 / $elapsed));
ok($elapsed < 10, '300 deliveries within 10 s');

# The log has one JSON line per delivery.
open(my $fh, '<', $r->log_file) or die "open log: $!";
my @lines = map { $json->decode($_) } <$fh>;
close $fh;
is(scalar @lines, 315, 'log has one line per delivery');
is($lines[0]{path}, '/hook', 'log line is a recorded delivery');

# Clearing forgets deliveries and rules.
$r->control({ status => 500, count => -1 });
$r->clear;
is_deeply($r->requests, [], 'clear() forgets deliveries');
is(deliver($r, '/hook', '{}')->{status}, 200, 'clear() drops rules');

my $pid = $r->pid;
my $url = $r->url('/hook');
$r->stop;
ok(!kill(0, $pid), 'receiver process is gone after stop()');
is(HTTP::Tiny->new(timeout => 2)->get($url)->{status}, 599, 'port is closed');

done_testing();
