# Helpers for TAP tests of diff runs (models/): a cluster set to plan
# parallel statements, runs waited for, and what they sent.
#
#   use lib 'test/perl';
#   use RetlTest;
#   use RetlRuns;
#
#   my $node = new_retl_node('x', extra_conf => $RetlRuns::PARALLEL_CONF);
#   is(run_sync($node, 'sync'), 'succeeded|100|0|10|0|', 'a run');

package RetlRuns;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Utils;

our @EXPORT = qw(wait_run run_sync first_run parallel_statements);

# Settings that have the planner read tables of tens of thousands of rows
# with a leader and two workers, and auto_explain show it (with the
# DEBUG1 messages of runs).
our $PARALLEL_CONF = q{
retl.poll_interval_ms = 200
max_worker_processes = 16
max_parallel_workers = 8
max_parallel_workers_per_gather = 2
parallel_setup_cost = 0
parallel_tuple_cost = 0
min_parallel_table_scan_size = 0
shared_preload_libraries = 'retl, auto_explain'
auto_explain.log_min_duration = 0
auto_explain.log_nested_statements = on
auto_explain.log_analyze = on
auto_explain.log_timing = off
log_min_messages = debug1
};

sub wait_run
{
	my ($node, $id) = @_;
	$node->poll_query_until('postgres',
		"SELECT status <> 'queued' AND status <> 'running' FROM retl.runs WHERE id = $id")
	  or die "run $id did not finish";
}

# Run a sync, wait for it and for its queue to drain: "status|rows|added|
# changed|removed|error"
sub run_sync
{
	my ($node, $sync) = @_;
	my $id = $node->safe_psql('postgres', "SELECT retl_run_sync('$sync')");
	wait_run($node, $id);
	$node->poll_query_until('postgres',
		"SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$sync'")
	  or die "queue of $sync did not drain";
	return $node->safe_psql('postgres',
		"SELECT status, rows, added, changed, removed, error FROM retl.runs WHERE id = $id");
}

# The first run of a sync (as run_sync), once it ended
sub first_run
{
	my ($node, $sync) = @_;
	$node->poll_query_until('postgres',
		"SELECT status IN ('succeeded', 'failed') FROM retl.runs WHERE sync = '$sync' ORDER BY id LIMIT 1")
	  or die "the first run of $sync did not finish";
	return $node->safe_psql('postgres',
		"SELECT status, rows, added, changed, removed, error FROM retl.runs WHERE sync = '$sync' ORDER BY id LIMIT 1");
}

# The plans auto_explain logged since offset, of the statements that
# filter a query's rows with the probe: how many had workers launched.
sub parallel_statements
{
	my ($node, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my $n = 0;
	for my $plan (split /(?=^\S.*LOG:  duration: )/m, $log)
	{
		$n++ if $plan =~ /_run_probe_filter/ && $plan =~ /Workers Launched: [1-9]/;
	}
	return $n;
}

1;
