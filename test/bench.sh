#!/usr/bin/env bash
# make bench: delivery throughput and capture overhead of retl, measured on a
# scratch cluster against the local webhook receiver (test/receiver.py):
#
#   (a) the receiver's own ceiling: requests/s one keep-alive client can push
#   (b) rows/s delivered with batch_size 1   (5,000 rows inserted in one transaction)
#   (c) rows/s delivered with batch_size 100 (50,000 rows inserted in one transaction)
#   (d) insert TPS (pgbench, 2 clients, 15 s runs, two per variant) on a table
#       without a sync, with an upsert sync whose delivery is paused (capture
#       only), and with an upsert sync delivering to the receiver meanwhile
#   (e) a diff run of a 1M-row model with 1% of its rows changed, next to the
#       bare query's time, and the worker's peak memory (BENCH_MODEL_ROWS)
#
#   bash test/bench.sh
#
# Takes about 3 minutes.  As root the cluster runs as the unprivileged
# system user retl_test (created when missing); everything lives in a
# temporary directory removed at the end.
#
# Environment: PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config),
# RETL_TEST_USER (default retl_test), BENCH_SECONDS (pgbench run length, 15).
set -euo pipefail

# PG_CONFIG, TEST_USER, PYTHON, say and the retl_* setup functions.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------------------
# Phase 2: the benchmark, as an unprivileged user, in the work directory.
# ---------------------------------------------------------------------------
if [[ ${1:-} == --inside ]]; then
	# Sets bindir, data, port and PGHOST etc.; stops everything on exit.
	retl_scratch_init "$2"

	N_CEILING=3000
	N_BATCH1=5000
	N_BATCH100=50000
	BENCH_SECONDS=${BENCH_SECONDS:-15}
	WAIT_TIMEOUT=180

	q()
	{
		"$bindir/psql" -X -Atq -v ON_ERROR_STOP=1 "$@"
	}
	calc()
	{
		awk "BEGIN { printf \"%.${2:-1}f\", $1 }"
	}

	say "Scratch cluster in $data"
	# Defaults otherwise (fsync and synchronous_commit on); no checkpoint
	# should start in the middle of a measurement.
	retl_start_cluster bench <<-EOF
		shared_preload_libraries = 'retl, pg_stat_statements'
		wal_level = logical
		min_wal_size = 2GB
		max_wal_size = 8GB
		checkpoint_timeout = 30min
	EOF

	# No --log: the receiver keeps deliveries in memory only.
	retl_start_receiver
	hook="http://127.0.0.1:$rport/hooks"

	receiver()
	{
		"$PYTHON" - "$rport" "$@" <<-'EOF'
			import json, sys, urllib.request
			port, method, path = sys.argv[1:4]
			req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path), method=method,
			                             data=b"" if method == "POST" else None)
			with urllib.request.urlopen(req, timeout=30) as r:
			    out = json.load(r)
			if len(sys.argv) > 4:
			    out = out[sys.argv[4]]
			print(out if not isinstance(out, (dict, list)) else json.dumps(out))
		EOF
	}

	pg_version=$(q -c 'SHOW server_version')
	echo "PostgreSQL $pg_version, $(nproc) CPUs, synchronous_commit=$(q -c 'SHOW synchronous_commit'), receiver on 127.0.0.1:$rport"

	q <<-EOF
		CREATE EXTENSION retl;
		CREATE EXTENSION pg_stat_statements;
		SELECT retl_create_destination(name => 'batch1', kind => 'webhook',
		    url => '$hook/batch1', options => '{"batch_size": 1}') \g /dev/null
		SELECT retl_create_destination(name => 'batch100', kind => 'webhook',
		    url => '$hook/batch100', options => '{"batch_size": 100}') \g /dev/null
		CREATE TABLE bench_b1 (id integer PRIMARY KEY, v text NOT NULL);
		CREATE TABLE bench_b100 (id integer PRIMARY KEY, v text NOT NULL);
		CREATE TABLE tps_plain (id bigint PRIMARY KEY, v text NOT NULL);
		CREATE TABLE tps_capture (id bigint PRIMARY KEY, v text NOT NULL);
		CREATE TABLE tps_deliver (id bigint PRIMARY KEY, v text NOT NULL);
	EOF

	# -- (a) receiver ceiling ---------------------------------------------
	say "(a) Receiver ceiling: $N_CEILING POSTs of a one-record body, 1 keep-alive connection"
	ceiling=$("$PYTHON" - "$rport" "$N_CEILING" <<-'EOF'
		import http.client, json, sys, time
		port, n = int(sys.argv[1]), int(sys.argv[2])
		body = json.dumps({"sync": "ceiling", "records": [{
		    "id": "0123456789ab-1", "op": "upsert", "key": {"id": 1},
		    "data": {"id": 1, "v": "x"}, "captured_at": "2024-01-01T00:00:00.000000Z"}]}).encode()
		conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
		def post(i):
		    conn.request("POST", "/hooks/ceiling", body, {
		        "Content-Type": "application/json", "Idempotency-Key": "0123456789ab-%d" % i})
		    r = conn.getresponse()
		    r.read()
		    if r.status != 200:
		        sys.exit("receiver answered %d" % r.status)
		for i in range(100):  # warm-up
		    post(i)
		t0 = time.perf_counter()
		for i in range(n):
		    post(i)
		print("%.1f" % (n / (time.perf_counter() - t0)))
	EOF
	)
	echo "receiver ceiling: $ceiling requests/s"
	receiver POST /_clear >/dev/null

	# -- (b), (c) delivery throughput -------------------------------------
	# deliver_run BATCH_SIZE N: create the sync bBATCH_SIZE from table
	# bench_bBATCH_SIZE to destination batchBATCH_SIZE, insert N rows in one
	# transaction, then time from its commit until the sync's delivered
	# counter reaches N (polled every 0.1 s).  Sets secs, reqs (requests the
	# receiver answered 2xx), rate (rows/s), reqrate (requests/s) and ratio
	# (rate / receiver ceiling), then clears the receiver.
	deliver_run()
	{
		local sync=b$1 table=bench_b$1 destination=batch$1 n=$2 t0 row delivered t1
		q -c "SELECT retl_create_sync(name => '$sync', source => '$table', destination => '$destination',
		                              options => '{\"backfill\": false}')" >/dev/null
		t0=$(q <<-EOF
			INSERT INTO $table SELECT g, 'x' FROM generate_series(1, $n) g;
			SELECT extract(epoch FROM clock_timestamp());
		EOF
		)
		while :; do
			row=$(q -F ' ' -c "SELECT delivered, extract(epoch FROM clock_timestamp())
			                     FROM retl.sync_status WHERE sync = '$sync'")
			read -r delivered t1 <<<"$row"
			((delivered >= n)) && break
			if [[ $(calc "$t1 - $t0 > $WAIT_TIMEOUT" 0) == 1 ]]; then
				echo "timed out after $WAIT_TIMEOUT s with $delivered of $n rows delivered:" >&2
				"$bindir/psql" -X -x -c "SELECT * FROM retl.sync_status WHERE sync = '$sync'" >&2
				tail -n 20 "$work/postgres.log" >&2
				return 1
			fi
			sleep 0.1
		done
		secs=$(calc "$t1 - $t0" 3)
		reqs=$(receiver GET /_stats ok)
		rate=$(calc "$n / $secs")
		reqrate=$(calc "$reqs / $secs")
		ratio=$(calc "$rate / $ceiling" 2)
		receiver POST /_clear >/dev/null
	}

	say "(b) Delivery with batch_size 1: $N_BATCH1 rows inserted in one transaction"
	deliver_run 1 "$N_BATCH1"
	rate_b1=$rate ratio_b1=$ratio
	echo "$N_BATCH1 rows in $secs s: $rate rows/s in $reqs requests ($ratio x the receiver ceiling)"

	say "(c) Delivery with batch_size 100: $N_BATCH100 rows inserted in one transaction"
	deliver_run 100 "$N_BATCH100"
	rate_b100=$rate ratio_b100=$ratio reqrate_b100=$reqrate
	echo "$N_BATCH100 rows in $secs s: $rate rows/s in $reqs requests ($reqrate requests/s; $ratio x the receiver ceiling)"

	# -- (d) capture overhead on insert TPS ---------------------------------
	# Sets run_tps, and run_us: the INSERT's mean execution time in
	# microseconds from pg_stat_statements, capture trigger included and
	# commit excluded, so it shows the capture's cost even where commit
	# latency (fsync, waking idle CPUs) decides the TPS.
	tps_run()
	{
		local table=$1 seconds=${2:-$BENCH_SECONDS}
		cat >"$work/$table.pgbench" <<-EOF
			\set id random(1, 1000000000000)
			INSERT INTO $table (id, v) VALUES (:id, 'x') ON CONFLICT DO NOTHING;
		EOF
		q -c CHECKPOINT -c 'SELECT pg_stat_statements_reset()' >/dev/null
		"$bindir/pgbench" -n -c 2 -j 2 -T "$seconds" -f "$work/$table.pgbench" \
			>"$work/$table.out" 2>&1 || { cat "$work/$table.out" >&2; return 1; }
		run_tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$work/$table.out")
		[[ -n $run_tps ]] || { cat "$work/$table.out" >&2; return 1; }
		run_tps=$(calc "$run_tps")
		run_us=$(q -c "SELECT round((sum(total_exec_time) / sum(calls) * 1000)::numeric, 1)
		                 FROM pg_stat_statements WHERE query LIKE 'INSERT INTO $table %'")
	}

	say "(d) Insert TPS, pgbench -c 2 -j 2 -T $BENCH_SECONDS, single-row INSERTs"
	# Each variant inserts into its own table: tps_plain has no sync,
	# tps_capture an upsert sync that stays paused (the trigger queues every
	# change, nothing is sent), tps_deliver an upsert sync resumed only while
	# its own runs last, delivering to the receiver with batch_size 100.
	# Runs go in the order A B C C B A and each variant's two runs are
	# averaged, which cancels a steady drift of the machine.
	q <<-EOF
		SELECT retl_create_sync(name => 'tps_capture', source => 'tps_capture',
		    destination => 'batch100') \g /dev/null
		SELECT retl_pause_sync('tps_capture') \g /dev/null
		SELECT retl_create_sync(name => 'tps_deliver', source => 'tps_deliver',
		    destination => 'batch100') \g /dev/null
		SELECT retl_pause_sync('tps_deliver') \g /dev/null
	EOF
	# Warm-up: ~300 MB of WAL that the checkpoints before each run recycle
	# (min_wal_size), so that no run pays for creating WAL segments, then a
	# short unmeasured pgbench run.
	q <<-EOF
		CREATE TABLE wal_warmup AS SELECT g, repeat('x', 100) AS v FROM generate_series(1, 1500000) g;
		DROP TABLE wal_warmup;
	EOF
	tps_run tps_plain 5

	declare -A tps_sum=([plain]=0 [capture]=0 [deliver]=0)
	declare -A us_sum=([plain]=0 [capture]=0 [deliver]=0)
	declare -A label=([plain]='no sync                    '
	                  [capture]='upsert sync, paused        '
	                  [deliver]='upsert sync, delivering    ')
	run=0
	for variant in plain capture deliver deliver capture plain; do
		run=$((run + 1))
		if [[ $variant == deliver ]]; then
			q -c "SELECT retl_resume_sync('tps_deliver')" >/dev/null
			before=$(q -c "SELECT delivered FROM retl.sync_status WHERE sync = 'tps_deliver'")
		fi
		tps_run "tps_$variant"
		tps_sum[$variant]=$(calc "${tps_sum[$variant]} + $run_tps")
		us_sum[$variant]=$(calc "${us_sum[$variant]} + $run_us")
		note=
		case $variant in
			capture)
				note="($(q -c "SELECT pending FROM retl.sync_status WHERE sync = 'tps_capture'") changes queued so far)"
				;;
			deliver)
				IFS='|' read -r after backlog < <(q -c "SELECT delivered, pending + in_flight
				                                        FROM retl.sync_status WHERE sync = 'tps_deliver'")
				q -c "SELECT retl_pause_sync('tps_deliver')" >/dev/null
				note="($((after - before)) rows delivered during the run, $backlog queued at its end)"
				;;
		esac
		printf 'run %d/6  %s %8s TPS  %6s us/INSERT  %s\n' "$run" "${label[$variant]}" "$run_tps" "$run_us" "$note"
	done
	tps_plain=$(calc "${tps_sum[plain]} / 2")
	tps_capture=$(calc "${tps_sum[capture]} / 2")
	tps_deliver=$(calc "${tps_sum[deliver]} / 2")
	ratio_capture=$(calc "$tps_capture / $tps_plain" 2)
	ratio_deliver=$(calc "$tps_deliver / $tps_plain" 2)
	us_plain=$(calc "${us_sum[plain]} / 2")
	us_capture=$(calc "${us_sum[capture]} / 2")
	us_deliver=$(calc "${us_sum[deliver]} / 2")
	usratio_capture=$(calc "$us_capture / $us_plain" 2)
	usratio_deliver=$(calc "$us_deliver / $us_plain" 2)

	# -- (e) diff run of a large model ------------------------------------
	N_MODEL=${BENCH_MODEL_ROWS:-1000000}
	say "(e) Diff run of a $N_MODEL-row model, 1% of its rows changed between runs"
	model_query="SELECT id, segment, score, email FROM model_src WHERE segment >= 0"
	q <<-EOF
		SELECT retl_create_destination(name => 'model', kind => 'webhook',
		    url => '$hook/model', options => '{"batch_size": 1000}') \g /dev/null
		CREATE TABLE model_src (id integer PRIMARY KEY, segment integer NOT NULL,
		    score numeric NOT NULL, email text NOT NULL);
		INSERT INTO model_src SELECT g, g % 100, g * 1.5, 'user' || g || '@example.com'
		  FROM generate_series(1, $N_MODEL) g;
		VACUUM ANALYZE model_src;
	EOF

	# Wait for the newest run of the model sync; print its time in ms and counts.
	model_run()
	{
		local deadline=$((SECONDS + 600)) status
		while :; do
			status=$(q -c "SELECT status FROM retl.runs WHERE sync = 'model' ORDER BY id DESC LIMIT 1")
			[[ $status == succeeded || $status == failed ]] && break
			((SECONDS < deadline)) || { echo "model run did not finish" >&2; exit 1; }
			sleep 0.2
		done
		[[ $status == succeeded ]] || { q -c "SELECT error FROM retl.runs WHERE sync = 'model' ORDER BY id DESC LIMIT 1" >&2; exit 1; }
		q -c "SELECT round(extract(epoch FROM finished_at - started_at) * 1000), rows, added, changed, removed
		      FROM retl.runs WHERE sync = 'model' ORDER BY id DESC LIMIT 1"
	}

	# The first run only records the snapshot (backfill false: nothing sent).
	q -c "SELECT retl_create_sync(name => 'model', source => \$q\$$model_query\$q\$,
	      destination => 'model', key => '{id}', mode => 'mirror', schedule => 'manual',
	      options => '{\"backfill\": false}')" >/dev/null
	IFS='|' read -r first_ms first_rows _ <<<"$(model_run)"
	echo "first run (snapshot of $first_rows rows, nothing sent): $first_ms ms"

	q -c "UPDATE model_src SET score = score + 1 WHERE id % 100 = 0" >/dev/null
	q -c "VACUUM ANALYZE model_src" >/dev/null
	bare_ms=$(q -c "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) SELECT count(*) FROM ($model_query) q" |
		sed -n 's/.*Execution Time: \([0-9.]*\) ms.*/\1/p')
	q -c "SELECT retl_run_sync('model')" >/dev/null
	IFS='|' read -r run_ms run_rows run_added run_changed run_removed <<<"$(model_run)"
	wpid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'retl worker'")
	hwm_kb=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$wpid/status")
	anon_kb=$(sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$wpid/status")
	ratio_model=$(calc "$run_ms / $bare_ms" 1)
	echo "bare query (SELECT count(*) FROM (query)): $bare_ms ms"
	echo "diff run: $run_ms ms for $run_rows rows: $run_added added, $run_changed changed, $run_removed removed"
	echo "worker: peak RSS $hwm_kb kB (shared buffers it touched included), private memory $anon_kb kB"

	say "Summary"
	cat <<-EOF
		PostgreSQL $pg_version, $(nproc) CPUs, fsync and synchronous_commit on

		  measurement                                      result           vs
		  -----------------------------------------------  ---------------  ------------------------
		  (a) receiver ceiling, 1 keep-alive connection    $(printf '%9s req/s ' "$ceiling")
		  (b) delivery, batch_size 1,   $(printf '%6d' "$N_BATCH1") rows         $(printf '%9s rows/s' "$rate_b1")  $(printf '%5s' "$ratio_b1") x ceiling
		  (c) delivery, batch_size 100, $(printf '%6d' "$N_BATCH100") rows         $(printf '%9s rows/s' "$rate_b100")  $(printf '%5s' "$ratio_b100") x ceiling ($reqrate_b100 req/s)
		  (d) insert TPS, no sync (mean of 2 runs)         $(printf '%9s TPS   ' "$tps_plain")
		      insert TPS, upsert sync, delivery paused     $(printf '%9s TPS   ' "$tps_capture")  $(printf '%5s' "$ratio_capture") x no sync
		      insert TPS, upsert sync, delivering          $(printf '%9s TPS   ' "$tps_deliver")  $(printf '%5s' "$ratio_deliver") x no sync
		      INSERT execution time, no sync               $(printf '%9s us    ' "$us_plain")
		      INSERT execution time, sync paused           $(printf '%9s us    ' "$us_capture")  $(printf '%5s' "$usratio_capture") x no sync
		      INSERT execution time, sync delivering       $(printf '%9s us    ' "$us_deliver")  $(printf '%5s' "$usratio_deliver") x no sync
		  (e) diff run, $(printf '%7d' "$N_MODEL")-row model, 1% changed   $(printf '%9s ms    ' "$run_ms")  $(printf '%5s' "$ratio_model") x bare query ($bare_ms ms)
		      worker peak RSS / private memory after it    $(printf '%9s kB    ' "$hwm_kb")  $anon_kb kB private

		  INSERT execution time: pg_stat_statements mean, capture trigger included,
		  commit excluded.  Single-row commit TPS depends mostly on commit latency;
		  on virtual machines retl's worker, woken at every commit, keeps CPUs out
		  of idle states and can make the runs with a sync faster.
	EOF
	exit 0
fi

# ---------------------------------------------------------------------------
# Phase 1: dependencies, build, install, work directory, then phase 2.
# ---------------------------------------------------------------------------
retl_setup bench
retl_run_inside bench "the benchmark" BENCH_SECONDS="${BENCH_SECONDS:-15}"
