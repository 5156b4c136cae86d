# Shared setup for test/run-tests.sh, test/demo.sh and test/bench.sh; sourced
# by them, not run.
#
# Each of those scripts runs in two phases.  Phase 1, as the caller (root or
# an ordinary user with sudo): install missing packages, build and install
# retl, make a temporary work directory (removed on exit) and run the script
# again for phase 2 there, as the unprivileged system user $TEST_USER when
# root, since initdb refuses to run as root.  Phase 2 of the demo and the
# benchmark starts a scratch cluster and the webhook receiver in that
# directory.
#
# Functions return non-zero on failure; the callers exit then (set -e, or
# an explicit "|| exit 1").  They set plain global variables, named in their
# comments: repo, as_root, work, keep_work, bindir, data, port, receiver_pid,
# rport.
#
# Environment: PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config),
# RETL_TEST_USER (default retl_test).

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
TEST_USER=${RETL_TEST_USER:-retl_test}
PYTHON=/usr/bin/python3
RETL_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Print a run-tests.sh heading: "======== TITLE ========" between blank lines.
section()
{
	printf '\n======== %s ========\n\n' "$*"
}

# Print a demo/bench step heading: a blank line, then "==> TITLE".
say()
{
	printf '\n==> %s\n' "$*"
}

# ---------------------------------------------------------------------------
# Phase 1
# ---------------------------------------------------------------------------

# cd to the repository and set repo, and as_root (sudo when not root and sudo exists).
retl_enter_repo()
{
	repo=$(cd "$RETL_LIB_DIR/.." && pwd) || return
	cd "$repo" || return
	if ((EUID == 0)); then
		as_root=()
	elif command -v sudo >/dev/null 2>&1; then
		as_root=(sudo)
	else
		as_root=()		# make install fails with a clear message if it cannot write
	fi
}

# Install missing packages, build and install retl, showing all output (run-tests.sh).
retl_setup_verbose()
{
	retl_enter_repo || return

	section "Dependencies"
	bash test/install-deps.sh || return

	section "Build: make"
	make --no-print-directory PG_CONFIG="$PG_CONFIG" || return

	section "Install: ${as_root[*]:+${as_root[*]} }make install"
	"${as_root[@]}" make --no-print-directory PG_CONFIG="$PG_CONFIG" install
}

# Install missing packages (install-deps.sh DEPS..., e.g. bench), build and
# install retl; make's output only on failure.
retl_setup()
{
	local name=$1 build_log

	retl_enter_repo || return

	say "Checking packages"
	bash test/install-deps.sh "${@:2}" || return

	say "Building and installing retl"
	build_log=$(mktemp "${TMPDIR:-/tmp}/retl-$name-build.XXXXXX") || return
	if ! { make --no-print-directory PG_CONFIG="$PG_CONFIG" &&
		"${as_root[@]}" make --no-print-directory PG_CONFIG="$PG_CONFIG" install; } >"$build_log" 2>&1; then
		cat "$build_log"
		rm -f "$build_log"
		return 1
	fi
	rm -f "$build_log"
	echo "installed into $("$PG_CONFIG" --pkglibdir)"
}

# Set work to a new temporary retl-NAME.XXXXXX, removed on exit unless keep_work=1.
retl_make_workdir()
{
	local name=$1

	if ((EUID == 0)); then
		if ! id -u "$TEST_USER" >/dev/null 2>&1; then
			echo "creating system user $TEST_USER (initdb refuses to run as root)"
			useradd --system --create-home --shell /bin/bash "$TEST_USER" || return
		fi
		work=$(mktemp -d "/tmp/retl-$name.XXXXXX") || return
	else
		work=$(mktemp -d "${TMPDIR:-/tmp}/retl-$name.XXXXXX") || return
	fi
	keep_work=0
	trap retl_remove_workdir EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# EXIT trap of retl_make_workdir: remove $work unless keep_work is 1.
retl_remove_workdir()
{
	if ((keep_work == 0)); then
		rm -rf "$work"
	fi
}

# Run [NAME=VALUE...] CMD... as $TEST_USER in $work when root, else CMD... as is.
retl_run_as_test_user()
{
	local vars=()

	while [[ ${1:-} =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do
		vars+=("$1")
		shift
	done
	if ((EUID == 0)); then
		chown -R "$TEST_USER": "$work" || return
		cd "$work" || return
		runuser -u "$TEST_USER" -- env PG_CONFIG="$PG_CONFIG" "${vars[@]}" "$@"
	else
		"$@"
	fi
}

# Copy test/NAME.sh, lib.sh and receiver.py to a new work dir and run NAME.sh --inside there.
retl_run_inside()
{
	local name=$1 what=$2

	shift 2
	retl_make_workdir "$name" || return
	cp "test/$name.sh" test/lib.sh test/receiver.py "$work/" || return
	# files of its own (bench: the peers' shape, test/bench/peer_http.c)
	if [[ -d test/$name ]]; then
		cp -r "test/$name/." "$work/" || return
		# (the version, which bench's libcurl client names in its User-Agent)
		cp src/base/version.h "$work/" || return
	fi
	if ((EUID == 0)); then
		echo "running $what as $TEST_USER"
	fi
	retl_run_as_test_user "$@" bash "$work/$name.sh" --inside "$work"
}

# ---------------------------------------------------------------------------
# Phase 2 of demo.sh and bench.sh
# ---------------------------------------------------------------------------

# cd to WORK, set bindir, data, a free port and PG* for a scratch cluster there.
retl_scratch_init()
{
	work=$1
	cd "$work" || return
	bindir=$("$PG_CONFIG" --bindir) || return
	data="$work/data"
	receiver_pid=
	cluster_started=0
	trap retl_scratch_stop EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	# The server listens on a Unix socket in $work only; the port just has
	# to be unused, so take one the kernel calls free.
	port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') ||
		return
	export PGHOST="$work" PGPORT="$port" PGUSER=postgres PGDATABASE=postgres
}

# EXIT trap of retl_scratch_init: stop the cluster and the receiver if started.
retl_scratch_stop()
{
	set +e
	if ((cluster_started)); then
		"$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1
	fi
	if [[ -n $receiver_pid ]]; then
		kill "$receiver_pid" 2>/dev/null
		wait "$receiver_pid" 2>/dev/null
	fi
}

# initdb and start the scratch cluster; stdin holds extra postgresql.conf lines.
retl_start_cluster()
{
	local name=$1

	"$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
		>"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; return 1; }
	{
		cat <<-EOF

			# retl $name
			listen_addresses = ''
			unix_socket_directories = '$work'
			port = $port
		EOF
		cat
	} >>"$data/postgresql.conf" || return
	"$bindir/pg_ctl" -D "$data" -l "$work/postgres.log" -w start >/dev/null ||
		{ cat "$work/postgres.log"; return 1; }
	cluster_started=1
}

# Start $work/receiver.py [ARGS...] on 127.0.0.1; set receiver_pid and rport.
retl_start_receiver()
{
	"$PYTHON" "$work/receiver.py" --port 0 --port-file "$work/receiver.port" "$@" --quiet \
		2>"$work/receiver.stderr" &
	receiver_pid=$!
	for _ in $(seq 100); do
		[[ -s $work/receiver.port ]] && break
		kill -0 "$receiver_pid" 2>/dev/null || { cat "$work/receiver.stderr"; return 1; }
		sleep 0.1
	done
	[[ -s $work/receiver.port ]] || { echo "receiver did not start" >&2; return 1; }
	rport=$(<"$work/receiver.port")
}
