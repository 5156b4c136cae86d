# Failures: retries with backoff, Retry-After, resets and timeouts, stable
# record ids across retries, dead letters (4xx and exhausted attempts),
# retl_replay, redaction of secrets, and per-key order while retrying.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $r = start_receiver();
my $node = new_retl_node('failures');

sub psql { return $node->safe_psql('postgres', $_[0]); }

sub deliveries
{
	my ($path) = @_;
	return [ grep { $_->{path} eq $path } @{ $r->requests } ];
}

sub drained
{
	my ($sync) = @_;
	return $node->poll_query_until('postgres',
		"SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$sync'");
}

psql(q{
	CREATE EXTENSION retl;
	CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
});
# The test cluster logs every statement; setting a secret is done with
# statement logging off, as the README advises, so the log check below
# shows what retl itself writes.
psql(q{SET log_statement = 'none'; SELECT retl_set_secret('tok', 'hunter2-very-secret');});
my $url = $r->url('/hook');
psql(qq{
	SELECT retl_create_destination(name => 'd', kind => 'webhook', url => '$url',
		options => '{"max_attempts": 4, "timeout_ms": 1000,
		             "headers": {"Authorization": "Bearer {{secret:tok}}"}}');
	SELECT retl_create_sync(name => 's', source => 'items', destination => 'd');
});

# 503 twice with Retry-After: 1, then success: three attempts, same id,
# the second at least a second after the first.
$r->control({ status => 503, count => 2, retry_after => '1' });
psql(q{INSERT INTO items VALUES (1)});
ok(drained('s'), 'delivered after two 503s');
my $d = deliveries('/hook');
is(scalar @$d, 3, 'three attempts');
is_deeply([ map { $_->{status} } @$d ], [ 503, 503, 200 ], 'statuses');
my %ids = map { $_->{headers}{'idempotency-key'} => 1 } @$d;
is(scalar keys %ids, 1, 'same Idempotency-Key on every retry');
my %rids = map { $_->{body}{records}[0]{id} => 1 } @$d;
is(scalar keys %rids, 1, 'same record id on every retry');
ok($d->[1]{t} - $d->[0]{t} >= 0.95, 'Retry-After: 1 honoured (' . sprintf('%.2f', $d->[1]{t} - $d->[0]{t}) . ' s)');
is(psql(q{SELECT failed_attempts, dead, state FROM retl.sync_status}), '2|0|active',
	'failed attempts counted, state active again');

# Retry-After as an HTTP-date.
$r->clear;
my $when = POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime(time + 2));
$r->control({ status => 429, count => 1, retry_after => $when });
psql(q{INSERT INTO items VALUES (2)});
ok(drained('s'), 'delivered after 429 with an HTTP-date');
$d = deliveries('/hook');
is(scalar @$d, 2, 'two attempts');
ok($d->[1]{t} - $d->[0]{t} >= 1.0, 'HTTP-date Retry-After honoured (' . sprintf('%.2f', $d->[1]{t} - $d->[0]{t}) . ' s)');

# Connection reset and timeout are retried; exponential backoff without
# Retry-After (base 100 ms in tests).
$r->clear;
$r->control({ reset => JSON::PP::true, count => 1 }, { delay_ms => 1500, count => 1 }, { status => 408, count => 1 });
psql(q{INSERT INTO items VALUES (3)});
ok(drained('s'), 'delivered after reset, timeout and 408');
$d = deliveries('/hook');
is(scalar @$d, 4, 'four attempts');
like(psql(q{SELECT last_error FROM retl.sync_status}), qr/HTTP 408/, 'last_error shows the last failure');

# A 400 is not retried: dead letter at once, with status and excerpt; the
# secret echoed by the destination is redacted.
$r->clear;
$r->control({ status => 400, count => 1, body => '{"error":"bad email","auth":"Bearer hunter2-very-secret"}' });
psql(q{INSERT INTO items VALUES (4)});
ok(drained('s'), 'queue drained after a 400');
is(scalar @{ deliveries('/hook') }, 1, '400 not retried');
my $dl = psql(q{SELECT sync, key, op, attempts, last_status, response_excerpt FROM retl.dead_letters});
like($dl, qr/^s\|\{"id": 4\}\|upsert\|1\|400\|/, 'dead letter row');
like($dl, qr/bad email/, 'response excerpt kept');
unlike($dl, qr/hunter2/, 'secret redacted from the excerpt');
like($dl, qr/\[redacted\]/, 'redaction marker');
is(psql(q{SELECT dead, state FROM retl.sync_status}), '1|failing', 'status counts the dead letter');
unlike(psql(q{SELECT last_error FROM retl.sync_status}), qr/hunter2/, 'no secret in last_error');
my $logtext = slurp_file($node->logfile);
unlike($logtext, qr/hunter2/, 'no secret in the server log');

# Replay: requeued, delivered with the same record id.
my $dead_id = psql(q{SELECT record_id FROM retl.dead_letters});
$r->clear;
is(psql(q{SELECT retl_replay('s')}), '1', 'retl_replay returns the count');
ok(drained('s'), 'replayed record delivered');
$d = deliveries('/hook');
is($d->[0]{body}{records}[0]{id}, $dead_id, 'replay keeps the record id');
is(psql(q{SELECT dead FROM retl.sync_status}), '0', 'no dead letters left');
is(psql(q{SELECT retl_replay('s')}), '0', 'nothing more to replay');

# Exhausting max_attempts (4) dead-letters the record.
$r->clear;
$r->control({ status => 502, count => 4 });
psql(q{INSERT INTO items VALUES (5)});
ok(drained('s'), 'queue drained after exhausting attempts');
is(scalar @{ deliveries('/hook') }, 4, 'max_attempts attempts made');
is(psql(q{SELECT attempts, last_status FROM retl.dead_letters WHERE key = '{"id": 5}'}), '4|502',
	'dead letter after max_attempts');
my ($first, $last) = split /\|/, psql(q{SELECT extract(epoch FROM first_attempt_at), extract(epoch FROM last_attempt_at)
	FROM retl.dead_letter_store WHERE key = '{"id": 5}'});
ok($last > $first, 'first and last attempt times recorded');
psql(q{SELECT retl_replay('s')});
ok(drained('s'), 'replayed');

# Per-key order: while key 6's first change is retrying, its later changes
# wait; other keys are not blocked.
$r->clear;
psql(q{SELECT retl_pause_sync('s')});
psql(q{INSERT INTO items VALUES (6, 1)});
$r->control({ status => 503, count => 3, retry_after => '1' });
psql(q{SELECT retl_resume_sync('s')});
ok(wait_for(sub { @{ deliveries('/hook') } >= 1 }, 10), 'first attempt for key 6');
psql(q{UPDATE items SET v = 2 WHERE id = 6});
psql(q{INSERT INTO items VALUES (7, 1)});
ok(drained('s'), 'drained after retries');
my @seq = map { [ $_->{status}, $_->{body}{records}[0]{key}{id}, $_->{body}{records}[0]{data}{v} ] }
  @{ deliveries('/hook') };
my @ok6 = map { $_->[2] } grep { $_->[0] == 200 && $_->[1] == 6 } @seq;
is_deeply(\@ok6, [2], 'key 6: retried record coalesced with the later change, sent once with the latest state');
ok(!(grep { $_->[1] == 6 && $_->[0] == 200 } @seq[0 .. 2]), 'nothing of key 6 acknowledged before its retries ended');

# A Retry-After may lengthen the wait, never shorten it below the backoff:
# "0", or an HTTP-date already past (a destination whose clock lags), still
# waits at least half of retry_base_ms x 2^(n-1) before attempt n + 1 (base
# 100 ms in tests), so max_attempts are not spent in a burst.
for my $ra ('0', POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime(time - 3600)))
{
	$r->clear;
	$r->control({ status => 503, count => 4, retry_after => $ra });
	psql(q{DELETE FROM items WHERE id = 60; INSERT INTO items VALUES (60)});
	ok(drained('s'), "Retry-After: $ra: attempts exhausted");
	my @t = map { $_->{t} } grep { ($_->{body}{records}[0]{key}{id} // 0) == 60 } @{ deliveries('/hook') };
	is(scalar @t, 4, "Retry-After: $ra: four attempts");
	my @gaps = map { $t[$_] - $t[ $_ - 1 ] } 1 .. $#t;
	ok(@gaps == 3 && $gaps[0] >= 0.05 && $gaps[1] >= 0.1 && $gaps[2] >= 0.2,
		"Retry-After: $ra: each wait at least the backoff's floor ("
		  . join(', ', map { sprintf('%.3f s', $_) } @gaps) . ')');
	psql(q{SELECT retl_replay('s')});
	ok(drained('s'), "Retry-After: $ra: replayed");
}

# A record that cannot be sent (its row cannot become JSON: a json value
# that jsonb refuses; or it is larger than retl.max_record_size) is
# dead-lettered alone, with the reason; the others of its batch, and the
# later changes of its key, flow.  In a batch and alone.
psql(q{ALTER SYSTEM SET retl.max_record_size = '64kB'; SELECT pg_reload_conf();
	CREATE TABLE odd (id int PRIMARY KEY, j json, t text);
	INSERT INTO odd VALUES (1, '{"a": 1}', 'ok'), (2, '"\u0000"', 'nul'), (3, '{}', 'ok'),
		(4, '{}', repeat('x', 100000)), (5, '[]', 'ok');});
psql(qq{SELECT retl_create_destination(name => 'd_odd10', kind => 'webhook', url => '@{[ $r->url('/odd10') ]}',
		options => '{"batch_size": 10}');
	SELECT retl_create_destination(name => 'd_odd1', kind => 'webhook', url => '@{[ $r->url('/odd1') ]}');
	SELECT retl_create_sync(name => 'odd10', source => 'odd', destination => 'd_odd10');
	SELECT retl_create_sync(name => 'odd1', source => 'odd', destination => 'd_odd1');});
for my $s ('odd10', 'odd1')
{
	ok($node->poll_query_until('postgres',
			qq{SELECT NOT backfilling AND pending + in_flight = 0 AND dead = 2 FROM retl.sync_status WHERE sync = '$s'}),
		"$s: the queue drains, two records dead-lettered");
	is_deeply([ sort map { $_->{key}{id} } map { @{ $_->{body}{records} } } grep { $_->{status} == 200 } @{ deliveries("/$s") } ],
		[ 1, 3, 5 ], "$s: each sendable record once");
	like(psql(qq{SELECT last_error FROM retl.dead_letters WHERE sync = '$s' AND key = '{"id": 2}'}),
		qr/unsupported Unicode escape sequence/, "$s: the unreadable row, dead-lettered with the error");
	like(psql(qq{SELECT last_error FROM retl.dead_letters WHERE sync = '$s' AND key = '{"id": 4}'}),
		qr/^the record is \d+ bytes, more than retl\.max_record_size \(64 kB\)$/, "$s: the oversized one too");
}
psql(q{UPDATE odd SET j = '{"fixed": true}' WHERE id = 2; UPDATE odd SET t = 'short' WHERE id = 4;});
for my $s ('odd10', 'odd1')
{
	ok($node->poll_query_until('postgres',
			qq{SELECT delivered = 5 AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'}),
		"$s: later changes of the dead-lettered keys are sent");
}
psql(q{SELECT retl_drop_sync('odd10'); SELECT retl_drop_sync('odd1');
	ALTER SYSTEM RESET retl.max_record_size; SELECT pg_reload_conf();});

# A secret removed behind retl's back: the sync shows why it is failing,
# keeps the change queued, and delivers once the secret is back.
$r->clear;
psql(q{DELETE FROM retl.secrets WHERE name = 'tok'});
psql(q{INSERT INTO items VALUES (50)});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' AND last_error = 'secret "tok" does not exist' AND pending = 1 FROM retl.sync_status WHERE sync = 's'}),
	'missing secret: sync failing with a clear error, change kept');
is(scalar @{ deliveries('/hook') }, 0, 'nothing sent without the secret');
psql(q{SET log_statement = 'none'; SELECT retl_set_secret('tok', 'hunter2-very-secret');});
ok(drained('s'), 'delivered once the secret is back');
is(psql(q{SELECT state FROM retl.sync_status WHERE sync = 's'}), 'active', 'active again');

# A dropped source table: the sync says so; the others are unaffected.
psql(q{CREATE TABLE gone (id int PRIMARY KEY)});
psql(q{SELECT retl_create_sync(name => 'gone_out', source => 'gone', destination => 'd')});
psql(q{DROP TABLE gone});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'failing' AND last_error LIKE 'source table of sync "gone_out" no longer exists' FROM retl.sync_status WHERE sync = 'gone_out'}),
	'dropped source table reported');
$r->clear;
psql(q{INSERT INTO items VALUES (51)});
ok(drained('s'), 'other syncs keep delivering');
psql(q{SELECT retl_drop_sync('gone_out')});
is(psql(q{SELECT count(*) FROM retl.syncs WHERE name = 'gone_out'}), '0', 'sync of a dropped table can be dropped');
unlike(slurp_file($node->logfile), qr/hunter2/, 'still no secret in the server log');

$node->stop;
$r->stop;
done_testing();
