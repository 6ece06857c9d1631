#!/usr/bin/env bash
# HTTP calls through the router's edge against HAProxy fronting an HTTP echo
# service, side by side (docs/gateway.md, "What it costs"): wrk (not ours)
# POSTs the same JSON body with keep-alive to
#   - the router's POST /v1/call/echo, answered by `sbctl listen echo --echo`
#     over TCP;
#   - HAProxy (2 threads, HTTP mode) proxying to a second HAProxy whose
#     `http-request return` echoes the body in the same JSON shape.
# Runs interleaved REPS times; prints requests/s, p50/p99 and the front's
# CPU-seconds per million requests (utime+stime of the router, or of the
# proxying HAProxy, around each run). Needs Debian's wrk and haproxy.
#   bench/edge-http.sh [BUILD_BIN_DIR] [REPS] [CONNS]
set -euo pipefail
bin=${1:-build/release/bin}
reps=${2:-3}
conns=${3:-64}
work=$(mktemp -d /tmp/sb-edge-http.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
for p in wrk haproxy; do
	command -v $p >/dev/null || { echo "edge-http: needs $p (apt-get install wrk haproxy)" >&2; exit 2; }
done

cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"n":12345,"s":"hello, switchboard"}'
wrk.headers["Content-Type"] = "application/json"
EOF
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(free_port) ep=$(free_port)
cat >"$work/proxy.cfg" <<EOF
global
    nbthread 2
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend edge
    bind 127.0.0.1:$hp
    default_backend echo
backend echo
    server s1 127.0.0.1:$ep
EOF
cat >"$work/echo.cfg" <<EOF
global
    nbthread 1
defaults
    mode http
    timeout client 30s
frontend echo_service
    bind 127.0.0.1:$ep
    option http-buffer-request
    http-request return status 200 content-type application/json lf-string "{\"outcome\":\"ok\",\"data\":%[req.body]}"
EOF

"$bin/switchboard" --port 0 --ws-port 0 --log-level 0 >"$work/sw.out" 2>&1 &
sw=$!
pids+=($sw)
for _ in $(seq 50); do grep -q "HTTP on" "$work/sw.out" && break; sleep 0.1; done
port=$(grep -o "listening on 127.0.0.1:[0-9]*" "$work/sw.out" | cut -d: -f2)
wsport=$(grep -o "HTTP on 127.0.0.1:[0-9]*" "$work/sw.out" | cut -d: -f2)
"$bin/sbctl" --router "127.0.0.1:$port" listen echo --echo >/dev/null 2>&1 &
pids+=($!)
haproxy -f "$work/echo.cfg" >/dev/null 2>&1 &
pids+=($!)
haproxy -f "$work/proxy.cfg" >/dev/null 2>&1 &
proxy=$!
pids+=($proxy)
sleep 1

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # URL PID LABEL
	local t0 t1 out
	t0=$(cpu "$2")
	out=$(wrk -t1 -c"$conns" -d5s --latency -s "$work/post.lua" "$1")
	t1=$(cpu "$2")
	echo "$out" | awk -v label="$3" -v t0="$t0" -v t1="$t1" -v tck="$(getconf CLK_TCK)" '
		/requests in/ { n = $1 }
		/Requests\/sec/ { rps = $2 }
		$1 == "50%" { p50 = $2 }
		$1 == "99%" { p99 = $2 }
		END { printf "%-8s %10.0f req/s  p50 %-9s p99 %-9s %.2f CPU-s per M\n",
		      label, rps, p50, p99, (t1 - t0) / tck / n * 1e6 }'
}
for _ in $(seq "$reps"); do
	run "http://127.0.0.1:$wsport/v1/call/echo" "$sw" router
	run "http://127.0.0.1:$hp/" "$proxy" haproxy
done
