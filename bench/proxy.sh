#!/usr/bin/env bash
# Measures what `flm proxy` adds over calling the engine directly, in the same run.
#
# Starts the fake OpenAI-compatible engine (`flm-bench fake-upstream`) and the proxy in
# front of it (temporary data dir, one `openai` engine, one API key, auth on), then runs
# three scenarios with `flm-bench load`, direct and through the proxy, interleaved
# (direct, proxy, direct, proxy … for 3 rounds) so machine noise hits both sides:
#   chat-c1     non-streaming chat, 1 connection        (added p50/p99 latency)
#   chat-c64    non-streaming chat, 64 connections      (throughput ratio)
#   stream-c16  streaming chat, 20 SSE chunks, 16 conns (added TTFB, streams/s ratio)
# plus the proxy's VmRSS idle and at the end of the c=64 runs. Prints a Markdown table
# (medians over rounds of per-round differences and ratios) for docs/benchmarks.md.
#
# The load generator, the proxy and the fake engine share the machine's cores (2 on
# the development machine); nothing is pinned. Read medians and ratios, not one run.
#
# Usage: bench/proxy.sh [quick|full] [--aa]
#   quick  1 s per run (~20 s of load): a smoke test for CI
#   full   6 s per run (~2 min of load): the real measurement
#   --aa   A/A calibration: the "proxy" side is the fake engine again, direct; shows
#          the harness's own noise floor (added figures should be ~0); needs no proxy.
# Env: FLM_BENCH_ENFORCE=1 exits 1 when a target is missed (errors always do).
# Raw results are kept in target/bench/proxy-<mode>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-quick}
AA=0
[ "${2:-}" = "--aa" ] && AA=1
case "$MODE" in
  quick) DUR=1 ;;
  full) DUR=6 ;;
  *) echo "usage: bench/proxy.sh [quick|full] [--aa]" >&2; exit 64 ;;
esac
ROUNDS=3

log() { echo "[bench] $*" >&2; }
die() { echo "bench/proxy.sh: $*" >&2; exit 1; }

if [ "$AA" = 1 ]; then
  cargo build --release --locked -p flm-bench >&2
else
  cargo build --release --locked -p flm-cli -p flm-bench >&2
fi
FLM=$PWD/target/release/flm
BENCH=$PWD/target/release/flm-bench

start_help=$("$FLM" proxy start --help 2>/dev/null || true)
if [ "$AA" = 0 ] && ! { [[ $start_help == *--no-daemon* ]] \
  && "$FLM" api-keys create --help >/dev/null 2>&1; }; then
  die "this build of \`flm\` has no \`proxy start --no-daemon\` or \`api-keys create\` yet
  (crates/flm-proxy is not wired into flm-cli), so there is no proxy to measure.
  To check the harness alone (fake engine + load generator, A/A): bench/proxy.sh $MODE --aa"
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# --- the fake engine ---
: >"$WORK/upstream.out"
"$BENCH" fake-upstream --port 0 >>"$WORK/upstream.out" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
UP_URL=
for _ in $(seq 100); do
  UP_URL=$(sed -n 's/^listening on //p' "$WORK/upstream.out")
  [ -n "$UP_URL" ] && break
  kill -0 "$UP_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$UP_URL" ] || die "fake upstream did not start: $(cat "$WORK/upstream.out")"
log "fake engine on $UP_URL"

# --- the proxy (or, for --aa, the fake engine again) ---
if [ "$AA" = 1 ]; then
  PROXY_URL=$UP_URL PROXY_MODEL=fake-model KEY=none PROXY_PID=$UP_PID
  log "A/A calibration: the \"via proxy\" column is the fake engine, direct"
else
  DATA=$WORK/data
  "$FLM" --data-dir "$DATA" engines add --kind openai --url "$UP_URL" --id fake >&2
  KEY=$("$FLM" --data-dir "$DATA" api-keys create --label bench --format json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["key"])')
  PP=$(free_port)
  "$FLM" --data-dir "$DATA" proxy start --no-daemon --port "$PP" >"$WORK/proxy.log" 2>&1 &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  PROXY_URL=http://127.0.0.1:$PP PROXY_MODEL=flm://fake/fake-model
  up=0
  for _ in $(seq 100); do
    curl -sf -o /dev/null "$PROXY_URL/health" && { up=1; break; }
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ "$up" = 1 ] || die "proxy did not answer GET /health with 200 within 10 s; its log:
$(tail -20 "$WORK/proxy.log")"
  log "proxy on $PROXY_URL (pid $PROXY_PID)"
fi
RSS_IDLE=$(rss_kib "$PROXY_PID")

# One request through the proxy path first, so a wiring problem shows its answer.
smoke=$(curl -s -w '\n%{http_code}' "$PROXY_URL/v1/chat/completions" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"model\":\"$PROXY_MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}") || true
[ "${smoke##*$'\n'}" = 200 ] || die "POST /v1/chat/completions via $PROXY_URL (model $PROXY_MODEL) did not answer 200:
$smoke"

# --- the runs ---
RES=$WORK/results.jsonl
: >"$RES"
load() { # scenario path flm-bench-load-args...
  local scenario=$1 path=$2 url=$UP_URL model=fake-model key=direct-path-sends-any-key
  shift 2
  if [ "$path" = proxy ]; then url=$PROXY_URL model=$PROXY_MODEL key=$KEY; fi
  FLM_BENCH_KEY=$key "$BENCH" load --label "$scenario/$path" --url "$url" --model "$model" \
    --duration-secs "$DUR" "$@" >>"$RES"
  log "$(tail -1 "$RES")"
}
RSS_C64=0
for round in $(seq "$ROUNDS"); do
  log "round $round/$ROUNDS"
  for path in direct proxy; do load chat-c1 "$path" --concurrency 1 --warmup 500; done
  for path in direct proxy; do
    load chat-c64 "$path" --concurrency 64 --warmup 2000
    if [ "$path" = proxy ]; then
      rss=$(rss_kib "$PROXY_PID")
      [ "$rss" -gt "$RSS_C64" ] && RSS_C64=$rss
    fi
  done
  for path in direct proxy; do load stream-c16 "$path" --concurrency 16 --stream --warmup 500; done
done
mkdir -p target/bench
cp "$RES" "target/bench/proxy-$MODE.jsonl"

# --- the table ---
echo
if [ "$AA" = 1 ]; then
  echo "A/A calibration (\"via proxy\" = the fake engine again, direct; RSS is the fake engine's):"
else
  echo "Result ($(date +%F), \`$MODE\`: $ROUNDS interleaved rounds of ${DUR} s per run, $(nproc) cores shared by load generator, proxy and fake engine, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ', dirty tree')):"
fi
echo
enforce=()
[ "${FLM_BENCH_ENFORCE:-0}" = 1 ] && enforce=(--enforce)
"$BENCH" summarize "$RES" --rss-idle-kib "$RSS_IDLE" --rss-c64-kib "$RSS_C64" "${enforce[@]}"
echo
echo "Command: \`bench/proxy.sh $MODE${2:+ $2}\`"
