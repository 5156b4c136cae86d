# Code of a sync's owner never runs with retl's privileges, and leaves
# nothing behind for retl's own statements.  A retl_user ("alice") plants
# in her schema look-alike operators and functions that try ALTER ROLE
# alice SUPERUSER, and makes her code (a query, a cast to json of her
# type, a row-level security policy, a domain check) switch the session's
# search_path to her schema.  Each way retl runs her code is tried: a diff
# sync's query, the rows a realtime sync reads as her, a policy of her
# table, an audience's query, retl_preview in an admin's session, an
# append sync's rows (capture trigger, backfill at creation, logical
# decoding) and a logical sync keyed by her domain.  Her code must have
# run (as her), and she must have gained nothing.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $r = start_receiver();
my $node = new_retl_node('isolation');
sub psql { return $node->safe_psql('postgres', $_[0]); }

if (psql(q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '1')
{
	psql(q{ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, retl; SELECT pg_reload_conf();});
	$node->poll_query_until('postgres', q{SELECT current_setting('output_plugin_libraries') LIKE '%retl%'});
}

psql(q{CREATE EXTENSION retl;
	CREATE ROLE alice LOGIN IN ROLE retl_user;
	CREATE SCHEMA alice_s AUTHORIZATION alice;
	SELECT retl_create_destination('d', 'webhook', '} . $r->url('/d') . q{', options => '{"batch_size": 10}');
	SELECT retl_grant_destination('d', 'alice');});

# alice's traps, made by alice.
psql(q{SET ROLE alice;
	CREATE TABLE alice_s.gained (what text);
	-- what superuser code calling alice's would do
	CREATE FUNCTION alice_s.gain(what text) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		BEGIN
			EXECUTE 'ALTER ROLE alice SUPERUSER';
			INSERT INTO alice_s.gained VALUES (what);
		EXCEPTION WHEN insufficient_privilege THEN NULL;
		END;
	END $$;
	-- alice's code: tries its luck, then points the session at her schema
	-- (it says so in the server log: logical decoding allows no writes)
	CREATE FUNCTION alice_s.hijack(what text) RETURNS int LANGUAGE plpgsql AS $$
	BEGIN
		RAISE LOG 'alice ran: % as %.', what, current_user;
		PERFORM alice_s.gain(what);
		PERFORM pg_catalog.set_config('search_path', 'alice_s, pg_catalog', false);
		RETURN 1;
	END $$;
	-- look-alikes of what retl's statements use, for whoever resolves them
	CREATE FUNCTION alice_s.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
		BEGIN PERFORM alice_s.gain('now()'); RETURN pg_catalog.now(); END $$;
	CREATE FUNCTION alice_s.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
		BEGIN PERFORM alice_s.gain('clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END $$;
	DO $do$
	DECLARE
		p record;
	BEGIN
		FOR p IN SELECT * FROM (VALUES ('int4', 'int4'), ('int4', 'int8'), ('int8', 'int4'),
			('int8', 'int8'), ('text', 'text'), ('jsonb', 'jsonb'), ('oid', 'oid'),
			('"char"', '"char"'), ('bool', 'bool'), ('timestamptz', 'timestamptz'),
			('name', 'name'), ('regclass', 'regclass')) v(l, r)
		LOOP
			FOR o IN 1 .. 4 LOOP
				EXECUTE pg_catalog.format($f$CREATE FUNCTION alice_s.op%s_%s_%s(a %s, b %s) RETURNS bool
					LANGUAGE plpgsql AS $b$ BEGIN PERFORM alice_s.gain('operator'); RETURN a OPERATOR(pg_catalog.%s) b; END $b$ $f$,
					o, pg_catalog.md5(p.l), pg_catalog.md5(p.r), p.l, p.r,
					(ARRAY['=', '<>', '<', '>'])[o]);
				EXECUTE pg_catalog.format('CREATE OPERATOR alice_s.%s (FUNCTION = alice_s.op%s_%s_%s, LEFTARG = %s, RIGHTARG = %s)',
					(ARRAY['=', '<>', '<', '>'])[o], o, pg_catalog.md5(p.l), pg_catalog.md5(p.r), p.l, p.r);
			END LOOP;
		END LOOP;
	END $do$;
	-- her type, whose cast to json is her code
	CREATE TYPE alice_s.color AS ENUM ('red', 'green');
	CREATE FUNCTION alice_s.color_json(c alice_s.color) RETURNS json LANGUAGE plpgsql AS $$
		BEGIN PERFORM alice_s.hijack('cast to json'); RETURN pg_catalog.to_json(c::text); END $$;
	CREATE CAST (alice_s.color AS json) WITH FUNCTION alice_s.color_json(alice_s.color);
	-- her domain, whose check is her code
	CREATE FUNCTION alice_s.positive(v int) RETURNS bool LANGUAGE plpgsql AS $$
		BEGIN PERFORM alice_s.hijack('domain check'); RETURN v > 0; END $$;
	CREATE DOMAIN alice_s.ident AS int CHECK (alice_s.positive(VALUE));
	-- her tables
	CREATE TABLE alice_s.paint (id int PRIMARY KEY, c alice_s.color);
	CREATE TABLE alice_s.guarded (id int PRIMARY KEY, v text);
	ALTER TABLE alice_s.guarded ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
	CREATE POLICY p ON alice_s.guarded USING (alice_s.hijack('policy') = 1);
	CREATE TABLE alice_s.events (id int PRIMARY KEY, c alice_s.color);
	INSERT INTO alice_s.events VALUES (1, 'red');
	CREATE TABLE alice_s.keyed (id alice_s.ident PRIMARY KEY, v text);
	CREATE TABLE alice_s.enum_keyed (c alice_s.color PRIMARY KEY);});

my $superuser = psql('SELECT current_user');

# After each way in: her code ran (as her), she gained nothing, and the
# worker still serves (a sync of a plain table still delivers).
my $n = 0;
sub nothing_gained
{
	my ($what, $ran_what) = @_;
	$n++;
	psql(qq{INSERT INTO plain VALUES ($n)});
	ok($node->poll_query_until('postgres',
			qq{SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = 'plain'}),
		"$what: the worker still delivers");
	my %who = map { $_ => 1 } (slurp_file($node->logfile) =~ /alice ran: \Q$ran_what\E as (\w+)\./g);
	is(join(',', sort keys %who), 'alice', "$what: alice's code ran, as alice");
	is(psql(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'}), 'f', "$what: alice is no superuser");
	is(psql(q{SELECT count(*) FROM alice_s.gained}), '0', "$what: nothing of alice's ran as a superuser");
	is(psql(q{SELECT pg_catalog.count(*) FROM pg_stat_activity WHERE backend_type = 'retl worker'}), '1',
		"$what: the worker did not restart");
}

psql(q{CREATE TABLE plain (id int PRIMARY KEY);
	SELECT retl_create_sync(name => 'plain', source => 'plain', destination => 'd');});
my $worker = psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'});

# 1. a diff sync's query
psql(q{SET ROLE alice;
	SELECT retl_create_sync(name => 'model', source => $$SELECT alice_s.hijack('diff query') AS id$$,
		key => '{id}', destination => 'd', schedule => 'manual');
	SELECT retl_run_sync('model');});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM retl.runs WHERE sync = 'model' AND status = 'succeeded'}),
	'the run succeeded');
nothing_gained('diff query', 'diff query');

# 2. the rows a realtime sync reads as its owner: a column of her type
psql(q{SET ROLE alice;
	SELECT retl_create_sync(name => 'paint', source => 'alice_s.paint', destination => 'd');
	INSERT INTO alice_s.paint VALUES (1, 'green');});
ok($node->poll_query_until('postgres', q{SELECT delivered >= 1 FROM retl.sync_status WHERE sync = 'paint'}),
	'the row was sent');
nothing_gained('realtime read', 'cast to json');

# 3. a row-level security policy of her table
psql(q{SET ROLE alice;
	SELECT retl_create_sync(name => 'guarded', source => 'alice_s.guarded', destination => 'd');
	INSERT INTO alice_s.guarded VALUES (1, 'x');});
ok($node->poll_query_until('postgres', q{SELECT delivered >= 1 FROM retl.sync_status WHERE sync = 'guarded'}),
	'the row was sent');
nothing_gained('policy', 'policy');

# 4. an audience's query
psql(q{SET ROLE alice;
	SELECT retl_create_audience(name => 'aud', query => $$SELECT alice_s.hijack('audience') AS id$$,
		key => '{id}', schedule => 'manual');
	SELECT retl_refresh_audience('aud');});
ok($node->poll_query_until('postgres', q{SELECT members = 1 FROM retl.audiences WHERE audience = 'aud'}),
	'the audience was refreshed');
nothing_gained('audience query', 'audience');

# 5. retl_preview, by a superuser: alice's query runs in that session
is(psql(q{SELECT count(*) FROM retl_preview('model'); SHOW search_path;}), "0\n\"\$user\", public",
	"a preview leaves the caller's search_path as it was");
nothing_gained('preview', 'diff query');

# 6. an append sync's rows: queued by the capture trigger as they are
#    written (by a superuser here), and at creation (the backfill)
psql(q{SET ROLE alice;
	SELECT retl_create_sync(name => 'events', source => 'alice_s.events', destination => 'd', mode => 'append');});
nothing_gained('append backfill', 'cast to json');
is(psql(q{INSERT INTO alice_s.events VALUES (2, 'green'); SHOW search_path;}), '"$user", public',
	"the writer's search_path is as it was");
ok($node->poll_query_until('postgres', q{SELECT delivered = 2 FROM retl.sync_status WHERE sync = 'events'}),
	'both events were sent');
nothing_gained('capture trigger', 'cast to json');
my @events = sort map { $_->{data}{c} } grep { $_->{op} eq 'insert' } @{ delivered_records($r) };
is_deeply(\@events, [ 'green', 'red' ], 'the events carry the cast\'s JSON');

# 7. logical decoding: an append sync's rows, and a key of her domain
psql(q{SET ROLE alice; SELECT retl_alter_sync('events', capture => 'logical');});
psql(q{INSERT INTO alice_s.events VALUES (3, 'red')});
ok($node->poll_query_until('postgres', q{SELECT delivered = 3 FROM retl.sync_status WHERE sync = 'events'}),
	'the logically captured event was sent');
nothing_gained('logical append', 'cast to json');
psql(q{SET ROLE alice;
	SELECT retl_create_sync(name => 'keyed', source => 'alice_s.keyed', destination => 'd', capture => 'logical');});
psql(q{SET ROLE alice; INSERT INTO alice_s.keyed VALUES (5, 'x'); UPDATE alice_s.keyed SET v = 'y';});
ok($node->poll_query_until('postgres', q{SELECT delivered >= 1 AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = 'keyed'}),
	'the domain-keyed row was sent');
nothing_gained('logical domain key', 'domain check');

# A key of a type another role owns cannot be captured by retl at all.
my ($ret, $out, $err) = $node->psql('postgres', q{SET ROLE alice;
	SELECT retl_create_sync(name => 'enum_keyed', source => 'alice_s.enum_keyed', destination => 'd');});
like($err, qr/key column "c" has type alice_s\.color, which is not owned by a superuser/,
	'a key of a type alice owns: refused');

is(psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'}), $worker,
	'one worker served it all');
is(psql(q{SELECT count(*) FROM retl.sync_status WHERE state = 'failing'}), '0', 'no sync failed');

done_testing();
