#!/usr/bin/env bash
# HTTPS vs HTTP on the proxy, same run: added latency of TLS on a kept-alive connection
# (c=1, GET /health) and the rate of new TLS connections (a new connection, handshake
# included, for every request: `Connection: close`, 8 connections), interleaved over 3
# rounds. Uses wrk (Debian) against two proxies started with --no-daemon: local-http and
# dev-selfsigned. Prints a Markdown table of medians.
# Usage: bench/tls.sh [seconds per run, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked -p flm-cli >&2
FLM=$PWD/target/release/flm
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$FLM" --data-dir "$WORK" config set engine.probe_default_ports false >/dev/null
HTTP_PORT=$(free_port)
while :; do TLS_PORT=$(free_port); python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',$TLS_PORT+1))" 2>/dev/null && break; done
"$FLM" --data-dir "$WORK" proxy start --no-daemon --port "$HTTP_PORT" >"$WORK/http.log" 2>&1 & PIDS+=($!)
"$FLM" --data-dir "$WORK" proxy start --no-daemon --mode dev-selfsigned --port "$TLS_PORT" >"$WORK/tls.log" 2>&1 & PIDS+=($!)
HTTPS_PORT=$((TLS_PORT + 1))
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null && curl -sfk "https://127.0.0.1:$HTTPS_PORT/health" >/dev/null && break
  sleep 0.1
done
run() { # url extra-args... -> "rps p50_us"
  local url=$1; shift
  wrk -t1 "$@" -d"${DUR}s" --latency "$url" | python3 -c '
import sys, re
t = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"50%\s+([\d.]+)(us|ms|s)", t)
v = float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]
print(rps, v)'
}
declare -a HK HT HN SN
for r in 1 2 3; do
  HK+=("$(run "http://127.0.0.1:$HTTP_PORT/health" -c1)")
  HT+=("$(run "https://127.0.0.1:$HTTPS_PORT/health" -c1)")
  HN+=("$(run "http://127.0.0.1:$HTTP_PORT/health" -c8 -H 'Connection: close')")
  SN+=("$(run "https://127.0.0.1:$HTTPS_PORT/health" -c8 -H 'Connection: close')")
done
python3 - "${HK[@]}" -- "${HT[@]}" -- "${HN[@]}" -- "${SN[@]}" <<'PY'
import sys, statistics
groups, cur = [], []
for a in sys.argv[1:]:
    if a == "--":
        groups.append(cur); cur = []
    else:
        cur.append(tuple(map(float, a.split())))
groups.append(cur)
hk, ht, hn, sn = groups
med = lambda xs: statistics.median(xs)
print("| scenario | HTTP | HTTPS | HTTPS vs HTTP |")
print("|---|---|---|---|")
print(f"| kept-alive GET /health, c=1: p50 latency µs | {med([x[1] for x in hk]):.0f} | {med([x[1] for x in ht]):.0f} | +{med([b[1]-a[1] for a,b in zip(hk,ht)]):.0f} µs |")
print(f"| kept-alive GET /health, c=1: requests/s | {med([x[0] for x in hk]):.0f} | {med([x[0] for x in ht]):.0f} | ×{med([b[0]/a[0] for a,b in zip(hk,ht)]):.2f} |")
print(f"| new connection per request, c=8: connections/s | {med([x[0] for x in hn]):.0f} | {med([x[0] for x in sn]):.0f} | ×{med([b[0]/a[0] for a,b in zip(hn,sn)]):.2f} |")
print(f"| new connection per request, c=8: p50 latency µs | {med([x[1] for x in hn]):.0f} | {med([x[1] for x in sn]):.0f} | +{med([b[1]-a[1] for a,b in zip(hn,sn)]):.0f} µs |")
PY
echo
echo "Command: bench/tls.sh $DUR"
