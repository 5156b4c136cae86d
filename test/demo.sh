#!/usr/bin/env bash
# make demo: build and install retl, start a scratch cluster and the local
# webhook receiver (test/receiver.py), sync a small customers table to it and
# show what arrived.  Everything lives in a temporary directory that is
# removed at the end; nothing listens on TCP except the receiver on
# 127.0.0.1.
#
#   bash test/demo.sh
#
# As root the cluster runs as the unprivileged system user retl_test (created
# when missing), because initdb refuses to run as root.
#
# Environment: PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config),
# RETL_TEST_USER (default retl_test).
set -euo pipefail

# PG_CONFIG, TEST_USER, PYTHON, say and the retl_* setup functions.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Step headings in bold on a terminal.
if [[ -t 1 ]]; then
	say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fi

# ---------------------------------------------------------------------------
# Phase 2: the demo itself, as an unprivileged user, in the work directory.
# ---------------------------------------------------------------------------
if [[ ${1:-} == --inside ]]; then
	# Sets bindir, data, port and PGHOST etc.; stops everything on exit.
	retl_scratch_init "$2"

	say "Creating a scratch cluster in $data (socket in $work, port $port)"
	retl_start_cluster demo <<-EOF
		shared_preload_libraries = 'retl'
		wal_level = logical
		# the receiver is on 127.0.0.1
		retl.allow_private_destinations = on
	EOF
	echo "server log: $work/postgres.log"

	say "Starting the webhook receiver (test/receiver.py) on 127.0.0.1"
	retl_start_receiver --log "$work/receiver.log"
	echo "receiver: http://127.0.0.1:$rport/"

	# a demo prints and goes on: never stop in a pager on a terminal
	export PAGER=cat PSQL_PAGER=cat

	psql_demo()
	{
		"$bindir/psql" -X -q -v ON_ERROR_STOP=1 --echo-queries -P footer=off "$@"
	}

	say "Setting up: extension, source table, secret, destination, sync"
	psql_demo -v hook_url="http://127.0.0.1:$rport/hooks/customers" <<-'EOF'
		CREATE EXTENSION retl;
		CREATE TABLE customers (
		    id    integer PRIMARY KEY,
		    name  text NOT NULL,
		    email text NOT NULL,
		    plan  text NOT NULL DEFAULT 'free'
		);
		INSERT INTO customers VALUES
		    (1, 'Ada Lovelace',    'ada@example.com',   'pro'),
		    (2, 'Grace Hopper',    'grace@example.com', 'free'),
		    (3, 'Alan Turing',     'alan@example.com',  'team');
		SELECT retl_set_secret('hook_token', 's3cr3t') \g /dev/null
		SELECT retl_create_destination(
		    name    => 'crm_hook',
		    kind    => 'webhook',
		    url     => :'hook_url',
		    options => '{"headers": {"Authorization": "Bearer {{secret:hook_token}}"}}') \g /dev/null
		SELECT retl_create_sync(
		    name        => 'customers_to_crm',
		    source      => 'public.customers',
		    destination => 'crm_hook') \g /dev/null
	EOF

	say "Changing rows (the 3 existing rows are sent by the backfill)"
	psql_demo <<-'EOF'
		INSERT INTO customers VALUES (4, 'Edsger Dijkstra', 'edsger@example.com', 'free');
		UPDATE customers SET plan = 'pro' WHERE id = 2;
		DELETE FROM customers WHERE id = 3;
	EOF

	say "Waiting until everything is delivered (at most 30 s)"
	deadline=$((SECONDS + 30))
	while :; do
		left=$("$bindir/psql" -X -Atq -c \
			"SELECT coalesce(sum(pending + in_flight), 0) + count(*) FILTER (WHERE backfilling)
			   FROM retl.sync_status")
		[[ $left == 0 ]] && break
		if ((SECONDS >= deadline)); then
			echo "still not delivered after 30 s ($left left); retl.sync_status:"
			"$bindir/psql" -X -x -c 'SELECT * FROM retl.sync_status'
			echo "server log ($work/postgres.log), last lines:"
			tail -n 20 "$work/postgres.log"
			exit 1
		fi
		sleep 0.2
	done
	echo "done"

	say "SELECT * FROM retl.sync_status"
	"$bindir/psql" -X -x -P footer=off -c 'SELECT * FROM retl.sync_status'

	say "What the receiver got (GET /_requests)"
	"$PYTHON" - "$rport" <<-'EOF'
		import json, sys, urllib.request

		port = sys.argv[1]
		with urllib.request.urlopen("http://127.0.0.1:%s/_requests" % port, timeout=10) as r:
		    requests = json.load(r)
		for d in requests:
		    h = d["headers"]
		    auth = h.get("authorization")
		    if auth is None:
		        auth_note = "(missing!)"
		    elif auth == "Bearer s3cr3t":
		        auth_note = "Bearer *** (hidden; the secret was substituted)"
		    else:
		        auth_note = "*** (hidden; NOT the expected secret)"
		    print("#%d  %s %s  ->  %s" % (d["seq"], d["method"], d["path"], d["status"]))
		    print("    Idempotency-Key: %s" % h.get("idempotency-key"))
		    print("    Authorization:   %s" % auth_note)
		    print("    Content-Type:    %s" % h.get("content-type"))
		    body = json.dumps(d["body"], indent=2, ensure_ascii=False)
		    print("\n".join("    " + line for line in body.splitlines()))
		    print()
		print("%d request(s)" % len(requests))
	EOF

	say "Stopping the cluster and the receiver"
	exit 0
fi

# ---------------------------------------------------------------------------
# Phase 1: dependencies, build, install, work directory, then phase 2.
# ---------------------------------------------------------------------------
retl_setup demo
retl_run_inside demo "the demo"
