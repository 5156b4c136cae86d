# Rows that leave a logically synced partitioned table by DDL that names
# a partition in ways 010_logical does not: DROP TABLE of a partition by
# the owner of its schema (who may drop it without owning it), and
# TRUNCATE ... CASCADE reaching a partition through a foreign key of its
# own.  Each key leaving is deleted at the destination.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $r = start_receiver();
my $node = new_retl_node('partddl');

sub psql { return $node->safe_psql('postgres', $_[0]); }

sub states
{
	my %last;
	for my $rec (@{ records_at($r, '/pt') })
	{
		$last{"$rec->{key}{id}/$rec->{key}{region}"} = $rec->{op} eq 'delete' ? 'deleted' : $rec->{data}{v};
	}
	return join(' ', map { "$_=$last{$_}" } sort keys %last);
}

# (where this PostgreSQL has output_plugin_libraries, retl must be in it)
psql(q{ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, retl; SELECT pg_reload_conf();})
  if psql(q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '1';
psql(q{CREATE EXTENSION retl;
	CREATE ROLE schema_owner NOLOGIN;
	CREATE SCHEMA parts AUTHORIZATION schema_owner;
	CREATE TABLE ref (id int PRIMARY KEY);
	INSERT INTO ref VALUES (1);
	CREATE TABLE pt (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
	CREATE TABLE parts.pt_eu PARTITION OF pt FOR VALUES IN ('eu');
	CREATE TABLE pt_us PARTITION OF pt FOR VALUES IN ('us');
	CREATE TABLE pt_fr PARTITION OF pt FOR VALUES IN ('fr');
	ALTER TABLE pt_fr ADD FOREIGN KEY (id) REFERENCES ref (id);
	INSERT INTO pt VALUES (1, 'eu', 'a'), (1, 'us', 'b'), (1, 'fr', 'c');
	SELECT retl_create_destination(name => 'dpt', kind => 'webhook', url => '} . $r->url('/pt') . q{');
	SELECT retl_create_sync(name => 'ptsync', source => 'pt', destination => 'dpt', capture => 'logical');});
ok(wait_for(sub { states() eq '1/eu=a 1/fr=c 1/us=b' }, 30), 'backfilled') or diag(states());

# The owner of the partition's schema drops it: PostgreSQL allows it.
psql(q{SET ROLE schema_owner; DROP TABLE parts.pt_eu; RESET ROLE;});
ok(wait_for(sub { states() eq '1/eu=deleted 1/fr=c 1/us=b' }, 30),
	'DROP TABLE of a partition by its schema\'s owner: its keys deleted') or diag(states());

# TRUNCATE of a table a partition's own foreign key refers to, CASCADE.
psql(q{TRUNCATE ref CASCADE});
ok(wait_for(sub { states() eq '1/eu=deleted 1/fr=deleted 1/us=b' }, 30),
	'TRUNCATE ... CASCADE reaching a partition: its keys deleted') or diag(states());

unlike(slurp_file($node->logfile), qr/PANIC|TRAP/, 'no crash');
$node->stop;
$r->stop;
done_testing();
