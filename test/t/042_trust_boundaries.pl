# What a retl_user may do with a destination it was granted, whose secrets
# it may not read: an http sync's path cannot move the request (and the
# destination's credentials) to another host; what its expressions see of
# an answer, and keep in retl.remembered_ids, is redacted; an answer that
# echoes the Authorization header built by the "auth" option, base64
# encoded, is redacted.  retl_alter_sync asks for the TRIGGER privilege as
# retl_create_sync does, and a TRUNCATE sends only the keys the owner may
# see when it reads the table by column grants.  retl_cancel_run of
# another's run does not tell its sync's name.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use MIME::Base64;
use Time::HiRes qw(sleep);

my $api = start_receiver();
my $other = start_receiver();
my $node = new_retl_node('trust', extra_conf => "retl.poll_interval_ms = 200\n");
sub psql { return $node->safe_psql('postgres', $_[0]); }

sub drained
{
	my ($sync) = @_;
	return $node->poll_query_until('postgres',
		"SELECT NOT backfilling AND pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$sync'");
}

my $secret = 'SECRET-crm-token-0123456789';
my $pw = 'hunter2-pass-word';
psql(q{CREATE EXTENSION retl;
	CREATE ROLE alice NOLOGIN IN ROLE retl_user;
	CREATE TABLE t (id int PRIMARY KEY, v text);
	INSERT INTO t VALUES (1, 'one');
	GRANT SELECT, TRIGGER ON t TO alice;});
psql("SET log_statement = 'none'; SELECT retl_set_secret('crm_token', '$secret'); SELECT retl_set_secret('pw', '$pw');");
# an API's base URL, without a path
my $base = 'http://127.0.0.1:' . $api->port;
psql(qq{SELECT retl_create_destination('crm', 'http', '$base',
		'{"auth": {"type": "bearer", "token": "{{secret:crm_token}}"}}');
	SELECT retl_create_destination('echo', 'http', '} . $api->url('/echo') . q{',
		'{"auth": {"type": "bearer", "token": "{{secret:crm_token}}"}}');
	SELECT retl_grant_destination('crm', 'alice');
	SELECT retl_grant_destination('echo', 'alice');});
my ($ret, $out, $err) = $node->psql('postgres', q{SET ROLE alice; SELECT value FROM retl.secrets});
like($err, qr/permission denied/, 'alice may not read retl.secrets');

# A path that would make the destination's host a user name ("@host/x")
# leads nowhere: its record is dead-lettered, nothing reaches the other
# host; the other records of the sync are sent.
my $other_port = $other->port;
psql(qq{INSERT INTO t VALUES (2, 'two');
	SET ROLE alice;
	SELECT retl_create_sync('away', 't', 'crm', options => \$\${
	  "request": {"method": "PUT", "path": "CASE WHEN key->>'id' = '1' THEN '\@127.0.0.1:$other_port/stolen' ELSE '/users/' || (key->>'id') END"}}\$\$);});
ok($node->poll_query_until('postgres', q{SELECT last_error LIKE '%leads away from its destination''s host%'
	FROM retl.dead_letters WHERE sync = 'away'}), 'a path leading to another host dead-letters its record');
ok(wait_for(sub { grep { $_->{path} eq '/users/2' } @{ $api->requests(ok => 1) } }, 30), 'the other record is sent');
is(scalar @{ $other->requests }, 0, 'nothing reached the other host');
is(scalar(grep { $_->{path} =~ /stolen/ } @{ $api->requests }), 0, 'nor the destination');
psql(q{SELECT retl_drop_sync('away'); DELETE FROM t WHERE id = 2});
# Nor may a path leave the destination URL's own path by dot segments.
psql(q{SELECT retl_create_destination('acct', 'http', '} . $api->url('/v2/accounts/123') . q{',
		'{"auth": {"type": "bearer", "token": "{{secret:crm_token}}"}}');
	SELECT retl_grant_destination('acct', 'alice');
	SET ROLE alice;
	SELECT retl_create_sync('dots', 't', 'acct', options => $${
	  "request": {"method": "PUT", "path": "'/../456/export'"}}$$);
	SELECT retl_create_sync('dots2', 't', 'acct', options => $${
	  "request": {"method": "PUT", "path": "'/%2E%2e/456/export'"}}$$);});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM retl.dead_letters
	WHERE sync IN ('dots', 'dots2') AND last_error LIKE '%has a "." or ".." segment%'}),
	'a path with a dot segment, plain or encoded, dead-letters its record');
is(scalar(grep { $_->{path} =~ /456/ } @{ $api->requests }), 0, 'nothing left the destination\'s path');
psql(q{SELECT retl_drop_sync('dots'); SELECT retl_drop_sync('dots2')});
# a path that starts with / goes to the destination, as before
psql(q{SET ROLE alice;
	SELECT retl_create_sync('onward', 't', 'crm', options => $${
	  "request": {"method": "PUT", "path": "format('/users/%s', retl_urlencode(key->>'id'))"}}$$);});
ok(wait_for(sub { grep { $_->{path} eq '/users/1' } @{ $api->requests(ok => 1) } }, 30),
	'a path starting with / reaches the destination');
psql(q{SELECT retl_drop_sync('onward')});

# What a sync's expressions see of an answer (and remember) is redacted.
$api->control({ path => '/echo', status => 200, echo => 'raw', count => -1 });
psql(q{SET ROLE alice;
	SELECT retl_create_sync('rem', 't', 'echo', options => '{"remember": "response_text"}');});
ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM retl.remembered_ids WHERE sync = 'rem'}),
	'an id was remembered from an answer echoing the Authorization header');
my $seen = psql(q{SET ROLE alice; SELECT string_agg(id, ',') FROM retl.remembered_ids WHERE sync = 'rem'});
unlike($seen, qr/\Q$secret\E/, 'the secret is not in retl.remembered_ids');
like($seen, qr/\[redacted\]/, 'it was redacted');
psql(q{SELECT retl_drop_sync('rem')});
# A success rule cannot test the secret an answer echoes either (a record
# delivered or dead-lettered told its owner a bit of it): it sees the
# answer redacted, as text, and as JSON that stays JSON.
my $guess = substr($secret, 0, 12);
for my $case ([ 'raw', "strpos(response_text, '$guess') = 0", 'in the answer\'s text' ],
	[ 'json', "response->'headers'->>'authorization' = '[redacted]' AND strpos(response::text, '$guess') = 0",
	  'in a JSON answer, the secret\'s string redacted' ])
{
	my ($how, $rule, $what) = @$case;
	$api->control({ path => '/echo', status => 200, echo => $how, count => -1 });
	psql(qq{SET ROLE alice; SELECT retl_create_sync('guess', 't', 'echo',
		options => pg_catalog.jsonb_build_object('success', \$\$$rule\$\$, 'batch_size', 1))});
	ok($node->poll_query_until('postgres', q{SELECT NOT backfilling AND pending + in_flight = 0
		FROM retl.sync_status WHERE sync = 'guess'}), "a success rule testing a guess of the secret, $how");
	is(psql(q{SELECT delivered > 0 AND dead = 0 FROM retl.sync_status WHERE sync = 'guess'}), 't',
		"never finds it $what");
	psql(q{SELECT retl_drop_sync('guess')});
}
$api->control({ path => '/echo', status => 200, echo => 'raw', count => -1 });
# An answer holding a secret's value as a number stays JSON for the
# expressions (they see the answer itself; what they keep is redacted).
psql(q{SELECT retl_set_secret('acct_no', '48213');
	SELECT retl_create_destination('acct_api', 'http', '} . $api->url('/acct') . q{',
		'{"headers": {"X-Account": "{{secret:acct_no}}"}}');
	SELECT retl_grant_destination('acct_api', 'alice');});
$api->control({ path => '/acct', status => 200, body => '{"account":48213,"id":"c_9","ok":true}', count => -1 });
psql(q{SET ROLE alice;
	SELECT retl_create_sync('acct', 't', 'acct_api', options => $${"success": "response->>'ok' = 'true'",
	  "remember": "response->>'id'"}$$);});
ok($node->poll_query_until('postgres', q{SELECT id = 'c_9' FROM retl.remembered_ids WHERE sync = 'acct'}),
	'the success rule and remember read the JSON answer');
is(psql(q{SELECT dead FROM retl.sync_status WHERE sync = 'acct'}), '0', 'nothing dead-lettered');
psql(q{SELECT retl_drop_sync('acct')});

# An answer echoing the Authorization header base64 encoded, as the
# "headers" option or the "auth" option (bearer, basic) built it.
psql(q{SELECT retl_create_destination('hdr', 'webhook', '} . $api->url('/hdr') . q{',
		'{"headers": {"Authorization": "Bearer {{secret:crm_token}}"}}');
	SELECT retl_create_destination('bearer', 'webhook', '} . $api->url('/bearer') . q{',
		'{"auth": {"type": "bearer", "token": "{{secret:crm_token}}"}}');
	SELECT retl_create_destination('basic', 'webhook', '} . $api->url('/basic') . q{',
		'{"auth": {"type": "basic", "username": "me", "password": "{{secret:pw}}"}}');});
$api->control(map { { path => "/$_", status => 400, echo => 'base64', count => -1 } } qw(hdr bearer basic));
psql(q{SELECT retl_create_sync('hdr', 't', 'hdr'); SELECT retl_create_sync('bearer', 't', 'bearer');
	SELECT retl_create_sync('basic', 't', 'basic');});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 3 FROM retl.dead_letters WHERE sync IN ('hdr', 'bearer', 'basic')}),
	'three dead letters');
my %leak = (
	hdr => encode_base64("Bearer $secret", ''),
	bearer => encode_base64("Bearer $secret", ''),
	basic => encode_base64('Basic ' . encode_base64("me:$pw", ''), ''));
for my $s (qw(hdr bearer basic))
{
	my $e = psql(qq{SELECT response_excerpt FROM retl.dead_letters WHERE sync = '$s'});
	unlike($e, qr/\Q$leak{$s}\E/, "$s: the base64 of the Authorization header is redacted");
	like($e, qr/\[redacted\]/, "$s: shown redacted");
}

# retl_alter_sync asks for the TRIGGER privilege, as creation does.
psql(q{CREATE ROLE bob NOLOGIN; CREATE TABLE b (id int PRIMARY KEY); ALTER TABLE b OWNER TO bob;
	GRANT SELECT, TRIGGER ON b TO alice;
	SELECT retl_create_destination('d', 'webhook', '} . $api->url('/alice') . q{');
	SELECT retl_grant_destination('d', 'alice');
	SET ROLE alice; SELECT retl_create_sync('al', 'b', 'd');});
psql(q{REVOKE TRIGGER ON b FROM alice});
($ret, $out, $err) = $node->psql('postgres', q{SET ROLE alice; SELECT retl_alter_sync('al', capture => 'logical')});
like($err, qr/permission denied to capture the changes of table (public\.)?b\b/,
	'retl_alter_sync refused without the TRIGGER privilege');
is(psql(q{SELECT capture FROM retl.syncs WHERE name = 'al'}), 'trigger', 'the sync is as it was');

# TRUNCATE: an owner that reads the table by a grant of each column, under
# row-level security, sends the deletes of the rows it may see only.
psql(q{CREATE ROLE carol NOLOGIN IN ROLE retl_user;
	CREATE TABLE u (id int PRIMARY KEY, tenant text NOT NULL);
	INSERT INTO u VALUES (1, 'a'), (2, 'b');
	ALTER TABLE u ENABLE ROW LEVEL SECURITY;
	CREATE POLICY tenant_a ON u FOR SELECT TO carol USING (tenant = 'a');
	GRANT SELECT (id, tenant) ON u TO carol;
	SELECT retl_create_destination('du', 'webhook', '} . $api->url('/as_carol') . q{');
	SELECT retl_grant_destination('du', 'carol');
	SELECT retl_create_sync(name => 'as_carol', source => 'u', destination => 'du', options => '{"owner": "carol"}');});
ok(drained('as_carol'), 'carol: backfill delivered');
psql(q{TRUNCATE u});
ok(drained('as_carol'), 'carol: the TRUNCATE delivered');
my @sent = map { "$_->{op}:$_->{key}{id}" } map { @{ $_->{body}{records} } }
  grep { $_->{path} eq '/as_carol' } @{ $api->requests(ok => 1) };
is(join(' ', @sent), 'upsert:1 delete:1', 'the row carol sees, and its delete; none of the other');

# retl_cancel_run of another role's run names neither its sync nor owner.
psql(q{SELECT retl_create_destination('d_admin', 'webhook', '} . $api->url('/admin') . q{');
	SELECT retl_create_sync('secret_project_x', 'SELECT id FROM t', 'd_admin', key => '{id}', schedule => 'manual')});
my $run = psql(q{SELECT retl_run_sync('secret_project_x')});
($ret, $out, $err) = $node->psql('postgres', "SET ROLE alice; SELECT retl_cancel_run($run)");
like($err, qr/permission denied for run $run/, 'another role\'s run: permission denied');
my $admin = psql(q{SELECT current_user});
unlike($err, qr/secret_project_x|\Q$admin\E/, 'without its sync\'s name or its owner');

# An http sync's expressions do not run another role's functions from the
# schema the extension is in: mallory, allowed to create in public (as in
# a database from before PostgreSQL 15), adds format(text, text), a better
# match than pg_catalog.format(text, VARIADIC "any") for alice's path; the
# request goes where PostgreSQL's format says, and mallory's never runs.
psql(q{CREATE ROLE mallory NOLOGIN; GRANT CREATE ON SCHEMA public TO mallory;
	SET ROLE mallory;
	CREATE FUNCTION public.format(text, text) RETURNS text LANGUAGE plpgsql
	  AS $$ BEGIN RAISE EXCEPTION 'hijacked by mallory'; END $$;
	RESET ROLE;
	SET ROLE alice;
	SELECT retl_create_sync('fmt', 't', 'crm', options => $${
	  "request": {"method": "PUT", "path": "format('/fmt/%s', retl_urlencode(key->>'id'))"}}$$);});
ok(wait_for(sub { grep { $_->{path} eq '/fmt/1' } @{ $api->requests(ok => 1) } }, 30),
	'the path is built with PostgreSQL\'s format, retl_urlencode found');
ok(drained('fmt'), 'fmt: drained');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'fmt'}), '0', 'mallory\'s function never ran');
psql(q{SELECT retl_drop_sync('fmt'); DROP FUNCTION public.format(text, text); REVOKE CREATE ON SCHEMA public FROM mallory});

$node->stop;
done_testing();
