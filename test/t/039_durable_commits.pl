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
# below was lost on every try before the fix.)
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $node = new_retl_node('durable',
	extra_conf => "wal_writer_delay = 10s\ncheckpoint_timeout = 1h\n");
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
	my $lock = $node->background_psql('postgres');
	$lock->query_safe('BEGIN');
	$lock->query_safe('LOCK TABLE retl.stream_state IN ACCESS EXCLUSIVE MODE');
	ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_locks l
		JOIN pg_stat_activity a USING (pid) WHERE a.backend_type = 'retl worker' AND NOT l.granted}),
		"try $try: the worker waits");
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

$node->stop;
done_testing();
