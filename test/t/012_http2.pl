# HTTP/2: against a server that offers it over TLS (nginx from Debian's
# nginx-light, with a self-signed certificate given to retl by
# retl.ca_file), concurrent requests of a destination are multiplexed as
# streams of one connection instead of opening one connection each. nginx
# reads each body whole before answering (as webhook receivers do): with
# libcurl 7.88, a server that answers before reading the body and resets
# the stream makes the request fail (and be retried; see the README).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;

my $dir = PostgreSQL::Test::Utils::tempdir('h2');
self_signed_cert($dir);

# free ports for nginx: the HTTP/2 front and the plain back end behind it
sub free_port
{
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
	  or die "no free port: $!";
	my $p = $s->sockport;
	close $s;
	return $p;
}
my $port = free_port();
my $back = free_port();

open my $conf, '>', "$dir/nginx.conf" or die $!;
print $conf <<"EOF";
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    log_format h2 '\$server_protocol \$connection \$connection_requests \$request_method \$request_uri \$status';
    access_log $dir/access.log h2;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    # the front reads each body whole (to proxy it) before answering, as
    # a webhook receiver does
    server {
        listen 127.0.0.1:$port ssl http2;
        ssl_certificate $dir/cert.pem;
        ssl_certificate_key $dir/key.pem;
        location / {
            proxy_pass http://127.0.0.1:$back;
        }
    }
    server {
        listen 127.0.0.1:$back;
        access_log off;
        location / {
            default_type application/json;
            return 200 '{"ok":true}';
        }
    }
}
EOF
close $conf;
my $nginx_pid = fork;
die "fork: $!" unless defined $nginx_pid;
if ($nginx_pid == 0)
{
	exec('/usr/sbin/nginx', '-p', $dir, '-c', "$dir/nginx.conf", '-e', "$dir/error.log")
	  or POSIX::_exit(127);
}
END { kill 'TERM', $nginx_pid if $nginx_pid; }
my $up = 0;
for (1 .. 100)
{
	last if $up = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port);
	sleep 0.1;
}
ok($up, 'nginx with HTTP/2 over TLS is up');

my $node = new_retl_node('http2', extra_conf => "retl.ca_file = '$dir/cert.pem'\n");
sub psql { return $node->safe_psql('postgres', $_[0]); }

psql(qq{CREATE EXTENSION retl;
	CREATE TABLE t (id int PRIMARY KEY);
	SELECT retl_create_destination('h2', 'webhook', 'https://localhost:$port/h2',
		options => '{"max_concurrency": 8}');
	SELECT retl_create_sync(name => 'h2', source => 't', destination => 'h2');
	INSERT INTO t SELECT generate_series(1, 400);});
ok($node->poll_query_until('postgres',
	q{SELECT delivered = 400 AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = 'h2'}),
	'400 one-record requests delivered');
is(psql(q{SELECT failed_attempts FROM retl.sync_status WHERE sync = 'h2'}), '0', 'no failed attempt');

my @lines = grep { m{ /h2 } } split /\n/, slurp_file("$dir/access.log");
is(scalar @lines, 400, 'nginx logged each request once');
is(scalar(grep { !/^HTTP\/2\.0 / } @lines), 0, 'every request went over HTTP/2');
my %conns;
my $most = 0;
for (@lines)
{
	my (undef, $conn, $nreq) = split / /;
	$conns{$conn}++;
	$most = $nreq if $nreq > $most;
}
ok(keys %conns <= 2, 'on one connection (at most two): ' . scalar(keys %conns))
  or diag(join ', ', map { "$_: $conns{$_}" } sort keys %conns);
ok($most >= 200, "one connection carried $most requests as streams");

$node->stop;
kill 'TERM', $nginx_pid;
waitpid $nginx_pid, 0;
$nginx_pid = 0;
done_testing();
