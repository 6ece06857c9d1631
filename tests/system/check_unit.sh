#!/bin/sh
# dist/switchboard.service checked by systemd itself: `systemd-analyze
# verify` on a copy whose ExecStart is the daemon just built (verify wants
# the binary to exist), which must say nothing at all: systemd 252 exits 0
# even for an unknown key or a bad value, and only warns. A copy with a
# misspelled key must be warned about, so a verify that checks nothing
# (no systemd-analyze, a unit it never read) fails here too.
# Works as root in a container without systemd as PID 1.
# Usage: check_unit.sh UNIT DAEMON
set -u
unit=$1 daemon=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check_unit: $*" >&2; exit 1; }

command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (Debian package systemd; tools/bootstrap)"
grep -q '^ExecStart=/usr/local/bin/switchboard ' "$unit" || fail "ExecStart is not /usr/local/bin/switchboard"
sed "s|^ExecStart=/usr/local/bin/switchboard |ExecStart=$daemon |" "$unit" >"$tmp/switchboard.service"
out=$(cd "$tmp" && systemd-analyze verify "$tmp/switchboard.service" 2>&1)
rc=$?
[ $rc -eq 0 ] || fail "systemd-analyze verify exited $rc: $out"
[ -z "$out" ] || fail "systemd-analyze verify warned: $out"

# What the daemon relies on is there: readiness by notify, SIGHUP to reload.
for want in 'Type=notify' 'ExecReload=/bin/kill -HUP $MAINPID' 'NoNewPrivileges=yes' \
	'ProtectSystem=strict' 'PrivateTmp=yes' 'ProtectHome=yes' 'RestrictAddressFamilies=' \
	'LimitNOFILE=' 'WatchdogSec='; do
	grep -qF "$want" "$unit" || fail "the unit has no $want"
done

sed 's/^NoNewPrivileges=/NoNewPrivilege=/' "$tmp/switchboard.service" >"$tmp/broken.service"
out=$(cd "$tmp" && systemd-analyze verify "$tmp/broken.service" 2>&1)
echo "$out" | grep -q "NoNewPrivilege" || fail "a misspelled key went unnoticed: $out"
echo "check_unit: ok"
