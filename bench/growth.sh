#!/usr/bin/env bash
# What the router's memory and CPU do as connections and names grow
# (docs/performance.md, "How cost grows"). Each mode starts a fresh server
# on a free port, holds what it measures open with `sb-bench conns`, and prints one
# line of figures read from /proc/PID/status and /proc/PID/stat.
#   bench/growth.sh idle  BIN N [SHARDS]      router RSS with N idle connections
#   bench/growth.sh nats  BIN N               nats-server RSS with N idle connections
#   bench/growth.sh names BIN N PER [SHARDS]  router RSS with N names, PER per connection
#   bench/growth.sh churn BIN NAMES K [SHARDS] [REGS]
#                                 router CPU to open and close K connections
#                                 while NAMES names are registered; with REGS,
#                                 each of the K is a service with REGS names
# BIN is the build's bin directory (switchboard, sb-bench), e.g.
# build/release/bin after configuring with -DSB_BENCH=ON. One process holds
# at most `ulimit -Hn` connections: N above it needs the limit raised.
set -euo pipefail
mode=${1:-} bin=${2:-}
[ -n "$mode" ] && [ -x "$bin/sb-bench" ] || {
	sed -n '6,15p' "$0" >&2
	exit 2
}
work=$(mktemp -d /tmp/sb-growth.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# until FILE holds PATTERN, for at most 120 s
await() {
	for _ in $(seq 1200); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "growth: timed out waiting for '$2' in $1" >&2
	exit 1
}
mib() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tick_ms=$((1000 / $(getconf CLK_TCK)))
# start_router SHARDS [ARGS...]: sets $srv and $port
start_router() {
	local shards=$1
	shift
	"$bin/switchboard" --port 0 --log-level 0 --shards "$shards" --max-conns-per-addr 0 "$@" \
		>"$work/server" &
	srv=$!
	pids+=("$srv")
	await "$work/server" listening
	port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\) .*/\1/p' "$work/server")
}
# hold ARGS...: sb-bench conns with ARGS until this script ends, once all are open
hold() {
	"$bin/sb-bench" conns --port "$port" "$@" >"$work/held" &
	pids+=("$!")
	await "$work/held" ready
}
# per N BASE HELD: KiB per item
per() { awk -v n="$1" -v b="$2" -v h="$3" 'BEGIN { printf "%.2f", (h - b) * 1024 / n }'; }

case "$mode" in
idle)
	n=$3 shards=${4:-2}
	start_router "$shards"
	base=$(mib "$srv" VmRSS)
	hold --conns "$n"
	sleep 1 # the shards finish their handshakes' last writes
	held=$(mib "$srv" VmRSS)
	echo "router, $shards shards: RSS $base MiB idle, $held MiB with $n connections: $(per "$n" "$base" "$held") KiB each"
	;;
nats)
	n=$3
	port=$(free_port)
	nats-server -a 127.0.0.1 -p "$port" >"$work/server" 2>&1 &
	srv=$!
	pids+=("$srv")
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break || sleep 0.1; done
	sleep 1
	base=$(mib "$srv" VmRSS)
	hold --proto nats --conns "$n"
	sleep 1
	held=$(mib "$srv" VmRSS)
	echo "nats-server: RSS $base MiB idle, $held MiB with $n connections: $(per "$n" "$base" "$held") KiB each"
	;;
names)
	n=$3 each=$4 shards=${5:-2}
	start_router "$shards" --max-registrations "$each"
	base=$(mib "$srv" VmRSS)
	hold --names "$n" --names-per-conn "$each"
	sleep 1
	held=$(mib "$srv" VmRSS)
	echo "router, $shards shards: RSS $base MiB idle, $held MiB with $n names ($each per connection): $(per "$n" "$base" "$held") KiB each"
	;;
churn)
	names=$3 k=$4 shards=${5:-1} regs=${6:-0}
	most=$((names > regs ? names : regs))
	start_router "$shards" --max-registrations "$((most > 0 ? most : 1))" --name-grace-ms 0
	if [ "$names" -gt 0 ]; then hold --names "$names"; fi
	fds=$(ls "/proc/$srv/fd" | wc -l)
	c0=$(cpu_ticks "$srv") t0=$(date +%s%N)
	"$bin/sb-bench" conns --port "$port" --conns "$k" --conn-names "$regs" --hold 0.01 >/dev/null
	# closed when the router holds no more descriptors than before
	for _ in $(seq 6000); do
		[ "$(ls "/proc/$srv/fd" | wc -l)" -le "$fds" ] && break
		sleep 0.05
	done
	t1=$(date +%s%N)
	# Another shard may still be taking the departures' mail: until the
	# router's CPU stops moving for 0.2 s (30 s at most).
	c1=$(cpu_ticks "$srv")
	for _ in $(seq 150); do
		sleep 0.2
		c=$(cpu_ticks "$srv")
		[ "$c" -eq "$c1" ] && break
		c1=$c
	done
	ms=$(((c1 - c0) * tick_ms))
	what=$([ "$regs" -gt 0 ] && echo " with $regs names each" || true)
	echo "router, $shards shards, $names names: $k connections$what opened and closed in $(((t1 - t0) / 1000000)) ms, router CPU $ms ms, $(awk -v m="$ms" -v k="$k" 'BEGIN { printf "%.0f", m * 1000 / k }') us each"
	;;
*)
	sed -n '6,15p' "$0" >&2
	exit 2
	;;
esac
