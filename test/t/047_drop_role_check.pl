# DROP ROLE's check of retl's objects (process/roles.c) comes after
# PostgreSQL's permission checks: a role that may not drop roles learns
# nothing of another role's syncs, audiences or destination grants from
# trying, and gets PostgreSQL's own refusal.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_retl_node('droprole');

sub psql { return $node->safe_psql('postgres', $_[0]); }

psql(q{CREATE EXTENSION retl;
	CREATE ROLE alice NOLOGIN IN ROLE retl_user;
	CREATE ROLE mallory LOGIN;
	CREATE ROLE admin LOGIN CREATEROLE;
	CREATE TABLE t (id int PRIMARY KEY, v text);
	GRANT SELECT ON t TO alice;
	SELECT retl_create_destination('secret_destination', 'webhook', 'http://127.0.0.1:1/');
	SELECT retl_grant_destination('secret_destination', 'alice');
	SELECT retl_create_sync(name => 'secret_sync', source => 't', destination => 'secret_destination',
		options => '{"owner": "alice"}');});

my ($ret, $out, $err) = $node->psql('postgres', 'DROP ROLE alice', extra_params => [ '-U', 'mallory' ]);
like($err, qr/permission denied to drop role/, 'a role without CREATEROLE gets PostgreSQL\'s refusal');
unlike($err, qr/secret/, 'and is told nothing of alice\'s syncs or grants');

($ret, $out, $err) = $node->psql('postgres', 'DROP ROLE IF EXISTS alice', extra_params => [ '-U', 'mallory' ]);
unlike($err, qr/secret/, 'nor with IF EXISTS');

# One that may drop roles is told what depends on the role.
($ret, $out, $err) = $node->psql('postgres', 'DROP ROLE alice', extra_params => [ '-U', 'admin' ]);
like($err, qr/owner of sync "secret_sync"/, 'a role with CREATEROLE is told of its sync');
is(psql(q{SELECT count(*) FROM pg_roles WHERE rolname = 'alice'}), '1', 'and alice stays');

$node->stop;
done_testing();
