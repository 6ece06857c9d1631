#!/usr/bin/env bash
# ctest's "js": the JavaScript client's tests against the binaries CMake
# built (the daemon, sbctl, the C interop peer), after installing the locked
# npm dependencies when node_modules is missing or older than the lock.
# usage: run.sh SWITCHBOARD SBCTL SB_JS_PEER
set -euo pipefail
SB_DAEMON=$(realpath "$1") SBCTL=$(realpath "$2") SB_JS_PEER=$(realpath "$3")
export SB_DAEMON SBCTL SB_JS_PEER
cd "$(dirname "$0")/.."
(
	# Build trees may run their suites at once: one npm ci at a time.
	flock 9
	if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
		# --ignore-scripts: msgpackr's optional native accelerator needs no
		# build step (its prebuilt binary comes as a package, or it is skipped).
		npm ci --prefer-offline --no-audit --no-fund --ignore-scripts --loglevel=error
	fi
) 9>node_modules.lock
exec node --test test/*.test.js
