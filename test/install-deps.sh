#!/usr/bin/env bash
# Install the Debian 12 packages retl needs to build, test, demo and bench,
# but only when some are missing (nothing is touched otherwise).
#
#   bash test/install-deps.sh          # build, test and demo
#   bash test/install-deps.sh bench    # the same plus wrk
#
# Runs apt-get as root directly, or through sudo for another user.  Used by
# test/run-tests.sh and test/demo.sh (no argument) and test/bench.sh
# (bench).  The HTTP/2 test and the bench run their own nginx as an
# unprivileged user; when no
# /usr/sbin/policy-rc.d exists, a temporary one keeps the package's system
# service from being started while it is installed.
set -euo pipefail

case ${1:-} in
	'') bench=0 ;;
	bench) bench=1 ;;
	*)
		echo "usage: bash test/install-deps.sh [bench]" >&2
		exit 2
		;;
esac

PACKAGES=(
	postgresql-15
	postgresql-server-dev-15
	libcurl4-openssl-dev
	libcjson-dev
	libxxhash-dev
	libipc-run-perl
	python3
	make
	gcc
	pkg-config
	openssl
	nginx-light
)
if ((bench)); then
	PACKAGES+=(wrk)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	[[ $status == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
	echo "install-deps: all required packages are installed"
	exit 0
fi

echo "install-deps: installing missing packages: ${missing[*]}"
if ((EUID == 0)); then
	as_root=()
elif command -v sudo >/dev/null 2>&1; then
	as_root=(sudo)
else
	echo "install-deps: not root and sudo is not available; as root, run:" >&2
	echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi

# nginx's package starts a system nginx on port 80 unless policy-rc.d says no.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
	"${as_root[@]}" sh -c "printf '#!/bin/sh\\n# temporary, test/install-deps.sh\\nexit 101\\n' >$policy && chmod 755 $policy"
	trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi

"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
