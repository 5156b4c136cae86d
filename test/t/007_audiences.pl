# Audiences: tracked segments whose members enter and exit, with history,
# and syncs that add entered members to a list and remove exited ones.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $r = start_receiver();
my $node = new_retl_node('audiences', extra_conf => "retl.poll_interval_ms = 200\n");

sub psql { return $node->safe_psql('postgres', $_[0]); }

sub refreshed
{
	my ($audience, $after) = @_;
	return $node->poll_query_until('postgres',
		"SELECT last_refresh_at > '$after' FROM retl.audiences WHERE audience = '$audience'");
}

sub drained
{
	return $node->poll_query_until('postgres',
		q{SELECT sum(pending + in_flight) = 0 AND bool_and(last_run_status IS DISTINCT FROM 'running')
		  AND NOT EXISTS (SELECT 1 FROM retl.runs WHERE status IN ('queued', 'running'))
		  FROM retl.sync_status});
}

my $url = $r->url('/list');
psql(qq{
	CREATE EXTENSION retl;
	CREATE TABLE customers (id int PRIMARY KEY, spend numeric NOT NULL);
	INSERT INTO customers SELECT g, g * 100 FROM generate_series(1, 10) g;
	SELECT retl_create_destination(name => 'list', kind => 'webhook', url => '$url',
		options => '{"batch_size": 50}');
	SELECT retl_create_audience(name => 'big_spenders',
		query => 'SELECT id FROM customers WHERE spend > 500', key => '{id}', schedule => 'manual');
	SELECT retl_create_sync(name => 'big_to_list', source => 'audience:big_spenders',
		destination => 'list', mode => 'mirror');
});

my $t0 = psql('SELECT now()');
psql(q{SELECT retl_refresh_audience('big_spenders')});
ok(refreshed('big_spenders', $t0), 'audience refreshed on demand');
is(psql(q{SELECT members FROM retl.audiences WHERE audience = 'big_spenders'}), '5', '5 members (spend 600..1000)');
is(psql(q{SELECT string_agg(key->>'id', ',' ORDER BY (key->>'id')::int) FROM retl.audience_members WHERE audience = 'big_spenders'}),
	'6,7,8,9,10', 'members listed with their keys');
ok(drained(), 'sync ran after the refresh and delivered');
my @recs = @{ delivered_records($r) };
is_deeply([ sort { $a <=> $b } map { $_->{key}{id} } @recs ], [ 6 .. 10 ], 'entered members sent');
ok(!(grep { $_->{op} ne 'upsert' } @recs), 'as upserts');
is_deeply($recs[0]{data}, { id => $recs[0]{key}{id} }, 'data is the member key');

# One exits, one enters.
$r->clear;
psql(q{UPDATE customers SET spend = 0 WHERE id = 7; UPDATE customers SET spend = 5000 WHERE id = 2;});
$t0 = psql('SELECT now()');
psql(q{SELECT retl_refresh_audience('big_spenders')});
ok(refreshed('big_spenders', $t0), 'refreshed again');
ok(drained(), 'delivered');
is_deeply([ sort map { "$_->{op}:$_->{key}{id}" } @{ delivered_records($r) } ], [ 'delete:7', 'upsert:2' ],
	'mirror: the exited member removed, the entered one added');
is(psql(q{SELECT string_agg(event || ':' || (key->>'id'), ',' ORDER BY at, event, key->>'id')
	FROM retl.audience_events WHERE audience = 'big_spenders' AND at > (SELECT min(at) FROM retl.audience_events)}),
	'entered:2,exited:7', 'history records who entered and exited');
is(psql(q{SELECT count(*) FROM retl.audience_events
	WHERE audience = 'big_spenders' AND event = 'entered' AND at > now() - interval '7 days'}),
	'6', 'how many entered this week: one query');

# On a schedule.
psql(q{SELECT retl_create_audience(name => 'everyone', query => 'SELECT id, spend FROM customers',
	key => '{id}', schedule => '2 seconds')});
ok($node->poll_query_until('postgres',
	q{SELECT members = 10 AND last_refresh_at IS NOT NULL FROM retl.audiences WHERE audience = 'everyone'}),
	'scheduled audience refreshed by itself');
psql(q{INSERT INTO customers VALUES (11, 1)});
ok($node->poll_query_until('postgres', q{SELECT members = 11 FROM retl.audiences WHERE audience = 'everyone'}),
	'and again on its schedule');

# A failing audience query is reported on the audience, not fatal.
psql(q{SELECT retl_create_audience(name => 'broken', query => 'SELECT id / 0 AS id FROM customers',
	key => '{id}', schedule => 'manual'); SELECT retl_refresh_audience('broken');});
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE '%division by zero%' FROM retl.audiences WHERE audience = 'broken'}),
	'failed refresh recorded');

# Dropping: refused while a sync uses the audience.
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_drop_audience('big_spenders')});
like($err, qr/audience "big_spenders" is used by sync big_to_list/, 'drop refused while used');
psql(q{SELECT retl_drop_sync('big_to_list'); SELECT retl_drop_audience('big_spenders');});
is(psql(q{SELECT count(*) FROM retl.audience_members WHERE audience = 'big_spenders'}), '0', 'members gone with it');

$node->stop;
$r->stop;
done_testing();
