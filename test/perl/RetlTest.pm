# Helpers for retl TAP tests.
#
#   use lib 'test/perl';
#   use RetlTest;
#
#   my $r    = start_receiver();            # test/receiver.py on 127.0.0.1
#   my $node = new_retl_node('main');       # started cluster with retl preloaded
#   ...
#   ok(wait_for(sub { @{ delivered_records($r) } >= 3 }, 30), 'delivered');

package RetlTest;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use File::Temp ();
use HTTP::Tiny;
use JSON::PP;
use POSIX ();
use Scalar::Util qw(refaddr weaken);
use Time::HiRes qw(sleep time);

our @EXPORT = qw(start_receiver start_emulator delivered_records records_at wait_for new_retl_node
  hold_staging self_signed_cert counted_changes never_sent_change marked);

our $PYTHON = '/usr/bin/python3';

# Server binaries for new_retl_node when initdb is not already on PATH.
our $PG_BINDIR = $ENV{PG_BINDIR} // '/usr/lib/postgresql/15/bin';

# Absolute path: tests may chdir, and may run from a copy of the repo.
our $RECEIVER_PY =
  File::Spec->rel2abs(
	File::Spec->catfile(dirname(__FILE__), File::Spec->updir, 'receiver.py'));

# Load the PostgreSQL TAP modules at compile time when they are on @INC:
# PostgreSQL::Test::Utils sets itself up in an INIT block, which does not run
# if the module is first required at run time.  The receiver helpers work
# without them.
our $PG_LOAD_ERROR;

BEGIN
{
	$PG_LOAD_ERROR = $@
	  unless eval { require PostgreSQL::Test::Cluster; 1 };
}

# Receivers still running, stopped in END even if a test dies early.
my %live_receivers;

END
{
	$_->stop for grep { defined } values %live_receivers;
}

# Start test/receiver.py on a free port and return a RetlTest::Receiver.
sub start_receiver
{
	my (%opts) = @_;

	# Under PostgreSQL::Test::Utils the directory lands in tmp_check and is
	# kept when a test fails, which keeps receiver.log around for debugging.
	no warnings 'once';
	my $dir =
	  defined $PostgreSQL::Test::Utils::tmp_check
	  ? PostgreSQL::Test::Utils::tempdir('receiver')
	  : File::Temp::tempdir('retl_receiver_XXXX', TMPDIR => 1, CLEANUP => 1);
	$dir = File::Spec->rel2abs($dir);    # tests may chdir later
	my $port_file = "$dir/port";
	my $log_file = "$dir/receiver.log";
	my $err_file = "$dir/receiver.stderr";

	my @cmd = (
		$PYTHON, $RECEIVER_PY,
		'--port' => 0,
		'--port-file' => $port_file,
		'--quiet',
		'--log' => $log_file);
	# tls_cert, tls_key: also answer deliveries over TLS on another port
	push @cmd, '--tls-cert' => $opts{tls_cert}, '--tls-key' => $opts{tls_key},
	  '--tls-port-file' => "$dir/tls_port"
	  if $opts{tls_cert};

	my $pid = fork;
	croak "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $err_file);
		open(STDERR, '>&', \*STDOUT);
		exec(@cmd) or print STDERR "exec $cmd[0]: $!\n";
		# Never run the parent's END blocks (they would stop its nodes).
		POSIX::_exit(127);
	}

	my $self = bless {
		pid => $pid,
		owner => $$,
		dir => $dir,
		log_file => $log_file,
		stderr_file => $err_file,
		http => HTTP::Tiny->new(timeout => 10, keep_alive => 1),
	  },
	  'RetlTest::Receiver';
	$live_receivers{ refaddr $self} = $self;
	weaken($live_receivers{ refaddr $self});

	my $deadline = time + ($opts{timeout} // 10);
	until (-s $port_file)
	{
		if (waitpid($pid, POSIX::WNOHANG()) == $pid)
		{
			$self->{pid} = undef;
			croak "receiver exited early (status $?): " . $self->_stderr;
		}
		if (time > $deadline)
		{
			$self->stop;
			croak "receiver did not write $port_file in time: " . $self->_stderr;
		}
		sleep 0.05;
	}

	open(my $fh, '<', $port_file) or croak "open $port_file: $!";
	my $port = <$fh>;
	close $fh;
	chomp $port;
	croak "bad port file content '$port'" unless $port =~ /^\d+$/;
	$self->{port} = $port;
	if ($opts{tls_cert})
	{
		open(my $tfh, '<', "$dir/tls_port") or croak "open $dir/tls_port: $!";
		my $tls_port = <$tfh>;
		close $tfh;
		chomp $tls_port;
		$self->{tls_port} = $tls_port;
	}
	return $self;
}

# Start an API emulator (test/emulators/NAME.py, arguments after it) on a
# free port on 127.0.0.1; returns a RetlTest::Emulator.
sub start_emulator
{
	my ($name, @args) = @_;
	my $script = File::Spec->rel2abs(
		File::Spec->catfile(dirname(__FILE__), File::Spec->updir, 'emulators', "$name.py"));
	no warnings 'once';
	my $dir =
	  defined $PostgreSQL::Test::Utils::tmp_check
	  ? PostgreSQL::Test::Utils::tempdir($name)
	  : File::Temp::tempdir("retl_${name}_XXXX", TMPDIR => 1, CLEANUP => 1);
	$dir = File::Spec->rel2abs($dir);
	my $port_file = "$dir/port";
	my $pid = fork;
	croak "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', "$dir/stderr");
		open(STDERR, '>&', \*STDOUT);
		exec($PYTHON, $script, '--port-file', $port_file, @args) or print STDERR "exec: $!\n";
		POSIX::_exit(127);
	}
	my $self = bless { pid => $pid, owner => $$, dir => $dir, stderr_file => "$dir/stderr",
		http => HTTP::Tiny->new(timeout => 10), args => [@args], script => $script },
	  'RetlTest::Emulator';
	$live_receivers{ refaddr $self} = $self;
	weaken($live_receivers{ refaddr $self});
	my $deadline = time + 10;
	until (-s $port_file)
	{
		croak "$name did not start: " . RetlTest::Receiver::_stderr($self) if time > $deadline;
		sleep 0.05;
	}
	open(my $fh, '<', $port_file) or croak "open $port_file: $!";
	my $port = <$fh>;
	close $fh;
	chomp $port;
	$self->{port} = $port;
	return $self;
}

# Every element of body->{records} over the 2xx deliveries, in arrival order.
sub delivered_records
{
	my ($r) = @_;
	my @records;
	for my $d (@{ $r->requests(ok => 1) })
	{
		my $body = $d->{body};
		next unless ref $body eq 'HASH' && ref $body->{records} eq 'ARRAY';
		push @records, @{ $body->{records} };
	}
	return \@records;
}

# The records of the 2xx deliveries the receiver $r took at $path, in
# arrival order.
sub records_at
{
	my ($r, $path) = @_;
	return [ map { @{ $_->{body}{records} } }
		  grep { $_->{path} eq $path } @{ $r->requests(ok => 1) } ];
}

# Poll $cond every 0.1 s until it returns true or $timeout seconds pass;
# returns the last value $cond returned.
sub wait_for
{
	my ($cond, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	while (1)
	{
		my $v = $cond->();
		return $v if $v || time >= $deadline;
		sleep 0.1;
	}
}

# Run the SQL statements of @steps (each in a transaction of its own; a
# code reference is called, to wait for something in between), then wait
# for $node's sync $sync to have accounted for a record more (delivered or
# dead-lettered) and drained.  Returns "dead letters added|records
# delivered" meanwhile.
sub counted_changes
{
	my ($node, $sync, @steps) = @_;
	my $counts = "SELECT dead || '|' || delivered FROM retl.sync_status WHERE sync = '$sync'";
	my ($dead, $delivered) = split /\|/, $node->safe_psql('postgres', $counts);

	ref $_ eq 'CODE' ? $_->() : $node->safe_psql('postgres', $_) for @steps;
	$node->poll_query_until('postgres', "SELECT pending + in_flight = 0 AND dead + delivered > $dead + $delivered"
		  . " FROM retl.sync_status WHERE sync = '$sync'")
	  or croak "the queue of $sync did not drain";
	my ($dead2, $delivered2) = split /\|/, $node->safe_psql('postgres', $counts);
	return ($dead2 - $dead) . '|' . ($delivered2 - $delivered);
}

# The same, with the steps run while the sync is paused: a key's changes
# it never sent, coalesced (a row inserted and deleted: the delete of a
# key the destination never got).
sub never_sent_change
{
	my ($node, $sync, @steps) = @_;
	return counted_changes($node, $sync, "SELECT retl_pause_sync('$sync')", @steps,
		"SELECT retl_resume_sync('$sync')");
}

# Whether $node's sync $sync keeps a "may have it" mark (sent, no id) for
# the key whose JSON is $key: "1" or "0".
sub marked
{
	my ($node, $sync, $key) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM retl.remembered_id_store r"
		  . " JOIN retl.syncs s ON s.id = r.sync_id WHERE s.name = '$sync' AND r.key = '$key' AND r.id IS NULL");
}

# A started cluster with retl preloaded and short retry delays for tests.
sub new_retl_node
{
	my ($name, %opts) = @_;

	croak "PostgreSQL::Test::Cluster is not available: $PG_LOAD_ERROR"
	  if defined $PG_LOAD_ERROR;

	_default_pg_env();
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical');
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'retl'
wal_level = logical
retl.retry_base_ms = 100
retl.retry_max_ms = 2000
# the receivers are on 127.0.0.1
retl.allow_private_destinations = on
# The test framework's 1MB of shared buffers makes a busy queue thrash.
shared_buffers = 64MB
max_wal_size = 1GB
});
	$node->append_conf('postgresql.conf', $opts{extra_conf})
	  if defined $opts{extra_conf};
	$node->start;
	return $node;
}

# Hold $node's retl worker before its next logical staging round: a
# session locks retl.stream_state, which the round reads first, and is
# returned once the worker waits for it (COMMIT it, then quit, to let go).
sub hold_staging
{
	my ($node) = @_;
	my $lock = $node->background_psql('postgres');
	$lock->query_safe('BEGIN');
	$lock->query_safe('LOCK TABLE retl.stream_state IN ACCESS EXCLUSIVE MODE');
	$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_locks l
		JOIN pg_stat_activity a USING (pid) WHERE a.backend_type = 'retl worker' AND NOT l.granted})
	  or croak 'the retl worker did not wait for the lock on retl.stream_state';
	return $lock;
}

# A self-signed certificate for the host name "localhost" only, written to
# $dir/cert.pem with its key in $dir/key.pem (readable by the servers the
# tests start).
sub self_signed_cert
{
	my ($dir) = @_;
	my @cmd = ('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
		'-keyout', "$dir/key.pem", '-out', "$dir/cert.pem", '-days', '2',
		'-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost');
	system(@cmd) == 0 or croak "@cmd failed: $?";
	chmod 0644, "$dir/key.pem";
	return;
}

# "make installcheck" sets PATH and PG_REGRESS for TAP tests; provide the
# same defaults so that running a test with plain prove works too.
sub _default_pg_env
{
	$ENV{PATH} = "$PG_BINDIR:$ENV{PATH}"
	  unless grep { -x "$_/initdb" } split /:/, $ENV{PATH};
	return if $ENV{PG_REGRESS};
	my $pgxs = `$PG_BINDIR/pg_config --pgxs`;
	chomp $pgxs;
	# .../lib/pgxs/src/makefiles/pgxs.mk -> .../lib/pgxs/src/test/regress/pg_regress
	(my $pg_regress = $pgxs) =~ s{/makefiles/pgxs\.mk$}{/test/regress/pg_regress};
	$ENV{PG_REGRESS} = $pg_regress if -x $pg_regress;
	return;
}

package RetlTest::Receiver;

use strict;
use warnings;

use Carp;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);

my $json = JSON::PP->new->utf8->canonical;

sub port { return $_[0]->{port} }
sub pid { return $_[0]->{pid} }
sub log_file { return $_[0]->{log_file} }

sub url
{
	my ($self, $path) = @_;
	$path //= '/';
	return "http://127.0.0.1:$self->{port}$path";
}

# The TLS port (start_receiver with tls_cert), under a host name of choice.
sub tls_port { return $_[0]->{tls_port} }

sub tls_url
{
	my ($self, $path, $host) = @_;
	$path //= '/';
	$host //= '127.0.0.1';
	return "https://$host:$self->{tls_port}$path";
}

# Recorded deliveries (arrayref of hashrefs); ok => 1 for 2xx ones only.
sub requests
{
	my ($self, %opts) = @_;
	return $self->_call(GET => '/_requests' . ($opts{ok} ? '?ok=1' : ''));
}

# { count => n, ok => n_2xx, records => n_records_in_2xx }
sub stats
{
	my ($self) = @_;
	return $self->_call(GET => '/_stats');
}

# Replace the failure-injection rules; no arguments clears them.
sub control
{
	my ($self, @rules) = @_;
	return $self->_call(POST => '/_control', { rules => \@rules });
}

# Forget recorded deliveries and rules.
sub clear
{
	my ($self) = @_;
	return $self->_call(POST => '/_clear');
}

sub stop
{
	my ($self) = @_;

	# A forked child must not kill the parent's receiver.
	return unless $self->{pid} && $self->{owner} == $$;
	my $pid = delete $self->{pid};
	delete $live_receivers{ Scalar::Util::refaddr($self) };

	# Called from END too, where $? is the test's exit status.
	local $?;
	kill 'TERM', $pid;
	my $deadline = time + 5;
	while (waitpid($pid, POSIX::WNOHANG()) == 0)
	{
		if (time > $deadline)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			last;
		}
		sleep 0.02;
	}
	return;
}

sub DESTROY
{
	my ($self) = @_;
	local ($@, $!);
	$self->stop;
}

sub _call
{
	my ($self, $method, $path, $body) = @_;
	my %args;
	if (defined $body)
	{
		$args{content} = $json->encode($body);
		$args{headers} = { 'Content-Type' => 'application/json' };
	}
	my $res = $self->{http}->request($method, $self->url($path), \%args);
	croak "receiver $method $path failed: $res->{status} $res->{reason}: $res->{content}"
	  unless $res->{success};
	return $json->decode($res->{content});
}

sub _stderr
{
	my ($self) = @_;
	open(my $fh, '<', $self->{stderr_file}) or return '(no output)';
	local $/;
	my $text = <$fh> // '';
	return length $text ? $text : '(no output)';
}

package RetlTest::Emulator;

use strict;
use warnings;

use Carp;
use JSON::PP;

our @ISA = ('RetlTest::Receiver');

my $ejson = JSON::PP->new->utf8->canonical;

sub url
{
	my ($self, $path) = @_;
	return "http://127.0.0.1:$self->{port}" . ($path // '');
}

# GET a control path (default /_state), decoded.
sub get
{
	my ($self, $path) = @_;
	my $res = $self->{http}->request('GET', $self->url($path // '/_state'));
	croak "GET failed: $res->{status} $res->{content}" unless $res->{success};
	return $ejson->decode($res->{content});
}

# POST a control path with a JSON body, decoded.
sub post
{
	my ($self, $path, $body) = @_;
	my $res = $self->{http}->request('POST', $self->url($path),
		{ content => $ejson->encode($body), headers => { 'Content-Type' => 'application/json' } });
	croak "POST $path failed: $res->{status} $res->{content}" unless $res->{success};
	return $ejson->decode($res->{content});
}

1;
