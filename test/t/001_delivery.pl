# Delivery of a table's changes to a webhook: the request format, inserts,
# updates, deletes, backfill, coalescing, append mode, mapping, batching,
# rollback and pause/resume.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Encode ();

my $r = start_receiver();
my $node = new_retl_node('delivery');

sub psql { return $node->safe_psql('postgres', $_[0]); }

sub records_for
{
	my ($sync) = @_;
	my @out;
	for my $req (@{ $r->requests(ok => 1) })
	{
		next unless ref $req->{body} eq 'HASH' && ($req->{body}{sync} // '') eq $sync;
		push @out, @{ $req->{body}{records} };
	}
	return \@out;
}

sub wait_drained
{
	my ($sync) = @_;
	return $node->poll_query_until('postgres',
		"SELECT pending + in_flight = 0 AND NOT backfilling FROM retl.sync_status WHERE sync = '$sync'");
}

psql(q{
	CREATE EXTENSION retl;
	CREATE TABLE customers (id int PRIMARY KEY, email text, plan text);
	INSERT INTO customers SELECT g, 'user' || g || '@example.com', 'free' FROM generate_series(1, 25) g;
	SELECT retl_set_secret('hook_token', 's3cr3t');
});
my $url = $r->url('/hooks/customers');
psql(qq{
	SELECT retl_create_destination(name => 'crm_hook', kind => 'webhook', url => '$url',
		options => '{"headers": {"Authorization": "Bearer {{secret:hook_token}}", "X-Team": "growth"}}');
	SELECT retl_create_sync(name => 'customers_to_crm', source => 'public.customers',
		destination => 'crm_hook');
});

# Backfill: the 25 rows that existed when the sync was created.
ok(wait_for(sub { @{ records_for('customers_to_crm') } >= 25 }, 30), 'backfill delivered');
ok(wait_drained('customers_to_crm'), 'queue drained after backfill');
my %seen = map { $_->{key}{id} => 1 } @{ records_for('customers_to_crm') };
is(scalar(keys %seen), 25, 'every existing row sent once by backfill');

# The request format.
my $req = $r->requests(ok => 1)->[0];
is($req->{method}, 'POST', 'POST');
is($req->{path}, '/hooks/customers', 'path of the url');
is($req->{headers}{'content-type'}, 'application/json', 'content type');
is($req->{headers}{'user-agent'},
	'retl/' . psql(q{SELECT extversion FROM pg_extension WHERE extname = 'retl'}),
	'User-Agent names the extension version');
is($req->{headers}{authorization}, 'Bearer s3cr3t', 'secret substituted at send time');
is($req->{headers}{'x-team'}, 'growth', 'destination header sent');
ok($req->{headers}{'idempotency-key'}, 'Idempotency-Key present');
is($req->{headers}{'webhook-id'}, $req->{headers}{'idempotency-key'}, 'webhook-id equals Idempotency-Key');
is(ref $req->{body}{records}, 'ARRAY', 'records is an array');
is(scalar @{ $req->{body}{records} }, 1, 'batch_size 1 sends one record');
my $rec = $req->{body}{records}[0];
is($req->{headers}{'idempotency-key'}, $rec->{id}, 'idempotency key is the record id');
is($rec->{op}, 'upsert', 'op upsert');
is_deeply([ sort keys %{ $rec->{key} } ], ['id'], 'key holds the primary key');
is_deeply([ sort keys %{ $rec->{data} } ], [qw(email id plan)], 'data holds every column');
like($rec->{captured_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'captured_at is ISO 8601 UTC');

# Insert, update, delete, each within a second or so.
$r->clear;
my $t0 = time;
psql(q{INSERT INTO customers VALUES (100, 'new@example.com', 'pro')});
ok(wait_for(sub { @{ records_for('customers_to_crm') } >= 1 }, 10), 'insert delivered');
my $elapsed = time - $t0;
ok($elapsed <= 3, "insert delivered promptly ($elapsed s)");
$rec = records_for('customers_to_crm')->[0];
is_deeply($rec->{key}, { id => 100 }, 'insert key');
is_deeply($rec->{data}, { id => 100, email => 'new@example.com', plan => 'pro' }, 'insert data');

$r->clear;
psql(q{UPDATE customers SET plan = 'team' WHERE id = 100});
ok(wait_for(sub { @{ records_for('customers_to_crm') } >= 1 }, 10), 'update delivered');
is(records_for('customers_to_crm')->[0]{data}{plan}, 'team', 'update carries the new state');

$r->clear;
psql(q{DELETE FROM customers WHERE id = 100});
ok(wait_for(sub { @{ records_for('customers_to_crm') } >= 1 }, 10), 'delete delivered');
$rec = records_for('customers_to_crm')->[0];
is($rec->{op}, 'delete', 'op delete');
is_deeply($rec->{key}, { id => 100 }, 'delete carries the key');
ok(!exists $rec->{data}, 'delete has no data');

# A key change deletes the old key and upserts the new one.
$r->clear;
psql(q{UPDATE customers SET id = 200 WHERE id = 1});
ok(wait_for(sub { @{ records_for('customers_to_crm') } >= 2 }, 10), 'key change delivered');
my %ops = map { $_->{key}{id} => $_->{op} } @{ records_for('customers_to_crm') };
is_deeply(\%ops, { 1 => 'delete', 200 => 'upsert' }, 'old key deleted, new key upserted');

# Rolled back transactions send nothing.
$r->clear;
psql(q{BEGIN; INSERT INTO customers VALUES (300, 'x', 'y'); ROLLBACK;});
psql(q{INSERT INTO customers VALUES (301, 'marker', 'm')});
ok(wait_for(sub { @{ records_for('customers_to_crm') } >= 1 }, 10), 'marker delivered');
sleep 1;
is_deeply([ map { $_->{key}{id} } @{ records_for('customers_to_crm') } ], [301],
	'rolled back insert never sent');

# Coalescing: while paused, many updates of one key become one record with
# the latest state.
$r->clear;
psql(q{SELECT retl_pause_sync('customers_to_crm')});
psql(qq{UPDATE customers SET plan = 'v$_' WHERE id = 2}) for 1 .. 20;
is(psql(q{SELECT state, pending FROM retl.sync_status WHERE sync = 'customers_to_crm'}),
	'paused|20', 'paused sync keeps its queue');
sleep 1;
is(scalar @{ records_for('customers_to_crm') }, 0, 'nothing sent while paused');
psql(q{SELECT retl_resume_sync('customers_to_crm')});
ok(wait_drained('customers_to_crm'), 'drained after resume');
my $recs = records_for('customers_to_crm');
is(scalar @$recs, 1, '20 queued updates coalesced into one record');
is($recs->[0]{data}{plan}, 'v20', 'coalesced record has the latest state');

# Status view after all this.
my $status = psql(q{SELECT state, pending, in_flight, dead, delivered > 25, last_delivered_at IS NOT NULL,
	oldest_pending_age IS NULL FROM retl.sync_status WHERE sync = 'customers_to_crm'});
is($status, 'active|0|0|0|t|t|t', 'sync_status after delivery');

# Append mode: every insert is an event, none coalesced, data as inserted;
# existing rows are backfilled.  Mapping renames and selects columns.
psql(q{
	CREATE TABLE events (id bigserial PRIMARY KEY, customer_id int NOT NULL, kind text, secret_note text);
	INSERT INTO events (customer_id, kind) VALUES (1, 'signup');
});
my $url2 = $r->url('/hooks/events');
psql(qq{
	SELECT retl_create_destination(name => 'events_hook', kind => 'webhook', url => '$url2',
		options => '{"batch_size": 10}');
	SELECT retl_create_sync(name => 'events_out', source => 'events', destination => 'events_hook',
		mode => 'append', mapping => '{"id": "event_id", "customer_id": "customer", "kind": "type"}');
});
psql(q{SELECT retl_pause_sync('events_out')});
psql(q{INSERT INTO events (customer_id, kind) SELECT 7, 'click' FROM generate_series(1, 24)});
psql(q{UPDATE events SET kind = 'changed' WHERE id = 2});
psql(q{SELECT retl_resume_sync('events_out')});
ok(wait_drained('events_out'), 'append sync drained');
$recs = records_for('events_out');
is(scalar @$recs, 25, 'append: backfilled row + 24 inserts, none coalesced');
# batches go out concurrently: order holds per key, not across keys
is_deeply([ sort { $a <=> $b } map { $_->{key}{event_id} } @$recs ], [ 1 .. 25 ], 'append: every insert once');
ok(!(grep { $_->{op} ne 'insert' } @$recs), 'append: op insert');
is($recs->[1]{data}{type}, 'click', 'append: data as inserted, not as later updated');
is_deeply([ sort keys %{ $recs->[1]{data} } ], [qw(customer event_id type)], 'mapping: only mapped columns, renamed');
my @sizes = map { scalar @{ $_->{body}{records} } }
  grep { $_->{path} eq '/hooks/events' } @{ $r->requests(ok => 1) };
ok(!(grep { $_ > 10 } @sizes), 'batches never exceed batch_size');
ok((grep { $_ > 1 } @sizes), 'batches carry several records');
my ($batch) = grep { $_->{path} eq '/hooks/events' && @{ $_->{body}{records} } > 1 } @{ $r->requests(ok => 1) };
like($batch->{headers}{'idempotency-key'}, qr/^batch-/, 'batch idempotency key');

# TRUNCATE of an upsert source deletes every key at the destination.
$r->clear;
psql(q{CREATE TABLE small (k text PRIMARY KEY, n int); INSERT INTO small VALUES ('a', 1), ('b', 2)});
psql(qq{SELECT retl_create_sync(name => 'small_out', source => 'small', destination => 'crm_hook')});
ok(wait_drained('small_out'), 'small backfilled');
$r->clear;
psql(q{TRUNCATE small});
ok(wait_drained('small_out'), 'truncate drained');
is_deeply([ sort map { "$_->{key}{k}:$_->{op}" } @{ records_for('small_out') } ], [ 'a:delete', 'b:delete' ],
	'truncate sends deletes');

# Renaming a key column keeps the key field names the sync was created
# with, so an upserting receiver sees the same record, not a new one; the
# data (every column) follows the table.  Append syncs too.
$r->clear;
psql(q{CREATE TABLE renamed (id int PRIMARY KEY, v text);
	SELECT retl_create_sync(name => 'renamed_out', source => 'renamed', destination => 'crm_hook');
	SELECT retl_create_sync(name => 'renamed_app', source => 'renamed', destination => 'crm_hook', mode => 'append');
	INSERT INTO renamed VALUES (1, 'a');});
ok(wait_drained('renamed_out') && wait_drained('renamed_app'), 'sent before the rename');
psql(q{ALTER TABLE renamed RENAME COLUMN id TO ident;
	INSERT INTO renamed VALUES (2, 'b'); UPDATE renamed SET v = 'a2' WHERE ident = 1;});
ok(wait_drained('renamed_out') && wait_drained('renamed_app'), 'sent after the rename');
is_deeply([ map { join(',', sort keys %{ $_->{key} }) } @{ records_for('renamed_out') } ], [ ('id') x 3 ],
	'upsert: the key is still {"id": ...}');
is_deeply([ sort map { $_->{key}{id} // 'none' } @{ records_for('renamed_out') } ], [ 1, 1, 2 ],
	'upsert: with the same values');
is_deeply([ map { join(',', sort keys %{ $_->{key} }) } @{ records_for('renamed_app') } ], [ ('id') x 2 ],
	'append: the key is still {"id": ...}');
my ($after) = grep { ($_->{key}{id} // 0) == 2 } @{ records_for('renamed_out') };
is_deeply([ sort keys %{ $after->{data} } ], [qw(ident v)], 'the data has the table\'s columns as they are now');

# The key object and capture time of an upsert record are written in C
# (queue/render.c) as jsonb_build_object(...)::text and to_char write them:
# strings with quotes, backslashes and non-ASCII, numerics as stored,
# booleans, fields in jsonb's order (shorter first) under mapped names.
psql(q{SET log_statement = 'none'; SELECT retl_set_secret('tricky_key', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');});
my $tricky_url = $r->url('/hooks/tricky');
psql(qq{
	CREATE TABLE tricky (label text, n numeric, flag boolean, v text, PRIMARY KEY (label, n, flag));
	SELECT retl_create_destination(name => 'tricky_hook', kind => 'webhook', url => '$tricky_url',
		options => '{"signing_secret": "tricky_key", "batch_size": 3}');
	SELECT retl_create_sync(name => 'tricky_out', source => 'tricky', destination => 'tricky_hook',
		mapping => '{"label": "a_label_field", "n": "n", "flag": "flag", "v": "v"}');
});
psql(q{INSERT INTO tricky VALUES ('say "hi" \ back', 1.50, true, 'x'), (E'\u00e9 \U0001F600 tab\tend', -7, false, 'y'),
	('plain', 100000000000000000000, true, 'z'), ('', 0.000, false, 'w')});
ok(wait_drained('tricky_out'), 'tricky keys delivered');
my @raw_keys;
for my $req (grep { $_->{path} eq '/hooks/tricky' && $_->{status} == 200 } @{ $r->requests })
{
	push @raw_keys, $1 while $req->{raw} =~ /"key": (\{.*?\}), "data"/g;
	my $body = JSON::PP->new->decode($req->{raw});
	for my $rec (@{ $body->{records} })
	{
		like($rec->{captured_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'captured_at as to_char writes it');
	}
}
is_deeply([ sort @raw_keys ],
	[ sort split /\n/, Encode::decode('UTF-8',
		psql(q{SELECT jsonb_build_object('a_label_field', label, 'n', n, 'flag', flag)::text FROM tricky})) ],
	'key objects byte for byte as jsonb writes them');

# The data of an upsert record is its row as to_jsonb(row)::text writes it.
# For a table of plain columns (no mapping) the worker writes that text in
# C (queue/rowjson.c): integers, numerics (NaN and infinities as strings),
# booleans, strings with quotes, backslashes, control characters and
# non-ASCII, char(n) padding, names, uuids, dates and timestamps (in the
# server's time zone, here +05:45), a domain, NULLs, a dropped column, keys
# in jsonb's order.  A table with a float column goes through to_jsonb.
# (Signed, so that the receiver keeps the bytes.)
psql(q{ALTER SYSTEM SET timezone = 'Asia/Kathmandu'; SELECT pg_reload_conf();});
my $plain_url = $r->url('/hooks/plain');
psql(qq{
	CREATE DOMAIN positive AS int CHECK (VALUE > 0);
	CREATE TABLE plain_types (id int PRIMARY KEY, gone text, s smallint, b bigint, n numeric, t text,
		vc varchar(12), c char(5), nm name, u uuid, d date, ts timestamp, tz timestamptz, f boolean,
		dom positive, "a much longer column name" text, "é" text, nul text);
	ALTER TABLE plain_types DROP COLUMN gone;
	CREATE TABLE float_types (id int PRIMARY KEY, x float8, y real, t text);
	SELECT retl_create_destination(name => 'plain_hook', kind => 'webhook', url => '$plain_url',
		options => '{"batch_size": 4, "signing_secret": "tricky_key"}');
	SELECT retl_create_sync(name => 'plain_out', source => 'plain_types', destination => 'plain_hook');
	SELECT retl_create_sync(name => 'float_out', source => 'float_types', destination => 'plain_hook');
});
psql(q{INSERT INTO plain_types VALUES
	(1, -32768, 9223372036854775807, 1.50, E'say "hi" \\\\ back\n\ttab \u00e9 \U0001F600 \x01', 'varchar', 'ab',
	 'a name', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '2024-01-01 12:34:56.789',
	 '2024-06-01 00:00:00+00', true, 7, 'long', 'accent', NULL),
	(2, 0, -1, 'NaN', '', '', '', '', '00000000-0000-0000-0000-000000000000', '0044-03-15 BC',
	 'infinity', '-infinity', false, 1, NULL, NULL, NULL),
	(3, NULL, NULL, 'Infinity', NULL, NULL, NULL, NULL, NULL, 'infinity', '1999-12-31 23:59:59',
	 '1970-01-01 00:00:00.000001+00', NULL, NULL, 'a, "captured_at": x', NULL, NULL),
	(4, 1, -9223372036854775808, '-Infinity', 'x', 'y', 'z', 'w', NULL, '2000-01-01', NULL, NULL, NULL, 2,
	 NULL, NULL, NULL),
	(5, 2, 3, 0.000, 'x', 'y', 'z', 'w', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	INSERT INTO float_types VALUES (1, 1e20, 0.1, 'a'), (2, 'NaN', '-Infinity', NULL), (3, 1.5e-7, 3.25, 'c');
	DELETE FROM plain_types WHERE id = 5;});
ok(wait_drained('plain_out') && wait_drained('float_out'), 'plain and float rows delivered');
my (@raw_data, @deleted);
for my $req (grep { $_->{path} eq '/hooks/plain' && $_->{status} == 200 } @{ $r->requests })
{
	push @raw_data, $1 while $req->{raw} =~ /"data": (\{.*?\}), "captured_at"/g;
	push @deleted, map { $_->{key}{id} } grep { $_->{op} eq 'delete' } @{ JSON::PP->new->decode($req->{raw})->{records} };
}
# (row 5, deleted by a later statement, may have been sent before it went)
is_deeply([ sort grep { !/"id": 5,/ } @raw_data ],
	[ sort split /\n/, Encode::decode('UTF-8',
		psql(q{SET timezone = 'Asia/Kathmandu';
			SELECT to_jsonb(p)::text FROM plain_types p UNION ALL SELECT to_jsonb(f)::text FROM float_types f})) ],
	'row data byte for byte as to_jsonb writes it');
is_deeply(\@deleted, [5], 'a row deleted before it was read is a delete');
psql(q{ALTER SYSTEM RESET timezone; SELECT pg_reload_conf();});

# A table filled in the transaction that creates its sync: the trigger
# queues each row, then the backfill finds every key queued already and
# queues none again, so each key goes once (the worker's first claim took
# the trigger's rows before the backfill's were committed, and the next
# claim the backfill's: each key went twice).
my $filled_url = $r->url('/hooks/filled');
psql(qq{
	BEGIN;
	CREATE TABLE filled (id int PRIMARY KEY);
	SELECT retl_create_destination('filled_hook', 'webhook', '$filled_url');
	SELECT retl_create_sync(name => 'filled_out', source => 'filled', destination => 'filled_hook');
	INSERT INTO filled SELECT generate_series(1, 200);
	COMMIT;
});
ok(wait_drained('filled_out'), 'the filled table delivered');
is(scalar @{ records_for('filled_out') }, 200, 'each of its 200 keys once');

# A resync while a key's change is in flight: the backfill queues the key
# again (what is in flight was read before the resync), and it goes once
# the first request is answered.
my $resynced_url = $r->url('/hooks/resynced');
psql(qq{CREATE TABLE resynced (id int PRIMARY KEY, v text);
	SELECT retl_create_destination('resynced_hook', 'webhook', '$resynced_url');
	SELECT retl_create_sync(name => 'resynced_out', source => 'resynced', destination => 'resynced_hook');});
ok(wait_drained('resynced_out'), 'an empty table synced');
$r->control({ path => '/hooks/resynced', delay_ms => 3000, count => 1 });
psql(q{INSERT INTO resynced VALUES (1, 'a')});
ok($node->poll_query_until('postgres', q{SELECT in_flight = 1 FROM retl.sync_status WHERE sync = 'resynced_out'}),
	'its change in flight');
psql(q{SELECT retl_resync('resynced_out')});
ok(wait_drained('resynced_out'), 'drained after the resync');
is(scalar @{ records_for('resynced_out') }, 2, 'the key in flight sent again by the resync');
$r->control();

# Dropping a sync removes its trigger and queue.
psql(q{SELECT retl_pause_sync('small_out'); INSERT INTO small VALUES ('c', 3);});
psql(q{SELECT retl_drop_sync('small_out')});
is(psql(q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'small'::regclass}), '0', 'triggers dropped');
is(psql(q{SELECT count(*) FROM retl.queue q WHERE NOT EXISTS (SELECT 1 FROM retl.syncs s WHERE s.id = q.sync_id)}),
	'0', 'queue of dropped sync removed');

$node->stop;
$r->stop;
done_testing();
