# A key's text does not depend on the session that builds it.
#
# jsonb_build_array writes a timestamptz with the offset of the session's
# TimeZone and a bytea as bytea_output says, and a key's text is what
# tells keys apart (the queue, the marks, the destination).  Writers with
# different settings gave one row two keys: an INSERT in one TimeZone and
# a DELETE in another were two rows at the destination, and the row stayed.
# Now every path that builds a key writes a timestamptz as jsonb does in
# UTC and a bytea in hex: the capture trigger (in C), a TRUNCATE's keys,
# a backfill, and logical capture (in SQL), whatever the writer's and the
# worker's settings.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $r = start_receiver();
# the worker's own TimeZone is neither UTC nor a writer's
my $node = new_retl_node('key_text', extra_conf => "timezone = 'America/New_York'\n");
sub psql { return $node->safe_psql('postgres', $_[0]); }

my $logical = psql(q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '1';
if ($logical)
{
	psql(q{ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, retl; SELECT pg_reload_conf();});
	$node->poll_query_until('postgres', q{SELECT current_setting('output_plugin_libraries') LIKE '%retl%'});
}

# The keys in UTC, as jsonb writes them in a session in UTC.
my %utc = (
	now => '2026-12-07T20:00:00.12+00:00',
	bc => '0044-03-15T00:00:00.5+00:00 BC',
	inf => 'infinity',
	whole => '2026-06-01T00:00:00+00:00');
my $values = q{('2026-12-07 20:00:00.12+00', 'now'), ('0044-03-15 00:00:00.5+00 BC', 'bc'),
	('infinity', 'inf'), ('2026-06-01 00:00:00+00', 'whole')};

# What the receiver heard at $path: "key text=last op or v" for each key, sorted.
sub heard
{
	my ($path, $col) = @_;
	my %last;
	for my $rec (@{ records_at($r, $path) })
	{
		$last{ $rec->{key}{$col} } = $rec->{op} eq 'delete' ? 'delete' : $rec->{data}{v};
	}
	return join(', ', map { "$_=$last{$_}" } sort keys %last);
}

sub expect
{
	my ($what) = @_;
	return join(', ', map { "$utc{$_}=" . ($what // $_) } sort { $utc{$a} cmp $utc{$b} } keys %utc);
}

sub drained
{
	my ($sync) = @_;
	return $node->poll_query_until('postgres',
		"SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$sync'");
}

psql(q{CREATE EXTENSION retl;
	CREATE DOMAIN at_d AS timestamptz;
	CREATE TABLE ev (at timestamptz PRIMARY KEY, v text);
	CREATE TABLE evd (at at_d PRIMARY KEY, v text);
	CREATE TABLE pre (at timestamptz PRIMARY KEY, v text);
	CREATE TABLE evl (at timestamptz PRIMARY KEY, v text);
	CREATE TABLE bk (b bytea PRIMARY KEY, v text);
	SET TimeZone = 'Asia/Kolkata';
	INSERT INTO pre VALUES } . $values . q{;});
for my $t (qw(ev evd pre evl bk))
{
	psql("SELECT retl_create_destination(name => 'd$t', kind => 'webhook', url => '" . $r->url("/$t") . "')");
	psql("SELECT retl_create_sync(name => '${t}_out', source => '$t', destination => 'd$t'"
		  . ($t eq 'evl' ? ", capture => 'logical'" : '') . ')')
	  if $t ne 'evl' || $logical;
}

# A backfill (read by the worker, in New York) of rows written in Kolkata.
ok(wait_for(sub { heard('/pre', 'at') eq expect() }, 30), 'backfill: each key in UTC')
  or diag(heard('/pre', 'at'));

# Trigger capture: written in Kolkata, updated in Los Angeles, deleted in
# Chatham (+13:45): one key a row.
psql(q{SET TimeZone = 'Asia/Kolkata'; INSERT INTO ev VALUES } . $values . q{;});
ok(drained('ev_out'), 'ev inserted');
is(heard('/ev', 'at'), expect(), 'trigger: keys written in Kolkata are in UTC');
psql(q{SET TimeZone = 'America/Los_Angeles'; UPDATE ev SET v = 'u';});
ok(drained('ev_out'), 'ev updated');
is(heard('/ev', 'at'), expect('u'), 'trigger: an update in Los Angeles has the same keys');
psql(q{SET TimeZone = 'Pacific/Chatham'; DELETE FROM ev;});
ok(drained('ev_out'), 'ev deleted');
is(heard('/ev', 'at'), expect('delete'), 'trigger: a delete in Chatham deletes those keys');

# A domain over timestamptz; a TRUNCATE's keys (read in SQL) against the
# trigger's (built in C).
psql(q{SET TimeZone = 'Asia/Kolkata'; INSERT INTO evd VALUES } . $values . q{;});
ok(drained('evd_out'), 'evd inserted');
is(heard('/evd', 'at'), expect(), 'a domain over timestamptz: keys in UTC');
psql(q{SET TimeZone = 'America/Los_Angeles'; TRUNCATE evd;});
ok(drained('evd_out'), 'evd truncated');
is(heard('/evd', 'at'), expect('delete'), 'TRUNCATE in another TimeZone deletes the same keys');

SKIP:
{
	skip 'no output_plugin_libraries in this minor', 3 unless $logical;
	psql(q{SET TimeZone = 'Asia/Kolkata'; INSERT INTO evl VALUES } . $values . q{;});
	ok(drained('evl_out'), 'evl inserted');
	is(heard('/evl', 'at'), expect(), 'logical capture: keys in UTC');
	psql(q{SET TimeZone = 'Pacific/Chatham'; DELETE FROM evl;});
	ok(wait_for(sub { heard('/evl', 'at') eq expect('delete') }, 30), 'logical capture: deletes of the same keys');
}

# bytea keys: written with bytea_output escape, deleted with hex.
psql(q{SET bytea_output = 'escape'; INSERT INTO bk VALUES ('\x0001ff', 'b'), ('\x41', 'a');});
ok(drained('bk_out'), 'bk inserted');
is(heard('/bk', 'b'), '\x0001ff=b, \x41=a', 'bytea keys in hex, whatever bytea_output');
psql(q{SET bytea_output = 'hex'; DELETE FROM bk WHERE b = '\x41'; SET bytea_output = 'escape'; TRUNCATE bk;});
ok(drained('bk_out'), 'bk deleted');
is(heard('/bk', 'b'), '\x0001ff=delete, \x41=delete', 'bytea keys deleted by DELETE and TRUNCATE');

# An append sync's backfill (read in create_sync, in SQL, in the
# creator's Kolkata, with bytea_output escape) writes its events' keys as
# the trigger (in C) writes the events captured after it: UTC, hex.
psql(q{CREATE TABLE ap (at timestamptz PRIMARY KEY, v text);
	CREATE TABLE apb (b bytea PRIMARY KEY, v text);
	INSERT INTO ap VALUES ('2026-12-07 20:00:00.12+00', 'pre');
	INSERT INTO apb VALUES ('\x0001ff', 'pre');
	SELECT retl_create_destination(name => 'dap', kind => 'webhook', url => '} . $r->url('/ap') . q{');
	SELECT retl_create_destination(name => 'dapb', kind => 'webhook', url => '} . $r->url('/apb') . q{');});
psql(q{SET TimeZone = 'Asia/Kolkata'; SET bytea_output = 'escape';
	SELECT retl_create_sync(name => 'ap_out', source => 'ap', destination => 'dap', mode => 'append');
	SELECT retl_create_sync(name => 'apb_out', source => 'apb', destination => 'dapb', mode => 'append');
	INSERT INTO ap VALUES ('2026-06-01 00:00:00+00', 'after');
	INSERT INTO apb VALUES ('\x41', 'after');});
ok(drained('ap_out') && drained('apb_out'), 'append syncs drained');
is(join(', ', sort map { "$_->{key}{at}=$_->{data}{v}" } @{ records_at($r, '/ap') }),
	'2026-06-01T00:00:00+00:00=after, 2026-12-07T20:00:00.12+00:00=pre',
	'append: the backfill event\'s key is in UTC, as a captured one\'s');
is(join(', ', sort map { "$_->{key}{b}=$_->{data}{v}" } @{ records_at($r, '/apb') }),
	'\x0001ff=pre, \x41=after',
	'append: the backfill event\'s bytea key is in hex, as a captured one\'s');

# The queue and the keys kept are one text a row.
is(psql(q{SELECT count(*) FROM retl.dead_letters}), '0', 'no dead letters');

$node->stop;
$r->stop;
done_testing();
