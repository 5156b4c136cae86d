#!/usr/bin/env bash
# Install the Debian 12 packages retl needs to build, test, demo and bench,
# but only when some are missing (nothing is touched otherwise).
#
#   bash test/install-deps.sh
#
# Runs apt-get as root directly, or through sudo for another user.  Used by
# test/run-tests.sh, test/demo.sh and test/bench.sh.
set -euo pipefail

PACKAGES=(
	postgresql-15
	postgresql-server-dev-15
	libcurl4-openssl-dev
	libcjson-dev
	libipc-run-perl
	python3
	make
	gcc
	pkg-config
)

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

"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
