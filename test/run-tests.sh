#!/usr/bin/env bash
# make test: install what is missing, build and install retl, then run the
# pg_regress suite (make installcheck) and the TAP tests (make tap).
#
#   bash test/run-tests.sh
#
# Works as root on a fresh Debian 12 machine (CI runs it that way) and as an
# ordinary user with sudo.  initdb refuses to run as root, so root runs the
# suites as the unprivileged system user retl_test (created when missing);
# either way they run in a temporary copy of the repository, so test
# clusters and logs never land in the working tree.
#
# The last line printed is prove's own summary ("Result: PASS" or
# "Result: FAIL"); the exit status is non-zero when either suite failed.
# The temporary copy is removed on success and kept (with its logs, see the
# path printed before the TAP tests) on failure.
#
# Environment: PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config),
# RETL_TEST_USER (default retl_test), PROVE_TESTS (a subset of test/t/*.pl).
set -uo pipefail

# PG_CONFIG, TEST_USER, section and the retl_* setup functions.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 1

# ---------------------------------------------------------------------------
# Phase 2: run the suites, inside the temporary copy, as an unprivileged user.
# ---------------------------------------------------------------------------
if [[ ${1:-} == --run-suites ]]; then
	copy=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	cd "$copy" || exit 1
	pg_regress="$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress"

	section "pg_regress: make installcheck (temporary instance)"
	make --no-print-directory PG_CONFIG="$PG_CONFIG" installcheck
	regress_rc=$?
	if ((regress_rc != 0)); then
		if [[ -s regression.diffs ]]; then
			section "regression.diffs"
			cat regression.diffs
		fi
		echo
		echo "pg_regress FAILED (exit status $regress_rc)"
	fi

	section "TAP tests: make tap"
	echo "TAP logs: $copy/test/tmp_check/log (kept if a test fails)"
	echo
	# make's own "*** [tap] Error 1" line is dropped so that prove's summary
	# stays the last line.
	TESTDIR="$copy/test" PG_REGRESS="$pg_regress" PG_BINDIR="$("$PG_CONFIG" --bindir)" \
		make -s --no-print-directory PG_CONFIG="$PG_CONFIG" PROVE_FLAGS='--timer' tap 2>&1 |
		sed -u -E '/^make(\[[0-9]+\])?: \*\*\* /d'
	tap_rc=${PIPESTATUS[0]}

	((regress_rc == 0 && tap_rc == 0))
	exit $?
fi

# ---------------------------------------------------------------------------
# Phase 1: dependencies, build, install, temporary copy.
# ---------------------------------------------------------------------------
retl_setup_verbose || exit 1

section "Test copy"
retl_make_workdir test || exit 1
copy="$work/retl"
mkdir "$copy" || exit 1
tar -C "$repo" -cf - \
	--exclude=./.git --exclude=./tmp_check --exclude=./results \
	--exclude=./test/tmp_check --exclude=./log --exclude=./demo_tmp \
	--exclude=./regression.diffs --exclude=./regression.out . |
	tar -C "$copy" -xf - || exit 1

if ((EUID == 0)); then
	echo "running the suites as $TEST_USER in $copy"
else
	echo "running the suites in $copy"
fi
retl_run_as_test_user TMPDIR=/tmp bash "$copy/test/run-tests.sh" --run-suites
rc=$?

((rc == 0)) || keep_work=1
exit $rc
