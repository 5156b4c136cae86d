# What the worker commits is on disk before anything outside depends on
# it.  The worker commits without waiting for the WAL flush
# (synchronous_commit off): a commit lost in a crash only makes it send
# something again.  Logical capture's staging is not so: the changes the
# worker stages from logical decoding into retl.queue are then confirmed
# to the replication slot, which a checkpoint saves to disk at once, and
# an immediate stop after that confirmation, with the staging commit still
# in the WAL buffers (the WAL writer asleep for 10 s here), lost the change
# for good (the slot restarted past it).  Now the staging commit is flushed
# before the position is confirmed.  (Found by a helper's hunt: the change
# below was lost on every try before the fix.)  The same for a rotated
# OAuth refresh token, further down.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use JSON::PP qw(encode_json);

my $node = new_retl_node('durable',
	extra_conf => "wal_writer_delay = 10s\ncheckpoint_timeout = 1h\nrestart_after_crash = on\n");
sub psql { return $node->safe_psql('postgres', $_[0]); }

# (a minor of PostgreSQL 15 that has output_plugin_libraries: README)
if (psql(q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '1')
{
	psql(q{ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, retl; SELECT pg_reload_conf();});
	$node->poll_query_until('postgres', q{SELECT current_setting('output_plugin_libraries') LIKE '%retl%'});
}

# Nothing listens on port 1: every change stays queued (or is
# dead-lettered), so what was staged can be counted after the restart.
psql(q{CREATE EXTENSION retl;
	CREATE TABLE lt (id int PRIMARY KEY, v text NOT NULL DEFAULT '');
	SELECT retl_create_destination(name => 'nowhere', kind => 'webhook', url => 'http://127.0.0.1:1/x',
		options => '{"max_attempts": 1000}');
	SELECT retl_create_sync(name => 'lt_out', source => 'lt', destination => 'nowhere',
		capture => 'logical');});
my $slot = psql(q{SELECT slot_name FROM pg_replication_slots WHERE plugin = 'retl'});
ok($node->poll_query_until('postgres',
	q{SELECT active_pid IS NOT NULL FROM pg_replication_slots WHERE plugin = 'retl'}),
	'the worker decodes from its slot');

for my $try (1 .. 2)
{
	my $id = 1000 + $try;

	# The worker held before its next round (a lock on its stream state),
	# a checkpoint, then the change: the round that stages it also moves
	# the slot's restart point, so the slot is saved with its position.
	my $lock = hold_staging($node);
	psql('CHECKPOINT');
	psql(qq{INSERT INTO lt VALUES ($id, 'x')});
	my $flushed = psql('SELECT pg_current_wal_flush_lsn()');
	$lock->query_safe('COMMIT');
	$lock->quit;
	ok($node->poll_query_until('postgres', qq{SELECT (SELECT count(*) FROM retl.queue WHERE key = '[$id]') = 1
		AND (SELECT confirmed_flush_lsn >= '$flushed' FROM pg_replication_slots WHERE slot_name = '$slot')}),
		"try $try: the change staged and the slot confirmed past it");
	$node->stop('immediate');
	$node->start;
	is(psql(qq{SELECT (SELECT count(*) FROM retl.queue WHERE key = '[$id]')
		+ (SELECT count(*) FROM retl.dead_letter_store WHERE raw_key = '[$id]')}), '1',
		"try $try: the change is still queued after an immediate stop");
}

# A refresh token the authorization server rotated: the old one is void
# once the new one is issued, so the worker's commit of the new one must
# be on disk before it goes on; an immediate stop after it lost the new
# token with the asynchronous commit (before the fix: on both tries), and
# the destination could not get a token any more until someone set the
# secret by hand.  The worker's commits in between write little WAL (no
# checkpoint: no full pages), so the WAL writer, asleep for 10 s, is not
# woken to write it.  (Without logical capture, whose confirmations flush
# the worker's commits once a second.)
psql(q{SELECT retl_drop_sync('lt_out')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_replication_slots WHERE plugin = 'retl'}),
	'the slot goes with the logical sync');
my $o = start_emulator('oauth', '--client-id', 'retl-app', '--client-secret', 'cs-secret',
	'--refresh-token', 'RT-first0000');
my $token_url = $o->url('/oauth/token');
my $api = $o->url('/api/things');
psql(qq{CREATE TABLE notes (id int PRIMARY KEY);
	SET log_statement = 'none';
	SELECT retl_set_secret('cs', 'cs-secret');
	SELECT retl_set_secret('rt', 'RT-first0000');
	SELECT retl_create_destination('rt', 'http', '$api', '{"auth": {"type": "oauth2",
		"grant_type": "refresh_token", "token_url": "$token_url",
		"client_id": "retl-app", "client_secret": "{{secret:cs}}", "refresh_token": "{{secret:rt}}"}}');
	SELECT retl_create_sync('notes_out', 'notes', 'rt', options => '{"backfill": false}');});
for my $try (1 .. 2)
{
	# The access token revoked: the next request's 401 renews it, with the
	# refresh token, which the server rotates.
	$o->post('/_expire', {});
	my $issued = $o->get->{issued};
	psql(qq{INSERT INTO notes VALUES ($try)});
	# (the worker starts a request with a new token once its save committed;
	# an immediate stop before that commit would lose the token in any case)
	ok(wait_for(sub { my $st = $o->get; $st->{issued} > $issued && grep { encode_json($_) =~ /"id":$try\b/ } @{ $st->{things} } }, 60),
		"try $try: delivered with a token got after the change was committed");
	$node->stop('immediate');
	$node->start;
	# (the new worker may get a token at once, rotating it again)
	ok(wait_for(sub { psql(q{SELECT value FROM retl.secrets WHERE name = 'rt'}) eq $o->get->{refresh_token} }, 10),
		"try $try: the rotated refresh token is still saved after an immediate stop");
}

# A diff sync's run: the worker sends what the run queued once the run
# commits, so the commit must be on disk first.  Here the run reads v2,
# the source goes back to v1 (committed, flushed) while the run is still
# evaluating, v2 is delivered, and the server crashes with the run's commit
# not flushed (the WAL writer stopped, then killed: a crash restart).  The
# run was lost with its snapshot (still v1, as the source): the next run
# found nothing to send and the destination kept v2 for good.  Now the run
# commits as if synchronous_commit were on.  (Found by a helper's hunt.)
my $r = start_receiver();
psql(q{CREATE TABLE t5 (id int PRIMARY KEY, v text NOT NULL);
	INSERT INTO t5 VALUES (1, 'v1');
	SELECT retl_create_destination(name => 'd_run', kind => 'webhook', url => '} . $r->url('/run') . q{');
	SELECT retl_create_sync(name => 's5', source => 'SELECT t5.id, t5.v FROM t5, pg_sleep(2)',
		destination => 'd_run', key => '{id}', mode => 'upsert', schedule => 'manual');});
sub run_done
{
	my ($run) = @_;
	return $node->poll_query_until('postgres',
		"SELECT status NOT IN ('queued', 'running') FROM retl.runs WHERE id = $run");
}
sub last_v { my @recs = grep { $_->{key}{id} == 1 } @{ records_at($r, '/run') }; return @recs ? $recs[-1]{data}{v} : ''; }
ok(run_done(psql(q{SELECT retl_run_sync('s5')})) && wait_for(sub { last_v() eq 'v1' }, 30), 'the first run sent v1');
psql(q{UPDATE t5 SET v = 'v2' WHERE id = 1});
my $walwriter = psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'});
kill 'STOP', $walwriter;
my $run = psql(q{SELECT retl_run_sync('s5')});
ok($node->poll_query_until('postgres', "SELECT phase = 'evaluating' FROM retl.runs WHERE id = $run"),
	'the run reads the source');
sleep 0.5;
psql(q{UPDATE t5 SET v = 'v1' WHERE id = 1});
ok(wait_for(sub { last_v() eq 'v2' }, 30), 'the run sent v2, read before the source went back');
kill 'KILL', $walwriter;
kill 'CONT', $walwriter;
ok($node->poll_query_until('postgres', "SELECT status = 'succeeded' FROM retl.runs WHERE id = $run"),
	'after the crash restart the run is still there, succeeded');
ok(run_done(psql(q{SELECT retl_run_sync('s5')})) && wait_for(sub { last_v() eq 'v1' }, 30),
	'and the next run sends v1: the destination ends as the source');

$node->stop;
done_testing();
