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

SCRIPT=bench/proxy.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh

if [ "$AA" = 1 ]; then
  cargo build --release --locked -p flm-bench >&2
else
  cargo build --release --locked -p flm-cli -p flm-bench >&2
fi
FLM=$PWD/target/release/flm
BENCH=$PWD/target/release/flm-bench

[ "$AA" = 1 ] || require_proxy_cli "To check the harness alone (fake engine + load generator, A/A): bench/proxy.sh $MODE --aa"

WORK=$(mktemp -d)
PIDS=()
trap cleanup EXIT

# --- the fake engine ---
start_fake_upstream

# --- the proxy (or, for --aa, the fake engine again) ---
if [ "$AA" = 1 ]; then
  PROXY_URL=$UP_URL PROXY_MODEL=fake-model KEY=none PROXY_PID=$UP_PID
  log "A/A calibration: the \"via proxy\" column is the fake engine, direct"
else
  DATA=$WORK/data
  KEY=$(setup_data_dir "$DATA")
  start_proxy "$DATA" "$WORK/proxy.log"
  PROXY_PID=$STARTED_PID PROXY_URL=$STARTED_URL PROXY_MODEL=flm://fake/fake-model
fi
RSS_IDLE=$(rss_kib "$PROXY_PID")

# One request through the proxy path first, so a wiring problem shows its answer.
smoke_chat "$PROXY_URL" "$PROXY_MODEL" "$KEY"

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
  echo "Result ($(date +%F), \`$MODE\`: $ROUNDS interleaved rounds of ${DUR} s per run, $(nproc) cores shared by load generator, proxy and fake engine, $(commit_note)):"
fi
echo
enforce=()
[ "${FLM_BENCH_ENFORCE:-0}" = 1 ] && enforce=(--enforce)
"$BENCH" summarize "$RES" --rss-idle-kib "$RSS_IDLE" --rss-c64-kib "$RSS_C64" "${enforce[@]}"
echo
echo "Command: \`bench/proxy.sh $MODE${2:+ $2}\`"
