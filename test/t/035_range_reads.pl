# An upsert batch whose key is one integer column is read by ranges of
# consecutive keys (one walk of the index a run) when its keys mostly come
# in runs, and key by key otherwise.  Both give the same records: each key
# with its row as it is when sent, a delete for a key without a row, keys
# hidden from the owner by row-level security never sent, mappings with
# computed fields applied.  Each sync here has a twin that reads its
# batches key by key (batch_size 10, one request at a time, and a rate
# limit, under which a claim takes nothing ahead: too few keys a claim for
# ranges), and the two must send the same.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $r = start_receiver();
my $node = new_retl_node('ranges', extra_conf => q{
shared_preload_libraries = 'retl, pg_stat_statements'
pg_stat_statements.track = all
});
sub psql { return $node->safe_psql('postgres', $_[0]); }

my @tables = qw(t_bigint t_integer t_smallint);
my @syncs;

psql(q{CREATE EXTENSION retl; CREATE EXTENSION pg_stat_statements;
	CREATE ROLE alice NOLOGIN IN ROLE retl_user;
	SELECT retl_create_destination('d', 'webhook', '} . $r->url('/d') . q{',
		options => '{"batch_size": 100}');
	SELECT retl_create_destination('d1', 'webhook', '} . $r->url('/d1') . q{',
		options => '{"batch_size": 10, "max_concurrency": 1, "rate_limit": 1000}');
	SELECT retl_grant_destination(d, 'alice') FROM unnest('{d,d1}'::text[]) d;});
for my $t (@tables)
{
	(my $type = $t) =~ s/^t_//;
	psql(qq{CREATE TABLE $t (id $type PRIMARY KEY, tenant text NOT NULL, v text);
		ALTER TABLE $t ENABLE ROW LEVEL SECURITY;
		CREATE POLICY tenant_a ON $t FOR SELECT TO alice USING (tenant = 'a');
		GRANT SELECT ON $t TO alice;});
	for my $batch (10, 100)
	{
		for my $owner ('su', 'alice')
		{
			for my $map ('plain', 'mapped')
			{
				my $name = "${t}_${batch}_${owner}_$map";
				my $mapping = $map eq 'mapped'
				  ? q{'{"id": "id", "v": "value", "shout": {"sql": "upper(v)"}}'}
				  : 'NULL';
				my $opts = $owner eq 'alice' ? '{"backfill": false, "owner": "alice"}' : '{"backfill": false}';
				my $dest = $batch == 10 ? 'd1' : 'd';
				psql(qq{SELECT retl_create_sync(name => '$name', source => '$t', destination => '$dest',
					mapping => $mapping, options => '$opts');
					SELECT retl_pause_sync('$name');});
				push @syncs, $name;
			}
		}
	}
}

# The last state each key reached at the receiver for a sync, and the keys
# it sent (a key may go twice in smaller batches: a row of it queued past
# the batch goes in a later one).
sub sent
{
	my ($sync) = @_;
	my (%last, @keys);
	for my $req (grep { $_->{status} == 200 && $_->{body}{sync} eq $sync } @{ $r->requests })
	{
		for my $rec (@{ $req->{body}{records} })
		{
			push @keys, $rec->{key}{id};
			$last{ $rec->{key}{id} } = $rec->{op} eq 'delete' ? 'deleted'
			  : join(',', map { "$_=" . ($rec->{data}{$_} // 'null') } sort keys %{ $rec->{data} });
		}
	}
	my %seen;
	return (\%last, [ sort { $a <=> $b } grep { !$seen{$_}++ } @keys ]);
}

sub drained
{
	return $node->poll_query_until('postgres',
		q{SELECT bool_and(pending + in_flight = 0) FROM retl.sync_status});
}

# Statements of the worker's reads so far: by ranges, and key by key.
sub reads
{
	return psql(q{SELECT coalesce(sum(calls) FILTER (WHERE query LIKE '%AS retl_r(retl_lo, retl_hi)%'), 0)
		|| ' ' || coalesce(sum(calls) FILTER (WHERE query LIKE '%AS retl_k(retl_key, retl_n) LEFT JOIN LATERAL%'), 0)
		FROM pg_stat_statements});
}

# Runs of keys: 1-40 (10-14 deleted before they are sent, 20-24 changed
# twice, 31 moved out of the owner's view before it is sent: a delete for
# her syncs, as for a deleted row), 45-60, and 100 and 102 alone; every
# seventh row is another tenant's (hidden from alice: its changes are not
# queued for her syncs, so their batches hold runs of six keys, still read
# by ranges).  Each batch of 100 holds them all: 58 keys in 4 runs.
for my $t (@tables)
{
	psql(qq{INSERT INTO $t SELECT g, CASE WHEN g % 7 = 0 THEN 'b' ELSE 'a' END, 'v' || g
		FROM generate_series(1, 40) g;
		INSERT INTO $t SELECT g, CASE WHEN g % 7 = 0 THEN 'b' ELSE 'a' END, 'v' || g
		FROM generate_series(45, 60) g;
		INSERT INTO $t VALUES (100, 'a', 'v100'), (102, 'a', NULL);
		DELETE FROM $t WHERE id BETWEEN 10 AND 14;
		UPDATE $t SET v = v || '+' WHERE id BETWEEN 20 AND 24;
		UPDATE $t SET tenant = 'b' WHERE id = 31;});
}
psql(q{SELECT pg_stat_statements_reset()});
psql("SELECT retl_resume_sync('$_')") for @syncs;
ok(drained(), 'runs of keys: every sync delivered');
my ($ranges, $by_key) = split / /, reads();
cmp_ok($ranges, '>=', 12, 'the batches of 100 were read by ranges');
cmp_ok($by_key, '>=', 12, 'the batches of 10 key by key');

for my $t (@tables)
{
	for my $owner ('su', 'alice')
	{
		for my $map ('plain', 'mapped')
		{
			my ($wide, $wide_keys) = sent("${t}_100_${owner}_$map");
			my ($narrow, $narrow_keys) = sent("${t}_10_${owner}_$map");
			is_deeply($wide, $narrow, "$t, $owner, $map: by ranges as key by key");
			is_deeply($wide_keys, $narrow_keys, "$t, $owner, $map: the same keys sent");
		}
	}
	my ($su) = sent("${t}_100_su_plain");
	is($su->{1}, 'id=1,tenant=a,v=v1', "$t: a row sent as it is");
	is($su->{12}, 'deleted', "$t: a key whose row was deleted: a delete");
	is($su->{22}, 'id=22,tenant=a,v=v22+', "$t: a changed row: its last state");
	is($su->{102}, 'id=102,tenant=a,v=null', "$t: a key alone, a null column");
	is(scalar(keys %$su), 58, "$t: every key once");
	my ($mapped) = sent("${t}_100_alice_mapped");
	is($mapped->{23}, 'id=23,shout=V23+,value=v23+', "$t: the mapping and its computed field");
	ok(!grep({ defined $mapped->{$_} } 7, 14, 21, 49, 56), "$t: keys hidden from the owner never sent");
	is($mapped->{31}, 'deleted', "$t: a row moved out of the owner's view: a delete");
	is($mapped->{12}, 'deleted', "$t: as the owner too, a deleted row is a delete");
}
is(psql(q{SELECT count(*) FROM retl.queue}), '0', 'nothing left in the queue');

# Keys far apart: read key by key whatever the batch.
psql(q{SELECT pg_stat_statements_reset()});
for my $t (@tables)
{
	psql(qq{INSERT INTO $t SELECT g, 'a', 'w' || g FROM generate_series(200, 390, 10) g;});
}
ok(drained(), 'keys far apart: delivered');
($ranges, $by_key) = split / /, reads();
is($ranges, '0', 'keys far apart: no read by ranges');
cmp_ok($by_key, '>=', 12, 'but key by key');
for my $t (@tables)
{
	my ($wide) = sent("${t}_100_su_plain");
	my ($narrow) = sent("${t}_10_su_plain");
	is_deeply($wide, $narrow, "$t: keys far apart, the same records");
	is($wide->{390}, 'id=390,tenant=a,v=w390', "$t: the last of them");
}

# A key no longer unique (its constraint dropped after the sync was
# created): each key still goes once, with one of its rows, as key by key.
psql(q{ALTER TABLE t_bigint DROP CONSTRAINT t_bigint_pkey;
	SELECT pg_stat_statements_reset();
	INSERT INTO t_bigint SELECT g, 'a', 'd' || n FROM generate_series(500, 529) g, generate_series(1, 2) n;});
ok(drained(), 'a key on two rows: delivered');
($ranges) = split / /, reads();
cmp_ok($ranges, '>=', 2, 'read by ranges');
for my $owner ('su', 'alice')
{
	my ($wide, $wide_keys) = sent("t_bigint_100_${owner}_plain");
	my ($narrow, $narrow_keys) = sent("t_bigint_10_${owner}_plain");
	is_deeply($wide_keys, $narrow_keys, "$owner: the same keys sent");
	is(scalar(grep { ($wide->{$_} // '') =~ /^id=$_,tenant=a,v=d[12]$/ } 500 .. 529), 30,
		"$owner: each of those keys with one of its rows");
}

done_testing();
